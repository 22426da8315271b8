//! What the library's integration tests share: a loopback server's accept step and a
//! reconnect backoff short enough for tests.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use wsduplex::reconnect::Backoff;
use wsduplex::server::{read_request, ServerConfig};
use wsduplex::WebSocket;

/// The next connection on `listener`, accepted as a WebSocket with `cfg`; any failure
/// fails the test.
pub async fn accept_ws(listener: &TcpListener, cfg: &ServerConfig) -> WebSocket<TcpStream> {
    let (tcp, _) = listener.accept().await.unwrap();
    read_request(tcp, cfg)
        .await
        .unwrap()
        .accept(cfg)
        .await
        .unwrap()
}

/// A backoff that retries after 5 ms, then at most every 50 ms.
pub fn fast() -> Backoff {
    let mut b = Backoff::default();
    b.initial = Duration::from_millis(5);
    b.max = Duration::from_millis(50);
    b
}
