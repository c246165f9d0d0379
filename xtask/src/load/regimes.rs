//! `cargo xtask load --compare --tls | --deflate | --h2`: the regimes production runs
//! in, each against the peers that support it and next to its own limit.
//!
//! - `--tls`: every server behind rustls with one self-signed certificate (the
//!   generator's rustls has session resumption off), Bun with its own TLS; the limit
//!   is the raw echo behind the same TLS. duplex-mio has no TLS of its own and is not
//!   in this table (it is measured on plain TCP only).
//! - `--deflate`: the generator offers permessage-deflate as browsers do and sends
//!   JSON (chat lines, ticker quotes), each message compressed; our servers with their
//!   defaults, Bun with its shared and its dedicated compressor; the limit is zlib
//!   alone (inflate the message, deflate the reply) on the server's core.
//! - `--h2`: duplex-tokio's hyper server (the `axum` example) with WebSockets over
//!   HTTP/2 (RFC 8441) on one and on several connections, next to the same server over
//!   HTTP/1.1 and to the `echo-server` example (no hyper).
//!
//! Each regime writes its own generated section of `docs/BENCHMARKS.md`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use super::compare::{self, Build, Running, SERVERS, Server};
use super::deflate::{self, Json};
use super::report::Machine;
use super::stream::TLS_ENV;
use super::wire::WsUrl;
use super::{
    EchoReport, EchoSettings, HandshakeReport, IdleReport, Regime, run_echo_in, run_handshakes_in,
    run_idle_in, sys,
};

/// What an entry is in the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Ours,
    Peer,
    Limit,
}

