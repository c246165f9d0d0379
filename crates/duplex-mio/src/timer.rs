//! Deadlines of a worker's connections: a heap of (deadline, slot, generation).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// A min-heap of deadlines. Entries are never removed early: a connection remembers the
/// deadline it scheduled, and an entry that no longer matches is skipped when it comes
/// due (or dropped by [`Timers::retain`] when stale entries pile up).
#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize, u32)>>,
}

impl Timers {
    pub(crate) fn push(&mut self, deadline: Instant, slot: usize, generation: u32) {
        self.heap.push(Reverse((deadline, slot, generation)));
    }

    /// The earliest deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((deadline, _, _))| *deadline)
    }

    /// Takes the earliest entry if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, usize, u32)> {
        match self.heap.peek() {
            Some(Reverse((deadline, _, _))) if *deadline <= now => {
                self.heap.pop().map(|Reverse(entry)| entry)
            }
            _ => None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Keeps only the entries `live` accepts.
    pub(crate) fn retain(&mut self, mut live: impl FnMut(Instant, usize, u32) -> bool) {
        self.heap.retain(|Reverse((d, s, g))| live(*d, *s, *g));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_due_entries_earliest_first() {
        let now = Instant::now();
        let mut timers = Timers::default();
        timers.push(now + Duration::from_secs(2), 2, 0);
        timers.push(now, 1, 0);
        timers.push(now + Duration::from_secs(9), 3, 0);
        assert_eq!(timers.next_deadline(), Some(now));
        let later = now + Duration::from_secs(3);
        assert_eq!(timers.pop_due(later).map(|e| e.1), Some(1));
        assert_eq!(timers.pop_due(later).map(|e| e.1), Some(2));
        assert_eq!(timers.pop_due(later), None);
        timers.retain(|_, slot, _| slot != 3);
        assert_eq!(timers.len(), 0);
    }
}
