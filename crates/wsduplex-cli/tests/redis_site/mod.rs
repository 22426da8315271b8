//! The deployment of docs/scale-out.md ("Scale-out over Redis") as tests start it: its
//! `redis-server` and three `wsduplex serve --redis ...` nodes (their arguments read from the
//! shell block), and its nginx configuration (the ```conf block) in front, with the fixed
//! ports replaced by free loopback ports. Shared by `redis_nginx.rs` (the example as
//! written) and `js_client_redis.rs` (the JavaScript client failing over through nginx).
//!
//! Everything runs as the current user on 127.0.0.1, writing in a temporary directory:
//! Debian's `redis-server` and nginx (`daemon off; master_process off;`); [`tools`] finds
//! them, or says why the test skips.

use crate::common::{metric, BIN, TIMEOUT};
use crate::hub_common::{next, Ws};
use serde_json::Value;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wsduplex::proxy::ProxySetting;
use wsduplex::ClientConfig;

/// Upper bound for anything a test waits for: an event, a node reaching Redis.
pub const LIMIT: Duration = Duration::from_secs(15);
/// How often a wait on a process's state (over HTTP or TCP) looks again.
pub const POLL: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------------------------
// The example of docs/scale-out.md
// ---------------------------------------------------------------------------------------

/// What the shell block of docs/scale-out.md runs, and its nginx configuration.
pub struct Example {
    /// `redis-server`'s arguments.
    redis_args: Vec<String>,
    /// The ports of the `for port in ...` loop: one node each.
    node_ports: Vec<u16>,
    /// `wsduplex serve`'s arguments (`serve` first), `$port` as written.
    serve_args: Vec<String>,
    /// The ```conf block: what goes in `http { }`.
    conf: String,
}

impl Example {
    pub fn from_doc() -> Self {
        let section = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/scale-out.md"
        ))
        .expect("read docs/scale-out.md");
        let section = section.as_str();
        let sh = block(section, "sh");
        let conf = block(section, "conf").to_string();

        // Logical lines: continuations joined, comments and blank lines dropped.
        let mut commands = Vec::new();
        let mut pending = String::new();
        for line in sh.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.strip_suffix('\\') {
                Some(part) => {
                    pending.push_str(part);
                    pending.push(' ');
                }
                None => {
                    pending.push_str(line);
                    commands.push(std::mem::take(&mut pending));
                }
            }
        }
        let (mut redis_args, mut node_ports, mut serve_args) = (None, None, None);
        for command in &commands {
            assert!(
                !command.contains(['"', '\'', '`']),
                "quoting in {command:?}: teach this test to split it"
            );
            let mut words: Vec<String> = command.split_whitespace().map(String::from).collect();
            if words.last().is_some_and(|w| w == "&") {
                words.pop();
            }
            match words[0].as_str() {
                "redis-server" => redis_args = Some(words[1..].to_vec()),
                "wsduplex" => serve_args = Some(words[1..].to_vec()),
                "for" => {
                    let ports = command
                        .strip_prefix("for port in ")
                        .and_then(|c| c.strip_suffix("; do"))
                        .unwrap_or_else(|| panic!("unexpected loop {command:?}"));
                    let ports: Vec<u16> = ports
                        .split_whitespace()
                        .map(|p| p.parse().expect("a port"))
                        .collect();
                    node_ports = Some(ports);
                }
                "done" => {}
                _ => panic!("docs/scale-out.md's shell block runs {command:?}: this test cannot"),
            }
        }
        let example = Self {
            redis_args: redis_args.expect("the shell block starts redis-server"),
            node_ports: node_ports.expect("the shell block loops over the nodes' ports"),
            serve_args: serve_args.expect("the shell block starts wsduplex"),
            conf,
        };
        assert_eq!(example.serve_args[0], "serve");
        example.check(section);
        example
    }

    /// The parts agree: the nodes use the Redis started, nginx proxies to the nodes, the
    /// text names nginx's port.
    fn check(&self, section: &str) {
        let redis_port = flag(&self.redis_args, "--port");
        let redis_host = flag(&self.redis_args, "--bind");
        assert_eq!(
            flag(&self.serve_args, "--redis"),
            format!("redis://{redis_host}:{redis_port}"),
            "the nodes' --redis is the redis-server started"
        );
        let listen = flag(&self.serve_args, "--listen");
        let host = listen
            .strip_suffix(":$port")
            .unwrap_or_else(|| panic!("--listen {listen} should end in :$port"));
        let upstream: Vec<String> = self.directives("server");
        let nodes: Vec<String> = self
            .node_ports
            .iter()
            .map(|p| format!("{host}:{p}"))
            .collect();
        assert_eq!(upstream, nodes, "nginx's upstream is the nodes");
        let front = self.directives("listen");
        assert_eq!(front.len(), 1, "{front:?}");
        assert!(
            section.contains(&format!("http://127.0.0.1:{}/", front[0])),
            "the text sends browsers to nginx's port {}",
            front[0]
        );
    }

    /// The values of a one-argument directive (`NAME VALUE;`, not `NAME {`) in the nginx
    /// block.
    fn directives(&self, name: &str) -> Vec<String> {
        self.conf
            .lines()
            .filter_map(|l| {
                l.trim()
                    .strip_prefix(name)?
                    .strip_prefix(' ')?
                    .strip_suffix(';')
            })
            .map(|v| v.trim().to_string())
            .collect()
    }
}

