//! One worker thread: a `mio::Poll` over its connections, their timers, and the
//! commands other threads send it. This file is the event loop and each connection's
//! turn (read, dispatch to the handler, write, settle, timers, shutdown); `local.rs`
//! holds the connection table and topics, `handshake.rs` the opening handshake phase,
//! `guard.rs` the panic guards around handler code.

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::Shutdown;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use duplex_core::{CloseCode, CloseFrame, Message, TransportAction};
use duplex_handshake::ServerHandshake;
use mio::{Events, Interest, Poll, Token};

use crate::config::ServerConfig;
use crate::context::Context;
use crate::error::ConnectionError;
use crate::server::{Accepted, Command, ConnectionId, Handler, Shared, WORKER_WAKER, WorkerSetup};
use crate::timer::Timers;

mod guard;
mod handshake;
mod local;

use guard::{drop_handler, guarded};
pub(crate) use local::{Entry, Handshaking, Local, State};

/// Whether a read that filled less than the buffer means the socket is drained, so that
/// no further read is needed to see `WouldBlock` (one system call fewer per turn). True
/// where mio's readiness is edge-triggered by every arrival (epoll, kqueue): data that
/// comes after the read raises a new event. Not relied on when the poller already
/// reported the end of input or an error (that event does not come again), nor on
/// Windows, where mio emulates readiness.
const SHORT_READ_DRAINS: bool = cfg!(not(windows));

/// Reads of at least this much that the engine wants (the rest of a large frame, or a
/// frame like the last large one) go straight into its buffer instead of the shared one.
const DIRECT_READ_MIN: usize = 16 << 10;

/// A worker thread's event loop.
pub(crate) struct Worker<'a, F, H> {
    poll: Poll,
    commands: Receiver<Command>,
    accepted: Receiver<Accepted>,
    shared: Arc<Shared>,
    config: &'a ServerConfig,
    /// Shared by every connection of the worker.
    engine: Arc<duplex_core::EngineConfig>,
    factory: &'a F,
    local: Local,
    handlers: Vec<Option<H>>,
    read_buf: Box<[u8]>,
    timers: Timers,
    ready: Vec<(usize, u32)>,
    /// The time this turn of the loop started, for the engine's deadlines (one clock read
    /// per turn, not per call).
    now: Instant,
    /// Commands may remain after this turn's share.
    more_commands: bool,
    shutdown_deadline: Option<Instant>,
}

