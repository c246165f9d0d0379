//! The in-memory backend: positions, order, resume, replay limits, slow consumers.

use std::sync::Arc;
use std::time::Duration;

use duplex_hub::{
    CloseCode, Event, Hub, HubConfig, HubError, Loss, MemoryBackend, MemoryConfig, Message,
    Position, Replay, Resumed, SlowPolicy,
};

fn hub_with(config: HubConfig, memory: MemoryConfig) -> Hub {
    Hub::with_backend(config, Arc::new(MemoryBackend::new(memory)))
}

fn next_offset(sub: &mut duplex_hub::Subscriber) -> Option<u64> {
    match sub.try_recv()? {
        Event::Message(d) => Some(d.position.offset),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn offsets_grow_by_one_and_every_subscriber_gets_each_message_once_in_order() {
    let hub = Hub::memory();
    let mut a = hub.subscriber();
    let mut b = hub.subscriber();
    a.subscribe("t").unwrap();
    b.subscribe("t").unwrap();
    b.subscribe("other").unwrap();
    let first = hub.publish("t", "m1").unwrap();
    assert_eq!(first.offset, 1);
    for i in 2..=100u64 {
        let p = hub.publish("t", format!("m{i}")).unwrap();
        assert_eq!(
            p,
            Position {
                epoch: first.epoch,
                offset: i
            }
        );
    }
    hub.publish("other", "x").unwrap();
    for i in 1..=100 {
        let (Some(Event::Message(da)), Some(Event::Message(db))) = (a.try_recv(), b.try_recv())
        else {
            panic!("missing message {i}");
        };
        assert_eq!(da.position.offset, i);
        assert_eq!(da.original.as_text(), Some(format!("m{i}").as_str()));
        // Encoded once for the node: both subscribers share the frame bytes.
        assert_eq!(da.message.frame().as_ptr(), db.message.frame().as_ptr());
    }
    assert!(a.try_recv().is_none());
    assert!(matches!(b.try_recv(), Some(Event::Message(d)) if &*d.topic == "other"));
    assert!(b.try_recv().is_none());
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let hub = Hub::memory();
    assert!(matches!(hub.publish("", "x"), Err(HubError::BadTopic)));
    assert!(matches!(
        hub.publish(&"x".repeat(300), "x"),
        Err(HubError::BadTopic)
    ));
    assert!(matches!(
        hub.publish("t", Message::Ping(Default::default())),
        Err(HubError::NotData)
    ));
    let mut s = hub.subscriber();
    assert!(s.subscribe("").is_err());
}

#[test]
fn resume_gets_every_missed_message_once_then_live_ones() {
    let hub = Hub::memory();
    let mut keep = hub.subscriber(); // keeps the topic watched on this node
    keep.subscribe("t").unwrap();
    let mut a = hub.subscriber();
    a.subscribe("t").unwrap();
    for i in 0..5 {
        hub.publish("t", format!("{i}")).unwrap();
    }
    let mut last = None;
    while let Some(Event::Message(d)) = a.try_recv() {
        last = Some(d.position);
    }
    let last = last.unwrap();
    assert_eq!(last.offset, 5);
    drop(a);
    for i in 5..10 {
        hub.publish("t", format!("{i}")).unwrap();
    }
    let mut b = hub.subscriber();
    assert_eq!(b.resume("t", last).unwrap(), Resumed::Recovered(5));
    hub.publish("t", "live").unwrap();
    let got: Vec<u64> = std::iter::from_fn(|| next_offset(&mut b)).collect();
    assert_eq!(got, (6..=11).collect::<Vec<_>>());

    // Resuming from a position ahead of this node's (as after moving from another
    // node) skips what the client has: no repeats.
    let mut c = hub.subscriber();
    let ahead = Position {
        epoch: last.epoch,
        offset: 13,
    };
    assert_eq!(c.resume("t", ahead).unwrap(), Resumed::Recovered(0));
    for i in 0..3 {
        hub.publish("t", format!("n{i}")).unwrap(); // 12, 13, 14
    }
    let got: Vec<u64> = std::iter::from_fn(|| next_offset(&mut c)).collect();
    assert_eq!(got, vec![14]);

    // A wrong epoch cannot be recovered; live delivery goes on.
    let mut d = hub.subscriber();
    let other = Position {
        epoch: last.epoch ^ 1,
        offset: 3,
    };
    assert_eq!(
        d.resume("t", other).unwrap(),
        Resumed::NotRecovered(Loss::EpochChanged)
    );
    hub.publish("t", "after").unwrap();
    assert_eq!(next_offset(&mut d), Some(15));
}

#[test]
fn replay_says_why_it_cannot_recover() {
    let hub = hub_with(
        HubConfig::default(),
        MemoryConfig {
            history_len: 10,
            ..Default::default()
        },
    );
    let mut first = None;
    for i in 0..30 {
        let p = hub.publish("t", format!("{i}")).unwrap();
        first.get_or_insert(p);
    }
    let epoch = first.unwrap().epoch;
    let at = |offset| Position { epoch, offset };
    assert!(matches!(
        hub.replay("t", at(5), 100).unwrap(),
        Replay::NotRecovered(Loss::Trimmed)
    ));
    assert!(matches!(
        hub.replay("t", at(22), 3).unwrap(),
        Replay::NotRecovered(Loss::TooMany)
    ));
    assert!(matches!(
        hub.replay(
            "t",
            Position {
                epoch: epoch ^ 1,
                offset: 25
            },
            100
        )
        .unwrap(),
        Replay::NotRecovered(Loss::EpochChanged)
    ));
    assert!(matches!(
        hub.replay("nope", at(1), 100).unwrap(),
        Replay::NotRecovered(Loss::EpochChanged)
    ));
    let Replay::Messages(v) = hub.replay("t", at(22), 100).unwrap() else {
        panic!("not recovered");
    };
    let offsets: Vec<u64> = v.iter().map(|d| d.position.offset).collect();
    assert_eq!(offsets, (23..=30).collect::<Vec<_>>());
    let Replay::Messages(v) = hub.replay("t", at(30), 100).unwrap() else {
        panic!("not recovered");
    };
    assert!(v.is_empty());
}

#[test]
fn a_subscriber_that_never_reads_is_closed_at_its_bound_and_others_are_unaffected() {
    let config = HubConfig {
        queue_bytes: 64 * 1024,
        ..Default::default()
    };
    assert_eq!(
        config.slow_policy,
        SlowPolicy::Close(CloseCode::TryAgainLater)
    );
    let hub = hub_with(config, MemoryConfig::default());
    let mut stuck = hub.subscriber();
    stuck.subscribe("t").unwrap();
    let mut reader = hub.subscriber();
    reader.subscribe("t").unwrap();
    let payload = "x".repeat(1000);
    let mut closed_after = None;
    for i in 1..=200u64 {
        hub.publish("t", payload.as_str()).unwrap();
        assert_eq!(next_offset(&mut reader), Some(i));
        if closed_after.is_none() && stuck.is_closed() {
            closed_after = Some(i);
        }
        assert!(stuck.queued_bytes() <= 64 * 1024);
    }
    // 64 KiB / (1000 + 2 header + 64 overhead) = 61 messages fit; the 62nd closes it.
    assert_eq!(closed_after, Some(62));
    assert!(matches!(
        stuck.try_recv(),
        Some(Event::Closed(CloseCode::TryAgainLater))
    ));
    assert!(stuck.try_recv().is_none());
    assert_eq!(stuck.queued_bytes(), 0);
}

#[test]
fn the_lag_policy_drops_with_a_notice_that_replay_can_fill() {
    let config = HubConfig {
        queue_bytes: 10 * (64 + 102),
        slow_policy: SlowPolicy::Lag,
        ..Default::default()
    };
    let hub = hub_with(config, MemoryConfig::default());
    let mut slow = hub.subscriber();
    slow.subscribe("t").unwrap();
    let payload = "y".repeat(100);
    for _ in 0..25 {
        hub.publish("t", payload.as_str()).unwrap();
    }
    // Read everything; keep reading as more is published, to see the notice.
    let mut seen = Vec::new();
    let mut lagged = Vec::new();
    let mut drain = |slow: &mut duplex_hub::Subscriber| {
        while let Some(e) = slow.try_recv() {
            match e {
                Event::Message(d) => seen.push(d.position.offset),
                Event::Lagged {
                    first, last, epoch, ..
                } => lagged.push((epoch, first, last)),
                other => panic!("unexpected {other:?}"),
            }
        }
    };
    drain(&mut slow);
    hub.publish("t", payload.as_str()).unwrap();
    drain(&mut slow);
    assert_eq!(seen[..10], (1..=10).collect::<Vec<_>>());
    assert_eq!(lagged.len(), 1);
    let (epoch, first, last) = lagged[0];
    assert_eq!((first, last), (11, 25));
    assert_eq!(seen[10..], [26]);
    // The application fills the hole from the history.
    let Replay::Messages(v) = hub
        .replay(
            "t",
            Position {
                epoch,
                offset: first - 1,
            },
            100,
        )
        .unwrap()
    else {
        panic!("not recovered");
    };
    let filled: Vec<u64> = v
        .iter()
        .map(|d| d.position.offset)
        .take_while(|&o| o <= last)
        .collect();
    assert_eq!(filled, (11..=25).collect::<Vec<_>>());
}

#[test]
fn concurrent_publishers_keep_each_topic_in_order() {
    let hub = Hub::memory();
    let mut subs: Vec<_> = (0..3).map(|_| hub.subscriber()).collect();
    for s in &mut subs {
        s.subscribe("t").unwrap();
    }
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let hub = hub.clone();
            std::thread::spawn(move || {
                for _ in 0..500 {
                    hub.publish("t", "z").unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for s in &mut subs {
        let got: Vec<u64> = std::iter::from_fn(|| next_offset(s)).collect();
        assert_eq!(got, (1..=2000).collect::<Vec<_>>());
    }
}

#[test]
fn memory_stays_bounded_by_topic_count_and_history() {
    let hub = hub_with(
        HubConfig::default(),
        MemoryConfig {
            history_len: 5,
            max_topics: 3,
            ..Default::default()
        },
    );
    let p = hub.publish("a", "1").unwrap();
    for t in ["b", "c", "d"] {
        hub.publish(t, "1").unwrap();
    }
    // "a" was forgotten: its history is gone, and a new epoch starts.
    assert!(hub.latest("a").unwrap().is_none());
    let q = hub.publish("a", "2").unwrap();
    assert_ne!(q.epoch, p.epoch);
    assert_eq!(q.offset, 1);
}

#[tokio::test]
async fn recv_works_in_select_next_to_other_work() {
    let hub = Hub::memory();
    let mut sub = hub.subscriber();
    sub.subscribe("t").unwrap();
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            for i in 0..50 {
                hub.publish("t", format!("{i}")).unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let mut n = 0;
    let mut ticks = tokio::time::interval(Duration::from_millis(5));
    while n < 50 {
        tokio::select! {
            event = sub.recv() => match event {
                Some(Event::Message(d)) => { n += 1; assert_eq!(d.position.offset, n); }
                other => panic!("unexpected {other:?}"),
            },
            _ = ticks.tick() => {}
        }
    }
    publisher.await.unwrap();
}
