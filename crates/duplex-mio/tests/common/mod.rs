//! Helpers shared by the integration tests: a server on 127.0.0.1 port 0 in a thread,
//! a command-driven handler, raw sockets.

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use duplex_mio::client::{ClientRequest, WebSocket};
use duplex_mio::{
    CloseFrame, ConnectionError, ConnectionId, Context, Handler, Message, Sender, Server,
    ServerConfig, ShutdownHandle,
};

/// Bound on every blocking call in the tests.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// What the test handler reports.
#[derive(Debug)]
pub enum Report {
    Opened(ConnectionId),
    Error(ConnectionId, String),
    Overflow(ConnectionId),
    Closed(ConnectionId, Option<CloseFrame>),
}

/// A handler driven by text commands:
/// - `sub:T` subscribes to topic T and answers `ok`;
/// - `pub:T:M` publishes M to topic T;
/// - `all:M` broadcasts M;
/// - `close:C` closes with code C;
/// - `kick` queues incompressible 64 KiB messages until the soft write limit refuses
///   one (more than 1 MiB, none written yet), then closes with 1008 overtaking them;
/// - `panic` panics (as does opening `/panic`);
/// - anything else (and binary) is echoed, unless the server is a sink.
pub struct Commands {
    id: ConnectionId,
    reports: mpsc::Sender<Report>,
    sink_binary: bool,
}

impl Handler for Commands {
    fn on_open(
        &mut self,
        ctx: &mut Context<'_>,
        request: &duplex_mio::http::Request<()>,
        offer: &duplex_mio::ClientOffer,
    ) -> Result<duplex_mio::Acceptance, duplex_mio::Rejection> {
        if request.uri().path() == "/forbidden" {
            return Err(duplex_mio::Rejection::new(
                duplex_mio::http::StatusCode::FORBIDDEN,
                "no\n",
            ));
        }
        assert_ne!(request.uri().path(), "/panic", "asked to panic in on_open");
        let _ = self.reports.send(Report::Opened(ctx.id()));
        let mut acceptance = duplex_mio::Acceptance::default();
        if let Some(protocol) = offer.select_protocol(&["chat"]) {
            acceptance = acceptance.protocol(protocol);
        }
        Ok(acceptance)
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, message: Message) {
        let text = match &message {
            Message::Text(text) => text.to_string(),
            _ => {
                if !self.sink_binary {
                    let _ = ctx.send(message);
                }
                return;
            }
        };
        if let Some(topic) = text.strip_prefix("sub:") {
            assert!(ctx.subscribe(topic));
            assert!(ctx.is_subscribed(topic));
            ctx.send(Message::text("ok")).unwrap();
        } else if let Some(rest) = text.strip_prefix("pub:") {
            let (topic, body) = rest.split_once(':').unwrap();
            ctx.publish(topic, Message::text(body)).unwrap();
        } else if let Some(body) = text.strip_prefix("all:") {
            ctx.broadcast(Message::text(body)).unwrap();
        } else if text == "panic" {
            panic!("asked to panic in on_message");
        } else if text == "kick" {
            // One chunk of noise, shared: making it per message took most of the
            // test's time in a debug build.
            let chunk = duplex_mio::Bytes::from(wire_kit::noise(64 << 10, 7));
            let mut queued = 0;
            while ctx.send(Message::Binary(chunk.clone())).is_ok() {
                queued += 1;
            }
            assert!(ctx.buffered() > 1 << 20, "{queued} queued");
            ctx.close_now(duplex_mio::CloseCode::PolicyViolation, "too slow")
                .unwrap();
        } else if let Some(code) = text.strip_prefix("close:") {
            let code: u16 = code.parse().unwrap();
            ctx.close(code.into(), "bye").unwrap();
        } else {
            let _ = ctx.send(message);
        }
    }

    fn on_error(&mut self, _ctx: &mut Context<'_>, error: &ConnectionError) {
        let report = match error {
            ConnectionError::WebSocket(duplex_mio::core::Error::LimitExceeded(limit))
                if limit.limit == duplex_mio::core::Limit::WriteBuffer =>
            {
                Report::Overflow(self.id)
            }
            other => Report::Error(self.id, other.to_string()),
        };
        let _ = self.reports.send(report);
    }

