//! The Gram matrix on the GPU: chunks of samples streamed to the device, `C += (X − s)ᵀ (X − s)` per
//! chunk with a compensated running sum (c_hi + c_lo), the shift s and the column sums Σ (x − s) on the
//! device, read back once as f64. C is held in row panels ([`Panels`](super::Panels)), one buffer (and one dispatch
//! per chunk) each, so that m is not bounded by one storage binding; one panel, the usual case, is read
//! back in one submission with the column sums.
//!
//! Host side, per chunk: the rows are written straight into the next buffer of a ring of
//! [`STAGING_RING`] mapped staging buffers (plain copies of f32 rows; nothing allocated), then one
//! submission copies the chunk's parameters and rows into one of [`DEVICE_CHUNKS`] device chunk buffers
//! and runs the two kernels on it. The host waits only when it comes back to a staging buffer whose
//! previous chunk the device has not copied yet, so it fills the next chunks while the device works.

use super::contract::{gram, Binding, GramPanel, GramParams, PARAMS};
use super::kernels::{Compiled, Kernel};
use super::{grid_1d, padded, GpuContext, PANEL_ROWS};
use crate::engine::EngineStats;
use crate::error::{Error, Result};
use nalgebra::{DMatrix, DVector};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use wgpu::BufferUsages as U;

/// Samples per chunk at most: short enough that a chunk's f32 partial sums stay accurate (the chunks
/// are then combined with TwoSum).
const MAX_CHUNK_ROWS: usize = 4096;
/// Staging buffers the host fills in turn.
const STAGING_RING: usize = 3;
/// Device chunk buffers the kernels read in turn.
const DEVICE_CHUNKS: usize = 2;
/// Bytes of a chunk's parameters ([`GramParams`]) at the start of its staging buffer.
const HEADER: u64 = std::mem::size_of::<GramParams>() as u64;

/// The state of a staging buffer's map request.
const MAP_PENDING: u8 = 0;
const MAP_DONE: u8 = 1;
const MAP_FAILED: u8 = 2;

struct Staging {
    buffer: wgpu::Buffer,
    /// Set by the map callback; `None` while the buffer is mapped and owned by the host.
    map_state: Option<Arc<AtomicU8>>,
    /// The submission that last copied out of this buffer.
    submission: Option<wgpu::SubmissionIndex>,
}

/// A device chunk buffer with its parameters and the bind groups of the two kernels on it (the Gram
/// kernel's: one per panel of C).
struct DeviceChunk {
    columns_group: wgpu::BindGroup,
    gram_groups: Vec<wgpu::BindGroup>,
    params: wgpu::Buffer,
    rows: wgpu::Buffer,
}

/// One row panel of the running sum C: its rows and its two halves.
struct CPanel {
    row0: usize,
    rows: usize,
    hi: wgpu::Buffer,
    lo: wgpu::Buffer,
}

/// Writes a block's rows into a mapped staging buffer (plain byte copies, rows of `mp` f32 values).
pub(crate) struct RowWriter<'a> {
    view: &'a mut wgpu::BufferViewMut,
    m: usize,
    mp: usize,
}

impl RowWriter<'_> {
    /// Rows `first..` from `values`, whole padded rows back to back (`values.len()` a multiple of mp).
    pub fn padded_rows(&mut self, first: usize, values: &[f32]) {
        let start = HEADER as usize + first * self.mp * 4;
        self.view
            .slice(start..start + values.len() * 4)
            .copy_from_slice(bytemuck::cast_slice(values));
    }

    /// Row `r` from its m values; the padding up to mp is written as zeros.
    pub fn row(&mut self, r: usize, values: &[f32]) {
        let start = HEADER as usize + r * self.mp * 4;
        let end = start + self.m * 4;
        self.view
            .slice(start..end)
            .copy_from_slice(bytemuck::cast_slice(values));
        self.view.slice(end..start + self.mp * 4).fill(0);
    }
}

