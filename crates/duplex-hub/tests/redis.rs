//! The Redis backend against a real `redis-server` (each test starts its own on a free
//! 127.0.0.1 port in a temporary directory, without persistence, and stops it).
//! Without `redis-server`, the tests fail when `CI` is set and are skipped otherwise.
#![cfg(feature = "redis")]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::RedisServer;
use duplex_hub::{
    CloseCode, Event, Hub, HubConfig, HubError, Loss, Message, Position, RedisConfig, Resumed,
    Subscriber,
};

fn config(url: &str) -> RedisConfig {
    RedisConfig {
        timeout: Duration::from_millis(300),
        backoff_max: Duration::from_millis(200),
        sync_interval: Duration::from_millis(200),
        ..RedisConfig::new(url)
    }
}

fn node(url: &str) -> Hub {
    Hub::redis(HubConfig::default(), config(url)).unwrap()
}

/// Waits until `sub` has received `n` messages (or `timeout` passes); returns all events.
fn collect(sub: &mut Subscriber, n: usize, timeout: Duration) -> Vec<Event> {
    let deadline = Instant::now() + timeout;
    let mut events = Vec::new();
    let mut messages = 0;
    while messages < n {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        if let Some(e) = sub.recv_timeout(left) {
            if matches!(e, Event::Message(_)) {
                messages += 1;
            }
            events.push(e);
        }
    }
    events
}

