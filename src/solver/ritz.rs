//! The default solver ([`Solver::Auto`]): the locally optimal LAE step.
//!
//! The exact-tied step minimises the regularised loss over the decoders whose span is the current one;
//! at the minimum the decoder's span is that of C's top-k eigenvectors, and the loss restricted to
//! decoders inside a subspace S is minimised by the top-k Ritz vectors of C on S (with the theorem's
//! scaling `sqrt(1 − λ/θᵢ)`, which does not change the span). This step minimises it over the
//! 3k-dimensional search space `S = [X, R, P]` instead of span(X): the current orthonormal iterate X,
//! its residual `R = CX − X(XᵀCX)` (the loss's gradient direction on the Stiefel manifold) and the
//! previous step's direction P. That is LOBPCG (Knyazev 2001) on C: the momentum method with its step
//! and momentum chosen optimally at every iteration, with no parameter to tune and no λ in the loop.
//!
//! One iteration is one pass over C (`C R`); `C X` and `C P` follow from the small Ritz coefficients.
//! Stable in f32 (the known fixes for LOBPCG's ill-conditioning, Hetmaniuk & Lehoucq 2006, Duersch et
//! al. 2018): every block of S is orthonormalised against the blocks before it, twice, and within
//! itself by SVQB ([`Engine::orthonormalizer`], the eigenvalue form of Cholesky-QR, which drops the
//! directions that are rounding noise instead of breaking down), so the small problem is a standard
//! symmetric eigenproblem of order 3k, solved on the engine ([`Engine::ritz_vectors`]).
//!
//! Stopping quantity: the relative residual `‖CX − X(XᵀCX)‖_F / ‖CX‖_F`, recorded before each pass
//! (so a converged iterate costs no further pass). It is scale-free, so `tol` means the same for every
//! data set and on both paths; it bounds the backward error (X is an exact invariant subspace of a C
//! perturbed by that relative amount) and the angle error divided by the relative gap.

use super::{is_stalled, LoopResult, LoopSettings, Solver, Stall};
use crate::engine::{Coef, Engine, LoopStats, Projected, Small, Tall};
use crate::error::{Error, Result};

/// At the rounding floor LOBPCG's residual stops shrinking at once: three passes without halving it
/// is a stall (see [`is_stalled`]), below the noise floor (`LoopSettings::noise_floor`, 30 ulps times
/// √m: the floors measured on the tests' problems are 1 to 9 ulps times √m, CPU and GPU). Not two: the
/// residual's floor is set by the largest components' rounding, and the last component's angle still
/// improves for a pass or two after it is reached.
pub(super) const STALL: Stall = Stall {
    window: 3,
    factor: 0.5,
};
/// And, at any level, ten passes without a new smallest residual.
const STALL_ANYWHERE: Stall = Stall {
    window: 10,
    factor: 1.0,
};

/// The three blocks of the search basis and their images under C.
struct Basis {
    x: Tall,
    cx: Tall,
    r: Tall,
    cr: Tall,
    p: Tall,
    cp: Tall,
}

/// Scratch space of one solve.
struct Work {
    /// Three products with a block of the Ritz coefficients (then the new X, P or CX, CP from them).
    t: [Tall; 3],
    x_next: Tall,
    p_next: Tall,
    gram: Small,
    coef: Small,
    transform: Small,
    h: Projected,
    y: Projected,
}

/// Runs the default solver from the initial decoder `w0` (m x k, column-major): the result's decoder
/// is the final orthonormal iterate X (its Ritz vectors), `iterations` the passes after the first
/// (`C X₀`), `history[i]` the stopping quantity after i iterations.
pub(crate) fn run_loop<E: Engine>(
    e: &mut E,
    s: &LoopSettings,
    w0: &[f64],
    on_check: &mut dyn FnMut(usize, f64) -> Result<()>,
) -> Result<LoopResult> {
    let mut b = Basis {
        x: e.new_tall(),
        cx: e.new_tall(),
        r: e.new_tall(),
        cr: e.new_tall(),
        p: e.new_tall(), // zero: the first step searches [X, R] only
        cp: e.new_tall(),
    };
    let mut w = Work {
        t: [e.new_tall(), e.new_tall(), e.new_tall()],
        x_next: e.new_tall(),
        p_next: e.new_tall(),
        gram: e.new_small(),
        coef: e.new_small(),
        transform: e.new_small(),
        h: e.new_projected(),
        y: e.new_projected(),
    };
    e.upload(b.x, w0)?;
    for _ in 0..2 {
        orthonormalize(e, &mut w, &mut b.x, None);
    }
    e.c_mul(b.x, b.cx);
    residual(e, &w, &b);

    let mut history = Vec::new();
    let mut iterations = 0;
    let mut converged = false;
    let mut stalled = false;
    let mut pending = 1; // the start's stopping quantity is recorded, not yet checked
                         // The counts of one block of check_every iterations, from the third full block on.
    let (mut block_start, mut full_blocks, mut steady_block) = (e.stats(), 0, None);
    loop {
        if pending == s.check_every || iterations == s.max_iter {
            let full = pending == s.check_every;
            let values = e.check()?;
            if let Some(pos) = values.iter().position(|q| !q.is_finite()) {
                return Err(Error::Diverged {
                    solver: s.solver.name(),
                    iteration: iterations + 1 + pos - values.len(),
                });
            }
            if full {
                full_blocks += 1;
                if full_blocks >= 3 {
                    steady_block = Some(e.stats() - block_start);
                }
            }
            block_start = e.stats();
            history.extend_from_slice(&values);
            pending = 0;
            if let Some(&q) = values.last() {
                on_check(iterations, q)?;
                if q < s.tol {
                    converged = true;
                    break;
                }
            }
            if is_stalled(&history, s.noise_floor, Solver::Auto.stall())
                || is_stalled(&history, f64::INFINITY, STALL_ANYWHERE)
            {
                stalled = true;
                break;
            }
            if iterations == s.max_iter {
                break;
            }
        }
        step(e, &mut w, &mut b);
        residual(e, &w, &b);
        iterations += 1;
        pending += 1;
    }
    let decoder = e.download(b.x)?;
    Ok(LoopResult {
        encoder: decoder.clone(),
        decoder,
        iterations,
        converged,
        stalled,
        history,
        stats: LoopStats {
            total: e.stats(),
            steady_block,
            block_iterations: s.check_every,
        },
    })
}

