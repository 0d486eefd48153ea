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
    InvalidK { k: usize, max: usize },

    /// The data has no samples or no features.
    #[error("empty data: {n_samples} samples x {n_features} features")]
    EmptyData { n_samples: usize, n_features: usize },

    /// A slice's length does not match the shape it was given with, or a matrix has the wrong number of
    /// features for a fitted model.
    #[error("shape mismatch: {what}")]
    ShapeMismatch { what: String },

    /// A NaN or infinite value in the input (row and column as the caller laid the data out, from 0).
    #[error("non-finite value {value} in the data at row {row}, column {col}")]
    NonFinite { row: usize, col: usize, value: f64 },

    /// A parameter outside its domain (λ ≤ 0, α ≤ 0, tol ≤ 0, max_iter = 0, ...).
    #[error("invalid parameter {name} = {value}: {reason}")]
    InvalidParameter {
        name: &'static str,
        value: f64,
        reason: &'static str,
    },

    /// λ is so large that some components collapse to zero: the regularised autoencoder keeps component
    /// i only while σ_i² > λ.
    #[error(
        "lambda = {lambda} collapses component(s) {components:?} (1-based; their squared singular values \
         are <= lambda); the largest lambda that keeps all {k} components is below sigma_{k}^2 = {max_lambda}"
    )]
    LambdaTooLarge {
        lambda: f64,
        components: Vec<usize>,
        k: usize,
        max_lambda: f64,
    },

    /// The centred data has fewer than `k` directions of non-zero variance.
    #[error(
        "the data has rank {rank} after centring, fewer than k = {k} components: \
         components {first_zero}..={k} have zero variance; reduce k"
    )]
    RankDeficient {
        k: usize,
        rank: usize,
        first_zero: usize,
    },

    /// An iterate became NaN or infinite: the step size is too large for this data.
    #[error("the {solver} iteration diverged (non-finite iterate) by iteration {iteration}; reduce alpha")]
    Diverged {
        solver: &'static str,
        iteration: usize,
    },

    /// No GPU adapter could be found (Backend::Gpu) or the requested one does not exist.
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),

    /// The problem does not fit the device: C (m x m, f32) must fit one storage binding.
    #[error(
        "n_features = {m} does not fit the device: C needs {needed} bytes but the device's limit \
         ({limit_name}) is {limit} bytes; the largest n_features that fits is {max_m}"
    )]
    TooLargeForDevice {
        m: usize,
        needed: u64,
        limit_name: &'static str,
        limit: u64,
        max_m: usize,
    },

    /// The GPU reported a validation error, ran out of memory or was lost.
    #[error("GPU error: {0}")]
    Gpu(String),

    /// The flag given to [`LaePca::cancel_flag`](crate::LaePca::cancel_flag) was set: the fit stopped
    /// between two Gram blocks or at a stopping check and returned nothing.
    #[error("the fit was cancelled")]
    Cancelled,
}

/// Shorthand for `Result<T, laepca::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
