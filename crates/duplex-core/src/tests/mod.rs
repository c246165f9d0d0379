//! One test per rule of RFC 6455 the engine enforces, bytes in and events and bytes out.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use duplex_codec::{FrameHeader, OpCode, encode_frame};
use proptest::prelude::*;

use crate::*;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A frame as a client sends it (masked).
fn client_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    let opcode = OpCode::from_u8(first_byte & 0x0F).unwrap();
    let mut header = FrameHeader::new(opcode, payload.len() as u64);
    header.fin = first_byte & 0x80 != 0;
    header.rsv1 = first_byte & 0x40 != 0;
    header.rsv2 = first_byte & 0x20 != 0;
    header.rsv3 = first_byte & 0x10 != 0;
    header.mask = Some(KEY);
    let mut out = BytesMut::new();
    encode_frame(&header, payload, &mut out);
    out.to_vec()
}

fn server() -> Connection {
    Connection::new(Role::Server, Config::default())
}

fn events(conn: &mut Connection, now: Instant) -> Vec<Result<Message, Error>> {
    let mut out = Vec::new();
    while let Some(event) = conn.poll_event(now) {
        out.push(event);
    }
    out
}

fn drain(conn: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    while conn.output_len() > 0 {
        let chunk = conn.pending_output().to_vec();
        conn.consume_output(chunk.len());
        out.extend_from_slice(&chunk);
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
    let now = Instant::now();
    conn.receive(wire);
    let mut results = events(conn, now);
    let error = results.pop().expect("an event").expect_err("an error");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(
        error.close_code().map(CloseCode::as_u16),
        Some(code),
        "{error}"
    );
    let mut out = drain(conn);
    assert_eq!(out[0], 0x88, "a close frame is queued: {out:x?}");
    if out[1] & 0x80 != 0 {
        let key = [out[2], out[3], out[4], out[5]];
        out.drain(2..6);
        duplex_codec::apply_mask(&mut out[2..], key, 0);
    }
    assert_eq!(u16::from_be_bytes([out[2], out[3]]), code);
    error
}

#[test]
fn rfc_5_7_masked_hello_is_a_text_message() {
    let mut conn = server();
    conn.receive(&[
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ]);
    let got = events(&mut conn, Instant::now());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].as_ref().unwrap(), &Message::text("Hello"));
}

#[test]
fn rfc_5_7_fragmented_hel_lo_is_joined() {
    let mut conn = Connection::new(Role::Client, Config::default());
    conn.receive(&[0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f]);
    let got = events(&mut conn, Instant::now());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].as_ref().unwrap(), &Message::text("Hello"));
}

#[test]
fn server_sends_unmasked_frames_byte_exact() {
    let mut conn = server();
    conn.send(Message::text("Hello")).unwrap();
    conn.send(Message::binary(vec![0u8; 256])).unwrap();
    let out = drain(&mut conn);
    assert_eq!(&out[..7], &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    assert_eq!(&out[7..11], &[0x82, 0x7E, 0x01, 0x00]);
    assert_eq!(out.len(), 11 + 256);
}

#[test]
fn client_masks_every_frame_with_a_fresh_key() {
    let mut conn = Connection::new(Role::Client, Config::default());
    conn.send(Message::text("Hello")).unwrap();
    conn.send(Message::text("Hello")).unwrap();
    let out = drain(&mut conn);
    assert_eq!(out.len(), 22);
    let mut keys = Vec::new();
    for frame in out.chunks(11) {
        assert_eq!(&frame[..2], &[0x81, 0x85]);
        let key = [frame[2], frame[3], frame[4], frame[5]];
        let mut payload = frame[6..].to_vec();
        duplex_codec::apply_mask(&mut payload, key, 0);
        assert_eq!(payload, b"Hello");
        keys.push(key);
    }
    assert_ne!(keys[0], keys[1]);
}

#[test]
fn control_frames_may_interleave_with_fragments() {
    let mut conn = server();
    let mut wire = client_frame(0x01, b"Hel");
    wire.extend(client_frame(0x89, b"p"));
    wire.extend(client_frame(0x80, b"lo"));
    conn.receive(&wire);
    let got: Vec<Message> = events(&mut conn, Instant::now())
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, vec![Message::Ping("p".into()), Message::text("Hello")]);
    assert_eq!(drain(&mut conn), vec![0x8A, 0x01, b'p']);
}

#[test]
fn rejects_continuation_without_start() {
    let error = expect_failure(&mut server(), &client_frame(0x80, b"x"), 1002);
    assert!(matches!(
        error,
        Error::Protocol(ProtocolError::UnexpectedContinuation)
    ));
}

