//! The operator route on the GPU: a sparse X held on the device in row panels, X's and Xᵀ's, that
//! shaders/sparse.wgsl multiplies by (the engine's `c_mul`, in src/gpu/engine.rs). C is never formed.
//!
//! [`SparseLayout::plan`] decides, before anything is allocated, whether X fits: every panel within
//! one storage binding, the products' n x k intermediate too, and on a software adapter its memory
//! (the host's) and every kernel invocation's loop within [`JACOBI_DISPATCH_BUDGET`] iterations
//! (llvmpipe silently ends longer loops). The fit runs the operator route on the CPU otherwise.

use super::engine::JACOBI_DISPATCH_BUDGET;
use super::{padded, GpuContext};
use crate::error::{Error, Result};
use crate::sparse::PackedPanels;
use wgpu::BufferUsages as U;

/// The most the data's means may outweigh its spread, `n·Σμ² / Σ(x − μ)²`, on the GPU: its f32
/// products subtract the means implicitly, losing about half the decimal digits of this ratio (here
/// ~2 of f32's 7). Data beyond it runs the operator route on the CPU, in f64.
pub(crate) const MAX_MEAN_WEIGHT: f64 = 1e4;

/// Rows `row0..row0 + rows` of a sparse matrix, `entries` of them stored, in one buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PanelRange {
    pub row0: usize,
    pub rows: usize,
    pub entries: usize,
}

impl PanelRange {
    /// Its u32 words: the row offsets, the indices, the values.
    fn words(&self) -> u64 {
        (self.rows as u64 + 1) + 2 * self.entries as u64
    }
}

/// How X goes on the device: its row panels and those of Xᵀ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SparseLayout {
    pub n: usize,
    pub m: usize,
    pub rows: Vec<PanelRange>,
    pub columns: Vec<PanelRange>,
}

/// Loop iterations of one `spmm` invocation on a row of `entries` (k tree sums of its strided part)
/// and of one `column_sums` invocation on `rows` rows, at a workgroup of `wg` (a power of two).
fn spmm_cost(entries: usize, k: usize, wg: usize) -> usize {
    let tree = 2 * wg.trailing_zeros() as usize + 1;
    k.saturating_mul(entries.div_ceil(wg) + tree + 1)
}
fn column_sums_cost(rows: usize, wg: usize) -> usize {
    rows.div_ceil(wg) + 2 * wg.trailing_zeros() as usize + 1
}

/// Consecutive rows of `entries` (stored entries per row) in panels of at most `limit` bytes each.
fn panels(entries: &[usize], limit: u64) -> Option<Vec<PanelRange>> {
    let mut out = Vec::new();
    let mut current = PanelRange {
        row0: 0,
        rows: 0,
        entries: 0,
    };
    for &e in entries {
        let grown = PanelRange {
            rows: current.rows + 1,
            entries: current.entries + e,
            ..current
        };
        if grown.words() * 4 <= limit {
            current = grown;
            continue;
        }
        if current.rows == 0 {
            return None;
        }
        out.push(current);
        current = PanelRange {
            row0: current.row0 + current.rows,
            rows: 1,
            entries: e,
        };
        if current.words() * 4 > limit {
            return None;
        }
    }
    if current.rows > 0 || out.is_empty() {
        out.push(current);
    }
    Some(out)
}

