//! Our client over HTTP/2 (RFC 8441) against `wsduplex serve` (h2c and TLS with ALPN) and
//! against Node's `node:http2` as the server: `wsduplex client --http2`, the library's
//! `connect_with` with `Http2::Always` through one pool (a counting TCP relay in front of
//! the server shows one connection), `bench echo --http2`, the fallback to HTTP/1.1, and
//! the errors.

mod common;

use common::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use wsduplex::client::Http2;
use wsduplex::{ClientConfig, ClientStream, CloseCode, Message, WebSocket};

/// A server process, killed on drop.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `wsduplex serve --tls-self-signed EXTRA` on loopback, and its `https://` base.
fn tls_server(extra: &[&str]) -> (Killed, String) {
    let mut args = vec!["--listen", "127.0.0.1:0", "--tls-self-signed"];
    args.extend_from_slice(extra);
    let mut child = std::process::Command::new(BIN)
        .arg("serve")
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn wsduplex serve");
    let mut line = String::new();
    let stdout = child.stdout.take().unwrap();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .expect("ready line")
        .to_string();
    assert!(base.starts_with("https://"), "{line}");
    (Killed(child), base)
}

#[test]
fn client_http2_echoes_over_h2c() {
    let server = Server::start();
    let out = run(
        &["client", "--http2", "-v", &server.url("/echo")],
        b"hello\nworld\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout_str(), "hello\nworld\n");
    assert!(out.stderr.contains("> :protocol: websocket"), "{out:?}");
    assert!(out.stderr.contains("< :status: 200"), "{out:?}");
    server.stop();
}

#[test]
fn client_http2_echoes_over_tls_with_alpn_and_auto_picks_h2() {
    let (_server, base) = tls_server(&[]);
    let url = format!("{}/echo", base.replacen("https", "wss", 1));
    for flag in ["--http2", "--http2=auto"] {
        let out = run(&["client", flag, "-k", "-v", &url], b"over tls\n");
        assert!(out.status.success(), "{flag}: {out:?}");
        assert_eq!(out.stdout_str(), "over tls\n");
        assert!(out.stderr.contains("> :scheme: https"), "{flag}: {out:?}");
    }
}

#[test]
fn auto_falls_back_to_http1_where_the_server_does_not_offer_h2() {
    let (_server, base) = tls_server(&["--no-http2"]);
    let url = format!("{}/echo", base.replacen("https", "wss", 1));
    let out = run(&["client", "--http2=auto", "-k", "-v", &url], b"fallback\n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout_str(), "fallback\n");
    assert!(out.stderr.contains("> GET /echo HTTP/1.1"), "{out:?}");
    // Required, HTTP/2 fails with one line.
    let out = run(&["client", "--http2", "-k", &url], b"");
    out.assert_one_line_error();
}

#[test]
fn h2c_against_an_http1_only_server_is_a_one_line_error() {
    let server = Server::start_on_loopback(&["--no-http2"]);
    let out = run(&["client", "--http2", &server.url("/echo")], b"");
    let line = out.assert_one_line_error();
    assert!(line.contains("does the server speak http/2"), "{line}");
    server.stop();
}

#[test]
fn a_refused_extended_connect_reports_its_status() {
    let server = Server::start();
    let out = run(&["client", "--http2", &server.url("/nowhere")], b"");
    let line = out.assert_one_line_error();
    assert!(line.contains("404"), "{line}");
    server.stop();
}

/// A TCP relay on loopback in front of `upstream` that counts the connections it accepts.
async fn counting_relay(upstream: SocketAddr) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let accepted = count.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut server = TcpStream::connect(upstream).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    (addr, count)
}

async fn echo_text_binary_and_large(ws: &mut WebSocket<ClientStream>) {
    ws.send(Message::text("text")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("text"));
    ws.send(Message::binary(vec![0u8, 1, 2])).await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::binary(vec![0u8, 1, 2])
    );
    // Past the initial 65,535-byte windows, and not compressible below them.
    let big: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::binary(big));
}

async fn close_cleanly(ws: &mut WebSocket<ClientStream>) {
    ws.close(CloseCode::NORMAL, "").await.unwrap();
    match ws.recv().await {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::NORMAL),
        other => panic!("expected the server's close, got {other:?}"),
    }
    assert!(ws.recv().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_through_one_pool_share_one_tcp_connection_to_serve() {
    let server = Server::start_on_loopback(&["--deflate"]);
    let (relay, accepted) = counting_relay(server.addr).await;
    let mut config = ClientConfig::default();
    config.http2 = Http2::Always;
    let url = format!("ws://{relay}/echo");
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let (mut ws, handshake) = wsduplex::connect_with(&url, &config).await.unwrap();
        assert!(handshake.response.deflate.is_some(), "deflate not agreed");
        echo_text_binary_and_large(&mut ws).await;
        sockets.push(ws);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    for ws in &mut sockets {
        close_cleanly(ws).await;
    }
    drop(sockets);
    server.stop();
}

#[test]
fn bench_echo_over_http2_shares_connections_as_asked() {
    let server = Server::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (relay, accepted) = rt.block_on(counting_relay(server.addr));
    let url = format!("ws://{relay}/echo");
    let args = [
        "bench",
        "echo",
        &url,
        "--http2",
        "--http2-streams",
        "2",
        "--threads",
        "1",
        "-c",
        "4",
        "--duration",
        "300ms",
        "--warmup",
        "100ms",
        "--json",
    ];
    let out = run(&args, b"");
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["messages"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["mismatches"], 0);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "4 sockets, 2 per connection"
    );
    server.stop();
}

/// `tests/interop/node/h2_server.js` running, and its port; `None` without Node (a
/// failure with `WSDUPLEX_REQUIRE_INTEROP=1`).
fn node_h2_server() -> Option<(
    std::process::Child,
    u16,
    std::io::Lines<impl std::io::BufRead>,
)> {
    let mut child = node_script("h2_server.js", "the node:http2 server test")?
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run node");
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut lines = std::io::BufRead::lines(stdout);
    let first = lines.next().expect("a ready line").unwrap();
    let port = first
        .strip_prefix("listening on ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected ready line {first:?}"));
    Some((child, port, lines))
}

#[test]
fn node_http2_server_echoes_for_our_client() {
    let Some((mut child, port, mut lines)) = node_h2_server() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut config = ClientConfig::default();
        config.http2 = Http2::Always;
        let url = format!("ws://127.0.0.1:{port}/echo");
        let (mut ws, handshake) =
            tokio::time::timeout(TIMEOUT, wsduplex::connect_with(&url, &config))
                .await
                .expect("connect in time")
                .unwrap();
        // The script agrees no extension.
        assert!(handshake.response.deflate.is_none());
        tokio::time::timeout(TIMEOUT, async {
            echo_text_binary_and_large(&mut ws).await;
            close_cleanly(&mut ws).await;
        })
        .await
        .expect("echoes and close in time");
    });
    // The script saw our close.
    assert_eq!(lines.next().unwrap().unwrap(), "closed 1000");
    let _ = child.kill();
    let _ = child.wait();
}
