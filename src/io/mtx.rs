//! Matrix Market (.mtx): `%%MatrixMarket matrix coordinate|array real|double|integer|pattern
//! general|symmetric|skew-symmetric`, densified (8 bytes per entry of the full matrix). Coordinate entries
//! repeated at the same place are summed.

use super::error::{IoError, Result};
use super::Dense;
use std::io::BufRead;
use std::path::Path;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Symmetry {
    General,
    Symmetric,
    Skew,
}

struct Lines<'a> {
    input: &'a mut dyn BufRead,
    path: &'a Path,
    line: usize,
    buf: String,
}

impl Lines<'_> {
    /// Moves to the next line that is not blank and not a `%` comment (false at the end).
    fn next_content(&mut self) -> Result<bool> {
        loop {
            self.buf.clear();
            let n = self
                .input
                .read_line(&mut self.buf)
                .map_err(|source| IoError::Read {
                    path: self.path.to_path_buf(),
                    source,
                })?;
            if n == 0 {
                return Ok(false);
            }
            self.line += 1;
            let t = self.buf.trim();
            if !t.is_empty() && !t.starts_with('%') {
                return Ok(true);
            }
        }
    }

    /// The current line, trimmed.
    fn current(&self) -> &str {
        self.buf.trim()
    }

    fn parse_err(&self, column: usize, detail: String) -> IoError {
        IoError::Parse {
            path: self.path.to_path_buf(),
            line: self.line,
            column,
            detail,
        }
    }
}

fn parse_index(tok: &str, max: usize, what: &str) -> std::result::Result<usize, String> {
    let i: usize = tok
        .parse()
        .map_err(|_| format!("the {what} index '{tok}' is not a positive integer"))?;
    if i == 0 || i > max {
        return Err(format!("the {what} index {i} is outside 1..={max}"));
    }
    Ok(i - 1)
}

fn parse_value(tok: Option<&str>) -> std::result::Result<f64, String> {
    let tok = tok.ok_or("a value is missing")?;
    tok.parse::<f64>()
        .map_err(|_| format!("'{tok}' is not a number"))
}

