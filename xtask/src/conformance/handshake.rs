//! The HTTP/1.1 opening handshake (RFC 6455 section 4), client and server
//! side, with a private SHA-1 and base64 so the suite depends on nothing of
//! the project under test.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const MAX_HEAD: usize = 16 * 1024;

/// SHA-1 of `data` (FIPS 180-4); only used for `Sec-WebSocket-Accept`.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for (i, c) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, v) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    base64(&sha1(format!("{}{}", key.trim(), WS_GUID).as_bytes()))
}

/// A parsed `ws://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// Host name or address (brackets kept for IPv6).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl WsUrl {
    /// Parses `ws://HOST[:PORT][/PATH]`.
    pub fn parse(url: &str) -> Result<WsUrl, String> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| format!("only ws:// URLs are supported: {url}"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        let (host, port) = if let Some(end) = authority.strip_prefix('[').and_then(|a| a.find(']'))
        {
            let host = &authority[..end + 2];
            let port = authority[end + 2..].strip_prefix(':');
            (host.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        let port = match port {
            Some(p) => p.parse().map_err(|_| format!("bad port in {url}"))?,
            None => 80,
        };
        if host.is_empty() {
            return Err(format!("no host in {url}"));
        }
        Ok(WsUrl { host, port, path })
    }

    /// `host:port` for connecting.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The URL with `path` replaced.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn with_path(&self, path: &str) -> WsUrl {
        WsUrl {
            host: self.host.clone(),
            port: self.port,
            path: path.to_string(),
        }
    }
}

/// Reads an HTTP head up to the blank line; returns it and any bytes after.
async fn read_head(stream: &mut TcpStream) -> Result<(String, Vec<u8>), String> {
    let mut buf = Vec::with_capacity(1024);
    let mut tmp = [0u8; 2048];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf[i + 4..].to_vec();
            let head = String::from_utf8_lossy(&buf[..i]).into_owned();
            return Ok((head, rest));
        }
        if buf.len() > MAX_HEAD {
            return Err("HTTP head too large".into());
        }
        let n = stream
            .read(&mut tmp)
            .await
            .map_err(|e| format!("reading HTTP head: {e}"))?;
        if n == 0 {
            return Err(format!(
                "connection closed during handshake after {} bytes",
                buf.len()
            ));
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// All values of a header that may be repeated, joined with `, `.
fn header_all(head: &str, name: &str) -> Option<String> {
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

/// Client side: sends the upgrade request (with `extensions` offered, if
/// any) and checks the 101 answer. Returns bytes received after the
/// response head (early frames) and the `Sec-WebSocket-Extensions` answer.
pub async fn client(
    stream: &mut TcpStream,
    url: &WsUrl,
    key: [u8; 16],
    timeout: Duration,
    extensions: Option<&str>,
) -> Result<(Vec<u8>, Option<String>), String> {
    let key = base64(&key);
    let ext = extensions
        .map(|e| format!("Sec-WebSocket-Extensions: {e}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n{ext}User-Agent: duplex-xtask-conformance\r\n\r\n",
        url.path, url.host, url.port, key
    );
    let fut = async {
        stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| format!("sending handshake: {e}"))?;
        read_head(stream).await
    };
    let (head, rest) = tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| "handshake timed out".to_string())??;
    let status = head.lines().next().unwrap_or("");
    let mut parts = status.split_whitespace();
    if parts.next() != Some("HTTP/1.1") || parts.next() != Some("101") {
        return Err(format!("expected HTTP/1.1 101, got {status:?}"));
    }
    let want = accept_key(&key);
    match header(&head, "sec-websocket-accept") {
        Some(v) if v == want => {}
        Some(v) => return Err(format!("Sec-WebSocket-Accept {v:?}, expected {want:?}")),
        None => return Err("no Sec-WebSocket-Accept header".into()),
    }
    if !header(&head, "upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
        return Err("missing or wrong Upgrade header".into());
    }
    Ok((rest, header_all(&head, "sec-websocket-extensions")))
}

/// What a client asked for in its upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Path without the query.
    pub path: String,
    /// Decoded query parameters in order.
    pub query: Vec<(String, String)>,
}

impl Request {
    /// First value of a query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hexval = |c: u8| (c as char).to_digit(16);
                match (hexval(b[i + 1]), hexval(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the request line target into path and query.
pub fn parse_target(target: &str) -> Request {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    Request {
        path: path.to_string(),
        query,
    }
}

/// What a client sent in its upgrade request.
#[derive(Debug)]
pub struct Upgrade {
    /// The request target.
    pub request: Request,
    /// Bytes received after the request head (early frames).
    pub early: Vec<u8>,
    /// The client's `Sec-WebSocket-Extensions` (all headers joined).
    pub offered: Option<String>,
    /// The `Sec-WebSocket-Extensions` value the suite answered with.
    pub accepted: Option<String>,
}

/// Server side: reads the upgrade request and answers 101 (or 400);
/// `extensions` decides the `Sec-WebSocket-Extensions` answer from the
/// request and the client's offer.
pub async fn server(
    stream: &mut TcpStream,
    timeout: Duration,
    extensions: impl FnOnce(&Request, Option<&str>) -> Option<String>,
) -> Result<Upgrade, String> {
    let (head, rest) = tokio::time::timeout(timeout, read_head(stream))
        .await
        .map_err(|_| "handshake timed out".to_string())??;
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next(), parts.next());
    let key = header(&head, "sec-websocket-key");
    let upgrade = header(&head, "upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let (Some("GET"), Some(target), Some(key), true) = (method, target, key, upgrade) else {
        let body =
            "This is the duplex conformance fuzzing server; connect with a WebSocket client.\n";
        let resp = format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            body.len(),
            body
        );
        let _ = stream.write_all(resp.as_bytes()).await;
        return Err(format!("not a WebSocket upgrade request: {line:?}"));
    };
    let request = parse_target(target);
    let offered = header_all(&head, "sec-websocket-extensions");
    let accepted = extensions(&request, offered.as_deref());
    let ext = accepted
        .as_ref()
        .map(|e| format!("Sec-WebSocket-Extensions: {e}\r\n"))
        .unwrap_or_default();
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n{ext}Server: duplex-xtask-conformance\r\n\r\n",
        accept_key(key)
    );
    stream
        .write_all(resp.as_bytes())
        .await
        .map_err(|e| format!("sending handshake response: {e}"))?;
    Ok(Upgrade {
        request,
        early: rest,
        offered,
        accepted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn sha1_vectors() {
        assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        let long = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        assert_eq!(hex(&sha1(long)), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
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
    fn rfc6455_accept_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn parses_urls_and_targets() {
        let u = WsUrl::parse("ws://127.0.0.1:9001/echo?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 9001, "/echo?x=1")
        );
        let u = WsUrl::parse("ws://[::1]:80").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("[::1]", 80, "/")
        );
        assert!(WsUrl::parse("http://x").is_err());
        assert!(WsUrl::parse("ws://x:notaport/").is_err());
        let r = parse_target("/runCase?case=12&agent=duplex%2Dtokio+x");
        assert_eq!(r.path, "/runCase");
        assert_eq!(r.param("case"), Some("12"));
        assert_eq!(r.param("agent"), Some("duplex-tokio x"));
        assert_eq!(parse_target("/a?b=%zz").param("b"), Some("%zz"));
    }
}
