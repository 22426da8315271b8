//! The client through real proxies: Debian's `tinyproxy` (HTTP `CONNECT`, with and without
//! basic auth, and refusing a port) and `danted` (SOCKS5, allowing and blocking), each
//! started by its test with a generated configuration in a temporary directory. That a
//! connection went through the proxy is read from the daemon's own log: tinyproxy's
//! `CONNECT 127.0.0.1:PORT` request line, danted's `tcp/connect` line to that port.
//!
//! SOCKS5 username/password (RFC 1929) is tested against a small SOCKS5 server written
//! here: `danted` checks usernames against the system's user accounts, and a test must not
//! create those. The same server checks that the target's host *name* reaches the proxy.
//!
//! Without the daemons these tests print a note and pass, unless
//! `WSDUPLEX_REQUIRE_INTEROP=1` (CI, which installs them) makes that a failure.
#![cfg(feature = "tls")]

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use wsduplex::proxy::{ProxyError, ProxyRules, SocksReply};
use wsduplex::server::{read_request, ServerConfig};
use wsduplex::tls::{self, TlsAcceptor};
use wsduplex::{ClientConfig, CloseCode, Error, Message, ProxySetting};

const TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// HTTP CONNECT: tinyproxy
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn ws_and_wss_through_tinyproxy() {
    let Some(proxy) = Daemon::tinyproxy(&[]) else {
        return;
    };
    let ws = EchoServer::plain().await;
    let wss = EchoServer::tls().await;
    let config = via(&proxy.url(""), Some(&wss));
    // Each went through the proxy: tinyproxy logged the CONNECT for its port (its log
    // names the request line as received, before it dials the target).
    echo(&ws.url("127.0.0.1"), &config).await.unwrap();
    proxy.assert_connect_logged(ws.addr);
    // TLS inside the tunnel, certificate checked for the URL's host.
    echo(&wss.url("127.0.0.1"), &config).await.unwrap();
    proxy.assert_connect_logged(wss.addr);
}

#[tokio::test]
async fn tinyproxy_with_basic_auth() {
    let Some(proxy) = Daemon::tinyproxy(&["BasicAuth alice s3cr3t"]) else {
        return;
    };
    let ws = EchoServer::plain().await;
    let url = ws.url("127.0.0.1");
    let err = echo(&url, &via(&proxy.url(""), None)).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Proxy(ProxyError::AuthRequired {
                status: 407,
                sent_credentials: false
            })
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "proxy requires authentication: put user:password@ in the proxy url (407)"
    );
    let err = echo(&url, &via(&proxy.url("alice:wrong@"), None))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Proxy(ProxyError::AuthRequired {
                sent_credentials: true,
                ..
            })
        ),
        "{err:?}"
    );
    // Userinfo is percent-decoded ("%33" is '3').
    echo(&url, &via(&proxy.url("alice:s3cr%33t@"), None))
        .await
        .unwrap();
}

#[tokio::test]
async fn tinyproxy_refusing_the_port() {
    // Only port 1 may be tunnelled to: anything else is "403 Access violation".
    let Some(proxy) = Daemon::tinyproxy(&["ConnectPort 1"]) else {
        return;
    };
    let ws = EchoServer::plain().await;
    let err = echo(&ws.url("127.0.0.1"), &via(&proxy.url(""), None))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Proxy(ProxyError::Refused { status: 403 })),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "proxy refused the tunnel with status 403");
}