/// `R = CX − X(XᵀCX)`, and the stopping quantity `‖R‖ / ‖CX‖`.
fn residual<E: Engine>(e: &mut E, w: &Work, b: &Basis) {
    e.inner(b.x, b.cx, w.coef);
    e.mul_small(b.x, w.coef, w.t[0]);
    e.combine(
        b.r,
        &[(Coef::Const(1.0), b.cx), (Coef::Const(-1.0), w.t[0])],
    );
    e.record_stop_ratio(b.r, b.cx);
}

/// One Rayleigh–Ritz step over `[X, R, P]`: one pass over C.
fn step<E: Engine>(e: &mut E, w: &mut Work, b: &mut Basis) {
    // R orthonormal and orthogonal to X and P (P is already orthonormal and orthogonal to X).
    for _ in 0..2 {
        project_out(e, w, b.x, None, b.r, None);
        project_out(e, w, b.p, None, b.r, None);
        orthonormalize(e, w, &mut b.r, None);
    }
    e.c_mul(b.r, b.cr);
    // The projected problem H = Sᵀ C S (S orthonormal: a standard eigenproblem).
    let blocks = [(b.x, b.cx), (b.r, b.cr), (b.p, b.cp)];
    for i in 0..3 {
        for j in i..3 {
            e.inner_block(blocks[i].0, blocks[j].1, w.h, (i, j));
        }
    }
    e.ritz_vectors(w.h, w.y);
    // X ← S Y₁ (the top-k Ritz vectors), P ← the part of that step outside span(X): [R, P] Y₁'s rows;
    // C X and C P by the same coefficients.
    let one = Coef::Const(1.0);
    for (from, to_x, to_p) in [(0, w.x_next, w.p_next), (1, b.x, b.p)] {
        for (i, block) in blocks.iter().enumerate() {
            let src = if from == 0 { block.0 } else { block.1 };
            e.mul_block(src, w.y, i, w.t[i]);
        }
        e.combine(to_x, &[(one, w.t[0]), (one, w.t[1]), (one, w.t[2])]);
        e.combine(to_p, &[(one, w.t[1]), (one, w.t[2])]);
    }
    // The second round wrote C X and C P over the old X and P (no longer needed): rename.
    std::mem::swap(&mut b.cx, &mut b.x);
    std::mem::swap(&mut b.cp, &mut b.p);
    std::mem::swap(&mut b.x, &mut w.x_next);
    std::mem::swap(&mut b.p, &mut w.p_next);
    // P orthonormal and orthogonal to the new X, C P transformed alike.
    for _ in 0..2 {
        project_out(e, w, b.x, Some(b.cx), b.p, Some(b.cp));
        orthonormalize(e, w, &mut b.p, Some(&mut b.cp));
    }
}

/// `v ← v − q (qᵀ v)` for an orthonormal (or zero) q; with `cq`, also `cv ← cv − cq (qᵀ v)`.
fn project_out<E: Engine>(
    e: &mut E,
    w: &Work,
    q: Tall,
    cq: Option<Tall>,
    v: Tall,
    cv: Option<Tall>,
) {
    e.inner(q, v, w.coef);
    for (basis, target) in [(Some(q), Some(v)), (cq, cv)] {
        if let (Some(basis), Some(target)) = (basis, target) {
            e.mul_small(basis, w.coef, w.t[0]);
            e.combine(
                target,
                &[(Coef::Const(1.0), target), (Coef::Const(-1.0), w.t[0])],
            );
        }
    }
}

/// `v ← v T` with orthonormal columns (SVQB; zero columns for directions v does not have); with `cv`,
/// also `cv ← cv T`.
fn orthonormalize<E: Engine>(e: &mut E, w: &mut Work, v: &mut Tall, cv: Option<&mut Tall>) {
    e.inner(*v, *v, w.gram);
    e.orthonormalizer(w.gram, w.transform);
    e.mul_small(*v, w.transform, w.t[0]);
    std::mem::swap(v, &mut w.t[0]);
    if let Some(cv) = cv {
        e.mul_small(*cv, w.transform, w.t[0]);
        std::mem::swap(cv, &mut w.t[0]);
    }
}
