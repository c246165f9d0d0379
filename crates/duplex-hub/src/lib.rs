//! Topics for duplex servers, on one node or across many.
//!
//! A [`Hub`] routes messages published to a *topic* to every [`Subscriber`] of that
//! topic. Every message gets a [`Position`] when it is published: the topic's *epoch*
//! and an *offset* that grows by one per message. The epoch changes whenever the
//! topic's history may have been lost (a new process for the in-memory backend, Redis
//! restarted without persistence or the topic expired for the Redis backend), so a
//! client holding a position can tell "I missed nothing" from "I cannot know".
//!
//! - [`Hub::publish`] returns the message's position.
//! - Each subscriber has one bounded queue (in bytes) for all its topics, and a
//!   [`SlowPolicy`] for when it fills: close the connection (1013 by default, or 1008),
//!   or drop messages and queue an [`Event::Lagged`] notice.
//! - [`Hub::replay`] and [`Subscriber::resume`] return what a client missed after a
//!   position, exactly once, or say that it cannot be recovered ([`Loss`]).
//! - Each message is encoded once per node ([`PreparedMessage`]) for all its local
//!   subscribers.
//!
//! Backends ([`Backend`]): [`MemoryBackend`] (the default; one process) and, with the
//! `redis` feature, `RedisBackend` (Redis pub/sub for live fan-out between nodes, one
//! Redis stream per topic for bounded history). `docs/SCALING.md` in the repository
//! states the delivery semantics.
//!
//! ```
//! use duplex_hub::{Event, Hub, Message};
//!
//! let hub = Hub::memory();
//! let mut alice = hub.subscriber();
//! alice.subscribe("room")?;
//! let sent = hub.publish("room", Message::text("hello"))?;
//! match alice.try_recv() {
//!     Some(Event::Message(delivery)) => {
//!         assert_eq!(delivery.position, sent);
//!         assert_eq!(delivery.message.message().as_text(), Some("hello"));
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! # Ok::<(), duplex_hub::HubError>(())
//! ```

#![forbid(unsafe_code)]

mod access;
#[cfg(feature = "cluster")]
mod cluster;
mod framing;
mod memory;
#[cfg(feature = "mio")]
pub mod mio;
mod presence;
#[cfg(feature = "redis")]
mod redis;
mod registry;
mod subscriber;
#[cfg(feature = "tokio")]
pub mod tokio;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use access::{Authorize, RateLimit, Request};
pub use duplex_core::{CloseCode, Message, PreparedMessage};
pub use framing::{Framing, notice_json};
pub use memory::{MemoryBackend, MemoryConfig};
pub use presence::{Change, Member, Presence};
#[cfg(feature = "redis")]
pub use redis::{RedisBackend, RedisConfig};
pub use subscriber::{Resumed, Subscriber};

use registry::Registry;

/// Where a message is in its topic: the topic's epoch and the message's offset.
///
/// Offsets start at 1 in each epoch; a position with offset 0 means "before the first
/// message of this epoch". Epochs are random numbers below 2^53 (so they are exact in
/// JavaScript) and never 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    /// The topic's epoch: it changes whenever the topic's history may have been lost.
    pub epoch: u64,
    /// The message's offset in the epoch, from 1.
    pub offset: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.epoch, self.offset)
    }
}

/// One message of a topic as a node delivers it.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The topic.
    pub topic: Arc<str>,
    /// The message's position.
    pub position: Position,
    /// The message, encoded once per node (with the hub's [`Framing`]) and shared by
    /// every local subscriber: send it with `send_prepared`.
    pub message: PreparedMessage,
    /// The message as it was published (before framing).
    pub original: Message,
}

/// Why messages of a topic cannot be recovered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// The topic's epoch changed: its history before the change is gone.
    EpochChanged,
    /// The history no longer reaches back to the position (trimmed or expired).
    Trimmed,
    /// More messages were missed than the limit allows replaying.
    TooMany,
    /// The backend could not be reached to recover them.
    Unavailable,
}

