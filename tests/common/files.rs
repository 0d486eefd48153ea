//! Writers of valid data files in every input format (as bytes, or written to a path), shared by the
//! CLI tests and the hostile-input and mutation tests.

use flate2::write::GzEncoder;
use nalgebra::DMatrix;
use std::io::Write;
use std::path::Path;

/// A version-1.0 .npy file: the header for `descr`, `fortran` and `shape`, then `data`.
pub fn npy_bytes(descr: &str, fortran: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let shape = match shape {
        [a] => format!("({a},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let dict = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
        if fortran { "True" } else { "False" }
    );
    let mut h = dict.into_bytes();
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(b' ');
    }
    h.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

/// A matrix as .npy bytes of `descr` in C or Fortran order, each value encoded by `enc`.
pub fn npy_matrix_bytes(
    x: &DMatrix<f64>,
    descr: &str,
    fortran: bool,
    enc: fn(f64) -> Vec<u8>,
) -> Vec<u8> {
    let mut bytes = Vec::new();
    if fortran {
        for v in x.iter() {
            bytes.extend(enc(*v)); // nalgebra is column-major
        }
    } else {
        for i in 0..x.nrows() {
            for v in x.row(i).iter() {
                bytes.extend(enc(*v));
            }
        }
    }
    npy_bytes(descr, fortran, &[x.nrows(), x.ncols()], &bytes)
}

/// A matrix as a .npy file of `descr` in C or Fortran order, each value encoded by `enc`.
pub fn write_npy_as(
    path: &Path,
    x: &DMatrix<f64>,
    descr: &str,
    fortran: bool,
    enc: fn(f64) -> Vec<u8>,
) {
    std::fs::write(path, npy_matrix_bytes(x, descr, fortran, enc)).unwrap();
}

pub fn f32_le(v: f64) -> Vec<u8> {
    (v as f32).to_le_bytes().to_vec()
}

pub fn f64_le(v: f64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

pub fn write_f32_npy(path: &Path, x: &DMatrix<f64>) {
    write_npy_as(path, x, "<f4", false, f32_le);
}

/// Delimited text, one row a line, with a header line of feature names if asked.
pub fn delimited_text(x: &DMatrix<f64>, delim: &str, header: bool) -> String {
    let mut text = String::new();
    if header {
        text += &(0..x.ncols())
            .map(|j| format!("feature{j}"))
            .collect::<Vec<_>>()
            .join(delim);
        text += "\n";
    }
    for i in 0..x.nrows() {
        text += &x
            .row(i)
            .iter()
            .map(|v| format!("{v}"))
            .collect::<Vec<_>>()
            .join(delim);
        text += "\n";
    }
    text
}

/// Delimited text written to `path`, gzipped when its name ends in .gz.
pub fn write_delimited(path: &Path, x: &DMatrix<f64>, delim: &str, header: bool) {
    let text = delimited_text(x, delim, header);
    if path.extension().is_some_and(|e| e == "gz") {
        std::fs::write(path, gz(text.as_bytes())).unwrap();
    } else {
        std::fs::write(path, text).unwrap();
    }
}

pub fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A `matrix coordinate real general` file of the non-zero entries.
pub fn mtx_coordinate_text(x: &DMatrix<f64>) -> String {
    let mut entries = Vec::new();
    for j in 0..x.ncols() {
        for i in 0..x.nrows() {
            if x[(i, j)] != 0.0 {
                entries.push(format!("{} {} {}", i + 1, j + 1, x[(i, j)]));
            }
        }
    }
    format!(
        "%%MatrixMarket matrix coordinate real general\n% written by the tests\n{} {} {}\n{}\n",
        x.nrows(),
        x.ncols(),
        entries.len(),
        entries.join("\n")
    )
}

pub fn write_mtx_coordinate(path: &Path, x: &DMatrix<f64>) {
    std::fs::write(path, mtx_coordinate_text(x)).unwrap();
}

/// A `matrix array integer general` file (values column by column).
pub fn mtx_array_text(x: &DMatrix<f64>) -> String {
    let values: Vec<String> = x.iter().map(|v| format!("{v}")).collect(); // column-major
    format!(
        "%%MatrixMarket matrix array integer general\n{} {}\n{}\n",
        x.nrows(),
        x.ncols(),
        values.join("\n")
    )
}

pub fn write_mtx_array(path: &Path, x: &DMatrix<f64>) {
    std::fs::write(path, mtx_array_text(x)).unwrap();
}

/// An IDX u8 image file of x.nrows() images of `h x w` (h·w = x.ncols()), not compressed.
pub fn idx_images_bytes(x: &DMatrix<f64>, h: u32, w: u32) -> Vec<u8> {
    let mut bytes = vec![0, 0, 0x08, 3];
    for d in [x.nrows() as u32, h, w] {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    for i in 0..x.nrows() {
        bytes.extend(x.row(i).iter().map(|&v| v as u8));
    }
    bytes
}

/// The same, gzipped.
pub fn write_idx_images_gz(path: &Path, x: &DMatrix<f64>, h: u32, w: u32) {
    std::fs::write(path, gz(&idx_images_bytes(x, h, w))).unwrap();
}

/// One valid file of every format and variant for `x` (integer values in 0..=255, so that IDX u8
/// holds them), as (file name, bytes).
pub fn valid_files(x: &DMatrix<f64>, h: u32, w: u32) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("f4.npy", npy_matrix_bytes(x, "<f4", false, f32_le)),
        ("f8-fortran.npy", npy_matrix_bytes(x, "<f8", true, f64_le)),
        (
            "u1.npy",
            npy_matrix_bytes(x, "|u1", false, |v| vec![v as u8]),
        ),
        ("header.csv", delimited_text(x, ",", true).into_bytes()),
        ("plain.tsv", delimited_text(x, "\t", false).into_bytes()),
        ("gz.csv.gz", gz(delimited_text(x, ",", false).as_bytes())),
        ("coordinate.mtx", mtx_coordinate_text(x).into_bytes()),
        ("array.mtx.gz", gz(mtx_array_text(x).as_bytes())),
        ("images.idx", idx_images_bytes(x, h, w)),
        ("images-idx3-ubyte.gz", gz(&idx_images_bytes(x, h, w))),
    ]
}
