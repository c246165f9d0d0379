//! The client side of "every connection ends": a raw server that completes the
//! handshake and then misbehaves, and a duplex-tokio client whose every method still
//! returns within its deadline plus one second.

use std::time::{Duration, Instant};

use duplex_tokio::core::{State, TimeoutKind};
use duplex_tokio::{
    ClientRequest, CloseCode, CloseFrame, Config, EngineConfig, Error, Message, connect_with,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const GRACE: Duration = Duration::from_secs(1);

/// A server that answers the opening handshake, then keeps the socket open doing only
/// what `then` does with it.
async fn raw_server<F, Fut>(then: F) -> String
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tcp.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let key = wire_kit::header_value(&head, "sec-websocket-key").expect("a key");
        let response = wire_kit::response_101(&wire_kit::accept_key(key), "");
        tcp.write_all(&response).await.unwrap();
        then(tcp).await;
    });
    url
}

fn config(engine: EngineConfig) -> Config {
    Config::default().engine(engine).deflate(None)
}

/// Keeps the socket open without reading, for longer than any test waits.
async fn hold(tcp: TcpStream) {
    tokio::time::sleep(Duration::from_secs(60)).await;
    drop(tcp);
}

#[tokio::test]
async fn a_client_that_only_sends_to_a_server_that_never_reads_fails_at_the_write_timeout() {
    let url = raw_server(hold).await;
    let write_timeout = Duration::from_secs(1);
    let engine = EngineConfig::default()
        .write_timeout(Some(write_timeout))
        .max_write_buffer(64 << 10);
    let (mut ws, _) = connect_with(ClientRequest::new(&url).unwrap(), config(engine))
        .await
        .unwrap();
    let start = Instant::now();
    let chunk = Message::binary(vec![1u8; 64 << 10]);
    // Only sends: nobody polls `recv`, and the deadline still fires.
    let outcome = timeout(Duration::from_secs(30), async {
        loop {
            if let Err(error) = ws.send(chunk.clone()).await {
                return error;
            }
        }
    })
    .await
    .expect("send must not hang");
    // The socket buffers take a few MiB before the stall starts.
    assert!(
        matches!(outcome, Error::Timeout(TimeoutKind::WriteStall)),
        "{outcome:?}"
    );
    println!(
        "LIFETIME | tokio client | only sends, server never reads | ended after {:?} (write timeout 1 s)",
        start.elapsed()
    );
    assert!(
        start.elapsed() < write_timeout * 4 + GRACE,
        "{:?}",
        start.elapsed()
    );
    assert_eq!(ws.state(), State::Failed);
    // And every later call says so, never `Ok`.
    assert!(matches!(
        ws.send(Message::text("again")).await,
        Err(Error::Timeout(TimeoutKind::WriteStall))
    ));
}

