//! Messages as the application sees them.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

use crate::close::CloseFrame;

/// What the application sends and receives.
///
/// Received text and binary messages are whole (fragments already joined); a message
/// that arrived in one frame shares the buffer it was read into, without a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A UTF-8 text message.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping with up to 125 bytes of payload. Received pings are answered
    /// automatically unless [`EngineConfig::auto_pong`](crate::EngineConfig::auto_pong) is off.
    Ping(Bytes),
    /// A pong with up to 125 bytes of payload.
    Pong(Bytes),
    /// A close frame: received, it says the peer closed; sent, it starts the close
    /// handshake. `None` is a close frame without a body (code 1005 on the receiving end).
    Close(Option<CloseFrame>),
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<Utf8Bytes>) -> Self {
        Self::Text(text.into())
    }

    /// A binary message.
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Self::Binary(data.into())
    }

    /// True for text and binary messages.
    pub fn is_data(&self) -> bool {
        matches!(self, Self::Text(_) | Self::Binary(_))
    }

    /// The payload bytes (the encoded close body is not included for `Close`).
    pub fn payload(&self) -> &[u8] {
        match self {
            Self::Text(text) => text.as_bytes(),
            Self::Binary(data) | Self::Ping(data) | Self::Pong(data) => data,
            Self::Close(Some(frame)) => frame.reason.as_bytes(),
            Self::Close(None) => &[],
        }
    }

    /// The payload as `Bytes`, without a copy.
    pub fn into_payload(self) -> Bytes {
        match self {
            Self::Text(text) => text.into_bytes(),
            Self::Binary(data) | Self::Ping(data) | Self::Pong(data) => data,
            Self::Close(Some(frame)) => frame.reason.into_bytes(),
            Self::Close(None) => Bytes::new(),
        }
    }

    /// The text, for a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(text) => Some(text.as_str()),
            _ => None,
        }
    }

    /// True for a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Self::Text(_))
    }

    /// True for a binary message.
    pub fn is_binary(&self) -> bool {
        matches!(self, Self::Binary(_))
    }

    /// True for a ping.
    pub fn is_ping(&self) -> bool {
        matches!(self, Self::Ping(_))
    }

    /// True for a pong.
    pub fn is_pong(&self) -> bool {
        matches!(self, Self::Pong(_))
    }

    /// True for a close frame.
    pub fn is_close(&self) -> bool {
        matches!(self, Self::Close(_))
    }

    /// The payload's length in bytes (for `Close`, the reason's).
    pub fn len(&self) -> usize {
        self.payload().len()
    }

    /// True when the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.payload().is_empty()
    }

    /// The payload as `Bytes`, without a copy (the name tungstenite users know; the
    /// same as [`into_payload`](Self::into_payload)).
    pub fn into_data(self) -> Bytes {
        self.into_payload()
    }

    /// The payload as text: a text message's without a check, any other's if it is
    /// valid UTF-8 (for `Close`, the reason).
    pub fn to_text(&self) -> Result<&str, NotUtf8> {
        match self {
            Self::Text(text) => Ok(text.as_str()),
            other => std::str::from_utf8(other.payload()).map_err(|_| NotUtf8),
        }
    }

    /// The payload as [`Utf8Bytes`], without a copy: a text message's as it is, any
    /// other's if it is valid UTF-8.
    pub fn into_text(self) -> Result<Utf8Bytes, NotUtf8> {
        match self {
            Self::Text(text) => Ok(text),
            other => Utf8Bytes::try_from(other.into_payload()),
        }
    }
}

