//! Data layouts, validation of the input and the Gram accumulation `C = Σ (x − μ)(x − μ)ᵀ`.
//!
//! The accumulation is streamed: samples arrive in blocks, each block's Gram matrix is computed in the
//! working precision `T` (short sums, so little rounding) and added into an `f64` accumulator, so that
//! 10⁵+ samples lose no digits to a long f32 sum. Centring uses a shift `s` (the first block's mean):
//! `Σ (x − μ)(x − μ)ᵀ = Σ (x − s)(x − s)ᵀ − n (μ − s)(μ − s)ᵀ` with `μ − s` small, so one pass suffices
//! and data whose mean is large against its spread keeps its digits.

use crate::error::{Error, Result};
use crate::real::Real;
use nalgebra::{DMatrix, DVector};

/// How a data matrix is laid out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Rows are samples and columns are features (scikit-learn's convention; the default).
    #[default]
    SamplesInRows,
    /// Rows are features and columns are samples (the paper's `X`, m x n).
    FeaturesInRows,
}

/// A read-only view of the input that yields `(sample, feature)` entries whatever the memory order.
#[derive(Clone, Copy)]
pub(crate) struct SampleView<'a, T> {
    data: &'a [T],
    pub n_samples: usize,
    pub n_features: usize,
    sample_stride: usize,
    feature_stride: usize,
    samples_are_rows: bool,
}

impl<'a, T: Real> SampleView<'a, T> {
    /// A row-major `rows x cols` slice.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize, layout: Layout) -> Result<Self> {
        let expected = rows.checked_mul(cols);
        if expected != Some(data.len()) {
            return Err(Error::ShapeMismatch {
                what: format!(
                    "a {rows} x {cols} matrix needs {rows}*{cols} values, the slice has {}",
                    data.len()
                ),
            });
        }
        Ok(match layout {
            Layout::SamplesInRows => Self::new(data, rows, cols, cols, 1, true),
            Layout::FeaturesInRows => Self::new(data, cols, rows, 1, cols, false),
        })
    }

    /// A column-major nalgebra matrix.
    pub fn matrix(x: &'a DMatrix<T>, layout: Layout) -> Self {
        let (rows, cols) = x.shape();
        match layout {
            Layout::SamplesInRows => Self::new(x.as_slice(), rows, cols, 1, rows, true),
            Layout::FeaturesInRows => Self::new(x.as_slice(), cols, rows, rows, 1, false),
        }
    }

    fn new(
        data: &'a [T],
        n: usize,
        m: usize,
        ss: usize,
        fs: usize,
        samples_are_rows: bool,
    ) -> Self {
        SampleView {
            data,
            n_samples: n,
            n_features: m,
            sample_stride: ss,
            feature_stride: fs,
            samples_are_rows,
        }
    }

    #[inline]
    pub(crate) fn at(&self, sample: usize, feature: usize) -> T {
        self.data[sample * self.sample_stride + feature * self.feature_stride]
    }

    /// (row, column) of an entry in the caller's layout.
    pub fn user_coords(&self, sample: usize, feature: usize) -> (usize, usize) {
        if self.samples_are_rows {
            (sample, feature)
        } else {
            (feature, sample)
        }
    }

    /// The first non-finite entry, in the caller's (row, column) coordinates.
    pub fn first_non_finite(&self) -> Option<(usize, usize, f64)> {
        // Scan in memory order (fast), then report the entry in the caller's coordinates.
        let pos = self.data.iter().position(|v| !v.as_f64().is_finite())?;
        let (sample, feature) = if self.feature_stride == 1 && self.sample_stride == self.n_features
        {
            (pos / self.n_features, pos % self.n_features)
        } else {
            (pos % self.n_samples, pos / self.n_samples)
        };
        let (row, col) = self.user_coords(sample, feature);
        Some((row, col, self.data[pos].as_f64()))
    }
}

/// The first block's mean (rounded to T, so that the shift a block subtracts in T is exactly the one the
/// mean adds back), or zeros without centring.
fn first_block_mean<T: Real>(
    view: &SampleView<'_, T>,
    start: usize,
    len: usize,
    center: bool,
) -> DVector<f64> {
    let m = view.n_features;
    let mut mean = DVector::zeros(m);
    if center {
        for r in start..start + len {
            for j in 0..m {
                mean[j] += view.at(r, j).as_f64();
            }
        }
        mean.apply(|v| *v = T::of_f64(*v / len as f64).as_f64());
    }
    mean
}

