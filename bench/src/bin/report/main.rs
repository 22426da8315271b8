//! `report`: turns the JSON lines `bench/run.sh` collects into a markdown table and an SVG
//! chart.
//!
//! ```text
//! report RESULTS.jsonl [--md OUT.md] [--svg OUT.svg]
//! ```
//!
//! The input holds one `{"meta": …}` line (revision, machine, settings, peer versions), one
//! line per measurement (`{"scenario", "server", "run", "exit", "server_alive", "result"}`,
//! `result` being what `wsduplex bench --json` printed) and one `{"end": …}` line. By default
//! the outputs sit next to the input, with `.md` and `.svg` for its extension.
//!
//! A measurement counts only if the load generator exited 0, the server was still alive,
//! and nothing failed or mismatched; the others are reported as failed runs, never averaged.

mod chart;
mod markdown;

use anyhow::{bail, Context as _};
use chart::chart;
use markdown::markdown;
use plotters::style::RGBColor;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Servers in table order: the subject, the leader, the other peers, the ceiling.
const SERVERS: [Server; 5] = [
    Server {
        key: "wsduplex",
        peer: false,
        colour: RGBColor(0xd9, 0x5f, 0x02),
    },
    Server {
        key: "uwebsockets",
        peer: true,
        colour: RGBColor(0x1f, 0x78, 0xb4),
    },
    Server {
        key: "tokio-tungstenite",
        peer: true,
        colour: RGBColor(0x1b, 0x9e, 0x77),
    },
    Server {
        key: "fastwebsockets",
        peer: true,
        colour: RGBColor(0x75, 0x70, 0xb3),
    },
    Server {
        key: "raw-tcp",
        peer: false,
        colour: RGBColor(0x88, 0x88, 0x88),
    },
];
const RAW: &str = "raw-tcp";
const SUBJECT: &str = "wsduplex";
/// The best peer (issue 18), the one every ratio in the summary is to.
const LEADER: &str = "uwebsockets";

struct Server {
    key: &'static str,
    peer: bool,
    colour: RGBColor,
}

#[derive(Clone, Copy, PartialEq)]
enum Better {
    Higher,
    Lower,
}

/// One figure of one scenario.
struct Metric {
    scenario: &'static str,
    /// A throughput: one side (server or load generator) should use its whole core, and a
    /// run where neither came near measured the machine's other tenants instead.
    saturating: bool,
    /// Short name for the chart and the detail table.
    name: &'static str,
    better: Better,
    /// JSON pointer into the bench's result.
    pointer: &'static str,
    format: fn(f64) -> String,
}

const METRICS: [Metric; 9] = [
    Metric {
        scenario: "A",
        name: "msgs/s",
        saturating: true,
        better: Better::Higher,
        pointer: "/messages_per_sec",
        format: millions,
    },
    Metric {
        scenario: "A",
        name: "server CPU/msg",
        saturating: false,
        better: Better::Lower,
        pointer: "/server/cpu_ns_per_op",
        format: nanos,
    },
    Metric {
        scenario: "B",
        name: "MB/s",
        saturating: true,
        better: Better::Higher,
        pointer: "/mb_per_sec",
        format: whole,
    },
    Metric {
        scenario: "C",
        name: "RTT p50",
        saturating: false,
        better: Better::Lower,
        pointer: "/latency/p50_us",
        format: micros,
    },
    Metric {
        scenario: "D",
        name: "memory/conn",
        saturating: false,
        better: Better::Lower,
        pointer: "/server/bytes_per_connection",
        format: bytes,
    },
    Metric {
        scenario: "E",
        name: "handshakes/s",
        saturating: true,
        better: Better::Higher,
        pointer: "/handshakes_per_sec",
        format: thousands,
    },
    Metric {
        scenario: "E",
        name: "server CPU/handshake",
        saturating: false,
        better: Better::Lower,
        pointer: "/server/cpu_ns_per_op",
        format: nanos,
    },
    Metric {
        scenario: "F",
        name: "msgs/s",
        saturating: true,
        better: Better::Higher,
        pointer: "/messages_per_sec",
        format: millions,
    },
    Metric {
        scenario: "F",
        name: "server CPU/msg",
        saturating: false,
        better: Better::Lower,
        pointer: "/server/cpu_ns_per_op",
        format: nanos,
    },
];

