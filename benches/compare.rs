//! The benchmark: laepca's GPU and CPU paths for every solver against the dense eigensolvers a user would
//! otherwise run on the same Gram matrix (faer's self-adjoint eigendecomposition, nalgebra's
//! SymmetricEigen), on the paper's own problem, on matrices with a prescribed spectrum and on
//! Fashion-MNIST.
//!
//! ```text
//! cargo bench --bench compare                 # the full run
//! cargo bench --bench compare -- --quick      # small sizes (CI runs it through tests/bench_quick.rs)
//! cargo bench --bench compare -- --help       # every option
//! ```
//!
//! Prints a table, writes `results.json`, `results.md` and SVG plots to `target/laepca-bench/` (or
//! `--out DIR`). The README's "Benchmark" section says what each column means.

#[path = "../tests/common/mod.rs"]
mod common;

use laepca::synthetic::prescribed_spectrum;
use laepca::{Backend, Fit, GpuDevice, GramAccumulator, GramStats, LaePca, Real, Solver, Timings};
use nalgebra::DMatrix;
use plotters::prelude::*;
use serde::Serialize;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DEFAULT_FASHION: &str = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";

const HELP: &str = "\
laepca benchmark: laepca GPU/CPU for every solver against faer and nalgebra eigensolvers.

USAGE: cargo bench --bench compare -- [OPTIONS]     (or the built binary target/release/deps/compare-*)

OPTIONS:
  --quick               small sizes (a minute on 2 cores with lavapipe); what CI runs
  --out DIR             where results.json, results.md and the SVG plots go [target/laepca-bench]
  --markdown FILE       also write the markdown report to FILE
  --fashion FILE        Fashion-MNIST train-images-idx3-ubyte.gz [$LAEPCA_FASHION_MNIST, else
                        /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz]
  --max-m M|adapter     largest m of the size sweep [4096; quick 128]; `adapter`: the largest the GPU holds
  --runs N              timed runs per row after the warm-up, median reported [3; quick 2]
  --budget S            skip a row at the next size of the sweep when its predicted time (scaled by m^3
                        from the last size) exceeds S seconds [60; quick: none]
  --only TEXT[,TEXT]    only problems whose name contains one of the texts (e.g. paper, fashion, m=512)
  --solvers LIST        comma-separated solver names, or `default` (the builder's default solver) [all]
  --no-gpu              no GPU rows
  --no-eigen            no faer / nalgebra rows
  --no-plots            no error curves and no SVG plots
  --peak-gflops G       the GPU's FP32 peak (GFLOP/s), for the Gram %peak column [known cards]
  --bandwidth-gbs B     the GPU's memory bandwidth (GB/s), for the loop %BW column [known cards]
  --cpu-bandwidth-gbs B the host's memory bandwidth (GB/s), for the CPU rows' %BW column
  --print-adapter       print the GPU adapter a fit would use (a file-name slug) and exit
  --help                this text
";

// ----------------------------------------------------------------------------------------------------
// Options

#[derive(Clone, Debug)]
struct Args {
    quick: bool,
    out: PathBuf,
    markdown: Option<PathBuf>,
    fashion: PathBuf,
    max_m: Option<MaxM>,
    runs: Option<usize>,
    budget: Option<f64>,
    only: Vec<String>,
    solvers: Option<Vec<Solver>>,
    gpu: bool,
    eigen: bool,
    plots: bool,
    peak_gflops: Option<f64>,
    bandwidth_gbs: Option<f64>,
    cpu_bandwidth_gbs: Option<f64>,
    print_adapter: bool,
}

#[derive(Clone, Copy, Debug)]
enum MaxM {
    Value(usize),
    Adapter,
}

fn parse_args() -> Result<Args, String> {
    // The crate's target directory when run from a checkout; ./laepca-bench for a binary copied elsewhere.
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => PathBuf::from(t).join("laepca-bench"),
        None if manifest.exists() => manifest.join("target").join("laepca-bench"),
        None => PathBuf::from("laepca-bench"),
    };
    let mut a = Args {
        quick: false,
        out,
        markdown: None,
        fashion: std::env::var_os("LAEPCA_FASHION_MNIST")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_FASHION)),
        max_m: None,
        runs: None,
        budget: None,
        only: Vec::new(),
        solvers: None,
        gpu: true,
        eigen: true,
        plots: true,
        peak_gflops: None,
        bandwidth_gbs: None,
        cpu_bandwidth_gbs: None,
        print_adapter: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        let num = |name: &str, v: String| -> Result<f64, String> {
            v.parse::<f64>()
                .ok()
                .filter(|x| *x > 0.0)
                .ok_or_else(|| format!("{name}: '{v}' is not a positive number"))
        };
        match arg.as_str() {
            "--quick" => a.quick = true,
            "--out" => a.out = PathBuf::from(value("--out")?),
            "--markdown" => a.markdown = Some(PathBuf::from(value("--markdown")?)),
            "--fashion" => a.fashion = PathBuf::from(value("--fashion")?),
            "--max-m" => {
                let v = value("--max-m")?;
                a.max_m = Some(if v == "adapter" {
                    MaxM::Adapter
                } else {
                    MaxM::Value(num("--max-m", v)? as usize)
                });
            }
            "--runs" => a.runs = Some(num("--runs", value("--runs")?)? as usize),
            "--budget" => a.budget = Some(num("--budget", value("--budget")?)?),
            "--only" => a.only = value("--only")?.split(',').map(str::to_string).collect(),
            "--solvers" => {
                let v = value("--solvers")?;
                let mut list = Vec::new();
                for name in v.split(',') {
                    list.push(if name == "default" {
                        Solver::default()
                    } else {
                        name.parse::<Solver>()?
                    });
                }
                a.solvers = Some(list);
            }
            "--no-gpu" => a.gpu = false,
            "--no-eigen" => a.eigen = false,
            "--no-plots" => a.plots = false,
            "--peak-gflops" => a.peak_gflops = Some(num(&arg, value(&arg)?)?),
            "--bandwidth-gbs" => a.bandwidth_gbs = Some(num(&arg, value(&arg)?)?),
            "--cpu-bandwidth-gbs" => a.cpu_bandwidth_gbs = Some(num(&arg, value(&arg)?)?),
            "--print-adapter" => a.print_adapter = true,
            "--help" | "-h" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            // cargo bench passes --bench to harness = false targets.
            "--bench" => {}
            other => return Err(format!("unknown argument '{other}' (see --help)")),
        }
    }
    Ok(a)
}

/// What a run does, resolved from the options and the adapter.
#[derive(Clone, Debug, Serialize)]
struct Plan {
    quick: bool,
    /// Timed runs after the warm-up.
    runs: usize,
    /// A warm-up slower than this is the row's only run.
    slow_s: f64,
    /// Predicted seconds above which a row is skipped at the next size.
    budget_s: f64,
    sizes: Vec<usize>,
    size_k: usize,
    ksweep_m: usize,
    ksweep_ks: Vec<usize>,
    gaps: Vec<(String, f64)>,
    fashion_rows: Option<usize>,
    fashion_max_iter: usize,
    fashion_curves: bool,
    prescribed_max_iter: usize,
    gpu_max_m: usize,
    gpu_max_k: usize,
    gpu_max_iter: usize,
    solvers: Vec<String>,
}

// ----------------------------------------------------------------------------------------------------
// Adapters

#[derive(Clone, Debug, Serialize)]
struct AdapterJson {
    name: String,
    backend: String,
    device_type: String,
    max_buffer_size: u64,
    max_storage_buffer_binding_size: u64,
    max_features: usize,
    peak_gflops: Option<f64>,
    bandwidth_gbs: Option<f64>,
    software: bool,
}

