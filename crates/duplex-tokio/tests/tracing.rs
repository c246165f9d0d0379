//! The `tracing` feature: the span of a connection and the events of a handshake
//! rejection, a limit hit and the close, seen by a small recording subscriber.
#![cfg(feature = "tracing")]

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use duplex_tokio::{ClientRequest, Config, Message, accept_with, client_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

const LIMIT: Duration = Duration::from_secs(10);

/// An event: the id of its parent span, and its fields.
type Recorded = (Option<u64>, String);

/// Everything recorded: spans (name and fields) and events.
#[derive(Clone, Default)]
struct Recorder {
    spans: Arc<Mutex<Vec<String>>>,
    events: Arc<Mutex<Vec<Recorded>>>,
}

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = Fields(format!("{}: ", span.metadata().name()));
        span.record(&mut fields);
        let mut spans = self.spans.lock().unwrap();
        spans.push(fields.0);
        Id::from_u64(spans.len() as u64)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        let parent = event.parent().map(Id::into_u64);
        self.events.lock().unwrap().push((parent, fields.0));
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

#[tokio::test]
async fn spans_and_events_of_a_connection() {
    let recorder = Recorder::default();
    let _default = tracing::subscriber::set_default(recorder.clone());

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        // A bad handshake first, then a connection whose client sends too much.
        let (tcp, _) = listener.accept().await.unwrap();
        assert!(
            accept_with(tcp, Config::default(), |_, _| Ok(Default::default()))
                .await
                .is_err()
        );
        let (tcp, _) = listener.accept().await.unwrap();
        let config = Config::default()
            .engine(duplex_tokio::core::EngineConfig::default().max_message_size(1000));
        let mut ws = accept_with(tcp, config, |_, _| Ok(Default::default()))
            .await
            .unwrap();
        while ws.recv().await.is_some() {}
    });

    let mut bad = TcpStream::connect(addr).await.unwrap();
    bad.write_all(
        b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 12\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    timeout(LIMIT, bad.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 426"));

    let tcp = TcpStream::connect(addr).await.unwrap();
    let request = ClientRequest::new(&format!("ws://{addr}/chat")).unwrap();
    let (mut ws, _) = client_with(request, tcp, Config::default()).await.unwrap();
    // Noise, so that it stays over the limit once compressed.
    let mut x = 0x2545_f491_u32;
    let noise: Vec<u8> = (0..5000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    ws.send(Message::binary(noise)).await.unwrap();
    while let Some(Ok(_)) = timeout(LIMIT, ws.recv()).await.unwrap() {}
    drop(ws);
    timeout(LIMIT, server).await.unwrap().unwrap();

    let spans = recorder.spans.lock().unwrap().clone();
    let events = recorder.events.lock().unwrap().clone();
    let all = format!("{spans:#?}\n{events:#?}");
    let server_span = spans
        .iter()
        .position(|s| s.contains("role=\"server\"") && s.contains("path=\"/chat\""))
        .map(|i| i as u64 + 1)
        .unwrap_or_else(|| panic!("no server span: {all}"));
    assert!(
        spans[server_span as usize - 1].contains("permessage-deflate"),
        "{all}"
    );
    assert!(spans.iter().any(|s| s.contains("role=\"client\"")), "{all}");
    let has = |parent: Option<u64>, needles: &[&str]| {
        events.iter().any(|(p, e)| {
            (parent.is_none() || *p == parent) && needles.iter().all(|n| e.contains(n))
        })
    };
    assert!(has(None, &["handshake rejected", "status=426"]), "{all}");
    assert!(
        has(Some(server_span), &["limit exceeded", "close_code=1009"]),
        "{all}"
    );
    assert!(
        has(Some(server_span), &["WebSocket closed", "sent_close=1009"]),
        "{all}"
    );
}

/// A hyper service that awaits its WebSocket before returning the 101 (it can never come:
/// hyper upgrades after the response) is reported by an error event, not left to a
/// silent wait until the client gives up.
#[cfg(feature = "hyper")]
#[tokio::test]
async fn a_websocket_awaited_in_its_own_service_is_reported() {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let recorder = Recorder::default();
    let _default = tracing::subscriber::set_default(recorder.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let service = service_fn(
            |mut request: hyper::Request<hyper::body::Incoming>| async move {
                let (response, websocket) =
                    duplex_tokio::hyper::upgrade(&mut request, &Config::default()).unwrap();
                // The mistake: waiting here, before the response is returned.
                let waited = timeout(Duration::from_millis(300), websocket).await;
                assert!(
                    waited.is_err(),
                    "the upgrade cannot come before the response"
                );
                Ok::<_, std::convert::Infallible>(response)
            },
        );
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(tcp), service)
            .with_upgrades()
            .await;
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let request = ClientRequest::new(&format!("ws://{addr}/")).unwrap();
    // The response comes once the service gave up waiting.
    let connected = timeout(LIMIT, client_with(request, tcp, Config::default())).await;
    assert!(connected.is_ok());
    server.abort();
    let events = recorder.events.lock().unwrap().clone();
    assert!(
        events
            .iter()
            .any(|(_, e)| e.contains("awaited in the service that has yet to return")),
        "{events:#?}"
    );
}

/// The close event says what happened: a stream dropped without a close handshake did
/// not send the 1001 it queued; a `close(None)` that went out sent an empty close frame
/// (not a code 1005, which never travels).
#[tokio::test]
async fn the_close_event_tells_what_was_written() {
    let recorder = Recorder::default();
    let _default = tracing::subscriber::set_default(recorder.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        // Dropped at once: its 1001 is queued, never written.
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = accept_with(tcp, Config::default(), |_, _| Ok(Default::default()))
            .await
            .unwrap();
        drop(ws);
        // Closed without a code, answered by the client.
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = accept_with(tcp, Config::default(), |_, _| Ok(Default::default()))
            .await
            .unwrap();
        ws.close(None).await.unwrap();
    });
    for _ in 0..2 {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let request = ClientRequest::new(&format!("ws://{addr}/")).unwrap();
        let (mut ws, _) = client_with(request, tcp, Config::default()).await.unwrap();
        while let Some(Ok(_)) = timeout(LIMIT, ws.recv()).await.unwrap() {}
    }
    timeout(LIMIT, server).await.unwrap().unwrap();
    let events = recorder.events.lock().unwrap().clone();
    let all = format!("{events:#?}");
    assert!(
        events
            .iter()
            .any(|(_, e)| e.contains("WebSocket closed")
                && e.contains("sent_close=not written (1001)")),
        "{all}"
    );
    assert!(
        events
            .iter()
            .any(|(_, e)| e.contains("WebSocket closed") && e.contains("sent_close=empty")),
        "{all}"
    );
}
