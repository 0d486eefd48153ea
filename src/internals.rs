//! The crate's internals that its integration tests check (tests/engine_ops.rs: every engine
//! operation on both engines; tests/shaders.rs: the Rust–WGSL contract). Not a stable API: hidden from
//! the documentation, and free to change with the engines.

use crate::cpu::CpuEngine;
use crate::gpu::kernels::{Family, Kernel, TREE_SUM};
use crate::gpu::{contract::PARAMS, GpuDevice, GpuEngine};
use crate::{Arithmetic, Real, Result};
use nalgebra::DMatrix;

pub use crate::engine::{
    Coef, Engine, Projected, Scalar, Small, Tall, MAX_COMBINE_TERMS, MAX_SCALARS, MAX_STOP_PAIRS,
    MAX_UNREAD_CHECKS, ORTHO_DROP_ULPS, SEARCH_BLOCKS,
};
pub use crate::gpu::contract::{Access, Binding, FieldLayout, StructLayout};
pub use crate::gpu::kernels::WORKGROUP_OVERRIDE;

/// Makes a GPU accumulator copy every later chunk to the device without running a kernel on it, so
/// that a timing shows the host's side of the Gram phase alone (examples/gram_time.rs); its C is then
/// wrong. False (and nothing changed) for a CPU accumulator.
pub fn gram_host_side_only(acc: &mut crate::GramAccumulator) -> bool {
    acc.skip_gpu_kernels()
}

/// The bytes of a GPU accumulator's chunk buffers (its staging ring and device chunks); None for a
/// CPU accumulator.
pub fn gram_chunk_buffer_bytes(acc: &crate::GramAccumulator) -> Option<u64> {
    acc.gpu_chunk_buffer_bytes()
}

/// The CPU's f32 Gram block kernel as the Gram accumulation runs it (benches/gram_kernels.rs,
/// examples/cpu_gram_time.rs): laepca's AVX2 kernel where the CPU has AVX2 and FMA, else faer's
/// triangular product; on rayon's global pool.
pub struct GramBlockKernel {
    m: usize,
    scratch: crate::cpu_kernels::GramScratch,
}

impl GramBlockKernel {
    /// The kernel for blocks of m features (m ≥ 1).
    pub fn new(m: usize) -> Result<Self> {
        if m == 0 {
            return Err(crate::Error::InvalidParameter {
                name: "m",
                value: 0.0,
                reason: "a Gram block kernel needs at least one feature",
            });
        }
        Ok(GramBlockKernel {
            m,
            scratch: crate::cpu_kernels::GramScratch::new::<f32>(m)?,
        })
    }

    /// Whether it is laepca's AVX2 kernel (else faer's).
    pub fn is_avx2(&self) -> bool {
        self.scratch.is_avx2()
    }

    /// The lower triangle of `Bᵀ B` for the row-major block `rows` (a multiple of m values) into
    /// `out` (m x m, column-major; the strict upper triangle untouched).
    pub fn lower(&mut self, rows: &[f32], out: &mut [f32]) -> Result<()> {
        let (m, par) = (self.m, crate::cpu_kernels::parallelism());
        if rows.len() % m != 0 || out.len() != m * m {
            return Err(crate::Error::ShapeMismatch {
                what: format!(
                    "{} values are not whole rows of {m} features, or {} not {m} x {m}",
                    rows.len(),
                    out.len()
                ),
            });
        }
        crate::cpu_kernels::gram_lower(rows, rows.len() / m, m, out, par, &mut self.scratch);
        Ok(())
    }
}

/// The CPU engine over C (m x m) for k components in precision `T`, checking at most every
/// `check_every` iterations.
pub fn cpu_engine<T: Real>(c: &DMatrix<f64>, k: usize, check_every: usize) -> Box<dyn Engine> {
    Box::new(CpuEngine::<T>::new(c, k, check_every))
}

/// The GPU engine on `device` over C (m x m) for k components, checking at most every `check_every`
/// iterations.
pub fn gpu_engine<'a>(
    device: &'a GpuDevice,
    c: &DMatrix<f64>,
    k: usize,
    check_every: usize,
) -> Result<Box<dyn Engine + 'a>> {
    gpu_engine_in(device, c, k, check_every, Arithmetic::F32)
}

