//! AnnData `.h5ad` files: one matrix of the file (`X`, `raw.X` or a layer), dense or CSR/CSC, with an
//! optional boolean column of its `var` table as a feature mask. Built with the crate's `h5ad` feature
//! (the HDF5 C library through hdf5-metno); without it, [`H5adFile::open`] says how to get it.
//!
//! Both layouts AnnData has written are read: the current one (anndata ≥ 0.7: `encoding-type`
//! attributes, `raw/X`, `var` as a group of column datasets, nullable booleans as `values` + `mask`) and
//! the legacy one (`raw.X` with `h5sparse_format` attributes, `var` as one compound dataset), in which
//! scanpy still ships its example data.

use super::Precision;
use std::str::FromStr;

/// Which matrix of an AnnData file to read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum H5adMatrix {
    /// `X` (what scanpy's `pca` reads by default).
    #[default]
    X,
    /// The raw counts: `raw/X` (or `raw.X` in files of anndata < 0.7), with `raw/var` as its var table.
    Raw,
    /// `layers/NAME`, with `var` as its var table.
    Layer(String),
}

impl H5adMatrix {
    /// The name as [`FromStr`] takes it: `X`, `raw` or `layers/NAME`.
    pub fn name(&self) -> String {
        match self {
            H5adMatrix::X => "X".into(),
            H5adMatrix::Raw => "raw".into(),
            H5adMatrix::Layer(name) => format!("layers/{name}"),
        }
    }
}

impl FromStr for H5adMatrix {
    type Err = String;
    /// `X`; `raw` (also `raw.X`, `raw/X`); a layer as `layers/NAME` or `NAME`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "" => Err("an empty matrix name: use X, raw or a layer's name".into()),
            "X" => Ok(H5adMatrix::X),
            "raw" | "raw.X" | "raw/X" => Ok(H5adMatrix::Raw),
            _ => {
                let name = s.strip_prefix("layers/").unwrap_or(s);
                if name.is_empty() || name.contains('/') {
                    Err(format!("{s:?} is not a layer name"))
                } else {
                    Ok(H5adMatrix::Layer(name.to_string()))
                }
            }
        }
    }
}

/// What to read from an `.h5ad` file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct H5adOptions {
    /// The matrix (default `X`).
    pub matrix: H5adMatrix,
    /// A boolean column of the matrix's var table (e.g. `highly_variable`): only the features where it
    /// is true are read, in their order.
    pub var_mask: Option<String>,
}

/// How the matrix is stored.
#[cfg_attr(not(feature = "h5ad"), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    Dense,
    Csr,
    Csc,
}

#[cfg(feature = "h5ad")]
pub use enabled::H5adFile;

#[cfg(not(feature = "h5ad"))]
pub use disabled::H5adFile;

/// The precision that holds every value of an HDF5 number type exactly (as [`Precision`] says for .npy).
#[cfg_attr(not(feature = "h5ad"), allow(dead_code))]
fn precision_of(bytes: usize, float: bool) -> Precision {
    match (float, bytes) {
        (true, ..=4) | (false, ..=2) => Precision::F32,
        _ => Precision::F64,
    }
}

#[cfg(feature = "h5ad")]
mod enabled {
    use super::{precision_of, H5adMatrix, H5adOptions, Layout};
    use crate::io::error::SizeContext;
    use crate::io::{IoError, Precision, Result};
    use crate::{CsrMatrix, Real};
    use hdf5::types::{FloatSize, IntSize, TypeDescriptor, VarLenAscii, VarLenUnicode};
    use hdf5::{Dataset, Group, Location};
    use hdf5_metno as hdf5;
    use std::path::{Path, PathBuf};

    /// Values (or indices) read from the file per HDF5 call: bounded temporaries (8 MiB as f64). The
    /// whole-matrix arrays (read_csr's, the CSR row offsets, the mask) are checked before allocation.
    const READ_BLOCK: usize = 1 << 20;

    /// An `.h5ad` file opened on one of its matrices: the shape, type and feature mask are read and
    /// checked by [`open`](H5adFile::open); the values by [`read_csr`](H5adFile::read_csr) (sparse
    /// matrices) or in row blocks through a [`Reader`](crate::io::Reader) (any layout).
    pub struct H5adFile {
        path: PathBuf,
        location: String,
        layout: Layout,
        /// The dense dataset, or the sparse matrix's `data`.
        values: Dataset,
        /// The sparse matrix's `indices` and `indptr`.
        index: Option<(Dataset, Dataset)>,
        rows: usize,
        file_cols: usize,
        /// The new column of each file column (None: masked out); None without a mask.
        keep: Option<Vec<Option<u32>>>,
        cols: usize,
        dtype: String,
        precision: Precision,
        /// CSR row offsets, read on the first row block (CSR layout).
        row_offsets: Option<Vec<usize>>,
        /// The whole matrix as CSR, made on the first row block (CSC layout).
        as_csr: Option<CsrMatrix<f64>>,
    }

