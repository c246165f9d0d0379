//! The connections of a worker: a slab of entries with generations, their states,
//! their topics, and the engine's write-limit rule applied to output that other
//! connections or threads queue.

use std::collections::{BTreeSet, HashMap};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;
use std::time::Instant;

use std::io::{self, IoSlice, Write};

use bytes::{Buf, Bytes};
use duplex_core::{Connection, Message, PreparedMessage};
use duplex_handshake::ServerHandshake;
use mio::net::TcpStream;

use crate::server::ConnectionId;
use crate::timer::Tick;

/// Where a connection is in its life.
pub(crate) enum State {
    /// Reading the opening request (boxed: most entries are open connections, and the
    /// slot table is sized for its largest state).
    Handshake(Box<Handshaking>),
    /// Accepted: the engine runs it.
    Open { conn: Box<Connection> },
    /// Writing a rejection response; then `Draining`.
    Rejecting { deadline: Instant },
    /// A rejection was written and our side shut down: reading and discarding until the
    /// peer closes, the deadline passes or `left` more bytes were discarded (the engine's
    /// linger policy; an open connection's engine runs it itself).
    Draining { deadline: Instant, left: usize },
}

/// A connection still reading its opening request.
pub(crate) struct Handshaking {
    pub(super) reader: ServerHandshake,
    pub(super) deadline: Instant,
}

/// A client's address in 16 bytes (an IPv6 one boxed) instead of `SocketAddr`'s 32:
/// every connection keeps one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Peer {
    V4(SocketAddrV4),
    V6(Box<SocketAddrV6>),
}

impl From<SocketAddr> for Peer {
    fn from(addr: SocketAddr) -> Self {
        match addr {
            SocketAddr::V4(v4) => Self::V4(v4),
            SocketAddr::V6(v6) => Self::V6(Box::new(v6)),
        }
    }
}

impl From<&Peer> for SocketAddr {
    fn from(peer: &Peer) -> Self {
        match peer {
            Peer::V4(v4) => SocketAddr::V4(*v4),
            Peer::V6(v6) => SocketAddr::V6(**v6),
        }
    }
}

/// One socket a worker holds. Kept small: a worker holds one per connection, idle ones
/// included.
pub(crate) struct Entry {
    pub(super) socket: TcpStream,
    pub(crate) peer: Peer,
    pub(crate) state: State,
    /// HTTP response bytes not yet written (the 101 or a rejection); they go before the
    /// engine's output, and the buffer is freed once written.
    pub(super) response: Option<Box<Bytes>>,
    /// Readiness not consumed yet (mio is edge-triggered): read until `WouldBlock`.
    pub(super) readable: bool,
    /// The last write hit `WouldBlock`: wait for a writable event.
    pub(super) write_blocked: bool,
    /// The peer closed its sending side.
    pub(super) eof: bool,
    /// The poller reported the peer's end of input or an error: reads go on until they
    /// say so (see [`Worker::drive`](super::Worker)).
    pub(super) hangup: bool,
    /// In the ready queue.
    pub(super) queued: bool,
    /// In the dirty list and not settled since.
    pub(super) dirty: bool,
    /// Over the connection limit: answer with 503.
    pub(super) reject: bool,
    /// The topics this connection is subscribed to (boxed: most connections have none,
    /// and a pointer is all they pay).
    // Boxed on purpose: 8 bytes in every entry instead of a `Vec`'s 24.
    #[allow(clippy::box_collection)]
    pub(crate) topics: Option<Box<Vec<Arc<str>>>>,
    /// The deadline this entry has in the timer heap (0: none).
    pub(super) timer: Tick,
}

impl Entry {
    /// Whether reading from the socket is wanted now.
    pub(super) fn can_read(&self) -> bool {
        match &self.state {
            State::Handshake(_) | State::Draining { .. } => true,
            State::Open { conn, .. } => conn.wants_read(),
            State::Rejecting { .. } => false,
        }
    }

