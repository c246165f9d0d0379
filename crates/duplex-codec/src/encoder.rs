//! Writing frames.

use bytes::BytesMut;

use crate::header::{FrameHeader, MAX_HEADER_LEN};
use crate::mask::apply_mask;

/// Appends `header` and `payload` to `out`, masking the payload with `header.mask` if
/// it has one. `header.payload_len` must equal `payload.len()`.
///
/// ```
/// use bytes::BytesMut;
/// use duplex_codec::{encode_frame, FrameHeader, OpCode};
///
/// let mut out = BytesMut::new();
/// let mut header = FrameHeader::new(OpCode::Text, 5);
/// header.mask = Some([0x37, 0xfa, 0x21, 0x3d]);
/// encode_frame(&header, b"Hello", &mut out);
/// assert_eq!(&out[..], &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
/// ```
///
/// # Panics
///
/// If `header.payload_len` differs from `payload.len()` (a caller bug).
pub fn encode_frame(header: &FrameHeader, payload: &[u8], out: &mut BytesMut) {
    assert_eq!(
        header.payload_len,
        payload.len() as u64,
        "header length does not match the payload"
    );
    out.reserve(header.encoded_len() + payload.len());
    encode_header(header, out);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = header.mask {
        apply_mask(&mut out[start..], key, 0);
    }
}

/// Appends only the header to `out`, for callers that send the payload separately
/// (an unmasked payload can go to the socket straight from the caller's buffer).
pub fn encode_header(header: &FrameHeader, out: &mut BytesMut) {
    let mut raw = [0u8; MAX_HEADER_LEN];
    let n = header.encode(&mut raw);
    out.extend_from_slice(&raw[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OpCode;

    #[test]
    fn rfc_5_7_unmasked_ping() {
        let mut out = BytesMut::new();
        encode_frame(&FrameHeader::new(OpCode::Ping, 5), b"Hello", &mut out);
        assert_eq!(&out[..], &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    }

    #[test]
    fn rfc_5_7_masked_pong() {
        let mut out = BytesMut::new();
        let mut header = FrameHeader::new(OpCode::Pong, 5);
        header.mask = Some([0x37, 0xfa, 0x21, 0x3d]);
        encode_frame(&header, b"Hello", &mut out);
        assert_eq!(
            &out[..],
            &[
                0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
            ]
        );
    }
}
