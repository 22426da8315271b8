//! `wsduplex bench`: a load generator for WebSocket servers.
//!
//! Built so that it is not the bottleneck: each load thread runs its own single-threaded
//! runtime, frames are encoded and masked once per connection, a batch of frames leaves in
//! one write, and echoes are parsed only as far as their 2–10 byte header before the payload
//! is compared with what was sent. Every echoed payload is compared: a server that drops,
//! reorders or corrupts data fails the run instead of looking fast.
//!
//! ```text
//! main thread: control runtime ── phase (warm-up → measure → done), /proc/PID, progress
//!     │ Arc<Control>, channels
//!     ├── load thread 0: current_thread runtime, connections 0, T, 2T, …
//!     └── load thread 1: current_thread runtime, connections 1, T+1, …
//! ```

mod conn;
mod connect;
mod echo;
mod fanout;
mod idle;
mod pipeline;
mod report;
mod socket_echo;
mod transports;

pub(crate) use crate::args::parse_duration;
use report::{Probe, Progress, Tally};
use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(clap::Subcommand)]
enum Mode {
    /// Echo throughput and latency: N connections, D messages in flight on each.
    Echo(echo::Args),
    /// Handshake rate: C openers, each connecting, handshaking and closing in a loop.
    Connect(connect::Args),
    /// Hold N idle connections open and report the server's memory per connection.
    Idle(idle::Args),
    /// One hub, N subscribers on each transport in turn (WebSocket over HTTP/1.1 and
    /// HTTP/2, SSE, long polling, polling once a second): bytes, requests, latency and
    /// server CPU per delivered message, and the highest rate each keeps up with.
    Transports(transports::Args),
    /// Rooms on a hub (or uWebSockets' room server): N members, P publishers at a fixed
    /// rate; every delivery checked, its latency, and server CPU per delivery. The URL is
    /// the rooms' base (ws://HOST:PORT/chat for the hub).
    Fanout(fanout::Args),
}

/// Options every mode takes.
#[derive(clap::Args, Clone, Debug)]
struct Common {
    /// The server: ws://HOST:PORT/path (connect and idle also take wss://).
    url: String,
    #[command(flatten)]
    trust: conn::Trust,
    /// Load threads, each with its own single-threaded runtime [default: one per core].
    #[arg(long)]
    threads: Option<usize>,
    /// The server's process id: report its CPU time and memory (from Linux's /proc).
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Print one JSON object on stdout instead of the human report.
    #[arg(long)]
    json: bool,
    /// No progress line on stderr (it is also off when stderr is not a terminal).
    #[arg(long, short)]
    quiet: bool,
}

impl Common {
    /// The thread count, at most `units` (connections or openers) and at least one.
    fn threads(&self, units: usize) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.threads.unwrap_or(cores).clamp(1, units.max(1))
    }

    /// The server under test.
    fn endpoint(&self) -> anyhow::Result<conn::Endpoint> {
        conn::Endpoint::resolve(&self.url, &self.trust)
    }

    fn probe(&self) -> anyhow::Result<Option<Probe>> {
        self.server_pid.map(Probe::new).transpose()
    }
}

pub fn run(args: Args) -> anyhow::Result<std::process::ExitCode> {
    match args.mode {
        Mode::Echo(a) => echo::run(a),
        Mode::Connect(a) => connect::run(a),
        Mode::Idle(a) => idle::run(a),
        Mode::Transports(a) => transports::run(a),
        Mode::Fanout(a) => fanout::run(a),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Phase {
    /// Load runs, nothing is recorded (payloads are still validated).
    Warmup = 0,
    /// Load runs and is recorded.
    Measure = 1,
    /// Finish what is in flight, close, report.
    Done = 2,
}

/// The phase, set by the main thread: an atomic for the hot path, a watch to wake waiters.
struct Control {
    phase: AtomicU8,
    tx: watch::Sender<Phase>,
}

impl Control {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            phase: AtomicU8::new(Phase::Warmup as u8),
            tx: watch::Sender::new(Phase::Warmup),
        })
    }

    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Warmup,
            1 => Phase::Measure,
            _ => Phase::Done,
        }
    }

    fn set(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
        self.tx.send_replace(phase);
    }

    /// Waits for the measured window (or the end).
    async fn started(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|p| *p != Phase::Warmup).await;
    }

    async fn done(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|p| *p == Phase::Done).await;
    }
}

