//! HTTP/2 connections (`h2c` with prior knowledge, or TLS with ALPN `h2`): each stream's
//! request goes through the front door and the same routes as over HTTP/1.1
//! ([`super::route`]), a WebSocket on an extended CONNECT stream (RFC 8441) included.

use super::listen::spawn_in;
use super::{echo, route, Server};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use wsduplex::limits::Permit;
use wsduplex::server::http2::{Http2Config, Http2Connection, Http2Request, Prefaced};
use wsduplex::server::Peer;

/// How long a connection going away waits for the peer's answer to its GOAWAY's ping once
/// it has no stream left.
const GOAWAY_ROUND_TRIP: std::time::Duration = std::time::Duration::from_secs(1);

/// Drives one HTTP/2 connection: its requests are served on tasks of their own, so a slow
/// stream never holds up the connection. On shutdown, or when no stream has been open for
/// the handshake timeout, `GOAWAY`; the open streams end (a WebSocket with 1001) before
/// the connection does. `permit` counts the connection.
pub(super) async fn serve<S>(
    io: Prefaced<S>,
    peer: Peer,
    permit: Permit,
    server: Arc<Server>,
    mut stop: watch::Receiver<bool>,
    tasks: TaskTracker,
    span: tracing::Span,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handshake = tokio::time::timeout(
        server.config.handshake_timeout,
        Http2Connection::handshake(io, Http2Config::default()),
    );
    let mut conn = tokio::select! {
        r = handshake => match r {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return tracing::debug!("http/2 handshake failed: {e}"),
            Err(_) => return tracing::debug!("http/2 handshake timed out"),
        },
        _ = stop.wait_for(|stopped| *stopped) => return,
    };
    // A connection with no stream open for the time a request head may take is closed,
    // as an HTTP/1.1 connection that sends no request is.
    let idle = server.config.handshake_timeout;
    let quiet = tokio::time::sleep(idle);
    tokio::pin!(quiet);
    let later = |d| tokio::time::Instant::now() + d;
    let mut stopping = false;
    let mut closing = false;
    loop {
        let next = tokio::select! {
            next = conn.accept() => next,
            _ = stop.wait_for(|stopped| *stopped), if !stopping => {
                stopping = true;
                conn.graceful_shutdown();
                quiet.as_mut().reset(later(GOAWAY_ROUND_TRIP));
                continue;
            }
            () = &mut quiet, if !closing => {
                if conn.has_streams() {
                    let wait = if stopping { GOAWAY_ROUND_TRIP } else { idle };
                    quiet.as_mut().reset(later(wait));
                } else if stopping {
                    // Its streams are done; a peer that has not answered the GOAWAY's
                    // ping by now is not waited for.
                    closing = true;
                    conn.abrupt_shutdown();
                } else {
                    tracing::debug!("http/2 connection idle: closing");
                    stopping = true;
                    conn.graceful_shutdown();
                    quiet.as_mut().reset(later(GOAWAY_ROUND_TRIP));
                }
                continue;
            }
        };
        match next {
            Some(Ok(request)) => {
                if !stopping {
                    quiet.as_mut().reset(later(idle));
                }
                let task = stream(request, peer, server.clone(), tasks.clone());
                spawn_in(&tasks, task, span.clone());
            }
            Some(Err(e)) => {
                tracing::debug!("{e}");
                break;
            }
            None => break,
        }
    }
    drop(permit);
}

/// One stream: the front door, then the route. A WebSocket counts against the connection
/// limits as a connection of its own (so a client cannot open more WebSockets over one
/// HTTP/2 connection than over as many HTTP/1.1 ones); a plain request does not.
async fn stream(request: Http2Request, peer: Peer, server: Arc<Server>, tasks: TaskTracker) {
    let mut incoming = match request.into_incoming(&server.config).await {
        Ok(incoming) => incoming,
        Err(e) => return tracing::debug!("http/2 request refused: {e}"),
    };
    incoming.set_peer(peer);
    if tracing::enabled!(tracing::Level::DEBUG) {
        let request = incoming.request();
        let path = request.path().split('?').next().unwrap_or_default();
        let method = if incoming.is_upgrade() {
            "websocket"
        } else {
            request.method()
        };
        tracing::debug!("http/2 {method} {path}");
    }
    let mut permit = None;
    if incoming.is_upgrade() {
        match server.config.open_connection(peer.addr) {
            Ok(p) => permit = Some(p),
            Err(refusal) => {
                tracing::debug!("{refusal}");
                let _ = incoming.refuse(&refusal).await;
                return;
            }
        }
    }
    let incoming = match incoming.admit(&server.config, permit.as_mut()).await {
        Ok(incoming) => incoming,
        Err(e) => return tracing::debug!("{e}"),
    };
    match (route::serve(incoming, &server, &mut None).await, permit) {
        (route::Routed::Echo(ws), Some(permit)) => echo::spawn(
            &tasks,
            ws,
            Some(permit),
            None,
            true,
            tracing::Span::current(),
        ),
        // The stream's own task runs it (the stream's state goes with it).
        (route::Routed::Member(member), permit) => {
            let _permit = permit;
            if let Err(e) = member.run().await {
                tracing::debug!("hub member: {e}");
            }
        }
        _ => {}
    }
}
