//! The LAE-PCA iterations, each written once against [`Engine`].
//!
//! With `V = W1ᵀ` (the encoder, stored m x k) and `W = W2` (the decoder, m x k), the paper's loss
//! `‖X − W2W1X‖² + λ‖W1‖² + λ‖W2‖²` has the gradients (reassociated so no m x m product is formed):
//!
//! * `∇V = (C V)(WᵀW) − C W + λV`
//! * `∇W = W (Vᵀ C V) − C V + λW`
//!
//! The variants follow the paper's `algorithms.py`:
//!
//! | solver | update | stopping quantity |
//! |---|---|---|
//! | untied | `V −= α∇V`, then `W −= α∇W` with the new V | `‖W1 − W2ᵀ‖` |
//! | sync | both gradients from the same iterate, started from `W1 = W2ᵀ` | `‖ΔW1‖ + ‖ΔW2‖` |
//! | tied (regularised Oja) | `W −= α(W (WᵀCW) − CW + λW)`, `W1 = W2ᵀ` | `‖ΔW2‖` |
//! | exact-untied | `W1 = argmin` given W2, then `W2 = argmin` given the new W1 | `‖W1 − W2ᵀ‖` |
//! | exact-sync | started from `W1 = W2ᵀ`: `W2 = argmin` given W1, then `W1 = argmin` given the new W2 | `‖W1 − W2ᵀ‖` |
//! | exact-tied | `W2 = argmin` given `W1 = W2ᵀ`, then `W1 = W2ᵀ` | `‖ΔW2‖` |
//!
//! The paper's published `algorithms.py` holds untied, sync, oja (tied) and exact (untied). The exact
//! sync and tied rows of the paper's results table are read here as the exact analogues of the gradient ones:
//! sync starts tied (so the decoder must move first for the start to matter), tied keeps `W1 = W2ᵀ`.
//! Two other readings were tried and dropped: both exact steps from one iterate (Jacobi) cycles with
//! period two, and an exact encoder step copied to the decoder leaves any rotation of the answer fixed
//! and converges at rate `1/(1 + λ(1/σ_{k+1}² − 1/σ_k²))`, far slower than the paper's 778 iterations.
//!
//! And two not in the paper: the default, `auto`, the locally optimal LAE step (see [`ritz`]: the
//! exact-tied step's minimisation taken over a 3k-dimensional search space, i.e. LOBPCG), and
//! `momentum`, the exact-tied step with heavy-ball momentum on the span (see `momentum_step`), whose
//! stopping quantity is the change of the span per iteration. Both take their directions from a
//! Rayleigh–Ritz step on the final span.
//!
//! The exact decoder step is the k x k solve `W = (CV)(VᵀCV + λI)⁻¹`. The exact encoder step solves
//! `C V (WᵀW) + λV = C W` matrix-free by conjugate gradients over m x k matrices (warm-started from the
//! current V; never the mk x mk Kronecker system of the paper's code).

pub(crate) mod ritz;
pub(crate) mod spectrum;

use crate::engine::{Coef, Engine, EngineStats, LoopStats, Scalar, Small, Tall};
use crate::error::{Error, Result};

/// The solver (the iteration) to run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Solver {
    /// The default: the locally optimal LAE step, a Rayleigh–Ritz step over `[W, CW − WΘ, P]` per pass
    /// over C (LOBPCG) with `⌈k/2⌉` guard columns beyond the k wanted ones, no parameter to tune; fewer
    /// passes over C than LOBPCG with a block of k. Each pass multiplies C by a block of k + ⌈k/2⌉
    /// columns (fewer guard columns when 3(k + ⌈k/2⌉) > m): one pass over the data when C is applied
    /// from it, about 1.5 times the arithmetic of a k-column product.
    #[default]
    Auto,
    /// The exact-tied step accelerated with heavy-ball momentum (β from a 10-step Ritz estimate), no
    /// parameter to tune; the default before `auto`, kept for study. Directions by Rayleigh–Ritz on the
    /// decoder's span.
    Momentum,
    /// Gradient descent on untied weights (the paper's `LAE_PCA_untied`).
    Untied,
    /// Gradient descent on untied weights, both updated from the same iterate, started tied
    /// (the paper's `LAE_PCA_sync`).
    Sync,
    /// Gradient descent with `W1 = W2ᵀ`: the regularised Oja rule (the paper's `LAE_PCA_oja`).
    Tied,
    /// Alternating exact minimisation on untied weights (the paper's `LAE_PCA_exact`).
    ExactUntied,
    /// Alternating exact minimisation started tied, decoder first.
    ExactSync,
    /// Exact minimisation of the decoder, the encoder then set to its transpose: needs no step size.
    ExactTied,
}

