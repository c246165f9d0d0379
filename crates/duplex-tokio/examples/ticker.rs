//! One stock ticker feed published four ways, to compare them (`cargo xtask seed-compare`
//! measures it; `docs/WHY-WEBSOCKET.md` has the results):
//!
//! ```text
//! cargo run --release -p duplex-tokio --example ticker -- [ADDR] [--rate N] [--symbols N]
//! ```
//!
//! (default `127.0.0.1:8090`, 10 updates per second over 20 symbols). It prints
//! `listening on ADDR` first; open `http://ADDR/` for a page that switches between the
//! transports live.
//!
//! Every update is one quote, a small JSON object with a sequence number and the
//! publish time in microseconds since the Unix epoch:
//! `{"seq":42,"ts":1718000000123456,"sym":"MSFT","px":411.27,"chg":-0.31,"bid":411.25,"ask":411.29,"vol":700}`.
//!
//! - `GET /poll?since=N`: short polling, answered at once with
//!   `{"last":LAST,"updates":[...]}`, the updates after `N` (without `since`: none, and
//!   `last` to start from).
//! - `GET /long?since=N[&timeout=SECS]`: long polling, the same answer, held until there
//!   is an update after `N` or the timeout (default 25 s) passes.
//! - `GET /sse[?since=N]`: HTTP streaming, a chunked `text/event-stream` (server-sent
//!   events) with one event per update (`id: SEQ`); `since` or `Last-Event-ID` resume.
//! - `GET /ws`: a WebSocket with one text message per update. permessage-deflate is
//!   negotiated when offered, and every update is encoded (and compressed) once for all
//!   connections with `PreparedMessage`, from an empty compression context.
//!   `/ws?deflate=0` refuses permessage-deflate; `/ws?deflate=ctx` compresses per
//!   connection with context takeover (smaller frames, one compression per connection).
//! - With `--chat`, the feed is a chat room instead of quotes: nothing is published on
//!   a timer; `POST /say` (a JSON object with a `ts`, up to 4 KiB) and every text
//!   message a WebSocket client sends are published to all, as they came with a
//!   `seq` put first: `{"seq":43,"ts":...,"text":"..."}`. `/ws?listen=0` is a
//!   WebSocket that only speaks (it gets no updates).
//! - `GET /stats`: the server's CPU time (user + system from `/proc/self/stat` in
//!   milliseconds, in 10 ms ticks; and the run time of its threads from
//!   `/proc/self/task/*/schedstat` in nanoseconds), the last sequence number, the rate,
//!   and the open connections and requests per transport.
//!
//! The WebSocket upgrade is done here with `duplex-handshake` over hyper's upgraded
//! connection (the `hyper` feature's `duplex_tokio::hyper::upgrade` does the same), so
//! the example runs without features.
//!
//! Every route is served over HTTP/1.1 and over HTTP/2 with prior knowledge (h2c, told
//! apart by the connection preface): polling and long polling as requests on one
//! HTTP/2 connection, the event stream as one HTTP/2 stream, and `/ws` as a WebSocket
//! over HTTP/2 (RFC 8441: extended CONNECT, which the server's SETTINGS allow).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use duplex_tokio::http::{HeaderValue, Method, Request, Response, StatusCode, Version, header};
use duplex_tokio::{
    Acceptance, ClientOffer, CloseCode, CloseFrame, DeflateConfig, PreparedMessage, Role,
    WebSocketStream,
};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

type Body = UnsyncBoxBody<Bytes, Infallible>;

const PAGE: &str = include_str!("ticker/index.html");
/// Updates kept for `/poll`, `/long` and resuming `/sse`.
const HISTORY: usize = 8192;
/// Updates queued for one streaming connection before it counts as too slow.
const QUEUE: usize = 1024;
const LONG_POLL_TIMEOUT: Duration = Duration::from_secs(25);
/// `/proc/self/stat` counts CPU time in clock ticks of 1/USER_HZ s; Linux fixes
/// USER_HZ at 100 for user space on every current architecture.
const USER_HZ: u64 = 100;

