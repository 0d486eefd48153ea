//! Fitting: the backend decision, the Gram matrix, the choice of λ and α, the solver loop on an
//! engine, the finish. The result types are in [`crate::result`].

use crate::cpu::CpuEngine;
use crate::data::{DeviceGram, GramAccumulator, GramStats, SampleView};
use crate::engine::{Engine, SEARCH_BLOCKS};
use crate::error::{Error, Result};
use crate::finish::finish;
use crate::gpu::{requested_adapter_name, DeviceInfo, GpuDevice, GpuEngine};
use crate::operator::GramOperator;
use crate::params::{
    Arithmetic, Backend, CheckedParams, GpuPrecision, LaePca, Method, Phase, Progress,
};
use crate::real::Real;
use crate::result::{Fit, Timings};
use crate::rng::Rng;
use crate::solver::{run_loop, spectrum, LoopResult, LoopSettings, Solver};
use crate::sparse::{CsrMatrix, SparseGram};
use nalgebra::{DMatrix, DVector};
use rayon::prelude::*;
use std::cell::Cell;
use std::time::{Duration, Instant};

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
        let checked = self.check(stats.n_samples, m)?;
        self.gram_method_allowed()?;
        check_semidefinite(&stats.c)?;
        let gpu = self.choose_device()?;
        let problem = Problem::gram(stats, "the Gram statistics were given".to_string());
        match self.fit_problem(&problem, &checked, Duration::ZERO, start, gpu) {
            // A hand-built C that passed the cheap checks may still be indefinite: say so rather
            // than blame the iteration.
            Err(e @ Error::Diverged { .. }) => Err(indefinite(&stats.c).unwrap_or(e)),
            other => other,
        }
    }

    fn fit_view<T: Real>(&self, view: SampleView<'_, T>) -> Result<Fit<T>> {
        let start = Instant::now();
        let checked = self.check(view.n_samples, view.n_features)?;
        let (method, reason) = self.dense_method(view.n_samples, view.n_features)?;
        if method == Method::GramT {
            if let Some((row, col, value)) = view.first_non_finite() {
                return Err(Error::NonFinite { row, col, value });
            }
            let coords = |i, j| view.user_coords(i, j);
            let mut blocks = ViewFeatures(&view);
            return self.fit_transposed(&mut blocks, &coords, &checked, start, reason);
        }
        // Non-finite values are found while the samples are copied into the Gram blocks; on the GPU
        // the device would be opened in vain, so look first there.
        if self.backend != Backend::Cpu {
            if let Some((row, col, value)) = view.first_non_finite() {
                return Err(Error::NonFinite { row, col, value });
            }
        }
        let gpu = self.choose_device()?;
        self.report_gram_start();
        let t_gram = Instant::now();
        let samples = Some(view.n_samples);
        let mut acc =
            self.accumulator_of::<T>(gpu.as_ref(), view.n_features, self.center, samples)?;
        acc.cancel_on(self.cancel.clone());
        acc.push_view(&view)?;
        let (stats, kernels, device_sums) = acc.finish_parts(true)?;
        let mut problem = Problem::gram(&stats, reason);
        problem.gram_kernels = kernels;
        problem.device_sums = Cell::new(device_sums);
        self.fit_problem(&problem, &checked, t_gram.elapsed(), start, gpu)
    }

    /// Finishes an accumulation (e.g. of a file's samples, pushed in chunks) and fits it: the same as
    /// [`GramAccumulator::finish_timed`] then [`fit_gram`](Self::fit_gram) (the kernel time in
    /// `Fit::timings`, the finish's time as its Gram phase), except that a GPU accumulation's C
    /// stays on the device for a GPU loop, which makes its scaled copy there instead of one on the host
    /// and a second upload. The fit runs on the accumulation's device where this builder has no
    /// [`device`](Self::device) and its backend is not [`Backend::Cpu`] (one device for every phase);
    /// [`gram_accumulator`](Self::gram_accumulator) of this builder gives the accumulator its fits
    /// would use.
    pub fn fit_accumulated<T: Real>(&self, acc: GramAccumulator) -> Result<Fit<T>> {
        let start = Instant::now();
        let accumulated_on = acc.device();
        let (stats, kernels, device_sums) = acc.finish_parts(true)?;
        let gram = start.elapsed();
        let checked = self.check(stats.n_samples, stats.n_features())?;
        self.gram_method_allowed()?;
        // The accumulation's device, where the builder would open one: one device for every phase.
        let gpu = match (accumulated_on, self.backend, &self.device) {
            (Some(device), Backend::Gpu | Backend::Auto, None) => Some(device),
            _ => self.choose_device()?,
        };
        let mut problem = Problem::gram(&stats, "the Gram matrix was accumulated".to_string());
        problem.gram_kernels = kernels;
        problem.device_sums = Cell::new(device_sums);
        self.fit_problem(&problem, &checked, gram, start, gpu)
    }

    /// [`Method::Auto`] and [`Method::Gram`] fit accumulated statistics; the others cannot.
    fn gram_method_allowed(&self) -> Result<()> {
        match self.method {
            Method::Auto | Method::Gram => Ok(()),
            Method::Operator => Err(operator_refused()),
            other => Err(Error::Unsupported {
                detail: format!(
                    "given Gram statistics are fitted as they are (method gram), not by {}",
                    other.name()
                ),
            }),
        }
    }

    /// The route [`fit`](Self::fit) takes for dense data of `n` samples and `m` features, and why:
    /// [`Method::GramT`] when asked for or, for [`Method::Auto`], when the auto solver runs without a
    /// warm start and n < m (K is n x n, C m x m); else [`Method::Gram`]. An error
    /// ([`Error::Unsupported`]) for a method dense data cannot take (operator), or gram-t with another
    /// solver or a warm start. [`fit_gram`](Self::fit_gram) always takes the Gram route.
    pub fn dense_method(&self, n: usize, m: usize) -> Result<(Method, String)> {
        let transposed_ok = || -> Result<()> {
            if self.solver != Solver::Auto || self.warm_start.is_some() {
                return Err(Error::Unsupported {
                    detail:
                        "the transposed Gram route (gram-t) runs the auto solver without a warm \
                             start (the paper's variants and warm starts live in feature space)"
                            .to_string(),
                });
            }
            Ok(())
        };
        Ok(match self.method {
            Method::Gram => (Method::Gram, "asked for".to_string()),
            Method::GramT => {
                transposed_ok()?;
                (Method::GramT, "asked for".to_string())
            }
            Method::Operator => return Err(operator_refused()),
            _ if n < m && transposed_ok().is_ok() => (
                Method::GramT,
                format!(
                    "fewer samples than features: K = X_c X_cᵀ is {n} x {n}, C would be {m} x {m}"
                ),
            ),
            _ => (
                Method::Gram,
                "dense data with no fewer samples than features (or a solver other than auto): C \
                 formed from the samples"
                    .to_string(),
            ),
        })
    }

    /// Fits data read by blocks of features (see [`FeatureBlocks`]) through the transposed Gram
    /// route, without holding the data: two passes over the source (K and the means, then the
    /// directions), memory K (n x n, f64, with its accumulation) plus one block (8 MiB at most, or one
    /// feature where a feature alone is larger) and the m x k directions. A non-finite value is
    /// reported as the first in feature order; a set [`cancel_flag`](Self::cancel_flag) stops either
    /// pass between blocks. For wide data (n < m) that does not fit in memory, e.g. a 2000 x 200000
    /// `.npy` file through [`io::NpyFeatures`](crate::io::NpyFeatures). The answer is the same, bit
    /// for bit, as [`fit`](Self::fit) of the same matrix in memory on the transposed route.
    ///
    /// The auto solver without a warm start, [`Method::Auto`] or [`Method::GramT`], samples in rows:
    /// anything else is [`Error::Unsupported`]; a failed read is [`Error::Read`].
    pub fn fit_feature_blocks<T: Real>(
        &self,
        data: &mut (dyn FeatureBlocks<T> + '_),
    ) -> Result<Fit<T>> {
        let start = Instant::now();
        let (n, m) = (data.n_samples(), data.n_features());
        let checked = self.check(n, m)?;
        if !matches!(self.method, Method::Auto | Method::GramT)
            || self.layout != crate::Layout::SamplesInRows
        {
            return Err(Error::Unsupported {
                detail: "data read by blocks of features are fitted through the transposed Gram \
                         route (method auto or gram-t), samples in rows"
                    .to_string(),
            });
        }
        // The transposed route's own conditions: the auto solver, no warm start.
        self.clone().method(Method::GramT).dense_method(n, m)?;
        let reason = if n < m {
            format!(
                "fewer samples than features, read by blocks of features: K = X_c X_cᵀ is {n} x \
                 {n}, C would be {m} x {m}"
            )
        } else {
            "read by blocks of features".to_string()
        };
        self.fit_transposed(data, &|i, j| (i, j), &checked, start, reason)
    }

    /// The transposed Gram route: `K = X_c X_cᵀ` (n x n) accumulated from the centred features (each a
    /// "sample" of n values, uncentred: the means are removed first, in f64), the auto solver on K, and
    /// the directions `U = X_cᵀ V Σ⁻¹` from K's eigenvectors V (the singular values are the same).
    /// The data are read twice, a block of features at a time (`user_coords` names an entry (sample,
    /// feature) in the caller's layout, for errors).
    fn fit_transposed<T: Real>(
        &self,
        data: &mut (dyn FeatureBlocks<T> + '_),
        user_coords: &(dyn Fn(usize, usize) -> (usize, usize) + Sync),
        checked: &CheckedParams,
        start: Instant,
        reason: String,
    ) -> Result<Fit<T>> {
        let (n, m) = (data.n_samples(), data.n_features());
        let gpu = self.choose_device()?;
        self.report_gram_start();
        let t_gram = Instant::now();
        let mut mean = crate::alloc::filled(|| format!("{m} means"), Some(m), None, 0.0)?;
        // K's samples are the m features.
        let mut acc = self.accumulator_of::<T>(gpu.as_ref(), n, false, Some(m))?;
        acc.cancel_on(self.cancel.clone());
        // Blocks of features, each row of the block one centred feature (n values).
        let (rows, mut block) = chunk_buffer::<T>(n, m, "centred features")?;
        for first in (0..m).step_by(rows) {
            let last = (first + rows).min(m);
            data.read_features(first, last, &mut block)?;
            check_block(&block, n, first, last)?;
            if let Some(pos) = block.iter().position(|v| !v.as_f64().is_finite()) {
                let (row, col) = user_coords(pos % n, first + pos / n);
                let value = block[pos].as_f64();
                return Err(Error::NonFinite { row, col, value });
            }
            let center = self.center;
            block
                .par_chunks_mut(n)
                .zip(&mut mean[first..last])
                .for_each(|(feature, mu)| {
                    if center {
                        *mu = feature.iter().map(|x| x.as_f64()).sum::<f64>() / n as f64;
                    }
                    for x in feature.iter_mut() {
                        *x = T::of_f64(x.as_f64() - *mu);
                    }
                });
            // Finite data near the type's limit can round to ±inf once centred.
            if let Some(pos) = block.iter().position(|v| !v.as_f64().is_finite()) {
                let (row, col) = user_coords(pos % n, first + pos / n);
                return Err(Error::Overflow {
                    what: format!(
                        "the centred value at row {row}, column {col} does not fit the working \
                         precision"
                    ),
                });
            }
            acc.push_rows(&block)?;
        }
        let (stats, gram_kernels) = acc.finish_timed()?;
        // U = X_cᵀ V: row j is Σᵢ (x_ij − μ_j) V[i, :], in f64 in sample order; a second pass.
        let source = std::sync::Mutex::new((data, block));
        let lift = |v: &DMatrix<f64>| -> Result<DMatrix<f64>> {
            let k = v.ncols();
            let mut guard = source.lock().unwrap_or_else(|e| e.into_inner());
            let (data, block) = &mut *guard;
            let mut u = crate::alloc::filled(
                || format!("{m} x {k} directions"),
                m.checked_mul(k),
                None,
                0.0,
            )?;
            for first in (0..m).step_by(rows) {
                let last = (first + rows).min(m);
                if let Some(flag) = &self.cancel {
                    flag.check()?;
                }
                data.read_features(first, last, block)?;
                check_block(block, n, first, last)?;
                u[first * k..last * k]
                    .par_chunks_mut(k.max(1))
                    .zip(block.par_chunks(n))
                    .zip(&mean[first..last])
                    .for_each(|((out, feature), mu)| {
                        for (i, x) in feature.iter().enumerate() {
                            let x = x.as_f64() - mu;
                            for (o, c) in out.iter_mut().zip(0..k) {
                                *o += x * v[(i, c)];
                            }
                        }
                    });
            }
            // Column-major for nalgebra: the second m x k copy, size-checked like the first.
            let mut columns = crate::alloc::filled(
                || format!("{m} x {k} directions (column-major)"),
                m.checked_mul(k),
                None,
                0.0,
            )?;
            for (j, row) in u.chunks_exact(k.max(1)).enumerate().take(m) {
                for (c, &value) in row.iter().enumerate() {
                    columns[c * m + j] = value;
                }
            }
            drop(u);
            Ok(DMatrix::from_vec(m, k, columns))
        };
        let problem = Problem {
            c: &stats.c,
            formed: Some(&stats.c),
            mean: DVector::from_vec(mean.clone()),
            n_samples: n,
            trace: stats.trace(),
            method: Method::GramT,
            reason,
            lift: Some(&lift),
            gram_kernels,
            sparse: None,
            device_sums: Cell::new(None),
        };
        self.fit_problem(&problem, checked, t_gram.elapsed(), start, gpu)
    }

    /// Fits a sparse matrix (rows are samples, columns features) without densifying it, by the route
    /// [`method`](Self::method) names or, for [`Method::Auto`], the one this rule picks:
    ///
    /// * the routes weighed: Gram and operator, and the transposed Gram route ([`Method::GramT`]) when
    ///   there are fewer samples than features and the auto solver runs without a warm start;
    /// * the memory each needs: the Gram route 3·m² f64 (C and its two working copies), the operator
    ///   route its products' partial sums (at most 128 MiB, at least one m x b f64 block) and the
    ///   loop's m x b blocks (b the solver's block width), the transposed route 3·n² f64 (K), a block
    ///   of 8 MiB and the m x b directions; a route must fit in half the memory available
    ///   ([`available_memory`](crate::alloc::available_memory)), and when none does the fit fails
    ///   with [`Error::TooLarge`] saying what each would need;
    /// * of those that fit, the fewest multiply-adds for a typical fit of 30 passes: `n·m²/2 + 30·m²·b`
    ///   (forming C, then the dense products), `30·2·nnz·b` (the matrix-free products), `m·n²/2 +
    ///   30·n²·b` (forming K from densified features, then its products).
    ///
    /// The Gram route densifies a block of rows at a time into the Gram accumulation (on the GPU when
    /// the backend gives one); the transposed route a block of features at a time into K's
    /// (likewise), and reads the matrix again for the directions `X_cᵀ V`. The operator route runs on
    /// the CPU in f64, or, when the backend gives a GPU, in f32 on the GPU with X and Xᵀ held there in
    /// panels of at most one storage binding each. It stays on the CPU, with a logged warning, where
    /// one binding cannot hold a panel's row, the m x b block or the n x b intermediate, where the
    /// means outweigh the spread (`n·Σμ² / Σ(x − μ)² > 10⁴`: the implicit centring in f32 would lose
    /// more than ~2 digits), and, on a software adapter, where the host memory or a workgroup's
    /// bounded loop cannot take it. The fit's [`method`](Fit::method) and
    /// [`method_reason`](Fit::method_reason) say which ran and why (the latter also why a GPU
    /// backend's operator route ran on the CPU). The layout must be
    /// [`Layout::SamplesInRows`](crate::Layout).
    pub fn fit_csr<T: Real>(&self, x: &CsrMatrix<T>) -> Result<Fit<T>> {
        let start = Instant::now();
        let (n, m) = (x.nrows(), x.ncols());
        if n == 0 || m == 0 {
            return Err(Error::EmptyData {
                n_samples: n,
                n_features: m,
            });
        }
        if self.layout != crate::Layout::SamplesInRows {
            return Err(Error::Unsupported {
                detail:
                    "a CSR matrix's rows are samples: fit the transpose's CSR with the default \
                         layout"
                        .to_string(),
            });
        }
        let checked = self.check(n, m)?;
        if x.nnz() == 0 {
            // All zero: rank 0, known before any working memory is allocated.
            return Err(Error::RankDeficient {
                k: checked.k,
                rank: 0,
                first_zero: 1,
            });
        }
        let width = self.solver.block_width(m, checked.k);
        let (method, reason) = choose_method(
            self.method,
            RouteShape {
                n,
                m,
                nnz: x.nnz(),
                width,
                transposed: self.solver == Solver::Auto && self.warm_start.is_none(),
            },
            crate::alloc::available_memory(),
        )?;
        if method == Method::GramT {
            // Blocks of features densified one at a time (8 MiB at most), as for a wide file.
            let mut features = crate::sparse::CsrFeatures::new(x);
            return self.fit_transposed(&mut features, &|i, j| (i, j), &checked, start, reason);
        }
        self.report_gram_start();
        if method == Method::Operator {
            let gpu = self.choose_device()?;
            let t = Instant::now();
            let op = SparseGram::new(x, self.center)?;
            let problem = Problem {
                c: &op,
                formed: None,
                mean: DVector::from_column_slice(op.mean()),
                n_samples: n,
                trace: op.diagonal().iter().sum(),
                method,
                reason,
                lift: None,
                gram_kernels: None,
                sparse: Some(x),
                device_sums: Cell::new(None),
            };
            return self.fit_problem(&problem, &checked, t.elapsed(), start, gpu);
        }
        let gpu = self.choose_device()?;
        let t_gram = Instant::now();
        let mut acc = self.accumulator_of::<T>(gpu.as_ref(), m, self.center, Some(n))?;
        acc.cancel_on(self.cancel.clone());
        let (rows, mut block) = chunk_buffer::<T>(m, n, "densified rows")?;
        for first in (0..n).step_by(rows) {
            x.densify_rows(first..(first + rows).min(n), &mut block);
            acc.push_rows(&block)?;
        }
        let (stats, kernels) = acc.finish_timed()?;
        let mut problem = Problem::gram(&stats, reason);
        problem.method = method;
        problem.gram_kernels = kernels;
        self.fit_problem(&problem, &checked, t_gram.elapsed(), start, gpu)
    }

    /// The progress hook's report that the Gram phase begins.
    fn report_gram_start(&self) {
        if let Some(hook) = &self.progress {
            (hook.0)(&Progress {
                phase: Phase::Gram,
                samples: 0,
                iteration: 0,
                max_iter: self.max_iter,
                stopping_quantity: None,
                tol: 0.0,
            });
        }
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
    /// run on (see [`choose_device`](Self::choose_device); its Gram kernel is f32: for f64 data whose
    /// loop may run in f64 on the GPU, [`gram_accumulator`](Self::gram_accumulator) is the one to
    /// use): feed it in chunks, then hand its
    /// [`finish`](GramAccumulator::finish) to [`fit_gram`](Self::fit_gram). On a builder from
    /// [`resolve_backend`](Self::resolve_backend) the accumulation and the fit share one device.
    pub fn accumulator(&self, n_features: usize) -> Result<GramAccumulator> {
        accumulator_on(
            self.choose_device()?.as_ref(),
            n_features,
            self.center,
            None,
        )
    }

    /// [`accumulator`](Self::accumulator) for a known number of samples: on the GPU, fewer samples
    /// than one chunk (16 MiB) get device buffers of their size (the result is the same); a push
    /// beyond `n_samples` samples in all fails ([`Error::ShapeMismatch`]), on either engine.
    pub fn accumulator_for(&self, n_features: usize, n_samples: usize) -> Result<GramAccumulator> {
        let device = self.choose_device()?;
        accumulator_on(device.as_ref(), n_features, self.center, Some(n_samples))
    }

    /// [`accumulator_for`](Self::accumulator_for) (or [`accumulator`](Self::accumulator), without
    /// `n_samples`) for data of type `T`, where the fit's loop will run: on the device, unless the loop
    /// runs in f64 there ([`gpu_arithmetic`](Self::gpu_arithmetic)), whose C the GPU's f32 Gram kernel
    /// cannot give: then on the CPU, in f64. The fits themselves accumulate this way.
    pub fn gram_accumulator<T: Real>(
        &self,
        n_features: usize,
        n_samples: Option<usize>,
    ) -> Result<GramAccumulator> {
        let device = self.choose_device()?;
        self.accumulator_of::<T>(device.as_ref(), n_features, self.center, n_samples)
    }

    /// The accumulator of `T` data for a fit on `device` (see [`gram_device`](Self::gram_device)).
    fn accumulator_of<T: Real>(
        &self,
        device: Option<&GpuDevice>,
        n_features: usize,
        center: bool,
        n_samples: Option<usize>,
    ) -> Result<GramAccumulator> {
        let on = self.gram_device::<T>(device)?;
        accumulator_on(on.as_ref(), n_features, center, n_samples)
    }

    /// Where a fit of `T` data by this builder accumulates C: [`Backend::Gpu`] on its device, or
    /// [`Backend::Cpu`] (no device, or a loop in f64 on it; see
    /// [`gram_accumulator`](Self::gram_accumulator)). The operator route forms no C.
    pub fn gram_backend<T: Real>(&self) -> Result<Backend> {
        let device = self.choose_device()?;
        Ok(match self.gram_device::<T>(device.as_ref())? {
            Some(_) => Backend::Gpu,
            None => Backend::Cpu,
        })
    }

    /// The device C of `T` data is accumulated on when the fit runs on `device`: none (the CPU) when
    /// the loop will run in f64 on it.
    fn gram_device<T: Real>(&self, device: Option<&GpuDevice>) -> Result<Option<GpuDevice>> {
        Ok(match device {
            Some(d) if self.gpu_arithmetic::<T>(d.info(), false)? == Arithmetic::F64 => None,
            d => d.cloned(),
        })
    }

    /// The arithmetic of a GPU loop for data of type `T` on the device `info` describes
    /// ([`gpu_precision`](Self::gpu_precision)): for [`GpuPrecision::Auto`], f64 when `T` is f64 and
    /// the device has f64 shaders, else f32; an error for [`GpuPrecision::F64`] on a device without
    /// them or, with `f32_only` (the GPU's operator route), at all.
    pub fn gpu_arithmetic<T: Real>(&self, info: &DeviceInfo, f32_only: bool) -> Result<Arithmetic> {
        match self.gpu_precision {
            GpuPrecision::F32 => Ok(Arithmetic::F32),
            GpuPrecision::Auto => Ok(
                if Arithmetic::of::<T>() == Arithmetic::F64 && info.shader_f64 && !f32_only {
                    Arithmetic::F64
                } else {
                    Arithmetic::F32
                },
            ),
            GpuPrecision::F64 if f32_only => Err(Error::Unsupported {
                detail: "precision f64 on the GPU's operator route, whose kernels are f32 only \
                         (the CPU runs it in f64: backend cpu)"
                    .to_string(),
            }),
            GpuPrecision::F64 if !info.shader_f64 => Err(Error::Unsupported {
                detail: format!(
                    "precision f64 on {} ({}), which has no f64 shaders (SHADER_F64)",
                    info.name, info.backend
                ),
            }),
            GpuPrecision::F64 => Ok(Arithmetic::F64),
        }
    }

    /// Resolves λ, α, the momentum solver's β and C's norm estimate θ₁ (with the passes over C that
    /// took) from C, by a few steps of subspace iteration. Not for auto, which needs none of them.
    fn resolve_parameters(&self, p: &Problem) -> Result<Resolved> {
        let (k, m) = (self.k, p.c.n_features());
        let ritz = match p.formed {
            Some(c) => spectrum::ritz_values(c, k, RITZ_STEPS, self.seed),
            None => {
                spectrum::operator_ritz_values(p.c, k, RITZ_STEPS, self.seed, self.cancel.as_ref())?
            }
        };
        let block_passes = |steps: usize| (steps * m.min(k + 8)).div_ceil(k);
        let mut passes = block_passes(RITZ_STEPS);
        let theta_1 = ritz[0].max(f64::MIN_POSITIVE);
        let negligible = |v: f64| v / theta_1 <= 1e3 * f64::EPSILON * m as f64;
        let lambda = match self.lambda {
            // The cheap bound vouches for λ: σ_k² ≥ θ_k > λ.
            Some(l) if l < ritz[k - 1] => l,
            None if !negligible(ritz[k - 1]) => 0.5 * ritz[k - 1],
            given => {
                // The cheap bound cannot vouch for this λ (or the k-th value looks like zero): decide on
                // accurate eigenvalues.
                let eig = accurate_top_eigenvalues(p, k, self.seed, self.cancel.as_ref())?;
                if p.formed.is_none() || m > DENSE_EIGEN_MAX {
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
        let alpha = self
            .solver
            .uses_alpha()
            .then(|| self.alpha.unwrap_or(0.1 / theta_1));
        // β = θ_{k+1}²/4, the optimum of the three-term recurrence for the estimate θ_{k+1} ≤ λ_{k+1}
        // (an underestimate only slows it), kept below θ_k²/4 where the wanted part would stall. In
        // units of θ₁² (the loop's C / θ₁), so that no square of an eigenvalue can overflow or underflow.
        let momentum = match ritz.get(k) {
            Some(&next) if self.solver == Solver::Momentum => {
                let (next, kth) = (next / theta_1, ritz[k - 1] / theta_1);
                0.25 * next.max(0.0).powi(2).min(0.9999 * kth.powi(2))
            }
            _ => 0.0,
        };
        Ok(Resolved {
            lambda,
            alpha,
            momentum,
            c_norm: theta_1,
            passes,
        })
    }

    /// The fit proper, on C (formed or an operator) and the chosen device: λ, α and the scale of C,
    /// the solver loop on the engine of the device (the CPU's when `gpu` is `None`, and always for an
    /// operator), the finish. `gram` and `start` are the Gram phase's time and the fit's start, for the
    /// timings.
    fn fit_problem<T: Real>(
        &self,
        p: &Problem,
        checked: &CheckedParams,
        gram: Duration,
        start: Instant,
        gpu: Option<GpuDevice>,
    ) -> Result<Fit<T>> {
        let (m, k) = (p.c.n_features(), checked.k);
        let device_sums = p.device_sums.take();
        // The loop's scaled copy of C and the engine's copy (C itself exists already), unless the loop
        // makes its C on the device: checked first (and again below if that does not happen).
        let check_copies = || {
            crate::alloc::check(
                || {
                    format!(
                        "order {m}: the fit's two working copies of the matrix it multiplies by"
                    )
                },
                m.checked_mul(m).and_then(|v| v.checked_mul(2)),
                std::mem::size_of::<f64>(),
                None,
            )
        };
        if p.formed.is_some() && device_sums.is_none() {
            check_copies()?;
        }
        let t_setup = Instant::now();
        let auto = self.solver == Solver::Auto;
        let Resolved {
            lambda,
            alpha,
            momentum,
            c_norm,
            passes: setup_passes,
        } = if auto {
            // Nothing to choose before the loop: λ does not enter it (it is set, or checked, from the
            // final Ritz values), and the loop only needs C at a safe scale: ‖C‖₂ ≤ trace(C).
            Resolved {
                lambda: f64::NAN,
                alpha: None,
                momentum: 0.0,
                c_norm: p.trace.max(f64::MIN_POSITIVE),
                passes: 0,
            }
        } else {
            self.resolve_parameters(p)?
        };
        // The loop runs on C / c_norm (‖C‖₂ ≈ 1, or ≤ 1 for auto): with λ / c_norm, α·c_norm and
        // β / c_norm² the iterates are the same, but no intermediate (β ~ σ⁴) can overflow f32 whatever
        // the data's units.
        // The engine's block: the k components, and auto's guard columns.
        let width = self.solver.block_width(m, k);
        // The operator route runs on the GPU where its sparse X fits the device (else on the CPU).
        // (Why it stays on the CPU, for the summary.)
        let mut on_cpu_because = None;
        let (gpu, sparse_layout) = match (gpu, p.sparse) {
            (Some(device), Some(x)) if p.formed.is_none() => {
                match sparse_layout_on(&device, x, p, width) {
                    Ok(layout) => (Some(device), Some(layout)),
                    Err(why) => {
                        log::warn!("the operator route runs on the CPU: {why}");
                        on_cpu_because = Some(why);
                        (None, None)
                    }
                }
            }
            (gpu, _) => (gpu.filter(|_| p.formed.is_some()), None),
        };
        // The GPU's small eigenproblems (auto's, of order SEARCH_BLOCKS·width) run in one workgroup,
        // split into dispatches of bounded loop iterations; beyond order ~1000 one round alone exceeds
        // the bound (src/gpu/engine.rs, jacobi_fits), and the loop runs on the CPU instead.
        let gpu = match gpu {
            Some(device)
                if self.solver == Solver::Auto
                    && !crate::gpu::jacobi_fits(
                        SEARCH_BLOCKS * width,
                        device.context().workgroup() as usize,
                    ) =>
            {
                log::warn!(
                    "the auto solver's projected problem (order {}) is too large for the GPU's \
                     one-workgroup eigensolver: its loop runs on the CPU",
                    SEARCH_BLOCKS * width
                );
                None
            }
            g => g,
        };
        // The GPU computes in f32 or f64 (gpu_precision), the CPU in T.
        let arithmetic = match &gpu {
            Some(device) => self.gpu_arithmetic::<T>(device.info(), sparse_layout.is_some())?,
            None => Arithmetic::of::<T>(),
        };
        // An f32 GPU loop on the device that accumulated C makes its C there from the sums; else the
        // loop's C is C / c_norm on the host (for the CPU engine, or uploaded).
        // (1 / c_norm, which the device applies in f32, must be a normal f32 value.)
        let scale = (1.0 / c_norm) as f32;
        let device_sums = device_sums.filter(|sums| {
            arithmetic == Arithmetic::F32
                && scale.is_normal()
                && gpu
                    .as_ref()
                    .is_some_and(|d| std::sync::Arc::ptr_eq(d.context(), sums.context()))
        });
        let c_loop = match (&device_sums, p.formed) {
            (None, Some(c)) => {
                check_copies()?;
                Some(c / c_norm)
            }
            _ => None,
        };
        let (default_tol, eps) = match arithmetic {
            Arithmetic::F32 => (
                Self::default_tol::<f32>(self.solver),
                <f32 as Real>::EPSILON,
            ),
            Arithmetic::F64 => (
                Self::default_tol::<f64>(self.solver),
                <f64 as Real>::EPSILON,
            ),
        };
        let check_every = checked.check_every;
        let settings = LoopSettings {
            solver: self.solver,
            lambda: lambda / c_norm,
            // Read only by the gradient solvers, which always have an α.
            alpha: alpha.map_or(f64::NAN, |a| a * c_norm),
            tol: checked.tol.unwrap_or(default_tol),
            max_iter: checked.max_iter,
            check_every,
            cg_steps: checked.cg_steps,
            momentum, // already relative to c_norm²
            // The paper's quantities are absolute norms over m·k entries (‖W‖_F ≈ √k: the rounding
            // noise of a change of W is some ulps of √k); the momentum one is a sine; the auto one a
            // relative residual, whose rounding noise (that of C X) grows like √m ulps.
            noise_floor: match self.solver {
                Solver::Auto => 30.0 * eps * (m as f64).sqrt(),
                Solver::Momentum => 1e3 * eps,
                _ => 100.0 * eps * (k as f64).sqrt(),
            },
        };
        let (w0, v0) = self.initial_weights(m, k)?;
        let setup = t_setup.elapsed();

        let report = |phase, iteration, stopping_quantity| {
            if let Some(hook) = &self.progress {
                (hook.0)(&Progress {
                    phase,
                    samples: p.n_samples,
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
        let run = match &gpu {
            Some(device) => {
                let ctx = device.context();
                let mut engine = match (device_sums, &c_loop, &sparse_layout, p.sparse) {
                    (Some(sums), _, _, _) => {
                        GpuEngine::over_device_gram(ctx, sums, c_norm, width, check_every)?
                    }
                    (None, Some(c_loop), _, _) => {
                        GpuEngine::new(ctx, c_loop, width, check_every, arithmetic)?
                    }
                    (None, None, Some(layout), Some(x)) => GpuEngine::over_sparse(
                        ctx,
                        x,
                        layout,
                        p.mean.as_slice(),
                        c_norm,
                        width,
                        check_every,
                    )?,
                    _ => unreachable!("a GPU loop has C or a sparse X on the device"),
                };
                if self.profile_kernels && !engine.profile_kernels() {
                    log::warn!(
                        "the loop's kernels on {} are not profiled (no timestamp queries)",
                        ctx.info.name
                    );
                }
                let out = run_loop(&mut engine, &settings, &w0, &v0, &mut on_check)?;
                ctx.take_error()?;
                let passes = engine.passes() - out.stats.discarded_passes;
                let (upload, readback) = engine.transfer_times();
                LoopRun {
                    out,
                    backend: Backend::Gpu,
                    adapter: Some(ctx.info.clone()),
                    upload,
                    readback,
                    kernels: engine.kernel_time(),
                    passes,
                    kernel_profile: engine.kernel_profile(),
                }
            }
            None => {
                let mut engine = match &c_loop {
                    Some(c) => CpuEngine::<T>::new(c, width, check_every),
                    None => CpuEngine::<T>::over_operator(p.c, c_norm, width, check_every),
                };
                LoopRun {
                    out: run_loop(&mut engine, &settings, &w0, &v0, &mut on_check)?,
                    backend: Backend::Cpu,
                    adapter: None,
                    upload: Duration::ZERO,
                    readback: Duration::ZERO,
                    kernels: None,
                    passes: engine.passes(),
                    kernel_profile: Vec::new(),
                }
            }
        };
        let LoopRun {
            out,
            backend,
            adapter,
            upload,
            readback,
            kernels: iterate_kernels,
            passes: loop_passes,
            kernel_profile,
        } = run;
        let iterate = t_iter.elapsed().saturating_sub(upload + readback);

        report(Phase::Finish, out.iterations, out.history.last().copied());
        let t_finish = Instant::now();
        let mut fin = finish(&out.decoder, p.c, lambda, self.solver.uses_rayleigh_ritz());
        if let Some(lift) = p.lift {
            // Only auto runs here (dense_method): its decoder is rebuilt from the directions below.
            debug_assert!(auto);
            // K's eigenvectors V to the directions U = X_cᵀ V Σ⁻¹ (K = X_c X_cᵀ has C's nonzero
            // eigenvalues); each column normalised (‖X_cᵀ v‖ = σ in exact arithmetic), with the sign
            // convention applied again in feature space.
            let mut u = lift(&fin.directions)?;
            for j in 0..u.ncols() {
                let mut col = u.column(j).clone_owned();
                let norm = col.norm();
                if norm > 0.0 {
                    col /= norm;
                }
                crate::finish::apply_sign_convention(&mut col);
                u.set_column(j, &col);
            }
            fin.directions = u;
        }
        // The features of the result (K's order is the sample count on the transposed route).
        let m = p.mean.len();
        let (lambda, decoder, encoder) = if auto {
            let lambda = self.lambda_from_ritz_values(&fin.singular_values)?;
            let decoder = lae_optimum(&mut fin, lambda);
            (lambda, decoder.clone(), decoder)
        } else {
            (lambda, out.decoder, out.encoder)
        };
        let total_var = p.trace;
        let dof = (p.n_samples.max(2) - 1) as f64;
        let to_t = |v: &[f64]| DVector::from_iterator(v.len(), v.iter().map(|&x| T::of_f64(x)));
        let sig2: Vec<f64> = fin.singular_values.iter().map(|s| s * s).collect();
        let fit = Fit {
            components: fin.directions.transpose().map(T::of_f64),
            singular_values: to_t(&fin.singular_values),
            singular_values_paper: DVector::from_vec(fin.singular_values_paper),
            decoder_singular_values: DVector::from_vec(fin.decoder_singular_values),
            explained_variance: to_t(&sig2.iter().map(|v| v / dof).collect::<Vec<_>>()),
            explained_variance_ratio: to_t(&sig2.iter().map(|v| v / total_var).collect::<Vec<_>>()),
            mean: p.mean.map(T::of_f64),
            decoder: DMatrix::from_column_slice(m, k, &decoder).map(T::of_f64),
            encoder: DMatrix::from_column_slice(m, k, &encoder)
                .transpose()
                .map(T::of_f64),
            n_samples: p.n_samples,
            n_features: m,
            method: p.method,
            method_reason: match on_cpu_because {
                Some(why) => format!("{}; on the CPU: {why}", p.reason),
                None => p.reason.clone(),
            },
            solver: self.solver,
            backend,
            arithmetic,
            adapter,
            loop_stats: out.stats,
            kernel_profile,
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
                gram_kernels: p.gram_kernels,
                setup,
                iterate,
                iterate_kernels,
                readback,
                finish: t_finish.elapsed(),
                total: start.elapsed(),
            },
        };
        Ok(fit)
    }
}

/// The error for the operator method on dense data.
fn operator_refused() -> Error {
    Error::Unsupported {
        detail: "the operator method takes sparse data (fit_csr, or a Matrix Market coordinate \
                 file); dense data is fitted through its Gram matrix (gram) or its transposed Gram \
                 matrix (gram-t)"
            .to_string(),
    }
}

/// `V ↦ X_cᵀ V` of the transposed route (see [`Problem::lift`]).
type Lift<'a> = &'a (dyn Fn(&DMatrix<f64>) -> Result<DMatrix<f64>> + Sync);

/// How the operator route's sparse X goes on `device` for blocks of `width` columns, or why it
/// cannot: more than the device holds (see [`crate::gpu::SparseLayout::plan`]), or means that outweigh
/// the data's spread beyond what the GPU's f32 products keep ([`crate::gpu::MAX_MEAN_WEIGHT`]).
fn sparse_layout_on(
    device: &GpuDevice,
    x: &dyn crate::sparse::PackedPanels,
    p: &Problem,
    width: usize,
) -> std::result::Result<crate::gpu::SparseLayout, String> {
    let weight = p.n_samples as f64 * p.mean.norm_squared() / p.trace;
    // (NaN for an all-zero X: nothing to cancel, and nothing to gain on the GPU either.)
    if weight.is_nan() || weight > crate::gpu::MAX_MEAN_WEIGHT {
        return Err(format!(
            "the means outweigh the spread by {weight:.1e} (n·Σμ² / Σ(x − μ)²), where the GPU's f32 \
             products keep at most {:.0e}",
            crate::gpu::MAX_MEAN_WEIGHT
        ));
    }
    crate::gpu::SparseLayout::plan(device.context(), x, width)
}

/// C and the statistics beside it, as a fit holds them: formed (the Gram route) or as an operator.
struct Problem<'a> {
    /// C, to multiply by.
    c: &'a dyn GramOperator,
    /// The formed C of the Gram route (None for an operator).
    formed: Option<&'a DMatrix<f64>>,
    mean: DVector<f64>,
    n_samples: usize,
    /// trace(C), the total variance.
    trace: f64,
    method: Method,
    /// Why this route (the summary's words).
    reason: String,
    /// For the transposed route: `V ↦ X_cᵀ V` (n x k to m x k), which takes K's eigenvectors to the
    /// directions (times Σ).
    lift: Option<Lift<'a>>,
    /// The GPU time of the Gram kernels, where they ran on a device with timestamp queries.
    gram_kernels: Option<Duration>,
    /// The operator route's sparse X, for the GPU engine to hold (the CPU one multiplies by `c`).
    sparse: Option<&'a dyn crate::sparse::PackedPanels>,
    /// A GPU accumulation's sums of C still on the device, for a GPU loop to make its C from (taken by
    /// the fit).
    device_sums: Cell<Option<DeviceGram>>,
}

impl<'a> Problem<'a> {
    /// The Gram route on accumulated statistics.
    fn gram(stats: &'a GramStats, reason: String) -> Self {
        Problem {
            c: &stats.c,
            formed: Some(&stats.c),
            mean: stats.mean.clone(),
            n_samples: stats.n_samples,
            trace: stats.trace(),
            method: Method::Gram,
            reason,
            lift: None,
            gram_kernels: None,
            sparse: None,
            device_sums: Cell::new(None),
        }
    }
}

/// A data matrix (samples in rows) read by blocks of features, as many times as a fit asks: what
/// [`LaePca::fit_feature_blocks`] streams when the data do not fit in memory (the transposed Gram route
/// reads each feature whole, all samples at once). [`io::NpyFeatures`](crate::io::NpyFeatures) reads
/// a `.npy` file this way.
pub trait FeatureBlocks<T>: Send {
    /// Samples (rows).
    fn n_samples(&self) -> usize;
    /// Features (columns).
    fn n_features(&self) -> usize;
    /// Replaces `out` with features `first..last` of every sample, feature after feature:
    /// `out[(j - first) * n_samples + i]` is sample i's feature j. A failure is [`Error::Read`]
    /// (or any other [`Error`]); the fit stops with it.
    fn read_features(&mut self, first: usize, last: usize, out: &mut Vec<T>) -> Result<()>;
}

/// A source's block has the length asked for (a source is outside code: check it).
fn check_block<T>(block: &[T], n: usize, first: usize, last: usize) -> Result<()> {
    if block.len() != (last - first) * n {
        return Err(Error::Read {
            detail: format!(
                "features {first}..{last} came as {} values, not {} x {n}",
                block.len(),
                last - first
            ),
        });
    }
    Ok(())
}

/// Data in memory, read by blocks of features.
struct ViewFeatures<'v, 'a, T>(&'v SampleView<'a, T>);

impl<T: Real> FeatureBlocks<T> for ViewFeatures<'_, '_, T> {
    fn n_samples(&self) -> usize {
        self.0.n_samples
    }
    fn n_features(&self) -> usize {
        self.0.n_features
    }
    fn read_features(&mut self, first: usize, last: usize, out: &mut Vec<T>) -> Result<()> {
        let (view, n) = (self.0, self.0.n_samples);
        out.clear();
        out.resize((last - first) * n, T::zero());
        out.par_chunks_mut(n.max(1))
            .zip(first..last)
            .for_each(|(dst, j)| {
                for (i, d) in dst.iter_mut().enumerate() {
                    *d = view.at(i, j);
                }
            });
        Ok(())
    }
}

/// A typical auto fit's passes over C, for the route choice's cost estimate.
const TYPICAL_PASSES: f64 = 30.0;

/// What the route choice looks at.
#[derive(Clone, Copy, Debug)]
struct RouteShape {
    n: usize,
    m: usize,
    nnz: usize,
    /// The solver's block width b.
    width: usize,
    /// Whether the transposed Gram route may run (the auto solver without a warm start).
    transposed: bool,
}

/// One route the choice for sparse data weighs: its memory, its multiply-adds for a typical fit, and
/// what the memory holds (the summary's words).
struct RouteCost {
    method: Method,
    /// "Gram", "operator", "transposed Gram": as the messages name the route.
    name: &'static str,
    bytes: f64,
    cost: f64,
    holds: &'static str,
    /// What the cost counts, e.g. "forming C".
    work: &'static str,
}

/// The route for sparse data and why (see [`LaePca::fit_csr`]); `available` is the memory available.
fn choose_method(
    requested: Method,
    s: RouteShape,
    available: Option<u64>,
) -> Result<(Method, String)> {
    let (n, m, nnz, b) = (s.n as f64, s.m as f64, s.nnz as f64, s.width as f64);
    let human = |v: f64| crate::alloc::human_bytes(v.min(u64::MAX as f64) as u64);
    let gram = RouteCost {
        method: Method::Gram,
        name: "Gram",
        bytes: 3.0 * m * m * 8.0,
        cost: n * m * m / 2.0 + TYPICAL_PASSES * m * m * b,
        holds: "C, m x m f64, three copies",
        work: "forming C",
    };
    let operator = RouteCost {
        method: Method::Operator,
        name: "operator",
        // The products' partials, and the loop's m x b blocks (a dozen, in f64 at most).
        bytes: crate::sparse::operator_product_bytes(s.n, s.m, s.width) + 12.0 * m * b * 8.0,
        cost: TYPICAL_PASSES * 2.0 * nnz * b,
        holds: "the products' partial sums",
        work: "30 matrix-free products",
    };
    // K as C is held, one block of densified features (8 MiB at most), the means (three copies) and
    // the m x b directions with the lift's and the finish's copies of them (six).
    let transposed = RouteCost {
        method: Method::GramT,
        name: "transposed Gram",
        bytes: 3.0 * n * n * 8.0 + (8u64 << 20) as f64 + 8.0 * m * (3.0 + 6.0 * b),
        cost: m * n * n / 2.0 + TYPICAL_PASSES * n * n * b,
        holds: "K, n x n f64, three copies, and the m x b directions",
        work: "forming K",
    };
    let budget = available.map(|a| a as f64 / 2.0);
    let fits = |r: &RouteCost| budget.is_none_or(|h| r.bytes <= h);
    let available_text = || human(available.unwrap_or(0) as f64);
    // Asked for: refused only when it cannot fit at all.
    let asked = |r: &RouteCost| {
        if available.is_some_and(|a| r.bytes > a as f64) {
            Err(Error::TooLarge {
                detail: format!(
                    "the {} route needs {} ({}), more than the memory available ({})",
                    r.method.name(),
                    human(r.bytes),
                    r.holds,
                    available_text()
                ),
            })
        } else {
            Ok((r.method, "asked for".to_string()))
        }
    };
    match requested {
        Method::Gram => return asked(&gram),
        Method::Operator => return asked(&operator),
        Method::GramT if !s.transposed => {
            return Err(Error::Unsupported {
                detail: "the transposed Gram route (gram-t) runs the auto solver without a warm \
                         start (the paper's variants and warm starts live in feature space)"
                    .to_string(),
            })
        }
        Method::GramT => return asked(&transposed),
        Method::Auto => {}
    }
    // The transposed route only where the solver allows it and there are fewer samples than features.
    let mut routes = vec![gram, operator];
    if s.transposed && s.n < s.m {
        routes.push(transposed);
    }
    let (fitting, too_large): (Vec<&RouteCost>, Vec<&RouteCost>) =
        routes.iter().partition(|r| fits(r));
    let needs = |r: &RouteCost| {
        format!(
            "the {} route needs {} ({})",
            r.name,
            human(r.bytes),
            r.holds
        )
    };
    if fitting.is_empty() {
        let each: Vec<String> = routes.iter().map(needs).collect();
        return Err(Error::TooLarge {
            detail: format!(
                "no route fits half the memory available ({}): {}",
                available_text(),
                each.join(", ")
            ),
        });
    }
    let best = fitting
        .iter()
        .min_by(|a, b| a.cost.total_cmp(&b.cost))
        .expect("one fits");
    let costs: Vec<String> = fitting
        .iter()
        .map(|r| format!("{} ~{:.1e} multiply-adds", r.work, r.cost))
        .collect();
    let over: Vec<String> = too_large
        .iter()
        .map(|r| {
            format!(
                "the {} route would take {} ({}), more than half the memory available ({})",
                r.name,
                human(r.bytes),
                r.holds,
                available_text()
            )
        })
        .collect();
    let reason = match (fitting.len(), over.is_empty()) {
        (1, _) => over.join("; "),
        (_, true) => format!("cheaper: {}", costs.join(", ")),
        _ => format!("cheaper: {}; {}", costs.join(", "), over.join("; ")),
    };
    Ok((best.method, reason))
}

/// What the solver loop produced and where it ran.
struct LoopRun {
    out: LoopResult,
    backend: Backend,
    adapter: Option<crate::DeviceInfo>,
    /// Time spent moving C and the weights to the device and the weights back (zero on the CPU).
    upload: Duration,
    readback: Duration,
    /// The GPU time of the loop's compute passes (timestamp queries; None on the CPU or without them).
    kernels: Option<Duration>,
    /// Products with C in the loop.
    passes: usize,
    /// Each kernel's dispatches and GPU time (profiling only).
    kernel_profile: Vec<crate::KernelTime>,
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

/// How many rows of `width` values one chunk of [`CHUNK_BYTES`](crate::io::CHUNK_BYTES) holds (1 to
/// `total`), and an empty buffer with room for them, size-checked; `what` names the rows.
fn chunk_buffer<T: Real>(width: usize, total: usize, what: &str) -> Result<(usize, Vec<T>)> {
    let rows = (crate::io::CHUNK_BYTES / (width * std::mem::size_of::<T>())).clamp(1, total);
    let mut block = Vec::new();
    crate::alloc::reserve(&mut block, rows * width, || {
        format!("a block of {rows} {what} of {width} values")
    })?;
    Ok((rows, block))
}

/// A Gram accumulator on `device` (else the CPU) for at most `n_samples` samples where known (the
/// GPU's buffers sized to them; more fail).
fn accumulator_on(
    device: Option<&GpuDevice>,
    n_features: usize,
    center: bool,
    n_samples: Option<usize>,
) -> Result<GramAccumulator> {
    match device {
        Some(d) => GramAccumulator::on_device_for(d, n_features, center, n_samples),
        None => Ok(GramAccumulator::new(n_features, center)?.with_sample_limit(n_samples)),
    }
}

/// Subspace-iteration steps for the Ritz estimates of C's top eigenvalues (λ, α and β come from them).
const RITZ_STEPS: usize = 10;
/// Up to this m, C's accurate eigenvalues come from a dense eigensolver; beyond, from
/// `ACCURATE_RITZ_STEPS` steps of subspace iteration.
const DENSE_EIGEN_MAX: usize = 2048;
const ACCURATE_RITZ_STEPS: usize = 300;

/// What [`LaePca::resolve_parameters`] chooses (auto takes none of it from C: see `fit_stats`).
struct Resolved {
    /// λ (NaN for auto until its final Ritz values give it).
    lambda: f64,
    /// α, for the solvers with a gradient step.
    alpha: Option<f64>,
    /// The momentum solver's β relative to `c_norm²` (zero for the others).
    momentum: f64,
    /// The loop runs on C / c_norm: the Ritz estimate θ₁ ≈ ‖C‖₂, or for auto trace(C) ≥ ‖C‖₂.
    c_norm: f64,
    /// Products of C with k columns this took.
    passes: usize,
}

/// C's top eigenvalues, accurately: all of them for a formed C of moderate m, else a long subspace
/// iteration.
fn accurate_top_eigenvalues(
    p: &Problem,
    k: usize,
    seed: u64,
    cancel: Option<&crate::params::CancelFlag>,
) -> Result<Vec<f64>> {
    Ok(match p.formed {
        Some(c) if c.nrows() <= DENSE_EIGEN_MAX => spectrum::eigenvalues(c),
        Some(c) => spectrum::ritz_values(c, k, ACCURATE_RITZ_STEPS, seed),
        None => spectrum::operator_ritz_values(p.c, k, ACCURATE_RITZ_STEPS, seed, cancel)?,
    })
}

impl LaePca {
    /// The loop's start, W2 and W1ᵀ (m x k, column-major), drawn N(0, 1/m) from the seed: columns of
    /// about unit norm, the scale of the answer (s_i < 1). A warm start replaces W2's first columns.
    fn initial_weights(&self, m: usize, k: usize) -> Result<(Vec<f64>, Vec<f64>)> {
        let mut rng = Rng::new(self.seed);
        let init_std = 1.0 / (m as f64).sqrt();
        let mut w0: Vec<f64> = rng.normals(m * k).iter().map(|v| v * init_std).collect();
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
        let v0: Vec<f64> = rng.normals(m * k).iter().map(|v| v * init_std).collect();
        Ok((w0, v0))
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(n: usize, m: usize, nnz: usize) -> RouteShape {
        RouteShape {
            n,
            m,
            nnz,
            width: 20,
            transposed: false,
        }
    }

    #[test]
    fn route_choice_follows_cost_then_memory() {
        let gib = 1u64 << 30;
        // Few features, dense-ish: forming C is cheaper.
        let (method, why) =
            choose_method(Method::Auto, shape(100_000, 50, 2_000_000), Some(gib)).unwrap();
        assert_eq!(method, Method::Gram, "{why}");
        // Many features, very sparse: the matrix-free products are cheaper.
        let s = shape(200_000, 20_000, 20_000_000);
        let (method, why) = choose_method(Method::Auto, s, None).unwrap();
        assert_eq!(method, Method::Operator, "{why}");
        assert!(why.starts_with("cheaper"), "{why}");
        // C (3 x 20000² f64 = 9.6 GB) does not fit 2 of 4 GiB: the operator route, for that reason.
        let (method, why) = choose_method(Method::Auto, s, Some(4 * gib)).unwrap();
        assert_eq!(method, Method::Operator, "{why}");
        assert!(why.contains("memory available"), "{why}");
        // 40 features, half the entries stored: the Gram route is cheaper, and the operator route's
        // partial sums (16 parts of 41 x 20 f64, ~195 KB with the loop's blocks) would not fit half of
        // 200 KB, where C's three copies (38 KB) do.
        let dense_ish = shape(1_000_000, 40, 20_000_000);
        let (method, why) = choose_method(Method::Auto, dense_ish, None).unwrap();
        assert_eq!(method, Method::Gram, "{why}");
        let (method, why) = choose_method(Method::Auto, dense_ish, Some(200_000)).unwrap();
        assert_eq!(method, Method::Gram, "{why}");
        assert!(why.contains("operator route would take"), "{why}");
        // Neither fits: an error that says what each needs.
        match choose_method(Method::Auto, s, Some(1 << 20)) {
            Err(Error::TooLarge { detail }) => {
                assert!(detail.contains("Gram route needs"), "{detail}");
                assert!(detail.contains("operator route"), "{detail}");
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        // Few samples, many features, a third of the entries stored: forming K (60 x 60) is cheaper
        // than the matrix-free products, where the solver allows the transposed route.
        let wide = shape(60, 3000, 60_000);
        assert_eq!(
            choose_method(Method::Auto, wide, None).unwrap().0,
            Method::Operator
        );
        let wide = RouteShape {
            transposed: true,
            ..wide
        };
        let (method, why) = choose_method(Method::Auto, wide, None).unwrap();
        assert_eq!(method, Method::GramT, "{why}");
        assert!(why.contains("forming K"), "{why}");
        // Not when it does not fit where the operator route does: 2000 samples, K's three copies
        // 96 MB, against half of 100 MiB.
        let fewer_wide = RouteShape {
            transposed: true,
            ..shape(2000, 3000, 60_000)
        };
        let (method, why) = choose_method(Method::Auto, fewer_wide, Some(100 << 20)).unwrap();
        assert_eq!(method, Method::Operator, "{why}");
        assert!(why.contains("transposed Gram route would take"), "{why}");
        // Not with as many samples as features.
        let square = RouteShape {
            transposed: true,
            ..shape(3000, 3000, 60_000)
        };
        assert_ne!(
            choose_method(Method::Auto, square, None).unwrap().0,
            Method::GramT
        );
        // Not with more samples than features, and asked for only where the solver allows it.
        let tall = RouteShape {
            transposed: true,
            ..shape(100_000, 50, 2_000_000)
        };
        assert_eq!(
            choose_method(Method::Auto, tall, None).unwrap().0,
            Method::Gram
        );
        assert!(matches!(
            choose_method(Method::GramT, shape(60, 3000, 60_000), None),
            Err(Error::Unsupported { .. })
        ));
        assert_eq!(
            choose_method(Method::GramT, wide, None).unwrap(),
            (Method::GramT, "asked for".to_string())
        );
        // Asked for: taken as asked, whatever the cost, unless it cannot fit at all.
        let (method, why) = choose_method(Method::Gram, s, None).unwrap();
        assert_eq!((method, why.as_str()), (Method::Gram, "asked for"));
        match choose_method(Method::Gram, s, Some(1 << 20)) {
            Err(Error::TooLarge { detail }) => {
                assert!(detail.contains("gram route needs"), "{detail}")
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }
}
