//! The GPU path against the CPU path and f64 references, on whatever adapter wgpu finds (lavapipe in
//! CI). Without an adapter these tests skip, unless LAEPCA_REQUIRE_GPU is set (CI sets it): then they
//! fail, so a CI run cannot pass by skipping them.

mod common;

use common::*;
use laepca::synthetic::{geometric_spectrum, prescribed_spectrum};
use laepca::{
    devices, Arithmetic, Backend, Error, Fit, GpuDevice, GpuPrecision, GramAccumulator, GramStats,
    LaePca, Method, Solver,
};
use nalgebra::DMatrix;

struct Shape {
    name: &'static str,
    n: usize,
    m: usize,
    k: usize,
}

const SHAPES: [Shape; 5] = [
    Shape {
        name: "m not a multiple of the tile",
        n: 300,
        m: 37,
        k: 5,
    },
    Shape {
        name: "k = 1",
        n: 200,
        m: 20,
        k: 1,
    },
    Shape {
        name: "k = m",
        n: 120,
        m: 6,
        k: 6,
    },
    Shape {
        name: "n < m",
        n: 40,
        m: 70,
        k: 3,
    },
    Shape {
        name: "several slices, ragged last",
        n: 2 * 4096 + 123,
        m: 20,
        k: 2,
    },
];

fn agree(shape: &Shape, solver: Solver) {
    let r = shape.m.min(shape.n - 1);
    let p = prescribed_spectrum(
        shape.n,
        shape.m,
        &geometric_spectrum(r, 50.0, 0.85),
        3.0,
        17,
    );
    let x: DMatrix<f32> = p.x.map(|v| v as f32);
    let base = LaePca::new(shape.k)
        .solver(solver)
        .tol(1e-4)
        .seed(5)
        .max_iter(20_000);
    let cpu: Fit<f32> = base.clone().backend(Backend::Cpu).fit(&x).unwrap();
    let gpu: Fit<f32> = base.backend(Backend::Gpu).fit(&x).unwrap();
    let ctx = format!(
        "{} / {solver}: cpu {} iterations, gpu {}",
        shape.name, cpu.iterations, gpu.iterations
    );
    assert_eq!(gpu.backend, Backend::Gpu);
    assert!(gpu.adapter.is_some());
    assert!(
        cpu.converged && gpu.converged,
        "{ctx}: converged cpu {} gpu {}",
        cpu.converged,
        gpu.converged
    );
    let slack = (cpu.iterations as f64 * 0.05).max(20.0);
    assert!(
        (gpu.iterations as f64 - cpu.iterations as f64).abs() <= slack,
        "{ctx}"
    );
    let angle = largest_principal_angle(&columns(&cpu.components), &columns(&gpu.components));
    assert!(angle <= 1e-3, "{ctx}: subspace angle {angle:e}");
    for i in 0..shape.k {
        let (a, b) = (cpu.singular_values[i] as f64, gpu.singular_values[i] as f64);
        assert!((a - b).abs() <= 1e-4 * a, "{ctx}: σ_{i} {a} vs {b}");
    }
    // Only scalars cross during the loop: one read-back per check (auto: every iteration and the
    // start; the others: every 10 iterations), plus the final weights.
    let checks = if solver == Solver::Auto {
        gpu.iterations + 1
    } else {
        gpu.iterations.div_ceil(10)
    };
    assert_eq!(
        gpu.loop_stats.total.host_waits,
        checks
            + 1
            + usize::from(matches!(
                solver,
                Solver::Untied | Solver::Sync | Solver::ExactUntied | Solver::ExactSync
            )),
        "{ctx}"
    );
}

#[test]
fn gpu_matches_cpu_for_every_solver_and_shape() {
    if !have_gpu() {
        return;
    }
    for shape in &SHAPES {
        for solver in Solver::ALL {
            agree(shape, solver);
        }
    }
}

/// Compute dispatches per iteration of each solver on the GPU engine (one per engine operation, the
/// order-15 eigenproblems here included; the exact untied and sync ones with the default 16 conjugate-gradient steps), and per block (the auto
/// solver saves its iterate at the start of each block).
fn dispatches_per_block(solver: Solver, iterations: usize) -> usize {
    let per_iteration = match solver {
        // The Rayleigh–Ritz step over [X, R, P] (src/solver/ritz.rs): R orthonormalised against X
        // and P twice (2 x 7: three Gram products, two fused projections, one SVQB, one product),
        // C R (1), the projected matrix (1, fused), its eigenvectors (1 workgroup at order 15), the
        // new X, P, C X and C P (1, fused), P orthonormalised against X with C P alike (2 x 5: a
        // Gram product, the projection of both, a Gram product, one SVQB, the product of both), and
        // the residual with its stopping quantity (3). It was 60 before the fused operations, 36
        // before the pair operations.
        Solver::Auto => 31,
        // The products C W with the parts of WᵀCW, and their inverse, are two dispatches where they
        // were three (c_mul_inverse); the new W and W_prev one (mul_small_pair).
        Solver::Momentum => 11,
        Solver::Untied | Solver::Sync => 9,
        Solver::Tied => 5,
        // C W with WᵀCW's parts, (WᵀCW + λI)⁻¹, the new W, the stopping quantity.
        Solver::ExactTied => 4,
        // 8 per conjugate-gradient step (no scalar copy: the two ‖r‖² trade handles).
        Solver::ExactUntied | Solver::ExactSync => 12 + 8 * 16,
        other => panic!("no count for {other}"),
    };
    per_iteration * iterations + if solver == Solver::Momentum { 2 } else { 0 }
}

