//! The CPU's dense kernels: the Gram product of a block of samples on one triangle (a SYRK: half the
//! flops of a full `BᵀB`), by laepca's own AVX2 kernel for f32 where the CPU has AVX2 and FMA
//! (src/syrk.rs), else by faer (pure Rust, rayon-parallel, AVX2/AVX-512/NEON micro-kernels); and the
//! products of the solver loop, by faer.
//!
//! Determinism: both split the work over blocks of the *output* and sum every entry over the inner
//! dimension in one fixed order, so the result does not depend on the thread count (tested below and in
//! tests/api.rs).

use crate::real::Real;
use crate::Result;
use faer::linalg::matmul::{matmul, triangular, triangular::BlockStructure};
use faer::{Accum, MatMut, MatRef, Par};

/// The parallelism of every CPU kernel: rayon's global pool (`RAYON_NUM_THREADS`, else every core).
pub(crate) fn parallelism() -> Par {
    Par::rayon(0)
}

/// What [`gram_lower`] keeps from block to block: the AVX2 kernel's packed samples, where it runs.
#[derive(Debug, Default)]
pub(crate) struct GramScratch {
    #[cfg(target_arch = "x86_64")]
    packing: Option<crate::syrk::Packing>,
}

impl GramScratch {
    /// The scratch space of [`gram_lower`] in precision T for m features (size-checked).
    pub fn new<T: Real>(m: usize) -> Result<Self> {
        #[cfg(target_arch = "x86_64")]
        if is_f32::<T>() && crate::syrk::available() {
            return Ok(GramScratch {
                packing: Some(crate::syrk::Packing::new(m)?),
            });
        }
        let _ = m;
        Ok(GramScratch::default())
    }

    /// Whether [`gram_lower`] runs the AVX2 kernel with this scratch.
    pub fn is_avx2(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        return self.packing.is_some();
        #[cfg(not(target_arch = "x86_64"))]
        false
    }
}

#[cfg(target_arch = "x86_64")]
fn is_f32<T: Real>() -> bool {
    std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
}

/// The lower triangle (diagonal included) of `out = Bᵀ B`, with B the `len x m` row-major block `rows`;
/// `out` is m x m column-major and its strict upper triangle is left untouched. `scratch` comes from
/// [`GramScratch::new`] for the same T and m. `Par::Seq` runs on the calling thread; `Par::Rayon`
/// on rayon's current pool (the AVX2 kernel) or that many of its threads (faer).
pub(crate) fn gram_lower<T: Real>(
    rows: &[T],
    len: usize,
    m: usize,
    out: &mut [T],
    par: Par,
    scratch: &mut GramScratch,
) {
    debug_assert_eq!(rows.len(), len * m);
    debug_assert_eq!(out.len(), m * m);
    #[cfg(target_arch = "x86_64")]
    if let (true, Some(packing)) = (is_f32::<T>(), &mut scratch.packing) {
        // T is f32: the casts are identities.
        let (rows, out) = (bytemuck::cast_slice(rows), bytemuck::cast_slice_mut(out));
        let parallel = !matches!(par, Par::Seq);
        crate::syrk::gram_lower(rows, len, m, out, parallel, packing);
        return;
    }
    let _ = scratch;
    // Row-major len x m is column-major m x len: Bᵀ, whose product with its transpose is the Gram.
    let bt = MatRef::from_column_major_slice(rows, m, len);
    let dst = MatMut::from_column_major_slice_mut(out, m, m);
    triangular::matmul(
        dst,
        BlockStructure::TriangularLower,
        Accum::Replace,
        bt,
        BlockStructure::Rectangular,
        bt.transpose(),
        BlockStructure::Rectangular,
        T::one(),
        par,
    );
}

