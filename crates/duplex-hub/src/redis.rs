//! The Redis backend: pub/sub for live fan-out between nodes, one stream per topic for
//! bounded history, positions assigned atomically by a Lua script.
//!
//! Two clients of the `redis` crate, one topic model: the blocking one (for threads:
//! `duplex-mio`'s workers, the pub/sub thread) and, with the `tokio` feature, the async
//! multiplexed connection for the `_async` calls of tokio tasks (publish, replay,
//! latest, and so subscribe/resume), which pipelines the commands of many tasks on one
//! connection.
//!
//! Keys (with the configured prefix `P`): `P{topic}:m`, a hash with the topic's `epoch`
//! and last `offset`; `P{topic}:s`, a stream whose entry ids are `offset-0`, capped with
//! `MAXLEN ~ history_len`; both expire `history_ttl` after the last publish. Channel
//! `P{topic}:c` carries `epoch:offset:node:kind:payload` to the nodes that watch it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use duplex_core::{Bytes, Message, Utf8Bytes};
use redis::{Connection, Script, Value};

use crate::{
    Backend, Change, DEFAULT_BACKOFF_MAX, DEFAULT_BACKOFF_MIN, HubError, Loss, Member, Position,
    Sink, Stored, Stretch, new_epoch,
};

const PUBLISH: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], offset .. '-0', 'k', ARGV[3], 'd', ARGV[4])
local ttl = tonumber(ARGV[5])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
end
redis.call('PUBLISH', KEYS[3], epoch .. ':' .. offset .. ':' .. ARGV[6] .. ':' .. ARGV[3] .. ':' .. ARGV[4])
return {epoch, offset}
";

/// The publish script for a batch: `KEYS` are each message's three keys in turn;
/// `ARGV[1..3]` the history length, TTL and node, then each message's epoch candidate,
/// kind and data. Returns each message's `{epoch, offset}`, in order.
const PUBLISH_MANY: &str = r"
local out = {}
local ttl = tonumber(ARGV[2])
for i = 0, #KEYS / 3 - 1 do
  local m, s, c = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  local kind, data = ARGV[3 * i + 5], ARGV[3 * i + 6]
  local epoch = redis.call('HGET', m, 'epoch')
  if not epoch then
    epoch = ARGV[3 * i + 4]
    redis.call('DEL', s)
    redis.call('HSET', m, 'epoch', epoch)
  end
  local offset = redis.call('HINCRBY', m, 'offset', 1)
  redis.call('XADD', s, 'MAXLEN', '~', ARGV[1], offset .. '-0', 'k', kind, 'd', data)
  if ttl > 0 then
    redis.call('EXPIRE', m, ttl)
    redis.call('EXPIRE', s, ttl)
  end
  redis.call('PUBLISH', c, epoch .. ':' .. offset .. ':' .. ARGV[3] .. ':' .. kind .. ':' .. data)
  out[i + 1] = {epoch, offset}
end
return out
";

const REPLAY: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  return {}
end
local offset = redis.call('HGET', KEYS[1], 'offset')
local missed = tonumber(offset) - tonumber(ARGV[1])
if missed <= 0 then
  return {epoch, offset, {}}
end
local count = math.min(missed, tonumber(ARGV[2]))
return {epoch, offset, redis.call('XRANGE', KEYS[2], (tonumber(ARGV[1]) + 1) .. '-0', '+', 'COUNT', count)}
";

/// Presence: marks `client` present on node `ARGV[1]` until now + `ARGV[4]` ms (Redis's
/// clock); a client new on every node joins (its info kept, a join published). The
/// keys expire when no node refreshes them for twice the TTL.
const PRESENT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[4])
local added = redis.call('ZADD', KEYS[1], now + ttl, ARGV[1] .. ':' .. ARGV[2])
if added == 1 then
  if redis.call('HINCRBY', KEYS[3], ARGV[2], 1) == 1 then
    redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
    redis.call('PUBLISH', KEYS[4], '0:0:' .. ARGV[1] .. ':j:' .. string.len(ARGV[2]) .. ':' .. ARGV[2] .. ARGV[3])
  end
end
for i = 1, 3 do
  redis.call('PEXPIRE', KEYS[i], 2 * ttl)
end
return added
";

/// Presence: removes one node's entry of a client (`gone`); the client leaves when no
/// node has it any more. Shared by [`ABSENT`] and [`SWEEP`].
const GONE: &str = r"
local function gone(entry)
  if redis.call('ZREM', KEYS[1], entry) == 0 then
    return 0
  end
  local node, client = string.match(entry, '^([^:]*):(.*)$')
  if redis.call('HINCRBY', KEYS[3], client, -1) <= 0 then
    redis.call('HDEL', KEYS[3], client)
    local info = redis.call('HGET', KEYS[2], client) or ''
    redis.call('HDEL', KEYS[2], client)
    redis.call('PUBLISH', KEYS[4], '0:0:' .. node .. ':l:' .. string.len(client) .. ':' .. client .. info)
  end
  return 1
end
";

/// Presence: node `ARGV[1]` no longer has client `ARGV[2]`.
const ABSENT: &str = r"
return gone(ARGV[1] .. ':' .. ARGV[2])
";

/// Presence: removes the entries whose time passed (their node stopped refreshing).
const SWEEP: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1000)
for _, entry in ipairs(old) do
  gone(entry)
end
return #old
";

/// How to reach Redis and what to keep there; every field but `url` has a default.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// Messages of history per topic (`XADD ... MAXLEN ~ N`: Redis may keep a few
    /// more). Default 1000.
    pub history_len: usize,
    /// History (and the epoch) of a topic expire this long after its last message;
    /// zero keeps them. Default 24 h.
    pub history_ttl: Duration,
    /// Prefix of every key and channel. Default `duplex:`.
    pub prefix: String,
    /// Bound on connecting and on each command (a publish fails after it). Default 1 s.
    pub timeout: Duration,
    /// First wait before reconnecting; doubles up to `backoff_max`. Default 50 ms.
    pub backoff_min: Duration,
    /// Longest wait before reconnecting. Default 2 s.
    pub backoff_max: Duration,
    /// How often a node checks the latest position of the topics it watches, so a
    /// message lost on the pub/sub path (or a restarted Redis) is noticed even when no
    /// later message arrives. Default 1 s.
    pub sync_interval: Duration,
    /// `url` is a Redis Cluster: one or more of its nodes' URLs, separated by commas
    /// (the client finds the others). Topics are spread over the shards, live fan-out
    /// is sharded pub/sub (Redis 7). Needs the `cluster` feature. Default false.
    pub cluster: bool,
}

