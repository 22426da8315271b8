//! The tokio layer over in-memory duplex streams and loopback TCP: messages, split halves,
//! cancel safety, closing, timeouts, backpressure, and HTTP on the same port.

mod common;

use futures_util::{FutureExt, SinkExt, StreamExt};
use std::time::Duration;
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};
use wsduplex::client::{client_handshake, Target};
use wsduplex::server::{read_request, ServerConfig};
use wsduplex::{ClientConfig, CloseCode, Error, Message, SlowReader, WebSocket};

async fn pair() -> (WebSocket<DuplexStream>, WebSocket<DuplexStream>) {
    common::pair(ServerConfig::default(), ClientConfig::default()).await
}

/// Echoes data messages until the stream ends; returns the last non-data item.
fn spawn_echo(mut ws: WebSocket<DuplexStream>) -> tokio::task::JoinHandle<Option<Message>> {
    tokio::spawn(async move {
        let mut last = None;
        while let Some(item) = ws.recv().await {
            match item {
                Ok(m) if m.is_data() => ws.feed(m).await.unwrap(),
                Ok(m) => last = Some(m),
                Err(e) => panic!("server error: {e}"),
            }
        }
        last
    })
}

#[tokio::test]
async fn messages_of_every_kind_and_size_roundtrip() {
    let (mut client, server) = pair().await;
    let echo = spawn_echo(server);
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let msgs = vec![
        Message::text("hello"),
        Message::text(""),
        Message::binary(vec![]),
        Message::binary(big),
        Message::text("κόσμε".repeat(10_000)),
    ];
    // One at a time: with bounded buffers on both ends, a client that writes megabytes
    // without reading the echoes would (correctly) be held back.
    for m in &msgs {
        client.send(m.clone()).await.unwrap();
        assert_eq!(client.recv().await.unwrap().unwrap(), *m);
    }
    client
        .send(Message::Ping("are you there".into()))
        .await
        .unwrap();
    assert_eq!(
        client.recv().await.unwrap().unwrap(),
        Message::Pong("are you there".into())
    );
    client.close(CloseCode::NORMAL, "bye").await.unwrap();
    match client.recv().await {
        Some(Ok(Message::Close(Some(f)))) => {
            assert_eq!((f.code, f.reason.as_str()), (CloseCode::NORMAL, ""))
        }
        other => panic!("expected the close reply, got {other:?}"),
    }
    assert!(client.recv().await.is_none());
    match echo.await.unwrap() {
        Some(Message::Close(Some(f))) => {
            assert_eq!((f.code, f.reason.as_str()), (CloseCode::NORMAL, "bye"))
        }
        other => panic!("server saw {other:?}"),
    }
}

