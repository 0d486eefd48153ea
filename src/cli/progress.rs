//! The progress bar on stderr (only when stderr is a terminal): Gram rows, then iterations with the
//! current stopping quantity. Each phase gets a fresh bar.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use laepca::{Phase, Progress};
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Gram,
    Iterate,
    Finish,
    Other,
}

struct State {
    pb: ProgressBar,
    stage: Stage,
}

/// A progress bar, or nothing when stderr is not a terminal.
#[derive(Clone)]
pub struct Bar {
    state: Option<Arc<Mutex<State>>>,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

const SPINNER: &str = "{prefix:>8} {spinner} {msg} ({elapsed})";

fn new_bar(len: Option<u64>, template: &str, prefix: &'static str, msg: String) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr());
    pb.set_style(style(template));
    pb.set_prefix(prefix);
    pb.set_message(msg);
    pb.enable_steady_tick(std::time::Duration::from_millis(200));
    pb
}

impl Bar {
    pub fn new() -> Self {
        let state = std::io::stderr().is_terminal().then(|| {
            Arc::new(Mutex::new(State {
                pb: new_bar(None, SPINNER, "read", String::new()),
                stage: Stage::Other,
            }))
        });
        Bar { state }
    }

    /// Runs `f` on the current bar; with `stage`, a phase change first replaces the bar by `make()`.
    fn with(
        &self,
        stage: Option<Stage>,
        make: impl FnOnce() -> ProgressBar,
        f: impl FnOnce(&ProgressBar),
    ) {
        let Some(state) = &self.state else { return };
        let Ok(mut s) = state.lock() else { return };
        if let Some(stage) = stage {
            if s.stage != stage || stage == Stage::Other {
                s.pb.finish_and_clear();
                s.pb = make();
                s.stage = stage;
            }
        }
        f(&s.pb);
    }

    /// The Gram phase over `rows` samples (None: unknown).
    pub fn gram(&self, rows: Option<u64>) {
        self.with(
            Some(Stage::Gram),
            || match rows {
                Some(_) => new_bar(
                    rows,
                    "{prefix:>8} [{bar:30}] {human_pos}/{human_len} samples ({elapsed}, eta {eta})",
                    "gram",
                    String::new(),
                ),
                None => new_bar(None, SPINNER, "gram", String::new()),
            },
            |_| {},
        );
    }

    /// Samples accumulated so far.
    pub fn samples(&self, n: u64) {
        self.with(None, unreachable_bar, |pb| pb.set_position(n));
    }

    /// The hook for [`laepca::LaePca::on_progress`].
    pub fn hook(&self) -> impl Fn(&Progress) + Send + Sync + 'static {
        let bar = self.clone();
        move |p: &Progress| bar.report(p)
    }

    fn report(&self, p: &Progress) {
        match p.phase {
            Phase::Gram => {
                self.gram(None);
                self.with(None, unreachable_bar, |pb| {
                    pb.set_message(format!("{} samples", p.samples))
                });
            }
            Phase::Iterate => self.with(
                Some(Stage::Iterate),
                || {
                    new_bar(
                        Some(p.max_iter as u64),
                        "{prefix:>8} {spinner} iteration {pos}/{len} {msg} ({elapsed})",
                        "iterate",
                        String::new(),
                    )
                },
                |pb| {
                    pb.set_position(p.iteration as u64);
                    if let Some(q) = p.stopping_quantity {
                        pb.set_message(format!("stopping quantity {q:.3e} (tol {:.1e})", p.tol));
                    }
                },
            ),
            Phase::Finish => self.with(
                Some(Stage::Finish),
                || {
                    new_bar(
                        None,
                        SPINNER,
                        "finish",
                        "SVD of the decoder, variances".into(),
                    )
                },
                |_| {},
            ),
            _ => {}
        }
    }

    /// Another phase of the tool (reading a whole file, writing the outputs).
    pub fn message(&self, prefix: &'static str, msg: &str) {
        self.with(
            Some(Stage::Other),
            || new_bar(None, SPINNER, prefix, msg.to_string()),
            |_| {},
        );
    }

    pub fn clear(&self) {
        self.with(None, unreachable_bar, |pb| pb.finish_and_clear());
    }
}

/// The bar factory of calls that never replace the bar.
fn unreachable_bar() -> ProgressBar {
    ProgressBar::hidden()
}
