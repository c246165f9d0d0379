//! One fuzzing connection: writes scripted frames, reads and checks what the
//! peer sends, answers pings and close frames, runs the kill/close timers
//! and tracks who closed the connection and how.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::deflate::{Agreement, Deflater, Inflater};
use super::verdict::{CloseObservation, Event, TcpCloser};
use wire_kit::{self as frame, FrameReader, FrameSpec, OP_CLOSE, OP_CONT, OP_PING, OP_PONG};

/// Largest frame or message accepted from the peer.
const MAX_INBOUND: u64 = 64 << 20;
/// Most wire log lines kept per case.
const WIRELOG_MAX: usize = 80;
/// Chops written with a pause between them when a frame has at most this many.
const PACED_CHOPS: usize = 200;

/// Which end of the connection the suite is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The suite connected to a server under test (frames are masked).
    Client,
    /// A client under test connected to the suite (frames are unmasked).
    Server,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Closing,
    Closed,
}

enum WriteCmd {
    Data {
        bytes: Vec<u8>,
        chop: usize,
        sync: bool,
    },
    Shutdown,
}

/// A bounded log of what went over the wire.
#[derive(Debug, Default)]
pub struct WireLog {
    lines: Vec<String>,
    dropped: usize,
    start: Option<Instant>,
}

impl WireLog {
    fn push(&mut self, line: String) {
        if self.lines.len() < WIRELOG_MAX {
            let t = self
                .start
                .map(|s| s.elapsed().as_secs_f64() * 1000.0)
                .unwrap_or(0.0);
            self.lines.push(format!("{t:9.1} ms  {line}"));
        } else {
            self.dropped += 1;
        }
    }

    /// The kept lines, plus a note about dropped ones.
    pub fn into_lines(mut self) -> Vec<String> {
        if self.dropped > 0 {
            self.lines
                .push(format!("… {} more lines not kept", self.dropped));
        }
        self.lines
    }
}

fn frame_summary(fin: bool, rsv: u8, opcode: u8, len: usize, payload: &[u8]) -> String {
    let name = match opcode {
        0 => "CONT",
        1 => "TEXT",
        2 => "BINARY",
        8 => "CLOSE",
        9 => "PING",
        10 => "PONG",
        _ => "RESERVED",
    };
    let shown = &payload[..payload.len().min(16)];
    let hex: String = shown.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{name}(op={opcode}) fin={} rsv={rsv} len={len}{}",
        fin as u8,
        if payload.is_empty() {
            String::new()
        } else {
            format!(
                " payload=0x{hex}{}",
                if payload.len() > 16 { "…" } else { "" }
            )
        }
    )
}

/// permessage-deflate state of a session.
pub struct Pmd {
    /// The negotiated parameters, as a response header element.
    pub negotiated: String,
    tx: Deflater,
    rx: Inflater,
    /// Payload bytes of compressed messages sent.
    pub tx_payload: u64,
    /// Wire (compressed) bytes of those.
    pub tx_wire: u64,
    /// Payload bytes of compressed messages received.
    pub rx_payload: u64,
    /// Wire (compressed) bytes of those.
    pub rx_wire: u64,
    /// Uncompressed data messages received.
    pub rx_plain: u64,
}

/// A live fuzzing connection.
pub struct Session {
    role: Role,
    rd: Option<Reader>,
    tx: Option<mpsc::UnboundedSender<WriteCmd>>,
    writer: Option<tokio::task::JoinHandle<()>>,
    write_errors: Arc<Mutex<Vec<String>>>,
    reader: FrameReader,
    rng: u64,
    state: State,
    pending: VecDeque<Event>,
    msg: Option<(u8, Vec<u8>, bool)>,
    /// permessage-deflate, when negotiated.
    pub pmd: Option<Pmd>,
    sent_close: bool,
    recv_close: bool,
    closed_by_me: Option<bool>,
    remote_code: Option<u16>,
    remote_reason: Option<String>,
    local_code: Option<u16>,
    dropped_by_me: bool,
    tcp_closed_by: TcpCloser,
    close_started: Option<Instant>,
    tcp_closed_at: Option<Instant>,
    kill_at: Option<Instant>,
    close_at: Option<Instant>,
    tcp_deadline: Option<Instant>,
    /// Frames sent by opcode.
    pub tx_frames: [u64; 16],
    /// The wire log (disable for bulk traffic with [`Session::set_wirelog`]).
    pub wirelog: WireLog,
    log_on: bool,
}

