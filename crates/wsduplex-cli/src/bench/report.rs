//! Measuring the server through /proc, summarising latencies, the progress line, output.

use super::Window;
use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

/// A process (the server, or this one), read through Linux's /proc.
pub(crate) struct Probe {
    pid: u32,
    ticks_per_sec: u64,
}

impl Probe {
    pub(crate) fn new(pid: u32) -> anyhow::Result<Self> {
        let probe = Self {
            pid,
            ticks_per_sec: clock_ticks(),
        };
        probe
            .cpu()
            .with_context(|| format!("cannot read the server's /proc/{pid}/stat"))?;
        Ok(probe)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// User plus system CPU time so far, all threads.
    pub(crate) fn cpu(&self) -> anyhow::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        let ticks = parse_cpu_ticks(&stat).context("unexpected /proc/PID/stat format")?;
        Ok(Duration::from_nanos(
            ticks.saturating_mul(1_000_000_000) / self.ticks_per_sec,
        ))
    }

    /// Resident set size in KiB.
    pub(crate) fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        parse_vm_rss(&status).context("no VmRSS in /proc/PID/status")
    }
}

/// utime + stime, fields 14 and 15, counted after the parenthesised command name (which may
/// itself hold spaces and parentheses).
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..]
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `getconf CLK_TCK`, or 100 (what Linux reports on every common architecture).
fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// One thread's (and then the run's) figures.
pub(crate) struct Tally {
    /// Echoes or handshakes completed in the measured window.
    pub(crate) count: u64,
    /// Their latencies in nanoseconds.
    pub(crate) latency: Histogram<u64>,
    /// Echoes whose header or payload differed from what was sent (in any phase).
    pub(crate) mismatches: u64,
    /// Connections or openers that failed.
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
}

impl Tally {
    pub(crate) fn new() -> Self {
        Self {
            count: 0,
            latency: histogram(),
            mismatches: 0,
            errors: 0,
            first_error: None,
        }
    }

    pub(crate) fn error(&mut self, message: String) {
        self.errors += 1;
        self.first_error.get_or_insert(message);
    }

    pub(crate) fn merge(&mut self, other: Tally) {
        self.count += other.count;
        self.latency
            .add(&other.latency)
            .expect("histograms with equal bounds");
        self.mismatches += other.mismatches;
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
    }
}

impl FromIterator<Tally> for Tally {
    /// The run's figures from each thread's.
    fn from_iter<I: IntoIterator<Item = Tally>>(tallies: I) -> Self {
        let mut all = Tally::new();
        for t in tallies {
            all.merge(t);
        }
        all
    }
}

/// Latencies, in microseconds.
#[derive(Serialize, Clone, Debug)]
pub(crate) struct Latency {
    pub(crate) samples: u64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
    pub(crate) max_us: f64,
    pub(crate) mean_us: f64,
}

/// A histogram of nanoseconds from 1 ns to a minute, 3 significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

pub(crate) fn latency(h: &Histogram<u64>) -> Option<Latency> {
    let us = |ns: u64| ns as f64 / 1000.0;
    (!h.is_empty()).then(|| Latency {
        samples: h.len(),
        p50_us: us(h.value_at_quantile(0.50)),
        p99_us: us(h.value_at_quantile(0.99)),
        p999_us: us(h.value_at_quantile(0.999)),
        max_us: us(h.max()),
        mean_us: h.mean() / 1000.0,
    })
}

impl Latency {
    pub(crate) fn human(&self) -> String {
        format!(
            "p50 {}  p99 {}  p99.9 {}  max {}",
            micros(self.p50_us),
            micros(self.p99_us),
            micros(self.p999_us),
            micros(self.max_us)
        )
    }
}

fn micros(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
    }
}

/// The server's figures over the measured window.
#[derive(Serialize, Clone, Debug)]
pub(crate) struct ServerUsage {
    pub(crate) pid: u32,
    pub(crate) cpu_secs: f64,
    /// CPU time per message (echo) or per handshake (connect).
    pub(crate) cpu_ns_per_op: Option<f64>,
    pub(crate) rss_kib: u64,
}

