//! The builder: what to compute and how.

use crate::data::Layout;
use crate::solver::Solver;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The phase a fit is in, for progress reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// Accumulating the Gram matrix (`samples` so far).
    Gram,
    /// The solver loop (`iteration` and the last `stopping_quantity`, at each check).
    Iterate,
    /// The small SVD and the variances.
    Finish,
}

/// A progress report, sent at phase changes and at every stopping check.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    /// The phase the fit is in.
    pub phase: Phase,
    /// Samples accumulated so far (Gram phase).
    pub samples: usize,
    /// Iterations so far (Iterate phase).
    pub iteration: usize,
    /// The most iterations allowed.
    pub max_iter: usize,
    /// The stopping quantity at the last check.
    pub stopping_quantity: Option<f64>,
    /// The tolerance the stopping quantity is held to (0 before the loop's is known).
    pub tol: f64,
}

/// A callback for progress reports (see [`LaePca::on_progress`]).
#[derive(Clone)]
pub struct ProgressHook(pub(crate) Arc<dyn Fn(&Progress) + Send + Sync>);

impl std::fmt::Debug for ProgressHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressHook")
    }
}

impl PartialEq for ProgressHook {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// A flag that cancels a fit once set (see [`LaePca::cancel_flag`]).
#[derive(Clone, Debug)]
pub(crate) struct CancelFlag(pub(crate) Arc<AtomicBool>);

impl CancelFlag {
    /// `Err(Error::Cancelled)` once the flag is set.
    pub(crate) fn check(&self) -> crate::Result<()> {
        if self.0.load(Ordering::Relaxed) {
            Err(crate::Error::Cancelled)
        } else {
            Ok(())
        }
    }
}

impl PartialEq for CancelFlag {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The arithmetic of a fit's loop: f32 or f64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arithmetic {
    /// IEEE single precision.
    F32,
    /// IEEE double precision.
    F64,
}

impl Arithmetic {
    /// "f32" or "f64".
    pub fn name(self) -> &'static str {
        match self {
            Arithmetic::F32 => "f32",
            Arithmetic::F64 => "f64",
        }
    }

    /// The bytes of one value.
    pub fn bytes(self) -> usize {
        match self {
            Arithmetic::F32 => 4,
            Arithmetic::F64 => 8,
        }
    }

    /// The unit roundoff's double: the distance from 1 to the next value.
    pub fn epsilon(self) -> f64 {
        match self {
            Arithmetic::F32 => f32::EPSILON as f64,
            Arithmetic::F64 => f64::EPSILON,
        }
    }

    /// The arithmetic of the data type `T`.
    pub fn of<T: crate::Real>() -> Self {
        if T::EPSILON < f32::EPSILON as f64 {
            Arithmetic::F64
        } else {
            Arithmetic::F32
        }
    }
}

/// The arithmetic a GPU loop runs in ([`LaePca::gpu_precision`]; the CPU always computes in the
/// data's precision).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GpuPrecision {
    /// f64 for f64 data where the device has f64 shaders ([`DeviceInfo::shader_f64`](crate::DeviceInfo::shader_f64):
    /// wgpu's SHADER_F64 on Vulkan, which most desktop and data-centre GPUs and Mesa's lavapipe have;
    /// not DX12, Metal or GL), else f32. Consumer GPUs run f64 at a small fraction of their f32 rate:
    /// f32 data (or [`GpuPrecision::F32`]) keeps the f32 loop.
    #[default]
    Auto,
    /// f32 whatever the data.
    F32,
    /// f64 whatever the data: an error ([`Error::Unsupported`](crate::Error::Unsupported)) on a device
    /// without f64 shaders, or on the GPU's operator route (f32 only).
    F64,
}

impl GpuPrecision {
    /// The option's name (as the command line spells it).
    pub fn name(self) -> &'static str {
        match self {
            GpuPrecision::Auto => "auto",
            GpuPrecision::F32 => "f32",
            GpuPrecision::F64 => "f64",
        }
    }
}

impl std::str::FromStr for GpuPrecision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(GpuPrecision::Auto),
            "f32" => Ok(GpuPrecision::F32),
            "f64" => Ok(GpuPrecision::F64),
            _ => Err(format!(
                "unknown precision '{s}' (expected auto, f32 or f64)"
            )),
        }
    }
}

