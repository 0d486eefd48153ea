//! What a fit returns: the result with its diagnostics and timings, and the projection it leaves for
//! `transform`.

use crate::data::SampleView;
use crate::engine::LoopStats;
use crate::error::{Error, Result};
use crate::gpu::DeviceInfo;
use crate::params::Backend;
use crate::real::Real;
use crate::solver::Solver;
use nalgebra::{DMatrix, DVector};
use std::time::Duration;

/// Wall-clock time of each phase of a fit.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timings {
    /// Moving C (or, after a GPU Gram phase, making the loop's C from its sums on the device) and the
    /// initial weights to the device (zero on the CPU; the data's chunks go to the device inside
    /// `gram`).
    pub upload: Duration,
    /// Computing C (and the mean).
    pub gram: Duration,
    /// The GPU time of the Gram phase's kernels (timestamp queries, summed over the chunks' compute
    /// passes), where C was accumulated on a device that has them; else None.
    pub gram_kernels: Option<Duration>,
    /// Choosing λ and α and checking λ (the subspace-iteration estimate; for auto only the start, its λ
    /// comes from its own Ritz values).
    pub setup: Duration,
    /// The solver loop.
    pub iterate: Duration,
    /// The GPU time of the loop's compute passes (timestamp queries), where it ran on a device that
    /// has them; else None.
    pub iterate_kernels: Option<Duration>,
    /// Reading the weights back (zero on the CPU).
    pub readback: Duration,
    /// The small SVD, the Rayleigh quotients and the variances.
    pub finish: Duration,
    /// The whole fit.
    pub total: Duration,
}

/// The GPU time of one kernel over a fit's loop ([`LaePca::profile_kernels`](crate::LaePca::profile_kernels)).
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    /// The kernel's entry point (a function of shaders/*.wgsl).
    pub kernel: &'static str,
    /// Its dispatches in the loop.
    pub dispatches: usize,
    /// Their GPU time: the sum over its dispatches of the time between the timestamps at the
    /// beginning and end of each one's compute pass.
    pub time: Duration,
}

