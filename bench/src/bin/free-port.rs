//! `free-port`: prints a TCP port on 127.0.0.1 that was free a moment ago.
//!
//! For servers that take a fixed port and cannot be told to pick one (uWebSockets' echo
//! server binds the number on its command line): bind `127.0.0.1:0`, print the port the
//! kernel chose, close. Another process may take the port before the server binds it, so
//! `run.sh` retries with a fresh port when the server does not come up.

use std::io::Write as _;
use std::net::TcpListener;

fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    drop(listener);
    writeln!(std::io::stdout(), "{port}")
}
