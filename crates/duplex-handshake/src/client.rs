//! The client side: build the request, validate the server's response.

use base64::Engine as _;
use bytes::Bytes;
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header,
};

use crate::deflate::{DeflateConfig, DeflateNegotiation};
use crate::error::{HandshakeError, RefusedResponse};
use crate::head::{HeadReader, Limits};
use crate::{accept_key, header_tokens, parse_headers};
use duplex_core::DeflateParams;

/// The client's opening request: target, offered subprotocols and extensions, extra
/// headers.
///
/// ```
/// use duplex_handshake::ClientRequest;
///
/// let (bytes, mut handshake) = ClientRequest::new("ws://127.0.0.1:9001/chat?room=1")?
///     .protocol("chat")
///     .header("Origin", "http://127.0.0.1")?
///     .encode();
/// let text = String::from_utf8(bytes).unwrap();
/// assert!(text.starts_with("GET /chat?room=1 HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n"));
/// assert!(text.contains("Sec-WebSocket-Protocol: chat\r\n"));
///
/// // A server answering without a valid Sec-WebSocket-Accept is refused.
/// let bad = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
///     Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n";
/// assert!(handshake.feed(bad).is_err());
/// # Ok::<(), duplex_handshake::HandshakeError>(())
/// ```
#[derive(Clone, Debug)]
pub struct ClientRequest {
    uri: Uri,
    host: String,
    tls: bool,
    protocols: Vec<String>,
    require_protocol: bool,
    extensions: Vec<String>,
    headers: HeaderMap,
    limits: Limits,
    deflate: Option<DeflateConfig>,
}

