//! The hub under a `duplex-mio` server (feature `mio`): its topics span nodes when the
//! hub has the Redis backend.
//!
//! A [`Bridge`] relays the hub's topics into the server's own topics: connections
//! subscribe with [`Bridge::subscribe`] (the server's `Context::subscribe` plus the
//! hub), handlers publish with [`Bridge::publish`], and one relay thread per server
//! hands each message to `Sender::publish` once, so the server encodes it once for all
//! its subscribers on every worker. Notices (`Lagged`, `NotRecovered`) reach the topic's
//! connections as [`notice_json`] text.
//!
//! ```no_run
//! use duplex_hub::mio::Bridge;
//! use duplex_hub::Hub;
//! use duplex_mio::{Context, Handler, Message, Server, ServerConfig};
//!
//! struct Chat(Bridge);
//!
//! impl Handler for Chat {
//!     fn on_open(
//!         &mut self,
//!         ctx: &mut Context<'_>,
//!         _request: &duplex_mio::http::Request<()>,
//!         _offer: &duplex_mio::ClientOffer,
//!     ) -> Result<duplex_mio::Acceptance, duplex_mio::Rejection> {
//!         self.0.subscribe(ctx, "lobby");
//!         Ok(duplex_mio::Acceptance::default())
//!     }
//!
//!     fn on_message(&mut self, _ctx: &mut Context<'_>, message: Message) {
//!         let _ = self.0.publish("lobby", message);
//!     }
//! }
//!
//! let server = Server::bind("127.0.0.1:9000", ServerConfig::default())?;
//! let bridge = Bridge::new(Hub::memory(), server.sender());
//! server.run(|_| Chat(bridge.clone()))?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Per-connection slow readers are the server's business (its write buffer limits);
//! the relay is one hub subscriber for the whole server, with its own bound
//! ([`Bridge::with_queue`]) and the `Lag` policy.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender as ChannelSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use duplex_core::Message;
use duplex_mio::{Context, Sender};

use crate::{Event, Hub, HubError, MAX_TOPIC_LEN, Position, SlowPolicy, notice_json};

/// The relay's default queue bound: 16 MiB.
pub const DEFAULT_RELAY_QUEUE: usize = 16 << 20;

/// Connects a hub to a `duplex-mio` server. Cheap to clone; the relay thread ends when
/// the last clone is dropped.
#[derive(Clone)]
pub struct Bridge {
    inner: Arc<Inner>,
}

struct Inner {
    hub: Hub,
    follow: Mutex<ChannelSender<(bool, String)>>,
    followed: Mutex<HashSet<String>>,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge").finish_non_exhaustive()
    }
}

impl Bridge {
    /// A bridge from `hub` to the server reached by `sender`, with the default relay
    /// queue.
    pub fn new(hub: Hub, sender: Sender) -> Self {
        Self::with_queue(hub, sender, DEFAULT_RELAY_QUEUE)
    }

    /// A bridge whose relay queue holds up to `queue_bytes`.
    pub fn with_queue(hub: Hub, sender: Sender, queue_bytes: usize) -> Self {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, dropped, hub) = (stop.clone(), dropped.clone(), hub.clone());
            std::thread::Builder::new()
                .name("duplex-hub-mio".into())
                .spawn(move || relay(&hub, queue_bytes, &rx, &sender, &stop, &dropped))
                .ok()
        };
        Self {
            inner: Arc::new(Inner {
                hub,
                follow: Mutex::new(tx),
                followed: Mutex::default(),
                stop,
                dropped,
                thread: Mutex::new(thread),
            }),
        }
    }

    /// The hub.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// Subscribes the connection to `topic` on the server and makes this node follow
    /// the topic in the hub. Returns false if the connection is closed or the topic
    /// name is invalid. A node keeps following a topic until [`unfollow`](Self::unfollow).
    pub fn subscribe(&self, ctx: &mut Context<'_>, topic: &str) -> bool {
        if topic.is_empty() || topic.len() > MAX_TOPIC_LEN {
            return false;
        }
        self.follow(topic);
        ctx.subscribe(topic)
    }

    /// Makes this node follow `topic` in the hub (its messages reach the server's
    /// subscribers of the topic). The hub subscription is made on the relay thread, so
    /// this never waits for Redis.
    pub fn follow(&self, topic: &str) {
        let mut followed = self
            .inner
            .followed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if followed.insert(topic.to_owned()) {
            let _ = self
                .inner
                .follow
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .send((true, topic.to_owned()));
        }
    }

    /// Stops following `topic` (the server's connections stay subscribed locally).
    pub fn unfollow(&self, topic: &str) {
        let mut followed = self
            .inner
            .followed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if followed.remove(topic) {
            let _ = self
                .inner
                .follow
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .send((false, topic.to_owned()));
        }
    }

    /// Publishes through the hub (every node's subscribers get it, this server's
    /// through the relay). With Redis this waits for one round trip, bounded by the
    /// backend's timeout, on the calling worker thread.
    pub fn publish(&self, topic: &str, message: impl Into<Message>) -> Result<Position, HubError> {
        self.inner.hub.publish(topic, message)
    }

    /// Messages the relay could not hand to a worker whose command queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}

fn relay(
    hub: &Hub,
    queue_bytes: usize,
    follow: &Receiver<(bool, String)>,
    sender: &Sender,
    stop: &AtomicBool,
    dropped: &AtomicU64,
) {
    let mut sub = hub.subscriber_with(queue_bytes, SlowPolicy::Lag, None);
    while !stop.load(Ordering::Relaxed) {
        while let Ok((on, topic)) = follow.try_recv() {
            if on {
                // With Redis down this still subscribes locally; the position is
                // learned from the first message or the backend's next sync.
                let _ = sub.subscribe(&topic);
            } else {
                sub.unsubscribe(&topic);
            }
        }
        let Some(event) = sub.recv_timeout(Duration::from_millis(20)) else {
            continue;
        };
        let (topic, message) = match &event {
            Event::Message(d) => (d.topic.clone(), d.message.message().clone()),
            Event::Lagged { topic, .. }
            | Event::NotRecovered { topic, .. }
            | Event::Presence { topic, .. } => {
                let Some(text) = notice_json(&event) else {
                    continue;
                };
                (topic.clone(), Message::text(text))
            }
            Event::Closed(_) => {
                // Only past its notice allowance (a relay that cannot keep up at all):
                // start again from now, telling every topic's clients what happened.
                let topics: Vec<String> = sub.topics().iter().map(|t| t.to_string()).collect();
                sub = hub.subscriber_with(queue_bytes, SlowPolicy::Lag, None);
                for topic in topics {
                    let resumed = sub.subscribe(&topic).ok().flatten();
                    let notice = Event::NotRecovered {
                        topic: topic.as_str().into(),
                        after: None,
                        resumed,
                        reason: crate::Loss::TooMany,
                    };
                    if let Some(text) = notice_json(&notice) {
                        if sender.publish(&topic, Message::text(text)).is_err() {
                            dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                continue;
            }
        };
        if sender.publish(&topic, message).is_err() {
            dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
