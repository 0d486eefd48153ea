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
use rayon::prelude::*;

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

    /// Copies samples `start..start + count` as row-major rows into `dst` (count x n_features), and
    /// returns the first non-finite entry met as (sample offset from `start`, feature), if any.
    pub(crate) fn copy_samples(
        &self,
        start: usize,
        count: usize,
        dst: &mut [T],
    ) -> Option<(usize, usize)> {
        let m = self.n_features;
        let mut bad = None;
        for (r, row) in dst.chunks_exact_mut(m).take(count).enumerate() {
            let sample = start + r;
            if self.feature_stride == 1 {
                let src = &self.data[sample * self.sample_stride..][..m];
                row.copy_from_slice(src);
            } else {
                for (j, o) in row.iter_mut().enumerate() {
                    *o = self.at(sample, j);
                }
            }
            if !all_finite(row) {
                if let Some(j) = row.iter().position(|v| !v.as_f64().is_finite()) {
                    bad = Some((r, j));
                    break;
                }
            }
        }
        bad
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

/// Writes samples `start..start + len` of a view (len ≤ the current chunk's room) into the GPU's
/// chunk. Contiguous f32 rows (the usual case) are copied as they are, and the device computes the
/// shift (the first chunk's mean) and subtracts it; the column sums Σ (x − s) accumulate on the
/// device. With a host shift (`shift`: the stream began with f64 samples, see
/// [`GramAccumulator::push_block`]) every row is shifted in f64 and rounded to f32 on the host, so that
/// a large mean loses no digits to f32 before the subtraction, and the device's shift stays zero.
/// Other layouts (columns of a matrix) are gathered row by row.
fn write_gpu_rows<T: Real>(
    gpu: &mut crate::gpu::GpuGram,
    shift: Option<&DVector<f64>>,
    row: &mut Vec<f32>,
    center: bool,
    view: &SampleView<'_, T>,
    start: usize,
    len: usize,
) {
    let m = view.n_features;
    let is_f32 = std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>();
    row.resize(m, 0.0);
    let contiguous = view.feature_stride == 1 && view.sample_stride == m;
    let unpadded = m == gpu.padded_features();
    match shift {
        None => gpu.write(len, center, |w| {
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
        Some(shift) => gpu.write(len, false, |w| {
            for (r, sample) in (start..start + len).enumerate() {
                for (j, o) in row.iter_mut().enumerate() {
                    *o = (view.at(sample, j).as_f64() - shift[j]) as f32;
                }
                w.row(r, row);
            }
        }),
    }
}

/// Whether every value is finite, in one vectorisable pass: x·0 is 0 for finite x and NaN otherwise, so
/// each of the eight lane sums stays exactly 0 unless a value is not finite (and cannot overflow).
fn all_finite<T: Real>(values: &[T]) -> bool {
    let mut lanes = [T::zero(); 8];
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += v * T::zero();
        }
    }
    for (lane, &v) in lanes.iter_mut().zip(rest) {
        *lane += v * T::zero();
    }
    lanes.iter().all(|&l| l == T::zero())
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

    /// The statistics of the union of the samples behind `self` and `other` (both centred, or both not),
    /// by Chan, Golub and LeVeque's pairwise combination: with `n = n_a + n_b` and `d = μ_b − μ_a`,
    ///
    /// ```text
    /// μ = μ_a + (n_b / n) d,    C = C_a + C_b + (n_a n_b / n) d dᵀ
    /// ```
    ///
    /// exact in exact arithmetic, so a tree of merges over any split of the rows gives the statistics
    /// of all of them to rounding (uncentred statistics have zero means, and C is then the plain sum).
    /// Errors if the numbers of features differ.
    pub fn merge(&self, other: &GramStats) -> Result<GramStats> {
        let m = self.n_features();
        if other.n_features() != m
            || self.c.ncols() != m
            || other.c.ncols() != m
            || self.mean.len() != m
            || other.mean.len() != m
        {
            return Err(Error::ShapeMismatch {
                what: format!(
                    "merging statistics of {} x {} (mean {}) and {} x {} (mean {}) features",
                    m,
                    self.c.ncols(),
                    self.mean.len(),
                    other.n_features(),
                    other.c.ncols(),
                    other.mean.len()
                ),
            });
        }
        let n = self.n_samples + other.n_samples;
        if self.n_samples == 0 || other.n_samples == 0 {
            return Ok(if self.n_samples == 0 { other } else { self }.clone());
        }
        let (na, nb, nf) = (self.n_samples as f64, other.n_samples as f64, n as f64);
        let d = &other.mean - &self.mean;
        let mut c = &self.c + &other.c;
        c.ger(na * nb / nf, &d, &d, 1.0);
        Ok(GramStats {
            c,
            mean: &self.mean + d * (nb / nf),
            n_samples: n,
        })
    }
}

/// Samples per block: long enough for an efficient matrix product and for the block's sum into the f64
/// total (m²/2 additions) to cost little against it (m² · BLOCK flops), short enough that the block's
/// sum in f32 stays accurate (relative error ~ sqrt(BLOCK) · ε, ~5e-6 at 2048). Blocks are cut from the stream of samples, not
/// from each push, so the result does not depend on how the samples were split into pushes.
pub const GRAM_BLOCK: usize = 2048;

/// Rows of a CPU block whose shift and column statistics one task computes (in row order): a fixed
/// number, so that the f64 column sums are added in the same order whatever the thread count.
const SHIFT_ROWS: usize = 256;

/// Where block Gram matrices are computed.
#[derive(Debug)]
enum BlockEngine {
    /// The triangular product in the working precision (src/cpu_kernels.rs), [`GRAM_BLOCK`] samples a
    /// block.
    Cpu(Box<CpuBlocks>),
    /// WGSL kernels, chunks of 16 MiB (at least 1024 samples, at most one binding).
    Gpu(Box<crate::gpu::GpuGram>),
}

/// The CPU engine's pending block and work space, in each precision samples arrive in (allocated on
/// first use, then reused: no allocation per block).
#[derive(Debug, Default)]
struct CpuBlocks {
    f32: BlockBuffers<f32>,
    f64: BlockBuffers<f64>,
}

#[derive(Debug, Default)]
struct BlockBuffers<T> {
    /// Up to [`GRAM_BLOCK`] samples (row-major): shifted as they are copied in once the shift is known
    /// (every block after the first), else as pushed and shifted in place when the block is added.
    rows: Vec<T>,
    /// Samples held in `rows`.
    filled: usize,
    /// Whether `rows` holds shifted samples (with their column sums and magnitudes in `sums`, `largest`).
    shifted: bool,
    /// The shift in T (empty until the first block set it).
    shift: Vec<T>,
    /// Σ (x − s) and max |x − s| per column over the block's shifted samples, one row of m for each
    /// [`SHIFT_ROWS`] rows of the block (each summed in row order, so that neither the thread count nor
    /// how the samples were split into pushes changes a bit).
    sums: Vec<f64>,
    largest: Vec<f64>,
    /// The block's Gram matrix (m x m, column-major; lower triangle).
    product: Vec<T>,
    /// The Gram kernel's scratch space (None until the first block).
    scratch: Option<crate::cpu_kernels::GramScratch>,
}

impl<T: Real> BlockBuffers<T> {
    /// Copies samples `start..start + count` of `view` into the block after its `filled` rows, shifted
    /// (with their column statistics) when the block is; returns the first non-finite entry met (as
    /// the sample offset from `start` and the feature). The parts of [`SHIFT_ROWS`] block rows run in
    /// parallel.
    fn append(
        &mut self,
        view: &SampleView<'_, T>,
        start: usize,
        count: usize,
    ) -> Option<(usize, usize)> {
        let m = view.n_features;
        let filled = self.filled;
        let shift = self.shifted.then_some(&self.shift[..]);
        let mut pieces = split_into_parts(
            &mut self.rows[..(filled + count) * m],
            &mut self.sums,
            &mut self.largest,
            m,
            filled,
        );
        pieces
            .par_iter_mut()
            .map(|piece| {
                let offset = piece.first_row - filled;
                let rows = piece.rows.len() / m;
                let bad = match shift {
                    None => view.copy_samples(start + offset, rows, piece.rows),
                    Some(shift) => piece.copy_shifted(view, start + offset, shift),
                };
                bad.map(|(r, j)| (offset + r, j))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .flatten()
            .next()
    }
}

/// Rows of a block from block row `first_row` on, within one part of [`SHIFT_ROWS`] rows, with that
/// part's column statistics.
struct BlockPiece<'a, T> {
    first_row: usize,
    rows: &'a mut [T],
    sums: &'a mut [f64],
    largest: &'a mut [f64],
}

impl<T: Real> BlockPiece<'_, T> {
    /// Shifts the piece's rows in place, adding them to the part's statistics in row order.
    fn shift(&mut self, shift: &[T], m: usize) {
        for row in self.rows.chunks_exact_mut(m) {
            crate::cpu_kernels::shift_row(row, shift, self.sums, self.largest);
        }
    }

    /// Copies the piece's rows from samples `start..` of `view` and shifts them (with their
    /// statistics), row by row while each is in the L1 cache; returns the first non-finite entry (as
    /// in [`SampleView::copy_samples`]), at which it stops.
    fn copy_shifted(
        &mut self,
        view: &SampleView<'_, T>,
        start: usize,
        shift: &[T],
    ) -> Option<(usize, usize)> {
        let m = view.n_features;
        for (r, row) in self.rows.chunks_exact_mut(m).enumerate() {
            if let Some((_, j)) = view.copy_samples(start + r, 1, row) {
                return Some((r, j));
            }
            crate::cpu_kernels::shift_row(row, shift, self.sums, self.largest);
        }
        None
    }
}

/// Splits the block rows `from..` of `rows` (row-major, m features) at the parts' boundaries (every
/// [`SHIFT_ROWS`] block rows), each piece with its part's statistics (`sums` and `largest` hold m
/// values a part).
fn split_into_parts<'a, T>(
    rows: &'a mut [T],
    sums: &'a mut [f64],
    largest: &'a mut [f64],
    m: usize,
    from: usize,
) -> Vec<BlockPiece<'a, T>> {
    let end = rows.len() / m.max(1);
    let mut rest = &mut rows[from * m..];
    let first_part = from / SHIFT_ROWS;
    let mut stats = sums[first_part * m..]
        .chunks_mut(m.max(1))
        .zip(largest[first_part * m..].chunks_mut(m.max(1)));
    let mut pieces = Vec::new();
    let mut row = from;
    while row < end {
        let part_end = ((row / SHIFT_ROWS + 1) * SHIFT_ROWS).min(end);
        let (piece, tail) = std::mem::take(&mut rest).split_at_mut((part_end - row) * m);
        let (sums, largest) = stats.next().expect("a statistics row for every part");
        pieces.push(BlockPiece {
            first_row: row,
            rows: piece,
            sums,
            largest,
        });
        rest = tail;
        row = part_end;
    }
    pieces
}