impl ClientRequest {
    /// A request for a `ws://` or `wss://` URL.
    pub fn new(url: &str) -> Result<Self, HandshakeError> {
        let uri: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| HandshakeError::InvalidUrl(e.to_string()))?;
        let tls = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            other => {
                return Err(HandshakeError::InvalidUrl(format!(
                    "scheme {other:?} is not ws or wss"
                )));
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| HandshakeError::InvalidUrl("no host".into()))?;
        if authority.as_str().contains('@') {
            return Err(HandshakeError::InvalidUrl(
                "user information is not supported".into(),
            ));
        }
        Ok(Self {
            host: authority.as_str().to_owned(),
            uri,
            tls,
            protocols: Vec::new(),
            require_protocol: false,
            extensions: Vec::new(),
            headers: HeaderMap::new(),
            limits: Limits::default(),
            deflate: None,
        })
    }

    /// The URL's host (without port).
    pub fn host(&self) -> &str {
        self.uri.host().unwrap_or_default()
    }

    /// The port: the URL's, or 80 for `ws` and 443 for `wss`.
    pub fn port(&self) -> u16 {
        self.uri
            .port_u16()
            .unwrap_or(if self.tls { 443 } else { 80 })
    }

    /// True for `wss://`.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Offers a subprotocol (call again for more, in order of preference).
    pub fn protocol(mut self, name: impl Into<String>) -> Self {
        self.protocols.push(name.into());
        self
    }

    /// Refuses a server that chooses none of the offered subprotocols (RFC 6455 lets
    /// it; by default the connection then goes ahead with none): the handshake fails
    /// with [`HandshakeError::NoSubprotocolChosen`].
    pub fn require_protocol(mut self, required: bool) -> Self {
        self.require_protocol = required;
        self
    }

    /// Offers an extension, as the full header value of one offer
    /// (e.g. `permessage-deflate; client_max_window_bits`).
    pub fn extension(mut self, offer: impl Into<String>) -> Self {
        self.extensions.push(offer.into());
        self
    }

    /// Offers permessage-deflate with `config` (`None` to offer nothing). The response is
    /// checked against the offer and the result is in [`Negotiated::deflate`].
    pub fn deflate(mut self, config: Option<DeflateConfig>) -> Self {
        self.deflate = config;
        self
    }

    /// The permessage-deflate offer, if any.
    pub fn deflate_config(&self) -> Option<&DeflateConfig> {
        self.deflate.as_ref()
    }

    /// Adds a header (e.g. `Origin`, `Authorization`, `Cookie`).
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, HandshakeError> {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| HandshakeError::Malformed(e.to_string()))?;
        let value =
            HeaderValue::from_str(value).map_err(|e| HandshakeError::Malformed(e.to_string()))?;
        self.headers.append(name, value);
        Ok(self)
    }

    /// Limits on the response head (default 16 KiB, 64 headers).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The request bytes with a fresh random key, and the handshake that checks the
    /// response against that key.
    pub fn encode(&self) -> (Vec<u8>, ClientHandshake) {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).expect("the OS random generator failed");
        let key = base64::engine::general_purpose::STANDARD.encode(nonce);
        let path = self.path();
        let mut out = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: {key}\r\n",
            self.host
        )
        .into_bytes();
        let fields = self.offer_fields();
        let fields = fields.iter().map(|(name, value)| (*name, value.as_bytes()));
        let own = self.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes()));
        for (name, value) in fields.chain(own) {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        (out, self.handshake(Some(accept_key(key.as_bytes()))))
    }

    /// The same offer as an HTTP/2 extended CONNECT (RFC 8441): method CONNECT to the
    /// URL's authority and path (scheme `https` or `http`), the offer's headers, no key;
    /// the caller's HTTP/2 client adds the `:protocol` pseudo-header (`websocket`),
    /// which `http` types carry as an extension of the client's own crate. The
    /// handshake checks the 2xx answer with the same rules as a 101.
    pub fn extended_connect(&self) -> Result<(Request<()>, ClientHandshake), HandshakeError> {
        let uri = Uri::builder()
            .scheme(if self.tls { "https" } else { "http" })
            .authority(self.host.as_str())
            .path_and_query(self.path())
            .build()
            .map_err(|e| HandshakeError::InvalidUrl(e.to_string()))?;
        let mut request = Request::new(());
        *request.method_mut() = Method::CONNECT;
        *request.uri_mut() = uri;
        *request.version_mut() = Version::HTTP_2;
        let headers = request.headers_mut();
        for (name, value) in self.offer_fields() {
            let name = HeaderName::from_bytes(name.as_bytes()).expect("a valid name");
            let value = HeaderValue::try_from(value)
                .map_err(|e| HandshakeError::Malformed(e.to_string()))?;
            headers.insert(name, value);
        }
        for (name, value) in &self.headers {
            headers.append(name, value.clone());
        }
        Ok((request, self.handshake(None)))
    }

    fn path(&self) -> &str {
        self.uri.path_and_query().map_or("/", |p| p.as_str())
    }

    /// The fields of the offer, the same in both HTTP versions: the version,
    /// subprotocols and extensions (permessage-deflate first); the caller's own headers
    /// follow them.
    fn offer_fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![("Sec-WebSocket-Version", "13".to_owned())];
        if !self.protocols.is_empty() {
            fields.push(("Sec-WebSocket-Protocol", self.protocols.join(", ")));
        }
        let offers: Vec<String> = self
            .deflate
            .iter()
            .map(DeflateConfig::offer)
            .chain(self.extensions.iter().cloned())
            .collect();
        if !offers.is_empty() {
            fields.push(("Sec-WebSocket-Extensions", offers.join(", ")));
        }
        fields
    }

    fn handshake(&self, expected_accept: Option<String>) -> ClientHandshake {
        ClientHandshake {
            expected_accept,
            protocols: self.protocols.clone(),
            require_protocol: self.require_protocol && !self.protocols.is_empty(),
            extensions_offered: self.extensions.clone(),
            deflate: self.deflate,
            reader: HeadReader::new(self.limits.max_head_size),
            max_headers: self.limits.max_headers,
            refusal: None,
            max_refusal_body: DEFAULT_MAX_REFUSAL_BODY,
        }
    }
}

