//! The markdown report: the summary in the issues' shape with wsduplex's ratios to
//! uWebSockets and raw TCP, the targets of issues 18 and 3, every figure, notes.

use super::*;
use std::fmt::Write as _;

pub(super) fn markdown(meta: &Value, end: &Value, table: &Table, svg_name: &str) -> String {
    let mut out = String::new();
    let rev = str_at(meta, "/rev");
    let runs = meta.get("runs").and_then(Value::as_u64).unwrap_or(0);
    let _ = writeln!(out, "# wsduplex side-by-side benchmark\n");
    let _ = writeln!(
        out,
        "wsduplex `{rev}`{} · {} · {} · {} cores ({}) · Linux {} · {} · load average at \
         the start: {}\n",
        if meta.get("dirty").and_then(Value::as_bool) == Some(true) {
            " (with uncommitted changes)"
        } else {
            ""
        },
        str_at(meta, "/date"),
        str_at(meta, "/cpu"),
        meta.get("cores").and_then(Value::as_u64).unwrap_or(0),
        format_args!(
            "server on core {}, load generator on core {}",
            str_at(meta, "/server_cpu"),
            str_at(meta, "/load_cpu")
        ),
        str_at(meta, "/kernel"),
        str_at(meta, "/rustc"),
        str_at(meta, "/loadavg"),
    );
    let _ = writeln!(
        out,
        "Medians of {runs} run{} per server{}, servers interleaved; {} warm-up and {} \
         measured per run (D: {} connections held {}). Reproduce with `{}`.\n",
        if runs == 1 { "" } else { "s" },
        if meta.get("quick").and_then(Value::as_bool) == Some(true) {
            " (**quick run: indicative only**)"
        } else {
            ""
        },
        str_at(meta, "/warmup"),
        str_at(meta, "/duration"),
        str_at(meta, "/idle_connections"),
        str_at(meta, "/idle_hold"),
        str_at(meta, "/command"),
    );

    // The summary, in the shape, with wsduplex's ratios to the leader and the ceiling.
    let servers = present(table);
    let _ = write!(out, "| scenario |");
    for s in &servers {
        let _ = write!(out, " {} |", display_name(meta, s.key));
    }
    let _ = write!(out, " wsduplex ÷ uWebSockets | wsduplex ÷ raw TCP |\n|---|");
    for _ in 0..servers.len() + 2 {
        let _ = write!(out, "---|");
    }
    out.push('\n');
    let (mut any_load_bound, mut any_disturbed) = (false, false);
    for (scenario, title) in SCENARIOS {
        // A run may leave scenarios out (`--scenarios`).
        let measured = table.keys().any(|&(m, _)| METRICS[m].scenario == scenario);
        if !measured {
            continue;
        }
        let _ = write!(out, "| {title} |");
        for s in &servers {
            let cells: Vec<String> = METRICS
                .iter()
                .enumerate()
                .filter(|(_, m)| m.scenario == scenario)
                .map(|(i, m)| match table.get(&(i, s.key)) {
                    None => "–".to_string(),
                    Some(sample) => match sample.median() {
                        None => "failed".to_string(),
                        Some(v) => {
                            let bound = m.better == Better::Higher && sample.is_load_bound();
                            any_load_bound |= bound;
                            any_disturbed |= sample.all_disturbed;
                            format!("{}{}", (m.format)(v), marks(bound, sample.all_disturbed))
                        }
                    },
                })
                .collect();
            let _ = write!(out, " {} |", cells.join("; "));
        }
        for reference in [LEADER, RAW] {
            let cells: Vec<String> = METRICS
                .iter()
                .enumerate()
                .filter(|(_, m)| m.scenario == scenario)
                .map(|(i, _)| times(ratio(table, i, SUBJECT, reference)))
                .collect();
            let _ = write!(out, " {} |", cells.join("; "));
        }
        out.push('\n');
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "A ratio divides wsduplex's median by the reference's; above 1 is better for \
         msgs/s, MB/s and handshakes/s, worse for CPU, latency and memory.\n"
    );
    if any_load_bound {
        let _ = writeln!(
            out,
            "† In most runs the load generator's own core was over {:.0}% busy: the server \
             may be faster than this figure shows.\n",
            LOAD_BOUND * 100.0
        );
    }
    if any_disturbed {
        let _ = writeln!(
            out,
            "‡ Every run of this figure was disturbed (neither the server nor the load \
             generator used {:.0}% of its core): the machine's other work set the pace.\n",
            UNDISTURBED * 100.0
        );
    }
    let _ = writeln!(out, "![chart]({svg_name})\n");

    leader_targets(&mut out, table);
    targets(&mut out, table);
    detail(&mut out, meta, table);

    let _ = writeln!(out, "\n## Notes\n");
    let _ = writeln!(
        out,
        "- Ratios divide the median by the reference's median; for CPU, latency and memory \
         lower is better, so there a ratio above 1 means worse.\n\
         - \"raw TCP ceiling\" is `raw-tcp-echo`, the cheapest echo the load generator \
         accepts (a minimal frame echo, see bench/README.md); it is not measured in D.\n\
         - Server CPU is user + system time of the server process over the measured window \
         (from /proc), divided by the messages or handshakes completed in it.\n\
         - \"busy\" is the median share of its core the server and the load generator used in \
         the measured window. In a throughput run (A and F msgs/s, B, E handshakes/s) one \
         of them should be near 100%; a run where neither reached {:.0}% is \"disturbed\" \
         (the machine's other work set the pace) and left out of that figure's median and \
         range, unless every run was. The CPU per message or handshake keeps every run: it is the \
         steadier figure on a shared machine.",
        UNDISTURBED * 100.0
    );
    if let Some(secs) = end.get("secs").and_then(Value::as_f64) {
        let _ = writeln!(
            out,
            "- The whole run took {:.0} min {:.0} s.",
            (secs / 60.0).floor(),
            secs % 60.0
        );
    }
    out
}

