//! Matrix Market (.mtx): `%%MatrixMarket matrix coordinate|array real|double|integer|pattern
//! general|symmetric|skew-symmetric`, densified (8 bytes per entry of the full matrix). Coordinate entries
//! repeated at the same place are summed.

use super::error::{IoError, Result, SizeContext};
use super::text::{read_line, utf8};
use super::Dense;
use std::io::BufRead;
use std::path::Path;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Symmetry {
    General,
    Symmetric,
    Skew,
}

/// What the banner line `%%MatrixMarket matrix <layout> <field> <symmetry>` says.
struct Banner {
    /// `coordinate` (entries with their indices), else `array` (every value, column by column).
    coordinate: bool,
    /// `pattern`: coordinate entries without values (each is a 1).
    pattern: bool,
    symmetry: Symmetry,
    /// The symmetry as written (lower case), for messages.
    symmetry_name: String,
}

/// The sizes of the size line: `rows cols entries` (coordinate) or `rows cols` (array: entries 0).
struct Sizes {
    rows: usize,
    cols: usize,
    entries: usize,
}

/// The content lines of the file after the banner, with their 1-based numbers.
struct Lines<'a> {
    input: &'a mut dyn BufRead,
    path: &'a Path,
    line: usize,
    raw: Vec<u8>,
    buf: String,
}

