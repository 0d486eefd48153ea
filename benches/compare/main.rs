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
//!
//! The modules: `args` (options and the plan), `adapter` (the GPU), `problems` (data and references),
//! `measure` (accuracy and phase times), `run` (a problem's laepca and eigensolver rows), `passes`
//! (passes over C: per-pass errors and the reference LOBPCG), `table` (the printed and markdown tables),
//! `plot` (SVG plots), `report` (the JSON records).

#[path = "../../tests/common/mod.rs"]
mod common;
#[cfg(unix)]
#[path = "../common/openblas.rs"]
mod openblas;

mod adapter;
mod args;
mod measure;
mod passes;
mod plot;
mod problems;
mod report;
mod run;
mod table;

use adapter::{probe_adapter, slug, AdapterJson};
use args::{make_plan, parse_args, Args};
use laepca::{GpuDevice, Solver};
use report::Report;
use run::{run_problem, Ctx};
use std::collections::HashMap;
use std::time::Instant;
use table::expectations;

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
    if wanted("paper") {
        let case = problems::paper(&args);
        let (pj, c) = run_problem(&mut cx, &case);
        problems.push(pj);
        curves.extend(c);
    }
    for spec in problems::spectrum_specs(&plan) {
        if wanted(&spec.name()) {
            let (pj, _) = run_problem(&mut cx, &problems::spectrum(&spec, &plan));
            problems.push(pj);
        }
    }
    if wanted("fashion-mnist") {
        if args.fashion.exists() {
            let case = problems::fashion(&args, &plan)?;
            let (pj, c) = run_problem(&mut cx, &case);
            problems.push(pj);
            curves.extend(c);
        } else {
            cx.notice(format!(
                "Fashion-MNIST skipped: {} not found (install the Debian package dataset-fashion-mnist, or pass --fashion FILE)",
                args.fashion.display()
            ));
        }
    }
    let plots = if args.plots {
        plot::draw_all(&mut cx, &curves, &problems)
    } else {
        Vec::new()
    };

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
