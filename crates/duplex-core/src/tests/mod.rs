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

mod close;
mod control;
mod fragmentation;
mod framing;
mod limits;
mod timers;
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
}
