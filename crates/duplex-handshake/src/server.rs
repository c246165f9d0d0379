//! The server side: read and validate the client's request, answer it.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version, header};

use crate::deflate::{DeflateConfig, DeflateNegotiation};
use crate::error::HandshakeError;
use crate::head::{HeadReader, Limits};
use crate::{accept_key, header_tokens, parse_headers};
use duplex_core::DeflateParams;

/// Reads a client's opening handshake from bytes that may arrive in any pieces.
///
/// ```
/// use duplex_handshake::{ServerHandshake, Limits};
///
/// let mut handshake = ServerHandshake::new(Limits::default());
/// let wire = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
///     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
///     Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n";
/// let (request, rest) = handshake.feed(wire)?.expect("complete");
/// assert!(rest.is_empty());
/// assert_eq!(request.uri().path(), "/chat");
///
/// let offer = duplex_handshake::ClientOffer::from_request(&request)?;
/// assert_eq!(offer.protocols(), ["chat", "superchat"]);
/// let response = offer.accept(Some("chat"))?;
/// let mut bytes = Vec::new();
/// duplex_handshake::write_response(&response, &mut bytes);
/// assert!(bytes.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
/// assert!(String::from_utf8(bytes).unwrap().contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
/// # Ok::<(), duplex_handshake::HandshakeError>(())
/// ```
#[derive(Debug)]
pub struct ServerHandshake {
    reader: HeadReader,
    limits: Limits,
}

impl ServerHandshake {
    /// A reader enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            reader: HeadReader::new(limits.max_head_size),
            limits,
        }
    }

    /// Feeds bytes read from the transport. Returns the parsed request once its head is
    /// complete, with the bytes that followed it (frames may follow at once). The request
    /// is parsed, not yet validated: see [`ClientOffer::from_request`].
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<(Request<()>, Bytes)>, HandshakeError> {
        let Some((head, rest)) = self.reader.push(data)? else {
            return Ok(None);
        };
        Ok(Some((parse_request(&head, self.limits.max_headers)?, rest)))
    }
}

/// Parses one complete request head.
pub fn parse_request(head: &[u8], max_headers: usize) -> Result<Request<()>, HandshakeError> {
    let mut slots = vec![httparse::EMPTY_HEADER; max_headers];
    let mut parsed = httparse::Request::new(&mut slots);
    crate::check_parsed(parsed.parse(head), max_headers)?;
    let method = parsed.method.unwrap_or_default();
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|e| HandshakeError::Malformed(e.to_string()))?;
    let version = match parsed.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    let mut request = Request::builder()
        .method(method)
        .uri(parsed.path.unwrap_or("/"))
        .version(version)
        .body(())
        .map_err(|e| HandshakeError::Malformed(e.to_string()))?;
    *request.headers_mut() = parse_headers(parsed.headers)?;
    Ok(request)
}

/// A validated client request: what the client offered, whatever the HTTP version it
/// came in. The negotiation (subprotocols, extensions, the application's decision) is
/// the same for both; only the envelope differs: an HTTP/1.1 upgrade carries a key
/// answered in a 101, an HTTP/2 extended CONNECT (RFC 8441) has none and is answered
/// with a 200.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOffer {
    /// The HTTP/1.1 `Sec-WebSocket-Key`; `None` for an HTTP/2 extended CONNECT.
    key: Option<HeaderValue>,
    protocols: Vec<String>,
    extensions: Vec<String>,
}

impl ClientOffer {
    /// Validates a request as a WebSocket opening handshake (RFC 6455 section 4.2.1):
    /// GET, HTTP/1.1, a Host, `Upgrade: websocket` and `Connection: Upgrade` (token lists,
    /// any case), version 13, and a key that is the base64 encoding of 16 bytes.
    pub fn from_request<B>(request: &Request<B>) -> Result<Self, HandshakeError> {
        if request.method() != Method::GET {
            return Err(HandshakeError::MethodNotGet(request.method().to_string()));
        }
        // The upgrade exists in HTTP/1.1 only (HTTP/2 uses extended CONNECT instead).
        if request.version() != Version::HTTP_11 {
            return Err(HandshakeError::UnsupportedHttpVersion);
        }
        Self::from_headers(request.headers())
    }

