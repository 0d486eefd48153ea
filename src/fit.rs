//! Fitting: validation, the Gram matrix, the solver loop on an engine, the finish; and the result.

use crate::cpu::CpuEngine;
use crate::data::{GramAccumulator, GramStats, SampleView};
use crate::engine::{Engine, LoopStats};
use crate::error::{Error, Result};
use crate::finish::finish;
use crate::gpu::{requested_adapter_name, DeviceInfo, GpuDevice, GpuEngine};
use crate::params::{Backend, LaePca, Phase, Progress};
use crate::real::Real;
use crate::rng::Rng;
use crate::solver::{run_loop, spectrum, LoopSettings, Solver};
use nalgebra::{DMatrix, DVector};
use std::time::{Duration, Instant};

/// Wall-clock time of each phase of a fit.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timings {
    /// Moving C and the initial weights to the device (zero on the CPU; the data's chunks go to the
    /// device inside `gram`).
    pub upload: Duration,
    /// Computing C (and the mean).
    pub gram: Duration,
    /// Choosing λ and α and checking λ (the subspace-iteration estimate; for auto only the start, its λ
    /// comes from its own Ritz values).
    pub setup: Duration,
    /// The solver loop.
    pub iterate: Duration,
    /// Reading the weights back (zero on the CPU).
    pub readback: Duration,
    /// The small SVD, the Rayleigh quotients and the variances.
    pub finish: Duration,
    /// The whole fit.
    pub total: Duration,
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
    /// Samples and features of the data.
    pub n_samples: usize,
    pub n_features: usize,
    /// The solver that ran.
    pub solver: Solver,
    /// The backend that ran (never `Auto`).
    pub backend: Backend,
    /// The GPU adapter that ran (None on the CPU).
    pub adapter: Option<DeviceInfo>,
    /// What the solver loop's engine did: submissions, host waits, dispatches, buffers and bind groups
    /// created, in all and per steady block of `check_every` iterations (zeros on the CPU).
    pub loop_stats: LoopStats,
    /// The λ and α used (α is NaN for the solvers without a gradient step: auto and the exact ones).
    pub lambda: f64,
    pub alpha: f64,
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
    pub components: DMatrix<T>,
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

    fn transform_with(
        components: &DMatrix<T>,
        mean: &DVector<T>,
        x: &DMatrix<T>,
    ) -> Result<DMatrix<T>> {
        let m = components.ncols();
        check_mean(components, mean)?;
        if x.ncols() != m {
            return Err(Error::ShapeMismatch {
                what: format!(
                    "the model has {m} features, the data has {} columns",
                    x.ncols()
                ),
            });
        }
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
        check_mean(components, mean)?;
        if scores.ncols() != k {
            return Err(Error::ShapeMismatch {
                what: format!(
                    "the model has {k} components, the scores have {} columns",
                    scores.ncols()
                ),
            });
        }
        let mut x = scores * components;
        for mut row in x.row_iter_mut() {
            row += mean.transpose();
        }
        Ok(x)
    }
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

impl LaePca {
    /// Fits an nalgebra matrix laid out as [`layout`](LaePca::layout) says (samples in rows by default).
    pub fn fit<T: Real>(&self, x: &DMatrix<T>) -> Result<Fit<T>> {
        self.fit_view(SampleView::matrix(x, self.layout))
    }

    /// Fits a row-major `rows x cols` slice laid out as [`layout`](LaePca::layout) says.
    pub fn fit_slice<T: Real>(&self, data: &[T], rows: usize, cols: usize) -> Result<Fit<T>> {
        if rows == 0 || cols == 0 {
            return Err(Error::EmptyData {
                n_samples: rows,
                n_features: cols,
            });
        }
        self.fit_view(SampleView::row_major(data, rows, cols, self.layout)?)
    }

