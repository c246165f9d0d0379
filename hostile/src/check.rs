//! Invariant-checking harnesses: one function per fuzz target, each taking the fuzzer's
//! bytes and panicking (with a message that names the invariant) when one breaks.
//!
//! Every harness reads a few control bytes first (role, limits, where to split the
//! input) and treats the rest as what a peer sent. Inputs too short for the control
//! bytes are ignored. The same functions run under `cargo fuzz` and under `cargo test`
//! (`tests/fuzz_regressions.rs` replays `fuzz/regressions/<target>/*` and
//! `fuzz/seeds/<target>/*`).

use std::time::{Duration, Instant};

use bytes::BytesMut;
use duplex_codec::{
    DecodeError, Decoded, Decoder, FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, Masking,
    OpCode,
};
use duplex_core::{Connection, DeflateParams, EngineConfig, Error, Message, Role};
use duplex_handshake::http::{HeaderMap, Method, StatusCode, Uri, Version};
use duplex_handshake::{
    ClientOffer, ClientRequest, DeflateConfig, DeflateNegotiation, HandshakeError, Limits,
    ServerHandshake, parse_response, write_response,
};

/// A fuzz target: its name (the file name under `fuzz/fuzz_targets/` and the directory
/// under `fuzz/regressions/` and `fuzz/seeds/`) and its harness.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// The target's name.
    pub name: &'static str,
    /// The harness: panics when an invariant breaks.
    pub run: fn(&[u8]),
}

/// Every fuzz target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "decoder",
        run: decoder,
    },
    Target {
        name: "core",
        run: core,
    },
    Target {
        name: "server_handshake",
        run: server_handshake,
    },
    Target {
        name: "client_handshake",
        run: client_handshake,
    },
    Target {
        name: "extensions",
        run: extensions,
    },
];

/// Close codes an endpoint may put in a close frame (RFC 6455 section 7.4, IANA
/// registry): written here independently of `duplex-core`'s own table.
pub fn close_code_allowed_on_wire(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A size limit picked by one control byte: the edges (0, 1, 125/126/127, 64 KiB) and a
/// spread of small values.
pub fn small_limit(byte: u8) -> usize {
    match byte % 8 {
        0 => 0,
        1 => 1,
        2 => 125,
        3 => 126,
        4 => 65_535,
        5 => 65_536,
        _ => usize::from(byte) * 97,
    }
}

/// Cuts the input into pieces whose sizes cycle through control bytes (0 = the rest).
struct Splitter<'a> {
    sizes: &'a [u8],
    next: usize,
}

impl<'a> Splitter<'a> {
    fn new(sizes: &'a [u8]) -> Self {
        Self { sizes, next: 0 }
    }

    fn pieces(mut self, mut data: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        while !data.is_empty() {
            let size = match self.sizes.get(self.next % self.sizes.len().max(1)) {
                Some(&s) if s > 0 => usize::from(s).min(data.len()),
                _ => data.len(),
            };
            self.next += 1;
            let (piece, rest) = data.split_at(size);
            out.push(piece);
            data = rest;
        }
        out
    }
}

// ----- codec -----

/// What a decoder made of a byte stream: each frame's header, its payload joined, and
/// whether it ended; then the error, if the stream broke.
#[derive(Debug, PartialEq, Eq)]
struct DecodedStream {
    frames: Vec<(FrameHeader, Vec<u8>, bool)>,
    error: Option<DecodeError>,
    leftover: usize,
}

