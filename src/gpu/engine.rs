//! The GPU engine: every [`Engine`] call is recorded as a compute dispatch into one open pass; only
//! [`Engine::check`] submits and reads back (the few stopping quantities recorded since the last check).
//! Parameter buffers and bind groups are made the first time a call site is seen and reused after, so
//! the loop creates no buffer per iteration.

use super::kernels::Kernel;
use super::{grid_1d, padded, GpuContext};
use crate::engine::{
    Coef, Engine, EngineStats, Projected, Scalar, Small, Tall, ORTHO_DROP_ULPS, SEARCH_BLOCKS,
};
use crate::error::{Error, Result};
use nalgebra::DMatrix;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use wgpu::BufferUsages as U;

/// Scalars the engine can hold (the conjugate-gradient steps use three).
const SCALAR_CAPACITY: usize = 16;

/// A buffer of the engine, as bind-group cache keys name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Buf {
    C,
    Tall(usize),
    Small(usize),
    Projected(usize),
    EigenWork,
    Scalars,
    History,
    Dummy,
}

/// A dispatch's identity: the kernel, its buffer bindings and its parameter bytes (binding 0).
type BindKey = (Kernel, Vec<(u32, Buf)>, Vec<u8>);

pub(crate) struct GpuEngine<'a> {
    ctx: &'a GpuContext,
    m: usize,
    mp: usize,
    k: usize,
    c: wgpu::Buffer,
    talls: Vec<wgpu::Buffer>,
    smalls: Vec<wgpu::Buffer>,
    projected: Vec<wgpu::Buffer>,
    /// The eigen kernels' work space (eigenvectors, rotations, ranks, scaling; made on first use).
    eigen_work: Option<wgpu::Buffer>,
    n_scalars: usize,
    scalars: wgpu::Buffer,
    /// history[0] = values recorded since the last check, then the values.
    history: wgpu::Buffer,
    history_staging: wgpu::Buffer,
    history_capacity: usize,
    recorded: usize,
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
}

impl<'a> GpuEngine<'a> {
    /// An engine over C (f64, m x m; sent once as f32) for k components, checking at most every
    /// `check_every` iterations.
    pub fn new(
        ctx: &'a GpuContext,
        c: &DMatrix<f64>,
        k: usize,
        check_every: usize,
    ) -> Result<Self> {
        let start = Instant::now();
        let m = c.nrows();
        ctx.check_fits(m)?;
        let mp = padded(m);
        let storage = U::STORAGE | U::COPY_DST | U::COPY_SRC;
        let c_buf = ctx.buffer("C", (mp * mp * 4) as u64, storage);
        let mut padded_c = vec![0f32; mp * mp];
        for j in 0..m {
            for i in 0..m {
                padded_c[i * mp + j] = c[(i, j)] as f32;
            }
        }
        ctx.queue
            .write_buffer(&c_buf, 0, bytemuck::cast_slice(&padded_c));
        // check_every comes from the user: saturate (a size the device refuses), never wrap.
        let history_capacity = check_every.saturating_add(1);
        let history_bytes = (history_capacity as u64)
            .saturating_add(1)
            .saturating_mul(4);
        let engine = GpuEngine {
            ctx,
            m,
            mp,
            k,
            c: c_buf,
            talls: Vec::new(),
            smalls: Vec::new(),
            projected: Vec::new(),
            eigen_work: None,
            n_scalars: 0,
            scalars: ctx.buffer("scalars", (SCALAR_CAPACITY * 4) as u64, storage),
            history: ctx.buffer("history", history_bytes, storage),
            history_staging: ctx.staging(history_bytes),
            weights_staging: ctx.staging((mp * k * 4) as u64),
            history_capacity,
            recorded: 0,
            dummy: ctx.buffer("unused binding", 16, U::STORAGE),
            encoder: None,
            pass: None,
            params: HashMap::new(),
            bind_groups: HashMap::new(),
            passes: 0,
            // C, the scalars, the history, its staging, the unused binding and the weights' staging.
            stats: EngineStats {
                buffers_created: 6,
                ..EngineStats::default()
            },
            upload_time: Duration::ZERO,
            readback_time: Duration::ZERO,
        };
        ctx.take_error()?;
        let mut engine = engine;
        engine.upload_time += start.elapsed();
        Ok(engine)
    }