/// The scenarios, as the issue states them.
const SCENARIOS: [(&str, &str); 6] = [
    (
        "A",
        "A: 100 conns × 8 in flight, 32 B text — msgs/s; server CPU per message",
    ),
    ("B", "B: 10 conns × 4 in flight, 64 KiB binary — MB/s"),
    ("C", "C: 1 conn, 1 in flight, 32 B — round trip p50"),
    (
        "D",
        "D: 10,000 idle connections — server memory per connection",
    ),
    (
        "E",
        "E: handshakes per second (50 concurrent openers); server CPU per handshake",
    ),
    (
        "F",
        "F: 10,000 conns × 1 in flight, 32 B text — msgs/s; server CPU per message",
    ),
];

/// Above this share of its core, the load generator may be what set the pace.
const LOAD_BOUND: f64 = 0.9;
/// In a throughput run where neither side used this share of its core, something else on
/// the machine took the time: the run is "disturbed".
const UNDISTURBED: f64 = 0.8;

struct Record {
    scenario: String,
    server: String,
    ok: bool,
    /// Share of its core the load generator used in the measured window.
    load_busy: Option<f64>,
    /// The same for the server.
    server_busy: Option<f64>,
    result: Value,
}

/// The runs of one (metric, server).
#[derive(Default)]
struct Sample {
    values: Vec<f64>,
    failed: usize,
    /// Disturbed runs left out of `values` (unless all were: then `values` holds them and
    /// `all_disturbed` says so).
    disturbed: usize,
    all_disturbed: bool,
    load_bound: usize,
    server_busy: Vec<f64>,
    load_busy: Vec<f64>,
}

fn median_of(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

impl Sample {
    fn median(&self) -> Option<f64> {
        median_of(&self.values)
    }

    fn min(&self) -> Option<f64> {
        self.values.iter().copied().min_by(f64::total_cmp)
    }

    fn max(&self) -> Option<f64> {
        self.values.iter().copied().max_by(f64::total_cmp)
    }

    /// Most runs had the load generator's core saturated.
    fn is_load_bound(&self) -> bool {
        !self.values.is_empty() && self.load_bound * 2 > self.values.len()
    }
}

type Table = BTreeMap<(usize, &'static str), Sample>;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut input = None;
    let (mut md, mut svg) = (None, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--md" => md = Some(PathBuf::from(args.next().context("--md needs a path")?)),
            "--svg" => svg = Some(PathBuf::from(args.next().context("--svg needs a path")?)),
            "-h" | "--help" => {
                println!("usage: report RESULTS.jsonl [--md OUT.md] [--svg OUT.svg]");
                return Ok(());
            }
            _ if input.is_none() => input = Some(PathBuf::from(arg)),
            _ => bail!("unexpected argument {arg:?} (see --help)"),
        }
    }
    let input = input.context("usage: report RESULTS.jsonl [--md OUT.md] [--svg OUT.svg]")?;
    let md = md.unwrap_or_else(|| input.with_extension("md"));
    let svg = svg.unwrap_or_else(|| input.with_extension("svg"));

    let (meta, end, records) = read(&input)?;
    let table = tabulate(&records);
    if table.values().all(|s| s.values.is_empty()) {
        bail!("{}: no successful measurement", input.display());
    }
    let svg_name = svg
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    std::fs::write(&md, markdown(&meta, &end, &table, &svg_name))
        .with_context(|| format!("cannot write {}", md.display()))?;
    chart(&svg, &meta, &table).with_context(|| format!("cannot draw {}", svg.display()))?;
    eprintln!("report: wrote {} and {}", md.display(), svg.display());
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<(Value, Value, Vec<Record>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (mut meta, mut end, mut records) = (Value::Null, Value::Null, Vec::new());
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?;
        if let Some(m) = v.get("meta") {
            meta = m.clone();
        } else if let Some(e) = v.get("end") {
            end = e.clone();
        } else {
            let field = |k: &str| {
                v.get(k)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .with_context(|| format!("{}:{}: no {k:?}", path.display(), i + 1))
            };
            let result = v.get("result").cloned().unwrap_or(Value::Null);
            let zero = |k: &str| result.get(k).and_then(Value::as_u64).unwrap_or(0) == 0;
            let ok = v.get("exit").and_then(Value::as_i64) == Some(0)
                && v.get("server_alive").and_then(Value::as_bool) != Some(false)
                && result.is_object()
                && ["errors", "mismatches", "failed", "dropped"]
                    .into_iter()
                    .all(zero);
            records.push(Record {
                scenario: field("scenario")?,
                server: field("server")?,
                ok,
                load_busy: result.pointer("/load/busy").and_then(Value::as_f64),
                server_busy: result
                    .pointer("/server/cpu_secs")
                    .and_then(Value::as_f64)
                    .zip(result.get("secs").and_then(Value::as_f64))
                    .filter(|&(_, secs)| secs > 0.0)
                    .map(|(cpu, secs)| cpu / secs),
                result,
            });
        }
    }
    if meta.is_null() {
        bail!(
            "{}: no meta line (was it written by run.sh?)",
            path.display()
        );
    }
    Ok((meta, end, records))
}

