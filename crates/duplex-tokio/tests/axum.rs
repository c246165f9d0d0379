//! `duplex_tokio::axum::WebSocketUpgrade` in axum apps served by `axum::serve` on
//! 127.0.0.1, over HTTP/1.1 and HTTP/2 (h2c with RFC 8441 extended CONNECT), against
//! duplex's client and tokio-tungstenite. Needs the `axum` and `http2` features:
//! `cargo test -p duplex-tokio --features axum,http2 --test axum`.
#![cfg(all(feature = "axum", feature = "http2"))]

/// A broadcast chat written against `axum::extract::ws`, as a newcomer writes it: the
/// first text message is the nickname, every later one goes to everyone as
/// `name: text`, and joins and departures are announced.
#[path = "axum/chat_axum_ws.rs"]
mod chat_axum_ws;
/// The same chat after docs/MIGRATING.md's diff, on duplex's extractor.
#[path = "axum/chat_duplex.rs"]
mod chat_duplex;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, Method, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use duplex_tokio::axum::{Message, UpgradeFailed, WebSocketUpgrade};
use duplex_tokio::h2::{H2Stream, Http2Connection};
use duplex_tokio::{
    ClientRequest, CloseCode, Config, HandshakeError, MaybeTlsStream, WebSocketStream, connect_with,
};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite;

const LIMIT: Duration = Duration::from_secs(10);

/// Serves `app` with `axum::serve` (HTTP/1.1 with upgrades and HTTP/2 with extended
/// CONNECT on one port) on 127.0.0.1.
async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// An h2c connection (HTTP/2 with prior knowledge) that allows extended CONNECT.
async fn h2c(addr: SocketAddr) -> Http2Connection {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let connection = timeout(LIMIT, Http2Connection::handshake(tcp, &Config::default()))
        .await
        .unwrap()
        .unwrap();
    assert!(connection.supports_websocket());
    connection
}

/// A chat member, on one of the three clients.
enum Member {
    Http1(WebSocketStream<MaybeTlsStream>),
    Http2(WebSocketStream<H2Stream>),
    Tungstenite(
        Box<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>>,
    ),
}

impl Member {
    async fn over_http1(url: &str) -> Self {
        let request = ClientRequest::new(url).unwrap();
        let connected = timeout(LIMIT, connect_with(request, Config::default())).await;
        Self::Http1(connected.unwrap().unwrap().0)
    }

    async fn over_http2(connection: &Http2Connection, url: &str) -> Self {
        let request = ClientRequest::new(url).unwrap();
        let connected = timeout(LIMIT, connection.websocket(request, Config::default())).await;
        let (ws, response) = connected.unwrap().unwrap();
        assert_eq!(
            response.response.status(),
            StatusCode::OK,
            "an RFC 8441 answer"
        );
        Self::Http2(ws)
    }

    async fn over_tungstenite(url: &str) -> Self {
        let connected = timeout(LIMIT, tokio_tungstenite::connect_async(url)).await;
        Self::Tungstenite(Box::new(connected.unwrap().unwrap().0))
    }

    async fn say(&mut self, text: &str) {
        match self {
            Self::Http1(ws) => ws.send(Message::text(text)).await.unwrap(),
            Self::Http2(ws) => ws.send(Message::text(text)).await.unwrap(),
            Self::Tungstenite(ws) => ws.send(tungstenite::Message::text(text)).await.unwrap(),
        }
    }

    /// The next text message, within the time limit.
    async fn hear(&mut self) -> String {
        let heard = async {
            match self {
                Self::Http1(ws) => text(ws.recv().await.unwrap().unwrap()).to_string(),
                Self::Http2(ws) => text(ws.recv().await.unwrap().unwrap()).to_string(),
                Self::Tungstenite(ws) => {
                    let message = ws.next().await.unwrap().unwrap();
                    message.into_text().unwrap().as_str().to_owned()
                }
            }
        };
        timeout(LIMIT, heard).await.unwrap()
    }

    async fn leave(self) {
        let closed = async {
            match self {
                Self::Http1(mut ws) => ws.close(None).await.unwrap(),
                Self::Http2(mut ws) => ws.close(None).await.unwrap(),
                Self::Tungstenite(mut boxed) => {
                    let ws = &mut *boxed;
                    ws.close(None).await.unwrap();
                    while ws.next().await.is_some() {}
                }
            }
        };
        timeout(LIMIT, closed).await.unwrap();
    }
}

