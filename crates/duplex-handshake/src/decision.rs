//! The server's answer to an opening request, decided in one place for every adapter:
//! which status, which headers, which negotiated parameters. An adapter reads the head
//! ([`ServerHandshake`](crate::ServerHandshake), or its HTTP server's parsed request),
//! asks [`decide`], writes [`Decision::response_bytes`] (or hands the response to its
//! HTTP server), and either runs the WebSocket or closes.

use std::fmt;

use duplex_core::DeflateParams;
use http::{Request, Response, StatusCode};

use crate::deflate::DeflateConfig;
use crate::error::{HandshakeError, closing, plain_response};
use crate::server::{Acceptance, ClientOffer, Rejection, write_response};

/// The server's answer: accept with a 101, or refuse with an HTTP error response.
#[derive(Debug)]
pub enum Decision {
    /// Write the 101, then speak WebSocket.
    Accept(Accepted),
    /// Write the response, then close the connection.
    Refuse(Refused),
}

/// An accepted request: the 101 and what it settled.
#[derive(Debug)]
pub struct Accepted {
    /// The 101 Switching Protocols response.
    pub response: Response<()>,
    /// The subprotocol chosen, if any.
    pub protocol: Option<String>,
    /// The permessage-deflate parameters negotiated, for the engine's `enable_deflate`.
    pub deflate: Option<DeflateParams>,
}

/// A refused request: the response to send and why.
#[derive(Debug)]
pub struct Refused {
    /// The error response (it always carries `Connection: close`).
    pub response: Response<String>,
    /// Why, and whose doing it was.
    pub error: ServerError,
}

/// Why a server refused an opening request, by whose doing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerError {
    /// The client's request broke RFC 6455 or a limit: answered 400, 405, 426 or 431.
    Peer(HandshakeError),
    /// The application refused the request (its [`Rejection`]) with this status.
    Refused(StatusCode),
    /// The application's decision could not be carried out (it chose a subprotocol the
    /// client did not offer, or its callback panicked): answered 500.
    Application(String),
    /// The server cannot take the connection now (connection limit, shutting down):
    /// answered 503.
    Unavailable,
}

/// Decides the answer to `request`: validates it (RFC 6455 section 4.2.1), lets
/// `callback` accept (choosing a subprotocol and extra headers) or refuse it, and
/// negotiates permessage-deflate under `deflate`.
///
/// ```
/// use duplex_handshake::{Acceptance, Decision, decide};
/// use duplex_handshake::http::Request;
///
/// let request = Request::get("/chat")
///     .header("host", "example.com")
///     .header("upgrade", "websocket")
///     .header("connection", "Upgrade")
///     .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
///     .header("sec-websocket-version", "13")
///     .body(())
///     .unwrap();
/// match decide(&request, None, |_, _| Ok(Acceptance::default())) {
///     Decision::Accept(accepted) => assert_eq!(accepted.response.status(), 101),
///     Decision::Refuse(refused) => panic!("{:?}", refused.error),
/// }
/// ```
pub fn decide<B>(
    request: &Request<B>,
    deflate: Option<&DeflateConfig>,
    callback: impl FnOnce(&Request<B>, &ClientOffer) -> Result<Acceptance, Rejection>,
) -> Decision {
    match ClientOffer::from_request(request) {
        Ok(offer) => decide_offer(request, &offer, deflate, callback),
        Err(error) => Decision::peer_error(error),
    }
}

/// [`decide`] for a request whose offer was validated another way (an HTTP/2 extended
/// CONNECT, RFC 8441, has no key and no `Upgrade` header).
pub fn decide_offer<B>(
    request: &Request<B>,
    offer: &ClientOffer,
    deflate: Option<&DeflateConfig>,
    callback: impl FnOnce(&Request<B>, &ClientOffer) -> Result<Acceptance, Rejection>,
) -> Decision {
    let acceptance = match callback(request, offer) {
        Ok(acceptance) => acceptance,
        Err(rejection) => return Decision::rejected(rejection),
    };
    match offer.accept_negotiated(&acceptance, deflate) {
        Ok((response, deflate)) => Decision::Accept(Accepted {
            response,
            protocol: acceptance.chosen_protocol().map(str::to_owned),
            deflate,
        }),
        Err(error) => Decision::application_error(error.to_string()),
    }
}

