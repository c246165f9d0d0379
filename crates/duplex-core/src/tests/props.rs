//! Property tests: valid traffic cut anywhere reads the same, and arbitrary bytes never
//! panic, stay bounded, and end in one error with a valid close frame.

use super::*;

#[derive(Debug, Clone)]
enum Step {
    Message {
        text: bool,
        payload: Vec<u8>,
        fragments: usize,
    },
    Ping(Vec<u8>),
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (any::<bool>(), ".{0,300}", proptest::collection::vec(any::<u8>(), 0..300), 1usize..5)
            .prop_map(|(text, s, bytes, fragments)| Step::Message {
                text,
                payload: if text { s.into_bytes() } else { bytes },
                fragments,
            }),
        1 => proptest::collection::vec(any::<u8>(), 0..126).prop_map(Step::Ping),
    ]
}

/// `steps` as the peer of `receiver` sends them.
fn wire_of(receiver: Role, steps: &[Step]) -> Vec<u8> {
    let mut wire = Vec::new();
    for step in steps {
        match step {
            Step::Ping(payload) => wire.extend(peer_frame(receiver, 0x89, payload)),
            Step::Message {
                text,
                payload,
                fragments,
            } => {
                let size = payload.len().div_ceil(*fragments).max(1);
                let pieces: Vec<&[u8]> = if payload.is_empty() {
                    vec![&[][..]]
                } else {
                    payload.chunks(size).collect()
                };
                for (i, piece) in pieces.iter().enumerate() {
                    let op = if i > 0 {
                        0
                    } else if *text {
                        1
                    } else {
                        2
                    };
                    let fin = if i + 1 == pieces.len() { 0x80 } else { 0 };
                    wire.extend(peer_frame(receiver, fin | op, piece));
                }
            }
        }
    }
    wire
}

fn expected_of(steps: &[Step]) -> Vec<Message> {
    steps
        .iter()
        .map(|step| match step {
            Step::Ping(payload) => Message::Ping(Bytes::from(payload.clone())),
            Step::Message {
                text: true,
                payload,
                ..
            } => Message::text(String::from_utf8(payload.clone()).unwrap()),
            Step::Message { payload, .. } => Message::binary(payload.clone()),
        })
        .collect()
}