fn text(message: Message) -> duplex_tokio::Utf8Bytes {
    match message {
        Message::Text(text) => text,
        other => panic!("expected text, got {other:?}"),
    }
}

/// Three members join the chat served at `addr` (duplex over HTTP/1.1, duplex over
/// HTTP/2, tokio-tungstenite), talk, and leave; each hears what the others said.
async fn chat(addr: SocketAddr) {
    let url = format!("ws://{addr}/chat");
    let mut alice = Member::over_http1(&url).await;
    alice.say("alice").await;
    assert_eq!(alice.hear().await, "alice joined");

    let connection = h2c(addr).await;
    let mut bob = Member::over_http2(&connection, &url).await;
    bob.say("bob").await;
    assert_eq!(alice.hear().await, "bob joined");
    assert_eq!(bob.hear().await, "bob joined");

    let mut carol = Member::over_tungstenite(&url).await;
    carol.say("carol").await;
    for member in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(member.hear().await, "carol joined");
    }

    alice.say("hi").await;
    bob.say("grüß dich 🦀").await;
    for member in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(member.hear().await, "alice: hi");
        assert_eq!(member.hear().await, "bob: grüß dich 🦀");
    }

    carol.leave().await;
    assert_eq!(alice.hear().await, "carol left");
    assert_eq!(bob.hear().await, "carol left");
    bob.leave().await;
    assert_eq!(alice.hear().await, "bob left");
    // The HTTP/2 connection outlives its WebSocket and opens another.
    let mut dave = Member::over_http2(&connection, &url).await;
    dave.say("dave").await;
    assert_eq!(alice.hear().await, "dave joined");
    assert_eq!(dave.hear().await, "dave joined");
    alice.leave().await;
    assert_eq!(dave.hear().await, "alice left");
    dave.leave().await;
}

#[tokio::test]
async fn the_chat_on_duplex_serves_http1_http2_and_tungstenite() {
    chat(serve(chat_duplex::app()).await).await;
}

#[tokio::test]
async fn the_same_chat_on_axum_extract_ws_passes_the_same_test() {
    chat(serve(chat_axum_ws::app()).await).await;
}

/// Applies the unified diff `patch` (hunks of ` `, `-` and `+` lines, each hunk's old
/// lines found in order in `text`) to `text`.
fn apply(text: &str, patch: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    let mut from = 0;
    let hunks = patch.split("\n@@").skip(1);
    for hunk in hunks {
        let body = hunk.split_once('\n').map_or("", |(_, body)| body);
        let (mut old, mut new) = (Vec::new(), Vec::new());
        for line in body.lines() {
            let (mark, rest) = line.split_at(line.len().min(1));
            match mark {
                " " | "" => {
                    old.push(rest);
                    new.push(rest);
                }
                "-" => old.push(rest),
                "+" => new.push(rest),
                _ => panic!("not a diff line: {line:?}"),
            }
        }
        let at = (from..=lines.len().saturating_sub(old.len()))
            .find(|&at| lines[at..at + old.len()] == old[..])
            .unwrap_or_else(|| panic!("hunk does not apply: {hunk}"));
        lines.splice(at..at + old.len(), new.iter().copied());
        from = at + new.len();
    }
    lines.join("\n") + "\n"
}

#[test]
fn the_migrating_diff_turns_the_axum_chat_into_the_duplex_chat() {
    let guide = include_str!("../../../docs/MIGRATING.md");
    let (_, rest) = guide
        .split_once("```diff\n")
        .expect("docs/MIGRATING.md shows a diff");
    let (patch, _) = rest.split_once("```").unwrap();
    assert!(patch.starts_with("--- "), "a unified diff: {patch}");
    let moved = apply(include_str!("axum/chat_axum_ws.rs"), patch);
    assert_eq!(moved, include_str!("axum/chat_duplex.rs"));
}

/// Offers `protocols` (in that order) to `/proto`, which supports chat.v2 then
/// chat.v1 and sends back, as its first message, what it saw.
async fn protocol_choice(
    addr: SocketAddr,
    http2: bool,
    protocols: &[&str],
) -> (Option<String>, String) {
    let mut request = ClientRequest::new(&format!("ws://{addr}/proto")).unwrap();
    for protocol in protocols {
        request = request.protocol(*protocol);
    }
    if http2 {
        let (mut ws, response) =
            timeout(LIMIT, h2c(addr).await.websocket(request, Config::default()))
                .await
                .unwrap()
                .unwrap();
        (
            response.negotiated.protocol,
            text(ws.recv().await.unwrap().unwrap()).to_string(),
        )
    } else {
        let (mut ws, response) = timeout(LIMIT, connect_with(request, Config::default()))
            .await
            .unwrap()
            .unwrap();
        (
            response.negotiated.protocol,
            text(ws.recv().await.unwrap().unwrap()).to_string(),
        )
    }
}

