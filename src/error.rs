//! The crate's one error type.

use thiserror::Error;

/// Everything that can go wrong in a fit, a transform or a device set-up.
///
/// No function of this crate panics on user input: each problem with the input, the parameters or the
/// device comes back as one of these variants, with a message that names the problem.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// `k` is zero or larger than `min(n_samples, n_features)`.
    #[error(
        "invalid number of components k = {k}: need 1 <= k <= min(n_samples, n_features) = {max}"
    )]
    InvalidK {
        /// The requested number of components.
        k: usize,
        /// `min(n_samples, n_features)`.
        max: usize,
    },

    /// The data has no samples or no features.
    #[error("empty data: {n_samples} samples x {n_features} features")]
    EmptyData {
        /// Samples (rows) in the data.
        n_samples: usize,
        /// Features (columns) in the data.
        n_features: usize,
    },

    /// A slice's length does not match the shape it was given with, or a matrix has the wrong number of
    /// features for a fitted model.
    #[error("shape mismatch: {what}")]
    ShapeMismatch {
        /// Which shapes disagree.
        what: String,
    },

    /// A NaN or infinite value in the input (row and column as the caller laid the data out, from 0).
    #[error("non-finite value {value} in the data at row {row}, column {col}")]
    NonFinite {
        /// Row of the value, from 0.
        row: usize,
        /// Column of the value, from 0.
        col: usize,
        /// The value itself.
        value: f64,
    },

    /// A quantity the data implies is too large for floating point, although the data itself is finite.
    #[error("overflow: {what}; rescale the data")]
    Overflow {
        /// The quantity that overflows.
        what: String,
    },

    /// A parameter outside its domain (λ ≤ 0, α ≤ 0, tol ≤ 0, max_iter = 0, ...).
    #[error("invalid parameter {name} = {}: {reason}", Num(*value))]
    InvalidParameter {
        /// The parameter's name.
        name: &'static str,
        /// The value given.
        value: f64,
        /// The domain it must lie in.
        reason: &'static str,
    },

    /// λ is so large that some components collapse to zero: the regularised autoencoder keeps component
    /// i only while σ_i² > λ.
    #[error(
        "lambda = {} collapses component(s) {components:?} (1-based; their squared singular values \
         are <= lambda); the largest lambda that keeps all {k} components is below sigma_{k}^2 = {}",
        Num(*lambda), Num(*max_lambda)
    )]
    LambdaTooLarge {
        /// The λ given.
        lambda: f64,
        /// The components (1-based) that collapse.
        components: Vec<usize>,
        /// The number of components asked for.
        k: usize,
        /// σ_k², which λ must stay below.
        max_lambda: f64,
    },

    /// The centred data has fewer than `k` directions of non-zero variance.
    #[error(
        "the data has rank {rank} after centring, fewer than k = {k} components: \
         components {first_zero}..={k} have zero variance; reduce k"
    )]
    RankDeficient {
        /// The number of components asked for.
        k: usize,
        /// The rank of the centred data.
        rank: usize,
        /// The first component (1-based) of zero variance.
        first_zero: usize,
    },

    /// An iterate became NaN or infinite: for the gradient solvers the step size is too large for
    /// this data; for the others (no step size) the Gram matrix is not a valid one.
    #[error(
        "the {solver} iteration diverged (non-finite iterate) by iteration {iteration}; {}",
        diverged_hint(solver)
    )]
    Diverged {
        /// The solver's name.
        solver: &'static str,
        /// The iteration by which it diverged.
        iteration: usize,
    },

    /// A NaN or infinite value in the warm start's components (row and column from 0).
    #[error("non-finite value {value} in the warm start at row {row}, column {col}")]
    NonFiniteWarmStart {
        /// Row of the value, from 0.
        row: usize,
        /// Column of the value, from 0.
        col: usize,
        /// The value itself.
        value: f64,
    },

    /// The Gram matrix handed to `fit_gram` is not positive semi-definite, so it is no `XᵀX`.
    #[error(
        "the Gram matrix is not positive semi-definite ({detail}), so it is not the XᵀX of any data: \
         build it with GramAccumulator"
    )]
    NotSemidefinite {
        /// The evidence (a negative diagonal entry, an asymmetry, ...).
        detail: String,
    },

    /// A saved projection (components and mean) that no fit can have produced.
    #[error("invalid model: {detail}")]
    InvalidModel {
        /// What is wrong with it.
        detail: String,
    },

    /// A buffer the input asks for is larger than the input can hold or than the memory available.
    #[error("too large: {detail}")]
    TooLarge {
        /// What is too large, how much it needs and what is available.
        detail: String,
    },

    /// No GPU adapter could be found (Backend::Gpu) or the requested one does not exist.
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),

    /// The problem does not fit the device: one of its buffers (a row panel of C, a block of m x k
    /// weights) exceeds one storage binding.
    #[error(
        "n_features = {m} does not fit the device: {what} needs {needed} bytes but the device's \
         limit ({limit_name}) is {limit} bytes; the largest n_features that fits is {max_m}"
    )]
    TooLargeForDevice {
        /// The number of features.
        m: usize,
        /// The buffer that does not fit.
        what: String,
        /// Bytes it needs.
        needed: u64,
        /// The device limit that binds (wgpu's name for it).
        limit_name: &'static str,
        /// That limit, in bytes.
        limit: u64,
        /// The largest number of features that fits.
        max_m: usize,
    },

    /// The GPU reported a validation error, ran out of memory or was lost.
    #[error("GPU error: {0}")]
    Gpu(String),

    /// The arrays of a sparse matrix do not describe one (see
    /// [`CsrMatrix::try_new`](crate::CsrMatrix::try_new)).
    #[error("invalid sparse matrix: {detail}")]
    InvalidSparse {
        /// What is wrong.
        detail: String,
    },

    /// A combination of settings and data this version cannot fit (e.g. the operator route on dense
    /// data).
    #[error("not supported: {detail}")]
    Unsupported {
        /// What is not supported, and what to do instead.
        detail: String,
    },

    /// Reading the data failed (a [`FeatureBlocks`](crate::FeatureBlocks) source's file, say).
    #[error("reading the data: {detail}")]
    Read {
        /// What failed, with the file named.
        detail: String,
    },

    /// The flag given to [`LaePca::cancel_flag`](crate::LaePca::cancel_flag) was set: the fit stopped
    /// between two Gram blocks or at a stopping check and returned nothing.
    #[error("the fit was cancelled")]
    Cancelled,
}

/// What to do about a divergence: only the gradient solvers have a step size to reduce.
fn diverged_hint(solver: &str) -> &'static str {
    match solver {
        "untied" | "sync" | "tied" => "reduce alpha",
        _ => {
            "this solver has no step size: the Gram matrix is probably not a valid (finite, \
              positive semi-definite) one"
        }
    }
}

/// A number in a message: plain when short, else in scientific notation (never 309 digits).
pub(crate) struct Num(pub f64);

impl std::fmt::Display for Num {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a = self.0.abs();
        if a == 0.0 || !a.is_finite() || (1e-4..1e15).contains(&a) {
            write!(f, "{}", self.0)
        } else {
            write!(f, "{:e}", self.0)
        }
    }
}

/// Shorthand for `Result<T, laepca::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
