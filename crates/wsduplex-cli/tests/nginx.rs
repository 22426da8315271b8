//! `wsduplex serve` behind Debian's nginx, with the configuration of docs/deployment.md
//! (read from that file, so the two cannot drift apart): once plain,
//! once with TLS terminated at nginx. Echo traffic goes through it with our client (text,
//! binary, 1 MiB, ping/pong, close codes), and `--trust-proxy` is checked end to end: the
//! server's debug log names the address nginx saw, not the one a client claims.
//!
//! The interop peers' client scripts (`tests/interop/{python,node}/client.*`, installed by
//! `tests/interop/setup.sh`) run through nginx too, against `ws://` and `wss://` (trusting
//! the test's certificate with `--cafile`), with `--plain-echo` because `/echo` only echoes:
//! text, binary, empty and 1 MiB messages, their own fragmented messages, ping/pong, and
//! their close codes echoed.
//!
//! nginx runs as the current user in the foreground (`daemon off; master_process off;`),
//! everything it writes in a temporary directory. Without nginx these tests print a note
//! and pass; without a peer, its part is skipped the same way. `WSDUPLEX_REQUIRE_INTEROP=1`
//! (CI) makes either a failure.

mod common;
#[path = "../../../tests/interop/peer.rs"]
mod peer;

use common::{send_signal, BIN, TIMEOUT};
use peer::Peer;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use wsduplex::client::{client_handshake, Target};
use wsduplex::{ClientConfig, CloseCode, Message};

const MIB: usize = 1 << 20;
/// The client's source address: not nginx's 127.0.0.1, so the forwarded address shows.
const CLIENT_IP: &str = "127.0.0.2";
/// A peer client script's bound: it gives up after 20 s itself.
const PEER_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn echo_through_nginx() {
    through_nginx(false);
}

#[test]
fn echo_through_nginx_terminating_tls() {
    through_nginx(true);
}

fn through_nginx(tls: bool) {
    let Some(nginx_bin) = nginx() else {
        return;
    };
    let server = Serve::start();
    let nginx = Nginx::start(&nginx_bin, server.addr, tls);
    let scheme = if tls { "wss" } else { "ws" };
    let url = format!("{scheme}://127.0.0.1:{}/echo", nginx.port);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(TIMEOUT * 3, echo_traffic(&url, nginx.cert_pem.as_deref()))
            .await
            .expect("echo through nginx timed out");
    });

    // The CLI client too, the way a user would run it.
    let mut args = vec!["client".to_string(), "--no-proxy".into()];
    let cert = nginx.dir.join("cert.pem");
    if tls {
        args.extend(["--cacert".into(), cert.display().to_string()]);
    }
    args.push(url.clone());
    let out = run_client(&args, b"hello via nginx\n/close 4002 bye\n");
    assert!(out.status.success(), "{out:?}\n{}", nginx.logs());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello via nginx\n");

    // Independent implementations through the same nginx.
    for peer in [Peer::Python, Peer::Node] {
        peer_client_through_nginx(peer, &url, tls.then_some(cert.as_path()), &nginx);
    }

    let log = strip_ansi(&server.stop());
    // Through nginx: the address nginx saw, reported by a trusted peer.
    assert!(
        log.contains(&format!("client={CLIENT_IP} peer=127.0.0.1")),
        "no forwarded client address in the server log:\n{log}"
    );
    // Spoofed Forwarded / X-Forwarded-For from the client never wins.
    assert!(
        !log.contains("198.51.100."),
        "spoofed address believed:\n{log}"
    );
    // Directly from an untrusted peer, the headers are ignored.
    assert!(
        log.contains(&format!("client={CLIENT_IP} peer={CLIENT_IP}")),
        "{log}"
    );
}

/// Text, binary, 1 MiB, ping/pong and a 4001 close through nginx, from `CLIENT_IP` and
/// with spoofed forwarding headers; then one direct connection to the server.
async fn echo_traffic(url: &str, cert_pem: Option<&str>) {
    let mut config = ClientConfig::default();
    config.headers = vec![
        ("X-Forwarded-For".into(), "198.51.100.1".into()),
        ("Forwarded".into(), "for=198.51.100.2".into()),
    ];
    if let Some(pem) = cert_pem {
        config.tls.extra_ca_pem.push(pem.as_bytes().to_vec());
    }
    let target = Target::parse(url).unwrap();
    let tcp = connect_from(CLIENT_IP, &target).await;
    if target.tls {
        let stream = wsduplex::tls::connect(tcp, &target.host, &config.tls)
            .await
            .expect("tls with nginx");
        echo_session(stream, &target, &config).await;
    } else {
        echo_session(tcp, &target, &config).await;
    }
}