/// Checks the server's response to a [`ClientRequest`].
#[derive(Debug)]
pub struct ClientHandshake {
    /// The `Sec-WebSocket-Accept` a 101 must carry; `None` for an HTTP/2 extended
    /// CONNECT, answered with a 2xx and no key.
    expected_accept: Option<String>,
    protocols: Vec<String>,
    require_protocol: bool,
    /// The other extension offers of the request (full header values).
    extensions_offered: Vec<String>,
    deflate: Option<DeflateConfig>,
    reader: HeadReader,
    max_headers: usize,
    /// A refusal whose body is still arriving.
    refusal: Option<Refusal>,
    max_refusal_body: usize,
}

/// A non-101 answer being read.
#[derive(Debug)]
struct Refusal {
    response: RefusedResponse,
    /// The body's length as `Content-Length` announced it, if it did.
    announced: Option<usize>,
}

/// The most of a refusal's body a client keeps by default (64 KiB).
pub const DEFAULT_MAX_REFUSAL_BODY: usize = 64 << 10;

/// What the server agreed to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// The subprotocol the server chose, if any.
    pub protocol: Option<String>,
    /// The raw `Sec-WebSocket-Extensions` values the server accepted.
    pub extensions: Vec<String>,
    /// The permessage-deflate parameters, when offered and accepted.
    pub deflate: Option<DeflateParams>,
}

impl ClientHandshake {
    /// Feeds bytes of the response. Returns the validated response once complete, what
    /// was negotiated, and the bytes that followed the head (frames may follow at once).
    ///
    /// A status other than 101 is a refusal: its body is read too (up to the
    /// `Content-Length` it announces, or the limit, see
    /// [`max_refusal_body`](Self::max_refusal_body)), and then
    /// [`HandshakeError::Refused`] carries status, headers and body. When the transport
    /// ends (or the time runs out) first, call [`finish`](Self::finish).
    pub fn feed(
        &mut self,
        data: &[u8],
    ) -> Result<Option<(Response<()>, Negotiated, Bytes)>, HandshakeError> {
        if self.refusal.is_some() {
            return self.refusal_body(data);
        }
        let Some((head, rest)) = self.reader.push(data)? else {
            return Ok(None);
        };
        let response = parse_response(&head, self.max_headers)?;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            let announced = response
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<usize>().ok());
            let (parts, ()) = response.into_parts();
            self.refusal = Some(Refusal {
                response: RefusedResponse {
                    status: parts.status,
                    headers: parts.headers,
                    body: Bytes::new(),
                    complete: false,
                },
                announced,
            });
            return self.refusal_body(&rest);
        }
        let negotiated = self.validate(&response)?;
        Ok(Some((response, negotiated, rest)))
    }

    /// The most of a refusal's body kept (default [`DEFAULT_MAX_REFUSAL_BODY`]).
    pub fn max_refusal_body(&mut self, bytes: usize) -> &mut Self {
        self.max_refusal_body = bytes;
        self
    }

    /// The transport ended, or the handshake's time ran out: the refusal read so far if
    /// a non-101 head arrived, or [`HandshakeError::Incomplete`].
    pub fn finish(&mut self) -> HandshakeError {
        match self.refusal.take() {
            Some(refusal) => HandshakeError::Refused(Box::new(refusal.response)),
            None => HandshakeError::Incomplete,
        }
    }

    fn refusal_body(
        &mut self,
        data: &[u8],
    ) -> Result<Option<(Response<()>, Negotiated, Bytes)>, HandshakeError> {
        let Some(refusal) = self.refusal.as_mut() else {
            return Ok(None);
        };
        let limit = refusal
            .announced
            .unwrap_or(usize::MAX)
            .min(self.max_refusal_body);
        let body = &mut refusal.response.body;
        let take = data.len().min(limit.saturating_sub(body.len()));
        if take > 0 {
            let mut joined = Vec::with_capacity(body.len() + take);
            joined.extend_from_slice(body);
            joined.extend_from_slice(&data[..take]);
            *body = Bytes::from(joined);
        }
        let whole = refusal.announced.is_some_and(|n| body.len() >= n);
        if whole || body.len() >= limit {
            let mut response = self.refusal.take().expect("checked above").response;
            response.complete = whole;
            return Err(HandshakeError::Refused(Box::new(response)));
        }
        Ok(None)
    }

    /// Validates a response (RFC 6455 section 4.2.2, client side; over HTTP/2, RFC
    /// 8441 section 5: a 2xx without the HTTP/1.1 upgrade headers).
    pub fn validate(&self, response: &Response<()>) -> Result<Negotiated, HandshakeError> {
        let accepted = match self.expected_accept {
            Some(_) => response.status() == StatusCode::SWITCHING_PROTOCOLS,
            None => response.status().is_success(),
        };
        if !accepted {
            let (parts, ()) = response.clone().into_parts();
            return Err(HandshakeError::Refused(Box::new(RefusedResponse {
                status: parts.status,
                headers: parts.headers,
                body: Bytes::new(),
                complete: false,
            })));
        }
        let headers = response.headers();
        if let Some(expected) = &self.expected_accept {
            check_upgrade(headers, expected)?;
        }
        let mut chosen: Vec<&str> =
            header_tokens(headers, &header::SEC_WEBSOCKET_PROTOCOL).collect();
        let protocol = match chosen.len() {
            0 if self.require_protocol => return Err(HandshakeError::NoSubprotocolChosen),
            0 => None,
            1 => {
                let name = chosen.remove(0);
                if !self.protocols.iter().any(|p| p == name) {
                    return Err(HandshakeError::UnofferedSubprotocol(name.to_owned()));
                }
                Some(name.to_owned())
            }
            _ => return Err(HandshakeError::DuplicateHeader("Sec-WebSocket-Protocol")),
        };
        let extensions: Vec<String> = headers
            .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        let mut deflate = None;
        if let Some(first) = extensions.first() {
            match self.deflate {
                Some(config) => {
                    // Other extensions the request offered are the application's.
                    let others: Vec<&str> = self
                        .extensions_offered
                        .iter()
                        .flat_map(|offer| offer.split(','))
                        .filter_map(|element| element.split(';').next())
                        .map(str::trim)
                        .collect();
                    deflate = config.accept_response_among(&extensions, &others)?;
                }
                None if self.extensions_offered.is_empty() => {
                    return Err(HandshakeError::UnofferedExtension(first.clone()));
                }
                None => {}
            }
        }
        Ok(Negotiated {
            protocol,
            extensions,
            deflate,
        })
    }
}

