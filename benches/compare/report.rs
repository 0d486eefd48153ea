//! The records results.json is written from.

use crate::adapter::AdapterJson;
use crate::args::Plan;
use crate::measure::{Accuracy, Phases};
use crate::passes::PassPoint;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// e.g. "cpu exact-tied", "gpu tied", "faer eigh".
    pub name: String,
    pub implementation: String,
    pub backend: String,
    pub solver: String,
    pub precision: String,
    /// "ok", "skipped" or "error".
    pub status: String,
    pub note: String,
    pub runs: usize,
    pub times_s: Phases,
    pub iterations: Option<usize>,
    /// Passes over C (products of C with a block of k columns) of the run.
    pub passes: Option<usize>,
    pub max_iter: Option<usize>,
    pub converged: Option<bool>,
    pub stalled: Option<bool>,
    pub lambda: Option<f64>,
    pub alpha: Option<f64>,
    pub submissions: Option<usize>,
    pub readbacks: Option<usize>,
    pub gram_gflops: Option<f64>,
    pub gram_peak_pct: Option<f64>,
    /// GPU rows on a device with timestamp queries: the Gram kernels' own rate (GFLOP/s, the
    /// triangle's flops over their GPU time) and its % of the FP32 peak.
    pub gram_kernel_gflops: Option<f64>,
    pub gram_kernel_peak_pct: Option<f64>,
    /// CPU rows: the Gram rate over the f32 gemm XᵀX measured on the same shape in this run (%).
    pub gram_ref_pct: Option<f64>,
    pub iter_us: Option<f64>,
    /// GPU rows on a device with timestamp queries: the loop's GPU time per iteration (µs).
    pub iter_kernel_us: Option<f64>,
    /// C's bytes read per iteration (products with C times C's size in the working precision).
    pub bytes_per_iter: Option<f64>,
    pub achieved_gbs: Option<f64>,
    pub bandwidth_pct: Option<f64>,
    /// Time per iteration over the time to read C once at the stated bandwidth.
    pub iter_over_c_read: Option<f64>,
    pub accuracy: Option<Accuracy>,
    /// The error after each pass (CPU rows with the per-pass option, and the LOBPCG row).
    pub per_pass: Vec<PassPoint>,
    /// Whether the per-pass fits were checked to be prefixes of one run (laepca rows).
    pub per_pass_prefix: Option<bool>,
    /// laepca rows: the passes the reference LOBPCG needs to reach this row's angle (None: it did not
    /// run, or did not reach it within its cap).
    pub lobpcg_passes: Option<usize>,
    /// The LOBPCG row: the angle after its last pass against nalgebra's eigenvectors of the same C.
    pub angle_to_dense: Option<f64>,
    /// GPU rows: total and per-iteration loop time over the CPU row of the same solver.
    pub gpu_cpu_total: Option<f64>,
    pub gpu_cpu_iter: Option<f64>,
    pub singular_values: Vec<f64>,
    pub explained_variance_ratio: Vec<f64>,
}

impl Row {
    pub fn empty(
        name: &str,
        implementation: &str,
        backend: &str,
        solver: &str,
        precision: &str,
    ) -> Row {
        Row {
            name: name.into(),
            implementation: implementation.into(),
            backend: backend.into(),
            solver: solver.into(),
            precision: precision.into(),
            status: "ok".into(),
            note: String::new(),
            runs: 0,
            times_s: Phases::default(),
            iterations: None,
            passes: None,
            max_iter: None,
            converged: None,
            stalled: None,
            lambda: None,
            alpha: None,
            submissions: None,
            readbacks: None,
            gram_gflops: None,
            gram_kernel_gflops: None,
            gram_kernel_peak_pct: None,
            gram_peak_pct: None,
            gram_ref_pct: None,
            iter_us: None,
            iter_kernel_us: None,
            bytes_per_iter: None,
            achieved_gbs: None,
            bandwidth_pct: None,
            iter_over_c_read: None,
            accuracy: None,
            per_pass: Vec::new(),
            per_pass_prefix: None,
            lobpcg_passes: None,
            angle_to_dense: None,
            gpu_cpu_total: None,
            gpu_cpu_iter: None,
            singular_values: Vec::new(),
            explained_variance_ratio: Vec::new(),
        }
    }
    pub fn skipped(mut self, why: String) -> Row {
        self.status = "skipped".into();
        self.note = why;
        self
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ProblemJson {
    pub name: String,
    pub family: String,
    pub n: usize,
    pub m: usize,
    pub k: usize,
    pub gap: Option<f64>,
    pub gap_name: Option<String>,
    pub precision: String,
    pub lambda: Option<f64>,
    pub alpha: Option<f64>,
    pub tol: Option<f64>,
    pub max_iter: usize,
    pub reference: String,
    pub reference_singular_values: Vec<f64>,
    pub reference_explained_variance_ratio: Vec<f64>,
    /// n·m·(m+1), the flops of the Gram matrix's triangle.
    pub gram_flops: f64,
    /// This machine's f32 gemm XᵀX on this n x m in this run (GFLOP/s, 2·n·m² flops), the CPU Gram's
    /// reference.
    pub sgemm_gflops: f64,
    /// Whose gemm that was: OpenBLAS's (`OPENBLAS` set) or faer's.
    pub sgemm_kernel: String,
    pub note: String,
    pub rows: Vec<Row>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CurvePoint {
    pub iterations: usize,
    pub loop_s: f64,
    pub error: f64,
    pub angle: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Curve {
    pub problem: String,
    pub solver: String,
    pub backend: String,
    pub precision: String,
    pub measure: String,
    pub points: Vec<CurvePoint>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema: u32,
    pub crate_version: String,
    pub quick: bool,
    pub threads: usize,
    pub adapter: Option<AdapterJson>,
    pub cpu_bandwidth_gbs: Option<f64>,
    pub plan: Plan,
    pub notices: Vec<String>,
    pub problems: Vec<ProblemJson>,
    pub curves: Vec<Curve>,
    pub plots: Vec<String>,
    pub elapsed_s: f64,
}
