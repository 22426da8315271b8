//! hyper 1.x (feature `hyper`): the `hyper_echo` example served on 127.0.0.1:0, our client
//! against it: an echo with permessage-deflate agreed, the front door's refusals, and the
//! socket holding its place in the connection limits for its whole life.

#[allow(dead_code)]
#[path = "../examples/hyper_echo.rs"]
mod example;

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wsduplex::limits::ConnectionLimiter;
use wsduplex::proto::handshake::client::ResponseError;
use wsduplex::{DeflateConfig, Error, Message, ServerConfig};

async fn start(config: ServerConfig) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(example::serve(listener, config));
    addr
}

fn status(e: &Error) -> Option<u16> {
    match e {
        Error::Response(ResponseError::Status { status, .. }) => Some(*status),
        _ => None,
    }
}

/// Sends `head` on a fresh connection, returns what the server answered.
async fn raw(addr: SocketAddr, head: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0; 4096];
    let n = tcp.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn echoes_with_deflate() {
    let mut config = ServerConfig::default();
    config.deflate = Some(DeflateConfig::default());
    let addr = start(config).await;
    let (mut ws, handshake) = wsduplex::connect(format!("ws://{addr}/echo"))
        .await
        .unwrap();
    assert!(handshake.response.deflate.is_some(), "{handshake:?}");
    for text in ["hello", &"x".repeat(100_000)] {
        ws.send(text).await.unwrap();
        match ws.recv().await {
            Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), text),
            other => panic!("{other:?}"),
        }
    }
    ws.close(wsduplex::CloseCode::NORMAL, "").await.unwrap();
    while let Some(item) = ws.recv().await {
        item.unwrap();
    }
}

#[tokio::test]
async fn refusals_are_the_front_doors() {
    let addr = start(ServerConfig::default()).await;
    // Not an upgrade: the same answer as `wsduplex serve`'s.
    let answer = raw(addr, "GET /echo HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    let answer = raw(
        addr,
        "GET /echo HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 426"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{answer}"
    );
    let answer = raw(addr, "GET /other HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
}

#[tokio::test]
async fn a_socket_holds_its_permit_until_it_closes() {
    let mut config = ServerConfig::default();
    config.connections = ConnectionLimiter::new(0, 1);
    let limiter = config.connections.clone();
    let addr = start(config).await;
    let url = format!("ws://{addr}/echo");
    let (mut first, _) = wsduplex::connect(url.as_str()).await.unwrap();
    let refused = wsduplex::connect(url.as_str()).await.unwrap_err();
    assert_eq!(status(&refused), Some(429), "{refused:?}");
    assert_eq!(limiter.open(), 1);
    first.close(wsduplex::CloseCode::NORMAL, "").await.unwrap();
    while let Some(item) = first.recv().await {
        item.unwrap();
    }
    // The server's task ends once the close completes: its permit goes with the socket.
    for _ in 0..200 {
        if limiter.open() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(limiter.open(), 0);
    let (_again, _) = wsduplex::connect(url.as_str()).await.unwrap();
}
