//! Helpers shared by the black-box tests of the `wsduplex` binary, std only:
//! the real `wsduplex serve` as a child process, a raw WebSocket endpoint over a
//! `std::net::TcpStream` (client or server role, any frame we care to forge), a fake server
//! for the client tests, and the SHA-1/base64 that `Sec-WebSocket-Accept` needs.
//!
//! Nothing here sleeps: every socket has a read timeout and every wait on a process or a
//! thread has a deadline, so a bug shows up as a failed test, never as a hung one.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Upper bound for any single wait: a socket read, a process exit, a ready line.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_wsduplex");

/// The `Sec-WebSocket-Key` of RFC 6455 §1.3; its accept value is known.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

// ---------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------

/// Sends a signal by name (`TERM`, `INT`, `KILL`) with kill(1).
pub fn send_signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill(1)");
    assert!(status.success(), "kill -{name} {pid} failed: {status}");
}

/// Waits until process `pid` catches signal number `signum` (Linux: the `SigCgt` mask of
/// `/proc/PID/status`), so that a test of what a handler does does not also race with when
/// it is installed. Returns at once where `/proc` is missing.
pub fn wait_until_caught(pid: u32, signum: u32) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            return;
        };
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .unwrap_or(0);
        if caught & (1 << (signum - 1)) != 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "process {pid} never installed a handler for signal {signum}"
        );
        thread::yield_now();
    }
}

/// Waits for `child` to exit, at most [`TIMEOUT`]; kills it and panics past that.
pub fn wait_child(child: Child) -> ExitStatus {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut child = child;
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(TIMEOUT) {
        Ok(status) => status.expect("wait for child"),
        Err(_) => {
            send_signal(pid, "KILL");
            panic!("process {pid} did not exit within {TIMEOUT:?}");
        }
    }
}

/// A running `wsduplex serve --listen 127.0.0.1:0`, killed on drop.
pub struct Server {
    child: Option<Child>,
    /// The address from the ready line.
    pub addr: SocketAddr,
    /// The ready line, without its newline.
    pub ready_line: String,
    stdout_rest: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

/// How a server process ended.
#[derive(Debug)]
pub struct ServerExit {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it printed on stdout after the ready line.
    pub stdout_rest: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

impl Server {
    /// Starts the server and reads its ready line.
    pub fn start() -> Self {
        Self::start_with(&["--listen", "127.0.0.1:0"])
    }

