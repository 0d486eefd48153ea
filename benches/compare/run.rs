//! The rows of one problem: laepca's solvers on both engines, the dense eigensolvers, the error curves.

use crate::adapter::AdapterJson;
use crate::args::{Args, Plan};
use crate::common;
use crate::measure::{accuracy, c_products_per_iter, measure, median, Phases};
use crate::problems::{Case, Data, Problem, Reference};
use crate::report::{Curve, CurvePoint, ProblemJson, Row};
use crate::table::emit_row;
use crate::table::{table_header, table_rule};
use laepca::{Backend, GpuDevice, GramStats, LaePca, Solver};
use nalgebra::DMatrix;
use std::collections::HashMap;
use std::time::Instant;

// The run

pub struct Ctx {
    pub args: Args,
    pub plan: Plan,
    pub adapter: Option<AdapterJson>,
    /// The open device of the GPU rows.
    pub device: Option<GpuDevice>,
    pub solvers: Vec<Solver>,
    pub notices: Vec<String>,
    /// (family, gap, row name) → (m, seconds of one run) at the last size, for the size sweep's skips.
    pub last_time: HashMap<(String, String, String), (usize, f64)>,
    pub md: String,
}

impl Ctx {
    pub fn notice(&mut self, s: String) {
        println!("note: {s}");
        self.notices.push(s);
    }

    /// Whether the size sweep should skip `row` at size m, from its time at the last size.
    pub fn predicted_skip(&self, p: &Problem, row: &str) -> Option<String> {
        if p.family != "size-sweep" {
            return None;
        }
        let gap = p.gap.as_ref().map_or(String::new(), |g| g.0.clone());
        let (m0, t0) = self
            .last_time
            .get(&(p.family.to_string(), gap, row.to_string()))?;
        let predicted = t0 * (p.m as f64 / *m0 as f64).powi(3);
        (predicted > self.plan.budget_s).then(|| {
            format!(
                "predicted {predicted:.0} s (from {t0:.2} s at m = {m0}, scaled by m^3) > budget {} s",
                self.plan.budget_s
            )
        })
    }

    pub fn record_time(&mut self, p: &Problem, row: &Row) {
        if row.status == "ok" {
            let gap = p.gap.as_ref().map_or(String::new(), |g| g.0.clone());
            self.last_time.insert(
                (p.family.to_string(), gap, row.name.clone()),
                (p.m, row.times_s.total),
            );
        }
    }
}

