//! The GPU engine: every [`Engine`] call is recorded as a compute dispatch into one open pass (one
//! pass per dispatch when profiling kernels); only [`Engine::submit_check`] submits and
//! [`Engine::read_check`] reads back (the few stopping quantities recorded since the last check),
//! besides the uploads, the final download and the read of a full pass timer.
//! Parameter buffers and bind groups are made the first time a call site is seen and reused after, so
//! the loop creates no buffer per iteration.

use super::contract::{
    eigen, matmul, reduce, small, sparse, split_coefficient, update, Binding, CombineTerm,
    EigenParams, MatmulParams, ReduceParams, SmallParams, SparseParams, UpdateParams, WgslStruct,
    COMBINE_SOURCE_OUT, PARAMS,
};
use super::kernels::Kernel;
use super::sparse::{SparseLayout, SparseOnDevice};
use super::timer::PassTimer;
use super::{grid_1d, padded, GpuContext, C_MUL_ROWS};
use crate::data::DeviceGram;
use crate::engine::{
    c_mul_inverse_unfused, check_mul_blocks, check_outputs, CallCheck, Coef, Engine, EngineStats,
    Projected, Scalar, Small, Tall, MAX_COMBINE_TERMS, MAX_SCALARS, MAX_UNREAD_CHECKS,
    ORTHO_DROP_ULPS, SEARCH_BLOCKS,
};
use crate::error::{Error, Result};
use crate::Arithmetic;
use nalgebra::DMatrix;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use wgpu::BufferUsages as U;

/// Passes of the loop whose timestamps may wait to be read: when as many are pending, they are read
/// before the next pass opens (one more submission and a wait for the GPU). A check reads them when no
/// later check is unread: every check of the loops that do not overlap their checks; in auto's
/// overlapped loop, none before the end, so a fit of more than this many iterations waits once for
/// every this many (the fits of tests/passes.rs take 6 to 20 iterations).
const TIMED_PASSES: usize = 256;

/// A buffer of the engine, as bind-group cache keys name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Buf {
    /// Row panel i of C.
    C(usize),
    /// Row panel i of a sparse X, or of Xᵀ (the operator route).
    SparseRows(usize),
    SparseColumns(usize),
    /// The operator route's μ, its X·W and its two k-vectors μᵀW and 1ᵀ(X·W − 1μᵀW).
    SparseMean,
    SparseY,
    SparseShift,
    SparseYSums,
    Tall(usize),
    Small(usize),
    Projected(usize),
    EigenWork,
    /// c_mul_gram's parts of xᵀ(C x).
    GramParts,
    Scalars,
    History,
    Dummy,
}

/// A dispatch's identity: the kernel, its buffer bindings and its parameter bytes (binding 0).
type BindKey = (Kernel, Vec<(u32, Buf)>, Vec<u8>);

/// A submitted check: its staging slot, the values it holds, its submission.
struct UnreadCheck {
    slot: usize,
    recorded: usize,
    submission: wgpu::SubmissionIndex,
}

/// What the engine multiplies by.
enum Multiplier {
    /// C (the Gram routes) in row panels: (first row, rows, buffer).
    Formed(Vec<(usize, usize, wgpu::Buffer)>),
    /// A sparse X (the operator route), C never formed.
    Sparse(SparseOnDevice),
}

/// A value type of the device's buffers: f32 or f64.
trait DeviceScalar: bytemuck::Pod {
    fn from_f64(v: f64) -> Self;
}

impl DeviceScalar for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

impl DeviceScalar for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
}

/// The values of a read-back buffer of `arithmetic` values, as f64.
fn decode(bytes: &[u8], arithmetic: Arithmetic) -> Vec<f64> {
    match arithmetic {
        Arithmetic::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_ne_bytes(b.try_into().expect("4 bytes")) as f64)
            .collect(),
        Arithmetic::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_ne_bytes(b.try_into().expect("8 bytes")))
            .collect(),
    }
}

pub(crate) struct GpuEngine<'a> {
    ctx: &'a GpuContext,
    /// The arithmetic of its buffers and kernels.
    arithmetic: Arithmetic,
    m: usize,
    mp: usize,
    k: usize,
    c: Multiplier,
    talls: Vec<wgpu::Buffer>,
    smalls: Vec<wgpu::Buffer>,
    projected: Vec<wgpu::Buffer>,
    /// The eigen kernels' work space (eigenvectors, rotations, ranks, scaling, the converged flag; made
    /// on first use).
    eigen_work: Option<wgpu::Buffer>,
    /// c_mul_gram's parts of xᵀ(C x) (made on first use).
    gram_parts: Option<wgpu::Buffer>,
    /// The loop iterations an eigen dispatch may run per invocation ([`JACOBI_DISPATCH_BUDGET`]; tests
    /// set others to check that the split changes no bit).
    jacobi_budget: usize,
    scalars: wgpu::Buffer,
    /// history[0] = values recorded since the last check, then the values.
    history: wgpu::Buffer,
    /// The history's read-back staging, one per submitted check that may be unread.
    history_staging: [wgpu::Buffer; MAX_UNREAD_CHECKS],
    /// The submitted checks not yet read, oldest first.
    unread: std::collections::VecDeque<UnreadCheck>,
    /// The engine limits, the same as the CPU engine's (the history's capacity among them).
    checks: CallCheck,
    dummy: wgpu::Buffer,
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
    params: HashMap<Vec<u8>, wgpu::Buffer>,
    bind_groups: HashMap<BindKey, wgpu::BindGroup>,
    /// Products of C with a block of k columns recorded.
    passes: usize,
    /// Staging for the final read-back of the weights (made once: `download` allocates nothing).
    weights_staging: wgpu::Buffer,
    stats: EngineStats,
    /// Time spent uploading C and the weights, and reading the weights back.
    upload_time: Duration,
    readback_time: Duration,
    /// Times the loop's compute passes (where the device has timestamp queries).
    timer: Option<PassTimer>,
    /// Per-kernel times, when profiling ([`GpuEngine::profile_kernels`]).
    profile: Option<KernelProfile>,
}

/// The per-kernel times of a profiled loop: the kernels of the timed passes not yet read, in order,
/// and each kernel's dispatches and time so far.
#[derive(Default)]
struct KernelProfile {
    unread: Vec<Kernel>,
    totals: Vec<(Kernel, usize, Duration)>,
}

