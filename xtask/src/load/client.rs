//! The connections of the load generator: the echo loop (K messages in flight, each
//! echo checked byte for byte as it arrives, the next send queued as soon as one
//! completes), the handshake loop and idle connections.
//!
//! Everything is non-blocking `try_read`/`try_write_vectored` on one task per
//! connection: reading and writing never wait for each other, so a server that
//! cannot write because we do not read (or the reverse) never deadlocks the test.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{ErrorKind, IoSlice};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::hist::Histogram;
use super::wire::{Accepted, Checker, EchoError, Messages, parse_response};

/// Read buffer size; one per thread, shared by its connections.
const READ_BUF: usize = 256 * 1024;
/// Connections being opened at once (listen backlogs are often 1024 or less).
pub const CONNECT_CONCURRENCY: usize = 256;
/// Limit for connecting plus the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

thread_local! {
    static READ: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_BUF]);
}

/// An open WebSocket connection, after the `101`.
#[derive(Debug)]
pub struct Opened {
    /// The socket.
    pub tcp: TcpStream,
    /// Bytes received after the response head (frames already sent by the server).
    pub leftover: Vec<u8>,
    /// The server's `Sec-WebSocket-Extensions`, if any.
    pub extensions: Option<String>,
}

/// Closes a socket with a reset, so that neither side keeps it in TIME_WAIT (tens of
/// thousands of connections per run would otherwise exhaust the ephemeral ports).
pub fn abort(tcp: TcpStream) {
    let _ = tcp.set_zero_linger();
    drop(tcp);
}

/// Connects and performs the opening handshake.
pub async fn open(addr: SocketAddr, request: &[u8]) -> Result<Opened, String> {
    let handshake = async {
        let mut tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        tcp.write_all(request)
            .await
            .map_err(|e| format!("send request: {e}"))?;
        let mut buf = Vec::with_capacity(512);
        loop {
            let n = tcp
                .read_buf(&mut buf)
                .await
                .map_err(|e| format!("read response: {e}"))?;
            if n == 0 {
                return Err("connection closed during the handshake".to_string());
            }
            if let Some(Accepted {
                head_len,
                extensions,
            }) = parse_response(&buf)?
            {
                return Ok(Opened {
                    tcp,
                    leftover: buf.split_off(head_len),
                    extensions,
                });
            }
        }
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| "handshake timed out".to_string())?
}

/// Opens `n` connections, at most [`CONNECT_CONCURRENCY`] at a time, each followed
/// by one round trip of the first of `round_trip` if given.
pub async fn open_many(
    addr: SocketAddr,
    request: Arc<Vec<u8>>,
    n: usize,
    round_trip: Option<Arc<Messages>>,
) -> Result<Vec<Opened>, String> {
    let permits = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut set = JoinSet::new();
    for _ in 0..n {
        let permit = permits.clone().acquire_owned().await.expect("never closed");
        let request = request.clone();
        let messages = round_trip.clone();
        set.spawn(async move {
            let mut opened = open(addr, &request).await;
            if let (Ok(o), Some(m)) = (&mut opened, messages)
                && let Err(e) = self::round_trip(o, &m).await
            {
                opened = Err(format!("round trip: {e}"));
            }
            drop(permit);
            opened
        });
    }
    let mut out = Vec::with_capacity(n);
    let mut error = None;
    while let Some(joined) = set.join_next().await {
        match joined.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok(opened) => out.push(opened),
            Err(e) => error = error.or(Some(e)),
        }
    }
    match error {
        None => Ok(out),
        Some(e) => {
            let failed = n - out.len();
            out.into_iter().for_each(|o| abort(o.tcp));
            Err(format!("{failed} of {n} connections failed, first: {e}"))
        }
    }
}

/// What one connection (or all of them, merged) measured.
#[derive(Debug, Default)]
pub struct EchoStats {
    /// Messages whose echo completed inside the window.
    pub messages: u64,
    /// Echoes that differed from what was sent (over the whole run).
    pub mismatches: u64,
    /// Round-trip times of the messages counted.
    pub latency: Histogram,
    /// Connections that ended with an error before the end of the window.
    pub errors: u64,
    /// The first such error.
    pub first_error: Option<String>,
    /// Bytes received inside the window (frame headers included; over TLS or HTTP/2,
    /// what the WebSocket layer got, not the TLS records or HTTP/2 frames).
    pub wire_bytes: u64,
}