// ---------------------------------------------------------------------------------------
// SOCKS5: danted, and our own server for username/password
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn ws_and_wss_through_danted() {
    let rule = "socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 log: connect }";
    let Some(proxy) = Daemon::danted(rule) else {
        return;
    };
    let ws = EchoServer::plain().await;
    let wss = EchoServer::tls().await;
    // `localhost` is resolved by danted (remote DNS), for either scheme. Each echo went
    // through danted: it logged one more tunnel to that server.
    for (round, scheme) in ["socks5", "socks5h"].into_iter().enumerate() {
        let config = via(&format!("{scheme}://{}", proxy.addr), Some(&wss));
        echo(&ws.url("localhost"), &config).await.unwrap();
        proxy.assert_socks_connects(ws.addr, round + 1);
        echo(&wss.url("localhost"), &config).await.unwrap();
        proxy.assert_socks_connects(wss.addr, round + 1);
    }
    echo(
        &ws.url("127.0.0.1"),
        &via(&format!("socks5://{}", proxy.addr), None),
    )
    .await
    .unwrap();
    proxy.assert_socks_connects(ws.addr, 3);
}

#[tokio::test]
async fn danted_blocking_by_rule() {
    let Some(proxy) = Daemon::danted("socks block { from: 0.0.0.0/0 to: 0.0.0.0/0 }") else {
        return;
    };
    let ws = EchoServer::plain().await;
    let err = echo(
        &ws.url("127.0.0.1"),
        &via(&format!("socks5h://{}", proxy.addr), None),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::Proxy(ProxyError::SocksReply(SocksReply(2)))),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "socks proxy: connection not allowed by ruleset (reply 2)"
    );
}

#[tokio::test]
async fn socks5_username_password() {
    let (proxy, mut requested) = socks5_server("bob", "hunter2").await;
    let ws = EchoServer::plain().await;
    let wss = EchoServer::tls().await;
    let good = via(&format!("socks5h://bob:hunter2@{proxy}"), Some(&wss));
    echo(&ws.url("localhost"), &good).await.unwrap();
    echo(&wss.url("localhost"), &good).await.unwrap();
    // The name, not an address, went to the proxy.
    assert_eq!(
        requested.recv().await.unwrap(),
        format!("localhost:{}", ws.addr.port())
    );
    assert_eq!(
        requested.recv().await.unwrap(),
        format!("localhost:{}", wss.addr.port())
    );

    let err = echo(
        &ws.url("localhost"),
        &via(&format!("socks5://bob:nope@{proxy}"), None),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::Proxy(ProxyError::SocksAuthFailed)),
        "{err:?}"
    );
    let err = echo(
        &ws.url("localhost"),
        &via(&format!("socks5://{proxy}"), None),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Proxy(ProxyError::SocksNoAcceptableMethod {
                offered_credentials: false
            })
        ),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Rules and failures that need no daemon
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn no_proxy_bypasses_the_proxy() {
    let ws = EchoServer::plain().await;
    let dead = dead_port().await;
    let rules = |no_proxy: Option<&str>| {
        let vars = [
            ("http_proxy", format!("http://{dead}")),
            ("no_proxy", no_proxy.unwrap_or("").to_string()),
        ];
        let mut config = ClientConfig::default();
        config.proxy = ProxySetting::Rules(ProxyRules::from_lookup(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        }));
        config
    };
    let url = ws.url("127.0.0.1");
    for bypass in ["127.0.0.1", "*", "example.com, 127.0.0.0/8", "[127.0.0.1]"] {
        echo(&url, &rules(Some(bypass)))
            .await
            .unwrap_or_else(|e| panic!("no_proxy={bypass}: {e:?}"));
    }
    for not_bypassed in [
        None,
        Some("127.0.0.2"),
        Some(&format!("127.0.0.1:{}", dead.port())[..]),
    ] {
        let err = echo(&url, &rules(not_bypassed)).await.unwrap_err();
        assert!(
            matches!(err, Error::Proxy(ProxyError::Unreachable { .. })),
            "no_proxy={not_bypassed:?}: {err:?}"
        );
    }
    // An explicit "no proxy" ignores the rules.
    let mut config = rules(None);
    config.proxy = ProxySetting::None;
    echo(&url, &config).await.unwrap();
}

