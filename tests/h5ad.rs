//! AnnData `.h5ad` files (the `h5ad` feature): scanpy's own pbmc68k_reduced file (the legacy anndata <
//! 0.7 layout) against its independent exports (.npy of X by numpy, .mtx of raw.X by scipy), the same
//! data in the current layout written by anndata 0.12 (scripts/make_h5ad_fixture.py: dense, CSR, CSC,
//! an int32 layer, boolean and nullable-boolean var columns), the fit of raw.X against the densified f64
//! reference, the CLI, and the errors.
#![cfg(feature = "h5ad")]

#[path = "common/cli.rs"]
mod cli_helpers;
mod common;

use cli_helpers::{args, fails, s, succeeds};
use common::{centred_gram, columns, largest_principal_angle, orthonormal, reference_eigen};
use laepca::io::{read_coordinates, H5adFile, H5adMatrix, H5adOptions, IoError, Precision, Reader};
use laepca::{CsrMatrix, LaePca, Method};
use nalgebra::DMatrix;
use std::path::PathBuf;

fn data(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data")).join(name)
}

/// scanpy 1.11.5's datasets/10x_pbmc68k_reduced.h5ad, unchanged.
fn legacy() -> PathBuf {
    data("10x_pbmc68k_reduced.h5ad")
}

/// Its first 150 cells in anndata 0.12's layout.
fn current() -> PathBuf {
    data("pbmc68k_reduced_head.h5ad")
}

fn options(matrix: H5adMatrix, mask: Option<&str>) -> H5adOptions {
    H5adOptions {
        matrix,
        var_mask: mask.map(str::to_string),
    }
}

fn layer(name: &str) -> H5adMatrix {
    H5adMatrix::Layer(name.to_string())
}

/// The whole matrix through a row reader, as f64.
fn dense_rows(file: H5adFile) -> DMatrix<f64> {
    let mut reader = Reader::from_h5ad(file);
    let m = reader.read_all::<f64>().unwrap();
    DMatrix::from_row_slice(m.rows, m.cols, &m.data)
}

/// numpy's export of scanpy's `pbmc68k_reduced().X` (tests/data/pbmc68k_reduced.npy.gz).
fn pbmc_x_from_npy() -> DMatrix<f64> {
    use std::io::Read;
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(data("pbmc68k_reduced.npy.gz")).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let values = &bytes[10 + header_len..];
    assert_eq!(values.len(), 700 * 765 * 4);
    let value = |i: usize| f32::from_le_bytes(values[4 * i..4 * i + 4].try_into().unwrap()) as f64;
    DMatrix::from_fn(700, 765, |r, c| value(r * 765 + c))
}

/// scipy's export of `raw.X` (tests/data/pbmc68k_reduced_raw.mtx.gz), in f32: the export wrote the
/// float32 values in decimal with 4 digits, so f32 is where they meet the file's values again.
fn pbmc_raw_from_mtx() -> CsrMatrix<f32> {
    read_coordinates(data("pbmc68k_reduced_raw.mtx.gz"))
        .unwrap()
        .into_csr()
        .unwrap()
}

/// A CSR matrix densified, as f64.
fn dense(x: &CsrMatrix<f32>) -> DMatrix<f64> {
    x.to_dense().map(f64::from)
}

/// Equal matrices, or the first difference (not the whole matrix) in the message.
#[track_caller]
fn same(a: &DMatrix<f64>, b: &DMatrix<f64>) {
    assert_eq!(a.shape(), b.shape());
    if let Some((i, (x, y))) = a
        .iter()
        .zip(b.iter())
        .enumerate()
        .find(|(_, (x, y))| x != y)
    {
        let (r, c) = (i % a.nrows(), i / a.nrows());
        panic!("they differ first at ({r}, {c}): {x} against {y}");
    }
}

fn same_csr(a: &CsrMatrix<f32>, b: &CsrMatrix<f32>) {
    assert_eq!(
        (a.nrows(), a.ncols(), a.nnz()),
        (b.nrows(), b.ncols(), b.nnz())
    );
    assert_eq!(a.indptr(), b.indptr());
    assert_eq!(a.indices(), b.indices());
    assert_eq!(a.values(), b.values());
}