impl Solver {
    /// All solvers: the default, momentum, then the paper's, in the paper's order.
    pub const ALL: [Solver; 8] = {
        let mut all = [Solver::Auto; 8];
        all[1] = Solver::Momentum;
        let mut i = 0;
        while i < Solver::PAPER.len() {
            all[i + 2] = Solver::PAPER[i];
            i += 1;
        }
        all
    };

    /// The paper's six variants: all but [`Solver::Auto`] and [`Solver::Momentum`].
    pub const PAPER: [Solver; 6] = [
        Solver::Untied,
        Solver::Sync,
        Solver::Tied,
        Solver::ExactUntied,
        Solver::ExactSync,
        Solver::ExactTied,
    ];

    /// The solver's name (as the command line spells it).
    pub fn name(self) -> &'static str {
        match self {
            Solver::Auto => "auto",
            Solver::Momentum => "momentum",
            Solver::Untied => "untied",
            Solver::Sync => "sync",
            Solver::Tied => "tied",
            Solver::ExactUntied => "exact-untied",
            Solver::ExactSync => "exact-sync",
            Solver::ExactTied => "exact-tied",
        }
    }

    /// Whether the solver takes gradient steps of size α.
    pub fn uses_alpha(self) -> bool {
        matches!(self, Solver::Untied | Solver::Sync | Solver::Tied)
    }

    /// Whether the result's directions come from a Rayleigh–Ritz step on the decoder's span (else they
    /// are the decoder's left singular vectors, as in the paper).
    pub fn uses_rayleigh_ritz(self) -> bool {
        matches!(self, Solver::Auto | Solver::Momentum)
    }

    /// The columns of the loop's iterate for k components of m features (the engine's width): k,
    /// and for [`Solver::Auto`] also its guard columns (see [`ritz::block_width`]).
    pub(crate) fn block_width(self, m: usize, k: usize) -> usize {
        match self {
            Solver::Auto => ritz::block_width(m, k),
            _ => k,
        }
    }

    /// Whether the encoder is the decoder's transpose throughout.
    fn is_tied(self) -> bool {
        matches!(
            self,
            Solver::Auto | Solver::Momentum | Solver::Tied | Solver::ExactTied
        )
    }

    /// Whether the encoder starts tied to the decoder (`W1 = W2ᵀ`).
    fn starts_tied(self) -> bool {
        !matches!(self, Solver::Untied | Solver::ExactUntied)
    }
}

impl std::fmt::Display for Solver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A solver by its [`name`](Solver::name), or `exact` for [`Solver::ExactTied`].
impl std::str::FromStr for Solver {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s == "exact" {
            return Ok(Solver::ExactTied);
        }
        Solver::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| format!("unknown solver '{s}' (expected one of auto, momentum, untied, sync, tied, exact (= exact-tied), exact-untied, exact-sync, exact-tied)"))
    }
}

/// The resolved settings of one loop.
#[derive(Clone, Debug)]
pub(crate) struct LoopSettings {
    pub solver: Solver,
    pub lambda: f64,
    pub alpha: f64,
    pub tol: f64,
    pub max_iter: usize,
    pub check_every: usize,
    pub cg_steps: usize,
    /// The momentum β of [`Solver::Momentum`] (`θ_{k+1}²/4`, θ a Ritz estimate of C's eigenvalues).
    pub momentum: f64,
    /// The size of the stopping quantity's rounding noise in the working precision (see [`is_stalled`]).
    pub noise_floor: f64,
}

