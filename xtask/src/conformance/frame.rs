//! A deliberately small, independent WebSocket frame writer and reader.
//!
//! The writer can produce frames that are broken on purpose (reserved bits,
//! reserved opcodes, oversized control frames, non-minimal length encodings,
//! missing or unexpected masks). The reader is an incremental parser used to
//! judge what the peer under test sends back; it never panics on bad input
//! and reports problems as [`ReadError`].

/// Continuation frame opcode.
pub const OP_CONT: u8 = 0x0;
/// Text frame opcode.
pub const OP_TEXT: u8 = 0x1;
/// Binary frame opcode.
pub const OP_BINARY: u8 = 0x2;
/// Close frame opcode.
pub const OP_CLOSE: u8 = 0x8;
/// Ping frame opcode.
pub const OP_PING: u8 = 0x9;
/// Pong frame opcode.
pub const OP_PONG: u8 = 0xA;

/// How the payload length is written on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LenForm {
    /// The shortest form RFC 6455 allows (the correct one).
    Minimal,
    /// Always the 16-bit extended form (non-minimal for lengths < 126).
    Ext16,
    /// Always the 64-bit extended form (non-minimal for lengths < 65536).
    Ext64,
}

/// One frame to put on the wire, possibly malformed on purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSpec {
    /// FIN bit.
    pub fin: bool,
    /// The three RSV bits (0..=7, RSV1 is the highest bit).
    pub rsv: u8,
    /// The opcode (0..=15, reserved ones allowed).
    pub opcode: u8,
    /// Unmasked payload.
    pub payload: Vec<u8>,
    /// Masking key; `None` sends the frame unmasked.
    pub mask: Option<[u8; 4]>,
    /// Encoding of the payload length.
    pub len_form: LenForm,
}

impl FrameSpec {
    /// A final, unmasked frame with the given opcode and payload.
    pub fn new(opcode: u8, payload: impl Into<Vec<u8>>) -> Self {
        FrameSpec {
            fin: true,
            rsv: 0,
            opcode,
            payload: payload.into(),
            mask: None,
            len_form: LenForm::Minimal,
        }
    }

    /// Sets the FIN bit.
    pub fn fin(mut self, fin: bool) -> Self {
        self.fin = fin;
        self
    }

    /// Sets the RSV bits.
    pub fn rsv(mut self, rsv: u8) -> Self {
        self.rsv = rsv;
        self
    }

    /// Sets the masking key.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn masked(mut self, mask: Option<[u8; 4]>) -> Self {
        self.mask = mask;
        self
    }

    /// Sets the length encoding.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn len_form(mut self, form: LenForm) -> Self {
        self.len_form = form;
        self
    }

    /// Encodes the frame into wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        let len = self.payload.len();
        let mut out = Vec::with_capacity(len + 14);
        out.push(((self.fin as u8) << 7) | ((self.rsv & 0x7) << 4) | (self.opcode & 0xF));
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let form = match self.len_form {
            LenForm::Minimal if len < 126 => None,
            LenForm::Minimal if len <= 0xFFFF => Some(LenForm::Ext16),
            LenForm::Minimal => Some(LenForm::Ext64),
            LenForm::Ext16 if len <= 0xFFFF => Some(LenForm::Ext16),
            LenForm::Ext16 | LenForm::Ext64 => Some(LenForm::Ext64),
        };
        match form {
            None => out.push(mask_bit | len as u8),
            Some(LenForm::Ext16) => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            Some(_) => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        match self.mask {
            Some(key) => {
                out.extend_from_slice(&key);
                out.extend(self.payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            }
            None => out.extend_from_slice(&self.payload),
        }
        out
    }
}

/// Builds the payload of a close frame.
pub fn close_payload(code: Option<u16>, reason: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(2 + reason.len());
    if let Some(c) = code {
        p.extend_from_slice(&c.to_be_bytes());
    }
    p.extend_from_slice(reason);
    p
}

/// Splits `data` into chunks of `chop` bytes (`0` means one chunk).
pub fn chops(data: &[u8], chop: usize) -> Vec<&[u8]> {
    if chop == 0 || data.len() <= chop {
        return vec![data];
    }
    data.chunks(chop).collect()
}

