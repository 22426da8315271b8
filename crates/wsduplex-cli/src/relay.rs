//! `wsduplex relay --listen ADDR --to ws[s]://UPSTREAM`: a WebSocket relay that opens one
//! upstream connection per client and passes messages both ways, and with `--trace` (or
//! `--trace-json`) prints every frame of both connections as it was on the wire.
//!
//! Negotiation is end to end: upstream is offered the client's subprotocols and its
//! permessage-deflate offer, and the client gets what upstream chose (no deflate if upstream
//! declined). Each connection is a full endpoint of its own (our core unmasks, inflates and
//! checks every frame), so a protocol error on either side is answered there with its close
//! code and passed on to the other side. The frames are seen through a [`wsduplex::tap::Tap`]
//! on each transport, traced by the core's [`wsduplex::proto::trace::Tracer`]
//! (`crate::frames` prints them).

use crate::frames::{self, fields, Ends, Format, Printer};
use anyhow::Context as _;
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use wsduplex::proto::handshake::client::ResponseError;
use wsduplex::server::{read_request, ServerConfig};
use wsduplex::{
    ClientConfig, CloseCode, DeflateConfig, Error, Message, ReadHalf, WebSocket, WriteHalf,
};

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port; the ready line shows it).
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// Upstream ws:// or wss:// URL; a client's request path is appended to its path
    /// (`--to ws://h:9000/api` and a request for `/chat?x=1` go to `/api/chat?x=1`).
    #[arg(long, value_name = "URL")]
    to: String,
    /// Print every frame in both directions, one line each, on stdout.
    #[arg(long)]
    trace: bool,
    /// Print every frame as a JSON line on stdout (see docs/relay.md for the fields).
    #[arg(long, conflicts_with = "trace")]
    trace_json: bool,
    /// wss:// upstream: also trust the CA certificates in this PEM file (repeatable).
    #[arg(long, value_name = "FILE")]
    cacert: Vec<PathBuf>,
    /// wss:// upstream: do not check its certificate. Dangerous: anyone on the path can
    /// read and change the traffic.
    #[arg(short = 'k', long)]
    insecure: bool,
}

/// What every connection shares.
struct Relay {
    upstream: wsduplex::client::Target,
    client: ClientConfig,
    server: ServerConfig,
    printer: Option<Arc<Printer>>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let upstream = wsduplex::client::Target::parse(&args.to).context("--to")?;
    let mut client = ClientConfig::default();
    for path in &args.cacert {
        let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        client.tls.extra_ca_pem.push(pem);
    }
    client.tls.dangerous_accept_invalid_certs = args.insecure;
    // Each side's close is answered with the other side's reply, once it comes: what the
    // other side was still sending is delivered first (see `forward`).
    client.socket.protocol = client.socket.protocol.clone().defer_close_reply(true);
    let mut server = ServerConfig::default();
    server.socket.protocol = server.socket.protocol.clone().defer_close_reply(true);
    let format = if args.trace_json {
        Some(Format::Json)
    } else {
        args.trace.then_some(Format::Text)
    };
    let relay = Arc::new(Relay {
        upstream,
        client,
        server,
        printer: format.map(|format| {
            Arc::new(Printer {
                format,
                stderr: false,
            })
        }),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let stop = crate::serve::stop_signal()?;
        println!("listening on ws://{}", listener.local_addr()?);
        let ids = AtomicU64::new(0);
        tokio::pin!(stop);
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    // Out of descriptors, say: the next accept may succeed.
                    Err(e) => { eprintln!("wsduplex relay: accept: {e}"); continue; }
                },
                () = &mut stop => return Ok(ExitCode::SUCCESS),
            };
            let _ = tcp.set_nodelay(true);
            let id = ids.fetch_add(1, Ordering::Relaxed) + 1;
            let relay = relay.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                let log = Log {
                    id,
                    start,
                    printer: relay.printer.clone(),
                };
                log.event(
                    &format!("client {peer} connected"),
                    &[
                        ("event", "accepted".into()),
                        ("peer", peer.to_string().into()),
                    ],
                );
                let tcp = frames::tap(
                    tcp,
                    true,
                    Ends {
                        client: "client",
                        server: "relay",
                    },
                    id,
                    start,
                    relay.printer.clone(),
                );
                connection(tcp, &relay, &log).await;
            });
        }
    })
}