/// Issue 18's targets for wsduplex, against uWebSockets in this run: ratios of medians, never
/// absolute times. A throughput whose every run was disturbed checks nothing.
fn leader_targets(out: &mut String, table: &Table) {
    let m = |i: usize, s: &str| {
        let sample = table.get(&(i, s))?;
        (!sample.all_disturbed).then(|| sample.median())?
    };
    let vs = |i: usize, reference: &str| Some(m(i, SUBJECT)? / m(i, reference)?);
    let mut rows: Vec<(&str, String, Option<bool>)> = Vec::new();
    let (uws, raw) = (vs(1, LEADER), vs(1, RAW));
    rows.push((
        "A server CPU per message ≤ uWebSockets' and ≤ 1.05× raw TCP",
        format!("{} uWebSockets; {} raw TCP", times(uws), times(raw)),
        uws.zip(raw).map(|(u, r)| u <= 1.0 && r <= 1.05),
    ));
    let (uws, raw) = (vs(8, LEADER), vs(8, RAW));
    rows.push((
        "F (10,000 connections) server CPU per message ≤ uWebSockets' and ≤ 1.05× raw TCP",
        format!("{} uWebSockets; {} raw TCP", times(uws), times(raw)),
        uws.zip(raw).map(|(u, r)| u <= 1.0 && r <= 1.05),
    ));
    let b = vs(2, LEADER);
    rows.push((
        "B MB/s ahead of uWebSockets (> 1×)",
        times(b),
        b.map(|r| r > 1.0),
    ));
    let d = vs(4, LEADER);
    rows.push((
        "D memory per idle connection ≤ uWebSockets'",
        times(d),
        d.map(|r| r <= 1.0),
    ));
    let e = vs(6, LEADER);
    rows.push((
        "E server CPU per handshake ≤ uWebSockets'",
        times(e),
        e.map(|r| r <= 1.0),
    ));
    let _ = writeln!(
        out,
        "## Issue 18's targets for wsduplex (against uWebSockets)\n"
    );
    let _ = writeln!(
        out,
        "| target | wsduplex ÷ reference | met |\n|---|---|---|"
    );
    for (target, value, met) in rows {
        let met = match met {
            Some(true) => "yes",
            Some(false) => "no",
            None => "– (no undisturbed figure, or uWebSockets not in this run)",
        };
        let _ = writeln!(out, "| {target} | {value} | {met} |");
    }
    out.push('\n');
}

