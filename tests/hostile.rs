//! Hostile inputs, one table per reader: malformed headers, declared sizes the file cannot hold or
//! memory cannot take, truncation at every boundary of the header, gzip corruption and bombs. Every case
//! runs the binary under a 1 GB address-space limit (`ulimit -v`) and must exit with status 1, one line
//! `laepca: error: ...` naming the problem, nothing on stdout and no output directory.

mod common;

use common::files::*;
use nalgebra::DMatrix;
use std::io::Write;
use std::path::Path;
use std::process::Command;

/// 1 GB of address space: far more than any of these small cases needs (a fit of a small file runs
/// in under 500 MB of it), far less than what a trusted header would make the process allocate.
const ULIMIT_KB: u64 = 1_000_000;

struct Case {
    name: &'static str,
    file: &'static str,
    bytes: Vec<u8>,
    /// A piece of the expected message.
    needle: &'static str,
}

fn case(name: &'static str, file: &'static str, bytes: Vec<u8>, needle: &'static str) -> Case {
    Case {
        name,
        file,
        bytes,
        needle,
    }
}

/// Integer data in 0..=255: 30 samples of 12 features (IDX: 3 x 4 images).
fn data() -> DMatrix<f64> {
    DMatrix::from_fn(30, 12, |i, j| ((i * 37 + j * 11 + i * j) % 256) as f64)
}

/// Runs `laepca fit FILE -k 2` under the address-space limit; checks exit 1, the one-line message and
/// that nothing was written.
fn check(dir: &Path, c: &Case, env: &[(&str, &str)]) {
    check_limited(dir, c, env, ULIMIT_KB)
}

fn check_limited(dir: &Path, c: &Case, env: &[(&str, &str)], ulimit_kb: u64) {
    check_with(dir, c, env, ulimit_kb, &[])
}

/// [`check_limited`] with more arguments for `laepca fit` (`--backend cpu` unless they name one).
fn check_with(dir: &Path, c: &Case, env: &[(&str, &str)], ulimit_kb: u64, extra: &[&str]) {
    let input = dir.join(c.file);
    std::fs::write(&input, &c.bytes).unwrap();
    let out = dir.join(format!("out-{}", c.name.replace(' ', "-")));
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -v {ulimit_kb} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_laepca"))
        .args(["fit", "-k", "2"])
        .args(if extra.contains(&"--backend") {
            &[][..]
        } else {
            &["--backend", "cpu"][..]
        })
        .args(extra)
        .arg("-o")
        .arg(&out)
        .arg(&input);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("laepca: error: "))
        .collect();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}: status {:?}, stderr {stderr}",
        c.name,
        o.status
    );
    assert_eq!(lines.len(), 1, "{}: {stderr}", c.name);
    assert!(
        lines[0].contains(c.needle),
        "{}: expected '{}' in: {}",
        c.name,
        c.needle,
        lines[0]
    );
    assert!(!stderr.contains("panicked") && !stderr.contains("internal error"));
    assert!(o.stdout.is_empty(), "{}", c.name);
    assert!(!out.exists(), "{}: an output directory was left", c.name);
    let litter: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(litter.is_empty(), "{}: {litter:?}", c.name);
    std::fs::remove_file(&input).unwrap();
}

fn npy_header(version: u8, header_len: u32, dict: &str) -> Vec<u8> {
    let mut b = b"\x93NUMPY".to_vec();
    b.extend([version, 0]);
    if version == 1 {
        b.extend((header_len as u16).to_le_bytes());
    } else {
        b.extend(header_len.to_le_bytes());
    }
    b.extend(dict.as_bytes());
    b
}

