//! The server over real sockets on 127.0.0.1.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use duplex_mio::client::{ClientConfig, ClientRequest, ConnectError, connect_with};
use duplex_mio::{
    Bytes, CloseCode, EngineConfig, HandshakeError, Message, SendError, ServerConfig,
};

fn config() -> ServerConfig {
    // Clients left open at the end of a test do not answer the shutdown's close frame;
    // do not wait long for them.
    ServerConfig::default()
        .workers(2)
        .shutdown_timeout(Duration::from_millis(300))
        .engine(duplex_mio::EngineConfig::default().linger(duplex_core_linger(300)))
}

#[test]
fn echoes_text_and_binary_and_closes_cleanly() {
    let server = start(config());
    let mut socket = client(&server.url("/"));
    socket.send(Message::text("hello")).unwrap();
    assert_eq!(recv_data(&mut socket), Message::text("hello"));
    let big = Bytes::from(vec![7u8; 300_000]);
    socket.send(Message::binary(big.clone())).unwrap();
    assert_eq!(recv_data(&mut socket), Message::binary(big));
    socket
        .send(Message::Ping(Bytes::from_static(b"p")))
        .unwrap();
    assert_eq!(
        socket.recv().unwrap(),
        Message::Pong(Bytes::from_static(b"p"))
    );
    socket.close(None).unwrap();
    assert!(socket.is_closed());
    server.wait_for(|r| matches!(r, Report::Closed(..)).then_some(()));
    server.stop();
}

#[test]
fn server_initiated_close_reaches_the_client_with_its_code() {
    let server = start(config());
    let mut socket = client(&server.url("/"));
    socket.send(Message::text("close:4000")).unwrap();
    match socket.recv().unwrap() {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Other(4000)),
        other => panic!("expected close, got {other:?}"),
    }
    server.stop();
}

#[test]
fn on_open_can_reject_and_choose_a_subprotocol() {
    let server = start(config());
    let error = duplex_mio::client::connect(&server.url("/forbidden")).unwrap_err();
    assert!(matches!(
        error,
        ConnectError::Handshake(HandshakeError::Refused(response)) if response.status == 403
    ));
    let request = ClientRequest::new(&server.url("/"))
        .unwrap()
        .protocol("other")
        .protocol("chat");
    let socket = connect_with(request, &ClientConfig::default()).unwrap();
    assert_eq!(socket.protocol(), Some("chat"));
    server.stop();
}

#[test]
fn broadcast_reaches_clients_on_every_worker() {
    let server = start(config());
    let mut sockets: Vec<_> = (0..12).map(|_| client(&server.url("/"))).collect();
    // A round trip each makes sure every handshake is done.
    for socket in &mut sockets {
        socket.send(Message::text("ready?")).unwrap();
        assert_eq!(recv_data(socket), Message::text("ready?"));
    }
    sockets[0].send(Message::text("all:news")).unwrap();
    for socket in &mut sockets {
        assert_eq!(recv_data(socket), Message::text("news"));
    }
    // And from another thread, through a Sender.
    server
        .sender
        .broadcast(Message::binary(vec![1, 2, 3]))
        .unwrap();
    for socket in &mut sockets {
        assert_eq!(recv_data(socket), Message::binary(vec![1, 2, 3]));
    }
    assert!(matches!(
        server.sender.broadcast(Message::Ping(Bytes::new())),
        Err(SendError::NotData)
    ));
    drop(sockets);
    server.stop();
}

#[test]
fn topics_reach_only_their_subscribers() {
    let server = start(config());
    let mut a = client(&server.url("/"));
    let mut b = client(&server.url("/"));
    let mut c = client(&server.url("/"));
    for (socket, topic) in [(&mut a, "x"), (&mut b, "x"), (&mut c, "y")] {
        socket.send(Message::text(format!("sub:{topic}"))).unwrap();
        assert_eq!(recv_data(socket), Message::text("ok"));
    }
    a.send(Message::text("pub:x:for x")).unwrap();
    assert_eq!(recv_data(&mut a), Message::text("for x"));
    assert_eq!(recv_data(&mut b), Message::text("for x"));
    server.sender.publish("y", Message::text("for y")).unwrap();
    // c's first message is y's: it never got x's.
    assert_eq!(recv_data(&mut c), Message::text("for y"));
    // A closed subscriber leaves its topics.
    b.close(None).unwrap();
    server.wait_for(|r| matches!(r, Report::Closed(..)).then_some(()));
    a.send(Message::text("pub:x:again")).unwrap();
    assert_eq!(recv_data(&mut a), Message::text("again"));
    server.stop();
}