    fn buffer(&self, b: Buf) -> &wgpu::Buffer {
        match b {
            Buf::C => &self.c,
            Buf::Tall(i) => &self.talls[i],
            Buf::Small(i) => &self.smalls[i],
            Buf::Projected(i) => &self.projected[i],
            Buf::EigenWork => self
                .eigen_work
                .as_ref()
                .expect("made before its first dispatch"),
            Buf::Scalars => &self.scalars,
            Buf::History => &self.history,
            Buf::Dummy => &self.dummy,
        }
    }

    /// Records one dispatch of `kernel` with the parameters `params` (binding 0) and the buffer `bindings`.
    fn dispatch(
        &mut self,
        kernel: Kernel,
        params: Vec<u8>,
        bindings: Vec<(u32, Buf)>,
        groups: (u32, u32),
    ) {
        let key = (kernel, bindings, params);
        if !self.bind_groups.contains_key(&key) {
            let ctx = self.ctx;
            if !self.params.contains_key(&key.2) {
                let b = ctx.buffer("params", key.2.len() as u64, U::STORAGE | U::COPY_DST);
                ctx.queue.write_buffer(&b, 0, &key.2);
                self.params.insert(key.2.clone(), b);
                self.stats.buffers_created += 1;
            }
            let param_buf = &self.params[&key.2];
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: param_buf.as_entire_binding(),
            }];
            for &(binding, buf) in &key.1 {
                entries.push(wgpu::BindGroupEntry {
                    binding,
                    resource: self.buffer(buf).as_entire_binding(),
                });
            }
            let layout = ctx.pipeline(kernel).get_bind_group_layout(0);
            let group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(kernel.entry_point()),
                layout: &layout,
                entries: &entries,
            });
            self.bind_groups.insert(key.clone(), group);
            self.stats.bind_groups_created += 1;
        }
        let pipeline = self.ctx.pipeline(kernel);
        if self.pass.is_none() {
            let mut encoder = self.ctx.encoder("laepca loop");
            let pass = encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("laepca loop"),
                    timestamp_writes: None,
                })
                .forget_lifetime();
            self.encoder = Some(encoder);
            self.pass = Some(pass);
        }
        let pass = self.pass.as_mut().expect("opened above");
        pass.set_pipeline(&pipeline);
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

    fn grid(&self) -> (u32, u32) {
        grid_1d(self.mp * self.k, self.ctx.workgroup())
    }

    /// Records an eigen kernel on the n x n matrix `a` (overwritten) into `out`.
    fn eigen(&mut self, kernel: Kernel, n: usize, a: Buf, out: Buf) {
        if self.eigen_work.is_none() {
            // For the largest order, SEARCH_BLOCKS·k: n² + 3n + 1 floats.
            let order = SEARCH_BLOCKS * self.k;
            let floats = order * order + 3 * order + 1;
            self.eigen_work = Some(
                self.ctx
                    .buffer("eigen work", (floats * 4) as u64, U::STORAGE),
            );
        }
        let drop = (ORTHO_DROP_ULPS * f32::EPSILON as f64) as f32;
        let params = words(&[n as u32, drop.to_bits(), 0, 0]);
        let binds = vec![(1, a), (2, out), (3, Buf::EigenWork)];
        self.dispatch(kernel, params, binds, (1, 1));
    }
}

