//! Async WebSocket (RFC 6455) client and server on tokio.
//!
//! [`accept`] / [`accept_with`] run the server handshake on any
//! `AsyncRead + AsyncWrite + Unpin` stream; [`connect`] dials a `ws://` or `wss://` URL
//! and [`client_with`] runs the client handshake over a stream you already have. Both
//! give a [`WebSocketStream`]: a `futures::Stream` of received [`Message`]s and a
//! `futures::Sink` of messages to send, with async `recv`, `send` and `close`, and
//! [`split`](WebSocketStream::split) for separate reader and writer tasks.
//!
//! Every protocol rule (fragmentation, UTF-8, control frames, the close handshake,
//! limits, keepalive) comes from `duplex-core`; this crate only moves bytes and adds
//! tokio's timers and wakers. Pick `duplex-mio` instead for a blocking server without an
//! async runtime, or `duplex-core` to drive the protocol from your own event loop.
//!
//! ```
//! use duplex_tokio::{accept, connect, Message};
//! use tokio::net::TcpListener;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = TcpListener::bind("127.0.0.1:0").await?;
//! let url = format!("ws://{}/", listener.local_addr()?);
//! tokio::spawn(async move {
//!     let (tcp, _) = listener.accept().await?;
//!     let mut ws = accept(tcp).await?;
//!     while let Some(Ok(message)) = ws.recv().await {
//!         if message.is_data() {
//!             ws.send(message).await?;
//!         }
//!     }
//!     Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
//! });
//!
//! let (mut ws, _) = connect(&url).await?;
//! ws.send(Message::text("hello")).await?;
//! assert_eq!(ws.recv().await.unwrap()?, Message::text("hello"));
//! ws.close(None).await?;
//! # Ok(()) }
//! ```
//!
//! # Broadcast and slow consumers
//!
//! A broadcaster must not wait for its slowest client. Encode each message once
//! ([`PreparedMessage`]) and give every client a small bounded queue served by its own
//! task; when a client's queue is full, that client is too slow: drop it (or skip the
//! message) instead of waiting. Without a queue, [`WsWriter::try_send_prepared`] gives
//! the same signal straight from the connection's write buffer, and
//! [`WebSocketStream::buffered_amount`] tells how far behind a client is. Whatever the
//! application does, a client that stops reading is failed by the write timeout.
//!
//! To tell a dropped client why, close it with [`CloseHandle::close_now`] (or
//! [`WsWriter::close_now`]) and a code such as 1008 (policy) or 1013 (try again later):
//! a plain close frame waits behind the output the client is not reading, so it would
//! arrive only after that output (or never, when the close deadline ends the connection
//! first); `close_now` drops the messages not yet started and sends the close frame
//! right after the frame being written.
//!
//! ```
//! use std::collections::HashMap;
//! use duplex_tokio::{accept, connect, Message, PreparedMessage};
//! use tokio::net::{TcpListener, TcpStream};
//! use tokio::sync::mpsc;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! // Two clients: one reads everything, one never reads.
//! let url = format!("ws://{addr}/");
//! let fast = tokio::spawn(async move { connect(&url).await });
//! let mut slow = TcpStream::connect(addr).await?;
//! slow.writable().await?;
//! let request = format!(
//!     "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
//!      Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
//! );
//! tokio::io::AsyncWriteExt::write_all(&mut slow, request.as_bytes()).await?;
//!
//! // The server: a bounded queue and a task per client.
//! let mut queues = HashMap::new();
//! for id in 0..2 {
//!     let (tcp, _) = listener.accept().await?;
//!     let mut ws = accept(tcp).await?;
//!     let (tx, mut rx) = mpsc::channel::<PreparedMessage>(32);
//!     tokio::spawn(async move {
//!         while let Some(message) = rx.recv().await {
//!             if ws.send_prepared(&message).await.is_err() {
//!                 break;
//!             }
//!         }
//!     });
//!     queues.insert(id, tx);
//! }
//! let (mut fast, _) = fast.await??;
//! let chunk = Message::binary(vec![7u8; 64 << 10]);
//! let mut dropped = Vec::new();
//! for _ in 0..400 {
//!     let prepared = PreparedMessage::new(chunk.clone())?;
//!     queues.retain(|id, queue| match queue.try_send(prepared.clone()) {
//!         Ok(()) => true,
//!         Err(_) => {
//!             dropped.push(*id); // too slow (or gone): drop it, do not wait
//!             false
//!         }
//!     });
//!     // Let the per-client tasks run, as a real server's other work would.
//!     tokio::task::yield_now().await;
//!     // The fast client keeps reading.
//!     while let Ok(Some(Ok(_))) =
//!         tokio::time::timeout(std::time::Duration::from_millis(1), fast.recv()).await
//!     {}
//! }
//! assert_eq!(dropped.len(), 1, "only the client that never reads is dropped");
//! # drop(slow);
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! - `tls` (default): `wss://` for the client, with rustls (`ring`) and the web PKI roots.
//! - `hyper`: [`hyper::upgrade`] for WebSocket requests served by hyper 1 or axum, as
//!   HTTP/1.1 upgrades or HTTP/2 extended CONNECT (RFC 8441).
//! - `axum` (enables `hyper`): [`axum::WebSocketUpgrade`], an axum 0.8 extractor in
//!   place of `axum::extract::ws`, for HTTP/1.1 and HTTP/2 with the same handler.
//! - `http2`: the client over HTTP/2 (RFC 8441): [`h2::Http2Connection`] and
//!   [`Config::http2`].
//!
//! - `tracing`: a span per connection and events for handshake rejections, errors and
//!   close codes (see `WebSocketStream::span`).
//!
//! Proxies ([`Proxy`]: HTTP CONNECT and SOCKS5), graceful shutdown ([`Shutdown`]) and
//! counters ([`ServerStats`]) need no feature.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

