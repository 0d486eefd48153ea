//! Whole lines of a text input: read one at a time ([`read_line`]), or in blocks that a [`LineParser`]
//! parses in parallel ([`parse_lines`]) with the result of a serial parse.

use super::error::{IoContext, IoError, Result, SizeContext};
use rayon::prelude::*;
use std::io::{BufRead, Read};
use std::ops::Range;
use std::path::Path;

/// The longest line read (64 MiB): it would hold millions of values, a number of features whose Gram
/// matrix (m x m) could not be held anyway; a longer one is a binary file or a line without end.
pub(super) const MAX_LINE_BYTES: u64 = 64 << 20;

/// Reads one line (with its `\n`) into `raw`; returns its length (0 at the end). A line longer than
/// [`MAX_LINE_BYTES`] is an error.
pub(super) fn read_line(
    input: &mut dyn BufRead,
    raw: &mut Vec<u8>,
    line_no: usize,
    path: &Path,
) -> Result<usize> {
    raw.clear();
    let n = input
        .take(MAX_LINE_BYTES + 1)
        .read_until(b'\n', raw)
        .reading(path)?;
    if n as u64 > MAX_LINE_BYTES {
        return Err(line_too_long(path, line_no));
    }
    Ok(n)
}

/// A line as text, or what is wrong with it.
pub(super) fn utf8(raw: &[u8]) -> std::result::Result<&str, String> {
    std::str::from_utf8(raw)
        .map_err(|e| format!("not valid UTF-8 text (byte {})", e.valid_up_to() + 1))
}

/// How the text is cut for the parallel parse: blocks of about `block` bytes of whole lines are read
/// (one block in memory at a time), each cut into parts of about `part` bytes of whole lines, which
/// rayon's threads parse; the parts' rows are joined in file order. The cuts depend on the bytes only,
/// and every value on its own field only, so the result is the same whatever the thread count.
#[derive(Clone, Copy, Debug)]
pub(super) struct Split {
    pub block: usize,
    pub part: usize,
}

impl Split {
    /// 8 MiB blocks (the text in memory beside the values), 256 KiB parts (enough to share a block
    /// among 32 threads, big enough that a part's start costs nothing).
    pub const DEFAULT: Split = Split {
        block: 8 << 20,
        part: 256 << 10,
    };
}

/// Whole lines of the input, with the 1-based number of the first.
pub(super) struct Block {
    bytes: Vec<u8>,
    /// Where each line ends in `bytes` (exclusive, its `\n` included).
    ends: Vec<usize>,
    /// The 1-based number of the first line.
    pub first_line: usize,
    /// The error that ended the input after these lines.
    pending: Option<IoError>,
}

impl Block {
    /// Replaces the block with the next lines: at least one, until it holds `size` bytes or the input
    /// ends; false at the end of the input. A read error, or a line longer than [`MAX_LINE_BYTES`],
    /// ends the block and waits in `pending`, so that the errors of the lines before it come first.
    fn fill(&mut self, input: &mut dyn BufRead, size: usize, path: &Path) -> Result<bool> {
        self.first_line += self.ends.len();
        self.bytes.clear();
        self.ends.clear();
        crate::alloc::reserve(&mut self.bytes, size, || {
            format!("a text buffer of {size} bytes")
        })
        .allocating(path)?;
        while self.bytes.len() < size {
            let line_no = self.first_line + self.ends.len();
            let start = self.bytes.len();
            let n = match input
                .take(MAX_LINE_BYTES + 1)
                .read_until(b'\n', &mut self.bytes)
                .reading(path)
            {
                Ok(0) => break,
                Ok(n) if n as u64 > MAX_LINE_BYTES => Err(line_too_long(path, line_no)),
                Ok(n) => Ok(n),
                Err(e) => Err(e),
            };
            if let Err(e) = n {
                self.bytes.truncate(start);
                self.pending = Some(e);
                return Ok(true);
            }
            self.ends.push(self.bytes.len());
        }
        Ok(!self.ends.is_empty())
    }

