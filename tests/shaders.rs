//! Offline checks of the WGSL compute shaders in `shaders/` (no GPU needed).
//!
//! For every shader file this test
//! 1. parses it with naga's WGSL front end and validates it with
//!    `ValidationFlags::all()` and `Capabilities::empty()` (the narrowest set:
//!    no optional capability at all, i.e. only what every WebGPU
//!    implementation must accept; narrower than `Capabilities::default()`),
//! 2. resolves its pipeline-overridable constants with
//!    `naga::back::pipeline_constants::process_overrides`, once per entry
//!    point, for `WG = 256` and `WG = 64` (a file without an `override WG`
//!    just once, with no constants), the way wgpu does it when it builds a
//!    compute pipeline,
//! 3. translates every compute entry point of the resolved module to SPIR-V,
//!    MSL 2.0, HLSL shader model 5.1 and GLSL ES 3.10 (one entry point at a
//!    time), and asserts that each translation succeeds and is not empty.
//!
//! Every failure names the file, the entry point, the `WG` value and the
//! backend, and a file's failures are all reported together.
//!
//! The families written over the scalar type `Real` are checked a second
//! time as the registry compiles them in f64: validated with
//! `Capabilities::FLOAT64` only, and translated to SPIR-V, the language of
//! the one backend laepca runs f64 on (Vulkan: DX12's HLSL has no f64
//! square root, Metal and GL ES no f64 at all; laepca runs f32 there).
//!
//! The sources are the modules the kernel registry compiles (each family's
//! file with the helpers appended to it), taken from the crate. The same
//! module's reflection is also compared with the Rust side of the contract:
//! each WGSL struct shared with Rust against its `#[repr(C)]` twin (member
//! names, offsets and sizes, the struct's span), the type of every family's
//! parameters `p`, and each entry point's storage bindings (number, name,
//! read-only or read-write) against the kernel table the bind group layouts
//! are built from.

use std::error::Error;
use std::fmt::Write as _;

use laepca::internals::{
    shader_families, shader_helpers, Access, Binding, ShaderFamily, StructLayout,
    WORKGROUP_OVERRIDE as WG_OVERRIDE,
};
use naga::back::{glsl, hlsl, msl, spv};
use naga::proc::{BoundsCheckPolicies, BoundsCheckPolicy};
use naga::valid::{Capabilities, ModuleInfo, ValidationFlags, Validator};
use naga::{Module, ShaderStage};

/// The workgroup sizes each shader with an `override WG` is resolved for.
const WORKGROUP_SIZES: &[u32] = &[256, 64];

/// The bounds-check policies wgpu applies by default (no unchecked access).
fn bounds_checks() -> BoundsCheckPolicies {
    BoundsCheckPolicies {
        index: BoundsCheckPolicy::Restrict,
        buffer: BoundsCheckPolicy::Restrict,
        image_load: BoundsCheckPolicy::Restrict,
        binding_array: BoundsCheckPolicy::Restrict,
    }
}

/// `error` and the chain of its sources, on one line.
fn error_chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

/// Parses and validates `source` with `capabilities` (none for f32); `Err` holds naga's diagnostic.
fn parse_and_validate_with(
    file: &str,
    source: &str,
    capabilities: Capabilities,
) -> Result<(Module, ModuleInfo), String> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| {
        format!(
            "{file}: WGSL parse failed:\n{}",
            e.emit_to_string_with_path(source, file)
        )
    })?;
    // Capabilities::empty() for f32: a portable WebGPU compute shader needs no
    // optional capability (no f64, f16, subgroups, immediates, ...).
    let info = Validator::new(ValidationFlags::all(), capabilities)
        .validate(&module)
        .map_err(|e| {
            format!(
                "{file}: validation failed:\n{}",
                e.emit_to_string_with_path(source, file)
            )
        })?;
    Ok((module, info))
}