impl Lines<'_> {
    /// Moves to the next line that is not blank and not a `%` comment (false at the end).
    fn next_content(&mut self) -> Result<bool> {
        loop {
            if read_line(self.input, &mut self.raw, self.line + 1, self.path)? == 0 {
                return Ok(false);
            }
            self.line += 1;
            self.buf.clear();
            let text = utf8(&self.raw).map_err(|d| self.parse_err(1, d))?;
            self.buf.push_str(text);
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

    /// A parse error at `column` of the current line.
    fn parse_err(&self, column: usize, detail: impl Into<String>) -> IoError {
        IoError::parse(self.path, self.line, column, detail)
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

/// Reads a Matrix Market file into a dense row-major matrix; `holds` (when known) is the most bytes the
/// input can deliver, which bounds the values an `array` file can hold.
pub(super) fn read_mtx(input: &mut dyn BufRead, path: &Path, holds: Option<u64>) -> Result<Dense> {
    let mut raw = Vec::new();
    read_line(input, &mut raw, 1, path)?;
    let banner = read_banner(&String::from_utf8_lossy(&raw), path)?;
    let mut lines = Lines {
        input,
        path,
        line: 1,
        raw,
        buf: String::new(),
    };
    let sizes = read_sizes(&mut lines, &banner)?;
    let mut values = allocate(&banner, &sizes, path, holds)?;
    if banner.coordinate {
        read_coordinate_entries(&mut lines, &banner, &sizes, &mut values)?;
    } else {
        read_array_values(&mut lines, &banner, &sizes, &mut values)?;
    }
    if lines.next_content()? {
        return Err(lines.parse_err(1, "more entries than the size line announces"));
    }
    Ok(Dense {
        rows: sizes.rows,
        cols: sizes.cols,
        values,
        lines: None,
    })
}

/// Reads the banner (the first line).
fn read_banner(first: &str, path: &Path) -> Result<Banner> {
    let bad = |detail: String| IoError::bad_header(path, "Matrix Market", detail);
    let first = first.trim_start_matches('\u{feff}'); // a byte-order mark
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
        return Err(IoError::not_a_matrix(
            path,
            format!("a Matrix Market '{}' object, not a matrix", banner[1]),
        ));
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
    let pattern =
        match banner[3].as_str() {
            "real" | "double" | "integer" => false,
            "pattern" if coordinate => true,
            "pattern" => return Err(bad(
                "the field 'pattern' is only for coordinate matrices (an array lists every value: \
                 use real or integer)"
                    .to_string(),
            )),
            f @ ("complex" | "hermitian") => {
                return Err(IoError::unsupported(
                    path,
                    f,
                    "complex matrices are not supported (real or integer only)",
                ))
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
    Ok(Banner {
        coordinate,
        pattern,
        symmetry,
        symmetry_name: banner[4].clone(),
    })
}

/// Reads the size line (the first content line after the banner).
fn read_sizes(lines: &mut Lines, banner: &Banner) -> Result<Sizes> {
    if !lines.next_content()? {
        return Err(IoError::truncated(
            lines.path,
            "no size line after the banner",
        ));
    }
    let size_line = lines.current().to_string();
    let sizes: Vec<&str> = size_line.split_whitespace().collect();
    let want = if banner.coordinate { 3 } else { 2 };
    if sizes.len() != want {
        return Err(lines.parse_err(
            1,
            format!(
                "the size line needs {want} integers ({}), found '{size_line}'",
                if banner.coordinate {
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
    let (rows, cols, entries) = (dims[0], dims[1], dims[2]);
    if banner.symmetry != Symmetry::General && rows != cols {
        return Err(IoError::invalid(
            lines.path,
            format!(
                "a {} matrix must be square, this one is {rows} x {cols}",
                banner.symmetry_name
            ),
        ));
    }
    Ok(Sizes {
        rows,
        cols,
        entries,
    })
}

/// How many values an array file lists: all, the lower triangle with the diagonal (symmetric) or
/// without it (skew); None on overflow.
fn array_values(banner: &Banner, sizes: &Sizes) -> Option<usize> {
    let rows = sizes.rows;
    match banner.symmetry {
        Symmetry::General => rows.checked_mul(sizes.cols),
        Symmetry::Symmetric => rows.checked_mul(rows.saturating_add(1)).map(|t| t / 2),
        Symmetry::Skew => rows.checked_mul(rows.saturating_sub(1)).map(|t| t / 2),
    }
}

/// The dense matrix of zeros, after checking that an array file can hold the values it announces.
fn allocate(banner: &Banner, sizes: &Sizes, path: &Path, holds: Option<u64>) -> Result<Vec<f64>> {
    let (rows, cols) = (sizes.rows, sizes.cols);
    // An array file spends at least 2 bytes (a digit and a separator) on each value it lists.
    if let (false, Some(h)) = (banner.coordinate, holds) {
        crate::alloc::check(
            || format!("the {rows} x {cols} array (2 bytes a value at least)"),
            array_values(banner, sizes),
            2,
            Some(h / 2 + 1),
        )
        .allocating(path)?;
    }
    crate::alloc::filled(
        || format!("the dense {rows} x {cols} matrix (f64)"),
        rows.checked_mul(cols),
        None,
        0.0,
    )
    .allocating(path)
}

/// Adds the coordinate entries `i j [value]` into `values` (and their mirror images for a symmetric or
/// skew-symmetric matrix).
fn read_coordinate_entries(
    lines: &mut Lines,
    banner: &Banner,
    sizes: &Sizes,
    values: &mut [f64],
) -> Result<()> {
    let (rows, cols, entries) = (sizes.rows, sizes.cols, sizes.entries);
    for e in 0..entries {
        if !lines.next_content()? {
            return Err(IoError::truncated(
                lines.path,
                format!("the size line announces {entries} entries but the file ends after {e}"),
            ));
        }
        let mut toks = lines.current().split_whitespace();
        let (ti, tj) = (toks.next().unwrap_or(""), toks.next().unwrap_or(""));
        let i = parse_index(ti, rows, "row").map_err(|d| lines.parse_err(1, d))?;
        let j = parse_index(tj, cols, "column").map_err(|d| lines.parse_err(2, d))?;
        let v = if banner.pattern {
            1.0
        } else {
            parse_value(toks.next()).map_err(|d| lines.parse_err(3, d))?
        };
        values[i * cols + j] += v;
        if i != j {
            match banner.symmetry {
                Symmetry::General => {}
                Symmetry::Symmetric => values[j * cols + i] += v,
                Symmetry::Skew => values[j * cols + i] -= v,
            }
        }
    }
    Ok(())
}

/// Places the values of an array file, listed column by column (any number a line), into `values`.
fn read_array_values(
    lines: &mut Lines,
    banner: &Banner,
    sizes: &Sizes,
    values: &mut [f64],
) -> Result<()> {
    let (rows, cols) = (sizes.rows, sizes.cols);
    // The first row listed in column j: the diagonal (symmetric), below it (skew), else 0.
    let first_row = |j: usize| match banner.symmetry {
        Symmetry::General => 0,
        Symmetry::Symmetric => j,
        Symmetry::Skew => j + 1,
    };
    let expected = array_values(banner, sizes).unwrap_or(0);
    let (mut i, mut j) = (first_row(0), 0);
    let mut next = 0usize;
    while next < expected {
        if !lines.next_content()? {
            return Err(IoError::truncated(
                lines.path,
                format!("expected {expected} values in the array, the file ends after {next}"),
            ));
        }
        for (c, tok) in lines.current().split_whitespace().enumerate() {
            if next == expected {
                return Err(lines.parse_err(
                    c + 1,
                    format!("more than the {expected} values of the array"),
                ));
            }
            let v = parse_value(Some(tok)).map_err(|d| lines.parse_err(c + 1, d))?;
            values[i * cols + j] = v;
            match banner.symmetry {
                Symmetry::General => {}
                Symmetry::Symmetric => values[j * cols + i] = v,
                Symmetry::Skew => values[j * cols + i] = -v,
            }
            next += 1;
            // The next place, column by column.
            i += 1;
            while i >= rows && next < expected {
                j += 1;
                i = first_row(j);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Dense> {
        read_mtx(
            &mut text.as_bytes(),
            Path::new("t.mtx"),
            Some(text.len() as u64),
        )
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