#[test]
fn sender_reaches_one_connection_from_another_thread() {
    let server = start(config());
    let mut first = client(&server.url("/"));
    let first_id = server.wait_for(|r| match r {
        Report::Opened(id) => Some(id),
        _ => None,
    });
    let mut second = client(&server.url("/"));
    server.wait_for(|r| matches!(r, Report::Opened(_)).then_some(()));
    let sender = server.sender.clone();
    std::thread::spawn(move || sender.send(first_id, Message::text("direct")))
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(recv_data(&mut first), Message::text("direct"));
    // The other connection got nothing: its first message is its own echo.
    second.send(Message::text("mine")).unwrap();
    assert_eq!(recv_data(&mut second), Message::text("mine"));
    // Closing from outside.
    server
        .sender
        .close(first_id, CloseCode::Normal, "done")
        .unwrap();
    match first.recv().unwrap() {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected close, got {other:?}"),
    }
    server.wait_for(|r| matches!(r, Report::Closed(id, _) if id == first_id).then_some(()));
    // A gone connection's id is dropped silently.
    server.sender.send(first_id, Message::text("late")).unwrap();
    server.stop();
}

#[test]
fn graceful_shutdown_sends_1001_and_returns_within_the_bound() {
    let server = start(config().shutdown_timeout(Duration::from_millis(800)));
    // Polite clients on both workers answer the close frame.
    let mut readers = Vec::new();
    for _ in 0..6 {
        let mut polite = client(&server.url("/"));
        polite.send(Message::text("ready?")).unwrap();
        assert_eq!(recv_data(&mut polite), Message::text("ready?"));
        readers.push(std::thread::spawn(move || polite.recv()));
    }
    // This one completes its handshake but never reads again.
    let _silent = raw_client(server.addr);
    // And this one is in the middle of its handshake.
    let mut half = TcpStream::connect(server.addr).unwrap();
    half.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    server.wait_for_count(8, TIMEOUT);
    let sender = server.sender.clone();
    let (took, reports) = server.stop_with_reports();
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    for reader in readers {
        match reader.join().unwrap().unwrap() {
            Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::GoingAway),
            other => panic!("expected close 1001, got {other:?}"),
        }
    }
    // Every open connection got `on_close` (the silent one too, when it was dropped),
    // and every socket was let go.
    let closed = reports
        .iter()
        .filter(|r| matches!(r, Report::Closed(..)))
        .count();
    assert_eq!(closed, 7, "{reports:?}");
    assert_eq!(sender.connection_count(), 0);
}

#[test]
fn a_panicking_handler_closes_its_connection_with_1011_and_the_worker_goes_on() {
    // One worker: the panicking handler runs on the thread serving the others.
    let server = start(config().workers(1));
    let mut bystander = client(&server.url("/"));
    server.wait_for(|r| matches!(r, Report::Opened(_)).then_some(()));
    let mut victim = client(&server.url("/"));
    let victim_id = server.wait_for(|r| match r {
        Report::Opened(id) => Some(id),
        _ => None,
    });
    bystander.send(Message::text("before")).unwrap();
    assert_eq!(recv_data(&mut bystander), Message::text("before"));

    victim.send(Message::text("panic")).unwrap();
    match victim.recv().unwrap() {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::InternalError),
        other => panic!("expected close 1011, got {other:?}"),
    }
    // The close handshake completes and the socket is freed.
    server.wait_for_count(1, TIMEOUT);

    for i in 0..5 {
        let text = format!("after {i}");
        bystander.send(Message::text(text.clone())).unwrap();
        assert_eq!(recv_data(&mut bystander), Message::text(text));
    }
    // A panic in `on_open` refuses that client with 500; new clients are served.
    match duplex_mio::client::connect(&server.url("/panic")) {
        Err(ConnectError::Handshake(HandshakeError::Refused(response))) => {
            let status = response.status;
            assert_eq!(status, 500)
        }
        other => panic!("expected 500, got {other:?}"),
    }
    let mut late = client(&server.url("/"));
    late.send(Message::text("late")).unwrap();
    assert_eq!(recv_data(&mut late), Message::text("late"));
    bystander.close(None).unwrap();
    let (_, reports) = server.stop_with_reports();
    // The dropped handler got no more calls.
    assert!(
        reports.iter().all(|r| !matches!(r,
            Report::Closed(id, _) | Report::Error(id, _) if *id == victim_id)),
        "{reports:?}"
    );
}