fn to_spirv(module: &Module, info: &ModuleInfo, entry: &str) -> Result<(), String> {
    let options = spv::Options {
        bounds_check_policies: bounds_checks(),
        ..spv::Options::default()
    };
    let pipeline = spv::PipelineOptions {
        shader_stage: ShaderStage::Compute,
        entry_point: entry.to_string(),
    };
    let words =
        spv::write_vec(module, info, &options, Some(&pipeline)).map_err(|e| error_chain(&e))?;
    if words.first() != Some(&0x0723_0203) {
        return Err(format!(
            "output is not a SPIR-V module ({} words)",
            words.len()
        ));
    }
    Ok(())
}

fn to_msl(module: &Module, info: &ModuleInfo, entry: &str) -> Result<(), String> {
    let options = msl::Options {
        lang_version: (2, 0),
        bounds_check_policies: bounds_checks(),
        ..msl::Options::default()
    };
    let pipeline = msl::PipelineOptions {
        entry_point: Some((ShaderStage::Compute, entry.to_string())),
        ..msl::PipelineOptions::default()
    };
    let (text, translation) =
        msl::write_string(module, info, &options, &pipeline).map_err(|e| error_chain(&e))?;
    // The MSL writer reports per-entry-point failures here, not as an `Err`.
    for name in translation.entry_point_names {
        name.map_err(|e| error_chain(&e))?;
    }
    if text.trim().is_empty() {
        return Err("empty output".to_string());
    }
    Ok(())
}

fn to_hlsl(module: &Module, info: &ModuleInfo, entry: &str) -> Result<(), String> {
    let options = hlsl::Options {
        shader_model: hlsl::ShaderModel::V5_1,
        ..hlsl::Options::default()
    };
    let pipeline = hlsl::PipelineOptions {
        entry_point: Some((ShaderStage::Compute, entry.to_string())),
    };
    let mut text = String::new();
    let reflection = hlsl::Writer::new(&mut text, &options, &pipeline)
        .write(module, info, None)
        .map_err(|e| error_chain(&e))?;
    // The HLSL writer reports per-entry-point failures here, not as an `Err`.
    for name in reflection.entry_point_names {
        name.map_err(|e| error_chain(&e))?;
    }
    if text.trim().is_empty() {
        return Err("empty output".to_string());
    }
    Ok(())
}

fn to_glsl(module: &Module, info: &ModuleInfo, entry: &str) -> Result<(), String> {
    let options = glsl::Options {
        // GLSL ES 3.10 is the lowest GLSL with compute shaders (what wgpu's
        // GLES backend needs for compute).
        version: glsl::Version::new_gles(310),
        ..glsl::Options::default()
    };
    let pipeline = glsl::PipelineOptions {
        shader_stage: ShaderStage::Compute,
        entry_point: entry.to_string(),
        multiview: None,
    };
    let mut text = String::new();
    glsl::Writer::new(
        &mut text,
        module,
        info,
        &options,
        &pipeline,
        bounds_checks(),
    )
    .and_then(|mut writer| writer.write())
    .map_err(|e| error_chain(&e))?;
    if text.trim().is_empty() {
        return Err("empty output".to_string());
    }
    Ok(())
}

type Backend = fn(&Module, &ModuleInfo, &str) -> Result<(), String>;

const BACKENDS: &[(&str, Backend)] = &[
    ("SPIR-V", to_spirv),
    ("MSL 2.0", to_msl),
    ("HLSL SM 5.1", to_hlsl),
    ("GLSL ES 310", to_glsl),
];

/// The backends of the f64 modules: Vulkan's (see the module docs).
const F64_BACKENDS: &[(&str, Backend)] = &[("SPIR-V", to_spirv)];

