//! The GPU path: device set-up, the kernel registry, the Gram accumulation and the GPU engine.
//!
//! Device set-up is kept apart from the GPU work: [`GpuContext`] owns the adapter, device and queue and
//! turns wgpu's error reports (validation, out of memory, device lost) into [`Error::Gpu`] instead of
//! wgpu's default panic; the engine and the Gram code take a context and record work into it.

pub(crate) mod contract;
mod engine;
pub(crate) use engine::jacobi_fits;
mod gram;
pub(crate) mod kernels;
mod sparse;
mod timer;

pub(crate) use engine::GpuEngine;
pub(crate) use gram::{GpuGram, GramLayout};
pub(crate) use sparse::{SparseLayout, MAX_MEAN_WEIGHT};

use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};

/// What `devices()` reports of one adapter.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceInfo {
    /// The adapter's name, e.g. "NVIDIA H200" or "llvmpipe (LLVM 15.0.6, 256 bits)".
    pub name: String,
    /// The graphics API wgpu uses for it: "vulkan", "metal", "dx12" or "gl".
    pub backend: String,
    /// "discrete", "integrated", "cpu", "virtual" or "other".
    pub device_type: String,
    /// The largest buffer the adapter allows, in bytes.
    pub max_buffer_size: u64,
    /// The largest storage-buffer binding, in bytes.
    pub max_storage_buffer_binding_size: u64,
    /// The most invocations in one workgroup.
    pub max_compute_invocations_per_workgroup: u32,
    /// Whether it has timestamp queries (TIMESTAMP_QUERY), which time the Gram kernels
    /// ([`Timings::gram_kernels`](crate::Timings::gram_kernels)).
    pub timestamp_queries: bool,
    /// Whether laepca runs f64 loops on it ([`LaePca::gpu_precision`](crate::LaePca::gpu_precision)):
    /// f64 shaders (wgpu's SHADER_F64) on Vulkan. Not DX12 (HLSL has no f64 square root, which the
    /// loop's kernels take), Metal or GL (no f64 at all).
    pub shader_f64: bool,
}

impl DeviceInfo {
    fn new(info: &wgpu::AdapterInfo, limits: &wgpu::Limits, features: wgpu::Features) -> Self {
        DeviceInfo {
            name: info.name.clone(),
            backend: info.backend.to_str().to_string(),
            device_type: match info.device_type {
                wgpu::DeviceType::DiscreteGpu => "discrete",
                wgpu::DeviceType::IntegratedGpu => "integrated",
                wgpu::DeviceType::Cpu => "cpu",
                wgpu::DeviceType::VirtualGpu => "virtual",
                wgpu::DeviceType::Other => "other",
            }
            .to_string(),
            max_buffer_size: limits.max_buffer_size,
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            timestamp_queries: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            shader_f64: features.contains(wgpu::Features::SHADER_F64)
                && info.backend == wgpu::Backend::Vulkan,
        }
    }

    /// The largest number of features whose C (padded to a multiple of 4, f32) fits the device's
    /// limits: C is held in row panels of at least 128 rows, each in one buffer and one
    /// storage binding. (Device memory, which wgpu does not report, may bind first: C takes 4·m² bytes
    /// in the loop and 8·m² while it is accumulated.) An f64 loop's C, of 8-byte values, is bounded by
    /// half this m.
    pub fn max_features(&self) -> usize {
        max_features(
            binding_limit(self.max_buffer_size, self.max_storage_buffer_binding_size),
            4,
        )
    }
}

/// The shaders index within a binding, and count its values, with u32: fewer than 2³² f32 values
/// (16 GiB), whatever the adapter allows.
const MAX_BINDING_BYTES: u64 = 4 * u32::MAX as u64;

/// The rows of the C·W kernel's (`c_mul`'s) tiles: its grid has one workgroup per 64 rows of C.
pub(crate) const C_MUL_ROWS: usize = 64;

/// The most rows of C: `c_mul`'s grid has one workgroup per [`C_MUL_ROWS`] rows, at most 65535 in a
/// dimension (WebGPU's max_compute_workgroups_per_dimension).
const MAX_ROWS: usize = 65535 * C_MUL_ROWS;

/// The rows of C's panels are a multiple of this: the Gram kernel's tile size (128), a multiple of
/// `c_mul`'s tile height, so that no tile of either spans two panels.
pub(crate) const PANEL_ROWS: usize = 128;

