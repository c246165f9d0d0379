//! The server: binding, the accept loop, and the handles other threads use.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use duplex_core::{CloseCode, CloseFrame, Message, PreparedMessage};
use duplex_handshake::http::Request;
use duplex_handshake::{Acceptance, ClientOffer, Rejection};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::config::ServerConfig;
use crate::context::Context;
use crate::error::{ConnectionError, SendError};
use crate::worker::Worker;

/// The application's side of one connection: the server calls it on the worker thread
/// that owns the connection, one call at a time.
///
/// Only [`on_message`](Self::on_message) must be written; the rest default to accepting
/// every client and ignoring everything else.
///
/// # Panics
///
/// A panic in a callback (or in the handler factory, or the handler's destructor) is
/// caught, so it ends only its own connection, not the worker thread and the other
/// connections it serves:
///
/// - in [`on_open`](Self::on_open) or the factory, the client gets
///   `500 Internal Server Error` instead of the 101;
/// - in any later callback, the connection is closed with 1011 (internal error), the
///   handler is dropped at once and gets no further calls (not even
///   [`on_close`](Self::on_close));
/// - a line naming the connection is written to stderr, after the message of the panic
///   hook.
///
/// Messages the handler queued before it panicked are still sent. State the handler
/// shares with others (through a `Mutex`, say) may be left half-updated, as after any
/// caught panic. With `panic = "abort"` nothing can be caught and the process ends.
///
/// ```
/// use duplex_mio::{Context, Handler, Message};
///
/// struct Echo;
///
/// impl Handler for Echo {
///     fn on_message(&mut self, ctx: &mut Context<'_>, message: Message) {
///         // A peer that does not read gets `SendError::WriteBufferFull`; drop the reply.
///         let _ = ctx.send(message);
///     }
/// }
/// ```
pub trait Handler {
    /// A client's valid opening request arrived. Return an [`Acceptance`] (choosing a
    /// subprotocol from `offer.protocols()`, adding headers) to accept, or a
    /// [`Rejection`] with the HTTP response to refuse it with (e.g. 401 or 403).
    ///
    /// Messages sent through `ctx` here go out right after the 101 response; topics
    /// subscribed here are kept if the connection is accepted.
    fn on_open(
        &mut self,
        ctx: &mut Context<'_>,
        request: &Request<()>,
        offer: &ClientOffer,
    ) -> Result<Acceptance, Rejection> {
        let _ = (ctx, request, offer);
        Ok(Acceptance::default())
    }

    /// A whole text or binary message arrived.
    fn on_message(&mut self, ctx: &mut Context<'_>, message: Message);

    /// A ping arrived (the pong is already queued unless `auto_pong` is off).
    fn on_ping(&mut self, ctx: &mut Context<'_>, payload: Bytes) {
        let _ = (ctx, payload);
    }

    /// A pong arrived.
    fn on_pong(&mut self, ctx: &mut Context<'_>, payload: Bytes) {
        let _ = (ctx, payload);
    }

    /// The connection failed; [`on_close`](Self::on_close) follows.
    fn on_error(&mut self, ctx: &mut Context<'_>, error: &ConnectionError) {
        let _ = (ctx, error);
    }

    /// The connection is over (called once, for every accepted connection).
    /// `frame` is the close frame the peer sent, if it sent one. Sending to this
    /// connection no longer works; broadcasting does.
    fn on_close(&mut self, ctx: &mut Context<'_>, frame: Option<CloseFrame>) {
        let _ = (ctx, frame);
    }
}

/// Names one connection of a server, for [`Sender::send`] from any thread.
///
/// Once its connection is gone, sends to the id are dropped. Ids carry a generation,
/// so a new connection in the same slot gets a different id (until that slot has been
/// reused 2^32 times).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId {
    pub(crate) worker: u32,
    pub(crate) slot: u32,
    pub(crate) generation: u32,
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.worker, self.slot, self.generation)
    }
}

