//! Sparse input (CSR, Matrix Market coordinate files): both routes (C formed from densified row blocks,
//! or applied matrix-free) against independent f64 references on the densified data, the same bits
//! whatever the thread count, the scores without densifying, the checks of the CSR arrays, and the GPU's
//! Gram route on lavapipe.

mod common;

use common::{
    centred_gram, columns, have_gpu, largest_principal_angle, orthonormal, reference_eigen,
    NumpyLegacy,
};
use laepca::io::read_coordinates;
use laepca::{Backend, CsrMatrix, Error, Fit, GpuDevice, LaePca, Method, Real, Solver};
use nalgebra::DMatrix;

/// scanpy 1.11.5's `pbmc68k_reduced().raw.X` (700 cells x 765 genes, 174400 stored entries,
/// log-normalised), exported as a Matrix Market coordinate file.
fn pbmc_raw<T: Real>() -> CsrMatrix<T> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/pbmc68k_reduced_raw.mtx.gz"
    );
    read_coordinates(path).unwrap().into_csr::<T>().unwrap()
}

/// Sparse counts: `n x m`, about `density` of the entries stored, values 1..=9 with a per-column scale,
/// and a few dense-ish columns so that the means matter.
fn counts(n: usize, m: usize, density: f64, seed: u32) -> DMatrix<f64> {
    let mut rng = NumpyLegacy::new(seed);
    DMatrix::from_fn(n, m, |_, j| {
        let u = rng.normal().abs() / 2.5;
        let keep = if j % 17 == 0 { 0.9 } else { density };
        if u < keep {
            (1.0 + (rng.normal().abs() * 3.0).floor()) * (1.0 + j as f64 / m as f64)
        } else {
            0.0
        }
    })
}

/// The largest principal angle to the f64 reference and the largest relative error of the explained
/// variance ratios.
fn errors<T: Real>(fit: &Fit<T>, dense: &DMatrix<f64>, k: usize) -> (f64, f64) {
    let c = centred_gram(dense);
    let (vals, vecs) = reference_eigen(&c, k);
    let angle = largest_principal_angle(&vecs, &orthonormal(&columns(&fit.components)));
    let total = c.trace();
    let evr = (0..k)
        .map(|i| {
            let want = vals[i] / total;
            (fit.explained_variance_ratio[i].as_f64() - want).abs() / want
        })
        .fold(0.0, f64::max);
    (angle, evr)
}

/// The largest principal angle to the f64 reference of the uncentred data (XᵀX's eigenvectors).
fn uncentred_angle<T: Real>(fit: &Fit<T>, dense: &DMatrix<f64>, k: usize) -> f64 {
    let (_, vecs) = reference_eigen(&(dense.transpose() * dense), k);
    largest_principal_angle(&vecs, &orthonormal(&columns(&fit.components)))
}

#[test]
fn pbmc_raw_counts_from_the_mtx_match_the_densified_f64_reference_on_both_routes() {
    let x = pbmc_raw::<f64>();
    assert_eq!((x.nrows(), x.ncols(), x.nnz()), (700, 765, 174400));
    let dense = x.to_dense();
    let k = 50;
    for method in [Method::Gram, Method::Operator] {
        let fit = LaePca::new(k).method(method).fit_csr(&x).unwrap();
        assert_eq!(fit.method, method);
        assert!(fit.converged, "{method:?}: not converged");
        let (angle, evr) = errors(&fit, &dense, k);
        eprintln!(
            "pbmc raw k = {k}, {method:?}: {} passes, angle {angle:.1e}, evr {evr:.1e}",
            fit.passes
        );
        // The bounds for f64.
        assert!(angle <= 1e-5, "{method:?}: angle {angle:e}");
        assert!(evr <= 1e-6, "{method:?}: explained variance ratio {evr:e}");
        let mean_err = (0..765)
            .map(|j| (fit.mean[j] - dense.column(j).mean()).abs())
            .fold(0.0, f64::max);
        assert!(mean_err <= 1e-12, "{method:?}: mean error {mean_err:e}");
    }
}