fn words(values: &[u32]) -> Vec<u8> {
    bytemuck::cast_slice(values).to_vec()
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
            (self.mp * self.k * 4) as u64,
            U::STORAGE | U::COPY_DST | U::COPY_SRC,
        );
        self.talls.push(b);
        self.stats.buffers_created += 1;
        Tall(self.talls.len() - 1)
    }
    fn new_small(&mut self) -> Small {
        let b = self.ctx.buffer(
            "small",
            (self.k * self.k * 4) as u64,
            U::STORAGE | U::COPY_DST,
        );
        self.smalls.push(b);
        self.stats.buffers_created += 1;
        Small(self.smalls.len() - 1)
    }
    fn new_scalar(&mut self) -> Scalar {
        assert!(
            self.n_scalars < SCALAR_CAPACITY,
            "the solvers use at most {SCALAR_CAPACITY} scalars"
        );
        self.n_scalars += 1;
        Scalar(self.n_scalars - 1)
    }

    fn new_projected(&mut self) -> Projected {
        let n = SEARCH_BLOCKS * self.k;
        let b = self
            .ctx
            .buffer("projected", (n * n * 4) as u64, U::STORAGE | U::COPY_DST);
        self.projected.push(b);
        Projected(self.projected.len() - 1)
    }

    fn upload(&mut self, dst: Tall, values: &[f64]) -> Result<()> {
        let start = Instant::now();
        self.flush();
        let mut data = vec![0f32; self.mp * self.k];
        for j in 0..self.k {
            for i in 0..self.m {
                data[j * self.mp + i] = values[j * self.m + i] as f32;
            }
        }
        self.ctx
            .queue
            .write_buffer(&self.talls[dst.0], 0, bytemuck::cast_slice(&data));
        self.upload_time += start.elapsed();
        Ok(())
    }

    fn download(&mut self, src: Tall) -> Result<Vec<f64>> {
        let start = Instant::now();
        let encoder = self.take_encoder();
        let bytes = (self.mp * self.k * 4) as u64;
        let data = self
            .ctx
            .read_f32(encoder, &self.talls[src.0], &self.weights_staging, bytes)?;
        self.stats.submissions += 1;
        self.stats.host_waits += 1;
        let mut out = vec![0f64; self.m * self.k];
        for j in 0..self.k {
            for i in 0..self.m {
                out[j * self.m + i] = data[j * self.mp + i] as f64;
            }
        }
        self.readback_time += start.elapsed();
        Ok(out)
    }

    fn c_mul(&mut self, x: Tall, out: Tall) {
        self.passes += 1;
        let groups = (self.mp.div_ceil(64) as u32, self.k.div_ceil(16) as u32);
        let params = words(&[self.mp as u32, self.k as u32, 0, 0]);
        self.dispatch(
            Kernel::CMul,
            params,
            vec![(1, Buf::C), (2, Buf::Tall(x.0)), (3, Buf::Tall(out.0))],
            groups,
        );
    }
    fn inner(&mut self, a: Tall, b: Tall, out: Small) {
        let params = words(&[self.mp as u32, self.k as u32, 0, 0]);
        let binds = vec![
            (1, Buf::Tall(a.0)),
            (2, Buf::Tall(b.0)),
            (3, Buf::Small(out.0)),
        ];
        self.dispatch(Kernel::Inner, params, binds, (self.k as u32, self.k as u32));
    }
    fn mul_small(&mut self, a: Tall, s: Small, out: Tall) {
        let params = words(&[self.mp as u32, self.k as u32, 0, 0]);
        let binds = vec![
            (1, Buf::Tall(a.0)),
            (2, Buf::Small(s.0)),
            (3, Buf::Tall(out.0)),
        ];
        let grid = self.grid();
        self.dispatch(Kernel::MulSmall, params, binds, grid);
    }
    fn inverse_spd(&mut self, s: Small, shift: f64, out: Small) {
        let params = words(&[self.k as u32, (shift as f32).to_bits(), 0, 0]);
        self.dispatch(
            Kernel::InverseSpd,
            params,
            vec![(1, Buf::Small(s.0)), (2, Buf::Small(out.0))],
            (1, 1),
        );
    }
    fn inner_block(&mut self, a: Tall, b: Tall, out: Projected, (i, j): (usize, usize)) {
        let k = self.k;
        let params = words(&[self.mp as u32, k as u32, (i * k) as u32, (j * k) as u32]);
        let binds = vec![
            (1, Buf::Tall(a.0)),
            (2, Buf::Tall(b.0)),
            (3, Buf::Projected(out.0)),
        ];
        self.dispatch(Kernel::InnerBlock, params, binds, (k as u32, k as u32));
    }
    fn mul_block(&mut self, a: Tall, y: Projected, i: usize, out: Tall) {
        let params = words(&[self.mp as u32, self.k as u32, (i * self.k) as u32, 0]);
        let binds = vec![
            (1, Buf::Tall(a.0)),
            (2, Buf::Projected(y.0)),
            (3, Buf::Tall(out.0)),
        ];
        let grid = self.grid();
        self.dispatch(Kernel::MulBlock, params, binds, grid);
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
        assert!(terms.len() <= 4, "combine takes at most four terms");
        // Distinct inputs other than `out` go to the bindings t0..t3; terms on `out` read it in place.
        let mut inputs: Vec<usize> = Vec::new();
        let mut header = vec![self.len(), terms.len() as u32, 0, 0];
        let mut term_words = Vec::new();
        for &(coef, t) in terms {
            let source = if t == out {
                4
            } else {
                match inputs.iter().position(|&i| i == t.0) {
                    Some(p) => p as u32,
                    None => {
                        inputs.push(t.0);
                        inputs.len() as u32 - 1
                    }
                }
            };
            let (kind, value, num, den) = match coef {
                Coef::Const(v) => (0, v as f32, 0, 0),
                Coef::Ratio(n, d) => (1, 0.0, n.0 as u32, d.0 as u32),
                Coef::NegRatio(n, d) => (2, 0.0, n.0 as u32, d.0 as u32),
            };
            term_words.extend_from_slice(&[kind, value.to_bits(), num, den, source, 0, 0, 0]);
        }
        term_words.resize(4 * 8, 0);
        header.extend(term_words);
        let mut binds: Vec<(u32, Buf)> = (0..4)
            .map(|i| {
                (
                    1 + i as u32,
                    inputs.get(i).map_or(Buf::Dummy, |&t| Buf::Tall(t)),
                )
            })
            .collect();
        binds.push((5, Buf::Tall(out.0)));
        binds.push((6, Buf::Scalars));
        let grid = self.grid();
        self.dispatch(Kernel::Combine, words(&header), binds, grid);
    }
    fn dot(&mut self, a: Tall, b: Tall, out: Scalar) {
        let params = words(&[self.len(), out.0 as u32, 0, 0]);
        let binds = vec![(1, Buf::Tall(a.0)), (2, Buf::Tall(b.0)), (5, Buf::Scalars)];
        self.dispatch(Kernel::Dot, params, binds, (1, 1));
    }
    fn copy_scalar(&mut self, src: Scalar, dst: Scalar) {
        let mut params = vec![0u32; 4 + 32];
        params[2] = src.0 as u32;
        params[3] = dst.0 as u32;
        self.dispatch(
            Kernel::CopyScalar,
            words(&params),
            vec![(6, Buf::Scalars)],
            (1, 1),
        );
    }
    fn record_stop(&mut self, pairs: &[(Tall, Tall)]) {
        assert!((1..=2).contains(&pairs.len()), "one or two pairs");
        assert!(
            self.recorded < self.history_capacity,
            "check before the history fills"
        );
        let second = pairs
            .get(1)
            .copied()
            .map_or((Buf::Dummy, Buf::Dummy), |(a, b)| {
                (Buf::Tall(a.0), Buf::Tall(b.0))
            });
        let params = words(&[self.len(), pairs.len() as u32, 0, 0]);
        let binds = vec![
            (1, Buf::Tall(pairs[0].0 .0)),
            (2, Buf::Tall(pairs[0].1 .0)),
            (3, second.0),
            (4, second.1),
            (6, Buf::History),
        ];
        self.dispatch(Kernel::StopQuantity, params, binds, (1, 1));
        self.recorded += 1;
    }
    fn record_stop_ratio(&mut self, num: Tall, den: Tall) {
        assert!(
            self.recorded < self.history_capacity,
            "check before the history fills"
        );
        let params = words(&[self.len(), 0, 0, 0]);
        let binds = vec![
            (1, Buf::Tall(num.0)),
            (2, Buf::Tall(den.0)),
            (6, Buf::History),
        ];
        self.dispatch(Kernel::StopRatio, params, binds, (1, 1));
        self.recorded += 1;
    }
    fn passes(&self) -> usize {
        self.passes
    }
    fn check(&mut self) -> Result<Vec<f64>> {
        let encoder = self.take_encoder();
        let bytes = ((self.recorded + 1) * 4) as u64;
        let data = self
            .ctx
            .read_f32(encoder, &self.history, &self.history_staging, bytes)?;
        self.stats.submissions += 1;
        self.stats.host_waits += 1;
        let count = data[0] as usize;
        if count != self.recorded {
            return Err(Error::Gpu(format!(
                "the GPU recorded {count} stopping values, {} expected",
                self.recorded
            )));
        }
        self.recorded = 0;
        // Reset the counter; the write lands before the next submission.
        self.ctx
            .queue
            .write_buffer(&self.history, 0, bytemuck::cast_slice(&[0f32]));
        Ok(data[1..=count].iter().map(|&v| v as f64).collect())
    }
    fn stats(&self) -> EngineStats {
        self.stats
    }
}

impl GpuEngine<'_> {
    /// Time spent uploading C and the weights, and reading the weights back.
    pub fn transfer_times(&self) -> (Duration, Duration) {
        (self.upload_time, self.readback_time)
    }
}
