//! The kernel registry: every WGSL source as an `include_str!` constant next to the kernel that uses
//! it, and a cache of compiled pipelines.
//!
//! Every kernel takes its parameters (sizes, coefficients) at binding 0 as a read-only *storage*
//! buffer, not a uniform one. Mesa's lavapipe (22.3, the CI adapter) inlines uniform values that bound a
//! loop and compiles a new shader variant at every dispatch, never freed: ~0.8 MB and ~20 ms per
//! `c_mul` dispatch at m = 256 (one new memory mapping per iteration; a tied loop reached 1.7 GB after
//! 2000 iterations). Storage buffers are not inlined; on other adapters the difference is a few loads.

use std::collections::HashMap;

/// A WGSL source file of the crate (one kernel family per file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Gram,
    Matmul,
    Small,
    Update,
    Reduce,
    Eigen,
}

impl Family {
    /// The file name and its text.
    pub fn source(self) -> (&'static str, &'static str) {
        match self {
            Family::Gram => ("gram.wgsl", include_str!("../../shaders/gram.wgsl")),
            Family::Matmul => ("matmul.wgsl", include_str!("../../shaders/matmul.wgsl")),
            Family::Small => ("small.wgsl", include_str!("../../shaders/small.wgsl")),
            Family::Update => ("update.wgsl", include_str!("../../shaders/update.wgsl")),
            Family::Reduce => ("reduce.wgsl", include_str!("../../shaders/reduce.wgsl")),
            Family::Eigen => ("eigen.wgsl", include_str!("../../shaders/eigen.wgsl")),
        }
    }
}

/// A compute entry point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    GramColumns,
    GramChunk,
    CMul,
    Inner,
    MulSmall,
    InverseSpd,
    Combine,
    CopyScalar,
    Dot,
    StopQuantity,
    InnerBlock,
    MulBlock,
    RitzVectors,
    Orthonormalizer,
    StopRatio,
}

impl Kernel {
    pub fn family(self) -> Family {
        match self {
            Kernel::GramColumns | Kernel::GramChunk => Family::Gram,
            Kernel::CMul
            | Kernel::Inner
            | Kernel::MulSmall
            | Kernel::InnerBlock
            | Kernel::MulBlock => Family::Matmul,
            Kernel::InverseSpd => Family::Small,
            Kernel::Combine | Kernel::CopyScalar => Family::Update,
            Kernel::Dot | Kernel::StopQuantity | Kernel::StopRatio => Family::Reduce,
            Kernel::RitzVectors | Kernel::Orthonormalizer => Family::Eigen,
        }
    }

    pub fn entry_point(self) -> &'static str {
        match self {
            Kernel::GramColumns => "gram_columns",
            Kernel::GramChunk => "gram_chunk",
            Kernel::CMul => "c_mul",
            Kernel::Inner => "inner",
            Kernel::MulSmall => "mul_small",
            Kernel::InverseSpd => "inverse_spd",
            Kernel::Combine => "combine",
            Kernel::CopyScalar => "copy_scalar",
            Kernel::Dot => "dot",
            Kernel::StopQuantity => "stop_quantity",
            Kernel::InnerBlock => "inner_block",
            Kernel::MulBlock => "mul_block",
            Kernel::RitzVectors => "ritz_vectors",
            Kernel::Orthonormalizer => "orthonormalizer",
            Kernel::StopRatio => "stop_ratio",
        }
    }

    /// Whether the entry point has the `WG` override (its workgroup size, chosen per adapter).
    pub fn has_workgroup_override(self) -> bool {
        !matches!(self, Kernel::GramChunk | Kernel::CMul | Kernel::CopyScalar)
    }
}

/// Compiled pipelines, one per kernel, made on first use.
pub struct PipelineCache {
    modules: HashMap<Family, wgpu::ShaderModule>,
    pipelines: HashMap<Kernel, wgpu::ComputePipeline>,
    /// The one-dimensional workgroup size (a power of two the adapter allows).
    pub workgroup: u32,
}

impl PipelineCache {
    pub fn new(workgroup: u32) -> Self {
        PipelineCache {
            modules: HashMap::new(),
            pipelines: HashMap::new(),
            workgroup,
        }
    }

    pub fn get(&mut self, device: &wgpu::Device, kernel: Kernel) -> &wgpu::ComputePipeline {
        if !self.pipelines.contains_key(&kernel) {
            let family = kernel.family();
            let module = self.modules.entry(family).or_insert_with(|| {
                let (name, text) = family.source();
                device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(name),
                    source: wgpu::ShaderSource::Wgsl(text.into()),
                })
            });
            let constants = [("WG", self.workgroup as f64)];
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(kernel.entry_point()),
                layout: None,
                module,
                entry_point: Some(kernel.entry_point()),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: if kernel.has_workgroup_override() {
                        &constants
                    } else {
                        &[]
                    },
                    zero_initialize_workgroup_memory: true,
                },
                cache: None,
            });
            self.pipelines.insert(kernel, pipeline);
        }
        &self.pipelines[&kernel]
    }
}