async fn proto(ws: WebSocketUpgrade) -> Response {
    let ws = ws.protocols(["chat.v2", "chat.v1"]);
    let seen = format!(
        "offered {:?}, chose {:?}, http2 {}",
        ws.requested_protocols().collect::<Vec<_>>(),
        ws.selected_protocol(),
        ws.is_http2()
    );
    ws.on_upgrade(|mut ws| async move {
        let _ = ws.send(Message::text(seen)).await;
    })
}

#[tokio::test]
async fn protocols_picks_the_servers_first_choice_among_the_offered() {
    let addr = serve(Router::new().route("/proto", any(proto))).await;
    for http2 in [false, true] {
        let (chosen, seen) = protocol_choice(addr, http2, &["chat.v1", "chat.v2"]).await;
        assert_eq!(chosen.as_deref(), Some("chat.v2"));
        assert_eq!(
            seen,
            format!("offered [\"chat.v1\", \"chat.v2\"], chose Some(\"chat.v2\"), http2 {http2}")
        );
        let (chosen, _) = protocol_choice(addr, http2, &["chat.v1"]).await;
        assert_eq!(chosen.as_deref(), Some("chat.v1"));
        let (chosen, seen) = protocol_choice(addr, http2, &["other"]).await;
        assert_eq!(
            chosen, None,
            "none in common: accepted without a subprotocol"
        );
        assert_eq!(
            seen,
            format!("offered [\"other\"], chose None, http2 {http2}")
        );
    }
}

#[tokio::test]
async fn config_sets_deflate_and_limits() {
    let app = Router::new()
        .route(
            "/small",
            any(|ws: WebSocketUpgrade| async move {
                ws.config(Config::default().deflate(None))
                    .max_message_size(1024)
                    .on_upgrade(|mut ws| async move {
                        while let Some(Ok(message)) = ws.recv().await {
                            if message.is_data() && ws.send(message).await.is_err() {
                                break;
                            }
                        }
                    })
            }),
        )
        .route(
            "/default",
            any(|ws: WebSocketUpgrade| async move { ws.on_upgrade(|_| async {}) }),
        );
    let addr = serve(app).await;
    let connect = |path: &str| {
        let request = ClientRequest::new(&format!("ws://{addr}{path}")).unwrap();
        timeout(LIMIT, connect_with(request, Config::default()))
    };
    let (_, response) = connect("/default").await.unwrap().unwrap();
    assert!(
        response.negotiated.deflate.is_some(),
        "deflate is on by default"
    );
    let (mut ws, response) = connect("/small").await.unwrap().unwrap();
    assert!(response.negotiated.deflate.is_none());
    ws.send(Message::text("x".repeat(1024))).await.unwrap();
    assert_eq!(text(ws.recv().await.unwrap().unwrap()).len(), 1024);
    ws.send(Message::text("x".repeat(1025))).await.unwrap();
    let closed = loop {
        match timeout(LIMIT, ws.recv()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame.map(|frame| frame.code),
            Some(Ok(_)) => {}
            Some(Err(error)) => panic!("{error}"),
            None => break None,
        }
    };
    assert_eq!(
        closed,
        Some(CloseCode::MessageTooBig),
        "1009 for a message over the limit"
    );
}

/// `/private` asks for a bearer token before upgrading; counts the upgrades.
fn private(upgraded: Arc<AtomicUsize>) -> Router {
    let handler = move |headers: HeaderMap, ws: WebSocketUpgrade| async move {
        if headers
            .get("authorization")
            .is_none_or(|token| token != "Bearer letmein")
        {
            return (StatusCode::UNAUTHORIZED, "a token, please\n").into_response();
        }
        ws.on_upgrade(move |_| async move {
            upgraded.fetch_add(1, Ordering::SeqCst);
        })
    };
    Router::new().route("/private", any(handler))
}

