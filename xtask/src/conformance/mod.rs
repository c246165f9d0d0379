//! `cargo xtask conformance`: an Autobahn-style conformance suite for
//! WebSocket servers and clients, independent of the crates it tests.

mod cases;
mod deflate;
mod h2;
pub(crate) mod handshake;
mod report;
mod runner;
mod server;
mod session;
mod verdict;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Semaphore;

use cases::Case;
use handshake::WsUrl;
use report::{AgentReport, Expectations};
use runner::{CaseResult, Transport};

/// The crates whose examples are tested by default.
const OUR_PACKAGES: [&str; 2] = ["duplex-tokio", "duplex-mio"];
/// Consecutive failed connections after which an agent is given up.
const UNREACHABLE_AFTER: usize = 5;

const USAGE: &str = "\
cargo xtask conformance [OPTIONS]

Runs the Autobahn-style conformance suite (categories 1-10, 12-13). By
default builds and tests the echo-server and autobahn-client examples of
duplex-tokio and duplex-mio.

Options:
  --url ws://HOST:PORT/PATH  test this server instead of the built-in agents
  --agent NAME               agent name for --url (default: HOST:PORT)
  --serve [ADDR]             run the fuzzing server for external clients
                             (default 127.0.0.1:9001) until Ctrl-C
  --cases LIST               comma-separated case filter, e.g. 1.*,6.4.*,7.1.1
  --report DIR               report directory (default target/conformance)
  --jobs N                   concurrent connections for non-timing cases (default 8)
  --no-build                 do not run cargo build for the built-in agents
  --servers-only             built-in agents: only test the echo servers
  --clients-only             built-in agents: only test the clients
  --expectations FILE        NON-STRICT/UNIMPLEMENTED allowances
                             (default xtask/conformance-expectations.json)
  --require-compression      UNIMPLEMENTED in 12/13 fails the gate for every
                             agent (by default only for agents that offered
                             or accepted permessage-deflate somewhere)
  --full-compression         12/13 with Autobahn's 1000 messages per case and
                             its time limits (default: at most 8 MiB per case)
  --h2                       reach servers over HTTP/2 (RFC 8441: h2c with prior
                             knowledge, extended CONNECT); the built-in agent is
                             duplex-tokio's axum example (hyper), at /ws
  -h, --help                 this help
";

#[derive(Debug, Clone)]
struct Options {
    url: Option<String>,
    agent: Option<String>,
    serve: Option<String>,
    cases: String,
    report: PathBuf,
    jobs: usize,
    build: bool,
    servers: bool,
    clients: bool,
    expectations: PathBuf,
    require_compression: bool,
    full_compression: bool,
    h2: bool,
}

fn workspace_root() -> PathBuf {
    // xtask lives one level below the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn parse_args(args: &[String]) -> Result<Option<Options>, String> {
    let root = workspace_root();
    let mut o = Options {
        url: None,
        agent: None,
        serve: None,
        cases: String::new(),
        report: root.join("target").join("conformance"),
        jobs: 8,
        build: true,
        servers: true,
        clients: true,
        expectations: root.join("xtask").join("conformance-expectations.json"),
        require_compression: false,
        full_compression: false,
        h2: false,
    };
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "-h" | "--help" => return Ok(None),
            "--url" => o.url = Some(value("--url")?),
            "--agent" => o.agent = Some(value("--agent")?),
            "--cases" => o.cases = value("--cases")?,
            "--report" => o.report = PathBuf::from(value("--report")?),
            "--expectations" => o.expectations = PathBuf::from(value("--expectations")?),
            "--jobs" => {
                o.jobs = value("--jobs")?
                    .parse()
                    .map_err(|_| "--jobs needs a number".to_string())?;
                o.jobs = o.jobs.max(1);
            }
            "--serve" => {
                let addr = match it.peek() {
                    Some(v) if !v.starts_with("--") => it.next().cloned(),
                    _ => None,
                };
                o.serve = Some(addr.unwrap_or_else(|| "127.0.0.1:9001".into()));
            }
            "--no-build" => o.build = false,
            "--require-compression" => o.require_compression = true,
            "--full-compression" => o.full_compression = true,
            "--h2" => o.h2 = true,
            "--servers-only" => o.clients = false,
            "--clients-only" => o.servers = false,
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(Some(o))
}

