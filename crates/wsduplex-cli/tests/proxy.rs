//! `wsduplex client` and proxies: the environment variables, `--proxy`, `--no-proxy`.
//! (The tunnels themselves are tested against real proxies in the library's
//! `tests/proxy.rs`.)

mod common;

use common::{Server, BIN, TIMEOUT};
use std::io::Write as _;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;

/// Runs `wsduplex client ARGS` with `hello\n` on stdin and the proxy variables cleared,
/// then set to `env`.
fn client(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("client").args(args);
    for var in ["http_proxy", "https_proxy", "all_proxy", "no_proxy"] {
        cmd.env_remove(var).env_remove(var.to_ascii_uppercase());
    }
    let mut child = cmd
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wsduplex");
    let _ = child.stdin.take().expect("stdin").write_all(b"hello\n");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(TIMEOUT)
        .expect("wsduplex client did not exit in time")
        .expect("wait for wsduplex")
}

/// A port where nothing listens.
fn dead_proxy() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

#[test]
fn environment_proxies_apply_unless_bypassed() {
    let server = Server::start();
    let url = server.url("/echo");
    let dead = dead_proxy();
    let ok = |out: &Output| {
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    };
    // ws:// takes http_proxy (either case), then all_proxy.
    for var in ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"] {
        let out = client(&[&url], &[(var, &dead)]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{var}: {out:?}");
        assert!(
            stderr.contains("cannot connect to proxy 127.0.0.1:"),
            "{var}: {stderr}"
        );
    }
    // https_proxy is for wss:// only.
    ok(&client(&[&url], &[("https_proxy", &dead)]));
    ok(&client(
        &[&url],
        &[("http_proxy", &dead), ("no_proxy", "127.0.0.1")],
    ));
    ok(&client(&[&url], &[("ALL_PROXY", &dead), ("NO_PROXY", "*")]));
    ok(&client(&["--no-proxy", &url], &[("http_proxy", &dead)]));
    server.stop();
}

#[test]
fn explicit_proxy_flag() {
    let server = Server::start();
    let url = server.url("/echo");
    let out = client(&["--proxy", &dead_proxy(), &url], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(stderr.contains("cannot connect to proxy"), "{stderr}");
    let out = client(&["--proxy", "socks4://127.0.0.1:1", &url], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unsupported proxy scheme socks4"),
        "{stderr}"
    );
    let out = client(&["--proxy", "http://p:1", "--no-proxy", &url], &[]);
    assert!(!out.status.success());
    server.stop();
}