impl<'a> GpuEngine<'a> {
    /// An engine over C (f64, m x m; sent once in `arithmetic`) for k components, checking at most
    /// every `check_every` iterations. f64 needs a device with f64 shaders
    /// ([`DeviceInfo::shader_f64`](super::DeviceInfo::shader_f64)).
    pub fn new(
        ctx: &'a GpuContext,
        c: &DMatrix<f64>,
        k: usize,
        check_every: usize,
        arithmetic: Arithmetic,
    ) -> Result<Self> {
        let start = Instant::now();
        if arithmetic == Arithmetic::F64 && !ctx.info.shader_f64 {
            return Err(Error::Unsupported {
                detail: format!(
                    "an f64 loop on {}, which has no f64 shaders (SHADER_F64)",
                    ctx.info.name
                ),
            });
        }
        let m = c.nrows();
        let layout = ctx.panels_of(m, arithmetic)?;
        let bytes = arithmetic.bytes();
        let ty = arithmetic.name();
        // C's panels, and one panel twice on the host while it is uploaded (its copy in the device's
        // arithmetic and wgpu's staging of it).
        let mp64 = padded(m) as u64;
        ctx.check_device_memory(
            || format!("n_features = {m}: C in {ty} on the software GPU"),
            mp64.checked_mul(mp64 + 2 * layout.max_rows() as u64)
                .and_then(|e| e.checked_mul(bytes as u64)),
        )?;
        check_tall_binding(ctx, m, k, arithmetic)?;
        let c_panels = match arithmetic {
            Arithmetic::F32 => upload_panels::<f32>(ctx, c, &layout)?,
            Arithmetic::F64 => upload_panels::<f64>(ctx, c, &layout)?,
        };
        let panel_count = c_panels.len();
        Self::with(
            ctx,
            arithmetic,
            m,
            k,
            check_every,
            Multiplier::Formed(c_panels),
            panel_count,
            start,
        )
    }

    /// An engine over the loop's C made on the device from a GPU accumulation's sums (`C / c_norm`,
    /// in f32: [`DeviceGram::into_loop_panels`]), so that C is not uploaded again.
    pub fn over_device_gram(
        ctx: &'a GpuContext,
        sums: DeviceGram,
        c_norm: f64,
        k: usize,
        check_every: usize,
    ) -> Result<Self> {
        let start = Instant::now();
        let m = sums.n_features();
        check_tall_binding(ctx, m, k, Arithmetic::F32)?;
        let c_panels = sums.into_loop_panels(c_norm)?;
        Self::with(
            ctx,
            Arithmetic::F32,
            m,
            k,
            check_every,
            Multiplier::Formed(c_panels),
            0,
            start,
        )
    }

    /// An engine over the sparse `x` by `layout` ([`SparseLayout::plan`]): the loop multiplies by
    /// `X_cᵀ X_c / c_norm` (X_c = X − 1 meanᵀ) without forming it.
    pub fn over_sparse(
        ctx: &'a GpuContext,
        x: &dyn crate::sparse::PackedPanels,
        layout: &SparseLayout,
        mean: &[f64],
        c_norm: f64,
        k: usize,
        check_every: usize,
    ) -> Result<Self> {
        let start = Instant::now();
        let m = layout.m;
        check_tall_binding(ctx, m, k, Arithmetic::F32)?;
        let on_device = SparseOnDevice::upload(ctx, x, layout, mean, c_norm, k)?;
        let made = on_device.buffers();
        // The sparse kernels are f32 only.
        Self::with(
            ctx,
            Arithmetic::F32,
            m,
            k,
            check_every,
            Multiplier::Sparse(on_device),
            made,
            start,
        )
    }

    /// The engine around its multiplier (`made`: the buffers the multiplier made), its upload begun at
    /// `start`.
    #[allow(clippy::too_many_arguments)]
    fn with(
        ctx: &'a GpuContext,
        arithmetic: Arithmetic,
        m: usize,
        k: usize,
        check_every: usize,
        c: Multiplier,
        made: usize,
        start: Instant,
    ) -> Result<Self> {
        let mp = padded(m);
        let bytes = arithmetic.bytes();
        let storage = U::STORAGE | U::COPY_DST | U::COPY_SRC;
        let timer = PassTimer::new(ctx, "loop pass times", TIMED_PASSES);
        let timer_buffers = if timer.is_some() {
            PassTimer::BUFFERS
        } else {
            0
        };
        // check_every comes from the user: saturate (a size the device refuses), never wrap.
        let checks = CallCheck::new(check_every);
        let history_bytes = (checks.record_capacity() as u64)
            .saturating_add(1)
            .saturating_mul(bytes as u64);
        let engine = GpuEngine {
            ctx,
            arithmetic,
            m,
            mp,
            k,
            c,
            talls: Vec::new(),
            smalls: Vec::new(),
            projected: Vec::new(),
            eigen_work: None,
            gram_parts: None,
            jacobi_budget: JACOBI_DISPATCH_BUDGET,
            scalars: ctx.buffer("scalars", (MAX_SCALARS * bytes) as u64, storage),
            history: ctx.buffer("history", history_bytes, storage),
            history_staging: std::array::from_fn(|_| ctx.staging(history_bytes)),
            unread: std::collections::VecDeque::new(),
            weights_staging: ctx.staging((mp * k * bytes) as u64),
            checks,
            dummy: ctx.buffer("unused binding", 16, U::STORAGE),
            encoder: None,
            pass: None,
            params: HashMap::new(),
            bind_groups: HashMap::new(),
            passes: 0,
            // The multiplier's, the scalars, the history, its staging, the unused binding and the
            // weights' staging.
            stats: EngineStats {
                buffers_created: made + 5 + timer_buffers,
                ..EngineStats::default()
            },
            upload_time: Duration::ZERO,
            readback_time: Duration::ZERO,
            timer,
            profile: None,
        };
        ctx.take_error()?;
        let mut engine = engine;
        engine.upload_time += start.elapsed();
        Ok(engine)
    }

    fn buffer(&self, b: Buf) -> &wgpu::Buffer {
        match b {
            Buf::C(i) => match &self.c {
                Multiplier::Formed(panels) => &panels[i].2,
                Multiplier::Sparse(_) => unreachable!("no C on the operator route"),
            },
            Buf::SparseRows(_)
            | Buf::SparseColumns(_)
            | Buf::SparseMean
            | Buf::SparseY
            | Buf::SparseShift
            | Buf::SparseYSums => {
                let Multiplier::Sparse(x) = &self.c else {
                    unreachable!("no sparse X on the Gram routes")
                };
                match b {
                    Buf::SparseRows(i) => &x.rows[i].buffer,
                    Buf::SparseColumns(i) => &x.columns[i].buffer,
                    Buf::SparseMean => &x.mean,
                    Buf::SparseY => &x.y,
                    Buf::SparseShift => &x.shift,
                    _ => &x.y_sums,
                }
            }
            Buf::Tall(i) => &self.talls[i],
            Buf::Small(i) => &self.smalls[i],
            Buf::Projected(i) => &self.projected[i],
            Buf::EigenWork => self
                .eigen_work
                .as_ref()
                .expect("made before its first dispatch"),
            Buf::GramParts => self
                .gram_parts
                .as_ref()
                .expect("made before its first dispatch"),
            Buf::Scalars => &self.scalars,
            Buf::History => &self.history,
            Buf::Dummy => &self.dummy,
        }
    }