/// Where the iterations run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// The CPU engine (nalgebra), in the precision of the data (f32 or f64).
    #[default]
    Cpu,
    /// A GPU through wgpu (Vulkan, Metal, DX12), in f32, or in f64 where the device can
    /// ([`LaePca::gpu_precision`]). An error when no adapter exists.
    Gpu,
    /// The GPU when a hardware adapter exists (a software one only when named with
    /// [`LaePca::adapter`] or `WGPU_ADAPTER_NAME`, or handed over with [`LaePca::device`]), else the
    /// CPU with a logged warning. [`LaePca::resolve_backend`] takes this decision once.
    Auto,
}

impl Backend {
    /// The backend's name (as the command line spells it).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Gpu => "gpu",
            Backend::Auto => "auto",
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(Backend::Cpu),
            "gpu" => Ok(Backend::Gpu),
            "auto" => Ok(Backend::Auto),
            _ => Err(format!("unknown backend '{s}' (expected auto, gpu or cpu)")),
        }
    }
}

/// How a fit applies C, the Gram matrix of the centred data (the solver only ever multiplies by it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    /// Chosen from the shape, the density and the memory available: dense data takes
    /// [`GramT`](Method::GramT) when it has fewer samples than features and the solver is auto without
    /// a warm start, else [`Gram`](Method::Gram) (see [`LaePca::dense_method`]); sparse data ([`LaePca::fit_csr`]) takes the cheaper route that fits (see
    /// [`LaePca::fit_csr`] for the rule), and the fit's [`method_reason`](crate::Fit::method_reason)
    /// says why.
    #[default]
    Auto,
    /// C (m x m) formed once, then multiplied by (CPU or GPU). Sparse rows are densified a block at a
    /// time, never all at once.
    Gram,
    /// C never formed: each product is `X_cᵀ (X_c W)` from the sparse X itself (sparse input only;
    /// 2·nnz·b multiply-adds per product with a block of b columns): in f64 on the CPU, or in f32 on
    /// the GPU with X held there (see [`LaePca::fit_csr`](crate::LaePca::fit_csr)).
    Operator,
    /// The transposed Gram matrix `K = X_c X_cᵀ` (n x n) formed instead of C, what auto takes for
    /// dense data with fewer samples than features (asked for, it also fits tall data); the directions
    /// are `X_cᵀ V` from K's eigenvectors V, normalised (the auto solver without a warm start only).
    /// Dense data in memory or read by blocks of features, and sparse data (densified a block of
    /// features at a time; auto takes it where it is the cheapest, see
    /// [`LaePca::fit_csr`](crate::LaePca::fit_csr)).
    GramT,
}

impl Method {
    /// The method's name (as the command line spells it).
    pub fn name(self) -> &'static str {
        match self {
            Method::Auto => "auto",
            Method::Gram => "gram",
            Method::Operator => "operator",
            Method::GramT => "gram-t",
        }
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Method::Auto),
            "gram" => Ok(Method::Gram),
            "operator" => Ok(Method::Operator),
            "gram-t" => Ok(Method::GramT),
            _ => Err(format!(
                "unknown method '{s}' (expected auto, gram, gram-t or operator)"
            )),
        }
    }
}

/// The default of [`LaePca::max_iter`].
pub const DEFAULT_MAX_ITER: usize = 100_000;