fn tabulate(records: &[Record]) -> Table {
    let mut table = Table::new();
    for (m, metric) in METRICS.iter().enumerate() {
        for server in &SERVERS {
            let mut sample = Sample::default();
            let runs: Vec<(&Record, Option<f64>)> = records
                .iter()
                .filter(|r| r.scenario == metric.scenario && r.server == server.key)
                .map(|r| (r, r.result.pointer(metric.pointer).and_then(Value::as_f64)))
                .collect();
            let good = |(r, v): &&(&Record, Option<f64>)| r.ok && v.is_some();
            let disturbed = |r: &Record| {
                metric.saturating
                    && r.server_busy.is_some_and(|b| b < UNDISTURBED)
                    && r.load_busy.is_some_and(|b| b < UNDISTURBED)
            };
            sample.failed = runs.len() - runs.iter().filter(good).count();
            sample.disturbed = runs
                .iter()
                .filter(good)
                .filter(|(r, _)| disturbed(r))
                .count();
            sample.all_disturbed =
                sample.disturbed > 0 && sample.disturbed + sample.failed == runs.len();
            for (r, v) in runs.iter().filter(good) {
                if sample.all_disturbed || !disturbed(r) {
                    sample.values.extend(*v);
                    sample.load_bound += usize::from(r.load_busy > Some(LOAD_BOUND));
                    sample.server_busy.extend(r.server_busy);
                    sample.load_busy.extend(r.load_busy);
                }
            }
            if sample.all_disturbed {
                sample.disturbed = 0;
            }
            if !sample.values.is_empty() || sample.failed > 0 {
                table.insert((m, server.key), sample);
            }
        }
    }
    table
}

fn median(table: &Table, m: usize, server: &str) -> Option<f64> {
    table.get(&(m, server)).and_then(Sample::median)
}

/// The servers this run measured, in table order (a run may leave some out: `--servers`).
fn present(table: &Table) -> Vec<&'static Server> {
    SERVERS
        .iter()
        .filter(|s| table.keys().any(|&(_, key)| key == s.key))
        .collect()
}

/// `server`'s median over `reference`'s for metric `m`.
fn ratio(table: &Table, m: usize, server: &str, reference: &str) -> Option<f64> {
    Some(median(table, m, server)? / median(table, m, reference)?)
}

/// The best peer's median for metric `m`.
fn best_peer(table: &Table, m: usize) -> Option<(&'static str, f64)> {
    let better = METRICS[m].better;
    SERVERS
        .iter()
        .filter(|s| s.peer)
        .filter_map(|s| Some((s.key, median(table, m, s.key)?)))
        .reduce(|a, b| match (better, a.1 >= b.1) {
            (Better::Higher, true) | (Better::Lower, false) => a,
            _ => b,
        })
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("?")
}

