//! A hyper 1.x server with a WebSocket echo at `/echo`, through wsduplex's front door
//! (permessage-deflate on, the client's address for the per-client limit).
//!
//! ```text
//! cargo run -p wsduplex --features hyper --example hyper_echo -- 127.0.0.1:9001
//! ```

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;
use wsduplex::hyper::Upgraded;
use wsduplex::server::Peer;
use wsduplex::{DeflateConfig, ServerConfig, WebSocket};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1);
    let listener = TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:8080")).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let mut config = ServerConfig::default();
    config.deflate = Some(DeflateConfig::default());
    serve(listener, config).await
}

/// Serves HTTP/1.1 on `listener`: `/echo` upgrades, anything else is `404`.
pub async fn serve(listener: TcpListener, config: ServerConfig) -> std::io::Result<()> {
    let config = Arc::new(config);
    loop {
        let (tcp, addr) = listener.accept().await?;
        let config = config.clone();
        tokio::spawn(async move {
            let peer = Peer::new(addr.ip(), false);
            let service = service_fn(move |request| {
                let config = config.clone();
                async move { Ok::<_, Infallible>(handle(request, &config, peer).await) }
            });
            // `with_upgrades`: hyper hands the connection over after the 101.
            let served = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            if let Err(e) = served.await {
                eprintln!("connection from {addr}: {e}");
            }
        });
    }
}

async fn handle(
    mut request: http::Request<Incoming>,
    config: &ServerConfig,
    peer: Peer,
) -> http::Response<Full<Bytes>> {
    if request.uri().path() != "/echo" {
        let mut response = http::Response::new(Full::from("not found\n"));
        *response.status_mut() = http::StatusCode::NOT_FOUND;
        return response;
    }
    match wsduplex::hyper::upgrade(&mut request, config, Some(peer)).await {
        Ok((response, upgrading)) => {
            tokio::spawn(async move {
                match upgrading.await {
                    Ok(ws) => echo(ws).await,
                    Err(e) => eprintln!("upgrade: {e}"),
                }
            });
            response
        }
        // The front door's answer: 400, 403, 426, 429... with its reason.
        Err(refused) => refused,
    }
}

/// Echoes every message; replies are queued and go out when the socket next waits.
async fn echo(mut ws: WebSocket<Upgraded>) {
    while let Some(item) = ws
        .recv_with(|msg, reply| {
            let _ = reply.send(msg);
        })
        .await
    {
        if item.is_err() {
            break;
        }
    }
}
