//! `wsduplex serve --proxy-protocol` behind real TCP balancers from Debian, with the
//! configurations of docs/deployment.md (read from that file): HAProxy `mode tcp` with
//! `send-proxy-v2`, and nginx `stream {}` with `proxy_protocol on`. 300 WebSocket clients,
//! each from its own `127.0.x.y` source, go through each with `--max-connections-per-client
//! 1`: all are let in (the limit counts the addresses the headers carry) and a second
//! connection from one source is refused. Without the header every client has the
//! balancer's address, unless `--max-connections-per-client 0` turns the limit off.
//! Hostile input directly: no header, a malformed or truncated one, a header from a source
//! not configured for it: each connection closed with a warning, the others served.
//!
//! Without haproxy or nginx's stream module, their part prints a note and passes;
//! `WSDUPLEX_REQUIRE_INTEROP=1` (CI) makes that a failure.

mod common;

use common::*;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsduplex::proto::Role;
use wsduplex::{Config, Message, WebSocket};

const CLIENTS: usize = 300;

/// The `i`th client's source: 127.0.1.1, 127.0.1.2, ... (never the balancer's 127.0.0.1).
fn source(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        1 + (i / 250) as u8,
        1 + (i % 250) as u8,
    ))
}

async fn connect_from(source: IpAddr, addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    socket.connect(addr).await.expect("connect")
}

/// Sends `prefix` then the upgrade for `/echo`: the socket, or the status of the refusal
/// (`None`: closed without an answer).
async fn open(
    mut tcp: TcpStream,
    addr: SocketAddr,
    prefix: &[u8],
) -> Result<WebSocket<TcpStream>, Option<u16>> {
    let request = [prefix, upgrade_request(addr, "/echo", "").as_bytes()].concat();
    tcp.write_all(&request).await.map_err(|_| None)?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let end = loop {
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        match tokio::time::timeout(TIMEOUT, tcp.read(&mut buf)).await {
            Ok(Ok(n @ 1..)) => head.extend_from_slice(&buf[..n]),
            Ok(_) => return Err(None),
            Err(_) => panic!("no answer in time"),
        }
    };
    let status = std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok());
    match status {
        Some(101) => Ok(WebSocket::from_raw(
            tcp,
            Role::Client,
            Config::default(),
            &head[end..],
        )),
        other => Err(other),
    }
}

/// Everything the server sends after `bytes`, until it closes.
async fn answer(tcp: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    let _ = tcp.write_all(bytes).await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(TIMEOUT, tcp.read_to_end(&mut out)).await;
    read.expect("the server closed in time").ok();
    out
}

fn v1(client: &str) -> Vec<u8> {
    format!("PROXY TCP4 {client} 127.0.0.1 40000 8080\r\n").into_bytes()
}

fn v2(client: [u8; 4]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&client);
    h.extend_from_slice(&[127, 0, 0, 1, 0x9c, 0x40, 0x1f, 0x90]);
    h
}

async fn echoes(ws: &mut WebSocket<TcpStream>, text: &str) {
    ws.send(text).await.unwrap();
    match tokio::time::timeout(TIMEOUT, ws.recv())
        .await
        .expect("echo in time")
    {
        Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), text),
        other => panic!("{other:?}"),
    }
}

