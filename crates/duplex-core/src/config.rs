//! Limits and behaviour switches of the engine.

use std::time::Duration;

use crate::budget::MemoryBudget;
use crate::role::Role;

/// Limits and behaviour of a [`Connection`](crate::Connection).
///
/// Every limit has a default sized for ordinary applications and can be changed:
///
/// ```
/// use std::time::Duration;
/// use duplex_core::EngineConfig;
///
/// let config = EngineConfig::default()
///     .max_message_size(1 << 20)
///     .max_frame_size(256 << 10)
///     .keepalive(Duration::from_secs(20), Duration::from_secs(10));
/// assert_eq!(config.size_limits().max_message_size, 1 << 20);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    pub(crate) max_frame_size: usize,
    pub(crate) max_message_size: usize,
    pub(crate) max_fragments: usize,
    pub(crate) max_write_buffer: usize,
    pub(crate) write_buffer_hard_limit: usize,
    pub(crate) send_frame_size: Option<usize>,
    pub(crate) auto_pong: bool,
    pub(crate) close_timeout: Duration,
    pub(crate) keepalive: Option<(Duration, Duration)>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) linger: Linger,
    /// `None`: the same as `max_message_size`.
    pub(crate) max_decompressed_size: Option<usize>,
    pub(crate) compression_threshold: usize,
    pub(crate) compression_level: u32,
    pub(crate) memory_budget: BudgetChoice,
}

/// Which memory budget a connection joins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BudgetChoice {
    /// Servers join [`MemoryBudget::process_default`], clients none.
    ServerDefault,
    Off,
    Shared(MemoryBudget),
}

/// 16 MiB: the largest frame accepted by default.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16 << 20;
/// 64 MiB: the largest message accepted by default.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 << 20;
/// The most frames one message may span by default (Autobahn's 9.4.1 sends 65,536).
pub const DEFAULT_MAX_FRAGMENTS: usize = 100_000;
/// 1 MiB: above this much unsent output, [`send`](crate::Connection::send) refuses.
pub const DEFAULT_MAX_WRITE_BUFFER: usize = 1 << 20;
/// 4 MiB: the most unsent output [`send_forced`](crate::Connection::send_forced) queues.
pub const DEFAULT_WRITE_BUFFER_HARD_LIMIT: usize = 4 << 20;
/// Messages shorter than this are sent uncompressed even when permessage-deflate is on.
pub const DEFAULT_COMPRESSION_THRESHOLD: usize = 32;
/// 5 seconds to complete the close handshake.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// A keepalive ping after 30 s without any byte from the peer, answered within 30 s.
pub const DEFAULT_KEEPALIVE: (Duration, Duration) =
    (Duration::from_secs(30), Duration::from_secs(30));
/// 30 seconds without the transport taking [`MIN_WRITE_PROGRESS`] of pending output.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// The least output the transport must take per write timeout (or all that is
/// pending, if less) for the connection not to count as stalled.
pub const MIN_WRITE_PROGRESS: u64 = 4 << 10;

/// The size limits of a [`EngineConfig`], read back with [`EngineConfig::size_limits`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SizeLimits {
    /// `max_frame_size`.
    pub max_frame_size: usize,
    /// `max_message_size`.
    pub max_message_size: usize,
    /// `max_fragments`.
    pub max_fragments: usize,
    /// `max_decompressed_size`.
    pub max_decompressed_size: usize,
    /// `max_write_buffer`.
    pub max_write_buffer: usize,
    /// `write_buffer_hard_limit`.
    pub write_buffer_hard_limit: usize,
}

/// The deadlines of a [`EngineConfig`], read back with [`EngineConfig::deadlines`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Deadlines {
    /// `close_timeout`.
    pub close_timeout: Duration,
    /// `keepalive`: interval and timeout, if on.
    pub keepalive: Option<(Duration, Duration)>,
    /// `idle_timeout`.
    pub idle_timeout: Option<Duration>,
    /// `write_timeout`.
    pub write_timeout: Option<Duration>,
    /// `linger`.
    pub linger: Linger,
}

