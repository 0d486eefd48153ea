//! The default solver ([`Solver::Auto`]): the locally optimal LAE step.
//!
//! The exact-tied step minimises the regularised loss over the decoders whose span is the current one;
//! at the minimum the decoder's span is that of C's top-k eigenvectors, and the loss restricted to
//! decoders inside a subspace S is minimised by the top-k Ritz vectors of C on S (with the theorem's
//! scaling `sqrt(1 − λ/θᵢ)`, which does not change the span). This step minimises it over the
//! search space `S = [X, R, P]` instead of span(X): the current orthonormal iterate X, its residual
//! `R = CX − X(XᵀCX)` (the loss's gradient direction on the Stiefel manifold) and the previous step's
//! direction P. That is LOBPCG (Knyazev 2001) on C: the momentum method with its step and momentum
//! chosen optimally at every iteration, with no parameter to tune and no λ in the loop.
//!
//! Guard columns: the iterate X has `b = k + g` columns ([`block_width`]: `g = ⌈k/2⌉`), of which
//! only the top k are wanted. LOBPCG's unwanted components then shrink at a rate set by the gap from
//! `λ_k` to `λ_{b+1}` rather than to `λ_{k+1}`: on the problems (`σ_{k+1}/σ_k` from 0.88 to
//! 0.997) that halves the passes to a given angle or better. Each product `C R` is with b columns
//! and counts as one pass (one pass over the data when C is applied from it); it costs `b/k` of a
//! k-column product.
//!
//! One iteration is one pass over C (`C R`); `C X` and `C P` follow from the small Ritz coefficients.
//! Stable in f32 (the known fixes for LOBPCG's ill-conditioning, Hetmaniuk & Lehoucq 2006, Duersch et
//! al. 2018): every new block of S is orthonormalised against the others, twice (R against X, then
//! against P; P against the new X), and within itself by SVQB ([`Engine::orthonormalizer`], the
//! eigenvalue form of Cholesky-QR, which drops the directions that are rounding noise instead of
//! breaking down), so the small problem is a standard
//! symmetric eigenproblem of order 3b, solved on the engine ([`Engine::ritz_vectors`]).
//!
//! Stopping quantity: the relative residual of the top k columns, `‖R_k‖_F / ‖(CX)_k‖_F`, recorded
//! before each pass (so a converged iterate costs no further pass on the CPU; on the GPU the next pass
//! runs while the check is read, and is discarded when the check ends the fit); the guard columns
//! converge more slowly and do not count. It is scale-free, so `tol` means the same for every data
//! set and on both paths; it bounds the backward error (the top-k block of X spans an exact
//! invariant subspace of a C perturbed by that relative amount) and the angle error divided by the
//! relative gap.

use super::{is_stalled, Checks, LoopResult, LoopSettings, Solver, Stall};
use crate::engine::{Engine, Projected, Small, Tall, SEARCH_BLOCKS};
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

/// The columns of the default solver's iterate for k wanted ones among m features: k and `⌈k/2⌉`
/// guard columns, fewer where the search basis of three such blocks would not fit in m dimensions
/// (none when `3k ≥ m`).
pub(crate) fn block_width(m: usize, k: usize) -> usize {
    let room = (m / SEARCH_BLOCKS).saturating_sub(k);
    k + k.div_ceil(2).min(room)
}

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
    /// The orthonormalised block before it takes the place of the block it came from.
    t: Tall,
    /// The same for the block's image under C (P's), and the new C P before it takes C P's place.
    ct: Tall,
    /// The next X; after a step, the X it started from.
    x_next: Tall,
    cx_next: Tall,
    p_next: Tall,
    gram: Small,
    coef: Small,
    transform: Small,
    h: Projected,
    y: Projected,
}

