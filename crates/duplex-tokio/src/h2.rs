//! WebSocket clients over HTTP/2 (RFC 8441), with the `http2` feature.
//!
//! An [`Http2Connection`] is one HTTP/2 connection to an origin (made by
//! [`Http2Connection::connect`] over TLS with ALPN `h2`, or by
//! [`Http2Connection::handshake`] over any stream, such as cleartext TCP to a server that
//! speaks HTTP/2 with prior knowledge). When the server advertised
//! `SETTINGS_ENABLE_CONNECT_PROTOCOL` ([`supports_websocket`](Http2Connection::supports_websocket)),
//! [`websocket`](Http2Connection::websocket) opens a WebSocket on a new stream of it with
//! an extended CONNECT (`:protocol = websocket`); the handle is cheap to clone, and any
//! number of WebSockets (up to the server's concurrent stream limit) share the
//! connection. Each WebSocket runs over an [`H2Stream`]: the HTTP/2 stream as an
//! `AsyncRead + AsyncWrite`, whose flow control is the backpressure; closing the
//! WebSocket ends its stream, not the connection.
//!
//! [`connect_with`](crate::connect_with) uses this by itself for `wss://` URLs when
//! [`Config::http2`] is on: it offers `h2` and `http/1.1` by ALPN and falls back to an
//! HTTP/1.1 upgrade when the server does not choose `h2` or does not allow extended
//! CONNECT.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use duplex_tokio::h2::Http2Connection;
//! use duplex_tokio::{ClientRequest, Config, Message};
//!
//! let config = Config::default();
//! let connection = Http2Connection::connect("wss://example.com/", &config).await?;
//! assert!(connection.supports_websocket());
//! let (mut chat, _) = connection.websocket(ClientRequest::new("wss://example.com/chat")?, config.clone()).await?;
//! let (mut feed, _) = connection.websocket(ClientRequest::new("wss://example.com/feed")?, config).await?;
//! chat.send(Message::text("hello")).await?;
//! let _ = feed.recv().await;
//! # Ok(()) }
//! ```

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use duplex_core::Role;
use duplex_handshake::http::Response;
use duplex_handshake::{ClientRequest, HandshakeError as BadHandshake};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::client::ClientResponse;
use crate::config::Config;
use crate::error::HandshakeError;
use crate::stream::WebSocketStream;

/// One stream of an HTTP/2 connection as a byte stream: what a WebSocket over HTTP/2
/// runs on. Reading returns the DATA frames' payloads (and gives their flow-control
/// window back as they are read, so a slow reader slows the sender); writing waits for
/// send window. Shutting down the write side ends the stream (`END_STREAM`); dropping it
/// before resets the stream. The connection itself stays open for other streams.
#[derive(Debug)]
pub struct H2Stream {
    send: ::h2::SendStream<Bytes>,
    recv: ::h2::RecvStream,
    buffered: Bytes,
    eof: bool,
}

impl H2Stream {
    /// Wraps the two halves of an HTTP/2 stream (a request's send stream and its
    /// response's body, or the reverse on a server).
    pub fn new(send: ::h2::SendStream<Bytes>, recv: ::h2::RecvStream) -> Self {
        Self {
            send,
            recv,
            buffered: Bytes::new(),
            eof: false,
        }
    }
}

fn h2_io_error(error: ::h2::Error) -> io::Error {
    if error.is_io() {
        return error
            .into_io()
            .unwrap_or_else(|| io::ErrorKind::Other.into());
    }
    if error.is_reset() {
        return io::Error::new(io::ErrorKind::ConnectionReset, error);
    }
    io::Error::other(error)
}