/// The result of a fit.
#[derive(Clone, Debug)]
pub struct Fit<T: Real> {
    /// k x m: the principal directions as rows, by decreasing variance, each with its entry of largest
    /// absolute value positive (scikit-learn's convention).
    pub components: DMatrix<T>,
    /// The singular values σ_i of the centred data, from the Rayleigh quotients `u_iᵀ C u_i`.
    pub singular_values: DVector<T>,
    /// The same by the paper's formula `sqrt(λ / (1 − s_i²))` from the decoder's singular values s_i, for
    /// study (it loses digits when λ ≪ σ²).
    pub singular_values_paper: DVector<f64>,
    /// The decoder's singular value along each component, `‖W2ᵀ u_i‖`: W2's singular values for the
    /// paper's variants (the theorem: `s_i² = 1 − λ/σ_i²`); for auto, whose decoder is the LAE optimum
    /// on its final span, the theorem's values exactly; for momentum, whose momentum moves the
    /// decoder's scale off the theorem's, only a diagnostic.
    pub decoder_singular_values: DVector<f64>,
    /// `σ_i² / (n − 1)`.
    pub explained_variance: DVector<T>,
    /// `σ_i² / trace(C)`: the share of the total variance.
    pub explained_variance_ratio: DVector<T>,
    /// The mean of each feature that was removed (zeros with `center(false)`).
    pub mean: DVector<T>,
    /// The decoder W2 (m x k) as the loop left it; for auto, the minimiser of the regularised loss among
    /// the decoders of the loop's final span, `U diag(sqrt(1 − λ/σ_i²))` (its iteration holds an
    /// orthonormal basis, not a decoder).
    pub decoder: DMatrix<T>,
    /// The encoder W1 (k x m) as the loop left it (for auto, `W2ᵀ`).
    pub encoder: DMatrix<T>,
    /// Samples of the data.
    pub n_samples: usize,
    /// Features of the data.
    pub n_features: usize,
    /// The solver that ran.
    pub solver: Solver,
    /// The backend that ran (never `Auto`).
    pub backend: Backend,
    /// The arithmetic of the loop: the data's on the CPU; on the GPU f32, or f64 where
    /// [`LaePca::gpu_precision`](crate::LaePca::gpu_precision) and the device allow (then C was
    /// accumulated on the CPU in f64).
    pub arithmetic: crate::Arithmetic,
    /// How C was applied: [`Method::Gram`](crate::Method::Gram),
    /// [`Method::GramT`](crate::Method::GramT) or [`Method::Operator`](crate::Method::Operator) (never
    /// `Auto`).
    pub method: crate::Method,
    /// Why that method (asked for, or the automatic choice's reason).
    pub method_reason: String,
    /// The GPU adapter that ran (None on the CPU).
    pub adapter: Option<DeviceInfo>,
    /// What the solver loop's engine did: submissions, host waits, dispatches, buffers and bind groups
    /// created, in all and per steady block of `check_every` iterations (zeros on the CPU).
    pub loop_stats: LoopStats,
    /// With [`LaePca::profile_kernels`](crate::LaePca::profile_kernels) on a GPU with timestamp
    /// queries, each kernel of the loop with its dispatches and GPU time, by decreasing time (their
    /// times sum to `timings.iterate_kernels`, to a nanosecond per dispatch); else empty.
    pub kernel_profile: Vec<KernelTime>,
    /// The λ used.
    pub lambda: f64,
    /// The gradient step size α used; `None` for the solvers without a gradient step (auto, momentum
    /// and the exact ones).
    pub alpha: Option<f64>,
    /// The tolerance used.
    pub tol: f64,
    /// Iterations run.
    pub iterations: usize,
    /// Products of C with the loop's block, the setup's included (the subspace iteration that
    /// chooses λ, α and β, in k-column units): the cost that matters when C is applied from the data.
    /// The block has k columns, for auto `k + ⌈k/2⌉` (its guard columns; fewer when three such blocks
    /// exceed the features): each of its products counts as one pass (one pass over the data), with
    /// the arithmetic of `(k + ⌈k/2⌉)/k` k-column products. The finish's f64 Rayleigh quotients (one
    /// more product, on the CPU) are not counted.
    pub passes: usize,
    /// Whether the stopping quantity fell below `tol` before `max_iter`.
    pub converged: bool,
    /// Whether the loop stopped at the rounding floor of its working precision before reaching `tol`:
    /// the stopping quantity repeated to the bit (the iterate no longer changes, or cycles), or it sat
    /// below its noise level without progress for a window of iterations (1000 for the paper's
    /// variants; 50 without halving for momentum; for auto 3 without halving, or 10 without a new
    /// minimum at any level). Not converged; more iterations would only move the
    /// result within rounding noise.
    pub stalled: bool,
    /// The stopping quantity after each iteration (a block the momentum solver undid after a
    /// divergence counts in `iterations` but leaves no entries); for auto, `history[i]` after i
    /// iterations, `history[0]` the start's.
    pub history: Vec<f64>,
    /// Per-phase wall-clock times.
    pub timings: Timings,
}

impl<T: Real> Fit<T> {
    /// The fitted projection (components and mean), e.g. to save and apply later.
    pub fn projection(&self) -> Projection<T> {
        Projection {
            components: self.components.clone(),
            mean: self.mean.clone(),
        }
    }

    /// Scores of new samples (rows, n x m): `(x − mean) componentsᵀ`, n x k.
    pub fn transform(&self, x: &DMatrix<T>) -> Result<DMatrix<T>> {
        Projection::transform_with(&self.components, &self.mean, x)
    }

    /// Back from scores (n x k) to the data space: `scores · components + mean`, n x m.
    pub fn inverse_transform(&self, scores: &DMatrix<T>) -> Result<DMatrix<T>> {
        Projection::inverse_transform_with(&self.components, &self.mean, scores)
    }
}

/// A PCA projection: k components (rows, k x m) and the mean (m) they are centred on. What a fit leaves
/// for `transform`; it can also be rebuilt from saved arrays.
#[derive(Clone, Debug, PartialEq)]
pub struct Projection<T: Real> {
    /// k x m: the principal directions as rows.
    pub components: DMatrix<T>,
    /// The mean (m) removed before projecting.
    pub mean: DVector<T>,
}

