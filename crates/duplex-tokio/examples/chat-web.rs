//! A chat for browsers on one hyper server:
//! `cargo run -p duplex-tokio --features hyper --example chat-web -- [ADDR] [--tls]`
//! (default 127.0.0.1:8080), then open `http://ADDR/` in two tabs.
//!
//! With `--tls` it serves HTTPS with a self-signed certificate made at start (rcgen, for
//! `localhost` and `127.0.0.1`), offering HTTP/2 and HTTP/1.1 by ALPN; over HTTP/2 it
//! enables extended CONNECT, so a browser that loaded the page over HTTP/2 opens the
//! WebSocket as a stream of that same connection (RFC 8441). Without it, plain
//! HTTP/1.1.
//!
//! - `GET /` is the page (`chat-web/index.html`, embedded): pick a nickname and a room,
//!   chat; it shows the connection state and reconnects with exponential backoff.
//! - `GET /ws?room=NAME&nick=NAME` is the WebSocket, upgraded with
//!   `duplex_tokio::hyper::upgrade_with` (permessage-deflate on). Text messages from
//!   the page are chat lines, broadcast to the room encoded once (`PreparedMessage`);
//!   newcomers get the last 50 lines; joins and leaves are announced. A binary message
//!   is an integrity check: the server answers its sender with its length and CRC-32.
//! - `GET /stats` is JSON about every connection seen: the `Sec-WebSocket-Extensions`
//!   the browser offered and what was negotiated, message counts, the largest message,
//!   and how many messages went compressed in each direction (read from the frame
//!   headers on the wire, RSV1); the HTTP version of each WebSocket's handshake and
//!   the transport connection it came on (`http`, `conn`), and the same for the last
//!   page loads (`pages`); and duplex-tokio's `ServerStats` over all WebSockets
//!   (`server`: open connections, messages and bytes each way, closes by code).
//!
//! Prints `listening on ADDR` as its first line. Everything the server sends is JSON
//! written by hand, to keep the example's dependencies to duplex and hyper.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::io::{IoSlice, Write as _};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use duplex_tokio::http::{HeaderValue, Method, Request, Response, StatusCode, header};
use duplex_tokio::hyper::{Full, HyperWebSocket, upgrade_with};
use duplex_tokio::tokio_rustls::TlsAcceptor;
use duplex_tokio::{
    Acceptance, CloseCode, CloseFrame, Config, Message, PreparedMessage, Rejection, ServerStats,
};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const PAGE: &str = include_str!("chat-web/index.html");
/// Chat lines a newcomer gets.
const HISTORY: usize = 50;
/// The longest chat line, in bytes.
const MAX_LINE: usize = 4096;
/// Broadcasts queued for one connection before it counts as too slow and is dropped.
const QUEUE: usize = 256;
/// Connections kept in `/stats` after they closed.
const MAX_STATS: usize = 1000;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut addr = "127.0.0.1:8080".to_owned();
    let mut tls = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--tls" => tls = true,
            _ => addr = arg,
        }
    }
    let acceptor = if tls { Some(tls_acceptor()?) } else { None };
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;

    let protocol = duplex_tokio::core::EngineConfig::default()
        .max_message_size(16 << 20)
        .max_frame_size(16 << 20)
        .keepalive(Duration::from_secs(30), Duration::from_secs(30));
    let chat = Arc::new(Chat {
        config: Config::default().engine(protocol),
        rooms: Mutex::default(),
        stats: Mutex::default(),
        pages: Mutex::default(),
        server: ServerStats::new(),
        next_id: AtomicU64::new(1),
    });
    let mut next_conn = 0u64;
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        next_conn += 1;
        let conn = next_conn;
        let chat = chat.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let chat = chat.clone();
                async move { Ok::<_, Infallible>(chat.route(request, conn)) }
            });
            let Some(acceptor) = acceptor else {
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(tcp), service)
                    .with_upgrades();
                let _ = connection.await;
                return;
            };
            let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                return;
            };
            // HTTP/1.1 or HTTP/2 as ALPN chose; extended CONNECT only on HTTP/2, where
            // `/ws` handles it.
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10));
            builder
                .http2()
                .timer(TokioTimer::new())
                .enable_connect_protocol();
            let _ = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await;
        });
    }
}

