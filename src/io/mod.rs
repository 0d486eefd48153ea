//! Reading data matrices from files, and writing results as .npy.
//!
//! | format | extensions | how it is read |
//! |---|---|---|
//! | NumPy | `.npy` | float32/64, (u)int8/16/32/64, bool; either byte order; C or Fortran order; 2-D only. **Streamed**: row chunks through one bounded buffer (no memory map) |
//! | delimited text | `.csv` (commas), `.tsv` (tabs), optionally `.gz` | numbers only; a first line without any number is a header; `#` lines and blank lines skipped; read whole, parsed in parallel |
//! | Matrix Market | `.mtx`, optionally `.gz` | `matrix coordinate` or `array`; `real`, `double`, `integer` or `pattern`; `general`, `symmetric` or `skew-symmetric`; densified by [`Reader`] (read whole; coordinate entries parsed in parallel), or coordinate files kept sparse by [`read_coordinates`] (what `laepca fit` does) |
//! | IDX (MNIST) | `.idx`, `*-ubyte` (e.g. `train-images-idx3-ubyte`), optionally `.gz` | u8, i8, i16, i32, f32, f64; n x d1 x d2... flattened to one row of d1·d2·... values per item; **streamed** |
//! | AnnData | `.h5ad` (the `h5ad` feature: HDF5) | one matrix (`X`, `raw.X` or a layer; [`H5adOptions`]), dense, CSR or CSC, any float or integer type, optionally a boolean var column as a feature mask; [`H5adFile::read_csr`] keeps a sparse matrix sparse, a [`Reader`] streams row blocks of any layout (CSC: converted whole first) |
//!
//! A [`Reader`] gives the shape up front and then rows in chunks ([`Reader::read_rows`]), converted to
//! `f32` or `f64` (see [`Reader::precision`] for the type that keeps every value), so that a file larger
//! than memory can be pushed into a [`GramAccumulator`](crate::GramAccumulator) chunk by chunk:
//!
//! ```no_run
//! use laepca::{io::Reader, GramAccumulator, LaePca};
//!
//! let mut reader = Reader::open("big.npy")?;
//! let mut acc = GramAccumulator::new(reader.cols(), true)?;
//! let mut chunk = Vec::<f32>::new();
//! while reader.read_rows(&mut chunk, reader.chunk_rows())? > 0 {
//!     acc.push_rows(&chunk)?;
//! }
//! let fit = LaePca::new(10).fit_gram::<f32>(&acc.finish()?)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The text formats are parsed in blocks of whole lines on rayon's threads and joined in file order:
//! the values, the line numbers and the first error reported do not depend on the thread count
//! (`RAYON_NUM_THREADS`). gzip is inflated by zlib-rs (flate2's fastest pure-Rust backend).
//!
//! Results are written with [`write_npy`] (float32, C order) or staged with [`NpyWriter`] /
//! [`stage_bytes`] and renamed into place by [`StagedFile::commit`]: a temporary file in the same
//! directory, then a rename, so that a reader never sees half a file.

mod dtype;
mod error;
mod h5ad;
mod idx;
mod lines;
mod mtx;
mod npy;
mod stream;
mod text;
mod write;

use error::SizeContext;
pub use error::{IoError, Result};
pub use h5ad::{H5adFile, H5adMatrix, H5adOptions};
pub use mtx::Coordinates;
pub use npy::{read_npy, NpyArray};
pub use write::{stage_bytes, stage_npy, write_atomic, write_npy, NpyWriter, StagedFile};

use crate::Real;
use nalgebra::DMatrix;
use std::io::Read;
use std::path::{Path, PathBuf};
use stream::Input;

/// The bytes of file data one chunk of [`Reader::chunk_rows`] rows holds at most (as f64: 8 MiB).
pub const CHUNK_BYTES: usize = 8 << 20;

/// A data file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// NumPy `.npy`.
    Npy,
    /// Comma-separated values.
    Csv,
    /// Tab-separated values.
    Tsv,
    /// Matrix Market `.mtx`.
    MatrixMarket,
    /// IDX (MNIST's format).
    Idx,
    /// AnnData `.h5ad` (HDF5).
    H5ad,
}

