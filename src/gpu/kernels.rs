//! The kernel registry: every WGSL source as an `include_str!` constant, the table of kernels (entry
//! point, family, bindings), and a cache of compiled pipelines with their explicit bind group layouts.
//!
//! Every kernel takes its parameters (sizes, coefficients) at binding 0 as a read-only *storage*
//! buffer, not a uniform one. Mesa's lavapipe (22.3, the CI adapter) inlines uniform values that bound a
//! loop and compiles a new shader variant at every dispatch, never freed: ~0.8 MB and ~20 ms per
//! `c_mul` dispatch at m = 256 (one new memory mapping per iteration; a tied loop reached 1.7 GB after
//! 2000 iterations). Storage buffers are not inlined; on other adapters the difference is a few loads.
//!
//! Every family declares `override WG` (the one-dimensional workgroup size); the registry passes the
//! adapter's value to every pipeline (an entry point that does not use it ignores it). Adding a kernel
//! touches its .wgsl file, one row of [`kernel_table!`] and the engine call that dispatches it.

use super::contract::{
    eigen, gram, matmul, reduce, small, sparse, update, Access, Binding, CombineTerm, EigenParams,
    GramPanel, GramParams, MatmulParams, ReduceParams, SmallParams, SparseParams, StructLayout,
    UpdateParams, WgslStruct, PARAMS,
};
use crate::Arithmetic;
use std::collections::HashMap;

/// The name of every family's workgroup-size override.
pub const WORKGROUP_OVERRIDE: &str = "WG";

/// A helper appended to the families that use it: `tree_sum`, the fixed-order workgroup sum.
pub const TREE_SUM: (&str, &str) = (
    "prelude/tree_sum.wgsl",
    include_str!("../../shaders/prelude/tree_sum.wgsl"),
);

/// A WGSL source file of the crate (one kernel family per file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// gram.wgsl: the Gram matrix of chunks of samples.
    Gram,
    /// matmul.wgsl: the loop's products.
    Matmul,
    /// small.wgsl: the k x k inverse.
    Small,
    /// update.wgsl: fused element-wise updates.
    Update,
    /// reduce.wgsl: Frobenius products and stopping quantities.
    Reduce,
    /// eigen.wgsl: small symmetric eigenproblems.
    Eigen,
    /// sparse.wgsl: products with a sparse matrix (the operator route).
    Sparse,
}

/// What the registry knows of a family's file.
pub struct FamilyInfo {
    /// The file name under shaders/.
    pub file: &'static str,
    /// Its text.
    pub text: &'static str,
    /// Its WGSL structs shared with Rust: the parameter struct (of the variable `p`) first.
    pub structs: &'static [StructLayout],
    /// Whether [`TREE_SUM`] is appended to it.
    pub tree_sum: bool,
    /// Whether it is written over the scalar type `Real`, which the registry defines as f32 or f64
    /// ([`Family::wgsl`]); the others (the Gram and sparse families) are f32 only.
    pub generic: bool,
    /// Whether its every storage and workgroup index is in range by the kernel's own checks (its file
    /// says how), so that the module is compiled without wgpu's runtime bounds checks, which clamp
    /// every index (a min per access in the inner loops).
    pub bounds_checked_by_kernel: bool,
}

impl Family {
    /// Every family.
    pub const ALL: [Family; 7] = [
        Family::Gram,
        Family::Matmul,
        Family::Small,
        Family::Update,
        Family::Reduce,
        Family::Eigen,
        Family::Sparse,
    ];

    /// The file, its text, its shared structs and its helpers.
    pub fn info(self) -> FamilyInfo {
        let (file, text, structs, tree_sum): (_, _, &'static [StructLayout], _) = match self {
            Family::Gram => (
                "gram.wgsl",
                include_str!("../../shaders/gram.wgsl"),
                &[GramParams::LAYOUT, GramPanel::LAYOUT],
                false,
            ),
            Family::Matmul => (
                "matmul.wgsl",
                include_str!("../../shaders/matmul.wgsl"),
                &[MatmulParams::LAYOUT],
                true,
            ),
            Family::Small => (
                "small.wgsl",
                include_str!("../../shaders/small.wgsl"),
                &[SmallParams::LAYOUT],
                false,
            ),
            Family::Update => (
                "update.wgsl",
                include_str!("../../shaders/update.wgsl"),
                &[UpdateParams::LAYOUT, CombineTerm::LAYOUT],
                false,
            ),
            Family::Reduce => (
                "reduce.wgsl",
                include_str!("../../shaders/reduce.wgsl"),
                &[ReduceParams::LAYOUT],
                true,
            ),
            Family::Eigen => (
                "eigen.wgsl",
                include_str!("../../shaders/eigen.wgsl"),
                &[EigenParams::LAYOUT],
                true,
            ),
            Family::Sparse => (
                "sparse.wgsl",
                include_str!("../../shaders/sparse.wgsl"),
                &[SparseParams::LAYOUT],
                true,
            ),
        };
        FamilyInfo {
            file,
            text,
            structs,
            tree_sum,
            generic: !matches!(self, Family::Gram | Family::Sparse),
            bounds_checked_by_kernel: self == Family::Gram,
        }
    }