/// What other threads ask a worker to do.
pub(crate) enum Command {
    Send(ConnectionId, Message),
    /// Start the close handshake; `overtake` (`Sender::close_now`) drops the frames
    /// not yet started.
    Close {
        id: ConnectionId,
        frame: Option<CloseFrame>,
        overtake: bool,
    },
    Broadcast {
        prepared: PreparedMessage,
        topic: Option<Arc<str>>,
    },
}

/// A freshly accepted socket for a worker.
pub(crate) struct Accepted {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
    /// Over the connection limit: answer the request with 503.
    pub(crate) reject: bool,
}

/// How the acceptor and other threads reach one worker.
pub(crate) struct WorkerHandle {
    pub(crate) commands: SyncSender<Command>,
    pub(crate) accepted: mpsc::Sender<Accepted>,
    pub(crate) waker: Waker,
    /// Sockets the worker holds, for balancing.
    pub(crate) load: AtomicUsize,
}

/// State shared by the acceptor, the workers and every handle.
pub(crate) struct Shared {
    pub(crate) workers: Vec<WorkerHandle>,
    pub(crate) shutdown: AtomicBool,
    pub(crate) stopped: AtomicBool,
    /// Sockets held by the whole server (open, handshaking, rejecting, closing).
    pub(crate) active: AtomicUsize,
    pub(crate) acceptor_waker: Waker,
    /// The memory budget the server's connections join, if any.
    pub(crate) budget: Option<duplex_core::MemoryBudget>,
}

impl Shared {
    /// Queues a command for a worker and wakes it.
    pub(crate) fn command(&self, worker: usize, command: Command) -> Result<(), SendError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(SendError::ServerStopped);
        }
        let handle = self.workers.get(worker).ok_or(SendError::Closed)?;
        match handle.commands.try_send(command) {
            Ok(()) => {
                let _ = handle.waker.wake();
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(SendError::QueueFull),
            Err(TrySendError::Disconnected(_)) => Err(SendError::ServerStopped),
        }
    }

    /// Sends a prepared broadcast to every worker except `skip`.
    pub(crate) fn broadcast(
        &self,
        prepared: &PreparedMessage,
        topic: Option<&Arc<str>>,
        skip: Option<usize>,
    ) -> Result<(), SendError> {
        let mut result = Ok(());
        for index in (0..self.workers.len()).filter(|i| Some(*i) != skip) {
            let command = Command::Broadcast {
                prepared: prepared.clone(),
                topic: topic.cloned(),
            };
            if let Err(error) = self.command(index, command) {
                result = Err(error);
            }
        }
        result
    }

    fn request_shutdown(&self) {
        if !self.shutdown.swap(true, Ordering::AcqRel) {
            let _ = self.acceptor_waker.wake();
            for worker in &self.workers {
                let _ = worker.waker.wake();
            }
        }
    }
}

/// A handle for other threads to send to connections and broadcast. Cheap to clone.
///
/// Messages travel through the owning worker's bounded command queue: a full queue is
/// [`SendError::QueueFull`], never a block. Messages from a `Sender` are queued on a
/// connection up to the hard write buffer limit (see
/// [Slow readers](crate::ServerConfig#slow-readers)); a connection that has ended by the
/// time its worker gets the message drops it.
#[derive(Clone)]
pub struct Sender {
    shared: Arc<Shared>,
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("workers", &self.shared.workers.len())
            .finish()
    }
}

impl Sender {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Queues `message` for one connection; `Message::Close` starts the close
    /// handshake like [`close`](Self::close).
    pub fn send(&self, id: ConnectionId, message: impl Into<Message>) -> Result<(), SendError> {
        let command = match message.into() {
            Message::Close(frame) => {
                if let Some(frame) = &frame {
                    frame.check().map_err(duplex_core::Error::from)?;
                }
                Command::Close {
                    id,
                    frame,
                    overtake: false,
                }
            }
            other => Command::Send(id, other),
        };
        self.shared.command(id.worker as usize, command)
    }