/// One column: a server run in one way.
#[derive(Debug, Clone)]
struct Entry {
    label: String,
    about: String,
    server: Server,
    env: Vec<(&'static str, String)>,
    regime: Regime,
    path: &'static str,
    role: Role,
}

/// One row of the echo tables.
#[derive(Debug, Clone, Copy)]
struct Cell {
    connections: usize,
    size: usize,
    json: Option<Json>,
    in_flight: usize,
}

impl Cell {
    fn label(&self) -> String {
        let what = match self.json {
            Some(j) => j.label(),
            None => size_label(self.size),
        };
        format!(
            "{} × {what} ({} in flight)",
            self.connections, self.in_flight
        )
    }
}

fn size_label(size: usize) -> String {
    if size >= 1024 && size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

/// A regime's comparison.
struct Plan {
    /// `tls`, `deflate` or `h2`.
    name: &'static str,
    title: &'static str,
    intro: String,
    entries: Vec<Entry>,
    cells: Vec<Cell>,
    handshakes: bool,
    /// Name of the limit column in ratios.
    limit_name: &'static str,
    /// zlib alone per cell (the deflate regime).
    zlib: bool,
}

fn server(name: &'static str) -> Server {
    *SERVERS
        .iter()
        .find(|s| s.name == name)
        .expect("a known server")
}

fn custom(name: &'static str, label: &'static str, build: Build, ours: bool) -> Server {
    Server {
        name,
        label,
        about: "",
        ours,
        build,
    }
}

fn tls_plan(dir: &Path, resume: bool) -> Plan {
    let tls = Regime {
        tls: true,
        tls_resume: resume,
        ..Regime::default()
    };
    let env = vec![(TLS_ENV, dir.display().to_string())];
    let entry = |label: &str, about: &str, server: Server, role| Entry {
        label: label.into(),
        about: about.into(),
        server,
        env: env.clone(),
        regime: tls.clone(),
        path: "/",
        role,
    };
    let entries = vec![
        entry(
            "duplex-tokio",
            "`benches/src/bin/duplex-tokio-echo.rs`: the `echo-server` example's loop (`accept_with`, `feed`) on a `tokio_rustls::server::TlsStream`",
            custom(
                "duplex-tokio-tls",
                "duplex-tokio",
                Build::Bench("duplex-tokio-echo"),
                true,
            ),
            Role::Ours,
        ),
        entry(
            "tokio-tungstenite",
            "`benches/src/bin/tungstenite-echo.rs` behind tokio-rustls",
            server("tungstenite"),
            Role::Peer,
        ),
        entry(
            "fastwebsockets",
            "`benches/src/bin/fastwebsockets-echo.rs` (hyper 1 upgrade) behind tokio-rustls",
            server("fastwebsockets"),
            Role::Peer,
        ),
        entry(
            "sockudo-ws",
            "`benches/src/bin/sockudo-echo.rs` behind tokio-rustls",
            server("sockudo"),
            Role::Peer,
        ),
        entry(
            "Bun",
            "`benches/js/bun-echo.js` with `Bun.serve({ tls })` (uWebSockets' TLS, BoringSSL)",
            server("bun"),
            Role::Peer,
        ),
        entry(
            "raw TLS",
            "`benches/src/bin/raw-echo.rs` behind tokio-rustls: a 101, then every byte back (the limit)",
            server("raw-tcp"),
            Role::Limit,
        ),
    ];
    let mut cells = Vec::new();
    for in_flight in [1, 16] {
        for size in [16, 1024] {
            cells.push(Cell {
                connections: 64,
                size,
                json: None,
                in_flight,
            });
        }
    }
    cells.push(Cell {
        connections: 1000,
        size: 1024,
        json: None,
        in_flight: 1,
    });
    Plan {
        name: "tls",
        title: "TLS",
        intro: format!(
            "Every server behind TLS 1.3 (rustls 0.23 with ring on the Rust servers and in the generator; Bun's own TLS), one self-signed ECDSA P-256 certificate for all; the generator's session resumption is {}, so every handshake is a full one. duplex-mio has no TLS of its own (put a TLS terminator in front of it, or use duplex-tokio), so it is not in this table. Binary messages, no compression.",
            if resume { "on" } else { "off" }
        ),
        entries,
        cells,
        handshakes: true,
        limit_name: "raw TLS",
        zlib: false,
    }
}

fn deflate_plan() -> Plan {
    let regime = Regime {
        deflate: true,
        ..Regime::default()
    };
    let entry = |label: &str, about: &str, server: Server, env: &[(&'static str, &str)]| Entry {
        label: label.into(),
        about: about.into(),
        server,
        env: env.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        regime: regime.clone(),
        path: "/",
        role: if server.ours { Role::Ours } else { Role::Peer },
    };
    let entries = vec![
        entry(
            "duplex-tokio",
            "`duplex-tokio`'s `echo-server` example, default policy (`server_no_context_takeover`: one compressor per thread, shared, reset after each message; the client keeps its context)",
            server("duplex-tokio"),
            &[],
        ),
        entry(
            "duplex-mio",
            "`duplex-mio`'s `echo-server` example, default policy (as duplex-tokio)",
            server("duplex-mio"),
            &[],
        ),
        entry(
            "Bun shared",
            "`benches/js/bun-echo.js` with `perMessageDeflate: { compress: \"shared\", decompress: \"shared\" }` (`DUPLEX_LOAD_DEFLATE=shared`)",
            server("bun"),
            &[("DUPLEX_LOAD_DEFLATE", "shared")],
        ),
        entry(
            "Bun dedicated",
            "`benches/js/bun-echo.js` with `perMessageDeflate: { compress: \"dedicated\", decompress: \"dedicated\" }`",
            server("bun"),
            &[("DUPLEX_LOAD_DEFLATE", "dedicated")],
        ),
    ];
    let mut cells = Vec::new();
    for in_flight in [1, 16] {
        for json in [Json::Chat, Json::Ticker(1024), Json::Ticker(16 * 1024)] {
            cells.push(Cell {
                connections: 64,
                size: 0,
                json: Some(json),
                in_flight,
            });
        }
    }
    Plan {
        name: "deflate",
        title: "permessage-deflate",
        intro: format!(
            "The generator offers `{}` (what Chromium and Firefox send) and sends text messages of JSON, each compressed on its own (level 6, 15-bit window), as a browser would; it inflates what comes back with flate2 (context kept for the whole connection, so any server policy is followed) and compares each message with the one sent. Payloads: chat lines of 80 to 300 bytes (`chat`), and arrays of stock quotes of about 1 KiB and 16 KiB (`ticker`). The limit is zlib alone: flate2 (zlib-rs) inflating each message and deflating it back (compressor reset after each message) on the server's core, no WebSocket and no socket.",
            deflate::OFFER
        ),
        entries,
        cells,
        handshakes: false,
        limit_name: "zlib alone",
        zlib: true,
    }
}

fn h2_plan(connections: usize) -> Plan {
    let axum = custom(
        "axum",
        "duplex-tokio (axum)",
        Build::ExampleWith {
            package: "duplex-tokio",
            example: "axum",
            features: "axum",
        },
        true,
    );
    let mut entries = vec![
        Entry {
            label: "HTTP/1.1".into(),
            about: "`duplex-tokio`'s `axum` example (hyper 1 through `axum::serve`, `/ws` with duplex's `WebSocketUpgrade`), HTTP/1.1 upgrade".into(),
            server: axum,
            env: Vec::new(),
            regime: Regime::default(),
            path: "/ws",
            role: Role::Limit,
        },
        Entry {
            label: "HTTP/2, 1 connection".into(),
            about: "the same server, every WebSocket an extended CONNECT stream (RFC 8441) of one h2c connection".into(),
            server: axum,
            env: Vec::new(),
            regime: Regime {
                h2: Some(1),
                ..Regime::default()
            },
            path: "/ws",
            role: Role::Ours,
        },
    ];
    if connections > 1 {
        entries.push(Entry {
            label: format!("HTTP/2, {connections} connections"),
            about: format!("the same, the WebSockets spread over {connections} h2c connections"),
            server: axum,
            env: Vec::new(),
            regime: Regime {
                h2: Some(connections),
                ..Regime::default()
            },
            path: "/ws",
            role: Role::Ours,
        });
    }
    entries.push(Entry {
        label: "echo-server (no hyper)".into(),
        about: "`duplex-tokio`'s `echo-server` example (`accept_with` on the TCP stream), HTTP/1.1: for reference".into(),
        server: server("duplex-tokio"),
        env: Vec::new(),
        regime: Regime::default(),
        path: "/",
        role: Role::Peer,
    });
    let mut cells = Vec::new();
    for in_flight in [1, 16] {
        for size in [16, 1024] {
            cells.push(Cell {
                connections: 64,
                size,
                json: None,
                in_flight,
            });
        }
    }
    Plan {
        name: "h2",
        title: "HTTP/2 (RFC 8441)",
        intro: "WebSockets over HTTP/2 against duplex-tokio's hyper integration (`duplex_tokio::hyper::upgrade` through the axum extractor), with the generator's own HTTP/2 client (the `h2` crate: extended CONNECT on h2c with prior knowledge, 1 MiB stream windows), next to the same server over HTTP/1.1. Ratios are to HTTP/1.1 on the same server.".into(),
        entries,
        cells,
        handshakes: true,
        limit_name: "HTTP/1.1",
        zlib: false,
    }
}

/// Medians of every measurement, by entry.
#[derive(Default)]
struct Collected {
    /// [entry][cell] -> reports over rounds.
    echo: Vec<Vec<Vec<EchoReport>>>,
    handshakes: Vec<Vec<HandshakeReport>>,
    idle: Vec<Vec<IdleReport>>,
    zlib: Vec<Vec<f64>>,
    errors: Vec<String>,
    mismatches: u64,
    failed: u64,
    extensions: Vec<Option<String>>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Runs a regime's comparison and writes its section of the report.
pub fn run(o: &compare::Options, regime: &Regime) -> Result<(), String> {
    let began = Instant::now();
    let root = compare::workspace_root();
    let load_dir = compare::target_dir(&root).join("load");
    let plan = if regime.tls {
        let dir = super::stream::tls_dir(&load_dir.join("tls"));
        super::stream::ensure_certificate(&dir)?;
        tls_plan(&dir, regime.tls_resume)
    } else if regime.deflate {
        deflate_plan()
    } else {
        h2_plan(regime.h2.unwrap_or(4))
    };
    let mut entries = plan.entries.clone();
    if !o.servers.is_empty() {
        entries.retain(|e| o.servers.iter().any(|n| n == e.server.name));
    }
    let rounds = if o.quick { 1 } else { o.rounds };
    let duration = o
        .duration
        .unwrap_or(Duration::from_secs(if o.quick { 1 } else { 3 }));
    let warmup = Duration::from_millis(if o.quick { 300 } else { 500 });
    let idle_n = o.idle.unwrap_or(if o.quick { 1000 } else { 5000 });
    // hyper allows 200 concurrent streams per HTTP/2 connection: the idle WebSockets of
    // the HTTP/2 section must fit on one connection.
    let idle_n = if plan.name == "h2" {
        idle_n.min(190)
    } else {
        idle_n
    };
    let servers: Vec<Server> = entries.iter().map(|e| e.server).collect();
    let launches = compare::build_servers(&root, &servers, o.build, &format!("{}-", plan.name))?;
    sys::raise_nofile(idle_n as u64 * 2 + 4096);
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
        "{}: {} servers, {rounds} round(s), {} s per cell, load average {}",
        plan.name,
        entries.len(),
        duration.as_secs_f64(),
        machine.load_before
    );
    let rt = super::runtime(1).map_err(|e| e.to_string())?;
    let pause = Duration::from_millis(300);
    let n = entries.len();
    let mut c = Collected {
        echo: vec![vec![Vec::new(); plan.cells.len()]; n],
        handshakes: vec![Vec::new(); n],
        idle: vec![Vec::new(); n],
        zlib: vec![Vec::new(); plan.cells.len()],
        extensions: vec![None; n],
        ..Collected::default()
    };
    let mut loads = vec![machine.load_before.clone()];
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..n).collect();
        order.rotate_left(round % n.max(1));
        let mut running: Vec<Running> = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let log = load_dir.join(format!("{}-{i}.log", plan.name));
            running.push(compare::start_with(
                &e.server,
                &launches[i],
                server_cpu,
                &log,
                &e.env,
            )?);
        }
        std::thread::sleep(pause);
        let url_of = |i: usize| -> WsUrl { running[i].url.with_path(entries[i].path) };
        for &i in &order {
            let e = &entries[i];
            eprintln!("round {}: {} idle x {idle_n}", round + 1, e.label);
            match rt.block_on(run_idle_in(
                &url_of(i),
                idle_n,
                &e.regime,
                Some(running[i].pid()),
                Duration::from_millis(500),
                Duration::ZERO,
            )) {
                Ok(r) => c.idle[i].push(r),
                Err(err) => c.errors.push(format!("{} idle: {err}", e.label)),
            }
            std::thread::sleep(pause);
        }
        if plan.handshakes {
            for &i in &order {
                let e = &entries[i];
                match rt.block_on(run_handshakes_in(
                    &url_of(i),
                    compare::HANDSHAKE_CONCURRENCY,
                    duration,
                    warmup,
                    &e.regime,
                    Some(running[i].pid()),
                )) {
                    Ok(r) => {
                        eprintln!(
                            "round {}: {:<24} handshakes {:>8.0}/s, server {:>6.1} us each, generator {:>3.0}%",
                            round + 1,
                            e.label,
                            r.per_s,
                            r.server_us_per_handshake.unwrap_or(f64::NAN),
                            r.generator_cpu_pct
                        );
                        c.failed += r.errors;
                        if r.errors > 0 {
                            c.errors.push(format!(
                                "{} handshakes: {} failed, first: {}",
                                e.label,
                                r.errors,
                                r.first_error.clone().unwrap_or_default()
                            ));
                        }
                        c.handshakes[i].push(r);
                    }
                    Err(err) => c.errors.push(format!("{} handshakes: {err}", e.label)),
                }
                std::thread::sleep(pause);
            }
        }
        for (k, cell) in plan.cells.iter().enumerate() {
            for &i in &order {
                let e = &entries[i];
                let mut regime = e.regime.clone();
                regime.json = cell.json;
                let settings = EchoSettings {
                    connections: cell.connections,
                    size: cell.size,
                    in_flight: cell.in_flight,
                    duration,
                    warmup,
                };
                match rt.block_on(run_echo_in(
                    &url_of(i),
                    &settings,
                    &regime,
                    Some(running[i].pid()),
                )) {
                    Ok(r) => {
                        eprintln!(
                            "round {}: {:<24} {:<28} {:>9.0} msg/s, server {:>6.2} us/msg, generator {:>3.0}%, {:>6.0} B/msg in{}",
                            round + 1,
                            e.label,
                            cell.label(),
                            r.msgs_per_s,
                            r.server_us_per_msg.unwrap_or(f64::NAN),
                            r.generator_cpu_pct,
                            r.wire_bytes_per_msg,
                            if r.errors + r.mismatches > 0 {
                                format!(
                                    " ({} errors, {} mismatches: {})",
                                    r.errors,
                                    r.mismatches,
                                    r.first_error.clone().unwrap_or_default()
                                )
                            } else {
                                String::new()
                            }
                        );
                        c.mismatches += r.mismatches;
                        c.failed += r.errors;
                        if r.errors > 0 {
                            c.errors.push(format!(
                                "{} {}: {}",
                                e.label,
                                cell.label(),
                                r.first_error.clone().unwrap_or_default()
                            ));
                        }
                        if c.extensions[i].is_none() {
                            c.extensions[i] = r.extensions.clone();
                        }
                        c.echo[i][k].push(r);
                    }
                    Err(err) => c
                        .errors
                        .push(format!("{} {}: {err}", e.label, cell.label())),
                }
                std::thread::sleep(pause);
            }
        }
        drop(running);
        if plan.zlib {
            // zlib alone, on the servers' core, after the servers are gone.
            for (k, cell) in plan.cells.iter().enumerate() {
                let messages = deflate::messages(cell.json.unwrap_or(Json::Chat), true);
                let us = std::thread::scope(|s| {
                    s.spawn(|| {
                        if let Some(cpu) = server_cpu {
                            let _ = sys::pin_to(cpu);
                        }
                        deflate::zlib_alone(&messages, duration.min(Duration::from_secs(1)))
                    })
                    .join()
                    .unwrap_or(f64::NAN)
                });
                c.zlib[k].push(us);
            }
        }
        loads.push(sys::load_average());
    }
    let machine = machine.finish(began.elapsed());
    let json_path = load_dir.join(format!("results-{}.json", plan.name));
    std::fs::write(
        &json_path,
        raw_json(&plan, &entries, &c, &loads).to_string(),
    )
    .map_err(|e| format!("{}: {e}", json_path.display()))?;
    let markdown = report(&plan, &entries, &c, &machine, &loads, o, rounds, duration);
    let out = o
        .out
        .clone()
        .unwrap_or_else(|| root.join("docs").join("BENCHMARKS.md"));
    let existing = std::fs::read_to_string(&out).unwrap_or_default();
    std::fs::write(&out, splice(&existing, plan.name, &markdown))
        .map_err(|e| format!("{}: {e}", out.display()))?;
    eprintln!(
        "wrote the {} section of {} in {:.0} s",
        plan.name,
        out.display(),
        began.elapsed().as_secs_f64()
    );
    for e in &c.errors {
        eprintln!("error: {e}");
    }
    Ok(())
}

