//! `cargo xtask load --compare`: builds our two echo servers, the tokio-tungstenite,
//! fastwebsockets and sockudo-ws peers and the raw TCP echo (release), installs the
//! Bun and Node `ws` peers (`benches/js/install.sh`), pins every server to one core and
//! the generator to another, and runs the same matrix against each in turn,
//! interleaved, for several rounds; medians go to `docs/BENCHMARKS.md`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::fanout::{FanoutSettings, run_fanout};
use super::report::{Machine, Results};
use super::wire::WsUrl;
use super::{EchoSettings, run_echo, run_handshakes, run_idle, sys};

/// `--compare` options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Rounds (medians over them).
    pub rounds: usize,
    /// Measured time per cell (default 3 s, 1 s with `quick`).
    pub duration: Option<Duration>,
    /// Idle connections for the memory row (default 10,000, 1,000 with `quick`).
    pub idle: Option<usize>,
    /// Subscribers of the fan-out cells (default 10,000, 1,000 with `quick`; 0: none).
    pub fanout: Option<usize>,
    /// Subset of servers, by name; empty for all.
    pub servers: Vec<String>,
    /// Report path (default `docs/BENCHMARKS.md`).
    pub out: Option<PathBuf>,
    /// 1 round, 1 s cells, 1,000 idle connections.
    pub quick: bool,
    /// Run cargo build first.
    pub build: bool,
    /// The command line, for the report.
    pub command: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rounds: 3,
            duration: None,
            idle: None,
            fanout: None,
            servers: Vec::new(),
            out: None,
            quick: false,
            build: true,
            command: "cargo xtask load --compare".into(),
        }
    }
}

