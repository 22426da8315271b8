//! `--http2[=WHEN]`, shared by `wsduplex client` and `wsduplex bench echo`.

use wsduplex::client::Http2;

/// When to open the WebSocket over HTTP/2 (RFC 8441 extended CONNECT).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// HTTP/2 only: h2c with prior knowledge for ws://, ALPN h2 for wss://.
    Always,
    /// wss://: offer h2 and http/1.1 in ALPN and use what the server chooses.
    Auto,
    /// HTTP/1.1 only.
    Never,
}

impl From<When> for Http2 {
    fn from(w: When) -> Self {
        match w {
            When::Always => Http2::Always,
            When::Auto => Http2::WhenOffered,
            When::Never => Http2::Never,
        }
    }
}