impl CpuBlocks {
    fn buffers<T: Real>(&mut self) -> &mut BlockBuffers<T> {
        let any: &mut dyn std::any::Any =
            if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
                &mut self.f32
            } else {
                &mut self.f64
            };
        any.downcast_mut()
            .expect("Real is implemented for f32 and f64 only")
    }

    /// Samples pending in the other precision than T (pushes of mixed precision flush at the switch).
    fn pending_other<T: Real>(&self) -> bool {
        if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
            self.f64.filled > 0
        } else {
            self.f32.filled > 0
        }
    }
}

/// The zeroed m x m f64 storage of C, size-checked: an m that does not fit memory is an error that says
/// how much C needs, not an abort.
fn gram_storage(m: usize) -> Result<Vec<f64>> {
    crate::alloc::filled(
        || format!("n_features = {m}: the Gram matrix C (m x m, f64)"),
        m.checked_mul(m),
        None,
        0.0,
    )
    .map_err(|e| Error::TooLarge {
        detail: format!(
            "{e}; C grows with the square of the features: reduce them (select, bin or project \
             them) or use a machine with more memory"
        ),
    })
}

/// Shifts a block of raw samples (row-major, m features) in place by the accumulation's shift, which
/// the first block sets (its mean rounded to T, zeros without centring), adding the shifted values to
/// the parts' column statistics (`sums`, `largest`: m values for each [`SHIFT_ROWS`] rows), in
/// parallel over the parts.
fn shift_in_place<T: Real>(
    rows: &mut [T],
    m: usize,
    center: bool,
    shift: &mut Option<DVector<f64>>,
    (sums, largest): (&mut [f64], &mut [f64]),
) {
    let len = rows.len() / m;
    let shift = shift.get_or_insert_with(|| {
        first_block_mean(&SampleView::new(rows, len, m, m, 1, true), 0, len, center)
    });
    let shift_t: Vec<T> = shift.iter().map(|&v| T::of_f64(v)).collect();
    split_into_parts(rows, sums, largest, m, 0)
        .par_iter_mut()
        .for_each(|piece| piece.shift(&shift_t, m));
}

