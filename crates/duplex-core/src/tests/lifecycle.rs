//! The connection's life, end to end on the simulator, for both roles: the close
//! handshake, and a deadline on every path a peer can leave a connection in.

use std::time::Duration;

use super::sim::Pair;
use crate::*;

const SECOND: Duration = Duration::from_secs(1);

fn config() -> EngineConfig {
    EngineConfig::default()
        .close_timeout(Duration::from_secs(3))
        .write_timeout(Some(Duration::from_secs(10)))
}

fn other(role: Role) -> Role {
    match role {
        Role::Client => Role::Server,
        Role::Server => Role::Client,
    }
}

const ROLES: [Role; 2] = [Role::Client, Role::Server];

#[test]
fn a_clean_close_goes_through_every_state_and_keeps_both_frames() {
    for initiator in ROLES {
        let mut pair = Pair::new(config(), config());
        let now = pair.now;
        let (us, peer) = pair.ends(initiator);
        us.conn
            .close(Some(CloseFrame::new(CloseCode::Normal, "bye")), now)
            .unwrap();
        assert_eq!(us.conn.state(), State::CloseSent);
        assert_eq!(peer.conn.state(), State::Open);
        pair.step();
        let (us, peer) = pair.ends(initiator);
        assert_eq!(us.conn.state(), State::Closed, "{initiator:?}");
        assert_eq!(peer.conn.state(), State::Closed, "{initiator:?}");
        assert_eq!(us.conn.sent_close_frame().unwrap().reason, "bye");
        assert_eq!(peer.conn.received_close_frame().unwrap().reason, "bye");
        assert_eq!(
            us.conn.received_close_frame().unwrap().code,
            CloseCode::Normal,
            "the reply carries the same code"
        );
        // The server closes TCP first; the client follows at once on seeing it.
        assert!(pair.server.transport_closed.is_some());
        assert!(pair.client.transport_closed.is_some());
        assert!(pair.client.errors().is_empty() && pair.server.errors().is_empty());
    }
}

#[test]
fn sending_after_a_close_says_whose_close_it_was() {
    for initiator in ROLES {
        let mut pair = Pair::new(config(), config());
        let now = pair.now;
        pair.ends(initiator).0.conn.close(None, now).unwrap();
        pair.step();
        let (us, peer) = pair.ends(initiator);
        assert!(matches!(
            us.conn.send(Message::text("late")),
            Err(Error::Usage(UsageError::SendAfterClose))
        ));
        assert!(matches!(
            peer.conn.send(Message::text("late")),
            Err(Error::ConnectionClosed)
        ));
        assert_eq!(
            peer.conn.received_close_frame().unwrap().code,
            CloseCode::NoStatus,
            "an empty close is kept as 1005"
        );
    }
}

#[test]
fn a_peer_that_never_answers_our_close_is_dropped_at_the_close_timeout() {
    for us in ROLES {
        let mut pair = Pair::new(config(), config());
        // The peer neither reads nor answers.
        pair.ends(other(us)).1.reads_per_step = Some(0);
        pair.ends(us).1.reads_per_step = Some(0);
        let now = pair.now;
        pair.ends(us).0.conn.close(None, now).unwrap();
        let took = pair
            .run_until(SECOND / 10, 10 * SECOND, Pair::closed(us))
            .expect("the transport is closed");
        assert_eq!(took, Duration::from_secs(3), "{us:?}");
        let (me, _) = pair.ends(us);
        assert_eq!(me.conn.state(), State::Failed);
        assert!(matches!(
            me.errors()[..],
            [Error::Timeout(TimeoutKind::CloseHandshake)]
        ));
    }
}

#[test]
fn a_peer_that_sends_close_and_never_reads_is_dropped_at_the_close_timeout() {
    for us in ROLES {
        let mut pair = Pair::new(config(), config());
        // Fill our output while the peer does not read, then the peer closes.
        pair.ends(us).1.reads_per_step = Some(0);
        for _ in 0..64 {
            pair.ends(us)
                .0
                .conn
                .send(Message::binary(vec![7u8; 16 << 10]))
                .unwrap();
        }
        let now = pair.now;
        pair.ends(us).1.conn.close(None, now).unwrap();
        pair.step();
        assert_eq!(pair.ends(us).0.conn.state(), State::CloseReceived, "{us:?}");
        let took = pair
            .run_until(SECOND / 10, 10 * SECOND, Pair::closed(us))
            .expect("the transport is closed");
        assert_eq!(took, Duration::from_secs(3), "{us:?}");
        assert!(pair.ends(us).0.conn.output_len() > 0, "left unsent");
    }
}

