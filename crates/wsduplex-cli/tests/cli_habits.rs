//! The habits users bring from websocat and wscat (issue 15 §3), run as real processes:
//! `client`'s flags against `wsduplex serve`, `wsduplex listen` or a fake server that shows
//! what it got; `listen` with our client and Python `websockets`; `--exec` both ways;
//! completions and man pages; one error line for every misuse.

mod common;
#[allow(dead_code)] // Python only: Node is not used here
#[path = "../../../tests/interop/peer.rs"]
mod peer;

use common::*;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

/// A running `wsduplex listen 127.0.0.1:0 EXTRA` and the address of its ready line.
fn listen(extra: &[&str]) -> (Running, SocketAddr) {
    let mut args = vec!["listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let l = Running::spawn(&args);
    let ready = l.next_line();
    let addr = ready
        .strip_prefix("listening on ws://")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected ready line {ready:?}"));
    (l, addr)
}

/// The request head a client sent, with its flags, to a fake server (stdin empty).
fn head_sent_by(flags: &[&str]) -> (String, Output) {
    let fake = FakeServer::start(|stream| {
        let (mut ws, head) = accept_upgrade(stream);
        ws.expect_close();
        ws.send_close(1000, "");
        head
    });
    let url = fake.url("/");
    let mut args = vec!["client"];
    args.extend_from_slice(flags);
    args.push(&url);
    let out = run(&args, b"");
    (fake.finish(), out)
}

// ---------------------------------------------------------------------------------------
// client: the handshake
// ---------------------------------------------------------------------------------------

#[test]
fn client_s_and_protocol_offer_a_subprotocol() {
    for flag in ["-s", "--subprotocol", "--protocol"] {
        let (head, out) = head_sent_by(&[flag, "chat.v2"]);
        assert!(out.status.success(), "{flag}: {out:?}");
        assert_eq!(
            header(&head, "sec-websocket-protocol"),
            Some("chat.v2"),
            "{flag}"
        );
    }
}

#[test]
fn client_basic_auth_sends_an_authorization_header() {
    let (head, out) = head_sent_by(&["--basic-auth", "user:pa:ss"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        header(&head, "authorization"),
        Some(format!("Basic {}", base64(b"user:pa:ss")).as_str())
    );
    let out = run(
        &["client", "--basic-auth", "nocolon", "ws://127.0.0.1:1/"],
        b"",
    );
    assert!(
        !out.status.success() && out.stderr.contains("USER:PASS"),
        "{out:?}"
    );
}

#[test]
fn client_without_a_scheme_connects_with_ws_and_says_so() {
    let server = Server::start();
    let url = format!("{}/echo", server.addr);
    let out = run(&["client", &url], b"plain\n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout_str(), "plain\n");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains(&format!("ws://{url}")), "{out:?}");
    // -q: no note.
    let out = run(&["client", "-q", &url], b"plain\n");
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
    server.stop();
}

#[test]
fn client_shows_the_location_of_a_redirect() {
    let fake = FakeServer::start(|mut stream| {
        read_head(&mut stream);
        std::io::Write::write_all(
            &mut stream,
            b"HTTP/1.1 302 Found\r\nLocation: ws://elsewhere.test/chat\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
    });
    let out = run(&["client", &fake.url("/")], b"");
    fake.finish();
    let line = out.assert_one_line_error();
    assert!(line.contains("302"), "{line}");
    assert!(line.contains("ws://elsewhere.test/chat"), "{line}");
}

// ---------------------------------------------------------------------------------------
// client: binary messages
// ---------------------------------------------------------------------------------------

#[test]
fn client_binary_hex_lines_go_out_as_binary() {
    let server = Server::start();
    let url = server.url("/echo");
    // /echo answers binary with binary: printed as base64, it cannot be the text echoed.
    let out = run(
        &[
            "client",
            "--binary",
            "hex",
            "--print-binary",
            "base64",
            &url,
        ],
        b"00ff80\nde ad\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout_str(), "AP+A\n3q0=\n");
    // Text stays text; binary defaults to hex.
    let out = run(&["client", "--binary", "hex", &url], b"0001\n");
    assert_eq!(out.stdout_str(), "0001\n", "{out:?}");
    server.stop();
}

#[test]
fn client_binary_base64_lines_and_replies() {
    let server = Server::start();
    let url = server.url("/echo");
    // "//8=" starts with "//" and is still base64, not an escape.
    let out = run(&["client", "--binary", "base64", &url], b"AP+A\n//8=\n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout_str(), "AP+A\n//8=\n");
    let out = run(
        &[
            "client",
            "--binary",
            "base64",
            "--print-binary",
            "hex",
            &url,
        ],
        b"AP+A\n",
    );
    assert_eq!(out.stdout_str(), "00ff80\n", "{out:?}");
    server.stop();
}

#[test]
fn client_binary_raw_sends_all_of_stdin_as_one_message() {
    let server = Server::start();
    let input = [0u8, 1, 0xff, b'\n', b'x', b'\n'];
    let out = run(&["client", "--binary", "raw", &server.url("/echo")], &input);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout_str(), "0001ff0a780a\n");
    let out = run(
        &[
            "client",
            "--binary",
            "raw",
            "--print-binary",
            "raw",
            &server.url("/echo"),
        ],
        &input,
    );
    assert_eq!(out.stdout, input, "{out:?}");
    server.stop();
}

#[test]
fn client_bad_binary_lines_are_one_error_line() {
    let server = Server::start();
    let url = server.url("/echo");
    for (encoding, input, what) in [
        ("hex", &b"00\nzz\n"[..], "hex"),
        ("hex", b"abc\n", "odd"),
        ("base64", b"AP+A\nnot base64!\n", "base64"),
    ] {
        let out = run(&["client", "--binary", encoding, &url], input);
        let line = out.assert_one_line_error();
        assert!(line.contains("stdin line") && line.contains(what), "{line}");
    }
    server.stop();
}

// ---------------------------------------------------------------------------------------
// client: how a session runs and ends
// ---------------------------------------------------------------------------------------

#[test]
fn client_one_message_sends_one_line_and_prints_one_reply() {
    let server = Server::start();
    for flag in ["-1", "--one-message"] {
        let out = run(
            &["client", flag, &server.url("/echo")],
            b"first\nsecond\nthird\n",
        );
        assert!(out.status.success(), "{out:?}");
        assert_eq!(out.stdout_str(), "first\n", "{flag}");
    }
    server.stop();
}

#[test]
fn client_no_close_keeps_reading_until_the_server_closes() {
    let (mut server, addr) = listen(&[]);
    // stdin is empty: without -n the client would close at once.
    let client = Running::spawn(&["client", "-n", &format!("ws://{addr}/")]);
    server.send_line("after your stdin ended");
    assert_eq!(client.next_line(), "after your stdin ended");
    server.close_stdin();
    let (status, rest, stderr) = client.wait();
    assert!(status.success(), "{stderr}");
    assert!(rest.is_empty(), "{rest:?}");
    let (status, _, stderr) = server.wait();
    assert!(status.success(), "{stderr}");
}

#[test]
fn client_pong_command_sends_an_unsolicited_pong() {
    let fake = FakeServer::start(|stream| {
        let (mut ws, _) = accept_upgrade(stream);
        let pong = ws.read_frame();
        ws.expect_close();
        ws.send_close(1000, "");
        pong
    });
    let out = run(&["client", &fake.url("/")], b"/pong hi there\n");
    let pong = fake.finish();
    assert!(out.status.success(), "{out:?}");
    assert_eq!((pong.opcode, pong.payload), (PONG, b"hi there".to_vec()));
}

#[test]
fn client_quiet_prints_no_status_lines() {
    let server = Server::start();
    let out = run(&["client", &server.url("/echo")], b"/ping p\n");
    assert!(out.stderr.contains("pong: p"), "{out:?}");
    let out = run(&["client", "-q", &server.url("/echo")], b"/ping p\nx\n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout_str(), "x\n");
    assert_eq!(out.stderr, "", "{out:?}");
    server.stop();
}

// ---------------------------------------------------------------------------------------
// --exec
// ---------------------------------------------------------------------------------------

#[test]
fn client_exec_bridges_a_program_both_ways_and_closes_when_it_exits() {
    let server = Server::start();
    // The program's line goes out, the echo comes back on its stdin, and it reports it on
    // stderr (ours) before exiting: the exit closes the connection normally.
    let out = run(
        &[
            "client",
            "--exec",
            "sh -c 'echo one; read a; echo \"got:$a\" >&2'",
            &server.url("/echo"),
        ],
        b"",
    );
    assert!(out.status.success(), "{out:?}");
    assert!(out.stderr.contains("got:one"), "{out:?}");
    assert_eq!(
        out.stdout_str(),
        "",
        "messages go to the program, not stdout"
    );
    server.stop();
}

#[test]
fn client_exec_stdin_closes_when_the_server_closes() {
    let (mut server, addr) = listen(&[]);
    let client = Running::spawn(&["client", "--exec", "cat", &format!("ws://{addr}/")]);
    // cat echoes the line: the server sees it come back through the program.
    server.send_line("through cat");
    assert_eq!(server.next_line(), "through cat");
    // The server closes; cat's stdin closes, cat exits, the client exits 0.
    server.close_stdin();
    let (status, _, stderr) = client.wait();
    assert!(status.success(), "{stderr}");
    assert!(server.wait().0.success());
}

#[test]
fn client_exec_kills_a_program_that_ignores_its_stdin_closing() {
    let fake = FakeServer::start(|stream| {
        let (mut ws, _) = accept_upgrade(stream);
        ws.send_close(1000, "");
        ws.expect_close()
    });
    let out = run(&["client", "--exec", "sleep 60", &fake.url("/")], b"");
    fake.finish();
    let line = out.assert_one_line_error();
    assert!(line.contains("killed"), "{line}");
}

#[test]
fn listen_exec_runs_one_program_per_connection() {
    let (server, addr) = listen(&["--exec", "sh -c 'read a; echo \"$$:$a\"'"]);
    let url = format!("ws://{addr}/");
    let mut pids = Vec::new();
    for msg in ["first", "second"] {
        let out = run(&["client", "-n", &url], format!("{msg}\n").as_bytes());
        assert!(out.status.success(), "{out:?}");
        let reply = out.stdout_str();
        let (pid, echoed) = reply.trim_end().split_once(':').expect("pid:line");
        assert_eq!(echoed, msg);
        pids.push(pid.to_string());
    }
    assert_ne!(pids[0], pids[1], "one program per connection");
    drop(server);
}

/// A server runs for long: each connection's program must be reaped when it ends, not
/// left a zombie until the server exits.
#[test]
#[cfg(target_os = "linux")]
fn listen_exec_reaps_each_program() {
    let (server, addr) = listen(&["--exec", "sh -c 'echo $$; exec cat'"]);
    let out = run(&["client", "-1", &format!("ws://{addr}/")], b"");
    assert!(out.status.success(), "{out:?}");
    let pid = out.stdout_str().trim().to_string();
    assert!(pid.parse::<u32>().is_ok(), "{out:?}");
    // Gone from /proc: exited and waited for (a zombie keeps its entry).
    eventually("the program reaped", TIMEOUT, || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    });
    drop(server);
}

// ---------------------------------------------------------------------------------------
// listen
// ---------------------------------------------------------------------------------------

#[test]
fn listen_accepts_one_connection_both_ways() {
    let (mut server, addr) = listen(&[]);
    let mut client = Running::spawn(&["client", &format!("ws://{addr}/any/path")]);
    client.send_line("to the server");
    assert_eq!(server.next_line(), "to the server");
    server.send_line("to the client");
    assert_eq!(client.next_line(), "to the client");
    // The client ends the session: listen exits 0 with it.
    client.close_stdin();
    assert!(client.wait().0.success());
    let (status, rest, stderr) = server.wait();
    assert!(status.success(), "{stderr}");
    assert!(rest.is_empty(), "{rest:?}");
    assert!(stderr.contains("connected: 127.0.0.1:"), "{stderr}");
}

#[test]
fn listen_answers_plain_http_and_waits_for_a_websocket() {
    let (mut server, addr) = listen(&[]);
    // Not an upgrade: answered by the library, and listen keeps waiting.
    let resp = http(
        addr,
        format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    );
    assert!(resp.status >= 400, "{resp:?}");
    let mut ws = Ws::connect(addr, "/");
    ws.send(TEXT, b"after the refusal");
    assert_eq!(server.next_line(), "after the refusal");
    // A close code other than 1000/1001: listen exits 1 and says why, on one line.
    ws.send_close(4000, "bye");
    assert_eq!(ws.expect_close().0, Some(4000));
    server.close_stdin();
    let (status, _, stderr) = server.wait();
    assert!(!status.success(), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("wsduplex:"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("4000 bye"), "{stderr}");
}

#[test]
fn listen_binary_lines_and_printing() {
    let (mut server, addr) = listen(&["--binary", "hex", "--print-binary", "base64"]);
    let mut client = Running::spawn(&["client", "--binary", "hex", &format!("ws://{addr}/")]);
    client.send_line("00ff80");
    assert_eq!(server.next_line(), "AP+A");
    server.send_line("cafe");
    assert_eq!(client.next_line(), "cafe");
    client.close_stdin();
    assert!(client.wait().0.success());
    assert!(server.wait().0.success());
}

#[test]
fn listen_broadcast_sends_each_line_to_every_connection() {
    let (mut server, addr) = listen(&["--broadcast", "-q"]);
    let url = format!("ws://{addr}/");
    let mut a = Running::spawn(&["client", &url]);
    let mut b = Running::spawn(&["client", &url]);
    // Each is connected once its message is printed.
    a.send_line("from a");
    assert_eq!(server.next_line(), "from a");
    b.send_line("from b");
    assert_eq!(server.next_line(), "from b");
    server.send_line("to all");
    assert_eq!(a.next_line(), "to all");
    assert_eq!(b.next_line(), "to all");
    // stdin ends: every connection is closed normally, and listen exits once they are.
    server.close_stdin();
    for c in [a, b] {
        let (status, _, stderr) = c.wait();
        assert!(status.success(), "{stderr}");
    }
    let (status, _, stderr) = server.wait();
    assert!(status.success(), "{stderr}");
    assert_eq!(stderr, "", "-q");
}

#[test]
fn listen_serves_python_websockets() {
    let Some(python) = peer::Peer::Python.command("client", "listen_serves_python_websockets")
    else {
        return;
    };
    const SCRIPT: &str = "
import asyncio, sys
from websockets.asyncio.client import connect
async def main():
    async with connect(sys.argv[1]) as ws:
        await ws.send('hello from python')
        print(await ws.recv(), flush=True)
asyncio.run(main())
";
    let (mut server, addr) = listen(&[]);
    let child = Command::new(python.get_program())
        .args(["-c", SCRIPT, &format!("ws://{addr}/")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    assert_eq!(server.next_line(), "hello from python");
    server.send_line("hello from listen");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let out = rx.recv_timeout(TIMEOUT).expect("python finished").unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from listen\n");
    // Python closed with 1000: listen is done.
    assert!(server.wait().0.success());
}

// ---------------------------------------------------------------------------------------
// Misuse: one line on stderr, a non-zero exit, no panic
// ---------------------------------------------------------------------------------------

#[test]
fn misuse_gets_one_error_line() {
    // A port nobody listens on: bound, then released.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let closed_str = closed.to_string();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let unreachable = format!("ws://{closed}/");
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        ("bad url", vec!["client", "ws://[zz/x"], "invalid"),
        (
            "wrong scheme",
            vec!["client", "http://127.0.0.1:1/"],
            "cannot connect",
        ),
        ("unreachable host", vec!["client", &unreachable], "refused"),
        (
            "no scheme, unreachable",
            vec!["client", &closed_str],
            "ws:// assumed",
        ),
        (
            "--exec with a missing program",
            vec![
                "client",
                "--exec",
                "wsduplex-no-such-program --x",
                &unreachable,
            ],
            "not found",
        ),
        (
            "listen on a busy port",
            vec!["listen", &busy_addr],
            "in use",
        ),
        (
            "listen --exec with a missing program",
            vec![
                "listen",
                "127.0.0.1:0",
                "--exec",
                "wsduplex-no-such-program",
            ],
            "not found",
        ),
        (
            "listen on a bad address",
            vec!["listen", "nowhere:port"],
            "cannot resolve",
        ),
    ];
    for (case, args, what) in cases {
        let out = run(&args, b"");
        let line = out.assert_one_line_error();
        assert!(line.contains(what), "{case}: {line}");
    }
    drop(busy);
}

// ---------------------------------------------------------------------------------------
// Help, completions, man pages
// ---------------------------------------------------------------------------------------

#[test]
fn serve_help_is_grouped_by_heading() {
    let out = run(&["serve", "--help"], b"");
    assert!(out.status.success(), "{out:?}");
    let help = out.stdout_str();
    let mut last = 0;
    for heading in [
        "Listening:",
        "TLS:",
        "Keepalive:",
        "Limits:",
        "Deflate:",
        "Access:",
        "Hub:",
        "Redis:",
    ] {
        let at = help
            .find(&format!("\n{heading}\n"))
            .unwrap_or_else(|| panic!("no {heading} in {help}"));
        assert!(at > last, "{heading} out of order");
        last = at;
    }
    // An option under its heading.
    let tls = help.find("\nTLS:\n").unwrap();
    let cert = help.find("--tls-cert").unwrap();
    assert!(cert > tls && cert < help.find("\nKeepalive:\n").unwrap());
}

#[test]
fn completions_for_each_shell_know_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell], b"");
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = out.stdout_str();
        for word in ["listen", "client", "one-message", "broadcast"] {
            assert!(script.contains(word), "{shell} lacks {word}");
        }
    }
    assert!(!run(&["completions", "nosh"], b"").status.success());
}

#[test]
fn man_prints_roff_and_writes_one_page_per_command() {
    let out = run(&["man"], b"");
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout_str().contains(".TH wsduplex 1"), "{out:?}");
    let dir = std::env::temp_dir().join(format!("wsduplex-man-{}", std::process::id()));
    let out = run(&["man", "--out", dir.to_str().unwrap()], b"");
    assert!(out.status.success(), "{out:?}");
    for page in [
        "wsduplex.1",
        "wsduplex-client.1",
        "wsduplex-listen.1",
        "wsduplex-serve.1",
    ] {
        let text =
            std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page}");
    }
    let listen = std::fs::read_to_string(dir.join("wsduplex-listen.1")).unwrap();
    assert!(listen.contains("broadcast"), "{listen}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Wrong flags and values are misuse too: one line on stderr (clap's error, without its
/// usage block), exit 2; `--help` still prints the whole help on stdout.
#[test]
fn flag_misuse_is_one_line_and_help_is_whole() {
    for args in [
        &["client", "--nope", "ws://127.0.0.1:9/"][..],
        &["serve", "--listen"],
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--max-connections",
            "lots",
        ],
        &["frobnicate"],
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--deflate-no-context-takeover",
        ],
    ] {
        let out = run(args, b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let line = out.assert_one_line_error();
        assert!(line.ends_with("(see --help)"), "{args:?}: {line}");
        assert!(!line.contains("Usage"), "{args:?}: {line}");
    }
    let help = run(&["client", "--help"], b"");
    assert!(help.status.success(), "{help:?}");
    assert!(
        help.stdout_str().contains("Usage: wsduplex client"),
        "{help:?}"
    );
}
