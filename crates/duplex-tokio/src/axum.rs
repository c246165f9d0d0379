//! An axum 0.8 extractor for WebSocket requests, in place of `axum::extract::ws`
//! (the `axum` feature).
//!
//! A handler takes a [`WebSocketUpgrade`] next to its other extractors (`State`,
//! `HeaderMap`, a typed header, a cookie jar: anything it needs to authenticate the
//! request), chooses a subprotocol with [`protocols`](WebSocketUpgrade::protocols),
//! sets limits and permessage-deflate with [`config`](WebSocketUpgrade::config), and
//! returns [`on_upgrade`](WebSocketUpgrade::on_upgrade)'s response. The callback runs
//! in a task of its own with the [`WebSocket`] once axum has sent that response. A
//! handler that refuses returns any other response instead (a 401, a 403): nothing is
//! upgraded.
//!
//! A request that is not a valid WebSocket handshake never reaches the handler: the
//! extractor's [`WebSocketUpgradeRejection`] answers it with the status
//! [`hyper::upgrade`](crate::hyper::upgrade) would (400 for a plain request or a bad
//! key, 405 for another method, 426 with `Sec-WebSocket-Version: 13` for another
//! version; 500 when the request did not come from a hyper server with upgrades).
//!
//! The same handler serves HTTP/1.1 upgrades and HTTP/2 WebSockets (RFC 8441 extended
//! CONNECT), which `axum::serve` accepts when axum's `http2` feature is on. An HTTP/2
//! WebSocket is a `CONNECT` request, so route it with `any(handler)` (or
//! `on(MethodFilter::GET.or(MethodFilter::CONNECT), ..)`), not `get(handler)`.
//!
//! ```
//! use axum::Router;
//! use axum::http::{HeaderMap, StatusCode};
//! use axum::response::{IntoResponse, Response};
//! use axum::routing::any;
//! use duplex_tokio::axum::{Message, WebSocketUpgrade};
//! use duplex_tokio::{ClientRequest, Config, connect_with};
//!
//! async fn echo(ws: WebSocketUpgrade, headers: HeaderMap) -> Response {
//!     // The request's headers are there to decide before anything is upgraded.
//!     if headers.get("authorization").is_none_or(|token| token != "Bearer letmein") {
//!         return StatusCode::UNAUTHORIZED.into_response();
//!     }
//!     ws.protocols(["echo.v2", "echo.v1"])
//!         .config(Config::default().deflate(None))
//!         .on_upgrade(|mut ws| async move {
//!             while let Some(Ok(message)) = ws.recv().await {
//!                 if message.is_data() && ws.send(message).await.is_err() {
//!                     break;
//!                 }
//!             }
//!         })
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app = Router::new().route("/echo", any(echo));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let url = format!("ws://{}/echo", listener.local_addr()?);
//! tokio::spawn(async move { axum::serve(listener, app).await });
//!
//! let request = ClientRequest::new(&url)?
//!     .protocol("echo.v1")
//!     .header("authorization", "Bearer letmein")?;
//! let (mut ws, response) = connect_with(request, Config::default()).await?;
//! assert_eq!(response.negotiated.protocol.as_deref(), Some("echo.v1"));
//! ws.send(Message::text("hello")).await?;
//! assert_eq!(ws.recv().await.unwrap()?, Message::text("hello"));
//!
//! // Without the token: refused before the upgrade.
//! let refused = connect_with(ClientRequest::new(&url)?, Config::default()).await;
//! assert!(refused.is_err());
//! # Ok(()) }
//! ```
//!
//! # Awaiting the WebSocket in the handler
//!
//! The connection is only handed over after the handler has returned the response,
//! so a handler that waits for the WebSocket before returning waits for ever.
//! [`on_upgrade`](WebSocketUpgrade::on_upgrade) makes that impossible. The lower-level
//! [`upgrade`](WebSocketUpgrade::upgrade), for code that spawns the connection's task
//! itself (on a `JoinSet`, a task tracker), returns the response and a
//! [`PendingWebSocket`] to await elsewhere; awaited in the task that has yet to return
//! the response, it fails at once with [`UpgradeFailed::AwaitedInHandler`] (and an
//! error event with the `tracing` feature) instead of hanging until the client's
//! handshake timeout.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ::axum::extract::FromRequestParts;
use ::axum::response::{IntoResponse, Response};
use ::hyper::upgrade::OnUpgrade;
use duplex_handshake::Acceptance;
use duplex_handshake::http::{Request, StatusCode, request::Parts};