/// `row −= shift`, adding each shifted value (in f64) to its column's sum and magnitude bound: the
/// shift of a Gram block's samples. In f32 on CPUs with AVX2, eight columns at a time (the same
/// operations on each column in the same order, so the same bits).
pub(crate) fn shift_row<T: Real>(
    row: &mut [T],
    shift: &[T],
    sums: &mut [f64],
    largest: &mut [f64],
) {
    let m = row.len();
    assert!(shift.len() >= m && sums.len() >= m && largest.len() >= m);
    #[cfg(target_arch = "x86_64")]
    if is_f32::<T>() && crate::syrk::available() {
        // T is f32: the casts are identities.
        let (row, shift) = (bytemuck::cast_slice_mut(row), bytemuck::cast_slice(shift));
        // SAFETY: available() holds; the lengths are asserted above.
        unsafe { crate::syrk::shift_row(row, &shift[..m], &mut sums[..m], &mut largest[..m]) };
        return;
    }
    shift_row_scalar(row, shift, sums, largest);
}

/// [`shift_row`], one column at a time.
pub(crate) fn shift_row_scalar<T: Real>(
    row: &mut [T],
    shift: &[T],
    sums: &mut [f64],
    largest: &mut [f64],
) {
    let stats = sums.iter_mut().zip(largest.iter_mut());
    for ((v, &s), (sum, big)) in row.iter_mut().zip(shift).zip(stats) {
        *v -= s;
        let x = v.as_f64();
        *sum += x;
        *big = big.max(x.abs());
    }
}

/// `out = a b` for column-major `a` (rows x inner), `b` (inner x cols), `out` (rows x cols).
pub(crate) fn product<T: Real>(
    a: &[T],
    b: &[T],
    out: &mut [T],
    (rows, inner, cols): (usize, usize, usize),
    par: Par,
) {
    let a = MatRef::from_column_major_slice(a, rows, inner);
    product_of(a, b, out, cols, par);
}

/// `out = aᵀ b` for column-major `a` (inner x rows), `b` (inner x cols), `out` (rows x cols).
pub(crate) fn product_tn<T: Real>(
    a: &[T],
    b: &[T],
    out: &mut [T],
    (rows, inner, cols): (usize, usize, usize),
    par: Par,
) {
    let a = MatRef::from_column_major_slice(a, inner, rows).transpose();
    product_of(a, b, out, cols, par);
}

/// Products of fewer flops than this run on the calling thread: waking the pool's threads and
/// waiting for them costs more than they save (the loop's k x k and m x k x k products; on Fashion-MNIST
/// at k = 16 they made the CPU loop spend a third of its time in the scheduler).
const PARALLEL_FLOPS: usize = 1 << 22;

