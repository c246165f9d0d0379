//! The authorization hook (asked with the connection's request), the per-connection
//! publish rate limit, and latest-value topics (in memory, and across two nodes on
//! Redis).

mod common;

use std::sync::Arc;
use std::time::Duration;

use duplex_hub::{
    Authorize, CloseCode, Event, Hub, HubConfig, HubError, MemoryBackend, Message, RateLimit,
    Request,
};

/// Subscribers need `?token=reader` or `writer`; publishers `writer`, and only to
/// topics under `chat:`.
struct Tokens;

impl Authorize for Tokens {
    fn subscribe(&self, request: &Request, _topic: &str) -> Result<(), String> {
        match request.query("token") {
            Some("reader" | "writer") => Ok(()),
            _ => Err("no valid token".into()),
        }
    }

    fn publish(&self, request: &Request, topic: &str, _message: &Message) -> Result<(), String> {
        if request.query("token") != Some("writer") {
            return Err("read-only token".into());
        }
        if !topic.starts_with("chat:") {
            return Err(format!("cannot publish to {topic}"));
        }
        Ok(())
    }
}

fn request(target: &str) -> Request {
    Request {
        method: "GET".into(),
        target: target.into(),
        ..Request::default()
    }
}

fn hub(config: HubConfig) -> Hub {
    Hub::with_backend(config, Arc::new(MemoryBackend::new(Default::default())))
}

#[test]
fn the_hook_sees_the_request_and_refuses_with_its_reason() {
    let hub = hub(HubConfig {
        authorize: Some(Arc::new(Tokens)),
        ..HubConfig::default()
    });
    let mut anonymous = hub.connection(request("/ws?room=a"));
    match anonymous.subscribe("chat:a") {
        Err(HubError::Denied(why)) => assert_eq!(why, "no valid token"),
        other => panic!("{other:?}"),
    }
    assert!(!anonymous.is_subscribed("chat:a"));
    let mut reader = hub.connection(request("/ws?token=reader"));
    reader.subscribe("chat:a").unwrap();
    let e = reader.publish("chat:a", "hi").unwrap_err();
    assert!(matches!(&e, HubError::Denied(why) if why == "read-only token"));
    assert_eq!(e.close_code(), Some(CloseCode::PolicyViolation));
    let mut writer = hub.connection(request("/ws?token=writer"));
    assert!(matches!(
        writer.publish("news", "x"),
        Err(HubError::Denied(_))
    ));
    let p = writer.publish("chat:a", "hello").unwrap();
    match reader.try_recv() {
        Some(Event::Message(d)) => assert_eq!(d.position, p),
        other => panic!("{other:?}"),
    }
    // Resume asks too.
    let mut other = hub.connection(request("/ws"));
    assert!(matches!(
        other.resume("chat:a", p),
        Err(HubError::Denied(_))
    ));
}

#[test]
fn publishes_past_the_rate_limit_fail_and_publish_nothing() {
    let hub = hub(HubConfig {
        publish_rate: Some(RateLimit {
            per_second: 10.0,
            burst: 5,
        }),
        ..HubConfig::default()
    });
    let mut watcher = hub.subscriber();
    watcher.subscribe("t").unwrap();
    let mut fast = hub.connection(Request::default());
    let mut ok = 0;
    let mut limited = 0;
    for i in 0..20 {
        match fast.publish("t", format!("{i}")) {
            Ok(_) => ok += 1,
            Err(e @ HubError::RateLimited(wait)) => {
                assert!(wait <= Duration::from_millis(100));
                assert_eq!(e.close_code(), Some(CloseCode::PolicyViolation));
                limited += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((ok, limited), (5, 15), "the burst, then nothing");
    // Each connection has its own bucket; the hub's own publish has none.
    let mut other = hub.connection(Request::default());
    other.publish("t", "other").unwrap();
    hub.publish("t", "server").unwrap();
    std::thread::sleep(Duration::from_millis(120));
    fast.publish("t", "later").unwrap();
    let mut n = 0;
    while let Some(Event::Message(_)) = watcher.try_recv() {
        n += 1;
    }
    assert_eq!(n, 5 + 2 + 1, "refused publishes were not published");
}

#[test]
fn a_latest_value_topic_gives_its_last_message_first() {
    let hub = hub(HubConfig {
        latest_value: vec!["price:".into()],
        ..HubConfig::default()
    });
    for p in ["1.00", "1.01", "1.02"] {
        hub.publish("price:eur", p).unwrap();
        hub.publish("chat:x", p).unwrap();
    }
    let mut sub = hub.subscriber();
    let start = sub.subscribe("price:eur").unwrap().unwrap();
    assert_eq!(start.offset, 3);
    match sub.try_recv() {
        Some(Event::Message(d)) => {
            assert_eq!(d.original.as_text(), Some("1.02"));
            assert_eq!(d.position, start);
        }
        other => panic!("{other:?}"),
    }
    assert!(sub.try_recv().is_none());
    // Not a latest-value topic: nothing first.
    sub.subscribe("chat:x").unwrap();
    assert!(sub.try_recv().is_none());
    // A latest-value topic without messages yet: nothing first, then live.
    sub.subscribe("price:usd").unwrap();
    hub.publish("price:usd", "0.9").unwrap();
    assert!(matches!(sub.try_recv(), Some(Event::Message(d)) if d.position.offset == 1));
}

#[cfg(feature = "redis")]
#[test]
fn a_latest_value_topic_gives_the_last_message_of_another_node() {
    use common::RedisServer;
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let node = || {
        Hub::redis(
            HubConfig {
                latest_value: vec!["price:".into()],
                ..HubConfig::default()
            },
            duplex_hub::RedisConfig::new(redis.url()),
        )
        .unwrap()
    };
    let (a, b) = (node(), node());
    for p in ["1.00", "1.01"] {
        a.publish("price:eur", p).unwrap();
    }
    let mut sub = b.subscriber();
    sub.subscribe("price:eur").unwrap();
    match sub.recv_timeout(Duration::from_secs(2)) {
        Some(Event::Message(d)) => assert_eq!(d.original.as_text(), Some("1.01")),
        other => panic!("{other:?}"),
    }
    a.publish("price:eur", "1.02").unwrap();
    match sub.recv_timeout(Duration::from_secs(2)) {
        Some(Event::Message(d)) => assert_eq!(d.original.as_text(), Some("1.02")),
        other => panic!("{other:?}"),
    }
    assert!(sub.recv_timeout(Duration::from_millis(300)).is_none());
}
