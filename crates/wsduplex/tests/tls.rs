//! `wss://` end to end over loopback TCP: a self-signed server, clients that trust it, do
//! not trust it, or are told not to check; a trusted certificate for another name; mutual
//! TLS; TLS meeting plain TCP; `ws://` and `wss://` over the IPv6 loopback.
#![cfg(feature = "tls")]

#[path = "../../../tests/ipv6_loopback.rs"]
mod ipv6_loopback;

use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use wsduplex::server::{read_request, ServerConfig};
use wsduplex::tls::{self, rustls, TlsAcceptor};
use wsduplex::{ClientConfig, CloseCode, Error, Message};

/// What the server saw of a connection that became a WebSocket.
#[derive(Debug)]
struct Seen {
    /// The request's `Host` header.
    host: String,
    /// The TCP peer.
    peer: SocketAddr,
}

/// A TLS echo server on `127.0.0.1:0`; each connection's outcome goes to the receiver
/// (`Ok` for a WebSocket that ended, `Err` for a refused one).
async fn serve(
    acceptor: TlsAcceptor,
) -> (SocketAddr, mpsc::UnboundedReceiver<Result<Seen, Error>>) {
    serve_at("127.0.0.1:0", Some(acceptor)).await
}

/// An echo server on `bind`, TLS if an acceptor is given; outcomes as for [`serve`].
async fn serve_at(
    bind: &str,
    acceptor: Option<TlsAcceptor>,
) -> (SocketAddr, mpsc::UnboundedReceiver<Result<Seen, Error>>) {
    let listener = TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = listener.accept().await.unwrap();
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let result = match acceptor {
                    None => echo_server(tcp, peer).await,
                    Some(acceptor) => match tls::accept(&acceptor, tcp).await {
                        Ok(stream) => echo_server(stream, peer).await,
                        Err(e) => Err(e),
                    },
                };
                let _ = tx.send(result);
            });
        }
    });
    (addr, rx)
}

async fn echo_server<S>(io: S, peer: SocketAddr) -> Result<Seen, Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let config = ServerConfig::default();
    let incoming = read_request(io, &config).await?;
    let host = incoming.request().header("host").unwrap_or_default();
    let host = String::from_utf8_lossy(host).into_owned();
    let mut ws = incoming.accept(&config).await?;
    while let Some(item) = ws.recv().await {
        let msg = item?;
        if msg.is_data() {
            ws.send(msg).await?;
        }
    }
    Ok(Seen { host, peer })
}

async fn echo_once(url: &str, config: &ClientConfig) -> Result<(), Error> {
    let (mut ws, handshake) = wsduplex::connect_with(url, config).await?;
    assert_eq!(handshake.response.subprotocol, None);
    ws.send("over tls").await?;
    let big = vec![7u8; 200_000];
    ws.send(Message::binary(big.clone())).await?;
    assert_eq!(ws.recv().await.unwrap()?, Message::text("over tls"));
    assert_eq!(ws.recv().await.unwrap()?, Message::binary(big));
    ws.close(CloseCode::NORMAL, "").await?;
    while let Some(item) = ws.recv().await {
        item?;
    }
    Ok(())
}

fn trusting(pem: &str) -> ClientConfig {
    let mut config = ClientConfig::default();
    config.tls.extra_ca_pem.push(pem.as_bytes().to_vec());
    config
}

