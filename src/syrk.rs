//! The f32 Gram block on x86-64 CPUs with AVX2 and FMA: the lower triangle of `BᵀB` for a block B of
//! samples (a SYRK), by a register-blocked micro-kernel in the style of BLIS (Van Zee & van de Geijn
//! 2015). faer's triangular product serves f64 and every other CPU; on this kind of CPU this kernel is
//! 1.1-1.2x as fast as faer's at m = 784 and 1.6x at m = 2048 (benches/gram_kernels.rs, figures in
//! bench/results/cpu-2core-sklearn.md).
//!
//! Layout. C (m x m, column-major, lower triangle wanted) is symmetric, so entry `(j, i)` with `j ≥ i`
//! is kept where a column-major tile is contiguous: a tile holds `Σ_s B[s, i] B[s, j]` for 4 or 6
//! columns i (broadcast scalars) and 16 rows j (two 8-lane vectors), in at most 12 of the 16 vector
//! registers. The samples are taken [`DEPTH`] at a time; each such slice is packed sample-major into
//! panels of 16 features (zero-padded past m), which feed both sides of the product, so that the
//! inner loop reads two contiguous streams.
//!
//! Determinism: every entry of C is summed by one task, over the samples in order within a slice of
//! [`DEPTH`] samples and then slice by slice, so the result is the same whatever the thread count
//! (tested in src/cpu_kernels.rs).

use rayon::prelude::*;
use std::arch::x86_64::*;

/// Features per packed panel, and the rows j of one tile (vector side: two vectors of 8 lanes).
const PANEL: usize = 16;
/// The columns i of a panel's tiles (broadcast side), as (offset in the panel, width): a 6 x 16 tile
/// keeps its accumulators in 12 of the 16 vector registers, and 16 = 6 + 6 + 4 keeps every tile inside
/// one panel, so that one packing serves both sides of the product.
const TILE_COLUMNS: [(usize, usize); 3] = [(0, 6), (6, 6), (12, 4)];
/// Samples packed at a time (two slices of a [`GRAM_BLOCK`](crate::data::GRAM_BLOCK)): each tile is
/// stored (added to C's block) once per slice. Measured on the Gram phase (examples/cpu_gram_time.rs,
/// 2 cores, interleaved, medians): at m = 784 and 2048, 1024 takes 0.7-0.85x the time of 128 and is
/// no slower than 256, 512 or 2048; a slice's packing (4 KiB a feature) is read from the L3 cache.
const DEPTH: usize = 1024;

/// Samples a tile sums in registers before adding the sum to its running total: C's error in f32
/// then matches a product summed 128 samples at a time (2.2e-7 relative in Frobenius norm on
/// Fashion-MNIST's centred C, against 9.4e-7 for faer's product and 1.9e-6 for runs of 1024).
const RUN: usize = 128;

/// Whether this CPU runs the kernel (checked once by the standard library, then cached).
pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// The packed slice of a block, kept from call to call: `⌈m/16⌉` panels of DEPTH x 16 f32.
#[derive(Debug, Default)]
pub(crate) struct Packing(Vec<f32>);

impl Packing {
    /// Room for m features, size-checked (no abort).
    pub fn new(m: usize) -> crate::Result<Self> {
        let count = m.div_ceil(PANEL).checked_mul(PANEL * DEPTH);
        let what = || format!("n_features = {m}: the packed samples of the Gram kernel");
        Ok(Packing(crate::alloc::filled(what, count, None, 0.0)?))
    }
}