/// What a loop leaves: the weights (m x k, column-major) and its diagnostics.
#[derive(Clone, Debug)]
pub(crate) struct LoopResult {
    /// W2.
    pub decoder: Vec<f64>,
    /// W1ᵀ.
    pub encoder: Vec<f64>,
    pub iterations: usize,
    pub converged: bool,
    pub stalled: bool,
    pub history: Vec<f64>,
    pub stats: LoopStats,
}

/// The bookkeeping every loop shares: the stopping quantities checked so far, how the loop ended, and
/// the engine's counts of one steady block of `check_every` iterations (the third full block on).
struct Checks {
    history: Vec<f64>,
    converged: bool,
    stalled: bool,
    full_blocks: usize,
    block_start: EngineStats,
    steady_block: Option<EngineStats>,
    /// Passes run ahead of the check that ended the loop (see `LoopStats::discarded_passes`).
    discarded_passes: usize,
}

impl Checks {
    fn new<E: Engine>(e: &E) -> Self {
        Checks {
            history: Vec::new(),
            converged: false,
            stalled: false,
            full_blocks: 0,
            block_start: e.stats(),
            steady_block: None,
            discarded_passes: 0,
        }
    }

    /// A block of iterations begins.
    fn start_block<E: Engine>(&mut self, e: &E) {
        self.block_start = e.stats();
    }

    /// A block of iterations was checked and gave `values`; `full` when it ran `check_every`.
    fn end_block<E: Engine>(&mut self, e: &E, values: &[f64], full: bool) {
        self.history.extend_from_slice(values);
        if full {
            self.full_blocks += 1;
            if self.full_blocks >= 3 {
                self.steady_block = Some(e.stats() - self.block_start);
            }
        }
    }

    fn finish<E: Engine>(
        self,
        e: &E,
        s: &LoopSettings,
        (decoder, encoder): (Vec<f64>, Vec<f64>),
        iterations: usize,
    ) -> LoopResult {
        LoopResult {
            decoder,
            encoder,
            iterations,
            converged: self.converged,
            stalled: self.stalled,
            history: self.history,
            stats: LoopStats {
                total: e.stats(),
                steady_block: self.steady_block,
                block_iterations: s.check_every,
                discarded_passes: self.discarded_passes,
            },
        }
    }
}

/// The handles of one loop: the current weights, their next values and scratch space.
struct State {
    v: Tall,
    w: Tall,
    v_next: Tall,
    w_next: Tall,
    cv: Tall,
    cw: Tall,
    tmp: Tall,
    g: Small,
    h: Small,
    /// Conjugate-gradient work space for the exact encoder step.
    cg: Option<Cg>,
    /// Momentum space for the momentum solver.
    momentum: Option<MomentumSpace>,
}

struct MomentumSpace {
    /// The previous iterate, right-multiplied by the same k x k factors as the current one.
    prev: Tall,
    /// A zero matrix (the stopping quantity is the norm of one matrix).
    zero: Tall,
    s: Small,
    /// The iterate and its predecessor at the last check, to return to when a block diverges.
    saved_w: Tall,
    saved_prev: Tall,
}

struct Cg {
    r: Tall,
    p: Tall,
    ap: Tall,
    rr: Scalar,
    rr_next: Scalar,
    pap: Scalar,
}