/// The accumulated column statistics as the device holds them, in f64 (C itself is written into the
/// caller's matrix by [`GpuGram::total`]).
pub(crate) struct GpuGramTotal {
    /// Σ (x − s).
    pub sums: DVector<f64>,
    /// The shift the device subtracted (zero unless it computed one from the first chunk).
    pub shift: DVector<f64>,
}

pub(crate) struct GpuGram {
    ctx: Arc<GpuContext>,
    m: usize,
    mp: usize,
    chunk_rows: usize,
    panels: Vec<CPanel>,
    shift: wgpu::Buffer,
    sums_hi: wgpu::Buffer,
    sums_lo: wgpu::Buffer,
    columns_pipeline: Compiled,
    gram_pipeline: Compiled,
    staging: Vec<Staging>,
    chunks: Vec<DeviceChunk>,
    /// Chunks added so far.
    added: usize,
    /// The first failure of a map request (reported by [`total`](Self::total)).
    failure: Option<Error>,
    stats: EngineStats,
}

impl std::fmt::Debug for GpuGram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuGram")
            .field("adapter", &self.ctx.info.name)
            .field("m", &self.m)
            .finish()
    }
}

/// The bind group of `kernel` (compiled as `compiled`) on `params` and the buffers `bindings` (those of
/// the kernel table, in its order).
fn bind_group(
    ctx: &GpuContext,
    (kernel, compiled): (Kernel, &Compiled),
    params: &wgpu::Buffer,
    bindings: &[(Binding, &wgpu::Buffer)],
) -> wgpu::BindGroup {
    kernel.assert_bindings(bindings.iter().map(|b| &b.0));
    let entries: Vec<wgpu::BindGroupEntry<'_>> = std::iter::once((PARAMS, params))
        .chain(bindings.iter().copied())
        .map(|(b, buffer)| wgpu::BindGroupEntry {
            binding: b.number,
            resource: buffer.as_entire_binding(),
        })
        .collect();
    ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(kernel.entry_point()),
        layout: &compiled.layout,
        entries: &entries,
    })
}

