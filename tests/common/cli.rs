//! Helpers of the tests that run the `laepca` binary: running it, reading the result directory it
//! writes, checking the results against an f64 reference, and expecting a clean failure. Not a module
//! of `common` (the examples and benchmarks include that, and they have no binary to run): a test
//! includes it with `#[path = "common/cli.rs"] mod cli_helpers;` beside `mod common;`.
#![allow(dead_code)]

use crate::common::{
    assert_sign_convention, centred_gram, columns, largest_principal_angle, orthonormal,
    reference_eigen, vector_angle,
};
use assert_cmd::Command;
use laepca::io::read_npy;
use nalgebra::DMatrix;
use serde_json::Value;
use std::path::Path;

/// The binary under test.
pub fn laepca() -> Command {
    Command::new(env!("CARGO_BIN_EXE_laepca"))
}

/// A path as an argument.
pub fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Arguments as owned strings.
pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
}

/// Runs the binary with `args` and expects success (stderr shown otherwise); returns its output.
pub fn succeeds<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> std::process::Output {
    let output = laepca().args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{:?} failed: {}",
        args.iter().map(|a| a.as_ref()).collect::<Vec<_>>(),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The scores the written arrays give: `(x − mean) componentsᵀ`.
pub fn expected_scores(x: &DMatrix<f64>, r: &Results) -> DMatrix<f64> {
    let mut xc = x.clone();
    for mut row in xc.row_iter_mut() {
        for (j, v) in row.iter_mut().enumerate() {
            *v -= r.mean[j];
        }
    }
    xc * r.components.transpose()
}

/// The numbers of a summary.json array.
pub fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

/// What `laepca fit` wrote into its directory.
pub struct Results {
    pub components: DMatrix<f64>,
    pub singular_values: Vec<f64>,
    pub explained_variance: Vec<f64>,
    pub explained_variance_ratio: Vec<f64>,
    pub mean: Vec<f64>,
    pub summary: Value,
}

/// A 2-D .npy file as a matrix.
pub fn read_matrix_npy(path: &Path) -> DMatrix<f64> {
    let a = read_npy::<f64>(path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.shape.len(), 2, "{}", path.display());
    DMatrix::from_row_slice(a.shape[0], a.shape[1], &a.data)
}

/// A 1-D .npy file of `len` values.
pub fn read_vector_npy(path: &Path, len: usize) -> Vec<f64> {
    let a = read_npy::<f64>(path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.shape, vec![len], "{}", path.display());
    a.data
}

/// The result directory of a fit of `k` components of `m` features (no temporary file may be left).
pub fn read_results(dir: &Path, k: usize, m: usize) -> Results {
    let components = read_matrix_npy(&dir.join("components.npy"));
    assert_eq!(components.shape(), (k, m));
    let summary: Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    // No temporary file is left behind.
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "left over: {name}");
    }
    Results {
        components,
        singular_values: read_vector_npy(&dir.join("singular_values.npy"), k),
        explained_variance: read_vector_npy(&dir.join("explained_variance.npy"), k),
        explained_variance_ratio: read_vector_npy(&dir.join("explained_variance_ratio.npy"), k),
        mean: read_vector_npy(&dir.join("mean.npy"), m),
        summary,
    }
}

/// Against an f64 reference (SymmetricEigen of the centred Gram matrix): principal angles of the
/// components, relative errors of the singular values, the variances and the mean.
#[allow(clippy::needless_range_loop)] // i indexes several arrays
pub fn check_reference(r: &Results, x: &DMatrix<f64>, k: usize, max_angle: f64, max_rel: f64) {
    let c = centred_gram(x);
    let (vals, vecs) = reference_eigen(&c, k);
    let angle = largest_principal_angle(&vecs, &orthonormal(&columns(&r.components)));
    assert!(
        angle < max_angle,
        "principal angle {angle:e} >= {max_angle:e}"
    );
    for i in 0..k {
        // Each component is unit length and (up to sign) the i-th eigenvector.
        let norm = r.components.row(i).norm();
        assert!((norm - 1.0).abs() < 1e-5, "component {i} has norm {norm}");
        let a = vector_angle(
            &r.components.row(i).iter().copied().collect::<Vec<_>>(),
            vecs.column(i).as_slice(),
        );
        assert!(a < max_angle * 10.0, "component {i}: angle {a:e}");
        let sigma = vals[i].sqrt();
        let rel = (r.singular_values[i] - sigma).abs() / sigma;
        assert!(
            rel < max_rel,
            "singular value {i}: {} vs {sigma} (rel {rel:e})",
            r.singular_values[i]
        );
        let ev = vals[i] / (x.nrows() - 1) as f64;
        assert!((r.explained_variance[i] - ev).abs() < max_rel.max(1e-6) * ev);
        let evr = vals[i] / c.trace();
        assert!((r.explained_variance_ratio[i] - evr).abs() < max_rel.max(1e-6) * evr + 1e-7);
    }
    for j in 0..x.ncols() {
        let mu = x.column(j).mean();
        assert!(
            (r.mean[j] - mu).abs() < 1e-5 * (1.0 + mu.abs()),
            "mean {j}: {} vs {mu}",
            r.mean[j]
        );
    }
    assert_sign_convention(&r.components);
}

/// Runs the binary and expects a clean failure: the exit code, one line on stderr naming the problem,
/// no panic. Returns stderr.
pub fn fails(args: &[String], code: i32, needle: &str) -> String {
    let output = laepca().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "{args:?}: stderr {err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected '{needle}' in: {err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    if code == 1 {
        assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
        assert!(err.starts_with("laepca: error: "), "{err}");
    }
    err
}
