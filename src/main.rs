//! The `laepca` command-line tool.
#![allow(clippy::needless_range_loop)] // index loops over several arrays read clearer

use laepca::synthetic::{geometric_spectrum, prescribed_spectrum};
use laepca::{Backend, LaePca};
use std::process::ExitCode;

const USAGE: &str = "usage: laepca demo\n\n  demo    fit a dataset with a known spectrum and print the errors of the answer";

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => demo(),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Fits 4000 samples of 200 features whose centred singular values are known, on each backend, and
/// prints how far the answer is from the truth.
fn demo() -> ExitCode {
    let (n, m, k) = (4000, 200, 10);
    let sigma = geometric_spectrum(m, 100.0, 0.85);
    println!(
        "laepca demo: {n} samples x {m} features, k = {k}, singular values 100 * 0.85^i (known)"
    );
    let data = prescribed_spectrum(n, m, &sigma, 10.0, 2026);
    let x32 = data.x.map(|v| v as f32);
    println!(
        "{:<8} {:<12} {:>14} {:>16} {:>10} {:>10}",
        "backend", "solver", "max angle", "max rel σ err", "iters", "time"
    );
    let mut status = ExitCode::SUCCESS;
    for backend in [Backend::Gpu, Backend::Cpu] {
        let fit = match LaePca::new(k).backend(backend).fit(&x32) {
            Ok(fit) => fit,
            Err(e) => {
                println!("{:<8} skipped: {e}", backend.name());
                continue;
            }
        };
        let mut max_angle: f64 = 0.0;
        let mut max_err: f64 = 0.0;
        for i in 0..k {
            let u = fit.components.row(i);
            let cos: f64 = (0..m).map(|j| u[j] as f64 * data.directions[(j, i)]).sum();
            max_angle = max_angle.max(cos.abs().min(1.0).acos());
            max_err = max_err.max((fit.singular_values[i] as f64 - sigma[i]).abs() / sigma[i]);
        }
        println!(
            "{:<8} {:<12} {:>14.2e} {:>16.2e} {:>10} {:>9.1?}",
            fit.backend.name(),
            fit.solver.name(),
            max_angle,
            max_err,
            fit.iterations,
            fit.timings.total
        );
        if max_angle > 1e-2 || !fit.converged && !fit.stalled {
            status = ExitCode::FAILURE;
        }
    }
    status
}