/// The first ```LANG block of `text`.
fn block<'a>(text: &'a str, lang: &str) -> &'a str {
    let fence = format!("```{lang}\n");
    let start = text
        .find(&fence)
        .unwrap_or_else(|| panic!("no {fence:?} block"))
        + fence.len();
    let rest = &text[start..];
    &rest[..rest.find("```").expect("the block ends")]
}

/// The value after `name` in `args`.
fn flag<'a>(args: &'a [String], name: &str) -> &'a str {
    let i = args
        .iter()
        .position(|a| a == name)
        .unwrap_or_else(|| panic!("no {name} in {args:?}"));
    &args[i + 1]
}

/// `args` with the value after `name` replaced.
fn set_flag(args: &mut [String], name: &str, value: String) {
    let i = args.iter().position(|a| a == name).unwrap();
    args[i + 1] = value;
}

// ---------------------------------------------------------------------------------------
// Redis, three nodes, nginx
// ---------------------------------------------------------------------------------------

pub struct Deployment {
    /// nginx's address: where clients go.
    pub front: SocketAddr,
    /// The push API's token, from the example's `--api-token`.
    pub token: String,
    // Dropped in this order: nginx, the nodes, Redis, then the directory.
    _nginx: Proc,
    pub nodes: Vec<Node>,
    _redis: Proc,
    dir: TempDir,
    /// For clients: no proxy from the environment, loopback only.
    config: ClientConfig,
}

impl Deployment {
    /// Starts what the example starts, on free loopback ports; Redis and nginx are ready
    /// when this returns, the nodes are listening (see [`Self::wait_for_redis`]).
    pub fn start(example: &Example, nginx_bin: &Path) -> Self {
        let dir = TempDir::new();
        let d = dir.0.display().to_string();

        // Redis as written, in its own directory (where persistence writes).
        let redis_port = free_port();
        let mut redis_args = example.redis_args.clone();
        set_flag(&mut redis_args, "--port", redis_port.to_string());
        assert_eq!(flag(&redis_args, "--bind"), "127.0.0.1", "loopback only");
        let mut redis = Proc::spawn(
            "redis-server",
            Command::new("redis-server")
                .args(&redis_args)
                .args(["--dir", &d]),
            &dir.0.join("redis.log"),
            false,
        );
        redis_ready(redis_port, &mut redis);

        // The nodes as written, their ports and Redis's replaced.
        let mut nodes = Vec::new();
        for doc_port in &example.node_ports {
            let port = free_port();
            let mut args = example.serve_args.clone();
            for a in &mut args {
                *a = a.replace("$port", &port.to_string());
            }
            let url = flag(&args, "--redis").replace(
                &format!(":{}", flag(&example.redis_args, "--port")),
                &format!(":{redis_port}"),
            );
            assert!(url.ends_with(&format!(":{redis_port}")), "{url}");
            set_flag(&mut args, "--redis", url);
            let node = Node::start(&args, &dir.0.join(format!("node-{doc_port}.log")));
            assert_eq!(node.addr, SocketAddr::from(([127, 0, 0, 1], port)));
            nodes.push(node);
        }

        // nginx with the example's block, its ports replaced, in a minimal main config.
        let front_port = free_port();
        let mut conf = example.conf.clone();
        for (doc_port, node) in example.node_ports.iter().zip(&nodes) {
            conf = conf.replace(
                &format!("server 127.0.0.1:{doc_port};"),
                &format!("server {};", node.addr),
            );
        }
        let doc_front = &example.directives("listen")[0];
        conf = conf.replace(
            &format!("listen {doc_front};"),
            &format!("listen 127.0.0.1:{front_port};"),
        );
        let fixed = example
            .node_ports
            .iter()
            .map(|p| format!(":{p};"))
            .chain([format!("listen {doc_front};")]);
        for left in fixed {
            assert!(!conf.contains(&left), "{left} left in:\n{conf}");
        }
        // `$upstream_addr` in the access log: which node answered each request.
        let main = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\nevents {{ worker_connections 64; }}\n\
             http {{\n    log_format upstream '$request_method $uri $upstream_addr $status';\n    \
             access_log {d}/access.log upstream;\n    client_body_temp_path {d}/body;\n    \
             proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    \
             uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n\n{conf}\n}}\n"
        );
        std::fs::write(dir.0.join("nginx.conf"), &main).unwrap();
        let mut nginx = Proc::spawn(
            "nginx",
            Command::new(nginx_bin)
                .arg("-p")
                .arg(&dir.0)
                .arg("-e")
                .arg(dir.0.join("error.log"))
                .arg("-c")
                .arg(dir.0.join("nginx.conf")),
            &dir.0.join("nginx.stderr"),
            false,
        );
        nginx.also = vec![dir.0.join("error.log"), dir.0.join("nginx.conf")];
        wait_for("nginx listening", &mut nginx, || {
            std::net::TcpStream::connect(("127.0.0.1", front_port)).is_ok()
        });

