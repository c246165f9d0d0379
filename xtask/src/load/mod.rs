//! `cargo xtask load`: a WebSocket echo load generator in the style of uWebSockets'
//! `load_test`, and `--compare`, which runs it against our echo servers, peers built
//! on tokio-tungstenite, fastwebsockets and sockudo-ws, Bun and Node's `ws`, and a raw
//! TCP echo (see `docs/BENCHMARKS.md`).
//!
//! The generator is meant not to be the bottleneck: every message's frame is built
//! and masked once (fixed key) and written from that shared copy; echoes are checked
//! as they stream in against the payload sent (a memcmp per read, no reassembly); one
//! thread by default, non-blocking reads and writes on one task per connection. Its
//! own CPU use is reported next to the server's, so a run limited by the client shows.

mod client;
mod compare;
mod deflate;
mod fanout;
mod hist;
mod hub;
mod regimes;
mod report;
mod stream;
mod sys;
mod wire;

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use client::{EchoStats, HandshakeStats};
use hist::Histogram;
use wire::{Messages, WsUrl};

const USAGE: &str = "\
cargo xtask load [OPTIONS]

Echo load against one WebSocket server (ws:// only), or --compare.

Options:
  --url ws://HOST:PORT/PATH  the echo server (default ws://127.0.0.1:9001/)
  --connections N            connections (default 64)
  --size BYTES               payload size of each binary message, e.g. 16, 1k, 64k
                             (default 1k)
  --in-flight K              messages in flight per connection (default 16)
  --duration SECS            measured time (default 5)
  --warmup SECS              unmeasured time before it (default 0.5)
  --pid PID                  the server's process, for its CPU time per message and
                             its memory per idle connection
  --threads N                generator threads (default 1)
  --handshakes               measure new connections per second instead (with
                             --connections concurrent connecting loops)
  --idle N                   open N connections (one small round trip each), hold
                             them and report the server's RSS growth per connection
  --hold SECS                with --idle: keep them open this long (default 1)
  --fanout N                 fan-out instead: N subscriber connections and one
                             publisher against a fan-out server (benches/src/bin/
                             fanout-*.rs), --size bytes per message
  --deflate                  offer permessage-deflate (what browsers offer): echo
                             messages are then JSON (--payload), compressed by the
                             generator; with --fanout the subscribers offer it
  --payload KIND             JSON echo payloads: chat (80-300 B chat lines), ticker
                             (about 1 KiB of quotes) or ticker:SIZE (default with
                             --deflate: ticker:--size)
  --tls                      TLS (rustls, no session resumption) to a server using the
                             certificate in $DUPLEX_LOAD_TLS (default target/load/tls,
                             made there if missing); ws:// URL, or wss://
  --tls-resume               with --tls: allow session resumption
  --h2 N                     WebSockets over HTTP/2 (RFC 8441, h2c with prior
                             knowledge), spread over N HTTP/2 connections
  --window W                 with --fanout: messages published and not yet delivered
                             to every subscriber, at most (default 1)
  --json                     print the result as JSON

  --compare                  build and run every server in turn (see below); with
                             --tls, --deflate or --h2: that regime's comparison
                             (cargo xtask load --compare --tls, see docs/BENCHMARKS.md)
  --hub                      fan-out through duplex-hub nodes, in memory or over
                             Redis (cargo xtask load --hub --help)

--compare options (cargo xtask load --compare [OPTIONS]):
  --rounds N                 rounds, interleaved; medians are reported (default 3)
  --duration SECS            per cell (default 3)
  --idle N                   idle connections for the memory row (default 10000)
  --fanout N                 subscribers of the fan-out cells (default 10000)
  --no-fanout                leave the fan-out cells out
  --servers LIST             comma-separated subset of: duplex-tokio,duplex-mio,
                             tungstenite,fastwebsockets,sockudo,bun,node-ws,raw-tcp
                             (bun and node-ws run benches/js/install.sh: npm)
  --out FILE                 report (default docs/BENCHMARKS.md; its part between
                             the load markers is replaced, the rest kept)
  --quick                    1 round, 1 s cells, 1,000 idle connections (a try-out)
  --no-build                 use binaries already built
  -h, --help                 this help
";

/// One measurement's settings.
#[derive(Debug, Clone)]
pub struct EchoSettings {
    /// Connections.
    pub connections: usize,
    /// Payload bytes per message.
    pub size: usize,
    /// Messages in flight per connection.
    pub in_flight: usize,
    /// Measured time.
    pub duration: Duration,
    /// Unmeasured time before it.
    pub warmup: Duration,
}

/// The regime of a run: transport and compression.
#[derive(Debug, Clone, Default)]
pub struct Regime {
    /// TLS to the server.
    pub tls: bool,
    /// With `tls`: allow session resumption.
    pub tls_resume: bool,
    /// WebSockets over HTTP/2, on this many connections.
    pub h2: Option<usize>,
    /// Offer permessage-deflate.
    pub deflate: bool,
    /// JSON payloads instead of binary ones.
    pub json: Option<deflate::Json>,
    /// The certificate directory (default: `DUPLEX_LOAD_TLS`, or `target/load/tls`).
    pub tls_dir: Option<std::path::PathBuf>,
}

impl Regime {
    /// The extension offer of the upgrade request.
    fn offer(&self) -> Option<&'static str> {
        self.deflate.then_some(deflate::OFFER)
    }

    /// The messages of an echo run of `size` bytes.
    fn messages(&self, size: usize) -> Messages {
        match (self.json, self.deflate) {
            (Some(json), compressed) => deflate::messages(json, compressed),
            (None, true) => deflate::messages(deflate::Json::Ticker(size), true),
            (None, false) => Messages::new(size),
        }
    }

    /// The transport, if not plain TCP: TLS configuration, or HTTP/2 connections.
    async fn transport(&self, addr: SocketAddr) -> Result<Option<stream::Transport>, String> {
        if let Some(n) = self.h2 {
            if self.tls {
                return Err("--h2 runs on cleartext HTTP/2 (h2c); leave out --tls".into());
            }
            let senders = stream::h2_connect(addr, n).await?;
            return Ok(Some(stream::Transport::H2(Arc::new(senders))));
        }
        if self.tls {
            let dir = match &self.tls_dir {
                Some(dir) => dir.clone(),
                None => stream::tls_dir(
                    &compare::target_dir(&compare::workspace_root())
                        .join("load")
                        .join("tls"),
                ),
            };
            let cert = stream::ensure_certificate(&dir)?;
            let config = stream::client_config(&cert, self.tls_resume)?;
            return Ok(Some(stream::Transport::Tls(config)));
        }
        Ok(None)
    }
}