#[tokio::test]
async fn proxy_that_hangs_up_and_unsupported_schemes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            // Read the request, then hang up without an answer.
            let mut buf = [0u8; 512];
            let _ = tcp.read(&mut buf).await;
        }
    });
    for scheme in ["http", "socks5h"] {
        let err = echo(
            "ws://example.invalid/",
            &via(&format!("{scheme}://{addr}"), None),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, Error::Proxy(ProxyError::TunnelClosed)),
            "{scheme}: {err:?}"
        );
    }
    for url in ["https://proxy.example", "socks4://proxy.example"] {
        let err = echo("ws://example.invalid/", &via(url, None))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Proxy(ProxyError::UnsupportedScheme { .. })),
            "{url}: {err:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A client config that goes through `proxy`, trusting `tls`'s certificate if given.
fn via(proxy: &str, tls: Option<&EchoServer>) -> ClientConfig {
    let mut config = ClientConfig::default();
    config.proxy = ProxySetting::Url(proxy.to_string());
    config.connect_timeout = TIMEOUT;
    if let Some(pem) = tls.and_then(|s| s.cert_pem.as_ref()) {
        config.tls.extra_ca_pem.push(pem.as_bytes().to_vec());
    }
    config
}

/// Text, binary (200 kB) and a ping through `url`, then a close with 4000.
async fn echo(url: &str, config: &ClientConfig) -> Result<(), Error> {
    let run = async {
        let (mut ws, _) = wsduplex::connect_with(url, config).await?;
        ws.send("through the proxy").await?;
        let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        ws.send(Message::binary(big.clone())).await?;
        ws.send(Message::Ping("p".into())).await?;
        assert_eq!(
            ws.recv().await.unwrap()?,
            Message::text("through the proxy")
        );
        assert_eq!(ws.recv().await.unwrap()?, Message::binary(big));
        assert_eq!(ws.recv().await.unwrap()?, Message::Pong("p".into()));
        ws.close(CloseCode::new(4000), "done").await?;
        let mut closed = None;
        while let Some(item) = ws.recv().await {
            if let Message::Close(frame) = item? {
                closed = frame.map(|f| f.code);
            }
        }
        assert_eq!(closed, Some(CloseCode::new(4000)));
        Ok(())
    };
    tokio::time::timeout(TIMEOUT * 2, run)
        .await
        .unwrap_or_else(|_| panic!("{url}: timed out"))
}

/// An echo server on `127.0.0.1:0`, plain or TLS (self-signed for localhost/127.0.0.1).
struct EchoServer {
    addr: SocketAddr,
    cert_pem: Option<String>,
}

impl EchoServer {
    async fn plain() -> Self {
        Self::start(None).await
    }

    async fn tls() -> Self {
        let generated = tls::self_signed().unwrap();
        let mut s = Self::start(Some(generated.acceptor)).await;
        s.cert_pem = Some(generated.cert_pem);
        s
    }

    async fn start(tls: Option<TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let _ = match tls {
                        None => serve_one(tcp).await,
                        Some(acceptor) => match tls::accept(&acceptor, tcp).await {
                            Ok(stream) => serve_one(stream).await,
                            Err(e) => Err(e),
                        },
                    };
                });
            }
        });
        Self {
            addr,
            cert_pem: None,
        }
    }

    /// `ws://HOST:PORT/` or `wss://HOST:PORT/`.
    fn url(&self, host: &str) -> String {
        let scheme = if self.cert_pem.is_some() { "wss" } else { "ws" };
        format!("{scheme}://{host}:{}/", self.addr.port())
    }
}

async fn serve_one<S>(io: S) -> Result<(), Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let config = ServerConfig::default();
    let mut ws = read_request(io, &config).await?.accept(&config).await?;
    while let Some(item) = ws.recv().await {
        let msg = item?;
        if msg.is_data() {
            ws.send(msg).await?;
        }
    }
    Ok(())
}

/// An address where nothing listens.
async fn dead_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// A SOCKS5 server that insists on username/password (RFC 1929), reports each requested
/// `host:port` (domain names only) and relays to it.
async fn socks5_server(
    user: &'static str,
    password: &'static str,
) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = socks5_session(tcp, user, password, tx).await;
            });
        }
    });
    (addr, rx)
}

