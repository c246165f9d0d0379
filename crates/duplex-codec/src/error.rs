//! Errors found in the bytes of a frame.

use std::fmt;

use crate::opcode::OpCode;

/// Why a byte stream is not a valid sequence of frames.
///
/// Every variant is the peer's fault. `FrameTooLarge` is a configured limit (close code
/// 1009); the others are protocol violations (1002).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// Opcode 3-7 or 11-15.
    ReservedOpcode(u8),
    /// A 64-bit payload length with its most significant bit set.
    LengthTopBitSet,
    /// A close, ping or pong frame without FIN.
    FragmentedControlFrame(OpCode),
    /// A control frame announcing more than 125 bytes of payload.
    ControlFrameTooLong {
        /// The control opcode.
        opcode: OpCode,
        /// The announced length.
        len: u64,
    },
    /// A frame announcing more payload than the configured maximum.
    FrameTooLarge {
        /// The announced length.
        len: u64,
        /// The configured `max_frame_size`.
        max: u64,
    },
    /// A server received a frame without a mask (RFC 6455 section 5.1).
    UnmaskedFrame,
    /// A client received a masked frame (RFC 6455 section 5.1).
    MaskedFrame,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            Self::LengthTopBitSet => {
                f.write_str("64-bit payload length has its most significant bit set")
            }
            Self::FragmentedControlFrame(op) => write!(f, "fragmented {op} frame"),
            Self::ControlFrameTooLong { opcode, len } => write!(
                f,
                "{opcode} frame of {len} bytes exceeds the 125-byte limit for control frames"
            ),
            Self::FrameTooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds max_frame_size {max} bytes")
            }
            Self::UnmaskedFrame => f.write_str("unmasked frame from a client"),
            Self::MaskedFrame => f.write_str("masked frame from a server"),
        }
    }
}

impl std::error::Error for DecodeError {}