/// What an echo run measured.
#[derive(Debug, Clone, Default)]
pub struct EchoReport {
    /// Echoes completed in the window.
    pub messages: u64,
    /// Messages per second.
    pub msgs_per_s: f64,
    /// Echoed payload in MB (10^6 bytes) per second, one direction.
    pub mb_per_s: f64,
    /// Round-trip percentiles and maximum, in microseconds.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Maximum.
    pub max_us: f64,
    /// Echoes that differed from what was sent.
    pub mismatches: u64,
    /// Connections that failed.
    pub errors: u64,
    /// The first failure.
    pub first_error: Option<String>,
    /// Server CPU time per message in microseconds, if its PID is known.
    pub server_us_per_msg: Option<f64>,
    /// Server CPU use, in % of one core.
    pub server_cpu_pct: Option<f64>,
    /// Generator CPU use, in % of one core.
    pub generator_cpu_pct: f64,
    /// Extensions the server answered with.
    pub extensions: Option<String>,
    /// Bytes received per echoed message (frame headers included).
    pub wire_bytes_per_msg: f64,
    /// Bytes sent per message (the client frame, compressed if deflate).
    pub sent_bytes_per_msg: f64,
}

/// What a handshake run measured.
#[derive(Debug, Clone, Default)]
pub struct HandshakeReport {
    /// Completed handshakes per second.
    pub per_s: f64,
    /// Latency from connect to validated 101, microseconds.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Failed attempts.
    pub errors: u64,
    /// First failure.
    pub first_error: Option<String>,
    /// Server CPU time per handshake, microseconds.
    pub server_us_per_handshake: Option<f64>,
    /// Server CPU use, % of one core.
    pub server_cpu_pct: Option<f64>,
    /// Generator CPU use, % of one core.
    pub generator_cpu_pct: f64,
    /// Extensions the server answered with.
    pub extensions: Option<String>,
}