impl Loss {
    /// The reason's short name, as notices carry it on the wire: `epoch_changed`,
    /// `trimmed`, `too_many` or `unavailable`.
    pub fn code(self) -> &'static str {
        match self {
            Self::EpochChanged => "epoch_changed",
            Self::Trimmed => "trimmed",
            Self::TooMany => "too_many",
            Self::Unavailable => "unavailable",
        }
    }

    /// Whether the hub may still deliver the messages later (a client resumes from
    /// the notice's `after` again): only when the backend could not be read. Otherwise
    /// they are gone from the hub's history and the client reloads its state from the
    /// application.
    pub fn replayable(self) -> bool {
        matches!(self, Self::Unavailable)
    }
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::EpochChanged => "the topic's epoch changed",
            Self::Trimmed => "the history was trimmed",
            Self::TooMany => "too many messages were missed",
            Self::Unavailable => "the backend is unavailable",
        })
    }
}

/// What a subscriber receives.
#[derive(Clone, Debug)]
pub enum Event {
    /// A message of a subscribed topic.
    Message(Delivery),
    /// Messages of `topic` with offsets `first..=last` (epoch `epoch`) were dropped
    /// because this subscriber's queue was full ([`SlowPolicy::Lag`]). They can be
    /// fetched with [`Hub::replay`] from `(epoch, first - 1)` while the history holds
    /// them.
    Lagged {
        /// The topic.
        topic: Arc<str>,
        /// The epoch of the dropped messages.
        epoch: u64,
        /// The first dropped offset.
        first: u64,
        /// The last dropped offset.
        last: u64,
    },
    /// Messages of `topic` after `after` may have been lost and cannot be recovered.
    /// Delivery goes on after `resumed`; `None`: from the first message of the next
    /// epoch (the history is gone and no message has come since).
    NotRecovered {
        /// The topic.
        topic: Arc<str>,
        /// The last position delivered before the loss, if any.
        after: Option<Position>,
        /// The position delivery continues after (offset 0: the start of that epoch).
        resumed: Option<Position>,
        /// Why.
        reason: Loss,
    },
    /// The subscriber was closed by [`SlowPolicy::Close`]: the connection should be
    /// closed with this code. No more events follow.
    Closed(CloseCode),
    /// A client joined `topic` (it was on no node before) or left it (on every node).
    /// Not part of the topic's history: a subscriber gets the ones that happen while
    /// it follows the topic; [`Hub::members`] gives the list at any time.
    Presence {
        /// The topic.
        topic: Arc<str>,
        /// Joined or left.
        change: Change,
        /// The client's id and the information it joined with.
        member: Arc<Member>,
    },
}

/// The answer of [`Hub::replay`].
#[derive(Clone, Debug)]
pub enum Replay {
    /// Every message after the position up to the topic's latest, in order (possibly
    /// none).
    Messages(Vec<Delivery>),
    /// They cannot all be recovered.
    NotRecovered(Loss),
}

/// What a slow subscriber's queue does when it is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlowPolicy {
    /// Empty the queue and end the subscriber with [`Event::Closed`] carrying this code
    /// (1013 "try again later" or 1008 "policy violation"); the client reconnects and
    /// resumes from its last position.
    Close(CloseCode),
    /// Drop the messages that do not fit and queue an [`Event::Lagged`] notice once
    /// the queue has drained to half its size.
    Lag,
}

impl Default for SlowPolicy {
    fn default() -> Self {
        Self::Close(CloseCode::TryAgainLater)
    }
}