#[test]
fn the_automatic_choice_takes_the_cheaper_route_and_says_why() {
    // 765 features, 174400 entries: 30 matrix-free products cost less than forming C.
    let fit = LaePca::new(5).fit_csr(&pbmc_raw::<f32>()).unwrap();
    assert_eq!(fit.method, Method::Operator);
    assert!(
        fit.method_reason.contains("cheaper"),
        "{}",
        fit.method_reason
    );
    // A dense-ish matrix (40% stored) with few features: forming C is cheaper.
    let x = CsrMatrix::from_dense(&counts(2000, 40, 0.4, 3).map(|v| v as f32));
    let fit = LaePca::new(5).fit_csr(&x).unwrap();
    assert_eq!(fit.method, Method::Gram, "{}", fit.method_reason);
    assert!(fit.method_reason.contains("cheaper"));
    // Asked for: said so.
    let fit = LaePca::new(5).method(Method::Operator).fit_csr(&x).unwrap();
    assert_eq!(
        (fit.method, fit.method_reason.as_str()),
        (Method::Operator, "asked for")
    );
}

#[test]
fn f32_counts_on_both_routes_agree_with_the_reference_to_f32_accuracy() {
    let dense = counts(600, 90, 0.08, 11);
    let x = CsrMatrix::from_dense(&dense.map(|v| v as f32));
    let k = 8;
    for method in [Method::Gram, Method::Operator] {
        let fit = LaePca::new(k).method(method).fit_csr(&x).unwrap();
        let (angle, evr) = errors(&fit, &dense, k);
        // The operator route multiplies in f64 and rounds each product to f32: f32-level angles.
        assert!(angle < 1e-3, "{method:?}: angle {angle:e}");
        assert!(evr < 1e-5, "{method:?}: explained variance ratio {evr:e}");
    }
}

#[test]
fn every_solver_runs_on_the_operator_route() {
    let dense = counts(300, 40, 0.15, 5);
    let x = CsrMatrix::from_dense(&dense);
    let k = 3;
    for solver in [Solver::ExactTied, Solver::Momentum] {
        let fit = LaePca::new(k)
            .solver(solver)
            .method(Method::Operator)
            .fit_csr(&x)
            .unwrap();
        let (angle, evr) = errors(&fit, &dense, k);
        assert!(angle < 1e-5, "{solver:?}: angle {angle:e}");
        assert!(evr < 1e-6, "{solver:?}: explained variance ratio {evr:e}");
        // λ was chosen from the operator's Ritz values: below σ_k².
        let sigma_k = fit.singular_values[k - 1];
        assert!(fit.lambda > 0.0 && fit.lambda < sigma_k * sigma_k);
    }
}

#[test]
fn uncentred_operator_fit_is_the_uncentred_reference() {
    let dense = counts(200, 30, 0.2, 8);
    let x = CsrMatrix::from_dense(&dense);
    let k = 4;
    let fit = LaePca::new(k)
        .center(false)
        .method(Method::Operator)
        .fit_csr(&x)
        .unwrap();
    let angle = uncentred_angle(&fit, &dense, k);
    assert!(angle < 1e-6, "angle {angle:e}");
    assert!(fit.mean.iter().all(|&v| v == 0.0));
}

/// The operator route's bits, run on a pool of `threads` threads.
fn operator_fit_bits(x: &CsrMatrix<f32>, threads: usize) -> (Vec<u32>, Vec<u32>) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let fit = pool.install(|| LaePca::new(6).method(Method::Operator).fit_csr(x).unwrap());
    (
        fit.components.iter().map(|v| v.to_bits()).collect(),
        fit.singular_values.iter().map(|v| v.to_bits()).collect(),
    )
}

#[test]
fn operator_route_gives_the_same_bits_whatever_the_thread_count() {
    let x = CsrMatrix::from_dense(&counts(3000, 200, 0.05, 21).map(|v| v as f32));
    let one = operator_fit_bits(&x, 1);
    for threads in [2, 3] {
        assert_eq!(operator_fit_bits(&x, threads), one, "{threads} threads");
    }
}

#[test]
fn sparse_scores_are_the_dense_scores() {
    let dense = counts(250, 60, 0.1, 4);
    let x = CsrMatrix::from_dense(&dense);
    let fit = LaePca::new(5).fit_csr(&x).unwrap();
    let sparse = fit.projection().transform_csr(&x).unwrap();
    let want = fit.transform(&dense).unwrap();
    let err = (&sparse - &want).abs().max() / want.abs().max();
    assert!(err < 1e-12, "relative error {err:e}");
    // A matrix of the wrong width is an error, not a panic.
    let narrow = CsrMatrix::from_dense(&DMatrix::<f64>::identity(3, 59));
    assert!(matches!(
        fit.projection().transform_csr(&narrow),
        Err(Error::ShapeMismatch { .. })
    ));
}