/// How an adapter ends a transport after the last frame: it shuts down its sending
/// side, then reads and discards what the peer still sends, for at most `time` and
/// `max_bytes`, before dropping the socket. Closing a socket with unread input makes
/// the kernel send a reset, which can destroy the close frame just written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Linger {
    /// The longest the adapter drains after shutting down its side (default 1 s).
    pub time: Duration,
    /// The most input discarded while draining (default 1 MiB).
    pub max_bytes: usize,
}

impl Default for Linger {
    fn default() -> Self {
        Self {
            time: Duration::from_secs(1),
            max_bytes: 1 << 20,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_fragments: DEFAULT_MAX_FRAGMENTS,
            max_write_buffer: DEFAULT_MAX_WRITE_BUFFER,
            write_buffer_hard_limit: DEFAULT_WRITE_BUFFER_HARD_LIMIT,
            send_frame_size: None,
            auto_pong: true,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            keepalive: Some(DEFAULT_KEEPALIVE),
            idle_timeout: None,
            write_timeout: Some(DEFAULT_WRITE_TIMEOUT),
            linger: Linger::default(),
            max_decompressed_size: None,
            compression_threshold: DEFAULT_COMPRESSION_THRESHOLD,
            compression_level: 6,
            memory_budget: BudgetChoice::ServerDefault,
        }
    }
}

impl EngineConfig {
    /// The largest frame payload accepted from the peer (default 16 MiB); a larger frame
    /// is refused from its header, before its payload is read, with close code 1009.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }

    /// The largest message accepted from the peer, across all its fragments (default
    /// 64 MiB); exceeding it closes with 1009 as soon as a frame header announces it.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// The most frames one message may span, empty continuations included (default
    /// 100,000); exceeding it closes with 1008.
    pub fn max_fragments(mut self, frames: usize) -> Self {
        self.max_fragments = frames.max(1);
        self
    }

    /// Unsent output above which [`send`](crate::Connection::send) refuses new messages
    /// with [`UsageError::WriteBufferFull`](crate::UsageError::WriteBufferFull) (default
    /// 1 MiB). One message larger than this is accepted when the buffer is below it.
    pub fn max_write_buffer(mut self, bytes: usize) -> Self {
        self.max_write_buffer = bytes;
        self
    }

    /// The most unsent output that messages the sender cannot hold back (broadcasts,
    /// messages from other threads; see [`send_forced`](crate::Connection::send_forced))
    /// may build up (default 4 MiB); one that would pass it fails the connection.
    pub fn write_buffer_hard_limit(mut self, bytes: usize) -> Self {
        self.write_buffer_hard_limit = bytes;
        self
    }

    /// Split outgoing messages into frames of at most this many payload bytes (default:
    /// never split).
    pub fn send_frame_size(mut self, bytes: Option<usize>) -> Self {
        self.send_frame_size = bytes.map(|b| b.max(1));
        self
    }

    /// Answer pings with pongs automatically (default on). When off, pings are still
    /// delivered as events and the application answers them.
    pub fn auto_pong(mut self, on: bool) -> Self {
        self.auto_pong = on;
        self
    }

