//! The `http` crate at the boundary: the front door answers an `http` request head exactly
//! as it answers our own parsed one (a table of heads through both paths), a client built
//! from an `http::Request`, the transport behind a socket (`get_ref`, `into_inner`), and a
//! socket built from raw parts with its subprotocol.

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wsduplex::auth::{AuthHook, TokenAuth};
use wsduplex::proto::handshake::client::RequestError;
use wsduplex::proto::handshake::server::Request;
use wsduplex::proto::Role;
use wsduplex::server::{read_request, ServerConfig};
use wsduplex::{ClientConfig, ClientStream, Config, Error, IntoClientRequest, Message, WebSocket};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// An upgrade request head with `extra` header lines, `GET / HTTP/1.1` unless `line` says.
fn head(line: &str, extra: &str) -> String {
    format!(
        "{line}\r\nHost: chat.example:8080\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// The same head as an `http::Request<()>`, read line by line (not through our parser).
fn to_http(head: &str) -> http::Request<()> {
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap().split(' ');
    let (method, target, version) = (
        first.next().unwrap(),
        first.next().unwrap(),
        first.next().unwrap(),
    );
    let version = match version {
        "HTTP/1.0" => http::Version::HTTP_10,
        _ => http::Version::HTTP_11,
    };
    let mut request = http::Request::builder()
        .method(method)
        .uri(target)
        .version(version);
    for line in lines.take_while(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').unwrap();
        request = request.header(name.trim(), value.trim());
    }
    request.body(()).unwrap()
}

/// An answer in a comparable form: the status, the headers (lowercase names, sorted; not
/// the framing ones, which hyper sets), the body.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

fn answer_of_bytes(bytes: &[u8]) -> Answer {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap();
    let mut headers: Vec<(String, String)> = lines
        .map(|l| l.split_once(": ").unwrap())
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
        .filter(|(n, v)| n != "content-length" && !(n == "connection" && v == "close"))
        .collect();
    headers.sort();
    Answer {
        status: status.parse().unwrap(),
        headers,
        body: body.to_string(),
    }
}

fn answer_of_http(response: &http::Response<()>, body: &str) -> Answer {
    let mut headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    headers.sort();
    Answer {
        status: response.status().as_u16(),
        headers,
        body: body.to_string(),
    }
}

/// Our own path, as `read_request` and `Incoming::accept` run it, without a socket.
fn ours(config: &ServerConfig, head: &str) -> Answer {
    let request = match Request::parse(head.as_bytes(), &config.limits) {
        Ok(Some((request, _))) => request,
        Ok(None) => panic!("incomplete head"),
        Err(e) => return answer_of_bytes(&e.to_response()),
    };
    let checked = config
        .admit(&request, None, None)
        .and_then(|()| now(config.authenticate(&request, None)).map(drop));
    if let Err(refusal) = checked {
        return answer_of_bytes(&refusal.to_response());
    }
    let negotiated = config.negotiate(&request);
    let deflate = negotiated.socket.protocol.deflate.as_ref();
    match request.accept_response_with(negotiated.subprotocol.as_deref(), deflate, &[]) {
        Ok(bytes) => answer_of_bytes(&bytes),
        Err(e) => answer_of_bytes(&e.to_response()),
    }
}

/// The `http` path, through `upgrade_http`, from a request and from its parts.
fn theirs(config: &ServerConfig, head: &str) -> Answer {
    let request = to_http(head);
    let from_request = match now(config.upgrade_http(&request, None, None)) {
        Ok(upgrade) => answer_of_http(&upgrade.response, ""),
        Err(refusal) => answer_of_http(&refusal.response, &refusal.body),
    };
    let (parts, ()) = request.into_parts();
    let from_parts = match now(config.upgrade_http(&parts, None, None)) {
        Ok(upgrade) => answer_of_http(&upgrade.response, ""),
        Err(refusal) => answer_of_http(&refusal.response, &refusal.body),
    };
    assert_eq!(from_request, from_parts, "{head}");
    from_parts
}

fn configs() -> [ServerConfig; 3] {
    let plain = ServerConfig::default();
    let mut rich = ServerConfig::default();
    rich.subprotocols = vec!["chat.v2".into(), "chat.v1".into()];
    rich.deflate = Some(Default::default());
    rich.auth = Some(AuthHook::new(TokenAuth::new(["t"])));
    let mut origins = ServerConfig::default();
    origins.allowed_origins = vec!["http://good.example".into()];
    [plain, rich, origins]
}

#[test]
fn the_http_path_answers_as_our_own_path_does() {
    const BEARER: &str = "Authorization: Bearer t\r\n";
    let many: String = (0..70).map(|i| format!("X-{i}: y\r\n")).collect();
    let cases: Vec<(String, [u16; 3])> = vec![
        (head("GET /chat HTTP/1.1", BEARER), [101, 101, 101]),
        (
            head(
                "GET /chat?x=1 HTTP/1.1",
                &format!("{BEARER}Sec-WebSocket-Protocol: chat.v1, chat.v2\r\n"),
            ),
            [101, 101, 101],
        ),
        (
            head(
                "GET / HTTP/1.1",
                &format!(
                    "{BEARER}Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                ),
            ),
            [101, 101, 101],
        ),
        (head("GET / HTTP/1.1", ""), [101, 401, 101]),
        (
            head("GET / HTTP/1.1", "Cookie: wsduplex_token=t\r\nOrigin: http://evil.example\r\n"),
            [101, 403, 403],
        ),
        (
            head("GET / HTTP/1.1", "Origin: http://good.example\r\n"),
            [101, 401, 101],
        ),
        (head("POST / HTTP/1.1", BEARER), [400, 400, 400]),
        (head("GET / HTTP/1.0", BEARER), [400, 400, 400]),
        (
            head("GET / HTTP/1.1", BEARER).replace("Host: chat.example:8080\r\n", ""),
            [400, 400, 400],
        ),
        (
            head("GET / HTTP/1.1", BEARER).replace("Upgrade: websocket", "Upgrade: h2c"),
            [400, 400, 400],
        ),
        (
            head("GET / HTTP/1.1", BEARER).replace("keep-alive, Upgrade", "keep-alive"),
            [400, 400, 400],
        ),
        (
            head("GET / HTTP/1.1", BEARER).replace(KEY, "dGhlIHNhbXBsZQ=="),
            [400, 400, 400],
        ),
        (
            head("GET / HTTP/1.1", &format!("{BEARER}Sec-WebSocket-Key: {KEY}\r\n")),
            [400, 400, 400],
        ),
        (
            head("GET / HTTP/1.1", BEARER).replace("Version: 13", "Version: 8"),
            [426, 426, 426],
        ),
        (
            head("GET / HTTP/1.1", BEARER).replace("Sec-WebSocket-Version: 13\r\n", ""),
            [426, 426, 426],
        ),
        (head("GET / HTTP/1.1", &many), [431, 431, 431]),
        (
            head("GET / HTTP/1.1", &format!("X: {}\r\n", "a".repeat(9000))),
            [431, 431, 431],
        ),
    ];
    for (i, config) in configs().iter().enumerate() {
        for (head, statuses) in &cases {
            let (a, b) = (ours(config, head), theirs(config, head));
            assert_eq!(a, b, "config {i}: {head}");
            assert_eq!(a.status, statuses[i], "config {i}: {head}");
        }
    }
    // What the rich config agrees to, through the http path.
    let [_, rich, _] = configs();
    let offer = head(
        "GET / HTTP/1.1",
        &format!("{BEARER}Sec-WebSocket-Protocol: chat.v1, chat.v2\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"),
    );
    let upgrade = now(rich.upgrade_http(&to_http(&offer), None, None)).unwrap();
    let headers = upgrade.response.headers();
    assert_eq!(
        headers["sec-websocket-accept"],
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    assert_eq!(headers["sec-websocket-protocol"], "chat.v2");
    assert_eq!(headers["sec-websocket-extensions"], "permessage-deflate");
    assert_eq!(upgrade.negotiated.subprotocol.as_deref(), Some("chat.v2"));
    assert!(upgrade.negotiated.socket.protocol.deflate.is_some());
    assert_eq!(upgrade.request.path(), "/");
    // A refusal carries its error and its body together.
    let refused =
        now(rich.upgrade_http(&to_http(&head("GET / HTTP/1.1", "")), None, None)).unwrap_err();
    assert!(
        matches!(refused.error, Error::Denied(_)),
        "{:?}",
        refused.error
    );
    assert_eq!(
        refused.response.headers()["www-authenticate"],
        r#"Bearer realm="wsduplex""#
    );
    let with_body = refused.into_response();
    assert_eq!(with_body.status(), 401);
    assert!(with_body.body().ends_with('\n'));
}

#[test]
fn an_http2_head_names_its_host_in_the_uri() {
    let config = ServerConfig::default();
    let request = http::Request::get("https://chat.example/x")
        .version(http::Version::HTTP_2)
        .body(())
        .unwrap();
    let converted = config.http_request(&request).unwrap();
    assert_eq!(converted.header("host"), Some(&b"chat.example"[..]));
    assert_eq!(converted.path(), "/x");
    // Not an upgrade: refused as our own path would (RFC 8441 has its own door, below).
    let refused = now(config.upgrade_http(&request, None, None)).unwrap_err();
    assert_eq!(refused.response.status(), 400);
}

/// An extended CONNECT as an HTTP/2 server (hyper's) hands it over, `:protocol` aside.
fn extended_connect(headers: &[(&str, &str)]) -> http::Request<()> {
    let mut request = http::Request::connect("https://chat.example/chat?access_token=t")
        .version(http::Version::HTTP_2);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(()).unwrap()
}

#[test]
fn an_extended_connect_is_answered_200_with_the_same_agreement() {
    let [_, rich, _] = configs();
    let request = extended_connect(&[
        ("sec-websocket-version", "13"),
        ("sec-websocket-protocol", "chat.v1, chat.v2"),
        (
            "sec-websocket-extensions",
            "permessage-deflate; client_max_window_bits",
        ),
    ]);
    let upgrade =
        now(rich.upgrade_extended_connect(&request, Some("websocket"), None, None)).unwrap();
    let headers = upgrade.response.headers();
    assert_eq!(upgrade.response.status(), 200);
    assert_eq!(headers["sec-websocket-protocol"], "chat.v2");
    assert!(headers["sec-websocket-extensions"]
        .to_str()
        .unwrap()
        .starts_with("permessage-deflate"));
    for http1_only in ["upgrade", "connection", "sec-websocket-accept"] {
        assert!(!headers.contains_key(http1_only), "{http1_only}");
    }
    assert_eq!(upgrade.negotiated.subprotocol.as_deref(), Some("chat.v2"));
    assert!(upgrade.negotiated.socket.protocol.deflate.is_some());
    // A key from a proxy that translated an HTTP/1.1 upgrade gets its accept.
    let with_key = extended_connect(&[("sec-websocket-version", "13"), ("sec-websocket-key", KEY)]);
    let upgrade =
        now(rich.upgrade_extended_connect(&with_key, Some("websocket"), None, None)).unwrap();
    assert_eq!(
        upgrade.response.headers()["sec-websocket-accept"],
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn a_bad_extended_connect_gets_the_status_rfc_8441_calls_for() {
    let [plain, rich, _] = configs();
    let good = extended_connect(&[("sec-websocket-version", "13")]);
    let status = |config: &ServerConfig, request: &http::Request<()>, protocol| {
        let refused =
            now(config.upgrade_extended_connect(request, protocol, None, None)).unwrap_err();
        (refused.response.status().as_u16(), refused)
    };
    let (code, refused) = status(&plain, &good, None);
    assert_eq!(code, 405);
    assert!(matches!(refused.error, Error::ExtendedConnect(_)));
    assert_eq!(status(&plain, &good, Some("webtransport")).0, 501);
    for version in [&[("sec-websocket-version", "8")][..], &[]] {
        let (code, refused) = status(&plain, &extended_connect(version), Some("websocket"));
        assert_eq!(code, 400);
        assert_eq!(refused.response.headers()["sec-websocket-version"], "13");
    }
    // The front door's own refusals, in HTTP/2 form.
    let without_token = http::Request::connect("https://chat.example/chat")
        .version(http::Version::HTTP_2)
        .header("sec-websocket-version", "13")
        .body(())
        .unwrap();
    let (code, refused) = status(&rich, &without_token, Some("websocket"));
    assert_eq!(code, 401);
    assert!(refused.response.headers().contains_key("www-authenticate"));
}

/// A server on loopback that reads one request and hands its socket and request head to
/// `serve`.
async fn one_server<F, Fut>(serve: F) -> SocketAddr
where
    F: FnOnce(TcpStream, SocketAddr) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, peer) = listener.accept().await.unwrap();
        serve(tcp, peer).await;
    });
    addr
}

async fn echo(mut ws: WebSocket<impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>) {
    while let Some(Ok(msg)) = ws.recv().await {
        if msg.is_data() && ws.send(msg).await.is_err() {
            break;
        }
    }
}

#[tokio::test]
async fn a_client_from_an_http_request_sends_its_headers_and_subprotocols() {
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel();
    let addr = one_server(|tcp, peer| async move {
        let mut config = ServerConfig::default();
        config.subprotocols = vec!["chat.v2".into()];
        let incoming = read_request(tcp, &config).await.unwrap();
        let header =
            |n| String::from_utf8_lossy(incoming.request().header(n).unwrap()).into_owned();
        let _ = seen_tx.send((header("x-custom"), header("origin"), header("host")));
        let ws = incoming.accept(&config).await.unwrap();
        assert_eq!(
            ws.get_ref().peer_addr().unwrap(),
            peer,
            "get_ref reaches the transport"
        );
        echo(ws).await;
    })
    .await;
    let request = http::Request::get(format!("ws://{addr}/chat"))
        .header("X-Custom", "yes")
        .header("Origin", "http://app.example")
        .header("Sec-WebSocket-Protocol", "chat.v1, chat.v2")
        // The handshake's own headers, with its values, are accepted.
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Version", "13")
        .body(())
        .unwrap();
    let (mut ws, handshake) = wsduplex::connect_with(request, &ClientConfig::default())
        .await
        .unwrap();
    assert_eq!(ws.subprotocol(), Some("chat.v2"));
    assert!(handshake
        .request
        .contains("Sec-WebSocket-Protocol: chat.v1, chat.v2\r\n"));
    assert_eq!(handshake.request.matches("Upgrade: websocket").count(), 1);
    let (custom, origin, host) = seen_rx.await.unwrap();
    assert_eq!(
        (custom.as_str(), origin.as_str(), host),
        ("yes", "http://app.example", addr.to_string())
    );
    let ClientStream::Plain(tcp) = ws.get_ref() else {
        panic!("ws:// is plain TCP")
    };
    assert_eq!(tcp.peer_addr().unwrap(), addr);
    assert_eq!(ws.get_ref().tcp().unwrap().peer_addr().unwrap(), addr);
    ws.send("hi").await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("hi"));
}

#[test]
fn a_request_that_sets_the_handshakes_headers_differently_is_refused() {
    let with = |name: &str, value: &str| {
        http::Request::get("ws://example.com/")
            .header(name, value)
            .body(())
            .unwrap()
            .into_client_request()
    };
    for (name, value) in [
        ("Upgrade", "h2c"),
        ("Connection", "keep-alive"),
        ("Sec-WebSocket-Version", "8"),
        ("Sec-WebSocket-Key", KEY),
        ("Sec-WebSocket-Extensions", "permessage-deflate"),
    ] {
        let e = with(name, value).unwrap_err();
        assert!(
            matches!(&e, Error::Request(RequestError::HandshakeHeader { name: n, .. }) if n.eq_ignore_ascii_case(name)),
            "{name}: {e:?}"
        );
    }
    let post = http::Request::post("ws://example.com/").body(()).unwrap();
    assert!(matches!(
        post.into_client_request(),
        Err(Error::Request(RequestError::Method(_)))
    ));
    let h2 = http::Request::get("ws://example.com/")
        .version(http::Version::HTTP_2)
        .body(())
        .unwrap();
    assert!(matches!(
        h2.into_client_request(),
        Err(Error::Request(RequestError::Version(_)))
    ));
    let http_scheme = http::Request::get("http://example.com/").body(()).unwrap();
    assert!(matches!(
        http_scheme.into_client_request(),
        Err(Error::Url(_))
    ));
    // The URL forms give the same request.
    let url = "ws://example.com:9000/a?b=c";
    let expected = url.into_client_request().unwrap();
    assert_eq!(url.to_string().into_client_request().unwrap(), expected);
    let parsed: url::Url = url.parse().unwrap();
    assert_eq!(parsed.into_client_request().unwrap(), expected);
    let uri: http::Uri = url.parse().unwrap();
    assert_eq!(uri.into_client_request().unwrap(), expected);
    let plain = http::Request::get(url).body(()).unwrap();
    assert_eq!(plain.into_client_request().unwrap(), expected);
}

#[tokio::test]
async fn upgrade_http_then_a_socket_on_the_transport() {
    // A stand-in for hyper: the head is read and parsed elsewhere, the `101` written from
    // the `http::Response`, and the socket built from the agreement.
    let addr = one_server(|mut tcp, _| async move {
        let mut buf = vec![0; 4096];
        let mut len = 0;
        while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            len += tcp.read(&mut buf[len..]).await.unwrap();
        }
        let head = String::from_utf8(buf[..len].to_vec()).unwrap();
        let mut config = ServerConfig::default();
        config.subprotocols = vec!["echo".into()];
        config.deflate = Some(Default::default());
        let upgrade = config
            .upgrade_http(&to_http(&head), None, None)
            .await
            .unwrap();
        let mut out = format!("HTTP/1.1 {}\r\n", upgrade.response.status());
        for (n, v) in upgrade.response.headers() {
            out.push_str(&format!("{n}: {}\r\n", v.to_str().unwrap()));
        }
        out.push_str("\r\n");
        tcp.write_all(out.as_bytes()).await.unwrap();
        let ws = upgrade.negotiated.websocket(tcp, &[]);
        assert_eq!(ws.subprotocol(), Some("echo"));
        echo(ws).await;
    })
    .await;
    let mut client = ClientConfig::default();
    client.subprotocols = vec!["echo".into()];
    let (mut ws, handshake) = wsduplex::connect_with(format!("ws://{addr}/"), &client)
        .await
        .unwrap();
    assert!(
        handshake.response.deflate.is_some(),
        "deflate agreed over the http path"
    );
    assert_eq!(ws.subprotocol(), Some("echo"));
    let big = "x".repeat(100_000);
    ws.send(big.as_str()).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text(big));
}

