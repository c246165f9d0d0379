//! Behaviour of duplex-tokio over real sockets on 127.0.0.1: sizes, fragmentation,
//! pings inside fragmented messages, server-initiated close, backpressure, split halves
//! from two tasks, and cancel-safety of `recv`.

mod common;

use std::time::Duration;

use common::{client_frame, read_101, read_frame};

use duplex_tokio::EngineConfig;
use duplex_tokio::{
    Acceptance, ClientRequest, CloseCode, CloseFrame, Config, Message, WebSocketStream, accept,
    accept_with, connect_with,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::RwLock;
use tokio::time::timeout;
use wire_kit::{OP_BINARY, OP_CLOSE, OP_CONT, OP_PING};

/// The bound on every await that waits for the peer.
const LIMIT: Duration = Duration::from_secs(20);

/// The backpressure test measures the process's resident memory: it takes this lock
/// for writing and every other test takes it for reading, so that it runs alone.
static MEMORY: RwLock<()> = RwLock::const_new(());

async fn bind() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    (listener, url)
}

/// Accepts one connection with `config` and echoes its data messages until it ends.
/// Returns every non-data event it saw (pings, the close frame).
async fn echo_one(listener: TcpListener, config: Config) -> Vec<Message> {
    let (tcp, _) = listener.accept().await.unwrap();
    let mut ws = accept_with(tcp, config, |_, _| Ok(Acceptance::default()))
        .await
        .unwrap();
    let mut control = Vec::new();
    while let Some(event) = ws.recv().await {
        let message = event.unwrap();
        if message.is_data() {
            ws.send(message).await.unwrap();
        } else {
            control.push(message);
        }
    }
    control
}

async fn connect(url: &str, config: Config) -> WebSocketStream<duplex_tokio::MaybeTlsStream> {
    let request = ClientRequest::new(url).unwrap();
    let (ws, _) = timeout(LIMIT, connect_with(request, config))
        .await
        .expect("connect timed out")
        .unwrap();
    ws
}

async fn recv<S>(ws: &mut WebSocketStream<S>) -> Message
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite,
{
    timeout(LIMIT, ws.recv())
        .await
        .expect("recv timed out")
        .expect("stream ended")
        .unwrap()
}

/// Deterministic pseudo-random bytes (xorshift), which deflate cannot shrink much.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    wire_kit::noise(len, (seed as u32).wrapping_mul(0x9E37_79B9) | 1)
}

fn big_limits() -> Config {
    Config::default().engine(
        EngineConfig::default()
            .max_message_size(32 << 20)
            .max_frame_size(32 << 20),
    )
}

#[tokio::test]
async fn echoes_empty_and_16_mib_messages() {
    let _memory = MEMORY.read().await;
    // 16 MiB without compression (deflating it in a debug build takes long); with
    // deflate, 0 bytes and 1 MiB.
    for (deflate, size) in [(false, 16 << 20), (true, 1 << 20)] {
        let config = if deflate {
            big_limits()
        } else {
            big_limits().deflate(None)
        };
        let (listener, url) = bind().await;
        let server = tokio::spawn(echo_one(listener, config.clone()));
        let mut ws = connect(&url, config).await;
        assert_eq!(ws.is_compressed(), deflate);

        ws.send(Message::text("")).await.unwrap();
        assert_eq!(recv(&mut ws).await, Message::text(""));
        ws.send(Message::binary(Vec::new())).await.unwrap();
        assert_eq!(recv(&mut ws).await, Message::binary(Vec::new()));

        // Text with multi-byte characters (4 bytes each) and binary noise.
        let text = "a😀bc".repeat(size / 7) + &"x".repeat(size % 7);
        assert_eq!(text.len(), size);
        timeout(LIMIT, ws.send(Message::text(text.as_str())))
            .await
            .unwrap()
            .unwrap();
        let echoed = recv(&mut ws).await;
        assert!(
            echoed.as_text() == Some(text.as_str()),
            "{size} bytes of text differ"
        );
        drop((echoed, text));

        let data = noise(size, 16);
        timeout(LIMIT, ws.send(Message::binary(data.clone())))
            .await
            .unwrap()
            .unwrap();
        let echoed = recv(&mut ws).await;
        assert!(
            matches!(&echoed, Message::Binary(b) if b[..] == data[..]),
            "{size} bytes of binary differ"
        );

        timeout(LIMIT, ws.close(None)).await.unwrap().unwrap();
        let control = timeout(LIMIT, server).await.unwrap().unwrap();
        assert_eq!(control, vec![Message::Close(None)]);
    }
}

