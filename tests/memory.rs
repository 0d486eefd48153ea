//! Peak resident memory of the routes for data that cannot be densified or whose C should not be
//! formed, at sizes CI affords (issue 14's bounds, scaled down): the operator route on sparse data and
//! the transposed route on a wide `.npy` file read by blocks of features. Its own test binary with one
//! test, so that nothing else runs in this process while it measures.

mod common;

use common::files::npy_bytes;
use common::resident;
use laepca::io::NpyFeatures;
use laepca::rng::Rng;
use laepca::synthetic::sparse_counts;
use laepca::{Backend, LaePca, Method};
use std::io::Write;

/// Resets the peak to the current resident memory (Linux's clear_refs), and returns the latter.
fn reset_peak() -> Option<u64> {
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    let (now, peak) = resident()?;
    // The reset took if the peak is back near the current value.
    (peak <= now + (4 << 20)).then_some(now)
}

const MB: f64 = (1u64 << 20) as f64;

#[test]
fn the_routes_for_large_shapes_keep_within_their_memory_bounds() {
    let Some(_) = reset_peak() else {
        eprintln!("no /proc/self/clear_refs: skipping");
        return;
    };

    // Sparse: 50000 x 5000 at 0.5% (1.25M entries, 10 MB in CSR). Densified it is 1 GB in f32, and
    // C alone 200 MB in f64.
    let x = sparse_counts(50_000, 5_000, 0.005, 3);
    let before = reset_peak().unwrap();
    let fit = LaePca::new(10).backend(Backend::Cpu).fit_csr(&x).unwrap();
    let (_, peak) = resident().unwrap();
    let grew = (peak - before) as f64 / MB;
    eprintln!(
        "sparse 50000 x 5000, {} entries, k = 10: {:?} route ({}), {} passes, peak +{grew:.0} MB",
        x.nnz(),
        fit.method,
        fit.method_reason,
        fit.passes
    );
    assert_eq!(fit.method, Method::Operator, "{}", fit.method_reason);
    assert!(fit.converged || fit.stalled);
    // The operator's partial sums and the loop's blocks: tens of MB, never C's 200 MB.
    assert!(grew < 100.0, "the operator route grew {grew:.0} MB");
    drop(fit);
    drop(x);

    // Wide dense: 400 x 40000 float32 (64 MB on disk, 128 MB in f64), written row by row. The
    // transposed route reads it twice by blocks of features: memory is K (400 x 400), one block of at
    // most 8 MiB and the 40000 x k directions.
    let (n, m) = (400usize, 40_000usize);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wide.npy");
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        file.write_all(&npy_bytes("<f4", false, &[n, m], &[]))
            .unwrap();
        // Rank 8 plus noise: x_ij = Σ_r a_ir b_rj + 0.1 e_ij, with a_ir ~ N(0, 1) · 2^(−r).
        let mut rng = Rng::new(5);
        let b: Vec<f64> = rng.normals(8 * m);
        let mut row = Vec::with_capacity(4 * m);
        for _ in 0..n {
            let a: Vec<f64> = (0..8).map(|r| rng.normal() * 0.5f64.powi(r)).collect();
            row.clear();
            for j in 0..m {
                let v: f64 = (0..8).map(|r| a[r] * b[r * m + j]).sum::<f64>() + 0.1 * rng.normal();
                row.extend_from_slice(&(v as f32).to_le_bytes());
            }
            file.write_all(&row).unwrap();
        }
    }
    let before = reset_peak().unwrap();
    let fit = LaePca::new(5)
        .backend(Backend::Cpu)
        .fit_feature_blocks::<f32>(&mut NpyFeatures::open(&path).unwrap())
        .unwrap();
    let (_, peak) = resident().unwrap();
    let grew = (peak - before) as f64 / MB;
    eprintln!(
        "wide 400 x 40000 f32 .npy, k = 5: {:?} route, {} passes, peak +{grew:.0} MB",
        fit.method, fit.passes
    );
    assert_eq!(fit.method, Method::GramT);
    assert!(fit.converged || fit.stalled);
    // K with its accumulation, one 8 MiB block and the directions: well under the file's 64 MB.
    assert!(grew < 40.0, "the transposed route grew {grew:.0} MB");
}