#[tokio::test]
async fn split_halves_work_from_two_tasks() {
    let (client, server) = pair().await;
    let echo = spawn_echo(server);
    let (mut rx, mut tx) = client.split();
    const N: usize = 2_000;
    let writer = tokio::spawn(async move {
        for i in 0..N {
            tx.send(Message::text(format!("message {i}")))
                .await
                .unwrap();
        }
        tx.send(Message::Ping("p".into())).await.unwrap();
        tx
    });
    let mut got = 0;
    while got < N {
        match rx.recv().await.unwrap().unwrap() {
            Message::Text(t) => {
                assert_eq!(t.as_str(), format!("message {got}"));
                got += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let mut tx = writer.await.unwrap();
    assert_eq!(rx.recv().await.unwrap().unwrap(), Message::Pong("p".into()));
    tx.close(CloseCode::NORMAL, "").await.unwrap();
    assert!(matches!(rx.recv().await, Some(Ok(Message::Close(_)))));
    assert!(rx.recv().await.is_none());
    echo.await.unwrap();
}

#[tokio::test]
async fn reading_is_cancel_safe_in_select() {
    let (mut client, mut server) = pair().await;
    const N: usize = 5_000;
    let sender = tokio::spawn(async move {
        for i in 0..N {
            server.feed(Message::text(i.to_string())).await.unwrap();
            if i % 97 == 0 {
                server.flush().await.unwrap();
            }
        }
        server.close(CloseCode::NORMAL, "").await.unwrap();
        while server.recv().await.is_some() {}
    });
    let mut next = 0;
    let mut cancelled = 0;
    loop {
        // Poll the read once and drop it if it is not ready: a cancelled read must lose
        // nothing. (The sender cannot run before our first poll, so some reads are dropped.)
        let Some(item) = client.recv().now_or_never() else {
            cancelled += 1;
            tokio::task::yield_now().await;
            continue;
        };
        match item {
            Some(Ok(Message::Text(t))) => {
                assert_eq!(
                    t.as_str(),
                    next.to_string(),
                    "a message was lost or reordered"
                );
                next += 1;
            }
            Some(Ok(Message::Close(_))) => {}
            None => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(next, N);
    assert!(cancelled > 0);
    sender.await.unwrap();
}

#[tokio::test]
async fn frames_sent_right_behind_the_handshake_are_not_lost() {
    let (mut a, b) = duplex(4096);
    let cfg = ServerConfig::default();
    let server = tokio::spawn(async move { read_request(b, &cfg).await?.accept(&cfg).await });
    // The request and a masked "hi" frame in a single write.
    let mut bytes = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        .to_vec();
    bytes.extend_from_slice(&[0x81, 0x82, 0, 0, 0, 0, b'h', b'i']);
    a.write_all(&bytes).await.unwrap();
    let mut ws = server.await.unwrap().unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("hi"));
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_close_times_out() {
    let (a, b) = duplex(64 * 1024);
    let cfg = ServerConfig::default();
    let peer = tokio::spawn(async move {
        let target = Target::parse("ws://localhost/").unwrap();
        let (ws, _) = client_handshake(a, &target, &ClientConfig::default())
            .await
            .unwrap();
        ws
    });
    let mut server = read_request(b, &cfg)
        .await
        .unwrap()
        .accept(&cfg)
        .await
        .unwrap();
    let _silent_client = peer.await.unwrap(); // never reads, never answers
    server.close(CloseCode::GOING_AWAY, "").await.unwrap();
    let started = tokio::time::Instant::now();
    assert!(matches!(
        server.recv().await,
        Some(Err(Error::CloseTimeout))
    ));
    assert!(started.elapsed() >= wsduplex::Config::default().close_timeout);
    assert!(server.recv().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_hits_the_handshake_timeout() {
    let (_a, b) = duplex(1024);
    let r = read_request(b, &ServerConfig::default()).await;
    assert!(matches!(r, Err(Error::HandshakeTimeout)), "{r:?}");
}

/// A transport that writes down, in one log shared by both ends, when its end shuts down
/// and when it reads end of file.
struct Logged {
    io: DuplexStream,
    end: &'static str,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl tokio::io::AsyncRead for Logged {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::task::ready!(std::pin::Pin::new(&mut self.io).poll_read(cx, buf));
        if r.is_ok() && buf.filled().len() == before && buf.remaining() > 0 {
            let line = format!("{} reads eof", self.end);
            self.log.lock().unwrap().push(line);
        }
        std::task::Poll::Ready(r)
    }
}

impl tokio::io::AsyncWrite for Logged {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::task::ready!(std::pin::Pin::new(&mut self.io).poll_shutdown(cx));
        let line = format!("{} shuts down", self.end);
        self.log.lock().unwrap().push(line);
        std::task::Poll::Ready(r)
    }
}

#[tokio::test]
async fn the_server_closes_tcp_first_and_the_client_sees_it() {
    // Over loopback TCP, with close timeouts far longer than any wait here: a close that
    // ended by a timer instead of the server's FIN would be late.
    let long = Duration::from_secs(30);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let mut cfg = ServerConfig::default();
        cfg.socket.close_timeout = long;
        let mut last = Vec::new();
        for _ in 0..2 {
            let mut ws = common::accept_ws(&listener, &cfg).await;
            let mut item = None;
            while let Some(i) = ws.recv().await {
                item = Some(i.unwrap());
            }
            last.push(item);
        }
        last
    });

    // A raw peer sends its close and keeps its side of TCP open: the server answers the
    // close, then closes TCP first (RFC 6455 §7.1.1), which the peer reads as the end.
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    raw.write_all(
        b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(raw.read_u8().await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "));
    let key = [0x12, 0x34, 0x56, 0x78];
    let mut close = vec![0x88, 0x80 | 5];
    close.extend_from_slice(&key);
    close.extend(
        b"\x03\xe8bye"
            .iter()
            .zip(key.iter().cycle())
            .map(|(b, k)| b ^ k),
    );
    raw.write_all(&close).await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), raw.read_to_end(&mut rest))
        .await
        .expect("the server's FIN, while the peer still had TCP open")
        .unwrap();
    // The close reply (1000), then the end of the stream: nothing else.
    assert_eq!(rest, [0x88, 0x02, 0x03, 0xe8]);

    // Our client closing: it sees the reply and the end of the stream, the server's FIN
    // (not its own close timer), within the same bound.
    let mut ccfg = ClientConfig::default();
    ccfg.socket.close_timeout = long;
    let (mut client, _) = wsduplex::connect_with(&format!("ws://{addr}/"), &ccfg)
        .await
        .unwrap();
    client.close(CloseCode::NORMAL, "").await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(2), async {
        (client.recv().await, client.recv().await)
    })
    .await
    .expect("the end of the stream, long before the close timeout");
    match seen {
        (Some(Ok(Message::Close(Some(f)))), None) => assert_eq!(f.code, CloseCode::NORMAL),
        other => panic!("expected the close reply, then the end: {other:?}"),
    }
    for last in server.await.unwrap() {
        match last {
            Some(Message::Close(Some(f))) => assert_eq!(f.code, CloseCode::NORMAL),
            other => panic!("the server's last item: {other:?}"),
        }
    }
}

/// The order of the closing, seen on a transport that logs it (RFC 6455 §7.1.1).
#[tokio::test]
async fn the_server_shuts_its_transport_down_before_the_client_does() {
    let (a, b) = duplex(64 * 1024);
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (a, b) = (
        Logged {
            io: a,
            end: "client",
            log: log.clone(),
        },
        Logged {
            io: b,
            end: "server",
            log: log.clone(),
        },
    );
    let (mut client, mut server, _) =
        common::handshake(a, b, ServerConfig::default(), ClientConfig::default()).await;
    let echo = tokio::spawn(async move {
        while let Some(item) = server.recv().await {
            item.unwrap();
        }
    });
    client.close(CloseCode::NORMAL, "").await.unwrap();
    // The client waits for the server's FIN: this returns long before the close timeout.
    let r = tokio::time::timeout(Duration::from_secs(2), client.recv())
        .await
        .unwrap();
    assert!(matches!(r, Some(Ok(Message::Close(_)))), "{r:?}");
    assert!(client.recv().await.is_none());
    echo.await.unwrap();
    // RFC 6455 §7.1.1: the server closes the TCP connection first; the client closes its
    // side once it has seen the server's.
    assert_eq!(
        *log.lock().unwrap(),
        ["server shuts down", "client reads eof", "client shuts down"]
    );
}

#[tokio::test]
async fn a_peer_that_does_not_read_makes_sending_wait() {
    let mut cfg = ServerConfig::default();
    cfg.socket.max_write_buffer = 64 * 1024;
    let (_client, mut server) = common::pair(cfg, ClientConfig::default()).await;
    let chunk = vec![7u8; 10 * 1024];
    let mut sent = 0;
    loop {
        match tokio::time::timeout(
            Duration::from_millis(200),
            server.feed(Message::binary(chunk.clone())),
        )
        .await
        {
            Ok(r) => r.unwrap(),
            Err(_) => break, // blocked: backpressure works
        }
        sent += 1;
        assert!(server.buffered_amount() <= 64 * 1024 + chunk.len() + 14);
        assert!(sent < 1000, "sending never waited");
    }
}

#[tokio::test]
async fn sending_after_close_is_a_usage_error() {
    let (mut client, _server) = pair().await;
    client.close(CloseCode::NORMAL, "").await.unwrap();
    assert!(matches!(client.send("late").await, Err(Error::Usage(_))));
}

#[tokio::test]
async fn loopback_tcp_serves_http_and_websocket_on_one_port() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let cfg = ServerConfig::default();
        for _ in 0..2 {
            let (tcp, _) = listener.accept().await.unwrap();
            let incoming = read_request(tcp, &cfg).await.unwrap();
            if incoming.is_upgrade() {
                let mut ws = incoming.accept(&cfg).await.unwrap();
                while let Some(Ok(m)) = ws.recv().await {
                    if m.is_data() {
                        ws.send(m).await.unwrap();
                    }
                }
            } else {
                incoming
                    .respond(200, &[], "text/plain", b"plain http\n")
                    .await
                    .unwrap();
            }
        }
    });
    let mut http = tokio::net::TcpStream::connect(addr).await.unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    http.read_to_string(&mut body).await.unwrap();
    assert!(
        body.starts_with("HTTP/1.1 200 OK\r\n") && body.ends_with("plain http\n"),
        "{body}"
    );

    let (mut ws, hs) = wsduplex::connect(&format!("ws://{addr}/")).await.unwrap();
    assert_eq!(hs.response.status, 101);
    ws.send("over tcp").await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("over tcp"));
    ws.close(CloseCode::NORMAL, "").await.unwrap();
    while ws.next().await.is_some() {}
    server.await.unwrap();
}

