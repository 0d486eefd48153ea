//! Cheap facts about C's top eigenvalues, used to choose λ and α and to check a given λ.
//!
//! Ritz values of C on any subspace are lower bounds of C's eigenvalues (Cauchy interlacing: the i-th
//! Ritz value θ_i ≤ λ_i(C)), so `λ = θ_k / 2` is guaranteed to keep all k components, whatever the
//! number of power steps; more steps only make the bound tighter.

use crate::operator::GramOperator;
use crate::rng::Rng;
use nalgebra::{DMatrix, SymmetricEigen};

/// Ritz values (descending) of C on `steps` steps of subspace iteration with a block of
/// `min(m, k + 8)` columns started from a seeded Gaussian block.
pub(crate) fn ritz_values(c: &DMatrix<f64>, k: usize, steps: usize, seed: u64) -> Vec<f64> {
    let (c, unit) = unit_scaled(c);
    // Never stopped early: always Some.
    ritz_values_of(|x| &c * x, c.nrows(), (k, steps, seed, unit), || false).unwrap_or_default()
}

/// [`ritz_values`] of C given as an operator (never formed): its products scaled by the power of two
/// nearest C's largest diagonal entry, as [`unit_scaled`] scales a formed C. `cancel` is looked at
/// before each product (a product of the operator route can take seconds).
pub(crate) fn operator_ritz_values(
    c: &dyn GramOperator,
    k: usize,
    steps: usize,
    seed: u64,
    cancel: Option<&crate::params::CancelFlag>,
) -> crate::Result<Vec<f64>> {
    let unit = unit_of(c.diagonal().iter().fold(0.0f64, |a, &v| a.max(v.abs())));
    let apply = |x: &DMatrix<f64>| c.apply(x) / unit;
    let stop = || cancel.is_some_and(|f| f.check().is_err());
    ritz_values_of(apply, c.n_features(), (k, steps, seed, unit), stop)
        .ok_or(crate::Error::Cancelled)
}

/// Subspace iteration on the m x m `apply` (C / unit); None when `stop` says so before a product.
fn ritz_values_of(
    apply: impl Fn(&DMatrix<f64>) -> DMatrix<f64>,
    m: usize,
    (k, steps, seed, unit): (usize, usize, u64, f64),
    stop: impl Fn() -> bool,
) -> Option<Vec<f64>> {
    let b = m.min(k + 8);
    let mut rng = Rng::new(seed ^ 0x005E_ED0F_5EC7);
    let mut x = DMatrix::from_vec(m, b, rng.normals(m * b)).qr().q();
    for _ in 0..steps {
        if stop() {
            return None;
        }
        x = apply(&x).qr().q();
    }
    if stop() {
        return None;
    }
    let h = x.transpose() * apply(&x);
    Some(sorted_desc(
        SymmetricEigen::new(h).eigenvalues.as_slice(),
        unit,
    ))
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
    let unit = unit_of(largest);
    (c / unit, unit)
}

/// The power of two nearest `largest` (1 for zero or a non-finite value).
fn unit_of(largest: f64) -> f64 {
    if largest > 0.0 && largest.is_finite() {
        2f64.powi((largest.log2().round() as i32).clamp(-1021, 1021))
    } else {
        1.0
    }
}

fn sorted_desc(v: &[f64], unit: f64) -> Vec<f64> {
    let mut v: Vec<f64> = v.iter().map(|x| x * unit).collect();
    v.sort_by(|a, b| b.total_cmp(a));
    v
}
