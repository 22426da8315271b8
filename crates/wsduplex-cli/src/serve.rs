//! `wsduplex serve`: the chat hub (`/` is the chat page; `/chat/ROOM`, `/poll/...`,
//! `/api/...`), `/echo` echoes every message with its type, `/echo.html` is an echo test
//! page; over TLS with `--tls-cert`/`--tls-key` or `--tls-self-signed`.

use crate::bench::parse_duration;
use anyhow::Context as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use wsduplex::auth::{AuthHook, TokenAuth};
use wsduplex::forwarded::{client_addr, Cidr};
use wsduplex::limits::{ConnectionLimiter, LimitError, Permit};
use wsduplex::proto::handshake::server::http_response;
use wsduplex::server::{read_request, ServerConfig};
use wsduplex::tls::{TlsAcceptor, TlsStream};
use wsduplex::{SlowReader, WebSocket};
use wsduplex_hub::{Hub, HubConfig, RedisConfig};

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
    /// Chat: be one node of many, sharing rooms through this Redis
    /// (`redis://[:PASSWORD@]HOST:PORT[/DB]`; TLS:
    /// `rediss://...[?cacert=CA.pem[&cert=C.pem&key=K.pem]]`; Sentinel:
    /// `redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER`, or `rediss+sentinel://`): every
    /// node started with the same URL serves the same rooms, in one order, with the same ids
    /// and a shared history. Read from WSDUPLEX_REDIS if set. Default: this process alone.
    #[arg(
        long,
        value_name = "URL",
        env = "WSDUPLEX_REDIS",
        hide_env_values = true
    )]
    redis: Option<String>,
    /// Require this token (repeatable; or WSDUPLEX_AUTH_TOKEN) to open a WebSocket (/echo,
    /// /chat) or a long-polling session, as `Authorization: Bearer TOKEN`, the query
    /// parameter `access_token=TOKEN`, or the cookie `wsduplex_token=TOKEN`; others get 401.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "WSDUPLEX_AUTH_TOKEN",
        hide_env_values = true
    )]
    auth_token: Vec<String>,
    /// Largest message a client may send (e.g. 16MiB, 64KiB, 1000); larger ones are closed
    /// with 1009. Also bounds a compressed message once inflated.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "16MiB")]
    max_message_size: u64,
    /// Largest frame a client may send; larger ones are closed with 1009 from the header,
    /// before any payload is read.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "16MiB")]
    max_frame_size: u64,
    /// Most frames a client's message may arrive in; more are closed with 1009 "too many
    /// fragments" (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 131_072)]
    max_fragments: u32,
    /// Outgoing bytes queued for one connection beyond which its client counts as a slow
    /// reader (see --slow-reader).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "1MiB")]
    send_buffer: u64,
    /// /echo: what happens to a client that reads more slowly than it sends, once
    /// --send-buffer bytes wait for it. wait: stop reading from it until it catches up
    /// (nothing lost); drop: drop the echoes that do not fit; close: close it with 1008
    /// "too slow". Chat members that fall --send-queue events behind are always closed with
    /// 4008.
    #[arg(long, value_name = "POLICY", value_enum, default_value_t = SlowReaderArg::Wait)]
    slow_reader: SlowReaderArg,
    /// Connections open at once, at most; beyond it a new connection gets 503 (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 50_000)]
    max_connections: usize,
    /// Connections open at once from one client address (the one --trust-proxy proxies
    /// report, else the peer's), at most; beyond it 429 (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 256)]
    max_connections_per_client: usize,
    /// Accept WebSocket upgrades and chat POSTs only from pages of this origin (e.g.
    /// `https://chat.example.com`; repeatable): others get 403. Requests without an Origin
    /// header (non-browser clients) are not affected. Default: any origin.
    #[arg(long, value_name = "ORIGIN")]
    allow_origin: Vec<String>,
}

/// `--slow-reader`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum SlowReaderArg {
    Wait,
    Drop,
    Close,
}

impl From<SlowReaderArg> for SlowReader {
    fn from(a: SlowReaderArg) -> Self {
        match a {
            SlowReaderArg::Wait => SlowReader::Wait,
            SlowReaderArg::Drop => SlowReader::Drop,
            SlowReaderArg::Close => SlowReader::Close,
        }
    }
}

