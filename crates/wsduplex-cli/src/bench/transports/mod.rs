//! `bench transports`: the same hub, the same room and the same publisher, with the
//! subscribers on one transport at a time: WebSocket over HTTP/1.1 and over HTTP/2,
//! Server-Sent Events, long polling, and plain polling once a second. What each costs per
//! delivered message (bytes each way, requests, server CPU), how late messages arrive, and
//! the highest rate each keeps up with.
//!
//! ```text
//! per transport: start `wsduplex serve` (or use --url)
//!   N subscribers join room R ─▶ publisher POSTs message 0 (the start marker)
//!   ─▶ every subscriber has it: server CPU read, counters of each subscriber read
//!   ─▶ publisher POSTs messages 1..=M at --rate, each stamped with the shared clock
//!   ─▶ every subscriber has M (checked: ids one by one, none lost, none twice)
//!   ─▶ server CPU read; then steps at 2×, 4×, ... the rate up to --max-rate
//! ```

mod clients;
mod report;
mod tracker;
mod wire;

use super::parse_duration;
use super::report::{latency, Probe};
use anyhow::{bail, Context as _};
use clients::Hub;
use hdrhistogram::Histogram;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracker::{Measured, Shared, Tracker};
use wire::{Counts, Wire};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The transports, in turn (comma-separated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "ws,ws-h2,sse,longpoll,poll"
    )]
    transports: Vec<Transport>,
    /// Subscribers, all in one room, all on the transport measured.
    #[arg(long, short = 'n', default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    subscribers: u32,
    /// Messages the publisher posts per second.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    rate: u32,
    /// How long the publisher posts at --rate, per transport.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    duration: Duration,
    /// The step-up's ceiling: after the measured run, the rate doubles each step (up to this)
    /// until latency climbs or messages back up (0 or at most --rate: no step-up).
    #[arg(long, value_name = "RATE", default_value_t = 2560)]
    max_rate: u32,
    /// How long each step of the step-up posts.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    step_duration: Duration,
    /// A hub already running, http://HOST:PORT, for every transport (it needs --api-token;
    /// plain polling needs its --poll-timeout to be 0). Default: the bench starts a
    /// `wsduplex serve` of its own for each transport.
    #[arg(long)]
    url: Option<String>,
    /// The push API's token of --url's server.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "WSDUPLEX_API_TOKEN",
        hide_env_values = true
    )]
    api_token: Option<String>,
    /// --url's server process id, for its CPU time (from Linux's /proc).
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Threads of the subscribers and the publisher [default: one per core].
    #[arg(long)]
    threads: Option<usize>,
    /// Write the table and the chart there: DIR/transports.md and DIR/transports.svg.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// No progress lines on stderr.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    /// WebSocket over HTTP/1.1 (`GET /chat/ROOM`, an upgrade).
    Ws,
    /// WebSocket over HTTP/2 (RFC 8441, h2c with prior knowledge).
    WsH2,
    /// Server-Sent Events (`GET /sse/ROOM`).
    Sse,
    /// Long polling (`GET /poll/session/SID?cursor=K`, held until there is news).
    #[value(name = "longpoll")]
    LongPoll,
    /// Plain polling once a second (the same `GET`, answered at once).
    Poll,
}

impl Transport {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Ws => "ws",
            Self::WsH2 => "ws-h2",
            Self::Sse => "sse",
            Self::LongPoll => "longpoll",
            Self::Poll => "poll",
        }
    }
}

/// A step's p99 over this many times the measured run's is "latency climbs" ...
const LATENCY_FACTOR: f64 = 10.0;
/// ... and at least this much over it, so that the scheduling noise of a run whose p99 is
/// a fraction of a millisecond is not taken for the limit.
const LATENCY_FLOOR: Duration = Duration::from_millis(5);
/// How long subscribers may take to join, and to get the start marker.
const SETUP: Duration = Duration::from_secs(30);
/// How long after the last publish the last message may take to reach everyone.
const DRAIN: Duration = Duration::from_secs(5);

