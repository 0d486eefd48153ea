//! Delimited text (.csv with commas, .tsv with tabs): numbers only, an optional header line, `#` comment
//! lines and blank lines skipped. Read whole (8 bytes a value), parsed in parallel ([`parse_lines`]);
//! errors give the 1-based line and column.

use super::error::{IoError, Result, SizeContext};
use super::lines::{parse_lines, utf8, Block, LineParser, Split};
use super::Dense;
use std::io::BufRead;
use std::ops::Range;
use std::path::Path;

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
    /// Checks the number of fields of a data line and appends its values (a line with the wrong
    /// number of fields is [`IoError::Ragged`], whatever its fields hold).
    fn push(&mut self, text: &str, line_no: usize, layout: Layout, path: &Path) -> Result<()> {
        let cols = layout.cols;
        let ragged = |found: usize| IoError::Ragged {
            path: path.to_path_buf(),
            line: line_no,
            found,
            expected: cols,
            first_line: layout.first_line,
        };
        let rows = self.lines.len();
        crate::alloc::reserve(&mut self.values, cols, || {
            format!("{} rows of {cols} values (8 bytes each)", rows + 1)
        })
        .allocating(path)?;
        crate::alloc::reserve(&mut self.lines, 1, || {
            format!("the line numbers of {} rows", rows + 1)
        })
        .allocating(path)?;
        // One pass: parse while counting; the count decides between a ragged row and a bad field.
        let start = self.values.len();
        let mut fields = text.split(layout.delimiter);
        let mut found = 0;
        for f in fields.by_ref() {
            found += 1;
            if found > cols {
                break;
            }
            match parse_field(f) {
                Ok(v) => self.values.push(v),
                Err(d) if found + fields.clone().count() == cols => {
                    return Err(IoError::parse(path, line_no, found, d))
                }
                Err(_) => break,
            }
        }
        if found != cols || self.values.len() != start + cols {
            self.values.truncate(start);
            return Err(ragged(found + fields.count()));
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

/// The parse of a delimited file: the rows so far, and the layout once the first data row fixed it.
struct Delimited<'a> {
    path: &'a Path,
    delimiter: char,
    rows: Rows,
    /// Whether the first content line has been looked at (a header or the first data row).
    header_decided: bool,
    layout: Option<Layout>,
}

impl LineParser for Delimited<'_> {
    type Part = Result<Rows>;

    /// Up to the first data row: it decides the header and the number of columns.
    fn prefix(&mut self, block: &Block) -> Result<usize> {
        let mut k = 0;
        while self.layout.is_none() && k < block.len() {
            let line_no = block.first_line + k;
            k += 1;
            let Some(text) = content(block.line(k - 1), line_no, self.path)? else {
                continue;
            };
            let fields: Vec<&str> = text.split(self.delimiter).collect();
            if !self.header_decided {
                self.header_decided = true;
                // A first line none of whose fields is a number is a header (column names).
                if fields.iter().all(|f| parse_field(f).is_err()) {
                    log::debug!("{}: line {line_no} is a header", self.path.display());
                    continue;
                }
            }
            let layout = Layout {
                delimiter: self.delimiter,
                cols: fields.len(),
                first_line: line_no,
            };
            self.rows.push(text, line_no, layout, self.path)?;
            self.layout = Some(layout);
        }
        Ok(k)
    }

    /// The rows of `lines` (all after the first data row), or the first error among them.
    fn parse(&self, block: &Block, lines: Range<usize>) -> Result<Rows> {
        let mut rows = Rows::default();
        let Some(layout) = self.layout else {
            return Ok(rows);
        };
        for k in lines {
            let line_no = block.first_line + k;
            if let Some(text) = content(block.line(k), line_no, self.path)? {
                rows.push(text, line_no, layout, self.path)?;
            }
        }
        Ok(rows)
    }

    /// In file order, the first error of the file is the first error of the first failed part.
    fn join(&mut self, part: Result<Rows>) -> Result<()> {
        let cols = self.layout.map_or(0, |l| l.cols);
        self.rows.append(part?, cols, self.path)
    }
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
fn read_delimited_split(
    input: &mut dyn BufRead,
    delimiter: char,
    path: &Path,
    split: Split,
) -> Result<Dense> {
    let mut parser = Delimited {
        path,
        delimiter,
        rows: Rows::default(),
        header_decided: false,
        layout: None,
    };
    parse_lines(input, path, 1, split, &mut parser)?;
    Ok(Dense {
        rows: parser.rows.lines.len(),
        cols: parser.layout.map_or(0, |l| l.cols),
        values: parser.rows.values,
        lines: Some(parser.rows.lines),
    })
}

#[cfg(test)]
mod tests {
    use super::super::lines::for_each_split_and_pool;
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

    fn read_split(text: &str, split: Split) -> Result<Dense> {
        read_delimited_split(&mut text.as_bytes(), ',', Path::new("t.csv"), split)
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
        for_each_split_and_pool(4096, |split, threads| {
            let d = read_split(&text, split).unwrap();
            assert_eq!((d.rows, d.cols), (3000, 5), "{split:?}, {threads} threads");
            let bits: Vec<u64> = d.values.iter().map(|v| v.to_bits()).collect();
            assert!(bits == values, "{split:?}, {threads} threads");
            assert_eq!(d.lines.as_deref(), Some(&lines[..]));
        });
    }

    #[test]
    fn parallel_parse_reports_the_first_error_of_the_file() {
        let mut lines: Vec<String> = mixed_text().lines().map(String::from).collect();
        // An error late in the file, then one earlier (another part, another block): the earlier one
        // is reported, with its line and column.
        lines[2900] = "1,2,3,4".to_string();
        lines[1700] = "1,2,x3,4,5".to_string();
        let text = lines.join("\n");
        for_each_split_and_pool(4096, |split, _| {
            let e = read_split(&text, split).unwrap_err().to_string();
            assert_eq!(e, "t.csv: line 1701, column 3: 'x3' is not a number");
        });
        lines[1700] = "1,2,3".to_string();
        let text = lines.join("\n");
        for_each_split_and_pool(4096, |split, _| {
            let e = read_split(&text, split).unwrap_err();
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
        });
    }
}
