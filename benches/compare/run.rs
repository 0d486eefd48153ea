//! The rows of one problem: laepca's solvers on both engines, the dense eigensolvers, the error curves.

use crate::adapter::AdapterJson;
use crate::args::{Args, Plan};
use crate::common;
use crate::measure::{
    accuracy, angle, c_products_per_iter, measure, measure_gram, median, sgemm_gflops, Phases,
    SgemmRate,
};
use crate::passes::{laepca_trajectory, lobpcg, passes_to, Lobpcg};
use crate::problems::{Case, Data, Problem, Reference};
use crate::report::{Curve, CurvePoint, ProblemJson, Row};
use crate::table::emit_row;
use crate::table::{table_header, table_rule};
use laepca::{Backend, GpuDevice, GpuPrecision, GramStats, LaePca, Solver};
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

/// What the rows of one problem share: its case, C as laepca's CPU path forms it, and the references
/// measured once per problem.
struct Shared<'a> {
    p: &'a Problem,
    data: &'a Data,
    r: &'a Reference,
    /// C (data precision, accumulated as laepca's CPU path does), for the per-pass fits, the
    /// eigensolvers, LOBPCG and the curves.
    stats: GramStats,
    /// n·m·(m+1): the flops of the Gram matrix's triangle.
    gram_flops: f64,
    /// This machine's f32 gemm XᵀX on the same n x m (GFLOP/s), and whose.
    sgemm: SgemmRate,
    /// The reference LOBPCG's trajectory, when it runs.
    lobpcg: Option<Lobpcg>,
}

/// The name of the reference LOBPCG's row.
const LOBPCG_ROW: &str = "lobpcg f64";

/// The relative-residual tolerance of the reference LOBPCG: the default solver's in f32 for f32 data; for
/// f64 data 1e-10, the floor of the reference (its basis drops directions below 1e-10 of the largest).
fn lobpcg_tol(data: &Data) -> f64 {
    match data {
        Data::F32(_) => 1e-6,
        Data::F64(_) => 1e-10,
    }
}

