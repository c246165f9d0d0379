//! Raw bytes as an attacker writes them, and a reader for what a server answers: the
//! test wire kit (`wire_kit`, which shares no code with the crates under attack) under
//! the names the attack suite uses.

pub use wire_kit::{
    CLIENT_MASK, FIN, Frame, KEY, OP_BINARY as BINARY, OP_CLOSE as CLOSE, OP_CONT as CONTINUATION,
    OP_PING as PING, OP_PONG as PONG, OP_TEXT as TEXT, accept_key, client_frame, close_code,
    close_payload, frame, frames, header, header_value, response_101, split_head, status_of,
};

/// A valid opening request for `path` on 127.0.0.1 with [`KEY`], plus `extra` header
/// lines (each ending in `\r\n`).
pub fn request(path: &str, extra: &str) -> Vec<u8> {
    wire_kit::upgrade_request(path, "127.0.0.1", extra)
}
