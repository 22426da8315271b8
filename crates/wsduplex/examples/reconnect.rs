//! A client that reconnects by itself: exponential backoff with jitter, and a hook that
//! runs on every new connection (here it says hello; a real one authenticates or
//! subscribes again). Stop `wsduplex serve` and start it again: the client comes back.
//!
//! ```text
//! cargo run -p wsduplex --example reconnect -- ws://127.0.0.1:8080/echo
//! ```

use std::time::Duration;
use wsduplex::reconnect::{Backoff, ReconnectingClient};
use wsduplex::{ClientConfig, CloseCode, Message};

#[tokio::main]
async fn main() -> Result<(), wsduplex::Error> {
    let url = std::env::args().nth(1);
    let url = url.as_deref().unwrap_or("ws://127.0.0.1:8080/echo");
    let mut backoff = Backoff::default();
    backoff.max = Duration::from_secs(5);
    let client = ReconnectingClient::new(url, ClientConfig::default(), backoff)
        .on_connect(|ws| Box::pin(async move { ws.send("hello again").await }));
    let echoes = run(client, 20).await?;
    println!("{echoes} echoes");
    Ok(())
}

/// Prints what arrives, through any number of reconnections, until `wanted` text messages
/// came back; then closes for good. Returns how many arrived.
async fn run(mut client: ReconnectingClient, wanted: usize) -> Result<usize, wsduplex::Error> {
    let mut echoes = 0;
    while let Some(item) = client.recv().await {
        match item {
            Ok(Message::Text(text)) => {
                echoes += 1;
                println!("{echoes}: {text} (connection {})", client.connections());
                if echoes == wanted {
                    client.close(CloseCode::NORMAL, "done").await?;
                }
            }
            Ok(Message::Close(frame)) => println!("server closed: {frame:?}; reconnecting"),
            Ok(_) => {}
            // A lost connection is reported once; the next `recv` connects again.
            Err(e) => println!("connection lost ({e}); reconnecting"),
        }
    }
    Ok(echoes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that echoes one message per connection and then drops it: the example
    /// gets its three echoes over three connections.
    #[tokio::test]
    async fn the_example_comes_back_after_each_drop() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/echo", listener.local_addr().unwrap());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let mut ws = wsduplex::accept(tcp).await.unwrap();
                if let Some(Ok(msg)) = ws.recv().await {
                    let _ = ws.send(msg).await;
                }
                // Dropped without a close: the client sees the connection end.
            }
        });
        let mut backoff = Backoff::default();
        backoff.initial = Duration::from_millis(10);
        let client = ReconnectingClient::new(url, ClientConfig::default(), backoff)
            .on_connect(|ws| Box::pin(async move { ws.send("hello again").await }));
        assert_eq!(run(client, 3).await.unwrap(), 3);
    }
}
