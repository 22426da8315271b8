//! `wsduplex serve` and `wsduplex client` over TLS, as real processes: a self-signed
//! server, a server with certificate files, and clients that trust it, do not, or are told
//! not to check; `ws://` and `wss://` over the IPv6 loopback.

mod common;
#[path = "../../../tests/ipv6_loopback.rs"]
mod ipv6_loopback;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;

/// A running `wsduplex serve` with TLS options; killed on drop.
struct TlsServer {
    child: Option<Child>,
    /// `HOST:PORT` from the ready line.
    addr: String,
    stderr_lines: mpsc::Receiver<String>,
}

impl TlsServer {
    fn start(tls_args: &[&str]) -> Self {
        Self::start_on("127.0.0.1:0", tls_args)
    }

    /// `wsduplex serve --listen LISTEN` with TLS options.
    fn start_on(listen: &str, tls_args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", listen, "--workers", "2"])
            .args(tls_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wsduplex serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let (etx, erx) = mpsc::channel();
        thread::spawn(move || {
            // Drained all along, so the server never blocks on a full pipe.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = etx.send(line);
            }
        });
        let line = rx
            .recv_timeout(TIMEOUT)
            .expect("wsduplex serve printed no ready line");
        let addr = line
            .trim_end()
            .strip_prefix("listening on https://")
            .unwrap_or_else(|| panic!("unexpected ready line {line:?}"))
            .to_string();
        Self {
            child: Some(child),
            addr,
            stderr_lines: erx,
        }
    }

    /// The next line it printed on stderr.
    fn stderr_line(&self) -> String {
        self.stderr_lines
            .recv_timeout(TIMEOUT)
            .expect("no stderr line")
    }

    fn url(&self, path: &str) -> String {
        format!("wss://{}{path}", self.addr)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A scratch directory for this test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("tls-{name}"));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Writes a fresh self-signed certificate and key (for localhost, 127.0.0.1, ::1).
fn cert_files(name: &str) -> (String, String) {
    write_cert(
        name,
        &wsduplex::tls::self_signed().expect("generate a certificate"),
    )
}

fn write_cert(name: &str, generated: &wsduplex::tls::SelfSigned) -> (String, String) {
    let dir = scratch(name);
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, &generated.cert_pem).expect("write cert");
    std::fs::write(&key, &generated.key_pem).expect("write key");
    (
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    )
}

#[test]
fn self_signed_server_prints_https_and_its_fingerprint() {
    let server = TlsServer::start(&["--tls-self-signed"]);
    let note = server.stderr_line();
    let fingerprint = note
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .split(':')
        .collect::<Vec<_>>();
    assert!(note.contains("SHA-256 fingerprint"), "{note:?}");
    assert_eq!(fingerprint.len(), 32, "{note:?}");
    assert!(
        fingerprint
            .iter()
            .all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit())),
        "{note:?}"
    );

    let out = run(
        &["client", "--insecure", &server.url("/echo")],
        b"over tls\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout_str(), "over tls\n");

    // Without --insecure the certificate is refused, in one line that says why.
    let out = run(&["client", &server.url("/echo")], b"x\n");
    let line = out.assert_one_line_error();
    assert!(line.contains("tls handshake failed"), "{line}");
    assert!(line.contains("UnknownIssuer"), "{line}");
}

#[test]
fn certificate_files_are_served_and_trusted_with_cacert() {
    let (cert, key) = cert_files("files");
    let server = TlsServer::start(&["--tls-cert", &cert, "--tls-key", &key]);
    let out = run(
        &["client", "--cacert", &cert, &server.url("/echo")],
        "héllo\n/close 1000 bye\n".as_bytes(),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout_str(), "héllo\n");
    // The name checked is the URL's: localhost is in the certificate as well.
    let port = server.addr.rsplit(':').next().unwrap();
    let out = run(
        &[
            "client",
            "--cacert",
            &cert,
            &format!("wss://localhost:{port}/echo"),
        ],
        b"by name\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout_str(), "by name\n");
}

#[test]
fn tls_server_survives_plain_and_failed_clients() {
    let server = TlsServer::start(&["--tls-self-signed"]);
    let addr: std::net::SocketAddr = server.addr.parse().unwrap();
    // Plain HTTP at a TLS port: the handshake fails, the connection closes, nothing else.
    let mut tcp = connect(addr);
    tcp.write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    let mut answer = Vec::new();
    // Closed (possibly with a reset): what matters is that it ends and is no page.
    let _ = tcp.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    // A ws:// client at a TLS port fails with one line.
    let out = run(&["client", &format!("ws://{addr}/echo")], b"x\n");
    out.assert_one_line_error();
    // A client that refuses the certificate.
    run(&["client", &server.url("/echo")], b"x\n").assert_one_line_error();
    // The server still serves.
    let out = run(&["client", "--insecure", &server.url("/echo")], b"still\n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout_str(), "still\n");
}

#[test]
fn tls_options_are_checked_before_serving() {
    let out = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--tls-key",
            "/nonexistent/key.pem",
        ],
        b"",
    );
    let line = out.assert_one_line_error();
    assert!(line.contains("cannot read /nonexistent/cert.pem"), "{line}");
    assert!(out.stdout.is_empty(), "{out:?}");
    // --tls-cert without --tls-key is a usage error.
    let out = run(&["serve", "--tls-cert", "cert.pem"], b"");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // A client certificate needs its key.
    let out = run(&["client", "--cert", "c.pem", "wss://127.0.0.1:1/"], b"");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn client_certificates_for_mutual_tls() {
    use wsduplex::server::{read_request, ServerConfig};
    let server_cert = wsduplex::tls::self_signed().unwrap();
    let client_cert = wsduplex::tls::self_signed().unwrap();
    let (ca, _) = write_cert("mtls-server", &server_cert);
    let (cert, key) = write_cert("mtls-client", &client_cert);
    // The server side is the library: `serve` has no client-CA option.
    let acceptor = wsduplex::tls::TlsAcceptor::from(
        wsduplex::tls::server_config(
            server_cert.cert_pem.as_bytes(),
            server_cert.key_pem.as_bytes(),
            Some(client_cert.cert_pem.as_bytes()),
        )
        .unwrap(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("wss://{}/echo", listener.local_addr().unwrap());
    rt.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let config = ServerConfig::default();
                let tls = wsduplex::tls::accept(&acceptor, tcp).await?;
                let mut ws = read_request(tls, &config).await?.accept(&config).await?;
                while let Some(msg) = ws.recv().await {
                    let msg = msg?;
                    if msg.is_data() {
                        ws.send(msg).await?;
                    }
                }
                Ok::<_, wsduplex::Error>(())
            });
        }
    });

    let out = run(
        &[
            "client", "--cacert", &ca, "--cert", &cert, "--key", &key, &url,
        ],
        b"mutual\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout_str(), "mutual\n");
    // Without a client certificate the server refuses it (TLS 1.3: the client learns it
    // after its side of the handshake, from the server's alert).
    let out = run(&["client", "--cacert", &ca, &url], b"x\n");
    let line = out.assert_one_line_error();
    // (Or a reset that overtook the alert: the server closes with the request unread.)
    assert!(
        line.contains("tls handshake failed: received fatal alert: CertificateRequired")
            || line.contains("reset"),
        "{line}"
    );
    // A key file without a key is a clear error.
    let out = run(
        &[
            "client", "--cacert", &ca, "--cert", &cert, "--key", &ca, &url,
        ],
        b"x\n",
    );
    let line = out.assert_one_line_error();
    assert!(line.contains("no private key"), "{line}");
    rt.shutdown_background();
}

