//! permessage-deflate (RFC 7692): RSV1 on the first frame of a compressed message,
//! context takeover, bad or oversized compressed data, and shared prepared frames.

use super::*;

fn deflate_connection(role: Role, config: EngineConfig, params: DeflateParams) -> Connection {
    let mut conn = Connection::new(role, config);
    conn.enable_deflate(params);
    conn
}

fn deflate_pair(params: DeflateParams) -> (Connection, Connection) {
    (
        deflate_connection(Role::Server, EngineConfig::default(), params),
        deflate_connection(Role::Client, EngineConfig::default(), params),
    )
}

/// Moves all of `from`'s output, as it goes on the wire, into `to` and returns `to`'s
/// events.
fn transfer(from: &mut Connection, to: &mut Connection) -> Vec<Message> {
    let wire = drain_raw(from);
    to.receive(&wire);
    events(to, Instant::now())
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

/// `wire` as `sender` wrote it, unmasked if `sender` is a client.
fn unmasked(sender: Role, wire: &[u8]) -> Vec<u8> {
    match sender {
        Role::Client => unmask_frames(wire),
        Role::Server => wire.to_vec(),
    }
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
        // Either end sends the text first, the other the binary messages.
        for role in ROLES {
            let (mut server, mut client) = deflate_pair(params);
            let (us, peer) = match role {
                Role::Server => (&mut server, &mut client),
                Role::Client => (&mut client, &mut server),
            };
            let text = "a text message that repeats, repeats, repeats, repeats".repeat(20);
            for _ in 0..3 {
                us.send(Message::text(text.as_str())).unwrap();
                assert_eq!(
                    us.pending_output()[0],
                    0xC1,
                    "{role:?}: RSV1 and FIN on a text frame"
                );
                assert!(us.output_len() < text.len() / 4, "{role:?}");
                assert_eq!(
                    transfer(us, peer),
                    vec![Message::text(text.as_str())],
                    "{role:?}"
                );
                peer.send(Message::binary(vec![9u8; 10_000])).unwrap();
                assert_eq!(
                    transfer(peer, us),
                    vec![Message::binary(vec![9u8; 10_000])],
                    "{role:?}"
                );
            }
        }
    }
}

#[test]
fn short_and_explicitly_uncompressed_messages_go_without_rsv1() {
    for role in ROLES {
        let params = DeflateParams::default();
        let mut us = deflate_connection(role, EngineConfig::default(), params);
        let mut peer = deflate_connection(other(role), EngineConfig::default(), params);
        us.send(Message::text("tiny")).unwrap();
        assert_eq!(us.pending_output()[0], 0x81, "{role:?}");
        us.send_uncompressed(Message::binary(vec![0u8; 1000]))
            .unwrap();
        let got = transfer(&mut us, &mut peer);
        assert_eq!(
            got,
            vec![Message::text("tiny"), Message::binary(vec![0u8; 1000])],
            "{role:?}"
        );
    }
}

#[test]
fn compressed_message_may_be_fragmented_with_rsv1_on_the_first_frame_only() {
    for role in ROLES {
        let params = DeflateParams::default();
        let config = EngineConfig::default().send_frame_size(Some(10));
        let mut us = deflate_connection(role, config, params);
        let mut peer = deflate_connection(other(role), EngineConfig::default(), params);
        let text = "fragmented and compressed ".repeat(40);
        us.send(Message::text(text.as_str())).unwrap();
        let wire = drain_raw(&mut us);
        let plain = unmasked(role, &wire);
        assert_eq!(plain[0], 0x41, "{role:?}: RSV1, no FIN, text");
        assert_eq!(plain[12], 0x00, "{role:?}: the continuation has no RSV1");
        peer.receive(&wire);
        assert_eq!(
            events(&mut peer, Instant::now())[0].as_ref().unwrap(),
            &Message::text(text.as_str()),
            "{role:?}"
        );
    }
}

#[test]
fn rsv1_on_a_continuation_or_control_frame_is_a_protocol_error() {
    for role in ROLES {
        let params = DeflateParams::default();
        let mut conn = deflate_connection(role, EngineConfig::default(), params);
        let mut wire = peer_frame(role, 0x01, b"a");
        wire.extend(peer_frame(role, 0xC0, b"b"));
        let error = expect_failure(&mut conn, &wire, 1002);
        assert!(
            matches!(error, Error::Protocol(ProtocolError::ReservedBits { .. })),
            "{role:?}: {error:?}"
        );
        let mut conn = deflate_connection(role, EngineConfig::default(), params);
        let error = expect_failure(&mut conn, &peer_frame(role, 0xC9, b""), 1002);
        assert!(
            matches!(error, Error::Protocol(ProtocolError::ReservedBits { .. })),
            "{role:?}: {error:?}"
        );
    }
}

#[test]
fn invalid_deflate_data_is_1007() {
    for role in ROLES {
        let mut conn = deflate_connection(role, EngineConfig::default(), DeflateParams::default());
        let error = expect_failure(&mut conn, &peer_frame(role, 0xC2, &[0xFF; 8]), 1007);
        assert!(
            matches!(error, Error::Protocol(ProtocolError::InvalidCompressedData)),
            "{role:?}: {error:?}"
        );
    }
}