    /// Fits precomputed statistics (e.g. from a [`GramAccumulator`] fed from a file in chunks). A
    /// non-square C, a mean of the wrong length or a non-finite entry of C (its row and column) or of the
    /// mean (row 0, its index) is an error.
    pub fn fit_gram<T: Real>(&self, stats: &GramStats) -> Result<Fit<T>> {
        let start = Instant::now();
        // The fields are public: check what the accumulator would have guaranteed.
        let m = stats.c.nrows();
        if stats.c.ncols() != m || stats.mean.len() != m {
            return Err(Error::ShapeMismatch {
                what: format!(
                    "statistics with a {} x {} Gram matrix and a mean of {}",
                    m,
                    stats.c.ncols(),
                    stats.mean.len()
                ),
            });
        }
        if let Some(pos) = stats.c.iter().position(|v| !v.is_finite()) {
            let (row, col) = (pos % m, pos / m);
            return Err(Error::NonFinite {
                row,
                col,
                value: stats.c[(row, col)],
            });
        }
        if let Some(col) = stats.mean.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                row: 0,
                col,
                value: stats.mean[col],
            });
        }
        self.validate(stats.n_samples, m)?;
        check_semidefinite(&stats.c)?;
        let gpu = self.choose_device()?;
        match self.fit_stats(stats, Duration::ZERO, start, gpu) {
            // A hand-built C that passed the cheap checks may still be indefinite: say so rather
            // than blame the iteration.
            Err(e @ Error::Diverged { .. }) => Err(indefinite(&stats.c).unwrap_or(e)),
            other => other,
        }
    }

    fn fit_view<T: Real>(&self, view: SampleView<'_, T>) -> Result<Fit<T>> {
        let start = Instant::now();
        self.validate(view.n_samples, view.n_features)?;
        // Non-finite values are found while the samples are copied into the Gram blocks; on the GPU
        // the device would be opened in vain, so look first there.
        if self.backend != Backend::Cpu {
            if let Some((row, col, value)) = view.first_non_finite() {
                return Err(Error::NonFinite { row, col, value });
            }
        }
        let gpu = self.choose_device()?;
        if let Some(hook) = &self.progress {
            let p = Progress {
                phase: Phase::Gram,
                samples: 0,
                iteration: 0,
                max_iter: self.max_iter,
                stopping_quantity: None,
                tol: 0.0,
            };
            (hook.0)(&p);
        }
        let t_gram = Instant::now();
        let mut acc = accumulator_on(gpu.as_ref(), view.n_features, self.center)?;
        acc.cancel_on(self.cancel.clone());
        acc.push_view(&view)?;
        let stats = acc.finish()?;
        self.fit_stats(&stats, t_gram.elapsed(), start, gpu)
    }

    /// The backend decision, taken once: `None` for the CPU, else the GPU device every phase of the
    /// fit runs on (the Gram accumulation, the loop; the small setup and finish run on the CPU).
    ///
    /// * [`Backend::Cpu`]: the CPU; no adapter is looked at.
    /// * [`Backend::Gpu`]: the device of [`device`](Self::device), else a new one on the adapter of
    ///   [`adapter`](Self::adapter) (or `WGPU_ADAPTER_NAME`, or wgpu's default); an error when none opens.
    /// * [`Backend::Auto`]: the same, except that a failure to open one, or a software adapter (Mesa's
    ///   lavapipe, WARP: slower than the CPU engine) that was not asked for by name or handed over, gives
    ///   the CPU, with one logged warning.
    ///
    /// The fits call this themselves; [`resolve_backend`](Self::resolve_backend) keeps its answer for
    /// later fits and for [`accumulator`](Self::accumulator).
    pub fn choose_device(&self) -> Result<Option<GpuDevice>> {
        match self.backend {
            Backend::Cpu => Ok(None),
            Backend::Gpu => match &self.device {
                Some(d) => Ok(Some(d.clone())),
                None => GpuDevice::open(self.adapter.as_deref()).map(Some),
            },
            Backend::Auto => {
                if let Some(d) = &self.device {
                    return Ok(Some(d.clone()));
                }
                // A software adapter is refused before a device is opened on it.
                let named = requested_adapter_name(self.adapter.as_deref()).is_some();
                match GpuDevice::open_accepted(self.adapter.as_deref(), |info| {
                    named || info.device_type != "cpu"
                }) {
                    Ok(Ok(d)) => Ok(Some(d)),
                    Ok(Err(info)) => {
                        log::warn!(
                            "the only GPU adapter is a software one ({}): running on the CPU",
                            info.name
                        );
                        Ok(None)
                    }
                    Err(e) => {
                        log::warn!("no usable GPU ({e}): running on the CPU");
                        Ok(None)
                    }
                }
            }
        }
    }

    /// This builder with the backend decision of [`choose_device`](Self::choose_device) taken now:
    /// [`Backend::Cpu`], or [`Backend::Gpu`] with the chosen device set. Its fits and accumulators then
    /// use that one device and decide (and warn) no more.
    pub fn resolve_backend(self) -> Result<Self> {
        Ok(match self.choose_device()? {
            Some(d) => self.backend(Backend::Gpu).device(d),
            None => self.backend(Backend::Cpu),
        })
    }

    /// A Gram accumulator (centred as [`center`](Self::center) says) on the device this builder's fits
    /// run on (see [`choose_device`](Self::choose_device)): feed it in chunks, then hand its
    /// [`finish`](GramAccumulator::finish) to [`fit_gram`](Self::fit_gram). On a builder from
    /// [`resolve_backend`](Self::resolve_backend) the accumulation and the fit share one device.
    pub fn accumulator(&self, n_features: usize) -> Result<GramAccumulator> {
        accumulator_on(self.choose_device()?.as_ref(), n_features, self.center)
    }

    /// Checks the parameters against a data shape.
    fn validate(&self, n: usize, m: usize) -> Result<()> {
        if n == 0 || m == 0 {
            return Err(Error::EmptyData {
                n_samples: n,
                n_features: m,
            });
        }
        if self.k == 0 || self.k > n.min(m) {
            return Err(Error::InvalidK {
                k: self.k,
                max: n.min(m),
            });
        }
        let positive = |name, v: Option<f64>| match v {
            Some(v) if !(v > 0.0 && v.is_finite()) => Err(Error::InvalidParameter {
                name,
                value: v,
                reason: "must be positive and finite",
            }),
            _ => Ok(()),
        };
        positive("lambda", self.lambda)?;
        positive("alpha", self.alpha)?;
        positive("tol", self.tol)?;
        if self.max_iter == 0 {
            return Err(Error::InvalidParameter {
                name: "max_iter",
                value: 0.0,
                reason: "must be at least 1",
            });
        }
        if self.cg_steps == Some(0) {
            return Err(Error::InvalidParameter {
                name: "cg_steps",
                value: 0.0,
                reason: "must be at least 1",
            });
        }
        if self.check_every == Some(0) {
            return Err(Error::InvalidParameter {
                name: "check_every",
                value: 0.0,
                reason: "must be at least 1",
            });
        }
        Ok(())
    }

    /// Resolves λ, α, the momentum solver's β and the scale θ₁ of C (with the passes over C that took)
    /// from C, by a few steps of subspace iteration. Not for auto, which needs none of them.
    fn resolve_parameters(&self, c: &DMatrix<f64>) -> Result<Resolved> {
        let k = self.k;
        let ritz = spectrum::ritz_values(c, k, RITZ_STEPS, self.seed);
        let block_passes = |steps: usize| (steps * c.nrows().min(k + 8)).div_ceil(k);
        let mut passes = block_passes(RITZ_STEPS);
        let scale = ritz[0].max(f64::MIN_POSITIVE);
        let negligible = |v: f64| v / scale <= 1e3 * f64::EPSILON * c.nrows() as f64;
        let lambda = match self.lambda {
            // The cheap bound vouches for λ: σ_k² ≥ θ_k > λ.
            Some(l) if l < ritz[k - 1] => l,
            None if !negligible(ritz[k - 1]) => 0.5 * ritz[k - 1],
            given => {
                // The cheap bound cannot vouch for this λ (or the k-th value looks like zero): decide on
                // accurate eigenvalues.
                let eig = accurate_top_eigenvalues(c, k, self.seed);
                if c.nrows() > DENSE_EIGEN_MAX {
                    passes += block_passes(ACCURATE_RITZ_STEPS);
                }
                if let Some(first_zero) = eig[..k].iter().position(|&v| negligible(v)) {
                    return Err(Error::RankDeficient {
                        k,
                        rank: first_zero,
                        first_zero: first_zero + 1,
                    });
                }
                match given {
                    Some(l) => {
                        let collapsed: Vec<usize> =
                            (0..k).filter(|&i| eig[i] <= l).map(|i| i + 1).collect();
                        if !collapsed.is_empty() {
                            return Err(Error::LambdaTooLarge {
                                lambda: l,
                                components: collapsed,
                                k,
                                max_lambda: eig[k - 1],
                            });
                        }
                        l
                    }
                    None => 0.5 * eig[k - 1],
                }
            }
        };
        let alpha = if self.solver.uses_alpha() {
            self.alpha.unwrap_or(0.1 / scale)
        } else {
            f64::NAN
        };
        // β = θ_{k+1}²/4, the optimum of the three-term recurrence for the estimate θ_{k+1} ≤ λ_{k+1}
        // (an underestimate only slows it), kept below θ_k²/4 where the wanted part would stall. In
        // units of θ₁² (the loop's C / θ₁), so that no square of an eigenvalue can overflow or underflow.
        let momentum = match ritz.get(k) {
            Some(&next) if self.solver == Solver::Momentum => {
                let (next, kth) = (next / scale, ritz[k - 1] / scale);
                0.25 * next.max(0.0).powi(2).min(0.9999 * kth.powi(2))
            }
            _ => 0.0,
        };
        Ok(Resolved {
            lambda,
            alpha,
            momentum,
            scale,
            passes,
        })
    }

    fn fit_stats<T: Real>(
        &self,
        stats: &GramStats,
        gram: Duration,
        start: Instant,
        gpu: Option<GpuDevice>,
    ) -> Result<Fit<T>> {
        let (m, k) = (stats.n_features(), self.k);
        // The loop's scaled copy of C and the engine's copy (C itself exists already).
        crate::alloc::check(
            || format!("n_features = {m}: the fit's two working copies of C (m x m)"),
            m.checked_mul(m).and_then(|v| v.checked_mul(2)),
            std::mem::size_of::<f64>(),
            None,
        )
        .map_err(|e| Error::TooLarge {
            detail: e.to_string(),
        })?;
        let t_setup = Instant::now();
        let auto = self.solver == Solver::Auto;
        let Resolved {
            lambda,
            alpha,
            momentum,
            scale,
            passes: setup_passes,
        } = if auto {
            // Nothing to choose before the loop: λ does not enter it (it is set, or checked, from the
            // final Ritz values), and the loop only needs C at a safe scale: ‖C‖₂ ≤ trace(C).
            Resolved {
                lambda: f64::NAN,
                alpha: f64::NAN,
                momentum: 0.0,
                scale: stats.trace().max(f64::MIN_POSITIVE),
                passes: 0,
            }
        } else {
            self.resolve_parameters(&stats.c)?
        };
        // The loop runs on C / θ₁ (‖C‖₂ ≈ 1): with λ / θ₁, α·θ₁ and β / θ₁² the iterates are the same,
        // but no intermediate (β ~ σ⁴) can overflow f32 whatever the data's units.
        let c_loop = &stats.c / scale;
        // The GPU computes in f32 whatever T is.
        let default_tol = |auto_tol: f64, momentum_tol: f64, paper_tol: f64| match self.solver {
            Solver::Auto => auto_tol,
            Solver::Momentum => momentum_tol,
            _ => paper_tol,
        };
        let (default_tol, eps) = match gpu {
            Some(_) => (
                default_tol(f32::AUTO_TOL, f32::MOMENTUM_TOL, f32::DEFAULT_TOL),
                <f32 as Real>::EPSILON,
            ),
            None => (
                default_tol(T::AUTO_TOL, T::MOMENTUM_TOL, T::DEFAULT_TOL),
                T::EPSILON,
            ),
        };
        // Auto checks every iteration: each costs a pass over C, so none is run past convergence.
        let check_every = self
            .check_every
            .unwrap_or(if auto { 1 } else { 10 })
            .min(self.max_iter);
        let settings = LoopSettings {
            solver: self.solver,
            lambda: lambda / scale,
            alpha: alpha * scale,
            tol: self.tol.unwrap_or(default_tol),
            max_iter: self.max_iter,
            // A check interval beyond max_iter means one check at the end.
            check_every,
            cg_steps: self.cg_steps.unwrap_or((m * k).min(16)),
            momentum, // already relative to θ₁²
            // The paper's quantities are absolute norms over m·k entries (‖W‖_F ≈ √k: the rounding
            // noise of a change of W is some ulps of √k); the momentum one is a sine; the auto one a
            // relative residual, whose rounding noise (that of C X) grows like √m ulps.
            noise_floor: match self.solver {
                Solver::Auto => 30.0 * eps * (m as f64).sqrt(),
                Solver::Momentum => 1e3 * eps,
                _ => 100.0 * eps * (k as f64).sqrt(),
            },
        };
        // W2 and W1ᵀ drawn N(0, 1/m): columns of about unit norm, the scale of the answer (s_i < 1).
        let mut rng = Rng::new(self.seed);
        let scale = 1.0 / (m as f64).sqrt();
        let mut w0: Vec<f64> = rng.normals(m * k).iter().map(|v| v * scale).collect();
        if let Some(start) = &self.warm_start {
            if start.ncols() != m {
                return Err(Error::ShapeMismatch {
                    what: format!(
                        "the warm start has {} features, the data {m}",
                        start.ncols()
                    ),
                });
            }
            if let Some(pos) = start.iter().position(|v| !v.is_finite()) {
                let (row, col) = (pos % start.nrows(), pos / start.nrows());
                return Err(Error::NonFiniteWarmStart {
                    row,
                    col,
                    value: start[(row, col)],
                });
            }
            for j in 0..start.nrows().min(k) {
                for i in 0..m {
                    w0[j * m + i] = start[(j, i)];
                }
            }
        }
        let v0: Vec<f64> = rng.normals(m * k).iter().map(|v| v * scale).collect();
        let setup = t_setup.elapsed();

        let report = |phase, iteration, stopping_quantity| {
            if let Some(hook) = &self.progress {
                (hook.0)(&Progress {
                    phase,
                    samples: stats.n_samples,
                    iteration,
                    max_iter: settings.max_iter,
                    stopping_quantity,
                    tol: settings.tol,
                });
            }
        };
        let mut on_check = |iteration, q| {
            report(Phase::Iterate, iteration, Some(q));
            self.cancel.as_ref().map_or(Ok(()), |flag| flag.check())
        };
        report(Phase::Iterate, 0, None);
        let t_iter = Instant::now();
        // The engine's block: the k components, and auto's guard columns.
        let width = self.solver.block_width(m, k);
        let (out, backend, adapter, upload, readback, loop_passes) = match &gpu {
            None => {
                let mut engine = CpuEngine::<T>::new(&c_loop, width);
                let out = run_loop(&mut engine, &settings, &w0, &v0, &mut on_check)?;
                let passes = engine.passes();
                (
                    out,
                    Backend::Cpu,
                    None,
                    Duration::ZERO,
                    Duration::ZERO,
                    passes,
                )
            }
            Some(device) => {
                let ctx = device.context();
                let mut engine = GpuEngine::new(ctx, &c_loop, width, check_every)?;
                let out = run_loop(&mut engine, &settings, &w0, &v0, &mut on_check)?;
                ctx.take_error()?;
                let (upload, readback) = engine.transfer_times();
                let passes = engine.passes();
                let info = Some(ctx.info.clone());
                (out, Backend::Gpu, info, upload, readback, passes)
            }
        };
        let iterate = t_iter.elapsed().saturating_sub(upload + readback);

        report(Phase::Finish, out.iterations, out.history.last().copied());
        let t_finish = Instant::now();
        let mut fin = finish(
            &out.decoder,
            &stats.c,
            lambda,
            self.solver.uses_rayleigh_ritz(),
        );
        let (lambda, decoder, encoder) = if auto {
            let lambda = self.lambda_from_ritz_values(&fin.singular_values)?;
            let decoder = lae_optimum(&mut fin, lambda);
            (lambda, decoder.clone(), decoder)
        } else {
            (lambda, out.decoder, out.encoder)
        };
        let total_var = stats.trace();
        let dof = (stats.n_samples.max(2) - 1) as f64;
        let to_t = |v: &[f64]| DVector::from_iterator(v.len(), v.iter().map(|&x| T::of_f64(x)));
        let sig2: Vec<f64> = fin.singular_values.iter().map(|s| s * s).collect();
        let fit = Fit {
            components: fin.directions.transpose().map(T::of_f64),
            singular_values: to_t(&fin.singular_values),
            singular_values_paper: DVector::from_vec(fin.singular_values_paper),
            decoder_singular_values: DVector::from_vec(fin.decoder_singular_values),
            explained_variance: to_t(&sig2.iter().map(|v| v / dof).collect::<Vec<_>>()),
            explained_variance_ratio: to_t(&sig2.iter().map(|v| v / total_var).collect::<Vec<_>>()),
            mean: stats.mean.map(T::of_f64),
            decoder: DMatrix::from_column_slice(m, k, &decoder).map(T::of_f64),
            encoder: DMatrix::from_column_slice(m, k, &encoder)
                .transpose()
                .map(T::of_f64),
            n_samples: stats.n_samples,
            n_features: m,
            solver: self.solver,
            backend,
            adapter,
            loop_stats: out.stats,
            lambda,
            alpha,
            tol: settings.tol,
            iterations: out.iterations,
            passes: setup_passes + loop_passes,
            converged: out.converged,
            stalled: out.stalled,
            history: out.history,
            timings: Timings {
                upload,
                gram,
                setup,
                iterate,
                readback,
                finish: t_finish.elapsed(),
                total: start.elapsed(),
            },
        };
        Ok(fit)
    }
}

