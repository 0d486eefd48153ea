//! Delimited text (.csv with commas, .tsv with tabs): numbers only, an optional header line, `#` comment
//! lines and blank lines skipped. Read whole (8 bytes a value); errors give the 1-based line and column.

use super::error::{IoContext, IoError, Result, SizeContext};
use super::Dense;
use std::io::{BufRead, Read};
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

/// Parses one field: surrounding spaces and double quotes are dropped; NaN and inf are read (the fit
/// rejects them with their row and column).
fn parse_field(field: &str) -> std::result::Result<f64, String> {
    let f = field.trim();
    let f = f
        .strip_prefix('"')
        .and_then(|g| g.strip_suffix('"'))
        .map(str::trim)
        .unwrap_or(f);
    if f.is_empty() {
        return Err("empty field (missing values are not supported)".to_string());
    }
    f.parse::<f64>()
        .map_err(|_| format!("'{}' is not a number", truncate(f, 40)))
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(n).collect::<String>())
    }
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
struct Block {
    bytes: Vec<u8>,
    /// Where each line ends in `bytes` (exclusive, its `\n` included).
    ends: Vec<usize>,
    first_line: usize,
}

impl Block {
    /// Replaces the block with the next lines: at least one, until it holds `size` bytes or the input
    /// ends; false at the end of the input. A line longer than [`MAX_LINE_BYTES`] is an error.
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
            let n = input
                .take(MAX_LINE_BYTES + 1)
                .read_until(b'\n', &mut self.bytes)
                .reading(path)?;
            if n == 0 {
                break;
            }
            if n as u64 > MAX_LINE_BYTES {
                return Err(line_too_long(path, line_no));
            }
            self.ends.push(self.bytes.len());
        }
        Ok(!self.ends.is_empty())
    }

    /// The bytes of line `k` of the block.
    fn line(&self, k: usize) -> &[u8] {
        let start = if k == 0 { 0 } else { self.ends[k - 1] };
        &self.bytes[start..self.ends[k]]
    }

    /// The block's lines from `from` cut into runs of about `part` bytes.
    fn parts(&self, from: usize, part: usize) -> Vec<std::ops::Range<usize>> {
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

fn line_too_long(path: &Path, line_no: usize) -> IoError {
    IoError::too_large(
        path,
        format!(
            "line {line_no} is longer than {} MiB (not a text file?)",
            MAX_LINE_BYTES >> 20
        ),
    )
}

/// A line's text without its line end (and, on line 1, a byte-order mark); None for a blank line or a
/// `#` comment.
fn content<'a>(raw: &'a [u8], line_no: usize, path: &Path) -> Result<Option<&'a str>> {
    let text = utf8(raw).map_err(|d| IoError::parse(path, line_no, 1, d))?;
    let text = text.trim_end_matches(['\n', '\r']);
    let text = if line_no == 1 {
        text.trim_start_matches('\u{feff}')
    } else {
        text
    };
    let blank_or_comment = text.trim().is_empty() || text.trim_start().starts_with('#');
    Ok((!blank_or_comment).then_some(text))
}

/// The shape of the data rows, fixed by the first one.
#[derive(Clone, Copy)]
struct Layout {
    delimiter: char,
    cols: usize,
    /// The line of the first data row.
    first_line: usize,
}

/// Rows read from some lines: row-major values and each row's line.
#[derive(Default)]
struct Rows {
    values: Vec<f64>,
    lines: Vec<usize>,
}

impl Rows {
    /// Checks the number of fields of a data line and appends its values.
    fn push(&mut self, text: &str, line_no: usize, layout: Layout, path: &Path) -> Result<()> {
        let cols = layout.cols;
        let found = text.split(layout.delimiter).count();
        if found != cols {
            return Err(IoError::Ragged {
                path: path.to_path_buf(),
                line: line_no,
                found,
                expected: cols,
                first_line: layout.first_line,
            });
        }
        let rows = self.lines.len();
        crate::alloc::reserve(&mut self.values, cols, || {
            format!("{} rows of {cols} values (8 bytes each)", rows + 1)
        })
        .allocating(path)?;
        crate::alloc::reserve(&mut self.lines, 1, || {
            format!("the line numbers of {} rows", rows + 1)
        })
        .allocating(path)?;
        for (j, f) in text.split(layout.delimiter).enumerate() {
            let v = parse_field(f).map_err(|d| IoError::parse(path, line_no, j + 1, d))?;
            self.values.push(v);
        }
        self.lines.push(line_no);
        Ok(())
    }