/// The most bytes one buffer bound as storage may hold here, and the name of the limit that binds.
fn binding_limit(max_buffer_size: u64, max_binding: u64) -> (u64, &'static str) {
    let (limit, name) = if max_binding <= max_buffer_size {
        (max_binding, "max_storage_buffer_binding_size")
    } else {
        (max_buffer_size, "max_buffer_size")
    };
    if limit > MAX_BINDING_BYTES {
        (MAX_BINDING_BYTES, "u32 indexing in the shaders")
    } else {
        (limit, name)
    }
}

/// The largest m (a multiple of 4) whose panels of [`PANEL_ROWS`] rows of `value_bytes`-byte values fit
/// `limit` bytes.
fn max_features((limit, _): (u64, &str), value_bytes: usize) -> usize {
    let mp = limit / (PANEL_ROWS * value_bytes) as u64;
    (mp.min(MAX_ROWS as u64) as usize) / 4 * 4
}

/// How C (mp x mp, row-major, f32 or f64) is split into row panels, one buffer each: every panel but
/// the last has `rows` rows (a multiple of [`PANEL_ROWS`], or all of C in one panel), the last the
/// rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Panels {
    mp: usize,
    rows: usize,
}

impl Panels {
    /// The panels of an mp x mp matrix of values of `value_bytes` bytes whose buffers may hold at most
    /// `limit` bytes (None: not even [`PANEL_ROWS`] rows fit).
    pub fn of_values(mp: usize, limit: u64, value_bytes: u64) -> Option<Panels> {
        let row_bytes = mp as u64 * value_bytes;
        let rows_fit = (limit / row_bytes.max(1)).min(usize::MAX as u64) as usize;
        let rows = if rows_fit >= mp {
            mp
        } else {
            rows_fit / PANEL_ROWS * PANEL_ROWS
        };
        (rows > 0 || mp == 0).then_some(Panels { mp, rows })
    }

    /// The panels' (first row, rows), top to bottom.
    pub fn iter(self) -> impl Iterator<Item = (usize, usize)> {
        let Panels { mp, rows } = self;
        (0..mp)
            .step_by(rows.max(1))
            .map(move |r0| (r0, rows.min(mp - r0)))
    }

    /// The number of panels.
    pub fn count(self) -> usize {
        self.mp.div_ceil(self.rows.max(1))
    }

    /// The rows of the largest panel.
    pub fn max_rows(self) -> usize {
        self.rows
    }
}

fn instance() -> wgpu::Instance {
    // WGPU_BACKEND (e.g. "vulkan", "metal", "dx12") restricts the backends.
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

/// Every adapter wgpu sees (honouring WGPU_BACKEND), with its key limits.
pub fn devices() -> Vec<DeviceInfo> {
    let instance = instance();
    let adapters =
        pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all().with_env()));
    adapters
        .iter()
        .map(|a| DeviceInfo::new(&a.get_info(), &a.limits(), a.features()))
        .collect()
}

/// An open GPU (adapter, device, queue and its compiled kernels) to reuse across fits.
///
/// Opening a device costs tens of milliseconds and each kernel is compiled on its first use; a
/// `GpuDevice` pays both once. Hand it to fits with [`LaePca::device`](crate::LaePca::device) (fits
/// without one open a device of their own). Clones share the device; it can be used from several
/// threads.
///
/// ```no_run
/// # fn main() -> laepca::Result<()> {
/// use laepca::{Backend, GpuDevice, LaePca};
/// let gpu = GpuDevice::open(None)?;
/// let x = nalgebra::DMatrix::<f32>::from_fn(500, 20, |i, j| ((i * 7 + j * 13) % 17) as f32);
/// for k in 1..=3 {
///     let fit = LaePca::new(k).backend(Backend::Gpu).device(gpu.clone()).fit(&x)?;
///     println!("k = {k}: {} iterations on {}", fit.iterations, gpu.info().name);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct GpuDevice {
    ctx: Arc<GpuContext>,
}

impl GpuDevice {
    /// Opens the adapter whose name contains `adapter` (case-insensitive), else the one
    /// `WGPU_ADAPTER_NAME` names, else wgpu's high-performance default. No adapter of that name, or
    /// none at all, is [`Error::NoAdapter`].
    pub fn open(adapter: Option<&str>) -> Result<Self> {
        Ok(GpuDevice {
            ctx: Arc::new(GpuContext::open(adapter)?),
        })
    }

