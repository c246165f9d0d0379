//! Attacks against running servers: duplex-tokio (through its library API) and
//! duplex-mio (`Server` on its own thread), both with small limits (see
//! `ServerLimits::default`: 64 KiB frames, 256 KiB messages and inflated messages, 1,000
//! fragments, 256 KiB write buffer (mio: 256 KiB soft, 1 MiB hard), 1 s handshake
//! timeout, 128 KiB / 64-header heads).
//!
//! Each test states the limit that must hold and asserts it: the close code on the wire,
//! the time until the attacker is dropped, the growth of this process's resident memory
//! (the server runs in it), that the server lets go of the connection, and that a
//! well-behaved client is still served. Tests take a global lock so that memory
//! measurements do not overlap; each prints one `HOSTILE |` line with what it measured
//! (`cargo test -p duplex-hostile --test attacks -- --nocapture`).

use std::io::Write;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use duplex_hostile::rss::RssSampler;
use duplex_hostile::servers::{
    Ending, Kind, ServerLimits, TestServer, good_client, open, open_raw, open_with, raise_fd_limit,
    read_until_end, repeated, reset, spawn_writer,
};
use duplex_hostile::wire::{
    BINARY, CLOSE, CONTINUATION, FIN, PING, TEXT, client_frame, close_payload, header, request,
    status_of,
};

const MIB: u64 = 1024;
const MASK: [u8; 4] = [1, 2, 3, 4];

static SERIAL: Mutex<()> = Mutex::new(());

/// One attack's setting: the lock, a server, the memory sampler.
struct Arena {
    _serial: MutexGuard<'static, ()>,
    server: TestServer,
    name: String,
    rss: Option<RssSampler>,
    baseline_open: usize,
}

impl Arena {
    fn new(kind: Kind, name: &str) -> Self {
        Self::with_limits(kind, name, &ServerLimits::default())
    }

    fn with_limits(kind: Kind, name: &str, limits: &ServerLimits) -> Self {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let server = TestServer::start(kind, limits).expect("start the server");
        // The good client warms the server up (threads, buffers) before the baseline.
        good_client(&server, "warm-up").expect("the server serves before the attack");
        server
            .wait_open_at_most(0, Duration::from_secs(3))
            .expect("warm-up connection released");
        Self {
            _serial: serial,
            name: format!("{} | {name}", kind.name()),
            rss: Some(RssSampler::start()),
            baseline_open: server.open_connections(),
            server,
        }
    }

    #[allow(dead_code)]
    fn kind(&self) -> Kind {
        self.server.kind()
    }

    /// A well-behaved client must be served now.
    fn good_client_served(&self, when: &str) {
        if let Err(error) = good_client(&self.server, when) {
            panic!(
                "{}: a good client was not served {when}: {error}; server errors {:?}",
                self.name,
                self.server.stats().recent_errors()
            );
        }
    }

    /// The server must let go of every attacking connection within `within`.
    fn connections_released(&self, within: Duration) -> Duration {
        match self.server.wait_open_at_most(self.baseline_open, within) {
            Ok(took) => took,
            Err(open) => panic!(
                "{}: server still holds {open} connections after {within:?} (baseline {})",
                self.name, self.baseline_open
            ),
        }
    }

    /// Stops sampling; asserts the peak growth is under `limit_mib`; prints the report.
    fn finish(mut self, limit_mib: u64, outcome: &str) {
        let growth = self.rss.take().expect("sampler").finish();
        println!(
            "HOSTILE | {} | {outcome} | peak RSS growth {:.1} MiB (limit {limit_mib} MiB)",
            self.name,
            growth as f64 / 1024.0
        );
        assert!(
            growth < limit_mib * MIB,
            "{}: resident memory grew by {} KiB, limit {limit_mib} MiB",
            self.name,
            growth
        );
    }
}

fn expect_close(arena: &Arena, ending: &Ending, code: u16, within: Duration) {
    assert_eq!(
        ending.close_code(),
        Some(Some(code)),
        "{}: expected close {code}, got {:?} ({}, {} bytes); server errors {:?}",
        arena.name,
        ending.close_code(),
        ending.how,
        ending.bytes.len(),
        arena.server.stats().recent_errors()
    );
    assert!(
        ending.dropped(),
        "{}: attacker not dropped: {}",
        arena.name,
        ending.how
    );
    assert!(
        ending.after <= within,
        "{}: dropped after {:?}, limit {within:?}",
        arena.name,
        ending.after
    );
}

