//! Presence: which clients are in a topic, on every node.
//!
//! A node keeps its own clients per topic with a count of their connections. The first
//! connection of a client on a node makes it present in the backend
//! ([`Backend::present`]); when its last connection ends, the node waits
//! [`HubConfig::presence_grace`] before it makes it absent ([`Backend::absent`]), so a
//! client that reconnects in time, to this node or another, neither leaves nor joins
//! again. A background thread per hub ends the grace periods and, every third of
//! [`HubConfig::presence_ttl`], refreshes the node's entries in the backend and
//! removes the entries other nodes stopped refreshing ([`Backend::sweep_presence`]).
//!
//! [`HubConfig::presence_grace`]: crate::HubConfig::presence_grace
//! [`HubConfig::presence_ttl`]: crate::HubConfig::presence_ttl
//! [`Backend::present`]: crate::Backend::present
//! [`Backend::absent`]: crate::Backend::absent
//! [`Backend::sweep_presence`]: crate::Backend::sweep_presence

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::registry::Registry;

/// One client present in a topic.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    /// The application's id of the client (stable across its reconnections).
    pub client: String,
    /// What the application attached when the client joined (a nickname, JSON...).
    pub info: String,
}

/// A presence change, as [`Event::Presence`](crate::Event::Presence) carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Change {
    /// The client is now present (on some node), and was not before.
    Join,
    /// The client is no longer present on any node (it left, or its node died).
    Leave,
}

impl Change {
    /// `join` or `leave`.
    pub fn code(self) -> &'static str {
        match self {
            Self::Join => "join",
            Self::Leave => "leave",
        }
    }
}

/// One connection's presence in a topic, from [`Hub::join`](crate::Hub::join).
/// Dropping it ends that connection's part: the client leaves once none of its
/// connections on this node remain and the grace period has passed (unless it is
/// still present through another node).
#[derive(Debug)]
pub struct Presence {
    registry: Weak<Registry>,
    key: Key,
}

impl Drop for Presence {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry
                .presence
                .release(&self.key, registry.config.presence_grace);
        }
    }
}

type Key = (Arc<str>, Arc<str>);

struct Entry {
    info: Arc<str>,
    connections: usize,
    /// When the client leaves, once it has no connection left here.
    leave_at: Option<Instant>,
}

/// The node's present clients, per topic.
#[derive(Default)]
pub(crate) struct Local {
    entries: Mutex<HashMap<Key, Entry>>,
    thread: Mutex<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What [`Local::claim`] found.
pub(crate) enum Claim {
    /// The client already has an entry on this node: nothing to tell the backend.
    Held(Presence),
    /// A new entry: the backend must be told; then [`Local::confirm`] or
    /// [`Local::undo`].
    New(Presence, Arc<str>),
}

impl Local {
    /// Counts one more connection of `client` in `topic`.
    pub(crate) fn claim(
        &self,
        registry: &Arc<Registry>,
        topic: &str,
        client: &str,
        info: &str,
    ) -> Claim {
        let key: Key = (Arc::from(topic), Arc::from(client));
        let presence = Presence {
            registry: Arc::downgrade(registry),
            key: key.clone(),
        };
        let mut entries = lock(&self.entries);
        if let Some(e) = entries.get_mut(&key) {
            e.connections += 1;
            e.leave_at = None;
            return Claim::Held(presence);
        }
        let info: Arc<str> = Arc::from(info);
        entries.insert(
            key,
            Entry {
                info: info.clone(),
                connections: 1,
                leave_at: None,
            },
        );
        drop(entries);
        self.start(registry);
        Claim::New(presence, info)
    }

    /// The backend refused a new entry: forget it without telling the backend again.
    pub(crate) fn undo(&self, presence: Presence) {
        let mut entries = lock(&self.entries);
        if let Some(e) = entries.get_mut(&presence.key) {
            e.connections = e.connections.saturating_sub(1);
            if e.connections == 0 {
                entries.remove(&presence.key);
            }
        }
        drop(entries);
        let mut presence = presence;
        presence.registry = Weak::new(); // its drop then does nothing
    }

    fn release(&self, key: &Key, grace: Duration) {
        let mut entries = lock(&self.entries);
        if let Some(e) = entries.get_mut(key) {
            e.connections = e.connections.saturating_sub(1);
            if e.connections == 0 {
                e.leave_at = Some(Instant::now() + grace);
            }
        }
    }

    /// Removes the entries whose grace period ended; returns them.
    fn due(&self) -> Vec<Key> {
        let now = Instant::now();
        let mut entries = lock(&self.entries);
        let due: Vec<Key> = entries
            .iter()
            .filter(|(_, e)| e.leave_at.is_some_and(|at| at <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &due {
            entries.remove(k);
        }
        due
    }

    fn all(&self) -> Vec<(Key, Arc<str>)> {
        lock(&self.entries)
            .iter()
            .map(|(k, e)| (k.clone(), e.info.clone()))
            .collect()
    }

    /// Starts the hub's presence thread if it is not running.
    fn start(&self, registry: &Arc<Registry>) {
        let mut running = lock(&self.thread);
        if *running {
            return;
        }
        let weak = Arc::downgrade(registry);
        let spawned = std::thread::Builder::new()
            .name("duplex-hub-presence".into())
            .spawn(move || run(&weak));
        *running = spawned.is_ok();
    }
}

/// The presence thread: ends grace periods (every 50 ms at most) and heartbeats (every
/// third of the TTL), until the hub is gone.
fn run(registry: &Weak<Registry>) {
    let mut next_beat = Instant::now();
    loop {
        let Some(r) = registry.upgrade() else { return };
        let (ttl, grace) = (r.config.presence_ttl, r.config.presence_grace);
        for (topic, client) in r.presence.due() {
            // On failure the entry expires in the backend after the TTL.
            let _ = r.backend.absent(&topic, &client);
        }
        if Instant::now() >= next_beat {
            let mine = r.presence.all();
            let mut topics: Vec<Arc<str>> = mine.iter().map(|((t, _), _)| t.clone()).collect();
            for ((topic, client), info) in mine {
                let _ = r.backend.present(&topic, &client, &info, ttl);
            }
            topics.extend(r.watched());
            topics.sort_unstable();
            topics.dedup();
            r.backend.sweep_presence(&topics);
            next_beat = Instant::now() + ttl / 3;
        }
        drop(r);
        let tick = (grace / 4)
            .min(ttl / 6)
            .clamp(Duration::from_millis(10), Duration::from_millis(50));
        std::thread::sleep(tick);
    }
}