impl ServerUsage {
    /// From the window's CPU time and end-of-window RSS, if the server was probed.
    pub(crate) fn new(
        probe: Option<&Probe>,
        cpu: Option<Duration>,
        rss_kib: Option<u64>,
        ops: u64,
    ) -> Option<Self> {
        let (probe, cpu, rss_kib) = (probe?, cpu?, rss_kib?);
        Some(Self {
            pid: probe.pid(),
            cpu_secs: cpu.as_secs_f64(),
            cpu_ns_per_op: (ops > 0).then(|| cpu.as_nanos() as f64 / ops as f64),
            rss_kib,
        })
    }

    pub(crate) fn human(&self, per: &str) -> String {
        let per_op = match self.cpu_ns_per_op {
            Some(ns) => format!("{} ns CPU per {per}", thousands(ns.round() as u64)),
            None => "no CPU figure".to_string(),
        };
        format!(
            "{per_op} ({:.2} s in all), RSS {} KiB",
            self.cpu_secs,
            thousands(self.rss_kib)
        )
    }
}

/// The load generator's own CPU over the measured window.
#[derive(Serialize, Clone, Debug)]
pub(crate) struct LoadUsage {
    pub(crate) cpu_secs: f64,
    /// CPU time per message (echo) or per handshake (connect).
    pub(crate) cpu_ns_per_op: Option<f64>,
    /// CPU time over (window × load threads): near 1, the generator may be the limit.
    pub(crate) busy: f64,
}

impl LoadUsage {
    pub(crate) fn new(
        cpu: Option<Duration>,
        elapsed: Duration,
        threads: usize,
        ops: u64,
    ) -> Option<Self> {
        let cpu = cpu?;
        Some(Self {
            cpu_secs: cpu.as_secs_f64(),
            cpu_ns_per_op: (ops > 0).then(|| cpu.as_nanos() as f64 / ops as f64),
            busy: cpu.as_secs_f64() / (elapsed.as_secs_f64() * threads as f64).max(1e-9),
        })
    }

    pub(crate) fn human(&self, per: &str) -> String {
        let per_op = match self.cpu_ns_per_op {
            Some(ns) => format!("{} ns CPU per {per}, ", thousands(ns.round() as u64)),
            None => String::new(),
        };
        format!("{per_op}{:.0}% busy", self.busy * 100.0)
    }

    /// Says so on stderr when the generator, not the server, may have set the pace.
    pub(crate) fn warn_if_saturated(&self) {
        if self.busy > 0.9 {
            eprintln!(
                "wsduplex bench: warning: the load threads were {:.0}% busy; the figures may be \
                 the generator's limit rather than the server's (add --threads or cores)",
                self.busy * 100.0
            );
        }
    }
}

/// The last fields of the echo and connect reports, the same in both: how the run went and
/// what it cost. Each report flattens it, so the JSON stays one flat object.
#[derive(Serialize)]
pub(crate) struct Outcome {
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) interrupted: bool,
    pub(crate) server: Option<ServerUsage>,
    /// This generator's own CPU.
    pub(crate) load: Option<LoadUsage>,
}

impl Outcome {
    /// The CPU figures are per operation counted in `tally` (echo or handshake).
    pub(crate) fn new(
        tally: &Tally,
        window: &Window,
        probe: Option<&Probe>,
        threads: usize,
    ) -> Self {
        Self {
            errors: tally.errors,
            first_error: tally.first_error.clone(),
            interrupted: window.interrupted,
            server: ServerUsage::new(probe, window.server_cpu, window.server_rss_kib, tally.count),
            load: LoadUsage::new(window.load_cpu, window.elapsed, threads, tally.count),
        }
    }

    /// The server and load lines of the human report, labels padded to `width` like the
    /// mode's other lines; the CPU figures are per `per` ("message", "handshake").
    pub(crate) fn human(&self, width: usize, per: &str) -> String {
        let mut out = String::new();
        if let Some(s) = &self.server {
            out += &format!("  {:<width$}{}\n", "server", s.human(per));
        }
        if let Some(l) = &self.load {
            out += &format!("  {:<width$}{}\n", "load", l.human(per));
        }
        out
    }
}