    /// Records one dispatch of `kernel` with the parameters `params` (binding [`PARAMS`]) and the
    /// buffers `bindings` (those of the kernel table, in its order).
    fn dispatch<P: WgslStruct>(
        &mut self,
        kernel: Kernel,
        params: &P,
        bindings: &[(Binding, Buf)],
        groups: (u32, u32),
    ) {
        let key = (
            kernel,
            bindings.iter().map(|&(b, buf)| (b.number, buf)).collect(),
            bytemuck::bytes_of(params).to_vec(),
        );
        let compiled = self.ctx.pipeline(kernel, self.arithmetic);
        if !self.bind_groups.contains_key(&key) {
            // A new call site: its parameters and bindings must be the kernel's (checked once per site).
            assert_eq!(
                P::LAYOUT.name,
                kernel.family().params_name(),
                "{kernel:?}: parameter struct"
            );
            kernel.assert_bindings(bindings.iter().map(|b| &b.0));
            let ctx = self.ctx;
            if !self.params.contains_key(&key.2) {
                let b = ctx.buffer_with("params", &key.2, U::STORAGE);
                self.params.insert(key.2.clone(), b);
                self.stats.buffers_created += 1;
            }
            let param_buf = &self.params[&key.2];
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: PARAMS.number,
                resource: param_buf.as_entire_binding(),
            }];
            for &(binding, buf) in &key.1 {
                entries.push(wgpu::BindGroupEntry {
                    binding,
                    resource: self.buffer(buf).as_entire_binding(),
                });
            }
            let group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(kernel.entry_point()),
                layout: &compiled.layout,
                entries: &entries,
            });
            self.bind_groups.insert(key.clone(), group);
            self.stats.bind_groups_created += 1;
        }
        if self.profile.is_some() {
            // Profiling: each dispatch in a timed pass of its own.
            drop(self.pass.take());
        }
        if self.pass.is_none() {
            if self.timer.as_ref().is_some_and(PassTimer::is_full) {
                // (Profiling: the passes whose timestamps it holds may be recorded, not submitted.)
                if let Some(encoder) = self.encoder.take() {
                    self.ctx.queue.submit([encoder.finish()]);
                    self.stats.submissions += 1;
                }
                self.read_pass_times_now();
            }
            let ctx = self.ctx;
            let encoder = self
                .encoder
                .get_or_insert_with(|| ctx.encoder("laepca loop"));
            let timestamp_writes = self.timer.as_mut().map(PassTimer::next_pass);
            let pass = encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("laepca loop"),
                    timestamp_writes,
                })
                .forget_lifetime();
            self.pass = Some(pass);
            if let Some(profile) = &mut self.profile {
                profile.unread.push(kernel);
            }
        }
        let pass = self.pass.as_mut().expect("opened above");
        pass.set_pipeline(&compiled.pipeline);
        pass.set_bind_group(0, &self.bind_groups[&key], &[]);
        pass.dispatch_workgroups(groups.0, groups.1, 1);
        self.stats.dispatches += 1;
    }

    /// Ends the open pass and hands back its encoder (a fresh one when nothing was recorded).
    fn take_encoder(&mut self) -> wgpu::CommandEncoder {
        drop(self.pass.take());
        self.encoder
            .take()
            .unwrap_or_else(|| self.ctx.encoder("laepca"))
    }

    /// Records the copy of the passes' pending timestamps after what `encoder` holds; once its
    /// submission is done, [`take_pass_times`](Self::take_pass_times) reads them.
    fn copy_pass_times(&self, encoder: &mut wgpu::CommandEncoder) {
        if let Some(t) = &self.timer {
            t.copy_pending(encoder);
        }
    }

    /// Adds the copied passes' times to the timer's total.
    fn take_pass_times(&mut self) -> Result<()> {
        if let Some(t) = &mut self.timer {
            let times = t.take(self.ctx)?;
            self.attribute(times);
        }
        Ok(())
    }

    /// Profiling: adds the times of the passes just read to their kernels' totals.
    fn attribute(&mut self, times: Vec<Duration>) {
        if let Some(profile) = &mut self.profile {
            assert_eq!(profile.unread.len(), times.len(), "a kernel per timed pass");
            for (kernel, time) in profile.unread.drain(..).zip(times) {
                match profile.totals.iter_mut().find(|t| t.0 == kernel) {
                    Some(total) => {
                        total.1 += 1;
                        total.2 += time;
                    }
                    None => profile.totals.push((kernel, 1, time)),
                }
            }
        }
    }

    /// From now on, each dispatch runs in a timed compute pass of its own, its time added to its
    /// kernel's ([`kernel_profile`](Self::kernel_profile)). False (and nothing changed) on a device
    /// without timestamp queries, or once passes are timed without it.
    pub fn profile_kernels(&mut self) -> bool {
        // (Passes timed before would have no kernel.)
        let unread = self.timer.as_ref().is_some_and(PassTimer::has_unread);
        if self.timer.is_some() && self.profile.is_none() && !unread {
            self.profile = Some(KernelProfile::default());
        }
        self.profile.is_some()
    }

    /// Each profiled kernel's dispatches and GPU time so far (those read back: all of them after the
    /// final download), by decreasing time; empty without profiling.
    pub fn kernel_profile(&self) -> Vec<crate::KernelTime> {
        let mut out: Vec<crate::KernelTime> = self
            .profile
            .iter()
            .flat_map(|p| &p.totals)
            .map(|&(kernel, dispatches, time)| crate::KernelTime {
                kernel: kernel.entry_point(),
                dispatches,
                time,
            })
            .collect();
        out.sort_by(|a, b| b.time.cmp(&a.time).then(a.kernel.cmp(b.kernel)));
        out
    }

    /// Reads the pending passes' timestamps in a submission of their own (the timer is full).
    fn read_pass_times_now(&mut self) {
        let Some(t) = &mut self.timer else { return };
        self.stats.submissions += 1;
        self.stats.host_waits += 1;
        match t.read_now(self.ctx) {
            Ok(times) => self.attribute(times),
            Err(e) => {
                // A failed read only loses the timing; the error is wgpu's and reaches the next check.
                log::warn!("reading the loop's pass times: {e}");
                self.timer = None;
                self.profile = None;
            }
        }
    }

    /// Submits what is recorded (so that a following `write_buffer` lands after it).
    fn flush(&mut self) {
        if self.pass.is_some() {
            let encoder = self.take_encoder();
            self.ctx.queue.submit([encoder.finish()]);
            self.stats.submissions += 1;
        }
    }

    fn len(&self) -> u32 {
        (self.mp * self.k) as u32
    }

    /// The matmul parameters of a product whose projected block (if any) starts at (row0, col0).
    fn matmul_params(&self, row0: usize, col0: usize) -> MatmulParams {
        MatmulParams {
            mp: self.mp as u32,
            k: self.k as u32,
            row0: row0 as u32,
            col0: col0 as u32,
        }
    }

    fn grid(&self) -> (u32, u32) {
        grid_1d(self.mp * self.k, self.ctx.workgroup())
    }

    /// `out = C x` over the formed C, one dispatch per row panel (out's rows row0 .. row0 + rows);
    /// with `gram`, by c_mul_gram, which also writes the parts of xᵀ out ([`Buf::GramParts`]).
    fn formed_c_mul(&mut self, x: Tall, out: Tall, gram: bool) {
        let (kernel, bound) = if gram {
            (Kernel::CMulGram, 4)
        } else {
            (Kernel::CMul, 3)
        };
        let Multiplier::Formed(panels) = &self.c else {
            unreachable!("a product over the formed C")
        };
        for panel in 0..panels.len() {
            let Multiplier::Formed(panels) = &self.c else {
                unreachable!("matched above")
            };
            let (row0, rows) = (panels[panel].0, panels[panel].1);
            let groups = (rows.div_ceil(C_MUL_ROWS) as u32, self.k.div_ceil(16) as u32);
            let binds = [
                (matmul::A, Buf::C(panel)),
                (matmul::B, Buf::Tall(x.0)),
                (matmul::OUT, Buf::Tall(out.0)),
                (matmul::GRAM_PART, Buf::GramParts),
            ];
            self.dispatch(
                kernel,
                &self.matmul_params(row0, 0),
                &binds[..bound],
                groups,
            );
        }
    }

    /// The parts of c_mul_gram's xᵀ(C x): one per C_MUL_ROWS rows.
    fn gram_part_count(&self) -> usize {
        self.mp.div_ceil(C_MUL_ROWS)
    }

    /// Whether [`Engine::c_mul_inverse`] runs fused: over a formed C, with its parts of xᵀ(C x) no
    /// larger than one tall matrix (`⌈mp/64⌉·k ≤ mp`: k up to about C_MUL_ROWS for large m, less for
    /// an mp just above a multiple of 64), so that the device holds little more
    /// than before; otherwise it runs as c_mul, inner and inverse_spd.
    fn gram_parts_fit(&self) -> bool {
        matches!(self.c, Multiplier::Formed(_)) && self.gram_part_count() * self.k <= self.mp
    }

    /// The parameters of the small kernels: the shift as two f32 values, and the parts to sum.
    fn small_params(&self, shift: f64, parts: usize) -> SmallParams {
        let (shift_hi, shift_lo) = split_coefficient(shift, self.arithmetic);
        SmallParams {
            k: self.k as u32,
            shift_hi,
            shift_lo,
            parts: parts as u32,
        }
    }

    /// Records a pair kernel of matmul.wgsl (mul_small_pair, mul_small_sub_pair): `a[i]` times `s`
    /// into (or from) `out[i]`.
    fn dispatch_small_pair(&mut self, kernel: Kernel, a: [Tall; 2], s: Small, out: [Tall; 2]) {
        let binds = [
            (matmul::A, Buf::Tall(a[0].0)),
            (matmul::B, Buf::Small(s.0)),
            (matmul::OUT, Buf::Tall(out[0].0)),
            (matmul::A1, Buf::Tall(a[1].0)),
            (matmul::OUT1, Buf::Tall(out[1].0)),
        ];
        let grid = self.pair_grid();
        self.dispatch(kernel, &self.matmul_params(0, 0), &binds, grid);
    }

    /// The grid of the pair kernels: a thread per entry of two tall matrices.
    fn pair_grid(&self) -> (u32, u32) {
        grid_1d(2 * self.mp * self.k, self.ctx.workgroup())
    }

    /// Sets the loop iterations an eigen dispatch may run per invocation (tests).
    pub fn set_jacobi_budget(&mut self, budget: usize) {
        self.jacobi_budget = budget;
    }

    /// Records an eigen kernel on the n x n matrix `a` (overwritten) into `out`: the dispatches of
    /// [`jacobi_plan`].
    fn eigen(&mut self, kernel: Kernel, n: usize, a: Buf, out: Buf) {
        if self.eigen_work.is_none() {
            // For the largest order, SEARCH_BLOCKS·k: n² + 3n + 2 values (eigen.wgsl's layout).
            let order = SEARCH_BLOCKS * self.k;
            let values = order * order + 3 * order + 2;
            let bytes = (values * self.arithmetic.bytes()) as u64;
            self.eigen_work = Some(self.ctx.buffer("eigen work", bytes, U::STORAGE));
        }
        let binds = [
            (eigen::A, a),
            (eigen::OUT, out),
            (eigen::WORK, Buf::EigenWork),
        ];
        let plan = jacobi_plan(n, self.ctx.workgroup() as usize, self.jacobi_budget);
        for (round0, round_end) in plan {
            let params = EigenParams {
                n: n as u32,
                drop: (ORTHO_DROP_ULPS * self.arithmetic.epsilon()) as f32,
                round0,
                round_end,
            };
            self.dispatch(kernel, &params, &binds, (1, 1));
        }
    }
}

