//! The async paths against a backend that counts its calls: a local publish whose
//! position jumps past messages this node has not received yet reads the gap with the
//! backend's async replay, and `subscribe_async`/`resume_async` read ahead
//! asynchronously; none of them makes a blocking call.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};

use duplex_hub::{
    Backend, BoxFuture, Event, Hub, HubConfig, HubError, Loss, Message, Position, Resumed, Sink,
    Stored, Stretch,
};

const EPOCH: u64 = 7;

/// One topic's history in memory; "other nodes" publish without delivering here.
#[derive(Default)]
struct Counting {
    history: Mutex<Vec<Stored>>,
    sink: OnceLock<Sink>,
    blocking: AtomicUsize,
    asynchronous: AtomicUsize,
}

impl Counting {
    fn append(&self, message: &Message) -> Stored {
        let mut h = self.history.lock().unwrap();
        let stored = Stored {
            position: Position {
                epoch: EPOCH,
                offset: h.len() as u64 + 1,
            },
            message: message.clone(),
        };
        h.push(stored.clone());
        stored
    }

    /// A publish on another node whose live copy has not reached this one.
    fn publish_elsewhere(&self, text: &str) {
        self.append(&Message::text(text.to_owned()));
    }

    fn stretch(&self, after: Position, limit: usize) -> Stretch {
        if after.epoch != EPOCH {
            return Stretch::NotRecovered(Loss::EpochChanged);
        }
        let h = self.history.lock().unwrap();
        Stretch::Messages(
            h.iter()
                .skip(after.offset as usize)
                .take(limit)
                .cloned()
                .collect(),
        )
    }
}

impl Backend for Counting {
    fn start(&self, sink: Sink) {
        let _ = self.sink.set(sink);
    }

    fn publish(&self, _topic: &str, _message: &Message) -> Result<Position, HubError> {
        unreachable!("the test publishes with publish_async")
    }

    fn replay(&self, _topic: &str, after: Position, limit: usize) -> Result<Stretch, HubError> {
        self.blocking.fetch_add(1, Relaxed);
        Ok(self.stretch(after, limit))
    }

    fn latest(&self, _topic: &str) -> Result<Option<Position>, HubError> {
        self.blocking.fetch_add(1, Relaxed);
        Ok(self.history.lock().unwrap().last().map(|s| s.position))
    }

    fn watch(&self, _topic: &str) {}

    fn unwatch(&self, _topic: &str) {}

    fn publish_async<'a>(
        &'a self,
        topic: &'a str,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<Position, HubError>> {
        Box::pin(async move {
            let stored = self.append(message);
            let position = stored.position;
            let sink = self.sink.get().unwrap();
            match sink.gap(topic, position) {
                Some(from) => {
                    let missed = (position.offset - 1 - from.offset) as usize;
                    let read = self.replay_async(topic, from, missed).await;
                    sink.deliver_filled(topic, stored, from, read);
                }
                None => sink.deliver(topic, stored),
            }
            Ok(position)
        })
    }

    fn replay_async<'a>(
        &'a self,
        _topic: &'a str,
        after: Position,
        limit: usize,
    ) -> BoxFuture<'a, Result<Stretch, HubError>> {
        self.asynchronous.fetch_add(1, Relaxed);
        let stretch = self.stretch(after, limit);
        Box::pin(async move {
            tokio::task::yield_now().await;
            Ok(stretch)
        })
    }

    fn latest_async<'a>(
        &'a self,
        _topic: &'a str,
    ) -> BoxFuture<'a, Result<Option<Position>, HubError>> {
        self.asynchronous.fetch_add(1, Relaxed);
        let latest = self.history.lock().unwrap().last().map(|s| s.position);
        Box::pin(async move { Ok(latest) })
    }
}

fn offsets(sub: &mut duplex_hub::Subscriber) -> Vec<(u64, String)> {
    let mut got = Vec::new();
    while let Some(event) = sub.try_recv() {
        match event {
            Event::Message(d) => got.push((
                d.position.offset,
                d.original.as_text().unwrap_or_default().to_owned(),
            )),
            other => panic!("unexpected {other:?}"),
        }
    }
    got
}

#[tokio::test(flavor = "current_thread")]
async fn async_publish_and_resume_read_gaps_without_blocking_calls() {
    let backend = Arc::new(Counting::default());
    let hub = Hub::with_backend(HubConfig::default(), backend.clone());
    let mut sub = hub.subscriber();
    assert_eq!(sub.subscribe_async("t").await.unwrap(), None);

    // Three messages from other nodes have not arrived; this node's own publish comes
    // after them: they are read (asynchronously) and delivered first, in order.
    for text in ["x1", "x2", "x3"] {
        backend.publish_elsewhere(text);
    }
    let p = hub.publish_async("t", "own").await.unwrap();
    assert_eq!(
        p,
        Position {
            epoch: EPOCH,
            offset: 4
        }
    );
    let expected: Vec<(u64, String)> = [(1, "x1"), (2, "x2"), (3, "x3"), (4, "own")]
        .into_iter()
        .map(|(o, t)| (o, t.to_owned()))
        .collect();
    assert_eq!(offsets(&mut sub), expected);
    // The live copies of the others' messages arriving late are repeats: dropped.
    let late: Vec<Stored> = backend.history.lock().unwrap()[..3].to_vec();
    for stored in late {
        backend.sink.get().unwrap().deliver("t", stored);
    }
    assert_eq!(offsets(&mut sub), vec![]);

    // A client that saw offset 1 resumes: 2..4 once, then live ones.
    let mut moved = hub.subscriber();
    let resumed = moved
        .resume_async(
            "t",
            Position {
                epoch: EPOCH,
                offset: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!(resumed, Resumed::Recovered(3));
    hub.publish_async("t", "next").await.unwrap();
    assert_eq!(
        offsets(&mut moved),
        [(2, "x2"), (3, "x3"), (4, "own"), (5, "next")]
            .into_iter()
            .map(|(o, t)| (o, t.to_owned()))
            .collect::<Vec<_>>()
    );
    assert_eq!(offsets(&mut sub), vec![(5, "next".to_owned())]);
    assert_eq!(
        backend.blocking.load(Relaxed),
        0,
        "subscribe, resume and publish made no blocking call"
    );
    assert!(backend.asynchronous.load(Relaxed) >= 3);
}
