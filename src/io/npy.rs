//! NumPy's .npy format (versions 1, 2 and 3): the header, the dtypes, and a row-chunk reader that keeps
//! one bounded buffer (C order: one contiguous read per chunk; Fortran order: one read per column).

use super::dtype::{decode, element_count, is_native, Dtype, Kind};
use super::error::{IoContext, IoError, Result, SizeContext};
use super::read_full;
use crate::Real;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Reads a dtype string such as `<f4`, `>i8` or `|u1`.
pub(super) fn parse_descr(descr: &str, path: &Path) -> Result<Dtype> {
    let (order, code) = match descr.chars().next() {
        Some(c @ ('<' | '>' | '|' | '=')) => (c, &descr[1..]),
        _ => ('|', descr),
    };
    let big_endian = match order {
        '>' => true,
        '=' => cfg!(target_endian = "big"),
        _ => false,
    };
    if let Some(kind) = Kind::from_npy_code(code) {
        return Ok(Dtype { kind, big_endian });
    }
    let why = match code {
        "f2" | "e" => "float16 is not read; save the array as float32 (x.astype('float32'))",
        c if c.starts_with('c') => "complex numbers are not supported",
        c if c.starts_with('U') || c.starts_with('S') || c.starts_with('a') => {
            "strings are not numbers; convert the array to float32 or float64"
        }
        c if c.starts_with('O') => "object arrays (pickled Python objects) are not read",
        c if c.starts_with('M') || c.starts_with('m') => {
            "dates and time deltas are not data values"
        }
        c if c.starts_with('V') => "structured (record) arrays are not supported",
        _ => "expected float32/float64, (u)int8/16/32/64 or bool",
    };
    Err(IoError::unsupported(path, format!("'{descr}'"), why))
}

/// A parsed .npy header.
#[derive(Clone, Debug)]
pub(super) struct Header {
    pub dtype: Dtype,
    pub fortran: bool,
    pub shape: Vec<usize>,
    /// Where the data starts, in bytes from the start of the file.
    pub data_offset: u64,
}

impl Header {
    /// Bytes of data the header announces (None on overflow).
    pub fn data_bytes(&self) -> Option<u64> {
        let bytes = element_count(&self.shape)?.checked_mul(self.dtype.size())?;
        u64::try_from(bytes).ok()
    }
}