/// The hub's limits and policies; every field has a default.
#[derive(Clone)]
pub struct HubConfig {
    /// Bytes one subscriber may have queued (payloads plus 64 bytes per event).
    /// Default 1 MiB.
    pub queue_bytes: usize,
    /// What happens when a subscriber's queue is full. Default: close with 1013.
    pub slow_policy: SlowPolicy,
    /// The most messages a node replays to fill a gap in live delivery or to resume a
    /// subscriber. Default 1000.
    pub replay_limit: usize,
    /// How each message is framed for clients. Default: [`Framing::Raw`].
    pub framing: Framing,
    /// How long a node keeps trying to read a gap in live delivery from the backend's
    /// history while the backend does not answer (Redis restarting or paused) before
    /// it reports the gap lost with [`Loss::Unavailable`]. Messages after the gap wait
    /// meanwhile; a gap the backend answers for is filled (or reported with the
    /// backend's reason) at once. Default 10 s.
    pub gap_timeout: Duration,
    /// Topics whose latest message a new subscriber gets first (tickers, state
    /// snapshots): a topic is one when its name starts with one of these prefixes. The
    /// message comes from the backend's history, so every node has it (with Redis, as
    /// long as the topic's history lives: `history_ttl`). Default none.
    pub latest_value: Vec<String>,
    /// The application's hook for each subscribe and publish of a connection made
    /// with [`Hub::connection`] (and of [`Hub::subscriber`]'s, with an empty
    /// [`Request`]). Default none: everything allowed.
    pub authorize: Option<Arc<dyn Authorize>>,
    /// Publishes a connection may make through [`Subscriber::publish`]. Default none.
    pub publish_rate: Option<RateLimit>,
    /// Presence: how long a node's entries live in the backend without a heartbeat
    /// (the node refreshes them every third of it), so the members of a node that died
    /// leave within `presence_ttl` plus a third of it. Default 15 s.
    pub presence_ttl: Duration,
    /// Presence: how long a member stays after its last connection on a node ended, so
    /// a client that reconnects (to any node) in time neither leaves nor joins again.
    /// Default 5 s.
    pub presence_grace: Duration,
}

impl fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubConfig")
            .field("queue_bytes", &self.queue_bytes)
            .field("slow_policy", &self.slow_policy)
            .field("replay_limit", &self.replay_limit)
            .field("framing", &self.framing)
            .field("gap_timeout", &self.gap_timeout)
            .field("latest_value", &self.latest_value)
            .field("authorize", &self.authorize.as_ref().map(|_| "hook"))
            .field("publish_rate", &self.publish_rate)
            .field("presence_ttl", &self.presence_ttl)
            .field("presence_grace", &self.presence_grace)
            .finish()
    }
}

impl HubConfig {
    /// Whether `topic` is a latest-value topic ([`latest_value`](Self::latest_value)).
    pub fn keeps_latest(&self, topic: &str) -> bool {
        self.latest_value
            .iter()
            .any(|p| topic.starts_with(p.as_str()))
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            queue_bytes: 1 << 20,
            slow_policy: SlowPolicy::default(),
            replay_limit: 1000,
            framing: Framing::Raw,
            gap_timeout: DEFAULT_GAP_TIMEOUT,
            latest_value: Vec::new(),
            authorize: None,
            publish_rate: None,
            presence_ttl: Duration::from_secs(15),
            presence_grace: Duration::from_secs(5),
        }
    }
}

/// An error of the hub.
#[derive(Debug)]
pub enum HubError {
    /// The backend is unreachable or failed (publishes are not buffered: retry).
    Unavailable(String),
    /// The message is not a text or binary message.
    NotData,
    /// The topic name is empty or longer than [`MAX_TOPIC_LEN`].
    BadTopic,
    /// The application's [`Authorize`] hook refused, for this reason.
    Denied(String),
    /// The connection published faster than [`HubConfig::publish_rate`]; the next
    /// publish is allowed after this wait. Nothing was published.
    RateLimited(Duration),
}

impl HubError {
    /// The close code for a connection refused this way, if it should be closed:
    /// 1008 (policy violation) for [`Denied`](Self::Denied) and
    /// [`RateLimited`](Self::RateLimited); `None` for the others (an unavailable
    /// backend is worth a retry, not a close: 1013 if the application closes anyway).
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            Self::Denied(_) | Self::RateLimited(_) => Some(CloseCode::PolicyViolation),
            _ => None,
        }
    }
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable(why) => write!(f, "hub backend unavailable: {why}"),
            Self::NotData => f.write_str("only text and binary messages can be published"),
            Self::BadTopic => write!(f, "a topic name has 1 to {MAX_TOPIC_LEN} bytes"),
            Self::Denied(why) => write!(f, "not allowed: {why}"),
            Self::RateLimited(wait) => write!(
                f,
                "publish rate limit reached: next publish in {} ms",
                wait.as_millis().max(1)
            ),
        }
    }
}

impl std::error::Error for HubError {}

/// The longest topic name, in bytes.
pub const MAX_TOPIC_LEN: usize = 256;

