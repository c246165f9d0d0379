//! `duplex_tokio::hyper`: a hyper 1 server on 127.0.0.1 upgrading with duplex, against
//! the duplex client and raw sockets. Needs the `hyper` feature:
//! `cargo test -p duplex-tokio --features hyper --test hyper_upgrade`.
#![cfg(feature = "hyper")]

use std::convert::Infallible;
use std::time::Duration;

use duplex_tokio::http::{Request, StatusCode};
use duplex_tokio::hyper::{Full, UpgradeError, upgrade, upgrade_with};
use duplex_tokio::{
    Acceptance, ClientRequest, CloseCode, CloseFrame, Config, Message, Rejection, connect_with,
};
use hyper::Response;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);

/// What the server saw of each upgraded connection.
#[derive(Debug)]
struct Seen {
    compressed: bool,
    protocol: Option<String>,
}

/// A hyper server answering every request with `duplex_tokio::hyper::upgrade_with`
/// (choosing `chat.v1` when offered, refusing `/private` with 403) and echoing messages.
async fn server(config: Config) -> (String, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (seen_tx, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let config = config.clone();
            let seen_tx = seen_tx.clone();
            let service = service_fn(move |mut request: Request<Incoming>| {
                let result = upgrade_with(&mut request, &config, |request, offer| {
                    if request.uri().path() == "/private" {
                        return Err(Rejection::new(StatusCode::FORBIDDEN, "members only"));
                    }
                    let mut acceptance = Acceptance::default();
                    if let Some(protocol) = offer.select_protocol(&["chat.v1"]) {
                        acceptance = acceptance.protocol(protocol);
                    }
                    Ok(acceptance)
                });
                let response = match result {
                    Ok((response, websocket)) => {
                        let seen_tx = seen_tx.clone();
                        tokio::spawn(async move {
                            let protocol = websocket.protocol().map(str::to_owned);
                            let mut ws = websocket.await.unwrap();
                            let _ = seen_tx.send(Seen {
                                compressed: ws.is_compressed(),
                                protocol,
                            });
                            while let Some(Ok(message)) = ws.recv().await {
                                if message.is_data() && ws.send(message).await.is_err() {
                                    break;
                                }
                            }
                        });
                        response
                    }
                    Err(error) => error.into_response(),
                };
                async move { Ok::<_, Infallible>(response) }
            });
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn duplex_client_round_trip_with_deflate_and_a_subprotocol() {
    let (addr, mut seen) = server(Config::default()).await;
    let request = ClientRequest::new(&format!("ws://{addr}/chat"))
        .unwrap()
        .protocol("chat.v2")
        .protocol("chat.v1");
    let (mut ws, response) = timeout(LIMIT, connect_with(request, Config::default()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.negotiated.protocol.as_deref(), Some("chat.v1"));
    assert!(response.negotiated.deflate.is_some());
    assert_eq!(
        response.response.headers()["sec-websocket-extensions"],
        "permessage-deflate; server_no_context_takeover"
    );
    assert!(ws.is_compressed());
    let server_side = timeout(LIMIT, seen.recv()).await.unwrap().unwrap();
    assert!(server_side.compressed);
    assert_eq!(server_side.protocol.as_deref(), Some("chat.v1"));

    for text in ["hi", &"compressible ".repeat(10_000), &"é✓".repeat(100_000)] {
        ws.send(Message::text(text)).await.unwrap();
        let echoed = timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
        assert_eq!(echoed, Message::text(text));
    }
    let binary: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
    ws.send(Message::binary(binary.clone())).await.unwrap();
    let echoed = timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed, Message::binary(binary));

    timeout(
        LIMIT,
        ws.close(Some(CloseFrame::new(CloseCode::Normal, "done"))),
    )
    .await
    .unwrap()
    .unwrap();
}

#[tokio::test]
async fn deflate_off_in_the_config_is_not_negotiated() {
    let (addr, mut seen) = server(Config::default().deflate(None)).await;
    let request = ClientRequest::new(&format!("ws://{addr}/")).unwrap();
    let (mut ws, response) = timeout(LIMIT, connect_with(request, Config::default()))
        .await
        .unwrap()
        .unwrap();
    assert!(response.negotiated.deflate.is_none());
    assert!(!ws.is_compressed());
    let server_side = timeout(LIMIT, seen.recv()).await.unwrap().unwrap();
    assert!(!server_side.compressed);
    assert_eq!(server_side.protocol, None);
    ws.send(Message::text("plain")).await.unwrap();
    assert_eq!(
        timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap(),
        Message::text("plain")
    );
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Sends `head` (and `then`) on a fresh connection; returns everything the server sends
/// until it closes, `done` says it is all there, or 3 seconds pass.
async fn raw_exchange(addr: &str, head: &str, then: &[u8], done: fn(&[u8]) -> bool) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut wire = head.as_bytes().to_vec();
    wire.extend_from_slice(then);
    tcp.write_all(&wire).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let reading = async {
        while !done(&got) {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = timeout(Duration::from_secs(3), reading).await;
    got
}

/// A whole response: its head and `Content-Length` bytes of body.
fn complete(got: &[u8]) -> bool {
    let text = String::from_utf8_lossy(got).to_ascii_lowercase();
    let Some(end) = text.find("\r\n\r\n") else {
        return false;
    };
    let length = text[..end]
        .split("\r\n")
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse::<usize>().ok());
    length.is_some_and(|length| got.len() >= end + 4 + length)
}

fn status_and_head(response: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(response).into_owned();
    let end = text.find("\r\n\r\n").expect("a complete head");
    let head = text[..end].to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    (status, head)
}

fn handshake(method: &str, version: &str, ws_version: &str) -> String {
    format!(
        "{method} /chat {version}\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n\
         Sec-WebSocket-Version: {ws_version}\r\n\r\n"
    )
}

#[tokio::test]
async fn bad_requests_get_the_rfc_6455_status() {
    let (addr, _seen) = server(Config::default()).await;

    // Not an upgrade at all.
    let plain = "GET /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let (status, head) = status_and_head(&raw_exchange(&addr, plain, &[], complete).await);
    assert_eq!(status, 400, "{head}");

    // An unsupported WebSocket version: 426 with the version we speak.
    let response = raw_exchange(&addr, &handshake("GET", "HTTP/1.1", "8"), &[], complete).await;
    let (status, head) = status_and_head(&response);
    assert_eq!(status, 426, "{head}");
    assert!(head.contains("\r\nsec-websocket-version: 13"), "{head}");

    // Not GET: 405 with Allow.
    let response = raw_exchange(&addr, &handshake("POST", "HTTP/1.1", "13"), &[], complete).await;
    let (status, head) = status_and_head(&response);
    assert_eq!(status, 405, "{head}");
    assert!(head.contains("\r\nallow: get"), "{head}");

    // HTTP/1.0.
    let response = raw_exchange(&addr, &handshake("GET", "HTTP/1.0", "13"), &[], complete).await;
    assert_eq!(status_and_head(&response).0, 400);

    // Refused by the callback: its own response.
    let refused = handshake("GET", "HTTP/1.1", "13").replace("/chat", "/private");
    let response = raw_exchange(&addr, &refused, &[], complete).await;
    let (status, _) = status_and_head(&response);
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&response).ends_with("members only"));
}

#[tokio::test]
async fn a_frame_sent_right_behind_the_request_is_not_lost() {
    let (addr, _seen) = server(Config::default().deflate(None)).await;
    // A masked text frame "ping!" in the same write as the handshake.
    let frame = wire_kit::frame(0x81, b"ping!", Some([1, 2, 3, 4]));
    let head = handshake("GET", "HTTP/1.1", "13");
    let response = raw_exchange(&addr, &head, &frame, |got| got.ends_with(b"ping!")).await;
    let (status, head) = status_and_head(&response);
    assert_eq!(status, 101, "{head}");
    assert!(head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="));
    let body_start = String::from_utf8_lossy(&response).find("\r\n\r\n").unwrap() + 4;
    assert_eq!(&response[body_start..], b"\x81\x05ping!");
}

#[test]
fn upgrade_without_hyper_is_refused_before_answering_101() {
    // A valid handshake that did not come through a hyper connection: 500, not a 101
    // that could never be followed by a WebSocket.
    let mut request = Request::get("/chat")
        .header("host", "example.com")
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-key", KEY)
        .header("sec-websocket-version", "13")
        .body(())
        .unwrap();
    let error = upgrade(&mut request, &Config::default()).unwrap_err();
    assert!(matches!(error, UpgradeError::NotUpgradable), "{error}");
    let response: Response<Full<Bytes>> = error.into_response();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);

    // HTTP/2 requests are not WebSocket handshakes here (no RFC 8441).
    let mut request = Request::get("/chat")
        .version(duplex_tokio::http::Version::HTTP_2)
        .header("host", "example.com")
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-key", KEY)
        .header("sec-websocket-version", "13")
        .body(())
        .unwrap();
    let error = upgrade(&mut request, &Config::default()).unwrap_err();
    assert_eq!(error.status(), StatusCode::BAD_REQUEST);
}
