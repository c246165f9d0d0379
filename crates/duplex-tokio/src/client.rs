//! Connecting to WebSocket servers.

use duplex_core::Role;
use duplex_handshake::http::Response;
use duplex_handshake::{ClientRequest, Negotiated};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config::Config;
use crate::error::HandshakeError;
use crate::maybe_tls::MaybeTlsStream;
use crate::stream::WebSocketStream;

/// The server's 101 response and what it agreed to.
#[derive(Clone, Debug)]
pub struct ClientResponse {
    /// The HTTP response head.
    pub response: Response<()>,
    /// The chosen subprotocol and accepted extensions.
    pub negotiated: Negotiated,
}

/// Connects to a `ws://` or `wss://` URL: DNS, TCP, TLS (for `wss`, with the `tls`
/// feature, against the web PKI roots), then the opening handshake. Direct, over
/// HTTP/1.1; [`connect_with`] takes a [`Config`] for proxies and HTTP/2.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use duplex_tokio::Message;
///
/// let (mut ws, _) = duplex_tokio::connect("ws://127.0.0.1:9001/").await?;
/// ws.send(Message::text("hello")).await?;
/// if let Some(reply) = ws.recv().await {
///     println!("{:?}", reply?);
/// }
/// ws.close(None).await?;
/// # Ok(()) }
/// ```
pub async fn connect(
    url: &str,
) -> Result<(WebSocketStream<MaybeTlsStream>, ClientResponse), HandshakeError> {
    connect_with(ClientRequest::new(url)?, Config::default()).await
}

/// Connects with a prepared request (subprotocols, headers) and configuration: through
/// the configured proxy if any, and over HTTP/2 when [`Config::http2`] asks for it and
/// the `wss://` server allows it (the `http2` feature).
pub async fn connect_with(
    request: ClientRequest,
    config: Config,
) -> Result<(WebSocketStream<MaybeTlsStream>, ClientResponse), HandshakeError> {
    #[cfg(feature = "http2")]
    if config.http2 && request.is_tls() {
        if let Some(done) = connect_h2(&request, &config).await? {
            return Ok(done);
        }
    }
    let timeout = config.handshake_timeout;
    let connecting = async {
        let tcp = crate::proxy::dial_for(&config, request.is_tls(), request.host(), request.port())
            .await?;
        if request.is_tls() {
            crate::maybe_tls::wrap_tls(tcp, request.host(), config.tls_client()).await
        } else {
            Ok(MaybeTlsStream::Plain(tcp))
        }
    };
    let stream = tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| HandshakeError::Timeout)??;
    client_with(request, stream, config).await
}

/// Tries RFC 8441: TLS offering `h2` and `http/1.1`. Gives the WebSocket over HTTP/2,
/// or over HTTP/1.1 on the same connection when the server chose `http/1.1`, or `None`
/// when the server chose `h2` without extended CONNECT (the caller reconnects).
#[cfg(feature = "http2")]
async fn connect_h2(
    request: &ClientRequest,
    config: &Config,
) -> Result<Option<(WebSocketStream<MaybeTlsStream>, ClientResponse)>, HandshakeError> {
    let connecting = async {
        let tcp = crate::proxy::dial(config, request.host(), request.port()).await?;
        crate::maybe_tls::tls_handshake(
            tcp,
            request.host(),
            config.tls_client(),
            &[b"h2", b"http/1.1"],
        )
        .await
    };
    let tls = tokio::time::timeout(config.handshake_timeout, connecting)
        .await
        .map_err(|_| HandshakeError::Timeout)??;
    if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
        let stream = MaybeTlsStream::Tls(Box::new(tls));
        return client_with(request.clone(), stream, config.clone())
            .await
            .map(Some);
    }
    let connection = crate::h2::Http2Connection::handshake(tls, config).await?;
    if !connection.supports_websocket() {
        return Ok(None);
    }
    let (stream, response, deflate) = connection.open(request.clone(), config).await?;
    let ws = WebSocketStream::from_raw(
        MaybeTlsStream::H2(Box::new(stream)),
        Role::Client,
        config.engine.clone(),
        deflate,
        &[],
    );
    ws.set_span(crate::h2::client_span(&response));
    Ok(Some((ws, response)))
}

/// Runs the client handshake over a stream the caller already has (TCP, TLS, a Unix
/// socket, an in-memory pipe).
pub async fn client_with<S>(
    request: ClientRequest,
    mut stream: S,
    config: Config,
) -> Result<(WebSocketStream<S>, ClientResponse), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let request = match request.deflate_config() {
        Some(_) => request,
        None => request.deflate(config.deflate),
    };
    let (bytes, mut handshake) = request.limits(config.limits).encode();
    // For the span: the target of the request line `GET <path> HTTP/1.1`.
    let path = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| text.split(' ').nth(1))
        .unwrap_or("/")
        .to_owned();
    let exchange = async {
        stream.write_all(&bytes).await?;
        stream.flush().await?;
        // On the heap: a buffer in the future would stay in the connection's task.
        let mut buf = vec![0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                // A refusal's body may end with the connection.
                return Err(HandshakeError::Protocol(handshake.finish()));
            }
            if let Some(done) = handshake.feed(&buf[..n])? {
                return Ok(done);
            }
        }
    };
    let exchanged = tokio::time::timeout(config.handshake_timeout, exchange).await;
    let (response, negotiated, leftover) = match exchanged {
        Ok(result) => result?,
        Err(_) => {
            crate::trace::handshake_timeout(Role::Client);
            // A refusal whose body did not finish in time is still the server's answer.
            return Err(match handshake.finish() {
                duplex_handshake::HandshakeError::Incomplete => HandshakeError::Timeout,
                refused => HandshakeError::Protocol(refused),
            });
        }
    };
    let ws = WebSocketStream::from_raw(
        stream,
        Role::Client,
        config.engine,
        negotiated.deflate,
        &leftover,
    );
    ws.set_span(crate::trace::connection(
        Role::Client,
        &path,
        negotiated.extensions.first().map(String::as_str),
        "HTTP/1.1",
    ));
    Ok((
        ws,
        ClientResponse {
            response,
            negotiated,
        },
    ))
}
