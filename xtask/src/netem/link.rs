//! The link between the two namespaces: one TUN device in each, and per direction a
//! shaper thread (loss, rate limit with a bounded queue, delay and jitter) feeding a
//! delay line thread that writes each packet into the other TUN at its due time.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bursty loss after Gilbert and Elliott: a good and a bad state, moved between per
/// packet; `loss_bad` is the loss probability in the bad state (the good state uses
/// the shape's `loss`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GilbertElliott {
    /// Probability of going from good to bad, per packet.
    pub p: f64,
    /// Probability of going from bad to good, per packet.
    pub r: f64,
    pub loss_bad: f64,
}

/// What one direction of the link does to packets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shape {
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Each packet's delay varies uniformly within ±jitter (packets stay in order).
    pub jitter: Duration,
    /// Random loss probability, 0..=1 (in the good state with Gilbert-Elliott).
    pub loss: f64,
    pub burst: Option<GilbertElliott>,
    /// Bits per second the link serialises at; `None`: no limit.
    pub rate_bps: Option<u64>,
    /// The most bytes waiting for the rate limit; a packet that finds it full is dropped
    /// (tail drop).
    pub queue_bytes: usize,
}

impl Shape {
    /// No delay, loss or limit (the tests start from it).
    #[cfg(test)]
    pub const NONE: Shape = Shape {
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
        loss: 0.0,
        burst: None,
        rate_bps: None,
        queue_bytes: 0,
    };
}

/// Counters of one direction. "On the wire" is what left the shaper: IP packets, IP
/// and TCP/UDP headers included (no link-layer framing).
#[derive(Debug, Default)]
pub struct Counters {
    pub packets_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Dropped by random or bursty loss.
    pub lost: AtomicU64,
    /// Dropped because the rate limit's queue was full.
    pub queue_drops: AtomicU64,
    /// Not IPv4 (IPv6 neighbour discovery and the like): not forwarded.
    pub ignored: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub lost: u64,
    pub queue_drops: u64,
}

impl Counters {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            packets_in: self.packets_in.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            packets_out: self.packets_out.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            lost: self.lost.load(Relaxed),
            queue_drops: self.queue_drops.load(Relaxed),
        }
    }
}

impl std::ops::Sub for Snapshot {
    type Output = Snapshot;
    fn sub(self, before: Snapshot) -> Snapshot {
        Snapshot {
            packets_in: self.packets_in - before.packets_in,
            bytes_in: self.bytes_in - before.bytes_in,
            packets_out: self.packets_out - before.packets_out,
            bytes_out: self.bytes_out - before.bytes_out,
            lost: self.lost - before.lost,
            queue_drops: self.queue_drops - before.queue_drops,
        }
    }
}

/// One direction's shape, changeable while the link runs.
pub struct Direction {
    pub shape: Mutex<Shape>,
    pub counters: Counters,
}

/// The running forwarder: four threads, stopped and joined when dropped.
pub struct Forwarder {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Forwarder {
    /// Forwards between two TUN file descriptors: `a_to_b` shapes what is read from
    /// `a`, `b_to_a` what is read from `b`.
    pub fn start(
        a: OwnedFd,
        b: OwnedFd,
        a_to_b: Arc<Direction>,
        b_to_a: Arc<Direction>,
        seed: u64,
    ) -> io::Result<Forwarder> {
        let a = Arc::new(a);
        let b = Arc::new(b);
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (from, to, direction, seed, name) in [
            (a.clone(), b.clone(), a_to_b, seed, "netem-up"),
            (b, a, b_to_a, seed.rotate_left(32) ^ 0xA5A5, "netem-down"),
        ] {
            let (send, recv) = mpsc::channel::<(Instant, Vec<u8>)>();
            let (shaper_stop, shaper_dir) = (stop.clone(), direction.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("{name}-shape"))
                    .spawn(move || shape(&from, &shaper_dir, &shaper_stop, send, seed))?,
            );
            threads.push(
                std::thread::Builder::new()
                    .name(format!("{name}-deliver"))
                    .spawn(move || deliver(&to, &direction, recv))?,
            );
        }
        Ok(Forwarder { stop, threads })
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// xorshift64*: fast and good enough for loss and jitter draws.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The per-packet decisions of one direction, apart from the threads and clocks, so
/// that they can be tested alone.
pub struct Shaper {
    rng: Rng,
    bad: bool,
    /// When the rate limit finishes sending what it has queued.
    busy_until: Option<Instant>,
    /// When the last packet is due (no packet is due before it: order is kept).
    last_due: Option<Instant>,
}

/// What happens to one packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Fate {
    Lost,
    QueueFull,
    /// Delivered at this time.
    Due(Instant),
}

impl Shaper {
    pub fn new(seed: u64) -> Shaper {
        Shaper {
            rng: Rng::new(seed),
            bad: false,
            busy_until: None,
            last_due: None,
        }
    }

