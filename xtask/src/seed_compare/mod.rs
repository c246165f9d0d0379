//! `cargo xtask seed-compare`: one ticker feed (the `ticker` example of duplex-tokio)
//! received over short polling, long polling, HTTP streaming (SSE) and WebSocket (with
//! and without permessage-deflate), measured at the client's sockets: bytes per
//! delivered update in each direction, delivery latency from the publish timestamp,
//! the server's CPU time per delivered update, and missed or duplicated updates.
//!
//! The HTTP/1.1 and WebSocket clients are this module's own (`wire.rs`), so that
//! every byte is counted where it crosses the socket.

mod clients;
mod h2;
mod report;
mod wire;

use std::io;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

pub use clients::{Headers, Settings, Tally, Transport};

use crate::netem::{self, Netem, Profile, Snapshot};

const USAGE: &str = "\
cargo xtask seed-compare [OPTIONS]

Runs N clients of each transport against the ticker example, one transport after
the other, and reports bytes per delivered update (at the socket, headers
included), latency from publish to receipt, the server's CPU per update, and
missed or duplicated updates. Builds and starts the ticker itself
(cargo build --release -p duplex-tokio --example ticker) unless --url is given.

Options:
  --clients N            clients per transport (default 100)
  --rate R               updates per second published (default 10)
  --symbols N            ticker symbols (default 20)
  --poll-interval SECS   short polling interval (default 1)
  --duration SECS        measuring time per transport (default 10)
  --transports LIST      comma-separated, from poll,long-poll,sse,ws,ws-deflate,
                         ws-deflate-ctx,h2-poll,h2-long-poll,h2-sse,h2-ws
                         (default: all; h2-*: HTTP/2 with prior knowledge)
  --headers KIND         request headers: browser (what Chrome sends, no cookies;
                         default) or minimal (host, user agent, accept)
  --url http://HOST:PORT measure a running ticker (its --rate and --symbols apply)
  --profile NAME         run the ticker and the clients at the two ends of the
                         packet-level emulator (cargo xtask netem profiles): bytes
                         on the wire (IP packets, both ways) are counted there.
                         Needs root. --rtt, --jitter, --loss, --link-rate, --queue
                         and --bursts change the profile (cargo xtask netem --help)
  --chat                 the chat case: the ticker is a chat room and one more client
                         per transport (the speaker) sends --rate messages a second
                         to all the others: POST /say for HTTP, a WebSocket message
                         for WebSocket
  --json PATH            also write the results as JSON
  --svg PATH             also write the chart as SVG
  -h, --help             this help
";