/// Decodes `pieces` fed one at a time, checking every item against the rules of the
/// decoder's contract.
fn decode_pieces(masking: Masking, max: u64, pieces: &[&[u8]]) -> DecodedStream {
    let mut decoder = Decoder::new(masking, max);
    let mut buf = BytesMut::new();
    let mut out = DecodedStream {
        frames: Vec::new(),
        error: None,
        leftover: 0,
    };
    'pieces: for piece in pieces {
        buf.extend_from_slice(piece);
        // Every item consumes at least one byte or completes a frame; bound the loop.
        for _ in 0..=2 * buf.len() + 2 {
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(None) => {
                    assert!(
                        buf.len() <= MAX_HEADER_LEN + MAX_CONTROL_PAYLOAD,
                        "decoder waits while holding {} bytes: more than a header and a \
                         control payload",
                        buf.len()
                    );
                    assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                    continue 'pieces;
                }
                Ok(Some(Decoded::Frame {
                    header,
                    payload,
                    complete,
                })) => {
                    if let Some((_, _, done)) = out.frames.last() {
                        assert!(*done, "a new frame started before the last one ended");
                    }
                    assert!(header.payload_len <= max, "frame over max_frame_size");
                    assert!(header.payload_len < 1 << 63, "length with the top bit");
                    match masking {
                        Masking::Required => assert!(header.mask.is_some(), "unmasked"),
                        Masking::Forbidden => assert!(header.mask.is_none(), "masked"),
                        Masking::Any => {}
                    }
                    if header.opcode.is_control() {
                        assert!(header.fin, "fragmented control frame accepted");
                        assert!(
                            header.payload_len <= MAX_CONTROL_PAYLOAD as u64,
                            "control frame over 125 bytes"
                        );
                        assert!(complete, "control frame not delivered whole");
                    }
                    assert!(payload.len() as u64 <= header.payload_len);
                    assert_eq!(complete, payload.len() as u64 == header.payload_len);
                    assert_eq!(
                        decoder.is_at_frame_boundary(),
                        complete,
                        "frame boundary state"
                    );
                    out.frames.push((header, payload.to_vec(), complete));
                }
                Ok(Some(Decoded::Continue { payload, complete })) => {
                    let Some((header, joined, done)) = out.frames.last_mut() else {
                        panic!("payload piece before any frame");
                    };
                    assert!(!*done, "payload piece after the frame ended");
                    assert!(complete || !payload.is_empty(), "empty incomplete piece");
                    joined.extend_from_slice(&payload);
                    assert!(joined.len() as u64 <= header.payload_len, "payload overrun");
                    assert_eq!(complete, joined.len() as u64 == header.payload_len);
                    *done = complete;
                }
                Err(error) => {
                    // The failure sticks.
                    assert_eq!(decoder.decode(&mut buf), Err(error.clone()));
                    if let DecodeError::FrameTooLarge { len, max: m } = error {
                        assert!(len > m && m == max);
                    }
                    out.error = Some(error);
                    out.leftover = buf.len();
                    return out;
                }
            }
        }
        panic!("decoder made no progress");
    }
    out.leftover = buf.len();
    out
}

/// Fuzz target `decoder`: `duplex_codec::Decoder` on arbitrary bytes.
///
/// Control bytes: `[masking, max_frame_size, split sizes x4]`.
///
/// Invariants: frames respect the masking rule, the size limit, the control frame rules;
/// payload pieces add up to the declared length; the decoder never waits while holding
/// more than a header and a control payload; an error sticks; and decoding the input
/// whole or split at the chosen points gives the same frames, payloads and error.
pub fn decoder(data: &[u8]) {
    let [mode, limit, s0, s1, s2, s3, input @ ..] = data else {
        return;
    };
    let masking = match mode % 3 {
        0 => Masking::Required,
        1 => Masking::Forbidden,
        _ => Masking::Any,
    };
    let max = if mode & 0x80 != 0 {
        u64::MAX
    } else {
        small_limit(*limit) as u64
    };
    let whole = decode_pieces(masking, max, &[input]);
    let split = decode_pieces(
        masking,
        max,
        &Splitter::new(&[*s0, *s1, *s2, *s3]).pieces(input),
    );
    // The leftover after an error depends on where the error was seen.
    let strip = |s: DecodedStream| DecodedStream { leftover: 0, ..s };
    let (whole_leftover, split_leftover) = (whole.leftover, split.leftover);
    let (whole, split) = (strip(whole), strip(split));
    assert_eq!(whole, split, "splitting the input changed what was decoded");
    if whole.error.is_none() {
        assert_eq!(whole_leftover, split_leftover);
    }
}

// ----- engine -----

/// Bytes the engine may hold between reads: the message being assembled plus a partial
/// header or a partial control frame.
fn input_bound(config: &EngineConfig) -> usize {
    config.size_limits().max_message_size + MAX_HEADER_LEN + MAX_CONTROL_PAYLOAD
}