async fn socks5_session(
    mut tcp: TcpStream,
    user: &str,
    password: &str,
    requested: mpsc::UnboundedSender<String>,
) -> std::io::Result<()> {
    let mut head = [0u8; 2];
    tcp.read_exact(&mut head).await?;
    let mut methods = vec![0u8; usize::from(head[1])];
    tcp.read_exact(&mut methods).await?;
    if head[0] != 5 || !methods.contains(&2) {
        return tcp.write_all(&[5, 0xff]).await;
    }
    tcp.write_all(&[5, 2]).await?;
    let mut version = [0u8; 1];
    tcp.read_exact(&mut version).await?;
    let (u, p) = (read_field(&mut tcp).await?, read_field(&mut tcp).await?);
    if version[0] != 1 || u != user.as_bytes() || p != password.as_bytes() {
        return tcp.write_all(&[1, 1]).await;
    }
    tcp.write_all(&[1, 0]).await?;
    let mut req = [0u8; 4];
    tcp.read_exact(&mut req).await?;
    assert_eq!((req[0], req[1], req[3]), (5, 1, 3), "a domain-name CONNECT");
    let host = String::from_utf8(read_field(&mut tcp).await?).unwrap();
    let mut port = [0u8; 2];
    tcp.read_exact(&mut port).await?;
    let target = format!("{host}:{}", u16::from_be_bytes(port));
    let _ = requested.send(target.clone());
    // Resolve as a real proxy would; the echo servers listen on 127.0.0.1 only.
    let mut upstream = TcpStream::connect(("127.0.0.1", u16::from_be_bytes(port))).await?;
    tcp.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0]).await?;
    tokio::io::copy_bidirectional(&mut tcp, &mut upstream).await?;
    Ok(())
}

/// A length-prefixed SOCKS field.
async fn read_field(tcp: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 1];
    tcp.read_exact(&mut len).await?;
    let mut v = vec![0u8; usize::from(len[0])];
    tcp.read_exact(&mut v).await?;
    Ok(v)
}

/// A proxy daemon in the foreground, with its configuration and log in a temporary
/// directory; stopped (SIGTERM, then SIGKILL) and cleaned up on drop.
struct Daemon {
    name: &'static str,
    child: Option<Child>,
    dir: PathBuf,
    log: PathBuf,
    addr: SocketAddr,
}

impl Daemon {
    /// tinyproxy on a free port, no port restriction unless `extra` has `ConnectPort`.
    fn tinyproxy(extra: &[&str]) -> Option<Self> {
        let bin = installed("tinyproxy", "tinyproxy")?;
        let dir = temp_dir("tinyproxy");
        let port = free_port();
        let log = dir.join("tinyproxy.log");
        let mut conf = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogLevel Info\nLogFile \"{}\"\n\
             PidFile \"{}\"\nMaxClients 50\nAllow 127.0.0.1\n",
            log.display(),
            dir.join("tinyproxy.pid").display()
        );
        for line in extra {
            conf.push_str(line);
            conf.push('\n');
        }
        let conf_path = dir.join("tinyproxy.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg("-d").arg("-c").arg(&conf_path);
        Some(Self::start("tinyproxy", cmd, dir, log, port))
    }