fn npy_cases() -> Vec<Case> {
    let valid = npy_matrix_bytes(&data(), "<f4", false, f32_le);
    let dict = |shape: &str, descr: &str| {
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}\n")
    };
    let small = |shape: &str, descr: &str| {
        let d = dict(shape, descr);
        npy_header(1, d.len() as u32, &d)
    };
    let mut v = vec![
        case("empty", "e.npy", vec![], "not a valid .npy file"),
        case("bad magic", "m.npy", b"\x93NUMPX\x01\x00".to_vec(), "magic"),
        case(
            "version 9",
            "v.npy",
            b"\x93NUMPY\x09\x00\x10\x00".to_vec(),
            "version 9.0",
        ),
        {
            // The 528-byte file whose version-2 header length is 0xFFFFFFFF.
            let mut b = npy_header(2, u32::MAX, "");
            b.resize(528, b' ');
            case(
                "header length 4 GiB",
                "h.npy",
                b,
                "the .npy header of 4294967295 bytes",
            )
        },
        case(
            "header not text",
            "u.npy",
            b"\x93NUMPY\x01\x00\x04\x00\xff\xfe\xff\xfe".to_vec(),
            "invalid UTF-8",
        ),
        {
            let d = "{'descr': '<f4', 'fortran_order': False}\n";
            case(
                "no shape",
                "s.npy",
                npy_header(1, d.len() as u32, d),
                "no 'shape'",
            )
        },
        case(
            "1-D",
            "d1.npy",
            small("(5,)", "<f4").into_iter().chain([0; 20]).collect(),
            "1-D array",
        ),
        case("complex", "c.npy", small("(2, 2)", "<c8"), "complex"),
        case("float16", "f2.npy", small("(2, 2)", "<f2"), "float16"),
        case("objects", "o.npy", small("(2, 2)", "|O"), "object arrays"),
        case(
            "shape overflows",
            "big.npy",
            small("(99999999999, 99999999999)", "<f8"),
            "overflows",
        ),
        case(
            "data truncated",
            "t.npy",
            small("(1000, 12)", "<f4")
                .into_iter()
                .chain([0; 400])
                .collect(),
            "truncated file",
        ),
        case(
            // The 2 x 100000: C would need 80 GB; the transposed route's K is 2 x 2 and finds
            // the (all-zero) data's rank.
            "wide: transposed route",
            "w.npy",
            npy_bytes("<f4", false, &[2, 100_000], &vec![0; 800_000]),
            "the data has rank 0 after centring",
        ),
    ];
    // Truncation at every boundary of the header (and into the data).
    let header_end = valid.len() - 30 * 12 * 4;
    for cut in [
        1,
        5,
        6,
        7,
        8,
        9,
        10,
        header_end - 1,
        header_end,
        header_end + 3,
        valid.len() - 1,
    ] {
        let needle = if cut < 6 { "magic" } else { "truncated" };
        v.push(case("npy cut", "cut.npy", valid[..cut].to_vec(), needle));
    }
    v
}

/// A gzip stream of `len` bytes of `pattern` repeated, compressed as it is produced (a bomb: a few
/// hundred kB on disk).
fn gz_repeated(pattern: &[u8], len: usize) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let block: Vec<u8> = pattern.iter().copied().cycle().take(1 << 20).collect();
    for _ in 0..len >> 20 {
        e.write_all(&block).unwrap();
    }
    e.finish().unwrap()
}

/// Gzip corruptions of `plain`: a flipped byte of the deflate data, a wrong CRC, a missing trailer,
/// garbage after the member.
fn gzip_cases(file: &'static str, plain: &[u8]) -> Vec<Case> {
    let good = gz(plain);
    let mut flipped = good.clone();
    let mid = good.len() / 2;
    flipped[mid] ^= 0x01;
    let mut crc = good.clone();
    let at = good.len() - 8;
    crc[at] ^= 0xff;
    let mut garbage = good.clone();
    garbage.extend_from_slice(b"\x1f\x8bnot gzip");
    vec![
        case("gzip flipped byte", file, flipped, "corrupt gzip data"),
        case("gzip wrong crc", file, crc, "corrupt gzip data"),
        case(
            "gzip no trailer",
            file,
            good[..good.len() - 8].to_vec(),
            "gzip",
        ),
        case("gzip trailing garbage", file, garbage, "corrupt gzip data"),
    ]
}

fn text_cases() -> Vec<Case> {
    let x = data();
    let mut v = vec![
        case("csv empty", "e.csv", vec![], "empty data"),
        case(
            "csv header only",
            "h.csv",
            b"a,b,c\n".to_vec(),
            "empty data",
        ),
        case(
            "csv ragged",
            "r.csv",
            b"1,2,3\n4,5\n".to_vec(),
            "ragged rows",
        ),
        case(
            "csv not a number",
            "n.csv",
            b"1,2\n3,x\n".to_vec(),
            "'x' is not a number",
        ),
        case(
            "csv empty field",
            "f.csv",
            b"1,2\n3,\n".to_vec(),
            "empty field",
        ),
        case(
            "csv not utf-8",
            "u.csv",
            b"1,2\n\xff,3\n".to_vec(),
            "not valid UTF-8",
        ),
        case(
            "tsv ragged",
            "r.tsv",
            b"1\t2\n3\t4\t5\n".to_vec(),
            "ragged rows",
        ),
        // /dev/zero's kind: 128 MiB of NUL bytes without a newline, gzipped to 128 kB.
        case(
            "csv line without end",
            "z.csv.gz",
            gz_repeated(&[0], 128 << 20),
            "line 1 is longer than 64 MiB",
        ),
    ];
    v.extend(gzip_cases(
        "g.csv.gz",
        delimited_text(&x, ",", false).as_bytes(),
    ));
    v
}