#[tokio::test]
async fn connect_reports_refusals_clearly() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let incoming = read_request(tcp, &ServerConfig::default()).await.unwrap();
        incoming
            .respond(404, &[], "text/plain", b"nope\n")
            .await
            .unwrap();
    });
    let err = wsduplex::connect(&format!("ws://{addr}/missing"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "server answered 404 Not Found instead of 101"
    );
    let err = wsduplex::connect("http://example.com/").await.unwrap_err();
    assert!(matches!(err, Error::Url(_)), "{err}");
}

/// Reads `ws` to its end: the data messages, and the close code it ended with.
fn spawn_reader(
    mut ws: WebSocket<DuplexStream>,
) -> tokio::task::JoinHandle<(Vec<Message>, Option<CloseCode>)> {
    tokio::spawn(async move {
        let mut got = Vec::new();
        let mut code = None;
        while let Some(item) = ws.recv().await {
            match item.unwrap() {
                Message::Close(f) => code = f.map(|f| f.code),
                m if m.is_data() => got.push(m),
                _ => {}
            }
        }
        (got, code)
    })
}

#[tokio::test]
async fn slow_reader_drop_discards_what_does_not_fit_and_never_waits() {
    let metrics = wsduplex::metrics::Metrics::default();
    metrics.attach_current_thread();
    let mut cfg = ServerConfig::default();
    cfg.socket.max_write_buffer = 64 * 1024;
    cfg.socket.slow_reader = SlowReader::Drop;
    let (client, mut server) = common::pair(cfg, ClientConfig::default()).await;
    let chunk = vec![7u8; 10 * 1024];
    for i in 0..500u32 {
        let mut m = chunk.clone();
        m[..4].copy_from_slice(&i.to_be_bytes());
        // Never waits: the client is not reading yet.
        tokio::time::timeout(Duration::from_secs(5), server.feed(Message::binary(m)))
            .await
            .expect("sending waited")
            .unwrap();
        assert!(server.buffered_amount() <= 64 * 1024 + chunk.len() + 14);
    }
    let reader = spawn_reader(client);
    server.close(CloseCode::NORMAL, "").await.unwrap();
    while server.recv().await.is_some() {}
    let (got, code) = reader.await.unwrap();
    assert_eq!(code, Some(CloseCode::NORMAL));
    // What arrived is intact and in order; what did not fit was dropped and counted.
    assert!(!got.is_empty() && got.len() < 500, "{} arrived", got.len());
    let ids: Vec<u32> = got
        .iter()
        .map(|m| {
            let Message::Binary(b) = m else { panic!() };
            assert_eq!(b.len(), chunk.len());
            u32::from_be_bytes(b[..4].try_into().unwrap())
        })
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let now = metrics.snapshot();
    assert_eq!(now.overflows_dropped, 500 - got.len() as u64);
    assert_eq!(now.messages_out, got.len() as u64);
}

