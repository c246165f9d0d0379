//! `cargo xtask netem`: a packet-level network emulator of our own. Two network
//! namespaces, a client end and a server end, each with a TUN device; threads of this
//! process read every IP packet from one TUN and write it into the other after a
//! delay, with jitter, random or bursty (Gilbert-Elliott) loss and a rate limit with a
//! bounded queue, per direction, counting packets and bytes. Loss and retransmission
//! happen to real TCP segments, which is what a TCP proxy would hide.
//!
//! Used by `seed-compare --profile` and by its own tests; needs root and /dev/net/tun.

mod link;
pub mod ns;

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

pub use link::{Direction, GilbertElliott, Shape, Snapshot};
pub use ns::{cleanup_on_signals, enter, sweep_stale, unavailable};

/// A named set of link conditions. Both directions get the same shape, with half the
/// round trip each.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    pub rtt: Duration,
    pub jitter: Duration,
    pub loss: f64,
    pub burst: Option<GilbertElliott>,
    pub rate_mbit: Option<f64>,
    /// How long the rate limit's queue takes to drain when full.
    pub queue: Duration,
    /// Where the figures come from.
    pub source: &'static str,
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The profiles, from the fastest to the slowest.
pub const PROFILES: [Profile; 6] = [
    Profile {
        name: "loopback",
        rtt: ms(0),
        jitter: ms(0),
        loss: 0.0,
        burst: None,
        rate_mbit: None,
        queue: ms(100),
        source: "no shaping: what the emulator's own forwarding costs",
    },
    Profile {
        name: "lan",
        rtt: ms(1),
        jitter: ms(0),
        loss: 0.0,
        burst: None,
        rate_mbit: None,
        queue: ms(100),
        source: "a switched office network or good Wi-Fi: round trips well under 1 ms on \
                 the wire, about 1 ms through hosts and access points",
    },
    Profile {
        name: "broadband",
        rtt: ms(30),
        jitter: ms(0),
        loss: 0.0,
        burst: None,
        rate_mbit: Some(50.0),
        queue: ms(100),
        source: "a cable or DSL home line to a server in the same country: idle round \
                 trips of 10 to 40 ms are what fixed-line measurement programmes (the \
                 FCC's Measuring Broadband America, for one) report",
    },
    Profile {
        name: "transcontinental",
        rtt: ms(150),
        jitter: ms(0),
        loss: 0.0,
        burst: None,
        rate_mbit: Some(50.0),
        queue: ms(100),
        source: "London to California: 8,600 km great circle, so at least 86 ms round trip \
                 at the speed of light in fibre (about 200,000 km/s), and about 150 ms \
                 over real routes",
    },
    Profile {
        name: "4g",
        rtt: ms(60),
        jitter: ms(10),
        loss: 0.01,
        burst: None,
        rate_mbit: Some(10.0),
        queue: ms(200),
        source: "issue 27's figures for a city LTE connection; a 60 ms round trip is \
                 within the range crowd-sourced speed tests report for LTE",
    },
    Profile {
        name: "3g",
        rtt: ms(300),
        jitter: ms(30),
        loss: 0.03,
        burst: None,
        rate_mbit: Some(1.0),
        queue: ms(500),
        source: "issue 27's figures for a poor 3G (UMTS/HSPA) connection at the edge of \
                 a cell",
    },
];

impl Profile {
    pub fn named(name: &str) -> Option<Profile> {
        PROFILES.iter().find(|p| p.name == name).cloned()
    }

    /// One direction's shape.
    pub fn shape(&self) -> Shape {
        let rate_bps = self.rate_mbit.map(|m| (m * 1e6) as u64);
        Shape {
            delay: self.rtt / 2,
            jitter: self.jitter / 2,
            loss: self.loss,
            burst: self.burst,
            rate_bps,
            // At least 64 full-size packets.
            queue_bytes: rate_bps.map_or(0, |r| {
                ((r as f64 / 8.0 * self.queue.as_secs_f64()) as usize).max(64 * 1500)
            }),
        }
    }

