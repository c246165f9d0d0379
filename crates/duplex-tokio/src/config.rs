//! Configuration of the tokio adapter.

use std::time::Duration;

use duplex_handshake::{DeflateConfig, Limits};

use crate::proxy::Proxy;

/// Protocol limits (from `duplex-core`) plus what only the adapter needs: handshake
/// limits and timeout.
///
/// ```
/// use std::time::Duration;
/// use duplex_tokio::Config;
///
/// let config = Config::default()
///     .handshake_timeout(Duration::from_secs(5))
///     .engine(duplex_tokio::EngineConfig::default().max_message_size(1 << 20));
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    /// Shared by every connection made with this configuration.
    pub(crate) engine: std::sync::Arc<duplex_core::EngineConfig>,
    pub(crate) limits: Limits,
    pub(crate) handshake_timeout: Duration,
    pub(crate) deflate: Option<DeflateConfig>,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>,
    pub(crate) proxy: ProxySetting,
    #[cfg(feature = "http2")]
    pub(crate) http2: bool,
}

/// Where the client's TCP connections go.
#[derive(Clone, Debug, Default)]
pub(crate) enum ProxySetting {
    /// Straight to the server.
    #[default]
    Direct,
    /// Through this proxy.
    Explicit(Proxy),
    /// Through the proxy the environment names for each URL (or straight).
    FromEnv,
}

pub use duplex_handshake::DEFAULT_HANDSHAKE_TIMEOUT;

impl Default for Config {
    fn default() -> Self {
        Self {
            engine: std::sync::Arc::default(),
            limits: Limits::default(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            deflate: Some(DeflateConfig::ADAPTER_DEFAULT),
            #[cfg(feature = "tls")]
            tls: None,
            proxy: ProxySetting::Direct,
            #[cfg(feature = "http2")]
            http2: false,
        }
    }
}

impl Config {
    /// The protocol engine's limits and behaviour (message and frame sizes, write buffer,
    /// close timeout, keepalive, idle timeout, automatic fragmentation).
    pub fn engine(mut self, engine: duplex_core::EngineConfig) -> Self {
        self.engine = std::sync::Arc::new(engine);
        self
    }

    /// Limits on the handshake's HTTP head (default 16 KiB and 64 headers).
    pub fn handshake_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// How long the opening handshake may take (default 10 s); a peer that sends half a
    /// request and stalls is dropped after it.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The permessage-deflate policy: what a client offers and what a server accepts
    /// (default: on, 15-bit windows, `server_no_context_takeover`: the server keeps no
    /// compression context between the messages it sends, and a client asks for that).
    /// `None` turns it off. A side that keeps its compression context owns a compressor
    /// (about 370 KiB with zlib-rs) from its first compressed message on; one that does
    /// not compresses with a compressor shared by the connections of its thread, so a
    /// server connection that used compression holds only its decompressor (about
    /// 46 KiB with a 15-bit window, freed between messages when the peer keeps no
    /// context either). The ratio this gives up on similar consecutive messages is in
    /// `docs/BENCHMARKS.md` (deflate memory).
    pub fn deflate(mut self, policy: Option<DeflateConfig>) -> Self {
        self.deflate = policy;
        self
    }

    /// The rustls client configuration used for `wss://` by [`connect_with`](crate::connect_with)
    /// (default: the web PKI roots, no client certificate). For a private CA, pinned
    /// certificates or client authentication.
    #[cfg(feature = "tls")]
    pub fn tls_client_config(
        mut self,
        config: std::sync::Arc<tokio_rustls::rustls::ClientConfig>,
    ) -> Self {
        self.tls = Some(config);
        self
    }

    /// Connects through `proxy` (HTTP CONNECT or SOCKS5) for every URL. The default is
    /// a direct connection; the environment is only read after
    /// [`proxy_from_env`](Self::proxy_from_env).
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.proxy = ProxySetting::Explicit(proxy);
        self
    }

    /// Connects through the proxy that `HTTPS_PROXY` (`wss://`), `HTTP_PROXY` (`ws://`)
    /// or `ALL_PROXY` name, unless `NO_PROXY` lists the host (see
    /// [`Proxy::for_url_from`]); read at each connect.
    pub fn proxy_from_env(mut self) -> Self {
        self.proxy = ProxySetting::FromEnv;
        self
    }

    /// Connects straight to the server (the default).
    pub fn no_proxy(mut self) -> Self {
        self.proxy = ProxySetting::Direct;
        self
    }

    /// With `true`, [`connect_with`](crate::connect_with) offers HTTP/2 for `wss://`
    /// (ALPN `h2`, then `http/1.1`) and opens the WebSocket as an RFC 8441 extended
    /// CONNECT when the server chooses `h2` and allows it; otherwise it falls back to an
    /// HTTP/1.1 upgrade (on a new connection when the server chose `h2` without
    /// extended CONNECT). `ws://` always uses HTTP/1.1. Default `false`. To share one
    /// HTTP/2 connection between WebSockets, use [`crate::h2::Http2Connection`].
    #[cfg(feature = "http2")]
    pub fn http2(mut self, enabled: bool) -> Self {
        self.http2 = enabled;
        self
    }

    /// True while the memory budget that server connections made with this
    /// configuration join is exceeded: new handshakes are answered 503 (see
    /// [`duplex_core::MemoryBudget`]).
    pub(crate) fn is_over_budget(&self) -> bool {
        self.engine.refuses_new_server_connections()
    }

    /// The protocol engine's configuration.
    pub fn engine_config(&self) -> &duplex_core::EngineConfig {
        &self.engine
    }

    /// The permessage-deflate policy (`None`: off).
    pub fn deflate_config(&self) -> Option<&DeflateConfig> {
        self.deflate.as_ref()
    }
}

impl Config {
    #[cfg(feature = "tls")]
    pub(crate) fn tls_client(&self) -> Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>> {
        self.tls.clone()
    }

    #[cfg(not(feature = "tls"))]
    pub(crate) fn tls_client(&self) -> Option<()> {
        None
    }
}
