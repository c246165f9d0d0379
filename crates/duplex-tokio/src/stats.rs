//! Cheap per-server counters: open connections, messages and bytes each way, closes by
//! code, readable at any time.
//!
//! ```
//! use duplex_tokio::{accept, connect, CloseCode, CloseFrame, Message, ServerStats};
//! use tokio::net::TcpListener;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let stats = ServerStats::new();
//! let listener = TcpListener::bind("127.0.0.1:0").await?;
//! let url = format!("ws://{}/", listener.local_addr()?);
//! let server = stats.clone();
//! let task = tokio::spawn(async move {
//!     let (tcp, _) = listener.accept().await?;
//!     let mut ws = accept(tcp).await?;
//!     server.attach(&ws);
//!     while let Some(Ok(message)) = ws.recv().await {
//!         if message.is_data() {
//!             ws.send(message).await?;
//!         }
//!     }
//!     Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
//! });
//! let (mut ws, _) = connect(&url).await?;
//! ws.send(Message::text("hello")).await?;
//! ws.recv().await;
//! ws.close(Some(CloseFrame::new(CloseCode::Normal, "bye"))).await?;
//! task.await?.map_err(|e| e.to_string())?;
//! let now = stats.snapshot();
//! assert_eq!((now.opened, now.open), (1, 0));
//! assert_eq!((now.messages_received, now.messages_sent), (1, 1));
//! assert_eq!(now.closes_received.get(&1000), Some(&1));
//! // Server connections share the process's memory budget by default.
//! assert_eq!(now.memory.map(|m| m.shed), Some(0));
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};

use duplex_core::{BudgetStats, Connection, MemoryBudget, Message};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::stream::WebSocketStream;

/// Counters shared by the connections of one server (or any group of connections).
/// Clones share the counters. Counting costs a relaxed atomic add per message and per
/// read or write; closes take a lock once per connection.
#[derive(Clone, Debug, Default)]
pub struct ServerStats {
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    opened: AtomicU64,
    closed: AtomicU64,
    messages_received: AtomicU64,
    messages_sent: AtomicU64,
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
    codes: Mutex<Codes>,
    /// The memory budget of the first connection attached that has one.
    budget: OnceLock<MemoryBudget>,
}

#[derive(Debug, Default)]
struct Codes {
    received: BTreeMap<u16, u64>,
    sent: BTreeMap<u16, u64>,
    without_close: u64,
}

/// The counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Connections attached so far.
    pub opened: u64,
    /// Connections open now (attached and not yet dropped).
    pub open: u64,
    /// Data messages (text and binary) received.
    pub messages_received: u64,
    /// Data messages sent (each broadcast counts once per connection).
    pub messages_sent: u64,
    /// Bytes read from the transports (frames as on the wire, compressed or not).
    pub bytes_received: u64,
    /// Bytes written to the transports.
    pub bytes_sent: u64,
    /// Close frames received, by code.
    pub closes_received: BTreeMap<u16, u64>,
    /// Close frames sent (written to the transport), by code.
    pub closes_sent: BTreeMap<u16, u64>,
    /// Connections that ended without a close frame with a code either way (as 1006
    /// or 1005 would be reported).
    pub closed_without_close_frame: u64,
    /// The memory budget the attached connections join (see
    /// [`MemoryBudget`](duplex_core::MemoryBudget)): its limit, the bytes counted now
    /// and the connections shed; `None` before a connection with a budget is attached.
    pub memory: Option<BudgetStats>,
}

impl ServerStats {
    /// Counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts `ws` from now on, until it is dropped.
    pub fn attach<S: AsyncRead + AsyncWrite>(&self, ws: &WebSocketStream<S>) {
        self.counters.opened.fetch_add(1, Relaxed);
        ws.set_counters(self.counters.clone());
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let c = &self.counters;
        let codes = c.codes.lock().unwrap_or_else(|p| p.into_inner());
        let opened = c.opened.load(Relaxed);
        StatsSnapshot {
            opened,
            open: opened.saturating_sub(c.closed.load(Relaxed)),
            messages_received: c.messages_received.load(Relaxed),
            messages_sent: c.messages_sent.load(Relaxed),
            bytes_received: c.bytes_received.load(Relaxed),
            bytes_sent: c.bytes_sent.load(Relaxed),
            closes_received: codes.received.clone(),
            closes_sent: codes.sent.clone(),
            closed_without_close_frame: codes.without_close,
            memory: c.budget.get().map(MemoryBudget::stats),
        }
    }
}

impl Counters {
    pub(crate) fn note_budget(&self, budget: &MemoryBudget) {
        let _ = self.budget.set(budget.clone());
    }

    pub(crate) fn read(&self, n: usize) {
        self.bytes_received.fetch_add(n as u64, Relaxed);
    }

    pub(crate) fn written(&self, n: usize) {
        self.bytes_sent.fetch_add(n as u64, Relaxed);
    }

    pub(crate) fn received(&self, message: &Message) {
        if message.is_data() {
            self.messages_received.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn sent(&self) {
        self.messages_sent.fetch_add(1, Relaxed);
    }

    /// The connection is gone: count it closed, with its close frames' codes.
    pub(crate) fn ended(&self, conn: &Connection) {
        let mut codes = self.codes.lock().unwrap_or_else(|p| p.into_inner());
        let received = conn.received_close_frame().map(|f| u16::from(f.code));
        // Only a close frame that was written counts as sent.
        let sent = conn.written_close_frame().map(|f| u16::from(f.code));
        if let Some(code) = received {
            *codes.received.entry(code).or_default() += 1;
        }
        if let Some(code) = sent {
            *codes.sent.entry(code).or_default() += 1;
        }
        if received.is_none() && sent.is_none() {
            codes.without_close += 1;
        }
        drop(codes);
        self.closed.fetch_add(1, Relaxed);
    }
}
