//! The one error type of the engine, and who is at fault.

use std::{fmt, io};

use duplex_codec::{DecodeError, OpCode};

use crate::close::{CloseCode, CloseFrame};

/// Everything that can end or refuse an operation on a connection.
///
/// The variant says whose fault it is: the peer's ([`Error::Protocol`],
/// [`Error::LimitExceeded`], [`Error::PeerVanished`]), the application's
/// ([`Error::Usage`]), time ([`Error::Timeout`]) or the transport ([`Error::Io`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The peer broke a rule of RFC 6455; the connection is failed with
    /// [`ProtocolError::close_code`].
    Protocol(ProtocolError),
    /// The peer exceeded a configured limit; the connection is failed with 1009 or 1008.
    LimitExceeded(LimitError),
    /// The application asked for something the protocol does not allow. The connection
    /// is unharmed unless the message says otherwise.
    Usage(UsageError),
    /// The peer closed the connection (its close frame arrived), or it is over: no more
    /// messages can be sent. Not the application's fault; compare
    /// [`UsageError::SendAfterClose`].
    ConnectionClosed,
    /// The transport ended without a close frame (close code 1006 in the RFC's terms):
    /// the peer vanished, crashed or was cut off.
    PeerVanished {
        /// The transport ended inside a frame or a fragmented message.
        mid_message: bool,
    },
    /// A deadline passed.
    Timeout(TimeoutKind),
    /// The adapter's transport failed.
    Io(io::Error),
}

/// Which deadline passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// The close handshake did not complete in time: the peer did not answer our close
    /// frame, or did not read our reply to its own.
    CloseHandshake,
    /// No frame arrived within the keepalive timeout after our ping.
    Keepalive,
    /// Nothing arrived within the idle timeout.
    Idle,
    /// Output was pending and the peer read (almost) none of it within the write
    /// timeout.
    WriteStall,
}

/// A rule of RFC 6455 the peer broke.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The frame bytes themselves are invalid (reserved opcode, bad length, masking).
    Frame(DecodeError),
    /// RSV1, RSV2 or RSV3 set without a negotiated extension that defines it.
    ReservedBits {
        /// The three bits as 0b(rsv1)(rsv2)(rsv3).
        bits: u8,
    },
    /// A continuation frame with no fragmented message in progress.
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is still in progress.
    ExpectedContinuation(OpCode),
    /// A text message (or close reason) that is not valid UTF-8 (close code 1007).
    InvalidUtf8 {
        /// It was the close reason, not a text message.
        in_close_reason: bool,
    },
    /// A close frame with a one-byte payload.
    CloseFrameTooShort,
    /// A close frame carrying a code that may not be sent.
    InvalidCloseCode(u16),
    /// A compressed message that is not valid deflate data (close code 1007).
    InvalidCompressedData,
}

impl ProtocolError {
    /// The close code that fails the connection: 1007 for invalid UTF-8, 1002 otherwise.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::InvalidUtf8 { .. } | Self::InvalidCompressedData => CloseCode::InvalidPayload,
            _ => CloseCode::ProtocolError,
        }
    }
}

/// A configured limit the peer exceeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitError {
    /// Which limit.
    pub limit: Limit,
    /// How much the peer sent or announced (bytes, or frames for `Fragments`).
    pub actual: u64,
    /// The configured maximum.
    pub max: u64,
}

/// The limits of [`EngineConfig`](crate::EngineConfig).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// `max_frame_size`.
    FrameSize,
    /// `max_message_size`.
    MessageSize,
    /// `max_fragments`.
    Fragments,
    /// `max_decompressed_size`.
    DecompressedSize,
    /// `write_buffer_hard_limit`: the peer does not read what we send.
    WriteBuffer,
    /// The server's [`MemoryBudget`](crate::MemoryBudget) stayed exceeded and this
    /// connection held the most of it (`actual` is what it held, `max` the budget).
    MemoryBudget,
}

