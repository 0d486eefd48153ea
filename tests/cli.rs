//! End-to-end tests of the `laepca` binary: every input format, the written arrays against the library's
//! result and an f64 reference, --json, transform, and every bad input of the CLI issue (exit code and
//! message). Small matrices, the CPU backend (one `--backend auto` case).

#[path = "common/cli.rs"]
mod cli_helpers;
mod common;

use cli_helpers::*;
use common::files::*;
use common::*;
use laepca::synthetic::{geometric_spectrum, prescribed_spectrum};
use laepca::{Backend, CsrMatrix, LaePca, Real, Solver};
use nalgebra::DMatrix;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

const N: usize = 200;
const M: usize = 12;
const K: usize = 3;

/// N x M data with centred singular values 50 · 0.7^i and mean 3.
fn data(seed: u64) -> DMatrix<f64> {
    prescribed_spectrum(N, M, &geometric_spectrum(M, 50.0, 0.7), 3.0, seed).x
}

/// Integer-valued data in 0..=255 (for the integer dtypes and IDX).
fn int_data(seed: u64) -> DMatrix<f64> {
    data(seed).map(|v| (v * 6.0 + 100.0).round().clamp(0.0, 255.0))
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

/// `laepca fit INPUT -k K -o OUT --backend cpu`.
fn fit_args(input: &Path, k: &str, out: &Path) -> Vec<String> {
    fit_args_on(input, k, out, "cpu")
}

/// `laepca fit INPUT -k K -o OUT --backend BACKEND`.
fn fit_args_on(input: &Path, k: &str, out: &Path, backend: &str) -> Vec<String> {
    args(&[
        "fit",
        &s(input),
        "-k",
        k,
        "-o",
        &s(out),
        "--backend",
        backend,
    ])
}

/// `laepca transform --model MODEL INPUT -o OUT`.
fn transform_args(model: &Path, input: &Path, out: &Path) -> Vec<String> {
    args(&["transform", "--model", &s(model), &s(input), "-o", &s(out)])
}

/// Runs `laepca fit` of K components and expects success.
fn fit_ok(input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut a = fit_args(input, &K.to_string(), out);
    a.extend(args(extra));
    succeeds(&a)
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
    let expect = expected_scores(&x32.map(|v| v as f64), &r);
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
    let arrays =
        "components singular_values explained_variance explained_variance_ratio mean scores";
    let mut expected: Vec<String> = arrays.split(' ').map(|a| format!("{a}.npy")).collect();
    expected.extend(["convergence.svg", "scree.svg", "summary.json"].map(String::from));
    assert_eq!(files, expected);
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
fn a_sparse_file_is_checked_by_its_size_line_before_its_entries_are_read() {
    // 5 x 5 with 3 entries, then garbage: -k 10 and a destination that is a file fail on the size
    // line, before the entries (whose parse error comes only when the checks pass).
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.mtx");
    std::fs::write(
        &input,
        "%%MatrixMarket matrix coordinate real general\n5 5 3\nnot an entry\n",
    )
    .unwrap();
    let out = dir.path().join("o");
    fails(
        &fit_args(&input, "10", &out),
        1,
        "min(n_samples, n_features) = 5",
    );
    let file = dir.path().join("a_file");
    std::fs::write(&file, "x").unwrap();
    fails(&fit_args(&input, "2", &file), 1, "a_file");
    fails(&fit_args(&input, "2", &out), 1, "line 3");
    assert!(!out.exists(), "a failed fit left its directory");
}

#[test]
fn fit_matrix_market_coordinate_and_array() {
    let dir = tempfile::tempdir().unwrap();
    // Some exact zeros, as in a count matrix.
    let x = int_data(4).map(|v| if v < 100.0 { 0.0 } else { v - 100.0 });
    // A coordinate file is kept sparse: integer counts in f32, by the library's route choice, or as
    // --method says.
    let coo = dir.path().join("x.mtx");
    write_mtx_coordinate(&coo, &x);
    let csr = CsrMatrix::from_dense(&x.map(|v| v as f32));
    for method in ["auto", "gram", "operator"] {
        let out = dir.path().join(format!("coo-{method}"));
        fit_ok(&coo, &out, &["--method", method]);
        let r = read_results(&out, K, M);
        let fit = LaePca::new(K)
            .backend(Backend::Cpu)
            .method(method.parse().unwrap())
            .fit_csr(&csr)
            .unwrap();
        assert_eq!(r.summary["method"], fit.method.name());
        assert_eq!(r.summary["method_requested"], method);
        assert_eq!(r.summary["method_reason"], fit.method_reason.as_str());
        assert_eq!(r.summary["iterations"], fit.iterations);
        let max_diff = (0..K)
            .flat_map(|i| (0..M).map(move |j| (i, j)))
            .map(|(i, j)| (r.components[(i, j)] - fit.components[(i, j)].as_f64()).abs())
            .fold(0.0, f64::max);
        assert!(
            max_diff < 2e-6,
            "{method}: components differ by {max_diff:e}"
        );
        // f32 data: the f32 bounds of the dense files' checks below.
        check_reference(&r, &x, K, 1e-3, 1e-5);
    }
    // The scores without densifying, and the same file transposed (features in rows).
    let out = dir.path().join("coo-scores");
    fit_ok(&coo, &out, &["--method", "operator", "--scores"]);
    let r = read_results(&out, K, M);
    let scores = read_matrix_npy(&out.join("scores.npy"));
    let want = expected_scores(&x, &r);
    let err = (&scores - &want).abs().max() / want.abs().max();
    assert!(err < 1e-5, "sparse scores: relative error {err:e}");
    let coo_t = dir.path().join("xt.mtx");
    write_mtx_coordinate(&coo_t, &x.transpose());
    let out_t = dir.path().join("coo-t");
    fit_ok(
        &coo_t,
        &out_t,
        &["--method", "operator", "--features-in-rows"],
    );
    let rt = read_results(&out_t, K, M);
    assert_eq!(rt.summary["layout"], "features-in-rows");
    assert_eq!(rt.components, r.components);

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
    assert_eq!(printed["max_iter"], laepca::DEFAULT_MAX_ITER);
    let sv = f64s(&printed["singular_values"]);
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
    write_npy_as(&train, &x, "<f8", false, f64_le);
    let model = dir.path().join("model");
    fit_ok(&train, &model, &[]);
    let r = read_results(&model, K, M);

    // New samples from another draw, as CSV.
    let new = data(8).rows(0, 50).into_owned();
    let input = dir.path().join("new.csv");
    write_delimited(&input, &new, ",", true);
    let scores_path = dir.path().join("scores.npy");
    succeeds(&transform_args(&model, &input, &scores_path));
    let scores = read_matrix_npy(&scores_path);
    assert_eq!(scores.shape(), (50, K));
    // Against the arrays on disk ...
    let expect = expected_scores(&new, &r);
    assert!((&scores - &expect).abs().max() < 1e-5 * expect.abs().max());
    // ... and the library's own transform.
    let fit = LaePca::new(K).backend(Backend::Cpu).fit(&x).unwrap();
    let lib = fit.transform(&new).unwrap();
    assert!((&scores - &lib).abs().max() < 1e-4 * lib.abs().max());

    // The same data with features in rows.
    let input_t = dir.path().join("new_t.npy");
    write_f32_npy(&input_t, &new.transpose());
    let scores_t = dir.path().join("scores_t.npy");
    let mut a = transform_args(&model, &input_t, &scores_t);
    a.push("--features-in-rows".into());
    succeeds(&a);
    let st = read_matrix_npy(&scores_t);
    assert!((&st - &expect).abs().max() < 1e-4 * expect.abs().max());
}

#[test]
fn features_in_rows_matches_samples_in_rows() {
    let dir = tempfile::tempdir().unwrap();
    let x = data(9);
    let rows = dir.path().join("x.npy");
    write_npy_as(&rows, &x, "<f8", false, f64_le);
    let cols = dir.path().join("xt.npy");
    write_npy_as(&cols, &x.transpose(), "<f8", true, f64_le);
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
    let mut command = fit_args_on(&input, "2", &out, "auto");
    command.push("--json".to_string());
    let output = succeeds(&command);
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
    let output = succeeds(&["devices"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("max buffer") || text.contains("no GPU adapter"),
        "{text}"
    );

    let output = succeeds(&["demo"]);
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

/// A bad input of `laepca fit`: the file (written with `bytes`, or missing when `None`), k, extra
/// flags, and what the one-line error must say.
struct BadFit {
    file: &'static str,
    bytes: Option<Vec<u8>>,
    k: &'static str,
    flags: &'static [&'static str],
    says: &'static str,
}

/// A bad file (or a missing one, `bytes` None) fitted with k components and no extra flags.
fn bad_file(
    file: &'static str,
    bytes: Option<Vec<u8>>,
    k: &'static str,
    says: &'static str,
) -> BadFit {
    BadFit {
        file,
        bytes,
        k,
        flags: &[],
        says,
    }
}

/// A good file with a parameter out of its domain.
fn bad_flags(flags: &'static [&'static str], says: &'static str) -> BadFit {
    BadFit {
        file: "good.npy",
        bytes: None,
        k: "2",
        flags,
        says,
    }
}

#[test]
fn bad_files_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let fit = |input: &Path, k: &str| fit_args(input, k, &out);
    let x = data(11);
    let good = dir.path().join("good.npy");
    write_f32_npy(&good, &x);
    let good_bytes = std::fs::read(&good).unwrap();
    let mut nan = x.clone();
    nan[(5, 7)] = f64::NAN;
    let text = |t: &str| Some(t.as_bytes().to_vec());
    let npy = |descr, shape: &[usize], len| Some(npy_bytes(descr, false, shape, &vec![0; len]));
    let cases = [
        // Missing file, unknown extension.
        bad_file("missing.npy", None, "2", "cannot open"),
        bad_file("missing.npy", None, "2", "missing.npy: "),
        bad_file("x.txt", text("1 2\n"), "2", "x.txt: unknown file type"),
        // Truncated, unreadable, wrong dtype, 1-D, 3-D.
        bad_file(
            "trunc.npy",
            Some(good_bytes[..good_bytes.len() - 100].to_vec()),
            "2",
            "trunc.npy: truncated file",
        ),
        bad_file(
            "junk.npy",
            text("this is not numpy at all"),
            "2",
            "junk.npy: not a valid .npy file",
        ),
        bad_file(
            "c.npy",
            npy("<c8", &[4, 3], 96),
            "2",
            "unsupported data type '<c8'",
        ),
        bad_file(
            "u.npy",
            npy("<U5", &[4, 3], 240),
            "2",
            "unsupported data type '<U5'",
        ),
        bad_file(
            "v.npy",
            npy("<f4", &[12], 48),
            "2",
            "a 1-D array of shape (12,)",
        ),
        bad_file(
            "t.npy",
            npy("<f4", &[2, 3, 2], 48),
            "2",
            "a 3-D array of shape (2, 3, 2)",
        ),
        // Ragged and non-numeric CSV: line and column.
        bad_file(
            "ragged.csv",
            text("a,b,c\n1,2,3\n4,5\n"),
            "1",
            "ragged.csv: line 3 has 2 fields but line 2 has 3",
        ),
        bad_file(
            "text.csv",
            text("a,b,c\n1,2,3\n4,abc,6\n"),
            "1",
            "text.csv: line 3, column 2: 'abc' is not a number",
        ),
        // NaN and Inf: row and column.
        bad_file(
            "nan.npy",
            Some(npy_matrix_bytes(&nan, "<f4", false, f32_le)),
            "2",
            "non-finite value NaN at row 5, column 7",
        ),
        bad_file(
            "inf.csv",
            text("a,b\n1,2\ninf,4\n5,6\n"),
            "1",
            "non-finite value inf at row 1, column 0 (counted from 0; line 3 of the file)",
        ),
        // k = 0, k > min(n, m), an empty matrix.
        bad_file(
            "good.npy",
            None,
            "0",
            "good.npy: invalid number of components k = 0",
        ),
        bad_file(
            "good.npy",
            None,
            "13",
            "k = 13: need 1 <= k <= min(n_samples, n_features) = 12",
        ),
        bad_file(
            "empty.npy",
            npy("<f4", &[0, 5], 0),
            "1",
            "empty data: 0 samples x 5 features",
        ),
        bad_file(
            "empty.csv",
            text(""),
            "1",
            "empty data: 0 samples x 0 features",
        ),
        // A label file.
        bad_file(
            "train-labels-idx1-ubyte.gz",
            Some(gz(&[0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3])),
            "1",
            "(a label file?), not a data matrix",
        ),
        // Parameters out of their domain: the library's check, named by the flag.
        bad_flags(
            &["--lambda", "-1"],
            "invalid parameter --lambda = -1: must be positive and finite",
        ),
        bad_flags(
            &["--alpha", "0"],
            "invalid parameter --alpha = 0: must be positive and finite",
        ),
        bad_flags(
            &["--tol", "inf"],
            "invalid parameter --tol = inf: must be positive and finite",
        ),
        bad_flags(
            &["--max-iter", "0"],
            "invalid parameter --max-iter = 0: must be at least 1",
        ),
        bad_flags(&["--lambda", "1e9"], "collapses component(s)"),
    ];
    for case in &cases {
        let path = dir.path().join(case.file);
        if let Some(bytes) = &case.bytes {
            std::fs::write(&path, bytes).unwrap();
        }
        let mut a = fit(&path, case.k);
        a.extend(args(case.flags));
        // `fails` names the case by its arguments (file name and flags) when it fails.
        fails(&a, 1, case.says);
        assert!(!out.exists(), "{a:?}: a failed run left {}", out.display());
    }
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
        &fit_args(&input, "2", &out),
        1,
        "refusing to overwrite the input",
    );
    assert_eq!(std::fs::read(&input).unwrap(), before);
    // Through another spelling of the same path.
    let other = dir.path().join("out/../out");
    fails(
        &fit_args(&input, "2", &other),
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
        &fit_args(&bad_path, "2", &res),
        1,
        "non-finite value inf at row 3, column 3",
    );
    assert_eq!(std::fs::read(res.join("components.npy")).unwrap(), old);
    read_results(&res, K, M); // checks for left-over temporary files

    // transform: -o must not be the input or a model file.
    fails(
        &transform_args(&res, &good, &good),
        1,
        "refusing to overwrite the input",
    );
    fails(
        &transform_args(&res, &good, &res.join("mean.npy")),
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
    let scores = dir.path().join("scores.npy");
    let tr = |model: &Path, input: &Path| transform_args(model, input, &scores);

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
        &transform_args(&model, &good, Path::new("scores.txt")),
        1,
        "must be a .npy file",
    );
    fails(&tr(&model, &dir.path().join("none.csv")), 1, "cannot open");
    assert!(!scores.exists());
    // No temporary files anywhere.
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "left over: {name}");
    }
}

