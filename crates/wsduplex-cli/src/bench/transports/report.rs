//! The report of `bench transports`: JSON, the markdown table, the SVG chart (plotters).

use super::{Args, Measurement};
use crate::bench::report::Latency;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Serialize;
use std::path::Path;

/// One step of a step-up: its rate, its p99, and why it is the limit (`None`: kept up).
#[derive(Serialize, Clone, Debug)]
pub(crate) struct Step {
    pub(crate) rate: u32,
    pub(crate) p99_ms: Option<f64>,
    pub(crate) why: Option<String>,
}

#[derive(Serialize, Debug)]
pub(crate) struct Row {
    transport: &'static str,
    published: u64,
    deliveries: u64,
    /// Bytes the subscribers received per delivered message (server to client).
    bytes_in_per_message: f64,
    /// Bytes the subscribers sent per delivered message (client to server).
    bytes_out_per_message: f64,
    /// HTTP requests per delivered message (each subscriber's opening request counts).
    requests_per_message: f64,
    latency: Option<Latency>,
    server_cpu_us_per_message: Option<f64>,
    /// The publisher's bytes per message posted, sent and received.
    publisher_bytes_out: f64,
    publisher_bytes_in: f64,
    publisher_requests: u64,
    /// The highest step rate kept up with (the measured run's rate if no step was).
    sustained_rate: u32,
    /// Whether the step-up ended below --max-rate.
    limited: bool,
    steps: Vec<Step>,
}

#[derive(Serialize, Debug)]
pub(crate) struct Report {
    mode: &'static str,
    subscribers: u32,
    rate: u32,
    duration_secs: f64,
    max_rate: u32,
    step_secs: f64,
    threads: usize,
    cores: usize,
    server: String,
    rows: Vec<Row>,
    failures: Vec<String>,
}

impl Report {
    pub(crate) fn new(
        args: &Args,
        threads: usize,
        measurements: &[Measurement],
        failures: &[String],
    ) -> Self {
        let rows = measurements
            .iter()
            .map(|m| {
                let (out, inn) = m.publisher_bytes();
                let kept: Vec<&Step> = m.steps.iter().filter(|s| s.why.is_none()).collect();
                Row {
                    transport: m.transport.name(),
                    published: m.published(),
                    deliveries: m.deliveries(),
                    bytes_in_per_message: m.bytes_in(),
                    bytes_out_per_message: m.bytes_out(),
                    requests_per_message: m.requests(),
                    latency: m.latency(),
                    server_cpu_us_per_message: m.server_cpu_us(),
                    publisher_bytes_out: out,
                    publisher_bytes_in: inn,
                    publisher_requests: m.publisher_requests(),
                    sustained_rate: kept.last().map_or(args.rate, |s| s.rate),
                    limited: m.steps.iter().any(|s| s.why.is_some()),
                    steps: m.steps.clone(),
                }
            })
            .collect();
        Self {
            mode: "transports",
            subscribers: args.subscribers,
            rate: args.rate,
            duration_secs: args.duration.as_secs_f64(),
            max_rate: args.max_rate,
            step_secs: args.step_duration.as_secs_f64(),
            threads,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            server: match &args.url {
                Some(u) => u.clone(),
                None => "wsduplex serve, started for each transport".into(),
            },
            rows,
            failures: failures.to_vec(),
        }
    }

