//! Sparse data (CSR), fitted without ever densifying it.
//!
//! Two routes reach the same solver (see [`Method`](crate::Method)):
//! * the Gram route densifies blocks of rows (8 MiB at most) one at a time into the Gram accumulation
//!   (CPU or GPU), so memory stays one block of rows plus C;
//! * the operator route never forms C: each product of the loop is applied from X itself,
//!   `C·W = X_cᵀ (X_c W)` with `X_c = X − 1μᵀ`, as `Y = X W − 1 (μᵀW)` and then `Xᵀ Y − μ (1ᵀY)`
//!   (in exact arithmetic `1ᵀY = 0`; computed, it removes what rounding left). Both steps are sums in
//!   f64 over the stored entries, so the centring is implicit and count data keeps its digits (integer
//!   sums are exact in f64 up to 2⁵³).
//!
//! Determinism: both steps are taken in one pass over the rows, cut into parts whose number follows the
//! sizes only; each part runs in row order and the parts' partial sums are added in part order, so the
//! bits do not depend on the thread count (see `SparseGram`).

use crate::error::{Error, Result};
use crate::operator::GramOperator;
use crate::real::Real;
use nalgebra::DMatrix;
use rayon::prelude::*;

/// A sparse matrix in compressed sparse row form (scipy's `csr_matrix`): row `i` holds the entries
/// `values[indptr[i]..indptr[i + 1]]` in the columns `indices[indptr[i]..indptr[i + 1]]`.
///
/// [`try_new`](Self::try_new) takes column indices in any order within a row and a column repeated
/// within a row as the sum of its values (scipy's non-canonical form), and stores the canonical form:
/// each row's columns ascending, each at most once. Rows are samples and columns features.
#[derive(Clone, Debug, PartialEq)]
pub struct CsrMatrix<T> {
    nrows: usize,
    ncols: usize,
    indptr: Vec<usize>,
    indices: Vec<u32>,
    values: Vec<T>,
}

fn invalid(detail: String) -> Error {
    Error::InvalidSparse { detail }
}

impl<T: Real> CsrMatrix<T> {
    /// A CSR matrix from its three arrays, checked: `indptr` has `nrows + 1` non-decreasing offsets from
    /// 0 to `indices.len() == values.len()`, every column index is below `ncols`, every value finite
    /// ([`Error::NonFinite`] names the first one's row and column). Anything else is
    /// [`Error::InvalidSparse`].
    pub fn try_new(
        nrows: usize,
        ncols: usize,
        indptr: Vec<usize>,
        indices: Vec<u32>,
        values: Vec<T>,
    ) -> Result<Self> {
        if ncols > u32::MAX as usize + 1 {
            return Err(invalid(format!(
                "{ncols} columns: column indices are 32-bit, so at most 2^32 columns"
            )));
        }
        if indptr.len() != nrows.saturating_add(1) {
            return Err(invalid(format!(
                "indptr has {} offsets, a matrix of {nrows} rows needs {}",
                indptr.len(),
                nrows.saturating_add(1)
            )));
        }
        if indices.len() != values.len() {
            return Err(invalid(format!(
                "{} column indices but {} values",
                indices.len(),
                values.len()
            )));
        }
        if indptr[0] != 0 || indptr[nrows] != values.len() {
            return Err(invalid(format!(
                "indptr runs from {} to {}; it must run from 0 to the number of entries, {}",
                indptr[0],
                indptr[nrows],
                values.len()
            )));
        }
        if let Some(i) = (0..nrows).find(|&i| indptr[i] > indptr[i + 1]) {
            return Err(invalid(format!(
                "indptr decreases at row {i} ({} then {})",
                indptr[i],
                indptr[i + 1]
            )));
        }
        let mut canonical = true;
        for i in 0..nrows {
            for e in indptr[i]..indptr[i + 1] {
                let col = indices[e] as usize;
                if col >= ncols {
                    return Err(invalid(format!(
                        "row {i} has an entry in column {col}, but the matrix has {ncols} columns"
                    )));
                }
                let value = values[e].as_f64();
                if !value.is_finite() {
                    return Err(Error::NonFinite { row: i, col, value });
                }
                canonical &= e == indptr[i] || indices[e - 1] < indices[e];
            }
        }
        let x = CsrMatrix {
            nrows,
            ncols,
            indptr,
            indices,
            values,
        };
        if canonical {
            Ok(x)
        } else {
            x.canonical()
        }
    }

