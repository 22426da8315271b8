//! Interop with independent implementations, in both directions: Python `websockets` and
//! Node `ws` as clients of our server, and as servers for our client.
//!
//! The peers' side lives in `tests/interop/{python,node}` and is installed by
//! `tests/interop/setup.sh`. Without it these tests print a note and pass, unless
//! `WSDUPLEX_REQUIRE_INTEROP=1` (CI) makes that a failure.
//!
//! Peer clients check every echo themselves and exit non-zero on a mismatch; peer servers
//! print their port on the first line of stdout. Every process is killed when its test ends.

#[path = "../../../tests/interop/peer.rs"]
mod peer;

use peer::Peer;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use wsduplex::server::{read_request, ServerConfig};
use wsduplex::{
    connect_with, proto, ClientConfig, ClientStream, CloseCode, CloseFrame, Message, WebSocket,
};

const TEST_TIMEOUT: Duration = Duration::from_secs(30);
const MIB: usize = 1 << 20;

#[tokio::test]
async fn python_client_against_our_server() {
    bounded(peer_client_against_our_server(Peer::Python)).await;
}

#[tokio::test]
async fn node_client_against_our_server() {
    bounded(peer_client_against_our_server(Peer::Node)).await;
}

#[tokio::test]
async fn python_server_for_our_client() {
    bounded(our_client_against_peer_server(Peer::Python)).await;
}

#[tokio::test]
async fn node_server_for_our_client() {
    bounded(our_client_against_peer_server(Peer::Node)).await;
}

async fn bounded(test: impl std::future::Future<Output = ()>) {
    if tokio::time::timeout(TEST_TIMEOUT, test).await.is_err() {
        panic!("timed out after {TEST_TIMEOUT:?} (peer output, if any, is above)");
    }
}

/// The peer's client script runs against our echo server; it checks text, binary, empty and
/// 1 MiB messages, its own fragmented messages, ping/pong, subprotocol selection by our
/// preference, and our close 4001 "bye". Then it closes a second connection with 4003.
async fn peer_client_against_our_server(peer: Peer) {
    let Some(mut cmd) = peer.command("client", "its client test (interop)") else {
        return;
    };
    let mut server = OurServer::start().await;
    cmd.arg(&server.url);
    let mut client = PeerProcess::spawn(format!("{} client", peer.name()), cmd);
    let (status, stdout) = client.wait().await;
    if !status.success() {
        let stderr = client.take_stderr();
        let mut ours = String::new();
        while let Ok(outcome) = server.outcomes.try_recv() {
            ours.push_str(&format!("{outcome:?}\n"));
        }
        panic!(
            "{} client failed ({status})\n--- its stdout ---\n{stdout}\n--- its stderr ---\n\
             {stderr}\n--- our server's connections ---\n{ours}",
            peer.name()
        );
    }
    // Its checks, one per line: shown with --nocapture.
    eprintln!("--- {} client ---\n{stdout}", peer.name());
    // What our server saw: the peer echoed our close, then sent its own.
    let mut closes = Vec::new();
    for _ in 0..2 {
        match server.outcomes.recv().await.expect("server gone") {
            Ok(Some(frame)) => closes.push((frame.code.as_u16(), frame.reason.to_string())),
            other => panic!("our server: expected a close frame, got {other:?}"),
        }
    }
    closes.sort();
    assert_eq!(closes[0].0, 4001, "the peer echoes our close code");
    assert_eq!(
        closes[1],
        (4003, "client-bye".to_string()),
        "the peer's own close"
    );
}

/// Our client against the peer's echo server.
async fn our_client_against_peer_server(peer: Peer) {
    let Some(cmd) = peer.command("server", "its server test (interop)") else {
        return;
    };
    let mut server = PeerProcess::spawn(format!("{} server", peer.name()), cmd);
    let first = server
        .next_line()
        .await
        .expect("peer server exited before its port");
    let port: u16 = first
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("peer server's first line is not a port: {first:?}"));
    let url = format!("ws://127.0.0.1:{port}/");
    let mut config = ClientConfig::default();
    config.subprotocols = vec!["chat".into()];
    let big: Vec<u8> = (0..MIB).map(|i| (i * 31 % 251) as u8).collect();

    // Unfragmented messages; we close with 4000 "done" and the peer echoes it.
    let (mut ws, _) = connect_with(&url, &config).await.expect("connect");
    assert_eq!(ws.subprotocol(), Some("chat"));
    for (msg, what) in [
        (Message::text("hello, wsduplex"), "text"),
        (
            Message::text("h\u{e9}llo \u{2713} \u{1f600}"),
            "non-ascii text",
        ),
        (Message::binary(vec![0u8, 1, 2, 0xfe, 0xff]), "binary"),
        (Message::text(""), "empty text"),
        (Message::binary(Vec::new()), "empty binary"),
        (Message::binary(big.clone()), "1 MiB binary"),
    ] {
        expect_echo(&mut ws, msg, what).await;
    }
    let payload: &'static [u8] = b"ping \x00\xff payload";
    ws.send(Message::Ping(payload.into())).await.expect("ping");
    match ws.recv().await {
        Some(Ok(Message::Pong(p))) => assert_eq!(&p[..], payload, "pong payload"),
        other => panic!("ping: expected a pong, got {other:?}"),
    }
    ws.close(CloseCode::new(4000), "done").await.expect("close");
    let frame = expect_final_close(&mut ws).await;
    assert_eq!(frame.code.as_u16(), 4000, "the peer echoes our close code");

    // We fragment (1000-byte frames, splitting characters in the text); the peer closes.
    config.socket.protocol = proto::Config::default().fragment_size(Some(1000));
    let (mut ws, _) = connect_with(&url, &config).await.expect("connect");
    expect_echo(
        &mut ws,
        Message::binary(big),
        "1 MiB binary in 1000-byte frames",
    )
    .await;
    let text = "a\u{e9}\u{2713}".repeat(2000); // 6 bytes each: frame edges cut characters
    expect_echo(
        &mut ws,
        Message::text(text),
        "12000-byte text in 1000-byte frames",
    )
    .await;
    ws.send(Message::text("close:4002:peer-bye"))
        .await
        .expect("send");
    let frame = expect_final_close(&mut ws).await;
    assert_eq!(
        (frame.code.as_u16(), frame.reason.as_str()),
        (4002, "peer-bye"),
        "the peer's close"
    );
}