/// Adds samples `start..start + len` of a view on the GPU. Contiguous f32 rows (the usual case) are
/// copied into the staging buffer as they are, and the device computes the shift (the first block's
/// mean) and subtracts it; the column sums Σ (x − s) accumulate on the device. When the first block
/// is f64, the shift is the host's: every row is shifted in f64 and rounded to f32 on the host (so that
/// a large mean loses no digits to f32 before the subtraction) and the device's shift stays zero. Other
/// layouts (columns of a matrix) are gathered row by row.
fn push_gpu_block<T: Real>(
    gpu: &mut crate::gpu::GpuGram,
    host_shift: &mut Option<DVector<f64>>,
    row: &mut Vec<f32>,
    center: bool,
    view: &SampleView<'_, T>,
    start: usize,
    len: usize,
) {
    let m = view.n_features;
    let is_f32 = std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>();
    if host_shift.is_none() && !is_f32 && gpu.chunks_added() == 0 {
        *host_shift = Some(first_block_mean(view, start, len, center));
    }
    row.resize(m, 0.0);
    let contiguous = view.feature_stride == 1 && view.sample_stride == m;
    let unpadded = m == gpu.padded_features();
    match host_shift.as_ref() {
        None => gpu.add(len, center, |w| {
            if is_f32 && contiguous {
                let data: &[f32] = bytemuck::cast_slice(&view.data[start * m..(start + len) * m]);
                if unpadded {
                    w.padded_rows(0, data);
                } else {
                    for (r, values) in data.chunks_exact(m).enumerate() {
                        w.row(r, values);
                    }
                }
            } else {
                for (r, sample) in (start..start + len).enumerate() {
                    for (j, o) in row.iter_mut().enumerate() {
                        *o = view.at(sample, j).as_f64() as f32;
                    }
                    w.row(r, row);
                }
            }
        }),
        Some(shift) => gpu.add(len, false, |w| {
            for (r, sample) in (start..start + len).enumerate() {
                for (j, o) in row.iter_mut().enumerate() {
                    *o = (view.at(sample, j).as_f64() - shift[j]) as f32;
                }
                w.row(r, row);
            }
        }),
    }
}

/// The statistics a fit needs from the data: the centred Gram matrix, the mean and the sample count.
#[derive(Clone, Debug)]
pub struct GramStats {
    /// `C = Σ (x − μ)(x − μ)ᵀ` (or `Σ x xᵀ` without centring), n_features x n_features, in f64.
    pub c: DMatrix<f64>,
    /// The mean of each feature (zeros without centring).
    pub mean: DVector<f64>,
    /// The number of samples.
    pub n_samples: usize,
}

impl GramStats {
    /// The number of features m.
    pub fn n_features(&self) -> usize {
        self.c.nrows()
    }
    /// `trace(C)`: the total variance times n − 1.
    pub fn trace(&self) -> f64 {
        self.c.trace()
    }
}

/// Samples per block: long enough for an efficient matrix product, short enough that the block's sum in
/// f32 stays accurate (relative error ~ sqrt(BLOCK) · ε).
pub const GRAM_BLOCK: usize = 512;

/// Where block Gram matrices are computed.
#[derive(Debug)]
enum BlockEngine {
    /// nalgebra in the working precision, [`GRAM_BLOCK`] samples a block.
    Cpu,
    /// WGSL kernels, chunks as large as the device allows (up to 4096 samples).
    Gpu(Box<crate::gpu::GpuGram>),
}

/// Streamed accumulation of [`GramStats`]: push blocks of samples, then [`finish`](Self::finish).
#[derive(Debug)]
pub struct GramAccumulator {
    engine: BlockEngine,
    center: bool,
    shift: Option<DVector<f64>>,
    /// Σ (x − s) over the samples so far.
    shifted_sum: DVector<f64>,
    /// Σ (x − s)(x − s)ᵀ over the samples so far.
    c: DMatrix<f64>,
    n_samples: usize,
    /// One row converted to f32 for the GPU (input that is not contiguous f32 rows).
    row_scratch: Vec<f32>,
}

impl GramAccumulator {
    /// An empty accumulator for `n_features` features; with `center`, the mean is removed.
    pub fn new(n_features: usize, center: bool) -> Self {
        Self::with_engine(BlockEngine::Cpu, n_features, center)
    }

    /// An accumulator whose block products run on a GPU (the adapter whose name contains `adapter`, else
    /// the default one; see [`LaePca::adapter`](crate::LaePca::adapter)): chunks of up to 4096 samples
    /// are streamed to the device and summed there with a compensated (two-float) sum; C is read back
    /// once by [`finish`](Self::finish).
    pub fn new_gpu(n_features: usize, center: bool, adapter: Option<&str>) -> Result<Self> {
        Self::on_device(&crate::GpuDevice::open(adapter)?, n_features, center)
    }

    /// An accumulator whose block products run on an open GPU (see [`new_gpu`](Self::new_gpu)).
    pub fn on_device(device: &crate::GpuDevice, n_features: usize, center: bool) -> Result<Self> {
        Ok(Self::with_engine(
            BlockEngine::Gpu(Box::new(crate::gpu::GpuGram::new(
                device.context().clone(),
                n_features,
            )?)),
            n_features,
            center,
        ))
    }

    fn with_engine(engine: BlockEngine, n_features: usize, center: bool) -> Self {
        GramAccumulator {
            engine,
            center,
            shift: None,
            shifted_sum: DVector::zeros(n_features),
            c: DMatrix::zeros(n_features, n_features),
            n_samples: 0,
            row_scratch: Vec::new(),
        }
    }

    /// The number of features.
    pub fn n_features(&self) -> usize {
        self.c.nrows()
    }

    /// Samples seen so far.
    pub fn n_samples(&self) -> usize {
        self.n_samples
    }

