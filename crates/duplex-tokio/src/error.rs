//! Errors of the opening handshake on tokio.

use std::{fmt, io};

use http::StatusCode;

/// Why `accept` or `connect` did not produce a WebSocket.
#[derive(Debug)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The transport failed (connection refused, reset, TLS failure, DNS).
    Io(io::Error),
    /// The handshake did not complete within the handshake timeout.
    Timeout,
    /// The peer's HTTP head broke the rules of RFC 6455 section 4, or a limit.
    Protocol(duplex_handshake::HandshakeError),
    /// The server's accept callback rejected the request with this status.
    Rejected(StatusCode),
    /// The proxy did not open a tunnel, or the proxy setting is invalid.
    Proxy(crate::proxy::ProxyError),
}

use duplex_handshake::http;

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(error) => write!(f, "I/O error during the WebSocket handshake: {error}"),
            Self::Timeout => f.write_str("the WebSocket handshake timed out"),
            Self::Protocol(error) => write!(f, "WebSocket handshake failed: {error}"),
            Self::Rejected(status) => write!(f, "the request was rejected with {status}"),
            Self::Proxy(error) => write!(f, "proxy failure: {error}"),
        }
    }
}

impl std::error::Error for HandshakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(error) => Some(error),
            Self::Protocol(error) => Some(error),
            Self::Proxy(error) => Some(error),
            _ => None,
        }
    }
}

impl From<io::Error> for HandshakeError {
    fn from(error: io::Error) -> Self {
        Self::Io(error)
    }
}

impl From<duplex_handshake::HandshakeError> for HandshakeError {
    fn from(error: duplex_handshake::HandshakeError) -> Self {
        Self::Protocol(error)
    }
}

impl From<crate::proxy::ProxyError> for HandshakeError {
    fn from(error: crate::proxy::ProxyError) -> Self {
        Self::Proxy(error)
    }
}
