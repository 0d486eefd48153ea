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
        return Err(IoError::too_large(
            path,
            format!(
                "line {line_no} is longer than {} MiB (not a text file?)",
                MAX_LINE_BYTES >> 20
            ),
        ));
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

/// Reads a delimited text file into a dense row-major matrix with each row's line number.
pub(super) fn read_delimited(
    input: &mut dyn BufRead,
    delimiter: char,
    path: &Path,
) -> Result<Dense> {
    let mut values = Vec::new();
    let mut lines = Vec::new();
    let mut cols = 0usize;
    let mut first_line = 0usize;
    let mut header_decided = false;
    let mut header = None;
    let mut raw = Vec::new();
    let mut line_no = 0usize;
    loop {
        if read_line(input, &mut raw, line_no + 1, path)? == 0 {
            break;
        }
        line_no += 1;
        let text = utf8(&raw).map_err(|d| IoError::parse(path, line_no, 1, d))?;
        let text = text.trim_end_matches(['\n', '\r']);
        let text = if line_no == 1 {
            text.trim_start_matches('\u{feff}') // a byte-order mark
        } else {
            text
        };
        if text.trim().is_empty() || text.trim_start().starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = text.split(delimiter).collect();
        if !header_decided {
            header_decided = true;
            // A first line none of whose fields is a number is a header (column names).
            if fields.iter().all(|f| parse_field(f).is_err()) {
                header = Some(line_no);
                continue;
            }
        }
        if cols == 0 {
            cols = fields.len();
            first_line = line_no;
        } else if fields.len() != cols {
            return Err(IoError::Ragged {
                path: path.to_path_buf(),
                line: line_no,
                found: fields.len(),
                expected: cols,
                first_line,
            });
        }
        let rows = lines.len();
        crate::alloc::reserve(&mut values, cols, || {
            format!("{} rows of {cols} values (8 bytes each)", rows + 1)
        })
        .allocating(path)?;
        crate::alloc::reserve(&mut lines, 1, || {
            format!("the line numbers of {} rows", rows + 1)
        })
        .allocating(path)?;
        for (j, f) in fields.iter().enumerate() {
            let v = parse_field(f).map_err(|d| IoError::parse(path, line_no, j + 1, d))?;
            values.push(v);
        }
        lines.push(line_no);
    }
    if let Some(h) = header {
        log::debug!("{}: line {h} is a header", path.display());
    }
    Ok(Dense {
        rows: lines.len(),
        cols,
        values,
        lines: Some(lines),
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
}
