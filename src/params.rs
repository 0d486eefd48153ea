//! The builder: what to compute and how.

use crate::data::Layout;
use crate::solver::Solver;

/// Where the iterations run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// The CPU engine (nalgebra), in the precision of the data (f32 or f64).
    #[default]
    Cpu,
    /// A GPU through wgpu (Vulkan, Metal, DX12), in f32. An error when no adapter exists.
    Gpu,
    /// The GPU when an adapter exists, else the CPU with a logged warning.
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

/// LAE-PCA: the top-k principal directions and singular values of a data matrix, learnt by an
/// L2-regularised linear autoencoder.
///
/// A builder: each setter takes `self` by value; nothing is checked until [`fit`](LaePca::fit), which
/// returns an [`Error`](crate::Error) for any parameter out of its domain.
///
/// | setting | default |
/// |---|---|
/// | `solver` | [`Solver::ExactTied`] (needs no step size) |
/// | `lambda` | half the k-th Ritz value of C after a few subspace-iteration steps: a lower bound of σ_k²/2, so every component survives |
/// | `alpha` (gradient solvers) | `0.1 / θ₁` with θ₁ ≈ ‖C‖₂ (the ratio of the paper's α = 1e-5 to its σ₁² ≈ 1.04e4) |
/// | `tol` | 1e-8 in f64, 1e-6 in f32 (and on the GPU): the paper's absolute threshold on its stopping quantity |
/// | `max_iter` | 100 000 |
/// | `check_every` | 10 iterations between stopping checks (the only GPU read-backs) |
/// | `cg_steps` | `min(m·k, 16)` conjugate-gradient steps per exact encoder update |
/// | `seed` | 0 |
/// | `backend` | [`Backend::Cpu`] |
/// | `layout` | [`Layout::SamplesInRows`] |
/// | `center` | true |
#[derive(Clone, Debug, PartialEq)]
pub struct LaePca {
    pub(crate) k: usize,
    pub(crate) solver: Solver,
    pub(crate) lambda: Option<f64>,
    pub(crate) alpha: Option<f64>,
    pub(crate) tol: Option<f64>,
    pub(crate) max_iter: usize,
    pub(crate) check_every: usize,
    pub(crate) cg_steps: Option<usize>,
    pub(crate) seed: u64,
    pub(crate) backend: Backend,
    pub(crate) layout: Layout,
    pub(crate) center: bool,
    pub(crate) adapter: Option<String>,
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
            max_iter: 100_000,
            check_every: 10,
            cg_steps: None,
            seed: 0,
            backend: Backend::default(),
            layout: Layout::default(),
            center: true,
            adapter: None,
        }
    }
    /// The iteration to run.
    pub fn solver(mut self, solver: Solver) -> Self {
        self.solver = solver;
        self
    }
    /// The L2 weight λ > 0 (on the unnormalised `C = XᵀX` scale: it must stay below σ_k²).
    pub fn lambda(mut self, lambda: f64) -> Self {
        self.lambda = Some(lambda);
        self
    }
    /// The gradient step size α > 0 (untied, sync and tied solvers).
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.alpha = Some(alpha);
        self
    }
    /// The stopping threshold on the solver's stopping quantity (see [`Solver`]).
    pub fn tol(mut self, tol: f64) -> Self {
        self.tol = Some(tol);
        self
    }
    /// The most iterations to run; a fit that reaches it reports `converged = false`.
    pub fn max_iter(mut self, max_iter: usize) -> Self {
        self.max_iter = max_iter;
        self
    }
    /// Iterations between two stopping checks (on the GPU, between two read-backs). A fit stops at the
    /// first check whose stopping quantity is below `tol`, so its iteration count is a multiple of this.
    pub fn check_every(mut self, n: usize) -> Self {
        self.check_every = n;
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
    /// Whether to remove each feature's mean (default true).
    pub fn center(mut self, center: bool) -> Self {
        self.center = center;
        self
    }
}
