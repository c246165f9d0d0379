//! The driver test kit: the same never-ending peers against every transport a duplex
//! driver runs on, each case with one bound that holds on all of them.
//!
//! A driver only does what the engine's `poll_transport` and `poll_timeout` say, so a
//! peer that would hold a connection for ever must be let go of within the same
//! deadline whichever driver and transport carry it. The kit checks that: every
//! [`Case`] against every [`Transport`] where it applies ([`applies`] says why where it
//! does not), one connection per case (the graceful shutdown: one peer of every other
//! case at once), all cells in parallel, the engine configured by [`limits`] (write
//! timeout 2 s, keepalive 1 s + 1 s, close timeout 1 s; `tests/never_ending.rs` uses
//! the same). Every hostile peer's socket has a small receive buffer, so that what it
//! does not read stalls our output at once. HTTP/2 runs in cleartext (prior knowledge):
//! TLS under it is the TLS transports' business.
//!
//! "Let go" is measured on our side: duplex-tokio, the task that owns the
//! `WebSocketStream` ended (a server's task counted in its `Stats::open`, a client's
//! task joined); duplex-mio's server, the connection's slot freed and `on_close` run;
//! duplex-mio's blocking client, the blocking call returned. The time counts from the
//! moment the peer starts misbehaving (its handshake done), or from the `close` call
//! ([`Case::CloseOnPeerThatNeverReads`]) or the shutdown call
//! ([`Case::GracefulShutdown`]), and must stay within [`Case::deadline`] plus [`SLACK`].
//! Over HTTP/2 the peer whose window never opens also reports what it saw of its stream
//! once we let go ([`PeerSaw`]): a stream given up on should be reset, not left open.
//!
//! [`results`] runs the whole table once per process and prints one line per cell:
//! `DRIVER-KIT | transport | case | released in X.XX s (bound Y s)`.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use duplex_core::{CloseCode, CloseFrame, Message};
use duplex_tokio::h2::{H2Stream, Http2Connection};
use duplex_tokio::http::{Method, Request, StatusCode, Version};
use duplex_tokio::tokio_rustls::rustls::pki_types::ServerName;
use duplex_tokio::tokio_rustls::{TlsAcceptor, TlsConnector};
use duplex_tokio::{ClientRequest, Shutdown};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio::sync::watch;

use crate::servers::{
    FLOOD_MESSAGE, Kind, Pki, ServerLimits, Stats, TestServer, TokioTransport, behaviour,
    serve_websocket,
};
use crate::wire;

/// The write-stall timeout of every connection under test.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Keepalive: a ping after 1 s of silence, answered within 1 s.
pub const KEEPALIVE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(1));
/// The close timeout of every connection under test.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// What a release may take beyond its case's deadline: the kernel's buffers filling
/// before a write stall starts to count, scheduling on a loaded machine.
pub const SLACK: Duration = Duration::from_secs(1);
/// The grace given to a graceful shutdown: longer than the close timeout, so that the
/// engine's close deadline, not the shutdown's abort, is what ends each connection.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// How much longer than its bound a cell waits before it calls the connection held, so
/// that a late release is still measured.
const OVERTIME: Duration = Duration::from_secs(3);
/// How long a peer whose HTTP/2 window never opened watches its stream once we let go.
const PROBE: Duration = Duration::from_secs(3);
/// How long connecting and the opening handshake may take.
const SETUP: Duration = Duration::from_secs(5);
/// How long the graceful shutdown cell lets its peers misbehave before shutting down.
const SETTLE: Duration = Duration::from_millis(500);
/// The most a peer lives, whatever happens.
const MAX_HOLD: Duration = Duration::from_secs(30);

/// The limits of the servers and clients under test (also `tests/never_ending.rs`'s).
pub fn limits() -> ServerLimits {
    ServerLimits {
        write_timeout: Some(WRITE_TIMEOUT),
        keepalive: Some(KEEPALIVE),
        close_timeout: CLOSE_TIMEOUT,
        shutdown_timeout: SHUTDOWN_GRACE,
        ..ServerLimits::default()
    }
}

/// A driver and the transport under it: our side of each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transport {
    /// duplex-tokio's server over TCP (`accept_with`).
    TokioTcpServer,
    /// duplex-tokio's server over tokio-rustls.
    TokioTlsServer,
    /// duplex-tokio over hyper's HTTP/2 (cleartext, extended CONNECT,
    /// `duplex_tokio::hyper::upgrade_with`).
    TokioH2Server,
    /// duplex-tokio's client over TCP (`connect_with`, `ws://`).
    TokioTcpClient,
    /// duplex-tokio's client over TLS (`connect_with`, `wss://`).
    TokioTlsClient,
    /// duplex-tokio's client over HTTP/2 (`duplex_tokio::h2::Http2Connection` over
    /// cleartext TCP, one connection per WebSocket).
    TokioH2Client,
    /// duplex-mio's server (its worker).
    MioServer,
    /// duplex-mio's blocking client.
    MioClient,
}

impl Transport {
    /// Every transport, in the order of the report.
    pub const ALL: [Self; 8] = [
        Self::TokioTcpServer,
        Self::TokioTlsServer,
        Self::TokioH2Server,
        Self::MioServer,
        Self::TokioTcpClient,
        Self::TokioTlsClient,
        Self::TokioH2Client,
        Self::MioClient,
    ];