/// What the relay says about one connection: a line on stderr, and a JSON event with
/// `--trace-json`.
struct Log {
    id: u64,
    start: Instant,
    printer: Option<Arc<Printer>>,
}

impl Log {
    fn event(&self, text: &str, json: &[(&str, Value)]) {
        match self.printer.as_deref() {
            Some(p) if p.format == Format::Json => p.json_event(self.id, self.start, fields(json)),
            Some(p) => p.line(&format!("[{}] {text}", self.id)),
            None => {}
        }
    }

    /// Errors are also said on stderr, traced or not.
    fn error(&self, text: &str, json: &[(&str, Value)]) {
        eprintln!("wsduplex relay: [{}] {text}", self.id);
        if self.printer.is_some() {
            self.event(text, json);
        }
    }
}

/// One client: read its request, open upstream with what it offered, answer it with what
/// upstream chose, then pass messages until both sides are closed.
async fn connection<S>(tcp: S, relay: &Relay, log: &Log)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // A malformed or oversized head is answered (400/431) by read_request.
    let Ok(incoming) = read_request(tcp, &relay.server).await else {
        return;
    };
    let request = incoming.request();
    if let Err(e) = request.validate_upgrade() {
        let _ = incoming.reject(e).await;
        return;
    }
    let mut config = relay.client.clone();
    config.subprotocols = request.subprotocols().map(str::to_string).collect();
    config.deflate = request
        .negotiate_deflate(&DeflateConfig::default())
        .map(|offered| {
            // The client's offer, as ours: the same windows and context takeover.
            let mut d = DeflateConfig::default();
            d.server_no_context_takeover = offered.server_no_context_takeover;
            d.client_no_context_takeover = offered.client_no_context_takeover;
            d.server_max_window_bits = offered.server_max_window_bits;
            d.client_max_window_bits = offered.client_max_window_bits;
            d
        });
    config.origin = request
        .header("origin")
        .map(|o| String::from_utf8_lossy(o).into_owned());
    for (name, value) in request.headers() {
        if forwarded(name) {
            if let Ok(value) = std::str::from_utf8(value) {
                config.headers.push((name.to_string(), value.to_string()));
            }
        }
    }
    let url = upstream_url(&relay.upstream, request.path());
    let start = log.start;
    let printer = relay.printer.clone();
    let ends = Ends {
        client: "relay",
        server: "upstream",
    };
    let id = log.id;
    let upstream = wsduplex::client::connect_wrapped(url.as_str(), &config, move |io| {
        frames::tap(io, false, ends, id, start, printer)
    })
    .await;
    let (up, handshake) = match upstream {
        Ok(u) => u,
        Err(e) => {
            // A refusal's own status reaches the client (401, 404...); anything else is
            // the gateway's failure.
            let status = match &e {
                Error::Response(ResponseError::Status { status, .. }) => *status,
                Error::ConnectTimeout | Error::HandshakeTimeout => 504,
                _ => 502,
            };
            log.error(
                &format!("upstream {url}: {e:#}; answering the client {status}"),
                &[
                    ("event", "upstream_failed".into()),
                    ("error", format!("{e:#}").into()),
                    ("status", status.into()),
                ],
            );
            let body = format!("upstream {}: {e}\n", relay.upstream.host_header);
            let _ = incoming
                .respond(status, &[], "text/plain", body.as_bytes())
                .await;
            return;
        }
    };
    let response = &handshake.response;
    let mut socket = relay.server.socket.clone();
    if let Some(up) = response.deflate {
        // Upstream's agreement, answered to the client within what the client offered.
        let mut policy = DeflateConfig::default();
        policy.server_no_context_takeover = up.server_no_context_takeover;
        policy.client_no_context_takeover = up.client_no_context_takeover;
        policy.server_max_window_bits = up.server_max_window_bits;
        policy.client_max_window_bits = up.client_max_window_bits;
        let agreed = request
            .negotiate_deflate(&policy)
            .or_else(|| request.negotiate_deflate(&DeflateConfig::default()));
        socket.protocol = socket.protocol.deflate(agreed, &policy);
    }
    let deflate = socket.protocol.deflate.map(|d| d.to_header());
    let subprotocol = response.subprotocol.clone();
    let Ok(client) = incoming
        .accept_with(subprotocol.as_deref(), &[], socket)
        .await
    else {
        return;
    };
    log.event(
        &format!(
            "open: upstream {url}, subprotocol {}, {}",
            subprotocol.as_deref().unwrap_or("none"),
            deflate.as_deref().unwrap_or("no compression")
        ),
        &[
            ("event", "open".into()),
            ("upstream", url.as_str().into()),
            ("subprotocol", subprotocol.into()),
            ("deflate", deflate.into()),
        ],
    );
    pump(client, up, log).await;
}

