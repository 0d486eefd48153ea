//! The default solver (`Solver::Auto`, the locally optimal LAE step): passes over C ("passes" =
//! products of C with a block of k columns, `Fit::passes`) against an independent f64 reference LOBPCG
//! (tests/common) and the figures, and accuracy against an f64 eigensolver (largest principal
//! angle to the top-k eigenvectors), on the CPU in f64 and f32 and on the GPU (f32; lavapipe in CI).
//!
//! Each problem's checks:
//! * f64, CPU: the iterate after N passes (`max_iter = N − 1`) is at least as close as the reference
//!   LOBPCG's after N_ref passes (N / N_ref: 1 on Fashion-MNIST, 1.1 on digits, 1.15 on the hard-gap
//!   spectrum, 1.27 on the paper's problem, whose k = 2 and 0.6% gap make it the most start-dependent);
//! * f32, CPU and GPU, at the defaults: the fit ends (converged, or stalled at its rounding floor) within
//!   the pass bound, at an angle f32 allows.
//!
//! The momentum solver (the former default) keeps one check of its own.

mod common;

use common::*;
use laepca::synthetic::prescribed_spectrum;
use laepca::{devices, Backend, Fit, GramStats, LaePca, Real, Solver};
use nalgebra::{DMatrix, DVector};

fn gpu_available() -> bool {
    !devices().is_empty() || std::env::var_os("LAEPCA_REQUIRE_GPU").is_some()
}

fn stats(c: DMatrix<f64>, n_samples: usize) -> GramStats {
    let m = c.nrows();
    GramStats {
        c,
        mean: DVector::zeros(m),
        n_samples,
    }
}

/// One problem's checks (see the module docs).
struct Case<'a> {
    name: &'a str,
    stats: &'a GramStats,
    k: usize,
    /// f64: laepca after `passes` passes against the reference after `reference_passes`.
    passes: usize,
    reference_passes: usize,
    /// f32 at the defaults: at most this many passes, ending within this angle.
    f32_passes: usize,
    f32_angle: f64,
}

fn check(case: &Case) {
    let Case { name, stats, k, .. } = *case;
    let (_, vecs) = reference_eigen(&stats.c, k);
    let angle = |fit_components: DMatrix<f64>| largest_principal_angle(&vecs, &fit_components);

    let reference = reference_lobpcg(&stats.c, k, case.reference_passes, 7);
    let reference_angle = angle(reference[case.reference_passes - 1].clone());
    let f64_fit = LaePca::new(k)
        .max_iter(case.passes - 1)
        .tol(1e-300)
        .fit_gram::<f64>(stats)
        .unwrap();
    assert_eq!(f64_fit.solver, Solver::Auto);
    // At most max_iter + 1: an f64 fit may stop at its rounding floor first (stalled).
    assert!(f64_fit.passes <= case.passes, "{name}: max_iter + 1 passes");
    let f64_angle = angle(columns(&f64_fit.components));
    assert!(
        f64_angle <= reference_angle,
        "{name}, f64: after {} passes angle {f64_angle:e}, reference LOBPCG after {}: {reference_angle:e}",
        case.passes,
        case.reference_passes
    );

    let mut fits: Vec<(&str, Fit<f32>)> =
        vec![("cpu f32", LaePca::new(k).fit_gram::<f32>(stats).unwrap())];
    if gpu_available() {
        let gpu = LaePca::new(k).backend(Backend::Gpu).fit_gram::<f32>(stats);
        fits.push(("gpu", gpu.unwrap()));
    }
    for (path, fit) in fits {
        let a = angle(columns(&fit.components));
        assert!(fit.converged || fit.stalled, "{name}, {path}: neither");
        assert!(
            fit.passes <= case.f32_passes,
            "{name}, {path}: {} passes (history {:?})",
            fit.passes,
            fit.history
        );
        assert_eq!(fit.passes, fit.iterations + 1, "{name}, {path}");
        assert!(
            a <= case.f32_angle,
            "{name}, {path}: angle {a:e} after {} passes",
            fit.passes
        );
        // The singular values are the f64 Rayleigh quotients of the directions: accurate to the
        // square of the angle, relative to σ₁.
        let (vals, _) = reference_eigen(&stats.c, k);
        for i in 0..k {
            let err = (fit.singular_values[i].as_f64() - vals[i].sqrt()).abs();
            assert!(
                err <= 1e-5 * vals[0].sqrt(),
                "{name}, {path}: σ_{i} off by {err:e}"
            );
        }
    }
}

#[test]
fn paper_problem_in_at_most_15_passes_in_f32() {
    let x = paper_problem();
    let s = stats(centred_gram(&x), x.nrows());
    check(&Case {
        name: "paper",
        stats: &s,
        k: 2,
        passes: 19,
        reference_passes: 15,
        f32_passes: 15,
        f32_angle: 3e-5,
    });
    // And the paper's own error measure at the defaults, as the paper's variants are judged.
    let (_, vecs) = reference_eigen(&s.c, 2);
    let fit = LaePca::new(2).fit(&x.map(|v| v as f32)).unwrap();
    let err = paper_error(&columns(&fit.components), &vecs);
    assert!(err <= 1e-4, "Σ min ‖u ± û‖ = {err:e}");
}

#[test]
fn digits_in_at_most_12_passes_in_f32() {
    let x = digits();
    check(&Case {
        name: "digits",
        stats: &stats(centred_gram(&x), x.nrows()),
        k: 10,
        passes: 11,
        reference_passes: 10,
        f32_passes: 12,
        f32_angle: 1e-5,
    });
}

