//! # wsduplex-proto
//!
//! RFC 6455 WebSocket as pure logic: bytes in; bytes, events, errors and deadlines out. No
//! I/O, no async runtime, no clock: the caller passes the time in
//! ([`Connection::handle_timeout`]) and asks for the next deadline
//! ([`Connection::poll_timeout`]), which covers the close timeout, keepalive pings and the
//! idle timeout ([`Timeouts`]). permessage-deflate (RFC 7692) is negotiated by [`deflate`] and
//! runs inside the [`Connection`] once [`Config::deflate`] holds the agreement. The
//! `wsduplex` crate drives it over tokio; anything else (another runtime, a simulator, a
//! fuzzer) can drive it the same way.
//!
//! ```text
//!   transport bytes ──receive()──▶ Connection ──poll_event()──▶ Message (text, binary,
//!                                      │                        ping, pong, close)
//!   application ──send_*/close()──▶    │
//!                                      ├──poll_transmit()──▶ bytes to write (pongs,
//!   handle_timeout(now) ──────────▶    │                     close replies, your frames)
//!                                      └──poll_timeout()───▶ the next deadline
//! ```
//!
//! What it is not: an HTTP server. The [`handshake`] module parses and builds the one
//! request and response of the opening handshake; serving other HTTP belongs to the caller.
//!
//! ```
//! use wsduplex_proto::{Config, Connection, Message, Role};
//! use bytes::Buf;
//!
//! let mut client = Connection::new(Role::Client, Config::default());
//! let mut server = Connection::new(Role::Server, Config::default());
//! client.send_text("hello").unwrap();
//!
//! // Move the client's bytes to the server, as a transport would.
//! let tx = client.poll_transmit().unwrap();
//! let bytes = tx.copy_to_bytes(tx.remaining());
//! server.receive(&bytes).unwrap();
//! match server.poll_event() {
//!     Some(Message::Text(t)) => assert_eq!(t.as_str(), "hello"),
//!     other => panic!("unexpected {other:?}"),
//! }
//! ```
//!
//! ## Features
//!
//! - `deflate` (on by default): permessage-deflate compression (zlib-rs through `flate2`).
//!   Without it the [`deflate`] module's negotiation types remain, so code that configures
//!   deflate compiles either way, but nothing is ever agreed: a server declines every offer,
//!   a client offers nothing, and a [`Connection`] ignores [`Config::deflate`].
//! - `snapshot` (off by default): `Connection::snapshot` and `Connection::restore`, a
//!   connection's whole state as a serde value (`snapshot::ConnectionState`), to resume it
//!   in another process on the same transport. With it, a permessage-deflate context with
//!   takeover keeps a copy of its window (at most 32 KiB per direction) to prime the
//!   restored one with.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

pub mod close;
mod connection;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
mod message;
pub mod random;
#[cfg(feature = "snapshot")]
#[cfg_attr(docsrs, doc(cfg(feature = "snapshot")))]
pub mod snapshot;
pub mod trace;
mod transmit;
pub mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use connection::{Config, Connection, Quiet, Role, Sender, State, Timeout, Timeouts};
pub use deflate::{DeflateConfig, DeflateParams};
pub use error::{Error, ProtocolError, UsageError};
pub use message::{Message, MessageRef};
pub use transmit::Transmit;
pub use utf8::Utf8Bytes;

/// The README's example, compiled as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
