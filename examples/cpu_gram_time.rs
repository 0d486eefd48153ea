//! Wall-clock time of the CPU Gram phase on a data file held in memory (read through `laepca::io`,
//! samples in rows), against laepca's Gram block kernel alone on the same blocks (no copy, shift or
//! f64 sum) and, when `OPENBLAS` names an OpenBLAS library (see benches/gram_kernels.rs), against
//! OpenBLAS's sgemm and ssyrk of the whole XᵀX (numpy's `X.T @ X`, so scikit-learn's
//! `covariance_eigh`, calls ssyrk), interleaved
//! rep by rep: `cargo run --release --example cpu_gram_time -- FILE [REPS]`. `BLOCK` sets the
//! kernel-only block rows (2048, as `laepca::data::GRAM_BLOCK`); `RAYON_NUM_THREADS` the threads.
//! Each line also gives the calling thread's CPU time: the serial part of the phase (the kernels run
//! on rayon's workers). The last lines are the medians and the phase's rate against sgemm's.

use laepca::internals::GramBlockKernel;
use laepca::GramAccumulator;
use std::time::Instant;

#[cfg(unix)]
#[path = "../benches/common/openblas.rs"]
mod openblas;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().ok_or("FILE [REPS]")?;
    let reps: usize = args.get(1).map_or(Ok(3), |s| s.parse())?;
    if reps == 0 {
        return Err("REPS must be at least 1".into());
    }
    let x = laepca::io::read_matrix::<f32>(path)?;
    let (n, m) = (x.rows, x.cols);
    let (triangle, full) = ((n * m * (m + 1)) as f64, 2.0 * (n * m * m) as f64);
    let block: usize = std::env::var("BLOCK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(laepca::data::GRAM_BLOCK);
    if block == 0 {
        return Err("BLOCK must be at least 1".into());
    }
    let mut kernel = GramBlockKernel::new(m)?;
    let name = if kernel.is_avx2() { "AVX2" } else { "faer" };
    #[cfg(unix)]
    let blas = std::env::var("OPENBLAS")
        .ok()
        .map(|p| openblas::OpenBlas::open(&p));
    let mut out = vec![0f32; m * m];
    let (mut phase, mut alone, mut sgemm, mut ssyrk) = (vec![], vec![], vec![], vec![]);
    for rep in 0..reps {
        let (s, cpu, c00) = timed(|| -> laepca::Result<f64> {
            let mut acc = GramAccumulator::new(m, true)?;
            acc.push_rows(&x.data)?;
            Ok(acc.finish()?.c[(0, 0)])
        });
        println!(
            "gram phase, rep {rep}: {n} x {m}: {s:.3} s wall, {cpu:.3} s on the calling thread, \
             {:.1} GFLOP/s (triangle), C[0,0] = {:.6e}",
            triangle / s / 1e9,
            c00?
        );
        phase.push(s);
        let (s, cpu, kernel_run) = timed(|| {
            for rows in x.data.chunks(block * m) {
                kernel.lower(rows, &mut out)?;
            }
            Ok::<(), laepca::Error>(())
        });
        println!(
            "{name} kernel only, blocks of {block}, rep {rep}: {s:.3} s wall, {cpu:.3} s on the \
             calling thread, {:.1} GFLOP/s (triangle)",
            triangle / s / 1e9
        );
        kernel_run?;
        alone.push(s);
        #[cfg(unix)]
        if let Some(blas) = &blas {
            let (s, _, ()) = timed(|| blas.gram_full(&x.data, n, m, &mut out));
            println!(
                "OpenBLAS sgemm XᵀX, rep {rep}: {s:.3} s wall, {:.1} GFLOP/s (full)",
                full / s / 1e9
            );
            sgemm.push(s);
            let (s, _, ()) = timed(|| blas.gram_lower(&x.data, n, m, &mut out));
            println!(
                "OpenBLAS ssyrk XᵀX, rep {rep}: {s:.3} s wall, {:.1} GFLOP/s (triangle)",
                triangle / s / 1e9
            );
            ssyrk.push(s);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (p, a) = (median(&mut phase), median(&mut alone));
    println!(
        "medians: gram phase {p:.3} s ({:.1} GFLOP/s), {name} kernel only {a:.3} s ({:.1} GFLOP/s)",
        triangle / p / 1e9,
        triangle / a / 1e9
    );
    if !sgemm.is_empty() {
        let s = median(&mut sgemm);
        println!(
            "OpenBLAS sgemm {s:.3} s ({:.1} GFLOP/s): the gram phase's rate is {:.0}% of sgemm's, \
             its time {:.2}x sgemm's",
            full / s / 1e9,
            100.0 * (triangle / p) / (full / s),
            p / s
        );
        let s = median(&mut ssyrk);
        println!(
            "OpenBLAS ssyrk {s:.3} s ({:.1} GFLOP/s; numpy's X.T @ X, so scikit-learn's \
             covariance_eigh): the gram phase's time is {:.2}x ssyrk's",
            triangle / s / 1e9,
            p / s
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