/// FP32 peak (GFLOP/s, without tensor cores) and memory bandwidth (GB/s) of cards the benchmark knows,
/// by a name fragment; more specific fragments first.
const KNOWN_CARDS: &[(&str, f64, f64)] = &[
    ("H200", 67_000.0, 4_800.0),
    ("H100 PCIe", 51_200.0, 2_000.0),
    ("H100", 67_000.0, 3_350.0),
    ("A100-SXM4-80GB", 19_500.0, 2_039.0),
    ("A100 80GB PCIe", 19_500.0, 1_935.0),
    ("A100", 19_500.0, 1_555.0),
    ("L40S", 91_600.0, 864.0),
    ("L40", 90_500.0, 864.0),
    ("L4", 30_300.0, 300.0),
    ("A10G", 31_200.0, 600.0),
    ("A10", 31_200.0, 600.0),
    ("RTX 4090", 82_600.0, 1_008.0),
    ("RTX 3090", 35_600.0, 936.0),
    ("T4", 8_100.0, 320.0),
    ("V100", 15_700.0, 900.0),
];

fn known_card(name: &str) -> Option<(f64, f64)> {
    KNOWN_CARDS
        .iter()
        .find(|(frag, _, _)| name.contains(frag))
        .map(|&(_, p, b)| (p, b))
}

/// The device every GPU row runs on (opened once: the rows' times hold no device set-up), with its
/// adapter as a tiny fit on it reports it.
fn probe_adapter(args: &Args) -> Result<(AdapterJson, GpuDevice), String> {
    if laepca::devices().is_empty() {
        return Err("wgpu finds no adapter".into());
    }
    let device = GpuDevice::open(None).map_err(|e| format!("no GPU device: {e}"))?;
    let x = DMatrix::<f32>::from_fn(16, 4, |i, j| ((i * 7 + j * 3) % 5) as f32 + (i * j) as f32);
    let fit = LaePca::new(1)
        .backend(Backend::Gpu)
        .device(device.clone())
        .max_iter(5)
        .fit(&x)
        .map_err(|e| format!("a tiny GPU fit failed: {e}"))?;
    let info = fit
        .adapter
        .ok_or("the GPU fit reported no adapter".to_string())?;
    let known = known_card(&info.name);
    let adapter = AdapterJson {
        max_features: info.max_features(),
        software: info.device_type == "cpu",
        peak_gflops: args.peak_gflops.or(known.map(|k| k.0)),
        bandwidth_gbs: args.bandwidth_gbs.or(known.map(|k| k.1)),
        name: info.name,
        backend: info.backend,
        device_type: info.device_type,
        max_buffer_size: info.max_buffer_size,
        max_storage_buffer_binding_size: info.max_storage_buffer_binding_size,
    };
    Ok((adapter, device))
}

fn slug(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    s.trim_matches('-').to_string()
}

// ----------------------------------------------------------------------------------------------------
// Problems

/// The data of a problem, row-major (samples in rows).
enum Data {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Data {
    fn precision(&self) -> &'static str {
        match self {
            Data::F32(_) => "f32",
            Data::F64(_) => "f64",
        }
    }
    fn gram(&self, m: usize) -> GramStats {
        let mut acc = GramAccumulator::new(m, true).expect("C fits in memory");
        match self {
            Data::F32(d) => acc.push_rows(d),
            Data::F64(d) => acc.push_rows(d),
        }
        .expect("finite data");
        acc.finish().expect("non-empty data")
    }
    fn fit(&self, b: &LaePca, n: usize, m: usize) -> Result<Outcome, laepca::Error> {
        match self {
            Data::F32(d) => b.fit_slice(d, n, m).map(|f| Outcome::of(&f)),
            Data::F64(d) => b.fit_slice(d, n, m).map(|f| Outcome::of(&f)),
        }
    }
    fn fit_gram(&self, b: &LaePca, stats: &GramStats) -> Result<Outcome, laepca::Error> {
        match self {
            Data::F32(_) => b.fit_gram::<f32>(stats).map(|f| Outcome::of(&f)),
            Data::F64(_) => b.fit_gram::<f64>(stats).map(|f| Outcome::of(&f)),
        }
    }
    fn bytes_per_value(&self) -> f64 {
        match self {
            Data::F32(_) => 4.0,
            Data::F64(_) => 8.0,
        }
    }
}

/// The f64 answer a problem is measured against.
struct Reference {
    /// m x k, orthonormal columns, by decreasing variance.
    directions: DMatrix<f64>,
    sigma: Vec<f64>,
    evr: Vec<f64>,
    how: String,
}

struct Problem {
    name: String,
    family: &'static str,
    n: usize,
    m: usize,
    k: usize,
    gap: Option<(String, f64)>,
    lambda: Option<f64>,
    alpha: Option<f64>,
    tol: Option<f64>,
    max_iter: usize,
    curves: bool,
    note: String,
}

/// σ for the prescribed-spectrum problems: the top k fall linearly from 1000 to 700 (so the gradient
/// solvers' default step suits all of them), then `σ_{k+1} = gap · σ_k`, then a tail falling 3% per
/// index, r = min(m, k + 32) values in all: the data has rank r.
fn gap_spectrum(m: usize, k: usize, gap: f64) -> Vec<f64> {
    let r = m.min(k + 32);
    let mut s: Vec<f64> = (0..k)
        .map(|i| {
            1000.0
                - if k > 1 {
                    300.0 * i as f64 / (k - 1) as f64
                } else {
                    0.0
                }
        })
        .collect();
    let mut t = s[k - 1] * gap;
    while s.len() < r {
        s.push(t);
        t *= 0.97;
    }
    s
}

/// Top-k eigenpairs of C in f64 as a reference (nalgebra's SymmetricEigen, an independent solver).
fn reference_from_gram(c: &DMatrix<f64>, k: usize, how: &str) -> Reference {
    let (vals, vecs) = common::reference_eigen(c, k);
    let trace = c.trace();
    Reference {
        directions: vecs,
        sigma: vals.iter().map(|v| v.max(0.0).sqrt()).collect(),
        evr: vals.iter().map(|v| v / trace).collect(),
        how: how.to_string(),
    }
}

/// Reads an IDX image file (gzip), returning (images, pixels per image, the pixels).
fn read_idx_images(path: &Path) -> Result<(usize, usize, Vec<u8>), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::io::BufReader::new(file))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() < 16 {
        return Err(format!("{}: too short for an IDX header", path.display()));
    }
    let word = |i: usize| u32::from_be_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap()) as usize;
    if word(0) != 0x0803 {
        return Err(format!(
            "{}: not an IDX3 u8 file (magic {:#x})",
            path.display(),
            word(0)
        ));
    }
    let (n, rows, cols) = (word(1), word(2), word(3));
    let m = rows * cols;
    if bytes.len() != 16 + n * m {
        return Err(format!(
            "{}: {} bytes, expected 16 + {n} x {m}",
            path.display(),
            bytes.len()
        ));
    }
    bytes.drain(..16);
    Ok((n, m, bytes))
}

// ----------------------------------------------------------------------------------------------------
// Measurements

/// What the benchmark keeps of a fit, whatever its precision.
struct Outcome {
    /// m x k columns.
    directions: DMatrix<f64>,
    sigma: Vec<f64>,
    evr: Vec<f64>,
    timings: Timings,
    iterations: usize,
    converged: bool,
    stalled: bool,
    solver: Solver,
    lambda: f64,
    alpha: f64,
    submissions: usize,
    readbacks: usize,
}

