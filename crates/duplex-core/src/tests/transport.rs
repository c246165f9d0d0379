//! The driver contract: `poll_transport` decides when and how a transport ends, the
//! linger policy (shut down, drain, close) runs inside the engine, and a transport error
//! means the same thing whatever the driver.

use std::io;

use super::sim::Pair;
use super::*;

const SECOND: Duration = Duration::from_secs(1);
const ROLES: [Role; 2] = [Role::Client, Role::Server];

fn linger(time: Duration, max_bytes: usize) -> EngineConfig {
    EngineConfig::default()
        .close_timeout(Duration::from_secs(5))
        .linger(Linger { time, max_bytes })
}

/// A server whose close handshake is complete and output written.
fn closed_server(config: EngineConfig, now: Instant) -> Connection {
    let mut conn = Connection::new(Role::Server, config);
    conn.close(None, now).unwrap();
    let n = conn.output_len();
    conn.consume_output(n);
    conn.receive(&peer_frame(Role::Server, 0x88, &[]));
    assert!(matches!(
        conn.poll_event(now),
        Some(Ok(Message::Close(None)))
    ));
    assert_eq!(conn.state(), State::Closed);
    conn
}

#[test]
fn an_open_connection_keeps_its_transport() {
    for role in ROLES {
        let mut conn = Connection::new(role, EngineConfig::default());
        let now = Instant::now();
        assert_eq!(conn.poll_transport(now), TransportAction::Continue);
        assert!(conn.wants_read());
    }
}

#[test]
fn after_the_close_handshake_the_server_shuts_down_drains_and_closes_at_end_of_file() {
    let now = Instant::now();
    let mut conn = closed_server(linger(SECOND, 1 << 20), now);
    assert_eq!(conn.poll_transport(now), TransportAction::ShutdownWrite);
    // Asked again before the driver is done: the same answer, no new deadline.
    assert_eq!(conn.poll_transport(now), TransportAction::ShutdownWrite);
    assert!(!conn.wants_read(), "nothing is read while shutting down");
    assert_eq!(conn.poll_timeout(), Some(now + SECOND));
    conn.shutdown_done();
    assert_eq!(conn.poll_transport(now), TransportAction::Drain);
    assert!(conn.wants_read());
    // Input while draining is discarded by the engine, whichever way it arrives.
    conn.receive(&[0x81; 1000]);
    conn.input_buffer(4096).extend_from_slice(&[0x82; 500]);
    assert_eq!(conn.poll_transport(now), TransportAction::Drain);
    assert_eq!(conn.buffered_input(), 0);
    assert_eq!(conn.poll_event(now).map(|e| e.is_ok()), None);
    conn.receive_eof();
    assert_eq!(conn.poll_transport(now), TransportAction::Close);
    assert_eq!(conn.poll_timeout(), None);
    assert_eq!(conn.state(), State::Closed);
}

#[test]
fn draining_ends_at_the_linger_deadline_even_if_shutting_down_never_completes() {
    let now = Instant::now();
    for shut_down in [false, true] {
        let mut conn = closed_server(linger(SECOND, 1 << 20), now);
        assert_eq!(conn.poll_transport(now), TransportAction::ShutdownWrite);
        if shut_down {
            conn.shutdown_done();
        }
        conn.handle_timeout(now + SECOND / 2);
        assert_ne!(conn.poll_transport(now), TransportAction::Close);
        conn.handle_timeout(now + SECOND);
        assert_eq!(conn.poll_transport(now + SECOND), TransportAction::Close);
    }
}

#[test]
fn draining_ends_at_its_byte_cap() {
    let now = Instant::now();
    let mut conn = closed_server(linger(SECOND, 1000), now);
    assert_eq!(conn.poll_transport(now), TransportAction::ShutdownWrite);
    conn.shutdown_done();
    conn.receive(&[0; 999]);
    assert_eq!(conn.poll_transport(now), TransportAction::Drain);
    conn.input_buffer(64).extend_from_slice(&[0; 1]);
    assert_eq!(conn.poll_transport(now), TransportAction::Close);
}

#[test]
fn without_linger_or_after_end_of_file_the_transport_closes_at_once() {
    let now = Instant::now();
    let mut conn = closed_server(linger(Duration::ZERO, 1 << 20), now);
    assert_eq!(conn.poll_transport(now), TransportAction::Close);
    let mut conn = closed_server(linger(SECOND, 1 << 20), now);
    conn.receive_eof();
    assert_eq!(conn.poll_transport(now), TransportAction::Close);
}