#[tokio::test]
async fn fragmented_messages_arrive_whole() {
    let _memory = MEMORY.read().await;
    // The server refuses frames over 1000 bytes: the test fails unless the client
    // really splits its messages.
    let server_config = Config::default().engine(EngineConfig::default().max_frame_size(1000));
    let client_config =
        Config::default().engine(EngineConfig::default().send_frame_size(Some(1000)));
    let (listener, url) = bind().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = accept_with(tcp, server_config, |_, _| Ok(Acceptance::default()))
            .await
            .unwrap();
        let mut received = Vec::new();
        while let Some(event) = ws.recv().await {
            let message = event.unwrap();
            if message.is_data() {
                received.push(message.clone());
                // Echo in one frame (the client's limits are the defaults).
                ws.send(message).await.unwrap();
            }
        }
        received
    });
    let mut ws = connect(&url, client_config).await;
    let binary = Message::binary(noise(100 << 10, 1));
    // 3-byte characters: frame boundaries fall inside code points.
    let text = Message::text("€uro".repeat(100 << 10 >> 3));
    for message in [binary.clone(), text.clone()] {
        ws.send(message.clone()).await.unwrap();
        assert_eq!(recv(&mut ws).await, message);
    }
    timeout(LIMIT, ws.close(None)).await.unwrap().unwrap();
    let received = timeout(LIMIT, server).await.unwrap().unwrap();
    assert_eq!(received, vec![binary, text]);
}

/// Reads one unmasked server frame from a raw socket: (fin, opcode, payload).
async fn read_server_frame(tcp: &mut TcpStream) -> (bool, u8, Vec<u8>) {
    let frame = read_frame(tcp).await;
    assert!(!frame.masked, "server frames are not masked");
    (frame.fin, frame.opcode, frame.payload)
}

#[tokio::test]
async fn ping_between_fragments_is_answered_before_the_message_ends() {
    let _memory = MEMORY.read().await;
    let (listener, url) = bind().await;
    let server = tokio::spawn(echo_one(listener, Config::default()));
    let mut tcp = TcpStream::connect(url.trim_start_matches("ws://").trim_end_matches('/'))
        .await
        .unwrap();
    tcp.set_nodelay(true).unwrap();
    let payload = noise(200_000, 7);
    let (first, rest) = payload.split_at(64 << 10);
    let (middle, last) = rest.split_at(64 << 10);

    // The handshake and the first two fragments, then a ping.
    let mut out = wire_kit::upgrade_request("/", "x", "");
    out.extend(client_frame(false, OP_BINARY, first));
    out.extend(client_frame(false, OP_CONT, middle));
    out.extend(client_frame(true, OP_PING, b"between fragments"));
    timeout(LIMIT, tcp.write_all(&out)).await.unwrap().unwrap();
    timeout(LIMIT, read_101(&mut tcp)).await.unwrap();

    // The pong arrives while the message is still open.
    let (fin, opcode, pong) = timeout(LIMIT, read_server_frame(&mut tcp)).await.unwrap();
    assert!(fin);
    assert_eq!(
        opcode, 0xA,
        "the first frame after the handshake is the pong"
    );
    assert_eq!(pong, b"between fragments");

    // Finish the message; its echo comes back whole, in one frame.
    let mut out = Vec::new();
    out.extend(client_frame(true, OP_CONT, last));
    timeout(LIMIT, tcp.write_all(&out)).await.unwrap().unwrap();
    let (fin, opcode, echoed) = timeout(LIMIT, read_server_frame(&mut tcp)).await.unwrap();
    assert!(fin);
    assert_eq!(opcode, 0x2);
    assert!(
        echoed == payload,
        "the echo differs from the fragments sent"
    );

    // Close; the server answers with the same code.
    let mut out = Vec::new();
    out.extend(client_frame(true, OP_CLOSE, &[0x03, 0xE8]));
    timeout(LIMIT, tcp.write_all(&out)).await.unwrap().unwrap();
    let (_, opcode, body) = timeout(LIMIT, read_server_frame(&mut tcp)).await.unwrap();
    assert_eq!((opcode, &body[..]), (0x8, &[0x03, 0xE8][..]));
    drop(tcp);

    let control = timeout(LIMIT, server).await.unwrap().unwrap();
    assert_eq!(
        control,
        vec![
            Message::Ping("between fragments".into()),
            Message::Close(Some(CloseFrame::new(CloseCode::Normal, ""))),
        ]
    );
}