/// Rounding noise of an accumulated C relative to its largest diagonal entry (f32 block products, with
/// a wide margin): a true Gram matrix violates no semi-definiteness test by more.
const GRAM_NOISE: f64 = 1e-4;

/// Up to this m, a given C is checked by a Cholesky factorisation (m³/3 flops: 20 ms at 512).
const CHOLESKY_CHECK_MAX_M: usize = 512;

/// Checks that a given C is positive semi-definite up to rounding noise: for m ≤
/// [`CHOLESKY_CHECK_MAX_M`] completely (a Cholesky factorisation of C plus the noise on its diagonal);
/// above, by the cheap O(m²) necessary conditions (no negative diagonal entry, every 2 x 2 principal
/// minor non-negative, `c_ij² ≤ c_ii c_jj`), and by its eigenvalues if the iteration diverges.
fn check_semidefinite(c: &DMatrix<f64>) -> Result<()> {
    let m = c.nrows();
    let slack = GRAM_NOISE * (0..m).map(|i| c[(i, i)].abs()).fold(0.0, f64::max);
    if m <= CHOLESKY_CHECK_MAX_M {
        let mut shifted = c.clone();
        for i in 0..m {
            shifted[(i, i)] += slack.max(f64::MIN_POSITIVE);
        }
        // Only the lower triangle is read: the upper one must match it.
        let asymmetric = (0..m).any(|j| (0..j).any(|i| (c[(i, j)] - c[(j, i)]).abs() > slack));
        if asymmetric || shifted.cholesky().is_none() {
            return Err(Error::NotSemidefinite {
                detail: if asymmetric {
                    "it is not symmetric".to_string()
                } else {
                    "its Cholesky factorisation fails: it has a negative eigenvalue".to_string()
                },
            });
        }
    }
    for j in 0..m {
        if c[(j, j)] < -slack {
            return Err(Error::NotSemidefinite {
                detail: format!("its diagonal entry ({j}, {j}) is {:e}", c[(j, j)]),
            });
        }
        for i in 0..j {
            let bound = (c[(i, i)] + slack) * (c[(j, j)] + slack);
            if c[(i, j)] * c[(i, j)] > bound || c[(j, i)] * c[(j, i)] > bound {
                return Err(Error::NotSemidefinite {
                    detail: format!(
                        "its entry ({i}, {j}) = {:e} exceeds sqrt(c_ii c_jj) = {:e}",
                        c[(i, j)],
                        (c[(i, i)] * c[(j, j)]).max(0.0).sqrt()
                    ),
                });
            }
        }
    }
    Ok(())
}