impl<T: Real> Projection<T> {
    /// A projection from saved arrays. Errors ([`Error::InvalidModel`]) unless it is one a fit can
    /// give: at least one component, no more components than features, the mean's length the
    /// components' width, every value finite.
    pub fn new(components: DMatrix<T>, mean: DVector<T>) -> Result<Self> {
        check_mean(&components, &mean)?;
        let (k, m) = components.shape();
        let invalid = |detail: String| Err(Error::InvalidModel { detail });
        if k == 0 || k > m {
            return invalid(format!(
                "{k} components of {m} features (a fit gives 1 to {m} components)"
            ));
        }
        if let Some(pos) = components.iter().position(|v| !v.as_f64().is_finite()) {
            let (row, col) = (pos % k, pos / k);
            return invalid(format!(
                "non-finite value {} in the components at row {row}, column {col}",
                components[(row, col)].as_f64()
            ));
        }
        if let Some(i) = mean.iter().position(|v| !v.as_f64().is_finite()) {
            return invalid(format!(
                "non-finite value {} in the mean at index {i}",
                mean[i].as_f64()
            ));
        }
        Ok(Projection { components, mean })
    }

    /// Scores of samples (rows, n x m): `(x − mean) componentsᵀ`, n x k.
    pub fn transform(&self, x: &DMatrix<T>) -> Result<DMatrix<T>> {
        Self::transform_with(&self.components, &self.mean, x)
    }

    /// Back from scores (n x k) to the data space: `scores · components + mean`, n x m.
    pub fn inverse_transform(&self, scores: &DMatrix<T>) -> Result<DMatrix<T>> {
        Self::inverse_transform_with(&self.components, &self.mean, scores)
    }

    /// Scores of sparse samples (rows of `x`), `(x − mean) componentsᵀ` (n x k), without densifying x:
    /// `x componentsᵀ − 1 (mean · componentsᵀ)`, summed in f64.
    pub fn transform_csr(&self, x: &crate::CsrMatrix<T>) -> Result<DMatrix<T>> {
        check_width(
            &self.components,
            &self.mean,
            "features, the data has",
            x.ncols(),
            self.components.ncols(),
        )?;
        let w = self.components.transpose().map(|v| v.as_f64());
        let mean: Vec<f64> = self.mean.iter().map(|v| v.as_f64()).collect();
        Ok(x.centred_product(&w, &mean).map(T::of_f64))
    }

    fn transform_with(
        components: &DMatrix<T>,
        mean: &DVector<T>,
        x: &DMatrix<T>,
    ) -> Result<DMatrix<T>> {
        check_width(
            components,
            mean,
            "features, the data has",
            x.ncols(),
            components.ncols(),
        )?;
        if let Some((row, col, value)) =
            SampleView::matrix(x, crate::Layout::SamplesInRows).first_non_finite()
        {
            return Err(Error::NonFinite { row, col, value });
        }
        let mut centred = x.clone();
        for mut row in centred.row_iter_mut() {
            row -= mean.transpose();
        }
        Ok(centred * components.transpose())
    }

    fn inverse_transform_with(
        components: &DMatrix<T>,
        mean: &DVector<T>,
        scores: &DMatrix<T>,
    ) -> Result<DMatrix<T>> {
        let k = components.nrows();
        check_width(
            components,
            mean,
            "components, the scores have",
            scores.ncols(),
            k,
        )?;
        let mut x = scores * components;
        for mut row in x.row_iter_mut() {
            row += mean.transpose();
        }
        Ok(x)
    }
}

/// Checks the model's mean (see [`check_mean`]) and that an input has `expected` columns: else "the
/// model has {expected} {what} {columns} columns".
fn check_width<T: Real>(
    components: &DMatrix<T>,
    mean: &DVector<T>,
    what: &str,
    columns: usize,
    expected: usize,
) -> Result<()> {
    check_mean(components, mean)?;
    if columns != expected {
        return Err(Error::ShapeMismatch {
            what: format!("the model has {expected} {what} {columns} columns"),
        });
    }
    Ok(())
}

/// The mean must have one entry per feature (column) of the components.
fn check_mean<T: Real>(components: &DMatrix<T>, mean: &DVector<T>) -> Result<()> {
    if components.ncols() != mean.len() {
        return Err(Error::ShapeMismatch {
            what: format!(
                "{} components of {} features, but a mean of {}",
                components.nrows(),
                components.ncols(),
                mean.len()
            ),
        });
    }
    Ok(())
}
