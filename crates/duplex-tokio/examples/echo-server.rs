//! An echo server for conformance tests: `echo-server [ADDR]` (default 127.0.0.1:9001).
//!
//! Prints `listening on ADDR` as its first line, then echoes every text and binary
//! message. Limits are raised to what the Autobahn-style suite sends (16 MiB messages,
//! 65,536 fragments).

use std::io::Write;

use duplex_tokio::{Acceptance, Config, accept_with};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    // The default limits take the conformance suite's largest frame (16 MiB, the
    // default `max_frame_size` exactly) and its 65,536-fragment messages (default
    // `max_fragments` 100,000). The write buffer is raised so that the echoes of cases
    // 9.7 and 9.8 (a thousand messages sent without reading) queue instead of waiting.
    let protocol = duplex_tokio::core::EngineConfig::default().max_write_buffer(16 << 20);
    let config = Config::default().engine(protocol);
    loop {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        // Made before the task: the task's future then holds the handshake's box, not
        // the stream and the configuration, for the connection's whole life.
        let accepting = accept_with(tcp, config.clone(), |_, _| Ok(Acceptance::default()));
        tokio::spawn(async move {
            let Ok(mut ws) = accepting.await else {
                return;
            };
            // `feed` queues the echo; the reader writes it once it has delivered what
            // it read, so a burst of small messages is answered in one write.
            // (`loop` with `let ... else` rather than `while let`: the temporary of a
            // `while let` lives through the body, in the task's future.)
            loop {
                let Some(Ok(message)) = ws.recv().await else {
                    break;
                };
                if message.is_data() && ws.feed(message).await.is_err() {
                    break;
                }
            }
        });
    }
}
