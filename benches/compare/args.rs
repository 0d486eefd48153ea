//! Options: the command line and the plan it resolves to.

use crate::adapter::AdapterJson;
use laepca::Solver;
use serde::Serialize;
use std::path::PathBuf;

pub const DEFAULT_FASHION: &str = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";

pub const HELP: &str = "\
laepca benchmark: laepca GPU/CPU for every solver against faer and nalgebra eigensolvers.

USAGE: cargo bench --bench compare -- [OPTIONS]     (or the built binary target/release/deps/compare-*)

OPTIONS:
  --quick               small sizes (about a minute and a half on 2 cores with lavapipe); what CI runs
  --out DIR             where results.json, results.md and the SVG plots go [target/laepca-bench]
  --markdown FILE       also write the markdown report to FILE
  --fashion FILE        Fashion-MNIST train-images-idx3-ubyte.gz [$LAEPCA_FASHION_MNIST, else
                        /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz]
  --max-m M|adapter     largest m of the size sweep [4096; quick 128]; `adapter`: the largest C of one GPU binding
  --runs N              timed runs per row after the warm-up, median reported [3; quick 2]
  --budget S            skip a row at the next size of the sweep when its predicted time (scaled by m^3
                        from the last size) exceeds S seconds [60; quick: none]
  --only TEXT[,TEXT]    only problems whose name contains one of the texts (e.g. paper, fashion, m=512)
  --solvers LIST        comma-separated solver names, or `default` (the builder's default solver) [all]
  --no-gpu              no GPU rows
  --no-eigen            no faer / nalgebra rows
  --no-plots            no error curves and no SVG plots
  --per-pass            the error after each pass over C for every CPU solver row (fits capped at 1, 2, …
                        iterations, up to 64 of them; 32 in quick mode) on every problem [quick: m <= 64]
  --no-per-pass         no per-pass errors for the solver rows (the LOBPCG row always has them)
  --peak-gflops G       the GPU's FP32 peak (GFLOP/s), for the Gram %peak column [known cards]
  --bandwidth-gbs B     the GPU's memory bandwidth (GB/s), for the loop %BW column [known cards]
  --cpu-bandwidth-gbs B the host's memory bandwidth (GB/s), for the CPU rows' %BW column
  --print-adapter       print the GPU adapter a fit would use (a file-name slug) and exit
  --help                this text
";

#[derive(Clone, Debug)]
pub struct Args {
    pub quick: bool,
    pub out: PathBuf,
    pub markdown: Option<PathBuf>,
    pub fashion: PathBuf,
    pub max_m: Option<MaxM>,
    pub runs: Option<usize>,
    pub budget: Option<f64>,
    pub only: Vec<String>,
    pub solvers: Option<Vec<Solver>>,
    pub gpu: bool,
    pub eigen: bool,
    pub plots: bool,
    /// Some(true): per-pass errors everywhere; Some(false): nowhere; None: the mode's default.
    pub per_pass: Option<bool>,
    pub peak_gflops: Option<f64>,
    pub bandwidth_gbs: Option<f64>,
    pub cpu_bandwidth_gbs: Option<f64>,
    pub print_adapter: bool,
}

#[derive(Clone, Copy, Debug)]
pub enum MaxM {
    Value(usize),
    Adapter,
}

pub fn parse_args() -> Result<Args, String> {
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
        per_pass: None,
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
            "--per-pass" => a.per_pass = Some(true),
            "--no-per-pass" => a.per_pass = Some(false),
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
pub struct Plan {
    pub quick: bool,
    /// Timed runs after the warm-up.
    pub runs: usize,
    /// A warm-up slower than this is the row's only run.
    pub slow_s: f64,
    /// Predicted seconds above which a row is skipped at the next size.
    pub budget_s: f64,
    pub sizes: Vec<usize>,
    pub size_k: usize,
    pub ksweep_m: usize,
    pub ksweep_ks: Vec<usize>,
    pub gaps: Vec<(String, f64)>,
    pub fashion_rows: Option<usize>,
    pub fashion_max_iter: usize,
    pub fashion_curves: bool,
    /// The per-pass errors of the solver rows on problems with m up to this.
    pub per_pass_max_m: usize,
    /// At most this many capped fits per row for the per-pass errors.
    pub per_pass_max_fits: usize,
    /// The reference LOBPCG's passes.
    pub lobpcg_passes: usize,
    pub prescribed_max_iter: usize,
    pub gpu_max_m: usize,
    pub gpu_max_k: usize,
    pub gpu_max_iter: usize,
    pub solvers: Vec<String>,
}

pub fn make_plan(args: &Args, adapter: &Option<AdapterJson>, solvers: &[Solver]) -> Plan {
    let q = args.quick;
    let software = adapter.as_ref().is_some_and(|a| a.software);
    // `--max-m adapter`: up to the largest C that fits one storage binding (the GPU splits a larger
    // one into row panels, up to `max_features`, but the sweep's data, 4m samples, would exceed any
    // host's memory long before that).
    let adapter_max = adapter.as_ref().map_or(usize::MAX, |a| {
        let bytes = a.max_storage_buffer_binding_size.min(a.max_buffer_size);
        let one_binding = ((bytes / 4) as f64).sqrt() as usize / 4 * 4;
        one_binding.min(a.max_features)
    });
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
        per_pass_max_m: match args.per_pass {
            Some(true) => usize::MAX,
            Some(false) => 0,
            None if q => 64,
            None => 0,
        },
        per_pass_max_fits: if q { 32 } else { 64 },
        lobpcg_passes: if q { 40 } else { 60 },
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