    /// Each row's columns sorted (a stable sort) and repeats summed in f64 in their given order.
    fn canonical(self) -> Result<Self> {
        let (mut indptr, mut indices, mut values) = (vec![0usize], Vec::new(), Vec::new());
        let nnz = self.nnz();
        let what = || format!("the sorted copy of {nnz} sparse entries");
        crate::alloc::reserve(&mut indptr, self.nrows, what)?;
        crate::alloc::reserve(&mut indices, nnz, what)?;
        crate::alloc::reserve(&mut values, nnz, what)?;
        let mut row: Vec<(u32, f64)> = Vec::new();
        for i in 0..self.nrows {
            let (cols, vals) = self.row(i);
            row.clear();
            row.extend(cols.iter().zip(vals).map(|(&j, &v)| (j, v.as_f64())));
            row.sort_by_key(|&(j, _)| j);
            let mut at = 0;
            while at < row.len() {
                let (j, mut v) = row[at];
                at += 1;
                while at < row.len() && row[at].0 == j {
                    v += row[at].1;
                    at += 1;
                }
                let value = T::of_f64(v);
                if !value.as_f64().is_finite() {
                    return Err(Error::Overflow {
                        what: format!("the repeated entries at row {i}, column {j} sum to {v:e}"),
                    });
                }
                indices.push(j);
                values.push(value);
            }
            indptr.push(values.len());
        }
        Ok(CsrMatrix {
            nrows: self.nrows,
            ncols: self.ncols,
            indptr,
            indices,
            values,
        })
    }

    /// A CSR matrix from coordinate entries `(row, column, value)` in any order; entries at the same
    /// place are summed in the order given. The bounds and values are checked as in
    /// [`try_new`](Self::try_new).
    pub fn from_triplets(
        nrows: usize,
        ncols: usize,
        entries: &[(usize, usize, T)],
    ) -> Result<Self> {
        if let Some(&(i, j, _)) = entries.iter().find(|&&(i, j, _)| i >= nrows || j >= ncols) {
            return Err(invalid(format!(
                "an entry at ({i}, {j}) lies outside the {nrows} x {ncols} matrix"
            )));
        }
        if ncols > u32::MAX as usize + 1 {
            return Err(invalid(format!(
                "{ncols} columns: column indices are 32-bit, so at most 2^32 columns"
            )));
        }
        // A counting sort by row, stable: each row keeps the given order.
        let mut indptr = crate::alloc::filled(
            || format!("the row offsets of {nrows} rows"),
            nrows.checked_add(1),
            None,
            0usize,
        )?;
        for &(i, _, _) in entries {
            indptr[i + 1] += 1;
        }
        for i in 0..nrows {
            indptr[i + 1] += indptr[i];
        }
        let mut next = indptr.clone();
        let mut indices = vec![0u32; entries.len()];
        let mut values = vec![T::zero(); entries.len()];
        for &(i, j, v) in entries {
            indices[next[i]] = j as u32;
            values[next[i]] = v;
            next[i] += 1;
        }
        Self::try_new(nrows, ncols, indptr, indices, values)
    }

    /// A dense matrix's non-zero entries (row by row).
    pub fn from_dense(x: &DMatrix<T>) -> Self {
        let (nrows, ncols) = x.shape();
        let mut indptr = Vec::with_capacity(nrows + 1);
        let (mut indices, mut values) = (Vec::new(), Vec::new());
        indptr.push(0);
        for i in 0..nrows {
            for j in 0..ncols {
                let v = x[(i, j)];
                if v != T::zero() {
                    indices.push(j as u32);
                    values.push(v);
                }
            }
            indptr.push(values.len());
        }
        CsrMatrix {
            nrows,
            ncols,
            indptr,
            indices,
            values,
        }
    }

    /// Rows (samples).
    pub fn nrows(&self) -> usize {
        self.nrows
    }
    /// Columns (features).
    pub fn ncols(&self) -> usize {
        self.ncols
    }
    /// Stored entries.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }
    /// The row offsets (`nrows + 1`).
    pub fn indptr(&self) -> &[usize] {
        &self.indptr
    }
    /// The column index of each stored entry.
    pub fn indices(&self) -> &[u32] {
        &self.indices
    }
    /// The stored values.
    pub fn values(&self) -> &[T] {
        &self.values
    }

    /// Row `i`'s column indices and values.
    pub fn row(&self, i: usize) -> (&[u32], &[T]) {
        let range = self.indptr[i]..self.indptr[i + 1];
        (&self.indices[range.clone()], &self.values[range])
    }