/// Runs `settings.solver` from the initial decoder `w0` and encoder `v0` (m x k, column-major).
/// `on_check(iterations, stopping quantity)` is called after every check; an error it returns (a
/// cancelled fit) ends the loop.
pub(crate) fn run_loop<E: Engine>(
    e: &mut E,
    s: &LoopSettings,
    w0: &[f64],
    v0: &[f64],
    on_check: &mut dyn FnMut(usize, f64) -> Result<()>,
) -> Result<LoopResult> {
    if s.solver == Solver::Auto {
        return ritz::run_loop(e, s, (w0, v0), on_check);
    }
    let mut st = State {
        v: e.new_tall(),
        w: e.new_tall(),
        v_next: e.new_tall(),
        w_next: e.new_tall(),
        cv: e.new_tall(),
        cw: e.new_tall(),
        tmp: e.new_tall(),
        g: e.new_small(),
        h: e.new_small(),
        cg: None,
        momentum: None,
    };
    if s.solver == Solver::Momentum {
        st.momentum = Some(MomentumSpace {
            prev: e.new_tall(),
            zero: e.new_tall(),
            s: e.new_small(),
            saved_w: e.new_tall(),
            saved_prev: e.new_tall(),
        });
    }
    let mut s = s.clone();
    let s = &mut s;
    if matches!(s.solver, Solver::ExactUntied | Solver::ExactSync) {
        st.cg = Some(Cg {
            r: e.new_tall(),
            p: e.new_tall(),
            ap: e.new_tall(),
            rr: e.new_scalar(),
            rr_next: e.new_scalar(),
            pap: e.new_scalar(),
        });
    }
    e.upload(st.w, w0)?;
    e.upload(st.v, if s.solver.starts_tied() { w0 } else { v0 })?;
    if s.solver == Solver::Untied {
        e.c_mul(st.v, st.cv); // kept up to date by each step
    }

    let mut checks = Checks::new(e);
    let mut iterations = 0;
    // Divergences of the momentum solver left behind so far (each undone, with less momentum).
    let mut retries = 0;
    while iterations < s.max_iter {
        let block = s.check_every.min(s.max_iter - iterations);
        checks.start_block(e);
        if let Some(a) = &st.momentum {
            e.combine(a.saved_w, &[(Coef::Const(1.0), st.w)]);
            e.combine(a.saved_prev, &[(Coef::Const(1.0), a.prev)]);
        }
        for _ in 0..block {
            step(e, s, &mut st);
        }
        iterations += block;
        let values = e.check()?;
        if let Some(pos) = values.iter().position(|q| !q.is_finite()) {
            match &st.momentum {
                // Undo the block and go on with a quarter of the momentum (half the acceleration).
                Some(a) if retries < MAX_RETRIES => {
                    log::warn!("momentum solver: non-finite iterate in iterations {}..{iterations}; retrying with less momentum", iterations - block + 1);
                    e.combine(st.w, &[(Coef::Const(1.0), a.saved_w)]);
                    e.combine(a.prev, &[(Coef::Const(1.0), a.saved_prev)]);
                    s.momentum *= 0.25;
                    retries += 1;
                    continue;
                }
                _ => {
                    return Err(Error::Diverged {
                        solver: s.solver.name(),
                        iteration: iterations - block + pos + 1,
                    })
                }
            }
        }
        checks.end_block(e, &values, block == s.check_every);
        if let Some(&q) = values.last() {
            on_check(iterations, q)?;
        }
        if values.last().is_some_and(|&q| q < s.tol) {
            checks.converged = true;
            break;
        }
        if is_stalled(&checks.history, s.noise_floor, s.solver.stall()) {
            checks.stalled = true;
            break;
        }
    }
    let decoder = e.download(st.w)?;
    let encoder = if s.solver.is_tied() {
        decoder.clone()
    } else {
        e.download(st.v)?
    };
    Ok(checks.finish(e, s, (decoder, encoder), iterations))
}

/// Divergent blocks the momentum solver may undo before it gives up.
const MAX_RETRIES: usize = 5;