impl GpuEngine<'_> {
    /// `c_mul` on the operator route: `out = (Xᵀ Y − μ (1ᵀY))` with `Y = X x − 1 (μᵀx)`, X and μ
    /// scaled on upload (shaders/sparse.wgsl): μᵀx, Y by X's panels, 1ᵀY, out by Xᵀ's panels.
    fn sparse_c_mul(&mut self, x: Tall, out: Tall) {
        let Multiplier::Sparse(on_device) = &self.c else {
            unreachable!("the operator route's product")
        };
        let n = on_device.n;
        self.column_sums(Buf::Tall(x.0), self.mp, self.m, true, Buf::SparseShift);
        self.spmm_panels(false, Buf::Tall(x.0), Buf::SparseY);
        self.column_sums(Buf::SparseY, n, n, false, Buf::SparseYSums);
        self.spmm_panels(true, Buf::SparseY, Buf::Tall(out.0));
    }

    /// `into[c] = Σᵢ wᵢ b[c·ld_b + i]` over the first `rows` rows, `wᵢ` = μᵢ when `weighted`, else 1.
    fn column_sums(&mut self, b: Buf, ld_b: usize, rows: usize, weighted: bool, into: Buf) {
        let params = SparseParams {
            rows: rows as u32,
            k: self.k as u32,
            ld_b: ld_b as u32,
            weighted: u32::from(weighted),
            ..SparseParams::default()
        };
        let binds = [
            (sparse::B, b),
            (sparse::MEAN, Buf::SparseMean),
            (sparse::SUMS_OUT, into),
        ];
        self.dispatch(Kernel::ColumnSums, &params, &binds, (self.k as u32, 1));
    }

    /// One spmm dispatch per panel: X's (`out = X b − 1 tᵀ`, b m x k, out the n x k Y) or, when
    /// `transposed`, Xᵀ's (`out = Xᵀ b − μ sᵀ`, b the n x k Y, out m x k with its zero padding).
    fn spmm_panels(&mut self, transposed: bool, b: Buf, out: Buf) {
        let Multiplier::Sparse(on_device) = &self.c else {
            unreachable!("the operator route's product")
        };
        let n = on_device.n;
        let panels = if transposed {
            on_device.columns.len()
        } else {
            on_device.rows.len()
        };
        let (ld_b, ld_out, sums) = if transposed {
            (n, self.mp, Buf::SparseYSums)
        } else {
            (self.mp, n, Buf::SparseShift)
        };
        for i in 0..panels {
            let Multiplier::Sparse(on_device) = &self.c else {
                unreachable!("the operator route's product")
            };
            let (r, panel) = if transposed {
                (on_device.columns[i].range, Buf::SparseColumns(i))
            } else {
                (on_device.rows[i].range, Buf::SparseRows(i))
            };
            // The last panel of Xᵀ also writes the tall matrix's zero padding, rows m..mp.
            let rows_out = if transposed && i + 1 == panels {
                r.rows + (self.mp - self.m)
            } else {
                r.rows
            };
            let params = SparseParams {
                rows: r.rows as u32,
                row0: r.row0 as u32,
                entries: r.entries as u32,
                k: self.k as u32,
                ld_b: ld_b as u32,
                ld_out: ld_out as u32,
                weighted: u32::from(transposed),
                rows_out: rows_out as u32,
            };
            let binds = [
                (sparse::PANEL, panel),
                (sparse::B, b),
                (sparse::MEAN, Buf::SparseMean),
                (sparse::SUMS, sums),
                (sparse::OUT, out),
            ];
            self.dispatch(Kernel::Spmm, &params, &binds, grid_1d(rows_out, 1));
        }
    }
}