fn mtx_cases() -> Vec<Case> {
    let x = data();
    let b = |t: &str| t.as_bytes().to_vec();
    let mut v = vec![
        case(
            "mtx no banner",
            "n.mtx",
            b("1 2 3\n"),
            "not a '%%MatrixMarket ...' banner",
        ),
        case(
            "mtx short banner",
            "s.mtx",
            b("%%MatrixMarket matrix\n"),
            "needs 4 words",
        ),
        case(
            "mtx vector",
            "v.mtx",
            b("%%MatrixMarket vector coordinate real general\n"),
            "not a matrix",
        ),
        case(
            "mtx array pattern",
            "p.mtx",
            b("%%MatrixMarket matrix array pattern general\n2 2\n"),
            "'pattern' is only for coordinate matrices",
        ),
        case(
            // The 55-byte file.
            "mtx array 15000 x 15000",
            "a.mtx",
            b("%%MatrixMarket matrix array real general\n15000 15000\n1\n"),
            "the 15000 x 15000 array (2 bytes a value at least) needs 450.0 MB",
        ),
        case(
            // Kept sparse (no dense matrix of 72 TB): no entries at all is rank 0, found before any
            // working memory of the 3-million-feature fit is allocated.
            "mtx huge and empty",
            "d.mtx",
            b("%%MatrixMarket matrix coordinate real general\n3000000 3000000 0\n"),
            "the data has rank 0",
        ),
        case(
            // Four billion rows in a 40-byte file: their offsets alone would take 96 GB.
            "mtx offsets too large",
            "o.mtx",
            b("%%MatrixMarket matrix coordinate real general\n4000000000 2 0\n"),
            "the row offsets of 4000000000 rows",
        ),
        case(
            // Kept sparse: sizes beyond its 32-bit indices are refused before anything is allocated.
            "mtx size beyond 32 bits",
            "o.mtx",
            b("%%MatrixMarket matrix coordinate real general\n99999999999 99999999999 0\n"),
            "sparse indices are 32-bit",
        ),
        case(
            // Refused before the entries are read: the file's bytes cannot hold that many.
            "mtx entries missing",
            "m.mtx",
            b("%%MatrixMarket matrix coordinate real general\n4 4 1000000000\n1 1 1\n"),
            "truncated file: 1000000000 sparse entries",
        ),
        case(
            "mtx index outside",
            "i.mtx",
            b("%%MatrixMarket matrix coordinate real general\n4 4 1\n5 1 1\n"),
            "the row index 5 is outside 1..=4",
        ),
        case(
            "mtx size line",
            "l.mtx",
            b("%%MatrixMarket matrix coordinate real general\n4 x 1\n"),
            "'x' is not a non-negative integer",
        ),
        case(
            "mtx line without end",
            "z.mtx.gz",
            {
                let mut t = b("%%MatrixMarket matrix coordinate real general\n");
                t.extend(vec![b'1'; 70 << 20]);
                gz(&t)
            },
            "line 2 is longer than 64 MiB",
        ),
    ];
    v.extend(gzip_cases("g.mtx.gz", mtx_array_text(&x).as_bytes()));
    v
}

fn idx_cases() -> Vec<Case> {
    let x = data();
    let valid = idx_images_bytes(&x, 3, 4);
    let header = |ty: u8, dims: &[u32]| {
        let mut b = vec![0, 0, ty, dims.len() as u8];
        for d in dims {
            b.extend(d.to_be_bytes());
        }
        b
    };
    let mut v = vec![
        case(
            "idx bad magic",
            "m.idx",
            vec![1, 2, 8, 3],
            "IDX magic number",
        ),
        case(
            "idx type",
            "t.idx",
            header(0x0A, &[2, 2]),
            "unsupported data type 0x0A",
        ),
        case(
            "idx 0 dimensions",
            "z.idx",
            header(0x08, &[]),
            "0 dimensions",
        ),
        case("idx labels", "l.idx", header(0x08, &[3]), "a label file?"),
        case(
            "idx header cut",
            "h.idx",
            header(0x08, &[3, 4, 4])[..9].to_vec(),
            "ends inside the IDX header",
        ),
        case(
            "idx sizes the file cannot hold",
            "s.idx",
            header(0x08, &[u32::MAX, 65536, 65536]),
            "truncated file",
        ),
        case(
            "idx gzip sizes the stream cannot hold",
            "s-idx3-ubyte.gz",
            gz(&header(0x0E, &[1_000_000, 1000, 1000])),
            "the input holds at most",
        ),
        case(
            "idx trailing bytes",
            "x.idx",
            valid.iter().copied().chain([7, 7, 7]).collect(),
            "3 bytes follow the 30 rows",
        ),
        case(
            "idx data truncated",
            "d.idx",
            valid[..valid.len() - 5].to_vec(),
            "truncated file",
        ),
    ];
    v.extend(gzip_cases("g-idx3-ubyte.gz", &valid));
    v
}

