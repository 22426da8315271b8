//! `wsduplex listen ADDR`: a stdio WebSocket server for testing a client (`websocat -s`,
//! `wscat -l`). It accepts one WebSocket, prints what it receives on stdout and sends stdin
//! lines; `--broadcast` accepts every connection and sends each line to all of them;
//! `--exec CMD` gives every connection its own program instead of the terminal. Built on
//! the library's server API ([`wsduplex::server`]); no hub, no routes: any path upgrades.

use crate::exec::Exec;
use crate::lines::{self, BinaryInput, Encoding};
use anyhow::{anyhow, bail, Context as _};
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_util::task::TaskTracker;
use wsduplex::server::ServerConfig;
use wsduplex::{CloseCode, CloseFrame, Message, WebSocket};

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on, e.g. 127.0.0.1:9000 (port 0 picks a free port; the ready line
    /// `listening on ws://ADDR` on stdout shows it).
    addr: String,
    /// Accept every connection: each stdin line goes to all of them, and every message from
    /// any of them is printed. Without it, one connection is accepted, and its end ends
    /// the command.
    #[arg(long)]
    broadcast: bool,
    /// Run CMD for each connection, bridged to it as `client --exec` does (its stdout lines
    /// are messages, received messages lines on its stdin); stdin is not read, and every
    /// connection is accepted until Ctrl-C.
    #[arg(long, value_name = "CMD", conflicts_with = "broadcast")]
    exec: Option<String>,
    /// Subprotocol to accept when a client offers it (repeatable, most preferred first).
    #[arg(short = 's', long = "subprotocol", value_name = "PROTOCOL")]
    subprotocols: Vec<String>,
    /// Send binary messages: each input line as hex or base64.
    #[arg(long, value_name = "ENCODING", value_parser = line_encoding)]
    binary: Option<BinaryInput>,
    /// How received binary messages are printed [default: as --binary's lines, else hex].
    #[arg(long, value_name = "ENCODING", value_enum)]
    print_binary: Option<Encoding>,
    /// No status lines on stderr (connections opening and closing): errors only.
    #[arg(short, long)]
    quiet: bool,
}

/// `--binary`: line encodings only (a server has no single message to read stdin into).
fn line_encoding(s: &str) -> Result<BinaryInput, String> {
    match s {
        "hex" => Ok(BinaryInput::Hex),
        "base64" => Ok(BinaryInput::Base64),
        _ => Err(format!("{s:?}: expected hex or base64")),
    }
}

/// What each connection is told by the stdin reader.
#[derive(Clone)]
enum Out {
    Message(Message),
    /// stdin ended: close normally.
    Close,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(listen(args));
    // stdin is read on a blocking thread that cannot be interrupted.
    rt.shutdown_background();
    result
}

