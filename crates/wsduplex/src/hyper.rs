//! hyper 1.x servers (feature `hyper`): one call turns an upgrade request into the `101` and
//! a future of the [`WebSocket`], through the same front door as `wsduplex serve`.
//!
//! ```text
//!  http::Request ─▶ upgrade(&mut request, &config, peer) ─┬─▶ Ok((101, Upgrading)): send the 101;
//!   (hyper)         permit ─▶ ServerConfig::upgrade_http   │     Upgrading.await ─▶ WebSocket<Upgraded>
//!                   (limits, Origin, auth, RFC 6455,       └─▶ Err(response): send it (the status,
//!                    subprotocol, deflate, metrics)              headers and reason of our own path)
//! ```
//!
//! The socket counts against [`ServerConfig::connections`] for its whole life (its
//! [`Upgraded`] transport holds the permit); plain HTTP requests are hyper's, not counted.
//! The metrics count on threads attached to a [`Metrics`](crate::metrics::Metrics), as on our
//! own workers: give the runtime's threads to it when they start (an `Arc<Metrics>` and
//! tokio's `Builder::on_thread_start(move || metrics.attach_current_thread())`).
//! Serve connections with `with_upgrades()` (hyper's HTTP/1.1 builder; `axum::serve` does),
//! or the upgrade never completes. With the feature `http2` too, WebSockets over HTTP/2
//! (RFC 8441 extended CONNECT) take the same call: serve HTTP/2 with
//! `enable_connect_protocol()` (`axum::serve` does with axum's `http2` feature), and the
//! answer is the `200` RFC 8441 asks for. The lower steps ([`accept_negotiated`], [`respond`],
//! [`refuse`]) are public for a server that routes in between (the hub's axum router).
//!
//! ```no_run
//! use http_body_util::Full;
//! use wsduplex::{hyper::upgrade, ServerConfig};
//!
//! async fn handle(
//!     mut request: http::Request<hyper::body::Incoming>,
//!     config: ServerConfig,
//! ) -> http::Response<Full<bytes::Bytes>> {
//!     match upgrade(&mut request, &config, None).await {
//!         Ok((response, upgrading)) => {
//!             tokio::spawn(async move {
//!                 let Ok(mut ws) = upgrading.await else { return };
//!                 while let Some(Ok(msg)) = ws.recv().await {
//!                     if msg.is_data() && ws.send(msg).await.is_err() {
//!                         break;
//!                     }
//!                 }
//!             });
//!             response
//!         }
//!         Err(refused) => refused,
//!     }
//! }
//! ```

// A refusal is the response to send, returned by value as handlers return responses: one
// per upgrade request, so its size costs nothing a box would save.
#![allow(clippy::result_large_err)]

use crate::auth::Identity;
use crate::error::{Error, Result};
use crate::limits::Permit;
use crate::metrics::{self, RefusedBy};
#[cfg(feature = "http2")]
use crate::server::http_types::extended_connect_head;
use crate::server::http_types::{
    into_http2_answer, refusal_response, switching_protocols, HttpHead,
};
use crate::server::{HttpRefusal, Negotiated, Peer, Refusal, ServerConfig};
use crate::socket::WebSocket;
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use hyper_util::rt::TokioIo;
use proto::handshake::server::Request;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// hyper's handle of a connection's upgrade (`hyper::upgrade::on` takes it from a request).
pub use ::hyper::upgrade::OnUpgrade;

/// The body of every response this module builds (empty for the `101`).
pub type Body = http_body_util::Full<Bytes>;

/// Runs the front door on a hyper request, as `wsduplex serve` runs it on a connection:
/// counts the socket against [`ServerConfig::connections`] (the total and the `peer`'s
/// address; `503`/`429`), converts the head ([`ServerConfig::http_request`]: `400`/`431`),
/// then [`ServerConfig::upgrade_request`] (the per-client limit behind a trusted proxy, the
/// Origin allow-list, [`ServerConfig::auth`], the RFC 6455 checks, the subprotocol and
/// permessage-deflate agreement, the metrics). Send the first element of `Ok`, the `101`,
/// and await the second for the socket; send `Err`'s response as it is.
///
/// `peer`: what the transport knows of the client (its address, TLS or not), for the
/// per-client limit and the same-origin rule; `None` checks neither against the transport.
pub async fn upgrade<B>(
    request: &mut http::Request<B>,
    config: &ServerConfig,
    peer: Option<Peer>,
) -> std::result::Result<(http::Response<Body>, Upgrading), http::Response<Body>> {
    let head = read_head(config, &*request, request.extensions());
    let on_upgrade = ::hyper::upgrade::on(request);
    upgrade_with(head, Some(on_upgrade), config, peer).await
}

