//! The memory budget shared by the connections of a server: what all their peers
//! together can make it hold.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// 256 MiB: the most [`MemoryBudget::default_limit`] chooses.
pub const DEFAULT_MEMORY_BUDGET: usize = 256 << 20;

/// What each connection may hold without being counted (16 KiB): the read and write
/// buffers of ordinary traffic. Beyond it, every byte of its buffers is counted, so
/// the memory peers can make a server hold is at most the budget plus this much per
/// connection (which the server's connection limit bounds).
pub const BUDGET_FREE_PER_CONNECTION: usize = 16 << 10;

/// How long the budget may stay exceeded, with the connections that grow paused, before
/// the connection holding the most is shed.
pub const BUDGET_SHED_AFTER: Duration = Duration::from_millis(200);

/// How often a connection that holds counted memory looks at the budget (to resume
/// reading, or to shed itself when elected).
pub(crate) const BUDGET_CHECK: Duration = Duration::from_millis(100);

/// The memory that the peers of a server's connections make it hold: partly received
/// messages, inflated bytes, unparsed input and queued output, counted by the engine
/// where it allocates them and shared by every connection that joins the same budget.
///
/// What happens when the total passes the limit, in order: connections whose partial
/// messages grow stop reading (backpressure: an honest large upload slows down); if the
/// budget stays exceeded for [`BUDGET_SHED_AFTER`], the connection holding the most is
/// failed with close code 1013 ([`Limit::MemoryBudget`](crate::Limit::MemoryBudget)),
/// one at a time; and adapters answer new handshakes with 503 while it is exceeded. A
/// connection holding at most [`BUDGET_FREE_PER_CONNECTION`] is never shed nor paused.
///
/// Server connections join [`MemoryBudget::process_default`] unless their
/// [`EngineConfig`](crate::EngineConfig) names another budget or none; clients join
/// none by default.
///
/// ```
/// use duplex_core::{EngineConfig, MemoryBudget};
///
/// // One budget for every connection of this server, 64 MiB.
/// let budget = MemoryBudget::new(64 << 20);
/// let config = EngineConfig::default().memory_budget(budget.clone());
/// assert_eq!(budget.stats().in_use, 0);
/// assert_eq!(config.budget(duplex_core::Role::Server), Some(&budget));
/// ```
#[derive(Clone)]
pub struct MemoryBudget {
    shared: Arc<Shared>,
}

struct Shared {
    limit: usize,
    in_use: AtomicUsize,
    /// Connections that count something now.
    holders: AtomicUsize,
    shed: AtomicU64,
    /// When the budget was first seen exceeded, in nanoseconds since `epoch`, plus one;
    /// 0 while it is not.
    over_since: AtomicU64,
    epoch: Instant,
    /// The connections that hold (or held) counted memory, for electing whom to shed.
    members: Mutex<Members>,
}

#[derive(Default)]
struct Members {
    seats: Vec<Option<Arc<Member>>>,
    free: Vec<usize>,
}

/// One connection's share, seen by the others.
#[derive(Default)]
pub(crate) struct Member {
    charged: AtomicUsize,
    doomed: AtomicBool,
}

