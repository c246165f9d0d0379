//! The limits and knobs of a [`Server`](crate::Server).

use std::time::Duration;

use duplex_core::EngineConfig;
use duplex_handshake::{DeflateConfig, Limits};

/// How a [`Server`](crate::Server) runs: threads, limits, timeouts, buffers.
///
/// Every limit has a default sized for ordinary applications:
///
/// ```
/// use std::time::Duration;
/// use duplex_mio::{EngineConfig, ServerConfig};
///
/// let config = ServerConfig::default()
///     .workers(2)
///     .max_connections(50_000)
///     .handshake_timeout(Duration::from_secs(5))
///     .engine(EngineConfig::default().max_message_size(1 << 20));
/// ```
///
/// # Slow readers
///
/// Each connection's unsent output has two limits:
///
/// - above the **soft limit** ([`write_buffer_limits`](Self::write_buffer_limits), default
///   1 MiB) the server stops reading from the connection (so a peer that does not read
///   cannot make it queue more replies), and [`Context::send`](crate::Context::send)
///   refuses with [`SendError::WriteBufferFull`](crate::SendError::WriteBufferFull);
/// - messages that the sender cannot hold back (broadcasts, topic publications, sends
///   through a [`Sender`](crate::Sender)) are still queued up to the **hard limit**
///   (default 4 MiB); one that would pass it closes the connection and reports
///   `LimitExceeded` with `Limit::WriteBuffer` (in [`ConnectionError::WebSocket`](crate::ConnectionError::WebSocket))
///   to its handler, so a peer that never reads costs at most the hard limit.
///
/// Both are the engine's `max_write_buffer` and `write_buffer_hard_limit`, kept in the
/// engine configuration only: `write_buffer_limits` writes them there, so call it after
/// [`engine`](Self::engine), which replaces the whole engine configuration. On top of
/// them the engine's write timeout fails a connection whose peer reads (almost) nothing
/// for that long.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub(crate) workers: usize,
    pub(crate) max_connections: usize,
    pub(crate) max_rejecting: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) accept_backoff: Duration,
    pub(crate) backlog: i32,
    pub(crate) read_buffer_size: usize,
    pub(crate) read_budget: usize,
    pub(crate) command_queue: usize,
    pub(crate) events_capacity: usize,
    pub(crate) engine: EngineConfig,
    pub(crate) handshake_limits: Limits,
    pub(crate) deflate: Option<DeflateConfig>,
}

/// 1024: the listen backlog of a server that binds its own address.
pub const DEFAULT_BACKLOG: i32 = 1024;
/// 10,000: the most connections served at once by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// 64 KiB: the read buffer each worker thread shares among its connections.
pub const DEFAULT_READ_BUFFER_SIZE: usize = 64 << 10;
/// 128 KiB: the most bytes read from one connection per turn of the event loop.
pub const DEFAULT_READ_BUDGET: usize = 128 << 10;
/// 1 MiB: unsent output above which a connection is no longer read (the engine's
/// `max_write_buffer`).
pub use duplex_core::DEFAULT_MAX_WRITE_BUFFER as DEFAULT_WRITE_BUFFER_SOFT;
/// 4 MiB: unsent output past which a connection is closed as a slow reader (the
/// engine's `write_buffer_hard_limit`).
pub use duplex_core::DEFAULT_WRITE_BUFFER_HARD_LIMIT as DEFAULT_WRITE_BUFFER_HARD;

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_rejecting: 64,
            handshake_timeout: duplex_handshake::DEFAULT_HANDSHAKE_TIMEOUT,
            shutdown_timeout: Duration::from_secs(5),
            accept_backoff: Duration::from_millis(50),
            backlog: DEFAULT_BACKLOG,
            read_buffer_size: DEFAULT_READ_BUFFER_SIZE,
            read_budget: DEFAULT_READ_BUDGET,
            command_queue: 4096,
            events_capacity: 1024,
            engine: EngineConfig::default(),
            handshake_limits: Limits::default(),
            deflate: Some(DeflateConfig::ADAPTER_DEFAULT),
        }
    }
}