    /// Like [`open`](Self::open), with the device's largest buffer and storage binding capped at
    /// `bytes` (the adapter's own limit where that is lower). wgpu then enforces the cap like any
    /// device limit, so this runs a fit as it would run on a device with less room per buffer: C is
    /// split into more row panels and the data into smaller chunks. The tests use it to exercise the
    /// split on a small problem.
    pub fn open_with_binding_limit(adapter: Option<&str>, bytes: u64) -> Result<Self> {
        Ok(GpuDevice {
            ctx: Arc::new(GpuContext::open_adapter(
                select_adapter(adapter)?,
                Some(bytes),
            )?),
        })
    }

    /// Like [`open`](Self::open), but gives back the adapter's description without opening a device
    /// when `accept` refuses it.
    pub(crate) fn open_accepted(
        adapter: Option<&str>,
        accept: impl FnOnce(&DeviceInfo) -> bool,
    ) -> Result<std::result::Result<Self, DeviceInfo>> {
        let chosen = select_adapter(adapter)?;
        let info = DeviceInfo::new(&chosen.get_info(), &chosen.limits(), chosen.features());
        if !accept(&info) {
            return Ok(Err(info));
        }
        Ok(Ok(GpuDevice {
            ctx: Arc::new(GpuContext::open_adapter(chosen, None)?),
        }))
    }

    /// The adapter and its limits.
    pub fn info(&self) -> &DeviceInfo {
        &self.ctx.info
    }

    pub(crate) fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// The device of an open context (one an accumulation runs on).
    pub(crate) fn of_context(ctx: Arc<GpuContext>) -> Self {
        GpuDevice { ctx }
    }
}

impl std::fmt::Debug for GpuDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuDevice")
            .field("adapter", &self.ctx.info.name)
            .field("backend", &self.ctx.info.backend)
            .finish()
    }
}

/// Two handles are equal when they share one open device.
impl PartialEq for GpuDevice {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.ctx, &other.ctx)
    }
}

/// The adapter whose name contains `adapter_name` (else the one WGPU_ADAPTER_NAME names, else wgpu's
/// default, preferring a high-performance GPU); none of that name is [`Error::NoAdapter`].
fn select_adapter(adapter_name: Option<&str>) -> Result<wgpu::Adapter> {
    let instance = instance();
    let adapter = match requested_adapter_name(adapter_name) {
        Some(wanted) => {
            let all =
                pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all().with_env()));
            let needle = wanted.to_lowercase();
            let names: Vec<String> = all.iter().map(|a| a.get_info().name).collect();
            all.into_iter()
                .find(|a| a.get_info().name.to_lowercase().contains(&needle))
                .ok_or_else(|| {
                    Error::NoAdapter(format!(
                        "no adapter named like '{wanted}' (adapters: {names:?})"
                    ))
                })?
        }
        None => {
            let options = wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::from_env()
                    .unwrap_or(wgpu::PowerPreference::HighPerformance),
                ..Default::default()
            };
            pollster::block_on(instance.request_adapter(&options))
                .map_err(|e| Error::NoAdapter(format!("wgpu found no adapter ({e})")))?
        }
    };
    Ok(adapter)
}

/// The adapter name asked for: the builder's, else a non-empty WGPU_ADAPTER_NAME.
pub(crate) fn requested_adapter_name(adapter_name: Option<&str>) -> Option<String> {
    adapter_name.map(str::to_string).or_else(|| {
        std::env::var("WGPU_ADAPTER_NAME")
            .ok()
            .filter(|s| !s.is_empty())
    })
}

/// An open device with its queue, pipelines and error reports.
pub(crate) struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: DeviceInfo,
    /// Nanoseconds per timestamp tick where the device has timestamp queries (TIMESTAMP_QUERY),
    /// else None.
    pub timestamp_period: Option<f32>,
    pipelines: Mutex<kernels::PipelineCache>,
    /// The first error wgpu reported outside an error scope (validation, out of memory, device lost).
    errors: Arc<Mutex<Option<String>>>,
}

