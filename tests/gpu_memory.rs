//! Resident memory of a GPU loop stays bounded (its own test binary: nothing else runs in this process
//! while it measures). Mesa's lavapipe used to grow ~0.8 MB per iteration at m = 256 (a new
//! shader variant per dispatch of a kernel whose loop bound came from a uniform buffer; see
//! src/gpu/kernels.rs), 3.1 GB after 4000 iterations.

mod common;

use common::{have_gpu, resident};
use laepca::synthetic::{geometric_spectrum, prescribed_spectrum};
use laepca::{Backend, GpuDevice, LaePca, Solver};

#[test]
fn gpu_loop_memory_is_bounded() {
    if !have_gpu() {
        return;
    }
    let Some((before, _)) = resident() else {
        eprintln!("no /proc/self/status: skipping");
        return;
    };
    // m = 256, a flat spectrum: the tied loop runs all its iterations without converging.
    let m = 256;
    let x = prescribed_spectrum(2 * m, m, &geometric_spectrum(m, 10.0, 0.9995), 1.0, 1)
        .x
        .map(|v| v as f32);
    let device = GpuDevice::open(None).unwrap();
    let model = |iterations| {
        LaePca::new(8)
            .solver(Solver::Tied)
            .tol(1e-30)
            .max_iter(iterations)
            .check_every(100)
            .backend(Backend::Gpu)
            .device(device.clone())
    };
    // A short fit first compiles the kernels and fills the allocator's pools.
    model(100).fit(&x).unwrap();
    let (warm, _) = resident().unwrap();
    // 400 iterations (lavapipe runs ~20-40 ms per iteration at m = 256): the leak would add 320 MB.
    let iterations = 400;
    let fit = model(iterations).fit(&x).unwrap();
    let (after, peak) = resident().unwrap();
    assert_eq!(
        fit.iterations, iterations,
        "the loop must run all its iterations"
    );
    let mb = |b: u64| b as f64 / (1u64 << 20) as f64;
    eprintln!(
        "resident memory: {:.0} MB at start, {:.0} MB after the warm-up fit, {:.0} MB after {iterations} \
         iterations (peak {:.0} MB)",
        mb(before),
        mb(warm),
        mb(after),
        mb(peak)
    );
    // 32 MB of growth is 80 kB per iteration, a tenth of the leak's rate.
    assert!(
        after.saturating_sub(warm) < 32 << 20,
        "resident memory grew by {:.0} MB over {iterations} iterations",
        mb(after.saturating_sub(warm))
    );
    assert!(peak < 400 << 20, "peak resident memory {:.0} MB", mb(peak));
}