/// What a budget holds and has done, read back with [`MemoryBudget::stats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BudgetStats {
    /// The limit, in bytes.
    pub limit: usize,
    /// Bytes counted now.
    pub in_use: usize,
    /// Connections failed with 1013 to bring the total back under the limit.
    pub shed: u64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes, to share among the connections of one server.
    pub fn new(limit: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                limit,
                in_use: AtomicUsize::new(0),
                holders: AtomicUsize::new(0),
                shed: AtomicU64::new(0),
                over_since: AtomicU64::new(0),
                epoch: Instant::now(),
                members: Mutex::new(Members::default()),
            }),
        }
    }

    /// The budget every server connection of this process joins unless configured
    /// otherwise, of [`default_limit`](Self::default_limit) bytes.
    pub fn process_default() -> &'static MemoryBudget {
        static DEFAULT: OnceLock<MemoryBudget> = OnceLock::new();
        DEFAULT.get_or_init(|| MemoryBudget::new(Self::default_limit()))
    }

    /// [`DEFAULT_MEMORY_BUDGET`] (256 MiB) or an eighth of the memory this process may
    /// use (the machine's, or its cgroup's limit when lower), whichever is lower.
    pub fn default_limit() -> usize {
        match available_memory() {
            Some(bytes) => DEFAULT_MEMORY_BUDGET.min(bytes / 8).max(1 << 20),
            None => DEFAULT_MEMORY_BUDGET,
        }
    }

    /// The limit, in bytes.
    pub fn limit(&self) -> usize {
        self.shared.limit
    }

    /// True while the counted total is above the limit: connections that grow a
    /// message stop reading, and adapters refuse new handshakes with 503.
    pub fn is_exceeded(&self) -> bool {
        self.in_use() > self.shared.limit
    }

    /// Bytes counted now.
    pub fn in_use(&self) -> usize {
        self.shared.in_use.load(Ordering::Relaxed)
    }

    /// The limit, the bytes counted now and the connections shed so far.
    pub fn stats(&self) -> BudgetStats {
        BudgetStats {
            limit: self.shared.limit,
            in_use: self.in_use(),
            shed: self.shared.shed.load(Ordering::Relaxed),
        }
    }

    /// The most that connections under their fair share may take past the limit:
    /// an eighth of it.
    fn ceiling(&self) -> usize {
        self.shared.limit.saturating_add(self.shared.limit / 8)
    }

    /// True when a connection counting `charged` bytes must stop growing: the budget is
    /// exceeded and it holds at least its fair share (the limit divided among the
    /// connections that count something), or the total passed the ceiling (the limit
    /// and an eighth). Connections under their share go on up to the ceiling, so that a
    /// modest message is not starved by large ones.
    pub(crate) fn must_pause(&self, charged: usize) -> bool {
        let in_use = self.in_use();
        if in_use <= self.shared.limit {
            return false;
        }
        let holders = self.shared.holders.load(Ordering::Relaxed).max(1);
        charged >= self.shared.limit / holders || in_use >= self.ceiling()
    }

    /// How much a connection counting `charged` bytes may add before it counts again:
    /// 0 when it must pause, else the room left under the limit or what is left of its
    /// fair share, whichever is more, within `min..=max` (so that it moves in steps
    /// worth counting, and never far past the limit at once).
    pub(crate) fn allowance(&self, charged: usize, min: usize, max: usize) -> usize {
        if self.must_pause(charged) {
            return 0;
        }
        let holders = self.shared.holders.load(Ordering::Relaxed).max(1);
        let share = (self.shared.limit / holders).saturating_sub(charged);
        let below_ceiling = self.ceiling().saturating_sub(self.in_use());
        self.room().max(share.min(below_ceiling)).clamp(min, max)
    }

    /// What may still be counted before the limit.
    pub(crate) fn room(&self) -> usize {
        self.shared.limit.saturating_sub(self.in_use())
    }

    pub(crate) fn count_shed(&self) {
        self.shared.shed.fetch_add(1, Ordering::Relaxed);
    }

    /// Looks at the budget at `now`: when it has been exceeded for [`BUDGET_SHED_AFTER`],
    /// marks the connection holding the most to be shed (it sees the mark at its next
    /// check) and starts the wait again, so that connections are shed one at a time.
    pub(crate) fn review(&self, now: Instant) {
        let shared = &*self.shared;
        let stamp = now.saturating_duration_since(shared.epoch).as_nanos() as u64 + 1;
        if !self.is_exceeded() {
            shared.over_since.store(0, Ordering::Relaxed);
            return;
        }
        let since =
            match shared
                .over_since
                .compare_exchange(0, stamp, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(since) => since,
            };
        if stamp.saturating_sub(since) < BUDGET_SHED_AFTER.as_nanos() as u64 {
            return;
        }
        if shared
            .over_since
            .compare_exchange(since, stamp, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            // Another connection's review got there first.
            return;
        }
        let members = shared.members.lock().unwrap_or_else(|e| e.into_inner());
        let largest = members
            .seats
            .iter()
            .flatten()
            .filter(|m| !m.doomed.load(Ordering::Relaxed))
            .max_by_key(|m| m.charged.load(Ordering::Relaxed));
        if let Some(member) = largest.filter(|m| m.charged.load(Ordering::Relaxed) > 0) {
            member.doomed.store(true, Ordering::Relaxed);
        }
    }

    fn join(&self) -> (usize, Arc<Member>) {
        let member = Arc::new(Member::default());
        let mut members = self
            .shared
            .members
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let index = match members.free.pop() {
            Some(index) => {
                members.seats[index] = Some(member.clone());
                index
            }
            None => {
                members.seats.push(Some(member.clone()));
                members.seats.len() - 1
            }
        };
        (index, member)
    }

    fn leave(&self, index: usize) {
        let mut members = self
            .shared
            .members
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(seat) = members.seats.get_mut(index) {
            *seat = None;
            members.free.push(index);
        }
    }
}

