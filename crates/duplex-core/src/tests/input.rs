//! The read path: uncompressed binary frames held until whole, so that a single-frame
//! message is one slice of the read buffer, and `input_wanted`/`input_buffer` sizing the
//! reads so that the rest of a frame lands behind its start without being moved.

use super::*;

/// Reads `wire` as an adapter that reads straight into the engine does: each read takes
/// at most the room `input_buffer` offers and at most `arrives` bytes (what the socket
/// has). Returns where the buffer's data started after each read.
fn read_like_an_adapter(conn: &mut Connection, wire: &[u8], arrives: usize) -> Vec<*const u8> {
    let mut starts = Vec::new();
    let mut at = 0;
    while at < wire.len() {
        let buf = conn.input_buffer(64 << 10);
        let room = buf.capacity() - buf.len();
        assert!(room > 0, "no room offered");
        let n = room.min(arrives).min(wire.len() - at);
        buf.extend_from_slice(&wire[at..at + n]);
        starts.push(buf.as_ptr());
        at += n;
    }
    starts
}

#[test]
fn a_large_binary_frame_read_in_pieces_is_one_slice_of_the_read_buffer() {
    for role in ROLES {
        let now = Instant::now();
        let mut conn = connection(role);
        let payload: Vec<u8> = (0..64 << 10).map(|i| (i % 251) as u8).collect();
        let wire = peer_frame(role, 0x82, &payload);
        let header = wire.len() - payload.len();

        // The first frame of its size: the engine learns it (its tail may need a move).
        read_like_an_adapter(&mut conn, &wire, 64 << 10);
        assert_eq!(events(&mut conn, now).len(), 1, "{role:?}");

        // The next one arrives in pieces of 20,000 bytes: held until whole, and every
        // piece lands behind the previous one in the same buffer.
        let mut starts = Vec::new();
        for piece in wire.chunks(20_000) {
            starts.extend(read_like_an_adapter(&mut conn, piece, 20_000));
            if starts.len() < 4 {
                assert!(
                    events(&mut conn, now).is_empty(),
                    "{role:?}: held until whole"
                );
                assert_eq!(
                    conn.input_wanted(),
                    wire.len() - 20_000 * starts.len(),
                    "{role:?}"
                );
            }
        }
        assert!(
            starts.iter().all(|&p| p == starts[0]),
            "{role:?}: the buffer was not reallocated"
        );
        let got = events(&mut conn, now);
        let [Ok(Message::Binary(data))] = &got[..] else {
            panic!("{role:?}: {got:?}");
        };
        assert_eq!(&data[..], &payload[..], "{role:?}");
        assert_eq!(
            data.as_ptr(),
            starts[0].wrapping_add(header),
            "{role:?}: the message is the payload where it was read, not a copy"
        );
    }
}

#[test]
fn after_a_large_frame_the_next_read_is_sized_for_one_like_it() {
    for role in ROLES {
        let now = Instant::now();
        let mut conn = connection(role);
        assert_eq!(conn.input_wanted(), 0, "{role:?}: nothing known yet");
        let large = peer_frame(role, 0x82, &[7; 40_000]);
        conn.receive(&large);
        assert_eq!(events(&mut conn, now).len(), 1, "{role:?}");
        assert_eq!(conn.input_wanted(), large.len(), "{role:?}");
        // A read of the default size gets at least that much room.
        let buf = conn.input_buffer(1024);
        assert!(buf.capacity() >= large.len(), "{role:?}");

        // A small frame brings the hint back to nothing.
        let small = peer_frame(role, 0x82, b"tiny");
        conn.input_buffer(0).extend_from_slice(&small);
        assert_eq!(events(&mut conn, now).len(), 1, "{role:?}");
        assert_eq!(conn.input_wanted(), 0, "{role:?}");
    }
}

#[test]
fn an_announced_length_reserves_nothing_by_itself() {
    for role in ROLES {
        let now = Instant::now();
        let mut conn = connection(role);
        // A frame of the largest allowed size, of which only the header and one byte came.
        let max = EngineConfig::default().size_limits().max_frame_size;
        let mut wire = peer_header(role, 0x82, max as u64);
        wire.push(0);
        conn.receive(&wire);
        assert!(events(&mut conn, now).is_empty(), "{role:?}");
        let wanted = conn.input_wanted();
        assert!(
            wanted <= 64 << 10,
            "{role:?}: asks for {wanted} bytes after {} arrived",
            wire.len()
        );
        let buf = conn.input_buffer(4096);
        assert!(buf.capacity() <= 128 << 10, "{role:?}: {}", buf.capacity());
    }
}