    /// The number of lines.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// The bytes of line `k` of the block.
    pub fn line(&self, k: usize) -> &[u8] {
        let start = if k == 0 { 0 } else { self.ends[k - 1] };
        &self.bytes[start..self.ends[k]]
    }

    /// The block's lines from `from` cut into runs of about `part` bytes.
    fn parts(&self, from: usize, part: usize) -> Vec<Range<usize>> {
        let mut parts = Vec::new();
        let mut start = from;
        let mut start_byte = if from == 0 { 0 } else { self.ends[from - 1] };
        for (k, &end) in self.ends.iter().enumerate().skip(from) {
            if end - start_byte >= part || k + 1 == self.ends.len() {
                parts.push(start..k + 1);
                (start, start_byte) = (k + 1, end);
            }
        }
        parts
    }
}

pub(super) fn line_too_long(path: &Path, line_no: usize) -> IoError {
    IoError::too_large(
        path,
        format!(
            "line {line_no} is longer than {} MiB (not a text file?)",
            MAX_LINE_BYTES >> 20
        ),
    )
}

/// A text format parsed in blocks of lines: [`parse_lines`] gives each block to `prefix` (serially),
/// its other lines in parts to `parse` (in parallel), and the parts' results to `join` (in file order).
pub(super) trait LineParser: Sync {
    /// What `parse` makes of a part (its rows, or its first error).
    type Part: Send;
    /// Parses the first lines of a block itself (e.g. the lines up to the first data row, which fix
    /// the layout of the rest) and returns how many; the rest of the block goes to `parse`.
    fn prefix(&mut self, block: &Block) -> Result<usize>;
    /// Parses `lines` of `block`; called on rayon's threads.
    fn parse(&self, block: &Block, lines: Range<usize>) -> Self::Part;
    /// Receives the parts in file order; its error ends the parse.
    fn join(&mut self, part: Self::Part) -> Result<()>;
}

/// Parses the lines of one block: its prefix, its parts in parallel, then their join in file order.
fn parse_block(block: &Block, split: Split, parser: &mut impl LineParser) -> Result<()> {
    let from = parser.prefix(block)?;
    let parser_ref = &*parser;
    let parts: Vec<_> = block
        .parts(from, split.part.max(1))
        .into_par_iter()
        .map(|lines| parser_ref.parse(block, lines))
        .collect();
    for part in parts {
        parser.join(part)?;
    }
    Ok(())
}

/// Parses the rest of `input`, whose first line is line `first_line` (1-based), with `parser`.
pub(super) fn parse_lines(
    input: &mut dyn BufRead,
    path: &Path,
    first_line: usize,
    split: Split,
    parser: &mut impl LineParser,
) -> Result<()> {
    let mut block = Block {
        bytes: Vec::new(),
        ends: Vec::new(),
        first_line,
        pending: None,
    };
    while block.fill(input, split.block.max(1), path)? {
        let parsed = parse_block(&block, split, parser);
        match (parsed, block.pending.take()) {
            // A read error after the lines (in a gzip file: corrupt data, of which a bad line is only
            // a symptom) says more than their parse error.
            (Err(_), Some(read @ IoError::Read { .. })) => return Err(read),
            (Err(e), _) | (Ok(()), Some(e)) => return Err(e),
            (Ok(()), None) => {}
        }
    }
    Ok(())
}

/// Runs `f(split)` under rayon pools of 1 and 2 threads, for the text cut in blocks of `tiny_block`
/// bytes and parts of `tiny_block / 10` (many of each in a small test file) and as by default.
#[cfg(test)]
pub(super) fn for_each_split_and_pool(tiny_block: usize, f: impl Fn(Split, usize) + Sync) {
    let tiny = Split {
        block: tiny_block,
        part: tiny_block / 10,
    };
    for split in [tiny, Split::DEFAULT] {
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| f(split, threads));
        }
    }
}
