//! Errors of the opening handshake on tokio.

use std::{fmt, io};

/// Why `accept` or `connect` did not produce a WebSocket.
#[derive(Debug)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The transport failed (connection refused, reset, TLS failure, DNS).
    Io(io::Error),
    /// The handshake did not complete within the handshake timeout.
    Timeout,
    /// Client side: the server's answer broke the rules of RFC 6455 section 4 (or was
    /// not a 101), or a limit.
    Protocol(duplex_handshake::HandshakeError),
    /// Server side: the request was refused, and the client was answered; the
    /// [`ServerError`](duplex_handshake::ServerError) says whose doing it was (a bad
    /// request, the application's rejection or mistake, no capacity).
    Refused(duplex_handshake::ServerError),
    /// The proxy did not open a tunnel, or the proxy setting is invalid.
    Proxy(crate::proxy::ProxyError),
    /// Client side, over HTTP/2: the server did not advertise
    /// `SETTINGS_ENABLE_CONNECT_PROTOCOL`, so it takes no WebSocket (RFC 8441).
    ExtendedConnectNotAllowed,
}

impl HandshakeError {
    /// Client side: the server's answer when it refused the connection (status,
    /// headers, body), if that is what happened.
    pub fn refused(&self) -> Option<&duplex_handshake::RefusedResponse> {
        match self {
            Self::Protocol(duplex_handshake::HandshakeError::Refused(response)) => Some(response),
            _ => None,
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(error) => write!(f, "I/O error during the WebSocket handshake: {error}"),
            Self::Timeout => f.write_str("the WebSocket handshake timed out"),
            Self::Protocol(error) => write!(f, "WebSocket handshake failed: {error}"),
            Self::Refused(error) => write!(f, "WebSocket request refused: {error}"),
            Self::Proxy(error) => write!(f, "proxy failure: {error}"),
            Self::ExtendedConnectNotAllowed => f.write_str(
                "the HTTP/2 server does not allow extended CONNECT (RFC 8441): no WebSocket \
                 over this connection",
            ),
        }
    }
}

impl std::error::Error for HandshakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(error) => Some(error),
            Self::Protocol(error) => Some(error),
            Self::Proxy(error) => Some(error),
            Self::Refused(error) => Some(error),
            Self::Timeout | Self::ExtendedConnectNotAllowed => None,
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
