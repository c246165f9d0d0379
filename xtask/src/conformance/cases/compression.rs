//! Categories 12 and 13: permessage-deflate (RFC 7692). Listed with their
//! Autobahn ids and parameters; not implemented yet, so they are reported
//! UNIMPLEMENTED. Implementing them means negotiating the extension in the
//! handshake and giving these cases a kind of their own.

use super::{Case, CaseKind};

/// (message size, auto-fragment size) for each sub-case .1 .. .18.
pub const MSG_SIZES: [(usize, usize); 18] = [
    (16, 0),
    (64, 0),
    (256, 0),
    (1024, 0),
    (4096, 0),
    (8192, 0),
    (16384, 0),
    (32768, 0),
    (65536, 0),
    (131072, 0),
    (8192, 256),
    (16384, 256),
    (32768, 256),
    (65536, 256),
    (131072, 256),
    (131072, 1024),
    (131072, 4096),
    (131072, 32768),
];

/// Payload kinds of 12.1 .. 12.5.
const PAYLOADS: [&str; 5] = [
    "human-readable text",
    "a bitmap image",
    "a PDF document",
    "JSON data",
    "HTML data",
];

/// Client offer / server answer pairs of 13.1 .. 13.7, as
/// (no_context_takeover, max_window_bits) lists.
const PARAMS: [&str; 7] = [
    "offer default; accept default",
    "offer no_context_takeover; accept with no_context_takeover",
    "offer max_window_bits=8; accept with max_window_bits=8",
    "offer max_window_bits=15; accept with max_window_bits=15",
    "offer no_context_takeover + max_window_bits=8; accept both",
    "offer no_context_takeover + max_window_bits=15; accept both",
    "offer [(no_context_takeover, 8), (no_context_takeover), default]; accept the first acceptable",
];

fn frag(f: usize) -> String {
    if f == 0 {
        "no auto-fragmentation".into()
    } else {
        format!("auto-fragmented to {f} octets")
    }
}

/// All of categories 12 and 13 (UNIMPLEMENTED for now).
pub fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for (j, what) in PAYLOADS.iter().enumerate() {
        for (i, (len, f)) in MSG_SIZES.iter().enumerate() {
            v.push(Case {
                id: format!("12.{}.{}", j + 1, i + 1),
                description: format!(
                    "Send 1000 compressed messages of {len} octets of {what}, {}, with the default permessage-deflate offer.",
                    frag(*f)
                ),
                expectation: "Receive the echoed messages (payload as sent).".into(),
                kind: CaseKind::Unimplemented,
            });
        }
    }
    for (j, params) in PARAMS.iter().enumerate() {
        for (i, (len, f)) in MSG_SIZES.iter().enumerate() {
            v.push(Case {
                id: format!("13.{}.{}", j + 1, i + 1),
                description: format!(
                    "Send 1000 compressed messages of {len} octets of JSON data, {}; permessage-deflate parameters: {params}.",
                    frag(*f)
                ),
                expectation: "Receive the echoed messages (payload as sent).".into(),
                kind: CaseKind::Unimplemented,
            });
        }
    }
    v
}