/// The HTTP/1.1 envelope of an accepted handshake: `Upgrade: websocket`,
/// `Connection: Upgrade` and the accept value for our key.
fn check_upgrade(headers: &HeaderMap, expected_accept: &str) -> Result<(), HandshakeError> {
    if !header_tokens(headers, &header::UPGRADE).any(|t| t.eq_ignore_ascii_case("websocket")) {
        return Err(HandshakeError::MissingHeader("Upgrade: websocket"));
    }
    if !header_tokens(headers, &header::CONNECTION).any(|t| t.eq_ignore_ascii_case("upgrade")) {
        return Err(HandshakeError::MissingHeader("Connection: Upgrade"));
    }
    match headers.get(header::SEC_WEBSOCKET_ACCEPT) {
        Some(value) if value.as_bytes() == expected_accept.as_bytes() => Ok(()),
        Some(_) => Err(HandshakeError::AcceptMismatch),
        None => Err(HandshakeError::MissingHeader("Sec-WebSocket-Accept")),
    }
}

/// Parses one complete response head.
pub fn parse_response(head: &[u8], max_headers: usize) -> Result<Response<()>, HandshakeError> {
    let mut slots = vec![httparse::EMPTY_HEADER; max_headers];
    let mut parsed = httparse::Response::new(&mut slots);
    crate::check_parsed(parsed.parse(head), max_headers)?;
    let status = StatusCode::from_u16(parsed.code.unwrap_or_default())
        .map_err(|e| HandshakeError::Malformed(e.to_string()))?;
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = if parsed.version == Some(1) {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    *response.headers_mut() = parse_headers(parsed.headers)?;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn respond(
        handshake: &mut ClientHandshake,
        extra: &str,
        accept: &str,
    ) -> Result<Negotiated, HandshakeError> {
        let wire = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
        );
        handshake
            .feed(wire.as_bytes())
            .map(|r| r.expect("complete").1)
    }

    #[test]
    fn request_carries_the_required_headers_and_a_fresh_key() {
        let request = ClientRequest::new("ws://example.com/").unwrap();
        let (a, _) = request.encode();
        let (b, _) = request.encode();
        let a = String::from_utf8(a).unwrap();
        assert!(a.contains("Host: example.com\r\n"));
        assert!(a.contains("Upgrade: websocket\r\nConnection: Upgrade\r\n"));
        assert!(a.contains("Sec-WebSocket-Version: 13\r\n"));
        let key = |s: &str| {
            s.lines()
                .find(|l| l.starts_with("Sec-WebSocket-Key"))
                .unwrap()
                .to_owned()
        };
        assert_ne!(key(&a), key(&String::from_utf8(b).unwrap()));
        let value = key(&a)["Sec-WebSocket-Key: ".len()..].to_owned();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(value)
                .unwrap()
                .len(),
            16
        );
    }

    #[test]
    fn accepts_a_valid_response_and_hands_back_following_bytes() {
        let (bytes, mut handshake) = ClientRequest::new("ws://a/")
            .unwrap()
            .protocol("chat")
            .encode();
        let text = String::from_utf8(bytes).unwrap();
        let key = text
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap();
        let accept = accept_key(key.as_bytes());
        let wire = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
        );
        let mut wire = wire.into_bytes();
        wire.extend_from_slice(b"\x81\x00");
        let (_, negotiated, rest) = handshake.feed(&wire).unwrap().unwrap();
        assert_eq!(negotiated.protocol.as_deref(), Some("chat"));
        assert_eq!(&rest[..], b"\x81\x00");
    }

    #[test]
    fn rejects_wrong_accept_status_and_unoffered_choices() {
        let request = ClientRequest::new("ws://a/").unwrap().protocol("chat");
        let (bytes, mut handshake) = request.encode();
        let text = String::from_utf8(bytes).unwrap();
        let key = text
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap()
            .to_owned();
        let accept = accept_key(key.as_bytes());
        assert_eq!(
            respond(&mut handshake, "", "bad="),
            Err(HandshakeError::AcceptMismatch)
        );

        let (_, mut handshake) = request.encode();
        // The new handshake has a new key, so rebuild the expectation from it.
        handshake.expected_accept = Some(accept.clone());
        assert_eq!(
            respond(&mut handshake, "Sec-WebSocket-Protocol: other\r\n", &accept),
            Err(HandshakeError::UnofferedSubprotocol("other".into()))
        );
        let (_, mut handshake) = request.encode();
        handshake.expected_accept = Some(accept.clone());
        assert_eq!(
            respond(
                &mut handshake,
                "Sec-WebSocket-Extensions: permessage-deflate\r\n",
                &accept
            ),
            Err(HandshakeError::UnofferedExtension(
                "permessage-deflate".into()
            ))
        );
        let (_, mut handshake) = request.encode();
        // No Content-Length: the body lasts until the transport ends.
        assert!(matches!(
            handshake.feed(b"HTTP/1.1 403 Forbidden\r\n\r\n"),
            Ok(None)
        ));
        match handshake.finish() {
            HandshakeError::Refused(response) => {
                assert_eq!(response.status, StatusCode::FORBIDDEN);
                assert!(response.body.is_empty() && !response.complete);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_refusal_keeps_status_headers_and_body() {
        let (_, mut handshake) = ClientRequest::new("ws://a/").unwrap().encode();
        let head = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\n\
                    Content-Length: 18\r\n\r\norigin not ";
        assert!(matches!(handshake.feed(head.as_bytes()), Ok(None)));
        let error = handshake.feed(b"allowed").unwrap_err();
        let HandshakeError::Refused(response) = &error else {
            panic!("{error:?}");
        };
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers["www-authenticate"], "Bearer");
        assert_eq!(response.text(), Some("origin not allowed"));
        assert!(response.complete);
        assert_eq!(
            error.to_string(),
            "server answered 401 Unauthorized instead of 101 Switching Protocols: \
             origin not allowed"
        );
    }

    #[test]
    fn a_refusal_body_is_cut_at_the_limit() {
        let (_, mut handshake) = ClientRequest::new("ws://a/").unwrap().encode();
        handshake.max_refusal_body(10);
        let error = handshake
            .feed(b"HTTP/1.1 500 Oops\r\n\r\n0123456789abcdef")
            .unwrap_err();
        let HandshakeError::Refused(response) = error else {
            panic!("{error:?}");
        };
        assert_eq!(&response.body[..], b"0123456789");
        assert!(!response.complete);
    }

    #[test]
    fn rejects_urls_that_are_not_ws() {
        assert!(matches!(
            ClientRequest::new("http://a/"),
            Err(HandshakeError::InvalidUrl(_))
        ));
        assert!(matches!(
            ClientRequest::new("ws:///"),
            Err(HandshakeError::InvalidUrl(_))
        ));
        let wss = ClientRequest::new("wss://example.com/x").unwrap();
        assert_eq!(
            (wss.host(), wss.port(), wss.is_tls()),
            ("example.com", 443, true)
        );
    }
}

#[cfg(test)]
mod deflate_tests {
    use super::*;

    #[test]
    fn offers_deflate_and_reports_what_the_server_accepted() {
        let request = ClientRequest::new("ws://a/")
            .unwrap()
            .deflate(Some(DeflateConfig::default()));
        let (bytes, mut handshake) = request.encode();
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.contains(
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
            )
        );
        let key = text
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap();
        let wire = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10\r\n\r\n",
            accept_key(key.as_bytes())
        );
        let (_, negotiated, _) = handshake.feed(wire.as_bytes()).unwrap().unwrap();
        let params = negotiated.deflate.unwrap();
        assert_eq!(params.client_max_window_bits, 10);
    }
}

