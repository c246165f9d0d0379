//! A tokio-tungstenite echo server for `cargo xtask load --compare`:
//! `tungstenite-echo [ADDR]` (default 127.0.0.1:0) prints `listening on ADDR` as its
//! first line, then sends every text and binary message back.
//!
//! Same shape as duplex-tokio's `echo-server` example: tokio's default (multi-thread)
//! runtime, one task per connection, `TCP_NODELAY`, one `send` per message. With
//! `DUPLEX_LOAD_TLS` set, every connection is served behind tokio-rustls.

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(stream: S) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    while let Some(Ok(message)) = ws.next().await {
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            break;
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // With DUPLEX_LOAD_TLS set, every connection behind tokio-rustls.
    duplex_benches::serve_plain_or_tls!(echo)
}
