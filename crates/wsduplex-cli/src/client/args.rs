//! `wsduplex client`'s flags.

use crate::args::{parse_duration, DeflateArgs};
use crate::lines::{BinaryInput, Encoding};
use base64::Engine as _;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// ws:// or wss:// URL to connect to (without a scheme, ws:// is assumed, as wscat does).
    pub(super) url: String,
    /// Extra request header, 'Name: value' (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub(super) headers: Vec<String>,
    /// Subprotocol to offer (repeatable, most preferred first).
    #[arg(
        short = 's',
        long = "subprotocol",
        visible_alias = "protocol",
        value_name = "PROTOCOL"
    )]
    pub(super) subprotocols: Vec<String>,
    /// Origin header to send.
    #[arg(long)]
    pub(super) origin: Option<String>,
    /// Print the handshake request and response headers to stderr; -vv: every frame both
    /// ways, as `wsduplex relay --trace` does (docs/relay.md).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub(super) verbose: u8,
    /// No status lines on stderr (pongs, notes, reconnections): errors only.
    #[arg(short, long, conflicts_with = "verbose")]
    pub(super) quiet: bool,
    /// Authenticate with HTTP Basic: sends `Authorization: Basic base64(USER:PASS)`.
    #[arg(long, value_name = "USER:PASS", value_parser = basic_auth)]
    pub(super) basic_auth: Option<String>,
    /// Send binary messages: each input line as hex or base64, or all of the input (raw)
    /// as one message. Commands (/ping, /close...) still work; "//" is not an escape.
    #[arg(long, value_name = "ENCODING", value_enum)]
    pub(super) binary: Option<BinaryInput>,
    /// How received binary messages are printed [default: as --binary's lines, else hex].
    #[arg(long, value_name = "ENCODING", value_enum)]
    pub(super) print_binary: Option<Encoding>,
    /// When the input ends, keep receiving until the server closes (instead of closing).
    #[arg(short = 'n', long)]
    pub(super) no_close: bool,
    /// Send one message (the first input line), print one reply, and close.
    #[arg(short = '1', long)]
    pub(super) one_message: bool,
    /// Run CMD and bridge it to the connection instead of the terminal: each line of its
    /// stdout is a message, each received message a line on its stdin (websocat's sh-c:).
    /// Its exit closes the connection (1000); the connection's end closes its stdin. CMD
    /// runs under sh -c if it has shell syntax.
    #[arg(long, value_name = "CMD", conflicts_with = "echo")]
    pub(super) exec: Option<String>,
    /// Send every received message back unchanged; stdin is not read.
    #[arg(long)]
    pub(super) echo: bool,
    /// Print binary messages as raw bytes (--print-binary raw).
    #[arg(long, conflicts_with = "print_binary")]
    pub(super) binary_raw: bool,
    /// wss://: also trust the CA certificates in this PEM file (repeatable).
    #[arg(long, value_name = "FILE")]
    pub(super) cacert: Vec<PathBuf>,
    /// wss://: client certificate chain (PEM) for mutual TLS.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub(super) cert: Option<PathBuf>,
    /// wss://: the PEM private key of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub(super) key: Option<PathBuf>,
    /// wss://: do not check the server's certificate. Dangerous: anyone on the path can
    /// read and change the traffic.
    #[arg(short = 'k', long)]
    pub(super) insecure: bool,
    /// Connect through this proxy: http://host:port (CONNECT) or socks5h://host:port, with
    /// user:pass@ before the host for authentication. Default: https_proxy (wss://) or
    /// http_proxy (ws://), then all_proxy, unless no_proxy matches the host.
    #[arg(long, value_name = "URL")]
    pub(super) proxy: Option<String>,
    /// Connect directly, whatever the proxy environment variables say.
    #[arg(long, conflicts_with = "proxy")]
    pub(super) no_proxy: bool,
    /// Send a ping this often (e.g. 30s) and give up on a server silent for --ping-timeout.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(super) ping_interval: Option<Duration>,
    /// How long the server may stay silent after a keepalive ping.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "20s")]
    pub(super) ping_timeout: Duration,
    /// Time allowed to open the TCP connection.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    pub(super) connect_timeout: Duration,
    /// Time allowed for the TLS and WebSocket handshakes.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    pub(super) handshake_timeout: Duration,
    /// When the connection drops (or cannot be opened), connect again with exponential
    /// backoff and jitter; stdin keeps going to the new connection. Ends when stdin ends
    /// or after /close.
    #[arg(long)]
    pub(super) reconnect: bool,
    /// Offer permessage-deflate (RFC 7692); the default, as in browsers, Node's ws and
    /// Python's websockets.
    #[arg(long, overrides_with = "no_deflate")]
    pub(super) deflate: bool,
    /// Do not offer permessage-deflate.
    #[arg(long, overrides_with = "deflate", conflicts_with = "DeflateArgs")]
    pub(super) no_deflate: bool,
    #[command(flatten)]
    pub(super) deflate_args: DeflateArgs,
    /// Open the WebSocket over HTTP/2 (RFC 8441 extended CONNECT): `always` (the default;
    /// h2c with prior knowledge for ws://, ALPN h2 for wss://), `auto` (wss://: HTTP/2 if
    /// the server chooses it in ALPN, else HTTP/1.1) or `never`.
    #[arg(long, value_name = "WHEN", num_args = 0..=1, require_equals = true, default_missing_value = "always", value_enum)]
    pub(super) http2: Option<crate::http2_flag::When>,
}

impl Args {
    /// How received binary messages are printed.
    pub(super) fn encoding(&self) -> Encoding {
        match (self.binary_raw, self.print_binary) {
            (true, _) => Encoding::Raw,
            (false, Some(e)) => e,
            (false, None) => Encoding::for_input(self.binary),
        }
    }
}

/// `--basic-auth USER:PASS` as the Authorization header's value (RFC 7617).
fn basic_auth(s: &str) -> Result<String, String> {
    if !s.contains(':') {
        return Err("expected USER:PASS".into());
    }
    Ok(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(s)
    ))
}