#[tokio::test]
async fn from_raw_with_a_subprotocol_and_the_transport_back() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let mut server = WebSocket::from_raw(a, Role::Server, Config::default(), &[])
        .with_subprotocol(Some("chat".into()));
    let mut client = WebSocket::from_raw(b, Role::Client, Config::default(), &[]);
    assert_eq!(server.subprotocol(), Some("chat"));
    assert_eq!(client.subprotocol(), None);
    client.send("one").await.unwrap();
    assert_eq!(server.recv().await.unwrap().unwrap(), Message::text("one"));
    let _: &mut tokio::io::DuplexStream = server.get_mut();
    // Nothing in flight: the transport carries on as a plain stream.
    let mut a = server.into_inner();
    let mut b = client.into_inner();
    a.write_all(b"raw").await.unwrap();
    let mut got = [0; 3];
    b.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"raw");
}

#[cfg(feature = "self-signed")]
#[tokio::test]
async fn get_ref_reaches_the_tls_peer_certificate() {
    use wsduplex::tls;
    let server = tls::self_signed().unwrap();
    let client = tls::self_signed().unwrap();
    let acceptor = tls::TlsAcceptor::from(
        tls::server_config(
            server.cert_pem.as_bytes(),
            server.key_pem.as_bytes(),
            Some(client.cert_pem.as_bytes()),
        )
        .unwrap(),
    );
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel();
    let addr = one_server(|tcp, peer| async move {
        let stream = tls::accept(&acceptor, tcp).await.unwrap();
        let config = ServerConfig::default();
        let ws = read_request(stream, &config)
            .await
            .unwrap()
            .accept(&config)
            .await
            .unwrap();
        let (tcp, session) = ws.get_ref().get_ref();
        assert_eq!(tcp.peer_addr().unwrap(), peer);
        let certs = session.peer_certificates().unwrap().to_vec();
        let _ = seen_tx.send(certs);
        echo(ws).await;
    })
    .await;
    let mut config = ClientConfig::default();
    config
        .tls
        .extra_ca_pem
        .push(server.cert_pem.as_bytes().to_vec());
    config.tls.client_cert_pem = Some((
        client.cert_pem.as_bytes().to_vec(),
        client.key_pem.as_bytes().to_vec(),
    ));
    let url = format!("wss://127.0.0.1:{}/", addr.port());
    let (mut ws, _) = wsduplex::connect_with(&url, &config).await.unwrap();
    assert_eq!(ws.get_ref().tcp().unwrap().peer_addr().unwrap(), addr);
    let ClientStream::Tls(tls) = ws.get_ref() else {
        panic!("wss:// is TLS")
    };
    let server_certs = tls.get_ref().1.peer_certificates().unwrap();
    assert_eq!(
        tls::fingerprint(server_certs[0].as_ref()),
        server.fingerprint
    );
    ws.send("hi").await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("hi"));
    let certs = seen_rx.await.unwrap();
    assert_eq!(certs.len(), 1);
    assert_eq!(tls::fingerprint(certs[0].as_ref()), client.fingerprint);
}

/// The hooks in these tests are synchronous: the front door's future is ready at once.
fn now<T>(f: impl std::future::Future<Output = T>) -> T {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(f).poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("a synchronous hook was not ready"),
    }
}
