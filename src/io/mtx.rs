//! Matrix Market (.mtx): `%%MatrixMarket matrix coordinate|array real|double|integer|pattern
//! general|symmetric|skew-symmetric`, densified (8 bytes per entry of the full matrix). Coordinate entries
//! repeated at the same place are summed; they are parsed in parallel and added in file order.

use super::error::{IoError, Result, SizeContext};
use super::lines::{parse_lines, read_line, utf8, Block, LineParser, Split};
use super::Dense;
use std::io::BufRead;
use std::ops::Range;
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
    read_mtx_split(input, path, holds, Split::DEFAULT)
}

/// [`read_mtx`], the coordinate entries' lines cut for the parallel parse as `split` says.
fn read_mtx_split(
    input: &mut dyn BufRead,
    path: &Path,
    holds: Option<u64>,
    split: Split,
) -> Result<Dense> {
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
        values = read_coordinate_entries(&mut lines, &banner, &sizes, values, split)?;
    } else {
        read_array_values(&mut lines, &banner, &sizes, &mut values)?;
        if lines.next_content()? {
            return Err(lines.parse_err(1, "more entries than the size line announces"));
        }
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

/// The parse of coordinate entries `i j [value]`: parsed in parallel, added into the dense matrix in
/// file order (so that repeated entries sum the same whatever the thread count), with their mirror
/// images for a symmetric or skew-symmetric matrix.
struct Coordinate<'a> {
    path: &'a Path,
    banner: &'a Banner,
    sizes: &'a Sizes,
    values: Vec<f64>,
    /// The entries added so far.
    added: usize,
}

/// A part of the entry lines: the entries (0-based row and column, value) with their lines, then the
/// first error if any, and whether that error is about an entry (rather than the line's bytes).
#[derive(Default)]
struct Entries {
    entries: Vec<(usize, usize, f64)>,
    lines: Vec<usize>,
    error: Option<(IoError, bool)>,
}

impl Coordinate<'_> {
    /// The entry of a content line, or a parse error (1-based column).
    fn entry(&self, text: &str) -> std::result::Result<(usize, usize, f64), (usize, String)> {
        let mut toks = text.split_whitespace();
        let (ti, tj) = (toks.next().unwrap_or(""), toks.next().unwrap_or(""));
        let i = parse_index(ti, self.sizes.rows, "row").map_err(|d| (1, d))?;
        let j = parse_index(tj, self.sizes.cols, "column").map_err(|d| (2, d))?;
        let v = if self.banner.pattern {
            1.0
        } else {
            parse_value(toks.next()).map_err(|d| (3, d))?
        };
        Ok((i, j, v))
    }

    fn more_entries(&self, line: usize) -> IoError {
        IoError::parse(
            self.path,
            line,
            1,
            "more entries than the size line announces",
        )
    }
}

impl LineParser for Coordinate<'_> {
    type Part = Entries;

    fn prefix(&mut self, _block: &Block) -> Result<usize> {
        Ok(0)
    }

    // A part's entries take at most 8 times its bytes (32 bytes for an entry of at least 4 bytes).
    fn parse(&self, block: &Block, lines: Range<usize>) -> Entries {
        let mut part = Entries::default();
        for k in lines {
            let line = block.first_line + k;
            let text = match utf8(block.line(k)) {
                Ok(t) => t.trim(),
                Err(d) => {
                    part.error = Some((IoError::parse(self.path, line, 1, d), false));
                    break;
                }
            };
            if text.is_empty() || text.starts_with('%') {
                continue;
            }
            match self.entry(text) {
                Ok(e) => {
                    part.entries.push(e);
                    part.lines.push(line);
                }
                Err((column, d)) => {
                    part.error = Some((IoError::parse(self.path, line, column, d), true));
                    break;
                }
            }
        }
        part
    }

    fn join(&mut self, part: Entries) -> Result<()> {
        let cols = self.sizes.cols;
        for (&(i, j, v), &line) in part.entries.iter().zip(&part.lines) {
            if self.added == self.sizes.entries {
                return Err(self.more_entries(line));
            }
            self.values[i * cols + j] += v;
            if i != j {
                match self.banner.symmetry {
                    Symmetry::General => {}
                    Symmetry::Symmetric => self.values[j * cols + i] += v,
                    Symmetry::Skew => self.values[j * cols + i] -= v,
                }
            }
            self.added += 1;
        }
        match part.error {
            // A bad line after the announced entries is one entry too many.
            Some((IoError::Parse { line, .. }, true)) if self.added == self.sizes.entries => {
                Err(self.more_entries(line))
            }
            Some((e, _)) => Err(e),
            None => Ok(()),
        }
    }
}

