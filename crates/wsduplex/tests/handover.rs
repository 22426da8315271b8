//! `WebSocket::into_parts` and `WebSocket::from_parts` (feature `handover`): a live socket
//! taken apart mid-message in both directions, its state encoded and decoded, and resumed
//! on the same transport; the peer (our client, Python `websockets` with permessage-deflate)
//! receives every message intact and never sees the move. Also what `SocketState::decode`
//! makes of bytes that are not a state.
#![cfg(feature = "handover")]

mod common;

use futures_core::Stream;
use futures_sink::Sink;
use std::future::poll_fn;
use std::pin::Pin;
use std::process::Stdio;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{duplex, AsyncRead, AsyncWrite, DuplexStream};
use tokio::net::{TcpListener, TcpStream};
use wsduplex::server::{read_request, ServerConfig};
use wsduplex::{
    ClientConfig, CloseCode, Config, DeflateConfig, HandoverError, Message, SocketState, WebSocket,
};

// Only its Python half is used here.
#[allow(dead_code)]
#[path = "../../../tests/interop/peer.rs"]
mod peer;
use peer::Peer;

const TIMEOUT: Duration = Duration::from_secs(60);

/// Text that compresses to about half (hex digits of a fixed sequence): large enough to
/// stay half written through a small pipe, and different for each `seed`.
fn hex_text(seed: u64, len: usize) -> String {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut s = String::with_capacity(len + 16);
    while s.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(&format!("{:016x} ", x));
    }
    s.truncate(len);
    s
}

fn configs() -> (ServerConfig, ClientConfig) {
    let mut policy = DeflateConfig::default();
    policy.threshold = 0;
    let mut server = ServerConfig::default();
    server.deflate = Some(policy.clone());
    server.subprotocols = vec!["chat".into()];
    server.socket.protocol = server.socket.protocol.clone().fragment_size(Some(1000));
    let mut client = ClientConfig::default();
    client.deflate = Some(policy);
    client.subprotocols = vec!["chat".into()];
    client.socket.protocol = client.socket.protocol.clone().fragment_size(Some(700));
    (server, client)
}

async fn pair<S>(client_io: S, server_io: S) -> (WebSocket<S>, WebSocket<S>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (server_cfg, client_cfg) = configs();
    let (client, server, hs) =
        common::handshake(client_io, server_io, server_cfg, client_cfg).await;
    assert!(hs.response.deflate.is_some(), "permessage-deflate agreed");
    (client, server)
}

/// Takes the socket apart, encodes and decodes its state, and resumes it on the transport
/// `move_io` gives (the same one, as another process gets it).
fn hand_over<S, T>(ws: WebSocket<S>, config: Config, move_io: impl FnOnce(S) -> T) -> WebSocket<T> {
    let (io, state) = ws.into_parts();
    let bytes = state.encode();
    drop(state);
    let state = SocketState::decode(&bytes).unwrap();
    WebSocket::from_parts(move_io(io), state, config).unwrap()
}

/// Polls once, without waiting: whatever can be written or read now is.
fn poke<T>(f: impl FnOnce(&mut Context<'_>) -> Poll<T>) -> Poll<T> {
    f(&mut Context::from_waker(Waker::noop()))
}

async fn flush<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocket<S>) {
    poll_fn(|cx| Pin::new(&mut *ws).poll_flush(cx))
        .await
        .unwrap();
}

async fn recv<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocket<S>) -> Message {
    ws.recv().await.expect("a message").expect("no error")
}

/// Both ends queue a large fragmented, compressed message and write what the pipe takes;
/// the server reads what arrived of the client's (a frame and a message half received).
async fn half_way<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut WebSocket<S>,
    server: &mut WebSocket<S>,
    from_client: &Message,
    from_server: &Message,
) {
    server.feed(from_server.clone()).await.unwrap();
    client.feed(from_client.clone()).await.unwrap();
    assert!(poke(|cx| Pin::new(&mut *server).poll_flush(cx)).is_pending());
    assert!(poke(|cx| Pin::new(&mut *client).poll_flush(cx)).is_pending());
    assert!(poke(|cx| Pin::new(&mut *server).poll_next(cx)).is_pending());
    assert!(
        server.buffered_amount() > 0,
        "the server's message is half sent"
    );
}

