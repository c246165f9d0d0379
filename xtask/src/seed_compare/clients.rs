//! One client per transport, and what it saw: every update's sequence number is
//! checked (missed, duplicated) and its publish time gives the delivery latency.

use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use tokio::time::{Instant, sleep, sleep_until, timeout, timeout_at};

use super::h2::{H2, ServerFrames, next_data};
use super::wire::{Conn, SseParser, WsClient, get};

/// The ways to get the feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Poll,
    LongPoll,
    Sse,
    Ws,
    WsDeflate,
    WsDeflateCtx,
    H2Poll,
    H2LongPoll,
    H2Sse,
    H2Ws,
}

impl Transport {
    pub const ALL: [Transport; 10] = [
        Transport::Poll,
        Transport::LongPoll,
        Transport::Sse,
        Transport::Ws,
        Transport::WsDeflate,
        Transport::WsDeflateCtx,
        Transport::H2Poll,
        Transport::H2LongPoll,
        Transport::H2Sse,
        Transport::H2Ws,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Poll => "poll",
            Self::LongPoll => "long-poll",
            Self::Sse => "sse",
            Self::Ws => "ws",
            Self::WsDeflate => "ws-deflate",
            Self::WsDeflateCtx => "ws-deflate-ctx",
            Self::H2Poll => "h2-poll",
            Self::H2LongPoll => "h2-long-poll",
            Self::H2Sse => "h2-sse",
            Self::H2Ws => "h2-ws",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Poll => "short polling",
            Self::LongPoll => "long polling",
            Self::Sse => "HTTP streaming (SSE)",
            Self::Ws => "WebSocket",
            Self::WsDeflate => "WebSocket + deflate, shared frame",
            Self::WsDeflateCtx => "WebSocket + deflate, per connection",
            Self::H2Poll => "short polling, HTTP/2",
            Self::H2LongPoll => "long polling, HTTP/2",
            Self::H2Sse => "SSE over HTTP/2",
            Self::H2Ws => "WebSocket over HTTP/2 (RFC 8441)",
        }
    }

    /// Where a polling transport polls: `/poll` for short polling, `/long` for long.
    fn poll_path(self) -> &'static str {
        match self {
            Self::Poll | Self::H2Poll => "/poll",
            _ => "/long",
        }
    }

    pub fn parse(name: &str) -> Option<Transport> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// Which request headers the clients send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Headers {
    /// What Chrome sends with `fetch`, `EventSource` and `WebSocket` from a page on the
    /// same origin (no cookies).
    Browser,
    /// A host, a user agent and an `Accept`, like curl.
    Minimal,
}

impl Headers {
    /// Headers for an HTTP request accepting `accept`.
    fn http(self, host: &str, accept: &str, event_stream: bool) -> String {
        match self {
            Headers::Minimal => format!("User-Agent: seed-compare\r\nAccept: {accept}\r\n"),
            Headers::Browser => {
                let no_cache = if event_stream {
                    "Cache-Control: no-cache\r\n"
                } else {
                    ""
                };
                format!(
                    "Connection: keep-alive\r\n{no_cache}sec-ch-ua-platform: \"Linux\"\r\n\
                     User-Agent: {CHROME}\r\n\
                     sec-ch-ua: \"Google Chrome\";v=\"131\", \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\"\r\n\
                     sec-ch-ua-mobile: ?0\r\nAccept: {accept}\r\nSec-Fetch-Site: same-origin\r\n\
                     Sec-Fetch-Mode: cors\r\nSec-Fetch-Dest: empty\r\nReferer: http://{host}/\r\n\
                     Accept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-US,en;q=0.9\r\n"
                )
            }
        }
    }

    /// The same for HTTP/2: lower-case names, without the connection-specific ones
    /// HTTP/2 forbids.
    fn http2(self, host: &str, accept: &str, event_stream: bool) -> Vec<(String, String)> {
        self.http(host, accept, event_stream)
            .lines()
            .filter_map(|line| line.split_once(": "))
            .filter(|(name, _)| !name.eq_ignore_ascii_case("connection"))
            .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
            .collect()
    }

