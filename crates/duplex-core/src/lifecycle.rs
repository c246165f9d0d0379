//! A connection's life: the state it is in and the deadlines that bound each state.
//!
//! Every rule about when a connection ends lives here and in the methods of
//! [`Connection`](crate::Connection) that move it between states; the adapters only
//! carry out what the engine decides (write, close the socket, sleep until the earliest
//! deadline).

use std::time::Instant;

/// Where a connection is in its life (RFC 6455 section 7).
///
/// ```text
///                 close(frame, now)                 the peer's Close
///     Open ───────────────────────────> CloseSent ─────────────────────> Closed
///       │                                                                 ^
///       │  the peer's Close (our reply is queued)        our reply written │
///       └──────────────────────────────> CloseReceived ──────────────────────┘
///
///     Open, CloseSent, CloseReceived ── protocol error, limit, deadline, ──> Failed
///                                       the transport ending early
/// ```
///
/// Leaving `Open` arms the close deadline: whatever the peer does, the transport is
/// closed within [`close_timeout`](crate::EngineConfig::close_timeout) of that moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// Our close frame is queued or sent; the peer's has not arrived. Messages from the
    /// peer are still delivered; nothing more can be sent.
    CloseSent,
    /// The peer's close frame arrived first and our reply is queued, not yet written.
    CloseReceived,
    /// Both close frames were exchanged: the connection closed cleanly.
    Closed,
    /// The connection failed: the peer broke the protocol or a limit, a deadline passed,
    /// or the transport ended without a close handshake.
    Failed,
}

impl State {
    /// True while messages may still be sent.
    pub fn is_open(self) -> bool {
        self == Self::Open
    }

    /// True once the connection is over, cleanly or not.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Closed | Self::Failed)
    }

    /// Whether the engine may go from `self` to `to`.
    pub(crate) fn may_become(self, to: State) -> bool {
        use State::*;
        matches!(
            (self, to),
            (Open, CloseSent | CloseReceived | Failed)
                | (CloseSent, Closed | Failed)
                | (CloseReceived, Closed | Failed)
        )
    }
}

/// The deadlines of a connection, one per kind, kept in one table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimerKind {
    /// Send a keepalive ping: nothing arrived for the keepalive interval.
    Keepalive,
    /// Our keepalive ping went unanswered (nothing at all arrived since it was sent).
    PongWait,
    /// Nothing arrived for the idle timeout.
    Idle,
    /// The close handshake, then the closing of the transport, must be done.
    Close,
    /// Output is pending and the transport has taken almost none of it.
    WriteStall,
    /// Shutting down and draining the transport after the connection ended
    /// ([`Linger`](crate::Linger)) must be done.
    Linger,
    /// The connection holds memory counted in its server's
    /// [`MemoryBudget`](crate::MemoryBudget): time to look at the budget again (to
    /// resume reading, elect whom to shed, or be shed).
    Budget,
}

impl TimerKind {
    const ALL: [TimerKind; 7] = [
        TimerKind::Keepalive,
        TimerKind::PongWait,
        TimerKind::Idle,
        TimerKind::Close,
        TimerKind::WriteStall,
        TimerKind::Linger,
        TimerKind::Budget,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// One optional deadline per [`TimerKind`].
#[derive(Clone, Debug, Default)]
pub(crate) struct TimerTable {
    at: [Option<Instant>; 7],
}

impl TimerTable {
    #[inline]
    pub(crate) fn get(&self, kind: TimerKind) -> Option<Instant> {
        self.at[kind.index()]
    }

    #[inline]
    pub(crate) fn set(&mut self, kind: TimerKind, deadline: Instant) {
        self.at[kind.index()] = Some(deadline);
    }

    #[inline]
    pub(crate) fn clear(&mut self, kind: TimerKind) {
        self.at[kind.index()] = None;
    }

    #[inline]
    pub(crate) fn is_armed(&self, kind: TimerKind) -> bool {
        self.at[kind.index()].is_some()
    }

    /// The earliest deadline of all, if any is armed.
    #[inline]
    pub(crate) fn earliest(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }

    /// The first kind (in table order) whose deadline is at or before `now`.
    #[inline]
    pub(crate) fn expired(&self, now: Instant) -> Option<TimerKind> {
        TimerKind::ALL
            .into_iter()
            .find(|kind| self.get(*kind).is_some_and(|at| at <= now))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn only_the_drawn_transitions_are_allowed() {
        use State::*;
        let all = [Open, CloseSent, CloseReceived, Closed, Failed];
        let allowed: Vec<(State, State)> = all
            .iter()
            .flat_map(|a| all.iter().map(move |b| (*a, *b)))
            .filter(|(a, b)| a.may_become(*b))
            .collect();
        assert_eq!(
            allowed,
            vec![
                (Open, CloseSent),
                (Open, CloseReceived),
                (Open, Failed),
                (CloseSent, Closed),
                (CloseSent, Failed),
                (CloseReceived, Closed),
                (CloseReceived, Failed),
            ]
        );
        assert!(Closed.is_terminal() && Failed.is_terminal() && !CloseSent.is_terminal());
    }

    #[test]
    fn the_table_reports_the_earliest_and_the_expired_deadline() {
        let t0 = Instant::now();
        let mut table = TimerTable::default();
        assert_eq!(table.earliest(), None);
        table.set(TimerKind::Idle, t0 + Duration::from_secs(9));
        table.set(TimerKind::Close, t0 + Duration::from_secs(3));
        assert_eq!(table.earliest(), Some(t0 + Duration::from_secs(3)));
        assert_eq!(table.expired(t0 + Duration::from_secs(2)), None);
        assert_eq!(
            table.expired(t0 + Duration::from_secs(3)),
            Some(TimerKind::Close)
        );
        table.clear(TimerKind::Close);
        assert_eq!(
            table.expired(t0 + Duration::from_secs(10)),
            Some(TimerKind::Idle)
        );
        assert!(!table.is_armed(TimerKind::Close));
    }
}