    /// The name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Self::TokioTcpServer => "tokio server / TCP",
            Self::TokioTlsServer => "tokio server / TLS",
            Self::TokioH2Server => "tokio server / HTTP/2 (hyper)",
            Self::TokioTcpClient => "tokio client / TCP",
            Self::TokioTlsClient => "tokio client / TLS",
            Self::TokioH2Client => "tokio client / HTTP/2 (h2)",
            Self::MioServer => "mio server / TCP",
            Self::MioClient => "mio client / TCP",
        }
    }

    /// True when our side is the server (the hostile peer dials it).
    fn is_server(self) -> bool {
        matches!(
            self,
            Self::TokioTcpServer | Self::TokioTlsServer | Self::TokioH2Server | Self::MioServer
        )
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A never-ending peer, and what our side does meanwhile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Case {
    /// We only send 64 KiB messages (duplex-tokio: in a loop; duplex-mio: 768 KiB
    /// published from another thread, under its hard write limit); the peer never
    /// reads.
    NeverReadsWhileWeSend,
    /// The peer sends messages for us to echo, then a Close, and never reads.
    NeverReadsAndSendsClose,
    /// We close at once; the peer reads everything but never answers our Close.
    NeverAnswersOurClose,
    /// The peer sends half a frame, then nothing (it never reads either).
    StopsMidFrame,
    /// We send as in [`NeverReadsWhileWeSend`](Self::NeverReadsWhileWeSend); the peer
    /// reads one byte a second.
    ReadsOneByteASecond,
    /// HTTP/2 only: the peer's SETTINGS_INITIAL_WINDOW_SIZE is 0 and it never sends
    /// WINDOW_UPDATE; it sends messages for us to echo.
    NeverOpensWindow,
    /// duplex-tokio only: we split, drop the reader half and flood from the writer; the
    /// peer never reads.
    SplitWriterWithoutReader,
    /// We send until the transport takes no more, then call `close`; the peer never
    /// reads.
    CloseOnPeerThatNeverReads,
    /// One peer of each other case is connected, then the application shuts down
    /// gracefully (duplex-tokio's `Shutdown`, duplex-mio's `ShutdownHandle`).
    GracefulShutdown,
}

/// What the hostile peer does once its handshake is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    /// Nothing: never reads, never writes.
    Holds,
    /// Writes five 16 KiB binary messages (and a Close if `close`), then holds.
    SendsThenHolds { close: bool },
    /// Reads and discards everything, never writes.
    ReadsAll,
    /// Writes half a frame, then holds.
    HalfFrame,
    /// Reads one byte every second.
    OneByteASecond,
}

impl Case {
    /// Every case, in the order of the report.
    pub const ALL: [Self; 9] = [
        Self::NeverReadsWhileWeSend,
        Self::NeverReadsAndSendsClose,
        Self::NeverAnswersOurClose,
        Self::StopsMidFrame,
        Self::ReadsOneByteASecond,
        Self::NeverOpensWindow,
        Self::SplitWriterWithoutReader,
        Self::CloseOnPeerThatNeverReads,
        Self::GracefulShutdown,
    ];

    /// The name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Self::NeverReadsWhileWeSend => "never reads while we send",
            Self::NeverReadsAndSendsClose => "never reads, sends Close",
            Self::NeverAnswersOurClose => "never answers our Close",
            Self::StopsMidFrame => "stops mid-frame",
            Self::ReadsOneByteASecond => "reads one byte a second",
            Self::NeverOpensWindow => "never opens its HTTP/2 window",
            Self::SplitWriterWithoutReader => "split writer, reader dropped",
            Self::CloseOnPeerThatNeverReads => "close() on a peer that never reads",
            Self::GracefulShutdown => "graceful shutdown, all of these connected",
        }
    }

    /// The documented deadline that ends our side's connection (the deadlines table
    /// of `docs/SECURITY.md`), counted from the start of the misbehaviour (see the
    /// module documentation).
    pub fn deadline(self) -> Duration {
        match self {
            // A write stall fails the connection after the write timeout without
            // progress, which starts within milliseconds with the peers' small receive
            // buffers (the unanswered keepalive ping, 1 s + 1 s, may come first); the
            // transport is closed at once.
            Self::NeverReadsWhileWeSend | Self::ReadsOneByteASecond | Self::NeverOpensWindow => {
                WRITE_TIMEOUT
            }
            // Either the peer's Close is read (then the close timeout) or the stall
            // comes first (the write timeout).
            Self::NeverReadsAndSendsClose => WRITE_TIMEOUT.max(CLOSE_TIMEOUT),
            // The keepalive ping goes unanswered: interval, then timeout; the transport
            // is closed at once.
            Self::StopsMidFrame => KEEPALIVE.0 + KEEPALIVE.1,
            // A close (ours, the dropped reader's 1001, the shutdown's 1001) starts the
            // close timeout, after which the transport is closed whatever is unsent.
            Self::NeverAnswersOurClose
            | Self::SplitWriterWithoutReader
            | Self::CloseOnPeerThatNeverReads
            | Self::GracefulShutdown => CLOSE_TIMEOUT,
        }
    }

    /// What a cell asserts: the deadline plus [`SLACK`].
    pub fn bound(self) -> Duration {
        self.deadline() + SLACK
    }

    /// The request path: its first segment tells our side what to do
    /// (`servers::serve_websocket`, the duplex-mio handler, [`mio_client`]), the rest
    /// tells a hostile server which case it plays.
    fn path(self) -> String {
        let ours = match self {
            Self::NeverReadsWhileWeSend | Self::ReadsOneByteASecond => "flood",
            Self::NeverAnswersOurClose => "close",
            Self::SplitWriterWithoutReader => "split",
            Self::CloseOnPeerThatNeverReads => "fill-close",
            Self::NeverReadsAndSendsClose
            | Self::StopsMidFrame
            | Self::NeverOpensWindow
            | Self::GracefulShutdown => "echo",
        };
        format!("/{ours}/{:?}", self)
    }

    fn from_path(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|case| case.path() == path)
    }

    fn peer(self) -> Peer {
        match self {
            Self::NeverReadsWhileWeSend
            | Self::SplitWriterWithoutReader
            | Self::CloseOnPeerThatNeverReads
            | Self::GracefulShutdown => Peer::Holds,
            Self::NeverReadsAndSendsClose => Peer::SendsThenHolds { close: true },
            Self::NeverOpensWindow => Peer::SendsThenHolds { close: false },
            Self::NeverAnswersOurClose => Peer::ReadsAll,
            Self::StopsMidFrame => Peer::HalfFrame,
            Self::ReadsOneByteASecond => Peer::OneByteASecond,
        }
    }

    /// The peer's HTTP/2 SETTINGS_INITIAL_WINDOW_SIZE is 0.
    fn window_closed(self) -> bool {
        self == Self::NeverOpensWindow
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The table: whether `case` applies to `transport`, and why not where it does not.
pub fn applies(case: Case, transport: Transport) -> Result<(), &'static str> {
    use Transport::*;
    match (case, transport) {
        (Case::NeverOpensWindow, TokioH2Server | TokioH2Client) => Ok(()),
        (Case::NeverOpensWindow, _) => Err(
            "HTTP/2 flow control only: over TCP and TLS the peer's window is TCP's, and \
             'never reads' already closes it",
        ),
        (Case::SplitWriterWithoutReader, MioServer | MioClient) => Err(
            "duplex-mio has no halves: one handler (server) or one blocking value (client) \
             owns the whole connection",
        ),
        (Case::GracefulShutdown, MioClient) => Err(
            "the blocking client has no shutdown coordinator: its one connection belongs \
             to the caller, whose close() is 'close() on a peer that never reads'",
        ),
        _ => Ok(()),
    }
}

