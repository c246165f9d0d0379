//! Interoperability with an independent implementation (tungstenite): our blocking
//! client against a tungstenite server, and a tungstenite client against our server.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::*;
use duplex_mio::client::{ClientConfig, ClientRequest, connect_with};
use duplex_mio::{Bytes, CloseCode, CloseFrame, EngineConfig, Message, ServerConfig};
use tungstenite::Message as TMessage;
use tungstenite::protocol::frame::coding::{CloseCode as TCloseCode, Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame as TCloseFrame, Frame};
use tungstenite::stream::MaybeTlsStream;

fn config() -> ServerConfig {
    ServerConfig::default()
        .workers(1)
        .shutdown_timeout(Duration::from_millis(300))
        .engine(duplex_mio::EngineConfig::default().linger(duplex_core_linger(300)))
}

/// A tungstenite echo server on a thread, serving `connections` clients one after
/// another. `fragments please` is answered with `one two three` in three frames;
/// `close please` makes the server close with 4001.
fn tungstenite_server(connections: usize) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let thread = thread::spawn(move || {
        for _ in 0..connections {
            let (stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(TIMEOUT)).unwrap();
            stream.set_write_timeout(Some(TIMEOUT)).unwrap();
            let mut ws = tungstenite::accept(stream).unwrap();
            loop {
                match ws.read() {
                    Ok(TMessage::Text(text)) if text.as_str() == "fragments please" => {
                        for (data, opcode, fin) in [
                            ("one ", Data::Text, false),
                            ("two ", Data::Continue, false),
                            ("three", Data::Continue, true),
                        ] {
                            let frame = Frame::message(data, OpCode::Data(opcode), fin);
                            ws.send(TMessage::Frame(frame)).unwrap();
                        }
                    }
                    Ok(TMessage::Text(text)) if text.as_str() == "close please" => {
                        let frame = TCloseFrame {
                            code: TCloseCode::from(4001),
                            reason: "asked".into(),
                        };
                        ws.close(Some(frame)).unwrap();
                    }
                    Ok(message @ (TMessage::Text(_) | TMessage::Binary(_))) => {
                        ws.send(message).unwrap()
                    }
                    Ok(_) => {}
                    Err(tungstenite::Error::ConnectionClosed) => break,
                    Err(error) => panic!("tungstenite server: {error}"),
                }
            }
        }
    });
    (addr, thread)
}

#[test]
fn our_client_with_a_tungstenite_server() {
    let (addr, server) = tungstenite_server(2);
    let url = format!("ws://{addr}/");
    // Our client splits what it sends into frames of at most 1000 bytes.
    let config =
        ClientConfig::default().engine(EngineConfig::default().send_frame_size(Some(1000)));
    let mut socket = connect_with(ClientRequest::new(&url).unwrap(), &config).unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    // tungstenite declines permessage-deflate.
    assert!(!socket.is_compressed());

    let binary = Bytes::from((0..300_000u32).map(|i| i as u8).collect::<Vec<u8>>());
    for message in [
        Message::text("hello"),
        Message::binary(Bytes::new()),
        Message::binary(binary),
        // Fragmented, with frames that split code points.
        Message::text("κόσμε".repeat(1000)),
    ] {
        socket.send(message.clone()).unwrap();
        assert_eq!(recv_data(&mut socket), message);
    }
    // A fragmented message from tungstenite.
    socket.send(Message::text("fragments please")).unwrap();
    assert_eq!(recv_data(&mut socket), Message::text("one two three"));
    // Our close: tungstenite answers, the connection ends.
    socket
        .close(Some(CloseFrame::new(CloseCode::Normal, "bye")))
        .unwrap();
    assert!(socket.is_closed());

    // tungstenite's close.
    let mut socket = client(&url);
    socket.send(Message::text("close please")).unwrap();
    match socket.recv().unwrap() {
        Message::Close(Some(frame)) => {
            assert_eq!(frame.code, CloseCode::Other(4001));
            assert_eq!(frame.reason.as_str(), "asked");
        }
        other => panic!("expected close 4001, got {other:?}"),
    }
    server.join().unwrap();
}