/// LAE-PCA: the top-k principal directions and singular values of a data matrix, learnt by an
/// L2-regularised linear autoencoder.
///
/// A builder: each setter takes `self` by value; nothing is checked until [`fit`](LaePca::fit), which
/// returns an [`Error`](crate::Error) for any parameter out of its domain.
///
/// | setting | default |
/// |---|---|
/// | `solver` | [`Solver::Auto`] (no parameter to tune) |
/// | `lambda` | half the k-th Ritz value θ_k of C, the paper's rule: for auto, from its final Ritz values (λ does not enter its iteration); for the others, after 10 subspace-iteration steps (a lower bound of σ_k²/2, so every component survives) |
/// | `alpha` (gradient solvers) | `0.1 / θ₁` with θ₁ ≈ ‖C‖₂ (the ratio of the paper's α = 1e-5 to its σ₁² ≈ 1.04e4) |
/// | `tol` | [`LaePca::default_tol`]: auto: 1e-12 in f64, 1e-7 in f32 arithmetic (a relative residual; in f32 below its rounding floor, so f32 fits end stalled at that floor); momentum: 1e-8 in f64, 2e-6 in f32 arithmetic (a sine of the span's change); the paper's variants: 1e-8 in f64, 1e-6 in f32 arithmetic (the paper's absolute threshold on its quantity) |
/// | `max_iter` | [`DEFAULT_MAX_ITER`] (100 000) |
/// | `check_every` | auto: every iteration (one pass over C each, so a converged fit runs no extra pass); the others: 10 iterations between stopping checks (the only GPU read-backs) |
/// | `cg_steps` | `min(m·k, 16)` conjugate-gradient steps per exact encoder update |
/// | `seed` | 0 |
/// | `backend` | [`Backend::Cpu`] |
/// | `device` | none: each GPU fit opens its own (see [`GpuDevice`](crate::GpuDevice)) |
/// | `layout` | [`Layout::SamplesInRows`] |
/// | `center` | true |
/// | `method` | [`Method::Auto`] |
#[derive(Clone, Debug, PartialEq)]
pub struct LaePca {
    pub(crate) k: usize,
    pub(crate) solver: Solver,
    pub(crate) lambda: Option<f64>,
    pub(crate) alpha: Option<f64>,
    pub(crate) tol: Option<f64>,
    pub(crate) max_iter: usize,
    pub(crate) check_every: Option<usize>,
    pub(crate) cg_steps: Option<usize>,
    pub(crate) seed: u64,
    pub(crate) backend: Backend,
    pub(crate) layout: Layout,
    pub(crate) center: bool,
    pub(crate) method: Method,
    pub(crate) adapter: Option<String>,
    pub(crate) progress: Option<ProgressHook>,
    pub(crate) cancel: Option<CancelFlag>,
    pub(crate) warm_start: Option<nalgebra::DMatrix<f64>>,
    pub(crate) device: Option<crate::GpuDevice>,
    pub(crate) gpu_precision: GpuPrecision,
    pub(crate) profile_kernels: bool,
}