/// A TLS acceptor with a fresh self-signed certificate for `localhost` and `127.0.0.1`,
/// offering HTTP/2 and HTTP/1.1.
fn tls_acceptor() -> std::io::Result<TlsAcceptor> {
    use duplex_tokio::tokio_rustls::rustls::{self, pki_types};
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .map_err(std::io::Error::other)?;
    let cert = certified.cert.der().clone();
    let key = pki_types::PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key.into())
        .map_err(std::io::Error::other)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Page loads kept for `/stats`.
const MAX_PAGES: usize = 100;

struct Chat {
    config: Config,
    rooms: Mutex<HashMap<String, Room>>,
    stats: Mutex<VecDeque<Arc<ConnStats>>>,
    /// The last page loads: the transport connection and HTTP version of each.
    pages: Mutex<VecDeque<(u64, &'static str)>>,
    /// duplex-tokio's counters over every WebSocket of this server.
    server: ServerStats,
    next_id: AtomicU64,
}

fn http_name(version: duplex_tokio::http::Version) -> &'static str {
    match version {
        duplex_tokio::http::Version::HTTP_2 => "HTTP/2",
        duplex_tokio::http::Version::HTTP_11 => "HTTP/1.1",
        _ => "other",
    }
}

#[derive(Default)]
struct Room {
    members: HashMap<u64, Member>,
    history: VecDeque<PreparedMessage>,
}

struct Member {
    nick: String,
    queue: mpsc::Sender<PreparedMessage>,
}

/// Who joined, from the request.
struct Join {
    room: String,
    nick: String,
}