    /// Headers for a WebSocket handshake besides the handshake's own.
    fn websocket(self, host: &str) -> String {
        match self {
            Headers::Minimal => "User-Agent: seed-compare\r\n".to_owned(),
            Headers::Browser => format!(
                "Pragma: no-cache\r\nCache-Control: no-cache\r\nUser-Agent: {CHROME}\r\n\
                 Origin: http://{host}\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n\
                 Accept-Language: en-US,en;q=0.9\r\n"
            ),
        }
    }
}

const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                      Chrome/131.0.0.0 Safari/537.36";

/// What every client of a run shares.
pub struct Settings {
    /// `HOST:PORT` of the ticker.
    pub addr: String,
    pub clients: usize,
    pub poll_interval: Duration,
    pub headers: Headers,
    /// Messages per second of the chat case's speaker.
    pub rate: f64,
}

/// What one client saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub delivered: u64,
    pub missed: u64,
    /// Updates that came again or out of order.
    pub duplicated: u64,
    /// Publish-to-receipt times, in microseconds.
    pub latencies_us: Vec<u32>,
    /// Bytes written and read at the socket, all connections of this client.
    pub up: u64,
    pub down: u64,
    /// Of those, the bytes of setting up the stream (handshake or response head; for
    /// polling the first request, which only learns where the feed is).
    pub setup_up: u64,
    pub setup_down: u64,
    pub connections: u64,
    /// HTTP requests (or WebSocket handshakes) sent.
    pub requests: u64,
    /// The negotiated `Sec-WebSocket-Extensions`.
    pub extensions: Option<String>,
    pub error: Option<String>,
    /// Updates that arrived bunched: less than a tenth of their publish interval after
    /// the update before them (a poll answer with several, or a stalled stream
    /// catching up).
    pub bunched: u64,
    last_seq: Option<u64>,
    /// The previous update's publish time and receipt time, microseconds.
    last_times: Option<(u64, u64)>,
}

impl Tally {
    fn deliver(&mut self, quote: &Quote, now_us: u64) {
        if let Some(last) = self.last_seq {
            if quote.seq <= last {
                self.duplicated += 1;
                return;
            }
            self.missed += quote.seq - last - 1;
        }
        self.last_seq = Some(quote.seq);
        self.delivered += 1;
        if let Some((published, received)) = self.last_times
            && now_us.saturating_sub(received) * 10 < quote.ts.saturating_sub(published)
        {
            self.bunched += 1;
        }
        self.last_times = Some((quote.ts, now_us));
        let latency = now_us.saturating_sub(quote.ts).min(u64::from(u32::MAX));
        self.latencies_us.push(latency as u32);
    }

    fn deliver_json(&mut self, json: &[u8]) -> io::Result<()> {
        let now = now_micros();
        let quote: Quote = serde_json::from_slice(json).map_err(invalid)?;
        self.deliver(&quote, now);
        Ok(())
    }

    /// The bytes of an HTTP/2 connection so far, all of them.
    fn count_h2(&mut self, h2: &H2) {
        (self.up, self.down) = (h2.up(), h2.down());
    }

    /// The bytes of an HTTP/2 connection so far, as its setup.
    fn setup_h2(&mut self, h2: &H2) {
        (self.setup_up, self.setup_down) = (h2.up(), h2.down());
    }

    fn count(&mut self, conn: &Conn) {
        self.up += conn.up;
        self.down += conn.down;
    }
}

#[derive(Deserialize)]
struct Quote {
    seq: u64,
    ts: u64,
}

#[derive(Deserialize)]
struct PollBody {
    last: u64,
    updates: Vec<Quote>,
}