#[tokio::test]
async fn the_handler_refuses_before_the_upgrade_with_its_own_response() {
    let upgraded = Arc::new(AtomicUsize::new(0));
    let addr = serve(private(upgraded.clone())).await;
    let url = format!("ws://{addr}/private");
    let refused = |error: HandshakeError| {
        let refused = error.refused().expect("refused with a response");
        (
            refused.status,
            String::from_utf8_lossy(&refused.body).into_owned(),
        )
    };
    let expected = (StatusCode::UNAUTHORIZED, "a token, please\n".to_owned());

    let request = ClientRequest::new(&url).unwrap();
    let error = timeout(LIMIT, connect_with(request, Config::default()))
        .await
        .unwrap();
    assert_eq!(refused(error.unwrap_err()), expected);
    let connection = h2c(addr).await;
    let request = ClientRequest::new(&url).unwrap();
    let error = timeout(LIMIT, connection.websocket(request, Config::default()))
        .await
        .unwrap();
    // (duplex's HTTP/2 client does not read a refusal's body.)
    assert_eq!(refused(error.unwrap_err()).0, expected.0);
    assert_eq!(upgraded.load(Ordering::SeqCst), 0);

    let with_token = || {
        ClientRequest::new(&url)
            .unwrap()
            .header("authorization", "Bearer letmein")
            .unwrap()
    };
    let (_ws, _) = timeout(LIMIT, connect_with(with_token(), Config::default()))
        .await
        .unwrap()
        .unwrap();
    let (_ws2, _) = timeout(LIMIT, connection.websocket(with_token(), Config::default()))
        .await
        .unwrap()
        .unwrap();
    let deadline = Instant::now() + LIMIT;
    while upgraded.load(Ordering::SeqCst) < 2 {
        assert!(
            Instant::now() < deadline,
            "the upgrades ran their callbacks"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends `request` on a new connection and returns the response head, read to its
/// blank line.
async fn raw_exchange(addr: SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(timeout(LIMIT, tcp.read_u8()).await.unwrap().unwrap());
        assert!(head.len() < 4096, "response head too long");
    }
    String::from_utf8(head).unwrap().to_ascii_lowercase()
}

#[tokio::test]
async fn a_request_that_is_no_handshake_never_reaches_the_handler() {
    let upgraded = Arc::new(AtomicUsize::new(0));
    let addr = serve(private(upgraded.clone())).await;
    let handshake = |method: &str, version: &str| {
        format!(
            "{method} /private HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: {version}\r\nAuthorization: Bearer letmein\r\n\r\n"
        )
    };
    let plain =
        format!("GET /private HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer letmein\r\n\r\n");
    let head = raw_exchange(addr, &plain).await;
    assert!(head.starts_with("http/1.1 400 "), "{head}");
    let head = raw_exchange(addr, &handshake("POST", "13")).await;
    assert!(head.starts_with("http/1.1 405 "), "{head}");
    assert!(head.contains("\r\nallow: get\r\n"), "{head}");
    let head = raw_exchange(addr, &handshake("GET", "8")).await;
    assert!(head.starts_with("http/1.1 426 "), "{head}");
    assert!(head.contains("\r\nsec-websocket-version: 13\r\n"), "{head}");
    let bad_key = handshake("GET", "13").replace("dGhlIHNhbXBsZSBub25jZQ==", "short");
    let head = raw_exchange(addr, &bad_key).await;
    assert!(head.starts_with("http/1.1 400 "), "{head}");
    // The same request, well formed, is upgraded.
    let head = raw_exchange(addr, &handshake("GET", "13")).await;
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    let deadline = Instant::now() + LIMIT;
    while upgraded.load(Ordering::SeqCst) < 1 {
        assert!(Instant::now() < deadline, "the upgrade ran its callback");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn over_http2_too_a_request_that_is_no_handshake_never_reaches_the_handler() {
    let upgraded = Arc::new(AtomicUsize::new(0));
    let addr = serve(private(upgraded.clone())).await;
    // Requests written with the `h2` crate, which lets them be wrong.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let status = |method: Method, version: &str, protocol: Option<&'static str>| {
        let mut request = axum::http::Request::builder()
            .method(method)
            .version(Version::HTTP_2)
            .uri(format!("http://{addr}/private"))
            .header("sec-websocket-version", version)
            .header("authorization", "Bearer letmein")
            .body(())
            .unwrap();
        if let Some(protocol) = protocol {
            let protocol = h2::ext::Protocol::from_static(protocol);
            request.extensions_mut().insert(protocol);
        }
        let send = send.clone();
        async move {
            let mut send = send.ready().await.unwrap();
            let (response, _stream) = send.send_request(request, false).unwrap();
            timeout(LIMIT, response).await.unwrap().unwrap().status()
        }
    };
    let bad = status(Method::GET, "13", None).await;
    assert_eq!(bad, StatusCode::BAD_REQUEST, "a plain GET");
    let bad = status(Method::CONNECT, "12", Some("websocket")).await;
    assert_eq!(bad, StatusCode::UPGRADE_REQUIRED);
    let bad = status(Method::CONNECT, "13", Some("webtransport")).await;
    assert_eq!(bad, StatusCode::BAD_REQUEST);
    assert_eq!(upgraded.load(Ordering::SeqCst), 0);
    let good = status(Method::CONNECT, "13", Some("websocket")).await;
    assert_eq!(
        good,
        StatusCode::OK,
        "the same connection upgrades a good one"
    );
}

// On worker threads, where the handler's task may move from one to another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awaiting_the_websocket_in_the_handler_fails_at_once() {
    let (failures, mut failed) = mpsc::unbounded_channel();
    let mistake = move |ws: WebSocketUpgrade| async move {
        let (response, pending) = ws.upgrade();
        // The classic mistake: the upgrade waits for this very response.
        match pending.await {
            Ok(_) => response,
            Err(error) => {
                let answer = (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response();
                let _ = failures.send(error);
                answer
            }
        }
    };
    let spawned = |ws: WebSocketUpgrade| async move {
        let (response, pending) = ws.upgrade();
        tokio::spawn(async move {
            let mut ws = pending.await.unwrap();
            while let Some(Ok(message)) = ws.recv().await {
                if message.is_data() && ws.send(message).await.is_err() {
                    break;
                }
            }
        });
        response
    };
    let app = Router::new()
        .route("/mistake", any(mistake))
        .route("/spawned", any(spawned));
    let addr = serve(app).await;

    for http2 in [false, true] {
        let started = Instant::now();
        let request = ClientRequest::new(&format!("ws://{addr}/mistake")).unwrap();
        let result = if http2 {
            h2c(addr)
                .await
                .websocket(request, Config::default())
                .await
                .map(drop)
        } else {
            connect_with(request, Config::default()).await.map(drop)
        };
        let error = result.unwrap_err();
        let refused = error.refused().expect("answered");
        assert_eq!(refused.status, StatusCode::INTERNAL_SERVER_ERROR);
        if !http2 {
            // (duplex's HTTP/2 client does not read a refusal's body.)
            let body = String::from_utf8_lossy(&refused.body);
            assert!(body.contains("awaited in the handler"), "{body}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "not a hang until a timeout"
        );
        let failure = timeout(LIMIT, failed.recv()).await.unwrap().unwrap();
        assert!(
            matches!(failure, UpgradeFailed::AwaitedInHandler),
            "{failure:?}"
        );
    }

    // The same lower-level call, awaited in a task of its own, works.
    let request = ClientRequest::new(&format!("ws://{addr}/spawned")).unwrap();
    let (mut ws, _) = timeout(LIMIT, connect_with(request, Config::default()))
        .await
        .unwrap()
        .unwrap();
    ws.send(Message::text("echo")).await.unwrap();
    let echoed = timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed, Message::text("echo"));
}

#[tokio::test]
async fn on_failed_upgrade_hears_of_a_client_gone_before_the_response() {
    let (failures, mut failed) = mpsc::unbounded_channel();
    let (arrived, mut handler_ran) = mpsc::unbounded_channel();
    let handler = move |ws: WebSocketUpgrade| async move {
        let failures = failures.clone();
        let response = ws
            .on_failed_upgrade(move |error| {
                let _ = failures.send(error);
            })
            .on_upgrade(|_| async { panic!("no connection to hand over") });
        let _ = arrived.send(());
        // Slow to answer: the client is gone by then.
        tokio::time::sleep(Duration::from_millis(300)).await;
        response
    };
    let addr = serve(Router::new().route("/slow", any(handler))).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /slow HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    timeout(LIMIT, handler_ran.recv()).await.unwrap().unwrap();
    drop(tcp);
    let failure = timeout(LIMIT, failed.recv()).await.unwrap().unwrap();
    assert!(
        matches!(failure, UpgradeFailed::Connection(_)),
        "{failure:?}"
    );
}