/// Then both finish: each gets the other's message whole.
async fn finish<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut WebSocket<S>,
    server: &mut WebSocket<S>,
    from_client: &Message,
    from_server: &Message,
) {
    let c = async {
        flush(client).await;
        recv(client).await
    };
    let s = async {
        let got = recv(server).await;
        flush(server).await;
        got
    };
    let (at_client, at_server) = tokio::join!(c, s);
    assert!(
        at_client == *from_server,
        "the server's message arrives whole"
    );
    assert!(
        at_server == *from_client,
        "the client's message arrives whole"
    );
}

/// Echoes through the server: messages that refer back to what came before the move. Each
/// send runs beside the read that takes it (a large one does not fit in the pipe).
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut WebSocket<S>,
    server: &mut WebSocket<S>,
    msgs: &[Message],
) {
    for m in msgs {
        let (sent, got) = tokio::join!(client.send(m.clone()), recv(server));
        sent.unwrap();
        assert!(got == *m);
        let (sent, back) = tokio::join!(server.send(got), recv(client));
        sent.unwrap();
        assert!(back == *m);
    }
}

async fn close<S: AsyncRead + AsyncWrite + Unpin>(
    mut client: WebSocket<S>,
    mut server: WebSocket<S>,
) {
    client.close(CloseCode::NORMAL, "bye").await.unwrap();
    let s = async {
        let close = recv(&mut server).await;
        assert!(matches!(close, Message::Close(Some(ref f)) if f.code == CloseCode::NORMAL));
        assert!(server.recv().await.is_none());
    };
    let c = async {
        assert!(matches!(recv(&mut client).await, Message::Close(_)));
        assert!(client.recv().await.is_none());
    };
    tokio::join!(s, c);
}

#[tokio::test]
async fn both_ends_move_mid_message_over_a_pipe_and_nothing_is_lost() {
    let test = async {
        let (a, b) = duplex(4096);
        let (mut client, mut server) = pair(a, b).await;
        let (server_cfg, client_cfg) = configs();
        let from_client = Message::text(hex_text(1, 200_000));
        let from_server = Message::text(hex_text(2, 300_000));
        half_way(&mut client, &mut server, &from_client, &from_server).await;

        let mut server: WebSocket<DuplexStream> =
            hand_over(server, server_cfg.socket.clone(), |io| io);
        assert_eq!(server.subprotocol(), Some("chat"));
        finish(&mut client, &mut server, &from_client, &from_server).await;

        // The client moves too, with a message of its own half sent.
        let again = Message::text(hex_text(3, 100_000));
        half_way(&mut client, &mut server, &again, &from_server).await;
        let mut client = hand_over(client, client_cfg.socket.clone(), |io| io);
        assert_eq!(client.subprotocol(), Some("chat"));
        finish(&mut client, &mut server, &again, &from_server).await;

        // Compressed against contexts that crossed the move, both ways.
        let tail = hex_text(2, 300_000)[290_000..].to_string();
        echo(
            &mut client,
            &mut server,
            &[
                Message::text(tail.clone()),
                Message::text(tail),
                Message::binary(vec![1u8; 5]),
            ],
        )
        .await;
        close(client, server).await;
    };
    tokio::time::timeout(TIMEOUT, test)
        .await
        .expect("timed out");
}

