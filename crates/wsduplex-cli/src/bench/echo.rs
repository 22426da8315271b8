//! `bench echo`: N connections, each keeping D messages in flight; throughput and latency.
//! The connections themselves live in [`super::pipeline`].

use super::conn::{self, Endpoint};
use super::pipeline::{Pipeline, Shape};
use super::report::{self, Latency, Outcome, Tally};
use super::{measure_and_join, parse_duration, rate, rate_line, Common, Fleet, Link, Ready};
use crate::http2_flag::When;
use anyhow::bail;
use serde::Serialize;
use std::cell::{Cell, RefCell};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use wsduplex::client::{Http2, Http2Pool};
use wsduplex::{ClientConfig, ClientStream};

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
    /// Open the WebSockets over HTTP/2 (RFC 8441): `always` (the default; h2c with prior
    /// knowledge for ws://) or `auto` (wss://: if the server chooses h2 in ALPN). Each load
    /// thread's connections share HTTP/2 connections (see --http2-streams). Implies
    /// --via-socket.
    #[arg(long, value_name = "WHEN", num_args = 0..=1, require_equals = true, default_missing_value = "always", value_enum)]
    http2: Option<When>,
    /// With --http2: WebSockets per HTTP/2 connection [default: all of a load thread's
    /// WebSockets on one connection, up to the server's SETTINGS_MAX_CONCURRENT_STREAMS].
    #[arg(long, value_name = "N", requires = "http2")]
    http2_streams: Option<usize>,
    /// Drive each connection with wsduplex's own `WebSocket` (as --http2 must) instead of
    /// the hand-written frame pipeline: to compare HTTP/1.1 and HTTP/2 with one client.
    #[arg(long)]
    via_socket: bool,
}

/// Connections a thread opens at once (more would only overflow the server's backlog).
const OPENING: usize = 64;
/// How long connections may take to drain their echoes once the window has ended.
const GRACE: Duration = Duration::from_secs(5);

struct Plan {
    endpoint: Endpoint,
    connections: usize,
    shape: Shape,
    /// `--via-socket` or `--http2`: the client settings (each thread gets its own pool).
    socket: Option<SocketPlan>,
}

struct SocketPlan {
    url: String,
    config: ClientConfig,
    streams_per_connection: Option<usize>,
    size: usize,
    in_flight: usize,
    binary: bool,
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
    #[serde(flatten)]
    outcome: Outcome,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.connections == 0 || args.in_flight == 0 {
        bail!("--connections and --in-flight must be at least 1");
    }
    if args.http2_streams == Some(0) {
        bail!("--http2-streams must be at least 1");
    }
    let via_socket = args.via_socket || args.http2.is_some();
    let mut endpoint = args.common.endpoint()?;
    if !via_socket {
        endpoint = endpoint.plain_only("echo")?;
    }
    let socket = via_socket.then(|| {
        let mut config = ClientConfig::default();
        // Like the pipeline: no compression, no proxy from the environment.
        config.deflate = None;
        config.proxy = wsduplex::ProxySetting::None;
        if let Some(options) = endpoint.tls_options() {
            config.tls = options.clone();
        }
        config.http2 = args.http2.map_or(Http2::Never, Http2::from);
        SocketPlan {
            url: args.common.url.clone(),
            config,
            streams_per_connection: args.http2_streams,
            size: args.size,
            in_flight: args.in_flight,
            binary: args.binary,
        }
    });
    let probe = args.common.probe()?;
    let threads = args.common.threads(args.connections);
    let plan = Arc::new(Plan {
        endpoint,
        connections: args.connections,
        shape: Shape::new(args.size, args.in_flight, args.binary, run_key()),
        socket,
    });
    let fleet = Fleet::start(threads, move |i, link| {
        worker(plan.clone(), i, threads, link)
    })?;
    let all_open = |ready: Ready| {
        if ready.failed > 0 {
            bail!(
                "{} of {} connections failed to open: {}",
                ready.failed,
                args.connections,
                ready.first_error.unwrap_or_default()
            );
        }
        Ok(())
    };
    let (window, stats) = measure_and_join(
        fleet,
        args.warmup,
        Some(args.duration),
        probe.as_ref(),
        args.common.quiet,
        rate_line("echo", "msg/s"),
        all_open,
    )?;
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
        outcome: Outcome::new(&stats, &window, probe.as_ref(), threads),
    };
    report::print_measured(args.common.json, &r, &r.outcome, || human(&r));
    Ok(verdict(&r))
}

