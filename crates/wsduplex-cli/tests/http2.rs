//! `wsduplex serve` over HTTP/2 with prior knowledge (`h2c`), driven by the `h2` crate's
//! client: WebSockets on extended CONNECT streams (RFC 8441) beside plain requests on one
//! connection, bad input on one stream while another keeps echoing, limits, shutdown, and
//! Node's `node:http2` over h2c and TLS. What no client library sends is written by hand in
//! `http2_frames.rs`.

mod common;
mod h2c;

use bytes::{Bytes, BytesMut};
use common::*;
use h2::client::SendRequest;
use h2::{Reason, RecvStream, SendStream};
use h2c::{connect, get, read_to_end};
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tokio::time::timeout;

/// An extended CONNECT for `path` with `protocol` and extra headers; the response and the
/// request's send half.
async fn extended_connect(
    client: &mut SendRequest<Bytes>,
    addr: SocketAddr,
    path: &str,
    protocol: Option<&str>,
    headers: &[(&str, &str)],
) -> (http::Response<RecvStream>, SendStream<Bytes>) {
    let uri = match protocol {
        Some(_) => format!("http://{addr}{path}"),
        // A plain CONNECT names only an authority.
        None => addr.to_string(),
    };
    let mut request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request.body(()).unwrap();
    if let Some(p) = protocol {
        request.extensions_mut().insert(h2::ext::Protocol::from(p));
    }
    let mut client = client.clone().ready().await.expect("ready");
    let (response, send) = client.send_request(request, false).expect("send request");
    let response = timeout(TIMEOUT, response).await.unwrap().expect("response");
    (response, send)
}

/// A WebSocket on a stream: frames out (masked), frames in.
struct Ws {
    send: SendStream<Bytes>,
    recv: RecvStream,
    buf: BytesMut,
}

impl Ws {
    async fn open(client: &mut SendRequest<Bytes>, addr: SocketAddr, path: &str) -> Self {
        let version = [("sec-websocket-version", "13")];
        let (response, send) =
            extended_connect(client, addr, path, Some("websocket"), &version).await;
        assert_eq!(response.status(), 200, "{response:?}");
        Self {
            send,
            recv: response.into_body(),
            buf: BytesMut::new(),
        }
    }

    fn send_text(&mut self, text: &str) {
        self.send
            .send_data(masked(0x1, text.as_bytes()), false)
            .unwrap();
    }

    /// The next frame's opcode and payload.
    async fn frame(&mut self) -> (u8, Vec<u8>) {
        loop {
            if let Some((opcode, payload, n)) = parse_frame(&self.buf) {
                let _ = self.buf.split_to(n);
                return (opcode, payload);
            }
            let chunk = timeout(TIMEOUT, self.recv.data())
                .await
                .expect("a frame in time")
                .expect("the stream is open")
                .expect("data");
            let _ = self.recv.flow_control().release_capacity(chunk.len());
            self.buf.extend_from_slice(&chunk);
        }
    }

    async fn echoes(&mut self, text: &str) {
        self.send_text(text);
        assert_eq!(self.frame().await, (0x1, text.as_bytes().to_vec()));
    }
}

/// A masked client frame, FIN set.
fn masked(opcode: u8, payload: &[u8]) -> Bytes {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    frame.into()
}

