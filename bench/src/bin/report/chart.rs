//! The SVG chart (plotters): every figure of every server, relative to the raw-TCP ceiling.

use super::*;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// The chart: per figure, each server's median (bar) and min–max (whisker) relative to the
/// raw-TCP ceiling, or for D (no raw figure) to the best server; inverted where lower is
/// better, so that everywhere higher is better and the ceiling sits at 1.
pub(super) fn chart(path: &Path, meta: &Value, table: &Table) -> anyhow::Result<()> {
    struct Bar {
        group: usize,
        slot: usize,
        median: f64,
        low: f64,
        high: f64,
    }
    let servers = present(table);
    let mut bars = Vec::new();
    for (i, metric) in METRICS.iter().enumerate() {
        let reference = median(table, i, RAW).or_else(|| {
            SERVERS
                .iter()
                .filter_map(|s| median(table, i, s.key))
                .reduce(|a, b| match metric.better {
                    Better::Higher => a.max(b),
                    Better::Lower => a.min(b),
                })
        });
        let Some(reference) = reference else { continue };
        let norm = |v: f64| match metric.better {
            Better::Higher => v / reference,
            Better::Lower => reference / v.max(1e-9),
        };
        for (slot, s) in servers.iter().enumerate() {
            let Some(sample) = table.get(&(i, s.key)) else {
                continue;
            };
            let (Some(med), Some(lo), Some(hi)) = (sample.median(), sample.min(), sample.max())
            else {
                continue;
            };
            let (a, b) = (norm(lo), norm(hi));
            bars.push(Bar {
                group: i,
                slot,
                median: norm(med),
                low: a.min(b),
                high: a.max(b),
            });
        }
    }
    // Headroom above the tallest whisker for the legend.
    let top = bars.iter().map(|b| b.high).fold(1.0f64, f64::max).min(3.0) * 1.3;

    let root = SVGBackend::new(path, (1300, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let groups = METRICS.len();
    let runs = meta.get("runs").and_then(Value::as_u64).unwrap_or(0);
    let title = format!(
        "wsduplex {} vs peers: median of {runs} run{} (whiskers: min–max)",
        str_at(meta, "/rev"),
        if runs == 1 { "" } else { "s" },
    );
    let mut ctx = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..groups as f64, 0f64..top)?;
    ctx.configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_max_light_lines(1)
        .y_desc("relative to raw TCP (D: to the best); higher is better")
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .draw()?;
    // The ceiling.
    ctx.draw_series(LineSeries::new(
        [(0.0, 1.0), (groups as f64, 1.0)],
        BLACK.mix(0.4).stroke_width(1),
    ))?;
    let width = 0.8 / servers.len() as f64;
    for (s_index, server) in servers.iter().enumerate() {
        let colour = server.colour;
        ctx.draw_series(bars.iter().filter(|b| b.slot == s_index).map(|b| {
            let x0 = b.group as f64 + 0.1 + width * b.slot as f64;
            Rectangle::new(
                [(x0 + 0.01, 0.0), (x0 + width - 0.01, b.median.min(top))],
                colour.filled(),
            )
        }))?
        .label(display_name(meta, server.key))
        .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], colour.filled()));
        ctx.draw_series(bars.iter().filter(|b| b.slot == s_index).map(|b| {
            let x = b.group as f64 + 0.1 + width * (b.slot as f64 + 0.5);
            ErrorBar::new_vertical(
                x,
                b.low.min(top),
                b.median.min(top),
                b.high.min(top),
                BLACK.stroke_width(1),
                6,
            )
        }))?;
    }
    // Group names under the axis, centred (plotters places f64 labels at round numbers).
    let label = ("sans-serif", 13)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Top));
    for (g, metric) in METRICS.iter().enumerate() {
        let (x, y) = ctx.backend_coord(&(g as f64 + 0.5, 0.0));
        let name = format!("{} {}", metric.scenario, metric.name);
        root.draw(&Text::new(name, (x, y + 10), label.clone()))?;
    }
    ctx.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 13))
        .draw()?;
    root.present()?;
    Ok(())
}
