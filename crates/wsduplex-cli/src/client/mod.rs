//! `wsduplex client URL`: stdin lines go out as text messages (or binary, `--binary`),
//! received messages come out on stdout one per line; with `--exec CMD` a program's stdout
//! and stdin take their place. `/ping [data]`, `/pong [data]` and `/close [code [reason]]`
//! are commands. The flags are in `args`, reading lines and printing messages in `input`.

mod args;
mod input;

pub use args::Args;

use crate::exec::Exec;
use crate::frames::TracedStream;
use crate::lines::BinaryInput;
use anyhow::{anyhow, bail, Context as _};
use input::{parse_line, print_message, Command, LineError};
use std::path::Path;
use std::process::ExitCode;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt as _, AsyncWrite, BufReader, Lines};
use wsduplex::reconnect::Backoff;
use wsduplex::{ClientConfig, CloseCode, CloseFrame, Message, WebSocket};

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

fn print_head(prefix: &str, head: &str) {
    for l in head.lines().filter(|l| !l.is_empty()) {
        eprintln!("{prefix} {l}");
    }
}

/// Where messages come from and go to: the terminal, or `--exec`'s program.
struct Io {
    input: Lines<BufReader<Box<dyn AsyncRead + Unpin + Send>>>,
    output: Box<dyn AsyncWrite + Unpin + Send>,
    /// `--binary raw`: the whole input, sent once connected.
    raw: Option<Vec<u8>>,
    /// Lines read so far, for error messages.
    line_no: u64,
    /// Under `--exec`: a program's lines are all data, and its going away is not an error.
    exec: bool,
}

/// wscat's habit: `localhost:8080/x` means `ws://localhost:8080/x`. The URL, and whether
/// the scheme was added (said once connected, or in the error: one line either way).
fn with_scheme(url: &str) -> (String, bool) {
    if url.contains("://") {
        (url.to_string(), false)
    } else {
        (format!("ws://{url}"), true)
    }
}