/// The block's column statistics from its parts' (`len` rows): the sums added in part order, the
/// largest magnitudes.
fn block_statistics(sums: &[f64], largest: &[f64], m: usize, len: usize) -> (Vec<f64>, Vec<f64>) {
    let parts = len.div_ceil(SHIFT_ROWS);
    let (mut total, mut big) = (vec![0f64; m], vec![0f64; m]);
    for (s, l) in sums
        .chunks_exact(m)
        .zip(largest.chunks_exact(m))
        .take(parts)
    {
        total.iter_mut().zip(s).for_each(|(t, v)| *t += v);
        big.iter_mut().zip(l).for_each(|(b, v)| *b = b.max(*v));
    }
    (total, big)
}

/// Zeroed work space of the CPU engine, size-checked like C.
fn block_storage<T: Real>(what: &str, count: Option<usize>) -> Result<Vec<T>> {
    crate::alloc::filled(|| what.to_string(), count, None, T::zero()).map_err(Error::from)
}

/// Streamed accumulation of [`GramStats`]: push blocks of samples, then [`finish`](Self::finish).
///
/// A push that meets a non-finite value (or a set cancel flag) fails, and so does every later push and
/// `finish` of the same accumulator (part of the failed push may have been added).
#[derive(Debug)]
pub struct GramAccumulator {
    engine: BlockEngine,
    center: bool,
    /// Read before each block: a set flag stops the accumulation with [`Error::Cancelled`].
    cancel: Option<crate::params::CancelFlag>,
    shift: Option<DVector<f64>>,
    /// Σ (x − s) over the samples so far.
    shifted_sum: DVector<f64>,
    /// Σ (x − s)(x − s)ᵀ over the samples so far (the CPU engine fills the lower triangle only).
    c: DMatrix<f64>,
    n_samples: usize,
    /// The error of a failed push, returned again by every later call.
    failed: Option<Error>,
    /// One row converted to f32 for the GPU (input that is not contiguous f32 rows).
    row_scratch: Vec<f32>,
    /// GPU, when the stream begins with f64 samples: the first chunk's samples (row-major, f64), held
    /// until the chunk is complete, whose mean becomes the host's shift.
    first_chunk: Vec<f64>,
    /// The most samples this accumulator takes, when it was told (see
    /// [`on_device_for`](Self::on_device_for)).
    announced: Option<usize>,
}

