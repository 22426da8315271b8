//! Client-side proxies: HTTP `CONNECT` tunnels and SOCKS5 (RFC 1928, with the
//! username/password method of RFC 1929).
//!
//! The proxy only carries bytes: for `wss://` the TLS handshake runs *inside* the tunnel,
//! end to end with the server, and the proxy never sees the plaintext.
//!
//! ```text
//!  connect_with(url) ─▶ ProxySetting ─▶ which proxy, if any, for this URL (NO_PROXY, scheme)
//!                     ─▶ TCP to the proxy ─▶ CONNECT host:port / SOCKS5 connect ─▶ tunnel
//!                     ─▶ (TLS for wss://) ─▶ client_handshake ─▶ WebSocket
//! ```
//!
//! The messages of both protocols are built and parsed by pure functions
//! ([`connect_request`], [`parse_connect_response`], [`socks5_greeting`], ...); only
//! [`open_tunnel`] and the exchanges it runs do I/O. The source is in three parts
//! (`proxy/choose.rs`, `proxy/http_connect.rs`, `proxy/socks5.rs`): which proxy, if any
//! ([`ProxySetting`], [`ProxyRules`], [`no_proxy_matches`], [`ProxyUrl`]); the HTTP
//! `CONNECT` exchange; the SOCKS5 exchange.
//!
//! # Which proxy
//!
//! [`ClientConfig::proxy`](crate::ClientConfig::proxy) is a [`ProxySetting`]; the default is
//! [`ProxySetting::FromEnv`], as curl and Python `websockets` (since 15.0) do:
//!
//! - `ws://` URLs use `http_proxy`, `wss://` URLs use `https_proxy`; either falls back to
//!   `all_proxy`. Each variable is read lowercase first, then uppercase (`HTTP_PROXY`, ...);
//!   an empty value counts as unset.
//! - `no_proxy` (or `NO_PROXY`) is a comma-separated list; a URL whose host matches an entry
//!   connects directly. `*` matches every host. A name matches itself and its subdomains
//!   (`example.com` and `.example.com` both match `example.com` and `ws.example.com`, not
//!   `badexample.com`). An IP address matches itself; `10.0.0.0/8` or `fd00::/8` match a
//!   range (as curl ≥ 7.86 does). An entry with a port (`example.com:8080`,
//!   `[::1]:8080`) matches that port only; without, every port. Names are not resolved:
//!   `localhost` does not match `127.0.0.1`. Loopback is *not* exempt by itself (as in
//!   curl): put `localhost,127.0.0.1,::1` in `no_proxy` if a proxy is set.
//! - Proxy URLs: `http://[user:password@]host[:port]` (port 80 by default) for `CONNECT`
//!   with basic auth, `socks5://` or `socks5h://[user:password@]host[:port]` (port 1080) for
//!   SOCKS5. Both SOCKS schemes send the host *name* to the proxy, which resolves it
//!   (remote DNS: a client behind a SOCKS proxy often cannot resolve names itself). A URL
//!   without a scheme is `http://`, as curl reads it. Userinfo is percent-decoded. Other
//!   schemes (`https://` proxies, `socks4://`) are [`ProxyError::UnsupportedScheme`].
//!
//! Setting up the tunnel counts against
//! [`ClientConfig::connect_timeout`](crate::ClientConfig::connect_timeout).

mod choose;
mod http_connect;
mod socks5;

pub use choose::{no_proxy_matches, ProxyKind, ProxyRules, ProxySetting, ProxyUrl};
pub use http_connect::{connect_request, parse_connect_response};
pub use socks5::{
    parse_socks5_auth_reply, parse_socks5_connect_reply, parse_socks5_method, socks5_auth_request,
    socks5_connect_request, socks5_greeting, SocksReply,
};

use crate::client::Target;
use tokio::net::TcpStream;

/// Why a connection through a proxy failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The proxy URL's scheme is not `http`, `socks5` or `socks5h`.
    #[error("unsupported proxy scheme {scheme} (supported: http, socks5, socks5h)")]
    UnsupportedScheme {
        /// The scheme, e.g. `https` or `socks4`.
        scheme: String,
    },
    /// The proxy URL cannot be parsed.
    #[error("invalid proxy url: {reason}")]
    InvalidUrl {
        /// What is wrong (the URL itself is not repeated: it may hold a password).
        reason: String,
    },
    /// The TCP connection to the proxy failed.
    #[error("cannot connect to proxy {proxy}")]
    Unreachable {
        /// The proxy's `host:port`.
        proxy: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The proxy answered `CONNECT` with a status other than 2xx, 401 or 407.
    #[error("proxy refused the tunnel with status {status}")]
    Refused {
        /// The HTTP status, e.g. 403 or 502.
        status: u16,
    },
    /// The proxy answered `CONNECT` with 407 Proxy Authentication Required (or 401, which
    /// tinyproxy sends for wrong credentials: a `CONNECT` never reaches the server).
    #[error("{} ({status})", if *.sent_credentials {
        "proxy rejected the credentials"
    } else {
        "proxy requires authentication: put user:password@ in the proxy url"
    })]
    AuthRequired {
        /// 407 or 401.
        status: u16,
        /// Whether credentials were sent (so they are wrong), or none were.
        sent_credentials: bool,
    },
    /// The proxy closed the connection before the tunnel was established.
    #[error("proxy closed the connection before the tunnel was established")]
    TunnelClosed,
    /// The proxy's answer is not HTTP or SOCKS5 as expected.
    #[error("invalid answer from the proxy: {what}")]
    InvalidResponse {
        /// What is wrong.
        what: &'static str,
    },
    /// The SOCKS5 proxy accepts none of the authentication methods offered.
    #[error("socks proxy accepts none of the offered authentication methods{}",
        if *.offered_credentials { " (no auth, username/password)" } else { " (no auth): it may need user:password@ in the proxy url" })]
    SocksNoAcceptableMethod {
        /// Whether username/password was offered.
        offered_credentials: bool,
    },
    /// The SOCKS5 proxy rejected the username and password (RFC 1929).
    #[error("socks proxy rejected the username or password")]
    SocksAuthFailed,
    /// The SOCKS5 proxy could not connect to the target (RFC 1928 §6 reply code).
    #[error("socks proxy: {0}")]
    SocksReply(SocksReply),
    /// A username, password or host name is longer than SOCKS5's 255 bytes.
    #[error("socks5 limits {what} to 255 bytes")]
    SocksFieldTooLong {
        /// `username`, `password` or `host name`.
        what: &'static str,
    },
}

/// Connects to `proxy` and asks it for a tunnel to `target`; the stream returned carries
/// the target's bytes. Errors are [`crate::Error::Proxy`], or [`crate::Error::Io`] when
/// the established connection to the proxy fails.
pub async fn open_tunnel(proxy: &ProxyUrl, target: &Target) -> crate::Result<TcpStream> {
    let mut tcp = TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .map_err(|source| ProxyError::Unreachable {
            proxy: proxy.authority(),
            source,
        })?;
    tcp.set_nodelay(true)?;
    let credentials = proxy
        .credentials
        .as_ref()
        .map(|(u, p)| (u.as_str(), p.as_str()));
    match proxy.kind {
        ProxyKind::HttpConnect => http_connect::open(&mut tcp, target, credentials).await?,
        ProxyKind::Socks5 => socks5::open(&mut tcp, target, credentials).await?,
    }
    Ok(tcp)
}

/// `host:port`, the host in brackets if it is an IPv6 address.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
