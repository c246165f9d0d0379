//! Frames: a writer that can also produce frames broken on purpose (reserved bits,
//! reserved opcodes, oversized control frames, non-minimal length encodings, missing
//! or unexpected masks), and an incremental reader used to judge what a peer sends
//! back; the reader never panics on bad input and reports problems as [`ReadError`].

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

/// The FIN bit of the first header byte, to be or-ed with an opcode for [`frame`].
pub const FIN: u8 = 0x80;
/// The RSV1 bit of the first header byte (permessage-deflate's "compressed").
pub const RSV1: u8 = 0x40;

/// The masking key of [`client_frame`] (fixed, so that seeds and tests are
/// reproducible).
pub const CLIENT_MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A frame with `first` as its first byte (FIN, RSV and opcode bits, any value), the
/// shortest length form, and `mask` applied when given.
pub fn frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = header(first, payload.len() as u64, mask, false);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key);
    }
    out
}

/// A frame header alone declaring `len` payload bytes; `long` forces the 64-bit length
/// form (which may then declare anything up to 2^64-1, valid or not).
pub fn header(first: u8, len: u64, mask: Option<[u8; 4]>, long: bool) -> Vec<u8> {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut out = Vec::with_capacity(14);
    out.push(first);
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

/// A masked client frame with [`CLIENT_MASK`].
pub fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    frame(first, payload, Some(CLIENT_MASK))
}