/// What an idle run measured.
#[derive(Debug, Clone, Default)]
pub struct IdleReport {
    /// Connections held.
    pub connections: usize,
    /// Server RSS before opening them, bytes.
    pub rss_before: Option<u64>,
    /// Server RSS with all of them open, bytes.
    pub rss_after: Option<u64>,
    /// (after - before) / connections.
    pub bytes_per_connection: Option<f64>,
}

/// CPU of the server (if known) and of this process at one moment.
struct CpuSample {
    at: Instant,
    server: Option<Duration>,
    me: Duration,
}

impl CpuSample {
    fn now(pid: Option<u32>) -> CpuSample {
        CpuSample {
            at: Instant::now(),
            server: pid.and_then(sys::process_cpu),
            me: sys::self_cpu(),
        }
    }

    /// (server CPU seconds, server %, generator %) since `earlier`.
    fn since(&self, earlier: &CpuSample) -> (Option<f64>, Option<f64>, f64) {
        let wall = self.at.duration_since(earlier.at).as_secs_f64().max(1e-9);
        let server = match (self.server, earlier.server) {
            (Some(b), Some(a)) => Some(b.saturating_sub(a).as_secs_f64()),
            _ => None,
        };
        let me = self.me.saturating_sub(earlier.me).as_secs_f64();
        (server, server.map(|s| 100.0 * s / wall), 100.0 * me / wall)
    }
}

fn micros(nanos: u64) -> f64 {
    nanos as f64 / 1000.0
}

/// Resolves the URL's address once (loopback in our runs).
fn resolve(url: &WsUrl) -> Result<SocketAddr, String> {
    url.addr()
        .to_socket_addrs()
        .map_err(|e| format!("{}: {e}", url.addr()))?
        .next()
        .ok_or_else(|| format!("{}: no address", url.addr()))
}

/// Opens the connections, then runs the echo loop on each for warmup + duration.
pub async fn run_echo(
    url: &WsUrl,
    settings: &EchoSettings,
    pid: Option<u32>,
) -> Result<EchoReport, String> {
    run_echo_in(url, settings, &Regime::default(), pid).await
}

/// [`run_echo`] in a regime: TLS, HTTP/2, permessage-deflate.
pub async fn run_echo_in(
    url: &WsUrl,
    settings: &EchoSettings,
    regime: &Regime,
    pid: Option<u32>,
) -> Result<EchoReport, String> {
    let addr = resolve(url)?;
    let request = Arc::new(wire::upgrade_request_offering(url, regime.offer()));
    let messages = Arc::new(regime.messages(settings.size));
    let mut set = JoinSet::new();
    let start;
    let end;
    let extensions;
    match regime.transport(addr).await? {
        None => {
            let opened = client::open_many(addr, request, settings.connections, None).await?;
            extensions = opened.iter().find_map(|o| o.extensions.clone());
            start = Instant::now() + settings.warmup;
            end = start + settings.duration;
            for o in opened {
                set.spawn(client::echo(
                    o,
                    messages.clone(),
                    settings.in_flight,
                    start,
                    end,
                ));
            }
        }
        Some(transport) => {
            let opened = stream::open_many(
                &transport,
                addr,
                url,
                request,
                regime.offer(),
                settings.connections,
                None,
            )
            .await?;
            extensions = opened.iter().find_map(|o| o.extensions.clone());
            start = Instant::now() + settings.warmup;
            end = start + settings.duration;
            for o in opened {
                set.spawn(stream::echo(
                    o,
                    messages.clone(),
                    settings.in_flight,
                    start,
                    end,
                ));
            }
        }
    }
    tokio::time::sleep_until(start.into()).await;
    let before = CpuSample::now(pid);
    tokio::time::sleep_until(end.into()).await;
    let after = CpuSample::now(pid);
    let mut stats = EchoStats::default();
    while let Some(joined) = set.join_next().await {
        stats.merge(joined.map_err(|e| e.to_string())?);
    }
    let (server_s, server_pct, generator_pct) = after.since(&before);
    let secs = settings.duration.as_secs_f64();
    let n = stats.messages;
    let sent = messages
        .variants
        .iter()
        .map(|v| v.frame.len())
        .sum::<usize>() as f64
        / messages.variants.len() as f64;
    Ok(EchoReport {
        messages: n,
        msgs_per_s: n as f64 / secs,
        mb_per_s: (n as f64 * messages.size as f64) / secs / 1e6,
        p50_us: micros(stats.latency.quantile(0.5)),
        p99_us: micros(stats.latency.quantile(0.99)),
        max_us: micros(stats.latency.max()),
        mismatches: stats.mismatches,
        errors: stats.errors,
        first_error: stats.first_error,
        server_us_per_msg: server_s.filter(|_| n > 0).map(|s| s * 1e6 / n as f64),
        server_cpu_pct: server_pct,
        generator_cpu_pct: generator_pct,
        extensions,
        wire_bytes_per_msg: if n > 0 {
            stats.wire_bytes as f64 / n as f64
        } else {
            0.0
        },
        sent_bytes_per_msg: sent,
    })
}

