//! permessage-deflate in the echo cells (`--deflate`): realistic JSON payloads (chat
//! lines and ticker quotes), compressed once per variant as a browser would send them,
//! and a reader that inflates what comes back (with flate2, not with duplex's code) and
//! compares each message with the one sent. Also the limit of these cells: zlib alone,
//! inflating and deflating the same payloads with no WebSocket and no socket.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use wire_kit::FrameReader;

use super::wire::{EchoError, MASK, Messages, Variant};

/// What the generator offers: what Chromium and Firefox send.
pub const OFFER: &str = "permessage-deflate; client_max_window_bits";

/// The tail of a sync flush, removed on the wire (RFC 7692 section 7.2.1).
const TRAILER: [u8; 4] = [0, 0, 0xff, 0xff];

/// Which JSON the messages carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Json {
    /// Chat lines of 80 to 300 bytes: room, user, time and a sentence.
    Chat,
    /// A batch of stock quotes of about the given size.
    Ticker(usize),
}

impl Json {
    /// Parses `chat`, `ticker` (about 1 KiB) or `ticker:SIZE`.
    pub fn parse(s: &str) -> Result<Json, String> {
        match s.split_once(':') {
            None if s == "chat" => Ok(Json::Chat),
            None if s == "ticker" => Ok(Json::Ticker(1024)),
            Some(("ticker", size)) => Ok(Json::Ticker(super::parse_size(size)?)),
            _ => Err(format!("bad payload {s:?} (chat, ticker, ticker:SIZE)")),
        }
    }

    /// A label for reports: `chat` or `ticker 1 KiB`.
    pub fn label(self) -> String {
        match self {
            Json::Chat => "chat".into(),
            Json::Ticker(n) if n.is_multiple_of(1024) => format!("ticker {} KiB", n / 1024),
            Json::Ticker(n) => format!("ticker {n} B"),
        }
    }

    /// The payload of variant `v`.
    pub fn payload(self, v: usize) -> Vec<u8> {
        match self {
            Json::Chat => chat_line(v),
            Json::Ticker(size) => ticker(size, v),
        }
    }
}

/// A chat line as JSON, 80 to 300 bytes; `seed` picks the words.
pub fn chat_line(seed: usize) -> Vec<u8> {
    const WORDS: [&str; 40] = [
        "ok", "the", "build", "is", "green", "again", "can", "someone", "review", "my", "change",
        "to", "login", "page", "before", "lunch", "meeting", "moved", "three", "o'clock", "thanks",
        "shipping", "tonight", "if", "nobody", "objects", "coffee", "machine", "broken", "on",
        "second", "floor", "who", "has", "the", "keys", "deploy", "rolled", "back", "sorry",
    ];
    const USERS: [&str; 6] = ["ana", "bruno", "chen", "dilan", "eve", "farid"];
    let mut x = (seed as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as usize
    };
    let mut text = String::new();
    let words = 8 + next() % 34;
    for i in 0..words {
        let word = WORDS[next() % WORDS.len()];
        // The rest of the line takes about 100 bytes.
        if text.len() + word.len() >= 195 {
            break;
        }
        if i > 0 {
            text.push(' ');
        }
        text.push_str(word);
    }
    format!(
        r#"{{"type":"message","room":"general","user":"{}","id":{},"ts":17650{:05},"text":"{}"}}"#,
        USERS[next() % USERS.len()],
        4_000_000 + seed,
        next() % 100_000,
        text
    )
    .into_bytes()
}

/// Stock quotes as a JSON array, quotes added until at least `size` bytes.
pub fn ticker(size: usize, seed: usize) -> Vec<u8> {
    let mut out = String::from("[");
    let mut i = seed * 7919;
    while out.len() + 1 < size.max(2) {
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&format!(
            r#"{{"s":"SYM{:03}","bid":{}.{:02},"ask":{}.{:02},"vol":{},"t":17650{:06}}}"#,
            i % 60,
            100 + (i * 7) % 300,
            (i * 13) % 100,
            100 + (i * 7) % 300,
            (i * 13 + 3) % 100,
            1000 + (i * 977) % 100_000,
            i % 1_000_000
        ));
        i += 1;
    }
    out.push(']');
    out.into_bytes()
}

/// Raw deflate of one message as a fresh compressor makes it, trailer removed.
pub fn compress(payload: &[u8]) -> Vec<u8> {
    let mut c = Compress::new_with_window_bits(Compression::default(), false, 15);
    let mut out = Vec::with_capacity(payload.len() + 64);
    loop {
        let before = c.total_in() as usize;
        c.compress_vec(&payload[before..], &mut out, FlushCompress::Sync)
            .expect("deflate into memory");
        if c.total_in() as usize == payload.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(64));
    }
    if out.ends_with(&TRAILER) {
        out.truncate(out.len() - 4);
    }
    out
}

