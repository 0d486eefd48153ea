//! Passes over C of the default solver (`Solver::Auto`: LOBPCG with ⌈k/2⌉ guard columns; a pass is
//! one product of C with the solver's block, `Fit::passes`) on the problems, pinned as upper
//! bounds, with the accuracy as the largest principal angle to an f64 eigensolver's top-k subspace.
//!
//! Each problem's checks:
//! * f64, CPU: the iterate after the pass budget (`max_iter = N − 1`, or fewer passes where
//!   it stops at its rounding floor first) is within the accuracy LOBPCG with a block of k reaches
//!   (the scipy figures, or the reference f64 LOBPCG of tests/common where the issue has none);
//! * f32 at the defaults, CPU and GPU (lavapipe in CI): the fit ends (converged, or stalled at its
//!   rounding floor) within the pass bound, at an angle f32 allows, and the two paths' pass counts
//!   differ by at most 3.
//!
//! `cargo test --release --test passes -- --nocapture` prints each problem's row.

mod common;

use common::*;
use laepca::synthetic::prescribed_spectrum;
use laepca::{devices, Backend, Fit, GramStats, LaePca, Solver};
use nalgebra::{DMatrix, DVector};

fn gpu_available() -> bool {
    !devices().is_empty() || std::env::var_os("LAEPCA_REQUIRE_GPU").is_some()
}

fn stats(x: &DMatrix<f64>) -> GramStats {
    let c = centred_gram(x);
    let m = c.nrows();
    GramStats {
        c,
        mean: DVector::zeros(m),
        n_samples: x.nrows(),
    }
}

/// scanpy's `pbmc68k_reduced().X` (700 cells x 765 genes, f32, scaled): `tests/data/pbmc68k_reduced.npy.gz`,
/// written by `numpy.save` from scanpy 1.11.5.
fn pbmc68k_reduced() -> DMatrix<f64> {
    use std::io::Read;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/pbmc68k_reduced.npy.gz"
    );
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'<f4'") && header.contains("(700, 765)") && header.contains("False"));
    let data = &bytes[10 + header_len..];
    assert_eq!(data.len(), 700 * 765 * 4);
    let value = |i: usize| f32::from_le_bytes(data[4 * i..4 * i + 4].try_into().unwrap()) as f64;
    DMatrix::from_fn(700, 765, |r, c| value(r * 765 + c))
}

/// One problem's bounds (see the module docs): f64 at most `f64_bound.0` passes to within the angle
/// `f64_bound.1`; f32 at the defaults at most `f32_bound.0` passes, ending within `f32_bound.1`.
struct Case<'a> {
    name: &'a str,
    stats: &'a GramStats,
    k: usize,
    f64_bound: (usize, f64),
    f32_bound: (usize, f64),
}