#[test]
fn hostile_npy() {
    let dir = tempfile::tempdir().unwrap();
    for c in npy_cases() {
        check(dir.path(), &c, &[]);
    }
}

#[test]
fn hostile_text() {
    let dir = tempfile::tempdir().unwrap();
    for c in text_cases() {
        check(dir.path(), &c, &[]);
    }
    // A bomb of valid values: 96 MiB of "0,0,0,0,0,0,0,0\n" is 50 M values, 403 MB as f64. Refused
    // by the memory check (here a 50 MB allowance), and by the allocator itself under a 600 MB
    // ulimit (when the doubling vector asks for 537 MB).
    let bomb = case(
        "csv values bomb",
        "b.csv.gz",
        gz_repeated(b"0,0,0,0,0,0,0,0\n", 96 << 20),
        "too large: ",
    );
    check(dir.path(), &bomb, &[("LAEPCA_MAX_MEMORY", "50000000")]);
    let unlimited = [("LAEPCA_MAX_MEMORY", "1000000000000")];
    check_limited(dir.path(), &bomb, &unlimited, 600_000);
}

#[test]
fn hostile_mtx() {
    let dir = tempfile::tempdir().unwrap();
    for c in mtx_cases() {
        check(dir.path(), &c, &[]);
    }
}

#[test]
fn hostile_idx() {
    let dir = tempfile::tempdir().unwrap();
    for c in idx_cases() {
        check(dir.path(), &c, &[]);
    }
}

#[test]
fn wide_data_under_the_allocator_limit() {
    // The memory check allows it (LAEPCA_MAX_MEMORY says 1 TB), the 1 GB ulimit does not: C of a
    // 2 x 20000 file (3.2 GB) is refused by the allocator, an error and not an abort.
    let dir = tempfile::tempdir().unwrap();
    let c = case(
        "wide under ulimit",
        "w.npy",
        npy_bytes("<f4", false, &[2, 20_000], &vec![0; 160_000]),
        "n_features = 20000: the Gram matrix C (m x m, f64) needs 3.2 GB",
    );
    // On the Gram route: the default takes the transposed one for such wide data (K is 2 x 2).
    let env = [("LAEPCA_MAX_MEMORY", "1000000000000")];
    check_with(dir.path(), &c, &env, ULIMIT_KB, &["--method", "gram"]);
}

#[test]
fn software_gpu_memory_is_checked_with_the_hosts() {
    // lavapipe's buffers are host memory: C of a 2 x 3000 file takes 72 MB in f64 on the host, 72 MB
    // as the device's compensated f32 sum, 0.12 MB of chunk buffers (five of the file's 2 samples: the
    // CLI announces them) and 72.1 MB of read-back staging (two f32 copies of its one panel and the
    // column vectors): 216.2 MB. A 100 MB allowance admits the first alone, not all: refused before
    // the device is asked (a software device that overcommits would be killed instead).
    if !common::have_gpu() || laepca::devices().iter().all(|d| d.device_type != "cpu") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let c = case(
        "software gpu memory",
        "s.npy",
        npy_bytes("<f4", false, &[2, 3000], &vec![0; 24_000]),
        "the accumulation's buffers on the software GPU needs 216.2 MB of memory",
    );
    let env = [
        ("LAEPCA_MAX_MEMORY", "100000000"),
        ("WGPU_ADAPTER_NAME", "llvmpipe"),
    ];
    let args = ["--backend", "gpu", "--method", "gram"];
    // (No address-space limit: a Vulkan driver reserves more than the other cases allow.)
    check_with(dir.path(), &c, &env, 1 << 40, &args);
}

#[test]
fn byte_order_mark_and_library_accumulator() {
    // A .mtx with a byte-order mark is read.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bom.mtx");
    std::fs::write(
        &p,
        "\u{feff}%%MatrixMarket matrix coordinate real general\n3 2 3\n1 1 1\n3 2 2\n2 1 5\n",
    )
    .unwrap();
    let m = laepca::io::read_matrix::<f64>(&p).unwrap();
    assert_eq!(m.data, vec![1.0, 0.0, 5.0, 0.0, 0.0, 2.0]);
    // The library's accumulator refuses a C larger than memory instead of aborting.
    let e = laepca::GramAccumulator::new(100_000_000, true).unwrap_err();
    assert!(matches!(e, laepca::Error::TooLarge { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("n_features = 100000000: the Gram matrix C"),
        "{e}"
    );
}