    /// One line: the figures.
    pub fn summary(&self) -> String {
        let mut out = format!("RTT {} ms", self.rtt.as_millis());
        if !self.jitter.is_zero() {
            out += &format!(", jitter ±{} ms", self.jitter.as_millis());
        }
        if self.loss > 0.0 {
            out += &format!(", loss {}%", self.loss * 100.0);
        }
        if let Some(ge) = self.burst {
            out += &format!(
                ", bursts (Gilbert-Elliott p {}%, r {}%, loss in bursts {}%)",
                ge.p * 100.0,
                ge.r * 100.0,
                ge.loss_bad * 100.0
            );
        }
        if let Some(rate) = self.rate_mbit {
            out += &format!(
                ", {rate} Mbit/s each way, queue {} ms",
                self.queue.as_millis()
            );
        }
        out
    }

    /// The command-line options that give this profile: `--profile NAME`, or every
    /// figure where it differs from the named one.
    pub fn args(&self) -> String {
        if Profile::named(self.name).as_ref() == Some(self) {
            return format!("--profile {}", self.name);
        }
        let millis = |d: Duration| d.as_secs_f64() * 1e3;
        let mut out = format!(
            "--rtt {} --jitter {} --loss {} --queue {}",
            millis(self.rtt),
            millis(self.jitter),
            self.loss * 100.0,
            millis(self.queue)
        );
        if let Some(rate) = self.rate_mbit {
            out += &format!(" --link-rate {rate}");
        }
        if let Some(ge) = self.burst {
            let (p, r, l) = (ge.p * 100.0, ge.r * 100.0, ge.loss_bad * 100.0);
            out += &format!(" --bursts {p},{r},{l}");
        }
        out
    }

    /// Parses `--profile NAME` and the options that change a profile; returns false
    /// when `arg` is none of them.
    pub fn parse_arg(
        &mut self,
        arg: &str,
        value: &mut dyn FnMut() -> Result<String, String>,
    ) -> Result<bool, String> {
        let number = |v: String, max: f64| {
            v.parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0 && *n <= max)
                .ok_or_else(|| format!("{arg}: {v:?} is not a number in [0, {max}]"))
        };
        match arg {
            "--profile" => {
                let name = value()?;
                *self = Profile::named(&name).ok_or_else(|| {
                    let names: Vec<_> = PROFILES.iter().map(|p| p.name).collect();
                    format!("unknown profile {name:?} (known: {})", names.join(", "))
                })?;
            }
            "--rtt" => self.rtt = Duration::from_secs_f64(number(value()?, 60_000.0)? / 1e3),
            "--jitter" => self.jitter = Duration::from_secs_f64(number(value()?, 60_000.0)? / 1e3),
            "--loss" => self.loss = number(value()?, 100.0)? / 100.0,
            "--rate" | "--link-rate" => {
                let rate = number(value()?, 100_000.0)?;
                self.rate_mbit = (rate > 0.0).then_some(rate);
            }
            "--queue" => self.queue = Duration::from_secs_f64(number(value()?, 60_000.0)? / 1e3),
            "--bursts" => {
                let v = value()?;
                let parts: Vec<f64> = v
                    .split(',')
                    .map(|p| number(p.to_owned(), 100.0).map(|n| n / 100.0))
                    .collect::<Result<_, _>>()?;
                let [p, r, loss_bad] = parts[..] else {
                    return Err(format!("--bursts wants P,R,LOSS in percent, not {v:?}"));
                };
                self.burst = Some(GilbertElliott { p, r, loss_bad });
            }
            _ => return Ok(false),
        }
        if !matches!(arg, "--profile") {
            self.name = "custom";
            self.source = "set on the command line";
        }
        Ok(true)
    }
}

/// The emulated link, up while this lives.
pub struct Netem {
    // Fields drop in this order: the forwarder stops (closing the TUN devices) before
    // the namespaces go.
    _forwarder: link::Forwarder,
    /// Client to server, and back.
    pub up: Arc<Direction>,
    pub down: Arc<Direction>,
    pub client: ns::Netns,
    pub server: ns::Netns,
}