impl Format {
    /// A short name: npy, csv, tsv, mtx, idx or h5ad.
    pub fn name(self) -> &'static str {
        match self {
            Format::Npy => "npy",
            Format::Csv => "csv",
            Format::Tsv => "tsv",
            Format::MatrixMarket => "mtx",
            Format::Idx => "idx",
            Format::H5ad => "h5ad",
        }
    }

    /// The format a file name says (a trailing `.gz` is looked through, except for `.npy`).
    pub fn from_path(path: impl AsRef<Path>) -> Result<Format> {
        let path = path.as_ref();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let gz = name.ends_with(".gz");
        let stem = name.strip_suffix(".gz").unwrap_or(&name);
        let ext = stem.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
        let format = match ext {
            "npy" if !gz => Format::Npy,
            "csv" => Format::Csv,
            "tsv" | "tab" => Format::Tsv,
            "mtx" => Format::MatrixMarket,
            "idx" => Format::Idx,
            "h5ad" if !gz => Format::H5ad,
            _ if stem.ends_with("ubyte")
                || (ext.starts_with("idx") && ext[3..].chars().all(|c| c.is_ascii_digit())) =>
            {
                Format::Idx
            }
            _ => {
                return Err(IoError::UnknownFormat {
                    path: path.to_path_buf(),
                })
            }
        };
        Ok(format)
    }
}

/// The float type that holds every value of a file exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Precision {
    /// float32 files, (u)int8/16 and bool: `f32` loses nothing.
    F32,
    /// float64, (u)int32/64 and text: read as `f64`.
    F64,
}

impl Precision {
    /// "f32" or "f64".
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F64 => "f64",
        }
    }
}

/// A matrix held in memory (text formats), row-major, with the source line of each row if any.
#[derive(Debug)]
pub(crate) struct Dense {
    pub rows: usize,
    pub cols: usize,
    pub values: Vec<f64>,
    pub lines: Option<Vec<usize>>,
}

enum Source {
    Npy(npy::NpyReader),
    Idx(idx::IdxReader),
    H5ad(Box<H5adFile>),
    Memory(Dense),
}

