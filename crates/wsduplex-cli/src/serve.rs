//! `wsduplex serve`: `/echo` echoes every message with its type, `/` serves a test page.

use anyhow::Context as _;
use std::process::ExitCode;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use wsduplex::server::{read_request, ServerConfig};
use wsduplex::CloseCode;

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port; the ready line shows it).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
}

const PAGE: &str = include_str!("echo.html");

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<ExitCode> {
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}");
    let config = ServerConfig::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    tasks.spawn(handle(tcp, config.clone(), stop_rx.clone()));
                }
                // Out of descriptors and the like: keep serving the others.
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = tasks.join_next() => {}
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection sends 1001 and waits (bounded by its close timeout) for the reply.
    let grace = config.socket.close_timeout + Duration::from_secs(1);
    let _ = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    Ok(ExitCode::SUCCESS)
}

async fn handle(tcp: TcpStream, config: ServerConfig, mut stop: watch::Receiver<bool>) {
    let _ = tcp.set_nodelay(true);
    let incoming = match read_request(tcp, &config).await {
        Ok(i) => i,
        Err(e) => {
            tracing::debug!("request refused: {e}");
            return;
        }
    };
    let path = incoming.path().split('?').next().unwrap_or_default();
    let method = incoming.request().method();
    let result = match path {
        "/echo" => match incoming.accept(&config).await {
            Ok(ws) => echo(ws, &mut stop).await,
            Err(e) => Err(e),
        },
        _ if incoming.is_upgrade() => {
            incoming
                .respond(
                    404,
                    &[],
                    "text/plain",
                    b"no websocket endpoint here; try /echo\n",
                )
                .await
        }
        "/" | "/index.html" if method == "GET" || method == "HEAD" => {
            incoming
                .respond(
                    200,
                    &[("Cache-Control", "no-cache")],
                    "text/html; charset=utf-8",
                    PAGE.as_bytes(),
                )
                .await
        }
        "/" | "/index.html" => {
            incoming
                .respond(
                    405,
                    &[("Allow", "GET, HEAD")],
                    "text/plain",
                    b"method not allowed\n",
                )
                .await
        }
        _ => {
            incoming
                .respond(404, &[], "text/plain", b"not found\n")
                .await
        }
    };
    if let Err(e) = result {
        tracing::debug!("connection ended: {e}");
    }
}

async fn echo<S>(
    mut ws: wsduplex::WebSocket<S>,
    stop: &mut watch::Receiver<bool>,
) -> wsduplex::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut closing = *stop.borrow();
    if closing {
        ws.close(CloseCode::GOING_AWAY, "server shutting down")
            .await?;
    }
    loop {
        tokio::select! {
            changed = stop.changed(), if !closing => {
                closing = true;
                if changed.is_ok() {
                    ws.close(CloseCode::GOING_AWAY, "server shutting down").await?;
                }
            }
            item = ws.recv() => match item {
                // Queued, not flushed: the socket flushes when it has nothing left to read.
                Some(Ok(msg)) if msg.is_data() => {
                    if ws.feed(msg).await.is_err() {
                        // Closing: the rest of the close handshake still runs below.
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    }
}