/// Runs every row of one problem, prints them, and draws the error curves where asked.
pub fn run_problem(cx: &mut Ctx, case: &Case) -> (ProblemJson, Vec<Curve>) {
    let (p, data, r) = (&case.problem, &case.data, &case.reference);
    let (n, m, k) = (p.n, p.m, p.k);
    let gram_flops = (m * m) as f64 * n as f64;
    let title = format!(
        "{} (n = {n}, m = {m}, k = {k}, {}): {}",
        p.name,
        data.precision(),
        p.note
    );
    println!("\n== {title}");
    println!("{}", table_header(false));
    cx.md.push_str(&format!(
        "## {}\n\n{}; reference: {}.\n\n",
        p.name, title, r.how
    ));
    cx.md.push_str(&table_header(true));
    cx.md.push('\n');
    cx.md.push_str(&table_rule());
    cx.md.push('\n');

    let mut rows: Vec<Row> = Vec::new();
    let peak = cx.adapter.as_ref().and_then(|a| a.peak_gflops);
    let gpu_bw = cx.adapter.as_ref().and_then(|a| a.bandwidth_gbs);
    let gpu_ok = cx.adapter.is_some() && cx.args.gpu;
    let solvers = cx.solvers.clone();

    for backend in [Backend::Cpu, Backend::Gpu] {
        for &solver in &solvers {
            let is_gpu = backend == Backend::Gpu;
            let name = format!("{} {}", backend.name(), solver.name());
            let precision = if is_gpu { "f32" } else { data.precision() };
            let row = Row::empty(&name, "laepca", backend.name(), solver.name(), precision);
            let row = if is_gpu && !gpu_ok {
                continue;
            } else if is_gpu && m > cx.plan.gpu_max_m {
                row.skipped(format!("m > {} for this adapter", cx.plan.gpu_max_m))
            } else if is_gpu && k > cx.plan.gpu_max_k {
                row.skipped(format!("k > {} for this adapter", cx.plan.gpu_max_k))
            } else if let Some(why) = cx.predicted_skip(p, &name) {
                row.skipped(why)
            } else {
                let max_iter = if is_gpu {
                    p.max_iter.min(cx.plan.gpu_max_iter)
                } else {
                    p.max_iter
                };
                let mut b = p.builder(solver).backend(backend).max_iter(max_iter);
                if let (true, Some(d)) = (is_gpu, &cx.device) {
                    b = b.device(d.clone());
                }
                let res = measure(cx.plan.runs, cx.plan.slow_s, || {
                    let o = data.fit(&b, n, m).map_err(|e| e.to_string())?;
                    let ph = Phases::of(&o.timings);
                    Ok((o, ph))
                });
                let mut row = row;
                match res {
                    Err(e) => {
                        row.status = "error".into();
                        row.note = e;
                    }
                    Ok((o, ph, runs)) => {
                        row.runs = runs;
                        row.times_s = ph;
                        row.iterations = Some(o.iterations);
                        row.max_iter = Some(max_iter);
                        row.converged = Some(o.converged);
                        row.stalled = Some(o.stalled);
                        row.lambda = Some(o.lambda);
                        row.alpha = o.alpha.is_finite().then_some(o.alpha);
                        row.submissions = is_gpu.then_some(o.submissions);
                        row.readbacks = is_gpu.then_some(o.readbacks);
                        if o.solver != solver {
                            row.note = format!("ran {}", o.solver.name());
                        }
                        if ph.gram > 0.0 {
                            row.gram_gflops = Some(gram_flops / ph.gram / 1e9);
                            if is_gpu {
                                row.gram_peak_pct =
                                    peak.map(|pk| 100.0 * gram_flops / ph.gram / 1e9 / pk);
                            }
                        }
                        if o.iterations > 0 && ph.iterate > 0.0 {
                            let per = ph.iterate / o.iterations as f64;
                            row.iter_us = Some(per * 1e6);
                            let c_bytes = if is_gpu {
                                let mp = m.div_ceil(4) * 4;
                                4.0 * (mp * mp) as f64
                            } else {
                                data.bytes_per_value() * (m * m) as f64
                            };
                            if let Some(products) = c_products_per_iter(o.solver, m, k) {
                                let bytes = products * c_bytes;
                                row.bytes_per_iter = Some(bytes);
                                row.achieved_gbs = Some(bytes / per / 1e9);
                                let bw = if is_gpu {
                                    gpu_bw
                                } else {
                                    cx.args.cpu_bandwidth_gbs
                                };
                                if let Some(bw) = bw {
                                    row.bandwidth_pct = Some(100.0 * bytes / per / 1e9 / bw);
                                    row.iter_over_c_read = Some(per / (c_bytes / (bw * 1e9)));
                                }
                            }
                        }
                        row.accuracy = Some(accuracy(&o.directions, &o.sigma, &o.evr, r));
                        row.singular_values = o.sigma;
                        row.explained_variance_ratio = o.evr;
                    }
                }
                row
            };
            let mut row = row;
            if is_gpu && row.status == "ok" {
                if let Some(c) = rows
                    .iter()
                    .find(|c| c.backend == "cpu" && c.solver == row.solver && c.status == "ok")
                {
                    row.gpu_cpu_total = Some(row.times_s.total / c.times_s.total);
                    if let (Some(g), Some(cu)) = (row.iter_us, c.iter_us) {
                        row.gpu_cpu_iter = Some(g / cu);
                    }
                }
            }
            cx.record_time(p, &row);
            emit_row(cx, &row);
            rows.push(row);
        }
    }

    let eigen_skips: Vec<Option<String>> = ["faer eigh", "nalgebra eigh"]
        .iter()
        .map(|name| cx.predicted_skip(p, name))
        .collect();
    if cx.args.eigen && eigen_skips.iter().all(|s| s.is_some()) {
        for (which, why) in ["faer", "nalgebra"].iter().zip(&eigen_skips) {
            let name = format!("{which} eigh");
            let row = Row::empty(&name, which, "cpu", "eigh", "f64")
                .skipped(why.clone().unwrap_or_default());
            emit_row(cx, &row);
            rows.push(row);
        }
    } else if cx.args.eigen {
        // The Gram matrix as laepca's CPU path forms it (data precision), timed once per problem.
        let gram = measure(cx.plan.runs, cx.plan.slow_s, || {
            let t = Instant::now();
            let s = data.gram(m);
            let secs = t.elapsed().as_secs_f64();
            Ok((
                s,
                Phases {
                    gram: secs,
                    total: secs,
                    ..Phases::default()
                },
            ))
        })
        .expect("the Gram matrix");
        let (stats, gram_ph, _) = gram;
        for (which, skip) in ["faer", "nalgebra"].into_iter().zip(eigen_skips) {
            let name = format!("{which} eigh");
            let row = Row::empty(&name, which, "cpu", "eigh", "f64");
            let row = if let Some(why) = skip {
                row.skipped(why)
            } else {
                let res = measure(cx.plan.runs, cx.plan.slow_s, || {
                    let t = Instant::now();
                    let (dirs, vals) = if which == "faer" {
                        faer_top(&stats.c, k)
                    } else {
                        nalgebra_top(&stats.c, k)
                    };
                    let eig = t.elapsed().as_secs_f64();
                    let ph = Phases {
                        gram: gram_ph.gram,
                        iterate: eig,
                        total: gram_ph.gram + eig,
                        ..Phases::default()
                    };
                    Ok(((dirs, vals), ph))
                });
                let mut row = row;
                match res {
                    Err(e) => {
                        row.status = "error".into();
                        row.note = e;
                    }
                    Ok(((dirs, vals), ph, runs)) => {
                        row.runs = runs;
                        row.times_s = ph;
                        row.gram_gflops = Some(gram_flops / gram_ph.gram / 1e9);
                        row.note = format!(
                            "C formed in {} (as laepca's CPU path), eigensolver in f64",
                            data.precision()
                        );
                        let trace = stats.c.trace();
                        let sigma: Vec<f64> = vals.iter().map(|v| v.max(0.0).sqrt()).collect();
                        let evr: Vec<f64> = vals.iter().map(|v| v / trace).collect();
                        row.accuracy = Some(accuracy(&dirs, &sigma, &evr, r));
                        row.singular_values = sigma;
                        row.explained_variance_ratio = evr;
                    }
                }
                row
            };
            cx.record_time(p, &row);
            emit_row(cx, &row);
            rows.push(row);
        }
    }
    cx.md.push('\n');

    let mut curves = Vec::new();
    if p.curves {
        let stats = data.gram(m);
        for &solver in &solvers {
            let t = Instant::now();
            let b = p.builder(solver).backend(Backend::Cpu);
            let last = rows.iter().find(|row| {
                row.backend == "cpu" && row.solver == solver.name() && row.status == "ok"
            });
            match error_curve(data, &b, &stats, p.max_iter, r, last) {
                Ok(points) => {
                    println!(
                        "   error curve {:<13} {:>3} points up to {:>6} iterations ({:.1} s)",
                        solver.name(),
                        points.len(),
                        points.last().map_or(0, |q| q.iterations),
                        t.elapsed().as_secs_f64()
                    );
                    curves.push(Curve {
                        problem: p.name.clone(),
                        solver: solver.name().into(),
                        backend: "cpu".into(),
                        precision: data.precision().into(),
                        measure: "Σᵢ min‖uᵢ ± ûᵢ‖ (the paper's error)".into(),
                        points,
                    });
                }
                Err(e) => cx.notice(format!(
                    "{}: error curve of {} failed: {e}",
                    p.name,
                    solver.name()
                )),
            }
        }
    }

    let pj = ProblemJson {
        name: p.name.clone(),
        family: p.family.into(),
        n,
        m,
        k,
        gap: p.gap.as_ref().map(|g| g.1),
        gap_name: p.gap.as_ref().map(|g| g.0.clone()),
        precision: data.precision().into(),
        lambda: p.lambda,
        alpha: p.alpha,
        tol: p.tol,
        max_iter: p.max_iter,
        reference: r.how.clone(),
        reference_singular_values: r.sigma.clone(),
        reference_explained_variance_ratio: r.evr.clone(),
        gram_flops,
        note: p.note.clone(),
        rows,
    };
    (pj, curves)
}