impl GpuGram {
    pub fn new(ctx: Arc<GpuContext>, m: usize) -> Result<Self> {
        let layout = ctx.panels(m)?;
        let mp = padded(m);
        // A chunk's staging buffer holds its parameters and its rows.
        let limit = ctx.binding_limit().0 - HEADER;
        let rows_fit = (limit / (mp as u64 * 4)).min(MAX_CHUNK_ROWS as u64) as usize;
        // (At least one row: a panel of C, which fits, has 64 rows or all of C's, each as long.)
        let chunk_rows = rows_fit.max(1);
        let chunk_bytes = (chunk_rows * mp * 4) as u64;
        let storage = U::STORAGE | U::COPY_DST | U::COPY_SRC;
        let vector_bytes = (mp * 4) as u64;
        let panels: Vec<CPanel> = layout
            .iter()
            .map(|(row0, rows)| {
                let bytes = (rows * mp * 4) as u64;
                CPanel {
                    row0,
                    rows,
                    hi: ctx.buffer("C panel (high part)", bytes, storage),
                    lo: ctx.buffer("C panel (low part)", bytes, storage),
                }
            })
            .collect();
        // Each panel's GramPanel, written once.
        let panel_params: Vec<wgpu::Buffer> = panels
            .iter()
            .map(|c| {
                let b = ctx.buffer("gram panel", 16, U::STORAGE | U::COPY_DST);
                let params = GramPanel {
                    row0: c.row0 as u32,
                    rows: c.rows as u32,
                };
                ctx.queue.write_buffer(&b, 0, bytemuck::bytes_of(&params));
                b
            })
            .collect();
        let shift = ctx.buffer("shift", vector_bytes, storage);
        let sums_hi = ctx.buffer("column sums (high part)", vector_bytes, storage);
        let sums_lo = ctx.buffer("column sums (low part)", vector_bytes, storage);
        let columns_pipeline = ctx.pipeline(Kernel::GramColumns);
        let gram_pipeline = ctx.pipeline(Kernel::GramChunk);
        let staging = (0..STAGING_RING)
            .map(|_| Staging {
                buffer: ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("gram staging"),
                    size: HEADER + chunk_bytes,
                    usage: U::MAP_WRITE | U::COPY_SRC,
                    mapped_at_creation: true,
                }),
                map_state: None,
                submission: None,
            })
            .collect();
        let chunks = (0..DEVICE_CHUNKS)
            .map(|_| {
                let params = ctx.buffer("gram params", HEADER, U::STORAGE | U::COPY_DST);
                let rows = ctx.buffer("data chunk", chunk_bytes, U::STORAGE | U::COPY_DST);
                let columns_group = bind_group(
                    &ctx,
                    (Kernel::GramColumns, &columns_pipeline),
                    &params,
                    &[
                        (gram::X, &rows),
                        (gram::SHIFT, &shift),
                        (gram::SUMS_HI, &sums_hi),
                        (gram::SUMS_LO, &sums_lo),
                    ],
                );
                let gram_groups = panels
                    .iter()
                    .zip(&panel_params)
                    .map(|(c, panel)| {
                        bind_group(
                            &ctx,
                            (Kernel::GramChunk, &gram_pipeline),
                            &params,
                            &[
                                (gram::X, &rows),
                                (gram::C_HI, &c.hi),
                                (gram::C_LO, &c.lo),
                                (gram::SHIFT, &shift),
                                (gram::PANEL, panel),
                            ],
                        )
                    })
                    .collect();
                DeviceChunk {
                    columns_group,
                    gram_groups,
                    params,
                    rows,
                }
            })
            .collect();
        ctx.take_error()?;
        let n_panels = panels.len();
        Ok(GpuGram {
            ctx,
            m,
            mp,
            chunk_rows,
            panels,
            shift,
            sums_hi,
            sums_lo,
            columns_pipeline,
            gram_pipeline,
            staging,
            chunks,
            added: 0,
            failure: None,
            stats: EngineStats {
                buffers_created: 3 + 3 * n_panels + STAGING_RING + 2 * DEVICE_CHUNKS,
                bind_groups_created: (1 + n_panels) * DEVICE_CHUNKS,
                ..EngineStats::default()
            },
        })
    }

    /// Samples per block the accumulator should hand over.
    pub fn block_rows(&self) -> usize {
        self.chunk_rows
    }

    /// The row stride of the blocks [`add`](Self::add) takes: m padded to a multiple of 4.
    pub fn padded_features(&self) -> usize {
        self.mp
    }

    /// Chunks added so far.
    pub fn chunks_added(&self) -> usize {
        self.added
    }

    /// Submissions, host waits, dispatches and objects created so far (all objects are made by `new`).
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Adds one block of `rows` samples (≤ block_rows), which `fill` writes with the [`RowWriter`] into
    /// the staging buffer. With `device_shift`, the first block's column means become the shift (else
    /// the shift stays zero: the rows come shifted).
    pub fn add(&mut self, rows: usize, device_shift: bool, fill: impl FnOnce(&mut RowWriter<'_>)) {
        if self.failure.is_some() {
            return;
        }
        let slot = self.added % STAGING_RING;
        if let Err(e) = self.wait_mapped(slot) {
            self.failure = Some(e);
            return;
        }
        let data_bytes = (rows * self.mp * 4) as u64;
        let first = u32::from(device_shift && self.added == 0);
        let staging = &mut self.staging[slot];
        match staging.buffer.get_mapped_range_mut(..HEADER + data_bytes) {
            Ok(mut view) => {
                let header = GramParams {
                    rows: rows as u32,
                    mp: self.mp as u32,
                    first,
                    ..GramParams::default()
                };
                view.slice(..HEADER as usize)
                    .copy_from_slice(bytemuck::bytes_of(&header));
                fill(&mut RowWriter {
                    view: &mut view,
                    m: self.m,
                    mp: self.mp,
                });
            }
            Err(e) => {
                self.failure = Some(Error::Gpu(format!("writing a staging buffer: {e:?}")));
                return;
            }
        }
        staging.buffer.unmap();
        let chunk = &self.chunks[self.added % DEVICE_CHUNKS];
        let mut encoder = self.ctx.encoder("gram");
        encoder.copy_buffer_to_buffer(&staging.buffer, 0, &chunk.params, 0, HEADER);
        encoder.copy_buffer_to_buffer(&staging.buffer, HEADER, &chunk.rows, 0, data_bytes);
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("gram"),
                timestamp_writes: None,
            });
            let (gx, gy) = grid_1d(self.mp, self.ctx.workgroup());
            pass.set_pipeline(&self.columns_pipeline.pipeline);
            pass.set_bind_group(0, &chunk.columns_group, &[]);
            pass.dispatch_workgroups(gx, gy, 1);
            let tiles = self.mp.div_ceil(PANEL_ROWS) as u32;
            pass.set_pipeline(&self.gram_pipeline.pipeline);
            for (panel, group) in self.panels.iter().zip(&chunk.gram_groups) {
                pass.set_bind_group(0, group, &[]);
                pass.dispatch_workgroups(panel.rows.div_ceil(PANEL_ROWS) as u32, tiles, 1);
            }
        }
        let index = self.ctx.queue.submit([encoder.finish()]);
        self.stats.submissions += 1;
        self.stats.dispatches += 1 + self.panels.len();
        // Map the staging buffer again as soon as the device has copied out of it.
        let state = Arc::new(AtomicU8::new(MAP_PENDING));
        let callback_state = state.clone();
        staging
            .buffer
            .map_async(wgpu::MapMode::Write, .., move |r| {
                let v = if r.is_ok() { MAP_DONE } else { MAP_FAILED };
                callback_state.store(v, Ordering::Release);
            });
        staging.map_state = Some(state);
        staging.submission = Some(index);
        self.added += 1;
    }

    /// Blocks until staging buffer `slot` is mapped for the host again.
    fn wait_mapped(&mut self, slot: usize) -> Result<()> {
        let staging = &mut self.staging[slot];
        let Some(state) = staging.map_state.take() else {
            return Ok(()); // mapped at creation
        };
        if state.load(Ordering::Acquire) == MAP_PENDING {
            self.stats.host_waits += 1;
            self.ctx
                .device
                .poll(wgpu::PollType::Wait {
                    submission_index: staging.submission.take(),
                    timeout: None,
                })
                .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
        }
        self.ctx.take_error()?;
        match state.load(Ordering::Acquire) {
            MAP_DONE => Ok(()),
            _ => Err(Error::Gpu(
                "mapping a staging buffer of the Gram accumulation failed".into(),
            )),
        }
    }

    /// Σ over all chunks, as f64: C (c_hi + c_lo, the upper triangle mirrored) into `c` (m x m), and
    /// the column sums and the shift. Where both halves of a panel fit one staging buffer: one
    /// submission per panel, the column statistics with the last (one in all for a C of one panel);
    /// else two per panel (each half in its own staging buffer) and one for the statistics.
    pub fn total(&mut self, c: &mut DMatrix<f64>) -> Result<GpuGramTotal> {
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        let (mp, m) = (self.mp, self.m);
        assert_eq!(c.shape(), (m, m), "the host's C");
        let v_bytes = (mp * 4) as u64;
        let largest = self.panels.iter().map(|p| p.rows).max().unwrap_or(0);
        let panel_bytes = (largest * mp * 4) as u64;
        // hi and lo of a panel, then (with the last) the sums and the shift: in one buffer where the
        // device allows it, else hi and lo each in their own.
        let together = 2 * panel_bytes + 3 * v_bytes <= self.ctx.binding_limit().0;
        let stagings: Vec<wgpu::Buffer> = if together {
            vec![self.ctx.staging(2 * panel_bytes + 3 * v_bytes)]
        } else {
            vec![self.ctx.staging(panel_bytes), self.ctx.staging(panel_bytes)]
        };
        self.stats.buffers_created += stagings.len();
        let vectors = [&self.sums_hi, &self.sums_lo, &self.shift];
        let mut statistics = Vec::new();
        // Row r of a panel holds C[row0 + r, j] for j ≥ row0 + r (the upper triangle): hi + lo into
        // both triangles of c.
        let store = |c: &mut DMatrix<f64>, row0: usize, rows: usize, hi: &[f32], lo: &[f32]| {
            for r in 0..rows.min(m.saturating_sub(row0)) {
                let i = row0 + r;
                for j in i..m {
                    let v = hi[r * mp + j] as f64 + lo[r * mp + j] as f64;
                    c[(i, j)] = v;
                    c[(j, i)] = v;
                }
            }
        };
        for (index, panel) in self.panels.iter().enumerate() {
            let last = index + 1 == self.panels.len();
            let (row0, rows) = (panel.row0, panel.rows);
            let bytes = (rows * mp * 4) as u64;
            let values = rows * mp;
            if together {
                let mut encoder = self.ctx.encoder("read the Gram matrix");
                encoder.copy_buffer_to_buffer(&panel.hi, 0, &stagings[0], 0, bytes);
                encoder.copy_buffer_to_buffer(&panel.lo, 0, &stagings[0], bytes, bytes);
                let mut end = 2 * bytes;
                if last {
                    for v in vectors {
                        encoder.copy_buffer_to_buffer(v, 0, &stagings[0], end, v_bytes);
                        end += v_bytes;
                    }
                }
                let read = |all: &[f32]| {
                    store(c, row0, rows, &all[..values], &all[values..2 * values]);
                    all[2 * values..].to_vec()
                };
                let rest = self.ctx.submit_and_view(encoder, &stagings[0], end, read)?;
                if last {
                    statistics = rest;
                }
                self.stats.submissions += 1;
                self.stats.host_waits += 1;
            } else {
                // The high part through one staging buffer (copied out), then the low part through the
                // other, stored while it is mapped.
                let mut encoder = self.ctx.encoder("read the Gram matrix");
                encoder.copy_buffer_to_buffer(&panel.hi, 0, &stagings[0], 0, bytes);
                let hi = self.ctx.submit_and_read(encoder, &stagings[0], bytes)?;
                let mut encoder = self.ctx.encoder("read the Gram matrix");
                encoder.copy_buffer_to_buffer(&panel.lo, 0, &stagings[1], 0, bytes);
                let read = |lo: &[f32]| store(c, row0, rows, &hi, lo);
                self.ctx
                    .submit_and_view(encoder, &stagings[1], bytes, read)?;
                self.stats.submissions += 2;
                self.stats.host_waits += 2;
            }
        }
        if !together {
            let mut encoder = self.ctx.encoder("read the column statistics");
            for (i, v) in vectors.into_iter().enumerate() {
                encoder.copy_buffer_to_buffer(v, 0, &stagings[0], i as u64 * v_bytes, v_bytes);
            }
            statistics = self
                .ctx
                .submit_and_read(encoder, &stagings[0], 3 * v_bytes)?;
            self.stats.submissions += 1;
            self.stats.host_waits += 1;
        }
        let (sums_hi, rest) = statistics.split_at(mp);
        let (sums_lo, shift) = rest.split_at(mp);
        Ok(GpuGramTotal {
            sums: DVector::from_fn(m, |j, _| sums_hi[j] as f64 + sums_lo[j] as f64),
            shift: DVector::from_fn(m, |j, _| shift[j] as f64),
        })
    }
}
