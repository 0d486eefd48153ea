//! The candidate kernels for the CPU Gram block `BᵀB` (B: `len` samples x `m` features, f32), timed on
//! the same block, interleaved (each kernel once per round, so that the shared machine's load falls on
//! all alike): matrixmultiply's sgemm through nalgebra (the full product, as laepca did first), faer's
//! full and triangular products (the lower triangle; laepca's f32 Gram kernel before the next one and
//! still its kernel for f64 and CPUs without AVX2), laepca's own AVX2 triangular kernel (src/syrk.rs,
//! what laepca uses for f32 where the CPU has AVX2 and FMA), and, when `OPENBLAS` names an OpenBLAS
//! shared library with the 64-bit-integer Fortran interface (NumPy's wheels ship one as
//! `numpy.libs/libscipy_openblas64_-*.so`), OpenBLAS's sgemm and ssyrk: what scikit-learn runs.
//! GFLOP/s count the flops each one performs (2·len·m² for a full product, len·m·(m+1) for a
//! triangle), so the triangle's figure is its rate, and "effective" is 2·len·m² over its time (the
//! rate a full product would need to finish as early). Best and median of the rounds, and the speed
//! relative to faer's triangular product (ratio of medians).
//!
//!     OPENBLAS=.../libscipy_openblas64_-*.so cargo bench --bench gram_kernels [-- --threads N]
//!
//! `--threads 1` runs faer on one thread; laepca's kernel runs on rayon's global pool
//! (RAYON_NUM_THREADS=1 for one thread), OpenBLAS and matrixmultiply on their own (OPENBLAS_NUM_THREADS). scripts/blas_gram_block.py times OpenBLAS
//! through SciPy instead.

use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, MatMut, MatRef, Par};
use nalgebra::DMatrix;
use std::time::Instant;

#[cfg(unix)]
#[path = "common/openblas.rs"]
mod openblas;
#[cfg(unix)]
use openblas::OpenBlas;

/// A kernel to time: its name, the flops it performs, and one run of it.
type Candidate<'a> = (&'static str, f64, Box<dyn FnMut() + 'a>);

/// Runs every kernel once per round, `rounds` rounds (interleaved, so that a change in the machine's
/// load falls on all of them alike); each kernel's times, sorted.
fn interleaved(rounds: usize, kernels: &mut [Candidate<'_>]) -> Vec<Vec<f64>> {
    for (_, _, f) in kernels.iter_mut() {
        f(); // warm-up: packing buffers, rayon's threads, caches
    }
    let mut times = vec![Vec::with_capacity(rounds); kernels.len()];
    for _ in 0..rounds {
        for ((_, _, f), t) in kernels.iter_mut().zip(&mut times) {
            let s = Instant::now();
            f();
            t.push(s.elapsed().as_secs_f64());
        }
    }
    times.iter_mut().for_each(|t| t.sort_by(f64::total_cmp));
    times
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
    #[cfg(unix)]
    let openblas = std::env::var("OPENBLAS")
        .ok()
        .map(|path| OpenBlas::open(&path));
    println!(
        "threads: {} (rayon), matrixmultiply: its own threading",
        if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        }
    );
    println!(
        "| len x m | kernel | best GFLOP/s | median GFLOP/s | effective (best) | speed vs faer \
         triangular (medians) |"
    );
    println!("|---|---|---|---|---|---|");
    for (len, m) in [(512usize, 784usize), (512, 2048), (2048, 784)] {
        let mut rng = laepca::rng::Rng::new(1);
        let rows: Vec<f32> = rng.normals(len * m).iter().map(|&v| v as f32).collect();
        let rounds = if m > 1000 { 9 } else { 21 };
        let full = 2.0 * (len * m * m) as f64;
        let tri = (len * m * (m + 1)) as f64;
        let bt = DMatrix::from_vec(m, len, rows.clone());
        let b = bt.transpose();
        let btf = MatRef::from_column_major_slice(&rows, m, len);
        let (mut g, mut full_out, mut tri_out) = (
            DMatrix::<f32>::zeros(m, m),
            vec![0f32; m * m],
            vec![0f32; m * m],
        );
        let mut kernels: Vec<Candidate> = vec![
            // matrixmultiply (nalgebra's gemm): Bᵀ (m x len, contiguous) times B.
            (
                "matrixmultiply sgemm (full)",
                full,
                Box::new(|| g.gemm(1.0, &bt, &b, 0.0)),
            ),
            (
                "faer matmul (full)",
                full,
                Box::new(|| {
                    faer::linalg::matmul::matmul(
                        MatMut::from_column_major_slice_mut(&mut full_out, m, m),
                        Accum::Replace,
                        btf,
                        btf.transpose(),
                        1.0f32,
                        par,
                    )
                }),
            ),
            (
                "faer triangular (lower)",
                tri,
                Box::new(|| {
                    triangular::matmul(
                        MatMut::from_column_major_slice_mut(&mut tri_out, m, m),
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
            ),
        ];
        let mut ours = laepca::internals::GramBlockKernel::new(m).expect("a small kernel");
        if ours.is_avx2() {
            let rows = &rows;
            let mut out = vec![0f32; m * m];
            kernels.push((
                "laepca AVX2 (lower)",
                tri,
                Box::new(move || ours.lower(rows, &mut out).expect("whole rows")),
            ));
        }
        #[cfg(unix)]
        let (mut sgemm_out, mut ssyrk_out) = (vec![0f32; m * m], vec![0f32; m * m]);
        #[cfg(unix)]
        if let Some(blas) = &openblas {
            let rows = &rows;
            kernels.push((
                "OpenBLAS sgemm (full)",
                full,
                Box::new(move || blas.gram_full(rows, len, m, &mut sgemm_out)),
            ));
            kernels.push((
                "OpenBLAS ssyrk (lower)",
                tri,
                Box::new(move || blas.gram_lower(rows, len, m, &mut ssyrk_out)),
            ));
        }
        let times = interleaved(rounds, &mut kernels);
        let reference = times[2][rounds / 2]; // faer's triangular product: what laepca used before
        for ((name, flops, _), t) in kernels.iter().zip(&times) {
            println!(
                "| {len} x {m} | {name} | {:.1} | {:.1} | {:.1} | {:.2} |",
                flops / t[0] / 1e9,
                flops / t[rounds / 2] / 1e9,
                full / t[0] / 1e9,
                reference / t[rounds / 2],
            );
        }
    }
}
