//! A deterministic two-endpoint simulator: a client and a server engine wired together
//! by an in-memory transport, with a clock the test advances. No thread, no socket, no
//! sleep: a deadline of minutes is tested in microseconds, the same way every run.

use std::time::{Duration, Instant};

use crate::{Connection, EngineConfig, Error, Message, Role, TransportAction};

/// One endpoint and what its transport does.
pub(crate) struct End {
    pub conn: Connection,
    /// Every event the engine reported, in order.
    pub events: Vec<Result<Message, Error>>,
    /// How many of the peer's bytes this end reads per step (`None`: all of them);
    /// `Some(0)` is a peer that stopped reading.
    pub reads_per_step: Option<usize>,
    /// The transport was closed by this end (the engine asked for it).
    pub transport_closed: Option<Instant>,
    /// This end shut down its sending side (the engine asked for it).
    pub shut_down: Option<Instant>,
    /// The peer's transport ended and this end was told.
    pub saw_eof: bool,
}

impl End {
    fn new(role: Role, config: EngineConfig) -> Self {
        Self {
            conn: Connection::new(role, config),
            events: Vec::new(),
            reads_per_step: None,
            transport_closed: None,
            shut_down: None,
            saw_eof: false,
        }
    }

    fn poll_all(&mut self, now: Instant) {
        if self.transport_closed.is_some() {
            return;
        }
        while let Some(event) = self.conn.poll_event(now) {
            self.events.push(event);
        }
    }

    /// The data messages received so far.
    pub fn messages(&self) -> Vec<&Message> {
        self.events
            .iter()
            .filter_map(|e| e.as_ref().ok())
            .filter(|m| m.is_data())
            .collect()
    }

    /// The errors reported so far.
    pub fn errors(&self) -> Vec<&Error> {
        self.events
            .iter()
            .filter_map(|e| e.as_ref().err())
            .collect()
    }
}

/// A client and a server joined by a lossless in-memory transport.
pub(crate) struct Pair {
    pub client: End,
    pub server: End,
    pub now: Instant,
}

impl Pair {
    pub fn new(client: EngineConfig, server: EngineConfig) -> Self {
        let now = Instant::now();
        let mut pair = Self {
            client: End::new(Role::Client, client),
            server: End::new(Role::Server, server),
            now,
        };
        pair.step();
        pair
    }

    /// The end of `role`.
    pub fn end(&self, role: Role) -> &End {
        match role {
            Role::Client => &self.client,
            Role::Server => &self.server,
        }
    }

    /// True once `role`'s transport is closed (for [`Pair::run_until`]).
    pub fn closed(role: Role) -> impl FnMut(&Pair) -> bool {
        move |pair| pair.end(role).transport_closed.is_some()
    }

    /// The end of `role`, and the other one.
    pub fn ends(&mut self, role: Role) -> (&mut End, &mut End) {
        match role {
            Role::Client => (&mut self.client, &mut self.server),
            Role::Server => (&mut self.server, &mut self.client),
        }
    }

    /// Moves bytes both ways (as far as each reader reads), delivers events, and closes
    /// transports the engines are done with, until nothing changes.
    pub fn step(&mut self) {
        let mut to_server = self.server.reads_per_step.unwrap_or(usize::MAX);
        let mut to_client = self.client.reads_per_step.unwrap_or(usize::MAX);
        for _ in 0..64 {
            let moved = transfer(&mut self.client, &mut self.server, &mut to_server, self.now)
                + transfer(&mut self.server, &mut self.client, &mut to_client, self.now);
            let closed = close_if_wanted(&mut self.client, &mut self.server, self.now)
                | close_if_wanted(&mut self.server, &mut self.client, self.now);
            if moved == 0 && !closed {
                break;
            }
        }
        for end in [&mut self.client, &mut self.server] {
            if end.transport_closed.is_none() {
                end.conn.handle_timeout(self.now);
            }
        }
    }

    /// Advances the clock by `by`, stopping at every deadline on the way to run it.
    pub fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        loop {
            let next = [&self.client, &self.server]
                .into_iter()
                .filter(|e| e.transport_closed.is_none())
                .filter_map(|e| e.conn.poll_timeout())
                .filter(|t| *t <= end)
                .min();
            self.now = next.unwrap_or(end).max(self.now);
            for end in [&mut self.client, &mut self.server] {
                if end.transport_closed.is_none() {
                    end.conn.handle_timeout(self.now);
                    end.poll_all(self.now);
                }
            }
            self.step();
            if next.is_none() {
                break;
            }
        }
    }

    /// Advances in steps of `tick` until `done` holds or `limit` passed; returns the
    /// time it took (or `None`).
    pub fn run_until(
        &mut self,
        tick: Duration,
        limit: Duration,
        mut done: impl FnMut(&Pair) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        while self.now - start <= limit {
            if done(self) {
                return Some(self.now - start);
            }
            self.advance(tick);
        }
        None
    }
}

/// Moves what `from` has written to `to`, as far as `to` still reads this step.
fn transfer(from: &mut End, to: &mut End, budget: &mut usize, now: Instant) -> usize {
    if from.transport_closed.is_some() {
        return 0;
    }
    let mut moved = 0;
    while *budget > 0 && from.conn.output_len() > 0 {
        let chunk = from.conn.pending_output();
        let n = chunk.len().min(*budget);
        *budget -= n;
        if to.transport_closed.is_none() {
            to.conn.receive(&chunk[..n]);
        }
        from.conn.consume_output(n);
        moved += n;
    }
    if to.reads_per_step == Some(0) {
        // A peer that does not read does not process what it may have received either.
        return moved;
    }
    to.poll_all(now);
    moved
}

/// Does what `end`'s engine asks of its transport (the driver contract of
/// `Connection::poll_transport`): shutting down our side or closing it ends the peer's
/// input.
fn close_if_wanted(end: &mut End, peer: &mut End, now: Instant) -> bool {
    if end.transport_closed.is_some() {
        return false;
    }
    match end.conn.poll_transport(now) {
        TransportAction::Continue | TransportAction::Drain => return false,
        TransportAction::ShutdownWrite => {
            end.conn.shutdown_done();
            end.shut_down = Some(now);
        }
        TransportAction::Close => end.transport_closed = Some(now),
    }
    if peer.transport_closed.is_none() && !peer.saw_eof {
        peer.saw_eof = true;
        peer.conn.receive_eof();
        peer.poll_all(now);
    }
    true
}