    /// Appends `more` (rows that follow these in the file).
    fn append(&mut self, more: Rows, cols: usize, path: &Path) -> Result<()> {
        let rows = self.lines.len() + more.lines.len();
        crate::alloc::reserve(&mut self.values, more.values.len(), || {
            format!("{rows} rows of {cols} values (8 bytes each)")
        })
        .allocating(path)?;
        crate::alloc::reserve(&mut self.lines, more.lines.len(), || {
            format!("the line numbers of {rows} rows")
        })
        .allocating(path)?;
        self.values.extend_from_slice(&more.values);
        self.lines.extend_from_slice(&more.lines);
        Ok(())
    }
}

/// Parses lines `range` of `block` (all after the first data row); stops at the first error.
fn parse_part(
    block: &Block,
    range: std::ops::Range<usize>,
    layout: Layout,
    path: &Path,
) -> Result<Rows> {
    let mut rows = Rows::default();
    for k in range {
        let line_no = block.first_line + k;
        if let Some(text) = content(block.line(k), line_no, path)? {
            rows.push(text, line_no, layout, path)?;
        }
    }
    Ok(rows)
}

/// Reads a delimited text file into a dense row-major matrix with each row's line number, in parallel
/// (see [`Split`]).
pub(super) fn read_delimited(
    input: &mut dyn BufRead,
    delimiter: char,
    path: &Path,
) -> Result<Dense> {
    read_delimited_split(input, delimiter, path, Split::DEFAULT)
}