/// Runs the default solver with `k = w0.len() / m` wanted columns and `e.k() − k` guard columns: the
/// iterate starts from the initial decoder `w0` (m x k, column-major) and, for the guard columns, the
/// first columns of the random `v0` (m x k; a tied solver has no other use for it). The result's
/// decoder is the final iterate's top k columns (Ritz vectors), `iterations` the passes after the
/// first (`C X₀`), `history[i]` the stopping quantity after i iterations.
pub(crate) fn run_loop<E: Engine>(
    e: &mut E,
    s: &LoopSettings,
    (w0, v0): (&[f64], &[f64]),
    on_check: &mut dyn FnMut(usize, f64) -> Result<()>,
) -> Result<LoopResult> {
    let (m, width) = (e.m(), e.k());
    let k = w0.len() / m;
    let mut b = Basis {
        x: e.new_tall(),
        cx: e.new_tall(),
        r: e.new_tall(),
        cr: e.new_tall(),
        p: e.new_tall(), // zero: the first step searches [X, R] only
        cp: e.new_tall(),
    };
    let mut w = Work {
        t: e.new_tall(),
        ct: e.new_tall(),
        x_next: e.new_tall(),
        cx_next: e.new_tall(),
        p_next: e.new_tall(),
        gram: e.new_small(),
        coef: e.new_small(),
        transform: e.new_small(),
        h: e.new_projected(),
        y: e.new_projected(),
    };
    let start: Vec<f64> = w0.iter().chain(v0).take(m * width).copied().collect();
    e.upload(b.x, &start)?;
    for _ in 0..2 {
        orthonormalize(e, &mut w, &mut b.x, None);
    }
    e.c_mul(b.x, b.cx);
    residual(e, &w, &b, k);

    let mut checks = Checks::new(e);
    let mut iterations = 0;
    let mut pending = 1; // the start's stopping quantity is recorded, not yet checked

    // Where the engine overlaps checks (the GPU) and every iteration is checked, the next step is
    // submitted before a check is read, so that the device never waits for the host. The step keeps
    // the iterate it starts from (`Work::x_next` afterwards, see `step`): when the check ends the
    // loop, that checked iterate is the result, the same as without the overlap, and the step ahead
    // is discarded.
    let overlap = s.check_every == 1 && e.overlaps_checks();
    let mut submitted = false; // the current iterate's check is already submitted
    let mut result: Tall;
    loop {
        if pending == s.check_every || iterations == s.max_iter {
            if !submitted {
                e.submit_check();
            }
            let ahead = overlap && iterations < s.max_iter;
            if ahead {
                step(e, &mut w, &mut b);
                residual(e, &w, &b, k);
                e.submit_check();
            }
            // The checked iterate: the one before the step ahead, if any.
            result = if ahead { w.x_next } else { b.x };
            let values = e.read_check()?;
            if let Some(pos) = values.iter().position(|q| !q.is_finite()) {
                return Err(Error::Diverged {
                    solver: s.solver.name(),
                    iteration: iterations + 1 + pos - values.len(),
                });
            }
            checks.end_block(e, &values, pending == s.check_every);
            checks.start_block(e);
            pending = 0;
            if let Some(&q) = values.last() {
                on_check(iterations, q)?;
                if q < s.tol {
                    checks.converged = true;
                    checks.discarded_passes = usize::from(ahead);
                    break;
                }
            }
            if is_stalled(&checks.history, s.noise_floor, Solver::Auto.stall())
                || is_stalled(&checks.history, f64::INFINITY, STALL_ANYWHERE)
            {
                checks.stalled = true;
                checks.discarded_passes = usize::from(ahead);
                break;
            }
            if iterations == s.max_iter {
                break;
            }
            submitted = ahead;
            if ahead {
                iterations += 1;
                pending += 1;
                continue;
            }
        }
        step(e, &mut w, &mut b);
        residual(e, &w, &b, k);
        iterations += 1;
        pending += 1;
    }
    let mut decoder = e.download(result)?;
    decoder.truncate(m * k);
    Ok(checks.finish(e, s, (decoder.clone(), decoder), iterations))
}

/// `R = CX − X(XᵀCX)`, and the stopping quantity `‖R_k‖ / ‖(CX)_k‖` of the top k columns.
fn residual<E: Engine>(e: &mut E, w: &Work, b: &Basis, k: usize) {
    e.inner(b.x, b.cx, w.coef);
    e.mul_small_sub(b.r, b.cx, b.x, w.coef);
    e.record_stop_ratio(b.r, b.cx, k);
}

/// One Rayleigh–Ritz step over `[X, R, P]`: one pass over C.
fn step<E: Engine>(e: &mut E, w: &mut Work, b: &mut Basis) {
    // R orthonormal and orthogonal to X and P (P is already orthonormal and orthogonal to X). One
    // projection after the other (modified Gram–Schmidt): projecting against both at once from the
    // same R (classical) saves two dispatches but ended the paper's k = 2 problem in f32 at 5.9e-5
    // rad from the answer, beyond tests/auto.rs's bound of 3e-5 that this form meets.
    for _ in 0..2 {
        for q in [b.x, b.p] {
            e.inner(q, b.r, w.coef);
            e.mul_small_sub(b.r, b.r, q, w.coef);
        }
        orthonormalize(e, w, &mut b.r, None);
    }
    e.c_mul(b.r, b.cr);
    // The projected problem H = Sᵀ C S (S orthonormal: a standard eigenproblem).
    let (basis, image) = ([b.x, b.r, b.p], [b.cx, b.cr, b.cp]);
    e.projected(basis, image, w.h);
    e.ritz_vectors(w.h, w.y);
    // X ← S Y₁ (the top-k Ritz vectors), P ← the part of that step outside span(X): [R, P] Y₁'s rows;
    // C X and C P by the same coefficients (C P into the scratch `ct`).
    e.mul_blocks([basis, image], w.y, [w.x_next, w.cx_next], [w.p_next, w.ct]);
    // X, C X, P and C P to their new buffers. The old X stays in x_next until the next step writes
    // it (a check read after that step began still finds its iterate there).
    std::mem::swap(&mut b.x, &mut w.x_next);
    std::mem::swap(&mut b.cx, &mut w.cx_next);
    std::mem::swap(&mut b.p, &mut w.p_next);
    std::mem::swap(&mut b.cp, &mut w.ct);
    // P orthonormal and orthogonal to the new X, C P transformed alike.
    for _ in 0..2 {
        e.inner(b.x, b.p, w.coef);
        e.mul_small_sub_pair([b.p, b.cp], [b.x, b.cx], w.coef);
        orthonormalize(e, w, &mut b.p, Some(&mut b.cp));
    }
}

