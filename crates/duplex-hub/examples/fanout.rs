//! Fan-out load: P publishers, T topics, N WebSocket subscribers spread over 1 or 2
//! nodes (in this process), on the in-memory backend or on Redis.
//!
//! ```text
//! cargo run --release -p duplex-hub --features tokio,redis --example fanout -- \
//!     [--nodes 1|2] [--redis redis://127.0.0.1:PORT/] [--subs N] [--pubs P] \
//!     [--topics T] [--rate R] [--secs S] [--size BYTES]
//! ```
//!
//! Defaults: 1 node in memory, 1000 subscribers, 4 publishers at 50 messages per second
//! each, 4 topics, 5 s, 100-byte messages. `--nodes 2` needs `--redis`. Each
//! publisher `j` publishes to topic `j % T` on node `j % nodes`; subscriber `i` is on
//! node `i % nodes` and follows topic `i % T`. Prints deliveries per second, the
//! publish-to-receive latency (p50, p99, max) and the process's CPU time per delivery
//! (servers and clients both run in this process, so it counts both ends).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use duplex_hub::tokio::{Flow, send_event};
use duplex_hub::{Framing, Hub, HubConfig, MemoryBackend, MemoryConfig, Message, RedisConfig};
use duplex_tokio::Acceptance;
use tokio::net::{TcpListener, TcpStream};

struct Args {
    nodes: usize,
    redis: Option<String>,
    subs: usize,
    pubs: usize,
    topics: usize,
    rate: f64,
    secs: f64,
    size: usize,
}

fn args() -> Args {
    let mut a = Args {
        nodes: 1,
        redis: None,
        subs: 1000,
        pubs: 4,
        topics: 4,
        rate: 50.0,
        secs: 5.0,
        size: 100,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--nodes" => a.nodes = value.parse().unwrap_or(1).clamp(1, 2),
            "--redis" => a.redis = Some(value),
            "--subs" => a.subs = value.parse().unwrap_or(a.subs),
            "--pubs" => a.pubs = value.parse().unwrap_or(a.pubs),
            "--topics" => a.topics = value.parse().unwrap_or(a.topics).max(1),
            "--rate" => a.rate = value.parse().unwrap_or(a.rate),
            "--secs" => a.secs = value.parse().unwrap_or(a.secs),
            "--size" => a.size = value.parse().unwrap_or(a.size),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(a.nodes == 1 || a.redis.is_some(), "--nodes 2 needs --redis");
    a
}

/// user + system CPU time of this process, from `/proc/self/stat` (10 ms ticks).
fn cpu_ms() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) * 10
}

async fn serve(hub: Hub, tcp: TcpStream) {
    let mut topic = String::new();
    let Ok(mut ws) = duplex_tokio::accept_with(tcp, duplex_tokio::Config::default(), |req, _| {
        topic = req.uri().query().unwrap_or("t0").to_owned();
        Ok(Acceptance::default())
    })
    .await
    else {
        return;
    };
    let mut sub = hub.subscriber();
    if sub.subscribe(&topic).is_err() {
        return;
    }
    let _ = ws.send(Message::text("ready")).await;
    loop {
        tokio::select! {
            incoming = ws.recv() => if !matches!(incoming, Some(Ok(_))) { return },
            Some(event) = sub.recv() => {
                if !matches!(send_event(&mut ws, &sub, &event).await, Ok(Flow::Continue)) {
                    return;
                }
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let a = args();
    let config = HubConfig {
        framing: Framing::Raw,
        ..HubConfig::default()
    };
    let hubs: Vec<Hub> = (0..a.nodes)
        .map(|_| match &a.redis {
            Some(url) => Hub::redis(config.clone(), RedisConfig::new(url.as_str())).unwrap(),
            None => Hub::with_backend(
                config.clone(),
                Arc::new(MemoryBackend::new(MemoryConfig::default())),
            ),
        })
        .collect();
    let mut ports = Vec::new();
    for hub in &hubs {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        ports.push(listener.local_addr().unwrap().port());
        let hub = hub.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                tokio::spawn(serve(hub.clone(), tcp));
            }
        });
    }
    let base = Instant::now();
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<u32>::new()));
    let mut clients = Vec::new();
    for i in 0..a.subs {
        let url = format!("ws://127.0.0.1:{}/?t{}", ports[i % a.nodes], i % a.topics);
        let (mut ws, _) = duplex_tokio::connect(&url).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap().as_text(), Some("ready"));
        let (measuring, received, latencies) =
            (measuring.clone(), received.clone(), latencies.clone());
        clients.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(Ok(m)) = ws.recv().await {
                let Some(text) = m.as_text() else { continue };
                if text == "end" {
                    break;
                }
                if measuring.load(Relaxed) {
                    let sent: u64 = text
                        .split(' ')
                        .next()
                        .and_then(|t| t.parse().ok())
                        .unwrap_or(0);
                    let now = base.elapsed().as_micros() as u64;
                    mine.push(now.saturating_sub(sent).min(u32::MAX as u64) as u32);
                    received.fetch_add(1, Relaxed);
                }
            }
            latencies.lock().unwrap().extend(mine);
        }));
    }
    // Warm up for a second, then measure.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut publishers = Vec::new();
    for j in 0..a.pubs {
        let hub = hubs[j % a.nodes].clone();
        let topic = format!("t{}", j % a.topics);
        let (stop, published, failed, size, rate) = (
            stop.clone(),
            published.clone(),
            failed.clone(),
            a.size,
            a.rate,
        );
        publishers.push(std::thread::spawn(move || {
            let period = Duration::from_secs_f64(1.0 / rate);
            let mut next = Instant::now();
            while !stop.load(Relaxed) {
                let ts = base.elapsed().as_micros() as u64;
                let mut text = format!("{ts} ");
                text.extend(std::iter::repeat_n('x', size.saturating_sub(text.len())));
                match hub.publish(&topic, Message::text(text)) {
                    Ok(_) => published.fetch_add(1, Relaxed),
                    Err(_) => failed.fetch_add(1, Relaxed),
                };
                next += period;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (cpu0, t0, pub0) = (cpu_ms(), Instant::now(), published.load(Relaxed));
    measuring.store(true, Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(a.secs)).await;
    measuring.store(false, Relaxed);
    let (cpu1, elapsed, pub1) = (cpu_ms(), t0.elapsed(), published.load(Relaxed));
    stop.store(true, Relaxed);
    for p in publishers {
        let _ = p.join();
    }
    for t in 0..a.topics {
        let _ = hubs[0].publish(&format!("t{t}"), "end");
    }
    for c in clients {
        let _ = tokio::time::timeout(Duration::from_secs(10), c).await;
    }
    let deliveries = received.load(Relaxed);
    let mut lat = latencies.lock().unwrap();
    lat.sort_unstable();
    let pct = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let backend = if a.redis.is_some() { "redis" } else { "memory" };
    println!(
        "nodes={} backend={backend} subs={} pubs={} topics={} rate={}/s size={}B: \
         published {}/s ({} failed), deliveries {:.0}/s, latency p50 {} us p99 {} us max {} us, \
         CPU {:.2} us/delivery ({} ms over {:.1} s)",
        a.nodes,
        a.subs,
        a.pubs,
        a.topics,
        a.rate,
        a.size,
        ((pub1 - pub0) as f64 / elapsed.as_secs_f64()).round(),
        failed.load(Relaxed),
        deliveries as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        lat.last().copied().unwrap_or(0),
        (cpu1 - cpu0) as f64 * 1000.0 / deliveries.max(1) as f64,
        cpu1 - cpu0,
        elapsed.as_secs_f64(),
    );
}