/// After a divergence on a given C: the error for an indefinite C (its eigenvalues, for moderate m).
fn indefinite(c: &DMatrix<f64>) -> Option<Error> {
    if c.nrows() > 2048 {
        return None;
    }
    let eig = spectrum::eigenvalues(c);
    let (top, lowest) = (eig.first()?.abs(), *eig.last()?);
    (lowest < -GRAM_NOISE * top).then(|| Error::NotSemidefinite {
        detail: format!("its smallest eigenvalue is {lowest:e}, its largest {top:e}"),
    })
}

/// A Gram accumulator on `device`, or on the CPU.
fn accumulator_on(
    device: Option<&GpuDevice>,
    n_features: usize,
    center: bool,
) -> Result<GramAccumulator> {
    match device {
        Some(d) => GramAccumulator::on_device(d, n_features, center),
        None => GramAccumulator::new(n_features, center),
    }
}

/// Subspace-iteration steps for the Ritz estimates of C's top eigenvalues (λ, α and β come from them).
const RITZ_STEPS: usize = 10;
/// Up to this m, C's accurate eigenvalues come from a dense eigensolver; beyond, from
/// `ACCURATE_RITZ_STEPS` steps of subspace iteration.
const DENSE_EIGEN_MAX: usize = 2048;
const ACCURATE_RITZ_STEPS: usize = 300;