impl RedisConfig {
    /// The defaults, for the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            history_len: 1000,
            history_ttl: Duration::from_secs(24 * 3600),
            prefix: "duplex:".to_owned(),
            timeout: Duration::from_secs(1),
            backoff_min: DEFAULT_BACKOFF_MIN,
            backoff_max: DEFAULT_BACKOFF_MAX,
            sync_interval: Duration::from_secs(1),
            cluster: false,
        }
    }
}

/// Topics in Redis, shared by every node configured with the same server and prefix.
/// Blocking calls with timeouts for threads; with the `tokio` feature, the `_async`
/// calls ([`Hub::publish_async`](crate::Hub::publish_async),
/// [`Subscriber::resume_async`](crate::Subscriber::resume_async), ...) use `redis`'s
/// async multiplexed connection. A background thread keeps the pub/sub connection,
/// reconnecting with backoff, for both.
pub struct RedisBackend {
    inner: Arc<Inner>,
    thread: Background<Command>,
}

/// A backend's thread (the pub/sub reader here, the cluster's push thread), started
/// with the node's sink, and the receiver of what the backend tells it.
pub(crate) struct Background<N> {
    thread: Mutex<Option<JoinHandle<()>>>,
    rx: Mutex<Option<Receiver<N>>>,
}

impl<N: Send + 'static> Background<N> {
    pub(crate) fn new(rx: Receiver<N>) -> Self {
        Self {
            thread: Mutex::new(None),
            rx: Mutex::new(Some(rx)),
        }
    }

    /// Starts the thread, once.
    pub(crate) fn start(&self, name: &str, run: impl FnOnce(Receiver<N>) + Send + 'static) {
        let Some(rx) = lock(&self.rx).take() else {
            return;
        };
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run(rx));
        if let Ok(t) = thread {
            *lock(&self.thread) = Some(t);
        }
    }

    /// Waits for the thread, told to stop, to end. The thread itself may drop the last
    /// hub reference (while it delivers): it then ends by itself.
    pub(crate) fn join(&self) {
        if let Some(t) = lock(&self.thread).take() {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

/// Waits, 1 ms at a time, while `waiting` says so, until `deadline`.
pub(crate) fn wait_while(deadline: Instant, waiting: impl Fn() -> bool) {
    while waiting() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// [`wait_while`] for async callers.
#[cfg(feature = "tokio")]
pub(crate) async fn wait_while_async(deadline: Instant, waiting: impl Fn() -> bool) {
    while waiting() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

enum Command {
    Watch(String),
    Unwatch(String),
}

/// What both Redis backends share: the configuration, this node's id, the scripts and
/// how to call them for a topic.
pub(crate) struct Model {
    pub(crate) config: RedisConfig,
    pub(crate) node: String,
    /// The state of the epoch candidates the publish script gets (one per publish,
    /// used only when the topic has no epoch in Redis): a random start, then
    /// SplitMix64 steps, so a publish costs no system call for it.
    epochs: AtomicU64,
    publish: Script,
    publish_many: Script,
    replay: Script,
    present: Script,
    pub(crate) absent: Script,
    pub(crate) sweep: Script,
}

impl Model {
    /// `sharded`: the scripts announce with `SPUBLISH` (Redis Cluster's sharded pub/sub)
    /// rather than `PUBLISH`.
    pub(crate) fn new(config: RedisConfig, sharded: bool) -> Self {
        let script = |text: String| {
            Script::new(&if sharded {
                text.replace("'PUBLISH'", "'SPUBLISH'")
            } else {
                text
            })
        };
        Self {
            config,
            node: format!("{:x}", new_epoch()),
            epochs: AtomicU64::new(new_epoch()),
            publish: script(PUBLISH.to_owned()),
            publish_many: script(PUBLISH_MANY.to_owned()),
            replay: script(REPLAY.to_owned()),
            present: script(PRESENT.to_owned()),
            absent: script(format!("{GONE}{ABSENT}")),
            sweep: script(format!("{GONE}{SWEEP}")),
        }
    }

    /// A key or channel of `topic`: the topic is the hash tag, so all of a topic's keys
    /// are in one Redis Cluster slot.
    pub(crate) fn key(&self, topic: &str, kind: &str) -> String {
        format!("{}{{{}}}:{}", self.config.prefix, topic, kind)
    }

    /// Hands what arrived on `channel` to the node: a presence change, or a message of
    /// another node (this node's own were delivered when published).
    pub(crate) fn received(&self, sink: &Sink, channel: &str, payload: &[u8]) {
        let Some(topic) = self.topic_of(channel) else {
            return;
        };
        match self.incoming(payload) {
            Some(Incoming::Presence(change, member)) => sink.presence(topic, change, member),
            Some(Incoming::Message(stored)) => sink.deliver(topic, stored),
            None => {}
        }
    }

    /// What a payload of a topic's channel is for this node: a presence change, a
    /// message of another node, or nothing (this node's own message, back from Redis,
    /// is dropped before anything is copied; so is what does not parse).
    fn incoming(&self, payload: &[u8]) -> Option<Incoming> {
        let mut fields = payload.splitn(5, |&b| b == b':').skip(2);
        if let (Some(node), Some(b"t" | b"b")) = (fields.next(), fields.next()) {
            if node == self.node.as_bytes() {
                return None;
            }
        }
        if let Some((change, member)) = parse_presence(payload) {
            return Some(Incoming::Presence(change, member));
        }
        let (position, node, message) = parse_live(payload)?;
        (node != self.node.as_bytes()).then_some(Incoming::Message(Stored { position, message }))
    }

    /// A fresh random epoch in `1..2^53` (SplitMix64 over a random start).
    fn epoch_candidate(&self) -> u64 {
        let mut z = self
            .epochs
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z & ((1 << 53) - 1)).max(1)
    }

    /// The topic of channel `P{topic}:c`.
    pub(crate) fn topic_of<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel
            .strip_prefix(self.config.prefix.as_str())
            .and_then(|c| c.strip_prefix('{'))
            .and_then(|c| c.strip_suffix("}:c"))
    }
}

/// What arrived on a topic's channel, for this node.
enum Incoming {
    Presence(Change, Member),
    Message(Stored),
}

struct Inner {
    model: Model,
    client: redis::Client,
    conn: Mutex<Conn>,
    sink: OnceLock<Sink>,
    commands: Mutex<Sender<Command>>,
    stop: AtomicBool,
    /// The channels the pub/sub connection is subscribed to (their topics), while it
    /// is up.
    live: Mutex<HashSet<String>>,
    /// Whether the pub/sub connection is up (only then is it worth waiting for a
    /// topic's subscription).
    listening: AtomicBool,
    /// Bumped each time the pub/sub thread connects: Redis was (again) reachable
    /// then, so a command connection opened before may be dead (a restarted server)
    /// and any backoff wait is over.
    generation: AtomicU64,
    #[cfg(feature = "tokio")]
    aconn: tokio::sync::Mutex<AsyncConn>,
    #[cfg(feature = "tokio")]
    batch: Batch,
}

/// Publishes of async tasks waiting to go to Redis (feature `tokio`): while one batch
/// is on its way, the next ones queue, and go together as one script call.
#[cfg(feature = "tokio")]
#[derive(Default)]
struct Batch {
    queue: Mutex<Vec<Queued>>,
    /// A flushing task is running.
    running: AtomicBool,
}

#[cfg(feature = "tokio")]
struct Queued {
    topic: String,
    message: Message,
    done: tokio::sync::oneshot::Sender<Result<Position, HubError>>,
}

/// The most publishes in one batch.
#[cfg(feature = "tokio")]
const BATCH_MAX: usize = 64;

/// The async command connection (feature `tokio`), with the same backoff rule as the
/// blocking one.
#[cfg(feature = "tokio")]
struct AsyncConn {
    con: Option<redis::aio::MultiplexedConnection>,
    retry_at: Option<Instant>,
    backoff: Duration,
    generation: u64,
}

struct Conn {
    con: Option<Connection>,
    retry_at: Option<Instant>,
    backoff: Duration,
    generation: u64,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn unavailable(e: impl std::fmt::Display) -> HubError {
    HubError::Unavailable(e.to_string())
}

impl RedisBackend {
    /// A backend for the server at `config.url`. Does not connect yet (a node may start
    /// before Redis); fails only on an invalid URL.
    pub fn new(config: RedisConfig) -> Result<Self, HubError> {
        let client = redis::Client::open(config.url.as_str()).map_err(unavailable)?;
        let (tx, rx) = mpsc::channel();
        #[cfg(feature = "tokio")]
        let aconn = tokio::sync::Mutex::new(AsyncConn {
            con: None,
            retry_at: None,
            backoff: config.backoff_min,
            generation: 0,
        });
        #[cfg(feature = "tokio")]
        let batch = Batch::default();
        let inner = Arc::new(Inner {
            #[cfg(feature = "tokio")]
            aconn,
            #[cfg(feature = "tokio")]
            batch,

            client,
            conn: Mutex::new(Conn {
                con: None,
                retry_at: None,
                backoff: config.backoff_min,
                generation: 0,
            }),
            model: Model::new(config, false),
            sink: OnceLock::new(),
            commands: Mutex::new(tx),
            stop: AtomicBool::new(false),
            live: Mutex::default(),
            listening: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        });
        Ok(Self {
            inner,
            thread: Background::new(rx),
        })
    }
}

impl Drop for RedisBackend {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        self.thread.join();
    }
}

impl std::ops::Deref for Inner {
    type Target = Model;

    fn deref(&self) -> &Model {
        &self.model
    }
}

impl Inner {
    /// Runs `f` on the command connection, connecting first if needed; a failed call
    /// drops the connection and the next one waits for the backoff (failing at once
    /// meanwhile): nothing queues up while Redis is away. The backoff ends early when
    /// the pub/sub thread has reconnected, and a connection older than that
    /// reconnection is replaced before use. `retry`: the command may run twice (it only
    /// reads), so if a connection opened earlier turns out dead it is run once more on
    /// a new one.
    fn with_conn<T>(
        &self,
        retry: bool,
        mut f: impl FnMut(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T, HubError> {
        let mut c = lock(&self.conn);
        let generation = self.generation.load(Ordering::Acquire);
        if c.generation != generation {
            c.generation = generation;
            c.con = None;
            c.retry_at = None;
            c.backoff = self.config.backoff_min;
        }
        let mut reused = true;
        loop {
            if c.con.is_none() {
                if let Some(at) = c.retry_at {
                    if Instant::now() < at {
                        return Err(HubError::Unavailable("reconnecting to Redis".into()));
                    }
                }
                match self.connect() {
                    Ok(con) => {
                        c.con = Some(con);
                        c.backoff = self.config.backoff_min;
                        c.retry_at = None;
                        reused = false;
                    }
                    Err(e) => {
                        self.failed(&mut c);
                        return Err(unavailable(e));
                    }
                }
            }
            let con = c.con.as_mut().ok_or_else(|| unavailable("no connection"))?;
            match f(con) {
                Ok(v) => return Ok(v),
                Err(e) if connection_survives(&e) => return Err(unavailable(e)),
                Err(e) => {
                    c.con = None;
                    if retry && reused && e.is_connection_dropped() {
                        // A connection left from before a restart: try a new one now.
                        reused = false;
                        continue;
                    }
                    self.failed(&mut c);
                    return Err(unavailable(e));
                }
            }
        }
    }

    fn failed(&self, c: &mut Conn) {
        c.retry_at = Some(Instant::now() + c.backoff);
        c.backoff = (c.backoff * 2).min(self.config.backoff_max);
    }

    fn connect(&self) -> redis::RedisResult<Connection> {
        let con = self
            .client
            .get_connection_with_timeout(self.config.timeout)?;
        con.set_read_timeout(Some(self.config.timeout))?;
        con.set_write_timeout(Some(self.config.timeout))?;
        Ok(con)
    }

    /// Tells the pub/sub thread to watch or unwatch a topic.
    fn command(&self, command: Command) {
        let _ = lock(&self.commands).send(command);
    }

    fn latest_many(&self, topics: &[String]) -> Result<Vec<Option<Position>>, HubError> {
        if topics.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for t in topics {
            pipe.cmd("HMGET")
                .arg(self.key(t, "m"))
                .arg("epoch")
                .arg("offset");
        }
        let rows: Vec<(Option<u64>, Option<u64>)> = self.with_conn(true, |c| pipe.query(c))?;
        Ok(rows
            .into_iter()
            .map(|row| match row {
                (Some(epoch), Some(offset)) => Some(Position { epoch, offset }),
                _ => None,
            })
            .collect())
    }

    /// Whether a subscribe should still wait for `topic`'s pub/sub subscription: the
    /// pub/sub connection is up and has not subscribed to it yet.
    fn waiting_for(&self, topic: &str) -> bool {
        self.listening.load(Ordering::Acquire) && !lock(&self.live).contains(topic)
    }

    /// Tells the node the latest positions of `topics`; fails when Redis did not
    /// answer (the caller tries again soon).
    fn sync(&self, topics: &[String]) -> Result<(), HubError> {
        let Some(sink) = self.sink.get() else {
            return Ok(());
        };
        let latest = self.latest_many(topics)?;
        for (t, l) in topics.iter().zip(latest) {
            sink.sync(t, l);
        }
        Ok(())
    }
}

/// Whether a failed command left its connection usable: a whole reply that is an
/// error (or of another type) does; anything else (I/O, timeout) may not have.
fn connection_survives(e: &redis::RedisError) -> bool {
    matches!(
        e.kind(),
        redis::ErrorKind::ResponseError
            | redis::ErrorKind::ExtensionError
            | redis::ErrorKind::TypeError
    )
}

/// Hands an unfinished flush to a spawned task when the flushing publish is dropped.
#[cfg(feature = "tokio")]
struct Takeover(Option<Arc<Inner>>);

#[cfg(feature = "tokio")]
impl Drop for Takeover {
    fn drop(&mut self) {
        if let Some(inner) = self.0.take() {
            tokio::spawn(flush(inner));
        }
    }
}

/// Sends the queued publishes in batches until the queue is empty: each batch is one
/// script call (one round trip), and this node's subscribers get the messages in the
/// batch's order.
#[cfg(feature = "tokio")]
async fn flush(inner: Arc<Inner>) {
    loop {
        let batch: Vec<Queued> = {
            let mut queue = lock(&inner.batch.queue);
            let n = queue.len().min(BATCH_MAX);
            queue.drain(..n).collect()
        };
        if batch.is_empty() {
            inner.batch.running.store(false, Ordering::Release);
            // A publish queued just before that saw the flag still set: take it over,
            // unless another flush already has.
            if lock(&inner.batch.queue).is_empty()
                || inner.batch.running.swap(true, Ordering::AcqRel)
            {
                return;
            }
            continue;
        }
        let positions = inner.publish_batch(&batch).await;
        for (i, q) in batch.into_iter().enumerate() {
            let result = match &positions {
                Ok(p) => p
                    .get(i)
                    .copied()
                    .ok_or_else(|| unavailable("unexpected reply to publish")),
                Err(HubError::Unavailable(why)) => Err(HubError::Unavailable(why.clone())),
                Err(e) => Err(unavailable(e)),
            };
            if let Ok(position) = result {
                inner
                    .deliver_own(&*inner, inner.sink.get(), &q.topic, position, &q.message)
                    .await;
            }
            let _ = q.done.send(result);
        }
    }
}

#[cfg(feature = "tokio")]
impl Inner {
    /// One batch of publishes: the single-message script for one, the batch script
    /// for more.
    async fn publish_batch(&self, batch: &[Queued]) -> Result<Vec<Position>, HubError> {
        if let [one] = batch {
            let invocation = self.publish_invocation(&one.topic, &one.message);
            let reply = self.script(self, &invocation).await?;
            return Ok(vec![position_of(&reply)?]);
        }
        let invocation =
            self.publish_many_invocation(batch.iter().map(|q| (q.topic.as_str(), &q.message)));
        let reply = self.script(self, &invocation).await?;
        let Value::Array(rows) = reply else {
            return Err(unavailable("unexpected reply to publish"));
        };
        rows.iter().map(position_of).collect()
    }

    /// Whether a connection may be opened now: not while the backoff after a failure
    /// runs (unless the pub/sub thread has reconnected since, which ends it).
    fn may_connect(&self, c: &mut AsyncConn) -> Result<(), HubError> {
        let generation = self.generation.load(Ordering::Acquire);
        if c.generation != generation {
            c.generation = generation;
            c.con = None;
            c.retry_at = None;
            c.backoff = self.config.backoff_min;
        }
        if c.retry_at.is_some_and(|at| Instant::now() < at) {
            return Err(HubError::Unavailable("reconnecting to Redis".into()));
        }
        Ok(())
    }

    /// The async connection, connecting first if needed (failing at once while the
    /// backoff runs).
    async fn aconn(&self) -> Result<redis::aio::MultiplexedConnection, HubError> {
        let mut c = self.aconn.lock().await;
        self.may_connect(&mut c)?;
        if let Some(con) = &c.con {
            return Ok(con.clone());
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(self.config.timeout)
            .set_response_timeout(self.config.timeout);
        let connected = tokio::time::timeout(
            self.config.timeout,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await;
        match connected {
            Ok(Ok(con)) => {
                c.con = Some(con.clone());
                c.backoff = self.config.backoff_min;
                c.retry_at = None;
                Ok(con)
            }
            Ok(Err(e)) => {
                self.async_failed(&mut c);
                Err(unavailable(e))
            }
            Err(_) => {
                self.async_failed(&mut c);
                Err(unavailable("connecting to Redis timed out"))
            }
        }
    }

    fn async_failed(&self, c: &mut AsyncConn) {
        c.con = None;
        c.retry_at = Some(Instant::now() + c.backoff);
        c.backoff = (c.backoff * 2).min(self.config.backoff_max);
    }
}

/// The connection layer both Redis backends' async calls share (feature `tokio`): the
/// single server's multiplexed connection and the cluster's connection each give a
/// connection on demand and know what to do once a request may have broken it;
/// [`Model`]'s async calls run their commands through it, bounded by the time-out.
#[cfg(feature = "tokio")]
pub(crate) trait Link: Send + Sync {
    type Con: redis::aio::ConnectionLike + Send + 'static;
    /// A connection, connecting first if needed (or failing at once, as the backend's
    /// reconnection rules say).
    fn con(&self) -> impl std::future::Future<Output = Result<Self::Con, HubError>> + Send;
    /// A request failed in a way that may have broken its connection (I/O, time-out):
    /// the next one starts from a new connection.
    fn broken(&self) -> impl std::future::Future<Output = ()> + Send;
}

#[cfg(feature = "tokio")]
impl Link for Inner {
    type Con = redis::aio::MultiplexedConnection;

    fn con(&self) -> impl std::future::Future<Output = Result<Self::Con, HubError>> + Send {
        self.aconn()
    }

    async fn broken(&self) {
        self.async_failed(&mut *self.aconn.lock().await);
    }
}

#[cfg(feature = "tokio")]
impl Model {
    /// Runs one request on a connection of `link`, bounded by the time-out; a failure
    /// that may have broken the connection is reported to `link` (which drops it, so
    /// nothing queues up while Redis is away).
    pub(crate) async fn run<L: Link, T, F, R>(&self, link: &L, request: F) -> Result<T, HubError>
    where
        F: FnOnce(L::Con) -> R,
        R: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let con = link.con().await?;
        match tokio::time::timeout(self.config.timeout, request(con)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if connection_survives(&e) => Err(unavailable(e)),
            Ok(Err(e)) => {
                link.broken().await;
                Err(unavailable(e))
            }
            Err(_) => {
                link.broken().await;
                Err(unavailable("Redis did not answer in time"))
            }
        }
    }

    /// One script call on `link`.
    pub(crate) async fn script<L: Link, T: redis::FromRedisValue>(
        &self,
        link: &L,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, HubError> {
        self.run(link, |mut c| async move {
            invocation.invoke_async(&mut c).await
        })
        .await
    }

    /// One publish (the single-message script).
    pub(crate) async fn publish_on<L: Link>(
        &self,
        link: &L,
        topic: &str,
        message: &Message,
    ) -> Result<Position, HubError> {
        let reply: Value = self
            .script(link, &self.publish_invocation(topic, message))
            .await?;
        position_of(&reply)
    }

    pub(crate) async fn replay_on<L: Link>(
        &self,
        link: &L,
        topic: &str,
        after: Position,
        limit: usize,
    ) -> Result<Stretch, HubError> {
        let reply: Value = self
            .script(link, &self.replay_invocation(topic, after, limit))
            .await?;
        Ok(stretch_of(reply, after, limit))
    }

    pub(crate) async fn latest_on<L: Link>(
        &self,
        link: &L,
        topic: &str,
    ) -> Result<Option<Position>, HubError> {
        let key = self.key(topic, "m");
        let row: (Option<u64>, Option<u64>) = self
            .run(link, |mut c| async move {
                redis::cmd("HMGET")
                    .arg(key)
                    .arg("epoch")
                    .arg("offset")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(match row {
            (Some(epoch), Some(offset)) => Some(Position { epoch, offset }),
            _ => None,
        })
    }

    pub(crate) async fn present_on<L: Link>(
        &self,
        link: &L,
        topic: &str,
        client: &str,
        info: &str,
        ttl: Duration,
    ) -> Result<(), HubError> {
        let invocation = self.present_invocation(topic, client, info, ttl);
        let _: i64 = self.script(link, &invocation).await?;
        Ok(())
    }

    pub(crate) async fn absent_on<L: Link>(
        &self,
        link: &L,
        topic: &str,
        client: &str,
    ) -> Result<(), HubError> {
        let mut invocation = self.presence_invocation(&self.absent, topic);
        invocation.arg(&self.node).arg(client);
        let _: i64 = self.script(link, &invocation).await?;
        Ok(())
    }

    pub(crate) async fn sweep_on<L: Link>(&self, link: &L, topic: &str) -> Result<(), HubError> {
        let invocation = self.presence_invocation(&self.sweep, topic);
        let _: i64 = self.script(link, &invocation).await?;
        Ok(())
    }

    pub(crate) async fn members_on<L: Link>(
        &self,
        link: &L,
        topic: &str,
    ) -> Result<Vec<Member>, HubError> {
        let key = self.key(topic, "pi");
        let rows: Vec<(String, String)> = self
            .run(link, |mut c| async move {
                redis::cmd("HGETALL").arg(key).query_async(&mut c).await
            })
            .await?;
        Ok(Model::members_of(rows))
    }

    /// Delivers this node's own publish to its subscribers (its echo from Redis is
    /// ignored); other nodes' messages not received yet come before it: read here,
    /// asynchronously, rather than in the delivery (which would block).
    pub(crate) async fn deliver_own<L: Link>(
        &self,
        link: &L,
        sink: Option<&Sink>,
        topic: &str,
        position: Position,
        message: &Message,
    ) {
        let Some(sink) = sink else { return };
        let stored = Stored {
            position,
            message: message.clone(),
        };
        match sink.gap(topic, position) {
            Some(from) => {
                let missed = (position.offset - 1 - from.offset) as usize;
                let read = self.replay_on(link, topic, from, missed).await;
                sink.deliver_filled(topic, stored, from, read);
            }
            None => sink.deliver(topic, stored),
        }
    }
}

fn bytes_of(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        other => std::str::from_utf8(bytes_of(other)?).ok()?.parse().ok(),
    }
}

fn message_of(kind: &[u8], data: &[u8]) -> Option<Message> {
    match kind {
        b"t" => Utf8Bytes::try_from(Bytes::copy_from_slice(data))
            .ok()
            .map(Message::Text),
        b"b" => Some(Message::Binary(Bytes::copy_from_slice(data))),
        _ => None,
    }
}

/// One stream entry `[id, [field, value, ...]]` as a stored message.
fn entry(epoch: u64, v: &Value) -> Option<Stored> {
    let Value::Array(parts) = v else { return None };
    let id = std::str::from_utf8(bytes_of(parts.first()?)?).ok()?;
    let offset: u64 = id.split('-').next()?.parse().ok()?;
    let Value::Array(fields) = parts.get(1)? else {
        return None;
    };
    let (mut kind, mut data) = (None, None);
    for pair in fields.chunks(2) {
        match (bytes_of(&pair[0])?, pair.get(1)) {
            (b"k", Some(v)) => kind = bytes_of(v),
            (b"d", Some(v)) => data = bytes_of(v),
            _ => {}
        }
    }
    Some(Stored {
        position: Position { epoch, offset },
        message: message_of(kind?, data?)?,
    })
}

/// Parses a presence payload `0:0:node:j|l:LEN:client+info` (LEN: the client id's
/// length in bytes).
pub(crate) fn parse_presence(payload: &[u8]) -> Option<(Change, Member)> {
    let mut parts = payload.splitn(6, |&b| b == b':');
    let (Some(b"0"), Some(b"0"), Some(_node)) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let change = match parts.next()? {
        b"j" => Change::Join,
        b"l" => Change::Leave,
        _ => return None,
    };
    let len: usize = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let rest = parts.next()?;
    let client = std::str::from_utf8(rest.get(..len)?).ok()?.to_owned();
    let info = std::str::from_utf8(rest.get(len..)?).ok()?.to_owned();
    Some((change, Member { client, info }))
}

/// Parses a pub/sub payload `epoch:offset:node:kind:data`.
pub(crate) fn parse_live(payload: &[u8]) -> Option<(Position, &[u8], Message)> {
    let mut parts = payload.splitn(5, |&b| b == b':');
    let num = |p: Option<&[u8]>| -> Option<u64> { std::str::from_utf8(p?).ok()?.parse().ok() };
    let epoch = num(parts.next())?;
    let offset = num(parts.next())?;
    let node = parts.next()?;
    let kind = parts.next()?;
    let data = parts.next()?;
    Some((Position { epoch, offset }, node, message_of(kind, data)?))
}

impl Model {
    /// The publish script with its keys and arguments.
    pub(crate) fn publish_invocation(
        &self,
        topic: &str,
        message: &Message,
    ) -> redis::ScriptInvocation<'_> {
        let kind = if matches!(message, Message::Text(_)) {
            "t"
        } else {
            "b"
        };
        let mut invocation = self.publish.key(self.key(topic, "m"));
        invocation
            .key(self.key(topic, "s"))
            .key(self.key(topic, "c"))
            .arg(self.epoch_candidate())
            .arg(self.config.history_len.max(1))
            .arg(kind)
            .arg(message.payload())
            .arg(self.config.history_ttl.as_secs())
            .arg(&self.node);
        invocation
    }

    /// The batch publish script for `messages` (topic, message), in order.
    pub(crate) fn publish_many_invocation<'a>(
        &'a self,
        messages: impl Iterator<Item = (&'a str, &'a Message)> + Clone,
    ) -> redis::ScriptInvocation<'a> {
        let mut invocation = self.publish_many.prepare_invoke();
        for (topic, _) in messages.clone() {
            invocation
                .key(self.key(topic, "m"))
                .key(self.key(topic, "s"))
                .key(self.key(topic, "c"));
        }
        invocation
            .arg(self.config.history_len.max(1))
            .arg(self.config.history_ttl.as_secs())
            .arg(&self.node);
        for (_, message) in messages {
            let kind = if matches!(message, Message::Text(_)) {
                "t"
            } else {
                "b"
            };
            invocation
                .arg(self.epoch_candidate())
                .arg(kind)
                .arg(message.payload());
        }
        invocation
    }

    /// A presence script with the topic's presence keys and channel.
    pub(crate) fn presence_invocation<'a>(
        &'a self,
        script: &'a Script,
        topic: &str,
    ) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.key(self.key(topic, "pz"));
        invocation
            .key(self.key(topic, "pi"))
            .key(self.key(topic, "pn"))
            .key(self.key(topic, "c"));
        invocation
    }

    pub(crate) fn present_invocation<'a>(
        &'a self,
        topic: &str,
        client: &str,
        info: &str,
        ttl: Duration,
    ) -> redis::ScriptInvocation<'a> {
        let mut invocation = self.presence_invocation(&self.present, topic);
        invocation
            .arg(&self.node)
            .arg(client)
            .arg(info)
            .arg(ttl.as_millis().max(1) as u64);
        invocation
    }

    pub(crate) fn members_of(rows: Vec<(String, String)>) -> Vec<Member> {
        let mut members: Vec<Member> = rows
            .into_iter()
            .map(|(client, info)| Member { client, info })
            .collect();
        members.sort();
        members
    }

    /// The replay script with its keys and arguments.
    pub(crate) fn replay_invocation(
        &self,
        topic: &str,
        after: Position,
        limit: usize,
    ) -> redis::ScriptInvocation<'_> {
        let mut invocation = self.replay.key(self.key(topic, "m"));
        invocation
            .key(self.key(topic, "s"))
            .arg(after.offset)
            .arg(limit);
        invocation
    }
}