/// Splits a message payload into frames of at most `frag` bytes each
/// (`0` = one frame). The first frame carries `opcode`, the rest are
/// continuations; only the last has FIN set.
pub fn fragment(opcode: u8, payload: &[u8], frag: usize) -> Vec<FrameSpec> {
    if frag == 0 || payload.len() <= frag {
        return vec![FrameSpec::new(opcode, payload.to_vec())];
    }
    let parts: Vec<&[u8]> = payload.chunks(frag).collect();
    let n = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            let op = if i == 0 { opcode } else { OP_CONT };
            FrameSpec::new(op, part.to_vec()).fin(i + 1 == n)
        })
        .collect()
}

/// A frame parsed from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// FIN bit.
    pub fin: bool,
    /// RSV bits.
    pub rsv: u8,
    /// Opcode.
    pub opcode: u8,
    /// Whether the frame was masked.
    pub masked: bool,
    /// Payload (already unmasked).
    pub payload: Vec<u8>,
}

/// A frame the reader refuses to parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The most significant bit of a 64-bit length was set.
    LengthMsbSet,
    /// The frame is larger than the reader's limit.
    TooLarge(u64),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::LengthMsbSet => write!(f, "64-bit payload length has its top bit set"),
            ReadError::TooLarge(n) => write!(f, "frame payload of {n} bytes exceeds the limit"),
        }
    }
}

/// Incremental frame parser.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    limit: u64,
}

impl FrameReader {
    /// A reader refusing frames whose payload exceeds `limit` bytes.
    pub fn new(limit: u64) -> Self {
        FrameReader {
            buf: Vec::new(),
            start: 0,
            limit,
        }
    }

    /// Feeds received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > (1 << 20) {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Number of buffered, not yet parsed bytes.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Returns the next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ReadError> {
        let b = &self.buf[self.start..];
        if b.len() < 2 {
            return Ok(None);
        }
        let fin = b[0] & 0x80 != 0;
        let rsv = (b[0] >> 4) & 0x7;
        let opcode = b[0] & 0xF;
        let masked = b[1] & 0x80 != 0;
        let len7 = b[1] & 0x7F;
        let mut pos = 2;
        let len: u64 = match len7 {
            126 => {
                if b.len() < 4 {
                    return Ok(None);
                }
                pos = 4;
                u16::from_be_bytes([b[2], b[3]]) as u64
            }
            127 => {
                if b.len() < 10 {
                    return Ok(None);
                }
                pos = 10;
                let mut a = [0u8; 8];
                a.copy_from_slice(&b[2..10]);
                let l = u64::from_be_bytes(a);
                if l >> 63 != 0 {
                    return Err(ReadError::LengthMsbSet);
                }
                l
            }
            n => n as u64,
        };
        if len > self.limit {
            return Err(ReadError::TooLarge(len));
        }
        let mut key = [0u8; 4];
        if masked {
            if b.len() < pos + 4 {
                return Ok(None);
            }
            key.copy_from_slice(&b[pos..pos + 4]);
            pos += 4;
        }
        let len = len as usize;
        if b.len() < pos + len {
            return Ok(None);
        }
        let mut payload = b[pos..pos + len].to_vec();
        if masked {
            for (i, x) in payload.iter_mut().enumerate() {
                *x ^= key[i % 4];
            }
        }
        self.start += pos + len;
        Ok(Some(Frame {
            fin,
            rsv,
            opcode,
            masked,
            payload,
        }))
    }
}

