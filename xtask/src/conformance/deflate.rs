//! permessage-deflate (RFC 7692) for the suite: negotiation (offers,
//! responses, the fuzzing server's accept rules) and per-message
//! compression with the negotiated context takeover and window sizes.
//!
//! Compression uses `flate2` (zlib-rs backend) for window bits 9..=15. zlib
//! cannot compress raw deflate with an 8-bit (256-byte) window: it either
//! refuses or silently uses 9 bits, which would break a peer that really
//! decompresses with 256 bytes. When 8 bits are negotiated for what the suite
//! sends, it uses its own small encoder instead (fixed Huffman codes, LZ77
//! matches no further back than 256 bytes), so the stream honours the window
//! exactly. Decompression always uses a 15-bit window, which is valid for any
//! negotiated size (a peer that used a larger window than agreed is therefore
//! not detected).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The extension token.
pub const NAME: &str = "permessage-deflate";
/// The tail a sync flush leaves, stripped on send and appended on receive.
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// One `permessage-deflate` offer from a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offer {
    /// `client_no_context_takeover`: the client hints it will reset.
    pub client_no_context_takeover: bool,
    /// `client_max_window_bits`: absent, present without value (`Some(None)`,
    /// the server may then limit the client's window), or a hint value.
    pub client_max_window_bits: Option<Option<u8>>,
    /// `server_no_context_takeover`: the server must reset per message.
    pub server_no_context_takeover: bool,
    /// `server_max_window_bits=N`: the server's window must be at most N.
    pub server_max_window_bits: Option<u8>,
}

impl Offer {
    /// Autobahn's default client offer (`client_no_context_takeover;
    /// client_max_window_bits`) plus the requested server parameters.
    pub const fn autobahn(server_no_context_takeover: bool, server_bits: Option<u8>) -> Offer {
        Offer {
            client_no_context_takeover: true,
            client_max_window_bits: Some(None),
            server_no_context_takeover,
            server_max_window_bits: server_bits,
        }
    }

    /// The offer as one extension element.
    pub fn header(&self) -> String {
        let mut s = NAME.to_string();
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        match self.client_max_window_bits {
            Some(Some(n)) => s.push_str(&format!("; client_max_window_bits={n}")),
            Some(None) => s.push_str("; client_max_window_bits"),
            None => {}
        }
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if let Some(n) = self.server_max_window_bits {
            s.push_str(&format!("; server_max_window_bits={n}"));
        }
        s
    }