#[test]
fn the_legacy_file_reads_as_its_npy_and_mtx_exports() {
    let x = H5adFile::open(legacy(), &H5adOptions::default()).unwrap();
    assert_eq!((x.rows(), x.cols(), x.is_sparse()), (700, 765, false));
    assert_eq!(x.precision(), Precision::F32);
    assert!(x.dtype().starts_with("X: float32, dense"), "{}", x.dtype());
    same(&dense_rows(x), &pbmc_x_from_npy());

    let raw = H5adFile::open(legacy(), &options(H5adMatrix::Raw, None)).unwrap();
    assert_eq!((raw.rows(), raw.cols(), raw.is_sparse()), (700, 765, true));
    assert!(
        raw.dtype().starts_with("raw.X: float32, CSR, 174400"),
        "{}",
        raw.dtype()
    );
    let mtx = pbmc_raw_from_mtx();
    same_csr(&raw.read_csr::<f32>().unwrap(), &mtx);
    // The same rows, densified block by block.
    same(&dense_rows(raw), &dense(&mtx));
}

#[test]
fn the_current_layout_holds_the_same_data_in_every_storage() {
    let head = |x: DMatrix<f64>| x.rows(0, 150).into_owned();
    let x = H5adFile::open(current(), &H5adOptions::default()).unwrap();
    assert_eq!((x.rows(), x.cols()), (150, 765));
    same(&dense_rows(x), &head(pbmc_x_from_npy()));

    let counts = head(dense(&pbmc_raw_from_mtx()));
    let raw = H5adFile::open(current(), &options(H5adMatrix::Raw, None)).unwrap();
    assert!(
        raw.dtype().starts_with("raw/X: float32, CSR"),
        "{}",
        raw.dtype()
    );
    let raw_csr = raw.read_csr::<f32>().unwrap();
    same(&dense(&raw_csr), &counts);

    let csc = H5adFile::open(current(), &options(layer("counts_csc"), None)).unwrap();
    assert!(csc.dtype().contains("CSC"), "{}", csc.dtype());
    same_csr(&csc.read_csr::<f32>().unwrap(), &raw_csr);
    same(&dense_rows(csc), &counts);

    let int = H5adFile::open(current(), &options(layer("detected_int"), None)).unwrap();
    assert_eq!(int.precision(), Precision::F64, "int32 is not exact in f32");
    assert!(int.dtype().starts_with("layers/detected_int: int32, dense"));
    same(&dense_rows(int), &counts.map(|v| f64::from(v != 0.0)));
}

/// The mask of a column, from the full matrix's columns and the masked read.
fn masked_columns(full: &DMatrix<f64>, masked: &DMatrix<f64>) -> Vec<usize> {
    // Each masked column is a column of the full matrix, in order: find them greedily.
    let mut at = 0;
    (0..masked.ncols())
        .map(|c| {
            while full.column(at) != masked.column(c) {
                at += 1;
            }
            at += 1;
            at - 1
        })
        .collect()
}

#[test]
fn a_boolean_var_column_masks_the_features_in_both_layouts_and_every_storage() {
    let hv = Some("highly_variable");
    // The legacy compound var table and the current column dataset give the same mask.
    let legacy_x = H5adFile::open(legacy(), &options(H5adMatrix::X, hv)).unwrap();
    let current_x = H5adFile::open(current(), &options(H5adMatrix::X, hv)).unwrap();
    let kept = legacy_x.cols();
    assert!(kept > 0 && kept < 765, "{kept}");
    assert_eq!(current_x.cols(), kept);
    assert!(legacy_x
        .dtype()
        .contains(&format!("{kept} of 765 features (var/highly_variable)")));

    let full = pbmc_x_from_npy();
    let masked = dense_rows(legacy_x);
    assert_eq!(masked.shape(), (700, kept));
    let cols = masked_columns(&full, &masked);
    let expect = DMatrix::from_fn(700, kept, |i, c| full[(i, cols[c])]);
    same(&masked, &expect);
    same(&dense_rows(current_x), &expect.rows(0, 150).into_owned());

    // CSR and CSC drop the same columns (the layers use var's mask).
    let counts = dense(&pbmc_raw_from_mtx()).rows(0, 150).into_owned();
    let want = DMatrix::from_fn(150, kept, |i, c| counts[(i, cols[c])]);
    let csc = H5adFile::open(current(), &options(layer("counts_csc"), hv)).unwrap();
    same(&csc.read_csr::<f64>().unwrap().to_dense(), &want);
    let int = H5adFile::open(current(), &options(layer("detected_int"), hv)).unwrap();
    same(&dense_rows(int), &want.map(|v| f64::from(v != 0.0)));
    // The raw matrix's own var table has no such column in the current file.
    let e = H5adFile::open(current(), &options(H5adMatrix::Raw, hv)).unwrap_err();
    assert!(e.to_string().contains("raw/var has no column"), "{e}");
}