#[test]
fn decompression_bomb_stops_at_the_limit_with_1009() {
    for role in ROLES {
        let params = DeflateParams::default();
        let mut peer = deflate_connection(other(role), EngineConfig::default(), params);
        peer.send(Message::binary(vec![0u8; 1 << 20])).unwrap();
        let bomb = drain_raw(&mut peer);
        assert!(
            bomb.len() < 4096,
            "{role:?}: 1 MiB of zeros compresses to {} bytes",
            bomb.len()
        );
        let config = EngineConfig::default().max_decompressed_size(64 << 10);
        let mut conn = deflate_connection(role, config, params);
        let error = expect_failure(&mut conn, &bomb, 1009);
        assert!(
            matches!(
                error,
                Error::LimitExceeded(LimitError {
                    limit: Limit::DecompressedSize,
                    ..
                })
            ),
            "{role:?}: {error:?}"
        );
        assert!(conn.buffered_input() <= (64 << 10) + 1, "{role:?}");
    }
}

#[test]
fn invalid_utf8_inside_a_compressed_message_fails_fast() {
    for role in ROLES {
        let params = DeflateParams::default();
        let mut peer = deflate_connection(other(role), EngineConfig::default(), params);
        // Compress bytes that are not UTF-8 and send them as a text message.
        let bad = [
            &b"valid prefix "[..],
            &[0xF4, 0x90, 0x80, 0x80],
            &[b'x'; 100],
        ]
        .concat();
        peer.send(Message::binary(bad)).unwrap();
        let mut wire = drain_raw(&mut peer);
        wire[0] = (wire[0] & 0xF0) | 0x01; // binary -> text
        let mut conn = deflate_connection(role, EngineConfig::default(), params);
        expect_failure(&mut conn, &wire, 1007);
    }
}

#[test]
fn prepared_compressed_frame_is_shared_and_keeps_contexts_in_step() {
    // Servers share one frame; clients mask theirs per connection, so this is a server's.
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
fn prepared_compressed_message_keeps_a_clients_context_in_step() {
    // A client cannot share the frame (it masks it), but the message it sends from a
    // prepared one must still leave both contexts in step.
    let prepared = PreparedMessage::new(Message::text(
        "broadcast text, broadcast text, broadcast text",
    ))
    .unwrap();
    let (mut server, mut client) = deflate_pair(DeflateParams::default());
    let context = Message::text("context context context context context");
    client.send(context.clone()).unwrap();
    assert_eq!(transfer(&mut client, &mut server), vec![context.clone()]);
    client.send_prepared(&prepared).unwrap();
    assert_eq!(client.pending_output()[0], 0xC1, "compressed");
    assert_eq!(
        transfer(&mut client, &mut server),
        vec![prepared.message().clone()]
    );
    client.send(context.clone()).unwrap();
    assert_eq!(transfer(&mut client, &mut server), vec![context]);
}

#[test]
fn shrinking_buffers_between_fragments_keeps_the_inflate_stream() {
    let params = DeflateParams {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        ..DeflateParams::default()
    };
    for role in ROLES {
        let sender_config = EngineConfig::default().send_frame_size(Some(7));
        let mut peer = deflate_connection(other(role), sender_config, params);
        let mut conn = deflate_connection(role, EngineConfig::default(), params);
        let text = "fragmented, compressed, and read in pieces ".repeat(30);
        for _ in 0..2 {
            peer.send(Message::text(text.as_str())).unwrap();
            let wire = drain_raw(&mut peer);
            let mut got = Vec::new();
            for piece in wire.chunks(5) {
                conn.receive(piece);
                got.extend(
                    events(&mut conn, Instant::now())
                        .into_iter()
                        .map(Result::unwrap),
                );
                conn.shrink_buffers(); // as an adapter does whenever its input is drained
            }
            assert_eq!(got, vec![Message::text(text.as_str())], "{role:?}");
        }
    }
}

#[test]
fn control_frames_interleave_with_a_compressed_fragmented_message() {
    for role in ROLES {
        let params = DeflateParams::default();
        let sender_config = EngineConfig::default().send_frame_size(Some(4));
        let mut peer = deflate_connection(other(role), sender_config, params);
        let text = "interleaved with pings, interleaved with pings ".repeat(20);
        peer.send(Message::text(text.as_str())).unwrap();
        let wire = drain_raw(&mut peer);
        // Split the peer's frames and put a ping between every two of them.
        let mut decoder = duplex_codec::Decoder::new(duplex_codec::Masking::Any, 1 << 20);
        let mut buf = BytesMut::from(&wire[..]);
        let mut interleaved = Vec::new();
        let mut frames = 0;
        let mut start = 0;
        while let Some(item) = decoder.decode(&mut buf).unwrap() {
            if let duplex_codec::Decoded::Frame { complete: true, .. } = item {
                let end = wire.len() - buf.len();
                interleaved.extend_from_slice(&wire[start..end]);
                interleaved.extend(peer_frame(role, 0x89, &[frames as u8]));
                start = end;
                frames += 1;
            }
        }
        assert!(frames > 3, "{role:?}: {frames} frames");
        let mut conn = deflate_connection(role, EngineConfig::default(), params);
        conn.receive(&interleaved);
        let got: Vec<Message> = events(&mut conn, Instant::now())
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got.len(), frames + 1, "{role:?}");
        assert_eq!(
            got.iter().filter(|m| matches!(m, Message::Ping(_))).count(),
            frames,
            "{role:?}"
        );
        assert_eq!(
            got[frames - 1],
            Message::text(text.as_str()),
            "{role:?}: the message ends before the last ping"
        );
    }
}
