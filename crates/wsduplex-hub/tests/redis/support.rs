//! Real Redis processes (a server, over TLS or not, a replica, a sentinel), hub nodes each
//! on its own runtime, HTTP and Redis commands from the test, and the log the nodes write.

use crate::common;
use crate::LIMIT;
use serde_json::Value;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use wsduplex::server::ServerConfig;
use wsduplex_hub::{Hub, HubConfig, RedisConfig};

pub const TOKEN: &str = "s3cret";

/// A free loopback port (bound, then released for the process that will listen on it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether `redis-server` can run here; `false` after a note, unless
/// `WSDUPLEX_REQUIRE_INTEROP=1`, which makes its absence a failure.
pub fn have_redis() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    let found = *FOUND.get_or_init(|| {
        let probe = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match probe {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => panic!("redis-server: {e}"),
        }
    });
    if !found {
        if std::env::var_os("WSDUPLEX_REQUIRE_INTEROP").is_some_and(|v| v == "1") {
            panic!("redis-server is required (apt-get install redis-server)");
        }
        eprintln!(
            "\n*** skipped: no redis-server (apt-get install redis-server; \
             WSDUPLEX_REQUIRE_INTEROP=1 makes this fail) ***\n"
        );
    }
    found
}

/// How to tell a started server is ready.
#[derive(Clone, Copy)]
enum Ready {
    /// It answers `PING` in plain text.
    Ping,
    /// It accepts TCP connections (TLS: no handshake needed for this).
    Listening,
}

/// A `redis-server` of our own (plain, TLS, a replica or a sentinel); killed when dropped.
pub struct Redis {
    pub port: u16,
    args: Vec<String>,
    ready: Ready,
    child: Option<Child>,
    /// Its working directory, its own: a replica writes the data it receives there
    /// (`dump.rdb`), and a server loads what it finds there when it starts.
    dir: TempDir,
    /// The CA to trust when it speaks TLS only.
    ca: Option<PathBuf>,
}

impl Redis {
    /// A plain server on a free port, no persistence. `None` (after a note) without
    /// `redis-server`.
    pub fn start() -> Option<Self> {
        if !have_redis() {
            return None;
        }
        Some(Self::plain(free_port(), &[]))
    }

    /// A plain server on `port` with `extra` arguments (`--replicaof ...`).
    pub fn plain(port: u16, extra: &[&str]) -> Self {
        let mut args = vec!["--port".to_string(), port.to_string()];
        args.extend(extra.iter().map(|a| a.to_string()));
        Self::spawned(port, args, Ready::Ping)
    }

    /// A TLS-only server (`--port 0`) with `pki`'s certificate, and `extra` arguments;
    /// clients must present a certificate of that CA if `auth_clients` is `yes`.
    pub fn tls(port: u16, pki: &Pki, auth_clients: &str, extra: &[&str]) -> Self {
        let mut args = pki.server_args(port, auth_clients);
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut redis = Self::spawned(port, args, Ready::Listening);
        redis.ca = Some(pki.ca.clone());
        redis
    }

    /// A sentinel on `port`, configured by `conf` (which it rewrites); over TLS only if
    /// `tls` (`conf` then has the TLS settings, see [`Pki::sentinel_conf`]).
    pub fn sentinel(port: u16, conf: &Path, tls: Option<&Pki>) -> Self {
        let args = vec![conf.to_string_lossy().into_owned(), "--sentinel".into()];
        let ready = if tls.is_some() {
            Ready::Listening
        } else {
            Ready::Ping
        };
        let mut redis = Self::spawned(port, args, ready);
        redis.ca = tls.map(|pki| pki.ca.clone());
        redis
    }

    fn spawned(port: u16, args: Vec<String>, ready: Ready) -> Self {
        let mut redis = Self {
            port,
            args,
            ready,
            child: None,
            dir: TempDir::new("redis"),
            ca: None,
        };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let mut command = Command::new("redis-server");
        command.args(&self.args);
        if !self.args.iter().any(|a| a == "--sentinel") {
            command
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--dir", &self.dir.0.to_string_lossy()]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Ok(mut tcp) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::Read;
                let mut pong = [0u8; 7];
                let ready = match self.ready {
                    Ready::Listening => true,
                    Ready::Ping => {
                        tcp.write_all(b"PING\r\n").is_ok()
                            && tcp.read_exact(&mut pong).is_ok()
                            && &pong == b"+PONG\r\n"
                    }
                };
                if ready {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) the server: connections stay open and
    /// nothing answers.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success());
    }

    /// Stopped, then started again on the same port: empty (no persistence).
    pub fn restart(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(self.dir.0.join("dump.rdb"));
        self.spawn();
    }

    /// Started again on the same port with `from`'s arguments (another certificate).
    pub fn restart_as(&mut self, from: &[String]) {
        self.args = from.to_vec();
        self.restart();
    }

    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// A client for the test's own commands (over TLS if the server speaks only that).
    pub fn client(&self) -> redis::RedisResult<redis::Client> {
        match &self.ca {
            None => redis::Client::open(self.url()),
            Some(ca) => redis::Client::build_with_tls(
                format!("rediss://127.0.0.1:{}", self.port),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(std::fs::read(ca).unwrap()),
                },
            ),
        }
    }