#[test]
fn echoes_empty_and_16_mib_text_and_binary() {
    let websocket = EngineConfig::default()
        .max_message_size(32 << 20)
        .max_frame_size(32 << 20)
        .max_write_buffer(64 << 20);
    let server = start(
        config()
            .engine(websocket.clone())
            .write_buffer_limits(32 << 20, 64 << 20),
    );
    // Without compression: 16 MiB through deflate is slow in a debug build.
    let client_config = ClientConfig::default().engine(websocket).deflate(None);
    let request = ClientRequest::new(&server.url("/")).unwrap();
    let mut socket = connect_with(request, &client_config).unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    let big_text: String = (0..16 << 20)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let big_binary: Vec<u8> = (0..16u32 << 20).map(|i| (i % 251) as u8).collect();
    for message in [
        Message::text(""),
        Message::binary(Bytes::new()),
        Message::text(big_text),
        Message::binary(big_binary),
    ] {
        socket.send(message.clone()).unwrap();
        let echo = recv_data(&mut socket);
        assert_eq!(echo.payload().len(), message.payload().len());
        assert!(echo == message, "the echo differs from what was sent");
    }
    socket.close(None).unwrap();
    server.stop();
}

#[test]
fn abrupt_disconnects_mid_handshake_and_mid_frame_free_the_connection() {
    // The handshake timeout is long: only noticing the disconnect frees the socket.
    let server = start(config().handshake_timeout(Duration::from_secs(30)));
    let mut keeper = client(&server.url("/"));
    keeper.send(Message::text("ready?")).unwrap();
    assert_eq!(recv_data(&mut keeper), Message::text("ready?"));
    server.wait_for_count(1, TIMEOUT);
    let within = Duration::from_secs(3);
    for reset in [false, true] {
        let end = |stream: TcpStream| {
            if reset {
                // Linger zero: the close is a reset.
                socket2::SockRef::from(&stream)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
            }
            drop(stream);
        };
        // Half an opening request.
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nSec-WebSo")
            .unwrap();
        server.wait_for_count(2, TIMEOUT);
        end(stream);
        server.wait_for_count(1, within);

        // A frame header and part of its payload.
        let mut stream = raw_client(server.addr);
        let mut frame = masked_frame(0x82, &[9u8; 1000]);
        frame.truncate(200);
        stream.write_all(&frame).unwrap();
        server.wait_for_count(2, TIMEOUT);
        end(stream);
        server.wait_for_count(1, within);

        // Part of a frame header (a 16 MiB frame's 64-bit length, cut short).
        let mut stream = raw_client(server.addr);
        stream.write_all(&[0x82, 0x80 | 127, 0, 0, 0]).unwrap();
        end(stream);
        server.wait_for_count(1, within);

        // 64 KiB into a 16 MiB frame.
        let mut stream = raw_client(server.addr);
        let header = wire_kit::header(0x82, 16 << 20, ZERO_MASK, false);
        stream.write_all(&header).unwrap();
        stream.write_all(&vec![1u8; 64 << 10]).unwrap();
        end(stream);
        server.wait_for_count(1, within);
    }
    // Still serving, the survivor and newcomers alike.
    keeper.send(Message::text("still here")).unwrap();
    assert_eq!(recv_data(&mut keeper), Message::text("still here"));
    let mut late = client(&server.url("/"));
    late.send(Message::text("late")).unwrap();
    assert_eq!(recv_data(&mut late), Message::text("late"));
    server.stop();
}

