//! Keepalive from the client's side against a real `wsduplex serve` frozen with `SIGSTOP`:
//! the kernel still acknowledges every byte, so only an unanswered ping tells the client
//! the server is gone. The library client and the CLI each give up with "peer did not
//! answer a ping" after about ping interval + ping timeout; with reconnecting (the
//! library's `ReconnectingClient`, the CLI's `--reconnect`) they come back once the server
//! is resumed with `SIGCONT`, and echo again.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use wsduplex::reconnect::{Backoff, ReconnectingClient};
use wsduplex::{ClientConfig, Error, Message};

const PING: Duration = Duration::from_secs(1);

fn config() -> ClientConfig {
    let mut config = ClientConfig::default();
    config.socket.ping_interval = Some(PING);
    config.socket.ping_timeout = PING;
    // A frozen server still completes TCP handshakes (the kernel does): the WebSocket
    // handshake is what times out while it is stopped.
    config.handshake_timeout = PING;
    config
}

/// SIGCONT on drop, so a failing test never leaves a stopped server behind.
struct Frozen<'a>(&'a Server);

impl<'a> Frozen<'a> {
    fn new(server: &'a Server) -> Self {
        server.signal("STOP");
        Self(server)
    }
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        self.0.signal("CONT");
    }
}

#[tokio::test]
async fn the_library_client_gives_up_on_a_frozen_server() {
    let server = Server::start();
    let (mut ws, _) = wsduplex::connect_with(server.url("/echo"), &config())
        .await
        .unwrap();
    ws.send("before").await.unwrap();
    assert!(matches!(ws.recv().await, Some(Ok(Message::Text(t))) if t.as_str() == "before"));

    let frozen = Frozen::new(&server);
    let started = Instant::now();
    let end = tokio::time::timeout(TIMEOUT, ws.recv())
        .await
        .expect("gave up in time");
    let waited = started.elapsed();
    assert!(
        matches!(end, Some(Err(Error::KeepaliveTimeout(d))) if d == PING),
        "{end:?}"
    );
    // One interval to the ping, then the ping timeout: not before the ping was due.
    assert!(waited >= PING, "gave up after {waited:?}");
    drop(frozen);
    server.stop();
}

#[tokio::test]
async fn the_reconnecting_library_client_comes_back_after_sigcont() {
    let server = Server::start();
    let mut backoff = Backoff::default();
    backoff.initial = Duration::from_millis(50);
    backoff.max = Duration::from_millis(200);
    let mut client = ReconnectingClient::new(server.url("/echo"), config(), backoff);
    client.send("one").await.unwrap();
    assert!(matches!(client.recv().await, Some(Ok(Message::Text(t))) if t.as_str() == "one"));

    let frozen = Frozen::new(&server);
    let lost = tokio::time::timeout(TIMEOUT, client.recv())
        .await
        .expect("noticed in time");
    assert!(
        matches!(lost, Some(Err(Error::KeepaliveTimeout(_)))),
        "{lost:?}"
    );
    drop(frozen);
    // Attempts made while it was stopped timed out; the next one reaches it.
    let again = async {
        client.send("two").await?;
        client.recv().await.expect("the client goes on")
    };
    let again = tokio::time::timeout(TIMEOUT, again)
        .await
        .expect("back in time");
    assert!(
        matches!(&again, Ok(Message::Text(t)) if t.as_str() == "two"),
        "{again:?}"
    );
    assert!(
        client.connections() >= 2,
        "{} connections",
        client.connections()
    );
    server.stop();
}

/// `wsduplex client URL ARGS` with stdin, stdout and stderr as line channels.
struct Client {
    child: Option<std::process::Child>,
    stdin: std::process::ChildStdin,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl Client {
    fn spawn(url: &str, args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .arg("client")
            .arg(url)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wsduplex client");
        let lines = |r: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        };
        Self {
            stdin: child.stdin.take().unwrap(),
            stdout: lines(Box::new(child.stdout.take().unwrap())),
            stderr: lines(Box::new(child.stderr.take().unwrap())),
            child: Some(child),
        }
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The next stdout line that is not a status line.
    fn echoed(&self) -> String {
        self.stdout.recv_timeout(TIMEOUT).expect("a line on stdout")
    }

    /// Stderr lines until one contains `what`; all of them.
    fn stderr_until(&self, what: &str) -> Vec<String> {
        let mut seen = Vec::new();
        while !seen.last().is_some_and(|l: &String| l.contains(what)) {
            match self.stderr.recv_timeout(TIMEOUT) {
                Ok(line) => seen.push(line),
                Err(_) => panic!("no {what:?} on stderr; saw {seen:?}"),
            }
        }
        seen
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

const KEEPALIVE: [&str; 4] = ["--ping-interval", "1s", "--ping-timeout", "1s"];

#[test]
fn the_cli_client_exits_when_a_frozen_server_misses_a_ping() {
    let server = Server::start();
    let mut client = Client::spawn(&server.url("/echo"), &KEEPALIVE);
    client.send("hello");
    assert_eq!(client.echoed(), "hello");
    let frozen = Frozen::new(&server);
    let started = Instant::now();
    let status = wait_child(client.child.take().unwrap());
    let waited = started.elapsed();
    drop(frozen);
    let stderr: Vec<String> = client.stderr.try_iter().collect();
    assert!(!status.success(), "exit {status:?}");
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("peer did not answer a ping")),
        "{stderr:?}"
    );
    assert!(waited >= PING, "gave up after {waited:?}");
    server.stop();
}

#[test]
fn the_cli_client_with_reconnect_comes_back_after_sigcont() {
    let server = Server::start();
    let mut args = KEEPALIVE.to_vec();
    args.extend(["--reconnect", "--handshake-timeout", "1s"]);
    let mut client = Client::spawn(&server.url("/echo"), &args);
    client.send("one");
    assert_eq!(client.echoed(), "one");
    let frozen = Frozen::new(&server);
    let lines = client.stderr_until("reconnecting");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("peer did not answer a ping")),
        "{lines:?}"
    );
    drop(frozen);
    // Typed while it was away: read once the next connection is up, and echoed.
    client.send("two");
    assert_eq!(client.echoed(), "two");
    server.stop();
}