#[test]
fn rejects_new_data_frame_inside_fragmented_message() {
    let mut wire = client_frame(0x01, b"a");
    wire.extend(client_frame(0x81, b"b"));
    let error = expect_failure(&mut server(), &wire, 1002);
    assert!(matches!(
        error,
        Error::Protocol(ProtocolError::ExpectedContinuation(OpCode::Text))
    ));
}

#[test]
fn rejects_fragmented_control_frame() {
    expect_failure(&mut server(), &[0x09, 0x80, 0, 0, 0, 0], 1002);
}

#[test]
fn rejects_control_frame_with_more_than_125_bytes() {
    expect_failure(&mut server(), &[0x89, 0xFE, 0, 126, 0, 0, 0, 0], 1002);
}

#[test]
fn rejects_reserved_bits_without_extension() {
    for first in [0xC1u8, 0xA1, 0x91, 0xF1] {
        let error = expect_failure(&mut server(), &client_frame(first, b"x"), 1002);
        assert!(matches!(
            error,
            Error::Protocol(ProtocolError::ReservedBits { .. })
        ));
    }
}

#[test]
fn rejects_reserved_opcodes() {
    for op in [3u8, 4, 5, 6, 7, 11, 12, 13, 14, 15] {
        expect_failure(&mut server(), &[0x80 | op, 0x80, 0, 0, 0, 0], 1002);
    }
}

#[test]
fn server_rejects_unmasked_frame_and_client_rejects_masked_frame() {
    expect_failure(&mut server(), &[0x81, 0x00], 1002);
    let mut client = Connection::new(Role::Client, Config::default());
    expect_failure(&mut client, &client_frame(0x81, b""), 1002);
}

#[test]
fn answers_ping_with_pong_carrying_the_same_payload() {
    let mut conn = server();
    conn.receive(&client_frame(0x89, b"payload"));
    let got = events(&mut conn, Instant::now());
    assert_eq!(got[0].as_ref().unwrap(), &Message::Ping("payload".into()));
    assert_eq!(drain(&mut conn), b"\x8a\x07payload");
}

#[test]
fn auto_pong_can_be_turned_off() {
    let mut conn = Connection::new(Role::Server, Config::default().auto_pong(false));
    conn.receive(&client_frame(0x89, b"x"));
    assert_eq!(events(&mut conn, Instant::now()).len(), 1);
    assert!(drain(&mut conn).is_empty());
}

#[test]
fn accepts_unsolicited_pong() {
    let mut conn = server();
    conn.receive(&client_frame(0x8A, b"beat"));
    let got = events(&mut conn, Instant::now());
    assert_eq!(got[0].as_ref().unwrap(), &Message::Pong("beat".into()));
    assert!(drain(&mut conn).is_empty());
}

#[test]
fn ping_flood_keeps_only_the_latest_pong_pending() {
    let mut conn = server();
    let now = Instant::now();
    for i in 0..10_000u32 {
        conn.receive(&client_frame(0x89, &i.to_be_bytes()));
        for event in events(&mut conn, now) {
            event.unwrap();
        }
    }
    // The first 16 pongs were queued; the rest collapse into one pending pong.
    assert_eq!(conn.output_len(), 16 * 6);
    let out = drain(&mut conn);
    let mut expected = Vec::new();
    for i in (0..16u32).chain([9_999]) {
        expected.extend([0x8A, 4]);
        expected.extend(i.to_be_bytes());
    }
    assert_eq!(out, expected);
}

#[test]
fn a_few_pings_in_a_row_each_get_their_pong() {
    // Autobahn 2.10: ten pings before any output is written get ten pongs.
    let mut conn = server();
    let mut wire = Vec::new();
    for i in 0..10u8 {
        wire.extend(client_frame(0x89, &[i]));
    }
    conn.receive(&wire);
    assert_eq!(events(&mut conn, Instant::now()).len(), 10);
    let out = drain(&mut conn);
    let expected: Vec<u8> = (0..10u8).flat_map(|i| [0x8A, 1, i]).collect();
    assert_eq!(out, expected);
}

