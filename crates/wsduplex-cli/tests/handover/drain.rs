//! WebSockets that cannot move stay with the old process at a hand-over (docs/handover.md,
//! "What moves, what is drained"): over TLS, HTTP/1.1 or HTTP/2 by ALPN, and on the streams
//! of an h2c connection. The old process echoes on them during the drain, closes them with
//! 1001 when `--drain-timeout` passes, and exits 0; a plain one beside them moves.

use crate::common::Ws;
use crate::procs::{control_path, echo, serve_control_with, take_over_with};
use std::time::{Duration, Instant};
use wsduplex::client::Http2;
use wsduplex::{ClientConfig, ClientStream, CloseCode, Message, ProxySetting, WebSocket};

/// The drain: long enough for a loaded debug build to echo on each drained connection once
/// after the take-over.
const DRAIN: Duration = Duration::from_secs(3);
const DRAIN_FLAG: &str = "3s";

/// A worker of its own drives the HTTP/2 connections' tasks while the test waits on a
/// process (the client's answer to the old process's close, say).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Our client, trusting the self-signed certificates of `--tls-self-signed`.
fn config(http2: Http2) -> ClientConfig {
    let mut config = ClientConfig::default();
    config.proxy = ProxySetting::None;
    config.http2 = http2;
    config.tls.dangerous_accept_invalid_certs = true;
    config
}

async fn round_trip(ws: &mut WebSocket<ClientStream>, text: &str) {
    ws.send(Message::text(text.to_owned())).await.unwrap();
    match ws.recv().await {
        Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), text),
        other => panic!("expected the echo of {text:?}, got {other:?}"),
    }
}

/// The old process's close at the drain timeout: 1001, then the end of the socket.
async fn closed_with_1001(ws: &mut WebSocket<ClientStream>) {
    match ws.recv().await {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::GOING_AWAY, "{f:?}"),
        other => panic!("expected a close with 1001, got {other:?}"),
    }
    assert!(ws.recv().await.is_none(), "a message after the close");
}

#[test]
fn tls_websockets_are_served_through_the_drain_then_closed_with_1001() {
    let path = control_path("ctl");
    let flags = ["--tls-self-signed", "--drain-timeout", DRAIN_FLAG];
    let (old, addr) = serve_control_with(&path, &flags);
    let rt = runtime();
    let url = format!("wss://{addr}/echo");
    let connect = |http2| {
        let (ws, _) = rt
            .block_on(wsduplex::connect_with(&url, &config(http2)))
            .unwrap_or_else(|e| panic!("{url} ({http2:?}): {e}"));
        ws
    };
    let mut http1 = connect(Http2::Never);
    assert!(matches!(http1.get_ref(), ClientStream::Tls(_)));
    // ALPN h2: an RFC 8441 stream of an HTTP/2 connection over TLS.
    let mut h2 = connect(Http2::Always);
    assert!(matches!(h2.get_ref(), ClientStream::Http2(_)));
    rt.block_on(async {
        round_trip(&mut http1, "over tls").await;
        round_trip(&mut h2, "over h2 over tls").await;
    });
    let (new, count, from) = take_over_with(&path, addr, &flags);
    assert_eq!((count, from), (0, old.pid()));
    assert!(old.line("handed over ").starts_with("0 connections"));
    let handed = Instant::now();
    rt.block_on(async {
        round_trip(&mut http1, "served by the old process").await;
        round_trip(&mut h2, "served by the old process too").await;
        closed_with_1001(&mut http1).await;
        closed_with_1001(&mut h2).await;
    });
    // Not at once: at the drain timeout (counted from a moment before `handed`).
    assert!(handed.elapsed() >= DRAIN - Duration::from_secs(1));
    let (status, stderr) = old.exit();
    assert!(status.success(), "old process: {status}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The new process, alone now, serves TLS.
    let mut fresh = connect(Http2::Never);
    rt.block_on(round_trip(&mut fresh, "the new process's"));
    drop(fresh);
    new.stop();
}

#[test]
fn websockets_on_h2c_are_drained_while_a_plain_one_moves() {
    let path = control_path("ctl");
    let flags = ["--drain-timeout", DRAIN_FLAG];
    let (old, addr) = serve_control_with(&path, &flags);
    let rt = runtime();
    // h2c with prior knowledge: both streams share one connection (one pool).
    let h2c = config(Http2::Always);
    let url = format!("ws://{addr}/echo");
    let mut streams: Vec<_> = (0..2)
        .map(|_| {
            let (ws, _) = rt
                .block_on(wsduplex::connect_with(&url, &h2c))
                .expect("h2c");
            assert!(matches!(ws.get_ref(), ClientStream::Http2(_)));
            ws
        })
        .collect();
    let mut plain = Ws::connect(addr, "/echo");
    echo(&mut plain, "moves");
    rt.block_on(async {
        for (i, ws) in streams.iter_mut().enumerate() {
            round_trip(ws, &format!("stream {i}")).await;
        }
    });
    let (new, count, from) = take_over_with(&path, addr, &flags);
    assert_eq!((count, from), (1, old.pid()));
    assert!(old.line("handed over ").starts_with("1 connections"));
    let handed = Instant::now();
    echo(&mut plain, "served by the new process");
    rt.block_on(async {
        for (i, ws) in streams.iter_mut().enumerate() {
            round_trip(ws, &format!("stream {i}, served by the old process")).await;
        }
        for ws in &mut streams {
            closed_with_1001(ws).await;
        }
    });
    assert!(handed.elapsed() >= DRAIN - Duration::from_secs(1));
    let (status, stderr) = old.exit();
    assert!(status.success(), "old process: {status}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    echo(&mut plain, "still the new process's");
    drop(plain);
    new.stop();
}