use crate::config::Config;
use crate::hyper::{HyperWebSocket, UpgradeError, UpgradedIo, upgrade_with};
use crate::stream::WebSocketStream;

pub use duplex_core::{CloseCode, CloseFrame, Message, Utf8Bytes};

/// The WebSocket [`WebSocketUpgrade::on_upgrade`] hands to its callback: a
/// [`WebSocketStream`] over the connection hyper upgraded.
pub type WebSocket = WebSocketStream<UpgradedIo>;

/// An extractor for a WebSocket handshake request, HTTP/1.1 or HTTP/2 (see the
/// [module documentation](self)).
///
/// Extracting it checks the handshake (RFC 6455 section 4.2.1, or RFC 8441 section 5
/// over HTTP/2) and takes hyper's upgrade handle from the request; the answer is
/// decided when [`on_upgrade`](Self::on_upgrade) (or [`upgrade`](Self::upgrade)) builds
/// the response, with the subprotocol and [`Config`] chosen by then.
#[must_use = "nothing is upgraded until `on_upgrade` builds the response and the handler returns it"]
pub struct WebSocketUpgrade<F = DefaultOnFailedUpgrade> {
    /// The request's head, with hyper's upgrade handle (and `:protocol` over HTTP/2).
    request: Request<()>,
    /// The subprotocols the client offered, in its order.
    offered: Vec<String>,
    /// The subprotocol to accept.
    protocol: Option<String>,
    config: Config,
    on_failed_upgrade: F,
}

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade {
    type Rejection = WebSocketUpgradeRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut request = Request::new(());
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = parts.uri.clone();
        *request.version_mut() = parts.version;
        *request.headers_mut() = parts.headers.clone();
        if let Some(protocol) = parts.extensions.get::<::hyper::ext::Protocol>() {
            request.extensions_mut().insert(protocol.clone());
        }
        // Taken, as axum's own extractor does: one request, one upgrade.
        if let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() {
            request.extensions_mut().insert(on_upgrade);
        }
        // The checks `on_upgrade` will make, run now on a copy so that a request that
        // is no handshake is answered before the handler runs. The copy's upgrade
        // handle is a second reference to the same upgrade, dropped unused.
        let mut offered = Vec::new();
        let config = Config::default();
        let checked = upgrade_with(&mut request.clone(), &config, |_, offer| {
            offered = offer.protocols().to_vec();
            Ok(Acceptance::default())
        });
        match checked {
            Ok(_) => Ok(Self {
                request,
                offered,
                protocol: None,
                config,
                on_failed_upgrade: DefaultOnFailedUpgrade,
            }),
            Err(error) => Err(WebSocketUpgradeRejection(error)),
        }
    }
}

impl<F> WebSocketUpgrade<F> {
    /// Accepts the first of `protocols` that the client offered (the server's order of
    /// preference, as axum's `protocols` does); none when the client offered none of
    /// them, which accepts the WebSocket without a subprotocol.
    pub fn protocols<I>(mut self, protocols: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<Cow<'static, str>>,
    {
        self.protocol = protocols
            .into_iter()
            .map(Into::into)
            .find(|protocol| self.offered.iter().any(|offered| offered == protocol))
            .map(Cow::into_owned);
        self
    }

    /// The subprotocols the client offered (`Sec-WebSocket-Protocol`), in its order.
    pub fn requested_protocols(&self) -> impl Iterator<Item = &str> {
        self.offered.iter().map(String::as_str)
    }

    /// The subprotocol [`protocols`](Self::protocols) chose, if any.
    pub fn selected_protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// True for an HTTP/2 extended CONNECT (RFC 8441), false for an HTTP/1.1 upgrade.
    pub fn is_http2(&self) -> bool {
        self.request.version() == ::hyper::Version::HTTP_2
    }

    /// The configuration of the WebSocket: protocol limits and deadlines
    /// ([`Config::engine`]) and the permessage-deflate policy ([`Config::deflate`]; on
    /// by default). Its handshake limits and timeout do not apply: hyper reads the
    /// request.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The largest message accepted, in bytes (as axum's `max_message_size`; the
    /// engine's [`max_message_size`](crate::EngineConfig::max_message_size)).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        let engine = Arc::make_mut(&mut self.config.engine);
        *engine = engine.clone().max_message_size(bytes);
        self
    }