/// The engines' tall blocks (mp x k values in `arithmetic`) fit one binding of the device (checked
/// before C is uploaded or made).
fn check_tall_binding(ctx: &GpuContext, m: usize, k: usize, arithmetic: Arithmetic) -> Result<()> {
    ctx.check_binding(
        m,
        || format!("a block of {k} columns of m values"),
        (padded(m) * k * arithmetic.bytes()) as u64,
    )
}

/// C's row panels by `layout` as device buffers of `S` values, uploaded one at a time: the host holds
/// one panel's copy, not all of C's.
fn upload_panels<S: DeviceScalar>(
    ctx: &GpuContext,
    c: &DMatrix<f64>,
    layout: &super::Panels,
) -> Result<Vec<(usize, usize, wgpu::Buffer)>> {
    let (m, mp) = (c.nrows(), padded(c.nrows()));
    let storage = U::STORAGE | U::COPY_DST | U::COPY_SRC;
    let bytes = std::mem::size_of::<S>();
    let mut c_panels = Vec::with_capacity(layout.count());
    let mut host_rows = crate::alloc::filled(
        || format!("a panel of C ({} x {mp} values)", layout.max_rows()),
        layout.max_rows().checked_mul(mp),
        None,
        S::from_f64(0.0),
    )?;
    for (row0, rows) in layout.iter() {
        let panel = ctx.buffer("C panel", (rows * mp * bytes) as u64, storage);
        let values = &mut host_rows[..rows * mp];
        // Row i of C is column i (C is symmetric): contiguous in the column-major matrix.
        for (r, row) in values.chunks_exact_mut(mp).enumerate() {
            let i = row0 + r;
            if i < m {
                for (v, &x) in row.iter_mut().zip(c.column(i).iter()) {
                    *v = S::from_f64(x);
                }
                row[m..].fill(S::from_f64(0.0));
            } else {
                row.fill(S::from_f64(0.0));
            }
        }
        ctx.queue
            .write_buffer(&panel, 0, bytemuck::cast_slice(values));
        if layout.count() > 1 {
            // Let wgpu's staging copy of this panel go before the next is made.
            ctx.queue.submit([]);
            ctx.device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
        }
        c_panels.push((row0, rows, panel));
    }
    Ok(c_panels)
}

/// Whether every dispatch of an order-n eigenproblem keeps within [`JACOBI_DISPATCH_BUDGET`] at a
/// workgroup of `wg` (up to order ~1000 at 256, ~500 at 64: beyond, one round and the first or last
/// dispatch's set-up alone exceed it, and llvmpipe would cut the kernel short).
pub(crate) fn jacobi_fits(n: usize, wg: usize) -> bool {
    jacobi_plan(n, wg, JACOBI_DISPATCH_BUDGET)
        .iter()
        .all(|&(r0, r1)| jacobi_cost(n, wg, r0 as usize, r1 as usize) <= JACOBI_DISPATCH_BUDGET)
}

/// eigen.wgsl's MAX_SWEEPS.
pub(crate) const JACOBI_MAX_SWEEPS: usize = 30;

/// The most loop iterations one invocation of an eigen dispatch may run, by [`jacobi_cost`]'s count: a
/// quarter of llvmpipe's 65535 (after which it silently ends the invocation's loops), the rest a
/// margin for what the count leaves out.
pub(crate) const JACOBI_DISPATCH_BUDGET: usize = 16384;

/// An upper bound on the loop iterations one invocation of eigen.wgsl runs for the rounds
/// [round0, round_end) of an order-n problem in workgroups of `wg`, its prologue and epilogue
/// included (the orthonormalizer's, the larger, counted for both kernels).
pub(crate) fn jacobi_cost(n: usize, wg: usize, round0: usize, round_end: usize) -> usize {
    let np = n + (n & 1);
    let turning = np - 1;
    let per_thread = |elements: usize| elements.div_ceil(wg);
    let halvings = wg.trailing_zeros() as usize;
    // One round: its own iteration, the rotations, the column and the row updates.
    let round = 1 + per_thread(np / 2) + 2 * per_thread(np / 2 * n);
    // The convergence check at a sweep's first round: the squares, two tree sums.
    let check = per_thread(n * n) + 2 * halvings;
    // The rounds g in [round0, round_end) with g % turning == 0.
    let sweep_starts = round_end.div_ceil(turning) - round0.div_ceil(turning);
    let mut cost = (round_end - round0) * round + sweep_starts * check;
    if round0 == 0 {
        // The scaling, the scaled matrix, V = I.
        cost += per_thread(n) + 2 * per_thread(n * n);
    }
    if round_end == JACOBI_MAX_SWEEPS * turning {
        // The ranks (n comparisons each), the largest eigenvalue, the output.
        cost += per_thread(n) * (1 + n) + n + per_thread(n * n);
    }
    cost
}

/// The dispatches, as round ranges [round0, round_end), that run the JACOBI_MAX_SWEEPS sweeps of an
/// order-n eigenproblem in workgroups of `wg`: as few as keep each within `budget` (at least one round
/// each, so a plan can exceed it where one round does: see [`jacobi_fits`]); the split changes no
/// arithmetic. Once the sweeps converge the remaining dispatches return at once.
pub(crate) fn jacobi_plan(n: usize, wg: usize, budget: usize) -> Vec<(u32, u32)> {
    debug_assert!(n > 0, "an eigenproblem of order 0");
    let total = JACOBI_MAX_SWEEPS * (n + (n & 1) - 1);
    let mut plan = Vec::new();
    let mut round0 = 0;
    while round0 < total {
        let mut end = round0 + 1;
        while end < total && jacobi_cost(n, wg, round0, end + 1) <= budget {
            end += 1;
        }
        plan.push((round0 as u32, end as u32));
        round0 = end;
    }
    plan
}

