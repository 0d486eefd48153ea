//! The SVG plots: error curves and time against m.

use crate::args::Plan;
use crate::report::{Curve, CurvePoint, ProblemJson};
use crate::run::Ctx;
use plotters::prelude::*;
use std::path::Path;

type PlotResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Draws every plot the run has the data for into the output directory; returns the files written.
pub fn draw_all(cx: &mut Ctx, curves: &[Curve], problems: &[ProblemJson]) -> Vec<String> {
    let out = cx.args.out.clone();
    let mut plots = Vec::new();
    for problem in ["paper", "fashion-mnist"] {
        let cs: Vec<&Curve> = curves
            .iter()
            .filter(|c| c.problem.starts_with(problem))
            .collect();
        if cs.is_empty() {
            continue;
        }
        let file = format!("error_{problem}.svg");
        let title = format!(
            "{}: {} of the fit stopped after N iterations (prefix runs, same seed), CPU {}",
            cs[0].problem, cs[0].measure, cs[0].precision
        );
        match plot_curves(&out.join(&file), &title, &cs) {
            Ok(()) => plots.push(file),
            Err(e) => cx.notice(format!("plot {file} failed: {e}")),
        }
    }
    let file = "time_vs_m.svg".to_string();
    match plot_time_vs_m(&out.join(&file), problems, &cx.plan) {
        Ok(true) => plots.push(file),
        Ok(false) => {}
        Err(e) => cx.notice(format!("plot {file} failed: {e}")),
    }
    plots
}

pub fn log_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite() && *v > 0.0) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (1e-3, 1.0);
    }
    (lo / 1.5, hi * 1.5)
}

pub fn plot_curves(path: &Path, title: &str, curves: &[&Curve]) -> PlotResult<()> {
    let root = SVGBackend::new(path, (1400, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 16))?;
    let (left, right) = root.split_horizontally(700);
    let floor = 1e-16;
    let err = |p: &CurvePoint| p.error.max(floor);
    let (ylo, yhi) = log_range(curves.iter().flat_map(|c| c.points.iter().map(err)));
    for (area, by_time) in [(left, false), (right, true)] {
        let xs = |p: &CurvePoint| {
            if by_time {
                p.loop_s.max(1e-7)
            } else {
                p.iterations.max(1) as f64
            }
        };
        let (xlo, xhi) = log_range(curves.iter().flat_map(|c| c.points.iter().map(xs)));
        let mut chart = ChartBuilder::on(&area)
            .caption(
                if by_time {
                    "error against loop time (s)"
                } else {
                    "error against iterations"
                },
                ("sans-serif", 15),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((xlo..xhi).log_scale(), (ylo..yhi).log_scale())?;
        chart
            .configure_mesh()
            .x_desc(if by_time {
                "loop time of the prefix fit (s)"
            } else {
                "iterations"
            })
            .y_desc("error")
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .x_label_formatter(&|v| {
                if by_time {
                    format!("{v:.0e}")
                } else {
                    format!("{v:.0}")
                }
            })
            .draw()?;
        for (i, c) in curves.iter().enumerate() {
            let pts: Vec<(f64, f64)> = c.points.iter().map(|p| (xs(p), err(p))).collect();
            let color = Palette99::pick(i).to_rgba();
            draw_line(&mut chart, pts, c.solver.clone(), color, 2, false)?;
        }
        draw_legend(&mut chart, SeriesLabelPosition::LowerLeft)?;
    }
    root.present()?;
    Ok(())
}

/// Total time against m on the size sweep, one panel per gap, a line per row.
pub fn plot_time_vs_m(path: &Path, problems: &[ProblemJson], plan: &Plan) -> PlotResult<bool> {
    let sweep: Vec<&ProblemJson> = problems
        .iter()
        .filter(|p| p.family == "size-sweep")
        .collect();
    if sweep.len() < 2 {
        return Ok(false);
    }
    let root = SVGBackend::new(path, (1400, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!(
            "total time of a fit (median) against m: n = 4m, k = {}, f32 data (C in f64 for the eigensolvers)",
            plan.size_k
        ),
        ("sans-serif", 16),
    )?;
    let areas = root.split_evenly((1, plan.gaps.len().max(1)));
    let (mlo, mhi) = log_range(sweep.iter().map(|p| p.m as f64));
    let (tlo, thi) = log_range(sweep.iter().flat_map(|p| {
        p.rows
            .iter()
            .filter(|r| r.status == "ok")
            .map(|r| r.times_s.total)
    }));
    let mut names: Vec<String> = Vec::new();
    for p in &sweep {
        for r in &p.rows {
            if !names.contains(&r.name) {
                names.push(r.name.clone());
            }
        }
    }
    for (area, (gname, g)) in areas.iter().zip(&plan.gaps) {
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("{gname} gap (σ_(k+1)/σ_k = {g})"),
                ("sans-serif", 15),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((mlo..mhi).log_scale(), (tlo..thi).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("m (features)")
            .y_desc("total time (s)")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .draw()?;
        for name in &names {
            let pts: Vec<(f64, f64)> = sweep
                .iter()
                .filter(|p| p.gap_name.as_deref() == Some(gname.as_str()))
                .filter_map(|p| {
                    p.rows
                        .iter()
                        .find(|r| &r.name == name && r.status == "ok")
                        .map(|r| (p.m as f64, r.times_s.total))
                })
                .collect();
            if pts.is_empty() {
                continue;
            }
            // A colour per solver (the same on the CPU and the GPU); GPU rows thick with triangles,
            // the eigensolvers black and grey, the reference LOBPCG dark red.
            let solver = name.split_once(' ').map_or("", |s| s.1);
            let gpu = name.starts_with("gpu ");
            let color = match name.as_str() {
                "faer eigh" => BLACK.to_rgba(),
                "nalgebra eigh" => RGBColor(130, 130, 130).to_rgba(),
                "lobpcg f64" => RGBColor(160, 40, 40).to_rgba(),
                _ => Palette99::pick(plan.solvers.iter().position(|s| s == solver).unwrap_or(0))
                    .to_rgba(),
            };
            let width = if name.starts_with("cpu ") { 1 } else { 3 };
            draw_line(&mut chart, pts, name.clone(), color, width, gpu)?;
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    }
    root.present()?;
    Ok(true)
}

type LogChart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<LogCoord<f64>, LogCoord<f64>>>;

/// A labelled line through `pts` with a marker at each point: circles, or triangles (the GPU rows).
fn draw_line(
    chart: &mut LogChart,
    pts: Vec<(f64, f64)>,
    label: String,
    color: RGBAColor,
    width: u32,
    triangles: bool,
) -> PlotResult<()> {
    let style = color.stroke_width(width);
    chart
        .draw_series(LineSeries::new(pts.clone(), style))?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    if triangles {
        chart.draw_series(PointSeries::of_element(
            pts,
            5,
            color.filled(),
            &|c, s, st| EmptyElement::at(c) + TriangleMarker::new((0, 0), s, st),
        ))?;
    } else {
        chart.draw_series(PointSeries::of_element(
            pts,
            3,
            color.filled(),
            &|c, s, st| EmptyElement::at(c) + Circle::new((0, 0), s, st),
        ))?;
    }
    Ok(())
}

/// The legend box of the labelled lines.
fn draw_legend<'a, 'b: 'a>(
    chart: &mut LogChart<'a, 'b>,
    position: SeriesLabelPosition,
) -> PlotResult<()> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(position)
        .draw()?;
    Ok(())
}
