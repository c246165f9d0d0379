//! One subscriber (one connection): a bounded queue for all its topics.

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use duplex_core::CloseCode;

use crate::access::{Bucket, Request};
use crate::registry::{Prefetch, Registry};
use crate::{Event, HubError, Loss, Message, Position, SlowPolicy, check_topic};

/// What each queued event costs on top of its payload, in bytes.
pub(crate) const EVENT_OVERHEAD: usize = 64;
/// Room for notices ([`Event::NotRecovered`], [`Event::Lagged`]) beyond the queue bound:
/// they are never dropped, and past this the subscriber is closed.
const NOTICE_SLACK: usize = 64 * EVENT_OVERHEAD;

/// The answer of [`Subscriber::resume`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resumed {
    /// Every message after the position was queued (this many), and live messages
    /// follow without a gap or a repeat.
    Recovered(usize),
    /// Some messages after the position cannot be recovered; live messages follow from
    /// the topic's current position.
    NotRecovered(Loss),
}

pub(crate) struct Shared {
    pub(crate) id: u64,
    queue: Mutex<Queue>,
    ready: Condvar,
    notify: Option<Arc<dyn Fn() + Send + Sync>>,
    limit: usize,
    policy: SlowPolicy,
}

#[derive(Default)]
struct Queue {
    events: VecDeque<Event>,
    bytes: usize,
    /// Topics whose messages are being dropped: (topic, epoch, first, last).
    lagging: Vec<(Arc<str>, u64, u64, u64)>,
    closed: Option<CloseCode>,
    close_reported: bool,
    waker: Option<Waker>,
    /// The task waiting in [`Subscriber::closed`].
    close_waker: Option<Waker>,
}

fn cost(event: &Event) -> usize {
    EVENT_OVERHEAD
        + match event {
            Event::Message(d) => d.message.frame().len(),
            _ => 0,
        }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an event, applying the slow-consumer policy. Never blocks on the reader.
    pub(crate) fn push(&self, event: Event) {
        let mut q = self.lock();
        if q.closed.is_some() {
            return;
        }
        let was_empty = q.events.is_empty();
        if let Event::Message(d) = &event {
            let over_half = q.bytes > self.limit / 2;
            if let Some(lag) = q.lagging.iter_mut().find(|l| l.0 == d.topic) {
                if over_half {
                    lag.3 = d.position.offset;
                    return;
                }
                self.flush_lags(&mut q);
            }
            let size = cost(&event);
            if q.bytes + size > self.limit {
                match self.policy {
                    SlowPolicy::Close(code) => self.close(&mut q, code),
                    SlowPolicy::Lag => {
                        let p = d.position;
                        q.lagging
                            .push((d.topic.clone(), p.epoch, p.offset, p.offset));
                    }
                }
                drop(q);
                self.wake(was_empty);
                return;
            }
            q.bytes += size;
            q.events.push_back(event);
        } else {
            if q.bytes + EVENT_OVERHEAD > self.limit + NOTICE_SLACK {
                let code = match self.policy {
                    SlowPolicy::Close(code) => code,
                    SlowPolicy::Lag => CloseCode::TryAgainLater,
                };
                self.close(&mut q, code);
            } else {
                q.bytes += EVENT_OVERHEAD;
                q.events.push_back(event);
            }
        }
        drop(q);
        self.wake(was_empty);
    }

    fn close(&self, q: &mut Queue, code: CloseCode) {
        q.closed = Some(code);
        q.events = VecDeque::new();
        q.lagging = Vec::new();
        q.bytes = 0;
    }

    /// Turns the lag records into notices at the end of the queue.
    fn flush_lags(&self, q: &mut Queue) {
        for (topic, epoch, first, last) in std::mem::take(&mut q.lagging) {
            q.bytes += EVENT_OVERHEAD;
            q.events.push_back(Event::Lagged {
                topic,
                epoch,
                first,
                last,
            });
        }
    }

    fn wake(&self, was_empty: bool) {
        let (waker, close_waker) = {
            let mut q = self.lock();
            let close_waker = if q.closed.is_some() {
                q.close_waker.take()
            } else {
                None
            };
            (q.waker.take(), close_waker)
        };
        for waker in [waker, close_waker].into_iter().flatten() {
            waker.wake();
        }
        self.ready.notify_one();
        if was_empty {
            if let Some(notify) = &self.notify {
                notify();
            }
        }
    }

    /// The next event; `Err(())` once the subscriber has ended.
    fn pop(&self, q: &mut Queue) -> Result<Option<Event>, ()> {
        if let Some(code) = q.closed {
            if q.close_reported {
                return Err(());
            }
            q.close_reported = true;
            return Ok(Some(Event::Closed(code)));
        }
        let event = q.events.pop_front();
        if let Some(e) = &event {
            q.bytes = q.bytes.saturating_sub(cost(e));
        }
        if !q.lagging.is_empty() && q.bytes <= self.limit / 2 {
            self.flush_lags(q);
        }
        Ok(event)
    }
}