fn offsets(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .map(|e| match e {
            Event::Message(d) => d.position.offset,
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

#[test]
fn two_nodes_deliver_each_message_once_in_order_to_10000_subscribers() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = node(&redis.url());
    let b = node(&redis.url());
    const TOPICS: usize = 4;
    const PER_TOPIC: u64 = 20;
    let mut subs: Vec<(usize, Subscriber)> = (0..10_000)
        .map(|i| {
            let hub = if i % 2 == 0 { &a } else { &b };
            let mut s = hub.subscriber();
            s.subscribe(&format!("t{}", i % TOPICS)).unwrap();
            (i % TOPICS, s)
        })
        .collect();
    // Published at once: node B's pub/sub subscription may not be active yet, and
    // what it misses live it fills from the stream.
    for round in 0..PER_TOPIC {
        for t in 0..TOPICS {
            let publisher = if round % 2 == 0 { &a } else { &b };
            let p = publisher
                .publish(&format!("t{t}"), format!("{t}/{round}"))
                .unwrap();
            assert_eq!(p.offset, round + 1);
        }
    }
    let started = Instant::now();
    for (t, s) in &mut subs {
        let events = collect(s, PER_TOPIC as usize, Duration::from_secs(10));
        assert_eq!(offsets(&events), (1..=PER_TOPIC).collect::<Vec<_>>());
        for (round, e) in events.iter().enumerate() {
            let Event::Message(d) = e else { unreachable!() };
            assert_eq!(d.original.as_text(), Some(format!("{t}/{round}").as_str()));
        }
        assert!(s.try_recv().is_none());
    }
    eprintln!(
        "10,000 subscribers x {PER_TOPIC} messages checked in {:?}",
        started.elapsed()
    );
}

/// A notice: after, resumed, why.
type Notice = (Option<Position>, Option<Position>, Loss);

/// Checks one subscriber's events: each message is the next after the previous one
/// (or after a notice's `resumed`), so there is no repeat and no silent gap. Returns
/// the positions delivered and the notices.
fn check(events: &[Event]) -> (BTreeSet<Position>, Vec<Notice>) {
    let mut delivered = BTreeSet::new();
    let mut notices = Vec::new();
    let mut expect: Option<Position> = None; // the last position; None: any epoch's start
    let mut started = false;
    for e in events {
        match e {
            Event::Message(d) => {
                let p = d.position;
                match expect {
                    Some(last) if started || last.offset > 0 || last.epoch != 0 => {
                        assert_eq!(
                            (p.epoch, p.offset),
                            (last.epoch, last.offset + 1),
                            "a gap or repeat without a notice"
                        );
                    }
                    _ => assert!(!started || p.offset == 1, "gap after a notice at {p}"),
                }
                assert!(delivered.insert(p), "repeated {p}");
                expect = Some(p);
                started = true;
            }
            Event::NotRecovered {
                after,
                resumed,
                reason,
                ..
            } => {
                notices.push((*after, *resumed, *reason));
                expect = *resumed;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    (delivered, notices)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Publishes on `hub` every 2 ms until `stop`; returns the positions that succeeded and
/// how many publishes failed.
fn publisher(hub: Hub, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(Vec<Position>, usize)> {
    std::thread::spawn(move || {
        let (mut ok, mut failed) = (Vec::new(), 0);
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            match hub.publish("live", format!("m{i}")) {
                Ok(p) => ok.push(p),
                Err(HubError::Unavailable(_)) => failed += 1,
                Err(e) => panic!("{e}"),
            }
            // Never longer than the command timeout (no unbounded waiting).
            assert!(started.elapsed() < Duration::from_millis(1500));
            i += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
        (ok, failed)
    })
}

#[test]
fn a_redis_restart_mid_stream_ends_with_no_gap_or_an_explicit_notice() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let a = node(&redis.url());
    let b = node(&redis.url());
    let mut sub = b.subscriber();
    sub.subscribe("live").unwrap();
    let mut local = a.subscriber();
    local.subscribe("live").unwrap();
    let rss_before = rss_kib();
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = publisher(a.clone(), stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    redis.kill();
    std::thread::sleep(Duration::from_millis(300));
    redis.spawn();
    // The nodes reconnect by themselves; publishing succeeds again.
    std::thread::sleep(Duration::from_millis(1200));
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = publishing.join().unwrap();
    assert!(failed > 0, "publishes during the outage must fail");
    let last = *ok.last().unwrap();
    let epochs: BTreeSet<u64> = ok.iter().map(|p| p.epoch).collect();
    assert_eq!(
        epochs.len(),
        2,
        "a restart without persistence starts a new epoch"
    );
    for s in [&mut sub, &mut local] {
        let mut events = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(e) = s.recv_timeout(Duration::from_millis(100)) {
                let done = matches!(&e, Event::Message(d) if d.position == last);
                events.push(e);
                if done {
                    break;
                }
            }
        }
        let (delivered, notices) = check(&events);
        assert!(delivered.contains(&last), "recovered by itself");
        assert!(
            notices.iter().any(|n| n.2 == Loss::EpochChanged),
            "the epoch change is explicit: {notices:?}"
        );
        // Every successful publish was delivered, or a notice covers it.
        for p in &ok {
            let covered = notices.iter().any(|(after, resumed, _)| {
                after.is_some_and(|a| a.epoch == p.epoch && p.offset > a.offset)
                    && resumed.is_none_or(|r| r.epoch != p.epoch || p.offset <= r.offset)
            });
            assert!(delivered.contains(p) || covered, "{p} lost silently");
        }
        eprintln!(
            "restart: {} published ({failed} refused during the outage), {} delivered, notices {notices:?}",
            ok.len(),
            delivered.len()
        );
    }
    let growth = rss_kib().saturating_sub(rss_before);
    assert!(growth < 64 * 1024, "RSS grew by {growth} KiB");
}

#[test]
fn a_paused_redis_refuses_publishes_then_delivery_resumes_without_a_gap() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = node(&redis.url());
    let b = node(&redis.url());
    let mut sub = b.subscriber();
    sub.subscribe("live").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = publisher(a.clone(), stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    redis.signal("-STOP");
    std::thread::sleep(Duration::from_secs(2));
    redis.signal("-CONT");
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = publishing.join().unwrap();
    assert!(failed > 0, "publishes during the pause must fail");
    let last = *ok.last().unwrap();
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(e) = sub.recv_timeout(Duration::from_millis(100)) {
            let done = matches!(&e, Event::Message(d) if d.position == last);
            events.push(e);
            if done {
                break;
            }
        }
    }
    let (delivered, notices) = check(&events);
    assert!(
        notices.is_empty(),
        "same Redis, same epoch: nothing to lose ({notices:?})"
    );
    // A publish that timed out while Redis was paused may still have been applied
    // after it resumed: the subscriber then has it though the publisher saw an error.
    for p in &ok {
        assert!(delivered.contains(p), "{p} missing");
    }
    eprintln!(
        "pause: {} published, {failed} refused, {} delivered in order (epoch {})",
        ok.len(),
        delivered.len(),
        last.epoch
    );
}

#[test]
fn a_client_moving_to_another_node_resumes_exactly_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = node(&redis.url());
    let b = node(&redis.url());
    let publisher_node = node(&redis.url());
    let mut on_a = a.subscriber();
    on_a.subscribe("room").unwrap();
    for i in 0..50 {
        publisher_node.publish("room", format!("{i}")).unwrap();
    }
    let first = collect(&mut on_a, 20, Duration::from_secs(5));
    let seen = offsets(&first[..20]);
    let last_seen = match &first[19] {
        Event::Message(d) => d.position,
        _ => unreachable!(),
    };
    // Node A goes away with the client's connection.
    drop(on_a);
    drop(a);
    for i in 50..80 {
        publisher_node.publish("room", format!("{i}")).unwrap();
    }
    let mut on_b = b.subscriber();
    assert_eq!(
        on_b.resume("room", last_seen).unwrap(),
        Resumed::Recovered(60)
    );
    for i in 80..100 {
        publisher_node.publish("room", format!("{i}")).unwrap();
    }
    let rest = collect(&mut on_b, 80, Duration::from_secs(5));
    let mut all = seen;
    all.extend(offsets(&rest));
    assert_eq!(all, (1..=100).collect::<Vec<_>>());
    assert!(on_b.recv_timeout(Duration::from_millis(300)).is_none());
}

#[test]
fn a_subscriber_that_never_reads_is_closed_and_the_others_keep_their_latency() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let hub_config = HubConfig {
        queue_bytes: 256 * 1024,
        ..Default::default()
    };
    let a = Hub::redis(hub_config.clone(), config(&redis.url())).unwrap();
    let b = Hub::redis(hub_config, config(&redis.url())).unwrap();
    let mut stuck = b.subscriber();
    stuck.subscribe("feed").unwrap();
    let reader = Arc::new(Mutex::new(b.subscriber()));
    reader.lock().unwrap().subscribe("feed").unwrap();
    let base = Instant::now();
    let latencies = Arc::new(Mutex::new(HashMap::new()));
    let reading = {
        let (reader, latencies) = (reader.clone(), latencies.clone());
        std::thread::spawn(move || {
            let mut reader = reader.lock().unwrap();
            let mut n = 0;
            while n < 600 {
                match reader.recv_timeout(Duration::from_secs(5)) {
                    Some(Event::Message(d)) => {
                        let text = d.original.as_text().unwrap();
                        let sent: u128 = text[..text.find(' ').unwrap()].parse().unwrap();
                        let micros = base.elapsed().as_micros() - sent;
                        latencies.lock().unwrap().insert(d.position.offset, micros);
                        n += 1;
                    }
                    other => panic!("reader got {other:?}"),
                }
            }
        })
    };
    let pad = "p".repeat(1000);
    for _ in 0..600 {
        a.publish("feed", format!("{} {pad}", base.elapsed().as_micros()))
            .unwrap();
        std::thread::sleep(Duration::from_micros(500));
    }
    reading.join().unwrap();
    assert!(stuck.is_closed());
    assert!(matches!(
        stuck.try_recv(),
        Some(Event::Closed(CloseCode::TryAgainLater))
    ));
    let latencies = latencies.lock().unwrap();
    assert_eq!(latencies.len(), 600);
    let mut v: Vec<u128> = latencies.values().copied().collect();
    v.sort_unstable();
    let (p50, p99) = (v[v.len() / 2], v[v.len() * 99 / 100]);
    eprintln!("reader next to a stuck subscriber: p50 {p50} us, p99 {p99} us");
    assert!(p99 < 250_000, "p99 {p99} us");
}

#[test]
fn redis_replay_says_why_it_cannot_recover() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let hub = Hub::redis(
        HubConfig::default(),
        RedisConfig {
            history_len: 10,
            ..config(&redis.url())
        },
    )
    .unwrap();
    let mut first = None;
    for i in 0..500 {
        let p = hub.publish("t", format!("{i}")).unwrap();
        first.get_or_insert(p);
    }
    let epoch = first.unwrap().epoch;
    let at = |offset| Position { epoch, offset };
    // `MAXLEN ~ 10` trims whole stream nodes: at least 10 are kept, the early ones not.
    assert!(matches!(
        hub.replay("t", at(5), 1000).unwrap(),
        duplex_hub::Replay::NotRecovered(Loss::Trimmed)
    ));
    assert!(matches!(
        hub.replay("t", at(480), 5).unwrap(),
        duplex_hub::Replay::NotRecovered(Loss::TooMany)
    ));
    assert!(matches!(
        hub.replay(
            "t",
            Position {
                epoch: epoch ^ 1,
                offset: 495
            },
            100
        )
        .unwrap(),
        duplex_hub::Replay::NotRecovered(Loss::EpochChanged)
    ));
    assert!(matches!(
        hub.replay("never", at(1), 100).unwrap(),
        duplex_hub::Replay::NotRecovered(Loss::EpochChanged)
    ));
    let duplex_hub::Replay::Messages(v) = hub.replay("t", at(490), 100).unwrap() else {
        panic!("not recovered");
    };
    let got: Vec<(u64, String)> = v
        .iter()
        .map(|d| (d.position.offset, d.original.as_text().unwrap().to_owned()))
        .collect();
    let want: Vec<(u64, String)> = (491..=500).map(|o| (o, format!("{}", o - 1))).collect();
    assert_eq!(got, want);
    // Binary messages keep their kind and bytes through the stream.
    let p = hub
        .publish("bin", Message::binary(vec![0u8, 255, b':', 1]))
        .unwrap();
    let duplex_hub::Replay::Messages(v) = hub
        .replay(
            "bin",
            Position {
                epoch: p.epoch,
                offset: 0,
            },
            10,
        )
        .unwrap()
    else {
        panic!("not recovered");
    };
    assert_eq!(v[0].original, Message::binary(vec![0u8, 255, b':', 1]));
}

/// Receives from `sub` until every position in `want` was delivered (or `timeout`).
fn until_all(sub: &mut Subscriber, want: &BTreeSet<Position>, timeout: Duration) -> Vec<Event> {
    let deadline = Instant::now() + timeout;
    let mut events = Vec::new();
    let mut missing = want.clone();
    while !missing.is_empty() {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        if let Some(e) = sub.recv_timeout(left) {
            if let Event::Message(d) = &e {
                missing.remove(&d.position);
            }
            events.push(e);
        }
    }
    events
}

/// The race of issue 26: Redis is killed, stays down 1.6 s and restarts empty; a fresh
/// node publishes at 100/s at once, while the nodes that had subscribers are still
/// waiting out their reconnect backoff (up to 2 s) and hold command connections to the
/// dead server. They must read the new epoch from its start: no `Unavailable`, every
/// message once. Three rounds, each with its own server.
#[test]
fn after_an_empty_restart_a_late_node_delivers_every_message_of_the_new_epoch_once() {
    let mut lost = 0;
    let mut published = 0;
    for round in 0..3 {
        let Some(mut redis) = RedisServer::start() else {
            return;
        };
        // The default backoff (50 ms doubling to 2 s), so the nodes come back late.
        let slow = |url: &str| {
            let config = RedisConfig {
                timeout: Duration::from_millis(300),
                ..RedisConfig::new(url)
            };
            Hub::redis(HubConfig::default(), config).unwrap()
        };
        let a = slow(&redis.url());
        let b = slow(&redis.url());
        let mut subs = [a.subscriber(), b.subscriber()];
        for s in &mut subs {
            s.subscribe("room").unwrap();
        }
        for i in 0..5 {
            a.publish("room", format!("before {i}")).unwrap();
        }
        for s in &mut subs {
            assert_eq!(
                offsets(&collect(s, 5, Duration::from_secs(5))),
                [1, 2, 3, 4, 5]
            );
        }
        redis.kill();
        std::thread::sleep(Duration::from_millis(1600));
        redis.spawn();
        let c = node(&redis.url());
        let mut sent = Vec::new();
        let started = Instant::now();
        for i in 0..250u64 {
            let p = c.publish("room", format!("after {i}")).unwrap();
            sent.push((p, started.elapsed()));
            let next = Duration::from_millis(10 * (i + 1));
            std::thread::sleep(next.saturating_sub(started.elapsed()));
        }
        let want: BTreeSet<Position> = sent.iter().map(|s| s.0).collect();
        published += want.len();
        for (name, s) in ["a", "b"].iter().zip(&mut subs) {
            let events = until_all(s, &want, Duration::from_secs(10));
            let (delivered, notices) = check(&events);
            assert!(
                notices.iter().all(|n| n.2 == Loss::EpochChanged),
                "round {round}, node {name}: {notices:?}"
            );
            let missing = want.difference(&delivered).count();
            lost += missing;
            assert_eq!(missing, 0, "round {round}, node {name}: {notices:?}");
            // Node C published its first message while this node was not back yet:
            // the race was run, not avoided.
            let first = events
                .iter()
                .position(|e| matches!(e, Event::Message(d) if d.position == sent[0].0))
                .unwrap();
            assert!(
                events[..first].iter().all(
                    |e| !matches!(e, Event::Message(d) if d.position.epoch == sent[0].0.epoch)
                )
            );
            eprintln!(
                "round {round}, node {name}: {} delivered, notices {notices:?}",
                delivered.len()
            );
        }
    }
    eprintln!("restart race: {lost} lost of {published} published");
}

/// Writes messages into a topic's history the way the publish script does, without
/// announcing them: a node sees the gap only when a later message comes.
fn hidden(
    con: &mut redis::Connection,
    topic: &str,
    epoch: u64,
    offsets: std::ops::RangeInclusive<u64>,
) {
    for o in offsets {
        let _: () = redis::pipe()
            .cmd("HSET")
            .arg(format!("duplex:{{{topic}}}:m"))
            .arg("epoch")
            .arg(epoch)
            .arg("offset")
            .arg(o)
            .ignore()
            .cmd("XADD")
            .arg(format!("duplex:{{{topic}}}:s"))
            .arg(format!("{o}-0"))
            .arg("k")
            .arg("t")
            .arg("d")
            .arg(format!("hidden {o}"))
            .ignore()
            .query(con)
            .unwrap();
    }
}

/// Node A publishes 3 messages, then 4 and 5 are stored without being announced and 6
/// is announced with Redis pausing writes (and so scripts) right after it: node B's
/// read of 4-5 cannot be answered. Returns B's hub, its subscriber, the raw connection
/// and the epoch.
fn gap_while_paused(
    redis: &RedisServer,
    pause_ms: u64,
    gap_timeout: Duration,
) -> (Hub, Hub, Subscriber, redis::Connection, u64) {
    let a = node(&redis.url());
    let b = Hub::redis(
        HubConfig {
            gap_timeout,
            ..HubConfig::default()
        },
        config(&redis.url()),
    )
    .unwrap();
    let mut sub = b.subscriber();
    sub.subscribe("g").unwrap();
    let mut epoch = 0;
    for i in 0..3 {
        epoch = a.publish("g", format!("{i}")).unwrap().epoch;
    }
    assert_eq!(
        offsets(&collect(&mut sub, 3, Duration::from_secs(5))),
        [1, 2, 3]
    );
    let mut con = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    hidden(&mut con, "g", epoch, 4..=6);
    let _: () = redis::pipe()
        .cmd("PUBLISH")
        .arg("duplex:{g}:c")
        .arg(format!("{epoch}:6:test:t:hidden 6"))
        .ignore()
        .cmd("CLIENT")
        .arg("PAUSE")
        .arg(pause_ms)
        .arg("WRITE")
        .ignore()
        .query(&mut con)
        .unwrap();
    (a, b, sub, con, epoch)
}

#[test]
fn a_gap_read_while_redis_is_paused_and_stopped_is_filled_afterwards() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (_a, _b, mut sub, _con, epoch) =
        gap_while_paused(&redis, 500, duplex_hub::DEFAULT_GAP_TIMEOUT);
    // Writes (and scripts) are held for 500 ms, then the whole server stops for 2 s:
    // node B's reads of the gap time out again and again.
    std::thread::sleep(Duration::from_millis(200));
    redis.signal("-STOP");
    let stopped = Instant::now();
    assert!(
        sub.recv_timeout(Duration::from_millis(1800)).is_none(),
        "nothing can be delivered before the gap is read"
    );
    redis.signal("-CONT");
    let events = collect(&mut sub, 3, Duration::from_secs(5));
    let (_, notices) = check(&events);
    assert!(notices.is_empty(), "{notices:?}");
    assert_eq!(offsets(&events), [4, 5, 6]);
    let texts: Vec<&str> = events
        .iter()
        .map(|e| match e {
            Event::Message(d) => d.original.as_text().unwrap(),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(texts, ["hidden 4", "hidden 5", "hidden 6"]);
    assert!(
        events
            .iter()
            .all(|e| matches!(e, Event::Message(d) if d.position.epoch == epoch))
    );
    eprintln!("gap filled {:?} after the stop began", stopped.elapsed());
    assert!(sub.recv_timeout(Duration::from_millis(300)).is_none());
}

#[test]
fn a_gap_unreadable_past_the_gap_timeout_is_reported_unavailable_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, _b, mut sub, _con, epoch) = gap_while_paused(&redis, 2500, Duration::from_secs(1));
    let at = |offset| Position { epoch, offset };
    let started = Instant::now();
    let notice = sub.recv_timeout(Duration::from_secs(5));
    let waited = started.elapsed();
    match notice {
        Some(Event::NotRecovered {
            after,
            resumed,
            reason: Loss::Unavailable,
            ..
        }) => {
            assert_eq!((after, resumed), (Some(at(3)), Some(at(6))));
        }
        other => panic!("expected an Unavailable notice, got {other:?}"),
    }
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_millis(2400),
        "reported after {waited:?}, the gap timeout is 1 s"
    );
    // Delivery goes on after the notice once Redis takes writes again.
    std::thread::sleep(Duration::from_millis(2600).saturating_sub(started.elapsed()));
    let p = a.publish("g", "next").unwrap();
    assert_eq!(p, at(7));
    let events = collect(&mut sub, 1, Duration::from_secs(5));
    assert_eq!(offsets(&events), [7]);
}

#[test]
fn a_notice_starts_after_what_each_subscriber_already_has() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = node(&redis.url());
    let b = node(&redis.url());
    let mut behind = b.subscriber();
    behind.subscribe("n").unwrap();
    let mut epoch = 0;
    for i in 0..3 {
        epoch = a.publish("n", format!("{i}")).unwrap().epoch;
    }
    assert_eq!(
        offsets(&collect(&mut behind, 3, Duration::from_secs(5))),
        [1, 2, 3]
    );
    let at = |offset| Position { epoch, offset };
    // A client that got up to 9 on a node this one has not heard from yet.
    let mut ahead = b.subscriber();
    assert_eq!(ahead.resume("n", at(9)).unwrap(), Resumed::Recovered(0));
    // The history goes away (as after a restart without persistence).
    let mut con = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    for (s, after) in [(&mut behind, at(3)), (&mut ahead, at(9))] {
        match s.recv_timeout(Duration::from_secs(3)) {
            Some(Event::NotRecovered {
                after: got,
                reason: Loss::EpochChanged,
                ..
            }) => assert_eq!(got, Some(after)),
            other => panic!("expected an epoch change, got {other:?}"),
        }
    }
}