impl LaePca {
    /// A fit of `k` components with the default settings.
    pub fn new(k: usize) -> Self {
        LaePca {
            k,
            solver: Solver::default(),
            lambda: None,
            alpha: None,
            tol: None,
            max_iter: DEFAULT_MAX_ITER,
            check_every: None,
            cg_steps: None,
            seed: 0,
            backend: Backend::default(),
            layout: Layout::default(),
            center: true,
            method: Method::Auto,
            adapter: None,
            progress: None,
            cancel: None,
            warm_start: None,
            device: None,
            gpu_precision: GpuPrecision::Auto,
            profile_kernels: false,
        }
    }
    /// The iteration to run.
    pub fn solver(mut self, solver: Solver) -> Self {
        self.solver = solver;
        self
    }
    /// The L2 weight λ > 0 (on the unnormalised `C = XᵀX` scale: it must stay below σ_k²); `None`
    /// for the default (as for `alpha` and `tol`, so that an optional value passes straight through).
    pub fn lambda(mut self, lambda: impl Into<Option<f64>>) -> Self {
        self.lambda = lambda.into();
        self
    }
    /// The gradient step size α > 0 (untied, sync and tied solvers); `None` for the default.
    pub fn alpha(mut self, alpha: impl Into<Option<f64>>) -> Self {
        self.alpha = alpha.into();
        self
    }
    /// The stopping threshold on the solver's stopping quantity (see [`Solver`]); `None` for
    /// [`LaePca::default_tol`].
    pub fn tol(mut self, tol: impl Into<Option<f64>>) -> Self {
        self.tol = tol.into();
        self
    }
    /// The most iterations to run; a fit that reaches it reports `converged = false`.
    pub fn max_iter(mut self, max_iter: usize) -> Self {
        self.max_iter = max_iter;
        self
    }
    /// Iterations between two stopping checks (on the GPU, between two read-backs). A fit stops at the
    /// first check whose stopping quantity is below `tol`, so its iteration count is a multiple of this
    /// (or max_iter). An interval beyond `max_iter` means one check at the end.
    pub fn check_every(mut self, n: usize) -> Self {
        self.check_every = Some(n);
        self
    }
    /// Conjugate-gradient steps per exact encoder update (exact-untied and exact-sync).
    pub fn cg_steps(mut self, n: usize) -> Self {
        self.cg_steps = Some(n);
        self
    }
    /// The seed of the weights' initialisation (and of the λ estimate).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Where to run.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }
    /// The backend this builder asks for: after [`resolve_backend`](LaePca::resolve_backend), where its
    /// accumulations run (`Cpu` or `Gpu`, never `Auto`). A fit's loop can still end up on the CPU:
    /// [`Fit::backend`](crate::Fit::backend) says where it ran.
    pub fn requested_backend(&self) -> Backend {
        self.backend
    }
    /// How the data handed to `fit` is laid out.
    pub fn layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }
    /// The GPU adapter to use: the first whose name contains this text (case-insensitive). Without it,
    /// the one `WGPU_ADAPTER_NAME` names, else wgpu's high-performance default.
    pub fn adapter(mut self, name: impl Into<String>) -> Self {
        self.adapter = Some(name.into());
        self
    }
    /// Calls `f` at each phase change and each stopping check (e.g. to drive a progress bar). It runs on
    /// the fitting thread: keep it cheap.
    pub fn on_progress(mut self, f: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(ProgressHook(Arc::new(f)));
        self
    }
    /// Stops the fit with [`Error::Cancelled`](crate::Error::Cancelled) once `flag` is set (by another
    /// thread, e.g. a signal handler): it is read between two Gram blocks (every 512 samples on the CPU,
    /// every chunk on the GPU) and at every stopping check, so a fit ends soon after. Nothing is returned
    /// from a cancelled fit.
    pub fn cancel_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cancel = Some(CancelFlag(flag));
        self
    }
    /// Starts the decoder from earlier directions (rows, k' x m, e.g. a previous fit's `components`):
    /// its first `min(k', k)` columns are these, any others random. Fitting again with more components,
    /// or on updated data, then starts close to the answer.
    pub fn warm_start(mut self, components: nalgebra::DMatrix<f64>) -> Self {
        self.warm_start = Some(components);
        self
    }
    /// The open GPU to run on with [`Backend::Gpu`] or [`Backend::Auto`] (Auto takes it even when it is
    /// a software adapter: handing it over counts as asking for it). Without one, each fit opens its own
    /// device; with one, fits reuse its device and compiled kernels. [`Backend::Cpu`] ignores it.
    pub fn device(mut self, device: crate::GpuDevice) -> Self {
        self.device = Some(device);
        self
    }
    /// The arithmetic of a GPU loop (default [`GpuPrecision::Auto`]: f64 for f64 data where the device
    /// has f64 shaders). An f64 GPU fit accumulates C on the CPU in f64 (the GPU's Gram kernel is f32
    /// only) and runs its loop on the GPU in f64; [`Fit::arithmetic`](crate::Fit::arithmetic) says
    /// which ran. The CPU ignores it (it computes in the data's precision).
    pub fn gpu_precision(mut self, precision: GpuPrecision) -> Self {
        self.gpu_precision = precision;
        self
    }
    /// Whether to time each of a GPU loop's kernels (default false): every dispatch then runs in a
    /// compute pass of its own, timed by timestamp queries at both ends, and
    /// [`Fit::kernel_profile`](crate::Fit::kernel_profile) gives each kernel's dispatches and GPU
    /// time. For finding where a loop's time goes, not for timing the loop: the passes cost more
    /// than one pass (the results are the same bits). Nothing is timed on a device without timestamp
    /// queries ([`DeviceInfo::timestamp_queries`](crate::DeviceInfo::timestamp_queries)) or on the CPU.
    pub fn profile_kernels(mut self, profile: bool) -> Self {
        self.profile_kernels = profile;
        self
    }
    /// Whether to remove each feature's mean (default true).
    pub fn center(mut self, center: bool) -> Self {
        self.center = center;
        self
    }
    /// How C is applied (default [`Method::Auto`]).
    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }
}