#[test]
fn csr_arrays_are_checked() {
    let bad = |r: laepca::Result<CsrMatrix<f64>>, says: &str| match r {
        Err(Error::InvalidSparse { detail }) => assert!(detail.contains(says), "{detail}"),
        other => panic!("expected InvalidSparse ({says}), got {other:?}"),
    };
    bad(
        CsrMatrix::try_new(2, 3, vec![0, 1], vec![0], vec![1.0]),
        "indptr has 2 offsets",
    );
    bad(
        CsrMatrix::try_new(2, 3, vec![0, 2, 1], vec![0, 1], vec![1.0, 2.0]),
        "runs from 0 to 1",
    );
    bad(
        CsrMatrix::try_new(2, 3, vec![0, 3, 2], vec![0, 1], vec![1.0, 2.0]),
        "decreases at row 1",
    );
    bad(
        CsrMatrix::try_new(1, 3, vec![0, 1], vec![3], vec![1.0]),
        "column 3",
    );
    bad(
        CsrMatrix::try_new(1, 3, vec![0, 1], vec![0, 1], vec![1.0]),
        "2 column indices but 1 values",
    );
    bad(
        CsrMatrix::from_triplets(2, 2, &[(0, 0, 1.0), (2, 0, 1.0)]),
        "outside",
    );
    match CsrMatrix::try_new(2, 3, vec![0, 1, 2], vec![2, 1], vec![1.0, f64::NAN]) {
        Err(Error::NonFinite {
            row: 1,
            col: 1,
            value,
        }) => assert!(value.is_nan()),
        other => panic!("expected NonFinite at (1, 1), got {other:?}"),
    }
}

#[test]
fn the_gram_route_of_sparse_data_runs_on_the_gpu() {
    if !have_gpu() {
        return;
    }
    let dense = counts(600, 90, 0.08, 11);
    let x = CsrMatrix::from_dense(&dense.map(|v| v as f32));
    let k = 8;
    let fit = LaePca::new(k)
        .backend(Backend::Gpu)
        .method(Method::Gram)
        .fit_csr(&x)
        .unwrap();
    assert_eq!((fit.backend, fit.method), (Backend::Gpu, Method::Gram));
    let (angle, evr) = errors(&fit, &dense, k);
    assert!(angle < 1e-3, "GPU: angle {angle:e}");
    assert!(evr < 1e-5, "GPU: explained variance ratio {evr:e}");
}

/// A fit of `x` on the GPU's operator route (sparse X on the device, C never formed).
fn gpu_operator_fit(x: &CsrMatrix<f32>, k: usize, solver: Solver, device: &GpuDevice) -> Fit<f32> {
    LaePca::new(k)
        .solver(solver)
        .backend(Backend::Gpu)
        .device(device.clone())
        .method(Method::Operator)
        .seed(4)
        .fit_csr(x)
        .unwrap()
}

#[test]
fn the_operator_route_runs_on_the_gpu_for_every_solver() {
    if !have_gpu() {
        return;
    }
    let device = GpuDevice::open(None).unwrap();
    let dense = counts(600, 90, 0.08, 11);
    let x = CsrMatrix::from_dense(&dense.map(|v| v as f32));
    let k = 8;
    for solver in [Solver::Auto, Solver::ExactTied, Solver::Momentum] {
        let fit = gpu_operator_fit(&x, k, solver, &device);
        assert_eq!((fit.backend, fit.method), (Backend::Gpu, Method::Operator));
        let (angle, evr) = errors(&fit, &dense, k);
        // (The f32 loop ends at its rounding floor, as the GPU's Gram route does on this data.)
        assert!(
            fit.converged || fit.stalled,
            "{solver:?}: neither converged nor stalled"
        );
        eprintln!(
            "GPU operator {solver:?}: {} passes, angle {angle:.1e}, evr {evr:.1e}",
            fit.passes
        );
        // f32 products on the device (as the GPU's Gram route): f32-level angles.
        assert!(angle < 1e-3, "{solver:?}: angle {angle:e}");
        assert!(evr < 1e-5, "{solver:?}: explained variance ratio {evr:e}");
    }
    // scanpy's pbmc68k_reduced raw counts, uncentred too.
    let pbmc = pbmc_raw::<f32>();
    let dense = pbmc.to_dense().map(|v| v as f64);
    let fit = gpu_operator_fit(&pbmc, 10, Solver::Auto, &device);
    assert_eq!(fit.backend, Backend::Gpu);
    let (angle, evr) = errors(&fit, &dense, 10);
    eprintln!("GPU operator pbmc raw k = 10: angle {angle:.1e}, evr {evr:.1e}");
    assert!(
        angle < 1e-3 && evr < 1e-5,
        "pbmc: angle {angle:e}, evr {evr:e}"
    );
    let fit = LaePca::new(4)
        .center(false)
        .backend(Backend::Gpu)
        .device(device.clone())
        .method(Method::Operator)
        .fit_csr(&x)
        .unwrap();
    assert_eq!(fit.backend, Backend::Gpu);
    let angle = uncentred_angle(&fit, &x.to_dense().map(|v| v as f64), 4);
    assert!(angle < 1e-3, "uncentred: angle {angle:e}");
}

