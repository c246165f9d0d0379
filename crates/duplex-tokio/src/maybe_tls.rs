//! A TCP stream that may be wrapped in TLS (or be one stream of an HTTP/2 connection).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::error::HandshakeError;

/// The transport [`connect`](crate::connect) makes: plain TCP for `ws://`, TLS over TCP
/// for `wss://` (either possibly through a proxy), or an HTTP/2 stream.
#[derive(Debug)]
#[non_exhaustive]
pub enum MaybeTlsStream {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`.
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// `wss://` over one stream of an HTTP/2 connection (RFC 8441), with the `http2`
    /// feature and [`Config::http2`](crate::Config::http2).
    #[cfg(feature = "http2")]
    H2(Box<crate::h2::H2Stream>),
}

/// Wraps `tcp` in TLS for `host`, with `config` or the web PKI roots.
#[cfg(feature = "tls")]
pub(crate) async fn wrap_tls(
    tcp: TcpStream,
    host: &str,
    config: Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>,
) -> Result<MaybeTlsStream, HandshakeError> {
    let tls = tls_handshake(tcp, host, config, &[]).await?;
    Ok(MaybeTlsStream::Tls(Box::new(tls)))
}

/// The TLS handshake for `host` with `config` (or the web PKI roots), offering `alpn`
/// (none when empty; otherwise these replace the configuration's).
#[cfg(feature = "tls")]
pub(crate) async fn tls_handshake(
    tcp: TcpStream,
    host: &str,
    config: Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>,
    alpn: &[&[u8]],
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, HandshakeError> {
    use tokio_rustls::rustls;
    let mut config = config.unwrap_or_else(|| {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        std::sync::Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    });
    if !alpn.is_empty() {
        let mut with_alpn = (*config).clone();
        with_alpn.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config = std::sync::Arc::new(with_alpn);
    }
    // An IPv6 literal comes bracketed from the URL.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(bare.to_owned())
        .map_err(|e| HandshakeError::Io(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    Ok(tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?)
}

/// Without the `tls` feature, `wss://` is refused.
#[cfg(not(feature = "tls"))]
pub(crate) async fn wrap_tls(
    _: TcpStream,
    _: &str,
    _: Option<()>,
) -> Result<MaybeTlsStream, HandshakeError> {
    Err(HandshakeError::Protocol(
        duplex_handshake::HandshakeError::InvalidUrl(
            "wss:// needs the `tls` feature of duplex-tokio".into(),
        ),
    ))
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            MaybeTlsStream::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
            #[cfg(feature = "http2")]
            MaybeTlsStream::H2($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl AsyncRead for MaybeTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for MaybeTlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.is_write_vectored(),
            #[cfg(feature = "http2")]
            Self::H2(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_shutdown(cx))
    }
}
