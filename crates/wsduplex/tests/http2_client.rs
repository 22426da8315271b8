//! The client over HTTP/2 (RFC 8441) against this crate's own HTTP/2 server on loopback:
//! `h2c` and TLS with ALPN, echo beyond the initial window, subprotocol and deflate, the
//! pool sharing one connection (the listener counts them) and replacing a dead one, and
//! the errors for a server without the setting and for a refused CONNECT; the handshake
//! over a connection the caller opened (`client_handshake_http2`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use wsduplex::client::{Http2, Http2Pool};
use wsduplex::server::http2::{Http2Config, Http2Connection, Http2Error};
use wsduplex::tls::{self, TlsAcceptor};
use wsduplex::{
    ClientConfig, ClientStream, CloseCode, DeflateConfig, Error, Message, ServerConfig,
};

/// How the test server behaves.
#[derive(Clone, Default)]
struct Options {
    acceptor: Option<TlsAcceptor>,
    /// Drop each connection once its first WebSocket ends.
    one_stream_per_connection: bool,
    /// Reset every stream of a connection after its first (a connection that still looks
    /// alive but takes no more WebSockets).
    refuse_after_first: bool,
}

/// An HTTP/2 echo server on `127.0.0.1:0`, with the count of TCP connections it accepted.
async fn serve(options: Options) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let mut config = ServerConfig::default();
    config.subprotocols = vec!["chat".to_string()];
    config.deflate = Some(DeflateConfig::default());
    let config = Arc::new(config);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            let (options, config) = (options.clone(), config.clone());
            tokio::spawn(async move {
                match options.acceptor.clone() {
                    None => connection(tcp, options, config).await,
                    Some(acceptor) => {
                        let tls = tls::accept(&acceptor, tcp).await.unwrap();
                        assert!(tls::negotiated_http2(&tls), "alpn did not pick h2");
                        connection(tls, options, config).await
                    }
                }
            });
        }
    });
    (addr, accepted)
}

async fn connection<T>(io: T, options: Options, config: Arc<ServerConfig>)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Ok(mut conn) = Http2Connection::handshake(io, Http2Config::default()).await else {
        return;
    };
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut streams = 0;
    loop {
        let request = tokio::select! {
            r = conn.accept() => r,
            _ = done_rx.recv(), if options.one_stream_per_connection => return,
        };
        let Some(Ok(request)) = request else { return };
        streams += 1;
        if options.refuse_after_first && streams > 1 {
            // Dropped unanswered: h2 resets the stream.
            drop(request);
            continue;
        }
        let (config, done) = (config.clone(), done_tx.clone());
        tokio::spawn(async move {
            if request.head().uri().path() == "/forbidden" {
                // Refused on its stream: a 404 through the front door's routes.
                let incoming = request.into_incoming(&config).await.unwrap();
                let _ = incoming
                    .respond(404, &[], "text/plain", b"no such room")
                    .await;
                return;
            }
            let incoming = request.into_incoming(&config).await.unwrap();
            let mut ws = incoming.accept(&config).await.unwrap();
            while let Some(Ok(msg)) = ws.recv().await {
                if msg.is_data() {
                    ws.send(msg).await.unwrap();
                }
            }
            let _ = done.send(());
        });
    }
}

fn h2_config(mode: Http2) -> ClientConfig {
    let mut config = ClientConfig::default();
    config.http2 = mode;
    config.subprotocols = vec!["chat".to_string()];
    config
}

/// Text, binary, and a message four times the initial 65,535-byte window, echoed.
async fn echo(ws: &mut wsduplex::WebSocket<ClientStream>) {
    ws.send(Message::text("over h2")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("over h2"));
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::binary(vec![1u8, 2, 3])
    );
    // Random-looking bytes, so deflate does not shrink it below the window.
    let big: Vec<u8> = (0..4 * 65_535u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::binary(big));
}