/// An unmasked server frame at the start of `buf`: opcode, payload, length in bytes.
fn parse_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    assert_eq!(buf[1] & 0x80, 0, "server frames are not masked");
    let (len, start) = match buf[1] & 0x7f {
        126 => (
            usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().unwrap()) as usize,
            10,
        ),
        n => (usize::from(n), 2),
    };
    let payload = buf.get(start..start + len)?.to_vec();
    Some((buf[0] & 0x0f, payload, start + len))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_on_two_streams_beside_plain_requests() {
    let server = Server::start();
    let addr = server.addr;
    let mut client = connect(addr).await;
    let (status, body) = get(&mut client, addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    // RFC 8441 §3: the server's SETTINGS came before its first response.
    assert!(client.is_extended_connect_protocol_enabled());
    let mut a = Ws::open(&mut client, addr, "/echo").await;
    let mut b = Ws::open(&mut client, addr, "/echo").await;
    a.send_text("one on a");
    b.send_text("one on b");
    assert_eq!(b.frame().await, (0x1, b"one on b".to_vec()));
    assert_eq!(a.frame().await, (0x1, b"one on a".to_vec()));
    for i in 0..20 {
        a.echoes(&format!("a {i}")).await;
        b.echoes(&format!("b {i}")).await;
    }
    // A message larger than every window on the way, both ways, beside a small one.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    a.send.send_data(masked(0x2, &big), false).unwrap();
    b.echoes("beside a big one").await;
    assert_eq!(a.frame().await, (0x2, big));
    // The chat page and the metrics answer on the same connection, the WebSockets open.
    let (status, page) = get(&mut client, addr, "/").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("<html") || page.contains("<!doctype"),
        "{page:.80}"
    );
    let (status, metrics) = get(&mut client, addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("handshakes"), "{metrics:.200}");
    let (status, _) = get(&mut client, addr, "/nowhere").await;
    assert_eq!(status, 404);
    // A close handshake on a stream.
    a.send.send_data(masked(0x8, &[0x03, 0xe8]), false).unwrap();
    assert_eq!(a.frame().await, (0x8, vec![0x03, 0xe8]));
    b.echoes("b still here").await;
    drop((a, b, client));
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_rooms_over_http2_streams() {
    let server = Server::start();
    let addr = server.addr;
    let mut client = connect(addr).await;
    let mut ws = Ws::open(&mut client, addr, "/chat/h2room").await;
    // The hub greets a member first (its id, the room's history).
    let (opcode, first) = ws.frame().await;
    assert_eq!(opcode, 0x1, "{}", String::from_utf8_lossy(&first));
    drop((ws, client));
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_extended_connects_get_a_status_and_the_other_stream_keeps_echoing() {
    let server = Server::start();
    let addr = server.addr;
    let mut client = connect(addr).await;
    let mut echo = Ws::open(&mut client, addr, "/echo").await;
    echo.echoes("before").await;

    let version = [("sec-websocket-version", "13")];
    // CONNECT without :protocol: a tunnel, which this server does not open.
    let (response, _) = extended_connect(&mut client, addr, "/echo", None, &[]).await;
    assert_eq!(response.status(), 405);
    echo.echoes("after a plain connect").await;

    // RFC 8441 §4: a protocol this server does not speak.
    let (response, _) =
        extended_connect(&mut client, addr, "/echo", Some("not-websocket"), &version).await;
    assert_eq!(response.status(), 501);
    let body = read_to_end(response.into_body()).await;
    assert_eq!(body, b"unsupported :protocol \"not-websocket\"\n");
    echo.echoes("after an unknown protocol").await;

    // A version other than 13, or none: 400 naming the version we speak.
    for headers in [&[("sec-websocket-version", "8")][..], &[]] {
        let (response, _) =
            extended_connect(&mut client, addr, "/echo", Some("websocket"), headers).await;
        assert_eq!(response.status(), 400, "{headers:?}");
        assert_eq!(response.headers()["sec-websocket-version"], "13");
        echo.echoes("after a bad version").await;
    }

    // Sec-WebSocket-Key is HTTP/1.1's (RFC 8441 §5): not needed, and a valid one (from a
    // proxy that translated an HTTP/1.1 upgrade) is answered as HTTP/1.1 would answer it.
    let (response, _) =
        extended_connect(&mut client, addr, "/echo", Some("websocket"), &version).await;
    assert_eq!(response.status(), 200);
    assert!(!response.headers().contains_key("sec-websocket-accept"));
    // Ends the stream (the server's echo task with it) before the next shadows it.
    drop(response);
    let with_key = [("sec-websocket-version", "13"), ("sec-websocket-key", KEY)];
    let (response, _) =
        extended_connect(&mut client, addr, "/echo", Some("websocket"), &with_key).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["sec-websocket-accept"],
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    assert!(!response.headers().contains_key("upgrade"));
    drop(response);
    echo.echoes("after a key").await;

    // A WebSocket path that does not exist: 404 on the stream.
    let (response, _) =
        extended_connect(&mut client, addr, "/nowhere", Some("websocket"), &version).await;
    assert_eq!(response.status(), 404);
    echo.echoes("after a 404").await;

    // A stream reset in the middle of a message: that stream ends, the others go on.
    let mut doomed = Ws::open(&mut client, addr, "/echo").await;
    doomed.echoes("doomed").await;
    let mut partial = masked(0x1, &[b'x'; 100]).to_vec();
    partial.truncate(30);
    doomed.send.send_data(partial.into(), false).unwrap();
    doomed.send.send_reset(Reason::CANCEL);
    echo.echoes("after a reset").await;
    let mut fresh = Ws::open(&mut client, addr, "/echo").await;
    fresh.echoes("a new stream").await;
    echo.echoes("still").await;
    drop((echo, doomed, fresh, client));
    server.stop();
}

/// `tests/interop/node/h2_client.js` against `base` (`http://` or `https://`); `None`
/// without Node (a failure with `WSDUPLEX_REQUIRE_INTEROP=1`).
fn node_h2_client(base: &str) -> Option<Output> {
    let mut node = node_script("h2_client.js", "the node:http2 test")?;
    let out = node.arg(base).output().expect("run node");
    Some(Output {
        status: out.status,
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

#[test]
fn node_http2_client_over_h2c() {
    let server = Server::start();
    if let Some(out) = node_h2_client(&format!("http://{}", server.addr)) {
        assert!(out.status.success(), "{out:?}");
        assert_eq!(out.stdout_str(), "ok\n");
    }
    server.stop();
}

#[test]
fn node_http2_client_over_tls_with_alpn() {
    let mut child = std::process::Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--tls-self-signed",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn wsduplex serve");
    let mut line = String::new();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .expect("ready line")
        .to_string();
    assert!(base.starts_with("https://"), "{line}");
    let out = node_h2_client(&base);
    let _ = child.kill();
    let _ = child.wait();
    if let Some(out) = out {
        assert!(out.status.success(), "{out:?}");
        assert_eq!(out.stdout_str(), "ok\n");
    }
}

#[tokio::test]
async fn http1_still_works_beside_h2c() {
    let server = Server::start();
    let mut tcp = connect_std(server.addr);
    std::io::Write::write_all(&mut tcp, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (head, _) = read_head(&mut tcp);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    server.stop();
}

fn connect_std(addr: SocketAddr) -> std::net::TcpStream {
    common::connect(addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_nobody_reads_does_not_stall_the_others() {
    let server = Server::start();
    let addr = server.addr;
    let tcp = TcpStream::connect(addr).await.expect("connect");
    // The client's own connection window is large: what is tested is the server's side,
    // which must keep serving `live` while `stalled`'s echoes are not read.
    let (client, conn) = h2::client::Builder::new()
        .initial_window_size(65_535)
        .initial_connection_window_size(16 << 20)
        .handshake::<_, Bytes>(tcp)
        .await
        .expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.expect("ready");
    let mut stalled = Ws::open(&mut client, addr, "/echo").await;
    let mut live = Ws::open(&mut client, addr, "/echo").await;
    // About 1 MiB that the server echoes into a stream window of 64 KiB nobody reopens:
    // the server stops reading `stalled` or closes it as a slow reader, and its small DATA
    // frames must not use up the connection (its window, h2's budget for small frames).
    let frame = masked(0x2, &[7; 125]);
    // The server may close it as a slow reader (1008) on the way: the stream ends then.
    for _ in 0..8_000 {
        if stalled.send.send_data(frame.clone(), false).is_err() {
            break;
        }
    }
    for i in 0..50 {
        live.echoes(&format!("live {i}")).await;
    }
    let (status, _) = get(&mut client, addr, "/healthz").await;
    assert_eq!(status, 200);
    // The stalled stream was served as far as its windows allowed.
    assert_eq!(stalled.frame().await, (0x2, vec![7; 125]));
    drop((stalled, live, client));
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_header_list_gets_431_and_the_connection_goes_on() {
    let server = Server::start();
    let addr = server.addr;
    let mut client = connect(addr).await;
    let mut echo = Ws::open(&mut client, addr, "/echo").await;
    let request = http::Request::get(format!("http://{addr}/healthz"))
        .header("x-padding", "x".repeat(20_000))
        .body(())
        .unwrap();
    let mut ready = client.clone().ready().await.expect("ready");
    let (response, _) = ready.send_request(request, true).expect("send request");
    let response = timeout(TIMEOUT, response).await.unwrap().expect("response");
    assert_eq!(response.status(), 431);
    echo.echoes("after 431").await;
    let (status, _) = get(&mut client, addr, "/healthz").await;
    assert_eq!(status, 200);
    drop((echo, client));
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_websocket_stream_counts_against_the_connection_limits() {
    // The HTTP/2 connection is one connection, its first WebSocket the second.
    let server = Server::start_on_loopback(&["--max-connections-per-client", "2"]);
    let addr = server.addr;
    let mut client = connect(addr).await;
    let mut first = Ws::open(&mut client, addr, "/echo").await;
    let version = [("sec-websocket-version", "13")];
    let (response, _) =
        extended_connect(&mut client, addr, "/echo", Some("websocket"), &version).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "5");
    // Plain requests are not WebSockets: not counted.
    let (status, _) = get(&mut client, addr, "/healthz").await;
    assert_eq!(status, 200);
    first.echoes("the first still echoes").await;
    drop((first, client));
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_http2_speaks_http1_only() {
    let server = Server::start_on_loopback(&["--no-http2"]);
    let addr = server.addr;
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let conn = tokio::spawn(conn);
    if let Ok(mut client) = client.ready().await {
        let request = http::Request::get(format!("http://{addr}/healthz"))
            .body(())
            .unwrap();
        if let Ok((response, _)) = client.send_request(request, true) {
            let answered = timeout(TIMEOUT, response).await.unwrap();
            assert!(answered.is_err(), "{answered:?}");
        }
    }
    // The preface was read as a malformed HTTP/1.1 request: 400, then the end.
    assert!(timeout(TIMEOUT, conn).await.unwrap().unwrap().is_err());
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_http2_websockets_with_1001() {
    let server = Server::start();
    let addr = server.addr;
    let mut client = connect(addr).await;
    let mut ws = Ws::open(&mut client, addr, "/echo").await;
    ws.echoes("before the signal").await;
    wait_until_caught(server.pid(), 15);
    server.signal("TERM");
    let (opcode, payload) = ws.frame().await;
    assert_eq!((opcode, &payload[..2]), (0x8, &[0x03, 0xe9][..]), "1001");
    ws.send.send_data(masked(0x8, &[0x03, 0xe9]), true).unwrap();
    drop((ws, client));
    let exit = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap();
    assert!(exit.status.success(), "{exit:?}");
}

/// A request with a body; its status and body.
async fn post(
    client: &mut SendRequest<Bytes>,
    addr: SocketAddr,
    path: &str,
    body: &str,
) -> (u16, String) {
    let request = http::Request::post(format!("http://{addr}{path}"))
        .header("content-length", body.len())
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    let mut client = client.clone().ready().await.expect("ready");
    let (response, mut send) = client
        .send_request(request, body.is_empty())
        .expect("send request");
    if !body.is_empty() {
        send.send_data(Bytes::copy_from_slice(body.as_bytes()), true)
            .unwrap();
    }
    let response = timeout(TIMEOUT, response).await.unwrap().expect("response");
    let status = response.status().as_u16();
    let body = read_to_end(response.into_body()).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polling_and_a_websocket_member_share_one_connection() {
    let server = Server::start();
    let addr = server.addr;
    let mut client = connect(addr).await;
    let mut member = Ws::open(&mut client, addr, "/chat/h2poll?name=ws").await;
    let (status, opened) = post(&mut client, addr, "/poll/h2poll?name=poller", "").await;
    assert_eq!(status, 200, "{opened}");
    let session = opened
        .split(r#""session":""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a session id")
        .to_string();
    let said = r#"{"type":"message","text":"from a poll over h2"}"#;
    let (status, body) = post(&mut client, addr, &format!("/poll/session/{session}"), said).await;
    assert_eq!(status, 202, "{body}");
    // HTTP/2 needs no Content-Length: the body ends with the stream.
    let path = format!("http://{addr}/poll/session/{session}");
    let request = http::Request::post(&path).body(()).unwrap();
    let mut ready = client.clone().ready().await.expect("ready");
    let (response, mut send) = ready.send_request(request, false).expect("send request");
    let unsized_said = r#"{"type":"message","text":"no content-length"}"#;
    send.send_data(Bytes::from_static(unsized_said.as_bytes()), true)
        .unwrap();
    let response = timeout(TIMEOUT, response).await.unwrap().expect("response");
    assert_eq!(response.status(), 202);
    // Unannounced and too large: 413 on its stream.
    let request = http::Request::post(&path).body(()).unwrap();
    let mut ready = client.clone().ready().await.expect("ready");
    let (response, mut send) = ready.send_request(request, false).expect("send request");
    send.send_data(Bytes::from(vec![b' '; 1_100_000]), true)
        .unwrap();
    let response = timeout(TIMEOUT, response).await.unwrap().expect("response");
    assert_eq!(response.status(), 413);
    // The member hears it on its stream.
    loop {
        let (opcode, payload) = member.frame().await;
        assert_eq!(opcode, 0x1);
        if String::from_utf8_lossy(&payload).contains("no content-length") {
            break;
        }
    }
    drop((member, client));
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_a_busy_one_is_not() {
    let server = Server::start_on_loopback(&["--handshake-timeout", "300ms"]);
    let addr = server.addr;
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2");
    let idle = tokio::spawn(conn);
    let mut busy = connect(addr).await;
    let mut ws = Ws::open(&mut busy, addr, "/echo").await;
    // GOAWAY, then the end: the idle connection's task finishes on its own.
    let ended = timeout(TIMEOUT, idle)
        .await
        .expect("closed in time")
        .unwrap();
    assert!(ended.is_ok(), "a graceful end: {ended:?}");
    drop(client);
    // The connection with an open WebSocket stays, well past the idle time.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    ws.echoes("still open").await;
    drop((ws, busy));
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permessage_deflate_is_negotiated_over_http2_as_over_http1() {
    let server = Server::start_on_loopback(&["--deflate"]);
    let addr = server.addr;
    let mut client = connect(addr).await;
    let offer = [
        ("sec-websocket-version", "13"),
        (
            "sec-websocket-extensions",
            "permessage-deflate; client_max_window_bits",
        ),
    ];
    let (response, send) =
        extended_connect(&mut client, addr, "/echo", Some("websocket"), &offer).await;
    assert_eq!(response.status(), 200);
    let agreed = response.headers()["sec-websocket-extensions"]
        .to_str()
        .unwrap();
    assert!(agreed.starts_with("permessage-deflate"), "{agreed}");
    drop((response, send, client));
    server.stop();
}