#[test]
fn the_gpu_operator_route_gives_the_same_bits_in_one_panel_or_several_and_run_after_run() {
    if !have_gpu() {
        return;
    }
    let x = CsrMatrix::from_dense(&counts(600, 90, 0.08, 11).map(|v| v as f32));
    // 30000 bytes a binding: X (~7500 entries, ~60 KB packed) and Xᵀ each in several panels; the
    // products' 600 x 9 intermediate (21600 bytes) still in one.
    let capped = GpuDevice::open_with_binding_limit(None, 30_000).unwrap();
    let whole = GpuDevice::open(None).unwrap();
    let run = |d: &GpuDevice| {
        let fit = gpu_operator_fit(&x, 6, Solver::Auto, d);
        assert_eq!(fit.backend, Backend::Gpu);
        let bits: Vec<u32> = fit.components.iter().map(|v| v.to_bits()).collect();
        (bits, fit.loop_stats.total.dispatches)
    };
    let (one, dispatches) = run(&whole);
    assert_eq!(one, run(&whole).0, "two runs differ");
    let (split, split_dispatches) = run(&capped);
    assert_eq!(one, split, "the panels change the bits");
    // The same iterations, more dispatches: one per panel of each product.
    assert!(
        split_dispatches > dispatches,
        "{split_dispatches} dispatches in panels, {dispatches} in one: no split"
    );
}

#[test]
fn the_gpu_operator_route_leaves_to_the_cpu_what_f32_or_the_device_cannot_hold() {
    if !have_gpu() {
        return;
    }
    let mut dense = counts(300, 20, 0.2, 7);
    // A column of mean 1e5 and spread ~1: its implicit centring would cost f32 all its digits.
    let mut rng = NumpyLegacy::new(3);
    for i in 0..dense.nrows() {
        dense[(i, 0)] = 1e5 + rng.normal();
    }
    let x = CsrMatrix::from_dense(&dense.map(|v| v as f32));
    let device = GpuDevice::open(None).unwrap();
    let fit = gpu_operator_fit(&x, 3, Solver::Auto, &device);
    assert_eq!((fit.backend, fit.method), (Backend::Cpu, Method::Operator));
    assert!(
        fit.method_reason
            .contains("on the CPU: the means outweigh the spread"),
        "{}",
        fit.method_reason
    );
    let (angle, _) = errors(&fit, &dense.map(|v| v as f32 as f64), 3);
    assert!(angle < 1e-3, "angle {angle:e}");
    // Uncentred, the same data has nothing to cancel: the GPU takes it.
    let fit = LaePca::new(3)
        .center(false)
        .backend(Backend::Gpu)
        .device(device)
        .method(Method::Operator)
        .fit_csr(&x)
        .unwrap();
    assert_eq!(fit.backend, Backend::Gpu);
    // A row longer than a binding holds: the CPU. One column (b = 1): the block (600 x 1 f32) and the
    // intermediate (40 x 1) fit 4096 bytes, a row of ~540 entries (4.3 KB packed) does not.
    let tiny = GpuDevice::open_with_binding_limit(None, 4096).unwrap();
    let wide = CsrMatrix::from_dense(&counts(40, 600, 0.9, 2).map(|v| v as f32));
    let fit = gpu_operator_fit(&wide, 1, Solver::ExactTied, &tiny);
    assert_eq!(fit.backend, Backend::Cpu);
    assert!(
        fit.method_reason.contains("on the CPU: a sample whose"),
        "{}",
        fit.method_reason
    );
}

