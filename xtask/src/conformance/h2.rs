//! WebSockets over HTTP/2 (RFC 8441) for `--h2`: each case opens an HTTP/2
//! connection with prior knowledge (h2c) with the `h2` crate, checks that the
//! server allows extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL), and sends
//! `CONNECT` with `:protocol = websocket`; a 2xx answer makes that stream the
//! transport of the case. Written here, not taken from the crates under test.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::handshake::WsUrl;
use super::session::{Reader, Writer};

/// An opened WebSocket stream: its two halves and the server's
/// `Sec-WebSocket-Extensions` answer.
pub struct Opened {
    pub reader: Reader,
    pub writer: Writer,
    pub extensions: Option<String>,
}

/// Connects, starts HTTP/2 and opens the WebSocket stream for `url`, offering
/// `extensions`; every step within `limit`.
pub async fn open(
    url: &WsUrl,
    limit: Duration,
    extensions: Option<&str>,
) -> Result<Opened, String> {
    tokio::time::timeout(limit, open_inner(url, extensions))
        .await
        .map_err(|_| "HTTP/2 connection or extended CONNECT timed out".to_string())?
}

async fn open_inner(url: &WsUrl, extensions: Option<&str>) -> Result<Opened, String> {
    let tcp = TcpStream::connect(url.addr())
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (send, mut connection) = h2::client::Builder::new()
        // Room for the 16 MiB messages of category 9 in flight.
        .initial_window_size(4 << 20)
        .initial_connection_window_size(16 << 20)
        .handshake::<_, Bytes>(tcp)
        .await
        .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
    let mut ping = connection.ping_pong();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    // The server's SETTINGS come first, so they are known once a PING is answered.
    if let Some(ping) = ping.as_mut() {
        ping.ping(h2::Ping::opaque())
            .await
            .map_err(|e| format!("HTTP/2 ping: {e}"))?;
    }
    if !send.is_extended_connect_protocol_enabled() {
        return Err("the server does not advertise SETTINGS_ENABLE_CONNECT_PROTOCOL".into());
    }
    let mut request = http::Request::builder()
        .method(http::Method::CONNECT)
        .version(http::Version::HTTP_2)
        .uri(format!("http://{}{}", url.addr(), url.path))
        .header("sec-websocket-version", "13");
    if let Some(offer) = extensions {
        request = request.header("sec-websocket-extensions", offer);
    }
    let mut request = request.body(()).map_err(|e| e.to_string())?;
    request
        .extensions_mut()
        .insert(h2::ext::Protocol::from_static("websocket"));
    let mut send = send
        .ready()
        .await
        .map_err(|e| format!("HTTP/2 stream: {e}"))?;
    let (response, stream) = send
        .send_request(request, false)
        .map_err(|e| format!("extended CONNECT: {e}"))?;
    let response = response
        .await
        .map_err(|e| format!("extended CONNECT answer: {e}"))?;
    if !response.status().is_success() {
        return Err(format!(
            "extended CONNECT answered {} instead of 2xx",
            response.status()
        ));
    }
    if response.headers().contains_key("sec-websocket-accept") {
        return Err("Sec-WebSocket-Accept in an HTTP/2 answer (RFC 8441 section 5)".into());
    }
    let answers: Vec<&str> = response
        .headers()
        .get_all("sec-websocket-extensions")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let extensions = (!answers.is_empty()).then(|| answers.join(", "));
    let recv = response.into_body();
    Ok(Opened {
        reader: Box::new(StreamReader {
            recv,
            buffered: Bytes::new(),
            eof: false,
        }),
        writer: Box::new(StreamWriter {
            send: stream,
            pending: BytesMut::new(),
        }),
        extensions,
    })
}

/// DATA frames of the stream as bytes; the window is given back as they are read.
struct StreamReader {
    recv: h2::RecvStream,
    buffered: Bytes,
    eof: bool,
}

impl AsyncRead for StreamReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.buffered.is_empty() {
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => this.buffered = data,
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
                None => this.eof = true,
            }
        }
        let n = buf.remaining().min(this.buffered.len());
        buf.put_slice(&this.buffered[..n]);
        this.buffered.advance(n);
        let _ = this.recv.flow_control().release_capacity(n);
        Poll::Ready(Ok(()))
    }
}

/// Writes as DATA frames when the peer's window allows; shutdown sends END_STREAM.
///
/// Writes are gathered and sent on flush (the session flushes after every
/// command) or once 16 KiB wait, so a burst of tiny writes (the 64-byte
/// fragments and chops of category 9) becomes a few DATA frames, as from any
/// HTTP/2 client; an HTTP/2 server may treat a flood of tiny DATA frames as an
/// attack (h2 answers it with ENHANCE_YOUR_CALM). The WebSocket frames are
/// unchanged; only the HTTP/2 framing around them is.
struct StreamWriter {
    send: h2::SendStream<Bytes>,
    pending: BytesMut,
}

/// Gathered bytes above which a write first sends what waits.
const GATHER: usize = 16 * 1024;

impl StreamWriter {
    /// Sends what is gathered, as the window allows.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let room = self.send.capacity();
            if room > 0 {
                let n = room.min(self.pending.len());
                let chunk = self.pending.split_to(n).freeze();
                self.send
                    .send_data(chunk, false)
                    .map_err(io::Error::other)?;
                continue;
            }
            self.send.reserve_capacity(self.pending.len());
            match ready!(self.send.poll_capacity(cx)) {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
                None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for StreamWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pending.len() >= GATHER {
            ready!(this.poll_send(cx))?;
        }
        let n = buf.len().min(GATHER);
        this.pending.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_send(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        let _ = this.send.send_data(Bytes::new(), true);
        Poll::Ready(Ok(()))
    }
}