/// `16MiB`, `64KiB`, `1MB`, `512`: a byte count with an optional binary (KiB, MiB, GiB) or
/// decimal (KB, MB, GB) unit.
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 16MiB, 64KiB, 1000)"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} (use KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    match n.checked_mul(scale) {
        Some(0) => Err("a size of 0 would refuse every message".into()),
        Some(v) => Ok(v),
        None => Err(format!("{s:?} is too large")),
    }
}

/// What every connection of the server shares.
struct Shared {
    /// The hub's WebSockets and every request.
    config: ServerConfig,
    /// `/echo`'s WebSockets: `config` with the `--slow-reader` policy (the hub's members
    /// always wait at the socket: their own queues are the hub's).
    echo_config: ServerConfig,
    tls: Option<TlsAcceptor>,
    hub: Hub,
    limiter: Arc<ConnectionLimiter>,
    /// `--trust-proxy`.
    trusted: Vec<Cidr>,
    /// `--allow-origin` (empty: any).
    origins: Vec<String>,
    metrics: Metrics,
}

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
    let listeners =
        listen(addr, workers).with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listeners[0].local_addr()?;
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
    config.socket.protocol.max_message_size = args.max_message_size;
    config.socket.protocol.max_frame_size = args.max_frame_size;
    config.socket.protocol.max_fragments = match args.max_fragments {
        0 => u32::MAX,
        n => n,
    };
    config.socket.max_write_buffer = usize::try_from(args.send_buffer).unwrap_or(usize::MAX);
    let tokens: Vec<&String> = args.auth_token.iter().filter(|t| !t.is_empty()).collect();
    if !tokens.is_empty() {
        config.auth = Some(AuthHook::new(TokenAuth::new(tokens)));
    }
    let mut hub_config = HubConfig::default();
    hub_config.history = args.history;
    hub_config.queue = args.send_queue as usize;
    hub_config.poll_timeout = args.poll_timeout;
    hub_config.api_token = args.api_token.filter(|t| !t.is_empty());
    // Rooms span the workers: one hub, shared.
    let hub = match args.redis.filter(|u| !u.is_empty()) {
        None => Hub::new(hub_config),
        Some(url) => Hub::with_redis(hub_config, RedisConfig::new(url)).context("--redis")?,
    };
    rt.spawn(hub.clone().maintain());
    let mut echo_config = config.clone();
    echo_config.socket.slow_reader = args.slow_reader.into();
    // This thread runs the hub's background work (with --redis, its fan-out).
    let metrics = Metrics::default();
    metrics.sockets.attach_current_thread();
    let shared = Arc::new(Shared {
        echo_config,
        config,
        tls,
        hub: hub.clone(),
        limiter: ConnectionLimiter::new(args.max_connections, args.max_connections_per_client),
        trusted: args.trust_proxy,
        origins: args.allow_origin,
        metrics,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let threads: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(i, listener)| {
            let (shared, stop) = (shared.clone(), stop_rx.clone());
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || worker(listener, shared, stop))
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
    // With --redis: this node's members leave their rooms on every node now, not when the
    // presence TTL runs out.
    rt.block_on(hub.closed());
    Ok(ExitCode::SUCCESS)
}

/// One `SO_REUSEPORT` listening socket per worker, on the same port: the kernel spreads
/// connections over them. A plain bind comes first. It fails if anything listens on the
/// port already (`SO_REUSEPORT` alone would let a second server of the same user share the
/// port silently, each getting some of the other's connections), and it picks the port
/// when asked for port 0.
fn listen(addr: SocketAddr, workers: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let addr = std::net::TcpListener::bind(addr)?.local_addr()?;
    (0..workers).map(|_| bind(addr)).collect()
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
    // Linux copies TCP_NODELAY from the listening socket to each accepted one, which saves
    // a setsockopt per connection (see `handle`).
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(1024)?;
    listener.into_std()
}

fn worker(listener: std::net::TcpListener, shared: Arc<Shared>, stop: watch::Receiver<bool>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return tracing::error!("worker runtime: {e}"),
    };
    shared.metrics.sockets.attach_current_thread();
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
                    Ok((tcp, peer)) => match admit(&shared, peer.ip()) {
                        Ok(permit) => {
                            let (shared, stop) = (shared.clone(), stop.clone());
                            let span = connection_span(peer);
                            let task = handle(tcp, peer.ip(), permit, shared, stop, tasks.clone(), span.clone());
                            spawn_in(&tasks, task, span);
                        }
                        Err(e) => refuse_now(tcp, &e),
                    },
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
        let grace = shared.config.socket.close_timeout + Duration::from_secs(1);
        tasks.close();
        let _ = tokio::time::timeout(grace, tasks.wait()).await;
    });
}

