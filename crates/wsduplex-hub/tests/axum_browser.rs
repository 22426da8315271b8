//! The chat page of the hub nested in an axum app, in a real browser (feature `axum`):
//! headless Chromium (`tests/browser/hub_prefix.mjs`, installed by `tests/browser/setup.sh`)
//! on the `axum_chat` example's page at `/hub`: a WebSocket member and a long-polling member
//! chat, every path under the prefix. Without Chromium, node or `playwright-core` this test
//! prints a note and passes, unless `WSDUPLEX_REQUIRE_INTEROP=1` (CI) makes that a failure.

#[allow(dead_code)]
#[path = "../examples/axum_chat.rs"]
mod example;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::net::TcpListener;
use wsduplex::ServerConfig;
use wsduplex_hub::{Hub, HubConfig};

/// Above the script's own 45 s hard timeout, so that its message is the one seen.
const NODE_TIMEOUT: Duration = Duration::from_secs(60);

/// The script, or `None` (after a loud note) when Chromium, node or playwright-core is missing.
fn script() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser");
    let installed = PathBuf::from("/usr/bin/chromium").exists()
        && dir
            .join("node_modules/playwright-core/package.json")
            .exists()
        && Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if installed {
        return Some(dir.join("hub_prefix.mjs"));
    }
    if std::env::var_os("WSDUPLEX_REQUIRE_INTEROP").is_some_and(|v| v == "1") {
        panic!("chromium, node or playwright-core is missing: run tests/browser/setup.sh");
    }
    eprintln!(
        "\n*** hub in axum, browser: chromium, node or playwright-core is missing, SKIPPING; \
         run tests/browser/setup.sh (WSDUPLEX_REQUIRE_INTEROP=1 makes this fail) ***\n"
    );
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_chats_on_the_page_under_a_prefix() {
    let Some(script) = script() else {
        return;
    };
    let hub = Hub::new(HubConfig::default());
    tokio::spawn(hub.clone().maintain());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = example::app(&hub, ServerConfig::default());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let child = Command::new("node")
        .arg(script)
        .arg(format!("http://{addr}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let pid = child.id();
    let waited = tokio::task::spawn_blocking(move || child.wait_with_output());
    let Ok(out) = tokio::time::timeout(NODE_TIMEOUT, waited).await else {
        // Its browser is its child: with node gone, Chromium's pipe closes and it exits too.
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        panic!("hub_prefix.mjs did not finish in {NODE_TIMEOUT:?}");
    };
    let out = out.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "headless Chromium on the hub's page under /hub failed ({})\n--- stdout ---\n{stdout}\n\
         --- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("--- headless Chromium on the hub's page under /hub ---\n{stdout}");
}