    /// The name of the family's parameter struct.
    pub fn params_name(self) -> &'static str {
        self.info().structs[0].name
    }

    /// The arithmetic the family is compiled in when `asked` is: `asked` for a
    /// [generic](FamilyInfo::generic) family, f32 for the f32-only ones.
    pub fn arithmetic(self, asked: Arithmetic) -> Arithmetic {
        if self.info().generic {
            asked
        } else {
            Arithmetic::F32
        }
    }

    /// The module's WGSL in [`arithmetic`](Self::arithmetic)`(asked)`: the family's file, then the
    /// helpers it uses (written over `Real` too), then the scalar type `Real`, its `EPSILON` and
    /// `EXTRA_NEWTON_STEPS` (module-scope declarations may come in any order, and the file's own line
    /// numbers stay those of naga's diagnostics). f64 needs a device with SHADER_F64.
    pub fn wgsl(self, asked: Arithmetic) -> String {
        let info = self.info();
        let mut text = info.text.to_string();
        if info.tree_sum {
            text.push('\n');
            text.push_str(TREE_SUM.1);
        }
        let arithmetic = self.arithmetic(asked);
        // EXTRA_NEWTON_STEPS: eigen.wgsl's refinement of inverseSqrt, which Vulkan's f64 may compute
        // only to f32's accuracy.
        let (epsilon, extra_newton_steps) = match arithmetic {
            Arithmetic::F32 => ("1.1920928955078125e-7", 0),
            Arithmetic::F64 => ("2.220446049250313e-16", 2),
        };
        let ty = arithmetic.name();
        text.push_str(&format!(
            "\n// The scalar type (src/gpu/kernels.rs).\nalias Real = {ty};\n\
             const EPSILON: Real = {epsilon};\n\
             const EXTRA_NEWTON_STEPS: u32 = {extra_newton_steps}u;\n"
        ));
        text
    }
}