/// The hub measured: started by the bench, or given with --url.
struct Server {
    addr: SocketAddr,
    token: String,
    probe: Option<Probe>,
    child: Option<(Child, BufReader<ChildStdout>)>,
}

impl Server {
    /// `wsduplex serve` for `transport` on a free port: the push API on, no per-client
    /// limit (every subscriber comes from 127.0.0.1), and for plain polling a poll timeout
    /// of 0, so that a poll is answered at once.
    fn start(transport: Transport) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find the wsduplex binary")?;
        let token = format!("bench-{:x}", clock_seed());
        let mut command = Command::new(exe);
        command.args(["serve", "--listen", "127.0.0.1:0", "--api-token", &token]);
        command.args(["--max-connections-per-client", "0"]);
        if transport == Transport::Poll {
            command.args(["--poll-timeout", "0s"]);
        }
        let mut child = command
            .env_remove("WSDUPLEX_REDIS")
            .env_remove("WSDUPLEX_AUTH_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start wsduplex serve")?;
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("listening on http://") else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("wsduplex serve did not start (it said {:?})", line.trim());
        };
        let addr = addr.parse().context("wsduplex serve's address")?;
        let probe = Probe::new(child.id()).ok();
        Ok(Self {
            addr,
            token,
            probe,
            child: Some((child, stdout)),
        })
    }

    fn given(args: &Args, url: &str) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("--url {url}: expected http://HOST:PORT"))?;
        let host = rest.trim_end_matches('/');
        let addr = std::net::ToSocketAddrs::to_socket_addrs(host)
            .with_context(|| format!("--url {url}: cannot resolve {host}"))?
            .next()
            .with_context(|| format!("--url {url}: no address"))?;
        let token = args
            .api_token
            .clone()
            .context("--url needs --api-token (the server's push API token)")?;
        let probe = args.server_pid.map(Probe::new).transpose()?;
        Ok(Self {
            addr,
            token,
            probe,
            child: None,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some((child, _)) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn clock_seed() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| d.as_nanos() as u64) ^ u64::from(std::process::id())
}

/// What one round (a room, N subscribers, M messages at a rate) measured.
struct Round {
    published: u64,
    deliveries: u64,
    latency: Histogram<u64>,
    /// The subscribers' traffic in the window (requests: plus each one's opening).
    window: Counts,
    /// The publisher's traffic for the measured messages.
    publisher: Counts,
    server_cpu: Option<Duration>,
    /// Whether the publisher kept to its schedule (else the server held it up).
    kept_pace: bool,
    achieved_rate: f64,
}

