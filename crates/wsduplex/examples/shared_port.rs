//! A page and a WebSocket on one port, without an HTTP framework: `/` serves a page whose
//! script connects to `/ws`, `/ws` upgrades and echoes, anything else is `404`. Each
//! connection's request head is read once (`read_request`); the same `Incoming` then
//! either answers plain HTTP or becomes a WebSocket.
//!
//! ```text
//! cargo run -p wsduplex --example shared_port -- 127.0.0.1:8080   # then open http://127.0.0.1:8080/
//! ```

use tokio::net::TcpListener;
use wsduplex::server::{read_request, ServerConfig};

const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>wsduplex: one port</title>
<pre id="log"></pre>
<script>
const log = (line) => (document.getElementById("log").textContent += line + "\n");
const ws = new WebSocket(`ws://${location.host}/ws`);
ws.onopen = () => ws.send("hello over the same port");
ws.onmessage = (event) => log(`echo: ${event.data}`);
ws.onclose = (event) => log(`closed: ${event.code}`);
</script>
"#;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1);
    let listener = TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:8080")).await?;
    println!("listening on http://{}", listener.local_addr()?);
    serve(listener, ServerConfig::default()).await
}

/// Serves every connection on `listener`, each on its own task.
async fn serve(listener: TcpListener, config: ServerConfig) -> std::io::Result<()> {
    loop {
        let (tcp, addr) = listener.accept().await?;
        let config = config.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(tcp, &config).await {
                eprintln!("{addr}: {e}");
            }
        });
    }
}

async fn handle(tcp: tokio::net::TcpStream, config: &ServerConfig) -> wsduplex::Result<()> {
    // A malformed request is answered (400, 431, ...) by `read_request` itself.
    let incoming = read_request(tcp, config).await?;
    match incoming.path() {
        "/" => {
            let html = "text/html; charset=utf-8";
            incoming.respond(200, &[], html, PAGE.as_bytes()).await
        }
        "/ws" => {
            let mut ws = incoming.accept(config).await?;
            while let Some(msg) = ws.recv().await {
                let msg = msg?;
                if msg.is_data() {
                    ws.send(msg).await?;
                }
            }
            Ok(())
        }
        _ => {
            incoming
                .respond(404, &[], "text/plain", b"not found\n")
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The page and the echo, from one listening port.
    #[tokio::test]
    async fn the_page_and_the_websocket_share_the_port() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(super::serve(listener, Default::default()));

        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let get = format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        tcp.write_all(get.as_bytes()).await.unwrap();
        let mut page = String::new();
        tcp.read_to_string(&mut page).await.unwrap();
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(page.contains("new WebSocket"), "{page}");

        let (mut ws, _) = wsduplex::connect(format!("ws://{addr}/ws")).await.unwrap();
        ws.send("ping?").await.unwrap();
        let echo = ws.recv().await.unwrap().unwrap();
        assert_eq!(echo, wsduplex::Message::text("ping?"));
    }
}
