//! Never-ending peers: clients that would hold a connection for ever if any path of the
//! server lacked a deadline. Both servers run with the driver kit's configuration
//! (`duplex_hostile::kit::limits`: a 2 s write timeout, keepalive pings after 1 s of
//! silence answered within 1 s, and a 1 s close timeout); each case opens many such peers
//! at once and asserts that the server lets go of every one of them
//! (its socket closed: duplex-tokio's task finished, duplex-mio's slot freed) within the
//! case's deadline plus one second, that resident memory stays bounded, and that a
//! well-behaved client is served meanwhile. Each prints one `NEVER-ENDING |` line with
//! the time to release (`cargo test -p duplex-hostile --test never_ending -- --nocapture`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use duplex_hostile::kit::{CLOSE_TIMEOUT, KEEPALIVE, SLACK as GRACE, WRITE_TIMEOUT, limits};
use duplex_hostile::rss::RssSampler;
use duplex_hostile::servers::{Kind, TestServer, good_client, open, raise_fd_limit};
use duplex_hostile::wire::{BINARY, CLOSE, FIN, client_frame, close_payload, header};

static SERIAL: Mutex<()> = Mutex::new(());

/// What an attacking client does after its handshake.
#[derive(Clone, Copy, Debug)]
enum Peer {
    /// `/flood`: the server only sends; the client never reads.
    NeverReadsWhileServerSends,
    /// `/`: sends messages without reading the echoes, then a Close, then nothing.
    NeverReadsAndSendsClose,
    /// `/close`: the server closes at once; the client never reads nor answers.
    NeverAnswersOurClose,
    /// `/`: half a frame, then silence.
    StopsMidFrame,
    /// `/flood`: reads one byte a second.
    ReadsOneByteASecond,
    /// `/split` (duplex-tokio): the server's reader half is dropped while its writer
    /// sends; the client never reads.
    SplitWriterWithoutReader,
}

impl Peer {
    fn path(self) -> &'static str {
        match self {
            Self::NeverReadsWhileServerSends | Self::ReadsOneByteASecond => "/flood",
            Self::NeverAnswersOurClose => "/close",
            Self::SplitWriterWithoutReader => "/split",
            Self::NeverReadsAndSendsClose | Self::StopsMidFrame => "/",
        }
    }

    /// The deadline that must end this peer's connection.
    fn deadline(self) -> Duration {
        match self {
            // The stall counts from the last time the socket took 4 KiB, and the
            // kernel's send buffer keeps growing for a while after the peer stops
            // reading; the keepalive ping stuck behind the output ends it too.
            Self::NeverReadsWhileServerSends | Self::ReadsOneByteASecond => 2 * WRITE_TIMEOUT,
            // Either the close deadline (the server read the close) or the write stall
            // (it stopped reading before it) ends it.
            Self::NeverReadsAndSendsClose => WRITE_TIMEOUT.max(CLOSE_TIMEOUT),
            Self::NeverAnswersOurClose | Self::SplitWriterWithoutReader => CLOSE_TIMEOUT,
            Self::StopsMidFrame => KEEPALIVE.0 + KEEPALIVE.1,
        }
    }

    /// Acts right after the handshake.
    fn start(self, stream: &mut TcpStream) {
        match self {
            Self::NeverReadsAndSendsClose => {
                // Enough echoes to fill what the server may queue and the socket
                // buffers; a write that blocks ends the burst.
                stream
                    .set_write_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let frame = client_frame(FIN | BINARY, &[7u8; 16 << 10]);
                for _ in 0..64 {
                    if stream.write_all(&frame).is_err() {
                        break;
                    }
                }
                let _ =
                    stream.write_all(&client_frame(FIN | CLOSE, &close_payload(Some(1000), b"")));
            }
            Self::StopsMidFrame => {
                let mut half = header(FIN | BINARY, 1000, Some([1, 2, 3, 4]), false);
                half.extend_from_slice(&[0u8; 100]);
                stream.write_all(&half).unwrap();
            }
            _ => {}
        }
    }
}