    /// One command on a fresh connection.
    pub fn command(&self, args: &[&str]) -> redis::RedisResult<redis::Value> {
        let client = self.client()?;
        let mut conn = client.get_connection_with_timeout(LIMIT)?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut conn)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A text reply (or the first element of an array reply), for assertions.
pub fn text(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        redis::Value::SimpleString(s) => Some(s.clone()),
        redis::Value::Okay => Some("OK".into()),
        redis::Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// A test CA, a server certificate for `127.0.0.1` and `localhost`, and a client
/// certificate, as PEM files.
pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Pki {
    pub fn new(dir: &TempDir, name: &str) -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        };
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("wsduplex test CA {name}"));
        let ca = params.self_signed(&ca_key).unwrap();
        // Redis uses one certificate as a server and, for replication, as a client.
        let leaf = |sans: Vec<String>, usages| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(sans).unwrap();
            params.extended_key_usages = usages;
            let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let server = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        let (cert, key) = leaf(
            server,
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        let (client_cert, client_key) = leaf(vec![], vec![ExtendedKeyUsagePurpose::ClientAuth]);
        Self {
            ca: dir.write(&format!("{name}-ca.pem"), &ca.pem()),
            cert: dir.write(&format!("{name}-cert.pem"), &cert),
            key: dir.write(&format!("{name}-key.pem"), &key),
            client_cert: dir.write(&format!("{name}-client-cert.pem"), &client_cert),
            client_key: dir.write(&format!("{name}-client-key.pem"), &client_key),
        }
    }

    /// `redis-server` arguments for TLS only on `port`, with this certificate.
    pub fn server_args(&self, port: u16, auth_clients: &str) -> Vec<String> {
        let path = |p: &Path| p.to_string_lossy().into_owned();
        vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            path(&self.cert),
            "--tls-key-file".into(),
            path(&self.key),
            "--tls-ca-cert-file".into(),
            path(&self.ca),
            "--tls-auth-clients".into(),
            auth_clients.into(),
        ]
    }

    /// The same as `sentinel.conf` lines, TLS to the instances monitored too.
    pub fn sentinel_conf(&self, port: u16) -> String {
        format!(
            "port 0\ntls-port {port}\ntls-cert-file {}\ntls-key-file {}\n\
             tls-ca-cert-file {}\ntls-auth-clients no\ntls-replication yes\n",
            self.cert.display(),
            self.key.display(),
            self.ca.display()
        )
    }

    /// `rediss://` to `port`, trusting this CA.
    pub fn url(&self, port: u16) -> String {
        format!("rediss://127.0.0.1:{port}/?cacert={}", self.ca.display())
    }
}

/// A directory of our own under the system's temporary directory; removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "wsduplex-{what}-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One hub node with its own runtime.
pub struct Node {
    pub addr: SocketAddr,
    pub hub: Hub,
    rt: Option<tokio::runtime::Runtime>,
}

/// `n` nodes on `redis` (presence kept 15 s), each once its backplane is connected.
pub async fn connected_nodes(redis: &Redis, n: usize) -> Vec<Node> {
    let nodes: Vec<Node> = (0..n)
        .map(|_| Node::start(redis, Duration::from_secs(15)))
        .collect();
    for node in &nodes {
        node.connected(true).await;
    }
    nodes
}

impl Node {
    pub fn start(redis: &Redis, presence_ttl: Duration) -> Self {
        Self::with_url(&redis.url(), presence_ttl)
    }

    pub fn with_url(url: &str, presence_ttl: Duration) -> Self {
        let mut server = ServerConfig::default();
        server.socket.close_timeout = Duration::from_secs(2);
        Self::with_server(url, presence_ttl, server)
    }

    /// A node whose server has `server`'s front door (an authentication hook, say).
    pub fn with_server(url: &str, presence_ttl: Duration, server: ServerConfig) -> Self {
        capture_logs();
        let mut config = HubConfig::default();
        config.api_token = Some(TOKEN.into());
        config.history = 20;
        let mut backplane = RedisConfig::new(url);
        backplane.presence_ttl = presence_ttl;
        backplane.timeout = Duration::from_millis(500);
        backplane.max_backoff = Duration::from_millis(200);
        let hub = Hub::with_redis(config, backplane).unwrap();
        let (rt, addr) = common::serve::start(&hub, server);
        Self {
            addr,
            hub,
            rt: Some(rt),
        }
    }

    /// Dies at once: every task and socket of the node goes, nothing says goodbye.
    pub fn kill(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }

    pub async fn connected(&self, up: bool) {
        let deadline = Instant::now() + LIMIT;
        while self.hub.is_connected() != Some(up) {
            assert!(
                Instant::now() < deadline,
                "node {} never {}",
                self.addr,
                if up {
                    "connected"
                } else {
                    "noticed Redis was gone"
                }
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One HTTP request on a fresh connection, with the push API's token: status and JSON body.
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    let auth = format!("Authorization: Bearer {TOKEN}");
    let r = crate::common::http(addr, method, path, &[&auth], body, LIMIT).await;
    (r.status, r.body)
}

/// Waits until `GET /api/rooms/ROOM` on `addr` lists exactly `members` (in any order).
pub async fn members_become(addr: SocketAddr, room: &str, members: &[&str]) {
    let mut want: Vec<&str> = members.to_vec();
    want.sort();
    let deadline = Instant::now() + LIMIT;
    loop {
        let (_, body) = http(addr, "GET", &format!("/api/rooms/{room}"), "").await;
        let mut got: Vec<String> = body["members"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        got.sort();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "members {got:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Everything the nodes of this process log (from the first node started on), without
/// colours.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_writer(|| LogWriter)
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .try_init();
    });
}

/// Waits until a line of the log contains every one of `parts`; returns it.
pub async fn logged(parts: &[&str]) -> String {
    let deadline = Instant::now() + LIMIT;
    loop {
        let found = {
            let log = LOG.lock().unwrap();
            String::from_utf8_lossy(&log)
                .lines()
                .find(|l| parts.iter().all(|p| l.contains(p)))
                .map(str::to_string)
        };
        if let Some(line) = found {
            return line;
        }
        assert!(Instant::now() < deadline, "nothing logged with {parts:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
