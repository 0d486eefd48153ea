//! The public API: errors, layouts, the Gram accumulation, transforms, determinism, thread safety.

mod common;

use common::*;
use laepca::synthetic::{geometric_spectrum, prescribed_spectrum};
use laepca::{Backend, Error, Fit, GramAccumulator, GramStats, LaePca, Layout, Solver};
use nalgebra::DMatrix;

fn data() -> DMatrix<f64> {
    prescribed_spectrum(60, 8, &geometric_spectrum(8, 10.0, 0.7), 2.0, 1).x
}

fn err(r: laepca::Result<Fit<f64>>) -> (Error, String) {
    let e = r.expect_err("expected an error");
    let msg = e.to_string();
    (e, msg)
}

#[test]
fn k_out_of_range() {
    let x = data();
    let (e, msg) = err(LaePca::new(0).fit(&x));
    assert!(matches!(e, Error::InvalidK { k: 0, max: 8 }), "{e:?}");
    assert!(msg.contains("k = 0"), "{msg}");
    let (e, msg) = err(LaePca::new(9).fit(&x));
    assert!(matches!(e, Error::InvalidK { k: 9, max: 8 }), "{e:?}");
    assert!(msg.contains("min(n_samples, n_features) = 8"), "{msg}");
}

#[test]
fn empty_and_mismatched_shapes() {
    let (e, msg) = err(LaePca::new(1).fit(&DMatrix::<f64>::zeros(0, 5)));
    assert!(
        matches!(
            e,
            Error::EmptyData {
                n_samples: 0,
                n_features: 5
            }
        ),
        "{e:?}"
    );
    assert!(msg.contains("empty"), "{msg}");
    let (e, _) = err(LaePca::new(1).fit_slice::<f64>(&[], 0, 0));
    assert!(matches!(e, Error::EmptyData { .. }), "{e:?}");
    let (e, msg) = err(LaePca::new(1).fit_slice(&[1.0; 10], 3, 4));
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e:?}");
    assert!(msg.contains("3 x 4") && msg.contains("10"), "{msg}");
}

