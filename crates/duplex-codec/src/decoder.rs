//! The streaming frame decoder.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::DecodeError;
use crate::header::FrameHeader;
use crate::mask::apply_mask;
use crate::opcode::OpCode;

/// Which masking rule the decoder enforces (RFC 6455 section 5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Masking {
    /// Every frame must be masked: the decoder of a server.
    Required,
    /// No frame may be masked: the decoder of a client.
    Forbidden,
    /// Accept both (for tools that inspect traffic).
    Any,
}

/// What [`Decoder::decode`] found in the buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A new frame: its header and the part of its payload that has arrived so far,
    /// already unmasked. Data frames are delivered as soon as their header is complete,
    /// so the payload may be empty and `complete` false; control frames (at most 125
    /// bytes) are delivered whole.
    Frame {
        /// The frame's header.
        header: FrameHeader,
        /// The first piece of the payload, unmasked.
        payload: Bytes,
        /// The whole payload is in `payload`.
        complete: bool,
    },
    /// A further piece of the current data frame's payload, unmasked.
    Continue {
        /// The next piece of the payload, never empty unless `complete`.
        payload: Bytes,
        /// This piece ends the frame.
        complete: bool,
    },
}

/// A decoder that turns a byte stream into frames, accepting input split at any byte.
///
/// It reads from a [`BytesMut`] the caller appends to, and splits payloads off it without
/// copying. It never reserves memory from a declared length. By default a data frame's
/// payload is handed out piece by piece as its bytes arrive, so the caller's buffer only
/// holds what was actually received; [`whole_binary_frames`](Self::whole_binary_frames)
/// makes it wait for the whole payload of uncompressed binary frames instead (so that
/// the payload is one slice of the caller's buffer, never pieces to join), and
/// [`awaiting`](Self::awaiting) says how many bytes such a frame still needs, so the
/// caller can read them straight behind the rest. A header that announces more than
/// `max_frame_size` is rejected before any of its payload is read.
///
/// After an error the stream is not decodable any more: every later call returns the
/// same error.
///
/// ```
/// use bytes::BytesMut;
/// use duplex_codec::{Decoded, Decoder, Masking, OpCode};
///
/// let mut decoder = Decoder::new(Masking::Required, 1 << 20);
/// let mut buf = BytesMut::from(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d][..]);
/// // The header and the first three payload bytes have arrived.
/// let Some(Decoded::Frame { header, payload, complete }) = decoder.decode(&mut buf)? else {
///     panic!("expected a frame");
/// };
/// assert_eq!((header.opcode, &payload[..], complete), (OpCode::Text, &b"Hel"[..], false));
/// buf.extend_from_slice(&[0x51, 0x58]);
/// let Some(Decoded::Continue { payload, complete }) = decoder.decode(&mut buf)? else {
///     panic!("expected the rest");
/// };
/// assert_eq!((&payload[..], complete), (&b"lo"[..], true));
/// # Ok::<(), duplex_codec::DecodeError>(())
/// ```
#[derive(Debug)]
pub struct Decoder {
    masking: Masking,
    max_frame_size: u64,
    state: State,
    /// Binary frames without RSV1 and with at most this many payload bytes are
    /// delivered whole (0: never).
    whole_max: u64,
    /// Continuation frames follow the same rule as binary ones.
    whole_continuations: bool,
    /// Bytes the whole frame at the front of the buffer still needed at the last call.
    awaiting: usize,
    /// Whole payloads shorter than this are copied out of the buffer instead of split
    /// off it (0: never).
    copy_below: usize,
}

#[derive(Debug)]
enum State {
    Header,
    Payload {
        mask: Option<[u8; 4]>,
        /// Payload bytes already handed out, for the mask phase.
        position: u64,
        remaining: u64,
    },
    Failed(DecodeError),
}

impl Decoder {
    /// A decoder enforcing `masking` and rejecting frames longer than `max_frame_size`.
    pub const fn new(masking: Masking, max_frame_size: u64) -> Self {
        Self {
            masking,
            max_frame_size,
            state: State::Header,
            whole_max: 0,
            whole_continuations: false,
            awaiting: 0,
            copy_below: 0,
        }
    }