/// One round: `n` subscribers on `transport` join a fresh room, `rate` messages a second
/// for `length`; every subscriber must get every message in order.
async fn round(
    transport: Transport,
    server: &Server,
    n: u32,
    rate: u32,
    length: Duration,
    epoch: Instant,
) -> anyhow::Result<Round> {
    let hub = Hub {
        addr: server.addr,
        room: format!(
            "bench-{}-{rate}-{:x}",
            transport.name(),
            clock_seed() & 0xffff_ffff
        ),
    };
    let total = (f64::from(rate) * length.as_secs_f64()).ceil().max(1.0) as u64;
    let shared = Shared::new(epoch, n as usize);
    let (give_up, deadline) = watch::channel(None::<tokio::time::Instant>);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (hub, shared, mut deadline) = (hub.clone(), shared.clone(), deadline.clone());
        // Plain pollers spread over the second, as unrelated clients would be.
        let phase = Duration::from_secs(1) * i / n;
        tasks.spawn(async move {
            let wire = Arc::new(Wire::default());
            let mut tracker = Tracker::new(shared.clone(), wire);
            let name = format!("s{i}");
            let ran = tokio::select! {
                r = clients::subscribe(transport, &hub, &name, phase, &mut tracker) => Some(r),
                _ = until_deadline(&mut deadline) => None,
            };
            shared.ended();
            let result = match ran {
                Some(Ok(())) => tracker.measured().context("left before the last message"),
                // It had them all, and was waiting for the others.
                None if tracker.finished() => tracker.measured().context("no window"),
                Some(Err(e)) => Err(e),
                None => Err(anyhow::Error::new(Late).context(format!(
                    "received {} of {total} messages in time",
                    tracker.delivered()
                ))),
            };
            result.map_err(|e| e.context(format!("subscriber {i} ({})", transport.name())))
        });
    }
    let outcome = publish_round(&hub, server, &shared, n as usize, rate, total).await;
    let drain = if transport == Transport::Poll {
        DRAIN + Duration::from_secs(2)
    } else {
        DRAIN
    };
    let give_up_at = match &outcome {
        Ok(_) => tokio::time::Instant::now() + drain,
        Err(_) => tokio::time::Instant::now(),
    };
    let _ = give_up.send(Some(give_up_at));
    let waited = shared.wait(|s| s.done() >= n as usize || s.ended_count() >= n as usize);
    let _ = tokio::time::timeout_at(give_up_at, waited).await;
    let cpu_end = server.probe.as_ref().and_then(|p| p.cpu().ok());
    let mut measured: Vec<Measured> = Vec::new();
    // The error that says most: a disorder, then what ended a subscriber (and may have
    // stopped the publisher), then the publisher's, then a subscriber left behind.
    let mut first_error: Option<(u8, anyhow::Error)> = None;
    while let Some(joined) = tasks.join_next().await {
        match joined.context("a subscriber task failed")? {
            Ok(m) => measured.push(m),
            Err(e) => {
                let rank = if is_disorder(&e) {
                    0
                } else if e.chain().any(|c| c.is::<Late>()) {
                    3
                } else {
                    1
                };
                if first_error.as_ref().is_none_or(|(r, _)| rank < *r) {
                    first_error = Some((rank, e));
                }
            }
        }
    }
    let (publisher, cpu_start, kept_pace, achieved_rate) = match outcome {
        Ok(o) => o,
        Err(e) => match first_error {
            Some((rank, first)) if rank < 2 => return Err(first),
            _ => return Err(e),
        },
    };
    if let Some((_, e)) = first_error {
        return Err(e);
    }
    let mut latency_all = super::report::histogram();
    let mut window = Counts::default();
    let mut deliveries = 0;
    for m in measured {
        latency_all.add(&m.latency).expect("equal bounds");
        window = window + m.window;
        deliveries += m.delivered;
    }
    Ok(Round {
        published: total,
        deliveries,
        latency: latency_all,
        window,
        publisher,
        server_cpu: cpu_start.zip(cpu_end).map(|(a, b)| b.saturating_sub(a)),
        kept_pace,
        achieved_rate,
    })
}