/// `wsduplex bench connect` and `idle` over `wss://`: full TLS handshakes against a server
/// trusted with `--cacert`, a clear failure for one that is not trusted, and `bench echo`
/// (which drives the TCP socket itself) refusing `wss://`.
#[test]
fn bench_connect_and_idle_over_wss() {
    let (cert, key) = cert_files("bench");
    let server = TlsServer::start(&["--tls-cert", &cert, "--tls-key", &key]);
    let url = server.url("/echo");
    let json = |out: &common::Output| -> serde_json::Value {
        assert!(out.status.success(), "{out:?}");
        serde_json::from_str(out.stdout_str().trim()).expect("one JSON report")
    };
    let connect = ["bench", "connect", &url, "--cacert", &cert, "--json", "-q"];
    let out = run(&[&connect[..], &["--count", "20", "-c", "4"]].concat(), b"");
    let report = json(&out);
    assert_eq!(report["handshakes"], 20, "{report}");
    assert_eq!(report["errors"], 0, "{report}");

    let idle = ["bench", "idle", &url, "--cacert", &cert, "--json", "-q"];
    let out = run(
        &[&idle[..], &["-c", "20", "--duration", "200ms"]].concat(),
        b"",
    );
    let report = json(&out);
    assert_eq!(report["opened"], 20, "{report}");
    assert_eq!(report["dropped"], 0, "{report}");

    let out = run(&["bench", "connect", &url, "--count", "1", "-c", "1"], b"");
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("UnknownIssuer"), "{out:?}");

    let out = run(&["bench", "echo", &url, "--cacert", &cert], b"");
    let line = out.assert_one_line_error();
    assert!(line.contains("plain ws:// only"), "{line}");
}

/// `wsduplex serve --listen [::1]:0`, plain and with TLS, and `wsduplex client` to
/// `ws://[::1]:PORT` and `wss://[::1]:PORT` (the certificate checked for the address
/// `::1`); the client's `Host` header is `[::1]:PORT`.
#[test]
fn ws_and_wss_over_the_ipv6_loopback() {
    if !ipv6_loopback::has_ipv6_loopback() {
        return;
    }
    let server = Server::start_with(&["--listen", "[::1]:0"]);
    assert!(
        server.ready_line.starts_with("listening on http://[::1]:"),
        "{}",
        server.ready_line
    );
    let out = run(&["client", &server.url("/echo")], b"over ipv6\n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout_str(), "over ipv6\n");
    server.stop();

    let (cert, key) = cert_files("ipv6");
    let server = TlsServer::start_on("[::1]:0", &["--tls-cert", &cert, "--tls-key", &key]);
    assert!(server.addr.starts_with("[::1]:"), "{}", server.addr);
    let out = run(
        &["client", "--cacert", &cert, &server.url("/echo")],
        b"over ipv6 and tls\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout_str(), "over ipv6 and tls\n");

    // The Host header, as a server reads it.
    let listener = std::net::TcpListener::bind("[::1]:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, heads) = mpsc::channel();
    let fake = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let (mut ws, head) = accept_upgrade(stream);
        // stdin is empty: the client closes at once.
        ws.expect_close();
        ws.send_close(1000, "");
        let _ = tx.send(head);
    });
    let out = run(&["client", &format!("ws://{addr}/")], b"");
    assert!(out.status.success(), "{out:?}");
    let head = heads.recv_timeout(TIMEOUT).unwrap_or_else(|_| {
        let _ = fake.join();
        panic!("the fake [::1] server saw no upgrade: {out:?}")
    });
    assert_eq!(
        header(&head, "host"),
        Some(format!("[::1]:{}", addr.port()).as_str()),
        "{head}"
    );
}
