//! What the library's integration tests share: a client and server connected over one
//! transport, a loopback server's accept step and a reconnect backoff short enough for tests.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::time::Duration;
use tokio::io::{duplex, AsyncRead, AsyncWrite, DuplexStream};
use tokio::net::{TcpListener, TcpStream};
use wsduplex::client::{client_handshake, Handshake, Target};
use wsduplex::reconnect::Backoff;
use wsduplex::server::{read_request, ServerConfig};
use wsduplex::{ClientConfig, WebSocket};

/// The client's and the server's WebSocket over the two ends of one transport, after the
/// opening handshake (the server's side in a task of its own), and the client's view of
/// the handshake; any failure fails the test.
pub async fn handshake<S>(
    client_io: S,
    server_io: S,
    server_cfg: ServerConfig,
    client_cfg: ClientConfig,
) -> (WebSocket<S>, WebSocket<S>, Handshake)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let server = tokio::spawn(async move {
        read_request(server_io, &server_cfg)
            .await?
            .accept(&server_cfg)
            .await
    });
    let target = Target::parse("ws://localhost/").unwrap();
    let (client, hs) = client_handshake(client_io, &target, &client_cfg)
        .await
        .unwrap();
    (client, server.await.unwrap().unwrap(), hs)
}

/// [`handshake`] over an in-memory duplex stream (64 KiB each way): the client, then the
/// server.
pub async fn pair(
    server_cfg: ServerConfig,
    client_cfg: ClientConfig,
) -> (WebSocket<DuplexStream>, WebSocket<DuplexStream>) {
    let (a, b) = duplex(64 * 1024);
    let (client, server, _) = handshake(a, b, server_cfg, client_cfg).await;
    (client, server)
}

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
