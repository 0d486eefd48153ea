//! Wall-clock time of the CPU Gram phase on an f32 .npy file held in memory (C order, samples in
//! rows): `cargo run --release --example cpu_gram_time -- FILE.npy [REPS]`. Prints each repetition.

use faer::reborrow::ReborrowMut;
use laepca::GramAccumulator;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().ok_or("FILE.npy [REPS]")?;
    let reps: usize = args.get(1).map_or(Ok(3), |s| s.parse())?;
    let bytes = std::fs::read(path)?;
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len])?;
    let shape = header.split("'shape': (").nth(1).ok_or("no shape")?;
    let dims: Vec<usize> = shape
        .split(')')
        .next()
        .ok_or("no shape")?
        .split(',')
        .filter_map(|d| d.trim().parse().ok())
        .collect();
    let (n, m) = (dims[0], dims[1]);
    let data: Vec<f32> = bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(data.len(), n * m);
    for rep in 0..reps {
        let cpu0 = thread_cpu_ns();
        let t = Instant::now();
        let mut acc = GramAccumulator::new(m, true)?;
        acc.push_rows(&data)?;
        let stats = acc.finish()?;
        let s = t.elapsed().as_secs_f64();
        let cpu = (thread_cpu_ns() - cpu0) as f64 * 1e-9;
        println!(
            "rep {rep}: {n} x {m}: {s:.3} s wall, {cpu:.3} s on this thread, {:.1} GFLOP/s (triangle, wall), C[0,0] = {:.6e}",
            (n * m * (m + 1)) as f64 / s / 1e9,
            stats.c[(0, 0)]
        );
    }
    // The kernel alone: faer's triangular product on the same blocks, no copy, shift or f64 sum.
    let block: usize = std::env::var("BLOCK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2048);
    let mut out = vec![0f32; m * m];
    for rep in 0..reps {
        let cpu0 = thread_cpu_ns();
        let t = Instant::now();
        let panel: usize = std::env::var("PANEL")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        for rows in data.chunks(block * m) {
            let len = rows.len() / m;
            let bt = faer::MatRef::from_column_major_slice(rows, m, len);
            let mut dst = faer::MatMut::from_column_major_slice_mut(&mut out, m, m);
            if panel == 0 {
                tri(dst.rb_mut(), bt, bt);
            } else {
                // Column panels of the lower triangle: the diagonal block by the triangular product,
                // the rectangle below it by a full product.
                let mut j = 0;
                while j < m {
                    let w = panel.min(m - j);
                    let pj = bt.subrows(j, w);
                    tri(dst.rb_mut().submatrix_mut(j, j, w, w), pj, pj);
                    if j + w < m {
                        faer::linalg::matmul::matmul(
                            dst.rb_mut().submatrix_mut(j + w, j, m - j - w, w),
                            faer::Accum::Replace,
                            bt.subrows(j + w, m - j - w),
                            pj.transpose(),
                            1.0f32,
                            faer::Par::rayon(0),
                        );
                    }
                    j += w;
                }
            }
        }
        let s = t.elapsed().as_secs_f64();
        let cpu = (thread_cpu_ns() - cpu0) as f64 * 1e-9;
        println!(
            "kernel only, blocks of {block}, panels {panel}: rep {rep}: {s:.3} s wall, {cpu:.3} s on this thread, {:.1} triangle-GFLOP/s per thread-second",
            (n * m * (m + 1)) as f64 / cpu / 1e9
        );
    }
    Ok(())
}

/// CPU time of the calling thread so far (Linux: /proc/thread-self/schedstat, nanoseconds on a CPU);
/// with RAYON_NUM_THREADS=1 the work runs on this thread, so the figure does not count time spent
/// waiting for a core on a busy machine.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn tri(dst: faer::MatMut<'_, f32>, a: faer::MatRef<'_, f32>, b: faer::MatRef<'_, f32>) {
    use faer::linalg::matmul::triangular::{matmul, BlockStructure};
    matmul(
        dst,
        BlockStructure::TriangularLower,
        faer::Accum::Replace,
        a,
        BlockStructure::Rectangular,
        b.transpose(),
        BlockStructure::Rectangular,
        1.0f32,
        faer::Par::rayon(0),
    );
}
