//! The default solver on the problems: passes over C against the largest principal angle to an
//! f64 eigensolver's top-k subspace, for laepca's auto (f64 CPU: the iterate after each pass; f32 CPU
//! and, with `--gpu`, f32 GPU: at the defaults), a reference f64 LOBPCG (tests/common) and, with
//! `--momentum`, the momentum solver at its defaults. Prints the rows of README's table.
#[path = "../tests/common/mod.rs"]
mod common;
use laepca::synthetic::prescribed_spectrum;
use laepca::*;
use nalgebra::{DMatrix, DVector};

fn stats(c: DMatrix<f64>, n: usize) -> GramStats {
    let m = c.nrows();
    GramStats {
        c,
        mean: DVector::zeros(m),
        n_samples: n,
    }
}

fn angle(reference: &DMatrix<f64>, components: DMatrix<f64>) -> f64 {
    common::largest_principal_angle(reference, &components.transpose())
}

fn curve(angles: &[f64]) -> String {
    angles
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}:{a:.1e}", i + 1))
        .collect::<Vec<_>>()
        .join(" ")
}

fn report(name: &str, s: &GramStats, k: usize, gpu: bool, momentum: bool) {
    let (vals, vecs) = common::reference_eigen(&s.c, k + 1);
    let vecs = vecs.columns(0, k).into_owned();
    let ratio = (vals[k] / vals[k - 1]).sqrt();
    println!("== {name}, k = {k}, σ_(k+1)/σ_k = {ratio:.3}");
    let max_passes = 40;
    let lobpcg: Vec<f64> = common::reference_lobpcg(&s.c, k, max_passes, 7)
        .into_iter()
        .map(|x| common::largest_principal_angle(&vecs, &x))
        .collect();
    println!("reference LOBPCG f64: {}", curve(&lobpcg));
    // The iterate after t iterations, t + 1 passes (max_iter = 0 is not allowed: no entry for 1 pass).
    let mut auto = vec![f64::NAN];
    for t in 1..max_passes {
        let f = LaePca::new(k)
            .max_iter(t)
            .tol(1e-300)
            .fit_gram::<f64>(s)
            .unwrap();
        auto.push(angle(&vecs, f.components.clone()));
        if f.stalled {
            break;
        }
    }
    println!("laepca auto f64 (after each pass): {}", curve(&auto));
    let mut defaults: Vec<(&str, Backend, Solver)> = vec![("cpu", Backend::Cpu, Solver::Auto)];
    if gpu {
        defaults.push(("gpu", Backend::Gpu, Solver::Auto));
    }
    if momentum {
        defaults.push(("cpu", Backend::Cpu, Solver::Momentum));
    }
    for (where_, backend, solver) in defaults {
        for f64_ in [true, false] {
            if f64_ && backend == Backend::Gpu {
                continue;
            }
            let b = LaePca::new(k).solver(solver).backend(backend);
            let (c, passes, it, conv, st, last) = if f64_ {
                let f = b.fit_gram::<f64>(s).unwrap();
                let last = f.history.last().copied().unwrap_or(f64::NAN);
                (
                    f.components.clone(),
                    f.passes,
                    f.iterations,
                    f.converged,
                    f.stalled,
                    last,
                )
            } else {
                let f = b.fit_gram::<f32>(s).unwrap();
                let last = f.history.last().copied().unwrap_or(f64::NAN);
                if std::env::var_os("HISTORY").is_some() {
                    println!("history {}", curve(&f.history));
                }
                (
                    f.components.map(|v| v as f64),
                    f.passes,
                    f.iterations,
                    f.converged,
                    f.stalled,
                    last,
                )
            };
            println!(
                "laepca {solver} {where_} {} defaults: passes {passes} (iterations {it}) converged {conv} stalled {st} last quantity {last:.1e} angle {:.1e}",
                if f64_ { "f64" } else { "f32" },
                angle(&vecs, c)
            );
        }
    }
}

fn main() {
    let gpu = std::env::args().any(|a| a == "--gpu");
    let momentum = std::env::args().any(|a| a == "--momentum");
    let x = common::paper_problem();
    report(
        "paper",
        &stats(common::centred_gram(&x), x.nrows()),
        2,
        gpu,
        momentum,
    );
    let d = common::digits();
    report(
        "digits",
        &stats(common::centred_gram(&d), d.nrows()),
        10,
        gpu,
        momentum,
    );
    // The benchmark's hard-gap spectrum (benches/compare/problems.rs, gap_spectrum) at m = 200, k = 16.
    let (m, k) = (200, 16);
    let sigma = common::hard_gap_spectrum(m, k);
    let p = prescribed_spectrum(4 * m, m, &sigma, 3.0, 7);
    report(
        "hard gap m=200",
        &stats(common::centred_gram(&p.x), 4 * m),
        k,
        gpu,
        momentum,
    );
    if let Some(f) = common::fashion_mnist() {
        let c = common::centred_gram(&f.map(|v| v as f64));
        report("fashion-mnist", &stats(c, f.nrows()), 16, gpu, momentum);
    } else {
        println!("fashion-mnist: dataset-fashion-mnist is not installed");
    }
}
