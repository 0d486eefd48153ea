//! What a run measures: a fit's outcome, its accuracy against the reference, its phases' times.

use crate::common;
use crate::problems::{Data, Reference};
use faer::linalg::matmul::matmul;
use faer::{Accum, MatRef, Par};
use laepca::{Fit, Real, Solver, Timings};
use nalgebra::DMatrix;
use serde::Serialize;
use std::time::{Duration, Instant};

/// What the benchmark keeps of a fit, whatever its precision.
pub struct Outcome {
    /// m x k columns.
    pub directions: DMatrix<f64>,
    pub sigma: Vec<f64>,
    pub evr: Vec<f64>,
    pub timings: Timings,
    pub iterations: usize,
    pub converged: bool,
    pub stalled: bool,
    pub solver: Solver,
    pub lambda: f64,
    pub alpha: Option<f64>,
    pub passes: usize,
    /// The stopping quantity at each check.
    pub history: Vec<f64>,
    pub submissions: usize,
    pub readbacks: usize,
}

impl Outcome {
    pub fn of<T: Real>(f: &Fit<T>) -> Self {
        Outcome {
            directions: f.components.transpose().map(|v| v.as_f64()),
            sigma: f.singular_values.iter().map(|v| v.as_f64()).collect(),
            evr: f
                .explained_variance_ratio
                .iter()
                .map(|v| v.as_f64())
                .collect(),
            timings: f.timings,
            iterations: f.iterations,
            converged: f.converged,
            stalled: f.stalled,
            solver: f.solver,
            lambda: f.lambda,
            alpha: f.alpha,
            passes: f.passes,
            history: f.history.clone(),
            submissions: f.loop_stats.total.submissions,
            readbacks: f.loop_stats.total.host_waits,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Accuracy {
    /// Largest principal angle between the fitted and the reference subspace (radians).
    pub angle: f64,
    /// max_i |σ̂_i − σ_i| / σ_i.
    pub sv_rel_err: f64,
    /// max_i |r̂_i − r_i| / r_i for the explained-variance ratios.
    pub evr_rel_err: f64,
    /// The paper's error: Σ_i min ‖u_i ± û_i‖.
    pub direction_err: f64,
}

/// The largest principal angle between span(`directions`) (m x k, any basis) and span(`reference`)
/// (orthonormal columns).
pub fn angle(directions: &DMatrix<f64>, reference: &DMatrix<f64>) -> f64 {
    common::largest_principal_angle(reference, &common::orthonormal(directions))
}

pub fn accuracy(directions: &DMatrix<f64>, sigma: &[f64], evr: &[f64], r: &Reference) -> Accuracy {
    let rel = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| ((x - y) / y).abs())
            .fold(0.0, f64::max)
    };
    Accuracy {
        angle: angle(directions, &r.directions),
        sv_rel_err: rel(sigma, &r.sigma),
        evr_rel_err: rel(evr, &r.evr),
        direction_err: direction_error(directions, &r.directions),
    }
}

/// The paper's measure: Σ over columns of min(‖u − û‖, ‖u + û‖).
pub fn direction_error(a: &DMatrix<f64>, b: &DMatrix<f64>) -> f64 {
    (0..a.ncols().min(b.ncols()))
        .map(|j| {
            let (u, v) = (a.column(j), b.column(j));
            (u - v).norm().min((u + v).norm())
        })
        .sum()
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Phases {
    pub upload: f64,
    pub gram: f64,
    pub setup: f64,
    pub iterate: f64,
    pub readback: f64,
    pub finish: f64,
    /// total − the phases above: opening the device, validation, copies outside the phases.
    pub other: f64,
    pub total: f64,
    /// The GPU time of the Gram kernels (timestamp queries; part of `gram`), 0 where not measured.
    pub gram_kernels: f64,
    /// The GPU time of the loop's compute passes (timestamp queries), 0 where not measured.
    pub iterate_kernels: f64,
}

impl Phases {
    pub fn of(t: &Timings) -> Self {
        let s = |d: Duration| d.as_secs_f64();
        let sum = t.upload + t.gram + t.setup + t.iterate + t.readback + t.finish;
        Phases {
            upload: s(t.upload),
            gram: s(t.gram),
            setup: s(t.setup),
            iterate: s(t.iterate),
            readback: s(t.readback),
            finish: s(t.finish),
            other: s(t.total.saturating_sub(sum)),
            total: s(t.total),
            gram_kernels: t.gram_kernels.map_or(0.0, s),
            iterate_kernels: t.iterate_kernels.map_or(0.0, s),
        }
    }

    /// The median of each phase over the runs.
    pub fn median(all: &[Phases]) -> Self {
        let med = |f: fn(&Phases) -> f64| median(&all.iter().map(f).collect::<Vec<_>>());
        Phases {
            upload: med(|p| p.upload),
            gram: med(|p| p.gram),
            setup: med(|p| p.setup),
            iterate: med(|p| p.iterate),
            readback: med(|p| p.readback),
            finish: med(|p| p.finish),
            other: med(|p| p.other),
            total: med(|p| p.total),
            gram_kernels: med(|p| p.gram_kernels),
            iterate_kernels: med(|p| p.iterate_kernels),
        }
    }
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => 0.5 * (s[n / 2 - 1] + s[n / 2]),
    }
}

/// Runs `f` once as a warm-up, then `runs` more times unless the warm-up was slower than `slow_s`;
/// returns the median phases, the number of timed runs and the last result.
pub fn measure<R>(
    runs: usize,
    slow_s: f64,
    mut f: impl FnMut() -> Result<(R, Phases), String>,
) -> Result<(R, Phases, usize), String> {
    let (first, p0) = f()?;
    if p0.total > slow_s || runs == 0 {
        return Ok((first, p0, 1));
    }
    let mut all = Vec::new();
    let mut last = first;
    for _ in 0..runs {
        let (r, p) = f()?;
        all.push(p);
        last = r;
    }
    Ok((last, Phases::median(&all), runs))
}

/// C's reads per iteration of a solver (products with C): see the solver loop in src/solver/mod.rs.
pub fn c_products_per_iter(solver: Solver, m: usize, k: usize) -> Option<f64> {
    match solver {
        Solver::Untied | Solver::Sync => Some(2.0),
        // Auto: C R (its setup-free start adds one, C X₀); momentum: C W (its setup adds 10 (k + 8)/k).
        Solver::Auto | Solver::Momentum | Solver::Tied | Solver::ExactTied => Some(1.0),
        // Decoder: one product; encoder: the right-hand side, the first residual and one per CG step.
        Solver::ExactUntied | Solver::ExactSync => Some(3.0 + (m * k).min(16) as f64),
        _ => None,
    }
}

/// [`measure`] for a Gram-like computation that cannot fail: its last result and median seconds.
pub fn measure_gram<R>(runs: usize, slow_s: f64, mut f: impl FnMut() -> R) -> (R, f64) {
    let (r, ph, _) = measure(runs, slow_s, || {
        let t = Instant::now();
        let r = f();
        let secs = t.elapsed().as_secs_f64();
        Ok((
            r,
            Phases {
                gram: secs,
                total: secs,
                ..Phases::default()
            },
        ))
    })
    .expect("the computation cannot fail");
    (r, ph.total)
}

/// The rate of this machine's f32 gemm on the Gram's shape: the reference for the CPU Gram phase's rate.
pub struct SgemmRate {
    /// GFLOP/s of the full product XᵀX (2·n·m² flops), the median of the runs.
    pub gflops: f64,
    /// Whose gemm: OpenBLAS's (what NumPy and so scikit-learn call) when the environment variable
    /// `OPENBLAS` names the library, else faer's.
    pub kernel: &'static str,
}

/// The full f32 product XᵀX on the problem's n x m data, by OpenBLAS's sgemm when `OPENBLAS` names an
/// OpenBLAS library (benches/common/openblas.rs; NumPy's wheels ship one), else by faer's matmul.
pub fn sgemm_gflops(data: &Data, n: usize, m: usize, runs: usize, slow_s: f64) -> SgemmRate {
    let x = data.to_f32();
    let mut out = vec![0f32; m * m];
    #[cfg(unix)]
    if let Ok(path) = std::env::var("OPENBLAS") {
        let blas = crate::openblas::OpenBlas::open(&path);
        let gflops = gemm_rate(n, m, runs, slow_s, || blas.gram_full(&x, n, m, &mut out));
        return SgemmRate {
            gflops,
            kernel: "OpenBLAS's sgemm",
        };
    }
    // Row-major n x m is column-major m x n: Xᵀ.
    let xt = MatRef::from_column_major_slice(&x, m, n);
    let dst = faer::MatMut::from_column_major_slice_mut(&mut out, m, m);
    let mut dst = dst;
    let gflops = gemm_rate(n, m, runs, slow_s, || {
        matmul(
            dst.as_mut(),
            Accum::Replace,
            xt,
            xt.transpose(),
            1.0f32,
            Par::rayon(0),
        )
    });
    SgemmRate {
        gflops,
        kernel: "faer's f32 gemm",
    }
}

/// GFLOP/s of `product`, an n x m XᵀX: the median of the runs. Small products are repeated (the same
/// count in every timing) to take about 10 ms, so that the clock's resolution and the thread pool's
/// wake-up do not decide the rate.
fn gemm_rate(n: usize, m: usize, runs: usize, slow_s: f64, mut product: impl FnMut()) -> f64 {
    let t = Instant::now();
    product();
    let reps = (0.01 / t.elapsed().as_secs_f64().max(1e-9)).clamp(1.0, 1e4) as usize;
    let (_, secs) = measure_gram(runs, slow_s, || (0..reps).for_each(|_| product()));
    2.0 * n as f64 * (m * m) as f64 * reps as f64 / secs / 1e9
}