/// What a peer whose HTTP/2 window never opened saw of its stream after we let go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerSaw {
    /// RST_STREAM, after this long.
    Reset(Duration),
    /// END_STREAM, after this long.
    EndOfStream(Duration),
    /// Another error ending the stream or the connection (GOAWAY, TCP closed).
    Ended(String),
    /// Data, which a window of 0 forbids.
    Data,
    /// Nothing within 3 s: the stream is still open.
    Nothing,
}

/// One cell of the table, run.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Our side.
    pub transport: Transport,
    /// The peer.
    pub case: Case,
    /// How long our side took to let go; or what kept it (still held after its bound
    /// plus 3 s, or the case could not be set up).
    pub released: Result<Duration, String>,
    /// [`Case::NeverOpensWindow`]: what the peer saw of its stream after we let go.
    pub peer_saw: Option<PeerSaw>,
    /// How our side ended (the errors it reported), for the report.
    pub detail: String,
}

impl Outcome {
    /// The line printed for this cell.
    pub fn line(&self) -> String {
        let head = format!("DRIVER-KIT | {} | {}", self.transport, self.case);
        let bound = self.case.bound().as_secs_f64();
        let mut line = match &self.released {
            Ok(took) => format!(
                "{head} | released in {:.2} s (bound {bound} s)",
                took.as_secs_f64()
            ),
            Err(why) => format!("{head} | NOT released (bound {bound} s): {why}"),
        };
        if let Some(saw) = &self.peer_saw {
            line.push_str(&format!(" | peer's stream afterwards: {saw:?}"));
        }
        if !self.detail.is_empty() {
            line.push_str(&format!(" | {}", self.detail));
        }
        line
    }

    /// Panics unless our side let go within the bound.
    pub fn assert_released(&self) {
        match &self.released {
            Ok(took) => assert!(
                *took <= self.case.bound(),
                "{}: released after {took:?}, over the bound of {:?}",
                self.line(),
                self.case.bound()
            ),
            Err(why) => panic!("{}: {why}", self.line()),
        }
    }
}

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("driver-kit")
            .enable_all()
            .build()
            .expect("the kit's runtime")
    })
}

/// Runs every applicable cell once per process, in parallel, and prints the table
/// (`cargo test -p duplex-hostile --test driver_kit -- --nocapture` shows it).
pub fn results() -> &'static BTreeMap<(Transport, Case), Outcome> {
    static RESULTS: OnceLock<BTreeMap<(Transport, Case), Outcome>> = OnceLock::new();
    RESULTS.get_or_init(|| {
        crate::servers::raise_fd_limit(4096);
        let started = Instant::now();
        let outcomes: Vec<Outcome> = std::thread::scope(|scope| {
            let cells: Vec<_> = Transport::ALL
                .into_iter()
                .flat_map(|t| Case::ALL.into_iter().map(move |c| (t, c)))
                .filter(|(t, c)| applies(*c, *t).is_ok())
                .map(|(transport, case)| {
                    let thread = std::thread::Builder::new()
                        .name(format!("kit {transport} {case}"))
                        .spawn_scoped(scope, move || run_cell(transport, case))
                        .expect("a cell's thread");
                    (transport, case, thread)
                })
                .collect();
            // A cell that panics is a failed cell, not a failed table (which every
            // test would then run again).
            cells
                .into_iter()
                .map(|(transport, case, thread)| {
                    thread.join().unwrap_or_else(|_| Outcome {
                        transport,
                        case,
                        released: Err("the cell panicked".into()),
                        peer_saw: None,
                        detail: String::new(),
                    })
                })
                .collect()
        });
        let mut table = BTreeMap::new();
        for outcome in outcomes {
            table.insert((outcome.transport, outcome.case), outcome);
        }
        for transport in Transport::ALL {
            for case in Case::ALL {
                match (table.get(&(transport, case)), applies(case, transport)) {
                    (Some(outcome), _) => println!("{}", outcome.line()),
                    (None, Err(why)) => {
                        println!("DRIVER-KIT | {transport} | {case} | not applicable: {why}")
                    }
                    (None, Ok(())) => unreachable!("every applicable cell runs"),
                }
            }
        }
        println!(
            "DRIVER-KIT | the whole table took {:.1} s",
            started.elapsed().as_secs_f64()
        );
        table
    })
}

