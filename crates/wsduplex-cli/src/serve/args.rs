//! `wsduplex serve`'s flags, and the one step that turns them into the libraries'
//! configurations.

use crate::args::{parse_duration, parse_size, DeflateArgs};
use std::path::PathBuf;
use std::time::Duration;
use wsduplex::auth::{AuthHook, JwtAuth, TokenAuth};
use wsduplex::forwarded::Cidr;
use wsduplex::limits::ConnectionLimiter;
use wsduplex::server::ServerConfig;
use wsduplex::SlowReader;
use wsduplex_hub::HubConfig;

#[derive(clap::Args)]
// The --deflate-* options tune --deflate: alone they would do nothing.
#[command(mut_group("DeflateArgs", |g| g.requires("deflate")))]
pub struct Args {
    /// Address to listen on (port 0 picks a free port; the ready line shows it). Default
    /// 127.0.0.1:8080; with --take-over, where the process taken over listens; under systemd
    /// socket activation (LISTEN_FDS), the sockets it passes.
    #[arg(long, help_heading = "Listening", value_name = "ADDR")]
    pub(super) listen: Option<String>,
    /// Worker threads, each with its own runtime and listener (default: one per core).
    #[arg(long, help_heading = "Listening")]
    pub(super) workers: Option<usize>,
    /// Serve TLS (https:// and wss://) with this PEM certificate chain, leaf first.
    #[arg(long, help_heading = "TLS", value_name = "FILE", requires = "tls_key")]
    pub(super) tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, help_heading = "TLS", value_name = "FILE", requires = "tls_cert")]
    pub(super) tls_key: Option<PathBuf>,
    /// Serve TLS with a certificate generated at start for localhost, 127.0.0.1 and ::1
    /// (for development: its SHA-256 fingerprint is printed on stderr).
    #[arg(long, help_heading = "TLS", conflicts_with_all = ["tls_cert", "tls_key"])]
    pub(super) tls_self_signed: bool,
    /// Listen on this Unix socket (owner-only) for a new `wsduplex serve --take-over PATH`,
    /// and hand it the listening sockets and the live connections (Unix only;
    /// docs/handover.md).
    #[arg(long, help_heading = "Hand-over", value_name = "PATH")]
    pub(super) control: Option<PathBuf>,
    /// Take over from the `wsduplex serve --control PATH` running: its listening sockets
    /// (no --listen needed) and its live connections; then serve the next hand-over on the
    /// same PATH (or --control).
    #[arg(long, help_heading = "Hand-over", value_name = "PATH")]
    pub(super) take_over: Option<PathBuf>,
    /// After handing over, how long connections that cannot move (TLS, HTTP/2, chat members)
    /// are served on before they are closed with 1001.
    #[arg(long, help_heading = "Hand-over", value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    pub(super) drain_timeout: Duration,
    /// Speak HTTP/1.1 only: no ALPN h2 over TLS, no h2c. By default HTTP/2 is served on
    /// the same port too, WebSockets over extended CONNECT (RFC 8441) included.
    #[arg(long, help_heading = "Listening")]
    pub(super) no_http2: bool,
    /// Ping every client this often (e.g. 30s); a client silent for --ping-timeout after a
    /// ping is disconnected. Off by default.
    #[arg(long, help_heading = "Keepalive", value_name = "DURATION", value_parser = parse_duration)]
    ping_interval: Option<Duration>,
    /// How long a client may stay silent after a keepalive ping.
    #[arg(long, help_heading = "Keepalive", value_name = "DURATION", value_parser = parse_duration, default_value = "20s")]
    ping_timeout: Duration,
    /// Close connections with 1001 when no message arrives for this long. Off by default.
    #[arg(long, help_heading = "Keepalive", value_name = "DURATION", value_parser = parse_duration)]
    idle_timeout: Option<Duration>,
    /// Time a client has to send its request (and finish TLS).
    #[arg(long, help_heading = "Limits", value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    handshake_timeout: Duration,
    /// Accept permessage-deflate (RFC 7692) from clients that offer it. Off by default, as
    /// in Node's ws: every compressed connection keeps zlib state and spends CPU.
    #[arg(long, help_heading = "Deflate")]
    pub(super) deflate: bool,
    #[command(flatten, next_help_heading = "Deflate")]
    deflate_args: DeflateArgs,
    /// Believe Forwarded / X-Forwarded-For from peers in this range (e.g. 127.0.0.1/32
    /// for an nginx on the same host; repeatable): the client address logged is then the
    /// one the proxy reports. From any other peer the headers are ignored.
    #[arg(long, help_heading = "Access", value_name = "CIDR")]
    trust_proxy: Vec<Cidr>,
    /// TCP load balancers in this range (repeatable, or comma-separated) send a PROXY
    /// protocol v1 or v2 header (HAProxy send-proxy, nginx stream proxy_protocol, AWS
    /// NLB): their connections must start with one, and its address is the client's for
    /// the per-client limit and the logs. A header from any other source closes its
    /// connection.
    #[arg(long, value_name = "CIDR", value_delimiter = ',', num_args = 1..)]
    proxy_protocol: Vec<Cidr>,
    /// Chat: messages each room keeps for newcomers and for resumes with `since`.
    #[arg(long, help_heading = "Hub", value_name = "N", default_value_t = 100)]
    history: usize,
    /// Chat: events queued per member; a member that falls this far behind is closed with
    /// 4008 and resumes with `since`.
    #[arg(long, help_heading = "Hub", value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    send_queue: u32,
    /// Chat: rooms one connection may follow at once (subscribe beyond it: an error event).
    #[arg(long, help_heading = "Hub", value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    max_subscriptions: u32,
    /// Chat: largest `data` of a message, in bytes of compact JSON (from members and the
    /// push API).
    #[arg(long, help_heading = "Hub", value_name = "BYTES", default_value_t = 16384, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    max_data: u32,
    /// Chat: how long a long-polling GET waits for new events.
    #[arg(long, help_heading = "Hub", value_name = "DURATION", value_parser = parse_duration, default_value = "25s")]
    poll_timeout: Duration,
    /// Chat: the bearer token of the push API (POST /api/rooms/ROOM/messages); the API is
    /// off without it. Read from WSDUPLEX_API_TOKEN if set.
    #[arg(
        help_heading = "Hub",
        long,
        value_name = "TOKEN",
        env = "WSDUPLEX_API_TOKEN",
        hide_env_values = true
    )]
    api_token: Option<String>,
    /// Chat: be one node of many, sharing rooms through this Redis
    /// (`redis://[:PASSWORD@]HOST:PORT[/DB]`; TLS:
    /// `rediss://...[?cacert=CA.pem[&cert=C.pem&key=K.pem]]`; Sentinel:
    /// `redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER`, or `rediss+sentinel://`): every
    /// node started with the same URL serves the same rooms, in one order, with the same ids
    /// and a shared history. Read from WSDUPLEX_REDIS if set. Default: this process alone.
    #[arg(
        help_heading = "Redis",
        long,
        value_name = "URL",
        env = "WSDUPLEX_REDIS",
        hide_env_values = true
    )]
    pub(super) redis: Option<String>,
    /// Require this token (repeatable; or WSDUPLEX_AUTH_TOKEN) to open a WebSocket (/echo,
    /// /chat) or a long-polling session, as `Authorization: Bearer TOKEN`, the query
    /// parameter `access_token=TOKEN`, or the cookie `wsduplex_token=TOKEN`; others get 401.
    #[arg(
        help_heading = "Access",
        long,
        value_name = "TOKEN",
        env = "WSDUPLEX_AUTH_TOKEN",
        hide_env_values = true
    )]
    auth_token: Vec<String>,
    /// Require a JWT signed with HS256 by the secret in this file (its bytes, a trailing
    /// newline dropped) to open a WebSocket or a long-polling session; the member's id,
    /// name and rooms come from its claims (docs/auth.md).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["auth_token", "jwt_public_key"])]
    jwt_secret_file: Option<PathBuf>,
    /// Require a JWT signed with RS256 or ES256 by the key whose public half (PEM) is in
    /// this file, as --jwt-secret-file does.
    #[arg(long, value_name = "PATH", conflicts_with = "auth_token")]
    jwt_public_key: Option<PathBuf>,
    /// With a JWT key: require this `aud` claim.
    #[arg(long, value_name = "AUDIENCE")]
    jwt_audience: Option<String>,
    /// With a JWT key: require this `iss` claim.
    #[arg(long, value_name = "ISSUER")]
    jwt_issuer: Option<String>,
    /// Largest message a client may send (e.g. 16MiB, 64KiB, 1000); larger ones are closed
    /// with 1009. Also bounds a compressed message once inflated.
    #[arg(long, help_heading = "Limits", value_name = "SIZE", value_parser = parse_size, default_value = "16MiB")]
    max_message_size: u64,
    /// Largest frame a client may send; larger ones are closed with 1009 from the header,
    /// before any payload is read.
    #[arg(long, help_heading = "Limits", value_name = "SIZE", value_parser = parse_size, default_value = "16MiB")]
    max_frame_size: u64,
    /// Most frames a client's message may arrive in; more are closed with 1009 "too many
    /// fragments" (0: no limit).
    #[arg(
        long,
        help_heading = "Limits",
        value_name = "N",
        default_value_t = 131_072
    )]
    max_fragments: u32,
    /// Outgoing bytes queued for one connection beyond which its client counts as a slow
    /// reader (see --slow-reader).
    #[arg(long, help_heading = "Limits", value_name = "SIZE", value_parser = parse_size, default_value = "1MiB")]
    send_buffer: u64,
    /// /echo: what happens to a client that reads more slowly than it sends, once
    /// --send-buffer bytes wait for it. wait: stop reading from it until it catches up
    /// (nothing lost); drop: drop the echoes that do not fit; close: close it with 1008
    /// "too slow". Chat members that fall --send-queue events behind are always closed with
    /// 4008.
    #[arg(long, help_heading = "Limits", value_name = "POLICY", value_enum, default_value_t = SlowReaderArg::Wait)]
    slow_reader: SlowReaderArg,
    /// /echo and chat: park a connection idle this long (up to twice it): it is then held
    /// without a task and outside the reactor (an /echo connection in about 200 bytes instead
    /// of about 1 KB), until its client sends something, a keepalive ping is due, or (chat)
    /// its rooms have something they cannot write to it directly (on Unix, plain TCP). 0:
    /// never park.
    #[arg(long, help_heading = "Limits", value_name = "DURATION", value_parser = parse_duration, default_value = "1s")]
    pub(super) park_idle: Duration,
    /// Connections open at once, at most; beyond it a new connection gets 503 (0: no limit).
    #[arg(
        long,
        help_heading = "Limits",
        value_name = "N",
        default_value_t = 50_000
    )]
    max_connections: usize,
    /// Connections open at once from one client address (the one --trust-proxy proxies
    /// report, else the peer's), at most; beyond it 429 (0: no limit).
    #[arg(long, help_heading = "Limits", value_name = "N", default_value_t = 256)]
    max_connections_per_client: usize,
    /// Accept WebSocket upgrades and chat POSTs only from pages of this origin (e.g.
    /// `https://chat.example.com`; repeatable): others get 403. Requests without an Origin
    /// header (non-browser clients) are not affected. Default: any origin, except that a
    /// request let in by the wsduplex_token cookie must come from this server's own origin.
    #[arg(long, help_heading = "Access", value_name = "ORIGIN")]
    allow_origin: Vec<String>,
    /// Let pages of any origin open WebSockets with the wsduplex_token cookie (no
    /// same-origin check; --allow-origin, if given, still applies). Only for a server whose
    /// cookie grants nothing worth stealing.
    #[arg(long, help_heading = "Access")]
    dangerous_allow_any_origin: bool,
}

