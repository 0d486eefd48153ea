//! The error type of [`crate::io`]: every message names the file.

use crate::alloc::{Limit, SizeError};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Everything that can go wrong reading a data file or writing a result. Each message starts with (or
/// names) the file, and for text formats the line and column, so that it can be shown as it is.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum IoError {
    /// The file could not be opened (missing, a directory, no permission).
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },

    /// Reading failed half-way (other than an early end of the file, which is [`IoError::Truncated`]).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },

    /// Writing or renaming an output failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },

    /// The file name does not say which format the file is in.
    #[error(
        "{}: unknown file type: expected .npy, .csv, .tsv, .mtx, .h5ad or an IDX file (.idx, \
         *-ubyte), the text and IDX formats optionally gzipped (.gz)",
        path.display()
    )]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },

    /// The file does not start like a file of its format (bad magic number, unreadable header).
    #[error("{}: not a valid {format} file: {detail}", path.display())]
    BadHeader {
        /// The file.
        path: PathBuf,
        /// The format the file's name says it is in, e.g. ".npy".
        format: &'static str,
        /// What is wrong with the header.
        detail: String,
    },

    /// The file holds values of a type this crate does not read (complex, strings, float16, ...).
    #[error("{}: unsupported data type {dtype}: {detail}", path.display())]
    UnsupportedDtype {
        /// The file.
        path: PathBuf,
        /// The type as the file names it, e.g. `'<f2'` or `0x0A`.
        dtype: String,
        /// Why it is not read, and what to do instead.
        detail: String,
    },

    /// The file holds an array that is not a 2-D matrix (a 1-D array, a label file, a 3-D array).
    #[error("{}: {detail}", path.display())]
    NotAMatrix {
        /// The file.
        path: PathBuf,
        /// What the file holds, or what is missing.
        detail: String,
    },

    /// The file ends before the data its header announces.
    #[error("{}: truncated file: {detail}", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// What the file holds, or what is missing.
        detail: String,
    },

    /// A value of a text file could not be read (1-based line and column).
    #[error("{}: line {line}, column {column}: {detail}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line (1-based).
        line: usize,
        /// The field or token of the line (1-based).
        column: usize,
        /// What is wrong with it.
        detail: String,
    },

    /// A line of a delimited text file has a different number of fields than the first data line.
    #[error(
        "{}: line {line} has {found} fields but line {first_line} has {expected} (ragged rows: \
         every row needs the same number of columns)",
        path.display()
    )]
    Ragged {
        /// The file.
        path: PathBuf,
        /// The line with the wrong number of fields (1-based).
        line: usize,
        /// The fields it has.
        found: usize,
        /// The fields of the first data line.
        expected: usize,
        /// The first data line (1-based).
        first_line: usize,
    },

    /// The matrix is too large to be held in memory as this format requires.
    #[error("{}: too large: {detail}", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// What the file holds, or what is missing.
        detail: String,
    },

    /// A gzip file whose data does not decode, or whose checksum or length does not match its trailer.
    #[error("{}: corrupt gzip data: {detail}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the file holds, or what is missing.
        detail: String,
    },

    /// Any other inconsistency of the content (an index out of range, the wrong number of values).
    #[error("{}: {detail}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What the file holds, or what is missing.
        detail: String,
    },
}

impl IoError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            IoError::Open { path, .. }
            | IoError::Read { path, .. }
            | IoError::Write { path, .. }
            | IoError::UnknownFormat { path }
            | IoError::BadHeader { path, .. }
            | IoError::UnsupportedDtype { path, .. }
            | IoError::NotAMatrix { path, .. }
            | IoError::Truncated { path, .. }
            | IoError::Parse { path, .. }
            | IoError::Ragged { path, .. }
            | IoError::TooLarge { path, .. }
            | IoError::Corrupt { path, .. }
            | IoError::Invalid { path, .. } => path,
        }
    }
}

