//! Graceful shutdown of a server built on duplex-tokio: stop accepting, send 1001
//! (going away) to every open WebSocket, wait for the close handshakes up to a
//! deadline, then drop the connections still open.
//!
//! A [`Shutdown`] is shared by the accept loop and the connection tasks. The accept
//! loop stops when [`Shutdown::initiated`] resolves; each connection is
//! [`track`](Shutdown::track)ed for as long as its task runs; [`Shutdown::shutdown`]
//! does the rest and reports how it went. The same works behind hyper or axum: pass
//! `initiated()` to `axum::serve(..).with_graceful_shutdown` (or stop your hyper accept
//! loop with it) and track the streams the upgrades give.
//!
//! ```
//! use std::time::Duration;
//! use duplex_tokio::{accept, connect, Message, Shutdown};
//! use tokio::net::TcpListener;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let shutdown = Shutdown::new();
//! let listener = TcpListener::bind("127.0.0.1:0").await?;
//! let url = format!("ws://{}/", listener.local_addr()?);
//! let server = shutdown.clone();
//! tokio::spawn(async move {
//!     loop {
//!         let tcp = tokio::select! {
//!             _ = server.initiated() => break, // stop accepting
//!             accepted = listener.accept() => match accepted {
//!                 Ok((tcp, _)) => tcp,
//!                 Err(_) => continue,
//!             },
//!         };
//!         let server = server.clone();
//!         tokio::spawn(async move {
//!             let Ok(mut ws) = accept(tcp).await else { return };
//!             let _tracked = server.track(&ws); // until this task ends
//!             while let Some(Ok(message)) = ws.recv().await {
//!                 if message.is_data() && ws.send(message).await.is_err() {
//!                     break;
//!                 }
//!             }
//!         });
//!     }
//! });
//!
//! let (mut client, _) = connect(&url).await?;
//! client.send(Message::text("hi")).await?;
//! let _ = client.recv().await;
//! let client_task = tokio::spawn(async move { while client.recv().await.is_some() {} });
//! let report = shutdown.shutdown(Duration::from_secs(5)).await;
//! assert_eq!((report.closed, report.dropped), (1, 0));
//! client_task.await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use duplex_core::{CloseCode, CloseFrame};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, watch};

use crate::stream::{CloseHandle, WebSocketStream};

/// How often [`Shutdown::shutdown`] looks again at connections whose tasks still run
/// while waiting (their transport may have closed without the task noticing yet).
const RECHECK: Duration = Duration::from_millis(50);

/// Coordinates the graceful shutdown of one server. Clones share it.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    started: watch::Sender<bool>,
    connections: Mutex<Registry>,
    /// Woken when a tracked connection ends.
    ended: Notify,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            started: watch::Sender::new(false),
            connections: Mutex::default(),
            ended: Notify::new(),
        }
    }
}

#[derive(Debug, Default)]
struct Registry {
    next: u64,
    /// The tracked connections, and whether each was sent 1001 (or tracked after the
    /// shutdown started).
    open: HashMap<u64, (CloseHandle, bool)>,
    /// Connections that were sent 1001 and ended since, whenever the report is asked
    /// for: the order of `initiate` and `shutdown` does not change the count.
    closed: usize,
}

/// What [`Shutdown::shutdown`] saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Connections that were sent 1001 (or were closing already) and ended before the
    /// deadline.
    pub closed: usize,
    /// Connections still open at the deadline, whose transport was dropped.
    pub dropped: usize,
}

/// Keeps a connection in its [`Shutdown`]'s set until dropped (when the connection's
/// task ends).
#[must_use = "the connection is only tracked while this guard lives"]
#[derive(Debug)]
pub struct Tracked {
    inner: Arc<Inner>,
    id: u64,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut registry = self.inner.lock();
        if let Some((_, true)) = registry.open.remove(&self.id) {
            registry.closed += 1;
        }
        drop(registry);
        self.inner.ended.notify_waiters();
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn going_away() -> CloseFrame {
    CloseFrame::new(CloseCode::GoingAway, "server shutting down")
}

impl Shutdown {
    /// A coordinator with no connection and no shutdown started.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tracks `ws` until the returned guard is dropped: keep the guard in the task
    /// that serves the connection. A connection tracked after the shutdown started is
    /// sent 1001 at once.
    pub fn track<S>(&self, ws: &WebSocketStream<S>) -> Tracked
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        self.track_handle(ws.close_handle())
    }

    /// [`track`](Self::track) with a handle from [`WebSocketStream::close_handle`].
    pub fn track_handle(&self, handle: CloseHandle) -> Tracked {
        let mut registry = self.inner.lock();
        let id = registry.next;
        registry.next += 1;
        let initiated = self.is_initiated();
        if initiated {
            handle.start_close(going_away());
        }
        registry.open.insert(id, (handle, initiated));
        Tracked {
            inner: self.inner.clone(),
            id,
        }
    }

    /// True once [`shutdown`](Self::shutdown) (or [`initiate`](Self::initiate)) was
    /// called.
    pub fn is_initiated(&self) -> bool {
        *self.inner.started.borrow()
    }

    /// Resolves once the shutdown has started: what an accept loop waits on to stop
    /// accepting (in `tokio::select!`, or `axum::serve(..).with_graceful_shutdown`).
    pub async fn initiated(&self) {
        let mut started = self.inner.started.subscribe();
        // The sender lives in `self`, so this only ends when the value turns true.
        let _ = started.wait_for(|started| *started).await;
    }

    /// Starts the shutdown without waiting: accept loops stop, and every tracked
    /// connection is sent 1001.
    pub fn initiate(&self) {
        self.inner.started.send_replace(true);
        let mut registry = self.inner.lock();
        for (handle, sent) in registry.open.values_mut() {
            handle.start_close(going_away());
            *sent = true;
        }
    }

    /// The number of tracked connections whose task still runs.
    pub fn open_connections(&self) -> usize {
        self.inner.lock().open.len()
    }

    /// Shuts down: [`initiate`](Self::initiate)s, waits up to `grace` for the tracked
    /// connections to end (their close handshakes are bounded by the engine's close
    /// timeout as well), then drops the transport of those still open, and reports.
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        self.initiate();
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let ended = self.inner.ended.notified();
            let remaining = {
                let registry = self.inner.lock();
                registry
                    .open
                    .values()
                    .filter(|(handle, _)| !handle.is_finished())
                    .count()
            };
            if remaining == 0 || tokio::time::Instant::now() >= deadline {
                break;
            }
            let recheck = (tokio::time::Instant::now() + RECHECK).min(deadline);
            tokio::select! {
                _ = ended => {}
                _ = tokio::time::sleep_until(recheck) => {}
            }
        }
        let mut registry = self.inner.lock();
        let mut dropped = 0;
        let mut finished = 0;
        for (handle, sent) in registry.open.values_mut() {
            // Counted here, once: not again when the guard drops.
            *sent = false;
            if handle.is_finished() {
                // Its transport is closed; its task is about to drop the guard.
                finished += 1;
            } else {
                handle.abort();
                dropped += 1;
            }
        }
        ShutdownReport {
            closed: registry.closed + finished,
            dropped,
        }
    }
}
