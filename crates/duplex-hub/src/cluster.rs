//! The Redis Cluster backend (feature `cluster`): the Redis backend's model (the same
//! scripts, keys and positions) on a Redis Cluster, so the broker scales past one
//! Redis instance.
//!
//! - Every key of a topic has the topic as its hash tag (`P{topic}:m`, `:s`, `:c`,
//!   presence `:pz`, `:pi`, `:pn`), so a topic lives in one slot, on one shard, and its
//!   scripts run there atomically. Topics spread over the shards.
//! - Live fan-out is Redis 7's sharded pub/sub: the scripts announce with `SPUBLISH`
//!   on the topic's channel, which stays inside the topic's shard (classic `PUBLISH`
//!   is broadcast to every node of a cluster), and a node `SSUBSCRIBE`s to the
//!   channels of the topics it has subscribers for.
//! - `redis`'s async cluster client (RESP3, pushes on a channel) routes each command
//!   to its slot's master, follows `MOVED`, refreshes the slot map after a failover
//!   and subscribes again after a reconnection. It runs on a small runtime on a thread
//!   of this backend; the blocking calls hand their work to it and wait (bounded by
//!   `timeout`), the async calls await it from the caller's runtime.
//! - A second thread takes the pushes (messages, presence) and, every
//!   `sync_interval` and after a disconnection, compares each watched topic's latest
//!   position with the node's, so what a shard's failover lost on the live path is
//!   read from the stream (or reported).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use duplex_core::Message;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, Value};

use crate::redis::{Background, Link, Model, lock, unavailable, wait_while, wait_while_async};
use crate::{Backend, BoxFuture, HubError, Member, Position, RedisConfig, Sink, Stored, Stretch};

/// What the push thread is told.
enum Note {
    Push(PushInfo),
    Watch(String),
    Unwatch(String),
}

pub(crate) struct ClusterBackend {
    inner: Arc<Inner>,
    runtime: Option<Runtime>,
    thread: Background<Note>,
}

/// The backend's runtime: a current-thread runtime driven by a thread of its own until
/// the backend is dropped.
struct Runtime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

struct Inner {
    model: Model,
    client: redis::cluster::ClusterClient,
    con: tokio::sync::Mutex<Option<ClusterConnection>>,
    handle: tokio::runtime::Handle,
    sink: OnceLock<Sink>,
    notes: Mutex<Sender<Note>>,
    /// Topics whose channel is subscribed.
    live: Mutex<HashSet<String>>,
    stop: AtomicBool,
}

impl ClusterBackend {
    /// A backend for the cluster whose nodes (some of them: the client discovers the
    /// rest) are listed in `config.url`, separated by commas.
    pub(crate) fn new(config: RedisConfig) -> Result<Self, HubError> {
        let (tx, rx) = mpsc::channel();
        let pushes = tx.clone();
        let seeds: Vec<String> = config
            .url
            .split(',')
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        let client = ClusterClientBuilder::new(seeds)
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(move |info: PushInfo| pushes.send(Note::Push(info)))
            .connection_timeout(config.timeout)
            .response_timeout(config.timeout)
            .retries(2)
            .build()
            .map_err(unavailable)?;
        let runtime = Runtime::start()?;
        let inner = Arc::new(Inner {
            model: Model::new(config, true),
            client,
            con: tokio::sync::Mutex::new(None),
            handle: runtime.handle.clone(),
            sink: OnceLock::new(),
            notes: Mutex::new(tx),
            live: Mutex::default(),
            stop: AtomicBool::new(false),
        });
        Ok(Self {
            inner,
            runtime: Some(runtime),
            thread: Background::new(rx),
        })
    }
}