impl LimitError {
    /// 1009 for sizes, 1008 (policy) for the fragment count and a peer that does not
    /// read, 1013 (try again later) for the server's memory budget.
    pub fn close_code(&self) -> CloseCode {
        match self.limit {
            Limit::Fragments | Limit::WriteBuffer => CloseCode::PolicyViolation,
            Limit::MemoryBudget => CloseCode::TryAgainLater,
            Limit::FrameSize | Limit::MessageSize | Limit::DecompressedSize => {
                CloseCode::MessageTooBig
            }
        }
    }
}

/// Something the application asked for that the protocol does not allow.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UsageError {
    /// Sending after the application (or its adapter) started the close handshake.
    SendAfterClose,
    /// `Message::Close` given to [`send`](crate::Connection::send): a close arms a
    /// deadline, so it goes through [`close`](crate::Connection::close), which takes
    /// the time.
    CloseNeedsTime,
    /// A ping or pong with more than 125 bytes of payload.
    ControlPayloadTooLong(usize),
    /// A close code that may not be sent (see [`CloseCode::is_allowed_on_wire`]).
    InvalidCloseCode(u16),
    /// A close reason longer than 123 bytes.
    CloseReasonTooLong(usize),
    /// A prepared (broadcast) message must be text or binary.
    NotDataMessage,
    /// The unsent output is above `max_write_buffer`; wait for it to drain.
    WriteBufferFull {
        /// Bytes waiting to be written.
        buffered: usize,
        /// The configured limit.
        limit: usize,
    },
}

impl Error {
    /// The close code this error sends to the peer, if it fails the connection.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            Self::Protocol(error) => Some(error.close_code()),
            Self::LimitExceeded(error) => Some(error.close_code()),
            Self::Timeout(TimeoutKind::Idle) => Some(CloseCode::GoingAway),
            _ => None,
        }
    }

    /// True when the peer misbehaved (protocol violation, limit, vanished).
    pub fn is_peer_fault(&self) -> bool {
        matches!(
            self,
            Self::Protocol(_) | Self::LimitExceeded(_) | Self::PeerVanished { .. }
        )
    }

    /// The same error again, for reporting one failure to several callers (an I/O error
    /// keeps its kind and message).
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            Self::Protocol(error) => Self::Protocol(error.clone()),
            Self::LimitExceeded(error) => Self::LimitExceeded(error.clone()),
            Self::Usage(error) => Self::Usage(error.clone()),
            Self::ConnectionClosed => Self::ConnectionClosed,
            Self::PeerVanished { mid_message } => Self::PeerVanished {
                mid_message: *mid_message,
            },
            Self::Timeout(kind) => Self::Timeout(*kind),
            Self::Io(error) => Self::Io(io::Error::new(error.kind(), error.to_string())),
        }
    }

    /// The close frame sent to the peer when this error fails the connection.
    pub(crate) fn close_frame(&self) -> Option<CloseFrame> {
        let code = self.close_code()?;
        let reason = match self {
            Self::Protocol(ProtocolError::InvalidUtf8 { .. }) => "invalid UTF-8",
            Self::Protocol(ProtocolError::InvalidCompressedData) => "invalid compressed data",
            Self::Protocol(_) => "protocol error",
            Self::LimitExceeded(LimitError {
                limit: Limit::Fragments,
                ..
            }) => "too many fragments",
            Self::LimitExceeded(LimitError {
                limit: Limit::FrameSize,
                ..
            }) => "frame too big",
            Self::LimitExceeded(LimitError {
                limit: Limit::MemoryBudget,
                ..
            }) => "server memory budget exceeded",
            Self::LimitExceeded(_) => "message too big",
            _ => "idle timeout",
        };
        Some(CloseFrame::new(code, crate::Utf8Bytes::from_static(reason)))
    }
}

impl From<DecodeError> for Error {
    fn from(error: DecodeError) -> Self {
        match error {
            DecodeError::FrameTooLarge { len, max } => Self::LimitExceeded(LimitError {
                limit: Limit::FrameSize,
                actual: len,
                max,
            }),
            other => Self::Protocol(ProtocolError::Frame(other)),
        }
    }
}

impl From<ProtocolError> for Error {
    fn from(error: ProtocolError) -> Self {
        Self::Protocol(error)
    }
}

