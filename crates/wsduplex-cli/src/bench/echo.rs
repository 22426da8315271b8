//! `bench echo`: N connections, each keeping D messages in flight; throughput and latency.
//! The connections themselves live in [`super::pipeline`].

use super::conn::{self, Endpoint};
use super::pipeline::{Pipeline, Shape};
use super::report::{self, Latency, LoadUsage, Progress, ServerUsage, Tally};
use super::{control_runtime, measure, parse_duration, rate, Common, Fleet, Link};
use anyhow::bail;
use serde::Serialize;
use std::cell::RefCell;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    /// Connections.
    #[arg(long, short = 'c', default_value_t = 100)]
    connections: usize,
    /// Messages in flight on each connection.
    #[arg(long, short = 'd', default_value_t = 8)]
    in_flight: usize,
    /// Payload size in bytes.
    #[arg(long, short = 's', default_value_t = 32)]
    size: usize,
    /// Send binary messages (the default is text).
    #[arg(long)]
    binary: bool,
    /// Length of the measured window (5s, 500ms, 1m).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    /// Load before the measured window, not recorded.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
}

/// Connections a thread opens at once (more would only overflow the server's backlog).
const OPENING: usize = 64;
/// How long connections may take to drain their echoes once the window has ended.
const GRACE: Duration = Duration::from_secs(5);

struct Plan {
    endpoint: Endpoint,
    connections: usize,
    shape: Shape,
}

#[derive(Serialize)]
struct Report {
    mode: &'static str,
    url: String,
    threads: usize,
    connections: usize,
    in_flight: usize,
    size: usize,
    binary: bool,
    warmup_secs: f64,
    secs: f64,
    messages: u64,
    messages_per_sec: f64,
    /// Echoed payload bytes per second, in millions.
    mb_per_sec: f64,
    latency: Option<Latency>,
    mismatches: u64,
    errors: u64,
    first_error: Option<String>,
    interrupted: bool,
    server: Option<ServerUsage>,
    /// This generator's own CPU.
    load: Option<LoadUsage>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.connections == 0 || args.in_flight == 0 {
        bail!("--connections and --in-flight must be at least 1");
    }
    let endpoint = Endpoint::resolve(&args.common.url)?;
    let probe = args.common.probe()?;
    let threads = args.common.threads(args.connections);
    let plan = Arc::new(Plan {
        endpoint,
        connections: args.connections,
        shape: Shape::new(args.size, args.in_flight, args.binary, run_key()),
    });
    let mut progress = Progress::new(args.common.quiet);
    let mut fleet = Fleet::start(threads, move |i, link| {
        worker(plan.clone(), i, threads, link)
    })?;
    let window = control_runtime()?.block_on(async {
        let ready = fleet.ready().await;
        if ready.failed > 0 {
            bail!(
                "{} of {} connections failed to open: {}",
                ready.failed,
                args.connections,
                ready.first_error.unwrap_or_default()
            );
        }
        let mut seen = 0;
        let status = |fleet: &Fleet<Tally>, label: &str, elapsed: Duration, dt: Duration| {
            let total = fleet.total();
            let line = format!(
                "echo {label} {:.1} s: {} msg/s",
                elapsed.as_secs_f64(),
                report::thousands(rate(total - seen, dt) as u64)
            );
            seen = total;
            line
        };
        let duration = Some(args.duration);
        measure(
            &mut fleet,
            args.warmup,
            duration,
            probe.as_ref(),
            &mut progress,
            status,
        )
        .await
    });
    let results = fleet.join()?;
    let window = window?;
    let mut stats = Tally::new();
    for s in results {
        stats.merge(s);
    }
    let server = ServerUsage::new(
        probe.as_ref(),
        window.server_cpu,
        window.server_rss_kib,
        stats.count,
    );
    let r = Report {
        mode: "echo",
        url: args.common.url.clone(),
        threads,
        connections: args.connections,
        in_flight: args.in_flight,
        size: args.size,
        binary: args.binary,
        warmup_secs: args.warmup.as_secs_f64(),
        secs: window.elapsed.as_secs_f64(),
        messages: stats.count,
        messages_per_sec: rate(stats.count, window.elapsed),
        mb_per_sec: rate(stats.count * args.size as u64, window.elapsed) / 1e6,
        latency: report::latency(&stats.latency),
        mismatches: stats.mismatches,
        errors: stats.errors,
        first_error: stats.first_error.clone(),
        interrupted: window.interrupted,
        server,
        load: LoadUsage::new(window.load_cpu, window.elapsed, threads, stats.count),
    };
    report::print(args.common.json, &r, || human(&r));
    if let Some(load) = &r.load {
        load.warn_if_saturated();
    }
    Ok(verdict(&r))
}

fn human(r: &Report) -> String {
    let mut out = format!(
        "echo {}: {} connections × {} in flight, {} B {}, {} thread{}, {:.2} s measured after {:.1} s warm-up\n",
        r.url,
        r.connections,
        r.in_flight,
        r.size,
        if r.binary { "binary" } else { "text" },
        r.threads,
        if r.threads == 1 { "" } else { "s" },
        r.secs,
        r.warmup_secs,
    );
    out += &format!(
        "  messages  {} ({} msg/s, {:.1} MB/s)\n",
        report::thousands(r.messages),
        report::thousands(r.messages_per_sec.round() as u64),
        r.mb_per_sec
    );
    if let Some(l) = &r.latency {
        out += &format!("  latency   {}\n", l.human());
    }
    if let Some(s) = &r.server {
        out += &format!("  server    {}\n", s.human("message"));
    }
    if let Some(l) = &r.load {
        out += &format!("  load      {}\n", l.human("message"));
    }
    out += &format!(
        "  checked   every echo: {} mismatches, {} errors\n",
        r.mismatches, r.errors
    );
    out
}

fn verdict(r: &Report) -> ExitCode {
    let first = r.first_error.as_deref().unwrap_or("?");
    super::verdict(&[
        (r.mismatches > 0)
            .then(|| format!("{} echoes did not match the message sent", r.mismatches)),
        (r.errors > 0).then(|| format!("{} connections failed; first: {first}", r.errors)),
        (r.messages == 0).then(|| "no echo arrived in the measured window".to_string()),
    ])
}

/// A mask key for this run.
fn run_key() -> [u8; 4] {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH);
    conn::mask_key(now.map_or(0, |d| d.as_nanos() as u64))
}

async fn worker(plan: Arc<Plan>, index: usize, threads: usize, link: Link) -> Tally {
    let stats = Rc::new(RefCell::new(Tally::new()));
    let ids = (index..plan.connections).step_by(threads);
    let late = link
        .connections(ids, OPENING, GRACE, &stats, |id, opening| {
            let (plan, stats) = (plan.clone(), stats.clone());
            let (control, counter) = (link.control.clone(), link.counter.clone());
            async move {
                let Some((stream, leftover)) = opening.open(plan.endpoint.open(None)).await else {
                    return Ok(());
                };
                Pipeline::new(&plan.shape, id as u64)
                    .run(stream, leftover, &control, &counter, &stats)
                    .await
            }
        })
        .await;
    if late > 0 {
        let mut s = stats.borrow_mut();
        s.errors += late as u64;
        s.first_error.get_or_insert(format!(
            "{late} connections still waited for echoes {} s after the end",
            GRACE.as_secs()
        ));
    }
    stats.replace(Tally::new())
}
