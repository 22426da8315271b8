//! A hub behind a listener, as a server mounts it: every request read, the hub's paths
//! served, anything else `404`.

use tokio::net::TcpListener;
use wsduplex::server::{read_request, ServerConfig};
use wsduplex_hub::Hub;

/// Accepts connections on `listener` for as long as the runtime runs.
pub async fn serve(listener: TcpListener, hub: Hub, server: ServerConfig) {
    loop {
        let (tcp, _) = listener.accept().await.unwrap();
        let (hub, server) = (hub.clone(), server.clone());
        tokio::spawn(async move {
            let Ok(incoming) = read_request(tcp, &server).await else {
                return;
            };
            if let Some(other) = hub.serve(incoming, &server).await {
                let _ = other.respond(404, &[], "text/plain", b"not found\n").await;
            }
        });
    }
}
