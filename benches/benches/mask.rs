//! Unmasking throughput: duplex's `apply_mask` against its byte-at-a-time reference, a
//! plain memcpy of the same size (the physical ceiling: one read and one write per
//! byte), and fastwebsockets' public `unmask`. tungstenite's `apply_mask` lives in a
//! private module, so it cannot be measured from outside.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use duplex_benches::{MASK_KEY, binary_payload};

const SIZES: [(usize, &str); 5] = [
    (16, "16B"),
    (125, "125B"),
    (1024, "1KiB"),
    (64 << 10, "64KiB"),
    (1 << 20, "1MiB"),
];

fn unmask(c: &mut Criterion) {
    let mut group = c.benchmark_group("unmask");
    for (len, label) in SIZES {
        group.throughput(Throughput::Bytes(len as u64));
        let mut buf = binary_payload(len);

        group.bench_function(BenchmarkId::new("duplex::apply_mask", label), |b| {
            b.iter(|| duplex_codec::apply_mask(black_box(&mut buf), black_box(MASK_KEY), 0));
        });
        group.bench_function(
            BenchmarkId::new("duplex::apply_mask_bytewise", label),
            |b| {
                b.iter(|| {
                    duplex_codec::apply_mask_bytewise(black_box(&mut buf), black_box(MASK_KEY), 0)
                });
            },
        );
        group.bench_function(BenchmarkId::new("fastwebsockets::unmask", label), |b| {
            b.iter(|| fastwebsockets::unmask(black_box(&mut buf), black_box(MASK_KEY)));
        });
        let src = binary_payload(len);
        group.bench_function(BenchmarkId::new("memcpy", label), |b| {
            b.iter(|| black_box(&mut buf).copy_from_slice(black_box(&src)));
        });
    }
    group.finish();
}

/// The offset argument rotates the key; an unaligned start must not fall off the fast
/// path (payload pieces after a partial read start anywhere).
fn unmask_offset(c: &mut Criterion) {
    let mut group = c.benchmark_group("unmask_offset");
    let len = 64 << 10;
    group.throughput(Throughput::Bytes(len as u64));
    let mut buf = binary_payload(len + 3);
    for offset in [0, 1, 3] {
        group.bench_function(BenchmarkId::new("duplex::apply_mask/64KiB", offset), |b| {
            b.iter(|| {
                duplex_codec::apply_mask(
                    black_box(&mut buf[offset..offset + len]),
                    black_box(MASK_KEY),
                    black_box(offset),
                )
            });
        });
    }
    group.finish();
}

criterion_group!(benches, unmask, unmask_offset);
criterion_main!(benches);
