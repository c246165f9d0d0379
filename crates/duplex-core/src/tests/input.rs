//! The read path: uncompressed binary frames held until whole, so that a single-frame
//! message is one slice of the read buffer, and `input_wanted`/`input_buffer` sizing the
//! reads so that the rest of a frame lands behind its start without being moved.

use super::*;

/// Appends `bytes` through `input_buffer`, as an adapter that reads straight into the
/// engine does, and returns where the buffer's data starts.
fn read_into(conn: &mut Connection, min: usize, bytes: &[u8]) -> *const u8 {
    let buf = conn.input_buffer(min);
    buf.extend_from_slice(bytes);
    buf.as_ptr()
}

#[test]
fn a_large_binary_frame_read_in_pieces_is_one_slice_of_the_read_buffer() {
    for role in ROLES {
        let now = Instant::now();
        let mut conn = connection(role);
        let payload: Vec<u8> = (0..64 << 10).map(|i| (i % 251) as u8).collect();
        let wire = peer_frame(role, 0x82, &payload);
        let header = wire.len() - payload.len();

        // The first read brings the header and part of the payload.
        let start = read_into(&mut conn, 16 << 10, &wire[..40_000]);
        assert!(
            events(&mut conn, now).is_empty(),
            "{role:?}: held until whole"
        );
        assert_eq!(conn.input_wanted(), wire.len() - 40_000, "{role:?}");
        // The room offered is the rest of the frame, behind what is there: nothing moves.
        let spare = {
            let buf = conn.input_buffer(64 << 10);
            buf.capacity() - buf.len()
        };
        assert!(spare >= wire.len() - 40_000, "{role:?}: room {spare}");
        let again = read_into(&mut conn, 64 << 10, &wire[40_000..]);
        assert_eq!(again, start, "{role:?}: the buffer was not reallocated");

        let got = events(&mut conn, now);
        let [Ok(Message::Binary(data))] = &got[..] else {
            panic!("{role:?}: {got:?}");
        };
        assert_eq!(&data[..], &payload[..], "{role:?}");
        assert_eq!(
            data.as_ptr(),
            start.wrapping_add(header),
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