        let mut config = ClientConfig::default();
        config.proxy = ProxySetting::None;
        Self {
            front: SocketAddr::from(([127, 0, 0, 1], front_port)),
            token: flag(&example.serve_args, "--api-token").to_string(),
            _nginx: nginx,
            nodes,
            _redis: redis,
            dir,
            config,
        }
    }

    /// Waits until node `i` reaches Redis: it then reads an unknown room from Redis
    /// (`404`), where a node without Redis answers `503`.
    pub async fn wait_for_redis(&self, i: usize) {
        let addr = self.nodes[i].addr;
        let deadline = Instant::now() + LIMIT;
        loop {
            let (status, _) = self.http(addr, "GET", "/api/rooms/nowhere", "").await;
            if status == 404 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {addr} never reached Redis ({status})"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Joins through nginx with `path` (`/chat/ROOM?name=...`); the socket and its welcome.
    pub async fn join(&self, path: &str) -> (Ws, Value) {
        let url = format!("ws://{}{path}", self.front);
        let (mut ws, handshake) =
            tokio::time::timeout(LIMIT, wsduplex::connect_with(&url, &self.config))
                .await
                .expect("handshake in time")
                .unwrap_or_else(|e| panic!("connect {path}: {e}"));
        assert!(
            handshake.response_head.contains("nginx"),
            "{}",
            handshake.response_head
        );
        let welcome = next(&mut ws).await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        (ws, welcome)
    }

    /// Which node the socket just opened landed on: waits until exactly one node has one
    /// more than `spread` says (the count of the socket's predecessors), and counts it.
    pub async fn landed_on(&self, spread: &mut [u64]) -> usize {
        let deadline = Instant::now() + LIMIT;
        loop {
            let mut now = Vec::new();
            for node in &self.nodes {
                let (status, body) = self.http(node.addr, "GET", "/metrics", "").await;
                assert_eq!(status, 200, "{body}");
                // Less the scrape itself.
                now.push(metric(&body, "wsduplex_connections_open") - 1);
            }
            let grew: Vec<usize> = (0..now.len()).filter(|&i| now[i] != spread[i]).collect();
            if let [i] = grew[..] {
                if now[i] == spread[i] + 1 {
                    spread[i] += 1;
                    return i;
                }
            }
            assert!(
                Instant::now() < deadline,
                "sockets per node {now:?}, before {spread:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Which node answered each long-polling request, in order, from nginx's access log.
    pub fn poll_upstreams(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.0.join("access.log")).unwrap();
        log.lines()
            .filter(|l| l.contains(" /poll/"))
            .map(|l| l.split(' ').nth(2).unwrap().to_string())
            .collect()
    }

    /// One HTTP request (with the push API's token), its status and body.
    pub async fn http(
        &self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        body: &str,
    ) -> (u16, String) {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.token,
            body.len()
        );
        let exchange = async {
            let mut tcp = tokio::net::TcpStream::connect(addr).await?;
            tcp.write_all(request.as_bytes()).await?;
            let mut raw = Vec::new();
            tcp.read_to_end(&mut raw).await?;
            std::io::Result::Ok(raw)
        };
        let raw = tokio::time::timeout(LIMIT, exchange)
            .await
            .unwrap_or_else(|_| panic!("{method} {path} on {addr}: no answer in time"))
            .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"));
        let raw = String::from_utf8(raw).unwrap();
        let (head, body) = raw
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no head in {raw:?}"));
        let status = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.get(..3)?.parse().ok())
            .unwrap_or_else(|| panic!("bad status line in {head:?}"));
        (status, body.to_string())
    }

    pub async fn http_json(
        &self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        body: &str,
    ) -> (u16, Value) {
        let (status, body) = self.http(addr, method, path, body).await;
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut logs = String::new();
            let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir.0)
                .map(|d| d.filter_map(|e| Some(e.ok()?.path())).collect())
                .unwrap_or_default();
            files.sort();
            for f in files.iter().filter(|f| f.is_file()) {
                let text = std::fs::read_to_string(f).unwrap_or_default();
                logs.push_str(&format!("--- {} ---\n{text}", f.display()));
            }
            // Past the test harness's capture: the logs are what explains a failure.
            let _ = writeln!(std::io::stderr(), "{logs}");
        }
    }
}

