//! Fits a synthetic sparse count matrix through the operator route (C never formed) and reports the
//! time, the passes, the peak resident memory and two checks of the answer:
//!
//! * the residuals `‖C u_i − σ_i² u_i‖ / σ_1²` of every component, with C applied by a plain sequential
//!   loop over the entries written here (the explicit centred data `x_ij − μ_j`, not the library's
//!   rank-one correction), a certificate that each (σ_i, u_i) is an eigenpair;
//! * with `--reference` (small sizes only), the largest principal angle and the largest relative error
//!   of the explained variance ratios against the f64 eigendecomposition of the densified centred Gram
//!   matrix.
//!
//! With `--gpu` the loop runs on the GPU (X held there, shaders/sparse.wgsl), else on the CPU.
//!
//! ```text
//! cargo run --release --example sparse_fit -- N M DENSITY K [--reference] [--gpu]
//! /usr/bin/time -v target/release/examples/sparse_fit 200000 20000 0.005 50
//! ```
//!
//! The matrix: `laepca::synthetic::sparse_counts` (column popularity falling like `1/sqrt(j + 1)`, as
//! genes' expression does; count values; two kinds of rows, so that the spectrum has structure).

use laepca::synthetic::sparse_counts;
use laepca::{Backend, CsrMatrix, LaePca, Method};
use nalgebra::{DMatrix, SymmetricEigen};
use std::time::Instant;

/// `C u` for the centred data, by a plain loop: `Σ_i (x_i − μ)(x_i − μ)ᵀ u` with `(x_i − μ)ᵀ u` taken over
/// the stored entries and the zeros' `−μ_j u_j` terms written out.
fn reference_c_times(x: &CsrMatrix<f32>, mean: &[f64], u: &[f64]) -> Vec<f64> {
    let m = x.ncols();
    let mean_dot_u: f64 = mean.iter().zip(u).map(|(a, b)| a * b).sum();
    let mut out = vec![0.0; m];
    // Σ_i (x_i − μ) s_i with s_i = (x_i − μ)ᵀu = x_iᵀu − μᵀu.
    let mut sum_s = 0.0;
    for i in 0..x.nrows() {
        let (cols, vals) = x.row(i);
        let s: f64 = cols
            .iter()
            .zip(vals)
            .map(|(&j, &v)| v as f64 * u[j as usize])
            .sum::<f64>()
            - mean_dot_u;
        for (&j, &v) in cols.iter().zip(vals) {
            out[j as usize] += v as f64 * s;
        }
        sum_s += s;
    }
    for j in 0..m {
        out[j] -= mean[j] * sum_s;
    }
    out
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: sparse_fit N M DENSITY K [--reference] [--gpu]");
        std::process::exit(2);
    }
    let n: usize = args[1].parse().expect("N");
    let m: usize = args[2].parse().expect("M");
    let density: f64 = args[3].parse().expect("DENSITY");
    let k: usize = args[4].parse().expect("K");
    let reference = args.iter().any(|a| a == "--reference");
    let backend = if args.iter().any(|a| a == "--gpu") {
        Backend::Gpu
    } else {
        Backend::Cpu
    };

    let t = Instant::now();
    let x = sparse_counts(n, m, density, 7);
    println!(
        "data: {n} x {m}, {} stored entries ({:.3}%), generated in {:.2} s, peak RSS {:.0} MiB",
        x.nnz(),
        100.0 * x.nnz() as f64 / (n as f64 * m as f64),
        t.elapsed().as_secs_f64(),
        peak_rss_mib().unwrap_or(f64::NAN)
    );
    let t = Instant::now();
    let fit = LaePca::new(k)
        .method(Method::Operator)
        .backend(backend)
        .fit_csr(&x)
        .expect("the fit");
    println!(
        "fit: operator route ({}) on the {:?} ({}), {} iterations, {} passes, converged {}, stalled {}, {:.2} s \
         (set-up {:.2} s, iterate {:.2} s, finish {:.2} s), peak RSS {:.0} MiB",
        fit.method_reason,
        fit.backend,
        fit.adapter.as_ref().map_or("host", |a| a.name.as_str()),
        fit.iterations,
        fit.passes,
        fit.converged,
        fit.stalled,
        t.elapsed().as_secs_f64(),
        fit.timings.gram.as_secs_f64(),
        fit.timings.iterate.as_secs_f64(),
        fit.timings.finish.as_secs_f64(),
        peak_rss_mib().unwrap_or(f64::NAN)
    );
    let mean: Vec<f64> = fit.mean.iter().map(|&v| v as f64).collect();
    let top = (fit.singular_values[0] as f64).powi(2);
    let mut worst = 0.0f64;
    for i in 0..k {
        let u: Vec<f64> = fit.components.row(i).iter().map(|&v| v as f64).collect();
        let cu = reference_c_times(&x, &mean, &u);
        let theta = (fit.singular_values[i] as f64).powi(2);
        let r: f64 = cu
            .iter()
            .zip(&u)
            .map(|(a, b)| (a - theta * b).powi(2))
            .sum::<f64>()
            .sqrt();
        worst = worst.max(r / top);
    }
    println!(
        "check: largest residual ‖C u_i − σ_i² u_i‖ / σ_1² over the {k} components: {worst:.1e}; \
         σ_1 = {:.6e}, σ_k = {:.6e}, explained variance ratio of the {k}: {:.4}",
        fit.singular_values[0],
        fit.singular_values[k - 1],
        fit.explained_variance_ratio
            .iter()
            .map(|&v| v as f64)
            .sum::<f64>()
    );
    if reference {
        let dense = x.to_dense().map(|v| v as f64);
        let mut xc = dense.clone();
        for mut col in xc.column_iter_mut() {
            let mu = col.mean();
            col.add_scalar_mut(-mu);
        }
        let c = xc.transpose() * &xc;
        let eig = SymmetricEigen::new(c.clone());
        let mut order: Vec<usize> = (0..m).collect();
        order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
        let vecs = DMatrix::from_fn(m, k, |r, j| eig.eigenvectors[(r, order[j])]);
        let got = fit.components.transpose().map(|v| v as f64).qr().q();
        let residual = &got - &vecs * (vecs.transpose() * &got);
        let angle = residual.singular_values().max().min(1.0).asin();
        let total = c.trace();
        let evr = (0..k)
            .map(|i| {
                let want = eig.eigenvalues[order[i]] / total;
                (fit.explained_variance_ratio[i] as f64 - want).abs() / want
            })
            .fold(0.0, f64::max);
        println!(
            "reference (dense f64 eigendecomposition): largest principal angle {angle:.1e}, \
             largest explained-variance-ratio error {evr:.1e} (relative)"
        );
    }
}
