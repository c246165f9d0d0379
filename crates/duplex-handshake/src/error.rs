//! What can go wrong in the opening handshake.

use std::fmt;

use bytes::Bytes;

use http::{HeaderValue, Response, StatusCode, header};

/// A failed opening handshake, on either side.
///
/// On the server, [`HandshakeError::status`] and [`HandshakeError::response`] give the
/// HTTP answer the client deserves (400, 405, 426 or 431).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The head (request or status line plus headers) exceeds the size limit.
    HeadTooLarge {
        /// The configured `max_head_size`.
        limit: usize,
    },
    /// More header fields than the limit.
    TooManyHeaders {
        /// The configured `max_headers`.
        limit: usize,
    },
    /// Not parseable as HTTP/1.x.
    Malformed(String),
    /// The transport ended before the head was complete.
    Incomplete,
    /// A request method other than GET.
    MethodNotGet(String),
    /// HTTP/1.0 (the handshake needs HTTP/1.1).
    UnsupportedHttpVersion,
    /// A required header is missing or does not have the required value.
    MissingHeader(&'static str),
    /// A header that must appear once appears more than once.
    DuplicateHeader(&'static str),
    /// `Sec-WebSocket-Version` is not 13.
    UnsupportedVersion(String),
    /// `Sec-WebSocket-Key` is not the base64 encoding of 16 bytes.
    InvalidKey,
    /// The server answered with a status other than 101: its status, headers and body.
    Refused(Box<RefusedResponse>),
    /// `Sec-WebSocket-Accept` does not match the key we sent.
    AcceptMismatch,
    /// The server chose a subprotocol we did not offer.
    UnofferedSubprotocol(String),
    /// The server chose none of our subprotocols, and the request required one.
    NoSubprotocolChosen,
    /// The server answered with an extension we did not offer.
    UnofferedExtension(String),
    /// The URL cannot be used for a WebSocket connection.
    InvalidUrl(String),
    /// The server's `Sec-WebSocket-Extensions` answer breaks RFC 7692.
    InvalidExtension(String),
}

impl HandshakeError {
    /// The status a server answers this error with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::HeadTooLarge { .. } | Self::TooManyHeaders { .. } => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            Self::MethodNotGet(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::UnsupportedVersion(_) => StatusCode::UPGRADE_REQUIRED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The full rejection response for this error: its status, a plain-text body that
    /// says what was wrong, `Sec-WebSocket-Version: 13` with 426, `Allow: GET` with 405.
    pub fn response(&self) -> Response<String> {
        let mut response = plain_response(self.status(), format!("{self}\n"));
        let headers = response.headers_mut();
        match self {
            Self::UnsupportedVersion(_) => {
                headers.insert(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                );
            }
            Self::MethodNotGet(_) => {
                headers.insert(header::ALLOW, HeaderValue::from_static("GET"));
            }
            _ => {}
        }
        response
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HeadTooLarge { limit } => {
                write!(f, "handshake head exceeds max_head_size {limit} bytes")
            }
            Self::TooManyHeaders { limit } => {
                write!(
                    f,
                    "handshake has more than max_headers {limit} header fields"
                )
            }
            Self::Malformed(why) => write!(f, "malformed HTTP head: {why}"),
            Self::Incomplete => {
                f.write_str("connection ended before the handshake head was complete")
            }
            Self::MethodNotGet(method) => {
                write!(f, "WebSocket handshake needs GET, not {method}")
            }
            Self::UnsupportedHttpVersion => f.write_str("WebSocket handshake needs HTTP/1.1"),
            Self::MissingHeader(name) => write!(f, "missing or wrong {name} header"),
            Self::DuplicateHeader(name) => write!(f, "{name} header appears more than once"),
            Self::UnsupportedVersion(version) => {
                write!(f, "unsupported Sec-WebSocket-Version {version:?} (only 13)")
            }
            Self::InvalidKey => {
                f.write_str("Sec-WebSocket-Key is not the base64 encoding of 16 bytes")
            }
            Self::Refused(response) => {
                write!(
                    f,
                    "server answered {} instead of 101 Switching Protocols",
                    response.status
                )?;
                // What the server said, on one line and not too long.
                if let Some(text) = response.text().map(str::trim).filter(|t| !t.is_empty()) {
                    let line: String = text.chars().take(200).collect();
                    write!(f, ": {}", line.replace(['\r', '\n'], " "))?;
                }
                Ok(())
            }
            Self::AcceptMismatch => {
                f.write_str("Sec-WebSocket-Accept does not match the key we sent")
            }
            Self::UnofferedSubprotocol(name) => {
                write!(f, "server chose subprotocol {name:?} that we did not offer")
            }
            Self::NoSubprotocolChosen => {
                f.write_str("server chose none of the offered subprotocols, and one is required")
            }
            Self::UnofferedExtension(name) => {
                write!(
                    f,
                    "server accepted extension {name:?} that we did not offer"
                )
            }
            Self::InvalidUrl(why) => write!(f, "invalid WebSocket URL: {why}"),
            Self::InvalidExtension(why) => write!(f, "invalid permessage-deflate response: {why}"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// A server's answer other than 101: status, headers and (the start of) the body, for
/// a client to show why it was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusedResponse {
    /// The status.
    pub status: StatusCode,
    /// The headers (`WWW-Authenticate`, `Retry-After`, ...).
    pub headers: http::HeaderMap,
    /// The body as sent (not decoded from chunked encoding), at most the refusal body
    /// limit.
    pub body: Bytes,
    /// The body is whole: it ended, or `Content-Length` said so. False when it was
    /// cut at the limit, or the transport ended or the time ran out first.
    pub complete: bool,
}

impl RefusedResponse {
    /// The body as text, if it is UTF-8.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }
}

/// A plain-text response with `status` and `body` that closes the connection: the one
/// shape of every error answer of the handshake.
pub(crate) fn plain_response(status: StatusCode, body: impl Into<String>) -> Response<String> {
    let mut response = text_response(status, body);
    closing(&mut response);
    response
}

/// A plain-text response with `status` and `body` (for an application's rejection,
/// which an HTTP server may send on a connection it keeps, or over HTTP/2).
pub(crate) fn text_response(status: StatusCode, body: impl Into<String>) -> Response<String> {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

pub(crate) fn closing<B>(response: &mut Response<B>) {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
}
