//! WebSocket upgrades for requests served by hyper 1, and so by frameworks built on it
//! (axum): validate the request, answer it, and get a [`WebSocketStream`] over the
//! upgraded connection.
//!
//! [`upgrade`] (or [`upgrade_with`], to choose a subprotocol or refuse) checks the
//! request as RFC 6455 section 4.2.1 asks (GET, HTTP/1.1, `Upgrade: websocket`,
//! `Connection: Upgrade`, version 13, a valid key), negotiates permessage-deflate with
//! the [`Config`]'s policy, and returns the `101 Switching Protocols` response for the
//! service to return, with a [`HyperWebSocket`]: a future that resolves, once hyper has
//! sent the response and handed over the connection, to a [`WebSocketStream`]. A request
//! that is not a valid handshake gives an [`UpgradeError`] whose
//! [`into_response`](UpgradeError::into_response) is the answer it deserves (400, 405,
//! 426 with `Sec-WebSocket-Version: 13`, or the service's own [`Rejection`]).
//!
//! The hyper connection must be served with upgrades enabled
//! (`http1::Builder::serve_connection(..).with_upgrades()`; `axum::serve` does it).
//!
//! ## HTTP/2 (RFC 8441)
//!
//! The same calls accept a WebSocket over HTTP/2: an extended CONNECT request
//! (`:method = CONNECT`, `:protocol = websocket`, `Sec-WebSocket-Version: 13`, no key) is
//! validated, the callback and the [`Config`] (subprotocols, permessage-deflate, limits)
//! apply as over HTTP/1.1, and the response is `200` instead of `101`, without
//! `Sec-WebSocket-Accept`. The WebSocket then runs over that one HTTP/2 stream: its
//! flow control is the backpressure, and the WebSocket close ends the stream, not the
//! HTTP/2 connection, which goes on serving other requests and WebSockets.
//!
//! A client only sends extended CONNECT to a server that advertised
//! `SETTINGS_ENABLE_CONNECT_PROTOCOL`, which hyper does when the HTTP/2 connection is
//! built with `enable_connect_protocol()` (on `hyper::server::conn::http2::Builder`, or
//! on `hyper_util::server::conn::auto::Builder::http2()` to serve both versions):
//! enable it only where requests reach [`upgrade`]. [`HyperWebSocket::is_http2`] tells
//! the two kinds apart.
//!
//! ```no_run
//! use std::convert::Infallible;
//!
//! use duplex_tokio::hyper::{upgrade, Full, UpgradeError};
//! use duplex_tokio::{Config, Message};
//! use hyper::body::{Bytes, Incoming};
//! use hyper::server::conn::http1;
//! use hyper::service::service_fn;
//! use hyper::{Request, Response};
//! use hyper_util::rt::TokioIo;
//!
//! async fn handle(mut request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
//!     let (response, websocket) = match upgrade(&mut request, &Config::default()) {
//!         Ok(accepted) => accepted,
//!         Err(error) => return Ok(error.into_response()),
//!     };
//!     tokio::spawn(async move {
//!         let Ok(mut ws) = websocket.await else { return };
//!         while let Some(Ok(message)) = ws.recv().await {
//!             if message.is_data() && ws.send(message).await.is_err() {
//!                 break;
//!             }
//!         }
//!     });
//!     Ok(response)
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! loop {
//!     let (tcp, _) = listener.accept().await?;
//!     tokio::spawn(async move {
//!         let connection = http1::Builder::new()
//!             .serve_connection(TokioIo::new(tcp), service_fn(handle))
//!             .with_upgrades();
//!         let _ = connection.await;
//!     });
//! }
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use ::hyper::upgrade::{OnUpgrade, Upgraded};
use bytes::Bytes;
use duplex_core::{DeflateParams, Role};
use duplex_handshake::http::{self, Method, Request, Response, StatusCode, Version, header};
use duplex_handshake::{
    Acceptance, Accepted, ClientOffer, Decision, Refused, Rejection, ServerError, decide,
    decide_offer,
};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::Config;
use crate::stream::WebSocketStream;

pub use http_body_util::Full;

/// The most one write hands to hyper's HTTP/2 stream: one HTTP/2 DATA frame's worth.
///
/// hyper copies each write into a queue of its own (a slot for one write, one more
/// taken by the task that waits for the peer's flow-control window, and one in flight),
/// and that task is not told when the stream is dropped while it waits for a window that
/// never opens: the stream is only freed when the HTTP/2 connection ends. Small writes
/// keep what such a stream pins to three of them.
const H2_MAX_WRITE: usize = 16 << 10;

/// The upgraded connection as a tokio `AsyncRead + AsyncWrite` stream: hyper's
/// [`Upgraded`] (an HTTP/1.1 connection, or one HTTP/2 stream), with writes into an
/// HTTP/2 stream cut to 16 KiB each (see [`UpgradedIo::is_http2`]).
#[derive(Debug)]
pub struct UpgradedIo {
    io: TokioIo<Upgraded>,
    max_write: usize,
}

impl UpgradedIo {
    fn new(upgraded: Upgraded, http2: bool) -> Self {
        Self {
            io: TokioIo::new(upgraded),
            max_write: if http2 { H2_MAX_WRITE } else { usize::MAX },
        }
    }

    /// True when this is one stream of an HTTP/2 connection (RFC 8441). Each write then
    /// hands hyper at most 16 KiB: when the peer never opens the stream's flow-control
    /// window, our side gives up at the engine's write timeout, but hyper keeps the
    /// stream, and what was written into it, until the HTTP/2 connection ends; small
    /// writes bound that to about 48 KiB a stream.
    pub fn is_http2(&self) -> bool {
        self.max_write != usize::MAX
    }

    /// hyper's upgraded connection.
    pub fn into_inner(self) -> Upgraded {
        self.io.into_inner()
    }
}

impl AsyncRead for UpgradedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for UpgradedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let n = buf.len().min(self.max_write);
        Pin::new(&mut self.io).poll_write(cx, &buf[..n])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if !self.is_http2() {
            return Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        }
        // hyper's HTTP/2 stream takes one buffer a write.
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        self.poll_write(cx, first)
    }

    fn is_write_vectored(&self) -> bool {
        !self.is_http2() && self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// True when `request` asks for a WebSocket (`Upgrade: websocket`, any case, or an
/// HTTP/2 extended CONNECT with `:protocol = websocket`), for routing one path to a
/// page or a WebSocket. It does not validate the handshake:
/// [`upgrade`] does.
///
/// ```
/// use duplex_tokio::http::Request;
///
/// let page = Request::get("/").body(()).unwrap();
/// let socket = Request::get("/").header("upgrade", "WebSocket").body(()).unwrap();
/// assert!(!duplex_tokio::hyper::is_upgrade_request(&page));
/// assert!(duplex_tokio::hyper::is_upgrade_request(&socket));
/// ```
pub fn is_upgrade_request<B>(request: &Request<B>) -> bool {
    is_extended_connect(request)
        || request
            .headers()
            .get_all(header::UPGRADE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("websocket"))
}

/// Accepts `request` as a WebSocket handshake with no subprotocol, negotiating
/// permessage-deflate with `config`'s policy.
///
/// Returns the 101 response for the service to return and the [`HyperWebSocket`] to
/// await (usually in a spawned task) for the stream. Protocol limits (message sizes,
/// keepalive) come from `config`; its handshake limits and timeout do not apply, as
/// hyper reads the request.
///
/// ```
/// use duplex_tokio::http::{Request, StatusCode};
/// use duplex_tokio::Config;
///
/// // A plain GET is no handshake: the answer is 400 and says why.
/// let mut request = Request::get("/ws").header("host", "example.com").body(()).unwrap();
/// let error = duplex_tokio::hyper::upgrade(&mut request, &Config::default()).unwrap_err();
/// assert_eq!(error.status(), StatusCode::BAD_REQUEST);
/// let response = error.into_response();
/// assert_eq!(response.headers()["connection"], "close");
/// ```
pub fn upgrade<B>(
    request: &mut Request<B>,
    config: &Config,
) -> Result<(Response<Full<Bytes>>, HyperWebSocket), UpgradeError> {
    upgrade_with(request, config, |_, _| Ok(Acceptance::default()))
}

/// Like [`upgrade`], with a `callback` that sees the request and the client's offer and
/// decides: accept, choosing a subprotocol and extra response headers through
/// [`Acceptance`], or refuse with a [`Rejection`] (returned as
/// [`UpgradeError::Refused`], whose response is the rejection's).
///
/// ```no_run
/// use duplex_tokio::hyper::{upgrade_with, Full};
/// use duplex_tokio::http::{Request, Response, StatusCode};
/// use duplex_tokio::{Acceptance, Config, Rejection};
/// use hyper::body::Bytes;
///
/// fn handle<B>(request: &mut Request<B>, config: &Config) -> Response<Full<Bytes>> {
///     let accepted = upgrade_with(request, config, |request, offer| {
///         if !request.headers().contains_key("cookie") {
///             return Err(Rejection::new(StatusCode::FORBIDDEN, "log in first"));
///         }
///         let mut acceptance = Acceptance::default();
///         if let Some(protocol) = offer.select_protocol(&["chat.v2", "chat.v1"]) {
///             acceptance = acceptance.protocol(protocol);
///         }
///         Ok(acceptance)
///     });
///     match accepted {
///         Ok((response, websocket)) => {
///             let chosen = websocket.protocol().map(str::to_owned);
///             tokio::spawn(async move {
///                 let Ok(mut ws) = websocket.await else { return };
///                 // ... speak `chosen` on `ws` ...
/// #               let _ = (&mut ws, chosen);
///             });
///             response
///         }
///         Err(error) => error.into_response(),
///     }
/// }
/// ```
pub fn upgrade_with<B, F>(
    request: &mut Request<B>,
    config: &Config,
    callback: F,
) -> Result<(Response<Full<Bytes>>, HyperWebSocket), UpgradeError>
where
    F: FnOnce(&Request<B>, &ClientOffer) -> Result<Acceptance, Rejection>,
{
    let result = upgrade_inner(request, config, callback);
    if let Err(error) = &result {
        crate::trace::rejected(error.status(), error);
    }
    result
}

fn upgrade_inner<B, F>(
    request: &mut Request<B>,
    config: &Config,
    callback: F,
) -> Result<(Response<Full<Bytes>>, HyperWebSocket), UpgradeError>
where
    F: FnOnce(&Request<B>, &ClientOffer) -> Result<Acceptance, Rejection>,
{
    let http2 = request.version() == Version::HTTP_2 && request.method() == Method::CONNECT;
    let deflate = config.deflate.as_ref();
    let decision = if config.is_over_budget() {
        Decision::unavailable()
    } else if http2 {
        let protocol = request
            .extensions()
            .get::<::hyper::ext::Protocol>()
            .map(::hyper::ext::Protocol::as_str);
        match ClientOffer::from_extended_connect(request, protocol) {
            Ok(offer) => decide_offer(request, &offer, deflate, callback),
            Err(error) => Decision::peer_error(error),
        }
    } else {
        decide(request, deflate, callback)
    };
    let Accepted {
        response,
        protocol,
        deflate,
    } = match decision {
        Decision::Accept(accepted) => accepted,
        Decision::Refuse(Refused {
            mut response,
            error,
        }) => {
            if http2 {
                // HTTP/2 has no Connection header; the stream ends with the answer.
                response.headers_mut().remove(header::CONNECTION);
            }
            return Err(UpgradeError::Refused {
                response: Box::new(response),
                error,
            });
        }
    };
    let on_upgrade = request
        .extensions_mut()
        .remove::<OnUpgrade>()
        .ok_or(UpgradeError::NotUpgradable)?;
    let websocket = HyperWebSocket {
        on_upgrade,
        config: config.engine.clone(),
        deflate,
        protocol,
        http2,
        path: request.uri().path().to_owned(),
        extensions: response
            .headers()
            .get(header::SEC_WEBSOCKET_EXTENSIONS)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        handler: tokio::task::try_id(),
    };
    Ok((response.map(|()| Full::new(Bytes::new())), websocket))
}

/// An accepted WebSocket waiting for hyper to hand over the connection: a future of
/// the [`WebSocketStream`].
///
/// It resolves once hyper has written the 101 response, which happens after the
/// service returns it, so await it in a task of its own (awaiting it inside the
/// service would wait forever). It fails if the connection closes first or is not
/// served with upgrades enabled.
#[must_use = "the connection is only upgraded when this future is awaited"]
#[derive(Debug)]
pub struct HyperWebSocket {
    on_upgrade: OnUpgrade,
    config: std::sync::Arc<duplex_core::EngineConfig>,
    deflate: Option<DeflateParams>,
    protocol: Option<String>,
    http2: bool,
    /// For the connection's span (the `tracing` feature).
    path: String,
    extensions: Option<String>,
    /// The task that made the response, which must return it before the upgrade can
    /// happen; `None` once a wait in that task was reported.
    handler: Option<tokio::task::Id>,
}

/// True for an HTTP/2 extended CONNECT asking for a WebSocket (RFC 8441 section 4).
fn is_extended_connect<B>(request: &Request<B>) -> bool {
    request.method() == Method::CONNECT
        && request
            .extensions()
            .get::<::hyper::ext::Protocol>()
            .is_some_and(|protocol| protocol.as_str().eq_ignore_ascii_case("websocket"))
}

impl HyperWebSocket {
    /// Reports (once, as an error event with the `tracing` feature) a wait in the task
    /// that has yet to return the upgrade response: it would wait until the client's
    /// handshake timeout, since hyper upgrades only after the response is returned.
    fn check_not_in_handler(&mut self) {
        if self.handler.is_some() && tokio::task::try_id() == self.handler {
            self.handler = None;
            crate::trace::awaited_in_handler();
        }
    }

    fn span(&self) -> crate::trace::Span {
        let http = if self.http2 { "HTTP/2" } else { "HTTP/1.1" };
        crate::trace::connection(Role::Server, &self.path, self.extensions.as_deref(), http)
    }

    /// True when the WebSocket came as an HTTP/2 extended CONNECT (RFC 8441) and runs
    /// over one stream of an HTTP/2 connection; false for an HTTP/1.1 upgrade.
    pub fn is_http2(&self) -> bool {
        self.http2
    }

    /// The subprotocol chosen in the 101 response, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The permessage-deflate parameters agreed in the 101 response, if any.
    pub fn deflate(&self) -> Option<&DeflateParams> {
        self.deflate.as_ref()
    }

    /// Waits for the upgrade like awaiting `self`, but runs the WebSocket over
    /// `wrap(io)`: a stream wrapping the upgraded connection (to count or log bytes,
    /// or to add a rate limit).
    pub async fn wrap_stream<S, F>(mut self, wrap: F) -> Result<WebSocketStream<S>, ::hyper::Error>
    where
        S: AsyncRead + AsyncWrite,
        F: FnOnce(UpgradedIo) -> S,
    {
        self.check_not_in_handler();
        let span = self.span();
        let Self {
            on_upgrade,
            config,
            deflate,
            http2,
            ..
        } = self;
        let io = UpgradedIo::new(on_upgrade.await?, http2);
        // hyper keeps bytes that arrived after the request head inside `Upgraded` and
        // returns them first, so there is no leftover to pass on.
        let ws = WebSocketStream::from_raw(wrap(io), Role::Server, config, deflate, &[]);
        ws.set_span(span);
        Ok(ws)
    }
}

impl Future for HyperWebSocket {
    type Output = Result<WebSocketStream<UpgradedIo>, ::hyper::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.check_not_in_handler();
        let upgraded = ready!(Pin::new(&mut this.on_upgrade).poll(cx))?;
        let ws = WebSocketStream::from_raw(
            UpgradedIo::new(upgraded, this.http2),
            Role::Server,
            this.config.clone(),
            this.deflate,
            &[],
        );
        ws.set_span(this.span());
        Poll::Ready(Ok(ws))
    }
}