    /// The table; `full` adds the run's settings and what the columns mean (the file).
    pub(crate) fn markdown(&self, full: bool) -> String {
        let mut out = String::new();
        if full {
            out += "# `wsduplex bench transports`\n\n";
            out += &format!(
                "{} subscribers in one room, one publisher posting {} messages/s for {:.0} s per \
                 transport; step-up to {} msg/s, {:.0} s a step. {} cores, {} load threads; \
                 server: {}.\n\n",
                self.subscribers,
                self.rate,
                self.duration_secs,
                self.max_rate,
                self.step_secs,
                self.cores,
                self.threads,
                self.server
            );
        }
        out += "| transport | bytes in / msg | bytes out / msg | requests / msg | latency p50 | latency p99 | server CPU / msg | highest rate kept up |\n";
        out += "|---|---:|---:|---:|---:|---:|---:|---|\n";
        for r in &self.rows {
            let (p50, p99) = r.latency.as_ref().map_or(("-".into(), "-".into()), |l| {
                (duration(l.p50_us), duration(l.p99_us))
            });
            let cpu = r
                .server_cpu_us_per_message
                .map_or("-".into(), |us| format!("{us:.1} µs"));
            out += &format!(
                "| {} | {:.0} | {:.1} | {:.3} | {p50} | {p99} | {cpu} | {} |\n",
                r.transport,
                r.bytes_in_per_message,
                r.bytes_out_per_message,
                r.requests_per_message,
                sustained(r, self.max_rate),
            );
        }
        if let Some(r) = self.rows.first() {
            out += &format!(
                "\nThe publisher (the same for every transport): {:.0} bytes sent and {:.0} \
                 received per message posted, one `POST` each. Deliveries per transport: {}.\n",
                r.publisher_bytes_out,
                r.publisher_bytes_in,
                self.rows
                    .iter()
                    .map(|r| format!("{} {}", r.transport, r.deliveries))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if full {
            out += "\nSteps (rate: p99, or why it is the limit):\n\n";
            for r in &self.rows {
                let steps: Vec<String> = r
                    .steps
                    .iter()
                    .map(|s| match (&s.why, s.p99_ms) {
                        (None, Some(p)) => format!("{}: {p:.1} ms", s.rate),
                        (Some(why), _) => format!("{}: **{why}**", s.rate),
                        (None, None) => format!("{}: ?", s.rate),
                    })
                    .collect();
                out += &format!("- {}: {}\n", r.transport, steps.join("; "));
            }
        }
        for f in &self.failures {
            out += &format!("\nFAILED: {f}\n");
        }
        out
    }
}

fn sustained(r: &Row, max_rate: u32) -> String {
    if r.steps.is_empty() {
        return format!("{} msg/s (no step-up)", r.sustained_rate);
    }
    match r.steps.iter().find(|s| s.why.is_some()) {
        Some(s) => format!("{} msg/s (at {}: {})", r.sustained_rate, s.rate, short(s)),
        None => format!("≥ {max_rate} msg/s (the ceiling)"),
    }
}

/// Why a step is the limit, in a table cell (the steps' list has it whole).
fn short(s: &Step) -> String {
    let why = s.why.as_deref().unwrap_or_default();
    let known = [
        (
            "unknown_session",
            "a poller's session ended: its queue overflowed",
        ),
        (" 4008", "a subscriber was closed as too slow (4008)"),
        (
            "ended the event stream",
            "a stream ended: its queue overflowed",
        ),
        (
            "messages in time",
            "messages still undelivered after the drain",
        ),
    ];
    if why.starts_with("p99") || why.starts_with("the publisher") {
        return why.to_string();
    }
    match known.iter().find(|(pattern, _)| why.contains(pattern)) {
        Some((_, said)) => said.to_string(),
        None => why.chars().take(60).collect::<String>().replace('|', "/"),
    }
}

fn duration(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

const COLOURS: [RGBColor; 5] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x17, 0xbe, 0xcf),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0xd6, 0x27, 0x28),
];

/// Six panels, a bar per transport in each: bytes each way, requests, latency (log
/// scale, p50 and p99), server CPU, and the highest rate kept up with.
pub(crate) fn chart(path: &Path, r: &Report) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (1200, 720)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "Same hub, same room: {} subscribers, {} msg/s, one transport at a time",
        r.subscribers, r.rate
    );
    let root = root.titled(&title, ("sans-serif", 22))?;
    let panels = root.split_evenly((2, 3));
    let names: Vec<&str> = r.rows.iter().map(|r| r.transport).collect();
    let values = |f: &dyn Fn(&Row) -> Option<f64>| r.rows.iter().map(f).collect::<Vec<_>>();
    bars(
        &panels[0],
        "bytes received per message (lower is better)",
        &names,
        &values(&|r| Some(r.bytes_in_per_message)),
        &|_, v| format!("{v:.0}"),
    )?;
    bars(
        &panels[1],
        "bytes sent per message (lower is better)",
        &names,
        &values(&|r| Some(r.bytes_out_per_message)),
        &|_, v| format!("{v:.1}"),
    )?;
    bars(
        &panels[2],
        "HTTP requests per message (lower is better)",
        &names,
        &values(&|r| Some(r.requests_per_message)),
        &|_, v| format!("{v:.3}"),
    )?;
    latency_bars(&panels[3], &names, r)?;
    bars(
        &panels[4],
        "server CPU per message, µs (lower is better)",
        &names,
        &values(&|r| r.server_cpu_us_per_message),
        &|_, v| format!("{v:.1}"),
    )?;
    bars(
        &panels[5],
        "highest rate kept up with, msg/s (higher is better)",
        &names,
        &values(&|r| Some(f64::from(r.sustained_rate))),
        // Not limited: it kept up with the highest rate asked, and may do more.
        &|i, v| match r.rows[i].limited {
            true => format!("{v:.0}"),
            false => format!("≥ {v:.0}"),
        },
    )?;
    root.present()?;
    Ok(())
}