/// `concurrency` loops of connect + handshake + reset for warmup + duration.
pub async fn run_handshakes(
    url: &WsUrl,
    concurrency: usize,
    duration: Duration,
    warmup: Duration,
    pid: Option<u32>,
) -> Result<HandshakeReport, String> {
    run_handshakes_in(url, concurrency, duration, warmup, &Regime::default(), pid).await
}

/// [`run_handshakes`] in a regime (with TLS: the TLS handshake included).
pub async fn run_handshakes_in(
    url: &WsUrl,
    concurrency: usize,
    duration: Duration,
    warmup: Duration,
    regime: &Regime,
    pid: Option<u32>,
) -> Result<HandshakeReport, String> {
    let addr = resolve(url)?;
    let request = Arc::new(wire::upgrade_request_offering(url, regime.offer()));
    let transport = regime.transport(addr).await?;
    let start = Instant::now() + warmup;
    let end = start + duration;
    let mut set = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        match &transport {
            None => set.spawn(client::handshakes(addr, request.clone(), start, end)),
            Some(t) => set.spawn(stream::handshakes(
                t.clone(),
                addr,
                url.clone(),
                request.clone(),
                start,
                end,
            )),
        };
    }
    tokio::time::sleep_until(start.into()).await;
    let before = CpuSample::now(pid);
    tokio::time::sleep_until(end.into()).await;
    let after = CpuSample::now(pid);
    let mut latency = Histogram::default();
    let mut total = HandshakeStats::default();
    while let Some(joined) = set.join_next().await {
        let s = joined.map_err(|e| e.to_string())?;
        total.completed += s.completed;
        total.errors += s.errors;
        latency.merge(&s.latency);
        total.first_error = total.first_error.or(s.first_error);
        total.extensions = total.extensions.or(s.extensions);
    }
    let (server_s, server_pct, generator_pct) = after.since(&before);
    let n = total.completed;
    Ok(HandshakeReport {
        per_s: n as f64 / duration.as_secs_f64(),
        p50_us: micros(latency.quantile(0.5)),
        p99_us: micros(latency.quantile(0.99)),
        errors: total.errors,
        first_error: total.first_error,
        server_us_per_handshake: server_s.filter(|_| n > 0).map(|s| s * 1e6 / n as f64),
        server_cpu_pct: server_pct,
        generator_cpu_pct: generator_pct,
        extensions: total.extensions,
    })
}

/// Opens `n` connections with one small round trip each, waits `settle`, reads the
/// server's RSS, then keeps them `hold` longer and resets them.
pub async fn run_idle(
    url: &WsUrl,
    n: usize,
    pid: Option<u32>,
    settle: Duration,
    hold: Duration,
) -> Result<IdleReport, String> {
    run_idle_in(url, n, &Regime::default(), pid, settle, hold).await
}