/// Runs every check on one shader, validated with `capabilities` and translated for `backends`, and
/// returns its failures (empty: all good).
fn check_shader(
    file: &str,
    source: &str,
    capabilities: Capabilities,
    backends: &[(&str, Backend)],
) -> Vec<String> {
    let (module, info) = match parse_and_validate_with(file, source, capabilities) {
        Ok(parsed) => parsed,
        Err(message) => return vec![message],
    };
    let mut failures = Vec::new();

    let entries: Vec<&str> = module
        .entry_points
        .iter()
        .filter(|ep| ep.stage == ShaderStage::Compute)
        .map(|ep| ep.name.as_str())
        .collect();
    if entries.is_empty() {
        failures.push(format!("{file}: no compute entry point"));
    }
    for ep in module.entry_points.iter() {
        if ep.stage != ShaderStage::Compute {
            failures.push(format!(
                "{file}: entry point `{}` is a {:?} shader, not a compute shader",
                ep.name, ep.stage
            ));
        }
    }

    // The registry passes WG to every pipeline: every family must declare it.
    let has_wg = module
        .overrides
        .iter()
        .any(|(_, o)| o.name.as_deref() == Some(WG_OVERRIDE));
    if !has_wg {
        failures.push(format!("{file}: no `override {WG_OVERRIDE}`"));
    }
    let constant_sets: Vec<(String, naga::back::PipelineConstants)> = WORKGROUP_SIZES
        .iter()
        .map(|&wg| {
            let mut constants = naga::back::PipelineConstants::default();
            constants.insert(WG_OVERRIDE.to_string(), f64::from(wg));
            (format!("{WG_OVERRIDE} = {wg}"), constants)
        })
        .collect();

    for (label, constants) in &constant_sets {
        for &entry in &entries {
            let resolved = naga::back::pipeline_constants::process_overrides(
                &module,
                &info,
                Some((ShaderStage::Compute, entry)),
                constants,
            );
            let (resolved_module, resolved_info) = match resolved {
                Ok(resolved) => resolved,
                Err(e) => {
                    failures.push(format!(
                        "{file}: entry point `{entry}` ({label}): process_overrides failed: {}",
                        error_chain(&e)
                    ));
                    continue;
                }
            };
            // An entry point sized `@workgroup_size(WG)` must now have WG as its size.
            let sized_by_override = module.entry_points.iter().any(|ep| {
                ep.name == entry
                    && ep
                        .workgroup_size_overrides
                        .is_some_and(|sizes| sizes.iter().any(Option::is_some))
            });
            if let (true, Some(wg)) = (sized_by_override, constants.get(WG_OVERRIDE)) {
                let resolved_ep = resolved_module
                    .entry_points
                    .iter()
                    .find(|ep| ep.name == entry);
                let size = resolved_ep.map(|ep| ep.workgroup_size);
                let unresolved =
                    resolved_ep.is_some_and(|ep| ep.workgroup_size_overrides.is_some());
                if unresolved || size.map(|s| f64::from(s[0])) != Some(*wg) {
                    failures.push(format!(
                        "{file}: entry point `{entry}` ({label}): resolved workgroup size is {size:?}"
                    ));
                }
            }
            for (backend, translate) in backends {
                if let Err(e) = translate(&resolved_module, &resolved_info, entry) {
                    failures.push(format!(
                        "{file}: entry point `{entry}` ({label}): {backend} translation failed: {e}"
                    ));
                }
            }
        }
    }
    failures
}

/// The family whose file is `file`.
fn family(file: &str) -> ShaderFamily {
    shader_families()
        .into_iter()
        .find(|f| f.file == file)
        .unwrap_or_else(|| panic!("{file} is not a kernel family of the registry"))
}