#[test]
fn gpu_loop_counters() {
    if !have_gpu() {
        return;
    }
    // A flat spectrum converges slowly: every fit runs its 6 blocks of 10 iterations.
    let x = prescribed_spectrum(120, 24, &geometric_spectrum(24, 10.0, 0.99), 1.0, 4)
        .x
        .map(|v| v as f32);
    let device = laepca::GpuDevice::open(None).unwrap();
    // CI runs this test again with WGPU_BACKEND=gl: it must then run on the GL backend.
    if std::env::var("WGPU_BACKEND").is_ok_and(|b| b == "gl") {
        assert_eq!(device.info().backend, "gl", "{:?}", device.info());
    }
    for solver in Solver::ALL {
        // Auto checks after every pass (its default) and stops at its rounding floor: it runs fewer
        // iterations, each its own block.
        let check_every = if solver == Solver::Auto { 1 } else { 10 };
        let fit = LaePca::new(3)
            .solver(solver)
            .tol(1e-30)
            .max_iter(60)
            .check_every(check_every)
            .backend(Backend::Gpu)
            .device(device.clone())
            .fit(&x)
            .unwrap();
        let s = fit.loop_stats;
        if solver != Solver::Auto {
            assert_eq!(fit.iterations, 60, "{solver}: {s:?}");
        }
        assert_eq!(s.block_iterations, check_every, "{solver}");
        let block = s.steady_block.expect("six blocks ran");
        // Per block: one submission and one host wait (the check), no buffer or bind group created.
        assert_eq!(block.submissions, 1, "{solver}: {block:?}");
        assert_eq!(block.host_waits, 1, "{solver}: {block:?}");
        assert_eq!(block.buffers_created, 0, "{solver}: {block:?}");
        assert_eq!(block.bind_groups_created, 0, "{solver}: {block:?}");
        assert_eq!(
            block.dispatches,
            dispatches_per_block(solver, check_every),
            "{solver}"
        );
        // Per fit: a wait per check and per weight read-back; nothing else is submitted.
        let downloads = if matches!(
            solver,
            Solver::Auto | Solver::Momentum | Solver::Tied | Solver::ExactTied
        ) {
            1
        } else {
            2
        };
        // (Auto also checks its start.)
        let checks = if solver == Solver::Auto {
            fit.iterations + 1
        } else {
            6
        };
        assert_eq!(s.total.host_waits, checks + downloads, "{solver}: {s:?}");
        // Auto submits each step before it reads the check before it (the GPU never waits for the
        // host): the step submitted ahead of the check that ended the fit is discarded, its check
        // never read.
        let ahead = usize::from(solver == Solver::Auto);
        assert_eq!(s.discarded_passes, ahead, "{solver}: {s:?}");
        assert_eq!(
            s.total.submissions,
            s.total.host_waits + ahead,
            "{solver}: {s:?}"
        );
    }
    // The CPU engine submits and waits for nothing.
    let cpu = LaePca::new(3).max_iter(60).fit(&x).unwrap();
    assert_eq!(cpu.loop_stats.total, laepca::EngineStats::default());
}

#[test]
fn gpu_gram_with_a_large_mean() {
    if !have_gpu() {
        return;
    }
    // 1000 + spread ~1, in pushes of 34000 samples (the last ragged) that make chunks of 115712
    // samples (113 slices of 1024, spread over m = 33's 32 split-K totals), two full ones and a
    // ragged one: each total sums several slices of each chunk, across chunks.
    let (n, m) = (250_000, 33);
    let p = prescribed_spectrum(n, m, &geometric_spectrum(m, 120.0, 0.9), 1000.0, 8);
    let rows: Vec<f32> = p.x.transpose().iter().map(|&v| v as f32).collect(); // row-major
    let rounded =
        DMatrix::from_row_slice(n, m, &rows.iter().map(|&v| v as f64).collect::<Vec<_>>());
    let reference = centred_gram(&rounded);
    let mut acc = GramAccumulator::new_gpu(m, true, None).unwrap();
    let created = acc.gpu_stats().unwrap();
    for chunk in rows.chunks(m * 34_000) {
        acc.push_rows(chunk).unwrap();
    }
    // The two full chunks are submitted (two dispatches each), the last by finish; nothing created.
    let pushed = acc.gpu_stats().unwrap();
    assert_eq!(pushed.submissions, 2, "{pushed:?}");
    assert_eq!(pushed.dispatches, 4, "{pushed:?}");
    assert_eq!(pushed.buffers_created, created.buffers_created);
    assert_eq!(pushed.bind_groups_created, created.bind_groups_created);
    let stats = acc.finish().unwrap();
    let rel = (&stats.c - &reference).norm() / reference.norm();
    assert!(rel <= 1e-5, "GPU Gram relative error {rel:e}");
    for j in 0..m {
        assert!((stats.mean[j] - rounded.column(j).mean()).abs() <= 1e-9 * 1000.0);
    }
    // f64 rows with a mean of 1e4 (the shift is subtracted on the host in f64, then rounded) against
    // the exact f64 reference.
    let p = prescribed_spectrum(n, m, &geometric_spectrum(m, 120.0, 0.9), 1e4, 9);
    let reference = centred_gram(&p.x);
    let rows64: Vec<f64> = p.x.transpose().iter().copied().collect();
    let mut acc = GramAccumulator::new_gpu(m, true, None).unwrap();
    acc.push_rows(&rows64).unwrap();
    let stats = acc.finish().unwrap();
    let rel = (&stats.c - &reference).norm() / reference.norm();
    assert!(rel <= 1e-5, "GPU Gram of f64 rows: relative error {rel:e}");
    for j in 0..m {
        assert!(
            (stats.mean[j] - p.x.column(j).mean()).abs() <= 1e-9 * 1e4,
            "mean {j}"
        );
    }
}

