//! The JavaScript client module (`web/wsduplex.js`, docs/js-client.md) as the hub serves it,
//! and its npm package's copy (`clients/js/wsduplex.js`), which must not drift from it. Its
//! behaviour is tested against `wsduplex serve` in Node and Chromium by the CLI's
//! `tests/js_client.rs`.

// Only its `serve`: the other helpers are for the chat tests.
#[allow(dead_code)]
mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wsduplex::server::ServerConfig;
use wsduplex_hub::{Hub, HubConfig};

const LIMIT: Duration = Duration::from_secs(10);

fn module_source() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web/wsduplex.js");
    std::fs::read_to_string(path).expect("read web/wsduplex.js")
}

/// The head and body of `METHOD path`, the connection closed by us after the request.
async fn exchange(addr: SocketAddr, method: &str, path: &str) -> (String, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tokio::time::timeout(LIMIT, tcp.read_to_string(&mut raw))
        .await
        .expect("an answer in time")
        .unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    (head.to_string(), body.to_string())
}

#[tokio::test]
async fn the_hub_serves_the_client_module_as_javascript() {
    let hub = Hub::new(HubConfig::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(common::serve::serve(listener, hub, ServerConfig::default()));

    let (head, body) = exchange(addr, "GET", "/wsduplex.js").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-type: text/javascript; charset=utf-8"),
        "{head}"
    );
    // Cached like the page's other assets, and importable from other origins.
    assert!(head.contains("cache-control: no-cache"), "{head}");
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    assert_eq!(body, module_source());
    // The page's own script imports it from beside itself, so a prefix carries over.
    let (_, page_script) = exchange(addr, "GET", "/chat.js").await;
    assert!(
        page_script.contains("from './wsduplex.js'"),
        "chat.js imports the module"
    );
    let (_, page) = exchange(addr, "GET", "/").await;
    assert!(
        page.contains(r#"<script type="module" src="chat.js">"#),
        "{page}"
    );

    let (head, _) = exchange(addr, "POST", "/wsduplex.js").await;
    assert!(head.starts_with("HTTP/1.1 405"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("allow: get, head"),
        "{head}"
    );
}

/// The npm package ships a copy (npm packs no file from outside its folder, cargo none from
/// outside the crate): `cp crates/wsduplex-hub/web/wsduplex.js clients/js/` after a change.
#[test]
fn the_npm_package_holds_the_same_module() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../clients/js");
    if !dir.exists() {
        // Built from the published crate, which holds no npm package.
        return;
    }
    let copy = std::fs::read_to_string(dir.join("wsduplex.js")).expect("clients/js/wsduplex.js");
    assert!(
        copy == module_source(),
        "clients/js/wsduplex.js differs from crates/wsduplex-hub/web/wsduplex.js: run \
         cp crates/wsduplex-hub/web/wsduplex.js clients/js/"
    );
}
