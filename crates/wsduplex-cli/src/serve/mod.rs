//! `wsduplex serve`: the chat hub (`/` is the chat page; `/chat/ROOM`, `/poll/...`,
//! `/api/...`), `/echo` echoes every message with its type, `/echo.html` is an echo test
//! page; over TLS with `--tls-cert`/`--tls-key` or `--tls-self-signed`; HTTP/1.1, and HTTP/2
//! (ALPN `h2`, or `h2c` with prior knowledge on the same port) with WebSockets over extended
//! CONNECT. Glue only: the flags and their translation into the libraries' settings are in
//! `args`, the listeners and a connection's first steps in `listen`, HTTP/2 connections in
//! `http2`, who answers which path in `route`, the echo endpoint in `echo`, the metrics
//! page in `metrics`; what is admitted is decided by the library's front door
//! ([`wsduplex::server::admission`]).

mod args;
mod echo;
mod http2;
mod listen;
mod metrics;
mod route;

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
}

/// Runs the server: one thread per worker, each a single-threaded runtime with its own
/// `SO_REUSEPORT` listener on the same port, so the kernel spreads connections and no lock
/// is shared on the hot path. The main thread waits for SIGINT/SIGTERM.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    built_with(&args)?;
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let addr: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(&args.listen)
        .with_context(|| format!("cannot resolve {}", args.listen))?
        .next()
        .with_context(|| format!("{} resolves to no address", args.listen))?;
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
    let listeners = listen::listen(addr, workers)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listeners[0].local_addr()?;
    // Signal handlers exist before anyone can learn the port: a signal right after the
    // ready line is a graceful shutdown, never the default kill.
    let stop_signal = stop_signal()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("listening on {scheme}://{addr}");
    let Configs { server, echo, hub } = args.configs(jwt);
    // Rooms span the workers: one hub, shared.
    let hub = match args.redis.filter(|u| !u.is_empty()) {
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
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let threads: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(i, listener)| {
            let (server, stop) = (server.clone(), stop_rx.clone());
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || listen::worker(listener, server, stop))
        })
        .collect::<Result<_, _>>()?;
    rt.block_on(stop_signal);
    // Chat members get 1001 from the hub; echo connections from the stop signal.
    hub.shutdown();
    let _ = stop_tx.send(true);
    for t in threads {
        let _ = t.join();
    }
    // With --redis: this node's members leave their rooms on every node now, not when the
    // presence TTL runs out.
    rt.block_on(hub.closed());
    Ok(ExitCode::SUCCESS)
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