/// The README's examples, compiled and run as doctests (they use the `axum`, `hyper` and
/// `http2` features; CI tests with `--all-features`).
#[cfg(all(doctest, feature = "axum", feature = "http2"))]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

/// docs/MIGRATING.md's examples, compiled as doctests (they use the `axum` feature).
#[cfg(all(doctest, feature = "axum"))]
#[doc = include_str!("../../../docs/MIGRATING.md")]
struct MigratingDoctests;

#[cfg(feature = "axum")]
pub mod axum;
mod client;
mod config;
mod error;
#[cfg(feature = "http2")]
pub mod h2;
#[cfg(feature = "hyper")]
pub mod hyper;
mod maybe_tls;
pub mod proxy;
mod server;
mod shutdown;
mod stats;
mod stream;
mod trace;

#[cfg(feature = "hyper")]
pub use self::hyper::{HyperWebSocket, UpgradeError};
pub use client::{ClientResponse, client_with, connect, connect_with};
pub use config::{Config, DEFAULT_HANDSHAKE_TIMEOUT};
pub use error::HandshakeError;
pub use maybe_tls::MaybeTlsStream;
pub use proxy::{Proxy, ProxyError};
pub use server::{accept, accept_with};
pub use shutdown::{Shutdown, ShutdownReport, Tracked};
pub use stats::{ServerStats, StatsSnapshot};
pub use stream::{CloseHandle, ReuniteError, TrySendError, WebSocketStream, WsReader, WsWriter};

pub use duplex_core::{
    BudgetStats, CloseCode, CloseFrame, DeflateParams, Error, MemoryBudget, Message,
    PreparedMessage, Role, Utf8Bytes,
};
pub use duplex_handshake::{
    Acceptance, ClientOffer, ClientRequest, DeflateConfig, Limits, RefusedResponse, Rejection,
    ServerError, http,
};

/// The opening handshake, for its error type (`handshake::HandshakeError`, inside
/// [`HandshakeError::Protocol`]) and lower-level pieces.
pub use duplex_handshake as handshake;

/// The protocol engine, for its configuration and error types.
pub use duplex_core as core;
/// The engine's configuration (limits, deadlines), set with [`Config::engine`].
pub use duplex_core::EngineConfig;

/// The TLS library used for `wss://`, for building a custom `ClientConfig` or a
/// `TlsAcceptor` for servers.
#[cfg(feature = "tls")]
pub use tokio_rustls;
