//! C as the solver sees it: something that multiplies a block of columns. A formed Gram matrix is one
//! (the Gram route); a sparse X applied matrix-free is another (the operator route, in
//! [`crate::sparse`]). The loop, the setup's spectrum estimates and the finish only ever multiply by C,
//! so they take either.

use nalgebra::DMatrix;

/// C (m x m, symmetric positive semi-definite), known only through its products.
pub(crate) trait GramOperator: Sync {
    /// m.
    fn n_features(&self) -> usize;
    /// `C w` for an m x b block `w`, in f64.
    fn apply(&self, w: &DMatrix<f64>) -> DMatrix<f64>;
    /// C's diagonal (its sum is the total variance; its largest entry sets the spectrum's scale).
    fn diagonal(&self) -> Vec<f64>;
}

impl GramOperator for DMatrix<f64> {
    fn n_features(&self) -> usize {
        self.nrows()
    }
    fn apply(&self, w: &DMatrix<f64>) -> DMatrix<f64> {
        self * w
    }
    fn diagonal(&self) -> Vec<f64> {
        self.diagonal().iter().copied().collect()
    }
}