    /// danted (no authentication) on a free port with the given `socks` rule.
    fn danted(socks_rule: &str) -> Option<Self> {
        let bin = installed("danted", "dante-server")?;
        let dir = temp_dir("danted");
        let port = free_port();
        let log = dir.join("danted.log");
        let conf = format!(
            "logoutput: {}\ninternal: 127.0.0.1 port = {port}\nexternal: 127.0.0.1\n\
             socksmethod: none\nclientmethod: none\n\
             client pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 }}\n{socks_rule}\n",
            log.display()
        );
        let conf_path = dir.join("danted.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg("-f")
            .arg(&conf_path)
            .arg("-p")
            .arg(dir.join("danted.pid"));
        Some(Self::start("danted", cmd, dir, log, port))
    }

    fn start(name: &'static str, mut cmd: Command, dir: PathBuf, log: PathBuf, port: u16) -> Self {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let mut daemon = Self {
            name,
            child: Some(child),
            dir,
            log,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        daemon.wait_ready();
        daemon
    }

    /// Until the port accepts connections (the daemon has no ready line); fails if it
    /// exits first.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if std::net::TcpStream::connect(self.addr).is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "{} exited at start ({status}):\n{}",
                    self.name,
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} not listening on {} after {TIMEOUT:?}:\n{}",
                self.name,
                self.addr,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://{userinfo}127.0.0.1:PORT`.
    fn url(&self, userinfo: &str) -> String {
        format!("http://{userinfo}{}", self.addr)
    }

    fn output(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!(
            "--- log ---\n{}--- stderr ---\n{}",
            read(&self.log),
            read(&self.dir.join("stderr"))
        )
    }

    /// tinyproxy logged exactly one `CONNECT` for `target` (`Request (file descriptor N):
    /// CONNECT 127.0.0.1:PORT HTTP/1.1`) and dialled `target` for it.
    fn assert_connect_logged(&self, target: SocketAddr) {
        let request = format!(": CONNECT {target} HTTP/1.1");
        self.wait_for_log_lines(&request, 1, |l| {
            l.contains("Request (file descriptor") && l.ends_with(&request)
        });
        let dial = format!("opensock: opening connection to {target}");
        self.wait_for_log_lines(&dial, 1, |l| l.ends_with(&dial));
    }

    /// danted logged `n` tunnels to `target` so far (`pass(1): tcp/connect [: CLIENT
    /// PROXY -> EXTERNAL 127.0.0.1.PORT`, under `log: connect`), whatever name the
    /// client asked for.
    fn assert_socks_connects(&self, target: SocketAddr, n: usize) {
        let to = format!(" 127.0.0.1.{}", target.port());
        self.wait_for_log_lines(&format!("tcp/connect to{to}"), n, |l| {
            l.contains(": tcp/connect [: ") && l.ends_with(&to)
        });
    }

    /// Until exactly `n` lines of the log match (a daemon may write a line just after
    /// it answers); fails on more, or on fewer after [`TIMEOUT`].
    fn wait_for_log_lines(&self, what: &str, n: usize, matches: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let found = log.lines().filter(|l| matches(l)).count();
            assert!(
                found <= n,
                "{} log has {found} lines for {what:?}, expected {n}:\n{log}",
                self.name
            );
            if found == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} log has {found} lines for {what:?} after {TIMEOUT:?}, expected {n}:\n{log}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM lets danted take its worker processes down with it.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + TIMEOUT;
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let _ = writeln!(
                std::io::stderr(),
                "{} output:\n{}",
                self.name,
                self.output()
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The daemon's path, or `None` after a loud note (a panic under
/// `WSDUPLEX_REQUIRE_INTEROP=1`).
fn installed(bin: &str, package: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into(), "/usr/bin".into()])
        .map(|d| d.join(bin))
        .find(|p| p.is_file());
    if found.is_none() {
        if std::env::var_os("WSDUPLEX_REQUIRE_INTEROP").is_some_and(|v| v == "1") {
            panic!("{bin} is not installed: apt-get install {package}");
        }
        // Straight to stderr, past the test harness's capture: a skip must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "\n*** proxy: {bin} is not installed, SKIPPING this test; apt-get install \
             {package} (WSDUPLEX_REQUIRE_INTEROP=1 makes this fail) ***\n"
        );
    }
    found
}

/// A port that was free a moment ago: bound to `127.0.0.1:0` and released, for a daemon
/// that must be told its port in its configuration.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "wsduplex-proxy-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
