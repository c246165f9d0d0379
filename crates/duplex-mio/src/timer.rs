//! Deadlines of a worker's connections: a heap of (deadline, slot, generation).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// A deadline as the timer heap keeps it: nanoseconds after the worker's base instant,
/// at least 1, so that 0 can mean "no deadline" in a connection's entry. Sixteen bytes a
/// heap entry instead of thirty-two with an `Instant` and a `usize` slot.
pub(crate) type Tick = u64;

/// A min-heap of deadlines. Entries are never removed early: a connection remembers the
/// deadline it scheduled, and an entry that no longer matches is skipped when it comes
/// due (or dropped by [`Timers::retain`] when stale entries pile up).
#[derive(Debug)]
pub(crate) struct Timers {
    base: Instant,
    heap: BinaryHeap<Reverse<(Tick, u32, u32)>>,
}

impl Timers {
    pub(crate) fn new(base: Instant) -> Self {
        Self {
            base,
            heap: BinaryHeap::new(),
        }
    }

    /// `deadline` as a tick (deadlines before the base are due at once).
    pub(crate) fn tick(&self, deadline: Instant) -> Tick {
        let nanos = deadline.saturating_duration_since(self.base).as_nanos();
        u64::try_from(nanos).unwrap_or(u64::MAX).max(1)
    }

    fn instant(&self, tick: Tick) -> Instant {
        self.base + Duration::from_nanos(tick)
    }

    pub(crate) fn push(&mut self, tick: Tick, slot: usize, generation: u32) {
        // Slots are below 2^32: they are a connection's index in a worker's table and
        // share its poll token with the generation.
        self.heap.push(Reverse((tick, slot as u32, generation)));
    }

    /// The earliest deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap
            .peek()
            .map(|Reverse((tick, _, _))| self.instant(*tick))
    }

    /// Takes the earliest entry if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Tick, usize, u32)> {
        let now = self.tick(now);
        match self.heap.peek() {
            Some(Reverse((tick, _, _))) if *tick <= now => self
                .heap
                .pop()
                .map(|Reverse((tick, slot, generation))| (tick, slot as usize, generation)),
            _ => None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Keeps only the entries `live` accepts.
    pub(crate) fn retain(&mut self, mut live: impl FnMut(Tick, usize, u32) -> bool) {
        self.heap
            .retain(|Reverse((t, s, g))| live(*t, *s as usize, *g));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_due_entries_earliest_first() {
        let now = Instant::now();
        let mut timers = Timers::new(now);
        let at = |secs| timers.tick(now + Duration::from_secs(secs));
        let (two, zero, nine) = (at(2), at(0), at(9));
        timers.push(two, 2, 0);
        timers.push(zero, 1, 0);
        timers.push(nine, 3, 0);
        // A deadline at the base itself is kept one nanosecond later (tick 1).
        assert_eq!(timers.next_deadline(), Some(now + Duration::from_nanos(1)));
        let later = now + Duration::from_secs(3);
        assert_eq!(timers.pop_due(later).map(|e| e.1), Some(1));
        assert_eq!(timers.pop_due(later), Some((two, 2, 0)));
        assert_eq!(timers.pop_due(later), None);
        timers.retain(|_, slot, _| slot != 3);
        assert_eq!(timers.len(), 0);
    }

    #[test]
    fn ticks_round_trip_and_are_never_zero() {
        let base = Instant::now();
        let timers = Timers::new(base);
        let deadline = base + Duration::from_millis(1234) + Duration::from_nanos(5);
        let tick = timers.tick(deadline);
        assert_eq!(timers.instant(tick), deadline);
        assert_eq!(timers.tick(base), 1);
        assert_eq!(timers.tick(base - Duration::from_secs(1)), 1);
        assert!(timers.tick(deadline + Duration::from_nanos(1)) > tick);
    }
}
