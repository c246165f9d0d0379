//! The frame header (RFC 6455 section 5.2): parsing and encoding.

use crate::error::DecodeError;
use crate::opcode::OpCode;

/// The longest possible header: 2 fixed bytes, 8 bytes of extended length, 4 bytes of mask.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest payload a control frame may carry.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A decoded (or to-be-encoded) frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// This is the final frame of its message.
    pub fin: bool,
    /// Reserved bit 1 (permessage-deflate uses it to mark a compressed message).
    pub rsv1: bool,
    /// Reserved bit 2; no extension we know uses it.
    pub rsv2: bool,
    /// Reserved bit 3; no extension we know uses it.
    pub rsv3: bool,
    /// What the payload means.
    pub opcode: OpCode,
    /// The masking key, present on every frame a client sends.
    pub mask: Option<[u8; 4]>,
    /// The payload length in bytes; always below 2^63.
    pub payload_len: u64,
}

impl FrameHeader {
    /// A header for a final, unmasked frame with no reserved bits set.
    pub const fn new(opcode: OpCode, payload_len: u64) -> Self {
        Self {
            fin: true,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode,
            mask: None,
            payload_len,
        }
    }

    /// Parses a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds only part of a header (more bytes are needed),
    /// or the header and its encoded length. Checks only what the bytes themselves can
    /// violate: a reserved opcode, a 64-bit length with its top bit set, a control frame
    /// that is fragmented or longer than 125 bytes. Limits and role rules are the
    /// [`Decoder`](crate::Decoder)'s business.
    pub fn parse(buf: &[u8]) -> Result<Option<(Self, usize)>, DecodeError> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(DecodeError::ReservedOpcode(b0 & 0x0F))?;
        let masked = b1 & 0x80 != 0;
        let (payload_len, len_bytes) = match b1 & 0x7F {
            126 => match buf.get(2..4) {
                Some(bytes) => (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 2),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(bytes) => {
                    let mut raw = [0u8; 8];
                    raw.copy_from_slice(bytes);
                    let len = u64::from_be_bytes(raw);
                    if len >> 63 != 0 {
                        return Err(DecodeError::LengthTopBitSet);
                    }
                    (len, 8)
                }
                None => return Ok(None),
            },
            short => (u64::from(short), 0),
        };
        let fin = b0 & 0x80 != 0;
        if opcode.is_control() {
            if !fin {
                return Err(DecodeError::FragmentedControlFrame(opcode));
            }
            if payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(DecodeError::ControlFrameTooLong {
                    opcode,
                    len: payload_len,
                });
            }
        }
        let mut header_len = 2 + len_bytes;
        let mask = if masked {
            let Some(key) = buf.get(header_len..header_len + 4) else {
                return Ok(None);
            };
            header_len += 4;
            Some([key[0], key[1], key[2], key[3]])
        } else {
            None
        };
        let header = Self {
            fin,
            rsv1: b0 & 0x40 != 0,
            rsv2: b0 & 0x20 != 0,
            rsv3: b0 & 0x10 != 0,
            opcode,
            mask,
            payload_len,
        };
        Ok(Some((header, header_len)))
    }

    /// The number of bytes [`encode`](Self::encode) writes for this header.
    pub const fn encoded_len(&self) -> usize {
        let len_bytes = if self.payload_len < 126 {
            0
        } else if self.payload_len <= u16::MAX as u64 {
            2
        } else {
            8
        };
        2 + len_bytes + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Writes the header into `out` using the shortest length encoding, and returns the
    /// number of bytes written (2 to 14).
    ///
    /// # Panics
    ///
    /// If `payload_len` has its top bit set, which no frame may have: a caller bug,
    /// never a consequence of network input.
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        assert!(
            self.payload_len >> 63 == 0,
            "frame payload length {} does not fit in 63 bits",
            self.payload_len
        );
        out[0] = (u8::from(self.fin) << 7)
            | (u8::from(self.rsv1) << 6)
            | (u8::from(self.rsv2) << 5)
            | (u8::from(self.rsv3) << 4)
            | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut len = 2;
        if self.payload_len < 126 {
            out[1] = mask_bit | self.payload_len as u8;
        } else if self.payload_len <= u64::from(u16::MAX) {
            out[1] = mask_bit | 126;
            out[2..4].copy_from_slice(&(self.payload_len as u16).to_be_bytes());
            len = 4;
        } else {
            out[1] = mask_bit | 127;
            out[2..10].copy_from_slice(&self.payload_len.to_be_bytes());
            len = 10;
        }
        if let Some(key) = self.mask {
            out[len..len + 4].copy_from_slice(&key);
            len += 4;
        }
        len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(header: &FrameHeader) -> Vec<u8> {
        let mut out = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut out);
        assert_eq!(n, header.encoded_len());
        out[..n].to_vec()
    }

    #[test]
    fn rfc_5_7_unmasked_hello_header() {
        let bytes = [0x81, 0x05];
        let (header, len) = FrameHeader::parse(&bytes).unwrap().unwrap();
        assert_eq!(len, 2);
        assert_eq!(header, FrameHeader::new(OpCode::Text, 5));
        assert_eq!(encode(&header), bytes);
    }

    #[test]
    fn rfc_5_7_masked_hello_header() {
        let bytes = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d];
        let (header, len) = FrameHeader::parse(&bytes).unwrap().unwrap();
        assert_eq!(len, 6);
        assert_eq!(header.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(header.payload_len, 5);
        assert_eq!(encode(&header), bytes);
    }

    #[test]
    fn rfc_5_7_256_byte_binary_uses_16_bit_length() {
        let bytes = [0x82, 0x7E, 0x01, 0x00];
        let (header, len) = FrameHeader::parse(&bytes).unwrap().unwrap();
        assert_eq!(
            (header.opcode, header.payload_len, len),
            (OpCode::Binary, 256, 4)
        );
        assert_eq!(encode(&header), bytes);
    }

    #[test]
    fn rfc_5_7_65536_byte_binary_uses_64_bit_length() {
        let bytes = [0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00];
        let (header, len) = FrameHeader::parse(&bytes).unwrap().unwrap();
        assert_eq!((header.payload_len, len), (65536, 10));
        assert_eq!(encode(&header), bytes);
    }

    #[test]
    fn length_boundaries_pick_the_shortest_encoding() {
        for (len, expected) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let header = FrameHeader::new(OpCode::Binary, len);
            assert_eq!(header.encoded_len(), expected, "{len}");
            let bytes = encode(&header);
            assert_eq!(
                FrameHeader::parse(&bytes).unwrap().unwrap(),
                (header, expected)
            );
        }
    }

    #[test]
    fn rejects_64_bit_length_with_top_bit_set() {
        let bytes = [0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            FrameHeader::parse(&bytes),
            Err(DecodeError::LengthTopBitSet)
        );
    }

    #[test]
    fn accepts_largest_63_bit_length() {
        let bytes = [0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        let (header, _) = FrameHeader::parse(&bytes).unwrap().unwrap();
        assert_eq!(header.payload_len, i64::MAX as u64);
    }

    #[test]
    fn rejects_reserved_opcode() {
        assert_eq!(
            FrameHeader::parse(&[0x83, 0x00]),
            Err(DecodeError::ReservedOpcode(3))
        );
        assert_eq!(
            FrameHeader::parse(&[0x8B, 0x00]),
            Err(DecodeError::ReservedOpcode(11))
        );
    }

    #[test]
    fn rejects_fragmented_control_frame() {
        assert_eq!(
            FrameHeader::parse(&[0x09, 0x00]),
            Err(DecodeError::FragmentedControlFrame(OpCode::Ping))
        );
    }

    #[test]
    fn rejects_control_frame_longer_than_125() {
        assert_eq!(
            FrameHeader::parse(&[0x89, 0x7E, 0x00, 0x7E]),
            Err(DecodeError::ControlFrameTooLong {
                opcode: OpCode::Ping,
                len: 126
            })
        );
    }

    #[test]
    fn partial_headers_ask_for_more() {
        let full = [0x82, 0xFF, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00, 1, 2, 3, 4];
        for cut in 0..full.len() {
            assert_eq!(FrameHeader::parse(&full[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(FrameHeader::parse(&full).unwrap().is_some());
    }

    #[test]
    fn reserved_bits_are_reported() {
        let (header, _) = FrameHeader::parse(&[0xF1, 0x00]).unwrap().unwrap();
        assert!(header.rsv1 && header.rsv2 && header.rsv3);
    }
}