/// Fuzz target `core`: a `duplex_core::Connection` fed arbitrary bytes split at arbitrary
/// points, as a server or as a client, with small limits.
///
/// Control bytes: `[flags, max_frame_size, max_message_size, max_fragments, deflate,
/// split sizes x4]`. Flags: bit 0 client role; bit 1 the output is written (drained)
/// after every read; bit 2 automatic pongs off; bit 3 end of file after the input; bit 4
/// permessage-deflate on; bit 5 the application sends a message after every read; bit 6
/// a deadline far in the future passes at the end. The deflate byte: bits 0-1 no context
/// takeover (server, client), bit 2 an 8-bit window for our side (we then never
/// compress), the whole byte picks `max_decompressed_size`.
///
/// Invariants: `buffered_input()` stays within the limits plus what was just fed; every
/// message respects the limits (`max_decompressed_size` for compressed ones); the
/// engine's whole output decodes (with `Masking::Any`) into well-formed frames, masked
/// exactly when we are the client, RSV1 only on the first frame of a compressed message,
/// with at most one close frame, nothing after it, and a close code that is valid on the
/// wire; a run that failed with an error that has a close code has queued a close frame
/// with that code (unless a close frame was already queued) and then wants the transport
/// closed; pongs only answer pings; without draining, the output stays bounded; and a
/// peer engine fed our output receives exactly the messages the application sent.
pub fn core(data: &[u8]) {
    let [
        flags,
        frame_sel,
        message_sel,
        fragments,
        deflate_sel,
        s0,
        s1,
        s2,
        s3,
        input @ ..,
    ] = data
    else {
        return;
    };
    let role = if flags & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let drain = flags & 2 != 0;
    let auto_pong = flags & 4 == 0;
    let eof = flags & 8 != 0;
    let app_sends = flags & 32 != 0;
    let late_timeout = flags & 64 != 0;
    let deflate = (flags & 16 != 0).then(|| {
        let our_bits = if deflate_sel & 4 != 0 { 8 } else { 15 };
        DeflateParams {
            server_no_context_takeover: deflate_sel & 1 != 0,
            client_no_context_takeover: deflate_sel & 2 != 0,
            server_max_window_bits: if role == Role::Server { our_bits } else { 15 },
            client_max_window_bits: if role == Role::Client { our_bits } else { 15 },
        }
    });
    let max_decompressed = small_limit(deflate_sel.rotate_right(3));
    let config = EngineConfig::default()
        .max_frame_size(small_limit(*frame_sel))
        .max_message_size(small_limit(*message_sel))
        .max_fragments(usize::from(*fragments % 32) + 1)
        .max_write_buffer(4096)
        .max_decompressed_size(max_decompressed)
        .auto_pong(auto_pong);
    let max_message = config.size_limits().max_message_size;
    let (bound, max_message) = match deflate {
        // The compressed bytes count against max_message_size, the inflated ones against
        // max_decompressed_size.
        Some(_) => (
            input_bound(&config) + max_decompressed,
            max_message.max(max_decompressed),
        ),
        None => (input_bound(&config), max_message),
    };
    let mut conn = Connection::new(role, config);
    if let Some(params) = deflate {
        conn.enable_deflate(params);
    }
    let now = Instant::now();

    let mut written = Vec::new();
    let mut failure: Option<(Error, bool)> = None;
    let mut pings = Vec::new();
    let mut closed_by_peer = false;
    let mut sent_messages: Vec<Vec<u8>> = Vec::new();

    let handle_events = |conn: &mut Connection,
                         failure: &mut Option<(Error, bool)>,
                         pings: &mut Vec<Vec<u8>>,
                         closed_by_peer: &mut bool| {
        // Each event consumes input; a generous bound catches a loop that does not.
        for _ in 0..=input.len() + 8 {
            let close_queued_before = conn.is_close_sent();
            let Some(event) = conn.poll_event(now) else {
                assert!(
                    conn.buffered_input() <= bound,
                    "engine holds {} bytes after parsing, bound {bound}",
                    conn.buffered_input()
                );
                return;
            };
            match event {
                Ok(Message::Text(text)) => assert!(text.len() <= max_message),
                Ok(Message::Binary(data)) => assert!(data.len() <= max_message),
                Ok(Message::Ping(data)) => {
                    assert!(data.len() <= MAX_CONTROL_PAYLOAD);
                    pings.push(data.to_vec());
                }
                Ok(Message::Pong(data)) => assert!(data.len() <= MAX_CONTROL_PAYLOAD),
                Ok(Message::Close(_)) => {
                    assert!(!*closed_by_peer, "two close events");
                    *closed_by_peer = true;
                }
                Err(error) => {
                    if error.close_code().is_some() {
                        assert!(
                            failure.is_none(),
                            "a second failure after {failure:?}: {error:?}"
                        );
                        *failure = Some((error, close_queued_before));
                    }
                }
            }
        }
        panic!("poll_event kept returning events without consuming input");
    };

    for piece in Splitter::new(&[*s0, *s1, *s2, *s3]).pieces(input) {
        let before = conn.buffered_input();
        conn.receive(piece);
        assert!(
            conn.buffered_input() <= before.max(bound) + piece.len(),
            "receive grew the input beyond the bound plus what was fed"
        );
        handle_events(&mut conn, &mut failure, &mut pings, &mut closed_by_peer);
        if app_sends && !conn.is_close_sent() {
            let payload = vec![0xA5; (sent_messages.len() * 37) % 300];
            let result = conn.send(Message::binary(payload.clone()));
            match result {
                Ok(()) => sent_messages.push(payload),
                Err(Error::Usage(_)) => {}
                Err(other) => panic!("send failed with {other:?}"),
            }
        }
        if drain {
            take_output(&mut conn, &mut written);
        } else if !app_sends {
            // Pongs collapse: at most 16 queued plus the latest, and one close frame.
            assert!(
                conn.output_len() <= 17 * (MAX_CONTROL_PAYLOAD + 2) + MAX_CONTROL_PAYLOAD + 2,
                "output grew to {} bytes without application sends",
                conn.output_len()
            );
        }
    }
    if eof {
        conn.receive_eof();
        handle_events(&mut conn, &mut failure, &mut pings, &mut closed_by_peer);
    }
    if late_timeout {
        conn.handle_timeout(now + Duration::from_secs(3600));
        handle_events(&mut conn, &mut failure, &mut pings, &mut closed_by_peer);
    }
    take_output(&mut conn, &mut written);

    check_output(role, &written, failure.as_ref(), &pings, auto_pong, deflate);
    check_peer_receives(role, &written, &sent_messages, deflate);
    if failure.is_some() {
        assert!(conn.is_closed(), "failed connection not closed");
        assert!(
            conn.poll_transport(now + Duration::from_secs(7200))
                != duplex_core::TransportAction::Continue,
            "failed connection with its output written keeps its transport"
        );
    }
}