/// [`run_idle`] in a regime; with deflate, the round trip is a compressed message.
pub async fn run_idle_in(
    url: &WsUrl,
    n: usize,
    regime: &Regime,
    pid: Option<u32>,
    settle: Duration,
    hold: Duration,
) -> Result<IdleReport, String> {
    let addr = resolve(url)?;
    let messages = Arc::new(if regime.deflate || regime.json.is_some() {
        regime.messages(1024)
    } else {
        Messages::new(16)
    });
    let request = Arc::new(wire::upgrade_request_offering(url, regime.offer()));
    let transport = regime.transport(addr).await?;
    let rss_before = pid.and_then(sys::process_rss);
    let held = match &transport {
        None => {
            let opened = client::open_many(addr, request, n, Some(messages)).await?;
            tokio::time::sleep(settle).await;
            let rss_after = pid.and_then(sys::process_rss);
            tokio::time::sleep(hold).await;
            opened.into_iter().for_each(|o| client::abort(o.tcp));
            rss_after
        }
        Some(t) => {
            let opened =
                stream::open_many(t, addr, url, request, regime.offer(), n, Some(messages)).await?;
            tokio::time::sleep(settle).await;
            let rss_after = pid.and_then(sys::process_rss);
            tokio::time::sleep(hold).await;
            drop(opened);
            rss_after
        }
    };
    let rss_after = held;
    let bytes_per_connection = match (rss_before, rss_after) {
        (Some(a), Some(b)) if n > 0 => Some((b as f64 - a as f64) / n as f64),
        _ => None,
    };
    Ok(IdleReport {
        connections: n,
        rss_before,
        rss_after,
        bytes_per_connection,
    })
}

/// Command-line options of a single run.
#[derive(Debug, Clone)]
struct Options {
    url: String,
    settings: EchoSettings,
    pid: Option<u32>,
    threads: usize,
    handshakes: bool,
    idle: Option<usize>,
    hold: Duration,
    json: bool,
    fanout: Option<usize>,
    deflate: bool,
    window: usize,
    regime: Regime,
    compare: bool,
    compare_opts: compare::Options,
}

/// Parses `16`, `1k`, `1KiB`, `64k`, `1m`.
fn parse_size(s: &str) -> Result<usize, String> {
    let lower = s.to_ascii_lowercase();
    let t = lower.trim_end_matches("ib").trim_end_matches('b');
    let (digits, unit) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1024),
        Some('m') => (&t[..t.len() - 1], 1024 * 1024),
        _ => (t, 1),
    };
    digits
        .parse::<usize>()
        .map(|n| n * unit)
        .map_err(|_| format!("bad size {s:?}"))
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("bad number of seconds {s:?}"))
}