    /// Starts `wsduplex serve --listen 127.0.0.1:0 EXTRA` and reads its ready line.
    pub fn start_on_loopback(extra: &[&str]) -> Self {
        let mut args = vec!["--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Self::start_with(&args)
    }

    /// Starts `wsduplex serve ARGS` (which must include `--listen`) and reads its ready line.
    #[allow(dead_code)] // not every test binary uses every helper
    pub fn start_with(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wsduplex serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        let stdout_rest = thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let _ = tx.send(line);
            let mut rest = String::new();
            let _ = r.read_to_string(&mut rest);
            rest
        });
        // Drained all along, so a chatty server can never block on a full pipe.
        let stderr = thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut s);
            s
        });
        let mut server = Self {
            child: Some(child),
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            ready_line: String::new(),
            stdout_rest: Some(stdout_rest),
            stderr: Some(stderr),
        };
        let line = rx
            .recv_timeout(TIMEOUT)
            .expect("wsduplex serve printed no ready line");
        server.ready_line = line.trim_end_matches('\n').to_string();
        server.addr = server
            .ready_line
            .strip_prefix("listening on http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected ready line {line:?}"));
        server
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// `ws://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Sends a signal by name (`TERM`, `INT`).
    pub fn signal(&self, name: &str) {
        send_signal(self.pid(), name);
    }

    /// Waits (bounded) for the process to exit and collects its output.
    pub fn wait(mut self) -> ServerExit {
        let status = wait_child(self.child.take().expect("server running"));
        let join = |h: Option<JoinHandle<String>>| h.map(|h| h.join().unwrap_or_default());
        ServerExit {
            status,
            stdout_rest: join(self.stdout_rest.take()).unwrap_or_default(),
            stderr: join(self.stderr.take()).unwrap_or_default(),
        }
    }

    /// SIGTERM, then checks a clean exit: status 0, nothing more on stdout, no panic.
    /// Waits for the handler first: the ready line comes before it (a bug, shown by the
    /// ignored `serve_signal_right_after_the_ready_line_exits_0`).
    pub fn stop(self) {
        wait_until_caught(self.pid(), 15);
        self.signal("TERM");
        let exit = self.wait();
        assert!(exit.status.success(), "server exit: {exit:?}");
        assert_eq!(
            exit.stdout_rest, "",
            "server printed more than its ready line"
        );
        assert!(
            !exit.stderr.contains("panicked"),
            "server panicked: {exit:?}"
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What a finished `wsduplex client` run produced.
#[derive(Debug)]
pub struct Output {
    /// Its exit status.
    pub status: ExitStatus,
    /// Raw stdout.
    pub stdout: Vec<u8>,
    /// Stderr, lossily decoded.
    pub stderr: String,
}

impl Output {
    /// Stdout as text.
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// A failure reported the way a CLI should: non-zero exit, one line on stderr that
    /// starts with `wsduplex:`, no panic. Returns that line.
    pub fn assert_one_line_error(&self) -> String {
        assert!(!self.status.success(), "expected failure: {self:?}");
        assert!(!self.stderr.contains("panicked"), "panic: {self:?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one stderr line: {self:?}");
        assert!(lines[0].starts_with("wsduplex: "), "{self:?}");
        lines[0].to_string()
    }
}

/// `node tests/interop/node/SCRIPT` (Node's own modules only, nothing from npm), or `None`
/// with a note when Node is not installed (a failure with `WSDUPLEX_REQUIRE_INTEROP=1`);
/// `what` names the test that skips.
#[allow(dead_code)] // not every test binary runs Node
pub fn node_script(script: &str, what: &str) -> Option<Command> {
    if Command::new("node").arg("--version").output().is_err() {
        if std::env::var_os("WSDUPLEX_REQUIRE_INTEROP").is_some_and(|v| v == "1") {
            panic!("node is not installed");
        }
        eprintln!("\n*** node is not installed: SKIPPING {what} ***\n");
        return None;
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/interop/node");
    let mut cmd = Command::new("node");
    cmd.arg(format!("{dir}/{script}"));
    Some(cmd)
}

/// Runs `wsduplex ARGS` with `stdin` as its whole input (then EOF), bounded by
/// [`TIMEOUT`].
pub fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wsduplex");
    let pid = child.id();
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_vec();
    // A process that fails early closes its stdin: the write error is expected then.
    thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(TIMEOUT) {
        Ok(out) => {
            let out = out.expect("wait for wsduplex");
            Output {
                status: out.status,
                stdout: out.stdout,
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        }
        Err(_) => {
            send_signal(pid, "KILL");
            panic!("wsduplex {args:?} did not exit within {TIMEOUT:?}");
        }
    }
}

/// A `wsduplex` process whose stdin stays open until [`Running::close_stdin`] (an
/// interactive user, or a pipe whose writer is still there); killed on drop.
pub struct Running {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stdout: Option<JoinHandle<()>>,
    stderr: Option<JoinHandle<String>>,
}

impl Running {
    /// Starts `wsduplex ARGS`.
    pub fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wsduplex");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        let stdout = thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut s);
            s
        });
        Self {
            child: Some(child),
            stdin,
            lines,
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    }

    /// Writes one line to its stdin.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write stdin");
        stdin.flush().expect("flush stdin");
    }

    /// Closes its stdin (EOF).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next line it prints on stdout, waiting at most [`TIMEOUT`].
    pub fn next_line(&self) -> String {
        self.lines
            .recv_timeout(TIMEOUT)
            .expect("no stdout line within the timeout")
    }

    /// Waits (bounded) for it to exit, stdin still as it is; returns the status, the
    /// stdout lines not yet taken, and stderr.
    pub fn wait(mut self) -> (ExitStatus, Vec<String>, String) {
        let status = wait_child(self.child.take().expect("running"));
        if let Some(h) = self.stdout.take() {
            let _ = h.join();
        }
        let rest = self.lines.try_iter().collect();
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        (status, rest, stderr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------

/// A TCP connection with read and write timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
    s.set_write_timeout(Some(TIMEOUT)).expect("write timeout");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// One `read`, retried when a signal interrupts it (with `SO_RCVTIMEO` set, Linux returns
/// `EINTR` even for handlers installed with `SA_RESTART`).
pub fn read_some(stream: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Reads up to the end of an HTTP head; returns the head (without the blank line) and the
/// bytes read past it.
pub fn read_head(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).into_owned();
            return (head, buf[i + 4..].to_vec());
        }
        match read_some(stream, &mut chunk) {
            Ok(0) => panic!(
                "eof before the end of the http head: {:?}",
                String::from_utf8_lossy(&buf)
            ),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("reading http head: {e}"),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The value of the first header `name` (case-insensitive) in a head.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A complete HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The head, status line included.
    pub head: String,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.head, name)
    }

    /// The body as text.
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `request` on a fresh connection and reads the response up to the server's close.
pub fn http(addr: SocketAddr, request: &[u8]) -> HttpResponse {
    let mut s = connect(addr);
    // The server may answer (431, 400) and close before it read everything: a failed
    // write is expected then, the answer is what counts.
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match read_some(&mut s, &mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            // Closing with unread input resets the connection after the answer was sent.
            Err(e) if e.kind() == ErrorKind::ConnectionReset && !buf.is_empty() => break,
            Err(e) => panic!("reading http response: {e} (got {} bytes)", buf.len()),
        }
    }
    let i = find(&buf, b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no http head in {:?}", String::from_utf8_lossy(&buf)));
    let head = String::from_utf8_lossy(&buf[..i]).into_owned();
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    HttpResponse {
        status,
        head,
        body: buf[i + 4..].to_vec(),
    }
}

/// `GET path` on a fresh connection ([`http`]).
pub fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    )
}