    /// The largest frame accepted, in bytes (as axum's `max_frame_size`; the engine's
    /// [`max_frame_size`](crate::EngineConfig::max_frame_size)).
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        let engine = Arc::make_mut(&mut self.config.engine);
        *engine = engine.clone().max_frame_size(bytes);
        self
    }

    /// Calls `callback` instead of the [`on_upgrade`](Self::on_upgrade) callback when
    /// the connection is not handed over after the response (the client went away
    /// first). By default, [`DefaultOnFailedUpgrade`] only reports it to `tracing`.
    pub fn on_failed_upgrade<C: OnFailedUpgrade>(self, callback: C) -> WebSocketUpgrade<C> {
        WebSocketUpgrade {
            request: self.request,
            offered: self.offered,
            protocol: self.protocol,
            config: self.config,
            on_failed_upgrade: callback,
        }
    }

    /// The response accepting the WebSocket, for the handler to return; `callback`
    /// runs in a task of its own (`tokio::spawn`) with the [`WebSocket`] once axum has
    /// sent the response and handed over the connection.
    pub fn on_upgrade<C, Fut>(self, callback: C) -> Response
    where
        C: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
        F: OnFailedUpgrade,
    {
        let on_failed_upgrade = self.on_failed_upgrade;
        let (response, pending) =
            accept(self.request, self.protocol.as_deref(), &self.config, None);
        tokio::spawn(async move {
            match pending.await {
                Ok(ws) => callback(ws).await,
                Err(failed) => on_failed_upgrade.call(failed),
            }
        });
        response
    }

    /// The response accepting the WebSocket and the WebSocket to await once the handler
    /// has returned that response: in a task spawned by the handler (on a `JoinSet`,
    /// a task tracker), never in the handler itself, where it fails at once with
    /// [`UpgradeFailed::AwaitedInHandler`]. The [`on_failed_upgrade`](Self::on_failed_upgrade)
    /// callback is not used: the [`PendingWebSocket`] gives the error.
    ///
    /// ```
    /// use axum::response::Response;
    /// use duplex_tokio::axum::WebSocketUpgrade;
    /// use tokio::task::JoinSet;
    ///
    /// async fn handler(ws: WebSocketUpgrade, tasks: &mut JoinSet<()>) -> Response {
    ///     let (response, pending) = ws.upgrade();
    ///     tasks.spawn(async move {
    ///         let Ok(mut ws) = pending.await else { return };
    ///         while let Some(Ok(_message)) = ws.recv().await { /* ... */ }
    ///     });
    ///     response
    /// }
    /// ```
    pub fn upgrade(self) -> (Response, PendingWebSocket) {
        accept(
            self.request,
            self.protocol.as_deref(),
            &self.config,
            tokio::task::try_id(),
        )
    }
}

/// Decides the upgrade of a request the extractor checked: the response and the
/// WebSocket to come. `handler` is the task that must return the response first.
fn accept(
    mut request: Request<()>,
    protocol: Option<&str>,
    config: &Config,
    handler: Option<tokio::task::Id>,
) -> (Response, PendingWebSocket) {
    let accepted = upgrade_with(&mut request, config, |_, _| {
        Ok(match protocol {
            Some(protocol) => Acceptance::default().protocol(protocol),
            None => Acceptance::default(),
        })
    });
    match accepted {
        Ok((response, websocket)) => (
            response.into_response(),
            PendingWebSocket {
                websocket: Ok(websocket),
                handler,
            },
        ),
        // Not expected once the extractor has checked the request, but the refusal
        // is answered all the same, and the WebSocket to come fails at once.
        Err(error) => {
            let failed = UpgradeFailed::Refused {
                status: error.status(),
                reason: error.to_string(),
            };
            (
                error.into_response().into_response(),
                PendingWebSocket {
                    websocket: Err(Some(failed)),
                    handler,
                },
            )
        }
    }
}

impl<F> fmt::Debug for WebSocketUpgrade<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketUpgrade")
            .field("uri", self.request.uri())
            .field("http2", &self.is_http2())
            .field("offered", &self.offered)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

/// The WebSocket accepted by [`WebSocketUpgrade::upgrade`]: a future of the
/// [`WebSocket`] that resolves once axum has sent the response and handed over the
/// connection. Await it in another task than the handler's.
#[must_use = "the connection is only upgraded when this future is awaited"]
#[derive(Debug)]
pub struct PendingWebSocket {
    /// The upgrade to wait for, or why there is none (taken when reported).
    websocket: Result<HyperWebSocket, Option<UpgradeFailed>>,
    /// The task that must return the response before the upgrade can happen.
    handler: Option<tokio::task::Id>,
}