/// One iteration of the chosen variant.
fn step<E: Engine>(e: &mut E, s: &LoopSettings, st: &mut State) {
    match s.solver {
        Solver::Untied => {
            // st.cv holds C V for the current V. ∇V = (CV)(WᵀW) − CW + λV, then with the new V,
            // ∇W = W (VᵀCV) − CV + λW.
            e.c_mul(st.w, st.cw);
            e.inner(st.w, st.w, st.g);
            gradient_step(e, s, st.tmp, st.v, (st.cv, st.g), st.cw, st.v_next);
            e.c_mul(st.v_next, st.cv);
            e.inner(st.v_next, st.cv, st.h);
            gradient_step(e, s, st.tmp, st.w, (st.w, st.h), st.cv, st.w_next);
            e.record_stop(&[(st.v_next, st.w_next)]);
            swap_both(st);
        }
        Solver::Sync => {
            e.c_mul(st.v, st.cv);
            e.c_mul(st.w, st.cw);
            e.inner(st.w, st.w, st.g);
            e.inner(st.v, st.cv, st.h);
            gradient_step(e, s, st.tmp, st.v, (st.cv, st.g), st.cw, st.v_next);
            gradient_step(e, s, st.tmp, st.w, (st.w, st.h), st.cv, st.w_next);
            e.record_stop(&[(st.v_next, st.v), (st.w_next, st.w)]);
            swap_both(st);
        }
        Solver::Tied => {
            // ∇W = W (WᵀCW) − CW + λW.
            e.c_mul(st.w, st.cw);
            e.inner(st.w, st.cw, st.h);
            gradient_step(e, s, st.tmp, st.w, (st.w, st.h), st.cw, st.w_next);
            e.record_stop(&[(st.w_next, st.w)]);
            std::mem::swap(&mut st.w, &mut st.w_next);
        }
        Solver::ExactUntied => {
            exact_encoder(e, s, st, st.w, st.v);
            exact_decoder(e, s, st, st.v, st.w);
            e.record_stop(&[(st.v, st.w)]);
        }
        Solver::ExactSync => {
            // Started tied, the decoder goes first (else the encoder's start would not matter).
            exact_decoder(e, s, st, st.v, st.w);
            exact_encoder(e, s, st, st.w, st.v);
            e.record_stop(&[(st.v, st.w)]);
        }
        Solver::Momentum => momentum_step(e, s, st),
        Solver::Auto => unreachable!("auto runs its own loop (ritz::run_loop)"),
        Solver::ExactTied => {
            exact_decoder(e, s, st, st.w, st.w_next);
            e.record_stop(&[(st.w_next, st.w)]);
            std::mem::swap(&mut st.w, &mut st.w_next);
        }
    }
}

/// What counts as no progress at the noise floor (see [`is_stalled`]).
#[derive(Clone, Copy, Debug)]
struct Stall {
    window: usize,
    factor: f64,
}

impl Solver {
    fn stall(self) -> Stall {
        match self {
            Solver::Momentum => Stall {
                window: 50,
                factor: 0.5,
            },
            Solver::Auto => ritz::STALL,
            _ => Stall {
                window: 1000,
                factor: 1.0,
            },
        }
    }
}

/// How far back [`is_stalled`] looks for a repeated stopping quantity.
const STALL_LOOKBACK: usize = 16;
/// Whether the iteration has reached the floor of its working precision, where more iterations cannot
/// improve the result:
/// * the last stopping quantity repeats, to the bit, one of the [`STALL_LOOKBACK`] before it: the
///   iterate no longer changes (every update is below half an ulp) or cycles among a few states; or
/// * the smallest quantity so far is below `noise_floor` (the size of its rounding noise) and the last
///   `stall.window` iterations did not bring it below `stall.factor` times the best before them: it
///   wanders in rounding noise. The paper's gradient solvers creep (factor 1: any new minimum counts as
///   progress, over 1000 iterations); the momentum solver converges fast, so failing to halve its quantity
///   in 50 iterations at the floor is a stall.
///
/// (Slow progress alone would not do: the quantity rises for a while when the iterate escapes a
/// saddle, far above its noise floor.)
fn is_stalled(history: &[f64], noise_floor: f64, stall: Stall) -> bool {
    let Some((last, before)) = history.split_last() else {
        return false;
    };
    if before.iter().rev().take(STALL_LOOKBACK).any(|q| q == last) {
        return true;
    }
    if history.len() <= stall.window {
        return false;
    }
    let (older, window) = history.split_at(history.len() - stall.window);
    let best_before = older.iter().copied().fold(f64::INFINITY, f64::min);
    let best_recent = window.iter().copied().fold(f64::INFINITY, f64::min);
    best_before.min(best_recent) < noise_floor && best_recent >= stall.factor * best_before
}