impl ServerConfig {
    /// Worker threads, each with its own `mio::Poll` (default: the available cores).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// The most connections served at once, handshakes in progress included (default
    /// 10,000). Past it, up to [`max_rejecting`](Self::max_rejecting) more clients get
    /// `503 Service Unavailable`; beyond those the server stops accepting for
    /// [`accept_backoff`](Self::accept_backoff) at a time and leaves clients in the
    /// listen backlog.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// How many clients over [`max_connections`](Self::max_connections) are answered
    /// with 503 at once (default 64).
    pub fn max_rejecting(mut self, n: usize) -> Self {
        self.max_rejecting = n;
        self
    }

    /// How long a client has to send its whole opening request (default 10 s); a client
    /// that sends half a request and stalls is dropped then.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// How long a graceful shutdown waits for clients to answer the 1001 close frame
    /// before dropping them (default 5 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// How long the server stops accepting when it runs out of file descriptors
    /// (`EMFILE`, `ENFILE`) or is full (default 50 ms).
    pub fn accept_backoff(mut self, backoff: Duration) -> Self {
        self.accept_backoff = backoff;
        self
    }

    /// The size of the read buffer each worker thread shares among its connections
    /// (default 64 KiB). Connections hold no read buffer of their own while idle.
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.read_buffer_size = bytes.max(512);
        self
    }

    /// The most bytes read from one connection per turn of the event loop (default
    /// 128 KiB; at least one read). A connection that has more waits for the next turn,
    /// so a client sending a burst cannot starve the others.
    pub fn read_budget(mut self, bytes: usize) -> Self {
        self.read_budget = bytes;
        self
    }

    /// The soft and hard limits on a connection's unsent output (default 1 MiB and
    /// 4 MiB); see [Slow readers](Self#slow-readers). `hard` is raised to `soft` if lower.
    pub fn write_buffer_limits(mut self, soft: usize, hard: usize) -> Self {
        // The engine applies them: they are its `max_write_buffer` and
        // `write_buffer_hard_limit`, kept in one place.
        self.engine = self
            .engine
            .max_write_buffer(soft)
            .write_buffer_hard_limit(hard.max(soft));
        self
    }

    /// Commands (sends, broadcasts from other threads) each worker queues before
    /// [`Sender`](crate::Sender) calls fail with
    /// [`SendError::QueueFull`](crate::SendError::QueueFull) (default 4096).
    pub fn command_queue(mut self, n: usize) -> Self {
        self.command_queue = n.max(1);
        self
    }

    /// Readiness events taken from the OS per poll (default 1024).
    pub fn events_capacity(mut self, n: usize) -> Self {
        self.events_capacity = n.max(16);
        self
    }

    /// The WebSocket engine's limits and timers (message and frame sizes, write buffer
    /// limits, keepalive, idle timeout, close timeout).
    /// [`write_buffer_limits`](Self::write_buffer_limits) sets the engine's write
    /// buffer limits on what is here.
    pub fn engine(mut self, config: EngineConfig) -> Self {
        self.engine = config;
        self
    }

    /// The permessage-deflate policy (`None` turns it off). The default accepts the
    /// extension without server context takeover, so a connection's compressor is reset
    /// after each message and freed when idle (a kept compressor costs about 256 KiB).
    pub fn deflate(mut self, policy: Option<DeflateConfig>) -> Self {
        self.deflate = policy;
        self
    }

    /// The listen backlog [`Server::bind`](crate::Server::bind) asks for (default 1024;
    /// the kernel caps it at `net.core.somaxconn`). The standard library's 128 overflows
    /// when a thousand clients connect at once, and a client waiting in an overflowing
    /// backlog is not yet under the handshake timeout.
    pub fn backlog(mut self, backlog: u32) -> Self {
        self.backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
        self
    }

    /// Limits on the opening request's head (default 16 KiB, 64 headers).
    pub fn handshake_limits(mut self, limits: Limits) -> Self {
        self.handshake_limits = limits;
        self
    }

    /// The engine configuration connections are created with.
    pub(crate) fn engine_config(&self) -> EngineConfig {
        self.engine.clone()
    }
}