async fn expect_echo(ws: &mut WebSocket<ClientStream>, sent: Message, what: &str) {
    ws.send(sent.clone())
        .await
        .unwrap_or_else(|e| panic!("{what}: send: {e}"));
    match ws.recv().await {
        Some(Ok(got)) if got == sent => {}
        Some(Ok(got)) => {
            let (a, b) = (sent.as_payload(), got.as_payload());
            let at = a.iter().zip(b).take_while(|(x, y)| x == y).count();
            panic!("{what}: sent {sent:?}, got {got:?}, first difference at byte {at}");
        }
        Some(Err(e)) => panic!("{what}: error instead of the echo: {e}"),
        None => panic!("{what}: the connection ended instead of the echo"),
    }
}

/// The peer's close frame, which must be the last item before the stream ends.
async fn expect_final_close(ws: &mut WebSocket<ClientStream>) -> CloseFrame {
    let frame = match ws.recv().await {
        Some(Ok(Message::Close(Some(frame)))) => frame,
        other => panic!("expected the peer's close frame, got {other:?}"),
    };
    match ws.recv().await {
        None => frame,
        other => panic!("expected the end of the stream after the close, got {other:?}"),
    }
}

/// Our echo server: echoes data messages, closes on "close:CODE:REASON", prefers
/// subprotocol "chat.v2" over "chat". Reports, per connection, the close frame it received.
struct OurServer {
    url: String,
    outcomes: mpsc::UnboundedReceiver<Result<Option<CloseFrame>, String>>,
}

impl OurServer {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://{}/", listener.local_addr().expect("local_addr"));
        let mut config = ServerConfig::default();
        config.subprotocols = vec!["chat.v2".into(), "chat".into()];
        let (tx, outcomes) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (config, tx) = (config.clone(), tx.clone());
                tokio::spawn(async move {
                    let _ = tx.send(echo_connection(tcp, &config).await);
                });
            }
        });
        Self { url, outcomes }
    }
}

async fn echo_connection(
    tcp: tokio::net::TcpStream,
    config: &ServerConfig,
) -> Result<Option<CloseFrame>, String> {
    let incoming = read_request(tcp, config)
        .await
        .map_err(|e| format!("read_request: {e}"))?;
    let mut ws = incoming
        .accept(config)
        .await
        .map_err(|e| format!("accept: {e}"))?;
    let mut received_close = None;
    while let Some(item) = ws.recv().await {
        match item.map_err(|e| format!("recv: {e}"))? {
            Message::Text(t) if t.starts_with("close:") => {
                let (code, reason) = t["close:".len()..]
                    .split_once(':')
                    .ok_or_else(|| format!("bad close command {t:?}"))?;
                let code = code.parse().map_err(|_| format!("bad close code {t:?}"))?;
                ws.close(CloseCode::new(code), reason)
                    .await
                    .map_err(|e| format!("close: {e}"))?;
            }
            Message::Close(frame) => received_close = frame,
            m if m.is_data() => ws.send(m).await.map_err(|e| format!("send: {e}"))?,
            _ => {} // the library answers pings
        }
    }
    Ok(received_close)
}

/// A peer process. Dropping it kills the process and prints what it wrote to stderr (shown
/// if the test fails).
struct PeerProcess {
    name: String,
    child: Child,
    stdout: mpsc::UnboundedReceiver<String>,
    stderr: Option<JoinHandle<String>>,
}

impl PeerProcess {
    fn spawn(name: String, mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let out = child.stdout.take().expect("stdout");
        let (tx, stdout) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line); // keep draining even if nobody listens
            }
        });
        let mut err = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = err.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        });
        Self {
            name,
            child,
            stdout,
            stderr: Some(stderr),
        }
    }

    async fn next_line(&mut self) -> Option<String> {
        self.stdout.recv().await
    }

    /// Waits for the process to exit: its status and its stdout.
    async fn wait(&mut self) -> (ExitStatus, String) {
        let mut out = String::new();
        while let Some(line) = self.stdout.recv().await {
            out.push_str(&line);
            out.push('\n');
        }
        // Its stdout is closed: it is exiting, so this blocks only briefly.
        let status = self.child.wait().expect("wait");
        (status, out)
    }

    fn take_stderr(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let has_stderr = self.stderr.is_some();
        let stderr = self.take_stderr();
        if has_stderr && !stderr.trim().is_empty() {
            eprintln!("--- {} stderr ---\n{stderr}", self.name);
        }
    }
}
