//! `wsduplex serve`: the chat hub (`/` is the chat page; `/chat/ROOM`, `/poll/...`,
//! `/api/...`), `/echo` echoes every message with its type, `/echo.html` is an echo test
//! page; over TLS with `--tls-cert`/`--tls-key` or `--tls-self-signed`; HTTP/1.1, and HTTP/2
//! (ALPN `h2`, or `h2c` with prior knowledge on the same port) with WebSockets over extended
//! CONNECT. Glue only: the flags and their translation into the libraries' settings are in
//! `args`, the listeners and a connection's first steps in `listen`, HTTP/2 connections in
//! `http2`, who answers which path in `route`, the echo endpoint in `echo`, the metrics
//! page in `metrics`, the worker threads in `worker`, the hand-over to a new process in
//! `handover` (Unix), systemd's sockets in `activation`; what is admitted is decided by the library's front door
//! ([`wsduplex::server::admission`]).

mod activation;
mod args;
mod echo;
#[cfg(unix)]
mod handover;
mod http2;
mod listen;
mod member;
mod metrics;
mod route;
mod worker;

pub use args::Args;

use anyhow::Context as _;
use args::Configs;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::sync::watch;
use wsduplex::metrics::Metrics;
use wsduplex::server::ServerConfig;
use wsduplex::tls::TlsAcceptor;
use wsduplex_hub::Hub;

/// The running server, shared by every worker and connection.
struct Server {
    /// The hub's WebSockets and every request: limits, the Origin policy, authentication.
    config: ServerConfig,
    /// `/echo`'s WebSockets (see [`args::Configs::echo`]).
    echo: ServerConfig,
    tls: Option<TlsAcceptor>,
    /// HTTP/2 beside HTTP/1.1: `h2c` looked for on cleartext connections (ALPN `h2` is in
    /// `tls` when on).
    http2: bool,
    hub: Hub,
    /// What the sockets and the front door count, per worker thread.
    metrics: Metrics,
    /// `/echo` connections idle this long are parked (`None`: never).
    #[cfg_attr(not(unix), allow(dead_code))]
    park_idle: Option<std::time::Duration>,
}

