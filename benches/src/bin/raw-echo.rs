//! The limit for `cargo xtask load --compare`: a raw TCP echo server.
//! `raw-echo [ADDR]` (default 127.0.0.1:0) prints `listening on ADDR` as its first
//! line. Each connection gets a minimal `101 Switching Protocols` (with the right
//! `Sec-WebSocket-Accept`, so WebSocket clients proceed), after which every byte is
//! sent back as it came: no framing, no unmasking, no copy beyond one read buffer.
//! The client therefore gets its own masked frames back (the load generator accepts
//! that when the key is its own).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use wire_kit::{accept_key, header_value, response_101};

const MAX_HEAD: usize = 16 * 1024;

/// The value of `Sec-WebSocket-Key` in a request head.
fn websocket_key(head: &[u8]) -> Option<String> {
    let head = std::str::from_utf8(head).ok()?;
    header_value(head, "sec-websocket-key").map(str::to_owned)
}

async fn serve(mut tcp: TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut filled = 0;
    let end = loop {
        let n = tcp.read(&mut buf[filled..MAX_HEAD]).await?;
        if n == 0 {
            return Ok(());
        }
        filled += n;
        if let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if filled == MAX_HEAD {
            return Ok(());
        }
    };
    let Some(key) = websocket_key(&buf[..end]) else {
        tcp.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await?;
        return Ok(());
    };
    tcp.write_all(&response_101(&accept_key(&key), "")).await?;
    tcp.write_all(&buf[end..filled]).await?;
    // The echo buffer only once there is something to echo, so that a connection
    // that is opened and dropped costs what a handshake costs.
    tcp.readable().await?;
    buf.resize(64 * 1024, 0);
    loop {
        let n = tcp.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        tcp.write_all(&buf[..n]).await?;
    }
}

/// [`serve`] behind TLS: the limit of `cargo xtask load --compare --tls`. The echo
/// buffer is allocated once the handshakes are done.
async fn serve_tls<S: AsyncRead + AsyncWrite + Unpin>(mut tls: S) -> std::io::Result<()> {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut filled = 0;
    let end = loop {
        let n = tls.read(&mut buf[filled..MAX_HEAD]).await?;
        if n == 0 {
            return Ok(());
        }
        filled += n;
        if let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if filled == MAX_HEAD {
            return Ok(());
        }
    };
    let Some(key) = websocket_key(&buf[..end]) else {
        return Ok(());
    };
    tls.write_all(&response_101(&accept_key(&key), "")).await?;
    tls.write_all(&buf[end..filled]).await?;
    tls.flush().await?;
    buf.resize(64 * 1024, 0);
    loop {
        let n = tls.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        tls.write_all(&buf[..n]).await?;
        tls.flush().await?;
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // With DUPLEX_LOAD_TLS set, every connection behind tokio-rustls.
    match duplex_benches::tls_acceptor() {
        Some(acceptor) => {
            duplex_benches::serve_each(move |tcp| {
                let acceptor = acceptor.clone();
                async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let _ = serve_tls(tls).await;
                    }
                }
            })
            .await
        }
        None => {
            duplex_benches::serve_each(|tcp| async move {
                let _ = serve(tcp).await;
            })
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_of_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn finds_key_case_insensitively() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\nSEC-WebSocket-Key:  abc== \r\n\r\n";
        assert_eq!(websocket_key(head).as_deref(), Some("abc=="));
        assert_eq!(websocket_key(b"GET / HTTP/1.1\r\n\r\n"), None);
    }
}
