//! `wsduplex client URL`: stdin lines go out as text messages, received messages come out
//! on stdout one per line. `/ping [data]` and `/close [code [reason]]` are commands. The
//! flags are in `args`, reading stdin lines and printing messages in `input`.

mod args;
mod input;

pub use args::Args;

use anyhow::{bail, Context as _};
use input::{parse_line, print_message, Command};
use std::path::Path;
use std::process::ExitCode;
use tokio::io::{AsyncBufReadExt, BufReader, Lines, Stdin};
use wsduplex::reconnect::Backoff;
use wsduplex::{ClientConfig, ClientStream, CloseCode, CloseFrame, Message, WebSocket};

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(client(args));
    // stdin is read on a blocking thread that cannot be interrupted: do not wait for it
    // (the connection may end while the user has not typed anything).
    rt.shutdown_background();
    result
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
