//! Passes over C (products of C with a block of k columns, `Fit::passes`) and the error after each: the
//! trajectories of laepca's CPU solvers and of a reference LOBPCG on the same C.

use crate::common;
use crate::measure::{angle, Outcome};
use crate::problems::{Data, Reference};
use laepca::{GramStats, LaePca};
use nalgebra::DMatrix;
use serde::Serialize;
use std::time::Instant;

/// The error after a number of passes over C.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct PassPoint {
    pub passes: usize,
    /// Largest principal angle against the problem's f64 reference (radians).
    pub angle: f64,
}

/// laepca's error after each of its first iterations.
pub struct Trajectory {
    pub points: Vec<PassPoint>,
    /// Whether every capped fit was the prefix of the same run (see [`laepca_trajectory`]).
    pub prefix: bool,
}

/// The fits with `max_iter` = 1, 2, … (at most `max_fits` of them, up to where the run with `max_iter`
/// stops), each from the same C and seed: the solvers are deterministic, so the fit capped at i
/// iterations is the run's state after i iterations. That is checked, not assumed: each capped fit's
/// stopping-quantity history must be, bit for bit, the start of the full run's, and the fit capped where
/// the full run stops must give its directions bit for bit.
pub fn laepca_trajectory(
    data: &Data,
    b: &LaePca,
    stats: &GramStats,
    max_iter: usize,
    max_fits: usize,
    r: &Reference,
) -> Result<Trajectory, String> {
    let fit = |cap: usize| -> Result<Outcome, String> {
        data.fit_gram(&b.clone().max_iter(cap), stats)
            .map_err(|e| e.to_string())
    };
    let full = fit(max_iter)?;
    let same = |a: &[f64], b: &[f64]| {
        a.len() <= b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
    };
    let mut points = Vec::new();
    let mut prefix = true;
    for cap in 1..=full.iterations.min(max_fits) {
        let o = fit(cap)?;
        prefix &= same(&o.history, &full.history);
        if cap == full.iterations {
            prefix &= same(o.directions.as_slice(), full.directions.as_slice())
                && o.directions.len() == full.directions.len();
        }
        points.push(PassPoint {
            passes: o.passes,
            angle: angle(&o.directions, &r.directions),
        });
    }
    Ok(Trajectory { points, prefix })
}

/// The reference LOBPCG's run on C.
pub struct Lobpcg {
    /// The angle after each pass, 1 to the cap.
    pub points: Vec<PassPoint>,
    /// The first pass after which the relative residual `‖CX − X(XᵀCX)‖_F / ‖CX‖_F` (laepca's auto
    /// stopping quantity) is below the tolerance; None if it is not within the cap.
    pub stop: Option<usize>,
    /// m x k at the stopping pass (at the cap if none).
    pub directions: DMatrix<f64>,
    /// The Rayleigh quotients xᵢᵀ C xᵢ of those directions.
    pub values: Vec<f64>,
    /// m x k after the last pass of the cap.
    pub last: DMatrix<f64>,
    /// Seconds for all the passes of the cap.
    pub seconds: f64,
}

/// f64 LOBPCG with a block of k (tests/common's `reference_lobpcg`: Rayleigh-Ritz on the orthonormalised
/// span of [X, R, X_prev], seed 7 as in tests/auto.rs) for `cap` passes on C.
pub fn lobpcg(c: &DMatrix<f64>, k: usize, cap: usize, tol: f64, r: &Reference) -> Lobpcg {
    let t = Instant::now();
    let iterates = common::reference_lobpcg(c, k, cap, 7);
    let seconds = t.elapsed().as_secs_f64();
    let mut stop = None;
    let mut points = Vec::new();
    for (i, x) in iterates.iter().enumerate() {
        let cx = c * x;
        let residual = (&cx - x * (x.transpose() * &cx)).norm() / cx.norm();
        if stop.is_none() && residual < tol {
            stop = Some(i + 1);
        }
        points.push(PassPoint {
            passes: i + 1,
            angle: angle(x, &r.directions),
        });
    }
    let at = stop.unwrap_or(iterates.len());
    let directions = iterates[at - 1].clone();
    let values = (0..k)
        .map(|j| {
            let v = directions.column(j);
            v.dot(&(c * v))
        })
        .collect();
    Lobpcg {
        points,
        stop,
        directions,
        values,
        last: iterates[iterates.len() - 1].clone(),
        seconds,
    }
}

/// The first pass count after which the trajectory stays at or below `angle`.
pub fn passes_to(points: &[PassPoint], angle: f64) -> Option<usize> {
    let angles: Vec<f64> = points.iter().map(|p| p.angle).collect();
    common::passes_to(&angles, angle).map(|i| points[i - 1].passes)
}