    /// Validates the headers of a request whose method and version were already checked
    /// (for HTTP servers that hand over a request of their own type).
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, HandshakeError> {
        let mut hosts = headers.get_all(header::HOST).iter();
        match (hosts.next(), hosts.next()) {
            (Some(_), None) => {}
            (None, _) => return Err(HandshakeError::MissingHeader("Host")),
            // RFC 9112 section 3.2: a request with more than one Host is answered 400.
            (Some(_), Some(_)) => return Err(HandshakeError::DuplicateHeader("Host")),
        }
        if !header_tokens(headers, &header::UPGRADE).any(|t| t.eq_ignore_ascii_case("websocket")) {
            return Err(HandshakeError::MissingHeader("Upgrade: websocket"));
        }
        if !header_tokens(headers, &header::CONNECTION).any(|t| t.eq_ignore_ascii_case("upgrade")) {
            return Err(HandshakeError::MissingHeader("Connection: Upgrade"));
        }
        check_version(headers)?;
        let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
        let key = match (keys.next(), keys.next()) {
            (Some(key), None) => key.clone(),
            (None, _) => return Err(HandshakeError::MissingHeader("Sec-WebSocket-Key")),
            (Some(_), Some(_)) => return Err(HandshakeError::DuplicateHeader("Sec-WebSocket-Key")),
        };
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(key.as_bytes())
            .map_err(|_| HandshakeError::InvalidKey)?;
        if decoded.len() != 16 {
            return Err(HandshakeError::InvalidKey);
        }
        Ok(Self::offered(Some(key), headers))
    }

    /// Validates an HTTP/2 extended CONNECT (RFC 8441 sections 4 and 5): method
    /// CONNECT, the `:protocol` pseudo-header `websocket` (HTTP servers keep it apart
    /// from the headers: pass its value), an `:authority` and a `:path`, and version 13.
    /// Subprotocols and extensions are read as over HTTP/1.1; there is no key.
    pub fn from_extended_connect<B>(
        request: &Request<B>,
        protocol: Option<&str>,
    ) -> Result<Self, HandshakeError> {
        if request.method() != Method::CONNECT {
            return Err(HandshakeError::MissingHeader(":method = CONNECT"));
        }
        if !protocol.is_some_and(|p| p.eq_ignore_ascii_case("websocket")) {
            return Err(HandshakeError::MissingHeader(":protocol = websocket"));
        }
        if request.uri().authority().is_none() {
            return Err(HandshakeError::MissingHeader(":authority"));
        }
        if request.uri().path().is_empty() {
            return Err(HandshakeError::MissingHeader(":path"));
        }
        check_version(request.headers())?;
        Ok(Self::offered(None, request.headers()))
    }