fn run_cell(transport: Transport, case: Case) -> Outcome {
    let mut outcome = Outcome {
        transport,
        case,
        released: Err("not run".into()),
        peer_saw: None,
        detail: String::new(),
    };
    let run = match (case, transport.is_server()) {
        (Case::GracefulShutdown, true) => server_shutdown_cell(transport, &mut outcome),
        (Case::GracefulShutdown, false) => client_shutdown_cell(transport, &mut outcome),
        (_, true) => server_cell(transport, case, &mut outcome),
        (_, false) => client_cell(transport, case, &mut outcome),
    };
    if let Err(error) = run {
        outcome.released = Err(error);
    }
    outcome
}

// ----- the hostile peer's side -----

/// A hostile peer's byte stream (TCP, TLS, or an HTTP/2 stream).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The hostile end of one WebSocket, after its handshake.
pub struct PeerEnd {
    /// The stream: frames written to it go to the server as they are.
    pub io: Box<dyn Io>,
    /// A client masks its frames.
    client: bool,
    /// What must live as long as the stream (an HTTP/2 client's request handle).
    _keep: Option<Box<dyn Send>>,
}

impl PeerEnd {
    fn frame(&self, first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = self.client.then_some(wire::CLIENT_MASK);
        wire::frame(first, payload, mask)
    }

    /// Misbehaves as `peer` until `done` turns true (our side let go) or
    /// [`MAX_HOLD`]; then, if `probe`, watches the stream for [`PROBE`].
    async fn misbehave(
        mut self,
        peer: Peer,
        mut done: watch::Receiver<bool>,
        probe: bool,
    ) -> Option<PeerSaw> {
        let frames: Vec<u8> = match peer {
            Peer::SendsThenHolds { close } => {
                let mut bytes = Vec::new();
                for _ in 0..5 {
                    bytes.extend(self.frame(wire::FIN | wire::BINARY, &[7; 16 << 10]));
                }
                if close {
                    let payload = wire::close_payload(Some(1000), b"");
                    bytes.extend(self.frame(wire::FIN | wire::CLOSE, &payload));
                }
                bytes
            }
            Peer::HalfFrame => {
                let mask = self.client.then_some(wire::CLIENT_MASK);
                let mut half = wire::header(wire::FIN | wire::BINARY, 1000, mask, false);
                half.extend_from_slice(&[0; 100]);
                half
            }
            Peer::Holds | Peer::ReadsAll | Peer::OneByteASecond => Vec::new(),
        };
        let io = &mut self.io;
        let acting = async move {
            if !frames.is_empty() && io.write_all(&frames).await.is_ok() {
                let _ = io.flush().await;
            }
            let mut buf = vec![0u8; 64 << 10];
            match peer {
                Peer::ReadsAll => while matches!(io.read(&mut buf).await, Ok(n) if n > 0) {},
                Peer::OneByteASecond => loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let one =
                        tokio::time::timeout(Duration::from_millis(100), io.read(&mut buf[..1]));
                    if matches!(one.await, Ok(Ok(0) | Err(_))) {
                        break;
                    }
                },
                _ => {}
            }
            std::future::pending::<()>().await
        };
        tokio::select! {
            _ = acting => {}
            _ = done.wait_for(|done| *done) => {}
            _ = tokio::time::sleep(MAX_HOLD) => {}
        }
        if !probe {
            return None;
        }
        let start = Instant::now();
        let mut byte = [0u8; 1];
        Some(
            match tokio::time::timeout(PROBE, self.io.read(&mut byte)).await {
                Ok(Ok(0)) => PeerSaw::EndOfStream(start.elapsed()),
                Ok(Ok(_)) => PeerSaw::Data,
                Ok(Err(error)) if error.kind() == io::ErrorKind::ConnectionReset => {
                    PeerSaw::Reset(start.elapsed())
                }
                Ok(Err(error)) => PeerSaw::Ended(error.to_string()),
                Err(_) => PeerSaw::Nothing,
            },
        )
    }
}

/// Reads an HTTP head (bounded); returns it, dropping whatever followed.
async fn read_head<S: AsyncRead + Unpin>(io: &mut S) -> io::Result<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < 64 << 10 {
        let n = io.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if let Some((head, _)) = wire::split_head(&got) {
            return Ok(head.to_vec());
        }
    }
    Err(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("no complete head: {:?}", String::from_utf8_lossy(&got)),
    ))
}

/// The receive buffer of every hostile peer's socket: what a peer does not read stalls
/// our output after a few KiB instead of the megabytes loopback buffers take, so our
/// output is really stuck (and duplex-mio's bounded [`FILL`] stays under its hard
/// write limit).
const PEER_RECEIVE_BUFFER: u32 = 4096;

/// A hostile client's TCP connection to `addr`.
async fn tcp_to(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(PEER_RECEIVE_BUFFER)?;
    let tcp = socket.connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// The hostile client's side of an HTTP/1.1 upgrade to `path`.
async fn upgrade<S: Io + 'static>(mut io: S, path: &str, extra: &str) -> io::Result<PeerEnd> {
    io.write_all(&wire::request(path, extra)).await?;
    io.flush().await?;
    let head = read_head(&mut io).await?;
    if wire::status_of(&head) != Some(101) {
        return Err(io::Error::other(format!(
            "not a 101: {}",
            String::from_utf8_lossy(&head)
        )));
    }
    Ok(PeerEnd {
        io: Box::new(io),
        client: true,
        _keep: None,
    })
}