/// A `wsduplex serve` node.
pub struct Node {
    pub addr: SocketAddr,
    proc: Proc,
}

impl Node {
    /// Starts `wsduplex ARGS` and reads its ready line.
    fn start(args: &[String], log: &Path) -> Self {
        let mut command = Command::new(BIN);
        command
            .args(args)
            // Settings of the test's environment would add to the example's flags.
            .env_remove("WSDUPLEX_AUTH_TOKEN")
            .env_remove("WSDUPLEX_API_TOKEN")
            .env_remove("WSDUPLEX_REDIS")
            // More in the log that a failure prints; the example's behaviour is the same.
            .env("WSDUPLEX_LOG", "info");
        let mut proc = Proc::spawn("wsduplex serve", &mut command, log, true);
        let stdout = proc.child.as_mut().unwrap().stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let _ = tx.send(line);
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        });
        let line = rx
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("no ready line from {args:?}:\n{}", proc.log()));
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected ready line {line:?}:\n{}", proc.log()));
        Self { addr, proc }
    }

    /// `SIGKILL`: no goodbye to Redis or to anyone.
    pub fn kill(&mut self) {
        let mut child = self.proc.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

/// A child process, killed and reaped when dropped; its stdout or stderr in a log file.
struct Proc {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
    /// Other files that tell what went wrong (its own log files, its configuration).
    also: Vec<PathBuf>,
}

impl Proc {
    /// Spawns `command`, its stderr (and its stdout unless `pipe_stdout`) going to `log`.
    fn spawn(name: &'static str, command: &mut Command, log: &Path, pipe_stdout: bool) -> Self {
        let file = File::create(log).unwrap();
        let out = match pipe_stdout {
            true => Stdio::piped(),
            false => Stdio::from(file.try_clone().unwrap()),
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Self {
            name,
            child: Some(child),
            log: log.to_path_buf(),
            also: Vec::new(),
        }
    }

    /// Panics (with its log) if the process has exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
            panic!("{} exited ({status}):\n{}", self.name, self.log());
        }
    }

    fn log(&self) -> String {
        let mut text = String::new();
        for f in [&self.log].into_iter().chain(&self.also) {
            let content = std::fs::read_to_string(f).unwrap_or_default();
            text.push_str(&format!("--- {} ---\n{content}", f.display()));
        }
        text
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until `ready` holds, failing early if `proc` exits.
fn wait_for(what: &str, proc: &mut Proc, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !ready() {
        proc.assert_running();
        assert!(
            Instant::now() < deadline,
            "{what}: not within {LIMIT:?}\n{}",
            proc.log()
        );
        std::thread::sleep(POLL);
    }
}

/// Waits until Redis answers `PING` on `port`.
fn redis_ready(port: u16, redis: &mut Proc) {
    wait_for("redis-server answering", redis, || {
        let Ok(mut tcp) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = tcp.set_read_timeout(Some(TIMEOUT));
        let mut pong = [0u8; 7];
        tcp.write_all(b"PING\r\n").is_ok()
            && tcp.read_exact(&mut pong).is_ok()
            && &pong == b"+PONG\r\n"
    });
}

/// A directory of our own, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("wsduplex-redis-nginx-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port that was free a moment ago (Redis, the nodes and nginx are told their ports).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// nginx's path, if nginx and `redis-server` are both installed; else a loud note (or a
/// failure under `WSDUPLEX_REQUIRE_INTEROP=1`) and `None`.
pub fn tools() -> Option<PathBuf> {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    let redis = match Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => panic!("redis-server: {e}"),
    };
    let missing: Vec<&str> = [("nginx", nginx.is_some()), ("redis-server", redis)]
        .into_iter()
        .filter(|(_, found)| !found)
        .map(|(name, _)| name)
        .collect();
    if missing.is_empty() {
        return nginx;
    }
    let missing = missing.join(" and ");
    if std::env::var_os("WSDUPLEX_REQUIRE_INTEROP").is_some_and(|v| v == "1") {
        panic!("missing {missing}: apt-get install redis-server nginx");
    }
    // Straight to stderr, past the test harness's capture: a skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** {missing} not installed, SKIPPING the Redis + nginx example of docs/scale-out.md; apt-get \
         install redis-server nginx (WSDUPLEX_REQUIRE_INTEROP=1 makes this fail) ***\n"
    );
    None
}
