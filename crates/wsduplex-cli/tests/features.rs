//! A binary built without an optional feature refuses the flags that need it: one line on
//! stderr and a non-zero exit, before anything listens or connects. Runs only in such a
//! build (`.ci/run`: `cargo test -p wsduplex-cli --no-default-features --test features`).

#[cfg(not(all(feature = "redis", feature = "deflate")))]
mod common;

#[cfg(not(all(feature = "redis", feature = "deflate")))]
use common::run;

#[cfg(not(feature = "redis"))]
#[test]
fn redis_needs_the_redis_feature() {
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--redis",
        "redis://127.0.0.1:1",
    ];
    let line = run(&args, b"").assert_one_line_error();
    assert!(line.contains("`redis` feature"), "{line}");
}

#[cfg(not(feature = "deflate"))]
#[test]
fn deflate_needs_the_deflate_feature() {
    let line = run(&["serve", "--listen", "127.0.0.1:0", "--deflate"], b"").assert_one_line_error();
    assert!(line.contains("`deflate` feature"), "{line}");
    let line = run(&["client", "--deflate", "ws://127.0.0.1:1/"], b"").assert_one_line_error();
    assert!(line.contains("`deflate` feature"), "{line}");
}