/// The hostile client's extended CONNECT (RFC 8441) to `path` over cleartext HTTP/2,
/// with the `h2` crate; its streams' window is 0 if `window_closed`.
async fn extended_connect(
    tcp: TcpStream,
    path: &str,
    window_closed: bool,
    extra: Option<(&'static str, &'static str)>,
) -> io::Result<PeerEnd> {
    let addr = tcp.peer_addr()?;
    let mut builder = h2::client::Builder::new();
    if window_closed {
        builder.initial_window_size(0);
    }
    let (send, mut connection) = builder
        .handshake::<_, Bytes>(tcp)
        .await
        .map_err(io::Error::other)?;
    let ping = connection.ping_pong();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    // The server's SETTINGS (extended CONNECT allowed) come before the ping's answer.
    if let Some(mut ping) = ping {
        ping.ping(h2::Ping::opaque())
            .await
            .map_err(io::Error::other)?;
    }
    let mut send = send.ready().await.map_err(io::Error::other)?;
    let mut request = Request::builder()
        .method(Method::CONNECT)
        .version(Version::HTTP_2)
        .uri(format!("http://{addr}{path}"))
        .header("sec-websocket-version", "13");
    if let Some((name, value)) = extra {
        request = request.header(name, value);
    }
    let mut request = request.body(()).map_err(io::Error::other)?;
    request
        .extensions_mut()
        .insert(h2::ext::Protocol::from_static("websocket"));
    let (response, stream) = send
        .send_request(request, false)
        .map_err(io::Error::other)?;
    let response = response.await.map_err(io::Error::other)?;
    if response.status() != StatusCode::OK {
        return Err(io::Error::other(format!(
            "extended CONNECT answered {}",
            response.status()
        )));
    }
    Ok(PeerEnd {
        io: Box::new(H2Stream::new(stream, response.into_body())),
        client: true,
        _keep: Some(Box::new(send)),
    })
}

/// The hostile client for `case` against our server.
async fn dial(transport: Transport, server: &TestServer, case: Case) -> io::Result<PeerEnd> {
    let tcp = tcp_to(server.addr()).await?;
    let path = case.path();
    match transport {
        Transport::TokioTlsServer => {
            let pki = server
                .pki()
                .ok_or_else(|| io::Error::other("no certificate"))?;
            let name = ServerName::try_from("127.0.0.1").map_err(io::Error::other)?;
            let tls = TlsConnector::from(pki.client.clone())
                .connect(name, tcp)
                .await?;
            upgrade(tls, &path, "").await
        }
        Transport::TokioH2Server => extended_connect(tcp, &path, case.window_closed(), None).await,
        _ => upgrade(tcp, &path, "").await,
    }
}

/// A raw WebSocket client of `server` at `path`, over cleartext HTTP/2 (extended
/// CONNECT) when `http2`, else an HTTP/1.1 upgrade over TCP; it offers
/// permessage-deflate when `deflate`. What the caller writes goes to the server as it
/// is (masked frames, made with [`wire::client_frame`]).
pub async fn raw_client(
    server: &TestServer,
    http2: bool,
    path: &str,
    deflate: bool,
) -> io::Result<PeerEnd> {
    let tcp = tcp_to(server.addr()).await?;
    if http2 {
        let extra = deflate.then_some(("sec-websocket-extensions", "permessage-deflate"));
        extended_connect(tcp, path, false, extra).await
    } else {
        let extra = if deflate {
            "Sec-WebSocket-Extensions: permessage-deflate\r\n"
        } else {
            ""
        };
        upgrade(tcp, path, extra).await
    }
}

/// A hostile server for our clients: answers every WebSocket opening (HTTP/1.1 over TCP
/// or TLS, or extended CONNECT over cleartext HTTP/2, its streams' window 0 if
/// `window_closed`) and plays the case named by the request's path. Every peer's probe
/// result (HTTP/2 window case) goes to `saw`.
#[derive(Clone)]
struct HostileServer {
    addr: SocketAddr,
    saw: Arc<Mutex<Vec<PeerSaw>>>,
}

impl HostileServer {
    async fn start(
        transport: Transport,
        window_closed: bool,
        pki: &Pki,
        done: watch::Receiver<bool>,
    ) -> io::Result<Self> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        // Inherited by the accepted sockets.
        socket.set_recv_buffer_size(PEER_RECEIVE_BUFFER)?;
        socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let listener = socket.listen(64)?;
        let addr = listener.local_addr()?;
        let saw = Arc::new(Mutex::new(Vec::new()));
        let tls = TlsAcceptor::from(pki.server.clone());
        let server = Self {
            addr,
            saw: saw.clone(),
        };
        tokio::spawn(async move {
            let accepting = async {
                while let Ok((tcp, _)) = listener.accept().await {
                    let _ = tcp.set_nodelay(true);
                    let peer = Accepted {
                        saw: saw.clone(),
                        done: done.clone(),
                    };
                    match transport {
                        Transport::TokioTlsClient => {
                            let tls = tls.clone();
                            tokio::spawn(async move {
                                if let Ok(Ok(stream)) =
                                    tokio::time::timeout(SETUP, tls.accept(tcp)).await
                                {
                                    peer.answer_upgrade(stream).await;
                                }
                            });
                        }
                        Transport::TokioH2Client => {
                            tokio::spawn(peer.answer_connects(tcp, window_closed));
                        }
                        _ => {
                            tokio::spawn(peer.answer_upgrade(tcp));
                        }
                    }
                }
            };
            tokio::select! {
                _ = accepting => {}
                _ = tokio::time::sleep(MAX_HOLD) => {}
            }
        });
        Ok(server)
    }

    fn url(&self, case: Case, tls: bool) -> String {
        let scheme = if tls { "wss" } else { "ws" };
        format!("{scheme}://{}{}", self.addr, case.path())
    }
}

/// One connection accepted by a [`HostileServer`].
struct Accepted {
    saw: Arc<Mutex<Vec<PeerSaw>>>,
    done: watch::Receiver<bool>,
}

impl Accepted {
    async fn play(&self, end: PeerEnd, case: Case) {
        let probe = case.window_closed();
        if let Some(saw) = end.misbehave(case.peer(), self.done.clone(), probe).await {
            self.saw.lock().unwrap_or_else(|e| e.into_inner()).push(saw);
        }
    }