impl Engine for GpuEngine<'_> {
    fn m(&self) -> usize {
        self.m
    }

    fn k(&self) -> usize {
        self.k
    }

    fn new_tall(&mut self) -> Tall {
        let b = self.ctx.buffer(
            "tall",
            (self.mp * self.k * self.arithmetic.bytes()) as u64,
            U::STORAGE | U::COPY_DST | U::COPY_SRC,
        );
        self.talls.push(b);
        self.stats.buffers_created += 1;
        Tall(self.talls.len() - 1)
    }
    fn new_small(&mut self) -> Small {
        let b = self.ctx.buffer(
            "small",
            (self.k * self.k * self.arithmetic.bytes()) as u64,
            U::STORAGE | U::COPY_DST,
        );
        self.smalls.push(b);
        self.stats.buffers_created += 1;
        Small(self.smalls.len() - 1)
    }
    fn new_scalar(&mut self) -> Scalar {
        Scalar(self.checks.new_scalar())
    }

    fn new_projected(&mut self) -> Projected {
        let n = SEARCH_BLOCKS * self.k;
        let bytes = (n * n * self.arithmetic.bytes()) as u64;
        let b = self
            .ctx
            .buffer("projected", bytes, U::STORAGE | U::COPY_DST);
        self.projected.push(b);
        Projected(self.projected.len() - 1)
    }

    fn upload(&mut self, dst: Tall, values: &[f64]) -> Result<()> {
        self.checks.upload(values.len(), self.m, self.k)?;
        let start = Instant::now();
        self.flush();
        // Column j of the m x k values into rows 0..m of the tall matrix's column j (padding zero).
        fn write_columns<S: DeviceScalar>(e: &GpuEngine<'_>, target: Tall, values: &[f64]) {
            let (m, mp) = (e.m, e.mp);
            let mut data = vec![S::from_f64(0.0); mp * e.k];
            let columns = data.chunks_exact_mut(mp.max(1));
            for (column, values) in columns.zip(values.chunks_exact(m.max(1))) {
                for (d, &v) in column.iter_mut().zip(values) {
                    *d = S::from_f64(v);
                }
            }
            e.ctx
                .queue
                .write_buffer(&e.talls[target.0], 0, bytemuck::cast_slice(&data));
        }
        match self.arithmetic {
            Arithmetic::F32 => write_columns::<f32>(self, dst, values),
            Arithmetic::F64 => write_columns::<f64>(self, dst, values),
        }
        self.upload_time += start.elapsed();
        Ok(())
    }

    fn download(&mut self, src: Tall) -> Result<Vec<f64>> {
        let start = Instant::now();
        let mut encoder = self.take_encoder();
        self.copy_pass_times(&mut encoder);
        let bytes = (self.mp * self.k * self.arithmetic.bytes()) as u64;
        let arithmetic = self.arithmetic;
        encoder.copy_buffer_to_buffer(&self.talls[src.0], 0, &self.weights_staging, 0, bytes);
        self.ctx.queue.submit([encoder.finish()]);
        let data = self
            .ctx
            .map_bytes_after(&self.weights_staging, bytes, None, |v| {
                decode(v, arithmetic)
            })?;
        self.stats.submissions += 1;
        self.stats.host_waits += 1;
        self.take_pass_times()?;
        let mut out = vec![0f64; self.m * self.k];
        for j in 0..self.k {
            for i in 0..self.m {
                out[j * self.m + i] = data[j * self.mp + i];
            }
        }
        self.readback_time += start.elapsed();
        Ok(out)
    }

    fn c_mul(&mut self, x: Tall, out: Tall) {
        self.checks.distinct(x, out, "c_mul");
        self.passes += 1;
        match &self.c {
            Multiplier::Formed(_) => self.formed_c_mul(x, out, false),
            Multiplier::Sparse(_) => self.sparse_c_mul(x, out),
        }
    }
    fn c_mul_inverse(&mut self, x: Tall, out: Tall, gram: Small, shift: f64, inv: Small) {
        assert_ne!(gram, inv, "c_mul_inverse: inv must differ from gram");
        if !self.gram_parts_fit() {
            return c_mul_inverse_unfused(self, x, out, gram, shift, inv);
        }
        self.checks.distinct(x, out, "c_mul");
        self.passes += 1;
        if self.gram_parts.is_none() {
            let bytes = (self.gram_part_count() * self.k * self.k * self.arithmetic.bytes()) as u64;
            self.gram_parts = Some(self.ctx.buffer("gram parts", bytes, U::STORAGE));
            self.stats.buffers_created += 1;
        }
        self.formed_c_mul(x, out, true);
        let params = self.small_params(shift, self.gram_part_count());
        let binds = [
            (small::S, Buf::GramParts),
            (small::OUT, Buf::Small(inv.0)),
            (small::GRAM, Buf::Small(gram.0)),
        ];
        self.dispatch(Kernel::InverseSpdOfParts, &params, &binds, (1, 1));
    }
    fn inner(&mut self, a: Tall, b: Tall, out: Small) {
        let binds = [
            (matmul::A, Buf::Tall(a.0)),
            (matmul::B, Buf::Tall(b.0)),
            (matmul::OUT, Buf::Small(out.0)),
        ];
        let groups = (self.k as u32, self.k as u32);
        self.dispatch(Kernel::Inner, &self.matmul_params(0, 0), &binds, groups);
    }
    fn mul_small(&mut self, a: Tall, s: Small, out: Tall) {
        self.checks.distinct(a, out, "mul_small");
        let binds = [
            (matmul::A, Buf::Tall(a.0)),
            (matmul::B, Buf::Small(s.0)),
            (matmul::OUT, Buf::Tall(out.0)),
        ];
        let grid = self.grid();
        self.dispatch(Kernel::MulSmall, &self.matmul_params(0, 0), &binds, grid);
    }
    fn inverse_spd(&mut self, s: Small, shift: f64, out: Small) {
        let params = self.small_params(shift, 0);
        let binds = [(small::S, Buf::Small(s.0)), (small::OUT, Buf::Small(out.0))];
        self.dispatch(Kernel::InverseSpd, &params, &binds, (1, 1));
    }
    fn inner_block(&mut self, a: Tall, b: Tall, out: Projected, (i, j): (usize, usize)) {
        self.checks.block(i, "inner_block");
        self.checks.block(j, "inner_block");
        let k = self.k;
        let binds = [
            (matmul::A, Buf::Tall(a.0)),
            (matmul::B, Buf::Tall(b.0)),
            (matmul::OUT, Buf::Projected(out.0)),
        ];
        let params = self.matmul_params(i * k, j * k);
        self.dispatch(Kernel::InnerBlock, &params, &binds, (k as u32, k as u32));
    }
    fn mul_block(&mut self, a: Tall, y: Projected, i: usize, out: Tall) {
        self.checks.distinct(a, out, "mul_block");
        self.checks.block(i, "mul_block");
        let binds = [
            (matmul::A, Buf::Tall(a.0)),
            (matmul::B, Buf::Projected(y.0)),
            (matmul::OUT, Buf::Tall(out.0)),
        ];
        let (params, grid) = (self.matmul_params(i * self.k, 0), self.grid());
        self.dispatch(Kernel::MulBlock, &params, &binds, grid);
    }
    fn projected(
        &mut self,
        basis: [Tall; SEARCH_BLOCKS],
        image: [Tall; SEARCH_BLOCKS],
        out: Projected,
    ) {
        let mut binds = vec![(matmul::OUT, Buf::Projected(out.0))];
        binds.extend((0..SEARCH_BLOCKS).map(|i| (matmul::BASIS[i], Buf::Tall(basis[i].0))));
        binds.extend((0..SEARCH_BLOCKS).map(|j| (matmul::IMAGE[j], Buf::Tall(image[j].0))));
        // k x k workgroups for each of the six upper blocks.
        let upper_blocks = SEARCH_BLOCKS * (SEARCH_BLOCKS + 1) / 2;
        let groups = (self.k as u32, (upper_blocks * self.k) as u32);
        self.dispatch(Kernel::Projected, &self.matmul_params(0, 0), &binds, groups);
    }
    fn mul_blocks(
        &mut self,
        sets: [[Tall; SEARCH_BLOCKS]; 2],
        y: Projected,
        all: [Tall; 2],
        tail: [Tall; 2],
    ) {
        check_mul_blocks(&sets, all, tail);
        let mut binds = vec![
            (matmul::B, Buf::Projected(y.0)),
            (matmul::OUT, Buf::Tall(all[0].0)),
        ];
        binds.extend((0..SEARCH_BLOCKS).map(|i| (matmul::BASIS[i], Buf::Tall(sets[0][i].0))));
        binds.extend((0..SEARCH_BLOCKS).map(|i| (matmul::IMAGE[i], Buf::Tall(sets[1][i].0))));
        binds.extend([
            (matmul::TAIL, Buf::Tall(tail[0].0)),
            (matmul::OUT1, Buf::Tall(all[1].0)),
            (matmul::TAIL1, Buf::Tall(tail[1].0)),
        ]);
        let grid = self.pair_grid();
        self.dispatch(Kernel::MulBlocks, &self.matmul_params(0, 0), &binds, grid);
    }
    fn mul_small_pair(&mut self, a: [Tall; 2], s: Small, out: [Tall; 2]) {
        check_outputs(&out, &a, "mul_small_pair");
        self.dispatch_small_pair(Kernel::MulSmallPair, a, s, out);
    }
    fn mul_small_sub_pair(&mut self, v: [Tall; 2], a: [Tall; 2], s: Small) {
        check_outputs(&v, &a, "mul_small_sub_pair");
        self.dispatch_small_pair(Kernel::MulSmallSubPair, a, s, v);
    }
    fn mul_small_sub(&mut self, out: Tall, base: Tall, a: Tall, s: Small) {
        self.checks.distinct(a, out, "mul_small_sub");
        let mut binds = vec![
            (matmul::A, Buf::Tall(a.0)),
            (matmul::B, Buf::Small(s.0)),
            (matmul::OUT, Buf::Tall(out.0)),
        ];
        // In place: `out` read through its own (read-write) binding, not bound twice.
        let kernel = if out == base {
            Kernel::MulSmallSubInPlace
        } else {
            binds.push((matmul::BASE, Buf::Tall(base.0)));
            Kernel::MulSmallSub
        };
        let grid = self.grid();
        self.dispatch(kernel, &self.matmul_params(0, 0), &binds, grid);
    }
    fn ritz_vectors(&mut self, h: Projected, out: Projected) {
        let n = SEARCH_BLOCKS * self.k;
        self.eigen(
            Kernel::RitzVectors,
            n,
            Buf::Projected(h.0),
            Buf::Projected(out.0),
        );
    }
    fn orthonormalizer(&mut self, g: Small, out: Small) {
        self.eigen(
            Kernel::Orthonormalizer,
            self.k,
            Buf::Small(g.0),
            Buf::Small(out.0),
        );
    }
    fn combine(&mut self, out: Tall, terms: &[(Coef, Tall)]) {
        self.checks.combine(terms);
        // Distinct inputs other than `out` go to the bindings t0..t3; terms on `out` read it in place.
        let mut inputs: Vec<usize> = Vec::new();
        let mut params = UpdateParams {
            len: self.len(),
            terms: terms.len() as u32,
            ..UpdateParams::default()
        };
        for (slot, &(coef, t)) in params.term.iter_mut().zip(terms) {
            let source = if t == out {
                COMBINE_SOURCE_OUT
            } else {
                match inputs.iter().position(|&i| i == t.0) {
                    Some(p) => p as u32,
                    None => {
                        inputs.push(t.0);
                        inputs.len() as u32 - 1
                    }
                }
            };
            let (kind, (value_hi, value_lo), num, den) = match coef {
                Coef::Const(v) => (0, split_coefficient(v, self.arithmetic), 0, 0),
                Coef::Ratio(n, d) => (1, (0.0, 0.0), n.0 as u32, d.0 as u32),
                Coef::NegRatio(n, d) => (2, (0.0, 0.0), n.0 as u32, d.0 as u32),
            };
            *slot = CombineTerm {
                kind,
                value_hi,
                value_lo,
                num,
                den,
                source,
                ..CombineTerm::default()
            };
        }
        let mut binds: Vec<(Binding, Buf)> = (0..MAX_COMBINE_TERMS)
            .map(|i| {
                let input = inputs.get(i).map_or(Buf::Dummy, |&t| Buf::Tall(t));
                (update::TERMS[i], input)
            })
            .collect();
        binds.push((update::OUT, Buf::Tall(out.0)));
        binds.push((update::SCALARS, Buf::Scalars));
        let grid = self.grid();
        self.dispatch(Kernel::Combine, &params, &binds, grid);
    }
    fn dot(&mut self, a: Tall, b: Tall, out: Scalar) {
        let params = ReduceParams {
            len: self.len(),
            slot: out.0 as u32,
            ..ReduceParams::default()
        };
        let binds = [
            (reduce::A0, Buf::Tall(a.0)),
            (reduce::B0, Buf::Tall(b.0)),
            (reduce::SCALARS, Buf::Scalars),
        ];
        self.dispatch(Kernel::Dot, &params, &binds, (1, 1));
    }
    fn copy_scalar(&mut self, src: Scalar, dst: Scalar) {
        let params = UpdateParams {
            src: src.0 as u32,
            dst: dst.0 as u32,
            ..UpdateParams::default()
        };
        let binds = [(update::SCALARS, Buf::Scalars)];
        self.dispatch(Kernel::CopyScalar, &params, &binds, (1, 1));
    }
    fn record_stop(&mut self, pairs: &[(Tall, Tall)]) {
        self.checks.record_stop(pairs);
        let second = pairs
            .get(1)
            .copied()
            .map_or((Buf::Dummy, Buf::Dummy), |(a, b)| {
                (Buf::Tall(a.0), Buf::Tall(b.0))
            });
        let params = ReduceParams {
            len: self.len(),
            slot: pairs.len() as u32,
            ..ReduceParams::default()
        };
        let binds = [
            (reduce::A0, Buf::Tall(pairs[0].0 .0)),
            (reduce::B0, Buf::Tall(pairs[0].1 .0)),
            (reduce::A1, second.0),
            (reduce::B1, second.1),
            (reduce::HISTORY, Buf::History),
        ];
        self.dispatch(Kernel::StopQuantity, &params, &binds, (1, 1));
    }
    fn record_stop_ratio(&mut self, num: Tall, den: Tall, columns: usize) {
        self.checks.record_stop_ratio(columns, self.k);
        // The first columns of a column-major tall matrix are its first mp · columns entries.
        let params = ReduceParams {
            len: (self.mp * columns) as u32,
            ..ReduceParams::default()
        };
        let binds = [
            (reduce::A0, Buf::Tall(num.0)),
            (reduce::B0, Buf::Tall(den.0)),
            (reduce::HISTORY, Buf::History),
        ];
        self.dispatch(Kernel::StopRatio, &params, &binds, (1, 1));
    }
    fn passes(&self) -> usize {
        self.passes
    }
    fn submit_check(&mut self) {
        let recorded = self.checks.submitted();
        let mut encoder = self.take_encoder();
        self.copy_pass_times(&mut encoder);
        // The slot after the unread ones' (the oldest unread check keeps its slot until it is read).
        let slot =
            (self.unread.front().map_or(0, |u| u.slot) + self.unread.len()) % MAX_UNREAD_CHECKS;
        let bytes = ((recorded + 1) * self.arithmetic.bytes()) as u64;
        encoder.copy_buffer_to_buffer(&self.history, 0, &self.history_staging[slot], 0, bytes);
        // The count back to zero on the device's timeline, for the next check's values.
        encoder.clear_buffer(&self.history, 0, Some(self.arithmetic.bytes() as u64));
        let submission = self.ctx.queue.submit([encoder.finish()]);
        self.stats.submissions += 1;
        self.unread.push_back(UnreadCheck {
            slot,
            recorded,
            submission,
        });
    }
    fn read_check(&mut self) -> Result<Vec<f64>> {
        let UnreadCheck {
            slot,
            recorded,
            submission,
        } = {
            self.checks.read();
            self.unread.pop_front().expect("counted by the checks")
        };
        let bytes = ((recorded + 1) * self.arithmetic.bytes()) as u64;
        let staging = &self.history_staging[slot];
        let arithmetic = self.arithmetic;
        let data = self
            .ctx
            .map_bytes_after(staging, bytes, Some(submission), |v| decode(v, arithmetic))?;
        self.stats.host_waits += 1;
        // The pass times wait for every submission: read only when no later check runs.
        if self.unread.is_empty() {
            self.take_pass_times()?;
        }
        let count = data[0] as usize;
        if count != recorded {
            return Err(Error::Gpu(format!(
                "the GPU recorded {count} stopping values, {recorded} expected"
            )));
        }
        Ok(data[1..=count].to_vec())
    }
    fn overlaps_checks(&self) -> bool {
        true
    }
    fn stats(&self) -> EngineStats {
        self.stats
    }
    fn kernel_time(&self) -> Option<Duration> {
        self.timer.as_ref().and_then(PassTimer::total)
    }
}