fn take_output(conn: &mut Connection, written: &mut Vec<u8>) {
    // Partial writes as a socket would make them.
    for _ in 0..1_000_000 {
        let chunk = conn.pending_output();
        if chunk.is_empty() {
            assert_eq!(
                conn.output_len(),
                0,
                "pending_output empty with bytes queued"
            );
            return;
        }
        let n = chunk.len().min(4096);
        written.extend_from_slice(&chunk[..n]);
        conn.consume_output(n);
    }
    panic!("output never drained");
}

fn check_output(
    role: Role,
    written: &[u8],
    failure: Option<&(Error, bool)>,
    pings: &[Vec<u8>],
    auto_pong: bool,
    deflate: Option<DeflateParams>,
) {
    let mut decoder = Decoder::new(Masking::Any, u64::MAX);
    let mut buf = BytesMut::from(written);
    let mut frames: Vec<(FrameHeader, Vec<u8>)> = Vec::new();
    while !buf.is_empty() {
        match decoder.decode(&mut buf) {
            Ok(Some(Decoded::Frame {
                header, payload, ..
            })) => frames.push((header, payload.to_vec())),
            Ok(Some(Decoded::Continue { payload, .. })) => {
                frames
                    .last_mut()
                    .expect("frame")
                    .1
                    .extend_from_slice(&payload);
            }
            Ok(None) => panic!("output ends inside a frame header"),
            Err(error) => panic!("our own output does not decode: {error}"),
        }
    }
    assert!(decoder.is_at_frame_boundary(), "output ends inside a frame");
    let mut close: Option<Option<u16>> = None;
    let mut pongs = 0usize;
    let mut in_message = false;
    for (header, payload) in &frames {
        assert!(close.is_none(), "a frame after our close frame");
        assert_eq!(
            header.mask.is_some(),
            role == Role::Client,
            "masking of our own frames"
        );
        assert!(!header.rsv2 && !header.rsv3, "RSV2/RSV3 on our own frame");
        let starts_message = matches!(header.opcode, OpCode::Text | OpCode::Binary);
        if header.rsv1 {
            assert!(deflate.is_some(), "RSV1 without permessage-deflate");
            assert!(starts_message, "RSV1 on a frame that starts no message");
        }
        if !header.opcode.is_control() {
            assert_eq!(
                starts_message, !in_message,
                "fragment order of our own output"
            );
            in_message = !header.fin;
        }
        match header.opcode {
            OpCode::Close => {
                let code = match payload.as_slice() {
                    [] => None,
                    [_] => panic!("one-byte close payload"),
                    [hi, lo, reason @ ..] => {
                        let code = u16::from_be_bytes([*hi, *lo]);
                        assert!(
                            close_code_allowed_on_wire(code),
                            "close code {code} sent on the wire"
                        );
                        assert!(std::str::from_utf8(reason).is_ok(), "close reason UTF-8");
                        assert!(reason.len() <= 123);
                        Some(code)
                    }
                };
                close = Some(code);
            }
            OpCode::Pong => {
                assert!(auto_pong, "a pong with automatic pongs off");
                assert!(
                    pings.iter().any(|p| p == payload),
                    "a pong that answers no ping"
                );
                pongs += 1;
            }
            _ => {}
        }
    }
    assert!(pongs <= pings.len(), "more pongs than pings");
    if let Some((error, close_before)) = failure {
        let expected = error.close_code().map(|c| c.as_u16());
        let Some(sent) = close else {
            panic!("failed with {error:?} but queued no close frame");
        };
        if !close_before {
            assert_eq!(sent, expected, "close code for {error:?}");
        }
    }
}

