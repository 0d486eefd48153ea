//! The error type of [`crate::io`]: every message names the file.

use crate::alloc::{Limit, SizeError};
use std::path::PathBuf;
use thiserror::Error;

/// Everything that can go wrong reading a data file or writing a result. Each message starts with (or
/// names) the file, and for text formats the line and column, so that it can be shown as it is.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum IoError {
    /// The file could not be opened (missing, a directory, no permission).
    #[error("cannot open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },

    /// Reading failed half-way (other than an early end of the file, which is [`IoError::Truncated`]).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    /// Writing or renaming an output failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },

    /// The file name does not say which format the file is in.
    #[error(
        "{}: unknown file type: expected .npy, .csv, .tsv, .mtx or an IDX file (.idx, *-ubyte), \
         the text and IDX formats optionally gzipped (.gz)",
        path.display()
    )]
    UnknownFormat { path: PathBuf },

    /// The file does not start like a file of its format (bad magic number, unreadable header).
    #[error("{}: not a valid {format} file: {detail}", path.display())]
    BadHeader {
        path: PathBuf,
        format: &'static str,
        detail: String,
    },

    /// The file holds values of a type this crate does not read (complex, strings, float16, ...).
    #[error("{}: unsupported data type {dtype}: {detail}", path.display())]
    UnsupportedDtype {
        path: PathBuf,
        dtype: String,
        detail: String,
    },

    /// The file holds an array that is not a 2-D matrix (a 1-D array, a label file, a 3-D array).
    #[error("{}: {detail}", path.display())]
    NotAMatrix { path: PathBuf, detail: String },

    /// The file ends before the data its header announces.
    #[error("{}: truncated file: {detail}", path.display())]
    Truncated { path: PathBuf, detail: String },

    /// A value of a text file could not be read (1-based line and column).
    #[error("{}: line {line}, column {column}: {detail}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        detail: String,
    },

    /// A line of a delimited text file has a different number of fields than the first data line.
    #[error(
        "{}: line {line} has {found} fields but line {first_line} has {expected} (ragged rows: \
         every row needs the same number of columns)",
        path.display()
    )]
    Ragged {
        path: PathBuf,
        line: usize,
        found: usize,
        expected: usize,
        first_line: usize,
    },

    /// The matrix is too large to be held in memory as this format requires.
    #[error("{}: too large: {detail}", path.display())]
    TooLarge { path: PathBuf, detail: String },

    /// A gzip file whose data does not decode, or whose checksum or length does not match its trailer.
    #[error("{}: corrupt gzip data: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },

    /// Any other inconsistency of the content (an index out of range, the wrong number of values).
    #[error("{}: {detail}", path.display())]
    Invalid { path: PathBuf, detail: String },
}

impl IoError {
    /// The file the error is about.
    pub fn path(&self) -> &std::path::Path {
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

impl IoError {
    /// A refused allocation: what the input cannot hold is a truncated (or corrupt) file, the rest is
    /// too large.
    pub(crate) fn size(path: &std::path::Path, e: SizeError) -> IoError {
        let path = path.to_path_buf();
        let detail = e.to_string();
        match e.limit {
            Limit::Input { .. } => IoError::Truncated { path, detail },
            _ => IoError::TooLarge { path, detail },
        }
    }
}

/// Shorthand for `Result<T, IoError>`.
pub type Result<T, E = IoError> = std::result::Result<T, E>;