    /// The longest a connection lives once a close frame was sent or received, or it
    /// failed (default 5 s): the peer's reply, our reply reaching the peer, and (for a
    /// client) the server closing TCP must all happen within it, or the transport is
    /// closed anyway, whatever is still unsent.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Send a ping after `interval` without any byte from the peer, and fail the
    /// connection when nothing arrives within `timeout` after it (default 30 s and
    /// 30 s, see [`DEFAULT_KEEPALIVE`]). This is what ends a connection whose peer went
    /// silent, stopped in the middle of a frame, or vanished without a trace.
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keepalive = Some((interval, timeout));
        self
    }

    /// Turns keepalive pings off (not recommended: a peer that goes silent then holds
    /// its connection until the application closes it).
    pub fn no_keepalive(mut self) -> Self {
        self.keepalive = None;
        self
    }

    /// Close the connection with 1001 after this long without any byte from the peer
    /// (default off). A message that arrives slowly is not idle.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Fail the connection when output is pending and the transport takes less than
    /// [`MIN_WRITE_PROGRESS`] of it (or all of it) within `timeout` (default 30 s): a
    /// peer that stops reading, or reads a byte a second, cannot hold the connection.
    /// `None` turns it off.
    pub fn write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// How adapters drain the peer's input after shutting down their side (default 1 s
    /// and 1 MiB, see [`Linger`]).
    pub fn linger(mut self, linger: Linger) -> Self {
        self.linger = linger;
        self
    }

    /// The largest message after decompression (default: `max_message_size`, so that a
    /// server that lowers its message limit does not accept larger messages through
    /// compression); inflating stops at this size and the connection is closed with
    /// 1009, without allocating more.
    pub fn max_decompressed_size(mut self, bytes: usize) -> Self {
        self.max_decompressed_size = Some(bytes);
        self
    }

    /// The largest message after decompression, as configured or derived.
    pub(crate) fn decompressed_limit(&self) -> usize {
        self.max_decompressed_size.unwrap_or(self.max_message_size)
    }

    /// Joins connections built with this configuration to `budget` (see
    /// [`MemoryBudget`]): share one budget among the connections of a server. By
    /// default server connections join [`MemoryBudget::process_default`] and clients
    /// none.
    pub fn memory_budget(mut self, budget: MemoryBudget) -> Self {
        self.memory_budget = BudgetChoice::Shared(budget);
        self
    }

    /// Connections built with this configuration join no memory budget: only the
    /// per-connection limits bound what their peers make them hold.
    pub fn no_memory_budget(mut self) -> Self {
        self.memory_budget = BudgetChoice::Off;
        self
    }

    /// True while the budget that server connections made with this configuration join
    /// is exceeded: adapters answer new handshakes 503 (see [`MemoryBudget`]).
    pub fn refuses_new_server_connections(&self) -> bool {
        self.budget(Role::Server)
            .is_some_and(MemoryBudget::is_exceeded)
    }

    /// The budget a connection in `role` joins, if any.
    pub fn budget(&self, role: Role) -> Option<&MemoryBudget> {
        match (&self.memory_budget, role) {
            (BudgetChoice::Shared(budget), _) => Some(budget),
            (BudgetChoice::ServerDefault, Role::Server) => Some(MemoryBudget::process_default()),
            _ => None,
        }
    }

    /// With permessage-deflate, messages shorter than this are sent uncompressed
    /// (default 32 bytes).
    pub fn compression_threshold(mut self, bytes: usize) -> Self {
        self.compression_threshold = bytes;
        self
    }

    /// The deflate level, 0 (store) to 9 (smallest); default 6.
    pub fn compression_level(mut self, level: u32) -> Self {
        self.compression_level = level.min(9);
        self
    }

    /// The size limits, read back.
    pub fn size_limits(&self) -> SizeLimits {
        SizeLimits {
            max_frame_size: self.max_frame_size,
            max_message_size: self.max_message_size,
            max_fragments: self.max_fragments,
            max_decompressed_size: self.decompressed_limit(),
            max_write_buffer: self.max_write_buffer,
            write_buffer_hard_limit: self.write_buffer_hard_limit,
        }
    }

    /// The deadlines, read back.
    pub fn deadlines(&self) -> Deadlines {
        Deadlines {
            close_timeout: self.close_timeout,
            keepalive: self.keepalive,
            idle_timeout: self.idle_timeout,
            write_timeout: self.write_timeout,
            linger: self.linger,
        }
    }
}
