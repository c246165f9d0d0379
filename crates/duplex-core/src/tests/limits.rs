//! The limits a peer cannot push past (message, frame and fragment counts; the write
//! buffer), each failing with its close code and bounding memory.

use super::*;

#[test]
fn message_size_limit_counts_all_fragments() {
    for role in ROLES {
        let mut conn = Connection::new(role, EngineConfig::default().max_message_size(10));
        let mut wire = peer_frame(role, 0x02, &[0; 6]);
        wire.extend(peer_frame(role, 0x80, &[0; 5]));
        let error = expect_failure(&mut conn, &wire, 1009);
        assert!(
            matches!(
                error,
                Error::LimitExceeded(LimitError {
                    limit: Limit::MessageSize,
                    actual: 11,
                    max: 10
                })
            ),
            "{role:?}: {error:?}"
        );
        assert!(
            error.to_string().contains("max_message_size 10"),
            "{role:?}: {error}"
        );
    }
}

#[test]
fn oversized_frame_is_refused_from_its_header() {
    for role in ROLES {
        let mut conn = Connection::new(role, EngineConfig::default().max_frame_size(100));
        // 101 in the 16-bit length field, no payload sent.
        let header = peer_header_raw(role, 0x82, &[0x7E, 0x00, 0x65]);
        let error = expect_failure(&mut conn, &header, 1009);
        assert!(
            error.to_string().contains("max_frame_size 100"),
            "{role:?}: {error}"
        );
    }
}

#[test]
fn header_declaring_2_pow_63_minus_1_bytes_is_a_bounded_1009() {
    for role in ROLES {
        let mut conn = connection(role);
        let header = peer_header_raw(
            role,
            0x82,
            &[0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
        );
        let error = expect_failure(&mut conn, &header, 1009);
        assert!(
            matches!(
                error,
                Error::LimitExceeded(LimitError {
                    limit: Limit::FrameSize,
                    ..
                })
            ),
            "{role:?}: {error:?}"
        );
        // The stream is undecodable past that header: the transport closes once the
        // close is out.
        assert!(conn.is_transport_ending(), "{role:?}");
    }
}

#[test]
fn fragment_limit_counts_empty_continuations() {
    for role in ROLES {
        let mut conn = Connection::new(role, EngineConfig::default().max_fragments(3));
        let mut wire = peer_frame(role, 0x01, b"");
        for _ in 0..3 {
            wire.extend(peer_frame(role, 0x00, b""));
        }
        let error = expect_failure(&mut conn, &wire, 1008);
        assert!(
            matches!(
                error,
                Error::LimitExceeded(LimitError {
                    limit: Limit::Fragments,
                    actual: 4,
                    max: 3
                })
            ),
            "{role:?}: {error:?}"
        );
    }
}

#[test]
fn hundred_thousand_empty_continuations_cost_no_memory_and_end_in_1008() {
    for role in ROLES {
        let mut conn = Connection::new(role, EngineConfig::default().max_fragments(50_000));
        let now = Instant::now();
        conn.receive(&peer_frame(role, 0x02, b""));
        let empty = peer_frame(role, 0x00, b"");
        let mut result = None;
        for _ in 0..100_000 {
            conn.receive(&empty);
            if let Some(event) = conn.poll_event(now) {
                result = Some(event);
                break;
            }
            assert_eq!(conn.buffered_input(), 0, "{role:?}");
        }
        let error = result
            .unwrap_or_else(|| panic!("{role:?}: the limit stops the flood"))
            .unwrap_err();
        assert_eq!(
            error.close_code(),
            Some(CloseCode::PolicyViolation),
            "{role:?}"
        );
    }
}

#[test]
fn send_refuses_data_while_write_buffer_is_above_its_limit() {
    for role in ROLES {
        let mut conn = Connection::new(role, EngineConfig::default().max_write_buffer(100));
        conn.send(Message::binary(vec![0; 150])).unwrap(); // accepted: buffer was below
        assert!(conn.is_write_buffer_full(), "{role:?}");
        let refused = conn.send(Message::binary(vec![0; 1]));
        assert!(
            matches!(
                refused,
                Err(Error::Usage(UsageError::WriteBufferFull { limit: 100, .. }))
            ),
            "{role:?}: {refused:?}"
        );
        conn.send(Message::Ping(Bytes::new())).unwrap(); // control frames still go
        drain(&mut conn);
        conn.send(Message::binary(vec![0; 1])).unwrap();
    }
}
