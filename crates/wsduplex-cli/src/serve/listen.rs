//! The listeners and a connection's first steps: one `SO_REUSEPORT` listener per worker,
//! the connection limits at accept, TLS, and reading the request head, before
//! [`super::route`] decides who answers it.

use super::{echo, http2, route, Server};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use wsduplex::limits::Permit;
use wsduplex::server::http2::Prefaced;
use wsduplex::server::{
    proxy_protocol, read_request, read_request_or_preface, FirstRequest, Peer, Refusal,
};
use wsduplex::tls::TlsStream;
use wsduplex::WebSocket;

/// One listening socket per worker, on the same port. A plain bind comes first. It fails if
/// anything listens on the port already (`SO_REUSEPORT` alone would let a second server of
/// the same user share the port silently, each getting some of the other's connections),
/// and it picks the port when asked for port 0.
pub(super) fn listen(
    addr: SocketAddr,
    workers: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    let first = std::net::TcpListener::bind(addr)?;
    let addr = first.local_addr()?;
    #[cfg(unix)]
    {
        drop(first);
        (0..workers).map(|_| bind(addr)).collect()
    }
    // Without SO_REUSEPORT the workers cannot each have a listener of their own: one
    // worker accepts.
    #[cfg(not(unix))]
    {
        let _ = (addr, workers);
        first.set_nonblocking(true)?;
        Ok(vec![first])
    }
}

/// A listening socket with `SO_REUSEPORT`, handed over in std form: each worker registers
/// it with its own runtime.
#[cfg(unix)]
fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
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

/// A connection just accepted: counted against the limits (or refused at once), then
/// served on a task of its own.
pub(super) fn accepted(
    tcp: TcpStream,
    peer: SocketAddr,
    server: &Arc<Server>,
    stop: &watch::Receiver<bool>,
    tasks: &TaskTracker,
) {
    match server.config.open_connection(peer.ip()) {
        Ok(permit) => {
            let (server, stop) = (server.clone(), stop.clone());
            let span = connection_span(peer);
            let handshake = handle(tcp, peer, permit, server, stop, tasks.clone(), span.clone());
            spawn_in(tasks, Connection::Handshake(Box::pin(handshake)), span);
        }
        Err(e) => refuse_now(&tcp, &e),
    }
}

/// A connection's task: its first stage ([`handle`]: TLS, the request, the handshake),
/// boxed, then for a plain `/echo` WebSocket its echo loop, in place. What an open
/// connection holds for its lifetime is only the echo loop's state (the first stage's box,
/// its buffers and timers, is freed when it ends), and a plain echo connection costs one
/// task, not two: a second task's spawn, first wakeup and completion were a tenth of a
/// handshake's user time (bench/README.md, E).
// The first stage's box is the small variant on purpose: the task is the echo loop's size.
#[allow(clippy::large_enum_variant)]
enum Connection<F> {
    Handshake(Pin<Box<F>>),
    Echo(echo::Echo<TcpStream>),
}

impl<F: Future<Output = Option<echo::Echo<TcpStream>>>> Future for Connection<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if let Connection::Handshake(first) = this {
            match first.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Ready(Some(echo)) => *this = Connection::Echo(echo),
            }
        }
        match this {
            Connection::Echo(echo) => Pin::new(echo).poll(cx),
            Connection::Handshake(_) => Poll::Ready(()),
        }
    }
}

/// The connection's first stage: TLS, the request, the handshake. A plain `/echo`
/// WebSocket's loop is returned, to run in this task ([`Connection`]); a TLS one gets a task
/// of its own (its first stage is not boxed apart from the rest).
async fn handle(
    tcp: TcpStream,
    peer: SocketAddr,
    mut permit: Permit,
    server: Arc<Server>,
    mut stop: watch::Receiver<bool>,
    tasks: TaskTracker,
    span: tracing::Span,
) -> Option<echo::Echo<TcpStream>> {
    // Inherited from the listening socket on Linux (a test checks it); one syscall less per
    // connection.
    if !cfg!(target_os = "linux") {
        let _ = tcp.set_nodelay(true);
    }
    // A plain connection may become an /echo WebSocket, which a hand-over moves: the hand-over
    // waits for its request (within the handshake timeout).
    let mut pending = server.tls.is_none().then(echo::registry::Handshake::new);
    // Boxed, and only behind a balancer: its timers and reads would size this future.
    let client = if server.config.proxy_protocol.is_empty() {
        peer
    } else {
        match Box::pin(proxy_header(&tcp, peer, &mut permit, &server, &mut stop)).await {
            Some(client) => client,
            None => return None,
        }
    };
    if client != peer {
        span.record("client", tracing::field::display(client));
    }
    let peer = Peer::new(client.ip(), server.tls.is_some());
    match &server.tls {
        // This future is boxed whole ([`Connection`]), so the request's stage is not boxed
        // apart: one allocation.
        None => {
            let served = serve_request(tcp, peer, &mut permit, &server, &mut stop, &mut pending);
            let (ws, permit) = spawn_rest(served.await, peer, permit, server, stop, &tasks, span)?;
            // Its registry entry is made while `pending` still counts the request, so a
            // hand-over never sees the connection in neither.
            Some(echo::echo(ws, Some(permit), true))
        }
        Some(_) => {
            let served = Box::pin(serve_tls(tcp, peer, &mut permit, &server, &mut stop)).await;
            let rest = spawn_rest(served, peer, permit, server, stop, &tasks, span.clone());
            if let Some((ws, permit)) = rest {
                echo::spawn(&tasks, ws, Some(permit), None, true, span);
            }
            None
        }
    }
}