/// Entry point of the subcommand.
pub fn main(args: &[String]) -> ExitCode {
    let opts = match parse_args(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(opts)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn selected_cases(filter: &str, full_compression: bool) -> Vec<Case> {
    cases::catalogue(full_compression)
        .into_iter()
        .filter(|c| filter.is_empty() || cases::selected(filter, &c.id))
        .collect()
}

async fn run(o: Options) -> Result<bool, String> {
    let cases = selected_cases(&o.cases, o.full_compression);
    if cases.is_empty() {
        return Err(format!("no case matches {:?}", o.cases));
    }
    let expectations = match std::fs::read_to_string(&o.expectations) {
        Ok(t) => Expectations::parse(&t)?,
        Err(e) => return Err(format!("reading {}: {e}", o.expectations.display())),
    };
    if let Some(addr) = &o.serve {
        return serve(addr, cases, &o).await;
    }
    let transport = if o.h2 {
        Transport::Http2
    } else {
        Transport::Http1
    };
    let mut agents = Vec::new();
    if let Some(url) = &o.url {
        let u = WsUrl::parse(url)?;
        let name = o.agent.clone().unwrap_or_else(|| u.addr());
        agents.push(test_server(&name, &u, &cases, o.jobs, transport).await);
    } else if o.h2 {
        agents = test_builtin_h2(&o, &cases).await?;
    } else {
        agents = test_builtin(&o, &cases).await?;
    }
    if agents.is_empty() {
        println!("No agent was tested (none of {OUR_PACKAGES:?} is in the workspace yet).");
    }
    let problems = report::gate(&mut agents, &expectations, o.require_compression);
    let rep = report::build(agents, &o.cases);
    report::write(&o.report, &rep)?;
    print!("{}", report::summary(&rep.agents));
    println!("\nReport: {}", o.report.join("index.html").display());
    if problems.is_empty() {
        println!("Gate: passed.");
        Ok(true)
    } else {
        println!("\nGate: {} problem(s):", problems.len());
        for p in problems.iter().take(50) {
            println!("  {p}");
        }
        if problems.len() > 50 {
            println!("  … and {} more (see the report)", problems.len() - 50);
        }
        Ok(false)
    }
}

/// Runs all cases against one server: non-timing cases concurrently
/// (bounded), then the timing cases (category 9) one at a time.
async fn test_server(
    name: &str,
    url: &WsUrl,
    cases: &[Case],
    jobs: usize,
    transport: Transport,
) -> AgentReport {
    let over = match transport {
        Transport::Http1 => "",
        Transport::Http2 => " over HTTP/2",
    };
    println!(
        "== testing server {name} at ws://{}{}{over} ({} cases)",
        url.addr(),
        url.path,
        cases.len()
    );
    let t0 = Instant::now();
    let failures = Arc::new(AtomicUsize::new(0));
    let sem = Arc::new(Semaphore::new(jobs));
    let mut set = tokio::task::JoinSet::new();
    let mut results = BTreeMap::new();
    let (par, seq): (Vec<&Case>, Vec<&Case>) = cases.iter().partition(|c| !c.exclusive());
    for c in par {
        let (c, url, sem, failures) = (c.clone(), url.clone(), sem.clone(), failures.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            run_guarded(&url, &c, jobs > 1, &failures, transport).await
        });
    }
    while let Some(r) = set.join_next().await {
        if let Ok(r) = r {
            results.insert(r.id.clone(), r);
        }
    }
    for c in seq {
        let r = run_guarded(url, c, false, &failures, transport).await;
        if let Some(t) = &r.timing {
            let figures: Vec<String> = t.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!(
                "   {} {:<13} {}",
                c.id,
                r.verdict.label(),
                figures.join(" ")
            );
        }
        results.insert(r.id.clone(), r);
    }
    println!("   done in {:.1} s", t0.elapsed().as_secs_f64());
    AgentReport {
        name: name.to_string(),
        kind: "server",
        target: format!("ws://{}{}{over}", url.addr(), url.path),
        cases: results,
    }
}

async fn run_guarded(
    url: &WsUrl,
    c: &Case,
    concurrent: bool,
    failures: &AtomicUsize,
    transport: Transport,
) -> CaseResult {
    if failures.load(Ordering::Relaxed) >= UNREACHABLE_AFTER {
        return CaseResult::not_opened(
            c,
            "not run: the last connections to this agent all failed",
            Instant::now(),
            concurrent,
        );
    }
    let r = runner::run_against_server(url, c, concurrent, transport).await;
    // A server that answered the handshake (even with an invalid extension
    // answer) is reachable.
    if r.close.opened || r.negotiated_extensions.is_some() {
        failures.store(0, Ordering::Relaxed);
    } else {
        failures.fetch_add(1, Ordering::Relaxed);
    }
    if r.verdict == verdict::Behavior::Failed {
        println!(
            "   {} FAILED: {} / close {}: {}",
            c.id,
            r.result,
            r.behavior_close.label(),
            r.result_close
        );
    }
    r
}

/// Package names in the workspace and the target directory.
async fn metadata() -> Result<(Vec<String>, PathBuf), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .await
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err("cargo metadata failed".into());
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata: {e}"))?;
    let names = v["packages"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let target = v["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    Ok((names, target))
}

async fn build_example(
    pkg: &str,
    example: &str,
    target: &Path,
    build: bool,
) -> Result<PathBuf, String> {
    build_example_with(pkg, example, &[], target, build).await
}

async fn build_example_with(
    pkg: &str,
    example: &str,
    features: &[&str],
    target: &Path,
    build: bool,
) -> Result<PathBuf, String> {
    if build {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut args = vec!["build", "--release", "-p", pkg, "--example", example];
        let features = features.join(",");
        if !features.is_empty() {
            args.extend(["--features", &features]);
        }
        println!("-- cargo {}", args.join(" "));
        let st = Command::new(cargo)
            .args(&args)
            .current_dir(workspace_root())
            .status()
            .await
            .map_err(|e| format!("cargo build: {e}"))?;
        if !st.success() {
            return Err(format!("building example {example} of {pkg} failed"));
        }
    }
    let bin = target.join("release").join("examples").join(example);
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!("{} does not exist", bin.display()))
    }
}