    pub fn fate(&mut self, shape: &Shape, len: usize, now: Instant) -> Fate {
        let loss = match shape.burst {
            Some(ge) => {
                let flip = if self.bad { ge.r } else { ge.p };
                if self.rng.next_f64() < flip {
                    self.bad = !self.bad;
                }
                if self.bad { ge.loss_bad } else { shape.loss }
            }
            None => shape.loss,
        };
        if loss > 0.0 && self.rng.next_f64() < loss {
            return Fate::Lost;
        }
        let sent = match shape.rate_bps {
            Some(rate) => {
                let start = self.busy_until.map_or(now, |busy| busy.max(now));
                let queued_bytes = (start - now).as_secs_f64() * rate as f64 / 8.0;
                if queued_bytes + len as f64 > shape.queue_bytes as f64 && start > now {
                    return Fate::QueueFull;
                }
                let done = start + Duration::from_secs_f64(len as f64 * 8.0 / rate as f64);
                self.busy_until = Some(done);
                done
            }
            None => now,
        };
        let mut due = sent + shape.delay;
        if !shape.jitter.is_zero() {
            let offset = (self.rng.next_f64() * 2.0 - 1.0) * shape.jitter.as_secs_f64();
            due = if offset >= 0.0 {
                due + Duration::from_secs_f64(offset)
            } else {
                due.checked_sub(Duration::from_secs_f64(-offset))
                    .unwrap_or(due)
                    .max(sent)
            };
        }
        let due = self.last_due.map_or(due, |last| last.max(due));
        self.last_due = Some(due);
        Fate::Due(due)
    }
}

/// Waits up to 50 ms for `fd` to be readable.
fn readable(fd: &OwnedFd) -> bool {
    let mut poll = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, count 1.
    let ready = unsafe { libc::poll(&mut poll, 1, 50) };
    ready > 0 && poll.revents & libc::POLLIN != 0
}

fn shape(
    from: &OwnedFd,
    direction: &Direction,
    stop: &AtomicBool,
    out: mpsc::Sender<(Instant, Vec<u8>)>,
    seed: u64,
) {
    let mut shaper = Shaper::new(seed);
    let mut buf = vec![0u8; 65536];
    let counters = &direction.counters;
    while !stop.load(Relaxed) {
        if !readable(from) {
            continue;
        }
        // SAFETY: reads at most buf.len() bytes into buf from an open descriptor.
        let n = unsafe { libc::read(from.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            continue;
        }
        let packet = &buf[..n as usize];
        if packet[0] >> 4 != 4 {
            counters.ignored.fetch_add(1, Relaxed);
            continue;
        }
        counters.packets_in.fetch_add(1, Relaxed);
        counters.bytes_in.fetch_add(packet.len() as u64, Relaxed);
        let shape = *direction.shape.lock().unwrap();
        match shaper.fate(&shape, packet.len(), Instant::now()) {
            Fate::Lost => {
                counters.lost.fetch_add(1, Relaxed);
            }
            Fate::QueueFull => {
                counters.queue_drops.fetch_add(1, Relaxed);
            }
            Fate::Due(due) => {
                if out.send((due, packet.to_vec())).is_err() {
                    return;
                }
            }
        }
    }
}

/// The delay line: writes each packet at its due time (they come in due order).
fn deliver(to: &OwnedFd, direction: &Direction, packets: mpsc::Receiver<(Instant, Vec<u8>)>) {
    let mut waiting: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    loop {
        // Take what has arrived; block only when nothing waits.
        let next = match waiting.pop_front() {
            Some(next) => next,
            None => match packets.recv() {
                Ok(next) => next,
                Err(_) => return, // the shaper stopped
            },
        };
        let (due, packet) = next;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        // SAFETY: writes packet.len() bytes from packet to an open descriptor.
        let n = unsafe { libc::write(to.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
        if n == packet.len() as isize {
            let counters = &direction.counters;
            counters.packets_out.fetch_add(1, Relaxed);
            counters.bytes_out.fetch_add(packet.len() as u64, Relaxed);
        }
        waiting.extend(packets.try_iter());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_spaces_packets_and_drops_when_the_queue_is_full() {
        let shape = Shape {
            rate_bps: Some(8_000_000), // 1 byte per µs
            queue_bytes: 3000,
            ..Shape::NONE
        };
        let mut shaper = Shaper::new(1);
        let t0 = Instant::now();
        let fates: Vec<Fate> = (0..5).map(|_| shaper.fate(&shape, 1000, t0)).collect();
        let us = |n| Fate::Due(t0 + Duration::from_micros(n));
        assert_eq!(
            fates,
            [
                us(1000),
                us(2000),
                us(3000),
                Fate::QueueFull,
                Fate::QueueFull
            ]
        );
        // Once the queue drained, packets go again.
        assert_eq!(
            shaper.fate(&shape, 1000, t0 + Duration::from_micros(3000)),
            us(4000)
        );
    }

    #[test]
    fn jitter_keeps_order_and_delay_bounds() {
        let shape = Shape {
            delay: Duration::from_millis(20),
            jitter: Duration::from_millis(5),
            ..Shape::NONE
        };
        let mut shaper = Shaper::new(7);
        let t0 = Instant::now();
        let mut last = t0;
        for i in 0..1000 {
            let now = t0 + Duration::from_millis(i);
            let Fate::Due(due) = shaper.fate(&shape, 100, now) else {
                panic!("no loss configured");
            };
            assert!(due >= last, "order kept");
            assert!(due >= now + Duration::from_millis(15));
            last = due;
        }
    }

    #[test]
    fn gilbert_elliott_loss_comes_in_bursts_at_the_expected_mean() {
        let ge = GilbertElliott {
            p: 0.01,
            r: 0.25,
            loss_bad: 0.5,
        };
        let shape = Shape {
            burst: Some(ge),
            ..Shape::NONE
        };
        let mut shaper = Shaper::new(3);
        let t0 = Instant::now();
        let lost: Vec<bool> = (0..200_000)
            .map(|_| shaper.fate(&shape, 100, t0) == Fate::Lost)
            .collect();
        // Stationary share of the bad state: p / (p + r) = 1/26; mean loss 1.92%.
        let mean = lost.iter().filter(|&&l| l).count() as f64 / lost.len() as f64;
        assert!((mean - 0.5 / 26.0).abs() < 0.003, "mean loss {mean}");
        // Bursty: a loss follows a loss far more often than the mean (0.25·... ≈ 0.38).
        let pairs = lost.windows(2).filter(|w| w[0]).count() as f64;
        let both = lost.windows(2).filter(|w| w[0] && w[1]).count() as f64;
        assert!(both / pairs > 0.3, "P(loss | loss) = {}", both / pairs);
    }
}