/// C split over several buffers: on a device whose buffers are capped at 160000 bytes, C of m = 300 is
/// held in 3 row panels (128, 128 and 44 rows; a panel of 128 rows is 153600 bytes) and the data goes
/// in chunks of 133 samples.
#[test]
fn c_split_over_several_buffers() {
    if !have_gpu() {
        return;
    }
    let (m, k) = (300, 4);
    let capped = GpuDevice::open_with_binding_limit(None, 160_000).unwrap();
    let whole = GpuDevice::open(None).unwrap();
    assert_eq!(capped.info().max_storage_buffer_binding_size, 160_000);
    assert!(whole.info().max_storage_buffer_binding_size >= (m * m * 4) as u64);
    // 60 samples: one chunk and one slice on both devices, so the split is the only difference, and it
    // changes no bit of the Gram matrix or of the loop (each entry is summed in the same order; the
    // uncapped device's split-K totals but the first stay zero).
    let x = prescribed_spectrum(60, m, &geometric_spectrum(40, 50.0, 0.7), 3.0, 21)
        .x
        .map(|v| v as f32);
    for solver in [Solver::Auto, Solver::ExactTied] {
        let fit = |d: &GpuDevice| {
            LaePca::new(k)
                .solver(solver)
                .backend(Backend::Gpu)
                .device(d.clone())
                .method(Method::Gram)
                .seed(2)
                .fit(&x)
                .unwrap()
        };
        let (split, one) = (fit(&capped), fit(&whole));
        // (assert!, not assert_eq!: a failure would print two 1200-value decoders.)
        assert!(
            split.decoder == one.decoder,
            "{solver}: the decoders differ"
        );
        assert_eq!(split.history, one.history, "{solver}");
        // Each product of C in the loop: one dispatch per panel instead of one. (At least one product
        // per iteration; the setup's products, which `passes` also counts, run on the CPU; auto's
        // discarded pass, which it does not count, on the GPU.)
        let extra = split.loop_stats.total.dispatches - one.loop_stats.total.dispatches;
        assert_eq!(extra % 2, 0, "{solver}: {extra} more dispatches");
        let products = extra / 2;
        let discarded = split.loop_stats.discarded_passes;
        assert!(
            products >= split.iterations && products <= split.passes + discarded,
            "{solver}: {products} products in {} iterations, {} passes",
            split.iterations,
            split.passes
        );
    }
    // 3000 samples with a large mean: on the capped device 23 chunks of ≤ 133 samples (the last
    // submitted by finish), each a column-sums dispatch and one Gram dispatch per panel; on the whole
    // one, one chunk of 3 slices over 13 split-K totals (6 tiles of the triangle), submitted by finish. C against
    // the f64 reference of the f32 data on both.
    let n = 3000;
    let p = prescribed_spectrum(n, m, &geometric_spectrum(m, 50.0, 0.9), 500.0, 22);
    let rows: Vec<f32> = p.x.transpose().iter().map(|&v| v as f32).collect();
    let rounded =
        DMatrix::from_row_slice(n, m, &rows.iter().map(|&v| v as f64).collect::<Vec<_>>());
    let reference = centred_gram(&rounded);
    for (device, full_chunks, panels) in [(&capped, 22, 3), (&whole, 0, 1)] {
        let mut acc = GramAccumulator::on_device(device, m, true).unwrap();
        let created = acc.gpu_stats().unwrap();
        acc.push_rows(&rows).unwrap();
        let pushed = acc.gpu_stats().unwrap();
        assert_eq!(pushed.submissions, full_chunks, "{pushed:?}");
        // Nothing is made per chunk.
        assert_eq!(pushed.buffers_created, created.buffers_created);
        assert_eq!(pushed.bind_groups_created, created.bind_groups_created);
        assert_eq!(pushed.dispatches, full_chunks * (1 + panels), "{pushed:?}");
        let stats = acc.finish().unwrap();
        let rel = (&stats.c - &reference).norm() / reference.norm();
        assert!(rel <= 1e-5, "{panels} panels: relative error {rel:e}");
        assert_eq!(stats.c, stats.c.transpose());
    }
    // And the fit of those samples on the capped device against the f64 eigensolver.
    let fit = LaePca::new(k)
        .backend(Backend::Gpu)
        .device(capped.clone())
        .method(Method::Gram)
        .fit(&rounded.map(|v| v as f32))
        .unwrap();
    let (_, top) = reference_eigen(&reference, k);
    let angle = largest_principal_angle(&top, &columns(&fit.components));
    assert!(angle <= 1e-3, "split GPU fit: largest angle {angle:e}");
}

/// Told how many samples come, a GPU accumulation of fewer than one chunk sizes its buffers to them,
/// with the same C bit for bit (f32 and f64 streams, pushed in ragged pieces), and a push beyond the
/// announced count fails, on the GPU and on the CPU alike.
#[test]
fn a_gpu_accumulation_told_its_samples_sizes_its_buffers_to_them() {
    if !have_gpu() {
        return;
    }
    let device = GpuDevice::open(None).unwrap();
    let (n, m) = (1000, 300);
    let p = prescribed_spectrum(n, m, &geometric_spectrum(m, 50.0, 0.9), 500.0, 29);
    let rows64: Vec<f64> = p.x.transpose().iter().copied().collect();
    let rows32: Vec<f32> = rows64.iter().map(|&v| v as f32).collect();
    fn gram<T: laepca::Real>(acc: &mut GramAccumulator, rows: &[T], m: usize) {
        let mut start = 0;
        for len in [7, 50, 133, 2, 200].iter().cycle() {
            let end = (start + len).min(rows.len() / m);
            acc.push_rows(&rows[start * m..end * m]).unwrap();
            start = end;
            if start == rows.len() / m {
                break;
            }
        }
    }
    let (mut told, mut untold) = (
        GramAccumulator::on_device_for(&device, m, true, Some(n)).unwrap(),
        GramAccumulator::on_device(&device, m, true).unwrap(),
    );
    let bytes = |a: &GramAccumulator| laepca::internals::gram_chunk_buffer_bytes(a).unwrap();
    // Five buffers of 1000 rows of 300 f32 (1.2 MB, and a small header each) against five chunks of
    // 16 MiB.
    assert!(
        bytes(&told) <= 5 * (256 + n * m * 4) as u64,
        "{} bytes",
        bytes(&told)
    );
    assert!(bytes(&untold) >= 5 * (15 << 20), "{} bytes", bytes(&untold));
    gram(&mut told, &rows32, m);
    gram(&mut untold, &rows32, m);
    let (a, b) = (told.finish().unwrap(), untold.finish().unwrap());
    assert!(a.c == b.c && a.mean == b.mean, "f32: C differs");
    let mut told = GramAccumulator::on_device_for(&device, m, true, Some(n)).unwrap();
    let mut untold = GramAccumulator::on_device(&device, m, true).unwrap();
    gram(&mut told, &rows64, m);
    gram(&mut untold, &rows64, m);
    let (a, b) = (told.finish().unwrap(), untold.finish().unwrap());
    assert!(a.c == b.c && a.mean == b.mean, "f64: C differs");
    // One sample more than announced: an error, on either engine, and the accumulator stays failed.
    let cpu = LaePca::new(2).backend(Backend::Cpu);
    for mut acc in [
        GramAccumulator::on_device_for(&device, m, true, Some(10)).unwrap(),
        cpu.accumulator_for(m, 10).unwrap(),
    ] {
        acc.push_rows(&rows32[..10 * m]).unwrap();
        let err = acc.push_rows(&rows32[..m]).unwrap_err();
        assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
        assert!(acc.finish().is_err());
    }
}

