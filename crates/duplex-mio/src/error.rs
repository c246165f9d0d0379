//! Errors of the server: refused sends, and what ended a connection.

use std::fmt;

use duplex_handshake::ServerError;

/// Why a message could not be queued.
#[derive(Debug)]
#[non_exhaustive]
pub enum SendError {
    /// The connection's unsent output is above the soft limit: the peer does not read
    /// fast enough. Try again later (after the next message from it, or a timer), or
    /// close it.
    WriteBufferFull {
        /// Bytes waiting to be written.
        buffered: usize,
        /// The soft limit.
        limit: usize,
    },
    /// The command queue of a worker thread is full (see
    /// [`ServerConfig::command_queue`](crate::ServerConfig::command_queue)); for a
    /// broadcast, the workers that had room still got the message.
    QueueFull,
    /// No such connection: it ended and is no longer served. (While it is still being
    /// served, a send after a close is the engine's error, in `WebSocket`:
    /// `Usage(SendAfterClose)` after our own close, `ConnectionClosed` after the peer's,
    /// or what failed it.)
    Closed,
    /// The server stopped.
    ServerStopped,
    /// Only text and binary messages can be broadcast or published.
    NotData,
    /// The engine refused the message, saying why: the connection is closing or over
    /// (whose doing it was), a control payload over 125 bytes, a close code that may
    /// not be sent.
    WebSocket(duplex_core::Error),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WriteBufferFull { buffered, limit } => write!(
                f,
                "write buffer holds {buffered} bytes, above the soft limit of {limit} bytes"
            ),
            Self::QueueFull => f.write_str("the worker's command queue is full"),
            Self::Closed => f.write_str("the connection is closed"),
            Self::ServerStopped => f.write_str("the server stopped"),
            Self::NotData => f.write_str("only text and binary messages can be broadcast"),
            Self::WebSocket(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::WebSocket(error) => Some(error),
            _ => None,
        }
    }
}

impl From<duplex_core::Error> for SendError {
    fn from(error: duplex_core::Error) -> Self {
        match error {
            duplex_core::Error::Usage(duplex_core::UsageError::WriteBufferFull {
                buffered,
                limit,
            }) => Self::WriteBufferFull { buffered, limit },
            other => Self::WebSocket(other),
        }
    }
}

/// What went wrong with an open connection, reported to
/// [`Handler::on_error`](crate::Handler::on_error) before
/// [`Handler::on_close`](crate::Handler::on_close).
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The engine failed the connection: a protocol violation or exceeded limit (the
    /// close frame with the RFC's code is already on its way; a peer that does not read
    /// while broadcasts pass the hard write limit is `LimitExceeded` with
    /// `Limit::WriteBuffer`), a timeout, a peer that vanished without a close frame
    /// (a reset included), or a socket error (`Io`).
    WebSocket(duplex_core::Error),
    /// The handler's decision could not be carried out (its `Acceptance` chose a
    /// subprotocol the client did not offer, or `on_open` panicked); the client got 500.
    Handshake(ServerError),
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WebSocket(error) => write!(f, "{error}"),
            Self::Handshake(error) => write!(f, "cannot accept the handshake: {error}"),
        }
    }
}

impl std::error::Error for ConnectionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::WebSocket(error) => Some(error),
            Self::Handshake(error) => Some(error),
        }
    }
}

/// Encodes a broadcast once, refusing what is not text or binary.
pub(crate) fn prepare(
    message: duplex_core::Message,
) -> Result<duplex_core::PreparedMessage, SendError> {
    if !message.is_data() {
        return Err(SendError::NotData);
    }
    Ok(duplex_core::PreparedMessage::new(message)?)
}