#[tokio::test]
async fn a_server_moves_on_the_same_tcp_connection_as_its_descriptor_would() {
    let test = async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client_io, server_io) = tokio::join!(TcpStream::connect(addr), async {
            listener.accept().await.unwrap().0
        });
        let (mut client, mut server) = pair(client_io.unwrap(), server_io).await;
        let (server_cfg, _) = configs();
        let from_client = Message::text(hex_text(4, 3_000_000));
        let from_server = Message::text(hex_text(5, 6_000));
        // Over TCP the kernel takes the server's small message whole; the client's large
        // one is half read when the server moves.
        server.feed(from_server.clone()).await.unwrap();
        client.feed(from_client.clone()).await.unwrap();
        let _ = poke(|cx| Pin::new(&mut client).poll_flush(cx));
        let _ = poke(|cx| Pin::new(&mut server).poll_next(cx));
        let peer = server.get_ref().peer_addr().unwrap();
        for round in 0..3 {
            // As a file descriptor passed to another process: std and back.
            server = hand_over(server, server_cfg.socket.clone(), |io| {
                let std = io.into_std().unwrap();
                TcpStream::from_std(std).unwrap()
            });
            assert_eq!(server.get_ref().peer_addr().unwrap(), peer, "round {round}");
        }
        finish(&mut client, &mut server, &from_client, &from_server).await;
        echo(&mut client, &mut server, std::slice::from_ref(&from_server)).await;
        close(client, server).await;
    };
    tokio::time::timeout(TIMEOUT, test)
        .await
        .expect("timed out");
}

/// `ServerConfig::resume`: a socket without permessage-deflate, moved, shares the core's
/// settings with the server's accepted ones again; one with it keeps its own, and goes on.
#[tokio::test]
async fn a_server_resumes_sockets_sharing_its_settings_unless_with_deflate() {
    let (server_cfg, deflate_client) = configs();
    let mut plain_client = deflate_client.clone();
    plain_client.deflate = None;
    let (mut c1, s1) = common::pair(server_cfg.clone(), plain_client.clone()).await;
    let (_c2, s2) = common::pair(server_cfg.clone(), plain_client.clone()).await;
    let (mut c3, s3) = common::pair(server_cfg.clone(), deflate_client).await;
    let moved = |ws: WebSocket<DuplexStream>| {
        let (io, state) = ws.into_parts();
        let state = SocketState::decode(&state.encode()).unwrap();
        server_cfg.resume(io, state).unwrap()
    };
    let mut s1 = moved(s1);
    let mut s3 = moved(s3);
    assert!(s1.shares_config_with(&s2));
    assert!(!s3.shares_config_with(&s2));
    assert_eq!(s3.subprotocol(), Some("chat"));
    let msgs = [Message::text(hex_text(6, 5_000))];
    echo(&mut c1, &mut s1, &msgs).await;
    echo(&mut c3, &mut s3, &msgs).await;
}

#[tokio::test]
async fn a_server_moved_while_closing_finishes_the_closing_handshake() {
    let test = async {
        let (a, b) = duplex(64 * 1024);
        let (mut client, mut server) = pair(a, b).await;
        let (server_cfg, _) = configs();
        server.close(CloseCode::GOING_AWAY, "moving").await.unwrap();
        let mut server = hand_over(server, server_cfg.socket.clone(), |io| io);
        assert_eq!(*server.state(), wsduplex::proto::State::Closing);
        let s = async {
            let close = recv(&mut server).await;
            assert!(
                matches!(close, Message::Close(Some(ref f)) if f.code == CloseCode::GOING_AWAY),
                "{close:?}"
            );
            assert!(server.recv().await.is_none());
        };
        let c = async {
            let close = recv(&mut client).await;
            assert!(
                matches!(close, Message::Close(Some(ref f)) if f.reason.as_str() == "moving"),
                "{close:?}"
            );
            assert!(client.recv().await.is_none());
        };
        tokio::join!(s, c);
    };
    tokio::time::timeout(TIMEOUT, test)
        .await
        .expect("timed out");
}

