//! Reaching WebSocket servers through a proxy: HTTP CONNECT (RFC 9110 section 9.3.6)
//! or SOCKS5 (RFC 1928, with RFC 1929 username/password), chosen in the [`Config`] or
//! from the usual environment variables.
//!
//! ```
//! use duplex_tokio::{Config, Proxy};
//!
//! // Explicitly:
//! let config = Config::default().proxy(Proxy::parse("socks5://user:secret@127.0.0.1:1080")?);
//! // Or from HTTPS_PROXY / HTTP_PROXY / ALL_PROXY / NO_PROXY when connecting:
//! let config = Config::default().proxy_from_env();
//!
//! // The rule the environment follows, with the variables given by a function:
//! let env = |name: &str| match name {
//!     "HTTPS_PROXY" => Some("http://proxy.internal:3128".to_owned()),
//!     "NO_PROXY" => Some("localhost,.corp.example".to_owned()),
//!     _ => None,
//! };
//! assert!(Proxy::for_url_from("wss://echo.example/", env)?.is_some());
//! assert!(Proxy::for_url_from("wss://api.corp.example/", env)?.is_none());
//! assert!(Proxy::for_url_from("ws://echo.example/", env)?.is_none()); // HTTP_PROXY is unset
//! # Ok::<(), duplex_tokio::ProxyError>(())
//! ```

use std::fmt;
use std::io;
use std::net::IpAddr;

use base64::Engine as _;
use duplex_handshake::http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::Config;
use crate::error::HandshakeError;

/// The kind of a [`Proxy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyKind {
    /// An HTTP proxy asked for a tunnel with `CONNECT host:port`.
    HttpConnect,
    /// A SOCKS5 proxy; the target's name is sent to the proxy, which resolves it.
    Socks5,
}

/// A proxy to reach WebSocket servers through: its kind, address and optional
/// credentials (Basic `Proxy-Authorization` for HTTP, username/password for SOCKS5).
/// The tunnel carries the TCP connection, so `ws://` and `wss://` (whose TLS runs end
/// to end with the server) both work through either kind.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    kind: ProxyKind,
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|(user, _)| (user, "***")),
            )
            .finish()
    }
}

/// Why a proxy did not give a tunnel, or a proxy setting could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProxyError {
    /// The proxy URL or environment value is not `http://`, `socks5://` or
    /// `socks5h://` with a host and port.
    InvalidUrl(String),
    /// The HTTP proxy answered CONNECT with this status (407: credentials needed or
    /// wrong; 403: the target is not allowed).
    ConnectRefused(StatusCode),
    /// The SOCKS5 proxy accepts none of the offered authentication methods.
    NoAcceptableAuth,
    /// The SOCKS5 proxy refused the username and password.
    AuthRejected,
    /// The SOCKS5 proxy answered the connect request with this reply code (RFC 1928
    /// section 6: 2 not allowed, 4 host unreachable, 5 connection refused, ...).
    SocksReply(u8),
    /// The proxy's answer broke its protocol (or, for HTTP, exceeded the configured
    /// handshake head limits).
    Malformed(&'static str),
    /// The proxy at `proxy` (`host:port`) could not be reached, or the connection to it
    /// failed before the tunnel was open.
    Io {
        /// The proxy's `host:port`.
        proxy: String,
        /// What failed.
        error: std::io::Error,
    },
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidUrl(why) => write!(f, "invalid proxy: {why}"),
            Self::ConnectRefused(status) => write!(f, "the proxy answered CONNECT with {status}"),
            Self::NoAcceptableAuth => {
                f.write_str("the SOCKS5 proxy accepts none of our authentication methods")
            }
            Self::AuthRejected => f.write_str("the SOCKS5 proxy refused the credentials"),
            Self::SocksReply(code) => write!(
                f,
                "the SOCKS5 proxy could not connect (reply {code}: {})",
                socks_reply_text(*code)
            ),
            Self::Malformed(what) => write!(f, "malformed proxy answer: {what}"),
            Self::Io { proxy, error } => write!(f, "proxy {proxy}: {error}"),
        }
    }
}

impl std::error::Error for ProxyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

fn socks_reply_text(code: u8) -> &'static str {
    match code {
        1 => "general failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown",
    }
}

impl Proxy {
    /// An HTTP proxy at `host:port`, asked for tunnels with CONNECT.
    pub fn http(host: impl Into<String>, port: u16) -> Self {
        Self {
            kind: ProxyKind::HttpConnect,
            host: host.into(),
            port,
            credentials: None,
        }
    }

