//! A chat for browsers on hyper, its rooms on the hub:
//! `cargo run -p duplex-hub --features tokio,redis --example chat-web -- [ADDR] [--tls]
//! [--redis redis://127.0.0.1:PORT/]` (default 127.0.0.1:8080), then open `http://ADDR/`
//! in two tabs.
//!
//! Each room is a hub topic (`room:NAME`), framed with the hub's envelope, so every
//! event the page gets carries its `(epoch, offset)`. Without `--redis` the rooms live
//! in this process (the in-memory backend). With `--redis`, every instance started with
//! the same Redis is one service: a page on one node chats with a page on another, and a
//! page whose node went away reconnects to another one (`http://ADDR/?nodes=ADDR2,ADDR3`
//! lists the nodes the page may move to) and resumes from its last position: every
//! event it missed exactly once. When the hub cannot deliver some events (a notice on
//! the connection, or a resume answered "not recovered"), the page acts on the reason:
//! `unavailable` (the hub could not read its history yet) makes it resume again from
//! its position; a lost history (`epoch_changed`, `trimmed`, `too_many`) makes it
//! reload the room (its last events). It shows which it did.
//!
//! With `--tls` it serves HTTPS with a self-signed certificate made at start (rcgen, for
//! `localhost` and `127.0.0.1`), offering HTTP/2 and HTTP/1.1 by ALPN; over HTTP/2 it
//! enables extended CONNECT, so a browser that loaded the page over HTTP/2 opens the
//! WebSocket as a stream of that same connection (RFC 8441). Without it, plain
//! HTTP/1.1.
//!
//! - `GET /` is the page (`chat-web/index.html`, embedded): pick a nickname and a room,
//!   chat; it shows the connection state and reconnects with exponential backoff.
//! - `GET /ws?room=NAME&nick=NAME&client=ID[&epoch=E&offset=O]` is the WebSocket, upgraded with
//!   `duplex_tokio::hyper::upgrade_with` (permessage-deflate on). Text messages from
//!   the page are chat lines, published to the room's topic; the hub encodes each once
//!   per node (`PreparedMessage`) for all the node's members; each connection may
//!   publish 20 lines per second (bursts of 40), past which the page gets an error.
//!   Newcomers get the last 50 events of the room from the hub's history; with `epoch`
//!   and `offset` the page resumes after that position instead. Members are the hub's
//!   presence, keyed by the page's `client` id (kept across its reconnections): the
//!   welcome lists every node's members, and joins and leaves arrive as presence
//!   notices, once per client (a page that moves to another node neither leaves nor
//!   joins; one whose node died leaves after the presence TTL). A binary message is an
//!   integrity check: the server answers its sender with its length and CRC-32.
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

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::io::{IoSlice, Write as _};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use duplex_hub::tokio::{Flow, send_event};
use duplex_hub::{
    Framing, Hub, HubConfig, Loss, MemoryBackend, MemoryConfig, Position, RateLimit, RedisConfig,
    Resumed, Subscriber,
};
use duplex_tokio::http::{HeaderValue, Method, Request, Response, StatusCode, header};
use duplex_tokio::hyper::{Full, HyperWebSocket, upgrade_with};
use duplex_tokio::tokio_rustls::TlsAcceptor;
use duplex_tokio::{Acceptance, Config, Message, Rejection, ServerStats};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;