/// Waits (bounded) until the server holds no connection but the one asking
/// (`wsduplex_connections_open` in `/metrics`).
fn settled(addr: SocketAddr) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let r = http(
            addr,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        let open = r.body_str().lines().find_map(|l| {
            let n = l.strip_prefix("wsduplex_connections_open ")?;
            n.trim().parse::<u64>().ok()
        });
        if open == Some(1) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "connections still open: {open:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM, a clean exit, and what the server logged.
fn stop(server: Server) -> String {
    wait_until_caught(server.pid(), 15);
    server.signal("TERM");
    let exit = server.wait();
    assert!(exit.status.success(), "{exit:?}");
    exit.stderr
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn hostile_headers_close_their_connection_and_real_addresses_are_counted() {
    let server = Server::start_on_loopback(&[
        "--proxy-protocol",
        "127.0.0.1/32",
        "--max-connections-per-client",
        "1",
    ]);
    let addr = server.addr;
    let local = IpAddr::from([127, 0, 0, 1]);
    runtime().block_on(async {
        let healthz = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let cases: [(&str, Vec<u8>); 4] = [
            ("no header", healthz.to_vec()),
            (
                "malformed",
                [&b"PROXY TCP9 1.2.3.4 5.6.7.8 1 2\r\n"[..], healthz].concat(),
            ),
            (
                "v2 of an unknown version",
                [&b"\r\n\r\n\0\r\nQUIT\n\x31\x11\0\0"[..], healthz].concat(),
            ),
            ("truncated", b"PROXY TCP4 1.2.3.4".to_vec()),
        ];
        for (what, bytes) in cases {
            let mut tcp = connect_from(local, addr).await;
            if what == "truncated" {
                tcp.write_all(&bytes).await.unwrap();
                tcp.shutdown().await.unwrap();
            }
            let out = answer(&mut tcp, if what == "truncated" { b"" } else { &bytes }).await;
            assert!(
                out.is_empty(),
                "{what}: answered {:?}",
                String::from_utf8_lossy(&out)
            );
        }
        // A valid header: served, as the address it names.
        let mut tcp = connect_from(local, addr).await;
        let out = answer(&mut tcp, &[&v1("198.51.100.1")[..], healthz].concat()).await;
        assert!(
            out.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&out)
        );
        // A source not configured for headers: its header closes, its plain request is served.
        let other = IpAddr::from([127, 0, 0, 2]);
        let mut tcp = connect_from(other, addr).await;
        let out = answer(&mut tcp, &[&v1("198.51.100.2")[..], healthz].concat()).await;
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
        let mut tcp = connect_from(other, addr).await;
        assert!(answer(&mut tcp, healthz).await.starts_with(b"HTTP/1.1 200"));

        // The per-client limit (1) counts the address in the header, v1 or v2.
        let tcp = connect_from(local, addr).await;
        let mut first = open(tcp, addr, &v2([198, 51, 100, 7]))
            .await
            .expect("first");
        let tcp = connect_from(local, addr).await;
        let second = open(tcp, addr, &v1("198.51.100.7")).await;
        assert_eq!(second.err(), Some(Some(429)), "the same client twice");
        let tcp = connect_from(local, addr).await;
        let mut other = open(tcp, addr, &v1("198.51.100.8"))
            .await
            .expect("another client");
        echoes(&mut first, "first").await;
        echoes(&mut other, "other").await;
    });
    let log = stop(server);
    for warning in [
        "no PROXY protocol header",
        "malformed PROXY protocol v1 header",
        "malformed PROXY protocol v2 header",
        "truncated PROXY protocol header",
        "PROXY protocol header from a source not in --proxy-protocol",
    ] {
        assert!(log.contains(warning), "no {warning:?} in the log:\n{log}");
    }
}

/// `CLIENTS` sockets through the balancer at `front`, each from its own source, all open at
/// once; then a second one from the first source; then an echo on each.
async fn crowd(front: SocketAddr, second_refused: bool) {
    let mut sockets = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let tcp = connect_from(source(i), front).await;
        match open(tcp, front, b"").await {
            Ok(ws) => sockets.push(ws),
            Err(status) => panic!("client {i} from {} refused: {status:?}", source(i)),
        }
    }
    let tcp = connect_from(source(0), front).await;
    let again = open(tcp, front, b"").await;
    match second_refused {
        true => assert_eq!(
            again.err(),
            Some(Some(429)),
            "a second connection from one source"
        ),
        false => assert!(again.is_ok(), "no limit: {:?}", again.err()),
    }
    for (i, ws) in sockets.iter_mut().enumerate() {
        echoes(ws, &format!("client {i}")).await;
    }
}

/// [`crowd`] through a balancer (started by `balancer` in front of a `wsduplex serve
/// EXTRA --max-connections-per-client LIMIT`): with a limit of 1, a second connection from
/// one source is refused; with 0 (none), it is let in.
fn crowd_through(extra: &[&str], limit: &str, balancer: impl FnOnce(SocketAddr) -> Balancer) {
    let mut args = extra.to_vec();
    args.extend(["--max-connections-per-client", limit]);
    let server = Server::start_on_loopback(&args);
    let front = balancer(server.addr);
    runtime().block_on(crowd(front.front, limit != "0"));
    drop(front);
    stop(server);
}

#[test]
fn haproxy_send_proxy_v2_gives_each_client_its_own_address() {
    let Some(bin) = find("haproxy", &["/usr/sbin/haproxy", "/usr/bin/haproxy"]) else {
        return;
    };
    crowd_through(&["--proxy-protocol", "127.0.0.1/32"], "1", |upstream| {
        Balancer::haproxy(&bin, upstream, true)
    });
}

#[test]
fn without_the_header_every_client_looks_alike_unless_the_limit_is_off() {
    let Some(bin) = find("haproxy", &["/usr/sbin/haproxy", "/usr/bin/haproxy"]) else {
        return;
    };
    // The per-client limit (2 here) sees one client: the balancer.
    let server = Server::start_on_loopback(&["--max-connections-per-client", "2"]);
    let haproxy = Balancer::haproxy(&bin, server.addr, false);
    // The probe that saw HAProxy listen went through it too, as one more connection from
    // the balancer: wait until the server has let it go.
    settled(server.addr);
    runtime().block_on(async {
        let mut open_ones = Vec::new();
        for i in 0..2 {
            let tcp = connect_from(source(i), haproxy.front).await;
            open_ones.push(
                open(tcp, haproxy.front, b"")
                    .await
                    .expect("within the limit"),
            );
        }
        let tcp = connect_from(source(2), haproxy.front).await;
        let third = open(tcp, haproxy.front, b"").await;
        assert_eq!(
            third.err(),
            Some(Some(429)),
            "a third client, another source"
        );
    });
    drop(haproxy);
    stop(server);
    // What docs/deployment.md says to do then.
    crowd_through(&[], "0", |upstream| {
        Balancer::haproxy(&bin, upstream, false)
    });
}