    /// Writes what it can of the pending response; the buffer is freed once all of it
    /// is written. Call only with a response pending.
    pub(super) fn write_response(&mut self) -> io::Result<usize> {
        let Some(response) = &mut self.response else {
            return Ok(0);
        };
        let n = self.socket.write(response)?;
        response.advance(n);
        if response.is_empty() {
            self.response = None;
        }
        Ok(n)
    }

    /// Writes what it can of the engine's pending output in one vectored write and
    /// tells the engine; `Ok(0)` when nothing is pending (or the entry is not open).
    pub(super) fn write_output(&mut self) -> io::Result<usize> {
        let State::Open { conn } = &mut self.state else {
            return Ok(0);
        };
        if conn.output_len() == 0 {
            return Ok(0);
        }
        // Eight slices cover most writes (a header and a shared payload per frame); a
        // bigger array only when they are all used, since filling one costs.
        let mut few = [IoSlice::new(&[]); 8];
        let k = conn.pending_output_vectored(&mut few);
        let written = if k < few.len() {
            self.socket.write_vectored(&few[..k])
        } else {
            let mut many = [IoSlice::new(&[]); 64];
            let k = conn.pending_output_vectored(&mut many);
            self.socket.write_vectored(&many[..k])
        };
        written.inspect(|&n| conn.consume_output(n))
    }

    /// Whether the connection is subscribed to `topic`.
    pub(crate) fn is_subscribed(&self, topic: &str) -> bool {
        self.topics
            .as_ref()
            .is_some_and(|t| t.iter().any(|t| &**t == topic))
    }

    pub(crate) fn conn(&self) -> Option<&Connection> {
        match &self.state {
            State::Open { conn, .. } => Some(conn),
            _ => None,
        }
    }

    pub(crate) fn conn_mut(&mut self) -> Option<&mut Connection> {
        match &mut self.state {
            State::Open { conn, .. } => Some(conn),
            _ => None,
        }
    }
}

pub(super) struct Slot {
    pub(super) generation: u32,
    pub(super) entry: Option<Entry>,
}

/// The connections of a worker and their topics: what a [`Context`](crate::Context) reaches.
pub(crate) struct Local {
    pub(crate) worker: usize,
    pub(super) slots: Vec<Slot>,
    pub(super) free: Vec<usize>,
    pub(super) count: usize,
    /// Each topic's subscribers, in slot order: a publish visits the connection table
    /// front to back.
    pub(crate) topics: HashMap<Arc<str>, BTreeSet<usize>>,
    /// Connections given output outside their own turn.
    pub(super) dirty: Vec<usize>,
}

impl Local {
    pub(crate) fn entry(&self, slot: usize) -> Option<&Entry> {
        self.slots.get(slot).and_then(|s| s.entry.as_ref())
    }

    pub(crate) fn entry_mut(&mut self, slot: usize) -> Option<&mut Entry> {
        self.slots.get_mut(slot).and_then(|s| s.entry.as_mut())
    }

    /// The entry `id` names, if it still exists.
    pub(super) fn lookup(&self, id: ConnectionId) -> Option<usize> {
        let slot = id.slot as usize;
        let s = self.slots.get(slot)?;
        (s.generation == id.generation && s.entry.is_some() && id.worker as usize == self.worker)
            .then_some(slot)
    }

    pub(crate) fn id(&self, slot: usize) -> ConnectionId {
        ConnectionId {
            worker: self.worker as u32,
            slot: slot as u32,
            generation: self.slots.get(slot).map_or(0, |s| s.generation),
        }
    }