fn parse_args(args: &[String]) -> Result<Option<Options>, String> {
    let mut o = Options {
        url: "ws://127.0.0.1:9001/".into(),
        settings: EchoSettings {
            connections: 64,
            size: 1024,
            in_flight: 16,
            duration: Duration::from_secs(5),
            warmup: Duration::from_millis(500),
        },
        pid: None,
        threads: 1,
        handshakes: false,
        idle: None,
        hold: Duration::from_secs(1),
        json: false,
        fanout: None,
        deflate: false,
        window: 1,
        regime: Regime::default(),
        compare: false,
        compare_opts: compare::Options::default(),
    };
    let mut duration_given = false;
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
            "--url" => o.url = value()?,
            "--connections" => o.settings.connections = number(value()?)?.max(1),
            "--size" => o.settings.size = parse_size(&value()?)?,
            "--in-flight" => o.settings.in_flight = number(value()?)?.max(1),
            "--duration" => {
                o.settings.duration = parse_secs(&value()?)?;
                duration_given = true;
            }
            "--warmup" => o.settings.warmup = parse_secs(&value()?)?,
            "--pid" => {
                let v = value()?;
                o.pid = Some(v.parse().map_err(|_| format!("bad pid {v:?}"))?);
            }
            "--threads" => o.threads = number(value()?)?.max(1),
            "--handshakes" => o.handshakes = true,
            "--idle" => o.idle = Some(number(value()?)?),
            "--hold" => o.hold = parse_secs(&value()?)?,
            "--json" => o.json = true,
            "--fanout" => o.fanout = Some(number(value()?)?.max(1)),
            "--deflate" => {
                o.deflate = true;
                o.regime.deflate = true;
            }
            "--payload" => o.regime.json = Some(deflate::Json::parse(&value()?)?),
            "--tls" => o.regime.tls = true,
            "--tls-resume" => {
                o.regime.tls = true;
                o.regime.tls_resume = true;
            }
            "--h2" => o.regime.h2 = Some(number(value()?)?.max(1)),
            "--window" => o.window = number(value()?)?.max(1),
            "--no-fanout" => o.compare_opts.fanout = Some(0),
            "--compare" => o.compare = true,
            "--rounds" => o.compare_opts.rounds = number(value()?)?.max(1),
            "--servers" => {
                o.compare_opts.servers = value()?.split(',').map(str::to_owned).collect();
            }
            "--out" => o.compare_opts.out = Some(value()?.into()),
            "--quick" => o.compare_opts.quick = true,
            "--no-build" => o.compare_opts.build = false,
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if let Some(rest) = o.url.strip_prefix("wss://") {
        o.url = format!("ws://{rest}");
        o.regime.tls = true;
    }
    if duration_given {
        o.compare_opts.duration = Some(o.settings.duration);
    }
    if let Some(n) = o.idle {
        o.compare_opts.idle = Some(n);
    }
    if let Some(n) = o.fanout
        && o.compare_opts.fanout.is_none()
    {
        o.compare_opts.fanout = Some(n);
    }
    o.compare_opts.command = std::iter::once("cargo xtask load".to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Some(o))
}

