//! Close codes and close frames (RFC 6455 sections 5.5.1 and 7.4).

use std::fmt;

use crate::message::Utf8Bytes;

/// A close status code.
///
/// Named variants cover the codes of RFC 6455 section 7.4.1 and the IANA registry;
/// [`CloseCode::Other`] holds the rest (3000-4999 for libraries and applications).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 1000: the purpose of the connection is fulfilled.
    Normal,
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    GoingAway,
    /// 1002: a protocol error.
    ProtocolError,
    /// 1003: a data type the endpoint cannot accept.
    UnsupportedData,
    /// 1005: no status code was present. Never sent on the wire.
    NoStatus,
    /// 1006: the connection closed without a close frame. Never sent on the wire.
    Abnormal,
    /// 1007: message data inconsistent with its type (e.g. text that is not UTF-8).
    InvalidPayload,
    /// 1008: a message that violates the endpoint's policy.
    PolicyViolation,
    /// 1009: a message too big to process.
    MessageTooBig,
    /// 1010: the client expected an extension the server did not negotiate.
    MandatoryExtension,
    /// 1011: the server hit an unexpected condition.
    InternalError,
    /// 1012: the service is restarting.
    ServiceRestart,
    /// 1013: try again later.
    TryAgainLater,
    /// 1014: a gateway got a bad response upstream.
    BadGateway,
    /// 1015: the TLS handshake failed. Never sent on the wire.
    TlsHandshake,
    /// Any other code.
    Other(u16),
}

impl CloseCode {
    /// The numeric code.
    pub const fn as_u16(self) -> u16 {
        match self {
            Self::Normal => 1000,
            Self::GoingAway => 1001,
            Self::ProtocolError => 1002,
            Self::UnsupportedData => 1003,
            Self::NoStatus => 1005,
            Self::Abnormal => 1006,
            Self::InvalidPayload => 1007,
            Self::PolicyViolation => 1008,
            Self::MessageTooBig => 1009,
            Self::MandatoryExtension => 1010,
            Self::InternalError => 1011,
            Self::ServiceRestart => 1012,
            Self::TryAgainLater => 1013,
            Self::BadGateway => 1014,
            Self::TlsHandshake => 1015,
            Self::Other(code) => code,
        }
    }

    /// Whether this code may appear in a close frame: 1000-1003, 1007-1014 and
    /// 3000-4999. Everything else (below 1000, 1004-1006, 1015, 1016-2999, 5000 and up)
    /// is a protocol error when received and refused when sent.
    pub const fn is_allowed_on_wire(self) -> bool {
        matches!(self.as_u16(), 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        match code {
            1000 => Self::Normal,
            1001 => Self::GoingAway,
            1002 => Self::ProtocolError,
            1003 => Self::UnsupportedData,
            1005 => Self::NoStatus,
            1006 => Self::Abnormal,
            1007 => Self::InvalidPayload,
            1008 => Self::PolicyViolation,
            1009 => Self::MessageTooBig,
            1010 => Self::MandatoryExtension,
            1011 => Self::InternalError,
            1012 => Self::ServiceRestart,
            1013 => Self::TryAgainLater,
            1014 => Self::BadGateway,
            1015 => Self::TlsHandshake,
            other => Self::Other(other),
        }
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.as_u16()
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_u16())
    }
}

/// The body of a close frame: a code and a UTF-8 reason of at most 123 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// Why, for humans; may be empty.
    pub reason: Utf8Bytes,
}

/// The longest close reason that fits in a control frame (125 - 2 bytes of code).
pub const MAX_CLOSE_REASON: usize = 123;

impl CloseFrame {
    /// A close frame with `code` and `reason`.
    pub fn new(code: CloseCode, reason: impl Into<Utf8Bytes>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }

    /// `Ok` if this frame may be sent: a code allowed on the wire (RFC 6455 section
    /// 7.4) and a reason of at most [`MAX_CLOSE_REASON`] bytes.
    pub fn check(&self) -> Result<(), crate::UsageError> {
        if !self.code.is_allowed_on_wire() {
            return Err(crate::UsageError::InvalidCloseCode(self.code.as_u16()));
        }
        if self.reason.len() > MAX_CLOSE_REASON {
            return Err(crate::UsageError::CloseReasonTooLong(self.reason.len()));
        }
        Ok(())
    }
}

impl fmt::Display for CloseFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reason.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{} ({})", self.code, self.reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_code_ranges_follow_rfc_6455_section_7_4() {
        let allowed = |code: u16| CloseCode::from(code).is_allowed_on_wire();
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ] {
            assert!(allowed(code), "{code}");
        }
        for code in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!allowed(code), "{code}");
        }
    }

    #[test]
    fn every_named_code_round_trips() {
        for code in 0..=u16::MAX {
            assert_eq!(CloseCode::from(code).as_u16(), code);
        }
    }
}