impl PartialEq for MemoryBudget {
    /// The same budget (not merely the same limit).
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Eq for MemoryBudget {}

impl std::fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stats = self.stats();
        f.debug_struct("MemoryBudget")
            .field("limit", &stats.limit)
            .field("in_use", &stats.in_use)
            .field("shed", &stats.shed)
            .finish()
    }
}

/// A connection's place in a budget, taken when it first holds counted memory and
/// given back (with all it counted) when the connection is dropped.
pub(crate) struct Seat {
    budget: MemoryBudget,
    member: Arc<Member>,
    index: usize,
    /// What this connection has counted in the budget.
    charged: usize,
    /// Compressed input not yet inflated, kept while inflating waits for the budget,
    /// and whether it ends the message.
    pub(crate) stash: Option<(bytes::Bytes, bool)>,
}

impl Seat {
    pub(crate) fn new(budget: &MemoryBudget) -> Self {
        let (index, member) = budget.join();
        Self {
            budget: budget.clone(),
            member,
            index,
            charged: 0,
            stash: None,
        }
    }

    pub(crate) fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    pub(crate) fn charged(&self) -> usize {
        self.charged
    }

    /// Counts `charge` bytes for this connection instead of what it counted before.
    pub(crate) fn set_charge(&mut self, charge: usize) {
        let shared = &self.budget.shared;
        match (self.charged, charge) {
            (0, 1..) => {
                shared.holders.fetch_add(1, Ordering::Relaxed);
            }
            (1.., 0) => {
                shared.holders.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
        let in_use = &shared.in_use;
        if charge > self.charged {
            in_use.fetch_add(charge - self.charged, Ordering::Relaxed);
        } else {
            in_use.fetch_sub(self.charged - charge, Ordering::Relaxed);
        }
        self.charged = charge;
        self.member.charged.store(charge, Ordering::Relaxed);
    }

    /// This connection was elected to be shed.
    pub(crate) fn is_doomed(&self) -> bool {
        self.member.doomed.load(Ordering::Relaxed)
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.set_charge(0);
        self.budget.leave(self.index);
    }
}

impl std::fmt::Debug for Seat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seat")
            .field("charged", &self.charged)
            .field("stash", &self.stash.as_ref().map(|(b, _)| b.len()))
            .finish_non_exhaustive()
    }
}

/// The memory this process may use: the machine's, or its cgroup's limit when lower.
fn available_memory() -> Option<usize> {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib.saturating_mul(1024))
        });
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|path| {
        std::fs::read_to_string(path)
            .ok()?
            .trim()
            .parse::<usize>()
            .ok()
    });
    match (total, cgroup) {
        (Some(total), Some(cgroup)) => Some(total.min(cgroup)),
        (total, cgroup) => total.or(cgroup),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seat_gives_back_what_it_counted() {
        let budget = MemoryBudget::new(1 << 20);
        let mut seat = Seat::new(&budget);
        seat.set_charge(300);
        seat.set_charge(1000);
        assert_eq!(budget.in_use(), 1000);
        seat.set_charge(10);
        assert_eq!(budget.in_use(), 10);
        drop(seat);
        assert_eq!(budget.in_use(), 0);
        assert_eq!(budget.shared.members.lock().unwrap().free, vec![0]);
    }

    #[test]
    fn the_largest_holder_is_elected_after_the_grace_time_one_at_a_time() {
        let budget = MemoryBudget::new(1000);
        let mut small = Seat::new(&budget);
        let mut large = Seat::new(&budget);
        small.set_charge(400);
        large.set_charge(700);
        let t0 = Instant::now();
        budget.review(t0);
        assert!(!large.is_doomed(), "not before the grace time");
        budget.review(t0 + BUDGET_SHED_AFTER / 2);
        assert!(!large.is_doomed());
        budget.review(t0 + BUDGET_SHED_AFTER);
        assert!(large.is_doomed() && !small.is_doomed());
        // The next one waits a grace time of its own.
        budget.review(t0 + BUDGET_SHED_AFTER + BUDGET_SHED_AFTER / 2);
        assert!(!small.is_doomed());
        large.set_charge(0);
        budget.review(t0 + BUDGET_SHED_AFTER * 3);
        assert!(!small.is_doomed(), "under the limit again: nobody is shed");
    }

    #[test]
    fn the_default_limit_is_at_most_256_mib() {
        let limit = MemoryBudget::default_limit();
        assert!(
            (1 << 20..=DEFAULT_MEMORY_BUDGET).contains(&limit),
            "{limit}"
        );
    }
}
