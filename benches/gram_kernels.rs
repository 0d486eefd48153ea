//! The candidate kernels for the CPU Gram block `BᵀB` (B: `len` samples x `m` features, f32), timed on
//! the same block: matrixmultiply's sgemm through nalgebra (the full product, as laepca did before),
//! faer's full product, and faer's triangular product (the lower triangle only: what laepca uses).
//! GFLOP/s count the flops each one performs (2·len·m² for a full product, len·m·(m+1) for a triangle),
//! so the triangle's figure is its rate, and "effective" is 2·len·m² over its time (the rate a full
//! product would need to finish as early). Best and median of the repetitions.
//!
//!     cargo bench --bench gram_kernels [-- --threads N]
//!
//! scripts/blas_gram_block.py times OpenBLAS's sgemm and ssyrk on the same shapes through SciPy.

use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, MatMut, MatRef, Par};
use nalgebra::DMatrix;
use std::time::Instant;

fn time(reps: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    (t[0], t[reps / 2])
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads = args
        .iter()
        .position(|a| a == "--threads")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0usize);
    let par = if threads == 1 {
        Par::Seq
    } else {
        Par::rayon(threads)
    };
    println!(
        "threads: {} (rayon), matrixmultiply: its own threading",
        if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        }
    );
    println!("| len x m | kernel | best GFLOP/s | median GFLOP/s | effective (best) |");
    println!("|---|---|---|---|---|");
    for (len, m) in [(512usize, 784usize), (512, 2048), (2048, 784)] {
        let mut rng = laepca::rng::Rng::new(1);
        let rows: Vec<f32> = rng.normals(len * m).iter().map(|&v| v as f32).collect();
        let reps = if m > 1000 { 7 } else { 15 };
        let full = 2.0 * (len * m * m) as f64;
        let tri = (len * m * (m + 1)) as f64;
        let report = |name: &str, (best, median): (f64, f64), flops: f64| {
            println!(
                "| {len} x {m} | {name} | {:.1} | {:.1} | {:.1} |",
                flops / best / 1e9,
                flops / median / 1e9,
                full / best / 1e9
            );
        };
        // matrixmultiply (nalgebra's gemm): Bᵀ (m x len, contiguous) times B.
        let bt = DMatrix::from_vec(m, len, rows.clone());
        let b = bt.transpose();
        let mut g = DMatrix::<f32>::zeros(m, m);
        report(
            "matrixmultiply sgemm (full)",
            time(reps, || g.gemm(1.0, &bt, &b, 0.0)),
            full,
        );
        let mut out = vec![0f32; m * m];
        let btf = MatRef::from_column_major_slice(&rows, m, len);
        report(
            "faer matmul (full)",
            time(reps, || {
                faer::linalg::matmul::matmul(
                    MatMut::from_column_major_slice_mut(&mut out, m, m),
                    Accum::Replace,
                    btf,
                    btf.transpose(),
                    1.0f32,
                    par,
                )
            }),
            full,
        );
        report(
            "faer triangular (lower)",
            time(reps, || {
                triangular::matmul(
                    MatMut::from_column_major_slice_mut(&mut out, m, m),
                    BlockStructure::TriangularLower,
                    Accum::Replace,
                    btf,
                    BlockStructure::Rectangular,
                    btf.transpose(),
                    BlockStructure::Rectangular,
                    1.0f32,
                    par,
                )
            }),
            tri,
        );
    }
}
