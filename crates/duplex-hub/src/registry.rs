//! The node's table of topics with local subscribers, and the ordered, gap-free
//! delivery to them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use duplex_core::PreparedMessage;

use crate::subscriber::{Resumed, Shared};
use crate::{
    Backend, Change, Delivery, Event, HubConfig, HubError, Loss, Position, Stored, Stretch,
};

/// "Before the first message of whatever epoch comes next": where a node starts on a
/// topic without history, and where it goes on after its history was lost (epochs are
/// never 0).
const START: Position = Position {
    epoch: 0,
    offset: 0,
};

/// What [`Registry::add`] answers: the topic's shared name, the position live delivery
/// starts after, and for a resume whether it recovered.
pub(crate) type Added = (Arc<str>, Option<Position>, Option<Resumed>);

/// What an async caller read from the backend before [`Registry::add`], so that adding
/// does not wait on the backend (the blocking call is made only when the node moved
/// past what was read meanwhile).
#[derive(Default)]
pub(crate) struct Prefetch {
    /// The topic's latest position (read when the topic is new on this node).
    pub(crate) latest: Option<Result<Option<Position>, HubError>>,
    /// The history after the resume position, up to the replay limit.
    pub(crate) replay: Option<Result<Stretch, HubError>>,
}

pub(crate) struct Registry {
    pub(crate) config: HubConfig,
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) presence: crate::presence::Local,
    topics: Mutex<HashMap<Arc<str>, Arc<Topic>>>,
    ids: AtomicU64,
}

struct Topic {
    name: Arc<str>,
    state: Mutex<TopicState>,
}

struct Member {
    sub: Arc<Shared>,
    /// Messages at or before this position are not delivered to this member (it got
    /// them by replay, or resumed from a position ahead of this node).
    floor: Option<Position>,
}

#[derive(Default)]
struct TopicState {
    /// The last position delivered to this node's subscribers.
    last: Option<Position>,
    /// Messages after `last` that the node knows of but could not read yet (the
    /// backend did not answer): retried on each delivery and sync of the topic, and
    /// reported lost only after [`HubConfig::gap_timeout`].
    gap: Option<Gap>,
    members: Vec<Member>,
    /// Set when the topic left the table (its last member left).
    removed: bool,
}

