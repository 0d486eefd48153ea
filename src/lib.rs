//! # laepca: PCA by L2-regularised linear autoencoders
//!
//! LAE-PCA (Kunin, Bloom, Goeva, Seed, "Loss Landscapes of Regularized Linear Autoencoders", ICML 2019):
//! a linear autoencoder with encoder W1 (k x m) and decoder W2 (m x k), trained on the Gram matrix
//! `C = Σ (x − μ)(x − μ)ᵀ` of the centred data with the loss
//!
//! ```text
//! L(W1, W2) = ‖X − W2 W1 X‖²_F + λ‖W1‖²_F + λ‖W2‖²_F
//! ```
//!
//! has, at its minimum, `W1 = W2ᵀ` and `W2 = U_k diag(sqrt(1 − λ/σ_i²)) O` for an orthogonal O: the left
//! singular vectors of the decoder are the top-k principal directions U_k, and its singular values s_i
//! give the data's singular values, `σ_i² = λ / (1 − s_i²)` (components with σ_i² ≤ λ collapse).
//!
//! ```
//! use laepca::{LaePca, Solver, Backend, synthetic};
//!
//! // 500 samples of 20 features whose centred singular values are known.
//! let sigma = [50.0, 30.0, 20.0, 10.0, 5.0];
//! let data = synthetic::prescribed_spectrum(500, 20, &sigma, 3.0, 7);
//!
//! let fit = LaePca::new(3).solver(Solver::ExactTied).backend(Backend::Cpu).seed(1).fit(&data.x)?;
//! assert!(fit.converged);
//! for i in 0..3 {
//!     assert!((fit.singular_values[i] - sigma[i]).abs() < 1e-6 * sigma[i]);
//! }
//! let scores = fit.transform(&data.x)?; // 500 x 3
//! assert_eq!(scores.shape(), (500, 3));
//! # Ok::<(), laepca::Error>(())
//! ```

// Every public item is documented; CI's `cargo doc` step turns a missing doc into an error.
#![warn(missing_docs)]

pub mod alloc;
mod cpu;
mod cpu_kernels;
pub mod data;
mod engine;
mod error;
mod finish;
mod fit;
mod gpu;
#[doc(hidden)]
pub mod internals;
pub mod io;
mod operator;
mod params;
mod real;
mod result;
pub mod rng;
mod solver;
pub mod sparse;
pub mod synthetic;
#[cfg(target_arch = "x86_64")]
mod syrk;

pub use data::{GramAccumulator, GramStats, Layout};
pub use engine::{EngineStats, LoopStats};
pub use error::{Error, Result};
pub use fit::FeatureBlocks;
pub use gpu::{devices, DeviceInfo, GpuDevice};
pub use params::{
    Arithmetic, Backend, CheckedParams, GpuPrecision, LaePca, Method, Phase, Progress,
    ProgressHook, DEFAULT_MAX_ITER,
};
pub use real::Real;
pub use result::{Fit, KernelTime, Projection, Timings};
pub use solver::Solver;
pub use sparse::CsrMatrix;

// The README's examples compile and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