/// The shape as NumPy prints it: `(3,)`, `(2, 3)`.
pub(super) fn shape_str(shape: &[usize]) -> String {
    match shape {
        [] => "()".to_string(),
        [a] => format!("({a},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Reads the magic, the version and the header dictionary; `file_len` (when known) bounds the header
/// length the file may announce.
pub(super) fn read_header(r: &mut impl Read, path: &Path, file_len: Option<u64>) -> Result<Header> {
    let bad = |detail: String| IoError::bad_header(path, ".npy", detail);
    let mut pre = [0u8; 8];
    let got = read_full(r, &mut pre).reading(path)?;
    if got < 6 || &pre[..6] != MAGIC {
        return Err(bad(
            "it does not start with the .npy magic string \\x93NUMPY".to_string(),
        ));
    }
    if got < 8 {
        return Err(IoError::truncated(
            path,
            "the file ends inside the .npy header",
        ));
    }
    let (major, minor) = (pre[6], pre[7]);
    let len_bytes = match major {
        1 => 2,
        2 | 3 => 4,
        _ => {
            return Err(bad(format!(
                "unsupported .npy format version {major}.{minor} (expected 1.0, 2.0 or 3.0)"
            )))
        }
    };
    let mut len_buf = [0u8; 4];
    let got = read_full(r, &mut len_buf[..len_bytes]).reading(path)?;
    if got < len_bytes {
        return Err(IoError::truncated(
            path,
            "the file ends inside the .npy header",
        ));
    }
    let header_len = u32::from_le_bytes(len_buf) as usize;
    let prefix = (8 + len_bytes) as u64;
    let mut text = crate::alloc::filled(
        || format!("the .npy header of {header_len} bytes"),
        Some(header_len),
        file_len.map(|l| l.saturating_sub(prefix)),
        0u8,
    )
    .allocating(path)?;
    let got = read_full(r, &mut text).reading(path)?;
    if got < header_len {
        return Err(IoError::truncated(
            path,
            format!("the .npy header announces {header_len} bytes but the file ends after {got}"),
        ));
    }
    let text = String::from_utf8(text)
        .map_err(|_| bad("the header is not text (invalid UTF-8)".to_string()))?;
    let dict = parse_dict(&text).map_err(|e| {
        bad(format!(
            "cannot parse the header {:?}: {e}",
            text.trim_end()
        ))
    })?;
    let get = |key: &str| dict.iter().find(|(k, _)| k == key).map(|(_, v)| v);
    let dtype = match get("descr") {
        Some(PyValue::Str(s)) => parse_descr(s, path)?,
        Some(PyValue::List) => {
            return Err(IoError::unsupported(
                path,
                "(a list of fields)",
                "structured (record) arrays are not supported",
            ))
        }
        Some(_) => return Err(bad("'descr' is not a string".to_string())),
        None => return Err(bad("the header has no 'descr'".to_string())),
    };
    let fortran = match get("fortran_order") {
        Some(PyValue::Bool(b)) => *b,
        Some(_) => return Err(bad("'fortran_order' is not True or False".to_string())),
        None => return Err(bad("the header has no 'fortran_order'".to_string())),
    };
    let shape = match get("shape") {
        Some(PyValue::Tuple(t)) => t.clone(),
        Some(_) => return Err(bad("'shape' is not a tuple of integers".to_string())),
        None => return Err(bad("the header has no 'shape'".to_string())),
    };
    Ok(Header {
        dtype,
        fortran,
        shape,
        data_offset: (6 + 2 + len_bytes + header_len) as u64,
    })
}

/// A value of the header dictionary.
#[derive(Clone, Debug, PartialEq)]
enum PyValue {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
    /// A list (a structured dtype); its content is skipped.
    List,
}

/// Parses the Python literal `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
fn parse_dict(text: &str) -> std::result::Result<Vec<(String, PyValue)>, String> {
    let s = text.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < s.len() && s[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    let parse_str = |i: &mut usize| -> std::result::Result<String, String> {
        let q = s[*i];
        let start = *i + 1;
        let end = s[start..]
            .iter()
            .position(|&c| c == q)
            .ok_or("an unterminated string")?;
        *i = start + end + 1;
        Ok(String::from_utf8_lossy(&s[start..start + end]).into_owned())
    };
    skip_ws(&mut i);
    if s.get(i) != Some(&b'{') {
        return Err("it does not start with '{'".to_string());
    }
    i += 1;
    let mut out = Vec::new();
    loop {
        skip_ws(&mut i);
        match s.get(i) {
            Some(b'}') => break,
            Some(b'\'' | b'"') => {}
            _ => return Err("expected a quoted key or '}'".to_string()),
        }
        let key = parse_str(&mut i)?;
        skip_ws(&mut i);
        if s.get(i) != Some(&b':') {
            return Err(format!("expected ':' after '{key}'"));
        }
        i += 1;
        skip_ws(&mut i);
        let value = match s.get(i) {
            Some(b'\'' | b'"') => PyValue::Str(parse_str(&mut i)?),
            Some(b'(') => {
                i += 1;
                let mut dims = Vec::new();
                loop {
                    skip_ws(&mut i);
                    match s.get(i) {
                        Some(b')') => {
                            i += 1;
                            break;
                        }
                        Some(c) if c.is_ascii_digit() => {
                            let start = i;
                            while i < s.len() && s[i].is_ascii_digit() {
                                i += 1;
                            }
                            let digits = std::str::from_utf8(&s[start..i]).unwrap_or("");
                            let d: usize = digits
                                .parse()
                                .map_err(|_| format!("the dimension {digits} is too large"))?;
                            dims.push(d);
                            if s.get(i) == Some(&b'L') {
                                i += 1; // Python 2's long suffix
                            }
                            skip_ws(&mut i);
                            match s.get(i) {
                                Some(b',') => i += 1,
                                Some(b')') => {}
                                _ => return Err("expected ',' or ')' in the shape".to_string()),
                            }
                        }
                        _ => return Err("expected a non-negative integer in the shape".to_string()),
                    }
                }
                PyValue::Tuple(dims)
            }
            Some(b'[') => {
                // Skip a (possibly nested) list, minding quoted brackets.
                let mut depth = 0usize;
                loop {
                    match s.get(i) {
                        None => return Err("an unterminated list".to_string()),
                        Some(b'[') => depth += 1,
                        Some(b']') => {
                            depth -= 1;
                            if depth == 0 {
                                i += 1;
                                break;
                            }
                        }
                        Some(b'\'' | b'"') => {
                            parse_str(&mut i)?;
                            continue;
                        }
                        _ => {}
                    }
                    i += 1;
                }
                PyValue::List
            }
            _ if s[i..].starts_with(b"True") => {
                i += 4;
                PyValue::Bool(true)
            }
            _ if s[i..].starts_with(b"False") => {
                i += 5;
                PyValue::Bool(false)
            }
            _ => return Err(format!("cannot read the value of '{key}'")),
        };
        out.push((key, value));
        skip_ws(&mut i);
        match s.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => break,
            _ => return Err("expected ',' or '}'".to_string()),
        }
    }
    Ok(out)
}

/// Opens a .npy file and checks that its data is all there.
fn open_checked(path: &Path) -> Result<(File, Header)> {
    let mut file = File::open(path).opening(path)?;
    let len = file.metadata().reading(path)?.len();
    let header = read_header(&mut file, path, Some(len))?;
    let need = header.data_bytes().ok_or_else(|| {
        IoError::too_large(
            path,
            format!("the shape {} overflows", shape_str(&header.shape)),
        )
    })?;
    let have = len.saturating_sub(header.data_offset);
    if have < need {
        return Err(IoError::truncated(
            path,
            format!(
                "the header announces a {} array of shape {} ({need} bytes of data) but the file \
                 holds {have} bytes of data",
                header.dtype.name(),
                shape_str(&header.shape)
            ),
        ));
    }
    Ok((file, header))
}

/// A 2-D .npy file read in row chunks.
pub(super) struct NpyReader {
    file: File,
    path: PathBuf,
    pub dtype: Dtype,
    pub fortran: bool,
    pub rows: usize,
    pub cols: usize,
    offset: u64,
    /// The file position after the last C-order read (to skip redundant seeks).
    pos: Option<u64>,
    bytes: Vec<u8>,
}

impl NpyReader {
    /// Opens a .npy file holding a 2-D array.
    pub fn open(path: &Path) -> Result<Self> {
        let (file, header) = open_checked(path)?;
        let (rows, cols) = match header.shape[..] {
            [r, c] => (r, c),
            [] => {
                return Err(IoError::not_a_matrix(
                    path,
                    "a 0-d array (a single number), not a 2-D matrix (samples x features)",
                ))
            }
            [n] => {
                return Err(IoError::not_a_matrix(
                    path,
                    format!(
                        "a 1-D array of shape ({n},), not a 2-D matrix (samples x features): save \
                         it as x.reshape(-1, 1) for one feature or x.reshape(1, -1) for one sample"
                    ),
                ))
            }
            ref s => {
                return Err(IoError::not_a_matrix(
                    path,
                    format!(
                        "a {}-D array of shape {}, not a 2-D matrix (samples x features): reshape \
                         it, e.g. x.reshape({}, -1) for one row per sample",
                        s.len(),
                        shape_str(s),
                        s[0]
                    ),
                ))
            }
        };
        Ok(NpyReader {
            file,
            path: path.to_path_buf(),
            dtype: header.dtype,
            fortran: header.fortran,
            rows,
            cols,
            offset: header.data_offset,
            pos: None,
            bytes: Vec::new(),
        })
    }

    fn seek(&mut self, to: u64) -> Result<()> {
        if self.pos != Some(to) {
            self.file.seek(SeekFrom::Start(to)).reading(&self.path)?;
        }
        Ok(())
    }

    /// Reads `len` bytes into the buffer; an early end is reported as truncation at `row`.
    fn fill(&mut self, len: usize, row_of: impl Fn(usize) -> usize) -> Result<()> {
        self.bytes.clear();
        crate::alloc::reserve(&mut self.bytes, len, || {
            format!("a read buffer of {len} bytes")
        })
        .allocating(&self.path)?;
        self.bytes.resize(len, 0);
        let mut bytes = std::mem::take(&mut self.bytes);
        let read = self.read_into(&mut bytes, row_of);
        self.bytes = bytes;
        read
    }

    /// Fills `buf` from the file position; an early end is reported as truncation at `row_of(bytes
    /// read)`.
    fn read_into(&mut self, buf: &mut [u8], row_of: impl Fn(usize) -> usize) -> Result<()> {
        let got = read_full(&mut self.file, buf).reading(&self.path)?;
        if got < buf.len() {
            return Err(IoError::truncated(
                &self.path,
                format!(
                    "the data ends in row {} of {} (the file shrank while it was read?)",
                    row_of(got),
                    self.rows
                ),
            ));
        }
        Ok(())
    }

    /// Appends rows `start..start + take` (row-major) to `out`.
    pub fn read_rows<T: Real>(
        &mut self,
        start: usize,
        take: usize,
        out: &mut Vec<T>,
    ) -> Result<()> {
        let size = self.dtype.size();
        if take == 0 || self.cols == 0 {
            return Ok(());
        }
        if !self.fortran {
            let at = self.offset + (start * self.cols * size) as u64;
            self.seek(at)?;
            self.pos = None;
            let len = take * self.cols * size;
            let row_bytes = self.cols * size;
            if is_native::<T>(self.dtype) {
                // Straight into `out`: no read buffer, no second copy.
                let base = out.len();
                out.resize(base + take * self.cols, T::zero());
                let dst = bytemuck::cast_slice_mut::<T, u8>(&mut out[base..]);
                if let Err(e) = self.read_into(dst, |got| start + got / row_bytes) {
                    out.truncate(base);
                    return Err(e);
                }
            } else {
                self.fill(len, |got| start + got / row_bytes)?;
                decode(self.dtype, &self.bytes, out);
            }
            self.pos = Some(at + len as u64);
        } else {
            // Column j of a Fortran-order array is contiguous: read the chunk's part of each column.
            let base = out.len();
            out.resize(base + take * self.cols, T::of_f64(0.0));
            let mut column = Vec::with_capacity(take);
            for j in 0..self.cols {
                let at = self.offset + ((j * self.rows + start) * size) as u64;
                self.pos = None;
                self.seek(at)?;
                self.fill(take * size, |got| start + got / size)?;
                column.clear();
                decode(self.dtype, &self.bytes, &mut column);
                for (i, v) in column.iter().enumerate() {
                    out[base + i * self.cols + j] = *v;
                }
            }
            self.pos = None;
        }
        Ok(())
    }
}

impl NpyReader {
    /// Replaces `out` with columns `first..last` of every row, column after column (entry (i, j) at
    /// `out[(j - first) * rows + i]`). C order: one read of the block's span per row; Fortran order:
    /// one read per column (contiguous).
    pub fn read_columns<T: Real>(
        &mut self,
        first: usize,
        last: usize,
        out: &mut Vec<T>,
    ) -> Result<()> {
        let size = self.dtype.size();
        let (rows, width) = (self.rows, last - first);
        out.clear();
        crate::alloc::reserve(out, rows.saturating_mul(width), || {
            format!("{rows} x {width} values")
        })
        .allocating(&self.path)?;
        self.pos = None;
        if self.fortran {
            for j in first..last {
                let at = self.offset + ((j * rows) * size) as u64;
                self.seek(at)?;
                self.fill(rows * size, |got| got / size)?;
                decode(self.dtype, &self.bytes, out);
            }
        } else {
            out.resize(rows * width, T::zero());
            let mut segment = Vec::with_capacity(width);
            for i in 0..rows {
                let at = self.offset + ((i * self.cols + first) * size) as u64;
                self.seek(at)?;
                self.fill(width * size, |_| i)?;
                segment.clear();
                decode(self.dtype, &self.bytes, &mut segment);
                for (c, v) in segment.iter().enumerate() {
                    out[c * rows + i] = *v;
                }
            }
        }
        self.pos = None;
        Ok(())
    }
}

/// A whole .npy array of any dimension: its shape and its values in C (row-major) order.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray<T> {
    /// The dimensions, as the header gives them (empty for a 0-d array).
    pub shape: Vec<usize>,
    /// The values in C order (the last dimension fastest), whatever the file's order.
    pub data: Vec<T>,
}

/// Reads a whole .npy array of any dimension (e.g. a model's 1-D `mean.npy`), in C order.
pub fn read_npy<T: Real>(path: impl AsRef<Path>) -> Result<NpyArray<T>> {
    let path = path.as_ref();
    let (mut file, header) = open_checked(path)?;
    // open_checked made sure that the file holds these bytes.
    let need = header.data_bytes().unwrap_or(0) as usize;
    let shape = shape_str(&header.shape);
    let mut bytes = crate::alloc::filled(|| format!("the {shape} array"), Some(need), None, 0u8)
        .allocating(path)?;
    let got = read_full(&mut file, &mut bytes).reading(path)?;
    if got < need {
        return Err(IoError::truncated(
            path,
            format!("expected {need} bytes of data, read {got}"),
        ));
    }
    let mut values = Vec::new();
    let count = need / header.dtype.size();
    crate::alloc::reserve(&mut values, count, || {
        format!("the {shape} array as floats")
    })
    .allocating(path)?;
    decode(header.dtype, &bytes, &mut values);
    drop(bytes);
    let shape = header.shape;
    let data = if header.fortran && shape.len() > 1 {
        fortran_to_c(&values, &shape, path)?
    } else {
        values
    };
    Ok(NpyArray { shape, data })
}

/// Reorders a column-major (Fortran) array of any dimension to row-major (C) order.
fn fortran_to_c<T: Copy>(values: &[T], shape: &[usize], path: &Path) -> Result<Vec<T>> {
    let nd = shape.len();
    // Fortran strides (in elements).
    let mut strides = vec![1usize; nd];
    for d in 1..nd {
        strides[d] = strides[d - 1] * shape[d - 1];
    }
    let mut out = Vec::new();
    crate::alloc::reserve(&mut out, values.len(), || {
        format!("the C-order copy of a {} array", shape_str(shape))
    })
    .allocating(path)?;
    let mut index = vec![0usize; nd];
    for _ in 0..values.len() {
        let at: usize = index.iter().zip(&strides).map(|(i, s)| i * s).sum();
        out.push(values[at]);
        // Advance the C-order index (last dimension fastest).
        for d in (0..nd).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Ok(out)
}

/// The .npy header (version 1.0) of a little-endian float32 C-order array of `shape`, padded so that
/// the data starts at a multiple of 64 bytes.
pub(super) fn header_bytes(shape: &[usize]) -> Vec<u8> {
    let dict = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': {}, }}",
        shape_str(shape)
    );
    let unpadded = MAGIC.len() + 2 + 2 + dict.len() + 1;
    let total = unpadded.div_ceil(64) * 64;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    let header_len = (total - 10) as u16;
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dict_parser_reads_numpy_headers() {
        let d =
            parse_dict("{'descr': '<f8', 'fortran_order': True, 'shape': (3, 4), }   \n").unwrap();
        assert_eq!(d[0], ("descr".into(), PyValue::Str("<f8".into())));
        assert_eq!(d[1], ("fortran_order".into(), PyValue::Bool(true)));
        assert_eq!(d[2], ("shape".into(), PyValue::Tuple(vec![3, 4])));
        let d = parse_dict("{\"shape\": (5,), \"descr\": [('a', '<i4'), ('b', '<f8')]}").unwrap();
        assert_eq!(d[0].1, PyValue::Tuple(vec![5]));
        assert_eq!(d[1].1, PyValue::List);
        let d = parse_dict("{'shape': (), 'x': (2L, 3L)}").unwrap();
        assert_eq!(d[0].1, PyValue::Tuple(vec![]));
        assert_eq!(d[1].1, PyValue::Tuple(vec![2, 3]));
        assert!(parse_dict("descr").is_err());
        assert!(parse_dict("{'descr': '<f4'").is_err());
        assert!(parse_dict("{'shape': (3, x)}").is_err());
    }

    #[test]
    fn header_is_aligned() {
        for shape in [vec![3usize], vec![1000, 500], vec![123456789, 987654321]] {
            let h = header_bytes(&shape);
            assert_eq!(h.len() % 64, 0);
            assert_eq!(*h.last().unwrap(), b'\n');
            let parsed =
                read_header(&mut &h[..], Path::new("x.npy"), Some(h.len() as u64)).unwrap();
            assert_eq!(parsed.shape, shape);
            assert_eq!(parsed.data_offset as usize, h.len());
            assert_eq!(
                parsed.dtype,
                Dtype {
                    kind: Kind::F4,
                    big_endian: false
                }
            );
        }
    }

    #[test]
    fn fortran_reorder() {
        // A 2 x 3 array [[0, 1, 2], [3, 4, 5]] in Fortran order is 0 3 1 4 2 5.
        let p = Path::new("x.npy");
        assert_eq!(
            fortran_to_c(&[0, 3, 1, 4, 2, 5], &[2, 3], p).unwrap(),
            vec![0, 1, 2, 3, 4, 5]
        );
        // 2 x 2 x 2: element (i, j, l) at i + 2j + 4l.
        let f: Vec<usize> = (0..8).collect();
        let c = fortran_to_c(&f, &[2, 2, 2], p).unwrap();
        let expect: Vec<usize> = (0..8)
            .map(|n| (n >> 2) + 2 * ((n >> 1) & 1) + 4 * (n & 1))
            .collect();
        assert_eq!(c, expect);
    }
}