async fn echo_session<S>(io: S, target: &Target, config: &ClientConfig)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut ws, handshake) = client_handshake(io, target, config)
        .await
        .expect("handshake through nginx");
    assert!(
        handshake.response_head.contains("nginx"),
        "{}",
        handshake.response_head
    );
    let big: Vec<u8> = (0..MIB).map(|i| (i % 251) as u8).collect();
    let sent = [
        Message::text("hello through nginx"),
        Message::text("é漢字🎉"),
        Message::binary(vec![0u8, 1, 2, 255]),
        Message::binary(Vec::new()),
        Message::binary(big),
        Message::text("x".repeat(MIB)),
    ];
    for msg in &sent {
        ws.send(msg.clone()).await.unwrap();
    }
    ws.send(Message::Ping("are you there".into()))
        .await
        .unwrap();
    for msg in &sent {
        assert_eq!(&ws.recv().await.unwrap().unwrap(), msg);
    }
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::Pong("are you there".into())
    );
    ws.close(CloseCode::new(4001), "bye").await.unwrap();
    let mut closed = None;
    while let Some(item) = ws.recv().await {
        if let Message::Close(frame) = item.unwrap() {
            closed = frame.map(|f| f.code);
        }
    }
    // RFC 6455 §5.5.1: the server echoes the status code.
    assert_eq!(closed, Some(CloseCode::new(4001)));
}

/// A TCP connection from `source` (any port) to the target.
async fn connect_from(source: &str, target: &Target) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(source.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    let addr: SocketAddr = format!("{}:{}", target.host, target.port).parse().unwrap();
    socket.connect(addr).await.expect("connect to nginx")
}

// ---------------------------------------------------------------------------------------
// wsduplex serve, with its debug log kept
// ---------------------------------------------------------------------------------------

struct Serve {
    child: Option<Child>,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Serve {
    fn start() -> Self {
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--workers",
                "1",
                "--trust-proxy",
                "127.0.0.1/32",
                "--trust-proxy",
                "::1/128",
            ])
            .env("WSDUPLEX_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wsduplex serve");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut line = String::new();
        stdout.read_line(&mut line).expect("ready line");
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected ready line {line:?}"));
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = stdout.read_to_string(&mut rest);
        });
        Self {
            child: Some(child),
            addr,
            stderr,
            reader: Some(reader),
        }
    }

    /// One direct connection from `CLIENT_IP` with spoofed headers (an untrusted peer),
    /// then SIGTERM; returns everything the server logged.
    fn stop(mut self) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let addr = self.addr;
        rt.block_on(async {
            let target = Target::parse(&format!("ws://{addr}/")).unwrap();
            let mut s = connect_from(CLIENT_IP, &target).await;
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            s.write_all(
                b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.3\r\n\
                  Forwarded: for=198.51.100.4\r\nConnection: close\r\n\r\n",
            )
            .await
            .unwrap();
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink).await;
        });
        let mut child = self.child.take().unwrap();
        common::wait_until_caught(child.id(), 15);
        send_signal(child.id(), "TERM");
        let deadline = Instant::now() + TIMEOUT;
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "wsduplex serve did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
        // The pipe's reader ends once the process is gone.
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let log = self.stderr.lock().unwrap().clone();
        log
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// nginx
// ---------------------------------------------------------------------------------------

struct Nginx {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    cert_pem: Option<String>,
}

impl Nginx {
    fn start(bin: &Path, upstream: SocketAddr, tls: bool) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "wsduplex-nginx-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let (http_part, server_part) = deployment_snippet();
        let server_part = server_part.replace(
            "proxy_pass http://127.0.0.1:8080;",
            &format!("proxy_pass http://{upstream};"),
        );
        assert!(server_part.contains(&upstream.to_string()));
        let mut cert_pem = None;
        let listen = if tls {
            let generated = wsduplex::tls::self_signed().unwrap();
            std::fs::write(dir.join("cert.pem"), &generated.cert_pem).unwrap();
            std::fs::write(dir.join("key.pem"), &generated.key_pem).unwrap();
            cert_pem = Some(generated.cert_pem);
            format!(
                "listen 127.0.0.1:{port} ssl;\n        ssl_certificate {d}/cert.pem;\n        \
                 ssl_certificate_key {d}/key.pem;",
                d = dir.display()
            )
        } else {
            format!("listen 127.0.0.1:{port};")
        };
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\nevents {{ worker_connections 64; }}\n\
             http {{\n    access_log {d}/access.log;\n    client_body_temp_path {d}/body;\n    \
             proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    \
             uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n\n{http_part}\n    \
             server {{\n        {listen}\n{server_part}\n    }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), &conf).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
            .spawn()
            .expect("start nginx");
        let mut nginx = Self {
            child: Some(child),
            dir,
            port,
            cert_pem,
        };
        let deadline = Instant::now() + TIMEOUT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = nginx.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "nginx exited at start ({status}):\n{conf}\n{}",
                    nginx.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "nginx not listening:\n{}",
                nginx.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }

    fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!(
            "--- nginx stderr ---\n{}--- error.log ---\n{}--- access.log ---\n{}",
            read("stderr"),
            read("error.log"),
            read("access.log")
        )
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            send_signal(child.id(), "TERM");
            let deadline = Instant::now() + TIMEOUT;
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let _ = writeln!(std::io::stderr(), "{}", self.logs());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The nginx block of docs/deployment.md, split at `# in server { }`: what goes in
/// `http { }` and what goes in `server { }`.
fn deployment_snippet() -> (String, String) {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/deployment.md"
    ))
    .expect("read docs/deployment.md");
    let start = doc
        .find("```nginx\n")
        .expect("docs/deployment.md has an nginx block")
        + 9;
    let block = &doc[start..];
    let block = &block[..block.find("```").expect("nginx block ends")];
    let (http, server) = block
        .split_once("# in server { }")
        .expect("the block has a '# in server { }' part");
    (http.to_string(), server.to_string())
}

fn nginx() -> Option<PathBuf> {
    let found = ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    if found.is_none() {
        if std::env::var_os("WSDUPLEX_REQUIRE_INTEROP").is_some_and(|v| v == "1") {
            panic!("nginx is not installed: apt-get install nginx");
        }
        // Straight to stderr, past the test harness's capture: a skip must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "\n*** nginx is not installed, SKIPPING the reverse-proxy test; apt-get install \
             nginx (WSDUPLEX_REQUIRE_INTEROP=1 makes this fail) ***\n"
        );
    }
    found
}

/// A port that was free a moment ago (nginx must be told its port).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Removes terminal colour sequences (`ESC [ ... m`) from the log.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[derive(Debug)]
struct ClientOutput {
    status: std::process::ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
}

fn run_client(args: &[String], stdin: &[u8]) -> ClientOutput {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    run_bounded(cmd, stdin, TIMEOUT)
}

/// Runs `cmd` with `stdin` as its whole input; kills it and panics after `limit`.
fn run_bounded(mut cmd: Command, stdin: &[u8], limit: Duration) -> ClientOutput {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let pid = child.id();
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let Ok(out) = rx.recv_timeout(limit) else {
        send_signal(pid, "KILL");
        panic!("{what} did not exit within {limit:?}");
    };
    let out = out.unwrap();
    ClientOutput {
        status: out.status,
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

// ---------------------------------------------------------------------------------------
// The interop peers (tests/interop/), as clients through nginx
// ---------------------------------------------------------------------------------------

/// The peer's client script against `url` (nginx in front of `wsduplex serve`): every one
/// of its checks must pass. `cafile`: the certificate nginx presents, for `wss://`.
fn peer_client_through_nginx(peer: Peer, url: &str, cafile: Option<&Path>, nginx: &Nginx) {
    let Some(mut cmd) = peer.command("client", "its client through nginx") else {
        return;
    };
    cmd.arg("--plain-echo");
    if let Some(ca) = cafile {
        cmd.args([OsString::from("--cafile"), ca.into()]);
    }
    cmd.arg(url);
    let out = run_bounded(cmd, b"", PEER_TIMEOUT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{} client through nginx failed ({})\n--- its stdout ---\n{stdout}\n--- its stderr \
         ---\n{}\n{}",
        peer.name(),
        out.status,
        out.stderr,
        nginx.logs()
    );
    // The last check of the script: a second connection, closed by the peer.
    assert!(
        stdout.contains("ok: client-initiated close 4003 echoed"),
        "{stdout}"
    );
    // Its checks, one per line: shown with --nocapture.
    eprintln!("--- {} client through {url} ---\n{stdout}", peer.name());
}
