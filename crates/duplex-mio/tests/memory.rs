//! A client that stops reading costs the server bounded memory. Alone in its test
//! binary so that the process's resident memory (`VmRSS`) is this test's. Linux only.

#![cfg(target_os = "linux")]

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use duplex_mio::{Message, ServerConfig};

/// The resident memory of this process, in bytes.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

#[test]
fn a_client_that_stops_reading_costs_bounded_memory() {
    const MIB: usize = 1 << 20;
    let server = start(
        ServerConfig::default()
            .workers(1)
            .shutdown_timeout(Duration::from_millis(300))
            .engine(duplex_mio::EngineConfig::default().linger(duplex_core_linger(300)))
            .write_buffer_limits(MIB, 4 * MIB),
    );
    let mut raw = raw_client(server.addr);
    let id = server.wait_for(|r| match r {
        Report::Opened(id) => Some(id),
        _ => None,
    });
    let before = rss();

    // 1. It sends echo requests and never reads the echoes: the server stops reading
    //    it once a soft limit of replies waits, so its writes stall.
    raw.set_nonblocking(true).unwrap();
    let frame = masked_frame(0x82, &[7u8; 60_000]);
    let started = Instant::now();
    let mut sent = 0usize;
    let mut stalled_since: Option<Instant> = None;
    let mut peak = before;
    loop {
        assert!(
            sent < 1 << 30 && started.elapsed() < Duration::from_secs(10),
            "the server kept reading a client that never reads ({sent} bytes)"
        );
        match raw.write(&frame[sent % frame.len()..]) {
            Ok(n) => {
                sent += n;
                stalled_since = None;
            }
            Err(_) => {
                let since = *stalled_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(500) {
                    break;
                }
                peak = peak.max(rss());
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    let growth = peak.max(rss()).saturating_sub(before);
    eprintln!("stalled after {sent} bytes sent; resident memory grew by {growth} bytes");
    assert!(
        growth < 32 * MIB,
        "resident memory grew by {growth} bytes while the client sent {sent}"
    );

    // 2. Messages the server cannot hold back (1 MiB each, all different) pile up to
    //    the hard limit, and then the connection is dropped.
    let mut overflowed = false;
    for i in 0..512u32 {
        server
            .sender
            .send(id, Message::binary(vec![i as u8; MIB]))
            .unwrap();
        peak = peak.max(rss());
        if let Ok(Report::Overflow(overflow)) = server.reports.try_recv() {
            assert_eq!(overflow, id);
            overflowed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(overflowed, "512 MiB never overflowed the hard limit");
    server.wait_for(|r| matches!(r, Report::Closed(closed, _) if closed == id).then_some(()));
    let growth = peak.max(rss()).saturating_sub(before);
    eprintln!("overflowed; resident memory grew by {growth} bytes in all");
    assert!(
        growth < 64 * MIB,
        "resident memory grew by {growth} bytes for a client that does not read"
    );
    drop(raw);
    server.stop();
}

/// A short linger, so that tests do not wait for clients they left open.
fn duplex_core_linger(ms: u64) -> duplex_mio::Linger {
    duplex_mio::Linger {
        time: Duration::from_millis(ms),
        max_bytes: 1 << 20,
    }
}