    pub(super) fn insert(&mut self, entry: Entry) -> usize {
        self.count += 1;
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot].entry = Some(entry);
                slot
            }
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    entry: Some(entry),
                });
                self.slots.len() - 1
            }
        }
    }

    pub(super) fn remove(&mut self, slot: usize) -> Option<Entry> {
        let s = self.slots.get_mut(slot)?;
        let entry = s.entry.take()?;
        s.generation = s.generation.wrapping_add(1);
        self.free.push(slot);
        self.count -= 1;
        Some(entry)
    }

    pub(crate) fn mark_dirty(&mut self, slot: usize) {
        if let Some(entry) = self.entry_mut(slot) {
            if !entry.dirty {
                entry.dirty = true;
                self.dirty.push(slot);
            }
        }
    }

    /// Queues a message the sender cannot hold back (broadcast, `Sender`) under the
    /// engine's hard-limit rule; a connection that passes it is marked for closing.
    pub(crate) fn queue_forced(&mut self, slot: usize, message: Message) {
        self.queue_with(slot, |conn| conn.send_forced(message));
    }

    pub(super) fn queue_with(
        &mut self,
        slot: usize,
        queue: impl FnOnce(&mut Connection) -> Result<(), duplex_core::Error>,
    ) {
        let Some(entry) = self.entry_mut(slot) else {
            return;
        };
        let Some(conn) = entry.conn_mut() else {
            return;
        };
        // Refused when not open; past the hard limit the engine fails the connection
        // (its peer does not read) and reports it at the next turn.
        let _ = queue(conn);
        self.mark_dirty(slot);
    }

    /// Sends a prepared frame to this worker's open connections (or a topic's).
    pub(crate) fn broadcast_local(&mut self, prepared: &PreparedMessage, topic: Option<&str>) {
        let Local {
            slots,
            topics,
            dirty,
            ..
        } = self;
        match topic {
            Some(topic) => {
                let Some(members) = topics.get(topic) else {
                    return;
                };
                for &slot in members {
                    deliver(slots, dirty, slot, prepared);
                }
            }
            None => {
                for slot in 0..slots.len() {
                    deliver(slots, dirty, slot, prepared);
                }
            }
        }
    }

    pub(crate) fn subscribe(&mut self, slot: usize, topic: &str) -> bool {
        let Some(entry) = self.entry_mut(slot) else {
            return false;
        };
        if !matches!(entry.state, State::Open { .. }) {
            return false;
        }
        if entry.is_subscribed(topic) {
            return true;
        }
        let name: Arc<str> = match self.topics.get_key_value(topic) {
            Some((name, _)) => name.clone(),
            None => Arc::from(topic),
        };
        if let Some(entry) = self.entry_mut(slot) {
            entry.topics.get_or_insert_default().push(name.clone());
        }
        self.topics.entry(name).or_default().insert(slot);
        true
    }

    pub(crate) fn unsubscribe(&mut self, slot: usize, topic: &str) -> bool {
        let Some(entry) = self.entry_mut(slot) else {
            return false;
        };
        let Some(topics) = &mut entry.topics else {
            return false;
        };
        let Some(at) = topics.iter().position(|t| &**t == topic) else {
            return false;
        };
        topics.swap_remove(at);
        if topics.is_empty() {
            entry.topics = None;
        }
        if let Some(set) = self.topics.get_mut(topic) {
            set.remove(&slot);
            if set.is_empty() {
                self.topics.remove(topic);
            }
        }
        true
    }

    pub(super) fn unsubscribe_all(&mut self, slot: usize) {
        let topics = match self.entry_mut(slot) {
            Some(entry) => entry.topics.take().map_or_else(Vec::new, |t| *t),
            None => return,
        };
        for topic in topics {
            if let Some(set) = self.topics.get_mut(&topic) {
                set.remove(&slot);
                if set.is_empty() {
                    self.topics.remove(&topic);
                }
            }
        }
    }
}

/// Queues a prepared frame on one connection under the hard-limit rule of
/// [`Local::queue_forced`] and, when it is all the connection has to send, writes it at
/// once: the connection is in cache now, and a second pass over thousands of receivers
/// would meet them all cold again. What is left (a partial write, an error, other
/// output) goes to the dirty list for the worker's flush.
fn deliver(slots: &mut [Slot], dirty: &mut Vec<usize>, slot: usize, prepared: &PreparedMessage) {
    let Some(entry) = slots.get_mut(slot).and_then(|s| s.entry.as_mut()) else {
        return;
    };
    let State::Open { conn } = &mut entry.state else {
        return;
    };
    let alone = conn.output_len() == 0;
    let overflowed = match conn.send_prepared_forced(prepared) {
        Ok(()) => false,
        // Past the hard limit: the engine failed the connection (its peer does not
        // read); the worker's turn reports it and closes the socket.
        Err(duplex_core::Error::LimitExceeded(_)) => true,
        // Not open any more: nothing was queued.
        Err(_) => return,
    };
    if alone && !overflowed && !entry.write_blocked && entry.response.is_none() {
        match entry.write_output() {
            Ok(_) => {
                if let Some(conn) = entry.conn_mut().filter(|c| c.output_len() == 0) {
                    // As at the end of a turn that drains a connection (`Worker::settle`).
                    conn.shrink_buffers();
                    return;
                }
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                entry.write_blocked = true;
            }
            // The worker's flush meets the error again and fails the connection.
            Err(_) => {}
        }
    }
    if !entry.dirty {
        entry.dirty = true;
        dirty.push(slot);
    }
}