fn check_topic(topic: &str) -> Result<(), HubError> {
    if topic.is_empty() || topic.len() > MAX_TOPIC_LEN {
        return Err(HubError::BadTopic);
    }
    Ok(())
}

/// A message with its position, as a backend stores and returns it.
#[derive(Clone, Debug)]
pub struct Stored {
    /// The position.
    pub position: Position,
    /// The message (text or binary).
    pub message: Message,
}

/// What a backend's [`Backend::replay`] answers.
#[derive(Clone, Debug)]
pub enum Stretch {
    /// Every message after the position, up to the latest, in order.
    Messages(Vec<Stored>),
    /// They cannot all be recovered.
    NotRecovered(Loss),
}

/// Where a backend hands the messages it receives (from this node or others) to the
/// node's subscribers. Given to [`Backend::start`].
#[derive(Clone)]
pub struct Sink {
    registry: std::sync::Weak<Registry>,
}

impl Sink {
    /// Delivers a message to this node's subscribers of `topic`. Deliveries of one topic
    /// must be made one at a time; out-of-order or repeated offsets are handled (gaps
    /// are filled with [`Backend::replay`], repeats dropped).
    pub fn deliver(&self, topic: &str, stored: Stored) {
        if let Some(registry) = self.registry.upgrade() {
            registry.deliver(topic, stored);
        }
    }

    /// Tells the node the latest position of a topic it watches (after a reconnect, or
    /// periodically): a node that is behind fills the gap or reports the loss.
    pub fn sync(&self, topic: &str, latest: Option<Position>) {
        if let Some(registry) = self.registry.upgrade() {
            registry.sync(topic, latest);
        }
    }

    /// Where [`deliver`](Self::deliver) of a message at `position` would first read the
    /// history to fill a gap before it (`None`: no gap, or one too large to fill). An
    /// async backend reads that stretch itself and hands it to
    /// [`deliver_filled`](Self::deliver_filled), so delivering does not block.
    pub fn gap(&self, topic: &str, position: Position) -> Option<Position> {
        self.registry.upgrade()?.gap(topic, position)
    }

    /// [`deliver`](Self::deliver) with the history after `from` already read (the
    /// answer of [`Backend::replay_async`] for the position [`gap`](Self::gap) gave). If
    /// the node moved on meanwhile, it is not used and the gap is read as usual.
    pub fn deliver_filled(
        &self,
        topic: &str,
        stored: Stored,
        from: Position,
        filled: Result<Stretch, HubError>,
    ) {
        if let Some(registry) = self.registry.upgrade() {
            registry.deliver_with(topic, stored, Some((from, filled)));
        }
    }

    /// Reports as lost ([`Loss::Unavailable`]) the gaps this node could not read from
    /// the backend for longer than [`HubConfig::gap_timeout`]. A backend whose reads
    /// can fail calls it periodically, also while it cannot reach its server.
    pub fn expire_gaps(&self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.expire_gaps();
        }
    }

    /// Delivers a presence change of `topic` to this node's subscribers of it.
    pub fn presence(&self, topic: &str, change: Change, member: Member) {
        if let Some(registry) = self.registry.upgrade() {
            registry.presence_event(topic, change, member);
        }
    }

    /// The topics this node has local subscribers for.
    pub fn watched(&self) -> Vec<Arc<str>> {
        self.registry
            .upgrade()
            .map(|r| r.watched())
            .unwrap_or_default()
    }
}