#[tokio::test]
async fn close_initiated_by_the_server_reaches_the_client_with_code_and_reason() {
    let _memory = MEMORY.read().await;
    let (listener, url) = bind().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = accept(tcp).await.unwrap();
        let hello = ws.recv().await.unwrap().unwrap();
        ws.close(Some(CloseFrame::new(
            CloseCode::Other(4321),
            "server is done",
        )))
        .await
        .map(|()| hello)
    });
    let mut ws = connect(&url, Config::default()).await;
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(
        recv(&mut ws).await,
        Message::Close(Some(CloseFrame::new(
            CloseCode::Other(4321),
            "server is done"
        )))
    );
    let end = timeout(LIMIT, ws.recv()).await.unwrap();
    assert!(end.is_none(), "the stream ends after the close: {end:?}");
    let hello = timeout(LIMIT, server).await.unwrap().unwrap().unwrap();
    assert_eq!(hello, Message::text("hello"));
    // Sending after the close is refused.
    assert!(ws.send(Message::text("late")).await.is_err());
}

/// The resident memory of this process, in bytes.
fn vm_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .unwrap();
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

#[tokio::test]
async fn send_pends_when_the_peer_does_not_read_and_memory_stays_bounded() {
    let _memory = MEMORY.write().await;
    let (listener, url) = bind().await;
    let mut tcp = TcpStream::connect(url.trim_start_matches("ws://").trim_end_matches('/'))
        .await
        .unwrap();
    // The client completes the handshake and then reads nothing.
    tcp.write_all(&wire_kit::upgrade_request("/", "x", ""))
        .await
        .unwrap();
    let (server_tcp, _) = listener.accept().await.unwrap();
    let config = Config::default().engine(EngineConfig::default().max_write_buffer(64 << 10));
    let mut ws = timeout(
        LIMIT,
        accept_with(server_tcp, config, |_, _| Ok(Acceptance::default())),
    )
    .await
    .unwrap()
    .unwrap();

    let before = vm_rss();
    let payload = bytes::Bytes::from(noise(1024, 3));
    // At most 256 MiB: far more than any socket buffer holds.
    const MAX_SENDS: usize = 256 << 10;
    let mut sent = 0;
    let mut pended = false;
    while sent < MAX_SENDS {
        match timeout(
            Duration::from_millis(500),
            ws.send(Message::binary(payload.clone())),
        )
        .await
        {
            Ok(result) => {
                result.unwrap();
                sent += 1;
            }
            Err(_) => {
                pended = true;
                break;
            }
        }
    }
    let grown = vm_rss().saturating_sub(before);
    eprintln!("{sent} sends of 1 KiB before one pended; resident memory grew by {grown} bytes");
    assert!(
        pended,
        "send never pended after {sent} messages of 1 KiB to a peer that reads nothing"
    );
    assert!(
        grown < 32 << 20,
        "resident memory grew by {} MiB after {sent} sends",
        grown >> 20
    );

    // Once the peer reads again, sending resumes.
    let drain = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 << 10];
        while let Ok(n) = tcp.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    });
    timeout(LIMIT, ws.send(Message::text("after the stall")))
        .await
        .expect("send still pending after the peer started reading")
        .unwrap();
    drop(ws);
    timeout(LIMIT, drain).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_halves_send_and_receive_concurrently_in_order() {
    let _memory = MEMORY.read().await;
    const COUNT: usize = 1000;
    let (listener, url) = bind().await;

    fn numbered(prefix: &str, i: usize) -> Message {
        if i % 2 == 0 {
            Message::text(format!("{prefix}{i}"))
        } else {
            Message::binary(noise(i % 300, i as u64))
        }
    }
    // Receives the other side's COUNT messages in order (then says so on `all_in`), and
    // then whatever follows until the stream ends; returns what followed.
    async fn reader_task<S>(
        mut reader: duplex_tokio::WsReader<S>,
        prefix: &'static str,
        all_in: tokio::sync::oneshot::Sender<()>,
    ) -> Vec<Message>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite,
    {
        for i in 0..COUNT {
            let message = timeout(LIMIT, reader.recv())
                .await
                .unwrap()
                .expect("stream ended early")
                .unwrap();
            assert_eq!(message, numbered(prefix, i));
        }
        let _ = all_in.send(());
        let mut rest = Vec::new();
        while let Some(event) = timeout(LIMIT, reader.recv()).await.unwrap() {
            rest.push(event.unwrap());
        }
        rest
    }
    async fn write_all<S>(writer: &mut duplex_tokio::WsWriter<S>, prefix: &str)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite,
    {
        for i in 0..COUNT {
            timeout(LIMIT, writer.send(numbered(prefix, i)))
                .await
                .unwrap()
                .unwrap();
        }
    }

    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (reader, mut writer) = accept(tcp).await.unwrap().split();
        let (all_in, _) = tokio::sync::oneshot::channel();
        let reading = tokio::spawn(reader_task(reader, "c", all_in));
        let writing = tokio::spawn(async move { write_all(&mut writer, "s").await });
        writing.await.unwrap();
        reading.await.unwrap()
    });

    let (reader, mut writer) = connect(&url, Config::default()).await.split();
    let (all_in, all_received) = tokio::sync::oneshot::channel();
    let reading = tokio::spawn(reader_task(reader, "s", all_in));
    let writing = tokio::spawn(async move {
        write_all(&mut writer, "c").await;
        // Close only when the server's messages are all in (the server's writer is
        // done then), so that none of them races the close.
        timeout(LIMIT, all_received).await.unwrap().unwrap();
        timeout(LIMIT, writer.close(None)).await.unwrap().unwrap();
    });
    timeout(LIMIT, writing).await.unwrap().unwrap();
    let client_rest = timeout(LIMIT, reading).await.unwrap().unwrap();
    let server_rest = timeout(LIMIT, server).await.unwrap().unwrap();
    assert_eq!(client_rest, vec![Message::Close(None)]);
    assert_eq!(server_rest, vec![Message::Close(None)]);
}