#[test]
fn a_peer_that_stops_reading_stalls_the_output_and_fails_the_connection() {
    for us in ROLES {
        let mut pair = Pair::new(config(), config().no_keepalive());
        pair.ends(us).1.reads_per_step = Some(0);
        let mut sent = 0;
        while pair
            .ends(us)
            .0
            .conn
            .send(Message::binary(vec![1u8; 64 << 10]))
            .is_ok()
        {
            sent += 1;
        }
        assert!(sent > 0);
        let now = pair.now;
        pair.ends(us).0.conn.handle_timeout(now);
        let took = pair
            .run_until(SECOND, 60 * SECOND, Pair::closed(us))
            .expect("the transport is closed");
        assert_eq!(took, Duration::from_secs(10), "{us:?}");
        let (me, _) = pair.ends(us);
        assert!(matches!(
            me.errors()[..],
            [Error::Timeout(TimeoutKind::WriteStall)]
        ));
        assert!(matches!(
            me.conn.send(Message::text("more")),
            Err(Error::Timeout(TimeoutKind::WriteStall))
        ));
    }
}

#[test]
fn a_peer_that_reads_one_byte_a_second_is_a_stall_too() {
    for us in ROLES {
        let mut pair = Pair::new(config(), config());
        pair.ends(us).1.reads_per_step = Some(1);
        pair.ends(us)
            .0
            .conn
            .send(Message::binary(vec![1u8; 100 << 10]))
            .unwrap();
        let now = pair.now;
        pair.ends(us).0.conn.handle_timeout(now);
        let took = pair.run_until(SECOND, 60 * SECOND, Pair::closed(us));
        // Deadlines are met at the simulator's one-second steps.
        assert!(
            took.is_some_and(|t| t <= Duration::from_secs(11)),
            "{took:?}"
        );
    }
}

#[test]
fn a_slow_but_steady_reader_is_not_a_stall() {
    let mut pair = Pair::new(config(), config());
    pair.client.reads_per_step = Some(8 << 10);
    pair.server
        .conn
        .send(Message::binary(vec![1u8; 1 << 20]))
        .unwrap();
    let done = pair.run_until(SECOND, 300 * SECOND, |p| p.client.messages().len() == 1);
    assert!(done.is_some());
    assert!(pair.server.errors().is_empty());
    assert_eq!(pair.server.conn.state(), State::Open);
}

#[test]
fn keepalive_ends_a_silent_peer_even_while_output_is_stuck() {
    for us in ROLES {
        let keepalive = config().write_timeout(None).keepalive(SECOND, 2 * SECOND);
        let (client, server) = match us {
            Role::Client => (keepalive, config().no_keepalive()),
            Role::Server => (config().no_keepalive(), keepalive),
        };
        let mut pair = Pair::new(client, server);
        pair.ends(us).1.reads_per_step = Some(0);
        pair.ends(us)
            .0
            .conn
            .send(Message::binary(vec![0u8; 4 << 20]))
            .unwrap();
        let took = pair.run_until(SECOND / 10, 10 * SECOND, Pair::closed(us));
        assert_eq!(took, Some(3 * SECOND), "{us:?}");
        assert!(matches!(
            pair.ends(us).0.errors()[..],
            [Error::Timeout(TimeoutKind::Keepalive)]
        ));
        // Sending afterwards reports the failure, never Ok.
        assert!(matches!(
            pair.ends(us).0.conn.send(Message::text("x")),
            Err(Error::Timeout(TimeoutKind::Keepalive))
        ));
    }
}

#[test]
fn keepalive_ends_a_peer_that_stopped_in_the_middle_of_a_frame() {
    let mut pair = Pair::new(config(), config().keepalive(SECOND, SECOND));
    // Half a frame from the client, then silence: it answers no ping.
    pair.client.reads_per_step = Some(0);
    pair.server
        .conn
        .receive(&[0x82, 0xFE, 0x01, 0x00, 1, 2, 3, 4, 9, 9]);
    pair.step();
    let took = pair.run_until(SECOND / 10, 10 * SECOND, |p| {
        p.server.transport_closed.is_some()
    });
    assert_eq!(took, Some(2 * SECOND));
}

#[test]
fn idle_counts_any_bytes_so_a_slow_upload_is_not_idle() {
    // Without a memory budget: the harness reads once per deadline, and the budget's
    // check every 100 ms (armed while the connection holds more than 16 KiB) would
    // speed up the trickle.
    let server = config()
        .no_keepalive()
        .no_memory_budget()
        .idle_timeout(Some(Duration::from_secs(3)));
    let mut pair = Pair::new(config().no_keepalive(), server);
    // A 200 KiB message trickles in at 8 KiB a second: 25 s, far longer than the idle
    // timeout, but never 3 s without a byte.
    pair.client
        .conn
        .send(Message::binary(vec![5u8; 200 << 10]))
        .unwrap();
    pair.server.reads_per_step = Some(8 << 10);
    let done = pair.run_until(SECOND, 60 * SECOND, |p| p.server.messages().len() == 1);
    assert!(
        done.is_some_and(|t| t >= Duration::from_secs(20)),
        "{done:?}"
    );
    assert!(pair.server.errors().is_empty());
    // Then silence: idle fires 3 s later with 1001.
    let took = pair.run_until(SECOND / 10, 10 * SECOND, |p| !p.server.errors().is_empty());
    assert!(
        took.is_some_and(|t| t <= Duration::from_secs(3)),
        "{took:?}"
    );
    assert!(matches!(
        pair.server.errors()[..],
        [Error::Timeout(TimeoutKind::Idle)]
    ));
    assert_eq!(
        pair.client.conn.received_close_frame().unwrap().code,
        CloseCode::GoingAway
    );
}

