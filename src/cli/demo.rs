//! `laepca demo`: a dataset with a known spectrum, fitted on each backend, with the errors of the answer.

use super::{print_out, Failure};
use laepca::synthetic::{geometric_spectrum, prescribed_spectrum};
use laepca::{Backend, LaePca};
use std::process::ExitCode;

/// Fits 4000 samples of 200 features whose centred singular values are known, on each backend, and
/// prints how far the answer is from the truth. Fails (exit 1) when an answer is off.
#[allow(clippy::needless_range_loop)] // i indexes the fit, the truth and sigma together
pub fn run() -> Result<ExitCode, Failure> {
    let (n, m, k) = (4000, 200, 10);
    let sigma = geometric_spectrum(m, 100.0, 0.85);
    print_out(&format!(
        "laepca demo: {n} samples x {m} features, k = {k}, singular values 100 * 0.85^i (known)\n"
    ));
    let data = prescribed_spectrum(n, m, &sigma, 10.0, 2026);
    let x32 = data.x.map(|v| v as f32);
    print_out(&format!(
        "{:<8} {:<12} {:>14} {:>16} {:>10} {:>10}\n",
        "backend", "solver", "max angle", "max rel σ err", "iters", "time"
    ));
    let mut status = ExitCode::SUCCESS;
    for backend in [Backend::Gpu, Backend::Cpu] {
        let fit = match LaePca::new(k).backend(backend).fit(&x32) {
            Ok(fit) => fit,
            Err(e) => {
                print_out(&format!("{:<8} skipped: {e}\n", backend.name()));
                continue;
            }
        };
        let mut max_angle: f64 = 0.0;
        let mut max_err: f64 = 0.0;
        for i in 0..k {
            let u = fit.components.row(i);
            let cos: f64 = u
                .iter()
                .enumerate()
                .map(|(j, &v)| v as f64 * data.directions[(j, i)])
                .sum();
            max_angle = max_angle.max(cos.abs().min(1.0).acos());
            max_err = max_err.max((fit.singular_values[i] as f64 - sigma[i]).abs() / sigma[i]);
        }
        print_out(&format!(
            "{:<8} {:<12} {:>14.2e} {:>16.2e} {:>10} {:>9.1?}\n",
            fit.backend.name(),
            fit.solver.name(),
            max_angle,
            max_err,
            fit.iterations,
            fit.timings.total
        ));
        if max_angle > 1e-2 || !fit.converged && !fit.stalled {
            status = ExitCode::FAILURE;
        }
    }
    Ok(status)
}
