//! The GPU adapter the GPU rows run on, and what the benchmark knows of its card.

use crate::args::Args;
use laepca::{Backend, GpuDevice, LaePca};
use nalgebra::DMatrix;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct AdapterJson {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
    pub max_features: usize,
    pub peak_gflops: Option<f64>,
    pub bandwidth_gbs: Option<f64>,
    pub software: bool,
}

/// FP32 peak (GFLOP/s, without tensor cores) and memory bandwidth (GB/s) of cards the benchmark knows,
/// by a name fragment; more specific fragments first.
pub const KNOWN_CARDS: &[(&str, f64, f64)] = &[
    ("H200", 67_000.0, 4_800.0),
    ("H100 PCIe", 51_200.0, 2_000.0),
    ("H100", 67_000.0, 3_350.0),
    ("A100-SXM4-80GB", 19_500.0, 2_039.0),
    ("A100 80GB PCIe", 19_500.0, 1_935.0),
    ("A100", 19_500.0, 1_555.0),
    ("L40S", 91_600.0, 864.0),
    ("L40", 90_500.0, 864.0),
    ("L4", 30_300.0, 300.0),
    ("A10G", 31_200.0, 600.0),
    ("A10", 31_200.0, 600.0),
    ("RTX 4090", 82_600.0, 1_008.0),
    ("RTX 3090", 35_600.0, 936.0),
    ("T4", 8_100.0, 320.0),
    ("V100", 15_700.0, 900.0),
];

pub fn known_card(name: &str) -> Option<(f64, f64)> {
    KNOWN_CARDS
        .iter()
        .find(|(frag, _, _)| name.contains(frag))
        .map(|&(_, p, b)| (p, b))
}

/// The device every GPU row runs on (opened once: the rows' times hold no device set-up), with its
/// adapter as a tiny fit on it reports it.
pub fn probe_adapter(args: &Args) -> Result<(AdapterJson, GpuDevice), String> {
    if laepca::devices().is_empty() {
        return Err("wgpu finds no adapter".into());
    }
    let device = GpuDevice::open(None).map_err(|e| format!("no GPU device: {e}"))?;
    let x = DMatrix::<f32>::from_fn(16, 4, |i, j| ((i * 7 + j * 3) % 5) as f32 + (i * j) as f32);
    let fit = LaePca::new(1)
        .backend(Backend::Gpu)
        .device(device.clone())
        .max_iter(5)
        .fit(&x)
        .map_err(|e| format!("a tiny GPU fit failed: {e}"))?;
    let info = fit
        .adapter
        .ok_or("the GPU fit reported no adapter".to_string())?;
    let known = known_card(&info.name);
    let adapter = AdapterJson {
        max_features: info.max_features(),
        software: info.device_type == "cpu",
        peak_gflops: args.peak_gflops.or(known.map(|k| k.0)),
        bandwidth_gbs: args.bandwidth_gbs.or(known.map(|k| k.1)),
        name: info.name,
        backend: info.backend,
        device_type: info.device_type,
        max_buffer_size: info.max_buffer_size,
        max_storage_buffer_binding_size: info.max_storage_buffer_binding_size,
    };
    Ok((adapter, device))
}

pub fn slug(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    s.trim_matches('-').to_string()
}