impl AsyncRead for H2Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.buffered.is_empty() {
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => this.buffered = data,
                Some(Err(error)) => return Poll::Ready(Err(h2_io_error(error))),
                None => this.eof = true,
            }
        }
        let n = buf.remaining().min(this.buffered.len());
        buf.put_slice(&this.buffered[..n]);
        this.buffered.advance(n);
        // The window is given back only for what the reader took.
        let _ = this.recv.flow_control().release_capacity(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            let capacity = this.send.capacity();
            if capacity > 0 {
                let n = capacity.min(buf.len());
                this.send
                    .send_data(Bytes::copy_from_slice(&buf[..n]), false)
                    .map_err(h2_io_error)?;
                return Poll::Ready(Ok(n));
            }
            this.send.reserve_capacity(buf.len());
            match ready!(this.send.poll_capacity(cx)) {
                Some(Ok(_)) => continue,
                Some(Err(error)) => return Poll::Ready(Err(h2_io_error(error))),
                None => {
                    // The stream can no longer send: say why if it was reset.
                    return Poll::Ready(Err(match this.send.poll_reset(cx) {
                        Poll::Ready(Ok(reason)) => io::Error::new(
                            io::ErrorKind::ConnectionReset,
                            format!("HTTP/2 stream reset: {reason}"),
                        ),
                        _ => io::ErrorKind::BrokenPipe.into(),
                    }));
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The connection's task writes buffered DATA frames as the window allows.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.send.send_data(Bytes::new(), true) {
            Err(error) if error.is_io() => Poll::Ready(Err(h2_io_error(error))),
            // Otherwise ended: by us before (h2 refuses a second end), or by a reset.
            _ => Poll::Ready(Ok(())),
        }
    }
}

/// A client's HTTP/2 connection to one origin, on which WebSockets open as streams
/// (RFC 8441). Clones share the connection; it closes when the last clone and the last
/// stream are gone.
#[derive(Clone, Debug)]
pub struct Http2Connection {
    send: ::h2::client::SendRequest<Bytes>,
    extended_connect: bool,
}

/// How long [`Http2Connection::handshake`] waits for the server's settings by default
/// (the configured handshake timeout applies when shorter).
const SETTINGS_WAIT: Duration = Duration::from_secs(10);

