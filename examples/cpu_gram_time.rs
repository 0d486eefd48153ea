//! Wall-clock time of the CPU Gram phase on a data file held in memory (read through `laepca::io`,
//! samples in rows), against faer's triangular kernel alone on the same blocks (no copy, shift or f64
//! sum): `cargo run --release --example cpu_gram_time -- FILE [REPS]`. `BLOCK` sets the kernel-only
//! block rows (2048, as `laepca::data::GRAM_BLOCK`); `RAYON_NUM_THREADS` the threads. Each line also gives
//! the calling thread's CPU time: the serial part of the phase (the kernels run on rayon's workers).

use laepca::GramAccumulator;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().ok_or("FILE [REPS]")?;
    let reps: usize = args.get(1).map_or(Ok(3), |s| s.parse())?;
    let x = laepca::io::read_matrix::<f32>(path)?;
    let (n, m) = (x.rows, x.cols);
    let flops = (n * m * (m + 1)) as f64;
    for rep in 0..reps {
        let (s, cpu, c00) = timed(|| -> laepca::Result<f64> {
            let mut acc = GramAccumulator::new(m, true)?;
            acc.push_rows(&x.data)?;
            Ok(acc.finish()?.c[(0, 0)])
        });
        println!(
            "gram phase, rep {rep}: {n} x {m}: {s:.3} s wall, {cpu:.3} s on the calling thread, \
             {:.1} GFLOP/s (triangle), C[0,0] = {:.6e}",
            flops / s / 1e9,
            c00?
        );
    }
    let block: usize = std::env::var("BLOCK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(laepca::data::GRAM_BLOCK);
    let mut out = vec![0f32; m * m];
    for rep in 0..reps {
        let (s, cpu, ()) = timed(|| {
            for rows in x.data.chunks(block * m) {
                lower_gram(&mut out, rows, m);
            }
        });
        println!(
            "kernel only, blocks of {block}, rep {rep}: {s:.3} s wall, {cpu:.3} s on the calling \
             thread, {:.1} GFLOP/s (triangle)",
            flops / s / 1e9
        );
    }
    Ok(())
}

/// `f()`'s wall time and the calling thread's CPU time (seconds), and its value.
fn timed<R>(f: impl FnOnce() -> R) -> (f64, f64, R) {
    let cpu0 = thread_cpu_ns();
    let t = Instant::now();
    let r = f();
    let wall = t.elapsed().as_secs_f64();
    (wall, (thread_cpu_ns() - cpu0) as f64 * 1e-9, r)
}

/// CPU time of the calling thread so far (Linux: /proc/thread-self/schedstat, nanoseconds on a CPU;
/// 0 elsewhere).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The lower triangle of `rowsᵀ rows` (rows: row-major, m columns) into `out` (m x m column-major),
/// as laepca's CPU Gram does it.
fn lower_gram(out: &mut [f32], rows: &[f32], m: usize) {
    use faer::linalg::matmul::triangular::{matmul, BlockStructure};
    let bt = faer::MatRef::from_column_major_slice(rows, m, rows.len() / m);
    matmul(
        faer::MatMut::from_column_major_slice_mut(out, m, m),
        BlockStructure::TriangularLower,
        faer::Accum::Replace,
        bt,
        BlockStructure::Rectangular,
        bt.transpose(),
        BlockStructure::Rectangular,
        1.0f32,
        faer::Par::rayon(0),
    );
}