fn invalid(error: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.to_string())
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// Runs client number `index` of `transport` from `start` until `deadline`.
pub async fn run(
    transport: Transport,
    settings: &Settings,
    index: usize,
    start: Instant,
    deadline: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let result = match transport {
        Transport::Poll | Transport::LongPoll => {
            poll(transport, settings, index, start, deadline, &mut tally).await
        }
        Transport::Sse => sse(settings, deadline, &mut tally).await,
        Transport::Ws | Transport::WsDeflate | Transport::WsDeflateCtx => {
            websocket(transport, settings, index, deadline, &mut tally).await
        }
        Transport::H2Poll | Transport::H2LongPoll => {
            h2_poll(transport, settings, index, start, deadline, &mut tally).await
        }
        Transport::H2Sse => h2_sse(settings, deadline, &mut tally).await,
        Transport::H2Ws => h2_websocket(settings, deadline, &mut tally).await,
    };
    if let Err(error) = result {
        tally.error = Some(format!("{} client {index}: {error}", transport.name()));
    }
    tally
}

/// Short polling (a request every poll interval, each client at its own phase) or
/// long polling (a request as soon as the previous answer came), on one keep-alive
/// connection.
async fn poll(
    transport: Transport,
    settings: &Settings,
    index: usize,
    start: Instant,
    deadline: Instant,
    tally: &mut Tally,
) -> io::Result<()> {
    let path = transport.poll_path();
    let headers = settings.headers.http(&settings.addr, "*/*", false);
    let mut conn: Option<Conn> = None;
    let mut since: Option<u64> = None;
    // Clients poll at evenly spread phases; the first poll within one interval.
    let phase = settings
        .poll_interval
        .mul_f64((index + 1) as f64 / settings.clients as f64);
    let mut next = start + phase;
    loop {
        let target = match since {
            None => path.to_owned(),
            Some(since) => format!("{path}?since={since}"),
        };
        if since.is_some() && transport == Transport::Poll {
            if next >= deadline {
                break;
            }
            sleep_until(next).await;
            next += settings.poll_interval;
        }
        if conn.is_none() {
            conn = Some(Conn::connect(&settings.addr).await?);
            tally.connections += 1;
        }
        let c = conn.as_mut().unwrap();
        let exchange = async {
            c.send(&get(&target, &settings.addr, &headers)).await?;
            c.response().await
        };
        let (head, body) = match timeout_at(deadline, exchange).await {
            Ok(response) => response?,
            Err(_) => break, // a long poll still waiting at the end
        };
        tally.requests += 1;
        let now = now_micros();
        if head.status != 200 {
            return Err(invalid(format!("{target} answered {}", head.status)));
        }
        let body: PollBody = serde_json::from_slice(&body).map_err(invalid)?;
        match since {
            None => {
                tally.last_seq = Some(body.last);
                tally.setup_up = c.up;
                tally.setup_down = c.down;
            }
            Some(_) => {
                for quote in &body.updates {
                    tally.deliver(quote, now);
                }
            }
        }
        since = tally.last_seq;
        if head
            .get("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            tally.count(&conn.take().unwrap());
        }
    }
    if let Some(conn) = conn {
        tally.count(&conn);
    }
    Ok(())
}

/// HTTP streaming: one chunked `text/event-stream` response.
async fn sse(settings: &Settings, deadline: Instant, tally: &mut Tally) -> io::Result<()> {
    let mut conn = Conn::connect(&settings.addr).await?;
    tally.connections = 1;
    tally.requests = 1;
    let headers = settings
        .headers
        .http(&settings.addr, "text/event-stream", true);
    let result = async {
        conn.send(&get("/sse", &settings.addr, &headers)).await?;
        let head = conn.read_head().await?;
        if head.status != 200 || head.get("transfer-encoding") != Some("chunked") {
            return Err(invalid(format!("/sse answered {head:?}")));
        }
        tally.setup_up = conn.up;
        tally.setup_down = conn.down;
        let mut parser = SseParser::default();
        loop {
            let chunk = match timeout_at(deadline, conn.chunk()).await {
                Err(_) => return Ok(()),
                Ok(chunk) => chunk?,
            };
            let Some(chunk) = chunk else {
                return Err(invalid("the event stream ended"));
            };
            for data in parser.feed(&chunk) {
                tally.deliver_json(data.as_bytes())?;
            }
        }
    }
    .await;
    tally.count(&conn);
    result
}

