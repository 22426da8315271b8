//! permessage-deflate through the tokio layer: negotiation in `accept`/`client_handshake`,
//! compressed traffic both ways over an in-memory duplex stream, and the fallbacks.

mod common;

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{duplex, AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use wsduplex::client::{client_handshake, Handshake, Target};
use wsduplex::server::{read_request, ServerConfig};
use wsduplex::{ClientConfig, CloseCode, DeflateConfig, Message, WebSocket};

/// A stream that counts the bytes written through it.
struct Counted(DuplexStream, Arc<AtomicUsize>);

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.0).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.1.fetch_add(n, Ordering::Relaxed);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

type Ws = WebSocket<Counted>;

async fn pair(
    server_cfg: ServerConfig,
    client_cfg: ClientConfig,
) -> (Ws, Ws, Handshake, Arc<AtomicUsize>) {
    let (a, b) = duplex(64 * 1024);
    let sent = Arc::new(AtomicUsize::new(0));
    let client_io = Counted(a, sent.clone());
    let server_io = Counted(b, Arc::new(AtomicUsize::new(0)));
    let (client, server, hs) =
        common::handshake(client_io, server_io, server_cfg, client_cfg).await;
    (client, server, hs, sent)
}

fn server_with_deflate(policy: DeflateConfig) -> ServerConfig {
    let mut cfg = ServerConfig::default();
    cfg.deflate = Some(policy);
    cfg
}

async fn echo_roundtrip(client: &mut Ws, server: &mut Ws, msgs: &[Message]) {
    for m in msgs {
        client.send(m.clone()).await.unwrap();
        let got = server.recv().await.unwrap().unwrap();
        assert_eq!(&got, m);
        server.send(got).await.unwrap();
        assert_eq!(&client.recv().await.unwrap().unwrap(), m);
    }
}

#[tokio::test]
async fn deflate_is_agreed_and_messages_are_compressed_both_ways() {
    let mut policy = DeflateConfig::default();
    policy.server_max_window_bits = 11;
    let (mut client, mut server, hs, sent) =
        pair(server_with_deflate(policy), ClientConfig::default()).await;
    let agreed = hs.response.deflate.expect("the server accepted the offer");
    assert_eq!(agreed.server_max_window_bits, 11);
    assert!(hs
        .response_head
        .contains("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=11"));
    let before = sent.load(Ordering::Relaxed);
    let text = "a compressible line of text, ".repeat(40_000);
    let msgs = [
        Message::text(text.clone()),
        Message::text(text.clone()),
        Message::binary(vec![7u8; 300_000]),
        Message::text("short"),
        Message::text(""),
        Message::binary(
            (0..100_000u32)
                .map(|i| (i * 7919 % 256) as u8)
                .collect::<Vec<_>>(),
        ),
    ];
    echo_roundtrip(&mut client, &mut server, &msgs).await;
    let wire = sent.load(Ordering::Relaxed) - before;
    let raw: usize = msgs.iter().map(|m| m.as_payload().len()).sum();
    assert!(
        wire < raw / 4,
        "{wire} bytes on the wire for {raw} bytes of messages"
    );
    client.close(CloseCode::NORMAL, "").await.unwrap();
    assert!(matches!(server.recv().await, Some(Ok(Message::Close(_)))));
}

#[tokio::test]
async fn without_context_takeover_and_small_windows_on_both_sides() {
    let mut policy = DeflateConfig::default();
    policy.server_no_context_takeover = true;
    policy.client_no_context_takeover = true;
    policy.server_max_window_bits = 9;
    policy.client_max_window_bits = 9;
    let mut client_cfg = ClientConfig::default();
    let mut offer = DeflateConfig::default();
    offer.server_max_window_bits = 10;
    client_cfg.deflate = Some(offer);
    let (mut client, mut server, hs, _) = pair(server_with_deflate(policy), client_cfg).await;
    let agreed = hs.response.deflate.unwrap();
    assert!(agreed.server_no_context_takeover && agreed.client_no_context_takeover);
    assert_eq!(
        (agreed.server_max_window_bits, agreed.client_max_window_bits),
        (9, 9)
    );
    let msgs: Vec<Message> = (0..5)
        .map(|i| Message::text(format!("message {i} ").repeat(1000)))
        .collect();
    echo_roundtrip(&mut client, &mut server, &msgs).await;
}

#[tokio::test]
async fn either_side_can_leave_it_off() {
    // The server does not accept it by default.
    let (mut client, mut server, hs, _) =
        pair(ServerConfig::default(), ClientConfig::default()).await;
    assert!(hs
        .request
        .contains("Sec-WebSocket-Extensions: permessage-deflate"));
    assert_eq!(hs.response.deflate, None);
    echo_roundtrip(&mut client, &mut server, &[Message::text("x".repeat(1000))]).await;
    // A client that does not offer it.
    let mut client_cfg = ClientConfig::default();
    client_cfg.deflate = None;
    let (mut client, mut server, hs, _) =
        pair(server_with_deflate(DeflateConfig::default()), client_cfg).await;
    assert!(!hs.request.contains("Extensions"));
    assert_eq!(hs.response.deflate, None);
    echo_roundtrip(&mut client, &mut server, &[Message::text("x".repeat(1000))]).await;
}