/// The options of a `--help` text, each by its first spelling (`-o` for `-o, --output`), without
/// `-h` and `-V`.
fn help_options(help: &str) -> BTreeSet<String> {
    help.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| l.split_whitespace().next())
        .map(|o| o.trim_end_matches(',').to_string())
        .filter(|o| o != "-h" && o != "-V")
        .collect()
}

/// The options a usage synopsis names (`[-o DIR]`, `--solver ...`).
fn synopsis_options(text: &str) -> BTreeSet<String> {
    text.split_whitespace()
        .map(|t| t.trim_matches(|c| c == '[' || c == ']'))
        .filter(|t| t.starts_with('-'))
        .map(String::from)
        .collect()
}

#[test]
fn readme_usage_matches_the_help() {
    let readme = include_str!("../README.md");
    let section = readme
        .split("## Command-line tool")
        .nth(1)
        .expect("README has a command-line section");
    let block = section.split("```").nth(1).expect("its usage block");
    let fit_at = block.find("laepca fit").expect("fit's usage");
    let transform_at = block.find("laepca transform").expect("transform's usage");
    let fit_usage = &block[fit_at..transform_at];
    let transform_usage = block[transform_at..].lines().next().unwrap();
    for (cmd, usage) in [("fit", fit_usage), ("transform", transform_usage)] {
        let output = laepca().args([cmd, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            synopsis_options(usage),
            help_options(&help),
            "README's `laepca {cmd}` usage vs `laepca {cmd} --help`"
        );
    }
    // Every name --solver accepts, as the library parses them.
    let solvers = fit_usage
        .split("--solver ")
        .nth(1)
        .and_then(|t| t.split(']').next())
        .expect("--solver's names");
    let listed: BTreeSet<&str> = solvers.split('|').collect();
    let mut accepted: BTreeSet<&str> = Solver::ALL.iter().map(|v| v.name()).collect();
    accepted.insert("exact");
    assert_eq!(listed, accepted, "README's --solver names");
    for name in listed {
        assert!(name.parse::<Solver>().is_ok(), "{name}");
    }
    let backends = fit_usage
        .split("--backend ")
        .nth(1)
        .and_then(|t| t.split(']').next())
        .expect("--backend's names");
    for name in backends.split('|') {
        assert!(name.parse::<Backend>().is_ok(), "{name}");
    }
}

/// With k = 42 (order 129 in the auto solver's projected problem: its Jacobi kernel split over
/// several dispatches) the whole fit runs on the GPU, and the summary says so phase by phase (up to
/// this change its loop went to the CPU for k > 41).
#[test]
fn summary_phases_say_the_gpu_ran_the_loop_at_a_large_k() {
    if !have_gpu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sigma = geometric_spectrum(130, 50.0, 0.95);
    let x = prescribed_spectrum(400, 130, &sigma, 1.0, 3).x;
    let input = dir.path().join("wide-k.npy");
    write_f32_npy(&input, &x);
    let out = dir.path().join("out");
    let mut command = fit_args_on(&input, "42", &out, "gpu");
    command.push("--json".to_string());
    let output = succeeds(&command);
    let v: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(v["phases"]["gram"], "gpu", "{v}");
    assert_eq!(v["phases"]["iterate"], "gpu", "{v}");
    assert_eq!(v["backend"], "gpu", "{v}");
}

#[test]
fn wide_files_take_the_transposed_route() {
    // 30 samples of 200 features: K is 30 x 30 where C would be 200 x 200.
    let dir = tempfile::tempdir().unwrap();
    let x = prescribed_spectrum(30, 200, &geometric_spectrum(12, 50.0, 0.7), 3.0, 5).x;
    let input = dir.path().join("wide.npy");
    write_f32_npy(&input, &x);
    let (t, g) = (dir.path().join("t"), dir.path().join("g"));
    fit_ok(&input, &t, &["--scores"]);
    fit_ok(&input, &g, &["--method", "gram", "--scores"]);
    let (rt, rg) = (read_results(&t, K, 200), read_results(&g, K, 200));
    assert_eq!(rt.summary["method"], "gram-t");
    assert!(
        rt.summary["method_reason"]
            .as_str()
            .is_some_and(|r| r.contains("fewer samples than features")),
        "{}",
        rt.summary["method_reason"]
    );
    // A .npy file is read by blocks of features, not whole.
    assert!(
        rt.summary["method_reason"]
            .as_str()
            .is_some_and(|r| r.contains("read by blocks of features")),
        "{}",
        rt.summary["method_reason"]
    );
    assert_eq!(rg.summary["method"], "gram");
    // f32 data: the same directions and scores to f32 accuracy, both against the f64 reference.
    check_reference(&rt, &x, K, 1e-3, 1e-5);
    check_reference(&rg, &x, K, 1e-3, 1e-5);
    let (st, sg) = (
        read_matrix_npy(&t.join("scores.npy")),
        read_matrix_npy(&g.join("scores.npy")),
    );
    let err = (&st - &sg).abs().max() / sg.abs().max();
    assert!(err < 1e-4, "scores differ by {err:e}");
    // Methods dense data cannot take fail before the file is read, naming the problem.
    let mut a = fit_args(&input, "3", &dir.path().join("o"));
    a.extend(args(&["--method", "operator"]));
    fails(&a, 1, "the operator method takes sparse data");
    let mut a = fit_args(&input, "3", &dir.path().join("o"));
    a.extend(args(&["--method", "gram-t", "--solver", "exact"]));
    fails(&a, 1, "runs the auto solver");
}