    fn offered(key: Option<HeaderValue>, headers: &HeaderMap) -> Self {
        Self {
            key,
            protocols: header_tokens(headers, &header::SEC_WEBSOCKET_PROTOCOL)
                .map(str::to_owned)
                .collect(),
            extensions: headers
                .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::to_owned)
                .collect(),
        }
    }

    /// True when the offer came as an HTTP/2 extended CONNECT (answered with 200).
    pub fn is_http2(&self) -> bool {
        self.key.is_none()
    }

    /// The subprotocols the client offered, in its order of preference.
    pub fn protocols(&self) -> &[String] {
        &self.protocols
    }

    /// The raw `Sec-WebSocket-Extensions` header values the client sent.
    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }

    /// The first of `supported` that the client offered, for servers that rank by the
    /// client's preference.
    pub fn select_protocol<'a>(&self, supported: &[&'a str]) -> Option<&'a str> {
        self.protocols
            .iter()
            .find_map(|offered| supported.iter().find(|s| **s == offered).copied())
    }

    /// The `Sec-WebSocket-Accept` value for this client's key (`None` over HTTP/2,
    /// which has no key).
    pub fn accept_key(&self) -> Option<String> {
        self.key.as_ref().map(|key| accept_key(key.as_bytes()))
    }

    /// The response accepting the connection (101, or 200 over HTTP/2), with
    /// `protocol` if one was chosen.
    /// A protocol the client did not offer is refused with
    /// [`HandshakeError::UnofferedSubprotocol`].
    pub fn accept(&self, protocol: Option<&str>) -> Result<Response<()>, HandshakeError> {
        let mut acceptance = Acceptance::default();
        if let Some(protocol) = protocol {
            acceptance = acceptance.protocol(protocol);
        }
        self.accept_with(&acceptance)
    }

    /// The 101 response with the choices of `acceptance`, plus permessage-deflate when
    /// `deflate` is a policy and the client offered something it accepts. Returns the
    /// negotiated parameters for the engine's
    /// [`enable_deflate`](duplex_core::Connection::enable_deflate).
    pub fn accept_negotiated(
        &self,
        acceptance: &Acceptance,
        deflate: Option<&DeflateConfig>,
    ) -> Result<(Response<()>, Option<DeflateParams>), HandshakeError> {
        let mut response = self.accept_with(acceptance)?;
        let negotiated = deflate.and_then(|policy| policy.negotiate(&self.extensions));
        let params = negotiated.map(|(params, header)| {
            let value =
                HeaderValue::from_str(&header).expect("the negotiated header is ASCII tokens");
            response
                .headers_mut()
                .insert(header::SEC_WEBSOCKET_EXTENSIONS, value);
            params
        });
        Ok((response, params))
    }

    /// The response with the choices and extra headers of `acceptance`: a 101 with
    /// `Upgrade`, `Connection` and `Sec-WebSocket-Accept` over HTTP/1.1; a 200 over
    /// HTTP/2 (RFC 8441 section 5), which has no key to answer and no connection-level
    /// headers.
    pub fn accept_with(&self, acceptance: &Acceptance) -> Result<Response<()>, HandshakeError> {
        let mut response = Response::new(());
        let headers = response.headers_mut();
        headers.clone_from(&acceptance.headers);
        if let Some(accept) = self.accept_key() {
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            headers.insert(
                header::SEC_WEBSOCKET_ACCEPT,
                HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
            );
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        }
        let headers = response.headers_mut();
        if let Some(protocol) = &acceptance.protocol {
            let offered = self.protocols.iter().any(|p| p == protocol);
            let value = HeaderValue::from_str(protocol).ok().filter(|_| offered);
            let value =
                value.ok_or_else(|| HandshakeError::UnofferedSubprotocol(protocol.clone()))?;
            headers.insert(header::SEC_WEBSOCKET_PROTOCOL, value);
        }
        Ok(response)
    }
}

/// Exactly one `Sec-WebSocket-Version: 13` (RFC 6455 section 4.2.1, RFC 8441 section 5).
fn check_version(headers: &HeaderMap) -> Result<(), HandshakeError> {
    let mut versions = headers.get_all(header::SEC_WEBSOCKET_VERSION).iter();
    match (versions.next(), versions.next()) {
        (Some(v), None) if v.as_bytes() == b"13" => Ok(()),
        (Some(v), _) => Err(HandshakeError::UnsupportedVersion(
            String::from_utf8_lossy(v.as_bytes()).into_owned(),
        )),
        (None, _) => Err(HandshakeError::UnsupportedVersion(String::new())),
    }
}

/// A server's decision to accept a request: the subprotocol it chose and extra
/// response headers (cookies, server name). Built by a server's accept callback.
#[derive(Clone, Debug, Default)]
pub struct Acceptance {
    protocol: Option<String>,
    headers: HeaderMap,
}

impl Acceptance {
    /// Chooses a subprotocol the client offered.
    pub fn protocol(mut self, name: impl Into<String>) -> Self {
        self.protocol = Some(name.into());
        self
    }

    /// Adds a response header.
    pub fn header(mut self, name: http::HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// The chosen subprotocol.
    pub fn chosen_protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }
}

/// A server's decision to refuse a request: the HTTP response to send instead of 101.
///
/// ```
/// use duplex_handshake::Rejection;
/// use duplex_handshake::http::StatusCode;
///
/// let rejection = Rejection::new(StatusCode::FORBIDDEN, "not on the list");
/// assert_eq!(rejection.response().status(), StatusCode::FORBIDDEN);
///
/// // With headers: a 401 that says how to authenticate, a 503 that says when to retry.
/// let rejection = Rejection::new(StatusCode::UNAUTHORIZED, "log in first")
///     .with_header("www-authenticate", "Bearer realm=\"chat\"");
/// assert_eq!(rejection.response().headers()["www-authenticate"], "Bearer realm=\"chat\"");
/// ```
#[derive(Debug)]
pub struct Rejection(Box<Response<String>>);