impl Runtime {
    fn start() -> Result<Self, HubError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(unavailable)?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("duplex-hub-cluster-rt".into())
            .spawn(move || {
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })
            .map_err(unavailable)?;
        Ok(Self {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for ClusterBackend {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        self.thread.join();
        drop(self.runtime.take());
    }
}

impl std::ops::Deref for Inner {
    type Target = Model;

    fn deref(&self) -> &Model {
        &self.model
    }
}

impl Link for Inner {
    type Con = ClusterConnection;

    /// The cluster connection, connecting first if needed (bounded by the timeout).
    async fn con(&self) -> Result<ClusterConnection, HubError> {
        let mut con = self.con.lock().await;
        if let Some(c) = &*con {
            return Ok(c.clone());
        }
        // Connected on the backend's runtime, which then drives the connection's tasks
        // whichever runtime the caller is on.
        let client = self.client.clone();
        let connecting = self
            .handle
            .spawn(async move { client.get_async_connection().await });
        let connected = tokio::time::timeout(self.config.timeout, connecting).await;
        match connected {
            Ok(Err(e)) => Err(unavailable(e)),
            Ok(Ok(Ok(c))) => {
                *con = Some(c.clone());
                Ok(c)
            }
            Ok(Ok(Err(e))) => Err(unavailable(e)),
            Err(_) => Err(unavailable("connecting to the Redis Cluster timed out")),
        }
    }

    /// A shard is gone or moved (a failover): the next request starts from a new
    /// connection, which reads the slot map again from a node that answers, rather
    /// than wait on this one's recovery.
    async fn broken(&self) {
        *self.con.lock().await = None;
    }
}

impl Inner {
    /// Runs `work` on the backend's runtime and waits for it (from a thread that is
    /// not that runtime's).
    fn block<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(Arc<Inner>) -> BoxFuture<'static, Result<T, HubError>> + Send + 'static,
    ) -> Result<T, HubError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let inner = self.clone();
        self.handle.spawn(async move {
            let _ = tx.send(work(inner).await);
        });
        rx.recv_timeout(self.config.timeout * 3)
            .unwrap_or_else(|_| Err(unavailable("the Redis Cluster did not answer in time")))
    }

    async fn subscribe(&self, topic: &str, on: bool) -> Result<(), HubError> {
        let channel = self.key(topic, "c");
        self.run(self, |mut c| async move {
            if on {
                c.ssubscribe(channel).await
            } else {
                c.sunsubscribe(channel).await
            }
        })
        .await
    }

    /// Tells the node the latest positions of `topics`.
    fn sync(self: &Arc<Self>, topics: &[String]) -> Result<(), HubError> {
        let Some(sink) = self.sink.get() else {
            return Ok(());
        };
        for t in topics {
            let topic = t.clone();
            let latest = self.block(move |inner| {
                Box::pin(async move { inner.latest_on(&*inner, &topic).await })
            })?;
            sink.sync(t, latest);
        }
        Ok(())
    }

    fn waiting_for(&self, topic: &str) -> bool {
        !lock(&self.live).contains(topic)
    }
}

/// How long the push thread waits for a push before it looks at its timers.
const POLL: Duration = Duration::from_millis(20);