    /// The dense copy (for small matrices and tests).
    pub fn to_dense(&self) -> DMatrix<T> {
        let mut x = DMatrix::zeros(self.nrows, self.ncols);
        for i in 0..self.nrows {
            let (cols, vals) = self.row(i);
            for (&j, &v) in cols.iter().zip(vals) {
                x[(i, j as usize)] += v;
            }
        }
        x
    }

    /// Rows `rows` densified into `out` (row-major, `rows.len() x ncols`; duplicates summed).
    pub(crate) fn densify_rows(&self, rows: std::ops::Range<usize>, out: &mut Vec<T>) {
        out.clear();
        out.resize(rows.len() * self.ncols, T::zero());
        for (r, i) in rows.enumerate() {
            let (cols, vals) = self.row(i);
            let dst = &mut out[r * self.ncols..(r + 1) * self.ncols];
            for (&j, &v) in cols.iter().zip(vals) {
                dst[j as usize] += v;
            }
        }
    }

    /// Scores `(X − 1 meanᵀ) W` for W (m x k column-major, as f64) without densifying X: `X W − 1 (meanᵀ W)`,
    /// row by row in f64.
    pub(crate) fn centred_product(&self, w: &DMatrix<f64>, mean: &[f64]) -> DMatrix<f64> {
        let y = self.centred_product_rows(w, mean);
        DMatrix::from_row_slice(self.nrows, w.ncols(), &y)
    }

    /// [`centred_product`](Self::centred_product) as row-major n x k values.
    fn centred_product_rows(&self, w: &DMatrix<f64>, mean: &[f64]) -> Vec<f64> {
        let w_rows = row_major(w);
        let shift: Vec<f64> = (0..w.ncols()).map(|c| dot_column(w, c, mean)).collect();
        let mut y = vec![0.0f64; self.nrows * w.ncols()];
        y.par_chunks_mut(w.ncols().max(1))
            .enumerate()
            .for_each(|(i, yi)| self.centred_row_product(i, &w_rows, &shift, yi));
        y
    }

    /// `y = x_iᵀ W − shift` for row i (`w_rows`: W's rows, `y.len()` values each), in f64 from
    /// `−shift` over the stored entries in order.
    fn centred_row_product(&self, i: usize, w_rows: &[f64], shift: &[f64], y: &mut [f64]) {
        let b = y.len();
        for (acc, &s) in y.iter_mut().zip(shift) {
            *acc = -s;
        }
        let (cols, vals) = self.row(i);
        for (&j, &v) in cols.iter().zip(vals) {
            let wj = &w_rows[j as usize * b..(j as usize + 1) * b];
            let v = v.as_f64();
            for (acc, &x) in y.iter_mut().zip(wj) {
                *acc += v * x;
            }
        }
    }
}

/// An m x k matrix's rows, one after another.
fn row_major(w: &DMatrix<f64>) -> Vec<f64> {
    let (m, k) = w.shape();
    let mut out = vec![0.0; m * k];
    for c in 0..k {
        for (i, &v) in w.column(c).iter().enumerate() {
            out[i * k + c] = v;
        }
    }
    out
}

/// `w[:, c] · v`, summed in index order.
fn dot_column(w: &DMatrix<f64>, c: usize, v: &[f64]) -> f64 {
    w.column(c).iter().zip(v).map(|(a, b)| a * b).sum()
}

/// The most bytes of per-part partial products [`SparseGram`] allocates (each part holds an m x b f64
/// block; more parts run in parallel).
const PART_BYTES: usize = 128 << 20;
/// The most parts.
const MAX_PARTS: usize = 16;

/// The parts of `n` rows for partials of `width` f64 for each of `m` columns.
fn part_count(n: usize, m: usize, width: usize) -> usize {
    let per_part = m.saturating_mul(width.max(1)).saturating_mul(8).max(1);
    (PART_BYTES / per_part).clamp(1, MAX_PARTS).min(n.max(1))
}

/// The bytes a product of the operator route allocates for a block of `width` columns: its parts'
/// partials (`XᵀY` and `1ᵀY`), W's rows and the result.
pub(crate) fn operator_product_bytes(n: usize, m: usize, width: usize) -> f64 {
    let partial = (m as f64 + 1.0) * width as f64 * 8.0;
    part_count(n, m + 1, width) as f64 * partial + 2.0 * m as f64 * width as f64 * 8.0
}

