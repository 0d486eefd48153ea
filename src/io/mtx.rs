//! Matrix Market (.mtx): `%%MatrixMarket matrix coordinate|array real|double|integer|pattern
//! general|symmetric|skew-symmetric`, densified (8 bytes per entry of the full matrix) by [`read_mtx`], or
//! for coordinate files kept sparse by [`read_coordinates`] (16 bytes per entry while reading). Coordinate
//! entries repeated at the same place are summed; they are parsed in parallel and added in file order.

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

/// The entries of a coordinate Matrix Market file, kept sparse (see
/// [`read_coordinates`](crate::io::read_coordinates)).
#[derive(Clone, Debug, PartialEq)]
pub struct Coordinates {
    /// Rows of the matrix.
    pub rows: usize,
    /// Columns of the matrix.
    pub cols: usize,
    /// `(row, column, value)` from 0, in file order, a symmetric file's mirror images after each entry.
    pub entries: Vec<(u32, u32, f64)>,
}

impl Coordinates {
    /// The float type that holds every value exactly (f32 for counts below 2²⁴, for instance).
    pub fn precision(&self) -> super::Precision {
        if self.entries.iter().all(|&(_, _, v)| (v as f32) as f64 == v) {
            super::Precision::F32
        } else {
            super::Precision::F64
        }
    }

    /// The matrix in CSR form, each value rounded to `T` (exact when `T` is [`precision`](Self::precision)'s
    /// type or wider), entries at the same place summed in f64 in file order; the entries are dropped
    /// once they are placed.
    pub fn into_csr<T: crate::Real>(self) -> crate::Result<crate::CsrMatrix<T>> {
        let Coordinates {
            rows,
            cols,
            entries,
        } = self;
        // The fields are public: check what the reader guarantees.
        if let Some(&(i, j, _)) = entries
            .iter()
            .find(|&&(i, j, _)| i as usize >= rows || j as usize >= cols)
        {
            return Err(crate::Error::InvalidSparse {
                detail: format!("an entry at ({i}, {j}) lies outside the {rows} x {cols} matrix"),
            });
        }
        // Three arrays of row offsets.
        crate::alloc::check(
            || format!("the row offsets of {rows} rows"),
            rows.checked_add(1).and_then(|r| r.checked_mul(3)),
            std::mem::size_of::<usize>(),
            None,
        )?;
        // A counting sort by row keeps the file order within each row; `try_new` then sorts each row
        // by column (a stable sort) and sums repeats in f64 in file order, as the dense reader does
        // (the values are exact in T: f32 only when `precision` says so, else f64).
        let mut indptr = vec![0usize; rows + 1];
        for &(i, _, _) in &entries {
            indptr[i as usize + 1] += 1;
        }
        for i in 0..rows {
            indptr[i + 1] += indptr[i];
        }
        let (mut indices, mut values) = (vec![0u32; entries.len()], vec![T::zero(); entries.len()]);
        let mut next = indptr.clone();
        for &(i, j, v) in &entries {
            indices[next[i as usize]] = j;
            values[next[i as usize]] = T::of_f64(v);
            next[i as usize] += 1;
        }
        drop((entries, next));
        crate::CsrMatrix::try_new(rows, cols, indptr, indices, values)
    }
}

/// Whether a Matrix Market file is a coordinate (sparse) one: reads its banner only.
pub(super) fn is_coordinate(input: &mut dyn BufRead, path: &Path) -> Result<bool> {
    let mut raw = Vec::new();
    read_line(input, &mut raw, 1, path)?;
    Ok(read_banner(&String::from_utf8_lossy(&raw), path)?.coordinate)
}

/// A coordinate Matrix Market file's (rows, columns, entry lines), from its banner and size line only
/// (an `array` file is an error, as for [`read_coordinates`]).
pub(super) fn coordinate_shape(
    input: &mut dyn BufRead,
    path: &Path,
) -> Result<(usize, usize, usize)> {
    let (banner, _, sizes) = read_header(input, path)?;
    if !banner.coordinate {
        return Err(IoError::invalid(
            path,
            "an array file lists every value: it is read dense, not sparse",
        ));
    }
    Ok((sizes.rows, sizes.cols, sizes.entries))
}