/// [`gpu_engine`] in `arithmetic` (f64 needs a device with f64 shaders).
pub fn gpu_engine_in<'a>(
    device: &'a GpuDevice,
    c: &DMatrix<f64>,
    k: usize,
    check_every: usize,
    arithmetic: Arithmetic,
) -> Result<Box<dyn Engine + 'a>> {
    Ok(Box::new(GpuEngine::new(
        device.context(),
        c,
        k,
        check_every,
        arithmetic,
    )?))
}

/// [`gpu_engine`] whose eigen kernels split into dispatches of at most `jacobi_budget` loop
/// iterations per invocation (the default: `JACOBI_DISPATCH_BUDGET` in src/gpu/engine.rs), so that
/// tests can check the split changes no bit.
pub fn gpu_engine_with_jacobi_budget<'a>(
    device: &'a GpuDevice,
    c: &DMatrix<f64>,
    k: usize,
    check_every: usize,
    jacobi_budget: usize,
) -> Result<Box<dyn Engine + 'a>> {
    let mut engine = GpuEngine::new(device.context(), c, k, check_every, Arithmetic::F32)?;
    engine.set_jacobi_budget(jacobi_budget);
    Ok(Box::new(engine))
}

/// A kernel family (one .wgsl file) as the registry compiles it.
#[derive(Clone, Debug)]
pub struct ShaderFamily {
    /// The file name under shaders/.
    pub file: &'static str,
    /// The module's WGSL in f32: the file, then the helpers the registry appends to it.
    pub source: String,
    /// The same in f64, for a family written over `Real` (None for the f32-only families).
    pub source_f64: Option<String>,
    /// The WGSL structs shared with Rust, as Rust lays them out (the parameter struct first).
    pub structs: &'static [StructLayout],
    /// Its kernels.
    pub kernels: Vec<ShaderKernel>,
}

/// One entry point of a family, as the kernel table describes it.
#[derive(Clone, Debug)]
pub struct ShaderKernel {
    /// The entry point's name.
    pub entry_point: &'static str,
    /// The bindings of its bind group layout: the parameters first, then the table's.
    pub bindings: Vec<Binding>,
}

/// Every kernel family, with its kernels.
pub fn shader_families() -> Vec<ShaderFamily> {
    Family::ALL
        .iter()
        .map(|&family| {
            let info = family.info();
            ShaderFamily {
                file: info.file,
                source: family.wgsl(Arithmetic::F32),
                source_f64: info.generic.then(|| family.wgsl(Arithmetic::F64)),
                structs: info.structs,
                kernels: Kernel::ALL
                    .iter()
                    .filter(|kernel| kernel.family() == family)
                    .map(|kernel| ShaderKernel {
                        entry_point: kernel.entry_point(),
                        bindings: std::iter::once(PARAMS)
                            .chain(kernel.bindings().iter().copied())
                            .collect(),
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The helper files (under shaders/) the registry appends to families.
pub fn shader_helpers() -> Vec<&'static str> {
    vec![TREE_SUM.0]
}

/// The loop's C that an f32 GPU fit makes on the device from an accumulation of `rows` (row-major,
/// m features, centred): `C / trace(C)` read back as the mp x mp matrix the loop multiplies by (m
/// padded to a multiple of 4), with the host's C for comparison (m x m, f64); None where the
/// accumulation does not keep its sums on the device (its centring term is too large).
pub fn loop_c_on_device(
    device: &GpuDevice,
    rows: &[f32],
    m: usize,
) -> Result<Option<(DMatrix<f64>, DMatrix<f64>)>> {
    let mut acc = crate::GramAccumulator::on_device(device, m, true)?;
    acc.push_rows(rows)?;
    let (stats, _, sums) = acc.finish_parts(true)?;
    let Some(sums) = sums else {
        return Ok(None);
    };
    let ctx = std::sync::Arc::clone(sums.context());
    let mp = crate::gpu::padded(m);
    let mut loop_c = DMatrix::zeros(mp, mp);
    for (row0, rows, panel) in sums.into_loop_panels(stats.trace())? {
        let bytes = (rows * mp * 4) as u64;
        let staging = ctx.staging(bytes);
        let mut encoder = ctx.encoder("read the loop's C");
        encoder.copy_buffer_to_buffer(&panel, 0, &staging, 0, bytes);
        let values = ctx.submit_and_read(encoder, &staging, bytes)?;
        for (r, row) in values.chunks_exact(mp).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                loop_c[(row0 + r, j)] = v as f64;
            }
        }
    }
    Ok(Some((loop_c, stats.c)))
}