fn check(case: &Case) {
    let Case {
        name,
        stats,
        k,
        f64_bound: (passes, bound),
        f32_bound: (f32_passes, f32_angle),
    } = *case;
    let (_, top_k) = reference_eigen(&stats.c, k);
    let angle = |components: &DMatrix<f64>| largest_principal_angle(&top_k, components);

    let f64_fit = LaePca::new(k)
        .max_iter(passes - 1)
        .tol(1e-300)
        .fit_gram::<f64>(stats)
        .unwrap();
    assert_eq!(f64_fit.solver, Solver::Auto);
    assert!(f64_fit.passes <= passes, "{name}: max_iter + 1 passes");
    let f64_angle = angle(&columns(&f64_fit.components));
    println!(
        "{name}, k = {k}: f64 after {} passes: angle {f64_angle:.1e} (bound {:.1e} in {})",
        f64_fit.passes, bound, passes
    );
    assert!(
        f64_angle <= bound,
        "{name}, f64: after {} passes angle {f64_angle:e} > {:e}",
        f64_fit.passes,
        bound
    );

    let mut fits: Vec<(&str, Fit<f32>)> =
        vec![("cpu f32", LaePca::new(k).fit_gram::<f32>(stats).unwrap())];
    if gpu_available() {
        let gpu = LaePca::new(k).backend(Backend::Gpu).fit_gram::<f32>(stats);
        fits.push(("gpu", gpu.unwrap()));
    }
    for (path, fit) in &fits {
        let a = angle(&columns(&fit.components));
        println!(
            "{name}, k = {k}: {path} defaults: {} passes, angle {a:.1e} (converged {}, stalled {})",
            fit.passes, fit.converged, fit.stalled
        );
        assert!(fit.converged || fit.stalled, "{name}, {path}: neither");
        assert_eq!(fit.passes, fit.iterations + 1, "{name}, {path}");
        assert!(
            fit.passes <= f32_passes,
            "{name}, {path}: {} passes (history {:?})",
            fit.passes,
            fit.history
        );
        assert!(
            a <= f32_angle,
            "{name}, {path}: angle {a:e} after {} passes",
            fit.passes
        );
    }
    if let [(_, cpu), (_, gpu)] = &fits[..] {
        assert!(
            cpu.passes.abs_diff(gpu.passes) <= 3,
            "{name}: CPU {} passes, GPU {}",
            cpu.passes,
            gpu.passes
        );
    }
}

/// The angle the reference f64 LOBPCG (block k, tests/common) reaches after `passes` passes.
fn lobpcg_angle(s: &GramStats, k: usize, passes: usize) -> f64 {
    let (_, vecs) = reference_eigen(&s.c, k);
    let iterates = reference_lobpcg(&s.c, k, passes, 7);
    largest_principal_angle(&vecs, &iterates[passes - 1])
}

#[test]
fn paper_problem_in_at_most_15_passes() {
    let s = stats(&paper_problem());
    let bound = lobpcg_angle(&s, 2, 15);
    check(&Case {
        name: "paper",
        stats: &s,
        k: 2,
        f64_bound: (15, bound),
        f32_bound: (13, 3e-5),
    });
}

// The scipy LOBPCG (block k): digits 9 passes to 8.2e-7, pbmc68k_reduced 16 to 2.6e-4,
// Fashion-MNIST 10 to 2.4e-6.

#[test]
fn digits_k10_in_at_most_10_passes() {
    let s = stats(&digits());
    let (name, k) = ("digits", 10);
    check(&Case {
        name,
        stats: &s,
        k,
        f64_bound: (10, 8.2e-7),
        f32_bound: (11, 1e-5),
    });
}

#[test]
fn pbmc68k_reduced_k50_in_at_most_20_passes() {
    let s = stats(&pbmc68k_reduced());
    // f32: the CPU's products leave it at ~3e-4 (measured), short of LOBPCG's f64 2.6e-4; the GPU
    // (lavapipe) at 4.6e-4 after 13 passes. The GPU stalled at 1.5e-3 until eigen.wgsl refined its
    // rotations' inverseSqrt by a Newton step: Vulkan lets inverseSqrt be 2 ulp off, and rotations
    // with c² + s² ≠ 1 are not similarity transforms (a host eigensolver on the GPU's own projected
    // matrices reached 2.4e-4, which located the fault in the kernel).
    let bounds = ((20, 2.6e-4), (20, 1e-3));
    check(&Case {
        name: "pbmc68k_reduced",
        stats: &s,
        k: 50,
        f64_bound: bounds.0,
        f32_bound: bounds.1,
    });
}

#[test]
fn hard_gap_within_1_2_times_lobpcg() {
    // The benchmark's hard-gap spectrum (σ_{k+1}/σ_k = 0.98, rank k + 32) at m = 200: LOBPCG with a
    // block of k reaches ~1e-6 in 13 passes; 1.2 × 13 = 15.6.
    let (m, k) = (200, 16);
    let p = prescribed_spectrum(4 * m, m, &hard_gap_spectrum(m, k), 3.0, 7);
    let s = stats(&p.x);
    let bound = lobpcg_angle(&s, k, 13);
    check(&Case {
        name: "hard gap",
        stats: &s,
        k,
        f64_bound: (15, bound),
        f32_bound: (10, 1e-4),
    });
}