#[test]
fn dense_data_refuses_the_operator_method() {
    let x = counts(50, 10, 0.5, 2);
    match LaePca::new(2).method(Method::Operator).fit(&x) {
        Err(Error::Unsupported { detail }) => assert!(detail.contains("sparse"), "{detail}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
    // The Gram method is dense data's own.
    let fit = LaePca::new(2).method(Method::Gram).fit(&x).unwrap();
    assert_eq!(fit.method, Method::Gram);
}

#[test]
fn repeated_and_unsorted_columns_count_as_their_sum_on_both_routes() {
    // scipy's non-canonical CSR: row 0 stores column 2 twice and its columns out of order.
    let dense = counts(120, 12, 0.3, 9);
    let canonical = CsrMatrix::from_dense(&dense);
    let (mut indptr, mut indices, mut values) = (vec![0], Vec::new(), Vec::new());
    for i in 0..dense.nrows() {
        let (cols, vals) = canonical.row(i);
        for (&j, &v) in cols.iter().zip(vals).rev() {
            // Each value split in two halves stored apart, in reverse column order.
            indices.extend([j, j]);
            values.extend([0.25 * v, 0.75 * v]);
        }
        indptr.push(indices.len());
    }
    let split = CsrMatrix::try_new(dense.nrows(), 12, indptr, indices, values).unwrap();
    // Stored canonically: the same matrix as the dense one's entries.
    assert_eq!(split.to_dense(), dense);
    assert_eq!(split.nnz(), canonical.nnz());
    let k = 3;
    for method in [Method::Gram, Method::Operator] {
        let fit = LaePca::new(k).method(method).fit_csr(&split).unwrap();
        let (angle, evr) = errors(&fit, &dense, k);
        assert!(angle < 1e-8, "{method:?}: angle {angle:e}");
        assert!(evr < 1e-10, "{method:?}: explained variance ratio {evr:e}");
    }
}

#[test]
fn a_symmetric_mtx_file_is_fitted_as_its_full_matrix() {
    // The lower triangle of a symmetric 30 x 30 matrix of counts, as a Matrix Market file.
    let full = {
        let a = counts(30, 30, 0.3, 13);
        &a + a.transpose()
    };
    let mut lines = Vec::new();
    for j in 0..30 {
        for i in j..30 {
            if full[(i, j)] != 0.0 {
                lines.push(format!("{} {} {}", i + 1, j + 1, full[(i, j)]));
            }
        }
    }
    let text = format!(
        "%%MatrixMarket matrix coordinate real symmetric\n30 30 {}\n{}\n",
        lines.len(),
        lines.join("\n")
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.mtx");
    std::fs::write(&path, text).unwrap();
    let x = read_coordinates(&path).unwrap().into_csr::<f64>().unwrap();
    assert_eq!(x.to_dense(), full);
    let fit = LaePca::new(4).fit_csr(&x).unwrap();
    let (angle, _) = errors(&fit, &full, 4);
    assert!(angle < 1e-8, "angle {angle:e}");
}

/// A wide matrix (n < m) with a prescribed spectrum and a large mean.
fn wide(n: usize, m: usize) -> (DMatrix<f64>, Vec<f64>) {
    let sigma: Vec<f64> = (0..n.min(12))
        .map(|i| 100.0 * 0.7f64.powi(i as i32))
        .collect();
    let data = laepca::synthetic::prescribed_spectrum(n, m, &sigma, 50.0, 3);
    (data.x, sigma)
}

#[test]
fn wide_dense_data_takes_the_transposed_gram_route_with_the_gram_routes_answer() {
    let (x, sigma) = wide(40, 300);
    let k = 5;
    let t = LaePca::new(k).fit(&x).unwrap();
    assert_eq!(t.method, Method::GramT, "{}", t.method_reason);
    assert!(
        t.method_reason.contains("fewer samples"),
        "{}",
        t.method_reason
    );
    let g = LaePca::new(k).method(Method::Gram).fit(&x).unwrap();
    assert_eq!(g.method, Method::Gram);
    assert_eq!(t.components.shape(), (k, 300));
    assert_eq!((t.n_samples, t.n_features), (40, 300));
    for a in [&t, &g] {
        for (i, want) in sigma.iter().enumerate().take(k) {
            let rel = (a.singular_values[i] - want).abs() / want;
            assert!(
                rel < 1e-10,
                "σ_{i}: {} vs {} ({:?})",
                a.singular_values[i],
                want,
                a.method
            );
        }
    }
    // The same directions, each with the same sign, and the same means.
    let angle = largest_principal_angle(
        &orthonormal(&columns(&g.components)),
        &orthonormal(&columns(&t.components)),
    );
    assert!(angle < 1e-9, "angle {angle:e}");
    for i in 0..k {
        let dot: f64 = t.components.row(i).dot(&g.components.row(i));
        assert!(dot > 1.0 - 1e-12, "component {i}: {dot}");
    }
    assert!((&t.mean - &g.mean).abs().max() < 1e-12);
    // Orthonormal directions: U = X_cᵀ V normalised.
    let u = t.components.transpose();
    let off = (u.transpose() * &u - DMatrix::<f64>::identity(k, k))
        .abs()
        .max();
    assert!(off < 1e-10, "UᵀU − I: {off:e}");
    let ratio = (&t.explained_variance_ratio - &g.explained_variance_ratio)
        .abs()
        .max();
    assert!(
        ratio < 1e-12,
        "explained variance ratio differs by {ratio:e}"
    );
    // Scores work as on the Gram route.
    let (st, sg) = (t.transform(&x).unwrap(), g.transform(&x).unwrap());
    assert!((&st - &sg).abs().max() < 1e-8 * sg.abs().max());
    // The paper's layout gives the same fit.
    let f = LaePca::new(k)
        .layout(laepca::Layout::FeaturesInRows)
        .fit(&x.transpose())
        .unwrap();
    assert_eq!(f.method, Method::GramT);
    assert_eq!(f.components, t.components);
}

#[test]
fn a_wide_npy_file_read_by_blocks_of_features_gives_the_in_memory_bits() {
    use common::files::{f32_le, f64_le, write_npy_as};
    use laepca::io::NpyFeatures;
    // Wide enough for several 8 MiB blocks of features (f64: 2100 features of 500 samples a block).
    let (x, _) = wide(500, 5000);
    let x32 = x.map(|v| v as f32);
    let dir = tempfile::tempdir().unwrap();
    let k = 6;
    let memory32 = LaePca::new(k).fit(&x32).unwrap();
    let memory64 = LaePca::new(k).fit(&x).unwrap();
    assert_eq!(memory64.method, Method::GramT);
    for fortran in [false, true] {
        let p32 = dir.path().join(format!("x32_{fortran}.npy"));
        let p64 = dir.path().join(format!("x64_{fortran}.npy"));
        write_npy_as(&p32, &x, "<f4", fortran, f32_le);
        write_npy_as(&p64, &x, "<f8", fortran, f64_le);
        let streamed32 = LaePca::new(k)
            .fit_feature_blocks::<f32>(&mut NpyFeatures::open(&p32).unwrap())
            .unwrap();
        let streamed64 = LaePca::new(k)
            .fit_feature_blocks::<f64>(&mut NpyFeatures::open(&p64).unwrap())
            .unwrap();
        assert_eq!(streamed64.method, Method::GramT);
        assert!(
            streamed64
                .method_reason
                .contains("read by blocks of features"),
            "{}",
            streamed64.method_reason
        );
        // Bit for bit what the in-memory transposed route gives.
        assert_eq!(
            streamed32.components, memory32.components,
            "f32, fortran {fortran}"
        );
        assert_eq!(streamed32.singular_values, memory32.singular_values);
        assert_eq!(streamed32.mean, memory32.mean);
        assert_eq!(
            streamed64.components, memory64.components,
            "f64, fortran {fortran}"
        );
        assert_eq!(
            streamed64.explained_variance_ratio,
            memory64.explained_variance_ratio
        );
    }
    // The paper's variants live in feature space.
    let p = dir.path().join("x32_false.npy");
    let other = LaePca::new(k)
        .solver(Solver::ExactTied)
        .fit_feature_blocks::<f32>(&mut NpyFeatures::open(&p).unwrap());
    assert!(matches!(other, Err(Error::Unsupported { .. })), "{other:?}");
    // Features the file does not have are an error, not a read past its end.
    let mut blocks = NpyFeatures::open(&p).unwrap();
    let mut out = Vec::<f32>::new();
    use laepca::FeatureBlocks;
    assert!(blocks.read_features(4990, 5001, &mut out).is_err());
    assert!(blocks.read_features(3, 2, &mut out).is_err());
    blocks.read_features(4990, 5000, &mut out).unwrap();
    assert_eq!(out.len(), 10 * 500);
    assert_eq!(out[3 * 500 + 7], x32[(7, 4993)]);
}

/// A source that misbehaves: short blocks, a failed read, or a non-finite value at (3, 7).
struct Faulty(usize);

impl laepca::FeatureBlocks<f64> for Faulty {
    fn n_samples(&self) -> usize {
        10
    }
    fn n_features(&self) -> usize {
        20
    }
    fn read_features(
        &mut self,
        first: usize,
        last: usize,
        out: &mut Vec<f64>,
    ) -> laepca::Result<()> {
        out.clear();
        out.extend((0..(last - first) * 10).map(|p| ((p * 7919) % 13) as f64));
        match self.0 {
            0 => out.pop().map(|_| ()).ok_or(Error::Cancelled),
            1 => Err(Error::Read {
                detail: "the disk is gone".into(),
            }),
            _ => {
                if (first..last).contains(&7) {
                    out[(7 - first) * 10 + 3] = f64::NAN;
                }
                Ok(())
            }
        }
    }
}

#[test]
fn a_feature_block_source_that_fails_stops_the_fit_with_its_error() {
    let fit = |mode| LaePca::new(2).fit_feature_blocks(&mut Faulty(mode));
    let short = fit(0);
    assert!(
        matches!(&short, Err(Error::Read { detail }) if detail.contains("came as")),
        "{short:?}"
    );
    let failed = fit(1);
    assert!(
        matches!(&failed, Err(Error::Read { detail }) if detail == "the disk is gone"),
        "{failed:?}"
    );
    let nan = fit(2);
    assert!(
        matches!(nan, Err(Error::NonFinite { row: 3, col: 7, .. })),
        "{nan:?}"
    );
}

#[test]
fn the_transposed_route_is_for_the_auto_solver_and_dense_data() {
    let (x, _) = wide(20, 60);
    // Another solver keeps the Gram route under auto, and cannot be forced onto the transposed one.
    let fit = LaePca::new(2).solver(Solver::ExactTied).fit(&x).unwrap();
    assert_eq!(fit.method, Method::Gram);
    let forced = LaePca::new(2)
        .solver(Solver::ExactTied)
        .method(Method::GramT)
        .fit(&x);
    assert!(
        matches!(forced, Err(Error::Unsupported { .. })),
        "{forced:?}"
    );
    // Sparse data too, on the same condition.
    let sparse = LaePca::new(2)
        .solver(Solver::ExactTied)
        .method(Method::GramT)
        .fit_csr(&CsrMatrix::from_dense(&x));
    assert!(
        matches!(sparse, Err(Error::Unsupported { .. })),
        "{sparse:?}"
    );
    // Tall data: asked for, it still gives the Gram route's answer.
    let tall = x.transpose();
    let t = LaePca::new(3).method(Method::GramT).fit(&tall).unwrap();
    let g = LaePca::new(3).fit(&tall).unwrap();
    assert_eq!((t.method, g.method), (Method::GramT, Method::Gram));
    let angle = largest_principal_angle(
        &orthonormal(&columns(&g.components)),
        &orthonormal(&columns(&t.components)),
    );
    assert!(angle < 1e-8, "angle {angle:e}");
}

#[test]
fn the_transposed_route_runs_on_the_gpu() {
    if !have_gpu() {
        return;
    }
    let (x, sigma) = wide(40, 300);
    let k = 4;
    let fit = LaePca::new(k)
        .backend(Backend::Gpu)
        .fit(&x.map(|v| v as f32))
        .unwrap();
    assert_eq!((fit.method, fit.backend), (Method::GramT, Backend::Gpu));
    for (i, want) in sigma.iter().enumerate().take(k) {
        let rel = (fit.singular_values[i] as f64 - want).abs() / want;
        assert!(
            rel < 1e-4,
            "σ_{i}: {} vs {want} (rel {rel:e})",
            fit.singular_values[i]
        );
    }
    let g = LaePca::new(k).method(Method::Gram).fit(&x).unwrap();
    let angle = largest_principal_angle(
        &orthonormal(&columns(&g.components)),
        &orthonormal(&columns(&fit.components)),
    );
    assert!(angle < 1e-3, "angle {angle:e}");
}

#[test]
fn the_gpu_operator_loop_submits_once_a_block_and_creates_nothing() {
    if !have_gpu() {
        return;
    }
    let x = CsrMatrix::from_dense(&counts(300, 40, 0.15, 5).map(|v| v as f32));
    let device = GpuDevice::open(None).unwrap();
    // Per iteration on a formed C (tests/gpu.rs): auto 31, exact-tied 4 dispatches (5 unfused, as
    // here: C x, WᵀCW and its inverse in three), one of them the product; here the product takes
    // four (μᵀW, Y by X's one panel, 1ᵀY, Z by Xᵀ's one panel).
    for (solver, check_every, per_iteration) in
        [(Solver::ExactTied, 10, 5 + 3), (Solver::Auto, 1, 31 + 3)]
    {
        let fit = LaePca::new(3)
            .solver(solver)
            .tol(1e-30)
            .max_iter(60)
            .check_every(check_every)
            .backend(Backend::Gpu)
            .device(device.clone())
            .method(Method::Operator)
            .fit_csr(&x)
            .unwrap();
        assert_eq!(fit.backend, Backend::Gpu);
        let block = fit.loop_stats.steady_block.expect("three blocks ran");
        assert_eq!(block.submissions, 1, "{solver}: {block:?}");
        assert_eq!(block.host_waits, 1, "{solver}: {block:?}");
        assert_eq!(block.buffers_created, 0, "{solver}: {block:?}");
        assert_eq!(block.bind_groups_created, 0, "{solver}: {block:?}");
        assert_eq!(
            block.dispatches,
            per_iteration * check_every,
            "{solver}: {block:?}"
        );
    }
}

#[test]
fn wide_sparse_data_takes_the_transposed_route_with_the_references_answer() {
    // 60 samples, 1000 features, about half stored: forming K (60 x 60) costs less than the
    // matrix-free products, and far less than C (1000 x 1000).
    let dense = counts(60, 1000, 0.3, 9);
    let x = CsrMatrix::from_dense(&dense);
    let k = 5;
    let fit = LaePca::new(k).fit_csr(&x).unwrap();
    assert_eq!(fit.method, Method::GramT, "{}", fit.method_reason);
    assert!(
        fit.method_reason.contains("forming K"),
        "{}",
        fit.method_reason
    );
    let (angle, evr) = errors(&fit, &dense, k);
    eprintln!("sparse 60 x 1000 on the transposed route: angle {angle:.1e}, evr {evr:.1e}");
    assert!(angle < 1e-5, "angle {angle:e}");
    assert!(evr < 1e-6, "explained variance ratio {evr:e}");
    // A warm start keeps auto off the transposed route (it lives in feature space).
    let warm = LaePca::new(k)
        .warm_start(fit.components.clone())
        .fit_csr(&x)
        .unwrap();
    assert_ne!(warm.method, Method::GramT, "{}", warm.method_reason);
    // The dense matrix on the same route: the same bits (the same features, densified).
    let from_dense = LaePca::new(k).method(Method::GramT).fit(&dense).unwrap();
    assert_eq!(from_dense.method, Method::GramT);
    assert_eq!(fit.components, from_dense.components);
    assert_eq!(fit.singular_values, from_dense.singular_values);
    // Scores without densifying, from either route's projection.
    let scores = fit.projection().transform_csr(&x).unwrap();
    let want = from_dense.projection().transform(&dense).unwrap();
    assert!((scores - want).abs().max() < 1e-9);
    // Uncentred too.
    let fit = LaePca::new(k)
        .center(false)
        .method(Method::GramT)
        .fit_csr(&x)
        .unwrap();
    let angle = uncentred_angle(&fit, &dense, k);
    assert!(angle < 1e-6, "uncentred: angle {angle:e}");
    if !have_gpu() {
        return;
    }
    // On the GPU, K accumulated there (f32): f32-level angles.
    let fit = LaePca::new(k)
        .backend(Backend::Gpu)
        .method(Method::GramT)
        .fit_csr(&CsrMatrix::from_dense(&dense.map(|v| v as f32)))
        .unwrap();
    assert_eq!((fit.method, fit.backend), (Method::GramT, Backend::Gpu));
    let (angle, evr) = errors(&fit, &dense, k);
    assert!(
        angle < 1e-3 && evr < 1e-5,
        "GPU: angle {angle:e}, evr {evr:e}"
    );
}
