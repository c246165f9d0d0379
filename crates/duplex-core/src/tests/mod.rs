//! One test per rule of RFC 6455 (and RFC 7692) the engine enforces, bytes in and events
//! and bytes out, one file per rule area. A rule that binds both ends runs for both roles
//! (`for role in ROLES`, the role in every assertion message); a rule that binds one end
//! only (masking, who closes TCP first) is named for that end.
//!
//! The helpers here speak for the peer of a given receiver: [`peer_frame`] masks what
//! goes to a server and leaves what goes to a client bare, and [`drain`] unmasks a
//! client's output, so one expected byte string fits both roles.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use duplex_codec::{DecodeError, OpCode};
use proptest::prelude::*;

use crate::*;

mod control;
mod fragmentation;
mod framing;
mod utf8;

mod lifecycle;
mod sim;

/// Both ends, for the rules that bind both.
const ROLES: [Role; 2] = [Role::Client, Role::Server];

/// The mask key of every frame the tests send to a server.
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A frame header as the peer of `receiver` sends it, with the length field given as is:
/// `length_field[0]` is the 7-bit length (126 or 127 for an extended length) and the
/// rest its extension bytes. The mask bit and key are added for a server.
fn peer_header_raw(receiver: Role, first_byte: u8, length_field: &[u8]) -> Vec<u8> {
    let mut out = vec![first_byte];
    out.extend_from_slice(length_field);
    if receiver == Role::Server {
        out[1] |= 0x80;
        out.extend_from_slice(&KEY);
    }
    out
}

/// A frame header as the peer of `receiver` sends it, with the shortest length encoding.
fn peer_header(receiver: Role, first_byte: u8, len: u64) -> Vec<u8> {
    let length_field = match len {
        0..=125 => vec![len as u8],
        126..=0xFFFF => [&[126u8][..], &(len as u16).to_be_bytes()].concat(),
        _ => [&[127u8][..], &len.to_be_bytes()].concat(),
    };
    peer_header_raw(receiver, first_byte, &length_field)
}

/// A frame as the peer of `receiver` sends it: masked when it goes to a server, bare when
/// it goes to a client. `first_byte` is FIN, RSV1-3 and the opcode, taken as is (so a
/// reserved opcode or bit can be sent too).
fn peer_frame(receiver: Role, first_byte: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = peer_header(receiver, first_byte, payload.len() as u64);
    if receiver == Role::Server {
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A frame as a client sends it (masked), for the server-only tests.
fn client_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    peer_frame(Role::Server, first_byte, payload)
}

/// The bytes a frame's mask key adds when `sender` sends it.
fn mask_overhead(sender: Role) -> usize {
    match sender {
        Role::Client => 4,
        Role::Server => 0,
    }
}

fn connection(role: Role) -> Connection {
    Connection::new(role, Config::default())
}

fn server() -> Connection {
    connection(Role::Server)
}

fn events(conn: &mut Connection, now: Instant) -> Vec<Result<Message, Error>> {
    let mut out = Vec::new();
    while let Some(event) = conn.poll_event(now) {
        out.push(event);
    }
    out
}

/// Everything `conn` has queued, as it goes on the wire.
fn drain_raw(conn: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    while conn.output_len() > 0 {
        let chunk = conn.pending_output().to_vec();
        conn.consume_output(chunk.len());
        out.extend_from_slice(&chunk);
    }
    out
}

/// Everything `conn` has queued, unmasked if it is a client's (each of whose frames must
/// be masked): the bytes a server would send for the same frames.
fn drain(conn: &mut Connection) -> Vec<u8> {
    let wire = drain_raw(conn);
    match conn.role() {
        Role::Server => wire,
        Role::Client => unmask_frames(&wire),
    }
}

/// `wire` (whole frames) with every frame's mask bit cleared, key removed and payload
/// unmasked; panics on a frame that is not masked.
fn unmask_frames(mut wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(wire.len());
    while !wire.is_empty() {
        assert!(wire.len() >= 2, "a whole frame header: {wire:x?}");
        assert!(
            wire[1] & 0x80 != 0,
            "a client masks every frame: {:x?}",
            &wire[..wire.len().min(16)]
        );
        let (len, ext) = match wire[1] & 0x7F {
            126 => (u64::from(u16::from_be_bytes([wire[2], wire[3]])), 2),
            127 => (u64::from_be_bytes(wire[2..10].try_into().unwrap()), 8),
            n => (u64::from(n), 0),
        };
        let header = 2 + ext;
        let start = header + 4;
        let end = start + usize::try_from(len).unwrap();
        let key: [u8; 4] = wire[header..start].try_into().unwrap();
        out.push(wire[0]);
        out.push(wire[1] & 0x7F);
        out.extend_from_slice(&wire[2..header]);
        out.extend(
            wire[start..end]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4]),
        );
        wire = &wire[end..];
    }
    out
}

