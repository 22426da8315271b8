//! hyper and axum over HTTP/2 (features `axum` and `http2`): `axum::serve` speaks h2c with prior
//! knowledge and enables extended CONNECT; the `axum_echo` example's `WebSocketUpgrade`
//! answers RFC 8441's CONNECT with `200` and echoes on the stream (our socket in client
//! role drives the stream), and bad extended CONNECTs get the statuses our own HTTP/2
//! server gives while the connection's other streams go on.

#[allow(dead_code)]
#[path = "../examples/axum_echo.rs"]
mod example;

use bytes::Bytes;
use h2::client::SendRequest;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use wsduplex::proto::Role;
use wsduplex::{CloseCode, Config, DeflateConfig, Message, ServerConfig, WebSocket};

const TIMEOUT: Duration = Duration::from_secs(10);

async fn start(config: ServerConfig) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = example::app(config).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// An h2c connection (prior knowledge), once the server's settings are in.
async fn connect(addr: SocketAddr) -> SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client.ready().await.unwrap()
}

/// An extended CONNECT to `path` with `protocol` and `headers`: the status, and the
/// stream's two halves.
async fn extended_connect(
    client: &SendRequest<Bytes>,
    addr: SocketAddr,
    path: &str,
    protocol: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, h2::SendStream<Bytes>, h2::RecvStream) {
    let mut request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request.body(()).unwrap();
    if let Some(p) = protocol {
        request.extensions_mut().insert(h2::ext::Protocol::from(p));
    }
    let mut client = client.clone().ready().await.unwrap();
    let (response, send) = client.send_request(request, false).unwrap();
    let response = timeout(TIMEOUT, response).await.unwrap().unwrap();
    (response.status().as_u16(), send, response.into_body())
}

