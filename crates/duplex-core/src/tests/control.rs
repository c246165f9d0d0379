//! Control frames (RFC 6455 section 5.5): their size and fragmentation rules, pings
//! answered with pongs, unsolicited pongs, and a bound on the pongs a ping flood queues.

use super::*;

#[test]
fn rejects_fragmented_control_frame() {
    for role in ROLES {
        let error = expect_failure(&mut connection(role), &peer_header(role, 0x09, 0), 1002);
        assert!(
            matches!(
                error,
                Error::Protocol(ProtocolError::Frame(DecodeError::FragmentedControlFrame(
                    OpCode::Ping
                )))
            ),
            "{role:?}: {error:?}"
        );
    }
}

#[test]
fn rejects_control_frame_with_more_than_125_bytes() {
    for role in ROLES {
        // Refused from the header alone: 126 in the 16-bit length, no payload sent.
        let error = expect_failure(
            &mut connection(role),
            &peer_header_raw(role, 0x89, &[0x7E, 0, 126]),
            1002,
        );
        assert!(
            matches!(
                error,
                Error::Protocol(ProtocolError::Frame(DecodeError::ControlFrameTooLong {
                    len: 126,
                    ..
                }))
            ),
            "{role:?}: {error:?}"
        );
    }
}

#[test]
fn refuses_control_payload_over_125_bytes() {
    for role in ROLES {
        let mut conn = connection(role);
        let result = conn.send(Message::Ping(Bytes::from(vec![0; 126])));
        assert!(
            matches!(
                result,
                Err(Error::Usage(UsageError::ControlPayloadTooLong(126)))
            ),
            "{role:?}: {result:?}"
        );
        conn.send(Message::Ping(Bytes::from(vec![0; 125]))).unwrap();
    }
}

#[test]
fn answers_ping_with_pong_carrying_the_same_payload() {
    for role in ROLES {
        let mut conn = connection(role);
        conn.receive(&peer_frame(role, 0x89, b"payload"));
        let got = events(&mut conn, Instant::now());
        assert_eq!(
            got[0].as_ref().unwrap(),
            &Message::Ping("payload".into()),
            "{role:?}"
        );
        assert_eq!(drain(&mut conn), b"\x8a\x07payload", "{role:?}");
    }
}

#[test]
fn auto_pong_can_be_turned_off() {
    for role in ROLES {
        let mut conn = Connection::new(role, EngineConfig::default().auto_pong(false));
        conn.receive(&peer_frame(role, 0x89, b"x"));
        assert_eq!(events(&mut conn, Instant::now()).len(), 1, "{role:?}");
        assert!(drain(&mut conn).is_empty(), "{role:?}");
    }
}

#[test]
fn accepts_unsolicited_pong() {
    for role in ROLES {
        let mut conn = connection(role);
        conn.receive(&peer_frame(role, 0x8A, b"beat"));
        let got = events(&mut conn, Instant::now());
        assert_eq!(
            got[0].as_ref().unwrap(),
            &Message::Pong("beat".into()),
            "{role:?}"
        );
        assert!(drain(&mut conn).is_empty(), "{role:?}");
    }
}

#[test]
fn ping_flood_keeps_only_the_latest_pong_pending() {
    for role in ROLES {
        let mut conn = connection(role);
        let now = Instant::now();
        for i in 0..10_000u32 {
            conn.receive(&peer_frame(role, 0x89, &i.to_be_bytes()));
            for event in events(&mut conn, now) {
                event.unwrap();
            }
        }
        // The first 16 pongs were queued; the rest collapse into one pending pong.
        assert_eq!(
            conn.output_len(),
            16 * (6 + mask_overhead(role)),
            "{role:?}"
        );
        let out = drain(&mut conn);
        let mut expected = Vec::new();
        for i in (0..16u32).chain([9_999]) {
            expected.extend([0x8A, 4]);
            expected.extend(i.to_be_bytes());
        }
        assert_eq!(out, expected, "{role:?}");
    }
}

#[test]
fn a_few_pings_in_a_row_each_get_their_pong() {
    // Autobahn 2.10: ten pings before any output is written get ten pongs.
    for role in ROLES {
        let mut conn = connection(role);
        let mut wire = Vec::new();
        for i in 0..10u8 {
            wire.extend(peer_frame(role, 0x89, &[i]));
        }
        conn.receive(&wire);
        assert_eq!(events(&mut conn, Instant::now()).len(), 10, "{role:?}");
        let out = drain(&mut conn);
        let expected: Vec<u8> = (0..10u8).flat_map(|i| [0x8A, 1, i]).collect();
        assert_eq!(out, expected, "{role:?}");
    }
}
