//! `--deflate` on `wsduplex serve` and `wsduplex client`, run as real processes.

mod common;

use common::*;

fn extension_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("Sec-WebSocket-Extensions"))
        .collect()
}

#[test]
fn serve_deflate_accepts_the_clients_default_offer() {
    let server = Server::start_with(&["--deflate"]);
    let long = "compress me ".repeat(1000);
    let input = format!("x\n{long}\n");
    let out = run(&["client", "-v", &server.url("/echo")], input.as_bytes());
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout_str(), input);
    assert_eq!(
        extension_lines(&out.stderr),
        [
            "> Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
            "< Sec-WebSocket-Extensions: permessage-deflate",
        ],
        "{}",
        out.stderr
    );
    // --no-deflate: nothing offered, nothing agreed.
    let out = run(
        &["client", "-v", "--no-deflate", &server.url("/echo")],
        b"y\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout_str(), "y\n");
    assert!(extension_lines(&out.stderr).is_empty(), "{}", out.stderr);
    server.stop();
}

#[test]
fn serve_declines_by_default() {
    let server = Server::start();
    let out = run(&["client", "-v", "--deflate", &server.url("/echo")], b"z\n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout_str(), "z\n");
    assert_eq!(
        extension_lines(&out.stderr),
        ["> Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"],
        "{}",
        out.stderr
    );
    server.stop();
}