    /// Starts closing one connection with `code` and `reason` (at most 123 bytes). The
    /// close deadline counts from when its worker takes the command.
    pub fn close(&self, id: ConnectionId, code: CloseCode, reason: &str) -> Result<(), SendError> {
        self.send(id, Message::Close(Some(CloseFrame::new(code, reason))))
    }

    /// Starts closing one connection with `code` and `reason`, overtaking its queued
    /// output like [`Context::close_now`](crate::Context::close_now): for kicking a slow
    /// consumer from another thread.
    pub fn close_now(
        &self,
        id: ConnectionId,
        code: CloseCode,
        reason: &str,
    ) -> Result<(), SendError> {
        let frame = CloseFrame::new(code, reason);
        frame.check().map_err(duplex_core::Error::from)?;
        let command = Command::Close {
            id,
            frame: Some(frame),
            overtake: true,
        };
        self.shared.command(id.worker as usize, command)
    }

    /// Sends a text or binary message to every open connection, encoded once.
    pub fn broadcast(&self, message: impl Into<Message>) -> Result<(), SendError> {
        let prepared = crate::error::prepare(message.into())?;
        self.shared.broadcast(&prepared, None, None)
    }

    /// Sends a text or binary message to every connection subscribed to `topic`,
    /// encoded once.
    pub fn publish(&self, topic: &str, message: impl Into<Message>) -> Result<(), SendError> {
        let prepared = crate::error::prepare(message.into())?;
        self.shared
            .broadcast(&prepared, Some(&Arc::from(topic)), None)
    }

    /// Connections (and handshakes in progress) the server holds right now.
    pub fn connection_count(&self) -> usize {
        self.shared.active.load(Ordering::Relaxed)
    }

    /// The memory budget the server's connections share (see
    /// [`MemoryBudget`](duplex_core::MemoryBudget)): its limit, the bytes its peers make
    /// it hold now, and the connections shed to stay within it. `None` when the
    /// configuration turned the budget off.
    pub fn memory(&self) -> Option<duplex_core::BudgetStats> {
        self.shared
            .budget
            .as_ref()
            .map(duplex_core::MemoryBudget::stats)
    }
}

/// Stops a running server gracefully. Cheap to clone; usable from any thread.
#[derive(Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownHandle").finish_non_exhaustive()
    }
}

impl ShutdownHandle {
    /// Asks the server to stop: it stops accepting, sends close frames with 1001 (going
    /// away) to every open connection, drops handshakes in progress, waits up to the
    /// shutdown timeout for the close handshakes, drops what remains, and
    /// [`Server::run`] returns. Returns at once; calling it again does nothing.
    pub fn shutdown(&self) {
        self.shared.request_shutdown();
    }
}

/// One worker's receiving ends and poll, made at bind time and moved into its thread.
pub(crate) struct WorkerSetup {
    pub(crate) poll: Poll,
    pub(crate) commands: Receiver<Command>,
    pub(crate) accepted: Receiver<Accepted>,
}

/// A blocking WebSocket server: an accept loop on the calling thread and worker threads
/// that each run a `mio::Poll` over their share of the connections.
///
/// ```
/// use std::time::Duration;
/// use duplex_mio::{Context, Handler, Message, Server, ServerConfig};
///
/// struct Echo;
/// impl Handler for Echo {
///     fn on_message(&mut self, ctx: &mut Context<'_>, message: Message) {
///         let _ = ctx.send(message);
///     }
/// }
///
/// let server = Server::bind("127.0.0.1:0", ServerConfig::default().workers(1))?;
/// let url = format!("ws://{}/", server.local_addr()?);
/// let shutdown = server.shutdown_handle();
/// let thread = std::thread::spawn(move || server.run(|_| Echo));
///
/// let mut client = duplex_mio::client::connect(&url)?;
/// client.set_read_timeout(Some(Duration::from_secs(5)))?;
/// client.send(Message::text("hello"))?;
/// assert_eq!(client.recv()?, Message::text("hello"));
/// client.close(None)?;
///
/// shutdown.shutdown();
/// thread.join().unwrap()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Server {
    listener: TcpListener,
    config: ServerConfig,
    shared: Arc<Shared>,
    acceptor_poll: Poll,
    setups: Mutex<Vec<WorkerSetup>>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.listener.local_addr().ok())
            .field("workers", &self.config.workers)
            .finish_non_exhaustive()
    }
}