/// The read side of the transport (a TCP connection, or an HTTP/2 stream).
pub type Reader = Box<dyn AsyncRead + Send + Unpin>;
/// The write side of the transport; shutting it down ends the transport's
/// sending direction (TCP FIN, or END_STREAM on HTTP/2).
pub type Writer = Box<dyn AsyncWrite + Send + Unpin>;

impl Session {
    /// Wraps an upgraded connection. `early` holds bytes read past the
    /// handshake.
    pub fn new(stream: TcpStream, role: Role, early: Vec<u8>, started: Instant) -> Session {
        let _ = stream.set_nodelay(true);
        let (rd, wr) = stream.into_split();
        Session::from_halves(Box::new(rd), Box::new(wr), role, early, started)
    }

    /// Wraps the two halves of any transport that carries the WebSocket
    /// (here: one HTTP/2 stream, RFC 8441). "TCP" in the notes and the close
    /// observation then means that transport.
    pub fn from_halves(
        rd: Reader,
        wr: Writer,
        role: Role,
        early: Vec<u8>,
        started: Instant,
    ) -> Session {
        let (tx, rx) = mpsc::unbounded_channel();
        let write_errors = Arc::new(Mutex::new(Vec::new()));
        let writer = tokio::spawn(write_loop(wr, rx, write_errors.clone()));
        let mut reader = FrameReader::new(MAX_INBOUND);
        reader.push(&early);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15)
            | 1;
        Session {
            role,
            rd: Some(rd),
            tx: Some(tx),
            writer: Some(writer),
            write_errors,
            reader,
            rng: seed,
            state: State::Open,
            pending: VecDeque::new(),
            msg: None,
            pmd: None,
            sent_close: false,
            recv_close: false,
            closed_by_me: None,
            remote_code: None,
            remote_reason: None,
            local_code: None,
            dropped_by_me: false,
            tcp_closed_by: TcpCloser::Nobody,
            close_started: None,
            tcp_closed_at: None,
            kill_at: None,
            close_at: None,
            tcp_deadline: None,
            tx_frames: [0; 16],
            wirelog: WireLog {
                start: Some(started),
                ..WireLog::default()
            },
            log_on: true,
        }
    }

    /// Enables permessage-deflate with the negotiated parameters.
    pub fn enable_deflate(&mut self, agreement: Agreement) {
        let we_are_server = self.role == Role::Server;
        let (tx_reset, tx_bits) = agreement.direction(we_are_server);
        let (rx_reset, _) = agreement.direction(!we_are_server);
        self.note(format!(
            "permessage-deflate negotiated: {} (suite sends with a {tx_bits}-bit window{})",
            agreement.header(),
            if tx_reset {
                ", no context takeover"
            } else {
                ""
            }
        ));
        self.pmd = Some(Pmd {
            negotiated: agreement.header(),
            tx: Deflater::new(tx_bits, tx_reset),
            rx: Inflater::new(rx_reset, MAX_INBOUND as usize),
            tx_payload: 0,
            tx_wire: 0,
            rx_payload: 0,
            rx_wire: 0,
            rx_plain: 0,
        });
    }

    /// Sends a data message, compressed (RSV1 on the first frame) when
    /// permessage-deflate is on, in frames of at most `frag` bytes of wire
    /// payload (0 = one frame).
    pub fn send_message(&mut self, opcode: u8, payload: &[u8], frag: usize) {
        let mut frames = match self.pmd.as_mut() {
            Some(p) => {
                let c = p.tx.compress(payload);
                p.tx_payload += payload.len() as u64;
                p.tx_wire += c.len() as u64;
                let mut frames = frame::fragment(opcode, &c, frag);
                frames[0].rsv = 4;
                frames
            }
            None => frame::fragment(opcode, payload, frag),
        };
        for f in frames.drain(..) {
            self.send_frame(&f, 0, false);
        }
    }

    /// Turns logging of individual frames on or off.
    pub fn set_wirelog(&mut self, on: bool) {
        self.log_on = on;
    }

    /// Adds a line to the wire log.
    pub fn note(&mut self, line: impl Into<String>) {
        self.wirelog.push(line.into());
    }

    /// Whether the TCP connection is gone.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether the WebSocket is still open (no close frame either way).
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    fn next_mask(&mut self) -> [u8; 4] {
        // xorshift64*: masks only need to be unpredictable-looking.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32).to_be_bytes()[4..8]
            .try_into()
            .unwrap_or([1, 2, 3, 4])
    }

    /// Encodes `f` with the mask our role requires.
    pub fn encode(&mut self, f: &FrameSpec) -> Vec<u8> {
        let mut f = f.clone();
        f.mask = match self.role {
            Role::Client => Some(self.next_mask()),
            Role::Server => None,
        };
        f.encode()
    }

    fn enqueue(&mut self, bytes: Vec<u8>, chop: usize, sync: bool) {
        if self.state == State::Closed {
            self.note("TX skipped: connection already closed");
            return;
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(WriteCmd::Data { bytes, chop, sync });
        }
    }

    /// Sends a frame as is (a raw close frame does not change the state).
    pub fn send_frame(&mut self, f: &FrameSpec, chop: usize, sync: bool) {
        self.tx_frames[(f.opcode & 0xF) as usize] += 1;
        if self.log_on {
            let line = format!(
                "TX {}{}{}",
                frame_summary(f.fin, f.rsv, f.opcode, f.payload.len(), &f.payload),
                if chop > 0 {
                    format!(" chop={chop}")
                } else {
                    String::new()
                },
                if sync { " sync" } else { "" }
            );
            self.note(line);
        }
        let bytes = self.encode(f);
        self.enqueue(bytes, chop, sync);
    }

    /// Sends already encoded bytes (part of a frame).
    pub fn send_raw(&mut self, bytes: Vec<u8>) {
        if self.log_on {
            let line = format!("TX raw {} bytes", bytes.len());
            self.note(line);
        }
        self.enqueue(bytes, 0, true);
    }

    /// Sends a close frame and starts the closing handshake (if not yet).
    pub fn send_close(&mut self, code: Option<u16>, reason: &[u8]) {
        if self.state == State::Closed {
            return;
        }
        let first = !self.sent_close;
        let f = FrameSpec::new(OP_CLOSE, frame::close_payload(code, reason));
        self.send_frame(&f, 0, false);
        if first {
            self.sent_close = true;
            self.local_code = code;
            if self.closed_by_me.is_none() {
                self.closed_by_me = Some(true);
                self.close_started = Some(Instant::now());
            }
            if self.state == State::Open {
                self.state = State::Closing;
            }
            if self.recv_close {
                self.after_handshake();
            }
        }
    }

    /// Drops the connection after `secs` (Autobahn's `killAfter`).
    pub fn kill_after(&mut self, secs: f64) {
        self.kill_at = Some(Instant::now() + Duration::from_secs_f64(secs));
        self.note(format!("timer: kill after {secs} s"));
    }

    /// Starts a normal close after `secs` (Autobahn's `closeAfter`).
    pub fn close_after(&mut self, secs: f64) {
        self.close_at = Some(Instant::now() + Duration::from_secs_f64(secs));
        self.note(format!("timer: close after {secs} s"));
    }

    /// Drops TCP at once (failing the connection if nobody closed yet).
    pub fn kill(&mut self, why: &str) {
        if self.state == State::Closed {
            return;
        }
        self.note(format!("suite drops TCP: {why}"));
        if self.closed_by_me.is_none() {
            self.closed_by_me = Some(true);
            self.close_started = Some(Instant::now());
        }
        self.dropped_by_me = true;
        self.tcp_closed_by = TcpCloser::Me;
        self.finish_tcp();
    }

    fn finish_tcp(&mut self) {
        self.state = State::Closed;
        self.tcp_closed_at = Some(Instant::now());
        self.tx = None;
        if let Some(w) = self.writer.take() {
            w.abort();
        }
        self.rd = None;
        if let Ok(errs) = self.write_errors.lock() {
            for e in errs.iter() {
                self.wirelog.push(format!("write error: {e}"));
            }
        }
    }

    /// After both close frames: the server closes TCP, a client waits.
    fn after_handshake(&mut self) {
        match self.role {
            Role::Server => {
                self.note("closing handshake complete; suite (server) closes TCP");
                if let Some(tx) = &self.tx {
                    let _ = tx.send(WriteCmd::Shutdown);
                }
                self.tcp_closed_by = TcpCloser::Me;
                self.tcp_deadline = Some(Instant::now() + Duration::from_millis(500));
            }
            Role::Client => {
                self.note("closing handshake complete; waiting for the server to close TCP");
                self.tcp_deadline = Some(Instant::now() + Duration::from_secs(2));
            }
        }
    }

    fn violation(&mut self, why: String) {
        self.note(format!("VIOLATION: {why}"));
        self.pending.push_back(Event::Violation(why.clone()));
        self.kill(&format!("peer violated the protocol ({why})"));
    }

    fn on_close_frame(&mut self, payload: &[u8]) {
        let (code, reason) = match payload.len() {
            0 => (None, &payload[..0]),
            1 => {
                self.violation("close frame with a 1-byte payload".into());
                return;
            }
            _ => (
                Some(u16::from_be_bytes([payload[0], payload[1]])),
                &payload[2..],
            ),
        };
        self.recv_close = true;
        self.remote_code = code;
        self.remote_reason = Some(String::from_utf8_lossy(reason).into_owned());
        if self.closed_by_me.is_none() {
            self.closed_by_me = Some(false);
            self.close_started = Some(Instant::now());
        }
        if let Some(c) = code
            && !frame::close_code_is_valid(c)
        {
            self.violation(format!("close frame with invalid code {c}"));
            return;
        }
        if std::str::from_utf8(reason).is_err() {
            self.violation("close reason is not valid UTF-8".into());
            return;
        }
        if self.sent_close {
            self.after_handshake();
        } else {
            // Echo the peer's code, as Autobahn does.
            self.send_close(code, b"");
        }
    }

    fn on_frame(&mut self, f: frame::Frame) {
        if self.log_on || f.opcode >= 8 {
            let line = format!(
                "RX {}{}",
                frame_summary(f.fin, f.rsv, f.opcode, f.payload.len(), &f.payload),
                if f.masked { " masked" } else { "" }
            );
            self.note(line);
        }
        if self.recv_close {
            self.note("ignoring frame received after the peer's close frame");
            return;
        }
        match (self.role, f.masked) {
            (Role::Server, false) => return self.violation("unmasked frame from a client".into()),
            (Role::Client, true) => return self.violation("masked frame from a server".into()),
            _ => {}
        }
        if f.rsv != 0 {
            let compressed_start = f.rsv == 4 && matches!(f.opcode, 1 | 2) && self.pmd.is_some();
            if !compressed_start {
                return self.violation(match (f.rsv, &self.pmd) {
                    (4, Some(_)) if f.opcode == OP_CONT => {
                        "RSV1 set on a continuation frame".to_string()
                    }
                    (4, Some(_)) => "RSV1 set on a control frame".to_string(),
                    (r, _) => format!("RSV bits {r} set without an extension that defines them"),
                });
            }
        }
        match f.opcode {
            OP_CLOSE | OP_PING | OP_PONG => {
                if !f.fin {
                    return self.violation("fragmented control frame".into());
                }
                if f.payload.len() > 125 {
                    return self.violation("control frame payload over 125 bytes".into());
                }
                match f.opcode {
                    OP_PING => {
                        if !self.sent_close {
                            let pong = FrameSpec::new(OP_PONG, f.payload.clone());
                            self.send_frame(&pong, 0, false);
                        }
                        self.pending.push_back(Event::Ping(f.payload));
                    }
                    OP_PONG => self.pending.push_back(Event::Pong(f.payload)),
                    _ => self.on_close_frame(&f.payload),
                }
            }
            OP_CONT => {
                let Some((op, mut buf, compressed)) = self.msg.take() else {
                    return self.violation("continuation frame without a message".into());
                };
                if (buf.len() + f.payload.len()) as u64 > MAX_INBOUND {
                    return self.violation("message exceeds the suite's limit".into());
                }
                buf.extend_from_slice(&f.payload);
                if f.fin {
                    self.complete(op, buf, compressed);
                } else {
                    self.msg = Some((op, buf, compressed));
                }
            }
            1 | 2 => {
                if self.msg.is_some() {
                    return self.violation("new data frame inside a fragmented message".into());
                }
                let compressed = f.rsv == 4;
                if f.fin {
                    self.complete(f.opcode, f.payload, compressed);
                } else {
                    self.msg = Some((f.opcode, f.payload, compressed));
                }
            }
            op => self.violation(format!("reserved opcode {op}")),
        }
    }

    fn complete(&mut self, op: u8, payload: Vec<u8>, compressed: bool) {
        let binary = op == 2;
        let payload = match self.pmd.as_mut() {
            Some(p) if compressed => match p.rx.decompress(&payload) {
                Ok(plain) => {
                    p.rx_wire += payload.len() as u64;
                    p.rx_payload += plain.len() as u64;
                    plain
                }
                Err(e) => return self.violation(format!("bad compressed message: {e}")),
            },
            Some(p) => {
                p.rx_plain += 1;
                payload
            }
            None => payload,
        };
        if !binary && std::str::from_utf8(&payload).is_err() {
            return self.violation("text message with invalid UTF-8".into());
        }
        if !self.log_on {
            let line = format!(
                "RX {} message of {} bytes",
                if binary { "binary" } else { "text" },
                payload.len()
            );
            self.note(line);
        }
        self.pending.push_back(Event::Message { binary, payload });
    }

    fn on_eof(&mut self, why: String) {
        if self.state == State::Closed {
            return;
        }
        self.note(format!("peer closed TCP ({why})"));
        if self.closed_by_me.is_none() {
            self.closed_by_me = Some(false);
            self.close_started = Some(Instant::now());
        }
        if self.tcp_closed_by == TcpCloser::Nobody {
            self.tcp_closed_by = TcpCloser::Peer;
        }
        self.finish_tcp();
    }

    /// Processes the connection until an event arrives (returned), the
    /// connection closes or `until` passes (both `None`).
    pub async fn next_event(&mut self, until: Instant) -> Option<Event> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Some(ev);
            }
            if self.state == State::Closed {
                return None;
            }
            match self.reader.next_frame() {
                Ok(Some(f)) => {
                    self.on_frame(f);
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    self.violation(e.to_string());
                    continue;
                }
            }
            let now = Instant::now();
            if self.kill_at.is_some_and(|t| t <= now) {
                self.kill_at = None;
                self.note("timer: kill fired");
                self.kill("kill timer");
                continue;
            }
            if self.close_at.is_some_and(|t| t <= now) {
                self.close_at = None;
                if self.state == State::Open {
                    self.note("timer: close fired");
                    self.send_close(Some(1000), b"");
                }
                continue;
            }
            if self.tcp_deadline.is_some_and(|t| t <= now) {
                self.tcp_deadline = None;
                match self.role {
                    Role::Client => {
                        self.kill("server did not close TCP after the closing handshake")
                    }
                    Role::Server => {
                        self.note("closing TCP");
                        self.finish_tcp();
                    }
                }
                continue;
            }
            if until <= now {
                return None;
            }
            let mut wake = until;
            for t in [self.kill_at, self.close_at, self.tcp_deadline]
                .into_iter()
                .flatten()
            {
                wake = wake.min(t);
            }
            let Some(rd) = self.rd.as_mut() else {
                self.finish_tcp();
                continue;
            };
            tokio::select! {
                r = rd.read(&mut buf) => match r {
                    Ok(0) => self.on_eof("EOF".into()),
                    Ok(n) => self.reader.push(&buf[..n]),
                    Err(e) => self.on_eof(e.to_string()),
                },
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }

    /// What the suite saw of the close.
    pub fn close_observation(&self) -> CloseObservation {
        CloseObservation {
            opened: true,
            closed_by_me: self.closed_by_me.unwrap_or(false),
            was_clean: self.sent_close && self.recv_close,
            remote_code: self.remote_code,
            remote_reason: self.remote_reason.clone(),
            local_code: self.local_code,
            dropped_by_me: self.dropped_by_me,
            tcp_closed_by: if self.state == State::Closed {
                self.tcp_closed_by
            } else {
                TcpCloser::Nobody
            },
            close_ms: match (self.close_started, self.tcp_closed_at) {
                (Some(a), Some(b)) => Some((b.saturating_duration_since(a)).as_secs_f64() * 1000.0),
                _ => None,
            },
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(w) = self.writer.take() {
            w.abort();
        }
    }
}