impl<'a, F, H> Worker<'a, F, H>
where
    F: Fn(ConnectionId) -> H,
    H: Handler,
{
    pub(crate) fn new(
        index: usize,
        setup: WorkerSetup,
        shared: Arc<Shared>,
        config: &'a ServerConfig,
        factory: &'a F,
    ) -> Self {
        Self {
            poll: setup.poll,
            commands: setup.commands,
            accepted: setup.accepted,
            shared,
            config,
            engine: Arc::new(config.engine_config()),
            factory,
            local: Local {
                worker: index,
                slots: Vec::new(),
                free: Vec::new(),
                count: 0,
                topics: HashMap::new(),
                dirty: Vec::new(),
            },
            handlers: Vec::new(),
            read_buf: vec![0u8; config.read_buffer_size].into_boxed_slice(),
            timers: Timers::new(Instant::now()),
            ready: Vec::new(),
            now: Instant::now(),
            more_commands: false,
            shutdown_deadline: None,
        }
    }

    pub(crate) fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(self.config.events_capacity);
        let result = loop {
            let now = Instant::now();
            if self.shutdown_deadline.is_none() && self.shared.shutdown.load(Ordering::Acquire) {
                self.begin_shutdown(now);
            }
            if let Some(deadline) = self.shutdown_deadline {
                if self.local.count == 0 {
                    break Ok(());
                }
                if now >= deadline {
                    break Ok(());
                }
            }
            let timeout = if !self.ready.is_empty() || self.more_commands {
                Some(Duration::ZERO)
            } else {
                let next = match (self.timers.next_deadline(), self.shutdown_deadline) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                // Round up so a deadline is never polled for a few microseconds early.
                next.map(|d| d.saturating_duration_since(now) + Duration::from_millis(1))
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => break Err(error),
            }
            self.now = Instant::now();
            for event in events.iter() {
                if event.token() == WORKER_WAKER {
                    continue;
                }
                let (slot, generation) = token_slot(event.token());
                // A late event for a connection that ended must not reach the next
                // connection in its slot.
                if self.local.id(slot).generation != generation {
                    continue;
                }
                let Some(entry) = self.local.entry_mut(slot) else {
                    continue;
                };
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    entry.readable = true;
                }
                if event.is_read_closed() || event.is_error() {
                    entry.hangup = true;
                }
                if event.is_writable() || event.is_write_closed() || event.is_error() {
                    entry.write_blocked = false;
                }
                self.enqueue(slot);
            }
            self.take_accepted();
            self.take_commands();
            // One turn over the ready connections; those with more to read re-queue
            // themselves for the next turn.
            let ready = std::mem::take(&mut self.ready);
            for (slot, generation) in ready {
                let Some(s) = self.local.slots.get_mut(slot) else {
                    continue;
                };
                if s.generation != generation {
                    continue;
                }
                if let Some(entry) = s.entry.as_mut() {
                    entry.queued = false;
                    self.serve(slot, |worker| worker.drive(slot));
                }
            }
            self.now = Instant::now();
            self.run_timers(self.now);
            self.process_dirty();
        };
        self.abort_all();
        result
    }

    /// Runs one connection's work; a panic in it (a bug, ours or a handler's that
    /// escaped its own guard) drops that connection only, and the worker goes on.
    fn serve(&mut self, slot: usize, work: impl FnOnce(&mut Self)) {
        if panic::catch_unwind(AssertUnwindSafe(|| work(self))).is_ok() {
            return;
        }
        let id = self.local.id(slot);
        eprintln!("duplex-mio: serving connection {id} panicked; the connection is dropped");
        if self.read_buf.is_empty() {
            // The panic struck while the shared read buffer was lent out.
            self.read_buf = vec![0u8; self.config.read_buffer_size].into_boxed_slice();
        }
        // Its handler may be the cause: drop it without further calls.
        let _ = panic::catch_unwind(AssertUnwindSafe(|| {
            if let Some(handler) = self.handlers.get_mut(slot).and_then(Option::take) {
                drop_handler(id, handler);
            }
            self.final_close(slot);
        }));
    }

    fn enqueue(&mut self, slot: usize) {
        let generation = self.local.id(slot).generation;
        if let Some(entry) = self.local.entry_mut(slot) {
            if !entry.queued {
                entry.queued = true;
                self.ready.push((slot, generation));
            }
        }
    }

    // ----- intake -----

    fn take_accepted(&mut self) {
        loop {
            let accepted = match self.accepted.try_recv() {
                Ok(accepted) => accepted,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            };
            if self.shutdown_deadline.is_some() {
                self.release_socket();
                continue;
            }
            let Accepted {
                mut stream,
                peer,
                reject,
            } = accepted;
            let now = Instant::now();
            let slot = self
                .local
                .free
                .last()
                .copied()
                .unwrap_or(self.local.slots.len());
            let generation = self.local.id(slot).generation;
            let registered = self.poll.registry().register(
                &mut stream,
                slot_token(slot, generation),
                Interest::READABLE | Interest::WRITABLE,
            );
            if registered.is_err() {
                self.release_socket();
                continue;
            }
            let entry = Entry {
                socket: stream,
                peer: peer.into(),
                state: State::Handshake(Box::new(Handshaking {
                    reader: ServerHandshake::new(self.config.handshake_limits),
                    deadline: now + self.config.handshake_timeout,
                })),
                response: None,
                readable: true,
                write_blocked: false,
                eof: false,
                hangup: false,
                queued: false,
                dirty: false,
                reject,
                topics: None,
                timer: 0,
            };
            let inserted = self.local.insert(entry);
            debug_assert_eq!(inserted, slot);
            if self.handlers.len() <= slot {
                self.handlers.resize_with(slot + 1, || None);
            }
            self.schedule(slot);
            self.enqueue(slot);
        }
    }

    /// Forgets a socket in the shared counts (it was dropped).
    fn release_socket(&self) {
        self.shared.active.fetch_sub(1, Ordering::AcqRel);
        if let Some(handle) = self.shared.workers.get(self.local.worker) {
            handle.load.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn take_commands(&mut self) {
        self.more_commands = false;
        for _ in 0..self.config.command_queue {
            let command = match self.commands.try_recv() {
                Ok(command) => command,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            };
            match command {
                Command::Send(id, message) => {
                    if let Some(slot) = self.local.lookup(id) {
                        self.local.queue_forced(slot, message);
                    }
                }
                Command::Close {
                    id,
                    frame,
                    overtake,
                } => {
                    if let Some(slot) = self.local.lookup(id) {
                        if let Some(conn) = self.local.entry_mut(slot).and_then(Entry::conn_mut) {
                            // Already closing, closed or failed: nothing to start.
                            let _ = if overtake {
                                conn.close_now(frame, Instant::now())
                            } else {
                                conn.close(frame, Instant::now())
                            };
                            self.local.mark_dirty(slot);
                        }
                    }
                }
                Command::Broadcast { prepared, topic } => {
                    self.local.broadcast_local(&prepared, topic.as_deref());
                }
            }
        }
        self.more_commands = true;
    }

    // ----- one connection's turn -----

    /// Writes what is pending, then reads up to the budget and runs the handler.
    fn drive(&mut self, slot: usize) {
        self.flush(slot);
        let mut budget = self.config.read_budget;
        let mut first = true;
        let mut buf = std::mem::take(&mut self.read_buf);
        while let Some(entry) = self.local.entry_mut(slot) {
            if !entry.readable || !entry.can_read() {
                break;
            }
            if budget == 0 && !first {
                // Fairness: the rest waits for the next turn.
                break;
            }
            first = false;
            // A large frame in progress (or one like the last) is read straight into the
            // engine's buffer, whole, so that it reaches the handler without a copy;
            // anything else goes through the shared buffer, so idle connections hold none.
            let wanted = match &entry.state {
                State::Open { conn } => conn.input_wanted(),
                _ => 0,
            };
            let direct = wanted >= DIRECT_READ_MIN;
            let (result, room) = match &mut entry.state {
                State::Open { conn } if direct => {
                    let input = conn.input_buffer(wanted);
                    (read_spare(&entry.socket, input, wanted), wanted)
                }
                _ => (entry.socket.read(&mut buf), buf.len()),
            };
            match result {
                Ok(0) => {
                    entry.readable = false;
                    entry.eof = true;
                    self.on_eof(slot);
                }
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    if SHORT_READ_DRAINS && n < room && !entry.hangup {
                        // The socket had less than the room: it is drained, and more
                        // input brings a new readiness event. No read to see `WouldBlock`.
                        entry.readable = false;
                    }
                    if direct {
                        self.dispatch(slot);
                    } else {
                        self.on_data(slot, &buf[..n]);
                    }
                    self.flush(slot);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    entry.readable = false;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    entry.readable = false;
                    self.transport_failed(slot, &error);
                }
            }
        }
        self.read_buf = buf;
        self.settle(slot);
    }

    fn on_data(&mut self, slot: usize, data: &[u8]) {
        let Some(entry) = self.local.entry_mut(slot) else {
            return;
        };
        match &mut entry.state {
            State::Handshake(handshaking) => match handshaking.reader.feed(data) {
                Ok(None) => {}
                Ok(Some((request, rest))) => self.on_request(slot, request, &rest),
                Err(error) => self.reject(slot, duplex_handshake::Decision::peer_error(error)),
            },
            State::Open { conn, .. } => {
                conn.receive(data);
                self.dispatch(slot);
            }
            State::Draining { left, .. } => {
                *left = left.saturating_sub(data.len());
                if *left == 0 {
                    self.final_close(slot);
                }
            }
            State::Rejecting { .. } => {}
        }
    }

    fn on_eof(&mut self, slot: usize) {
        let Some(entry) = self.local.entry_mut(slot) else {
            return;
        };
        match &mut entry.state {
            State::Handshake(_) | State::Draining { .. } => self.final_close(slot),
            State::Open { conn, .. } => {
                conn.receive_eof();
                self.dispatch(slot);
            }
            State::Rejecting { .. } => {}
        }
    }

    /// A callback of an open connection's handler panicked: the handler is dropped
    /// (no more calls, no `on_close`) and the connection closes with 1011.
    fn handler_panicked(&mut self, slot: usize) {
        let id = self.local.id(slot);
        if let Some(handler) = self.handlers.get_mut(slot).and_then(Option::take) {
            drop_handler(id, handler);
        }
        if let Some(conn) = self.local.entry_mut(slot).and_then(Entry::conn_mut) {
            // Fails only if our close frame is already queued, which is as good.
            let frame = CloseFrame::new(CloseCode::InternalError, "internal error");
            let _ = conn.close(Some(frame), Instant::now());
            self.local.mark_dirty(slot);
        }
    }

    /// Takes every event out of the engine and hands it to the handler.
    fn dispatch(&mut self, slot: usize) {
        let now = self.now;
        loop {
            let Some(entry) = self.local.entry_mut(slot) else {
                return;
            };
            let State::Open { conn } = &mut entry.state else {
                return;
            };
            let Some(event) = conn.poll_event(now) else {
                return;
            };
            if let Ok(Message::Close(_)) = &event {
                // The engine keeps the peer's close frame for `on_close`.
                continue;
            }
            let Some(handler) = self.handlers.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            let id = self.local.id(slot);
            let called = guarded(id, "a callback", || {
                let mut ctx = Context::new(&mut self.local, &self.shared, slot);
                match event {
                    Ok(Message::Ping(payload)) => handler.on_ping(&mut ctx, payload),
                    Ok(Message::Pong(payload)) => handler.on_pong(&mut ctx, payload),
                    Ok(message) => handler.on_message(&mut ctx, message),
                    Err(error) => handler.on_error(&mut ctx, &ConnectionError::WebSocket(error)),
                }
            });
            if called.is_none() {
                self.handler_panicked(slot);
                continue;
            }
            // Keep replies flowing during a burst: the engine says when pongs or
            // replies should leave before more input is handled.
            if self
                .local
                .entry_mut(slot)
                .and_then(Entry::conn_mut)
                .is_some_and(|conn| conn.wants_flush())
            {
                self.flush(slot);
            }
        }
    }

    /// Writes the pending response and engine output until done or `WouldBlock`.
    fn flush(&mut self, slot: usize) {
        let Some(entry) = self.local.entry_mut(slot) else {
            return;
        };
        let error = loop {
            if entry.write_blocked {
                return;
            }
            let result = if entry.response.is_some() {
                entry.write_response()
            } else {
                match &entry.state {
                    State::Open { conn } if conn.output_len() > 0 => entry.write_output(),
                    _ => return,
                }
            };
            match result {
                Ok(0) => break io::Error::from(io::ErrorKind::WriteZero),
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    entry.write_blocked = true;
                    return;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => break error,
            }
        };
        self.transport_failed(slot, &error);
    }

    /// After a turn, a timer or new output: close what is done, note what is drained,
    /// re-queue what has more to read, and set the timer.
    fn settle(&mut self, slot: usize) {
        let now = self.now;
        let linger = self.engine.deadlines().linger;
        if let Some(conn) = self.local.entry_mut(slot).and_then(Entry::conn_mut) {
            if conn.output_len() > 0 {
                // Output queued outside a timed call (a send, a broadcast) arms the
                // write-stall deadline here; an empty output has none to arm.
                conn.handle_timeout(now);
                self.dispatch(slot);
                self.flush(slot);
            }
        }
        let Some(entry) = self.local.entry_mut(slot) else {
            return;
        };
        match &mut entry.state {
            State::Open { conn, .. } => {
                if conn.is_transport_ending() {
                    if !self.end_transport(slot) {
                        return;
                    }
                } else if !entry.readable && conn.output_len() == 0 {
                    // Released at the end of every turn that drains the connection, busy
                    // or not: the allocator hands the same cache-warm blocks to the next
                    // turn of any connection, where buffers kept per connection are cold
                    // by their next use (kept: 1,000 x 64 KiB echoes took 32 -> 55 us of
                    // server CPU each, 1,000 x 16 B 4.9-5.1 -> 5.2-5.6 us).
                    conn.shrink_buffers();
                }
            }
            State::Rejecting { .. } if entry.response.is_none() => {
                if entry.eof || entry.socket.shutdown(Shutdown::Write).is_err() {
                    return self.final_close(slot);
                }
                entry.state = State::Draining {
                    deadline: now + linger.time,
                    left: linger.max_bytes,
                };
            }
            _ => {}
        }
        let Some(entry) = self.local.entry_mut(slot) else {
            return;
        };
        // Flushed and settled: a pending entry in the dirty list has nothing left to do.
        entry.dirty = false;
        if entry.readable && entry.can_read() {
            self.enqueue(slot);
        }
        self.schedule(slot);
    }

    /// A read or write failed: an open connection's engine decides what it means (a
    /// reset is the peer leaving) and reports it through the handler's `on_error`; any
    /// other connection is dropped.
    fn transport_failed(&mut self, slot: usize, error: &io::Error) {
        let now = self.now;
        let Some(entry) = self.local.entry_mut(slot) else {
            return;
        };
        match &mut entry.state {
            State::Open { conn } => {
                conn.transport_failed(error, now);
                self.dispatch(slot);
                if self.end_transport(slot) {
                    self.schedule(slot);
                }
            }
            _ => self.final_close(slot),
        }
    }

    /// Does what the engine decides for an open connection's transport: shut our side
    /// down, drain (reading goes on; the engine discards what arrives), or close it. The
    /// handler gets `on_close` when the transport starts to end. Returns false once the
    /// connection is gone.
    fn end_transport(&mut self, slot: usize) -> bool {
        let now = self.now;
        loop {
            let Some(entry) = self.local.entry_mut(slot) else {
                return false;
            };
            let State::Open { conn } = &mut entry.state else {
                return true;
            };
            match conn.poll_transport(now) {
                TransportAction::Continue => return true,
                TransportAction::ShutdownWrite => {
                    match entry.socket.shutdown(Shutdown::Write) {
                        Ok(()) => conn.shutdown_done(),
                        Err(error) => conn.transport_failed(&error, now),
                    }
                    self.finish_handler(slot);
                }
                TransportAction::Drain if entry.eof => conn.receive_eof(),
                TransportAction::Drain => {
                    if entry.readable {
                        self.enqueue(slot);
                    }
                    return true;
                }
                TransportAction::Close => {
                    self.finish_handler(slot);
                    self.final_close(slot);
                    return false;
                }
            }
        }
    }

    /// The connection's handler is done: `on_close` with the peer's close frame (if it
    /// sent one) and the handler dropped, once; its topics are left.
    fn finish_handler(&mut self, slot: usize) {
        self.local.unsubscribe_all(slot);
        let Some(mut handler) = self.handlers.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let id = self.local.id(slot);
        let peer_close = self.local.entry(slot).and_then(Entry::conn).map(|conn| {
            conn.received_close_frame()
                .filter(|frame| frame.code != CloseCode::NoStatus)
                .cloned()
        });
        if let Some(frame) = peer_close {
            guarded(id, "on_close", || {
                let mut ctx = Context::new(&mut self.local, &self.shared, slot);
                handler.on_close(&mut ctx, frame);
            });
        }
        drop_handler(id, handler);
    }

    /// Drops the socket and forgets the connection.
    fn final_close(&mut self, slot: usize) {
        if let Some(handler) = self.handlers.get_mut(slot).and_then(Option::take) {
            drop_handler(self.local.id(slot), handler);
        }
        self.local.unsubscribe_all(slot);
        if let Some(mut entry) = self.local.remove(slot) {
            let _ = self.poll.registry().deregister(&mut entry.socket);
            drop(entry);
            self.release_socket();
        }
    }

    // ----- timers -----

    fn schedule(&mut self, slot: usize) {
        let generation = self.local.id(slot).generation;
        let Some(entry) = self.local.entry_mut(slot) else {
            return;
        };
        let deadline = match &entry.state {
            State::Handshake(handshaking) => Some(handshaking.deadline),
            State::Rejecting { deadline } | State::Draining { deadline, .. } => Some(*deadline),
            State::Open { conn, .. } => conn.poll_timeout(),
        };
        if let Some(deadline) = deadline {
            let tick = self.timers.tick(deadline);
            if entry.timer == 0 || tick < entry.timer {
                entry.timer = tick;
                self.timers.push(tick, slot, generation);
            }
        }
    }

    fn run_timers(&mut self, now: Instant) {
        while let Some((tick, slot, generation)) = self.timers.pop_due(now) {
            let Some(s) = self.local.slots.get_mut(slot) else {
                continue;
            };
            if s.generation != generation {
                continue;
            }
            let Some(entry) = s.entry.as_mut() else {
                continue;
            };
            if entry.timer != tick {
                continue;
            }
            entry.timer = 0;
            self.serve(slot, |worker| worker.on_timer(slot, now));
        }
        // Entries of closed connections and moved deadlines wait in the heap until due;
        // rebuild it when they outnumber the live ones.
        if self.timers.len() > 2 * self.local.count + 64 {
            let slots = &self.local.slots;
            self.timers.retain(|tick, slot, generation| {
                slots.get(slot).is_some_and(|s| {
                    s.generation == generation && s.entry.as_ref().is_some_and(|e| e.timer == tick)
                })
            });
        }
    }

    fn on_timer(&mut self, slot: usize, now: Instant) {
        let Some(entry) = self.local.entry_mut(slot) else {
            return;
        };
        match &mut entry.state {
            State::Handshake(handshaking) => {
                if now >= handshaking.deadline {
                    return self.final_close(slot);
                }
            }
            State::Rejecting { deadline } | State::Draining { deadline, .. } => {
                if now >= *deadline {
                    return self.final_close(slot);
                }
            }
            State::Open { conn, .. } => {
                conn.handle_timeout(now);
                self.dispatch(slot);
                self.flush(slot);
            }
        }
        self.settle(slot);
    }

    /// Flushes connections that got output from elsewhere, and closes those that
    /// overflowed.
    fn process_dirty(&mut self) {
        while let Some(slot) = self.local.dirty.pop() {
            if let Some(entry) = self.local.entry_mut(slot) {
                if !std::mem::take(&mut entry.dirty) {
                    // Settled in its own turn since it was marked.
                    continue;
                }
                self.serve(slot, |worker| {
                    worker.flush(slot);
                    worker.settle(slot);
                });
            }
        }
    }

    // ----- shutdown -----

    fn begin_shutdown(&mut self, now: Instant) {
        self.shutdown_deadline = Some(now + self.config.shutdown_timeout);
        for slot in 0..self.local.slots.len() {
            let Some(entry) = self.local.entry_mut(slot) else {
                continue;
            };
            match &mut entry.state {
                State::Open { conn, .. } => {
                    let frame = CloseFrame::new(CloseCode::GoingAway, "server shutting down");
                    let _ = conn.close(Some(frame), now);
                    self.local.mark_dirty(slot);
                }
                State::Draining { .. } => {}
                State::Handshake(_) | State::Rejecting { .. } => self.final_close(slot),
            }
        }
        self.process_dirty();
    }

    /// Drops every connection (open ones get `on_close`).
    fn abort_all(&mut self) {
        for slot in 0..self.local.slots.len() {
            let open = matches!(
                self.local.entry(slot).map(|e| &e.state),
                Some(State::Open { .. })
            );
            if open {
                self.finish_handler(slot);
            }
            self.final_close(slot);
        }
        while let Ok(_accepted) = self.accepted.try_recv() {
            self.release_socket();
        }
    }
}