/// Feeds our output to an engine of the other role: it must decode without error into
/// exactly the data messages the application sent, in order.
fn check_peer_receives(
    role: Role,
    written: &[u8],
    sent: &[Vec<u8>],
    deflate: Option<DeflateParams>,
) {
    let peer_role = match role {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    };
    let mut peer = Connection::new(peer_role, EngineConfig::default());
    if let Some(params) = deflate {
        peer.enable_deflate(params);
    }
    peer.receive(written);
    peer.receive_eof();
    let now = Instant::now();
    let mut received = Vec::new();
    for _ in 0..=written.len() + 2 {
        match peer.poll_event(now) {
            None => break,
            Some(Ok(message)) if message.is_data() => received.push(message.payload().to_vec()),
            Some(Ok(_)) => {}
            Some(Err(Error::PeerVanished { mid_message: false })) => {}
            Some(Err(error)) => panic!("a peer refuses our output: {error:?}"),
        }
    }
    assert_eq!(received.len(), sent.len(), "messages the peer received");
    assert!(received == sent, "a message changed on its way to the peer");
}

// ----- handshake -----

/// A parsed request, comparable.
#[derive(Debug, PartialEq)]
struct ParsedRequest {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    rest: Vec<u8>,
}

fn feed_request(
    limits: Limits,
    pieces: &[&[u8]],
) -> (Result<Option<ParsedRequest>, HandshakeError>, usize) {
    let mut handshake = ServerHandshake::new(limits);
    let mut fed = 0;
    for (i, piece) in pieces.iter().enumerate() {
        fed += piece.len();
        match handshake.feed(piece) {
            Ok(None) => {}
            Ok(Some((request, rest))) => {
                let head_len = fed - rest.len();
                let mut rest = rest.to_vec();
                for later in &pieces[i + 1..] {
                    rest.extend_from_slice(later);
                }
                let (parts, ()) = request.into_parts();
                return (
                    Ok(Some(ParsedRequest {
                        method: parts.method,
                        uri: parts.uri,
                        version: parts.version,
                        headers: parts.headers,
                        rest,
                    })),
                    head_len,
                );
            }
            Err(error) => return (Err(error), fed),
        }
    }
    (Ok(None), fed)
}

fn handshake_limits(flags: u8) -> Limits {
    Limits {
        max_head_size: [64, 300, 2048, 16 << 10][usize::from(flags & 3)],
        max_headers: [1, 8, 64, 100][usize::from((flags >> 2) & 3)],
    }
}

fn check_rejection(error: &HandshakeError) {
    let status = error.status();
    assert!(
        [400, 405, 426, 431].contains(&status.as_u16()),
        "handshake error {error:?} answered with {status}"
    );
    let mut bytes = Vec::new();
    write_response(&error.response(), &mut bytes);
    let head = format!("HTTP/1.1 {} ", status.as_u16());
    assert!(bytes.starts_with(head.as_bytes()));
}