const LISTENER: Token = Token(0);
const ACCEPTOR_WAKER: Token = Token(1);
/// The token of each worker's waker; connections use their slot index.
pub(crate) const WORKER_WAKER: Token = Token(usize::MAX);

impl Server {
    /// Binds `addr` (the first address it resolves to that binds), with the configured
    /// listen backlog.
    pub fn bind(addr: impl ToSocketAddrs, config: ServerConfig) -> io::Result<Self> {
        let mut last_error =
            io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing");
        for addr in addr.to_socket_addrs()? {
            match bind_with_backlog(addr, config.backlog) {
                Ok(listener) => return Self::from_listener(listener, config),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    /// Serves on a listener the caller bound (it is switched to non-blocking mode).
    pub fn from_listener(
        listener: std::net::TcpListener,
        config: ServerConfig,
    ) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener);
        let acceptor_poll = Poll::new()?;
        let acceptor_waker = Waker::new(acceptor_poll.registry(), ACCEPTOR_WAKER)?;
        let mut workers = Vec::with_capacity(config.workers);
        let mut setups = Vec::with_capacity(config.workers);
        for _ in 0..config.workers {
            let poll = Poll::new()?;
            let waker = Waker::new(poll.registry(), WORKER_WAKER)?;
            let (commands_tx, commands) = mpsc::sync_channel(config.command_queue);
            let (accepted_tx, accepted) = mpsc::channel();
            workers.push(WorkerHandle {
                commands: commands_tx,
                accepted: accepted_tx,
                waker,
                load: AtomicUsize::new(0),
            });
            setups.push(WorkerSetup {
                poll,
                commands,
                accepted,
            });
        }
        let shared = Arc::new(Shared {
            workers,
            shutdown: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            acceptor_waker,
            budget: config.engine.budget(duplex_core::Role::Server).cloned(),
        });
        Ok(Self {
            listener,
            config,
            shared,
            acceptor_poll,
            setups: Mutex::new(setups),
        })
    }

    /// The address the server listens on (to learn the port after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle to send to connections and broadcast from other threads.
    pub fn sender(&self) -> Sender {
        Sender {
            shared: self.shared.clone(),
        }
    }

    /// A handle to stop the server gracefully from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            shared: self.shared.clone(),
        }
    }

    /// Serves until [`ShutdownHandle::shutdown`], blocking the calling thread (which
    /// accepts connections) while the worker threads serve them. `factory` makes the
    /// handler of each connection, on its worker thread, when a valid opening request
    /// arrives.
    ///
    /// Returns after the graceful shutdown, or with the error that stopped the accept
    /// loop (after shutting the workers down).
    pub fn run<F, H>(mut self, factory: F) -> io::Result<()>
    where
        F: Fn(ConnectionId) -> H + Sync,
        H: Handler,
    {
        let setups = std::mem::take(&mut *self.setups.lock().unwrap_or_else(|e| e.into_inner()));
        let config = self.config.clone();
        let config = &config;
        let factory = &factory;
        let result = std::thread::scope(|scope| {
            let mut threads = Vec::new();
            for (index, setup) in setups.into_iter().enumerate() {
                let shared = self.shared.clone();
                let thread = std::thread::Builder::new()
                    .name(format!("duplex-mio-worker-{index}"))
                    .spawn_scoped(scope, move || {
                        Worker::new(index, setup, shared, config, factory).run()
                    });
                match thread {
                    Ok(thread) => threads.push(thread),
                    Err(error) => {
                        self.shared.request_shutdown();
                        return Err(error);
                    }
                }
            }
            let result = self.accept_loop();
            self.shared.request_shutdown();
            // Refuse new clients while the workers finish.
            let _ = self.acceptor_poll.registry().deregister(&mut self.listener);
            let mut worker_error = Ok(());
            for thread in threads {
                match thread.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => worker_error = Err(error),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            result.and(worker_error)
        });
        self.shared.stopped.store(true, Ordering::Release);
        result
    }

    /// Accepts until shutdown, handing each socket to the least loaded worker.
    fn accept_loop(&mut self) -> io::Result<()> {
        self.acceptor_poll
            .registry()
            .register(&mut self.listener, LISTENER, Interest::READABLE)?;
        let mut events = Events::with_capacity(64);
        let mut paused_until: Option<Instant> = None;
        let mut next_worker = 0usize;
        loop {
            if self.shared.shutdown.load(Ordering::Acquire) {
                return Ok(());
            }
            let timeout = paused_until.map(|t| t.saturating_duration_since(Instant::now()));
            match self.acceptor_poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
            if self.shared.shutdown.load(Ordering::Acquire) {
                return Ok(());
            }
            if let Some(until) = paused_until {
                if Instant::now() < until {
                    continue;
                }
                paused_until = None;
            }
            // Edge-triggered: accept until the backlog is empty (or we must pause).
            loop {
                let active = self.shared.active.load(Ordering::Acquire);
                let limit = self.config.max_connections;
                if active >= limit.saturating_add(self.config.max_rejecting) {
                    paused_until = Some(Instant::now() + self.config.accept_backoff);
                    break;
                }
                match self.listener.accept() {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        self.shared.active.fetch_add(1, Ordering::AcqRel);
                        let worker = self.pick_worker(&mut next_worker);
                        let handle = &self.shared.workers[worker];
                        handle.load.fetch_add(1, Ordering::Relaxed);
                        let accepted = Accepted {
                            stream,
                            peer,
                            reject: active >= limit,
                        };
                        if handle.accepted.send(accepted).is_err() {
                            // The worker is gone (it failed); the socket was dropped.
                            handle.load.fetch_sub(1, Ordering::Relaxed);
                            self.shared.active.fetch_sub(1, Ordering::AcqRel);
                            return Err(io::Error::other("a worker thread stopped"));
                        }
                        let _ = handle.waker.wake();
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                    Err(error)
                        if matches!(
                            error.kind(),
                            io::ErrorKind::Interrupted
                                | io::ErrorKind::ConnectionAborted
                                | io::ErrorKind::ConnectionReset
                        ) => {}
                    Err(_) => {
                        // EMFILE, ENFILE, ENOBUFS, ENOMEM and the like: back off instead
                        // of spinning on a listener that stays readable.
                        paused_until = Some(Instant::now() + self.config.accept_backoff);
                        break;
                    }
                }
            }
        }
    }

    /// The worker holding the fewest sockets (round robin among equals).
    fn pick_worker(&self, next: &mut usize) -> usize {
        let n = self.shared.workers.len();
        let mut best = *next % n;
        let mut best_load = usize::MAX;
        for offset in 0..n {
            let index = (*next + offset) % n;
            let load = self.shared.workers[index].load.load(Ordering::Relaxed);
            if load < best_load {
                best = index;
                best_load = load;
            }
        }
        *next = (best + 1) % n;
        best
    }
}

/// A listening socket with `SO_REUSEADDR` (as the standard library sets on Unix) and a
/// chosen backlog.
fn bind_with_backlog(
    addr: std::net::SocketAddr,
    backlog: i32,
) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}