impl Outcome {
    fn of<T: Real>(f: &Fit<T>) -> Self {
        Outcome {
            directions: f.components.transpose().map(|v| v.as_f64()),
            sigma: f.singular_values.iter().map(|v| v.as_f64()).collect(),
            evr: f
                .explained_variance_ratio
                .iter()
                .map(|v| v.as_f64())
                .collect(),
            timings: f.timings,
            iterations: f.iterations,
            converged: f.converged,
            stalled: f.stalled,
            solver: f.solver,
            lambda: f.lambda,
            alpha: f.alpha.unwrap_or(f64::NAN),
            submissions: f.loop_stats.total.submissions,
            readbacks: f.loop_stats.total.host_waits,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
struct Accuracy {
    /// Largest principal angle between the fitted and the reference subspace (radians).
    angle: f64,
    /// max_i |σ̂_i − σ_i| / σ_i.
    sv_rel_err: f64,
    /// max_i |r̂_i − r_i| / r_i for the explained-variance ratios.
    evr_rel_err: f64,
    /// The paper's error: Σ_i min ‖u_i ± û_i‖.
    direction_err: f64,
}

fn accuracy(directions: &DMatrix<f64>, sigma: &[f64], evr: &[f64], r: &Reference) -> Accuracy {
    let rel = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| ((x - y) / y).abs())
            .fold(0.0, f64::max)
    };
    Accuracy {
        angle: common::largest_principal_angle(&r.directions, &common::orthonormal(directions)),
        sv_rel_err: rel(sigma, &r.sigma),
        evr_rel_err: rel(evr, &r.evr),
        direction_err: direction_error(directions, &r.directions),
    }
}

/// The paper's measure: Σ over columns of min(‖u − û‖, ‖u + û‖).
fn direction_error(a: &DMatrix<f64>, b: &DMatrix<f64>) -> f64 {
    (0..a.ncols().min(b.ncols()))
        .map(|j| {
            let (u, v) = (a.column(j), b.column(j));
            (u - v).norm().min((u + v).norm())
        })
        .sum()
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
struct Phases {
    upload: f64,
    gram: f64,
    setup: f64,
    iterate: f64,
    readback: f64,
    finish: f64,
    /// total − the phases above: opening the device, validation, copies outside the phases.
    other: f64,
    total: f64,
}

impl Phases {
    fn of(t: &Timings) -> Self {
        let s = |d: Duration| d.as_secs_f64();
        let sum = t.upload + t.gram + t.setup + t.iterate + t.readback + t.finish;
        Phases {
            upload: s(t.upload),
            gram: s(t.gram),
            setup: s(t.setup),
            iterate: s(t.iterate),
            readback: s(t.readback),
            finish: s(t.finish),
            other: s(t.total.saturating_sub(sum)),
            total: s(t.total),
        }
    }

    /// The median of each phase over the runs.
    fn median(all: &[Phases]) -> Self {
        let med = |f: fn(&Phases) -> f64| median(&all.iter().map(f).collect::<Vec<_>>());
        Phases {
            upload: med(|p| p.upload),
            gram: med(|p| p.gram),
            setup: med(|p| p.setup),
            iterate: med(|p| p.iterate),
            readback: med(|p| p.readback),
            finish: med(|p| p.finish),
            other: med(|p| p.other),
            total: med(|p| p.total),
        }
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => 0.5 * (s[n / 2 - 1] + s[n / 2]),
    }
}

#[derive(Clone, Debug, Serialize)]
struct Row {
    /// e.g. "cpu exact-tied", "gpu tied", "faer eigh".
    name: String,
    implementation: String,
    backend: String,
    solver: String,
    precision: String,
    /// "ok", "skipped" or "error".
    status: String,
    note: String,
    runs: usize,
    times_s: Phases,
    iterations: Option<usize>,
    max_iter: Option<usize>,
    converged: Option<bool>,
    stalled: Option<bool>,
    lambda: Option<f64>,
    alpha: Option<f64>,
    submissions: Option<usize>,
    readbacks: Option<usize>,
    gram_gflops: Option<f64>,
    gram_peak_pct: Option<f64>,
    iter_us: Option<f64>,
    /// C's bytes read per iteration (products with C times C's size in the working precision).
    bytes_per_iter: Option<f64>,
    achieved_gbs: Option<f64>,
    bandwidth_pct: Option<f64>,
    /// Time per iteration over the time to read C once at the stated bandwidth.
    iter_over_c_read: Option<f64>,
    accuracy: Option<Accuracy>,
    /// GPU rows: total and per-iteration loop time over the CPU row of the same solver.
    gpu_cpu_total: Option<f64>,
    gpu_cpu_iter: Option<f64>,
    singular_values: Vec<f64>,
    explained_variance_ratio: Vec<f64>,
}

impl Row {
    fn empty(
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
            max_iter: None,
            converged: None,
            stalled: None,
            lambda: None,
            alpha: None,
            submissions: None,
            readbacks: None,
            gram_gflops: None,
            gram_peak_pct: None,
            iter_us: None,
            bytes_per_iter: None,
            achieved_gbs: None,
            bandwidth_pct: None,
            iter_over_c_read: None,
            accuracy: None,
            gpu_cpu_total: None,
            gpu_cpu_iter: None,
            singular_values: Vec::new(),
            explained_variance_ratio: Vec::new(),
        }
    }
    fn skipped(mut self, why: String) -> Row {
        self.status = "skipped".into();
        self.note = why;
        self
    }
}

#[derive(Clone, Debug, Serialize)]
struct ProblemJson {
    name: String,
    family: String,
    n: usize,
    m: usize,
    k: usize,
    gap: Option<f64>,
    gap_name: Option<String>,
    precision: String,
    lambda: Option<f64>,
    alpha: Option<f64>,
    tol: Option<f64>,
    max_iter: usize,
    reference: String,
    reference_singular_values: Vec<f64>,
    reference_explained_variance_ratio: Vec<f64>,
    /// m²n, the flops counted for the Gram matrix.
    gram_flops: f64,
    note: String,
    rows: Vec<Row>,
}

#[derive(Clone, Debug, Serialize)]
struct CurvePoint {
    iterations: usize,
    loop_s: f64,
    error: f64,
    angle: f64,
}

#[derive(Clone, Debug, Serialize)]
struct Curve {
    problem: String,
    solver: String,
    backend: String,
    precision: String,
    measure: String,
    points: Vec<CurvePoint>,
}

#[derive(Clone, Debug, Serialize)]
struct Report {
    schema: u32,
    crate_version: String,
    quick: bool,
    threads: usize,
    adapter: Option<AdapterJson>,
    cpu_bandwidth_gbs: Option<f64>,
    plan: Plan,
    notices: Vec<String>,
    problems: Vec<ProblemJson>,
    curves: Vec<Curve>,
    plots: Vec<String>,
    elapsed_s: f64,
}

/// Runs `f` once as a warm-up, then `runs` more times unless the warm-up was slower than `slow_s`;
/// returns the median phases, the number of timed runs and the last result.
fn measure<R>(
    runs: usize,
    slow_s: f64,
    mut f: impl FnMut() -> Result<(R, Phases), String>,
) -> Result<(R, Phases, usize), String> {
    let (first, p0) = f()?;
    if p0.total > slow_s || runs == 0 {
        return Ok((first, p0, 1));
    }
    let mut all = Vec::new();
    let mut last = first;
    for _ in 0..runs {
        let (r, p) = f()?;
        all.push(p);
        last = r;
    }
    Ok((last, Phases::median(&all), runs))
}

/// C's reads per iteration of a solver (products with C): see the solver loop in src/solver/mod.rs.
fn c_products_per_iter(solver: Solver, m: usize, k: usize) -> Option<f64> {
    match solver {
        Solver::Untied | Solver::Sync => Some(2.0),
        // Auto: C R (its setup-free start adds one, C X₀); momentum: C W (its setup adds 10 (k + 8)/k).
        Solver::Auto | Solver::Momentum | Solver::Tied | Solver::ExactTied => Some(1.0),
        // Decoder: one product; encoder: the right-hand side, the first residual and one per CG step.
        Solver::ExactUntied | Solver::ExactSync => Some(3.0 + (m * k).min(16) as f64),
        _ => None,
    }
}

// ----------------------------------------------------------------------------------------------------
// The run

struct Ctx {
    args: Args,
    plan: Plan,
    adapter: Option<AdapterJson>,
    /// The open device of the GPU rows.
    device: Option<GpuDevice>,
    solvers: Vec<Solver>,
    notices: Vec<String>,
    /// (family, gap, row name) → (m, seconds of one run) at the last size, for the size sweep's skips.
    last_time: HashMap<(String, String, String), (usize, f64)>,
    md: String,
}

impl Ctx {
    fn notice(&mut self, s: String) {
        println!("note: {s}");
        self.notices.push(s);
    }