/// The position the publish script answered.
pub(crate) fn position_of(reply: &Value) -> Result<Position, HubError> {
    let Value::Array(v) = reply else {
        return Err(unavailable("unexpected reply to publish"));
    };
    match (v.first().and_then(number), v.get(1).and_then(number)) {
        (Some(epoch), Some(offset)) => Ok(Position { epoch, offset }),
        _ => Err(unavailable("unexpected reply to publish")),
    }
}

/// The replay script's answer as a stretch of messages after `after`, or why not.
pub(crate) fn stretch_of(reply: Value, after: Position, limit: usize) -> Stretch {
    let Value::Array(v) = reply else {
        return Stretch::NotRecovered(Loss::EpochChanged);
    };
    let (Some(epoch), Some(latest)) = (v.first().and_then(number), v.get(1).and_then(number))
    else {
        return Stretch::NotRecovered(Loss::EpochChanged);
    };
    if epoch != after.epoch || latest < after.offset {
        return Stretch::NotRecovered(Loss::EpochChanged);
    }
    let missed = (latest - after.offset).min(limit as u64);
    if missed == 0 {
        return Stretch::Messages(Vec::new());
    }
    let Some(Value::Array(entries)) = v.get(2) else {
        return Stretch::NotRecovered(Loss::Trimmed);
    };
    let stored: Vec<Stored> = entries.iter().filter_map(|e| entry(epoch, e)).collect();
    let contiguous = stored.len() as u64 == missed
        && stored
            .iter()
            .enumerate()
            .all(|(i, s)| s.position.offset == after.offset + 1 + i as u64);
    if !contiguous {
        return Stretch::NotRecovered(Loss::Trimmed);
    }
    Stretch::Messages(stored)
}

