//! The wire: a TCP connection that counts every byte read and written, with just
//! enough HTTP/1.1 (keep-alive, Content-Length and chunked bodies), server-sent events
//! and WebSocket (RFC 6455 client, permessage-deflate inflation) on top. Independent
//! of the duplex crates, which are what it measures.

use std::io;

use flate2::{Decompress, FlushDecompress, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use wire_kit::FrameReader;
pub use wire_kit::{Head, accept_key, base64};

/// The most a response head or a message may take.
const LIMIT: usize = 1 << 20;

/// A TCP connection with byte counters: `up` is what we wrote, `down` what we read,
/// headers and framing included (TCP/IP headers are not).
pub struct Conn {
    tcp: TcpStream,
    /// Read and not yet consumed.
    buf: Vec<u8>,
    pub up: u64,
    pub down: u64,
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

impl Conn {
    pub async fn connect(addr: &str) -> io::Result<Conn> {
        Conn::from_tcp(TcpStream::connect(addr).await?)
    }

    pub fn from_tcp(tcp: TcpStream) -> io::Result<Conn> {
        tcp.set_nodelay(true)?;
        Ok(Conn {
            tcp,
            buf: Vec::new(),
            up: 0,
            down: 0,
        })
    }

    pub async fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.tcp.write_all(data).await?;
        self.up += data.len() as u64;
        Ok(())
    }

    /// Reads more into the buffer; end of stream is an error.
    async fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 << 10];
        let n = self.tcp.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.down += n as u64;
        self.buf.extend_from_slice(&chunk[..n]);
        if self.buf.len() > LIMIT {
            return Err(invalid("more than 1 MiB buffered"));
        }
        Ok(())
    }

    /// Takes `n` bytes, reading until they are there.
    async fn take(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            self.fill().await?;
        }
        let rest = self.buf.split_off(n);
        Ok(std::mem::replace(&mut self.buf, rest))
    }

    /// Takes one line ending in CRLF (without it).
    async fn line(&mut self) -> io::Result<Vec<u8>> {
        let mut from = 0;
        loop {
            if let Some(i) = self.buf[from..].windows(2).position(|w| w == b"\r\n") {
                let mut line = self.take(from + i + 2).await?;
                line.truncate(line.len() - 2);
                return Ok(line);
            }
            from = self.buf.len().saturating_sub(1);
            self.fill().await?;
        }
    }

    /// Reads a response head.
    pub async fn read_head(&mut self) -> io::Result<Head> {
        let mut head = Vec::new();
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                break;
            }
            head.extend_from_slice(&line);
            head.extend_from_slice(b"\r\n");
        }
        Head::parse(&head).map_err(invalid)
    }

    /// A whole response: head and body (Content-Length or chunked).
    pub async fn response(&mut self) -> io::Result<(Head, Vec<u8>)> {
        let head = self.read_head().await?;
        let body = if head.status == 204 || head.status == 304 {
            Vec::new()
        } else if head.has_token("transfer-encoding", "chunked") {
            let mut body = Vec::new();
            while let Some(chunk) = self.chunk().await? {
                body.extend_from_slice(&chunk);
            }
            body
        } else {
            let length = head
                .get("content-length")
                .ok_or_else(|| invalid("a response without Content-Length"))?;
            let length: usize = length.parse().map_err(|_| invalid("Content-Length"))?;
            if length > LIMIT {
                return Err(invalid("body over 1 MiB"));
            }
            self.take(length).await?
        };
        Ok((head, body))
    }

    /// The next chunk of a chunked body; `None` after the last one (and its trailer).
    pub async fn chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let size_line = String::from_utf8(self.line().await?).map_err(|_| invalid("chunk"))?;
        let size = size_line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| invalid("chunk size"))?;
        if size == 0 {
            while !self.line().await?.is_empty() {}
            return Ok(None);
        }
        if size > LIMIT {
            return Err(invalid("chunk over 1 MiB"));
        }
        let data = self.take(size).await?;
        if !self.take(2).await?.eq(b"\r\n") {
            return Err(invalid("chunk not followed by CRLF"));
        }
        Ok(Some(data))
    }
}

/// A GET request head.
pub fn get(path: &str, host: &str, headers: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n").into_bytes()
}

/// Splits server-sent events out of a text stream.
#[derive(Default)]
pub struct SseParser {
    pending: Vec<u8>,
}

impl SseParser {
    /// Feeds stream bytes; returns the `data` of each event completed.
    pub fn feed(&mut self, data: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(data);
        let mut events = Vec::new();
        while let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = self.pending.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&event);
            let data: Vec<&str> = text
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if !data.is_empty() {
                events.push(data.join("\n"));
            }
        }
        events
    }
}

/// A WebSocket client connection.
pub struct WsClient {
    pub conn: Conn,
    /// Set when permessage-deflate was agreed; `bool`: reset after each message.
    inflater: Option<(Decompress, bool)>,
    /// The response's `Sec-WebSocket-Extensions`.
    pub extensions: Option<String>,
    rng: u64,
}

