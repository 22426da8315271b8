//! `wsduplex serve`: the chat hub (`/` is the chat page; `/chat/ROOM`, `/poll/...`,
//! `/api/...`), `/echo` echoes every message with its type, `/echo.html` is an echo test
//! page; over TLS with `--tls-cert`/`--tls-key` or `--tls-self-signed`.

use crate::bench::parse_duration;
use anyhow::Context as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use wsduplex::forwarded::{client_addr, Cidr};
use wsduplex::server::{read_request, ServerConfig};
use wsduplex::tls::{TlsAcceptor, TlsStream};
use wsduplex::{CloseCode, WebSocket};
use wsduplex_hub::{Hub, HubConfig};

#[derive(clap::Args)]
// The --deflate-* options tune --deflate: alone they would do nothing.
#[command(mut_group("DeflateArgs", |g| g.requires("deflate")))]
pub struct Args {
    /// Address to listen on (port 0 picks a free port; the ready line shows it).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Worker threads, each with its own runtime and listener (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Serve TLS (https:// and wss://) with this PEM certificate chain, leaf first.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve TLS with a certificate generated at start for localhost, 127.0.0.1 and ::1
    /// (for development: its SHA-256 fingerprint is printed on stderr).
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    tls_self_signed: bool,
    /// Ping every client this often (e.g. 30s); a client silent for --ping-timeout after a
    /// ping is disconnected. Off by default.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    ping_interval: Option<Duration>,
    /// How long a client may stay silent after a keepalive ping.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "20s")]
    ping_timeout: Duration,
    /// Close connections with 1001 when no message arrives for this long. Off by default.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    idle_timeout: Option<Duration>,
    /// Time a client has to send its request (and finish TLS).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    handshake_timeout: Duration,
    /// Accept permessage-deflate (RFC 7692) from clients that offer it. Off by default, as
    /// in Node's ws: every compressed connection keeps zlib state and spends CPU.
    #[arg(long)]
    deflate: bool,
    #[command(flatten)]
    deflate_args: crate::client::DeflateArgs,
    /// Believe Forwarded / X-Forwarded-For from peers in this range (e.g. 127.0.0.1/32
    /// for an nginx on the same host; repeatable): the client address logged is then the
    /// one the proxy reports. From any other peer the headers are ignored.
    #[arg(long, value_name = "CIDR")]
    trust_proxy: Vec<Cidr>,
    /// Chat: messages each room keeps for newcomers and for resumes with `since`.
    #[arg(long, value_name = "N", default_value_t = 100)]
    history: usize,
    /// Chat: events queued per member; a member that falls this far behind is closed with
    /// 4008 and resumes with `since`.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    send_queue: u32,
    /// Chat: how long a long-polling GET waits for new events.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "25s")]
    poll_timeout: Duration,
    /// Chat: the bearer token of the push API (POST /api/rooms/ROOM/messages); the API is
    /// off without it. Read from WSDUPLEX_API_TOKEN if set.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "WSDUPLEX_API_TOKEN",
        hide_env_values = true
    )]
    api_token: Option<String>,
}

/// `--trust-proxy`, set once at start.
static TRUSTED_PROXIES: OnceLock<Vec<Cidr>> = OnceLock::new();

const PAGE: &str = include_str!("echo.html");

