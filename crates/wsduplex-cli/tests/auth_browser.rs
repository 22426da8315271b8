//! The chat page against a server that needs a token, in a real browser: headless Chromium
//! (Debian's `/usr/bin/chromium`, driven by `playwright-core`) against `wsduplex serve
//! --auth-token` and `wsduplex serve --jwt-secret-file`.
//!
//! The browser side is `tests/browser/auth.mjs`, installed by `tests/browser/setup.sh`: the
//! page asks for a token on 401 instead of retrying, keeps it for the tab across a reload,
//! takes the name a JWT gives, reconnects when restored from the back/forward cache, and asks
//! again when a token expires on an open connection (close 4001); the landing form is not a
//! red "closed" and `#messages` is a live log. Without Chromium or `node_modules` these tests
//! print a note and pass, unless `WSDUPLEX_REQUIRE_INTEROP=1` (CI) makes that a failure.

mod common;

mod browser_harness;

use browser_harness::run_bounded;
use common::Server;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use std::process::Command;

const SECRET: &str = "auth-browser-test-secret";

fn run(server: &Server, args: &[&str], what: &str) {
    let Some(script) = browser_harness::script("auth.mjs", "browser auth test") else {
        return;
    };
    let base = format!("http://{}/", server.addr);
    let mut cmd = Command::new("node");
    cmd.arg(&script).arg(&base).args(args);
    let (status, stdout, stderr) = run_bounded(cmd);
    assert!(
        status.is_some_and(|s| s.success()),
        "headless Chromium on the chat page of `wsduplex serve {what}` failed ({})\n\
         --- auth.mjs stdout ---\n{stdout}\n--- auth.mjs stderr ---\n{stderr}",
        status.map_or("killed after the timeout".to_string(), |s| s.to_string()),
    );
    eprintln!("--- headless Chromium, serve {what} ---\n{stdout}");
}

#[test]
fn chromium_with_auth_token() {
    let server = Server::start_on_loopback(&["--auth-token", "the-right-token"]);
    run(
        &server,
        &["the-right-token", "a-wrong-token", "typed"],
        "--auth-token",
    );
    server.stop();
}

#[test]
fn chromium_with_jwt() {
    let dir = std::env::temp_dir().join(format!("wsduplex-auth-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let server = Server::start_on_loopback(&["--jwt-secret-file", secret.to_str().unwrap()]);
    let exp = jsonwebtoken::get_current_timestamp() + 600;
    let sign = |key: &[u8]| {
        let claims = json!({"sub": "u-alice", "name": "Alice", "exp": exp});
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(key),
        )
        .unwrap()
    };
    let (good, bad) = (sign(SECRET.as_bytes()), sign(b"another secret"));
    run(
        &server,
        &[&good, &bad, "Alice", SECRET],
        "--jwt-secret-file",
    );
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
