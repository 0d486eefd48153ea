//! `laepca devices`: the adapters wgpu sees.

use super::{print_out, Failure};
use std::process::ExitCode;

fn bytes(n: u64) -> String {
    if n >= 1 << 30 {
        format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.0} MiB", n as f64 / (1u64 << 20) as f64)
    }
}

pub fn run() -> Result<ExitCode, Failure> {
    let devices = laepca::devices();
    if devices.is_empty() {
        print_out(
            "no GPU adapter found (install a Vulkan, Metal or DX12 driver; `--backend cpu` works without one)\n",
        );
        return Ok(ExitCode::SUCCESS);
    }
    print_out(&format!(
        "{:<3} {:<40} {:<8} {:<11} {:>11} {:>13} {:>11} {:>12}\n",
        "#", "name", "backend", "type", "max buffer", "max binding", "invocations", "max features"
    ));
    for (i, d) in devices.iter().enumerate() {
        print_out(&format!(
            "{:<3} {:<40} {:<8} {:<11} {:>11} {:>13} {:>11} {:>12}\n",
            i,
            d.name,
            d.backend,
            d.device_type,
            bytes(d.max_buffer_size),
            bytes(d.max_storage_buffer_binding_size),
            d.max_compute_invocations_per_workgroup,
            d.max_features()
        ));
    }
    Ok(ExitCode::SUCCESS)
}