    /// A SOCKS5 proxy at `host:port`.
    pub fn socks5(host: impl Into<String>, port: u16) -> Self {
        Self {
            kind: ProxyKind::Socks5,
            host: host.into(),
            port,
            credentials: None,
        }
    }

    /// Credentials: Basic `Proxy-Authorization` for an HTTP proxy, RFC 1929
    /// username/password for SOCKS5 (each at most 255 bytes).
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some((username.into(), password.into()));
        self
    }

    /// A proxy from a URL: `http://[user:password@]host[:port]` (port 80 by default;
    /// a bare `host:port` is taken as HTTP, as curl does), or `socks5://` / `socks5h://`
    /// (port 1080 by default; both let the proxy resolve the name). Percent-escapes in
    /// the credentials are decoded.
    pub fn parse(url: &str) -> Result<Self, ProxyError> {
        let invalid = |why: &str| ProxyError::InvalidUrl(format!("{why} in {url:?}"));
        let (kind, rest, default_port) = match url.split_once("://") {
            None => (ProxyKind::HttpConnect, url, 80),
            Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
                "http" => (ProxyKind::HttpConnect, rest, 80),
                "socks5" | "socks5h" => (ProxyKind::Socks5, rest, 1080),
                other => return Err(invalid(&format!("unsupported scheme {other:?}"))),
            },
        };
        let rest = rest.split('/').next().unwrap_or_default();
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, rest),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| invalid("unclosed ["))?;
            let port = match after.strip_prefix(':') {
                Some(port) => port.parse().map_err(|_| invalid("bad port"))?,
                None if after.is_empty() => default_port,
                None => return Err(invalid("junk after the address")),
            };
            (host.to_owned(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((host, port)) => (
                    host.to_owned(),
                    port.parse().map_err(|_| invalid("bad port"))?,
                ),
                None => (hostport.to_owned(), default_port),
            }
        };
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let credentials = userinfo.map(|userinfo| {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            (percent_decode(user), percent_decode(password))
        });
        Ok(Self {
            kind,
            host,
            port,
            credentials,
        })
    }

    /// The proxy the environment gives for `url`, or `None` for a direct connection:
    /// `HTTPS_PROXY` for `wss://` and `HTTP_PROXY` for `ws://` (each also lowercase),
    /// else `ALL_PROXY`; none when `NO_PROXY` matches the host (`*`, a host name, or a
    /// domain: `example.com` and `.example.com` both match `a.example.com`; an entry
    /// with `:port` matches only that port). Empty values count as unset.
    pub fn for_url_from<F>(url: &str, env: F) -> Result<Option<Self>, ProxyError>
    where
        F: Fn(&str) -> Option<String>,
    {
        let request = duplex_handshake::ClientRequest::new(url)
            .map_err(|error| ProxyError::InvalidUrl(error.to_string()))?;
        let var = |upper: &str| {
            env(upper)
                .or_else(|| env(&upper.to_ascii_lowercase()))
                .filter(|value| !value.trim().is_empty())
        };
        let host = request.host().trim_start_matches('[').trim_end_matches(']');
        if let Some(no_proxy) = var("NO_PROXY") {
            if no_proxy_matches(&no_proxy, host, request.port()) {
                return Ok(None);
            }
        }
        let scheme_var = if request.is_tls() {
            "HTTPS_PROXY"
        } else {
            "HTTP_PROXY"
        };
        match var(scheme_var).or_else(|| var("ALL_PROXY")) {
            Some(value) => Self::parse(value.trim()).map(Some),
            None => Ok(None),
        }
    }

    /// [`for_url_from`](Self::for_url_from) with the process environment.
    pub fn for_url(url: &str) -> Result<Option<Self>, ProxyError> {
        Self::for_url_from(url, |name| std::env::var(name).ok())
    }

    /// The kind of proxy.
    pub fn kind(&self) -> ProxyKind {
        self.kind
    }

    /// The proxy's host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn no_proxy_matches(list: &str, host: &str, port: u16) -> bool {
    list.split(',').map(str::trim).any(|entry| {
        if entry == "*" {
            return true;
        }
        let (name, entry_port) = match entry.rsplit_once(':') {
            Some((name, p)) if !name.contains(':') || name.ends_with(']') => {
                (name, p.parse::<u16>().ok())
            }
            _ => (entry, None),
        };
        if entry_port.is_some_and(|p| p != port) {
            return false;
        }
        let name = name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_start_matches("*.")
            .trim_start_matches('.');
        if name.is_empty() {
            return false;
        }
        host.eq_ignore_ascii_case(name)
            || (host.len() > name.len()
                && host[host.len() - name.len()..].eq_ignore_ascii_case(name)
                && host.as_bytes()[host.len() - name.len() - 1] == b'.')
    })
}