#[test]
fn nothing_ends_the_transport_while_output_is_unwritten() {
    let now = Instant::now();
    for role in ROLES {
        let mut conn = Connection::new(role, EngineConfig::default());
        conn.receive(&peer_frame(role, 0x88, &1000u16.to_be_bytes()));
        assert!(matches!(conn.poll_event(now), Some(Ok(Message::Close(_)))));
        assert_eq!(conn.poll_transport(now), TransportAction::Continue);
        let n = conn.output_len();
        conn.consume_output(n);
        let expected = match role {
            // The server ends TCP; the client waits for it (RFC 6455 section 7.1.1).
            Role::Server => TransportAction::ShutdownWrite,
            Role::Client => TransportAction::Continue,
        };
        assert_eq!(conn.poll_transport(now), expected, "{role:?}");
        if role == Role::Client {
            conn.receive_eof();
            assert_eq!(conn.poll_transport(now), TransportAction::Close);
        }
    }
}

#[test]
fn a_reset_is_the_peer_leaving_whatever_the_driver() {
    let now = Instant::now();
    for kind in [
        io::ErrorKind::ConnectionReset,
        io::ErrorKind::ConnectionAborted,
        io::ErrorKind::BrokenPipe,
    ] {
        for role in ROLES {
            // Before the close handshake: the peer vanished, reported once.
            let mut conn = Connection::new(role, EngineConfig::default());
            // What arrived before the reset is still delivered; what we queued is not
            // written any more.
            conn.receive(&peer_frame(role, 0x81, b"last words"));
            conn.send(Message::text("unread")).unwrap();
            conn.transport_failed(&io::Error::from(kind), now);
            assert_eq!(conn.output_len(), 0);
            assert!(
                matches!(conn.poll_event(now), Some(Ok(Message::Text(t))) if t == "last words")
            );
            assert!(matches!(
                conn.poll_event(now),
                Some(Err(Error::PeerVanished { mid_message: false }))
            ));
            assert_eq!(conn.poll_transport(now), TransportAction::Close);
            assert!(conn.poll_event(now).is_none());
            assert!(matches!(
                conn.send(Message::text("x")),
                Err(Error::PeerVanished { .. })
            ));
            assert_eq!(conn.state(), State::Failed);
        }
        // After it: no error at all.
        let mut conn = closed_server(EngineConfig::default(), now);
        conn.transport_failed(&io::Error::from(kind), now);
        assert_eq!(conn.poll_transport(now), TransportAction::Close);
        assert!(conn.poll_event(now).is_none());
        assert_eq!(conn.state(), State::Closed);
        assert!(conn.failure().is_none());
    }
}

#[test]
fn another_transport_error_fails_the_connection_with_io() {
    let now = Instant::now();
    let mut conn = Connection::new(Role::Server, EngineConfig::default());
    conn.transport_failed(&io::Error::other("disk on fire"), now);
    assert_eq!(conn.poll_transport(now), TransportAction::Close);
    assert!(matches!(conn.poll_event(now), Some(Err(Error::Io(_)))));
    assert!(matches!(conn.failure(), Some(Error::Io(_))));
}

#[test]
fn a_deadline_closes_at_once_without_lingering() {
    let now = Instant::now();
    let config = EngineConfig::default().write_timeout(Some(SECOND));
    let mut conn = Connection::new(Role::Server, config);
    conn.send(Message::binary(vec![0; 10_000])).unwrap();
    conn.handle_timeout(now);
    assert_eq!(conn.poll_transport(now), TransportAction::Continue);
    conn.handle_timeout(now + SECOND);
    assert_eq!(conn.poll_transport(now + SECOND), TransportAction::Close);
    assert!(matches!(
        conn.poll_event(now + SECOND),
        Some(Err(Error::Timeout(TimeoutKind::WriteStall)))
    ));
}

#[test]
fn on_the_simulator_both_ends_release_their_transports_after_a_close() {
    for initiator in ROLES {
        let mut pair = Pair::new(linger(SECOND, 1 << 20), linger(SECOND, 1 << 20));
        let now = pair.now;
        let (us, _) = pair.ends(initiator);
        us.conn.close(None, now).unwrap();
        pair.step();
        // The server shut its side down first; the client closed on end of file, and
        // the server's drain ended with the client's end of file: no linger wait.
        assert_eq!(pair.server.shut_down, Some(now), "{initiator:?}");
        assert_eq!(pair.client.transport_closed, Some(now), "{initiator:?}");
        assert_eq!(pair.server.transport_closed, Some(now), "{initiator:?}");
    }
}

