//! An axum app whose `/ws` route upgrades with duplex's extractor instead of axum's own
//! WebSocket: `cargo run -p duplex-tokio --features axum --example axum -- [ADDR]`
//! (default 127.0.0.1:3000).
//!
//! Prints `listening on ADDR` as its first line. `/` answers with a line of text;
//! `/ws` echoes every message, and `/ws` with `Sec-WebSocket-Protocol: echo.v1` gets
//! that subprotocol chosen. Over HTTP/1.1 (Upgrade) and HTTP/2 (RFC 8441 extended
//! CONNECT); `cargo xtask conformance --h2` tests it over HTTP/2.
//!
//! The router is served with hyper-util's connection builder rather than `axum::serve`,
//! for one setting `axum::serve` does not expose: an HTTP/1.1 request head must arrive
//! within 10 s, so sockets that send a byte a second are dropped (as the library's own
//! `accept_with` does with its handshake timeout).
//!
//! Ctrl-C shuts it down gracefully, in bounded time whatever the peers do: at once, the
//! server stops accepting and its HTTP connections finish their requests (over HTTP/2
//! they send GOAWAY), and every open WebSocket is sent 1001 (going away) and gets up to
//! 5 s for its close handshake; the rest are dropped (`duplex_tokio::Shutdown`; hyper
//! does not track upgraded connections). The HTTP connections get 1 s more of their
//! own: an HTTP/2 connection waits for its streams, and hyper keeps a stream whose peer
//! never opens its flow-control window until the connection ends, so what is still
//! open then is dropped with the process.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{any, get};
use duplex_tokio::axum::WebSocketUpgrade;
use duplex_tokio::{Config, Shutdown};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

/// What the handlers share.
struct App {
    config: Config,
    shutdown: Shutdown,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    // The default limits serve the conformance suite (its largest frame is the default
    // `max_frame_size`, 16 MiB); the write buffer is raised so that the echoes of cases
    // 9.7 and 9.8 (a thousand messages sent without reading) queue instead of waiting.
    let protocol = duplex_tokio::core::EngineConfig::default().max_write_buffer(16 << 20);
    let config = Config::default().engine(protocol);
    let shutdown = Shutdown::new();
    let app = Router::new()
        .route("/", get(|| async { "duplex on axum: connect to /ws\n" }))
        // `any`: an HTTP/2 WebSocket is a CONNECT, not a GET.
        .route("/ws", any(websocket))
        .with_state(Arc::new(App {
            config,
            shutdown: shutdown.clone(),
        }));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.initiate();
        }
    });
    // HTTP/1.1 with upgrades and HTTP/2 with extended CONNECT, each connection watched
    // by `http` for the graceful shutdown.
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    builder.http2().enable_connect_protocol();
    let http = GracefulShutdown::new();
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors, for example: try again shortly.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.initiated() => break,
        };
        let _ = tcp.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
        let connection = http.watch(connection.into_owned());
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    // The WebSockets axum handed over, while axum finishes its HTTP requests: over
    // HTTP/2 a WebSocket is a stream of a connection axum waits for.
    let report = shutdown.shutdown(Duration::from_secs(5)).await;
    eprintln!(
        "shut down: {} WebSockets closed, {} dropped",
        report.closed, report.dropped
    );
    if tokio::time::timeout(Duration::from_secs(1), http.shutdown())
        .await
        .is_err()
    {
        eprintln!("HTTP connections still open after the shutdown deadline: dropped");
    }
    Ok(())
}

/// A request that is no WebSocket handshake is answered by the extractor (400, 405, or
/// 426 with the reason, as RFC 6455 asks) before this runs.
async fn websocket(State(app): State<Arc<App>>, ws: WebSocketUpgrade) -> Response {
    let shutdown = app.shutdown.clone();
    ws.protocols(["echo.v1"])
        .config(app.config.clone())
        .on_upgrade(move |mut ws| async move {
            // Until the guard drops, a shutdown sends this connection 1001 and waits for it.
            let _tracked = shutdown.track(&ws);
            while let Some(Ok(message)) = ws.recv().await {
                if message.is_data() && ws.feed(message).await.is_err() {
                    break;
                }
            }
        })
}