/// C of a sparse X, never formed: applied as `X_cᵀ (X_c W)` (see the module's text).
///
/// One pass over the rows per product: row i gives `y_i = x_iᵀ W − μᵀW`, then adds `x_ij y_i` to row j
/// of its part's partial `XᵀY` and `y_i` to its part's `1ᵀY`. The rows are cut into parts of about
/// equal entries, how many following only the sizes (n, nnz, m and the block width), never the
/// thread count; each part runs in row order and the parts' partials are added in part order, so the
/// bits do not depend on the threads.
pub(crate) struct SparseGram<'a, T> {
    x: &'a CsrMatrix<T>,
    /// μ (zeros when the data is not centred).
    mean: Vec<f64>,
    /// C's diagonal, `Σᵢ (x_ij − μ_j)²`, summed over the stored entries plus the zeros' `μ_j²` each.
    diagonal: Vec<f64>,
}

impl<'a, T: Real> SparseGram<'a, T> {
    /// The operator of `x`, centred when `center` (the column means in f64).
    pub fn new(x: &'a CsrMatrix<T>, center: bool) -> Result<Self> {
        let (n, m) = (x.nrows, x.ncols);
        let parts = x.parts(x.parts_for(2));
        // Per column: the sum and the count of stored entries, then the stored (x − μ)².
        let sums = x.column_sums(&parts, 2, |_, v, out| {
            out[0] += v;
            out[1] += 1.0;
        });
        let mean: Vec<f64> = (0..m)
            .map(|j| if center { sums[2 * j] / n as f64 } else { 0.0 })
            .collect();
        let squares = x.column_sums(&parts, 1, |j, v, out| out[0] += (v - mean[j]).powi(2));
        let diagonal: Vec<f64> = (0..m)
            .map(|j| squares[j] + (n as f64 - sums[2 * j + 1]) * mean[j] * mean[j])
            .collect();
        // The products reach ‖C‖·‖W‖ ≤ trace(C)·‖W‖ (W of unit columns): keep them well inside f64.
        let trace: f64 = diagonal.iter().sum();
        if trace.is_nan() || trace > 1e300 {
            return Err(Error::Overflow {
                what: format!("the sum of squares of the centred data is {trace:e}"),
            });
        }
        Ok(SparseGram { x, mean, diagonal })
    }

    /// μ.
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }
}

impl<T: Real> CsrMatrix<T> {
    /// The number of parts for partials of `width` f64 per column (see [`SparseGram`]).
    fn parts_for(&self, width: usize) -> usize {
        part_count(self.nrows, self.ncols, width)
    }

    /// `parts` row ranges of about equal entries (a function of the sizes only).
    fn parts(&self, parts: usize) -> Vec<std::ops::Range<usize>> {
        let nnz = self.nnz();
        let mut bounds = vec![0];
        for p in 1..parts {
            let target = nnz / parts * p + nnz % parts * p / parts;
            let row = self.indptr.partition_point(|&e| e < target).min(self.nrows);
            bounds.push(row.max(*bounds.last().unwrap_or(&0)));
        }
        bounds.push(self.nrows);
        bounds.windows(2).map(|w| w[0]..w[1]).collect()
    }

    /// Per column, `width` sums of `add(column, value, sums)` over the stored entries, by parts added in
    /// part order.
    fn column_sums(
        &self,
        parts: &[std::ops::Range<usize>],
        width: usize,
        add: impl Fn(usize, f64, &mut [f64]) + Sync,
    ) -> Vec<f64> {
        let partials: Vec<Vec<f64>> = parts
            .par_iter()
            .map(|rows| {
                let mut out = vec![0.0; self.ncols * width];
                for i in rows.clone() {
                    let (cols, vals) = self.row(i);
                    for (&j, &v) in cols.iter().zip(vals) {
                        let j = j as usize;
                        add(j, v.as_f64(), &mut out[j * width..(j + 1) * width]);
                    }
                }
                out
            })
            .collect();
        add_in_order(partials)
    }
}

/// The element-wise sum of equally long vectors, added in the given order (in parallel over the
/// elements, each element's sum in that order).
fn add_in_order(mut partials: Vec<Vec<f64>>) -> Vec<f64> {
    let mut total = partials.remove(0);
    const CHUNK: usize = 4096;
    total
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, out)| {
            for p in &partials {
                for (o, &v) in out.iter_mut().zip(&p[c * CHUNK..]) {
                    *o += v;
                }
            }
        });
    total
}

