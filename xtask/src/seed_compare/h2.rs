//! The HTTP/2 clients: one h2c connection (prior knowledge) per client, with the `h2`
//! crate, its bytes counted where they cross the socket. Polling and long polling are
//! requests on that connection (their headers compressed by HPACK against the ones
//! before), the event stream is one HTTP/2 stream, and the WebSocket is an extended
//! CONNECT (RFC 8441) whose stream carries the frames.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Bytes written (`up`) and read (`down`) on one connection.
#[derive(Default)]
pub struct Counted {
    pub up: AtomicU64,
    pub down: AtomicU64,
}

/// A TCP stream that counts.
struct Counting {
    tcp: TcpStream,
    counted: Arc<Counted>,
}

impl AsyncRead for Counting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.tcp).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.counted.down.fetch_add(n as u64, Relaxed);
        result
    }
}

impl AsyncWrite for Counting {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.tcp).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = result {
            self.counted.up.fetch_add(n as u64, Relaxed);
        }
        result
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

fn other(error: impl std::fmt::Display) -> io::Error {
    io::Error::other(error.to_string())
}

/// An HTTP/2 connection to the ticker.
pub struct H2 {
    send: h2::client::SendRequest<Bytes>,
    pub counted: Arc<Counted>,
    authority: String,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for H2 {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl H2 {
    pub async fn connect(addr: &str) -> io::Result<H2> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let counted = Arc::new(Counted::default());
        let io = Counting {
            tcp,
            counted: counted.clone(),
        };
        let (send, connection) = h2::client::handshake(io).await.map_err(other)?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(H2 {
            send,
            counted,
            authority: addr.to_owned(),
            driver,
        })
    }

    pub fn up(&self) -> u64 {
        self.counted.up.load(Relaxed)
    }
    pub fn down(&self) -> u64 {
        self.counted.down.load(Relaxed)
    }

    /// Sends a request (no body) and waits for the response head.
    pub async fn request(
        &mut self,
        method: http::Method,
        path: &str,
        headers: &[(String, String)],
        protocol: Option<&'static str>,
    ) -> io::Result<(http::response::Parts, h2::RecvStream, h2::SendStream<Bytes>)> {
        let mut request = http::Request::builder()
            .method(method)
            .version(http::Version::HTTP_2)
            .uri(format!("http://{}{path}", self.authority));
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let mut request = request.body(()).map_err(other)?;
        if let Some(protocol) = protocol {
            request
                .extensions_mut()
                .insert(h2::ext::Protocol::from_static(protocol));
        }
        let mut send = self.send.clone().ready().await.map_err(other)?;
        // A CONNECT's stream stays open for the tunnel; a GET ends with its head.
        let end = protocol.is_none();
        let (response, stream) = send.send_request(request, end).map_err(other)?;
        let (parts, body) = response.await.map_err(other)?.into_parts();
        Ok((parts, body, stream))
    }

    /// GET `path`, the whole body.
    pub async fn get(&mut self, path: &str, headers: &[(String, String)]) -> io::Result<Vec<u8>> {
        let (parts, mut body, _) = self.request(http::Method::GET, path, headers, None).await?;
        if parts.status != 200 {
            return Err(other(format!("{path} answered {}", parts.status)));
        }
        let mut out = Vec::new();
        while let Some(data) = next_data(&mut body).await? {
            out.extend_from_slice(&data);
        }
        Ok(out)
    }

    /// POST `body` to `path`; the response's status.
    pub async fn post(
        &mut self,
        path: &str,
        headers: &[(String, String)],
        body: Bytes,
    ) -> io::Result<http::StatusCode> {
        let mut request = http::Request::builder()
            .method(http::Method::POST)
            .version(http::Version::HTTP_2)
            .uri(format!("http://{}{path}", self.authority));
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request.body(()).map_err(other)?;
        let mut send = self.send.clone().ready().await.map_err(other)?;
        let (response, mut stream) = send.send_request(request, false).map_err(other)?;
        stream.send_data(body, true).map_err(other)?;
        let (parts, mut body) = response.await.map_err(other)?.into_parts();
        while next_data(&mut body).await?.is_some() {}
        Ok(parts.status)
    }

    pub fn extended_connect_allowed(&self) -> bool {
        self.send.is_extended_connect_protocol_enabled()
    }
}

/// The next DATA of a stream, its flow-control window given back.
pub async fn next_data(body: &mut h2::RecvStream) -> io::Result<Option<Bytes>> {
    match body.data().await {
        None => Ok(None),
        Some(Err(error)) => Err(other(error)),
        Some(Ok(data)) => {
            let _ = body.flow_control().release_capacity(data.len());
            Ok(Some(data))
        }
    }
}

/// Splits unmasked, unfragmented server frames out of a byte stream: the payloads of
/// text and binary frames (what the ticker sends).
#[derive(Default)]
pub struct ServerFrames {
    pending: Vec<u8>,
}

impl ServerFrames {
    pub fn feed(&mut self, data: &[u8]) -> io::Result<Vec<Vec<u8>>> {
        self.pending.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            let p = &self.pending;
            if p.len() < 2 {
                break;
            }
            if p[1] & 0x80 != 0 {
                return Err(other("a masked frame from the server"));
            }
            let (len, header) = match p[1] & 0x7f {
                126 if p.len() >= 4 => (u64::from(u16::from_be_bytes([p[2], p[3]])), 4),
                127 if p.len() >= 10 => (u64::from_be_bytes(p[2..10].try_into().unwrap()), 10),
                126 | 127 => break,
                n => (u64::from(n), 2),
            };
            if len > 1 << 20 {
                return Err(other("a frame over 1 MiB"));
            }
            let end = header + len as usize;
            if p.len() < end {
                break;
            }
            let (fin, opcode) = (p[0] & 0x80 != 0, p[0] & 0x0f);
            match opcode {
                0x1 | 0x2 if fin && p[0] & 0x70 == 0 => out.push(p[header..end].to_vec()),
                0x9 | 0xA => {}
                0x8 => return Err(other("the server closed the WebSocket")),
                _ => return Err(other(format!("unexpected frame {:#04x}", p[0]))),
            }
            self.pending.drain(..end);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_feeds() {
        let mut frames = ServerFrames::default();
        let mut bytes = wire_kit::frame(0x81, b"hello", None);
        bytes.extend(wire_kit::frame(0x81, &[b'x'; 300], None));
        assert_eq!(frames.feed(&bytes[..3]).unwrap(), Vec::<Vec<u8>>::new());
        let got = frames.feed(&bytes[3..]).unwrap();
        assert_eq!(got, [b"hello".to_vec(), vec![b'x'; 300]]);
        assert!(
            frames
                .feed(&wire_kit::frame(0x88, &[3, 232], None))
                .is_err()
        );
    }
}
