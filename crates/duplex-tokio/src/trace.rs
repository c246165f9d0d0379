//! What the `tracing` feature reports, in one place: a span per connection (role,
//! path, negotiated extensions, HTTP version; `peer` left for the application to
//! record) and events for handshake rejections and timeouts, errors that end a
//! connection (protocol violations, limits, timeouts) and close codes. Without the
//! feature these are empty functions and a zero-sized span.

use duplex_core::{Connection, Error, Role};
use duplex_handshake::http::StatusCode;

/// A connection's span (nothing without the `tracing` feature).
#[cfg(feature = "tracing")]
pub(crate) type Span = tracing::Span;

/// A connection's span (nothing without the `tracing` feature).
#[cfg(not(feature = "tracing"))]
#[derive(Clone, Debug, Default)]
pub(crate) struct Span;

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Server => "server",
        Role::Client => "client",
    }
}

/// The span of a new connection.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub(crate) fn connection(role: Role, path: &str, extensions: Option<&str>, http: &str) -> Span {
    #[cfg(feature = "tracing")]
    {
        let span = tracing::info_span!(
            "websocket",
            role = role_name(role),
            path,
            extensions = extensions.unwrap_or(""),
            http,
            peer = tracing::field::Empty,
        );
        tracing::debug!(parent: &span, "WebSocket open");
        span
    }
    #[cfg(not(feature = "tracing"))]
    {
        let _ = role_name(role);
        Span
    }
}

/// A handshake refused with `status`.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub(crate) fn rejected(status: StatusCode, why: &dyn std::fmt::Display) {
    #[cfg(feature = "tracing")]
    tracing::info!(status = status.as_u16(), reason = %why, "WebSocket handshake rejected");
}

/// A `HyperWebSocket` awaited in the task that has yet to return its upgrade response.
#[cfg(feature = "hyper")]
pub(crate) fn awaited_in_handler() {
    #[cfg(feature = "tracing")]
    tracing::error!(
        "a WebSocket upgrade was awaited in the service that has yet to return the 101 \
         response: it waits until the client gives up; await it in a spawned task"
    );
}

/// A handshake that did not finish in time.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub(crate) fn handshake_timeout(role: Role) {
    #[cfg(feature = "tracing")]
    tracing::info!(role = role_name(role), "WebSocket handshake timed out");
}

/// An error delivered to the application, which ends the connection.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub(crate) fn error(span: &Span, error: &Error) {
    #[cfg(feature = "tracing")]
    {
        let kind = match error {
            Error::LimitExceeded(duplex_core::LimitError {
                limit: duplex_core::Limit::MemoryBudget,
                ..
            }) => {
                // The server's memory budget shed this connection: the operator's concern.
                let code = error.close_code().map(u16::from);
                tracing::warn!(parent: span, kind = "memory budget", close_code = code, %error, "WebSocket shed");
                return;
            }
            Error::Protocol(_) => "protocol violation",
            Error::LimitExceeded(_) => "limit exceeded",
            Error::Timeout(_) => "timeout",
            Error::PeerVanished { .. } => "peer vanished",
            Error::Io(_) => "transport error",
            _ => "error",
        };
        let code = error.close_code().map(u16::from);
        tracing::info!(parent: span, kind, close_code = code, %error, "WebSocket error");
    }
}

/// The connection is gone: the close frames each way, as far as they went. A close frame
/// we queued but never wrote (the stream was dropped, the peer stopped reading) is
/// reported as such, not as sent; an empty close frame (no code) as `empty`.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub(crate) fn closed(span: &Span, conn: &Connection) {
    #[cfg(feature = "tracing")]
    {
        let describe = |frame: Option<&duplex_core::CloseFrame>| match frame {
            None => "none".to_owned(),
            Some(frame) if frame.code == duplex_core::CloseCode::NoStatus => "empty".to_owned(),
            Some(frame) => u16::from(frame.code).to_string(),
        };
        let sent = match (conn.written_close_frame(), conn.sent_close_frame()) {
            (None, Some(queued)) => format!("not written ({})", describe(Some(queued))),
            (written, _) => describe(written),
        };
        let received = describe(conn.received_close_frame());
        tracing::debug!(
            parent: span,
            sent_close = %sent,
            received_close = %received,
            state = ?conn.state(),
            "WebSocket closed"
        );
    }
}