#[cfg(test)]
mod tests {
    use std::io::IoSlice;

    use duplex_core::Role;

    use super::*;

    /// The engine of the connection in `slot`.
    fn conn(local: &mut Local, slot: usize) -> &mut Connection {
        local.entry_mut(slot).and_then(Entry::conn_mut).unwrap()
    }

    /// The output each of the first `n` connections has queued.
    fn output_lens(local: &mut Local, n: usize) -> Vec<usize> {
        (0..n).map(|slot| conn(local, slot).output_len()).collect()
    }

    fn local_with_open_connections(n: usize) -> (Local, Vec<std::net::TcpStream>) {
        local_with_config(n, duplex_core::EngineConfig::default())
    }

    fn local_with_config(
        n: usize,
        config: duplex_core::EngineConfig,
    ) -> (Local, Vec<std::net::TcpStream>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut local = Local {
            worker: 0,
            slots: Vec::new(),
            free: Vec::new(),
            count: 0,
            topics: HashMap::new(),
            dirty: Vec::new(),
        };
        let mut peers = Vec::new();
        for _ in 0..n {
            let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (server, peer) = listener.accept().unwrap();
            server.set_nonblocking(true).unwrap();
            local.insert(Entry {
                socket: TcpStream::from_std(server),
                peer: peer.into(),
                state: State::Open {
                    conn: Box::new(Connection::new(Role::Server, config.clone())),
                },
                response: None,
                readable: false,
                write_blocked: false,
                eof: false,
                hangup: false,
                queued: false,
                dirty: false,
                reject: false,
                topics: None,
                timer: 0,
            });
            peers.push(client);
        }
        (local, peers)
    }

    /// The address of the first pending output slice of a connection.
    fn first_slice(local: &mut Local, slot: usize) -> (*const u8, usize) {
        let conn = conn(local, slot);
        let mut slices = [IoSlice::new(&[]); 4];
        assert_eq!(conn.pending_output_vectored(&mut slices), 1);
        (slices[0].as_ptr(), slices[0].len())
    }

    /// Marks every connection as blocked on writing, so that output stays queued.
    fn block_writes(local: &mut Local) {
        for slot in 0..local.slots.len() {
            local.entry_mut(slot).unwrap().write_blocked = true;
        }
    }

    /// What the connections' peers received, each read until `len` bytes arrived.
    fn received(peers: &mut [std::net::TcpStream], len: usize) -> Vec<Vec<u8>> {
        peers
            .iter_mut()
            .map(|peer| {
                peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                    .unwrap();
                let mut got = vec![0u8; len];
                std::io::Read::read_exact(peer, &mut got).unwrap();
                got
            })
            .collect()
    }

    #[test]
    fn broadcast_shares_one_encoded_frame_among_receivers() {
        let (mut local, _peers) = local_with_open_connections(3);
        block_writes(&mut local);
        let prepared = PreparedMessage::new(Message::binary(vec![5u8; 4096])).unwrap();
        local.broadcast_local(&prepared, None);
        let frame = (prepared.frame().as_ptr(), prepared.frame().len());
        for slot in 0..3 {
            assert_eq!(
                first_slice(&mut local, slot),
                frame,
                "slot {slot} copied the frame"
            );
        }
        assert_eq!(local.dirty.len(), 3);
    }

