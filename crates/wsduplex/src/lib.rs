//! # wsduplex
//!
//! WebSocket (RFC 6455) client and server for tokio. The protocol itself lives in
//! [`proto`] (the `wsduplex-proto` crate, pure logic); this crate only moves its bytes over
//! a transport, keeps its timers, and answers HTTP on the same port.
//!
//! ```text
//!  TcpStream ─▶ server::read_request ─▶ Incoming ─┬─▶ accept()  ─▶ WebSocket ◀─▶ proto::Connection
//!                                                  ├─▶ reject()  (400 / 426 / 431)
//!                                                  └─▶ respond() (plain HTTP: pages, APIs)
//!  connect(url) ─▶ TCP (or a proxy tunnel) ─▶ (TLS for wss://) ─▶ client_handshake ──▶ WebSocket
//!  http::Request<()> (hyper, axum) ─▶ ServerConfig::upgrade_http ─▶ http::Response 101 + Negotiated::websocket
//! ```
//!
//! Whether a connection or a request may come in (connection limits, the Origin policy,
//! authentication) is decided in one place, [`server::admission`], over the peer's address
//! and the request head; [`metrics`] counts what happens and renders it for Prometheus.
//!
//! `wss://` works like `ws://` (feature `tls`, on by default: rustls with the *ring*
//! provider); servers put a [`tls::TlsAcceptor`] in front of `read_request`.
//!
//! Servers speak HTTP/2 too with the feature `http2` (off by default; the `wsduplex`
//! binary turns it on): `server::http2` answers WebSockets over extended CONNECT
//! (RFC 8441) and the plain requests beside them, each stream through the same front door,
//! over TLS (ALPN `h2`) or cleartext with prior knowledge (`h2c`).
//! Clients open theirs over HTTP/2 as `ClientConfig::http2` says (never by default, when
//! the server chooses `h2` in ALPN, or always), several to one origin sharing a connection
//! through `ClientConfig::http2_pool` (`client::http2`).
//!
//! Clients go through HTTP `CONNECT` and SOCKS5 proxies, from [`ClientConfig::proxy`] or,
//! by default, the `https_proxy`/`http_proxy`/`all_proxy`/`no_proxy` environment variables
//! as curl and Python `websockets` read them: see [`proxy`].
//!
//! What it is not: a web framework (routing is a `match` on [`Incoming::path`]) or a
//! wrapper of another WebSocket library.
//!
//! ## The browser API, here
//!
//! | browser | wsduplex |
//! |---|---|
//! | `new WebSocket(url, protocols)` | [`connect_with`] with [`ClientConfig::subprotocols`] |
//! | `onopen` | `connect` returns `Ok` |
//! | `onmessage` | `Some(Ok(Message::Text \| Message::Binary))` from [`WebSocket::recv`] |
//! | `onerror` | `Some(Err(e))` from `recv` (the last item before `None`) |
//! | `onclose` | `Some(Ok(Message::Close(frame)))` from `recv` (then `None`) |
//! | `send(data)` | [`WebSocket::send`] |
//! | `close(code, reason)` | [`WebSocket::close`], then keep calling `recv` |
//! | `bufferedAmount`, `protocol` | [`WebSocket::buffered_amount`], [`WebSocket::subprotocol`] |
//!
//! ```no_run
//! use wsduplex::{connect, CloseCode, Message};
//!
//! # async fn run() -> Result<(), wsduplex::Error> {
//! let (mut ws, _handshake) = connect("ws://127.0.0.1:8080/echo").await?; // new WebSocket(url)
//! println!("open");                                                     // onopen
//! ws.send("hello").await?;                                              // send("hello")
//! while let Some(item) = ws.recv().await {
//!     match item {
//!         Ok(Message::Text(text)) => {
//!             println!("message: {text}");                              // onmessage
//!             ws.close(CloseCode::NORMAL, "done").await?;               // close(1000, "done")
//!         }
//!         Ok(Message::Binary(data)) => println!("{} bytes", data.len()), // onmessage
//!         Ok(Message::Close(frame)) => println!("closed: {frame:?}"),    // onclose
//!         Ok(_) => {}                                                   // ping / pong
//!         Err(e) => eprintln!("error: {e}"),                            // onerror
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! A server that echoes on `/echo` and answers HTTP elsewhere:
//!
//! ```no_run
//! use wsduplex::server::{read_request, ServerConfig};
//!
//! # async fn run() -> Result<(), wsduplex::Error> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let config = ServerConfig::default();
//! loop {
//!     let (tcp, _) = listener.accept().await?;
//!     let config = config.clone();
//!     tokio::spawn(async move {
//!         let incoming = read_request(tcp, &config).await?;
//!         if incoming.path() != "/echo" {
//!             return incoming.respond(404, &[], "text/plain", b"not found\n").await;
//!         }
//!         let mut ws = incoming.accept(&config).await?;
//!         while let Some(Ok(msg)) = ws.recv().await {
//!             if msg.is_data() {
//!                 ws.feed(msg).await?; // flushed when the reader would wait
//!             }
//!         }
//!         Ok::<_, wsduplex::Error>(())
//!     });
//! }
//! # }
//! ```
//!
//! ## The `http` crate at the boundary
//!
//! A server that already has a request head as the [`http`] crate's (hyper, axum) puts it
//! through the same front door ([`ServerConfig::upgrade_http`]: admission, authentication,
//! the RFC 6455 checks, negotiation) and gets an [`http::Response`] to send: the `101`, or
//! the refusal with its status, headers and reason. Our own HTTP/1.1 reader never builds
//! `http` types; only this path pays for the conversion ([`server::http_types`]).
//!
//! ```
//! use wsduplex::server::ServerConfig;
//!
//! /// What a hyper service does with an upgrade request's head.
//! async fn answer(config: &ServerConfig, head: &http::request::Parts) -> http::Response<String> {
//!     match config.upgrade_http(head, None, None).await {
//!         // Send the 101; on the upgraded transport `io`, the socket is
//!         // `upgrade.negotiated.websocket(io, &[])`.
//!         Ok(upgrade) => upgrade.response.map(|()| String::new()),
//!         Err(refused) => refused.into_response(),
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let (head, ()) = http::Request::get("/chat").body(()).unwrap().into_parts();
//! let refused = answer(&ServerConfig::default(), &head).await;
//! assert_eq!(refused.status(), 400);
//! assert_eq!(refused.body(), "missing Host header\n");
//! # });
//! ```
//!
//! With the `hyper` feature, `wsduplex::hyper::upgrade` does all of it for a hyper 1.x service (the
//! `101`, then a future of the socket, which holds its place in the connection limits); with
//! `axum`, the `wsduplex::axum::WebSocketUpgrade` extractor does it in axum's style
//! (`ws.protocols(["chat"]).on_upgrade(|ws| async move { ... })`). Neither is in the default
//! build. Examples: `examples/hyper_echo.rs`, `examples/axum_echo.rs`.
//!
//! A client connects with an `http::Request<()>` as well as a URL ([`IntoClientRequest`]):
//! its headers go out as given, its `Sec-WebSocket-Protocol` lists the subprotocols to
//! offer; the handshake's own headers are ours to set.
//!
//! ```no_run
//! # async fn run() -> Result<(), wsduplex::Error> {
//! let request = http::Request::get("wss://chat.example/chat/home")
//!     .header("Authorization", "Bearer secret")
//!     .header("Sec-WebSocket-Protocol", "chat.v2")
//!     .body(())
//!     .unwrap();
//! let (ws, _handshake) = wsduplex::connect(request).await?;
//! assert_eq!(ws.subprotocol(), Some("chat.v2"));
//! # Ok(())
//! # }
//! ```
//!
//! The transport stays reachable: [`WebSocket::get_ref`] (the peer's address, the TLS
//! session and the client's certificate), [`WebSocket::get_mut`], [`WebSocket::into_inner`];
//! and a socket built from raw parts after a handshake done elsewhere records its
//! subprotocol with [`WebSocket::with_subprotocol`].
//!
//! ```no_run
//! # async fn run(listener: tokio::net::TcpListener) -> Result<(), wsduplex::Error> {
//! let (tcp, _) = listener.accept().await?;
//! let ws = wsduplex::accept(tcp).await?;
//! println!("peer {}", ws.get_ref().peer_addr()?);
//! # Ok(())
//! # }
//! ```
//!
//! ## Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `tls` | on | `wss://` for the client, [`tls`] acceptors for servers (rustls with *ring*) |
//! | `deflate` | on | permessage-deflate (the core's `deflate`); without it a server never agrees to the extension and a client never offers it |
//! | `self-signed` | off | `tls::self_signed`: a development certificate generated at run time (`rcgen`); implies `tls` |
//! | `http2` | off | WebSockets over HTTP/2 extended CONNECT (RFC 8441): `server::http2` (`h2c` and ALPN `h2`) and the client's `client::Http2` |
//! | `jwt` | off | `auth::JwtAuth`: JSON Web Tokens as the authentication hook (`jsonwebtoken`) |
//! | `hyper` | off | `wsduplex::hyper::upgrade` for hyper 1.x servers |
//! | `axum` | off | the `wsduplex::axum::WebSocketUpgrade` extractor for axum 0.8 (implies `hyper`) |
//! | `handover` | off | `WebSocket::into_parts` and `WebSocket::from_parts`, `SocketState` (versioned `encode`/`decode`): a live socket moved to another process on the same transport (the core's `snapshot`) |
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

pub mod auth;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
mod buffers;
pub mod client;
mod error;
pub mod forwarded;
#[cfg(feature = "http2")]
mod http2_body;
#[cfg(feature = "hyper")]
#[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
pub mod hyper;
pub mod limits;
pub mod metrics;
pub mod proxy;
pub mod reconnect;
pub mod server;
mod socket;
pub mod tap;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;

pub use http;
pub use proto;
pub use proto::{CloseCode, CloseFrame, DeflateConfig, Message, MessageRef, Utf8Bytes};

pub use client::{
    connect, connect_with, ClientConfig, ClientRequest, ClientStream, Handshake, IntoClientRequest,
};
pub use error::{Error, Result};
pub use proxy::{ProxyError, ProxySetting};
pub use server::{accept, Incoming, ServerConfig};
pub use socket::{Config, Parked, ReadHalf, Reply, SlowReader, WebSocket, WriteHalf};
#[cfg(feature = "handover")]
#[cfg_attr(docsrs, doc(cfg(feature = "handover")))]
pub use socket::{HandoverError, SocketState};

/// The README's example, compiled as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