/// A WebSocket: the handshake, then one message per update.
async fn websocket(
    transport: Transport,
    settings: &Settings,
    index: usize,
    deadline: Instant,
    tally: &mut Tally,
) -> io::Result<()> {
    let (path, offer) = match transport {
        Transport::Ws => ("/ws?deflate=0", false),
        Transport::WsDeflateCtx => ("/ws?deflate=ctx", true),
        _ => ("/ws", true),
    };
    let conn = Conn::connect(&settings.addr).await?;
    tally.connections = 1;
    tally.requests = 1;
    let headers = settings.headers.websocket(&settings.addr);
    let seed = now_micros() ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut ws = WsClient::handshake(conn, path, &settings.addr, &headers, offer, seed).await?;
    tally.extensions = ws.extensions.clone();
    tally.setup_up = ws.conn.up;
    tally.setup_down = ws.conn.down;
    let result = async {
        loop {
            let message = match timeout_at(deadline, ws.next_message()).await {
                Err(_) => return Ok(()),
                Ok(message) => message?,
            };
            let Some(payload) = message else {
                return Err(invalid("the server closed the WebSocket"));
            };
            tally.deliver_json(&payload)?;
        }
    }
    .await;
    if result.is_ok() {
        let _ = timeout(Duration::from_secs(1), ws.close()).await;
    }
    tally.count(&ws.conn);
    result
}

/// Polling over one HTTP/2 connection: the same schedule as `poll`, each request a new
/// stream.
async fn h2_poll(
    transport: Transport,
    settings: &Settings,
    index: usize,
    start: Instant,
    deadline: Instant,
    tally: &mut Tally,
) -> io::Result<()> {
    let path = transport.poll_path();
    let headers = settings.headers.http2(&settings.addr, "*/*", false);
    let mut h2 = H2::connect(&settings.addr).await?;
    tally.connections = 1;
    let phase = settings
        .poll_interval
        .mul_f64((index + 1) as f64 / settings.clients as f64);
    let mut next = start + phase;
    let result = async {
        loop {
            let target = match tally.last_seq {
                None => path.to_owned(),
                Some(since) => format!("{path}?since={since}"),
            };
            if tally.last_seq.is_some() && transport == Transport::H2Poll {
                if next >= deadline {
                    return Ok(());
                }
                sleep_until(next).await;
                next += settings.poll_interval;
            }
            let body = match timeout_at(deadline, h2.get(&target, &headers)).await {
                Ok(body) => body?,
                Err(_) => return Ok(()),
            };
            tally.requests += 1;
            let now = now_micros();
            let body: PollBody = serde_json::from_slice(&body).map_err(invalid)?;
            if tally.last_seq.is_none() {
                tally.last_seq = Some(body.last);
                tally.setup_h2(&h2);
            } else {
                for quote in &body.updates {
                    tally.deliver(quote, now);
                }
            }
        }
    }
    .await;
    tally.count_h2(&h2);
    result
}

/// The event stream as one HTTP/2 stream.
async fn h2_sse(settings: &Settings, deadline: Instant, tally: &mut Tally) -> io::Result<()> {
    let mut h2 = H2::connect(&settings.addr).await?;
    tally.connections = 1;
    tally.requests = 1;
    let headers = settings
        .headers
        .http2(&settings.addr, "text/event-stream", true);
    let result = async {
        let (parts, mut body, _) = h2
            .request(http::Method::GET, "/sse", &headers, None)
            .await?;
        if parts.status != 200 {
            return Err(invalid(format!("/sse answered {}", parts.status)));
        }
        tally.setup_h2(&h2);
        let mut parser = SseParser::default();
        h2_deliver(&mut body, deadline, tally, "the event stream", |data| {
            Ok(parser
                .feed(data)
                .into_iter()
                .map(String::into_bytes)
                .collect())
        })
        .await
    }
    .await;
    tally.count_h2(&h2);
    result
}