/// A connection's first stage is over: a chat member and HTTP/2 get tasks of their own; an
/// `/echo` WebSocket comes back with the connection's permit, for the caller to run.
fn spawn_rest<S>(
    served: Served<S>,
    peer: Peer,
    permit: Permit,
    server: Arc<Server>,
    stop: watch::Receiver<bool>,
    tasks: &TaskTracker,
    span: tracing::Span,
) -> Option<(WebSocket<S>, Permit)>
where
    S: echo::Transport,
{
    match served {
        Served::WebSocket(ws) => return Some((ws, permit)),
        Served::Member(member) => super::member::spawn(tasks, member, Some(permit), span),
        Served::Http2(io) => {
            let task = http2::serve(io, peer, permit, server, stop, tasks.clone(), span.clone());
            spawn_in(tasks, task, span);
        }
        Served::Done => {}
    }
    None
}

/// How a connection's first request went.
// Returned once and moved straight into the echo task, as the `Option<WebSocket>` before
// it was: boxing the socket would cost an allocation per HTTP/1.1 connection.
#[allow(clippy::large_enum_variant)]
enum Served<S> {
    /// Answered, or failed: nothing left to do.
    Done,
    /// A WebSocket for `/echo`: it gets a task of its own.
    WebSocket(WebSocket<S>),
    /// A chat member: it gets a task of its own.
    Member(wsduplex_hub::Member<S>),
    /// HTTP/2 (the `h2c` preface, or ALPN `h2`): [`http2::serve`] takes the connection.
    Http2(Prefaced<S>),
}

/// Connection ids, for the logs.
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// The span every log line of a connection is in: `conn{id=7 peer=127.0.0.1:5050}`, with
/// `client=` when a PROXY protocol header named another address. When logging is below
/// `info` it is disabled and costs nothing.
pub(super) fn connection_span(peer: SocketAddr) -> tracing::Span {
    let id = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
    tracing::info_span!("conn", id, peer = %peer, client = tracing::field::Empty)
}

/// Spawns a connection's task inside its span, or bare when the span is disabled (no bytes
/// per connection spent on logging that is off).
pub(super) fn spawn_in<F>(tasks: &TaskTracker, task: F, span: tracing::Span)
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

/// Over a limit at accept: the front door's answer if the socket takes it at once (never
/// waiting on this client), then close.
fn refuse_now(tcp: &TcpStream, refusal: &Refusal) {
    let _ = tcp.try_write(&refusal.to_response());
    tracing::debug!("connection refused: {refusal}");
}

/// The client's address: the connection's own, or behind a `--proxy-protocol` balancer
/// the one its PROXY protocol header carries (read before TLS and the request, within the
/// handshake timeout), then counted against the per-client limit. `None`: the connection
/// is closed, logged: a source that must send a header sent none, a malformed or a
/// truncated one; another source sent one; or the client is over its limit (`429`).
async fn proxy_header(
    tcp: &TcpStream,
    peer: SocketAddr,
    permit: &mut Permit,
    server: &Server,
    stop: &mut watch::Receiver<bool>,
) -> Option<SocketAddr> {
    let config = &server.config;
    if config.proxy_protocol.is_empty() {
        return Some(peer);
    }
    let timeout = config.handshake_timeout;
    if !config.expects_proxy_header(peer.ip()) {
        let start = tokio::select! {
            start = proxy_protocol::peek_start(tcp, timeout) => start,
            _ = stop.wait_for(|stopped| *stopped) => return None,
        };
        if proxy_protocol::looks_like_header(&start) {
            tracing::warn!(%peer, "PROXY protocol header from a source not in --proxy-protocol: closed");
            return None;
        }
        return Some(peer);
    }
    let header = tokio::select! {
        header = proxy_protocol::read_header(tcp, timeout) => header,
        _ = stop.wait_for(|stopped| *stopped) => return None,
    };
    let client = match header {
        Ok(header) => header.source().unwrap_or(peer),
        Err(e) => {
            tracing::warn!(%peer, "{e} from a --proxy-protocol source: closed");
            return None;
        }
    };
    if let Err(refusal) = config.attribute_client(permit, client.ip()) {
        refuse_now(tcp, &refusal);
        return None;
    }
    Some(client)
}