    impl std::fmt::Debug for H5adFile {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("H5adFile")
                .field("path", &self.path)
                .field("location", &self.location)
                .field("layout", &self.layout)
                .field("rows", &self.rows)
                .field("cols", &self.cols)
                .field("dtype", &self.dtype)
                .finish()
        }
    }

    fn h5_error(path: &Path, what: &str, e: hdf5::Error) -> IoError {
        IoError::invalid(path, format!("{what}: {e}"))
    }

    /// A string attribute, whichever string type h5py gave it.
    fn string_attr(loc: &Location, name: &str) -> Option<String> {
        let attr = loc.attr(name).ok()?;
        if let Ok(s) = attr.read_scalar::<VarLenUnicode>() {
            return Some(s.as_str().to_string());
        }
        if let Ok(s) = attr.read_scalar::<VarLenAscii>() {
            return Some(s.as_str().to_string());
        }
        None
    }

    /// A 2-element non-negative integer attribute (a sparse matrix's shape).
    fn shape_attr(path: &Path, loc: &Location, name: &str) -> Result<Option<(usize, usize)>> {
        let Ok(attr) = loc.attr(name) else {
            return Ok(None);
        };
        if attr.size() != 2 {
            return Err(IoError::invalid(
                path,
                format!("attribute {name} has {} values, a shape has 2", attr.size()),
            ));
        }
        let v = attr
            .read_raw::<i64>()
            .map_err(|e| h5_error(path, name, e))?;
        match (usize::try_from(v[0]), usize::try_from(v[1])) {
            (Ok(r), Ok(c)) => Ok(Some((r, c))),
            _ => Err(IoError::invalid(
                path,
                format!("attribute {name} is [{}, {}]: a negative size", v[0], v[1]),
            )),
        }
    }

    /// The type's name and the precision that keeps its values, or why it is not a number type.
    fn number_type(path: &Path, what: &str, ds: &Dataset) -> Result<(String, Precision)> {
        let desc = ds
            .dtype()
            .and_then(|t| t.to_descriptor())
            .map_err(|e| h5_error(path, what, e))?;
        let int_bytes = |s: IntSize| match s {
            IntSize::U1 => 1,
            IntSize::U2 => 2,
            IntSize::U4 => 4,
            IntSize::U8 => 8,
        };
        let (name, precision) = match desc {
            TypeDescriptor::Float(FloatSize::U4) => ("float32".to_string(), Precision::F32),
            TypeDescriptor::Float(FloatSize::U8) => ("float64".to_string(), Precision::F64),
            TypeDescriptor::Integer(s) => {
                let b = int_bytes(s);
                (format!("int{}", 8 * b), precision_of(b, false))
            }
            TypeDescriptor::Unsigned(s) => {
                let b = int_bytes(s);
                (format!("uint{}", 8 * b), precision_of(b, false))
            }
            other => {
                return Err(IoError::unsupported(
                    path,
                    format!("{other}"),
                    format!("{what} must hold numbers (float or integer)"),
                ))
            }
        };
        Ok((name, precision))
    }

    fn one_dim(path: &Path, group: &Group, location: &str, name: &str) -> Result<Dataset> {
        let ds = group.dataset(name).map_err(|_| {
            IoError::invalid(
                path,
                format!("{location} is stored sparse but has no dataset {name:?}"),
            )
        })?;
        if ds.ndim() != 1 {
            return Err(IoError::invalid(
                path,
                format!("{location}/{name} has {} dimensions, not 1", ds.ndim()),
            ));
        }
        Ok(ds)
    }

    /// Reads `ds[range]` as f64, in blocks of [`READ_BLOCK`], handing each value to `each`.
    fn for_each_value(
        path: &Path,
        what: &str,
        ds: &Dataset,
        range: std::ops::Range<usize>,
        mut each: impl FnMut(f64) -> Result<()>,
    ) -> Result<()> {
        let mut at = range.start;
        while at < range.end {
            let end = range.end.min(at + READ_BLOCK);
            let block = ds
                .read_slice_1d::<f64, _>(at..end)
                .map_err(|e| h5_error(path, what, e))?;
            for &v in block.iter() {
                each(v)?;
            }
            at = end;
        }
        Ok(())
    }

    /// Reads an index array (indices or indptr) as usize, each checked to be an integer in `0..=max`.
    fn read_indices(
        path: &Path,
        what: &str,
        ds: &Dataset,
        range: std::ops::Range<usize>,
        max: usize,
    ) -> Result<Vec<usize>> {
        let mut out = Vec::new();
        crate::alloc::reserve(&mut out, range.len(), || {
            format!("{} entries of {what}", range.len())
        })
        .allocating(path)?;
        let mut at = range.start;
        for_each_value(path, what, ds, range, |v| {
            if !(v >= 0.0 && v <= max as f64 && v.fract() == 0.0) {
                return Err(IoError::invalid(
                    path,
                    format!("{what}[{at}] is {v}: not an index in 0..={max}"),
                ));
            }
            out.push(v as usize);
            at += 1;
            Ok(())
        })?;
        Ok(out)
    }

    /// Checks that offsets run from 0 to `nnz` without decreasing.
    fn check_offsets(path: &Path, what: &str, offsets: &[usize], nnz: usize) -> Result<()> {
        if offsets.first() != Some(&0) || offsets.last() != Some(&nnz) {
            return Err(IoError::invalid(
                path,
                format!(
                    "{what} runs from {:?} to {:?}; it must run from 0 to the number of entries, {nnz}",
                    offsets.first(),
                    offsets.last()
                ),
            ));
        }
        if let Some(i) = (1..offsets.len()).find(|&i| offsets[i] < offsets[i - 1]) {
            return Err(IoError::invalid(
                path,
                format!("{what} decreases at {i}: offsets must not decrease"),
            ));
        }
        Ok(())
    }

    impl H5adFile {
        /// Opens `path` on the matrix `options` names, and reads its mask (if any): the shape, the
        /// layout and the value type are checked here, the values are read later.
        pub fn open(path: impl AsRef<Path>, options: &H5adOptions) -> Result<H5adFile> {
            let path = path.as_ref();
            if path.is_dir() {
                return Err(IoError::open(
                    path,
                    std::io::Error::other("it is a directory"),
                ));
            }
            std::fs::metadata(path).map_err(|e| IoError::open(path, e))?;
            let file = hdf5::File::open(path).map_err(|e| {
                IoError::bad_header(path, ".h5ad", format!("not an HDF5 file ({e})"))
            })?;
            let (location, var) = match &options.matrix {
                H5adMatrix::X => ("X".to_string(), "var".to_string()),
                H5adMatrix::Raw if file.link_exists("raw") && file.link_exists("raw/X") => {
                    ("raw/X".to_string(), "raw/var".to_string())
                }
                H5adMatrix::Raw => ("raw.X".to_string(), "raw.var".to_string()),
                H5adMatrix::Layer(name) => (format!("layers/{name}"), "var".to_string()),
            };
            if !file.link_exists(&location) {
                let mut detail = format!("the file has no {location}");
                if let H5adMatrix::Layer(_) = options.matrix {
                    let layers = file
                        .group("layers")
                        .and_then(|g| g.member_names())
                        .unwrap_or_default();
                    detail += &format!("; its layers: {layers:?}");
                }
                return Err(IoError::not_a_matrix(path, detail));
            }
            let (layout, values, index, rows, file_cols) = if let Ok(ds) = file.dataset(&location) {
                let shape = ds.shape();
                if shape.len() != 2 {
                    return Err(IoError::not_a_matrix(
                        path,
                        format!("{location} has {} dimensions, not 2", shape.len()),
                    ));
                }
                (Layout::Dense, ds, None, shape[0], shape[1])
            } else {
                let group = file
                    .group(&location)
                    .map_err(|e| h5_error(path, &location, e))?;
                let shape = match shape_attr(path, &group, "shape")? {
                    Some(s) => s,
                    None => shape_attr(path, &group, "h5sparse_shape")?.ok_or_else(|| {
                        IoError::not_a_matrix(
                            path,
                            format!(
                                "{location} is a group without a shape attribute: neither a CSR \
                                 nor a CSC matrix"
                            ),
                        )
                    })?,
                };
                let data = one_dim(path, &group, &location, "data")?;
                let indices = one_dim(path, &group, &location, "indices")?;
                let indptr = one_dim(path, &group, &location, "indptr")?;
                if data.size() != indices.size() {
                    return Err(IoError::invalid(
                        path,
                        format!(
                            "{location} has {} values but {} indices",
                            data.size(),
                            indices.size()
                        ),
                    ));
                }
                // CSR has an offset per row, CSC per column. Only a square matrix needs the format's
                // name, a variable-length string: HDF5 1.10 can crash reading one from a corrupt file
                // (its global heap is not checked), so it is read only then.
                let offsets = indptr.size();
                let layout = match (
                    offsets == shape.0.saturating_add(1),
                    offsets == shape.1.saturating_add(1),
                ) {
                    (true, false) => Layout::Csr,
                    (false, true) => Layout::Csc,
                    (true, true) => {
                        let encoding = string_attr(&group, "encoding-type");
                        let legacy = string_attr(&group, "h5sparse_format");
                        match (encoding.as_deref(), legacy.as_deref()) {
                            (Some("csr_matrix"), _) | (None, Some("csr")) => Layout::Csr,
                            (Some("csc_matrix"), _) | (None, Some("csc")) => Layout::Csc,
                            _ => {
                                return Err(IoError::not_a_matrix(
                                    path,
                                    format!(
                                        "{location} is neither a CSR nor a CSC matrix \
                                         (encoding-type {encoding:?}, h5sparse_format {legacy:?})"
                                    ),
                                ))
                            }
                        }
                    }
                    (false, false) => {
                        return Err(IoError::invalid(
                            path,
                            format!(
                            "{location}/indptr has {offsets} offsets: a {} x {} matrix needs {} \
                                 (CSR) or {} (CSC)",
                            shape.0,
                            shape.1,
                            shape.0.saturating_add(1),
                            shape.1.saturating_add(1)
                        ),
                        ))
                    }
                };
                (layout, data, Some((indices, indptr)), shape.0, shape.1)
            };
            if file_cols > u32::MAX as usize {
                return Err(IoError::too_large(
                    path,
                    format!("{file_cols} features: at most 2^32 - 1 are read"),
                ));
            }
            // A CSC matrix's row indices are kept as 32-bit while it is transposed.
            if layout == Layout::Csc && rows > u32::MAX as usize {
                return Err(IoError::too_large(
                    path,
                    format!("a CSC matrix of {rows} rows: at most 2^32 - 1 are read"),
                ));
            }
            let (type_name, precision) = number_type(path, &location, &values)?;
            let keep = match &options.var_mask {
                None => None,
                Some(column) => Some(read_mask(path, &file, &var, column, file_cols)?),
            };
            let cols = keep
                .as_ref()
                .map_or(file_cols, |k| k.iter().filter(|c| c.is_some()).count());
            if keep.is_some() && cols == 0 {
                return Err(IoError::invalid(
                    path,
                    format!(
                        "{var}/{} is false for every feature",
                        options.var_mask.as_deref().unwrap_or_default()
                    ),
                ));
            }
            let layout_name = match layout {
                Layout::Dense => "dense".to_string(),
                Layout::Csr => format!("CSR, {} stored entries", values.size()),
                Layout::Csc => format!("CSC, {} stored entries", values.size()),
            };
            let mut dtype = format!("{location}: {type_name}, {layout_name}");
            if let Some(column) = &options.var_mask {
                dtype += &format!(", {cols} of {file_cols} features ({var}/{column})");
            }
            Ok(H5adFile {
                path: path.to_path_buf(),
                location,
                layout,
                values,
                index,
                rows,
                file_cols,
                keep,
                cols,
                dtype,
                precision,
                row_offsets: None,
                as_csr: None,
            })
        }

        /// Observations (rows; samples).
        pub fn rows(&self) -> usize {
            self.rows
        }
        /// Features read (the columns the mask keeps).
        pub fn cols(&self) -> usize {
            self.cols
        }
        /// Whether the matrix is stored sparse (CSR or CSC).
        pub fn is_sparse(&self) -> bool {
            self.layout != Layout::Dense
        }
        /// The float type that holds every value exactly (f32 for float32 and 8- and 16-bit integers).
        pub fn precision(&self) -> Precision {
            self.precision
        }
        /// Where the matrix is, its type and layout, and the mask: e.g. `raw/X: float32, CSR, 174400
        /// stored entries`.
        pub fn dtype(&self) -> &str {
            &self.dtype
        }
        /// The file's path.
        pub fn path(&self) -> &Path {
            &self.path
        }

        /// The new column of file column `j`, checked against the file's width.
        fn column(&self, j: usize, at: usize) -> Result<Option<u32>> {
            if j >= self.file_cols {
                return Err(IoError::invalid(
                    &self.path,
                    format!(
                        "{}/indices[{at}] is {j}: not a column of the {} x {} matrix",
                        self.location, self.rows, self.file_cols
                    ),
                ));
            }
            Ok(match &self.keep {
                None => Some(j as u32),
                Some(k) => k[j],
            })
        }

        fn indices(&self) -> (&Dataset, &Dataset) {
            let (indices, indptr) = self.index.as_ref().expect("a sparse layout");
            (indices, indptr)
        }

        /// The sparse matrix (CSR or CSC in the file) as a canonical [`CsrMatrix`], values rounded to
        /// `T` (exact when `T` is [`precision`](Self::precision)'s type or wider), masked features
        /// dropped. A dense matrix is refused (read it through a [`Reader`](crate::io::Reader)).
        pub fn read_csr<T: Real>(&self) -> Result<CsrMatrix<T>> {
            let path = &self.path;
            let nnz = self.values.size();
            let (indices, indptr) = match self.layout {
                Layout::Dense => {
                    return Err(IoError::invalid(
                        path,
                        format!("{} is dense, not sparse", self.location),
                    ))
                }
                _ => self.indices(),
            };
            let loc = &self.location;
            let what_ptr = format!("{loc}/indptr");
            let offsets = read_indices(path, &what_ptr, indptr, 0..indptr.size(), nnz)?;
            check_offsets(path, &what_ptr, &offsets, nnz)?;
            // The kept entries' values, and their columns (CSR) or rows (CSC).
            let mut vals = Vec::<T>::new();
            crate::alloc::reserve(&mut vals, nnz, || format!("{nnz} values")).allocating(path)?;
            let (mut cols, mut majors) = (Vec::new(), Vec::new());
            let minor_index = if self.layout == Layout::Csr {
                &mut cols
            } else {
                &mut majors
            };
            crate::alloc::reserve(minor_index, nnz, || format!("{nnz} indices"))
                .allocating(path)?;
            let mut new_offsets = Vec::new();
            crate::alloc::reserve(&mut new_offsets, offsets.len(), || {
                format!("{} offsets", offsets.len())
            })
            .allocating(path)?;
            new_offsets.push(0usize);
            let minor_max = if self.layout == Layout::Csr {
                self.file_cols
            } else {
                self.rows
            };
            let what_idx = format!("{loc}/indices");
            let what_val = format!("{loc}/data");
            // Walk the major slices in order, reading indices and values in blocks of the same span.
            let mut major = 0usize;
            let mut at = 0usize;
            while at < nnz {
                let end = nnz.min(at + READ_BLOCK);
                let idx = read_indices(path, &what_idx, indices, at..end, minor_max)?;
                let mut v = Vec::with_capacity(end - at);
                for_each_value(path, &what_val, &self.values, at..end, |x| {
                    v.push(x);
                    Ok(())
                })?;
                for (p, (&i, &x)) in idx.iter().zip(&v).enumerate() {
                    let p = at + p;
                    while offsets[major + 1] <= p {
                        new_offsets.push(vals.len());
                        major += 1;
                    }
                    match self.layout {
                        Layout::Csr => {
                            if let Some(j) = self.column(i, p)? {
                                cols.push(j);
                                vals.push(T::of_f64(x));
                            }
                        }
                        _ => {
                            if i >= self.rows {
                                return Err(IoError::invalid(
                                    path,
                                    format!(
                                        "{what_idx}[{p}] is {i}: not a row of {} rows",
                                        self.rows
                                    ),
                                ));
                            }
                            if let Some(&Some(_)) | None = self.keep.as_ref().map(|k| &k[major]) {
                                majors.push(i as u32);
                                vals.push(T::of_f64(x));
                            }
                        }
                    }
                }
                at = end;
            }
            while new_offsets.len() < offsets.len() {
                new_offsets.push(vals.len());
            }
            let csr = match self.layout {
                Layout::Csr => CsrMatrix::try_new(self.rows, self.cols, new_offsets, cols, vals),
                _ => {
                    // The kept columns' entries, column after column: transposed by a counting sort
                    // on the row, so that each row's entries come in column order.
                    let (indptr, cols, vals) = transpose_to_csr(
                        self.rows,
                        self.keep.as_deref(),
                        &new_offsets,
                        &majors,
                        vals,
                        path,
                    )?;
                    CsrMatrix::try_new(self.rows, self.cols, indptr, cols, vals)
                }
            };
            csr.map_err(|e| IoError::invalid(path, format!("{loc}: {e}")))
        }

        /// Appends rows `start..start + take` (as `cols()` values each, masked) to `out`.
        pub(crate) fn read_rows<T: Real>(
            &mut self,
            start: usize,
            take: usize,
            out: &mut Vec<T>,
        ) -> Result<()> {
            let path = self.path.clone();
            match self.layout {
                Layout::Dense => {
                    // Reads of at most READ_BLOCK file values, however few columns the mask keeps:
                    // blocks of whole rows, or a row in slices of columns when one row is wider.
                    let file_cols = self.file_cols.max(1);
                    let (rows_per, cols_per) = if file_cols <= READ_BLOCK {
                        (READ_BLOCK / file_cols, file_cols)
                    } else {
                        (1, READ_BLOCK)
                    };
                    let mut at = start;
                    while at < start + take {
                        let end = (start + take).min(at + rows_per);
                        let mut c0 = 0;
                        // One slice of columns for a block of rows; several only for a single row.
                        while c0 < self.file_cols {
                            let c1 = self.file_cols.min(c0 + cols_per);
                            let block = self
                                .values
                                .read_slice_2d::<f64, _>((at..end, c0..c1))
                                .map_err(|e| h5_error(&path, &self.location, e))?;
                            for row in block.rows() {
                                for (j, &v) in (c0..c1).zip(row.iter()) {
                                    if self.keep.as_ref().is_none_or(|k| k[j].is_some()) {
                                        out.push(T::of_f64(v));
                                    }
                                }
                            }
                            c0 = c1;
                        }
                        at = end;
                    }
                }
                Layout::Csr => {
                    if self.row_offsets.is_none() {
                        let (_, indptr) = self.indices();
                        let what = format!("{}/indptr", self.location);
                        let nnz = self.values.size();
                        let offsets = read_indices(&path, &what, indptr, 0..indptr.size(), nnz)?;
                        check_offsets(&path, &what, &offsets, nnz)?;
                        self.row_offsets = Some(offsets);
                    }
                    let offsets = self.row_offsets.as_ref().expect("just read");
                    let (from, to) = (offsets[start], offsets[start + take]);
                    // Summed in f64 and rounded once, as read_csr's canonical form does.
                    let mut block = crate::alloc::filled(
                        || format!("{take} rows of {} values", self.cols),
                        take.checked_mul(self.cols),
                        None,
                        0f64,
                    )
                    .allocating(&path)?;
                    let (indices, _) = self.indices();
                    let what_idx = format!("{}/indices", self.location);
                    let idx = read_indices(&path, &what_idx, indices, from..to, self.file_cols)?;
                    let mut row = start;
                    let mut p = from;
                    let what_val = format!("{}/data", self.location);
                    for_each_value(&path, &what_val, &self.values, from..to, |x| {
                        while offsets[row + 1] <= p {
                            row += 1;
                        }
                        if let Some(j) = self.column(idx[p - from], p)? {
                            block[(row - start) * self.cols + j as usize] += x;
                        }
                        p += 1;
                        Ok(())
                    })?;
                    out.extend(block.iter().map(|&v| T::of_f64(v)));
                }
                Layout::Csc => {
                    if self.as_csr.is_none() {
                        self.as_csr = Some(self.read_csr::<f64>()?);
                    }
                    let x = self.as_csr.as_ref().expect("just read");
                    let base = out.len();
                    out.resize(base + take * self.cols, T::zero());
                    for r in 0..take {
                        let (cols, vals) = x.row(start + r);
                        for (&j, &v) in cols.iter().zip(vals) {
                            out[base + r * self.cols + j as usize] = T::of_f64(v);
                        }
                    }
                }
            }
            Ok(())
        }
    }

    /// A CSC matrix's kept columns as CSR arrays: `offsets` has one slice of the kept entries per file
    /// column (empty for a masked one), `keep` the new column of each file column (None: no mask).
    fn transpose_to_csr<T: Real>(
        rows: usize,
        keep: Option<&[Option<u32>]>,
        offsets: &[usize],
        row_of: &[u32],
        vals: Vec<T>,
        path: &Path,
    ) -> Result<(Vec<usize>, Vec<u32>, Vec<T>)> {
        let nnz = row_of.len();
        let mut indptr = crate::alloc::filled(
            || format!("{rows} row offsets"),
            rows.checked_add(1),
            None,
            0,
        )
        .allocating(path)?;
        for &i in row_of {
            indptr[i as usize + 1] += 1;
        }
        for i in 0..rows {
            indptr[i + 1] += indptr[i];
        }
        let mut next = indptr.clone();
        let mut cols = crate::alloc::filled(|| format!("{nnz} column indices"), Some(nnz), None, 0)
            .allocating(path)?;
        let mut out = crate::alloc::filled(|| format!("{nnz} values"), Some(nnz), None, T::zero())
            .allocating(path)?;
        for j in 0..offsets.len() - 1 {
            let Some(c) = keep.map_or(Some(j as u32), |k| k[j]) else {
                continue;
            };
            for p in offsets[j]..offsets[j + 1] {
                let i = row_of[p] as usize;
                cols[next[i]] = c;
                out[next[i]] = vals[p];
                next[i] += 1;
            }
        }
        Ok((indptr, cols, out))
    }

    /// The mask of `var_frame/column`: the new index of each kept feature.
    fn read_mask(
        path: &Path,
        file: &hdf5::File,
        var_frame: &str,
        column: &str,
        file_cols: usize,
    ) -> Result<Vec<Option<u32>>> {
        let what = format!("{var_frame}/{column}");
        // One byte per feature, 0 or 1.
        let values: Vec<u8> = if let Ok(frame) = file.group(var_frame) {
            // Current layout: one dataset (or a nullable group) per column.
            if !frame.link_exists(column) {
                let columns = frame.member_names().unwrap_or_default();
                return Err(IoError::invalid(
                    path,
                    format!("{var_frame} has no column {column:?}; its members: {columns:?}"),
                ));
            }
            if let Ok(ds) = frame.dataset(column) {
                read_bools(path, &what, &ds, file_cols)?
            } else {
                // A nullable boolean (`values` and `mask`), known by its members rather than its
                // encoding-type string (see the sparse layouts above).
                let g = frame.group(column).map_err(|e| h5_error(path, &what, e))?;
                if !(g.link_exists("values") && g.link_exists("mask")) {
                    return Err(IoError::invalid(
                        path,
                        format!("{what} is not a boolean column (a group without values and mask)"),
                    ));
                }
                let values = g.dataset("values").map_err(|e| h5_error(path, &what, e))?;
                let missing = g.dataset("mask").map_err(|e| h5_error(path, &what, e))?;
                let values = read_bools(path, &what, &values, file_cols)?;
                let missing = read_bools(path, &format!("{what}/mask"), &missing, file_cols)?;
                if let Some(j) = missing.iter().position(|&m| m == 1) {
                    return Err(IoError::invalid(
                        path,
                        format!("{what} is missing at feature {j}: a mask must be true or false"),
                    ));
                }
                values
            }
        } else if let Ok(table) = file.dataset(var_frame) {
            // Legacy layout: one compound dataset, a field per column.
            read_compound_bools(path, &what, &table, column, file_cols)?
        } else {
            return Err(IoError::invalid(
                path,
                format!("the file has no var table {var_frame} for the mask"),
            ));
        };
        let mut kept = crate::alloc::filled(
            || format!("the mask of {file_cols} features"),
            Some(file_cols),
            None,
            None,
        )
        .allocating(path)?;
        let mut next = 0u32;
        for (slot, &keep) in kept.iter_mut().zip(&values) {
            if keep == 1 {
                *slot = Some(next);
                next += 1;
            }
        }
        Ok(kept)
    }

    /// A 1-D boolean dataset of `len` values.
    fn read_bools(path: &Path, what: &str, ds: &Dataset, len: usize) -> Result<Vec<u8>> {
        let desc = ds
            .dtype()
            .and_then(|t| t.to_descriptor())
            .map_err(|e| h5_error(path, what, e))?;
        if desc != TypeDescriptor::Boolean {
            return Err(IoError::invalid(
                path,
                format!("{what} holds {desc}, not booleans"),
            ));
        }
        if ds.ndim() != 1 || ds.size() != len {
            return Err(IoError::invalid(
                path,
                format!(
                    "{what} has shape {:?}; the matrix has {len} features",
                    ds.shape()
                ),
            ));
        }
        let memory = hdf5::Datatype::from_descriptor(&TypeDescriptor::Boolean)
            .map_err(|e| h5_error(path, what, e))?;
        read_bool_bytes(path, what, ds, &memory, len)
    }

    /// Reads `len` one-byte booleans of `ds` through the memory type `memory` (hdf5's boolean, or a
    /// compound of one boolean field) into checked memory, as bytes 0 (FALSE) or 1 (TRUE): any other
    /// byte is an error (it is never taken for a Rust `bool`, which may only hold those two).
    fn read_bool_bytes(
        path: &Path,
        what: &str,
        ds: &Dataset,
        memory: &hdf5::Datatype,
        len: usize,
    ) -> Result<Vec<u8>> {
        if memory.size() != 1 {
            return Err(IoError::invalid(
                path,
                format!("{what}: a boolean of {} bytes", memory.size()),
            ));
        }
        let mut out =
            crate::alloc::filled(|| format!("{len} booleans of {what}"), Some(len), None, 0u8)
                .allocating(path)?;
        // SAFETY: `out` holds `len` one-byte values of the memory type (checked above), the file
        // space is the dataset's `len` records (checked by the callers); the ids are live for the call.
        let status = hdf5::sync::sync(|| unsafe {
            hdf5_metno_sys::h5d::H5Dread(
                ds.id(),
                memory.id(),
                hdf5_metno_sys::h5s::H5S_ALL,
                hdf5_metno_sys::h5s::H5S_ALL,
                hdf5_metno_sys::h5p::H5P_DEFAULT,
                out.as_mut_ptr().cast(),
            )
        });
        if status < 0 {
            return Err(IoError::invalid(
                path,
                format!("{what}: HDF5 could not read the booleans"),
            ));
        }
        if let Some(j) = out.iter().position(|&b| b > 1) {
            return Err(IoError::invalid(
                path,
                format!("{what}[{j}] is the byte {}: not a boolean (0 or 1)", out[j]),
            ));
        }
        Ok(out)
    }

    /// One boolean field of a 1-D compound dataset of `len` records (anndata < 0.7's var table).
    fn read_compound_bools(
        path: &Path,
        what: &str,
        table: &Dataset,
        field: &str,
        len: usize,
    ) -> Result<Vec<u8>> {
        use hdf5::types::{CompoundField, CompoundType};
        let desc = table
            .dtype()
            .and_then(|t| t.to_descriptor())
            .map_err(|e| h5_error(path, what, e))?;
        let TypeDescriptor::Compound(compound) = desc else {
            return Err(IoError::invalid(
                path,
                format!("{what}: the var table is neither a group nor a compound dataset"),
            ));
        };
        let Some(f) = compound.fields.iter().find(|f| f.name == field) else {
            let names: Vec<&str> = compound.fields.iter().map(|f| f.name.as_str()).collect();
            return Err(IoError::invalid(
                path,
                format!("the var table has no column {field:?}; its columns: {names:?}"),
            ));
        };
        if f.ty != TypeDescriptor::Boolean {
            return Err(IoError::invalid(
                path,
                format!("{what} holds {}, not booleans", f.ty),
            ));
        }
        if table.ndim() != 1 || table.size() != len {
            return Err(IoError::invalid(
                path,
                format!(
                    "{what} has shape {:?}; the matrix has {len} features",
                    table.shape()
                ),
            ));
        }
        // A memory type of that one field: HDF5 converts a compound into a subset of its fields by name.
        let memory = hdf5::Datatype::from_descriptor(&TypeDescriptor::Compound(CompoundType {
            fields: vec![CompoundField {
                name: field.to_string(),
                ty: TypeDescriptor::Boolean,
                offset: 0,
                index: 0,
            }],
            size: std::mem::size_of::<bool>(),
        }))
        .map_err(|e| h5_error(path, what, e))?;
        read_bool_bytes(path, what, table, &memory, len)
    }
}