impl From<UsageError> for Error {
    fn from(error: UsageError) -> Self {
        Self::Usage(error)
    }
}

impl From<io::Error> for Error {
    fn from(error: io::Error) -> Self {
        Self::Io(error)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Protocol(error) => write!(f, "peer violated the WebSocket protocol: {error}"),
            Self::LimitExceeded(error) => write!(f, "peer exceeded a limit: {error}"),
            Self::Usage(error) => write!(f, "invalid use of the connection: {error}"),
            Self::ConnectionClosed => f.write_str("the connection is closed"),
            Self::PeerVanished { mid_message: true } => f.write_str(
                "peer closed the connection in the middle of a message, without a close frame",
            ),
            Self::PeerVanished { mid_message: false } => {
                f.write_str("peer closed the connection without a close frame")
            }
            Self::Timeout(kind) => write!(f, "{kind}"),
            Self::Io(error) => write!(f, "I/O error: {error}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(error) => Some(error),
            Self::Protocol(ProtocolError::Frame(error)) => Some(error),
            _ => None,
        }
    }
}

impl fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CloseHandshake => "the peer did not complete the close handshake in time",
            Self::Keepalive => "the peer did not answer a keepalive ping in time",
            Self::Idle => "nothing arrived within the idle timeout",
            Self::WriteStall => "the peer stopped reading: output stalled past the write timeout",
        })
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Frame(error) => write!(f, "{error}"),
            Self::ReservedBits { bits } => {
                write!(
                    f,
                    "reserved bits {bits:03b} set without a negotiated extension"
                )
            }
            Self::UnexpectedContinuation => {
                f.write_str("continuation frame without a fragmented message in progress")
            }
            Self::ExpectedContinuation(op) => {
                write!(f, "new {op} frame inside a fragmented message")
            }
            Self::InvalidUtf8 {
                in_close_reason: false,
            } => f.write_str("text message is not valid UTF-8"),
            Self::InvalidUtf8 {
                in_close_reason: true,
            } => f.write_str("close reason is not valid UTF-8"),
            Self::CloseFrameTooShort => f.write_str("close frame with a 1-byte payload"),
            Self::InvalidCloseCode(code) => write!(f, "close code {code} may not be sent"),
            Self::InvalidCompressedData => {
                f.write_str("compressed message is not valid deflate data")
            }
        }
    }
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.limit {
            Limit::FrameSize => write!(
                f,
                "frame of {} bytes exceeds max_frame_size {} bytes",
                self.actual, self.max
            ),
            Limit::MessageSize => write!(
                f,
                "message of at least {} bytes exceeds max_message_size {} bytes",
                self.actual, self.max
            ),
            Limit::Fragments => write!(
                f,
                "message of {} frames exceeds max_fragments {}",
                self.actual, self.max
            ),
            Limit::DecompressedSize => write!(
                f,
                "message inflates to more than max_decompressed_size {} bytes",
                self.max
            ),
            Limit::WriteBuffer => write!(
                f,
                "peer does not read: {} bytes of output would pass write_buffer_hard_limit {} \
                 bytes",
                self.actual, self.max
            ),
            Limit::MemoryBudget => write!(
                f,
                "shed: held {} bytes, the most of any connection, while the server's memory \
                 budget of {} bytes stayed exceeded",
                self.actual, self.max
            ),
        }
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SendAfterClose => f.write_str("cannot send after the close frame"),
            Self::CloseNeedsTime => {
                f.write_str("a close frame is sent with Connection::close(frame, now)")
            }
            Self::ControlPayloadTooLong(len) => {
                write!(f, "control frame payload of {len} bytes exceeds 125 bytes")
            }
            Self::InvalidCloseCode(code) => write!(f, "close code {code} may not be sent"),
            Self::CloseReasonTooLong(len) => {
                write!(f, "close reason of {len} bytes exceeds 123 bytes")
            }
            Self::NotDataMessage => f.write_str("only text and binary messages can be prepared"),
            Self::WriteBufferFull { buffered, limit } => write!(
                f,
                "write buffer holds {buffered} bytes, above max_write_buffer {limit} bytes"
            ),
        }
    }
}