impl GramAccumulator {
    /// An empty accumulator for `n_features` features; with `center`, the mean is removed. Errors
    /// ([`Error::TooLarge`]) when C (m x m, f64) does not fit in the memory available.
    pub fn new(n_features: usize, center: bool) -> Result<Self> {
        Self::with_engine(BlockEngine::Cpu(Box::default()), n_features, center)
    }

    /// An accumulator whose block products run on a GPU (the adapter whose name contains `adapter`, else
    /// the default one; see [`LaePca::adapter`](crate::LaePca::adapter)): chunks of 16 MiB of samples
    /// (at least 1024 samples, at most what one binding holds) are streamed to the device and summed
    /// there with a compensated (two-float) sum; C is read back once by [`finish`](Self::finish).
    pub fn new_gpu(n_features: usize, center: bool, adapter: Option<&str>) -> Result<Self> {
        Self::on_device(&crate::GpuDevice::open(adapter)?, n_features, center)
    }

    /// An accumulator whose block products run on an open GPU (see [`new_gpu`](Self::new_gpu)).
    pub fn on_device(device: &crate::GpuDevice, n_features: usize, center: bool) -> Result<Self> {
        Self::on_device_for(device, n_features, center, None)
    }

    /// [`on_device`](Self::on_device) for at most `n_samples` samples where that is known: fewer
    /// samples than one chunk (16 MiB) get device buffers of their size instead of five chunks', with
    /// the same result. A push beyond `n_samples` samples fails ([`Error::ShapeMismatch`]).
    pub fn on_device_for(
        device: &crate::GpuDevice,
        n_features: usize,
        center: bool,
        n_samples: Option<usize>,
    ) -> Result<Self> {
        // C's host copy is checked before the device is asked for its buffers; on a software device,
        // whose buffers are host memory too, with every buffer of the accumulation (GramLayout).
        let ctx = device.context();
        let layout = crate::gpu::GramLayout::new(ctx, n_features)?.for_samples(n_samples);
        let m64 = n_features as u64;
        let needed = || {
            m64.checked_mul(m64)?
                .checked_mul(8)?
                .checked_add(layout.device_bytes()?)
        };
        ctx.check_device_memory(
            || {
                format!(
                    "n_features = {n_features}: the Gram matrix C in f64 on the host and the \
                     accumulation's buffers on the software GPU"
                )
            },
            needed(),
        )?;
        let c = gram_storage(n_features)?;
        let gram = crate::gpu::GpuGram::new(device.context().clone(), n_features, n_samples)?;
        let engine = BlockEngine::Gpu(Box::new(gram));
        Ok(Self::with_storage(engine, n_features, center, c).with_sample_limit(n_samples))
    }

    /// Makes a push beyond `n_samples` samples in all fail (see [`on_device_for`](Self::on_device_for)).
    pub(crate) fn with_sample_limit(mut self, n_samples: Option<usize>) -> Self {
        self.announced = n_samples;
        self
    }

    fn with_engine(engine: BlockEngine, n_features: usize, center: bool) -> Result<Self> {
        let c = gram_storage(n_features)?;
        Ok(Self::with_storage(engine, n_features, center, c))
    }

    fn with_storage(engine: BlockEngine, m: usize, center: bool, c: Vec<f64>) -> Self {
        GramAccumulator {
            engine,
            center,
            cancel: None,
            shift: None,
            shifted_sum: DVector::zeros(m),
            c: DMatrix::from_vec(m, m, c),
            n_samples: 0,
            failed: None,
            row_scratch: Vec::new(),
            first_chunk: Vec::new(),
            announced: None,
        }
    }

    /// The number of features.
    pub fn n_features(&self) -> usize {
        self.c.nrows()
    }

    /// Samples seen so far.
    pub fn n_samples(&self) -> usize {
        self.n_samples + self.pending()
    }

    /// Samples waiting in the CPU engine's partial block.
    fn pending(&self) -> usize {
        match &self.engine {
            BlockEngine::Cpu(b) => b.f32.filled + b.f64.filled,
            BlockEngine::Gpu(_) => 0,
        }
    }

    /// Makes every later push check `cancel` before each block.
    pub(crate) fn cancel_on(&mut self, cancel: Option<crate::params::CancelFlag>) {
        self.cancel = cancel;
    }

    /// The device a GPU accumulation runs on; None on the CPU.
    pub(crate) fn device(&self) -> Option<crate::GpuDevice> {
        match &self.engine {
            BlockEngine::Cpu(_) => None,
            BlockEngine::Gpu(g) => Some(crate::GpuDevice::of_context(std::sync::Arc::clone(
                g.context(),
            ))),
        }
    }

    /// On the GPU, what the accumulation did so far: submissions (one per full chunk; the last, partial
    /// one is submitted by `finish`), host waits (for a staging buffer to come back), dispatches and
    /// the buffers and bind groups created (all by the constructor: none per chunk). None on the CPU.
    pub fn gpu_stats(&self) -> Option<crate::EngineStats> {
        match &self.engine {
            BlockEngine::Cpu(_) => None,
            BlockEngine::Gpu(g) => Some(g.stats()),
        }
    }

    /// The bytes of the GPU accumulation's chunk buffers (staging ring and device chunks); None on
    /// the CPU.
    pub(crate) fn gpu_chunk_buffer_bytes(&self) -> Option<u64> {
        match &self.engine {
            BlockEngine::Cpu(_) => None,
            BlockEngine::Gpu(g) => Some(g.chunk_buffer_bytes()),
        }
    }