fn bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    names: &[&str],
    values: &[Option<f64>],
    labels: &dyn Fn(usize, f64) -> String,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let top = values.iter().flatten().fold(0.0f64, |a, &b| a.max(b));
    let top = if top > 0.0 { top * 1.2 } else { 1.0 };
    let n = names.len().max(1) as f64;
    let mut ctx = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(28)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..n, 0f64..top)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    ctx.configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(5)
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (i, v) in values.iter().enumerate() {
        let Some(v) = *v else { continue };
        let x = i as f64;
        let colour = COLOURS[i % COLOURS.len()];
        ctx.draw_series([Rectangle::new(
            [(x + 0.15, 0.0), (x + 0.85, v)],
            colour.filled(),
        )])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let label = ("sans-serif", 12)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        ctx.draw_series([Text::new(labels(i, v), (x + 0.5, v + top * 0.01), label)])
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    names_under(area, &ctx, names, 0.0)
}

/// The transports' names under the axis, centred under their bars.
fn names_under<DB: DrawingBackend, Y: plotters::coord::ranged1d::Ranged<ValueType = f64>>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    ctx: &ChartContext<'_, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    names: &[&str],
    y: f64,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let label = ("sans-serif", 13)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Top));
    for (i, name) in names.iter().enumerate() {
        let (x, y) = ctx.backend_coord(&(i as f64 + 0.5, y));
        let (ox, oy) = area.get_base_pixel();
        area.draw(&Text::new(
            name.to_string(),
            (x - ox, y - oy + 6),
            label.clone(),
        ))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}

/// p50 and p99 side by side, on a log scale (WebSocket's milliseconds and polling's
/// second in one panel).
fn latency_bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    names: &[&str],
    r: &Report,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let ms: Vec<Option<(f64, f64)>> = r
        .rows
        .iter()
        .map(|r| {
            r.latency
                .as_ref()
                .map(|l| (l.p50_us / 1000.0, l.p99_us / 1000.0))
        })
        .collect();
    let all = ms.iter().flatten().flat_map(|(a, b)| [*a, *b]);
    let (lo, hi) = all.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if hi > 0.0 {
        (10f64.powf((lo.max(1e-3)).log10().floor()), hi * 3.0)
    } else {
        (0.01, 1.0)
    };
    let n = names.len().max(1) as f64;
    let mut ctx = ChartBuilder::on(area)
        .caption(
            "latency, ms, log scale: p50 (left), p99 (right)",
            ("sans-serif", 15),
        )
        .margin(10)
        .x_label_area_size(28)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..n, (lo..hi).log_scale())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    ctx.configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(6)
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (i, v) in ms.iter().enumerate() {
        let Some((p50, p99)) = *v else { continue };
        let x = i as f64;
        let colour = COLOURS[i % COLOURS.len()];
        let label = ("sans-serif", 11)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        for (x0, value, style) in [
            (x + 0.1, p50, colour.mix(0.55).filled()),
            (x + 0.5, p99, colour.filled()),
        ] {
            ctx.draw_series([Rectangle::new([(x0, lo), (x0 + 0.4, value)], style)])
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            ctx.draw_series([Text::new(
                short_ms(value),
                (x0 + 0.2, value * 1.15),
                label.clone(),
            )])
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    names_under(area, &ctx, names, lo)
}

fn short_ms(ms: f64) -> String {
    if ms >= 10.0 {
        format!("{ms:.0}")
    } else if ms >= 1.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}