/// One step of the momentum solver: the exact-tied step `W ← C W (WᵀCW + λI)⁻¹` with heavy-ball momentum on
/// the span, `W ← (C W − β W_prev)(WᵀCW + λI)⁻¹`, `W_prev ← W (WᵀCW + λI)⁻¹`.
///
/// The span follows the three-term recurrence `X_{t+1} = C X_t − β X_{t−1}` (right-multiplying both
/// terms by the same k x k matrix changes no span), whose unwanted components shrink by
/// `sqrt(β) / r` per step instead of `λ_{k+1}/λ_k`, with `r = (λ_k + sqrt(λ_k² − 4β))/2`: with the
/// optimal `β = λ_{k+1}²/4` a gap of 1% costs tens of iterations, not hundreds. The k x k factor
/// `(WᵀCW + λI)⁻¹` is the exact decoder step: it keeps the iterate at the answer's scale.
///
/// Stopping quantity: the root-mean-square sine of the span's change, `‖(I − P_W) W_next‖_F / √k` with
/// `P_W = W (WᵀW)⁻¹ Wᵀ` (scale-free: `tol` means the same for every data set and on both paths).
fn momentum_step<E: Engine>(e: &mut E, s: &LoopSettings, st: &mut State) {
    let a = st
        .momentum
        .as_ref()
        .expect("the momentum solver allocates its space");
    let one = Coef::Const(1.0);
    e.c_mul_inverse(st.w, st.cw, st.h, s.lambda, st.g);
    e.combine(st.tmp, &[(one, st.cw), (Coef::Const(-s.momentum), a.prev)]);
    e.mul_small_pair([st.tmp, st.w], st.g, [st.w_next, a.prev]);
    // The part of the new iterate outside the old span.
    e.inner(st.w, st.w, st.h);
    e.inverse_spd(st.h, 0.0, st.g);
    e.inner(st.w, st.w_next, a.s);
    e.mul_small(st.w, st.g, st.cw);
    e.mul_small(st.cw, a.s, st.tmp);
    let scale = 1.0 / (e.k() as f64).sqrt();
    e.combine(
        st.tmp,
        &[
            (Coef::Const(scale), st.w_next),
            (Coef::Const(-scale), st.tmp),
        ],
    );
    e.record_stop(&[(st.tmp, a.zero)]);
    std::mem::swap(&mut st.w, &mut st.w_next);
}

/// `out = x − α ∇` with the gradient `∇ = a·S − c + λx` (`a·S` a tall by small product: the
/// reassociated form of the paper's gradients, O(mk²) here on top of the C products). Uses `tmp`.
fn gradient_step<E: Engine>(
    e: &mut E,
    s: &LoopSettings,
    tmp: Tall,
    x: Tall,
    (a, small): (Tall, Small),
    c: Tall,
    out: Tall,
) {
    let alpha = s.alpha;
    e.mul_small(a, small, tmp);
    e.combine(
        out,
        &[
            (Coef::Const(1.0 - alpha * s.lambda), x),
            (Coef::Const(-alpha), tmp),
            (Coef::Const(alpha), c),
        ],
    );
}

fn swap_both(st: &mut State) {
    std::mem::swap(&mut st.v, &mut st.v_next);
    std::mem::swap(&mut st.w, &mut st.w_next);
}

/// `w_out = argmin_W2` for the encoder `v`: `(C V)(VᵀCV + λI)⁻¹`. Uses `cv`, `h`, `g`.
fn exact_decoder<E: Engine>(e: &mut E, s: &LoopSettings, st: &State, v: Tall, w_out: Tall) {
    e.c_mul_inverse(v, st.cv, st.h, s.lambda, st.g);
    e.mul_small(st.cv, st.g, w_out);
}