/// `len` deterministic bytes that look random (the low byte of xorshift32 from `seed`,
/// 0 counting as 1): payloads that deflate cannot shrink much and whose period is no
/// multiple of the mask's.
pub fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut state = seed.max(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

/// XORs `data` with `key`, the key starting at byte 0 (masking and unmasking alike).
pub fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

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
    pub fn masked(mut self, mask: Option<[u8; 4]>) -> Self {
        self.mask = mask;
        self
    }

    /// Sets the length encoding.
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
        if let Some(key) = self.mask {
            out.extend_from_slice(&key);
        }
        let start = out.len();
        out.extend_from_slice(&self.payload);
        if let Some(key) = self.mask {
            apply_mask(&mut out[start..], key);
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

impl Frame {
    /// Whether RSV1 is set (a compressed message under permessage-deflate).
    pub fn rsv1(&self) -> bool {
        self.rsv & 0b100 != 0
    }

    /// The close code of a close frame's payload (`None` when it has none).
    pub fn close_code(&self) -> Option<u16> {
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
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
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// How many more bytes the next frame needs at least (`0` once it is complete): a
    /// raw-socket test reads exactly this many, in turn, so that it never reads past
    /// the frame.
    pub fn wanted(&self) -> usize {
        let b = &self.buf[self.start..];
        let mut need = 2usize;
        if b.len() >= 2 {
            let len7 = b[1] & 0x7F;
            need += match len7 {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            if b[1] & 0x80 != 0 {
                need += 4;
            }
            if b.len() >= need {
                let len = match len7 {
                    126 => u64::from(u16::from_be_bytes([b[2], b[3]])),
                    127 => u64::from_be_bytes(b[2..10].try_into().unwrap_or([0xFF; 8])),
                    n => u64::from(n),
                };
                need = need.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
            }
        }
        need.saturating_sub(b.len())
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
            apply_mask(&mut payload, key);
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

/// The frames in `bytes` read at once (any masking accepted, fragments not joined), and
/// whether the bytes ended cleanly (`Err` with what broke: a partial frame at the end,
/// or a frame the reader refuses).
pub fn frames(bytes: &[u8]) -> (Vec<Frame>, Result<(), String>) {
    let mut reader = FrameReader::new(u64::MAX);
    reader.push(bytes);
    let mut out = Vec::new();
    loop {
        match reader.next_frame() {
            Ok(Some(frame)) => out.push(frame),
            Ok(None) if reader.buffered() == 0 => return (out, Ok(())),
            Ok(None) => {
                let partial = reader.buffered();
                return (out, Err(format!("{partial} bytes of a partial frame")));
            }
            Err(error) => return (out, Err(error.to_string())),
        }
    }
}

/// The code of the first close frame among `frames` (`Some(None)` for a close frame
/// without a code, `None` without a close frame).
pub fn close_code(frames: &[Frame]) -> Option<Option<u16>> {
    frames
        .iter()
        .find(|f| f.opcode == OP_CLOSE)
        .map(Frame::close_code)
}

/// Whether `code` may appear in a close frame on the wire (RFC 6455 7.4,
/// plus the IANA-registered 1012-1014).
pub fn close_code_is_valid(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO_MASKED: [u8; 11] = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];

    /// The examples of RFC 6455 section 5.7, byte for byte, through every writer.
    #[test]
    fn rfc6455_section_5_7_examples() {
        let hello_text = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(
            FrameSpec::new(OP_TEXT, b"Hello".to_vec()).encode(),
            hello_text
        );
        assert_eq!(frame(FIN | OP_TEXT, b"Hello", None), hello_text);

        let key = [0x37, 0xfa, 0x21, 0x3d];
        let masked = FrameSpec::new(OP_TEXT, b"Hello".to_vec()).masked(Some(key));
        assert_eq!(masked.encode(), HELLO_MASKED);
        assert_eq!(client_frame(FIN | OP_TEXT, b"Hello"), HELLO_MASKED);

        let fragments: Vec<Vec<u8>> = fragment(OP_TEXT, b"Hello", 3)
            .iter()
            .map(FrameSpec::encode)
            .collect();
        assert_eq!(fragments[0], [0x01, 0x03, 0x48, 0x65, 0x6c]);
        assert_eq!(fragments[1], [0x80, 0x02, 0x6c, 0x6f]);

        let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(frame(FIN | OP_PING, b"Hello", None), ping);
        let mut pong = HELLO_MASKED;
        pong[0] = 0x8a;
        assert_eq!(frame(FIN | OP_PONG, b"Hello", Some(key)), pong);

        let big = frame(FIN | OP_BINARY, &[7u8; 256], None);
        assert_eq!(&big[..4], &[0x82, 0x7E, 0x01, 0x00]);
        assert_eq!(big.len(), 4 + 256);
        let huge = frame(FIN | OP_BINARY, &vec![7u8; 65536], None);
        assert_eq!(&huge[..10], &[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(huge.len(), 10 + 65536);
    }

    #[test]
    fn reads_the_rfc_examples_back() {
        let mut wire = HELLO_MASKED.to_vec();
        wire.extend([0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f]);
        wire.extend(frame(
            FIN | OP_CLOSE,
            &close_payload(Some(1001), b"away"),
            None,
        ));
        let (got, ended) = frames(&wire);
        assert_eq!(ended, Ok(()));
        assert_eq!(got.len(), 4);
        assert!(got[0].masked && got[0].fin);
        assert_eq!(got[0].payload, b"Hello");
        assert_eq!((got[1].fin, got[1].opcode), (false, OP_TEXT));
        assert_eq!((got[2].fin, got[2].opcode), (true, OP_CONT));
        assert_eq!(close_code(&got), Some(Some(1001)));
        assert_eq!(close_code(&got[..3]), None);
        let (got, ended) = frames(&wire[..5]);
        assert!(got.is_empty());
        assert_eq!(ended, Err("5 bytes of a partial frame".to_string()));
    }

    #[test]
    fn odd_headers_on_purpose() {
        // Any first byte, the 64-bit form for a tiny length, a length with the top bit.
        assert_eq!(
            header(0xFF, 1, None, true),
            [0xFF, 127, 0, 0, 0, 0, 0, 0, 0, 1]
        );
        assert_eq!(header(0x82, u64::MAX, None, false)[1], 127);
        assert_eq!(&header(0x82, u64::MAX, None, false)[2..], &[0xFF; 8]);
        let h = header(FIN | RSV1 | OP_BINARY, 200, Some([1, 2, 3, 4]), false);
        assert_eq!(h, [0xC2, 0xFE, 0, 200, 1, 2, 3, 4]);
        let (got, _) = frames(&frame(FIN | RSV1 | OP_BINARY, b"z", None));
        assert!(got[0].rsv1());
    }

    #[test]
    fn noise_is_xorshift32() {
        assert_eq!(noise(3, 1), [0x21, 0x01, 0xC5]);
        assert_eq!(noise(3, 0), noise(3, 1));
        assert_eq!(noise(1000, 7)[..999], noise(999, 7)[..]);
        assert_ne!(noise(64, 7), noise(64, 8));
    }

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
    fn reader_says_how_many_bytes_it_wants() {
        let wire = frame(FIN | OP_BINARY, &[5u8; 300], Some([9, 8, 7, 6]));
        let mut r = FrameReader::new(u64::MAX);
        let mut steps = Vec::new();
        let mut fed = 0;
        while r.wanted() > 0 {
            let n = r.wanted();
            steps.push(n);
            r.push(&wire[fed..fed + n]);
            fed += n;
        }
        // Two bytes, the 16-bit length and the key, then the payload: nothing more.
        assert_eq!(steps, [2, 6, 300]);
        assert_eq!(fed, wire.len());
        assert_eq!(r.next_frame().unwrap().unwrap().payload, [5u8; 300]);
        assert_eq!(r.wanted(), 2);
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