/// Whether `code` may appear in a close frame on the wire (RFC 6455 7.4,
/// plus the IANA-registered 1012-1014).
pub fn close_code_is_valid(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_small_unmasked_text() {
        let f = FrameSpec::new(OP_TEXT, b"Hi".to_vec());
        assert_eq!(f.encode(), vec![0x81, 0x02, b'H', b'i']);
    }

    #[test]
    fn encodes_length_boundaries() {
        for (len, header) in [(125usize, 2usize), (126, 4), (65535, 4), (65536, 10)] {
            let enc = FrameSpec::new(OP_BINARY, vec![0u8; len]).encode();
            assert_eq!(enc.len(), header + len, "len {len}");
        }
        let enc = FrameSpec::new(OP_BINARY, vec![0u8; 126]).encode();
        assert_eq!(&enc[..4], &[0x82, 126, 0, 126]);
        let enc = FrameSpec::new(OP_BINARY, vec![0u8; 65536]).encode();
        assert_eq!(&enc[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn encodes_broken_frames_on_purpose() {
        let f = FrameSpec::new(0x3, b"x".to_vec()).fin(false).rsv(0b101);
        assert_eq!(f.encode()[0], 0x53);
        let f = FrameSpec::new(OP_PING, vec![1u8; 3]).len_form(LenForm::Ext64);
        let enc = f.encode();
        assert_eq!(enc[1], 127);
        assert_eq!(enc.len(), 10 + 3);
        let f = FrameSpec::new(OP_PING, vec![1u8; 3]).len_form(LenForm::Ext16);
        assert_eq!(&f.encode()[..4], &[0x89, 126, 0, 3]);
    }

    #[test]
    fn masked_roundtrip_through_reader() {
        let payload: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        let f = FrameSpec::new(OP_BINARY, payload.clone()).masked(Some([1, 2, 3, 4]));
        let enc = f.encode();
        assert_ne!(
            &enc[14..20],
            &payload[..6],
            "payload must be masked on the wire"
        );
        let mut r = FrameReader::new(1 << 20);
        // Feed in odd-sized chops, the frame appears only once complete.
        for (i, c) in chops(&enc, 997).into_iter().enumerate() {
            assert_eq!(r.next_frame(), Ok(None), "chop {i}");
            r.push(c);
        }
        let got = r.next_frame().unwrap().unwrap();
        assert!(got.masked && got.fin);
        assert_eq!(got.opcode, OP_BINARY);
        assert_eq!(got.payload, payload);
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn reader_parses_back_to_back_frames_bytewise() {
        let mut wire = FrameSpec::new(OP_TEXT, b"ab".to_vec()).fin(false).encode();
        wire.extend(FrameSpec::new(OP_PING, b"p".to_vec()).encode());
        wire.extend(FrameSpec::new(OP_CONT, b"c".to_vec()).rsv(4).encode());
        let mut r = FrameReader::new(100);
        let mut frames = Vec::new();
        for b in wire {
            r.push(&[b]);
            while let Some(f) = r.next_frame().unwrap() {
                frames.push(f);
            }
        }
        assert_eq!(frames.len(), 3);
        assert!(!frames[0].fin);
        assert_eq!(frames[1].opcode, OP_PING);
        assert_eq!(frames[2].rsv, 4);
        assert_eq!(frames[2].payload, b"c");
    }

    #[test]
    fn reader_rejects_bad_lengths() {
        let mut r = FrameReader::new(10);
        r.push(&[0x82, 11]);
        assert_eq!(r.next_frame(), Err(ReadError::TooLarge(11)));
        let mut r = FrameReader::new(u64::MAX);
        r.push(&[0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(r.next_frame(), Err(ReadError::LengthMsbSet));
    }

    #[test]
    fn fragments_and_chops() {
        let frames = fragment(OP_TEXT, &[b'*'; 65536], 1300);
        assert_eq!(frames.len(), 51);
        assert_eq!(frames[0].opcode, OP_TEXT);
        assert!(frames[1..].iter().all(|f| f.opcode == OP_CONT));
        assert!(frames[..50].iter().all(|f| !f.fin));
        assert!(frames[50].fin);
        assert_eq!(frames[50].payload.len(), 65536 - 50 * 1300);
        assert_eq!(fragment(OP_TEXT, b"", 1).len(), 1);
        assert_eq!(chops(&[0u8; 10], 3).len(), 4);
        assert_eq!(chops(&[0u8; 10], 0).len(), 1);
    }

    #[test]
    fn close_codes() {
        for c in [1000, 1001, 1002, 1003, 1007, 1011, 1012, 3000, 4999] {
            assert!(close_code_is_valid(c), "{c}");
        }
        for c in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert!(!close_code_is_valid(c), "{c}");
        }
        assert_eq!(
            close_payload(Some(1000), b"ok"),
            vec![0x03, 0xE8, b'o', b'k']
        );
        assert!(close_payload(None, b"").is_empty());
    }
}