/// The transports, for the counters in `/stats`.
const TRANSPORTS: [&str; 6] = ["poll", "long", "sse", "ws", "ws_deflate", "ws_deflate_ctx"];

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut addr = "127.0.0.1:8090".to_owned();
    let mut rate = 10.0_f64;
    let mut symbols = 20_usize;
    let mut chat = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--rate" => rate = value("--rate").parse().unwrap_or(0.0),
            "--symbols" => symbols = value("--symbols").parse().unwrap_or(0),
            "--chat" => chat = true,
            "-h" | "--help" => usage(""),
            other if !other.starts_with('-') => addr = other.to_owned(),
            other => usage(&format!("unknown option {other}")),
        }
    }
    if !(rate > 0.0 && rate <= 100_000.0) || symbols == 0 {
        usage("--rate must be in (0, 100000] and --symbols at least 1");
    }

    let listener = TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;

    let feed = Arc::new(Feed {
        rate,
        symbols,
        chat,
        history: Mutex::new(VecDeque::with_capacity(HISTORY)),
        latest: watch::channel(0).0,
        live: broadcast::channel(QUEUE).0,
        open: Default::default(),
        requests: Default::default(),
    });
    if !chat {
        tokio::spawn(publish(feed.clone()));
    }
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let feed = feed.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let feed = feed.clone();
                async move { Ok::<_, Infallible>(feed.route(request).await) }
            });
            // HTTP/1.1, or HTTP/2 when the connection starts with its preface.
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30));
            builder
                .http2()
                .timer(TokioTimer::new())
                .enable_connect_protocol();
            let _ = builder
                .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                .await;
        });
    }
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("ticker: {problem}");
    }
    eprintln!("usage: ticker [ADDR] [--rate UPDATES_PER_SECOND] [--symbols N] [--chat]");
    std::process::exit(if problem.is_empty() { 0 } else { 2 })
}

/// One published update, encoded once for every transport.
struct Update {
    seq: u64,
    /// The JSON object (polling bodies are built from these).
    json: Bytes,
    /// The server-sent event: `id: SEQ\ndata: JSON\n\n`.
    sse: Bytes,
    /// The WebSocket frame, shared by every connection (and its compressed form).
    prepared: PreparedMessage,
}

struct Feed {
    rate: f64,
    symbols: usize,
    /// A chat room: the clients publish.
    chat: bool,
    history: Mutex<VecDeque<Arc<Update>>>,
    /// The last sequence number, for long polls to wait on.
    latest: watch::Sender<u64>,
    /// Every update, for the streaming connections.
    live: broadcast::Sender<Arc<Update>>,
    /// Open streaming connections and requests served, by `TRANSPORTS` index.
    open: [AtomicU64; 6],
    requests: [AtomicU64; 6],
}

/// How a WebSocket connection sends updates.
#[derive(Clone, Copy, PartialEq, Eq)]
enum WsMode {
    /// No permessage-deflate.
    Plain,
    /// permessage-deflate when offered; the shared frame compressed once.
    Shared,
    /// permessage-deflate with context takeover, compressed per connection.
    PerConnection,
}

impl WsMode {
    fn index(self) -> usize {
        match self {
            Self::Plain => 3,
            Self::Shared => 4,
            Self::PerConnection => 5,
        }
    }
}

/// Publishes `rate` updates per second until the process ends.
async fn publish(feed: Arc<Feed>) {
    let mut market = Market::new(feed.symbols);
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / feed.rate));
    loop {
        interval.tick().await;
        feed.publish(|seq| market.quote(seq, now_micros()));
    }
}

impl Feed {
    /// Publishes the next update, `json` made for its sequence number.
    fn publish(&self, json: impl FnOnce(u64) -> String) {
        // Under the history's lock, so that updates from several publishers (chat
        // clients) go out in sequence order.
        let mut history = self.history.lock().unwrap();
        let seq = history.back().map_or(1, |u| u.seq + 1);
        let json = json(seq);
        let update = Arc::new(Update {
            seq,
            sse: Bytes::from(format!("id: {seq}\ndata: {json}\n\n")),
            prepared: PreparedMessage::new(duplex_tokio::Message::text(json.clone()))
                .expect("text is a data message"),
            json: Bytes::from(json),
        });
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(update.clone());
        // In this order: whoever subscribed before reading the history sees no gap.
        let _ = self.live.send(update);
        self.latest.send_replace(seq);
    }

