//! The WebSocket opening handshake (RFC 6455 section 4) over HTTP/1.1 Upgrade.
//!
//! A server reads the client's request with [`ServerHandshake`] (bytes may arrive one
//! at a time; parsing stays linear), validates it into a [`ClientOffer`], and answers
//! with [`ClientOffer::accept`] or a rejection from [`HandshakeError::response`]. A
//! client builds its request with [`ClientRequest`] and checks the answer with
//! [`ClientHandshake`]. Requests and responses are the `http` crate's types, so the same
//! validation serves an HTTP server (hyper, axum) that hands over its own request.
//!
//! This crate does no I/O and knows nothing of frames: after the handshake, drive the
//! connection with `duplex-core`, or use `duplex-tokio` / `duplex-mio`, which do both.
//!
//! ```
//! use duplex_handshake::{accept_key, ClientRequest, ClientOffer, Limits, ServerHandshake};
//!
//! // RFC 6455 section 1.3.
//! assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
//!
//! // A whole handshake, client and server, in memory.
//! let (request_bytes, mut client) = ClientRequest::new("ws://127.0.0.1:9001/")?.encode();
//! let mut server = ServerHandshake::new(Limits::default());
//! let (request, _) = server.feed(&request_bytes)?.expect("complete request");
//! let response = ClientOffer::from_request(&request)?.accept(None)?;
//! let mut response_bytes = Vec::new();
//! duplex_handshake::write_response(&response, &mut response_bytes);
//! let (_, negotiated, _) = client.feed(&response_bytes)?.expect("complete response");
//! assert_eq!(negotiated.protocol, None);
//! # Ok::<(), duplex_handshake::HandshakeError>(())
//! ```

#![forbid(unsafe_code)]

mod client;
mod decision;
mod deflate;
mod error;
mod head;
mod server;

use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};
use sha1::{Digest, Sha1};

pub use client::{
    ClientHandshake, ClientRequest, DEFAULT_MAX_REFUSAL_BODY, Negotiated, parse_response,
};
pub use decision::{Accepted, Decision, Refused, ServerError, decide, decide_offer};
pub use deflate::{DeflateConfig, DeflateNegotiation};
pub use duplex_core::DeflateParams;
pub use error::{HandshakeError, RefusedResponse};
pub use head::Limits;

/// 10 s: the default bound of every adapter on an opening handshake, from the first
/// byte (or the TCP connect, for a client) to the last byte of the answer.
pub const DEFAULT_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
pub use server::{
    Acceptance, ClientOffer, Rejection, ResponseBody, ServerHandshake, parse_request,
    write_response,
};

/// Re-export of the `http` crate, whose types this crate's API uses.
pub use http;

/// The GUID of RFC 6455 section 1.3, appended to the key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// The comma-separated tokens of every value of a header, trimmed.
pub(crate) fn header_tokens<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Maps httparse's verdict on a complete head to our errors.
pub(crate) fn check_parsed(
    result: Result<httparse::Status<usize>, httparse::Error>,
    max_headers: usize,
) -> Result<(), HandshakeError> {
    match result {
        Ok(httparse::Status::Complete(_)) => Ok(()),
        Ok(httparse::Status::Partial) => Err(HandshakeError::Incomplete),
        Err(httparse::Error::TooManyHeaders) => {
            Err(HandshakeError::TooManyHeaders { limit: max_headers })
        }
        Err(error) => Err(HandshakeError::Malformed(error.to_string())),
    }
}

/// Converts httparse's headers into a `HeaderMap`.
pub(crate) fn parse_headers(raw: &[httparse::Header<'_>]) -> Result<HeaderMap, HandshakeError> {
    let mut headers = HeaderMap::with_capacity(raw.len());
    for h in raw {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|e| HandshakeError::Malformed(e.to_string()))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|e| HandshakeError::Malformed(e.to_string()))?;
        headers.append(name, value);
    }
    Ok(headers)
}