impl Netem {
    pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
    pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

    /// Creates the namespaces and devices and starts forwarding.
    pub fn start(up: Shape, down: Shape) -> io::Result<Netem> {
        if let Some(reason) = unavailable() {
            return Err(io::Error::new(io::ErrorKind::Unsupported, reason));
        }
        sweep_stale();
        let client = ns::Netns::create("c")?;
        let server = ns::Netns::create("s")?;
        let client_tun = client.tun(ns::CLIENT_ADDR)?;
        let server_tun = server.tun(ns::SERVER_ADDR)?;
        let up = Arc::new(Direction {
            shape: up.into(),
            counters: Default::default(),
        });
        let down = Arc::new(Direction {
            shape: down.into(),
            counters: Default::default(),
        });
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64
            ^ u64::from(std::process::id());
        let forwarder =
            link::Forwarder::start(client_tun, server_tun, up.clone(), down.clone(), seed)?;
        Ok(Netem {
            _forwarder: forwarder,
            up,
            down,
            client,
            server,
        })
    }

    pub fn with_profile(profile: &Profile) -> io::Result<Netem> {
        Netem::start(profile.shape(), profile.shape())
    }

    /// Both directions' counters now: (client to server, server to client).
    pub fn counters(&self) -> (Snapshot, Snapshot) {
        (self.up.counters.snapshot(), self.down.counters.snapshot())
    }
}

