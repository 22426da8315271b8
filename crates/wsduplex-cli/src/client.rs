//! `wsduplex client URL`: stdin lines go out as text messages, received messages come out
//! on stdout one per line. `/ping [data]` and `/close [code [reason]]` are commands.

use crate::args::{parse_duration, DeflateArgs};
use anyhow::{bail, Context as _};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines, Stdin};
use wsduplex::reconnect::Backoff;
use wsduplex::{ClientConfig, ClientStream, CloseCode, CloseFrame, Message, WebSocket};

#[derive(clap::Args)]
pub struct Args {
    /// ws:// or wss:// URL to connect to.
    url: String,
    /// Extra request header, 'Name: value' (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    headers: Vec<String>,
    /// Subprotocol to offer (repeatable, most preferred first).
    #[arg(long = "subprotocol", value_name = "PROTOCOL")]
    subprotocols: Vec<String>,
    /// Origin header to send.
    #[arg(long)]
    origin: Option<String>,
    /// Print the handshake request and response headers to stderr.
    #[arg(short, long)]
    verbose: bool,
    /// Send every received message back unchanged; stdin is not read.
    #[arg(long)]
    echo: bool,
    /// Print binary messages as raw bytes instead of hex.
    #[arg(long)]
    binary_raw: bool,
    /// wss://: also trust the CA certificates in this PEM file (repeatable).
    #[arg(long, value_name = "FILE")]
    cacert: Vec<PathBuf>,
    /// wss://: client certificate chain (PEM) for mutual TLS.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// wss://: the PEM private key of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// wss://: do not check the server's certificate. Dangerous: anyone on the path can
    /// read and change the traffic.
    #[arg(short = 'k', long)]
    insecure: bool,
    /// Connect through this proxy: http://host:port (CONNECT) or socks5h://host:port, with
    /// user:pass@ before the host for authentication. Default: https_proxy (wss://) or
    /// http_proxy (ws://), then all_proxy, unless no_proxy matches the host.
    #[arg(long, value_name = "URL")]
    proxy: Option<String>,
    /// Connect directly, whatever the proxy environment variables say.
    #[arg(long, conflicts_with = "proxy")]
    no_proxy: bool,
    /// Send a ping this often (e.g. 30s) and give up on a server silent for --ping-timeout.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    ping_interval: Option<Duration>,
    /// How long the server may stay silent after a keepalive ping.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "20s")]
    ping_timeout: Duration,
    /// Time allowed to open the TCP connection.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    connect_timeout: Duration,
    /// Time allowed for the TLS and WebSocket handshakes.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    handshake_timeout: Duration,
    /// When the connection drops (or cannot be opened), connect again with exponential
    /// backoff and jitter; stdin keeps going to the new connection. Ends when stdin ends
    /// or after /close.
    #[arg(long)]
    reconnect: bool,
    /// Offer permessage-deflate (RFC 7692); the default, as in browsers, Node's ws and
    /// Python's websockets.
    #[arg(long, overrides_with = "no_deflate")]
    deflate: bool,
    /// Do not offer permessage-deflate.
    #[arg(long, overrides_with = "deflate", conflicts_with = "DeflateArgs")]
    no_deflate: bool,
    #[command(flatten)]
    deflate_args: DeflateArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    #[cfg(not(feature = "deflate"))]
    if args.deflate {
        anyhow::bail!("--deflate: this wsduplex was built without the `deflate` feature");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(client(args));
    // stdin is read on a blocking thread that cannot be interrupted: do not wait for it
    // (the connection may end while the user has not typed anything).
    rt.shutdown_background();
    result
}

/// What a stdin line asks for.
#[derive(Debug, PartialEq)]
enum Command {
    Text(String),
    Ping(String),
    Close(CloseCode, String),
}

fn parse_line(line: &str) -> anyhow::Result<Command> {
    let cmd = |name: &str| line == name || line.starts_with(&format!("{name} "));
    if cmd("/ping") {
        return Ok(Command::Ping(
            line["/ping".len()..].trim_start().to_string(),
        ));
    }
    if cmd("/close") {
        let rest = line["/close".len()..].trim_start();
        if rest.is_empty() {
            return Ok(Command::Close(CloseCode::NORMAL, String::new()));
        }
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code: u16 = code
            .parse()
            .with_context(|| format!("invalid close code {code:?}"))?;
        return Ok(Command::Close(CloseCode::new(code), reason.to_string()));
    }
    // "//text" sends "/text".
    Ok(Command::Text(
        line.strip_prefix('/')
            .filter(|l| l.starts_with('/'))
            .unwrap_or(line)
            .to_string(),
    ))
}

fn print_head(prefix: &str, head: &str) {
    for l in head.lines().filter(|l| !l.is_empty()) {
        eprintln!("{prefix} {l}");
    }
}

async fn client(args: Args) -> anyhow::Result<ExitCode> {
    let mut config = ClientConfig::default();
    config.origin = args.origin.clone();
    config.subprotocols = args.subprotocols.clone();
    for h in &args.headers {
        let Some((name, value)) = h.split_once(':') else {
            bail!("invalid header {h:?}: expected 'Name: value'");
        };
        config
            .headers
            .push((name.trim().to_string(), value.trim().to_string()));
    }
    let read = |path: &Path| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    for path in &args.cacert {
        config.tls.extra_ca_pem.push(read(path)?);
    }
    if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
        config.tls.client_cert_pem = Some((read(cert)?, read(key)?));
    }
    config.tls.dangerous_accept_invalid_certs = args.insecure;
    if let Some(url) = &args.proxy {
        config.proxy = wsduplex::ProxySetting::Url(url.clone());
    } else if args.no_proxy {
        config.proxy = wsduplex::ProxySetting::None;
    }
    config.connect_timeout = args.connect_timeout;
    config.handshake_timeout = args.handshake_timeout;
    config.socket.ping_interval = args.ping_interval;
    config.socket.ping_timeout = args.ping_timeout;
    config.deflate = (args.deflate || !args.no_deflate).then(|| args.deflate_args.config());
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut sending = !args.echo;
    let backoff = Backoff::default();
    let mut failures = 0;
    loop {
        let connected = wsduplex::connect_with(&args.url, &config)
            .await
            .with_context(|| format!("cannot connect to {}", args.url));
        let end = match connected {
            Ok((ws, handshake)) => {
                if args.verbose {
                    print_head(">", &handshake.request);
                    print_head("<", &handshake.response_head);
                }
                session(&args, ws, &mut stdin, &mut sending).await?
            }
            Err(e) if args.reconnect => SessionEnd::failed(e),
            Err(e) => return Err(e),
        };
        if args.reconnect && !end.we_closed {
            // Connections that carried messages reset the backoff.
            failures = if end.received > 0 { 0 } else { failures + 1 };
            let delay = backoff.delay(failures.max(1) - 1);
            eprintln!("wsduplex: {}; reconnecting in {delay:.1?}", end.describe());
            tokio::time::sleep(delay).await;
            continue;
        }
        return end.exit_code(args.verbose);
    }
}

