//! One node of a fan-out service on the hub, the server that `cargo xtask load --hub`
//! measures:
//!
//! ```text
//! cargo run --release -p duplex-hub --features tokio,redis,cluster --example hub-node -- \
//!     [ADDR] [--redis redis://127.0.0.1:PORT/ [--cluster]] [--threads N]
//! ```
//!
//! (default `127.0.0.1:0`; prints `listening on ADDR`; `--threads 1`: a current-thread
//! tokio runtime, N > 1: that many workers, default: one worker per core). `ws://ADDR/sub?topic=T`
//! subscribes the connection to topic `T` and sends it every message of the topic as
//! it was published (`Framing::Raw`, encoded once per node for all its subscribers);
//! `ws://ADDR/pub?topic=T` publishes every message the connection sends to `T`. With
//! `--redis`, nodes sharing the server are one service (with `--cluster`, `--redis`
//! lists nodes of a Redis Cluster, separated by commas, and needs the `cluster`
//! feature); without, the in-memory backend. Publishes that fail (Redis away) are counted and printed at exit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use duplex_hub::tokio::{Flow, send_event};
use duplex_hub::{Hub, HubConfig, MemoryBackend, MemoryConfig, RedisConfig};
use duplex_tokio::Acceptance;
use tokio::net::{TcpListener, TcpStream};

fn main() -> std::io::Result<()> {
    let mut addr = "127.0.0.1:0".to_owned();
    let mut redis = None;
    let mut cluster = false;
    let mut threads = 0;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--redis" => redis = args.next(),
            "--cluster" => cluster = true,
            "--threads" => threads = args.next().and_then(|n| n.parse().ok()).unwrap_or(0),
            _ => addr = arg,
        }
    }
    let runtime = match threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        0 => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()?,
    };
    runtime.block_on(run(addr, redis, cluster))
}

async fn run(addr: String, redis: Option<String>, cluster: bool) -> std::io::Result<()> {
    let config = HubConfig::default();
    let hub = match &redis {
        Some(url) => {
            let redis = RedisConfig {
                cluster,
                ..RedisConfig::new(url.as_str())
            };
            Hub::redis(config, redis).map_err(std::io::Error::other)?
        }
        None => Hub::with_backend(
            config,
            Arc::new(MemoryBackend::new(MemoryConfig::default())),
        ),
    };
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    let failed = Arc::new(AtomicU64::new(0));
    let accepting = async {
        loop {
            let (tcp, _) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            tokio::spawn(serve(hub.clone(), tcp, failed.clone()));
        }
    };
    tokio::select! {
        result = accepting => result,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("failed publishes: {}", failed.load(Relaxed));
            Ok(())
        }
    }
}

async fn serve(hub: Hub, tcp: TcpStream, failed: Arc<AtomicU64>) {
    let mut target = None;
    let accepted = duplex_tokio::accept_with(tcp, duplex_tokio::Config::default(), |req, _| {
        let topic = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("topic="))
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        match (req.uri().path(), topic) {
            ("/sub", Some(topic)) => target = Some((false, topic)),
            ("/pub", Some(topic)) => target = Some((true, topic)),
            _ => {
                return Err(duplex_tokio::Rejection::new(
                    duplex_tokio::http::StatusCode::NOT_FOUND,
                    "use /sub?topic=T or /pub?topic=T",
                ));
            }
        }
        Ok(Acceptance::default())
    })
    .await;
    let (Ok(mut ws), Some((publisher, topic))) = (accepted, target) else {
        return;
    };
    if publisher {
        while let Some(Ok(message)) = ws.recv().await {
            if message.is_data() && hub.publish_async(&topic, message).await.is_err() {
                failed.fetch_add(1, Relaxed);
            }
        }
        return;
    }
    let mut sub = hub.subscriber();
    if sub.subscribe_async(&topic).await.is_err() {
        return;
    }
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