/// How a server is built.
#[derive(Debug, Clone, Copy)]
pub enum Build {
    /// `cargo build --release -p PACKAGE --example echo-server`.
    Example(&'static str),
    /// `cargo build --release -p PACKAGE --features FEATURES --example EXAMPLE`.
    ExampleWith {
        /// The package.
        package: &'static str,
        /// The example.
        example: &'static str,
        /// Its features.
        features: &'static str,
    },
    /// `cargo build --release -p duplex-benches --bin NAME`.
    Bench(&'static str),
    /// `node benches/js/FILE`, after `benches/js/install.sh`.
    Node(&'static str),
    /// `benches/js/node_modules/bun/bin/bun.exe benches/js/FILE`, after `install.sh`.
    Bun(&'static str),
}

/// A server of the comparison.
#[derive(Debug, Clone, Copy)]
pub struct Server {
    /// Short name (`--servers`, file names).
    pub name: &'static str,
    /// Column label in the report.
    pub label: &'static str,
    /// What it is, for the report.
    pub about: &'static str,
    /// Ours (as opposed to a peer or the limit).
    pub ours: bool,
    /// How it is built.
    pub build: Build,
}

/// Every server, in report order. The peers come before raw TCP.
pub const SERVERS: [Server; 8] = [
    Server {
        name: "duplex-tokio",
        label: "duplex-tokio",
        about: "`duplex-tokio`'s `echo-server` example (tokio multi-thread runtime, task per connection)",
        ours: true,
        build: Build::Example("duplex-tokio"),
    },
    Server {
        name: "duplex-mio",
        label: "duplex-mio",
        about: "`duplex-mio`'s `echo-server` example (mio event loop, one worker per allowed CPU plus the acceptor thread)",
        ours: true,
        build: Build::Example("duplex-mio"),
    },
    Server {
        name: "tungstenite",
        label: "tokio-tungstenite",
        about: "`benches/src/bin/tungstenite-echo.rs`: tokio-tungstenite 0.30, same shape as duplex-tokio's example",
        ours: false,
        build: Build::Bench("tungstenite-echo"),
    },
    Server {
        name: "fastwebsockets",
        label: "fastwebsockets",
        about: "`benches/src/bin/fastwebsockets-echo.rs`: fastwebsockets 0.10 upgraded through hyper 1, `FragmentCollector`",
        ours: false,
        build: Build::Bench("fastwebsockets-echo"),
    },
    Server {
        name: "sockudo",
        label: "sockudo-ws",
        about: "`benches/src/bin/sockudo-echo.rs`: sockudo-ws 3.1 (`WebSocketStream`, tokio multi-thread runtime, task per connection)",
        ours: false,
        build: Build::Bench("sockudo-echo"),
    },
    Server {
        name: "bun",
        label: "Bun",
        about: "`benches/js/bun-echo.js`: `Bun.serve` (Bun 1.4, its WebSocket server is uWebSockets), `ws.send` of each message",
        ours: false,
        build: Build::Bun("bun-echo.js"),
    },
    Server {
        name: "node-ws",
        label: "Node ws",
        about: "`benches/js/ws-echo.js`: Node's `ws` 8 on Node 20, `ws.send` of each message",
        ours: false,
        build: Build::Node("ws-echo.js"),
    },
    Server {
        name: "raw-tcp",
        label: "raw TCP",
        about: "`benches/src/bin/raw-echo.rs`: a 101 response, then every byte sent back untouched (the limit)",
        ours: false,
        build: Build::Bench("raw-echo"),
    },
];

/// The fan-out servers, by the name of the echo server of the same library (their
/// binaries land in `<target>/load/bin/fanout-NAME`).
pub const FANOUT_SERVERS: [Server; 4] = [
    Server {
        name: "duplex-tokio",
        label: "duplex-tokio",
        about: "`benches/src/bin/fanout-duplex-tokio.rs`: one `PreparedMessage` written to every subscriber's writer half from the receiving task with `try_send_prepared` (a subscriber whose write buffer is full is dropped)",
        ours: true,
        build: Build::Bench("fanout-duplex-tokio"),
    },
    Server {
        name: "duplex-mio",
        label: "duplex-mio",
        about: "`benches/src/bin/fanout-duplex-mio.rs`: `Context::publish` to a topic every connection subscribed to",
        ours: true,
        build: Build::Bench("fanout-duplex-mio"),
    },
    Server {
        name: "tungstenite",
        label: "tokio-tungstenite",
        about: "`benches/src/bin/fanout-tungstenite.rs`: the message queued to every connection's task, one `send` each (no permessage-deflate)",
        ours: false,
        build: Build::Bench("fanout-tungstenite"),
    },
    Server {
        name: "bun",
        label: "Bun",
        about: "`benches/js/bun-fanout.js`: `server.publish` to a topic every connection subscribed to (uWebSockets pub/sub)",
        ours: false,
        build: Build::Bun("bun-fanout.js"),
    },
];

/// Payload sizes of the fan-out cells (each without and with permessage-deflate).
pub const FANOUT_SIZES: [usize; 2] = [100, 1024];

/// The fan-out cells: (size, deflate offered).
pub fn fanout_cells() -> Vec<(usize, bool)> {
    FANOUT_SIZES
        .iter()
        .flat_map(|&s| [(s, false), (s, true)])
        .collect()
}

/// Connections x sizes of the echo matrix.
pub const CONNECTIONS: [usize; 3] = [1, 64, 1000];
/// Payload sizes of the echo matrix.
pub const SIZES: [usize; 3] = [16, 1024, 64 * 1024];
/// Concurrent connecting loops of the handshake row.
pub const HANDSHAKE_CONCURRENCY: usize = 32;

/// Messages in flight per connection for a payload size: 16 up to 1 KiB, 4 at 64 KiB
/// (1,000 connections x 4 x 64 KiB is already 256 MiB in flight).
pub fn in_flight_for(size: usize) -> usize {
    if size > 16 * 1024 { 4 } else { 16 }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root.join(p) })
        .unwrap_or_else(|| root.join("target"))
}

/// Runs one `cargo build --release --message-format=json` and returns the executable
/// of every binary target built, by target name.
fn cargo_build(root: &Path, args: &[&str]) -> Result<BTreeMap<String, PathBuf>, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("building: cargo build --release {}", args.join(" "));
    let output = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--message-format=json-render-diagnostics",
        ])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cargo: {e}"))?;
    if !output.status.success() {
        return Err(format!("cargo build {} failed", args.join(" ")));
    }
    let mut out = BTreeMap::new();
    for line in output.stdout.split(|&b| b == b'\n') {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        if v["reason"] != "compiler-artifact" {
            continue;
        }
        if let (Some(name), Some(exe)) = (v["target"]["name"].as_str(), v["executable"].as_str()) {
            out.insert(name.to_string(), PathBuf::from(exe));
        }
    }
    Ok(out)
}