impl<T: Real> GramOperator for SparseGram<'_, T> {
    fn n_features(&self) -> usize {
        self.x.ncols
    }

    fn apply(&self, w: &DMatrix<f64>) -> DMatrix<f64> {
        let (m, b) = w.shape();
        let x = self.x;
        let w_rows = row_major(w);
        let shift: Vec<f64> = (0..b).map(|c| dot_column(w, c, &self.mean)).collect();
        let parts = x.parts(part_count(x.nrows, m + 1, b));
        // Each part: its partial XᵀY (m x b, row-major) followed by its 1ᵀY (b).
        let partials: Vec<Vec<f64>> = parts
            .par_iter()
            .map(|rows| {
                let mut out = vec![0.0f64; (m + 1) * b];
                let mut yi = vec![0.0f64; b];
                for i in rows.clone() {
                    x.centred_row_product(i, &w_rows, &shift, &mut yi);
                    let (cols, vals) = x.row(i);
                    for (&j, &v) in cols.iter().zip(vals) {
                        let zj = &mut out[j as usize * b..(j as usize + 1) * b];
                        let v = v.as_f64();
                        for (acc, &y) in zj.iter_mut().zip(&yi) {
                            *acc += v * y;
                        }
                    }
                    for (acc, &y) in out[m * b..].iter_mut().zip(&yi) {
                        *acc += y;
                    }
                }
                out
            })
            .collect();
        let mut z = add_in_order(partials);
        let (xty, column_sums) = z.split_at_mut(m * b);
        // X_cᵀ Y = XᵀY − μ (1ᵀY).
        xty.par_chunks_mut(b.max(1))
            .zip(self.mean.par_iter())
            .for_each(|(zj, &mu)| {
                for (acc, &s) in zj.iter_mut().zip(column_sums.iter()) {
                    *acc -= mu * s;
                }
            });
        DMatrix::from_row_slice(m, b, xty)
    }

    fn diagonal(&self) -> Vec<f64> {
        self.diagonal.clone()
    }
}

/// A CSR matrix read by blocks of features (the transposed Gram route of sparse data): each block
/// densified from the rows' entries in its columns, found by binary search in the rows' ascending
/// column indices, so a pass over all blocks reads every entry once.
pub(crate) struct CsrFeatures<'a, T> {
    x: &'a CsrMatrix<T>,
}

impl<'a, T> CsrFeatures<'a, T> {
    pub fn new(x: &'a CsrMatrix<T>) -> Self {
        CsrFeatures { x }
    }
}

impl<T: Real> crate::FeatureBlocks<T> for CsrFeatures<'_, T> {
    fn n_samples(&self) -> usize {
        self.x.nrows
    }
    fn n_features(&self) -> usize {
        self.x.ncols
    }
    fn read_features(&mut self, first: usize, last: usize, out: &mut Vec<T>) -> Result<()> {
        let n = self.x.nrows;
        // (The caller's block buffer holds this many already: chunk_buffer sized it.)
        out.clear();
        out.resize((last - first) * n, T::zero());
        // (In usize: a matrix may have 2³² columns, where `last` does not fit a u32.)
        for i in 0..n {
            let (cols, vals) = self.x.row(i);
            let start = cols.partition_point(|&j| (j as usize) < first);
            let end = start + cols[start..].partition_point(|&j| (j as usize) < last);
            for (&j, &v) in cols[start..end].iter().zip(&vals[start..end]) {
                out[(j as usize - first) * n + i] = v;
            }
        }
        Ok(())
    }
}

/// A sparse X as the GPU engine uploads it for the operator route (src/gpu/engine.rs): row panels of X
/// or of Xᵀ, each packed into u32 words as shaders/sparse.wgsl reads them. A trait so that the engine
/// is not generic over the value type.
pub(crate) trait PackedPanels: Sync {
    /// (rows, columns) of X.
    fn shape(&self) -> (usize, usize);
    /// The entries of each row of X, or of each row of Xᵀ (each column of X) when `transposed`.
    fn row_entries(&self, transposed: bool) -> Result<Vec<usize>>;
    /// Rows `rows` of X (or of Xᵀ), `entries` of them stored: their `rows.len() + 1` row offsets from
    /// 0, their column indices, then their values times `scale` as f32 bits; the rows of Xᵀ hold their
    /// entries in X's row order.
    fn pack(
        &self,
        transposed: bool,
        rows: std::ops::Range<usize>,
        entries: usize,
        scale: f64,
    ) -> Result<Vec<u32>>;
}

