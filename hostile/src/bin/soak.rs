//! Soak run (not in CI): well-behaved and hostile clients mixed against both servers.
//!
//! ```sh
//! cargo run -p duplex-hostile --release --bin soak -- --secs 60 [--good 4] [--hostile 4]
//! ```
//!
//! Every second it prints the resident memory and, per server, the connections held
//! and the well-behaved clients' messages (sent, echoed, lost). It exits with status 1
//! if a well-behaved client lost a message or could not connect.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use duplex_hostile::rss::vm_rss_kib;
use duplex_hostile::servers::{
    Kind, ServerLimits, TestServer, connect, open, open_with, read_until_end, repeated, reset,
    spawn_writer,
};
use duplex_hostile::wire::{BINARY, CONTINUATION, FIN, PING, TEXT, client_frame, header, request};
use duplex_mio::Message;

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    echoed: AtomicU64,
    lost: AtomicU64,
    connect_failures: AtomicU64,
    attacks: AtomicU64,
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs = arg(&args, "--secs", 60);
    let good = arg(&args, "--good", 4);
    let hostile = arg(&args, "--hostile", 4);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start_rss = vm_rss_kib();
    let stop = Arc::new(AtomicBool::new(false));

    let servers: Vec<Arc<TestServer>> = [Kind::Tokio, Kind::Mio]
        .into_iter()
        .map(|kind| {
            Arc::new(TestServer::start(kind, &ServerLimits::default()).expect("start server"))
        })
        .collect();
    let counts: Vec<Arc<Counts>> = servers.iter().map(|_| Arc::default()).collect();

    let mut threads = Vec::new();
    for (server, count) in servers.iter().zip(&counts) {
        for id in 0..good {
            let (server, count, stop) = (server.clone(), count.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                good_loop(&server, &count, &stop, id)
            }));
        }
        for id in 0..hostile {
            let (server, count, stop) = (server.clone(), count.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                hostile_loop(&server, &count, &stop, id)
            }));
        }
    }

    println!(
        "soak: {secs} s, {good} good and {hostile} hostile clients per server; RSS at start {} MiB",
        start_rss >> 10
    );
    let mut peak = start_rss;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
        let rss = vm_rss_kib();
        peak = peak.max(rss);
        let mut line = format!("RSS {:>6.1} MiB", rss as f64 / 1024.0);
        for (server, count) in servers.iter().zip(&counts) {
            line.push_str(&format!(
                " | {}: open {:>4}, sent {:>7}, echoed {:>7}, lost {}, connect failures {}, attacks {}",
                server.kind().name(),
                server.open_connections(),
                count.sent.load(Ordering::Relaxed),
                count.echoed.load(Ordering::Relaxed),
                count.lost.load(Ordering::Relaxed),
                count.connect_failures.load(Ordering::Relaxed),
                count.attacks.load(Ordering::Relaxed),
            ));
        }
        println!("{line}");
    }
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        let _ = thread.join();
    }
    let mut failed = false;
    for (server, count) in servers.iter().zip(&counts) {
        let lost = count.lost.load(Ordering::Relaxed);
        let failures = count.connect_failures.load(Ordering::Relaxed);
        println!(
            "{}: {} messages echoed, {lost} lost, {failures} failed connections, {} attacks",
            server.kind().name(),
            count.echoed.load(Ordering::Relaxed),
            count.attacks.load(Ordering::Relaxed)
        );
        failed |= lost > 0 || failures > 0;
    }
    println!(
        "RSS: start {:.1} MiB, peak {:.1} MiB, end {:.1} MiB",
        start_rss as f64 / 1024.0,
        peak as f64 / 1024.0,
        vm_rss_kib() as f64 / 1024.0
    );
    drop(servers);
    if failed {
        println!("FAIL: a well-behaved client lost messages");
        std::process::exit(1);
    }
    println!("OK: no well-behaved message lost");
}