/// The command line.
#[derive(Clone, Debug)]
pub struct Options {
    pub clients: usize,
    pub rate: f64,
    pub symbols: usize,
    pub poll_interval: Duration,
    pub duration: Duration,
    pub transports: Vec<Transport>,
    pub headers: Headers,
    pub url: Option<String>,
    pub json: Option<String>,
    pub svg: Option<String>,
    /// The chat case: the ticker publishes what a speaker sends.
    pub chat: bool,
    /// The emulated link, if any.
    pub profile: Option<Profile>,
    /// The namespace the ticker runs in (set with the link): `/stats` is asked there,
    /// so that it does not cross the link.
    pub server_netns: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clients: 100,
            rate: 10.0,
            symbols: 20,
            poll_interval: Duration::from_secs(1),
            duration: Duration::from_secs(10),
            transports: Transport::ALL.to_vec(),
            headers: Headers::Browser,
            url: None,
            json: None,
            svg: None,
            chat: false,
            profile: None,
            server_netns: None,
        }
    }
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut options = Options::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .map(String::as_str)
                .ok_or_else(|| format!("{arg} needs a value"))
        };
        let seconds = |v: &str| {
            v.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e6)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| format!("{arg}: {v:?} is not a positive number of seconds"))
        };
        const LINK: [&str; 7] = [
            "--profile",
            "--rtt",
            "--jitter",
            "--loss",
            "--link-rate",
            "--queue",
            "--bursts",
        ];
        if LINK.contains(&arg.as_str()) {
            let mut value = || value().map(str::to_owned);
            let profile = options
                .profile
                .get_or_insert_with(|| netem::PROFILES[0].clone());
            profile.parse_arg(arg, &mut value)?;
            continue;
        }
        match arg.as_str() {
            "--clients" => {
                options.clients = value()?
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or("--clients must be at least 1")?
            }
            "--rate" => {
                options.rate = value()?
                    .parse()
                    .ok()
                    .filter(|&r: &f64| r > 0.0 && r <= 100_000.0)
                    .ok_or("--rate must be in (0, 100000]")?
            }
            "--symbols" => {
                options.symbols = value()?
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or("--symbols must be at least 1")?
            }
            "--poll-interval" => options.poll_interval = seconds(value()?)?,
            "--duration" => options.duration = seconds(value()?)?,
            "--transports" => {
                options.transports = value()?
                    .split(',')
                    .map(|name| {
                        Transport::parse(name.trim())
                            .ok_or_else(|| format!("unknown transport {name:?}"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "--headers" => {
                options.headers = match value()? {
                    "browser" => Headers::Browser,
                    "minimal" => Headers::Minimal,
                    other => return Err(format!("--headers: unknown kind {other:?}")),
                }
            }
            "--url" => {
                let url = value()?;
                let addr = url.strip_prefix("http://").unwrap_or(url);
                options.url = Some(addr.trim_end_matches('/').to_owned());
            }
            "--chat" => options.chat = true,
            "--json" => options.json = Some(value()?.to_owned()),
            "--svg" => options.svg = Some(value()?.to_owned()),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if options.profile.is_some() && options.url.is_some() {
        return Err("--url and a link profile do not go together".into());
    }
    Ok(options)
}

/// Entry point of the task.
pub fn main(args: &[String]) -> ExitCode {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let options = match parse_args(args) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("seed-compare: {error}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match options.profile.clone() {
        None => block_on(run_main(options, None)),
        Some(profile) => {
            netem::cleanup_on_signals();
            with_link(&profile, |netem| block_on(run_main(options, Some(netem))))
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("seed-compare: {error}");
            ExitCode::FAILURE
        }
    }
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

/// Sets up the emulated link and runs `f` on a thread in its client namespace (the
/// ticker goes to the server end).
pub fn with_link<T: Send>(
    profile: &Profile,
    f: impl FnOnce(&Netem) -> io::Result<T> + Send,
) -> io::Result<T> {
    let netem = Netem::with_profile(profile)?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                netem::enter(&netem.client.name)?;
                f(&netem)
            })
            .join()
            .map_err(|_| io::Error::other("the measuring thread panicked"))?
    })
}

/// Runs the comparison and prints the report; false when an update was missed or
/// duplicated or a client failed, or came sooner than the link allows.
async fn run_main(mut options: Options, netem: Option<&Netem>) -> io::Result<bool> {
    let (addr, _ticker) = match &options.url {
        Some(addr) => (addr.clone(), None),
        None => {
            let binary = build_ticker(true)?;
            let server = netem.map(|n| n.server.name.clone());
            let (child, addr) = start_ticker_in(
                &binary,
                options.rate,
                options.symbols,
                server.as_deref(),
                options.chat,
            )
            .await?;
            options.server_netns = server;
            (addr, Some(child))
        }
    };
    let stats = server_stats(&addr, options.server_netns.as_deref()).await?;
    if let Some(profile) = &options.profile {
        eprintln!("link: {} ({})", profile.name, profile.summary());
    }
    eprintln!(
        "ticker at {addr}: {} updates/s over {} symbols; {} clients per transport, {:?} each",
        stats.rate, stats.symbols, options.clients, options.duration
    );
    let load_before = load_average();
    let mut results = Vec::new();
    for &transport in &options.transports {
        eprint!("{:<16}", transport.name());
        let result = measure(&addr, transport, &options, netem).await?;
        eprintln!(
            "{} delivered, {} missed, {} duplicated, {} bunched, {} errors",
            result.delivered(),
            result.missed(),
            result.duplicated(),
            result.bunched(),
            result.errors().len()
        );
        for error in result.errors().iter().take(5) {
            eprintln!("  {error}");
        }
        results.push(result);
    }
    let run = report::Run {
        options: options.clone(),
        rate: stats.rate,
        symbols: stats.symbols,
        machine: report::machine(),
        load_before,
        load_after: load_average(),
        results,
    };
    print!("{}", run.markdown());
    if let Some(path) = &options.json {
        std::fs::write(path, run.json())?;
    }
    if let Some(path) = &options.svg {
        std::fs::write(path, run.svg())?;
    }
    let mut ok = true;
    for r in &run.results {
        let floor = run.one_way_floor();
        let fastest = r.fastest();
        if fastest < floor {
            eprintln!(
                "{}: an update came {fastest:?} after it was published, sooner than the link's \
                 {floor:?}",
                r.transport.name()
            );
            ok = false;
        }
        ok &= r.missed() == 0 && r.duplicated() == 0 && r.errors().is_empty();
    }
    Ok(ok)
}

/// One transport's run: every client's tally and the server's counters around it.
pub struct Measurement {
    pub transport: Transport,
    pub tallies: Vec<Tally>,
    pub wall: Duration,
    /// Server CPU time over the run, milliseconds (from its threads' run time).
    pub cpu_ms: f64,
    /// The same from `/proc/PID/stat` (10 ms ticks), as a check.
    pub cpu_ms_ticks: f64,
    /// Updates published over the run.
    pub published: u64,
    /// What crossed the emulated link over the run, if there was one: client to
    /// server, server to client.
    pub wire: Option<(Snapshot, Snapshot)>,
    /// The chat case's speaker.
    pub speaker: Option<Tally>,
}

impl Measurement {
    pub fn delivered(&self) -> u64 {
        self.tallies.iter().map(|t| t.delivered).sum()
    }
    pub fn missed(&self) -> u64 {
        self.tallies.iter().map(|t| t.missed).sum()
    }
    pub fn duplicated(&self) -> u64 {
        self.tallies.iter().map(|t| t.duplicated).sum()
    }
    pub fn bunched(&self) -> u64 {
        self.tallies.iter().map(|t| t.bunched).sum()
    }
    /// The shortest publish-to-receipt time.
    pub fn fastest(&self) -> Duration {
        let us = self
            .tallies
            .iter()
            .flat_map(|t| t.latencies_us.iter().copied())
            .min()
            .unwrap_or(u32::MAX);
        Duration::from_micros(u64::from(us))
    }
    pub fn errors(&self) -> Vec<&str> {
        self.tallies
            .iter()
            .chain(&self.speaker)
            .filter_map(|t| t.error.as_deref())
            .collect()
    }
}

/// Runs `options.clients` clients of `transport` for `options.duration`.
pub async fn measure(
    addr: &str,
    transport: Transport,
    options: &Options,
    netem: Option<&Netem>,
) -> io::Result<Measurement> {
    let settings = Arc::new(Settings {
        addr: addr.to_owned(),
        clients: options.clients,
        poll_interval: options.poll_interval,
        headers: options.headers,
        rate: options.rate,
    });
    let stats_netns = options.server_netns.as_deref();
    let before = server_stats(addr, stats_netns).await?;
    let wire_before = netem.map(Netem::counters);
    let start = Instant::now();
    let deadline = start + options.duration;
    let handles: Vec<_> = (0..options.clients)
        .map(|index| {
            let settings = settings.clone();
            tokio::spawn(
                async move { clients::run(transport, &settings, index, start, deadline).await },
            )
        })
        .collect();
    let speaker = options.chat.then(|| {
        let settings = settings.clone();
        tokio::spawn(async move { clients::speak(transport, &settings, start, deadline).await })
    });
    let mut tallies = Vec::with_capacity(handles.len());
    for handle in handles {
        tallies.push(handle.await.map_err(io::Error::other)?);
    }
    let speaker = match speaker {
        Some(handle) => Some(handle.await.map_err(io::Error::other)?),
        None => None,
    };
    let wall = start.elapsed();
    let after = server_stats(addr, stats_netns).await?;
    // Let the server finish closing these connections before the next transport.
    let settle = Instant::now() + Duration::from_secs(3);
    while Instant::now() < settle && server_stats(addr, stats_netns).await?.open(transport) > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The closing packets cross the link too: give them a few round trips.
    let wire = match (netem, wire_before) {
        (Some(netem), Some((up, down))) => {
            let rtt = options.profile.as_ref().map_or(Duration::ZERO, |p| p.rtt);
            tokio::time::sleep(rtt * 3 + Duration::from_millis(100)).await;
            let (up_after, down_after) = netem.counters();
            Some((up_after - up, down_after - down))
        }
        _ => None,
    };
    Ok(Measurement {
        transport,
        tallies,
        wall,
        cpu_ms: after.cpu_ms() - before.cpu_ms(),
        cpu_ms_ticks: after.cpu_ms - before.cpu_ms,
        published: after.seq - before.seq,
        wire,
        speaker,
    })
}

/// What the ticker's `/stats` says.
#[derive(Debug, Deserialize)]
pub struct ServerStats {
    pub seq: u64,
    pub rate: f64,
    pub symbols: usize,
    pub cpu_ms: f64,
    /// Nanoseconds, or -1 where `/proc/self/task/*/schedstat` is missing.
    #[serde(default)]
    pub threads_cpu_ns: i64,
    pub open: std::collections::BTreeMap<String, u64>,
}

impl ServerStats {
    /// CPU time in milliseconds: the threads' run time where known, else the ticks.
    fn cpu_ms(&self) -> f64 {
        if self.threads_cpu_ns > 0 {
            self.threads_cpu_ns as f64 / 1e6
        } else {
            self.cpu_ms
        }
    }

    /// Open streaming connections of `transport` (polling ones are not counted).
    fn open(&self, transport: Transport) -> u64 {
        let key = match transport {
            Transport::Poll | Transport::LongPoll => return 0,
            Transport::H2Poll | Transport::H2LongPoll => return 0,
            Transport::Sse | Transport::H2Sse => "sse",
            Transport::Ws | Transport::H2Ws => "ws",
            Transport::WsDeflate => "ws_deflate",
            Transport::WsDeflateCtx => "ws_deflate_ctx",
        };
        self.open.get(key).copied().unwrap_or(0)
    }
}

/// The ticker's `/stats`, asked from inside `netns` if given (there the connection
/// stays on the server's side of the link).
pub async fn server_stats(addr: &str, netns: Option<&str>) -> io::Result<ServerStats> {
    let mut conn = match netns {
        None => wire::Conn::connect(addr).await?,
        Some(netns) => {
            let tcp = std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        netem::enter(netns)?;
                        let tcp = std::net::TcpStream::connect(addr)?;
                        tcp.set_nonblocking(true)?;
                        Ok::<_, io::Error>(tcp)
                    })
                    .join()
                    .map_err(|_| io::Error::other("connecting in the namespace panicked"))?
            })?;
            wire::Conn::from_tcp(tokio::net::TcpStream::from_std(tcp)?)?
        }
    };
    conn.send(&wire::get("/stats", addr, "Connection: close\r\n"))
        .await?;
    let (head, body) = tokio::time::timeout(Duration::from_secs(10), conn.response())
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "/stats: no answer within 10 s"))??;
    if head.status != 200 {
        return Err(io::Error::other(format!("/stats answered {}", head.status)));
    }
    serde_json::from_slice(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Builds the ticker example (release or debug) and returns its path.
pub fn build_ticker(release: bool) -> io::Result<std::path::PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is in the workspace");
    let mut command = std::process::Command::new(cargo);
    command
        .current_dir(workspace)
        .args(["build", "-p", "duplex-tokio", "--example", "ticker"])
        .arg("--message-format=json-render-diagnostics")
        .stderr(Stdio::inherit());
    if release {
        command.arg("--release");
    }
    let output = command.output()?;
    if !output.status.success() {
        return Err(io::Error::other("building the ticker example failed"));
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["target"]["name"] == "ticker")
        .find_map(|message| message["executable"].as_str().map(Into::into))
        .ok_or_else(|| io::Error::other("cargo did not say where the ticker example is"))
}

