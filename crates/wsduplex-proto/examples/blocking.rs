//! The core without tokio: an echo server and a client over blocking `std::net` sockets,
//! one thread each, with nothing but `wsduplex-proto`. Each side reads bytes into its
//! `Connection`, takes the events out, and writes whatever the connection queued (its own
//! messages, and the close reply the RFC makes it owe).
//!
//! ```text
//! cargo run -p wsduplex-proto --example blocking
//! ```

use bytes::Buf;
use std::error::Error;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use wsduplex_proto::handshake::{client, server};
use wsduplex_proto::{CloseCode, Config, Connection, Message, Role, State};

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

fn main() -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = std::thread::spawn(move || -> Result<()> {
        let (tcp, _) = listener.accept()?;
        serve(tcp)
    });
    let replies = client(addr, &["hello", "from a blocking socket"])?;
    for reply in &replies {
        println!("echoed: {reply}");
    }
    server.join().expect("the server thread panicked")?;
    assert_eq!(replies, ["hello", "from a blocking socket"]);
    Ok(())
}

/// Writes out everything the connection has queued.
fn flush(ws: &mut Connection, tcp: &mut TcpStream) -> Result<()> {
    while let Some(tx) = ws.poll_transmit() {
        let n = tcp.write(tx.chunk())?;
        tx.advance(n);
    }
    Ok(())
}

/// Reads once into the connection; `false` at end of stream.
fn read(ws: &mut Connection, tcp: &mut TcpStream, buf: &mut [u8]) -> Result<bool> {
    let n = tcp.read(buf)?;
    if n == 0 {
        ws.receive_eof()?;
        return Ok(false);
    }
    ws.receive(&buf[..n])?;
    Ok(true)
}

/// One connection: the opening handshake, then every text or binary message echoed until
/// the closing handshake completes.
fn serve(mut tcp: TcpStream) -> Result<()> {
    let mut head = Vec::new();
    let mut buf = [0; 4096];
    let (request, consumed) = loop {
        let n = tcp.read(&mut buf)?;
        if n == 0 {
            return Err("the client left during the handshake".into());
        }
        head.extend_from_slice(&buf[..n]);
        match server::Request::parse(&head, &server::Limits::default()) {
            Ok(Some(parsed)) => break parsed,
            Ok(None) => continue,
            Err(refusal) => {
                tcp.write_all(&refusal.to_response())?;
                return Err(refusal.into());
            }
        }
    };
    match request.accept_response(None, &[]) {
        Ok(response) => tcp.write_all(&response)?,
        Err(refusal) => {
            tcp.write_all(&refusal.to_response())?;
            return Err(refusal.into());
        }
    }
    let mut ws = Connection::new(Role::Server, Config::default());
    // Frames that arrived in the same read as the request head belong to the connection.
    ws.receive(&head[consumed..])?;
    loop {
        while let Some(message) = ws.poll_event() {
            if message.is_data() {
                ws.send(message)?;
            }
        }
        flush(&mut ws, &mut tcp)?;
        if ws.state() == &State::Closed || !read(&mut ws, &mut tcp, &mut buf)? {
            return Ok(());
        }
    }
}

/// Connects, sends each text, collects the echoes, then closes with 1000.
fn client(addr: SocketAddr, texts: &[&str]) -> Result<Vec<String>> {
    let mut tcp = TcpStream::connect(addr)?;
    let request = client::Request::new(addr.to_string(), "/");
    tcp.write_all(&request.to_bytes())?;
    let mut head = Vec::new();
    let mut buf = [0; 4096];
    let consumed = loop {
        let n = tcp.read(&mut buf)?;
        if n == 0 {
            return Err("the server left during the handshake".into());
        }
        head.extend_from_slice(&buf[..n]);
        if let Some((_response, consumed)) = request.parse_response(&head)? {
            break consumed;
        }
    };
    let mut ws = Connection::new(Role::Client, Config::default());
    ws.receive(&head[consumed..])?;
    for text in texts {
        ws.send_text(text)?;
    }
    flush(&mut ws, &mut tcp)?;
    let mut replies = Vec::new();
    loop {
        while let Some(message) = ws.poll_event() {
            match message {
                Message::Text(text) => replies.push(text.as_str().to_string()),
                Message::Close(frame) => println!("closed: {frame:?}"),
                _ => {}
            }
        }
        if replies.len() == texts.len() && ws.state() == &State::Open {
            ws.close(CloseCode::NORMAL, "done")?;
        }
        flush(&mut ws, &mut tcp)?;
        if ws.state() == &State::Closed || !read(&mut ws, &mut tcp, &mut buf)? {
            return Ok(replies);
        }
    }
}

#[cfg(test)]
mod tests {
    /// The example runs to the end: both handshakes, the echoes, the close.
    #[test]
    fn the_example_runs() {
        super::main().unwrap();
    }
}