/// Opens `count` peers of one kind against a fresh server, keeps them misbehaving, and
/// returns how long the server took to let go of all of them.
fn never_ending(kind: Kind, peer: Peer, count: usize) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = TestServer::start(kind, &limits()).expect("start the server");
    good_client(&server, "warm-up").expect("served before");
    server
        .wait_open_at_most(0, Duration::from_secs(3))
        .expect("warm-up connection released");
    let available = raise_fd_limit(4096);
    let count = count.min((available.saturating_sub(300) / 2) as usize);
    let rss = RssSampler::start();
    let closed_before = server.stats().closed.load(Ordering::Acquire);

    let start = Instant::now();
    let mut peers = Vec::with_capacity(count);
    for _ in 0..count {
        let (mut stream, _) = open(server.addr(), peer.path()).expect("open");
        peer.start(&mut stream);
        peers.push(stream);
    }
    let opened = start.elapsed();
    let flood = matches!(
        peer,
        Peer::NeverReadsWhileServerSends | Peer::ReadsOneByteASecond
    ) && kind == Kind::Mio;
    let budget = opened + peer.deadline() + GRACE;
    let released = std::thread::scope(|scope| {
        if flood {
            // duplex-mio's flood is published from outside the worker.
            scope.spawn(|| server.flood(budget));
        }
        let trickle = matches!(peer, Peer::ReadsOneByteASecond).then(|| {
            let streams: Vec<TcpStream> = peers.iter().map(|s| s.try_clone().unwrap()).collect();
            scope.spawn(move || {
                for stream in &streams {
                    stream.set_nonblocking(true).unwrap();
                }
                let mut byte = [0u8; 1];
                while start.elapsed() < budget {
                    for mut stream in &streams {
                        let _ = stream.read(&mut byte);
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            })
        });
        let served = good_client(&server, "meanwhile");
        let released = server.wait_open_at_most(0, budget);
        if let Some(trickle) = trickle {
            trickle.join().unwrap();
        }
        (released, served)
    });
    let (released, served) = released;
    let latency = served.expect("a good client is served while the peers hang on");
    let took = start.elapsed();
    let growth_kib = rss.finish();
    let closed = server.stats().closed.load(Ordering::Acquire) - closed_before;
    println!(
        "NEVER-ENDING | {} | {peer:?} x{count} | all released {:.2} s after the first opened \
         (opening took {:.2} s; deadline {:?} + 1 s) | good client served in {:.0} ms \
         | RSS growth {:.1} MiB{}",
        kind.name(),
        took.as_secs_f64(),
        opened.as_secs_f64(),
        peer.deadline(),
        latency.as_secs_f64() * 1000.0,
        growth_kib as f64 / 1024.0,
        if kind == Kind::Mio {
            format!(" | on_close ran {closed} times (with the good client's)")
        } else {
            String::new()
        }
    );
    if let Err(open) = released {
        panic!(
            "{} | {peer:?}: {open} of {count} connections still held after {budget:?}; \
             server errors {:?}",
            kind.name(),
            server.stats().recent_errors()
        );
    }
    println!(
        "NEVER-ENDING | {} | {peer:?} | how they ended: {:?}",
        kind.name(),
        server.stats().recent_errors().last()
    );
    assert!(
        latency < Duration::from_secs(1),
        "{} | {peer:?}: the good client took {latency:?} (connect, two echoes, close)",
        kind.name()
    );
    if kind == Kind::Mio {
        // The good client's connection is the one more.
        assert_eq!(closed, count + 1, "on_close runs once for every connection");
    }
    assert!(
        growth_kib < 256 * 1024,
        "{} | {peer:?}: resident memory grew by {growth_kib} KiB",
        kind.name()
    );
    drop(peers);
}

macro_rules! cases {
    ($($name:ident: $peer:ident x $count:expr, [$($kind:ident),*];)*) => {$(
        mod $name {
            $(
                #[test]
                #[allow(non_snake_case)]
                fn $kind() {
                    super::never_ending(super::Kind::$kind, super::Peer::$peer, $count);
                }
            )*
        }
    )*};
}

// Peers that make the server fill its socket buffers are run 100 at a time (each pins
// a few MiB of kernel buffers on loopback); the others 1,000 at a time.
cases! {
    never_reads_while_server_sends: NeverReadsWhileServerSends x 100, [Tokio, Mio];
    never_reads_and_sends_close: NeverReadsAndSendsClose x 100, [Tokio, Mio];
    never_answers_our_close: NeverAnswersOurClose x 1000, [Tokio, Mio];
    stops_mid_frame: StopsMidFrame x 1000, [Tokio, Mio];
    reads_one_byte_a_second: ReadsOneByteASecond x 100, [Tokio, Mio];
    split_writer_without_reader: SplitWriterWithoutReader x 1000, [Tokio];
}