#[test]
fn raw_counts_from_the_h5ad_match_the_densified_f64_reference_on_both_routes() {
    let file = H5adFile::open(legacy(), &options(H5adMatrix::Raw, None)).unwrap();
    let x = file.read_csr::<f64>().unwrap();
    let dense = x.to_dense();
    let c = centred_gram(&dense);
    let k = 50;
    let (vals, vecs) = reference_eigen(&c, k);
    for method in [Method::Auto, Method::Gram, Method::Operator] {
        let fit = LaePca::new(k).method(method).fit_csr(&x).unwrap();
        assert!(fit.converged);
        let angle = largest_principal_angle(&vecs, &orthonormal(&columns(&fit.components)));
        let evr = (0..k)
            .map(|i| {
                let want = vals[i] / c.trace();
                (fit.explained_variance_ratio[i] - want).abs() / want
            })
            .fold(0.0, f64::max);
        eprintln!(
            "h5ad raw.X k = {k}, {method:?} -> {:?} ({}): {} passes, angle {angle:.1e}, evr {evr:.1e}",
            fit.method, fit.method_reason, fit.passes
        );
        assert!(angle <= 1e-5, "{method:?}: angle {angle:e}");
        assert!(evr <= 1e-6, "{method:?}: explained variance ratio {evr:e}");
    }
}