impl Backend for RedisBackend {
    fn start(&self, sink: Sink) {
        let _ = self.inner.sink.set(sink);
        let inner = self.inner.clone();
        self.thread
            .start("duplex-hub-redis", move |rx| listen(&inner, &rx));
    }

    fn publish(&self, topic: &str, message: &Message) -> Result<Position, HubError> {
        let inner = &self.inner;
        let invocation = inner.publish_invocation(topic, message);
        let reply: Value = inner.with_conn(false, |c| invocation.invoke(c))?;
        let position = position_of(&reply)?;
        if let Some(sink) = inner.sink.get() {
            // This node's subscribers get it now; its echo from Redis is ignored.
            sink.deliver(
                topic,
                Stored {
                    position,
                    message: message.clone(),
                },
            );
        }
        Ok(position)
    }

    fn replay(&self, topic: &str, after: Position, limit: usize) -> Result<Stretch, HubError> {
        let inner = &self.inner;
        let invocation = inner.replay_invocation(topic, after, limit);
        let reply: Value = inner.with_conn(true, |c| invocation.invoke(c))?;
        Ok(stretch_of(reply, after, limit))
    }

    #[cfg(feature = "tokio")]
    fn publish_async<'a>(
        &'a self,
        topic: &'a str,
        message: &'a Message,
    ) -> crate::BoxFuture<'a, Result<Position, HubError>> {
        Box::pin(async move {
            let inner = &self.inner;
            // Off tokio, no task can flush a batch: one script call of its own.
            if tokio::runtime::Handle::try_current().is_err() {
                let position = inner.publish_on(&**inner, topic, message).await?;
                inner
                    .deliver_own(&**inner, inner.sink.get(), topic, position, message)
                    .await;
                return Ok(position);
            }
            let (done, answer) = tokio::sync::oneshot::channel();
            lock(&inner.batch.queue).push(Queued {
                topic: topic.to_owned(),
                message: message.clone(),
                done,
            });
            if !inner.batch.running.swap(true, Ordering::AcqRel) {
                // This task flushes, its own publish and whatever queues meanwhile (no
                // task to spawn and wake when publishes do not overlap); if it is
                // dropped midway, a spawned task takes over.
                let mut guard = Takeover(Some(inner.clone()));
                flush(inner.clone()).await;
                guard.0 = None;
            }
            answer
                .await
                .unwrap_or_else(|_| Err(unavailable("the publish was abandoned")))
        })
    }

    #[cfg(feature = "tokio")]
    fn replay_async<'a>(
        &'a self,
        topic: &'a str,
        after: Position,
        limit: usize,
    ) -> crate::BoxFuture<'a, Result<Stretch, HubError>> {
        let inner = &*self.inner;
        Box::pin(inner.replay_on(inner, topic, after, limit))
    }

    #[cfg(feature = "tokio")]
    fn latest_async<'a>(
        &'a self,
        topic: &'a str,
    ) -> crate::BoxFuture<'a, Result<Option<Position>, HubError>> {
        let inner = &*self.inner;
        Box::pin(inner.latest_on(inner, topic))
    }

    fn present(
        &self,
        topic: &str,
        client: &str,
        info: &str,
        ttl: Duration,
    ) -> Result<(), HubError> {
        let inner = &self.inner;
        let invocation = inner.present_invocation(topic, client, info, ttl);
        // Idempotent: a second run only refreshes the entry.
        let _: i64 = inner.with_conn(true, |c| invocation.invoke(c))?;
        Ok(())
    }

    #[cfg(feature = "tokio")]
    fn present_async<'a>(
        &'a self,
        topic: &'a str,
        client: &'a str,
        info: &'a str,
        ttl: Duration,
    ) -> crate::BoxFuture<'a, Result<(), HubError>> {
        let inner = &*self.inner;
        Box::pin(inner.present_on(inner, topic, client, info, ttl))
    }

    fn absent(&self, topic: &str, client: &str) -> Result<(), HubError> {
        let inner = &self.inner;
        let mut invocation = inner.presence_invocation(&inner.absent, topic);
        invocation.arg(&inner.node).arg(client);
        let _: i64 = inner.with_conn(true, |c| invocation.invoke(c))?;
        Ok(())
    }

    fn members(&self, topic: &str) -> Result<Vec<Member>, HubError> {
        let key = self.inner.key(topic, "pi");
        let rows: Vec<(String, String)> = self
            .inner
            .with_conn(true, |c| redis::cmd("HGETALL").arg(&key).query(c))?;
        Ok(Model::members_of(rows))
    }

    #[cfg(feature = "tokio")]
    fn members_async<'a>(
        &'a self,
        topic: &'a str,
    ) -> crate::BoxFuture<'a, Result<Vec<Member>, HubError>> {
        let inner = &*self.inner;
        Box::pin(inner.members_on(inner, topic))
    }

    fn wait_live(&self, topic: &str) {
        wait_while(Instant::now() + LIVE_WAIT, || self.inner.waiting_for(topic));
    }

    #[cfg(feature = "tokio")]
    fn wait_live_async<'a>(&'a self, topic: &'a str) -> crate::BoxFuture<'a, ()> {
        Box::pin(wait_while_async(Instant::now() + LIVE_WAIT, || {
            self.inner.waiting_for(topic)
        }))
    }

    fn sweep_presence(&self, topics: &[Arc<str>]) {
        let inner = &self.inner;
        for topic in topics {
            let invocation = inner.presence_invocation(&inner.sweep, topic);
            if inner
                .with_conn::<i64>(true, |c| invocation.invoke(c))
                .is_err()
            {
                return; // Redis is away: the next heartbeat tries again
            }
        }
    }

    fn latest(&self, topic: &str) -> Result<Option<Position>, HubError> {
        Ok(self.inner.latest_many(&[topic.to_owned()])?.pop().flatten())
    }

    fn watch(&self, topic: &str) {
        self.inner.command(Command::Watch(topic.to_owned()));
    }

    fn unwatch(&self, topic: &str) {
        self.inner.command(Command::Unwatch(topic.to_owned()));
    }
}