/// One subscriber of a [`Hub`](crate::Hub), usually one per connection: the topics it
/// follows and one bounded queue of [`Event`]s for all of them. Dropping it leaves all
/// its topics.
pub struct Subscriber {
    shared: Arc<Shared>,
    registry: Arc<Registry>,
    topics: Vec<Arc<str>>,
    /// The request that opened the connection, for the authorization hook.
    request: Arc<Request>,
    /// The publish rate limit's bucket (with [`HubConfig::publish_rate`](crate::HubConfig::publish_rate)).
    bucket: Option<Bucket>,
}

impl fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("topics", &self.topics)
            .field("queued_bytes", &self.queued_bytes())
            .finish()
    }
}

impl Subscriber {
    pub(crate) fn new(
        registry: Arc<Registry>,
        notify: Option<Arc<dyn Fn() + Send + Sync>>,
    ) -> Self {
        let (limit, policy) = (registry.config.queue_bytes, registry.config.slow_policy);
        Self::with_limits(registry, limit, policy, notify)
    }

    pub(crate) fn with_limits(
        registry: Arc<Registry>,
        limit: usize,
        policy: SlowPolicy,
        notify: Option<Arc<dyn Fn() + Send + Sync>>,
    ) -> Self {
        let shared = Arc::new(Shared {
            id: registry.next_id(),
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            notify,
            limit,
            policy,
        });
        let bucket = registry.config.publish_rate.map(Bucket::new);
        Self {
            shared,
            registry,
            topics: Vec::new(),
            request: Arc::default(),
            bucket,
        }
    }

    pub(crate) fn set_request(&mut self, request: Request) {
        self.request = Arc::new(request);
    }

    /// The request that opened this subscriber's connection (empty unless it was made
    /// with [`Hub::connection`](crate::Hub::connection)).
    pub fn request(&self) -> &Request {
        &self.request
    }

    fn may_follow(&self, topic: &str) -> Result<(), HubError> {
        check_topic(topic)?;
        match &self.registry.config.authorize {
            Some(hook) => hook
                .subscribe(&self.request, topic)
                .map_err(HubError::Denied),
            None => Ok(()),
        }
    }

    fn may_publish(&mut self, topic: &str, message: &Message) -> Result<(), HubError> {
        check_topic(topic)?;
        if !message.is_data() {
            return Err(HubError::NotData);
        }
        if let Some(hook) = &self.registry.config.authorize {
            hook.publish(&self.request, topic, message)
                .map_err(HubError::Denied)?;
        }
        if let Some(bucket) = &mut self.bucket {
            bucket.take().map_err(HubError::RateLimited)?;
        }
        Ok(())
    }

