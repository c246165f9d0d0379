//! What the integration tests share: raw sockets that speak WebSocket by hand, through
//! the test wire kit (which shares no code with duplex).

#![allow(dead_code)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use wire_kit::{Frame, FrameReader, FrameSpec};

/// The bound on every raw read that waits for the peer.
const RAW_LIMIT: Duration = Duration::from_secs(20);

/// A masked client frame (the kit's fixed key).
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    FrameSpec::new(opcode, payload)
        .fin(fin)
        .masked(Some(wire_kit::CLIENT_MASK))
        .encode()
}

/// Reads the HTTP response head of the handshake and checks it is a 101.
pub async fn read_101(tcp: &mut TcpStream) {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(timeout(RAW_LIMIT, tcp.read_u8()).await.unwrap().unwrap());
        assert!(head.len() < 4096, "response head too long");
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101 "),
        "{}",
        String::from_utf8_lossy(&head)
    );
}

/// Opens a WebSocket by hand on `addr` (the tests then write frames as they like).
pub async fn raw_client(addr: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = wire_kit::upgrade_request("/", addr, "");
    tcp.write_all(&request).await.unwrap();
    read_101(&mut tcp).await;
    tcp
}

/// Reads one frame from a raw socket, exactly its bytes and no more.
pub async fn read_frame(tcp: &mut TcpStream) -> Frame {
    let mut reader = FrameReader::new(u64::MAX);
    loop {
        if let Some(frame) = reader.next_frame().unwrap() {
            return frame;
        }
        let mut bytes = vec![0u8; reader.wanted()];
        tcp.read_exact(&mut bytes).await.unwrap();
        reader.push(&bytes);
    }
}
