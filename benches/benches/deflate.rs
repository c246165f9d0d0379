//! permessage-deflate on a text-heavy feed: a JSON quote message compressed by a server
//! connection and inflated by a client connection, with and without context takeover,
//! against the same message sent uncompressed. Throughput counts the message's bytes
//! before compression; the compression ratio of each mode is printed once.

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use duplex_core::{Connection, DeflateParams, EngineConfig, Message, Role};

fn pair(params: Option<DeflateParams>) -> (Connection, Connection) {
    let mut server = Connection::new(Role::Server, EngineConfig::default());
    let mut client = Connection::new(Role::Client, EngineConfig::default());
    if let Some(params) = params {
        server.enable_deflate(params);
        client.enable_deflate(params);
    }
    (server, client)
}

/// Server sends `text`; the client receives it. Returns the bytes on the wire.
fn round(server: &mut Connection, client: &mut Connection, text: &Message, now: Instant) -> usize {
    server.send(text.clone()).unwrap();
    let mut wire = 0;
    while server.output_len() > 0 {
        let chunk = server.pending_output();
        wire += chunk.len();
        client.receive(chunk);
        let n = chunk.len();
        server.consume_output(n);
    }
    let message = client.poll_event(now).unwrap().unwrap();
    black_box(message);
    wire
}

fn deflate(c: &mut Criterion) {
    let modes: [(&str, Option<DeflateParams>); 3] = [
        ("uncompressed", None),
        ("context-takeover", Some(DeflateParams::default())),
        (
            "no-context-takeover",
            Some(DeflateParams {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                ..DeflateParams::default()
            }),
        ),
    ];
    let mut group = c.benchmark_group("deflate_text");
    for count in [4usize, 64] {
        // A feed of 16 different batches, sent in turn.
        let feed: Vec<Message> = (0..16)
            .map(|seed| Message::text(duplex_benches::ticker_quotes(count, seed)))
            .collect();
        let bytes: usize = feed.iter().map(|m| m.payload().len()).sum::<usize>() / feed.len();
        group.throughput(Throughput::Bytes(bytes as u64));
        for (name, params) in modes {
            let (mut server, mut client) = pair(params);
            let now = Instant::now();
            // One pass over the feed to warm the contexts, a second one to measure the wire.
            for message in &feed {
                round(&mut server, &mut client, message, now);
            }
            let wire: usize = feed
                .iter()
                .map(|m| round(&mut server, &mut client, m, now))
                .sum();
            eprintln!(
                "deflate_text/{name}/{bytes}B: {} bytes on the wire per message, ratio {:.2}",
                wire / feed.len(),
                (bytes * feed.len()) as f64 / wire as f64
            );
            let mut next = 0;
            group.bench_function(BenchmarkId::new(name, format!("{bytes}B")), |b| {
                b.iter(|| {
                    next = (next + 1) % feed.len();
                    round(&mut server, &mut client, &feed[next], now)
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, deflate);
criterion_main!(benches);