/// Runs the server: one thread per worker, each a single-threaded runtime with its own
/// `SO_REUSEPORT` listener on the same port, so the kernel spreads connections and no lock
/// is shared on the hot path. The main thread waits for SIGINT/SIGTERM.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let addr: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(&args.listen)
        .with_context(|| format!("cannot resolve {}", args.listen))?
        .next()
        .with_context(|| format!("{} resolves to no address", args.listen))?;
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _guard = rt.enter();
    let first = bind(addr).with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..workers {
        listeners.push(bind(addr).with_context(|| format!("cannot listen on {addr}"))?);
    }
    // Signal handlers exist before anyone can learn the port: a signal right after the
    // ready line is a graceful shutdown, never the default kill.
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("listening on {scheme}://{addr}");
    let mut config = ServerConfig::default();
    config.handshake_timeout = args.handshake_timeout;
    config.socket.ping_interval = args.ping_interval;
    config.socket.ping_timeout = args.ping_timeout;
    config.socket.idle_timeout = args.idle_timeout;
    config.deflate = args.deflate.then(|| args.deflate_args.config());
    let config = Arc::new(config);
    let _ = TRUSTED_PROXIES.set(args.trust_proxy.clone());
    let mut hub_config = HubConfig::default();
    hub_config.history = args.history;
    hub_config.queue = args.send_queue as usize;
    hub_config.poll_timeout = args.poll_timeout;
    hub_config.api_token = args.api_token.filter(|t| !t.is_empty());
    // Rooms span the workers: one hub, shared.
    let hub = Hub::new(hub_config);
    rt.spawn(hub.clone().maintain());
    let (stop_tx, stop_rx) = watch::channel(false);
    let threads: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(i, listener)| {
            let (config, tls, stop) = (config.clone(), tls.clone(), stop_rx.clone());
            let hub = hub.clone();
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || worker(listener, config, tls, hub, stop))
        })
        .collect::<Result<_, _>>()?;
    rt.block_on(async {
        tokio::select! {
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
    });
    // Chat members get 1001 from the hub; echo connections from the stop signal.
    hub.shutdown();
    let _ = stop_tx.send(true);
    for t in threads {
        let _ = t.join();
    }
    Ok(ExitCode::SUCCESS)
}

/// A listening socket with `SO_REUSEPORT`, handed over in std form: each worker registers
/// it with its own runtime.
fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(1024)?;
    listener.into_std()
}

fn worker(
    listener: std::net::TcpListener,
    config: Arc<ServerConfig>,
    tls: Option<TlsAcceptor>,
    hub: Hub,
    stop: watch::Receiver<bool>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return tracing::error!("worker runtime: {e}"),
    };
    rt.block_on(async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => return tracing::error!("worker listener: {e}"),
        };
        // Tracks handshake tasks and the echo tasks they hand over to, for graceful shutdown.
        let tasks = TaskTracker::new();
        let mut stopping = stop.clone();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, _)) => {
                        let (config, tls, stop) = (config.clone(), tls.clone(), stop.clone());
                        tasks.spawn(handle(tcp, config, tls, hub.clone(), stop, tasks.clone()));
                    }
                    // Out of descriptors and the like: keep serving the others.
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                _ = stopping.changed() => break,
            }
        }
        drop(listener);
        // Every connection sends 1001 and waits (bounded by its close timeout) for the reply.
        let grace = config.socket.close_timeout + Duration::from_secs(1);
        tasks.close();
        let _ = tokio::time::timeout(grace, tasks.wait()).await;
    });
}

/// The connection's first task: TLS, the request, the handshake. A WebSocket is handed to
/// a task of its own, so what an open connection holds for its lifetime is only the echo
/// loop's state, not this stage's buffers and timers.
async fn handle(
    tcp: TcpStream,
    config: Arc<ServerConfig>,
    tls: Option<TlsAcceptor>,
    hub: Hub,
    mut stop: watch::Receiver<bool>,
    tasks: TaskTracker,
) {
    let _ = tcp.set_nodelay(true);
    let peer = tcp.peer_addr().ok().map(|a| a.ip());
    match tls {
        None => {
            if let Some(ws) = open(tcp, peer, &config, &hub, &mut stop).await {
                tasks.spawn(echo(ws, stop));
            }
        }
        Some(acceptor) => {
            // The TLS stream is boxed, so plain connections do not carry its size.
            if let Some(ws) = open_tls(tcp, peer, acceptor, &config, &hub, &mut stop).await {
                tasks.spawn(echo(ws, stop));
            }
        }
    }
}

/// The TLS handshake, within the handshake timeout, then [`open`]. A failed handshake
/// ends this connection only.
async fn open_tls(
    tcp: TcpStream,
    peer: Option<IpAddr>,
    acceptor: TlsAcceptor,
    config: &ServerConfig,
    hub: &Hub,
    stop: &mut watch::Receiver<bool>,
) -> Option<WebSocket<Box<TlsStream<TcpStream>>>> {
    let handshake = tokio::time::timeout(
        config.handshake_timeout,
        wsduplex::tls::accept(&acceptor, tcp),
    );
    let tls = tokio::select! {
        r = handshake => match r {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!("tls handshake failed: {e}");
                return None;
            }
            Err(_) => {
                tracing::debug!("tls handshake timed out");
                return None;
            }
        },
        _ = stop.wait_for(|stopped| *stopped) => return None,
    };
    open(Box::new(tls), peer, config, hub, stop).await
}