fn display_name(meta: &Value, key: &str) -> String {
    match key {
        RAW => "raw TCP ceiling".to_string(),
        SUBJECT => "wsduplex".to_string(),
        LEADER => match meta.pointer("/peers/uwebsockets").and_then(Value::as_str) {
            Some(v) if !v.is_empty() => format!("uWebSockets {v}"),
            _ => "uWebSockets".to_string(),
        },
        _ => match meta
            .pointer(&format!("/peers/{key}"))
            .and_then(Value::as_str)
        {
            Some(v) => format!("{key} {v}"),
            None => key.to_string(),
        },
    }
}

fn marks(load_bound: bool, disturbed: bool) -> &'static str {
    match (load_bound, disturbed) {
        (true, true) => " †‡",
        (true, false) => " †",
        (false, true) => " ‡",
        (false, false) => "",
    }
}

fn times(r: Option<f64>) -> String {
    r.map_or("–".into(), |r| format!("{r:.2}×"))
}

fn millions(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else {
        thousands(v)
    }
}

fn thousands(v: f64) -> String {
    if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn whole(v: f64) -> String {
    let digits = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn nanos(ns: f64) -> String {
    if ns >= 10_000.0 {
        micros(ns / 1000.0)
    } else {
        format!("{} ns", whole(ns))
    }
}

fn micros(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else if us >= 100.0 {
        format!("{us:.0} µs")
    } else {
        format!("{us:.1} µs")
    }
}

fn bytes(b: f64) -> String {
    if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_units() {
        let s = Sample {
            values: vec![3.0, 1.0, 2.0, 10.0],
            ..Sample::default()
        };
        assert_eq!(s.median(), Some(2.5));
        assert_eq!((s.min(), s.max()), (Some(1.0), Some(10.0)));
        assert_eq!(millions(1_056_000.0), "1.06 M");
        assert_eq!(nanos(937.4), "937 ns");
        assert_eq!(nanos(346_000.0), "346 µs");
        assert_eq!(nanos(23_500.0), "23.5 µs");
        assert_eq!(bytes(267.0), "267 B");
        assert_eq!(bytes(133_120.0), "130.0 KiB");
        assert_eq!(whole(4747.2), "4,747");
        assert_eq!(thousands(2_800.0), "2.8 k");
        assert_eq!(thousands(23_000.0), "23.0 k");
    }

    #[test]
    fn failed_runs_are_not_averaged() {
        let line = |server: &str, rate: f64, exit: i64| Record {
            scenario: "A".into(),
            server: server.into(),
            ok: exit == 0,
            load_busy: Some(0.5),
            server_busy: Some(0.9),
            result: serde_json::json!({
                "messages_per_sec": rate,
                "server": {"cpu_ns_per_op": 1000.0},
            }),
        };
        let records = [
            line("wsduplex", 100.0, 0),
            line("wsduplex", 1e9, 1),
            line("tokio-tungstenite", 50.0, 0),
            line("fastwebsockets", 70.0, 0),
        ];
        let table = tabulate(&records);
        let w = &table[&(0, "wsduplex")];
        assert_eq!((w.values.len(), w.failed), (1, 1));
        assert_eq!(best_peer(&table, 0), Some(("fastwebsockets", 70.0)));
    }

    /// The target checks in markdown.rs name metrics by index.
    #[test]
    fn target_indices_name_their_metrics() {
        let named = |i: usize| (METRICS[i].scenario, METRICS[i].name);
        assert_eq!(named(1), ("A", "server CPU/msg"));
        assert_eq!(named(2), ("B", "MB/s"));
        assert_eq!(named(4), ("D", "memory/conn"));
        assert_eq!(named(6), ("E", "server CPU/handshake"));
        assert_eq!(named(8), ("F", "server CPU/msg"));
        for (scenario, _) in SCENARIOS {
            assert!(METRICS.iter().any(|m| m.scenario == scenario));
        }
    }
}
