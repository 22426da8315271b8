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
    let (silent_client, mut server) = pair(keepalive(1000, 1000), Config::default()).await;
    let started = tokio::time::Instant::now();
    match server.recv().await {
        Some(Err(Error::KeepaliveTimeout(t))) => assert_eq!(t, Duration::from_secs(1)),
        other => panic!("expected a keepalive timeout, got {other:?}"),
    }
    // One interval to the ping, one timeout for the answer.
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert!(server.recv().await.is_none());
    // Closed: the server (still alive here) shut the transport down without a close frame
    // (none can reach a gone peer), so the client, reading at last, finds the ping and then
    // an abrupt end.
    let mut silent_client = silent_client;
    match silent_client.recv().await {
        Some(Ok(Message::Ping(p))) => assert_eq!(&p[..], b"wsduplex keepalive"),
        other => panic!("expected the unanswered ping, got {other:?}"),
    }
    match silent_client.recv().await {
        Some(Err(Error::Protocol(e))) => {
            assert_eq!(e, wsduplex::proto::ProtocolError::UnexpectedEof)
        }
        other => panic!("expected the transport closed without a close frame, got {other:?}"),
    }
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