impl Http2Connection {
    /// Connects to the origin of a `wss://` URL with TLS offering only ALPN `h2` (through
    /// the configured proxy, if any) and starts HTTP/2 on it. Fails if the server does
    /// not choose `h2`.
    pub async fn connect(url: &str, config: &Config) -> Result<Self, HandshakeError> {
        let request = ClientRequest::new(url)?;
        if !request.is_tls() {
            return Err(BadHandshake::InvalidUrl(
                "HTTP/2 needs wss:// (ALPN h2); use Http2Connection::handshake for h2c".into(),
            )
            .into());
        }
        let timeout = config.handshake_timeout;
        let connecting = async {
            let tcp = crate::proxy::dial(config, request.host(), request.port()).await?;
            crate::maybe_tls::tls_handshake(tcp, request.host(), config.tls_client(), &[b"h2"])
                .await
        };
        let tls = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| HandshakeError::Timeout)??;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(HandshakeError::Io(io::Error::other(
                "the server did not choose HTTP/2 (ALPN h2)",
            )));
        }
        Self::handshake(tls, config).await
    }

    /// Starts HTTP/2 (with prior knowledge) over `io` and waits for the server's
    /// settings, so that [`supports_websocket`](Self::supports_websocket) is known. The
    /// connection is driven by a task spawned on the current tokio runtime.
    pub async fn handshake<S>(io: S, config: &Config) -> Result<Self, HandshakeError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let timeout = config.handshake_timeout.min(SETTINGS_WAIT);
        let starting = async {
            let (send, mut connection) = ::h2::client::Builder::new()
                .handshake::<_, Bytes>(io)
                .await
                .map_err(h2_io_error)?;
            let mut ping = connection.ping_pong();
            tokio::spawn(async move {
                let _ = connection.await;
            });
            // A server's first frame is its SETTINGS, so once a ping comes back they
            // have been applied.
            if let Some(ping) = ping.as_mut() {
                ping.ping(::h2::Ping::opaque()).await.map_err(h2_io_error)?;
            }
            let extended_connect = send.is_extended_connect_protocol_enabled();
            Ok::<_, HandshakeError>(Self {
                send,
                extended_connect,
            })
        };
        tokio::time::timeout(timeout, starting)
            .await
            .map_err(|_| HandshakeError::Timeout)?
    }

    /// True when the server allows extended CONNECT (`SETTINGS_ENABLE_CONNECT_PROTOCOL`),
    /// which WebSockets over HTTP/2 need.
    pub fn supports_websocket(&self) -> bool {
        self.extended_connect
    }

    /// Opens a WebSocket on a new stream of this connection: an extended CONNECT for
    /// the request's path, with its subprotocols, headers and permessage-deflate offer
    /// (from `config` unless the request has its own), checked as over HTTP/1.1 but
    /// answered by a 2xx. The request's authority is sent as `:authority`.
    pub async fn websocket(
        &self,
        request: ClientRequest,
        config: Config,
    ) -> Result<(WebSocketStream<H2Stream>, ClientResponse), HandshakeError> {
        let (stream, response, deflate) = self.open(request, &config).await?;
        let ws = WebSocketStream::from_raw(stream, Role::Client, config.engine, deflate, &[]);
        ws.set_span(client_span(&response));
        Ok((ws, response))
    }

    /// The extended CONNECT exchange, giving the stream, the response and the agreed
    /// permessage-deflate parameters.
    pub(crate) async fn open(
        &self,
        request: ClientRequest,
        config: &Config,
    ) -> Result<(H2Stream, ClientResponse, Option<duplex_core::DeflateParams>), HandshakeError>
    {
        if !self.extended_connect {
            return Err(HandshakeError::ExtendedConnectNotAllowed);
        }
        let request = match request.deflate_config() {
            Some(_) => request,
            None => request.deflate(config.deflate),
        };
        // The same offer as over HTTP/1.1, in the HTTP/2 envelope: no key, and a 2xx
        // answer checked with the same subprotocol and extension rules as a 101.
        let (mut connect, handshake) = request.limits(config.limits).extended_connect()?;
        let path = connect
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        connect
            .extensions_mut()
            .insert(::h2::ext::Protocol::from_static("websocket"));

        let exchange = async {
            let mut send_request = self.send.clone().ready().await.map_err(h2_io_error)?;
            let (response, send) = send_request
                .send_request(connect, false)
                .map_err(h2_io_error)?;
            let response = response.await.map_err(h2_io_error)?;
            Ok::<_, HandshakeError>((response, send))
        };
        let (response, send) = tokio::time::timeout(config.handshake_timeout, exchange)
            .await
            .map_err(|_| HandshakeError::Timeout)??;
        let (parts, recv) = response.into_parts();
        if !parts.status.is_success() {
            return Err(
                BadHandshake::Refused(Box::new(duplex_handshake::RefusedResponse {
                    status: parts.status,
                    headers: parts.headers,
                    body: bytes::Bytes::new(),
                    complete: false,
                }))
                .into(),
            );
        }
        let negotiated = handshake.validate(&Response::from_parts(parts.clone(), ()))?;
        let deflate = negotiated.deflate;
        let mut response = ClientResponse {
            response: Response::from_parts(parts, ()),
            negotiated,
        };
        response.response.extensions_mut().insert(RequestPath(path));
        Ok((H2Stream::new(send, recv), response, deflate))
    }
}

/// The span of a client WebSocket over HTTP/2 (the `tracing` feature).
pub(crate) fn client_span(response: &ClientResponse) -> crate::trace::Span {
    let path = response
        .response
        .extensions()
        .get::<RequestPath>()
        .map_or("/", |p| p.0.as_str());
    crate::trace::connection(
        Role::Client,
        path,
        response.negotiated.extensions.first().map(String::as_str),
        "HTTP/2",
    )
}

/// The request's path, kept with the response for the span.
#[derive(Clone, Debug)]
struct RequestPath(String);