/// Request headers passed upstream: not the handshake's own, not hop-by-hop ones, not
/// `Host` (upstream's is its own) nor `Origin` (passed as the client's origin).
fn forwarded(name: &str) -> bool {
    const NOT: [&str; 14] = [
        "host",
        "origin",
        "upgrade",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "content-length",
        "proxy-authorization",
        "proxy-connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
    ];
    let name = name.to_ascii_lowercase();
    !NOT.contains(&name.as_str()) && name != "sec-websocket-protocol"
}

/// `--to`'s URL with the client's path appended to its path (and the queries joined).
fn upstream_url(to: &wsduplex::client::Target, request_path: &str) -> String {
    let split = |p: &str| -> (String, Option<String>) {
        p.split_once('?').map_or((p.to_string(), None), |(p, q)| {
            (p.to_string(), Some(q.to_string()))
        })
    };
    let ((base, base_query), (path, query)) = (split(&to.path), split(request_path));
    let mut joined = format!("{}{path}", base.trim_end_matches('/'));
    if joined.is_empty() {
        joined.push('/');
    }
    let query = match (base_query, query) {
        (Some(b), Some(q)) => format!("?{b}&{q}"),
        (Some(q), None) | (None, Some(q)) => format!("?{q}"),
        (None, None) => String::new(),
    };
    let scheme = if to.tls { "wss" } else { "ws" };
    format!("{scheme}://{}{joined}{query}", to.host_header)
}

/// Which side a message came from.
#[derive(Clone, Copy)]
enum Side {
    Client,
    Upstream,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
        }
    }
}

/// Both directions at once, each until its side is closed.
async fn pump<A, B>(client: WebSocket<A>, upstream: WebSocket<B>, log: &Log)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_rx, mut client_tx) = client.split();
    let (mut up_rx, mut up_tx) = upstream.split();
    // Where each side's closing stands (both directions run in this task).
    let (client_state, up_state) = (Closing::default(), Closing::default());
    tokio::join!(
        forward(
            (&mut client_rx, &client_state),
            (&mut up_tx, &up_state),
            Side::Client,
            log
        ),
        forward(
            (&mut up_rx, &up_state),
            (&mut client_tx, &client_state),
            Side::Upstream,
            log
        ),
    );
    log.event("closed", &[("event", "closed".into())]);
}

