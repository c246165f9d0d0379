//! The servers under attack, started with small limits, and the attacker's tools.
//!
//! Both servers behave the same, chosen by the first segment of the request's path: on
//! `/` (or any other) they echo text and binary messages up to 64 KiB and answer larger
//! ones with the text `received N bytes`; on `/flood` they push 64 KiB binary messages at
//! the client (duplex-tokio: a task that `send`s in a loop; duplex-mio: the `flood`
//! topic, which [`TestServer::flood`] publishes to); on `/close` they close at once; on
//! `/fill-close` they send until the transport takes no more, then close (duplex-mio:
//! flooded like `/flood` until [`TestServer::close_marked`]); on `/split` (duplex-tokio)
//! the reader half is dropped while the writer floods.
//!
//! duplex-tokio's server runs over plain TCP, TLS or HTTP/2 ([`TokioTransport`]), and
//! tracks every WebSocket with a `duplex_tokio::Shutdown`;
//! [`TestServer::shutdown_gracefully`] shuts either server down and times it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use duplex_core::Message;
use duplex_handshake::{DeflateConfig, Limits};
use duplex_tokio::tokio_rustls::rustls;
use duplex_tokio::tokio_rustls::rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use duplex_tokio::{Shutdown, WebSocketStream};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::wire;

/// The limits both servers run with in the attack suite.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// `max_frame_size`.
    pub max_frame_size: usize,
    /// `max_message_size`.
    pub max_message_size: usize,
    /// `max_fragments`.
    pub max_fragments: usize,
    /// `max_decompressed_size` (permessage-deflate).
    pub max_decompressed_size: usize,
    /// duplex-tokio's `max_write_buffer`; duplex-mio's soft write limit.
    pub write_buffer: usize,
    /// duplex-mio's hard write limit.
    pub write_buffer_hard: usize,
    /// How long the opening handshake may take.
    pub handshake_timeout: Duration,
    /// The close handshake timeout.
    pub close_timeout: Duration,
    /// The write-stall timeout.
    pub write_timeout: Option<Duration>,
    /// Keepalive interval and timeout.
    pub keepalive: Option<(Duration, Duration)>,
    /// The handshake head limits.
    pub head: Limits,
    /// permessage-deflate policy (`None`: off).
    pub deflate: Option<DeflateConfig>,
    /// duplex-mio's shutdown timeout (duplex-tokio's grace is the caller's, given to
    /// [`TestServer::shutdown_gracefully`]).
    pub shutdown_timeout: Duration,
    /// The memory budget the server's connections share (`None`: the process default).
    pub memory_budget: Option<duplex_core::MemoryBudget>,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_frame_size: 64 << 10,
            max_message_size: 256 << 10,
            max_fragments: 1000,
            max_decompressed_size: 256 << 10,
            write_buffer: 256 << 10,
            write_buffer_hard: 1 << 20,
            handshake_timeout: Duration::from_secs(1),
            close_timeout: Duration::from_secs(1),
            write_timeout: Some(duplex_core::DEFAULT_WRITE_TIMEOUT),
            keepalive: Some(duplex_core::DEFAULT_KEEPALIVE),
            head: Limits {
                max_head_size: 128 << 10,
                max_headers: 64,
            },
            deflate: Some(DeflateConfig::default()),
            shutdown_timeout: Duration::from_secs(1),
            memory_budget: None,
        }
    }
}

impl ServerLimits {
    /// The engine configuration these limits make (servers and the driver kit's clients).
    pub fn engine(&self) -> duplex_core::EngineConfig {
        let config = match self.keepalive {
            Some((interval, timeout)) => {
                duplex_core::EngineConfig::default().keepalive(interval, timeout)
            }
            None => duplex_core::EngineConfig::default().no_keepalive(),
        };
        let config = match &self.memory_budget {
            Some(budget) => config.memory_budget(budget.clone()),
            None => config,
        };
        config
            .write_timeout(self.write_timeout)
            .max_frame_size(self.max_frame_size)
            .max_message_size(self.max_message_size)
            .max_fragments(self.max_fragments)
            .max_decompressed_size(self.max_decompressed_size)
            .max_write_buffer(self.write_buffer)
            .close_timeout(self.close_timeout)
            .linger(duplex_core::Linger {
                time: Duration::from_millis(500),
                max_bytes: 1 << 20,
            })
    }
}