#[test]
fn fails_fast_on_invalid_utf8_inside_one_frame() {
    // Autobahn 6.4.3 style: one text frame whose payload arrives in three reads; the
    // invalid sequence is in the second read and must be reported then.
    let payload = ["κόσμε".as_bytes(), &[0xF4, 0x90, 0x80, 0x80], b"edited"].concat();
    let wire = client_frame(0x81, &payload);
    let mut conn = server();
    let now = Instant::now();
    let first_read = 6 + 10; // header + "κόσμε"
    conn.receive(&wire[..first_read]);
    assert!(events(&mut conn, now).is_empty());
    conn.receive(&wire[first_read..first_read + 2]);
    let got = events(&mut conn, now);
    assert_eq!(got.len(), 1);
    let error = got.into_iter().next().unwrap().unwrap_err();
    assert!(matches!(
        error,
        Error::Protocol(ProtocolError::InvalidUtf8 {
            in_close_reason: false
        })
    ));
    assert_eq!(
        drain(&mut conn)[..4],
        close_bytes(1007, "invalid UTF-8")[..4]
    );
}

#[test]
fn rejects_invalid_utf8_split_across_fragments() {
    let mut wire = client_frame(0x01, &[0xCE]);
    wire.extend(client_frame(0x80, &[0x20]));
    expect_failure(&mut server(), &wire, 1007);
}

#[test]
fn accepts_code_point_split_across_fragments() {
    let mut conn = server();
    let mut wire = client_frame(0x01, &[0xCE]);
    wire.extend(client_frame(0x80, &[0xBA]));
    conn.receive(&wire);
    assert_eq!(
        events(&mut conn, Instant::now())[0].as_ref().unwrap(),
        &Message::text("κ")
    );
}

#[test]
fn rejects_text_message_ending_inside_a_code_point() {
    expect_failure(
        &mut server(),
        &client_frame(0x81, &[0xCE, 0xBA, 0xE1]),
        1007,
    );
}

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
        assert!(matches!(error, Error::Protocol(ProtocolError::InvalidCloseCode(c)) if c == code));
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
fn refuses_control_payload_over_125_bytes() {
    let mut conn = server();
    let result = conn.send(Message::Ping(Bytes::from(vec![0; 126])));
    assert!(matches!(
        result,
        Err(Error::Usage(UsageError::ControlPayloadTooLong(126)))
    ));
    conn.send(Message::Ping(Bytes::from(vec![0; 125]))).unwrap();
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
fn automatic_fragmentation_splits_outgoing_messages() {
    let mut conn = Connection::new(Role::Server, Config::default().send_frame_size(Some(2)));
    conn.send(Message::text("Hello")).unwrap();
    assert_eq!(drain(&mut conn), b"\x01\x02He\x00\x02ll\x80\x01o");
}

#[test]
fn prepared_message_is_shared_between_server_connections() {
    let prepared = PreparedMessage::new(Message::binary(vec![7u8; 4096])).unwrap();
    let mut conn = server();
    conn.send_prepared(&prepared).unwrap();
    assert_eq!(conn.pending_output().as_ptr(), prepared.frame().as_ptr());
    let mut client = Connection::new(Role::Client, Config::default());
    client.send_prepared(&prepared).unwrap();
    assert_eq!(client.output_len(), 4096 + 8);
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

#[test]
fn input_buffer_is_an_alternative_to_receive() {
    let config = Config::default().keepalive(Duration::from_secs(10), Duration::from_secs(5));
    let mut conn = Connection::new(Role::Server, config);
    let t0 = Instant::now();
    let wire = client_frame(0x81, b"read in place");
    let (a, b) = wire.split_at(5);
    conn.input_buffer(64).extend_from_slice(a);
    assert!(conn.poll_event(t0).is_none());
    conn.input_buffer(64).extend_from_slice(b);
    let t1 = t0 + Duration::from_secs(3);
    assert_eq!(
        conn.poll_event(t1).unwrap().unwrap(),
        Message::text("read in place")
    );
    // Bytes that arrived count as activity for keepalive; a read that added nothing does not.
    assert_eq!(conn.poll_timeout(), Some(t1 + Duration::from_secs(10)));
    conn.input_buffer(64);
    assert!(conn.poll_event(t1 + Duration::from_secs(4)).is_none());
    assert_eq!(conn.poll_timeout(), Some(t1 + Duration::from_secs(10)));
    // After the close, what is read into it is dropped.
    conn.input_buffer(64)
        .extend_from_slice(&client_frame(0x88, b""));
    assert!(matches!(
        conn.poll_event(t1),
        Some(Ok(Message::Close(None)))
    ));
    conn.input_buffer(64).extend_from_slice(&[0u8; 1000]);
    assert!(conn.poll_event(t1).is_none());
    assert_eq!(conn.buffered_input(), 0);
}

mod lifecycle;
mod sim;