/// Reads a coordinate Matrix Market file's entries, kept sparse (an `array` file is an error: it is
/// dense, for [`read_mtx`]).
pub(super) fn read_coordinates(
    input: &mut dyn BufRead,
    path: &Path,
    holds: Option<u64>,
) -> Result<Coordinates> {
    let (banner, mut lines, sizes) = read_header(input, path)?;
    if !banner.coordinate {
        return Err(IoError::invalid(
            path,
            "an array file lists every value: it is read dense, not sparse",
        ));
    }
    if sizes.rows > u32::MAX as usize || sizes.cols > u32::MAX as usize {
        return Err(IoError::invalid(
            path,
            format!(
                "a {} x {} matrix: sparse indices are 32-bit (at most 2^32 - 1 rows and columns)",
                sizes.rows, sizes.cols
            ),
        ));
    }
    // An entry line takes at least 4 bytes ("1 1\n"); a symmetric file's off-diagonal ones count twice.
    let mirrored = if banner.symmetry == Symmetry::General {
        1
    } else {
        2
    };
    let capacity = sizes.entries.checked_mul(mirrored);
    crate::alloc::check(
        || format!("{} sparse entries (16 bytes each)", sizes.entries),
        capacity,
        16,
        holds.map(|h| (h / 4 + 1).saturating_mul(mirrored as u64)),
    )
    .allocating(path)?;
    let mut entries = Vec::new();
    crate::alloc::reserve(&mut entries, capacity.unwrap_or(0), || {
        format!("{} sparse entries", sizes.entries)
    })
    .allocating(path)?;
    let target = Target::Entries(entries);
    match read_coordinate_entries(&mut lines, &banner, &sizes, target, Split::DEFAULT)? {
        Target::Entries(entries) => Ok(Coordinates {
            rows: sizes.rows,
            cols: sizes.cols,
            entries,
        }),
        Target::Dense(_) => unreachable!("the target keeps its kind"),
    }
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
    let (banner, mut lines, sizes) = read_header(input, path)?;
    let mut values = allocate(&banner, &sizes, path, holds)?;
    if banner.coordinate {
        if let Target::Dense(v) =
            read_coordinate_entries(&mut lines, &banner, &sizes, Target::Dense(values), split)?
        {
            values = v;
        } else {
            unreachable!("the target keeps its kind");
        }
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

/// Reads the banner and the size line; the lines after them are left to read.
fn read_header<'a>(
    input: &'a mut dyn BufRead,
    path: &'a Path,
) -> Result<(Banner, Lines<'a>, Sizes)> {
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
    Ok((banner, lines, sizes))
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

/// Where coordinate entries go: added into a dense row-major matrix, or kept as entries.
enum Target {
    Dense(Vec<f64>),
    Entries(Vec<(u32, u32, f64)>),
}

impl Target {
    fn add(&mut self, i: usize, j: usize, v: f64, cols: usize) {
        match self {
            Target::Dense(values) => values[i * cols + j] += v,
            // The reader checked that the sizes fit 32 bits.
            Target::Entries(entries) => entries.push((i as u32, j as u32, v)),
        }
    }
}

/// The parse of coordinate entries `i j [value]`: parsed in parallel, added into the target in file
/// order (so that repeated entries sum the same whatever the thread count), with their mirror images
/// for a symmetric or skew-symmetric matrix.
struct Coordinate<'a> {
    path: &'a Path,
    banner: &'a Banner,
    sizes: &'a Sizes,
    values: Target,
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
            self.values.add(i, j, v, cols);
            if i != j {
                match self.banner.symmetry {
                    Symmetry::General => {}
                    Symmetry::Symmetric => self.values.add(j, i, v, cols),
                    Symmetry::Skew => self.values.add(j, i, -v, cols),
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
    values: Target,
    split: Split,
) -> Result<Target> {
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

    fn read_sparse(text: &str) -> Result<Coordinates> {
        read_coordinates(
            &mut text.as_bytes(),
            Path::new("t.mtx"),
            Some(text.len() as u64),
        )
    }

    /// The sparse reader's CSR matrix, densified, is the dense reader's matrix, bit for bit.
    fn sparse_is_dense(text: &str) {
        let dense = read(text).unwrap();
        let csr = read_sparse(text).unwrap().into_csr::<f64>().unwrap();
        assert_eq!((csr.nrows(), csr.ncols()), (dense.rows, dense.cols));
        let from_sparse = csr.to_dense();
        for i in 0..dense.rows {
            for j in 0..dense.cols {
                assert_eq!(
                    from_sparse[(i, j)].to_bits(),
                    dense.values[i * dense.cols + j].to_bits(),
                    "({i}, {j}) of {text}"
                );
            }
        }
    }

    #[test]
    fn sparse_reads_are_the_dense_reads() {
        for text in [
            "%%MatrixMarket matrix coordinate real general\n% c\n2 3 3\n1 1 1.5\n2 3 -2\n2 3 1\n",
            "%%MatrixMarket matrix coordinate integer symmetric\n2 2 2\n1 1 4\n2 1 7\n",
            "%%MatrixMarket matrix coordinate pattern general\n2 2 1\n2 1\n",
            "%%MatrixMarket matrix coordinate real skew-symmetric\n2 2 1\n2 1 3\n",
            "%%MatrixMarket matrix coordinate real general\n3 2 0\n",
        ] {
            sparse_is_dense(text);
        }
        // Repeats of magnitudes whose sum depends on the order: summed in file order, as densified.
        let (text, _) = repeated_entries();
        sparse_is_dense(&text);
        let coords = read_sparse(&text).unwrap();
        assert_eq!(coords.entries.len(), 6000);
        assert_eq!(coords.precision(), crate::io::Precision::F64);
        let csr = coords.into_csr::<f64>().unwrap();
        // Each place stored once, columns ascending within a row.
        for i in 0..csr.nrows() {
            let (cols, _) = csr.row(i);
            assert!(cols.windows(2).all(|w| w[0] < w[1]), "row {i}: {cols:?}");
        }
        let ints = read_sparse("%%MatrixMarket matrix coordinate integer general\n2 2 1\n1 2 7\n");
        assert_eq!(ints.unwrap().precision(), crate::io::Precision::F32);
    }

    #[test]
    fn sparse_reader_errors() {
        let e = read_sparse("%%MatrixMarket matrix array real general\n1 1\n1\n").unwrap_err();
        assert!(e.to_string().contains("read dense"), "{e}");
        let e = read_sparse("%%MatrixMarket matrix coordinate real general\n2 2 3\n1 1 1\n")
            .unwrap_err();
        assert!(matches!(e, IoError::Truncated { .. }), "{e}");
        // A size line that announces more entries than the file's bytes can hold: refused before
        // anything is allocated.
        let e = read_sparse("%%MatrixMarket matrix coordinate real general\n9 9 1000000000000\n")
            .unwrap_err();
        assert!(matches!(e, IoError::Truncated { .. }), "{e:?}");
        assert!(e.to_string().contains("sparse entries"), "{e}");
        let e = read_sparse("%%MatrixMarket matrix coordinate real general\n5000000000 2 0\n")
            .unwrap_err();
        assert!(e.to_string().contains("32-bit"), "{e}");
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