#[test]
fn fashion_mnist_k16_in_at_most_12_passes() {
    // CI installs dataset-fashion-mnist; elsewhere the test is skipped without it.
    match fashion_mnist() {
        None => assert!(std::env::var_os("CI").is_none(), "no Fashion-MNIST on CI"),
        Some(x) => check(&Case {
            name: "fashion-mnist",
            stats: &stats(&x.map(|v| v as f64)),
            k: 16,
            f64_bound: (12, 2.4e-6),
            f32_bound: (12, 1e-4),
        }),
    }
}

#[test]
fn rank_below_the_search_basis_ends_cleanly() {
    // The benchmark's quick hard-gap problem: m = 64, k = 16, 21 columns, a search basis of 63
    // dimensions, C of rank about k + 32 = 48 above its noise: the basis holds rounding noise.
    let (m, k) = (64, 16);
    let p = prescribed_spectrum(4 * m, m, &hard_gap_spectrum(m, k), 3.0, 6416);
    let (_, top_k) = reference_eigen(&centred_gram(&p.x), k);
    let f32_fit = LaePca::new(k).fit(&p.x.map(|v| v as f32)).unwrap();
    let f64_fit = LaePca::new(k).fit(&p.x).unwrap();
    for (path, components, passes) in [
        ("f32", columns(&f32_fit.components), f32_fit.passes),
        ("f64", columns(&f64_fit.components), f64_fit.passes),
    ] {
        let a = largest_principal_angle(&top_k, &components);
        println!("m = 64 hard gap, {path}: {passes} passes, angle {a:.1e}");
        assert!(a <= 1e-4, "{path}: angle {a:e}");
    }
}

/// The GPU runs the auto loop at every k up to ~220 (order ~1000), its Jacobi kernel split over
/// several dispatches from order ~45 on (src/gpu/engine.rs, jacobi_plan): it once ran in one dispatch,
/// which llvmpipe silently cut short from order 126 on (its 65535 loop iterations per invocation), and
/// returned wrong eigenvectors, first seen here with a prescribed spectrum at k = 28, whose guard
/// columns made the order 126. The answers agree with the CPU's.
#[test]
fn gpu_auto_agrees_with_the_cpu_at_orders_its_jacobi_kernel_splits() {
    if !gpu_available() {
        eprintln!("skipped: no GPU adapter");
        return;
    }
    let sigma = laepca::synthetic::geometric_spectrum(300, 100.0, 0.97);
    let data = prescribed_spectrum(2000, 300, &sigma, 1.0, 1);
    let x = data.x.map(|v| v as f32);
    // Order 126 (guard columns 14), the first the single dispatch got wrong (~15 s on lavapipe).
    let k = 28;
    let reference = LaePca::new(k).backend(Backend::Cpu).fit(&data.x).unwrap();
    let t = std::time::Instant::now();
    let fit = LaePca::new(k).backend(Backend::Gpu).fit(&x).unwrap();
    let cpu_f32 = LaePca::new(k).backend(Backend::Cpu).fit(&x).unwrap();
    println!(
        "k = {k}: {} passes on the GPU ({:.1} s), {} on the CPU in f32",
        fit.passes,
        t.elapsed().as_secs_f64(),
        cpu_f32.passes
    );
    assert_eq!(fit.backend, Backend::Gpu, "k = {k}: where the loop ran");
    assert!(
        fit.passes.abs_diff(cpu_f32.passes) <= 3,
        "k = {k}: {} passes on the GPU, {} on the CPU",
        fit.passes,
        cpu_f32.passes
    );
    let angle = largest_principal_angle(
        &fit.components.map(f64::from).transpose(),
        &reference.components.transpose(),
    );
    assert!(angle < 1e-3, "k = {k}: largest angle {angle:.2e}");
}