/// The TLS handshake, within the handshake timeout, then HTTP/2 if the client chose it
/// (ALPN `h2`), else [`serve_request`]. A failed handshake ends this connection only. The
/// TLS stream is boxed, so plain connections do not carry its size.
async fn serve_tls(
    tcp: TcpStream,
    peer: Peer,
    permit: &mut Permit,
    server: &Server,
    stop: &mut watch::Receiver<bool>,
) -> Served<Box<TlsStream<TcpStream>>> {
    let Some(acceptor) = server.tls.as_ref() else {
        return Served::Done;
    };
    let handshake = tokio::time::timeout(
        server.config.handshake_timeout,
        wsduplex::tls::accept(acceptor, tcp),
    );
    let tls = tokio::select! {
        r = handshake => match r {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!("tls handshake failed: {e}");
                return Served::Done;
            }
            Err(_) => {
                tracing::debug!("tls handshake timed out");
                return Served::Done;
            }
        },
        _ = stop.wait_for(|stopped| *stopped) => return Served::Done,
    };
    if wsduplex::tls::negotiated_http2(&tls) {
        return Served::Http2(Prefaced::new(Default::default(), Box::new(tls)));
    }
    serve_request(Box::new(tls), peer, permit, server, stop, &mut None).await
}

/// The first request, or with HTTP/2 on, the `h2c` preface instead.
async fn first_request<S>(io: S, server: &Server) -> wsduplex::Result<FirstRequest<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if server.http2 {
        read_request_or_preface(io, &server.config).await
    } else {
        read_request(io, &server.config)
            .await
            .map(FirstRequest::Http1)
    }
}

/// Reads the request and lets the front door admit it (the per-client limit, the Origin
/// allow-list), then routes it: a WebSocket for `/echo` is returned (it gets a task of its
/// own); everything else is answered here. The HTTP/2 preface instead of a request
/// (`h2c`) hands the connection back for [`http2::serve`].
async fn serve_request<S>(
    io: S,
    peer: Peer,
    permit: &mut Permit,
    server: &Server,
    stop: &mut watch::Receiver<bool>,
    pending: &mut Option<echo::registry::Handshake>,
) -> Served<S>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    // A client still sending its request when the server stops is simply dropped.
    // The request first: when it is there already (the usual case), the stop signal's
    // waiter is never registered (a lock, a waker's clone, and their undoing, per
    // connection); a stop it raced is then seen below.
    let mut incoming = tokio::select! {
        biased;
        r = first_request(io, server) => match r {
            Ok(FirstRequest::Http1(i)) => i,
            Ok(FirstRequest::Http2(io)) => return Served::Http2(io),
            Err(e) => {
                tracing::debug!("request refused: {e}");
                return Served::Done;
            }
        },
        _ = stop.wait_for(|stopped| *stopped) => return Served::Done,
    };
    if *stop.borrow() {
        return Served::Done;
    }
    incoming.set_peer(peer);
    if tracing::enabled!(tracing::Level::DEBUG) {
        let request = incoming.request();
        let client = server.config.client_addr(request, peer.addr);
        let path = request.path().split('?').next().unwrap_or_default();
        tracing::debug!(%client, peer = %peer.addr, "{} {path}", request.method());
    }
    let incoming = match incoming.admit(&server.config, Some(permit)).await {
        Ok(i) => i,
        Err(e) => {
            tracing::debug!("{e}");
            return Served::Done;
        }
    };
    match route::serve(incoming, server, pending).await {
        route::Routed::Echo(ws) => Served::WebSocket(ws),
        route::Routed::Member(member) => Served::Member(member),
        route::Routed::Done => Served::Done,
    }
}

#[cfg(test)]
mod tests {
    use super::{echo::Echo, Connection};
    use tokio::net::TcpStream;

    /// Once open, a plain connection's task is its echo loop, in place: the first stage's
    /// box fits beside it, so the task is no larger than `Echo` alone and its cell stays
    /// in the 512-byte class (`echo/mod.rs` pins `Echo` at 400 bytes at most).
    #[test]
    fn a_connection_is_the_size_of_its_echo_loop() {
        type Handshake = std::future::Ready<Option<Echo<TcpStream>>>;
        let connection = std::mem::size_of::<Connection<Handshake>>();
        let echo = std::mem::size_of::<Echo<TcpStream>>();
        assert_eq!(
            connection, echo,
            "Connection is {connection} bytes, Echo {echo}"
        );
    }
}