#[test]
fn nginx_stream_proxy_protocol_gives_each_client_its_own_address() {
    let Some(bin) = find("nginx", &["/usr/sbin/nginx", "/usr/bin/nginx"]) else {
        return;
    };
    let Some(module) = find(
        "nginx's stream module (libnginx-mod-stream)",
        &["/usr/lib/nginx/modules/ngx_stream_module.so"],
    ) else {
        return;
    };
    crowd_through(&["--proxy-protocol", "127.0.0.1/32"], "1", |upstream| {
        Balancer::nginx(&bin, &module, upstream)
    });
}

// ---------------------------------------------------------------------------------------
// The balancers, configured from docs/deployment.md
// ---------------------------------------------------------------------------------------

/// The fenced block that starts with `opening` (the fence line and what follows it) in
/// docs/deployment.md.
fn doc_block(opening: &str) -> String {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/deployment.md"
    ))
    .expect("read docs/deployment.md");
    let start = doc
        .find(opening)
        .unwrap_or_else(|| panic!("no {opening:?} block"));
    let block = &doc[start..];
    let block = &block[block.find('\n').unwrap() + 1..];
    block[..block.find("```").expect("the block ends")].to_string()
}

struct Balancer {
    child: Option<Child>,
    dir: PathBuf,
    front: SocketAddr,
}

impl Balancer {
    fn haproxy(bin: &Path, upstream: SocketAddr, send_proxy: bool) -> Self {
        let port = free_port();
        let mut conf = doc_block("```haproxy\n")
            .replace("bind :80", &format!("bind 127.0.0.1:{port}"))
            .replace("127.0.0.1:8080", &upstream.to_string());
        assert!(conf.contains(&upstream.to_string()) && conf.contains(" send-proxy-v2"));
        if !send_proxy {
            conf = conf.replace(" send-proxy-v2", "");
        }
        let conf = format!("global\n    maxconn 4096\n\n{conf}");
        let dir = temp_dir("haproxy");
        std::fs::write(dir.join("haproxy.cfg"), &conf).unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg("-db").arg("-f").arg(dir.join("haproxy.cfg"));
        Self::start(cmd, dir, port, &conf)
    }

    fn nginx(bin: &Path, module: &Path, upstream: SocketAddr) -> Self {
        let port = free_port();
        let stream = doc_block("```nginx\nstream {")
            .replace("listen 80;", &format!("listen 127.0.0.1:{port};"))
            .replace("127.0.0.1:8080", &upstream.to_string());
        assert!(stream.contains(&upstream.to_string()) && stream.contains("proxy_protocol on;"));
        let dir = temp_dir("nginx-stream");
        let d = dir.display();
        let conf = format!(
            "load_module {};\ndaemon off;\nmaster_process off;\nworker_processes 1;\n\
             pid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 2048; }}\n{stream}",
            module.display()
        );
        std::fs::write(dir.join("nginx.conf"), &conf).unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg("-p").arg(&dir).arg("-e").arg(dir.join("error.log"));
        cmd.arg("-c").arg(dir.join("nginx.conf"));
        Self::start(cmd, dir, port, &conf)
    }

    /// Starts it and waits (bounded) until it listens on `port`.
    fn start(mut cmd: Command, dir: PathBuf, port: u16, conf: &str) -> Self {
        let stderr = std::fs::File::create(dir.join("stderr")).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start the balancer");
        let mut balancer = Self {
            child: Some(child),
            dir,
            front: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + TIMEOUT;
        while std::net::TcpStream::connect(balancer.front).is_err() {
            if let Some(status) = balancer.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "the balancer exited at start ({status}):\n{conf}\n{}",
                    balancer.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "not listening:\n{}",
                balancer.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        balancer
    }

    fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!(
            "--- stderr ---\n{}--- error.log ---\n{}",
            read("stderr"),
            read("error.log")
        )
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let _ = writeln!(std::io::stderr(), "{}", self.logs());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_dir(what: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("wsduplex-{what}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A port that was free a moment ago (the balancers must be told theirs).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The first of `paths` that exists, or a note (a failure under
/// `WSDUPLEX_REQUIRE_INTEROP=1`).
fn find(what: &str, paths: &[&str]) -> Option<PathBuf> {
    let found = paths.iter().map(PathBuf::from).find(|p| p.is_file());
    if found.is_none() {
        if std::env::var_os("WSDUPLEX_REQUIRE_INTEROP").is_some_and(|v| v == "1") {
            panic!("{what} is not installed");
        }
        let _ = writeln!(
            std::io::stderr(),
            "\n*** {what} is not installed, SKIPPING its PROXY protocol test ***\n"
        );
    }
    found
}