    /// Whether the size sweep should skip `row` at size m, from its time at the last size.
    fn predicted_skip(&self, p: &Problem, row: &str) -> Option<String> {
        if p.family != "size-sweep" {
            return None;
        }
        let gap = p.gap.as_ref().map_or(String::new(), |g| g.0.clone());
        let (m0, t0) = self
            .last_time
            .get(&(p.family.to_string(), gap, row.to_string()))?;
        let predicted = t0 * (p.m as f64 / *m0 as f64).powi(3);
        (predicted > self.plan.budget_s).then(|| {
            format!(
                "predicted {predicted:.0} s (from {t0:.2} s at m = {m0}, scaled by m^3) > budget {} s",
                self.plan.budget_s
            )
        })
    }

    fn record_time(&mut self, p: &Problem, row: &Row) {
        if row.status == "ok" {
            let gap = p.gap.as_ref().map_or(String::new(), |g| g.0.clone());
            self.last_time.insert(
                (p.family.to_string(), gap, row.name.clone()),
                (p.m, row.times_s.total),
            );
        }
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    let probed = if args.gpu || args.print_adapter {
        match probe_adapter(&args) {
            Ok(a) => Some(a),
            Err(e) => {
                if args.print_adapter {
                    eprintln!("no GPU adapter: {e}");
                    std::process::exit(1);
                }
                if std::env::var_os("LAEPCA_REQUIRE_GPU").is_some() {
                    eprintln!("error: LAEPCA_REQUIRE_GPU is set but the GPU is not usable: {e}");
                    std::process::exit(1);
                }
                println!("note: no GPU rows: {e}");
                None
            }
        }
    } else {
        None
    };
    let (adapter, device) = probed.map_or((None, None), |(a, d)| (Some(a), Some(d)));
    if args.print_adapter {
        println!("{}", slug(&adapter.expect("probed above").name));
        return;
    }
    if let Err(e) = run(args, adapter, device, started) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn make_plan(args: &Args, adapter: &Option<AdapterJson>, solvers: &[Solver]) -> Plan {
    let q = args.quick;
    let software = adapter.as_ref().is_some_and(|a| a.software);
    let adapter_max = adapter.as_ref().map_or(usize::MAX, |a| a.max_features);
    let max_m = match args.max_m {
        Some(MaxM::Value(v)) => v,
        Some(MaxM::Adapter) if adapter_max < usize::MAX => adapter_max,
        _ if q => 128,
        _ => 4096,
    };
    let mut sizes = Vec::new();
    let mut m = 64;
    while m <= max_m {
        sizes.push(m);
        m *= 2;
    }
    if matches!(args.max_m, Some(MaxM::Adapter) | Some(MaxM::Value(_)))
        && sizes.last() != Some(&max_m)
        && max_m > 64
    {
        sizes.push(max_m);
    }
    Plan {
        quick: q,
        runs: args.runs.unwrap_or(if q { 2 } else { 3 }),
        slow_s: if q { 0.25 } else { 5.0 },
        // Quick sizes are small: every row runs, so CI's test sees every row whatever the machine's speed.
        budget_s: args.budget.unwrap_or(if q { f64::INFINITY } else { 60.0 }),
        sizes,
        size_k: 16,
        ksweep_m: if q { 64 } else { 512 },
        ksweep_ks: if q { vec![1, 4] } else { vec![1, 4, 64] },
        gaps: vec![("easy".into(), 0.5), ("hard".into(), 0.98)],
        fashion_rows: if q { Some(1000) } else { None },
        fashion_max_iter: if q { 100 } else { 100_000 },
        fashion_curves: !q,
        prescribed_max_iter: if q { 2_000 } else { 20_000 },
        // lavapipe & co. emulate a GPU on the CPU (a dispatch costs about a millisecond): small sizes
        // and capped iterations, for correctness only.
        gpu_max_m: match (software, q) {
            (true, true) => 64,
            (true, false) => 128,
            (false, _) => adapter_max,
        },
        gpu_max_k: match (software, q) {
            (true, true) => 4,
            (true, false) => 16,
            (false, _) => usize::MAX,
        },
        gpu_max_iter: match (software, q) {
            (true, true) => 50,
            (true, false) => 100,
            (false, _) => usize::MAX,
        },
        solvers: solvers.iter().map(|s| s.name().to_string()).collect(),
    }
}

fn run(
    args: Args,
    adapter: Option<AdapterJson>,
    device: Option<GpuDevice>,
    started: Instant,
) -> Result<(), String> {
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let solvers = args.solvers.clone().unwrap_or_else(|| Solver::ALL.to_vec());
    let plan = make_plan(&args, &adapter, &solvers);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut cx = Ctx {
        args: args.clone(),
        plan: plan.clone(),
        adapter: adapter.clone(),
        device,
        solvers,
        notices: Vec::new(),
        last_time: HashMap::new(),
        md: String::new(),
    };
    let header = format!(
        "laepca {} benchmark ({} mode), {threads} CPU threads, GPU: {}",
        env!("CARGO_PKG_VERSION"),
        if plan.quick { "quick" } else { "full" },
        adapter.as_ref().map_or("none".to_string(), |a| format!(
            "{} ({}, {}{})",
            a.name,
            a.backend,
            a.device_type,
            if a.software {
                ": software, small sizes and capped iterations only"
            } else {
                ""
            }
        ))
    );
    println!("{header}");
    cx.md
        .push_str(&format!("# laepca benchmark\n\n{header}\n\n"));
    if let Some(a) = &adapter {
        cx.md.push_str(&format!(
            "Adapter: {} / {} / {}, max_storage_buffer_binding_size {} B, max m {}, FP32 peak {}, bandwidth {}.\n\n",
            a.name,
            a.backend,
            a.device_type,
            a.max_storage_buffer_binding_size,
            a.max_features,
            a.peak_gflops.map_or("unknown".into(), |v| format!("{v:.0} GFLOP/s")),
            a.bandwidth_gbs.map_or("unknown".into(), |v| format!("{v:.0} GB/s")),
        ));
    }
    let wanted =
        |name: &str| args.only.is_empty() || args.only.iter().any(|o| name.contains(o.as_str()));

    let mut problems = Vec::new();
    let mut curves = Vec::new();

    // The paper's problem: m = 10, n = 10000, k = 2, λ = 50, α = 1e-5, tol = 1e-8, f64 like NumPy.
    if wanted("paper") {
        let x = common::paper_problem();
        let (n, m) = x.shape();
        let rows: Vec<f64> = x.transpose().as_slice().to_vec();
        let data = Data::F64(rows);
        let stats = data.gram(m);
        let reference = reference_from_gram(&stats.c, 2, "f64 Gram, nalgebra SymmetricEigen");
        let p = Problem {
            name: "paper".into(),
            family: "paper",
            n,
            m,
            k: 2,
            gap: None,
            lambda: Some(50.0),
            alpha: Some(1e-5),
            tol: Some(1e-8),
            max_iter: 100_000,
            curves: args.plots,
            note: "the paper's algorithms.py problem: NumPy seed 0, X ~ N(0,1), rows centred"
                .into(),
        };
        let (pj, c) = run_problem(&mut cx, &p, &data, &reference);
        problems.push(pj);
        curves.extend(c);
    }

    // Prescribed spectra: a sweep over m at k = 16 and a sweep over k at one m, each with both gaps.
    let mut specs: Vec<(&'static str, usize, usize, String, f64)> = Vec::new();
    for (gname, g) in &plan.gaps {
        for &m in &plan.sizes {
            specs.push(("size-sweep", m, plan.size_k.min(m / 2), gname.clone(), *g));
        }
    }
    for (gname, g) in &plan.gaps {
        for &k in &plan.ksweep_ks {
            if 2 * k <= plan.ksweep_m {
                specs.push(("k-sweep", plan.ksweep_m, k, gname.clone(), *g));
            }
        }
    }
    for (family, m, k, gname, g) in specs {
        let name = format!("spectrum m={m} k={k} {gname}");
        if !wanted(&name) {
            continue;
        }
        let n = 4 * m;
        let sigma = gap_spectrum(m, k, g);
        let t = Instant::now();
        let pre = prescribed_spectrum(n, m, &sigma, 3.0, m as u64 * 100 + k as u64);
        let mut rows = vec![0f32; n * m];
        for (idx, &v) in pre.x.iter().enumerate() {
            // Column-major source, row-major destination.
            rows[(idx % n) * m + idx / n] = v as f32;
        }
        drop(pre.x);
        let total: f64 = sigma.iter().map(|s| s * s).sum();
        let reference = Reference {
            directions: pre.directions.columns(0, k).into_owned(),
            sigma: sigma[..k].to_vec(),
            evr: sigma[..k].iter().map(|s| s * s / total).collect(),
            how: "the prescribed spectrum (exact)".into(),
        };
        let p = Problem {
            name,
            family,
            n,
            m,
            k,
            gap: Some((gname.clone(), g)),
            lambda: None,
            alpha: None,
            tol: None,
            max_iter: plan.prescribed_max_iter,
            curves: false,
            note: format!(
                "n = 4m, rank {}, σ: top k linear 1000 → 700, σ_(k+1)/σ_k = {g}, tail ×0.97; generated in {:.1} s",
                sigma.len(),
                t.elapsed().as_secs_f64()
            ),
        };
        let (pj, _) = run_problem(&mut cx, &p, &Data::F32(rows), &reference);
        problems.push(pj);
    }

    // Fashion-MNIST, pixels / 255 in f32 (scikit-learn's usual preparation), k = 16.
    if wanted("fashion-mnist") {
        if args.fashion.exists() {
            let (n_all, m, pixels) = read_idx_images(&args.fashion)?;
            let n = plan.fashion_rows.map_or(n_all, |r| r.min(n_all));
            let rows: Vec<f32> = pixels[..n * m].iter().map(|&v| v as f32 / 255.0).collect();
            drop(pixels);
            let wide: Vec<f64> = rows.iter().map(|&v| v as f64).collect();
            let mut acc = GramAccumulator::new(m, true).expect("C fits in memory");
            acc.push_rows(&wide).expect("finite pixels");
            let stats = acc.finish().expect("images");
            drop(wide);
            let reference = reference_from_gram(
                &stats.c,
                16,
                "f64 Gram of the f32 pixels, nalgebra SymmetricEigen",
            );
            let p = Problem {
                name: if n < n_all {
                    format!("fashion-mnist (first {n})")
                } else {
                    "fashion-mnist".into()
                },
                family: "fashion",
                n,
                m,
                k: 16,
                gap: None,
                lambda: None,
                alpha: None,
                tol: None,
                max_iter: plan.fashion_max_iter,
                curves: args.plots && plan.fashion_curves,
                note: format!("{}, pixels / 255 as f32", args.fashion.display()),
            };
            let (pj, c) = run_problem(&mut cx, &p, &Data::F32(rows), &reference);
            problems.push(pj);
            curves.extend(c);
        } else {
            cx.notice(format!(
                "Fashion-MNIST skipped: {} not found (install the Debian package dataset-fashion-mnist, or pass --fashion FILE)",
                args.fashion.display()
            ));
        }
    }

    // Plots.
    let mut plots = Vec::new();
    if args.plots {
        for problem in ["paper", "fashion-mnist"] {
            let cs: Vec<&Curve> = curves
                .iter()
                .filter(|c| c.problem.starts_with(problem))
                .collect();
            if cs.is_empty() {
                continue;
            }
            let file = format!("error_{problem}.svg");
            let title = format!(
                "{}: {} of the fit stopped after N iterations (prefix runs, same seed), CPU {}",
                cs[0].problem, cs[0].measure, cs[0].precision
            );
            match plot_curves(&args.out.join(&file), &title, &cs) {
                Ok(()) => plots.push(file),
                Err(e) => cx.notice(format!("plot {file} failed: {e}")),
            }
        }
        let file = "time_vs_m.svg".to_string();
        match plot_time_vs_m(&args.out.join(&file), &problems, &plan) {
            Ok(true) => plots.push(file),
            Ok(false) => {}
            Err(e) => cx.notice(format!("plot {file} failed: {e}")),
        }
    }

    if !cx.notices.is_empty() {
        cx.md.push_str("## Notices\n\n");
        for n in &cx.notices {
            cx.md.push_str(&format!("- {n}\n"));
        }
        cx.md.push('\n');
    }
    let summary = expectations(&problems, &adapter);
    if !summary.is_empty() {
        println!("\n{summary}");
        cx.md.push_str("## Against the expectations\n\n");
        cx.md.push_str(&summary);
        cx.md.push('\n');
    }
    if !plots.is_empty() {
        cx.md.push_str("## Plots\n\n");
        for p in &plots {
            cx.md.push_str(&format!("- {p}\n"));
        }
    }

    let report = Report {
        schema: 1,
        crate_version: env!("CARGO_PKG_VERSION").into(),
        quick: plan.quick,
        threads,
        adapter,
        cpu_bandwidth_gbs: args.cpu_bandwidth_gbs,
        plan,
        notices: cx.notices.clone(),
        problems,
        curves,
        plots,
        elapsed_s: started.elapsed().as_secs_f64(),
    };
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    let json_path = args.out.join("results.json");
    std::fs::write(&json_path, json).map_err(|e| format!("{}: {e}", json_path.display()))?;
    let md_path = args.out.join("results.md");
    std::fs::write(&md_path, &cx.md).map_err(|e| format!("{}: {e}", md_path.display()))?;
    if let Some(p) = &args.markdown {
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::write(p, &cx.md).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    println!(
        "\nwrote {} and {} ({} plots) in {:.1} s",
        json_path.display(),
        md_path.display(),
        report.plots.len(),
        report.elapsed_s
    );
    Ok(())
}

/// Runs every row of one problem, prints them, and draws the error curves where asked.
fn run_problem(cx: &mut Ctx, p: &Problem, data: &Data, r: &Reference) -> (ProblemJson, Vec<Curve>) {
    let (n, m, k) = (p.n, p.m, p.k);
    let gram_flops = (m * m) as f64 * n as f64;
    let title = format!(
        "{} (n = {n}, m = {m}, k = {k}, {}): {}",
        p.name,
        data.precision(),
        p.note
    );
    println!("\n== {title}");
    println!("{}", table_header(false));
    cx.md.push_str(&format!(
        "## {}\n\n{}; reference: {}.\n\n",
        p.name, title, r.how
    ));
    cx.md.push_str(&table_header(true));
    cx.md.push('\n');
    cx.md.push_str(&table_rule());
    cx.md.push('\n');

    let mut rows: Vec<Row> = Vec::new();
    let peak = cx.adapter.as_ref().and_then(|a| a.peak_gflops);
    let gpu_bw = cx.adapter.as_ref().and_then(|a| a.bandwidth_gbs);
    let gpu_ok = cx.adapter.is_some() && cx.args.gpu;
    let solvers = cx.solvers.clone();

    for backend in [Backend::Cpu, Backend::Gpu] {
        for &solver in &solvers {
            let is_gpu = backend == Backend::Gpu;
            let name = format!("{} {}", backend.name(), solver.name());
            let precision = if is_gpu { "f32" } else { data.precision() };
            let row = Row::empty(&name, "laepca", backend.name(), solver.name(), precision);
            let row = if is_gpu && !gpu_ok {
                continue;
            } else if is_gpu && m > cx.plan.gpu_max_m {
                row.skipped(format!("m > {} for this adapter", cx.plan.gpu_max_m))
            } else if is_gpu && k > cx.plan.gpu_max_k {
                row.skipped(format!("k > {} for this adapter", cx.plan.gpu_max_k))
            } else if let Some(why) = cx.predicted_skip(p, &name) {
                row.skipped(why)
            } else {
                let max_iter = if is_gpu {
                    p.max_iter.min(cx.plan.gpu_max_iter)
                } else {
                    p.max_iter
                };
                let mut b = LaePca::new(k)
                    .solver(solver)
                    .backend(backend)
                    .seed(0)
                    .max_iter(max_iter);
                if let (true, Some(d)) = (is_gpu, &cx.device) {
                    b = b.device(d.clone());
                }
                if let Some(l) = p.lambda {
                    b = b.lambda(l);
                }
                if let Some(a) = p.alpha {
                    b = b.alpha(a);
                }
                if let Some(t) = p.tol {
                    b = b.tol(t);
                }
                let res = measure(cx.plan.runs, cx.plan.slow_s, || {
                    let o = data.fit(&b, n, m).map_err(|e| e.to_string())?;
                    let ph = Phases::of(&o.timings);
                    Ok((o, ph))
                });
                let mut row = row;
                match res {
                    Err(e) => {
                        row.status = "error".into();
                        row.note = e;
                    }
                    Ok((o, ph, runs)) => {
                        row.runs = runs;
                        row.times_s = ph;
                        row.iterations = Some(o.iterations);
                        row.max_iter = Some(max_iter);
                        row.converged = Some(o.converged);
                        row.stalled = Some(o.stalled);
                        row.lambda = Some(o.lambda);
                        row.alpha = o.alpha.is_finite().then_some(o.alpha);
                        row.submissions = is_gpu.then_some(o.submissions);
                        row.readbacks = is_gpu.then_some(o.readbacks);
                        if o.solver != solver {
                            row.note = format!("ran {}", o.solver.name());
                        }
                        if ph.gram > 0.0 {
                            row.gram_gflops = Some(gram_flops / ph.gram / 1e9);
                            if is_gpu {
                                row.gram_peak_pct =
                                    peak.map(|pk| 100.0 * gram_flops / ph.gram / 1e9 / pk);
                            }
                        }
                        if o.iterations > 0 && ph.iterate > 0.0 {
                            let per = ph.iterate / o.iterations as f64;
                            row.iter_us = Some(per * 1e6);
                            let c_bytes = if is_gpu {
                                let mp = m.div_ceil(4) * 4;
                                4.0 * (mp * mp) as f64
                            } else {
                                data.bytes_per_value() * (m * m) as f64
                            };
                            if let Some(products) = c_products_per_iter(o.solver, m, k) {
                                let bytes = products * c_bytes;
                                row.bytes_per_iter = Some(bytes);
                                row.achieved_gbs = Some(bytes / per / 1e9);
                                let bw = if is_gpu {
                                    gpu_bw
                                } else {
                                    cx.args.cpu_bandwidth_gbs
                                };
                                if let Some(bw) = bw {
                                    row.bandwidth_pct = Some(100.0 * bytes / per / 1e9 / bw);
                                    row.iter_over_c_read = Some(per / (c_bytes / (bw * 1e9)));
                                }
                            }
                        }
                        row.accuracy = Some(accuracy(&o.directions, &o.sigma, &o.evr, r));
                        row.singular_values = o.sigma;
                        row.explained_variance_ratio = o.evr;
                    }
                }
                row
            };
            let mut row = row;
            if is_gpu && row.status == "ok" {
                if let Some(c) = rows
                    .iter()
                    .find(|c| c.backend == "cpu" && c.solver == row.solver && c.status == "ok")
                {
                    row.gpu_cpu_total = Some(row.times_s.total / c.times_s.total);
                    if let (Some(g), Some(cu)) = (row.iter_us, c.iter_us) {
                        row.gpu_cpu_iter = Some(g / cu);
                    }
                }
            }
            cx.record_time(p, &row);
            emit_row(cx, &row);
            rows.push(row);
        }
    }

    let eigen_skips: Vec<Option<String>> = ["faer eigh", "nalgebra eigh"]
        .iter()
        .map(|name| cx.predicted_skip(p, name))
        .collect();
    if cx.args.eigen && eigen_skips.iter().all(|s| s.is_some()) {
        for (which, why) in ["faer", "nalgebra"].iter().zip(&eigen_skips) {
            let name = format!("{which} eigh");
            let row = Row::empty(&name, which, "cpu", "eigh", "f64")
                .skipped(why.clone().unwrap_or_default());
            emit_row(cx, &row);
            rows.push(row);
        }
    } else if cx.args.eigen {
        // The Gram matrix as laepca's CPU path forms it (data precision), timed once per problem.
        let gram = measure(cx.plan.runs, cx.plan.slow_s, || {
            let t = Instant::now();
            let s = data.gram(m);
            let secs = t.elapsed().as_secs_f64();
            Ok((
                s,
                Phases {
                    gram: secs,
                    total: secs,
                    ..Phases::default()
                },
            ))
        })
        .expect("the Gram matrix");
        let (stats, gram_ph, _) = gram;
        for (which, skip) in ["faer", "nalgebra"].into_iter().zip(eigen_skips) {
            let name = format!("{which} eigh");
            let row = Row::empty(&name, which, "cpu", "eigh", "f64");
            let row = if let Some(why) = skip {
                row.skipped(why)
            } else {
                let res = measure(cx.plan.runs, cx.plan.slow_s, || {
                    let t = Instant::now();
                    let (dirs, vals) = if which == "faer" {
                        faer_top(&stats.c, k)
                    } else {
                        nalgebra_top(&stats.c, k)
                    };
                    let eig = t.elapsed().as_secs_f64();
                    let ph = Phases {
                        gram: gram_ph.gram,
                        iterate: eig,
                        total: gram_ph.gram + eig,
                        ..Phases::default()
                    };
                    Ok(((dirs, vals), ph))
                });
                let mut row = row;
                match res {
                    Err(e) => {
                        row.status = "error".into();
                        row.note = e;
                    }
                    Ok(((dirs, vals), ph, runs)) => {
                        row.runs = runs;
                        row.times_s = ph;
                        row.gram_gflops = Some(gram_flops / gram_ph.gram / 1e9);
                        row.note = format!(
                            "C formed in {} (as laepca's CPU path), eigensolver in f64",
                            data.precision()
                        );
                        let trace = stats.c.trace();
                        let sigma: Vec<f64> = vals.iter().map(|v| v.max(0.0).sqrt()).collect();
                        let evr: Vec<f64> = vals.iter().map(|v| v / trace).collect();
                        row.accuracy = Some(accuracy(&dirs, &sigma, &evr, r));
                        row.singular_values = sigma;
                        row.explained_variance_ratio = evr;
                    }
                }
                row
            };
            cx.record_time(p, &row);
            emit_row(cx, &row);
            rows.push(row);
        }
    }
    cx.md.push('\n');

    let mut curves = Vec::new();
    if p.curves {
        let stats = data.gram(m);
        for &solver in &solvers {
            let t = Instant::now();
            let mut b = LaePca::new(k).solver(solver).backend(Backend::Cpu).seed(0);
            if let Some(l) = p.lambda {
                b = b.lambda(l);
            }
            if let Some(a) = p.alpha {
                b = b.alpha(a);
            }
            if let Some(tl) = p.tol {
                b = b.tol(tl);
            }
            let last = rows.iter().find(|row| {
                row.backend == "cpu" && row.solver == solver.name() && row.status == "ok"
            });
            match error_curve(data, &b, &stats, p.max_iter, r, last) {
                Ok(points) => {
                    println!(
                        "   error curve {:<13} {:>3} points up to {:>6} iterations ({:.1} s)",
                        solver.name(),
                        points.len(),
                        points.last().map_or(0, |q| q.iterations),
                        t.elapsed().as_secs_f64()
                    );
                    curves.push(Curve {
                        problem: p.name.clone(),
                        solver: solver.name().into(),
                        backend: "cpu".into(),
                        precision: data.precision().into(),
                        measure: "Σᵢ min‖uᵢ ± ûᵢ‖ (the paper's error)".into(),
                        points,
                    });
                }
                Err(e) => cx.notice(format!(
                    "{}: error curve of {} failed: {e}",
                    p.name,
                    solver.name()
                )),
            }
        }
    }

    let pj = ProblemJson {
        name: p.name.clone(),
        family: p.family.into(),
        n,
        m,
        k,
        gap: p.gap.as_ref().map(|g| g.1),
        gap_name: p.gap.as_ref().map(|g| g.0.clone()),
        precision: data.precision().into(),
        lambda: p.lambda,
        alpha: p.alpha,
        tol: p.tol,
        max_iter: p.max_iter,
        reference: r.how.clone(),
        reference_singular_values: r.sigma.clone(),
        reference_explained_variance_ratio: r.evr.clone(),
        gram_flops,
        note: p.note.clone(),
        rows,
    };
    (pj, curves)
}

/// The error of the fits stopped after 1, 2, 4, … iterations (each a prefix of the same run: same seed,
/// same λ and α), up to the iteration where the full run stops; each fit starts from the same C. The
/// last point is the benchmark row of the full run when there is one (its median loop time).
fn error_curve(
    data: &Data,
    b: &LaePca,
    stats: &GramStats,
    max_iter: usize,
    r: &Reference,
    full: Option<&Row>,
) -> Result<Vec<CurvePoint>, String> {
    let mut points = Vec::new();
    let mut cap = 1usize;
    let last = full.and_then(|row| Some((row.iterations?, row.accuracy?, row.times_s.iterate)));
    loop {
        if let Some((iterations, acc, loop_s)) = last {
            if cap >= iterations {
                points.push(CurvePoint {
                    iterations,
                    loop_s,
                    error: acc.direction_err,
                    angle: acc.angle,
                });
                break;
            }
        }
        let fit = || {
            data.fit_gram(&b.clone().max_iter(cap.min(max_iter)), stats)
                .map_err(|e| e.to_string())
        };
        let o = fit()?;
        // Fast fits are timed as the median of three (like the rows), so the points line up.
        let mut loop_s = vec![o.timings.iterate.as_secs_f64()];
        if loop_s[0] < 0.05 {
            for _ in 0..2 {
                loop_s.push(fit()?.timings.iterate.as_secs_f64());
            }
        }
        let acc = accuracy(&o.directions, &o.sigma, &o.evr, r);
        points.push(CurvePoint {
            iterations: o.iterations,
            loop_s: median(&loop_s),
            error: acc.direction_err,
            angle: acc.angle,
        });
        // Stopped before the cap (converged or stalled), or at max_iter: the run's end.
        if o.iterations < cap || cap >= max_iter {
            break;
        }
        cap *= 2;
    }
    Ok(points)
}

fn faer_top(c: &DMatrix<f64>, k: usize) -> (DMatrix<f64>, Vec<f64>) {
    let m = c.nrows();
    let a = faer::Mat::<f64>::from_fn(m, m, |i, j| c[(i, j)]);
    let eig = a
        .self_adjoint_eigen(faer::Side::Lower)
        .expect("faer's eigendecomposition");
    let (s, u) = (eig.S().column_vector(), eig.U());
    // Ascending order: the top k are the last k.
    let vals = (0..k).map(|j| s[m - 1 - j]).collect();
    let dirs = DMatrix::from_fn(m, k, |i, j| u[(i, m - 1 - j)]);
    (dirs, vals)
}

fn nalgebra_top(c: &DMatrix<f64>, k: usize) -> (DMatrix<f64>, Vec<f64>) {
    let (vals, vecs) = common::reference_eigen(c, k);
    (vecs, vals)
}

// ----------------------------------------------------------------------------------------------------
// Output

const COLUMNS: [(&str, usize); 20] = [
    ("row", 19),
    ("prec", 4),
    ("iters", 6),
    ("stop", 5),
    ("upload", 8),
    ("gram", 8),
    ("setup", 8),
    ("iterate", 8),
    ("readback", 8),
    ("finish", 8),
    ("other", 8),
    ("total", 8),
    ("Gram GF/s", 9),
    ("µs/iter", 9),
    ("MB/iter", 8),
    ("GB/s", 7),
    ("angle", 8),
    ("sv err", 8),
    ("evr err", 8),
    ("gpu/cpu tot|it", 14),
];

fn table_header(md: bool) -> String {
    if md {
        let cells: Vec<&str> = COLUMNS.iter().map(|c| c.0).collect();
        format!("| {} |", cells.join(" | "))
    } else {
        COLUMNS
            .iter()
            .map(|(h, w)| format!("{h:>w$}", w = *w))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn table_rule() -> String {
    format!("|{}", "---|".repeat(COLUMNS.len()))
}

fn fmt_time(s: f64) -> String {
    if s == 0.0 {
        "-".into()
    } else if s < 1e-3 {
        format!("{:.1}µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.2}ms", s * 1e3)
    } else {
        format!("{s:.2}s")
    }
}

/// A ratio with about three significant digits.
fn ratio(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn fmt_opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or("-".into(), f)
}

fn row_cells(r: &Row) -> Vec<String> {
    let mut cells = vec![r.name.clone(), r.precision.clone()];
    if r.status != "ok" {
        cells.push(format!("{}: {}", r.status, r.note));
        return cells;
    }
    let t = &r.times_s;
    let stop = match (r.converged, r.stalled, r.iterations, r.max_iter) {
        (Some(true), _, _, _) => "conv",
        (_, Some(true), _, _) => "stall",
        (Some(false), _, Some(i), Some(mx)) if i >= mx => "cap",
        (None, _, _, _) => "-",
        _ => "no",
    };
    cells.extend([
        r.iterations.map_or("-".into(), |i| i.to_string()),
        stop.into(),
        fmt_time(t.upload),
        fmt_time(t.gram),
        fmt_time(t.setup),
        fmt_time(t.iterate),
        fmt_time(t.readback),
        fmt_time(t.finish),
        fmt_time(t.other),
        fmt_time(t.total),
        fmt_opt(r.gram_gflops, |v| match r.gram_peak_pct {
            Some(p) => format!("{v:.1} ({p:.0}%)"),
            None => format!("{v:.2}"),
        }),
        fmt_opt(r.iter_us, |v| format!("{v:.1}")),
        fmt_opt(r.bytes_per_iter, |v| format!("{:.2}", v / 1e6)),
        fmt_opt(r.achieved_gbs, |v| match r.bandwidth_pct {
            Some(p) => format!("{v:.0} ({p:.0}%)"),
            None => format!("{v:.1}"),
        }),
        fmt_opt(r.accuracy.map(|a| a.angle), |v| format!("{v:.1e}")),
        fmt_opt(r.accuracy.map(|a| a.sv_rel_err), |v| format!("{v:.1e}")),
        fmt_opt(r.accuracy.map(|a| a.evr_rel_err), |v| format!("{v:.1e}")),
        match (r.gpu_cpu_total, r.gpu_cpu_iter) {
            (Some(t), Some(i)) => format!("{}|{}", ratio(t), ratio(i)),
            (Some(t), None) => ratio(t),
            _ => "-".into(),
        },
    ]);
    cells
}

fn emit_row(cx: &mut Ctx, r: &Row) {
    let cells = row_cells(r);
    let text: Vec<String> = cells
        .iter()
        .zip(COLUMNS.iter())
        .map(|(c, (_, w))| format!("{c:>w$}", w = *w))
        .chain(cells.iter().skip(COLUMNS.len()).cloned())
        .collect();
    // A skipped or failed row's reason is one long cell: print it as it comes.
    if r.status == "ok" {
        println!("{}", text.join(" "));
    } else {
        println!("{:>19} {:>4} {}", cells[0], cells[1], cells[2]);
    }
    let _ = std::io::stdout().flush();
    let mut md_cells = cells.clone();
    md_cells.resize(COLUMNS.len(), String::new());
    cx.md.push_str(&format!(
        "| {} |\n",
        md_cells.join(" | ").replace('\n', " ")
    ));
}

/// The issue's performance expectations, measured where this run has the numbers.
fn expectations(problems: &[ProblemJson], adapter: &Option<AdapterJson>) -> String {
    let mut out = String::new();
    if let Some(p) = problems.iter().find(|p| p.family == "fashion") {
        let default = Solver::default();
        let cpu = p
            .rows
            .iter()
            .find(|r| r.backend == "cpu" && r.solver == default.name() && r.status == "ok");
        if let Some(r) = cpu {
            out.push_str(&format!(
                "- {}: laepca CPU ({}, {}) total {}, explained-variance-ratio error {:.1e} against the f64 reference (scikit-learn's float32 covariance_eigh: about 2e-4; scripts/sklearn_compare.py times it).\n",
                p.name,
                r.solver,
                r.precision,
                fmt_time(r.times_s.total),
                r.accuracy.map_or(f64::NAN, |a| a.evr_rel_err)
            ));
        }
    }
    if let Some(a) = adapter {
        let biggest = problems
            .iter()
            .filter(|p| p.family == "size-sweep")
            .filter(|p| {
                p.rows
                    .iter()
                    .any(|r| r.backend == "gpu" && r.status == "ok")
            })
            .max_by_key(|p| p.m);
        if let Some(p) = biggest {
            for r in p
                .rows
                .iter()
                .filter(|r| r.backend == "gpu" && r.status == "ok")
            {
                if r.solver == Solver::default().name() || r.solver == "tied" {
                    out.push_str(&format!(
                        "- GPU {} at m = {} ({}): Gram {} GFLOP/s{}; loop {} µs/iteration{}.\n",
                        r.solver,
                        p.m,
                        p.name,
                        fmt_opt(r.gram_gflops, |v| format!("{v:.0}")),
                        r.gram_peak_pct
                            .map_or(" (FP32 peak unknown)".into(), |v| format!(
                                " = {v:.1}% of FP32 peak (expected ≥ 25%)"
                            )),
                        fmt_opt(r.iter_us, |v| format!("{v:.1}")),
                        r.iter_over_c_read
                            .map_or(" (bandwidth unknown)".into(), |v| format!(
                                " = {v:.2}x the time to read C once (expected ≤ 2x)"
                            )),
                    ));
                }
            }
        }
        if a.software {
            out.push_str("- The adapter is a software rasteriser (lavapipe/llvmpipe): its GPU rows check correctness, not speed.\n");
        }
    }
    out
}

// ----------------------------------------------------------------------------------------------------
// Plots

type PlotResult<T> = Result<T, Box<dyn std::error::Error>>;

fn log_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite() && *v > 0.0) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (1e-3, 1.0);
    }
    (lo / 1.5, hi * 1.5)
}

fn plot_curves(path: &Path, title: &str, curves: &[&Curve]) -> PlotResult<()> {
    let root = SVGBackend::new(path, (1400, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 16))?;
    let (left, right) = root.split_horizontally(700);
    let floor = 1e-16;
    let err = |p: &CurvePoint| p.error.max(floor);
    let (ylo, yhi) = log_range(curves.iter().flat_map(|c| c.points.iter().map(err)));
    for (area, by_time) in [(left, false), (right, true)] {
        let xs = |p: &CurvePoint| {
            if by_time {
                p.loop_s.max(1e-7)
            } else {
                p.iterations.max(1) as f64
            }
        };
        let (xlo, xhi) = log_range(curves.iter().flat_map(|c| c.points.iter().map(xs)));
        let mut chart = ChartBuilder::on(&area)
            .caption(
                if by_time {
                    "error against loop time (s)"
                } else {
                    "error against iterations"
                },
                ("sans-serif", 15),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((xlo..xhi).log_scale(), (ylo..yhi).log_scale())?;
        chart
            .configure_mesh()
            .x_desc(if by_time {
                "loop time of the prefix fit (s)"
            } else {
                "iterations"
            })
            .y_desc("error")
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .x_label_formatter(&|v| {
                if by_time {
                    format!("{v:.0e}")
                } else {
                    format!("{v:.0}")
                }
            })
            .draw()?;
        for (i, c) in curves.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let pts: Vec<(f64, f64)> = c.points.iter().map(|p| (xs(p), err(p))).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
                .label(c.solver.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart.draw_series(PointSeries::of_element(
                pts,
                3,
                color.filled(),
                &|c, s, st| EmptyElement::at(c) + Circle::new((0, 0), s, st),
            ))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerLeft)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// Total time against m on the size sweep, one panel per gap, a line per row.
fn plot_time_vs_m(path: &Path, problems: &[ProblemJson], plan: &Plan) -> PlotResult<bool> {
    let sweep: Vec<&ProblemJson> = problems
        .iter()
        .filter(|p| p.family == "size-sweep")
        .collect();
    if sweep.len() < 2 {
        return Ok(false);
    }
    let root = SVGBackend::new(path, (1400, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!(
            "total time of a fit (median) against m: n = 4m, k = {}, f32 data (C in f64 for the eigensolvers)",
            plan.size_k
        ),
        ("sans-serif", 16),
    )?;
    let areas = root.split_evenly((1, plan.gaps.len().max(1)));
    let (mlo, mhi) = log_range(sweep.iter().map(|p| p.m as f64));
    let (tlo, thi) = log_range(sweep.iter().flat_map(|p| {
        p.rows
            .iter()
            .filter(|r| r.status == "ok")
            .map(|r| r.times_s.total)
    }));
    let mut names: Vec<String> = Vec::new();
    for p in &sweep {
        for r in &p.rows {
            if !names.contains(&r.name) {
                names.push(r.name.clone());
            }
        }
    }
    for (area, (gname, g)) in areas.iter().zip(&plan.gaps) {
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("{gname} gap (σ_(k+1)/σ_k = {g})"),
                ("sans-serif", 15),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((mlo..mhi).log_scale(), (tlo..thi).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("m (features)")
            .y_desc("total time (s)")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .draw()?;
        for name in &names {
            let pts: Vec<(f64, f64)> = sweep
                .iter()
                .filter(|p| p.gap_name.as_deref() == Some(gname.as_str()))
                .filter_map(|p| {
                    p.rows
                        .iter()
                        .find(|r| &r.name == name && r.status == "ok")
                        .map(|r| (p.m as f64, r.times_s.total))
                })
                .collect();
            if pts.is_empty() {
                continue;
            }
            // A colour per solver (the same on the CPU and the GPU); GPU rows thick with triangles,
            // the eigensolvers black and grey.
            let solver = name.split_once(' ').map_or("", |s| s.1);
            let gpu = name.starts_with("gpu ");
            let color = match name.as_str() {
                "faer eigh" => BLACK.to_rgba(),
                "nalgebra eigh" => RGBColor(130, 130, 130).to_rgba(),
                _ => Palette99::pick(plan.solvers.iter().position(|s| s == solver).unwrap_or(0))
                    .to_rgba(),
            };
            let style = color.stroke_width(if gpu || name.ends_with("eigh") { 3 } else { 1 });
            chart
                .draw_series(LineSeries::new(pts.clone(), style))?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            if gpu {
                chart.draw_series(PointSeries::of_element(
                    pts,
                    5,
                    color.filled(),
                    &|c, s, st| EmptyElement::at(c) + TriangleMarker::new((0, 0), s, st),
                ))?;
            } else {
                chart.draw_series(PointSeries::of_element(
                    pts,
                    3,
                    color.filled(),
                    &|c, s, st| EmptyElement::at(c) + Circle::new((0, 0), s, st),
                ))?;
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
    }
    root.present()?;
    Ok(true)
}
