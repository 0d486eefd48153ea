//! The floating-point types the CPU path runs in.

use nalgebra::RealField;

/// A floating-point type the CPU path can compute in: `f32` or `f64`.
///
/// The GPU loop computes in `f32`, or in `f64` where [`LaePca::gpu_precision`](crate::LaePca::gpu_precision)
/// and the device allow ([`Fit::arithmetic`](crate::Fit::arithmetic) says which); results are given in `T`.
pub trait Real:
    RealField + faer::traits::RealField + Copy + bytemuck::Pod + Send + Sync + std::fmt::Debug + 'static
{
    /// Machine epsilon of the type, as f64.
    const EPSILON: f64;
    /// The default stopping tolerance for the paper's variants in this precision (see `LaePca::tol`).
    const DEFAULT_TOL: f64;
    /// The default stopping tolerance of [`Solver::Auto`](crate::Solver::Auto), whose stopping quantity
    /// is relative (the residual `‖CX − X(XᵀCX)‖ / ‖CX‖` of the top k columns). In f32 it lies below
    /// the residual's rounding floor (some ulps), so that a fit ends at that floor (stalled), where its
    /// angle still improves for a pass or two after the residual stops shrinking.
    const AUTO_TOL: f64;
    /// Magnitudes whose products and block sums stay well inside the type's normal range: the Gram
    /// block of a column whose largest magnitude lies outside is computed on a power-of-two rescaled copy.
    const SAFE_GRAM_RANGE: (f64, f64);
    /// The powers of two 2^e that such a rescaling may use: 2^e and 2^−e both normal numbers of T.
    const SCALE_EXPONENTS: (i32, i32);
    /// The default stopping tolerance of [`Solver::Momentum`](crate::Solver::Momentum), whose stopping
    /// quantity is relative (the sine of the span's change per iteration).
    const MOMENTUM_TOL: f64;
    /// Converts (rounding) from f64.
    fn of_f64(x: f64) -> Self;
    /// Converts (exactly) to f64.
    fn as_f64(self) -> f64;
}

impl Real for f32 {
    const EPSILON: f64 = f32::EPSILON as f64;
    const DEFAULT_TOL: f64 = 1e-6;
    const AUTO_TOL: f64 = 1e-7;
    const MOMENTUM_TOL: f64 = 2e-6;
    // 2^±30: squares 2^±60, sums of a block 2^69 ≪ 2^127, and 2^−60 ≫ the smallest normal 2^−126.
    const SAFE_GRAM_RANGE: (f64, f64) = (9.313225746154785e-10, 1073741824.0);
    const SCALE_EXPONENTS: (i32, i32) = (-125, 125);
    fn of_f64(x: f64) -> Self {
        x as f32
    }
    fn as_f64(self) -> f64 {
        self as f64
    }
}

impl Real for f64 {
    const EPSILON: f64 = f64::EPSILON;
    const DEFAULT_TOL: f64 = 1e-8;
    const AUTO_TOL: f64 = 1e-12;
    const MOMENTUM_TOL: f64 = 1e-8;
    // 2^±200: squares 2^±400, far inside 2^±1022.
    const SAFE_GRAM_RANGE: (f64, f64) = (6.223015277861142e-61, 1.6069380442589903e60);
    const SCALE_EXPONENTS: (i32, i32) = (-1021, 1021);
    fn of_f64(x: f64) -> Self {
        x
    }
    fn as_f64(self) -> f64 {
        self
    }
}
