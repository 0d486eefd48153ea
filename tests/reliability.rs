//! The library's errors for inputs that are no data problem: a divergence worded for the solver that
//! ran, a NaN warm start, an indefinite hand-built C, a corrupted saved model, a check interval of
//! usize::MAX; and the CLI's messages for extreme parameters and control characters.

mod common;

use laepca::{Error, GramStats, LaePca, Projection, Solver};
use nalgebra::{DMatrix, DVector};

fn data() -> DMatrix<f64> {
    DMatrix::from_fn(60, 5, |i, j| {
        (((i * 13 + j * 7 + i * j) % 23) as f64) * (1.0 + j as f64)
    })
}

#[test]
fn divergence_is_worded_for_the_solver() {
    let with_alpha = Error::Diverged {
        solver: "tied",
        iteration: 3,
    }
    .to_string();
    assert!(with_alpha.ends_with("reduce alpha"), "{with_alpha}");
    for solver in ["auto", "exact-tied", "exact-untied", "exact-sync"] {
        let e = Error::Diverged {
            solver,
            iteration: 3,
        }
        .to_string();
        assert!(!e.contains("alpha"), "{e}");
        assert!(e.contains("no step size"), "{e}");
    }
}

#[test]
fn nan_warm_start_is_named_as_such() {
    let mut start = DMatrix::from_element(2, 5, 0.3);
    start[(1, 3)] = f64::NAN;
    let e = LaePca::new(2).warm_start(start).fit(&data()).unwrap_err();
    assert!(
        matches!(e, Error::NonFiniteWarmStart { row: 1, col: 3, .. }),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("in the warm start at row 1, column 3"),
        "{e}"
    );
}

fn stats(c: DMatrix<f64>) -> GramStats {
    let m = c.nrows();
    GramStats {
        c,
        mean: DVector::zeros(m),
        n_samples: 100,
    }
}

#[test]
fn indefinite_gram_matrices_are_refused() {
    // A negative diagonal entry; a 2 x 2 minor below zero; an indefinite C whose diagonal and minors
    // pass (eigenvalues 1 + 0.9·(1 ± ...): the smallest is negative).
    let negative = DMatrix::from_diagonal(&DVector::from_vec(vec![4.0, 3.0, -1.0]));
    let minor = DMatrix::from_row_slice(3, 3, &[1.0, 2.0, 0.0, 2.0, 1.0, 0.0, 0.0, 0.0, 3.0]);
    let subtle = DMatrix::from_row_slice(3, 3, &[1.0, 0.9, 0.9, 0.9, 1.0, -0.9, 0.9, -0.9, 1.0]);
    assert!(subtle.clone().symmetric_eigen().eigenvalues.min() < -0.5);
    for c in [negative, minor, subtle] {
        for solver in [Solver::Auto, Solver::ExactTied, Solver::Tied] {
            let e = LaePca::new(1)
                .solver(solver)
                .fit_gram::<f64>(&stats(c.clone()))
                .unwrap_err();
            assert!(
                matches!(e, Error::NotSemidefinite { .. }),
                "{solver:?}: {e:?}"
            );
            assert!(e.to_string().contains("not positive semi-definite"), "{e}");
        }
    }
    // Above the Cholesky check's size, the diagonal and the 2 x 2 minors are checked.
    let mut big = DMatrix::<f64>::identity(600, 600);
    big[(599, 599)] = -1.0;
    let e = LaePca::new(1).fit_gram::<f64>(&stats(big)).unwrap_err();
    assert!(e.to_string().contains("diagonal entry (599, 599)"), "{e}");
    // A true Gram matrix (with a zero-variance feature: a singular C) passes.
    let mut x = data();
    x.column_mut(2).fill(1.0);
    let c = common::centred_gram(&x);
    assert!(LaePca::new(2).fit_gram::<f64>(&stats(c)).is_ok());
}

#[test]
fn corrupted_models_are_refused() {
    let good = DMatrix::from_row_slice(1, 3, &[1.0, 0.0, 0.0]);
    let mean = DVector::from_vec(vec![0.0, 1.0, 2.0]);
    assert!(Projection::new(good.clone(), mean.clone()).is_ok());
    let mut nan = good.clone();
    nan[(0, 1)] = f64::NAN;
    let mut inf_mean = mean.clone();
    inf_mean[2] = f64::INFINITY;
    let too_many = DMatrix::from_element(4, 3, 0.5);
    for (c, m, needle) in [
        (
            nan,
            mean.clone(),
            "non-finite value NaN in the components at row 0, column 1",
        ),
        (
            good,
            inf_mean,
            "non-finite value inf in the mean at index 2",
        ),
        (too_many, mean, "4 components of 3 features"),
    ] {
        let e = Projection::new(c, m).unwrap_err();
        assert!(matches!(e, Error::InvalidModel { .. }), "{e:?}");
        assert!(e.to_string().contains(needle), "{e}");
    }
}

#[test]
fn check_every_beyond_max_iter_is_one_check_at_the_end() {
    let fit = LaePca::new(2)
        .solver(Solver::Tied)
        .max_iter(30)
        .check_every(usize::MAX)
        .fit(&data())
        .unwrap();
    assert_eq!(fit.iterations, 30);
    assert_eq!(fit.history.len(), 30);
}

#[test]
fn extreme_parameters_and_control_characters_in_messages() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("x\u{1b}[31m.csv");
    std::fs::write(&input, "1,2,3\n4,5,6\n7,8,\u{7}9\n").unwrap();
    let run = |extra: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_laepca"))
            .arg("fit")
            .arg(&input)
            .args(["-k", "1", "--backend", "cpu", "-o"])
            .arg(dir.path().join("out"))
            .args(extra)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        let line = err
            .lines()
            .find(|l| l.starts_with("laepca: error: "))
            .unwrap_or_default()
            .to_string();
        (o.status.code(), line)
    };
    let (code, line) = run(&[]);
    assert_eq!(code, Some(1));
    assert!(
        line.contains("x\\u{1b}[31m.csv: line 3, column 3: '\\u{7}9'"),
        "{line}"
    );
    assert!(!line.contains('\u{1b}') && !line.contains('\u{7}'));
    std::fs::write(&input, "1,2,3\n4,5,6\n7,8,10\n").unwrap();
    let (code, line) = run(&["--lambda", "1e308"]);
    assert_eq!(code, Some(1));
    assert!(line.contains("lambda = 1e308 collapses"), "{line}");
    assert!(!line.contains("00000000000"), "{line}");
    for v in ["-inf", "-1e308", "nan"] {
        let (code, line) = run(&["--lambda", v]);
        assert_eq!(code, Some(1), "{v}");
        assert!(
            line.contains("invalid parameter --lambda = "),
            "{v}: {line}"
        );
        assert!(line.len() < 120, "{line}");
    }
}
