//! Accepting WebSocket connections.

use duplex_core::Role;
use duplex_handshake::http::Request;
use duplex_handshake::{
    Acceptance, ClientOffer, Decision, Refused, Rejection, ServerHandshake, decide,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config::Config;
use crate::error::HandshakeError;
use crate::stream::WebSocketStream;

/// Accepts a WebSocket connection on `stream` with the default configuration, choosing
/// no subprotocol.
pub fn accept<S>(stream: S) -> impl Future<Output = Result<WebSocketStream<S>, HandshakeError>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    accept_with(
        stream,
        Config::default(),
        |_: &Request<()>, _: &ClientOffer| Ok(Acceptance::default()),
    )
}

/// Accepts a WebSocket connection on `stream`. `callback` sees the request and the
/// client's offer and decides: accept (choosing a subprotocol and adding response
/// headers through [`Acceptance`]) or reject with a response of its own ([`Rejection`]).
///
/// Requests that break RFC 6455 are answered with the right status (400, 405, 426 with
/// `Sec-WebSocket-Version: 13`, 431) before the error is returned. The whole handshake
/// must finish within the configured handshake timeout.
///
/// ```no_run
/// use duplex_tokio::{accept_with, Acceptance, Config, Rejection};
/// use duplex_tokio::http::StatusCode;
///
/// # async fn run(stream: tokio::net::TcpStream) -> Result<(), Box<dyn std::error::Error>> {
/// let ws = accept_with(stream, Config::default(), |request, offer| {
///     if request.uri().path() != "/chat" {
///         return Err(Rejection::new(StatusCode::NOT_FOUND, "no such endpoint"));
///     }
///     let mut acceptance = Acceptance::default();
///     if let Some(protocol) = offer.select_protocol(&["chat.v2", "chat.v1"]) {
///         acceptance = acceptance.protocol(protocol);
///     }
///     Ok(acceptance)
/// })
/// .await?;
/// # Ok(()) }
/// ```
///
/// The callback cannot await. To await something before deciding (a token check
/// against a service), read the head yourself, await, then answer with
/// `duplex_handshake::decide` and wrap the stream:
///
/// ```no_run
/// use duplex_tokio::handshake::{Decision, Limits, ServerHandshake, decide};
/// use duplex_tokio::{Acceptance, Config, Rejection, Role, WebSocketStream};
/// use duplex_tokio::http::StatusCode;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// async fn token_is_valid(_token: Option<&str>) -> bool {
///     true // ask your session store
/// }
///
/// # async fn run(mut tcp: tokio::net::TcpStream) -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::default();
/// let mut reader = ServerHandshake::new(Limits::default());
/// let mut buf = vec![0u8; 4096];
/// let (request, leftover) = loop {
///     let n = tcp.read(&mut buf).await?;
///     if let Some(done) = reader.feed(&buf[..n])? {
///         break done;
///     }
/// };
/// let token = request.headers().get("authorization").and_then(|v| v.to_str().ok());
/// let allowed = token_is_valid(token).await;
/// let decision = decide(&request, config.deflate_config(), |_, _| {
///     if allowed {
///         Ok(Acceptance::default())
///     } else {
///         Err(Rejection::new(StatusCode::UNAUTHORIZED, "log in first"))
///     }
/// });
/// tcp.write_all(&decision.response_bytes()).await?;
/// let Decision::Accept(accepted) = decision else { return Ok(()) };
/// let ws = WebSocketStream::from_raw(
///     tcp,
///     Role::Server,
///     config.engine_config().clone(),
///     accepted.deflate,
///     &leftover,
/// );
/// # drop(ws);
/// # Ok(()) }
/// ```
pub fn accept_with<S, F>(
    stream: S,
    config: Config,
    callback: F,
) -> impl Future<Output = Result<WebSocketStream<S>, HandshakeError>>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&Request<()>, &ClientOffer) -> Result<Acceptance, Rejection>,
{
    // The handshake's state (the request, its timer, the configuration) lives in a box
    // freed when it ends, not in the caller's future: a task that accepts and then serves
    // the connection would otherwise carry it for the connection's whole life.
    Box::pin(handshake(stream, config, callback))
}

async fn handshake<S, F>(
    mut stream: S,
    config: Config,
    callback: F,
) -> Result<WebSocketStream<S>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&Request<()>, &ClientOffer) -> Result<Acceptance, Rejection>,
{
    let handshake = async {
        let (request, leftover) = read_request(&mut stream, &config).await?;
        let decision = if config.is_over_budget() {
            Decision::unavailable()
        } else {
            decide(&request, config.deflate.as_ref(), callback)
        };
        let bytes = decision.response_bytes();
        let accepted = match decision {
            Decision::Accept(accepted) => accepted,
            Decision::Refuse(refused) => return Err(refuse(&mut stream, &bytes, refused).await),
        };
        stream.write_all(&bytes).await?;
        stream.flush().await?;
        let extensions = accepted
            .response
            .headers()
            .get(duplex_handshake::http::header::SEC_WEBSOCKET_EXTENSIONS)
            .and_then(|v| v.to_str().ok());
        let span =
            crate::trace::connection(Role::Server, request.uri().path(), extensions, "HTTP/1.1");
        Ok((leftover, accepted.deflate, span))
    };
    let (leftover, deflate, span) = tokio::time::timeout(config.handshake_timeout, handshake)
        .await
        .map_err(|_| {
            crate::trace::handshake_timeout(Role::Server);
            HandshakeError::Timeout
        })??;
    let ws = WebSocketStream::from_raw(stream, Role::Server, config.engine, deflate, &leftover);
    ws.set_span(span);
    Ok(ws)
}

async fn read_request<S>(
    stream: &mut S,
    config: &Config,
) -> Result<(Request<()>, bytes::Bytes), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut reader = ServerHandshake::new(config.limits);
    // On the heap: a buffer in the future would stay in the connection's task.
    let mut buf = vec![0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(duplex_handshake::HandshakeError::Incomplete.into());
        }
        match reader.feed(&buf[..n]) {
            Ok(Some(done)) => return Ok(done),
            Ok(None) => {}
            Err(error) => {
                let decision = Decision::peer_error(error);
                let bytes = decision.response_bytes();
                let Decision::Refuse(refused) = decision else {
                    unreachable!("a peer error is a refusal");
                };
                return Err(refuse(stream, &bytes, refused).await);
            }
        }
    }
}

/// Writes a refusal (best effort), closes, and returns its error.
async fn refuse<S>(stream: &mut S, bytes: &[u8], refused: Refused) -> HandshakeError
where
    S: AsyncWrite + Unpin,
{
    crate::trace::rejected(refused.response.status(), &refused.error);
    let _ = stream.write_all(bytes).await;
    let _ = stream.shutdown().await;
    HandshakeError::Refused(refused.error)
}
