//! A client: connect, send, receive, close. `wsduplex serve` echoes at `/echo`.
//!
//! ```text
//! cargo run -p wsduplex --example client -- ws://127.0.0.1:8080/echo
//! ```

use wsduplex::{connect, CloseCode, Message};

#[tokio::main]
async fn main() -> Result<(), wsduplex::Error> {
    let url = std::env::args().nth(1);
    let url = url.as_deref().unwrap_or("ws://127.0.0.1:8080/echo");
    for reply in run(url, &["hello", "world"]).await? {
        println!("received: {reply}");
    }
    Ok(())
}

/// Sends each text, collects the replies, and closes with 1000 once every text has one.
async fn run(url: &str, texts: &[&str]) -> Result<Vec<String>, wsduplex::Error> {
    let (mut ws, handshake) = connect(url).await?;
    println!(
        "connected: {}",
        handshake.response_head.lines().next().unwrap_or("")
    );
    for text in texts {
        ws.send(*text).await?;
    }
    let mut replies = Vec::new();
    // `recv` yields the server's close frame, then `None` once the closing handshake is over.
    while let Some(item) = ws.recv().await {
        match item? {
            Message::Text(text) => {
                replies.push(text.to_string());
                if replies.len() == texts.len() {
                    ws.close(CloseCode::NORMAL, "done").await?;
                }
            }
            Message::Binary(data) => println!("{} bytes", data.len()),
            Message::Close(frame) => println!("closed: {frame:?}"),
            _ => {} // pings are answered by the socket
        }
    }
    Ok(replies)
}

#[cfg(test)]
mod tests {
    /// The example against an echo server of its own.
    #[tokio::test]
    async fn the_example_gets_its_echoes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/echo", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = wsduplex::accept(tcp).await.unwrap();
            while let Some(Ok(msg)) = ws.recv().await {
                if msg.is_data() {
                    ws.send(msg).await.unwrap();
                }
            }
        });
        assert_eq!(super::run(&url, &["a", "b"]).await.unwrap(), ["a", "b"]);
    }
}
