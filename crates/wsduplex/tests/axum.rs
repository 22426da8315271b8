//! axum 0.8 (feature `axum`): a real axum server on 127.0.0.1:0 (the `axum_echo` example's
//! app, and routes of the extractor's settings), our client against it: echo,
//! permessage-deflate agreed, a subprotocol chosen, and refusals (Origin, authentication)
//! answered with the front door's status, headers and reason.

#[allow(dead_code)]
#[path = "../examples/axum_echo.rs"]
mod example;

use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wsduplex::auth::{AuthHook, TokenAuth};
use wsduplex::axum::WebSocketUpgrade;
use wsduplex::proto::handshake::client::ResponseError;
use wsduplex::{ClientConfig, DeflateConfig, Error, Message, ServerConfig};

async fn start(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn status(e: &Error) -> Option<u16> {
    match e {
        Error::Response(ResponseError::Status { status, .. }) => Some(*status),
        _ => None,
    }
}

async fn echo_once(ws: &mut wsduplex::WebSocket<wsduplex::ClientStream>, text: &str) {
    ws.send(text).await.unwrap();
    match ws.recv().await {
        Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), text),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_example_echoes_with_deflate() {
    let mut config = ServerConfig::default();
    config.deflate = Some(DeflateConfig::default());
    let addr = start(example::app(config)).await;
    let (mut ws, handshake) = wsduplex::connect(format!("ws://{addr}/echo"))
        .await
        .unwrap();
    let extensions = handshake.response.header("sec-websocket-extensions");
    assert!(
        extensions.is_some_and(|e| e.starts_with("permessage-deflate")),
        "{handshake:?}"
    );
    assert!(handshake.response.deflate.is_some());
    echo_once(&mut ws, "hello").await;
    echo_once(&mut ws, &"compressible ".repeat(10_000)).await;
    ws.close(wsduplex::CloseCode::NORMAL, "bye").await.unwrap();
    while let Some(item) = ws.recv().await {
        item.unwrap();
    }
    // Without deflate in the config, none is agreed.
    let addr = start(example::app(ServerConfig::default())).await;
    let (mut ws, handshake) = wsduplex::connect(format!("ws://{addr}/echo"))
        .await
        .unwrap();
    assert!(handshake.response.deflate.is_none(), "{handshake:?}");
    echo_once(&mut ws, "plain").await;
}

async fn chat(ws: WebSocketUpgrade) -> Response {
    ws.protocols(["chat.v2", "chat.v1"])
        .deflate(DeflateConfig::default())
        .max_message_size(1024)
        .on_upgrade(|mut ws| async move {
            let reply = format!("protocol {:?}", ws.subprotocol());
            if ws.send(reply).await.is_ok() {
                // Until the end: a message over the limit fails it with 1009.
                while ws.recv().await.is_some() {}
            }
        })
        .await
}

#[tokio::test]
async fn the_extractors_settings_choose_the_subprotocol_and_limits() {
    let addr = start(Router::new().route("/chat", get(chat))).await;
    let mut config = ClientConfig::default();
    config.subprotocols = vec!["chat.v1".into(), "chat.v2".into()];
    let url = format!("ws://{addr}/chat");
    let (mut ws, handshake) = wsduplex::connect_with(url.as_str(), &config).await.unwrap();
    assert_eq!(ws.subprotocol(), Some("chat.v2"), "the server's preference");
    assert!(handshake.response.deflate.is_some());
    match ws.recv().await {
        Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), r#"protocol Some("chat.v2")"#),
        other => panic!("{other:?}"),
    }
    // Over max_message_size: closed with 1009.
    ws.send("x".repeat(2000)).await.unwrap();
    match ws.recv().await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1009),
        other => panic!("{other:?}"),
    }
    // A client offering none gets none.
    let (ws, _) = wsduplex::connect(url.as_str()).await.unwrap();
    assert_eq!(ws.subprotocol(), None);
}

/// Sends `head` on a fresh connection, returns the answer's head and body.
async fn raw(addr: SocketAddr, head: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0; 4096];
    loop {
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
        let n = tcp.read(&mut buf).await.unwrap();
        if n == 0 {
            return text;
        }
        answer.extend_from_slice(&buf[..n]);
    }
}

