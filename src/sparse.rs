//! Sparse data (CSR), fitted without ever densifying it.
//!
//! Two routes reach the same solver (see [`Method`](crate::Method)):
//! * the Gram route densifies a few hundred rows at a time into the Gram accumulation (CPU or GPU), so
//!   memory stays one block of rows plus C;
//! * the operator route never forms C: each product of the loop is applied from X itself,
//!   `C·W = X_cᵀ (X_c W)` with `X_c = X − 1μᵀ`, as `Y = X W − 1 (μᵀW)` and then `Xᵀ Y − μ (1ᵀY)`
//!   (in exact arithmetic `1ᵀY = 0`; computed, it removes what rounding left). Both steps are sums in
//!   f64 over the stored entries, so the centring is implicit and count data keeps its digits (integer
//!   sums are exact in f64 up to 2⁵³).
//!
//! Determinism: `X W` is computed row by row and `Xᵀ Y` column by column (through a column-sorted copy
//! of the entries), each entry a sum in the stored order; the rows and columns are shared among threads
//! but no sum is, so the bits do not depend on the thread count.

use crate::error::{Error, Result};
use crate::operator::GramOperator;
use crate::real::Real;
use nalgebra::DMatrix;
use rayon::prelude::*;

/// A sparse matrix in compressed sparse row form (scipy's `csr_matrix`): row `i` holds the entries
/// `values[indptr[i]..indptr[i + 1]]` in the columns `indices[indptr[i]..indptr[i + 1]]`.
///
/// Column indices within a row may come in any order, and a column repeated within a row counts as
/// the sum of its values (scipy's non-canonical form). Rows are samples and columns features.
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
            }
        }
        Ok(CsrMatrix {
            nrows,
            ncols,
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
        let mut indptr = vec![0usize; nrows + 1];
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
        let k = w.ncols().max(1);
        let w_rows = row_major(w);
        let shift: Vec<f64> = (0..w.ncols()).map(|c| dot_column(w, c, mean)).collect();
        let mut y = vec![0.0f64; self.nrows * w.ncols()];
        y.par_chunks_mut(k).enumerate().for_each(|(i, yi)| {
            let (cols, vals) = self.row(i);
            for (&j, &v) in cols.iter().zip(vals) {
                let wj = &w_rows[j as usize * k..(j as usize + 1) * k];
                let v = v.as_f64();
                for (acc, &x) in yi.iter_mut().zip(wj) {
                    *acc += v * x;
                }
            }
            for (acc, &s) in yi.iter_mut().zip(&shift) {
                *acc -= s;
            }
        });
        y
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

/// The entries of a CSR matrix sorted by column (rows ascending within each column): `Xᵀ` in CSR.
struct Columns<T> {
    colptr: Vec<usize>,
    rows: Vec<u32>,
    values: Vec<T>,
}

impl<T: Real> Columns<T> {
    fn of(x: &CsrMatrix<T>) -> Result<Self> {
        if x.nrows > u32::MAX as usize + 1 {
            return Err(invalid(format!(
                "{} rows: the operator route indexes rows in 32 bits, so at most 2^32 rows",
                x.nrows
            )));
        }
        let nnz = x.nnz();
        let what = || format!("the column-sorted copy of {nnz} sparse entries");
        let mut rows = crate::alloc::filled(what, Some(nnz), None, 0u32).map_err(too_large)?;
        let mut values =
            crate::alloc::filled(what, Some(nnz), None, T::zero()).map_err(too_large)?;
        let mut colptr = vec![0usize; x.ncols + 1];
        for &j in &x.indices {
            colptr[j as usize + 1] += 1;
        }
        for j in 0..x.ncols {
            colptr[j + 1] += colptr[j];
        }
        let mut next = colptr[..x.ncols].to_vec();
        for i in 0..x.nrows {
            let (cols, vals) = x.row(i);
            for (&j, &v) in cols.iter().zip(vals) {
                let at = &mut next[j as usize];
                rows[*at] = i as u32;
                values[*at] = v;
                *at += 1;
            }
        }
        Ok(Columns {
            colptr,
            rows,
            values,
        })
    }

    fn column(&self, j: usize) -> (&[u32], &[T]) {
        let range = self.colptr[j]..self.colptr[j + 1];
        (&self.rows[range.clone()], &self.values[range])
    }
}

fn too_large(e: crate::alloc::SizeError) -> Error {
    Error::TooLarge {
        detail: e.to_string(),
    }
}

/// C of a sparse X, never formed: applied as `X_cᵀ (X_c W)` (see the module's text).
pub(crate) struct SparseGram<'a, T> {
    x: &'a CsrMatrix<T>,
    columns: Columns<T>,
    /// μ (zeros when the data is not centred).
    mean: Vec<f64>,
    /// C's diagonal, `Σᵢ (x_ij − μ_j)²`, summed over the stored entries plus the zeros' `μ_j²` each.
    diagonal: Vec<f64>,
}

impl<'a, T: Real> SparseGram<'a, T> {
    /// The operator of `x`, centred when `center` (the column means in f64, in row order).
    pub fn new(x: &'a CsrMatrix<T>, center: bool) -> Result<Self> {
        let columns = Columns::of(x)?;
        let n = x.nrows as f64;
        let (mean, diagonal): (Vec<f64>, Vec<f64>) = (0..x.ncols)
            .into_par_iter()
            .map(|j| {
                let (_, vals) = columns.column(j);
                let mu = if center {
                    vals.iter().map(|v| v.as_f64()).sum::<f64>() / n
                } else {
                    0.0
                };
                let zeros = (x.nrows - vals.len()) as f64;
                let stored: f64 = vals.iter().map(|v| (v.as_f64() - mu).powi(2)).sum();
                (mu, stored + zeros * mu * mu)
            })
            .unzip();
        // The products reach ‖C‖·‖W‖ ≤ trace(C)·‖W‖ (W of unit columns): keep them well inside f64.
        let trace: f64 = diagonal.iter().sum();
        if !(trace <= 1e300) {
            return Err(Error::Overflow {
                what: format!("the sum of squares of the centred data is {trace:e}"),
            });
        }
        Ok(SparseGram {
            x,
            columns,
            mean,
            diagonal,
        })
    }

    /// μ.
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }
}

impl<T: Real> GramOperator for SparseGram<'_, T> {
    fn n_features(&self) -> usize {
        self.x.ncols
    }

    fn apply(&self, w: &DMatrix<f64>) -> DMatrix<f64> {
        let (m, b) = w.shape();
        let y_rows = self.x.centred_product_rows(w, &self.mean);
        // 1ᵀY, in row order.
        let mut column_sums = vec![0.0f64; b];
        for yi in y_rows.chunks(b.max(1)) {
            for (s, &v) in column_sums.iter_mut().zip(yi) {
                *s += v;
            }
        }
        let mut z = vec![0.0f64; m * b];
        z.par_chunks_mut(b.max(1)).enumerate().for_each(|(j, zj)| {
            let (rows, vals) = self.columns.column(j);
            for (&i, &v) in rows.iter().zip(vals) {
                let yi = &y_rows[i as usize * b..(i as usize + 1) * b];
                let v = v.as_f64();
                for (acc, &x) in zj.iter_mut().zip(yi) {
                    *acc += v * x;
                }
            }
            let mu = self.mean[j];
            for (acc, &s) in zj.iter_mut().zip(&column_sums) {
                *acc -= mu * s;
            }
        });
        DMatrix::from_row_slice(m, b, &z)
    }

    fn diagonal(&self) -> Vec<f64> {
        self.diagonal.clone()
    }
}
