//! The Redis Cluster backend against a real local cluster that each test starts itself
//! (`redis-server --cluster-enabled yes` on free 127.0.0.1 ports, joined with
//! `redis-cli --cluster create`, stopped at the end): topics spread over three shards,
//! sharded pub/sub between nodes, and a master killed mid-stream while its replica is
//! promoted.
#![cfg(feature = "cluster")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::RedisCluster;
use duplex_hub::{Event, Hub, HubConfig, HubError, Position, RedisConfig, Subscriber};

fn node(url: &str) -> Hub {
    let redis = RedisConfig {
        cluster: true,
        timeout: Duration::from_millis(500),
        sync_interval: Duration::from_millis(200),
        ..RedisConfig::new(url)
    };
    Hub::redis(HubConfig::default(), redis).unwrap()
}

/// Everything `sub` gets within `wait` after the last event: per topic, the positions in
/// arrival order, and the notices.
fn drain(sub: &mut Subscriber, wait: Duration) -> (BTreeMap<String, Vec<Position>>, Vec<Event>) {
    let mut got: BTreeMap<String, Vec<Position>> = BTreeMap::new();
    let mut notices = Vec::new();
    while let Some(e) = sub.recv_timeout(wait) {
        match e {
            Event::Message(d) => got.entry(d.topic.to_string()).or_default().push(d.position),
            other => notices.push(other),
        }
    }
    (got, notices)
}

#[test]
fn topics_spread_over_three_shards_reach_every_node_once_in_order() {
    let Some(cluster) = RedisCluster::start(3, 0) else {
        return;
    };
    let (a, b) = (node(&cluster.url()), node(&cluster.url()));
    let topics: Vec<String> = (0..9).map(|i| format!("t{i}")).collect();
    let shards: BTreeSet<usize> = topics
        .iter()
        .map(|t| cluster.master_of(&format!("duplex:{{{t}}}:m")))
        .collect();
    assert_eq!(shards.len(), 3, "the topics use every shard");
    let mut on_b = b.subscriber();
    let mut on_a = a.subscriber();
    for t in &topics {
        on_b.subscribe(t).unwrap();
        on_a.subscribe(t).unwrap();
    }
    let mut sent: BTreeMap<String, Vec<Position>> = BTreeMap::new();
    for round in 0..20 {
        for t in &topics {
            let publisher = if round % 2 == 0 { &a } else { &b };
            let p = publisher.publish(t, format!("{t}/{round}")).unwrap();
            sent.entry(t.clone()).or_default().push(p);
        }
    }
    for sub in [&mut on_a, &mut on_b] {
        let (got, notices) = drain(sub, Duration::from_millis(500));
        assert!(notices.is_empty(), "{notices:?}");
        assert_eq!(got, sent);
    }
    // The channel of a topic is sharded: the shard's master has it, the others not.
    let t0 = cluster.master_of("duplex:{t0}:m");
    let channels = cluster.nodes[t0].cli(&["pubsub", "shardchannels"]);
    assert!(channels.contains("duplex:{t0}:c"), "{channels}");
    // Presence works on the cluster too (its keys are in the topic's slot).
    let _p = a.join("t0", "alice", "Alice").unwrap();
    assert_eq!(b.members("t0").unwrap()[0].client, "alice");
}

#[test]
fn a_master_killed_mid_stream_is_replaced_by_its_replica_and_delivery_goes_on() {
    let Some(mut cluster) = RedisCluster::start(3, 1) else {
        return;
    };
    let (a, b) = (node(&cluster.url()), node(&cluster.url()));
    let topics: Vec<String> = (0..6).map(|i| format!("f{i}")).collect();
    let mut sub = b.subscriber();
    for t in &topics {
        sub.subscribe(t).unwrap();
    }
    let victim_topic = &topics[0];
    let victim = cluster.master_of(&format!("duplex:{{{victim_topic}}}:m"));
    let mut ok: BTreeMap<String, Vec<Position>> = BTreeMap::new();
    let mut failed = 0;
    let started = Instant::now();
    let mut killed_at = None;
    let mut back_at = None;
    let mut i = 0u64;
    while started.elapsed() < Duration::from_secs(8) {
        if killed_at.is_none() && started.elapsed() > Duration::from_millis(500) {
            cluster.nodes[victim].kill();
            killed_at = Some(Instant::now());
        }
        let t = &topics[(i % topics.len() as u64) as usize];
        match a.publish(t, format!("{i}")) {
            Ok(p) => {
                if t == victim_topic && killed_at.is_some() && back_at.is_none() {
                    back_at = killed_at.map(|k| k.elapsed());
                }
                ok.entry(t.clone()).or_default().push(p);
            }
            Err(HubError::Unavailable(_)) => failed += 1,
            Err(e) => panic!("{e}"),
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    let back = back_at.expect("the victim's topic took publishes again after the failover");
    let (got, notices) = drain(&mut sub, Duration::from_millis(1500));
    let mut lost = 0;
    for t in &topics {
        let sent = &ok[t];
        let delivered = got.get(t).cloned().unwrap_or_default();
        // In order, no repeat.
        assert!(
            delivered.windows(2).all(|w| w[0] < w[1]),
            "{t}: {delivered:?}"
        );
        let delivered: BTreeSet<Position> = delivered.into_iter().collect();
        let missing: Vec<&Position> = sent.iter().filter(|p| !delivered.contains(p)).collect();
        if t != victim_topic {
            assert!(missing.is_empty(), "{t} lost {missing:?}");
        }
        lost += missing.len();
    }
    eprintln!(
        "failover: {} published, {failed} refused, the victim's topic took publishes again {back:?} after the kill, {lost} not delivered, notices {notices:?}",
        ok.values().map(Vec::len).sum::<usize>()
    );
    // The replica took over: the cluster is whole again without the old master.
    cluster.nodes[victim].child.take();
    cluster.wait_ok(Duration::from_secs(10));
    assert!(back < Duration::from_secs(6));
    assert_eq!(lost, 0, "every publish that returned Ok was delivered");
}