    /// On the GPU, what the accumulation did so far: submissions (one per chunk of up to 4096
    /// samples), host waits (for a staging buffer to come back), dispatches and the buffers and bind
    /// groups created (all by the constructor: none per chunk). None on the CPU.
    pub fn gpu_stats(&self) -> Option<crate::EngineStats> {
        match &self.engine {
            BlockEngine::Cpu => None,
            BlockEngine::Gpu(g) => Some(g.stats()),
        }
    }

    /// Adds row-major samples (`rows.len()` must be a multiple of n_features). Checks that every value is
    /// finite; the error names the row (counted over all pushes so far) and the column.
    pub fn push_rows<T: Real>(&mut self, rows: &[T]) -> Result<()> {
        let m = self.n_features();
        if m == 0 || rows.len() % m != 0 {
            return Err(Error::ShapeMismatch {
                what: format!("{} values are not whole rows of {m} features", rows.len()),
            });
        }
        let view = SampleView::row_major(rows, rows.len() / m, m, Layout::SamplesInRows)?;
        if let Some((row, col, value)) = view.first_non_finite() {
            return Err(Error::NonFinite {
                row: row + self.n_samples,
                col,
                value,
            });
        }
        self.push_view(&view);
        Ok(())
    }

    /// Adds all samples of a validated view, block by block.
    pub(crate) fn push_view<T: Real>(&mut self, view: &SampleView<'_, T>) {
        let block_rows = match &self.engine {
            BlockEngine::Cpu => GRAM_BLOCK,
            BlockEngine::Gpu(g) => g.block_rows(),
        };
        let mut start = 0;
        while start < view.n_samples {
            let len = block_rows.min(view.n_samples - start);
            self.push_block(view, start, len);
            start += len;
        }
    }

    /// Adds samples `start..start + len` of a view (finite values): each sample is read once, shifted
    /// and written as a row of the block the engine takes (row-major, in T), while the shifted column
    /// sums accumulate in f64. On the GPU, see [`push_gpu_block`].
    fn push_block<T: Real>(&mut self, view: &SampleView<'_, T>, start: usize, len: usize) {
        let m = self.n_features();
        let center = self.center;
        if let BlockEngine::Gpu(gpu) = &mut self.engine {
            push_gpu_block(
                gpu,
                &mut self.shift,
                &mut self.row_scratch,
                center,
                view,
                start,
                len,
            );
            self.n_samples += len;
            return;
        }
        let shift = self
            .shift
            .get_or_insert_with(|| first_block_mean(view, start, len, center));
        let shift_t: Vec<T> = shift.iter().map(|&v| T::of_f64(v)).collect();
        let sums = self.shifted_sum.as_mut_slice();
        // Row-major samples are the columns of an m x len matrix Bᵀ; the block's Gram matrix
        // Bᵀ B in T (a short sum) is added into the f64 total. `gemm` on two contiguous
        // matrices runs in matrixmultiply's packed kernels; the transposed copy costs m·len
        // against the product's m²·len.
        let mut rows = vec![T::zero(); len * m];
        for (r, sample) in (start..start + len).enumerate() {
            let row = &mut rows[r * m..(r + 1) * m];
            for (j, (o, &s)) in row.iter_mut().zip(&shift_t).enumerate() {
                let v = view.at(sample, j) - s;
                sums[j] += v.as_f64();
                *o = v;
            }
        }
        let block_t = DMatrix::from_vec(m, len, rows);
        let block = block_t.transpose();
        let mut g = DMatrix::<T>::zeros(m, m);
        g.gemm(T::one(), &block_t, &block, T::zero());
        self.c.zip_apply(&g, |acc, v| *acc += v.as_f64());
        self.n_samples += len;
    }

    /// The centred Gram matrix and the mean. Errors on an accumulator that saw no sample.
    pub fn finish(self) -> Result<GramStats> {
        let m = self.n_features();
        if self.n_samples == 0 || m == 0 {
            return Err(Error::EmptyData {
                n_samples: self.n_samples,
                n_features: m,
            });
        }
        let n = self.n_samples as f64;
        let (mut c, shift, sums) = match self.engine {
            BlockEngine::Cpu => (
                self.c,
                self.shift.unwrap_or_else(|| DVector::zeros(m)),
                self.shifted_sum,
            ),
            BlockEngine::Gpu(mut gpu) => {
                let t = gpu.total()?;
                // A host-side shift (f64 first block) left the device's at zero.
                (t.c, self.shift.unwrap_or(t.shift), t.sums)
            }
        };
        let mean = if self.center {
            let d = &sums / n; // μ − s
            c.ger(-n, &d, &d, 1.0);
            shift + d
        } else {
            DVector::zeros(m)
        };
        // Exact symmetry (the block products are symmetric up to rounding).
        for j in 0..m {
            for i in 0..j {
                let avg = 0.5 * (c[(i, j)] + c[(j, i)]);
                c[(i, j)] = avg;
                c[(j, i)] = avg;
            }
        }
        Ok(GramStats {
            c,
            mean,
            n_samples: self.n_samples,
        })
    }
}
