//! An axum app whose `/ws` route upgrades with duplex instead of axum's own WebSocket:
//! `cargo run -p duplex-tokio --features hyper --example axum -- [ADDR]`
//! (default 127.0.0.1:3000).
//!
//! Prints `listening on ADDR` as its first line. `/` answers with a line of text;
//! `/ws` echoes every message, and `/ws` with `Sec-WebSocket-Protocol: echo.v1` gets
//! that subprotocol chosen. Over HTTP/1.1 (Upgrade) and HTTP/2 (RFC 8441 extended
//! CONNECT: `axum::serve` with axum's `http2` feature enables it); `cargo xtask
//! conformance --h2` tests it over HTTP/2, so the limits are the suite's (64 MiB
//! messages, 2^20 fragments).

use std::io::Write;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use duplex_tokio::hyper::upgrade_with;
use duplex_tokio::{Acceptance, Config};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let protocol = duplex_tokio::core::Config::default()
        .max_message_size(64 << 20)
        .max_frame_size(64 << 20)
        .max_fragments(1 << 20)
        .max_write_buffer(16 << 20);
    let config = Config::default().engine(protocol);
    let app = Router::new()
        .route("/", get(|| async { "duplex on axum: connect to /ws\n" }))
        // `any`: an HTTP/2 WebSocket is a CONNECT, not a GET.
        .route("/ws", any(websocket))
        .with_state(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    // `axum::serve` serves HTTP/1.1 with upgrades and HTTP/2 with extended CONNECT.
    axum::serve(listener, app).await
}

/// Takes the whole request (not an extractor): `upgrade_with` needs `&mut` access to
/// it for hyper's upgrade handle.
async fn websocket(State(config): State<Arc<Config>>, mut request: Request) -> Response {
    let upgraded = upgrade_with(&mut request, &config, |_, offer| {
        let mut acceptance = Acceptance::default();
        if let Some(protocol) = offer.select_protocol(&["echo.v1"]) {
            acceptance = acceptance.protocol(protocol);
        }
        Ok(acceptance)
    });
    let (response, websocket) = match upgraded {
        Ok(accepted) => accepted,
        // 400 / 405 / 426 with the reason, as RFC 6455 asks.
        Err(error) => return error.into_response().into_response(),
    };
    tokio::spawn(async move {
        let Ok(mut ws) = websocket.await else { return };
        while let Some(Ok(message)) = ws.recv().await {
            if message.is_data() && ws.feed(message).await.is_err() {
                break;
            }
        }
    });
    // `Response<Full<Bytes>>` is an axum response like any other.
    response.into_response()
}