/// A builder's settings checked against a data shape, with every default that depends only on the
/// solver and the shape filled in: what [`LaePca::check`] returns. The defaults that need C (λ, α)
/// or the backend (`tol`, which follows the precision the loop runs in) stay `None` here.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct CheckedParams {
    /// Samples of the data.
    pub n_samples: usize,
    /// Features of the data.
    pub n_features: usize,
    /// Components, `1 ≤ k ≤ min(n_samples, n_features)`.
    pub k: usize,
    /// The given λ (positive, finite), or `None` for the paper's rule.
    pub lambda: Option<f64>,
    /// The given α (positive, finite), or `None` for the default (used only by gradient solvers).
    pub alpha: Option<f64>,
    /// The given tolerance (positive, finite), or `None` for [`LaePca::default_tol`].
    pub tol: Option<f64>,
    /// The most iterations, at least 1.
    pub max_iter: usize,
    /// Iterations between two stopping checks: at least 1, at most `max_iter` (an interval beyond
    /// `max_iter` means one check at the end); auto's default is 1 (each iteration costs a pass over C,
    /// so none is run past convergence), the others' 10.
    pub check_every: usize,
    /// Conjugate-gradient steps per exact encoder update, at least 1 (default `min(m·k, 16)`).
    pub cg_steps: usize,
}

/// `Err(InvalidParameter)` for a given value that is not positive and finite.
fn check_positive(name: &'static str, value: Option<f64>) -> crate::Result<()> {
    match value {
        Some(v) if !(v > 0.0 && v.is_finite()) => Err(crate::Error::InvalidParameter {
            name,
            value: v,
            reason: "must be positive and finite",
        }),
        _ => Ok(()),
    }
}

/// `Err(InvalidParameter)` for a count of zero.
fn check_at_least_one(name: &'static str, value: usize) -> crate::Result<usize> {
    if value == 0 {
        return Err(crate::Error::InvalidParameter {
            name,
            value: 0.0,
            reason: "must be at least 1",
        });
    }
    Ok(value)
}

impl LaePca {
    /// Checks the settings against data of `n_samples x n_features`, cheaply (no data is read), with the
    /// same rules the fits apply first: [`Error::EmptyData`](crate::Error::EmptyData) without samples
    /// or features, [`Error::InvalidK`](crate::Error::InvalidK) unless `1 ≤ k ≤ min(n, m)`, and
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter) (named as its setter is) for λ, α or
    /// `tol` not positive and finite, or `max_iter`, `check_every` or `cg_steps` of zero. A caller that
    /// knows the shape before it reads the data (a file's header) can fail early with it.
    pub fn check(&self, n_samples: usize, n_features: usize) -> crate::Result<CheckedParams> {
        let (n, m) = (n_samples, n_features);
        if n == 0 || m == 0 {
            return Err(crate::Error::EmptyData {
                n_samples: n,
                n_features: m,
            });
        }
        if self.k == 0 || self.k > n.min(m) {
            return Err(crate::Error::InvalidK {
                k: self.k,
                max: n.min(m),
            });
        }
        check_positive("lambda", self.lambda)?;
        check_positive("alpha", self.alpha)?;
        check_positive("tol", self.tol)?;
        let max_iter = check_at_least_one("max_iter", self.max_iter)?;
        let cg_steps =
            check_at_least_one("cg_steps", self.cg_steps.unwrap_or((m * self.k).min(16)))?;
        let auto = self.solver == Solver::Auto;
        let check_every = check_at_least_one(
            "check_every",
            self.check_every.unwrap_or(if auto { 1 } else { 10 }),
        )?;
        Ok(CheckedParams {
            n_samples: n,
            n_features: m,
            k: self.k,
            lambda: self.lambda,
            alpha: self.alpha,
            tol: self.tol,
            max_iter,
            check_every: check_every.min(max_iter),
            cg_steps,
        })
    }

    /// The default tolerance of `solver` when its loop computes in `T` (on the GPU, the loop's
    /// arithmetic: [`Fit::arithmetic`](crate::Fit::arithmetic)): auto's is a relative residual, momentum's a sine of the span's change, the paper's
    /// variants' the paper's absolute threshold on its quantity.
    pub fn default_tol<T: crate::Real>(solver: Solver) -> f64 {
        match solver {
            Solver::Auto => T::AUTO_TOL,
            Solver::Momentum => T::MOMENTUM_TOL,
            _ => T::DEFAULT_TOL,
        }
    }
}
