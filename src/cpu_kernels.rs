//! The CPU's dense kernels, through faer (pure Rust, rayon-parallel, AVX2/AVX-512 micro-kernels): the
//! Gram product of a block of samples on one triangle (a SYRK: half the flops of a full `BᵀB`) and the
//! products of the solver loop.
//!
//! Determinism: faer splits the work over blocks of the *output* and sums every entry over the inner
//! dimension in one fixed order, so the result does not depend on the thread count (tested below and in
//! tests/api.rs).

use crate::real::Real;
use faer::linalg::matmul::{matmul, triangular, triangular::BlockStructure};
use faer::{Accum, MatMut, MatRef, Par};

/// The parallelism of every CPU kernel: rayon's global pool (`RAYON_NUM_THREADS`, else every core).
pub(crate) fn parallelism() -> Par {
    Par::rayon(0)
}

/// The lower triangle (diagonal included) of `out = Bᵀ B`, with B the `len x m` row-major block `rows`;
/// `out` is m x m column-major and its strict upper triangle is left untouched.
pub(crate) fn gram_lower<T: Real>(rows: &[T], len: usize, m: usize, out: &mut [T], par: Par) {
    debug_assert_eq!(rows.len(), len * m);
    debug_assert_eq!(out.len(), m * m);
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

/// `out = a b` with `b` column-major (a's columns x cols) and `out` column-major (a's rows x cols).
fn product_of<T: Real>(a: MatRef<'_, T>, b: &[T], out: &mut [T], cols: usize, par: Par) {
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

    #[test]
    fn gram_lower_is_the_product_and_the_same_on_any_thread_count() {
        let (len, m) = (300, 77);
        let rows = sample(len * m, 1);
        let mut seq = vec![f32::NAN; m * m];
        gram_lower(&rows, len, m, &mut seq, Par::Seq);
        for j in 0..m {
            for i in j..m {
                let exact: f64 = (0..len)
                    .map(|r| rows[r * m + i] as f64 * rows[r * m + j] as f64)
                    .sum();
                let got = seq[j * m + i] as f64;
                assert!(
                    (got - exact).abs() <= 1e-4 * (1.0 + exact.abs()),
                    "({i}, {j}): {got} against {exact}"
                );
            }
            // The strict upper triangle is not written.
            assert!(seq[j * m..j * m + j].iter().all(|v| v.is_nan()));
        }
        for threads in [2, 3, 5] {
            let mut par = vec![f32::NAN; m * m];
            gram_lower(&rows, len, m, &mut par, Par::rayon(threads));
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&seq), bits(&par), "{threads} threads");
        }
    }

    #[test]
    fn a_full_gram_block_is_the_same_on_any_thread_count() {
        // The block laepca uses (GRAM_BLOCK samples) at an m where faer splits the output over threads.
        let (len, m) = (crate::data::GRAM_BLOCK, 520);
        let rows = sample(len * m, 4);
        let mut seq = vec![0f32; m * m];
        gram_lower(&rows, len, m, &mut seq, Par::Seq);
        for threads in [2, 3, 4] {
            let mut par = vec![0f32; m * m];
            gram_lower(&rows, len, m, &mut par, Par::rayon(threads));
            assert!(
                seq.iter()
                    .zip(&par)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{threads} threads"
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