/// A server's connections without permessage-deflate hold one copy of the core's settings
/// (issue 18 D); one with it holds its own, as the agreed parameters are part of them.
#[tokio::test]
async fn connections_without_deflate_share_the_servers_settings() {
    let cfg = server_with_deflate(DeflateConfig::default());
    let (mut client_a, mut a, _, _) = pair(cfg.clone(), plain_client()).await;
    let (_client_b, b, _, _) = pair(cfg.clone(), plain_client()).await;
    let (mut client_c, mut c, hs, _) = pair(cfg.clone(), ClientConfig::default()).await;
    let (_client_d, d, _, _) = pair(cfg, ClientConfig::default()).await;
    assert!(hs.response.deflate.is_some());
    assert!(a.shares_config_with(&b));
    assert!(!a.shares_config_with(&c));
    assert!(!c.shares_config_with(&d));
    let text = Message::text("a compressible line of text, ".repeat(100));
    echo_roundtrip(&mut client_a, &mut a, std::slice::from_ref(&text)).await;
    echo_roundtrip(&mut client_c, &mut c, &[text]).await;

    // `accept` without settings: one default server.
    let ((x, x_client), (y, y_client)) = (duplex(4096), duplex(4096));
    let (target, client) = (Target::parse("ws://localhost/").unwrap(), plain_client());
    let (x, y, x_client, y_client) = tokio::join!(
        wsduplex::server::accept(x),
        wsduplex::server::accept(y),
        client_handshake(x_client, &target, &client),
        client_handshake(y_client, &target, &client),
    );
    let (_, _) = (x_client.unwrap(), y_client.unwrap());
    assert!(x.unwrap().shares_config_with(&y.unwrap()));
}

fn plain_client() -> ClientConfig {
    let mut cfg = ClientConfig::default();
    cfg.deflate = None;
    cfg
}

/// Settings of their own (an agreement adjusted before the `101`, a clone of the config
/// changed) are shared only among the connections that have the same, and hold. The
/// adjusted ones come second, after the server's shared settings were first used.
#[tokio::test]
async fn adjusted_settings_are_shared_only_among_equals_and_hold() {
    let cfg = ServerConfig::default();
    let (_client, first, _, _) = pair(cfg.clone(), plain_client()).await;
    let client_cfg = plain_client();
    let mut smaller = cfg.clone();
    smaller.socket.protocol.max_message_size = 20;
    let adjusted = |agreed: &mut wsduplex::server::Negotiated| {
        agreed.socket.protocol.max_message_size = 10;
    };
    let target = Target::parse("ws://localhost/").unwrap();
    let accept = |server_cfg: &ServerConfig, adjust: Option<fn(&mut _)>| {
        let (a, b) = duplex(4096);
        let server_cfg = server_cfg.clone();
        let accept = async move {
            let incoming = read_request(b, &server_cfg).await.unwrap();
            let mut agreed = server_cfg.negotiate(incoming.request());
            if let Some(adjust) = adjust {
                adjust(&mut agreed);
            }
            incoming.accept_negotiated(agreed).await.unwrap()
        };
        let target = &target;
        let client_cfg = &client_cfg;
        async move {
            let (server, client) = tokio::join!(accept, client_handshake(a, target, client_cfg));
            (server, client.unwrap().0)
        }
    };
    let mut kinds = Vec::new();
    for (server_cfg, adjust, max) in [
        (&cfg, Some(adjusted as fn(&mut _)), 10),
        (&smaller, None, 20),
    ] {
        let (mut server, mut client) = accept(server_cfg, adjust).await;
        let (twin, _twin_client) = accept(server_cfg, adjust).await;
        assert!(!server.shares_config_with(&first), "max {max}");
        assert!(server.shares_config_with(&twin), "max {max}");
        client.send(Message::binary(vec![0; max])).await.unwrap();
        assert_eq!(
            server.recv().await.unwrap().unwrap().as_payload().len(),
            max
        );
        client
            .send(Message::binary(vec![0; max + 1]))
            .await
            .unwrap();
        let (got, closed) = tokio::join!(server.recv(), client.recv());
        assert!(matches!(got, Some(Err(_))), "{got:?}");
        let Some(Ok(Message::Close(Some(frame)))) = closed else {
            panic!("{closed:?}");
        };
        assert_eq!(frame.code, CloseCode::MESSAGE_TOO_BIG);
        kinds.push(twin);
    }
    assert!(!kinds[0].shares_config_with(&kinds[1]));
}
