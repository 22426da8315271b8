//! The interop peers (Python `websockets`, Node `ws`) as commands for the tests that run
//! them: `crates/wsduplex/tests/interop.rs` and `crates/wsduplex-cli/tests/nginx.rs`
//! include this file (`#[path]`). Their scripts are in `tests/interop/{python,node}`,
//! installed by `tests/interop/setup.sh`.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

#[derive(Clone, Copy)]
pub enum Peer {
    Python,
    Node,
}

impl Peer {
    pub fn name(self) -> &'static str {
        match self {
            Peer::Python => "python websockets",
            Peer::Node => "node ws",
        }
    }

    /// The command running the peer's `script` (`client` or `server`), or `None` if the
    /// peer is not installed: after a loud note that `skipped` is skipped, or a panic with
    /// `WSDUPLEX_REQUIRE_INTEROP=1` (CI).
    pub fn command(self, script: &str, skipped: &str) -> Option<Command> {
        // Both crates that include this are two levels below the root.
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let interop = root.join("tests/interop");
        let (installed, cmd) = match self {
            Peer::Python => {
                let python = root.join("target/interop/venv/bin/python");
                let import = Command::new(&python)
                    .args(["-c", "import websockets"])
                    .output();
                let mut cmd = Command::new(&python);
                cmd.arg(interop.join(format!("python/{script}.py")));
                (import.is_ok_and(|o| o.status.success()), cmd)
            }
            Peer::Node => {
                let ws = interop.join("node/node_modules/ws/package.json");
                let node = Command::new("node").arg("--version").output();
                let mut cmd = Command::new("node");
                cmd.arg(interop.join(format!("node/{script}.js")));
                (ws.exists() && node.is_ok_and(|o| o.status.success()), cmd)
            }
        };
        if installed {
            return Some(cmd);
        }
        if std::env::var_os("WSDUPLEX_REQUIRE_INTEROP").is_some_and(|v| v == "1") {
            panic!(
                "{} is not installed: run tests/interop/setup.sh",
                self.name()
            );
        }
        // Straight to stderr, past the test harness's capture: a skip must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "\n*** {} is not installed, SKIPPING {skipped}; run tests/interop/setup.sh \
             (WSDUPLEX_REQUIRE_INTEROP=1 makes this fail) ***\n",
            self.name()
        );
        None
    }
}