/// The sorted cut points of `len` bytes: 0, `len`, and each cut modulo `len + 1`.
fn cut_points(cuts: &[usize], len: usize) -> Vec<usize> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (len + 1)).collect();
    points.extend([0, len]);
    points.sort_unstable();
    points
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn valid_traffic_split_anywhere_gives_the_same_messages(
        steps in proptest::collection::vec(arb_step(), 1..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..30),
    ) {
        for role in ROLES {
            let wire = wire_of(role, &steps);
            let points = cut_points(&cuts, wire.len());
            let mut conn = connection(role);
            let now = Instant::now();
            let mut got = Vec::new();
            for pair in points.windows(2) {
                conn.receive(&wire[pair[0]..pair[1]]);
                for event in events(&mut conn, now) {
                    got.push(event.unwrap());
                }
            }
            prop_assert_eq!(got, expected_of(&steps), "{:?}", role);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_errors_queue_a_valid_close(
        data in proptest::collection::vec(any::<u8>(), 0..2048),
        cuts in proptest::collection::vec(any::<usize>(), 0..10),
    ) {
        for role in ROLES {
            arbitrary_bytes_never_panic_and_errors_queue_a_valid_close_for(role, &data, &cuts)?;
        }
    }
}

/// The body of `arbitrary_bytes_never_panic_and_errors_queue_a_valid_close` for `role`.
fn arbitrary_bytes_never_panic_and_errors_queue_a_valid_close_for(
    role: Role,
    data: &[u8],
    cuts: &[usize],
) -> Result<(), TestCaseError> {
    let config = EngineConfig::default()
        .max_message_size(512)
        .max_frame_size(256)
        .max_fragments(8);
    let mut conn = Connection::new(role, config);
    let points = cut_points(cuts, data.len());
    let now = Instant::now();
    let mut failed_code = None;
    for pair in points.windows(2) {
        conn.receive(&data[pair[0]..pair[1]]);
        while let Some(event) = conn.poll_event(now) {
            match event {
                Ok(message) => prop_assert!(message.payload().len() <= 512, "{:?}", role),
                Err(error) => {
                    prop_assert!(failed_code.is_none(), "{:?}: one error only", role);
                    let code = error.close_code().expect("peer errors carry a close code");
                    prop_assert!(code.is_allowed_on_wire(), "{:?}: {:?}", role, code);
                    failed_code = Some(code);
                }
            }
        }
        prop_assert!(conn.buffered_input() <= 512 + data.len(), "{:?}", role);
    }
    if let Some(code) = failed_code {
        // The last frame queued is a close frame carrying the error's code.
        let out = drain_raw(&mut conn);
        let mut decoder = duplex_codec::Decoder::new(duplex_codec::Masking::Any, 1 << 20);
        let mut buf = BytesMut::from(&out[..]);
        let mut last = None;
        while let Some(item) = decoder.decode(&mut buf).unwrap() {
            if let duplex_codec::Decoded::Frame {
                header, payload, ..
            } = item
            {
                last = Some((header, payload));
            }
        }
        let (header, payload) = last.expect("a close frame");
        prop_assert_eq!(header.opcode, OpCode::Close, "{:?}", role);
        // The decoder has already unmasked it.
        prop_assert_eq!(
            u16::from_be_bytes([payload[0], payload[1]]),
            code.as_u16(),
            "{:?}",
            role
        );
    }
    Ok(())
}

/// A case proptest once shrank a failure of the arbitrary-bytes property to (for a
/// client), kept as a plain test: the saved seed no longer maps to it since the
/// property's inputs changed.
#[test]
fn arbitrary_bytes_regression_case_still_passes_for_both_roles() {
    for role in ROLES {
        arbitrary_bytes_never_panic_and_errors_queue_a_valid_close_for(
            role,
            &REGRESSION_DATA,
            &REGRESSION_CUTS,
        )
        .unwrap_or_else(|error| panic!("{role:?}: {error}"));
    }
}

const REGRESSION_DATA: [u8; 784] = [
    32, 16, 85, 108, 7, 217, 236, 184, 113, 30, 59, 58, 239, 112, 130, 167, 12, 250, 92, 199, 205,
    161, 26, 53, 219, 99, 210, 98, 62, 85, 139, 178, 242, 71, 234, 26, 101, 113, 212, 158, 38, 154,
    213, 179, 26, 199, 36, 161, 69, 52, 210, 101, 29, 157, 189, 10, 237, 108, 142, 129, 132, 56,
    101, 176, 54, 215, 44, 179, 164, 211, 59, 157, 215, 192, 143, 249, 248, 91, 7, 51, 230, 121,
    49, 223, 109, 101, 53, 210, 172, 254, 197, 229, 39, 247, 134, 82, 78, 112, 46, 143, 204, 243,
    18, 230, 94, 91, 9, 29, 235, 255, 2, 191, 96, 204, 246, 107, 133, 22, 108, 159, 98, 254, 231,
    58, 181, 117, 1, 10, 148, 116, 99, 233, 243, 130, 103, 89, 68, 80, 114, 234, 11, 124, 52, 118,
    127, 224, 102, 196, 249, 11, 234, 222, 83, 166, 221, 146, 253, 187, 143, 78, 93, 11, 175, 221,
    119, 245, 92, 7, 155, 232, 96, 85, 135, 231, 68, 96, 196, 15, 130, 84, 90, 227, 139, 246, 237,
    185, 254, 128, 165, 167, 138, 236, 146, 141, 156, 180, 197, 159, 42, 56, 30, 39, 15, 240, 178,
    73, 66, 5, 249, 94, 239, 253, 227, 162, 177, 147, 44, 31, 187, 161, 97, 118, 194, 183, 57, 241,
    89, 100, 241, 225, 220, 240, 155, 93, 198, 13, 98, 135, 174, 45, 101, 60, 143, 199, 27, 8, 191,
    22, 146, 196, 104, 1, 230, 251, 111, 6, 214, 7, 61, 255, 219, 105, 173, 71, 42, 192, 212, 60,
    106, 97, 7, 74, 84, 213, 118, 26, 55, 162, 185, 43, 104, 182, 201, 79, 49, 181, 87, 126, 45,
    214, 8, 165, 116, 169, 243, 118, 217, 134, 118, 189, 213, 37, 108, 73, 21, 180, 224, 36, 89,
    157, 64, 150, 147, 176, 99, 39, 56, 35, 12, 173, 126, 168, 127, 1, 16, 131, 111, 101, 121, 247,
    153, 95, 40, 184, 215, 213, 33, 222, 103, 213, 167, 213, 148, 166, 179, 64, 204, 142, 145, 53,
    118, 193, 135, 212, 76, 197, 42, 14, 13, 77, 2, 244, 63, 91, 213, 213, 119, 91, 139, 34, 235,
    254, 190, 158, 175, 57, 73, 140, 47, 154, 97, 124, 15, 51, 229, 71, 65, 59, 195, 120, 194, 129,
    235, 219, 163, 104, 184, 183, 236, 165, 156, 176, 154, 144, 173, 91, 252, 16, 94, 34, 69, 34,
    12, 138, 184, 89, 195, 214, 104, 9, 236, 66, 0, 122, 213, 241, 14, 59, 117, 45, 241, 220, 27,
    119, 24, 45, 73, 137, 116, 149, 160, 93, 26, 91, 224, 80, 96, 226, 135, 194, 166, 131, 248, 47,
    90, 75, 146, 25, 79, 96, 64, 213, 123, 30, 252, 13, 174, 200, 168, 183, 9, 80, 158, 130, 10,
    31, 93, 133, 45, 69, 239, 249, 221, 237, 100, 89, 97, 145, 175, 21, 35, 232, 7, 36, 166, 156,
    187, 192, 53, 222, 42, 189, 14, 66, 210, 222, 248, 172, 205, 216, 100, 24, 162, 148, 42, 229,
    221, 17, 19, 189, 99, 195, 216, 169, 78, 220, 22, 101, 115, 182, 145, 37, 134, 114, 210, 25,
    32, 247, 117, 201, 6, 46, 55, 97, 234, 8, 253, 78, 144, 69, 120, 32, 111, 231, 172, 181, 137,
    222, 60, 13, 32, 12, 9, 6, 85, 122, 53, 71, 170, 173, 107, 244, 241, 121, 100, 177, 45, 7, 243,
    144, 21, 67, 22, 227, 75, 9, 18, 216, 50, 208, 182, 163, 24, 56, 60, 154, 186, 110, 137, 173,
    37, 206, 179, 95, 74, 68, 50, 183, 92, 123, 144, 97, 56, 181, 18, 9, 215, 236, 204, 136, 252,
    107, 199, 170, 120, 109, 220, 176, 201, 127, 50, 2, 161, 181, 244, 106, 155, 10, 24, 75, 166,
    95, 115, 152, 80, 171, 127, 139, 252, 180, 80, 251, 235, 23, 192, 172, 171, 91, 71, 13, 223,
    189, 207, 183, 4, 2, 185, 218, 250, 20, 35, 104, 53, 219, 8, 49, 108, 143, 148, 231, 245, 12,
    11, 161, 18, 95, 55, 203, 225, 56, 62, 157, 253, 149, 2, 246, 212, 114, 66, 133, 147, 13, 43,
    151, 73, 22, 69, 27, 40, 228, 162, 129, 84, 62, 214, 163, 234, 17, 236, 162, 155, 81, 149, 175,
    236, 176, 42, 145, 14, 89, 115, 135, 116, 209, 121, 138, 129, 103, 161, 168, 116, 255, 18, 200,
    103, 49, 75, 212, 247, 0, 200, 181, 87, 215, 135, 122, 38, 182, 121, 163, 188, 38, 87, 102, 70,
    218, 29, 212, 30, 21, 214, 28, 47, 2, 76, 133, 69, 74, 225, 168, 28, 132, 219, 156,
];
const REGRESSION_CUTS: [usize; 3] = [
    10048779782356187679,
    5395144894770975354,
    423646166110371781,
];
