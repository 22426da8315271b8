//! `ReconnectingClient::send` while the connection is down: the message waits for the next
//! connection and is delivered on it, or `send` returns an error; it is never lost silently.

mod common;

use std::time::Duration;
use tokio::sync::mpsc;
use wsduplex::reconnect::ReconnectingClient;
use wsduplex::server::ServerConfig;
use wsduplex::{ClientConfig, CloseCode, Message};

/// The longest wait for anything here; a hang fails instead of blocking CI.
const LIMIT: Duration = Duration::from_secs(15);

/// How the server ends connection number `n` after its first message.
#[derive(Clone, Copy)]
enum End {
    /// A closing handshake with 1012.
    Close,
    /// The TCP connection dropped, nothing said.
    Drop,
    /// Stays up, forwarding everything.
    Stay,
}

/// A loopback server: connection `n` (from 1) ends as `ends[n - 1]` after its first
/// message (`Stay` past the end of `ends`); every text it receives goes to the channel as
/// `(n, text)`, and `dropped` gets `n` once connection `n` is gone.
async fn server(
    ends: Vec<End>,
) -> (
    String,
    mpsc::UnboundedReceiver<(u32, String)>,
    mpsc::UnboundedReceiver<u32>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let (got_tx, got) = mpsc::unbounded_channel();
    let (gone_tx, gone) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let cfg = ServerConfig::default();
        for n in 1u32.. {
            let mut ws = common::accept_ws(&listener, &cfg).await;
            let end = ends.get(n as usize - 1).copied().unwrap_or(End::Stay);
            let (got_tx, gone_tx) = (got_tx.clone(), gone_tx.clone());
            tokio::spawn(async move {
                while let Some(Ok(msg)) = ws.recv().await {
                    let Message::Text(t) = msg else { continue };
                    got_tx.send((n, t.as_str().to_string())).unwrap();
                    match end {
                        End::Close => {
                            ws.close(CloseCode::SERVICE_RESTART, "restart")
                                .await
                                .unwrap();
                            while ws.recv().await.is_some() {}
                            break;
                        }
                        End::Drop => break,
                        End::Stay => {}
                    }
                }
                drop(ws);
                let _ = gone_tx.send(n);
            });
        }
    });
    (url, got, gone)
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not in time"))
}

/// The server closed the connection and `recv` reported it: the client is disconnected.
/// A `send` now connects again and the message arrives on the new connection.
#[tokio::test]
async fn a_send_while_disconnected_is_delivered_on_the_next_connection() {
    let (url, mut got, _gone) = server(vec![End::Close]).await;
    let mut client = ReconnectingClient::new(url, ClientConfig::default(), common::fast());
    within("first send", client.send("one")).await.unwrap();
    assert_eq!(within("one", got.recv()).await, Some((1, "one".into())));
    match within("the close", client.recv()).await {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::SERVICE_RESTART),
        other => panic!("expected the server's close, got {other:?}"),
    }
    assert!(!client.is_connected());
    within("send while down", client.send("two")).await.unwrap();
    assert_eq!(within("two", got.recv()).await, Some((2, "two".into())));
    assert_eq!(client.connections(), 2);
    client.close(CloseCode::NORMAL, "").await.unwrap();
    while within("closing", client.recv()).await.is_some() {}
}

/// The server drops the connection and the client has not called `recv` since: it does not
/// know yet. What it sends before it learns of the drop is lost (TCP took it; the peer's
/// reset comes back after), which the docs say; then a `send` fails, and that error lets go
/// of the dead connection: the next `send` connects again and is delivered, as are the
/// ones after it, in order.
#[tokio::test]
async fn a_send_that_fails_on_a_dropped_connection_lets_the_next_one_reconnect() {
    let (url, mut got, mut gone) = server(vec![End::Drop]).await;
    let mut client = ReconnectingClient::new(url, ClientConfig::default(), common::fast());
    within("first send", client.send("m0")).await.unwrap();
    assert_eq!(within("m0", got.recv()).await, Some((1, "m0".into())));
    assert_eq!(within("the drop", gone.recv()).await, Some(1));

    let mut lost_in_the_drop = 0;
    loop {
        let text = format!("m{}", lost_in_the_drop + 1);
        match within(&text, client.send(text.as_str())).await {
            Ok(()) => lost_in_the_drop += 1,
            Err(e) => {
                assert!(matches!(e, wsduplex::Error::Io(_)), "{e:?}");
                break;
            }
        }
        assert!(
            lost_in_the_drop <= 10,
            "sends on a dropped connection never fail"
        );
    }
    assert!(
        !client.is_connected(),
        "the failed send let go of the dead connection"
    );
    for i in 0..3 {
        let text = format!("after {i}");
        within(&text, client.send(text.as_str())).await.unwrap();
    }
    for i in 0..3 {
        let want = (2, format!("after {i}"));
        assert_eq!(within("a resent message", got.recv()).await, Some(want));
    }
    assert_eq!(client.connections(), 2);
    client.close(CloseCode::NORMAL, "").await.unwrap();
    while within("closing", client.recv()).await.is_some() {}
}

/// With nothing to connect to, a `send` waits out the backoff for `max_attempts` attempts and
/// then returns the last error: the message is refused, not kept.
#[tokio::test]
async fn a_send_with_no_server_fails_after_max_attempts() {
    // A port that was free a moment ago: connecting is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut backoff = common::fast();
    backoff.max_attempts = Some(3);
    let mut client = ReconnectingClient::new(
        format!("ws://127.0.0.1:{port}/"),
        ClientConfig::default(),
        backoff,
    );
    let sent = within("send", client.send("nowhere")).await;
    assert!(matches!(sent, Err(wsduplex::Error::Io(_))), "{sent:?}");
    assert_eq!(client.connections(), 0);
    assert!(!client.is_connected());
}