#[test]
fn hard_gap_within_1_2_times_lobpcg() {
    // The benchmark's hard-gap spectrum (σ_{k+1}/σ_k = 0.98, rank k + 32) at m = 200.
    let (m, k) = (200, 16);
    let p = prescribed_spectrum(4 * m, m, &hard_gap_spectrum(m, k), 3.0, 7);
    // 1.2 × 13 passes of LOBPCG (where it reaches ~1e-6) is 15.6.
    check(&Case {
        name: "hard gap",
        stats: &stats(centred_gram(&p.x), 4 * m),
        k,
        passes: 15,
        reference_passes: 13,
        f32_passes: 14,
        f32_angle: 1e-4,
    });
}

#[test]
fn fashion_mnist_k16_in_at_most_14_passes_in_f32() {
    let Some(x) = fashion_mnist() else {
        if std::env::var_os("CI").is_some() {
            panic!("CI installs dataset-fashion-mnist: the data must be there");
        }
        eprintln!("dataset-fashion-mnist is not installed: skipping");
        return;
    };
    let n = x.nrows();
    check(&Case {
        name: "fashion-mnist",
        stats: &stats(centred_gram(&x.map(|v| v.as_f64())), n),
        k: 16,
        passes: 17,
        reference_passes: 17,
        // Measured: 14 on the CPU (faer's products; 11 passes reach the rounding floor of the
        // residual, the last 3 detect the stall and still improve the angle from 9e-5 to 5e-6), 12 on
        // lavapipe. The aim of 12 is not met on the CPU.
        f32_passes: 14,
        f32_angle: 1e-4,
    });
}

#[test]
fn rank_deficient_and_tiny_problems_end_cleanly() {
    // 3k > m (the search basis cannot be full rank) and k = m: directions are dropped, not NaN.
    let sigma = [5.0, 4.0, 3.0, 2.0, 1.0];
    let p = prescribed_spectrum(40, 5, &sigma, 0.0, 4);
    for k in [2, 4, 5] {
        let fit = LaePca::new(k).fit(&p.x).unwrap();
        assert!(fit.converged || fit.stalled, "k = {k}");
        let angle = largest_principal_angle(
            &p.directions.columns(0, k).into_owned(),
            &columns(&fit.components),
        );
        assert!(angle <= 1e-8, "k = {k}: angle {angle:e}");
    }
}

#[test]
fn warm_start_from_a_previous_fit() {
    let (m, k) = (200, 16);
    let p = prescribed_spectrum(4 * m, m, &hard_gap_spectrum(m, k), 3.0, 7);
    let x = p.x;
    let cold = LaePca::new(12).fit(&x).unwrap();
    let again = LaePca::new(12)
        .warm_start(cold.components.clone())
        .fit(&x)
        .unwrap();
    assert!(again.converged);
    assert!(
        again.passes < cold.passes,
        "warm {} vs cold {}",
        again.passes,
        cold.passes
    );
    let more = LaePca::new(16)
        .warm_start(cold.components.clone())
        .fit(&x)
        .unwrap();
    let (_, vecs) = reference_eigen(&centred_gram(&x), 16);
    assert!(largest_principal_angle(&vecs, &columns(&more.components)) < 1e-8);
    let wrong = LaePca::new(12)
        .warm_start(DMatrix::zeros(3, 10))
        .fit(&x)
        .unwrap_err();
    assert!(
        wrong.to_string().contains("warm start has 10 features"),
        "{wrong}"
    );
}

#[test]
fn momentum_solver_on_the_paper_problem_in_at_most_150_iterations() {
    let x = paper_problem();
    let (_, vecs) = reference_eigen(&centred_gram(&x), 2);
    let fit = LaePca::new(2).solver(Solver::Momentum).fit(&x).unwrap();
    let err = paper_error(&columns(&fit.components), &vecs);
    assert!(err <= 1e-4, "Σ min ‖u ± û‖ = {err:e}");
    assert!(fit.iterations <= 150, "{} iterations", fit.iterations);
    // Its setup (10 subspace steps on k + 8 columns) counts: 10 · 10 / 2 passes, then one per iteration.
    assert_eq!(fit.passes, 50 + fit.iterations);
}

#[test]
fn checks_every_n_iterations_and_max_iter() {
    let p = prescribed_spectrum(300, 40, &hard_gap_spectrum(40, 6), 0.0, 3);
    let x32 = p.x.map(|v| v as f32);
    let mut fits = vec![(
        "cpu",
        LaePca::new(6)
            .check_every(3)
            .max_iter(7)
            .tol(1e-30)
            .fit(&x32)
            .unwrap(),
    )];
    if gpu_available() {
        let gpu = LaePca::new(6)
            .check_every(3)
            .max_iter(7)
            .tol(1e-30)
            .backend(Backend::Gpu)
            .fit(&x32)
            .unwrap();
        // Checks after the start and 2 iterations, 5, then 7 (max_iter), and the final read-back.
        assert_eq!(gpu.loop_stats.total.host_waits, 4, "gpu");
        fits.push(("gpu", gpu));
    }
    for (path, fit) in fits {
        assert!(!fit.converged, "{path}");
        assert_eq!(fit.iterations, 7, "{path}");
        assert_eq!(fit.passes, 8, "{path}");
        assert_eq!(
            fit.history.len(),
            8,
            "{path}: the start's quantity and one per iteration"
        );
    }
}