/// A per-thread counter for the progress line, alone on its cache line.
#[derive(Default)]
#[repr(align(128))]
struct Counter(AtomicU64);

impl Counter {
    fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

fn total(counters: &[Arc<Counter>]) -> u64 {
    counters.iter().map(|c| c.0.load(Ordering::Relaxed)).sum()
}

/// How a thread's connections came up.
#[derive(Default, Debug)]
struct Ready {
    opened: u64,
    failed: u64,
    first_error: Option<String>,
}

impl Ready {
    fn merge(&mut self, other: Ready) {
        self.opened += other.opened;
        self.failed += other.failed;
        self.first_error = self.first_error.take().or(other.first_error);
    }
}

/// What a load thread holds besides its own work.
struct Link {
    control: Arc<Control>,
    counter: Arc<Counter>,
    ready: mpsc::UnboundedSender<Ready>,
    /// Sent once no task of the thread is running any more.
    finished: mpsc::UnboundedSender<()>,
}

/// Prints each failure as a `FAILED:` line on stderr; the exit status of a run.
fn verdict(failures: &[Option<String>]) -> std::process::ExitCode {
    let mut failed = false;
    for f in failures.iter().flatten() {
        eprintln!("wsduplex bench: FAILED: {f}");
        failed = true;
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}

impl Link {
    /// The end of a load thread's life, the same in every mode: collects whether each
    /// connection opened and reports it, runs until the measured window ends (or every task
    /// ends), then gives the tasks `grace` to finish. A task that panicked goes to `error`;
    /// tasks still running afterwards are left in `tasks`.
    async fn supervise(
        &self,
        mut opened: mpsc::UnboundedReceiver<Result<(), String>>,
        tasks: &mut JoinSet<()>,
        grace: Duration,
        error: impl Fn(String),
    ) {
        let mut ready = Ready::default();
        while let Some(result) = opened.recv().await {
            match result {
                Ok(()) => ready.opened += 1,
                Err(e) => {
                    ready.failed += 1;
                    ready.first_error.get_or_insert(e);
                }
            }
        }
        let _ = self.ready.send(ready);
        loop {
            tokio::select! {
                joined = tasks.join_next() => match joined {
                    Some(Ok(())) => {}
                    Some(Err(e)) => error(format!("a connection task failed: {e}")),
                    None => break,
                },
                _ = self.control.done() => break,
            }
        }
        let _ = self.finished.send(());
        self.control.done().await;
        let _ =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    }

    /// A load thread of echo or idle: starts `connection(id, opening)` for each of `ids`, at
    /// most `at_once` of them opening at a time; a connection that fails once open goes to
    /// `tally` as `connection {id}: …`. Then [`supervise`](Link::supervise)s them, and returns
    /// how many were still running `grace` after the end (they are aborted).
    async fn connections<F>(
        &self,
        ids: impl Iterator<Item = usize>,
        at_once: usize,
        grace: Duration,
        tally: &Rc<RefCell<Tally>>,
        mut connection: impl FnMut(usize, Opening) -> F,
    ) -> usize
    where
        F: Future<Output = anyhow::Result<()>> + 'static,
    {
        let gate = Rc::new(Semaphore::new(at_once));
        let (opened_tx, opened) = mpsc::unbounded_channel();
        let mut tasks = JoinSet::new();
        for id in ids {
            let opening = Opening {
                gate: gate.clone(),
                opened: opened_tx.clone(),
            };
            let (run, tally) = (connection(id, opening), tally.clone());
            tasks.spawn_local(async move {
                if let Err(e) = run.await {
                    tally.borrow_mut().error(format!("connection {id}: {e:#}"));
                }
            });
        }
        drop(opened_tx);
        self.supervise(opened, &mut tasks, grace, |e| tally.borrow_mut().error(e))
            .await;
        let late = tasks.len();
        tasks.abort_all();
        late
    }
}

/// A connection's way in (see [`Link::connections`]): its turn among those opening at once,
/// and the report to [`Link::supervise`] of whether it opened.
struct Opening {
    gate: Rc<Semaphore>,
    opened: mpsc::UnboundedSender<Result<(), String>>,
}

impl Opening {
    /// Runs `open` in its turn and reports the result: the stream and the bytes that followed
    /// the handshake, or None when it failed (the error goes in the report, not to the caller).
    async fn open<T>(self, open: impl Future<Output = anyhow::Result<T>>) -> Option<T> {
        let permit = self.gate.acquire().await;
        let opened = open.await;
        drop(permit);
        let report = opened.as_ref().map(|_| ()).map_err(|e| format!("{e:#}"));
        let _ = self.opened.send(report);
        opened.ok()
    }
}

/// The main thread's side of the load threads.
struct Fleet<T> {
    control: Arc<Control>,
    counters: Vec<Arc<Counter>>,
    ready: mpsc::UnboundedReceiver<Ready>,
    finished: mpsc::UnboundedReceiver<()>,
    threads: Vec<std::thread::JoinHandle<T>>,
}

impl<T: Send + 'static> Fleet<T> {
    /// Starts `n` load threads; `work(i, link)` builds thread `i`'s future on that thread.
    fn start<F, Fut>(n: usize, work: F) -> anyhow::Result<Self>
    where
        F: Fn(usize, Link) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = T> + 'static,
    {
        let control = Control::new();
        let (ready_tx, ready) = mpsc::unbounded_channel();
        let (finished_tx, finished) = mpsc::unbounded_channel();
        let work = Arc::new(work);
        let mut counters = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let counter = Arc::new(Counter::default());
            counters.push(counter.clone());
            let link = Link {
                control: control.clone(),
                counter,
                ready: ready_tx.clone(),
                finished: finished_tx.clone(),
            };
            let work = work.clone();
            let thread = std::thread::Builder::new()
                .name(format!("bench-{i}"))
                .spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a current_thread runtime");
                    // A LocalSet: per-thread state lives in Rc/RefCell, never behind a lock.
                    tokio::task::LocalSet::new().block_on(&rt, work(i, link))
                })?;
            threads.push(thread);
        }
        Ok(Self {
            control,
            counters,
            ready,
            finished,
            threads,
        })
    }

    /// Waits until every thread has opened its connections.
    async fn ready(&mut self) -> Ready {
        let mut all = Ready::default();
        for _ in 0..self.threads.len() {
            match self.ready.recv().await {
                Some(r) => all.merge(r),
                None => break,
            }
        }
        all
    }

    fn total(&self) -> u64 {
        total(&self.counters)
    }

    /// Ends the run and collects each thread's result.
    fn join(self) -> anyhow::Result<Vec<T>> {
        self.control.set(Phase::Done);
        self.threads
            .into_iter()
            .map(|t| {
                t.join()
                    .map_err(|_| anyhow::anyhow!("a load thread panicked"))
            })
            .collect()
    }
}

