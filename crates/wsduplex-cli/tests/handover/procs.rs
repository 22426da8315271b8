//! The processes and clients of the hand-over tests: `wsduplex serve` with its stdout lines
//! on a channel, the control socket's path, the Python and Node line-driven clients.

use crate::common::{self, send_signal, wait_child, Ws, BIN};
use crate::peer;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Bound of one wait on a process line: a debug build moves hundreds of connections.
pub(crate) const LONG: Duration = Duration::from_secs(60);

pub(crate) const TEXT: u8 = 1;
pub(crate) const CONT: u8 = 0;

/// A `wsduplex serve` whose stdout lines arrive on a channel.
pub(crate) struct Proc {
    pub(crate) child: Option<Child>,
    pub(crate) lines: mpsc::Receiver<String>,
    pub(crate) stderr: Option<JoinHandle<String>>,
}

impl Proc {
    pub(crate) fn spawn(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn_bin(BIN, args, env)
    }

    pub(crate) fn spawn_bin(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(bin)
            .arg("serve")
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wsduplex serve");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stderr = child.stderr.take().expect("stderr");
        let stderr = thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut s);
            s
        });
        Self {
            child: Some(child),
            lines,
            stderr: Some(stderr),
        }
    }

    /// The next stdout line, which must start with `prefix`; returns the rest.
    pub(crate) fn line(&self, prefix: &str) -> String {
        let line = self
            .lines
            .recv_timeout(LONG)
            .unwrap_or_else(|_| panic!("no line {prefix:?} within {LONG:?}"));
        line.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("expected {prefix:?}, got {line:?}"))
            .to_owned()
    }

    /// The address of the ready line, `http://` or `https://` (`--tls-self-signed`).
    pub(crate) fn listening(&self) -> SocketAddr {
        let url = self.line("listening on ");
        let addr = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .unwrap_or_else(|| panic!("listening on {url:?}"));
        addr.parse().expect("address")
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Waits for the exit; returns the status and stderr.
    pub(crate) fn exit(mut self) -> (ExitStatus, String) {
        let status = wait_child(self.child.take().expect("running"));
        let stderr = self.stderr.take().map(|h| h.join().unwrap_or_default());
        (status, stderr.unwrap_or_default())
    }

    /// SIGTERM; checks exit 0.
    pub(crate) fn stop(self) {
        common::wait_until_caught(self.pid(), 15);
        send_signal(self.pid(), "TERM");
        let (status, stderr) = self.exit();
        assert!(status.success(), "{status}: {stderr}");
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

/// A control socket's path in a fresh directory, removed with it at the end of the test.
pub(crate) struct ControlPath(PathBuf);

impl std::ops::Deref for ControlPath {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for ControlPath {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

pub(crate) fn control_path(name: &str) -> ControlPath {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "wsduplex-handover-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    ControlPath(dir.join(name))
}

/// Both processes' flags: hundreds of connections come from one address.
pub(crate) const FLAGS: [&str; 3] = ["--deflate", "--max-connections-per-client", "0"];

/// `serve --control PATH` on a free port, two workers.
pub(crate) fn serve_control(path: &std::path::Path) -> (Proc, SocketAddr) {
    let mut extra = vec!["--workers", "2"];
    extra.extend(FLAGS);
    serve_control_with(path, &extra)
}

/// `serve --listen 127.0.0.1:0 --control PATH EXTRA...`, and the address it listens on.
pub(crate) fn serve_control_with(path: &std::path::Path, extra: &[&str]) -> (Proc, SocketAddr) {
    let p = path.to_str().expect("utf-8 path");
    let mut args = vec!["--listen", "127.0.0.1:0", "--control", p];
    args.extend(extra);
    let old = Proc::spawn(&args, &[]);
    let addr = old.listening();
    (old, addr)
}

/// `serve --take-over PATH`, once it has taken over: the count it reports.
pub(crate) fn take_over(path: &std::path::Path, addr: SocketAddr) -> (Proc, usize) {
    let (new, count, _) = take_over_with(path, addr, &FLAGS);
    (new, count)
}

/// `serve --take-over PATH EXTRA...`, once it has taken over (listening on `addr`): the
/// count it reports and the pid of the process it took them from.
pub(crate) fn take_over_with(
    path: &std::path::Path,
    addr: SocketAddr,
    extra: &[&str],
) -> (Proc, usize, u32) {
    let mut args = vec!["--take-over", path.to_str().expect("utf-8 path")];
    args.extend(extra);
    let new = Proc::spawn(&args, &[]);
    assert_eq!(new.listening(), addr);
    let took = new.line("took over ");
    let (count, from) = took
        .split_once(" connections from process ")
        .unwrap_or_else(|| panic!("took over {took:?}"));
    let count = count.parse().expect("count");
    (new, count, from.parse().expect("pid"))
}

/// `serve --take-over PATH` killed by a test hook once it has acknowledged `after`
/// connections: it must exit 75, as the hook does.
pub(crate) fn take_over_dies(path: &std::path::Path, after: usize) {
    let p = path.to_str().expect("utf-8 path");
    let after = after.to_string();
    let hook = [("WSDUPLEX_TEST_HOOK_TAKE_OVER_EXIT_AFTER", after.as_str())];
    let (status, stderr) = Proc::spawn(&["--take-over", p], &hook).exit();
    assert_eq!(status.code(), Some(75), "{stderr}");
}

/// The old process after a hand-over: it says so and exits 0.
pub(crate) fn handed_over(old: Proc, count: usize) {
    let line = old.line("handed over ");
    assert!(line.starts_with(&format!("{count} connections")), "{line}");
    let (status, stderr) = old.exit();
    assert!(status.success(), "old process: {status}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A round trip on a raw connection.
pub(crate) fn echo(ws: &mut Ws, text: &str) {
    ws.send(TEXT, text.as_bytes());
    assert_eq!(ws.read_message(), (TEXT, text.as_bytes().to_vec()));
}

/// The four-tuple as the client sees it.
pub(crate) fn tuple(ws: &Ws) -> (SocketAddr, SocketAddr) {
    (
        ws.stream.local_addr().unwrap(),
        ws.stream.peer_addr().unwrap(),
    )
}

/// A Python or Node client driven by lines (tests/interop/*/handover_client.*).
pub(crate) struct LineClient {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    port: String,
}

impl LineClient {
    pub(crate) fn start(peer: peer::Peer, addr: SocketAddr) -> Option<Self> {
        let mut cmd = peer.command("handover_client", "the hand-over with this peer")?;
        let mut child = cmd
            .arg(format!("ws://{addr}/echo"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn peer");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stdin = child.stdin.take();
        let mut c = Self {
            child,
            stdin,
            lines,
            port: String::new(),
        };
        c.port = c.next("open ");
        Some(c)
    }

    pub(crate) fn next(&self, prefix: &str) -> String {
        let line = self.lines.recv_timeout(LONG).expect("peer line");
        line.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("peer: expected {prefix:?}, got {line:?}"))
            .to_owned()
    }

    pub(crate) fn echo(&mut self, text: &str) {
        writeln!(self.stdin.as_mut().unwrap(), "send {text}").unwrap();
        assert_eq!(self.next("echo "), text);
    }

    /// Starts `n` compressed messages at once; [`LineClient::burst_done`] checks their echoes.
    pub(crate) fn burst(&mut self, n: usize) {
        writeln!(self.stdin.as_mut().unwrap(), "burst {n}").unwrap();
    }

    pub(crate) fn burst_done(&mut self, n: usize) {
        assert_eq!(self.next("burst "), n.to_string());
    }

    /// Still the same TCP connection, closed normally at the end.
    pub(crate) fn finish(mut self) {
        writeln!(self.stdin.as_mut().unwrap(), "port").unwrap();
        assert_eq!(
            self.next("port "),
            self.port,
            "the peer's connection changed"
        );
        drop(self.stdin.take());
        assert_eq!(self.next(""), "closed");
        let status = wait_child(self.child);
        assert!(status.success(), "peer: {status}");
    }
}

/// Sends a message; whether its echo comes back (`false`: the connection was closed).
pub(crate) fn alive(ws: &mut Ws) -> bool {
    let _ = ws
        .stream
        .write_all(&common::frame(true, 0, TEXT, b"ping?", Some([1, 2, 3, 4])));
    let mut byte = [0u8; 1];
    match common::read_some(&mut ws.stream, &mut byte) {
        Ok(0) | Err(_) => false,
        Ok(_) => {
            // The rest of the echo: a 2-byte header and "ping?".
            let mut rest = [0u8; 6];
            ws.stream.read_exact(&mut rest).unwrap();
            assert_eq!(&rest[1..], b"ping?");
            true
        }
    }
}