fn close_bytes(code: u16, reason: &str) -> Vec<u8> {
    let mut out = vec![0x88, (2 + reason.len()) as u8];
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(reason.as_bytes());
    out
}

/// Feeds `wire` and expects exactly one error event with `code` in the queued close frame.
fn expect_failure(conn: &mut Connection, wire: &[u8], code: u16) -> Error {
    let role = conn.role();
    let now = Instant::now();
    conn.receive(wire);
    let mut results = events(conn, now);
    let error = results
        .pop()
        .unwrap_or_else(|| panic!("{role:?}: an event"))
        .expect_err("an error");
    assert!(results.iter().all(Result::is_ok), "{role:?}: {results:?}");
    assert_eq!(
        error.close_code().map(CloseCode::as_u16),
        Some(code),
        "{role:?}: {error}"
    );
    let out = drain(conn);
    assert_eq!(out[0], 0x88, "{role:?}: a close frame is queued: {out:x?}");
    assert_eq!(u16::from_be_bytes([out[2], out[3]]), code, "{role:?}");
    error
}

#[test]
fn peer_frame_masks_for_a_server_only() {
    // The helpers the other tests rest on: RFC 6455 section 5.7's two "Hello" frames.
    assert_eq!(
        peer_frame(Role::Client, 0x81, b"Hello"),
        [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
    );
    assert_eq!(
        peer_frame(Role::Server, 0x81, b"Hello"),
        [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
        ]
    );
    let long = vec![7u8; 70_000];
    let masked = peer_frame(Role::Server, 0x82, &long);
    assert_eq!(
        unmask_frames(&masked),
        peer_frame(Role::Client, 0x82, &long)
    );
    assert_eq!(
        peer_header(Role::Client, 0x82, 300),
        [0x82, 0x7E, 0x01, 0x2C]
    );
}

/// The tests not yet moved to their rule's file (as they were: server-side, with
/// the client's output as it goes on the wire).
mod unsorted {
    use super::drain_raw as drain;
    use super::*;

    #[test]
    fn close_payload_of_one_byte_is_a_protocol_error() {
        let error = expect_failure(&mut server(), &client_frame(0x88, &[0x03]), 1002);
        assert!(matches!(
            error,
            Error::Protocol(ProtocolError::CloseFrameTooShort)
        ));
    }

    #[test]
    fn rejects_close_codes_outside_the_valid_ranges() {
        for code in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            let error = expect_failure(
                &mut server(),
                &client_frame(0x88, &code.to_be_bytes()),
                1002,
            );
            assert!(
                matches!(error, Error::Protocol(ProtocolError::InvalidCloseCode(c)) if c == code)
            );
        }
    }

    #[test]
    fn close_reason_that_is_not_utf8_is_1007() {
        let error = expect_failure(
            &mut server(),
            &client_frame(0x88, &[0x03, 0xE8, 0xCE]),
            1007,
        );
        assert!(matches!(
            error,
            Error::Protocol(ProtocolError::InvalidUtf8 {
                in_close_reason: true
            })
        ));
    }

    #[test]
    fn received_close_is_answered_with_the_same_code_and_server_closes_tcp_first() {
        for code in [1000u16, 1001, 1003, 1007, 1011, 1012, 1014, 3000, 4999] {
            let mut conn = server();
            let mut body = code.to_be_bytes().to_vec();
            body.extend_from_slice(b"bye");
            conn.receive(&client_frame(0x88, &body));
            let got = events(&mut conn, Instant::now());
            assert_eq!(
                got[0].as_ref().unwrap(),
                &Message::Close(Some(CloseFrame::new(CloseCode::from(code), "bye")))
            );
            assert!(
                !conn.wants_close_transport(),
                "the reply is not written yet"
            );
            assert_eq!(drain(&mut conn), close_bytes(code, ""));
            assert!(conn.wants_close_transport());
            assert!(conn.is_closed());
        }
    }

    #[test]
    fn empty_close_is_answered_with_empty_close() {
        let mut conn = server();
        conn.receive(&client_frame(0x88, b""));
        assert_eq!(
            events(&mut conn, Instant::now())[0].as_ref().unwrap(),
            &Message::Close(None)
        );
        assert_eq!(drain(&mut conn), vec![0x88, 0x00]);
    }

    #[test]
    fn nothing_is_sent_after_close() {
        let mut conn = server();
        conn.receive(&client_frame(0x88, &1000u16.to_be_bytes()));
        events(&mut conn, Instant::now());
        drain(&mut conn);
        // The peer closed: not the application's mistake, so not a usage error.
        assert!(matches!(
            conn.send(Message::text("late")),
            Err(Error::ConnectionClosed)
        ));
        assert!(matches!(
            conn.send(Message::Ping(Bytes::new())),
            Err(Error::ConnectionClosed)
        ));
        // A ping after the close is not answered, and frames after the close are ignored.
        conn.receive(&client_frame(0x89, b"x"));
        assert!(events(&mut conn, Instant::now()).is_empty());
        assert!(drain(&mut conn).is_empty());
    }

    #[test]
    fn client_waits_for_the_server_to_close_tcp_then_gives_up() {
        let config = Config::default().close_timeout(Duration::from_secs(2));
        let mut client = Connection::new(Role::Client, config);
        let now = Instant::now();
        client
            .close(Some(CloseFrame::new(CloseCode::Normal, "done")), now)
            .unwrap();
        let out = drain(&mut client);
        assert_eq!(&out[..2], &[0x88, 0x86]);
        client.receive(&[0x88, 0x02, 0x03, 0xE8]);
        let got = events(&mut client, now);
        assert_eq!(
            got[0].as_ref().unwrap(),
            &Message::Close(Some(CloseFrame::new(CloseCode::Normal, "")))
        );
        assert!(
            !client.wants_close_transport(),
            "a client waits for the server to close TCP"
        );
        assert_eq!(client.poll_timeout(), Some(now + Duration::from_secs(2)));
        client.handle_timeout(now + Duration::from_secs(2));
        assert!(client.wants_close_transport());
        assert!(
            client.poll_event(now).is_none(),
            "a completed handshake is not an error"
        );
    }

    #[test]
    fn close_handshake_times_out_when_the_peer_never_answers() {
        let mut conn = server();
        let now = Instant::now();
        conn.close(None, now).unwrap();
        drain(&mut conn);
        assert!(!conn.wants_close_transport());
        let deadline = conn.poll_timeout().unwrap();
        assert_eq!(deadline, now + DEFAULT_CLOSE_TIMEOUT);
        conn.handle_timeout(deadline - Duration::from_millis(1));
        assert!(!conn.wants_close_transport());
        conn.handle_timeout(deadline);
        assert!(conn.wants_close_transport());
        assert!(matches!(
            conn.poll_event(deadline),
            Some(Err(Error::Timeout(TimeoutKind::CloseHandshake)))
        ));
    }

    #[test]
    fn messages_arriving_after_our_close_are_still_delivered() {
        let mut conn = server();
        let now = Instant::now();
        conn.close(None, now).unwrap();
        drain(&mut conn);
        let mut wire = client_frame(0x81, b"late");
        wire.extend(client_frame(0x88, &1000u16.to_be_bytes()));
        conn.receive(&wire);
        let got: Vec<Message> = events(&mut conn, now)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            got,
            vec![
                Message::text("late"),
                Message::Close(Some(CloseFrame::new(CloseCode::Normal, "")))
            ]
        );
        assert!(drain(&mut conn).is_empty(), "no second close frame");
        assert!(conn.wants_close_transport());
    }

    #[test]
    fn refuses_to_send_invalid_close_codes_and_long_reasons() {
        let mut conn = server();
        let now = Instant::now();
        let bad = conn.close(Some(CloseFrame::new(CloseCode::NoStatus, "")), now);
        assert!(matches!(
            bad,
            Err(Error::Usage(UsageError::InvalidCloseCode(1005)))
        ));
        let long = "x".repeat(124);
        let bad = conn.close(Some(CloseFrame::new(CloseCode::Normal, long.as_str())), now);
        assert!(matches!(
            bad,
            Err(Error::Usage(UsageError::CloseReasonTooLong(124)))
        ));
        assert!(!conn.is_close_sent());
    }

    #[test]
    fn message_size_limit_counts_all_fragments() {
        let mut conn = Connection::new(Role::Server, Config::default().max_message_size(10));
        let mut wire = client_frame(0x02, &[0; 6]);
        wire.extend(client_frame(0x80, &[0; 5]));
        let error = expect_failure(&mut conn, &wire, 1009);
        assert!(matches!(
            error,
            Error::LimitExceeded(LimitError {
                limit: Limit::MessageSize,
                actual: 11,
                max: 10
            })
        ));
        assert!(error.to_string().contains("max_message_size 10"), "{error}");
    }

    #[test]
    fn oversized_frame_is_refused_from_its_header() {
        let mut conn = Connection::new(Role::Server, Config::default().max_frame_size(100));
        let error = expect_failure(&mut conn, &[0x82, 0xFE, 0x00, 0x65, 1, 2, 3, 4], 1009);
        assert!(error.to_string().contains("max_frame_size 100"), "{error}");
    }

    #[test]
    fn header_declaring_2_pow_63_minus_1_bytes_is_a_bounded_1009() {
        let mut conn = server();
        let error = expect_failure(
            &mut conn,
            &[
                0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4,
            ],
            1009,
        );
        assert!(matches!(
            error,
            Error::LimitExceeded(LimitError {
                limit: Limit::FrameSize,
                ..
            })
        ));
        // The stream is undecodable past that header: the server closes once the close is out.
        assert!(conn.wants_close_transport());
    }

    #[test]
    fn fragment_limit_counts_empty_continuations() {
        let mut conn = Connection::new(Role::Server, Config::default().max_fragments(3));
        let mut wire = client_frame(0x01, b"");
        for _ in 0..3 {
            wire.extend(client_frame(0x00, b""));
        }
        let error = expect_failure(&mut conn, &wire, 1008);
        assert!(matches!(
            error,
            Error::LimitExceeded(LimitError {
                limit: Limit::Fragments,
                actual: 4,
                max: 3
            })
        ));
    }

    #[test]
    fn hundred_thousand_empty_continuations_cost_no_memory_and_end_in_1008() {
        let mut conn = Connection::new(Role::Server, Config::default().max_fragments(50_000));
        let now = Instant::now();
        conn.receive(&client_frame(0x02, b""));
        let empty = client_frame(0x00, b"");
        let mut result = None;
        for _ in 0..100_000 {
            conn.receive(&empty);
            if let Some(event) = conn.poll_event(now) {
                result = Some(event);
                break;
            }
            assert_eq!(conn.buffered_input(), 0);
        }
        let error = result.expect("the limit stops the flood").unwrap_err();
        assert_eq!(error.close_code(), Some(CloseCode::PolicyViolation));
    }

    #[test]
    fn peer_vanishing_is_an_error_distinct_from_a_clean_close() {
        let mut conn = server();
        let now = Instant::now();
        conn.receive(&client_frame(0x01, b"half"));
        conn.receive_eof();
        let got = events(&mut conn, now);
        assert!(
            matches!(got[..], [Err(Error::PeerVanished { mid_message: true })]),
            "{got:?}"
        );
        assert!(conn.wants_close_transport());

        // After a complete close handshake, end of file is not an error.
        let mut conn = server();
        conn.receive(&client_frame(0x88, b""));
        conn.receive_eof();
        let got = events(&mut conn, now);
        assert!(matches!(got[..], [Ok(Message::Close(None))]), "{got:?}");
    }

    #[test]
    fn eof_is_reported_after_the_messages_before_it() {
        let mut conn = server();
        conn.receive(&client_frame(0x81, b"last words"));
        conn.receive_eof();
        let got = events(&mut conn, Instant::now());
        assert_eq!(got[0].as_ref().unwrap(), &Message::text("last words"));
        assert!(matches!(
            got[1],
            Err(Error::PeerVanished { mid_message: false })
        ));
    }

    #[test]
    fn send_refuses_data_while_write_buffer_is_above_its_limit() {
        let mut conn = Connection::new(Role::Server, Config::default().max_write_buffer(100));
        conn.send(Message::binary(vec![0; 150])).unwrap(); // accepted: buffer was below
        assert!(conn.is_write_buffer_full());
        let refused = conn.send(Message::binary(vec![0; 1]));
        assert!(matches!(
            refused,
            Err(Error::Usage(UsageError::WriteBufferFull { limit: 100, .. }))
        ));
        conn.send(Message::Ping(Bytes::new())).unwrap(); // control frames still go
        drain(&mut conn);
        conn.send(Message::binary(vec![0; 1])).unwrap();
    }

    #[test]
    fn keepalive_pings_after_interval_and_fails_without_answer() {
        let config = Config::default().keepalive(Duration::from_secs(10), Duration::from_secs(5));
        let mut conn = Connection::new(Role::Server, config);
        let t0 = Instant::now();
        assert!(conn.poll_event(t0).is_none());
        assert_eq!(conn.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        conn.handle_timeout(t0 + Duration::from_secs(10));
        assert_eq!(drain(&mut conn), b"\x89\x09keepalive");
        assert_eq!(conn.poll_timeout(), Some(t0 + Duration::from_secs(15)));
        conn.handle_timeout(t0 + Duration::from_secs(15));
        assert!(conn.wants_close_transport());
        assert!(matches!(
            conn.poll_event(t0),
            Some(Err(Error::Timeout(TimeoutKind::Keepalive)))
        ));
    }

    #[test]
    fn keepalive_is_satisfied_by_any_frame_from_the_peer() {
        let config = Config::default().keepalive(Duration::from_secs(10), Duration::from_secs(5));
        let mut conn = Connection::new(Role::Server, config);
        let t0 = Instant::now();
        conn.poll_event(t0);
        conn.handle_timeout(t0 + Duration::from_secs(10));
        drain(&mut conn);
        conn.receive(&client_frame(0x8A, b"keepalive"));
        let t1 = t0 + Duration::from_secs(12);
        assert!(matches!(conn.poll_event(t1), Some(Ok(Message::Pong(_)))));
        conn.handle_timeout(t0 + Duration::from_secs(15));
        assert!(!conn.wants_close_transport());
        assert_eq!(conn.poll_timeout(), Some(t1 + Duration::from_secs(10)));
    }

    #[test]
    fn idle_timeout_closes_with_1001() {
        let config = Config::default()
            .no_keepalive()
            .idle_timeout(Some(Duration::from_secs(30)));
        let mut conn = Connection::new(Role::Server, config);
        let t0 = Instant::now();
        conn.poll_event(t0);
        conn.handle_timeout(t0 + Duration::from_secs(30));
        assert!(matches!(
            conn.poll_event(t0),
            Some(Err(Error::Timeout(TimeoutKind::Idle)))
        ));
        assert_eq!(drain(&mut conn), close_bytes(1001, "idle timeout"));
    }

    #[test]
    fn after_a_protocol_error_the_transport_closes_once_the_close_frame_is_written() {
        for role in [Role::Server, Role::Client] {
            let mut conn = Connection::new(role, Config::default());
            let wire = if role == Role::Server {
                client_frame(0x80, b"x")
            } else {
                vec![0x80, 0x01, b'x']
            };
            conn.receive(&wire);
            assert!(matches!(conn.poll_event(Instant::now()), Some(Err(_))));
            assert!(
                !conn.wants_close_transport(),
                "the close frame is not written yet"
            );
            drain(&mut conn);
            assert!(conn.wants_close_transport());
            // Whatever the peer sends afterwards is ignored.
            conn.receive(&client_frame(0x81, b"ignored"));
            assert!(events(&mut conn, Instant::now()).is_empty());
        }
    }

    #[test]
    fn an_invalid_close_from_the_peer_ends_reading_at_once() {
        let mut conn = server();
        expect_failure(&mut conn, &client_frame(0x88, &999u16.to_be_bytes()), 1002);
        assert!(conn.wants_close_transport());
    }

    // ----- property tests -----

    #[derive(Debug, Clone)]
    enum Step {
        Message {
            text: bool,
            payload: Vec<u8>,
            fragments: usize,
        },
        Ping(Vec<u8>),
    }

    fn arb_step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (any::<bool>(), ".{0,300}", proptest::collection::vec(any::<u8>(), 0..300), 1usize..5)
                .prop_map(|(text, s, bytes, fragments)| Step::Message {
                    text,
                    payload: if text { s.into_bytes() } else { bytes },
                    fragments,
                }),
            1 => proptest::collection::vec(any::<u8>(), 0..126).prop_map(Step::Ping),
        ]
    }

    fn wire_of(steps: &[Step]) -> Vec<u8> {
        let mut wire = Vec::new();
        for step in steps {
            match step {
                Step::Ping(payload) => wire.extend(client_frame(0x89, payload)),
                Step::Message {
                    text,
                    payload,
                    fragments,
                } => {
                    let size = payload.len().div_ceil(*fragments).max(1);
                    let pieces: Vec<&[u8]> = if payload.is_empty() {
                        vec![&[][..]]
                    } else {
                        payload.chunks(size).collect()
                    };
                    for (i, piece) in pieces.iter().enumerate() {
                        let op = if i > 0 {
                            0
                        } else if *text {
                            1
                        } else {
                            2
                        };
                        let fin = if i + 1 == pieces.len() { 0x80 } else { 0 };
                        wire.extend(client_frame(fin | op, piece));
                    }
                }
            }
        }
        wire
    }

    fn expected_of(steps: &[Step]) -> Vec<Message> {
        steps
            .iter()
            .map(|step| match step {
                Step::Ping(payload) => Message::Ping(Bytes::from(payload.clone())),
                Step::Message {
                    text: true,
                    payload,
                    ..
                } => Message::text(String::from_utf8(payload.clone()).unwrap()),
                Step::Message { payload, .. } => Message::binary(payload.clone()),
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn valid_traffic_split_anywhere_gives_the_same_messages(
            steps in proptest::collection::vec(arb_step(), 1..8),
            cuts in proptest::collection::vec(any::<usize>(), 0..30),
        ) {
            let wire = wire_of(&steps);
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
            points.extend([0, wire.len()]);
            points.sort_unstable();
            let mut conn = server();
            let now = Instant::now();
            let mut got = Vec::new();
            for pair in points.windows(2) {
                conn.receive(&wire[pair[0]..pair[1]]);
                for event in events(&mut conn, now) {
                    got.push(event.unwrap());
                }
            }
            prop_assert_eq!(got, expected_of(&steps));
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_errors_queue_a_valid_close(
            data in proptest::collection::vec(any::<u8>(), 0..2048),
            cuts in proptest::collection::vec(any::<usize>(), 0..10),
            client in any::<bool>(),
        ) {
            let role = if client { Role::Client } else { Role::Server };
            let config = Config::default().max_message_size(512).max_frame_size(256).max_fragments(8);
            let mut conn = Connection::new(role, config);
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
            points.extend([0, data.len()]);
            points.sort_unstable();
            let now = Instant::now();
            let mut failed_code = None;
            for pair in points.windows(2) {
                conn.receive(&data[pair[0]..pair[1]]);
                while let Some(event) = conn.poll_event(now) {
                    match event {
                        Ok(message) => prop_assert!(message.payload().len() <= 512),
                        Err(error) => {
                            prop_assert!(failed_code.is_none(), "one error only");
                            let code = error.close_code().expect("peer errors carry a close code");
                            prop_assert!(code.is_allowed_on_wire());
                            failed_code = Some(code);
                        }
                    }
                }
                prop_assert!(conn.buffered_input() <= 512 + data.len());
            }
            if let Some(code) = failed_code {
                // The last frame queued is a close frame carrying the error's code.
                let out = drain(&mut conn);
                let mut decoder = duplex_codec::Decoder::new(duplex_codec::Masking::Any, 1 << 20);
                let mut buf = BytesMut::from(&out[..]);
                let mut last = None;
                while let Some(item) = decoder.decode(&mut buf).unwrap() {
                    if let duplex_codec::Decoded::Frame { header, payload, .. } = item {
                        last = Some((header, payload));
                    }
                }
                let (header, payload) = last.expect("a close frame");
                prop_assert_eq!(header.opcode, OpCode::Close);
                // The decoder has already unmasked it.
                prop_assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), code.as_u16());
            }
        }
    }

    // ----- permessage-deflate -----

    fn deflate_pair(params: DeflateParams) -> (Connection, Connection) {
        let mut server = Connection::new(Role::Server, Config::default());
        let mut client = Connection::new(Role::Client, Config::default());
        server.enable_deflate(params);
        client.enable_deflate(params);
        (server, client)
    }

    /// Moves all of `from`'s output into `to` and returns `to`'s events.
    fn transfer(from: &mut Connection, to: &mut Connection) -> Vec<Message> {
        let wire = drain(from);
        to.receive(&wire);
        events(to, Instant::now())
            .into_iter()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn compressed_messages_round_trip_in_both_directions_with_rsv1() {
        for params in [
            DeflateParams::default(),
            DeflateParams {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_max_window_bits: 10,
                client_max_window_bits: 9,
            },
        ] {
            let (mut server, mut client) = deflate_pair(params);
            let text = "a text message that repeats, repeats, repeats, repeats".repeat(20);
            for _ in 0..3 {
                server.send(Message::text(text.as_str())).unwrap();
                assert_eq!(
                    server.pending_output()[0],
                    0xC1,
                    "RSV1 and FIN on a text frame"
                );
                assert!(server.output_len() < text.len() / 4);
                assert_eq!(
                    transfer(&mut server, &mut client),
                    vec![Message::text(text.as_str())]
                );
                client.send(Message::binary(vec![9u8; 10_000])).unwrap();
                assert_eq!(
                    transfer(&mut client, &mut server),
                    vec![Message::binary(vec![9u8; 10_000])]
                );
            }
        }
    }

    #[test]
    fn short_and_explicitly_uncompressed_messages_go_without_rsv1() {
        let (mut server, mut client) = deflate_pair(DeflateParams::default());
        server.send(Message::text("tiny")).unwrap();
        assert_eq!(server.pending_output()[0], 0x81);
        server
            .send_uncompressed(Message::binary(vec![0u8; 1000]))
            .unwrap();
        let got = transfer(&mut server, &mut client);
        assert_eq!(
            got,
            vec![Message::text("tiny"), Message::binary(vec![0u8; 1000])]
        );
    }

    #[test]
    fn compressed_message_may_be_fragmented_with_rsv1_on_the_first_frame_only() {
        let mut server = Connection::new(Role::Server, Config::default().send_frame_size(Some(10)));
        let mut client = Connection::new(Role::Client, Config::default());
        server.enable_deflate(DeflateParams::default());
        client.enable_deflate(DeflateParams::default());
        let text = "fragmented and compressed ".repeat(40);
        server.send(Message::text(text.as_str())).unwrap();
        let wire = drain(&mut server);
        assert_eq!(wire[0], 0x41, "RSV1, no FIN, text");
        assert_eq!(wire[12], 0x00, "the continuation has no RSV1");
        client.receive(&wire);
        assert_eq!(
            events(&mut client, Instant::now())[0].as_ref().unwrap(),
            &Message::text(text.as_str())
        );
    }

    #[test]
    fn rsv1_on_a_continuation_or_control_frame_is_a_protocol_error() {
        let mut conn = server();
        conn.enable_deflate(DeflateParams::default());
        let mut wire = client_frame(0x01, b"a");
        wire.extend(client_frame(0xC0, b"b"));
        expect_failure(&mut conn, &wire, 1002);
        let mut conn = server();
        conn.enable_deflate(DeflateParams::default());
        expect_failure(&mut conn, &client_frame(0xC9, b""), 1002);
    }

    #[test]
    fn invalid_deflate_data_is_1007() {
        let mut conn = server();
        conn.enable_deflate(DeflateParams::default());
        let error = expect_failure(&mut conn, &client_frame(0xC2, &[0xFF; 8]), 1007);
        assert!(matches!(
            error,
            Error::Protocol(ProtocolError::InvalidCompressedData)
        ));
    }

    #[test]
    fn decompression_bomb_stops_at_the_limit_with_1009() {
        let mut client = Connection::new(Role::Client, Config::default());
        client.enable_deflate(DeflateParams::default());
        client.send(Message::binary(vec![0u8; 1 << 20])).unwrap();
        let bomb = drain(&mut client);
        assert!(
            bomb.len() < 4096,
            "1 MiB of zeros compresses to {} bytes",
            bomb.len()
        );
        let mut server = Connection::new(
            Role::Server,
            Config::default().max_decompressed_size(64 << 10),
        );
        server.enable_deflate(DeflateParams::default());
        let error = expect_failure(&mut server, &bomb, 1009);
        assert!(matches!(
            error,
            Error::LimitExceeded(LimitError {
                limit: Limit::DecompressedSize,
                ..
            })
        ));
        assert!(server.buffered_input() <= (64 << 10) + 1);
    }

    #[test]
    fn invalid_utf8_inside_a_compressed_message_fails_fast() {
        let mut client = Connection::new(Role::Client, Config::default());
        client.enable_deflate(DeflateParams::default());
        // Compress bytes that are not UTF-8 and send them as a text message.
        let bad = [
            &b"valid prefix "[..],
            &[0xF4, 0x90, 0x80, 0x80],
            &[b'x'; 100],
        ]
        .concat();
        client.send(Message::binary(bad)).unwrap();
        let mut wire = drain(&mut client);
        wire[0] = (wire[0] & 0xF0) | 0x01; // binary -> text
        let mut server = server();
        server.enable_deflate(DeflateParams::default());
        expect_failure(&mut server, &wire, 1007);
    }

    #[test]
    fn prepared_compressed_frame_is_shared_and_keeps_contexts_in_step() {
        let prepared = PreparedMessage::new(Message::text(
            "broadcast text, broadcast text, broadcast text",
        ))
        .unwrap();
        let (mut a, mut client_a) = deflate_pair(DeflateParams::default());
        let (mut b, mut client_b) = deflate_pair(DeflateParams::default());
        // Build up context on `a` first, then send the shared frame, then more messages.
        a.send(Message::text("context context context context context"))
            .unwrap();
        transfer(&mut a, &mut client_a);
        a.send_prepared(&prepared).unwrap();
        b.send_prepared(&prepared).unwrap();
        assert_eq!(
            a.pending_output().as_ptr(),
            b.pending_output().as_ptr(),
            "one shared frame"
        );
        assert_eq!(a.pending_output()[0], 0xC1);
        assert_eq!(
            transfer(&mut a, &mut client_a),
            vec![prepared.message().clone()]
        );
        assert_eq!(
            transfer(&mut b, &mut client_b),
            vec![prepared.message().clone()]
        );
        for conn in [(&mut a, &mut client_a), (&mut b, &mut client_b)] {
            conn.0
                .send(Message::text("context context context context context"))
                .unwrap();
            assert_eq!(
                transfer(conn.0, conn.1),
                vec![Message::text("context context context context context")]
            );
        }
    }

    #[test]
    fn shrinking_buffers_between_fragments_keeps_the_inflate_stream() {
        let params = DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..DeflateParams::default()
        };
        let mut client = Connection::new(Role::Client, Config::default().send_frame_size(Some(7)));
        client.enable_deflate(params);
        let mut server = Connection::new(Role::Server, Config::default());
        server.enable_deflate(params);
        let text = "fragmented, compressed, and read in pieces ".repeat(30);
        for _ in 0..2 {
            client.send(Message::text(text.as_str())).unwrap();
            let wire = drain(&mut client);
            let mut got = Vec::new();
            for piece in wire.chunks(5) {
                server.receive(piece);
                got.extend(
                    events(&mut server, Instant::now())
                        .into_iter()
                        .map(Result::unwrap),
                );
                server.shrink_buffers(); // as an adapter does whenever its input is drained
            }
            assert_eq!(got, vec![Message::text(text.as_str())]);
        }
    }

    #[test]
    fn control_frames_interleave_with_a_compressed_fragmented_message() {
        let mut client = Connection::new(Role::Client, Config::default().send_frame_size(Some(4)));
        client.enable_deflate(DeflateParams::default());
        let text = "interleaved with pings, interleaved with pings ".repeat(20);
        client.send(Message::text(text.as_str())).unwrap();
        let wire = drain(&mut client);
        // Split the client's frames and put a ping between every two of them.
        let mut decoder = duplex_codec::Decoder::new(duplex_codec::Masking::Any, 1 << 20);
        let mut buf = BytesMut::from(&wire[..]);
        let mut interleaved = Vec::new();
        let mut frames = 0;
        let mut start = 0;
        while let Some(item) = decoder.decode(&mut buf).unwrap() {
            if let duplex_codec::Decoded::Frame { complete: true, .. } = item {
                let end = wire.len() - buf.len();
                interleaved.extend_from_slice(&wire[start..end]);
                interleaved.extend(client_frame(0x89, &[frames as u8]));
                start = end;
                frames += 1;
            }
        }
        assert!(frames > 3, "{frames} frames");
        let mut server = server();
        server.enable_deflate(DeflateParams::default());
        server.receive(&interleaved);
        let got: Vec<Message> = events(&mut server, Instant::now())
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got.len(), frames + 1);
        assert_eq!(
            got.iter().filter(|m| matches!(m, Message::Ping(_))).count(),
            frames
        );
        assert_eq!(
            got[frames - 1],
            Message::text(text.as_str()),
            "the message ends before the last ping"
        );
    }

    #[test]
    fn a_close_goes_through_close_with_the_time_not_send() {
        let mut conn = server();
        assert!(matches!(
            conn.send(Message::Close(Some(CloseFrame::new(CloseCode::Normal, "")))),
            Err(Error::Usage(UsageError::CloseNeedsTime))
        ));
        assert_eq!(conn.state(), State::Open);
        assert_eq!(conn.output_len(), 0);
    }
}