/// How many different messages a cell sends in turn: enough that they fill more than a
/// 32 KiB deflate window before one repeats, so a server that keeps its compression
/// context cannot answer a repeated message with a bare back-reference (traffic never
/// repeats that exactly), at most 256.
pub fn variants_for(json: Json) -> usize {
    let size = match json {
        Json::Chat => 150,
        Json::Ticker(n) => n.max(64),
    };
    (64 * 1024 / size).clamp(super::wire::VARIANTS, 256)
}

/// The messages of a deflate cell: text frames, each payload compressed on its own (so
/// the server may keep its context or not: nothing refers to an earlier message), RSV1
/// set, masked with [`MASK`]. With `compressed` false, the same JSON uncompressed.
pub fn messages(json: Json, compressed: bool) -> Messages {
    let variants: Vec<Variant> = (0..variants_for(json))
        .map(|v| {
            let payload = json.payload(v);
            let (first, body) = if compressed {
                (
                    wire_kit::FIN | wire_kit::RSV1 | wire_kit::OP_TEXT,
                    compress(&payload),
                )
            } else {
                (wire_kit::FIN | wire_kit::OP_TEXT, payload.clone())
            };
            let frame = wire_kit::frame(first, &body, Some(MASK));
            let masked = frame[frame.len() - body.len()..].to_vec();
            Variant {
                payload,
                masked,
                frame,
            }
        })
        .collect();
    let size = variants.iter().map(|v| v.payload.len()).sum::<usize>() / variants.len();
    Messages { variants, size }
}

/// Reads echoed messages that may be compressed, inflating with a context kept for the
/// whole connection (so the server may or may not use context takeover), and compares
/// each whole message with the one sent.
#[derive(Debug)]
pub struct DeflateReader {
    frames: FrameReader,
    message: Vec<u8>,
    compressed: bool,
    inflater: Decompress,
    out: Vec<u8>,
    /// Messages that came back different.
    pub mismatches: u64,
}

impl Default for DeflateReader {
    fn default() -> Self {
        DeflateReader::new()
    }
}

impl DeflateReader {
    /// A reader at the start of a stream.
    pub fn new() -> DeflateReader {
        DeflateReader {
            frames: FrameReader::new(64 << 20),
            message: Vec::new(),
            compressed: false,
            inflater: Decompress::new_with_window_bits(false, 15),
            out: Vec::new(),
            mismatches: 0,
        }
    }

    /// Same contract as [`super::wire::EchoReader::feed`].
    pub fn feed(
        &mut self,
        data: &[u8],
        messages: &Messages,
        expected: &mut VecDeque<u8>,
        mut done: impl FnMut(u8),
    ) -> Result<(), EchoError> {
        self.frames.push(data);
        while let Some(frame) = self
            .frames
            .next_frame()
            .map_err(|e| EchoError::Protocol(e.to_string()))?
        {
            if frame.masked {
                return Err(EchoError::Protocol("masked frame from the server".into()));
            }
            match frame.opcode {
                0x8 => return Err(EchoError::Closed),
                0x9 | 0xa => continue,
                0x1 | 0x2 => {
                    self.message.clear();
                    self.compressed = frame.rsv1();
                }
                0x0 => {}
                other => return Err(EchoError::Protocol(format!("opcode {other:#x}"))),
            }
            self.message.extend_from_slice(&frame.payload);
            if !frame.fin {
                continue;
            }
            let variant = expected
                .pop_front()
                .ok_or_else(|| EchoError::Protocol("message nobody asked for".into()))?;
            let sent = &messages.variants[variant as usize].payload;
            let same = if self.compressed {
                self.message.extend_from_slice(&TRAILER);
                self.inflate()?;
                self.out == *sent
            } else {
                self.message == *sent
            };
            if !same {
                self.mismatches += 1;
            }
            done(variant);
        }
        Ok(())
    }

    fn inflate(&mut self) -> Result<(), EchoError> {
        self.out.clear();
        self.out.reserve(self.message.len() * 4 + 256);
        let mut input = &self.message[..];
        loop {
            let before = self.inflater.total_in();
            let status = self
                .inflater
                .decompress_vec(input, &mut self.out, FlushDecompress::Sync)
                .map_err(|e| EchoError::Protocol(format!("inflate: {e}")))?;
            input = &input[(self.inflater.total_in() - before) as usize..];
            if matches!(status, Status::StreamEnd) {
                return Err(EchoError::Protocol("BFINAL block in a message".into()));
            }
            if input.is_empty() && self.out.len() < self.out.capacity() {
                return Ok(());
            }
            self.out.reserve(self.out.capacity().max(1024));
        }
    }
}