/// `v ← v T` with orthonormal columns (SVQB; zero columns for directions v does not have); with `cv`,
/// also `cv ← cv T`.
fn orthonormalize<E: Engine>(e: &mut E, w: &mut Work, v: &mut Tall, cv: Option<&mut Tall>) {
    e.inner(*v, *v, w.gram);
    e.orthonormalizer(w.gram, w.transform);
    match cv {
        Some(cv) => {
            e.mul_small_pair([*v, *cv], w.transform, [w.t, w.ct]);
            std::mem::swap(cv, &mut w.ct);
        }
        None => e.mul_small(*v, w.transform, w.t),
    }
    std::mem::swap(v, &mut w.t);
}

#[cfg(test)]
mod tests {
    use super::{block_width, run_loop};
    use crate::cpu::CpuEngine;
    use crate::engine::Engine;
    use crate::solver::{LoopSettings, Solver};
    use nalgebra::DMatrix;

    /// An engine that overlaps its checks (the GPU's way: each step submitted before the check before
    /// it is read) gives the same result, bit for bit, as one that does not: the checked iterate is
    /// kept through the step ahead, which is discarded. Ended by convergence, by a stall and by
    /// max_iter (no step ahead then).
    #[test]
    fn overlapped_checks_give_the_same_bits() {
        let (m, k) = (40, 3);
        let mut rng = crate::rng::Rng::new(3);
        let a = DMatrix::from_fn(m, m, |_, _| rng.normal());
        let c = a.transpose() * a;
        let (w0, v0) = (rng.normals(m * k), rng.normals(m * k));
        for (tol, max_iter, discarded) in [(1e-6, 1000, 1), (1e-300, 1000, 1), (1e-300, 4, 0)] {
            let settings = LoopSettings {
                solver: Solver::Auto,
                lambda: f64::NAN,
                alpha: f64::NAN,
                tol,
                max_iter,
                check_every: 1,
                cg_steps: 0,
                momentum: 0.0,
                noise_floor: 30.0 * f64::EPSILON * (m as f64).sqrt(),
            };
            let width = block_width(m, k);
            let fit = |overlap: bool| {
                let engine = CpuEngine::<f64>::new(&c, width, 1);
                let mut engine = if overlap {
                    engine.overlapping()
                } else {
                    engine
                };
                assert_eq!(engine.overlaps_checks(), overlap);
                let out = run_loop(&mut engine, &settings, (&w0, &v0), &mut |_, _| Ok(())).unwrap();
                (out, engine.passes())
            };
            let ((plain, plain_passes), (ahead, ahead_passes)) = (fit(false), fit(true));
            let what = format!("tol {tol:e}, max_iter {max_iter}");
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&plain.decoder), bits(&ahead.decoder), "{what}");
            assert_eq!(bits(&plain.history), bits(&ahead.history), "{what}");
            assert_eq!(plain.iterations, ahead.iterations, "{what}");
            assert_eq!(
                (plain.converged, plain.stalled),
                (ahead.converged, ahead.stalled),
                "{what}"
            );
            assert_eq!(plain.stats.discarded_passes, 0, "{what}");
            assert_eq!(ahead.stats.discarded_passes, discarded, "{what}");
            assert_eq!(ahead_passes, plain_passes + discarded, "{what}");
        }
    }

    #[test]
    fn guard_columns_fit_the_search_basis() {
        // ⌈k/2⌉ guard columns while three blocks fit in m dimensions, fewer after, none at 3k ≥ m.
        assert_eq!(block_width(784, 16), 24);
        assert_eq!(block_width(765, 50), 75);
        assert_eq!(block_width(10, 2), 3);
        assert_eq!(block_width(64, 21), 21);
        assert_eq!(block_width(64, 20), 21);
        assert_eq!(block_width(5, 2), 2);
        assert_eq!(block_width(5, 5), 5);
        assert_eq!(block_width(1, 1), 1);
    }
}
