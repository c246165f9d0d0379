//! `cargo xtask load --hub`: fan-out through `duplex-hub`, on one node in memory or on
//! one or two nodes sharing a `redis-server`.
//!
//! The nodes are `duplex-hub`'s `hub-node` example (built in release), each a process of
//! its own, so their CPU time is theirs alone; with Redis, the generator starts its own
//! `redis-server` on a free 127.0.0.1 port in a temporary directory (no persistence)
//! and stops it. The generator opens N subscriber connections (`/sub?topic=tK`,
//! subscriber `i` on node `i % nodes`, topic `i % T`), waits for the subscriptions to
//! settle, then P publisher connections (`/pub?topic=tK`, publisher `j` on node
//! `j % nodes`, topic `j % T`), each sending R binary messages per second. A message
//! carries its publisher, sequence number and send time, so each subscriber checks
//! that it got every message of its topic's publishers exactly once, in order, and
//! measures publish-to-receive latency (publisher's write to the subscriber's read,
//! through the publisher's node, Redis when there is one, and the subscriber's node).

use std::net::{SocketAddr, TcpListener, TcpStream as StdTcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use super::client::{self, Opened};
use super::hist::Histogram;
use super::{micros, parse_secs, parse_size, sys, wire};
use wire_kit::FrameReader;

const USAGE: &str = "\
cargo xtask load --hub [OPTIONS]

Fan-out through duplex-hub: hub-node processes (duplex-hub's example, built in
release), P publishers, T topics, N subscribers, in memory or over Redis.

Options:
  --nodes 1|2        nodes (default 1; 2 implies --redis)
  --redis            use Redis (a redis-server of the run's own) even with one node
  --cluster          use a Redis Cluster of the run's own (3 masters, sharded pub/sub)
  --subs N           subscriber connections (default 1000)
  --pubs P           publisher connections (default 4)
  --topics T         topics (default 4)
  --rate R           messages per second per publisher (default 50)
  --size BYTES       payload size (default 100)
  --duration SECS    measured time (default 5)
  --warmup SECS      unmeasured time before it (default 1)
  --node-threads N   tokio worker threads of each node (1: a current-thread
                     runtime; default: one worker per core)
  --no-build         use the hub-node binary already built
  -h, --help         this help

Prints deliveries per second, publish-to-receive latency (p50, p99, max), the
nodes' CPU time per delivery (and Redis's), and any message lost, repeated or out
of order (the run then fails).
";

/// A run's settings.
#[derive(Debug, Clone)]
struct Options {
    nodes: usize,
    redis: bool,
    cluster: bool,
    subs: usize,
    pubs: usize,
    topics: usize,
    rate: f64,
    size: usize,
    duration: Duration,
    warmup: Duration,
    build: bool,
    /// The nodes' runtime threads (0: tokio's default).
    node_threads: usize,
}

fn parse(args: &[String]) -> Result<Option<Options>, String> {
    let mut o = Options {
        nodes: 1,
        redis: false,
        cluster: false,
        subs: 1000,
        pubs: 4,
        topics: 4,
        rate: 50.0,
        size: 100,
        duration: Duration::from_secs(5),
        warmup: Duration::from_secs(1),
        build: true,
        node_threads: 0,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs a value"))
        };
        let number = |v: String| v.parse::<usize>().map_err(|_| format!("bad number {v:?}"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--nodes" => o.nodes = number(value()?)?.clamp(1, 2),
            "--redis" => o.redis = true,
            "--cluster" => o.cluster = true,
            "--subs" => o.subs = number(value()?)?.max(1),
            "--pubs" => o.pubs = number(value()?)?.max(1),
            "--topics" => o.topics = number(value()?)?.max(1),
            "--rate" => {
                let v = value()?;
                o.rate = v
                    .parse::<f64>()
                    .ok()
                    .filter(|r| r.is_finite() && *r > 0.0)
                    .ok_or_else(|| format!("bad rate {v:?}"))?;
            }
            "--size" => o.size = parse_size(&value()?)?,
            "--duration" => o.duration = parse_secs(&value()?)?,
            "--warmup" => o.warmup = parse_secs(&value()?)?,
            "--no-build" => o.build = false,
            "--node-threads" => o.node_threads = number(value()?)?,
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    o.redis |= o.nodes == 2 || o.cluster;
    // The header ("j seq ts ") fits in 40 bytes.
    o.size = o.size.max(40);
    Ok(Some(o))
}

/// Entry point of `cargo xtask load --hub`.
pub fn main(args: &[String]) -> ExitCode {
    let o = match parse(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&o) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("load --hub: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A child process, interrupted (SIGINT, so a node prints its failed publishes) and
/// then killed when dropped.
struct Proc(Child);

impl Proc {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `redis-server` of the run's own, its directory removed when dropped.
struct Redis {
    procs: Vec<Proc>,
    dirs: Vec<PathBuf>,
    /// One URL, or a cluster's nodes' URLs separated by commas.
    url: String,
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.procs.clear();
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// One `redis-server` on a free port (with its cluster bus port, +10000, free too when
/// `cluster`), in a directory of its own.
fn spawn_redis(cluster: bool) -> Result<(Proc, PathBuf, u16), String> {
    let port = loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        if !cluster || (port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()) {
            break port;
        }
    };
    let dir = std::env::temp_dir().join(format!("duplex-load-redis-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut command = Command::new("redis-server");
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"]);
    if cluster {
        command.args([
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
        ]);
    }
    let child = command
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("redis-server: {e} (apt-get install -y redis-server)"))?;
    let proc = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(5);
    while StdTcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("redis-server did not start".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok((proc, dir, port))
}

fn start_redis() -> Result<Redis, String> {
    let (proc, dir, port) = spawn_redis(false)?;
    Ok(Redis {
        procs: vec![proc],
        dirs: vec![dir],
        url: format!("redis://127.0.0.1:{port}/"),
    })
}

/// A Redis Cluster of three masters, joined with `redis-cli --cluster create`.
fn start_cluster() -> Result<Redis, String> {
    let mut redis = Redis {
        procs: Vec::new(),
        dirs: Vec::new(),
        url: String::new(),
    };
    let mut ports = Vec::new();
    for _ in 0..3 {
        let (proc, dir, port) = spawn_redis(true)?;
        redis.procs.push(proc);
        redis.dirs.push(dir);
        ports.push(port);
    }
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(ports.iter().map(|p| format!("127.0.0.1:{p}")))
        .args(["--cluster-yes"])
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("redis-cli: {e}"))?;
    if !created.success() {
        return Err("redis-cli --cluster create failed".into());
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = ports.iter().all(|p| {
            Command::new("redis-cli")
                .args(["-p", &p.to_string(), "cluster", "info"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
        });
        if ok {
            break;
        }
        if Instant::now() > deadline {
            return Err("the Redis Cluster did not become ready".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    redis.url = ports
        .iter()
        .map(|p| format!("redis://127.0.0.1:{p}/"))
        .collect::<Vec<_>>()
        .join(",");
    Ok(redis)
}

fn start_node(
    binary: &Path,
    redis: Option<&str>,
    cluster: bool,
    threads: usize,
) -> Result<(Proc, SocketAddr), String> {
    use std::io::BufRead;
    let mut command = Command::new(binary);
    command.arg("127.0.0.1:0");
    if threads > 0 {
        command.args(["--threads", &threads.to_string()]);
    }
    if let Some(url) = redis {
        command.args(["--redis", url]);
        if cluster {
            command.arg("--cluster");
        }
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let proc = Proc(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("hub-node said {line:?}"))?;
    Ok((proc, addr))
}

fn hub_node(build: bool) -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    if build {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let args = [
            "build",
            "--release",
            "-p",
            "duplex-hub",
            "--features",
            "tokio,redis,cluster",
            "--example",
            "hub-node",
        ];
        eprintln!("building: cargo {}", args.join(" "));
        let status = Command::new(cargo)
            .current_dir(&root)
            .args(args)
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err("building hub-node failed".into());
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root.join(p) })
        .unwrap_or_else(|| root.join("target"));
    let binary = target.join("release").join("examples").join("hub-node");
    if !binary.exists() {
        return Err(format!("{} is missing", binary.display()));
    }
    Ok(binary)
}

/// What one subscriber saw.
#[derive(Default)]
struct SubStats {
    /// Deliveries read inside the measured window.
    deliveries: u64,
    latency: Histogram,
    /// The last sequence number seen of each publisher (by index).
    last: Vec<Option<u64>>,
    /// Messages missing before one that arrived.
    lost: u64,
    /// Messages that came again or out of order.
    repeated: u64,
    error: Option<String>,
}

/// The times every task shares.
struct Clock {
    base: Instant,
    start: Instant,
    end: Instant,
    /// When subscribers stop reading: after `end`, time for the last messages.
    stop: Instant,
}

impl Clock {
    fn micros(&self) -> u64 {
        self.base.elapsed().as_micros() as u64
    }
}

/// `"j seq ts "`: publisher, sequence number, send time (µs since `Clock::base`).
fn header(payload: &[u8]) -> Option<(usize, u64, u64)> {
    let text = std::str::from_utf8(payload.get(..40.min(payload.len()))?).ok()?;
    let mut parts = text.split(' ');
    Some((
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    ))
}

async fn subscriber(opened: Opened, pubs: usize, clock: Arc<Clock>) -> SubStats {
    let mut stats = SubStats {
        last: vec![None; pubs],
        ..SubStats::default()
    };
    let mut tcp = opened.tcp;
    let mut frames = FrameReader::new(16 << 20);
    frames.push(&opened.leftover);
    let mut buf = vec![0u8; 16 << 10];
    'reading: loop {
        loop {
            let frame = match frames.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    stats.error = Some(e.to_string());
                    break 'reading;
                }
            };
            match frame.opcode {
                0x1 | 0x2 => {}
                0x8 => {
                    stats.error = Some(format!("closed by the node: {:?}", frame.close_code()));
                    break 'reading;
                }
                _ => continue,
            }
            let Some((j, seq, sent)) = header(&frame.payload) else {
                stats.error = Some("a message without its header".into());
                break 'reading;
            };
            let now = clock.micros();
            let at = clock.base + Duration::from_micros(now);
            if at >= clock.start && at < clock.end {
                stats.deliveries += 1;
                stats.latency.record(now.saturating_sub(sent) * 1000);
            }
            let Some(last) = stats.last.get_mut(j) else {
                stats.error = Some(format!("publisher {j} unknown"));
                break 'reading;
            };
            match *last {
                Some(l) if seq <= l => stats.repeated += 1,
                Some(l) => stats.lost += seq - l - 1,
                None => stats.lost += seq,
            }
            *last = Some(last.map_or(seq, |l| l.max(seq)));
        }
        let read = tokio::time::timeout_at(clock.stop.into(), tcp.read(&mut buf)).await;
        match read {
            Err(_) => break,
            Ok(Ok(0)) => {
                stats.error = Some("the node closed the connection".into());
                break;
            }
            Ok(Ok(n)) => frames.push(&buf[..n]),
            Ok(Err(e)) => {
                stats.error = Some(e.to_string());
                break;
            }
        }
    }
    client::abort(tcp);
    stats
}

/// Publishes until `clock.end`; returns how many it sent and how many of them were
/// sent inside the measured window.
async fn publisher(
    opened: Opened,
    j: usize,
    rate: f64,
    size: usize,
    clock: Arc<Clock>,
) -> Result<(u64, u64), String> {
    let (mut read, mut write) = opened.tcp.into_split();
    // The node sends nothing to a publisher but pings; read and drop.
    let drain = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = read.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    });
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    // A late tick (the generator busy reading) is made up for: the offered rate holds.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (mut seq, mut in_window) = (0u64, 0u64);
    let mut payload = Vec::with_capacity(size);
    let result = loop {
        tick.tick().await;
        let now = Instant::now();
        if now >= clock.end {
            break Ok((seq, in_window));
        }
        payload.clear();
        payload.extend_from_slice(format!("{j} {seq} {} ", clock.micros()).as_bytes());
        payload.resize(size, b'x');
        if let Err(e) = write.write_all(&wire::client_binary(&payload)).await {
            break Err(format!("publisher {j}: {e}"));
        }
        if now >= clock.start {
            in_window += 1;
        }
        seq += 1;
    };
    drain.abort();
    result
}

fn run(o: &Options) -> Result<bool, String> {
    let binary = hub_node(o.build)?;
    let want = o.subs as u64 + o.pubs as u64 + 512;
    let limit = sys::raise_nofile(want);
    if limit < want {
        return Err(format!("open files limited to {limit}, {want} needed"));
    }
    let redis = match (o.cluster, o.redis) {
        (true, _) => Some(start_cluster()?),
        (false, true) => Some(start_redis()?),
        (false, false) => None,
    };
    let mut nodes = Vec::new();
    for _ in 0..o.nodes {
        nodes.push(start_node(
            &binary,
            redis.as_ref().map(|r| r.url.as_str()),
            o.cluster,
            o.node_threads,
        )?);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.1).collect();
    let pids: Vec<u32> = nodes.iter().map(|n| n.0.pid()).collect();
    let redis_pids: Vec<u32> = redis
        .as_ref()
        .map(|r| r.procs.iter().map(Proc::pid).collect())
        .unwrap_or_default();
    let report = rt.block_on(measure(o, &addrs, &pids, &redis_pids))?;
    drop(nodes);
    drop(redis);
    println!("{report}");
    Ok(report.clean())
}

struct Report {
    line: String,
    lost: u64,
    repeated: u64,
    errors: u64,
}

impl Report {
    fn clean(&self) -> bool {
        self.lost == 0 && self.repeated == 0 && self.errors == 0
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.line)
    }
}

fn cpu(pids: &[u32]) -> Option<Duration> {
    pids.iter().map(|&p| sys::process_cpu(p)).sum()
}

async fn measure(
    o: &Options,
    addrs: &[SocketAddr],
    pids: &[u32],
    redis_pids: &[u32],
) -> Result<Report, String> {
    // Subscribers, grouped by (node, topic) so each group shares its request.
    let mut subs = Vec::new();
    for (node, &addr) in addrs.iter().enumerate() {
        for topic in 0..o.topics {
            let n = (0..o.subs)
                .filter(|i| i % o.nodes == node && i % o.topics == topic)
                .count();
            if n == 0 {
                continue;
            }
            let request =
                wire_kit::upgrade_request(&format!("/sub?topic=t{topic}"), &addr.to_string(), "");
            for opened in client::open_many(addr, Arc::new(request), n, None).await? {
                subs.push((topic, opened));
            }
        }
    }
    let mut pubs = Vec::new();
    for j in 0..o.pubs {
        let addr = addrs[j % o.nodes];
        let request = wire_kit::upgrade_request(
            &format!("/pub?topic=t{}", j % o.topics),
            &addr.to_string(),
            "",
        );
        pubs.push(client::open(addr, &request).await?);
    }
    // Let the subscriptions settle (with Redis, each node subscribes to the topic's
    // channel on its pub/sub thread).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = Instant::now();
    let start = base + o.warmup;
    let end = start + o.duration;
    let clock = Arc::new(Clock {
        base,
        start,
        end,
        stop: end + Duration::from_secs(2),
    });
    let mut sub_tasks = JoinSet::new();
    let mut topics_of = Vec::new();
    for (topic, opened) in subs {
        topics_of.push(topic);
        let clock = clock.clone();
        let pubs = o.pubs;
        sub_tasks.spawn(async move { (topic, subscriber(opened, pubs, clock).await) });
    }
    let mut pub_tasks = JoinSet::new();
    for (j, opened) in pubs.into_iter().enumerate() {
        pub_tasks.spawn(publisher(opened, j, o.rate, o.size, clock.clone()));
    }
    tokio::time::sleep_until(start.into()).await;
    let (cpu0, redis0, me0) = (
        cpu(pids),
        (!redis_pids.is_empty()).then(|| cpu(redis_pids)).flatten(),
        sys::self_cpu(),
    );
    tokio::time::sleep_until(end.into()).await;
    let (cpu1, redis1, me1) = (
        cpu(pids),
        (!redis_pids.is_empty()).then(|| cpu(redis_pids)).flatten(),
        sys::self_cpu(),
    );
    let mut published_in_window = 0;
    let mut errors = 0;
    let mut first_error = None;
    while let Some(joined) = pub_tasks.join_next().await {
        match joined.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok((_, in_window)) => published_in_window += in_window,
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let mut latency = Histogram::default();
    let (mut deliveries, mut lost, mut repeated) = (0u64, 0u64, 0u64);
    let mut lasts: Vec<(usize, Vec<Option<u64>>)> = Vec::new();
    while let Some(joined) = sub_tasks.join_next().await {
        let (topic, s) = joined.map_err(|e| e.to_string())?;
        deliveries += s.deliveries;
        latency.merge(&s.latency);
        lost += s.lost;
        repeated += s.repeated;
        if let Some(e) = s.error {
            errors += 1;
            first_error.get_or_insert(e);
        }
        lasts.push((topic, s.last));
    }
    // Messages missing at the end: the highest sequence any subscriber of the topic
    // saw of a publisher is at least what every other subscriber of it should have.
    let mut highest: Vec<Option<u64>> = vec![None; o.pubs];
    for (_, last) in &lasts {
        for (j, l) in last.iter().enumerate() {
            highest[j] = highest[j].max(*l);
        }
    }
    for (topic, last) in &lasts {
        for (j, l) in last.iter().enumerate() {
            if j % o.topics != *topic {
                continue;
            }
            let want = highest[j].map_or(0, |h| h + 1);
            lost += want - l.map_or(0, |l| l + 1);
        }
    }
    let secs = o.duration.as_secs_f64();
    let per_topic = |t: usize| (0..o.subs).filter(|i| i % o.topics == t).count() as f64;
    let expected: f64 = (0..o.pubs).map(|j| o.rate * per_topic(j % o.topics)).sum();
    let node_us = match (cpu0, cpu1) {
        (Some(a), Some(b)) if deliveries > 0 => {
            format!(
                "{:.2}",
                b.saturating_sub(a).as_secs_f64() * 1e6 / deliveries as f64
            )
        }
        _ => "-".into(),
    };
    let redis_us = match (redis0, redis1) {
        (Some(a), Some(b)) if deliveries > 0 => format!(
            ", Redis {:.2} us/delivery",
            b.saturating_sub(a).as_secs_f64() * 1e6 / deliveries as f64
        ),
        _ => String::new(),
    };
    let ms = |nanos: u64| micros(nanos) / 1000.0;
    let line = format!(
        "hub: nodes={} backend={} subs={} pubs={} topics={} rate={}/s size={}B | published {:.0}/s, \
         deliveries {:.0}/s (expected {:.0}/s) | publish-to-receive p50 {:.2} ms, p99 {:.2} ms, \
         max {:.2} ms | nodes' CPU {node_us} us/delivery{redis_us}, generator {:.0}% of a core | \
         lost {lost}, repeated or out of order {repeated}, errors {errors}{}\n\
         | {} | {} | {} | {} | {:.0} | {:.0} | {:.2} ms | {:.2} ms | {node_us} µs |",
        o.nodes,
        match (o.cluster, o.redis) {
            (true, _) => "redis-cluster",
            (false, true) => "redis",
            (false, false) => "memory",
        },
        o.subs,
        o.pubs,
        o.topics,
        o.rate,
        o.size,
        published_in_window as f64 / secs,
        deliveries as f64 / secs,
        expected,
        ms(latency.quantile(0.5)),
        ms(latency.quantile(0.99)),
        ms(latency.max()),
        me1.saturating_sub(me0).as_secs_f64() * 100.0 / secs,
        first_error
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
        o.nodes,
        match (o.cluster, o.redis) {
            (true, _) => "Redis Cluster",
            (false, true) => "Redis",
            (false, false) => "memory",
        },
        o.subs,
        o.pubs,
        published_in_window as f64 / secs,
        deliveries as f64 / secs,
        ms(latency.quantile(0.5)),
        ms(latency.quantile(0.99)),
    );
    Ok(Report {
        line,
        lost,
        repeated,
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_and_others_do_not() {
        assert_eq!(header(b"3 17 123456 xxxx"), Some((3, 17, 123456)));
        assert_eq!(header(b"3 x 1 "), None);
        assert_eq!(header(b""), None);
    }

    #[test]
    fn two_nodes_mean_redis() {
        let args: Vec<String> = ["--nodes", "2"].iter().map(|s| s.to_string()).collect();
        let o = parse(&args).unwrap().unwrap();
        assert!(o.redis);
        let o = parse(&[]).unwrap().unwrap();
        assert!(!o.redis && o.nodes == 1);
    }
}