    /// Delivers binary frames whose RSV bits are clear and whose payload is at most `max`
    /// bytes whole: [`decode`](Self::decode) returns `Ok(None)` until the whole payload is
    /// in the buffer, then one [`Decoded::Frame`] with `complete` set. 0 (the default)
    /// turns it off. Frames with RSV1 (compressed) and text frames are still handed out
    /// as they arrive, so that inflation and UTF-8 checks fail as early as possible.
    pub fn whole_binary_frames(&mut self, max: u64) {
        self.whole_max = max;
    }

    /// Whether continuation frames are delivered whole like binary ones (up to the same
    /// size): the caller sets it when the message they continue is binary and
    /// uncompressed.
    pub fn whole_continuations(&mut self, on: bool) {
        self.whole_continuations = on;
    }

    /// Hands out the payloads of frames shorter than `len` bytes as copies of their own
    /// instead of slices of the caller's buffer, so that a small payload the caller
    /// keeps does not keep the whole buffer alive (0, the default, never copies). For
    /// small payloads a copy also costs less than splitting the buffer.
    pub fn copy_payloads_below(&mut self, len: usize) {
        self.copy_below = len;
    }

    /// How many more bytes the frame the last [`decode`](Self::decode) call waited for
    /// needs before it can be delivered whole; 0 when that call did not wait for one.
    pub const fn awaiting(&self) -> usize {
        self.awaiting
    }

    /// The frame is one to deliver whole.
    fn waits_whole(&self, header: &FrameHeader) -> bool {
        header.payload_len <= self.whole_max
            && !(header.rsv1 || header.rsv2 || header.rsv3)
            && match header.opcode {
                OpCode::Binary => true,
                OpCode::Continuation => self.whole_continuations,
                _ => false,
            }
    }

    /// The configured maximum payload length of one frame.
    pub const fn max_frame_size(&self) -> u64 {
        self.max_frame_size
    }

    /// True between frames: no header or payload is partly consumed.
    pub const fn is_at_frame_boundary(&self) -> bool {
        matches!(self.state, State::Header)
    }

    /// Decodes the next item from the front of `buf`, removing the bytes it used.
    ///
    /// `Ok(None)` means more bytes are needed; whatever partial header is in `buf` stays
    /// there for the next call.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, DecodeError> {
        self.awaiting = 0;
        match self.state {
            State::Failed(ref error) => Err(error.clone()),
            State::Header => match self.decode_header(buf) {
                Err(error) => {
                    self.state = State::Failed(error.clone());
                    Err(error)
                }
                ok => ok,
            },
            State::Payload {
                mask,
                position,
                remaining,
            } => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let copy = position + remaining < self.copy_below as u64;
                let payload = take_payload(buf, remaining, mask, position, copy);
                let taken = payload.len() as u64;
                let complete = taken == remaining;
                self.state = if complete {
                    State::Header
                } else {
                    State::Payload {
                        mask,
                        position: position + taken,
                        remaining: remaining - taken,
                    }
                };
                Ok(Some(Decoded::Continue { payload, complete }))
            }
        }
    }

    fn decode_header(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, DecodeError> {
        let Some((header, header_len)) = FrameHeader::parse(buf)? else {
            return Ok(None);
        };
        match (self.masking, header.mask.is_some()) {
            (Masking::Required, false) => return Err(DecodeError::UnmaskedFrame),
            (Masking::Forbidden, true) => return Err(DecodeError::MaskedFrame),
            _ => {}
        }
        if header.payload_len > self.max_frame_size {
            return Err(DecodeError::FrameTooLarge {
                len: header.payload_len,
                max: self.max_frame_size,
            });
        }
        let available = (buf.len() - header_len) as u64;
        if available < header.payload_len {
            if header.opcode.is_control() {
                // At most 125 bytes: wait for the whole control frame.
                return Ok(None);
            }
            if self.waits_whole(&header) {
                // `payload_len` is at most `whole_max`, which the caller holds in memory.
                let missing = header.payload_len - available;
                self.awaiting = usize::try_from(missing).unwrap_or(usize::MAX);
                return Ok(None);
            }
        }
        buf.advance(header_len);
        let copy = header.payload_len < self.copy_below as u64;
        let payload = take_payload(buf, header.payload_len, header.mask, 0, copy);
        let taken = payload.len() as u64;
        let complete = taken == header.payload_len;
        if !complete {
            self.state = State::Payload {
                mask: header.mask,
                position: taken,
                remaining: header.payload_len - taken,
            };
        }
        Ok(Some(Decoded::Frame {
            header,
            payload,
            complete,
        }))
    }
}