#[cfg(not(feature = "h5ad"))]
mod disabled {
    use super::H5adOptions;
    use crate::io::{IoError, Precision, Result};
    use crate::{CsrMatrix, Real};
    use std::path::Path;

    /// An `.h5ad` file opened on one of its matrices. This build has no HDF5 (the crate's `h5ad`
    /// feature is off): [`open`](H5adFile::open) fails and says how to build with it.
    #[derive(Debug)]
    pub struct H5adFile {
        never: std::convert::Infallible,
    }

    impl H5adFile {
        /// Fails: this build reads no `.h5ad` files.
        pub fn open(path: impl AsRef<Path>, _options: &H5adOptions) -> Result<H5adFile> {
            Err(IoError::unsupported(
                path.as_ref(),
                "HDF5",
                "this laepca was built without .h5ad support: install HDF5 (Debian: libhdf5-dev) \
                 and build with `--features h5ad`",
            ))
        }
        /// Observations (rows; samples).
        pub fn rows(&self) -> usize {
            match self.never {}
        }
        /// Features read (the columns the mask keeps).
        pub fn cols(&self) -> usize {
            match self.never {}
        }
        /// Whether the matrix is stored sparse (CSR or CSC).
        pub fn is_sparse(&self) -> bool {
            match self.never {}
        }
        /// The float type that holds every value exactly.
        pub fn precision(&self) -> Precision {
            match self.never {}
        }
        /// Where the matrix is, its type and layout, and the mask.
        pub fn dtype(&self) -> &str {
            match self.never {}
        }
        /// The file's path.
        pub fn path(&self) -> &Path {
            match self.never {}
        }
        /// The sparse matrix as a canonical [`CsrMatrix`].
        pub fn read_csr<T: Real>(&self) -> Result<CsrMatrix<T>> {
            match self.never {}
        }
        pub(crate) fn read_rows<T: Real>(
            &mut self,
            _: usize,
            _: usize,
            _: &mut Vec<T>,
        ) -> Result<()> {
            match self.never {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_names_parse() {
        assert_eq!("X".parse::<H5adMatrix>(), Ok(H5adMatrix::X));
        assert_eq!("raw".parse::<H5adMatrix>(), Ok(H5adMatrix::Raw));
        assert_eq!("raw.X".parse::<H5adMatrix>(), Ok(H5adMatrix::Raw));
        assert_eq!(
            "layers/counts".parse::<H5adMatrix>(),
            Ok(H5adMatrix::Layer("counts".into()))
        );
        assert_eq!(
            "counts".parse::<H5adMatrix>(),
            Ok(H5adMatrix::Layer("counts".into()))
        );
        assert!("".parse::<H5adMatrix>().is_err());
        assert!("layers/".parse::<H5adMatrix>().is_err());
        assert!("a/b".parse::<H5adMatrix>().is_err());
        assert_eq!(H5adMatrix::Layer("c".into()).name(), "layers/c");
        assert_eq!(precision_of(4, true), Precision::F32);
        assert_eq!(precision_of(8, true), Precision::F64);
        assert_eq!(precision_of(2, false), Precision::F32);
        assert_eq!(precision_of(4, false), Precision::F64);
    }
}