/// How one connection ended.
struct SessionEnd {
    we_closed: bool,
    stdin_failed: bool,
    close: Option<Option<CloseFrame>>,
    error: Option<anyhow::Error>,
    received: u64,
}

impl SessionEnd {
    fn failed(e: anyhow::Error) -> Self {
        Self {
            we_closed: false,
            stdin_failed: false,
            close: None,
            error: Some(e),
            received: 0,
        }
    }

    fn describe(&self) -> String {
        match (&self.error, &self.close) {
            (Some(e), _) => format!("{e:#}"),
            (None, Some(Some(f))) => format!("closed by server: {f}"),
            _ => "connection closed".to_string(),
        }
    }

    /// 0 after a clean close (1000, 1001, no status, or one we started); 1 otherwise.
    fn exit_code(self, verbose: bool) -> anyhow::Result<ExitCode> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let frame = self.close.flatten();
        let code = frame
            .as_ref()
            .map_or(CloseCode::NO_STATUS_RECEIVED, |f| f.code);
        if verbose {
            eprintln!(
                "closed: {}",
                frame.as_ref().map_or("1005".to_string(), |f| f.to_string())
            );
        }
        if self.stdin_failed {
            Ok(ExitCode::FAILURE)
        } else if self.we_closed || matches!(code.as_u16(), 1000 | 1001 | 1005) {
            Ok(ExitCode::SUCCESS)
        } else {
            let reason = frame.map_or(String::new(), |f| f.to_string());
            eprintln!("wsduplex: closed by server: {reason}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Runs one connection: stdin lines out, messages in, until the connection ends.
async fn session(
    args: &Args,
    mut ws: WebSocket<ClientStream>,
    stdin: &mut Lines<BufReader<Stdin>>,
    sending: &mut bool,
) -> anyhow::Result<SessionEnd> {
    let mut end = SessionEnd {
        we_closed: false,
        stdin_failed: false,
        close: None,
        error: None,
        received: 0,
    };
    loop {
        tokio::select! {
            line = stdin.next_line(), if *sending => match line {
                Ok(Some(line)) => match parse_line(&line) {
                    // If the connection has failed, the read side reports why.
                    Ok(Command::Text(t)) => {
                        if ws.send(Message::text(t)).await.is_err() && !args.reconnect {
                            *sending = false;
                        }
                    }
                    Ok(Command::Ping(p)) => {
                        if let Err(e) = ws.send(Message::Ping(p.into_bytes().into())).await {
                            eprintln!("wsduplex: {e}");
                        }
                    }
                    Ok(Command::Close(code, reason)) => match ws.close(code, &reason).await {
                        Ok(()) => { *sending = false; end.we_closed = true; }
                        Err(e) => eprintln!("wsduplex: {e}"),
                    },
                    Err(e) => eprintln!("wsduplex: {e:#}"),
                },
                Ok(None) | Err(_) => {
                    if let Err(e) = line {
                        eprintln!("wsduplex: cannot read stdin: {e}");
                        end.stdin_failed = true;
                    }
                    // stdin ended: close normally and wait for the server's reply. On a
                    // failed connection this is an error that the read side reports.
                    *sending = false;
                    end.we_closed = true;
                    let _ = ws.close(CloseCode::NORMAL, "").await;
                }
            },
            item = ws.recv() => match item {
                Some(Ok(msg)) => {
                    print_message(&msg, args.binary_raw, args.verbose)?;
                    match msg {
                        Message::Close(frame) => end.close = Some(frame),
                        msg if msg.is_data() => {
                            end.received += 1;
                            if args.echo {
                                // A send can fail once a close is under way; the close decides.
                                let _ = ws.feed(msg).await;
                            }
                        }
                        _ => {}
                    }
                }
                Some(Err(e)) => {
                    end.error = Some(e.into());
                    return Ok(end);
                }
                None => return Ok(end),
            }
        }
    }
}

fn print_message(msg: &Message, binary_raw: bool, verbose: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match msg {
        Message::Text(t) => writeln!(out, "{t}")?,
        Message::Binary(b) if binary_raw => out.write_all(b)?,
        Message::Binary(b) => {
            let mut hex = String::with_capacity(b.len() * 2 + 1);
            for byte in b.iter() {
                hex.push(char::from_digit((byte >> 4) as u32, 16).unwrap_or('0'));
                hex.push(char::from_digit((byte & 15) as u32, 16).unwrap_or('0'));
            }
            hex.push('\n');
            out.write_all(hex.as_bytes())?;
        }
        Message::Pong(p) => eprintln!("pong: {}", String::from_utf8_lossy(p)),
        Message::Ping(p) if verbose => eprintln!("ping: {}", String::from_utf8_lossy(p)),
        _ => {}
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_into_commands() {
        assert_eq!(parse_line("hello").unwrap(), Command::Text("hello".into()));
        assert_eq!(parse_line("/ping").unwrap(), Command::Ping("".into()));
        assert_eq!(
            parse_line("/ping a b").unwrap(),
            Command::Ping("a b".into())
        );
        assert_eq!(
            parse_line("/close").unwrap(),
            Command::Close(CloseCode::NORMAL, "".into())
        );
        assert_eq!(
            parse_line("/close 4000 bye now").unwrap(),
            Command::Close(CloseCode::new(4000), "bye now".into())
        );
        assert!(parse_line("/close abc").is_err());
        assert_eq!(parse_line("//ping").unwrap(), Command::Text("/ping".into()));
        assert_eq!(
            parse_line("/pingpong").unwrap(),
            Command::Text("/pingpong".into())
        );
    }
}
