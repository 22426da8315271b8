//! `WebSocket::park` and `unpark`: an idle socket set aside without its transport, and
//! resumed as if it had kept waiting.

mod common;

use std::future::poll_fn;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, DuplexStream};
use wsduplex::client::ClientConfig;
use wsduplex::server::ServerConfig;
use wsduplex::{CloseCode, Message, WebSocket};

async fn recv(ws: &mut WebSocket<DuplexStream>) -> Message {
    ws.recv().await.expect("a message").expect("no error")
}

#[tokio::test]
async fn a_parked_socket_resumes_where_it_stopped() {
    let (mut client, mut server) =
        common::pair(ServerConfig::default(), ClientConfig::default()).await;
    for round in 0..3 {
        client
            .send(Message::text(format!("m{round}")))
            .await
            .unwrap();
        let got = recv(&mut server).await;
        server.send(got).await.unwrap();
        assert_eq!(recv(&mut client).await, Message::text(format!("m{round}")));
        let (io, parked) = server.park().expect("nothing in flight");
        assert_eq!(parked.deadline(), None, "no keepalive, no deadline");
        server = WebSocket::unpark(io, parked);
    }
    // Sent while parked: read once resumed.
    let (io, parked) = server.park().expect("nothing in flight");
    client.send(Message::binary(vec![7; 10_000])).await.unwrap();
    let mut server = WebSocket::unpark(io, parked);
    assert_eq!(recv(&mut server).await, Message::binary(vec![7; 10_000]));
    // And the closing handshake completes.
    let (closed, close) = tokio::join!(client.close(CloseCode::NORMAL, "bye"), recv(&mut server));
    closed.unwrap();
    assert!(matches!(close, Message::Close(Some(f)) if f.code == CloseCode::NORMAL));
    assert!(server.recv().await.is_none());
}

#[tokio::test]
async fn a_socket_with_anything_in_flight_is_not_parked() {
    let (mut client, server) = common::pair(ServerConfig::default(), ClientConfig::default()).await;
    // Half a frame arrives, and is read.
    let frame = [
        0x81,
        0x85,
        1,
        2,
        3,
        4,
        b'h' ^ 1,
        b'e' ^ 2,
        b'l' ^ 3,
        b'l' ^ 4,
        b'o' ^ 1,
    ];
    let mut server = server;
    {
        let io = client.get_mut();
        io.write_all(&frame[..7]).await.unwrap();
    }
    let pending =
        poll_fn(|cx| Poll::Ready(server.poll_recv_with(cx, |_, _| {}).is_pending())).await;
    assert!(pending, "half a frame is no message");
    let mut server = server.park().expect_err("a frame half read");
    client.get_mut().write_all(&frame[7..]).await.unwrap();
    assert_eq!(recv(&mut server).await, Message::text("hello"));

    // A message queued and not yet written.
    use futures_util::SinkExt as _;
    server.feed(Message::text("queued")).await.unwrap();
    let mut server = server.park().expect_err("a frame queued");
    server.flush().await.unwrap();
    assert_eq!(recv(&mut client).await, Message::text("queued"));

    // Closing.
    server.close(CloseCode::NORMAL, "").await.unwrap();
    assert!(server.park().is_err(), "closing");
}

#[tokio::test(start_paused = true)]
async fn a_parked_socket_names_its_keepalive_deadline_and_pings_on_time() {
    let mut cfg = ServerConfig::default();
    cfg.socket.ping_interval = Some(Duration::from_secs(10));
    let (mut client, server) = common::pair(cfg, ClientConfig::default()).await;
    let start = tokio::time::Instant::now();
    tokio::time::advance(Duration::from_secs(4)).await;
    let (io, parked) = server.park().expect("nothing in flight");
    let due = parked.deadline().expect("a keepalive deadline");
    assert_eq!(
        tokio::time::Instant::from_std(due),
        start + Duration::from_secs(10)
    );
    tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
    let mut server = WebSocket::unpark(io, parked);
    // The server's read loop sends the ping; the client answers it while reading.
    let s = tokio::spawn(async move { server.recv().await.map(|r| r.map(|_| ())) });
    let ping = recv(&mut client).await;
    assert!(matches!(ping, Message::Ping(_)), "{ping:?}");
    client.close(CloseCode::NORMAL, "").await.unwrap();
    drop(s);
}