impl<T: Real> PackedPanels for CsrMatrix<T> {
    fn shape(&self) -> (usize, usize) {
        (self.nrows, self.ncols)
    }

    fn row_entries(&self, transposed: bool) -> Result<Vec<usize>> {
        let rows = if transposed { self.ncols } else { self.nrows };
        let mut counts = crate::alloc::filled(
            || format!("the stored entries of {rows} rows"),
            Some(rows),
            None,
            0usize,
        )?;
        if transposed {
            for &j in &self.indices {
                counts[j as usize] += 1;
            }
        } else {
            for (c, w) in counts.iter_mut().zip(self.indptr.windows(2)) {
                *c = w[1] - w[0];
            }
        }
        Ok(counts)
    }

    fn pack(
        &self,
        transposed: bool,
        rows: std::ops::Range<usize>,
        entries: usize,
        scale: f64,
    ) -> Result<Vec<u32>> {
        let words = rows
            .len()
            .checked_add(1)
            .and_then(|w| w.checked_add(entries.checked_mul(2)?));
        let mut packed = crate::alloc::filled(
            || format!("a panel of {} sparse rows packed for the GPU", rows.len()),
            words,
            None,
            0u32,
        )?;
        let (offsets, rest) = packed.split_at_mut(rows.len() + 1);
        let (indices, values) = rest.split_at_mut(entries);
        let value = |v: T| ((v.as_f64() * scale) as f32).to_bits();
        if !transposed {
            let first = self.indptr[rows.start];
            for (o, &p) in offsets.iter_mut().zip(&self.indptr[rows.start..=rows.end]) {
                *o = (p - first) as u32;
            }
            let range = first..self.indptr[rows.end];
            for (d, &j) in indices.iter_mut().zip(&self.indices[range.clone()]) {
                *d = j;
            }
            for (d, &v) in values.iter_mut().zip(&self.values[range]) {
                *d = value(v);
            }
            return Ok(packed);
        }
        // Xᵀ's rows j0..j1 by a counting sort of X's entries in those columns, in X's row order.
        let (j0, j1) = (rows.start as u32, rows.end as u32);
        for &j in &self.indices {
            if (j0..j1).contains(&j) {
                offsets[(j - j0) as usize + 1] += 1;
            }
        }
        for r in 1..offsets.len() {
            offsets[r] += offsets[r - 1];
        }
        let mut next = crate::alloc::filled(
            || format!("the fill positions of {} rows", rows.len()),
            Some(rows.len()),
            None,
            0u32,
        )?;
        next.copy_from_slice(&offsets[..rows.len()]);
        for i in 0..self.nrows {
            let (cols, vals) = self.row(i);
            for (&j, &v) in cols.iter().zip(vals) {
                if (j0..j1).contains(&j) {
                    let slot = &mut next[(j - j0) as usize];
                    indices[*slot as usize] = i as u32;
                    values[*slot as usize] = value(v);
                    *slot += 1;
                }
            }
        }
        Ok(packed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FeatureBlocks;

    #[test]
    fn feature_blocks_of_a_csr_matrix_are_its_dense_columns() {
        // Rows with no entries, a column with none, blocks of every width including past the last
        // stored column.
        let dense = DMatrix::from_fn(6, 11, |i, j| {
            if i != 2 && j != 7 && (i + 2 * j) % 3 == 0 {
                (10 * i + j) as f64 + 0.25
            } else {
                0.0
            }
        });
        let x = CsrMatrix::from_dense(&dense);
        let mut blocks = CsrFeatures::new(&x);
        let mut out = Vec::new();
        for width in 1..=11 {
            for first in (0..11).step_by(width) {
                let last = (first + width).min(11);
                blocks.read_features(first, last, &mut out).unwrap();
                let want = dense.columns(first, last - first).clone_owned();
                assert_eq!(out.as_slice(), want.as_slice(), "features {first}..{last}");
            }
        }
        // 2³² columns: the last block's bound does not fit a u32.
        let wide =
            CsrMatrix::try_new(1, 1 << 32, vec![0, 1], vec![u32::MAX], vec![1.0f64]).unwrap();
        CsrFeatures::new(&wide)
            .read_features(u32::MAX as usize, 1 << 32, &mut out)
            .unwrap();
        assert_eq!(out, vec![1.0]);
    }
}