impl WsClient {
    /// Runs the opening handshake on `conn` (offering permessage-deflate if `deflate`).
    pub async fn handshake(
        mut conn: Conn,
        path: &str,
        host: &str,
        headers: &str,
        deflate: bool,
        seed: u64,
    ) -> io::Result<WsClient> {
        let mut rng = seed | 1;
        let key: Vec<u8> = (0..16).map(|_| xorshift(&mut rng) as u8).collect();
        let key = base64(&key);
        let mut extra = format!(
            "{headers}Upgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        );
        if deflate {
            extra.push_str(
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
            );
        }
        conn.send(&get(path, host, &extra)).await?;
        let head = conn.read_head().await?;
        if head.status != 101 {
            return Err(invalid(format!("handshake answered {}", head.status)));
        }
        if head.get("sec-websocket-accept") != Some(accept_key(&key).as_str()) {
            return Err(invalid("wrong Sec-WebSocket-Accept"));
        }
        let extensions = head.get("sec-websocket-extensions").map(str::to_owned);
        let inflater = match &extensions {
            None => None,
            Some(value) => {
                let mut params = value.split(';').map(str::trim);
                if !deflate || params.next() != Some("permessage-deflate") || value.contains(',') {
                    return Err(invalid(format!("unexpected extensions {value:?}")));
                }
                let reset = value.contains("server_no_context_takeover");
                Some((Decompress::new_with_window_bits(false, 15), reset))
            }
        };
        Ok(WsClient {
            conn,
            inflater,
            extensions,
            rng,
        })
    }

    /// The next text or binary message's payload; `None` when the server closed.
    /// Pings are answered.
    pub async fn next_message(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut message: Option<(bool, Vec<u8>)> = None; // (compressed, payload so far)
        loop {
            // Exactly one frame's bytes, so nothing after it is read early.
            let mut frames = FrameReader::new(LIMIT as u64);
            let frame = loop {
                if let Some(frame) = frames.next_frame().map_err(|e| invalid(e.to_string()))? {
                    break frame;
                }
                let bytes = self.conn.take(frames.wanted()).await?;
                frames.push(&bytes);
            };
            if frame.masked {
                return Err(invalid("a masked frame from the server"));
            }
            let (fin, rsv1, opcode, payload) =
                (frame.fin, frame.rsv1(), frame.opcode, frame.payload);
            match opcode {
                0x9 => self.send_frame(0xA, &payload).await?,
                0xA => {}
                0x8 => {
                    let _ = self.send_frame(0x8, &payload[..payload.len().min(2)]).await;
                    return Ok(None);
                }
                0x1 | 0x2 if message.is_none() => message = Some((rsv1, payload)),
                0x0 if message.is_some() => {
                    let (_, so_far) = message.as_mut().unwrap();
                    so_far.extend_from_slice(&payload);
                }
                _ => return Err(invalid(format!("unexpected frame, opcode {opcode}"))),
            }
            if fin && opcode < 0x8 {
                let (compressed, payload) = message.take().unwrap();
                if !compressed {
                    return Ok(Some(payload));
                }
                let Some((inflater, reset)) = &mut self.inflater else {
                    return Err(invalid("RSV1 without permessage-deflate"));
                };
                return inflate(inflater, *reset, &payload).map(Some);
            }
        }
    }

    /// Sends one masked frame.
    pub async fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let mask = (xorshift(&mut self.rng) as u32).to_be_bytes();
        let frame = wire_kit::frame(0x80 | opcode, payload, Some(mask));
        self.conn.send(&frame).await
    }

    /// Sends a close frame (1000) without waiting for the answer.
    pub async fn close(&mut self) -> io::Result<()> {
        self.send_frame(0x8, &1000u16.to_be_bytes()).await
    }
}

/// Inflates one permessage-deflate message (RFC 7692 section 7.2.2).
fn inflate(d: &mut Decompress, reset: bool, data: &[u8]) -> io::Result<Vec<u8>> {
    let mut input = data.to_vec();
    input.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
    let mut out = Vec::with_capacity(data.len() * 4 + 64);
    let start = d.total_in();
    loop {
        let consumed = (d.total_in() - start) as usize;
        if out.len() == out.capacity() {
            if out.len() >= LIMIT {
                return Err(invalid("inflated message over 1 MiB"));
            }
            out.reserve(out.len());
        }
        let before = (d.total_in(), d.total_out());
        let status = d
            .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            .map_err(|e| invalid(format!("bad deflate data: {e}")))?;
        if status == Status::StreamEnd {
            d.reset(false);
            break;
        }
        let all_in = (d.total_in() - start) as usize == input.len();
        let progress = (d.total_in(), d.total_out()) != before;
        if all_in && (out.len() < out.capacity() || !progress) {
            break;
        }
        if !progress {
            return Err(invalid("the inflater made no progress"));
        }
    }
    if reset {
        d.reset(false);
    }
    Ok(out)
}

pub fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_split_across_reads() {
        let mut parser = SseParser::default();
        assert!(
            parser
                .feed(b"retry: 1000\n\nid: 1\ndata: {\"a\"")
                .is_empty()
        );
        assert_eq!(
            parser.feed(b":1}\n\nid: 2\ndata: x\n\n"),
            ["{\"a\":1}", "x"]
        );
    }

    #[test]
    fn rfc_7692_hello_inflates() {
        let mut d = Decompress::new_with_window_bits(false, 15);
        let data = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate(&mut d, false, &data).unwrap(), b"Hello");
        assert_eq!(
            inflate(&mut d, false, &[0xf2, 0x00, 0x11, 0x00, 0x00]).unwrap(),
            b"Hello"
        );
    }

    #[tokio::test]
    async fn chunked_and_content_length_bodies() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        const RESPONSES: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello\
            HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            tcp.write_all(RESPONSES).await.unwrap();
        });
        let mut conn = Conn::connect(&addr).await.unwrap();
        let (head, body) = conn.response().await.unwrap();
        assert_eq!((head.status, &body[..]), (200, &b"hello"[..]));
        let (_, body) = conn.response().await.unwrap();
        assert_eq!(body, b"abcde");
        assert_eq!(conn.down, RESPONSES.len() as u64);
    }
}