    /// For timing the host's side alone: the GPU accumulation copies every chunk to the device but runs
    /// no kernel on it (C stays zero). False on the CPU.
    pub(crate) fn skip_gpu_kernels(&mut self) -> bool {
        match &mut self.engine {
            BlockEngine::Cpu(_) => false,
            BlockEngine::Gpu(g) => {
                g.skip_kernels();
                true
            }
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
        self.push_view(&view)
    }

    /// Adds all samples of a view, checking that every value is finite.
    pub(crate) fn push_view<T: Real>(&mut self, view: &SampleView<'_, T>) -> Result<()> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let total = self.n_samples + self.pending() + view.n_samples;
        if let Some(n) = self.announced.filter(|&n| total > n) {
            let e = Error::ShapeMismatch {
                what: format!("{total} samples pushed into an accumulator made for {n}"),
            };
            self.failed = Some(e.clone());
            return Err(e);
        }
        let result = match self.engine {
            BlockEngine::Cpu(_) => self.push_view_cpu(view),
            BlockEngine::Gpu(_) => {
                match view.first_non_finite() {
                    // Counted over all pushes: the sample index is the row or the column.
                    Some((row, col, value)) => Err(if view.samples_are_rows {
                        Error::NonFinite {
                            row: row + self.n_samples,
                            col,
                            value,
                        }
                    } else {
                        Error::NonFinite {
                            row,
                            col: col + self.n_samples,
                            value,
                        }
                    }),
                    None => self.push_view_gpu(view),
                }
            }
        };
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    /// The GPU engine: the samples (checked finite) go to the current chunk in pieces that fit it,
    /// each after a look at the cancel flag.
    fn push_view_gpu<T: Real>(&mut self, view: &SampleView<'_, T>) -> Result<()> {
        let mut start = 0;
        while start < view.n_samples {
            if let Some(flag) = &self.cancel {
                flag.check()?;
            }
            let len = self.gpu_room().min(view.n_samples - start);
            if len == 0 {
                // Only with buffers for fewer samples, which `announced` keeps from being exceeded.
                return Err(Error::ShapeMismatch {
                    what: "more samples than the GPU accumulation's buffers were made for".into(),
                });
            }
            self.push_block(view, start, len)?;
            start += len;
        }
        Ok(())
    }

    /// The CPU engine: samples are copied (and checked) into the pending block; every full block is
    /// added at once.
    fn push_view_cpu<T: Real>(&mut self, view: &SampleView<'_, T>) -> Result<()> {
        let m = self.n_features();
        let BlockEngine::Cpu(blocks) = &mut self.engine else {
            unreachable!("called for the CPU engine")
        };
        if blocks.pending_other::<T>() {
            self.flush_cpu::<f32>()?;
            self.flush_cpu::<f64>()?;
        }
        // Samples pushed before this push: error positions count over all pushes.
        let seen = self.n_samples + self.pending();
        let mut sample = 0;
        while sample < view.n_samples {
            if let Some(flag) = &self.cancel {
                flag.check()?;
            }
            let BlockEngine::Cpu(blocks) = &mut self.engine else {
                unreachable!("called for the CPU engine")
            };
            let buf = blocks.buffers::<T>();
            if buf.rows.is_empty() {
                buf.rows =
                    block_storage("the samples of one Gram block", GRAM_BLOCK.checked_mul(m))?;
            }
            if buf.filled == 0 {
                // A new block: shifted on the way in once the shift is known.
                if let (Some(shift), true) = (&self.shift, buf.shift.is_empty()) {
                    buf.shift = shift.iter().map(|&v| T::of_f64(v)).collect();
                }
                buf.shifted = !buf.shift.is_empty();
                // The parts' statistics (filled as the block is shifted, on the way in or at the end).
                let stats = GRAM_BLOCK.div_ceil(SHIFT_ROWS) * m;
                buf.sums.clear();
                buf.sums.resize(stats, 0.0);
                buf.largest.clear();
                buf.largest.resize(stats, 0.0);
            }
            let take = (GRAM_BLOCK - buf.filled).min(view.n_samples - sample);
            if let Some((r, feature)) = buf.append(view, sample, take) {
                let (row, col) = view.user_coords(sample + r, feature);
                // Counted over all pushes (in the caller's layout: rows are samples or features).
                let row = if view.samples_are_rows {
                    row + seen
                } else {
                    row
                };
                let col = if view.samples_are_rows {
                    col
                } else {
                    col + seen
                };
                return Err(Error::NonFinite {
                    row,
                    col,
                    value: view.at(sample + r, feature).as_f64(),
                });
            }
            buf.filled += take;
            sample += take;
            if buf.filled == GRAM_BLOCK {
                self.flush_cpu::<T>()?;
            }
        }
        Ok(())
    }

    /// Adds the CPU engine's pending block of precision T (if any) to the totals: shift, column sums,
    /// the triangular product in T, and its sum into the f64 total.
    ///
    /// Each column of the block is scaled by a power of two so that its largest magnitude is about 1
    /// when it would otherwise overflow or underflow T's range in the product (data of magnitude 1e19 or
    /// 1e-30 in f32); powers of two scale exactly, so the result is the unscaled one wherever that is
    /// representable, and the scale is taken out in f64.
    fn flush_cpu<T: Real>(&mut self) -> Result<()> {
        let m = self.n_features();
        let center = self.center;
        let first = self.n_samples;
        let BlockEngine::Cpu(blocks) = &mut self.engine else {
            return Ok(()); // the GPU engine holds no pending block
        };
        let BlockBuffers {
            rows,
            filled,
            shifted,
            sums,
            largest,
            product,
            scratch,
            ..
        } = blocks.buffers::<T>();
        let len = *filled;
        if len == 0 {
            return Ok(());
        }
        let rows = &mut rows[..len * m];
        if !*shifted {
            shift_in_place(rows, m, center, &mut self.shift, (sums, largest));
        }
        let (sums, largest) = block_statistics(sums, largest, m, len);
        if let Some(j) = sums.iter().position(|s| !s.is_finite()) {
            return Err(Error::Overflow {
                what: format!(
                    "the centred values of column {j} (samples {first}..{}) overflow {}",
                    first + len,
                    std::any::type_name::<T>()
                ),
            });
        }
        // Per-column powers of two that bring the largest magnitude near 1, where the product needs it.
        let safe = T::SAFE_GRAM_RANGE;
        let scales: Option<Vec<f64>> = largest
            .iter()
            .any(|&a| a != 0.0 && !(safe.0..=safe.1).contains(&a))
            .then(|| {
                largest
                    .iter()
                    .map(|&a| {
                        if a == 0.0 {
                            1.0
                        } else {
                            // Clamped so that the scale and its inverse stay normal numbers of T.
                            let (lo, hi) = T::SCALE_EXPONENTS;
                            2f64.powi((a.log2().floor() as i32 + 1).clamp(lo, hi))
                        }
                    })
                    .collect()
            });
        if let Some(scales) = &scales {
            let inverse: Vec<T> = scales.iter().map(|s| T::of_f64(1.0 / s)).collect();
            for row in rows.chunks_exact_mut(m) {
                for (v, &f) in row.iter_mut().zip(&inverse) {
                    *v *= f;
                }
            }
        }
        if product.is_empty() {
            *product = block_storage("the Gram matrix of one block", m.checked_mul(m))?;
        }
        if scratch.is_none() {
            *scratch = Some(crate::cpu_kernels::GramScratch::new::<T>(m)?);
        }
        let scratch = scratch.as_mut().expect("set above");
        let par = crate::cpu_kernels::parallelism();
        crate::cpu_kernels::gram_lower(rows, len, m, product, par, scratch);
        // The lower triangle into the f64 total, columns in parallel (each element's sum is its own).
        let (total, product) = (self.c.as_mut_slice(), &product[..]);
        total
            .par_chunks_mut(m)
            .zip(product.par_chunks(m))
            .enumerate()
            .for_each(|(j, (dst, src))| {
                let (dst, src) = (&mut dst[j..], &src[j..]);
                match &scales {
                    None => dst.iter_mut().zip(src).for_each(|(a, v)| *a += v.as_f64()),
                    Some(f) => dst
                        .iter_mut()
                        .zip(src)
                        .zip(&f[j..])
                        .for_each(|((a, v), fi)| *a += v.as_f64() * (fi * f[j])),
                }
            });
        for (acc, s) in self.shifted_sum.iter_mut().zip(&sums) {
            *acc += s;
        }
        *filled = 0;
        self.n_samples += len;
        Ok(())
    }

    /// Samples the GPU's current chunk can still take (the held first chunk's included).
    fn gpu_room(&self) -> usize {
        let BlockEngine::Gpu(gpu) = &self.engine else {
            unreachable!("called for the GPU engine")
        };
        gpu.room() - self.first_chunk.len() / self.n_features()
    }

    /// Adds samples `start..start + len` of a view (finite values, len ≤ [`gpu_room`](Self::gpu_room))
    /// on the GPU. The chunks are cut from the stream of samples, and the shift is the first chunk's
    /// mean, so the result does not depend on how the samples are pushed: when the stream begins with
    /// f64 samples (and centres), they and the next are held in f64 until the first chunk is
    /// complete, its mean in f64 is the host's shift, and every row is shifted on the host (see
    /// [`write_gpu_rows`]); else the device computes the shift.
    fn push_block<T: Real>(
        &mut self,
        view: &SampleView<'_, T>,
        start: usize,
        len: usize,
    ) -> Result<()> {
        let center = self.center;
        let m = self.n_features();
        let BlockEngine::Gpu(gpu) = &mut self.engine else {
            unreachable!("called for the GPU engine")
        };
        let is_f32 = std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>();
        let begins = gpu.rows_written() == 0 && self.first_chunk.is_empty();
        if self.shift.is_none() && begins && !is_f32 && !center {
            self.shift = Some(DVector::zeros(m));
        }
        if self.shift.is_none() && ((begins && !is_f32) || !self.first_chunk.is_empty()) {
            // (Grown as the samples come, so that a short stream holds no more than itself.)
            crate::alloc::reserve(&mut self.first_chunk, len * m, || {
                "the GPU's first chunk of samples in f64".into()
            })?;
            for sample in start..start + len {
                self.first_chunk
                    .extend((0..m).map(|j| view.at(sample, j).as_f64()));
            }
            self.n_samples += len;
            if self.first_chunk.len() == gpu.room() * m {
                self.release_first_chunk();
            }
            return Ok(());
        }
        write_gpu_rows(
            gpu,
            self.shift.as_ref(),
            &mut self.row_scratch,
            center,
            view,
            start,
            len,
        );
        self.n_samples += len;
        Ok(())
    }

    /// The held first chunk's mean becomes the host's shift, and its samples go to the GPU shifted.
    fn release_first_chunk(&mut self) {
        let m = self.n_features();
        let rows = std::mem::take(&mut self.first_chunk);
        let n = rows.len() / m;
        let BlockEngine::Gpu(gpu) = &mut self.engine else {
            unreachable!("called for the GPU engine")
        };
        let view = SampleView::row_major(&rows, n, m, Layout::SamplesInRows)
            .expect("whole rows of m features");
        let mean = first_block_mean(&view, 0, n, true);
        write_gpu_rows(gpu, Some(&mean), &mut self.row_scratch, true, &view, 0, n);
        self.shift = Some(mean);
    }

    /// The centred Gram matrix and the mean. Errors on an accumulator that saw no sample.
    pub fn finish(self) -> Result<GramStats> {
        self.finish_timed().map(|(stats, _)| stats)
    }

    /// [`finish`](Self::finish), with the GPU time of the accumulation's kernels, measured by
    /// timestamp queries where the device has them (TIMESTAMP_QUERY; one more submission and wait);
    /// None on the CPU and on devices without them.
    pub fn finish_timed(self) -> Result<(GramStats, Option<std::time::Duration>)> {
        self.finish_parts(false)
            .map(|(stats, kernel_time, _)| (stats, kernel_time))
    }

    /// [`finish_timed`](Self::finish_timed), and with `keep_on_device`, a GPU accumulation's sums
    /// left on the device for the loop's C ([`DeviceGram`]), where the centring keeps the loop's
    /// accuracy there (see [`DeviceGram`]); None otherwise.
    pub(crate) fn finish_parts(
        mut self,
        keep_on_device: bool,
    ) -> Result<(GramStats, Option<std::time::Duration>, Option<DeviceGram>)> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        self.flush_cpu::<f32>()?;
        self.flush_cpu::<f64>()?;
        let m = self.n_features();
        if self.n_samples == 0 || m == 0 {
            return Err(Error::EmptyData {
                n_samples: self.n_samples,
                n_features: m,
            });
        }
        let n = self.n_samples as f64;
        let mut kernel_time = None;
        let mut on_device = None;
        let (mut c, shift, sums) = match self.engine {
            BlockEngine::Cpu(_) => {
                // The blocks filled the lower triangle: mirror it.
                let mut c = self.c;
                for j in 0..m {
                    for i in j + 1..m {
                        c[(j, i)] = c[(i, j)];
                    }
                }
                let shift = self.shift.unwrap_or_else(|| DVector::zeros(m));
                (c, shift, self.shifted_sum)
            }
            BlockEngine::Gpu(_) => {
                if !self.first_chunk.is_empty() {
                    self.release_first_chunk();
                }
                let BlockEngine::Gpu(mut gpu) = self.engine else {
                    unreachable!("matched the GPU engine")
                };
                let mut c = self.c;
                let t = gpu.total(&mut c)?;
                kernel_time = t.kernel_time;
                if keep_on_device {
                    on_device = Some(gpu);
                }
                // A host-side shift (f64 first block) left the device's at zero.
                (c, self.shift.unwrap_or(t.shift), t.sums)
            }
        };
        let (d, mean) = if self.center {
            let d = &sums / n; // μ − s
            c.ger(-n, &d, &d, 1.0);
            let mean = shift + &d;
            (d, mean)
        } else {
            (DVector::zeros(m), DVector::zeros(m))
        };
        // Exact symmetry (the block products are symmetric up to rounding).
        for j in 0..m {
            for i in 0..j {
                let avg = 0.5 * c[(i, j)] + 0.5 * c[(j, i)]; // = 0.5 (a + b), without overflowing
                c[(i, j)] = avg;
                c[(j, i)] = avg;
            }
        }
        if let Some(pos) = c.iter().position(|v| !v.is_finite()) {
            return Err(Error::Overflow {
                what: format!(
                    "the Gram matrix of the (finite) data exceeds the f64 range at ({}, {})",
                    pos % m,
                    pos / m
                ),
            });
        }
        let device = on_device.and_then(|gram| DeviceGram::of(gram, &c, &d, n));
        Ok((
            GramStats {
                c,
                mean,
                n_samples: self.n_samples,
            },
            kernel_time,
            device,
        ))
    }
}

/// A GPU accumulation's sums, left on the device after [`GramAccumulator::finish_parts`] so that the
/// loop's C is made there (`GpuGram::into_loop_panels`) instead of being scaled on the host and
/// uploaded again.
///
/// The device subtracts the centring term `n (μ − s)(μ − s)ᵀ` in f32, so its rounding is that of
/// the larger of C's entries and that term: kept only where the term's largest entry,
/// `n ‖μ − s‖∞²`, is at most C's largest diagonal entry (the shift s, taken from the first samples,
/// is near the mean), so that the loop's C is within a few f32 ulps of C's largest entries, as the
/// host's copy is; else the host's copy is uploaded.
pub(crate) struct DeviceGram {
    gram: Box<crate::gpu::GpuGram>,
    /// `√n (μ − s)`.
    centre: Vec<f64>,
}

impl DeviceGram {
    fn of(
        gram: Box<crate::gpu::GpuGram>,
        c: &DMatrix<f64>,
        d: &DVector<f64>,
        n: f64,
    ) -> Option<Self> {
        let largest_diagonal = c.diagonal().iter().fold(0.0f64, |a, &v| a.max(v));
        let largest_term = n * d.iter().fold(0.0f64, |a, &v| a.max(v * v));
        if largest_term > largest_diagonal {
            log::debug!(
                "the loop's C is uploaded from the host: the centring term ({largest_term:.3e}) \
                 exceeds C's largest diagonal entry ({largest_diagonal:.3e})"
            );
            return None;
        }
        let root = n.sqrt();
        Some(DeviceGram {
            gram,
            centre: d.iter().map(|&v| root * v).collect(),
        })
    }

