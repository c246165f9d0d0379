//! A blocking WebSocket (RFC 6455) server on mio, and a blocking client.
//!
//! [`Server`] runs an accept loop on the calling thread and a fixed set of worker
//! threads, each with its own `mio::Poll`, that serve many connections without a
//! thread or a task per connection. The application writes a [`Handler`] (one per
//! connection, made by a factory) and gets a [`Context`] in each callback to reply,
//! close, subscribe to topics and broadcast. Other threads use a [`Sender`]; a
//! [`ShutdownHandle`] stops the server gracefully (close frames with 1001, a bounded
//! wait). [`client::connect`] is a blocking client over `std::net::TcpStream`.
//!
//! What the server takes care of:
//!
//! - **Timers**: handshake timeout, the engine's keepalive, idle and close-handshake
//!   deadlines ([`EngineConfig`]), the shutdown bound.
//! - **Fairness**: each connection reads at most a budget per turn of the event loop; a
//!   client sending a burst waits for the next turn, so others (and accepting, on its
//!   own thread) go on.
//! - **Slow readers**: bounded output per connection with a two-level policy (stop
//!   reading, then close); see [Slow readers](ServerConfig#slow-readers).
//! - **Lean idle connections**: one read buffer per worker thread, engine buffers
//!   released at the end of each turn that drains a connection.
//! - **Large messages without copies**: the rest of a large frame, and a frame like the
//!   last large one, is read straight into the engine's buffer, so a single-frame
//!   message reaches the handler as one slice of it.
//! - **Overload**: a connection limit answered with 503, and a short pause in
//!   accepting (instead of a busy loop) when file descriptors run out.
//! - **Panicking handlers**: a panic in a callback is caught; it closes that connection
//!   with 1011 and the worker goes on serving the others (see
//!   [Panics](Handler#panics)).
//! - **Fan-out**: a broadcast is encoded once ([`PreparedMessage`]) and its bytes are
//!   shared by every receiver on every worker.
//!
//! Every protocol rule (framing, UTF-8, control frames, the close handshake, limits) is
//! `duplex-core`'s; the opening handshake is `duplex-handshake`'s. This crate only moves
//! bytes, watches readiness and runs timers.
//!
//! Pick another crate when: you use tokio (`duplex-tokio`), you need TLS (terminate it
//! in front, or use `duplex-tokio` with a TLS stream), you drive sockets from your own
//! event loop (`duplex-core` plus `duplex-handshake`), or an HTTP server already accepts
//! the connection (`duplex-handshake` validates its request).
//!
//! ```
//! use std::time::Duration;
//! use duplex_mio::{Context, Handler, Message, Server, ServerConfig};
//!
//! /// Joins the "chat" topic and relays every message to it.
//! struct Chat;
//!
//! impl Handler for Chat {
//!     fn on_open(
//!         &mut self,
//!         ctx: &mut Context<'_>,
//!         _request: &duplex_mio::http::Request<()>,
//!         _offer: &duplex_mio::ClientOffer,
//!     ) -> Result<duplex_mio::Acceptance, duplex_mio::Rejection> {
//!         ctx.subscribe("chat");
//!         Ok(duplex_mio::Acceptance::default())
//!     }
//!
//!     fn on_message(&mut self, ctx: &mut Context<'_>, message: Message) {
//!         let _ = ctx.publish("chat", message);
//!     }
//! }
//!
//! let server = Server::bind("127.0.0.1:0", ServerConfig::default().workers(2))?;
//! let url = format!("ws://{}/", server.local_addr()?);
//! let shutdown = server.shutdown_handle();
//! let thread = std::thread::spawn(move || server.run(|_| Chat));
//!
//! let mut alice = duplex_mio::client::connect(&url)?;
//! let mut bob = duplex_mio::client::connect(&url)?;
//! bob.set_read_timeout(Some(Duration::from_secs(5)))?;
//! // Bob is subscribed once his handshake is done; a round trip makes sure of it.
//! bob.send(Message::text("hi, I am Bob"))?;
//! assert_eq!(bob.recv()?, Message::text("hi, I am Bob"));
//! alice.send(Message::text("hello from Alice"))?;
//! assert_eq!(bob.recv()?, Message::text("hello from Alice"));
//!
//! drop((alice, bob));
//! shutdown.shutdown();
//! thread.join().unwrap()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// The one `unsafe` block of this crate is allowed where it is, with its reason.
#![deny(unsafe_code)]

pub mod client;
mod config;
mod context;
mod error;
mod server;
mod timer;
mod worker;

pub use config::{
    DEFAULT_MAX_CONNECTIONS, DEFAULT_READ_BUDGET, DEFAULT_READ_BUFFER_SIZE,
    DEFAULT_WRITE_BUFFER_HARD, DEFAULT_WRITE_BUFFER_SOFT, ServerConfig,
};
pub use context::Context;
pub use error::{ConnectionError, SendError};
pub use server::{ConnectionId, Handler, Sender, Server, ShutdownHandle};

/// The protocol engine, for its configuration, state and error types.
pub use duplex_core as core;
/// `Bytes`, the payload type of every message.
pub use duplex_core::Bytes;
pub use duplex_core::{
    BudgetStats, CloseCode, CloseFrame, EngineConfig, Error, Linger, MemoryBudget, Message,
    PreparedMessage, State, TimeoutKind, Utf8Bytes,
};
/// Re-export of the `http` crate, whose request and response types the handshake uses.
pub use duplex_handshake::http;
pub use duplex_handshake::{
    Acceptance, ClientOffer, HandshakeError, Limits, Rejection, ServerError,
};