/// The error of the fits stopped after 1, 2, 4, … iterations (each a prefix of the same run: same seed,
/// same λ and α), up to the iteration where the full run stops; each fit starts from the same C. The
/// last point is the benchmark row of the full run when there is one (its median loop time).
pub fn error_curve(
    data: &Data,
    b: &LaePca,
    stats: &GramStats,
    max_iter: usize,
    r: &Reference,
    full: Option<&Row>,
) -> Result<Vec<CurvePoint>, String> {
    let mut points = Vec::new();
    let mut cap = 1usize;
    let last = full.and_then(|row| Some((row.iterations?, row.accuracy?, row.times_s.iterate)));
    loop {
        if let Some((iterations, acc, loop_s)) = last {
            if cap >= iterations {
                points.push(CurvePoint {
                    iterations,
                    loop_s,
                    error: acc.direction_err,
                    angle: acc.angle,
                });
                break;
            }
        }
        let fit = || {
            data.fit_gram(&b.clone().max_iter(cap.min(max_iter)), stats)
                .map_err(|e| e.to_string())
        };
        let o = fit()?;
        // Fast fits are timed as the median of three (like the rows), so the points line up.
        let mut loop_s = vec![o.timings.iterate.as_secs_f64()];
        if loop_s[0] < 0.05 {
            for _ in 0..2 {
                loop_s.push(fit()?.timings.iterate.as_secs_f64());
            }
        }
        let acc = accuracy(&o.directions, &o.sigma, &o.evr, r);
        points.push(CurvePoint {
            iterations: o.iterations,
            loop_s: median(&loop_s),
            error: acc.direction_err,
            angle: acc.angle,
        });
        // Stopped before the cap (converged or stalled), or at max_iter: the run's end.
        if o.iterations < cap || cap >= max_iter {
            break;
        }
        cap *= 2;
    }
    Ok(points)
}

pub fn faer_top(c: &DMatrix<f64>, k: usize) -> (DMatrix<f64>, Vec<f64>) {
    let m = c.nrows();
    let a = faer::Mat::<f64>::from_fn(m, m, |i, j| c[(i, j)]);
    let eig = a
        .self_adjoint_eigen(faer::Side::Lower)
        .expect("faer's eigendecomposition");
    let (s, u) = (eig.S().column_vector(), eig.U());
    // Ascending order: the top k are the last k.
    let vals = (0..k).map(|j| s[m - 1 - j]).collect();
    let dirs = DMatrix::from_fn(m, k, |i, j| u[(i, m - 1 - j)]);
    (dirs, vals)
}

pub fn nalgebra_top(c: &DMatrix<f64>, k: usize) -> (DMatrix<f64>, Vec<f64>) {
    let (vals, vecs) = common::reference_eigen(c, k);
    (vecs, vals)
}