/// How long the pub/sub reader waits for a message before it looks at its commands.
/// Also the longest a new topic's subscription waits (subscribe waits for it:
/// [`Backend::wait_live`]); shorter would wake the thread more often for nothing.
const POLL: Duration = Duration::from_millis(50);

/// The longest [`Backend::wait_live`] waits for the pub/sub subscription of a topic.
const LIVE_WAIT: Duration = Duration::from_millis(500);

/// The pub/sub thread: (re)connects with backoff, subscribes to the watched topics,
/// delivers what other nodes publish, checks positions after each reconnect and every
/// `sync_interval`, and reports gaps unread for too long.
fn listen(inner: &Inner, rx: &Receiver<Command>) {
    let mut watched: HashSet<String> = HashSet::new();
    let mut backoff = inner.config.backoff_min;
    while !inner.stop.load(Ordering::Relaxed) {
        drain(rx, &mut watched);
        if let Ok(mut con) = inner.connect() {
            inner.reconnected(&mut backoff);
            let ended = session(inner, rx, &mut con, &mut watched);
            inner.disconnected();
            if ended.is_ok() {
                continue; // stopped
            }
        }
        let until = Instant::now() + backoff;
        while inner.waiting(until) {
            std::thread::sleep(POLL.min(backoff));
        }
        backoff = (backoff * 2).min(inner.config.backoff_max);
    }
}

