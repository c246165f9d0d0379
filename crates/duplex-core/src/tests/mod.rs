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
mod deflate;
mod fragmentation;
mod framing;
mod limits;
mod timers;
mod utf8;

mod lifecycle;
mod sim;

/// Both ends, for the rules that bind both.
const ROLES: [Role; 2] = [Role::Client, Role::Server];

/// The other end.
fn other(role: Role) -> Role {
    match role {
        Role::Client => Role::Server,
        Role::Server => Role::Client,
    }
}

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
}
