//! What the load generator puts on the wire and how it checks what comes back: the
//! upgrade request (a fixed key, so the expected accept value is a constant), the
//! pre-masked message frames (built once per size, reused for every send) and a
//! streaming reader that compares every echoed payload byte with what was sent,
//! without copying or buffering whole messages.

use std::collections::VecDeque;

/// The `Sec-WebSocket-Accept` that the fixed `Sec-WebSocket-Key` of every connection
/// (`wire_kit::KEY`, the one of RFC 6455 section 1.3) must get back.
pub use wire_kit::ACCEPT;
/// The fixed masking key of every frame the generator sends.
pub const MASK: [u8; 4] = [0x5a, 0xc3, 0x1e, 0x97];
/// How many different payloads are sent in turn, so that a lost, duplicated or
/// reordered echo shows up as a mismatch.
pub const VARIANTS: usize = 8;
/// The largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

pub use crate::conformance::handshake::WsUrl;

/// The upgrade request for `url`: fixed key, no extensions offered (so
/// permessage-deflate is never negotiated), no subprotocol.
pub fn upgrade_request(url: &WsUrl) -> Vec<u8> {
    wire_kit::upgrade_request(&url.path, &url.addr(), "")
}

/// The upgrade request for `url` offering `extensions` (a
/// `Sec-WebSocket-Extensions` value) when given.
pub fn upgrade_request_offering(url: &WsUrl, extensions: Option<&str>) -> Vec<u8> {
    match extensions {
        None => upgrade_request(url),
        Some(offer) => wire_kit::upgrade_request(
            &url.path,
            &url.addr(),
            &format!("Sec-WebSocket-Extensions: {offer}\r\n"),
        ),
    }
}

/// How echoes are checked: binary payloads compared byte by byte as they stream in,
/// or whole JSON messages, inflated first when compressed (`--deflate`).
#[derive(Debug)]
pub enum Checker {
    /// [`EchoReader`].
    Binary(EchoReader),
    /// [`super::deflate::DeflateReader`].
    Json(Box<super::deflate::DeflateReader>),
}

impl Checker {
    /// A checker of the kind `messages` needs: JSON ones are text.
    pub fn for_messages(messages: &Messages) -> Checker {
        let text = messages
            .variants
            .first()
            .is_some_and(|v| v.frame[0] & 0x0f == wire_kit::OP_TEXT);
        if text {
            Checker::Json(Box::default())
        } else {
            Checker::Binary(EchoReader::new())
        }
    }

    /// See [`EchoReader::feed`].
    pub fn feed(
        &mut self,
        data: &[u8],
        messages: &Messages,
        expected: &mut VecDeque<u8>,
        done: impl FnMut(u8),
    ) -> Result<(), EchoError> {
        match self {
            Checker::Binary(r) => r.feed(data, messages, expected, done),
            Checker::Json(r) => r.feed(data, messages, expected, done),
        }
    }

    /// Messages that came back different.
    pub fn mismatches(&self) -> u64 {
        match self {
            Checker::Binary(r) => r.mismatches,
            Checker::Json(r) => r.mismatches,
        }
    }
}

/// A complete, valid `101` response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Length of the head, including the final empty line; what follows is frames.
    pub head_len: usize,
    /// The `Sec-WebSocket-Extensions` the server answered with, if any.
    pub extensions: Option<String>,
}

/// Parses the server's response head from the start of `buf`: `Ok(None)` while it is
/// incomplete, an error unless it is a `101` with the right accept value.
pub fn parse_response(buf: &[u8]) -> Result<Option<Accepted>, String> {
    let Some((head, _)) = wire_kit::split_head(buf) else {
        if buf.len() > MAX_HEAD {
            return Err("response head over 16 KiB".into());
        }
        return Ok(None);
    };
    let parsed = wire_kit::Head::parse(head)?;
    if parsed.status != 101 {
        return Err(format!(
            "expected 101 Switching Protocols, got {}",
            parsed.status
        ));
    }
    match parsed.get("sec-websocket-accept") {
        Some(ACCEPT) => Ok(Some(Accepted {
            head_len: head.len(),
            extensions: parsed.get("sec-websocket-extensions").map(str::to_owned),
        })),
        Some(other) => Err(format!("wrong Sec-WebSocket-Accept {other:?}")),
        None => Err("no Sec-WebSocket-Accept".into()),
    }
}

/// The masked binary frame of one whole message, with [`MASK`].
pub fn client_binary(payload: &[u8]) -> Vec<u8> {
    wire_kit::frame(wire_kit::FIN | wire_kit::OP_BINARY, payload, Some(MASK))
}