/// The lower triangle (diagonal included) of `out = Bᵀ B` for the `len x m` row-major block `rows`;
/// `out` is m x m column-major, its strict upper triangle left untouched. `parallel`: the tiles run on
/// rayon's current pool, else on the calling thread. Requires [`available`] and a packing for m.
pub(crate) fn gram_lower(
    rows: &[f32],
    len: usize,
    m: usize,
    out: &mut [f32],
    parallel: bool,
    packing: &mut Packing,
) {
    assert!(available(), "the AVX2 Gram kernel needs AVX2 and FMA");
    assert_eq!(rows.len(), len * m);
    assert_eq!(out.len(), m * m);
    let panels = m.div_ceil(PANEL);
    assert!(
        packing.0.len() >= panels * PANEL * DEPTH,
        "a packing for {m} features"
    );
    if len == 0 {
        for j in 0..m {
            out[j * m + j..(j + 1) * m].fill(0.0);
        }
        return;
    }
    for (slice, first) in (0..len).step_by(DEPTH).enumerate() {
        let depth = DEPTH.min(len - first);
        pack(
            &rows[first * m..(first + depth) * m],
            m,
            depth,
            &mut packing.0,
            parallel,
        );
        let packed = &packing.0[..];
        let panel = |p: usize| &packed[p * PANEL * DEPTH..(p + 1) * PANEL * DEPTH];
        let accumulate = slice > 0;
        // One task per panel of columns i: out's columns 16q..16q+16 (contiguous, column-major).
        let task = |(q, columns): (usize, &mut [f32])| {
            for (offset, width) in TILE_COLUMNS {
                let i0 = q * PANEL + offset;
                if i0 >= m {
                    break;
                }
                let a = panel(q)[offset..].as_ptr();
                let columns = &mut columns[offset * m..];
                // From the panel of rows j that holds the diagonal entry (i0, i0) on.
                for p in q..panels {
                    // SAFETY: available() holds; a and b point into panels of DEPTH ≥ depth samples
                    // of PANEL features, a at an offset with offset + width ≤ PANEL.
                    let acc = unsafe {
                        let b = panel(p).as_ptr();
                        if width == 6 {
                            tile::<6>(depth, a, b)
                        } else {
                            tile::<4>(depth, a, b)
                        }
                    };
                    store(&acc[..width], columns, m, (i0, p * PANEL), accumulate);
                }
            }
        };
        if parallel {
            out.par_chunks_mut(PANEL * m).enumerate().for_each(task);
        } else {
            out.chunks_mut(PANEL * m).enumerate().for_each(task);
        }
    }
}

/// Packs `depth` samples of the row-major block into panels of [`PANEL`] features: panel p holds,
/// for each sample in order, features `16p..16p+16` (zero past m).
fn pack(block: &[f32], m: usize, depth: usize, packed: &mut [f32], parallel: bool) {
    let fill = |(p, panel): (usize, &mut [f32])| {
        let from = p * PANEL;
        if from + PANEL <= m {
            assert!(block.len() >= (depth - 1) * m + from + PANEL && panel.len() >= depth * PANEL);
            // SAFETY: available() holds (checked by gram_lower); the bounds are asserted above.
            unsafe { copy_panel(block.as_ptr().add(from), m, depth, panel.as_mut_ptr()) };
        } else {
            let width = m - from;
            let rows = panel.chunks_exact_mut(PANEL).take(depth);
            for (dst, src) in rows.zip(block[from..].chunks(m)) {
                dst[..width].copy_from_slice(&src[..width]);
                dst[width..].fill(0.0);
            }
        }
    };
    let panels = m.div_ceil(PANEL);
    let packed = &mut packed[..panels * PANEL * DEPTH];
    if parallel {
        packed
            .par_chunks_mut(PANEL * DEPTH)
            .enumerate()
            .for_each(fill);
    } else {
        packed.chunks_mut(PANEL * DEPTH).enumerate().for_each(fill);
    }
}

/// Copies [`PANEL`] features of `depth` rows (stride m) from `src` to the contiguous `dst`.
///
/// # Safety
/// The CPU has AVX2; `src` holds `(depth − 1)·m + 16` readable f32 and `dst` `16·depth` writable f32.
#[target_feature(enable = "avx2")]
unsafe fn copy_panel(src: *const f32, m: usize, depth: usize, dst: *mut f32) {
    for s in 0..depth {
        let (from, to) = (src.add(s * m), dst.add(s * PANEL));
        _mm256_storeu_ps(to, _mm256_loadu_ps(from));
        _mm256_storeu_ps(to.add(8), _mm256_loadu_ps(from.add(8)));
    }
}

/// Adds (or, for the first slice, writes) a tile into out's columns `i0..i0 + acc.len()` (held by
/// `columns`, which starts at column i0), rows `j0..j0+16`: only the entries with `j ≥ i` and `j < m`.
fn store(
    acc: &[[f32; PANEL]],
    columns: &mut [f32],
    m: usize,
    (i0, j0): (usize, usize),
    accumulate: bool,
) {
    let interior = j0 >= i0 + acc.len() && j0 + PANEL <= m;
    for (r, values) in acc.iter().enumerate() {
        let i = i0 + r;
        if i >= m {
            break;
        }
        let (from, to) = (j0.max(i), (j0 + PANEL).min(m));
        if from >= to {
            continue;
        }
        let dst = &mut columns[r * m + from..r * m + to];
        if interior {
            let dst: &mut [f32; PANEL] = dst.try_into().expect("a whole tile row");
            if accumulate {
                // SAFETY: available() holds (checked by gram_lower).
                unsafe { add_row(dst, values) };
            } else {
                *dst = *values;
            }
            continue;
        }
        let src = &values[from - j0..to - j0];
        if accumulate {
            dst.iter_mut().zip(src).for_each(|(d, v)| *d += v);
        } else {
            dst.copy_from_slice(src);
        }
    }
}