/// Opens a TCP connection to `host:port`: directly, or through the proxy the
/// configuration names (explicitly or from the environment for `url`).
pub(crate) async fn dial_for(
    config: &Config,
    url_tls: bool,
    host: &str,
    port: u16,
) -> Result<TcpStream, HandshakeError> {
    let proxy = match &config.proxy {
        crate::config::ProxySetting::Direct => None,
        crate::config::ProxySetting::Explicit(proxy) => Some(proxy.clone()),
        crate::config::ProxySetting::FromEnv => {
            let scheme = if url_tls { "wss" } else { "ws" };
            let bracketed = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]")
            } else {
                host.to_owned()
            };
            Proxy::for_url(&format!("{scheme}://{bracketed}:{port}/"))?
        }
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = match &proxy {
        None => TcpStream::connect((bare, port)).await?,
        Some(proxy) => {
            // An I/O failure on the way to the tunnel names the proxy, not the target.
            let named = |error: std::io::Error| ProxyError::Io {
                proxy: format!("{}:{}", proxy.host, proxy.port),
                error,
            };
            let mut tcp = TcpStream::connect((proxy.host.as_str(), proxy.port))
                .await
                .map_err(named)?;
            let tunnel = match proxy.kind {
                ProxyKind::HttpConnect => {
                    http_connect(&mut tcp, proxy, bare, port, config.limits).await
                }
                ProxyKind::Socks5 => socks5_connect(&mut tcp, proxy, bare, port).await,
            };
            match tunnel {
                Ok(()) => {}
                Err(HandshakeError::Io(error)) => return Err(named(error).into()),
                Err(other) => return Err(other),
            }
            tcp
        }
    };
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// [`dial_for`] for a URL whose scheme the caller knows is `wss://`.
#[cfg(feature = "http2")]
pub(crate) async fn dial(
    config: &Config,
    host: &str,
    port: u16,
) -> Result<TcpStream, HandshakeError> {
    dial_for(config, true, host, port).await
}

/// Asks an HTTP proxy for a tunnel; its answer head is held to the handshake limits.
async fn http_connect(
    tcp: &mut TcpStream,
    proxy: &Proxy,
    host: &str,
    port: u16,
    limits: duplex_handshake::Limits,
) -> Result<(), HandshakeError> {
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some((user, password)) = &proxy.credentials {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        head.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes()).await?;
    // Read the answer a byte at a time: what follows its head belongs to the tunnel
    // (it is short and read once per connection).
    let mut answer = Vec::with_capacity(256);
    while !answer.ends_with(b"\r\n\r\n") {
        if answer.len() >= limits.max_head_size {
            return Err(
                ProxyError::Malformed("CONNECT answer head over the head size limit").into(),
            );
        }
        let byte = tcp.read_u8().await.map_err(|error| {
            if error.kind() == io::ErrorKind::UnexpectedEof {
                HandshakeError::Proxy(ProxyError::Malformed(
                    "the proxy closed the connection during CONNECT",
                ))
            } else {
                error.into()
            }
        })?;
        answer.push(byte);
    }
    let response = duplex_handshake::parse_response(&answer, limits.max_headers)
        .map_err(|_| ProxyError::Malformed("CONNECT answer is not an HTTP response"))?;
    if !response.status().is_success() {
        return Err(ProxyError::ConnectRefused(response.status()).into());
    }
    Ok(())
}