/// Reads from `socket` into the spare room of `buf`, at most `max` bytes, and appends
/// what was read; the room is not zeroed first (a large read buffer would be zeroed on
/// every read otherwise).
#[allow(unsafe_code)]
fn read_spare(socket: &mio::net::TcpStream, buf: &mut BytesMut, max: usize) -> io::Result<usize> {
    let len = buf.len();
    let spare = buf.spare_capacity_mut();
    let take = spare.len().min(max);
    let n = socket2::SockRef::from(socket).recv(&mut spare[..take])?;
    assert!(
        n <= take,
        "recv reported more bytes than it was given room for"
    );
    // SAFETY: `recv` wrote the first `n` bytes of the spare room (`n` is at most the
    // room it was given, checked above), and the spare room starts right after the
    // buffer's `len` initialized bytes, so the first `len + n` bytes are initialized.
    unsafe { buf.set_len(len + n) };
    Ok(n)
}

/// The poll token of a slot's connection: the slot and its generation, so that an event
/// for a connection that ended is told apart from one for the slot's next connection.
fn slot_token(slot: usize, generation: u32) -> Token {
    Token((slot & 0xFFFF_FFFF) | ((generation as usize) << 32))
}

fn token_slot(token: Token) -> (usize, u32) {
    (token.0 & 0xFFFF_FFFF, (token.0 >> 32) as u32)
}