async fn listen(args: Args) -> anyhow::Result<ExitCode> {
    let exec = args.exec.as_deref().map(Exec::new).transpose()?;
    let addr: SocketAddr = tokio::net::lookup_host(&args.addr)
        .await
        .with_context(|| format!("cannot resolve {}", args.addr))?
        .next()
        .with_context(|| format!("{} resolves to no address", args.addr))?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    // The same ready line as `serve`'s, with the scheme a client connects with.
    println!("listening on ws://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let mut config = ServerConfig::default();
    config.subprotocols = args.subprotocols.clone();
    let encoding = args
        .print_binary
        .unwrap_or(Encoding::for_input(args.binary));
    if let Some(exec) = exec {
        return serve_exec(&args, listener, &config, exec, encoding).await;
    }
    let (tx, _) = broadcast::channel::<Out>(1024);
    let tracker = TaskTracker::new();
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut line_no = 0u64;
    if !args.broadcast {
        let (ws, peer) = accept_one(&listener, &config, args.quiet).await?;
        drop(listener);
        let rx = tx.subscribe();
        let conn = tokio::spawn(connection(ws, peer, rx, encoding, args.quiet));
        tokio::pin!(conn);
        let mut reading = true;
        loop {
            tokio::select! {
                ended = &mut conn => return ended?,
                line = stdin.next_line(), if reading => {
                    reading = send_line(&tx, line, &mut line_no, args.binary)?;
                }
            }
        }
    }
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let (config, rx, quiet) = (config.clone(), tx.subscribe(), args.quiet);
                tracker.spawn(async move {
                    match upgrade(stream, &config).await {
                        Ok(ws) => {
                            status(quiet, format_args!("connected: {peer}"));
                            let _ = connection(ws, peer, rx, encoding, quiet).await;
                        }
                        Err(e) => status(quiet, format_args!("{peer}: {e:#}")),
                    }
                });
            }
            line = stdin.next_line() => {
                if !send_line(&tx, line, &mut line_no, args.binary)? {
                    // Every connection closes; each waits for its client's answer.
                    tracker.close();
                    tracker.wait().await;
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
    }
}

/// Passes one stdin line to the connections; `false` once stdin has ended (they were
/// told to close).
fn send_line(
    tx: &broadcast::Sender<Out>,
    line: std::io::Result<Option<String>>,
    line_no: &mut u64,
    binary: Option<BinaryInput>,
) -> anyhow::Result<bool> {
    let Some(line) = line.context("cannot read stdin")? else {
        let _ = tx.send(Out::Close);
        return Ok(false);
    };
    *line_no += 1;
    let msg = match binary {
        Some(encoding) => Message::binary(
            lines::decode(&line, encoding).map_err(|e| anyhow!("stdin line {line_no}: {e}"))?,
        ),
        None => Message::text(line),
    };
    // No connection yet (or any more): the line has nowhere to go.
    let _ = tx.send(Out::Message(msg));
    Ok(true)
}

/// Accepts connections until one opens a WebSocket; requests that do not are answered by
/// the library (400, 426...) and reported.
async fn accept_one(
    listener: &TcpListener,
    config: &ServerConfig,
    quiet: bool,
) -> anyhow::Result<(WebSocket<TcpStream>, SocketAddr)> {
    loop {
        let (stream, peer) = listener.accept().await.context("accept")?;
        match upgrade(stream, config).await {
            Ok(ws) => {
                status(quiet, format_args!("connected: {peer}"));
                return Ok((ws, peer));
            }
            Err(e) => status(quiet, format_args!("{peer}: {e:#}")),
        }
    }
}

async fn upgrade(stream: TcpStream, config: &ServerConfig) -> anyhow::Result<WebSocket<TcpStream>> {
    let _ = stream.set_nodelay(true);
    Ok(wsduplex::server::read_request(stream, config)
        .await?
        .accept(config)
        .await?)
}

fn status(quiet: bool, line: std::fmt::Arguments<'_>) {
    if !quiet {
        eprintln!("{line}");
    }
}

/// One connection of the stdio modes: received messages to stdout, `rx`'s to the client.
/// Exit status as `client`'s: 0 after a normal close, 1 after any other code.
async fn connection(
    mut ws: WebSocket<TcpStream>,
    peer: SocketAddr,
    mut rx: broadcast::Receiver<Out>,
    encoding: Encoding,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let mut sending = true;
    let mut close: Option<Option<CloseFrame>> = None;
    loop {
        tokio::select! {
            out = rx.recv(), if sending => match out {
                Ok(Out::Message(msg)) => {
                    let _ = ws.send(msg).await;
                }
                Ok(Out::Close) | Err(broadcast::error::RecvError::Closed) => {
                    sending = false;
                    let _ = ws.close(CloseCode::NORMAL, "").await;
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    eprintln!("wsduplex: {peer}: {n} lines not sent (too slow)");
                }
            },
            item = ws.recv() => match item {
                Some(Ok(Message::Close(frame))) => close = Some(frame),
                Some(Ok(msg)) => {
                    if let Some(bytes) = lines::encode(&msg, encoding) {
                        let mut out = std::io::stdout().lock();
                        out.write_all(&bytes)?;
                        out.flush()?;
                    }
                }
                Some(Err(e)) => {
                    status(quiet, format_args!("disconnected: {peer}: {e}"));
                    return Err(anyhow!("{peer}: {e}"));
                }
                None => break,
            }
        }
    }
    let frame = close.flatten();
    let shown = frame.as_ref().map_or("1005".to_string(), |f| f.to_string());
    status(quiet, format_args!("disconnected: {peer}: {shown}"));
    let code = frame
        .as_ref()
        .map_or(CloseCode::NO_STATUS_RECEIVED, |f| f.code);
    if !sending || matches!(code.as_u16(), 1000 | 1001 | 1005) {
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("closed by client: {shown}")
    }
}

/// `--exec`: every connection gets its own program, until Ctrl-C.
async fn serve_exec(
    args: &Args,
    listener: TcpListener,
    config: &ServerConfig,
    exec: Exec,
    encoding: Encoding,
) -> anyhow::Result<ExitCode> {
    let tracker = TaskTracker::new();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => {
                // Dropping the connections kills their programs (kill_on_drop).
                return Ok(ExitCode::SUCCESS);
            }
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let (config, exec, quiet, binary) =
                    (config.clone(), exec.clone(), args.quiet, args.binary);
                tracker.spawn(async move {
                    let bridged = async {
                        let ws = upgrade(stream, &config).await?;
                        status(quiet, format_args!("connected: {peer}"));
                        bridge(ws, &exec, binary, encoding).await
                    };
                    match bridged.await {
                        Ok(()) => status(quiet, format_args!("disconnected: {peer}")),
                        Err(e) => eprintln!("wsduplex: {peer}: {e:#}"),
                    }
                });
            }
        }
    }
}