async fn until_deadline(deadline: &mut watch::Receiver<Option<tokio::time::Instant>>) {
    let at = loop {
        if let Some(at) = *deadline.borrow_and_update() {
            break at;
        }
        if deadline.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::time::sleep_until(at).await;
}

/// The publisher's part of a round: waits for the subscribers, posts the start marker,
/// waits for it everywhere, reads the server's CPU, then posts the measured messages on
/// schedule. Returns its traffic, the CPU reading, whether it kept pace and its rate.
async fn publish_round(
    hub: &Hub,
    server: &Server,
    shared: &Arc<Shared>,
    n: usize,
    rate: u32,
    total: u64,
) -> anyhow::Result<(Counts, Option<Duration>, bool, f64)> {
    let setup = tokio::time::timeout(
        SETUP,
        shared.wait(|s| s.joined() >= n || s.ended_count() > 0),
    );
    if setup.await.is_err() || shared.joined() < n {
        bail!("{} of {n} subscribers joined", shared.joined());
    }
    let wire = Arc::new(Wire::default());
    let marker = tracker::text(0, total, shared.nanos());
    clients::publish(hub, &server.token, &wire, &marker).await?;
    let marked = tokio::time::timeout(
        SETUP,
        shared.wait(|s| s.marked() >= n || s.ended_count() > 0),
    );
    if marked.await.is_err() || shared.marked() < n {
        bail!(
            "{} of {n} subscribers got the first message",
            shared.marked()
        );
    }
    let cpu_start = server.probe.as_ref().and_then(|p| p.cpu().ok());
    let before = wire.counts();
    let period = Duration::from_secs(1).as_secs_f64() / f64::from(rate);
    let start = tokio::time::Instant::now();
    for seq in 1..=total {
        let at = start + Duration::from_secs_f64(period * (seq - 1) as f64);
        tokio::time::sleep_until(at).await;
        let text = tracker::text(seq, total, shared.nanos());
        clients::publish(hub, &server.token, &wire, &text).await?;
    }
    let took = start.elapsed().as_secs_f64();
    let scheduled = period * total as f64;
    // Late by more than a quarter of the schedule: the server held its posts up. (Less
    // than that is within what one pause of a busy machine does to a step of seconds.)
    let kept_pace = took <= scheduled * 1.25 + period;
    Ok((
        wire.counts() - before,
        cpu_start,
        kept_pace,
        total as f64 / took.max(period),
    ))
}

/// One transport's figures, and its step-up.
pub(crate) struct Measurement {
    pub(crate) transport: Transport,
    round: Round,
    pub(crate) steps: Vec<report::Step>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.transports.is_empty() {
        bail!("--transports names none");
    }
    if args.duration.is_zero() || args.step_duration.is_zero() {
        bail!("--duration and --step-duration must be above zero");
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    let epoch = Instant::now();
    let mut measurements = Vec::new();
    let mut failures = Vec::new();
    for &transport in &args.transports {
        let server = match &args.url {
            Some(url) => Server::given(&args, url)?,
            None => Server::start(transport)?,
        };
        progress(
            &args,
            format!(
                "{}: {} subscribers, {} msg/s for {:.1} s",
                transport.name(),
                args.subscribers,
                args.rate,
                args.duration.as_secs_f64()
            ),
        );
        let measured = interruptible(
            &rt,
            round(
                transport,
                &server,
                args.subscribers,
                args.rate,
                args.duration,
                epoch,
            ),
        )?;
        let round = match measured {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{}: {e:#}", transport.name()));
                continue;
            }
        };
        let steps = step_up(&args, &rt, transport, &server, &round, epoch, &mut failures)?;
        measurements.push(Measurement {
            transport,
            round,
            steps,
        });
    }
    let r = report::Report::new(&args, threads, &measurements, &failures);
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let md = dir.join("transports.md");
        std::fs::write(&md, r.markdown(true))
            .with_context(|| format!("cannot write {}", md.display()))?;
        let svg = dir.join("transports.svg");
        report::chart(&svg, &r).with_context(|| format!("cannot write {}", svg.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&r).expect("reports serialise"));
    } else {
        print!("{}", r.markdown(false));
    }
    Ok(super::verdict(
        &failures.into_iter().map(Some).collect::<Vec<_>>(),
    ))
}

fn progress(args: &Args, line: String) {
    if !args.quiet {
        eprintln!("bench transports: {line}");
    }
}

/// Doubles the rate from --rate up to --max-rate while the transport keeps up: p99 within
/// [`LATENCY_FACTOR`] of the measured run's, every message delivered in order in time, and
/// the publisher on schedule. A step that loses or reorders messages is a failure of the
/// run, not a limit.
fn step_up(
    args: &Args,
    rt: &tokio::runtime::Runtime,
    transport: Transport,
    server: &Server,
    base: &Round,
    epoch: Instant,
    failures: &mut Vec<String>,
) -> anyhow::Result<Vec<report::Step>> {
    let mut steps = Vec::new();
    let base_p99 = Duration::from_nanos(base.latency.value_at_quantile(0.99));
    let limit = base_p99
        .mul_f64(LATENCY_FACTOR)
        .max(base_p99 + LATENCY_FLOOR);
    let mut rate = args.rate;
    while rate < args.max_rate {
        rate = rate.saturating_mul(2).min(args.max_rate);
        progress(args, format!("{}: step at {rate} msg/s", transport.name()));
        let measured = interruptible(
            rt,
            round(
                transport,
                server,
                args.subscribers,
                rate,
                args.step_duration,
                epoch,
            ),
        )?;
        let step = match measured {
            Ok(r) => {
                let p99 = Duration::from_nanos(r.latency.value_at_quantile(0.99));
                let why = if !r.kept_pace {
                    Some(format!(
                        "the publisher fell behind ({:.0} msg/s)",
                        r.achieved_rate
                    ))
                } else if p99 > limit {
                    Some(format!("p99 {:.1} ms > {:.1} ms", ms(p99), ms(limit)))
                } else {
                    None
                };
                report::Step {
                    rate,
                    p99_ms: Some(ms(p99)),
                    why,
                }
            }
            Err(e) if is_disorder(&e) => {
                failures.push(format!("{} at {rate} msg/s: {e:#}", transport.name()));
                report::Step {
                    rate,
                    p99_ms: None,
                    why: Some(format!("{e:#}")),
                }
            }
            Err(e) => report::Step {
                rate,
                p99_ms: None,
                why: Some(format!("{e:#}")),
            },
        };
        let stop = step.why.is_some();
        steps.push(step);
        if stop {
            break;
        }
    }
    Ok(steps)
}

/// Runs `round` on `rt` until it ends or Ctrl-C, which ends the whole run: the error goes
/// up through `run`, whose servers are dropped (so stopped) on the way.
fn interruptible<T>(
    rt: &tokio::runtime::Runtime,
    round: impl std::future::Future<Output = T>,
) -> anyhow::Result<T> {
    rt.block_on(async {
        tokio::select! {
            done = round => Ok(done),
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        }
    })
}

/// A subscriber still waiting for messages when the round gave up.
#[derive(Debug)]
struct Late;

impl std::fmt::Display for Late {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the time allowed ran out")
    }
}