/// Applies the commands that came while no pub/sub connection was up.
fn drain(rx: &Receiver<Command>, watched: &mut HashSet<String>) {
    while let Ok(cmd) = rx.try_recv() {
        match cmd {
            Command::Watch(t) => watched.insert(t),
            Command::Unwatch(t) => watched.remove(&t),
        };
    }
}

impl Inner {
    /// The pub/sub connection is up: Redis answers again, so commands stop waiting
    /// out their backoff, and take a new connection if theirs predates this one.
    fn reconnected(&self, backoff: &mut Duration) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        *backoff = self.config.backoff_min;
    }

    fn disconnected(&self) {
        self.listening.store(false, Ordering::Release);
        lock(&self.live).clear();
    }

    /// Between two attempts to reconnect: whether to wait on (before `until`, not
    /// stopped); reports the gaps unread for too long meanwhile.
    fn waiting(&self, until: Instant) -> bool {
        if let Some(sink) = self.sink.get() {
            sink.expire_gaps();
        }
        Instant::now() < until && !self.stop.load(Ordering::Relaxed)
    }
}

/// One pub/sub connection's life; returns when it fails (or the backend stops).
fn session(
    inner: &Inner,
    rx: &Receiver<Command>,
    con: &mut Connection,
    watched: &mut HashSet<String>,
) -> redis::RedisResult<()> {
    let mut ps = con.as_pubsub();
    ps.set_read_timeout(Some(inner.config.timeout))?;
    let topics: Vec<String> = watched.iter().cloned().collect();
    for t in &topics {
        ps.subscribe(inner.key(t, "c"))?;
    }
    lock(&inner.live).extend(topics.iter().cloned());
    inner.listening.store(true, Ordering::Release);
    ps.set_read_timeout(Some(POLL))?;
    // Anything published while this node was not subscribed is found by the first
    // sync, right away; a sync that fails is tried again after `backoff_min`.
    let mut next_sync = Instant::now();
    while !inner.stop.load(Ordering::Relaxed) {
        while let Ok(cmd) = rx.try_recv() {
            ps.set_read_timeout(Some(inner.config.timeout))?;
            match cmd {
                Command::Watch(t) => {
                    if watched.insert(t.clone()) {
                        ps.subscribe(inner.key(&t, "c"))?;
                        lock(&inner.live).insert(t.clone());
                        if inner.sync(std::slice::from_ref(&t)).is_err() {
                            next_sync = Instant::now() + inner.config.backoff_min;
                        }
                    }
                }
                Command::Unwatch(t) => {
                    if watched.remove(&t) {
                        lock(&inner.live).remove(&t);
                        ps.unsubscribe(inner.key(&t, "c"))?;
                    }
                }
            }
            ps.set_read_timeout(Some(POLL))?;
        }
        if Instant::now() >= next_sync {
            let topics: Vec<String> = watched.iter().cloned().collect();
            next_sync = Instant::now()
                + match inner.sync(&topics) {
                    Ok(()) => inner.config.sync_interval,
                    Err(_) => inner.config.backoff_min,
                };
            if let Some(sink) = inner.sink.get() {
                sink.expire_gaps();
            }
        }
        match ps.get_message() {
            Ok(msg) => {
                if let Some(sink) = inner.sink.get() {
                    inner.received(sink, msg.get_channel_name(), msg.get_payload_bytes());
                }
            }
            Err(e) if e.is_timeout() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_payloads_parse_and_bad_ones_are_ignored() {
        let (p, node, m) = parse_live(b"12:3:ab:t:he:llo").unwrap();
        assert_eq!(
            p,
            Position {
                epoch: 12,
                offset: 3
            }
        );
        assert_eq!(node, b"ab");
        assert_eq!(m.as_text(), Some("he:llo"));
        assert!(parse_live(b"x:3:ab:t:hello").is_none());
        assert!(parse_live(b"1:3:ab:q:hello").is_none());
        assert!(parse_live(b"1:3:ab:t:\xff").is_none());
        assert!(parse_live(b"1:3").is_none());
    }
}