/// The connection's first task: TLS, the request, the handshake. A WebSocket is handed to
/// a task of its own, so what an open connection holds for its lifetime is only the echo
/// loop's state, not this stage's buffers and timers.
async fn handle(
    tcp: TcpStream,
    peer: IpAddr,
    mut permit: Permit,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    tasks: TaskTracker,
    span: tracing::Span,
) {
    // Inherited from the listening socket on Linux (a test checks it); one syscall less per
    // connection out of about ten.
    if !cfg!(target_os = "linux") {
        let _ = tcp.set_nodelay(true);
    }
    match &shared.tls {
        None => {
            // Boxed: the request's stage is 3.4 KB of state, and this task's future is
            // moved (copied) several times on its way into its task cell and out of it.
            // Allocated once in place, it costs one allocation instead.
            let opened = Box::pin(open(tcp, peer, &mut permit, &shared, &mut stop)).await;
            if let Some(ws) = opened {
                echo::spawn(&tasks, ws, permit, stop, span);
            }
        }
        Some(acceptor) => {
            // The TLS stream is boxed, so plain connections do not carry its size.
            let acceptor = acceptor.clone();
            let opened = Box::pin(open_tls(
                tcp,
                peer,
                acceptor,
                &mut permit,
                &shared,
                &mut stop,
            ))
            .await;
            if let Some(ws) = opened {
                echo::spawn(&tasks, ws, permit, stop, span);
            }
        }
    }
}

/// Connection ids, for the logs.
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// The span every log line of a connection is in: `conn{id=7 peer=127.0.0.1:5050}`. When
/// logging is below `info` it is disabled and costs nothing.
fn connection_span(peer: SocketAddr) -> tracing::Span {
    let id = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
    tracing::info_span!("conn", id, peer = %peer)
}

/// Spawns a connection's task inside its span, or bare when the span is disabled (no bytes
/// per connection spent on logging that is off).
fn spawn_in<F>(tasks: &TaskTracker, task: F, span: tracing::Span)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    use tracing::Instrument as _;
    if span.is_disabled() {
        tasks.spawn(task);
    } else {
        tasks.spawn(task.instrument(span));
    }
}

/// Counts a new connection against the total and, unless it comes from a `--trust-proxy`
/// proxy (whose clients are known only from the request's headers), against its peer's
/// address: so requests that never finish (slowloris) count against their sender.
fn admit(shared: &Shared, peer: IpAddr) -> Result<Permit, LimitError> {
    let mut permit = shared
        .limiter
        .try_open()
        .inspect_err(|_| Metrics::add(&shared.metrics.refused_total_limit))?;
    if !shared.trusted.iter().any(|c| c.contains(peer)) {
        // Untrusted: the peer is the client (in canonical form, as `client_addr` gives it).
        let client = client_addr(peer, std::iter::empty(), &[]);
        shared
            .limiter
            .attribute(&mut permit, client)
            .inspect_err(|_| Metrics::add(&shared.metrics.refused_client_limit))?;
    }
    Ok(permit)
}

/// What a client over a limit gets: `503` or `429`, a hint to come back, the reason.
const RETRY_AFTER: [(&str, &str); 1] = [("Retry-After", "5")];

/// Over a limit at accept: the refusal if the socket takes it at once (never waiting on
/// this client), then close.
fn refuse_now(tcp: TcpStream, e: &LimitError) {
    let body = format!("{e}\n");
    let response = http_response(e.status(), &RETRY_AFTER, "text/plain", body.as_bytes());
    let _ = tcp.try_write(&response);
    tracing::debug!("connection refused: {e}");
}