/// How to start a built server: a program and the arguments before the address.
#[derive(Debug, Clone)]
pub struct Launch {
    program: PathBuf,
    args: Vec<PathBuf>,
}

/// Installs the JavaScript peers' npm packages (`benches/js/install.sh`).
fn install_js(root: &Path) -> Result<(), String> {
    let script = root.join("benches").join("js").join("install.sh");
    eprintln!("installing: bash benches/js/install.sh");
    let status = Command::new("bash")
        .arg(&script)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    if !status.success() {
        return Err("benches/js/install.sh failed (node and npm are needed for the JavaScript peers; leave them out with --servers)".into());
    }
    Ok(())
}

/// Builds every selected server and copies each binary to `<target>/load/bin/NAME`
/// (both examples are called `echo-server` and land on the same path); installs the
/// JavaScript peers' packages if any is selected.
pub fn build_servers(
    root: &Path,
    servers: &[Server],
    build: bool,
    prefix: &str,
) -> Result<Vec<Launch>, String> {
    let bin_dir = target_dir(root).join("load").join("bin");
    std::fs::create_dir_all(&bin_dir).map_err(|e| format!("{}: {e}", bin_dir.display()))?;
    let js = root.join("benches").join("js");
    let bun = js
        .join("node_modules")
        .join("bun")
        .join("bin")
        .join("bun.exe");
    let mut bench_bins: Option<BTreeMap<String, PathBuf>> = None;
    let mut js_installed = false;
    let mut launches = Vec::new();
    for s in servers {
        let dest = bin_dir.join(format!("{prefix}{}", s.name));
        let built = match s.build {
            Build::Example(package) if build => {
                cargo_build(root, &["-p", package, "--example", "echo-server"])?
                    .remove("echo-server")
            }
            Build::ExampleWith {
                package,
                example,
                features,
            } if build => cargo_build(
                root,
                &["-p", package, "--features", features, "--example", example],
            )?
            .remove(example),
            Build::Bench(bin) if build => {
                if bench_bins.is_none() {
                    bench_bins = Some(cargo_build(root, &["-p", "duplex-benches", "--bins"])?);
                }
                bench_bins.as_ref().and_then(|b| b.get(bin).cloned())
            }
            Build::Example(_) | Build::ExampleWith { .. } | Build::Bench(_) => None,
            Build::Node(file) | Build::Bun(file) => {
                if !js_installed
                    && (build || !bun.exists() || !js.join("node_modules").join("ws").exists())
                {
                    install_js(root)?;
                    js_installed = true;
                }
                let program = match s.build {
                    Build::Bun(_) => bun.clone(),
                    _ => PathBuf::from("node"),
                };
                launches.push(Launch {
                    program,
                    args: vec![js.join(file)],
                });
                continue;
            }
        };
        if build {
            let built = built.ok_or_else(|| format!("cargo built no binary for {}", s.name))?;
            // Copy right away: the other example overwrites the same path.
            std::fs::copy(&built, &dest).map_err(|e| format!("copy {}: {e}", s.name))?;
        } else if !dest.exists() {
            return Err(format!(
                "{} not built yet (run once without --no-build)",
                dest.display()
            ));
        }
        launches.push(Launch {
            program: dest,
            args: Vec::new(),
        });
    }
    Ok(launches)
}

/// A running server process.
pub struct Running {
    child: Child,
    /// Where it listens.
    pub url: WsUrl,
}