/// The kernel table: one row per compute entry point, `Kernel => Family, "entry point", [the bindings
/// it uses besides its parameters at binding 0]`. Generates [`Kernel`] and its accessors.
macro_rules! kernel_table {
    ($($(#[$doc:meta])* $kernel:ident => $family:ident, $entry:literal, [$($binding:expr),* $(,)?];)*) => {
        /// A compute entry point.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Kernel {
            $($(#[$doc])* $kernel,)*
        }

        impl Kernel {
            /// Every kernel, in table order.
            pub const ALL: &'static [Kernel] = &[$(Kernel::$kernel,)*];

            /// The file it is in.
            pub fn family(self) -> Family {
                match self {
                    $(Kernel::$kernel => Family::$family,)*
                }
            }

            /// Its entry point's name.
            pub fn entry_point(self) -> &'static str {
                match self {
                    $(Kernel::$kernel => $entry,)*
                }
            }

            /// The storage buffers it uses besides its parameters ([`PARAMS`]), by binding number.
            pub fn bindings(self) -> &'static [Binding] {
                match self {
                    $(Kernel::$kernel => {
                        const BINDINGS: &[Binding] = &[$($binding),*];
                        BINDINGS
                    })*
                }
            }
        }
    };
}

kernel_table! {
    /// The shift (first chunk) and the column sums of a chunk.
    GramColumns => Gram, "gram_columns", [gram::X, gram::SHIFT, gram::SUMS_HI, gram::SUMS_LO];
    /// C's running totals += a chunk's Gram matrix, slice by slice.
    GramChunk => Gram, "gram_chunk", [gram::X, gram::C_HI, gram::C_LO, gram::SHIFT, gram::PANEL];
    /// The split-K totals of C added into the first.
    GramFold => Gram, "gram_fold", [gram::C_HI, gram::C_LO, gram::PANEL];
    /// The loop's C on and above the diagonal, in place of the high part of C's sums.
    GramToLoop => Gram, "gram_to_loop", [gram::C_HI, gram::C_LO, gram::PANEL, gram::CENTRE];
    /// The loop's C below the diagonal of a panel, from the panel's own upper blocks.
    GramMirrorWithin => Gram, "gram_mirror_within", [gram::C_HI, gram::PANEL];
    /// The loop's C below the diagonal of a panel, from a panel above it.
    GramMirror => Gram, "gram_mirror", [gram::C_HI, gram::PANEL, gram::SOURCE, gram::SOURCE_PANEL];
    /// out = C x.
    CMul => Matmul, "c_mul", [matmul::A, matmul::B, matmul::OUT];
    /// out = C x, and the parts of xᵀ out by row blocks.
    CMulGram => Matmul, "c_mul_gram", [matmul::A, matmul::B, matmul::OUT, matmul::GRAM_PART];
    /// out = aᵀ b.
    Inner => Matmul, "inner", [matmul::A, matmul::B, matmul::OUT];
    /// out = a s.
    MulSmall => Matmul, "mul_small", [matmul::A, matmul::B, matmul::OUT];
    /// A block of a projected matrix = aᵀ b.
    InnerBlock => Matmul, "inner_block", [matmul::A, matmul::B, matmul::OUT];
    /// out = a times a block of a projected matrix.
    MulBlock => Matmul, "mul_block", [matmul::A, matmul::B, matmul::OUT];
    /// The projected matrix Sᵀ (C S) of a search basis, its six upper blocks at once.
    Projected => Matmul, "projected", [
        matmul::OUT, matmul::BASIS[0], matmul::BASIS[1], matmul::BASIS[2],
        matmul::IMAGE[0], matmul::IMAGE[1], matmul::IMAGE[2],
    ];
    /// out = Σᵢ sᵢ Yᵢ and tail = Σ_{i ≥ 1} sᵢ Yᵢ; out1 and tail1 the same of csᵢ.
    MulBlocks => Matmul, "mul_blocks", [
        matmul::B, matmul::OUT, matmul::BASIS[0], matmul::BASIS[1], matmul::BASIS[2],
        matmul::IMAGE[0], matmul::IMAGE[1], matmul::IMAGE[2], matmul::TAIL, matmul::OUT1,
        matmul::TAIL1,
    ];
    /// out = a s and out1 = a1 s.
    MulSmallPair => Matmul, "mul_small_pair", [
        matmul::A, matmul::B, matmul::OUT, matmul::A1, matmul::OUT1,
    ];
    /// out −= a s and out1 −= a1 s.
    MulSmallSubPair => Matmul, "mul_small_sub_pair", [
        matmul::A, matmul::B, matmul::OUT, matmul::A1, matmul::OUT1,
    ];
    /// out = base − a s.
    MulSmallSub => Matmul, "mul_small_sub", [matmul::A, matmul::B, matmul::OUT, matmul::BASE];
    /// out −= a s.
    MulSmallSubInPlace => Matmul, "mul_small_sub_in_place", [matmul::A, matmul::B, matmul::OUT];
    /// out = (s + shift·I)⁻¹.
    InverseSpd => Small, "inverse_spd", [small::S, small::OUT];
    /// gram = the sum of the parts in s, out = (gram + shift·I)⁻¹.
    InverseSpdOfParts => Small, "inverse_spd_of_parts", [small::S, small::OUT, small::GRAM];
    /// out = Σ cᵢ tᵢ.
    Combine => Update, "combine", [
        update::TERMS[0], update::TERMS[1], update::TERMS[2], update::TERMS[3],
        update::OUT, update::SCALARS,
    ];
    /// One scalar copied to another.
    CopyScalar => Update, "copy_scalar", [update::SCALARS];
    /// A scalar = ⟨a, b⟩_F.
    Dot => Reduce, "dot", [reduce::A0, reduce::B0, reduce::SCALARS];
    /// Records Σ ‖aⱼ − bⱼ‖_F.
    StopQuantity => Reduce, "stop_quantity", [
        reduce::A0, reduce::B0, reduce::A1, reduce::B1, reduce::HISTORY,
    ];
    /// Records ‖a‖_F / ‖b‖_F.
    StopRatio => Reduce, "stop_ratio", [reduce::A0, reduce::B0, reduce::HISTORY];
    /// The eigenvectors of a symmetric matrix.
    RitzVectors => Eigen, "ritz_vectors", [eigen::A, eigen::OUT, eigen::WORK];
    /// The SVQB orthonormalizer of a Gram matrix.
    Orthonormalizer => Eigen, "orthonormalizer", [eigen::A, eigen::OUT, eigen::WORK];
    /// out = a panel of a sparse matrix times b, less a centring term.
    Spmm => Sparse, "spmm", [sparse::PANEL, sparse::B, sparse::MEAN, sparse::SUMS, sparse::OUT];
    /// The (mean-weighted) column sums of b.
    ColumnSums => Sparse, "column_sums", [sparse::B, sparse::MEAN, sparse::SUMS_OUT];
}

impl Kernel {
    /// The most storage buffers one kernel binds, its parameters included: what an adapter must
    /// allow per shader stage (checked when a device is opened).
    pub fn most_storage_buffers() -> usize {
        Kernel::ALL
            .iter()
            .map(|k| k.bindings().len() + 1)
            .max()
            .unwrap_or(1)
    }

    /// Panics unless `given` are the kernel's table bindings, in table order (a call site that binds
    /// other buffers than its kernel declares is a bug of the engine).
    pub fn assert_bindings<'a>(self, given: impl IntoIterator<Item = &'a Binding> + Clone) {
        assert!(
            given.clone().into_iter().eq(self.bindings()),
            "{self:?}: bindings {:?}, not those of the kernel table {:?}",
            given.into_iter().collect::<Vec<_>>(),
            self.bindings()
        );
    }

    /// Its bind group layout's entries: [`PARAMS`], then its table bindings, each a storage buffer
    /// read-only or read-write as the WGSL declares it.
    fn layout_entries(self) -> Vec<wgpu::BindGroupLayoutEntry> {
        std::iter::once(&PARAMS)
            .chain(self.bindings())
            .map(|b| wgpu::BindGroupLayoutEntry {
                binding: b.number,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: b.access == Access::Read,
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect()
    }
}

/// A kernel's compiled pipeline and the layout of its bind group 0.
#[derive(Clone)]
pub struct Compiled {
    /// The pipeline.
    pub pipeline: wgpu::ComputePipeline,
    /// Its bind group layout (from the kernel table, not derived from the shader).
    pub layout: wgpu::BindGroupLayout,
}

/// Compiled pipelines, one per kernel and arithmetic, made on first use.
pub struct PipelineCache {
    modules: HashMap<(Family, Arithmetic), wgpu::ShaderModule>,
    pipelines: HashMap<(Kernel, Arithmetic), Compiled>,
    /// The one-dimensional workgroup size (a power of two the adapter allows).
    pub workgroup: u32,
}

impl PipelineCache {
    /// An empty cache for pipelines of `workgroup` threads.
    pub fn new(workgroup: u32) -> Self {
        PipelineCache {
            modules: HashMap::new(),
            pipelines: HashMap::new(),
            workgroup,
        }
    }

    /// The pipeline of `kernel` in `arithmetic`, compiled on first use (f64 only for generic families,
    /// on a device with SHADER_F64).
    pub fn get(
        &mut self,
        device: &wgpu::Device,
        kernel: Kernel,
        arithmetic: Arithmetic,
    ) -> &Compiled {
        let family = kernel.family();
        // The f32-only families have one pipeline, whatever is asked.
        let arithmetic = family.arithmetic(arithmetic);
        let key = (kernel, arithmetic);
        if !self.pipelines.contains_key(&key) {
            let module = self.modules.entry((family, arithmetic)).or_insert_with(|| {
                let descriptor = wgpu::ShaderModuleDescriptor {
                    label: Some(family.info().file),
                    source: wgpu::ShaderSource::Wgsl(family.wgsl(arithmetic).into()),
                };
                if family.info().bounds_checked_by_kernel {
                    let checks = wgpu::ShaderRuntimeChecks {
                        bounds_checks: false,
                        ..wgpu::ShaderRuntimeChecks::checked()
                    };
                    // SAFETY: only the bounds checks are off, for a family whose kernels keep every
                    // index in range themselves (`bounds_checked_by_kernel`); loop bounding and the
                    // integer-division checks stay on.
                    unsafe { device.create_shader_module_trusted(descriptor, checks) }
                } else {
                    device.create_shader_module(descriptor)
                }
            });
            let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(kernel.entry_point()),
                entries: &kernel.layout_entries(),
            });
            let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(kernel.entry_point()),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
            let constants = [(WORKGROUP_OVERRIDE, self.workgroup as f64)];
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(kernel.entry_point()),
                layout: Some(&pipeline_layout),
                module,
                entry_point: Some(kernel.entry_point()),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    zero_initialize_workgroup_memory: true,
                },
                cache: None,
            });
            self.pipelines.insert(key, Compiled { pipeline, layout });
        }
        &self.pipelines[&key]
    }
}