/// One connection bridged to its own program: its stdout lines out, messages into its
/// stdin. Its exit (the end of its stdout) closes the connection with 1000; the
/// connection's end closes its stdin, and it is reaped.
async fn bridge(
    mut ws: WebSocket<TcpStream>,
    exec: &Exec,
    binary: Option<BinaryInput>,
    encoding: Encoding,
) -> anyhow::Result<()> {
    let mut child = match exec.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = ws.close(CloseCode::INTERNAL_ERROR, "").await;
            return Err(e);
        }
    };
    let mut output = BufReader::new(child.stdout.take().context("child stdout")?).lines();
    let mut stdin = child.stdin.take();
    let mut reading = true;
    let mut error = None;
    loop {
        tokio::select! {
            line = output.next_line(), if reading => match line {
                Ok(Some(line)) => {
                    let msg = match binary {
                        None => Ok(Message::text(line)),
                        Some(e) => lines::decode(&line, e).map(Message::binary),
                    };
                    match msg {
                        Ok(msg) => { let _ = ws.send(msg).await; }
                        Err(e) => {
                            error = Some(anyhow!("program output: {e}"));
                            reading = false;
                            let _ = ws.close(CloseCode::INTERNAL_ERROR, "").await;
                        }
                    }
                }
                Ok(None) | Err(_) => {
                    reading = false;
                    let _ = ws.close(CloseCode::NORMAL, "").await;
                }
            },
            item = ws.recv() => match item {
                Some(Ok(msg)) => {
                    if let (Some(bytes), Some(input)) = (lines::encode(&msg, encoding), &mut stdin) {
                        // A program that stopped reading: its exit decides.
                        if input.write_all(&bytes).await.is_err() || input.flush().await.is_err() {
                            stdin = None;
                        }
                    }
                }
                Some(Err(e)) => { error = Some(e.into()); break; }
                None => break,
            }
        }
    }
    drop(stdin);
    child.stdin = None;
    let finished = child.finish().await;
    match error {
        Some(e) => Err(e),
        None => finished,
    }
}