#[tokio::test]
async fn echo_over_wss_with_the_certificate_as_extra_ca() {
    let cert = tls::self_signed().unwrap();
    let (addr, mut outcomes) = serve(cert.acceptor.clone()).await;
    let config = trusting(&cert.cert_pem);
    echo_once(&format!("wss://127.0.0.1:{}/echo", addr.port()), &config)
        .await
        .unwrap();
    outcomes.recv().await.unwrap().unwrap();
    // The name in the URL is what is checked (and sent as SNI): localhost is in the
    // certificate too.
    echo_once(&format!("wss://localhost:{}/echo", addr.port()), &config)
        .await
        .unwrap();
    outcomes.recv().await.unwrap().unwrap();
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_tls_error_on_both_sides() {
    let cert = tls::self_signed().unwrap();
    let (addr, mut outcomes) = serve(cert.acceptor.clone()).await;
    let url = format!("wss://127.0.0.1:{}/echo", addr.port());
    let e = wsduplex::connect(&url).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Tls(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))
        ),
        "{e:?}"
    );
    // Display does not repeat the source; the chain says why.
    assert_eq!(e.to_string(), "tls handshake failed");
    let source = std::error::Error::source(&e).unwrap().to_string();
    assert!(source.contains("UnknownIssuer"), "{source}");
    // The server saw the client's alert; it keeps serving others.
    assert!(matches!(outcomes.recv().await.unwrap(), Err(Error::Tls(_))));
    echo_once(&url, &trusting(&cert.cert_pem)).await.unwrap();
    // Another self-signed certificate is no help.
    let other = tls::self_signed().unwrap();
    let e = wsduplex::connect_with(&url, &trusting(&other.cert_pem))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Tls(_)), "{e:?}");
}

#[tokio::test]
async fn dangerous_accept_invalid_certs_accepts_a_self_signed_server() {
    let cert = tls::self_signed().unwrap();
    let (addr, _outcomes) = serve(cert.acceptor.clone()).await;
    let mut config = ClientConfig::default();
    config.tls.dangerous_accept_invalid_certs = true;
    echo_once(&format!("wss://127.0.0.1:{}/echo", addr.port()), &config)
        .await
        .unwrap();
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate() {
    let server = tls::self_signed().unwrap();
    let client = tls::self_signed().unwrap();
    let config = tls::server_config(
        server.cert_pem.as_bytes(),
        server.key_pem.as_bytes(),
        Some(client.cert_pem.as_bytes()),
    )
    .unwrap();
    let (addr, mut outcomes) = serve(TlsAcceptor::from(config)).await;
    let url = format!("wss://127.0.0.1:{}/echo", addr.port());

    let mut with_cert = trusting(&server.cert_pem);
    with_cert.tls.client_cert_pem = Some((
        client.cert_pem.as_bytes().to_vec(),
        client.key_pem.as_bytes().to_vec(),
    ));
    echo_once(&url, &with_cert).await.unwrap();
    outcomes.recv().await.unwrap().unwrap();

    // TLS 1.3: the client learns of the refusal when it reads, after its handshake.
    let without = trusting(&server.cert_pem);
    let e = wsduplex::connect_with(&url, &without).await.unwrap_err();
    // The server closes right after its alert, with the client's request unread: its
    // kernel may answer with a reset, which can overtake the alert.
    assert!(
        matches!(
            &e,
            Error::Tls(rustls::Error::AlertReceived(
                rustls::AlertDescription::CertificateRequired
            ))
        ) || matches!(&e, Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionReset),
        "{e:?}"
    );
    let server_side = outcomes.recv().await.unwrap().unwrap_err();
    assert!(
        matches!(
            server_side,
            Error::Tls(rustls::Error::NoCertificatesPresented)
        ),
        "{server_side:?}"
    );
}

#[tokio::test]
async fn tls_meeting_plain_tcp_fails_cleanly_both_ways() {
    // A wss:// client at a plain server.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let plain = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        read_request(tcp, &ServerConfig::default()).await.err()
    });
    let mut config = ClientConfig::default();
    config.tls.dangerous_accept_invalid_certs = true;
    let e = wsduplex::connect_with(&format!("wss://127.0.0.1:{}/", addr.port()), &config)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Tls(_) | Error::Io(_)), "{e:?}");
    assert!(plain.await.unwrap().is_some());

    // A ws:// client at a TLS server.
    let cert = tls::self_signed().unwrap();
    let (addr, mut outcomes) = serve(cert.acceptor).await;
    let e = wsduplex::connect(&format!("ws://127.0.0.1:{}/", addr.port()))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Io(_) | Error::Response(_)), "{e:?}");
    assert!(matches!(outcomes.recv().await.unwrap(), Err(Error::Tls(_))));
}