/// Which server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// duplex-tokio, driven through its library API on a multi-threaded runtime.
    Tokio,
    /// duplex-mio's `Server` on its own thread, two workers.
    Mio,
}

/// What a duplex-tokio test server's WebSockets run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokioTransport {
    /// Plain TCP, accepted with `duplex_tokio::accept_with`.
    Tcp,
    /// TLS (tokio-rustls with a self-signed certificate for 127.0.0.1, see
    /// [`TestServer::pki`]), then `accept_with` over the TLS stream.
    Tls,
    /// Cleartext HTTP/2 (prior knowledge) served by hyper with extended CONNECT enabled
    /// (RFC 8441): each WebSocket is a stream upgraded with `duplex_tokio::hyper`.
    /// HTTP/1.1 upgrades on the same port work too.
    Http2,
}

/// A self-signed certificate for 127.0.0.1, with the rustls configurations that serve it
/// and trust it.
#[derive(Clone, Debug)]
pub struct Pki {
    /// A server configuration presenting the certificate.
    pub server: Arc<rustls::ServerConfig>,
    /// A client configuration trusting only it.
    pub client: Arc<rustls::ClientConfig>,
}

impl Pki {
    /// A fresh certificate and key.
    pub fn new() -> io::Result<Self> {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
            .map_err(io::Error::other)?;
        let cert: CertificateDer<'static> = certified.cert.der().clone();
        let key = PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key.into())
            .map_err(io::Error::other)?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).map_err(io::Error::other)?;
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}

impl Kind {
    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tokio => "tokio",
            Self::Mio => "mio",
        }
    }
}

/// What a server saw, counted.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections held (duplex-tokio: from TCP accept to the end of the task; over
    /// HTTP/2, each WebSocket from its upgrade to the end of its task).
    pub open: AtomicUsize,
    /// Handshakes that failed (duplex-tokio only; duplex-mio answers them internally).
    pub handshake_failures: AtomicUsize,
    /// Connections that failed with an error after the handshake.
    pub errors: AtomicUsize,
    /// duplex-mio connections closed for passing the hard write limit.
    pub overflows: AtomicUsize,
    /// Bytes of flood messages queued for `/flood` clients.
    pub flood_bytes: AtomicU64,
    /// Data messages received.
    pub messages: AtomicU64,
    /// duplex-mio connections whose `on_close` ran.
    pub closed: AtomicUsize,
    /// When a `/fill-close` connection was closed (duplex-tokio: when its task called
    /// `close`; duplex-mio: [`TestServer::close_marked`]).
    pub close_called: Mutex<Option<Instant>>,
    /// duplex-mio's `/fill-close` connections, for [`TestServer::close_marked`].
    marked: Mutex<Vec<duplex_mio::ConnectionId>>,
    /// The last few errors, for diagnostics.
    pub last_errors: Mutex<Vec<String>>,
}

impl Stats {
    /// Counts an error and keeps its text among the last few.
    pub fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut last = lock(&self.last_errors);
        if last.len() >= 16 {
            last.remove(0);
        }
        last.push(what);
    }

    /// The last errors recorded, most recent last.
    pub fn recent_errors(&self) -> Vec<String> {
        lock(&self.last_errors).clone()
    }
}

/// The size of each flood message.
pub const FLOOD_MESSAGE: usize = 64 << 10;
/// Messages larger than this are answered with their size instead of an echo.
pub const ECHO_LIMIT: usize = 64 << 10;

fn reply_to(message: Message) -> Option<Message> {
    if !message.is_data() {
        return None;
    }
    let len = message.payload().len();
    Some(if len <= ECHO_LIMIT {
        message
    } else {
        Message::text(format!("received {len} bytes"))
    })
}

enum Inner {
    Tokio {
        runtime: Option<tokio::runtime::Runtime>,
        shutdown: Shutdown,
    },
    Mio {
        sender: duplex_mio::Sender,
        shutdown: duplex_mio::ShutdownHandle,
        thread: Mutex<Option<JoinHandle<io::Result<()>>>>,
    },
}

