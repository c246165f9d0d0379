//! Raw bytes as an attacker writes them, and a reader for what a server answers.

use bytes::BytesMut;
use duplex_codec::{Decoded, Decoder, FrameHeader, Masking, OpCode, apply_mask_bytewise};

/// FIN bit of the first header byte.
pub const FIN: u8 = 0x80;
/// The opcode bits of text.
pub const TEXT: u8 = 0x1;
/// The opcode bits of binary.
pub const BINARY: u8 = 0x2;
/// The opcode bits of a continuation.
pub const CONTINUATION: u8 = 0x0;
/// The opcode bits of close.
pub const CLOSE: u8 = 0x8;
/// The opcode bits of ping.
pub const PING: u8 = 0x9;
/// The opcode bits of pong.
pub const PONG: u8 = 0xA;

/// The `Sec-WebSocket-Key` of RFC 6455 section 1.3, used by every request built here.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A frame with `first` as its first byte (FIN, RSV and opcode bits), the shortest
/// length form, and `mask` applied when given.
pub fn frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = header(first, payload.len() as u64, mask, false);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask_bytewise(&mut out[start..], key, 0);
    }
    out
}

/// A frame header alone declaring `len` payload bytes; `long` forces the 64-bit length
/// form (which may then declare anything up to 2^64-1, valid or not).
pub fn header(first: u8, len: u64, mask: Option<[u8; 4]>, long: bool) -> Vec<u8> {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut out = vec![first];
    if long || len > 0xFFFF {
        out.push(mask_bit | 127);
        out.extend_from_slice(&len.to_be_bytes());
    } else if len > 125 {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | len as u8);
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
    out
}

/// A masked client frame (mask key fixed, so seeds and tests are reproducible).
pub fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    frame(first, payload, Some([0x37, 0xfa, 0x21, 0x3d]))
}

/// A close payload: the code and a reason.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut out = code.to_be_bytes().to_vec();
    out.extend_from_slice(reason.as_bytes());
    out
}

/// A valid opening request for `path` with [`KEY`], plus `extra` header lines (each
/// ending in `\r\n`).
pub fn request(path: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// The 101 a server answers [`request`] with, `extra` header lines included.
pub fn response_101(accept: &str, extra: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// One frame a server sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerFrame {
    /// Its header.
    pub header: FrameHeader,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// The frames in `bytes` (server to client: `Masking::Any` so that a masked frame shows
/// up instead of stopping the reader), and whether the bytes ended cleanly or broke.
pub fn frames(bytes: &[u8]) -> (Vec<ServerFrame>, Result<(), String>) {
    let mut decoder = Decoder::new(Masking::Any, u64::MAX);
    let mut buf = BytesMut::from(bytes);
    let mut out: Vec<ServerFrame> = Vec::new();
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(Decoded::Frame {
                header, payload, ..
            })) => out.push(ServerFrame {
                header,
                payload: payload.to_vec(),
            }),
            Ok(Some(Decoded::Continue { payload, .. })) => {
                if let Some(last) = out.last_mut() {
                    last.payload.extend_from_slice(&payload);
                }
            }
            Ok(None) if buf.is_empty() && decoder.is_at_frame_boundary() => {
                return (out, Ok(()));
            }
            Ok(None) => return (out, Err(format!("{} bytes of a partial frame", buf.len()))),
            Err(error) => return (out, Err(error.to_string())),
        }
    }
}

/// The code of the first close frame among `frames` (`Some(None)` for an empty close).
pub fn close_code(frames: &[ServerFrame]) -> Option<Option<u16>> {
    frames
        .iter()
        .find(|f| f.header.opcode == OpCode::Close)
        .map(|f| (f.payload.len() >= 2).then(|| u16::from_be_bytes([f.payload[0], f.payload[1]])))
}

/// Splits an HTTP head (up to and including `\r\n\r\n`) off `bytes`.
pub fn split_head(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    Some(bytes.split_at(end))
}

/// The status code of an HTTP response head.
pub fn status_of(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\r').next()?;
    let text = std::str::from_utf8(line).ok()?;
    text.split(' ').nth(1)?.parse().ok()
}