    /// Publishes for this subscriber's connection: asks [`HubConfig::authorize`] with
    /// the connection's request, counts against [`HubConfig::publish_rate`]
    /// ([`HubError::RateLimited`] past it; nothing is published), then as
    /// [`Hub::publish`](crate::Hub::publish).
    ///
    /// [`HubConfig::authorize`]: crate::HubConfig::authorize
    /// [`HubConfig::publish_rate`]: crate::HubConfig::publish_rate
    pub fn publish(
        &mut self,
        topic: &str,
        message: impl Into<Message>,
    ) -> Result<Position, HubError> {
        let message = message.into();
        self.may_publish(topic, &message)?;
        self.registry.backend.publish(topic, &message)
    }

    /// [`publish`](Self::publish) for async tasks (as
    /// [`Hub::publish_async`](crate::Hub::publish_async)).
    pub async fn publish_async(
        &mut self,
        topic: &str,
        message: impl Into<Message>,
    ) -> Result<Position, HubError> {
        let message = message.into();
        self.may_publish(topic, &message)?;
        self.registry.backend.publish_async(topic, &message).await
    }

    /// For a latest-value topic ([`HubConfig::latest_value`](crate::HubConfig::latest_value)):
    /// the position just before its latest message, to resume from.
    fn before_latest(latest: Option<Position>) -> Option<Position> {
        latest.filter(|p| p.offset > 0).map(|p| Position {
            epoch: p.epoch,
            offset: p.offset - 1,
        })
    }

    /// Follows `topic` from now on; returns the position live delivery starts after
    /// (`None` if the topic has no history or the backend could not say). Subscribing
    /// twice is a no-op.
    ///
    /// On a latest-value topic ([`HubConfig::latest_value`](crate::HubConfig::latest_value))
    /// the topic's latest message is queued first.
    pub fn subscribe(&mut self, topic: &str) -> Result<Option<Position>, HubError> {
        self.may_follow(topic)?;
        if self.is_subscribed(topic) {
            return Ok(None);
        }
        if self.registry.config.keeps_latest(topic) {
            let latest = self.registry.backend.latest(topic)?;
            if let Some(after) = Self::before_latest(latest) {
                self.resume(topic, after)?;
                return Ok(latest);
            }
        }
        let (topic, start, _) =
            self.registry
                .add(topic, &self.shared, None, Prefetch::default())?;
        self.registry.backend.wait_live(&topic);
        self.topics.push(topic);
        Ok(start)
    }

    /// [`subscribe`](Self::subscribe) for async tasks: when the topic is new on this
    /// node, its latest position is read with the backend's async call, so the task
    /// waits, no thread does.
    pub async fn subscribe_async(&mut self, topic: &str) -> Result<Option<Position>, HubError> {
        self.may_follow(topic)?;
        if self.is_subscribed(topic) {
            return Ok(None);
        }
        if self.registry.config.keeps_latest(topic) {
            let latest = self.registry.backend.latest_async(topic).await?;
            if let Some(after) = Self::before_latest(latest) {
                self.resume_async(topic, after).await?;
                return Ok(latest);
            }
        }
        let pre = self.prefetch(topic, None).await;
        let (topic, start, _) = self.registry.add(topic, &self.shared, None, pre)?;
        self.registry.backend.wait_live_async(&topic).await;
        self.topics.push(topic);
        Ok(start)
    }

    /// [`resume`](Self::resume) for async tasks: what the client missed is read with the
    /// backend's async calls first (up to the hub's `replay_limit`). Only if this node
    /// delivered past what was read in the meantime is the rest read with a blocking
    /// call (one round trip, bounded by the backend's timeout).
    pub async fn resume_async(
        &mut self,
        topic: &str,
        after: Position,
    ) -> Result<Resumed, HubError> {
        self.may_follow(topic)?;
        if self.is_subscribed(topic) {
            return Ok(Resumed::Recovered(0));
        }
        let pre = self.prefetch(topic, Some(after)).await;
        let (topic, _, resumed) = self.registry.add(topic, &self.shared, Some(after), pre)?;
        self.registry.backend.wait_live_async(&topic).await;
        self.topics.push(topic);
        Ok(resumed.unwrap_or(Resumed::Recovered(0)))
    }