impl Rejection {
    /// A plain-text rejection with `status` and `body`.
    pub fn new(status: StatusCode, body: impl Into<String>) -> Self {
        Self(Box::new(crate::error::text_response(status, body)))
    }

    /// Adds a header to the response (a `WWW-Authenticate` for a 401, a `Retry-After`
    /// for a 503, ...). A name or value that is not valid HTTP is left out, so that a
    /// refusal never fails to be sent; build the response with `http` and convert it
    /// (`Rejection::from`) to handle those errors yourself.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            self.0.headers_mut().append(name, value);
        }
        self
    }

    /// The response to send.
    pub fn response(&self) -> &Response<String> {
        &self.0
    }

    /// The response to send, by value.
    pub fn into_response(self) -> Response<String> {
        *self.0
    }
}

impl From<Response<String>> for Rejection {
    fn from(response: Response<String>) -> Self {
        Self(Box::new(response))
    }
}

/// A response body [`write_response`] can write: `()` for none, or text or bytes.
pub trait ResponseBody {
    /// The body's bytes.
    fn body_bytes(&self) -> &[u8];
}

impl ResponseBody for () {
    fn body_bytes(&self) -> &[u8] {
        &[]
    }
}

impl ResponseBody for String {
    fn body_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl ResponseBody for &str {
    fn body_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl ResponseBody for Vec<u8> {
    fn body_bytes(&self) -> &[u8] {
        self
    }
}

impl ResponseBody for Bytes {
    fn body_bytes(&self) -> &[u8] {
        self
    }
}

/// Writes a response head (and body, if any) as HTTP/1.1 bytes. Responses other than
/// 101 get a `content-length` unless they carry one.
pub fn write_response<B: ResponseBody>(response: &Response<B>, out: &mut Vec<u8>) {
    let status = response.status();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in response.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let body = response.body().body_bytes();
    if status != StatusCode::SWITCHING_PROTOCOLS
        && !response.headers().contains_key(header::CONTENT_LENGTH)
    {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn request_with(replace: &str, with: &str) -> Vec<u8> {
        String::from_utf8(RFC_REQUEST.to_vec())
            .unwrap()
            .replace(replace, with)
            .into_bytes()
    }

    fn validate(wire: &[u8]) -> Result<ClientOffer, HandshakeError> {
        let (request, _) = ServerHandshake::new(Limits::default())
            .feed(wire)?
            .expect("complete head");
        ClientOffer::from_request(&request)
    }

    #[test]
    fn rfc_sample_key_gives_the_rfc_accept_value() {
        let offer = validate(RFC_REQUEST).unwrap();
        assert_eq!(
            offer.accept_key().as_deref(),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        assert_eq!(offer.select_protocol(&["superchat", "chat"]), Some("chat"));
        let response = offer.accept(Some("chat")).unwrap();
        assert_eq!(
            offer.accept(Some("other")).unwrap_err(),
            HandshakeError::UnofferedSubprotocol("other".into())
        );
        let mut bytes = Vec::new();
        write_response(&response, &mut bytes);
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nsec-websocket-protocol: chat\r\n\r\n"
        );
    }

    #[test]
    fn token_lists_are_case_insensitive() {
        let wire = request_with("Connection: Upgrade", "Connection: keep-alive, UPGRADE");
        let wire = String::from_utf8(wire)
            .unwrap()
            .replace("Upgrade: websocket", "upgrade: WebSocket");
        validate(wire.as_bytes()).unwrap();
    }

    #[test]
    fn rejects_non_get_with_405() {
        let error = validate(&request_with("GET /chat", "POST /chat")).unwrap_err();
        assert_eq!(error.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(error.response().headers()["allow"], "GET");
    }

    #[test]
    fn rejects_http_1_0() {
        let error = validate(&request_with("HTTP/1.1", "HTTP/1.0")).unwrap_err();
        assert_eq!(error, HandshakeError::UnsupportedHttpVersion);
    }

    #[test]
    fn wrong_version_gets_426_with_version_13() {
        let error = validate(&request_with("Version: 13", "Version: 8")).unwrap_err();
        assert_eq!(error.status(), StatusCode::UPGRADE_REQUIRED);
        let response = error.response();
        assert_eq!(response.headers()["sec-websocket-version"], "13");
        let mut bytes = Vec::new();
        write_response(&response, &mut bytes);
        assert!(bytes.starts_with(b"HTTP/1.1 426 Upgrade Required\r\n"));
    }

    #[test]
    fn rejects_key_that_is_not_16_bytes() {
        for key in ["dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZQ==", "!!!!"] {
            let error = validate(&request_with("dGhlIHNhbXBsZSBub25jZQ==", key)).unwrap_err();
            assert_eq!(error, HandshakeError::InvalidKey, "{key}");
            assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn rejects_missing_upgrade_connection_host_or_key() {
        for (line, name) in [
            ("Upgrade: websocket\r\n", "Upgrade: websocket"),
            ("Connection: Upgrade\r\n", "Connection: Upgrade"),
            ("Host: server.example.com\r\n", "Host"),
            (
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
                "Sec-WebSocket-Key",
            ),
        ] {
            let error = validate(&request_with(line, "")).unwrap_err();
            assert_eq!(error, HandshakeError::MissingHeader(name));
        }
    }

    #[test]
    fn two_host_headers_get_400() {
        let error =
            validate(&request_with("Origin:", "Host: evil.example\r\nOrigin:")).unwrap_err();
        assert_eq!(error, HandshakeError::DuplicateHeader("Host"));
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn head_over_16_kib_gets_431() {
        let filler = format!("X-Filler: {}\r\n", "a".repeat(17 << 10));
        let wire = request_with("Origin:", &format!("{filler}Origin:"));
        let error = ServerHandshake::new(Limits::default())
            .feed(&wire)
            .unwrap_err();
        assert_eq!(error, HandshakeError::HeadTooLarge { limit: 16 << 10 });
        assert_eq!(error.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }

    #[test]
    fn too_many_headers_gets_431() {
        let filler: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
        let wire = request_with("Origin:", &format!("{filler}Origin:"));
        let error = ServerHandshake::new(Limits::default())
            .feed(&wire)
            .unwrap_err();
        assert_eq!(error, HandshakeError::TooManyHeaders { limit: 64 });
        assert_eq!(error.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }

    #[test]
    fn megabyte_head_one_byte_at_a_time_is_refused_at_the_limit() {
        let mut handshake = ServerHandshake::new(Limits::default());
        let mut fed = 0usize;
        let result = loop {
            match handshake.feed(b"a") {
                Ok(None) => fed += 1,
                other => break other,
            }
            assert!(fed <= 1 << 20, "never stopped");
        };
        assert_eq!(
            result.unwrap_err(),
            HandshakeError::HeadTooLarge { limit: 16 << 10 }
        );
        assert!(fed <= (16 << 10) + 4);
    }

    #[test]
    fn bytes_after_the_head_are_handed_back() {
        let mut wire = RFC_REQUEST.to_vec();
        wire.extend_from_slice(&[0x81, 0x80, 1, 2, 3, 4]);
        let mut handshake = ServerHandshake::new(Limits::default());
        let (_, rest) = handshake.feed(&wire).unwrap().unwrap();
        assert_eq!(&rest[..], &[0x81, 0x80, 1, 2, 3, 4]);
    }

    #[test]
    fn request_split_at_every_byte_parses_the_same() {
        for cut in 0..RFC_REQUEST.len() {
            let mut handshake = ServerHandshake::new(Limits::default());
            let first = handshake.feed(&RFC_REQUEST[..cut]).unwrap();
            let (request, rest) = match first {
                Some(done) => done,
                None => handshake.feed(&RFC_REQUEST[cut..]).unwrap().unwrap(),
            };
            assert!(rest.is_empty());
            assert_eq!(request.headers()["origin"], "http://example.com");
        }
    }
}

#[cfg(test)]
mod http2_tests {
    use super::*;

    fn connect(protocol: Option<&str>, extra: &[(&str, &str)]) -> (Request<()>, Option<String>) {
        let mut builder = Request::builder()
            .method(Method::CONNECT)
            .version(Version::HTTP_2)
            .uri("https://example.com/chat");
        for (name, value) in extra {
            builder = builder.header(*name, *value);
        }
        (builder.body(()).unwrap(), protocol.map(str::to_owned))
    }

    #[test]
    fn an_extended_connect_is_answered_200_without_the_http1_envelope() {
        let (request, protocol) = connect(
            Some("websocket"),
            &[
                ("sec-websocket-version", "13"),
                ("sec-websocket-protocol", "chat.v2, chat.v1"),
                ("sec-websocket-extensions", "permessage-deflate"),
            ],
        );
        let offer = ClientOffer::from_extended_connect(&request, protocol.as_deref()).unwrap();
        assert!(offer.is_http2());
        assert_eq!(offer.accept_key(), None);
        assert_eq!(offer.protocols(), ["chat.v2", "chat.v1"]);
        let acceptance = Acceptance::default().protocol("chat.v1");
        let (response, deflate) = offer
            .accept_negotiated(&acceptance, Some(&DeflateConfig::default()))
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        for absent in [
            header::UPGRADE,
            header::CONNECTION,
            header::SEC_WEBSOCKET_ACCEPT,
        ] {
            assert!(!headers.contains_key(&absent), "{absent}");
        }
        assert_eq!(headers[header::SEC_WEBSOCKET_PROTOCOL], "chat.v1");
        assert!(deflate.is_some());
        assert!(headers.contains_key(header::SEC_WEBSOCKET_EXTENSIONS));
    }

    #[test]
    fn a_bad_extended_connect_says_what_is_wrong() {
        let version = [("sec-websocket-version", "13")];
        let (request, _) = connect(None, &version);
        assert_eq!(
            ClientOffer::from_extended_connect(&request, None),
            Err(HandshakeError::MissingHeader(":protocol = websocket"))
        );
        assert_eq!(
            ClientOffer::from_extended_connect(&request, Some("webtransport")),
            Err(HandshakeError::MissingHeader(":protocol = websocket"))
        );
        let (request, _) = connect(None, &[("sec-websocket-version", "12")]);
        let error = ClientOffer::from_extended_connect(&request, Some("websocket")).unwrap_err();
        assert_eq!(error.status(), StatusCode::UPGRADE_REQUIRED);
        let get = Request::get("https://example.com/")
            .header("sec-websocket-version", "13")
            .body(())
            .unwrap();
        assert_eq!(
            ClientOffer::from_extended_connect(&get, Some("websocket")),
            Err(HandshakeError::MissingHeader(":method = CONNECT"))
        );
        let relative = Request::builder()
            .method(Method::CONNECT)
            .uri("/chat")
            .header("sec-websocket-version", "13")
            .body(())
            .unwrap();
        assert_eq!(
            ClientOffer::from_extended_connect(&relative, Some("websocket")),
            Err(HandshakeError::MissingHeader(":authority"))
        );
    }

    #[test]
    fn the_client_offer_and_the_server_answer_meet_over_http2() {
        let request = crate::ClientRequest::new("wss://example.com:8443/room?x=1")
            .unwrap()
            .protocol("chat.v1")
            .deflate(Some(DeflateConfig::default()))
            .header("authorization", "Bearer t")
            .unwrap();
        let (connect, handshake) = request.extended_connect().unwrap();
        assert_eq!(connect.method(), Method::CONNECT);
        assert_eq!(connect.uri(), "https://example.com:8443/room?x=1");
        assert!(!connect.headers().contains_key(header::SEC_WEBSOCKET_KEY));
        assert_eq!(connect.headers()["authorization"], "Bearer t");
        let offer = ClientOffer::from_extended_connect(&connect, Some("websocket")).unwrap();
        let (response, server_deflate) = offer
            .accept_negotiated(
                &Acceptance::default().protocol("chat.v1"),
                Some(&DeflateConfig::default()),
            )
            .unwrap();
        let negotiated = handshake.validate(&response).unwrap();
        assert_eq!(negotiated.protocol.as_deref(), Some("chat.v1"));
        assert_eq!(negotiated.deflate.is_some(), server_deflate.is_some());
        // A 101 is not an HTTP/2 answer; a 4xx is a refusal.
        let mut switching = response.clone();
        *switching.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        assert!(handshake.validate(&switching).is_err());
        let mut forbidden = response;
        *forbidden.status_mut() = StatusCode::FORBIDDEN;
        assert!(matches!(
            handshake.validate(&forbidden),
            Err(HandshakeError::Refused(r)) if r.status == StatusCode::FORBIDDEN
        ));
    }
}
