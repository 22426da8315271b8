//! An axum app with the wsduplex hub mounted under `/hub`: the chat page at `/hub`,
//! WebSockets at `/hub/chat/ROOM`, long polling at `/hub/poll/...`, beside the app's own
//! routes; permessage-deflate on for members that offer it.
//!
//! ```text
//! cargo run -p wsduplex-hub --features axum --example axum_chat -- 127.0.0.1:8080
//! ```

use axum::response::Html;
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use wsduplex::{DeflateConfig, ServerConfig};
use wsduplex_hub::{Hub, HubConfig};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1);
    let listener =
        tokio::net::TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:8080")).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let hub = Hub::new(HubConfig::default());
    tokio::spawn(hub.clone().maintain());
    let mut config = ServerConfig::default();
    config.deflate = Some(DeflateConfig::default());
    // With the client's address: the per-client limit and the same-origin rule use it.
    let app = app(&hub, config).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).await
}

const HOME: &str = r#"<p>An axum app. Its chat is at <a href="/hub">/hub</a>.</p>"#;

/// The app's own page at `/`, and the hub under `/hub`.
pub fn app(hub: &Hub, config: ServerConfig) -> Router {
    Router::new()
        .route("/", get(|| async { Html(HOME) }))
        .nest("/hub", hub.router(config))
}