/// Reads a Matrix Market file into a dense row-major matrix.
pub(super) fn read_mtx(input: &mut dyn BufRead, path: &Path) -> Result<Dense> {
    let bad = |detail: String| IoError::BadHeader {
        path: path.to_path_buf(),
        format: "Matrix Market",
        detail,
    };
    let mut first = String::new();
    input
        .read_line(&mut first)
        .map_err(|source| IoError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    let banner: Vec<String> = first.split_whitespace().map(str::to_lowercase).collect();
    if banner.first().map(String::as_str) != Some("%%matrixmarket") {
        return Err(bad(
            "the first line is not a '%%MatrixMarket ...' banner".to_string()
        ));
    }
    if banner.len() < 5 {
        return Err(bad(format!(
            "the banner '{}' needs 4 words: matrix, coordinate|array, the field and the symmetry",
            first.trim()
        )));
    }
    if banner[1] != "matrix" {
        return Err(IoError::NotAMatrix {
            path: path.to_path_buf(),
            detail: format!("a Matrix Market '{}' object, not a matrix", banner[1]),
        });
    }
    let coordinate = match banner[2].as_str() {
        "coordinate" => true,
        "array" => false,
        f => {
            return Err(bad(format!(
                "unknown format '{f}' (expected coordinate or array)"
            )))
        }
    };
    let pattern = match banner[3].as_str() {
        "real" | "double" | "integer" => false,
        "pattern" if coordinate => true,
        f @ ("complex" | "hermitian") => {
            return Err(IoError::UnsupportedDtype {
                path: path.to_path_buf(),
                dtype: f.to_string(),
                detail: "complex matrices are not supported (real or integer only)".to_string(),
            })
        }
        f => {
            return Err(bad(format!(
                "unknown field '{f}' (expected real, integer or pattern)"
            )))
        }
    };
    let symmetry = match banner[4].as_str() {
        "general" => Symmetry::General,
        // A real Hermitian matrix is symmetric.
        "symmetric" | "hermitian" => Symmetry::Symmetric,
        "skew-symmetric" => Symmetry::Skew,
        s => {
            return Err(bad(format!(
                "unknown symmetry '{s}' (expected general, symmetric or skew-symmetric)"
            )))
        }
    };

    let mut lines = Lines {
        input,
        path,
        line: 1,
        buf: String::new(),
    };
    if !lines.next_content()? {
        return Err(IoError::Truncated {
            path: path.to_path_buf(),
            detail: "no size line after the banner".to_string(),
        });
    }
    let size_line = lines.current().to_string();
    let sizes: Vec<&str> = size_line.split_whitespace().collect();
    let want = if coordinate { 3 } else { 2 };
    if sizes.len() != want {
        return Err(lines.parse_err(
            1,
            format!(
                "the size line needs {want} integers ({}), found '{size_line}'",
                if coordinate {
                    "rows, columns, entries"
                } else {
                    "rows, columns"
                }
            ),
        ));
    }
    let mut dims = [0usize; 3];
    for (j, tok) in sizes.iter().enumerate() {
        dims[j] = tok.parse().map_err(|_| {
            lines.parse_err(j + 1, format!("'{tok}' is not a non-negative integer"))
        })?;
    }
    let (rows, cols, nnz) = (dims[0], dims[1], dims[2]);
    if symmetry != Symmetry::General && rows != cols {
        return Err(IoError::Invalid {
            path: path.to_path_buf(),
            detail: format!(
                "a {} matrix must be square, this one is {rows} x {cols}",
                banner[4]
            ),
        });
    }
    let total = rows
        .checked_mul(cols)
        .filter(|t| t.checked_mul(8).is_some())
        .ok_or_else(|| IoError::TooLarge {
            path: path.to_path_buf(),
            detail: format!("a dense {rows} x {cols} matrix does not fit in memory"),
        })?;
    let mut values: Vec<f64> = Vec::new();
    values
        .try_reserve_exact(total)
        .map_err(|_| IoError::TooLarge {
            path: path.to_path_buf(),
            detail: format!(
                "the dense {rows} x {cols} matrix needs {:.1} GB of memory",
                total as f64 * 8.0 / 1e9
            ),
        })?;
    values.resize(total, 0.0);

    if coordinate {
        for e in 0..nnz {
            if !lines.next_content()? {
                return Err(IoError::Truncated {
                    path: path.to_path_buf(),
                    detail: format!(
                        "the size line announces {nnz} entries but the file ends after {e}"
                    ),
                });
            }
            let mut toks = lines.current().split_whitespace();
            let (ti, tj) = (toks.next().unwrap_or(""), toks.next().unwrap_or(""));
            let i = parse_index(ti, rows, "row").map_err(|d| lines.parse_err(1, d))?;
            let j = parse_index(tj, cols, "column").map_err(|d| lines.parse_err(2, d))?;
            let v = if pattern {
                1.0
            } else {
                parse_value(toks.next()).map_err(|d| lines.parse_err(3, d))?
            };
            values[i * cols + j] += v;
            if i != j {
                match symmetry {
                    Symmetry::General => {}
                    Symmetry::Symmetric => values[j * cols + i] += v,
                    Symmetry::Skew => values[j * cols + i] -= v,
                }
            }
        }
    } else {
        // Column-major values; symmetric: the lower triangle with the diagonal, skew: without it.
        let mut places = Vec::new();
        for j in 0..cols {
            let from = match symmetry {
                Symmetry::General => 0,
                Symmetry::Symmetric => j,
                Symmetry::Skew => j + 1,
            };
            for i in from..rows {
                places.push((i, j));
            }
        }
        let expected = places.len();
        let mut next = 0usize;
        while next < expected {
            if !lines.next_content()? {
                return Err(IoError::Truncated {
                    path: path.to_path_buf(),
                    detail: format!(
                        "expected {expected} values in the array, the file ends after {next}"
                    ),
                });
            }
            for (c, tok) in lines.current().split_whitespace().enumerate() {
                if next == expected {
                    return Err(lines.parse_err(
                        c + 1,
                        format!("more than the {expected} values of the array"),
                    ));
                }
                let v = parse_value(Some(tok)).map_err(|d| lines.parse_err(c + 1, d))?;
                let (i, j) = places[next];
                values[i * cols + j] = v;
                match symmetry {
                    Symmetry::General => {}
                    Symmetry::Symmetric => values[j * cols + i] = v,
                    Symmetry::Skew => values[j * cols + i] = -v,
                }
                next += 1;
            }
        }
    }
    if lines.next_content()? {
        return Err(lines.parse_err(1, "more entries than the size line announces".to_string()));
    }
    Ok(Dense {
        rows,
        cols,
        values,
        lines: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Dense> {
        read_mtx(&mut text.as_bytes(), Path::new("t.mtx"))
    }

    #[test]
    fn coordinate_general_symmetric_pattern() {
        let d = read(
            "%%MatrixMarket matrix coordinate real general\n% c\n2 3 3\n1 1 1.5\n2 3 -2\n2 3 1\n",
        )
        .unwrap();
        assert_eq!((d.rows, d.cols), (2, 3));
        assert_eq!(d.values, vec![1.5, 0.0, 0.0, 0.0, 0.0, -1.0]);
        let d = read("%%MatrixMarket matrix coordinate integer symmetric\n2 2 2\n1 1 4\n2 1 7\n")
            .unwrap();
        assert_eq!(d.values, vec![4.0, 7.0, 7.0, 0.0]);
        let d = read("%%MatrixMarket matrix coordinate pattern general\n2 2 1\n2 1\n").unwrap();
        assert_eq!(d.values, vec![0.0, 0.0, 1.0, 0.0]);
        let d =
            read("%%MatrixMarket matrix coordinate real skew-symmetric\n2 2 1\n2 1 3\n").unwrap();
        assert_eq!(d.values, vec![0.0, -3.0, 3.0, 0.0]);
    }

    #[test]
    fn array_general_and_symmetric() {
        let d = read("%%MatrixMarket matrix array real general\n2 3\n1\n2\n3\n4\n5 6\n").unwrap();
        assert_eq!(d.values, vec![1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
        let d = read("%%MatrixMarket matrix array real symmetric\n2 2\n1\n2\n3\n").unwrap();
        assert_eq!(d.values, vec![1.0, 2.0, 2.0, 3.0]);
    }

    #[test]
    fn errors() {
        let e = read("hello\n").unwrap_err();
        assert!(matches!(e, IoError::BadHeader { .. }), "{e}");
        let e =
            read("%%MatrixMarket matrix coordinate complex general\n1 1 1\n1 1 1 0\n").unwrap_err();
        assert!(matches!(e, IoError::UnsupportedDtype { .. }), "{e}");
        let e = read("%%MatrixMarket vector coordinate real general\n").unwrap_err();
        assert!(matches!(e, IoError::NotAMatrix { .. }), "{e}");
        let e = read("%%MatrixMarket matrix coordinate real general\n2 2 3\n1 1 1\n").unwrap_err();
        assert!(matches!(e, IoError::Truncated { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("announces 3 entries but the file ends after 1"),
            "{e}"
        );
        let e = read("%%MatrixMarket matrix coordinate real general\n2 2 1\n3 1 1\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "t.mtx: line 3, column 1: the row index 3 is outside 1..=2"
        );
        let e = read("%%MatrixMarket matrix coordinate real general\n2 2 1\n1 1 x\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "t.mtx: line 3, column 3: 'x' is not a number");
        let e = read("%%MatrixMarket matrix array real general\n1 2\n1\n2\n3\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("more entries than the size line announces"),
            "{e}"
        );
        let e = read("%%MatrixMarket matrix array real general\n2 x\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2, column 2"), "{e}");
        let e = read("%%MatrixMarket matrix coordinate real symmetric\n2 3 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be square"), "{e}");
    }
}
