//! Frame opcodes (RFC 6455 section 5.2).

use std::fmt;

/// The opcode of a frame: what its payload means.
///
/// Reserved opcodes (3-7 and 11-15) are not representable; [`OpCode::from_u8`]
/// returns `None` for them and the decoder reports them as an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// `0x0`: a continuation of a fragmented data message.
    Continuation,
    /// `0x1`: the first frame of a UTF-8 text message.
    Text,
    /// `0x2`: the first frame of a binary message.
    Binary,
    /// `0x8`: the close frame.
    Close,
    /// `0x9`: a ping; the peer answers with a pong.
    Ping,
    /// `0xA`: a pong, the answer to a ping (or unsolicited, as a heartbeat).
    Pong,
}

impl OpCode {
    /// Decodes the low 4 bits of the first header byte; `None` for reserved opcodes.
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            0x0 => Some(Self::Continuation),
            0x1 => Some(Self::Text),
            0x2 => Some(Self::Binary),
            0x8 => Some(Self::Close),
            0x9 => Some(Self::Ping),
            0xA => Some(Self::Pong),
            _ => None,
        }
    }

    /// The 4-bit wire value.
    pub const fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Close, ping and pong: at most 125 bytes of payload, never fragmented.
    pub const fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }

    /// Continuation, text and binary.
    pub const fn is_data(self) -> bool {
        !self.is_control()
    }
}

impl fmt::Display for OpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Continuation => "continuation",
            Self::Text => "text",
            Self::Binary => "binary",
            Self::Close => "close",
            Self::Ping => "ping",
            Self::Pong => "pong",
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_defined_opcode_and_rejects_reserved_ones() {
        for value in 0u8..16 {
            match OpCode::from_u8(value) {
                Some(op) => assert_eq!(op.as_u8(), value),
                None => assert!(matches!(value, 3..=7 | 11..=15), "{value}"),
            }
        }
    }

    #[test]
    fn control_opcodes_have_the_high_bit() {
        for value in [0u8, 1, 2, 8, 9, 10] {
            let op = OpCode::from_u8(value).unwrap();
            assert_eq!(op.is_control(), value & 0x8 != 0);
        }
    }
}
