//! UTF-8 validation of text messages.
//!
//! The `duplex-core text` row decodes a masked 64 KiB text frame through
//! `Connection::receive` + `poll_event` (copy, unmask, incremental validation with
//! `simdutf8::compat`); the `duplex-core binary` row decodes the same bytes as a binary
//! frame, so the difference between the two is what validation costs inside the engine.
//! The bare validators run on the same (unmasked) bytes: `std::str::from_utf8`,
//! `simdutf8::basic::from_utf8` and `simdutf8::compat::from_utf8`. tungstenite decodes
//! the same text frame for comparison.

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use duplex_benches::{
    MASK_KEY, RepeatingStream, ascii_text, masked_message, multibyte_text, receive_one,
};
use duplex_codec::OpCode;
use duplex_core::{Connection, EngineConfig, Role};
use tungstenite::protocol::{Role as PeerRole, WebSocket};

const LEN: usize = 64 << 10;

fn utf8(c: &mut Criterion) {
    let mut group = c.benchmark_group("utf8_64KiB");
    group.throughput(Throughput::Bytes(LEN as u64));
    for (kind, text) in [
        ("ascii", ascii_text(LEN)),
        ("multibyte", multibyte_text(LEN)),
    ] {
        let bytes = text.as_bytes();
        let text_wire = masked_message(OpCode::Text, bytes, 1, MASK_KEY);
        let binary_wire = masked_message(OpCode::Binary, bytes, 1, MASK_KEY);

        group.bench_function(BenchmarkId::new("duplex-core text frame", kind), |b| {
            let mut server = Connection::new(Role::Server, EngineConfig::default());
            let now = Instant::now();
            b.iter(|| receive_one(&mut server, black_box(&text_wire), now));
        });
        group.bench_function(BenchmarkId::new("duplex-core binary frame", kind), |b| {
            let mut server = Connection::new(Role::Server, EngineConfig::default());
            let now = Instant::now();
            b.iter(|| receive_one(&mut server, black_box(&binary_wire), now));
        });
        group.bench_function(BenchmarkId::new("tungstenite text frame", kind), |b| {
            let stream = RepeatingStream::new(text_wire.clone());
            let mut socket = WebSocket::from_raw_socket(stream, PeerRole::Server, None);
            b.iter(|| socket.read().unwrap());
        });
        group.bench_function(BenchmarkId::new("std::str::from_utf8", kind), |b| {
            b.iter(|| std::str::from_utf8(black_box(bytes)).is_ok());
        });
        group.bench_function(BenchmarkId::new("simdutf8::basic", kind), |b| {
            b.iter(|| simdutf8::basic::from_utf8(black_box(bytes)).is_ok());
        });
        group.bench_function(BenchmarkId::new("simdutf8::compat", kind), |b| {
            b.iter(|| simdutf8::compat::from_utf8(black_box(bytes)).is_ok());
        });
    }
    group.finish();
}

criterion_group!(benches, utf8);
criterion_main!(benches);