/// The most spare room a buffer may have for a small payload that is all of it to be
/// handed over instead of copied.
const WHOLE_SLACK: usize = 64;

/// Takes up to `remaining` bytes off the front of `buf`, unmasked: split off it, or
/// with `copy` copied into a buffer of their own (unless they are all that is left of
/// a buffer about their size, which is then taken whole).
fn take_payload(
    buf: &mut BytesMut,
    remaining: u64,
    mask: Option<[u8; 4]>,
    position: u64,
    copy: bool,
) -> Bytes {
    let n = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
    if n == 0 {
        return Bytes::new();
    }
    let phase = (position & 3) as usize;
    if copy && n == buf.len() && buf.capacity() - n <= WHOLE_SLACK {
        // The payload is all that is left of a buffer sized for it (one read, one
        // frame: the usual case of a request and its reply): the buffer itself is handed
        // over, without a copy or an allocation, and keeps at most the frame's header and
        // `WHOLE_SLACK` bytes alive besides the payload.
        let mut piece = std::mem::take(buf);
        if let Some(key) = mask {
            apply_mask(&mut piece, key, phase);
        }
        return piece.freeze();
    }
    if copy {
        let mut piece = buf[..n].to_vec();
        buf.advance(n);
        if let Some(key) = mask {
            apply_mask(&mut piece, key, phase);
        }
        return Bytes::from(piece);
    }
    let mut piece = buf.split_to(n);
    if let Some(key) = mask {
        apply_mask(&mut piece, key, phase);
    }
    piece.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OpCode;

    fn decode_all(decoder: &mut Decoder, buf: &mut BytesMut) -> Vec<Decoded> {
        let mut out = Vec::new();
        while let Some(item) = decoder.decode(buf).unwrap() {
            out.push(item);
        }
        out
    }

    #[test]
    fn rfc_5_7_unmasked_hello() {
        let mut decoder = Decoder::new(Masking::Forbidden, 1000);
        let mut buf = BytesMut::from(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f][..]);
        assert_eq!(
            decode_all(&mut decoder, &mut buf),
            vec![Decoded::Frame {
                header: FrameHeader::new(OpCode::Text, 5),
                payload: Bytes::from_static(b"Hello"),
                complete: true
            }]
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn rfc_5_7_fragmented_hel_lo() {
        let mut decoder = Decoder::new(Masking::Forbidden, 1000);
        let mut buf = BytesMut::from(&[0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f][..]);
        let items = decode_all(&mut decoder, &mut buf);
        assert_eq!(items.len(), 2);
        let Decoded::Frame {
            header, payload, ..
        } = &items[0]
        else {
            panic!()
        };
        assert!(!header.fin);
        assert_eq!((header.opcode, &payload[..]), (OpCode::Text, &b"Hel"[..]));
        let Decoded::Frame {
            header, payload, ..
        } = &items[1]
        else {
            panic!()
        };
        assert!(header.fin);
        assert_eq!(
            (header.opcode, &payload[..]),
            (OpCode::Continuation, &b"lo"[..])
        );
    }

    #[test]
    fn server_rejects_unmasked_frame() {
        let mut decoder = Decoder::new(Masking::Required, 1000);
        let mut buf = BytesMut::from(&[0x81, 0x00][..]);
        assert_eq!(decoder.decode(&mut buf), Err(DecodeError::UnmaskedFrame));
        // The failure sticks.
        assert_eq!(decoder.decode(&mut buf), Err(DecodeError::UnmaskedFrame));
    }

    #[test]
    fn client_rejects_masked_frame() {
        let mut decoder = Decoder::new(Masking::Forbidden, 1000);
        let mut buf = BytesMut::from(&[0x81, 0x80, 1, 2, 3, 4][..]);
        assert_eq!(decoder.decode(&mut buf), Err(DecodeError::MaskedFrame));
    }

    #[test]
    fn rejects_header_declaring_2_pow_63_minus_1_without_allocating() {
        let mut decoder = Decoder::new(Masking::Any, 16 << 20);
        let mut buf =
            BytesMut::from(&[0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF][..]);
        let capacity = buf.capacity();
        assert_eq!(
            decoder.decode(&mut buf),
            Err(DecodeError::FrameTooLarge {
                len: i64::MAX as u64,
                max: 16 << 20
            })
        );
        assert_eq!(buf.capacity(), capacity);
    }

    #[test]
    fn frame_of_exactly_max_size_is_accepted_and_one_more_byte_is_not() {
        let mut decoder = Decoder::new(Masking::Any, 126);
        let mut buf = BytesMut::from(&[0x82, 0x7E, 0x00, 0x7E][..]);
        assert!(matches!(
            decoder.decode(&mut buf),
            Ok(Some(Decoded::Frame {
                complete: false,
                ..
            }))
        ));
        let mut decoder = Decoder::new(Masking::Any, 126);
        let mut buf = BytesMut::from(&[0x82, 0x7E, 0x00, 0x7F][..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(DecodeError::FrameTooLarge { len: 127, max: 126 })
        );
    }

    #[test]
    fn payload_is_handed_out_as_it_arrives_and_unmasked_across_pieces() {
        let key = [9, 8, 7, 6];
        let plain: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let mut masked = plain.clone();
        apply_mask(&mut masked, key, 0);
        let mut wire = vec![0x82, 0xFE, 0x01, 0x2C];
        wire.extend_from_slice(&key);
        wire.extend_from_slice(&masked);

        let mut decoder = Decoder::new(Masking::Required, 1000);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut completes = 0;
        for chunk in wire.chunks(7) {
            buf.extend_from_slice(chunk);
            // The buffer never holds more than the bytes of one read plus a partial header.
            assert!(buf.len() < 7 + 8);
            while let Some(item) = decoder.decode(&mut buf).unwrap() {
                let (payload, complete) = match item {
                    Decoded::Frame {
                        payload, complete, ..
                    }
                    | Decoded::Continue { payload, complete } => (payload, complete),
                };
                got.extend_from_slice(&payload);
                completes += usize::from(complete);
            }
        }
        assert_eq!(got, plain);
        assert_eq!(completes, 1);
        assert!(decoder.is_at_frame_boundary());
    }

    #[test]
    fn control_frames_are_delivered_whole() {
        let mut decoder = Decoder::new(Masking::Forbidden, 1000);
        let wire = [0x89, 0x03, b'a', b'b', b'c'];
        let mut buf = BytesMut::new();
        for (i, byte) in wire.iter().enumerate() {
            buf.extend_from_slice(&[*byte]);
            let item = decoder.decode(&mut buf).unwrap();
            if i + 1 < wire.len() {
                assert_eq!(item, None);
            } else {
                assert_eq!(
                    item,
                    Some(Decoded::Frame {
                        header: FrameHeader::new(OpCode::Ping, 3),
                        payload: Bytes::from_static(b"abc"),
                        complete: true
                    })
                );
            }
        }
    }

    /// Masked frame bytes: `first` byte, then a payload of `len` bytes (0, 1, 2, ...).
    fn masked_frame(first: u8, len: usize) -> (Vec<u8>, Vec<u8>) {
        let key = [1, 2, 3, 4];
        let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut wire = vec![first, 0xFE, (len >> 8) as u8, len as u8];
        wire.extend_from_slice(&key);
        let mut masked = plain.clone();
        apply_mask(&mut masked, key, 0);
        wire.extend_from_slice(&masked);
        (wire, plain)
    }

    #[test]
    fn whole_binary_frame_waits_for_its_payload_and_says_how_much_is_missing() {
        let (wire, plain) = masked_frame(0x82, 1000);
        let mut decoder = Decoder::new(Masking::Required, 1 << 20);
        decoder.whole_binary_frames(1 << 20);
        let mut buf = BytesMut::from(&wire[..300]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert_eq!(decoder.awaiting(), wire.len() - 300);
        // Nothing was consumed while waiting.
        assert_eq!(buf.len(), 300);
        buf.extend_from_slice(&wire[300..]);
        let Some(Decoded::Frame {
            payload, complete, ..
        }) = decoder.decode(&mut buf).unwrap()
        else {
            panic!("expected the whole frame");
        };
        assert!(complete);
        assert_eq!(&payload[..], &plain[..]);
        assert_eq!(decoder.awaiting(), 0);
        assert!(decoder.is_at_frame_boundary());
    }

    #[test]
    fn text_compressed_and_oversized_frames_still_stream() {
        // Text (0x81), RSV1 binary (0xC2) and a binary frame over the whole-frame bound
        // are handed out as their bytes arrive.
        for (first, bound) in [(0x81, 1 << 20), (0xC2, 1 << 20), (0x82, 999)] {
            let (wire, plain) = masked_frame(first, 1000);
            let mut decoder = Decoder::new(Masking::Required, 1 << 20);
            decoder.whole_binary_frames(bound);
            let mut buf = BytesMut::from(&wire[..300]);
            let Some(Decoded::Frame {
                payload, complete, ..
            }) = decoder.decode(&mut buf).unwrap()
            else {
                panic!("expected the first piece of {first:#x}");
            };
            assert!(!complete);
            assert_eq!(&payload[..], &plain[..300 - 8]);
            assert_eq!(decoder.awaiting(), 0);
        }
    }

    #[test]
    fn continuations_are_whole_only_when_the_caller_says_so() {
        for on in [false, true] {
            let (wire, _) = masked_frame(0x80, 1000);
            let mut decoder = Decoder::new(Masking::Required, 1 << 20);
            decoder.whole_binary_frames(1 << 20);
            decoder.whole_continuations(on);
            let mut buf = BytesMut::from(&wire[..300]);
            let item = decoder.decode(&mut buf).unwrap();
            assert_eq!(item.is_none(), on, "whole continuations {on}");
        }
    }

    #[test]
    fn a_small_payload_that_is_all_of_a_buffer_its_size_is_handed_over() {
        let (wire, plain) = masked_frame(0x82, 200);
        let mut decoder = Decoder::new(Masking::Required, 1 << 20);
        decoder.copy_payloads_below(500);
        let mut buf = BytesMut::with_capacity(wire.len());
        buf.extend_from_slice(&wire);
        let range = buf.as_ptr() as usize..buf.as_ptr() as usize + wire.len();
        let Some(Decoded::Frame { payload, .. }) = decoder.decode(&mut buf).unwrap() else {
            panic!("one whole frame");
        };
        assert_eq!(&payload[..], &plain[..]);
        assert!(range.contains(&(payload.as_ptr() as usize)), "not copied");
        assert_eq!(buf.capacity(), 0, "the buffer went with the payload");
    }

    #[test]
    fn payloads_of_small_frames_are_copies_and_large_ones_are_slices() {
        let (small, small_plain) = masked_frame(0x81, 200);
        let (large, large_plain) = masked_frame(0x81, 1000);
        for (wire, plain, copied) in [(small, small_plain, true), (large, large_plain, false)] {
            let mut decoder = Decoder::new(Masking::Required, 1 << 20);
            decoder.copy_payloads_below(500);
            // In two reads, so that the second piece comes from the payload state; in a
            // buffer much larger than the frame, whose whole a small payload must not
            // keep alive.
            let mut buf = BytesMut::with_capacity(64 << 10);
            buf.extend_from_slice(&wire[..100]);
            let range = buf.as_ptr() as usize..buf.as_ptr() as usize + wire.len();
            let mut got = Vec::new();
            while let Some(item) = decoder.decode(&mut buf).unwrap() {
                got.push(item);
            }
            buf.extend_from_slice(&wire[100..]);
            while let Some(item) = decoder.decode(&mut buf).unwrap() {
                got.push(item);
            }
            let mut joined = Vec::new();
            for item in got {
                let (Decoded::Frame { payload, .. } | Decoded::Continue { payload, .. }) = item;
                let inside = range.contains(&(payload.as_ptr() as usize));
                assert_eq!(
                    inside,
                    !copied,
                    "{} bytes: slice of the buffer",
                    plain.len()
                );
                joined.extend_from_slice(&payload);
            }
            assert_eq!(joined, plain);
        }
    }
}
