//! Headless Chromium (Debian's, driven by playwright-core) against the real `wsduplex
//! serve`: with `--deflate` the browser negotiates permessage-deflate and every echo
//! (text up to 1 MiB, binary, a clean 4000 close) comes back intact; without it the
//! extension is absent and echo still works. The script is tests/browser/deflate.mjs;
//! tests/browser/setup.sh installs Chromium and playwright-core.

mod common;

use common::*;
use std::path::PathBuf;
use std::process::Command;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether the browser peer is installed; without it the test is skipped loudly, unless
/// WSDUPLEX_REQUIRE_INTEROP=1 (as in CI) makes that a failure.
fn browser_ready() -> bool {
    let root = repo_root();
    let ready = std::path::Path::new("/usr/bin/chromium").exists()
        && root
            .join("tests/browser/node_modules/playwright-core")
            .exists()
        && Command::new("node").arg("--version").output().is_ok();
    if !ready {
        if std::env::var_os("WSDUPLEX_REQUIRE_INTEROP").is_some_and(|v| v == "1") {
            panic!("headless Chromium is not installed: run tests/browser/setup.sh");
        }
        eprintln!(
            "*** SKIPPING the browser test: run tests/browser/setup.sh to install Chromium ***"
        );
    }
    ready
}

fn run_browser(server_args: &[&str], flag: Option<&str>) {
    let server = Server::start_with(server_args);
    let url = format!("http://{}", server.addr);
    let mut cmd = Command::new("node");
    cmd.arg(repo_root().join("tests/browser/deflate.mjs"))
        .arg(&url);
    if let Some(f) = flag {
        cmd.arg(f);
    }
    // The script has its own 60 s hard timeout.
    let out = cmd.output().expect("run node");
    assert!(
        out.status.success(),
        "deflate.mjs failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn chromium_negotiates_permessage_deflate_and_echoes() {
    if browser_ready() {
        run_browser(&["--deflate", "--listen", "127.0.0.1:0"], None);
    }
}

#[test]
fn chromium_without_deflate_still_echoes() {
    if browser_ready() {
        run_browser(&["--listen", "127.0.0.1:0"], Some("--no-deflate"));
    }
}
