//! Cheap facts about C's top eigenvalues, used to choose λ and α and to check a given λ.
//!
//! Ritz values of C on any subspace are lower bounds of C's eigenvalues (Cauchy interlacing: the i-th
//! Ritz value θ_i ≤ λ_i(C)), so `λ = θ_k / 2` is guaranteed to keep all k components, whatever the
//! number of power steps; more steps only make the bound tighter.

use crate::rng::Rng;
use nalgebra::{DMatrix, SymmetricEigen};

/// Ritz values (descending) of C on `steps` steps of subspace iteration with a block of
/// `min(m, k + 8)` columns started from a seeded Gaussian block.
pub(crate) fn ritz_values(c: &DMatrix<f64>, k: usize, steps: usize, seed: u64) -> Vec<f64> {
    let (c, unit) = unit_scaled(c);
    let m = c.nrows();
    let b = m.min(k + 8);
    let mut rng = Rng::new(seed ^ 0x005E_ED0F_5EC7);
    let mut x = DMatrix::from_vec(m, b, rng.normals(m * b)).qr().q();
    for _ in 0..steps {
        x = (&c * &x).qr().q();
    }
    let h = x.transpose() * (&c * &x);
    sorted_desc(SymmetricEigen::new(h).eigenvalues.as_slice(), unit)
}

/// All eigenvalues of C (descending), exact to f64 rounding.
pub(crate) fn eigenvalues(c: &DMatrix<f64>) -> Vec<f64> {
    let (c, unit) = unit_scaled(c);
    sorted_desc(SymmetricEigen::new(c).eigenvalues.as_slice(), unit)
}

/// C divided by the power of two `unit` nearest its largest diagonal entry, and `unit`: the norms
/// inside QR and the eigensolver square their entries, which would overflow (or underflow) f64 for a
/// C of 1e200 (or 1e-200); a power of two scales exactly.
fn unit_scaled(c: &DMatrix<f64>) -> (DMatrix<f64>, f64) {
    let largest = c.diagonal().iter().fold(0.0f64, |a, &v| a.max(v.abs()));
    let unit = if largest > 0.0 && largest.is_finite() {
        2f64.powi((largest.log2().round() as i32).clamp(-1021, 1021))
    } else {
        1.0
    };
    (c / unit, unit)
}

fn sorted_desc(v: &[f64], unit: f64) -> Vec<f64> {
    let mut v: Vec<f64> = v.iter().map(|x| x * unit).collect();
    v.sort_by(|a, b| b.total_cmp(a));
    v
}