    async fn prefetch(&self, topic: &str, after: Option<Position>) -> Prefetch {
        let backend = &self.registry.backend;
        let mut pre = Prefetch::default();
        if !self.registry.is_watched(topic) {
            pre.latest = Some(backend.latest_async(topic).await);
        }
        if let Some(after) = after {
            let limit = self.registry.config.replay_limit.saturating_add(1);
            pre.replay = Some(backend.replay_async(topic, after, limit).await);
        }
        pre
    }

    /// Follows `topic` from just after `after` (a position the client last saw): the
    /// missed messages are queued first, then live ones, each exactly once; or, when
    /// they cannot be recovered, live ones from now and [`Resumed::NotRecovered`].
    /// If already subscribed, nothing is replayed.
    pub fn resume(&mut self, topic: &str, after: Position) -> Result<Resumed, HubError> {
        self.may_follow(topic)?;
        if self.is_subscribed(topic) {
            return Ok(Resumed::Recovered(0));
        }
        let (topic, _, resumed) =
            self.registry
                .add(topic, &self.shared, Some(after), Prefetch::default())?;
        self.registry.backend.wait_live(&topic);
        self.topics.push(topic);
        Ok(resumed.unwrap_or(Resumed::Recovered(0)))
    }

    /// Stops following `topic`; returns whether it was followed. Queued events stay.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        let Some(i) = self.topics.iter().position(|t| &**t == topic) else {
            return false;
        };
        let topic = self.topics.swap_remove(i);
        self.registry.remove(&topic, self.shared.id);
        true
    }

    /// Whether this subscriber follows `topic`.
    pub fn is_subscribed(&self, topic: &str) -> bool {
        self.topics.iter().any(|t| &**t == topic)
    }

    /// The topics this subscriber follows.
    pub fn topics(&self) -> &[Arc<str>] {
        &self.topics
    }

    /// Bytes queued (payloads plus a fixed overhead per event).
    pub fn queued_bytes(&self) -> usize {
        self.shared.lock().bytes
    }

    /// Whether the slow-consumer policy closed this subscriber.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed.is_some()
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<Event> {
        let mut q = self.shared.lock();
        self.shared.pop(&mut q).ok().flatten()
    }

    /// The next event, waiting up to `timeout` (`None`: nothing came, or the
    /// subscriber has ended).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        let mut q = self.shared.lock();
        loop {
            match self.shared.pop(&mut q) {
                Ok(Some(event)) => return Some(event),
                Err(()) => return None,
                Ok(None) => {}
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            q = self
                .shared
                .ready
                .wait_timeout(q, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The next event; `None` once the subscriber has ended (after [`Event::Closed`]).
    /// Works on any executor and is cancel-safe: use it in `select!` next to the
    /// connection's `recv`.
    pub async fn recv(&mut self) -> Option<Event> {
        poll_fn(|cx| {
            let mut q = self.shared.lock();
            match self.shared.pop(&mut q) {
                Ok(Some(event)) => Poll::Ready(Some(event)),
                Err(()) => Poll::Ready(None),
                Ok(None) => {
                    q.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

impl Subscriber {
    /// Resolves when the slow-consumer policy closes this subscriber, with the close
    /// code. Takes `&self`, so a task can race it against a send that waits on a
    /// client that stopped reading, and close the connection at once instead of
    /// waiting for the write deadline (see `duplex_hub::tokio::send_event`).
    pub async fn closed(&self) -> CloseCode {
        poll_fn(|cx| {
            let mut q = self.shared.lock();
            match q.closed {
                Some(code) => Poll::Ready(code),
                None => {
                    q.close_waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        for topic in std::mem::take(&mut self.topics) {
            self.registry.remove(&topic, self.shared.id);
        }
    }
}