    async fn answer_upgrade<S: Io + 'static>(self, mut io: S) {
        let Ok(Ok(head)) = tokio::time::timeout(SETUP, read_head(&mut io)).await else {
            return;
        };
        let head = String::from_utf8_lossy(&head).into_owned();
        let path = head.split(' ').nth(1).unwrap_or("");
        let (Some(case), Some(key)) = (
            Case::from_path(path),
            wire::header_value(&head, "sec-websocket-key"),
        ) else {
            return;
        };
        if io
            .write_all(&wire::response_101(&wire::accept_key(key), ""))
            .await
            .is_err()
            || io.flush().await.is_err()
        {
            return;
        }
        let end = PeerEnd {
            io: Box::new(io),
            client: false,
            _keep: None,
        };
        self.play(end, case).await;
    }

    /// Serves an HTTP/2 connection with the `h2` crate: every extended CONNECT gets
    /// 200 and its case played on the stream. The connection is driven until our side
    /// let go and the probe ended (or [`MAX_HOLD`]).
    async fn answer_connects(self, tcp: TcpStream, window_closed: bool) {
        let mut builder = h2::server::Builder::new();
        builder.enable_connect_protocol();
        if window_closed {
            builder.initial_window_size(0);
        }
        let Ok(Ok(mut connection)) =
            tokio::time::timeout(SETUP, builder.handshake::<_, Bytes>(tcp)).await
        else {
            return;
        };
        let this = Arc::new(self);
        let mut done = this.done.clone();
        let serving = async {
            while let Some(Ok((request, mut respond))) = connection.accept().await {
                let Some(case) = Case::from_path(request.uri().path()) else {
                    continue;
                };
                let response = duplex_tokio::http::Response::builder()
                    .status(StatusCode::OK)
                    .body(())
                    .expect("a valid response");
                let Ok(send) = respond.send_response(response, false) else {
                    continue;
                };
                let end = PeerEnd {
                    io: Box::new(H2Stream::new(send, request.into_body())),
                    client: false,
                    _keep: None,
                };
                let this = this.clone();
                tokio::spawn(async move { this.play(end, case).await });
            }
        };
        tokio::select! {
            _ = serving => {}
            _ = async {
                let _ = done.wait_for(|done| *done).await;
                tokio::time::sleep(PROBE + Duration::from_secs(1)).await;
            } => {}
            _ = tokio::time::sleep(MAX_HOLD) => {}
        }
    }
}

// ----- our side -----

