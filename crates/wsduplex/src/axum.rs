//! axum 0.8 (feature `axum`): the [`WebSocketUpgrade`] extractor, in the style axum's own
//! has, through the front door of `wsduplex serve` (connection limits, Origin,
//! authentication, the RFC 6455 checks, subprotocol and permessage-deflate negotiation,
//! metrics). Refusals are axum responses with the status, headers and reason our own path
//! sends.
//!
//! ```text
//!  request ─▶ WebSocketUpgrade (head converted; settings from the ServerConfig extension
//!             │                 or the default; peer from a Peer extension or ConnectInfo)
//!             ├─ .protocols([..]) .deflate(..) .max_message_size(..) .config(..)
//!             └─ .on_upgrade(|ws| async move { .. }) ─▶ 101 (the callback runs on the socket)
//!                                                   └─▶ or the refusal (403, 401, 429, 400 ...)
//! ```
//!
//! The settings start from a [`ServerConfig`] in the request's extensions (an
//! `Extension(config)` layer) or, without one, [`ServerConfig::default`]; a handler that
//! keeps its config in state passes it with [`WebSocketUpgrade::config`]. The peer (for the
//! per-client limit and the same-origin rule) is a [`Peer`] extension if the app inserts
//! one (over TLS, say), else the address of `ConnectInfo<SocketAddr>` (served with
//! `into_make_service_with_connect_info`) over cleartext, else unknown.
//!
//! ```no_run
//! use axum::{response::Response, routing::get, Extension, Router};
//! use wsduplex::{axum::WebSocketUpgrade, DeflateConfig, ServerConfig};
//!
//! async fn chat(ws: WebSocketUpgrade) -> Response {
//!     ws.protocols(["chat.v2"])
//!         .deflate(DeflateConfig::default())
//!         .max_message_size(64 * 1024)
//!         .on_upgrade(|mut ws| async move {
//!             while let Some(Ok(msg)) = ws.recv().await {
//!                 if msg.is_data() && ws.send(msg).await.is_err() {
//!                     break;
//!                 }
//!             }
//!         })
//!         .await
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let app = Router::new()
//!     .route("/chat", get(chat))
//!     .layer(Extension(ServerConfig::default()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! axum::serve(listener, app).await
//! # }
//! ```

// A refusal is the response to send, returned by value as handlers return responses: one
// per upgrade request, so its size costs nothing a box would save.
#![allow(clippy::result_large_err)]

use crate::hyper::{read_head, upgrade_with, Head, Upgraded, Upgrading};
use crate::server::{Peer, ServerConfig};
use crate::socket::WebSocket;
use ::axum::body::Body;
use ::axum::extract::{ConnectInfo, FromRequestParts};
use ::axum::response::Response;
use ::hyper::upgrade::OnUpgrade;
use http::request::Parts;
use proto::handshake::server::Request;
use proto::DeflateConfig;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

/// An extractor for WebSocket upgrades: configure it, then answer with
/// [`on_upgrade`](Self::on_upgrade). It never rejects: a request that is not a valid
/// upgrade is answered by `on_upgrade` as `wsduplex serve` answers it (`400`, `426`...).
pub struct WebSocketUpgrade {
    head: Result<Head, http::Response<crate::hyper::Body>>,
    on_upgrade: Option<OnUpgrade>,
    config: ServerConfig,
    peer: Option<Peer>,
}

impl std::fmt::Debug for WebSocketUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketUpgrade")
            .field("head", &self.head)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        let config = parts
            .extensions
            .get::<ServerConfig>()
            .cloned()
            .unwrap_or_else(|| crate::server::default_config().clone());
        let peer = peer(&parts.extensions);
        Ok(Self {
            head: read_head(&config, &*parts, &parts.extensions),
            on_upgrade: parts.extensions.remove::<OnUpgrade>(),
            config,
            peer,
        })
    }
}

/// What a request's extensions tell about the client: a [`Peer`] the app inserted (over
/// TLS, say), else the address of `ConnectInfo<SocketAddr>` over cleartext, else nothing.
pub fn peer(extensions: &http::Extensions) -> Option<Peer> {
    extensions.get::<Peer>().copied().or_else(|| {
        let ConnectInfo(addr) = extensions.get::<ConnectInfo<SocketAddr>>()?;
        Some(Peer::new(addr.ip(), false))
    })
}

impl WebSocketUpgrade {
    /// Replaces every setting with `config` (the one a handler keeps in its state, say).
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// The settings, to change any of them.
    pub fn config_mut(&mut self) -> &mut ServerConfig {
        &mut self.config
    }

    /// The subprotocols this endpoint speaks, most preferred first: the first the client
    /// offers is agreed to.
    pub fn protocols<I>(mut self, protocols: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.config.subprotocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Accepts permessage-deflate (RFC 7692) from clients that offer it, with these limits.
    pub fn deflate(mut self, deflate: DeflateConfig) -> Self {
        self.config.deflate = Some(deflate);
        self
    }

    /// The largest message the socket accepts (closed with 1009 beyond).
    pub fn max_message_size(mut self, max: u64) -> Self {
        self.config.socket.protocol.max_message_size = max;
        self
    }

    /// The largest frame the socket accepts (closed with 1009 beyond).
    pub fn max_frame_size(mut self, max: u64) -> Self {
        self.config.socket.protocol.max_frame_size = max;
        self
    }

    /// What the transport knows about the client, when neither a [`Peer`] extension nor
    /// `ConnectInfo` tells it (over TLS, say).
    pub fn peer(mut self, peer: Peer) -> Self {
        self.peer = Some(peer);
        self
    }

    /// The request as the front door read it (its path and headers), unless its head was
    /// refused.
    pub fn request(&self) -> Option<&Request> {
        self.head.as_ref().ok().map(Head::request)
    }

    /// Runs the front door and answers: the `101`, with `callback` spawned on the socket
    /// once axum hands over the connection; or the refusal.
    pub async fn on_upgrade<F, Fut>(self, callback: F) -> Response
    where
        F: FnOnce(WebSocket<Upgraded>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        match self.upgrade().await {
            Ok((response, upgrading)) => {
                tokio::spawn(async move {
                    match upgrading.await {
                        Ok(ws) => callback(ws).await,
                        Err(e) => tracing::debug!("websocket upgrade not completed: {e}"),
                    }
                });
                response
            }
            Err(refused) => refused,
        }
    }

    /// Runs the front door: the `101` and the future of the socket (for a caller that
    /// drives it itself), or the refusal.
    pub async fn upgrade(self) -> Result<(Response, Upgrading), Response> {
        match upgrade_with(self.head, self.on_upgrade, &self.config, self.peer).await {
            Ok((response, upgrading)) => Ok((response.map(Body::new), upgrading)),
            Err(refused) => Err(refused.map(Body::new)),
        }
    }
}
