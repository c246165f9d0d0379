//! Frame headers and whole-message decoding, duplex and tungstenite side by side.
//!
//! - `frame_header_parse` / `frame_header_encode`: one header, three length encodings.
//! - `decode_message`: a masked binary message from a client, as a server receives it:
//!   in one frame or in 16 fragments, 1 KiB and 64 KiB. duplex goes through
//!   `Connection::receive` + `poll_event` (codec + core: unmasking, assembly, limits);
//!   the `duplex-codec` row is the bare `Decoder` without message assembly; tungstenite
//!   reads the same bytes through `WebSocket::read` from an in-memory stream. Every row
//!   copies the bytes once out of the "socket" buffer, as a real read would.

use std::hint::black_box;
use std::io::Cursor;
use std::time::Instant;

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use duplex_benches::{MASK_KEY, RepeatingStream, binary_payload, masked_message, receive_one};
use duplex_codec::{Decoded, Decoder, FrameHeader, MAX_HEADER_LEN, Masking, OpCode};
use duplex_core::{Connection, EngineConfig, Role};
use tungstenite::protocol::frame::FrameHeader as PeerHeader;
use tungstenite::protocol::{Role as PeerRole, WebSocket};

/// Header bytes: 7-bit length unmasked, 16-bit length masked, 64-bit length masked.
fn header_cases() -> [(&'static str, Vec<u8>); 3] {
    let k = MASK_KEY;
    [
        ("2B_len7", vec![0x82, 0x05]),
        (
            "8B_len16_masked",
            vec![0x82, 0xFE, 0x04, 0x00, k[0], k[1], k[2], k[3]],
        ),
        (
            "14B_len64_masked",
            vec![
                0x82, 0xFF, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00, k[0], k[1], k[2], k[3],
            ],
        ),
    ]
}

fn header_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_header_parse");
    group.throughput(Throughput::Elements(1));
    for (label, bytes) in header_cases() {
        group.bench_with_input(BenchmarkId::new("duplex", label), &bytes, |b, bytes| {
            b.iter(|| FrameHeader::parse(black_box(bytes)).unwrap().unwrap());
        });
        group.bench_with_input(
            BenchmarkId::new("tungstenite", label),
            &bytes,
            |b, bytes| {
                b.iter(|| {
                    let mut cursor = Cursor::new(black_box(&bytes[..]));
                    PeerHeader::parse(&mut cursor).unwrap().unwrap()
                });
            },
        );
    }
    group.finish();
}

fn header_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_header_encode");
    group.throughput(Throughput::Elements(1));
    for (label, bytes) in header_cases() {
        let (ours, _) = FrameHeader::parse(&bytes).unwrap().unwrap();
        group.bench_with_input(BenchmarkId::new("duplex", label), &ours, |b, header| {
            let mut out = [0u8; MAX_HEADER_LEN];
            b.iter(|| black_box(header).encode(black_box(&mut out)));
        });
        let (theirs, len) = PeerHeader::parse(&mut Cursor::new(&bytes[..]))
            .unwrap()
            .unwrap();
        group.bench_with_input(
            BenchmarkId::new("tungstenite", label),
            &theirs,
            |b, header| {
                let mut out = [0u8; MAX_HEADER_LEN];
                b.iter(|| {
                    let mut writer = &mut out[..];
                    black_box(header)
                        .format(black_box(len), &mut writer)
                        .unwrap();
                    MAX_HEADER_LEN - writer.len()
                });
            },
        );
    }
    group.finish();
}

fn decode_message(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_message");
    for (len, size) in [(1024, "1KiB"), (64 << 10, "64KiB")] {
        group.throughput(Throughput::Bytes(len as u64));
        let payload = binary_payload(len);
        for fragments in [1, 16] {
            let label = format!("{size}/{fragments}frames");
            let wire = masked_message(OpCode::Binary, &payload, fragments, MASK_KEY);

            group.bench_function(BenchmarkId::new("duplex-core", &label), |b| {
                let mut server = Connection::new(Role::Server, EngineConfig::default());
                let now = Instant::now();
                b.iter(|| receive_one(&mut server, black_box(&wire), now));
            });

            group.bench_function(BenchmarkId::new("duplex-codec", &label), |b| {
                let mut decoder = Decoder::new(Masking::Required, 16 << 20);
                b.iter(|| {
                    let mut buf = BytesMut::from(black_box(&wire[..]));
                    let mut received = 0;
                    while let Some(item) = decoder.decode(&mut buf).unwrap() {
                        received += match item {
                            Decoded::Frame { payload, .. } | Decoded::Continue { payload, .. } => {
                                black_box(payload).len()
                            }
                        };
                    }
                    assert_eq!(received, len);
                });
            });

            group.bench_function(BenchmarkId::new("tungstenite", &label), |b| {
                let stream = RepeatingStream::new(wire.clone());
                let mut socket = WebSocket::from_raw_socket(stream, PeerRole::Server, None);
                b.iter(|| socket.read().unwrap());
            });
        }
    }
    group.finish();
}

criterion_group!(benches, header_parse, header_encode, decode_message);
criterion_main!(benches);