/// `dst += src` for one row of a tile.
///
/// # Safety
/// The CPU has AVX2.
#[target_feature(enable = "avx2")]
unsafe fn add_row(dst: &mut [f32; PANEL], src: &[f32; PANEL]) {
    for v in [0, 8] {
        let (d, s) = (dst.as_mut_ptr().add(v), src.as_ptr().add(v));
        _mm256_storeu_ps(d, _mm256_add_ps(_mm256_loadu_ps(d), _mm256_loadu_ps(s)));
    }
}

/// The I x 16 tile `Σ_{s<depth} a[s][r] · b[s][c]` of two packed panels (rows of 16 f32 each; a
/// starts at the tile's first column i within its panel): [`RUN`] samples at a time summed in
/// registers, the runs added up in memory (a two-level sum: rounding grows with `RUN + depth/RUN`,
/// not `depth`).
///
/// # Safety
/// The CPU has AVX2 and FMA; `b` holds `16·depth` readable f32 and `a` `16·(depth − 1) + I`.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const I: usize>(depth: usize, a: *const f32, b: *const f32) -> [[f32; PANEL]; 6] {
    let mut out = [[0f32; PANEL]; 6];
    for start in (0..depth).step_by(RUN) {
        let mut c = [[_mm256_setzero_ps(); 2]; I];
        for s in start..(start + RUN).min(depth) {
            let b0 = _mm256_loadu_ps(b.add(s * PANEL));
            let b1 = _mm256_loadu_ps(b.add(s * PANEL + 8));
            let a = a.add(s * PANEL);
            for (r, row) in c.iter_mut().enumerate() {
                let x = _mm256_broadcast_ss(&*a.add(r));
                row[0] = _mm256_fmadd_ps(x, b0, row[0]);
                row[1] = _mm256_fmadd_ps(x, b1, row[1]);
            }
        }
        for (row, values) in c.iter().zip(out.iter_mut()) {
            for (v, acc) in row.iter().enumerate() {
                let dst = values.as_mut_ptr().add(8 * v);
                _mm256_storeu_ps(dst, _mm256_add_ps(_mm256_loadu_ps(dst), *acc));
            }
        }
    }
    out
}

/// `row −= shift` with each shifted value added (in f64) to its column's sum and magnitude bound: the
/// shift of a block's samples, eight columns at a time (the last m mod 8 by the scalar loop of
/// src/cpu_kernels.rs), each column's operations those of that loop, so the bits are the same.
///
/// # Safety
/// The CPU has AVX2; `shift`, `sums` and `largest` are as long as `row`.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn shift_row(
    row: &mut [f32],
    shift: &[f32],
    sums: &mut [f64],
    largest: &mut [f64],
) {
    let m = row.len();
    debug_assert!(shift.len() == m && sums.len() == m && largest.len() == m);
    // |x| for f64 lanes: the sign bit cleared.
    let magnitude = _mm256_castsi256_pd(_mm256_set1_epi64x(i64::MAX));
    let vectors = m / 8 * 8;
    for j in (0..vectors).step_by(8) {
        let v = row.as_mut_ptr().add(j);
        let x = _mm256_sub_ps(_mm256_loadu_ps(v), _mm256_loadu_ps(shift.as_ptr().add(j)));
        _mm256_storeu_ps(v, x);
        let halves = [
            _mm256_cvtps_pd(_mm256_castps256_ps128(x)),
            _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(x)),
        ];
        for (h, x) in halves.into_iter().enumerate() {
            let (sum, big) = (
                sums.as_mut_ptr().add(j + 4 * h),
                largest.as_mut_ptr().add(j + 4 * h),
            );
            _mm256_storeu_pd(sum, _mm256_add_pd(_mm256_loadu_pd(sum), x));
            let x = _mm256_and_pd(x, magnitude);
            _mm256_storeu_pd(big, _mm256_max_pd(_mm256_loadu_pd(big), x));
        }
    }
    let tail = vectors..m;
    crate::cpu_kernels::shift_row_scalar(
        &mut row[tail.clone()],
        &shift[tail.clone()],
        &mut sums[tail.clone()],
        &mut largest[tail],
    );
}