#[derive(Clone, Debug)]
enum Act {
    /// The peer's bytes (any, valid or not).
    Bytes(Vec<u8>),
    /// A valid frame from the peer: opcode byte and payload.
    Frame(u8, Vec<u8>),
    Send(usize),
    Close,
    /// The driver writes up to this many bytes.
    Write(usize),
    Eof,
    Reset,
    /// Time passes (milliseconds).
    Wait(u64),
    /// The driver does what `poll_transport` says.
    Transport,
}

fn arb_act() -> impl Strategy<Value = Act> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Act::Bytes),
        (
            prop_oneof![
                Just(0x81u8),
                Just(0x82),
                Just(0x89),
                Just(0x8A),
                Just(0x88),
                Just(0x01)
            ],
            proptest::collection::vec(any::<u8>(), 0..20)
        )
            .prop_map(|(op, p)| Act::Frame(op, p)),
        (0usize..5000).prop_map(Act::Send),
        Just(Act::Close),
        (0usize..3000).prop_map(Act::Write),
        Just(Act::Eof),
        Just(Act::Reset),
        (0u64..20_000).prop_map(Act::Wait),
        Just(Act::Transport),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Whatever the peer, the application and the clock do, a connection whose transport
    /// is not closed always has a deadline pending, or is waiting for the driver to act
    /// on `poll_transport`; and following it always ends with `Close`.
    #[test]
    fn no_sequence_leaves_a_connection_without_a_deadline(
        server in any::<bool>(),
        acts in proptest::collection::vec(arb_act(), 0..40),
    ) {
        let role = if server { Role::Server } else { Role::Client };
        let config = EngineConfig::default()
            .no_keepalive()
            .write_timeout(Some(Duration::from_secs(3)))
            .close_timeout(Duration::from_secs(2));
        let mut conn = Connection::new(role, config);
        let mut now = Instant::now();
        let mut closed = false;
        for act in acts {
            if closed {
                break;
            }
            match act {
                Act::Bytes(bytes) => conn.receive(&bytes),
                Act::Frame(op, payload) => conn.receive(&peer_frame(role, op, &payload)),
                Act::Send(n) => { let _ = conn.send(Message::binary(vec![1; n])); }
                Act::Close => { let _ = conn.close(None, now); }
                Act::Write(n) => { let n = n.min(conn.output_len()); conn.consume_output(n); }
                Act::Eof => conn.receive_eof(),
                Act::Reset => conn.transport_failed(&io::ErrorKind::ConnectionReset.into(), now),
                Act::Wait(ms) => { now += Duration::from_millis(ms); conn.handle_timeout(now); }
                Act::Transport => match conn.poll_transport(now) {
                    TransportAction::ShutdownWrite => conn.shutdown_done(),
                    TransportAction::Close => closed = true,
                    TransportAction::Continue | TransportAction::Drain => {}
                },
            }
            while conn.poll_event(now).is_some() {}
            conn.handle_timeout(now);
            let action = conn.poll_transport(now);
            if action == TransportAction::Close {
                closed = true;
            }
            let pending = conn.poll_timeout().is_some();
            let open = conn.state() == State::Open;
            // Open with nothing queued and no keepalive may wait for ever for the
            // application: that is its right. Every other state has a deadline.
            prop_assert!(
                closed || pending || action == TransportAction::ShutdownWrite
                    || (open && conn.output_len() == 0),
                "no deadline: state {:?}, action {:?}, output {}",
                conn.state(), action, conn.output_len()
            );
        }
        // Following the engine with a peer that never reads nor answers ends it in bounded
        // time.
        let deadline = now + Duration::from_secs(10);
        while !closed && now < deadline {
            match conn.poll_transport(now) {
                TransportAction::ShutdownWrite => conn.shutdown_done(),
                TransportAction::Close => closed = true,
                _ => {
                    now = conn.poll_timeout().unwrap_or(now).max(now) + Duration::from_millis(1);
                    conn.handle_timeout(now);
                    while conn.poll_event(now).is_some() {}
                }
            }
        }
        prop_assert!(closed || conn.state() == State::Open, "state {:?}", conn.state());
    }
}