/// `--slow-reader`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum SlowReaderArg {
    Wait,
    Drop,
    Close,
}

impl From<SlowReaderArg> for SlowReader {
    fn from(a: SlowReaderArg) -> Self {
        match a {
            SlowReaderArg::Wait => SlowReader::Wait,
            SlowReaderArg::Drop => SlowReader::Drop,
            SlowReaderArg::Close => SlowReader::Close,
        }
    }
}

/// What the flags configure, for [`super::run`].
pub(super) struct Configs {
    /// The hub's WebSockets and every request: limits, the Origin policy, authentication.
    pub server: ServerConfig,
    /// `/echo`'s WebSockets: `server` with the `--slow-reader` policy (the hub's members
    /// always wait at the socket: their own queues are the hub's). Shares its limiter.
    pub echo: ServerConfig,
    pub hub: HubConfig,
}

impl Args {
    /// The JWT check of --jwt-secret-file or --jwt-public-key, its key read now (before
    /// the server says it is ready).
    pub(super) fn jwt(&self) -> anyhow::Result<Option<AuthHook>> {
        use anyhow::Context as _;
        let auth = match (&self.jwt_secret_file, &self.jwt_public_key) {
            (Some(path), _) => {
                let secret = std::fs::read(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let secret = secret.strip_suffix(b"\n").unwrap_or(&secret);
                let secret = secret.strip_suffix(b"\r").unwrap_or(secret);
                JwtAuth::hs256(secret).with_context(|| path.display().to_string())?
            }
            (None, Some(path)) => {
                let pem = std::fs::read(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                JwtAuth::public_key_pem(&pem).with_context(|| path.display().to_string())?
            }
            (None, None) => {
                if self.jwt_audience.is_some() || self.jwt_issuer.is_some() {
                    anyhow::bail!(
                        "--jwt-audience and --jwt-issuer need --jwt-secret-file or --jwt-public-key"
                    );
                }
                return Ok(None);
            }
        };
        let auth = match &self.jwt_audience {
            Some(aud) => auth.audience(aud),
            None => auth,
        };
        let auth = match &self.jwt_issuer {
            Some(iss) => auth.issuer(iss),
            None => auth,
        };
        Ok(Some(AuthHook::identify_with(auth)))
    }

    /// The one step from flags to the libraries' settings; `jwt` from [`Args::jwt`].
    pub(super) fn configs(&self, jwt: Option<AuthHook>) -> Configs {
        let mut server = ServerConfig::default();
        server.handshake_timeout = self.handshake_timeout;
        server.socket.ping_interval = self.ping_interval;
        server.socket.ping_timeout = self.ping_timeout;
        server.socket.idle_timeout = self.idle_timeout;
        server.deflate = self.deflate.then(|| self.deflate_args.config());
        server.socket.protocol.max_message_size = self.max_message_size;
        server.socket.protocol.max_frame_size = self.max_frame_size;
        server.socket.protocol.max_fragments = match self.max_fragments {
            0 => u32::MAX,
            n => n,
        };
        server.socket.max_write_buffer = usize::try_from(self.send_buffer).unwrap_or(usize::MAX);
        let tokens: Vec<&String> = self.auth_token.iter().filter(|t| !t.is_empty()).collect();
        if !tokens.is_empty() {
            server.auth = Some(AuthHook::new(TokenAuth::new(tokens)));
        }
        if jwt.is_some() {
            server.auth = jwt;
        }
        server.connections =
            ConnectionLimiter::new(self.max_connections, self.max_connections_per_client);
        server.trusted_proxies = self.trust_proxy.clone();
        server.proxy_protocol = self.proxy_protocol.clone();
        server.allowed_origins = self.allow_origin.clone();
        server.dangerous_allow_any_origin = self.dangerous_allow_any_origin;
        let mut echo = server.clone();
        echo.socket.slow_reader = self.slow_reader.into();
        let mut hub = HubConfig::default();
        hub.history = self.history;
        hub.queue = self.send_queue as usize;
        hub.max_subscriptions = self.max_subscriptions as usize;
        hub.max_data = self.max_data as usize;
        hub.poll_timeout = self.poll_timeout;
        hub.api_token = self.api_token.clone().filter(|t| !t.is_empty());
        Configs { server, echo, hub }
    }
}
