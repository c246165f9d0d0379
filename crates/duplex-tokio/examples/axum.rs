//! An axum app whose `/ws` route upgrades with duplex instead of axum's own WebSocket:
//! `cargo run -p duplex-tokio --features hyper --example axum -- [ADDR]`
//! (default 127.0.0.1:3000).
//!
//! Prints `listening on ADDR` as its first line. `/` answers with a line of text;
//! `/ws` echoes every message, and `/ws` with `Sec-WebSocket-Protocol: echo.v1` gets
//! that subprotocol chosen.

use std::io::Write;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use duplex_tokio::hyper::upgrade_with;
use duplex_tokio::{Acceptance, Config};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let config = Config::default()
        .protocol(duplex_tokio::core::Config::default().max_message_size(16 << 20));
    let app = Router::new()
        .route("/", get(|| async { "duplex on axum: connect to /ws\n" }))
        .route("/ws", get(websocket))
        .with_state(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    // `axum::serve` serves HTTP/1.1 connections with upgrades enabled.
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
            if message.is_data() && ws.send(message).await.is_err() {
                break;
            }
        }
    });
    // `Response<Full<Bytes>>` is an axum response like any other.
    response.into_response()
}
