//! Fragmented messages (RFC 6455 section 5.4): assembly, continuation rules, control
//! frames between fragments, and fragmenting what we send.

use super::*;

#[test]
fn rfc_5_7_fragmented_hel_lo_is_joined() {
    let rfc_bytes = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
    for role in ROLES {
        let mut wire = peer_frame(role, 0x01, b"Hel");
        wire.extend(peer_frame(role, 0x80, b"lo"));
        if role == Role::Client {
            assert_eq!(wire, rfc_bytes, "section 5.7's unmasked example");
        }
        let mut conn = connection(role);
        conn.receive(&wire);
        let got = events(&mut conn, Instant::now());
        assert_eq!(got.len(), 1, "{role:?}");
        assert_eq!(
            got[0].as_ref().unwrap(),
            &Message::text("Hello"),
            "{role:?}"
        );
    }
}

#[test]
fn control_frames_may_interleave_with_fragments() {
    for role in ROLES {
        let mut conn = connection(role);
        let mut wire = peer_frame(role, 0x01, b"Hel");
        wire.extend(peer_frame(role, 0x89, b"p"));
        wire.extend(peer_frame(role, 0x80, b"lo"));
        conn.receive(&wire);
        let got: Vec<Message> = events(&mut conn, Instant::now())
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            got,
            vec![Message::Ping("p".into()), Message::text("Hello")],
            "{role:?}"
        );
        assert_eq!(drain(&mut conn), vec![0x8A, 0x01, b'p'], "{role:?}");
    }
}

#[test]
fn rejects_continuation_without_start() {
    for role in ROLES {
        let error = expect_failure(&mut connection(role), &peer_frame(role, 0x80, b"x"), 1002);
        assert!(
            matches!(
                error,
                Error::Protocol(ProtocolError::UnexpectedContinuation)
            ),
            "{role:?}: {error:?}"
        );
    }
}

#[test]
fn rejects_new_data_frame_inside_fragmented_message() {
    for role in ROLES {
        let mut wire = peer_frame(role, 0x01, b"a");
        wire.extend(peer_frame(role, 0x81, b"b"));
        let error = expect_failure(&mut connection(role), &wire, 1002);
        assert!(
            matches!(
                error,
                Error::Protocol(ProtocolError::ExpectedContinuation(OpCode::Text))
            ),
            "{role:?}: {error:?}"
        );
    }
}

#[test]
fn automatic_fragmentation_splits_outgoing_messages() {
    for role in ROLES {
        let mut conn = Connection::new(role, EngineConfig::default().send_frame_size(Some(2)));
        conn.send(Message::text("Hello")).unwrap();
        assert_eq!(
            drain(&mut conn),
            b"\x01\x02He\x00\x02ll\x80\x01o",
            "{role:?}"
        );
    }
}