#[test]
fn input_and_the_end_of_input_arriving_together_are_both_seen() {
    // The worker stops reading a socket after a read shorter than its buffer; the end
    // of input that came with the data must still be noticed.
    let server = start(config());
    for round in 0..20u8 {
        let mut stream = raw_client(server.addr);
        let mut bytes = masked_frame(0x82, &[round; 100]);
        bytes.extend_from_slice(&masked_frame(0x82, &[round; 3]));
        stream.write_all(&bytes).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut expected = wire_kit::frame(0x82, &[round; 100], None);
        expected.extend_from_slice(&wire_kit::frame(0x82, &[round; 3], None));
        // Both echoes, then the server closes (the peer vanished without a close
        // frame): the read ends instead of timing out.
        let got = read_some(&mut stream, usize::MAX);
        assert!(got.starts_with(&expected), "round {round}: {got:?}");
        server.wait_for_count(0, Duration::from_secs(3));
    }
    server.stop();
}

#[test]
fn large_and_small_frames_in_any_chunking_are_echoed_intact() {
    // Large binary frames are read straight into the engine's buffer (the rest of a
    // frame, or a frame like the last large one); small ones through the shared buffer.
    // Mixed sizes, split at odd places or packed together, must all come back intact.
    let server = start(config());
    let sizes = [
        70_000usize,
        5,
        20_000,
        16_384,
        100_000,
        3,
        65_536,
        65_536,
        1,
        40_000,
    ];
    let payload =
        |i: usize, len: usize| -> Vec<u8> { (0..len).map(|k| (k * 31 + i * 7) as u8).collect() };
    for chunk in [7_919usize, 65_536, 1 << 20] {
        let mut stream = raw_client(server.addr);
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for (i, &len) in sizes.iter().enumerate() {
            let data = payload(i, len);
            // Every third one text, so that both kinds of frame mix.
            let first = if i % 3 == 2 { 0x81 } else { 0x82 };
            let data = if first == 0x81 { vec![b'x'; len] } else { data };
            wire.extend_from_slice(&masked_frame(first, &data));
            expected.extend_from_slice(&wire_kit::frame(first, &data, None));
        }
        let reader = {
            let mut stream = stream.try_clone().unwrap();
            let n = expected.len();
            std::thread::spawn(move || read_some(&mut stream, n))
        };
        for (k, piece) in wire.chunks(chunk).enumerate() {
            stream.write_all(piece).unwrap();
            if k % 4 == 1 {
                // Let the server see a frame cut short before the rest arrives.
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let got = reader.join().unwrap();
        assert_eq!(got.len(), expected.len(), "chunk {chunk}");
        assert!(got == expected, "chunk {chunk}: the echoes differ");
    }
    server.stop();
}

#[test]
fn handshake_timeout_drops_a_stalled_client() {
    let server = start(config().handshake_timeout(Duration::from_millis(200)));
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let result = stream.read(&mut buf);
    assert!(
        matches!(result, Ok(0)) || result.is_err(),
        "expected the connection to be dropped, got {result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // The server still serves others.
    let mut socket = client(&server.url("/"));
    socket.send(Message::text("alive")).unwrap();
    assert_eq!(recv_data(&mut socket), Message::text("alive"));
    server.stop();
}

#[test]
fn malformed_request_gets_400() {
    let server = start(config());
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 400 "), "{response}");
    server.stop();
}

#[test]
fn slow_reader_is_closed_past_the_hard_limit_while_others_are_served() {
    let server = start(config().workers(1).write_buffer_limits(64 << 10, 256 << 10));
    let mut slow = raw_client(server.addr);
    let slow_id = server.wait_for(|r| match r {
        Report::Opened(id) => Some(id),
        _ => None,
    });
    let mut fast = client(&server.url("/"));
    fast.send(Message::text("ready?")).unwrap();
    assert_eq!(recv_data(&mut fast), Message::text("ready?"));
    let chunk = Bytes::from(vec![b'x'; 64 << 10]);
    let mut overflowed = false;
    // Kernel buffers absorb some megabytes first; stop at 256 MiB whatever happens.
    for _ in 0..4096 {
        server
            .sender
            .broadcast(Message::binary(chunk.clone()))
            .unwrap();
        assert_eq!(recv_data(&mut fast).into_payload().len(), chunk.len());
        if let Ok(Report::Overflow(id)) = server.reports.try_recv() {
            assert_eq!(id, slow_id);
            overflowed = true;
            break;
        }
    }
    assert!(overflowed, "the slow reader was never closed");
    server.wait_for(|r| matches!(r, Report::Closed(id, _) if id == slow_id).then_some(()));
    // The slow reader's socket ends (after the data it had in flight).
    let mut buf = vec![0u8; 1 << 20];
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match slow.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => assert!(Instant::now() < deadline),
        }
    }
    fast.send(Message::text("still here")).unwrap();
    assert_eq!(recv_data(&mut fast), Message::text("still here"));
    server.stop();
}

#[test]
fn a_client_that_never_reads_is_no_longer_read() {
    // Echoing into a client that does not read: replies pile up to the soft limit, then
    // the server stops reading, so the client's writes stall (once the kernel buffers
    // are full) instead of growing the server's memory.
    let server = start(config().workers(1).write_buffer_limits(32 << 10, 64 << 10));
    let mut raw = raw_client(server.addr);
    raw.set_nonblocking(true).unwrap();
    let frame = masked_frame(0x82, &vec![0u8; 8 << 10]);
    let started = Instant::now();
    let mut sent = 0usize;
    let mut stalled_since: Option<Instant> = None;
    let stalled = loop {
        if sent > (512 << 20) || started.elapsed() > Duration::from_secs(8) {
            break false;
        }
        // Partial writes are common here: keep the stream whole.
        match raw.write(&frame[sent % frame.len()..]) {
            Ok(n) => {
                sent += n;
                stalled_since = None;
            }
            Err(_) => {
                let since = *stalled_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(500) {
                    break true;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    };
    if !stalled {
        let reports: Vec<_> = server.reports.try_iter().collect();
        panic!("the server kept reading a client that never reads ({sent} bytes): {reports:?}");
    }
    // Not closed: the client is only slow, and nothing was forced past the hard limit.
    assert!(
        server
            .reports
            .try_iter()
            .all(|r| !matches!(r, Report::Overflow(_) | Report::Closed(..)))
    );
    drop(raw);
    server.stop();
}

#[test]
fn a_flooding_client_does_not_starve_another() {
    let server = start_with(config().workers(1), true);
    let mut flooder = raw_client(server.addr);
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let frame = masked_frame(0x82, &vec![0u8; 60 << 10]);
            let started = Instant::now();
            let mut sent = 0usize;
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(8) {
                if flooder.write_all(&frame).is_err() {
                    break;
                }
                sent += frame.len();
            }
            sent
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    // The handshake, the round trips and a late client all complete during the flood
    // (which lasts up to 8 s): without a read budget they wait for the flood to end.
    let started = Instant::now();
    let mut other = client(&server.url("/"));
    for i in 0..20 {
        let text = format!("round trip {i}");
        other.send(Message::text(text.clone())).unwrap();
        assert_eq!(recv_data(&mut other), Message::text(text));
    }
    let mut late = client(&server.url("/"));
    late.send(Message::text("late")).unwrap();
    assert_eq!(recv_data(&mut late), Message::text("late"));
    let round_trips = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let sent = flood.join().unwrap();
    assert!(sent > 1 << 20, "the flood did not flood ({sent} bytes)");
    assert!(
        round_trips < Duration::from_secs(4),
        "22 round trips took {round_trips:?} during the flood"
    );
    server.stop();
}

#[test]
fn connections_over_the_limit_get_503() {
    let server = start(config().max_connections(2));
    let mut a = client(&server.url("/"));
    let _b = client(&server.url("/"));
    match duplex_mio::client::connect(&server.url("/")) {
        Err(ConnectError::Handshake(HandshakeError::Refused(response))) => {
            let status = response.status;
            assert_eq!(status, 503)
        }
        other => panic!("expected 503, got {other:?}"),
    }
    a.close(None).unwrap();
    // Once a slot frees up, clients are accepted again.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match duplex_mio::client::connect(&server.url("/")) {
            Ok(_) => break,
            Err(_) => {
                assert!(Instant::now() < deadline, "never accepted again");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    server.stop();
}

#[test]
fn protocol_violations_get_the_rfc_close_code_on_the_wire() {
    let server = start(config());
    for (frame, code) in [
        (vec![0x81, 0x00], 1002u16),                           // unmasked
        (masked_frame(0x81, b"\xce\xba\xe1"), 1007),           // invalid UTF-8 (complete message)
        (masked_frame(0x89 & 0x7F, b"fragmented ping"), 1002), // ping without FIN
        (masked_frame(0xC1, b"rsv1"), 1002),                   // reserved bit
    ] {
        let mut raw = raw_client(server.addr);
        raw.write_all(&frame).unwrap();
        let bytes = read_some(&mut raw, 4);
        assert!(
            bytes.len() >= 4,
            "no close frame for {frame:02x?}: {bytes:02x?}"
        );
        assert_eq!(bytes[0], 0x88, "not a close frame: {bytes:02x?}");
        assert_eq!(u16::from_be_bytes([bytes[2], bytes[3]]), code);
        // Answer the close (the server may already have closed TCP after an
        // undecodable frame); then the server closes TCP.
        let _ = raw.write_all(&masked_frame(0x88, &code.to_be_bytes()));
        let started = Instant::now();
        let _ = read_some(&mut raw, usize::MAX);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    server.stop();
}

#[test]
fn idle_timeout_from_the_engine_config_closes_with_1001() {
    let websocket = EngineConfig::default().idle_timeout(Some(Duration::from_millis(200)));
    let server = start(config().engine(websocket));
    let mut socket = client(&server.url("/"));
    let started = Instant::now();
    match socket.recv().unwrap() {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::GoingAway),
        other => panic!("expected close 1001, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    server.stop();
}

#[test]
fn keepalive_pings_an_idle_client() {
    let websocket =
        EngineConfig::default().keepalive(Duration::from_millis(100), Duration::from_secs(5));
    let server = start(config().engine(websocket));
    let mut socket = client(&server.url("/"));
    match socket.recv().unwrap() {
        Message::Ping(_) => {}
        other => panic!("expected a keepalive ping, got {other:?}"),
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

#[test]
fn a_close_sent_through_a_sender_ends_a_peer_that_never_answers_at_the_close_timeout() {
    let close_timeout = Duration::from_millis(500);
    let server = start(
        config().engine(
            EngineConfig::default()
                .close_timeout(close_timeout)
                .linger(duplex_core_linger(300)),
        ),
    );
    // A client that completes the handshake and then never reads nor answers.
    let raw = raw_client(server.addr);
    let id = server.wait_for(|r| match r {
        Report::Opened(id) => Some(id),
        _ => None,
    });
    let sent = Instant::now();
    server
        .sender
        .send(
            id,
            Message::Close(Some(duplex_mio::CloseFrame::new(CloseCode::Normal, "bye"))),
        )
        .unwrap();
    // The connection ends at the close timeout (plus a turn of the worker).
    server.wait_for(|r| match r {
        Report::Closed(closed, _) if closed == id => Some(()),
        _ => None,
    });
    let took = sent.elapsed();
    assert!(
        took >= close_timeout && took < close_timeout + Duration::from_secs(1),
        "{took:?}"
    );
    server.wait_for_count(0, Duration::from_secs(2));
    drop(raw);
    server.stop();
}

/// A slow consumer kicked with `Context::close_now` gets its close code at once: the
/// close frame overtakes the megabyte queued for it (none of which was written yet).
/// duplex-tokio's test kicks one whose kernel buffers are full too.
#[test]
fn a_kicked_slow_consumer_gets_its_close_code_at_once() {
    let server = start(config().workers(1));
    let mut socket = client(&server.url("/"));
    let kicked = Instant::now();
    socket.send(Message::text("kick")).unwrap();
    let mut received = 0usize;
    let close = loop {
        match socket.recv().unwrap() {
            Message::Close(frame) => break frame,
            Message::Ping(_) | Message::Pong(_) => {}
            _ => received += 1,
        }
    };
    let took = kicked.elapsed();
    let frame = close.expect("a close code");
    assert_eq!(frame.code, CloseCode::PolicyViolation);
    assert_eq!(frame.reason, "too slow");
    assert_eq!(received, 0, "the queued messages were dropped");
    assert!(
        took < Duration::from_secs(1),
        "the close frame took {took:?}"
    );
    println!(
        "KICK | mio | close 1008 received {:.0} ms after the request; 1 MiB queued, none sent",
        took.as_secs_f64() * 1000.0
    );
    server.stop();
}