/// An upgrade request's head as the front door reads it from hyper: an HTTP/1.1 upgrade,
/// or an HTTP/2 extended CONNECT (RFC 8441) read as the upgrade it stands for, whose
/// answer is then `200` rather than `101`. Made by [`read_head`].
#[derive(Debug, Clone)]
pub struct Head {
    request: Request,
    /// Over HTTP/2: whether the `Sec-WebSocket-Key` was made up (its accept is not sent).
    extended_connect: Option<bool>,
}

impl Head {
    /// The request as the front door reads it (for an extended CONNECT, the `GET` upgrade
    /// it stands for).
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Whether the request is an HTTP/2 extended CONNECT.
    pub fn is_extended_connect(&self) -> bool {
        self.extended_connect.is_some()
    }

    /// The answer's HTTP/2 form for an extended CONNECT (`200`, no connection-specific
    /// fields); an HTTP/1.1 answer as it is.
    fn answer<B>(&self, response: http::Response<B>) -> http::Response<B> {
        answer(self.extended_connect, response)
    }
}

fn answer<B>(extended_connect: Option<bool>, mut response: http::Response<B>) -> http::Response<B> {
    if let Some(synthetic_key) = extended_connect {
        into_http2_answer(&mut response, synthetic_key);
    }
    response
}

/// Reads a hyper request head (a request's, or axum's `Parts`) as the front door does
/// ([`ServerConfig::http_request`]): too large, malformed or otherwise refused heads get
/// their answer. An HTTP/2 `CONNECT` is an extended CONNECT (RFC 8441) with the
/// `:protocol` hyper keeps in `extensions` (served with `enable_connect_protocol`); one
/// without it, for another protocol or another version is refused as
/// [`ServerConfig::upgrade_extended_connect`] refuses it (`405`, `501`, `400`).
pub fn read_head(
    config: &ServerConfig,
    head: &impl HttpHead,
    extensions: &http::Extensions,
) -> std::result::Result<Head, http::Response<Body>> {
    let _ = extensions;
    #[cfg(feature = "http2")]
    if head.version() == http::Version::HTTP_2 && head.method() == http::Method::CONNECT {
        let protocol = extensions.get::<::hyper::ext::Protocol>();
        let converted = extended_connect_head(head, protocol.map(|p| p.as_str()));
        let (request, synthetic_key) = converted.map_err(|e| {
            metrics::handshake(false);
            body(HttpRefusal::extended_connect(e))
        })?;
        let extended_connect = Some(synthetic_key);
        return match config.http_request(&request) {
            Ok(request) => Ok(Head {
                request,
                extended_connect,
            }),
            Err(e) => Err(body(HttpRefusal::handshake(e))),
        };
    }
    match config.http_request(head) {
        Ok(request) => Ok(Head {
            request,
            extended_connect: None,
        }),
        Err(e) => Err(body(HttpRefusal::handshake(e))),
    }
}

/// [`upgrade`] from a head already read (or refused) by [`read_head`].
pub(crate) async fn upgrade_with(
    head: std::result::Result<Head, http::Response<Body>>,
    on_upgrade: Option<OnUpgrade>,
    config: &ServerConfig,
    peer: Option<Peer>,
) -> std::result::Result<(http::Response<Body>, Upgrading), http::Response<Body>> {
    let mut permit =
        open_connection(config, peer.as_ref()).map_err(|r| body(HttpRefusal::refused(r)))?;
    let Head {
        request,
        extended_connect,
    } = head?;
    let upgrade = config
        .upgrade_request(request, peer.as_ref(), Some(&mut permit))
        .await
        .map_err(|r| answer(extended_connect, body(*r)))?;
    let upgrading = Upgrading {
        on_upgrade,
        negotiated: Some(upgrade.negotiated),
        permit: Some(permit),
        identity: Some(upgrade.identity),
    };
    let response = upgrade.response.map(|()| Body::default());
    Ok((answer(extended_connect, response), upgrading))
}

fn body(refusal: HttpRefusal) -> http::Response<Body> {
    refusal.into_response().map(Body::from)
}

/// Counts a socket against [`ServerConfig::connections`], as [`ServerConfig::open_connection`]
/// counts a connection (the total, and the `peer`'s address unless it is a trusted proxy);
/// without a `peer`, the total only. The refusal is counted in the metrics.
pub fn open_connection(
    config: &ServerConfig,
    peer: Option<&Peer>,
) -> std::result::Result<Permit, Refusal> {
    match peer {
        Some(p) => config.open_connection(p.addr),
        None => config.connections.try_open().map_err(|e| {
            metrics::refused(RefusedBy::MaxConnections);
            e.into()
        }),
    }
}