impl EchoStats {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: EchoStats) {
        self.messages += other.messages;
        self.mismatches += other.mismatches;
        self.latency.merge(&other.latency);
        self.errors += other.errors;
        self.wire_bytes += other.wire_bytes;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Runs the echo loop on one connection until `end`, counting what completes in
/// `[start, end)`.
pub async fn echo(
    opened: Opened,
    messages: Arc<Messages>,
    in_flight: usize,
    start: Instant,
    end: Instant,
) -> EchoStats {
    let mut stats = EchoStats::default();
    let Opened { tcp, leftover, .. } = opened;
    let mut conn = EchoConn::new(&messages, in_flight);
    let result = async {
        if !leftover.is_empty() {
            conn.received(&leftover, &messages, &mut stats, start, end)?;
        }
        let deadline = tokio::time::sleep_until(end.into());
        tokio::pin!(deadline);
        loop {
            conn.flush(&tcp, &messages)?;
            let interest = if conn.out.is_empty() {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            let ready = tokio::select! {
                biased;
                _ = &mut deadline => return Ok(()),
                ready = tcp.ready(interest) => ready.map_err(|e| e.to_string())?,
            };
            if !ready.is_readable() {
                continue;
            }
            READ.with(|buf| {
                let mut buf = buf.borrow_mut();
                match tcp.try_read(&mut buf) {
                    Ok(0) => Err("server closed the connection".to_string()),
                    Ok(n) => conn.received(&buf[..n], &messages, &mut stats, start, end),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(()),
                    Err(e) => Err(format!("read: {e}")),
                }
            })?;
        }
    }
    .await;
    stats.mismatches = conn.reader.mismatches();
    if let Err(e) = result {
        stats.errors = 1;
        stats.first_error = Some(e);
    }
    abort(tcp);
    stats
}

/// The state of one echo connection.
pub struct EchoConn {
    reader: Checker,
    /// Variant of every message in flight, oldest first.
    expected: VecDeque<u8>,
    /// When each message in flight was queued.
    sent_at: VecDeque<Instant>,
    /// Frames still to write: (variant, bytes of it already written).
    out: VecDeque<(u8, usize)>,
    next_variant: u8,
    /// How many variants are sent in turn (at most 256).
    variants: usize,
}

impl EchoConn {
    /// A connection with `in_flight` messages queued.
    pub fn new(messages: &Messages, in_flight: usize) -> EchoConn {
        let mut conn = EchoConn {
            reader: Checker::for_messages(messages),
            expected: VecDeque::with_capacity(in_flight),
            sent_at: VecDeque::with_capacity(in_flight),
            out: VecDeque::with_capacity(in_flight),
            next_variant: 0,
            variants: messages.variants.len().clamp(1, 256),
        };
        let now = Instant::now();
        for _ in 0..in_flight.max(1) {
            conn.queue(now);
        }
        conn
    }

    /// Messages that came back different.
    pub fn mismatches(&self) -> u64 {
        self.reader.mismatches()
    }

    /// Whether frames wait to be written.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// The frames waiting, as slices (at most 64).
    pub fn output<'a>(&self, messages: &'a Messages) -> Vec<IoSlice<'a>> {
        self.out
            .iter()
            .take(64)
            .map(|&(v, off)| IoSlice::new(&messages.variants[v as usize].frame[off..]))
            .collect()
    }

    /// `n` bytes of the waiting frames were written.
    pub fn written(&mut self, mut n: usize, messages: &Messages) {
        while n > 0 {
            let Some((v, off)) = self.out.front_mut() else {
                return;
            };
            let left = messages.variants[*v as usize].frame.len() - *off;
            if n >= left {
                n -= left;
                self.out.pop_front();
            } else {
                *off += n;
                n = 0;
            }
        }
    }

    fn queue(&mut self, now: Instant) {
        let v = self.next_variant;
        self.next_variant = ((v as usize + 1) % self.variants) as u8;
        self.expected.push_back(v);
        self.sent_at.push_back(now);
        self.out.push_back((v, 0));
    }

    /// Checks received bytes; every completed echo is counted and replaced.
    pub fn received(
        &mut self,
        data: &[u8],
        messages: &Messages,
        stats: &mut EchoStats,
        start: Instant,
        end: Instant,
    ) -> Result<(), String> {
        let now = Instant::now();
        if now >= start && now < end {
            stats.wire_bytes += data.len() as u64;
        }
        let mut completed = 0;
        let sent_at = &mut self.sent_at;
        let result = self.reader.feed(data, messages, &mut self.expected, |_| {
            completed += 1;
            let sent = sent_at.pop_front().unwrap_or(now);
            if now >= start && now < end {
                stats.messages += 1;
                stats
                    .latency
                    .record(now.duration_since(sent).as_nanos() as u64);
            }
        });
        match result {
            Ok(()) => {}
            Err(EchoError::Closed) => return Err("server sent a close frame".into()),
            Err(EchoError::Protocol(e)) => return Err(e),
        }
        if now < end {
            for _ in 0..completed {
                self.queue(now);
            }
        }
        Ok(())
    }