impl GpuContext {
    /// Opens the adapter whose name contains `adapter_name` (else the one WGPU_ADAPTER_NAME names, else
    /// wgpu's default, preferring a high-performance GPU), with the adapter's own limits. A name that no
    /// adapter matches is [`Error::NoAdapter`] (wgpu's own WGPU_ADAPTER_NAME helper panics instead).
    pub fn open(adapter_name: Option<&str>) -> Result<Self> {
        Self::open_adapter(select_adapter(adapter_name)?, None)
    }

    /// Opens a device on `adapter`, with the adapter's own limits, the largest buffer and storage
    /// binding capped at `buffer_cap` bytes when given.
    fn open_adapter(adapter: wgpu::Adapter, buffer_cap: Option<u64>) -> Result<Self> {
        let mut limits = adapter.limits();
        if let Some(cap) = buffer_cap {
            // wgpu's floor for both (its downlevel defaults allow no less than 16 bytes of binding).
            let cap = cap.max(16);
            limits.max_buffer_size = limits.max_buffer_size.min(cap);
            limits.max_storage_buffer_binding_size =
                limits.max_storage_buffer_binding_size.min(cap);
        }
        let info = DeviceInfo::new(&adapter.get_info(), &limits, adapter.features());
        let needed = kernels::Kernel::most_storage_buffers();
        if (limits.max_storage_buffers_per_shader_stage as usize) < needed {
            return Err(Error::Gpu(format!(
                "{} ({}) allows {} storage buffers per shader stage; laepca's kernels use up to {needed}",
                info.name, info.backend, limits.max_storage_buffers_per_shader_stage
            )));
        }
        // Timestamp queries time the kernels, and f64 shaders run f64 loops, where the adapter has them.
        let mut features = wgpu::Features::empty();
        if info.timestamp_queries {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        if info.shader_f64 {
            features |= wgpu::Features::SHADER_F64;
        }
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("laepca"),
            required_limits: limits.clone(),
            required_features: features,
            ..Default::default()
        }))
        .map_err(|e| Error::Gpu(format!("could not open {}: {e}", info.name)))?;
        let errors = Arc::new(Mutex::new(None));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(|| e.to_string());
        }));
        let sink = errors.clone();
        device.set_device_lost_callback(move |reason, message| {
            let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(|| format!("device lost ({reason:?}): {message}"));
        });
        // The largest power of two ≤ 256 the adapter allows for one-dimensional workgroups.
        let mut workgroup = 256;
        while workgroup
            > limits
                .max_compute_invocations_per_workgroup
                .min(limits.max_compute_workgroup_size_x)
        {
            workgroup /= 2;
        }
        log::info!(
            "GPU: {} ({}, {})",
            info.name,
            info.backend,
            info.device_type
        );
        let timestamp_period = info.timestamp_queries.then(|| queue.get_timestamp_period());
        Ok(GpuContext {
            device,
            queue,
            info,
            timestamp_period,
            pipelines: Mutex::new(kernels::PipelineCache::new(workgroup)),
            errors,
        })
    }

    /// The compiled pipeline of `kernel` in `arithmetic` and its bind group layout (compiled on first
    /// use, then cached).
    pub fn pipeline(
        &self,
        kernel: kernels::Kernel,
        arithmetic: crate::Arithmetic,
    ) -> kernels::Compiled {
        let mut cache = self.pipelines.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(&self.device, kernel, arithmetic).clone()
    }

    /// The one-dimensional workgroup size chosen for this adapter.
    pub fn workgroup(&self) -> u32 {
        self.pipelines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .workgroup
    }

    /// The error wgpu reported since the device opened, if any.
    pub fn take_error(&self) -> Result<()> {
        let slot = self.errors.lock().unwrap_or_else(|p| p.into_inner()).take();
        match slot {
            Some(msg) => Err(Error::Gpu(msg)),
            None => Ok(()),
        }
    }

    /// The most bytes one storage buffer may hold on this device, and the limit's name.
    pub fn binding_limit(&self) -> (u64, &'static str) {
        binding_limit(
            self.info.max_buffer_size,
            self.info.max_storage_buffer_binding_size,
        )
    }

    /// The row panels of C for n_features = m; an m whose panels of [`PANEL_ROWS`] rows exceed one
    /// binding is [`Error::TooLargeForDevice`].
    pub fn panels(&self, m: usize) -> Result<Panels> {
        self.panels_of(m, crate::Arithmetic::F32)
    }

    /// [`panels`](Self::panels) for C's values in `arithmetic`.
    pub fn panels_of(&self, m: usize, arithmetic: crate::Arithmetic) -> Result<Panels> {
        let mp = padded(m);
        let value_bytes = arithmetic.bytes();
        if mp > MAX_ROWS {
            // (C in f64 on the host would need 140 TB first.)
            return Err(Error::Unsupported {
                detail: format!(
                    "n_features = {m} on the GPU: its kernels dispatch one workgroup per \
                     {C_MUL_ROWS} rows of C, at most 65535 (n_features ≤ {MAX_ROWS})"
                ),
            });
        }
        let limit = self.binding_limit();
        Panels::of_values(mp, limit.0, value_bytes as u64).ok_or(Error::TooLargeForDevice {
            m,
            what: format!("a panel of {PANEL_ROWS} rows of C"),
            needed: (PANEL_ROWS * mp * value_bytes) as u64,
            limit_name: limit.1,
            limit: limit.0,
            max_m: max_features(limit, value_bytes),
        })
    }

    /// On a software adapter (lavapipe, llvmpipe: device memory is the host's), checks that `bytes` of
    /// device buffers for `what` fit the host memory available, so that a software device is refused
    /// like the host's own allocations instead of being killed for memory. Elsewhere wgpu does not say
    /// how much device memory there is: an allocation it cannot make is its out-of-memory report.
    pub fn check_device_memory(&self, what: impl Fn() -> String, bytes: Option<u64>) -> Result<()> {
        if self.info.device_type != "cpu" {
            return Ok(());
        }
        let count = bytes.and_then(|b| usize::try_from(b).ok());
        crate::alloc::check(what, count, 1, None).map_err(Error::from)
    }

    /// Checks that a buffer of `bytes` bytes, needed for `what` at n_features = m, fits one binding.
    pub fn check_binding(&self, m: usize, what: impl Fn() -> String, bytes: u64) -> Result<()> {
        let (limit, limit_name) = self.binding_limit();
        if bytes <= limit {
            return Ok(());
        }
        let per_feature = bytes.div_ceil(padded(m).max(1) as u64);
        Err(Error::TooLargeForDevice {
            m,
            what: what(),
            needed: bytes,
            limit_name,
            limit,
            max_m: (limit / per_feature.max(1)) as usize / 4 * 4,
        })
    }

    pub fn buffer(&self, label: &str, bytes: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(16),
            usage,
            mapped_at_creation: false,
        })
    }

    /// A new buffer holding `bytes` (written through the queue, so it is there for every later
    /// submission), for `usage` and COPY_DST.
    pub fn buffer_with(
        &self,
        label: &str,
        bytes: &[u8],
        usage: wgpu::BufferUsages,
    ) -> wgpu::Buffer {
        let b = self.buffer(
            label,
            bytes.len() as u64,
            usage | wgpu::BufferUsages::COPY_DST,
        );
        self.queue.write_buffer(&b, 0, bytes);
        b
    }

    /// Submits `encoder` (whose last commands copy into `staging`, MAP_READ | COPY_DST), waits, and
    /// returns the first `bytes` of `staging` as f32.
    pub fn submit_and_read(
        &self,
        encoder: wgpu::CommandEncoder,
        staging: &wgpu::Buffer,
        bytes: u64,
    ) -> Result<Vec<f32>> {
        self.submit_and_view(encoder, staging, bytes, |v| v.to_vec())
    }

    /// Maps the first `bytes` of `staging` once the submissions that copy into it are done (waiting
    /// for them) and hands them to `read` as f32.
    pub fn map_and_view<R>(
        &self,
        staging: &wgpu::Buffer,
        bytes: u64,
        read: impl FnOnce(&[f32]) -> R,
    ) -> Result<R> {
        self.map_and_view_after(staging, bytes, None, read)
    }

    /// [`map_and_view`](Self::map_and_view), waiting only for the submission `after` (and those
    /// before it) where given, so that later submissions keep the GPU busy meanwhile; else for every
    /// submission so far. `after` must be the last submission that uses `staging` (else the mapping
    /// waits for a later one, which this wait does not cover).
    pub fn map_and_view_after<R>(
        &self,
        staging: &wgpu::Buffer,
        bytes: u64,
        after: Option<wgpu::SubmissionIndex>,
        read: impl FnOnce(&[f32]) -> R,
    ) -> Result<R> {
        self.map_bytes_after(staging, bytes, after, |v| {
            read(bytemuck::cast_slice::<u8, f32>(v))
        })
    }

    /// [`map_and_view_after`](Self::map_and_view_after), handing `read` the mapped bytes.
    pub fn map_bytes_after<R>(
        &self,
        staging: &wgpu::Buffer,
        bytes: u64,
        after: Option<wgpu::SubmissionIndex>,
        read: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
        staging
            .slice(..bytes)
            .map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
        let wait = wgpu::PollType::Wait {
            submission_index: after,
            timeout: None,
        };
        self.device
            .poll(wait)
            .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
        self.take_error()?;
        match pollster::block_on(rx.receive()) {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(Error::Gpu(format!("reading back: {e}"))),
            None => {
                return Err(Error::Gpu(
                    "reading back: the map request was dropped".into(),
                ))
            }
        }
        let out = {
            let view = staging
                .slice(..bytes)
                .get_mapped_range()
                .map_err(|e| Error::Gpu(format!("reading back: {e:?}")))?;
            read(&view)
        };
        staging.unmap();
        Ok(out)
    }

    /// [`submit_and_read`](Self::submit_and_read), handing the mapped values to `read` instead of
    /// copying them (no host copy of the staging buffer).
    pub fn submit_and_view<R>(
        &self,
        encoder: wgpu::CommandEncoder,
        staging: &wgpu::Buffer,
        bytes: u64,
        read: impl FnOnce(&[f32]) -> R,
    ) -> Result<R> {
        self.queue.submit([encoder.finish()]);
        self.map_and_view(staging, bytes, read)
    }

    /// A staging buffer for read-backs of `bytes`.
    pub fn staging(&self, bytes: u64) -> wgpu::Buffer {
        self.buffer(
            "staging",
            bytes,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )
    }

    pub fn encoder(&self, label: &str) -> wgpu::CommandEncoder {
        self.device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) })
    }
}

