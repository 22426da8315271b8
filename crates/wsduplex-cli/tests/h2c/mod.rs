//! An `h2` crate client for the HTTP/2 tests (`http2.rs`, `http2_frames.rs`): a connection
//! with prior knowledge and a plain `GET`.

use crate::common::TIMEOUT;
use bytes::Bytes;
use h2::client::SendRequest;
use h2::RecvStream;
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tokio::time::timeout;

/// An `h2c` connection to `addr`, its task spawned.
pub async fn connect(addr: SocketAddr) -> SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client.ready().await.expect("ready")
}

/// A plain request; its status and body.
pub async fn get(client: &mut SendRequest<Bytes>, addr: SocketAddr, path: &str) -> (u16, String) {
    let request = http::Request::get(format!("http://{addr}{path}"))
        .body(())
        .unwrap();
    let mut client = client.clone().ready().await.expect("ready");
    let (response, _) = client.send_request(request, true).expect("send request");
    let response = timeout(TIMEOUT, response).await.unwrap().expect("response");
    let status = response.status().as_u16();
    let body = read_to_end(response.into_body()).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

pub async fn read_to_end(mut body: RecvStream) -> Vec<u8> {
    let mut all = Vec::new();
    while let Some(chunk) = timeout(TIMEOUT, body.data()).await.unwrap() {
        let chunk = chunk.expect("body");
        let _ = body.flow_control().release_capacity(chunk.len());
        all.extend_from_slice(&chunk);
    }
    all
}