/// Passes `from`'s messages to `to` until `from` ends, then closes `to` as `from` ended:
/// with its close code and reason, or with the code of its protocol error. Pings and
/// pongs stay on their own connection (each end answers its own pings).
///
/// Both sockets defer their answer to a peer's close (`defer_close_reply`): a side that
/// closed is still open for sending, so what the other side sends until it answers is
/// delivered, and the other side's close is the answer. Only a side that failed or whose
/// closing handshake is over counts as ended.
async fn forward<A, B>(
    (from, from_state): (&mut ReadHalf<A>, &Closing),
    (to, to_state): (&mut WriteHalf<B>, &Closing),
    side: Side,
    log: &Log,
) where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let name = side.name();
    // Once the other side is closed, messages are read and dropped: this side's closing
    // handshake still has to be read to its end.
    let mut other_gone = false;
    // A failure says what it passes on itself.
    let mut failed = false;
    let mut closed = false;
    let (code, reason) = loop {
        match from.recv().await {
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = frame.map_or((CloseCode::NORMAL, String::new()), |f| {
                    (f.code, f.reason.as_str().to_string())
                });
                // A close that answers ours ends the side; a first close awaits our answer.
                closed = true;
                break (code, reason);
            }
            Some(Ok(msg)) if msg.is_data() && !other_gone => {
                // The other side is closing or gone: its own direction reports why.
                other_gone = to.send(msg).await.is_err();
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                let (code, reason) = passed_on(&e, side);
                log.error(
                    &format!(
                        "{name} failed: {e} ({}); closing the other side with {code}",
                        own_code(&e).map_or("no close frame".to_string(), |c| c.to_string())
                    ),
                    &[
                        ("event", "error".into()),
                        ("side", name.into()),
                        ("error", e.to_string().into()),
                        ("close_code", own_code(&e).map(|c| c.as_u16()).into()),
                        ("passed_on", code.as_u16().into()),
                    ],
                );
                failed = true;
                break (code, reason);
            }
            None => break (gone_code(side), format!("{name} closed")),
        }
    };
    // Ended: failed, gone, or its close answered ours. A first close awaits our answer.
    if failed || !closed || from_state.told.load(Ordering::Relaxed) {
        from_state.ended.store(true, Ordering::Relaxed);
    }
    // An ended side has nothing left to be told, a told one has it already.
    let untold = !to_state.ended.load(Ordering::Relaxed) && !to_state.told.load(Ordering::Relaxed);
    if !untold {
        return;
    }
    // Before the close goes out: the answer may come while this waits for the write.
    to_state.told.store(true, Ordering::Relaxed);
    if to.close(code, &reason).await.is_ok() && !failed {
        log.event(
            &format!("{name} closed; closing the other side with {code} {reason:?}"),
            &[
                ("event", "close_passed".into()),
                ("side", name.into()),
                ("close_code", code.as_u16().into()),
                ("close_reason", reason.into()),
            ],
        );
    }
}

/// Where one side's closing stands (both directions run in one task; atomics only because
/// the task must be `Send`).
#[derive(Default)]
struct Closing {
    /// It failed, or its closing handshake is over: nothing more to tell it.
    ended: AtomicBool,
    /// We sent it a close (passing the other side's on).
    told: AtomicBool,
}

/// The close code this side's connection was failed with, if a close frame was sent.
fn own_code(e: &Error) -> Option<CloseCode> {
    match e {
        Error::Protocol(p) => Some(p.close_code()).filter(|c| c.is_sendable()),
        _ => None,
    }
}

/// What the other side is closed with when this side fails: a protocol error's own code
/// (1002, 1007, 1009), else "going away" for a client that vanished and "bad gateway"
/// (RFC 6455 §7.4.1's 1014, IANA) for an upstream that did.
fn passed_on(e: &Error, side: Side) -> (CloseCode, String) {
    match (own_code(e), e) {
        (Some(code), Error::Protocol(p)) => {
            (code, format!("{}: {}", side.name(), p.close_reason()))
        }
        _ => (gone_code(side), format!("{} connection lost", side.name())),
    }
}

fn gone_code(side: Side) -> CloseCode {
    match side {
        Side::Client => CloseCode::GOING_AWAY,
        Side::Upstream => CloseCode::BAD_GATEWAY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_path_is_appended_to_the_upstream_path() {
        let base = |s: &str| wsduplex::client::Target::parse(s).unwrap();
        let cases = [
            ("ws://h:9/", "/", "ws://h:9/"),
            ("ws://h:9", "/echo?x=1", "ws://h:9/echo?x=1"),
            ("ws://h:9/api/", "/chat", "ws://h:9/api/chat"),
            ("wss://h/api?k=v", "/c?x=1", "wss://h/api/c?k=v&x=1"),
        ];
        for (to, path, want) in cases {
            assert_eq!(upstream_url(&base(to), path), want, "{to} + {path}");
        }
    }

    #[test]
    fn handshake_and_hop_by_hop_headers_stay_behind() {
        for h in [
            "Host",
            "Sec-WebSocket-Key",
            "Connection",
            "sec-websocket-protocol",
        ] {
            assert!(!forwarded(h), "{h}");
        }
        for h in ["Authorization", "Cookie", "User-Agent"] {
            assert!(forwarded(h), "{h}");
        }
    }
}
