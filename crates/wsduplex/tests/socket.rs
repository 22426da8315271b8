//! The tokio layer over in-memory duplex streams and loopback TCP: messages, split halves,
//! cancel safety, closing, timeouts, backpressure, and HTTP on the same port.

use futures_util::{FutureExt, SinkExt, StreamExt};
use std::time::Duration;
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};
use wsduplex::client::{client_handshake, Target};
use wsduplex::server::{read_request, ServerConfig};
use wsduplex::{ClientConfig, CloseCode, Error, Message, WebSocket};

async fn pair_with(
    server_cfg: ServerConfig,
    client_cfg: ClientConfig,
) -> (WebSocket<DuplexStream>, WebSocket<DuplexStream>) {
    let (a, b) = duplex(64 * 1024);
    let server = tokio::spawn(async move {
        read_request(b, &server_cfg)
            .await?
            .accept(&server_cfg)
            .await
    });
    let target = Target::parse("ws://localhost/echo").unwrap();
    let (client, _) = client_handshake(a, &target, &client_cfg).await.unwrap();
    (client, server.await.unwrap().unwrap())
}

async fn pair() -> (WebSocket<DuplexStream>, WebSocket<DuplexStream>) {
    pair_with(ServerConfig::default(), ClientConfig::default()).await
}

/// Echoes data messages until the stream ends; returns the last non-data item.
fn spawn_echo(mut ws: WebSocket<DuplexStream>) -> tokio::task::JoinHandle<Option<Message>> {
    tokio::spawn(async move {
        let mut last = None;
        while let Some(item) = ws.recv().await {
            match item {
                Ok(m) if m.is_data() => ws.feed(m).await.unwrap(),
                Ok(m) => last = Some(m),
                Err(e) => panic!("server error: {e}"),
            }
        }
        last
    })
}

#[tokio::test]
async fn messages_of_every_kind_and_size_roundtrip() {
    let (mut client, server) = pair().await;
    let echo = spawn_echo(server);
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let msgs = vec![
        Message::text("hello"),
        Message::text(""),
        Message::binary(vec![]),
        Message::binary(big),
        Message::text("κόσμε".repeat(10_000)),
    ];
    // One at a time: with bounded buffers on both ends, a client that writes megabytes
    // without reading the echoes would (correctly) be held back.
    for m in &msgs {
        client.send(m.clone()).await.unwrap();
        assert_eq!(client.recv().await.unwrap().unwrap(), *m);
    }
    client
        .send(Message::Ping("are you there".into()))
        .await
        .unwrap();
    assert_eq!(
        client.recv().await.unwrap().unwrap(),
        Message::Pong("are you there".into())
    );
    client.close(CloseCode::NORMAL, "bye").await.unwrap();
    match client.recv().await {
        Some(Ok(Message::Close(Some(f)))) => {
            assert_eq!((f.code, f.reason.as_str()), (CloseCode::NORMAL, ""))
        }
        other => panic!("expected the close reply, got {other:?}"),
    }
    assert!(client.recv().await.is_none());
    match echo.await.unwrap() {
        Some(Message::Close(Some(f))) => {
            assert_eq!((f.code, f.reason.as_str()), (CloseCode::NORMAL, "bye"))
        }
        other => panic!("server saw {other:?}"),
    }
}