/// m rounded up to a multiple of 4 (vec4 loads of C's rows and of the data's rows).
pub(crate) fn padded(m: usize) -> usize {
    m.div_ceil(4) * 4
}

/// Workgroups for `n` invocations of `wg` threads, spread over x and y within the 65535 limit.
pub(crate) fn grid_1d(n: usize, wg: u32) -> (u32, u32) {
    let groups = n.div_ceil(wg as usize).max(1);
    if groups <= 65535 {
        (groups as u32, 1)
    } else {
        (65535, groups.div_ceil(65535) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panels_cover_c_in_tiles_of_128_rows() {
        let rows =
            |mp, limit| Panels::of_values(mp, limit, 4).map(|p| p.iter().collect::<Vec<_>>());
        // A 128-row panel of mp = 300 is 153600 bytes.
        let split = vec![(0, 128), (128, 128), (256, 44)];
        assert_eq!(rows(300, 160_000), Some(split));
        assert_eq!(Panels::of_values(300, 160_000, 4).unwrap().count(), 3);
        assert_eq!(rows(300, 320_000), Some(vec![(0, 256), (256, 44)]));
        assert_eq!(rows(300, 300 * 300 * 4), Some(vec![(0, 300)]));
        assert_eq!(rows(256, 256 * 4 * 128), Some(vec![(0, 128), (128, 128)]));
        // C smaller than a tile fits as one panel; a 128-row panel that exceeds the limit does not.
        assert_eq!(rows(8, 8 * 8 * 4), Some(vec![(0, 8)]));
        assert_eq!(rows(300, 153_599), None);
        assert_eq!(max_features((160_000, ""), 4), 312);
        assert_eq!(max_features((160_000, ""), 8), 156);
        assert_eq!(max_features((u64::MAX, ""), 4), MAX_ROWS);
    }

    /// The storage buffers an adapter must allow per stage: the default solver's fused mul_blocks
    /// (parameters, Y, two sets of three blocks, four outputs): more than WebGPU's default of 8, within
    /// what Mesa's lavapipe and its GL driver allow (CI runs it on both).
    #[test]
    fn the_largest_kernel_binds_twelve_storage_buffers() {
        use kernels::Kernel;
        assert_eq!(Kernel::MulBlocks.bindings().len() + 1, 12);
        assert_eq!(Kernel::most_storage_buffers(), 12);
    }
}
