//! The blocking client against the server, over real sockets on 127.0.0.1.

mod common;

use std::io;
use std::time::{Duration, Instant};

use common::*;
use duplex_mio::client::{ConnectError, connect};
use duplex_mio::{Error, Message, ServerConfig};

fn config() -> ServerConfig {
    ServerConfig::default()
        .workers(1)
        .shutdown_timeout(Duration::from_millis(300))
}

#[test]
fn refuses_wss_and_reports_a_refused_connection() {
    assert!(matches!(
        connect("wss://127.0.0.1:1/"),
        Err(ConnectError::TlsNotSupported)
    ));
    assert!(matches!(
        connect("http://127.0.0.1:1/"),
        Err(ConnectError::Handshake(_))
    ));
    // A port nobody listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    assert!(matches!(
        connect(&format!("ws://127.0.0.1:{port}/")),
        Err(ConnectError::Io(_))
    ));
}

#[test]
fn recv_times_out_and_the_connection_stays_usable() {
    let server = start(config());
    let mut socket = client(&server.url("/"));
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let started = Instant::now();
    match socket.recv() {
        Err(Error::Io(error)) => assert_eq!(error.kind(), io::ErrorKind::TimedOut),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    socket.send(Message::text("after timeout")).unwrap();
    assert_eq!(recv_data(&mut socket), Message::text("after timeout"));
    socket.close(None).unwrap();
    // Our own close: sending afterwards is the application's mistake.
    assert!(matches!(
        socket.send(Message::text("late")),
        Err(Error::Usage(duplex_mio::core::UsageError::SendAfterClose))
    ));
    server.stop();
}

#[test]
fn a_fragmented_large_message_round_trips() {
    let server = start(config());
    let mut socket = client(&server.url("/"));
    let text = "κόσμε".repeat(50_000);
    socket.send(Message::text(text.clone())).unwrap();
    assert_eq!(recv_data(&mut socket), Message::text(text));
    server.stop();
}

#[test]
fn permessage_deflate_is_negotiated_and_compressed_messages_round_trip() {
    let server = start(config());
    let mut socket = client(&server.url("/"));
    assert!(socket.is_compressed());
    assert_eq!(
        socket.response().headers()["sec-websocket-extensions"],
        "permessage-deflate; server_no_context_takeover"
    );
    let text = "compressible, compressible, compressible ".repeat(10_000);
    for _ in 0..3 {
        socket.send(Message::text(text.clone())).unwrap();
        assert_eq!(recv_data(&mut socket), Message::text(text.clone()));
    }
    server.stop();
}
