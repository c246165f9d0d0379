//! A sockudo-ws echo server for `cargo xtask load --compare`: `sockudo-echo [ADDR]`
//! (default 127.0.0.1:0) prints `listening on ADDR` as its first line, then sends
//! every text and binary message back.
//!
//! Same shape as the other peers: tokio's default (multi-thread) runtime, one task per
//! connection, `TCP_NODELAY`. The upgrade is parsed with sockudo-ws's own
//! `parse_request` and answered with its `build_response` (no extension offered back,
//! so no compression); bytes read past the request are handed to the stream. Each echo
//! is one `SinkExt::send` (a flush per message), as in `tungstenite-echo`.

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use sockudo_ws::handshake::{build_response, generate_accept_key, parse_request};
use sockudo_ws::protocol::{Message, Role};
use sockudo_ws::{Config, WebSocketStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Reads the upgrade request, writes the 101, and returns what followed the request.
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(tcp: &mut S) -> Option<Bytes> {
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if tcp.read_buf(&mut buf).await.ok()? == 0 {
            return None;
        }
        let (response, used) = match parse_request(&buf) {
            Ok(Some((request, used))) => (
                build_response(&generate_accept_key(request.key), None, None),
                used,
            ),
            Ok(None) => continue,
            Err(_) => return None,
        };
        tcp.write_all(&response).await.ok()?;
        return Some(buf.split_off(used).freeze());
    }
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut tcp: S) {
    let Some(leftover) = upgrade(&mut tcp).await else {
        return;
    };
    let leftover = (!leftover.is_empty()).then_some(leftover);
    let mut ws =
        WebSocketStream::from_raw_with_leftover(tcp, Role::Server, Config::default(), leftover);
    while let Some(Ok(message)) = ws.next().await {
        let echo = match message {
            Message::Text(_) | Message::Binary(_) => message,
            Message::Close(_) => break,
            _ => continue,
        };
        if ws.send(echo).await.is_err() {
            break;
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // With DUPLEX_LOAD_TLS set, every connection behind tokio-rustls.
    duplex_benches::serve_plain_or_tls!(echo)
}