/// Fuzz target `server_handshake`: `ServerHandshake::feed` then
/// `ClientOffer::from_request` on arbitrary bytes.
///
/// Control bytes: `[limits, split sizes x3]`.
///
/// Invariants: feeding the input whole or in pieces gives the same request (or error);
/// a complete head is within `max_head_size` and the bytes after it are handed back
/// exactly; every refusal is answered with 400, 405, 426 or 431; a valid offer can be
/// accepted with no subprotocol and with each subprotocol it offered, never with one it
/// did not; the 101 parses back with the right `Sec-WebSocket-Accept`.
pub fn server_handshake(data: &[u8]) {
    let [flags, s0, s1, s2, input @ ..] = data else {
        return;
    };
    let limits = handshake_limits(*flags);
    let (whole, whole_len) = feed_request(limits, &[input]);
    let pieces = Splitter::new(&[*s0, *s1, *s2]).pieces(input);
    let (split, split_len) = feed_request(limits, &pieces);
    assert_eq!(whole, split, "splitting the request changed the outcome");
    let request = match whole {
        Ok(None) => return,
        Err(error) => return check_rejection(&error),
        Ok(Some(request)) => request,
    };
    assert_eq!(whole_len, split_len, "head length");
    assert!(whole_len <= limits.max_head_size, "head over the limit");
    assert_eq!(
        &input[whole_len..],
        &request.rest[..],
        "bytes after the head"
    );

    let mut http_request = duplex_handshake::http::Request::new(());
    *http_request.method_mut() = request.method.clone();
    *http_request.uri_mut() = request.uri.clone();
    *http_request.version_mut() = request.version;
    *http_request.headers_mut() = request.headers.clone();
    let offer = match ClientOffer::from_request(&http_request) {
        Ok(offer) => offer,
        Err(error) => return check_rejection(&error),
    };
    let response = offer.accept(None).expect("a valid offer can be accepted");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    let mut bytes = Vec::new();
    write_response(&response, &mut bytes);
    let parsed = parse_response(&bytes, 64).expect("our 101 parses");
    assert_eq!(
        parsed.headers()["sec-websocket-accept"].as_bytes(),
        offer
            .accept_key()
            .expect("an HTTP/1.1 offer has a key")
            .as_bytes()
    );
    for protocol in offer.protocols().iter().take(8) {
        let response = offer
            .accept(Some(protocol))
            .unwrap_or_else(|e| panic!("offered protocol {protocol:?} refused: {e:?}"));
        assert_eq!(
            response.headers()["sec-websocket-protocol"].as_bytes(),
            protocol.as_bytes()
        );
        assert_eq!(offer.select_protocol(&[protocol]), Some(protocol.as_str()));
    }
    let unoffered = "x-never-offered-\u{1F980}";
    assert!(offer.accept(Some(unoffered)).is_err());
    assert!(offer.accept(Some("bad value\r\n")).is_err());
}

/// A parsed response, comparable, without the key-dependent accept value.
#[derive(Debug, PartialEq)]
struct ParsedResponse {
    status: StatusCode,
    headers: HeaderMap,
    protocol: Option<String>,
    extensions: Vec<String>,
    rest: Vec<u8>,
}

/// The placeholder a client-handshake input uses for the `Sec-WebSocket-Accept` value
/// that matches the (random) key of the request: replaced before feeding.
pub const ACCEPT_PLACEHOLDER: &[u8] = b"@ACCEPT@";

fn key_of(request: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(request);
    let start = text.find("Sec-WebSocket-Key: ").expect("key header") + 19;
    let end = start + text[start..].find("\r\n").expect("line end");
    text.as_bytes()[start..end].to_vec()
}

fn replace_all(input: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    out
}

fn feed_response(
    flags: u8,
    split: Option<&[u8]>,
    input: &[u8],
) -> Result<Option<ParsedResponse>, HandshakeError> {
    let mut request = ClientRequest::new("ws://127.0.0.1:9001/chat")
        .expect("url")
        .limits(handshake_limits(flags >> 2));
    let offered_protocols = flags & 1 != 0;
    if offered_protocols {
        request = request.protocol("chat").protocol("superchat");
    }
    let offered_extensions = flags & 2 != 0;
    if offered_extensions {
        request = request.extension("permessage-deflate; client_max_window_bits");
    }
    let (bytes, handshake) = request.encode();
    let accept = duplex_handshake::accept_key(&key_of(&bytes));
    feed_planted(handshake, flags, split, input, &accept)
        .map_err(|error| unplant_error(error, &accept))
}

