//! A hub behind a listener, as a server mounts it: every request read, the hub's paths
//! served, anything else `404`; and a node, such a hub on a runtime of its own.

use std::net::SocketAddr;
use tokio::net::TcpListener;
use wsduplex::server::{read_request, ServerConfig};
use wsduplex_hub::Hub;

/// A node: `hub` served on a free loopback port by a runtime of its own (two worker
/// threads), its background work included. Shutting the runtime down kills the node.
#[allow(dead_code)] // not every test binary runs nodes
pub fn start(hub: &Hub, server: ServerConfig) -> (tokio::runtime::Runtime, SocketAddr) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(hub.clone().maintain());
    let served = hub.clone();
    rt.spawn(async move {
        let listener = TcpListener::from_std(listener).unwrap();
        serve(listener, served, server).await;
    });
    (rt, addr)
}

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