/// Reads the request and routes it: a WebSocket for `/echo` (returned: it gets a task of its
/// own), the hub's paths served here, an HTTP answer otherwise.
async fn open<S>(
    io: S,
    peer: Option<IpAddr>,
    config: &ServerConfig,
    hub: &Hub,
    stop: &mut watch::Receiver<bool>,
) -> Option<WebSocket<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    // A client still sending its request when the server stops is simply dropped.
    let incoming = tokio::select! {
        r = read_request(io, config) => match r {
            Ok(i) => i,
            Err(e) => {
                tracing::debug!("request refused: {e}");
                return None;
            }
        },
        _ = stop.wait_for(|stopped| *stopped) => return None,
    };
    let path = incoming.path().split('?').next().unwrap_or_default();
    let method = incoming.request().method();
    if let Some(peer) = peer {
        // Behind a trusted reverse proxy, the address it reports; else the peer's.
        let trusted = TRUSTED_PROXIES.get().map_or(&[][..], Vec::as_slice);
        let client = client_addr(peer, incoming.request().headers(), trusted);
        tracing::debug!(%client, %peer, "{method} {path}");
    }
    if path == "/echo" {
        match incoming.accept(config).await {
            Ok(ws) => return Some(ws),
            Err(e) => {
                tracing::debug!("request ended: {e}");
                return None;
            }
        }
    }
    let path = path.to_string();
    let method = method.to_string();
    let incoming = hub.serve(incoming, config).await?;
    let result = match path.as_str() {
        _ if incoming.is_upgrade() => {
            incoming
                .respond(
                    404,
                    &[],
                    "text/plain",
                    b"no websocket endpoint here; try /chat/ROOM or /echo\n",
                )
                .await
        }
        "/echo.html" if method == "GET" || method == "HEAD" => {
            incoming
                .respond(
                    200,
                    &[("Cache-Control", "no-cache")],
                    "text/html; charset=utf-8",
                    PAGE.as_bytes(),
                )
                .await
        }
        "/echo.html" => {
            incoming
                .respond(
                    405,
                    &[("Allow", "GET, HEAD")],
                    "text/plain",
                    b"method not allowed\n",
                )
                .await
        }
        _ => {
            incoming
                .respond(404, &[], "text/plain", b"not found\n")
                .await
        }
    };
    if let Err(e) = result {
        tracing::debug!("request ended: {e}");
    }
    None
}

async fn echo<S>(mut ws: WebSocket<S>, mut stop: watch::Receiver<bool>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    // By reference: a socket moved into a nested future would be stored twice.
    if let Err(e) = echo_loop(&mut ws, &mut stop).await {
        tracing::debug!("connection ended: {e}");
    }
}

async fn echo_loop<S>(
    ws: &mut WebSocket<S>,
    stop: &mut watch::Receiver<bool>,
) -> wsduplex::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if *stop.borrow() {
        Box::pin(ws.close(CloseCode::GOING_AWAY, "server shutting down")).await?;
    }
    // Created once and polled by reference: no per-message registration with the channel.
    let stopped = stop.changed();
    tokio::pin!(stopped);
    let mut closing = false;
    loop {
        tokio::select! {
            // Fixed order, messages first: no random number per message, and the stop
            // future (whose poll takes the channel's waiter lock) is polled only when the
            // socket has nothing to deliver, which happens after every batch of reads.
            biased;
            item = ws.recv() => match item {
                // Queued, not flushed: the socket flushes when it has nothing left to read.
                Some(Ok(msg)) if msg.is_data() => {
                    if ws.feed(msg).await.is_err() {
                        // Closing: the rest of the close handshake still runs below.
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            },
            changed = &mut stopped, if !closing => {
                closing = true;
                if changed.is_ok() {
                    // Boxed: a rare path whose future would otherwise sit in every connection.
                    Box::pin(ws.close(CloseCode::GOING_AWAY, "server shutting down")).await?;
                }
            }
        }
    }
}