// ----- a. frame headers declaring too much -----

/// A frame header declaring 2^63-1 bytes is refused from its header alone: close 1009
/// within 2 s, no memory reserved (< 64 MiB growth, in practice none).
fn huge_declared_frame(kind: Kind) {
    let arena = Arena::new(kind, "frame header declaring 2^63-1 bytes");
    let (stream, _) = open(arena.server.addr(), "/").unwrap();
    let writer = spawn_writer(
        &stream,
        std::iter::once(header(FIN | BINARY, (1 << 63) - 1, Some(MASK), true))
            .chain(repeated(vec![0u8; 4096], 256)),
    );
    let ending = read_until_end(&stream, Duration::from_secs(5));
    let _ = writer.join();
    expect_close(&arena, &ending, 1009, Duration::from_secs(2));
    arena.connections_released(Duration::from_secs(3));
    arena.good_client_served("after");
    let outcome = format!("close 1009, dropped after {:?}", ending.after);
    arena.finish(64, &outcome);
}

/// A frame one byte over `max_frame_size` (64 KiB), and then a 1 GiB-declared frame on
/// another connection: close 1009 before the payload is read, < 64 MiB growth.
fn just_over_frame_limit(kind: Kind) {
    let arena = Arena::new(kind, "frame just over the frame limit, and 1 GiB declared");
    let limit = ServerLimits::default().max_frame_size as u64;
    let mut endings = Vec::new();
    for declared in [limit + 1, 1 << 30] {
        let (stream, _) = open(arena.server.addr(), "/").unwrap();
        let writer = spawn_writer(
            &stream,
            std::iter::once(header(FIN | BINARY, declared, Some(MASK), false))
                .chain(repeated(vec![0u8; 64 << 10], 16)),
        );
        let ending = read_until_end(&stream, Duration::from_secs(5));
        let _ = writer.join();
        expect_close(&arena, &ending, 1009, Duration::from_secs(2));
        endings.push(ending.after);
    }
    arena.connections_released(Duration::from_secs(3));
    arena.good_client_served("after");
    let outcome = format!("close 1009 for both, dropped after {endings:?}");
    arena.finish(64, &outcome);
}

// ----- b. a message over the limit in many frames -----

/// A message over `max_message_size` (256 KiB) sent as 16 KiB fragments: close 1009 when
/// the fragment that passes the limit is announced; < 32 MiB growth.
fn message_over_limit_in_fragments(kind: Kind) {
    let arena = Arena::new(kind, "message over the limit in 16 KiB fragments");
    let (stream, _) = open(arena.server.addr(), "/").unwrap();
    let piece = vec![0x41u8; 16 << 10];
    let first = client_frame(BINARY, &piece);
    let rest = client_frame(CONTINUATION, &piece);
    let writer = spawn_writer(
        &stream,
        std::iter::once(first).chain(std::iter::repeat_n(rest, 63)),
    );
    let ending = read_until_end(&stream, Duration::from_secs(5));
    let (written, _) = writer.join().unwrap();
    expect_close(&arena, &ending, 1009, Duration::from_secs(2));
    arena.connections_released(Duration::from_secs(3));
    arena.good_client_served("after");
    let outcome = format!(
        "close 1009 after {} KiB written, dropped after {:?}",
        written >> 10,
        ending.after
    );
    arena.finish(32, &outcome);
}

// ----- c. floods of tiny frames -----

/// 1,000,000 empty continuation frames: close 1008 at the 1,001st fragment; the server
/// drops the attacker within 3 s; < 32 MiB growth.
fn million_empty_continuations(kind: Kind) {
    let arena = Arena::new(kind, "1,000,000 empty continuation frames");
    let (stream, _) = open(arena.server.addr(), "/").unwrap();
    let writer = spawn_writer(
        &stream,
        std::iter::once(client_frame(TEXT, b"start"))
            .chain(repeated(client_frame(CONTINUATION, b""), 1_000_000)),
    );
    arena.good_client_served("during");
    let ending = read_until_end(&stream, Duration::from_secs(10));
    let (written, _) = writer.join().unwrap();
    expect_close(&arena, &ending, 1008, Duration::from_secs(3));
    arena.connections_released(Duration::from_secs(3));
    arena.good_client_served("after");
    let outcome = format!(
        "close 1008, {} of 1,000,000 frames written, dropped after {:?}",
        written.saturating_sub(11) / 6,
        ending.after
    );
    arena.finish(32, &outcome);
}