impl Running {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a server on 127.0.0.1:0, pinned to `cpu`, and waits for `listening on`.
fn start(
    server: &Server,
    launch: &Launch,
    cpu: Option<usize>,
    log: &Path,
) -> Result<Running, String> {
    start_with(server, launch, cpu, log, &[])
}

/// [`start`] with environment variables.
pub fn start_with(
    server: &Server,
    launch: &Launch,
    cpu: Option<usize>,
    log: &Path,
    env: &[(&str, String)],
) -> Result<Running, String> {
    let log = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut command = Command::new(&launch.program);
    command
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args(&launch.args)
        .arg("127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    if let Some(cpu) = cpu {
        // SAFETY: the closure only makes one system call (sched_setaffinity), which
        // is async-signal-safe, and allocates nothing.
        unsafe {
            command.pre_exec(move || sys::pin_to(cpu));
        }
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("start {}: {e}", server.name))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    let read = reader.read_line(&mut line);
    let addr = line.trim().strip_prefix("listening on ").map(str::to_owned);
    let Some(addr) = addr.filter(|_| read.is_ok()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!(
            "{} did not print `listening on ADDR` (got {line:?})",
            server.name
        ));
    };
    // Keep draining stdout so that a chatty server never blocks on a full pipe.
    std::thread::spawn(move || {
        let _ = std::io::copy(
            &mut reader.into_inner().take(u64::MAX),
            &mut std::io::sink(),
        );
    });
    let url = WsUrl::parse(&format!("ws://{addr}/"))?;
    Ok(Running { child, url })
}

