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

mod budget;
mod close;
mod control;
mod deflate;
mod fragmentation;
mod framing;
mod input;
mod limits;
mod props;
mod timers;
mod transport;
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
    Connection::new(role, EngineConfig::default())
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

#[test]
fn an_idle_connection_stays_small() {
    // What every open connection costs before any buffer: the configuration is shared,
    // deflate state and close bookkeeping are allocated only when used. (It was 1,152
    // bytes before they were; the memory budget's seat, boxed, and its deadline added
    // 24.)
    let size = std::mem::size_of::<Connection>();
    eprintln!("Connection is {size} bytes");
    assert!(size <= 600, "Connection is {size} bytes");
}