/// A client opening request for `path` with the RFC's sample key; `extra` lines (each
/// ending in CRLF) go before the blank line.
pub fn upgrade_request(addr: SocketAddr, path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

// ---------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------

pub const CONT: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// RSV bits as they sit in the first byte.
pub const RSV1: u8 = 0x40;
pub const RSV2: u8 = 0x20;
pub const RSV3: u8 = 0x10;

/// Encodes any frame, valid or not: `rsv` is or-ed into the first byte, the length takes
/// the shortest form, `mask` (if any) masks the payload.
pub fn frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = frame_header(fin, rsv, opcode, payload.len() as u64, mask);
    match mask {
        Some(key) => out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4])),
        None => out.extend_from_slice(payload),
    }
    out
}

/// A frame header alone, announcing `len` bytes of payload.
pub fn frame_header(fin: bool, rsv: u8, opcode: u8, len: u64, mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | rsv | opcode];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match len {
        0..=125 => out.push(m | len as u8),
        126..=0xFFFF => {
            out.push(m | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(m | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
    out
}

/// A close frame body: the code, then the reason.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    /// The three RSV bits, in place (`0x70` mask of the first byte).
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    /// Unmasked payload.
    pub payload: Vec<u8>,
}

impl Frame {
    /// For a close frame: the code (if any) and the reason.
    pub fn close(&self) -> (Option<u16>, String) {
        assert_eq!(self.opcode, CLOSE, "not a close frame: {self:?}");
        if self.payload.len() < 2 {
            return (None, String::new());
        }
        let code = u16::from_be_bytes([self.payload[0], self.payload[1]]);
        let reason = String::from_utf8(self.payload[2..].to_vec())
            .unwrap_or_else(|_| panic!("close reason is not utf-8: {self:?}"));
        (Some(code), reason)
    }
}

/// One end of a WebSocket over a blocking std socket, speaking raw frames.
pub struct Ws {
    pub stream: TcpStream,
    buf: Vec<u8>,
    /// Client role: mask what we send, expect unmasked frames back. Server role: the
    /// reverse.
    client: bool,
    masks: u32,
}

impl Ws {
    /// Wraps a stream whose opening handshake is done; `leftover` are bytes read past it.
    pub fn new(stream: TcpStream, leftover: Vec<u8>, client: bool) -> Self {
        Self {
            stream,
            buf: leftover,
            client,
            masks: 0x1234_5678,
        }
    }

    /// Opens `path` on `addr` with a well-formed request; checks the `101` and its accept.
    pub fn connect(addr: SocketAddr, path: &str) -> Self {
        Self::connect_with(addr, &upgrade_request(addr, path, "")).0
    }

    /// Sends `request` as is, expects `101` with the right accept; returns the head too.
    pub fn connect_with(addr: SocketAddr, request: &str) -> (Self, String) {
        let mut stream = connect(addr);
        stream.write_all(request.as_bytes()).expect("send request");
        let (head, leftover) = read_head(&mut stream);
        assert!(
            head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "expected 101, got {head:?}"
        );
        assert_eq!(
            header(&head, "sec-websocket-accept"),
            Some(accept_key(KEY).as_str()),
            "{head}"
        );
        (Self::new(stream, leftover, true), head)
    }

    /// A fresh masking key per frame, as RFC 6455 §5.3 asks (unpredictability aside).
    pub fn next_mask(&mut self) -> Option<[u8; 4]> {
        if !self.client {
            return None;
        }
        self.masks = self.masks.wrapping_mul(1_103_515_245).wrapping_add(12345);
        Some(self.masks.to_be_bytes())
    }

    /// Writes bytes as they are, in one write.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send frame bytes");
    }

    /// Sends one frame, masked by role.
    pub fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let mask = self.next_mask();
        self.send_raw(&frame(fin, 0, opcode, payload, mask));
    }

    /// Sends a complete message or control frame.
    pub fn send(&mut self, opcode: u8, payload: &[u8]) {
        self.send_frame(true, opcode, payload);
    }

    /// Sends a close frame.
    pub fn send_close(&mut self, code: u16, reason: &str) {
        self.send(CLOSE, &close_payload(code, reason.as_bytes()));
    }

    /// Reads until `n` bytes are buffered; false on EOF.
    fn fill(&mut self, n: usize) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        while self.buf.len() < n {
            match read_some(&mut self.stream, &mut chunk) {
                Ok(0) => return false,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
                Err(e) => panic!("reading a frame: {e} (have {} bytes)", self.buf.len()),
            }
        }
        true
    }

    /// Reads the next frame; checks the masking rule for our role.
    pub fn read_frame(&mut self) -> Frame {
        self.try_read_frame()
            .expect("eof while waiting for a frame")
    }

    /// The next frame, or `None` on a clean EOF before its first byte.
    pub fn try_read_frame(&mut self) -> Option<Frame> {
        if !self.fill(2) {
            assert!(self.buf.is_empty(), "eof inside a frame header");
            return None;
        }
        let (b0, b1) = (self.buf[0], self.buf[1]);
        let masked = b1 & 0x80 != 0;
        let (len, mut pos) = match b1 & 0x7F {
            126 => {
                assert!(self.fill(4), "eof inside a frame header");
                (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
            }
            127 => {
                assert!(self.fill(10), "eof inside a frame header");
                let len = u64::from_be_bytes(self.buf[2..10].try_into().expect("8 bytes"));
                (usize::try_from(len).expect("frame length fits usize"), 10)
            }
            n => (n as usize, 2),
        };
        let key = if masked {
            assert!(self.fill(pos + 4), "eof inside a frame header");
            let k = [
                self.buf[pos],
                self.buf[pos + 1],
                self.buf[pos + 2],
                self.buf[pos + 3],
            ];
            pos += 4;
            Some(k)
        } else {
            None
        };
        assert!(self.fill(pos + len), "eof inside a frame payload");
        let mut payload: Vec<u8> = self.buf.drain(..pos + len).skip(pos).collect();
        if let Some(k) = key {
            payload
                .iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b ^= k[i % 4]);
        }
        let f = Frame {
            fin: b0 & 0x80 != 0,
            rsv: b0 & 0x70,
            opcode: b0 & 0x0F,
            masked,
            payload,
        };
        // RFC 6455 §5.1: servers never mask, clients always do.
        assert_eq!(f.masked, !self.client, "masking rule broken by peer: {f:?}");
        Some(f)
    }

    /// Reads one data message (reassembling fragments): opcode and payload.
    pub fn read_message(&mut self) -> (u8, Vec<u8>) {
        let first = self.read_frame();
        assert!(
            first.opcode == TEXT || first.opcode == BINARY,
            "expected a data frame, got {first:?}"
        );
        let mut payload = first.payload;
        let mut fin = first.fin;
        while !fin {
            let f = self.read_frame();
            assert_eq!(f.opcode, CONT, "expected a continuation, got {f:?}");
            payload.extend_from_slice(&f.payload);
            fin = f.fin;
        }
        (first.opcode, payload)
    }

    /// Reads the next frame, which must be a close; returns its code and reason.
    pub fn expect_close(&mut self) -> (Option<u16>, String) {
        let f = self.read_frame();
        assert!(f.fin && f.rsv == 0, "bad close frame {f:?}");
        f.close()
    }

    /// The peer closed TCP: the next read returns 0, nothing is left over.
    pub fn expect_eof(&mut self) {
        assert!(self.buf.is_empty(), "bytes after close: {:?}", self.buf);
        let mut byte = [0u8; 1];
        match read_some(&mut self.stream, &mut byte) {
            Ok(0) => {}
            Ok(_) => panic!("expected eof, got data"),
            Err(e) => panic!("expected eof, got {e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// A fake server for the client tests
// ---------------------------------------------------------------------------------------

/// A one-connection server on a thread; `finish` returns what its closure returned.
pub struct FakeServer<T> {
    pub addr: SocketAddr,
    result: mpsc::Receiver<T>,
    handle: JoinHandle<()>,
}

impl<T: Send + 'static> FakeServer<T> {
    /// Listens on `127.0.0.1:0` and runs `f` on the first connection accepted.
    pub fn start(f: impl FnOnce(TcpStream) -> T + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (tx, result) = mpsc::channel();
        let handle = thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
            stream.set_write_timeout(Some(TIMEOUT)).expect("timeout");
            let _ = tx.send(f(stream));
        });
        Self {
            addr,
            result,
            handle,
        }
    }

    /// `ws://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Waits (bounded) for the closure's result; re-raises its panic.
    pub fn finish(self) -> T {
        match self.result.recv_timeout(TIMEOUT) {
            Ok(v) => v,
            Err(mpsc::RecvTimeoutError::Disconnected) => match self.handle.join() {
                Err(panic) => std::panic::resume_unwind(panic),
                Ok(()) => unreachable!("the fake server thread sends before it ends"),
            },
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("fake server did not finish within {TIMEOUT:?}")
            }
        }
    }
}

