//! The seed corpus: valid traffic for each fuzz target (and a few classic mistakes), so
//! the fuzzer starts from inputs that reach deep into the parsers.
//!
//! `tests/fuzz_regressions.rs` checks that `fuzz/seeds/<target>/` holds exactly these
//! files; run it with `HOSTILE_WRITE_SEEDS=1` to write them after changing this file.

use crate::wire::{
    BINARY, CLOSE, CONTINUATION, FIN, PING, PONG, TEXT, client_frame, close_payload, frame,
    request, response_101,
};

/// One seed file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seed {
    /// The fuzz target it feeds.
    pub target: &'static str,
    /// Its file name.
    pub name: &'static str,
    /// Its bytes, control bytes first.
    pub bytes: Vec<u8>,
}

fn seed(target: &'static str, name: &'static str, control: &[u8], body: &[u8]) -> Seed {
    let mut bytes = control.to_vec();
    bytes.extend_from_slice(body);
    Seed {
        target,
        name,
        bytes,
    }
}

/// A conversation a client sends: text, fragmented text, ping, binary with a 16-bit
/// length, pong, close.
fn client_conversation(masked: bool) -> Vec<u8> {
    let f = |first: u8, payload: &[u8]| {
        if masked {
            client_frame(first, payload)
        } else {
            frame(first, payload, None)
        }
    };
    let mut out = Vec::new();
    out.extend(f(FIN | TEXT, b"Hello"));
    out.extend(f(TEXT, "Hél".as_bytes()));
    out.extend(f(FIN | PING, b"are you there"));
    out.extend(f(FIN | CONTINUATION, "lo €".as_bytes()));
    out.extend(f(
        FIN | BINARY,
        &(0..300u16).map(|i| i as u8).collect::<Vec<_>>(),
    ));
    out.extend(f(FIN | PONG, b"unsolicited"));
    out.extend(f(FIN | CLOSE, &close_payload(Some(1000), b"bye")));
    out
}