/// Forwards bytes between a client and `server`, passing the server's bytes on in
/// chunks of varied sizes with pauses, so that the client's reads end at arbitrary
/// points of frames and messages.
async fn trickle_proxy(listener: TcpListener, server: String) {
    let (client, _) = listener.accept().await.unwrap();
    client.set_nodelay(true).unwrap();
    let upstream = TcpStream::connect(server).await.unwrap();
    upstream.set_nodelay(true).unwrap();
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut upstream_write).await;
        let _ = upstream_write.shutdown().await;
    });
    let mut buf = vec![0u8; 64 << 10];
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut chunks = 0u64;
    loop {
        let n = match upstream_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut at = 0;
        while at < n {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (1 + (state % 6000) as usize).min(n - at);
            if client_write.write_all(&buf[at..at + len]).await.is_err() {
                return;
            }
            at += len;
            chunks += 1;
            if chunks % 16 == 0 {
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        }
    }
    let _ = client_write.shutdown().await;
    let _ = up.await;
}

/// The 500 messages of the cancel-safety test: varied sizes, some of several hundred
/// KiB, text and binary.
fn numbered(i: usize) -> Message {
    let len = match i % 50 {
        0 => 300_000 + i * 100,
        1..=5 => 20_000 + i,
        _ => i % 700,
    };
    if i % 3 == 0 {
        let mut text = format!("{i}:");
        while text.len() < len {
            text.push_str("ünïcödé ");
        }
        Message::text(text)
    } else {
        let mut data = noise(len, i as u64);
        data.splice(0..0, (i as u32).to_be_bytes());
        Message::binary(data)
    }
}

#[tokio::test]
async fn recv_is_cancel_safe_under_select() {
    const COUNT: usize = 500;
    let _memory = MEMORY.read().await;
    let (server_listener, server_url) = bind().await;
    let (proxy_listener, proxy_url) = bind().await;
    let server_addr = server_url
        .trim_start_matches("ws://")
        .trim_end_matches('/')
        .to_owned();
    let proxy = tokio::spawn(trickle_proxy(proxy_listener, server_addr));
    let server = tokio::spawn(async move {
        let (tcp, _) = server_listener.accept().await.unwrap();
        let mut ws = accept(tcp).await.unwrap();
        for i in 0..COUNT {
            ws.send(numbered(i)).await.unwrap();
        }
        let mut events = Vec::new();
        while let Some(event) = ws.recv().await {
            events.push(event.unwrap());
        }
        events
    });

    let mut ws = connect(&proxy_url, Config::default()).await;
    assert!(ws.is_compressed());
    let mut received = 0;
    let mut cancelled = 0u32;
    let deadline = tokio::time::Instant::now() + LIMIT;
    while received < COUNT {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {received} of {COUNT} messages arrived"
        );
        tokio::select! {
            event = ws.recv() => {
                let message = event.expect("stream ended early").unwrap();
                assert!(message == numbered(received), "message {received} differs");
                received += 1;
            }
            () = tokio::time::sleep(Duration::from_millis(1)) => cancelled += 1,
        }
    }
    assert!(cancelled > 0, "no recv was ever cancelled");
    // Nothing arrives after the 500 messages.
    let extra = timeout(Duration::from_millis(200), ws.recv()).await;
    assert!(
        extra.is_err(),
        "unexpected event after the last message: {extra:?}"
    );
    timeout(LIMIT, ws.close(None)).await.unwrap().unwrap();
    let events = timeout(LIMIT, server).await.unwrap().unwrap();
    assert_eq!(events, vec![Message::Close(None)]);
    timeout(LIMIT, proxy).await.unwrap().unwrap();
}