/// Runs every row of one problem, prints them, and draws the error curves where asked.
pub fn run_problem(cx: &mut Ctx, case: &Case) -> (ProblemJson, Vec<Curve>) {
    let (p, data, r) = (&case.problem, &case.data, &case.reference);
    let (n, m, k) = (p.n, p.m, p.k);
    let sgemm = sgemm_gflops(data, n, m, cx.plan.runs, cx.plan.slow_s);
    let stats = data.gram(m);
    let lobpcg = (cx.args.eigen && cx.predicted_skip(p, LOBPCG_ROW).is_none())
        .then(|| lobpcg(&stats.c, k, cx.plan.lobpcg_passes, lobpcg_tol(data), r));
    let sh = Shared {
        p,
        data,
        r,
        stats,
        gram_flops: n as f64 * m as f64 * (m + 1) as f64,
        sgemm,
        lobpcg,
    };
    let title = format!(
        "{} (n = {n}, m = {m}, k = {k}, {}): {}",
        p.name,
        data.precision(),
        p.note
    );
    let legend = format!(
        "Gram GF/s: n·m·(m+1) flops (the triangle) over the gram phase, in brackets % of {} XᵀX \
         on the same {n} x {m} measured in this run ({:.1} GFLOP/s) on CPU rows, % of the FP32 \
         peak on GPU rows; passes: products of C with a block of k columns; lobpcg: passes the reference \
         LOBPCG needs for the row's angle",
        sh.sgemm.kernel, sh.sgemm.gflops
    );
    println!("\n== {title}\n   {legend}");
    println!("{}", table_header(false));
    cx.md.push_str(&format!(
        "## {}\n\n{}; reference: {}.\n\n{legend}.\n\n",
        p.name, title, r.how
    ));
    cx.md.push_str(&table_header(true));
    cx.md.push('\n');
    cx.md.push_str(&table_rule());
    cx.md.push('\n');

    let mut rows: Vec<Row> = Vec::new();
    let gpu_ok = cx.adapter.is_some() && cx.args.gpu;
    let solvers = cx.solvers.clone();
    for backend in [Backend::Cpu, Backend::Gpu] {
        if backend == Backend::Gpu && !gpu_ok {
            continue;
        }
        for &solver in &solvers {
            let mut row = laepca_row(cx, &sh, backend, solver);
            if backend == Backend::Gpu && row.status == "ok" {
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
    if cx.args.eigen {
        let dense = eigen_rows(cx, &sh, &mut rows);
        let row = lobpcg_row(&sh, dense.as_ref());
        cx.record_time(p, &row);
        emit_row(cx, &row);
        rows.push(row);
    }
    cx.md.push('\n');
    per_pass_md(cx, &rows);

    let curves = if p.curves {
        error_curves(cx, &sh, &rows)
    } else {
        Vec::new()
    };
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
        gram_flops: sh.gram_flops,
        sgemm_gflops: sh.sgemm.gflops,
        sgemm_kernel: sh.sgemm.kernel.into(),
        note: p.note.clone(),
        rows,
    };
    (pj, curves)
}

/// One laepca row: the solver's fit on one engine (median of the runs), with its rates, its accuracy and,
/// where asked, its error after each pass.
fn laepca_row(cx: &mut Ctx, sh: &Shared, backend: Backend, solver: Solver) -> Row {
    let Shared { p, data, r, .. } = *sh;
    let (n, m, k) = (p.n, p.m, p.k);
    let is_gpu = backend == Backend::Gpu;
    let name = format!("{} {}", backend.name(), solver.name());
    let precision = if is_gpu { "f32" } else { data.precision() };
    let row = Row::empty(&name, "laepca", backend.name(), solver.name(), precision);
    if is_gpu && m > cx.plan.gpu_max_m {
        return row.skipped(format!("m > {} for this adapter", cx.plan.gpu_max_m));
    } else if is_gpu && k > cx.plan.gpu_max_k {
        return row.skipped(format!("k > {} for this adapter", cx.plan.gpu_max_k));
    } else if let Some(why) = cx.predicted_skip(p, &name) {
        return row.skipped(why);
    }
    let max_iter = if is_gpu {
        p.max_iter.min(cx.plan.gpu_max_iter)
    } else {
        p.max_iter
    };
    let mut b = p.builder(solver).backend(backend).max_iter(max_iter);
    if let (true, Some(d)) = (is_gpu, &cx.device) {
        // The GPU rows measure the f32 path (the one with a GPU Gram kernel), f64 data included.
        b = b.device(d.clone()).gpu_precision(GpuPrecision::F32);
    }
    let res = measure(cx.plan.runs, cx.plan.slow_s, || {
        let o = data.fit(&b, n, m).map_err(|e| e.to_string())?;
        let ph = Phases::of(&o.timings);
        Ok((o, ph))
    });
    let mut row = row;
    let (o, ph, runs) = match res {
        Err(e) => {
            row.status = "error".into();
            row.note = e;
            return row;
        }
        Ok(v) => v,
    };
    row.runs = runs;
    row.times_s = ph;
    row.iterations = Some(o.iterations);
    row.passes = Some(o.passes);
    row.max_iter = Some(max_iter);
    row.converged = Some(o.converged);
    row.stalled = Some(o.stalled);
    row.lambda = Some(o.lambda);
    row.alpha = o.alpha;
    row.submissions = is_gpu.then_some(o.submissions);
    row.readbacks = is_gpu.then_some(o.readbacks);
    if o.solver != solver {
        row.note = format!("ran {}", o.solver.name());
    }
    if ph.gram > 0.0 {
        let rate = sh.gram_flops / ph.gram / 1e9;
        row.gram_gflops = Some(rate);
        if is_gpu {
            let peak = cx.adapter.as_ref().and_then(|a| a.peak_gflops);
            row.gram_peak_pct = peak.map(|pk| 100.0 * rate / pk);
            if ph.gram_kernels > 0.0 {
                let kernels = sh.gram_flops / ph.gram_kernels / 1e9;
                row.gram_kernel_gflops = Some(kernels);
                row.gram_kernel_peak_pct = peak.map(|pk| 100.0 * kernels / pk);
            }
        } else {
            row.gram_ref_pct = Some(100.0 * rate / sh.sgemm.gflops);
        }
    }
    if o.iterations > 0 && ph.iterate > 0.0 {
        let per = ph.iterate / o.iterations as f64;
        row.iter_us = Some(per * 1e6);
        if ph.iterate_kernels > 0.0 {
            row.iter_kernel_us = Some(ph.iterate_kernels / o.iterations as f64 * 1e6);
        }
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
                cx.adapter.as_ref().and_then(|a| a.bandwidth_gbs)
            } else {
                cx.args.cpu_bandwidth_gbs
            };
            if let Some(bw) = bw {
                row.bandwidth_pct = Some(100.0 * bytes / per / 1e9 / bw);
                row.iter_over_c_read = Some(per / (c_bytes / (bw * 1e9)));
            }
        }
    }
    let acc = accuracy(&o.directions, &o.sigma, &o.evr, r);
    row.accuracy = Some(acc);
    row.lobpcg_passes = sh
        .lobpcg
        .as_ref()
        .and_then(|l| passes_to(&l.points, acc.angle));
    row.singular_values = o.sigma;
    row.explained_variance_ratio = o.evr;
    if !is_gpu && m <= cx.plan.per_pass_max_m {
        let b = p.builder(solver).backend(Backend::Cpu);
        match laepca_trajectory(data, &b, &sh.stats, max_iter, cx.plan.per_pass_max_fits, r) {
            Ok(t) => {
                row.per_pass = t.points;
                row.per_pass_prefix = Some(t.prefix);
            }
            Err(e) => cx.notice(format!("{}: per-pass errors of {name} failed: {e}", p.name)),
        }
    }
    row
}