/// The stream as a byte stream for our socket: a pipe, with one task per direction.
fn bridge(mut send: h2::SendStream<Bytes>, mut recv: h2::RecvStream) -> tokio::io::DuplexStream {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (mut from_socket, mut to_socket) = tokio::io::split(theirs);
    tokio::spawn(async move {
        while let Some(Ok(chunk)) = recv.data().await {
            let _ = recv.flow_control().release_capacity(chunk.len());
            if to_socket.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to_socket.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buf = vec![0; 16 * 1024];
        while let Ok(n @ 1..) = from_socket.read(&mut buf).await {
            let mut chunk = Bytes::copy_from_slice(&buf[..n]);
            while !chunk.is_empty() {
                send.reserve_capacity(chunk.len());
                let granted = std::future::poll_fn(|cx| send.poll_capacity(cx)).await;
                let Some(Ok(granted)) = granted else { return };
                let _ = send.send_data(chunk.split_to(granted.min(chunk.len())), false);
            }
        }
        let _ = send.send_data(Bytes::new(), true);
    });
    ours
}

async fn echoes(ws: &mut WebSocket<tokio::io::DuplexStream>, text: &str) {
    ws.send(text).await.unwrap();
    match timeout(TIMEOUT, ws.recv()).await.unwrap() {
        Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), text),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn axum_answers_extended_connect_with_200_and_echoes_on_the_stream() {
    let mut config = ServerConfig::default();
    config.deflate = Some(DeflateConfig::default());
    let addr = start(config).await;
    let client = connect(addr).await;
    let version = [("sec-websocket-version", "13")];
    let (status, send, recv) =
        extended_connect(&client, addr, "/echo", Some("websocket"), &version).await;
    assert_eq!(status, 200);
    // Known once the server's SETTINGS came, which they did before its answer.
    assert!(
        client.is_extended_connect_protocol_enabled(),
        "axum::serve sends SETTINGS_ENABLE_CONNECT_PROTOCOL"
    );
    let mut ws = WebSocket::from_raw(bridge(send, recv), Role::Client, Config::default(), &[]);
    echoes(&mut ws, "hello over h2").await;
    // Beyond HTTP/2's initial 65,535-byte window in both directions.
    echoes(&mut ws, &"x".repeat(300_000)).await;

    // A second WebSocket on the same connection, beside the first.
    let (status, send, recv) =
        extended_connect(&client, addr, "/echo", Some("websocket"), &version).await;
    assert_eq!(status, 200);
    let mut second = WebSocket::from_raw(bridge(send, recv), Role::Client, Config::default(), &[]);
    echoes(&mut second, "second stream").await;
    echoes(&mut ws, "first still here").await;
    ws.close(CloseCode::NORMAL, "bye").await.unwrap();
    echoes(&mut second, "after the first closed").await;
}

#[tokio::test]
async fn deflate_and_the_accept_follow_the_http2_rules() {
    let mut config = ServerConfig::default();
    config.deflate = Some(DeflateConfig::default());
    let addr = start(config).await;
    let client = connect(addr).await;
    let offer = [
        ("sec-websocket-version", "13"),
        ("sec-websocket-extensions", "permessage-deflate"),
    ];
    let mut request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://{addr}/echo"));
    for (name, value) in offer {
        request = request.header(name, value);
    }
    let mut request = request.body(()).unwrap();
    request
        .extensions_mut()
        .insert(h2::ext::Protocol::from("websocket"));
    let mut sender = client.clone().ready().await.unwrap();
    let (response, _send) = sender.send_request(request, false).unwrap();
    let response = timeout(TIMEOUT, response).await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    let agreed = headers
        .get("sec-websocket-extensions")
        .map(|v| v.to_str().unwrap());
    assert!(
        agreed.is_some_and(|e| e.starts_with("permessage-deflate")),
        "{headers:?}"
    );
    // No key was sent, so none is answered; and no HTTP/1.1 connection fields.
    for name in ["sec-websocket-accept", "upgrade", "connection"] {
        assert!(!headers.contains_key(name), "{name} in {headers:?}");
    }
}

#[tokio::test]
async fn bad_extended_connects_get_their_status_and_the_connection_goes_on() {
    let addr = start(ServerConfig::default()).await;
    let client = connect(addr).await;
    let version = [("sec-websocket-version", "13")];
    let (status, send, recv) =
        extended_connect(&client, addr, "/echo", Some("websocket"), &version).await;
    assert_eq!(status, 200);
    let mut ws = WebSocket::from_raw(bridge(send, recv), Role::Client, Config::default(), &[]);

    type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], u16);
    let cases: [Case<'_>; 4] = [
        // Another protocol: 501.
        (Some("webtransport"), &version, 501),
        // Another WebSocket version, or none: 400.
        (Some("websocket"), &[("sec-websocket-version", "8")], 400),
        (Some("websocket"), &[], 400),
        // RFC 8441 does not use Sec-WebSocket-Key: one that is not a key is ignored.
        (
            Some("websocket"),
            &[
                ("sec-websocket-version", "13"),
                ("sec-websocket-key", "nonsense"),
            ],
            200,
        ),
    ];
    for (protocol, headers, expected) in cases {
        let (status, _, _) = extended_connect(&client, addr, "/echo", protocol, headers).await;
        assert_eq!(status, expected, "{protocol:?} {headers:?}");
        echoes(&mut ws, "the first stream still echoes").await;
    }
}

/// hyper's own HTTP/2 server, `enable_connect_protocol` on, `wsduplex::hyper::upgrade` in
/// the service: the same `200`, the same echo.
#[tokio::test]
async fn hypers_http2_server_takes_the_same_upgrade_call() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let service = hyper::service::service_fn(|mut request| async move {
            let config = ServerConfig::default();
            let answer = match wsduplex::hyper::upgrade(&mut request, &config, None).await {
                Ok((response, upgrading)) => {
                    tokio::spawn(async move {
                        let mut ws = upgrading.await.unwrap();
                        while let Some(Ok(msg)) = ws.recv().await {
                            if msg.is_data() && ws.send(msg).await.is_err() {
                                break;
                            }
                        }
                    });
                    response
                }
                Err(refused) => refused,
            };
            Ok::<_, std::convert::Infallible>(answer)
        });
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .enable_connect_protocol()
            .serve_connection(TokioIo::new(tcp), service)
            .await;
    });
    let client = connect(addr).await;
    let version = [("sec-websocket-version", "13")];
    let (status, send, recv) =
        extended_connect(&client, addr, "/anywhere", Some("websocket"), &version).await;
    assert_eq!(status, 200);
    let mut ws = WebSocket::from_raw(bridge(send, recv), Role::Client, Config::default(), &[]);
    echoes(&mut ws, "hello from hyper's h2").await;
    let (status, _, _) = extended_connect(&client, addr, "/anywhere", Some("websocket"), &[]).await;
    assert_eq!(status, 400, "no Sec-WebSocket-Version");
    echoes(&mut ws, "still echoing").await;
}
