//! Timestamp queries around compute passes (the Gram accumulation's chunks, the loop's blocks).

use super::GpuContext;
use crate::error::Result;

/// Timestamp queries at the beginning and end of compute passes, where the device has them: up to
/// `capacity` passes are written, then resolved and copied (into the same submission as a read-back, or
/// one of their own when the timer is full) and summed on the host once that submission is done.
pub(crate) struct PassTimer {
    queries: wgpu::QuerySet,
    resolved: wgpu::Buffer,
    staging: wgpu::Buffer,
    /// Passes whose timestamps are written and not read yet (query pairs 0 .. pending).
    pending: usize,
    /// Passes it holds between reads.
    capacity: usize,
    /// The ticks of every pass read so far.
    ticks: u64,
    /// Nanoseconds per tick.
    period: f32,
}

impl PassTimer {
    /// A timer for up to `max_passes` passes between reads (fewer where the device's buffers are
    /// smaller), or None where the device has no timestamp queries.
    pub fn new(ctx: &GpuContext, label: &str, max_passes: usize) -> Option<Self> {
        // Two u64 timestamps per pass.
        let capacity = max_passes.min((ctx.info.max_buffer_size / 16) as usize);
        let period = ctx.timestamp_period.filter(|_| capacity > 0)?;
        let bytes = 16 * capacity as u64;
        Some(PassTimer {
            queries: ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some(label),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * capacity as u32,
            }),
            resolved: ctx.buffer(
                label,
                bytes,
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            ),
            staging: ctx.staging(bytes),
            pending: 0,
            capacity,
            ticks: 0,
            period,
        })
    }

    /// Buffers it made (for the engines' counts).
    pub const BUFFERS: usize = 2;

    /// Whether some passes' timestamps are unread.
    pub fn has_unread(&self) -> bool {
        self.pending > 0
    }

    /// Whether it holds as many unread passes as it can: read them before the next pass.
    pub fn is_full(&self) -> bool {
        self.pending == self.capacity
    }

    /// The timestamp writes of the next pass (not full).
    pub fn next_pass(&mut self) -> wgpu::ComputePassTimestampWrites<'_> {
        debug_assert!(!self.is_full());
        let index = 2 * self.pending as u32;
        self.pending += 1;
        wgpu::ComputePassTimestampWrites {
            query_set: &self.queries,
            beginning_of_pass_write_index: Some(index),
            end_of_pass_write_index: Some(index + 1),
        }
    }

    /// Records, after the passes, the resolve of the unread timestamps and their copy into the
    /// staging buffer; [`take`](Self::take) reads them once the encoder's submission is done.
    pub fn copy_pending(&self, encoder: &mut wgpu::CommandEncoder) {
        if self.pending > 0 {
            let queries = 2 * self.pending as u32;
            encoder.resolve_query_set(&self.queries, 0..queries, &self.resolved, 0);
            let bytes = 16 * self.pending as u64;
            encoder.copy_buffer_to_buffer(&self.resolved, 0, &self.staging, 0, bytes);
        }
    }

    /// Adds the copied passes' ticks (end − begin, little-endian u64 pairs) to the total, and returns
    /// each pass's time, in the order the passes began.
    pub fn take(&mut self, ctx: &GpuContext) -> Result<Vec<std::time::Duration>> {
        if self.pending == 0 {
            return Ok(Vec::new());
        }
        let ticks = ctx.map_and_view(&self.staging, 16 * self.pending as u64, |v| {
            let words: &[u32] = bytemuck::cast_slice(v);
            words
                .chunks_exact(4)
                .map(|w| {
                    let begin = w[0] as u64 | (w[1] as u64) << 32;
                    let end = w[2] as u64 | (w[3] as u64) << 32;
                    end.saturating_sub(begin)
                })
                .collect::<Vec<u64>>()
        })?;
        self.ticks += ticks.iter().sum::<u64>();
        self.pending = 0;
        Ok(ticks.into_iter().map(|t| self.duration(t)).collect())
    }

    /// `ticks` as a duration.
    fn duration(&self, ticks: u64) -> std::time::Duration {
        std::time::Duration::from_nanos((ticks as f64 * self.period as f64) as u64)
    }

    /// Reads the unread passes in a submission of its own (one submission and one wait); returns their
    /// times as [`take`](Self::take) does.
    pub fn read_now(&mut self, ctx: &GpuContext) -> Result<Vec<std::time::Duration>> {
        let mut encoder = ctx.encoder("read the pass times");
        self.copy_pending(&mut encoder);
        ctx.queue.submit([encoder.finish()]);
        self.take(ctx)
    }

    /// The GPU time of every pass read so far; None while some are unread.
    pub fn total(&self) -> Option<std::time::Duration> {
        (self.pending == 0).then(|| self.duration(self.ticks))
    }
}