/// Every round's figures, for `target/load/results-NAME.json`.
fn raw_json(plan: &Plan, entries: &[Entry], c: &Collected, loads: &[String]) -> serde_json::Value {
    let servers: Vec<serde_json::Value> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let cells: Vec<serde_json::Value> = plan
                .cells
                .iter()
                .enumerate()
                .map(|(k, cell)| {
                    let rounds: Vec<serde_json::Value> = c.echo[i][k]
                        .iter()
                        .map(|r| {
                            serde_json::json!({
                                "msgs_per_s": r.msgs_per_s,
                                "server_us_per_msg": r.server_us_per_msg,
                                "server_cpu_pct": r.server_cpu_pct,
                                "generator_cpu_pct": r.generator_cpu_pct,
                                "p50_us": r.p50_us,
                                "p99_us": r.p99_us,
                                "wire_bytes_per_msg": r.wire_bytes_per_msg,
                                "sent_bytes_per_msg": r.sent_bytes_per_msg,
                                "mismatches": r.mismatches,
                                "errors": r.errors,
                            })
                        })
                        .collect();
                    serde_json::json!({ "cell": cell.label(), "rounds": rounds })
                })
                .collect();
            let handshakes: Vec<serde_json::Value> = c.handshakes[i]
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "per_s": r.per_s,
                        "server_us_per_handshake": r.server_us_per_handshake,
                        "generator_cpu_pct": r.generator_cpu_pct,
                    })
                })
                .collect();
            let idle: Vec<Option<f64>> = c.idle[i].iter().map(|r| r.bytes_per_connection).collect();
            serde_json::json!({
                "label": e.label,
                "cells": cells,
                "handshakes": handshakes,
                "idle_bytes_per_connection": idle,
            })
        })
        .collect();
    serde_json::json!({
        "regime": plan.name,
        "load_average": loads,
        "servers": servers,
        "zlib_alone_us": c.zlib,
        "errors": c.errors,
    })
}