#[test]
fn non_finite_values_are_located() {
    let mut x = data();
    x[(17, 3)] = f64::NAN;
    let (e, msg) = err(LaePca::new(2).fit(&x));
    assert!(
        matches!(
            e,
            Error::NonFinite {
                row: 17,
                col: 3,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(msg.contains("row 17, column 3"), "{msg}");
    // The same entry given features-in-rows is at row 3, column 17 of what the caller passed.
    let (e, _) = err(LaePca::new(2)
        .layout(Layout::FeaturesInRows)
        .fit(&x.transpose()));
    assert!(
        matches!(
            e,
            Error::NonFinite {
                row: 3,
                col: 17,
                ..
            }
        ),
        "{e:?}"
    );
    // A row-major slice.
    let mut v: Vec<f64> = (0..24).map(|i| i as f64).collect();
    v[4 * 3 + 2] = f64::NEG_INFINITY;
    let (e, _) = err(LaePca::new(1).fit_slice(&v, 6, 4));
    assert!(
        matches!(e, Error::NonFinite { row: 3, col: 2, value } if value == f64::NEG_INFINITY),
        "{e:?}"
    );
    let mut acc = GramAccumulator::new(4, true).unwrap();
    acc.push_rows(&v[..8]).unwrap();
    let e = acc.push_rows(&v[8..]).unwrap_err();
    assert!(
        matches!(e, Error::NonFinite { row: 3, col: 2, .. }),
        "rows count across pushes: {e:?}"
    );
}

#[test]
fn parameters_out_of_domain() {
    let x = data();
    for (builder, name) in [
        (LaePca::new(2).lambda(0.0), "lambda"),
        (LaePca::new(2).lambda(-1.0), "lambda"),
        (LaePca::new(2).lambda(f64::NAN), "lambda"),
        (LaePca::new(2).alpha(0.0), "alpha"),
        (LaePca::new(2).alpha(-1e-3), "alpha"),
        (LaePca::new(2).tol(0.0), "tol"),
        (LaePca::new(2).max_iter(0), "max_iter"),
        (LaePca::new(2).check_every(0), "check_every"),
    ] {
        let (e, msg) = err(builder.fit(&x));
        assert!(
            matches!(e, Error::InvalidParameter { name: n, .. } if n == name),
            "{e:?}"
        );
        assert!(msg.contains(name), "{msg}");
    }
}

#[test]
fn check_is_the_fits_own_check() {
    let x = data();
    let (n, m) = x.shape();
    // Every builder the fit refuses before reading the data, check refuses with the same error.
    for builder in [
        LaePca::new(0),
        LaePca::new(9),
        LaePca::new(2).lambda(-1.0),
        LaePca::new(2).alpha(f64::INFINITY),
        LaePca::new(2).tol(0.0),
        LaePca::new(2).max_iter(0),
        LaePca::new(2).check_every(0),
        LaePca::new(2).solver(Solver::ExactUntied).cg_steps(0),
    ] {
        let from_check = builder.check(n, m).expect_err("check refuses it");
        let from_fit = builder.fit(&x).expect_err("fit refuses it");
        assert_eq!(format!("{from_check:?}"), format!("{from_fit:?}"));
    }
    assert!(matches!(
        LaePca::new(1).check(0, 5),
        Err(Error::EmptyData {
            n_samples: 0,
            n_features: 5
        })
    ));
    // The defaults it fills in: auto checks every iteration, the others every 10 (at most max_iter);
    // min(m·k, 16) conjugate-gradient steps.
    let auto = LaePca::new(3).check(n, m).unwrap();
    assert_eq!(
        (auto.k, auto.max_iter, auto.check_every, auto.cg_steps),
        (3, laepca::DEFAULT_MAX_ITER, 1, 16)
    );
    assert_eq!((auto.n_samples, auto.n_features), (n, m));
    assert_eq!((auto.lambda, auto.alpha, auto.tol), (None, None, None));
    let tied = LaePca::new(1)
        .solver(Solver::Tied)
        .max_iter(4)
        .lambda(0.5)
        .check(n, m)
        .unwrap();
    assert_eq!(
        (tied.check_every, tied.cg_steps, tied.lambda),
        (4, 8, Some(0.5))
    );
    let given = LaePca::new(2)
        .check_every(3)
        .cg_steps(5)
        .check(n, m)
        .unwrap();
    assert_eq!((given.check_every, given.cg_steps), (3, 5));
}

#[test]
fn alpha_is_reported_only_for_gradient_solvers() {
    let x = data();
    for solver in Solver::ALL {
        let fit = LaePca::new(2).solver(solver).max_iter(20).fit(&x).unwrap();
        match fit.alpha {
            Some(a) => {
                assert!(solver.uses_alpha(), "{solver}: alpha {a}");
                assert!(a > 0.0 && a.is_finite(), "{solver}: alpha {a}");
            }
            None => assert!(!solver.uses_alpha(), "{solver} has no alpha"),
        }
    }
    let fit = LaePca::new(2)
        .solver(Solver::Tied)
        .alpha(1e-3)
        .max_iter(5)
        .fit(&x)
        .unwrap();
    assert_eq!(fit.alpha, Some(1e-3));
}

#[test]
fn lambda_that_collapses_components_is_named() {
    let sigma = [10.0, 8.0, 6.0, 4.0, 2.0];
    let x = prescribed_spectrum(50, 5, &sigma, 0.0, 2).x;
    // σ² = 100, 64, 36, 16, 4: λ = 40 keeps components 1 and 2 and kills 3.
    let (e, msg) = err(LaePca::new(3).lambda(40.0).fit(&x));
    match &e {
        Error::LambdaTooLarge {
            components,
            max_lambda,
            ..
        } => {
            assert_eq!(components, &vec![3]);
            assert!((max_lambda - 36.0).abs() < 1e-9, "{max_lambda}");
        }
        other => panic!("{other:?}"),
    }
    assert!(msg.contains("[3]") && msg.contains("36"), "{msg}");
    let (e, _) = err(LaePca::new(3).lambda(70.0).fit(&x));
    assert!(
        matches!(&e, Error::LambdaTooLarge { components, .. } if components == &vec![2, 3]),
        "{e:?}"
    );
    // Just below σ_3² is accepted.
    assert!(LaePca::new(3).lambda(35.0).fit(&x).is_ok());
}

#[test]
fn rank_deficient_data() {
    // 4 samples: after centring the rank is at most 3.
    let x = prescribed_spectrum(4, 6, &[3.0, 2.0, 1.0], 1.0, 3).x;
    let (e, msg) = err(LaePca::new(4).fit(&x));
    assert!(
        matches!(e, Error::RankDeficient { k: 4, rank: 3, .. }),
        "{e:?}"
    );
    assert!(msg.contains("rank 3"), "{msg}");
}

#[test]
fn max_iter_is_reported_and_divergence_is_an_error() {
    let x = data();
    let fit = LaePca::new(2)
        .solver(Solver::Tied)
        .max_iter(7)
        .check_every(5)
        .fit(&x)
        .unwrap();
    assert!(!fit.converged && !fit.stalled);
    assert_eq!(fit.iterations, 7);
    assert_eq!(fit.history.len(), 7);
    let (e, msg) = err(LaePca::new(2).solver(Solver::Tied).alpha(10.0).fit(&x));
    assert!(matches!(e, Error::Diverged { solver: "tied", .. }), "{e:?}");
    assert!(msg.contains("diverged"), "{msg}");
}

#[test]
fn layouts_and_slices_agree() {
    let x = data();
    let base = LaePca::new(3).seed(9);
    let a = base.clone().fit(&x).unwrap();
    let b = base
        .clone()
        .layout(Layout::FeaturesInRows)
        .fit(&x.transpose())
        .unwrap();
    let row_major: Vec<f64> = x.transpose().as_slice().to_vec(); // x's rows, one after another
    let c = base.clone().fit_slice(&row_major, 60, 8).unwrap();
    let d = base
        .clone()
        .layout(Layout::FeaturesInRows)
        .fit_slice(x.as_slice(), 8, 60)
        .unwrap();
    for other in [&b, &c, &d] {
        assert!((&a.components - &other.components).norm() < 1e-12);
        assert!((&a.singular_values - &other.singular_values).norm() < 1e-12);
    }
}

#[test]
fn gram_accumulation_keeps_digits_with_a_large_mean() {
    // 1000 + N(0,1)-like data: the naive E[xxᵀ] − μμᵀ would cancel ~6 digits.
    let p = prescribed_spectrum(5000, 12, &geometric_spectrum(12, 80.0, 0.9), 1000.0, 4);
    let reference = centred_gram(&p.x);
    let x32: Vec<f32> = p.x.transpose().iter().map(|&v| v as f32).collect(); // row-major
                                                                             // The f32 rounding of the input itself is part of what any method sees: compare to the f64 Gram of
                                                                             // the rounded data.
    let rounded =
        DMatrix::from_row_slice(5000, 12, &x32.iter().map(|&v| v as f64).collect::<Vec<_>>());
    let reference_rounded = centred_gram(&rounded);
    let mut acc = GramAccumulator::new(12, true).unwrap();
    for chunk in x32.chunks(12 * 777) {
        acc.push_rows(chunk).unwrap();
    }
    let stats: GramStats = acc.finish().unwrap();
    let rel = (&stats.c - &reference_rounded).norm() / reference_rounded.norm();
    assert!(rel <= 1e-5, "relative error {rel:e}");
    assert!((&reference - &reference_rounded).norm() / reference.norm() < 1e-3);
    assert!((stats.mean[0] - rounded.column(0).mean()).abs() < 1e-9);
    // And the fit from the statistics equals the fit from the data (same blocks: one push).
    let mut acc = GramAccumulator::new(12, true).unwrap();
    acc.push_rows(&x32).unwrap();
    let from_stats: Fit<f32> = LaePca::new(2).fit_gram(&acc.finish().unwrap()).unwrap();
    let from_slice: Fit<f32> = LaePca::new(2).fit_slice(&x32, 5000, 12).unwrap();
    assert_eq!(from_stats.components, from_slice.components);
}

#[test]
fn without_centring_the_gram_is_raw() {
    let x = data();
    let fit = LaePca::new(2).center(false).tol(1e-12).fit(&x).unwrap();
    assert!(fit.mean.iter().all(|&v| v == 0.0));
    let (vals, vecs) = reference_eigen(&(x.transpose() * &x), 2);
    assert!(largest_principal_angle(&vecs, &columns(&fit.components)) < 1e-6);
    assert!((fit.singular_values[0] - vals[0].sqrt()).abs() < 1e-8 * vals[0].sqrt());
}

#[test]
fn sklearn_conventions() {
    let x = data();
    let fit = LaePca::new(4).tol(1e-12).fit(&x).unwrap();
    let c = centred_gram(&x);
    assert_sign_convention(&fit.components);
    for i in 0..4 {
        let row = fit.components.row(i);
        assert!((row.norm() - 1.0).abs() < 1e-12);
        let s2 = fit.singular_values[i].powi(2);
        assert!((fit.explained_variance[i] - s2 / 59.0).abs() < 1e-12 * s2);
        assert!((fit.explained_variance_ratio[i] - s2 / c.trace()).abs() < 1e-12);
        if i > 0 {
            assert!(fit.singular_values[i] <= fit.singular_values[i - 1]);
        }
    }
    for j in 0..8 {
        assert!((fit.mean[j] - x.column(j).mean()).abs() < 1e-12);
    }
}

#[test]
fn transform_and_inverse() {
    let x = data();
    let fit = LaePca::new(8).tol(1e-12).fit(&x).unwrap();
    let scores = fit.transform(&x).unwrap();
    assert_eq!(scores.shape(), (60, 8));
    // With all components the round trip is exact.
    let back = fit.inverse_transform(&scores).unwrap();
    assert!((&back - &x).norm() < 1e-9 * x.norm());
    // Scores are the centred data projected on the components.
    let mut xc = x.clone();
    for mut col in xc.column_iter_mut() {
        let m = col.mean();
        col.add_scalar_mut(-m);
    }
    assert!((&scores - &xc * fit.components.transpose()).norm() < 1e-9);
    let e = fit.transform(&DMatrix::<f64>::zeros(3, 7)).unwrap_err();
    assert!(
        matches!(e, Error::ShapeMismatch { .. }) && e.to_string().contains("8 features"),
        "{e}"
    );
    let e = fit
        .inverse_transform(&DMatrix::<f64>::zeros(3, 2))
        .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
    let mut bad = x.clone();
    bad[(2, 5)] = f64::INFINITY;
    assert!(matches!(
        fit.transform(&bad).unwrap_err(),
        Error::NonFinite { row: 2, col: 5, .. }
    ));
}

#[test]
fn same_seed_same_bits() {
    let x = data();
    let x32 = x.map(|v| v as f32);
    for solver in Solver::ALL {
        let a = LaePca::new(3).solver(solver).seed(42).fit(&x32).unwrap();
        let b = LaePca::new(3).solver(solver).seed(42).fit(&x32).unwrap();
        assert_eq!(a.components.as_slice(), b.components.as_slice(), "{solver}");
        assert_eq!(a.decoder.as_slice(), b.decoder.as_slice(), "{solver}");
        assert_eq!(
            a.singular_values.as_slice(),
            b.singular_values.as_slice(),
            "{solver}"
        );
        assert_eq!(
            a.history.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.history.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        let c = LaePca::new(3).solver(solver).seed(43).fit(&x32).unwrap();
        assert_ne!(
            a.decoder.as_slice(),
            c.decoder.as_slice(),
            "{solver}: the seed must matter"
        );
    }
}

#[test]
fn public_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<LaePca>();
    check::<Fit<f32>>();
    check::<Fit<f64>>();
    check::<Error>();
    check::<Solver>();
    check::<Backend>();
    check::<GramStats>();
    check::<GramAccumulator>();
}

/// The statistics of the rows `range` of a row-major f64 matrix with 9 features.
fn stats_of(rows: &[f64], range: std::ops::Range<usize>, center: bool) -> GramStats {
    let mut acc = GramAccumulator::new(9, center).unwrap();
    acc.push_rows(&rows[range.start * 9..range.end * 9])
        .unwrap();
    acc.finish().unwrap()
}

#[test]
fn merged_gram_statistics_do_not_depend_on_the_split() {
    // Mean 500 against a spread of ~1: a merge that lost the centring would be off by ~1e5 relative.
    let p = prescribed_spectrum(1000, 9, &geometric_spectrum(9, 40.0, 0.8), 500.0, 11);
    let rows: Vec<f64> = p.x.transpose().iter().copied().collect();
    for center in [true, false] {
        let whole = stats_of(&rows, 0..1000, center);
        let s = |r| stats_of(&rows, r, center);
        // Left fold, right fold and a permuted, uneven tree of the same rows.
        let left = s(0..1)
            .merge(&s(1..300))
            .unwrap()
            .merge(&s(300..1000))
            .unwrap();
        let right = s(0..1)
            .merge(&s(1..300).merge(&s(300..1000)).unwrap())
            .unwrap();
        let tree = (s(700..1000).merge(&s(0..250)).unwrap())
            .merge(&s(250..251).merge(&s(251..700)).unwrap())
            .unwrap();
        for merged in [&left, &right, &tree] {
            assert_eq!(merged.n_samples, 1000);
            let rel_c = (&merged.c - &whole.c).norm() / whole.c.norm();
            let rel_mean = (&merged.mean - &whole.mean).norm() / whole.mean.norm().max(1.0);
            assert!(rel_c < 1e-11, "center {center}: C off by {rel_c:e}");
            assert!(
                rel_mean < 1e-14,
                "center {center}: mean off by {rel_mean:e}"
            );
        }
        if center {
            // Against the f64 reference too, not only against the accumulator.
            let reference = centred_gram(&p.x);
            assert!((&tree.c - &reference).norm() / reference.norm() < 1e-11);
        }
    }
    let other = GramStats {
        c: DMatrix::zeros(3, 3),
        mean: nalgebra::DVector::zeros(3),
        n_samples: 5,
    };
    let e = stats_of(&rows, 0..10, true).merge(&other).unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e:?}");
}

#[test]
fn a_set_cancel_flag_stops_the_fit() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let x = data();
    // Set before the fit: the Gram accumulation stops at its first block.
    let flag = Arc::new(AtomicBool::new(true));
    let (e, msg) = err(LaePca::new(2).cancel_flag(flag.clone()).fit(&x));
    assert_eq!(e, Error::Cancelled);
    assert!(msg.contains("cancelled"), "{msg}");
    // Set from another thread's point of view during the loop: the next stopping check stops it.
    let flag = Arc::new(AtomicBool::new(false));
    let setter = flag.clone();
    let checks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = checks.clone();
    let fit = LaePca::new(2)
        .solver(Solver::Untied)
        .tol(1e-300)
        .cancel_flag(flag)
        .on_progress(move |p| {
            if p.stopping_quantity.is_some() {
                counted.fetch_add(1, Ordering::Relaxed);
                setter.store(true, Ordering::Relaxed);
            }
        })
        .fit(&x);
    assert_eq!(err(fit).0, Error::Cancelled);
    assert_eq!(
        checks.load(Ordering::Relaxed),
        1,
        "one check, then the stop"
    );
    // An unset flag changes nothing.
    let plain = LaePca::new(2).fit(&x).unwrap();
    let flagged = LaePca::new(2)
        .cancel_flag(Arc::new(AtomicBool::new(false)))
        .fit(&x)
        .unwrap();
    assert_eq!(plain.components, flagged.components);
}
