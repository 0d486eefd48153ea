//! The Gram matrix on the GPU: chunks of shifted samples streamed to the device, `C += Xᵀ X` per chunk
//! with a compensated running sum (c_hi + c_lo), C read back once as f64.

use super::kernels::Kernel;
use super::{padded, GpuContext};
use crate::error::Result;
use nalgebra::DMatrix;
use std::sync::Arc;
use wgpu::BufferUsages as U;

/// Samples per chunk at most: short enough that a chunk's f32 partial sums stay accurate (the chunks
/// are then combined with TwoSum).
const MAX_CHUNK_ROWS: usize = 4096;

pub(crate) struct GpuGram {
    ctx: Arc<GpuContext>,
    m: usize,
    mp: usize,
    chunk_rows: usize,
    chunk: wgpu::Buffer,
    c_hi: wgpu::Buffer,
    c_lo: wgpu::Buffer,
    /// The chunk's parameters (rows, mp), rewritten before each chunk.
    params: wgpu::Buffer,
    pipeline: wgpu::ComputePipeline,
    group: wgpu::BindGroup,
    /// Submissions so far (one per chunk).
    pub submissions: usize,
}

impl std::fmt::Debug for GpuGram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuGram")
            .field("adapter", &self.ctx.info.name)
            .field("m", &self.m)
            .finish()
    }
}

impl GpuGram {
    pub fn new(ctx: Arc<GpuContext>, m: usize) -> Result<Self> {
        ctx.check_fits(m)?;
        let mp = padded(m);
        let limit = ctx
            .info
            .max_storage_buffer_binding_size
            .min(ctx.info.max_buffer_size);
        let rows_fit = (limit / (mp as u64 * 4)) as usize;
        let chunk_rows = MAX_CHUNK_ROWS.min(rows_fit).max(1);
        let storage = U::STORAGE | U::COPY_DST | U::COPY_SRC;
        let chunk = ctx.buffer(
            "data chunk",
            (chunk_rows * mp * 4) as u64,
            U::STORAGE | U::COPY_DST,
        );
        let c_hi = ctx.buffer("C (high part)", (mp * mp * 4) as u64, storage);
        let c_lo = ctx.buffer("C (low part)", (mp * mp * 4) as u64, storage);
        let params = ctx.buffer("gram params", 16, U::STORAGE | U::COPY_DST);
        let pipeline = ctx.pipeline(Kernel::GramChunk);
        let group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("gram"),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: params.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: chunk.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: c_hi.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 3,
                    resource: c_lo.as_entire_binding(),
                },
            ],
        });
        ctx.take_error()?;
        Ok(GpuGram {
            ctx,
            m,
            mp,
            chunk_rows,
            chunk,
            c_hi,
            c_lo,
            params,
            pipeline,
            group,
            submissions: 0,
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

    /// Adds one block of `rows` shifted samples, row-major with rows of `padded_features()` values
    /// (zeros beyond m), rows ≤ block_rows.
    pub fn add(&mut self, data: &[f32], rows: usize) {
        let ctx = &self.ctx;
        ctx.queue
            .write_buffer(&self.chunk, 0, bytemuck::cast_slice(data));
        // The same parameter buffer every chunk: the previous chunk was submitted before this write.
        let params = [rows as u32, self.mp as u32, 0, 0];
        ctx.queue
            .write_buffer(&self.params, 0, bytemuck::cast_slice(&params));
        let tiles = self.mp.div_ceil(64) as u32;
        let mut encoder = ctx.encoder("gram");
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("gram"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &self.group, &[]);
            pass.dispatch_workgroups(tiles, tiles, 1);
        }
        // One submission per chunk: the next chunk's write must land after this dispatch ran.
        ctx.queue.submit([encoder.finish()]);
        self.submissions += 1;
    }

    /// Σ over all chunks, as f64 (c_hi + c_lo, upper triangle mirrored), m x m.
    pub fn total(&self) -> Result<DMatrix<f64>> {
        let bytes = (self.mp * self.mp * 4) as u64;
        let staging = self.ctx.staging(bytes);
        let hi = self
            .ctx
            .read_f32(self.ctx.encoder("read C"), &self.c_hi, &staging, bytes)?;
        let lo = self
            .ctx
            .read_f32(self.ctx.encoder("read C"), &self.c_lo, &staging, bytes)?;
        let mp = self.mp;
        Ok(DMatrix::from_fn(self.m, self.m, |i, j| {
            let (r, c) = if i <= j { (i, j) } else { (j, i) };
            hi[r * mp + c] as f64 + lo[r * mp + c] as f64
        }))
    }
}