/// Server side of the opening handshake: reads the request, answers a correct `101`
/// (selecting the first subprotocol offered, if any). Returns the request head.
pub fn accept_upgrade(mut stream: TcpStream) -> (Ws, String) {
    let (head, leftover) = read_head(&mut stream);
    let key = header(&head, "sec-websocket-key").expect("client sent a key");
    let mut resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        accept_key(key)
    );
    if let Some(p) = header(&head, "sec-websocket-protocol") {
        let first = p.split(',').next().unwrap_or_default().trim();
        resp.push_str(&format!("Sec-WebSocket-Protocol: {first}\r\n"));
    }
    resp.push_str("\r\n");
    stream.write_all(resp.as_bytes()).expect("send 101");
    (Ws::new(stream, leftover, false), head)
}

// ---------------------------------------------------------------------------------------
// Sec-WebSocket-Accept: base64(SHA-1(key + GUID))
// ---------------------------------------------------------------------------------------

/// RFC 6455 §4.2.2.
pub fn accept_key(key: &str) -> String {
    base64(&sha1(
        format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
    ))
}

/// SHA-1 (FIPS 180-4), straight from the spec; speed does not matter here.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&(data.len() as u64 * 8).to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (wi, word) in w.iter_mut().zip(block.chunks_exact(4)) {
            *wi = u32::from_be_bytes(word.try_into().expect("4 bytes"));
        }
        for t in 16..80 {
            w[t] = (w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (t, wt) in w.iter().enumerate() {
            let (f, k) = match t {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let tmp = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wt);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = tmp;
        }
        for (hi, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *hi = hi.wrapping_add(v);
        }
    }
    let mut out = [0u8; 20];
    for (o, hi) in out.chunks_exact_mut(4).zip(h) {
        o.copy_from_slice(&hi.to_be_bytes());
    }
    out
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Polls `f` until it returns true, at most `limit`; how long that took.
pub fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        // A poll interval, not a guess at how long anything takes.
        thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

/// The value of one sample in a `/metrics` body.
pub fn metric(body: &str, sample: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {sample} in {body}"))
}

/// The value of one sample in the server's `/metrics`, fetched now.
pub fn metric_of(addr: SocketAddr, sample: &str) -> u64 {
    metric(&get(addr, "/metrics").body_str(), sample)
}