/// `out = a b` with `b` column-major (a's columns x cols) and `out` column-major (a's rows x cols).
fn product_of<T: Real>(a: MatRef<'_, T>, b: &[T], out: &mut [T], cols: usize, par: Par) {
    let flops = 2usize
        .saturating_mul(a.nrows())
        .saturating_mul(a.ncols())
        .saturating_mul(cols);
    let par = if flops < PARALLEL_FLOPS {
        Par::Seq
    } else {
        par
    };
    matmul(
        MatMut::from_column_major_slice_mut(out, a.nrows(), cols),
        Accum::Replace,
        a,
        MatRef::from_column_major_slice(b, a.ncols(), cols),
        T::one(),
        par,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn sample(len: usize, seed: u64) -> Vec<f32> {
        Rng::new(seed)
            .normals(len)
            .iter()
            .map(|&v| v as f32)
            .collect()
    }

    /// `gram_lower` in precision T on `threads` threads (rayon pools of that size; 1: `Par::Seq`).
    fn gram_on<T: Real>(rows: &[T], len: usize, m: usize, threads: usize) -> Vec<T> {
        let mut out = vec![T::of_f64(f64::NAN); m * m];
        let mut scratch = GramScratch::new::<T>(m).unwrap();
        if threads == 1 {
            gram_lower(rows, len, m, &mut out, Par::Seq, &mut scratch);
        } else {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| gram_lower(rows, len, m, &mut out, Par::rayon(threads), &mut scratch));
        }
        out
    }

    fn bits<T: Real>(v: &[T]) -> Vec<u64> {
        v.iter().map(|x| x.as_f64().to_bits()).collect()
    }

    /// Against the f64 product, and bit for bit on 1 to 5 threads, for shapes at and around the
    /// AVX2 kernel's panels (16 features, tiles of 6 + 6 + 4) and slices (1024 samples).
    fn check_gram<T: Real>(tol: f64) {
        for (len, m, seed) in [
            (300, 77, 1),
            (128, 16, 2),
            (129, 17, 3),
            (1, 1, 4),
            (5, 3, 5),
            (257, 38, 6),
            (2100, 37, 7),
        ] {
            let rows: Vec<T> = sample(len * m, seed)
                .iter()
                .map(|&v| T::of_f64(v as f64))
                .collect();
            let seq = gram_on(&rows, len, m, 1);
            for j in 0..m {
                for i in j..m {
                    let exact: f64 = (0..len)
                        .map(|r| rows[r * m + i].as_f64() * rows[r * m + j].as_f64())
                        .sum();
                    let got = seq[j * m + i].as_f64();
                    assert!(
                        (got - exact).abs() <= tol * (1.0 + exact.abs()),
                        "{len} x {m}, ({i}, {j}): {got} against {exact}"
                    );
                }
                // The strict upper triangle is not written.
                assert!(
                    seq[j * m..j * m + j].iter().all(|v| v.as_f64().is_nan()),
                    "{len} x {m}: column {j} written above the diagonal"
                );
            }
            for threads in [2, 3, 5] {
                let par = gram_on(&rows, len, m, threads);
                assert_eq!(bits(&seq), bits(&par), "{len} x {m}, {threads} threads");
            }
        }
    }

    /// The solver loop's products as the CPU engine calls them (C·W; inner products AᵀB; m x k times
    /// k x k), below and above [`PARALLEL_FLOPS`]: within the f32 rounding bound of the f64 product,
    /// and bit for bit the same on 1 to 4 threads.
    #[test]
    fn the_loop_products_are_the_same_on_any_thread_count() {
        let shapes = [
            (784, 784, 16, 1),
            (784, 16, 16, 2),
            (16, 784, 16, 3),
            (1500, 1500, 48, 4),
            (37, 5, 3, 5),
        ];
        for (rows, inner, cols, seed) in shapes {
            let (a, b) = (sample(rows * inner, seed), sample(inner * cols, seed + 100));
            // The f64 product and Σ|a b| per entry, with a column-major (rows x inner) or, for
            // product_tn, its transpose stored column-major (inner x rows).
            let exact = |transposed: bool| -> Vec<(f64, f64)> {
                let at = |r: usize, i: usize| {
                    f64::from(if transposed {
                        a[r * inner + i]
                    } else {
                        a[i * rows + r]
                    })
                };
                (0..cols * rows)
                    .map(|e| {
                        let (c, r) = (e / rows, e % rows);
                        (0..inner).fold((0.0, 0.0), |(s, t), i| {
                            let p = at(r, i) * f64::from(b[c * inner + i]);
                            (s + p, t + p.abs())
                        })
                    })
                    .collect()
            };
            let want = [exact(false), exact(true)];
            let mut first = None;
            for threads in 1..=4 {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut out = [vec![f32::NAN; rows * cols], vec![f32::NAN; rows * cols]];
                pool.install(|| {
                    product(&a, &b, &mut out[0], (rows, inner, cols), parallelism());
                    product_tn(&a, &b, &mut out[1], (rows, inner, cols), parallelism());
                });
                for (got, want) in out.iter().zip(&want) {
                    for (&g, &(w, magnitude)) in got.iter().zip(want) {
                        // The classical bound of a sum of `inner` products in f32: inner·ε·Σ|a b|.
                        let bound = inner as f64 * f64::from(f32::EPSILON) * magnitude;
                        let shape = format!("{rows} x {inner} x {cols}");
                        assert!((f64::from(g) - w).abs() <= bound, "{shape}: {g} vs {w}");
                    }
                }
                let these = [bits(&out[0]), bits(&out[1])];
                match &first {
                    None => first = Some(these),
                    Some(f) => assert!(
                        *f == these,
                        "{rows} x {inner} x {cols} differs on {threads} threads"
                    ),
                }
            }
        }
    }

    #[test]
    fn gram_lower_is_the_product_and_the_same_on_any_thread_count() {
        check_gram::<f32>(1e-4);
        check_gram::<f64>(1e-12);
    }

    #[test]
    fn a_full_gram_block_is_the_same_on_any_thread_count() {
        // The block laepca uses (GRAM_BLOCK samples) at an m where the work is split over threads.
        let (len, m) = (crate::data::GRAM_BLOCK, 520);
        let rows = sample(len * m, 4);
        let seq = gram_on(&rows, len, m, 1);
        for threads in [2, 3, 4] {
            assert_eq!(
                bits(&seq),
                bits(&gram_on(&rows, len, m, threads)),
                "{threads} threads"
            );
        }
    }

    /// The AVX2 kernel and faer's product agree to f32 rounding: a sum of `len` products carries an
    /// error of about `√len · ε · Σ|aᵢ bᵢ|`, and `Σ|aᵢ bᵢ| ≤ √(C_ii C_jj)` (where the CPU has no AVX2,
    /// both calls are faer's).
    #[test]
    fn the_avx2_gram_kernel_agrees_with_faer() {
        let (len, m) = (700, 93);
        let rows = sample(len * m, 7);
        let ours = gram_on(&rows, len, m, 2);
        let mut faer_out = vec![0f32; m * m];
        let mut no_avx2 = GramScratch::default();
        gram_lower(&rows, len, m, &mut faer_out, Par::Seq, &mut no_avx2);
        let tol = 4.0 * (len as f64).sqrt() * f32::EPSILON as f64;
        let diag = |i: usize| faer_out[i * m + i] as f64;
        for j in 0..m {
            for i in j..m {
                let (a, b) = (ours[j * m + i] as f64, faer_out[j * m + i] as f64);
                let rel = (a - b).abs() / (diag(i) * diag(j)).sqrt();
                assert!(
                    rel <= tol, // false for NaN too
                    "({i}, {j}): difference {rel:e} of √(C_ii C_jj), above {tol:e}"
                );
            }
        }
    }

    /// The AVX2 kernel serves f32 exactly where the CPU has AVX2 and FMA (so the tests above run it
    /// there), never f64.
    #[test]
    fn the_avx2_kernel_is_chosen_where_the_cpu_has_it() {
        #[cfg(target_arch = "x86_64")]
        let expected = crate::syrk::available();
        #[cfg(not(target_arch = "x86_64"))]
        let expected = false;
        assert_eq!(GramScratch::new::<f32>(40).unwrap().is_avx2(), expected);
        assert!(!GramScratch::new::<f64>(40).unwrap().is_avx2());
    }

    /// Integers in [−3, 3]: every product and partial sum is exact in f32 (below 2²⁴), so the kernel
    /// must equal the exact sum bit for bit at every (m, len) around its panels (16), tiles (6 + 6
    /// + 4), runs (128) and slices (1024), the block laepca uses (2048) included.
    #[test]
    fn gram_lower_is_exact_on_integers_at_every_edge() {
        let mut rng = Rng::new(11);
        for m in 1..=40 {
            for len in [1, 127, 128, 129, 1024, 1025, 2048] {
                let rows: Vec<f32> = (0..len * m)
                    .map(|_| (rng.uniform() * 7.0).floor() as f32 - 3.0)
                    .collect();
                let got = gram_on(&rows, len, m, 2);
                for j in 0..m {
                    for i in j..m {
                        let exact: f32 = (0..len).map(|r| rows[r * m + i] * rows[r * m + j]).sum();
                        assert_eq!(got[j * m + i], exact, "{len} x {m}: ({i}, {j})");
                    }
                    assert!(
                        got[j * m..j * m + j].iter().all(|v| v.is_nan()),
                        "{len} x {m}"
                    );
                }
            }
        }
    }

    /// The shift (the AVX2 path where the CPU has it) gives the scalar loop's bits: the shifted
    /// values, the column sums and the magnitude bounds, over rows of every width around its eight
    /// lanes, with values of both signs and very different magnitudes, overflow to infinity included.
    #[test]
    fn the_shift_is_the_scalar_loop_bit_for_bit() {
        let mut rng = Rng::new(5);
        for m in [1, 7, 8, 9, 15, 16, 17, 33, 784] {
            let mut value = || {
                let v = (rng.uniform() - 0.5) * 10f64.powi((rng.uniform() * 12.0) as i32 - 6);
                v as f32
            };
            let mut rows: Vec<f32> = (0..5 * m).map(|_| value()).collect();
            let mut shift: Vec<f32> = (0..m).map(|_| value()).collect();
            rows[m - 1] = f32::MAX;
            shift[m - 1] = -f32::MAX; // x − s overflows: +∞ in the row, the sum and the bound
            let (mut fast, mut slow) = (rows.clone(), rows.clone());
            let mut stats = [vec![0.0; m], vec![0.0; m], vec![0.0; m], vec![0.0; m]];
            let [sums, largest, sums_ref, largest_ref] = &mut stats;
            for (f, s) in fast.chunks_exact_mut(m).zip(slow.chunks_exact_mut(m)) {
                shift_row(f, &shift, sums, largest);
                shift_row_scalar(s, &shift, sums_ref, largest_ref);
            }
            assert_eq!(bits(&fast), bits(&slow), "m = {m}: the shifted rows");
            assert_eq!(bits(sums), bits(sums_ref), "m = {m}: the sums");
            assert_eq!(bits(largest), bits(largest_ref), "m = {m}: the bounds");
            assert_eq!(largest[m - 1], f64::INFINITY, "m = {m}");
            // Row 1, column 0: a finite shifted value.
            let expected = rows[m] as f64 - shift[0] as f64;
            assert!(
                (fast[m] as f64 - expected).abs() <= 1e-6 * expected.abs(),
                "m = {m}"
            );
        }
    }

    #[test]
    fn products_match_the_definition_on_any_thread_count() {
        let (rows, inner, cols) = (90, 70, 6);
        let a = sample(rows * inner, 2);
        let b = sample(inner * cols, 3);
        let at: Vec<f32> = (0..rows * inner)
            .map(|p| a[(p % inner) * rows + p / inner])
            .collect(); // aᵀ stored column-major: inner x rows
        let mut ab = vec![0f32; rows * cols];
        let mut atb = vec![0f32; rows * cols];
        product(&a, &b, &mut ab, (rows, inner, cols), Par::Seq);
        product_tn(&at, &b, &mut atb, (rows, inner, cols), Par::Seq);
        for c in 0..cols {
            for r in 0..rows {
                let exact: f64 = (0..inner)
                    .map(|i| a[i * rows + r] as f64 * b[c * inner + i] as f64)
                    .sum();
                assert!((ab[c * rows + r] as f64 - exact).abs() < 1e-4 * (1.0 + exact.abs()));
                assert!((atb[c * rows + r] as f64 - exact).abs() < 1e-4 * (1.0 + exact.abs()));
            }
        }
        for threads in [2, 3] {
            let mut par = vec![0f32; rows * cols];
            product(&a, &b, &mut par, (rows, inner, cols), Par::rayon(threads));
            assert_eq!(ab, par, "{threads} threads");
        }
    }
}