/// The TLS handshake, within the handshake timeout, then [`open`]. A failed handshake
/// ends this connection only.
async fn open_tls(
    tcp: TcpStream,
    peer: IpAddr,
    acceptor: TlsAcceptor,
    permit: &mut Permit,
    shared: &Shared,
    stop: &mut watch::Receiver<bool>,
) -> Option<WebSocket<Box<TlsStream<TcpStream>>>> {
    let handshake = tokio::time::timeout(
        shared.config.handshake_timeout,
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
    open(Box::new(tls), peer, permit, shared, stop).await
}

/// Reads the request and routes it: a WebSocket for `/echo` (returned: it gets a task of its
/// own), the hub's paths served here, an HTTP answer otherwise.
async fn open<S>(
    io: S,
    peer: IpAddr,
    permit: &mut Permit,
    shared: &Shared,
    stop: &mut watch::Receiver<bool>,
) -> Option<WebSocket<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let config = &shared.config;
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
    // Behind a trusted reverse proxy, the address it reports; else the peer's.
    let client = client_addr(peer, incoming.request().headers(), &shared.trusted);
    tracing::debug!(%client, %peer, "{method} {path}");
    if let Err(e) = shared.limiter.attribute(permit, client) {
        Metrics::add(&shared.metrics.refused_client_limit);
        let body = format!("{e}\n");
        let _ = incoming
            .respond(e.status(), &RETRY_AFTER, "text/plain", body.as_bytes())
            .await;
        return None;
    }
    // Cross-site WebSocket hijacking and cross-site POSTs: a browser always says which
    // page is asking.
    let unsafe_method = !matches!(method, "GET" | "HEAD") || incoming.is_upgrade();
    if unsafe_method && !shared.origins.is_empty() {
        let origin = incoming.request().header("origin");
        if origin.is_some_and(|o| !shared.origins.iter().any(|a| a.as_bytes() == o)) {
            Metrics::add(&shared.metrics.refused_origin);
            let _ = incoming
                .respond(403, &[], "text/plain", b"origin not allowed\n")
                .await;
            return None;
        }
    }
    if matches!(method, "GET" | "HEAD") && !incoming.is_upgrade() {
        match path {
            "/healthz" => {
                let _ = incoming.respond(200, &[], "text/plain", b"ok\n").await;
                return None;
            }
            "/metrics" => {
                let body = shared.metrics.render(shared);
                let ctype = "text/plain; version=0.0.4; charset=utf-8";
                let _ = incoming.respond(200, &[], ctype, body.as_bytes()).await;
                return None;
            }
            _ => {}
        }
    }
    if path == "/echo" {
        match incoming.accept(&shared.echo_config).await {
            Ok(ws) => return Some(ws),
            Err(e) => {
                tracing::debug!("request ended: {e}");
                return None;
            }
        }
    }
    let path = path.to_string();
    let method = method.to_string();
    let incoming = shared.hub.serve(incoming, config).await?;
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

/// `/echo`: the task that echoes an open WebSocket, and the workers' stop signal for it.
mod echo {
    use super::spawn_in;
    use futures_sink::Sink;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::{AsyncRead, AsyncWrite};
    use tokio::sync::watch;
    use tokio_util::task::TaskTracker;
    use wsduplex::limits::Permit;
    use wsduplex::{CloseCode, CloseFrame, Message, Utf8Bytes, WebSocket};

    /// Hands an open WebSocket to an echo task of its own. The first on each worker also
    /// starts the task that waits for the stop signal on the worker's behalf.
    pub(super) fn spawn<S>(
        tasks: &TaskTracker,
        ws: WebSocket<S>,
        permit: Permit,
        stop: watch::Receiver<bool>,
        span: tracing::Span,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        if let Some(watcher) = registry::watcher(stop) {
            tasks.spawn(watcher);
        }
        let echo = Echo {
            ws,
            entry: registry::Entry::new(permit),
            closing: false,
        };
        spawn_in(tasks, echo, span);
    }

    /// The echo loop of one connection, written out as a future. An idle connection is this
    /// future in a tokio task, and nothing else: the socket, its entry in the worker's
    /// registry, a flag. (An `async fn` that `select!`ed over `recv()` and a `watch` stop
    /// future held both futures, and copies of their state, in every connection.)
    ///
    /// Echoes are queued, not flushed: the socket flushes when it has nothing left to read,
    /// so a batch of messages goes out in one write.
    struct Echo<S> {
        ws: WebSocket<S>,
        entry: registry::Entry,
        /// The 1001 is queued: the stop signal has nothing more to say.
        closing: bool,
    }

    impl<S> Future for Echo<S>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        type Output = ();

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let this = self.get_mut();
            loop {
                // Text and binary messages are echoed as they are read, borrowed from the
                // read buffer; the socket takes one only when its reply can be queued, so
                // none waits in here while the peer does not read. Pings are answered by the
                // socket; what comes out here is a ping, a pong, the close, or an error.
                let item = this.ws.poll_recv_with(cx, |msg, reply| {
                    // Fails only when closing or past the slow-reader limit; the close
                    // handshake goes on in the reads.
                    let _ = reply.send(msg);
                });
                match item {
                    Poll::Ready(Some(Ok(_))) => {}
                    Poll::Ready(Some(Err(e))) => {
                        tracing::debug!("connection ended: {e}");
                        return Poll::Ready(());
                    }
                    Poll::Ready(None) => return Poll::Ready(()),
                    // The stop signal is looked at only when the socket has nothing to deliver.
                    Poll::Pending => {
                        if this.closing || !this.entry.stopped(cx.waker()) {
                            return Poll::Pending;
                        }
                        this.closing = true;
                        // The next read flushes it, then waits for the reply (within the close
                        // timeout).
                        let _ =
                            Pin::new(&mut this.ws).start_send(Message::Close(Some(CloseFrame {
                                code: CloseCode::GOING_AWAY,
                                reason: Utf8Bytes::from_static("server shutting down"),
                            })));
                    }
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        /// An idle echo connection is this future in a tokio task: a cell of its own
        /// allocated in steps of 128 bytes, with the task tracker's 8 bytes and about 110 of
        /// tokio's beside the future. Up to 400 bytes the cell is 512; at 408, 640.
        #[test]
        #[cfg(target_pointer_width = "64")]
        fn an_idle_echo_connection_fits_a_512_byte_task_cell() {
            let size = std::mem::size_of::<super::Echo<tokio::net::TcpStream>>();
            assert!(size <= 400, "Echo<TcpStream> is {size} bytes");
        }
    }

    /// The echo connections of a worker thread: their permits, and the wakers that the stop
    /// signal wakes. A worker is a current-thread runtime, so an echo task is polled and
    /// dropped on the thread that spawned it. A connection costs 48 bytes in a slab here,
    /// instead of a `watch` receiver and a pinned `changed()` future (and its permit) in
    /// its task.
    mod registry {
        use std::cell::RefCell;
        use std::future::Future;
        use std::task::Waker;
        use tokio::sync::watch;
        use wsduplex::limits::Permit;

        #[derive(Default)]
        struct Registry {
            /// The worker is stopping; the wakers were woken.
            stopped: bool,
            /// A task waits for the stop signal on this thread.
            watched: bool,
            slots: Vec<Option<Slot>>,
            /// Indices of the empty slots.
            free: Vec<u32>,
        }

        struct Slot {
            /// Set when the task first waits.
            waker: Option<Waker>,
            /// Counts the connection in the limits until its task ends.
            _permit: Permit,
        }

        thread_local! {
            static REGISTRY: RefCell<Registry> = RefCell::default();
        }

        /// An echo task's slot in its worker's registry, emptied when the task ends.
        pub(in super::super) struct Entry(u32);

        impl Entry {
            pub(in super::super) fn new(permit: Permit) -> Self {
                REGISTRY.with_borrow_mut(|r| {
                    let slot = Some(Slot {
                        waker: None,
                        _permit: permit,
                    });
                    match r.free.pop() {
                        Some(i) => {
                            r.slots[i as usize] = slot;
                            Self(i)
                        }
                        None => {
                            r.slots.push(slot);
                            Self(u32::try_from(r.slots.len() - 1).expect("< 2^32 connections"))
                        }
                    }
                })
            }

            /// Whether the worker is stopping; if not, `waker` is woken when it does.
            pub(in super::super) fn stopped(&mut self, waker: &Waker) -> bool {
                REGISTRY.with_borrow_mut(|r| {
                    if r.stopped {
                        return true;
                    }
                    let slot = r.slots[self.0 as usize].as_mut().expect("own slot");
                    match &mut slot.waker {
                        // A tokio task's waker stays the same; checking is cheap.
                        Some(w) if w.will_wake(waker) => {}
                        w => *w = Some(waker.clone()),
                    }
                    false
                })
            }
        }

        impl Drop for Entry {
            fn drop(&mut self) {
                // A task dropped while the thread's locals are torn down has nothing to give
                // back (its permit goes with the registry).
                let _ = REGISTRY.try_with(|r| {
                    let mut r = r.borrow_mut();
                    let slot = r.slots[self.0 as usize].take();
                    r.free.push(self.0);
                    // Dropped (the permit with it) outside the borrow.
                    slot
                });
            }
        }

        /// The task that waits for `stop` on this thread's behalf, if none was started yet.
        pub(in super::super) fn watcher(
            mut stop: watch::Receiver<bool>,
        ) -> Option<impl Future<Output = ()> + Send + 'static> {
            let first = REGISTRY.with_borrow_mut(|r| !std::mem::replace(&mut r.watched, true));
            first.then_some(async move {
                // The sender gone without a stop: the tasks run until their peers leave.
                if stop.wait_for(|stopped| *stopped).await.is_ok() {
                    let wakers: Vec<Waker> = REGISTRY.with_borrow_mut(|r| {
                        r.stopped = true;
                        r.slots
                            .iter_mut()
                            .flatten()
                            .filter_map(|s| s.waker.take())
                            .collect()
                    });
                    for w in wakers {
                        w.wake();
                    }
                }
            })
        }
    }
}

/// Counters for `/metrics` (Prometheus text format). Those here count connection setup,
/// shared by the workers; what the sockets do (handshakes, messages, bytes, close codes,
/// overflows) is counted per thread by [`wsduplex::metrics`] and added up when scraped.
#[derive(Default)]
struct Metrics {
    sockets: wsduplex::metrics::Metrics,
    refused_total_limit: AtomicU64,
    refused_client_limit: AtomicU64,
    refused_origin: AtomicU64,
}

impl Metrics {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, shared: &Shared) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let now = self.sockets.snapshot();
        let codes = |direction: &str, counts: &[(Option<u16>, u64)]| -> Vec<(String, u64)> {
            counts
                .iter()
                .map(|&(code, n)| {
                    let code = code.map_or("other".to_string(), |c| c.to_string());
                    (format!("direction=\"{direction}\",code=\"{code}\""), n)
                })
                .collect()
        };
        let label = |l: &str, v: u64| (l.to_string(), v);
        let metrics = [
            (
                "connections_open",
                "gauge",
                "TCP connections open now.",
                vec![label("", shared.limiter.open() as u64)],
            ),
            (
                "handshakes_total",
                "counter",
                "WebSocket opening handshakes (/echo and /chat), by outcome.",
                vec![
                    label("outcome=\"accepted\"", now.handshakes_accepted),
                    label("outcome=\"refused\"", now.handshakes_refused),
                ],
            ),
            (
                "connections_refused_total",
                "counter",
                "Connections refused by a limit or a policy.",
                vec![
                    label("reason=\"max_connections\"", get(&self.refused_total_limit)),
                    label(
                        "reason=\"max_connections_per_client\"",
                        get(&self.refused_client_limit),
                    ),
                    label("reason=\"origin\"", get(&self.refused_origin)),
                ],
            ),
            (
                "messages_total",
                "counter",
                "WebSocket text and binary messages, received (in) and sent (out).",
                vec![
                    label("direction=\"in\"", now.messages_in),
                    label("direction=\"out\"", now.messages_out),
                ],
            ),
            (
                "message_bytes_total",
                "counter",
                "Payload bytes of those messages (uncompressed).",
                vec![
                    label("direction=\"in\"", now.bytes_in),
                    label("direction=\"out\"", now.bytes_out),
                ],
            ),
            (
                "close_codes_total",
                "counter",
                "Close codes sent, and received (1005: a close without a code; 1006: none).",
                [
                    codes("sent", &now.closes_sent),
                    codes("received", &now.closes_received),
                ]
                .concat(),
            ),
            (
                "queue_overflows_total",
                "counter",
                "Slow readers: messages dropped, and connections closed, for a full queue.",
                vec![
                    label("action=\"dropped\"", now.overflows_dropped),
                    label("action=\"closed\"", now.overflows_closed),
                ],
            ),
            (
                "hub_sessions",
                "gauge",
                "Long-polling sessions open now.",
                vec![label("", shared.hub.session_count() as u64)],
            ),
        ];
        let mut out = String::with_capacity(4096);
        for (name, kind, help, samples) in metrics {
            out.push_str(&format!(
                "# HELP wsduplex_{name} {help}\n# TYPE wsduplex_{name} {kind}\n"
            ));
            for (labels, value) in samples {
                if labels.is_empty() {
                    out.push_str(&format!("wsduplex_{name} {value}\n"));
                } else {
                    out.push_str(&format!("wsduplex_{name}{{{labels}}} {value}\n"));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{listen, parse_size};

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

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("64kib"), Ok(64 << 10));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("512"), Ok(512));
        for bad in ["", "x", "10 parsecs", "0", "99999999999999GiB", "-1"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