/// Runs the server: one thread per worker, each a single-threaded runtime with its own
/// `SO_REUSEPORT` listener on the same port, so the kernel spreads connections and no lock
/// is shared on the hot path. The main thread waits for SIGINT/SIGTERM, or for a hand-over
/// to finish.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    built_with(&args)?;
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let requested = args.listen.as_deref().map(resolve).transpose()?;
    let jwt = args.jwt()?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(wsduplex::tls::acceptor_from_pem_files(cert, key)?),
        _ if args.tls_self_signed => {
            let generated = wsduplex::tls::self_signed()?;
            eprintln!(
                "self-signed certificate for localhost, 127.0.0.1, ::1; SHA-256 fingerprint {}",
                generated.fingerprint
            );
            Some(generated.acceptor)
        }
        _ => None,
    };
    // HTTP/2 (RFC 8441 WebSockets, the page, the API) for clients that choose it.
    let http2 = !args.no_http2;
    let tls = if http2 {
        tls.as_ref().map(wsduplex::tls::offer_http2)
    } else {
        tls
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _guard = rt.enter();
    let mut sockets = sockets(&args, requested, workers)?;
    let addr = sockets.listeners[0].local_addr()?;
    // Signal handlers exist before anyone can learn the port: a signal right after the
    // ready line is a graceful shutdown, never the default kill.
    let stop_signal = stop_signal()?;
    tokio::pin!(stop_signal);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let taking_over = sockets.taking_over();
    let Configs { server, echo, hub } = args.configs(jwt);
    // Rooms span the workers: one hub, shared.
    let hub = match args.redis.clone().filter(|u| !u.is_empty()) {
        None => Hub::new(hub),
        #[cfg(feature = "redis")]
        Some(url) => {
            let redis = wsduplex_hub::RedisConfig::new(url);
            Hub::with_redis(hub, redis).context("--redis")?
        }
        // Refused by `built_with`.
        #[cfg(not(feature = "redis"))]
        Some(_) => Hub::new(hub),
    };
    rt.spawn(hub.clone().maintain());
    let metrics = Metrics::default().with_close_codes(&wsduplex_hub::CLOSE_CODES);
    // This thread runs the hub's background work (with --redis, its fan-out).
    metrics.attach_current_thread();
    let server = Arc::new(Server {
        config: server,
        echo,
        tls,
        http2,
        hub: hub.clone(),
        metrics,
        park_idle: (!args.park_idle.is_zero()).then_some(args.park_idle),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (reports_tx, reports) = std::sync::mpsc::channel();
    let (finished_tx, mut finished) = tokio::sync::mpsc::unbounded_channel();
    let mut commands = Vec::new();
    #[cfg(unix)]
    let dups = sockets
        .listeners
        .iter()
        .map(|l| Ok((l.try_clone()?.into(), l.local_addr()?)))
        .collect::<std::io::Result<Vec<_>>>()?;
    let threads: Vec<_> = std::mem::take(&mut sockets.listeners)
        .into_iter()
        .enumerate()
        .map(|(index, listener)| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            commands.push(tx);
            let links = worker::Links {
                index,
                commands: rx,
                reports: reports_tx.clone(),
                finished: finished_tx.clone(),
                accepting: !taking_over,
            };
            let (server, stop) = (server.clone(), stop_rx.clone());
            std::thread::Builder::new()
                .name(format!("worker-{index}"))
                .spawn(move || worker::run(listener, server, stop, links))
        })
        .collect::<Result<_, _>>()?;
    drop((reports_tx, finished_tx));
    let (handed_tx, mut handed) = tokio::sync::mpsc::unbounded_channel::<HandedOver>();
    #[cfg(unix)]
    let control = sockets.control.take().map(|(path, take_over)| {
        // The hub's members stopped by a hand-over come here, with their sockets.
        let (members_tx, members) = tokio::sync::mpsc::unbounded_channel();
        hub.hand_members_to::<tokio::net::TcpStream>(members_tx);
        let control = handover::Control {
            workers: commands,
            reports,
            listeners: dups,
            handed_over: handed_tx,
            hub: hub.clone(),
            members: std::sync::Mutex::new(members),
        };
        control_thread(control, path, take_over)
    });
    #[cfg(not(unix))]
    let _ = (commands, reports, handed_tx);
    #[cfg(unix)]
    let control = control.transpose()?;
    // Ready once the control socket is bound, too.
    if !taking_over {
        println!("listening on {scheme}://{addr}");
    }
    #[cfg(unix)]
    let control_path = match control {
        Some(Control::Serving(identity)) => Some(identity),
        Some(Control::TakingOver(outcome, old_pid)) => {
            let outcome = rt.block_on(async {
                tokio::select! {
                    outcome = outcome => outcome.unwrap_or_else(|_| Err(anyhow::anyhow!("the control thread ended"))),
                    () = &mut stop_signal => Err(anyhow::anyhow!("stopped during the take-over")),
                }
            })?;
            println!("listening on {scheme}://{addr}");
            println!("took over {} connections from process {old_pid}", outcome.0);
            outcome.1
        }
        None => None,
    };
    activation::ready(taking_over);
    let handed_over = rt.block_on(async {
        tokio::select! {
            () = &mut stop_signal => None,
            Some(done) = handed.recv() => Some(done),
        }
    });
    #[cfg(unix)]
    if let Some(done) = handed_over {
        println!(
            "handed over {} connections to process {}",
            done.count, done.pid
        );
        // What could not move is served until it ends (each worker then ends), at most
        // --drain-timeout.
        rt.block_on(async {
            tokio::select! {
                _ = tokio::time::timeout(args.drain_timeout, finished.recv()) => {}
                () = &mut stop_signal => {}
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (handed_over, &mut finished);
    // Chat members get 1001 from the hub; echo connections from the stop signal.
    hub.shutdown();
    let _ = stop_tx.send(true);
    for t in threads {
        let _ = t.join();
    }
    // With --redis: this node's members leave their rooms on every node now, not when the
    // presence TTL runs out.
    rt.block_on(hub.closed());
    #[cfg(unix)]
    if let Some((path, inode)) = control_path {
        handover::ControlSocket::remove_if_own(&path, inode);
    }
    Ok(ExitCode::SUCCESS)
}

fn resolve(listen: &str) -> anyhow::Result<SocketAddr> {
    std::net::ToSocketAddrs::to_socket_addrs(listen)
        .with_context(|| format!("cannot resolve {listen}"))?
        .next()
        .with_context(|| format!("{listen} resolves to no address"))
}

/// A finished hand-over, for the old process's main thread.
#[cfg_attr(not(unix), allow(dead_code))]
struct HandedOver {
    count: u64,
    pid: u32,
}

/// Where the listening sockets come from, one per worker: the process taken over
/// (`--take-over`), systemd (`LISTEN_FDS`), or a bind of `--listen`.
struct Sockets {
    listeners: Vec<std::net::TcpListener>,
    /// The control socket's path, and the process being taken over.
    #[cfg(unix)]
    control: Option<(std::path::PathBuf, Option<handover::TakeOver>)>,
}

impl Sockets {
    fn taking_over(&self) -> bool {
        #[cfg(unix)]
        return matches!(self.control, Some((_, Some(_))));
        #[cfg(not(unix))]
        false
    }
}

fn sockets(args: &Args, requested: Option<SocketAddr>, workers: usize) -> anyhow::Result<Sockets> {
    #[cfg(not(unix))]
    if args.control.is_some() || args.take_over.is_some() {
        anyhow::bail!("--control and --take-over need a Unix system");
    }
    #[cfg(unix)]
    if let Some(path) = &args.take_over {
        let take = handover::connect(path, requested)?;
        if let Some(w) = args.workers.filter(|w| *w != take.listeners.len()) {
            // One worker per listening socket: each has an accept queue of its own.
            tracing::warn!(
                "--workers {w}: serving with {} workers, one per socket taken over",
                take.listeners.len()
            );
        }
        let control = args.control.clone().unwrap_or_else(|| path.clone());
        let listeners = take
            .listeners
            .iter()
            .map(|l| l.try_clone())
            .collect::<Result<_, _>>()?;
        return Ok(Sockets {
            listeners,
            control: Some((control, Some(take))),
        });
    }
    let listeners = match activation::listeners()? {
        Some(_) if requested.is_some() => {
            anyhow::bail!(
                "--listen: systemd passed listening sockets (LISTEN_FDS); leave --listen out"
            )
        }
        Some(passed) if passed.is_empty() => anyhow::bail!("LISTEN_FDS: no TCP socket"),
        // Every worker accepts on a copy of a passed socket (one queue, shared).
        Some(passed) => (0..workers.max(passed.len()))
            .map(|i| passed[i % passed.len()].try_clone())
            .collect::<Result<_, _>>()?,
        None => {
            let addr = requested.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
            listen::listen(addr, workers).with_context(|| format!("cannot listen on {addr}"))?
        }
    };
    Ok(Sockets {
        listeners,
        #[cfg(unix)]
        control: args.control.clone().map(|path| (path, None)),
    })
}

/// A control socket's path, and its device and inode (to tell it from a successor's).
#[cfg(unix)]
type ControlIdentity = (std::path::PathBuf, (u64, u64));

/// A take-over's end: connections taken, and the control socket bound (if it could be).
#[cfg(unix)]
type TakeOverOutcome = anyhow::Result<(u64, Option<ControlIdentity>)>;

/// The control thread, started.
#[cfg(unix)]
enum Control {
    /// Waiting for a process to take over; the control socket's path and identity.
    Serving(ControlIdentity),
    /// Taking over from process `.1`: the connections taken, and the control socket bound.
    TakingOver(tokio::sync::oneshot::Receiver<TakeOverOutcome>, u32),
}

/// Starts the control thread: it takes the connections over first when `take_over`, then
/// serves hand-overs on `path`. Binding `path` fails here, before the server is ready.
#[cfg(unix)]
fn control_thread(
    control: handover::Control,
    path: std::path::PathBuf,
    take_over: Option<handover::TakeOver>,
) -> anyhow::Result<Control> {
    let spawn =
        |f: Box<dyn FnOnce() + Send>| std::thread::Builder::new().name("control".into()).spawn(f);
    match take_over {
        None => {
            let socket = handover::bind(&path)?;
            let identity = socket.identity();
            spawn(Box::new(move || control.serve(socket)))?;
            Ok(Control::Serving(identity))
        }
        Some(take) => {
            let old_pid = take.old_pid;
            let (tx, rx) = tokio::sync::oneshot::channel();
            spawn(Box::new(move || {
                let mut socket = None;
                let result = take.receive(&control.workers, &control.hub, || {
                    match handover::rebind(&path) {
                        Ok(s) => socket = Some(s),
                        Err(e) => tracing::warn!("{e:#}: no hand-over from this process"),
                    }
                    for w in &control.workers {
                        let _ = w.send(worker::Command::Accept);
                    }
                });
                let identity = socket.as_ref().map(|s| s.identity());
                let _ = tx.send(result.map(|count| (count, identity)));
                if let Some(socket) = socket {
                    control.serve(socket);
                }
            }))?;
            Ok(Control::TakingOver(rx, old_pid))
        }
    }
}

/// Refuses, before anything listens, what this build cannot do: `--redis` without the
/// feature `redis`, `--deflate` without `deflate`.
fn built_with(args: &Args) -> anyhow::Result<()> {
    if !cfg!(feature = "redis") && args.redis.as_ref().is_some_and(|u| !u.is_empty()) {
        anyhow::bail!("--redis: this wsduplex was built without the `redis` feature");
    }
    if !cfg!(feature = "deflate") && args.deflate {
        anyhow::bail!("--deflate: this wsduplex was built without the `deflate` feature");
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM (Ctrl-C elsewhere). Installed before the port is
/// announced. `relay` stops on the same signals.
#[cfg(unix)]
pub(crate) fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
    })
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
pub(crate) fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::listen::listen;

    /// `handle` skips `set_nodelay` on Linux because accepted sockets inherit it: without it,
    /// every small echo would wait for Nagle's algorithm.
    #[tokio::test]
    async fn accepted_connections_have_nodelay() {
        let listeners = listen("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let addr = listeners[0].local_addr().unwrap();
        // Either worker's listener may get the connection (SO_REUSEPORT): ask both, without
        // blocking, until one has it.
        let _client = std::net::TcpStream::connect(addr).unwrap();
        for l in &listeners {
            l.set_nonblocking(true).unwrap();
        }
        let accepted = loop {
            if let Some(a) = listeners.iter().find_map(|l| l.accept().ok()) {
                break a;
            }
            std::thread::yield_now();
        };
        assert!(accepted.0.nodelay().unwrap());
    }
}