/// What the main thread saw of the measured window.
struct Window {
    elapsed: Duration,
    /// This process's CPU time in the window (None where /proc is unreadable).
    load_cpu: Option<Duration>,
    server_cpu: Option<Duration>,
    /// The server's RSS at the end of the window, before anything closed.
    server_rss_kib: Option<u64>,
    interrupted: bool,
}

/// Runs warm-up and the measured window, showing `status(fleet, phase, elapsed, dt)` every
/// quarter second. The window ends after `duration`, on Ctrl-C, or once every thread has
/// finished its work.
async fn measure<T: Send + 'static>(
    fleet: &mut Fleet<T>,
    warmup: Duration,
    duration: Option<Duration>,
    probe: Option<&Probe>,
    progress: &mut Progress,
    status: impl FnMut(&Fleet<T>, &str, Duration, Duration) -> String,
) -> anyhow::Result<Window> {
    let every = Duration::from_millis(250);
    let mut tick = tokio::time::interval_at(Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut clock = Stopwatch {
        fleet,
        progress,
        status,
        tick,
        ctrl_c: Box::pin(tokio::signal::ctrl_c()),
        finished: 0,
        interrupted: false,
        last: Instant::now(),
    };
    if !warmup.is_zero() {
        clock.run("warm-up", Some(warmup)).await;
    }
    let me = Probe::new(std::process::id()).ok();
    let load_start = me.as_ref().and_then(|p| p.cpu().ok());
    let cpu_start = probe.map(Probe::cpu).transpose()?;
    let start = Instant::now();
    clock.fleet.control.set(Phase::Measure);
    clock.run("measure", duration).await;
    let server_rss_kib = probe.map(Probe::rss_kib).transpose()?;
    let cpu_end = probe.map(Probe::cpu).transpose()?;
    let elapsed = start.elapsed();
    let load_end = me.as_ref().and_then(|p| p.cpu().ok());
    clock.fleet.control.set(Phase::Done);
    clock.progress.clear();
    Ok(Window {
        elapsed,
        load_cpu: load_start.zip(load_end).map(|(a, b)| b.saturating_sub(a)),
        server_cpu: cpu_start.zip(cpu_end).map(|(a, b)| b.saturating_sub(a)),
        server_rss_kib,
        interrupted: clock.interrupted,
    })
}

/// The main thread's side of echo and connect once their threads have started: waits until the
/// threads are ready and `check` accepts how their connections came up, runs warm-up and the
/// measured window showing `status` (see [`measure`]), ends the run and merges the threads'
/// tallies.
fn measure_and_join(
    mut fleet: Fleet<Tally>,
    warmup: Duration,
    duration: Option<Duration>,
    probe: Option<&Probe>,
    quiet: bool,
    status: impl FnMut(&Fleet<Tally>, &str, Duration, Duration) -> String,
    check: impl FnOnce(Ready) -> anyhow::Result<()>,
) -> anyhow::Result<(Window, Tally)> {
    let mut progress = Progress::new(quiet);
    let window = control_runtime()?.block_on(async {
        check(fleet.ready().await)?;
        measure(&mut fleet, warmup, duration, probe, &mut progress, status).await
    });
    let tally = fleet.join()?.into_iter().collect();
    Ok((window?, tally))
}

/// The progress line of echo and connect: `{mode} {phase} {seconds} s: {rate} {unit}`, the rate
/// being that of what the threads count.
fn rate_line(
    mode: &'static str,
    unit: &'static str,
) -> impl FnMut(&Fleet<Tally>, &str, Duration, Duration) -> String {
    let mut seen = 0;
    move |fleet, label, elapsed, dt| {
        let total = fleet.total();
        let line = format!(
            "{mode} {label} {:.1} s: {} {unit}",
            elapsed.as_secs_f64(),
            report::thousands(rate(total - seen, dt) as u64)
        );
        seen = total;
        line
    }
}

struct Stopwatch<'a, T, S> {
    fleet: &'a mut Fleet<T>,
    progress: &'a mut Progress,
    status: S,
    tick: tokio::time::Interval,
    ctrl_c: std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>>>>,
    finished: usize,
    interrupted: bool,
    last: Instant,
}

