//! Frames on the wire (RFC 6455 section 5.2): headers, reserved bits and opcodes, masking,
//! and the ways bytes come in and go out.

use super::*;

#[test]
fn rfc_5_7_single_frame_hello_is_a_text_message() {
    // Section 5.7's examples, byte for byte: unmasked to a client, masked to a server.
    for role in ROLES {
        let wire: &[u8] = match role {
            Role::Client => &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
            Role::Server => &[
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
            ],
        };
        let mut conn = connection(role);
        conn.receive(wire);
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
fn sends_frames_byte_exact_with_7_and_16_bit_lengths() {
    // A server's bytes are the wire itself (unmasked); a client's are unmasked by `drain`,
    // which checks that every frame was masked.
    for role in ROLES {
        let mut conn = connection(role);
        conn.send(Message::text("Hello")).unwrap();
        conn.send(Message::binary(vec![0u8; 256])).unwrap();
        let out = drain(&mut conn);
        assert_eq!(
            &out[..7],
            &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
            "{role:?}"
        );
        assert_eq!(&out[7..11], &[0x82, 0x7E, 0x01, 0x00], "{role:?}");
        assert_eq!(out.len(), 11 + 256, "{role:?}");
    }
}

#[test]
fn server_sends_unmasked_frames_byte_exact() {
    let mut conn = server();
    conn.send(Message::text("Hello")).unwrap();
    conn.send(Message::binary(vec![0u8; 256])).unwrap();
    let out = drain_raw(&mut conn);
    assert_eq!(&out[..7], &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    assert_eq!(&out[7..11], &[0x82, 0x7E, 0x01, 0x00]);
    assert_eq!(out.len(), 11 + 256);
}

#[test]
fn client_masks_every_frame_with_a_fresh_key() {
    let mut conn = connection(Role::Client);
    conn.send(Message::text("Hello")).unwrap();
    conn.send(Message::text("Hello")).unwrap();
    let out = drain_raw(&mut conn);
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
fn server_rejects_unmasked_frame_and_client_rejects_masked_frame() {
    let error = expect_failure(&mut server(), &[0x81, 0x00], 1002);
    assert!(
        matches!(
            error,
            Error::Protocol(ProtocolError::Frame(DecodeError::UnmaskedFrame))
        ),
        "{error:?}"
    );
    let mut client = connection(Role::Client);
    let error = expect_failure(&mut client, &client_frame(0x81, b""), 1002);
    assert!(
        matches!(
            error,
            Error::Protocol(ProtocolError::Frame(DecodeError::MaskedFrame))
        ),
        "{error:?}"
    );
}

#[test]
fn rejects_reserved_bits_without_extension() {
    for role in ROLES {
        for first in [0xC1u8, 0xA1, 0x91, 0xF1] {
            let error = expect_failure(&mut connection(role), &peer_frame(role, first, b"x"), 1002);
            assert!(
                matches!(error, Error::Protocol(ProtocolError::ReservedBits { .. })),
                "{role:?} {first:#x}: {error:?}"
            );
        }
    }
}

#[test]
fn rejects_reserved_opcodes() {
    for role in ROLES {
        for op in [3u8, 4, 5, 6, 7, 11, 12, 13, 14, 15] {
            let error = expect_failure(
                &mut connection(role),
                &peer_header(role, 0x80 | op, 0),
                1002,
            );
            // The opcode is what is refused, not the masking.
            assert!(
                matches!(error, Error::Protocol(ProtocolError::Frame(DecodeError::ReservedOpcode(o))) if o == op),
                "{role:?} {op}: {error:?}"
            );
        }
    }
}

#[test]
fn prepared_message_is_shared_between_server_connections() {
    let prepared = PreparedMessage::new(Message::binary(vec![7u8; 4096])).unwrap();
    let mut conn = server();
    conn.send_prepared(&prepared).unwrap();
    assert_eq!(conn.pending_output().as_ptr(), prepared.frame().as_ptr());
    let mut client = connection(Role::Client);
    client.send_prepared(&prepared).unwrap();
    assert_eq!(client.output_len(), 4096 + 8);
}

#[test]
fn prepared_message_goes_out_as_the_same_frame_from_either_role() {
    let prepared = PreparedMessage::new(Message::binary(vec![7u8; 4096])).unwrap();
    for role in ROLES {
        let mut conn = connection(role);
        conn.send_prepared(&prepared).unwrap();
        assert_eq!(drain(&mut conn), prepared.frame()[..], "{role:?}");
    }
}

#[test]
fn input_buffer_is_an_alternative_to_receive() {
    for role in ROLES {
        let config =
            EngineConfig::default().keepalive(Duration::from_secs(10), Duration::from_secs(5));
        let mut conn = Connection::new(role, config);
        let t0 = Instant::now();
        let wire = peer_frame(role, 0x81, b"read in place");
        let (a, b) = wire.split_at(5);
        conn.input_buffer(64).extend_from_slice(a);
        assert!(conn.poll_event(t0).is_none(), "{role:?}");
        conn.input_buffer(64).extend_from_slice(b);
        let t1 = t0 + Duration::from_secs(3);
        assert_eq!(
            conn.poll_event(t1).unwrap().unwrap(),
            Message::text("read in place"),
            "{role:?}"
        );
        // Bytes that arrived count as activity for keepalive; a read that added nothing
        // does not.
        assert_eq!(
            conn.poll_timeout(),
            Some(t1 + Duration::from_secs(10)),
            "{role:?}"
        );
        conn.input_buffer(64);
        assert!(
            conn.poll_event(t1 + Duration::from_secs(4)).is_none(),
            "{role:?}"
        );
        assert_eq!(
            conn.poll_timeout(),
            Some(t1 + Duration::from_secs(10)),
            "{role:?}"
        );
        // After the close, what is read into it is dropped.
        conn.input_buffer(64)
            .extend_from_slice(&peer_frame(role, 0x88, b""));
        assert!(
            matches!(conn.poll_event(t1), Some(Ok(Message::Close(None)))),
            "{role:?}"
        );
        conn.input_buffer(64).extend_from_slice(&[0u8; 1000]);
        assert!(conn.poll_event(t1).is_none(), "{role:?}");
        assert_eq!(conn.buffered_input(), 0, "{role:?}");
    }
}
