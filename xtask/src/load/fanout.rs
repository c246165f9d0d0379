//! `cargo xtask load --fanout`: one publisher, N subscribers on one server.
//!
//! The server under test subscribes every connection to one topic and publishes every
//! message a connection sends to all of them, the sender included (`benches/src/bin/
//! fanout-*.rs`, `benches/js/bun-fanout.js`). The generator opens N subscriber
//! connections (offering permessage-deflate when asked), then one publisher connection
//! (no extension), which sends binary messages with up to `window` of them not yet
//! delivered to every subscriber. Each subscriber reads its frames with a small reader of
//! its own (inflating with flate2 when the server compresses, independent of duplex's
//! code) and compares every message with the payload published, in order. A message's
//! latency is from the publisher's write to the moment the last subscriber has it.
//!
//! Payloads are JSON-like text (ticker quotes), so they compress as real traffic does.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flate2::{Decompress, FlushDecompress, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::client::{self, Opened};
use super::hist::Histogram;
use super::wire::{self, WsUrl};
use super::{CpuSample, micros, resolve};
use wire_kit::FrameReader;

/// How long a message may take to reach every subscriber before the run fails.
const STALL: Duration = Duration::from_secs(10);

/// One fan-out measurement's settings.
#[derive(Debug, Clone)]
pub struct FanoutSettings {
    /// Subscriber connections.
    pub subscribers: usize,
    /// Payload bytes per message.
    pub size: usize,
    /// Offer permessage-deflate on the subscribers' connections.
    pub deflate: bool,
    /// Messages published and not yet delivered to every subscriber, at most.
    pub window: usize,
    /// Measured time.
    pub duration: Duration,
    /// Unmeasured time before it.
    pub warmup: Duration,
}

/// What a fan-out run measured.
#[derive(Debug, Clone, Default)]
pub struct FanoutReport {
    /// Messages published whose delivery completed in the window.
    pub published: u64,
    /// Deliveries (message x subscriber) per second in the window.
    pub deliveries_per_s: f64,
    /// Publish-to-last-receive latency percentiles and maximum, microseconds.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Maximum.
    pub max_us: f64,
    /// Messages that differed from what was published.
    pub mismatches: u64,
    /// Connections that failed.
    pub errors: u64,
    /// The first failure.
    pub first_error: Option<String>,
    /// Server CPU time per delivery, microseconds.
    pub server_us_per_delivery: Option<f64>,
    /// Server CPU use, % of one core.
    pub server_cpu_pct: Option<f64>,
    /// Generator CPU use, % of one core.
    pub generator_cpu_pct: f64,
    /// Extensions the server answered the subscribers with.
    pub extensions: Option<String>,
    /// Bytes received by the subscribers per delivery (frame headers included).
    pub wire_bytes_per_delivery: f64,
}

/// The messages published, in turn.
struct Payloads {
    payloads: Vec<Vec<u8>>,
    frames: Vec<Vec<u8>>,
}

impl Payloads {
    fn new(size: usize) -> Payloads {
        let payloads: Vec<Vec<u8>> = (0..8)
            .map(|v| {
                let mut text = String::from("[");
                let mut i = v * 7919;
                while text.len() < size {
                    text.push_str(&format!(
                        r#"{{"symbol":"SYM{:03}","price":{}.{:02},"volume":{},"seq":{}}},"#,
                        i % 50,
                        100 + (i * 7) % 300,
                        (i * 13) % 100,
                        1000 + (i * 977) % 100_000,
                        i
                    ));
                    i += 1;
                }
                let mut bytes = text.into_bytes();
                bytes.truncate(size);
                bytes
            })
            .collect();
        let frames = payloads.iter().map(|p| wire::client_binary(p)).collect();
        Payloads { payloads, frames }
    }
}

/// Messages in flight: (sequence number, write time, subscribers still to receive it).
#[derive(Default)]
struct Flight {
    pending: VecDeque<(u64, Instant, usize)>,
    /// Sequence number of `pending[0]`.
    completed: u64,
    latency: Histogram,
    published_in_window: u64,
    last_progress: Option<Instant>,
}