/// The limit of a deflate echo cell: what one echo costs zlib alone (flate2 with
/// zlib-rs, as the servers under test use): inflate the message the client sent (one
/// inflater kept across messages, as a server with client context takeover does), and
/// deflate the reply with a compressor reset after each message (the policy our servers
/// choose by default). Runs on the calling thread for about `duration`; returns
/// microseconds of CPU per message.
pub fn zlib_alone(messages: &Messages, duration: Duration) -> f64 {
    let compressed: Vec<Vec<u8>> = messages
        .variants
        .iter()
        .map(|v| {
            let mut c = compress(&v.payload);
            c.extend_from_slice(&TRAILER);
            c
        })
        .collect();
    let mut inflater = Decompress::new_with_window_bits(false, 15);
    let mut deflater = Compress::new_with_window_bits(Compression::default(), false, 15);
    let mut plain = Vec::with_capacity(1 << 20);
    let mut packed = Vec::with_capacity(1 << 20);
    let cpu0 = super::sys::thread_cpu();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < duration || n == 0 {
        for c in &compressed {
            plain.clear();
            inflater
                .decompress_vec(c, &mut plain, FlushDecompress::Sync)
                .expect("inflate our own deflate");
            packed.clear();
            deflater
                .compress_vec(&plain, &mut packed, FlushCompress::Sync)
                .expect("deflate into memory");
            deflater.reset();
            n += 1;
        }
    }
    let cpu = super::sys::thread_cpu().saturating_sub(cpu0);
    cpu.as_secs_f64() * 1e6 / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_json_of_the_announced_sizes() {
        for seed in 0..500 {
            let line = chat_line(seed);
            assert!((80..=300).contains(&line.len()), "{}", line.len());
            assert!(line.starts_with(b"{\"type\":\"message\""));
        }
        let t = ticker(1024, 3);
        assert!(t.len() >= 1024 && t.len() < 1200, "{}", t.len());
        assert!(t.starts_with(b"[{") && t.ends_with(b"}]"));
        assert_eq!(Json::parse("ticker:4k").unwrap(), Json::Ticker(4096));
        assert_eq!(Json::parse("chat").unwrap().label(), "chat");
        assert!(Json::parse("zeros").is_err());
    }

    #[test]
    fn compressed_echoes_are_inflated_and_compared() {
        for json in [Json::Chat, Json::Ticker(1024)] {
            let m = messages(json, true);
            let v = &m.variants[2];
            assert_eq!(v.frame[0], 0xc1);
            assert!(v.masked.len() < v.payload.len());
            // A server with context takeover: one deflater across messages.
            let mut deflater = Compress::new_with_window_bits(Compression::fast(), false, 15);
            let mut wire = Vec::new();
            let order = [2u8, 3, 2, 7];
            for &i in &order {
                let mut out = Vec::with_capacity(4096);
                deflater
                    .compress_vec(
                        &m.variants[i as usize].payload,
                        &mut out,
                        FlushCompress::Sync,
                    )
                    .unwrap();
                out.truncate(out.len() - 4);
                wire.extend(wire_kit::frame(0xc1, &out, None));
                wire.extend(wire_kit::frame(0x89, b"", None));
            }
            // And one uncompressed echo.
            wire.extend(wire_kit::frame(0x81, &m.variants[5].payload, None));
            let mut reader = DeflateReader::new();
            let mut q: VecDeque<u8> = [2u8, 3, 2, 7, 5].into_iter().collect();
            let mut done = Vec::new();
            for piece in wire.chunks(7) {
                reader.feed(piece, &m, &mut q, |v| done.push(v)).unwrap();
            }
            assert_eq!(done, [2, 3, 2, 7, 5]);
            assert_eq!(reader.mismatches, 0);
            let mut q: VecDeque<u8> = [1u8].into_iter().collect();
            let wrong = wire_kit::frame(0x81, &m.variants[0].payload, None);
            reader.feed(&wrong, &m, &mut q, |_| {}).unwrap();
            assert_eq!(reader.mismatches, 1);
        }
    }

    #[test]
    fn zlib_alone_measures_something() {
        let m = messages(Json::Chat, true);
        let us = zlib_alone(&m, Duration::from_millis(20));
        assert!(us.is_finite() && us >= 0.0);
    }
}
