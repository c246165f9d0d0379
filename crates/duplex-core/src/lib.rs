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
//! use duplex_core::{CloseCode, Config, Connection, Error, Message, ProtocolError, Role};
//!
//! let mut server = Connection::new(Role::Server, Config::default());
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

pub use close::{CloseCode, CloseFrame, MAX_CLOSE_REASON};
pub use config::{
    Config, DEFAULT_CLOSE_TIMEOUT, DEFAULT_COMPRESSION_THRESHOLD, DEFAULT_KEEPALIVE,
    DEFAULT_MAX_FRAGMENTS, DEFAULT_MAX_FRAME_SIZE, DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_WRITE_BUFFER, DEFAULT_WRITE_TIMEOUT, Deadlines, Linger, MIN_WRITE_PROGRESS,
    SizeLimits,
};
pub use connection::{Connection, PreparedMessage};
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