fn upgrade_head(extra: &str) -> String {
    format!(
        "GET /echo HTTP/1.1\r\nHost: chat.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn refusals_carry_the_front_doors_status_headers_and_reason() {
    let mut config = ServerConfig::default();
    config.allowed_origins = vec!["http://chat.example".into()];
    config.auth = Some(AuthHook::new(TokenAuth::new(["secret"])));
    let addr = start(example::app(config)).await;

    let answer = raw(addr, &upgrade_head("Origin: http://evil.example\r\n")).await;
    assert!(answer.starts_with("HTTP/1.1 403 "), "{answer}");
    assert!(answer.ends_with("\r\n\r\norigin not allowed\n"), "{answer}");

    let answer = raw(addr, &upgrade_head("Origin: http://chat.example\r\n")).await;
    assert!(answer.starts_with("HTTP/1.1 401 "), "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(
        lower.contains("www-authenticate: bearer realm=\"wsduplex\""),
        "{answer}"
    );

    let answer = raw(addr, "GET /echo HTTP/1.1\r\nHost: chat.example\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 4"), "not an upgrade: {answer}");

    // Through our client: the status, then a token that passes.
    let url = format!("ws://{addr}/echo");
    let refused = wsduplex::connect(url.as_str()).await.unwrap_err();
    assert_eq!(status(&refused), Some(401), "{refused:?}");
    let request = http::Request::get(url.as_str())
        .header("Authorization", "Bearer secret")
        .header("Origin", "http://chat.example")
        .body(())
        .unwrap();
    let (mut ws, _) = wsduplex::connect(request).await.unwrap();
    echo_once(&mut ws, "let in").await;
    let request = http::Request::get(url.as_str())
        .header("Authorization", "Bearer secret")
        .header("Origin", "http://evil.example")
        .body(())
        .unwrap();
    let refused = wsduplex::connect(request).await.unwrap_err();
    assert_eq!(status(&refused), Some(403), "{refused:?}");
}

#[tokio::test]
async fn a_config_in_state_replaces_the_extension() {
    async fn handler(
        axum::extract::State(config): axum::extract::State<ServerConfig>,
        ws: WebSocketUpgrade,
    ) -> Response {
        ws.config(config).on_upgrade(|_| async {}).await
    }
    let mut config = ServerConfig::default();
    config.allowed_origins = vec!["http://chat.example".into()];
    let app = Router::new()
        .route("/echo", get(handler))
        .with_state(config)
        .layer(Extension(ServerConfig::default()));
    let addr = start(app).await;
    let answer = raw(addr, &upgrade_head("Origin: http://evil.example\r\n")).await;
    assert!(answer.starts_with("HTTP/1.1 403 "), "{answer}");
}

#[tokio::test]
async fn the_metrics_count_as_on_our_own_path() {
    // The test's runtime has one thread: the server and the client count on it.
    let metrics = wsduplex::metrics::Metrics::default();
    metrics.attach_current_thread();
    let mut config = ServerConfig::default();
    config.allowed_origins = vec!["http://chat.example".into()];
    let addr = start(example::app(config)).await;
    let (mut ws, _) = wsduplex::connect(format!("ws://{addr}/echo"))
        .await
        .unwrap();
    echo_once(&mut ws, "counted").await;
    let answer = raw(addr, &upgrade_head("Origin: http://evil.example\r\n")).await;
    assert!(answer.starts_with("HTTP/1.1 403 "), "{answer}");
    let now = metrics.snapshot();
    let handshakes = (
        now.handshakes_accepted,
        now.handshakes_refused,
        now.refused_origin,
    );
    assert_eq!(handshakes, (1, 1, 1));
    assert!(now.messages_in >= 1 && now.messages_out >= 1, "{now:?}");
}

type Held = wsduplex::WebSocket<wsduplex::hyper::Upgraded>;

async fn keep(
    ws: WebSocketUpgrade,
    Extension(tx): Extension<tokio::sync::mpsc::UnboundedSender<Held>>,
) -> Response {
    ws.on_upgrade(move |ws| async move {
        let _ = tx.send(ws);
    })
    .await
}

/// The extractor clones its settings per request (from the `Extension`, or the default
/// without one): the connections still hold one copy of the core's settings.
#[tokio::test]
async fn upgraded_connections_share_the_core_settings() {
    for with_extension in [true, false] {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Held>();
        let mut app = Router::new().route("/keep", get(keep)).layer(Extension(tx));
        if with_extension {
            app = app.layer(Extension(ServerConfig::default()));
        }
        let addr = start(app).await;
        let first = wsduplex::connect(format!("ws://{addr}/keep"))
            .await
            .unwrap();
        let second = wsduplex::connect(format!("ws://{addr}/keep"))
            .await
            .unwrap();
        let (a, b) = (rx.recv().await.unwrap(), rx.recv().await.unwrap());
        assert!(
            a.shares_config_with(&b),
            "with the extension: {with_extension}"
        );
        drop((first, second));
    }
}