/// A stretch of history the node has not been able to read yet.
#[derive(Clone, Copy)]
struct Gap {
    /// When the first read failed.
    since: Instant,
    /// The last position known to exist (inclusive).
    upto: Position,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    pub(crate) fn new(config: HubConfig, backend: Arc<dyn Backend>) -> Self {
        Self {
            config,
            backend,
            presence: crate::presence::Local::default(),
            topics: Mutex::default(),
            ids: AtomicU64::new(1),
        }
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn watched(&self) -> Vec<Arc<str>> {
        lock(&self.topics).keys().cloned().collect()
    }

    pub(crate) fn is_watched(&self, topic: &str) -> bool {
        lock(&self.topics).contains_key(topic)
    }

    fn get(&self, topic: &str) -> Option<Arc<Topic>> {
        lock(&self.topics).get(topic).cloned()
    }

    /// Adds a member; with `after`, replays what it missed first. Returns the topic's
    /// shared name, the position live delivery starts after, and for a resume whether
    /// it recovered.
    pub(crate) fn add(
        &self,
        topic: &str,
        sub: &Arc<Shared>,
        after: Option<Position>,
        mut pre: Prefetch,
    ) -> Result<Added, HubError> {
        loop {
            let (entry, created) = {
                let mut topics = lock(&self.topics);
                match topics.get(topic) {
                    Some(t) => (t.clone(), false),
                    None => {
                        let name: Arc<str> = Arc::from(topic);
                        let t = Arc::new(Topic {
                            name: name.clone(),
                            state: Mutex::default(),
                        });
                        topics.insert(name, t.clone());
                        (t, true)
                    }
                }
            };
            let mut st = lock(&entry.state);
            if st.removed {
                continue;
            }
            if created {
                self.backend.watch(topic);
                let latest = match pre.latest.take() {
                    Some(latest) => latest,
                    None => self.backend.latest(topic),
                };
                st.last = match latest {
                    Ok(Some(p)) => Some(p),
                    // No history yet: deliver from the first message of its epoch.
                    Ok(None) => Some(START),
                    // Unknown: the first message delivered (or the backend's next
                    // sync) sets where this node starts.
                    Err(_) => None,
                };
            }
            let mut floor = st.last;
            let resumed = after.map(|after| {
                let (resumed, new_floor) =
                    self.catch_up(&entry, &st, sub, after, pre.replay.take());
                floor = new_floor;
                resumed
            });
            st.members.push(Member {
                sub: sub.clone(),
                floor,
            });
            let start = st.last.filter(|p| p.epoch != 0);
            return Ok((entry.name.clone(), start, resumed));
        }
    }

    /// Queues for `sub` the messages after `after` up to the node's last delivered one
    /// (from `read`, the history after `after` read beforehand, when it reaches that
    /// far).
    fn catch_up(
        &self,
        entry: &Topic,
        st: &TopicState,
        sub: &Shared,
        after: Position,
        read: Option<Result<Stretch, HubError>>,
    ) -> (Resumed, Option<Position>) {
        let Some(last) = st.last else {
            return (Resumed::NotRecovered(Loss::Unavailable), None);
        };
        if last.epoch != after.epoch {
            return (Resumed::NotRecovered(Loss::EpochChanged), Some(last));
        }
        if after.offset >= last.offset {
            // Nothing this node has delivered is new to it; it may even be ahead of this
            // node (it was on another one): the floor skips what it already has.
            return (Resumed::Recovered(0), Some(after));
        }
        let missed = last.offset - after.offset;
        if missed > self.config.replay_limit as u64 {
            return (Resumed::NotRecovered(Loss::TooMany), Some(last));
        }
        let answer = match read {
            Some(Ok(Stretch::Messages(stored)))
                if stored
                    .last()
                    .is_some_and(|s| s.position.offset >= last.offset) =>
            {
                Ok(Stretch::Messages(stored))
            }
            Some(Ok(Stretch::NotRecovered(loss))) => Ok(Stretch::NotRecovered(loss)),
            Some(Err(e)) => Err(e),
            // Nothing read, or the node delivered more since: read up to it now.
            _ => self.backend.replay(&entry.name, after, missed as usize),
        };
        match answer {
            Ok(Stretch::Messages(stored)) => {
                let mut expected = after.offset + 1;
                let mut batch = Vec::new();
                for s in stored {
                    if s.position.offset > last.offset {
                        break;
                    }
                    if s.position.epoch != last.epoch || s.position.offset != expected {
                        return (Resumed::NotRecovered(Loss::Trimmed), Some(last));
                    }
                    expected += 1;
                    batch.push(s);
                }
                if expected != last.offset + 1 {
                    return (Resumed::NotRecovered(Loss::Trimmed), Some(last));
                }
                let n = batch.len();
                for s in batch {
                    if let Some(d) = self.prepare(&entry.name, s) {
                        sub.push(Event::Message(d));
                    }
                }
                (Resumed::Recovered(n), Some(last))
            }
            Ok(Stretch::NotRecovered(loss)) => (Resumed::NotRecovered(loss), Some(last)),
            Err(_) => (Resumed::NotRecovered(Loss::Unavailable), Some(last)),
        }
    }

    pub(crate) fn remove(&self, topic: &str, id: u64) {
        let mut topics = lock(&self.topics);
        let Some(entry) = topics.get(topic).cloned() else {
            return;
        };
        let mut st = lock(&entry.state);
        st.members.retain(|m| m.sub.id != id);
        if st.members.is_empty() {
            st.removed = true;
            topics.remove(topic);
            self.backend.unwatch(topic);
        }
    }

    /// Frames and encodes one message for this node.
    pub(crate) fn prepare(&self, topic: &Arc<str>, stored: Stored) -> Option<Delivery> {
        let framed = self
            .config
            .framing
            .frame(topic, stored.position, &stored.message);
        let message = PreparedMessage::new(framed).ok()?;
        Some(Delivery {
            topic: topic.clone(),
            position: stored.position,
            message,
            original: stored.message,
        })
    }

    /// Where delivering a message at `pos` would first read the history (see
    /// [`Sink::gap`](crate::Sink::gap)).
    pub(crate) fn gap(&self, topic: &str, pos: Position) -> Option<Position> {
        let entry = self.get(topic)?;
        let st = lock(&entry.state);
        let last = st.last?;
        if pos.offset == 0 || (pos.epoch == last.epoch && pos.offset <= last.offset) {
            return None;
        }
        let from = if last.epoch == pos.epoch {
            last
        } else {
            Position {
                epoch: pos.epoch,
                offset: 0,
            }
        };
        let missed = (pos.offset - 1).checked_sub(from.offset)?;
        (missed > 0 && missed <= self.config.replay_limit as u64).then_some(from)
    }

    pub(crate) fn deliver(&self, topic: &str, stored: Stored) {
        self.deliver_with(topic, stored, None);
    }

    /// Delivers a message; `read` is the history after a position, read beforehand for
    /// the gap before it.
    pub(crate) fn deliver_with(
        &self,
        topic: &str,
        stored: Stored,
        read: Option<(Position, Result<Stretch, HubError>)>,
    ) {
        let Some(entry) = self.get(topic) else {
            return;
        };
        let pos = stored.position;
        if pos.offset == 0 || pos.epoch == 0 {
            return; // not a message position (offsets start at 1, epochs are never 0)
        }
        let mut st = lock(&entry.state);
        if let Some(last) = st.last {
            if pos.epoch == last.epoch && pos.offset <= last.offset {
                return; // a repeat (our own echo, or a message replayed already)
            }
        }
        if (pos.offset > 1 || st.last.is_some_and(|l| l.epoch != pos.epoch))
            && !self.fill(
                &entry,
                &mut st,
                Position {
                    epoch: pos.epoch,
                    offset: pos.offset - 1,
                },
                read,
            )
        {
            // The history before it could not be read yet: it waits there too (it was
            // stored before it was announced), and is delivered when the gap is filled.
            if let Some(gap) = &mut st.gap {
                gap.upto = gap.upto.max(pos);
            }
            return;
        }
        self.fanout(&entry, &mut st, stored);
    }

    pub(crate) fn presence_event(&self, topic: &str, change: Change, member: crate::Member) {
        let Some(entry) = self.get(topic) else {
            return;
        };
        let st = lock(&entry.state);
        let member = Arc::new(member);
        for m in &st.members {
            m.sub.push(Event::Presence {
                topic: entry.name.clone(),
                change,
                member: member.clone(),
            });
        }
    }

    pub(crate) fn sync(&self, topic: &str, latest: Option<Position>) {
        let Some(entry) = self.get(topic) else {
            return;
        };
        let mut st = lock(&entry.state);
        match (st.last, latest) {
            (Some(last), None) if last.epoch != 0 => {
                // The topic's history is gone (Redis restarted, or it expired).
                self.notice(&entry, &st, Some(last), None, Loss::EpochChanged);
                st.last = Some(START);
                st.gap = None;
            }
            (_, None) => {}
            (None, Some(l)) => st.last = Some(l),
            (Some(_), Some(l)) => {
                self.fill(&entry, &mut st, l, None);
            }
        }
    }

    /// Reports as lost every gap that stayed unreadable for longer than
    /// [`HubConfig::gap_timeout`]; delivery goes on after it.
    pub(crate) fn expire_gaps(&self) {
        let topics: Vec<Arc<Topic>> = lock(&self.topics).values().cloned().collect();
        for entry in topics {
            let mut st = lock(&entry.state);
            let Some(gap) = st.gap else { continue };
            if gap.since.elapsed() < self.config.gap_timeout {
                continue;
            }
            let after = st.last;
            self.notice(&entry, &st, after, Some(gap.upto), Loss::Unavailable);
            st.last = Some(gap.upto);
            st.gap = None;
        }
    }

    /// Delivers everything after the node's last position up to `upto` (inclusive)
    /// from the history, or tells every member what was lost; afterwards the node's
    /// last position is `upto`. `read`: the history after a position, read beforehand;
    /// used when the node is at or past that position in the same epoch (otherwise,
    /// or when it says the history cannot be read from an earlier position, the
    /// history is read here).
    ///
    /// Returns false when the history could not be read (the backend did not answer):
    /// the node then stays where it was and remembers the gap, to read it on the next
    /// delivery or sync of the topic; only a gap still unread after
    /// [`HubConfig::gap_timeout`] is reported lost ([`Loss::Unavailable`]).
    fn fill(
        &self,
        entry: &Topic,
        st: &mut TopicState,
        mut upto: Position,
        read: Option<(Position, Result<Stretch, HubError>)>,
    ) -> bool {
        let Some(mut last) = st.last else {
            // The node has no starting point: it starts here.
            st.last = Some(upto);
            st.gap = None;
            return true;
        };
        let pending = st.gap.take();
        if let Some(gap) = pending {
            if gap.upto.epoch == upto.epoch {
                upto = upto.max(gap.upto);
            }
        }
        if last.epoch != upto.epoch {
            // What the new epoch already has before `upto` is delivered next.
            let start = Position {
                epoch: upto.epoch,
                offset: 0,
            };
            if last.epoch != START.epoch {
                self.notice(entry, st, Some(last), Some(start), Loss::EpochChanged);
            }
            last = start;
            st.last = Some(last);
        }
        if upto.offset <= last.offset {
            return true;
        }
        let missed = upto.offset - last.offset;
        if missed > self.config.replay_limit as u64 {
            self.notice(entry, st, Some(last), Some(upto), Loss::TooMany);
            st.last = Some(upto);
            return true;
        }
        let answer = match read {
            // Read from where the node was; it may have delivered some since.
            Some((from, Ok(Stretch::Messages(stored))))
                if from.epoch == last.epoch && from.offset <= last.offset =>
            {
                Ok(Stretch::Messages(
                    stored
                        .into_iter()
                        .filter(|s| s.position.offset > last.offset)
                        .collect(),
                ))
            }
            Some((from, answer)) if from == last => answer,
            _ => self.backend.replay(&entry.name, last, missed as usize),
        };
        let loss = match answer {
            Ok(Stretch::Messages(stored)) => {
                let mut loss = None;
                for s in stored {
                    if s.position.offset > upto.offset {
                        break;
                    }
                    let expected = st.last.map_or(1, |l| l.offset + 1);
                    if s.position.epoch != upto.epoch || s.position.offset != expected {
                        loss = Some(Loss::Trimmed);
                        break;
                    }
                    self.fanout(entry, st, s);
                }
                if loss.is_none() && st.last.is_none_or(|l| l.offset != upto.offset) {
                    loss = Some(Loss::Trimmed);
                }
                loss
            }
            Ok(Stretch::NotRecovered(loss)) => Some(loss),
            Err(_) => {
                // Not lost, only unread: kept for the next attempt (or for
                // `expire_gaps`, once it has waited too long).
                st.gap = Some(Gap {
                    since: pending.map_or_else(Instant::now, |g| g.since),
                    upto,
                });
                return false;
            }
        };
        if let Some(loss) = loss {
            let after = st.last;
            self.notice(entry, st, after, Some(upto), loss);
            st.last = Some(upto);
        }
        true
    }

    fn notice(
        &self,
        entry: &Topic,
        st: &TopicState,
        after: Option<Position>,
        resumed: Option<Position>,
        reason: Loss,
    ) {
        for m in &st.members {
            // A member that resumed ahead of this node already has messages past the
            // node's position: its notice starts after what it got.
            let after = match (after, m.floor) {
                (Some(a), Some(f)) if f.epoch == a.epoch && f.offset > a.offset => Some(f),
                (None, Some(f)) if f.epoch != START.epoch => Some(f),
                (a, _) => a,
            };
            m.sub.push(Event::NotRecovered {
                topic: entry.name.clone(),
                after,
                resumed,
                reason,
            });
        }
    }

    fn fanout(&self, entry: &Topic, st: &mut TopicState, stored: Stored) {
        let pos = stored.position;
        st.last = Some(pos);
        if st.members.is_empty() {
            return;
        }
        let Some(delivery) = self.prepare(&entry.name, stored) else {
            return;
        };
        for m in &st.members {
            if m.floor
                .is_some_and(|f| f.epoch == pos.epoch && pos.offset <= f.offset)
            {
                continue;
            }
            m.sub.push(Event::Message(delivery.clone()));
        }
    }
}