    fn on_close(&mut self, _ctx: &mut Context<'_>, frame: Option<CloseFrame>) {
        let _ = self.reports.send(Report::Closed(self.id, frame));
    }
}

/// A running server and its handles.
pub struct Running {
    pub addr: SocketAddr,
    pub shutdown: ShutdownHandle,
    pub sender: Sender,
    pub reports: mpsc::Receiver<Report>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Stops the server and returns how long `run` took to return.
    pub fn stop(mut self) -> Duration {
        self.halt()
    }

    /// Stops the server; returns how long `run` took and the reports not yet taken.
    pub fn stop_with_reports(mut self) -> (Duration, Vec<Report>) {
        let took = self.halt();
        (took, self.reports.try_iter().collect())
    }

    /// Waits (at most `within`) until the server holds `n` sockets.
    pub fn wait_for_count(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let count = self.sender.connection_count();
            if count == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server holds {count} sockets, not {n}, after {within:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn halt(&mut self) -> Duration {
        let started = Instant::now();
        self.shutdown.shutdown();
        let thread = self.thread.take().unwrap();
        while !thread.is_finished() {
            assert!(started.elapsed() < TIMEOUT, "server did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
        thread.join().unwrap().unwrap();
        started.elapsed()
    }

    /// The next report matching `pick`, within `TIMEOUT`.
    pub fn wait_for<T>(&self, mut pick: impl FnMut(Report) -> Option<T>) -> T {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let report = self
                .reports
                .recv_timeout(left)
                .expect("timed out waiting for a report");
            if let Some(found) = pick(report) {
                return found;
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.shutdown.shutdown();
            let _ = thread.join();
        }
    }
}

pub fn start(config: ServerConfig) -> Running {
    start_with(config, false)
}

pub fn start_with(config: ServerConfig, sink_binary: bool) -> Running {
    let server = Server::bind("127.0.0.1:0", config).unwrap();
    let addr = server.local_addr().unwrap();
    let shutdown = server.shutdown_handle();
    let sender = server.sender();
    let (tx, reports) = mpsc::channel();
    let tx = Mutex::new(tx);
    let thread = std::thread::spawn(move || {
        server.run(move |id| Commands {
            id,
            reports: tx.lock().unwrap().clone(),
            sink_binary,
        })
    });
    Running {
        addr,
        shutdown,
        sender,
        reports,
        thread: Some(thread),
    }
}

/// A connected client with a read timeout.
pub fn client(url: &str) -> WebSocket {
    let mut socket = duplex_mio::client::connect(url).unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    socket
}

/// Receives the next text or binary message, skipping pings and pongs.
pub fn recv_data(socket: &mut WebSocket) -> Message {
    loop {
        match socket.recv().unwrap() {
            Message::Ping(_) | Message::Pong(_) => {}
            other => return other,
        }
    }
}

/// A raw socket that completed the opening handshake, for sending bytes by hand.
pub fn raw_client(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    let (request, mut handshake) = ClientRequest::new(&format!("ws://{addr}/"))
        .unwrap()
        .encode();
    stream.write_all(&request).unwrap();
    let mut buf = [0u8; 1];
    loop {
        let n = stream.read(&mut buf).unwrap();
        assert_eq!(n, 1, "server closed during the handshake");
        if let Some((_, _, rest)) = handshake.feed(&buf).unwrap() {
            assert!(rest.is_empty());
            return stream;
        }
    }
}

/// Reads until `n` bytes arrived or the peer closed; returns what arrived.
pub fn read_some(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < n {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => out.extend_from_slice(&buf[..k]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                panic!("read timed out after {} bytes", out.len())
            }
            // A reset ends the stream too.
            Err(_) => break,
        }
    }
    out
}

/// The masking key of the frames written by hand: zero, so the payload stays plain.
pub const ZERO_MASK: Option<[u8; 4]> = Some([0; 4]);

/// A masked client frame of any length, `first` its first byte (mask key zero).
pub fn masked_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    wire_kit::frame(first, payload, ZERO_MASK)
}