fn human(r: &Report) -> String {
    let measured = report::measured(r.threads, r.secs, r.warmup_secs);
    let mut out = format!(
        "echo {}: {} connections × {} in flight, {} B {}, {measured}\n",
        r.url,
        r.connections,
        r.in_flight,
        r.size,
        if r.binary { "binary" } else { "text" },
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
    out += &r.outcome.human(10, "message");
    out += &format!(
        "  checked   every echo: {} mismatches, {} errors\n",
        r.mismatches, r.outcome.errors
    );
    out
}

fn verdict(r: &Report) -> ExitCode {
    let first = r.outcome.first_error.as_deref().unwrap_or("?");
    super::verdict(&[
        (r.mismatches > 0)
            .then(|| format!("{} echoes did not match the message sent", r.mismatches)),
        (r.outcome.errors > 0)
            .then(|| format!("{} connections failed; first: {first}", r.outcome.errors)),
        (r.messages == 0).then(|| "no echo arrived in the measured window".to_string()),
    ])
}

/// A mask key for this run.
fn run_key() -> [u8; 4] {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH);
    conn::mask_key(now.map_or(0, |d| d.as_nanos() as u64))
}

async fn worker(plan: Arc<Plan>, index: usize, threads: usize, link: Link) -> Tally {
    if let Some(socket) = &plan.socket {
        return socket_worker(socket, &plan, index, threads, link).await;
    }
    let stats = Rc::new(RefCell::new(Tally::new()));
    let ids = (index..plan.connections).step_by(threads);
    let start = Rc::new(StartLine::new(ids.len()));
    let late = link
        .connections(ids, OPENING, GRACE, &stats, |id, opening| {
            let (plan, stats, start) = (plan.clone(), stats.clone(), start.clone());
            let (control, counter) = (link.control.clone(), link.counter.clone());
            async move {
                let opened = opening.open(plan.endpoint.open(None)).await;
                start.arrive().await;
                let Some((stream, leftover)) = opened else {
                    return Ok(());
                };
                let ClientStream::Plain(stream) = stream else {
                    unreachable!("the endpoint is plain_only")
                };
                Pipeline::new(&plan.shape, id as u64)
                    .run(stream, leftover, &control, &counter, &stats)
                    .await
            }
        })
        .await;
    finish(&stats, late)
}

/// [`worker`] with `--via-socket` or `--http2`: each connection a library `WebSocket`,
/// the thread's connections sharing one HTTP/2 pool.
async fn socket_worker(
    socket: &SocketPlan,
    plan: &Plan,
    index: usize,
    threads: usize,
    link: Link,
) -> Tally {
    let stats = Rc::new(RefCell::new(Tally::new()));
    let mut config = socket.config.clone();
    config.http2_pool = match socket.streams_per_connection {
        Some(n) => Http2Pool::with_streams_per_connection(n),
        None => Http2Pool::new(),
    };
    let config = Rc::new(config);
    let ids = (index..plan.connections).step_by(threads);
    let start = Rc::new(StartLine::new(ids.len()));
    let late = link
        .connections(ids, OPENING, GRACE, &stats, |id, opening| {
            let (config, stats, start) = (config.clone(), stats.clone(), start.clone());
            let (control, counter) = (link.control.clone(), link.counter.clone());
            let url = socket.url.clone();
            let (size, depth, binary) = (socket.size, socket.in_flight, socket.binary);
            async move {
                let connect = async { Ok(wsduplex::connect_with(url, &config).await?.0) };
                let opened = opening.open(connect).await;
                start.arrive().await;
                let Some(ws) = opened else {
                    return Ok(());
                };
                super::socket_echo::run(
                    ws, id as u64, size, depth, binary, &control, &counter, &stats,
                )
                .await
            }
        })
        .await;
    finish(&stats, late)
}

/// Where a thread's connections wait for each other: they start sending together, once every
/// one of them has opened or failed to. Otherwise, with thousands of connections on one load
/// thread, those already open keep it busy echoing while the rest wait for their turn to
/// open: 10,000 connections took 20 s to open that way, against 3 s for `bench idle`.
struct StartLine {
    left: Cell<usize>,
    go: watch::Sender<bool>,
}

impl StartLine {
    fn new(connections: usize) -> Self {
        Self {
            left: Cell::new(connections),
            go: watch::Sender::new(connections == 0),
        }
    }

    /// Counts one connection as arrived, and waits for the others.
    async fn arrive(&self) {
        let left = self.left.get().saturating_sub(1);
        self.left.set(left);
        if left == 0 {
            self.go.send_replace(true);
        }
        // The sender lives in `self`, so this ends only when the line opens.
        let _ = self.go.subscribe().wait_for(|go| *go).await;
    }
}

/// The thread's tally, with the connections still waiting `late` after the end counted as
/// errors.
fn finish(stats: &RefCell<Tally>, late: usize) -> Tally {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    fn poll_once(f: std::pin::Pin<&mut impl Future<Output = ()>>) -> Poll<()> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn connections_start_once_the_last_one_arrives() {
        let line = StartLine::new(3);
        let (mut a, mut b) = (pin!(line.arrive()), pin!(line.arrive()));
        assert!(poll_once(a.as_mut()).is_pending());
        assert!(poll_once(b.as_mut()).is_pending());
        // The last arrival (a connection that opened, or one that failed) does not wait...
        assert!(poll_once(pin!(line.arrive())).is_ready());
        // ...and lets the others go.
        assert!(poll_once(a.as_mut()).is_ready());
        assert!(poll_once(b.as_mut()).is_ready());
    }
}