/// A UDP echo server in the server namespace, stopped when dropped.
pub struct Echo {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Echo {
    pub fn start(netem: &Netem) -> io::Result<Echo> {
        let socket = netem
            .server
            .run(|| UdpSocket::bind((Netem::SERVER_IP, 0)))??;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let addr = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !flag.load(Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(&buf[..n], from);
                }
            }
        });
        Ok(Echo {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Round trips of `count` UDP pings, one after the other (each waits for its answer
/// up to `wait`); `None` for a lost one.
pub fn ping(netem: &Netem, count: usize, wait: Duration) -> io::Result<Vec<Option<Duration>>> {
    let echo = Echo::start(netem)?;
    let socket = netem
        .client
        .run(|| UdpSocket::bind((Netem::CLIENT_IP, 0)))??;
    socket.connect(echo.addr)?;
    let mut rtts = Vec::with_capacity(count);
    let mut buf = [0u8; 64];
    for seq in 0..count as u64 {
        let sent = Instant::now();
        socket.send(&seq.to_be_bytes())?;
        let deadline = sent + wait;
        let mut rtt = None;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            socket.set_read_timeout(Some(left.max(Duration::from_micros(100))))?;
            match socket.recv(&mut buf) {
                Ok(8) if buf[..8] == seq.to_be_bytes() => {
                    rtt = Some(sent.elapsed());
                    break;
                }
                Ok(_) => {} // a late answer to an earlier ping
                Err(_) => break,
            }
        }
        rtts.push(rtt);
    }
    Ok(rtts)
}

const USAGE: &str = "\
cargo xtask netem COMMAND [OPTIONS]

A packet-level network emulator: two network namespaces (client and server end),
each with a TUN device, joined by threads of this process that delay, jitter, drop
and rate-limit the IP packets per direction, and count them. Needs root.

Commands:
  profiles         the named profiles and their sources
  probe            UDP pings from the client end to the server end: round trips
                   and loss (--count N, default 100; --interval MS, default 20)
  run              set the link up and keep it until Ctrl-C or --duration SECS;
                   run programs at either end with `ip netns exec NAME ...`
                   (the names and addresses are printed)

Link options (after a --profile, they change it):
  --profile NAME   loopback, lan, broadband, transcontinental, 4g, 3g (default
                   loopback)
  --rtt MS         round trip time (half of it each way)
  --jitter MS      round-trip jitter: each packet's one-way delay varies within
                   ±MS/2, uniformly (order is kept)
  --loss PCT       random loss per packet, each way
  --bursts P,R,L   Gilbert-Elliott bursty loss, in percent: P good→bad, R bad→good
                   per packet, L loss in the bad state (--loss applies in the good)
  --rate MBIT      rate limit each way (0: none)
  --queue MS       the rate limit's queue, in ms of sending (tail drop when full)
";

/// Entry point of the task.
pub fn main(args: &[String]) -> ExitCode {
    if args.is_empty() || args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{USAGE}");
        return if args.is_empty() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    match run_command(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("netem: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run_command(args: &[String]) -> Result<ExitCode, String> {
    let command = args[0].as_str();
    let mut profile = PROFILES[0].clone();
    let mut count = 100usize;
    let mut interval = Duration::from_millis(20);
    let mut duration: Option<Duration> = None;
    let mut rest = args[1..].iter();
    while let Some(arg) = rest.next() {
        let mut value = || {
            rest.next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs a value"))
        };
        if profile.parse_arg(arg, &mut value)? {
            continue;
        }
        let number = |v: String| {
            v.parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n > 0.0 && *n < 1e7)
                .ok_or_else(|| format!("{arg}: {v:?} is not a positive number"))
        };
        match arg.as_str() {
            "--count" => count = number(value()?)? as usize,
            "--interval" => interval = Duration::from_secs_f64(number(value()?)? / 1e3),
            "--duration" => duration = Some(Duration::from_secs_f64(number(value()?)?)),
            other => return Err(format!("unknown option {other:?}\n\n{USAGE}")),
        }
    }
    match command {
        "profiles" => {
            for p in &PROFILES {
                println!(
                    "{:<17} {}\n{:<17} source: {}\n",
                    p.name,
                    p.summary(),
                    "",
                    p.source
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        "probe" | "run" => {
            cleanup_on_signals();
            let netem = Netem::with_profile(&profile).map_err(|e| e.to_string())?;
            println!(
                "link up: {} ({}); client end {} at {}, server end {} at {}",
                profile.name,
                profile.summary(),
                netem.client.name,
                Netem::CLIENT_IP,
                netem.server.name,
                Netem::SERVER_IP
            );
            if command == "probe" {
                probe(&netem, count, interval).map_err(|e| e.to_string())?;
            } else {
                println!(
                    "for example: ip netns exec {} python3 -m http.server 8000 --bind {} &\n\
                     \x20            ip netns exec {} curl http://{}:8000/",
                    netem.server.name,
                    Netem::SERVER_IP,
                    netem.client.name,
                    Netem::SERVER_IP
                );
                let end = duration.map(|d| Instant::now() + d);
                while end.is_none_or(|end| Instant::now() < end) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            print_counters(&netem);
            Ok(ExitCode::SUCCESS)
        }
        other => Err(format!("unknown command {other:?}\n\n{USAGE}")),
    }
}

fn probe(netem: &Netem, count: usize, interval: Duration) -> io::Result<()> {
    let wait = netem.up.shape.lock().unwrap().delay * 4 + Duration::from_secs(1);
    let mut rtts = Vec::new();
    let mut lost = 0;
    for _ in 0..count {
        let started = Instant::now();
        match ping(netem, 1, wait)?[0] {
            Some(rtt) => rtts.push(rtt),
            None => lost += 1,
        }
        if let Some(left) = interval.checked_sub(started.elapsed()) {
            std::thread::sleep(left);
        }
    }
    rtts.sort_unstable();
    let at = |p: f64| {
        rtts.get(((rtts.len().max(1) - 1) as f64 * p).round() as usize)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "{count} pings: {lost} lost ({:.1}%); round trip min {:.2} ms, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lost as f64 * 100.0 / count as f64,
        at(0.0),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    Ok(())
}

fn print_counters(netem: &Netem) {
    let (up, down) = netem.counters();
    for (name, c) in [("client→server", up), ("server→client", down)] {
        println!(
            "{name}: {} packets ({} bytes) in, {} out ({} bytes), {} lost, {} dropped by the full queue",
            c.packets_in, c.bytes_in, c.packets_out, c.bytes_out, c.lost, c.queue_drops
        );
    }
}

#[cfg(test)]
mod tests;