/// Issue 3's targets for wsduplex, checked against this run. A throughput whose every run
/// was disturbed checks nothing.
fn targets(out: &mut String, table: &Table) {
    let m = |i: usize, s: &str| {
        let sample = table.get(&(i, s))?;
        (!sample.all_disturbed).then(|| sample.median())?
    };
    let ratio = |i: usize| Some(m(i, SUBJECT)? / m(i, RAW)?);
    let mut rows: Vec<(&str, String, Option<bool>)> = Vec::new();
    let (rate, cpu) = (ratio(0), ratio(1));
    rows.push((
        "A at the raw-TCP ceiling (≥ 0.95× its msgs/s), server CPU per message ≤ 1.05× raw TCP",
        format!("{} msgs/s; {} CPU", times(rate), times(cpu)),
        rate.zip(cpu).map(|(r, c)| r >= 0.95 && c <= 1.05),
    ));
    let b = ratio(2);
    rows.push(("B ≥ 0.95× raw TCP", times(b), b.map(|r| r >= 0.95)));
    let c = m(3, SUBJECT).zip(m(3, RAW)).map(|(w, r)| w - r);
    rows.push((
        "C p50 within 2 µs of raw TCP",
        c.map_or("–".into(), |d| format!("{d:+.1} µs")),
        c.map(|d| d <= 2.0),
    ));
    let d = m(4, SUBJECT);
    rows.push((
        "D ≤ 1 KiB per idle connection",
        d.map_or("–".into(), bytes),
        d.map(|v| v <= 1024.0),
    ));
    let e = m(6, SUBJECT);
    rows.push((
        "E ≤ 18 µs server CPU per handshake",
        e.map_or("–".into(), nanos),
        e.map(|v| v <= 18_000.0),
    ));
    let _ = writeln!(out, "## Issue 3's targets for wsduplex\n");
    let _ = writeln!(out, "| target | wsduplex | met |\n|---|---|---|");
    for (target, value, met) in rows {
        let met = match met {
            Some(true) => "yes",
            Some(false) => "no",
            None => "– (no undisturbed figure)",
        };
        let _ = writeln!(out, "| {target} | {value} | {met} |");
    }
    out.push('\n');
}

fn detail(out: &mut String, meta: &Value, table: &Table) {
    let _ = writeln!(out, "## Every figure\n");
    let _ = writeln!(
        out,
        "| scenario · figure | server | median | min–max | runs | ÷ best peer | ÷ raw TCP | \
         busy: server, load |\n|---|---|---|---|---|---|---|---|"
    );
    for (i, metric) in METRICS.iter().enumerate() {
        let best = best_peer(table, i);
        let raw = median(table, i, RAW);
        for s in &SERVERS {
            let Some(sample) = table.get(&(i, s.key)) else {
                continue;
            };
            let f = metric.format;
            let med = sample.median();
            let range = match (sample.min(), sample.max()) {
                (Some(lo), Some(hi)) => format!("{} – {}", f(lo), f(hi)),
                _ => "–".to_string(),
            };
            let mut runs = sample.values.len().to_string();
            if sample.disturbed > 0 {
                let _ = write!(runs, " (+{} disturbed)", sample.disturbed);
            }
            if sample.failed > 0 {
                let _ = write!(runs, " (+{} failed)", sample.failed);
            }
            let vs = |reference: Option<f64>| times(med.zip(reference).map(|(v, r)| v / r));
            let percent =
                |v: &[f64]| median_of(v).map_or("–".into(), |b| format!("{:.0}%", b * 100.0));
            let bound = metric.better == Better::Higher && sample.is_load_bound();
            let _ = writeln!(
                out,
                "| {} {} | {} | {}{} | {} | {} | {} | {} | {}, {} |",
                metric.scenario,
                metric.name,
                display_name(meta, s.key),
                med.map_or("failed".into(), f),
                marks(bound, sample.all_disturbed),
                range,
                runs,
                vs(best.map(|b| b.1)),
                vs(raw),
                percent(&sample.server_busy),
                percent(&sample.load_busy),
            );
        }
    }
}
