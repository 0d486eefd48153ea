//! The byte stream of a text or IDX file: plain, or gzip decompressed on the fly. A gzip file is read
//! to the trailer of its last member ([`Input::finish`]), so that every member's CRC-32 and length are
//! checked, and a decoding error says that the gzip data is corrupt.

use super::error::{IoContext, IoError, Result};
use crate::alloc::MAX_DEFLATE_RATIO;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// An open input file, decompressed when it starts with the gzip magic bytes.
pub(super) struct Input {
    inner: Box<dyn BufRead + Send>,
    path: PathBuf,
    gzip: bool,
    /// The most bytes the (decompressed) stream can hold: the size of a regular file, 1032 times it
    /// for gzip; None for a pipe or a device.
    holds: Option<u64>,
}

impl Input {
    /// Opens `path`.
    pub fn open(path: &Path) -> Result<Input> {
        let file = File::open(path).opening(path)?;
        let size = file
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        let mut buffered = BufReader::with_capacity(1 << 20, file);
        let head = buffered.fill_buf().reading(path)?;
        let gzip = head.starts_with(&[0x1f, 0x8b]);
        let (inner, holds): (Box<dyn BufRead + Send>, _) = if gzip {
            let gz = flate2::bufread::MultiGzDecoder::new(buffered);
            (
                Box::new(BufReader::with_capacity(1 << 20, gz)),
                size.map(|s| s.saturating_mul(MAX_DEFLATE_RATIO)),
            )
        } else {
            (Box::new(buffered), size)
        };
        Ok(Input {
            inner,
            path: path.to_path_buf(),
            gzip,
            holds,
        })
    }

    /// Whether the file is gzip-compressed.
    pub fn is_gzip(&self) -> bool {
        self.gzip
    }

    /// The most bytes the stream can deliver (None: unknown).
    pub fn holds(&self) -> Option<u64> {
        self.holds
    }

    /// Reads the stream to its end (every gzip member to its checked trailer) and returns how many
    /// bytes were left. A decoding error, a bad checksum or a missing trailer is [`IoError::Corrupt`].
    pub fn finish(&mut self) -> Result<u64> {
        let mut left = 0u64;
        loop {
            let n = match self.inner.fill_buf() {
                Ok([]) => return Ok(left),
                Ok(buf) => buf.len(),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.corrupt(e)),
            };
            self.inner.consume(n);
            left += n as u64;
        }
    }

    /// A read error as the user should see it: corrupt gzip data, or a plain read error.
    pub fn corrupt(&self, source: std::io::Error) -> IoError {
        if self.gzip && source.kind() != std::io::ErrorKind::Interrupted {
            let detail = if source.kind() == std::io::ErrorKind::UnexpectedEof {
                "the gzip stream ends before its trailer (truncated)".to_string()
            } else {
                source.to_string()
            };
            IoError::corrupt(&self.path, detail)
        } else {
            IoError::read(&self.path, source)
        }
    }

    /// After a parse error in a gzip file: the gzip error instead when the rest of the stream is
    /// corrupt (the parse error was then about garbage), else the parse error.
    pub fn explain(&mut self, parse_error: IoError) -> IoError {
        match parse_error {
            e if !self.gzip => e,
            e @ IoError::Corrupt { .. } => e,
            IoError::Read { source, .. } => self.corrupt(source),
            e => match self.finish() {
                Err(corrupt) => corrupt,
                Ok(_) => e,
            },
        }
    }
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

impl BufRead for Input {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        self.inner.consume(amt)
    }
}