/// `4 threads, 5.00 s measured after 1.0 s warm-up`: how echo and connect end their first
/// line.
pub(crate) fn measured(threads: usize, secs: f64, warmup_secs: f64) -> String {
    format!(
        "{threads} thread{}, {secs:.2} s measured after {warmup_secs:.1} s warm-up",
        if threads == 1 { "" } else { "s" },
    )
}

/// `1234567` as `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One line on stderr, rewritten in place; silent when disabled or not on a terminal.
pub(crate) struct Progress {
    enabled: bool,
    shown: bool,
}

impl Progress {
    pub(crate) fn new(quiet: bool) -> Self {
        Self {
            enabled: !quiet && std::io::stderr().is_terminal(),
            shown: false,
        }
    }

    pub(crate) fn show(&mut self, line: &str) {
        if self.enabled {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
            self.shown = true;
        }
    }

    pub(crate) fn clear(&mut self) {
        if self.shown {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
            self.shown = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Prints `report` as one JSON line, or its human form.
pub(crate) fn print<T: Serialize>(json: bool, report: &T, human: impl FnOnce() -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string(report).expect("reports serialise")
        );
    } else {
        print!("{}", human());
    }
}

/// [`print()`] for echo and connect (`outcome` is the report's own), then a warning on stderr
/// when the generator, not the server, may have set the pace.
pub(crate) fn print_measured<T: Serialize>(
    json: bool,
    report: &T,
    outcome: &Outcome,
    human: impl FnOnce() -> String,
) {
    print(json, report, human);
    if let Some(load) = &outcome.load {
        load.warn_if_saturated();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_fields_parse() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 300 0 0 0 \
                    1234 567 0 0 20 0 4 0 12345 1000000 200 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(1234 + 567));
        let status = "Name:\tserve\nVmPeak:\t  9999 kB\nVmRSS:\t    5120 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(5120));
    }

    #[test]
    fn own_process_is_readable() {
        let me = Probe::new(std::process::id()).unwrap();
        assert!(me.rss_kib().unwrap() > 0);
    }

    #[test]
    fn shared_report_lines_keep_each_modes_columns() {
        let outcome = Outcome {
            errors: 0,
            first_error: None,
            interrupted: false,
            server: Some(ServerUsage {
                pid: 1,
                cpu_secs: 0.5,
                cpu_ns_per_op: Some(1234.0),
                rss_kib: 2048,
            }),
            load: Some(LoadUsage {
                cpu_secs: 0.25,
                cpu_ns_per_op: None,
                busy: 0.5,
            }),
        };
        // Echo's labels are 10 columns wide, connect's 11.
        assert_eq!(
            outcome.human(10, "message"),
            "  server    1,234 ns CPU per message (0.50 s in all), RSS 2,048 KiB\n  load      50% busy\n"
        );
        assert_eq!(
            outcome.human(11, "handshake"),
            "  server     1,234 ns CPU per handshake (0.50 s in all), RSS 2,048 KiB\n  load       50% busy\n"
        );
        assert_eq!(
            measured(1, 0.5, 0.0),
            "1 thread, 0.50 s measured after 0.0 s warm-up"
        );
        assert_eq!(
            measured(4, 5.0, 1.0),
            "4 threads, 5.00 s measured after 1.0 s warm-up"
        );
    }

    #[test]
    fn a_flattened_outcome_keeps_the_report_flat_and_its_nulls() {
        #[derive(Serialize)]
        struct Report {
            mode: &'static str,
            #[serde(flatten)]
            outcome: Outcome,
        }
        let r = Report {
            mode: "m",
            outcome: Outcome {
                errors: 2,
                first_error: Some("e".into()),
                interrupted: false,
                server: None,
                load: None,
            },
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"mode":"m","errors":2,"first_error":"e","interrupted":false,"server":null,"load":null}"#
        );
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
