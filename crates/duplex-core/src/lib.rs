//! The sans-IO WebSocket protocol engine (RFC 6455) shared by every duplex adapter.
//!
//! A [`Connection`] takes bytes in and gives events out; takes messages in and gives
//! bytes out. It owns no socket, spawns nothing and reads no clock: the adapter passes
//! the current time where a deadline matters. Every rule of the protocol lives here,
//! once: message assembly from fragments, UTF-8 validation that fails fast, control
//! frames and automatic pongs, the close handshake, limits, and keepalive.
//!
//! Pick this crate to drive WebSocket from your own event loop or runtime. For tokio,
//! use `duplex-tokio`; for a blocking server without a runtime, `duplex-mio`; for only
//! the opening handshake, `duplex-handshake`; for raw frames, `duplex-codec`.
//!
//! ```
//! use std::time::Instant;
//! use duplex_core::{CloseCode, EngineConfig, Connection, Error, Message, ProtocolError, Role};
//!
//! let mut server = Connection::new(Role::Server, EngineConfig::default());
//! let now = Instant::now();
//!
//! // A masked ping "hi" from a client (mask key 0, so the bytes are plain).
//! server.receive(&[0x89, 0x82, 0, 0, 0, 0, b'h', b'i']);
//! assert_eq!(server.poll_event(now).unwrap()?, Message::Ping("hi".into()));
//! assert_eq!(server.pending_output(), &[0x8A, 2, b'h', b'i']); // the pong
//! let n = server.pending_output().len();
//! server.consume_output(n);
//!
//! // An unmasked frame breaks the rules: the engine reports it and queues close 1002.
//! server.receive(&[0x81, 0x00]);
//! let error = server.poll_event(now).unwrap().unwrap_err();
//! assert!(matches!(error, Error::Protocol(ProtocolError::Frame(_))));
//! assert_eq!(error.close_code(), Some(CloseCode::ProtocolError));
//! assert_eq!(&server.pending_output()[..4], &[0x88, 16, 0x03, 0xEA]);
//! # Ok::<(), Error>(())
//! ```
//!
//! # Design notes
//!
//! **Limits are checked before memory is committed.** A frame header is checked
//! against `max_frame_size` and the message's running total against
//! `max_message_size` before any payload is read; nothing is reserved from a declared
//! length; inflating stops one byte past `max_decompressed_size`. A peer that breaks a
//! limit gets the RFC's close code (1009, or 1008 for too many fragments) and the
//! application one typed [`Error`] that names the limit.
//!
//! **Input is decoded lazily.** [`Connection::receive`] (or reading straight into
//! [`Connection::input_buffer`]) only appends; [`Connection::poll_event`] decodes until
//! it has one event. An adapter that reads again only after `poll_event` returns `None`
//! never makes the engine hold more than a partial frame plus the message being
//! assembled. A message shorter than 16 KiB that arrived in one piece is copied out of
//! the read buffer, so a stored small message does not keep a whole read buffer alive,
//! unless it is all of a buffer about its size (one read, one frame, the usual case of
//! a request and its reply), which is then handed over whole; longer ones are handed
//! over without a copy.
//!
//! **Backpressure has two levels.** Above `max_write_buffer` (1 MiB) [`Connection::send`]
//! refuses data with [`UsageError::WriteBufferFull`] and [`Connection::wants_read`]
//! tells the adapter to stop reading the peer's requests; output the sender cannot hold
//! back ([`Connection::send_forced`]: broadcasts, other threads) may grow to
//! `write_buffer_hard_limit` (4 MiB), past which the connection fails. Whatever the
//! application does, a peer that reads (almost) nothing fails with
//! [`TimeoutKind::WriteStall`] after `write_timeout` (30 s).
//!
//! **Every connection ends in bounded time.** The connection's life is one [`State`]
//! and its deadlines one table ([`TimerKind`]): keepalive (a ping after 30 s of
//! silence, 30 s to answer), idle (off by default), write stall, and the close deadline
//! armed when the connection leaves [`State::Open`]: our close, the peer's, or a
//! failure; the transport is closed within `close_timeout` (5 s) of it whatever is still
//! unsent. Every call that arms a deadline takes the time; [`Connection::poll_timeout`]
//! gives the earliest to sleep until and [`Connection::handle_timeout`] runs them.
//!
//! **permessage-deflate memory.** A zlib compressor costs about 370 KiB and its
//! decompressor about 46 KiB. A connection that keeps no compression context between
//! the messages it sends (`server_no_context_takeover` for a server, the default of
//! duplex-tokio and duplex-mio) owns no compressor: it borrows one shared by its
//! thread, reset after each message, so a server connection that used compression
//! holds about 48 KiB. A [`PreparedMessage`] is compressed once, from an empty context,
//! for every connection whose window allows it.

// The one `unsafe` block of this crate is allowed where it is, with its reason.
#![deny(unsafe_code)]

mod budget;
mod close;
mod config;
mod connection;
mod deflate;
mod error;
mod lifecycle;
mod mask_keys;
mod message;
mod output;
mod role;
mod utf8;

pub use budget::{
    BUDGET_FREE_PER_CONNECTION, BUDGET_SHED_AFTER, BudgetStats, DEFAULT_MEMORY_BUDGET, MemoryBudget,
};
pub use close::{CloseCode, CloseFrame, MAX_CLOSE_REASON};
pub use config::{
    DEFAULT_CLOSE_TIMEOUT, DEFAULT_COMPRESSION_THRESHOLD, DEFAULT_KEEPALIVE, DEFAULT_MAX_FRAGMENTS,
    DEFAULT_MAX_FRAME_SIZE, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_WRITE_BUFFER,
    DEFAULT_WRITE_BUFFER_HARD_LIMIT, DEFAULT_WRITE_TIMEOUT, Deadlines, EngineConfig, Linger,
    MIN_WRITE_PROGRESS, SizeLimits,
};
pub use connection::{Connection, PreparedMessage, TransportAction};
pub use deflate::DeflateParams;
pub use error::{Error, Limit, LimitError, ProtocolError, TimeoutKind, UsageError};
pub use lifecycle::{State, TimerKind};
pub use message::{Message, NotUtf8, Utf8Bytes};
pub use role::Role;

/// `Bytes`, the payload type of every message.
pub use bytes::Bytes;
/// The wire format layer this engine is built on.
pub use duplex_codec as codec;
#[cfg(test)]
mod tests;