async fn test_builtin(o: &Options, cases: &[Case]) -> Result<Vec<AgentReport>, String> {
    let (packages, target) = metadata().await?;
    let logs = o.report.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| format!("creating {}: {e}", logs.display()))?;
    let mut agents = Vec::new();
    let mut fuzz: Option<(std::net::SocketAddr, Arc<server::FuzzServer>)> = None;
    for pkg in OUR_PACKAGES {
        if !packages.iter().any(|p| p == pkg) {
            println!("note: package {pkg} is not in the workspace yet; skipping it");
            continue;
        }
        if o.servers {
            match build_example(pkg, "echo-server", &target, o.build).await {
                Ok(bin) => {
                    match start_echo_server(&bin, &logs.join(format!("{pkg}-echo-server.log")))
                        .await
                    {
                        Ok((mut child, url)) => {
                            agents.push(
                                test_server(pkg, &url, cases, o.jobs, Transport::Http1).await,
                            );
                            let _ = child.start_kill();
                            let _ = child.wait().await;
                        }
                        Err(e) => {
                            println!("error: {pkg} echo-server: {e}");
                            agents.push(failed_agent(pkg, "server", &e, cases));
                        }
                    }
                }
                Err(e) => {
                    println!("error: {e}");
                    agents.push(failed_agent(pkg, "server", &e, cases));
                }
            }
        }
        if o.clients {
            let name = format!("{pkg}-client");
            match build_example(pkg, "autobahn-client", &target, o.build).await {
                Ok(bin) => {
                    if fuzz.is_none() {
                        fuzz = Some(server::start("127.0.0.1:0", cases.to_vec()).await?);
                    }
                    if let Some((addr, srv)) = &fuzz {
                        agents.push(test_client(&name, &bin, *addr, srv, cases, &logs).await);
                    }
                }
                Err(e) => {
                    println!("error: {e}");
                    agents.push(failed_agent(&name, "client", &e, cases));
                }
            }
        }
    }
    Ok(agents)
}

/// `--h2` without `--url`: duplex-tokio's axum example (a hyper server with
/// extended CONNECT enabled), its `/ws` route reached over HTTP/2.
async fn test_builtin_h2(o: &Options, cases: &[Case]) -> Result<Vec<AgentReport>, String> {
    const PKG: &str = "duplex-tokio";
    const NAME: &str = "duplex-tokio-hyper-h2";
    let (_, target) = metadata().await?;
    let logs = o.report.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| format!("creating {}: {e}", logs.display()))?;
    let bin = match build_example_with(PKG, "axum", &["axum"], &target, o.build).await {
        Ok(bin) => bin,
        Err(e) => {
            println!("error: {e}");
            return Ok(vec![failed_agent(NAME, "server", &e, cases)]);
        }
    };
    match start_echo_server(&bin, &logs.join(format!("{NAME}.log"))).await {
        Ok((mut child, url)) => {
            let url = url.with_path("/ws");
            let report = test_server(NAME, &url, cases, o.jobs, Transport::Http2).await;
            let _ = child.start_kill();
            let _ = child.wait().await;
            Ok(vec![report])
        }
        Err(e) => {
            println!("error: {NAME}: {e}");
            Ok(vec![failed_agent(NAME, "server", &e, cases)])
        }
    }
}

