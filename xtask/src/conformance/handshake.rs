//! The HTTP/1.1 opening handshake (RFC 6455 section 4), client and server
//! side, written here (with the `sha1` and `base64` crates) so the suite depends on
//! nothing of the project under test.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use wire_kit::{
    accept_key, base64, header_value, header_values, response_101, upgrade_request_with_key,
};

const MAX_HEAD: usize = 16 * 1024;

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
    let req = upgrade_request_with_key(
        &url.path,
        &url.addr(),
        &key,
        &format!("{ext}User-Agent: duplex-xtask-conformance\r\n"),
    );
    let fut = async {
        stream
            .write_all(&req)
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
    match header_value(&head, "sec-websocket-accept") {
        Some(v) if v == want => {}
        Some(v) => return Err(format!("Sec-WebSocket-Accept {v:?}, expected {want:?}")),
        None => return Err("no Sec-WebSocket-Accept header".into()),
    }
    if !header_value(&head, "upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
        return Err("missing or wrong Upgrade header".into());
    }
    Ok((rest, header_values(&head, "sec-websocket-extensions")))
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
    let key = header_value(&head, "sec-websocket-key");
    let upgrade =
        header_value(&head, "upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
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
    let offered = header_values(&head, "sec-websocket-extensions");
    let accepted = extensions(&request, offered.as_deref());
    let ext = accepted
        .as_ref()
        .map(|e| format!("Sec-WebSocket-Extensions: {e}\r\n"))
        .unwrap_or_default();
    let resp = response_101(
        &accept_key(key),
        &format!("{ext}Server: duplex-xtask-conformance\r\n"),
    );
    stream
        .write_all(&resp)
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