/// Every seed, for every target.
pub fn seeds() -> Vec<Seed> {
    let mut out = Vec::new();
    let conversation_masked = client_conversation(true);
    let conversation_plain = client_conversation(false);

    // decoder: [masking, limit, split x4]
    out.push(seed(
        "decoder",
        "masked-conversation",
        &[0, 5, 1, 7, 3, 0],
        &conversation_masked,
    ));
    out.push(seed(
        "decoder",
        "plain-conversation",
        &[1, 5, 2, 0, 0, 0],
        &conversation_plain,
    ));
    out.push(seed(
        "decoder",
        "length-2-pow-63-minus-1",
        &[2, 5, 1, 1, 1, 1],
        &[0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
    ));
    out.push(seed(
        "decoder",
        "length-top-bit",
        &[2, 5, 0, 0, 0, 0],
        &[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 1],
    ));
    out.push(seed(
        "decoder",
        "long-ping",
        &[1, 5, 0, 0, 0, 0],
        &frame(FIN | PING, &[b'p'; 126], None),
    ));
    out.push(seed(
        "decoder",
        "fragmented-ping",
        &[1, 5, 0, 0, 0, 0],
        &frame(PING, b"p", None),
    ));

    // core: [flags, frame limit, message limit, fragments, split x4]
    out.push(seed(
        "core",
        "server-conversation",
        &[0, 5, 5, 31, 0, 3, 1, 9, 0],
        &conversation_masked,
    ));
    out.push(seed(
        "core",
        "server-conversation-drained-eof",
        &[2 | 8, 5, 5, 31, 0, 0, 0, 0, 0],
        &conversation_masked,
    ));
    out.push(seed(
        "core",
        "client-conversation",
        &[1, 5, 5, 31, 0, 5, 5, 5, 5],
        &conversation_plain,
    ));
    out.push(seed(
        "core",
        "client-conversation-app-sends",
        &[1 | 2 | 32 | 64, 5, 5, 31, 0, 2, 0, 0, 0],
        &conversation_plain,
    ));
    let mut pings = Vec::new();
    for i in 0..20u8 {
        pings.extend(client_frame(FIN | PING, &[i; 10]));
    }
    out.push(seed(
        "core",
        "ping-burst",
        &[0, 5, 5, 31, 0, 0, 0, 0, 0],
        &pings,
    ));
    out.push(seed(
        "core",
        "unmasked-to-server",
        &[0, 5, 5, 31, 0, 0, 0, 0, 0],
        &frame(FIN | TEXT, b"hi", None),
    ));
    out.push(seed(
        "core",
        "frame-over-limit",
        &[2, 2, 5, 31, 0, 0, 0, 0, 0],
        &client_frame(FIN | BINARY, &[0; 200]),
    ));
    let mut many = Vec::new();
    many.extend(client_frame(TEXT, b"a"));
    for _ in 0..40 {
        many.extend(client_frame(CONTINUATION, b""));
    }
    out.push(seed(
        "core",
        "too-many-fragments",
        &[2, 5, 5, 7, 0, 0, 0, 0, 0],
        &many,
    ));
    out.push(seed(
        "core",
        "bad-utf8",
        &[2, 5, 5, 31, 0, 1, 0, 0, 0],
        &client_frame(FIN | TEXT, &[b'o', b'k', 0xC0, 0x80]),
    ));
    out.push(seed(
        "core",
        "close-code-1005",
        &[2, 5, 5, 31, 0, 0, 0, 0, 0],
        &client_frame(FIN | CLOSE, &close_payload(Some(1005), b"")),
    ));
    out.push(seed(
        "core",
        "reserved-bit",
        &[2, 5, 5, 31, 0, 0, 0, 0, 0],
        &client_frame(FIN | 0x40 | TEXT, b"compressed?"),
    ));

    // permessage-deflate: a compressed "Hello" (RFC 7692 section 7.2.3.1), fragmented.
    let mut compressed = Vec::new();
    compressed.extend(client_frame(0x40 | TEXT, &[0xf2, 0x48, 0xcd]));
    compressed.extend(client_frame(FIN | CONTINUATION, &[0xc9, 0xc9, 0x07, 0x00]));
    out.push(seed(
        "core",
        "deflate-hello",
        &[16 | 2 | 32, 5, 5, 31, 0x28, 2, 3, 0, 0],
        &compressed,
    ));
    out.push(seed(
        "core",
        "deflate-client-no-context",
        &[16 | 1 | 2 | 32, 5, 5, 31, 0x2B, 0, 0, 0, 0],
        &frame(
            FIN | 0x40 | TEXT,
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            None,
        ),
    ));

    // server_handshake: [limits, split x3]
    let plain = request("/chat", "");
    out.push(seed(
        "server_handshake",
        "rfc-request",
        &[3, 0, 0, 0],
        &plain,
    ));
    out.push(seed(
        "server_handshake",
        "rfc-request-split",
        &[3, 1, 2, 17],
        &plain,
    ));
    out.push(seed(
        "server_handshake",
        "protocols-and-extensions",
        &[3, 40, 0, 0],
        &request(
            "/chat?room=1",
            "Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, x-foo; a=\"b\"\r\n",
        ),
    ));
    let mut with_frame = request("/", "");
    with_frame.extend(client_frame(FIN | TEXT, b"early"));
    out.push(seed(
        "server_handshake",
        "frame-after-head",
        &[3, 0, 0, 0],
        &with_frame,
    ));
    out.push(seed(
        "server_handshake",
        "post",
        &[3, 0, 0, 0],
        &String::from_utf8(plain.clone())
            .unwrap()
            .replacen("GET", "POST", 1)
            .into_bytes(),
    ));
    out.push(seed(
        "server_handshake",
        "version-8",
        &[3, 0, 0, 0],
        &String::from_utf8(plain.clone())
            .unwrap()
            .replace("Version: 13", "Version: 8")
            .into_bytes(),
    ));
    out.push(seed(
        "server_handshake",
        "small-head-limit",
        &[0, 0, 0, 0],
        &plain,
    ));

    // client_handshake: [flags, split x3]
    let accept = std::str::from_utf8(crate::check::ACCEPT_PLACEHOLDER).unwrap();
    out.push(seed(
        "client_handshake",
        "plain-101",
        &[3 << 2, 0, 0, 0],
        &response_101(accept, ""),
    ));
    out.push(seed(
        "client_handshake",
        "101-with-protocol-and-deflate",
        &[1 | 2 | (3 << 2), 5, 9, 0],
        &response_101(
            accept,
            "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: permessage-deflate\r\n",
        ),
    ));
    let mut with_frame = response_101(accept, "");
    with_frame.extend(frame(FIN | TEXT, b"welcome", None));
    out.push(seed(
        "client_handshake",
        "101-then-frame",
        &[3 << 2, 0, 0, 0],
        &with_frame,
    ));
    out.push(seed(
        "client_handshake",
        "403",
        &[3 << 2, 0, 0, 0],
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
    ));
    out.push(seed(
        "client_handshake",
        "wrong-accept",
        &[3 << 2, 0, 0, 0],
        &response_101("AAAAAAAAAAAAAAAAAAAAAAAAAAA=", ""),
    ));

    // extensions: [server policy, client policy] then offers/answers, one per line.
    out.push(seed(
        "extensions",
        "browser-offer",
        &[0, 0],
        b"permessage-deflate; client_max_window_bits\npermessage-deflate",
    ));
    out.push(seed(
        "extensions",
        "all-parameters",
        &[0xFF, 0x5A],
        b"permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
server_max_window_bits=10; client_max_window_bits=12",
    ));
    out.push(seed(
        "extensions",
        "odd-parameters",
        &[0x13, 0x31],
        b"x-unknown; a=1, permessage-deflate; client_max_window_bits=\"9\"; foo\n\
permessage-deflate; server_max_window_bits=8, ;;, permessage-deflate",
    ));
    out
}
