//! The default solver (`Solver::Auto`): no parameter to tune, about a hundred iterations where the
//! paper's variants take thousands. Iteration counts here are generous upper bounds; the benchmark
//! reports the exact figures.

#![allow(clippy::needless_range_loop)] // index loops over several arrays read clearer

mod common;

use common::*;
use laepca::synthetic::prescribed_spectrum;
use laepca::{devices, Backend, Fit, LaePca, Real, Solver};
use nalgebra::DMatrix;
use std::io::Read;

fn gpu_available() -> bool {
    !devices().is_empty() || std::env::var_os("LAEPCA_REQUIRE_GPU").is_some()
}

/// The paper's error measure: Σ_i min ‖u_i ± û_i‖ over the columns.
fn paper_error(u: &DMatrix<f64>, reference: &DMatrix<f64>) -> f64 {
    (0..u.ncols())
        .map(|i| {
            let (a, b) = (u.column(i), reference.column(i));
            (a - b).norm().min((a + b).norm())
        })
        .sum()
}

#[test]
fn paper_problem_in_at_most_150_iterations_with_defaults() {
    let x = paper_problem();
    let (_, vecs) = reference_eigen(&centred_gram(&x), 2);
    let check = |name: &str, fit_iterations: usize, components: DMatrix<f64>| {
        let err = paper_error(&components, &vecs);
        assert!(err <= 1e-4, "{name}: Σ min ‖u ± û‖ = {err:e}");
        assert!(fit_iterations <= 150, "{name}: {fit_iterations} iterations");
    };
    let f64_fit = LaePca::new(2).fit(&x).unwrap();
    assert_eq!(f64_fit.solver, Solver::Auto);
    check("cpu f64", f64_fit.iterations, columns(&f64_fit.components));
    let x32 = x.map(|v| v as f32);
    let f32_fit = LaePca::new(2).fit(&x32).unwrap();
    check("cpu f32", f32_fit.iterations, columns(&f32_fit.components));
    if gpu_available() {
        let gpu = LaePca::new(2).backend(Backend::Gpu).fit(&x32).unwrap();
        check("gpu", gpu.iterations, columns(&gpu.components));
    }
}

/// m = 1024, k = 32, σ_{k+1}/σ_k = 0.9 (σ_i = 100·0.97^i above the gap, a slow decay below it).
fn hard_gap_problem() -> (DMatrix<f64>, DMatrix<f64>) {
    let (m, k) = (1024, 32);
    let sigma: Vec<f64> = (0..m)
        .map(|i| {
            let top = 100.0 * 0.97f64.powi(i.min(k - 1) as i32);
            if i < k {
                top
            } else {
                top * 0.9 * 0.995f64.powi((i - k) as i32)
            }
        })
        .collect();
    let p = prescribed_spectrum(4 * m, m, &sigma, 0.0, 3);
    let directions = p.directions.columns(0, k).into_owned();
    (p.x, directions)
}

#[test]
fn hard_gap_in_at_most_300_iterations() {
    let (x, directions) = hard_gap_problem();
    let x32 = x.map(|v| v as f32);
    let mut fits: Vec<(&str, Fit<f32>)> = vec![("cpu", LaePca::new(32).fit(&x32).unwrap())];
    if gpu_available() {
        fits.push((
            "gpu",
            LaePca::new(32).backend(Backend::Gpu).fit(&x32).unwrap(),
        ));
    }
    for (name, fit) in fits {
        let angle = largest_principal_angle(&directions, &columns(&fit.components));
        assert!(angle <= 1e-4, "{name}: angle {angle:e}");
        assert!(
            fit.iterations <= 300,
            "{name}: {} iterations",
            fit.iterations
        );
    }
}

#[test]
fn warm_start_from_a_previous_fit() {
    let (x, _) = hard_gap_problem();
    let x = x.columns(0, 256).into_owned(); // a smaller problem is enough here
    let cold = LaePca::new(12).fit(&x).unwrap();
    let again = LaePca::new(12)
        .warm_start(cold.components.clone())
        .fit(&x)
        .unwrap();
    assert!(again.converged);
    assert!(
        again.iterations < cold.iterations,
        "warm {} vs cold {}",
        again.iterations,
        cold.iterations
    );
    let more = LaePca::new(16)
        .warm_start(cold.components.clone())
        .fit(&x)
        .unwrap();
    let (_, vecs) = reference_eigen(&centred_gram(&x), 16);
    assert!(largest_principal_angle(&vecs, &columns(&more.components)) < 1e-6);
    let wrong = LaePca::new(12)
        .warm_start(DMatrix::zeros(3, 10))
        .fit(&x)
        .unwrap_err();
    assert!(
        wrong.to_string().contains("warm start has 10 features"),
        "{wrong}"
    );
}

/// Fashion-MNIST train images (60000 x 784, pixels / 255) when the Debian package is installed.
fn fashion_mnist() -> Option<DMatrix<f32>> {
    let path = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .ok()?;
    let dim =
        |i: usize| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize;
    let (n, m) = (dim(0), dim(1) * dim(2));
    Some(DMatrix::from_row_slice(
        n,
        m,
        &bytes[16..16 + n * m]
            .iter()
            .map(|&b| b as f32 / 255.0)
            .collect::<Vec<_>>(),
    ))
}

#[test]
fn fashion_mnist_loop_costs_at_most_a_fifth_of_the_gram() {
    let Some(x) = fashion_mnist() else {
        if std::env::var_os("CI").is_some() {
            panic!("CI installs dataset-fashion-mnist: the data must be there");
        }
        eprintln!("dataset-fashion-mnist is not installed: skipping");
        return;
    };
    let (n, m, k) = (x.nrows() as f64, x.ncols() as f64, 16.0);
    let fit = LaePca::new(16).fit(&x).unwrap();
    assert!(fit.converged || fit.stalled);
    // Flops of one auto iteration: C·W (2m²k), three k x k inner products and four m x k by k x k
    // products (2mk² each), two k x k inverses; plus the 10 subspace-iteration steps that set β.
    let per_iteration = 2.0 * m * m * k + 14.0 * m * k * k + 4.0 * k * k * k;
    let setup = 10.0 * 2.0 * m * m * (k + 8.0);
    let loop_flops = fit.iterations as f64 * per_iteration + setup;
    let gram_flops = m * m * n;
    assert!(
        loop_flops <= gram_flops / 5.0,
        "{} iterations: loop {loop_flops:.3e} flops against the Gram's {gram_flops:.3e}",
        fit.iterations
    );
    // And the answer is right: against an f64 eigensolver of the same data.
    let (vals, vecs) = reference_eigen(&centred_gram(&x.map(|v| v.as_f64())), 16);
    let angle = largest_principal_angle(&vecs, &columns(&fit.components));
    assert!(angle <= 1e-3, "angle {angle:e}");
    for i in 0..16 {
        let rel = (fit.singular_values[i] as f64 - vals[i].sqrt()).abs() / vals[i].sqrt();
        assert!(rel <= 1e-5, "σ_{i} relative error {rel:e}");
    }
}
