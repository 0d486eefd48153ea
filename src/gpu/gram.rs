//! The Gram matrix on the GPU: chunks of samples streamed to the device, `C += (X − s)ᵀ (X − s)`
//! per chunk with a compensated running sum (c_hi + c_lo), the shift s and the column sums
//! `Σ (x − s)` on the device, read back once as f64. C is held in row panels ([`Panels`](super::Panels)),
//! one buffer (and one dispatch per chunk) each, so that m is not bounded by one storage binding;
//! one panel, the usual case, is read back in one submission with the column sums (and, where the
//! device has timestamp queries, one more for the chunks' kernel times).
//!
//! Host side: the rows are written straight into the current buffer of a ring of [`STAGING_RING`]
//! mapped staging buffers (plain copies of f32 rows; nothing allocated), as many writes as fill it,
//! so that chunks are cut from the stream of samples whatever the writes; then one submission
//! copies the chunk's parameters and rows into one of [`DEVICE_CHUNKS`] device chunk buffers and
//! runs the two kernels on it (gram.wgsl says how they keep their accuracy). The host waits only
//! when it comes back to a staging buffer whose previous chunk the device has not copied yet, so it
//! fills the next chunks while the device works.

use super::contract::{gram, Binding, GramPanel, GramParams, PARAMS};
use super::kernels::{Compiled, Kernel};
use super::timer::PassTimer;
use super::{grid_1d, padded, GpuContext, Panels, PANEL_ROWS};
use crate::engine::EngineStats;
use crate::error::{Error, Result};
use crate::Arithmetic;
use nalgebra::{DMatrix, DVector};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use wgpu::BufferUsages as U;

/// Samples per slice: each workgroup adds its f32 sum over one slice of a chunk to its running total
/// with TwoSum, so the sums a plain f32 accumulation would lose stay short whatever the chunk's size.
const SLICE_ROWS: usize = 1024;
/// A chunk's bytes, where the binding allows them and they make at least one slice (else a chunk is one
/// slice, or what one binding holds): large enough that the submission per chunk is a small cost,
/// small enough that the ring and the device's chunk buffers (five chunks) stay modest.
const CHUNK_BYTES: usize = 16 << 20;
/// Workgroups `gram_chunk` should have at least, to fill a large GPU (split-K adds them for small m).
const TARGET_WORKGROUPS: usize = 512;
/// Split-K's running totals at most.
const MAX_SPLITS: usize = 32;
/// Bytes split-K's running totals may take beyond C's own compensated sum.
const SPLIT_BYTES: u64 = 128 << 20;
/// Chunks whose compute passes' timestamps may wait to be read (two each; WebGPU allows 4096 queries
/// per set): when as many are pending, they are read before the next chunk (one more submission and
/// wait, every 2048 chunks).
const TIMED_CHUNKS: usize = 2048;
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

/// One row panel of the running sum C: its rows, its two halves (`splits` running totals each, the
/// first of them C's), its tiles, its [`GramPanel`] and the bind group that folds its totals.
struct CPanel {
    row0: usize,
    rows: usize,
    tiles: usize,
    hi: wgpu::Buffer,
    lo: wgpu::Buffer,
    params: wgpu::Buffer,
    fold_group: wgpu::BindGroup,
}

/// The tiles of C's upper triangle (tiles of [`PANEL_ROWS`] x [`PANEL_ROWS`], mp x mp) in rows
/// `row0 .. row0 + rows`: tile row r has `side − r` of them, from the diagonal on.
fn panel_tiles(mp: usize, row0: usize, rows: usize) -> usize {
    let side = mp.div_ceil(PANEL_ROWS);
    let first = row0 / PANEL_ROWS;
    let end = (row0 + rows).div_ceil(PANEL_ROWS);
    (first..end).map(|r| side - r).sum()
}

