//! The HTTP/1.1 side of the opening handshake (RFC 6455 section 4) as a test client or a
//! raw server writes it: the accept key, upgrade requests and 101 responses with extra
//! header lines, and helpers to take a response head apart.

/// The `Sec-WebSocket-Key` of RFC 6455 section 1.3, used by the fixed-key requests.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// The `Sec-WebSocket-Accept` that [`KEY`] must get back (RFC 6455 section 1.3).
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    use sha1::Digest as _;
    base64(&sha1::Sha1::digest(
        format!("{}{}", key.trim(), WS_GUID).as_bytes(),
    ))
}

/// An opening request for `path` on `host` with `key`, plus `extra` header lines (each
/// ending in `\r\n`, written as given: duplicates and odd values included).
pub fn upgrade_request_with_key(path: &str, host: &str, key: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// [`upgrade_request_with_key`] with [`KEY`], so that the answer must carry [`ACCEPT`].
pub fn upgrade_request(path: &str, host: &str, extra: &str) -> Vec<u8> {
    upgrade_request_with_key(path, host, KEY, extra)
}

/// The 101 a server answers with `accept`, `extra` header lines included.
pub fn response_101(accept: &str, extra: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// Splits an HTTP head (up to and including `\r\n\r\n`) off `bytes`; `None` while the
/// blank line has not arrived.
pub fn split_head(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    Some(bytes.split_at(end))
}

/// The status code of an HTTP response head.
pub fn status_of(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\r').next()?;
    let text = std::str::from_utf8(line).ok()?;
    text.split(' ').nth(1)?.parse().ok()
}

/// The first value of header `name` (any case) in a head (the start line skipped).
pub fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// All values of a header that may be repeated, joined with `, `.
pub fn header_values(head: &str, name: &str) -> Option<String> {
    let vals: Vec<&str> = head
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .collect();
    (!vals.is_empty()).then(|| vals.join(", "))
}

/// A response's status and header lines, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// The header lines, names and values trimmed, in order.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// Parses a response head (with or without the final blank line): `HTTP/1.x`, a
    /// numeric status, `name: value` lines.
    pub fn parse(head: &[u8]) -> Result<Head, String> {
        let text = std::str::from_utf8(head).map_err(|_| "response head is not UTF-8")?;
        let mut lines = text.trim_end_matches("\r\n").split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
            return Err(format!("bad status line {status_line:?}"));
        };
        if !version.starts_with("HTTP/1.") {
            return Err(format!("bad status line {status_line:?}"));
        }
        let status = code
            .parse()
            .map_err(|_| format!("bad status code in {status_line:?}"))?;
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("malformed header line {line:?}"))?;
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        Ok(Head { status, headers })
    }

    /// The first value of header `name` (any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether a comma-separated header `name` holds `token` (any case).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_accept_example() {
        assert_eq!(accept_key(KEY), ACCEPT);
        assert_eq!(accept_key(" dGhlIHNhbXBsZSBub25jZQ== "), ACCEPT);
    }

    #[test]
    fn base64_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn requests_and_responses() {
        let req = upgrade_request("/chat", "127.0.0.1:1", "Origin: x\r\n");
        assert_eq!(
            req,
            b"GET /chat HTTP/1.1\r\nHost: 127.0.0.1:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: x\r\n\r\n"
        );
        let resp = response_101(ACCEPT, "Sec-WebSocket-Protocol: chat\r\n");
        let (head, rest) = split_head(&resp).unwrap();
        assert!(rest.is_empty());
        assert_eq!(status_of(head), Some(101));
        let parsed = Head::parse(head).unwrap();
        assert_eq!(parsed.status, 101);
        assert_eq!(parsed.get("sec-websocket-accept"), Some(ACCEPT));
        assert!(parsed.has_token("connection", "upgrade"));
        let text = std::str::from_utf8(head).unwrap();
        assert_eq!(header_value(text, "SEC-WEBSOCKET-PROTOCOL"), Some("chat"));
        assert_eq!(split_head(b"HTTP/1.1 101 x\r\n"), None);
    }

    #[test]
    fn repeated_headers_join() {
        let head = "HTTP/1.1 101 x\r\nA: 1\r\nb: 2\r\na: 3\r\n";
        assert_eq!(header_values(head, "a").as_deref(), Some("1, 3"));
        assert_eq!(header_values(head, "c"), None);
        assert!(Head::parse(b"SIP/2.0 200 OK\r\n").is_err());
        assert!(Head::parse(b"HTTP/1.1 101 x\r\nno colon\r\n").is_err());
    }
}