/// The `101` (over HTTP/2, the `200`) for a request the front door has admitted and
/// authenticated, with an agreement from [`ServerConfig::negotiate`] (possibly adjusted),
/// and the future of its socket on `on_upgrade` (take it with `hyper::upgrade::on`): what
/// [`Incoming::accept_negotiated`] does on our own path, counted alike. `permit` goes with
/// the socket.
///
/// [`Incoming::accept_negotiated`]: crate::Incoming::accept_negotiated
pub fn accept_negotiated(
    head: &Head,
    negotiated: Negotiated,
    on_upgrade: OnUpgrade,
    permit: Option<Permit>,
) -> std::result::Result<(http::Response<Body>, Upgrading), http::Response<Body>> {
    match switching_protocols(&head.request, &negotiated) {
        Ok(response) => {
            metrics::handshake(true);
            let upgrading = Upgrading {
                on_upgrade: Some(on_upgrade),
                negotiated: Some(negotiated),
                permit,
                identity: None,
            };
            Ok((head.answer(response.map(|()| Body::default())), upgrading))
        }
        Err(e) => {
            metrics::handshake(false);
            Err(head.answer(body(HttpRefusal::handshake(e))))
        }
    }
}

/// A plain HTTP answer to a request the front door read, as [`Incoming::respond`] answers
/// it: an upgrade request answered so counts as a refused handshake, and a `HEAD` gets no
/// body.
///
/// [`Incoming::respond`]: crate::Incoming::respond
pub fn respond(
    request: &Request,
    status: u16,
    headers: &[(&str, &str)],
    content_type: &str,
    body: impl Into<Bytes>,
) -> http::Response<Body> {
    if request.is_upgrade() {
        metrics::handshake(false);
    }
    let mut response = refusal_response(status, headers);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(CONTENT_TYPE, v);
    }
    let body = match request.method() {
        "HEAD" => Bytes::new(),
        _ => body.into(),
    };
    response.map(|()| Body::new(body))
}

/// A refusal of the front door, answered as [`Incoming::refuse`] answers it.
///
/// [`Incoming::refuse`]: crate::Incoming::refuse
pub fn refuse(request: &Request, refusal: &Refusal) -> http::Response<Body> {
    let body = refusal.body();
    respond(
        request,
        refusal.status(),
        refusal.headers(),
        "text/plain",
        body,
    )
}

/// The socket of an accepted upgrade, once hyper hands over the connection: await it after
/// sending the `101`. Fails if the client goes away first, or if the connection is served
/// without `with_upgrades()`.
pub struct Upgrading {
    /// `None`: the request came without hyper's upgrade handle (not over hyper's HTTP/1.1).
    on_upgrade: Option<OnUpgrade>,
    negotiated: Option<Negotiated>,
    permit: Option<Permit>,
    identity: Option<Identity>,
}

impl std::fmt::Debug for Upgrading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgrading")
            .field("negotiated", &self.negotiated)
            .finish_non_exhaustive()
    }
}

impl Upgrading {
    /// The subprotocol the `101` agreed to, if any.
    pub fn subprotocol(&self) -> Option<&str> {
        self.negotiated.as_ref()?.subprotocol.as_deref()
    }

    /// Who made the request, as [`ServerConfig::auth`] found out ([`upgrade`]; `None` from
    /// [`accept_negotiated`], whose caller authenticated it).
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }
}

impl Future for Upgrading {
    type Output = Result<WebSocket<Upgraded>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let Some(on_upgrade) = this.on_upgrade.as_mut() else {
            return Poll::Ready(Err(Error::Io(std::io::Error::other(
                "the connection cannot be upgraded",
            ))));
        };
        let upgraded = ready!(Pin::new(on_upgrade).poll(cx));
        let Some(negotiated) = this.negotiated.take() else {
            return Poll::Ready(Err(Error::Io(std::io::Error::other(
                "upgrade polled after completion",
            ))));
        };
        Poll::Ready(match upgraded {
            Ok(io) => {
                let io = Upgraded {
                    io: TokioIo::new(io),
                    _permit: this.permit.take(),
                };
                // hyper's `Upgraded` replays what it read past the request head itself.
                Ok(negotiated.websocket(io, &[]))
            }
            Err(e) => Err(Error::Io(std::io::Error::other(e))),
        })
    }
}

/// The connection hyper handed over, and the socket's place in the connection limits
/// (released when the socket is dropped).
#[derive(Debug)]
pub struct Upgraded {
    io: TokioIo<::hyper::upgrade::Upgraded>,
    _permit: Option<Permit>,
}

impl Upgraded {
    /// hyper's upgraded connection (`downcast` it to reach the server's own I/O type).
    pub fn get_ref(&self) -> &::hyper::upgrade::Upgraded {
        self.io.inner()
    }

    /// hyper's upgraded connection, mutably.
    pub fn get_mut(&mut self) -> &mut ::hyper::upgrade::Upgraded {
        self.io.inner_mut()
    }
}

impl AsyncRead for Upgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