/// Delivers the updates a stream carries until `deadline`; `split` cuts its bytes into
/// updates (server-sent events, WebSocket frames).
async fn h2_deliver(
    body: &mut h2::RecvStream,
    deadline: Instant,
    tally: &mut Tally,
    what: &str,
    mut split: impl FnMut(&[u8]) -> io::Result<Vec<Vec<u8>>>,
) -> io::Result<()> {
    loop {
        let data = match timeout_at(deadline, next_data(body)).await {
            Err(_) => return Ok(()),
            Ok(data) => data?.ok_or_else(|| invalid(format!("{what} ended")))?,
        };
        for update in split(&data)? {
            tally.deliver_json(&update)?;
        }
    }
}

/// A WebSocket over HTTP/2 (RFC 8441), without permessage-deflate.
async fn h2_websocket(settings: &Settings, deadline: Instant, tally: &mut Tally) -> io::Result<()> {
    let mut h2 = H2::connect(&settings.addr).await?;
    tally.connections = 1;
    tally.requests = 1;
    let result = async {
        let (mut body, _send) = h2_ws_open(&mut h2, settings, "/ws?deflate=0").await?;
        tally.setup_h2(&h2);
        let mut frames = ServerFrames::default();
        h2_deliver(&mut body, deadline, tally, "the WebSocket stream", |data| {
            frames.feed(data)
        })
        .await
    }
    .await;
    tally.count_h2(&h2);
    result
}

/// Opens a WebSocket on `path` over the HTTP/2 connection (an extended CONNECT with a
/// browser's headers): its two directions.
async fn h2_ws_open(
    h2: &mut H2,
    settings: &Settings,
    path: &str,
) -> io::Result<(h2::RecvStream, h2::SendStream<bytes::Bytes>)> {
    let addr = &settings.addr;
    let mut headers = settings.headers.http2(addr, "*/*", false);
    headers.retain(|(name, _)| !name.starts_with("sec-fetch") && name != "accept");
    headers.push(("sec-websocket-version".into(), "13".into()));
    headers.push(("origin".into(), format!("http://{addr}")));
    // The server's SETTINGS (which allow extended CONNECT) come with its first answer;
    // a first request gets them.
    if !h2.extended_connect_allowed() {
        h2.get("/stats", &[]).await?;
    }
    if !h2.extended_connect_allowed() {
        return Err(invalid("the server does not allow extended CONNECT"));
    }
    let (parts, body, send) = h2
        .request(http::Method::CONNECT, path, &headers, Some("websocket"))
        .await?;
    if parts.status != 200 {
        return Err(invalid(format!(
            "extended CONNECT answered {}",
            parts.status
        )));
    }
    Ok((body, send))
}

/// The chat case's speaker: one more client, which sends `settings.rate` messages a
/// second to everyone the way its transport can. HTTP: a `POST /say` on a keep-alive
/// connection of its own (the receiving one is busy with a long poll or a stream;
/// over HTTP/2, a stream of one connection). WebSocket: a text message on a
/// connection that only speaks (`listen=0`). `requests` counts the messages.
pub async fn speak(
    transport: Transport,
    settings: &Settings,
    start: Instant,
    deadline: Instant,
) -> Tally {
    let mut tally = Tally::default();
    if let Err(error) = speaker(transport, settings, start, deadline, &mut tally).await {
        tally.error = Some(format!("{} speaker: {error}", transport.name()));
    }
    tally
}