/// Polls `released` every 5 ms until it holds (returning when) or `until` passes.
fn wait_for(until: Instant, mut released: impl FnMut() -> bool) -> Option<Instant> {
    loop {
        if released() {
            return Some(Instant::now());
        }
        if Instant::now() > until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// When the misbehaviour our side must end began: the WebSocket's opening, or for
/// [`Case::CloseOnPeerThatNeverReads`] the `close` call.
fn measured_from(case: Case, stats: &Stats, opened: Instant) -> Result<Instant, String> {
    match case {
        Case::CloseOnPeerThatNeverReads => stats
            .close_called
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ok_or_else(|| "our side never called close".to_owned()),
        _ => Ok(opened),
    }
}

/// From `start` to `end`; an error if the release came first (a connection that ended
/// before its `close` call was not released by it).
fn since(start: Instant, end: Instant) -> Result<Duration, String> {
    end.checked_duration_since(start).ok_or_else(|| {
        format!(
            "released {:.2} s before the measured call",
            (start - end).as_secs_f64()
        )
    })
}

fn errors_of(stats: &Stats) -> String {
    match stats.recent_errors().last() {
        Some(last) => format!("ended by: {last}"),
        None => String::new(),
    }
}

fn start_server(transport: Transport) -> io::Result<TestServer> {
    let limits = limits();
    match transport {
        Transport::TokioTcpServer => TestServer::start_tokio(TokioTransport::Tcp, &limits),
        Transport::TokioTlsServer => TestServer::start_tokio(TokioTransport::Tls, &limits),
        Transport::TokioH2Server => TestServer::start_tokio(TokioTransport::Http2, &limits),
        _ => TestServer::start(Kind::Mio, &limits),
    }
}

/// What duplex-mio sends a flooded peer: under the 1 MiB hard write limit, over what
/// [`PEER_RECEIVE_BUFFER`] and our send buffer take, so that the connection is stuck
/// and a deadline, not the hard limit, has to end it.
const FILL: u64 = 12 * FLOOD_MESSAGE as u64;

/// duplex-mio: what its handler cannot do by itself, from another thread (`case` `None`:
/// the shutdown cell). Flooded peers are published [`FILL`]; `/fill-close` is then
/// closed with [`TestServer::close_marked`] (in the shutdown cell, the shutdown closes
/// it).
fn feed_mio(server: &TestServer, case: Option<Case>, stop: &AtomicBool) {
    match case {
        None => {
            server.flood_while(FILL, stop);
        }
        Some(Case::CloseOnPeerThatNeverReads) => {
            server.flood_while(FILL, stop);
            std::thread::sleep(Duration::from_millis(300));
            server.close_marked();
        }
        Some(case) if behaviour(&case.path()) == "flood" => {
            server.flood_while(FILL, stop);
        }
        Some(_) => {}
    }
}

fn server_cell(transport: Transport, case: Case, outcome: &mut Outcome) -> Result<(), String> {
    let server = start_server(transport).map_err(|e| format!("start the server: {e}"))?;
    let (done, peer_done) = watch::channel(false);
    let end = runtime()
        .block_on(async { tokio::time::timeout(SETUP, dial(transport, &server, case)).await })
        .map_err(|_| "the handshake timed out".to_owned())?
        .map_err(|e| format!("the handshake failed: {e}"))?;
    let opened = Instant::now();
    let peer = runtime().spawn(end.misbehave(case.peer(), peer_done, case.window_closed()));
    let stop = AtomicBool::new(false);
    let stats = server.stats();
    let released = std::thread::scope(|scope| {
        if transport == Transport::MioServer {
            scope.spawn(|| feed_mio(&server, Some(case), &stop));
        }
        let until = opened + SETUP + case.bound() + OVERTIME;
        let released = wait_for(until, || {
            server.open_connections() == 0
                && (transport != Transport::MioServer || stats.closed.load(Ordering::Acquire) == 1)
        });
        stop.store(true, Ordering::Release);
        released
    });
    let _ = done.send(true);
    outcome.peer_saw = runtime()
        .block_on(async { tokio::time::timeout(PROBE * 2, peer).await })
        .ok()
        .and_then(Result::ok)
        .flatten();
    outcome.detail = errors_of(stats);
    let start = measured_from(case, stats, opened)?;
    outcome.released = match released {
        Some(at) => since(start, at),
        None => Err(format!(
            "{} connections still held {:.1} s after the start",
            server.open_connections(),
            start.elapsed().as_secs_f64()
        )),
    };
    Ok(())
}

fn server_shutdown_cell(transport: Transport, outcome: &mut Outcome) -> Result<(), String> {
    let server = start_server(transport).map_err(|e| format!("start the server: {e}"))?;
    let cases: Vec<Case> = Case::ALL
        .into_iter()
        .filter(|case| *case != Case::GracefulShutdown && applies(*case, transport).is_ok())
        .collect();
    let (done, peer_done) = watch::channel(false);
    let ends = runtime().block_on(async {
        let mut ends = Vec::new();
        for case in &cases {
            let end = tokio::time::timeout(SETUP, dial(transport, &server, *case))
                .await
                .map_err(|_| format!("{case}: the handshake timed out"))?
                .map_err(|e| format!("{case}: the handshake failed: {e}"))?;
            ends.push((end, *case));
        }
        Ok::<_, String>(ends)
    })?;
    let peers: Vec<_> = ends
        .into_iter()
        .map(|(end, case)| runtime().spawn(end.misbehave(case.peer(), peer_done.clone(), false)))
        .collect();
    let stop = AtomicBool::new(false);
    let shut = std::thread::scope(|scope| {
        if transport == Transport::MioServer {
            scope.spawn(|| feed_mio(&server, None, &stop));
        }
        std::thread::sleep(SETTLE);
        let held = server.open_connections();
        let shut =
            server.shutdown_gracefully(SHUTDOWN_GRACE, Case::GracefulShutdown.bound() + OVERTIME);
        stop.store(true, Ordering::Release);
        (held, shut)
    });
    let _ = done.send(true);
    runtime().block_on(async {
        for peer in peers {
            let _ = tokio::time::timeout(PROBE, peer).await;
        }
    });
    let (held, shut) = shut;
    let graceful = shut?;
    outcome.released = Ok(graceful.took);
    outcome.detail = match graceful.report {
        Some(report) => format!(
            "{held} open at the call; report: {} closed, {} dropped",
            report.closed, report.dropped
        ),
        None => format!(
            "{held} open at the call; on_close ran {} times",
            server.stats().closed.load(Ordering::Acquire)
        ),
    };
    Ok(())
}

/// duplex-tokio's client for `case`, connected to `server`; counts itself in
/// `connected` once its handshake is done, and is tracked by `shutdown` from then on.
async fn tokio_client(
    transport: Transport,
    server: &HostileServer,
    case: Case,
    pki: &Pki,
    stats: Arc<Stats>,
    shutdown: Option<(Shutdown, Arc<AtomicUsize>)>,
) -> Result<(Instant, Instant), String> {
    let (shutdown, connected) = shutdown.unzip();
    let opened = || {
        if let Some(connected) = &connected {
            connected.fetch_add(1, Ordering::AcqRel);
        }
        Instant::now()
    };
    let config = duplex_tokio::Config::default()
        .engine(limits().engine())
        .handshake_timeout(SETUP)
        .tls_client_config(pki.client.clone());
    let path = case.path();
    let tls = transport == Transport::TokioTlsClient;
    let request = ClientRequest::new(&server.url(case, tls)).map_err(|e| e.to_string())?;
    let start;
    match transport {
        Transport::TokioH2Client => {
            let tcp = tcp_to(server.addr).await.map_err(|e| e.to_string())?;
            let connection = Http2Connection::handshake(tcp, &config)
                .await
                .map_err(|e| format!("HTTP/2: {e}"))?;
            let (ws, _) = connection
                .websocket(request, config)
                .await
                .map_err(|e| format!("extended CONNECT: {e}"))?;
            start = opened();
            serve_websocket(ws, &path, &stats, shutdown.as_ref()).await;
        }
        _ => {
            let (ws, _) = duplex_tokio::connect_with(request, config)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            start = opened();
            serve_websocket(ws, &path, &stats, shutdown.as_ref()).await;
        }
    }
    let ended = Instant::now();
    Ok((measured_from(case, &stats, start)?, ended))
}

/// duplex-mio's blocking client doing what `case` asks; returns when the measured
/// call began, and a note on how it ended.
fn mio_client(addr: SocketAddr, case: Case) -> Result<(Instant, String), String> {
    use duplex_mio::client::{ClientConfig, connect_with};
    let config = ClientConfig::default()
        .engine(limits().engine())
        .connect_timeout(SETUP)
        .handshake_timeout(SETUP);
    let path = case.path();
    let request = ClientRequest::new(&format!("ws://{addr}{path}")).map_err(|e| e.to_string())?;
    let mut ws = connect_with(request, &config).map_err(|e| format!("connect: {e}"))?;
    let mut start = Instant::now();
    let chunk = Bytes::from(vec![0x5A; FLOOD_MESSAGE]);
    let ended = match behaviour(&path) {
        "flood" => (0..1_000_000)
            .find_map(|_| ws.send(Message::Binary(chunk.clone())).err())
            .map(|e| e.to_string()),
        "close" => ws
            .close(Some(CloseFrame::new(CloseCode::Normal, "bye")))
            .err()
            .map(|e| e.to_string()),
        "fill-close" => {
            // Sends until a send blocks for 200 ms (the socket takes no more), then
            // closes behind that output without a write timeout of its own.
            let _ = ws.set_write_timeout(Some(Duration::from_millis(200)));
            let stalled = (0..10_000).find_map(|_| ws.send(Message::Binary(chunk.clone())).err());
            match stalled {
                Some(duplex_core::Error::Io(error)) if error.kind() == io::ErrorKind::TimedOut => {}
                other => return Err(format!("filling ended with {other:?}")),
            }
            let _ = ws.set_write_timeout(None);
            start = Instant::now();
            ws.close(None).err().map(|e| e.to_string())
        }
        _ => loop {
            match ws.recv() {
                Ok(message) if message.is_data() => {
                    if let Err(error) = ws.send(message) {
                        break Some(error.to_string());
                    }
                }
                Ok(_) => {}
                Err(error) => break Some(error.to_string()),
            }
        },
    };
    let how = ended.unwrap_or_else(|| "returned Ok".into());
    Ok((
        start,
        format!("ended by: {how}; closed: {}", ws.is_closed()),
    ))
}

fn client_cell(transport: Transport, case: Case, outcome: &mut Outcome) -> Result<(), String> {
    let pki = Pki::new().map_err(|e| e.to_string())?;
    let (done, peer_done) = watch::channel(false);
    let server = runtime()
        .block_on(HostileServer::start(
            transport,
            case.window_closed(),
            &pki,
            peer_done,
        ))
        .map_err(|e| format!("start the hostile server: {e}"))?;
    let wait = SETUP + case.bound() + OVERTIME;
    let result = if transport == Transport::MioClient {
        let addr = server.addr;
        let client = std::thread::spawn(move || mio_client(addr, case));
        let finished = wait_for(Instant::now() + wait, || client.is_finished());
        // Letting the peer go ends a call still blocked, so the thread can be joined.
        let _ = done.send(true);
        match finished {
            Some(at) => match client.join() {
                Ok(Ok((start, how))) => {
                    outcome.detail = how;
                    since(start, at)
                }
                Ok(Err(error)) => Err(error),
                Err(_) => Err("the client thread panicked".into()),
            },
            None => Err(format!("the blocking call had not returned after {wait:?}")),
        }
    } else {
        let stats = Arc::new(Stats::default());
        let task = runtime().spawn({
            let (server, pki, stats) = (server.clone(), pki.clone(), stats.clone());
            async move { tokio_client(transport, &server, case, &pki, stats, None).await }
        });
        let joined = runtime().block_on(async { tokio::time::timeout(wait, task).await });
        let _ = done.send(true);
        outcome.detail = errors_of(&stats);
        match joined {
            Ok(Ok(Ok((start, ended)))) => since(start, ended),
            Ok(Ok(Err(error))) => Err(error),
            Ok(Err(error)) => Err(format!("the client task failed: {error}")),
            Err(_) => Err(format!("the client task still ran after {wait:?}")),
        }
    };
    outcome.released = result;
    if case.window_closed() {
        // The probe takes up to PROBE after `done`.
        let until = Instant::now() + PROBE + Duration::from_secs(1);
        wait_for(until, || {
            !server
                .saw
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
        });
        outcome.peer_saw = server
            .saw
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first()
            .cloned();
    }
    Ok(())
}

fn client_shutdown_cell(transport: Transport, outcome: &mut Outcome) -> Result<(), String> {
    let pki = Pki::new().map_err(|e| e.to_string())?;
    let cases: Vec<Case> = Case::ALL
        .into_iter()
        .filter(|case| *case != Case::GracefulShutdown && applies(*case, transport).is_ok())
        .collect();
    let (done, peer_done) = watch::channel(false);
    let shutdown = Shutdown::new();
    let connected = Arc::new(AtomicUsize::new(0));
    let stats = Arc::new(Stats::default());
    let (open, closed_window) = runtime()
        .block_on(async {
            let open = HostileServer::start(transport, false, &pki, peer_done.clone()).await?;
            let closed = HostileServer::start(transport, true, &pki, peer_done).await?;
            Ok::<_, io::Error>((open, closed))
        })
        .map_err(|e| format!("start the hostile servers: {e}"))?;
    let tasks: Vec<_> = cases
        .iter()
        .map(|case| {
            let server = if case.window_closed() {
                &closed_window
            } else {
                &open
            }
            .clone();
            let (case, pki, stats) = (*case, pki.clone(), stats.clone());
            let tracking = Some((shutdown.clone(), connected.clone()));
            runtime().spawn(async move {
                tokio_client(transport, &server, case, &pki, stats, tracking).await
            })
        })
        .collect();
    let all = wait_for(Instant::now() + SETUP, || {
        connected.load(Ordering::Acquire) == cases.len()
    });
    if all.is_none() {
        let _ = done.send(true);
        return Err(format!(
            "only {} of {} clients connected",
            connected.load(Ordering::Acquire),
            cases.len()
        ));
    }
    std::thread::sleep(SETTLE);
    let held = shutdown.open_connections();
    let start = Instant::now();
    let wait = Case::GracefulShutdown.bound() + OVERTIME;
    let ended = runtime().block_on(async {
        let report = tokio::time::timeout(wait, shutdown.shutdown(SHUTDOWN_GRACE)).await;
        for task in tasks {
            let left = wait.saturating_sub(start.elapsed());
            if tokio::time::timeout(left, task).await.is_err() {
                return Err(format!(
                    "a client task still ran after {wait:?} ({report:?})"
                ));
            }
        }
        report.map_err(|_| format!("Shutdown::shutdown still ran after {wait:?}"))
    });
    let took = start.elapsed();
    let _ = done.send(true);
    let report = ended?;
    outcome.released = Ok(took);
    outcome.detail = format!(
        "{held} open at the call; report: {} closed, {} dropped",
        report.closed, report.dropped
    );
    Ok(())
}
