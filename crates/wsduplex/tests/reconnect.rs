//! The reconnecting client against a real loopback server that drops connections.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wsduplex::reconnect::ReconnectingClient;
use wsduplex::server::ServerConfig;
use wsduplex::{ClientConfig, CloseCode, Message};

#[tokio::test]
async fn reconnects_after_drops_and_reruns_the_hook() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Connection 1 is dropped without a close frame, connection 2 is closed with 1012,
    // connection 3 stays up. Each echoes what it receives first.
    tokio::spawn(async move {
        let cfg = ServerConfig::default();
        for n in 1.. {
            let mut ws = common::accept_ws(&listener, &cfg).await;
            let Some(Ok(first)) = ws.recv().await else {
                continue;
            };
            ws.send(first).await.unwrap();
            match n {
                1 => drop(ws),
                2 => {
                    ws.close(CloseCode::SERVICE_RESTART, "restart")
                        .await
                        .unwrap();
                    while ws.recv().await.is_some() {}
                }
                _ => {
                    tokio::spawn(async move { while ws.recv().await.is_some() {} });
                }
            }
        }
    });
    let hooks = Arc::new(AtomicU32::new(0));
    let counter = hooks.clone();
    let mut client = ReconnectingClient::new(
        format!("ws://{addr}/"),
        ClientConfig::default(),
        common::fast(),
    )
    .on_connect(move |ws| {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        Box::pin(async move { ws.send(format!("hello {n}")).await })
    });
    let run = async {
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::text("hello 1")
        );
        assert!(
            client.recv().await.unwrap().is_err(),
            "the abrupt drop is reported"
        );
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::text("hello 2")
        );
        match client.recv().await {
            Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::SERVICE_RESTART),
            other => panic!("expected the server's close, got {other:?}"),
        }
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::text("hello 3")
        );
    };
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .unwrap();
    assert_eq!(client.connections(), 3);
    assert_eq!(hooks.load(Ordering::SeqCst), 3);
    client.close(CloseCode::NORMAL, "").await.unwrap();
    while client.recv().await.is_some() {}
}

#[tokio::test]
async fn gives_up_after_max_attempts() {
    // A server that takes every connection and drops it at once, counting them: each
    // attempt fails, and the count is what the server saw.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let attempts = Arc::new(AtomicU32::new(0));
    let seen = attempts.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            // Counted before the drop that fails the attempt.
            seen.fetch_add(1, Ordering::SeqCst);
            drop(tcp);
        }
    });
    let mut backoff = common::fast();
    backoff.max_attempts = Some(3);
    let mut client =
        ReconnectingClient::new(format!("ws://{addr}/"), ClientConfig::default(), backoff);
    let r = tokio::time::timeout(Duration::from_secs(20), client.recv())
        .await
        .unwrap();
    // The last attempt's error (the connection ended before a response) is reported, then
    // the end.
    assert!(matches!(r, Some(Err(wsduplex::Error::Io(_)))), "{r:?}");
    assert!(client.recv().await.is_none());
    assert_eq!(client.connections(), 0);
    // max_attempts counts every consecutive failed attempt, the first one included.
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    // Given up for good: receiving again tries nothing.
    assert!(client.recv().await.is_none());
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn request_with_makes_each_attempts_request() {
    // A port nobody listens on (bound, then released), and a server that echoes the path
    // and the header of each request it upgrades.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let live = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let cfg = ServerConfig::default();
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let incoming = wsduplex::server::read_request(tcp, &cfg).await.unwrap();
            let request = incoming.request();
            let seen = format!(
                "{} {}",
                request.path(),
                String::from_utf8_lossy(request.header("x-attempt").unwrap_or_default())
            );
            let mut ws = incoming.accept(&cfg).await.unwrap();
            ws.send(seen).await.unwrap();
            while ws.recv().await.is_some() {}
        }
    });
    let mut client = ReconnectingClient::new(
        "ws://example.invalid/",
        ClientConfig::default(),
        common::fast(),
    )
    .request_with(move |failures| {
        // The first server until it fails, then the second.
        let addr = if failures == 0 { dead } else { live };
        wsduplex::http::Request::get(format!("ws://{addr}/room?since={failures}"))
            .header("x-attempt", failures.to_string())
            .body(())
            .unwrap()
    });
    let first = tokio::time::timeout(Duration::from_secs(20), client.recv())
        .await
        .unwrap();
    assert_eq!(first.unwrap().unwrap(), Message::text("/room?since=1 1"));
    assert_eq!(client.connections(), 1);
}

#[tokio::test]
async fn give_up_when_ends_the_client_at_a_final_error() {
    // A server that refuses every upgrade with 403, counting the attempts.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let attempts = Arc::new(AtomicU32::new(0));
    let seen = attempts.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            seen.fetch_add(1, Ordering::SeqCst);
            let mut head = [0u8; 1024];
            let _ = tcp.read(&mut head).await;
            let refusal = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
            let _ = tcp.write_all(refusal).await;
        }
    });
    let final_status = |e: &wsduplex::Error| {
        matches!(
            e,
            wsduplex::Error::Response(wsduplex::proto::handshake::client::ResponseError::Status {
                status: 403,
                ..
            })
        )
    };
    let mut client = ReconnectingClient::new(
        format!("ws://{addr}/"),
        ClientConfig::default(),
        common::fast(),
    )
    .give_up_when(final_status);
    let r = tokio::time::timeout(Duration::from_secs(20), client.recv())
        .await
        .unwrap();
    assert!(matches!(&r, Some(Err(e)) if final_status(e)), "{r:?}");
    assert!(client.recv().await.is_none());
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "no retry after a final error"
    );
}
