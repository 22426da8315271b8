//! Keepalive pings, the pong timeout, and the idle timeout.

use std::time::Duration;
use tokio::io::{duplex, DuplexStream};
use wsduplex::client::{client_handshake, Target};
use wsduplex::server::{read_request, ServerConfig};
use wsduplex::{ClientConfig, CloseCode, Config, Error, Message, WebSocket};

async fn pair(
    server: Config,
    client: Config,
) -> (WebSocket<DuplexStream>, WebSocket<DuplexStream>) {
    let (a, b) = duplex(64 * 1024);
    let mut scfg = ServerConfig::default();
    scfg.socket = server;
    let srv = tokio::spawn(async move { read_request(b, &scfg).await?.accept(&scfg).await });
    let mut ccfg = ClientConfig::default();
    ccfg.socket = client;
    let target = Target::parse("ws://localhost/").unwrap();
    let (c, _) = client_handshake(a, &target, &ccfg).await.unwrap();
    (c, srv.await.unwrap().unwrap())
}

fn keepalive(interval_ms: u64, timeout_ms: u64) -> Config {
    let mut c = Config::default();
    c.ping_interval = Some(Duration::from_millis(interval_ms));
    c.ping_timeout = Duration::from_millis(timeout_ms);
    c
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_stops_answering_is_detected_and_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::Instant;
    // The peer is raw bytes, so what the server sends it and when can be seen: it reads
    // everything and answers nothing, as a peer whose network vanished.
    let (mut peer, b) = duplex(64 * 1024);
    let mut scfg = ServerConfig::default();
    // A ping every second and 2.5 s to answer one: pings at 1, 2 and 3 s, and the first
    // one's timeout (not the interval, not the last ping's) ends the connection at 3.5 s.
    scfg.socket = keepalive(1000, 2500);
    peer.write_all(
        b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut server = read_request(b, &scfg)
        .await
        .unwrap()
        .accept(&scfg)
        .await
        .unwrap();
    let started = Instant::now();
    // The socket is kept (returned, not dropped): the end the peer sees must be the
    // socket closing its transport, not the transport going away with it.
    let server = tokio::spawn(async move {
        let detected = server.recv().await;
        let at = started.elapsed();
        let then_none = server.recv().await.is_none();
        (detected, at, then_none, server)
    });
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(peer.read_u8().await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "));
    // Every frame the peer is sent, with when it arrived, until the end of the stream (or
    // a minute of paused time: a connection never closed fails instead of hanging).
    let mut frames = Vec::new();
    let read = async {
        loop {
            let mut header = [0u8; 2];
            match peer.read_exact(&mut header).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return started.elapsed()
                }
                Err(e) => panic!("{e}"),
            }
            // Server frames are unmasked; control frames carry at most 125 bytes.
            assert!(header[1] < 126, "{header:?}");
            let mut payload = vec![0u8; usize::from(header[1])];
            peer.read_exact(&mut payload).await.unwrap();
            let payload = String::from_utf8_lossy(&payload).into_owned();
            frames.push((started.elapsed(), header[0], payload));
        }
    };
    let ended = tokio::time::timeout(Duration::from_secs(60), read).await;
    let Ok(ended) = ended else {
        panic!("still open after a minute, having sent {frames:?}");
    };
    let ping = |secs: u64| (Duration::from_secs(secs), 0x89, "wsduplex keepalive".into());
    // Only pings, unanswered, and no close frame: nobody is there to answer one.
    assert_eq!(frames, [ping(1), ping(2), ping(3)]);
    // The transport is closed when the ping timeout runs out.
    assert_eq!(ended, Duration::from_millis(3500));
    let (detected, at, then_none, _server) = server.await.unwrap();
    match detected {
        Some(Err(Error::KeepaliveTimeout(t))) => assert_eq!(t, Duration::from_millis(2500)),
        other => panic!("expected a keepalive timeout, got {other:?}"),
    }
    assert_eq!(at, Duration::from_millis(3500));
    assert!(then_none, "the stream ends after the timeout");
}

#[tokio::test(start_paused = true)]
async fn a_live_peer_answers_every_ping() {
    let (mut client, mut server) = pair(Config::default(), keepalive(1000, 500)).await;
    tokio::spawn(async move { while server.recv().await.is_some() {} });
    let mut pongs = 0;
    while pongs < 5 {
        match client.recv().await {
            Some(Ok(Message::Pong(p))) => {
                assert_eq!(&p[..], b"wsduplex keepalive");
                pongs += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn pings_are_not_starved_by_a_flood_of_incoming_data() {
    let (mut client, server) = pair(Config::default(), keepalive(20, 5000)).await;
    let (mut rx, mut tx) = server.split();
    let flood = tokio::spawn(async move {
        let payload = vec![b'x'; 1000];
        loop {
            if tx.send(Message::binary(payload.clone())).await.is_err() {
                return;
            }
        }
    });
    let pings = tokio::spawn(async move {
        let mut pings = 0;
        while let Some(Ok(m)) = rx.recv().await {
            if matches!(m, Message::Ping(_)) {
                pings += 1;
                if pings == 3 {
                    return pings;
                }
            }
        }
        pings
    });
    // The client reads nothing but data, as fast as it can, until the server saw 3 pings.
    let reader = tokio::spawn(async move {
        let mut n = 0u64;
        while let Some(Ok(_)) = client.recv().await {
            n += 1;
        }
        n
    });
    let seen = tokio::time::timeout(Duration::from_secs(20), pings)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen, 3);
    flood.abort();
    reader.abort();
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_with_1001() {
    let mut server_cfg = Config::default();
    server_cfg.idle_timeout = Some(Duration::from_secs(30));
    let (mut client, mut server) = pair(server_cfg, Config::default()).await;
    let server = tokio::spawn(async move {
        let mut last = None;
        while let Some(item) = server.recv().await {
            last = Some(item);
        }
        last
    });
    // Activity pushes the deadline back.
    tokio::time::sleep(Duration::from_secs(20)).await;
    client.send("still here").await.unwrap();
    let sent_at = tokio::time::Instant::now();
    match client.recv().await {
        Some(Ok(Message::Close(Some(f)))) => {
            assert_eq!(
                (f.code, f.reason.as_str()),
                (CloseCode::GOING_AWAY, "idle timeout")
            );
        }
        other => panic!("expected the idle close, got {other:?}"),
    }
    assert!(sent_at.elapsed() >= Duration::from_secs(30));
    assert!(matches!(server.await.unwrap(), Some(Ok(Message::Close(_)))));
}
