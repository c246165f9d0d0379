//! The in-memory backend: one process, history in memory.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use duplex_core::Message;

use crate::{Backend, Change, HubError, Loss, Member, Position, Sink, Stored, Stretch, new_epoch};

/// Limits of the [`MemoryBackend`]; every field has a default.
#[derive(Clone, Debug)]
pub struct MemoryConfig {
    /// Messages of history kept per topic. Default 1000.
    pub history_len: usize,
    /// Bytes of history (payloads) kept per topic. Default 1 MiB.
    pub history_bytes: usize,
    /// Topics with history; past it, the topic created first is forgotten (its next
    /// message starts a new epoch). Default 10,000.
    pub max_topics: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            history_len: 1000,
            history_bytes: 1 << 20,
            max_topics: 10_000,
        }
    }
}

/// Topics in this process: positions, bounded history, delivery to this node only.
/// The epoch of a topic is drawn when the process first publishes to it.
pub struct MemoryBackend {
    config: MemoryConfig,
    topics: Mutex<Topics>,
    sink: OnceLock<Sink>,
    /// Present clients per topic, with their info (one node: no TTL needed).
    presence: Mutex<HashMap<String, BTreeMap<String, String>>>,
}

#[derive(Default)]
struct Topics {
    map: HashMap<Arc<str>, Arc<MemTopic>>,
    order: VecDeque<Arc<str>>,
}

struct MemTopic {
    /// Held while a message is numbered and delivered, so deliveries are in order.
    deliver: Mutex<()>,
    history: Mutex<History>,
}

struct History {
    epoch: u64,
    offset: u64,
    messages: VecDeque<Stored>,
    bytes: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryBackend {
    /// A backend with these limits.
    pub fn new(config: MemoryConfig) -> Self {
        Self {
            config,
            topics: Mutex::default(),
            sink: OnceLock::new(),
            presence: Mutex::default(),
        }
    }

    fn topic(&self, name: &str, create: bool) -> Option<Arc<MemTopic>> {
        let mut topics = lock(&self.topics);
        if let Some(t) = topics.map.get(name) {
            return Some(t.clone());
        }
        if !create {
            return None;
        }
        while topics.map.len() >= self.config.max_topics.max(1) {
            let Some(old) = topics.order.pop_front() else {
                break;
            };
            topics.map.remove(&old);
        }
        let name: Arc<str> = Arc::from(name);
        let t = Arc::new(MemTopic {
            deliver: Mutex::new(()),
            history: Mutex::new(History {
                epoch: new_epoch(),
                offset: 0,
                messages: VecDeque::new(),
                bytes: 0,
            }),
        });
        topics.map.insert(name.clone(), t.clone());
        topics.order.push_back(name);
        Some(t)
    }
}

impl Backend for MemoryBackend {
    fn start(&self, sink: Sink) {
        let _ = self.sink.set(sink);
    }

    fn present(
        &self,
        topic: &str,
        client: &str,
        info: &str,
        _ttl: Duration,
    ) -> Result<(), HubError> {
        let mut presence = lock(&self.presence);
        let members = presence.entry(topic.to_owned()).or_default();
        if members.contains_key(client) {
            return Ok(());
        }
        members.insert(client.to_owned(), info.to_owned());
        drop(presence);
        if let Some(sink) = self.sink.get() {
            let member = Member {
                client: client.to_owned(),
                info: info.to_owned(),
            };
            sink.presence(topic, Change::Join, member);
        }
        Ok(())
    }

    fn absent(&self, topic: &str, client: &str) -> Result<(), HubError> {
        let mut presence = lock(&self.presence);
        let Some(members) = presence.get_mut(topic) else {
            return Ok(());
        };
        let Some(info) = members.remove(client) else {
            return Ok(());
        };
        if members.is_empty() {
            presence.remove(topic);
        }
        drop(presence);
        if let Some(sink) = self.sink.get() {
            let member = Member {
                client: client.to_owned(),
                info,
            };
            sink.presence(topic, Change::Leave, member);
        }
        Ok(())
    }

    fn members(&self, topic: &str) -> Result<Vec<Member>, HubError> {
        Ok(lock(&self.presence)
            .get(topic)
            .map(|m| {
                m.iter()
                    .map(|(client, info)| Member {
                        client: client.clone(),
                        info: info.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    fn publish(&self, topic: &str, message: &Message) -> Result<Position, HubError> {
        let t = self.topic(topic, true).ok_or(HubError::BadTopic)?;
        let _order = lock(&t.deliver);
        let stored = {
            let mut h = lock(&t.history);
            h.offset += 1;
            let stored = Stored {
                position: Position {
                    epoch: h.epoch,
                    offset: h.offset,
                },
                message: message.clone(),
            };
            h.bytes += message.payload().len();
            h.messages.push_back(stored.clone());
            while h.messages.len() > self.config.history_len
                || (h.bytes > self.config.history_bytes && h.messages.len() > 1)
            {
                if let Some(old) = h.messages.pop_front() {
                    h.bytes -= old.message.payload().len();
                }
            }
            stored
        };
        let position = stored.position;
        if let Some(sink) = self.sink.get() {
            sink.deliver(topic, stored);
        }
        Ok(position)
    }

    fn replay(&self, topic: &str, after: Position, limit: usize) -> Result<Stretch, HubError> {
        let Some(t) = self.topic(topic, false) else {
            return Ok(Stretch::NotRecovered(Loss::EpochChanged));
        };
        let h = lock(&t.history);
        if h.epoch != after.epoch || after.offset > h.offset {
            return Ok(Stretch::NotRecovered(Loss::EpochChanged));
        }
        let missed = h.offset - after.offset;
        if missed == 0 {
            return Ok(Stretch::Messages(Vec::new()));
        }
        let first = h
            .messages
            .front()
            .map_or(h.offset + 1, |s| s.position.offset);
        if after.offset + 1 < first {
            return Ok(Stretch::NotRecovered(Loss::Trimmed));
        }
        let skip = (after.offset + 1 - first) as usize;
        Ok(Stretch::Messages(
            h.messages.iter().skip(skip).take(limit).cloned().collect(),
        ))
    }

    fn latest(&self, topic: &str) -> Result<Option<Position>, HubError> {
        Ok(self.topic(topic, false).map(|t| {
            let h = lock(&t.history);
            Position {
                epoch: h.epoch,
                offset: h.offset,
            }
        }))
    }

    fn watch(&self, _topic: &str) {}

    fn unwatch(&self, _topic: &str) {}
}