    /// A list of offers as one header value.
    pub fn header_list(offers: &[Offer]) -> String {
        offers
            .iter()
            .map(Offer::header)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What both ends agreed on (`None` window bits = not in the response, 15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Agreement {
    /// The server resets its compression context after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after each message.
    pub client_no_context_takeover: bool,
    /// The server's LZ77 window.
    pub server_max_window_bits: Option<u8>,
    /// The client's LZ77 window.
    pub client_max_window_bits: Option<u8>,
}

impl Agreement {
    /// The agreement as a response extension element.
    pub fn header(&self) -> String {
        let mut s = NAME.to_string();
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        if let Some(n) = self.server_max_window_bits {
            s.push_str(&format!("; server_max_window_bits={n}"));
        }
        if let Some(n) = self.client_max_window_bits {
            s.push_str(&format!("; client_max_window_bits={n}"));
        }
        s
    }

    /// (no context takeover, window bits) of what `server` (or the client)
    /// sends.
    pub fn direction(&self, server: bool) -> (bool, u8) {
        if server {
            (
                self.server_no_context_takeover,
                self.server_max_window_bits.unwrap_or(15),
            )
        } else {
            (
                self.client_no_context_takeover,
                self.client_max_window_bits.unwrap_or(15),
            )
        }
    }
}

/// One extension element: name and parameters (value `None` = no value).
type Element = (String, Vec<(String, Option<String>)>);

/// Splits a `Sec-WebSocket-Extensions` value into elements.
pub fn parse_extensions(value: &str) -> Result<Vec<Element>, String> {
    let mut out = Vec::new();
    for elem in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let mut parts = elem.split(';').map(str::trim);
        let name = parts.next().unwrap_or("").to_ascii_lowercase();
        if name.is_empty() || !name.bytes().all(is_token) {
            return Err(format!("bad extension name in {elem:?}"));
        }
        let mut params = Vec::new();
        for p in parts {
            let (k, v) = match p.split_once('=') {
                Some((k, v)) => {
                    let v = v.trim();
                    let v = v
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or(v);
                    (k.trim(), Some(v.to_string()))
                }
                None => (p, None),
            };
            if k.is_empty() || !k.bytes().all(is_token) {
                return Err(format!("bad extension parameter {p:?}"));
            }
            params.push((k.to_ascii_lowercase(), v));
        }
        out.push((name, params));
    }
    Ok(out)
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn window_bits(v: &str) -> Result<u8, String> {
    // RFC 7692: a decimal integer 8..=15 without leading zeros.
    match v.parse::<u8>() {
        Ok(n) if (8..=15).contains(&n) && !v.starts_with('0') => Ok(n),
        _ => Err(format!("invalid window bits {v:?}")),
    }
}

fn parse_offer(params: &[(String, Option<String>)]) -> Result<Offer, String> {
    let mut o = Offer::default();
    let mut seen: Vec<&str> = Vec::new();
    for (k, v) in params {
        if seen.contains(&k.as_str()) {
            return Err(format!("duplicate parameter {k}"));
        }
        seen.push(k);
        match (k.as_str(), v) {
            ("client_no_context_takeover", None) => o.client_no_context_takeover = true,
            ("server_no_context_takeover", None) => o.server_no_context_takeover = true,
            ("client_max_window_bits", None) => o.client_max_window_bits = Some(None),
            ("client_max_window_bits", Some(v)) => {
                o.client_max_window_bits = Some(Some(window_bits(v)?))
            }
            ("server_max_window_bits", Some(v)) => o.server_max_window_bits = Some(window_bits(v)?),
            _ => return Err(format!("unexpected parameter {k}{}", value_suffix(v))),
        }
    }
    Ok(o)
}

fn value_suffix(v: &Option<String>) -> String {
    v.as_ref().map(|v| format!("={v}")).unwrap_or_default()
}

/// The client's `permessage-deflate` offers, in order; invalid ones are
/// returned as errors in place (a server declines them).
pub fn parse_offers(value: &str) -> Vec<Result<Offer, String>> {
    match parse_extensions(value) {
        Ok(elems) => elems
            .iter()
            .filter(|(n, _)| n == NAME)
            .map(|(_, p)| parse_offer(p))
            .collect(),
        Err(e) => vec![Err(e)],
    }
}

/// Checks a server's `Sec-WebSocket-Extensions` response against what the
/// suite offered: `Ok(None)` = declined, `Ok(Some)` = accepted with these
/// parameters, `Err` = the client must fail the connection.
pub fn check_response(value: Option<&str>, offers: &[Offer]) -> Result<Option<Agreement>, String> {
    let Some(value) = value else {
        return Ok(None);
    };
    let elems = parse_extensions(value)?;
    if elems.is_empty() {
        return Ok(None);
    }
    if let Some((n, _)) = elems.iter().find(|(n, _)| n != NAME) {
        return Err(format!(
            "the server accepted extension {n:?}, which was not offered"
        ));
    }
    if offers.is_empty() {
        return Err("the server accepted permessage-deflate, which was not offered".into());
    }
    if elems.len() > 1 {
        return Err("permessage-deflate appears more than once in the response".into());
    }
    let mut a = Agreement::default();
    let mut seen: Vec<&str> = Vec::new();
    for (k, v) in &elems[0].1 {
        if seen.contains(&k.as_str()) {
            return Err(format!("duplicate parameter {k} in the response"));
        }
        seen.push(k);
        match (k.as_str(), v) {
            ("server_no_context_takeover", None) => a.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => a.client_no_context_takeover = true,
            ("server_max_window_bits", Some(v)) => a.server_max_window_bits = Some(window_bits(v)?),
            ("client_max_window_bits", Some(v)) => a.client_max_window_bits = Some(window_bits(v)?),
            _ => {
                return Err(format!(
                    "invalid parameter {k}{} in the response",
                    value_suffix(v)
                ));
            }
        }
    }
    // The response must accept one of the offers (RFC 7692 section 7.1).
    let fits = |o: &Offer| {
        (!o.server_no_context_takeover || a.server_no_context_takeover)
            && match (o.server_max_window_bits, a.server_max_window_bits) {
                (Some(want), Some(got)) => got <= want,
                (Some(_), None) => false,
                (None, _) => true,
            }
            && (a.client_max_window_bits.is_none() || o.client_max_window_bits.is_some())
    };
    if offers.iter().any(fits) {
        Ok(Some(a))
    } else {
        Err(format!(
            "the response {:?} does not accept any of the offers {:?}",
            a.header(),
            Offer::header_list(offers)
        ))
    }
}

/// How the fuzzing server answers a client's offers (Autobahn's accept
/// functions of cases 12 and 13). Every rule agrees to what the offer asks
/// of the server (`server_*` parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptRule {
    /// Accept the first offer as it is.
    Default,
    /// Also require `client_no_context_takeover` (always allowed).
    ClientNoContextTakeover,
    /// Also require `client_max_window_bits=N` (only if the offer has
    /// `client_max_window_bits`), optionally with `client_no_context_takeover`.
    ClientWindow {
        /// Window bits requested of the client.
        bits: u8,
        /// Also require `client_no_context_takeover`.
        no_context_takeover: bool,
    },
    /// Try (no context takeover, 8 bits), then no context takeover, then
    /// the offer as it is.
    Fallback,
}

impl AcceptRule {
    /// What the rule asks of the client, for descriptions.
    pub fn describe(&self) -> String {
        match self {
            AcceptRule::Default => "accept the offer as is".into(),
            AcceptRule::ClientNoContextTakeover => "accept with client_no_context_takeover".into(),
            AcceptRule::ClientWindow {
                bits,
                no_context_takeover: false,
            } => format!("accept with client_max_window_bits={bits}"),
            AcceptRule::ClientWindow { bits, .. } => {
                format!("accept with client_no_context_takeover and client_max_window_bits={bits}")
            }
            AcceptRule::Fallback => "accept the first of (client_no_context_takeover + client_max_window_bits=8), (client_no_context_takeover), (as is) that fits".into(),
        }
    }

    fn accept_one(&self, o: &Offer) -> Option<Agreement> {
        let base = Agreement {
            server_no_context_takeover: o.server_no_context_takeover,
            client_no_context_takeover: false,
            server_max_window_bits: o.server_max_window_bits,
            client_max_window_bits: None,
        };
        match *self {
            AcceptRule::Default => Some(base),
            AcceptRule::ClientNoContextTakeover => Some(Agreement {
                client_no_context_takeover: true,
                ..base
            }),
            AcceptRule::ClientWindow {
                bits,
                no_context_takeover,
            } => o.client_max_window_bits.map(|_| Agreement {
                client_no_context_takeover: no_context_takeover,
                client_max_window_bits: Some(bits),
                ..base
            }),
            AcceptRule::Fallback => None,
        }
    }

    /// The agreement for the first acceptable offer, if any.
    pub fn accept(&self, offers: &[Offer]) -> Option<Agreement> {
        if *self == AcceptRule::Fallback {
            let chain = [
                AcceptRule::ClientWindow {
                    bits: 8,
                    no_context_takeover: true,
                },
                AcceptRule::ClientNoContextTakeover,
                AcceptRule::Default,
            ];
            return chain.iter().find_map(|r| r.accept(offers));
        }
        offers.iter().find_map(|o| self.accept_one(o))
    }
}

/// Compresses messages of one direction.
pub struct Deflater {
    engine: Engine,
    no_context_takeover: bool,
}

enum Engine {
    Zlib(Box<Compress>),
    Fixed(FixedEncoder),
}

impl Deflater {
    /// A compressor for a window of `bits` (8..=15).
    pub fn new(bits: u8, no_context_takeover: bool) -> Deflater {
        // Level 1: the suite tests the peer's inflater; speed matters more
        // than ratio for 200+ cases of bulk traffic.
        let engine = if bits <= 8 {
            Engine::Fixed(FixedEncoder::new(8))
        } else {
            Engine::Zlib(Box::new(Compress::new_with_window_bits(
                Compression::fast(),
                false,
                bits.min(15),
            )))
        };
        Deflater {
            engine,
            no_context_takeover,
        }
    }

    /// One message's compressed payload, without the `00 00 ff ff` tail.
    pub fn compress(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = match &mut self.engine {
            Engine::Zlib(c) => {
                let mut out = Vec::with_capacity(data.len() / 2 + 64);
                let start_in = c.total_in();
                loop {
                    if out.capacity() - out.len() < 64 {
                        out.reserve(out.capacity().max(1024));
                    }
                    let done = (c.total_in() - start_in) as usize;
                    // Sync flush: byte-aligned, ends with an empty stored
                    // block; complete once zlib leaves output space unused.
                    let _ = c.compress_vec(&data[done..], &mut out, FlushCompress::Sync);
                    let all_in = (c.total_in() - start_in) as usize == data.len();
                    if all_in && out.len() < out.capacity() {
                        break;
                    }
                }
                out
            }
            Engine::Fixed(f) => f.compress(data),
        };
        debug_assert!(out.ends_with(&TAIL));
        out.truncate(out.len().saturating_sub(4));
        if self.no_context_takeover {
            match &mut self.engine {
                Engine::Zlib(c) => c.reset(),
                Engine::Fixed(f) => f.history.clear(),
            }
        }
        out
    }
}

/// Decompresses messages of one direction.
pub struct Inflater {
    d: Decompress,
    no_context_takeover: bool,
    limit: usize,
}

impl Inflater {
    /// A decompressor (always a 15-bit window, which fits any agreement)
    /// refusing messages over `limit` bytes.
    pub fn new(no_context_takeover: bool, limit: usize) -> Inflater {
        Inflater {
            d: Decompress::new_with_window_bits(false, 15),
            no_context_takeover,
            limit,
        }
    }

    /// Decompresses one message payload (the tail is appended here).
    pub fn decompress(&mut self, data: &[u8]) -> Result<Vec<u8>, String> {
        let mut input = Vec::with_capacity(data.len() + 4);
        input.extend_from_slice(data);
        input.extend_from_slice(&TAIL);
        let mut out: Vec<u8> = Vec::with_capacity((data.len() * 4).clamp(64, self.limit));
        let start_in = self.d.total_in();
        let result = loop {
            let done = (self.d.total_in() - start_in) as usize;
            if out.len() == out.capacity() {
                if out.len() >= self.limit {
                    break Err(format!(
                        "decompressed message exceeds the suite's limit of {} bytes",
                        self.limit
                    ));
                }
                out.reserve(out.len().min(self.limit - out.len()).max(1024));
            }
            let before = (self.d.total_in(), self.d.total_out());
            match self
                .d
                .decompress_vec(&input[done..], &mut out, FlushDecompress::Sync)
            {
                Ok(Status::StreamEnd) => {
                    // BFINAL was set: fine for this message, but the context
                    // cannot continue; start a new stream next time.
                    self.d.reset(false);
                    break Ok(());
                }
                Ok(_) => {
                    let all_in = (self.d.total_in() - start_in) as usize == input.len();
                    let progress = (self.d.total_in(), self.d.total_out()) != before;
                    // Done when all input is consumed and either output space
                    // is left over or nothing more came out.
                    if all_in && (out.len() < out.capacity() || !progress) {
                        break Ok(());
                    }
                    if !progress {
                        break Err("the decompressor made no progress".into());
                    }
                }
                Err(e) => break Err(format!("invalid deflate data: {e}")),
            }
        };
        if self.no_context_takeover || result.is_err() {
            self.d.reset(false);
        }
        result.map(|()| out)
    }
}

/// A tiny raw-deflate encoder for small windows: one fixed-Huffman block per
/// message with greedy LZ77 matches within `1 << bits` bytes (history kept
/// across messages for context takeover), then a sync flush.
pub struct FixedEncoder {
    window: usize,
    history: Vec<u8>,
}

const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    /// Writes `n` bits of `v`, least significant first.
    fn put(&mut self, v: u32, n: u32) {
        self.acc |= (v as u64) << self.n;
        self.n += n;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    /// Writes a Huffman code (most significant bit first).
    fn code(&mut self, code: u32, len: u32) {
        let rev = code.reverse_bits() >> (32 - len);
        self.put(rev, len);
    }

    fn align(&mut self) {
        if self.n > 0 {
            self.put(0, 8 - self.n);
        }
    }

    /// A fixed-Huffman literal/length symbol (RFC 1951 3.2.6).
    fn lit(&mut self, sym: u32) {
        match sym {
            0..=143 => self.code(0x30 + sym, 8),
            144..=255 => self.code(0x190 + sym - 144, 9),
            256..=279 => self.code(sym - 256, 7),
            _ => self.code(0xC0 + sym - 280, 8),
        }
    }

    fn length(&mut self, len: usize) {
        let i = LEN_BASE
            .iter()
            .rposition(|&b| b as usize <= len)
            .unwrap_or(0);
        self.lit(257 + i as u32);
        self.put((len - LEN_BASE[i] as usize) as u32, LEN_EXTRA[i] as u32);
    }

    fn distance(&mut self, dist: usize) {
        let i = DIST_BASE
            .iter()
            .rposition(|&b| b as usize <= dist)
            .unwrap_or(0);
        self.code(i as u32, 5);
        self.put((dist - DIST_BASE[i] as usize) as u32, DIST_EXTRA[i] as u32);
    }
}

impl FixedEncoder {
    /// An encoder whose matches stay within `1 << bits` bytes.
    pub fn new(bits: u8) -> FixedEncoder {
        FixedEncoder {
            window: 1 << bits,
            history: Vec::new(),
        }
    }

    /// Compresses one message, ending with a sync flush (`00 00 ff ff`).
    pub fn compress(&mut self, data: &[u8]) -> Vec<u8> {
        let h = self.history.len();
        let mut buf = std::mem::take(&mut self.history);
        buf.extend_from_slice(data);
        let mut bits = Bits {
            out: Vec::with_capacity(data.len() / 2 + 16),
            acc: 0,
            n: 0,
        };
        // BFINAL=0, BTYPE=01 (fixed Huffman).
        bits.put(0b010, 3);
        let hash = |i: usize| {
            ((u32::from(buf[i]) << 16 | u32::from(buf[i + 1]) << 8 | u32::from(buf[i + 2]))
                .wrapping_mul(2_654_435_761)
                >> 20) as usize
        };
        let mut table = vec![usize::MAX; 1 << 12];
        for i in h.saturating_sub(self.window)..h.saturating_sub(2) {
            table[hash(i)] = i;
        }
        let mut i = h;
        while i < buf.len() {
            let mut best = 0;
            let mut dist = 0;
            if i + 3 <= buf.len() {
                let cand = table[hash(i)];
                table[hash(i)] = i;
                if cand != usize::MAX && i - cand <= self.window {
                    let max = (buf.len() - i).min(258);
                    let l = (0..max)
                        .take_while(|&k| buf[cand + k] == buf[i + k])
                        .count();
                    if l >= 3 {
                        best = l;
                        dist = i - cand;
                    }
                }
            }
            if best >= 3 {
                bits.length(best);
                bits.distance(dist);
                for j in i + 1..(i + best).min(buf.len().saturating_sub(2)) {
                    table[hash(j)] = j;
                }
                i += best;
            } else {
                bits.lit(u32::from(buf[i]));
                i += 1;
            }
        }
        bits.lit(256);
        // Sync flush: an empty stored block, byte-aligned.
        bits.put(0, 3);
        bits.align();
        bits.out.extend_from_slice(&TAIL);
        let keep = buf.len().saturating_sub(self.window);
        buf.drain(..keep);
        self.history = buf;
        bits.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<u8> {
        let words = [
            "alpha ",
            "beta ",
            "gamma ",
            "{\"k\": 12}, ",
            "delta\n",
            "ü€ ",
        ];
        let mut x = 7u32;
        let mut v = Vec::new();
        while v.len() < n {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            v.extend_from_slice(words[(x % 6) as usize].as_bytes());
            if x.is_multiple_of(11) {
                v.push((x >> 8) as u8);
            }
        }
        v.truncate(n);
        v
    }

    fn roundtrip(bits: u8, tx_reset: bool, rx_reset: bool) {
        let mut d = Deflater::new(bits, tx_reset);
        let mut i = Inflater::new(rx_reset, 1 << 24);
        for n in [0usize, 1, 3, 100, 300, 5000, 70_000, 5000] {
            let m = sample(n);
            let c = d.compress(&m);
            assert!(!c.ends_with(&TAIL) || c.len() < 4, "tail stripped");
            assert_eq!(i.decompress(&c).unwrap(), m, "bits {bits} len {n}");
        }
    }

    #[test]
    fn roundtrips_with_all_windows_and_context_modes() {
        for bits in 8..=15 {
            roundtrip(bits, false, false);
            roundtrip(bits, true, true);
            roundtrip(bits, true, false);
        }
    }

    #[test]
    fn output_exactly_filling_the_buffer_is_fine() {
        // A well-compressed 64-byte message fills the initial 64-byte output
        // buffer exactly; the next call then makes no progress.
        let mut d = Deflater::new(15, false);
        let mut i = Inflater::new(false, 1 << 20);
        let m = vec![b'a'; 64];
        for _ in 0..3 {
            let c = d.compress(&m);
            assert!(c.len() * 4 <= 64);
            assert_eq!(i.decompress(&c).unwrap(), m);
        }
        assert!(i.decompress(&[0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn context_takeover_shrinks_repeats_and_reset_breaks_dependent_streams() {
        for bits in [8, 15] {
            let m = sample(if bits == 8 { 200 } else { 4000 });
            let mut d = Deflater::new(bits, false);
            let first = d.compress(&m);
            let second = d.compress(&m);
            assert!(
                second.len() * 3 < first.len(),
                "bits {bits}: {} {}",
                first.len(),
                second.len()
            );
            // An inflater that (wrongly) resets cannot decode the second.
            let mut i = Inflater::new(true, 1 << 20);
            assert_eq!(i.decompress(&first).unwrap(), m);
            assert_ne!(i.decompress(&second).ok(), Some(m.clone()));
        }
    }

    #[test]
    fn fixed_encoder_respects_the_window() {
        // Decode the fixed-Huffman stream by hand and check every distance.
        let mut e = FixedEncoder::new(8);
        let data = sample(20_000);
        let out = e.compress(&data);
        let mut d = Inflater::new(false, 1 << 20);
        assert_eq!(d.decompress(&out[..out.len() - 4]).unwrap(), data);
        let mut maxd = 0;
        let (mut pos, bytes) = (3usize, &out);
        let bit = |p: usize| (bytes[p / 8] >> (p % 8)) as u32 & 1;
        let read = |p: &mut usize, n: u32| {
            let mut v = 0;
            for k in 0..n {
                v |= bit(*p) << k;
                *p += 1;
            }
            v
        };
        let code = |p: &mut usize, n: u32| {
            let mut v = 0;
            for _ in 0..n {
                v = v << 1 | bit(*p);
                *p += 1;
            }
            v
        };
        loop {
            let c7 = code(&mut pos, 7);
            let sym = if c7 <= 0b0010111 {
                256 + c7
            } else {
                let c8 = c7 << 1 | code(&mut pos, 1);
                if (0x30..=0xBF).contains(&c8) {
                    c8 - 0x30
                } else if (0xC0..=0xC7).contains(&c8) {
                    280 + c8 - 0xC0
                } else {
                    (c8 << 1 | code(&mut pos, 1)) - 0x190 + 144
                }
            };
            if sym == 256 {
                break;
            }
            if sym > 256 {
                let li = (sym - 257) as usize;
                read(&mut pos, LEN_EXTRA[li] as u32);
                let di = code(&mut pos, 5) as usize;
                let dist = DIST_BASE[di] as u32 + read(&mut pos, DIST_EXTRA[di] as u32);
                maxd = maxd.max(dist);
            }
        }
        assert!(maxd > 100 && maxd <= 256, "max distance {maxd}");
    }

    #[test]
    fn offers_and_headers() {
        let o = Offer::autobahn(true, Some(8));
        assert_eq!(
            o.header(),
            "permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover; server_max_window_bits=8"
        );
        let parsed = parse_offers(&format!(
            "x-foo, {}, permessage-deflate; client_max_window_bits=10, permessage-deflate; bogus, permessage-deflate; server_max_window_bits=\"16\"",
            o.header()
        ));
        assert_eq!(parsed.len(), 4);
        assert_eq!(parsed[0], Ok(o));
        assert_eq!(
            parsed[1].as_ref().unwrap().client_max_window_bits,
            Some(Some(10))
        );
        assert!(parsed[2].is_err() && parsed[3].is_err());
        assert!(parse_offers("permessage-deflate; server_max_window_bits=09")[0].is_err());
    }

    #[test]
    fn responses_are_checked_against_offers() {
        let def = [Offer::autobahn(false, None)];
        assert_eq!(check_response(None, &def), Ok(None));
        assert_eq!(check_response(Some(""), &def), Ok(None));
        let a = check_response(Some("permessage-deflate"), &def)
            .unwrap()
            .unwrap();
        assert_eq!(a, Agreement::default());
        let a = check_response(
            Some("Permessage-Deflate; server_max_window_bits=10; client_max_window_bits=8; client_no_context_takeover"),
            &def,
        )
        .unwrap()
        .unwrap();
        assert_eq!(a.direction(true), (false, 10));
        assert_eq!(a.direction(false), (true, 8));
        // Not offered / invalid.
        assert!(check_response(Some("permessage-deflate"), &[]).is_err());
        assert!(check_response(Some("x-other"), &def).is_err());
        assert!(check_response(Some("permessage-deflate, permessage-deflate"), &def).is_err());
        assert!(check_response(Some("permessage-deflate; client_max_window_bits"), &def).is_err());
        assert!(check_response(Some("permessage-deflate; foo"), &def).is_err());
        // Must honour server_* requests of the offer.
        let nct8 = [Offer::autobahn(true, Some(8))];
        assert!(check_response(Some("permessage-deflate"), &nct8).is_err());
        assert!(
            check_response(
                Some("permessage-deflate; server_no_context_takeover; server_max_window_bits=9"),
                &nct8
            )
            .is_err()
        );
        assert!(
            check_response(
                Some("permessage-deflate; server_no_context_takeover; server_max_window_bits=8"),
                &nct8
            )
            .unwrap()
            .is_some()
        );
        // With several offers, fitting any one is enough.
        let multi = [Offer::autobahn(true, Some(8)), Offer::autobahn(false, None)];
        assert!(
            check_response(Some("permessage-deflate"), &multi)
                .unwrap()
                .is_some()
        );
        // A client without client_max_window_bits in its offer.
        let bare = [Offer::default()];
        assert!(
            check_response(Some("permessage-deflate; client_max_window_bits=9"), &bare).is_err()
        );
    }

    #[test]
    fn accept_rules_follow_autobahn() {
        let bare = Offer::default();
        let cmwb = Offer {
            client_max_window_bits: Some(None),
            server_no_context_takeover: true,
            server_max_window_bits: Some(10),
            ..Offer::default()
        };
        let a = AcceptRule::Default.accept(&[cmwb]).unwrap();
        assert_eq!(
            a.header(),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10"
        );
        let a = AcceptRule::ClientNoContextTakeover.accept(&[bare]).unwrap();
        assert_eq!(a.header(), "permessage-deflate; client_no_context_takeover");
        let w8 = AcceptRule::ClientWindow {
            bits: 8,
            no_context_takeover: false,
        };
        assert_eq!(w8.accept(&[bare]), None);
        assert_eq!(
            w8.accept(&[bare, cmwb]).unwrap().client_max_window_bits,
            Some(8)
        );
        let f = AcceptRule::Fallback.accept(&[bare]).unwrap();
        assert!(f.client_no_context_takeover && f.client_max_window_bits.is_none());
        let f = AcceptRule::Fallback.accept(&[bare, cmwb]).unwrap();
        assert_eq!(f.client_max_window_bits, Some(8));
        assert_eq!(AcceptRule::Default.accept(&[]), None);
    }
}
