//! tokio-tungstenite's `examples/echo-server.rs`, as its authors wrote it, with three changes
//! the harness needs: a single-threaded runtime (one server core, like every server in the
//! comparison), the address from argv[1] (`127.0.0.1:0` picks a free port) and the
//! `listening on http://HOST:PORT` line `bench/run.sh` reads. Logging (off by default in the
//! example) is left out.
//!
//! Text and binary messages are echoed with their type, at any path; `accept_async` uses the
//! default `WebSocketConfig`.

use futures_util::{future, StreamExt, TryStreamExt};
use std::env;
use std::io::{Error, Write as _};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let addr = env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".to_string());
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;

    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(accept_connection(stream));
    }
    Ok(())
}

async fn accept_connection(stream: TcpStream) {
    // The example panics (`expect`) here; a panic in a spawned task only ends that task, so
    // a failed handshake or a reset connection ends the connection either way, quietly.
    let Ok(ws_stream) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (write, read) = ws_stream.split();
    // We should not forward messages other than text or binary.
    let _ = read
        .try_filter(|msg| future::ready(msg.is_text() || msg.is_binary()))
        .forward(write)
        .await;
}