fn failed_agent(name: &str, kind: &'static str, why: &str, cases: &[Case]) -> AgentReport {
    let now = Instant::now();
    AgentReport {
        name: name.to_string(),
        kind,
        target: why.to_string(),
        cases: cases
            .iter()
            .map(|c| (c.id.clone(), CaseResult::not_opened(c, why, now, false)))
            .collect(),
    }
}

async fn start_echo_server(bin: &Path, log: &Path) -> Result<(Child, WsUrl), String> {
    let err = std::fs::File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
    let mut child = Command::new(bin)
        .arg("127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(err))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .map_err(|_| "no 'listening on' line within 20 s".to_string())?
        .map_err(|e| e.to_string())?
        .ok_or("exited before printing 'listening on'")?;
    let addr = first
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| format!("unexpected first line {first:?}"))?
        .to_string();
    // Keep draining stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let url = WsUrl::parse(&format!("ws://{addr}/"))?;
    Ok((child, url))
}

async fn test_client(
    name: &str,
    bin: &Path,
    addr: std::net::SocketAddr,
    srv: &server::FuzzServer,
    cases: &[Case],
    logs: &Path,
) -> AgentReport {
    println!(
        "== testing client {name} against ws://{addr} ({} cases)",
        cases.len()
    );
    let t0 = Instant::now();
    let budget: Duration =
        cases.iter().map(|c| c.timeout()).sum::<Duration>() + Duration::from_secs(30);
    let budget = budget.min(Duration::from_secs(20 * 60));
    let log = logs.join(format!("{name}.log"));
    let outcome = async {
        let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut child = Command::new(bin)
            .arg(format!("ws://{addr}"))
            .arg(name)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        match tokio::time::timeout(budget, child.wait()).await {
            Ok(Ok(st)) if st.success() => Ok(()),
            Ok(Ok(st)) => Err(format!("client exited with {st}")),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                Err(format!(
                    "client did not finish within {} s",
                    budget.as_secs()
                ))
            }
        }
    }
    .await;
    srv.settle(Duration::from_secs(15)).await;
    let mut results = srv.take_agent(name);
    let reported = srv
        .reported
        .lock()
        .map(|r| r.iter().any(|a| a == name))
        .unwrap_or(false);
    if let Err(e) = &outcome {
        println!("   client problem: {e}");
    } else if !reported {
        println!("   client did not call /updateReports");
    }
    for c in cases {
        results.entry(c.id.clone()).or_insert_with(|| {
            let why = match &outcome {
                Err(e) => format!("the client never ran this case ({e})"),
                Ok(()) => "the client never ran this case".to_string(),
            };
            CaseResult::not_opened(c, &why, Instant::now(), false)
        });
    }
    for r in results
        .values()
        .filter(|r| r.verdict == verdict::Behavior::Failed)
        .take(40)
    {
        println!(
            "   {} FAILED: {} / close {}: {}",
            r.id,
            r.result,
            r.behavior_close.label(),
            r.result_close
        );
    }
    println!("   done in {:.1} s", t0.elapsed().as_secs_f64());
    AgentReport {
        name: name.to_string(),
        kind: "client",
        target: format!(
            "{} ws://{addr} {name}",
            bin.file_name().and_then(|f| f.to_str()).unwrap_or("client")
        ),
        cases: results,
    }
}

/// `--serve`: keep the fuzzing server up for any client; write reports on
/// every `/updateReports`.
async fn serve(addr: &str, cases: Vec<Case>, o: &Options) -> Result<bool, String> {
    let (local, srv) = server::start(addr, cases).await?;
    println!(
        "fuzzing server listening on ws://{local} ({} cases); Ctrl-C to stop",
        srv.cases.len()
    );
    println!(
        "clients: connect to /getCaseCount, /runCase?case=N&agent=NAME, /updateReports?agent=NAME"
    );
    loop {
        tokio::select! {
            _ = srv.updated.notified() => {
                let snapshot = srv.results.lock().map(|r| r.clone()).unwrap_or_default();
                let agents: Vec<AgentReport> = snapshot
                    .into_iter()
                    .map(|(name, cases)| AgentReport { name, kind: "client", target: format!("ws://{local}"), cases })
                    .collect();
                let rep = report::build(agents, &o.cases);
                report::write(&o.report, &rep)?;
                print!("{}", report::summary(&rep.agents));
                println!("report written to {}", o.report.join("index.html").display());
            }
            _ = tokio::signal::ctrl_c() => {
                println!("stopping");
                return Ok(true);
            }
        }
    }
}