/// A data matrix file, open for reading in row chunks: rows are what the file has as rows (samples,
/// unless the caller lays the data out with features in rows).
pub struct Reader {
    path: PathBuf,
    format: Format,
    rows: usize,
    cols: usize,
    dtype: String,
    precision: Precision,
    next: usize,
    source: Source,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("dtype", &self.dtype)
            .field("next", &self.next)
            .finish()
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read (an early end is not an error
/// here: the caller knows how much it expected).
pub(crate) fn read_full(r: &mut (impl Read + ?Sized), buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // A truncated gzip stream ends with this kind: the caller reports the truncation.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl Reader {
    /// Opens a data file; its format comes from its name (see [`Format::from_path`]). The header (or, for
    /// text formats, the whole file) is read and checked here.
    pub fn open(path: impl AsRef<Path>) -> Result<Reader> {
        let path = path.as_ref();
        let format = Format::from_path(path)?;
        if path.is_dir() {
            return Err(IoError::open(
                path,
                std::io::Error::other("it is a directory"),
            ));
        }
        let (rows, cols, dtype, precision, source) = match format {
            Format::Npy => {
                let r = npy::NpyReader::open(path)?;
                let dtype = format!(
                    "{}{}",
                    r.dtype.name(),
                    if r.fortran { ", Fortran order" } else { "" }
                );
                (r.rows, r.cols, dtype, r.dtype.precision(), Source::Npy(r))
            }
            Format::Idx => {
                let r = idx::IdxReader::open(Input::open(path)?, path)?;
                let dims = r
                    .dims
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(" x ");
                let dtype = format!("{} ({dims})", r.dtype_name());
                (r.rows, r.cols, dtype, r.precision(), Source::Idx(r))
            }
            Format::H5ad => {
                return Ok(Reader::from_h5ad(H5adFile::open(
                    path,
                    &H5adOptions::default(),
                )?))
            }
            Format::Csv | Format::Tsv | Format::MatrixMarket => {
                let mut input = Input::open(path)?;
                let holds = input.holds();
                let read = match format {
                    Format::Csv => text::read_delimited(&mut input, ',', path),
                    Format::Tsv => text::read_delimited(&mut input, '\t', path),
                    _ => mtx::read_mtx(&mut input, path, holds),
                };
                // A parse error in a corrupt gzip file is about garbage: report the corruption.
                let d = read.map_err(|e| input.explain(e))?;
                let dtype = if format == Format::MatrixMarket {
                    "dense f64"
                } else {
                    "text"
                };
                (
                    d.rows,
                    d.cols,
                    dtype.to_string(),
                    Precision::F64,
                    Source::Memory(d),
                )
            }
        };
        Ok(Reader {
            path: path.to_path_buf(),
            format,
            rows,
            cols,
            dtype,
            precision,
            next: 0,
            source,
        })
    }

    /// A reader of an opened `.h5ad` matrix (any layout; [`Reader::open`] opens `X`): row blocks are
    /// read as they are asked for, masked; a CSC matrix is converted to CSR whole on the first block.
    pub fn from_h5ad(file: H5adFile) -> Reader {
        Reader {
            path: file.path().to_path_buf(),
            format: Format::H5ad,
            rows: file.rows(),
            cols: file.cols(),
            dtype: file.dtype().to_string(),
            precision: file.precision(),
            next: 0,
            source: Source::H5ad(Box::new(file)),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The file's format.
    pub fn format(&self) -> Format {
        self.format
    }
    /// Rows of the matrix.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Columns of the matrix.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// The stored value type, e.g. "float32", "uint8 (60000 x 28 x 28)", "text".
    pub fn dtype(&self) -> &str {
        &self.dtype
    }
    /// The float type that holds every value exactly (f32 for float32 and small integers).
    pub fn precision(&self) -> Precision {
        self.precision
    }
    /// Rows delivered so far.
    pub fn rows_read(&self) -> usize {
        self.next
    }
    /// A chunk size (rows) whose values take at most [`CHUNK_BYTES`] as f64 (at least one row).
    pub fn chunk_rows(&self) -> usize {
        (CHUNK_BYTES / (self.cols.max(1) * 8)).max(1)
    }
    /// The 1-based line of the file that holds `row` (text formats only).
    pub fn source_line(&self, row: usize) -> Option<usize> {
        match &self.source {
            Source::Memory(Dense {
                lines: Some(lines), ..
            }) => lines.get(row).copied(),
            _ => None,
        }
    }

    /// Appends up to `max_rows` next rows to `out` (row-major); returns how many (0 at the end).
    fn append_rows<T: Real>(&mut self, out: &mut Vec<T>, max_rows: usize) -> Result<usize> {
        let take = max_rows.min(self.rows - self.next);
        if take == 0 {
            return Ok(0);
        }
        let (cols, path) = (self.cols, &self.path);
        let values = take.saturating_mul(cols);
        crate::alloc::reserve(out, values, || format!("{take} rows of {cols} values"))
            .allocating(path)?;
        match &mut self.source {
            Source::Npy(r) => r.read_rows(self.next, take, out)?,
            Source::Idx(r) => r.read_rows(self.next, take, out)?,
            Source::H5ad(r) => r.read_rows(self.next, take, out)?,
            Source::Memory(d) => out.extend(
                d.values[self.next * d.cols..(self.next + take) * d.cols]
                    .iter()
                    .map(|&v| T::of_f64(v)),
            ),
        }
        self.next += take;
        Ok(take)
    }

    /// Replaces `out` with up to `max_rows` next rows (row-major, `rows x cols()` values); returns how
    /// many rows (0 at the end of the file).
    pub fn read_rows<T: Real>(&mut self, out: &mut Vec<T>, max_rows: usize) -> Result<usize> {
        out.clear();
        self.append_rows(out, max_rows)
    }

    /// Reads all the remaining rows.
    pub fn read_all<T: Real>(&mut self) -> Result<Matrix<T>> {
        let (remaining, cols) = (self.rows - self.next, self.cols);
        let mut data = Vec::new();
        crate::alloc::reserve(&mut data, remaining.saturating_mul(cols), || {
            format!("the whole {remaining} x {cols} matrix")
        })
        .allocating(&self.path)?;
        let chunk = self.chunk_rows();
        while self.append_rows(&mut data, chunk)? > 0 {}
        Ok(Matrix {
            rows: remaining,
            cols: self.cols,
            data,
        })
    }
}

/// A matrix read whole: `rows x cols`, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix<T> {
    /// Rows (as the file has them).
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// The `rows x cols` values, row after row.
    pub data: Vec<T>,
}

impl<T: Real> Matrix<T> {
    /// As an nalgebra matrix (a column-major copy).
    pub fn to_dmatrix(&self) -> DMatrix<T> {
        DMatrix::from_row_slice(self.rows, self.cols, &self.data)
    }
}

/// Reads a whole data matrix file (any format of [`Reader`]).
pub fn read_matrix<T: Real>(path: impl AsRef<Path>) -> Result<Matrix<T>> {
    Reader::open(path)?.read_all()
}

/// A `.npy` file (2-D, samples in rows, any dtype [`Reader`] takes) read by blocks of features for
/// [`LaePca::fit_feature_blocks`](crate::LaePca::fit_feature_blocks): wide data fitted without being
/// held in memory. Each block is read with one read per row (C order) or per column (Fortran order);
/// the values are those [`Reader`] gives.
pub struct NpyFeatures {
    reader: npy::NpyReader,
}

impl std::fmt::Debug for NpyFeatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NpyFeatures")
            .field("rows", &self.reader.rows)
            .field("cols", &self.reader.cols)
            .finish()
    }
}

impl NpyFeatures {
    /// Opens a `.npy` file (its header is read and checked here).
    pub fn open(path: impl AsRef<Path>) -> Result<NpyFeatures> {
        let path = path.as_ref();
        if Format::from_path(path)? != Format::Npy {
            return Err(IoError::invalid(
                path,
                "only .npy files (uncompressed, seekable) are read by blocks of features",
            ));
        }
        Ok(NpyFeatures {
            reader: npy::NpyReader::open(path)?,
        })
    }
    /// The float type that holds every value exactly.
    pub fn precision(&self) -> Precision {
        self.reader.dtype.precision()
    }
}

impl<T: Real> crate::FeatureBlocks<T> for NpyFeatures {
    fn n_samples(&self) -> usize {
        self.reader.rows
    }
    fn n_features(&self) -> usize {
        self.reader.cols
    }
    fn read_features(&mut self, first: usize, last: usize, out: &mut Vec<T>) -> crate::Result<()> {
        if first > last || last > self.reader.cols {
            return Err(crate::Error::Read {
                detail: format!(
                    "features {first}..{last} asked of a file of {} features",
                    self.reader.cols
                ),
            });
        }
        self.reader
            .read_columns(first, last, out)
            .map_err(|e| crate::Error::Read {
                detail: e.to_string(),
            })
    }
}

/// Whether a file is sparse: a Matrix Market coordinate file (only its banner is read), or an `.h5ad`
/// file whose `X` is CSR or CSC. Every other format is dense.
pub fn is_sparse(path: impl AsRef<Path>) -> Result<bool> {
    let path = path.as_ref();
    match Format::from_path(path)? {
        Format::MatrixMarket => {}
        Format::H5ad => return Ok(H5adFile::open(path, &H5adOptions::default())?.is_sparse()),
        _ => return Ok(false),
    }
    let mut input = Input::open(path)?;
    mtx::is_coordinate(&mut input, path).map_err(|e| input.explain(e))
}

/// A Matrix Market file opened for reading sparse (any other format is refused).
fn open_coordinates(path: &Path) -> Result<Input> {
    if Format::from_path(path)? != Format::MatrixMarket {
        return Err(IoError::invalid(
            path,
            "only Matrix Market coordinate files (.mtx, .mtx.gz) are read sparse",
        ));
    }
    Input::open(path)
}

/// The shape (rows, columns) and the number of entry lines of a Matrix Market coordinate file, from its
/// first lines only: what a caller checks before [`read_coordinates`] reads the entries.
pub fn coordinate_shape(path: impl AsRef<Path>) -> Result<(usize, usize, usize)> {
    let path = path.as_ref();
    let mut input = open_coordinates(path)?;
    mtx::coordinate_shape(&mut input, path).map_err(|e| input.explain(e))
}

/// Reads a Matrix Market coordinate file (optionally gzipped) without densifying it; turn the entries
/// into a [`CsrMatrix`](crate::CsrMatrix) with [`Coordinates::into_csr`].
pub fn read_coordinates(path: impl AsRef<Path>) -> Result<Coordinates> {
    let path = path.as_ref();
    let mut input = open_coordinates(path)?;
    let holds = input.holds();
    mtx::read_coordinates(&mut input, path, holds).map_err(|e| input.explain(e))
}

#[cfg(test)]
mod tests;