/// Runs the comparison and writes the report.
pub fn run(o: &Options) -> Result<(), String> {
    let began = Instant::now();
    let root = workspace_root();
    let servers: Vec<Server> = if o.servers.is_empty() {
        SERVERS.to_vec()
    } else {
        for name in &o.servers {
            if !SERVERS.iter().any(|s| s.name == name) {
                return Err(format!("unknown server {name:?}"));
            }
        }
        SERVERS
            .iter()
            .filter(|s| o.servers.iter().any(|n| n == s.name))
            .copied()
            .collect()
    };
    let rounds = if o.quick { 1 } else { o.rounds };
    let duration = o.duration.unwrap_or(if o.quick {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(3)
    });
    let warmup = Duration::from_millis(if o.quick { 300 } else { 500 });
    let idle_n = o.idle.unwrap_or(if o.quick { 1000 } else { 10_000 });
    let paths = build_servers(&root, &servers, o.build, "")?;
    let fanout_n = o.fanout.unwrap_or(if o.quick { 1000 } else { 10_000 });
    let fanout_servers: Vec<Server> = if fanout_n == 0 {
        Vec::new()
    } else {
        FANOUT_SERVERS
            .iter()
            .filter(|f| o.servers.is_empty() || o.servers.iter().any(|n| n == f.name))
            .copied()
            .collect()
    };
    let fanout_paths = build_servers(&root, &fanout_servers, o.build, "fanout-")?;

    // Every server's connections plus ours, with room to spare.
    let nofile = sys::raise_nofile(idle_n.max(fanout_n) as u64 * 2 + 4096);
    if nofile < idle_n as u64 + 1100 {
        return Err(format!(
            "open files limited to {nofile}; {idle_n} idle connections need more"
        ));
    }
    let cpus = sys::allowed_cpus();
    let (server_cpu, generator_cpu) = if cpus.len() >= 2 {
        (Some(cpus[0]), Some(cpus[1]))
    } else {
        (None, None)
    };
    if let Some(cpu) = generator_cpu {
        sys::pin_to(cpu).map_err(|e| format!("pin the generator: {e}"))?;
    }
    let machine = Machine::probe(server_cpu, generator_cpu);
    eprintln!(
        "{} servers, {rounds} round(s), {} s per cell, load average {}",
        servers.len(),
        duration.as_secs_f64(),
        machine.load_before
    );
    let rt = super::runtime(1).map_err(|e| e.to_string())?;
    let log_dir = target_dir(&root).join("load");
    let mut results = Results::new(&servers, o.command.clone(), rounds, duration, idle_n);
    results.fanout_servers = fanout_servers.clone();
    results.fanout_subscribers = fanout_n;
    let pause = Duration::from_millis(300);

    for round in 0..rounds {
        // Fresh servers every round; the order rotates so no one always goes first.
        let mut order: Vec<usize> = (0..servers.len()).collect();
        order.rotate_left(round % servers.len());
        let mut running = Vec::new();
        for (i, s) in servers.iter().enumerate() {
            let log = log_dir.join(format!("{}.log", s.name));
            running.push(start(s, &paths[i], server_cpu, &log)?);
        }
        std::thread::sleep(pause);

        for &i in &order {
            let (s, r) = (&servers[i], &running[i]);
            eprintln!("round {}: {} idle x {idle_n}", round + 1, s.name);
            match rt.block_on(run_idle(
                &r.url,
                idle_n,
                Some(r.pid()),
                Duration::from_millis(500),
                Duration::ZERO,
            )) {
                Ok(report) => results.idle(s.name, report),
                Err(e) => results.error(s.name, "idle", e),
            }
            std::thread::sleep(pause);
        }
        for &i in &order {
            let (s, r) = (&servers[i], &running[i]);
            eprintln!("round {}: {} handshakes", round + 1, s.name);
            match rt.block_on(run_handshakes(
                &r.url,
                HANDSHAKE_CONCURRENCY,
                duration,
                warmup,
                Some(r.pid()),
            )) {
                Ok(report) => results.handshakes(s.name, report),
                Err(e) => results.error(s.name, "handshakes", e),
            }
            std::thread::sleep(pause);
        }
        for (cell, (connections, size, in_flight)) in cells().into_iter().enumerate() {
            for &i in &order {
                let (s, r) = (&servers[i], &running[i]);
                let settings = EchoSettings {
                    connections,
                    size,
                    in_flight,
                    duration,
                    warmup,
                };
                match rt.block_on(run_echo(&r.url, &settings, Some(r.pid()))) {
                    Ok(report) => {
                        eprintln!(
                            "round {}: {:<14} {:>4} x {:>5} B x {:>2}: {:>9.0} msg/s, p99 {:>7.0} us, server {:>5.2} us/msg, generator {:>3.0}%{}",
                            round + 1,
                            s.name,
                            connections,
                            size,
                            in_flight,
                            report.msgs_per_s,
                            report.p99_us,
                            report.server_us_per_msg.unwrap_or(f64::NAN),
                            report.generator_cpu_pct,
                            if report.errors + report.mismatches > 0 {
                                format!(
                                    " ({} errors, {} mismatches)",
                                    report.errors, report.mismatches
                                )
                            } else {
                                String::new()
                            }
                        );
                        results.echo(s.name, cell, report);
                    }
                    Err(e) => {
                        eprintln!(
                            "round {}: {} {connections} x {size} B x {in_flight}: {e}",
                            round + 1,
                            s.name
                        );
                        results.error(
                            s.name,
                            &format!("{connections} x {size} B, {in_flight} in flight"),
                            e,
                        );
                    }
                }
                std::thread::sleep(pause);
            }
        }
        drop(running);

        // Fan-out: each server started fresh for each cell (10,000 connections apiece).
        for (cell, (size, deflate)) in fanout_cells().into_iter().enumerate() {
            let mut order: Vec<usize> = (0..fanout_servers.len()).collect();
            order.rotate_left(round % fanout_servers.len().max(1));
            for &i in &order {
                let s = &fanout_servers[i];
                let log = log_dir.join(format!("fanout-{}.log", s.name));
                let r = match start(s, &fanout_paths[i], server_cpu, &log) {
                    Ok(r) => r,
                    Err(e) => {
                        results.error(s.name, "fan-out start", e);
                        continue;
                    }
                };
                std::thread::sleep(pause);
                let settings = FanoutSettings {
                    subscribers: fanout_n,
                    size,
                    deflate,
                    window: 1,
                    duration,
                    warmup,
                };
                match rt.block_on(run_fanout(&r.url, &settings, Some(r.pid()))) {
                    Ok(report) => {
                        eprintln!(
                            "round {}: fan-out {:<13} {fanout_n} x {:>4} B{}: {:>9.0} deliveries/s, p50 {:>7.0} us, server {:>5.2} us/delivery, generator {:>3.0}%{}",
                            round + 1,
                            s.name,
                            size,
                            if deflate { " deflate" } else { "" },
                            report.deliveries_per_s,
                            report.p50_us,
                            report.server_us_per_delivery.unwrap_or(f64::NAN),
                            report.generator_cpu_pct,
                            if report.errors + report.mismatches > 0 {
                                format!(
                                    " ({} errors, {} mismatches; {})",
                                    report.errors,
                                    report.mismatches,
                                    report.first_error.as_deref().unwrap_or("")
                                )
                            } else {
                                String::new()
                            }
                        );
                        results.fanout(s.name, cell, report);
                    }
                    Err(e) => {
                        eprintln!("round {}: fan-out {} {size} B: {e}", round + 1, s.name);
                        results.error(s.name, &format!("fan-out {size} B"), e);
                    }
                }
                drop(r);
                std::thread::sleep(pause);
            }
        }
    }

    let machine = machine.finish(began.elapsed());
    let out = o
        .out
        .clone()
        .unwrap_or_else(|| root.join("docs").join("BENCHMARKS.md"));
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let svg_name = "benchmarks-throughput.svg";
    let svg_path = out.with_file_name(svg_name);
    let json_path = log_dir.join("results.json");
    std::fs::write(&json_path, results.to_json(&machine).to_string())
        .map_err(|e| format!("{}: {e}", json_path.display()))?;
    std::fs::write(&svg_path, results.svg()).map_err(|e| format!("{}: {e}", svg_path.display()))?;
    let generated = results.markdown(&machine, svg_name);
    let existing = std::fs::read_to_string(&out).unwrap_or_default();
    std::fs::write(&out, super::report::splice(&existing, &generated))
        .map_err(|e| format!("{}: {e}", out.display()))?;
    eprintln!(
        "wrote {}, {} and {} in {:.0} s",
        out.display(),
        svg_path.display(),
        json_path.display(),
        began.elapsed().as_secs_f64()
    );
    println!("{}", results.summary());
    Ok(())
}

