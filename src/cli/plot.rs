//! The SVG plots of `fit --plot`: convergence (the stopping quantity against iteration, log scale, like
//! the paper's figures) and the scree plot (explained variance ratio per component).

use plotters::prelude::*;

const SIZE: (u32, u32) = (800, 500);
const MAX_POINTS: usize = 2000;

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("cannot draw the plot: {e:?}")
}

/// (iteration, quantity) pairs, thinned to about [`MAX_POINTS`] (the last one kept), positive only.
fn thin(history: &[f64]) -> Vec<(f64, f64)> {
    let step = history.len().div_ceil(MAX_POINTS).max(1);
    let mut pts: Vec<(f64, f64)> = history
        .iter()
        .enumerate()
        .filter(|(i, _)| i % step == 0 || *i + 1 == history.len())
        .map(|(i, &q)| ((i + 1) as f64, q))
        .filter(|&(_, q)| q > 0.0 && q.is_finite())
        .collect();
    pts.dedup_by(|a, b| a.0 == b.0);
    pts
}

/// The stopping quantity after each iteration, on a log scale, with the tolerance.
pub fn convergence_svg(history: &[f64], tol: f64, title: &str) -> Result<String, String> {
    let pts = thin(history);
    let n = history.len().max(1) as f64;
    let mut lo = tol;
    let mut hi = tol;
    for &(_, q) in &pts {
        lo = lo.min(q);
        hi = hi.max(q);
    }
    let (lo, hi) = (lo / 3.0, hi * 3.0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(75)
            .build_cartesian_2d(0f64..n, (lo..hi).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("iteration")
            .y_desc("stopping quantity")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(pts, BLUE.stroke_width(2)))
            .map_err(err)?
            .label("stopping quantity")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(
                vec![(0.0, tol), (n, tol)],
                RED.stroke_width(1),
            ))
            .map_err(err)?
            .label(format!("tol = {tol:.1e}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(1)));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// The explained variance ratio of each component and its running sum.
pub fn scree_svg(ratio: &[f64], title: &str) -> Result<String, String> {
    let k = ratio.len();
    let cumulative: Vec<f64> = ratio
        .iter()
        .scan(0.0, |s, &r| {
            *s += r;
            Some(*s)
        })
        .collect();
    let top = cumulative.last().copied().unwrap_or(1.0).clamp(0.05, 1.0) * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(65)
            .build_cartesian_2d(0.5f64..k as f64 + 0.5, 0f64..top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("component")
            .y_desc("explained variance ratio")
            .x_labels(k.clamp(2, 20))
            .x_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(err)?;
        let each: Vec<(f64, f64)> = ratio
            .iter()
            .enumerate()
            .map(|(i, &r)| ((i + 1) as f64, r))
            .collect();
        let cum: Vec<(f64, f64)> = cumulative
            .iter()
            .enumerate()
            .map(|(i, &r)| ((i + 1) as f64, r))
            .collect();
        chart
            .draw_series(LineSeries::new(each.clone(), BLUE.stroke_width(2)))
            .map_err(err)?
            .label("per component")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
        chart
            .draw_series(each.iter().map(|&p| Circle::new(p, 4, BLUE.filled())))
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(cum.clone(), GREEN.stroke_width(2)))
            .map_err(err)?
            .label("cumulative")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN.stroke_width(2)));
        chart
            .draw_series(cum.iter().map(|&p| Circle::new(p, 4, GREEN.filled())))
            .map_err(err)?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::MiddleRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_render() {
        let history: Vec<f64> = (0..5000).map(|i| 10f64.powf(-(i as f64) / 500.0)).collect();
        let svg = convergence_svg(&history, 1e-8, "t").unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("stopping quantity"));
        assert!(thin(&history).len() <= MAX_POINTS + 1);
        // Degenerate inputs still draw.
        convergence_svg(&[], 1e-6, "t").unwrap();
        convergence_svg(&[0.0, f64::NAN], 1e-6, "t").unwrap();
        let svg = scree_svg(&[0.5, 0.2, 0.1], "s").unwrap();
        assert!(svg.contains("cumulative"));
        scree_svg(&[1.0], "s").unwrap();
    }
}
