//! duplex-tokio's echo server for `cargo xtask load --compare --tls`:
//! `duplex-tokio-echo [ADDR]` (default 127.0.0.1:0) prints `listening on ADDR` as its
//! first line, then echoes every text and binary message.
//!
//! The loop of `crates/duplex-tokio/examples/echo-server.rs` (same limits, `accept_with`
//! on the stream, `feed` for each echo), on a `tokio_rustls::server::TlsStream` when
//! `DUPLEX_LOAD_TLS` is set, on the TCP stream otherwise. The library's TLS support is
//! generic over the stream: this is what a user who terminates TLS in the process
//! writes.

use duplex_tokio::{Acceptance, Config, accept_with};
use tokio::io::{AsyncRead, AsyncWrite};

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(stream: S, config: Config) {
    let accepting = accept_with(stream, config, |_, _| Ok(Acceptance::default()));
    let Ok(mut ws) = accepting.await else {
        return;
    };
    loop {
        let Some(Ok(message)) = ws.recv().await else {
            break;
        };
        if message.is_data() && ws.feed(message).await.is_err() {
            break;
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // As the echo-server example: default limits, a larger write buffer.
    let protocol = duplex_tokio::core::EngineConfig::default().max_write_buffer(16 << 20);
    let config = Config::default().engine(protocol);
    match duplex_benches::tls_acceptor() {
        Some(tls) => {
            duplex_benches::serve_each(move |tcp| {
                let (tls, config) = (tls.clone(), config.clone());
                async move {
                    if let Ok(stream) = tls.accept(tcp).await {
                        echo(stream, config).await;
                    }
                }
            })
            .await
        }
        None => duplex_benches::serve_each(move |tcp| echo(tcp, config.clone())).await,
    }
}
