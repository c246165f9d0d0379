//! Who may subscribe and publish: the application's [`Authorize`] hook, asked with the
//! request that opened the connection, and a per-connection publish rate limit.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use duplex_core::Message;

/// The request that opened a connection, as the hub keeps it for [`Authorize`]: the
/// method, the request target (path and query), the headers and the peer's address.
/// Build it from the handshake request (with the `tokio` feature, `From<&http::Request>`)
/// and give it to [`Hub::connection`](crate::Hub::connection).
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// `GET` for an HTTP/1.1 upgrade, `CONNECT` over HTTP/2.
    pub method: String,
    /// The path and query, as sent.
    pub target: String,
    /// Header names (lowercase) and values (headers that are not UTF-8 are left out).
    pub headers: Vec<(String, String)>,
    /// The client's address, when the server knows it.
    pub peer: Option<SocketAddr>,
}

impl Request {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The raw (not percent-decoded) value of query parameter `key`.
    pub fn query(&self, key: &str) -> Option<&str> {
        let (_, query) = self.target.split_once('?')?;
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == key).then_some(v)
        })
    }
}

#[cfg(feature = "tokio")]
impl<B> From<&duplex_tokio::http::Request<B>> for Request {
    fn from(request: &duplex_tokio::http::Request<B>) -> Self {
        Self {
            method: request.method().to_string(),
            target: request
                .uri()
                .path_and_query()
                .map_or_else(|| request.uri().path().to_owned(), |p| p.to_string()),
            headers: request
                .headers()
                .iter()
                .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect(),
            peer: None,
        }
    }
}

/// The application's decision on each subscribe and publish of a connection. Both
/// methods allow by default; an `Err` carries the reason, returned to the caller as
/// [`HubError::Denied`](crate::HubError::Denied). Called on the connection's task or
/// thread before the hub does anything, so keep them quick (no network round trip; a
/// token check, a lookup in memory).
pub trait Authorize: Send + Sync + 'static {
    /// May the connection opened by `request` follow `topic` (subscribe or resume)?
    fn subscribe(&self, request: &Request, topic: &str) -> Result<(), String> {
        let _ = (request, topic);
        Ok(())
    }

    /// May it publish `message` to `topic`?
    fn publish(&self, request: &Request, topic: &str, message: &Message) -> Result<(), String> {
        let _ = (request, topic, message);
        Ok(())
    }
}

/// A per-connection publish rate limit: a token bucket of `burst` publishes, refilled
/// at `per_second`. A publish past it fails with
/// [`HubError::RateLimited`](crate::HubError::RateLimited) (nothing is published); the
/// application answers with an error or closes the connection with
/// [`HubError::close_code`](crate::HubError::close_code) (1008).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Publishes per second, on average.
    pub per_second: f64,
    /// Publishes allowed at once (at least 1).
    pub burst: u32,
}

/// One connection's token bucket.
pub(crate) struct Bucket {
    limit: RateLimit,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub(crate) fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            tokens: f64::from(limit.burst.max(1)),
            at: Instant::now(),
        }
    }

    /// Takes a token; `Err` with the wait until the next one when there is none.
    pub(crate) fn take(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        let burst = f64::from(self.limit.burst.max(1));
        let rate = self.limit.per_second.max(f64::MIN_POSITIVE);
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                ((1.0 - self.tokens) / rate).min(3600.0),
            ))
        }
    }
}

impl fmt::Debug for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bucket")
            .field("limit", &self.limit)
            .field("tokens", &self.tokens)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_its_burst_then_its_rate() {
        let mut b = Bucket::new(RateLimit {
            per_second: 20.0,
            burst: 3,
        });
        for _ in 0..3 {
            assert!(b.take().is_ok());
        }
        let wait = b.take().unwrap_err();
        assert!(wait <= Duration::from_millis(50) && wait > Duration::ZERO);
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.take().is_ok());
        assert!(b.take().is_err());
    }

    #[test]
    fn requests_answer_headers_and_query_parameters() {
        let r = Request {
            method: "GET".into(),
            target: "/ws?room=a&token=t%201&flag".into(),
            headers: vec![("authorization".into(), "Bearer x".into())],
            peer: None,
        };
        assert_eq!(r.header("Authorization"), Some("Bearer x"));
        assert_eq!(r.query("token"), Some("t%201"));
        assert_eq!(r.query("flag"), Some(""));
        assert_eq!(r.query("nope"), None);
    }
}
