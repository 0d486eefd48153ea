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
//! The paper's published `algorithms.py` holds untied, sync, oja (tied) and exact (untied). Its exact
//! sync and tied rows (reference-numbers.md) are read here as the exact analogues of the gradient ones:
//! sync starts tied (so the decoder must move first for the start to matter), tied keeps `W1 = W2ᵀ`.
//! Two other readings were tried and dropped: both exact steps from one iterate (Jacobi) cycles with
//! period two, and an exact encoder step copied to the decoder leaves any rotation of the answer fixed
//! and converges at rate `1/(1 + λ(1/σ_{k+1}² − 1/σ_k²))`, far slower than the paper's 778 iterations.
//!
//! The exact decoder step is the k x k solve `W = (CV)(VᵀCV + λI)⁻¹`. The exact encoder step solves
//! `C V (WᵀW) + λV = C W` matrix-free by conjugate gradients over m x k matrices (warm-started from the
//! current V; never the mk x mk Kronecker system of the paper's code).

pub(crate) mod spectrum;

use crate::engine::{Coef, Engine, Scalar, Small, Tall};
use crate::error::{Error, Result};

/// The solver (the iteration) to run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Solver {
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
    #[default]
    ExactTied,
}

impl Solver {
    /// All solvers, in the paper's order.
    pub const ALL: [Solver; 6] = [
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

impl std::str::FromStr for Solver {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Solver::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| format!("unknown solver '{s}' (expected one of untied, sync, tied, exact-untied, exact-sync, exact-tied)"))
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
pub(crate) fn run_loop<E: Engine>(
    e: &mut E,
    s: &LoopSettings,
    w0: &[f64],
    v0: &[f64],
) -> Result<LoopResult> {
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
    };
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

    let mut history = Vec::new();
    let mut iterations = 0;
    let mut converged = false;
    let mut stalled = false;
    while iterations < s.max_iter {
        let block = s.check_every.min(s.max_iter - iterations);
        for _ in 0..block {
            step(e, s, &mut st);
        }
        iterations += block;
        let values = e.check()?;
        if let Some(pos) = values.iter().position(|q| !q.is_finite()) {
            return Err(Error::Diverged {
                solver: s.solver.name(),
                iteration: iterations - block + pos + 1,
            });
        }
        history.extend_from_slice(&values);
        if values.last().is_some_and(|&q| q < s.tol) {
            converged = true;
            break;
        }
        if is_stalled(&history, s.noise_floor) {
            stalled = true;
            break;
        }
    }
    let decoder = e.download(st.w)?;
    let encoder = if matches!(s.solver, Solver::Tied | Solver::ExactTied) {
        decoder.clone()
    } else {
        e.download(st.v)?
    };
    Ok(LoopResult {
        decoder,
        encoder,
        iterations,
        converged,
        stalled,
        history,
    })
}

/// One iteration of the chosen variant.
fn step<E: Engine>(e: &mut E, s: &LoopSettings, st: &mut State) {
    let (a, l) = (s.alpha, s.lambda);
    let keep = Coef::Const(1.0 - a * l);
    match s.solver {
        Solver::Untied => {
            // st.cv holds C V for the current V.
            e.c_mul(st.w, st.cw);
            e.inner(st.w, st.w, st.g);
            e.mul_small(st.cv, st.g, st.tmp);
            e.combine(
                st.v_next,
                &[
                    (keep, st.v),
                    (Coef::Const(-a), st.tmp),
                    (Coef::Const(a), st.cw),
                ],
            );
            e.c_mul(st.v_next, st.cv);
            e.inner(st.v_next, st.cv, st.h);
            e.mul_small(st.w, st.h, st.tmp);
            e.combine(
                st.w_next,
                &[
                    (keep, st.w),
                    (Coef::Const(-a), st.tmp),
                    (Coef::Const(a), st.cv),
                ],
            );
            e.record_stop(&[(st.v_next, st.w_next)]);
            swap_both(st);
        }
        Solver::Sync => {
            e.c_mul(st.v, st.cv);
            e.c_mul(st.w, st.cw);
            e.inner(st.w, st.w, st.g);
            e.inner(st.v, st.cv, st.h);
            e.mul_small(st.cv, st.g, st.tmp);
            e.combine(
                st.v_next,
                &[
                    (keep, st.v),
                    (Coef::Const(-a), st.tmp),
                    (Coef::Const(a), st.cw),
                ],
            );
            e.mul_small(st.w, st.h, st.tmp);
            e.combine(
                st.w_next,
                &[
                    (keep, st.w),
                    (Coef::Const(-a), st.tmp),
                    (Coef::Const(a), st.cv),
                ],
            );
            e.record_stop(&[(st.v_next, st.v), (st.w_next, st.w)]);
            swap_both(st);
        }
        Solver::Tied => {
            e.c_mul(st.w, st.cw);
            e.inner(st.w, st.cw, st.h);
            e.mul_small(st.w, st.h, st.tmp);
            e.combine(
                st.w_next,
                &[
                    (keep, st.w),
                    (Coef::Const(-a), st.tmp),
                    (Coef::Const(a), st.cw),
                ],
            );
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
        Solver::ExactTied => {
            exact_decoder(e, s, st, st.w, st.w_next);
            e.record_stop(&[(st.w_next, st.w)]);
            std::mem::swap(&mut st.w, &mut st.w_next);
        }
    }
}

/// How far back [`is_stalled`] looks for a repeated stopping quantity.
const STALL_LOOKBACK: usize = 16;
/// Iterations without a new smallest stopping quantity, at the noise floor, that count as a stall.
const STALL_WINDOW: usize = 200;

/// Whether the iteration has reached the floor of its working precision, where more iterations cannot
/// improve the result:
/// * the last stopping quantity repeats, to the bit, one of the [`STALL_LOOKBACK`] before it: the
///   iterate no longer changes (every update is below half an ulp) or cycles among a few states; or
/// * the smallest quantity so far is below `noise_floor` (a few ulps of the weights, summed over their
///   m·k entries) and the last [`STALL_WINDOW`] iterations found no smaller one: rounding noise.
///
/// (No new minimum alone would not do: the quantity rises for a while when the iterate escapes a saddle.)
fn is_stalled(history: &[f64], noise_floor: f64) -> bool {
    let Some((last, before)) = history.split_last() else {
        return false;
    };
    if before.iter().rev().take(STALL_LOOKBACK).any(|q| q == last) {
        return true;
    }
    if history.len() <= STALL_WINDOW {
        return false;
    }
    let (older, window) = history.split_at(history.len() - STALL_WINDOW);
    let best_before = older.iter().copied().fold(f64::INFINITY, f64::min);
    best_before < noise_floor && window.iter().all(|&q| q >= best_before)
}

fn swap_both(st: &mut State) {
    std::mem::swap(&mut st.v, &mut st.v_next);
    std::mem::swap(&mut st.w, &mut st.w_next);
}

/// `w_out = argmin_W2` for the encoder `v`: `(C V)(VᵀCV + λI)⁻¹`. Uses `cv`, `h`, `g`.
fn exact_decoder<E: Engine>(e: &mut E, s: &LoopSettings, st: &State, v: Tall, w_out: Tall) {
    e.c_mul(v, st.cv);
    e.inner(v, st.cv, st.h);
    e.inverse_spd(st.h, s.lambda, st.g);
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
    e.dot(cg.r, cg.r, cg.rr);
    for _ in 0..s.cg_steps {
        apply_encoder_operator(e, s, st, cg.p, cg.ap);
        e.dot(cg.p, cg.ap, cg.pap);
        e.combine(v, &[(one, v), (Coef::Ratio(cg.rr, cg.pap), cg.p)]);
        e.combine(cg.r, &[(one, cg.r), (Coef::NegRatio(cg.rr, cg.pap), cg.ap)]);
        e.dot(cg.r, cg.r, cg.rr_next);
        e.combine(cg.p, &[(one, cg.r), (Coef::Ratio(cg.rr_next, cg.rr), cg.p)]);
        e.copy_scalar(cg.rr_next, cg.rr);
    }
}

/// `out = C x G + λx`.
fn apply_encoder_operator<E: Engine>(e: &mut E, s: &LoopSettings, st: &State, x: Tall, out: Tall) {
    e.c_mul(x, st.tmp);
    e.mul_small(st.tmp, st.g, out);
    e.combine(out, &[(Coef::Const(1.0), out), (Coef::Const(s.lambda), x)]);
}