/// The closing handshake: our Close, the server's, then the end of the stream.
async fn close_cleanly(ws: &mut wsduplex::WebSocket<ClientStream>) {
    ws.close(CloseCode::NORMAL, "").await.unwrap();
    match ws.recv().await {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::NORMAL),
        other => panic!("expected the server's close, got {other:?}"),
    }
    assert!(ws.recv().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_with_prior_knowledge_echoes_with_subprotocol_and_deflate() {
    let (addr, accepted) = serve(Options::default()).await;
    let config = h2_config(Http2::Always);
    let (mut ws, handshake) = wsduplex::connect_with(format!("ws://{addr}/echo"), &config)
        .await
        .unwrap();
    assert!(matches!(ws.get_ref(), ClientStream::Http2(_)));
    assert!(ws.get_ref().tcp().is_none());
    assert!(
        handshake.request.contains(":protocol: websocket"),
        "{}",
        handshake.request
    );
    assert!(!handshake.request.contains("sec-websocket-key"));
    assert!(handshake.response_head.starts_with(":status: 200"));
    assert_eq!(ws.subprotocol(), Some("chat"));
    assert!(
        handshake.response.deflate.is_some(),
        "deflate not negotiated"
    );
    echo(&mut ws).await;
    close_cleanly(&mut ws).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_alpn_h2_echoes() {
    let cert = tls::self_signed().unwrap();
    let acceptor = tls::offer_http2(&cert.acceptor);
    let (addr, _) = serve(Options {
        acceptor: Some(acceptor),
        ..Options::default()
    })
    .await;
    for mode in [Http2::Always, Http2::WhenOffered] {
        let mut config = h2_config(mode);
        config.tls.extra_ca_pem = vec![cert.cert_pem.clone().into_bytes()];
        let url = format!("wss://localhost:{}/echo", addr.port());
        let (mut ws, handshake) = wsduplex::connect_with(url, &config).await.unwrap();
        assert!(matches!(ws.get_ref(), ClientStream::Http2(_)), "{mode:?}");
        assert!(handshake.request.contains(":scheme: https"));
        echo(&mut ws).await;
        close_cleanly(&mut ws).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_through_one_pool_share_one_connection() {
    let (addr, accepted) = serve(Options::default()).await;
    let config = h2_config(Http2::Always);
    let url = format!("ws://{addr}/echo");
    let mut sockets = Vec::new();
    for i in 0..3 {
        let (mut ws, _) = wsduplex::connect_with(&url, &config).await.unwrap();
        ws.send(Message::text(format!("{i}"))).await.unwrap();
        sockets.push(ws);
    }
    // A clone of the config shares its pool.
    let (mut ws, _) = wsduplex::connect_with(&url, &config.clone()).await.unwrap();
    ws.send(Message::text("3")).await.unwrap();
    sockets.push(ws);
    for (i, ws) in sockets.iter_mut().enumerate() {
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::text(format!("{i}"))
        );
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(config.http2_pool.connections(), 1);

    // Another pool, two streams a connection: three sockets need two connections.
    let mut config = h2_config(Http2::Always);
    config.http2_pool = Http2Pool::with_streams_per_connection(2);
    for _ in 0..3 {
        let (mut ws, _) = wsduplex::connect_with(&url, &config).await.unwrap();
        echo(&mut ws).await;
        sockets.push(ws);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_pooled_connection_is_replaced() {
    let (addr, accepted) = serve(Options {
        one_stream_per_connection: true,
        ..Options::default()
    })
    .await;
    let config = h2_config(Http2::Always);
    let url = format!("ws://{addr}/echo");
    for round in 1..=3 {
        let (mut ws, _) = wsduplex::connect_with(&url, &config).await.unwrap();
        echo(&mut ws).await;
        // The server drops the connection as its socket ends, its Close maybe unsent.
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        while let Some(Ok(_)) = ws.recv().await {}
        assert_eq!(accepted.load(Ordering::SeqCst), round);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_that_resets_the_connect_is_replaced() {
    let (addr, accepted) = serve(Options {
        refuse_after_first: true,
        ..Options::default()
    })
    .await;
    let config = h2_config(Http2::Always);
    let url = format!("ws://{addr}/echo");
    let (mut first, _) = wsduplex::connect_with(&url, &config).await.unwrap();
    // The pooled connection is alive, and resets this CONNECT: a new one carries it.
    let (mut second, _) = wsduplex::connect_with(&url, &config).await.unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    assert_eq!(
        config.http2_pool.connections(),
        1,
        "the refusing one left the pool"
    );
    echo(&mut first).await;
    echo(&mut second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connect_carries_its_status() {
    let (addr, _) = serve(Options::default()).await;
    let config = h2_config(Http2::Always);
    let err = wsduplex::connect_with(format!("ws://{addr}/forbidden"), &config)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Response(
                wsduplex::proto::handshake::client::ResponseError::ExtendedConnectStatus {
                    status: 404
                }
            )
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("404"), "{err}");
    // The connection goes on for the next socket.
    let (mut ws, _) = wsduplex::connect_with(format!("ws://{addr}/echo"), &config)
        .await
        .unwrap();
    echo(&mut ws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_the_setting_is_a_clear_error() {
    // A plain h2 server: no SETTINGS_ENABLE_CONNECT_PROTOCOL.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut conn = h2::server::handshake(tcp).await.unwrap();
        while let Some(Ok(_)) = conn.accept().await {}
    });
    let err = wsduplex::connect_with(format!("ws://{addr}/"), &h2_config(Http2::Always))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Http2(Http2Error::NoExtendedConnect)),
        "{err:?}"
    );
    assert!(err.to_string().contains("SETTINGS_ENABLE_CONNECT_PROTOCOL"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_offered_uses_http1_where_h2_is_not_chosen() {
    // A TLS server offering http/1.1 only.
    let cert = tls::self_signed().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = cert.acceptor.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = tls::accept(&acceptor, tcp).await else {
                    return;
                };
                let config = ServerConfig::default();
                let incoming = wsduplex::server::read_request(tls, &config).await.unwrap();
                let mut ws = incoming.accept(&config).await.unwrap();
                while let Some(Ok(msg)) = ws.recv().await {
                    if msg.is_data() {
                        ws.send(msg).await.unwrap();
                    }
                }
            });
        }
    });
    let mut config = h2_config(Http2::WhenOffered);
    config.tls.extra_ca_pem = vec![cert.cert_pem.clone().into_bytes()];
    let url = format!("wss://localhost:{}/", addr.port());
    let (mut ws, handshake) = wsduplex::connect_with(&url, &config).await.unwrap();
    assert!(matches!(ws.get_ref(), ClientStream::Tls(_)));
    assert!(handshake.request.starts_with("GET / HTTP/1.1"));
    ws.send(Message::text("fallback")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("fallback"));
    // Required, HTTP/2 is an error there.
    config.http2 = Http2::Always;
    let err = wsduplex::connect_with(&url, &config).await.unwrap_err();
    // (rustls refuses an ALPN offer it shares nothing with; a server without ALPN answers
    // and the client refuses.)
    assert!(
        matches!(err, Error::Tls(_) | Error::Http2(Http2Error::NotNegotiated)),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_over_a_stream_of_ones_own_echoes_and_pools_nothing() {
    let (addr, accepted) = serve(Options::default()).await;
    let config = h2_config(Http2::Never);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut ws, handshake) =
        wsduplex::client::client_handshake_http2(tcp, format!("ws://{addr}/echo"), &config)
            .await
            .unwrap();
    // HTTP/2 whatever `config.http2` says: the caller chose it by calling this.
    assert!(matches!(ws.get_ref(), ClientStream::Http2(_)));
    assert!(handshake.response_head.starts_with(":status: 200"));
    assert_eq!(ws.subprotocol(), Some("chat"));
    echo(&mut ws).await;
    close_cleanly(&mut ws).await;
    assert_eq!(config.http2_pool.connections(), 0);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // Not HTTP/2 on the other side: the handshake's error, not a hang.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let _ = tokio::io::AsyncWriteExt::write_all(&mut tcp, b"HTTP/1.1 400 Bad Request\r\n\r\n")
            .await;
    });
    let tcp = tokio::net::TcpStream::connect(silent).await.unwrap();
    let err = wsduplex::client::client_handshake_http2(tcp, format!("ws://{silent}/"), &config)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Http2(Http2Error::Handshake(_))),
        "{err:?}"
    );
}