    /// Publishes a chat message (a JSON object) with its sequence number put first;
    /// false if it is not an object.
    fn say(&self, message: &str) -> bool {
        let message = message.trim();
        let Some(rest) = message.strip_prefix('{') else {
            return false;
        };
        if !message.ends_with('}') || rest.len() < 2 {
            return false;
        }
        self.publish(|seq| format!("{{\"seq\":{seq},{rest}"));
        true
    }

    async fn route(self: Arc<Self>, mut request: Request<Incoming>) -> Response<Body> {
        if self.chat && request.method() == Method::POST && request.uri().path() == "/say" {
            let body = http_body_util::Limited::new(request.into_body(), 4096);
            return match body.collect().await.map(|b| b.to_bytes()) {
                Ok(body) if self.say(&String::from_utf8_lossy(&body)) => {
                    let mut response = Response::new(Full::new(Bytes::new()).boxed_unsync());
                    *response.status_mut() = StatusCode::NO_CONTENT;
                    response
                }
                _ => text(StatusCode::BAD_REQUEST, "a JSON object of up to 4 KiB\n"),
            };
        }
        if request.method() != Method::GET && !is_extended_connect(&request) {
            return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        }
        let query = request.uri().query().unwrap_or("").to_owned();
        let since = param(&query, "since").and_then(|v| v.parse::<u64>().ok());
        match request.uri().path() {
            "/" => {
                let mut response = full(PAGE, "text/html; charset=utf-8");
                let headers = response.headers_mut();
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            "/stats" => full(self.stats_json(), "application/json"),
            "/poll" => {
                self.requests[0].fetch_add(1, Relaxed);
                self.poll_response(since)
            }
            "/long" => {
                self.requests[1].fetch_add(1, Relaxed);
                if let Some(since) = since {
                    let timeout = param(&query, "timeout")
                        .and_then(|v| v.parse::<f64>().ok())
                        .filter(|t| t.is_finite() && *t >= 0.0 && *t <= 120.0)
                        .map_or(LONG_POLL_TIMEOUT, Duration::from_secs_f64);
                    let mut latest = self.latest.subscribe();
                    let _ =
                        tokio::time::timeout(timeout, latest.wait_for(|&seq| seq > since)).await;
                }
                self.poll_response(since)
            }
            "/sse" => {
                self.requests[2].fetch_add(1, Relaxed);
                let last_event_id = request
                    .headers()
                    .get("last-event-id")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse().ok());
                self.sse(since.or(last_event_id))
            }
            "/ws" => {
                let mode = match param(&query, "deflate") {
                    Some("0") => WsMode::Plain,
                    Some("ctx") => WsMode::PerConnection,
                    _ => WsMode::Shared,
                };
                let listen = param(&query, "listen") != Some("0");
                self.websocket(&mut request, mode, listen)
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// `{"last":LAST,"updates":[...]}` with the updates after `since` (none without it).
    fn poll_response(&self, since: Option<u64>) -> Response<Body> {
        let history = self.history.lock().unwrap();
        let last = history.back().map_or(0, |u| u.seq);
        let mut body = Vec::with_capacity(64);
        let _ = write!(&mut body, r#"{{"last":{last},"updates":["#);
        let mut first = true;
        for update in after(&history, since.unwrap_or(last)) {
            if !first {
                body.push(b',');
            }
            first = false;
            body.extend_from_slice(&update.json);
        }
        drop(history);
        body.extend_from_slice(b"]}");
        let mut response = full(body, "application/json");
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    /// The event stream: the updates after `since` (if given), then every new one.
    fn sse(self: Arc<Self>, since: Option<u64>) -> Response<Body> {
        // Subscribe before reading the history, then skip what the history gave.
        let live = self.live.subscribe();
        let backlog: VecDeque<Arc<Update>> = match since {
            Some(since) => after(&self.history.lock().unwrap(), since)
                .cloned()
                .collect(),
            None => VecDeque::new(),
        };
        let sent = backlog.back().map_or(0, |u| u.seq);
        let guard = OpenGuard::new(self.clone(), 2);
        let first = Bytes::from_static(b"retry: 1000\n\n");
        let state = (Some(first), backlog, live, sent, guard);
        let events = futures::stream::unfold(state, |mut state| async move {
            let (first, backlog, live, sent, _guard) = &mut state;
            if let Some(first) = first.take() {
                return Some((Ok(Frame::data(first)), state));
            }
            let update = match backlog.pop_front() {
                Some(update) => update,
                None => loop {
                    match live.recv().await {
                        Ok(update) if update.seq > *sent => break update,
                        Ok(_) => continue,
                        // Too slow, or shutting down: end the response; the client
                        // resumes from its Last-Event-ID.
                        Err(_) => return None,
                    }
                },
            };
            *sent = update.seq;
            Some((Ok::<_, Infallible>(Frame::data(update.sse.clone())), state))
        });
        let mut response = Response::new(StreamBody::new(events).boxed_unsync());
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    /// Answers the handshake (or not) and spawns the connection's task.
    fn websocket(
        self: Arc<Self>,
        request: &mut Request<Incoming>,
        mode: WsMode,
        listen: bool,
    ) -> Response<Body> {
        let http2 = is_extended_connect(request);
        let offer = if http2 {
            let protocol = request.extensions().get::<hyper::ext::Protocol>();
            ClientOffer::from_extended_connect(request, protocol.map(|p| p.as_str()))
        } else {
            ClientOffer::from_request(request)
        };
        let offer = match offer {
            Ok(offer) if http2 || request.version() == Version::HTTP_11 => offer,
            Ok(_) => return text(StatusCode::BAD_REQUEST, "WebSocket needs HTTP/1.1 or 2\n"),
            Err(error) => return error.response().map(|body| Full::from(body).boxed_unsync()),
        };
        let policy = match mode {
            WsMode::Plain => None,
            // The shared frame is compressed from an empty context for every message:
            // say so, and the client may drop its window between messages.
            WsMode::Shared => Some(DeflateConfig {
                server_no_context_takeover: true,
                ..DeflateConfig::default()
            }),
            WsMode::PerConnection => Some(DeflateConfig::default()),
        };
        // Over HTTP/2 the answer is a 200 without Upgrade headers (RFC 8441 section 5).
        let (response, deflate) =
            match offer.accept_negotiated(&Acceptance::default(), policy.as_ref()) {
                Ok(accepted) => accepted,
                Err(error) => return error.response().map(|body| Full::from(body).boxed_unsync()),
            };
        let on_upgrade = hyper::upgrade::on(request);
        let mode = if deflate.is_none() {
            WsMode::Plain
        } else {
            mode
        };
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let _guard = OpenGuard::new(self.clone(), mode.index());
            self.requests[mode.index()].fetch_add(1, Relaxed);
            // hyper returns bytes read past the request head from `Upgraded` first: no
            // leftover to pass.
            let ws = WebSocketStream::from_raw(
                TokioIo::new(upgraded),
                Role::Server,
                duplex_tokio::core::EngineConfig::default(),
                deflate,
                &[],
            );
            self.serve_websocket(ws, mode, listen).await;
        });
        response.map(|()| Full::new(Bytes::new()).boxed_unsync())
    }

    /// Sends every update until the client leaves (its messages are read and ignored,
    /// so pings are answered and its close completes the handshake).
    async fn serve_websocket<S>(&self, mut ws: WebSocketStream<S>, mode: WsMode, listen: bool)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite,
    {
        let mut live = self.live.subscribe();
        loop {
            tokio::select! {
                update = live.recv(), if listen => match update {
                    Ok(update) => {
                        let sent = match mode {
                            WsMode::PerConnection => ws.send(update.prepared.message().clone()).await,
                            _ => ws.send_prepared(&update.prepared).await,
                        };
                        if sent.is_err() {
                            break;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let frame = CloseFrame::new(CloseCode::PolicyViolation, "too slow");
                        let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(Some(frame))).await;
                        break;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                incoming = ws.recv() => match incoming {
                    Some(Ok(message)) => {
                        if self.chat && let Some(text) = message.as_text() {
                            self.say(text);
                        }
                    }
                    Some(Err(_)) | None => break,
                },
            }
        }
    }

    fn stats_json(&self) -> String {
        let (ticks, ms) = cpu_time().map_or((-1, -1.0), |ticks| {
            (ticks as i64, ticks as f64 * 1000.0 / USER_HZ as f64)
        });
        let threads_ns = thread_cpu_ns().map_or(-1, |ns| ns as i64);
        let mut out = format!(
            r#"{{"seq":{},"rate":{},"symbols":{},"cpu_ticks":{ticks},"user_hz":{USER_HZ},"cpu_ms":{ms},"threads_cpu_ns":{threads_ns}"#,
            *self.latest.borrow(),
            self.rate,
            self.symbols,
        );
        for (name, counters) in [("open", &self.open), ("requests", &self.requests)] {
            let _ = write!(out, r#","{name}":{{"#);
            for (i, transport) in TRANSPORTS.iter().enumerate() {
                let comma = if i > 0 { "," } else { "" };
                let _ = write!(out, r#"{comma}"{transport}":{}"#, counters[i].load(Relaxed));
            }
            out.push('}');
        }
        out.push('}');
        out
    }
}

/// An HTTP/2 extended CONNECT for a WebSocket (RFC 8441 section 4).
fn is_extended_connect<B>(request: &Request<B>) -> bool {
    request.method() == Method::CONNECT
        && request
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
}

/// The updates in `history` after sequence number `since`.
fn after(history: &VecDeque<Arc<Update>>, since: u64) -> impl Iterator<Item = &Arc<Update>> {
    let first = history.front().map_or(0, |u| u.seq);
    let skip = (since + 1).saturating_sub(first) as usize;
    history.iter().skip(skip)
}

/// Counts an open connection of one transport while it lives.
struct OpenGuard(Arc<Feed>, usize);

impl OpenGuard {
    fn new(feed: Arc<Feed>, index: usize) -> Self {
        feed.open[index].fetch_add(1, Relaxed);
        Self(feed, index)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open[self.1].fetch_sub(1, Relaxed);
    }
}

/// utime + stime of this process in clock ticks, from `/proc/self/stat`.
fn cpu_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces; fields from 3
    // on follow its closing parenthesis. utime and stime are fields 14 and 15.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The time this process's live threads ran, in nanoseconds (the first field of
/// `/proc/self/task/*/schedstat`): the same CPU time as `cpu_time` for a process whose
/// threads all live (tokio's workers do), without the 10 ms ticks.
fn thread_cpu_ns() -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let schedstat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += schedstat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// A random walk of prices over `symbols` tickers.
struct Market {
    names: Vec<String>,
    prices: Vec<f64>,
    rng: u64,
}

impl Market {
    fn new(symbols: usize) -> Self {
        const NAMES: [&str; 24] = [
            "AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "AVGO", "JPM", "V", "WMT",
            "XOM", "UNH", "MA", "JNJ", "PG", "HD", "COST", "ORCL", "BAC", "KO", "NFLX", "AMD",
            "PEP",
        ];
        let names = (0..symbols)
            .map(|i| match NAMES.get(i) {
                Some(name) => (*name).to_owned(),
                None => format!("SYM{i}"),
            })
            .collect();
        let prices = (0..symbols).map(|i| 20.0 + (i * 37 % 480) as f64).collect();
        Self {
            names,
            prices,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn quote(&mut self, seq: u64, ts: u64) -> String {
        let i = (self.next_random() % self.names.len() as u64) as usize;
        let step = (self.next_random() % 2001) as f64 / 1000.0 - 1.0; // -1 ..= 1
        let old = self.prices[i];
        let price = (old * (1.0 + step * 0.002)).max(1.0);
        self.prices[i] = price;
        let spread = (price * 0.0001).max(0.01);
        let volume = (self.next_random() % 50 + 1) * 100;
        format!(
            r#"{{"seq":{seq},"ts":{ts},"sym":"{}","px":{price:.2},"chg":{:.2},"bid":{:.2},"ask":{:.2},"vol":{volume}}}"#,
            self.names[i],
            price - old,
            price - spread,
            price + spread,
        )
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// The value of `key` in a query string (no percent-decoding: the values are numbers).
fn param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn full(body: impl Into<Bytes>, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed_unsync());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = full(body, "text/plain; charset=utf-8");
    *response.status_mut() = status;
    response
}