/// Starts the ticker on a free loopback port; returns it (killed when dropped) and its
/// address.
#[cfg(test)]
pub async fn start_ticker(
    binary: &std::path::Path,
    rate: f64,
    symbols: usize,
) -> io::Result<(Child, String)> {
    start_ticker_in(binary, rate, symbols, None, false).await
}

/// The same, in the server namespace of the emulated link if `netns` is given (on the
/// server end's address).
pub async fn start_ticker_in(
    binary: &std::path::Path,
    rate: f64,
    symbols: usize,
    netns: Option<&str>,
    chat: bool,
) -> io::Result<(Child, String)> {
    let mut command = match netns {
        None => {
            let mut command = Command::new(binary);
            command.arg("127.0.0.1:0");
            command
        }
        Some(netns) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", netns]).arg(binary);
            command.arg(format!("{}:0", Netem::SERVER_IP));
            command
        }
    };
    // SAFETY: prctl is async-signal-safe; it only asks for SIGKILL when this thread
    // ends, so that the ticker does not outlive a killed seed-compare.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    if chat {
        command.arg("--chat");
    }
    let mut child = command
        .args(["--rate", &rate.to_string()])
        .args(["--symbols", &symbols.to_string()])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .map_err(|_| io::Error::other("the ticker did not start within 10 s"))??
        .unwrap_or_default();
    let addr = line
        .strip_prefix("listening on ")
        .ok_or_else(|| io::Error::other(format!("the ticker said {line:?}")))?
        .to_owned();
    Ok((child, addr))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests;