    /// The number of features m.
    pub fn n_features(&self) -> usize {
        self.centre.len()
    }

    /// The device the sums are on.
    pub fn context(&self) -> &std::sync::Arc<crate::gpu::GpuContext> {
        self.gram.context()
    }

    /// The loop's C, `C / c_norm`, as row panels on the device (`GpuGram::into_loop_panels`).
    pub fn into_loop_panels(self, c_norm: f64) -> Result<Vec<(usize, usize, wgpu::Buffer)>> {
        self.gram.into_loop_panels(&self.centre, 1.0 / c_norm)
    }
}

#[cfg(test)]
mod tests {
    use super::{GramAccumulator, GRAM_BLOCK, SHIFT_ROWS};
    use crate::real::Real;
    use crate::rng::Rng;

    /// Samples with a large mean (so the shift matters) and spread columns, row-major.
    fn samples(n: usize, m: usize) -> Vec<f64> {
        let mut rng = Rng::new(7);
        (0..n * m)
            .map(|i| 1000.0 + (i % m) as f64 + rng.normal() * (1.0 + (i % m) as f64))
            .collect()
    }

    fn gram_bits<T: Real>(rows: &[T], m: usize, pushes: &[usize], threads: usize) -> Vec<u64> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut acc = GramAccumulator::new(m, true).unwrap();
            let mut at = 0;
            for &len in pushes.iter().chain(std::iter::once(&usize::MAX)) {
                let end = (at + len.min(rows.len() / m - at)) * m;
                acc.push_rows(&rows[at * m..end]).unwrap();
                at = end / m;
            }
            let stats = acc.finish().unwrap();
            stats
                .c
                .iter()
                .chain(stats.mean.iter())
                .map(|v| v.to_bits())
                .collect()
        })
    }

    /// With several non-finite values in one push, in different parts of a block (which are copied in
    /// parallel), the error names the first in sample order.
    #[test]
    fn the_first_non_finite_value_is_the_one_reported() {
        let m = 5;
        let mut rows = samples(3 * SHIFT_ROWS, m);
        rows[(2 * SHIFT_ROWS + 3) * m + 1] = f64::NAN;
        rows[(SHIFT_ROWS + 7) * m + 4] = f64::INFINITY;
        rows[(SHIFT_ROWS + 7) * m + 2] = f64::NEG_INFINITY;
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let e = pool.install(|| {
                let mut acc = GramAccumulator::new(m, true).unwrap();
                acc.push_rows(&rows[..10 * m]).unwrap();
                acc.push_rows(&rows[10 * m..]).unwrap_err()
            });
            assert!(
                matches!(e, crate::Error::NonFinite { row, col: 2, .. } if row == SHIFT_ROWS + 7),
                "{threads} threads: {e:?}"
            );
        }
    }

    /// In f64 the parts' column sums round (in f32 they are exact: a block's sum of f32 values fits
    /// f64's digits), so the order of their addition shows in the bits.
    #[test]
    fn the_cpu_gram_is_the_same_whatever_the_threads_and_the_pushes() {
        // Three blocks and a part: the first block shifted at its end, the others on the way in.
        let (n, m) = (2 * GRAM_BLOCK + 3 * SHIFT_ROWS + 17, 37);
        let rows = samples(n, m);
        let rows32: Vec<f32> = rows.iter().map(|&v| v as f32).collect();
        // Pushes that end inside parts, on their boundaries and across blocks.
        let uneven = [1, SHIFT_ROWS - 1, SHIFT_ROWS + 5, 3, GRAM_BLOCK, 700];
        let (whole, whole32) = (gram_bits(&rows, m, &[], 1), gram_bits(&rows32, m, &[], 1));
        for threads in [1, 2, 3] {
            assert_eq!(
                gram_bits(&rows, m, &[], threads),
                whole,
                "{threads} threads"
            );
            assert_eq!(
                gram_bits(&rows, m, &uneven, threads),
                whole,
                "{threads} threads, uneven"
            );
            assert_eq!(
                gram_bits(&rows32, m, &uneven, threads),
                whole32,
                "f32, {threads} threads"
            );
        }
    }
}
