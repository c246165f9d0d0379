//! Text must be UTF-8 (RFC 6455 section 8.1), checked as it arrives so a bad sequence
//! fails the connection at once, across frame and read boundaries.

use super::*;

#[test]
fn fails_fast_on_invalid_utf8_inside_one_frame() {
    // Autobahn 6.4.3 style: one text frame whose payload arrives in three reads; the
    // invalid sequence is in the second read and must be reported then.
    let payload = ["κόσμε".as_bytes(), &[0xF4, 0x90, 0x80, 0x80], b"edited"].concat();
    for role in ROLES {
        let wire = peer_frame(role, 0x81, &payload);
        let mut conn = connection(role);
        let now = Instant::now();
        let header = wire.len() - payload.len(); // 6 to a server, 2 to a client
        let first_read = header + 10; // header + "κόσμε"
        conn.receive(&wire[..first_read]);
        assert!(events(&mut conn, now).is_empty(), "{role:?}");
        conn.receive(&wire[first_read..first_read + 2]);
        let got = events(&mut conn, now);
        assert_eq!(got.len(), 1, "{role:?}");
        let error = got.into_iter().next().unwrap().unwrap_err();
        assert!(
            matches!(
                error,
                Error::Protocol(ProtocolError::InvalidUtf8 {
                    in_close_reason: false
                })
            ),
            "{role:?}: {error:?}"
        );
        assert_eq!(
            drain(&mut conn)[..4],
            close_bytes(1007, "invalid UTF-8")[..4],
            "{role:?}"
        );
    }
}

#[test]
fn rejects_invalid_utf8_split_across_fragments() {
    for role in ROLES {
        let mut wire = peer_frame(role, 0x01, &[0xCE]);
        wire.extend(peer_frame(role, 0x80, &[0x20]));
        expect_failure(&mut connection(role), &wire, 1007);
    }
}

#[test]
fn accepts_code_point_split_across_fragments() {
    for role in ROLES {
        let mut conn = connection(role);
        let mut wire = peer_frame(role, 0x01, &[0xCE]);
        wire.extend(peer_frame(role, 0x80, &[0xBA]));
        conn.receive(&wire);
        assert_eq!(
            events(&mut conn, Instant::now())[0].as_ref().unwrap(),
            &Message::text("κ"),
            "{role:?}"
        );
    }
}

#[test]
fn rejects_text_message_ending_inside_a_code_point() {
    for role in ROLES {
        expect_failure(
            &mut connection(role),
            &peer_frame(role, 0x81, &[0xCE, 0xBA, 0xE1]),
            1007,
        );
    }
}
