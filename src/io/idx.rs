//! The IDX format of MNIST and Fashion-MNIST (optionally gzipped): a magic number `00 00 TT DD` (type and
//! dimension count), DD big-endian u32 sizes, then big-endian values. Image files (n x rows x cols) are
//! flattened to one row per image; 1-D files (labels) are not data matrices.

use super::error::{IoError, Result};
use super::npy::{decode, Dtype, Kind};
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
        let bad = |detail: String| IoError::BadHeader {
            path: path.to_path_buf(),
            format: "IDX",
            detail,
        };
        let mut magic = [0u8; 4];
        let got = read_full(&mut input, &mut magic).map_err(|e| input.corrupt(e))?;
        if got < 4 || magic[0] != 0 || magic[1] != 0 {
            return Err(bad(
                "it does not start with an IDX magic number (00 00, type, dimensions)".to_string(),
            ));
        }
        let kind =
            match magic[2] {
                0x08 => Kind::U1,
                0x09 => Kind::I1,
                0x0B => Kind::I2,
                0x0C => Kind::I4,
                0x0D => Kind::F4,
                0x0E => Kind::F8,
                t => return Err(IoError::UnsupportedDtype {
                    path: path.to_path_buf(),
                    dtype: format!("0x{t:02X}"),
                    detail:
                        "IDX types are 0x08 (u8), 0x09 (i8), 0x0B (i16), 0x0C (i32), 0x0D (f32) \
                             and 0x0E (f64)"
                            .to_string(),
                }),
            };
        let ndim = magic[3] as usize;
        if ndim == 0 {
            return Err(bad("it declares 0 dimensions".to_string()));
        }
        let mut raw = vec![0u8; 4 * ndim];
        let got = read_full(&mut input, &mut raw).map_err(|e| input.corrupt(e))?;
        if got < raw.len() {
            return Err(IoError::Truncated {
                path: path.to_path_buf(),
                detail: "the file ends inside the IDX header".to_string(),
            });
        }
        let dims: Vec<usize> = raw
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
            .collect();
        if ndim == 1 {
            return Err(IoError::NotAMatrix {
                path: path.to_path_buf(),
                detail: format!(
                    "a 1-D IDX file of {} values (a label file?), not a data matrix: use the images file",
                    dims[0]
                ),
            });
        }
        let cols = dims[1..]
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| IoError::TooLarge {
                path: path.to_path_buf(),
                detail: format!("the dimensions {dims:?} overflow"),
            })?;
        // The data the header announces must fit in what the stream can hold (the file's size, or
        // the most a gzip file of its size decompresses to).
        let size = Dtype {
            kind,
            big_endian: true,
        }
        .size();
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
            crate::alloc::Limit::Input { .. } if !input.is_gzip() => Err(IoError::Truncated {
                path: path.to_path_buf(),
                detail: format!(
                    "the header announces {} rows of {cols} values but the data ends in row {}",
                    dims[0],
                    holds.unwrap_or(0) / cols.max(1) as u64
                ),
            }),
            _ => Err(IoError::size(path, e)),
        })?;
        Ok(IdxReader {
            input,
            path: path.to_path_buf(),
            dtype: Dtype {
                kind,
                big_endian: true,
            },
            rows: dims[0],
            cols,
            dims,
            bytes: Vec::new(),
        })
    }

    /// The IDX type name.
    pub fn dtype_name(&self) -> String {
        match self.dtype.kind {
            Kind::U1 => "uint8",
            Kind::I1 => "int8",
            Kind::I2 => "int16",
            Kind::I4 => "int32",
            Kind::F4 => "float32",
            _ => "float64",
        }
        .to_string()
    }

    /// The float type that holds every value exactly.
    pub fn precision(&self) -> Precision {
        match self.dtype.kind {
            Kind::I4 | Kind::F8 => Precision::F64,
            _ => Precision::F32,
        }
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
        .map_err(|e| IoError::size(&self.path, e))?;
        self.bytes.resize(len, 0);
        let got = read_full(&mut self.input, &mut self.bytes).map_err(|e| self.input.corrupt(e))?;
        if got < len {
            return Err(IoError::Truncated {
                path: self.path.clone(),
                detail: format!(
                    "the header announces {} rows of {} values but the data ends in row {}",
                    self.rows,
                    self.cols,
                    start + got / row_bytes.max(1)
                ),
            });
        }
        if start + take == self.rows {
            // The last row: read on to the end, so that a gzip trailer is checked (CRC and length).
            let left = self.input.finish()?;
            if left > 0 {
                return Err(IoError::Invalid {
                    path: self.path.clone(),
                    detail: format!(
                        "{left} bytes follow the {} rows of {} values the header announces",
                        self.rows, self.cols
                    ),
                });
            }
        }
        decode(self.dtype, &self.bytes, out);
        Ok(())
    }
}