fn assert_shader_ok(file: &str) {
    let family = family(file);
    let mut failures = check_shader(file, &family.source, Capabilities::empty(), BACKENDS);
    if let Some(source) = &family.source_f64 {
        let f64_file = format!("{file} (f64)");
        failures.extend(check_shader(
            &f64_file,
            source,
            Capabilities::FLOAT64,
            F64_BACKENDS,
        ));
    }
    assert!(
        failures.is_empty(),
        "{} failure(s) in shaders/{file}:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The `.wgsl` files in `dir`, sorted.
fn wgsl_files(dir: &str) -> Vec<String> {
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {dir}: {e}"))
        .map(|entry| entry.expect("cannot read a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wgsl"))
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    on_disk
}

#[test]
fn shader_directory_is_fully_listed() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    let mut listed: Vec<String> = shader_families()
        .iter()
        .map(|f| f.file.to_string())
        .collect();
    listed.sort();
    assert_eq!(
        wgsl_files(dir),
        listed,
        "the .wgsl files in {dir} (left) differ from the registry's families (right)"
    );
    let prelude = format!("{dir}/prelude");
    let mut helpers: Vec<String> = shader_helpers()
        .iter()
        .map(|h| h.trim_start_matches("prelude/").to_string())
        .collect();
    helpers.sort();
    assert_eq!(
        wgsl_files(&prelude),
        helpers,
        "the .wgsl files in {prelude} (left) differ from the registry's helpers (right)"
    );
}

/// Where the WGSL struct `layout.name` of `module` differs from its Rust twin `layout`.
fn struct_failures(file: &str, module: &Module, layout: &StructLayout) -> Vec<String> {
    let found = module
        .types
        .iter()
        .find(|(_, ty)| ty.name.as_deref() == Some(layout.name));
    let Some((_, ty)) = found else {
        return vec![format!("{file}: no WGSL struct {}", layout.name)];
    };
    let naga::TypeInner::Struct { members, span } = &ty.inner else {
        return vec![format!("{file}: {} is not a struct", layout.name)];
    };
    let name = layout.name;
    let mut failures = Vec::new();
    if *span as usize != layout.size {
        failures.push(format!(
            "{file}: {name}: WGSL span {span} bytes, Rust size_of {}",
            layout.size
        ));
    }
    let wgsl: Vec<(String, usize, usize)> = members
        .iter()
        .map(|m| {
            let size = module.types[m.ty].inner.size(module.to_ctx()) as usize;
            (m.name.clone().unwrap_or_default(), m.offset as usize, size)
        })
        .collect();
    let rust: Vec<(String, usize, usize)> = layout
        .fields
        .iter()
        .map(|f| (f.name.to_string(), f.offset, f.size))
        .collect();
    if wgsl != rust {
        failures.push(format!(
            "{file}: {name}: WGSL members (name, offset, size) {wgsl:?}, Rust fields {rust:?}"
        ));
    }
    failures
}

/// The storage bindings of group 0 that entry point `entry` uses: (number, name, access), by number.
fn used_bindings(module: &Module, info: &ModuleInfo, entry: usize) -> Vec<(u32, String, Access)> {
    let uses = info.get_entry_point(entry);
    let mut used: Vec<(u32, String, Access)> = module
        .global_variables
        .iter()
        .filter(|&(handle, _)| !uses[handle].is_empty())
        .filter_map(|(_, var)| {
            let binding = var.binding.as_ref().filter(|b| b.group == 0)?;
            let naga::AddressSpace::Storage { access } = var.space else {
                return None;
            };
            let access = if access.contains(naga::StorageAccess::STORE) {
                Access::ReadWrite
            } else {
                Access::Read
            };
            Some((
                binding.binding,
                var.name.clone().unwrap_or_default(),
                access,
            ))
        })
        .collect();
    used.sort_by_key(|b| b.0);
    used
}

/// Where a family's modules (f32, and f64 where it has one) differ from the Rust side of its contract.
fn contract_failures(family: &ShaderFamily) -> Vec<String> {
    let mut failures =
        module_contract_failures(family, family.file, &family.source, Capabilities::empty());
    if let Some(source) = &family.source_f64 {
        let file = format!("{} (f64)", family.file);
        failures.extend(module_contract_failures(
            family,
            &file,
            source,
            Capabilities::FLOAT64,
        ));
    }
    failures
}

/// Where one module of a family differs from the Rust side of its contract.
fn module_contract_failures(
    family: &ShaderFamily,
    file: &str,
    source: &str,
    capabilities: Capabilities,
) -> Vec<String> {
    let (module, info) = match parse_and_validate_with(file, source, capabilities) {
        Ok(parsed) => parsed,
        Err(message) => return vec![message],
    };
    let mut failures: Vec<String> = family
        .structs
        .iter()
        .flat_map(|layout| struct_failures(file, &module, layout))
        .collect();
    // The parameters `p` are of the family's parameter struct (the first shared struct).
    let params_type = module
        .global_variables
        .iter()
        .find(|(_, var)| var.name.as_deref() == Some("p"))
        .and_then(|(_, var)| module.types[var.ty].name.clone());
    if params_type.as_deref() != Some(family.structs[0].name) {
        failures.push(format!(
            "{file}: `p` is of type {params_type:?}, the registry writes {}",
            family.structs[0].name
        ));
    }
    let entries: Vec<&str> = module
        .entry_points
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    let mut tabled: Vec<&str> = family.kernels.iter().map(|k| k.entry_point).collect();
    tabled.sort_unstable();
    let mut sorted_entries = entries.clone();
    sorted_entries.sort_unstable();
    if sorted_entries != tabled {
        failures.push(format!(
            "{file}: entry points {sorted_entries:?}, kernel table {tabled:?}"
        ));
    }
    for kernel in &family.kernels {
        let Some(index) = entries.iter().position(|&e| e == kernel.entry_point) else {
            continue;
        };
        let used = used_bindings(&module, &info, index);
        let tabled: Vec<(u32, String, Access)> = kernel
            .bindings
            .iter()
            .map(|b: &Binding| (b.number, b.name.to_string(), b.access))
            .collect();
        if used != tabled {
            failures.push(format!(
                "{file}: entry point `{}` uses {used:?}, the kernel table lays out {:?}",
                kernel.entry_point, tabled
            ));
        }
    }
    failures
}

#[test]
fn rust_contract_matches_wgsl_reflection() {
    let failures: Vec<String> = shader_families()
        .iter()
        .flat_map(contract_failures)
        .collect();
    assert!(
        failures.is_empty(),
        "{} contract failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn eigen_wgsl() {
    assert_shader_ok("eigen.wgsl");
}

#[test]
fn gram_wgsl() {
    assert_shader_ok("gram.wgsl");
}

#[test]
fn matmul_wgsl() {
    assert_shader_ok("matmul.wgsl");
}

#[test]
fn reduce_wgsl() {
    assert_shader_ok("reduce.wgsl");
}

#[test]
fn small_wgsl() {
    assert_shader_ok("small.wgsl");
}

#[test]
fn update_wgsl() {
    assert_shader_ok("update.wgsl");
}

#[test]
fn sparse_wgsl() {
    assert_shader_ok("sparse.wgsl");
}

/// A family written over `Real` holds every float array it binds or shares in the registry's scalar
/// type: f32 values in its f32 module, f64 in its f64 module (a buffer left as f32 in an f64 kernel
/// would bind an f64 buffer as f32 values).
#[test]
fn generic_families_hold_their_float_arrays_in_the_scalar_type() {
    let float_widths = |file: &str, source: &str, caps| -> Vec<(String, u8)> {
        let (module, _) = parse_and_validate_with(file, source, caps).unwrap();
        module
            .global_variables
            .iter()
            .filter_map(|(_, var)| {
                let naga::TypeInner::Array { base, .. } = module.types[var.ty].inner else {
                    return None;
                };
                match module.types[base].inner {
                    naga::TypeInner::Scalar(s) | naga::TypeInner::Vector { scalar: s, .. }
                        if s.kind == naga::ScalarKind::Float =>
                    {
                        Some((var.name.clone().unwrap_or_default(), s.width))
                    }
                    _ => None,
                }
            })
            .collect()
    };
    let mut generic = 0;
    for family in shader_families() {
        let Some(source_f64) = &family.source_f64 else {
            continue;
        };
        generic += 1;
        let f32_arrays = float_widths(family.file, &family.source, Capabilities::empty());
        let f64_arrays = float_widths(family.file, source_f64, Capabilities::FLOAT64);
        assert!(!f32_arrays.is_empty(), "{}: no float array", family.file);
        assert!(
            f32_arrays.iter().all(|(_, w)| *w == 4),
            "{}: {f32_arrays:?}",
            family.file
        );
        assert!(
            f64_arrays.iter().all(|(_, w)| *w == 8),
            "{} (f64): {f64_arrays:?}",
            family.file
        );
    }
    // matmul, small, update, reduce, eigen.
    assert_eq!(generic, 5);
}