/// A boxed future that can move between threads, as [`Backend`]'s async methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where topics live: assigns positions, keeps bounded history, and carries messages to
/// every node. Implementations: [`MemoryBackend`], `RedisBackend` (feature `redis`).
///
/// The blocking methods serve threads (`duplex-mio`'s workers, the backend's own
/// threads); the `_async` ones serve async tasks. Their defaults call the blocking
/// ones, right for a backend that never waits (the memory backend); a remote backend
/// overrides them (the Redis backend does with the `tokio` feature, on `redis`'s async
/// connection).
pub trait Backend: Send + Sync + 'static {
    /// Called once by [`Hub::with_backend`] with the node's sink.
    fn start(&self, sink: Sink);
    /// Appends `message` to `topic`, returns its position. A backend delivers it to this
    /// node's sink (if the topic is watched) before returning, and to other nodes.
    fn publish(&self, topic: &str, message: &Message) -> Result<Position, HubError>;
    /// The messages of `topic` after `after`, oldest first, at most `limit` of them
    /// (fewer only when the topic has no more); [`Stretch::NotRecovered`] when the
    /// first of them is gone (trimmed) or the epoch is not `after.epoch`.
    fn replay(&self, topic: &str, after: Position, limit: usize) -> Result<Stretch, HubError>;
    /// The position of the latest message of `topic` (`None`: no history).
    fn latest(&self, topic: &str) -> Result<Option<Position>, HubError>;
    /// This node now has local subscribers for `topic`.
    fn watch(&self, topic: &str);
    /// This node no longer has local subscribers for `topic`.
    fn unwatch(&self, topic: &str);

    /// [`publish`](Self::publish) for async callers.
    fn publish_async<'a>(
        &'a self,
        topic: &'a str,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<Position, HubError>> {
        Box::pin(std::future::ready(self.publish(topic, message)))
    }

    /// [`replay`](Self::replay) for async callers.
    fn replay_async<'a>(
        &'a self,
        topic: &'a str,
        after: Position,
        limit: usize,
    ) -> BoxFuture<'a, Result<Stretch, HubError>> {
        Box::pin(std::future::ready(self.replay(topic, after, limit)))
    }

    /// [`latest`](Self::latest) for async callers.
    fn latest_async<'a>(
        &'a self,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<Option<Position>, HubError>> {
        Box::pin(std::future::ready(self.latest(topic)))
    }

    /// Presence: this node has `client` in `topic` (a first join, or a heartbeat). Its
    /// entry lives `ttl` unless refreshed. When the client was on no node, every node's
    /// sink gets [`Sink::presence`] with [`Change::Join`]. The default refuses
    /// (a backend without presence).
    fn present(
        &self,
        topic: &str,
        client: &str,
        info: &str,
        ttl: Duration,
    ) -> Result<(), HubError> {
        let _ = (topic, client, info, ttl);
        Err(HubError::Unavailable("this backend has no presence".into()))
    }

    /// [`present`](Self::present) for async callers.
    fn present_async<'a>(
        &'a self,
        topic: &'a str,
        client: &'a str,
        info: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), HubError>> {
        Box::pin(std::future::ready(self.present(topic, client, info, ttl)))
    }

    /// Presence: this node no longer has `client` in `topic`; when no node has it,
    /// every node's sink gets [`Change::Leave`].
    fn absent(&self, topic: &str, client: &str) -> Result<(), HubError> {
        let _ = (topic, client);
        Ok(())
    }

    /// The clients present in `topic` on every node, each once, sorted by id.
    fn members(&self, topic: &str) -> Result<Vec<Member>, HubError> {
        let _ = topic;
        Err(HubError::Unavailable("this backend has no presence".into()))
    }

    /// [`members`](Self::members) for async callers.
    fn members_async<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Vec<Member>, HubError>> {
        Box::pin(std::future::ready(self.members(topic)))
    }

    /// Waits (bounded) until this node receives what other nodes publish to `topic`
    /// (after [`watch`](Self::watch), a backend may need a round trip to its server).
    /// Called by subscribe and resume when the topic is new on the node, so a join or
    /// message another node sends right after is not missed live. Default: at once.
    fn wait_live(&self, topic: &str) {
        let _ = topic;
    }

    /// [`wait_live`](Self::wait_live) for async callers.
    fn wait_live_async<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, ()> {
        self.wait_live(topic);
        Box::pin(std::future::ready(()))
    }

    /// Removes the presence entries of `topics` whose TTL passed (their node stopped
    /// refreshing them: it died), with their leaves. Called every third of the TTL.
    fn sweep_presence(&self, topics: &[Arc<str>]) {
        let _ = topics;
    }
}

/// A node's topic router. Cheap to clone (shared).
#[derive(Clone)]
pub struct Hub {
    registry: Arc<Registry>,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub with the in-memory backend and the default limits.
    pub fn memory() -> Self {
        Self::with_backend(
            HubConfig::default(),
            Arc::new(MemoryBackend::new(MemoryConfig::default())),
        )
    }