/// The GPU's C and mean do not depend on how the samples are pushed: chunks are cut from the stream
/// of samples, and the shift is the first chunk's mean (f32 rows: on the device; f64 rows: on the host,
/// in f64, the first chunk held until it is complete). On a device capped at 160000 bytes a chunk of
/// m = 300 has 133 samples, so the pushes below straddle chunks, and the f64 pushes the held first one.
#[test]
fn gpu_gram_does_not_depend_on_how_samples_are_pushed() {
    if !have_gpu() {
        return;
    }
    let capped = GpuDevice::open_with_binding_limit(None, 160_000).unwrap();
    let (n, m) = (1000, 300);
    let p = prescribed_spectrum(n, m, &geometric_spectrum(m, 50.0, 0.9), 500.0, 23);
    let rows64: Vec<f64> = p.x.transpose().iter().copied().collect();
    let rows32: Vec<f32> = rows64.iter().map(|&v| v as f32).collect();
    fn gram<T: laepca::Real>(d: &GpuDevice, rows: &[T], m: usize, pushes: &[usize]) -> GramStats {
        let mut acc = GramAccumulator::on_device(d, m, true).unwrap();
        let mut start = 0;
        for &len in pushes.iter().cycle() {
            let end = (start + len).min(rows.len() / m);
            acc.push_rows(&rows[start * m..end * m]).unwrap();
            start = end;
            if start == rows.len() / m {
                break;
            }
        }
        acc.finish().unwrap()
    }
    let reference = centred_gram(&p.x);
    for (name, pushes) in [("single rows", &[1][..]), ("ragged", &[7, 50, 133, 2, 200])] {
        let (one, many) = (
            gram(&capped, &rows32, m, &[n]),
            gram(&capped, &rows32, m, pushes),
        );
        assert!(one.c == many.c, "f32, {name}: C differs");
        assert_eq!(one.mean, many.mean, "f32, {name}");
        let (one, many) = (
            gram(&capped, &rows64, m, &[n]),
            gram(&capped, &rows64, m, pushes),
        );
        assert!(one.c == many.c, "f64, {name}: C differs");
        assert_eq!(one.mean, many.mean, "f64, {name}");
        // The held first chunk is shifted by its f64 mean: C within f32's accumulation error of the
        // exact f64 reference despite the mean of 500.
        let rel = (&many.c - &reference).norm() / reference.norm();
        assert!(rel <= 1e-5, "f64, {name}: relative error {rel:e}");
    }
    // An f64 stream shorter than one chunk is released by finish, shifted by its own mean.
    let short = gram(&capped, &rows64[..100 * m], m, &[30]);
    let part = DMatrix::from_row_slice(100, m, &rows64[..100 * m]);
    let rel = (&short.c - &centred_gram(&part)).norm() / centred_gram(&part).norm();
    assert!(rel <= 1e-5, "a short f64 stream: relative error {rel:e}");
}

#[test]
fn gpu_is_deterministic() {
    if !have_gpu() {
        return;
    }
    let x = prescribed_spectrum(200, 30, &geometric_spectrum(30, 20.0, 0.7), 1.0, 3)
        .x
        .map(|v| v as f32);
    for solver in [Solver::Auto, Solver::ExactUntied] {
        let fit = || {
            LaePca::new(4)
                .solver(solver)
                .tol(1e-4)
                .backend(Backend::Gpu)
                .seed(1)
                .fit(&x)
                .unwrap()
        };
        let (a, b) = (fit(), fit());
        assert_eq!(a.decoder.as_slice(), b.decoder.as_slice(), "{solver}");
        assert_eq!(a.history, b.history, "{solver}");
    }
}

