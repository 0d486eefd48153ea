//! The SVG plots of `fit --plot`: convergence (the stopping quantity against iteration, log scale, like
//! the paper's figures) and the scree plot (explained variance ratio per component).

use plotters::chart::MeshStyle;
use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
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

/// The chart of both plots: a linear x axis, a linear or logarithmic y axis, on an SVG string.
type Chart<'a, 'b, Y> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, Y>>;

/// The axes of a plot: their ranges, their descriptions and the width of the y labels' area.
struct Axes<'t, R> {
    x: std::ops::Range<f64>,
    y: R,
    x_desc: &'t str,
    y_desc: &'t str,
    y_label_area: u32,
}

/// One plot as SVG text: the caption, the axes (`mesh` sets their labels beyond the descriptions),
/// the series that `draw` adds, and the legend of the labelled ones.
fn render<R, Y>(
    title: &str,
    axes: Axes<'_, R>,
    mesh: impl FnOnce(&mut MeshStyle<'_, '_, RangedCoordf64, Y, SVGBackend<'_>>),
    draw: impl FnOnce(&mut Chart<'_, '_, Y>) -> Result<(), String>,
) -> Result<String, String>
where
    R: AsRangedCoord<CoordDescType = Y, Value = f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(axes.y_label_area)
            .build_cartesian_2d(axes.x, axes.y)
            .map_err(err)?;
        let mut style = chart.configure_mesh();
        style
            .x_desc(axes.x_desc)
            .y_desc(axes.y_desc)
            .x_label_formatter(&|v| format!("{v:.0}"));
        mesh(&mut style);
        style.draw().map_err(err)?;
        draw(&mut chart)?;
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

/// Draws `points` joined by a line of `color` and `width`, with its legend entry `label`.
fn labelled_line<Y>(
    chart: &mut Chart<'_, '_, Y>,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    width: u32,
    label: String,
) -> Result<(), String>
where
    Y: Ranged<ValueType = f64>,
{
    chart
        .draw_series(LineSeries::new(points, color.stroke_width(width)))
        .map_err(err)?
        .label(label)
        .legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(width))
        });
    Ok(())
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
    let axes = Axes {
        x: 0f64..n,
        y: (lo..hi).log_scale(),
        x_desc: "iteration",
        y_desc: "stopping quantity",
        y_label_area: 75,
    };
    render(
        title,
        axes,
        |mesh| {
            mesh.y_label_formatter(&|v| format!("{v:.0e}"));
        },
        |chart| {
            labelled_line(chart, pts, BLUE, 2, "stopping quantity".to_string())?;
            labelled_line(
                chart,
                vec![(0.0, tol), (n, tol)],
                RED,
                1,
                format!("tol = {tol:.1e}"),
            )
        },
    )
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
    let axes = Axes {
        x: 0.5f64..k as f64 + 0.5,
        y: 0f64..top,
        x_desc: "component",
        y_desc: "explained variance ratio",
        y_label_area: 65,
    };
    render(
        title,
        axes,
        |mesh| {
            mesh.x_labels(k.clamp(2, 20));
        },
        |chart| {
            for (values, color, label) in [
                (ratio, BLUE, "per component"),
                (&cumulative, GREEN, "cumulative"),
            ] {
                let points: Vec<(f64, f64)> = values
                    .iter()
                    .enumerate()
                    .map(|(i, &r)| ((i + 1) as f64, r))
                    .collect();
                labelled_line(chart, points.clone(), color, 2, label.to_string())?;
                chart
                    .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
                    .map_err(err)?;
            }
            Ok(())
        },
    )
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