/// Constructors, so that each place that reports an error names the file and says what is wrong in
/// one call (the message formats are those of the variants above).
impl IoError {
    /// [`IoError::Open`].
    pub(crate) fn open(path: &Path, source: std::io::Error) -> Self {
        IoError::Open {
            path: path.to_path_buf(),
            source,
        }
    }

    /// [`IoError::Read`].
    pub(crate) fn read(path: &Path, source: std::io::Error) -> Self {
        IoError::Read {
            path: path.to_path_buf(),
            source,
        }
    }

    /// [`IoError::Write`].
    pub(crate) fn write(path: &Path, source: std::io::Error) -> Self {
        IoError::Write {
            path: path.to_path_buf(),
            source,
        }
    }

    /// [`IoError::BadHeader`].
    pub(crate) fn bad_header(path: &Path, format: &'static str, detail: impl Into<String>) -> Self {
        IoError::BadHeader {
            path: path.to_path_buf(),
            format,
            detail: detail.into(),
        }
    }

    /// [`IoError::UnsupportedDtype`].
    pub(crate) fn unsupported(
        path: &Path,
        dtype: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        IoError::UnsupportedDtype {
            path: path.to_path_buf(),
            dtype: dtype.into(),
            detail: detail.into(),
        }
    }

    /// [`IoError::NotAMatrix`].
    pub(crate) fn not_a_matrix(path: &Path, detail: impl Into<String>) -> Self {
        IoError::NotAMatrix {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }

    /// [`IoError::Truncated`].
    pub(crate) fn truncated(path: &Path, detail: impl Into<String>) -> Self {
        IoError::Truncated {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }

    /// [`IoError::Parse`] at a 1-based line and column.
    pub(crate) fn parse(
        path: &Path,
        line: usize,
        column: usize,
        detail: impl Into<String>,
    ) -> Self {
        IoError::Parse {
            path: path.to_path_buf(),
            line,
            column,
            detail: detail.into(),
        }
    }

    /// [`IoError::TooLarge`].
    pub(crate) fn too_large(path: &Path, detail: impl Into<String>) -> Self {
        IoError::TooLarge {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }

    /// [`IoError::Corrupt`].
    pub(crate) fn corrupt(path: &Path, detail: impl Into<String>) -> Self {
        IoError::Corrupt {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }

    /// [`IoError::Invalid`].
    pub(crate) fn invalid(path: &Path, detail: impl Into<String>) -> Self {
        IoError::Invalid {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }

    /// A refused allocation: what the input cannot hold is a truncated (or corrupt) file, the rest is
    /// too large.
    pub(crate) fn size(path: &Path, e: SizeError) -> IoError {
        match e.limit {
            Limit::Input { .. } => IoError::truncated(path, e.to_string()),
            _ => IoError::too_large(path, e.to_string()),
        }
    }
}

/// Names the file in a failed system call: `File::open(path).opening(path)?`.
pub(crate) trait IoContext<T> {
    /// The error as [`IoError::Open`].
    fn opening(self, path: &Path) -> Result<T>;
    /// The error as [`IoError::Read`].
    fn reading(self, path: &Path) -> Result<T>;
    /// The error as [`IoError::Write`].
    fn writing(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn opening(self, path: &Path) -> Result<T> {
        self.map_err(|source| IoError::open(path, source))
    }
    fn reading(self, path: &Path) -> Result<T> {
        self.map_err(|source| IoError::read(path, source))
    }
    fn writing(self, path: &Path) -> Result<T> {
        self.map_err(|source| IoError::write(path, source))
    }
}

/// Names the file in a refused allocation (see [`IoError::size`]): `reserve(...).allocating(path)?`.
pub(crate) trait SizeContext<T> {
    /// The error as [`IoError::Truncated`] or [`IoError::TooLarge`].
    fn allocating(self, path: &Path) -> Result<T>;
}

impl<T> SizeContext<T> for std::result::Result<T, SizeError> {
    fn allocating(self, path: &Path) -> Result<T> {
        self.map_err(|e| IoError::size(path, e))
    }
}

/// Shorthand for `Result<T, IoError>`.
pub type Result<T, E = IoError> = std::result::Result<T, E>;