/// `v = argmin_W1ᵀ` for the decoder `w`, by `s.cg_steps` conjugate-gradient steps on
/// `A(V) = C V G + λV = C W` with `G = WᵀW`, warm-started from the current `v`. Uses `cw`, `tmp`, `g`.
fn exact_encoder<E: Engine>(e: &mut E, s: &LoopSettings, st: &State, w: Tall, v: Tall) {
    let cg = st.cg.as_ref().expect("exact solvers allocate CG space");
    let one = Coef::Const(1.0);
    e.inner(w, w, st.g);
    e.c_mul(w, st.cw); // the right-hand side
    apply_encoder_operator(e, s, st, v, cg.ap);
    e.combine(cg.r, &[(one, st.cw), (Coef::Const(-1.0), cg.ap)]);
    e.combine(cg.p, &[(one, cg.r)]);
    // ‖r‖² of this step and of the next: the two scalars trade places after each step (instead of a
    // copy, which would be a dispatch on the GPU); each call starts afresh from `cg.rr`.
    let (mut rr, mut rr_next) = (cg.rr, cg.rr_next);
    e.dot(cg.r, cg.r, rr);
    for _ in 0..s.cg_steps {
        apply_encoder_operator(e, s, st, cg.p, cg.ap);
        e.dot(cg.p, cg.ap, cg.pap);
        e.combine(v, &[(one, v), (Coef::Ratio(rr, cg.pap), cg.p)]);
        e.combine(cg.r, &[(one, cg.r), (Coef::NegRatio(rr, cg.pap), cg.ap)]);
        e.dot(cg.r, cg.r, rr_next);
        e.combine(cg.p, &[(one, cg.r), (Coef::Ratio(rr_next, rr), cg.p)]);
        std::mem::swap(&mut rr, &mut rr_next);
    }
}

/// `out = C x G + λx`.
fn apply_encoder_operator<E: Engine>(e: &mut E, s: &LoopSettings, st: &State, x: Tall, out: Tall) {
    e.c_mul(x, st.tmp);
    e.mul_small(st.tmp, st.g, out);
    e.combine(out, &[(Coef::Const(1.0), out), (Coef::Const(s.lambda), x)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stall_rules() {
        let paper = Solver::Tied.stall();
        let momentum = Solver::Momentum.stall();
        // A repeated value, to the bit, within the look-back: stalled at any level.
        assert!(is_stalled(&[3.0, 2.0, 1.0, 2.0], 0.0, paper));
        assert!(!is_stalled(&[3.0, 2.0, 1.0, 0.5], 0.0, paper));
        // Steady decrease below the floor: never stalled.
        let decreasing: Vec<f64> = (0..3000).map(|i| 1e-3 * 0.999f64.powi(i)).collect();
        assert!(!is_stalled(&decreasing, 1.0, paper));
        let fast: Vec<f64> = (0..200).map(|i| 0.93f64.powi(i)).collect();
        assert!(
            !is_stalled(&fast, 1.0, momentum),
            "halving within the window is progress"
        );
        assert!(
            is_stalled(&decreasing[..100], 1.0, momentum),
            "below the floor, 5% in 50 steps is not"
        );
        // Noise at the floor: the momentum rule stops after its window without halving, the paper's rule
        // only after a whole window without a new minimum.
        let noisy: Vec<f64> = (0..1200)
            .map(|i| 1e-6 * (1.0 + 0.1 * (i as f64 * 0.618_033_988_7).fract()))
            .collect();
        assert!(is_stalled(&noisy[..60], 1e-3, momentum));
        assert!(
            !is_stalled(&noisy[..60], 1e-9, momentum),
            "above the noise floor it is progress, slow or not"
        );
        assert!(is_stalled(&noisy, 1e-3, paper));
        // A rise far above the floor (a saddle) is not a stall.
        let saddle: Vec<f64> = (0..1500)
            .map(|i| if i < 100 { 1e-2 } else { 1e-1 + i as f64 })
            .collect();
        assert!(!is_stalled(&saddle, 1e-3, paper));
    }
}
