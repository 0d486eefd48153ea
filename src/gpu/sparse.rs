//! The operator route on the GPU: a sparse X held on the device in row panels, X's and Xᵀ's, that
//! shaders/sparse.wgsl multiplies by (the engine's `c_mul`, in src/gpu/engine.rs). C is never formed.
//!
//! [`SparseLayout::plan`] decides, before anything is allocated, whether X fits: every panel within
//! one storage binding, the products' n x k intermediate too, and every kernel invocation's loop
//! within [`JACOBI_DISPATCH_BUDGET`] iterations (llvmpipe silently ends longer loops). The fit runs
//! the operator route on the CPU otherwise.

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
        if n > u32::MAX as usize - 1 {
            return Err(format!(
                "{n} samples: more than the kernels' u32 indices hold"
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
        if column_sums_cost(n, wg) > JACOBI_DISPATCH_BUDGET {
            return Err(format!(
                "{n} samples: more than one workgroup's column sum takes"
            ));
        }
        let mut layout = SparseLayout {
            n,
            m,
            rows: Vec::new(),
            columns: Vec::new(),
        };
        for transposed in [false, true] {
            let entries = x.row_entries(transposed);
            let longest = entries.iter().copied().max().unwrap_or(0);
            let what = if transposed { "a feature" } else { "a sample" };
            if spmm_cost(longest, k, wg) > JACOBI_DISPATCH_BUDGET {
                return Err(format!(
                    "{what} with {longest} stored entries: more than one workgroup's product \
                     with {k} columns takes"
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
    /// μ / √‖C‖ (mp values, zeros past m).
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
        ctx.check_device_memory(
            || {
                format!(
                    "the sparse data and its products on the software GPU ({} x {})",
                    layout.n, layout.m
                )
            },
            Some(layout.device_bytes(k)),
        )?;
        let scale = 1.0 / c_norm.sqrt();
        let storage = U::STORAGE | U::COPY_DST;
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
                let buffer = ctx.buffer("sparse panel", words.len() as u64 * 4, storage);
                ctx.queue
                    .write_buffer(&buffer, 0, bytemuck::cast_slice(&words));
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
        let mean = ctx.buffer("sparse mean", mean32.len() as u64 * 4, storage);
        ctx.queue
            .write_buffer(&mean, 0, bytemuck::cast_slice(&mean32));
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
