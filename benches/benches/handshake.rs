//! The opening handshake, duplex and tungstenite side by side.
//!
//! - `server_handshake`: a browser-like request (10 header fields) read, validated and
//!   answered. duplex: `ServerHandshake::feed`, `ClientOffer::from_request`, `accept`,
//!   `write_response`. tungstenite, piece by piece with its public functions:
//!   `Request::try_parse`, `create_response`, `write_response`; and `tungstenite::accept`
//!   over an in-memory stream, which also builds the `WebSocket` (its buffers included).
//! - `client_handshake`: the server's 101 response parsed and validated against the key.
//!   duplex: `ClientHandshake::feed`, and the stateless `parse_response` + `validate`.
//!   tungstenite keeps its response validation private, so its rows are
//!   `Response::try_parse` (parsing only) and `tungstenite::client` over an in-memory
//!   stream (request generation, parsing, validation and the `WebSocket`).
//! - `client_request`: building the request bytes: `ClientRequest::encode` (fresh random
//!   key from the OS) against tungstenite's `generate_request` (key supplied).

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use duplex_benches::{HANDSHAKE_KEY, ReplayStream, handshake_request};
use duplex_handshake::{
    ClientHandshake, ClientOffer, ClientRequest, Limits, ServerHandshake, parse_response,
    write_response,
};
use tungstenite::handshake::client::{Request as PeerClientRequest, Response as PeerResponse};
use tungstenite::handshake::machine::TryParse;
use tungstenite::handshake::server::Request as PeerRequest;

const URL: &str = "ws://server.example.com/chat?room=1";

fn server_handshake(c: &mut Criterion) {
    let mut group = c.benchmark_group("server_handshake");
    group.throughput(Throughput::Elements(1));
    let request = handshake_request();

    group.bench_function(BenchmarkId::new("duplex", "feed+offer+accept+write"), |b| {
        let mut out = Vec::with_capacity(256);
        b.iter(|| {
            let mut handshake = ServerHandshake::new(Limits::default());
            let (request, _rest) = handshake.feed(black_box(&request)).unwrap().unwrap();
            let response = ClientOffer::from_request(&request)
                .unwrap()
                .accept(None)
                .unwrap();
            out.clear();
            write_response(&response, &mut out);
            out.len()
        });
    });

    group.bench_function(
        BenchmarkId::new("tungstenite", "try_parse+create_response+write"),
        |b| {
            let mut out = Vec::with_capacity(256);
            b.iter(|| {
                let (_, request) = PeerRequest::try_parse(black_box(&request))
                    .unwrap()
                    .unwrap();
                let response = tungstenite::handshake::server::create_response(&request).unwrap();
                out.clear();
                tungstenite::handshake::server::write_response(&mut out, &response).unwrap();
                out.len()
            });
        },
    );

    group.bench_function(BenchmarkId::new("tungstenite", "accept(stream)"), |b| {
        b.iter_batched(
            || ReplayStream::new(request.clone()),
            |stream| tungstenite::accept(stream).unwrap(),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

/// A client handshake and the server's matching 101 response bytes.
fn client_and_response() -> (ClientHandshake, Vec<u8>) {
    let (request, client) = ClientRequest::new(URL).unwrap().encode();
    let (request, _) = ServerHandshake::new(Limits::default())
        .feed(&request)
        .unwrap()
        .unwrap();
    let response = ClientOffer::from_request(&request)
        .unwrap()
        .accept(None)
        .unwrap();
    let mut bytes = Vec::new();
    write_response(&response, &mut bytes);
    (client, bytes)
}

/// tungstenite's client request for [`URL`] with the fixed [`HANDSHAKE_KEY`].
fn peer_request() -> PeerClientRequest {
    tungstenite::http::Request::builder()
        .uri(URL)
        .header("Host", "server.example.com")
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", HANDSHAKE_KEY)
        .body(())
        .unwrap()
}

fn client_handshake(c: &mut Criterion) {
    let mut group = c.benchmark_group("client_handshake");
    group.throughput(Throughput::Elements(1));

    group.bench_function(BenchmarkId::new("duplex", "feed"), |b| {
        b.iter_batched(
            client_and_response,
            |(mut client, bytes)| client.feed(black_box(&bytes)).unwrap().unwrap(),
            BatchSize::SmallInput,
        );
    });

    let (client, response_bytes) = client_and_response();
    group.bench_function(BenchmarkId::new("duplex", "parse_response+validate"), |b| {
        b.iter(|| {
            let response = parse_response(black_box(&response_bytes), 64).unwrap();
            client.validate(&response).unwrap()
        });
    });

    // The same response for tungstenite's fixed key (the accept value is the key's).
    let response_bytes = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
         sec-websocket-accept: {}\r\n\r\n",
        tungstenite::handshake::derive_accept_key(HANDSHAKE_KEY.as_bytes())
    )
    .into_bytes();
    group.bench_function(
        BenchmarkId::new("tungstenite", "Response::try_parse"),
        |b| {
            b.iter(|| {
                PeerResponse::try_parse(black_box(&response_bytes))
                    .unwrap()
                    .unwrap()
            });
        },
    );

    let request = peer_request();
    group.bench_function(BenchmarkId::new("tungstenite", "client(stream)"), |b| {
        b.iter_batched(
            || (request.clone(), ReplayStream::new(response_bytes.clone())),
            |(request, stream)| tungstenite::client(request, stream).unwrap(),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn client_request(c: &mut Criterion) {
    let mut group = c.benchmark_group("client_request");
    group.throughput(Throughput::Elements(1));
    let ours = ClientRequest::new(URL).unwrap();
    group.bench_function(BenchmarkId::new("duplex", "ClientRequest::encode"), |b| {
        b.iter(|| black_box(&ours).encode());
    });
    let theirs = peer_request();
    group.bench_function(BenchmarkId::new("tungstenite", "generate_request"), |b| {
        b.iter_batched(
            || theirs.clone(),
            |request| tungstenite::handshake::client::generate_request(request).unwrap(),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, server_handshake, client_handshake, client_request);
criterion_main!(benches);