    #[test]
    fn a_broadcast_is_written_at_once_to_connections_with_nothing_else_queued() {
        let (mut local, mut peers) = local_with_open_connections(3);
        // The third already has output waiting: the frame queues behind it.
        conn(&mut local, 2).send(Message::text("first")).unwrap();
        let prepared = PreparedMessage::new(Message::text("all")).unwrap();
        local.broadcast_local(&prepared, None);
        assert_eq!(output_lens(&mut local, 3), [0, 0, 12]);
        assert_eq!(
            local.dirty,
            [2],
            "only the third waits for the worker's flush"
        );
        let got = received(&mut peers[..2], 5);
        assert!(got.iter().all(|g| g == &[0x81, 3, b'a', b'l', b'l']));
    }

    #[test]
    fn topics_are_left_on_unsubscribe_and_publish_reaches_only_subscribers() {
        let (mut local, _peers) = local_with_open_connections(3);
        assert!(local.subscribe(0, "a"));
        assert!(local.subscribe(1, "a"));
        assert!(local.subscribe(1, "a"), "subscribing twice is harmless");
        assert_eq!(local.topics["a"].len(), 2);
        assert!(local.unsubscribe(0, "a"));
        assert!(!local.unsubscribe(0, "a"));
        let prepared = PreparedMessage::new(Message::text("t")).unwrap();
        block_writes(&mut local);
        local.broadcast_local(&prepared, Some("a"));
        assert_eq!(output_lens(&mut local, 3), [0, 3, 0]);
        local.unsubscribe_all(1);
        assert!(local.topics.is_empty());
    }

    #[test]
    fn forced_messages_stop_at_the_hard_limit() {
        let config = duplex_core::EngineConfig::default().write_buffer_hard_limit(10_000);
        let (mut local, _peers) = local_with_config(1, config);
        block_writes(&mut local);
        let chunk = PreparedMessage::new(Message::binary(vec![0u8; 4000])).unwrap();
        local.broadcast_local(&chunk, None);
        local.broadcast_local(&chunk, None);
        assert!(conn(&mut local, 0).state().is_open());
        local.broadcast_local(&chunk, None);
        // 8,008 queued plus the next 4,004-byte frame would pass 10,000: the engine
        // failed the connection, and its transport is to be closed now.
        let failure = conn(&mut local, 0).failure();
        assert!(
            matches!(
                failure,
                Some(duplex_core::Error::LimitExceeded(duplex_core::LimitError {
                    limit: duplex_core::Limit::WriteBuffer,
                    actual: 12_012,
                    max: 10_000,
                    ..
                }))
            ),
            "{failure:?}"
        );
        assert_eq!(
            conn(&mut local, 0).poll_transport(Instant::now()),
            duplex_core::TransportAction::Close
        );
        // Nothing more is queued once it overflowed.
        local.queue_forced(0, Message::binary(vec![0u8; 10]));
        assert_eq!(conn(&mut local, 0).output_len(), 8008);
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_slot_stays_small() {
        // Every connection, idle ones included, holds one slot (plus the engine's boxed
        // `Connection`); the idle-memory budget is 1 KiB in all.
        // (mio's socket carries 12 more bytes of checks in debug builds.)
        let size = std::mem::size_of::<Slot>() - std::mem::size_of::<TcpStream>();
        assert!(size <= 96, "a slot is {size} bytes besides its socket");
        assert!(std::mem::size_of::<State>() <= 24);
    }

    #[test]
    fn a_written_response_frees_its_buffer() {
        let (mut local, peers) = local_with_open_connections(1);
        let entry = local.entry_mut(0).unwrap();
        entry.response = Some(Box::new(Bytes::from_static(b"HTTP/1.1 101 x\r\n\r\n")));
        let mut peer = peers.into_iter().next().unwrap();
        assert_eq!(entry.write_response().unwrap(), 18);
        assert!(entry.response.is_none(), "the response buffer is kept");
        let mut got = [0u8; 18];
        std::io::Read::read_exact(&mut peer, &mut got).unwrap();
        assert_eq!(&got, b"HTTP/1.1 101 x\r\n\r\n");
    }
}