impl Decision {
    /// The answer to a request that could not be read or broke the rules (the error of
    /// [`ServerHandshake::feed`](crate::ServerHandshake::feed) or
    /// [`ClientOffer::from_request`]).
    pub fn peer_error(error: HandshakeError) -> Self {
        Self::Refuse(Refused {
            response: error.response(),
            error: ServerError::Peer(error),
        })
    }

    /// The application's rejection, sent as it built it (plus `Connection: close`).
    pub fn rejected(rejection: Rejection) -> Self {
        let mut response = rejection.into_response();
        closing(&mut response);
        let status = response.status();
        Self::Refuse(Refused {
            response,
            error: ServerError::Refused(status),
        })
    }

    /// 500: the application's decision failed (`what` says how; it is not sent).
    pub fn application_error(what: impl Into<String>) -> Self {
        Self::Refuse(Refused {
            response: plain_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n"),
            error: ServerError::Application(what.into()),
        })
    }

    /// 503: the server cannot take the connection now.
    pub fn unavailable() -> Self {
        Self::Refuse(Refused {
            response: plain_response(StatusCode::SERVICE_UNAVAILABLE, "try again later\n"),
            error: ServerError::Unavailable,
        })
    }

    /// The response's bytes, head and body, ready for the socket.
    pub fn response_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        match self {
            Self::Accept(accepted) => write_response(&accepted.response, &mut out),
            Self::Refuse(refused) => write_response(&refused.response, &mut out),
        }
        out
    }
}

impl ServerError {
    /// The status the client was answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Peer(error) => error.status(),
            Self::Refused(status) => *status,
            Self::Application(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Peer(error) => write!(f, "bad opening request: {error}"),
            Self::Refused(status) => write!(f, "the application refused the request ({status})"),
            Self::Application(what) => write!(f, "the application's decision failed: {what}"),
            Self::Unavailable => f.write_str("the server cannot take connections now"),
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Peer(error) => Some(error),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(extra: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::get("/")
            .header("host", "a")
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-version", "13");
        for (name, value) in extra {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    fn refused(decision: Decision) -> Refused {
        match decision {
            Decision::Refuse(refused) => refused,
            Decision::Accept(accepted) => panic!("accepted: {accepted:?}"),
        }
    }

    #[test]
    fn every_refusal_closes_the_connection_and_says_whose_doing_it_was() {
        let bad = Request::post("/").body(()).unwrap();
        let cases = [
            (decide(&bad, None, |_, _| Ok(Acceptance::default())), 405),
            (
                decide(&request(&[]), None, |_, _| {
                    Err(Rejection::new(StatusCode::FORBIDDEN, "no"))
                }),
                403,
            ),
            (Decision::unavailable(), 503),
            (Decision::application_error("boom"), 500),
        ];
        for (decision, status) in cases {
            let refused = refused(decision);
            assert_eq!(refused.response.status(), status);
            assert_eq!(refused.error.status(), status);
            assert_eq!(refused.response.headers()["connection"], "close");
        }
    }

    #[test]
    fn a_subprotocol_the_client_did_not_offer_is_the_applications_fault_500() {
        let decision = decide(
            &request(&[("sec-websocket-protocol", "a")]),
            None,
            |_, _| Ok(Acceptance::default().protocol("b")),
        );
        let refused = refused(decision);
        assert_eq!(refused.response.status(), 500);
        assert!(matches!(refused.error, ServerError::Application(_)));
    }

    #[test]
    fn acceptance_carries_the_protocol_and_the_negotiated_deflate() {
        let policy = DeflateConfig::default();
        let decision = decide(
            &request(&[
                ("sec-websocket-protocol", "chat"),
                ("sec-websocket-extensions", "permessage-deflate"),
            ]),
            Some(&policy),
            |_, offer| Ok(Acceptance::default().protocol(offer.protocols()[0].clone())),
        );
        let Decision::Accept(accepted) = &decision else {
            panic!("{decision:?}");
        };
        assert_eq!(accepted.protocol.as_deref(), Some("chat"));
        assert!(accepted.deflate.is_some());
        let bytes = String::from_utf8(decision.response_bytes()).unwrap();
        assert!(
            bytes.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "{bytes}"
        );
        assert!(
            bytes.contains("sec-websocket-protocol: chat\r\n"),
            "{bytes}"
        );
    }
}