#[tokio::test(start_paused = true)]
async fn a_keepalive_due_in_6_s_stays_due_in_6_s_after_the_move() {
    let mut server_cfg = ServerConfig::default();
    server_cfg.socket.ping_interval = Some(Duration::from_secs(10));
    let socket_cfg = server_cfg.socket.clone();
    let (mut client, server) = common::pair(server_cfg, ClientConfig::default()).await;
    let started = tokio::time::Instant::now();
    tokio::time::advance(Duration::from_secs(4)).await;
    let mut server = hand_over(server, socket_cfg, |io| io);
    let serve = tokio::spawn(async move { server.recv().await.map(|r| r.is_ok()) });
    let ping = recv(&mut client).await;
    assert!(matches!(ping, Message::Ping(_)), "{ping:?}");
    let at = started.elapsed();
    assert!(
        at >= Duration::from_secs(10) && at < Duration::from_millis(10_002),
        "the ping came at {at:?}"
    );
    serve.abort();
}

#[test]
fn a_state_of_another_version_is_refused_with_both_versions_named() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (a, b) = duplex(1024);
    let ws = rt.block_on(async { pair(a, b).await.1 });
    let (_, state) = ws.into_parts();
    let mut bytes = state.encode();
    assert_eq!(&bytes[..6], b"WSDX\x00\x01");
    bytes[5] = 2;
    let err = SocketState::decode(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            HandoverError::Version {
                found: 2,
                supported: 1
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "connection state format version 2 is not supported (this build reads version 1)"
    );
    assert!(matches!(
        SocketState::decode(b"GET / HTTP/1.1"),
        Err(HandoverError::NotAState)
    ));
}

/// Bytes that are not a state (random, cut short, or one byte changed): an error, or a
/// state that resumes; never a panic.
#[test]
fn decoding_arbitrary_bytes_never_panics() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (a, b) = duplex(1024);
        let (mut client, mut server) = pair(a, b).await;
        // A state with something in every part: a message half received, bytes unsent.
        let msg = Message::text(hex_text(6, 4_000));
        server.feed(msg.clone()).await.unwrap();
        client.feed(msg).await.unwrap();
        let _ = poke(|cx| Pin::new(&mut client).poll_flush(cx));
        let _ = poke(|cx| Pin::new(&mut server).poll_next(cx));
        let (_, state) = server.into_parts();
        let good = state.encode();

        let resume = |bytes: &[u8]| {
            if let Ok(state) = SocketState::decode(bytes) {
                let (io, _) = duplex(1024);
                if let Ok(mut ws) = WebSocket::from_parts(io, state, Config::default()) {
                    let _ = poke(|cx| Pin::new(&mut ws).poll_next(cx));
                }
            }
        };
        for n in 0..good.len() {
            assert!(SocketState::decode(&good[..n]).is_err(), "cut at {n}");
        }
        // Every byte of the header and the first fields, then a sample of the payloads.
        let positions = (6..good.len().min(300)).chain((300..good.len()).step_by(211));
        for i in positions {
            for b in [0u8, 1, 0x7f, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] = b;
                resume(&bad);
            }
        }
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..5_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 300) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|i| (x >> (i % 57)) as u8).collect();
            if x & 1 == 0 && bytes.len() >= 6 {
                bytes[..6].copy_from_slice(b"WSDX\x00\x01");
            }
            resume(&bytes);
        }
    });
}

#[tokio::test]
async fn python_with_deflate_sees_nothing_of_a_server_moving_after_every_message() {
    let skipped = "the hand-over test with Python websockets";
    let Some(mut cmd) = Peer::Python.command("snapshot_client", skipped) else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let child = cmd
        .arg(&url)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let serve = async {
        let mut cfg = ServerConfig::default();
        cfg.deflate = Some(DeflateConfig::default());
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = read_request(tcp, &cfg)
            .await
            .unwrap()
            .accept(&cfg)
            .await
            .unwrap();
        let mut echoed = 0;
        loop {
            match ws.recv().await {
                Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                    ws.send(m).await.unwrap();
                    echoed += 1;
                    ws = hand_over(ws, cfg.socket.clone(), |io| {
                        TcpStream::from_std(io.into_std().unwrap()).unwrap()
                    });
                }
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("{e}"),
            }
        }
        echoed
    };
    let echoed = tokio::time::timeout(TIMEOUT, serve)
        .await
        .expect("timed out");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python failed: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    assert_eq!(echoed, 12);
}