impl From<String> for Message {
    fn from(text: String) -> Self {
        Self::text(text)
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Self {
        Self::text(text)
    }
}

impl From<Vec<u8>> for Message {
    fn from(data: Vec<u8>) -> Self {
        Self::binary(data)
    }
}

impl From<Bytes> for Message {
    fn from(data: Bytes) -> Self {
        Self::binary(data)
    }
}

/// Bytes that are known to be valid UTF-8: the payload of a text message.
///
/// Cloning shares the buffer; [`Utf8Bytes::as_str`] costs nothing.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Utf8Bytes(Bytes);

/// The error of [`Utf8Bytes::try_from`]: the bytes are not UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotUtf8;

impl fmt::Display for NotUtf8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bytes are not valid UTF-8")
    }
}

impl std::error::Error for NotUtf8 {}

impl Utf8Bytes {
    /// Wraps a static string without copying it.
    pub const fn from_static(text: &'static str) -> Self {
        Self(Bytes::from_static(text.as_bytes()))
    }

    /// The text.
    #[allow(unsafe_code)]
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor guarantees that `self.0` is valid UTF-8: `From<String>`
        // and `from_static` take `str`, `TryFrom<Bytes>` validates, and the engine builds
        // values only through `from_validated` after its incremental validator accepted
        // every byte. `Bytes` is immutable, so the contents cannot change afterwards.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The underlying `Bytes`, without a copy.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Wraps bytes the engine's validator has already accepted. Debug builds check again.
    pub(crate) fn from_validated(bytes: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        Self(bytes)
    }
}

impl TryFrom<Bytes> for Utf8Bytes {
    type Error = NotUtf8;

    fn try_from(bytes: Bytes) -> Result<Self, NotUtf8> {
        simdutf8::basic::from_utf8(&bytes).map_err(|_| NotUtf8)?;
        Ok(Self(bytes))
    }
}

impl From<String> for Utf8Bytes {
    fn from(text: String) -> Self {
        Self(Bytes::from(text))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(text: &str) -> Self {
        Self(Bytes::copy_from_slice(text.as_bytes()))
    }
}

impl From<Utf8Bytes> for Bytes {
    fn from(text: Utf8Bytes) -> Self {
        text.0
    }
}

impl Deref for Utf8Bytes {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Utf8Bytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_bytes_rejects_invalid_bytes() {
        assert_eq!(
            Utf8Bytes::try_from(Bytes::from_static(b"\xce\xba\xe1")),
            Err(NotUtf8)
        );
        assert_eq!(
            Utf8Bytes::try_from(Bytes::from_static("κόσμε".as_bytes())).unwrap(),
            "κόσμε"
        );
    }

    #[test]
    fn single_buffer_payload_is_shared_not_copied() {
        let data = Bytes::from(vec![1u8; 1000]);
        let message = Message::binary(data.clone());
        assert_eq!(message.into_payload().as_ptr(), data.as_ptr());
    }
}

#[cfg(test)]
mod helper_tests {
    use super::*;
    use crate::CloseCode;

    #[test]
    fn the_helpers_tungstenite_users_expect() {
        let text = Message::text("héllo");
        assert!(text.is_text() && text.is_data() && !text.is_binary());
        assert_eq!(text.len(), 6);
        assert_eq!(text.to_text(), Ok("héllo"));
        assert_eq!(text.clone().into_text().unwrap(), "héllo");
        assert_eq!(&text.into_data()[..], "héllo".as_bytes());

        let binary = Message::binary(vec![0xff, 0xfe]);
        assert!(binary.is_binary() && !binary.is_text());
        assert_eq!(binary.to_text(), Err(NotUtf8));
        assert_eq!(binary.clone().into_text(), Err(NotUtf8));
        assert_eq!(Message::binary("ok").into_text().unwrap(), "ok");

        assert!(Message::Ping(Bytes::new()).is_ping() && Message::Ping(Bytes::new()).is_empty());
        assert!(Message::Pong(Bytes::from_static(b"p")).is_pong());
        let close = Message::Close(Some(CloseFrame::new(CloseCode::Normal, "bye")));
        assert!(close.is_close() && !close.is_data());
        assert_eq!(close.to_text(), Ok("bye"));
        assert_eq!(Message::Close(None).len(), 0);
    }
}