#[tokio::test]
async fn slow_reader_close_closes_with_1008_behind_what_was_queued() {
    let metrics = wsduplex::metrics::Metrics::default();
    metrics.attach_current_thread();
    let mut cfg = ServerConfig::default();
    cfg.socket.max_write_buffer = 64 * 1024;
    cfg.socket.slow_reader = SlowReader::Close;
    let (client, mut server) = common::pair(cfg, ClientConfig::default()).await;
    let chunk = vec![7u8; 10 * 1024];
    let mut queued = 0;
    let err = loop {
        match server.feed(Message::binary(chunk.clone())).await {
            Ok(()) => queued += 1,
            Err(e) => break e,
        }
        assert!(queued < 1000, "never closed");
    };
    assert!(matches!(err, Error::SlowReader), "{err}");
    let reader = spawn_reader(client);
    while server.recv().await.is_some() {}
    let (got, code) = reader.await.unwrap();
    assert_eq!(
        got.len(),
        queued,
        "everything queued before the close arrives"
    );
    assert_eq!(code, Some(CloseCode::POLICY_VIOLATION));
    let now = metrics.snapshot();
    assert_eq!(now.overflows_closed, 1);
    // The server sent 1008 and the client echoed it (both ends count on this thread).
    assert!(now.closes_sent.contains(&(Some(1008), 2)));
    assert!(now.closes_received.contains(&(Some(1008), 2)));
}

