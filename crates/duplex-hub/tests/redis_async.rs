//! The async calls (`publish_async`, `subscribe_async`, `resume_async`, `replay_async`)
//! on `redis`'s async connection, against a real `redis-server` of the test's own.
#![cfg(all(feature = "redis", feature = "tokio"))]

mod common;

use std::time::{Duration, Instant};

use common::RedisServer;
use duplex_hub::{
    Event, Hub, HubConfig, HubError, Message, Position, RedisConfig, Replay, Resumed,
};

fn node(url: &str) -> Hub {
    let redis = RedisConfig {
        timeout: Duration::from_millis(300),
        sync_interval: Duration::from_millis(200),
        ..RedisConfig::new(url)
    };
    Hub::redis(HubConfig::default(), redis).unwrap()
}

/// The positions of the next `n` messages of `sub` (panics on a notice or a timeout).
async fn positions(sub: &mut duplex_hub::Subscriber, n: usize) -> Vec<Position> {
    let mut got = Vec::new();
    while got.len() < n {
        match tokio::time::timeout(Duration::from_secs(5), sub.recv()).await {
            Ok(Some(Event::Message(d))) => got.push(d.position),
            other => panic!("after {got:?}: {other:?}"),
        }
    }
    got
}

#[tokio::test(flavor = "current_thread")]
async fn async_calls_on_one_thread_publish_resume_and_fill_gaps_in_order() {
    // One runtime thread: the async calls wait on Redis without holding it.
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, b) = (node(&redis.url()), node(&redis.url()));
    let mut on_a = a.subscriber();
    assert_eq!(
        on_a.subscribe_async("t").await.unwrap(),
        None,
        "no history yet"
    );
    // Node B publishes, then node A right after: A's own publish may come before B's
    // reach it over pub/sub; A then reads the gap first. Either way, one order.
    let mut published = Vec::new();
    for round in 0..20 {
        for i in 0..5 {
            published.push(
                b.publish_async("t", Message::text(format!("b{round}.{i}")))
                    .await
                    .unwrap(),
            );
        }
        published.push(
            a.publish_async("t", Message::text(format!("a{round}")))
                .await
                .unwrap(),
        );
    }
    let epoch = published[0].epoch;
    let expected: Vec<Position> = (1..=120).map(|offset| Position { epoch, offset }).collect();
    assert_eq!(published, expected);
    assert_eq!(positions(&mut on_a, 120).await, expected);

    // A client that saw up to offset 100 resumes on node B: 101..120 once, then live.
    let mut moved = b.subscriber();
    let resumed = moved
        .resume_async("t", Position { epoch, offset: 100 })
        .await
        .unwrap();
    assert_eq!(resumed, Resumed::Recovered(20));
    a.publish_async("t", "after").await.unwrap();
    let got = positions(&mut moved, 21).await;
    assert_eq!(
        got,
        (101..=121)
            .map(|offset| Position { epoch, offset })
            .collect::<Vec<_>>()
    );

    // Replays and their refusals, asynchronously.
    match a
        .replay_async("t", Position { epoch, offset: 118 }, 10)
        .await
        .unwrap()
    {
        Replay::Messages(m) => assert_eq!(
            m.iter().map(|d| d.position.offset).collect::<Vec<_>>(),
            [119, 120, 121]
        ),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        a.replay_async(
            "t",
            Position {
                epoch: epoch ^ 1,
                offset: 3
            },
            10
        )
        .await
        .unwrap(),
        Replay::NotRecovered(duplex_hub::Loss::EpochChanged)
    ));
    assert_eq!(
        a.latest_async("t").await.unwrap(),
        Some(Position { epoch, offset: 121 })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_publishes_fail_fast_while_redis_is_paused_and_work_again_after() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = node(&redis.url());
    let mut sub = a.subscriber();
    sub.subscribe_async("p").await.unwrap();
    let first = a.publish_async("p", "before").await.unwrap();
    redis.signal("-STOP");
    let mut refused = 0;
    let mut slowest = Duration::ZERO;
    let paused = Instant::now();
    while paused.elapsed() < Duration::from_millis(1500) {
        let started = Instant::now();
        match a.publish_async("p", "during").await {
            Err(HubError::Unavailable(_)) => refused += 1,
            other => panic!("a publish to a paused Redis: {other:?}"),
        }
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    redis.signal("-CONT");
    assert!(refused > 0);
    assert!(
        slowest < Duration::from_millis(700),
        "each refused within the timeout (300 ms) plus scheduling, slowest {slowest:?}"
    );
    // Back: the connection is made again after the backoff.
    let deadline = Instant::now() + Duration::from_secs(5);
    let after = loop {
        match a.publish_async("p", "after").await {
            Ok(p) => break p,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("Redis is back, publishes still fail: {e}"),
        }
    };
    assert_eq!(after.epoch, first.epoch, "same Redis, same epoch");
    // Publishes that timed out during the pause may have been applied when Redis
    // resumed (see docs/SCALING.md): the subscriber gets every offset once, in order.
    let got = positions(&mut sub, after.offset as usize).await;
    assert_eq!(
        got,
        (1..=after.offset)
            .map(|offset| Position {
                epoch: first.epoch,
                offset
            })
            .collect::<Vec<_>>()
    );
    eprintln!(
        "async pause: {refused} publishes refused, slowest refusal {slowest:?}, {} applied",
        after.offset
    );
}

/// Publishes of many tasks at once go to Redis in batches (one script call for several
/// messages): fewer script calls than publishes, and every message delivered once, in
/// order, on this node and another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_go_in_batches_and_arrive_once_in_order() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, b) = (node(&redis.url()), node(&redis.url()));
    const TASKS: usize = 100;
    const EACH: usize = 5;
    let mut subs = Vec::new();
    for hub in [&a, &b] {
        let mut s = hub.subscriber();
        for t in 0..4 {
            s.subscribe_async(&format!("b{t}")).await.unwrap();
        }
        subs.push(s);
    }
    let calls = |redis: &RedisServer| -> u64 {
        let stats = redis.cli(&["info", "commandstats"]);
        stats
            .lines()
            .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
            .filter_map(|l| {
                l.split("calls=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    };
    let before = calls(&redis);
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let a = a.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                for j in 0..EACH {
                    let topic = format!("b{}", (i + j) % 4);
                    got.push((
                        topic.clone(),
                        a.publish_async(&topic, format!("{i}/{j}")).await.unwrap(),
                    ));
                }
                got
            })
        })
        .collect();
    let mut sent = std::collections::BTreeMap::<String, Vec<Position>>::new();
    for t in tasks {
        for (topic, p) in t.await.unwrap() {
            sent.entry(topic).or_default().push(p);
        }
    }
    let script_calls = calls(&redis) - before;
    let total = TASKS * EACH;
    eprintln!("{total} publishes in {script_calls} script calls");
    assert!(
        script_calls < total as u64,
        "{script_calls} calls for {total} publishes"
    );
    for v in sent.values_mut() {
        v.sort();
        let offsets: Vec<u64> = v.iter().map(|p| p.offset).collect();
        assert_eq!(
            offsets,
            (1..=v.len() as u64).collect::<Vec<_>>(),
            "each offset once"
        );
    }
    for s in &mut subs {
        let got = positions(s, total).await;
        let mut per_topic = std::collections::BTreeMap::<u64, Vec<u64>>::new();
        for p in &got {
            per_topic.entry(p.epoch).or_default().push(p.offset);
        }
        for offsets in per_topic.values() {
            assert!(
                offsets.windows(2).all(|w| w[1] == w[0] + 1),
                "in order, once"
            );
        }
        assert_eq!(got.len(), total);
    }
}
