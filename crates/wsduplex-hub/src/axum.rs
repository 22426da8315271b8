//! The hub in an axum 0.8 app (feature `axum`): [`Hub::router`] answers the hub's paths
//! (the page, `/chat/ROOM`, `/poll/...`, `/api/rooms/...`) under whatever prefix the app
//! nests it at, with the same routes and answers as [`Hub::serve`]: an axum request is one
//! more [`Exchange`], read through the same front door.
//!
//! ```text
//!  axum request ─▶ Router::nest("/hub", hub.router(config)) ─▶ AxumExchange (head converted once)
//!                                                              └─▶ Hub::answer (the routes of http.rs)
//!                                                                   ├─▶ a response
//!                                                                   └─▶ 101, the member's task spawned on the upgrade
//! ```

use crate::event::Limits;
use crate::http::{route, Exchange, BODY_TIMEOUT};
use crate::identity::Access;
use crate::subscriptions::Subscriptions;
use crate::ws::Member;
use crate::Hub;
use ::axum::body::Body;
use ::axum::extract::{OriginalUri, Request as AxumRequest};
use ::axum::response::Response;
use ::axum::routing::any;
use ::axum::Router;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use std::sync::Arc;
use wsduplex::auth::Identity;
use wsduplex::http;
use wsduplex::hyper::{
    accept_negotiated, open_connection, read_head, refuse, respond, Head, OnUpgrade,
};
use wsduplex::limits::Permit;
use wsduplex::proto::handshake::server::Request;
use wsduplex::server::{BodyError, Negotiated, Peer, ServerConfig};

impl Hub {
    /// The hub as an axum `Router`, to nest under a prefix of an existing app:
    /// `app.nest("/hub", hub.router(config))` serves the chat page at `/hub`, WebSockets
    /// at `/hub/chat/ROOM`, long polling at `/hub/poll/...` and the push API at
    /// `/hub/api/rooms/...`; any other path under the prefix is `404`. `config` is the front
    /// door of these paths (limits, Origin, authentication, deflate), as for
    /// [`Hub::serve`]. A WebSocket member counts against its connection limits while it
    /// stays. The client's address comes from a [`Peer`] extension or `ConnectInfo` (see
    /// [`wsduplex::axum::peer`]).
    ///
    /// ```no_run
    /// use axum::{routing::get, Router};
    /// use wsduplex::ServerConfig;
    /// use wsduplex_hub::{Hub, HubConfig};
    ///
    /// # async fn run() -> std::io::Result<()> {
    /// let hub = Hub::new(HubConfig::default());
    /// tokio::spawn(hub.clone().maintain());
    /// let app = Router::new()
    ///     .route("/", get(|| async { "the app's own page" }))
    ///     .nest("/hub", hub.router(ServerConfig::default()));
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    /// axum::serve(listener, app).await
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    pub fn router<S>(&self, config: ServerConfig) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let hub = self.clone();
        let config = Arc::new(config);
        let handler = move |request: AxumRequest| {
            let (hub, config) = (hub.clone(), config.clone());
            async move { hub.answer_axum(request, &config).await }
        };
        Router::new()
            .route("/", any(handler.clone()))
            .route("/{*path}", any(handler.clone()))
            .fallback(handler)
    }

    async fn answer_axum(&self, request: AxumRequest, config: &ServerConfig) -> Response {
        let (mut parts, body) = request.into_parts();
        // The target under the prefix: axum strips it from the URI of a nested router.
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let target = if target.starts_with('/') {
            target.to_string()
        } else {
            format!("/{target}")
        };
        let path = target.split('?').next().unwrap_or_default();
        let prefix = prefix(path, parts.extensions.get::<OriginalUri>());
        let head = match read_head(config, &parts, &parts.extensions) {
            Ok(head) => head,
            Err(refused) => return refused.map(Body::new),
        };
        let method = head.request().method().to_string();
        let Some(route) = route(&method, path) else {
            let not_found = respond(head.request(), 404, &[], "text/plain", &b"not found\n"[..]);
            return not_found.map(Body::new);
        };
        let mut out = None;
        let exchange = AxumExchange {
            peer: wsduplex::axum::peer(&parts.extensions),
            on_upgrade: parts.extensions.remove::<OnUpgrade>(),
            head,
            body: Some(body),
            permit: None,
            identity: None,
            prefix,
            out: &mut out,
        };
        let mut none = None;
        if let Err(e) = self
            .answer(exchange, route, &target, config, &mut none)
            .await
        {
            tracing::debug!("{method} {path}: {e}");
        }
        out.unwrap_or_else(|| {
            let mut response = Response::new(Body::from("request not answered\n"));
            *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            response
        })
    }
}

/// The prefix a nesting router stripped from `path` (`/hub` for `/hub/chat.js` seen as
/// `/chat.js`; `/hub` for `/hub` seen as `/`), empty when the hub is not nested.
fn prefix(path: &str, original: Option<&OriginalUri>) -> String {
    let Some(OriginalUri(original)) = original else {
        return String::new();
    };
    let original = original.path();
    let prefix = match original.strip_suffix(path) {
        Some(prefix) => prefix,
        None if path == "/" => original,
        None => "",
    };
    prefix.trim_end_matches('/').to_string()
}