#[tokio::test]
async fn split_halves_work_from_two_tasks() {
    let (client, server) = pair().await;
    let echo = spawn_echo(server);
    let (mut rx, mut tx) = client.split();
    const N: usize = 2_000;
    let writer = tokio::spawn(async move {
        for i in 0..N {
            tx.send(Message::text(format!("message {i}")))
                .await
                .unwrap();
        }
        tx.send(Message::Ping("p".into())).await.unwrap();
        tx
    });
    let mut got = 0;
    while got < N {
        match rx.recv().await.unwrap().unwrap() {
            Message::Text(t) => {
                assert_eq!(t.as_str(), format!("message {got}"));
                got += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let mut tx = writer.await.unwrap();
    assert_eq!(rx.recv().await.unwrap().unwrap(), Message::Pong("p".into()));
    tx.close(CloseCode::NORMAL, "").await.unwrap();
    assert!(matches!(rx.recv().await, Some(Ok(Message::Close(_)))));
    assert!(rx.recv().await.is_none());
    echo.await.unwrap();
}

#[tokio::test]
async fn reading_is_cancel_safe_in_select() {
    let (mut client, mut server) = pair().await;
    const N: usize = 5_000;
    let sender = tokio::spawn(async move {
        for i in 0..N {
            server.feed(Message::text(i.to_string())).await.unwrap();
            if i % 97 == 0 {
                server.flush().await.unwrap();
            }
        }
        server.close(CloseCode::NORMAL, "").await.unwrap();
        while server.recv().await.is_some() {}
    });
    let mut next = 0;
    let mut cancelled = 0;
    loop {
        // Poll the read once and drop it if it is not ready: a cancelled read must lose
        // nothing. (The sender cannot run before our first poll, so some reads are dropped.)
        let Some(item) = client.recv().now_or_never() else {
            cancelled += 1;
            tokio::task::yield_now().await;
            continue;
        };
        match item {
            Some(Ok(Message::Text(t))) => {
                assert_eq!(
                    t.as_str(),
                    next.to_string(),
                    "a message was lost or reordered"
                );
                next += 1;
            }
            Some(Ok(Message::Close(_))) => {}
            None => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(next, N);
    assert!(cancelled > 0);
    sender.await.unwrap();
}

#[tokio::test]
async fn frames_sent_right_behind_the_handshake_are_not_lost() {
    let (mut a, b) = duplex(4096);
    let cfg = ServerConfig::default();
    let server = tokio::spawn(async move { read_request(b, &cfg).await?.accept(&cfg).await });
    // The request and a masked "hi" frame in a single write.
    let mut bytes = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        .to_vec();
    bytes.extend_from_slice(&[0x81, 0x82, 0, 0, 0, 0, b'h', b'i']);
    a.write_all(&bytes).await.unwrap();
    let mut ws = server.await.unwrap().unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("hi"));
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_close_times_out() {
    let (a, b) = duplex(64 * 1024);
    let cfg = ServerConfig::default();
    let peer = tokio::spawn(async move {
        let target = Target::parse("ws://localhost/").unwrap();
        let (ws, _) = client_handshake(a, &target, &ClientConfig::default())
            .await
            .unwrap();
        ws
    });
    let mut server = read_request(b, &cfg)
        .await
        .unwrap()
        .accept(&cfg)
        .await
        .unwrap();
    let _silent_client = peer.await.unwrap(); // never reads, never answers
    server.close(CloseCode::GOING_AWAY, "").await.unwrap();
    let started = tokio::time::Instant::now();
    assert!(matches!(
        server.recv().await,
        Some(Err(Error::CloseTimeout))
    ));
    assert!(started.elapsed() >= wsduplex::Config::default().close_timeout);
    assert!(server.recv().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_hits_the_handshake_timeout() {
    let (_a, b) = duplex(1024);
    let r = read_request(b, &ServerConfig::default()).await;
    assert!(matches!(r, Err(Error::HandshakeTimeout)), "{r:?}");
}

#[tokio::test]
async fn the_server_closes_tcp_first_and_the_client_sees_it() {
    let (mut client, server) = pair().await;
    let echo = spawn_echo(server);
    client.close(CloseCode::NORMAL, "").await.unwrap();
    // The client waits for the server's FIN: this returns long before the close timeout.
    let r = tokio::time::timeout(Duration::from_secs(2), client.recv())
        .await
        .unwrap();
    assert!(matches!(r, Some(Ok(Message::Close(_)))), "{r:?}");
    echo.await.unwrap();
}

#[tokio::test]
async fn a_peer_that_does_not_read_makes_sending_wait() {
    let mut cfg = ServerConfig::default();
    cfg.socket.max_write_buffer = 64 * 1024;
    let (_client, mut server) = pair_with(cfg, ClientConfig::default()).await;
    let chunk = vec![7u8; 10 * 1024];
    let mut sent = 0;
    loop {
        match tokio::time::timeout(
            Duration::from_millis(200),
            server.feed(Message::binary(chunk.clone())),
        )
        .await
        {
            Ok(r) => r.unwrap(),
            Err(_) => break, // blocked: backpressure works
        }
        sent += 1;
        assert!(server.buffered_amount() <= 64 * 1024 + chunk.len() + 14);
        assert!(sent < 1000, "sending never waited");
    }
}

#[tokio::test]
async fn sending_after_close_is_a_usage_error() {
    let (mut client, _server) = pair().await;
    client.close(CloseCode::NORMAL, "").await.unwrap();
    assert!(matches!(client.send("late").await, Err(Error::Usage(_))));
}

#[tokio::test]
async fn loopback_tcp_serves_http_and_websocket_on_one_port() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let cfg = ServerConfig::default();
        for _ in 0..2 {
            let (tcp, _) = listener.accept().await.unwrap();
            let incoming = read_request(tcp, &cfg).await.unwrap();
            if incoming.is_upgrade() {
                let mut ws = incoming.accept(&cfg).await.unwrap();
                while let Some(Ok(m)) = ws.recv().await {
                    if m.is_data() {
                        ws.send(m).await.unwrap();
                    }
                }
            } else {
                incoming
                    .respond(200, &[], "text/plain", b"plain http\n")
                    .await
                    .unwrap();
            }
        }
    });
    let mut http = tokio::net::TcpStream::connect(addr).await.unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    http.read_to_string(&mut body).await.unwrap();
    assert!(
        body.starts_with("HTTP/1.1 200 OK\r\n") && body.ends_with("plain http\n"),
        "{body}"
    );

    let (mut ws, hs) = wsduplex::connect(&format!("ws://{addr}/")).await.unwrap();
    assert_eq!(hs.response.status, 101);
    ws.send("over tcp").await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("over tcp"));
    ws.close(CloseCode::NORMAL, "").await.unwrap();
    while ws.next().await.is_some() {}
    server.await.unwrap();
}

#[tokio::test]
async fn connect_reports_refusals_clearly() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let incoming = read_request(tcp, &ServerConfig::default()).await.unwrap();
        incoming
            .respond(404, &[], "text/plain", b"nope\n")
            .await
            .unwrap();
    });
    let err = wsduplex::connect(&format!("ws://{addr}/missing"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "server answered 404 Not Found instead of 101"
    );
    let err = wsduplex::connect("http://example.com/").await.unwrap_err();
    assert!(matches!(err, Error::Url(_)), "{err}");
}
