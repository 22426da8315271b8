//! An axum app with a WebSocket echo at `/echo` (permessage-deflate on), through
//! wsduplex's front door: the settings come from the `ServerConfig` extension.
//!
//! ```text
//! cargo run -p wsduplex --features axum --example axum_echo -- 127.0.0.1:9001
//! ```

use axum::response::Response;
use axum::routing::{any, get};
use axum::{Extension, Router};
use std::net::SocketAddr;
use wsduplex::axum::WebSocketUpgrade;
use wsduplex::hyper::Upgraded;
use wsduplex::{DeflateConfig, ServerConfig, WebSocket};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1);
    let listener =
        tokio::net::TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:8080")).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let mut config = ServerConfig::default();
    config.deflate = Some(DeflateConfig::default());
    // With the client's address: the per-client limit and the same-origin rule use it.
    let app = app(config).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).await
}

/// `/echo` (WebSocket) and `/` (a line of text), with `config` for every upgrade.
pub fn app(config: ServerConfig) -> Router {
    Router::new()
        .route("/echo", any(echo))
        .route("/", get(|| async { "a WebSocket echo at /echo\n" }))
        .layer(Extension(config))
}

async fn echo(ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(run).await
}

/// Echoes every message; replies are queued and go out when the socket next waits.
async fn run(mut ws: WebSocket<Upgraded>) {
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