impl SparseLayout {
    /// The panels of `x` for a block of `k` columns on `ctx`, or why the device cannot take it.
    pub fn plan(
        ctx: &GpuContext,
        x: &dyn PackedPanels,
        k: usize,
    ) -> std::result::Result<Self, String> {
        let (n, m) = x.shape();
        let (limit, limit_name) = ctx.binding_limit();
        let wg = ctx.workgroup() as usize;
        if n >= u32::MAX as usize || padded(m) >= u32::MAX as usize {
            return Err(format!(
                "{n} x {m}: more than the kernels' u32 indices hold"
            ));
        }
        let tall_bytes = padded(m) as u64 * k as u64 * 4;
        if tall_bytes > limit {
            return Err(format!(
                "a block of {k} columns of {m} values ({tall_bytes} bytes) exceeds {limit_name} \
                 ({limit} bytes)"
            ));
        }
        let y_bytes = (n as u64).saturating_mul(k as u64 * 4);
        if y_bytes > limit {
            return Err(format!(
                "the products' intermediate X·W ({n} x {k} f32, {y_bytes} bytes) exceeds \
                 {limit_name} ({limit} bytes)"
            ));
        }
        // A software adapter (llvmpipe) silently ends a loop after 65535 iterations: there every loop
        // of the route's kernels must keep within the budget (the column sums over n samples, the
        // loop's one-workgroup products over mp rows, spmm over the longest row). A hardware GPU only
        // takes longer.
        let software = ctx.info.device_type == "cpu";
        if software && column_sums_cost(n.max(padded(m)), wg) > JACOBI_DISPATCH_BUDGET {
            return Err(format!(
                "{n} x {m} on a software adapter: more than one workgroup's loop takes there"
            ));
        }
        let mut layout = SparseLayout {
            n,
            m,
            rows: Vec::new(),
            columns: Vec::new(),
        };
        for transposed in [false, true] {
            let entries = x.row_entries(transposed).map_err(|e| e.to_string())?;
            let longest = entries.iter().copied().max().unwrap_or(0);
            let what = if transposed { "a feature" } else { "a sample" };
            if software && spmm_cost(longest, k, wg) > JACOBI_DISPATCH_BUDGET {
                return Err(format!(
                    "{what} with {longest} stored entries on a software adapter: more than one \
                     workgroup's product with {k} columns takes there"
                ));
            }
            let p = panels(&entries, limit).ok_or_else(|| {
                format!("{what} whose {longest} stored entries exceed {limit_name} ({limit} bytes)")
            })?;
            if transposed {
                layout.columns = p;
            } else {
                layout.rows = p;
            }
        }
        // A software adapter's memory is the host's.
        ctx.check_device_memory(
            || format!("the sparse data and its products on the software GPU ({n} x {m})"),
            Some(layout.device_bytes(k)),
        )
        .map_err(|e| e.to_string())?;
        Ok(layout)
    }

    /// Bytes of device buffers: both panel sets, the n x k intermediate, μ and two k-vectors.
    pub fn device_bytes(&self, k: usize) -> u64 {
        let panels: u64 = self
            .rows
            .iter()
            .chain(&self.columns)
            .map(|p| p.words() * 4)
            .sum();
        panels + (self.n as u64 * k as u64 + padded(self.m) as u64 + 2 * k as u64) * 4
    }
}

/// One panel on the device.
pub(crate) struct DevicePanel {
    pub range: PanelRange,
    pub buffer: wgpu::Buffer,
}

/// A sparse X on the device, as the engine's `c_mul` multiplies by it (shaders/sparse.wgsl).
pub(crate) struct SparseOnDevice {
    pub n: usize,
    /// X's row panels.
    pub rows: Vec<DevicePanel>,
    /// Xᵀ's row panels (X's columns).
    pub columns: Vec<DevicePanel>,
    /// μ / √c_norm (mp values, zeros past m).
    pub mean: wgpu::Buffer,
    /// Y = X W − 1 tᵀ, n x k column-major.
    pub y: wgpu::Buffer,
    /// t = μᵀW (k).
    pub shift: wgpu::Buffer,
    /// s = 1ᵀY (k).
    pub y_sums: wgpu::Buffer,
}

impl SparseOnDevice {
    /// Buffers it made.
    pub fn buffers(&self) -> usize {
        self.rows.len() + self.columns.len() + 4
    }