#[tokio::test]
async fn close_returns_within_the_close_timeout_when_the_server_never_answers() {
    let url = raw_server(hold).await;
    let close_timeout = Duration::from_secs(1);
    let engine = EngineConfig::default().close_timeout(close_timeout);
    let (mut ws, _) = connect_with(ClientRequest::new(&url).unwrap(), config(engine))
        .await
        .unwrap();
    let start = Instant::now();
    let result = timeout(
        Duration::from_secs(30),
        ws.close(Some(CloseFrame::new(CloseCode::Normal, "bye"))),
    )
    .await
    .expect("close must not hang");
    assert!(
        matches!(result, Err(Error::Timeout(TimeoutKind::CloseHandshake))),
        "{result:?}"
    );
    println!(
        "LIFETIME | tokio client | close(), server never answers | ended after {:?} (close timeout 1 s)",
        start.elapsed()
    );
    assert!(
        start.elapsed() < close_timeout + GRACE,
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn close_returns_within_the_close_timeout_even_with_output_stuck() {
    let url = raw_server(hold).await;
    let close_timeout = Duration::from_secs(1);
    let engine = EngineConfig::default()
        .close_timeout(close_timeout)
        .write_timeout(None);
    let (ws, _) = connect_with(ClientRequest::new(&url).unwrap(), config(engine))
        .await
        .unwrap();
    let (reader, mut writer) = ws.split();
    // Fill the socket: the server reads nothing.
    let chunk = Message::binary(vec![1u8; 256 << 10]);
    for _ in 0..64 {
        if timeout(Duration::from_millis(200), writer.feed(chunk.clone()))
            .await
            .is_err()
        {
            break;
        }
    }
    let start = Instant::now();
    let result = timeout(Duration::from_secs(30), writer.close(None))
        .await
        .expect("close must not hang");
    assert!(result.is_err(), "output was left unsent: {result:?}");
    println!(
        "LIFETIME | tokio client | close() with output stuck, server never reads | ended after {:?} (close timeout 1 s)",
        start.elapsed()
    );
    assert!(
        start.elapsed() < close_timeout + GRACE,
        "{:?}",
        start.elapsed()
    );
    drop(reader);
}

#[tokio::test]
async fn keepalive_fails_a_silent_server_while_the_client_only_sends() {
    let url = raw_server(hold).await;
    let engine = EngineConfig::default()
        .keepalive(Duration::from_millis(300), Duration::from_millis(300))
        .write_timeout(None);
    let (ws, _) = connect_with(ClientRequest::new(&url).unwrap(), config(engine))
        .await
        .unwrap();
    let (_reader, mut writer) = ws.split();
    let start = Instant::now();
    let outcome = timeout(Duration::from_secs(30), async {
        loop {
            if let Err(error) = writer.send(Message::text("tick")).await {
                return error;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the writer learns of the failure");
    assert!(
        matches!(outcome, Error::Timeout(TimeoutKind::Keepalive)),
        "{outcome:?}"
    );
    println!(
        "LIFETIME | tokio client | split writer only sends, server silent | failed after {:?} (keepalive 300 ms + 300 ms)",
        start.elapsed()
    );
    assert!(start.elapsed() < Duration::from_millis(600) + GRACE);
}

#[tokio::test]
async fn a_writer_waiting_for_room_is_woken_with_an_error_when_its_reader_is_dropped() {
    let url = raw_server(hold).await;
    let engine = EngineConfig::default()
        .write_timeout(None)
        .max_write_buffer(64 << 10);
    let (ws, _) = connect_with(ClientRequest::new(&url).unwrap(), config(engine))
        .await
        .unwrap();
    let (reader, mut writer) = ws.split();
    let sender = tokio::spawn(async move {
        let chunk = Message::binary(vec![1u8; 64 << 10]);
        loop {
            if let Err(error) = writer.send(chunk.clone()).await {
                return error;
            }
        }
    });
    // Let the writer park on a full socket, then drop the reader.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !sender.is_finished(),
        "the server reads nothing: the writer waits"
    );
    drop(reader);
    let error = timeout(GRACE, sender)
        .await
        .expect("the parked writer is woken")
        .unwrap();
    assert!(matches!(error, Error::Usage(_)), "{error:?}");
}

#[tokio::test]
async fn a_send_after_the_server_closed_is_connection_closed_not_ok() {
    let url = raw_server(|mut tcp| async move {
        // The server's close, then nothing (it reads nothing either).
        tcp.write_all(&[0x88, 0x02, 0x03, 0xE8]).await.unwrap();
        hold(tcp).await;
    })
    .await;
    let (mut ws, _) = connect_with(
        ClientRequest::new(&url).unwrap(),
        config(EngineConfig::default()),
    )
    .await
    .unwrap();
    match timeout(GRACE, ws.recv()).await.unwrap() {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        ws.send(Message::text("late")).await,
        Err(Error::ConnectionClosed)
    ));
}

#[tokio::test]
async fn a_send_only_client_keeps_a_live_server_past_many_keepalive_periods() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    // A live server that reads (and answers pings) but never sends data.
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = duplex_tokio::accept(tcp).await.unwrap();
        while let Some(Ok(_)) = ws.recv().await {}
    });
    let engine =
        EngineConfig::default().keepalive(Duration::from_millis(100), Duration::from_millis(100));
    let (mut ws, _) = connect_with(ClientRequest::new(&url).unwrap(), config(engine))
        .await
        .unwrap();
    // Ten keepalive periods of sending only: the server's pongs are read by `send`.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        ws.send(Message::text("only sending")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ws.state(), State::Open);
    // The pongs were read and are waiting for `recv`.
    let mut pongs = 0;
    while let Ok(Some(Ok(message))) = timeout(Duration::from_millis(100), ws.recv()).await {
        if matches!(message, Message::Pong(_)) {
            pongs += 1;
        }
    }
    assert!(pongs > 0);
}

#[tokio::test]
async fn try_send_gives_the_message_back_while_the_write_buffer_is_full() {
    let url = raw_server(hold).await;
    let engine = EngineConfig::default().max_write_buffer(256 << 10);
    let (ws, _) = connect_with(ClientRequest::new(&url).unwrap(), config(engine))
        .await
        .unwrap();
    let (reader, mut writer) = ws.split();
    let chunk = Message::binary(vec![3u8; 64 << 10]);
    let mut queued = 0usize;
    let refused = loop {
        match writer.try_send(chunk.clone()) {
            Ok(()) => queued += 1,
            Err(duplex_tokio::TrySendError::WriteBufferFull { message, buffered }) => {
                break (message, buffered);
            }
            Err(other) => panic!("{other}"),
        }
        assert!(queued < 100_000, "the buffer never filled");
    };
    assert_eq!(refused.0, chunk, "the message comes back");
    assert!(refused.1 > 256 << 10);
    assert_eq!(writer.buffered_amount(), refused.1);
    // The halves go back together, and only with their own.
    let ws = duplex_tokio::WebSocketStream::reunite(reader, writer).unwrap();
    assert!(ws.buffered_amount() > 256 << 10);
    let other_url = raw_server(hold).await;
    let (other, _) = connect_with(
        ClientRequest::new(&other_url).unwrap(),
        config(EngineConfig::default()),
    )
    .await
    .unwrap();
    let (other_reader, _other_writer) = other.split();
    let (_mine_reader, mine_writer) = ws.split();
    assert!(duplex_tokio::WebSocketStream::reunite(other_reader, mine_writer).is_err());
}