/// An axum request as the hub answers it: the answer goes to `out`.
struct AxumExchange<'a> {
    head: Head,
    body: Option<Body>,
    on_upgrade: Option<OnUpgrade>,
    peer: Option<Peer>,
    /// A WebSocket member's place in the connection limits, taken at admission.
    permit: Option<Permit>,
    /// Who made it, once a join was let in.
    identity: Option<Identity>,
    prefix: String,
    out: &'a mut Option<Response>,
}

impl Exchange for AxumExchange<'_> {
    type Member = std::convert::Infallible;

    fn request(&self) -> &Request {
        self.head.request()
    }

    fn prefix(&self) -> &str {
        &self.prefix
    }

    async fn admit(mut self, config: &ServerConfig, join: bool) -> Option<Self> {
        let peer = self.peer.as_ref();
        let mut checked = Ok(());
        // Our own server counts every connection from its accept; here the app's own routes
        // are not ours to count: a WebSocket member is, for as long as it stays.
        if join && self.head.request().is_upgrade() {
            match open_connection(config, peer) {
                Ok(permit) => self.permit = Some(permit),
                Err(refusal) => checked = Err(refusal),
            }
        }
        let checked = match checked
            .and_then(|()| config.admit(self.head.request(), peer, self.permit.as_mut()))
        {
            Ok(()) if join => config
                .authenticate(self.head.request(), peer)
                .await
                .map(Some),
            Ok(()) => Ok(None),
            Err(refusal) => Err(refusal),
        };
        match checked {
            Ok(identity) => {
                self.identity = identity;
                Some(self)
            }
            Err(refusal) => {
                *self.out = Some(refuse(self.head.request(), &refusal).map(Body::new));
                None
            }
        }
    }

    fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    async fn read_body(&mut self, max: usize) -> wsduplex::Result<Bytes> {
        let announced = self
            .head
            .request()
            .header("content-length")
            .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<usize>().ok());
        if let Some(length) = announced.filter(|&n| n > max) {
            return Err(BodyError::TooLarge { length, max }.into());
        }
        let mut stream = self.body.take().unwrap_or_default().into_data_stream();
        let read = tokio::time::timeout(BODY_TIMEOUT, async {
            let mut body = BytesMut::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| wsduplex::Error::Io(std::io::Error::other(e)))?;
                let length = body.len() + chunk.len();
                if length > max {
                    return Err(BodyError::TooLarge { length, max }.into());
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, wsduplex::Error>(body.freeze())
        })
        .await;
        read.unwrap_or_else(|_| Err(BodyError::Timeout.into()))
    }

    async fn respond(
        self,
        status: u16,
        headers: &[(&str, &str)],
        content_type: &str,
        body: &[u8],
    ) -> wsduplex::Result<()> {
        let body = Bytes::copy_from_slice(body);
        let response = respond(self.head.request(), status, headers, content_type, body);
        *self.out = Some(response.map(Body::new));
        Ok(())
    }

    async fn stream(
        self,
        headers: &[(&str, &str)],
        content_type: &str,
        body: crate::sse::EventStream,
    ) -> wsduplex::Result<()> {
        use futures_util::StreamExt as _;
        // hyper drops the body when the client leaves, and the stream's session with it.
        let body = Body::from_stream(body.map(Ok::<Bytes, std::convert::Infallible>));
        let mut response = Response::new(body);
        for (name, value) in headers.iter().chain([&("content-type", content_type)]) {
            let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(value),
            ) else {
                continue;
            };
            response.headers_mut().insert(name, value);
        }
        *self.out = Some(response);
        Ok(())
    }

    async fn join(
        self,
        agreed: Negotiated,
        subs: Subscriptions,
        limits: Limits,
        access: Access,
    ) -> wsduplex::Result<Option<Self::Member>> {
        let Some(on_upgrade) = self.on_upgrade else {
            // Not over hyper's HTTP/1.1 (the request carries no upgrade handle).
            let body = &b"this connection cannot be upgraded\n"[..];
            let response = respond(self.head.request(), 500, &[], "text/plain", body);
            *self.out = Some(response.map(Body::new));
            return Ok(None);
        };
        let close_timeout = agreed.socket.close_timeout;
        let upgraded = accept_negotiated(&self.head, agreed, on_upgrade, self.permit);
        let (response, upgrading) = match upgraded {
            Ok(accepted) => accepted,
            Err(refused) => {
                *self.out = Some(refused.map(Body::new));
                return Ok(None);
            }
        };
        *self.out = Some(response.map(Body::new));
        tokio::spawn(async move {
            let run = async {
                let running = subs.hub().member_running();
                let ws = upgrading.await?;
                let member = Member::new(ws, subs, limits, close_timeout, access, running);
                member.run().await
            };
            if let Err(e) = run.await {
                tracing::debug!("hub member: {e}");
            }
        });
        Ok(None)
    }
}
