//! Property tests: any split of a valid stream decodes to the same frames; arbitrary
//! bytes never panic.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use crate::{Decoded, Decoder, FrameHeader, Masking, OpCode, encode_frame};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    header: FrameHeader,
    payload: Vec<u8>,
}

fn arb_frame(masked: bool) -> impl Strategy<Value = Frame> {
    let opcodes = prop_oneof![
        Just(OpCode::Continuation),
        Just(OpCode::Text),
        Just(OpCode::Binary),
        Just(OpCode::Close),
        Just(OpCode::Ping),
        Just(OpCode::Pong),
    ];
    (
        opcodes,
        any::<bool>(),
        any::<[bool; 3]>(),
        any::<[u8; 4]>(),
        0usize..70_000,
        any::<u8>(),
    )
        .prop_map(move |(opcode, fin, rsv, key, len, seed)| {
            let len = if opcode.is_control() { len % 126 } else { len };
            let payload: Vec<u8> = (0..len)
                .map(|i| (i as u8).wrapping_mul(31) ^ seed)
                .collect();
            Frame {
                header: FrameHeader {
                    fin: fin || opcode.is_control(),
                    rsv1: rsv[0],
                    rsv2: rsv[1],
                    rsv3: rsv[2],
                    opcode,
                    mask: masked.then_some(key),
                    payload_len: len as u64,
                },
                payload,
            }
        })
}

/// Feeds `wire` to a decoder in the given pieces and reassembles whole frames.
fn decode_in_pieces(
    masking: Masking,
    wire: &[u8],
    cuts: &[usize],
) -> Result<Vec<Frame>, crate::DecodeError> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    points.extend([0, wire.len()]);
    points.sort_unstable();
    let mut decoder = Decoder::new(masking, 1 << 20);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for pair in points.windows(2) {
        buf.extend_from_slice(&wire[pair[0]..pair[1]]);
        while let Some(item) = decoder.decode(&mut buf)? {
            match item {
                Decoded::Frame {
                    header, payload, ..
                } => frames.push(Frame {
                    header,
                    payload: payload.to_vec(),
                }),
                Decoded::Continue { payload, .. } => {
                    frames
                        .last_mut()
                        .unwrap()
                        .payload
                        .extend_from_slice(&payload);
                }
            }
        }
    }
    assert!(
        buf.is_empty()
            || !decoder.is_at_frame_boundary()
            || buf.len() < crate::MAX_HEADER_LEN + 125
    );
    Ok(frames)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn valid_frames_split_anywhere_decode_to_the_same_frames(
        masked in any::<bool>(),
        frames in proptest::collection::vec(arb_frame(false), 1..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..20),
    ) {
        let frames: Vec<Frame> = frames
            .into_iter()
            .map(|mut f| {
                if masked {
                    f.header.mask = Some([f.payload.len() as u8, 0x5A, 0xA5, 0x3C]);
                }
                f
            })
            .collect();
        let mut wire = BytesMut::new();
        for frame in &frames {
            encode_frame(&frame.header, &frame.payload, &mut wire);
        }
        let masking = if masked { Masking::Required } else { Masking::Forbidden };
        let decoded = decode_in_pieces(masking, &wire, &cuts).unwrap();
        prop_assert_eq!(decoded, frames);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_never_hold_more_than_received(
        data in proptest::collection::vec(any::<u8>(), 0..4096),
        cuts in proptest::collection::vec(any::<usize>(), 0..20),
        masking in prop_oneof![Just(Masking::Required), Just(Masking::Forbidden), Just(Masking::Any)],
    ) {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        points.extend([0, data.len()]);
        points.sort_unstable();
        let mut decoder = Decoder::new(masking, 1000);
        let mut buf = BytesMut::new();
        let mut handed_out = 0usize;
        'outer: for pair in points.windows(2) {
            buf.extend_from_slice(&data[pair[0]..pair[1]]);
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(Decoded::Frame { payload, .. } | Decoded::Continue { payload, .. })) => {
                        handed_out += payload.len();
                        let _: Bytes = payload;
                    }
                    Ok(None) => break,
                    Err(_) => break 'outer,
                }
            }
        }
        prop_assert!(handed_out <= data.len());
    }
}