/// 1,000,000 one-byte fragments against the default (1,000-fragment) limit: close 1008.
fn million_one_byte_fragments_refused(kind: Kind) {
    let arena = Arena::new(kind, "1,000,000 one-byte fragments (limit 1,000)");
    let (stream, _) = open(arena.server.addr(), "/").unwrap();
    let writer = spawn_writer(
        &stream,
        std::iter::once(client_frame(BINARY, b"x"))
            .chain(repeated(client_frame(CONTINUATION, b"x"), 999_999)),
    );
    let ending = read_until_end(&stream, Duration::from_secs(10));
    let _ = writer.join();
    expect_close(&arena, &ending, 1008, Duration::from_secs(3));
    arena.connections_released(Duration::from_secs(3));
    arena.good_client_served("after");
    let outcome = format!("close 1008, dropped after {:?}", ending.after);
    arena.finish(32, &outcome);
}

/// 1,000,000 one-byte fragments where the limits allow them (2,000,000 fragments, 2 MiB
/// messages): the message arrives whole and costs its bytes plus a constant, not a
/// buffer per fragment: < 32 MiB growth, answered within 20 s.
fn million_one_byte_fragments_accepted(kind: Kind) {
    let limits = ServerLimits {
        max_fragments: 2_000_000,
        max_message_size: 2 << 20,
        ..ServerLimits::default()
    };
    let arena = Arena::with_limits(kind, "1,000,000 one-byte fragments (allowed)", &limits);
    let (stream, _) = open(arena.server.addr(), "/").unwrap();
    let start = Instant::now();
    let writer = spawn_writer(
        &stream,
        std::iter::once(client_frame(BINARY, b"x"))
            .chain(repeated(client_frame(CONTINUATION, b"x"), 999_998))
            .chain(std::iter::once(client_frame(FIN | CONTINUATION, b"x"))),
    );
    // The answer is one small text frame: `received 1000000 bytes`.
    let mut reader = stream.try_clone().unwrap();
    reader
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.windows(7).any(|w| w == b"1000000") && start.elapsed() < Duration::from_secs(20) {
        match std::io::Read::read(&mut reader, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let took = start.elapsed();
    let _ = writer.join();
    drop(reader);
    assert!(
        String::from_utf8_lossy(&got).contains("received 1000000 bytes"),
        "{}: no answer: {:?}; errors {:?}",
        arena.name,
        String::from_utf8_lossy(&got),
        arena.server.stats().recent_errors()
    );
    drop(stream);
    arena.connections_released(Duration::from_secs(3));
    arena.good_client_served("after");
    arena.finish(
        32,
        &format!("message of 1,000,000 fragments answered after {took:?}"),
    );
}

/// 1,000,000 pings from a client that never reads: pongs collapse (at most 17 wait), so
/// the server's memory stays bounded (< 32 MiB growth) and it keeps serving others.
fn ping_flood_never_reading(kind: Kind) {
    let arena = Arena::new(kind, "1,000,000 pings, never reading");
    let (stream, _) = open(arena.server.addr(), "/").unwrap();
    let start = Instant::now();
    let writer = spawn_writer(
        &stream,
        repeated(client_frame(FIN | PING, b"0123456789abcdef"), 1_000_000),
    );
    arena.good_client_served("during");
    let (written, error) = writer.join().unwrap();
    let took = start.elapsed();
    arena.good_client_served("after");
    drop(stream);
    arena.connections_released(Duration::from_secs(3));
    let outcome = format!(
        "{} of 1,000,000 pings written in {took:?} ({})",
        written / 22,
        error.map_or("all accepted".to_owned(), |e| format!("then {e}"))
    );
    arena.finish(32, &outcome);
}

// ----- d. compression bomb -----

/// Compresses `len` zero bytes as one permessage-deflate message (trailer removed).
fn deflated_zeros(len: usize) -> Vec<u8> {
    use duplex_core::{Connection, DeflateParams, EngineConfig, Message, Role};
    // Our own engine as the compressor: a client with a 15-bit window.
    let mut client = Connection::new(
        Role::Client,
        EngineConfig::default().max_write_buffer(usize::MAX),
    );
    client.enable_deflate(DeflateParams::default());
    let mut out = Vec::new();
    // Compress in one message of `len` zeros, through the engine's output.
    client
        .send(Message::binary(vec![0u8; len]))
        .expect("compress");
    while !client.pending_output().is_empty() {
        let chunk = client.pending_output().to_vec();
        client.consume_output(chunk.len());
        out.extend_from_slice(&chunk);
    }
    // Unwrap the single masked frame: the payload is the compressed message.
    let (frames, result) = duplex_hostile::wire::frames(&out);
    result.expect("one whole frame");
    assert_eq!(frames.len(), 1);
    assert!(frames[0].rsv1(), "compressed");
    frames.into_iter().next().unwrap().payload
}

/// 1 MiB of zeros compressed to about 1 KiB, against `max_decompressed_size` 256 KiB:
/// close 1009 while inflating, never more than the limit inflated (< 32 MiB growth); and
/// 64 MiB of zeros (about 64 KiB compressed, sent as fragments): the same.
fn compression_bomb(kind: Kind) {
    let arena = Arena::new(kind, "deflate bomb (1 MiB and 64 MiB of zeros)");
    let mut outcomes = Vec::new();
    for len in [1usize << 20, 64 << 20] {
        let compressed = deflated_zeros(len);
        let (stream, _) = open_with(
            arena.server.addr(),
            "/",
            "Sec-WebSocket-Extensions: permessage-deflate\r\n",
        )
        .unwrap();
        let pieces: Vec<&[u8]> = compressed.chunks(16 << 10).collect();
        let mut frames = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            let fin = if i + 1 == pieces.len() { FIN } else { 0 };
            let first = if i == 0 { 0x40 | BINARY } else { CONTINUATION };
            frames.push(client_frame(fin | first, piece));
        }
        let writer = spawn_writer(&stream, frames.into_iter());
        let ending = read_until_end(&stream, Duration::from_secs(5));
        let _ = writer.join();
        expect_close(&arena, &ending, 1009, Duration::from_secs(2));
        outcomes.push(format!(
            "{} MiB in {} KiB: 1009 after {:?}",
            len >> 20,
            compressed.len() >> 10,
            ending.after
        ));
    }
    arena.connections_released(Duration::from_secs(3));
    arena.good_client_served("after");
    arena.finish(32, &outcomes.join(", "));
}

/// 200 connections negotiate permessage-deflate with context takeover (the
/// `DeflateConfig::default()` policy), each sends one compressed message and reads the
/// (compressed) echo, then all stay idle: the zlib contexts they keep are the cost of an
/// idle deflate connection. The server must hold less than 512 KiB per connection, and
/// free everything when they leave.
fn deflate_contexts_per_idle_connection(kind: Kind) {
    idle_deflate_cost(kind, duplex_handshake::DeflateConfig::default(), 512);
}

/// The same with `server_no_context_takeover` and `client_no_context_takeover`: an idle
/// connection then needs no zlib state, and must cost less than 64 KiB.
fn deflate_without_context_takeover_idles_lean(kind: Kind) {
    let lean = duplex_handshake::DeflateConfig {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        ..duplex_handshake::DeflateConfig::default()
    };
    idle_deflate_cost(kind, lean, 64);
}

fn idle_deflate_cost(kind: Kind, policy: duplex_handshake::DeflateConfig, limit_kib: u64) {
    let limits = ServerLimits {
        deflate: Some(policy),
        ..ServerLimits::default()
    };
    let name = if policy.server_no_context_takeover {
        "200 idle deflate connections, no context takeover"
    } else {
        "200 idle deflate connections, context takeover"
    };
    let arena = Arena::with_limits(kind, name, &limits);
    let per_connection = idle_deflate_connections(&arena, 200);
    assert!(
        per_connection < limit_kib,
        "{}: {per_connection} KiB per idle connection, limit {limit_kib} KiB",
        arena.name
    );
    arena.finish(
        100,
        &format!("{per_connection} KiB per idle connection (limit {limit_kib} KiB)"),
    );
}

/// Opens `n` deflate connections that each exchange one compressed message, measures
/// the memory growth per connection while they are idle, and closes them.
fn idle_deflate_connections(arena: &Arena, n: u64) -> u64 {
    let compressed = deflated_zeros(4096);
    let mut held = Vec::new();
    for _ in 0..n {
        let (mut stream, _) = open_with(
            arena.server.addr(),
            "/",
            "Sec-WebSocket-Extensions: permessage-deflate\r\n",
        )
        .unwrap();
        stream
            .write_all(&client_frame(FIN | 0x40 | BINARY, &compressed))
            .unwrap();
        // The echo: one frame, compressed by the server.
        let mut buf = [0u8; 4096];
        let got = std::io::Read::read(&mut stream, &mut buf).unwrap();
        assert!(
            got > 0 && buf[0] & 0x40 != 0,
            "{}: echo not compressed",
            arena.name
        );
        held.push(stream);
    }
    // What the server holds once every connection is idle: the least of a few samples
    // over up to 3 s (a busy machine may take a moment to get every connection to its
    // idle state), not the peak while they were being opened.
    let rss = arena.rss.as_ref().unwrap();
    let mut growth = u64::MAX;
    for _ in 0..15 {
        std::thread::sleep(Duration::from_millis(200));
        growth = growth.min(rss.held_kib());
        if growth / n < 32 {
            break;
        }
    }
    drop(held);
    arena.connections_released(Duration::from_secs(3));
    arena.good_client_served("after");
    growth / n
}

// ----- e. slow and stalled handshakes -----

/// A handshake sent one byte per 100 ms: dropped at the handshake timeout (1 s), between
/// 0.9 s and 2.5 s after connecting.
fn slowloris(kind: Kind) {
    let arena = Arena::new(kind, "slowloris handshake, one byte per 100 ms");
    let mut stream =
        duplex_hostile::servers::connect(arena.server.addr(), Duration::from_secs(5)).unwrap();
    let start = Instant::now();
    let wire = request("/", "");
    let mut dropped_after = None;
    for byte in wire.iter().take(50) {
        if stream.write_all(&[*byte]).is_err() {
            dropped_after = Some(start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        // Did the server give up?
        stream.set_nonblocking(true).unwrap();
        let mut probe = [0u8; 512];
        let gone = matches!(std::io::Read::read(&mut stream, &mut probe), Ok(0))
            || matches!(std::io::Read::read(&mut stream, &mut probe), Err(ref e) if e.kind() == std::io::ErrorKind::ConnectionReset);
        stream.set_nonblocking(false).unwrap();
        if gone {
            dropped_after = Some(start.elapsed());
            break;
        }
    }
    let after = dropped_after.unwrap_or_else(|| panic!("{}: never dropped", arena.name));
    assert!(
        after >= Duration::from_millis(900) && after <= Duration::from_millis(2500),
        "{}: dropped after {after:?}, expected at the 1 s handshake timeout",
        arena.name
    );
    arena.connections_released(Duration::from_secs(3));
    arena.good_client_served("after");
    arena.finish(16, &format!("dropped after {after:?}"));
}

/// Sends `head` and returns the response status (or how the connection ended).
fn status_for(arena: &Arena, head: Vec<u8>) -> (Option<u16>, Duration) {
    let stream =
        duplex_hostile::servers::connect(arena.server.addr(), Duration::from_secs(5)).unwrap();
    let writer = spawn_writer(
        &stream,
        head.chunks(64 << 10)
            .map(<[u8]>::to_vec)
            .collect::<Vec<_>>()
            .into_iter(),
    );
    let ending = read_until_end(&stream, Duration::from_secs(5));
    let _ = writer.join();
    (status_of(&ending.bytes), ending.after)
}

/// A 1 MiB header line: 431, connection closed within 2 s, < 32 MiB growth (the head
/// reader holds at most the 128 KiB limit).
fn megabyte_header(kind: Kind) {
    let arena = Arena::new(kind, "1 MiB header");
    let big = format!("X-Big: {}\r\n", "a".repeat(1 << 20));
    let (status, after) = status_for(&arena, request("/", &big));
    assert_eq!(status, Some(431), "{}", arena.name);
    assert!(after < Duration::from_secs(2), "{}: {after:?}", arena.name);
    arena.connections_released(Duration::from_secs(3));
    arena.good_client_served("after");
    arena.finish(32, &format!("431, closed after {after:?}"));
}

/// 10,000 headers (about 80 KiB, under the head limit, over the 64-header limit): 431.
fn ten_thousand_headers(kind: Kind) {
    let arena = Arena::new(kind, "10,000 headers");
    let many: String = (0..10_000).map(|i| format!("x{i}: v\r\n")).collect();
    let (status, after) = status_for(&arena, request("/", &many));
    assert_eq!(status, Some(431), "{}", arena.name);
    arena.connections_released(Duration::from_secs(3));
    arena.good_client_served("after");
    arena.finish(32, &format!("431, closed after {after:?}"));
}

/// 1,000 connections that open and never send: a good client is served while they are
/// open, and all are dropped at the 1 s handshake timeout (within 3 s); < 64 MiB growth.
fn thousand_idle_connections(kind: Kind) {
    let arena = Arena::new(kind, "1,000 silent connections");
    let available = raise_fd_limit(4096);
    // Each costs two descriptors in this process (client and server side).
    let count = if available >= 2300 {
        1000
    } else {
        let n = (available.saturating_sub(300) / 2) as usize;
        println!("NOTE: open-file limit {available}: scaling 1,000 connections down to {n}");
        n
    };
    let start = Instant::now();
    let mut idle = Vec::with_capacity(count);
    for _ in 0..count {
        let stream = duplex_hostile::servers::connect(arena.server.addr(), Duration::from_secs(5))
            .expect("connect");
        idle.push((stream, Instant::now()));
    }
    let opened = start.elapsed();
    arena.good_client_served("while 1,000 connections are silent");
    // Each must be dropped at the 1 s handshake timeout, counted from its own connect
    // (within 3 s of it).
    let mut slowest = Duration::ZERO;
    for (stream, connected) in &idle {
        let budget = Duration::from_secs(3).saturating_sub(connected.elapsed());
        let ending = read_until_end(stream, budget);
        let lived = connected.elapsed();
        assert!(
            ending.dropped(),
            "{}: a silent connection was not dropped ({}) {lived:?} after it connected",
            arena.name,
            ending.how,
        );
        slowest = slowest.max(lived);
    }
    assert!(
        slowest <= Duration::from_secs(3),
        "{}: slowest drop {slowest:?}",
        arena.name
    );
    drop(idle);
    arena.connections_released(Duration::from_secs(3));
    arena.good_client_served("after");
    arena.finish(
        64,
        &format!(
            "{count} silent connections opened in {opened:?}, each dropped at most {slowest:?} after it connected"
        ),
    );
}

// ----- f. a client that never reads -----

/// The server pushes 64 KiB messages at a client that never reads. duplex-tokio: `send`
/// waits once 256 KiB are queued, so what is queued stays below the socket buffers plus
/// the write limit (< 24 MiB) and memory stays bounded (< 48 MiB growth). duplex-mio: past
/// the 1 MiB hard limit the connection is closed (WriteBufferOverflow) within 5 s.
fn never_reads_while_server_sends(kind: Kind) {
    let arena = Arena::new(kind, "client never reads while the server sends");
    let (stream, _) = open(arena.server.addr(), "/flood").unwrap();
    let start = Instant::now();
    let outcome = match kind {
        Kind::Tokio => {
            std::thread::sleep(Duration::from_millis(1500));
            let queued = arena
                .server
                .stats()
                .flood_bytes
                .load(std::sync::atomic::Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(500));
            let later = arena
                .server
                .stats()
                .flood_bytes
                .load(std::sync::atomic::Ordering::Relaxed);
            assert!(
                queued < 24 << 20,
                "{}: {queued} bytes queued for a client that does not read",
                arena.name
            );
            assert_eq!(queued, later, "{}: the server kept queueing", arena.name);
            arena.good_client_served("during");
            format!("send waits after {} KiB queued", queued >> 10)
        }
        Kind::Mio => {
            let published = arena.server.flood(Duration::from_secs(5));
            let overflows = arena
                .server
                .stats()
                .overflows
                .load(std::sync::atomic::Ordering::Acquire);
            assert_eq!(overflows, 1, "{}: not closed at the hard limit", arena.name);
            arena.good_client_served("after the overflow");
            format!(
                "closed at the hard limit after {} KiB published in {:?}",
                published >> 10,
                start.elapsed()
            )
        }
    };
    reset(stream);
    arena.connections_released(Duration::from_secs(3));
    arena.finish(48, &outcome);
}

// ----- g. malformed handshakes -----

/// Malformed and odd requests get 400/426/431 or a 101 without anything bogus, never a
/// crash; the server keeps serving.
fn malformed_handshakes(kind: Kind) {
    let arena = Arena::new(kind, "malformed handshakes");
    let base = String::from_utf8(request("/", "")).unwrap();
    let key_line = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let unknown_extensions = "Sec-WebSocket-Extensions: x-unknown; a=1; b; c=\"quoted, comma\", \
        permessage-deflate; client_max_window_bits=99; server_no_context_takeover=foo, ;;;, , \
        permessage-deflate; permessage-deflate, x-webkit-deflate-frame, \
        permessage-deflate; server_max_window_bits=7; x=y\r\n";
    let protocols: String = (0..10_000)
        .map(|i| format!("p{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut non_utf8 = base.replace("Host:", "X-Junk: \u{1}Host:").into_bytes();
    // A header value with bytes that are not UTF-8 (obs-text).
    let at = non_utf8.windows(7).position(|w| w == b"X-Junk:").unwrap() + 8;
    non_utf8[at] = 0xFF;
    let mut non_utf8_key = base.clone().into_bytes();
    let at = non_utf8_key
        .windows(18)
        .position(|w| w == b"Sec-WebSocket-Key:")
        .unwrap()
        + 19;
    non_utf8_key[at] = 0xFE;
    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        (
            "missing Upgrade",
            base.replace("Upgrade: websocket\r\n", "").into_bytes(),
            &[400],
        ),
        (
            "repeated Upgrade",
            base.replace(
                "Upgrade: websocket\r\n",
                "Upgrade: websocket\r\nUpgrade: websocket\r\n",
            )
            .into_bytes(),
            &[101, 400],
        ),
        (
            "Upgrade: h2c",
            base.replace("Upgrade: websocket", "Upgrade: h2c")
                .into_bytes(),
            &[400],
        ),
        (
            "key of 15 bytes",
            base.replace(key_line, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j\r\n")
                .into_bytes(),
            &[400],
        ),
        (
            "key of 17 bytes",
            base.replace(key_line, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZTE=\r\n")
                .into_bytes(),
            &[400],
        ),
        (
            "empty key",
            base.replace(key_line, "Sec-WebSocket-Key:\r\n")
                .into_bytes(),
            &[400],
        ),
        (
            "two keys",
            base.replace(key_line, &format!("{key_line}{key_line}"))
                .into_bytes(),
            &[400],
        ),
        (
            "version 8",
            base.replace("Version: 13", "Version: 8").into_bytes(),
            &[426],
        ),
        ("non-UTF-8 header value", non_utf8, &[101, 400]),
        ("non-UTF-8 key", non_utf8_key, &[400]),
        (
            "extensions full of unknown and odd parameters",
            request("/", unknown_extensions),
            &[101],
        ),
        (
            "10,000 subprotocols",
            request("/", &format!("Sec-WebSocket-Protocol: {protocols}\r\n")),
            &[101, 431],
        ),
        (
            "garbage",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "HTTP/1.0",
            base.replace("HTTP/1.1", "HTTP/1.0").into_bytes(),
            &[400],
        ),
        ("POST", base.replacen("GET", "POST", 1).into_bytes(), &[405]),
    ];
    let mut seen = Vec::new();
    for (name, head, allowed) in cases {
        let (stream, response, rest) = match open_raw(arena.server.addr(), &head) {
            Ok(ok) => ok,
            Err(error) => panic!("{}: {name}: no response ({error})", arena.name),
        };
        let status = status_of(&response).unwrap_or(0);
        assert!(
            allowed.contains(&status),
            "{}: {name}: status {status}, expected one of {allowed:?}",
            arena.name
        );
        let text = String::from_utf8_lossy(&response).to_ascii_lowercase();
        if status == 101 {
            // Nothing bogus accepted: at most a valid permessage-deflate answer, and no
            // subprotocol that was not ours.
            for line in text.lines() {
                if let Some(value) = line.strip_prefix("sec-websocket-extensions:") {
                    let value = value.trim();
                    assert!(
                        value.starts_with("permessage-deflate")
                            && !value.contains("x-")
                            && !value.contains("=99")
                            && !value.contains("=7")
                            && !value.contains("foo")
                            && !value.contains(','),
                        "{}: {name}: accepted extensions {value:?}",
                        arena.name
                    );
                }
                assert!(
                    !line.starts_with("sec-websocket-protocol:"),
                    "{}: {name}: chose a protocol: {line}",
                    arena.name
                );
            }
            // And the connection works (an uncompressed masked text frame).
            let mut stream = stream;
            stream
                .write_all(&client_frame(FIN | TEXT, b"still alive"))
                .unwrap();
            let mut got = rest;
            let ending = {
                stream
                    .write_all(&client_frame(FIN | CLOSE, &close_payload(Some(1000), b"")))
                    .unwrap();
                read_until_end(&stream, Duration::from_secs(5))
            };
            got.extend_from_slice(&ending.bytes);
            assert!(
                got.windows(11).any(|w| w == b"still alive"),
                "{}: {name}: no echo after the 101",
                arena.name
            );
        } else {
            let ending = read_until_end(&stream, Duration::from_secs(5));
            assert!(ending.dropped(), "{}: {name}: {}", arena.name, ending.how);
        }
        seen.push(format!("{name}: {status}"));
    }
    arena.connections_released(Duration::from_secs(3));
    arena.good_client_served("after");
    arena.finish(32, &seen.join("; "));
}

// ----- h. abrupt disconnects -----

/// The peer vanishes (FIN, then again with a reset) at every stage: mid-handshake,
/// mid-header, mid-payload, between fragments, during the close handshake, and after
/// sending without reading. The server frees every connection within 3 s and keeps
/// serving.
fn abrupt_disconnects(kind: Kind) {
    let arena = Arena::new(kind, "abrupt disconnects at every stage");
    let handshake = request("/", "");
    let stages: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "mid-handshake",
            handshake[..handshake.len() / 2].to_vec(),
            false,
        ),
        (
            "after the request line",
            b"GET / HTTP/1.1\r\n".to_vec(),
            false,
        ),
        ("mid-header", vec![0x81], true),
        ("mid-header (mask key)", vec![0x81, 0x85, 1, 2], true),
        (
            "mid-payload",
            {
                let mut f = header(FIN | BINARY, 1000, Some(MASK), false);
                f.extend_from_slice(&[0; 10]);
                f
            },
            true,
        ),
        ("between fragments", client_frame(TEXT, b"part one"), true),
        (
            "during the close handshake",
            client_frame(FIN | CLOSE, &close_payload(Some(1000), b"bye")),
            true,
        ),
        (
            "after sending, without reading",
            client_frame(FIN | BINARY, &vec![7u8; 60 << 10]).repeat(8),
            true,
        ),
    ];
    let mut freed = Vec::new();
    for (name, bytes, open_first) in &stages {
        for with_reset in [false, true] {
            let mut stream = if *open_first {
                open(arena.server.addr(), "/").unwrap().0
            } else {
                duplex_hostile::servers::connect(arena.server.addr(), Duration::from_secs(5))
                    .unwrap()
            };
            stream.write_all(bytes).unwrap();
            if with_reset {
                reset(stream);
            } else {
                drop(stream);
            }
            let took = match arena
                .server
                .wait_open_at_most(arena.baseline_open, Duration::from_secs(3))
            {
                Ok(took) => took,
                Err(open) => panic!(
                    "{}: {name} ({}): server still holds {open} connections",
                    arena.name,
                    if with_reset { "reset" } else { "FIN" }
                ),
            };
            freed.push(took);
        }
    }
    arena.good_client_served("after");
    let slowest = freed.iter().max().copied().unwrap_or_default();
    arena.finish(
        32,
        &format!(
            "{} disconnects, each connection freed within {slowest:?}",
            freed.len()
        ),
    );
}

macro_rules! for_both_servers {
    ($($attack:ident),* $(,)?) => {
        mod tokio_server {
            $(
                #[test]
                fn $attack() {
                    super::$attack(super::Kind::Tokio);
                }
            )*
        }
        mod mio_server {
            $(
                #[test]
                fn $attack() {
                    super::$attack(super::Kind::Mio);
                }
            )*
        }
    };
}

for_both_servers!(
    huge_declared_frame,
    just_over_frame_limit,
    message_over_limit_in_fragments,
    million_empty_continuations,
    million_one_byte_fragments_refused,
    million_one_byte_fragments_accepted,
    ping_flood_never_reading,
    compression_bomb,
    deflate_contexts_per_idle_connection,
    slowloris,
    megabyte_header,
    ten_thousand_headers,
    thousand_idle_connections,
    never_reads_while_server_sends,
    malformed_handshakes,
    abrupt_disconnects,
);

#[test]
fn mio_deflate_without_context_takeover_idles_lean() {
    deflate_without_context_takeover_idles_lean(Kind::Mio);
}

#[test]
fn tokio_deflate_without_context_takeover_idles_lean() {
    deflate_without_context_takeover_idles_lean(Kind::Tokio);
}
