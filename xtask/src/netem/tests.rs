//! The emulator against its configuration, with real packets between two namespaces.
//! Needs root and /dev/net/tun: without them a test prints why and passes, unless `CI`
//! is set (CI runs as root), where it fails.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use super::*;

/// A UDP socket in `netns` bound to `ip`, with a receive buffer big enough for every
/// datagram of a test (so that a receiving thread held up by a busy machine loses
/// none).
fn udp(netns: &ns::Netns, ip: std::net::Ipv4Addr) -> UdpSocket {
    let socket = netns.run(|| UdpSocket::bind((ip, 0))).unwrap().unwrap();
    let size: libc::c_int = 32 << 20;
    // SAFETY: sets an int option on a socket this function owns.
    let set = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(
        set,
        0,
        "SO_RCVBUFFORCE: {}",
        std::io::Error::last_os_error()
    );
    socket
}

/// The emulator with these shapes, or `None` (after saying why) where it cannot run.
fn netem(up: Shape, down: Shape) -> Option<Netem> {
    if let Some(reason) = unavailable() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but the emulator cannot run: {reason}"
        );
        eprintln!("skipped: {reason}");
        return None;
    }
    Some(Netem::start(up, down).expect("the emulated link"))
}

/// Round trips of 30 pings with 25 ms each way: never under the configured 50 ms, and
/// the median within 10 ms above it (the slack is for the wake-up delays of the
/// forwarder's and the echo's threads on a busy machine; idle, it is under 1 ms).
#[test]
fn ping_measures_the_configured_delay() {
    let shape = Shape {
        delay: Duration::from_millis(25),
        ..Shape::NONE
    };
    let Some(netem) = netem(shape, shape) else {
        return;
    };
    let mut rtts: Vec<Duration> = ping(&netem, 30, Duration::from_secs(2))
        .unwrap()
        .into_iter()
        .map(|rtt| rtt.expect("no loss configured"))
        .collect();
    rtts.sort_unstable();
    let (min, median) = (rtts[0], rtts[rtts.len() / 2]);
    assert!(min >= Duration::from_millis(50), "min {min:?}");
    assert!(median <= Duration::from_millis(60), "median {median:?}");
    // Each ping crossed the link twice, 8 bytes of data in a 36-byte IP packet.
    let (up, down) = netem.counters();
    assert_eq!((up.packets_out, down.packets_out), (30, 30));
    assert_eq!(up.bytes_out, 30 * 36);
}

/// 10,000 datagrams through 5% random loss: the binomial standard deviation is 22
/// packets, so 5% ± 1 point (±100 packets, 4.6 standard deviations) fails by chance
/// about once in 200,000 runs.
#[test]
fn five_percent_loss_drops_five_percent_of_10000_packets() {
    let lossy = Shape {
        loss: 0.05,
        ..Shape::NONE
    };
    let Some(netem) = netem(lossy, Shape::NONE) else {
        return;
    };
    let receiver = udp(&netem.server, Netem::SERVER_IP);
    receiver
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let to = receiver.local_addr().unwrap();
    let counting = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let mut received = 0u32;
        while receiver.recv(&mut buf).is_ok() {
            received += 1;
        }
        received
    });
    let sender = udp(&netem.client, Netem::CLIENT_IP);
    // In small batches, so that the receiving socket's buffer never overflows.
    for batch in 0..500u32 {
        for i in 0..20u32 {
            sender.send_to(&(batch * 20 + i).to_be_bytes(), to).unwrap();
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let received = counting.join().unwrap();
    let (up, _) = netem.counters();
    assert_eq!(up.packets_in, 10_000, "every datagram reached the emulator");
    assert_eq!(up.packets_out, u64::from(received), "all it passed arrived");
    assert_eq!(up.lost + up.packets_out, 10_000);
    assert!(
        (9_400..=9_600).contains(&received),
        "{received} of 10,000 arrived"
    );
}

/// 20 Mbit/s, offered about twice that in UDP: the arrivals come at 20 Mbit/s ± 10%,
/// and the full queue drops the excess.
#[test]
fn the_rate_limit_holds() {
    let limited = Shape {
        rate_bps: Some(20_000_000),
        queue_bytes: 100_000,
        ..Shape::NONE
    };
    let Some(netem) = netem(limited, Shape::NONE) else {
        return;
    };
    let receiver = udp(&netem.server, Netem::SERVER_IP);
    receiver
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let to = receiver.local_addr().unwrap();
    let counting = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut arrivals = Vec::new();
        while let Ok(n) = receiver.recv(&mut buf) {
            arrivals.push((Instant::now(), n + 28));
        }
        arrivals
    });
    let sender = udp(&netem.client, Netem::CLIENT_IP);
    // 10 datagrams of 1,028 IP bytes every 2 ms: 41 Mbit/s for 0.6 s.
    let payload = [0u8; 1000];
    let start = Instant::now();
    for round in 0..300u32 {
        for _ in 0..10 {
            sender.send_to(&payload, to).unwrap();
        }
        let next = start + Duration::from_millis(2 * u64::from(round + 1));
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let arrivals = counting.join().unwrap();
    assert!(arrivals.len() > 1000, "{} arrived", arrivals.len());
    let span = arrivals.last().unwrap().0 - arrivals[0].0;
    let bytes: usize = arrivals[1..].iter().map(|a| a.1).sum();
    let mbit = bytes as f64 * 8.0 / span.as_secs_f64() / 1e6;
    assert!((18.0..=22.0).contains(&mbit), "{mbit:.2} Mbit/s");
    let (up, _) = netem.counters();
    assert!(up.queue_drops > 500, "{} queue drops", up.queue_drops);
    assert_eq!(up.packets_out, arrivals.len() as u64);
}