/// Reads the next message other than a ping or pong.
fn tread(ws: &mut tungstenite::WebSocket<MaybeTlsStream<std::net::TcpStream>>) -> TMessage {
    loop {
        match ws.read().unwrap() {
            TMessage::Ping(_) | TMessage::Pong(_) => {}
            other => return other,
        }
    }
}

fn tungstenite_client(url: &str) -> tungstenite::WebSocket<MaybeTlsStream<std::net::TcpStream>> {
    let (mut ws, response) = tungstenite::connect(url).unwrap();
    assert_eq!(response.status(), 101);
    match ws.get_mut() {
        MaybeTlsStream::Plain(stream) => stream.set_read_timeout(Some(TIMEOUT)).unwrap(),
        _ => unreachable!("plain ws://"),
    }
    ws
}

#[test]
fn a_tungstenite_client_with_our_server() {
    // Our server splits what it sends into frames of at most 1000 bytes.
    let websocket = EngineConfig::default().send_frame_size(Some(1000));
    let server = start(config().engine(websocket));
    let mut ws = tungstenite_client(&server.url("/"));

    let binary: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    for message in [
        TMessage::text("hello"),
        TMessage::binary(Vec::new()),
        TMessage::binary(binary),
        TMessage::text("κόσμε".repeat(1000)),
    ] {
        ws.send(message.clone()).unwrap();
        assert_eq!(tread(&mut ws), message);
    }
    // Fragmented messages from tungstenite, one with a ping between its frames.
    for (data, opcode, fin) in [
        ("frag", Data::Text, false),
        ("ment", Data::Continue, false),
        ("ed", Data::Continue, true),
    ] {
        let frame = Frame::message(data, OpCode::Data(opcode), fin);
        ws.send(TMessage::Frame(frame)).unwrap();
    }
    assert_eq!(tread(&mut ws), TMessage::text("fragmented"));
    ws.send(TMessage::Frame(Frame::message(
        &b"bin"[..],
        OpCode::Data(Data::Binary),
        false,
    )))
    .unwrap();
    ws.send(TMessage::Ping("between".into())).unwrap();
    ws.send(TMessage::Frame(Frame::message(
        &b"ary"[..],
        OpCode::Data(Data::Continue),
        true,
    )))
    .unwrap();
    assert_eq!(ws.read().unwrap(), TMessage::Pong("between".into()));
    assert_eq!(tread(&mut ws), TMessage::binary(&b"binary"[..]));

    // tungstenite's close: our server answers and reports the frame.
    ws.close(Some(TCloseFrame {
        code: TCloseCode::Normal,
        reason: "done".into(),
    }))
    .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match ws.read() {
            Ok(_) => assert!(Instant::now() < deadline, "no end of the close handshake"),
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(error) => panic!("tungstenite client: {error}"),
        }
    }
    let frame = server.wait_for(|r| match r {
        Report::Closed(_, frame) => Some(frame),
        _ => None,
    });
    assert_eq!(frame.map(|f| f.code), Some(CloseCode::Normal));

    // Our server's close.
    let mut ws = tungstenite_client(&server.url("/"));
    ws.send(TMessage::text("close:4000")).unwrap();
    match tread(&mut ws) {
        TMessage::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 4000);
            assert_eq!(frame.reason.as_str(), "bye");
        }
        other => panic!("expected close 4000, got {other:?}"),
    }
    loop {
        match ws.read() {
            Ok(_) => assert!(Instant::now() < deadline, "no end of the close handshake"),
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(error) => panic!("tungstenite client: {error}"),
        }
    }
    server.stop();
}

/// A short linger, so that tests do not wait for clients they left open.
fn duplex_core_linger(ms: u64) -> duplex_mio::Linger {
    duplex_mio::Linger {
        time: Duration::from_millis(ms),
        max_bytes: 1 << 20,
    }
}