impl PendingWebSocket {
    /// The subprotocol accepted in the response, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.websocket.as_ref().ok()?.protocol()
    }

    /// True for a WebSocket over HTTP/2 (RFC 8441).
    pub fn is_http2(&self) -> bool {
        self.websocket.as_ref().is_ok_and(HyperWebSocket::is_http2)
    }
}

impl Future for PendingWebSocket {
    type Output = Result<WebSocket, UpgradeFailed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let websocket = match &mut this.websocket {
            Ok(websocket) => websocket,
            Err(failed) => {
                return Poll::Ready(Err(failed.take().unwrap_or(UpgradeFailed::Polled)));
            }
        };
        if this.handler.is_some() && tokio::task::try_id() == this.handler {
            // The handler's own task: its response, which the upgrade waits for, has
            // not been returned yet, and cannot be while the task waits here.
            crate::trace::awaited_in_handler();
            this.websocket = Err(None);
            return Poll::Ready(Err(UpgradeFailed::AwaitedInHandler));
        }
        Pin::new(websocket)
            .poll(cx)
            .map_err(UpgradeFailed::Connection)
    }
}

/// Why the WebSocket of an accepted request did not come.
#[derive(Debug)]
#[non_exhaustive]
pub enum UpgradeFailed {
    /// hyper did not hand over the connection: it closed, or failed, before the
    /// response was sent.
    Connection(::hyper::Error),
    /// The [`PendingWebSocket`] was awaited in the task of the handler that had yet to
    /// return the upgrade response: the upgrade would have waited for ever.
    AwaitedInHandler,
    /// The response built was a refusal, not an upgrade.
    Refused {
        /// Its status.
        status: StatusCode,
        /// Why.
        reason: String,
    },
    /// The [`PendingWebSocket`] was polled again after it had failed.
    Polled,
}

impl fmt::Display for UpgradeFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connection(error) => write!(f, "the connection was not upgraded: {error}"),
            Self::AwaitedInHandler => f.write_str(
                "the WebSocket was awaited in the handler before it returned the upgrade \
                 response, which the upgrade waits for: await it in a spawned task, or \
                 use on_upgrade",
            ),
            Self::Refused { status, reason } => write!(f, "refused with {status}: {reason}"),
            Self::Polled => f.write_str("the failed upgrade was awaited again"),
        }
    }
}

impl std::error::Error for UpgradeFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connection(error) => Some(error),
            _ => None,
        }
    }
}

/// What [`WebSocketUpgrade::on_upgrade`] does when the connection is not handed over;
/// set with [`WebSocketUpgrade::on_failed_upgrade`]. Any `FnOnce(UpgradeFailed)` is one.
pub trait OnFailedUpgrade: Send + 'static {
    /// Called with the reason, in the task that waited for the upgrade.
    fn call(self, failed: UpgradeFailed);
}

impl<F: FnOnce(UpgradeFailed) + Send + 'static> OnFailedUpgrade for F {
    fn call(self, failed: UpgradeFailed) {
        self(failed);
    }
}

/// The default [`OnFailedUpgrade`]: an event with the `tracing` feature, nothing
/// otherwise.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct DefaultOnFailedUpgrade;

impl OnFailedUpgrade for DefaultOnFailedUpgrade {
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    fn call(self, failed: UpgradeFailed) {
        #[cfg(feature = "tracing")]
        tracing::info!(error = %failed, "WebSocket upgrade failed");
    }
}

/// The extractor's rejection of a request that is not a valid WebSocket handshake: an
/// axum response with the status and reason ([`UpgradeError::into_response`]).
#[derive(Debug)]
pub struct WebSocketUpgradeRejection(UpgradeError);

impl WebSocketUpgradeRejection {
    /// The status of the response.
    pub fn status(&self) -> StatusCode {
        self.0.status()
    }

    /// Why the request was refused.
    pub fn error(&self) -> &UpgradeError {
        &self.0
    }

    /// Why the request was refused, with its response.
    pub fn into_error(self) -> UpgradeError {
        self.0
    }
}

impl IntoResponse for WebSocketUpgradeRejection {
    fn into_response(self) -> Response {
        self.0.into_response().into_response()
    }
}

impl fmt::Display for WebSocketUpgradeRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for WebSocketUpgradeRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}
