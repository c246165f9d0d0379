//! A tokio-tungstenite echo server for `cargo xtask load --compare`:
//! `tungstenite-echo [ADDR]` (default 127.0.0.1:0) prints `listening on ADDR` as its
//! first line, then sends every text and binary message back.
//!
//! Same shape as duplex-tokio's `echo-server` example: tokio's default (multi-thread)
//! runtime, one task per connection, `TCP_NODELAY`, one `send` per message.

use futures::{SinkExt, StreamExt};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    duplex_benches::serve_each(|tcp| async move {
        let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
            return;
        };
        while let Some(Ok(message)) = ws.next().await {
            if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
                break;
            }
        }
    })
    .await
}