/// [`read_delimited`] with the text cut as `split` says.
pub(super) fn read_delimited_split(
    input: &mut dyn BufRead,
    delimiter: char,
    path: &Path,
    split: Split,
) -> Result<Dense> {
    use rayon::prelude::*;
    let mut all = Rows::default();
    let mut layout = None;
    // Whether the first content line has been looked at (a header or the first data row).
    let mut header_decided = false;
    let mut block = Block {
        bytes: Vec::new(),
        ends: Vec::new(),
        first_line: 1,
    };
    while block.fill(input, split.block.max(1), path)? {
        // Serially, up to the first data row: it decides the header and the number of columns.
        let mut from = 0;
        while layout.is_none() && from < block.ends.len() {
            let line_no = block.first_line + from;
            from += 1;
            let Some(text) = content(block.line(from - 1), line_no, path)? else {
                continue;
            };
            let fields: Vec<&str> = text.split(delimiter).collect();
            if !header_decided {
                header_decided = true;
                // A first line none of whose fields is a number is a header (column names).
                if fields.iter().all(|f| parse_field(f).is_err()) {
                    log::debug!("{}: line {line_no} is a header", path.display());
                    continue;
                }
            }
            let first = Layout {
                delimiter,
                cols: fields.len(),
                first_line: line_no,
            };
            all.push(text, line_no, first, path)?;
            layout = Some(first);
        }
        let Some(layout) = layout else { continue };
        let parts: Vec<Result<Rows>> = block
            .parts(from, split.part.max(1))
            .into_par_iter()
            .map(|range| parse_part(&block, range, layout, path))
            .collect();
        // In file order: the first error of the file is the first error of the first failed part.
        for rows in parts {
            all.append(rows?, layout.cols, path)?;
        }
    }
    Ok(Dense {
        rows: all.lines.len(),
        cols: layout.map_or(0, |l| l.cols),
        values: all.values,
        lines: Some(all.lines),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, d: char) -> Result<Dense> {
        read_delimited(&mut text.as_bytes(), d, Path::new("t.csv"))
    }

    #[test]
    fn header_comments_quotes_and_crlf() {
        let d = read(
            "\u{feff}a,b,\"c\"\r\n# comment\n1, 2 ,\"3\"\r\n\n4,5e1,-6\n",
            ',',
        )
        .unwrap();
        assert_eq!((d.rows, d.cols), (2, 3));
        assert_eq!(d.values, vec![1.0, 2.0, 3.0, 4.0, 50.0, -6.0]);
        assert_eq!(d.lines, Some(vec![3, 5]));
        let d = read("1\t2\n3\t4", '\t').unwrap();
        assert_eq!(d.values, vec![1.0, 2.0, 3.0, 4.0]);
        // NaN is read (rejected later with its row and column).
        let d = read("1,nan\n", ',').unwrap();
        assert!(d.values[1].is_nan());
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = read("x,y\n1,2\n3,abc\n", ',').unwrap_err().to_string();
        assert_eq!(e, "t.csv: line 3, column 2: 'abc' is not a number");
        let e = read("1,2\n3,,4\n", ',').unwrap_err();
        assert!(
            matches!(
                e,
                IoError::Ragged {
                    line: 2,
                    found: 3,
                    expected: 2,
                    first_line: 1,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = read("1,2\n3,\n", ',').unwrap_err().to_string();
        assert!(e.contains("line 2, column 2: empty field"), "{e}");
        // A mixed first line is data, not a header: its bad field is reported.
        let e = read("id,1\n2,3\n", ',').unwrap_err().to_string();
        assert!(e.contains("line 1, column 1: 'id' is not a number"), "{e}");
        let e = read_delimited(&mut &b"1,2\n\xff,3\n"[..], ',', Path::new("t.csv"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2, column 1: not valid UTF-8"), "{e}");
    }

    /// Reads under a rayon pool of `threads` threads, the text cut as `split` says.
    fn read_with(text: &str, threads: usize, split: Split) -> Result<Dense> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| read_delimited_split(&mut text.as_bytes(), ',', Path::new("t.csv"), split))
    }

    /// 3000 lines: a header, then rows of 5 values of every magnitude and spelling, with comments,
    /// blank lines and CRLF ends in between.
    fn mixed_text() -> String {
        let mut text = String::from("a,b,c,d,e\n");
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for i in 0..3000 {
            match i % 97 {
                13 => text.push_str("# a comment, 1, 2\n"),
                40 => text.push_str("   \r\n"),
                _ => {}
            }
            let row: Vec<String> = (0..5)
                .map(|j| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let x = f64::from_bits((state >> 12) | 0x3FF0_0000_0000_0000) - 1.5;
                    match j {
                        0 => format!("{x:e}"),
                        1 => format!(" {:.3} ", x * 1e6),
                        2 => format!("\"{}\"", x * 1e-300),
                        3 => (i as i64 - 1500).to_string(),
                        _ => format!("{x}"),
                    }
                })
                .collect();
            text.push_str(&row.join(","));
            text.push_str(if i % 7 == 0 { "\r\n" } else { "\n" });
        }
        text
    }

    #[test]
    fn parallel_parse_is_the_serial_parse_whatever_the_threads() {
        let text = mixed_text();
        // The reference: line by line, as the format says.
        let (mut values, mut lines) = (Vec::new(), Vec::new());
        for (n, line) in text.lines().enumerate().skip(1) {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            for f in line.split(',') {
                let f = f.trim().trim_matches('"');
                values.push(f.parse::<f64>().unwrap().to_bits());
            }
            lines.push(n + 1);
        }
        let tiny = Split {
            block: 4096,
            part: 300,
        };
        for split in [tiny, Split::DEFAULT] {
            for threads in [1, 2] {
                let d = read_with(&text, threads, split).unwrap();
                assert_eq!((d.rows, d.cols), (3000, 5), "{split:?}, {threads} threads");
                let bits: Vec<u64> = d.values.iter().map(|v| v.to_bits()).collect();
                assert!(bits == values, "{split:?}, {threads} threads");
                assert_eq!(d.lines.as_deref(), Some(&lines[..]));
            }
        }
    }

    #[test]
    fn parallel_parse_reports_the_first_error_of_the_file() {
        let mut lines: Vec<String> = mixed_text().lines().map(String::from).collect();
        // An error late in the file, then one earlier (another part, another block): the earlier one
        // is reported, with its line and column.
        lines[2900] = "1,2,3,4".to_string();
        lines[1700] = "1,2,x3,4,5".to_string();
        let text = lines.join("\n");
        let tiny = Split {
            block: 4096,
            part: 300,
        };
        for split in [tiny, Split::DEFAULT] {
            for threads in [1, 2] {
                let e = read_with(&text, threads, split).unwrap_err().to_string();
                assert_eq!(e, "t.csv: line 1701, column 3: 'x3' is not a number");
            }
        }
        lines[1700] = "1,2,3".to_string();
        let e = read_with(&lines.join("\n"), 2, tiny).unwrap_err();
        assert!(
            matches!(
                e,
                IoError::Ragged {
                    line: 1701,
                    found: 3,
                    expected: 5,
                    first_line: 2,
                    ..
                }
            ),
            "{e:?}"
        );
    }
}