async fn client(args: Args) -> anyhow::Result<ExitCode> {
    let (url, assumed) = with_scheme(&args.url);
    let assumed_note = if assumed {
        " (no scheme given: ws:// assumed)"
    } else {
        ""
    };
    let mut noted = false;
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
    if let Some(auth) = &args.basic_auth {
        config
            .headers
            .push(("Authorization".to_string(), auth.clone()));
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
    config.http2 = args.http2.map_or_else(Default::default, Into::into);
    // The program starts before the connection: a command that cannot run is reported
    // without bothering the server.
    let exec = args.exec.as_deref().map(Exec::new).transpose()?;
    let mut child = exec.as_ref().map(Exec::spawn).transpose()?;
    let (input, output): (
        Box<dyn AsyncRead + Unpin + Send>,
        Box<dyn AsyncWrite + Unpin + Send>,
    ) = match &mut child {
        Some(c) => (
            Box::new(c.stdout.take().context("child stdout")?),
            Box::new(c.stdin.take().context("child stdin")?),
        ),
        None => (Box::new(tokio::io::stdin()), Box::new(tokio::io::stdout())),
    };
    let mut io = Io {
        input: BufReader::new(input).lines(),
        output,
        raw: None,
        line_no: 0,
        exec: child.is_some(),
    };
    if args.binary == Some(BinaryInput::Raw) {
        let mut all = Vec::new();
        io.input
            .get_mut()
            .read_to_end(&mut all)
            .await
            .context("cannot read the input")?;
        io.raw = Some(all);
    }
    let mut sending = !args.echo && io.raw.is_none();
    let backoff = Backoff::default();
    let mut failures = 0;
    loop {
        let connected = crate::frames::connect(url.as_str(), &config, args.verbose >= 2)
            .await
            .with_context(|| format!("cannot connect to {url}{assumed_note}"));
        let end = match connected {
            Ok((ws, handshake)) => {
                if assumed && !args.quiet && !std::mem::replace(&mut noted, true) {
                    eprintln!("wsduplex: no scheme in {:?}: connected to {url}", args.url);
                }
                if args.verbose == 1 {
                    print_head(">", &handshake.request);
                    print_head("<", &handshake.response_head);
                }
                session(&args, ws, &mut io, &mut sending).await?
            }
            Err(e) if args.reconnect => SessionEnd::failed(e),
            Err(e) => return Err(e),
        };
        if args.reconnect && !end.we_closed {
            // Connections that carried messages reset the backoff.
            failures = if end.received > 0 { 0 } else { failures + 1 };
            let delay = backoff.delay(failures.max(1) - 1);
            if !args.quiet {
                eprintln!("wsduplex: {}; reconnecting in {delay:.1?}", end.describe());
            }
            tokio::time::sleep(delay).await;
            continue;
        }
        let code = end.exit_code(args.verbose > 0);
        // The connection is over: the program's stdin closes, and it is reaped.
        drop(io);
        if let Some(child) = child {
            child.finish().await?;
        }
        return code;
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
    mut ws: WebSocket<TracedStream>,
    io: &mut Io,
    sending: &mut bool,
) -> anyhow::Result<SessionEnd> {
    let mut end = SessionEnd {
        we_closed: false,
        stdin_failed: false,
        close: None,
        error: None,
        received: 0,
    };
    if let Some(raw) = io.raw.take() {
        // --binary raw: the one message, then the input has ended.
        if ws.send(Message::binary(raw)).await.is_ok() {
            input_ended(args, &mut ws, &mut end).await;
        }
    }
    let encoding = args.encoding();
    loop {
        tokio::select! {
            line = io.input.next_line(), if *sending => match line {
                Ok(Some(line)) => {
                    io.line_no += 1;
                    match parse_line(&line, args.binary, !io.exec) {
                        // If the connection has failed, the read side reports why.
                        Ok(Command::Data(msg)) => {
                            let sent = ws.send(msg).await.is_ok();
                            if (!sent && !args.reconnect) || args.one_message {
                                *sending = false;
                            }
                        }
                        Ok(Command::Ping(p)) => {
                            if let Err(e) = ws.send(Message::Ping(p.into_bytes().into())).await {
                                eprintln!("wsduplex: {e}");
                            }
                        }
                        Ok(Command::Pong(p)) => {
                            if let Err(e) = ws.send(Message::Pong(p.into_bytes().into())).await {
                                eprintln!("wsduplex: {e}");
                            }
                        }
                        Ok(Command::Close(code, reason)) => match ws.close(code, &reason).await {
                            Ok(()) => { *sending = false; end.we_closed = true; }
                            Err(e) => eprintln!("wsduplex: {e}"),
                        },
                        Err(LineError::Command(e)) => eprintln!("wsduplex: {e:#}"),
                        Err(LineError::Data(e)) => {
                            let what = if io.exec { "--exec output" } else { "stdin" };
                            end.error = Some(anyhow!("{what} line {}: {e}", io.line_no));
                            *sending = false;
                            end.we_closed = true;
                            let _ = ws.close(CloseCode::NORMAL, "").await;
                        }
                    }
                }
                Ok(None) | Err(_) => {
                    if let Err(e) = line {
                        eprintln!("wsduplex: cannot read stdin: {e}");
                        end.stdin_failed = true;
                    }
                    *sending = false;
                    input_ended(args, &mut ws, &mut end).await;
                }
            },
            item = ws.recv() => match item {
                Some(Ok(msg)) => {
                    // -1: one reply shown; later ones (in flight during the close) are not.
                    let extra = msg.is_data() && args.one_message && end.received > 0;
                    if !extra {
                        let shown =
                            print_message(&mut io.output, &msg, encoding, args.verbose > 0, args.quiet)
                                .await;
                        // A program that stopped reading is not an error: its exit decides.
                        if let (Err(e), false) = (shown, io.exec) {
                            return Err(e).context("cannot write to stdout");
                        }
                    }
                    match msg {
                        Message::Close(frame) => end.close = Some(frame),
                        msg if msg.is_data() => {
                            end.received += 1;
                            if args.echo {
                                // A send can fail once a close is under way; the close decides.
                                let _ = ws.feed(msg).await;
                            }
                            if args.one_message && !end.we_closed {
                                *sending = false;
                                end.we_closed = true;
                                let _ = ws.close(CloseCode::NORMAL, "").await;
                            }
                        }
                        _ => {}
                    }
                }
                Some(Err(e)) => {
                    end.error.get_or_insert(e.into());
                    return Ok(end);
                }
                None => return Ok(end),
            }
        }
    }
}

/// The input has ended: close normally and wait for the server's reply, or with
/// `--no-close` (or `-1` before its reply) keep receiving until the server closes. On a
/// failed connection the close is an error that the read side reports.
async fn input_ended(args: &Args, ws: &mut WebSocket<TracedStream>, end: &mut SessionEnd) {
    if args.no_close || (args.one_message && end.received == 0) {
        return;
    }
    end.we_closed = true;
    let _ = ws.close(CloseCode::NORMAL, "").await;
}