/// Reads the coordinate entries (the rest of the file) into `values`.
fn read_coordinate_entries(
    lines: &mut Lines,
    banner: &Banner,
    sizes: &Sizes,
    values: Vec<f64>,
    split: Split,
) -> Result<Vec<f64>> {
    let mut parser = Coordinate {
        path: lines.path,
        banner,
        sizes,
        values,
        added: 0,
    };
    parse_lines(lines.input, lines.path, lines.line + 1, split, &mut parser)?;
    if parser.added < sizes.entries {
        return Err(IoError::truncated(
            lines.path,
            format!(
                "the size line announces {} entries but the file ends after {}",
                sizes.entries, parser.added
            ),
        ));
    }
    Ok(parser.values)
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
    use super::super::lines::for_each_split_and_pool;
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

    /// 6000 entries of a 40 x 30 matrix, many at the same places, of magnitudes whose sum depends on
    /// the order of the additions; comments and blank lines in between.
    fn repeated_entries() -> (String, Vec<(usize, usize, f64)>) {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut entries = Vec::new();
        let mut body = String::new();
        for e in 0..6000 {
            let (i, j) = ((next() % 40) as usize, (next() % 30) as usize);
            let v = match next() % 3 {
                0 => 1e16,
                1 => -1e16,
                _ => (next() % 1000) as f64 / 7.0,
            };
            entries.push((i, j, v));
            body.push_str(&format!("{} {} {v:e}\n", i + 1, j + 1));
            if e % 500 == 3 {
                body.push_str("% a comment\n\n");
            }
        }
        let text = format!(
            "%%MatrixMarket matrix coordinate real general\n40 30 {}\n{body}",
            entries.len()
        );
        (text, entries)
    }

    fn read_split(text: &str, split: Split) -> Result<Dense> {
        read_mtx_split(&mut text.as_bytes(), Path::new("t.mtx"), None, split)
    }

    #[test]
    fn parallel_entries_sum_in_file_order_whatever_the_threads() {
        let (text, entries) = repeated_entries();
        let mut reference = vec![0.0f64; 40 * 30];
        for &(i, j, v) in &entries {
            reference[i * 30 + j] += v;
        }
        let reference: Vec<u64> = reference.iter().map(|v| v.to_bits()).collect();
        for_each_split_and_pool(2048, |split, threads| {
            let d = read_split(&text, split).unwrap();
            let bits: Vec<u64> = d.values.iter().map(|v| v.to_bits()).collect();
            assert!(bits == reference, "{split:?}, {threads} threads");
        });
    }

    #[test]
    fn parallel_entries_report_the_serial_errors() {
        let (text, _) = repeated_entries();
        let lines: Vec<&str> = text.lines().collect();
        // A bad entry (line 4001), then one on a later line: the first is reported.
        let mut bad = lines.clone();
        bad[4000] = "1 99 1";
        bad[5000] = "x 1 1";
        // One entry too many, even a bad one: the line after the announced entries.
        let mut extra = lines.clone();
        extra.push("x y z");
        // One entry fewer than announced.
        let short = &lines[..lines.len() - 1];
        let (bad, extra, short) = (bad.join("\n"), extra.join("\n"), short.join("\n"));
        let more_at = text.lines().count() + 1;
        for_each_split_and_pool(2048, |split, _| {
            let e = read_split(&bad, split).unwrap_err();
            assert_eq!(
                e.to_string(),
                "t.mtx: line 4001, column 2: the column index 99 is outside 1..=30"
            );
            let e = read_split(&extra, split).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "t.mtx: line {more_at}, column 1: more entries than the size line announces"
                )
            );
            let e = read_split(&short, split).unwrap_err();
            assert!(
                e.to_string()
                    .ends_with("announces 6000 entries but the file ends after 5999"),
                "{e}"
            );
        });
    }
}
