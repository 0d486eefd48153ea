//! The IDX format of MNIST and Fashion-MNIST (optionally gzipped): a magic number `00 00 TT DD` (type and
//! dimension count), DD big-endian u32 sizes, then big-endian values. Image files (n x rows x cols) are
//! flattened to one row per image; 1-D files (labels) are not data matrices.

use super::dtype::{decode, element_count, Dtype, Kind};
use super::error::{IoError, Result, SizeContext};
use super::stream::Input;
use super::{read_full, Precision};
use crate::Real;
use std::path::{Path, PathBuf};

/// An IDX file read in row chunks from a (possibly decompressing) stream.
pub(super) struct IdxReader {
    input: Input,
    path: PathBuf,
    pub dtype: Dtype,
    pub rows: usize,
    pub cols: usize,
    /// The dimensions as the header gives them.
    pub dims: Vec<usize>,
    bytes: Vec<u8>,
}

impl IdxReader {
    /// Reads the header from `input` and checks that the stream can hold the data it announces.
    pub fn open(mut input: Input, path: &Path) -> Result<Self> {
        let mut magic = [0u8; 4];
        let got = read_full(&mut input, &mut magic).map_err(|e| input.corrupt(e))?;
        if got < 4 || magic[0] != 0 || magic[1] != 0 {
            return Err(IoError::bad_header(
                path,
                "IDX",
                "it does not start with an IDX magic number (00 00, type, dimensions)",
            ));
        }
        let kind = Kind::from_idx_code(magic[2]).ok_or_else(|| {
            IoError::unsupported(
                path,
                format!("0x{:02X}", magic[2]),
                "IDX types are 0x08 (u8), 0x09 (i8), 0x0B (i16), 0x0C (i32), 0x0D (f32) and 0x0E \
                 (f64)",
            )
        })?;
        // IDX values are big-endian.
        let dtype = Dtype {
            kind,
            big_endian: true,
        };
        let ndim = magic[3] as usize;
        if ndim == 0 {
            return Err(IoError::bad_header(path, "IDX", "it declares 0 dimensions"));
        }
        let mut raw = vec![0u8; 4 * ndim];
        let got = read_full(&mut input, &mut raw).map_err(|e| input.corrupt(e))?;
        if got < raw.len() {
            return Err(IoError::truncated(
                path,
                "the file ends inside the IDX header",
            ));
        }
        let dims: Vec<usize> = raw
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
            .collect();
        if ndim == 1 {
            return Err(IoError::not_a_matrix(
                path,
                format!(
                    "a 1-D IDX file of {} values (a label file?), not a data matrix: use the images file",
                    dims[0]
                ),
            ));
        }
        let cols = element_count(&dims[1..])
            .ok_or_else(|| IoError::too_large(path, format!("the dimensions {dims:?} overflow")))?;
        // The data the header announces must fit in what the stream can hold (the file's size, or
        // the most a gzip file of its size decompresses to).
        let size = dtype.size();
        let header = 4 + raw.len() as u64;
        let values = dims[0].checked_mul(cols);
        let described = || {
            format!(
                "the data the header announces ({} values of {size} bytes)",
                dims.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(" x ")
            )
        };
        let holds = input
            .holds()
            .map(|h| h.saturating_sub(header) / size as u64);
        crate::alloc::check(described, values, size, holds).or_else(|e| match e.limit {
            // Memory is no limit here: the data is streamed.
            crate::alloc::Limit::Memory { .. } => Ok(()),
            // A plain file's size is exact: name the row where its data ends.
            crate::alloc::Limit::Input { .. } if !input.is_gzip() => Err(IoError::truncated(
                path,
                format!(
                    "the header announces {} rows of {cols} values but the data ends in row {}",
                    dims[0],
                    holds.unwrap_or(0) / cols.max(1) as u64
                ),
            )),
            _ => Err(IoError::size(path, e)),
        })?;
        Ok(IdxReader {
            input,
            path: path.to_path_buf(),
            dtype,
            rows: dims[0],
            cols,
            dims,
            bytes: Vec::new(),
        })
    }

    /// The type's name (without the byte order: IDX is always big-endian).
    pub fn dtype_name(&self) -> &'static str {
        self.dtype.kind.name()
    }

    /// The float type that holds every value exactly.
    pub fn precision(&self) -> Precision {
        self.dtype.precision()
    }

    /// Appends the next `take` rows (row-major) to `out`; `start` is the index of the first of them.
    pub fn read_rows<T: Real>(
        &mut self,
        start: usize,
        take: usize,
        out: &mut Vec<T>,
    ) -> Result<()> {
        // Both fit: open checked rows x cols x size against the stream.
        let row_bytes = self.cols * self.dtype.size();
        let len = take * row_bytes;
        self.bytes.clear();
        crate::alloc::reserve(&mut self.bytes, len, || {
            format!("a read buffer of {len} bytes")
        })
        .allocating(&self.path)?;
        self.bytes.resize(len, 0);
        let got = read_full(&mut self.input, &mut self.bytes).map_err(|e| self.input.corrupt(e))?;
        if got < len {
            return Err(IoError::truncated(
                &self.path,
                format!(
                    "the header announces {} rows of {} values but the data ends in row {}",
                    self.rows,
                    self.cols,
                    start + got / row_bytes.max(1)
                ),
            ));
        }
        if start + take == self.rows {
            // The last row: read on to the end, so that a gzip trailer is checked (CRC and length).
            let left = self.input.finish()?;
            if left > 0 {
                return Err(IoError::invalid(
                    &self.path,
                    format!(
                        "{left} bytes follow the {} rows of {} values the header announces",
                        self.rows, self.cols
                    ),
                ));
            }
        }
        decode(self.dtype, &self.bytes, out);
        Ok(())
    }
}