async fn speaker(
    transport: Transport,
    settings: &Settings,
    start: Instant,
    deadline: Instant,
    tally: &mut Tally,
) -> io::Result<()> {
    let addr = &settings.addr;
    let interval = Duration::from_secs_f64(1.0 / settings.rate);
    // Room for every receiver to connect first, and for the last messages to arrive.
    let (mut next, end) = (
        start + Duration::from_secs(1),
        deadline - Duration::from_millis(500),
    );
    let message = |n: u64| {
        let ts = now_micros();
        format!(r#"{{"ts":{ts},"from":"speaker","text":"message {n} to everyone in the room"}}"#)
    };
    tally.connections = 1;
    match transport {
        Transport::Poll | Transport::LongPoll | Transport::Sse => {
            let mut conn = Conn::connect(addr).await?;
            let headers = settings.headers.http(addr, "*/*", false);
            let mut n = 0;
            while next < end {
                sleep_until(next).await;
                next += interval;
                n += 1;
                let body = message(n);
                let request = format!(
                    "POST /say HTTP/1.1\r\nHost: {addr}\r\n{headers}Origin: http://{addr}\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                conn.send(request.as_bytes()).await?;
                let (head, _) = conn.response().await?;
                if head.status != 204 {
                    return Err(invalid(format!("POST /say answered {}", head.status)));
                }
                tally.requests += 1;
            }
            tally.count(&conn);
        }
        Transport::Ws | Transport::WsDeflate | Transport::WsDeflateCtx => {
            let (path, offer) = match transport {
                Transport::Ws => ("/ws?deflate=0&listen=0", false),
                Transport::WsDeflateCtx => ("/ws?deflate=ctx&listen=0", true),
                _ => ("/ws?listen=0", true),
            };
            let conn = Conn::connect(addr).await?;
            let headers = settings.headers.websocket(addr);
            let mut ws =
                WsClient::handshake(conn, path, addr, &headers, offer, now_micros()).await?;
            tally.setup_up = ws.conn.up;
            tally.setup_down = ws.conn.down;
            let mut n = 0;
            while next < end {
                sleep_until(next).await;
                next += interval;
                n += 1;
                ws.send_frame(0x1, message(n).as_bytes()).await?;
                tally.requests += 1;
            }
            let _ = timeout(Duration::from_secs(1), ws.close()).await;
            tally.count(&ws.conn);
        }
        Transport::H2Poll | Transport::H2LongPoll | Transport::H2Sse => {
            let mut h2 = H2::connect(addr).await?;
            let mut headers = settings.headers.http2(addr, "*/*", false);
            headers.push(("origin".into(), format!("http://{addr}")));
            headers.push(("content-type".into(), "application/json".into()));
            let mut n = 0;
            while next < end {
                sleep_until(next).await;
                next += interval;
                n += 1;
                let status = h2.post("/say", &headers, message(n).into()).await?;
                if status != 204 {
                    return Err(invalid(format!("POST /say answered {status}")));
                }
                tally.requests += 1;
            }
            tally.count_h2(&h2);
        }
        Transport::H2Ws => {
            let mut h2 = H2::connect(addr).await?;
            let (_body, mut stream) =
                h2_ws_open(&mut h2, settings, "/ws?deflate=0&listen=0").await?;
            tally.setup_h2(&h2);
            let mut rng = now_micros() | 1;
            let mut n = 0;
            while next < end {
                sleep_until(next).await;
                next += interval;
                n += 1;
                let mask = (super::wire::xorshift(&mut rng) as u32).to_be_bytes();
                let frame = wire_kit::frame(0x81, message(n).as_bytes(), Some(mask));
                stream.send_data(frame.into(), false).map_err(invalid)?;
                tally.requests += 1;
            }
            // Let the last frames leave before the connection goes.
            sleep(Duration::from_millis(200)).await;
            tally.count_h2(&h2);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_checks() {
        let mut tally = Tally::default();
        for seq in [5, 6, 6, 9, 8, 10] {
            tally.deliver(&Quote { seq, ts: 0 }, 1);
        }
        assert_eq!((tally.delivered, tally.missed, tally.duplicated), (4, 2, 2));
    }
}
