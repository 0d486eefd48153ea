//! The auto solver on the problems (iterations and accuracy), with `--paper-variants` also
//! the paper's six variants on the m = 1024 problem, with `--gpu` also on the GPU.
#[path = "../tests/common/mod.rs"]
mod common;
use laepca::synthetic::*;
use laepca::*;
use nalgebra::DMatrix;

fn report(
    name: &str,
    x: &DMatrix<f64>,
    k: usize,
    solvers: &[Solver],
    backend: Backend,
    f32_: bool,
) {
    let c = common::centred_gram(x);
    let (_, vecs) = common::reference_eigen(&c, k);
    for &s in solvers {
        let b = LaePca::new(k).solver(s).backend(backend);
        let (comps, it, conv, stalled, t) = if f32_ {
            let f = b.fit(&x.map(|v| v as f32)).unwrap();
            (
                common::columns(&f.components),
                f.iterations,
                f.converged,
                f.stalled,
                f.timings.total,
            )
        } else {
            let f = b.fit(x).unwrap();
            (
                common::columns(&f.components),
                f.iterations,
                f.converged,
                f.stalled,
                f.timings.total,
            )
        };
        let ang = common::largest_principal_angle(&vecs, &comps);
        let err: f64 = (0..k)
            .map(|i| {
                let (a, b) = (comps.column(i), vecs.column(i));
                (a - b).norm().min((a + b).norm())
            })
            .sum();
        println!("{name:10} {:4} {:4} {:12} iters {it:6} conv {conv} stalled {stalled} angle {ang:.1e} paper-err {err:.1e} time {t:.1?}", backend.name(), if f32_ {"f32"} else {"f64"}, s.name());
    }
}

fn main() {
    let gpu = std::env::args().any(|a| a == "--gpu");
    let paper_variants = std::env::args().any(|a| a == "--paper-variants");
    let x = common::paper_problem();
    let m = 1024;
    let k = 32;
    let sigma: Vec<f64> = (0..m)
        .map(|i| {
            if i < k {
                100.0 * 0.97f64.powi(i as i32)
            } else {
                100.0 * 0.97f64.powi(k as i32 - 1) * 0.9 * 0.995f64.powi((i - k) as i32)
            }
        })
        .collect();
    let p = prescribed_spectrum(4 * m, m, &sigma, 0.0, 3);
    for (backend, f32_) in [(Backend::Cpu, false), (Backend::Cpu, true)]
        .into_iter()
        .chain(gpu.then_some((Backend::Gpu, true)))
    {
        report("paper", &x, 2, &[Solver::Auto], backend, f32_);
        let solvers: &[Solver] = if paper_variants {
            &Solver::ALL
        } else {
            &[Solver::Auto]
        };
        report("m1024", &p.x, k, solvers, backend, f32_);
    }
}