/// How an accumulation is laid out on a device: C's panels, the chunk and slice sizes and split-K's
/// totals, worked out before anything is allocated so that its memory can be checked first.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GramLayout {
    /// m padded to a multiple of 4: the row stride of the chunks and of C.
    pub mp: usize,
    /// C's row panels.
    pub panels: Panels,
    /// Samples per chunk (a multiple of `slice` where the binding holds one slice).
    pub chunk_rows: usize,
    /// Samples per slice.
    pub slice: usize,
    /// Running totals of C (split-K; more than one only when C is one panel).
    pub splits: usize,
    /// Samples each chunk buffer holds: `chunk_rows`, or fewer when the accumulation was told it
    /// gets fewer samples than a chunk (then its only chunk is cut at the end, as the last one always
    /// is, so the sums are the same).
    pub buffer_rows: usize,
}

impl GramLayout {
    pub fn new(ctx: &GpuContext, m: usize) -> Result<Self> {
        Ok(Self::plan(padded(m), ctx.panels(m)?, ctx.binding_limit().0))
    }

    /// The layout for rows of `mp` values, C in `panels` and bindings of at most `limit` bytes.
    fn plan(mp: usize, panels: Panels, limit: u64) -> Self {
        // A chunk's staging buffer holds its parameters and its rows. (At least one row fits: a panel
        // of C, which fits, has 128 rows or all of C's, each as long.)
        let row_bytes = (mp * 4).max(4);
        let fit = ((limit - HEADER) / row_bytes as u64).min(usize::MAX as u64) as usize;
        let rows = fit.min((CHUNK_BYTES / row_bytes).max(SLICE_ROWS)).max(1);
        let chunk_rows = if rows >= SLICE_ROWS {
            rows / SLICE_ROWS * SLICE_ROWS
        } else {
            rows
        };
        let slice = SLICE_ROWS.min(chunk_rows);
        let mut splits = 1;
        if panels.count() == 1 {
            // Enough tiles x splits to fill a large GPU, within the chunk's slices, the memory set
            // aside for them and one binding.
            let c_bytes = (mp as u64 * mp as u64 * 4).max(4);
            let wanted = TARGET_WORKGROUPS.div_ceil(panel_tiles(mp, 0, mp).max(1));
            let by_memory = (SPLIT_BYTES / (2 * c_bytes)) as usize + 1;
            let by_binding = (limit / c_bytes) as usize;
            splits = wanted
                .min(chunk_rows / slice)
                .min(MAX_SPLITS)
                .min(by_memory)
                .min(by_binding)
                .max(1);
        }
        GramLayout {
            mp,
            panels,
            chunk_rows,
            slice,
            splits,
            buffer_rows: chunk_rows,
        }
    }

    /// The layout for an accumulation of at most `samples` samples (None: any number): chunk buffers
    /// no larger than that. Only the buffers change, not how the samples are cut and summed.
    pub fn for_samples(mut self, samples: Option<usize>) -> Self {
        if let Some(n) = samples {
            self.buffer_rows = n.clamp(1, self.chunk_rows);
        }
        self
    }

    /// Bytes of the chunks' buffers: the ring of staging buffers and the device's chunk buffers.
    fn chunk_buffer_bytes(&self) -> u64 {
        (STAGING_RING + DEVICE_CHUNKS) as u64 * (HEADER + (self.buffer_rows * self.mp * 4) as u64)
    }

    /// Bytes of every device buffer of the accumulation, its read-back included: C's running totals
    /// (two f32 halves, `splits` of them), the chunks' buffers, the column vectors and the staging of
    /// the read-back (two panels and the vectors). None if that overflows u64.
    pub fn device_bytes(&self) -> Option<u64> {
        let mp = self.mp as u64;
        let v_bytes = 4 * mp;
        let panel_bytes = (self.panels.max_rows() as u64).checked_mul(v_bytes)?;
        let totals = mp
            .checked_mul(v_bytes)?
            .checked_mul(2 * self.splits as u64)?;
        totals
            .checked_add(self.chunk_buffer_bytes())?
            .checked_add(2 * panel_bytes + 6 * v_bytes)
    }
}