async fn write_loop(
    mut wr: Writer,
    mut rx: mpsc::UnboundedReceiver<WriteCmd>,
    errors: Arc<Mutex<Vec<String>>>,
) {
    while let Some(cmd) = rx.recv().await {
        let res = match cmd {
            WriteCmd::Data { bytes, chop, sync } => {
                let parts = frame::chops(&bytes, chop);
                let paced = parts.len() > 1 && parts.len() <= PACED_CHOPS;
                let mut res = Ok(());
                for p in parts {
                    res = wr.write_all(p).await;
                    if res.is_err() {
                        break;
                    }
                    if paced {
                        let _ = wr.flush().await;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                // A no-op on TCP; an HTTP/2 stream sends what it gathered, once no
                // other command waits (or the command asks for it).
                if res.is_ok() && (sync || rx.is_empty()) {
                    res = wr.flush().await;
                }
                if res.is_ok() && sync {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                res
            }
            WriteCmd::Shutdown => {
                let _ = wr.shutdown().await;
                break;
            }
        };
        if let Err(e) = res {
            if let Ok(mut v) = errors.lock() {
                v.push(e.to_string());
            }
            break;
        }
    }
    // Keep the write half alive until aborted so that dropping it does not
    // close TCP before the session decides to.
    std::future::pending::<()>().await;
}
