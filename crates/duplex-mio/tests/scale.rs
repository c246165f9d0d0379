//! Many clients at once: thousands of concurrent connections exchanging messages, and a
//! topic with hundreds of subscribers. The clients are blocking, driven round robin by
//! a few threads each.

mod common;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::*;
use duplex_mio::client::{ClientConfig, ClientRequest, WebSocket, connect_with};
use duplex_mio::{Message, ServerConfig};

fn config() -> ServerConfig {
    ServerConfig::default()
        .workers(2)
        .shutdown_timeout(Duration::from_millis(300))
        .engine(duplex_mio::EngineConfig::default().linger(duplex_core_linger(300)))
}

/// Small read buffers and no compression: thousands of these live in this process.
fn lean_client(url: &str) -> WebSocket {
    let config = ClientConfig::default().read_buffer_size(4096).deflate(None);
    let mut socket = connect_with(ClientRequest::new(url).unwrap(), &config).unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    socket
}

/// Raises the soft limit on open files to at least `want` (within the hard limit);
/// returns the soft limit now in force.
fn raise_fd_limit(want: libc::rlim_t) -> libc::rlim_t {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid `rlimit` for the call to fill in or read.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < want {
            limit.rlim_cur = want.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        }
    }
    limit.rlim_cur
}

/// Both ends of every connection live in this process, for both tests at once.
fn need_fds() {
    let have = raise_fd_limit(8192);
    assert!(
        have >= 6_000,
        "these tests need about 6,000 open files; the limit is {have} (ulimit -n)"
    );
}

#[test]
fn two_thousand_concurrent_clients_all_get_their_echoes() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 250;
    const ROUNDS: usize = 3;
    need_fds();
    let server = start(config());
    let url = server.url("/");
    // All connected at once before the first message, and still at the last.
    let connected = Arc::new(Barrier::new(THREADS + 1));
    let exchanged = Arc::new(Barrier::new(THREADS + 1));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let url = url.clone();
            let connected = connected.clone();
            let exchanged = exchanged.clone();
            thread::spawn(move || {
                let mut sockets: Vec<WebSocket> =
                    (0..PER_THREAD).map(|_| lean_client(&url)).collect();
                connected.wait();
                for round in 0..ROUNDS {
                    // Every client has a message in flight before any reply is read.
                    for (i, socket) in sockets.iter_mut().enumerate() {
                        let message = if i % 2 == 0 {
                            Message::text(format!("{t}/{i}/{round}"))
                        } else {
                            Message::binary(format!("{t}/{i}/{round}").into_bytes())
                        };
                        socket.send(message).unwrap();
                    }
                    for (i, socket) in sockets.iter_mut().enumerate() {
                        let echo = recv_data(socket);
                        assert_eq!(echo.payload(), format!("{t}/{i}/{round}").as_bytes());
                        assert_eq!(matches!(echo, Message::Text(_)), i % 2 == 0);
                    }
                }
                exchanged.wait();
                sockets
            })
        })
        .collect();
    connected.wait();
    server.wait_for_count(THREADS * PER_THREAD, TIMEOUT);
    exchanged.wait();
    assert_eq!(server.sender.connection_count(), THREADS * PER_THREAD);
    let sockets: Vec<Vec<WebSocket>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    // Hanging up without a close frame: the server frees every connection.
    drop(sockets);
    server.wait_for_count(0, TIMEOUT);
    server.stop();
}

#[test]
fn a_topic_with_500_subscribers_gets_every_message_once_and_in_order() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 125;
    const MESSAGES: usize = 200;
    need_fds();
    let server = start(config());
    let url = server.url("/");
    let subscribed = Arc::new(Barrier::new(THREADS + 1));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let url = url.clone();
            let subscribed = subscribed.clone();
            thread::spawn(move || {
                let mut sockets: Vec<WebSocket> =
                    (0..PER_THREAD).map(|_| lean_client(&url)).collect();
                for socket in &mut sockets {
                    socket.send(Message::text("sub:news")).unwrap();
                }
                for socket in &mut sockets {
                    assert_eq!(recv_data(socket), Message::text("ok"));
                }
                subscribed.wait();
                for socket in &mut sockets {
                    for n in 0..MESSAGES {
                        assert_eq!(recv_data(socket), Message::text(n.to_string()));
                    }
                    // Nothing more was queued: the next message is the echo of this.
                    socket.send(Message::text("end?")).unwrap();
                    assert_eq!(recv_data(socket), Message::text("end?"));
                }
                sockets
            })
        })
        .collect();
    subscribed.wait();
    // The publisher is on one worker, subscribers on both.
    let mut publisher = lean_client(&url);
    for n in 0..MESSAGES {
        publisher
            .send(Message::text(format!("pub:news:{n}")))
            .unwrap();
    }
    publisher.send(Message::text("done?")).unwrap();
    assert_eq!(recv_data(&mut publisher), Message::text("done?"));
    for thread in threads {
        let sockets = thread.join().unwrap();
        assert_eq!(sockets.len(), PER_THREAD);
    }
    server.stop();
}

/// A short linger, so that tests do not wait for clients they left open.
fn duplex_core_linger(ms: u64) -> duplex_mio::Linger {
    duplex_mio::Linger {
        time: Duration::from_millis(ms),
        max_bytes: 1 << 20,
    }
}
