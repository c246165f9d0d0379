//! An axum app whose `/ws` route upgrades with duplex's extractor instead of axum's own
//! WebSocket: `cargo run -p duplex-tokio --features axum --example axum -- [ADDR]`
//! (default 127.0.0.1:3000).
//!
//! Prints `listening on ADDR` as its first line. `/` answers with a line of text;
//! `/ws` echoes every message, and `/ws` with `Sec-WebSocket-Protocol: echo.v1` gets
//! that subprotocol chosen. Over HTTP/1.1 (Upgrade) and HTTP/2 (RFC 8441 extended
//! CONNECT: `axum::serve` with axum's `http2` feature enables it); `cargo xtask
//! conformance --h2` tests it over HTTP/2, so the limits are the suite's (64 MiB
//! messages, 2^20 fragments).
//!
//! Ctrl-C shuts it down gracefully, in bounded time whatever the peers do: at once,
//! axum stops accepting and finishes its HTTP requests (over HTTP/2 it sends GOAWAY),
//! and every open WebSocket is sent 1001 (going away) and gets up to 5 s for its close
//! handshake; the rest are dropped (`duplex_tokio::Shutdown`; axum itself does not track
//! upgraded connections). axum's graceful shutdown gets 1 s more of its own: an HTTP/2
//! connection waits for its streams, and hyper keeps a stream whose peer never opens
//! its flow-control window until the connection ends, so what is still open then is
//! dropped with the process.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{any, get};
use duplex_tokio::axum::WebSocketUpgrade;
use duplex_tokio::{Config, Shutdown};

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
    // `axum::serve` serves HTTP/1.1 with upgrades and HTTP/2 with extended CONNECT.
    let stopped = shutdown.clone();
    let mut server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stopped.initiated().await })
            .await
    });
    tokio::select! {
        served = &mut server => return served.map_err(std::io::Error::other)?,
        () = shutdown.initiated() => {}
    }
    // The WebSockets axum handed over, while axum finishes its HTTP requests: over
    // HTTP/2 a WebSocket is a stream of a connection axum waits for.
    let report = shutdown.shutdown(Duration::from_secs(5)).await;
    eprintln!(
        "shut down: {} WebSockets closed, {} dropped",
        report.closed, report.dropped
    );
    if tokio::time::timeout(Duration::from_secs(1), server)
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