    /// Writes queued frames until done or the socket is full.
    fn flush(&mut self, tcp: &TcpStream, messages: &Messages) -> Result<(), String> {
        while !self.out.is_empty() {
            let slices: Vec<IoSlice<'_>> = self
                .out
                .iter()
                .take(64)
                .map(|&(v, off)| IoSlice::new(&messages.variants[v as usize].frame[off..]))
                .collect();
            let mut n = match tcp.try_write_vectored(&slices) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(format!("write: {e}")),
            };
            while n > 0 {
                let (v, off) = self.out.front_mut().expect("written bytes were queued");
                let left = messages.variants[*v as usize].frame.len() - *off;
                if n >= left {
                    n -= left;
                    self.out.pop_front();
                } else {
                    *off += n;
                    n = 0;
                }
            }
        }
        Ok(())
    }
}

/// What the handshake loop measured.
#[derive(Debug, Default)]
pub struct HandshakeStats {
    /// Handshakes completed inside the window.
    pub completed: u64,
    /// Time from `connect` to the validated `101`.
    pub latency: Histogram,
    /// Failed attempts.
    pub errors: u64,
    /// The first failure.
    pub first_error: Option<String>,
    /// Extensions some server response carried.
    pub extensions: Option<String>,
}

/// Opens, upgrades and resets connections one after the other until `end`.
pub async fn handshakes(
    addr: SocketAddr,
    request: Arc<Vec<u8>>,
    start: Instant,
    end: Instant,
) -> HandshakeStats {
    let mut stats = HandshakeStats::default();
    while Instant::now() < end {
        let t0 = Instant::now();
        let result = tokio::time::timeout_at((end + Duration::from_secs(2)).into(), async {
            open(addr, &request).await
        })
        .await
        .unwrap_or_else(|_| Err("handshake still running after the end".into()));
        let t1 = Instant::now();
        match result {
            Ok(opened) => {
                if t0 >= start && t1 < end {
                    stats.completed += 1;
                    stats
                        .latency
                        .record(t1.duration_since(t0).as_nanos() as u64);
                }
                if stats.extensions.is_none() {
                    stats.extensions = opened.extensions;
                }
                abort(opened.tcp);
            }
            Err(e) => {
                stats.errors += 1;
                stats.first_error.get_or_insert(e);
                // Do not spin on a server that refuses everything.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    stats
}

/// One round trip of a small message on an open connection, so the server has read,
/// decoded and written on it before it goes idle.
pub async fn round_trip(opened: &mut Opened, messages: &Messages) -> Result<(), String> {
    let mut reader = Checker::for_messages(messages);
    let mut expected = VecDeque::from([0u8]);
    let mut done = false;
    opened
        .tcp
        .write_all(&messages.variants[0].frame)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut data = std::mem::take(&mut opened.leftover);
    loop {
        reader
            .feed(&data, messages, &mut expected, |_| done = true)
            .map_err(|e| format!("{e:?}"))?;
        if done {
            return if reader.mismatches() == 0 {
                Ok(())
            } else {
                Err("echo differs".into())
            };
        }
        data.clear();
        let read = tokio::time::timeout(HANDSHAKE_TIMEOUT, opened.tcp.read_buf(&mut data)).await;
        match read {
            Ok(Ok(0)) => return Err("closed before the echo".into()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("read: {e}")),
            Err(_) => return Err("no echo within 10 s".into()),
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::super::wire::{ACCEPT, WsUrl, upgrade_request};
    use super::*;
    use tokio::io::{AsyncRead, AsyncWrite};
    use tokio::net::TcpListener;
    use wire_kit::KEY;

    /// A small but real echo server: parses client frames, unmasks, sends back one
    /// unmasked frame per message (fragments are sent back as they come). With `raw`,
    /// sends every byte back untouched instead, like `raw-echo`.
    pub async fn test_server(raw: bool) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(serve(tcp, raw));
            }
        });
        addr
    }

    async fn serve(tcp: TcpStream, raw: bool) -> std::io::Result<()> {
        serve_any(tcp, raw).await
    }

    /// The test server's side of one connection over any stream (TLS in `stream.rs`).
    pub async fn serve_io<S: AsyncRead + AsyncWrite>(io: S) -> std::io::Result<()> {
        serve_any(io, false).await
    }

    /// Reads the upgrade request, answers it (accepting permessage-deflate when
    /// offered: the generator compresses every message on its own, so sending its
    /// compressed frames back as they came is a valid compressed echo) and echoes.
    async fn serve_any<S: AsyncRead + AsyncWrite>(io: S, raw: bool) -> std::io::Result<()> {
        let (mut rd, mut wr) = tokio::io::split(io);
        let mut buf = Vec::new();
        let end = loop {
            if rd.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        assert!(head.contains(KEY));
        let extra = if head.contains("permessage-deflate") {
            "Sec-WebSocket-Extensions: permessage-deflate\r\n"
        } else {
            ""
        };
        wr.write_all(&wire_kit::response_101(ACCEPT, extra)).await?;
        buf.drain(..end);
        echo_frames(rd, wr, buf, raw).await
    }

    /// Echoes frames unmasked, each as it came (fragments stay fragments, RSV bits
    /// kept); with `raw`, every byte as it came.
    pub async fn echo_frames<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
        mut rd: R,
        mut wr: W,
        mut buf: Vec<u8>,
        raw: bool,
    ) -> std::io::Result<()> {
        let mut frames = wire_kit::FrameReader::new(u64::MAX);
        loop {
            if raw {
                wr.write_all(&buf).await?;
                buf.clear();
            } else {
                frames.push(&buf);
                buf.clear();
                while let Some(frame) = frames.next_frame().unwrap() {
                    let first = u8::from(frame.fin) << 7 | frame.rsv << 4 | frame.opcode;
                    wr.write_all(&wire_kit::frame(first, &frame.payload, None))
                        .await?;
                }
            }
            wr.flush().await?;
            if rd.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        }
    }

    async fn run_echo(addr: SocketAddr, size: usize, connections: usize) -> EchoStats {
        let url = WsUrl::parse(&format!("ws://{addr}/")).unwrap();
        let request = Arc::new(upgrade_request(&url));
        let opened = open_many(addr, request, connections, None).await.unwrap();
        assert!(opened.iter().all(|o| o.extensions.is_none()));
        let messages = Arc::new(Messages::new(size));
        let start = Instant::now() + Duration::from_millis(50);
        let end = start + Duration::from_millis(300);
        let mut set = JoinSet::new();
        for o in opened {
            set.spawn(echo(o, messages.clone(), 4, start, end));
        }
        let mut total = EchoStats::default();
        while let Some(s) = set.join_next().await {
            total.merge(s.unwrap());
        }
        total
    }

    #[tokio::test]
    async fn echo_against_framing_and_raw_servers() {
        for raw in [false, true] {
            let addr = test_server(raw).await;
            for size in [16, 70_000] {
                let stats = run_echo(addr, size, 3).await;
                assert!(stats.messages > 0, "raw {raw} size {size}");
                assert_eq!(stats.mismatches, 0);
                assert_eq!(stats.errors, 0, "{:?}", stats.first_error);
                assert_eq!(stats.latency.len(), stats.messages);
            }
        }
    }

    #[tokio::test]
    async fn handshakes_and_round_trips() {
        let addr = test_server(false).await;
        let request = Arc::new(upgrade_request(
            &WsUrl::parse(&format!("ws://{addr}/")).unwrap(),
        ));
        let now = Instant::now();
        let stats = handshakes(addr, request.clone(), now, now + Duration::from_millis(200)).await;
        assert!(stats.completed > 0);
        assert_eq!(stats.errors, 0, "{:?}", stats.first_error);
        let mut opened = open(addr, &request).await.unwrap();
        round_trip(&mut opened, &Messages::new(16)).await.unwrap();
        round_trip(&mut opened, &Messages::new(16)).await.unwrap();
    }

    #[tokio::test]
    async fn a_wrong_echo_is_counted() {
        // A server that flips one payload byte of every message.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                tcp.read_buf(&mut buf).await.unwrap();
            }
            tcp.write_all(&wire_kit::response_101(ACCEPT, ""))
                .await
                .unwrap();
            let mut frame = vec![0u8; 22];
            tcp.read_exact(&mut frame).await.unwrap();
            let (got, _) = wire_kit::frames(&frame);
            let mut out = wire_kit::frame(0x80 | got[0].opcode, &got[0].payload, None);
            out[5] ^= 0xff;
            tcp.write_all(&out).await.unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
        let request = upgrade_request(&WsUrl::parse(&format!("ws://{addr}/")).unwrap());
        let mut opened = open(addr, &request).await.unwrap();
        assert_eq!(
            round_trip(&mut opened, &Messages::new(16)).await,
            Err("echo differs".into())
        );
    }
}
