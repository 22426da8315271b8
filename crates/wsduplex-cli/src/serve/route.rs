//! Who answers a request: one table of the paths the server owns, the hub's, and what is
//! `404`.

use super::{echo, metrics, Server};
use tokio::io::{AsyncRead, AsyncWrite};
use wsduplex::server::Incoming;
use wsduplex::WebSocket;
use wsduplex_hub::{Accepted, Hub, Member};

/// Where a request goes, from its method, path and whether it asks for an upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Healthz,
    Metrics,
    Echo,
    /// `/`, `/chat/ROOM`, `/poll/...`, `/api/...`: the hub answers.
    Hub,
    EchoPage,
    WrongMethod,
    /// An upgrade anywhere else.
    NoWebSocket,
    NotFound,
}

fn route(method: &str, path: &str, upgrade: bool) -> Route {
    let get = matches!(method, "GET" | "HEAD");
    match path {
        "/healthz" if get && !upgrade => Route::Healthz,
        "/metrics" if get && !upgrade => Route::Metrics,
        "/echo" => Route::Echo,
        _ if Hub::owns(path) => Route::Hub,
        _ if upgrade => Route::NoWebSocket,
        "/echo.html" if get => Route::EchoPage,
        "/echo.html" => Route::WrongMethod,
        _ => Route::NotFound,
    }
}

/// What became of a request.
// Returned once, straight into the caller's match (as `Option<WebSocket>` was before the
// member joined it): boxing would cost an allocation per connection.
#[allow(clippy::large_enum_variant)]
pub(super) enum Routed<S> {
    /// Answered, or failed: nothing left to do.
    Done,
    /// A WebSocket for `/echo`: it gets a task of its own.
    Echo(WebSocket<S>),
    /// A chat member: it gets a task of its own too, which then holds the member alone,
    /// not the request's stages before it (`Hub::accept`).
    Member(Member<S>),
}

/// Answers an admitted request. A WebSocket for `/echo` and a chat member are returned, to
/// be run in tasks of their own.
/// `pending` (a plain connection's request in progress, which a hand-over waits for) ends
/// where the hub takes the request: a chat member or a long poll stays with this process.
pub(super) async fn serve<S>(
    incoming: Incoming<S>,
    server: &Server,
    pending: &mut Option<echo::registry::Handshake>,
) -> Routed<S>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let path = incoming.path().split('?').next().unwrap_or_default();
    let route = route(incoming.request().method(), path, incoming.is_upgrade());
    let result = match route {
        Route::Echo => match incoming.accept(&server.echo).await {
            Ok(ws) => return Routed::Echo(ws),
            Err(e) => Err(e),
        },
        Route::Hub => {
            pending.take();
            // Boxed: the hub's future (admission, the handshake, the page, a long poll) is
            // kilobytes, and unboxed it would size this future, and so every connection's
            // first stage, `/echo`'s included (bench/README.md, E). A chat member is handed
            // back, to run in a task of its own.
            match Box::pin(server.hub.accept(incoming, &server.config)).await {
                Accepted::Member(member) => return Routed::Member(member),
                Accepted::Answered => Ok(()),
                // The hub owns the path: never handed back.
                Accepted::NotMine(other) => {
                    other.respond(404, &[], "text/plain", b"not found\n").await
                }
            }
        }
        Route::Healthz => incoming.respond(200, &[], "text/plain", b"ok\n").await,
        Route::Metrics => {
            let body = metrics::page(server);
            let ctype = wsduplex::metrics::CONTENT_TYPE;
            incoming.respond(200, &[], ctype, body.as_bytes()).await
        }
        Route::EchoPage => {
            let headers = [("Cache-Control", "no-cache")];
            let ctype = "text/html; charset=utf-8";
            incoming
                .respond(200, &headers, ctype, echo::PAGE.as_bytes())
                .await
        }
        Route::WrongMethod => {
            let headers = [("Allow", "GET, HEAD")];
            incoming
                .respond(405, &headers, "text/plain", b"method not allowed\n")
                .await
        }
        Route::NoWebSocket => {
            let body = b"no websocket endpoint here; try /chat/ROOM or /echo\n";
            incoming.respond(404, &[], "text/plain", body).await
        }
        Route::NotFound => {
            incoming
                .respond(404, &[], "text/plain", b"not found\n")
                .await
        }
    };
    if let Err(e) = result {
        tracing::debug!("request ended: {e}");
    }
    Routed::Done
}

#[cfg(test)]
mod tests {
    use super::{route, Route};

    #[test]
    fn the_table() {
        for (method, path, upgrade, want) in [
            ("GET", "/healthz", false, Route::Healthz),
            ("HEAD", "/metrics", false, Route::Metrics),
            ("POST", "/healthz", false, Route::NotFound),
            ("GET", "/metrics", true, Route::NoWebSocket),
            ("GET", "/echo", true, Route::Echo),
            ("GET", "/echo", false, Route::Echo),
            ("GET", "/", false, Route::Hub),
            ("GET", "/chat/r", true, Route::Hub),
            ("POST", "/poll/r", false, Route::Hub),
            ("DELETE", "/api/rooms/r/members/a", false, Route::Hub),
            ("GET", "/echo.html", false, Route::EchoPage),
            ("POST", "/echo.html", false, Route::WrongMethod),
            ("GET", "/echo.html", true, Route::NoWebSocket),
            ("GET", "/nowhere", true, Route::NoWebSocket),
            ("GET", "/nowhere", false, Route::NotFound),
        ] {
            assert_eq!(
                route(method, path, upgrade),
                want,
                "{method} {path} {upgrade}"
            );
        }
    }
}