/// The dense eigensolver rows (faer, nalgebra) on C formed as laepca's CPU path forms it; returns
/// nalgebra's top-k eigenvectors when that row ran.
fn eigen_rows(cx: &mut Ctx, sh: &Shared, rows: &mut Vec<Row>) -> Option<DMatrix<f64>> {
    let Shared { p, data, r, .. } = *sh;
    let (m, k) = (p.m, p.k);
    let skips: Vec<Option<String>> = ["faer eigh", "nalgebra eigh"]
        .iter()
        .map(|name| cx.predicted_skip(p, name))
        .collect();
    if skips.iter().all(|s| s.is_some()) {
        for (which, why) in ["faer", "nalgebra"].iter().zip(skips) {
            let name = format!("{which} eigh");
            let row =
                Row::empty(&name, which, "cpu", "eigh", "f64").skipped(why.unwrap_or_default());
            emit_row(cx, &row);
            rows.push(row);
        }
        return None;
    }
    // The Gram matrix as laepca's CPU path forms it (data precision), timed once per problem.
    let (_, gram_s) = measure_gram(cx.plan.runs, cx.plan.slow_s, || data.gram(m));
    let c = &sh.stats.c;
    let mut dense = None;
    for (which, skip) in ["faer", "nalgebra"].into_iter().zip(skips) {
        let name = format!("{which} eigh");
        let mut row = Row::empty(&name, which, "cpu", "eigh", "f64");
        if let Some(why) = skip {
            row = row.skipped(why);
        } else {
            let res = measure(cx.plan.runs, cx.plan.slow_s, || {
                let t = Instant::now();
                let (dirs, vals) = if which == "faer" {
                    faer_top(c, k)
                } else {
                    nalgebra_top(c, k)
                };
                let eig = t.elapsed().as_secs_f64();
                let ph = Phases {
                    gram: gram_s,
                    iterate: eig,
                    total: gram_s + eig,
                    ..Phases::default()
                };
                Ok(((dirs, vals), ph))
            });
            let ((dirs, vals), ph, runs) = res.expect("an eigendecomposition cannot fail");
            row.runs = runs;
            row.times_s = ph;
            let rate = sh.gram_flops / gram_s / 1e9;
            row.gram_gflops = Some(rate);
            row.gram_ref_pct = Some(100.0 * rate / sh.sgemm.gflops);
            row.note = format!(
                "C formed in {} (as laepca's CPU path), eigensolver in f64",
                data.precision()
            );
            let (sigma, evr) = sigma_evr(c, &vals);
            row.accuracy = Some(accuracy(&dirs, &sigma, &evr, r));
            row.singular_values = sigma;
            row.explained_variance_ratio = evr;
            if which == "nalgebra" {
                dense = Some(dirs);
            }
        }
        cx.record_time(p, &row);
        emit_row(cx, &row);
        rows.push(row);
    }
    dense
}

