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
//! ```
//!
//! Whether a connection or a request may come in (connection limits, the Origin policy,
//! authentication) is decided in one place, [`server::admission`], over the peer's address
//! and the request head; [`metrics`] counts what happens and renders it for Prometheus.
//!
//! `wss://` works like `ws://` (feature `tls`, on by default: rustls with the *ring*
//! provider); servers put a [`tls::TlsAcceptor`] in front of `read_request`.
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
#![warn(missing_docs)]

pub mod auth;
mod buffers;
pub mod client;
mod error;
pub mod forwarded;
pub mod limits;
pub mod metrics;
pub mod proxy;
pub mod reconnect;
pub mod server;
mod socket;
#[cfg(feature = "tls")]
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
pub use socket::{Config, ReadHalf, Reply, SlowReader, WebSocket, WriteHalf};