async fn socks5_connect(
    tcp: &mut TcpStream,
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> Result<(), HandshakeError> {
    // Greeting: version 5 and our methods (0 = none, 2 = username/password).
    let greeting: &[u8] = if proxy.credentials.is_some() {
        &[5, 2, 0, 2]
    } else {
        &[5, 1, 0]
    };
    tcp.write_all(greeting).await?;
    let mut choice = [0u8; 2];
    tcp.read_exact(&mut choice).await?;
    if choice[0] != 5 {
        return Err(ProxyError::Malformed("not a SOCKS5 answer").into());
    }
    match (choice[1], &proxy.credentials) {
        (0, _) => {}
        (2, Some((user, password))) => {
            if user.len() > 255 || password.len() > 255 {
                return Err(
                    ProxyError::InvalidUrl("SOCKS5 credentials over 255 bytes".into()).into(),
                );
            }
            let mut auth = vec![1, user.len() as u8];
            auth.extend_from_slice(user.as_bytes());
            auth.push(password.len() as u8);
            auth.extend_from_slice(password.as_bytes());
            tcp.write_all(&auth).await?;
            let mut status = [0u8; 2];
            tcp.read_exact(&mut status).await?;
            if status[1] != 0 {
                return Err(ProxyError::AuthRejected.into());
            }
        }
        (0xff, _) => return Err(ProxyError::NoAcceptableAuth.into()),
        _ => return Err(ProxyError::Malformed("SOCKS5 method we did not offer").into()),
    }
    let mut request = vec![5, 1, 0];
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            request.push(1);
            request.extend_from_slice(&ip.octets());
        }
        Ok(IpAddr::V6(ip)) => {
            request.push(4);
            request.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            if host.len() > 255 {
                return Err(ProxyError::InvalidUrl("host name over 255 bytes".into()).into());
            }
            request.push(3);
            request.push(host.len() as u8);
            request.extend_from_slice(host.as_bytes());
        }
    }
    request.extend_from_slice(&port.to_be_bytes());
    tcp.write_all(&request).await?;
    let mut reply = [0u8; 4];
    tcp.read_exact(&mut reply).await?;
    if reply[0] != 5 {
        return Err(ProxyError::Malformed("not a SOCKS5 reply").into());
    }
    if reply[1] != 0 {
        return Err(ProxyError::SocksReply(reply[1]).into());
    }
    // The bound address, which we do not need, in the form its type says.
    let address_len = match reply[3] {
        1 => 4,
        4 => 16,
        3 => usize::from(tcp.read_u8().await?),
        _ => return Err(ProxyError::Malformed("SOCKS5 reply address type").into()),
    };
    let mut bound = vec![0u8; address_len + 2];
    tcp.read_exact(&mut bound).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proxy_urls() {
        let p = Proxy::parse("http://u%40x:p%3Aw@proxy.example:3128").unwrap();
        assert_eq!(p.kind(), ProxyKind::HttpConnect);
        assert_eq!((p.host(), p.port()), ("proxy.example", 3128));
        assert_eq!(p.credentials, Some(("u@x".into(), "p:w".into())));
        let p = Proxy::parse("socks5h://[::1]").unwrap();
        assert_eq!(
            (p.kind(), p.host(), p.port()),
            (ProxyKind::Socks5, "::1", 1080)
        );
        let p = Proxy::parse("127.0.0.1:8888/").unwrap();
        assert_eq!((p.kind(), p.port()), (ProxyKind::HttpConnect, 8888));
        assert!(Proxy::parse("ftp://x:1").is_err());
        assert!(Proxy::parse("http://:80").is_err());
        assert!(Proxy::parse("http://x:port").is_err());
        assert!(!format!("{:?}", Proxy::parse("http://u:secret@h:1").unwrap()).contains("secret"));
    }

    #[test]
    fn environment_rules() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let all = env(&[("all_proxy", "socks5://s:1080"), ("HTTP_PROXY", "")]);
        let p = Proxy::for_url_from("ws://a.example/", all)
            .unwrap()
            .unwrap();
        assert_eq!(p.kind(), ProxyKind::Socks5);
        let https = env(&[
            ("https_proxy", "http://h:3128"),
            ("no_proxy", "b.example:443, .corp"),
        ]);
        assert!(
            Proxy::for_url_from("wss://a.example/", https)
                .unwrap()
                .is_some()
        );
        assert!(
            Proxy::for_url_from("wss://b.example/", https)
                .unwrap()
                .is_none()
        );
        assert!(
            Proxy::for_url_from("wss://b.example:8443/", https)
                .unwrap()
                .is_some()
        );
        assert!(
            Proxy::for_url_from("wss://x.corp/", https)
                .unwrap()
                .is_none()
        );
        assert!(
            Proxy::for_url_from("wss://xcorp/", https)
                .unwrap()
                .is_some()
        );
        assert!(
            Proxy::for_url_from("ws://a.example/", https)
                .unwrap()
                .is_none()
        );
        let star = env(&[("HTTPS_PROXY", "http://h:1"), ("NO_PROXY", "*")]);
        assert!(Proxy::for_url_from("wss://a/", star).unwrap().is_none());
        let v6 = env(&[("HTTP_PROXY", "http://h:1"), ("NO_PROXY", "::1,[::2]:80")]);
        assert!(Proxy::for_url_from("ws://[::1]:9/", v6).unwrap().is_none());
        assert!(Proxy::for_url_from("ws://[::2]/", v6).unwrap().is_none());
        let bad = env(&[("HTTP_PROXY", "gopher://h")]);
        assert!(Proxy::for_url_from("ws://a/", bad).is_err());
    }
}
