//! The finish on the CPU: from the decoder W2 to the principal directions and singular values.
//!
//! The directions are W2's left singular vectors (the paper's theorem). Their singular values are
//! measured twice: by the paper's formula `σ_i = sqrt(λ / (1 − s_i²))` from W2's singular values s_i, which
//! loses digits when λ ≪ σ² (1 − s² cancels), and by the Rayleigh quotient `σ_i² = u_iᵀ C u_i` with the
//! f64 Gram matrix, whose error is only quadratic in the direction's error. The latter is the answer.

use crate::operator::GramOperator;
use nalgebra::{DMatrix, DVector, SymmetricEigen, SVD};

/// The recovered components, sorted by decreasing variance.
#[derive(Clone, Debug)]
pub(crate) struct Finished {
    /// m x k, columns are the directions, scikit-learn's sign convention applied.
    pub directions: DMatrix<f64>,
    /// `sqrt(u_iᵀ C u_i)`.
    pub singular_values: Vec<f64>,
    /// `sqrt(λ / (1 − s_i²))` (NaN where s_i ≥ 1).
    pub singular_values_paper: Vec<f64>,
    /// The singular values s_i of W2, in the same order.
    pub decoder_singular_values: Vec<f64>,
}

/// Finishes from the decoder (m x k, column-major) and C (formed in f64, or an operator). With `rayleigh_ritz`, the
/// directions are the Ritz vectors of C on the decoder's span (the best directions that span holds)
/// rather than the decoder's left singular vectors.
pub(crate) fn finish(
    decoder: &[f64],
    c: &dyn GramOperator,
    lambda: f64,
    rayleigh_ritz: bool,
) -> Finished {
    let m = c.n_features();
    let k = decoder.len() / m;
    let w = DMatrix::from_column_slice(m, k, decoder);
    let mut u = SVD::new(w.clone(), true, false)
        .u
        .expect("SVD was asked for U");
    let mut cu = c.apply(&u);
    if rayleigh_ritz {
        let ritz = SymmetricEigen::new(u.transpose() * &cu);
        u = &u * &ritz.eigenvectors;
        cu = &cu * &ritz.eigenvectors;
    }
    // The decoder's singular value along each final direction, ‖W2ᵀ u_i‖: W2's i-th singular value
    // when u_i is its i-th left singular vector, and still paired with u_i after a Rayleigh–Ritz rotation.
    let wt_u = w.transpose() * &u;
    let s: Vec<f64> = (0..k).map(|i| wt_u.column(i).norm()).collect();
    let rayleigh: Vec<f64> = (0..k).map(|i| u.column(i).dot(&cu.column(i))).collect();

    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| rayleigh[b].total_cmp(&rayleigh[a]));
    let mut directions = DMatrix::zeros(m, k);
    for (dst, &src) in order.iter().enumerate() {
        let mut col = u.column(src).clone_owned();
        apply_sign_convention(&mut col);
        directions.set_column(dst, &col);
    }
    Finished {
        directions,
        singular_values: order.iter().map(|&i| rayleigh[i].max(0.0).sqrt()).collect(),
        singular_values_paper: order
            .iter()
            .map(|&i| (lambda / (1.0 - s[i] * s[i])).sqrt())
            .collect(),
        decoder_singular_values: order.iter().map(|&i| s[i]).collect(),
    }
}

/// scikit-learn's `svd_flip` on a component: the entry of largest absolute value (the first one on ties)
/// becomes positive.
pub(crate) fn apply_sign_convention(v: &mut DVector<f64>) {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if x.abs() > v[best].abs() {
            best = i;
        }
    }
    if v[best] < 0.0 {
        v.neg_mut();
    }
}