#[test]
fn gpu_errors() {
    if !have_gpu() {
        return;
    }
    // m beyond what the device's bindings allow: not even a panel of 128 rows of C fits one. On a
    // device capped at 64 KiB per buffer that is m > 128 (an uncapped adapter's C would exceed the
    // host's memory first); the error names the limit and the largest m that fits.
    let capped = GpuDevice::open_with_binding_limit(None, 64 << 10).unwrap();
    let max_m = capped.info().max_features();
    assert_eq!(max_m, 128, "{:?}", capped.info());
    let wide = DMatrix::<f32>::from_fn(2, max_m + 4, |i, j| ((i * 7 + j) % 5) as f32);
    // On the Gram route (auto would take the transposed one: K is 2 x 2).
    let gram_fit = |x: &DMatrix<f32>| {
        LaePca::new(1)
            .backend(Backend::Gpu)
            .device(capped.clone())
            .method(Method::Gram)
            .fit(x)
    };
    let e = gram_fit(&wide).unwrap_err();
    match &e {
        Error::TooLargeForDevice {
            m,
            max_m: reported,
            limit,
            ..
        } => {
            assert_eq!(*m, max_m + 4);
            assert_eq!(*reported, max_m, "{e}");
            assert_eq!(*limit, 64 << 10, "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        e.to_string().contains("largest n_features that fits"),
        "{e}"
    );
    // The largest m that fits is fitted (C in one panel of 128 rows).
    let widest = DMatrix::<f32>::from_fn(300, max_m, |i, j| ((i * 7 + j * j) % 11) as f32);
    assert_eq!(gram_fit(&widest).unwrap().n_features, max_m);
    // NaN in the data.
    let mut x = prescribed_spectrum(50, 8, &geometric_spectrum(8, 5.0, 0.8), 0.0, 1)
        .x
        .map(|v| v as f32);
    x[(4, 6)] = f32::NAN;
    let e = LaePca::new(2).backend(Backend::Gpu).fit(&x).unwrap_err();
    assert!(
        matches!(e, Error::NonFinite { row: 4, col: 6, .. }),
        "{e:?}"
    );
    x[(4, 6)] = 0.5;
    // No such adapter: an error with Gpu, a fall-back with Auto.
    let e = LaePca::new(2)
        .backend(Backend::Gpu)
        .adapter("no-such-adapter-xyz")
        .fit(&x)
        .unwrap_err();
    assert!(
        matches!(e, Error::NoAdapter(_)) && e.to_string().contains("no-such-adapter-xyz"),
        "{e}"
    );
    let fit = LaePca::new(2)
        .backend(Backend::Auto)
        .adapter("no-such-adapter-xyz")
        .fit(&x)
        .unwrap();
    assert_eq!(fit.backend, Backend::Cpu);
    assert!(fit.adapter.is_none());
}

#[test]
fn devices_are_listed() {
    if !have_gpu() {
        return;
    }
    for d in devices() {
        assert!(!d.name.is_empty());
        assert!(d.max_storage_buffer_binding_size >= 128 << 20, "{d:?}");
        assert!(d.max_features() >= 4096, "{d:?}");
    }
}

#[test]
fn check_every_usize_max_does_not_overflow() {
    if !have_gpu() {
        return;
    }
    let x = DMatrix::from_fn(60, 5, |i, j| {
        (((i * 13 + j * 7 + i * j) % 23) as f64) * (1.0 + j as f64)
    });
    let fit = LaePca::new(2)
        .solver(Solver::Tied)
        .backend(Backend::Gpu)
        .max_iter(30)
        .check_every(usize::MAX)
        .fit(&x)
        .unwrap();
    assert_eq!(fit.iterations, 30);
}

/// Where the device has timestamp queries (lavapipe and llvmpipe's GL do), a GPU fit reports the GPU
/// time of its Gram kernels and of its loop's passes, within the phases' wall times; on the CPU there
/// is none.
#[test]
fn gram_kernels_are_timed() {
    if !have_gpu() {
        return;
    }
    let device = GpuDevice::open(None).unwrap();
    let x = prescribed_spectrum(3000, 40, &geometric_spectrum(40, 20.0, 0.8), 2.0, 5)
        .x
        .map(|v| v as f32);
    let fit = |backend| {
        LaePca::new(3)
            .backend(backend)
            .device(device.clone())
            .method(Method::Gram)
            .fit(&x)
            .unwrap()
    };
    let gpu = fit(Backend::Gpu).timings;
    match (gpu.gram_kernels, gpu.iterate_kernels) {
        (Some(gram), Some(iterate)) => {
            assert!(device.info().timestamp_queries);
            assert!(gram > std::time::Duration::ZERO, "{gpu:?}");
            assert!(gram <= gpu.gram, "{gpu:?}");
            // (The last block's compute is waited for by the weights' read-back.)
            assert!(iterate > std::time::Duration::ZERO, "{gpu:?}");
            assert!(iterate <= gpu.iterate + gpu.readback, "{gpu:?}");
        }
        (None, None) => assert!(!device.info().timestamp_queries, "{:?}", device.info()),
        other => panic!("{other:?}"),
    }
    let cpu = fit(Backend::Cpu).timings;
    assert_eq!((cpu.gram_kernels, cpu.iterate_kernels), (None, None));
}

/// The Gram kernels keep every index in range themselves (their module has wgpu's bounds checks
/// off), so shapes at every edge of their tiles and slices are checked against the f64 reference:
/// m around the vec4 padding and the 128-wide tiles, n of one sample, around the 8-sample step and
/// the 1024-sample slice; on the uncapped device (one panel, split-K) and one capped at 160000 bytes
/// (several panels from m = 257 on, chunks shorter than a slice).
#[test]
fn gpu_gram_at_the_edges_of_its_tiles() {
    if !have_gpu() {
        return;
    }
    let devices = [
        GpuDevice::open(None).unwrap(),
        GpuDevice::open_with_binding_limit(None, 160_000).unwrap(),
    ];
    let mut state = 7u64;
    let mut value = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
        ((state >> 40) as f64 / (1u64 << 24) as f64) * 2.0 + 3.0
    };
    for (m, n) in [
        (1, 2),
        (2, 1),
        (3, 9),
        (5, 1025),
        (127, 8),
        (128, 1024),
        (129, 1031),
        (257, 300),
        (300, 140),
    ] {
        let x = DMatrix::<f64>::from_fn(n, m, |_, _| value()).map(|v| v as f32 as f64);
        let rows: Vec<f32> = x.transpose().iter().map(|&v| v as f32).collect();
        let reference = centred_gram(&x);
        for (d, device) in devices.iter().enumerate() {
            let mut acc = GramAccumulator::on_device(device, m, true).unwrap();
            acc.push_rows(&rows).unwrap();
            let stats = acc.finish().unwrap();
            let scale = reference.norm().max(x.norm() * x.norm() * 1e-7);
            let err = (&stats.c - &reference).norm() / scale;
            assert!(
                err <= 1e-5,
                "m = {m}, n = {n}, device {d}: relative error {err:e}"
            );
            for j in 0..m {
                let mean = x.column(j).mean();
                assert!(
                    (stats.mean[j] - mean).abs() <= 1e-6 * mean.abs(),
                    "m = {m}, n = {n}"
                );
            }
        }
    }
}

/// More chunks than the Gram timer holds between reads: on a device capped at 64 bytes the timer holds
/// 4 chunks (16 bytes of timestamps each) and a chunk of m = 4 has 2 samples, so 80 samples make 40
/// chunks; the timer is read on the way before chunks 5, 9, ..., 37 (9 more submissions) and again by
/// finish, and C is still right.
#[test]
fn gram_timer_survives_more_chunks_than_it_holds() {
    if !have_gpu() {
        return;
    }
    let capped = GpuDevice::open_with_binding_limit(None, 64).unwrap();
    let (n, m) = (80, 4);
    let p = prescribed_spectrum(n, m, &geometric_spectrum(m, 10.0, 0.8), 3.0, 31);
    let rows: Vec<f32> = p.x.transpose().iter().map(|&v| v as f32).collect();
    let rounded =
        DMatrix::from_row_slice(n, m, &rows.iter().map(|&v| v as f64).collect::<Vec<_>>());
    let mut acc = GramAccumulator::on_device(&capped, m, true).unwrap();
    acc.push_rows(&rows).unwrap();
    let pushed = acc.gpu_stats().unwrap();
    let timed = capped.info().timestamp_queries;
    assert_eq!(
        pushed.submissions,
        40 + 9 * usize::from(timed),
        "{pushed:?}"
    );
    let (stats, time) = acc.finish_timed().unwrap();
    assert_eq!(time.is_some(), timed);
    assert!(time.is_none_or(|t| t > std::time::Duration::ZERO));
    let reference = centred_gram(&rounded);
    let rel = (&stats.c - &reference).norm() / reference.norm();
    assert!(rel <= 1e-5, "relative error {rel:e}");
}

/// The device's shift (the first chunk's mean) and column sums keep their digits over a long chunk:
/// m = 4 has chunks of a million samples, and 250000 samples of mean 1e5 and spread ~1 in one chunk
/// would put a plain f32 mean off by about 0.5 (15625 terms of 1e5 per thread), a shift error whose
/// square is a quarter of C's scale; summed slice by slice with TwoSum, C stays within 1e-5.
#[test]
fn gpu_shift_keeps_its_digits_over_a_long_chunk() {
    if !have_gpu() {
        return;
    }
    let (n, m) = (250_000, 4);
    let p = prescribed_spectrum(n, m, &geometric_spectrum(m, 500.0, 0.9), 1e5, 12);
    let rows: Vec<f32> = p.x.transpose().iter().map(|&v| v as f32).collect();
    let rounded =
        DMatrix::from_row_slice(n, m, &rows.iter().map(|&v| v as f64).collect::<Vec<_>>());
    let mut acc = GramAccumulator::new_gpu(m, true, None).unwrap();
    acc.push_rows(&rows).unwrap();
    assert_eq!(
        acc.gpu_stats().unwrap().submissions,
        0,
        "one chunk, submitted by finish"
    );
    let stats = acc.finish().unwrap();
    let reference = centred_gram(&rounded);
    let rel = (&stats.c - &reference).norm() / reference.norm();
    assert!(rel <= 1e-5, "relative error {rel:e}");
    for j in 0..m {
        let mean = rounded.column(j).mean();
        assert!(
            (stats.mean[j] - mean).abs() <= 1e-9 * mean.abs(),
            "mean {j}"
        );
    }
}

/// f64 data run the GPU loop in f64 where the device has f64 shaders (lavapipe has; `precision` auto),
/// and then agree with the CPU's f64 fit to f64's rounding, for every solver and shape: the same
/// iterations (± 1), directions within 1e-8 rad, σ within 1e-10. Where the device has none (the GL
/// backend), they run in f32, and asking for f64 is an error.
#[test]
fn gpu_f64_agrees_with_the_cpu_f64() {
    if !have_gpu() {
        return;
    }
    let device = GpuDevice::open(None).unwrap();
    // CI runs this test again with WGPU_BACKEND=gl, which has no f64 shaders.
    if std::env::var("WGPU_BACKEND").is_ok_and(|b| b == "gl") {
        assert_eq!(device.info().backend, "gl", "{:?}", device.info());
        assert!(!device.info().shader_f64, "{:?}", device.info());
    }
    let x = prescribed_spectrum(300, 37, &geometric_spectrum(36, 50.0, 0.85), 3.0, 17).x;
    let base = LaePca::new(5).tol(1e-6).seed(5).max_iter(20_000);
    let gpu = |solver, precision| {
        base.clone()
            .solver(solver)
            .backend(Backend::Gpu)
            .device(device.clone())
            .gpu_precision(precision)
            .fit(&x)
    };
    if !device.info().shader_f64 {
        let fit = gpu(Solver::Auto, GpuPrecision::Auto).unwrap();
        assert_eq!(fit.arithmetic, Arithmetic::F32, "{:?}", device.info());
        let refused = gpu(Solver::Auto, GpuPrecision::F64);
        assert!(
            matches!(refused, Err(Error::Unsupported { .. })),
            "{:?}",
            refused.err()
        );
        return;
    }
    for solver in Solver::ALL {
        let cpu = base.clone().solver(solver).fit(&x).unwrap();
        let fit = gpu(solver, GpuPrecision::Auto).unwrap();
        let ctx = format!(
            "{solver}: cpu {} iterations, gpu {}",
            cpu.iterations, fit.iterations
        );
        assert_eq!(fit.backend, Backend::Gpu, "{ctx}");
        assert_eq!(fit.arithmetic, Arithmetic::F64, "{ctx}");
        assert_eq!(cpu.arithmetic, Arithmetic::F64, "{ctx}");
        assert!(cpu.converged && fit.converged, "{ctx}");
        assert!(cpu.iterations.abs_diff(fit.iterations) <= 1, "{ctx}");
        let angle = largest_principal_angle(&columns(&cpu.components), &columns(&fit.components));
        assert!(angle <= 1e-8, "{ctx}: subspace angle {angle:e}");
        for i in 0..5 {
            let (a, b) = (cpu.singular_values[i], fit.singular_values[i]);
            assert!((a - b).abs() <= 1e-10 * a, "{ctx}: σ_{i} {a} vs {b}");
        }
    }
    // Asked for, f32 runs in f32 (and agrees only to f32's rounding).
    let f32_fit = gpu(Solver::Auto, GpuPrecision::F32).unwrap();
    assert_eq!(f32_fit.arithmetic, Arithmetic::F32);
    // And f64 arithmetic is as deterministic as f32's.
    let (a, b) = (
        gpu(Solver::Auto, GpuPrecision::F64).unwrap(),
        gpu(Solver::Auto, GpuPrecision::F64).unwrap(),
    );
    assert_eq!(a.decoder.as_slice(), b.decoder.as_slice());
    assert_eq!(a.history, b.history);
}

/// The case for f64 on the GPU: the paper's problem (m = 10) with the paper's untied settings
/// (λ = 50, α = 1e-5, tol = 1e-8). In f32 the GPU loop stalled at ~14550 iterations, 4e-2 rad off;
/// in f64 it converges in the CPU's iterations to the CPU's accuracy (the test of
/// tests/accuracy.rs's bounds: Σ min ‖u ± û‖ ≤ 1e-4 against the f64 SVD, σ within 1e-10).
#[test]
fn gpu_f64_fits_the_paper_problem_to_the_cpu_accuracy() {
    if !have_gpu() {
        return;
    }
    let device = GpuDevice::open(None).unwrap();
    if !device.info().shader_f64 {
        return;
    }
    let x = paper_problem();
    let (vals, vecs) = reference_eigen(&centred_gram(&x), 2);
    let model = LaePca::new(2)
        .solver(Solver::Untied)
        .lambda(50.0)
        .alpha(1e-5)
        .tol(1e-8)
        .check_every(100);
    let cpu = model.clone().fit(&x).unwrap();
    let fit = model.backend(Backend::Gpu).device(device).fit(&x).unwrap();
    assert_eq!(fit.arithmetic, Arithmetic::F64);
    assert!(fit.converged, "{} iterations", fit.iterations);
    assert!(
        cpu.iterations.abs_diff(fit.iterations) <= 100,
        "cpu {} iterations, gpu {}",
        cpu.iterations,
        fit.iterations
    );
    let err = paper_error(&columns(&fit.components), &vecs);
    assert!(err <= 1e-4, "Σ min ‖u ± û‖ = {err:e}");
    for (i, value) in vals.iter().enumerate() {
        let sigma = value.sqrt();
        let rel = (fit.singular_values[i] - sigma).abs() / sigma;
        assert!(rel <= 1e-10, "σ_{i} relative error {rel:e}");
    }
    eprintln!(
        "paper problem, untied, f64 on the GPU: {} iterations (cpu {}), Σ min ‖u ± û‖ = {err:.2e}",
        fit.iterations, cpu.iterations
    );
}

/// The loop's C made on the device from the accumulation's sums (no second upload) against the
/// host's `C / trace(C)` in f32: symmetric bit for bit, zero in the padding, and within 8 f32 ulps of
/// the largest entry (the centring term is subtracted in f32 there, a few roundings of at most C's
/// largest entry each; a missing or wrong term, scale or mirror would be off by far more). In one
/// panel (m = 37, a large mean, ragged) and in three (a device capped at 160000-byte buffers, m =
/// 300: the mirror across panels). Then samples whose first chunk is far from the mean (a centring
/// term larger than C's diagonal): the sums are not kept, and the fit takes the host's copy.
#[test]
fn the_loop_c_is_made_on_the_device_from_the_sums() {
    if !have_gpu() {
        return;
    }
    let whole = GpuDevice::open(None).unwrap();
    let capped = GpuDevice::open_with_binding_limit(None, 160_000).unwrap();
    for (device, n, m, mean) in [(&whole, 700, 37, 1000.0), (&capped, 600, 300, 50.0)] {
        let p = prescribed_spectrum(n, m, &geometric_spectrum(m.min(40), 80.0, 0.8), mean, 31);
        let rows: Vec<f32> = p.x.transpose().iter().map(|&v| v as f32).collect();
        let (loop_c, c) = laepca::internals::loop_c_on_device(device, &rows, m)
            .unwrap()
            .expect("a shift near the mean keeps the sums on the device");
        let mp = loop_c.nrows();
        assert_eq!(mp, m.div_ceil(4) * 4);
        let host = (&c / c.trace()).map(|v| v as f32 as f64);
        let largest = host.iter().fold(0.0f64, |a, &v| a.max(v.abs()));
        let bound = 8.0 * f32::EPSILON as f64 * largest;
        for i in 0..mp {
            for j in 0..mp {
                let v = loop_c[(i, j)];
                assert_eq!(v.to_bits(), loop_c[(j, i)].to_bits(), "m = {m}: ({i}, {j})");
                if i >= m || j >= m {
                    assert_eq!(v, 0.0, "m = {m}: padding ({i}, {j})");
                } else {
                    let err = (v - host[(i, j)]).abs();
                    assert!(
                        err <= bound,
                        "m = {m}: ({i}, {j}) off by {err:e} > {bound:e}"
                    );
                }
            }
        }
    }
    // Chunks of 409 samples on a device capped at 64 KiB buffers (m = 37): feature 0 of the first
    // chunk at +10, of the nine others at 0. The first chunk's mean of it is 9 from its mean, whose
    // spread is 3: n·9² > C₀₀ ≈ n·3².
    let tiny = GpuDevice::open_with_binding_limit(None, 64 << 10).unwrap();
    let (n, m) = (4090, 37);
    let p = prescribed_spectrum(n, m, &geometric_spectrum(m, 30.0, 0.9), 0.0, 32);
    let mut x = p.x.map(|v| v as f32);
    for i in 0..409 {
        x[(i, 0)] += 10.0;
    }
    let rows: Vec<f32> = x.transpose().iter().copied().collect();
    let kept = laepca::internals::loop_c_on_device(&tiny, &rows, m).unwrap();
    assert!(kept.is_none(), "a centring term beyond C's diagonal");
    let gpu = LaePca::new(4)
        .backend(Backend::Gpu)
        .device(tiny.clone())
        .fit(&x)
        .unwrap();
    let cpu = LaePca::new(4)
        .backend(Backend::Cpu)
        .fit(&x.map(|v| v as f64))
        .unwrap();
    let angle = largest_principal_angle(
        &gpu.components.transpose().map(|v| v as f64),
        &cpu.components.transpose(),
    );
    assert!(angle < 1e-3, "GPU against CPU f64: {angle:e} rad");
}

/// `fit_accumulated` of a GPU accumulation gives `fit`'s bits on the same device (both make the loop's
/// C on the device from the same sums: the chunks are cut from the stream of samples whatever the
/// pushes), runs on the accumulation's device when the builder has none, and agrees to f32 accuracy
/// with `finish` then `fit_gram`, which uploads the host's copy.
#[test]
fn fit_accumulated_keeps_c_on_the_device() {
    if !have_gpu() {
        return;
    }
    let (n, m, k) = (900, 60, 4);
    let x = prescribed_spectrum(n, m, &geometric_spectrum(30, 40.0, 0.8), 20.0, 33)
        .x
        .map(|v| v as f32);
    let rows: Vec<f32> = x.transpose().iter().copied().collect();
    let device = GpuDevice::open(None).unwrap();
    let accumulated = || {
        let mut acc = GramAccumulator::on_device(&device, m, true).unwrap();
        for chunk in rows.chunks(m * 250) {
            acc.push_rows(chunk).unwrap();
        }
        acc
    };
    for solver in [Solver::Auto, Solver::ExactTied] {
        let model = LaePca::new(k).solver(solver).backend(Backend::Gpu);
        let direct = model.clone().device(device.clone()).fit(&x).unwrap();
        let kept = model.fit_accumulated::<f32>(accumulated()).unwrap();
        assert_eq!(kept.backend, Backend::Gpu, "{solver}");
        assert!(
            kept.decoder == direct.decoder,
            "{solver}: the decoders differ"
        );
        assert_eq!(kept.history, direct.history, "{solver}");
        let stats = accumulated().finish().unwrap();
        let uploaded = model
            .clone()
            .device(device.clone())
            .fit_gram::<f32>(&stats)
            .unwrap();
        let angle = largest_principal_angle(
            &kept.components.transpose().map(|v| v as f64),
            &uploaded.components.transpose().map(|v| v as f64),
        );
        assert!(
            angle < 1e-4,
            "{solver}: {angle:e} rad from the uploaded C's fit"
        );
    }
}

/// `profile_kernels`: every dispatch timed in a pass of its own gives the same bits as one pass per
/// block, each kernel's dispatches add up to the loop's (c_mul's to its products with C), and the
/// kernels' times to the loop's GPU time (lavapipe has timestamp queries; each time is truncated to
/// a nanosecond). Off, or on the CPU, the profile is empty.
#[test]
fn kernel_profile_accounts_for_every_dispatch() {
    if !have_gpu() {
        return;
    }
    let device = GpuDevice::open(None).unwrap();
    if !device.info().timestamp_queries {
        eprintln!(
            "{}: no timestamp queries, nothing to profile",
            device.info().name
        );
        return;
    }
    let x = prescribed_spectrum(400, 48, &geometric_spectrum(30, 40.0, 0.85), 2.0, 34)
        .x
        .map(|v| v as f32);
    for solver in [Solver::Auto, Solver::ExactTied] {
        let model = LaePca::new(4)
            .solver(solver)
            .backend(Backend::Gpu)
            .device(device.clone());
        let plain = model.clone().fit(&x).unwrap();
        let profiled = model.profile_kernels(true).fit(&x).unwrap();
        assert!(plain.kernel_profile.is_empty(), "{solver}");
        assert!(
            profiled.decoder == plain.decoder,
            "{solver}: the decoders differ"
        );
        assert_eq!(profiled.history, plain.history, "{solver}");
        let p = &profiled.kernel_profile;
        let dispatches: usize = p.iter().map(|t| t.dispatches).sum();
        assert_eq!(
            dispatches, profiled.loop_stats.total.dispatches,
            "{solver}: {p:?}"
        );
        // At least one product per iteration, at most the fit's passes (the setup's run on the CPU)
        // and auto's discarded one: c_mul's, and c_mul_gram's (C W with the parts of WᵀCW).
        let products: usize = p
            .iter()
            .filter(|t| t.kernel == "c_mul" || t.kernel == "c_mul_gram")
            .map(|t| t.dispatches)
            .sum();
        assert!(
            products >= profiled.iterations
                && products <= profiled.passes + profiled.loop_stats.discarded_passes,
            "{solver}: {p:?}, {} passes",
            profiled.passes
        );
        assert!(
            p.windows(2).all(|w| w[0].time >= w[1].time),
            "{solver}: by time"
        );
        let sum: std::time::Duration = p.iter().map(|t| t.time).sum();
        let total = profiled.timings.iterate_kernels.expect("timed");
        let slack = std::time::Duration::from_nanos(dispatches as u64 + 1);
        assert!(
            sum <= total + slack && total <= sum + slack,
            "{solver}: kernels {sum:?}, loop {total:?}"
        );
    }
    let cpu = LaePca::new(4)
        .profile_kernels(true)
        .backend(Backend::Cpu)
        .fit(&x)
        .unwrap();
    assert!(cpu.kernel_profile.is_empty());
}