#[test]
fn binary_continuations_are_held_whole_and_text_still_fails_fast() {
    for role in ROLES {
        let now = Instant::now();
        let mut conn = connection(role);
        // A binary message in two frames: the continuation is held until whole too.
        let first = peer_frame(role, 0x02, &[1; 20_000]);
        let rest = peer_frame(role, 0x80, &[2; 30_000]);
        conn.receive(&first);
        assert!(events(&mut conn, now).is_empty(), "{role:?}");
        conn.receive(&rest[..1000]);
        assert!(events(&mut conn, now).is_empty(), "{role:?}");
        assert_eq!(conn.input_wanted(), rest.len() - 1000, "{role:?}");
        conn.receive(&rest[1000..]);
        let got = events(&mut conn, now);
        let [Ok(Message::Binary(data))] = &got[..] else {
            panic!("{role:?}: {got:?}");
        };
        assert_eq!(data.len(), 50_000, "{role:?}");
        assert!(data[..20_000].iter().all(|&b| b == 1) && data[20_000..].iter().all(|&b| b == 2));

        // A text frame is still checked piece by piece: invalid UTF-8 in its first
        // bytes fails the connection before the rest arrives.
        let mut conn = connection(role);
        let mut text = vec![b'a'; 30_000];
        text[10] = 0xFF;
        let wire = peer_frame(role, 0x81, &text);
        let error = expect_failure(&mut conn, &wire[..100], 1007);
        assert!(
            matches!(error, Error::Protocol(ProtocolError::InvalidUtf8 { .. })),
            "{role:?}: {error:?}"
        );
    }
}

#[test]
fn a_peer_that_leaves_inside_a_held_frame_left_mid_message() {
    for role in ROLES {
        let now = Instant::now();
        let mut conn = connection(role);
        let wire = peer_frame(role, 0x82, &[0; 10_000]);
        conn.receive(&wire[..5000]);
        conn.receive_eof();
        let got = events(&mut conn, now);
        assert!(
            matches!(got[..], [Err(Error::PeerVanished { mid_message: true })]),
            "{role:?}: {got:?}"
        );
    }
}

#[test]
fn every_read_before_a_decode_counts_as_a_sign_of_life() {
    for role in ROLES {
        let start = Instant::now();
        let config =
            EngineConfig::default().keepalive(Duration::from_secs(10), Duration::from_secs(10));
        let mut conn = Connection::new(role, config);
        assert!(events(&mut conn, start).is_empty());
        assert_eq!(conn.poll_timeout(), Some(start + Duration::from_secs(10)));
        // Two reads, the second of nothing, then one decode: the first read's bytes
        // still move the keepalive deadline.
        let later = start + Duration::from_secs(5);
        let ping = peer_frame(role, 0x89, b"");
        conn.input_buffer(64).extend_from_slice(&ping[..1]);
        conn.input_buffer(64);
        let got = events(&mut conn, later);
        assert!(got.is_empty(), "{role:?}: {got:?}");
        assert_eq!(
            conn.poll_timeout(),
            Some(later + Duration::from_secs(10)),
            "{role:?}"
        );
    }
}

#[test]
fn a_frame_past_the_message_limit_fails_at_its_header_not_after_being_held() {
    for role in ROLES {
        let config = EngineConfig::default()
            .max_frame_size(1000)
            .max_message_size(1000);
        let mut conn = Connection::new(role, config);
        let now = Instant::now();
        // 600 bytes of a binary message, then a continuation announcing 600 more, of
        // which one byte came: the message would be 1,200 bytes, so the engine fails it
        // now instead of holding the frame until it is whole.
        conn.receive(&peer_frame(role, 0x02, &[1; 600]));
        assert!(events(&mut conn, now).is_empty(), "{role:?}");
        let mut rest = peer_frame(role, 0x80, &[2; 600]);
        rest.truncate(rest.len() - 599);
        let error = expect_failure(&mut conn, &rest, 1009);
        assert!(
            matches!(
                error,
                Error::LimitExceeded(LimitError {
                    limit: Limit::MessageSize,
                    ..
                })
            ),
            "{role:?}: {error:?}"
        );
        assert!(conn.buffered_input() <= 1000, "{role:?}");
    }
}
