//! Wall-clock time of the Gram phase alone on the GPU (accumulation from rows in host memory, then C
//! read back): `cargo run --release --example gram_time -- N M [CHUNK_ROWS] [host]` (default 100000
//! 4096, pushed 8192 rows at a time as the file readers do). With `host`, the chunks are copied to the
//! device but no kernel runs: the host's side alone. The data are cheap pseudo-random values.

use laepca::{GpuDevice, GramAccumulator};
use std::time::Instant;

fn main() -> Result<(), laepca::Error> {
    let host_only = std::env::args().any(|a| a == "host");
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| a != "host")
        .map(|s| s.parse().expect("N M [CHUNK_ROWS] [host]"))
        .collect();
    let (n, m) = (
        *args.first().unwrap_or(&100_000),
        *args.get(1).unwrap_or(&4096),
    );
    let chunk = *args.get(2).unwrap_or(&8192);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let data: Vec<f32> = (0..n * m)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32 + 3.0
        })
        .collect();
    let device = GpuDevice::open(None)?;
    println!(
        "n = {n}, m = {m}, {chunk} rows per push, on {}{}",
        device.info().name,
        if host_only {
            ", no kernels (host side only)"
        } else {
            ""
        }
    );
    for run in 0..2 {
        let t = Instant::now();
        let mut acc = GramAccumulator::on_device(&device, m, true)?;
        if host_only {
            laepca::internals::gram_host_side_only(&mut acc);
        }
        for rows in data.chunks(chunk * m) {
            acc.push_rows(rows)?;
        }
        let pushed = t.elapsed();
        let acc_stats = acc.gpu_stats().unwrap_or_default();
        let stats = acc.finish()?;
        let gpu = acc_stats;
        // The triangle's flops: n · m(m + 1) / 2 entries, a multiply and an add each.
        let tflops = (n * m * (m + 1)) as f64 / t.elapsed().as_secs_f64() / 1e12;
        println!(
            "run {run}: push {:.3} s, finish {:.3} s, total {:.3} s ({tflops:.3} TFLOP/s on the \
             triangle, C[0,0] = {:.4e}); {} chunk submissions, {} host waits, {} dispatches",
            pushed.as_secs_f64(),
            (t.elapsed() - pushed).as_secs_f64(),
            t.elapsed().as_secs_f64(),
            stats.c[(0, 0)],
            gpu.submissions,
            gpu.host_waits,
            gpu.dispatches
        );
    }
    Ok(())
}