/// The accept value depends on each run's random key: wherever it landed in what a
/// result carries (a refusal's headers and body, an error's text), the placeholder is
/// put back, so that two runs with different keys compare equal.
fn unplant_error(error: HandshakeError, accept: &str) -> HandshakeError {
    let unplant = |text: String| {
        String::from_utf8_lossy(&replace_all(
            text.as_bytes(),
            accept.as_bytes(),
            ACCEPT_PLACEHOLDER,
        ))
        .into_owned()
    };
    match error {
        HandshakeError::Refused(mut refused) => {
            refused.body = replace_all(&refused.body, accept.as_bytes(), ACCEPT_PLACEHOLDER).into();
            refused.headers = unplant_headers(&refused.headers, accept);
            HandshakeError::Refused(refused)
        }
        HandshakeError::Malformed(text) => HandshakeError::Malformed(unplant(text)),
        HandshakeError::UnsupportedVersion(text) => {
            HandshakeError::UnsupportedVersion(unplant(text))
        }
        HandshakeError::UnofferedSubprotocol(text) => {
            HandshakeError::UnofferedSubprotocol(unplant(text))
        }
        HandshakeError::UnofferedExtension(text) => {
            HandshakeError::UnofferedExtension(unplant(text))
        }
        HandshakeError::InvalidExtension(text) => HandshakeError::InvalidExtension(unplant(text)),
        other => other,
    }
}

/// `headers` with the accept value replaced by the placeholder (and without
/// `Sec-WebSocket-Accept` itself, which is checked, not compared).
fn unplant_headers(headers: &HeaderMap, accept: &str) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        if name == "sec-websocket-accept" {
            continue;
        }
        let value = replace_all(value.as_bytes(), accept.as_bytes(), ACCEPT_PLACEHOLDER);
        let value = duplex_handshake::http::HeaderValue::from_bytes(&value)
            .expect("the placeholder is a valid header value");
        out.append(name.clone(), value);
    }
    out
}

fn feed_planted(
    mut handshake: duplex_handshake::ClientHandshake,
    flags: u8,
    split: Option<&[u8]>,
    input: &[u8],
    accept: &str,
) -> Result<Option<ParsedResponse>, HandshakeError> {
    let offered_protocols = flags & 1 != 0;
    let offered_extensions = flags & 2 != 0;
    let input = replace_all(input, ACCEPT_PLACEHOLDER, accept.as_bytes());
    let pieces = match split {
        Some(sizes) => Splitter::new(sizes).pieces(&input),
        None => vec![&input[..]],
    };
    let limits = handshake_limits(flags >> 2);
    let mut fed = 0;
    for (i, piece) in pieces.iter().enumerate() {
        fed += piece.len();
        if let Some((response, negotiated, rest)) = handshake.feed(piece)? {
            assert!(
                fed - rest.len() <= limits.max_head_size,
                "head over the limit"
            );
            assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
            if let Some(protocol) = &negotiated.protocol {
                assert!(
                    offered_protocols,
                    "protocol {protocol:?} accepted unoffered"
                );
                assert!(["chat", "superchat"].contains(&protocol.as_str()));
            }
            if !negotiated.extensions.is_empty() {
                assert!(offered_extensions, "extensions accepted unoffered");
            }
            let mut rest = rest.to_vec();
            for later in &pieces[i + 1..] {
                rest.extend_from_slice(later);
            }
            // The accept value depends on the request's random key: put the placeholder
            // back wherever it landed (any header, or the bytes after the head), so that
            // two runs with different keys compare equal.
            let rest = replace_all(&rest, accept.as_bytes(), ACCEPT_PLACEHOLDER);
            let headers = unplant_headers(response.headers(), accept);
            return Ok(Some(ParsedResponse {
                status: response.status(),
                headers,
                protocol: negotiated.protocol,
                extensions: negotiated.extensions,
                rest,
            }));
        }
    }
    Ok(None)
}

/// Fuzz target `client_handshake`: `ClientHandshake::feed` on an arbitrary response.
///
/// Control bytes: `[flags, split sizes x3]`; flags: bit 0 offer subprotocols `chat` and
/// `superchat`, bit 1 offer permessage-deflate, bits 2-5 the head limits. Every
/// `@ACCEPT@` in the input becomes the accept value that matches the request's key.
///
/// Invariants: whole or split, the same outcome; an accepted response is a 101 within
/// the head limit, with a subprotocol and extensions only if offered.
pub fn client_handshake(data: &[u8]) {
    let [flags, s0, s1, s2, input @ ..] = data else {
        return;
    };
    let whole = feed_response(*flags, None, input);
    let split = feed_response(*flags, Some(&[*s0, *s1, *s2]), input);
    assert_eq!(whole, split, "splitting the response changed the outcome");
}

// ----- permessage-deflate -----