/// One message the generator sends: its payload, the complete masked frame and the
/// masked payload (what a raw TCP echo sends back).
#[derive(Debug)]
pub struct Variant {
    /// The payload the server must echo.
    pub payload: Vec<u8>,
    /// The payload XOR [`MASK`], as it is on the wire.
    pub masked: Vec<u8>,
    /// The whole client frame: header, key, masked payload.
    pub frame: Vec<u8>,
}

/// The [`VARIANTS`] messages of one size, built once.
#[derive(Debug)]
pub struct Messages {
    /// The variants, sent in turn.
    pub variants: Vec<Variant>,
    /// Payload size of every variant.
    pub size: usize,
}

impl Messages {
    /// Builds [`VARIANTS`] binary messages of `size` bytes with different contents.
    pub fn new(size: usize) -> Messages {
        let variants = (0..VARIANTS)
            .map(|v| {
                let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ ((v as u64 + 1) << 32) ^ size as u64;
                let payload: Vec<u8> = (0..size)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        (state >> 24) as u8
                    })
                    .collect();
                let frame = client_binary(&payload);
                let masked = frame[frame.len() - size..].to_vec();
                Variant {
                    payload,
                    masked,
                    frame,
                }
            })
            .collect();
        Messages { variants, size }
    }
}

/// Where the reader is in the echoed byte stream.
#[derive(Debug, Clone, Copy)]
enum State {
    /// Collecting a frame header (at most 14 bytes).
    Header,
    /// Inside a data frame's payload.
    Data {
        remaining: u64,
        fin: bool,
        /// The frame came back masked with our own key (a raw TCP echo).
        masked: bool,
    },
    /// Skipping a control frame's payload (pings and pongs are ignored).
    Control { remaining: u64 },
}

/// What the reader found wrong. `Mismatch` is counted and reading goes on; the others
/// mean the stream can no longer be followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EchoError {
    /// The server sent a close frame.
    Closed,
    /// Something that cannot be an echo of what was sent.
    Protocol(String),
}

/// Follows the echoed frames and compares each payload byte with the message sent at
/// the same position.
#[derive(Debug)]
pub struct EchoReader {
    state: State,
    header: [u8; 14],
    header_len: usize,
    /// Bytes of the current message already compared (over continuation frames).
    offset: usize,
    /// Whether the current message already differed somewhere.
    differs: bool,
    /// Messages that came back with different bytes.
    pub mismatches: u64,
}

impl Default for EchoReader {
    fn default() -> Self {
        EchoReader::new()
    }
}

impl EchoReader {
    /// A reader at the start of a stream.
    pub fn new() -> EchoReader {
        EchoReader {
            state: State::Header,
            header: [0; 14],
            header_len: 0,
            offset: 0,
            differs: false,
            mismatches: 0,
        }
    }

    /// Reads `data`. `expected` holds the variant index of every message in flight,
    /// oldest first; each completed message pops one and calls `done(variant)`.
    pub fn feed(
        &mut self,
        mut data: &[u8],
        messages: &Messages,
        expected: &mut VecDeque<u8>,
        mut done: impl FnMut(u8),
    ) -> Result<(), EchoError> {
        while !data.is_empty() {
            match self.state {
                State::Header => {
                    let take = (14 - self.header_len).min(data.len());
                    self.header[self.header_len..self.header_len + take]
                        .copy_from_slice(&data[..take]);
                    let available = self.header_len + take;
                    let Some((len, used)) = self.parse_header(available)? else {
                        self.header_len = available;
                        data = &data[take..];
                        continue;
                    };
                    // Only part of what was copied belonged to the header.
                    data = &data[used - self.header_len..];
                    self.header_len = 0;
                    if self.state_is_data_end(len)? {
                        self.finish_frame(messages, expected, &mut done)?;
                    }
                }
                State::Data {
                    remaining,
                    fin,
                    masked,
                } => {
                    let n = (remaining as usize).min(data.len());
                    let Some(&variant) = expected.front() else {
                        return Err(EchoError::Protocol("data nobody asked for".into()));
                    };
                    let v = &messages.variants[variant as usize];
                    let reference = if masked { &v.masked } else { &v.payload };
                    let end = self.offset + n;
                    if end > reference.len() {
                        return Err(EchoError::Protocol(format!(
                            "echoed message longer than the {} bytes sent",
                            reference.len()
                        )));
                    }
                    if data[..n] != reference[self.offset..end] {
                        self.differs = true;
                    }
                    self.offset = end;
                    data = &data[n..];
                    let remaining = remaining - n as u64;
                    self.state = State::Data {
                        remaining,
                        fin,
                        masked,
                    };
                    if remaining == 0 {
                        self.finish_frame(messages, expected, &mut done)?;
                    }
                }
                State::Control { remaining } => {
                    let n = (remaining as usize).min(data.len());
                    data = &data[n..];
                    let remaining = remaining - n as u64;
                    self.state = if remaining == 0 {
                        State::Header
                    } else {
                        State::Control { remaining }
                    };
                }
            }
        }
        Ok(())
    }