    /// A hub over `backend`.
    pub fn with_backend(config: HubConfig, backend: Arc<dyn Backend>) -> Self {
        let registry = Arc::new(Registry::new(config, backend.clone()));
        backend.start(Sink {
            registry: Arc::downgrade(&registry),
        });
        Self { registry }
    }

    /// A hub with the Redis backend (feature `redis`); with
    /// [`RedisConfig::cluster`], the Redis Cluster backend (feature `cluster`).
    #[cfg(feature = "redis")]
    pub fn redis(config: HubConfig, redis: RedisConfig) -> Result<Self, HubError> {
        if redis.cluster {
            #[cfg(feature = "cluster")]
            return Ok(Self::with_backend(
                config,
                Arc::new(cluster::ClusterBackend::new(redis)?),
            ));
            #[cfg(not(feature = "cluster"))]
            return Err(HubError::Unavailable(
                "Redis Cluster needs duplex-hub's `cluster` feature".into(),
            ));
        }
        Ok(Self::with_backend(
            config,
            Arc::new(RedisBackend::new(redis)?),
        ))
    }

    /// Publishes a text or binary message to `topic`; returns its position. With a
    /// remote backend this blocks for one round trip (bounded by its timeout), and
    /// fails at once while the backend is unreachable: nothing is buffered.
    pub fn publish(&self, topic: &str, message: impl Into<Message>) -> Result<Position, HubError> {
        check_topic(topic)?;
        let message = message.into();
        if !message.is_data() {
            return Err(HubError::NotData);
        }
        self.registry.backend.publish(topic, &message)
    }

    /// [`publish`](Self::publish) for async tasks: with the Redis backend and the
    /// `tokio` feature, one round trip on `redis`'s async (multiplexed) connection; the
    /// task waits, no thread does.
    pub async fn publish_async(
        &self,
        topic: &str,
        message: impl Into<Message>,
    ) -> Result<Position, HubError> {
        check_topic(topic)?;
        let message = message.into();
        if !message.is_data() {
            return Err(HubError::NotData);
        }
        self.registry.backend.publish_async(topic, &message).await
    }

    /// The messages of `topic` after `after` (at most `limit`), framed for clients, or
    /// why they cannot all be recovered. Never a partial answer: a gap is
    /// [`Replay::NotRecovered`].
    pub fn replay(&self, topic: &str, after: Position, limit: usize) -> Result<Replay, HubError> {
        check_topic(topic)?;
        let stretch = self
            .registry
            .backend
            .replay(topic, after, limit.saturating_add(1))?;
        Ok(self.framed(topic, stretch, limit))
    }

    /// [`replay`](Self::replay) for async tasks.
    pub async fn replay_async(
        &self,
        topic: &str,
        after: Position,
        limit: usize,
    ) -> Result<Replay, HubError> {
        check_topic(topic)?;
        let stretch = self
            .registry
            .backend
            .replay_async(topic, after, limit.saturating_add(1))
            .await?;
        Ok(self.framed(topic, stretch, limit))
    }

    fn framed(&self, topic: &str, stretch: Stretch, limit: usize) -> Replay {
        let topic: Arc<str> = Arc::from(topic);
        {
            match stretch {
                Stretch::Messages(stored) if stored.len() > limit => {
                    Replay::NotRecovered(Loss::TooMany)
                }
                Stretch::Messages(stored) => Replay::Messages(
                    stored
                        .into_iter()
                        .filter_map(|s| self.registry.prepare(&topic, s))
                        .collect(),
                ),
                Stretch::NotRecovered(loss) => Replay::NotRecovered(loss),
            }
        }
    }

    /// The position of the latest message of `topic`, if it has history.
    pub fn latest(&self, topic: &str) -> Result<Option<Position>, HubError> {
        check_topic(topic)?;
        self.registry.backend.latest(topic)
    }

    /// [`latest`](Self::latest) for async tasks.
    pub async fn latest_async(&self, topic: &str) -> Result<Option<Position>, HubError> {
        check_topic(topic)?;
        self.registry.backend.latest_async(topic).await
    }

    /// A new subscriber (one per connection), with the hub's queue bound and policy.
    pub fn subscriber(&self) -> Subscriber {
        Subscriber::new(self.registry.clone(), None)
    }