#[tokio::test]
async fn bad_tls_settings_are_config_errors() {
    let mut config = ClientConfig::default();
    config.tls.extra_ca_pem.push(b"no pem here".to_vec());
    let e = config.tls.to_rustls_config().unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid tls settings: no certificate in extra ca certificates"
    );
    let Err(e) = tls::acceptor_from_pem_files("/nonexistent/cert.pem", "/nonexistent/key.pem")
    else {
        panic!("no such files");
    };
    assert_eq!(
        e.to_string(),
        "invalid tls settings: cannot read /nonexistent/cert.pem"
    );
}

/// A certificate authority made for one test, and the certificates it signs.
struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl TestCa {
    fn new() -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "wsduplex test ca");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    /// The CA certificate, PEM: what a client trusts.
    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// An acceptor serving a certificate for `names` (and nothing else) signed by this CA.
    fn acceptor_for(&self, names: &[&str]) -> TlsAcceptor {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let leaf = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.cert, &self.key)
            .unwrap();
        tls::acceptor_from_pem(leaf.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap()
    }
}

/// `e` is the client's refusal of a certificate that does not name `host` but `presented`.
fn assert_name_mismatch(e: &Error, host: &str, presented: &str) {
    match e {
        Error::Tls(rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForNameContext {
                expected,
                presented: names,
            },
        )) => {
            assert_eq!(expected.to_str(), host, "{e:?}");
            assert_eq!(names.len(), 1, "{e:?}");
            assert!(names[0].contains(presented), "{e:?}");
        }
        other => panic!("expected a name mismatch for {host}, got {other:?}"),
    }
    // What a user reads: the chain says which name was wanted.
    let source = std::error::Error::source(e).unwrap().to_string();
    assert!(
        source.contains(&format!("certificate not valid for name \"{host}\"")),
        "{source}"
    );
}

#[tokio::test]
async fn a_trusted_certificate_for_another_name_is_refused() {
    let ca = TestCa::new();
    let config = trusting(&ca.pem());

    // The CA's certificate for `localhost` serves `localhost`...
    let (addr, mut outcomes) = serve(ca.acceptor_for(&["localhost"])).await;
    echo_once(&format!("wss://localhost:{}/echo", addr.port()), &config)
        .await
        .unwrap();
    outcomes.recv().await.unwrap().unwrap();
    // ...and not the address `localhost` resolves to: names are not resolved.
    let e = wsduplex::connect_with(&format!("wss://127.0.0.1:{}/echo", addr.port()), &config)
        .await
        .unwrap_err();
    assert_name_mismatch(&e, "127.0.0.1", "localhost");

    // The same trusted CA, a certificate for a name that is neither.
    let (addr, _outcomes) = serve(ca.acceptor_for(&["example.invalid"])).await;
    for host in ["127.0.0.1", "localhost"] {
        let url = format!("wss://{host}:{}/echo", addr.port());
        let e = wsduplex::connect_with(&url, &config).await.unwrap_err();
        assert_name_mismatch(&e, host, "example.invalid");
    }
}

#[tokio::test]
async fn ws_and_wss_over_the_ipv6_loopback() {
    if !ipv6_loopback::has_ipv6_loopback() {
        return;
    }
    let cert = tls::self_signed().unwrap();
    for (scheme, acceptor) in [("ws", None), ("wss", Some(cert.acceptor.clone()))] {
        let (addr, mut outcomes) = serve_at("[::1]:0", acceptor).await;
        assert_eq!(addr.ip(), std::net::Ipv6Addr::LOCALHOST, "{addr}");
        // For wss://, the certificate is checked for the address ::1.
        let url = format!("{scheme}://[::1]:{}/echo", addr.port());
        echo_once(&url, &trusting(&cert.cert_pem)).await.unwrap();
        let seen = outcomes.recv().await.unwrap().unwrap();
        assert_eq!(seen.host, format!("[::1]:{}", addr.port()), "{url}");
        assert_eq!(seen.peer.ip(), std::net::Ipv6Addr::LOCALHOST, "{url}");
    }
}