impl std::error::Error for Late {}

/// Not a limit of load: a subscriber saw the room out of order.
fn is_disorder(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<tracker::OutOfOrder>())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Measurement {
    pub(crate) fn latency(&self) -> Option<super::report::Latency> {
        latency(&self.round.latency)
    }

    /// Per delivered message.
    fn per(&self, n: u64) -> f64 {
        n as f64 / self.round.deliveries.max(1) as f64
    }

    pub(crate) fn deliveries(&self) -> u64 {
        self.round.deliveries
    }

    pub(crate) fn published(&self) -> u64 {
        self.round.published
    }

    pub(crate) fn bytes_in(&self) -> f64 {
        self.per(self.round.window.read)
    }

    pub(crate) fn bytes_out(&self) -> f64 {
        self.per(self.round.window.written)
    }

    pub(crate) fn requests(&self) -> f64 {
        self.per(self.round.window.requests)
    }

    pub(crate) fn server_cpu_us(&self) -> Option<f64> {
        let cpu = self.round.server_cpu?;
        Some(cpu.as_secs_f64() * 1e6 / self.round.deliveries.max(1) as f64)
    }

    /// The publisher's bytes per published message: (sent, received).
    pub(crate) fn publisher_bytes(&self) -> (f64, f64) {
        let n = self.round.published.max(1) as f64;
        let p = self.round.publisher;
        (p.written as f64 / n, p.read as f64 / n)
    }

    pub(crate) fn publisher_requests(&self) -> u64 {
        self.round.publisher.requests
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_message_fails_the_run_at_any_rate_and_lateness_is_only_a_limit() {
        let shared = Shared::new(Instant::now(), 1);
        let mut t = Tracker::new(shared, Arc::new(Wire::default()));
        t.event(br#"{"type":"welcome","last_id":0}"#).unwrap();
        let m = |id: u64, seq: u64| {
            format!(
                r#"{{"type":"message","id":{id},"text":"{}"}}"#,
                tracker::text(seq, 5, 0)
            )
        };
        t.event(m(1, 0).as_bytes()).unwrap();
        let lost = t.event(m(3, 2).as_bytes()).unwrap_err();
        // As a round reports it: wrapped in the subscriber's context.
        let lost = lost.context("subscriber 0 (sse)");
        assert!(is_disorder(&lost), "{lost:#}");
        assert!(format!("{lost:#}").contains("message 2 lost (got 3 next)"));
        let late = anyhow::Error::new(Late).context("received 1 of 5 messages in time");
        assert!(!is_disorder(&late));
    }
}