/// σ = √λ and the explained-variance ratios λ / tr C of eigenvalues of C.
fn sigma_evr(c: &DMatrix<f64>, values: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let trace = c.trace();
    (
        values.iter().map(|v| v.max(0.0).sqrt()).collect(),
        values.iter().map(|v| v / trace).collect(),
    )
}

/// The reference LOBPCG's row: its passes to the stopping tolerance, its accuracy there, the angle after
/// each pass, and after its last pass the angle to nalgebra's eigenvectors of the same C (`dense`).
fn lobpcg_row(sh: &Shared, dense: Option<&DMatrix<f64>>) -> Row {
    let row = Row::empty(LOBPCG_ROW, "reference", "cpu", "lobpcg", "f64");
    let Some(l) = &sh.lobpcg else {
        return row.skipped("predicted over the budget".into());
    };
    let mut row = row;
    let cap = l.points.len();
    row.runs = 1;
    row.times_s = Phases {
        iterate: l.seconds,
        total: l.seconds,
        ..Phases::default()
    };
    row.passes = Some(l.stop.unwrap_or(cap));
    row.iterations = row.passes;
    row.max_iter = Some(cap);
    row.converged = Some(l.stop.is_some());
    let (sigma, evr) = sigma_evr(&sh.stats.c, &l.values);
    row.accuracy = Some(accuracy(&l.directions, &sigma, &evr, sh.r));
    row.singular_values = sigma;
    row.explained_variance_ratio = evr;
    row.per_pass = l.points.clone();
    row.angle_to_dense = dense.map(|d| angle(&l.last, d));
    row.note = format!(
        "f64 on the C of the eigensolver rows; stops at relative residual {:.0e}; time of all {cap} passes",
        lobpcg_tol(sh.data)
    );
    row
}

/// The per-pass errors as markdown lines: passes → largest principal angle.
fn per_pass_md(cx: &mut Ctx, rows: &[Row]) {
    let with: Vec<&Row> = rows.iter().filter(|r| !r.per_pass.is_empty()).collect();
    if with.is_empty() {
        return;
    }
    cx.md
        .push_str("Error after each pass over C (passes → largest principal angle):\n\n");
    for r in with {
        let points: Vec<String> = r
            .per_pass
            .iter()
            .map(|q| format!("{}→{:.1e}", q.passes, q.angle))
            .collect();
        let prefix = match r.per_pass_prefix {
            Some(true) => " (each a checked prefix of one run)",
            Some(false) => " (NOT a prefix of one run: the capped fits differ)",
            None => "",
        };
        cx.md
            .push_str(&format!("- {}{prefix}: {}\n", r.name, points.join(", ")));
    }
    cx.md.push('\n');
}

/// The error curves of every solver on the CPU (see [`error_curve`]).
fn error_curves(cx: &mut Ctx, sh: &Shared, rows: &[Row]) -> Vec<Curve> {
    let Shared { p, data, r, .. } = *sh;
    let mut curves = Vec::new();
    for solver in cx.solvers.clone() {
        let t = Instant::now();
        let b = p.builder(solver).backend(Backend::Cpu);
        let last = rows
            .iter()
            .find(|row| row.backend == "cpu" && row.solver == solver.name() && row.status == "ok");
        match error_curve(data, &b, &sh.stats, p.max_iter, r, last) {
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
    curves
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