impl GpuEngine<'_> {
    /// Time spent uploading C and the weights, and reading the weights back.
    pub fn transfer_times(&self) -> (Duration, Duration) {
        (self.upload_time, self.readback_time)
    }
}

#[cfg(test)]
mod tests {
    use super::{jacobi_cost, jacobi_fits, jacobi_plan, JACOBI_DISPATCH_BUDGET, JACOBI_MAX_SWEEPS};

    #[test]
    fn the_jacobi_plan_covers_every_round_once_within_the_budget() {
        for wg in [64, 256] {
            for n in [1, 2, 3, 9, 15, 30, 31, 60, 123, 126, 189, 225, 450] {
                let plan = jacobi_plan(n, wg, JACOBI_DISPATCH_BUDGET);
                let total = JACOBI_MAX_SWEEPS * (n + (n & 1) - 1);
                assert_eq!(plan.first().map(|d| d.0), Some(0), "n = {n}");
                assert_eq!(plan.last().map(|d| d.1 as usize), Some(total), "n = {n}");
                for pair in plan.windows(2) {
                    assert_eq!(pair[0].1, pair[1].0, "n = {n}: contiguous");
                }
                for &(r0, r1) in &plan {
                    let (r0, r1) = (r0 as usize, r1 as usize);
                    assert!(r1 > r0, "n = {n}: empty dispatch");
                    assert!(
                        jacobi_cost(n, wg, r0, r1) <= JACOBI_DISPATCH_BUDGET,
                        "n = {n}: dispatch {r0}..{r1} over the budget"
                    );
                }
                assert!(jacobi_fits(n, wg), "n = {n}");
                // As few as the budget allows: no two neighbours would fit in one.
                for pair in plan.windows(2) {
                    let (r0, r1) = (pair[0].0 as usize, pair[1].1 as usize);
                    assert!(
                        jacobi_cost(n, wg, r0, r1) > JACOBI_DISPATCH_BUDGET,
                        "n = {n}"
                    );
                }
                println!("wg {wg}, n = {n}: {} dispatches", plan.len());
            }
        }
        // The default solver's small problems stay one dispatch (the loop's dispatch counts in
        // tests/gpu.rs assume so for its order 15).
        assert_eq!(jacobi_plan(15, 256, JACOBI_DISPATCH_BUDGET).len(), 1);
        // The order that a single dispatch got wrong on llvmpipe is split.
        assert!(jacobi_plan(126, 256, JACOBI_DISPATCH_BUDGET).len() > 1);
        // Where one round and the set-up exceed the budget, the plan does not fit.
        assert!(!jacobi_fits(1100, 256) && !jacobi_fits(600, 64));
    }

    #[test]
    fn the_shader_sweeps_as_often_as_the_plan_counts() {
        // is_last_dispatch in eigen.wgsl compares with MAX_SWEEPS·(np − 1): a plan that ends elsewhere
        // would never write the output.
        let wgsl = include_str!("../../shaders/eigen.wgsl");
        let line = format!("const MAX_SWEEPS: u32 = {JACOBI_MAX_SWEEPS}u;");
        assert!(wgsl.contains(&line), "eigen.wgsl lacks `{line}`");
    }
}