/// A permessage-deflate policy picked by one control byte.
fn deflate_policy(byte: u8) -> DeflateConfig {
    DeflateConfig {
        server_no_context_takeover: byte & 1 != 0,
        client_no_context_takeover: byte & 2 != 0,
        server_max_window_bits: 9 + (byte >> 2) % 7,
        client_max_window_bits: 9 + (byte >> 5) % 7,
    }
}

fn window_bits_valid(params: &DeflateParams) -> bool {
    (8..=15).contains(&params.server_max_window_bits)
        && (8..=15).contains(&params.client_max_window_bits)
}

/// Fuzz target `extensions`: permessage-deflate negotiation (RFC 7692) and the
/// compression round trip.
///
/// Control bytes: `[server policy, client policy]`; the rest, cut at `\n`, is a list of
/// `Sec-WebSocket-Extensions` values, and also the payload of the round trip.
///
/// Invariants: a server's answer to arbitrary offers has valid window bits, is a valid
/// header value, and a client that offers everything reads the same parameters back
/// from it; a client's reading of an arbitrary answer respects what it asked for; a
/// server and a client with any two policies agree on the parameters; and with those
/// parameters, messages compressed by either side arrive intact at the other, twice in
/// a row (context takeover).
pub fn extensions(data: &[u8]) {
    let [server_sel, client_sel, input @ ..] = data else {
        return;
    };
    let server = deflate_policy(*server_sel);
    let client = deflate_policy(*client_sel);
    let values: Vec<String> = input
        .split(|b| *b == b'\n')
        .take(16)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();

    // A server facing arbitrary offers.
    if let Some((params, answer)) = server.negotiate(&values) {
        assert!(window_bits_valid(&params), "negotiated {params:?}");
        assert!(
            duplex_handshake::http::HeaderValue::from_str(&answer).is_ok(),
            "answer {answer:?} is not a header value"
        );
        if params.server_max_window_bits < 15 {
            assert!(params.server_max_window_bits <= server.server_max_window_bits.max(9));
        }
        let lenient = DeflateConfig::default();
        match lenient.accept_response(std::slice::from_ref(&answer)) {
            Ok(Some(read_back)) => assert_eq!(read_back, params, "answer {answer:?}"),
            other => panic!("our answer {answer:?} is refused by a client: {other:?}"),
        }
    }

    // A client facing arbitrary answers.
    if let Ok(Some(params)) = client.accept_response(&values) {
        assert!(window_bits_valid(&params), "accepted {params:?}");
        if client.server_no_context_takeover {
            assert!(params.server_no_context_takeover);
        }
        if client.server_max_window_bits < 15 {
            assert!(params.server_max_window_bits <= client.server_max_window_bits.max(9));
        }
        if client.client_max_window_bits < 15 {
            assert!(params.client_max_window_bits <= client.client_max_window_bits.max(9));
        }
    }

    // Two of our own agree.
    let offer = client.offer();
    let Some((params, answer)) = server.negotiate(std::slice::from_ref(&offer)) else {
        panic!("our server declines our client's offer {offer:?}");
    };
    match client.accept_response(std::slice::from_ref(&answer)) {
        Ok(Some(read_back)) => assert_eq!(read_back, params, "{offer:?} -> {answer:?}"),
        other => panic!("our client refuses our server's answer {answer:?}: {other:?}"),
    }

    // And then understand each other's compressed messages.
    let config = EngineConfig::default().compression_threshold(0);
    let mut server_conn = Connection::new(Role::Server, config.clone());
    let mut client_conn = Connection::new(Role::Client, config);
    server_conn.enable_deflate(params);
    client_conn.enable_deflate(params);
    let now = Instant::now();
    for round in 0..4 {
        let (from, to) = if round < 2 {
            (&mut client_conn, &mut server_conn)
        } else {
            (&mut server_conn, &mut client_conn)
        };
        let message = if round % 2 == 0 {
            Message::binary(input.to_vec())
        } else {
            Message::text(String::from_utf8_lossy(input).into_owned())
        };
        let expected = message.payload().to_vec();
        from.send(message).expect("send");
        let mut wire = Vec::new();
        take_output(from, &mut wire);
        to.receive(&wire);
        match to.poll_event(now) {
            Some(Ok(received)) => assert!(
                received.payload() == expected.as_slice(),
                "round {round}: the message changed ({params:?})"
            ),
            other => panic!("round {round}: {other:?} ({params:?})"),
        }
        assert!(to.poll_event(now).is_none());
    }
}