#[tokio::test]
async fn attached_threads_count_messages_bytes_handshakes_and_close_codes() {
    let metrics = wsduplex::metrics::Metrics::default();
    metrics.attach_current_thread();
    let (mut client, server) = pair().await;
    let echo = spawn_echo(server);
    client.send("hello").await.unwrap();
    client.recv().await.unwrap().unwrap();
    client.send(Message::binary(vec![0; 100])).await.unwrap();
    client.recv().await.unwrap().unwrap();
    client.close(CloseCode::new(4000), "").await.unwrap();
    while client.recv().await.is_some() {}
    echo.await.unwrap();
    let now = metrics.snapshot();
    // Both ends ran on this thread: each message counts once out and once in, each way.
    assert_eq!((now.messages_in, now.messages_out), (4, 4));
    assert_eq!((now.bytes_in, now.bytes_out), (210, 210));
    assert_eq!(now.handshakes_accepted, 1);
    // The client sent 4000, the server answered 4000: both ends saw it sent and received.
    let other = |v: &[(Option<u16>, u64)]| v.iter().find(|(c, _)| c.is_none()).unwrap().1;
    assert_eq!(other(&now.closes_sent), 2);
    assert_eq!(other(&now.closes_received), 2);
}

/// A transport whose peer sends masked binary frames without end and takes every byte
/// written: reading it never waits for input. Like tokio's own sockets, it spends the task's
/// cooperative budget, so a task reading it yields now and then.
struct Endless {
    frame: Vec<u8>,
    pos: usize,
}

impl tokio::io::AsyncRead for Endless {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        coop.made_progress();
        while buf.remaining() > 0 {
            let n = buf.remaining().min(self.frame.len() - self.pos);
            let pos = self.pos;
            buf.put_slice(&self.frame[pos..pos + n]);
            self.pos = (pos + n) % self.frame.len();
        }
        std::task::Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for Endless {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// A peer that never answers our close but keeps sending is cut at the close timeout, even
/// though there is always something to read (the timer used to be looked at only before
/// waiting for input, so such a peer held the connection forever).
#[test]
fn a_peer_that_floods_instead_of_answering_our_close_is_cut_at_the_close_timeout() {
    // [0x82, 0x84, mask, 4 bytes]: a masked 4-byte binary frame.
    let frame = vec![0x82, 0x84, 1, 2, 3, 4, 0, 0, 0, 0];
    let (tx, rx) = std::sync::mpsc::channel();
    // On a thread of its own: without the fix the loop below never returns.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut config = wsduplex::Config::default();
            config.close_timeout = Duration::from_millis(300);
            let io = Endless { frame, pos: 0 };
            let mut server = WebSocket::from_raw(io, wsduplex::proto::Role::Server, config, &[]);
            server.close(CloseCode::GOING_AWAY, "bye").await.unwrap();
            let mut data = 0u64;
            let last = loop {
                match server.recv().await {
                    Some(Ok(m)) if m.is_data() => data += 1,
                    Some(other) => break Some(other),
                    None => break None,
                }
            };
            let _ = tx.send((data, format!("{last:?}")));
        });
    });
    let (data, last) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the flood held the connection past the close timeout");
    assert!(last.contains("CloseTimeout"), "{last}");
    assert!(data > 0, "messages still arrive while closing");
}