#[cfg(test)]
mod mixed_extension_tests {
    use super::*;

    fn respond(request: ClientRequest, extensions: &str) -> Result<Negotiated, HandshakeError> {
        let (bytes, mut handshake) = request.encode();
        let text = String::from_utf8(bytes).unwrap();
        let key = text
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap();
        let wire = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Extensions: {extensions}\r\n\r\n",
            accept_key(key.as_bytes())
        );
        handshake.feed(wire.as_bytes()).map(|done| done.unwrap().1)
    }

    fn request() -> ClientRequest {
        ClientRequest::new("ws://a/")
            .unwrap()
            .deflate(Some(DeflateConfig::default()))
            .extension("x-trace; level=2")
    }

    #[test]
    fn deflate_accepted_next_to_another_offered_extension_is_kept() {
        let negotiated = respond(request(), "permessage-deflate, x-trace").unwrap();
        assert!(negotiated.deflate.is_some(), "deflate must not be lost");
        let negotiated = respond(request(), "x-trace; level=2").unwrap();
        assert!(negotiated.deflate.is_none());
        assert_eq!(negotiated.extensions, ["x-trace; level=2"]);
    }

    #[test]
    fn a_client_may_require_one_of_its_subprotocols() {
        let request = ClientRequest::new("ws://a/")
            .unwrap()
            .protocol("chat")
            .require_protocol(true);
        assert!(matches!(
            respond(request, "permessage-deflate"),
            Err(HandshakeError::NoSubprotocolChosen)
        ));
    }

    #[test]
    fn an_extension_that_was_never_offered_still_fails_the_handshake() {
        assert!(matches!(
            respond(request(), "permessage-deflate, x-other"),
            Err(HandshakeError::UnofferedExtension(name)) if name == "x-other"
        ));
        assert!(respond(request(), "permessage-deflate, permessage-deflate").is_err());
    }
}