fn markers(name: &str) -> (String, String) {
    (
        format!(
            "<!-- BEGIN generated by `cargo xtask load --compare --{name}`; edits here are overwritten -->"
        ),
        format!("<!-- END generated by `cargo xtask load --compare --{name}` -->"),
    )
}

/// Replaces the regime's generated section of `existing`; a new one goes before
/// "## History", or at the end.
fn splice(existing: &str, name: &str, generated: &str) -> String {
    let (begin, end) = markers(name);
    let block = format!("{begin}\n{generated}{end}\n");
    if let (Some(a), Some(b)) = (existing.find(&begin), existing.find(&end))
        && b > a
    {
        let after = &existing[b + end.len()..];
        let after = after.strip_prefix('\n').unwrap_or(after);
        return format!("{}{block}{after}", &existing[..a]);
    }
    match existing.find("\n## History") {
        Some(i) => format!("{}\n{block}{}", &existing[..i + 1], &existing[i..]),
        None => format!("{}\n\n{block}", existing.trim_end()),
    }
}

#[allow(clippy::too_many_arguments)]
fn report(
    plan: &Plan,
    entries: &[Entry],
    c: &Collected,
    m: &Machine,
    loads: &[String],
    o: &compare::Options,
    rounds: usize,
    duration: Duration,
) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "## {}\n", plan.title);
    let _ = writeln!(
        w,
        "Generated by `{}` on {}, in {:.1} minutes.\n",
        o.command,
        m.date,
        m.elapsed.as_secs_f64() / 60.0
    );
    let _ = writeln!(w, "{}\n", plan.intro);
    let _ = writeln!(
        w,
        "- Machine: {}, {} CPUs, Linux {}, {}; {}.",
        m.model, m.cpus, m.kernel, m.rustc, m.pinning
    );
    let _ = writeln!(
        w,
        "- Load average (1/5/15 min) before the run and after each round: {}. The machine was shared: compare servers within this run, not with other sections.",
        loads.join("; ")
    );
    let _ = writeln!(
        w,
        "- {rounds} round(s); every server started fresh each round, the order rotated. Echo cells: {} s measured after 0.5 s of warm-up; figures are medians over rounds.",
        duration.as_secs_f64()
    );
    let _ = writeln!(
        w,
        "- Every echo compared with what was sent: **{} mismatches, {} failed connections or handshakes**{}.",
        c.mismatches,
        c.failed,
        if c.errors.is_empty() {
            String::new()
        } else {
            format!(" (errors: {})", c.errors.join("; "))
        }
    );
    let ext: Vec<String> = entries
        .iter()
        .zip(&c.extensions)
        .map(|(e, x)| format!("{}: {}", e.label, x.as_deref().unwrap_or("none")))
        .collect();
    let _ = writeln!(w, "- Extensions in the answers: {}.\n", ext.join("; "));
    let _ = writeln!(w, "| column | what |\n| --- | --- |");
    for e in entries {
        let _ = writeln!(w, "| {} | {} |", e.label, e.about);
    }
    if plan.zlib {
        let _ = writeln!(
            w,
            "| zlib alone | flate2 1.1 (zlib-rs): inflate the client's message, deflate the reply, on the servers' core (the limit) |"
        );
    }
    let _ = writeln!(w);

    let ours: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].role == Role::Ours)
        .collect();
    let peers: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].role == Role::Peer)
        .collect();
    let limit = (0..entries.len()).find(|&i| entries[i].role == Role::Limit);
    let med = |i: usize, k: usize, f: &dyn Fn(&EchoReport) -> Option<f64>| {
        median(c.echo[i][k].iter().filter_map(f).collect())
    };
    let cpu = |i: usize, k: usize| med(i, k, &|r| r.server_us_per_msg);
    let mps = |i: usize, k: usize| med(i, k, &|r| Some(r.msgs_per_s));
    let gen_busy =
        |i: usize, k: usize| med(i, k, &|r| Some(r.generator_cpu_pct)).is_some_and(|g| g > 90.0);
    let zlib = |k: usize| median(c.zlib[k].clone());
    let header = |w: &mut String, extra: &[String]| {
        let mut cols: Vec<String> = entries.iter().map(|e| e.label.clone()).collect();
        if plan.zlib {
            cols.push("zlib alone".into());
        }
        cols.extend(extra.iter().cloned());
        let _ = writeln!(w, "| cell | {} |", cols.join(" | "));
        let _ = writeln!(w, "| --- |{}", " ---: |".repeat(cols.len()));
    };
    let mut ratio_cols = Vec::new();
    for &i in &ours {
        if !peers.is_empty() && plan.name != "h2" {
            ratio_cols.push(format!("{} / best peer", entries[i].label));
        }
        ratio_cols.push(format!("{} / {}", entries[i].label, plan.limit_name));
    }
    if !peers.is_empty() && plan.name != "h2" {
        ratio_cols.push("best peer".into());
    }

    // Server CPU per message.
    let _ = writeln!(
        w,
        "### {}: server CPU per message, µs\n\nUser + system time of the server process over the measured window, divided by the messages echoed (10 ms ticks).{} Lower is better; ratios of medians.\n",
        plan.title,
        if plan.zlib {
            " zlib alone is the CPU time of the inflate and deflate of one message, with nothing else."
        } else {
            ""
        }
    );
    header(w, &ratio_cols);
    for (k, cell) in plan.cells.iter().enumerate() {
        let mut row: Vec<String> = (0..entries.len())
            .map(|i| cpu(i, k).map(|v| format!("{v:.2}")).unwrap_or("–".into()))
            .collect();
        if plan.zlib {
            row.push(zlib(k).map(|v| format!("{v:.2}")).unwrap_or("–".into()));
        }
        let limit_v = if plan.zlib {
            zlib(k)
        } else {
            limit.and_then(|l| cpu(l, k))
        };
        let best = peers
            .iter()
            .filter_map(|&p| cpu(p, k).map(|v| (v, p)))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        for &i in &ours {
            let v = cpu(i, k);
            if !peers.is_empty() && plan.name != "h2" {
                row.push(match (v, best) {
                    (Some(v), Some((b, _))) => format!("{:.2}×", v / b),
                    _ => "–".into(),
                });
            }
            row.push(match (v, limit_v) {
                (Some(v), Some(l)) => format!("{:.2}×", v / l),
                _ => "–".into(),
            });
        }
        if !peers.is_empty() && plan.name != "h2" {
            row.push(
                best.map(|(_, p)| entries[p].label.clone())
                    .unwrap_or("–".into()),
            );
        }
        let _ = writeln!(w, "| {} | {} |", cell.label(), row.join(" | "));
    }
    let _ = writeln!(w);

    // Messages per second.
    let _ = writeln!(
        w,
        "### {}: messages per second\n\n† the generator used over 90 % of its core: a lower bound, bound by the generator (its side of {} costs as much as the server's); compare CPU per message there.{}\n",
        plan.title,
        match plan.name {
            "tls" => "TLS",
            "deflate" => "compression",
            _ => "HTTP/2",
        },
        if plan.zlib {
            " zlib alone's column is the rate one core sustains doing only the compression (1 / its CPU per message); the ratio to it is the share of that rate a server reached."
        } else {
            ""
        }
    );
    let mut cols = Vec::new();
    for &i in &ours {
        if !peers.is_empty() && plan.name != "h2" {
            cols.push(format!("{} / best peer", entries[i].label));
        }
        cols.push(format!("{} / {}", entries[i].label, plan.limit_name));
    }
    header(w, &cols);
    for (k, cell) in plan.cells.iter().enumerate() {
        let mut row: Vec<String> = (0..entries.len())
            .map(|i| {
                mps(i, k)
                    .map(|v| format!("{}{}", rate(v), if gen_busy(i, k) { " †" } else { "" }))
                    .unwrap_or("–".into())
            })
            .collect();
        if plan.zlib {
            row.push(
                zlib(k)
                    .map(|us| format!("({} per core)", rate(1e6 / us)))
                    .unwrap_or("–".into()),
            );
        }
        let best = peers
            .iter()
            .filter_map(|&p| mps(p, k))
            .max_by(|a, b| a.total_cmp(b));
        // zlib alone's rate is what one core sustains doing only the compression.
        let limit_v = if plan.zlib {
            zlib(k).map(|us| 1e6 / us)
        } else {
            limit.and_then(|l| mps(l, k))
        };
        for &i in &ours {
            let v = mps(i, k);
            if !peers.is_empty() && plan.name != "h2" {
                row.push(match (v, best) {
                    (Some(v), Some(b)) => format!("{:.2}×", v / b),
                    _ => "–".into(),
                });
            }
            row.push(match (v, limit_v) {
                (Some(v), Some(l)) => format!("{:.2}×", v / l),
                _ => "–".into(),
            });
        }
        let _ = writeln!(w, "| {} | {} |", cell.label(), row.join(" | "));
    }
    let _ = writeln!(w);

    // CPU use and latency.
    let _ = writeln!(
        w,
        "### {}: CPU % server / generator; round trip p50 / p99, µs\n",
        plan.title
    );
    let labels: Vec<String> = entries.iter().map(|e| e.label.clone()).collect();
    let _ = writeln!(w, "| cell | {} |", labels.join(" | "));
    let _ = writeln!(w, "| --- |{}", " ---: |".repeat(labels.len()));
    for (k, cell) in plan.cells.iter().enumerate() {
        let row: Vec<String> = (0..entries.len())
            .map(|i| {
                let s = med(i, k, &|r| r.server_cpu_pct);
                let g = med(i, k, &|r| Some(r.generator_cpu_pct));
                let p50 = med(i, k, &|r| Some(r.p50_us));
                let p99 = med(i, k, &|r| Some(r.p99_us));
                match (s, g, p50, p99) {
                    (Some(s), Some(g), Some(a), Some(b)) => {
                        format!("{s:.0} / {g:.0} %; {a:.0} / {b:.0}")
                    }
                    _ => "–".into(),
                }
            })
            .collect();
        let _ = writeln!(w, "| {} | {} |", cell.label(), row.join(" | "));
    }
    let _ = writeln!(w);

    if plan.name == "deflate" {
        let _ = writeln!(
            w,
            "### permessage-deflate: bytes on the wire per message\n\nServer to client (what the generator read per echo, frame headers included) / client to server (the generator's compressed frame, header and mask included), against the JSON payload's size.\n"
        );
        let _ = writeln!(w, "| cell | payload | {} |", labels.join(" | "));
        let _ = writeln!(w, "| --- | ---: |{}", " ---: |".repeat(labels.len()));
        for (k, cell) in plan.cells.iter().enumerate() {
            let payload = cell
                .json
                .map(|j| deflate::messages(j, false).size)
                .unwrap_or(cell.size);
            let row: Vec<String> = (0..entries.len())
                .map(|i| {
                    match (
                        med(i, k, &|r| Some(r.wire_bytes_per_msg)),
                        med(i, k, &|r| Some(r.sent_bytes_per_msg)),
                    ) {
                        (Some(a), Some(b)) => format!("{a:.0} / {b:.0} B"),
                        _ => "–".into(),
                    }
                })
                .collect();
            let _ = writeln!(
                w,
                "| {} | {payload} B | {} |",
                cell.label(),
                row.join(" | ")
            );
        }
        let _ = writeln!(w);
    }

    if plan.handshakes {
        let _ = writeln!(
            w,
            "### {}: handshakes\n\n{} loops, each: {}, validate the answer, drop the connection; {} s per round. † the generator used over 90 % of its core.\n",
            plan.title,
            compare::HANDSHAKE_CONCURRENCY,
            if plan.name == "tls" {
                "TCP connect, full TLS handshake (no resumption), HTTP/1.1 upgrade"
            } else {
                "open a WebSocket (over HTTP/2: an extended CONNECT on the run's HTTP/2 connections, which stay open; over HTTP/1.1: TCP connect and upgrade)"
            },
            duration.as_secs_f64()
        );
        let _ = writeln!(
            w,
            "| server | handshakes/s | server CPU per handshake, µs | latency p50 / p99, µs | CPU %: server / generator |\n| --- | ---: | ---: | ---: | ---: |"
        );
        for (i, e) in entries.iter().enumerate() {
            let h = &c.handshakes[i];
            let get = |f: &dyn Fn(&HandshakeReport) -> Option<f64>| {
                median(h.iter().filter_map(f).collect())
            };
            let (Some(rate_v), Some(g)) =
                (get(&|r| Some(r.per_s)), get(&|r| Some(r.generator_cpu_pct)))
            else {
                let _ = writeln!(w, "| {} | – | – | – | – |", e.label);
                continue;
            };
            let _ = writeln!(
                w,
                "| {} | {}{} | {} | {:.0} / {:.0} | {} / {g:.0} |",
                e.label,
                rate(rate_v),
                if g > 90.0 { " †" } else { "" },
                get(&|r| r.server_us_per_handshake)
                    .map(|v| format!("{v:.1}"))
                    .unwrap_or("–".into()),
                get(&|r| Some(r.p50_us)).unwrap_or(f64::NAN),
                get(&|r| Some(r.p99_us)).unwrap_or(f64::NAN),
                get(&|r| r.server_cpu_pct)
                    .map(|v| format!("{v:.0}"))
                    .unwrap_or("–".into()),
            );
        }
        let _ = writeln!(w);
    }

    let idle_n = c
        .idle
        .iter()
        .flatten()
        .map(|r| r.connections)
        .next()
        .unwrap_or(0);
    let _ = writeln!(
        w,
        "### {}: memory per idle connection\n\n{idle_n} connections opened against a fresh server, each after one round trip ({}), then held: growth of the server's `VmRSS` divided by the connections (user-space memory; kernel socket buffers are not in RSS).\n",
        plan.title,
        if plan.name == "deflate" {
            "a compressed ticker message, so both sides' compression state is in use"
        } else {
            "16 bytes"
        }
    );
    let _ = writeln!(
        w,
        "| server | per connection | RSS before → with {idle_n} connections |\n| --- | ---: | ---: |"
    );
    for (i, e) in entries.iter().enumerate() {
        let per = median(
            c.idle[i]
                .iter()
                .filter_map(|r| r.bytes_per_connection)
                .collect(),
        );
        let before = median(
            c.idle[i]
                .iter()
                .filter_map(|r| r.rss_before.map(|v| v as f64))
                .collect(),
        );
        let after = median(
            c.idle[i]
                .iter()
                .filter_map(|r| r.rss_after.map(|v| v as f64))
                .collect(),
        );
        let _ = writeln!(
            w,
            "| {} | {} | {} |",
            e.label,
            per.map(|v| format!("{:.2} KiB", v / 1024.0))
                .unwrap_or("–".into()),
            match (before, after) {
                (Some(a), Some(b)) => format!("{:.1} → {:.1} MiB", a / 1048576.0, b / 1048576.0),
                _ => "–".into(),
            }
        );
    }
    let _ = writeln!(w);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_and_splicing() {
        let tls = tls_plan(Path::new("/tmp/x"), false);
        assert_eq!(
            tls.entries.iter().filter(|e| e.role == Role::Limit).count(),
            1
        );
        assert!(tls.entries.iter().all(|e| e.regime.tls));
        let d = deflate_plan();
        assert!(d.cells.iter().all(|c| c.json.is_some()));
        let h = h2_plan(4);
        assert_eq!(h.entries.len(), 4);
        let doc = "# B\n\nintro\n\n## History\n\ntext\n";
        let once = splice(doc, "tls", "T1\n");
        assert!(once.find("T1").unwrap() < once.find("## History").unwrap());
        let twice = splice(&once, "tls", "T2\n");
        assert!(!twice.contains("T1") && twice.contains("T2"));
        assert_eq!(twice.matches("BEGIN generated").count(), 1);
        let both = splice(&twice, "h2", "H\n");
        assert!(both.contains("T2") && both.contains("H\n"));
    }
}