/// What [`LaePca::resolve_parameters`] chooses.
struct Resolved {
    lambda: f64,
    alpha: f64,
    momentum: f64,
    /// θ₁ ≈ ‖C‖₂ (the loop runs on C / scale).
    scale: f64,
    /// Products of C with k columns this took.
    passes: usize,
}

/// C's top eigenvalues, accurately: all of them for moderate m, else a long subspace iteration.
fn accurate_top_eigenvalues(c: &DMatrix<f64>, k: usize, seed: u64) -> Vec<f64> {
    if c.nrows() <= DENSE_EIGEN_MAX {
        spectrum::eigenvalues(c)
    } else {
        spectrum::ritz_values(c, k, ACCURATE_RITZ_STEPS, seed)
    }
}

impl LaePca {
    /// λ for auto from its final Ritz values `σ_i² = u_iᵀ C u_i` (f64, descending): the given λ once it is
    /// checked against them (no component may collapse), else the paper's rule `θ_k / 2`. A k-th value
    /// indistinguishable from zero is rank deficiency.
    fn lambda_from_ritz_values(&self, sigma: &[f64]) -> Result<f64> {
        let k = sigma.len();
        let theta: Vec<f64> = sigma.iter().map(|s| s * s).collect();
        let negligible = |v: f64| v <= theta[0] * 1e3 * f64::EPSILON * k.max(1) as f64;
        if theta[0] == 0.0 || negligible(theta[k - 1]) {
            let rank = theta
                .iter()
                .position(|&v| v == 0.0 || negligible(v))
                .unwrap_or(k);
            return Err(Error::RankDeficient {
                k,
                rank,
                first_zero: rank + 1,
            });
        }
        match self.lambda {
            None => Ok(0.5 * theta[k - 1]),
            Some(l) => {
                let collapsed: Vec<usize> =
                    (0..k).filter(|&i| theta[i] <= l).map(|i| i + 1).collect();
                if collapsed.is_empty() {
                    Ok(l)
                } else {
                    Err(Error::LambdaTooLarge {
                        lambda: l,
                        components: collapsed,
                        k,
                        max_lambda: theta[k - 1],
                    })
                }
            }
        }
    }
}

/// The minimiser of the regularised loss among the decoders of span(directions): `U diag(s)` with
/// `s_i = sqrt(1 − λ/σ_i²)` (the paper's theorem on that span). Sets the finish's decoder singular values
/// and paper-formula singular values to match; returns the decoder (m x k, column-major).
fn lae_optimum(fin: &mut crate::finish::Finished, lambda: f64) -> Vec<f64> {
    let s: Vec<f64> = fin
        .singular_values
        .iter()
        .map(|sigma| (1.0 - lambda / (sigma * sigma)).max(0.0).sqrt())
        .collect();
    fin.singular_values_paper = s
        .iter()
        .map(|si| (lambda / (1.0 - si * si)).sqrt())
        .collect();
    let mut decoder = fin.directions.clone();
    for (j, &sj) in s.iter().enumerate() {
        decoder.column_mut(j).scale_mut(sj);
    }
    fin.decoder_singular_values = s;
    decoder.as_slice().to_vec()
}