    /// Uploads `x` by `layout`, its values and `mean` scaled by `1/√c_norm` (so that the product is
    /// `C / c_norm` times W), for blocks of `k` columns; one panel at a time on the host.
    pub fn upload(
        ctx: &GpuContext,
        x: &dyn PackedPanels,
        layout: &SparseLayout,
        mean: &[f64],
        c_norm: f64,
        k: usize,
    ) -> Result<Self> {
        let scale = 1.0 / c_norm.sqrt();
        let several = layout.rows.len() + layout.columns.len() > 2;
        let upload = |transposed: bool, ranges: &[PanelRange]| -> Result<Vec<DevicePanel>> {
            let mut out = Vec::with_capacity(ranges.len());
            for &range in ranges {
                let words = x.pack(
                    transposed,
                    range.row0..range.row0 + range.rows,
                    range.entries,
                    scale,
                )?;
                let buffer =
                    ctx.buffer_with("sparse panel", bytemuck::cast_slice(&words), U::STORAGE);
                drop(words);
                if several {
                    // Let wgpu's staging copy of this panel go before the next is packed.
                    ctx.queue.submit([]);
                    ctx.device
                        .poll(wgpu::PollType::wait_indefinitely())
                        .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
                }
                out.push(DevicePanel { range, buffer });
            }
            Ok(out)
        };
        let rows = upload(false, &layout.rows)?;
        let columns = upload(true, &layout.columns)?;
        let mut mean32 = crate::alloc::filled(
            || format!("the column means of {} features in f32", layout.m),
            Some(padded(layout.m)),
            None,
            0f32,
        )?;
        for (d, &v) in mean32.iter_mut().zip(mean) {
            *d = (v * scale) as f32;
        }
        let mean = ctx.buffer_with("sparse mean", bytemuck::cast_slice(&mean32), U::STORAGE);
        let vector = |label| ctx.buffer(label, k as u64 * 4, U::STORAGE);
        Ok(SparseOnDevice {
            n: layout.n,
            rows,
            columns,
            mean,
            y: ctx.buffer("sparse X·W", layout.n as u64 * k as u64 * 4, U::STORAGE),
            shift: vector("sparse μᵀW"),
            y_sums: vector("sparse 1ᵀY"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sparse::CsrMatrix;
    use nalgebra::DMatrix;

    fn range(row0: usize, rows: usize, entries: usize) -> PanelRange {
        PanelRange {
            row0,
            rows,
            entries,
        }
    }

    #[test]
    fn panels_hold_consecutive_rows_within_the_limit() {
        // Words: rows + 1 + 2·entries; 4 bytes each.
        let entries = [3, 0, 2, 5, 0, 0, 1];
        let one = panels(&entries, 1 << 20).unwrap();
        assert_eq!(one, vec![range(0, 7, 11)]);
        // 48 bytes = 12 words: rows 0-2 (4 + 10 words = 14) do not fit; 0-1 (3 + 6 = 9) do.
        let split = panels(&entries, 48).unwrap();
        assert_eq!(
            split,
            vec![
                range(0, 2, 3),
                range(2, 1, 2),
                range(3, 1, 5),
                range(4, 3, 1)
            ]
        );
        for p in &split {
            assert!(p.words() * 4 <= 48, "{p:?}");
        }
        // A row exactly at the limit (2 + 2·5 = 12 words) fits alone; one word less does not.
        assert_eq!(panels(&[5], 48).unwrap(), vec![range(0, 1, 5)]);
        assert_eq!(panels(&[5], 47), None);
        assert_eq!(panels(&[1, 5], 44), None);
        // No entries at all: one empty panel per set of rows; one row.
        assert_eq!(panels(&[0, 0, 0], 16).unwrap(), vec![range(0, 3, 0)]);
        assert_eq!(panels(&[4], 1 << 10).unwrap(), vec![range(0, 1, 4)]);
    }

    /// Unpacks a panel of `rows` rows into a dense rows x cols matrix.
    fn unpack(words: &[u32], rows: usize, cols: usize) -> DMatrix<f32> {
        let entries = words[rows] as usize;
        assert_eq!(words.len(), rows + 1 + 2 * entries);
        let (indices, values) = words[rows + 1..].split_at(entries);
        let mut out = DMatrix::zeros(rows, cols);
        for r in 0..rows {
            let (a, b) = (words[r] as usize, words[r + 1] as usize);
            assert!(a <= b);
            for e in a..b {
                out[(r, indices[e] as usize)] = f32::from_bits(values[e]);
            }
            // Within a row, the entries in ascending column order (X's row order for Xᵀ).
            assert!(indices[a..b].windows(2).all(|w| w[0] < w[1]));
        }
        out
    }

    #[test]
    fn packed_panels_are_the_rows_of_x_and_of_its_transpose() {
        let dense = DMatrix::from_fn(9, 7, |i, j| {
            if (i * 7 + j * 3) % 4 == 0 {
                (i * 10 + j) as f64 + 0.5
            } else {
                0.0
            }
        });
        let x = CsrMatrix::from_dense(&dense);
        let scale = 0.25;
        let want = dense.map(|v| (v * scale) as f32);
        for transposed in [false, true] {
            let (rows, cols) = if transposed { (7, 9) } else { (9, 7) };
            let target = if transposed {
                want.transpose()
            } else {
                want.clone()
            };
            let counts = x.row_entries(transposed).unwrap();
            assert_eq!(counts.len(), rows);
            // Whole, and in panels of 1, 2 and 4 rows.
            for size in [rows, 1, 2, 4] {
                for row0 in (0..rows).step_by(size) {
                    let end = (row0 + size).min(rows);
                    let entries: usize = counts[row0..end].iter().sum();
                    let words = x.pack(transposed, row0..end, entries, scale).unwrap();
                    let got = unpack(&words, end - row0, cols);
                    assert_eq!(got, target.rows(row0, end - row0).clone_owned());
                }
            }
        }
    }
}
