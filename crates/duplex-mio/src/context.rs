//! What a handler can do from inside its callbacks.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use duplex_core::{CloseCode, CloseFrame, Message, PreparedMessage};

use crate::error::SendError;
use crate::server::{ConnectionId, Sender, Shared};
use crate::worker::Local;

/// A handler's view of its connection and the server, valid during one callback.
///
/// Sends are queued and written when the callback returns. Broadcasts encode the frame
/// once ([`PreparedMessage`]) and share its bytes with every receiver, on this worker
/// thread and the others.
pub struct Context<'a> {
    local: &'a mut Local,
    shared: &'a Arc<Shared>,
    slot: usize,
}

impl fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context").field("id", &self.id()).finish()
    }
}

impl<'a> Context<'a> {
    pub(crate) fn new(local: &'a mut Local, shared: &'a Arc<Shared>, slot: usize) -> Self {
        Self {
            local,
            shared,
            slot,
        }
    }

    /// This connection's id, for [`Sender::send`] from other threads.
    pub fn id(&self) -> ConnectionId {
        self.local.id(self.slot)
    }

    /// The client's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.local
            .entry(self.slot)
            .map(|e| SocketAddr::from(&e.peer))
    }

    /// Bytes queued for this connection and not yet written.
    pub fn buffered(&self) -> usize {
        self.local
            .entry(self.slot)
            .and_then(|e| match &e.state {
                crate::worker::State::Open { conn, .. } => Some(conn.output_len()),
                _ => None,
            })
            .unwrap_or(0)
    }

    /// Queues a message for this connection (any kind; `Message::Close` starts the close
    /// handshake, like [`close`](Self::close)). Text and binary messages are refused
    /// with [`SendError::WriteBufferFull`] while the unsent output is above the soft
    /// limit.
    pub fn send(&mut self, message: impl Into<Message>) -> Result<(), SendError> {
        let message = message.into();
        let conn = self.conn()?;
        if let Message::Close(frame) = message {
            conn.close(frame, Instant::now())?;
            self.local.mark_dirty(self.slot);
            return Ok(());
        }
        conn.send(message)?;
        self.local.mark_dirty(self.slot);
        Ok(())
    }

    /// Queues a message encoded once for many connections, with the soft-limit rule of
    /// [`send`](Self::send).
    pub fn send_prepared(&mut self, prepared: &PreparedMessage) -> Result<(), SendError> {
        let conn = self.conn()?;
        conn.send_prepared(prepared)?;
        self.local.mark_dirty(self.slot);
        Ok(())
    }

    /// Starts the close handshake with `code` and `reason` (at most 123 bytes), overtaking
    /// what is queued: messages not yet started are dropped, so a slow consumer that is
    /// kicked gets the close frame (and learns why) as soon as its socket takes the rest
    /// of the frame being written. See `duplex_core::Connection::close_now`.
    pub fn close_now(&mut self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        let conn = self.conn()?;
        conn.close_now(Some(CloseFrame::new(code, reason)), Instant::now())?;
        self.local.mark_dirty(self.slot);
        Ok(())
    }

    /// Starts the close handshake with `code` and `reason` (at most 123 bytes). The
    /// connection ends when the client answers, or after the close timeout.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        self.send(Message::Close(Some(CloseFrame::new(code, reason))))
    }

    /// Subscribes this connection to `topic` (see [`publish`](Self::publish)). Returns
    /// false if the connection is no longer open.
    pub fn subscribe(&mut self, topic: &str) -> bool {
        self.local.subscribe(self.slot, topic)
    }

    /// Unsubscribes this connection from `topic`; returns whether it was subscribed.
    /// Connections leave all their topics when they close.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        self.local.unsubscribe(self.slot, topic)
    }

    /// Whether this connection is subscribed to `topic`.
    pub fn is_subscribed(&self, topic: &str) -> bool {
        self.local
            .entry(self.slot)
            .is_some_and(|e| e.is_subscribed(topic))
    }

    /// Sends a text or binary message to every open connection of the server (this one
    /// included), encoded once. Receivers whose output would pass the hard limit are
    /// closed (see [Slow readers](crate::ServerConfig#slow-readers)).
    pub fn broadcast(&mut self, message: impl Into<Message>) -> Result<(), SendError> {
        let prepared = crate::error::prepare(message.into())?;
        self.broadcast_prepared(&prepared, None)
    }

    /// Sends a text or binary message to every connection subscribed to `topic`, on
    /// every worker, encoded once.
    pub fn publish(&mut self, topic: &str, message: impl Into<Message>) -> Result<(), SendError> {
        let prepared = crate::error::prepare(message.into())?;
        self.broadcast_prepared(&prepared, Some(topic))
    }

    /// Broadcasts (or publishes to `topic`) an already prepared message.
    pub fn broadcast_prepared(
        &mut self,
        prepared: &PreparedMessage,
        topic: Option<&str>,
    ) -> Result<(), SendError> {
        self.local.broadcast_local(prepared, topic);
        let topic: Option<Arc<str>> = topic.map(Arc::from);
        self.shared
            .broadcast(prepared, topic.as_ref(), Some(self.local.worker))
    }

    /// A handle for other threads to send to connections (this one included).
    pub fn sender(&self) -> Sender {
        Sender::new(self.shared.clone())
    }

    fn conn(&mut self) -> Result<&mut duplex_core::Connection, SendError> {
        self.local
            .entry_mut(self.slot)
            .and_then(|e| e.conn_mut())
            .ok_or(SendError::Closed)
    }
}
