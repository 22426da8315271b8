//! `wsduplex client`'s flags.

use crate::args::{parse_duration, DeflateArgs};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// ws:// or wss:// URL to connect to.
    pub(super) url: String,
    /// Extra request header, 'Name: value' (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub(super) headers: Vec<String>,
    /// Subprotocol to offer (repeatable, most preferred first).
    #[arg(long = "subprotocol", value_name = "PROTOCOL")]
    pub(super) subprotocols: Vec<String>,
    /// Origin header to send.
    #[arg(long)]
    pub(super) origin: Option<String>,
    /// Print the handshake request and response headers to stderr.
    #[arg(short, long)]
    pub(super) verbose: bool,
    /// Send every received message back unchanged; stdin is not read.
    #[arg(long)]
    pub(super) echo: bool,
    /// Print binary messages as raw bytes instead of hex.
    #[arg(long)]
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
}