#[test]
fn a_failed_connection_is_closed_within_the_close_timeout_even_if_the_peer_never_reads() {
    for us in ROLES {
        let mut pair = Pair::new(config(), config());
        pair.ends(us).1.reads_per_step = Some(0);
        // A frame with a reserved bit from the peer: we fail with 1002, which the peer
        // never reads.
        let bad: &[u8] = match us {
            Role::Server => &[0xC1, 0x80, 0, 0, 0, 0],
            Role::Client => &[0xC1, 0x00],
        };
        for _ in 0..32 {
            let _ = pair
                .ends(us)
                .0
                .conn
                .send(Message::binary(vec![0u8; 64 << 10]));
        }
        pair.ends(us).0.conn.receive(bad);
        pair.step();
        assert_eq!(pair.ends(us).0.conn.state(), State::Failed);
        let took = pair.run_until(SECOND / 10, 10 * SECOND, Pair::closed(us));
        assert_eq!(took, Some(Duration::from_secs(3)), "{us:?}");
    }
}

#[test]
fn a_peer_that_vanishes_ends_the_connection_at_once() {
    for us in ROLES {
        let mut pair = Pair::new(config(), config());
        pair.ends(us).0.conn.receive_eof();
        pair.step();
        let (me, _) = pair.ends(us);
        assert_eq!(me.conn.state(), State::Failed);
        assert!(me.transport_closed.is_some());
        assert!(matches!(
            me.errors()[..],
            [Error::PeerVanished { mid_message: false }]
        ));
        assert!(matches!(
            me.conn.send(Message::text("x")),
            Err(Error::PeerVanished { .. })
        ));
    }
}

#[test]
fn a_small_message_does_not_keep_the_read_buffer_alive() {
    let mut server = Connection::new(Role::Server, EngineConfig::default());
    let buffer = server.input_buffer(64 << 10);
    let (start, capacity) = (buffer.as_ptr() as usize, buffer.capacity());
    assert!(capacity >= 64 << 10);
    buffer.extend_from_slice(&[0x82, 0x81, 0, 0, 0, 0, 42]);
    let message = server
        .poll_event(std::time::Instant::now())
        .unwrap()
        .unwrap();
    let at = message.payload().as_ptr() as usize;
    assert_eq!(message.payload(), &[42][..]);
    assert!(
        !(start..start + capacity).contains(&at),
        "a one-byte message must own its byte, not a slice of the 64 KiB buffer"
    );
    // A large one is handed over without a copy.
    let big = vec![0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    let buffer = server.input_buffer((64 << 10) + 64);
    buffer.extend_from_slice(&big);
    buffer.resize(buffer.len() + (64 << 10), 3);
    let (start, capacity) = (buffer.as_ptr() as usize, buffer.capacity());
    let message = server
        .poll_event(std::time::Instant::now())
        .unwrap()
        .unwrap();
    assert_eq!(message.payload().len(), 64 << 10);
    assert!((start..start + capacity).contains(&(message.payload().as_ptr() as usize)));
}

#[test]
fn forced_output_goes_past_the_soft_limit_up_to_the_hard_one_then_fails_the_connection() {
    for role in ROLES {
        let config = EngineConfig::default()
            .max_write_buffer(10_000)
            .write_buffer_hard_limit(30_000);
        let mut conn = Connection::new(role, config);
        let chunk = || Message::binary(vec![0u8; 8_000]);
        conn.send(chunk()).unwrap();
        conn.send(chunk()).unwrap();
        assert!(!conn.wants_read(), "{role:?}: over the soft limit");
        assert!(matches!(
            conn.send(chunk()),
            Err(Error::Usage(UsageError::WriteBufferFull { .. }))
        ));
        conn.send_forced(chunk()).unwrap();
        let error = conn.send_forced(chunk()).unwrap_err();
        assert!(
            matches!(
                &error,
                Error::LimitExceeded(LimitError {
                    limit: Limit::WriteBuffer,
                    max: 30_000,
                    ..
                })
            ),
            "{role:?}: {error}"
        );
        assert_eq!(conn.state(), State::Failed);
        assert!(conn.is_wire_gone());
        assert!(matches!(
            conn.send_forced(Message::text("more")),
            Err(Error::LimitExceeded(_))
        ));
    }
}

#[test]
fn a_ping_burst_asks_for_a_write_before_pongs_would_collapse() {
    let mut pair = Pair::new(config(), config());
    pair.client.reads_per_step = Some(0);
    for n in 1..=8 {
        pair.server.conn.receive(&[0x89, 0x81, 0, 0, 0, 0, n as u8]);
        pair.server.conn.poll_event(pair.now);
        assert_eq!(pair.server.conn.wants_flush(), n >= 8, "after {n} pings");
    }
}
