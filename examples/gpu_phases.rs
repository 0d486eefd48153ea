//! Phase timings of one fit on the GPU and on the CPU, and their agreement:
//! `cargo run --release --example gpu_phases -- N M K [SOLVER] [profile]` (default 20000 512 16
//! exact-tied). With `profile`, the GPU fit runs once more with each kernel timed
//! (`LaePca::profile_kernels`) and prints the loop's kernels by GPU time.

use laepca::synthetic::{geometric_spectrum, prescribed_spectrum};
use laepca::{Backend, LaePca, Solver};

/// Dispatches and submissions per iteration in a steady block of the loop.
fn per_iteration(s: &laepca::LoopStats) -> String {
    match s.steady_block {
        Some(b) => format!(
            "{:.1} dispatches, {:.2} submissions, {} buffers and {} bind groups created per block",
            b.dispatches as f64 / s.block_iterations as f64,
            b.submissions as f64 / s.block_iterations as f64,
            b.buffers_created,
            b.bind_groups_created
        ),
        None => "fewer than three blocks".to_string(),
    }
}

fn main() -> Result<(), laepca::Error> {
    let profile = std::env::args().any(|a| a == "profile");
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "profile")
        .collect();
    let num = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (n, m, k) = (num(0, 20000), num(1, 512), num(2, 16));
    let solver: Solver = args
        .get(3)
        .map_or(Ok(Solver::ExactTied), |s| s.parse())
        .unwrap();
    let t = std::time::Instant::now();
    // Rank at most 256 keeps the generator cheap for large problems.
    let r = m.min(n - 1).min(256);
    let x = prescribed_spectrum(n, m, &geometric_spectrum(r, 1000.0, 0.97), 5.0, 1)
        .x
        .map(|v| v as f32);
    println!(
        "problem: n = {n}, m = {m}, k = {k}, rank {r}, σ_i = 1000·0.97^i, solver {solver} (generated in {:.1?})",
        t.elapsed()
    );
    let mut fits = Vec::new();
    for backend in [Backend::Gpu, Backend::Cpu] {
        let fit = LaePca::new(k).solver(solver).backend(backend).fit(&x)?;
        let tm = &fit.timings;
        println!(
            "{:<4} {:<40} iters {:>5} conv {} stalled {} | upload {:>9.2?} gram {:>9.2?} setup {:>9.2?} loop {:>9.2?} readback {:>9.2?} finish {:>9.2?} total {:>9.2?} | loop submissions {} host waits {} | per iteration (steady): {}",
            fit.backend.name(),
            fit.adapter.as_ref().map_or("cpu".to_string(), |a| format!("{} ({})", a.name, a.backend)),
            fit.iterations,
            fit.converged,
            fit.stalled,
            tm.upload,
            tm.gram,
            tm.setup,
            tm.iterate,
            tm.readback,
            tm.finish,
            tm.total,
            fit.loop_stats.total.submissions,
            fit.loop_stats.total.host_waits,
            per_iteration(&fit.loop_stats)
        );
        fits.push(fit);
    }
    if profile {
        let fit = LaePca::new(k)
            .solver(solver)
            .backend(Backend::Gpu)
            .profile_kernels(true)
            .fit(&x)?;
        let total: std::time::Duration = fit.kernel_profile.iter().map(|t| t.time).sum();
        let iterations = fit.iterations.max(1) as f64;
        println!(
            "kernel profile (one pass per dispatch): {} iterations, {:.2?} GPU time in all, {:.1} µs \
             per iteration; the same bits as the fit above: {}",
            fit.iterations,
            total,
            total.as_secs_f64() * 1e6 / iterations,
            fit.decoder == fits[0].decoder
        );
        for t in &fit.kernel_profile {
            println!(
                "  {:<24} {:>7} dispatches {:>10.2?} ({:>5.1}%, {:>8.2} µs per dispatch, {:>8.2} µs per iteration)",
                t.kernel,
                t.dispatches,
                t.time,
                100.0 * t.time.as_secs_f64() / total.as_secs_f64().max(1e-12),
                t.time.as_secs_f64() * 1e6 / t.dispatches.max(1) as f64,
                t.time.as_secs_f64() * 1e6 / iterations
            );
        }
    }
    let (g, c) = (&fits[0], &fits[1]);
    let (gu, cu) = (
        g.components.map(|v| v as f64),
        c.components.map(|v| v as f64),
    );
    // Largest principal angle: asin ‖(I − CCᵀ) G‖₂ with orthonormal rows.
    let resid = gu.transpose() - cu.transpose() * (&cu * gu.transpose());
    let angle = resid.singular_values().max().min(1.0).asin();
    let sv = (0..k)
        .map(|i| ((g.singular_values[i] - c.singular_values[i]) / c.singular_values[i]).abs())
        .fold(0f32, f32::max);
    println!("GPU vs CPU: largest principal angle {angle:.2e} rad, largest singular-value relative difference {sv:.2e}");
    Ok(())
}