/// The echo matrix as (connections, size, messages in flight per connection): first
/// every cell at 1 in flight (request/response, the headline), then every cell at
/// [`in_flight_for`] its size; connections-major within each.
pub fn cells() -> Vec<(usize, usize, usize)> {
    [false, true]
        .into_iter()
        .flat_map(|many| {
            CONNECTIONS.iter().flat_map(move |&c| {
                SIZES
                    .iter()
                    .map(move |&s| (c, s, if many { in_flight_for(s) } else { 1 }))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_and_servers() {
        assert_eq!(cells().len(), 18);
        assert_eq!(cells()[0], (1, 16, 1));
        assert_eq!(cells()[8], (1000, 65536, 1));
        assert_eq!(cells()[9], (1, 16, 16));
        assert_eq!(cells()[17], (1000, 65536, 4));
        assert_eq!(in_flight_for(16), 16);
        assert_eq!(in_flight_for(65536), 4);
        let names: Vec<_> = SERVERS.iter().map(|s| s.name).collect();
        assert_eq!(names.iter().filter(|n| n.starts_with("duplex")).count(), 2);
        assert!(names.contains(&"raw-tcp"));
    }

    #[test]
    fn target_dir_follows_the_environment() {
        let root = Path::new("/w");
        // Only checks the fallback shape; the variable itself is left alone.
        if std::env::var_os("CARGO_TARGET_DIR").is_none() {
            assert_eq!(target_dir(root), root.join("target"));
        }
    }
}