struct Shared {
    flight: Mutex<Flight>,
    progress: Notify,
    start: Instant,
    end: Instant,
    subscribers: usize,
}

impl Shared {
    /// Subscriber side: message `seq` arrived.
    fn delivered(&self, seq: u64) {
        let mut f = self.flight.lock().expect("not poisoned");
        let index = seq.checked_sub(f.completed).map(|i| i as usize);
        let Some(entry) = index.and_then(|i| f.pending.get_mut(i)) else {
            return;
        };
        entry.2 -= 1;
        let mut done = false;
        while let Some(&(_, sent, 0)) = f.pending.front() {
            f.pending.pop_front();
            f.completed += 1;
            done = true;
            let now = Instant::now();
            f.last_progress = Some(now);
            if sent >= self.start && now <= self.end {
                f.latency.record(now.duration_since(sent).as_nanos() as u64);
                f.published_in_window += 1;
            }
        }
        if done {
            self.progress.notify_one();
        }
    }
}

/// A subscriber's frame reader: server frames (unmasked), messages inflated when RSV1
/// is set, pings and pongs skipped.
struct Reader {
    frames: FrameReader,
    message: Vec<u8>,
    compressed: bool,
    inflater: Option<(Decompress, bool)>,
}

impl Reader {
    /// Takes every complete message out of the buffered bytes.
    fn messages(&mut self, mut each: impl FnMut(&[u8])) -> Result<(), String> {
        while let Some(frame) = self.frames.next_frame().map_err(|e| e.to_string())? {
            if frame.masked {
                return Err("masked frame from the server".into());
            }
            let (fin, rsv1, opcode, payload) =
                (frame.fin, frame.rsv1(), frame.opcode, frame.payload);
            match opcode {
                0x8 => return Err("the server closed the connection".into()),
                0x9 | 0xa => continue,
                0x1 | 0x2 => {
                    self.message.clear();
                    self.compressed = rsv1;
                }
                0x0 => {}
                other => return Err(format!("opcode {other}")),
            }
            self.message.extend_from_slice(&payload);
            if !fin {
                continue;
            }
            if self.compressed {
                let Some((inflater, reset)) = &mut self.inflater else {
                    return Err("compressed frame without permessage-deflate".into());
                };
                self.message.extend_from_slice(&[0, 0, 0xff, 0xff]);
                let mut out = Vec::with_capacity(self.message.len() * 4 + 64);
                let mut input = &self.message[..];
                loop {
                    let before = inflater.total_in();
                    let status = inflater
                        .decompress_vec(input, &mut out, FlushDecompress::Sync)
                        .map_err(|e| format!("inflate: {e}"))?;
                    input = &input[(inflater.total_in() - before) as usize..];
                    if matches!(status, Status::StreamEnd) {
                        inflater.reset(false);
                    }
                    if input.is_empty() && out.len() < out.capacity() {
                        break;
                    }
                    out.reserve(out.capacity().max(1024));
                }
                if *reset {
                    inflater.reset(false);
                }
                each(&out);
            } else {
                each(&self.message);
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct SubStats {
    mismatches: u64,
    error: Option<String>,
    wire_bytes: u64,
    received: u64,
}

async fn subscriber(
    opened: Opened,
    payloads: Arc<Payloads>,
    shared: Arc<Shared>,
    stop: Arc<Notify>,
) -> SubStats {
    let mut stats = SubStats::default();
    let extensions = opened.extensions.unwrap_or_default();
    let inflater = extensions.contains("permessage-deflate").then(|| {
        (
            Decompress::new_with_window_bits(false, 15),
            extensions.contains("server_no_context_takeover"),
        )
    });
    let mut frames = FrameReader::new(u64::MAX);
    frames.push(&opened.leftover);
    let mut reader = Reader {
        frames,
        message: Vec::new(),
        compressed: false,
        inflater,
    };
    let mut tcp = opened.tcp;
    let mut seq = 0u64;
    let mut chunk = vec![0u8; 4096];
    let stopped = stop.notified();
    tokio::pin!(stopped);
    loop {
        let result = reader.messages(|message| {
            let expected = &payloads.payloads[(seq % 8) as usize];
            if message != &expected[..] {
                stats.mismatches += 1;
            }
            shared.delivered(seq);
            seq += 1;
        });
        if let Err(e) = result {
            stats.error = Some(e);
            break;
        }
        tokio::select! {
            read = tcp.read(&mut chunk) => match read {
                Ok(0) => {
                    stats.error = Some("the server closed the connection".into());
                    break;
                }
                Ok(n) => {
                    stats.wire_bytes += n as u64;
                    reader.frames.push(&chunk[..n]);
                }
                Err(e) => {
                    stats.error = Some(format!("read: {e}"));
                    break;
                }
            },
            _ = &mut stopped => break,
        }
    }
    stats.received = seq;
    client::abort(tcp);
    stats
}

/// Opens the subscribers and the publisher and publishes for warmup + duration.
pub async fn run_fanout(
    url: &WsUrl,
    settings: &FanoutSettings,
    pid: Option<u32>,
) -> Result<FanoutReport, String> {
    let addr: SocketAddr = resolve(url)?;
    let mut request = wire::upgrade_request(url);
    if settings.deflate {
        let head = String::from_utf8(request).map_err(|e| e.to_string())?;
        let head = head.trim_end_matches("\r\n").to_string()
            + "\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";
        request = head.into_bytes();
    }
    let opened = client::open_many(addr, Arc::new(request), settings.subscribers, None).await?;
    let extensions = opened.iter().find_map(|o| o.extensions.clone());
    let payloads = Arc::new(Payloads::new(settings.size));
    let publisher = client::open(addr, &wire::upgrade_request(url)).await?;
    let start = Instant::now() + settings.warmup;
    let end = start + settings.duration;
    let shared = Arc::new(Shared {
        flight: Mutex::new(Flight::default()),
        progress: Notify::new(),
        start,
        end,
        subscribers: settings.subscribers,
    });
    let stop = Arc::new(Notify::new());
    let mut set = JoinSet::new();
    for o in opened {
        set.spawn(subscriber(
            o,
            payloads.clone(),
            shared.clone(),
            stop.clone(),
        ));
    }
    // The publisher gets its own messages back too: read and drop them.
    let (mut pub_read, mut pub_write) = publisher.tcp.into_split();
    let drain = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 << 10];
        while let Ok(n) = pub_read.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    });

    let mut sent = 0u64;
    let mut failure = None;
    let mut before = None;
    loop {
        let now = Instant::now();
        if before.is_none() && now >= start {
            before = Some(CpuSample::now(pid));
        }
        if now >= end {
            break;
        }
        let notified = shared.progress.notified();
        let in_flight = {
            let mut f = shared.flight.lock().expect("not poisoned");
            if f.pending.len() < settings.window.max(1) {
                f.pending
                    .push_back((sent, Instant::now(), shared.subscribers));
                if f.pending.len() == 1 {
                    f.last_progress = Some(Instant::now());
                }
                None
            } else {
                Some(f.last_progress)
            }
        };
        match in_flight {
            None => {
                let frame = &payloads.frames[(sent % 8) as usize];
                if let Err(e) = pub_write.write_all(frame).await {
                    failure = Some(format!("publish: {e}"));
                    break;
                }
                sent += 1;
            }
            Some(last) => {
                let waited = last.map_or(Duration::ZERO, |l| now.duration_since(l));
                if waited > STALL {
                    failure = Some(format!(
                        "message not delivered to every subscriber within {} s",
                        STALL.as_secs()
                    ));
                    break;
                }
                let wake = (end.min(now + Duration::from_millis(100))).max(now);
                let _ = tokio::time::timeout_at(wake.into(), notified).await;
            }
        }
    }
    let after = CpuSample::now(pid);
    let before = before.unwrap_or_else(|| CpuSample::now(pid));
    // Every subscriber created its `Notified` before this call, so all of them see it.
    stop.notify_waiters();
    let mut total = SubStats::default();
    let mut errors = 0;
    let mut received = 0;
    while let Some(joined) = set.join_next().await {
        let s = joined.map_err(|e| e.to_string())?;
        total.mismatches += s.mismatches;
        total.wire_bytes += s.wire_bytes;
        received += s.received;
        if let Some(e) = s.error {
            errors += 1;
            total.error = total.error.or(Some(e));
        }
    }
    drain.abort();
    drop(pub_write);
    let f = shared.flight.lock().expect("not poisoned");
    let (server_s, server_pct, generator_pct) = after.since(&before);
    let published = f.published_in_window;
    let deliveries = published * settings.subscribers as u64;
    let secs = settings.duration.as_secs_f64();
    Ok(FanoutReport {
        published,
        deliveries_per_s: deliveries as f64 / secs,
        p50_us: micros(f.latency.quantile(0.5)),
        p99_us: micros(f.latency.quantile(0.99)),
        max_us: micros(f.latency.max()),
        mismatches: total.mismatches,
        errors: errors + u64::from(failure.is_some()),
        first_error: failure.or(total.error),
        server_us_per_delivery: server_s
            .filter(|_| deliveries > 0)
            .map(|s| s * 1e6 / deliveries as f64),
        server_cpu_pct: server_pct,
        generator_cpu_pct: generator_pct,
        extensions,
        wire_bytes_per_delivery: if received > 0 {
            total.wire_bytes as f64 / received as f64
        } else {
            0.0
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        wire_kit::frame(first, payload, None)
    }

    #[test]
    fn reader_splits_frames_joins_fragments_and_inflates() {
        let mut deflate = Compress::new_with_window_bits(Compression::new(6), false, 15);
        let text = b"{\"symbol\":\"SYM001\",\"price\":101.5}".repeat(20);
        let mut compressed = Vec::with_capacity(2048);
        deflate
            .compress_vec(&text, &mut compressed, FlushCompress::Sync)
            .unwrap();
        assert!(compressed.ends_with(&[0, 0, 0xff, 0xff]));
        compressed.truncate(compressed.len() - 4);

        let mut bytes = frame(0x82, b"plain");
        bytes.extend(frame(0x89, b"ping"));
        bytes.extend(frame(0x02, b"frag"));
        bytes.extend(frame(0x80, b"ment"));
        bytes.extend(frame(0xc2, &compressed));
        let big = vec![7u8; 70_000];
        bytes.extend(frame(0x82, &big));
        let mut reader = Reader {
            frames: FrameReader::new(u64::MAX),
            message: Vec::new(),
            compressed: false,
            inflater: Some((Decompress::new_with_window_bits(false, 15), true)),
        };
        let mut got: Vec<Vec<u8>> = Vec::new();
        // Fed in small pieces, as reads would deliver them.
        for piece in bytes.chunks(7) {
            reader.frames.push(piece);
            reader.messages(|m| got.push(m.to_vec())).unwrap();
        }
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], b"plain");
        assert_eq!(got[1], b"fragment");
        assert_eq!(got[2], text);
        assert_eq!(got[3], big);
        assert_eq!(reader.frames.buffered(), 0);

        let mut closing_frames = FrameReader::new(u64::MAX);
        closing_frames.push(&frame(0x88, &[0x03, 0xe8]));
        let mut closing = Reader {
            frames: closing_frames,
            message: Vec::new(),
            compressed: false,
            inflater: None,
        };
        assert!(closing.messages(|_| {}).is_err());
    }

    #[test]
    fn payloads_are_the_size_asked_and_differ() {
        let p = Payloads::new(100);
        assert!(p.payloads.iter().all(|p| p.len() == 100));
        assert_ne!(p.payloads[0], p.payloads[1]);
        assert_eq!(p.frames[0].len(), 100 + 2 + 4);
    }
}