impl Chat {
    fn route(self: &Arc<Self>, mut request: Request<Incoming>, conn: u64) -> Response<Full<Bytes>> {
        if request.uri().path() == "/ws" {
            // GET for an HTTP/1.1 upgrade, CONNECT over HTTP/2; `upgrade_with` checks.
            return self.upgrade(&mut request, conn);
        }
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        }
        match request.uri().path() {
            "/" => {
                {
                    let mut pages = self.pages.lock().unwrap();
                    if pages.len() == MAX_PAGES {
                        pages.pop_front();
                    }
                    pages.push_back((conn, http_name(request.version())));
                }
                let mut response = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            "/stats" => {
                let mut response = Response::new(Full::new(Bytes::from(self.stats_json())));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                response
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// Answers the handshake and spawns the connection's task.
    fn upgrade(
        self: &Arc<Self>,
        request: &mut Request<Incoming>,
        conn: u64,
    ) -> Response<Full<Bytes>> {
        let mut join = None;
        let upgraded = upgrade_with(request, &self.config, |request, _offer| {
            join = Some(parse_join(request.uri().query().unwrap_or(""))?);
            Ok(Acceptance::default())
        });
        let (response, websocket) = match upgraded {
            Ok(accepted) => accepted,
            Err(error) => return error.into_response(),
        };
        let Join { room, nick } = join.expect("set when accepted");
        let header_text = |value: Option<&HeaderValue>| {
            value.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let offered = request
            .headers()
            .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>();
        let stats = Arc::new(ConnStats {
            id: self.next_id.fetch_add(1, Relaxed),
            room,
            nick: Mutex::new(nick),
            user_agent: header_text(request.headers().get(header::USER_AGENT)),
            extensions_offered: (!offered.is_empty()).then(|| offered.join(", ")),
            extensions_negotiated: header_text(
                response.headers().get(header::SEC_WEBSOCKET_EXTENSIONS),
            ),
            deflate: websocket.deflate().is_some(),
            http: if websocket.is_http2() {
                "HTTP/2"
            } else {
                "HTTP/1.1"
            },
            conn,
            open: AtomicBool::new(false),
            counters: Counters::default(),
        });
        {
            let mut all = self.stats.lock().unwrap();
            if all.len() == MAX_STATS {
                all.pop_front();
            }
            all.push_back(stats.clone());
        }
        tokio::spawn(self.clone().serve(websocket, stats));
        response
    }

    /// One connection: the welcome and history, then chat lines in and broadcasts out
    /// until either side closes.
    async fn serve(self: Arc<Self>, websocket: HyperWebSocket, stats: Arc<ConnStats>) {
        let tapped = stats.clone();
        let Ok(mut ws) = websocket
            .wrap_stream(move |io| FrameTap::new(io, tapped))
            .await
        else {
            return;
        };
        stats.open.store(true, Relaxed);
        self.server.attach(&ws);
        let (queue, mut broadcasts) = mpsc::channel(QUEUE);
        let requested = stats.nick.lock().unwrap().clone();
        let (nick, members, history) = self.join(stats.id, &stats.room, &requested, queue);
        *stats.nick.lock().unwrap() = nick.clone();

        let mut welcome = String::from(r#"{"type":"welcome","room":"#);
        json_string(&mut welcome, &stats.room);
        welcome.push_str(r#","nick":"#);
        json_string(&mut welcome, &nick);
        welcome.push_str(r#","members":["#);
        for (i, member) in members.iter().enumerate() {
            if i > 0 {
                welcome.push(',');
            }
            json_string(&mut welcome, member);
        }
        let _ = write!(
            welcome,
            r#"],"history":{},"deflate":{},"extensions":"#,
            history.len(),
            stats.deflate
        );
        json_opt(&mut welcome, stats.extensions_negotiated.as_deref());
        welcome.push('}');
        let mut ok = ws.send(Message::text(welcome)).await.is_ok();
        for line in &history {
            ok = ok && ws.send_prepared(line).await.is_ok();
            stats.counters.messages_sent.fetch_add(1, Relaxed);
        }

        while ok {
            tokio::select! {
                incoming = ws.recv() => match incoming {
                    Some(Ok(message)) if message.is_data() => {
                        let c = &stats.counters;
                        let len = message.payload().len() as u64;
                        c.messages_received.fetch_add(1, Relaxed);
                        c.payload_bytes_received.fetch_add(len, Relaxed);
                        c.largest_message.fetch_max(len, Relaxed);
                        ok = match message {
                            Message::Text(line) => {
                                c.text_received.fetch_add(1, Relaxed);
                                self.say(&stats.room, &nick, line.as_str(), &mut ws).await
                            }
                            _ => {
                                c.binary_received.fetch_add(1, Relaxed);
                                let receipt = format!(
                                    r#"{{"type":"receipt","bytes":{},"crc32":"{:08x}"}}"#,
                                    len,
                                    crc32(message.payload())
                                );
                                c.messages_sent.fetch_add(1, Relaxed);
                                ws.send(Message::text(receipt)).await.is_ok()
                            }
                        };
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                },
                outgoing = broadcasts.recv() => match outgoing {
                    Some(line) => {
                        stats.counters.messages_sent.fetch_add(1, Relaxed);
                        ok = ws.send_prepared(&line).await.is_ok();
                    }
                    None => {
                        // Dropped from the room for not keeping up.
                        let frame = CloseFrame::new(CloseCode::PolicyViolation, "too slow");
                        let _ = tokio::time::timeout(Duration::from_secs(5), ws.close(Some(frame))).await;
                        break;
                    }
                },
            }
        }
        stats.open.store(false, Relaxed);
        self.leave(&stats.room, stats.id, &nick);
    }

    /// Registers member `id` (renamed `nick (2)` if the name is taken) and announces
    /// it. Returns its nickname, everyone in the room and the history, taken under the
    /// same lock so that nothing is missed or seen twice.
    fn join(
        &self,
        id: u64,
        room_name: &str,
        nick: &str,
        queue: mpsc::Sender<PreparedMessage>,
    ) -> (String, Vec<String>, Vec<PreparedMessage>) {
        let mut rooms = self.rooms.lock().unwrap();
        let room = rooms.entry(room_name.to_owned()).or_default();
        let taken = |name: &str| room.members.values().any(|m| m.nick == name);
        let mut unique = nick.to_owned();
        let mut n = 2;
        while taken(&unique) {
            unique = format!("{nick} ({n})");
            n += 1;
        }
        let notice = event("join", &unique, None);
        broadcast(room, &notice);
        room.members.insert(
            id,
            Member {
                nick: unique.clone(),
                queue,
            },
        );
        let mut members: Vec<String> = room.members.values().map(|m| m.nick.clone()).collect();
        members.sort();
        let history = room.history.iter().cloned().collect();
        (unique, members, history)
    }

    fn leave(&self, room_name: &str, id: u64, nick: &str) {
        let mut rooms = self.rooms.lock().unwrap();
        let Some(room) = rooms.get_mut(room_name) else {
            return;
        };
        room.members.remove(&id);
        broadcast(room, &event("leave", nick, None));
        if room.members.is_empty() && room.history.is_empty() {
            rooms.remove(room_name);
        }
    }

    /// A chat line: kept in the history and broadcast to the room (the sender too).
    /// Returns false when the sender's connection failed.
    async fn say<S>(
        &self,
        room_name: &str,
        nick: &str,
        line: &str,
        ws: &mut duplex_tokio::WebSocketStream<S>,
    ) -> bool
    where
        S: AsyncRead + AsyncWrite,
    {
        let line = line.trim();
        if line.is_empty() {
            return true;
        }
        if line.len() > MAX_LINE {
            let error = format!(
                r#"{{"type":"error","text":"lines are limited to {MAX_LINE} bytes; send bigger data as binary"}}"#
            );
            return ws.send(Message::text(error)).await.is_ok();
        }
        let message = event("msg", nick, Some(line));
        let mut rooms = self.rooms.lock().unwrap();
        let room = rooms.entry(room_name.to_owned()).or_default();
        if room.history.len() == HISTORY {
            room.history.pop_front();
        }
        room.history.push_back(message.clone());
        broadcast(room, &message);
        true
    }

    fn stats_json(&self) -> String {
        let all: Vec<Arc<ConnStats>> = self.stats.lock().unwrap().iter().cloned().collect();
        let mut out = String::from(r#"{"connections":["#);
        let mut largest = 0;
        for (i, s) in all.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let c = &s.counters;
            largest = largest.max(c.largest_message.load(Relaxed));
            let _ = write!(out, r#"{{"id":{},"room":"#, s.id);
            json_string(&mut out, &s.room);
            out.push_str(r#","nick":"#);
            json_string(&mut out, &s.nick.lock().unwrap());
            out.push_str(r#","user_agent":"#);
            json_opt(&mut out, s.user_agent.as_deref());
            out.push_str(r#","extensions_offered":"#);
            json_opt(&mut out, s.extensions_offered.as_deref());
            out.push_str(r#","extensions_negotiated":"#);
            json_opt(&mut out, s.extensions_negotiated.as_deref());
            let _ = write!(
                out,
                r#","deflate":{},"open":{},"http":"{}","conn":{}"#,
                s.deflate,
                s.open.load(Relaxed),
                s.http,
                s.conn
            );
            for (name, counter) in c.named() {
                let _ = write!(out, r#","{name}":{}"#, counter.load(Relaxed));
            }
            out.push('}');
        }
        let _ = write!(out, r#"],"largest_message":{largest},"pages":["#);
        for (i, (conn, http)) in self.pages.lock().unwrap().iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, r#"{{"conn":{conn},"http":"{http}"}}"#);
        }
        let server = self.server.snapshot();
        let _ = write!(
            out,
            r#"],"server":{{"opened":{},"open":{},"messages_received":{},"messages_sent":{},"bytes_received":{},"bytes_sent":{},"closed_without_close_frame":{},"closes_received":{{"#,
            server.opened,
            server.open,
            server.messages_received,
            server.messages_sent,
            server.bytes_received,
            server.bytes_sent,
            server.closed_without_close_frame
        );
        let codes = |out: &mut String, codes: &std::collections::BTreeMap<u16, u64>| {
            for (i, (code, n)) in codes.iter().enumerate() {
                let _ = write!(out, r#"{}"{code}":{n}"#, if i > 0 { "," } else { "" });
            }
        };
        codes(&mut out, &server.closes_received);
        out.push_str(r#"},"closes_sent":{"#);
        codes(&mut out, &server.closes_sent);
        out.push_str("}}}");
        out
    }
}

/// Queues `message` for every member; members whose queue is full are dropped from the
/// room (their task sees the queue closed and closes with 1008).
fn broadcast(room: &mut Room, message: &PreparedMessage) {
    room.members
        .retain(|_, member| match member.queue.try_send(message.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => false,
            Err(mpsc::error::TrySendError::Closed(_)) => true, // leaving already
        });
}

/// A `msg`, `join` or `leave` event, encoded once for every receiver.
fn event(kind: &str, nick: &str, text: Option<&str>) -> PreparedMessage {
    let mut json = format!(r#"{{"type":"{kind}","nick":"#);
    json_string(&mut json, nick);
    if let Some(text) = text {
        json.push_str(r#","text":"#);
        json_string(&mut json, text);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let _ = write!(json, r#","ts":{}}}"#, now.as_millis());
    PreparedMessage::new(Message::text(json)).expect("text is a data message")
}

/// `room=...&nick=...`, percent-decoded, trimmed, 1 to 32 characters each.
fn parse_join(query: &str) -> Result<Join, Rejection> {
    let mut room = None;
    let mut nick = None;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match key {
            "room" => &mut room,
            "nick" => &mut nick,
            _ => continue,
        };
        let value = percent_decode(value)
            .ok_or_else(|| Rejection::new(StatusCode::BAD_REQUEST, "bad percent-encoding"))?;
        *slot = Some(value.trim().to_owned());
    }
    let check = |value: Option<String>, what: &str| {
        value
            .filter(|v| (1..=32).contains(&v.chars().count()))
            .ok_or_else(|| {
                Rejection::new(
                    StatusCode::BAD_REQUEST,
                    format!("{what} must be 1 to 32 characters"),
                )
            })
    };
    Ok(Join {
        room: check(room, "room")?,
        nick: check(nick, "nick")?,
    })
}

fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_opt(out: &mut String, value: Option<&str>) {
    match value {
        Some(value) => json_string(out, value),
        None => out.push_str("null"),
    }
}

/// CRC-32 (IEEE 802.3, as zlib's `crc32`), bitwise through a table built at compile time.
fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    !data.iter().fold(!0u32, |crc, &b| {
        TABLE[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8)
    })
}

/// What `/stats` reports about one connection.
struct ConnStats {
    id: u64,
    room: String,
    nick: Mutex<String>,
    user_agent: Option<String>,
    /// The request's `Sec-WebSocket-Extensions` values, joined.
    extensions_offered: Option<String>,
    /// The response's `Sec-WebSocket-Extensions`.
    extensions_negotiated: Option<String>,
    deflate: bool,
    /// The handshake's HTTP version: an HTTP/1.1 upgrade or an HTTP/2 CONNECT.
    http: &'static str,
    /// The transport (TCP or TLS) connection the handshake came on.
    conn: u64,
    open: AtomicBool,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    messages_received: AtomicU64,
    text_received: AtomicU64,
    binary_received: AtomicU64,
    payload_bytes_received: AtomicU64,
    largest_message: AtomicU64,
    messages_sent: AtomicU64,
    /// From the frame headers on the wire (`FrameTap`).
    frames_received: AtomicU64,
    compressed_messages_received: AtomicU64,
    wire_bytes_received: AtomicU64,
    frames_sent: AtomicU64,
    compressed_messages_sent: AtomicU64,
    wire_bytes_sent: AtomicU64,
}

impl Counters {
    fn named(&self) -> [(&'static str, &AtomicU64); 12] {
        [
            ("messages_received", &self.messages_received),
            ("text_received", &self.text_received),
            ("binary_received", &self.binary_received),
            ("payload_bytes_received", &self.payload_bytes_received),
            ("largest_message", &self.largest_message),
            ("messages_sent", &self.messages_sent),
            ("frames_received", &self.frames_received),
            (
                "compressed_messages_received",
                &self.compressed_messages_received,
            ),
            ("wire_bytes_received", &self.wire_bytes_received),
            ("frames_sent", &self.frames_sent),
            ("compressed_messages_sent", &self.compressed_messages_sent),
            ("wire_bytes_sent", &self.wire_bytes_sent),
        ]
    }
}

/// The upgraded connection, watched: every frame header read or written is parsed to
/// count frames and the messages whose first frame has RSV1 set (compressed with
/// permessage-deflate).
struct FrameTap<S> {
    io: S,
    stats: Arc<ConnStats>,
    incoming: FrameScan,
    outgoing: FrameScan,
}

impl<S> FrameTap<S> {
    fn new(io: S, stats: Arc<ConnStats>) -> Self {
        Self {
            io,
            stats,
            incoming: FrameScan::default(),
            outgoing: FrameScan::default(),
        }
    }

    fn saw_input(&mut self, data: &[u8]) {
        let c = &self.stats.counters;
        c.wire_bytes_received.fetch_add(data.len() as u64, Relaxed);
        self.incoming
            .feed(data, &c.frames_received, &c.compressed_messages_received);
    }

    fn saw_output(&mut self, data: &[u8]) {
        let c = &self.stats.counters;
        c.wire_bytes_sent.fetch_add(data.len() as u64, Relaxed);
        self.outgoing
            .feed(data, &c.frames_sent, &c.compressed_messages_sent);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FrameTap<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.io).poll_read(cx, buf))?;
        self.saw_input(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FrameTap<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.io).poll_write(cx, buf))?;
        self.saw_output(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, bufs))?;
        let mut left = n;
        for buf in bufs {
            let take = left.min(buf.len());
            self.saw_output(&buf[..take]);
            left -= take;
            if left == 0 {
                break;
            }
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Follows a stream of WebSocket frames, header by header, skipping payloads.
#[derive(Default)]
struct FrameScan {
    header: [u8; 14],
    have: usize,
    skip: u64,
}

impl FrameScan {
    fn feed(&mut self, mut data: &[u8], frames: &AtomicU64, compressed: &AtomicU64) {
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len() as u64);
                self.skip -= n;
                data = &data[n as usize..];
                continue;
            }
            let need = if self.have < 2 { 2 } else { self.header_len() };
            let take = (need - self.have).min(data.len());
            self.header[self.have..self.have + take].copy_from_slice(&data[..take]);
            self.have += take;
            data = &data[take..];
            if self.have < 2 || self.have < self.header_len() {
                continue; // more header to come
            }
            let length = match self.header[1] & 0x7f {
                126 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
                127 => u64::from_be_bytes(self.header[2..10].try_into().unwrap()),
                n => u64::from(n),
            };
            frames.fetch_add(1, Relaxed);
            let opcode = self.header[0] & 0x0f;
            if self.header[0] & 0x40 != 0 && (opcode == 1 || opcode == 2) {
                compressed.fetch_add(1, Relaxed);
            }
            self.have = 0;
            self.skip = length;
        }
    }

    /// The whole header's length, from its first two bytes.
    fn header_len(&self) -> usize {
        let length_bytes = match self.header[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask_bytes = if self.header[1] & 0x80 != 0 { 4 } else { 0 };
        2 + length_bytes + mask_bytes
    }
}