/// Entry point of the task.
pub fn main(args: &[String]) -> ExitCode {
    if args.first().is_some_and(|a| a == "--hub") {
        return hub::main(&args[1..]);
    }
    let options = match parse_args(args) {
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
    if options.compare {
        let r = &options.regime;
        let result = if r.tls || r.deflate || r.h2.is_some() {
            regimes::run(&options.compare_opts, r)
        } else {
            compare::run(&options.compare_opts)
        };
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("load --compare: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match single(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("load: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the generator's runtime: one thread unless asked otherwise.
fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

/// One run against `--url`; `Ok(false)` if echoes were wrong or connections failed.
fn single(o: &Options) -> Result<bool, String> {
    let url = WsUrl::parse(&o.url)?;
    let want = o.idle.or(o.fanout).unwrap_or(o.settings.connections) as u64 + 256;
    let limit = sys::raise_nofile(want);
    if limit < want {
        eprintln!("warning: open files limited to {limit}");
    }
    let rt = runtime(o.threads).map_err(|e| e.to_string())?;
    let s = &o.settings;
    if let Some(n) = o.fanout {
        let settings = fanout::FanoutSettings {
            subscribers: n,
            size: s.size,
            deflate: o.deflate,
            window: o.window,
            duration: s.duration,
            warmup: s.warmup,
        };
        let r = rt.block_on(fanout::run_fanout(&url, &settings, o.pid))?;
        if o.json {
            println!(
                "{}",
                serde_json::json!({
                    "mode": "fanout", "subscribers": n, "size": s.size, "deflate": o.deflate,
                    "window": o.window, "published": r.published,
                    "deliveries_per_s": r.deliveries_per_s, "p50_us": r.p50_us,
                    "p99_us": r.p99_us, "max_us": r.max_us, "mismatches": r.mismatches,
                    "errors": r.errors, "server_us_per_delivery": r.server_us_per_delivery,
                    "server_cpu_pct": r.server_cpu_pct, "generator_cpu_pct": r.generator_cpu_pct,
                    "extensions": r.extensions, "wire_bytes_per_delivery": r.wire_bytes_per_delivery,
                })
            );
        } else {
            println!(
                "{n} subscribers x {} B{}: {} published, {:.0} deliveries/s, publish to last receive p50 {:.0} us p99 {:.0} us max {:.0} us, {:.0} wire bytes per delivery",
                s.size,
                if o.deflate { " (deflate offered)" } else { "" },
                r.published,
                r.deliveries_per_s,
                r.p50_us,
                r.p99_us,
                r.max_us,
                r.wire_bytes_per_delivery
            );
            println!(
                "extensions: {}; {} mismatches, {} failed connections{}",
                r.extensions.as_deref().unwrap_or("none"),
                r.mismatches,
                r.errors,
                r.first_error
                    .as_ref()
                    .map(|e| format!(" (first: {e})"))
                    .unwrap_or_default()
            );
            print_cpu(
                r.server_us_per_delivery,
                r.server_cpu_pct,
                r.generator_cpu_pct,
                "delivery",
            );
        }
        return Ok(r.errors == 0 && r.mismatches == 0);
    }
    if let Some(n) = o.idle {
        let r = rt.block_on(run_idle_in(
            &url,
            n,
            &o.regime,
            o.pid,
            Duration::from_millis(500),
            o.hold,
        ))?;
        if o.json {
            println!(
                "{}",
                serde_json::json!({
                    "mode": "idle", "connections": n, "rss_before": r.rss_before,
                    "rss_after": r.rss_after, "bytes_per_connection": r.bytes_per_connection,
                })
            );
        } else {
            match r.bytes_per_connection {
                Some(b) => println!(
                    "{n} idle connections: server RSS {:.1} -> {:.1} MiB, {:.0} B ({:.2} KiB) per connection",
                    r.rss_before.unwrap_or(0) as f64 / 1048576.0,
                    r.rss_after.unwrap_or(0) as f64 / 1048576.0,
                    b,
                    b / 1024.0
                ),
                None => println!("{n} idle connections held (give --pid for the server's RSS)"),
            }
        }
        return Ok(true);
    }
    if o.handshakes {
        let r = rt.block_on(run_handshakes_in(
            &url,
            s.connections,
            s.duration,
            s.warmup,
            &o.regime,
            o.pid,
        ))?;
        if o.json {
            println!(
                "{}",
                serde_json::json!({
                    "mode": "handshakes", "concurrency": s.connections, "per_s": r.per_s,
                    "p50_us": r.p50_us, "p99_us": r.p99_us, "errors": r.errors,
                    "server_us_per_handshake": r.server_us_per_handshake,
                    "server_cpu_pct": r.server_cpu_pct, "generator_cpu_pct": r.generator_cpu_pct,
                    "extensions": r.extensions,
                })
            );
        } else {
            println!(
                "{:.0} handshakes/s ({} concurrent), latency p50 {:.0} us p99 {:.0} us, {} errors{}",
                r.per_s,
                s.connections,
                r.p50_us,
                r.p99_us,
                r.errors,
                r.first_error
                    .as_ref()
                    .map(|e| format!(" (first: {e})"))
                    .unwrap_or_default()
            );
            print_cpu(
                r.server_us_per_handshake,
                r.server_cpu_pct,
                r.generator_cpu_pct,
                "handshake",
            );
        }
        return Ok(r.errors == 0);
    }
    let r = rt.block_on(run_echo_in(&url, s, &o.regime, o.pid))?;
    if o.json {
        println!(
            "{}",
            serde_json::json!({
                "mode": "echo", "connections": s.connections, "size": s.size,
                "in_flight": s.in_flight, "duration_s": s.duration.as_secs_f64(),
                "messages": r.messages, "msgs_per_s": r.msgs_per_s, "mb_per_s": r.mb_per_s,
                "p50_us": r.p50_us, "p99_us": r.p99_us, "max_us": r.max_us,
                "mismatches": r.mismatches, "errors": r.errors, "first_error": r.first_error,
                "server_us_per_msg": r.server_us_per_msg, "server_cpu_pct": r.server_cpu_pct,
                "generator_cpu_pct": r.generator_cpu_pct, "extensions": r.extensions,
                "wire_bytes_per_msg": r.wire_bytes_per_msg,
                "sent_bytes_per_msg": r.sent_bytes_per_msg,
            })
        );
    } else {
        println!(
            "{} connections x {} in flight, {} B: {:.0} msg/s, {:.1} MB/s, latency p50 {:.0} us p99 {:.0} us max {:.0} us",
            s.connections,
            s.in_flight,
            s.size,
            r.msgs_per_s,
            r.mb_per_s,
            r.p50_us,
            r.p99_us,
            r.max_us
        );
        println!(
            "checked {} echoes: {} mismatches, {} failed connections{}{}",
            r.messages,
            r.mismatches,
            r.errors,
            r.first_error
                .as_ref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default(),
            r.extensions
                .as_ref()
                .map(|e| format!("; extensions negotiated: {e}"))
                .unwrap_or_default()
        );
        println!(
            "bytes per message: {:.0} sent, {:.0} received",
            r.sent_bytes_per_msg, r.wire_bytes_per_msg
        );
        print_cpu(
            r.server_us_per_msg,
            r.server_cpu_pct,
            r.generator_cpu_pct,
            "message",
        );
    }
    Ok(r.mismatches == 0 && r.errors == 0 && r.messages > 0)
}

fn print_cpu(per: Option<f64>, server_pct: Option<f64>, generator_pct: f64, what: &str) {
    match (per, server_pct) {
        (Some(per), Some(pct)) => {
            println!("server CPU: {per:.2} us per {what}, {pct:.0}% of a core")
        }
        _ => println!("server CPU: unknown (give --pid)"),
    }
    let note = if generator_pct > 90.0 {
        " (the generator may be the limit)"
    } else {
        ""
    };
    println!("generator CPU: {generator_pct:.0}% of a core{note}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn options() {
        assert_eq!(parse_size("16").unwrap(), 16);
        assert_eq!(parse_size("1k").unwrap(), 1024);
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("1m").unwrap(), 1 << 20);
        assert!(parse_size("x").is_err());
        let o = parse_args(&args(
            "--connections 3 --size 64k --in-flight 2 --duration 1.5 --pid 7",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(o.settings.connections, 3);
        assert_eq!(o.settings.size, 65536);
        assert_eq!(o.settings.in_flight, 2);
        assert_eq!(o.settings.duration, Duration::from_millis(1500));
        assert_eq!(o.pid, Some(7));
        assert!(parse_args(&args("--bogus")).is_err());
        assert!(parse_args(&args("--size")).is_err());
        assert!(parse_args(&args("--help")).unwrap().is_none());
        let o = parse_args(&args("--compare --rounds 2 --quick"))
            .unwrap()
            .unwrap();
        assert!(o.compare && o.compare_opts.quick);
        assert_eq!(o.compare_opts.rounds, 2);
        assert_eq!(
            o.compare_opts.command,
            "cargo xtask load --compare --rounds 2 --quick"
        );
    }

    /// The smoke test: the generator against a small in-process echo server for about
    /// a second, echo, handshake and idle modes.
    #[test]
    fn smoke() {
        let rt = runtime(1).unwrap();
        rt.block_on(async {
            let addr = client::tests::test_server(false).await;
            let url = WsUrl::parse(&format!("ws://{addr}/")).unwrap();
            let me = Some(std::process::id());
            let settings = EchoSettings {
                connections: 4,
                size: 1024,
                in_flight: 4,
                duration: Duration::from_millis(600),
                warmup: Duration::from_millis(100),
            };
            let r = run_echo(&url, &settings, me).await.unwrap();
            assert!(r.messages > 0);
            assert_eq!(r.mismatches, 0);
            assert_eq!(r.errors, 0, "{:?}", r.first_error);
            assert!(r.p50_us > 0.0 && r.p99_us >= r.p50_us && r.max_us >= r.p99_us);
            assert!(r.server_us_per_msg.is_some());
            assert_eq!(r.extensions, None);
            let h = run_handshakes(&url, 2, Duration::from_millis(200), Duration::ZERO, me)
                .await
                .unwrap();
            assert!(h.per_s > 0.0);
            assert_eq!(h.errors, 0);
            let i = run_idle(&url, 20, me, Duration::ZERO, Duration::ZERO)
                .await
                .unwrap();
            assert_eq!(i.connections, 20);
            assert!(i.bytes_per_connection.is_some());
        });
    }
}