#[test]
fn what_is_not_there_or_not_a_mask_is_a_clear_error() {
    let open = |o: H5adOptions| H5adFile::open(current(), &o).unwrap_err().to_string();
    let e = open(options(layer("nope"), None));
    assert!(
        e.contains("no layers/nope") && e.contains("counts_csc"),
        "{e}"
    );
    let e = open(options(H5adMatrix::X, Some("nope")));
    assert!(
        e.contains("var has no column \"nope\"") && e.contains("highly_variable"),
        "{e}"
    );
    let e = open(options(H5adMatrix::X, Some("means")));
    assert!(
        e.contains("var/means holds") && e.contains("not booleans"),
        "{e}"
    );
    let e = open(options(H5adMatrix::X, Some("hv_with_na")));
    assert!(e.contains("missing at feature 3"), "{e}");
    let e = H5adFile::open(legacy(), &options(H5adMatrix::X, Some("means")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not booleans"), "{e}");
    let e = H5adFile::open(current(), &H5adOptions::default())
        .unwrap()
        .read_csr::<f64>()
        .unwrap_err();
    assert!(e.to_string().contains("X is dense, not sparse"), "{e}");

    // Not HDF5, a truncated file, no file.
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text.h5ad");
    std::fs::write(&text, "X\n1,2\n").unwrap();
    let e = H5adFile::open(&text, &H5adOptions::default()).unwrap_err();
    assert!(matches!(e, IoError::BadHeader { .. }), "{e}");
    let cut = dir.path().join("cut.h5ad");
    let bytes = std::fs::read(current()).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let cut_result = H5adFile::open(&cut, &H5adOptions::default())
        .and_then(|f| Reader::from_h5ad(f).read_all::<f64>().map(|_| ()));
    assert!(cut_result.is_err(), "half a file read without an error");
    let e = H5adFile::open(dir.path().join("none.h5ad"), &H5adOptions::default()).unwrap_err();
    assert!(matches!(e, IoError::Open { .. }), "{e}");
}

#[test]
fn the_cli_fits_any_matrix_of_an_h5ad_file_and_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("raw");
    let input = s(&legacy());
    let run = succeeds(&args(&[
        "fit",
        &input,
        "-k",
        "10",
        "--layer",
        "raw",
        "-o",
        &s(&out),
        "--json",
        "--scores",
    ]));
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(summary["format"], "h5ad");
    assert_eq!(summary["n_samples"], 700);
    assert_eq!(summary["n_features"], 765);
    let dtype = summary["dtype"].as_str().unwrap();
    assert!(dtype.starts_with("raw.X: float32, CSR"), "{dtype}");
    assert!(out.join("scores.npy").exists());

    // X with the highly-variable mask, then its transform with the same mask.
    let hv = dir.path().join("hv");
    let run = succeeds(&args(&[
        "fit",
        &input,
        "-k",
        "5",
        "--var-mask",
        "highly_variable",
        "-o",
        &s(&hv),
        "--json",
    ]));
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let kept = H5adFile::open(legacy(), &options(H5adMatrix::X, Some("highly_variable")))
        .unwrap()
        .cols();
    assert_eq!(summary["n_features"], kept);
    let scores = dir.path().join("scores.npy");
    let model = s(&hv);
    succeeds(&args(&[
        "transform",
        "--model",
        &model,
        &input,
        "--var-mask",
        "highly_variable",
        "-o",
        &s(&scores),
    ]));
    assert!(scores.exists());
    // Without the mask the widths differ.
    fails(
        &args(&["transform", "--model", &model, &input, "-o", &s(&scores)]),
        1,
        "shape mismatch",
    );

    // The flags belong to .h5ad input; .h5ad has observations in rows.
    let npy = dir.path().join("x.npy");
    laepca::io::write_npy(&npy, &[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 7.0]).unwrap();
    let o = s(&dir.path().join("o"));
    fails(
        &args(&["fit", &s(&npy), "-k", "1", "--layer", "raw", "-o", &o]),
        1,
        "apply to .h5ad files only",
    );
    fails(
        &args(&["fit", &input, "-k", "1", "--features-in-rows", "-o", &o]),
        1,
        "--features-in-rows does not apply",
    );
}

/// hdf5's boolean as raw bytes, to write bytes other than 0 and 1 into a boolean dataset.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct RawBool(u8);

// SAFETY: one byte, laid out as hdf5-metno's boolean (an enum of u8: FALSE = 0, TRUE = 1).
unsafe impl hdf5_metno::H5Type for RawBool {
    fn type_descriptor() -> hdf5_metno::types::TypeDescriptor {
        hdf5_metno::types::TypeDescriptor::Boolean
    }
}

/// A 20 x 4 dense X with var/m holding the bytes `mask`.
fn file_with_mask(dir: &std::path::Path, mask: [u8; 4]) -> PathBuf {
    let path = dir.join(format!(
        "mask_{}.h5ad",
        mask.map(|b| b.to_string()).join("_")
    ));
    let file = hdf5_metno::File::create(&path).unwrap();
    let x: Vec<f32> = (0..80).map(|i| ((i * 37) % 11) as f32).collect();
    file.new_dataset::<f32>()
        .shape((20, 4))
        .create("X")
        .unwrap()
        .write_raw(&x)
        .unwrap();
    let var = file.create_group("var").unwrap();
    var.new_dataset::<RawBool>()
        .shape(4)
        .create("m")
        .unwrap()
        .write_raw(&mask.map(RawBool))
        .unwrap();
    path
}

#[test]
fn a_mask_byte_that_is_not_a_boolean_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let good = file_with_mask(dir.path(), [1, 0, 1, 1]);
    let file = H5adFile::open(&good, &options(H5adMatrix::X, Some("m"))).unwrap();
    assert_eq!(file.cols(), 3);
    let x = dense_rows(file);
    assert_eq!(x.shape(), (20, 3));
    assert_eq!(x[(5, 1)], ((5 * 4 + 2) * 37 % 11) as f64);
    for bad in [[1, 2, 1, 1], [2, 0, 3, 255]] {
        let path = file_with_mask(dir.path(), bad);
        let e = H5adFile::open(&path, &options(H5adMatrix::X, Some("m"))).unwrap_err();
        assert!(e.to_string().contains("not a boolean (0 or 1)"), "{e}");
    }
}