impl<T, S> Stopwatch<'_, T, S>
where
    S: FnMut(&Fleet<T>, &str, Duration, Duration) -> String,
{
    async fn run(&mut self, label: &str, length: Option<Duration>) {
        let start = Instant::now();
        let end = length.map(|l| start + l);
        let threads = self.fleet.threads.len();
        while !self.interrupted && self.finished < threads && end.is_none_or(|e| Instant::now() < e)
        {
            tokio::select! {
                _ = sleep_until(end) => {}
                _ = self.tick.tick() => {
                    let now = Instant::now();
                    let line = (self.status)(self.fleet, label, now - start, now - self.last);
                    self.progress.show(&line);
                    self.last = now;
                }
                Some(()) = self.fleet.finished.recv() => self.finished += 1,
                _ = &mut self.ctrl_c => self.interrupted = true,
            }
        }
    }
}

async fn sleep_until(end: Option<Instant>) {
    match end {
        Some(end) => tokio::time::sleep_until(end).await,
        None => std::future::pending().await,
    }
}

/// The main thread's runtime: timers, Ctrl-C and channels, no load.
fn control_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// `n` per second over `dt`.
fn rate(n: u64, dt: Duration) -> f64 {
    if dt.is_zero() {
        0.0
    } else {
        n as f64 / dt.as_secs_f64()
    }
}