/// A running server; stopped when dropped.
pub struct TestServer {
    kind: Kind,
    addr: SocketAddr,
    stats: Arc<Stats>,
    pki: Option<Pki>,
    inner: Inner,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("kind", &self.kind)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl TestServer {
    /// Starts a server of `kind` on 127.0.0.1 (a free port) with `limits`.
    pub fn start(kind: Kind, limits: &ServerLimits) -> io::Result<Self> {
        match kind {
            Kind::Tokio => Self::start_tokio(TokioTransport::Tcp, limits),
            Kind::Mio => Self::start_mio(limits),
        }
    }

    /// Starts a duplex-tokio server whose WebSockets run over `transport`.
    pub fn start_tokio(transport: TokioTransport, limits: &ServerLimits) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let listener = listen()?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(Stats::default());
        let shutdown = Shutdown::new();
        let pki = match transport {
            TokioTransport::Tls => Some(Pki::new()?),
            TokioTransport::Tcp | TokioTransport::Http2 => None,
        };
        let serving = Serving {
            config: duplex_tokio::Config::default()
                .engine(limits.engine())
                .handshake_limits(limits.head)
                .handshake_timeout(limits.handshake_timeout)
                .deflate(limits.deflate),
            handshake_timeout: limits.handshake_timeout,
            stats: stats.clone(),
            shutdown: shutdown.clone(),
            tls: pki
                .as_ref()
                .map(|pki| duplex_tokio::tokio_rustls::TlsAcceptor::from(pki.server.clone())),
        };
        runtime.spawn(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    // EMFILE and the like: wait instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let serving = serving.clone();
                match transport {
                    TokioTransport::Tcp | TokioTransport::Tls => {
                        let guard = serving.hold();
                        tokio::spawn(async move {
                            let _guard = guard;
                            bounded(serving.connection(tcp)).await;
                        });
                    }
                    // The WebSockets are counted, each from its upgrade to the end of its
                    // task, not the HTTP/2 connection that carries them.
                    TokioTransport::Http2 => {
                        tokio::spawn(bounded(serving.http2(tcp)));
                    }
                }
            }
        });
        Ok(Self {
            kind: Kind::Tokio,
            addr,
            stats,
            pki,
            inner: Inner::Tokio {
                runtime: Some(runtime),
                shutdown,
            },
        })
    }

    fn start_mio(limits: &ServerLimits) -> io::Result<Self> {
        let config = duplex_mio::ServerConfig::default()
            .workers(2)
            .handshake_timeout(limits.handshake_timeout)
            .shutdown_timeout(limits.shutdown_timeout)
            .handshake_limits(limits.head)
            .engine(limits.engine())
            .write_buffer_limits(limits.write_buffer, limits.write_buffer_hard)
            .deflate(limits.deflate);
        let server = duplex_mio::Server::from_listener(listen()?, config)?;
        let addr = server.local_addr()?;
        let stats = Arc::new(Stats::default());
        let sender = server.sender();
        let shutdown = server.shutdown_handle();
        let handler_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("hostile-mio-server".into())
            .spawn(move || {
                server.run(|_| MioHandler {
                    stats: handler_stats.clone(),
                })
            })?;
        Ok(Self {
            kind: Kind::Mio,
            addr,
            stats,
            pki: None,
            inner: Inner::Mio {
                sender,
                shutdown,
                thread: Mutex::new(Some(thread)),
            },
        })
    }

    /// Which server this is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://` URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// What it counted.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The certificate of a TLS server, for its clients.
    pub fn pki(&self) -> Option<&Pki> {
        self.pki.as_ref()
    }

    /// Sockets the server holds now: open connections and handshakes in progress
    /// (duplex-tokio over HTTP/2: WebSockets, see [`Stats::open`]).
    pub fn open_connections(&self) -> usize {
        match &self.inner {
            Inner::Tokio { .. } => self.stats.open.load(Ordering::Acquire),
            Inner::Mio { sender, .. } => sender.connection_count(),
        }
    }

    /// Waits up to `timeout` until the server holds at most `n` sockets; returns how long
    /// it took, or the count it was stuck at.
    pub fn wait_open_at_most(&self, n: usize, timeout: Duration) -> Result<Duration, usize> {
        let start = Instant::now();
        loop {
            let open = self.open_connections();
            if open <= n {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                return Err(open);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// duplex-mio: publishes 64 KiB messages to the `flood` topic for up to `duration` or
    /// until a connection overflowed; returns the bytes published. duplex-tokio floods
    /// `/flood` clients by itself and this returns 0.
    pub fn flood(&self, duration: Duration) -> u64 {
        let start = Instant::now();
        self.publish_flood(|_| start.elapsed() < duration)
    }

    /// [`flood`](Self::flood) until `max_bytes` are published or `stop` is set.
    pub fn flood_while(&self, max_bytes: u64, stop: &AtomicBool) -> u64 {
        self.publish_flood(|published| published < max_bytes && !stop.load(Ordering::Acquire))
    }

    fn publish_flood(&self, go_on: impl Fn(u64) -> bool) -> u64 {
        let Inner::Mio { sender, .. } = &self.inner else {
            return 0;
        };
        let chunk = Bytes::from(vec![0x5A; FLOOD_MESSAGE]);
        let mut published = 0;
        while go_on(published) && self.stats.overflows.load(Ordering::Acquire) == 0 {
            match sender.publish("flood", Message::Binary(chunk.clone())) {
                Ok(()) => {
                    published += FLOOD_MESSAGE as u64;
                    self.stats
                        .flood_bytes
                        .fetch_add(FLOOD_MESSAGE as u64, Ordering::Relaxed);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
            // Let the worker write between publications.
            std::thread::sleep(Duration::from_micros(200));
        }
        published
    }
}

impl TestServer {
    /// duplex-mio: closes (1000) the `/fill-close` connections opened so far and records
    /// when in [`Stats::close_called`]; returns how many. duplex-tokio's close them by
    /// themselves and this returns 0.
    pub fn close_marked(&self) -> usize {
        let Inner::Mio { sender, .. } = &self.inner else {
            return 0;
        };
        let ids = std::mem::take(&mut *lock(&self.stats.marked));
        *lock(&self.stats.close_called) = Some(Instant::now());
        for id in &ids {
            let _ = sender.close(*id, duplex_core::CloseCode::Normal, "bye");
        }
        ids.len()
    }

    /// Shuts the server down gracefully and waits, up to `limit`, until it let go of
    /// every connection. duplex-tokio: `Shutdown::shutdown(grace)` returned and every
    /// WebSocket task ended; duplex-mio: `ShutdownHandle::shutdown`, then `run`
    /// returned (its grace is [`ServerLimits::shutdown_timeout`]). Errors with what was
    /// still held at `limit`.
    pub fn shutdown_gracefully(
        &self,
        grace: Duration,
        limit: Duration,
    ) -> Result<Graceful, String> {
        let start = Instant::now();
        match &self.inner {
            Inner::Tokio { runtime, shutdown } => {
                let runtime = runtime.as_ref().ok_or("the server is stopped")?;
                let (done, report) = std::sync::mpsc::channel();
                let shutdown = shutdown.clone();
                runtime.spawn(async move {
                    let _ = done.send(shutdown.shutdown(grace).await);
                });
                let report = report.recv_timeout(limit).map_err(|_| {
                    format!("Shutdown::shutdown({grace:?}) still running after {limit:?}")
                })?;
                self.wait_open_at_most(0, limit.saturating_sub(start.elapsed()))
                    .map_err(|open| {
                        format!("{open} WebSocket tasks still running after {limit:?} ({report:?})")
                    })?;
                Ok(Graceful {
                    took: start.elapsed(),
                    report: Some(report),
                })
            }
            Inner::Mio {
                shutdown,
                thread,
                sender,
            } => {
                shutdown.shutdown();
                let mut thread = lock(thread);
                while thread.as_ref().is_some_and(|t| !t.is_finished()) {
                    if start.elapsed() > limit {
                        return Err(format!(
                            "Server::run still running after {limit:?}, {} connections held",
                            sender.connection_count()
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                let took = start.elapsed();
                if let Some(thread) = thread.take() {
                    match thread.join() {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => return Err(format!("Server::run failed: {error}")),
                        Err(_) => return Err("the server thread panicked".into()),
                    }
                }
                Ok(Graceful { took, report: None })
            }
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        match &mut self.inner {
            Inner::Tokio { runtime, .. } => {
                if let Some(runtime) = runtime.take() {
                    runtime.shutdown_timeout(Duration::from_secs(1));
                }
            }
            Inner::Mio {
                shutdown, thread, ..
            } => {
                shutdown.shutdown();
                if let Some(thread) = lock(thread).take() {
                    // Bounded: a server that does not stop is left behind rather than
                    // hanging the test (which then fails on what it measured).
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while !thread.is_finished() && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    if thread.is_finished() {
                        let _ = thread.join();
                    }
                }
            }
        }
    }
}

/// How a graceful shutdown went.
#[derive(Debug)]
pub struct Graceful {
    /// From the call until the server held no WebSocket (duplex-mio: until `run`
    /// returned).
    pub took: Duration,
    /// duplex-tokio's report (`None` for duplex-mio).
    pub report: Option<duplex_tokio::ShutdownReport>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The listen backlog of both test servers. `std::net::TcpListener::bind` (and so
/// `duplex_mio::Server::bind`) uses 128: a burst of 1,000 connections then overflows the
/// accept queue, the kernel drops SYNs and clients stall for 1-3 s in `connect`.
pub const BACKLOG: i32 = 4096;

/// A listener on a free port of 127.0.0.1 with a [`BACKLOG`]-deep accept queue.
fn listen() -> io::Result<TcpListener> {
    use std::os::fd::AsRawFd;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    // Listening again on a listening socket only changes its backlog (Linux).
    // SAFETY: a valid socket descriptor.
    if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(listener)
}

struct OpenGuard(Arc<Stats>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Every connection's life is bounded, whatever the peer does.
async fn bounded<F: std::future::Future>(serving: F) {
    let _ = tokio::time::timeout(Duration::from_secs(120), serving).await;
}

fn choose(offer: &duplex_tokio::ClientOffer) -> duplex_tokio::Acceptance {
    let mut acceptance = duplex_tokio::Acceptance::default();
    if let Some(protocol) = offer.select_protocol(&["chat"]) {
        acceptance = acceptance.protocol(protocol);
    }
    acceptance
}

/// What every connection task of a duplex-tokio test server shares.
#[derive(Clone)]
struct Serving {
    config: duplex_tokio::Config,
    handshake_timeout: Duration,
    stats: Arc<Stats>,
    shutdown: Shutdown,
    tls: Option<duplex_tokio::tokio_rustls::TlsAcceptor>,
}

impl Serving {
    /// Counts a connection in [`Stats::open`] until the guard is dropped.
    fn hold(&self) -> OpenGuard {
        self.stats.open.fetch_add(1, Ordering::AcqRel);
        OpenGuard(self.stats.clone())
    }

    /// TCP or TLS: the WebSocket handshake on the stream, then the WebSocket.
    async fn connection(&self, tcp: tokio::net::TcpStream) {
        match &self.tls {
            None => self.accept(tcp).await,
            Some(acceptor) => {
                match tokio::time::timeout(self.handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => self.accept(tls).await,
                    _ => {
                        self.stats
                            .handshake_failures
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    async fn accept<S>(&self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut path = String::new();
        let accepted = duplex_tokio::accept_with(stream, self.config.clone(), |request, offer| {
            path = request.uri().path().to_owned();
            Ok(choose(offer))
        })
        .await;
        match accepted {
            Ok(ws) => serve_websocket(ws, &path, &self.stats, Some(&self.shutdown)).await,
            Err(_) => {
                self.stats
                    .handshake_failures
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// HTTP/2 (and HTTP/1.1) served by hyper; every upgrade gets a task of its own.
    async fn http2(self, tcp: tokio::net::TcpStream) {
        let serving = self.clone();
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                let path = request.uri().path().to_owned();
                let upgraded =
                    duplex_tokio::hyper::upgrade_with(&mut request, &serving.config, |_, offer| {
                        Ok(choose(offer))
                    });
                let response = match upgraded {
                    Ok((response, websocket)) => {
                        // Counted before the peer sees the answer.
                        let guard = serving.hold();
                        let serving = serving.clone();
                        tokio::spawn(bounded(async move {
                            let _guard = guard;
                            match websocket.await {
                                Ok(ws) => {
                                    serve_websocket(
                                        ws,
                                        &path,
                                        &serving.stats,
                                        Some(&serving.shutdown),
                                    )
                                    .await
                                }
                                Err(error) => serving.stats.error(error.to_string()),
                            }
                        }));
                        response
                    }
                    Err(error) => {
                        serving
                            .stats
                            .handshake_failures
                            .fetch_add(1, Ordering::Relaxed);
                        error.into_response()
                    }
                };
                async move { Ok::<_, std::convert::Infallible>(response) }
            },
        );
        let mut builder =
            hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
        builder.http2().enable_connect_protocol();
        let io = hyper_util::rt::TokioIo::new(tcp);
        let _ = builder.serve_connection_with_upgrades(io, service).await;
    }
}

/// The behaviour a request's path asks for: its first segment (`/flood/slow` is
/// `flood`).
pub fn behaviour(path: &str) -> &str {
    path.split('/').nth(1).unwrap_or("")
}

/// A duplex-tokio WebSocket doing what `path` asks (see the module documentation), on
/// either side: the test servers run it for each connection, and the driver kit's
/// clients run it after connecting. Tracked by `shutdown` while it runs.
pub async fn serve_websocket<S>(
    mut ws: WebSocketStream<S>,
    path: &str,
    stats: &Stats,
    shutdown: Option<&Shutdown>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let _tracked = shutdown.map(|shutdown| shutdown.track(&ws));
    // Made only for the paths that send it: an echo connection idles lean.
    let chunk = || Bytes::from(vec![0x5A; FLOOD_MESSAGE]);
    match behaviour(path) {
        "close" => {
            // Closes at once; `close` returns within the close timeout whatever the
            // peer does.
            let frame = duplex_core::CloseFrame::new(duplex_core::CloseCode::Normal, "bye");
            if let Err(error) = ws.close(Some(frame)).await {
                stats.error(error.to_string());
            }
        }
        "fill-close" => {
            // Queues until the write buffer is full and a flush has not moved for
            // 100 ms (the socket takes no more), then closes behind that output.
            let chunk = chunk();
            for _ in 0..10_000 {
                match ws.try_send(Message::Binary(chunk.clone())) {
                    Ok(()) => continue,
                    Err(duplex_tokio::TrySendError::WriteBufferFull { .. }) => {}
                    Err(error) => {
                        stats.error(error.to_string());
                        return;
                    }
                }
                match tokio::time::timeout(Duration::from_millis(100), ws.flush()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        stats.error(error.to_string());
                        return;
                    }
                    Err(_) => break,
                }
            }
            *lock(&stats.close_called) = Some(Instant::now());
            if let Err(error) = ws.close(None).await {
                stats.error(error.to_string());
            }
        }
        "split" => {
            // A writer whose reader half is dropped: its sends must fail, not park.
            let (reader, mut writer) = ws.split();
            drop(reader);
            let chunk = chunk();
            for _ in 0..1_000_000 {
                if writer.send(Message::Binary(chunk.clone())).await.is_err() {
                    break;
                }
            }
        }
        "flood" => {
            // Bounded in count (and by the caller's timeout); `send` waits while the
            // client does not read.
            let chunk = chunk();
            for _ in 0..1_000_000 {
                if let Err(error) = ws.send(Message::Binary(chunk.clone())).await {
                    stats.error(error.to_string());
                    break;
                }
                stats
                    .flood_bytes
                    .fetch_add(FLOOD_MESSAGE as u64, Ordering::Relaxed);
            }
        }
        _ => {
            // Bounded: each event consumes input, and the caller's timeout bounds the
            // time.
            while let Some(event) = ws.recv().await {
                match event {
                    Ok(message) => {
                        if message.is_data() {
                            stats.messages.fetch_add(1, Ordering::Relaxed);
                        }
                        if let Some(reply) = reply_to(message) {
                            if ws.send(reply).await.is_err() {
                                break;
                            }
                        }
                    }
                    Err(error) => stats.error(error.to_string()),
                }
            }
        }
    }
}

struct MioHandler {
    stats: Arc<Stats>,
}

impl duplex_mio::Handler for MioHandler {
    fn on_close(
        &mut self,
        _ctx: &mut duplex_mio::Context<'_>,
        _frame: Option<duplex_core::CloseFrame>,
    ) {
        self.stats.closed.fetch_add(1, Ordering::AcqRel);
    }

    fn on_open(
        &mut self,
        ctx: &mut duplex_mio::Context<'_>,
        request: &duplex_mio::http::Request<()>,
        offer: &duplex_mio::ClientOffer,
    ) -> Result<duplex_mio::Acceptance, duplex_mio::Rejection> {
        match behaviour(request.uri().path()) {
            "flood" => {
                ctx.subscribe("flood");
            }
            "fill-close" => {
                ctx.subscribe("flood");
                lock(&self.stats.marked).push(ctx.id());
            }
            "close" => {
                let _ = ctx.close(duplex_core::CloseCode::Normal, "bye");
            }
            _ => {}
        }
        let mut acceptance = duplex_mio::Acceptance::default();
        if let Some(protocol) = offer.select_protocol(&["chat"]) {
            acceptance = acceptance.protocol(protocol);
        }
        Ok(acceptance)
    }

    fn on_message(&mut self, ctx: &mut duplex_mio::Context<'_>, message: Message) {
        self.stats.messages.fetch_add(1, Ordering::Relaxed);
        if let Some(reply) = reply_to(message) {
            let _ = ctx.send(reply);
        }
    }

    fn on_error(
        &mut self,
        _ctx: &mut duplex_mio::Context<'_>,
        error: &duplex_mio::ConnectionError,
    ) {
        if matches!(
            error,
            duplex_mio::ConnectionError::WebSocket(duplex_core::Error::LimitExceeded(limit))
                if limit.limit == duplex_core::Limit::WriteBuffer
        ) {
            self.stats.overflows.fetch_add(1, Ordering::AcqRel);
        }
        self.stats.error(error.to_string());
    }
}

// ----- the attacker's side -----

/// Connects to `addr` with read and write timeouts of `timeout`.
pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Opens a WebSocket connection by hand: sends `request`, reads the response head.
/// Returns the socket, the head and whatever followed it.
pub fn open_raw(addr: SocketAddr, request: &[u8]) -> io::Result<(TcpStream, Vec<u8>, Vec<u8>)> {
    let mut stream = connect(addr, Duration::from_secs(5))?;
    stream.write_all(request)?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && got.len() < 1 << 20 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if let Some((head, rest)) = wire::split_head(&got) {
            return Ok((stream, head.to_vec(), rest.to_vec()));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("no response head: {:?}", String::from_utf8_lossy(&got)),
    ))
}

/// Opens `/path` with a plain request (no extensions) and checks the 101.
pub fn open(addr: SocketAddr, path: &str) -> io::Result<(TcpStream, Vec<u8>)> {
    open_with(addr, path, "")
}

/// Opens `/path` with `extra` request headers and checks the 101.
pub fn open_with(addr: SocketAddr, path: &str, extra: &str) -> io::Result<(TcpStream, Vec<u8>)> {
    let (stream, head, rest) = open_raw(addr, &wire::request(path, extra))?;
    if wire::status_of(&head) != Some(101) {
        return Err(io::Error::other(format!(
            "not a 101: {}",
            String::from_utf8_lossy(&head)
        )));
    }
    Ok((stream, rest))
}

/// Writes `chunks` on a thread until they run out or a write fails; the thread returns
/// the bytes written and the error, if any.
pub fn spawn_writer<I>(stream: &TcpStream, chunks: I) -> JoinHandle<(u64, Option<io::Error>)>
where
    I: Iterator<Item = Vec<u8>> + Send + 'static,
{
    let mut stream = stream.try_clone().expect("clone the socket");
    std::thread::spawn(move || {
        let mut written = 0u64;
        for chunk in chunks {
            if let Err(error) = stream.write_all(&chunk) {
                return (written, Some(error));
            }
            written += chunk.len() as u64;
        }
        (written, None)
    })
}

/// `frame` repeated `count` times, as chunks of about 64 KiB.
pub fn repeated(frame: Vec<u8>, count: u64) -> impl Iterator<Item = Vec<u8>> + Send + 'static {
    let per_chunk = ((64 << 10) / frame.len().max(1)).max(1) as u64;
    let full = frame.repeat(per_chunk as usize);
    let mut left = count;
    std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let n = left.min(per_chunk);
        left -= n;
        Some(if n == per_chunk {
            full.clone()
        } else {
            frame.repeat(n as usize)
        })
    })
}

/// How the server ended a connection, seen from the attacker.
#[derive(Debug)]
pub struct Ending {
    /// Bytes the server sent (at most the first 8 MiB).
    pub bytes: Vec<u8>,
    /// How reading stopped: "eof", "reset", "timeout" or another error.
    pub how: String,
    /// When reading stopped, from the start of [`read_until_end`].
    pub after: Duration,
}

impl Ending {
    /// The frames in [`bytes`](Self::bytes) after `skip` bytes.
    pub fn frames(&self) -> Vec<wire::Frame> {
        wire::frames(&self.bytes).0
    }

    /// The code of the server's close frame (`Some(None)` for an empty one).
    pub fn close_code(&self) -> Option<Option<u16>> {
        wire::close_code(&self.frames())
    }

    /// True when the server dropped the connection (end of file or reset).
    pub fn dropped(&self) -> bool {
        self.how == "eof" || self.how == "reset"
    }
}

/// Reads what the server sends until it closes the connection or `timeout` passes.
pub fn read_until_end(stream: &TcpStream, timeout: Duration) -> Ending {
    let start = Instant::now();
    let mut stream = stream.try_clone().expect("clone the socket");
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let how = loop {
        if start.elapsed() > timeout {
            break "timeout".to_owned();
        }
        match stream.read(&mut buf) {
            Ok(0) => break "eof".to_owned(),
            Ok(n) => {
                if bytes.len() < 8 << 20 {
                    bytes.extend_from_slice(&buf[..n]);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break "reset".to_owned(),
            Err(e) => break e.to_string(),
        }
    };
    Ending {
        bytes,
        how,
        after: start.elapsed(),
    }
}

/// Closes `stream` with a reset (SO_LINGER 0) instead of a FIN.
pub fn reset(stream: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a correctly sized `linger` value.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(stream);
}

/// Raises the soft limit on open files towards `want` (up to the hard limit); returns
/// the soft limit now in force.
#[allow(clippy::unnecessary_cast)] // `rlim_t` is not `u64` everywhere.
pub fn raise_fd_limit(want: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid out-pointer for getrlimit/setrlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if (limit.rlim_cur as u64) < want {
            let raised = libc::rlimit {
                rlim_cur: (want as libc::rlim_t).min(limit.rlim_max),
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur as u64
}

/// A well-behaved client: connects with duplex-mio's blocking client (which offers
/// permessage-deflate), sends a text and a binary message, expects both echoed, closes.
/// Returns the round trip time.
pub fn good_client(server: &TestServer, tag: &str) -> Result<Duration, String> {
    let start = Instant::now();
    let config = duplex_mio::client::ClientConfig::default()
        .connect_timeout(Duration::from_secs(5))
        .handshake_timeout(Duration::from_secs(5));
    let request =
        duplex_mio::client::ClientRequest::new(&server.url("/")).map_err(|e| e.to_string())?;
    let mut ws = duplex_mio::client::connect_with(request, &config)
        .map_err(|e| format!("{tag}: connect: {e}"))?;
    ws.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    ws.set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let text = Message::text(format!("hello from the good client ({tag})"));
    let binary = Message::binary((0..2000u32).map(|i| i as u8).collect::<Vec<_>>());
    for message in [text, binary] {
        ws.send(message.clone())
            .map_err(|e| format!("{tag}: send: {e}"))?;
        // Skip pings and pongs; bounded.
        let mut echoed = None;
        for _ in 0..16 {
            match ws.recv().map_err(|e| format!("{tag}: recv: {e}"))? {
                m if m.is_data() => {
                    echoed = Some(m);
                    break;
                }
                _ => {}
            }
        }
        if echoed.as_ref() != Some(&message) {
            return Err(format!("{tag}: echo mismatch: {echoed:?}"));
        }
    }
    let _ = ws.close(None);
    Ok(start.elapsed())
}