/// Why a request was not upgraded, with the response to answer it with.
#[derive(Debug)]
#[non_exhaustive]
pub enum UpgradeError {
    /// The request was refused: a bad handshake (400, 405, 426, 431), the
    /// [`upgrade_with`] callback's [`Rejection`], or the callback's own mistake (500).
    /// `error` says whose doing it was; `response` is the answer.
    Refused {
        /// The response to send instead of the upgrade.
        response: Box<Response<String>>,
        /// Why, by whose doing.
        error: ServerError,
    },
    /// The request carries no hyper upgrade handle: it was not read by a hyper 1 server
    /// connection (HTTP/1.1, or HTTP/2 with extended CONNECT enabled), or the handle was
    /// taken before. Answered with 500.
    NotUpgradable,
}

impl UpgradeError {
    /// The status of the response.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Refused { response, .. } => response.status(),
            Self::NotUpgradable => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The response to send instead of the upgrade.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let response = match self {
            Self::Refused { response, .. } => *response,
            Self::NotUpgradable => {
                Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, "not upgradable\n")
                    .into_response()
            }
        };
        response.map(|body| Full::new(Bytes::from(body)))
    }
}

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused { error, .. } => write!(f, "WebSocket request refused: {error}"),
            Self::NotUpgradable => f.write_str(
                "the request cannot be upgraded: it was not read by a hyper server \
                 connection, or its upgrade was taken already",
            ),
        }
    }
}

impl std::error::Error for UpgradeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Refused { error, .. } => Some(error),
            Self::NotUpgradable => None,
        }
    }
}

// `http` is the same crate as hyper's; this fails to compile if they ever diverge.
const _: fn(::hyper::Request<()>) -> http::Request<()> = |request| request;