const PAGE: &str = include_str!("chat-web/index.html");
/// Events of the room's history a newcomer gets.
const HISTORY: u64 = 50;
/// The longest chat line, in bytes.
const MAX_LINE: usize = 4096;
/// Bytes of events queued for one connection before it counts as too slow and is
/// closed with 1013 (the page reconnects and resumes).
const QUEUE_BYTES: usize = 1 << 20;
/// Connections kept in `/stats` after they closed.
const MAX_STATS: usize = 1000;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut addr = "127.0.0.1:8080".to_owned();
    let mut tls = false;
    let mut redis = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--tls" => tls = true,
            "--redis" => redis = args.next(),
            _ => addr = arg,
        }
    }
    let config = HubConfig {
        framing: Framing::Envelope,
        queue_bytes: QUEUE_BYTES,
        publish_rate: Some(RateLimit {
            per_second: 20.0,
            burst: 40,
        }),
        ..HubConfig::default()
    };
    let hub = match &redis {
        Some(url) => {
            Hub::redis(config, RedisConfig::new(url.as_str())).map_err(std::io::Error::other)?
        }
        None => Hub::with_backend(
            config,
            Arc::new(MemoryBackend::new(MemoryConfig::default())),
        ),
    };
    let acceptor = if tls { Some(tls_acceptor()?) } else { None };
    let listener = TcpListener::bind(&addr).await?;
    let node = listener.local_addr()?.to_string();
    println!("listening on {node}");
    std::io::stdout().flush()?;

    let protocol = duplex_tokio::core::EngineConfig::default()
        .max_message_size(16 << 20)
        .max_frame_size(16 << 20)
        .keepalive(Duration::from_secs(30), Duration::from_secs(30));
    let chat = Arc::new(Chat {
        config: Config::default().engine(protocol),
        hub,
        node,
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
    hub: Hub,
    /// This node's address, told to pages in the welcome.
    node: String,
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

/// Who joined, from the request, and where the page resumes.
struct Join {
    room: String,
    nick: String,
    resume: Option<Position>,
    /// The page's id for presence (the same across its reconnections).
    client: Option<String>,
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
        let Join {
            room,
            nick,
            resume,
            client,
        } = join.expect("set when accepted");
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
        let client = client.unwrap_or_else(|| format!("conn-{}", stats.id));
        let request = duplex_hub::Request::from(&*request);
        tokio::spawn(
            self.clone()
                .serve(websocket, stats, resume, client, request),
        );
        response
    }

    /// One connection: join (or resume) the room's topic, the welcome, then chat lines
    /// in and the room's events out until either side closes.
    async fn serve(
        self: Arc<Self>,
        websocket: HyperWebSocket,
        stats: Arc<ConnStats>,
        resume: Option<Position>,
        client: String,
        request: duplex_hub::Request,
    ) {
        let tapped = stats.clone();
        let Ok(mut ws) = websocket
            .wrap_stream(move |io| FrameTap::new(io, tapped))
            .await
        else {
            return;
        };
        stats.open.store(true, Relaxed);
        self.server.attach(&ws);
        let topic = format!("room:{}", stats.room);
        let nick = stats.nick.lock().unwrap().clone();

        // With Redis: round trips on its async connection. The subscriber carries the
        // request (for an authorization hook) and the publish rate limit.
        let mut sub = self.hub.connection(request);
        let answer = follow(&self.hub, &mut sub, &topic, resume).await;
        // Present in the room (one join per client on all nodes, whatever its
        // connections); the member list is every node's.
        let presence = match &answer {
            Ok(_) => self.hub.join_async(&topic, &client, &nick).await.ok(),
            Err(_) => None,
        };
        let members = self.hub.members_async(&topic).await.unwrap_or_default();
        let mut welcome = String::from(r#"{"type":"welcome","room":"#);
        json_string(&mut welcome, &stats.room);
        welcome.push_str(r#","nick":"#);
        json_string(&mut welcome, &nick);
        welcome.push_str(r#","node":"#);
        json_string(&mut welcome, &self.node);
        welcome.push_str(r#","client":"#);
        json_string(&mut welcome, &client);
        welcome.push_str(r#","members":["#);
        for (i, member) in members.iter().enumerate() {
            if i > 0 {
                welcome.push(',');
            }
            welcome.push_str(r#"{"client":"#);
            json_string(&mut welcome, &member.client);
            welcome.push_str(r#","nick":"#);
            json_string(&mut welcome, &member.info);
            welcome.push('}');
        }
        // `lost` says why in words, `lost_reason` as a code the page acts on: it resumes
        // again later when the hub may still have the events (`unavailable`) and
        // reloads the room otherwise.
        let (history, resumed, lost) = match (&answer, resume) {
            (Ok(Resumed::Recovered(n)), None) => (*n, None, None),
            (Ok(Resumed::Recovered(n)), Some(_)) => (0, Some(*n), None),
            (Ok(Resumed::NotRecovered(loss)), _) => {
                (0, resume.map(|_| 0), Some((loss.to_string(), loss.code())))
            }
            (Err(e), _) => (0, None, Some((e.to_string(), Loss::Unavailable.code()))),
        };
        let _ = write!(
            welcome,
            r#"],"history":{history},"resumed":{},"deflate":{},"extensions":"#,
            resumed.map_or("null".to_owned(), |n| n.to_string()),
            stats.deflate
        );
        json_opt(&mut welcome, stats.extensions_negotiated.as_deref());
        welcome.push_str(r#","lost":"#);
        json_opt(&mut welcome, lost.as_ref().map(|l| l.0.as_str()));
        welcome.push_str(r#","lost_reason":"#);
        json_opt(&mut welcome, lost.map(|l| l.1));
        welcome.push('}');
        let mut ok = ws.send(Message::text(welcome)).await.is_ok();
        if ok && answer.is_err() {
            // Not subscribed (the hub is unreachable): the page retries later.
            let frame = duplex_tokio::CloseFrame::new(
                duplex_tokio::CloseCode::TryAgainLater,
                "rooms unavailable",
            );
            let _ = tokio::time::timeout(Duration::from_secs(5), ws.close(Some(frame))).await;
            ok = false;
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
                                say(&mut sub, &topic, &nick, line.as_str(), &mut ws).await
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
                Some(event) = sub.recv() => {
                    stats.counters.messages_sent.fetch_add(1, Relaxed);
                    // A message goes with `send_prepared` (encoded once per node), a
                    // notice as JSON, and a subscriber closed for being too slow
                    // (1013) closes the connection: the page resumes.
                    ok = matches!(send_event(&mut ws, &sub, &event).await, Ok(Flow::Continue));
                }
            }
        }
        drop(sub);
        // The client leaves after the hub's grace period, unless it is back by then.
        drop(presence);
        stats.open.store(false, Relaxed);
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

/// Publishes an event to the room for `sub`'s connection; a failure (Redis away:
/// nothing is queued; or past the connection's rate limit) is told to the sender.
/// Returns false when the sender's connection failed.
async fn publish<S>(
    sub: &mut Subscriber,
    topic: &str,
    event: Message,
    ws: &mut duplex_tokio::WebSocketStream<S>,
) -> bool
where
    S: AsyncRead + AsyncWrite,
{
    match sub.publish_async(topic, event).await {
        Ok(_) => true,
        Err(e) => {
            let mut error = String::from(r#"{"type":"error","text":"#);
            json_string(&mut error, &format!("not sent: {e}"));
            error.push('}');
            ws.send(Message::text(error)).await.is_ok()
        }
    }
}

/// A chat line: published to the room (the sender gets it back like everyone).
/// Returns false when the sender's connection failed.
async fn say<S>(
    sub: &mut Subscriber,
    topic: &str,
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
    publish(sub, topic, event("msg", nick, Some(line)), ws).await
}

/// Follows the room's topic: after `resume` when the page has a position, otherwise
/// from the last `HISTORY` events of the room's history (queued first, then live ones,
/// each once).
async fn follow(
    hub: &Hub,
    sub: &mut Subscriber,
    topic: &str,
    resume: Option<Position>,
) -> Result<Resumed, duplex_hub::HubError> {
    if let Some(after) = resume {
        return sub.resume_async(topic, after).await;
    }
    match hub.latest_async(topic).await? {
        Some(latest) => {
            let after = Position {
                epoch: latest.epoch,
                offset: latest.offset.saturating_sub(HISTORY),
            };
            sub.resume_async(topic, after).await
        }
        None => sub
            .subscribe_async(topic)
            .await
            .map(|_| Resumed::Recovered(0)),
    }
}

/// A `msg`, `join` or `leave` event (the hub frames and encodes it once per node).
fn event(kind: &str, nick: &str, text: Option<&str>) -> Message {
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
    Message::text(json)
}

/// `room=...&nick=...[&epoch=E&offset=O]`, percent-decoded, trimmed, room and nick 1
/// to 32 characters each.
fn parse_join(query: &str) -> Result<Join, Rejection> {
    let mut room = None;
    let mut nick = None;
    let (mut epoch, mut offset) = (None, None);
    let mut client = None;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match key {
            "client" => {
                let valid = (1..=64).contains(&value.len())
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !valid {
                    return Err(Rejection::new(StatusCode::BAD_REQUEST, "bad client id"));
                }
                client = Some(value.to_owned());
                continue;
            }
            "room" => &mut room,
            "nick" => &mut nick,
            "epoch" | "offset" => {
                let n: u64 = value
                    .parse()
                    .map_err(|_| Rejection::new(StatusCode::BAD_REQUEST, "bad position"))?;
                *if key == "epoch" {
                    &mut epoch
                } else {
                    &mut offset
                } = Some(n);
                continue;
            }
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
        resume: epoch
            .zip(offset)
            .map(|(epoch, offset)| Position { epoch, offset }),
        client,
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