/// Connects, sends numbered messages and checks each echo; reconnects every 200.
fn good_loop(server: &TestServer, count: &Counts, stop: &AtomicBool, id: u64) {
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let config = duplex_mio::client::ClientConfig::default()
            .connect_timeout(Duration::from_secs(5))
            .handshake_timeout(Duration::from_secs(5));
        let Ok(request) = duplex_mio::client::ClientRequest::new(&server.url("/")) else {
            return;
        };
        let mut ws = match duplex_mio::client::connect_with(request, &config) {
            Ok(ws) => ws,
            Err(error) => {
                eprintln!(
                    "{} good client {id}: connect: {error}",
                    server.kind().name()
                );
                count.connect_failures.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let _ = ws.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = ws.set_write_timeout(Some(Duration::from_secs(5)));
        for _ in 0..200 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            seq += 1;
            let message = if seq % 3 == 0 {
                Message::binary(format!("good {id} {seq}").repeat(50).into_bytes())
            } else {
                Message::text(format!("good {id} {seq}"))
            };
            count.sent.fetch_add(1, Ordering::Relaxed);
            if ws.send(message.clone()).is_err() {
                count.lost.fetch_add(1, Ordering::Relaxed);
                break;
            }
            let mut echoed = false;
            for _ in 0..16 {
                match ws.recv() {
                    Ok(reply) if reply.is_data() => {
                        echoed = reply == message;
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            if echoed {
                count.echoed.fetch_add(1, Ordering::Relaxed);
            } else {
                eprintln!(
                    "{} good client {id}: message {seq} lost",
                    server.kind().name()
                );
                count.lost.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
        let _ = ws.close(None);
    }
}

/// Runs one attack after another, each bounded in time.
fn hostile_loop(server: &TestServer, count: &Counts, stop: &AtomicBool, id: u64) {
    let addr = server.addr();
    let mut round = id;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        count.attacks.fetch_add(1, Ordering::Relaxed);
        let short = Duration::from_secs(3);
        match round % 8 {
            0 => {
                if let Ok((stream, _)) = open(addr, "/") {
                    let _ = (&stream).write_all(&header(
                        FIN | BINARY,
                        (1 << 63) - 1,
                        Some([1; 4]),
                        true,
                    ));
                    let _ = read_until_end(&stream, short);
                }
            }
            1 => {
                if let Ok((stream, _)) = open(addr, "/") {
                    let writer = spawn_writer(
                        &stream,
                        std::iter::once(client_frame(TEXT, b"x"))
                            .chain(repeated(client_frame(CONTINUATION, b""), 100_000)),
                    );
                    let _ = read_until_end(&stream, short);
                    let _ = writer.join();
                }
            }
            2 => {
                if let Ok((stream, _)) = open(addr, "/") {
                    let writer =
                        spawn_writer(&stream, repeated(client_frame(FIN | PING, b"ping"), 50_000));
                    let _ = writer.join();
                    reset(stream);
                }
            }
            3 => {
                // Half a handshake, then silence until the server gives up.
                if let Ok(mut stream) = connect(addr, short) {
                    let wire = request("/", "");
                    let _ = stream.write_all(&wire[..wire.len() / 2]);
                    let _ = read_until_end(&stream, short);
                }
            }
            4 => {
                if let Ok((mut stream, _)) = open(addr, "/") {
                    let mut frame = header(FIN | BINARY, 10_000, Some([9; 4]), false);
                    frame.extend_from_slice(&[0; 100]);
                    let _ = stream.write_all(&frame);
                    reset(stream);
                }
            }
            5 => {
                if let Ok((stream, _)) = open_with(
                    addr,
                    "/",
                    "Sec-WebSocket-Extensions: permessage-deflate\r\n",
                ) {
                    // A stored deflate block cannot bomb, so use a real one: 1 MiB of
                    // zeros compresses to about 1 KiB; the server's limit is 256 KiB.
                    let bomb = zeros_bomb();
                    let _ = (&stream).write_all(&client_frame(FIN | 0x40 | BINARY, &bomb));
                    let _ = read_until_end(&stream, short);
                }
            }
            6 => {
                if let Ok((stream, _)) = open(addr, "/flood") {
                    if server.kind() == Kind::Mio {
                        server.flood(Duration::from_millis(300));
                    } else {
                        std::thread::sleep(Duration::from_millis(300));
                    }
                    reset(stream);
                }
            }
            _ => {
                if let Ok(mut stream) = connect(addr, short) {
                    let big = format!("X-Big: {}\r\n", "a".repeat(1 << 20));
                    let _ = stream.write_all(&request("/", &big));
                    let _ = read_until_end(&stream, short);
                }
            }
        }
    }
}

fn zeros_bomb() -> Vec<u8> {
    use duplex_core::{Connection, DeflateParams, EngineConfig, Role};
    let mut client = Connection::new(Role::Client, EngineConfig::default());
    client.enable_deflate(DeflateParams::default());
    client
        .send(duplex_core::Message::binary(vec![0u8; 1 << 20]))
        .expect("compress");
    let mut out = Vec::new();
    while !client.pending_output().is_empty() {
        let chunk = client.pending_output().to_vec();
        client.consume_output(chunk.len());
        out.extend_from_slice(&chunk);
    }
    let (frames, _) = duplex_hostile::wire::frames(&out);
    frames
        .into_iter()
        .next()
        .map(|f| f.payload)
        .unwrap_or_default()
}
