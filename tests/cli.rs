//! End-to-end tests of the `laepca` binary: every input format, the written arrays against the library's
//! result and an f64 reference, --json, transform, and every bad input of the CLI issue (exit code and
//! message). Small matrices, the CPU backend (one `--backend auto` case).

mod common;

use assert_cmd::Command;
use common::files::*;
use common::*;
use laepca::io::read_npy;
use laepca::synthetic::{geometric_spectrum, prescribed_spectrum};
use laepca::{Backend, LaePca, Real};
use nalgebra::DMatrix;
use serde_json::Value;
use std::path::Path;

const N: usize = 200;
const M: usize = 12;
const K: usize = 3;

fn laepca() -> Command {
    Command::new(env!("CARGO_BIN_EXE_laepca"))
}

/// N x M data with centred singular values 50 · 0.7^i and mean 3.
fn data(seed: u64) -> DMatrix<f64> {
    prescribed_spectrum(N, M, &geometric_spectrum(M, 50.0, 0.7), 3.0, seed).x
}

/// Integer-valued data in 0..=255 (for the integer dtypes and IDX).
fn int_data(seed: u64) -> DMatrix<f64> {
    data(seed).map(|v| (v * 6.0 + 100.0).round().clamp(0.0, 255.0))
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

// ---------------------------------------------------------------------------------------------------
// Reading the results and checking them.

struct Results {
    components: DMatrix<f64>,
    singular_values: Vec<f64>,
    explained_variance: Vec<f64>,
    explained_variance_ratio: Vec<f64>,
    mean: Vec<f64>,
    summary: Value,
}

fn read_matrix_npy(path: &Path) -> DMatrix<f64> {
    let a = read_npy::<f64>(path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.shape.len(), 2, "{}", path.display());
    DMatrix::from_row_slice(a.shape[0], a.shape[1], &a.data)
}

fn read_vector_npy(path: &Path, len: usize) -> Vec<f64> {
    let a = read_npy::<f64>(path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.shape, vec![len], "{}", path.display());
    a.data
}

fn read_results(dir: &Path, k: usize, m: usize) -> Results {
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
fn check_reference(r: &Results, x: &DMatrix<f64>, k: usize, max_angle: f64, max_rel: f64) {
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
    // scikit-learn's sign convention: the largest-magnitude entry of each component is positive.
    for i in 0..k {
        let row = r.components.row(i);
        let big = row
            .iter()
            .copied()
            .fold(0.0f64, |a, v| if v.abs() > a.abs() { v } else { a });
        assert!(big > 0.0, "component {i} has a negative largest entry");
    }
}

/// Against the library run in-process on the same data and settings (the CLI's f32 output rounding
/// allowed for).
fn check_library<T: Real>(r: &Results, x: &DMatrix<T>, k: usize) {
    let fit = LaePca::new(k).backend(Backend::Cpu).fit(x).unwrap();
    for i in 0..k {
        for j in 0..fit.n_features {
            let (a, b) = (r.components[(i, j)], fit.components[(i, j)].as_f64());
            assert!(
                (a - b).abs() < 2e-6,
                "component ({i}, {j}): cli {a} vs library {b}"
            );
        }
        let (a, b) = (r.singular_values[i], fit.singular_values[i].as_f64());
        assert!(
            (a - b).abs() < 1e-6 * b,
            "singular value {i}: cli {a} vs library {b}"
        );
    }
    assert_eq!(r.summary["iterations"], fit.iterations);
    assert_eq!(r.summary["passes"], fit.passes);
    assert_eq!(r.summary["solver"], fit.solver.name());
}

/// Runs `laepca fit` and expects success.
fn fit_ok(input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let output = laepca()
        .args([
            "fit",
            &s(input),
            "-k",
            &K.to_string(),
            "-o",
            &s(out),
            "--backend",
            "cpu",
        ])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "fit {} failed: {}",
        input.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs the binary and expects a clean failure: the exit code, one line on stderr naming the problem,
/// no panic. Returns stderr.
fn fails(args: &[String], code: i32, needle: &str) -> String {
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

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------------

#[test]
fn fit_npy_float32_writes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let x = data(1);
    let x32 = x.map(|v| v as f32);
    let input = dir.path().join("x.npy");
    write_f32_npy(&input, &x);
    let out = dir.path().join("out");
    let output = fit_ok(&input, &out, &["--scores", "--plot"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("200 samples x 12 features, k = 3"),
        "{stdout}"
    );
    assert!(
        stdout.contains("singular value") && stdout.contains("wrote "),
        "{stdout}"
    );

    let r = read_results(&out, K, M);
    check_library(&r, &x32, K);
    check_reference(&r, &x32.map(|v| v as f64), K, 1e-3, 1e-4);
    assert_eq!(r.summary["precision"], "f32");
    assert_eq!(r.summary["dtype"], "float32");

    // Scores: (x − mean) componentsᵀ.
    let scores = read_matrix_npy(&out.join("scores.npy"));
    assert_eq!(scores.shape(), (N, K));
    let mut xc = x32.map(|v| v as f64);
    for mut row in xc.row_iter_mut() {
        for (j, v) in row.iter_mut().enumerate() {
            *v -= r.mean[j];
        }
    }
    let expect = xc * r.components.transpose();
    let err = (&scores - &expect).abs().max();
    assert!(err < 1e-4 * expect.abs().max(), "scores off by {err}");

    for svg in ["convergence.svg", "scree.svg"] {
        let text = std::fs::read_to_string(out.join(svg)).unwrap();
        assert!(
            text.starts_with("<svg") && text.trim_end().ends_with("</svg>"),
            "{svg}"
        );
    }
    assert!(std::fs::read_to_string(out.join("convergence.svg"))
        .unwrap()
        .contains("stopping quantity"));
    let files: Vec<&str> = r.summary["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "components.npy",
            "singular_values.npy",
            "explained_variance.npy",
            "explained_variance_ratio.npy",
            "mean.npy",
            "scores.npy",
            "convergence.svg",
            "scree.svg",
            "summary.json"
        ]
    );
}

#[test]
fn fit_npy_dtypes_orders_and_byte_orders() {
    let dir = tempfile::tempdir().unwrap();
    let x = int_data(2);
    type Enc = fn(f64) -> Vec<u8>;
    let cases: [(&str, bool, Enc, f64); 6] = [
        ("<f8", true, |v| v.to_le_bytes().to_vec(), 1e-6),
        (">f8", false, |v| v.to_be_bytes().to_vec(), 1e-6),
        (">i2", true, |v| (v as i16).to_be_bytes().to_vec(), 1e-3),
        ("|u1", false, |v| vec![v as u8], 1e-3),
        ("<i4", false, |v| (v as i32).to_le_bytes().to_vec(), 1e-6),
        ("<u8", true, |v| (v as u64).to_le_bytes().to_vec(), 1e-6),
    ];
    for (i, (descr, fortran, enc, tol)) in cases.into_iter().enumerate() {
        let input = dir.path().join(format!("x{i}.npy"));
        write_npy_as(&input, &x, descr, fortran, enc);
        let out = dir.path().join(format!("out{i}"));
        fit_ok(&input, &out, &[]);
        let r = read_results(&out, K, M);
        check_reference(&r, &x, K, tol, tol);
        if tol < 1e-4 {
            check_library(&r, &x, K); // read as f64: the library's f64 result
        } else {
            check_library(&r, &x.map(|v| v as f32), K);
        }
    }
}

#[test]
fn fit_csv_with_header_and_gzipped_tsv() {
    let dir = tempfile::tempdir().unwrap();
    let x = data(3);
    let csv = dir.path().join("x.csv");
    write_delimited(&csv, &x, ",", true);
    let out = dir.path().join("csv");
    fit_ok(&csv, &out, &[]);
    let r = read_results(&out, K, M);
    assert_eq!(r.summary["n_samples"], N);
    assert_eq!(r.summary["precision"], "f64");
    check_library(&r, &x, K);
    check_reference(&r, &x, K, 1e-5, 1e-6);

    let tsv = dir.path().join("x.tsv.gz");
    write_delimited(&tsv, &x, "\t", false);
    let out = dir.path().join("tsv");
    fit_ok(&tsv, &out, &[]);
    let r = read_results(&out, K, M);
    check_reference(&r, &x, K, 1e-5, 1e-6);
}

#[test]
fn fit_matrix_market_coordinate_and_array() {
    let dir = tempfile::tempdir().unwrap();
    // Some exact zeros, as in a count matrix.
    let x = int_data(4).map(|v| if v < 100.0 { 0.0 } else { v - 100.0 });
    let coo = dir.path().join("x.mtx");
    write_mtx_coordinate(&coo, &x);
    let out = dir.path().join("coo");
    fit_ok(&coo, &out, &[]);
    let r = read_results(&out, K, M);
    check_library(&r, &x, K);
    check_reference(&r, &x, K, 1e-5, 1e-6);

    let arr = dir.path().join("a.mtx");
    write_mtx_array(&arr, &x);
    let out = dir.path().join("arr");
    fit_ok(&arr, &out, &[]);
    check_reference(&read_results(&out, K, M), &x, K, 1e-5, 1e-6);
}

#[test]
fn fit_idx_images() {
    let dir = tempfile::tempdir().unwrap();
    let x = int_data(5);
    let input = dir.path().join("train-images-idx3-ubyte.gz");
    write_idx_images_gz(&input, &x, 3, 4);
    let out = dir.path().join("out");
    fit_ok(&input, &out, &[]);
    let r = read_results(&out, K, M);
    assert_eq!(r.summary["format"], "idx");
    assert_eq!(r.summary["n_features"], M);
    check_library(&r, &x.map(|v| v as f32), K);
    check_reference(&r, &x, K, 1e-3, 1e-4);
}

#[test]
fn json_summary_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let x = data(6);
    let input = dir.path().join("x.csv");
    write_delimited(&input, &x, ",", false);
    let out = dir.path().join("out");
    let output = fit_ok(&input, &out, &["--json", "--seed", "3"]);
    let printed: Value = serde_json::from_slice(&output.stdout).expect("stdout is only JSON");
    let file: Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(printed, file);
    let r = read_results(&out, K, M);
    assert_eq!(printed["n_samples"], N);
    assert_eq!(printed["n_features"], M);
    assert_eq!(printed["k"], K);
    assert_eq!(printed["backend"], "cpu");
    assert!(printed["adapter"].is_null());
    assert_eq!(printed["seed"], 3);
    assert!(printed["solver"].is_string());
    assert!(printed["iterations"].as_u64().unwrap() > 0);
    assert_eq!(printed["converged"], true);
    assert!(printed["lambda"].as_f64().unwrap() > 0.0);
    assert!(printed.get("alpha").is_some());
    let sv: Vec<f64> = printed["singular_values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for (a, b) in sv.iter().zip(&r.singular_values) {
        assert!((a - b).abs() < 1e-6 * b, "{a} vs {b}");
    }
    assert_eq!(
        printed["explained_variance_ratio"]
            .as_array()
            .unwrap()
            .len(),
        K
    );
    for key in ["load", "gram", "iterate", "finish", "total"] {
        let t = printed["timings_ms"][key]
            .as_f64()
            .unwrap_or_else(|| panic!("timings_ms.{key}"));
        assert!(t >= 0.0);
    }
    // Flags reach the library.
    let out2 = dir.path().join("out2");
    let output = fit_ok(
        &input,
        &out2,
        &[
            "--json",
            "--solver",
            "exact",
            "--lambda",
            "1.5",
            "--tol",
            "1e-10",
            "--max-iter",
            "5000",
            "--no-center",
        ],
    );
    let v: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(v["solver"], "exact-tied");
    assert_eq!(v["solver_requested"], "exact-tied");
    assert_eq!(v["lambda"], 1.5);
    assert_eq!(v["tol"], 1e-10);
    assert_eq!(v["center"], false);
    assert!(v["alpha"].is_null());
    let r = read_results(&out2, K, M);
    assert!(r.mean.iter().all(|&m| m == 0.0));
    // Without centring the components are the top eigenvectors of XᵀX.
    let (_, vecs) = reference_eigen(&(x.transpose() * &x), K);
    let angle = largest_principal_angle(&vecs, &orthonormal(&columns(&r.components)));
    assert!(angle < 1e-5, "{angle:e}");
    let output = fit_ok(
        &input,
        &dir.path().join("out3"),
        &["--json", "--solver", "tied", "--max-iter", "7"],
    );
    let v: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(v["solver"], "tied");
    assert_eq!(v["converged"], false);
    assert!(v["alpha"].as_f64().unwrap() > 0.0);
    assert!(v["iterations"].as_u64().unwrap() <= 7);
}

#[test]
fn transform_new_data() {
    let dir = tempfile::tempdir().unwrap();
    let x = data(7);
    let train = dir.path().join("train.npy");
    write_npy_as(&train, &x, "<f8", false, |v| v.to_le_bytes().to_vec());
    let model = dir.path().join("model");
    fit_ok(&train, &model, &[]);
    let r = read_results(&model, K, M);

    // New samples from another draw, as CSV.
    let new = data(8).rows(0, 50).into_owned();
    let input = dir.path().join("new.csv");
    write_delimited(&input, &new, ",", true);
    let scores_path = dir.path().join("scores.npy");
    let output = laepca()
        .args([
            "transform",
            "--model",
            &s(&model),
            &s(&input),
            "-o",
            &s(&scores_path),
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let scores = read_matrix_npy(&scores_path);
    assert_eq!(scores.shape(), (50, K));
    // Against the arrays on disk ...
    let mut xc = new.clone();
    for mut row in xc.row_iter_mut() {
        for (j, v) in row.iter_mut().enumerate() {
            *v -= r.mean[j];
        }
    }
    let expect = &xc * r.components.transpose();
    assert!((&scores - &expect).abs().max() < 1e-5 * expect.abs().max());
    // ... and the library's own transform.
    let fit = LaePca::new(K).backend(Backend::Cpu).fit(&x).unwrap();
    let lib = fit.transform(&new).unwrap();
    assert!((&scores - &lib).abs().max() < 1e-4 * lib.abs().max());

    // The same data with features in rows.
    let input_t = dir.path().join("new_t.npy");
    write_f32_npy(&input_t, &new.transpose());
    let scores_t = dir.path().join("scores_t.npy");
    let output = laepca()
        .args([
            "transform",
            "--model",
            &s(&model),
            &s(&input_t),
            "-o",
            &s(&scores_t),
            "--features-in-rows",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let st = read_matrix_npy(&scores_t);
    assert!((&st - &expect).abs().max() < 1e-4 * expect.abs().max());
}

#[test]
fn features_in_rows_matches_samples_in_rows() {
    let dir = tempfile::tempdir().unwrap();
    let x = data(9);
    let rows = dir.path().join("x.npy");
    write_npy_as(&rows, &x, "<f8", false, |v| v.to_le_bytes().to_vec());
    let cols = dir.path().join("xt.npy");
    write_npy_as(&cols, &x.transpose(), "<f8", true, |v| {
        v.to_le_bytes().to_vec()
    });
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    fit_ok(&rows, &a, &["--scores"]);
    fit_ok(&cols, &b, &["--scores", "--features-in-rows"]);
    let (ra, rb) = (read_results(&a, K, M), read_results(&b, K, M));
    assert_eq!(rb.summary["layout"], "features-in-rows");
    assert_eq!(rb.summary["n_samples"], N);
    assert!((&ra.components - &rb.components).abs().max() < 1e-6);
    check_reference(&rb, &x, K, 1e-5, 1e-6);
    let (sa, sb) = (
        read_matrix_npy(&a.join("scores.npy")),
        read_matrix_npy(&b.join("scores.npy")),
    );
    assert_eq!(sb.shape(), (N, K));
    assert!((&sa - &sb).abs().max() < 1e-4 * sa.abs().max());
}

#[test]
fn backend_auto_runs_somewhere() {
    let dir = tempfile::tempdir().unwrap();
    let x = data(10);
    let input = dir.path().join("x.npy");
    write_f32_npy(&input, &x);
    let out = dir.path().join("out");
    let output = laepca()
        .args([
            "fit",
            &s(&input),
            "-k",
            "2",
            "-o",
            &s(&out),
            "--backend",
            "auto",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v: Value = serde_json::from_slice(&output.stdout).unwrap();
    match v["backend"].as_str().unwrap() {
        "gpu" => {
            assert!(v["adapter"]["name"].is_string() && v["adapter"]["device_type"].is_string())
        }
        "cpu" => assert!(v["adapter"].is_null()),
        other => panic!("backend {other}"),
    }
    let r = read_results(&out, 2, M);
    check_reference(&r, &x.map(|v| v as f32 as f64), 2, 1e-3, 1e-4);
}

#[test]
fn devices_demo_and_help() {
    let output = laepca().arg("devices").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("max buffer") || text.contains("no GPU adapter"),
        "{text}"
    );

    let output = laepca().arg("demo").output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("max angle") && text.contains("\ncpu "),
        "{text}"
    );

    let output = laepca().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    for cmd in ["fit", "transform", "devices", "demo"] {
        assert!(text.contains(cmd), "{text}");
    }
    let output = laepca().args(["fit", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "-k <K>",
        "-o",
        "--solver",
        "--lambda",
        "--alpha",
        "--tol",
        "--max-iter",
        "--seed",
        "--backend",
        "--no-center",
        "--features-in-rows",
        "--scores",
        "--plot",
        "--json",
    ] {
        assert!(text.contains(flag), "{flag} missing from: {text}");
    }
    let output = laepca().args(["transform", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("--model <DIR>") && text.contains("-o"),
        "{text}"
    );
    fails(&args(&["frobnicate"]), 2, "unrecognized subcommand");
    fails(
        &args(&["fit", "x.npy", "-k", "2", "--solver", "bogus"]),
        2,
        "unknown solver 'bogus'",
    );
    fails(
        &args(&["fit", "x.npy", "-k", "2", "--backend", "tpu"]),
        2,
        "unknown backend 'tpu'",
    );
}

#[test]
fn bad_files_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name);
    let out = d("out");
    let fit = |input: &Path, k: &str| {
        args(&[
            "fit",
            &s(input),
            "-k",
            k,
            "-o",
            &s(&out),
            "--backend",
            "cpu",
        ])
    };
    let x = data(11);
    let good = d("good.npy");
    write_f32_npy(&good, &x);
    let good_bytes = std::fs::read(&good).unwrap();

    // Missing file, unknown extension.
    fails(&fit(&d("missing.npy"), "2"), 1, "cannot open");
    fails(&fit(&d("missing.npy"), "2"), 1, "missing.npy");
    std::fs::write(d("x.txt"), "1 2\n").unwrap();
    fails(&fit(&d("x.txt"), "2"), 1, "x.txt: unknown file type");

    // Truncated, unreadable, wrong dtype, 1-D, 3-D.
    std::fs::write(d("trunc.npy"), &good_bytes[..good_bytes.len() - 100]).unwrap();
    fails(&fit(&d("trunc.npy"), "2"), 1, "trunc.npy: truncated file");
    std::fs::write(d("junk.npy"), b"this is not numpy at all").unwrap();
    fails(
        &fit(&d("junk.npy"), "2"),
        1,
        "junk.npy: not a valid .npy file",
    );
    std::fs::write(d("c.npy"), npy_bytes("<c8", false, &[4, 3], &[0; 96])).unwrap();
    fails(&fit(&d("c.npy"), "2"), 1, "unsupported data type '<c8'");
    std::fs::write(d("u.npy"), npy_bytes("<U5", false, &[4, 3], &[0; 240])).unwrap();
    fails(&fit(&d("u.npy"), "2"), 1, "unsupported data type '<U5'");
    std::fs::write(d("v.npy"), npy_bytes("<f4", false, &[12], &[0; 48])).unwrap();
    fails(&fit(&d("v.npy"), "2"), 1, "a 1-D array of shape (12,)");
    std::fs::write(d("t.npy"), npy_bytes("<f4", false, &[2, 3, 2], &[0; 48])).unwrap();
    fails(&fit(&d("t.npy"), "2"), 1, "a 3-D array of shape (2, 3, 2)");

    // Ragged and non-numeric CSV: line and column.
    std::fs::write(d("ragged.csv"), "a,b,c\n1,2,3\n4,5\n").unwrap();
    fails(
        &fit(&d("ragged.csv"), "1"),
        1,
        "ragged.csv: line 3 has 2 fields but line 2 has 3",
    );
    std::fs::write(d("text.csv"), "a,b,c\n1,2,3\n4,abc,6\n").unwrap();
    fails(
        &fit(&d("text.csv"), "1"),
        1,
        "text.csv: line 3, column 2: 'abc' is not a number",
    );

    // NaN and Inf: row and column.
    let mut xn = x.clone();
    xn[(5, 7)] = f64::NAN;
    write_f32_npy(&d("nan.npy"), &xn);
    fails(
        &fit(&d("nan.npy"), "2"),
        1,
        "non-finite value NaN at row 5, column 7",
    );
    std::fs::write(d("inf.csv"), "a,b\n1,2\ninf,4\n5,6\n").unwrap();
    fails(
        &fit(&d("inf.csv"), "1"),
        1,
        "non-finite value inf at row 1, column 0 (counted from 0; line 3 of the file)",
    );
    assert!(!out.exists(), "a failed run left {}", out.display());

    // k = 0, k > min(n, m), an empty matrix.
    fails(&fit(&good, "0"), 1, "invalid number of components k = 0");
    fails(
        &fit(&good, "13"),
        1,
        "k = 13: need 1 <= k <= min(n_samples, n_features) = 12",
    );
    std::fs::write(d("empty.npy"), npy_bytes("<f4", false, &[0, 5], &[])).unwrap();
    fails(
        &fit(&d("empty.npy"), "1"),
        1,
        "empty data: 0 samples x 5 features",
    );
    std::fs::write(d("empty.csv"), "").unwrap();
    fails(
        &fit(&d("empty.csv"), "1"),
        1,
        "empty data: 0 samples x 0 features",
    );
    // A label file.
    let labels = d("train-labels-idx1-ubyte.gz");
    std::fs::write(&labels, gz(&[0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3])).unwrap();
    fails(&fit(&labels, "1"), 1, "(a label file?), not a data matrix");

    // Parameters out of their domain.
    let mut a = fit(&good, "2");
    a.extend(args(&["--lambda", "-1"]));
    fails(
        &a,
        1,
        "invalid parameter --lambda = -1: it must be positive",
    );
    let mut a = fit(&good, "2");
    a.extend(args(&["--tol", "0"]));
    fails(&a, 1, "invalid parameter --tol = 0: it must be positive");
    let mut a = fit(&good, "2");
    a.extend(args(&["--max-iter", "0"]));
    fails(&a, 1, "invalid --max-iter 0");
    let mut a = fit(&good, "2");
    a.extend(args(&["--lambda", "1e9"]));
    fails(&a, 1, "collapses component(s)");
    assert!(!out.exists(), "a failed run left {}", out.display());
    // -o names a file.
    let mut a = fit(&good, "2");
    a[5] = s(&good);
    fails(&a, 1, "exists and is not a directory");
}

#[test]
fn outputs_never_overwrite_inputs_and_failures_keep_old_results() {
    let dir = tempfile::tempdir().unwrap();
    let x = data(12);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // The input sits where an output would go.
    let input = out.join("components.npy");
    write_f32_npy(&input, &x);
    let before = std::fs::read(&input).unwrap();
    fails(
        &args(&[
            "fit",
            &s(&input),
            "-k",
            "2",
            "-o",
            &s(&out),
            "--backend",
            "cpu",
        ]),
        1,
        "refusing to overwrite the input",
    );
    assert_eq!(std::fs::read(&input).unwrap(), before);
    // Through another spelling of the same path.
    let other = dir.path().join("out/../out");
    fails(
        &args(&[
            "fit",
            &s(&input),
            "-k",
            "2",
            "-o",
            &s(&other),
            "--backend",
            "cpu",
        ]),
        1,
        "refusing to overwrite the input",
    );

    // A good run, then a failing one into the same directory: the old results stay, no temporary file.
    let good = dir.path().join("good.npy");
    write_f32_npy(&good, &x);
    let res = dir.path().join("res");
    fit_ok(&good, &res, &[]);
    let old = std::fs::read(res.join("components.npy")).unwrap();
    let mut bad = x.clone();
    bad[(3, 3)] = f64::INFINITY;
    let bad_path = dir.path().join("bad.npy");
    write_f32_npy(&bad_path, &bad);
    fails(
        &args(&[
            "fit",
            &s(&bad_path),
            "-k",
            "2",
            "-o",
            &s(&res),
            "--backend",
            "cpu",
        ]),
        1,
        "non-finite value inf at row 3, column 3",
    );
    assert_eq!(std::fs::read(res.join("components.npy")).unwrap(), old);
    read_results(&res, K, M); // checks for left-over temporary files

    // transform: -o must not be the input or a model file.
    fails(
        &args(&["transform", "--model", &s(&res), &s(&good), "-o", &s(&good)]),
        1,
        "refusing to overwrite the input",
    );
    fails(
        &args(&[
            "transform",
            "--model",
            &s(&res),
            &s(&good),
            "-o",
            &s(&res.join("mean.npy")),
        ]),
        1,
        "refusing to overwrite the input",
    );
}

#[test]
fn transform_bad_models_and_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let x = data(13);
    let good = dir.path().join("good.npy");
    write_f32_npy(&good, &x);
    let model = dir.path().join("model");
    fit_ok(&good, &model, &[]);
    let scores = s(&dir.path().join("scores.npy"));
    let tr = |model: &Path, input: &Path| {
        args(&["transform", "--model", &s(model), &s(input), "-o", &scores])
    };

    fails(&tr(&dir.path().join("nomodel"), &good), 1, "does not exist");
    let partial = dir.path().join("partial");
    std::fs::create_dir(&partial).unwrap();
    std::fs::copy(model.join("components.npy"), partial.join("components.npy")).unwrap();
    fails(&tr(&partial, &good), 1, "has no mean.npy");
    let empty = dir.path().join("emptymodel");
    std::fs::create_dir(&empty).unwrap();
    fails(&tr(&empty, &good), 1, "has no components.npy");
    // A mean of the wrong length.
    laepca::io::write_npy(partial.join("mean.npy"), &[5], &[0.0; 5]).unwrap();
    fails(&tr(&partial, &good), 1, "a mean of 5");
    // Data with the wrong number of features.
    let narrow = dir.path().join("narrow.csv");
    write_delimited(&narrow, &x.columns(0, 5).into_owned(), ",", false);
    fails(
        &tr(&model, &narrow),
        1,
        "narrow.csv has 5 features but the model",
    );
    fails(&tr(&model, &narrow), 1, "was fitted on 12");
    // NaN in new data.
    let mut xn = x.rows(0, 20).into_owned();
    xn[(17, 2)] = f64::NAN;
    let nan = dir.path().join("nan.csv");
    write_delimited(&nan, &xn, ",", true);
    fails(
        &tr(&model, &nan),
        1,
        "non-finite value NaN at row 17, column 2 (counted from 0; line 19 of the file)",
    );
    // Output not .npy; missing input.
    fails(
        &args(&[
            "transform",
            "--model",
            &s(&model),
            &s(&good),
            "-o",
            "scores.txt",
        ]),
        1,
        "must be a .npy file",
    );
    fails(&tr(&model, &dir.path().join("none.csv")), 1, "cannot open");
    assert!(!Path::new(&scores).exists());
    // No temporary files anywhere.
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "left over: {name}");
    }
}
