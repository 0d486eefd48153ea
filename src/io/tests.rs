//! Every format through files on disk, and every error.

use super::*;
use flate2::write::GzEncoder;
use std::io::Write;

/// A .npy file with any descr, order and raw data bytes.
fn npy_bytes(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
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

fn put(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// The 3 x 4 test matrix, row-major: value = 10 * row + col.
fn expected() -> Vec<f64> {
    (0..3)
        .flat_map(|i| (0..4).map(move |j| (10 * i + j) as f64))
        .collect()
}

/// The same values in Fortran (column-major) order.
fn fortran_values() -> Vec<f64> {
    (0..4)
        .flat_map(|j| (0..3).map(move |i| (10 * i + j) as f64))
        .collect()
}

fn encode(values: &[f64], f: impl Fn(f64) -> Vec<u8>) -> Vec<u8> {
    values.iter().flat_map(|&v| f(v)).collect()
}

fn err_of<T: std::fmt::Debug>(r: Result<T>) -> (IoError, String) {
    let e = r.expect_err("expected an error");
    let s = e.to_string();
    (e, s)
}

#[test]
fn npy_every_dtype_order_and_byte_order() {
    let dir = tempfile::tempdir().unwrap();
    type Enc = fn(f64) -> Vec<u8>;
    let cases: Vec<(&str, Enc, Precision)> = vec![
        ("<f4", |v| (v as f32).to_le_bytes().to_vec(), Precision::F32),
        (">f4", |v| (v as f32).to_be_bytes().to_vec(), Precision::F32),
        ("<f8", |v| v.to_le_bytes().to_vec(), Precision::F64),
        (">f8", |v| v.to_be_bytes().to_vec(), Precision::F64),
        ("|u1", |v| vec![v as u8], Precision::F32),
        ("|i1", |v| vec![v as i8 as u8], Precision::F32),
        ("<u2", |v| (v as u16).to_le_bytes().to_vec(), Precision::F32),
        (">i2", |v| (v as i16).to_be_bytes().to_vec(), Precision::F32),
        ("<u4", |v| (v as u32).to_le_bytes().to_vec(), Precision::F64),
        (">i4", |v| (v as i32).to_be_bytes().to_vec(), Precision::F64),
        ("<u8", |v| (v as u64).to_le_bytes().to_vec(), Precision::F64),
        ("<i8", |v| (v as i64).to_le_bytes().to_vec(), Precision::F64),
    ];
    for (descr, enc, precision) in cases {
        for fortran in [false, true] {
            let data = if fortran {
                encode(&fortran_values(), enc)
            } else {
                encode(&expected(), enc)
            };
            let p = put(&dir, "a.npy", &npy_bytes(descr, fortran, "(3, 4)", &data));
            let mut r = Reader::open(&p).unwrap();
            assert_eq!((r.rows(), r.cols()), (3, 4), "{descr}");
            assert_eq!(r.precision(), precision, "{descr}");
            assert_eq!(r.format(), Format::Npy);
            let m = r.read_all::<f64>().unwrap();
            assert_eq!(m.data, expected(), "{descr} fortran={fortran}");
            // Chunks of two rows, then one, in f32.
            let mut r = Reader::open(&p).unwrap();
            let mut buf = Vec::<f32>::new();
            let mut all = Vec::new();
            while r.read_rows(&mut buf, 2).unwrap() > 0 {
                assert!(buf.len() <= 8);
                all.extend(buf.iter().map(|&v| v as f64));
            }
            assert_eq!(all, expected(), "{descr} fortran={fortran} chunked");
            assert_eq!(r.rows_read(), 3);
            // Whole-array reading in C order.
            let a = read_npy::<f64>(&p).unwrap();
            assert_eq!(a.shape, vec![3, 4]);
            assert_eq!(a.data, expected());
        }
    }
    // Booleans.
    let p = put(
        &dir,
        "b.npy",
        &npy_bytes("|b1", false, "(1, 3)", &[1, 0, 1]),
    );
    assert_eq!(read_matrix::<f32>(&p).unwrap().data, vec![1.0, 0.0, 1.0]);
}

#[test]
fn npy_write_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("w.npy");
    let values: Vec<f32> = (0..12).map(|v| v as f32 * 0.5).collect();
    write_npy(&p, &[3, 4], &values).unwrap();
    let m = read_matrix::<f32>(&p).unwrap();
    assert_eq!((m.rows, m.cols), (3, 4));
    assert_eq!(m.data, values);
    assert_eq!(m.to_dmatrix()[(1, 2)], 3.0);
    write_npy(&p, &[4], &values[..4]).unwrap();
    let a = read_npy::<f64>(&p).unwrap();
    assert_eq!(a.shape, vec![4]);
    assert_eq!(a.data, vec![0.0, 0.5, 1.0, 1.5]);
    // Version 2 headers are read too.
    let mut v2 = b"\x93NUMPY\x02\x00".to_vec();
    let h = b"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1), }\n";
    v2.extend_from_slice(&(h.len() as u32).to_le_bytes());
    v2.extend_from_slice(h);
    v2.extend_from_slice(&2.5f32.to_le_bytes());
    let p2 = put(&dir, "v2.npy", &v2);
    assert_eq!(read_matrix::<f64>(&p2).unwrap().data, vec![2.5]);
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn staged_files_are_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("x.npy");
    {
        let staged = stage_npy(&dest, &[2], &[1.0, 2.0]).unwrap();
        assert_eq!(staged.dest(), dest);
        assert!(!dest.exists());
        // Dropped without commit: the temporary file goes.
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let mut w = NpyWriter::create(&dest, &[2, 2]).unwrap();
    w.write(&[1.0, 2.0]).unwrap();
    let (_, msg) = err_of(w.finish());
    assert!(msg.contains("2 values written to an array of 4"), "{msg}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let mut w = NpyWriter::create(&dest, &[1, 2]).unwrap();
    assert!(w.write(&[1.0, 2.0, 3.0]).is_err());
    drop(w);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    write_atomic(dir.path().join("s.json"), b"{}").unwrap();
    assert_eq!(std::fs::read(dir.path().join("s.json")).unwrap(), b"{}");
}

#[test]
fn npy_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = encode(&expected(), |v| (v as f32).to_le_bytes().to_vec());

    // Missing file.
    let (e, msg) = err_of(Reader::open(dir.path().join("missing.npy")));
    assert!(matches!(e, IoError::Open { .. }), "{e:?}");
    assert!(
        msg.starts_with("cannot open ") && msg.contains("missing.npy"),
        "{msg}"
    );

    // Truncated data.
    let p = put(
        &dir,
        "t.npy",
        &npy_bytes("<f4", false, "(3, 4)", &data[..40]),
    );
    let (e, msg) = err_of(Reader::open(&p));
    assert!(matches!(e, IoError::Truncated { .. }), "{e:?}");
    assert!(
        msg.contains("t.npy: truncated file")
            && msg.contains("48 bytes of data")
            && msg.contains("holds 40"),
        "{msg}"
    );
    // Truncated inside the header.
    let full = npy_bytes("<f4", false, "(3, 4)", &data);
    let p = put(&dir, "th.npy", &full[..30]);
    let (e, _) = err_of(Reader::open(&p));
    assert!(matches!(e, IoError::Truncated { .. }), "{e:?}");
    let p = put(&dir, "th2.npy", &full[..7]);
    let (e, _) = err_of(Reader::open(&p));
    assert!(matches!(e, IoError::Truncated { .. }), "{e:?}");

    // Bad magic, bad version, bad header text.
    let p = put(&dir, "m.npy", b"PK\x03\x04 this is a zip");
    let (e, msg) = err_of(Reader::open(&p));
    assert!(matches!(e, IoError::BadHeader { .. }), "{e:?}");
    assert!(msg.contains("m.npy: not a valid .npy file"), "{msg}");
    let p = put(&dir, "empty.npy", b"");
    assert!(matches!(
        err_of(Reader::open(&p)).0,
        IoError::BadHeader { .. }
    ));
    let mut v9 = full.clone();
    v9[6] = 9;
    let p = put(&dir, "v9.npy", &v9);
    let (_, msg) = err_of(Reader::open(&p));
    assert!(msg.contains("unsupported .npy format version 9.0"), "{msg}");
    let p = put(&dir, "h.npy", &npy_bytes("<f4", false, "(3, x)", &data));
    let (e, msg) = err_of(Reader::open(&p));
    assert!(matches!(e, IoError::BadHeader { .. }), "{e:?}");
    assert!(msg.contains("cannot parse the header"), "{msg}");

    // Unsupported dtypes.
    for (descr, needle) in [
        ("<c8", "complex"),
        ("<U3", "strings"),
        ("<f2", "float16"),
        ("|O", "object"),
        ("<M8[ns]", "dates"),
        ("<x9", "expected float32"),
    ] {
        let p = put(&dir, "d.npy", &npy_bytes(descr, false, "(3, 4)", &[0; 200]));
        let (e, msg) = err_of(Reader::open(&p));
        assert!(
            matches!(e, IoError::UnsupportedDtype { .. }),
            "{descr}: {e:?}"
        );
        assert!(
            msg.contains(&format!("unsupported data type '{descr}'")) && msg.contains(needle),
            "{msg}"
        );
    }
    let p = put(&dir, "s.npy", &npy_bytes("x", false, "(3,)", &[0; 200]));
    assert!(matches!(
        err_of(Reader::open(&p)).0,
        IoError::UnsupportedDtype { .. }
    ));
    let structured = {
        let mut b = npy_bytes("<f4", false, "(3, 4)", &data);
        let text = String::from_utf8_lossy(&b[10..]).replace("'<f4'", "[('a', '<f4')]");
        b.truncate(10);
        b.extend_from_slice(text.as_bytes());
        b
    };
    let p = put(&dir, "st.npy", &structured);
    let (e, msg) = err_of(Reader::open(&p));
    assert!(matches!(e, IoError::UnsupportedDtype { .. }), "{e:?}");
    assert!(msg.contains("structured"), "{msg}");

    // 0-d, 1-D and 3-D arrays.
    let p = put(&dir, "0d.npy", &npy_bytes("<f4", false, "()", &data[..4]));
    assert!(matches!(
        err_of(Reader::open(&p)).0,
        IoError::NotAMatrix { .. }
    ));
    let p = put(&dir, "1d.npy", &npy_bytes("<f4", false, "(12,)", &data));
    let (e, msg) = err_of(Reader::open(&p));
    assert!(matches!(e, IoError::NotAMatrix { .. }), "{e:?}");
    assert!(msg.contains("1d.npy: a 1-D array of shape (12,)"), "{msg}");
    let p = put(&dir, "3d.npy", &npy_bytes("<f4", false, "(3, 2, 2)", &data));
    let (_, msg) = err_of(Reader::open(&p));
    assert!(
        msg.contains("a 3-D array of shape (3, 2, 2)") && msg.contains("x.reshape(3, -1)"),
        "{msg}"
    );
    // ... but read_npy reads any dimension.
    assert_eq!(read_npy::<f32>(&p).unwrap().shape, vec![3, 2, 2]);

    // An empty matrix reads as 0 rows.
    let p = put(&dir, "e.npy", &npy_bytes("<f4", false, "(0, 5)", &[]));
    let mut r = Reader::open(&p).unwrap();
    assert_eq!((r.rows(), r.cols()), (0, 5));
    assert!(r.read_all::<f32>().unwrap().data.is_empty());
}

#[test]
fn text_formats_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "c0,c1,c2,c3\n0,1,2,3\n10,11,12,13\n20,21,22,23\n";
    let p = put(&dir, "a.csv", csv.as_bytes());
    let mut r = Reader::open(&p).unwrap();
    assert_eq!(r.format(), Format::Csv);
    assert_eq!(r.precision(), Precision::F64);
    assert_eq!(r.source_line(0), Some(2));
    assert_eq!(r.read_all::<f64>().unwrap().data, expected());
    let p = put(&dir, "a.csv.gz", &gz(csv.as_bytes()));
    assert_eq!(read_matrix::<f64>(&p).unwrap().data, expected());
    let tsv = csv.replace(',', "\t");
    let p = put(&dir, "a.tsv", &tsv.as_bytes()[12..]); // without the header
    let m = read_matrix::<f32>(&p).unwrap();
    assert_eq!((m.rows, m.cols), (3, 4));
    assert_eq!(
        m.data.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        expected()
    );

    let p = put(&dir, "r.csv", b"1,2,3\n4,5\n");
    let (_, msg) = err_of(Reader::open(&p));
    assert!(
        msg.contains("r.csv: line 2 has 2 fields but line 1 has 3"),
        "{msg}"
    );
    let p = put(&dir, "n.tsv", b"1\t2\n3\tx\n");
    let (e, msg) = err_of(Reader::open(&p));
    assert!(
        matches!(
            e,
            IoError::Parse {
                line: 2,
                column: 2,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        msg.starts_with(&format!("{}: line 2, column 2", p.display())),
        "{msg}"
    );
    // An empty file is an empty matrix.
    let p = put(&dir, "e.csv", b"");
    let r = Reader::open(&p).unwrap();
    assert_eq!((r.rows(), r.cols()), (0, 0));
}

#[test]
fn matrix_market_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut coo =
        "%%MatrixMarket matrix coordinate integer general\n%comment\n3 4 12\n".to_string();
    for (v, (i, j)) in expected()
        .iter()
        .zip((0..3).flat_map(|i| (0..4).map(move |j| (i, j))))
    {
        coo += &format!("{} {} {v}\n", i + 1, j + 1);
    }
    let p = put(&dir, "a.mtx", coo.as_bytes());
    let mut r = Reader::open(&p).unwrap();
    assert_eq!(
        (r.format(), r.rows(), r.cols()),
        (Format::MatrixMarket, 3, 4)
    );
    assert_eq!(r.read_all::<f64>().unwrap().data, expected());
    let mut arr = "%%MatrixMarket matrix array real general\n3 4\n".to_string();
    for v in fortran_values() {
        arr += &format!("{v}\n");
    }
    let p = put(&dir, "b.mtx.gz", &gz(arr.as_bytes()));
    assert_eq!(read_matrix::<f64>(&p).unwrap().data, expected());
    let p = put(
        &dir,
        "c.mtx",
        b"%%MatrixMarket matrix coordinate real general\n3 4 2\n1 1 1\n",
    );
    let (e, msg) = err_of(Reader::open(&p));
    assert!(matches!(e, IoError::Truncated { .. }), "{e:?}");
    assert!(msg.contains("c.mtx"), "{msg}");
}

fn idx_bytes(ty: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, ty, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[test]
fn idx_images_labels_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bytes: Vec<u8> = expected().iter().map(|&v| v as u8).collect();
    // 3 images of 2 x 2: one row of 4 per image.
    let images = idx_bytes(0x08, &[3, 2, 2], &bytes);
    for name in [
        "train-images-idx3-ubyte",
        "x.idx",
        "t10k-images.idx3-ubyte.gz",
    ] {
        let content = if name.ends_with(".gz") {
            gz(&images)
        } else {
            images.clone()
        };
        let p = put(&dir, name, &content);
        let mut r = Reader::open(&p).unwrap();
        assert_eq!(
            (r.format(), r.rows(), r.cols()),
            (Format::Idx, 3, 4),
            "{name}"
        );
        assert_eq!(r.dtype(), "uint8 (3 x 2 x 2)");
        assert_eq!(r.precision(), Precision::F32);
        let mut buf = Vec::<f64>::new();
        let mut all = Vec::new();
        while r.read_rows(&mut buf, 2).unwrap() > 0 {
            all.extend_from_slice(&buf);
        }
        assert_eq!(all, expected(), "{name}");
    }
    // 2-D big-endian i16 and f32.
    let p = put(
        &dir,
        "s.idx",
        &idx_bytes(
            0x0B,
            &[3, 4],
            &encode(&expected(), |v| (v as i16).to_be_bytes().to_vec()),
        ),
    );
    assert_eq!(
        read_matrix::<f32>(&p)
            .unwrap()
            .data
            .iter()
            .map(|&v| v as f64)
            .collect::<Vec<_>>(),
        expected()
    );
    let p = put(
        &dir,
        "f.idx",
        &idx_bytes(
            0x0D,
            &[3, 4],
            &encode(&expected(), |v| (v as f32).to_be_bytes().to_vec()),
        ),
    );
    assert_eq!(read_matrix::<f64>(&p).unwrap().data, expected());
    let p = put(
        &dir,
        "d.idx",
        &idx_bytes(
            0x0E,
            &[3, 4],
            &encode(&expected(), |v| v.to_be_bytes().to_vec()),
        ),
    );
    let mut r = Reader::open(&p).unwrap();
    assert_eq!(r.precision(), Precision::F64);
    assert_eq!(r.read_all::<f64>().unwrap().data, expected());

    // Labels: 1-D.
    let p = put(
        &dir,
        "train-labels-idx1-ubyte.gz",
        &gz(&idx_bytes(0x08, &[3], &[1, 2, 3])),
    );
    let (e, msg) = err_of(Reader::open(&p));
    assert!(matches!(e, IoError::NotAMatrix { .. }), "{e:?}");
    assert!(
        msg.contains("a 1-D IDX file of 3 values (a label file?)"),
        "{msg}"
    );
    // Truncated (plain and gzipped): the error names the row.
    for (name, content) in [
        ("t-ubyte", images[..16 + 6].to_vec()),
        ("t.idx.gz", gz(&images[..16 + 6])),
    ] {
        let p = put(&dir, name, &content);
        let (e, msg) = err_of(read_matrix::<f32>(&p));
        assert!(matches!(e, IoError::Truncated { .. }), "{name}: {e:?}");
        assert!(msg.contains("data ends in row 1"), "{msg}");
    }
    // A corrupt gzip stream.
    let mut bad = gz(&images);
    let n = bad.len();
    for b in &mut bad[10..n - 8] {
        *b ^= 0x5a;
    }
    let p = put(&dir, "c.idx.gz", &bad);
    let (e, msg) = err_of(read_matrix::<f32>(&p));
    assert!(matches!(e, IoError::Corrupt { .. }), "{e:?}");
    assert!(msg.contains("corrupt gzip data"), "{msg}");
    // Bad magic and an unknown type.
    let p = put(&dir, "m.idx", b"\x12\x34\x08\x02");
    assert!(matches!(
        err_of(Reader::open(&p)).0,
        IoError::BadHeader { .. }
    ));
    let p = put(&dir, "u.idx", &idx_bytes(0x0A, &[3, 4], &bytes));
    let (e, msg) = err_of(Reader::open(&p));
    assert!(matches!(e, IoError::UnsupportedDtype { .. }), "{e:?}");
    assert!(msg.contains("0x0A"), "{msg}");
}

#[test]
fn formats_from_names() {
    let f = |n: &str| Format::from_path(n).map_err(|e| e.to_string());
    assert_eq!(f("a.npy"), Ok(Format::Npy));
    assert_eq!(f("dir/A.CSV"), Ok(Format::Csv));
    assert_eq!(f("a.tsv.gz"), Ok(Format::Tsv));
    assert_eq!(f("matrix.mtx.gz"), Ok(Format::MatrixMarket));
    assert_eq!(f("train-images-idx3-ubyte"), Ok(Format::Idx));
    assert_eq!(f("train-images.idx3-ubyte.gz"), Ok(Format::Idx));
    assert_eq!(f("x.idx1"), Ok(Format::Idx));
    for bad in ["a.txt", "a.npy.gz", "noext", "a.npz", "a.parquet"] {
        let msg = f(bad).unwrap_err();
        assert!(
            msg.starts_with(&format!("{bad}: unknown file type")),
            "{msg}"
        );
    }
    // A directory is not a data file.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("d.npy");
    std::fs::create_dir(&d).unwrap();
    assert!(matches!(err_of(Reader::open(&d)).0, IoError::Open { .. }));
}