    /// After a header: whether the frame is already over (an empty payload).
    fn state_is_data_end(&self, len: u64) -> Result<bool, EchoError> {
        Ok(len == 0 && matches!(self.state, State::Data { .. }))
    }

    /// Parses the header in `self.header[..available]`, sets the state for its
    /// payload and returns (payload length, header length), or `None` if incomplete.
    fn parse_header(&mut self, available: usize) -> Result<Option<(u64, usize)>, EchoError> {
        if available < 2 {
            return Ok(None);
        }
        let h = &self.header;
        let fin = h[0] & 0x80 != 0;
        if h[0] & 0x70 != 0 {
            return Err(EchoError::Protocol(
                "RSV bit set (an extension nobody negotiated)".into(),
            ));
        }
        let opcode = h[0] & 0x0f;
        let masked = h[1] & 0x80 != 0;
        let (len, mut used) = match h[1] & 0x7f {
            126 if available >= 4 => (u64::from(u16::from_be_bytes([h[2], h[3]])), 4),
            127 if available >= 10 => {
                let mut b = [0; 8];
                b.copy_from_slice(&h[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            126 | 127 => return Ok(None),
            n => (u64::from(n), 2),
        };
        if masked {
            if available < used + 4 {
                return Ok(None);
            }
            if h[used..used + 4] != MASK {
                return Err(EchoError::Protocol(
                    "masked frame from the server with a key that is not ours".into(),
                ));
            }
            used += 4;
        }
        self.state = match opcode {
            0x8 => return Err(EchoError::Closed),
            0x9 | 0xa => State::Control { remaining: len },
            0x0 | 0x2 => {
                if (opcode == 0x2) != (self.offset == 0) {
                    return Err(EchoError::Protocol(
                        "continuation frame out of place".into(),
                    ));
                }
                if masked && self.offset != 0 {
                    return Err(EchoError::Protocol(
                        "masked echo of a fragmented message".into(),
                    ));
                }
                State::Data {
                    remaining: len,
                    fin,
                    masked,
                }
            }
            other => {
                return Err(EchoError::Protocol(format!(
                    "unexpected opcode {other:#x} (binary was sent)"
                )));
            }
        };
        if let State::Control { remaining: 0 } = self.state {
            self.state = State::Header;
        }
        Ok(Some((len, used)))
    }

    /// The end of a data frame's payload; the end of the message if FIN.
    fn finish_frame(
        &mut self,
        messages: &Messages,
        expected: &mut VecDeque<u8>,
        done: &mut impl FnMut(u8),
    ) -> Result<(), EchoError> {
        let State::Data { fin, .. } = self.state else {
            return Ok(());
        };
        self.state = State::Header;
        if !fin {
            return Ok(());
        }
        if self.offset != messages.size {
            return Err(EchoError::Protocol(format!(
                "echoed message of {} bytes, {} were sent",
                self.offset, messages.size
            )));
        }
        if self.differs {
            self.mismatches += 1;
        }
        self.offset = 0;
        self.differs = false;
        let variant = expected
            .pop_front()
            .ok_or_else(|| EchoError::Protocol("message nobody asked for".into()))?;
        done(variant);
        Ok(())
    }
}

/// The frame a server would send back for `payload` (unmasked), for tests.
#[cfg(test)]
pub fn server_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    wire_kit::frame(u8::from(fin) << 7 | opcode, payload, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(reader: &mut EchoReader, m: &Messages, wire: &[u8], chunk: usize, q: &[u8]) -> Vec<u8> {
        let mut expected: VecDeque<u8> = q.iter().copied().collect();
        let mut done = Vec::new();
        for piece in wire.chunks(chunk) {
            reader
                .feed(piece, m, &mut expected, |v| done.push(v))
                .unwrap();
        }
        done
    }

    #[test]
    fn url_parsing() {
        let u = WsUrl::parse("ws://127.0.0.1:9001/echo?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 9001, "/echo?x=1")
        );
        let u = WsUrl::parse("ws://localhost").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        let u = WsUrl::parse("ws://[::1]:8080/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("[::1]", 8080));
        assert!(WsUrl::parse("wss://x/").is_err());
        assert!(WsUrl::parse("ws://:80/").is_err());
        let req = String::from_utf8(upgrade_request(&u)).unwrap();
        assert!(req.starts_with("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n"));
        assert!(!req.to_ascii_lowercase().contains("extensions"));
    }

    #[test]
    fn response_parsing() {
        let ok = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nsec-websocket-accept: {ACCEPT}\r\n\r\n\x02\x00"
        );
        let parsed = parse_response(ok.as_bytes()).unwrap().unwrap();
        assert_eq!(parsed.head_len, ok.len() - 2);
        assert_eq!(parsed.extensions, None);
        assert_eq!(parse_response(&ok.as_bytes()[..20]).unwrap(), None);
        let deflate = ok.replace(
            "Upgrade: websocket",
            "Sec-WebSocket-Extensions: permessage-deflate",
        );
        assert_eq!(
            parse_response(deflate.as_bytes())
                .unwrap()
                .unwrap()
                .extensions
                .as_deref(),
            Some("permessage-deflate")
        );
        let wrong = ok.replace(ACCEPT, "AAAA");
        assert!(parse_response(wrong.as_bytes()).is_err());
        assert!(parse_response(b"HTTP/1.1 400 Bad Request\r\n\r\n").is_err());
    }

    #[test]
    fn frames_are_masked_once_with_the_fixed_key() {
        for size in [0, 16, 125, 126, 1024, 65535, 65536] {
            let m = Messages::new(size);
            let v = &m.variants[3];
            let head = match size {
                0..=125 => 6,
                126..=65535 => 8,
                _ => 14,
            };
            assert_eq!(v.frame.len(), head + size);
            assert_eq!(v.frame[0], 0x82);
            assert_eq!(&v.frame[head - 4..head], &MASK);
            let mut unmasked = v.frame[head..].to_vec();
            wire_kit::apply_mask(&mut unmasked, MASK);
            assert_eq!(unmasked, v.payload);
        }
        let m = Messages::new(16);
        assert_ne!(m.variants[0].payload, m.variants[1].payload);
    }

    #[test]
    fn reader_accepts_echoes_in_any_chunking() {
        for size in [0, 5, 200, 70_000] {
            let m = Messages::new(size);
            let order = [0u8, 1, 2, 7, 0];
            let mut wire = Vec::new();
            for &v in &order {
                wire.extend(server_frame(0x2, true, &m.variants[v as usize].payload));
                wire.extend(server_frame(0x9, true, b"ping"));
            }
            for chunk in [1, 3, 13, 4096, usize::MAX] {
                let mut reader = EchoReader::new();
                let done = run(&mut reader, &m, &wire, chunk.min(wire.len()), &order);
                assert_eq!(done, order, "size {size} chunk {chunk}");
                assert_eq!(reader.mismatches, 0);
            }
        }
    }

    #[test]
    fn reader_reassembles_fragments_and_takes_raw_echoes() {
        let m = Messages::new(1000);
        let p = &m.variants[1].payload;
        let mut wire = server_frame(0x2, false, &p[..10]);
        wire.extend(server_frame(0xa, true, b""));
        wire.extend(server_frame(0x0, false, &p[10..500]));
        wire.extend(server_frame(0x0, true, &p[500..]));
        wire.extend(&m.variants[2].frame); // a raw TCP echo: our own masked frame
        let mut reader = EchoReader::new();
        assert_eq!(run(&mut reader, &m, &wire, 7, &[1, 2]), [1, 2]);
        assert_eq!(reader.mismatches, 0);
    }

    #[test]
    fn reader_counts_mismatches_and_refuses_what_cannot_be_an_echo() {
        let m = Messages::new(64);
        let mut bad = m.variants[0].payload.clone();
        bad[63] ^= 1;
        let mut wire = server_frame(0x2, true, &bad);
        wire.extend(server_frame(0x2, true, &m.variants[0].payload));
        let mut reader = EchoReader::new();
        assert_eq!(run(&mut reader, &m, &wire, 10, &[0, 1]).len(), 2);
        assert_eq!(reader.mismatches, 2); // a wrong byte, then the wrong variant

        let cases: [(Vec<u8>, &str); 5] = [
            (server_frame(0x2, true, &[0; 65]), "longer"),
            (server_frame(0x2, true, &[0; 63]), "63 bytes"),
            (server_frame(0x1, true, &[0; 64]), "opcode"),
            (vec![0xc2, 0x00], "RSV"),
            (server_frame(0x0, true, &[0; 64]), "continuation"),
        ];
        for (wire, what) in cases {
            let mut q = VecDeque::from([0u8]);
            let err = EchoReader::new()
                .feed(&wire, &m, &mut q, |_| {})
                .unwrap_err();
            let EchoError::Protocol(text) = err else {
                panic!("{err:?}")
            };
            assert!(text.contains(what), "{text} / {what}");
        }
        let mut q = VecDeque::from([0u8]);
        let close = server_frame(0x8, true, &[3, 232]);
        assert_eq!(
            EchoReader::new().feed(&close, &m, &mut q, |_| {}),
            Err(EchoError::Closed)
        );
    }
}