/// The push thread: subscriptions, pushes (messages and presence), syncs.
fn run(inner: &Arc<Inner>, rx: &Receiver<Note>) {
    let mut watched: HashSet<String> = HashSet::new();
    let mut next_sync = Instant::now();
    while !inner.stop.load(Ordering::Relaxed) {
        let note = match rx.recv_timeout(POLL) {
            Ok(note) => Some(note),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        match note {
            Some(Note::Watch(t)) if watched.insert(t.clone()) => {
                let topic = t.clone();
                let ok = inner
                    .block(move |i| Box::pin(async move { i.subscribe(&topic, true).await }))
                    .is_ok();
                if ok {
                    lock(&inner.live).insert(t.clone());
                    if inner.sync(std::slice::from_ref(&t)).is_err() {
                        next_sync = Instant::now() + inner.config.backoff_min;
                    }
                } else {
                    // Subscribed again (with the others) at the next sync.
                    next_sync = Instant::now() + inner.config.backoff_min;
                }
            }
            Some(Note::Unwatch(t)) if watched.remove(&t) => {
                lock(&inner.live).remove(&t);
                let _ = inner.block(move |i| Box::pin(async move { i.subscribe(&t, false).await }));
            }
            Some(Note::Watch(_) | Note::Unwatch(_)) => {}
            Some(Note::Push(push)) => match push.kind {
                PushKind::SMessage | PushKind::Message => {
                    let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
                        (push.data.first(), push.data.get(1))
                    else {
                        continue;
                    };
                    if let (Some(sink), Ok(channel)) =
                        (inner.sink.get(), std::str::from_utf8(channel))
                    {
                        inner.received(sink, channel, payload);
                    }
                }
                // A connection to a shard dropped: the client subscribes again by
                // itself; what the shard announced meanwhile is read by a sync now.
                PushKind::Disconnection => next_sync = Instant::now(),
                _ => {}
            },
            None => {}
        }
        if Instant::now() >= next_sync {
            let topics: Vec<String> = watched.iter().cloned().collect();
            // Topics whose subscription failed are subscribed again first.
            let missing: Vec<String> = topics
                .iter()
                .filter(|t| !lock(&inner.live).contains(*t))
                .cloned()
                .collect();
            for t in missing {
                let topic = t.clone();
                if inner
                    .block(move |i| Box::pin(async move { i.subscribe(&topic, true).await }))
                    .is_ok()
                {
                    lock(&inner.live).insert(t);
                }
            }
            next_sync = Instant::now()
                + match inner.sync(&topics) {
                    Ok(()) => inner.config.sync_interval,
                    Err(_) => inner.config.backoff_min,
                };
            if let Some(sink) = inner.sink.get() {
                sink.expire_gaps();
            }
        }
    }
}

impl Backend for ClusterBackend {
    fn start(&self, sink: Sink) {
        let _ = self.inner.sink.set(sink);
        let inner = self.inner.clone();
        self.thread
            .start("duplex-hub-cluster", move |rx| run(&inner, &rx));
    }

    fn publish(&self, topic: &str, message: &Message) -> Result<Position, HubError> {
        let (t, m) = (topic.to_owned(), message.clone());
        let position = self
            .inner
            .block(move |i| Box::pin(async move { i.publish_on(&*i, &t, &m).await }))?;
        if let Some(sink) = self.inner.sink.get() {
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

    fn publish_async<'a>(
        &'a self,
        topic: &'a str,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<Position, HubError>> {
        Box::pin(async move {
            let inner = &*self.inner;
            let position = inner.publish_on(inner, topic, message).await?;
            inner
                .deliver_own(inner, inner.sink.get(), topic, position, message)
                .await;
            Ok(position)
        })
    }

    fn replay(&self, topic: &str, after: Position, limit: usize) -> Result<Stretch, HubError> {
        let t = topic.to_owned();
        self.inner
            .block(move |i| Box::pin(async move { i.replay_on(&*i, &t, after, limit).await }))
    }

    fn replay_async<'a>(
        &'a self,
        topic: &'a str,
        after: Position,
        limit: usize,
    ) -> BoxFuture<'a, Result<Stretch, HubError>> {
        let inner = &*self.inner;
        Box::pin(inner.replay_on(inner, topic, after, limit))
    }

    fn latest(&self, topic: &str) -> Result<Option<Position>, HubError> {
        let t = topic.to_owned();
        self.inner
            .block(move |i| Box::pin(async move { i.latest_on(&*i, &t).await }))
    }

    fn latest_async<'a>(
        &'a self,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<Option<Position>, HubError>> {
        let inner = &*self.inner;
        Box::pin(inner.latest_on(inner, topic))
    }

    fn watch(&self, topic: &str) {
        let _ = lock(&self.inner.notes).send(Note::Watch(topic.to_owned()));
    }

    fn unwatch(&self, topic: &str) {
        let _ = lock(&self.inner.notes).send(Note::Unwatch(topic.to_owned()));
    }

    fn present(
        &self,
        topic: &str,
        client: &str,
        info: &str,
        ttl: Duration,
    ) -> Result<(), HubError> {
        let (t, c, i) = (topic.to_owned(), client.to_owned(), info.to_owned());
        self.inner.block(move |inner| {
            Box::pin(async move { inner.present_on(&*inner, &t, &c, &i, ttl).await })
        })
    }

    fn present_async<'a>(
        &'a self,
        topic: &'a str,
        client: &'a str,
        info: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), HubError>> {
        let inner = &*self.inner;
        Box::pin(inner.present_on(inner, topic, client, info, ttl))
    }

    fn absent(&self, topic: &str, client: &str) -> Result<(), HubError> {
        let (t, c) = (topic.to_owned(), client.to_owned());
        self.inner
            .block(move |inner| Box::pin(async move { inner.absent_on(&*inner, &t, &c).await }))
    }

    fn members(&self, topic: &str) -> Result<Vec<Member>, HubError> {
        let t = topic.to_owned();
        self.inner
            .block(move |inner| Box::pin(async move { inner.members_on(&*inner, &t).await }))
    }

    fn members_async<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Vec<Member>, HubError>> {
        let inner = &*self.inner;
        Box::pin(inner.members_on(inner, topic))
    }

    fn sweep_presence(&self, topics: &[Arc<str>]) {
        for topic in topics {
            let t = topic.to_string();
            if self
                .inner
                .block(move |inner| Box::pin(async move { inner.sweep_on(&*inner, &t).await }))
                .is_err()
            {
                return;
            }
        }
    }

    fn wait_live(&self, topic: &str) {
        wait_while(Instant::now() + self.inner.config.timeout, || {
            self.inner.waiting_for(topic)
        });
    }

    fn wait_live_async<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(wait_while_async(
            Instant::now() + self.inner.config.timeout,
            || self.inner.waiting_for(topic),
        ))
    }
}
