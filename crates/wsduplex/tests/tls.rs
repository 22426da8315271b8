//! `wss://` end to end over loopback TCP: a self-signed server, clients that trust it, do
//! not trust it, or are told not to check; mutual TLS; TLS meeting plain TCP.
#![cfg(feature = "tls")]

use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use wsduplex::server::{read_request, ServerConfig};
use wsduplex::tls::{self, rustls, TlsAcceptor};
use wsduplex::{ClientConfig, CloseCode, Error, Message};

/// A TLS echo server on `127.0.0.1:0`; each connection's outcome goes to the receiver
/// (`Ok` for a WebSocket that ended, `Err` for a refused one).
async fn serve(acceptor: TlsAcceptor) -> (SocketAddr, mpsc::UnboundedReceiver<Result<(), Error>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let result = async {
                    let config = ServerConfig::default();
                    let stream = tls::accept(&acceptor, tcp).await?;
                    let mut ws = read_request(stream, &config).await?.accept(&config).await?;
                    while let Some(item) = ws.recv().await {
                        let msg = item?;
                        if msg.is_data() {
                            ws.send(msg).await?;
                        }
                    }
                    Ok(())
                }
                .await;
                let _ = tx.send(result);
            });
        }
    });
    (addr, rx)
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