/// Writes rows into a mapped staging buffer (plain byte copies, rows of `mp` f32 values), counted from
/// the first row the write covers.
pub(crate) struct RowWriter<'a> {
    view: &'a mut wgpu::BufferViewMut,
    m: usize,
    mp: usize,
}

impl RowWriter<'_> {
    /// Rows `first..` from `values`, whole padded rows back to back (`values.len()` a multiple of mp).
    pub fn padded_rows(&mut self, first: usize, values: &[f32]) {
        let start = first * self.mp * 4;
        self.view
            .slice(start..start + values.len() * 4)
            .copy_from_slice(bytemuck::cast_slice(values));
    }

    /// Row `r` from its m values; the padding up to mp is written as zeros.
    pub fn row(&mut self, r: usize, values: &[f32]) {
        let start = r * self.mp * 4;
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
    /// The GPU time of the chunks' kernels (timestamp queries): None where the device has none.
    pub kernel_time: Option<std::time::Duration>,
    /// The shift the device subtracted (zero unless it computed one from the first chunk).
    pub shift: DVector<f64>,
}

pub(crate) struct GpuGram {
    ctx: Arc<GpuContext>,
    m: usize,
    mp: usize,
    layout: GramLayout,
    panels: Vec<CPanel>,
    shift: wgpu::Buffer,
    sums_hi: wgpu::Buffer,
    sums_lo: wgpu::Buffer,
    columns_pipeline: Compiled,
    gram_pipeline: Compiled,
    fold_pipeline: Compiled,
    staging: Vec<Staging>,
    chunks: Vec<DeviceChunk>,
    /// Chunks added so far.
    added: usize,
    /// Rows written into the current chunk (not yet submitted).
    filled: usize,
    /// Whether the device computes the shift from the first chunk (set by the first write).
    device_shift: bool,
    /// Whether the kernels run on each chunk (false only to time the host's side).
    kernels: bool,
    timer: Option<PassTimer>,
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
    /// The accumulation of m features, of at most `samples` samples where that is known (smaller
    /// buffers for fewer samples than a chunk; see [`GramLayout::for_samples`]).
    pub fn new(ctx: Arc<GpuContext>, m: usize, samples: Option<usize>) -> Result<Self> {
        let layout = GramLayout::new(&ctx, m)?.for_samples(samples);
        let (mp, splits) = (layout.mp, layout.splits);
        let chunk_bytes = (layout.buffer_rows * mp * 4) as u64;
        let storage = U::STORAGE | U::COPY_DST | U::COPY_SRC;
        let vector_bytes = (mp * 4) as u64;
        let columns_pipeline = ctx.pipeline(Kernel::GramColumns, Arithmetic::F32);
        let gram_pipeline = ctx.pipeline(Kernel::GramChunk, Arithmetic::F32);
        let fold_pipeline = ctx.pipeline(Kernel::GramFold, Arithmetic::F32);
        // The fold reads mp and splits from its parameters.
        let params = GramParams {
            mp: mp as u32,
            splits: splits as u32,
            ..GramParams::default()
        };
        let fold_params =
            ctx.buffer_with("gram fold params", bytemuck::bytes_of(&params), U::STORAGE);
        let panels: Vec<CPanel> = layout
            .panels
            .iter()
            .map(|(row0, rows)| {
                let bytes = (splits * rows * mp * 4) as u64;
                let hi = ctx.buffer("C panel (high part)", bytes, storage);
                let lo = ctx.buffer("C panel (low part)", bytes, storage);
                let tiles = panel_tiles(mp, row0, rows);
                let panel = GramPanel {
                    row0: row0 as u32,
                    rows: rows as u32,
                    tiles: tiles as u32,
                    ..GramPanel::default()
                };
                let params = ctx.buffer_with("gram panel", bytemuck::bytes_of(&panel), U::STORAGE);
                let fold_group = bind_group(
                    &ctx,
                    (Kernel::GramFold, &fold_pipeline),
                    &fold_params,
                    &[(gram::C_HI, &hi), (gram::C_LO, &lo), (gram::PANEL, &params)],
                );
                CPanel {
                    row0,
                    rows,
                    tiles,
                    hi,
                    lo,
                    params,
                    fold_group,
                }
            })
            .collect();
        let shift = ctx.buffer("shift", vector_bytes, storage);
        let sums_hi = ctx.buffer("column sums (high part)", vector_bytes, storage);
        let sums_lo = ctx.buffer("column sums (low part)", vector_bytes, storage);
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
                    .map(|c| {
                        bind_group(
                            &ctx,
                            (Kernel::GramChunk, &gram_pipeline),
                            &params,
                            &[
                                (gram::X, &rows),
                                (gram::C_HI, &c.hi),
                                (gram::C_LO, &c.lo),
                                (gram::SHIFT, &shift),
                                (gram::PANEL, &c.params),
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
        let timer = PassTimer::new(&ctx, "gram chunk times", TIMED_CHUNKS);
        ctx.take_error()?;
        let n_panels = panels.len();
        let timer_buffers = if timer.is_some() {
            PassTimer::BUFFERS
        } else {
            0
        };
        Ok(GpuGram {
            ctx,
            m,
            mp,
            layout,
            panels,
            shift,
            sums_hi,
            sums_lo,
            columns_pipeline,
            gram_pipeline,
            fold_pipeline,
            staging,
            chunks,
            added: 0,
            filled: 0,
            device_shift: false,
            kernels: true,
            timer,
            failure: None,
            stats: EngineStats {
                buffers_created: 4
                    + 3 * n_panels
                    + STAGING_RING
                    + 2 * DEVICE_CHUNKS
                    + timer_buffers,
                bind_groups_created: n_panels + (1 + n_panels) * DEVICE_CHUNKS,
                ..EngineStats::default()
            },
        })
    }

    /// The device it accumulates on.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// Bytes of the chunk buffers (see [`GramLayout::for_samples`]).
    pub fn chunk_buffer_bytes(&self) -> u64 {
        self.layout.chunk_buffer_bytes()
    }

    /// The row stride of the blocks [`add`](Self::add) takes: m padded to a multiple of 4.
    pub fn padded_features(&self) -> usize {
        self.mp
    }

    /// From now on the chunks are copied to the device but no kernel runs on them (to time the host's
    /// side: [`crate::internals::gram_host_side_only`]).
    pub fn skip_kernels(&mut self) {
        self.kernels = false;
    }

    /// Submissions, host waits, dispatches and objects created so far (all objects are made by `new`).
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Rows the current chunk can still take (a whole chunk when none is begun); with buffers for
    /// fewer samples than a chunk, what is left of them, and none once that one chunk is submitted.
    pub fn room(&self) -> usize {
        let l = &self.layout;
        if l.buffer_rows < l.chunk_rows && self.added > 0 {
            return 0;
        }
        l.buffer_rows - self.filled
    }

    /// Samples written so far, in submitted chunks and the current one.
    pub fn rows_written(&self) -> usize {
        self.added * self.layout.chunk_rows + self.filled
    }

    /// Appends `rows` samples (≤ [`room`](Self::room)) to the current chunk, which `fill` writes with
    /// the [`RowWriter`] into its staging buffer; a chunk is submitted when it is full, so chunks are
    /// cut from the stream of samples whatever the writes. With `device_shift` on the first write, the
    /// first chunk's column means become the shift (else the shift stays zero: the rows come shifted).
    pub fn write(
        &mut self,
        rows: usize,
        device_shift: bool,
        fill: impl FnOnce(&mut RowWriter<'_>),
    ) {
        assert!(
            rows <= self.room(),
            "{rows} rows for a chunk with room for {}",
            self.room()
        );
        if self.failure.is_some() || rows == 0 {
            return;
        }
        let slot = self.added % STAGING_RING;
        if self.filled == 0 {
            if let Err(e) = self.wait_mapped(slot) {
                self.failure = Some(e);
                return;
            }
            if self.added == 0 {
                self.device_shift = device_shift;
            }
        }
        let row_bytes = (self.mp * 4) as u64;
        let begin = HEADER + self.filled as u64 * row_bytes;
        let staging = &self.staging[slot];
        match staging
            .buffer
            .get_mapped_range_mut(begin..begin + rows as u64 * row_bytes)
        {
            Ok(mut view) => fill(&mut RowWriter {
                view: &mut view,
                m: self.m,
                mp: self.mp,
            }),
            Err(e) => {
                self.failure = Some(Error::Gpu(format!("writing a staging buffer: {e:?}")));
                return;
            }
        }
        self.filled += rows;
        if self.filled == self.layout.chunk_rows {
            self.submit();
        }
    }

    /// Submits the current chunk (if it has rows): its parameters into the staging buffer's header,
    /// one submission that copies it to a device chunk buffer and runs the two kernels on it.
    fn submit(&mut self) {
        let rows = std::mem::take(&mut self.filled);
        if rows == 0 || self.failure.is_some() {
            return;
        }
        if self.kernels && self.timer.as_ref().is_some_and(PassTimer::is_full) {
            if let Err(e) = self.read_chunk_times() {
                self.failure = Some(e);
                return;
            }
        }
        let slot = self.added % STAGING_RING;
        let data_bytes = (rows * self.mp * 4) as u64;
        let staging = &mut self.staging[slot];
        match staging.buffer.get_mapped_range_mut(..HEADER) {
            Ok(mut view) => {
                let header = GramParams {
                    rows: rows as u32,
                    mp: self.mp as u32,
                    first: u32::from(self.device_shift && self.added == 0),
                    slice: self.layout.slice as u32,
                    splits: self.layout.splits as u32,
                    ..GramParams::default()
                };
                view.slice(..).copy_from_slice(bytemuck::bytes_of(&header));
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
        if self.kernels {
            let timestamp_writes = self.timer.as_mut().map(PassTimer::next_pass);
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("gram"),
                timestamp_writes,
            });
            // gram_columns: 64 features per workgroup.
            pass.set_pipeline(&self.columns_pipeline.pipeline);
            pass.set_bind_group(0, &chunk.columns_group, &[]);
            pass.dispatch_workgroups(self.mp.div_ceil(64) as u32, 1, 1);
            // gram_chunk: one workgroup per tile of the panel's triangle and split.
            pass.set_pipeline(&self.gram_pipeline.pipeline);
            for (panel, group) in self.panels.iter().zip(&chunk.gram_groups) {
                pass.set_bind_group(0, group, &[]);
                let (gx, gy) = grid_1d(panel.tiles * self.layout.splits, 1);
                pass.dispatch_workgroups(gx, gy, 1);
            }
        }
        let index = self.ctx.queue.submit([encoder.finish()]);
        self.stats.submissions += 1;
        if self.kernels {
            self.stats.dispatches += 1 + self.panels.len();
        }
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

    /// Reads the timer's pending chunk times: one submission and one wait (none if nothing is pending).
    fn read_chunk_times(&mut self) -> Result<()> {
        let Some(timer) = self.timer.as_mut().filter(|t| t.has_unread()) else {
            return Ok(());
        };
        timer.read_now(&self.ctx)?;
        self.stats.submissions += 1;
        self.stats.host_waits += 1;
        Ok(())
    }

    /// The summed GPU time of every chunk's compute pass (reading the pending ones). None without a
    /// timer or without kernels.
    fn kernel_time(&mut self) -> Result<Option<std::time::Duration>> {
        if !self.kernels {
            return Ok(None);
        }
        self.read_chunk_times()?;
        Ok(self.timer.as_ref().and_then(PassTimer::total))
    }

    /// An encoder for reading `panel`, which first adds its split-K totals into the first (with
    /// more than one split: one dispatch, one thread per vec4 of the panel).
    fn fold_encoder(&self, panel: &CPanel) -> wgpu::CommandEncoder {
        let mut encoder = self.ctx.encoder("read the Gram matrix");
        if self.layout.splits > 1 {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("gram fold"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&self.fold_pipeline.pipeline);
            pass.set_bind_group(0, &panel.fold_group, &[]);
            let (gx, gy) = grid_1d(panel.rows * self.mp / 4, self.ctx.workgroup());
            pass.dispatch_workgroups(gx, gy, 1);
        }
        encoder
    }

    /// Σ over all chunks, as f64: C (c_hi + c_lo, the upper triangle mirrored) into `c` (m x m), and
    /// the column sums and the shift. Where both halves of a panel fit one staging buffer: one
    /// submission per panel, the column statistics with the last (one in all for a C of one panel);
    /// else two per panel (each half in its own staging buffer) and one for the statistics. The last,
    /// partial chunk is submitted first, and the kernel times are read last (one more submission
    /// where the device has timestamp queries).
    pub fn total(&mut self, c: &mut DMatrix<f64>) -> Result<GpuGramTotal> {
        self.submit();
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
        if self.layout.splits > 1 {
            self.stats.dispatches += self.panels.len();
        }
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
                let mut encoder = self.fold_encoder(panel);
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
                let mut encoder = self.fold_encoder(panel);
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
        let kernel_time = self.kernel_time()?;
        let (sums_hi, rest) = statistics.split_at(mp);
        let (sums_lo, shift) = rest.split_at(mp);
        Ok(GpuGramTotal {
            kernel_time,
            sums: DVector::from_fn(m, |j, _| sums_hi[j] as f64 + sums_lo[j] as f64),
            shift: DVector::from_fn(m, |j, _| shift[j] as f64),
        })
    }
    /// The loop's C made in place of C's sums on the device, after [`total`](Self::total): its row
    /// panels (first row, rows, buffer) in the layout of [`GpuContext::panels`], each
    /// `(C_shifted − u uᵀ) · scale` with `u = √n (μ − s)` the `centre` (m values; zeros without
    /// centring), mirrored, zero beyond m. One submission, no wait (the loop's submissions follow it
    /// on the queue); everything else of the accumulation is freed (with split-K, C's total is first
    /// copied into a buffer of its own size, so that the loop holds C alone).
    pub fn into_loop_panels(
        self,
        centre: &[f64],
        scale: f64,
    ) -> Result<Vec<(usize, usize, wgpu::Buffer)>> {
        let (m, mp) = (self.m, self.mp);
        assert_eq!(centre.len(), m, "the centring vector");
        let ctx = Arc::clone(&self.ctx);
        let values = GramParams {
            mp: mp as u32,
            m: m as u32,
            scale: scale as f32,
            ..GramParams::default()
        };
        let params = ctx.buffer_with(
            "gram to loop params",
            bytemuck::bytes_of(&values),
            U::STORAGE,
        );
        let mut padded_centre: Vec<f32> = centre.iter().map(|&u| u as f32).collect();
        padded_centre.resize(mp, 0.0);
        let centre = ctx.buffer_with(
            "centring vector",
            bytemuck::cast_slice(&padded_centre),
            U::STORAGE,
        );
        let to_loop = ctx.pipeline(Kernel::GramToLoop, Arithmetic::F32);
        let within = ctx.pipeline(Kernel::GramMirrorWithin, Arithmetic::F32);
        let across = ctx.pipeline(Kernel::GramMirror, Arithmetic::F32);
        let mut encoder = ctx.encoder("the loop's C");
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("the loop's C"),
                timestamp_writes: None,
            });
            // One dispatch of `kernel` on `bindings` over the 4 x 4 blocks of `rows` x `cols` vec4s.
            let mut dispatch = |(kernel, compiled): (Kernel, &Compiled),
                                bindings: &[(Binding, &wgpu::Buffer)],
                                (rows, cols): (usize, usize)| {
                let group = bind_group(&ctx, (kernel, compiled), &params, bindings);
                pass.set_pipeline(&compiled.pipeline);
                pass.set_bind_group(0, &group, &[]);
                let (gx, gy) = grid_1d((rows / 4) * cols, ctx.workgroup());
                pass.dispatch_workgroups(gx, gy, 1);
            };
            // The upper blocks of every panel first: the mirrors read them.
            for c in &self.panels {
                dispatch(
                    (Kernel::GramToLoop, &to_loop),
                    &[
                        (gram::C_HI, &c.hi),
                        (gram::C_LO, &c.lo),
                        (gram::PANEL, &c.params),
                        (gram::CENTRE, &centre),
                    ],
                    (c.rows, mp / 4),
                );
            }
            for (q, c) in self.panels.iter().enumerate() {
                dispatch(
                    (Kernel::GramMirrorWithin, &within),
                    &[(gram::C_HI, &c.hi), (gram::PANEL, &c.params)],
                    (c.rows, c.rows / 4),
                );
                for source in &self.panels[..q] {
                    dispatch(
                        (Kernel::GramMirror, &across),
                        &[
                            (gram::C_HI, &c.hi),
                            (gram::PANEL, &c.params),
                            (gram::SOURCE, &source.hi),
                            (gram::SOURCE_PANEL, &source.params),
                        ],
                        (c.rows, source.rows / 4),
                    );
                }
            }
        }
        // With split-K, C's first total is copied out of the buffer that holds all of them, so that
        // the loop holds C alone (the rest is freed once the copy is done).
        let splits = self.layout.splits;
        let mut out = Vec::with_capacity(self.panels.len());
        for c in self.panels {
            if splits > 1 {
                let bytes = (c.rows * mp * 4) as u64;
                let usage = U::STORAGE | U::COPY_DST | U::COPY_SRC;
                let exact = ctx.buffer("C panel", bytes, usage);
                encoder.copy_buffer_to_buffer(&c.hi, 0, &exact, 0, bytes);
                out.push((c.row0, c.rows, exact));
            } else {
                out.push((c.row0, c.rows, c.hi));
            }
        }
        ctx.queue.submit([encoder.finish()]);
        ctx.take_error()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triangle_tiles_per_panel() {
        // mp = 300: 3 tiles a side, 6 in the triangle; panels of 128 rows hold 3, 2 and 1.
        assert_eq!(panel_tiles(300, 0, 300), 6);
        assert_eq!(panel_tiles(300, 0, 128), 3);
        assert_eq!(panel_tiles(300, 128, 128), 2);
        assert_eq!(panel_tiles(300, 256, 44), 1);
        assert_eq!(panel_tiles(4096, 0, 4096), 32 * 33 / 2);
        assert_eq!(panel_tiles(8, 0, 8), 1);
    }

    #[test]
    fn layouts_fill_the_gpu_within_their_limits() {
        let plan = |mp: usize, limit: u64| {
            let l = GramLayout::plan(mp, Panels::of_values(mp, limit, 4).unwrap(), limit);
            (l.chunk_rows, l.slice, l.splits, l.panels.count())
        };
        let lavapipe = 128 << 20;
        // Small m: one tile, as many splits as allowed (32), chunks of 16 MiB in whole slices.
        assert_eq!(plan(36, lavapipe), (115_712, 1024, 32, 1));
        // Fashion-MNIST: 28 tiles, 19 splits wanted, 5 slices a chunk.
        assert_eq!(plan(784, lavapipe), (5120, 1024, 5, 1));
        // m = 2048: 136 tiles, 4 splits wanted, 2 slices a chunk.
        assert_eq!(plan(2048, lavapipe), (2048, 1024, 2, 1));
        assert_eq!(plan(2048, 4 << 30), (2048, 1024, 2, 1));
        // m = 4096: 528 tiles fill the GPU alone; chunks of one slice.
        assert_eq!(plan(4096, 4 << 30), (1024, 1024, 1, 1));
        // Rows wider than 16 KiB: a slice a chunk, or as many rows as one binding holds (C of
        // m = 8192 is in 2 panels there, of m = 40000 in 53 of 768 rows).
        assert_eq!(plan(8192, lavapipe), (1024, 1024, 1, 2));
        assert_eq!(plan(40_000, lavapipe), (838, 838, 1, 53));
        // C in several panels: no split.
        assert_eq!(plan(300, 160_000), (133, 133, 1, 3));
    }
}