    /// A new subscriber for the connection opened by `request`: [`HubConfig::authorize`]
    /// is asked with it for each of its subscribes and publishes, and its publishes
    /// ([`Subscriber::publish`]) count against [`HubConfig::publish_rate`].
    pub fn connection(&self, request: Request) -> Subscriber {
        let mut sub = Subscriber::new(self.registry.clone(), None);
        sub.set_request(request);
        sub
    }

    /// A new subscriber with its own queue bound and policy (a relay for many
    /// connections wants a larger queue than one connection).
    pub fn subscriber_with(
        &self,
        queue_bytes: usize,
        policy: SlowPolicy,
        notify: Option<Arc<dyn Fn() + Send + Sync>>,
    ) -> Subscriber {
        Subscriber::with_limits(self.registry.clone(), queue_bytes, policy, notify)
    }

    /// A new subscriber that calls `notify` (from whichever thread queued it) each time
    /// an event is queued while the queue was empty: for event loops that cannot await
    /// (`duplex-mio` wakes its worker with it).
    pub fn subscriber_with_notify(&self, notify: Arc<dyn Fn() + Send + Sync>) -> Subscriber {
        Subscriber::new(self.registry.clone(), Some(notify))
    }

    /// Marks `client` (the application's id for it, stable across reconnections) as
    /// present in `topic` for one connection, with `info` (a nickname, JSON...) for the
    /// member list; until the returned [`Presence`] is dropped (and
    /// [`HubConfig::presence_grace`] after, if it was the client's last connection on
    /// this node). A client already present on this node or another does not join
    /// again: subscribers of the topic get one [`Event::Presence`] join per client.
    /// With Redis, a blocking round trip when the client is new on this node.
    pub fn join(&self, topic: &str, client: &str, info: &str) -> Result<Presence, HubError> {
        check_topic(topic)?;
        match self
            .registry
            .presence
            .claim(&self.registry, topic, client, info)
        {
            presence::Claim::Held(p) => Ok(p),
            presence::Claim::New(p, info) => {
                let ttl = self.registry.config.presence_ttl;
                match self.registry.backend.present(topic, client, &info, ttl) {
                    Ok(()) => Ok(p),
                    Err(e) => {
                        self.registry.presence.undo(p);
                        Err(e)
                    }
                }
            }
        }
    }

    /// [`join`](Self::join) for async tasks.
    pub async fn join_async(
        &self,
        topic: &str,
        client: &str,
        info: &str,
    ) -> Result<Presence, HubError> {
        check_topic(topic)?;
        match self
            .registry
            .presence
            .claim(&self.registry, topic, client, info)
        {
            presence::Claim::Held(p) => Ok(p),
            presence::Claim::New(p, info) => {
                let ttl = self.registry.config.presence_ttl;
                let backend = &self.registry.backend;
                match backend.present_async(topic, client, &info, ttl).await {
                    Ok(()) => Ok(p),
                    Err(e) => {
                        self.registry.presence.undo(p);
                        Err(e)
                    }
                }
            }
        }
    }

    /// The clients present in `topic`, on every node, each once (sorted by id); its
    /// length is the topic's member count.
    pub fn members(&self, topic: &str) -> Result<Vec<Member>, HubError> {
        check_topic(topic)?;
        self.registry.backend.members(topic)
    }

    /// [`members`](Self::members) for async tasks.
    pub async fn members_async(&self, topic: &str) -> Result<Vec<Member>, HubError> {
        check_topic(topic)?;
        self.registry.backend.members_async(topic).await
    }

    /// The hub's configuration.
    pub fn config(&self) -> &HubConfig {
        &self.registry.config
    }

    /// Topics with local subscribers on this node.
    pub fn topics(&self) -> usize {
        self.registry.watched().len()
    }
}

/// The default [`HubConfig::gap_timeout`].
pub const DEFAULT_GAP_TIMEOUT: Duration = Duration::from_secs(10);

/// A default for backends' reconnect backoff: the first wait.
pub const DEFAULT_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// A default for backends' reconnect backoff: the longest wait.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A new random epoch in `1..2^53`.
pub fn new_epoch() -> u64 {
    let random = getrandom::u64().unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    (random & ((1 << 53) - 1)).max(1)
}
