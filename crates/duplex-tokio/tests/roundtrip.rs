//! duplex-tokio over real sockets on 127.0.0.1, against itself and tokio-tungstenite.

use std::time::Duration;

use duplex_tokio::EngineConfig;
use duplex_tokio::core::TimeoutKind;
use duplex_tokio::http::StatusCode;
use duplex_tokio::{
    Acceptance, ClientRequest, CloseCode, CloseFrame, Config, Error, HandshakeError, Message,
    Rejection, accept, accept_with, client_with, connect,
};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);

/// A valid client handshake for a raw socket (the RFC's sample key).
fn raw_handshake() -> Vec<u8> {
    wire_kit::upgrade_request("/", "x", "")
}

fn addr_of(url: &str) -> String {
    url.trim_start_matches("ws://")
        .trim_end_matches('/')
        .to_owned()
}

/// Accepts one connection and returns its first event.
fn first_event_of_one(
    listener: TcpListener,
) -> tokio::task::JoinHandle<Option<Result<Message, Error>>> {
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = accept(tcp).await.unwrap();
        ws.recv().await
    })
}

async fn bind() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    (listener, url)
}

/// A duplex echo server for one connection.
async fn echo_once(listener: TcpListener) {
    let (tcp, _) = listener.accept().await.unwrap();
    let mut ws = accept(tcp).await.unwrap();
    while let Some(Ok(message)) = ws.recv().await {
        if message.is_data() {
            ws.send(message).await.unwrap();
        }
    }
}

#[tokio::test]
async fn echoes_text_and_binary_of_every_length_class() {
    let (listener, url) = bind().await;
    let server = tokio::spawn(echo_once(listener));
    let (mut ws, _) = timeout(LIMIT, connect(&url)).await.unwrap().unwrap();
    for len in [0usize, 1, 125, 126, 127, 65535, 65536, 1 << 20] {
        let text: String = "é".repeat(len / 2);
        ws.send(Message::text(text.clone())).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text(text));
        let data = vec![len as u8; len];
        ws.send(Message::binary(data.clone())).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::binary(data));
    }
    timeout(
        LIMIT,
        ws.close(Some(CloseFrame::new(CloseCode::Normal, "bye"))),
    )
    .await
    .unwrap()
    .unwrap();
    timeout(LIMIT, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn server_sees_client_close_and_the_close_handshake_completes() {
    let (listener, url) = bind().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = accept(tcp).await.unwrap();
        let first = ws.recv().await.unwrap().unwrap();
        let after = ws.recv().await;
        (first, after.is_none())
    });
    let (mut ws, _) = connect(&url).await.unwrap();
    timeout(
        LIMIT,
        ws.close(Some(CloseFrame::new(CloseCode::GoingAway, "done"))),
    )
    .await
    .unwrap()
    .unwrap();
    let (first, ended) = timeout(LIMIT, server).await.unwrap().unwrap();
    assert_eq!(
        first,
        Message::Close(Some(CloseFrame::new(CloseCode::GoingAway, "done")))
    );
    assert!(ended, "the server's stream ends after the close handshake");
}

#[tokio::test]
async fn peer_vanishing_without_close_is_a_distinct_error() {
    let (listener, url) = bind().await;
    let server = first_event_of_one(listener);
    let (ws, _) = connect(&url).await.unwrap();
    drop(ws);
    let result = timeout(LIMIT, server).await.unwrap().unwrap();
    assert!(
        matches!(
            result,
            Some(Err(Error::PeerVanished { mid_message: false }))
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn callback_picks_a_subprotocol_or_rejects_with_its_status() {
    let (listener, url) = bind().await;
    let server = tokio::spawn(async move {
        for _ in 0..2 {
            let (tcp, _) = listener.accept().await.unwrap();
            let result = accept_with(tcp, Config::default(), |request, offer| {
                if request.uri().path() == "/forbidden" {
                    return Err(Rejection::new(StatusCode::FORBIDDEN, "go away"));
                }
                Ok(Acceptance::default().protocol(offer.select_protocol(&["v2", "v1"]).unwrap()))
            })
            .await;
            if let Ok(mut ws) = result {
                while ws.recv().await.is_some() {}
            }
        }
    });
    let request = ClientRequest::new(&url)
        .unwrap()
        .protocol("v1")
        .protocol("v2");
    let (mut ws, response) = duplex_tokio::connect_with(request, Config::default())
        .await
        .unwrap();
    assert_eq!(response.negotiated.protocol.as_deref(), Some("v1"));
    ws.close(None).await.unwrap();
    let forbidden = format!("{url}forbidden");
    let error = connect(&forbidden).await.unwrap_err();
    assert!(
        matches!(
            &error,
            HandshakeError::Protocol(duplex_handshake_error) if duplex_handshake_error.to_string().contains("403")
        ),
        "{error}"
    );
    timeout(LIMIT, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn stalled_handshake_is_dropped_after_the_timeout() {
    let (listener, url) = bind().await;
    let addr = addr_of(&url);
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let config = Config::default().handshake_timeout(Duration::from_millis(200));
        accept_with(tcp, config, |_, _| Ok(Acceptance::default()))
            .await
            .err()
    });
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let error = timeout(LIMIT, server).await.unwrap().unwrap();
    assert!(matches!(error, Some(HandshakeError::Timeout)), "{error:?}");
    let mut rest = Vec::new();
    let n = timeout(LIMIT, tcp.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(
        n, 0,
        "nothing is answered to a stalled request, the socket is just closed"
    );
}

#[tokio::test]
async fn bad_version_is_answered_426_with_version_13() {
    let (listener, url) = bind().await;
    let addr = addr_of(&url);
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        accept(tcp).await.err()
    });
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let old_version =
        String::from_utf8_lossy(&raw_handshake()).replace("Version: 13", "Version: 8");
    tcp.write_all(old_version.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    timeout(LIMIT, tcp.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{answer}"
    );
    assert!(answer.contains("sec-websocket-version: 13\r\n"), "{answer}");
    assert!(timeout(LIMIT, server).await.unwrap().unwrap().is_some());
}

#[tokio::test]
async fn split_halves_work_from_different_tasks_and_reader_answers_pings() {
    let (listener, url) = bind().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = accept(tcp).await.unwrap();
        let (mut reader, mut writer) = ws.split();
        let (saw_ping, ping_seen) = tokio::sync::oneshot::channel::<()>();
        let writing = tokio::spawn(async move {
            for i in 0..100u32 {
                writer.send(Message::text(i.to_string())).await.unwrap();
            }
            // Close only after the reader answered the ping: no pong follows a close.
            ping_seen.await.unwrap();
            writer.close(None).await.unwrap();
        });
        let mut pings = 0;
        let mut saw_ping = Some(saw_ping);
        while let Some(event) = reader.recv().await {
            if let Ok(Message::Ping(_)) = event {
                pings += 1;
                saw_ping.take().unwrap().send(()).unwrap();
            }
        }
        writing.await.unwrap();
        pings
    });
    let (mut ws, _) = connect(&url).await.unwrap();
    ws.send(Message::Ping("are you there".into()))
        .await
        .unwrap();
    let mut texts = 0;
    let mut pong = false;
    while let Some(event) = timeout(LIMIT, ws.recv()).await.unwrap() {
        match event.unwrap() {
            Message::Text(_) => texts += 1,
            Message::Pong(payload) => pong = &payload[..] == b"are you there",
            Message::Close(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(texts, 100);
    assert!(pong);
    assert_eq!(timeout(LIMIT, server).await.unwrap().unwrap(), 1);
}

#[tokio::test]
async fn protocol_violation_closes_with_1002_on_the_wire() {
    let (listener, url) = bind().await;
    let server = first_event_of_one(listener);
    let mut tcp = TcpStream::connect(addr_of(&url)).await.unwrap();
    // An unmasked frame right after the handshake: a server must reject it with 1002.
    tcp.write_all(&[&raw_handshake()[..], b"\x81\x02hi"].concat())
        .await
        .unwrap();
    let mut answer = Vec::new();
    timeout(LIMIT, tcp.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let head_end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(&answer[head_end..head_end + 4], &[0x88, 0x10, 0x03, 0xEA]);
    let event = timeout(LIMIT, server).await.unwrap().unwrap();
    assert!(matches!(event, Some(Err(Error::Protocol(_)))), "{event:?}");
}

#[tokio::test]
async fn keepalive_closes_a_peer_that_stops_answering() {
    let (listener, url) = bind().await;
    let addr = addr_of(&url);
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let protocol = EngineConfig::default()
            .keepalive(Duration::from_millis(100), Duration::from_millis(100));
        let mut ws = accept_with(tcp, Config::default().engine(protocol), |_, _| {
            Ok(Acceptance::default())
        })
        .await
        .unwrap();
        ws.recv().await
    });
    // A client that completes the handshake and then never reads or answers.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&raw_handshake()).await.unwrap();
    let event = timeout(LIMIT, server).await.unwrap().unwrap();
    assert!(
        matches!(event, Some(Err(Error::Timeout(TimeoutKind::Keepalive)))),
        "{event:?}"
    );
}

#[tokio::test]
async fn sink_and_stream_traits_work() {
    let (listener, url) = bind().await;
    let server = tokio::spawn(echo_once(listener));
    let (mut ws, _) = connect(&url).await.unwrap();
    ws.feed(Message::text("a")).await.unwrap();
    ws.feed(Message::text("b")).await.unwrap();
    ws.flush().await.unwrap();
    let got: Vec<Message> = (&mut ws).take(2).map(Result::unwrap).collect().await;
    assert_eq!(got, vec![Message::text("a"), Message::text("b")]);
    SinkExt::close(&mut ws).await.unwrap();
    while ws.next().await.is_some() {}
    timeout(LIMIT, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn interop_tungstenite_client_against_duplex_server() {
    let (listener, url) = bind().await;
    let server = tokio::spawn(echo_once(listener));
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    use tokio_tungstenite::tungstenite::Message as T;
    for payload in ["hello", "", "κόσμε"] {
        ws.send(T::text(payload)).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), T::text(payload));
    }
    let big = vec![7u8; 300_000];
    ws.send(T::binary(big.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), T::binary(big));
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
    timeout(LIMIT, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn interop_duplex_client_against_tungstenite_server() {
    let (listener, url) = bind().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        while let Some(Ok(message)) = ws.next().await {
            if message.is_text() || message.is_binary() {
                ws.send(message).await.unwrap();
            }
        }
    });
    let (mut ws, _) = connect(&url).await.unwrap();
    for len in [0usize, 125, 126, 65536, 200_000] {
        let data = vec![3u8; len];
        ws.send(Message::binary(data.clone())).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::binary(data));
    }
    ws.send(Message::text("κόσμε")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("κόσμε"));
    timeout(LIMIT, ws.close(None)).await.unwrap().unwrap();
    timeout(LIMIT, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn permessage_deflate_is_negotiated_by_default_and_round_trips() {
    let (listener, url) = bind().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = accept(tcp).await.unwrap();
        let compressed = ws.is_compressed();
        while let Some(Ok(message)) = ws.recv().await {
            if message.is_data() {
                ws.send(message).await.unwrap();
            }
        }
        compressed
    });
    let (mut ws, response) = connect(&url).await.unwrap();
    assert!(ws.is_compressed());
    assert_eq!(
        response.response.headers()["sec-websocket-extensions"],
        "permessage-deflate; server_no_context_takeover"
    );
    let text = "compressible text, compressible text, ".repeat(5000);
    for _ in 0..3 {
        ws.send(Message::text(text.as_str())).await.unwrap();
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::text(text.as_str())
        );
    }
    ws.send_uncompressed(Message::binary(vec![1u8; 1000]))
        .await
        .unwrap();
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::binary(vec![1u8; 1000])
    );
    ws.close(None).await.unwrap();
    assert!(timeout(LIMIT, server).await.unwrap().unwrap());
}

#[tokio::test]
async fn deflate_can_be_turned_off_on_either_side() {
    let (listener, url) = bind().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = accept_with(tcp, Config::default().deflate(None), |_, _| {
            Ok(Acceptance::default())
        })
        .await
        .unwrap();
        let compressed = ws.is_compressed();
        while ws.recv().await.is_some() {}
        compressed
    });
    let (mut ws, response) = connect(&url).await.unwrap();
    assert!(!ws.is_compressed());
    assert!(
        !response
            .response
            .headers()
            .contains_key("sec-websocket-extensions")
    );
    ws.close(None).await.unwrap();
    assert!(!timeout(LIMIT, server).await.unwrap().unwrap());
}

#[tokio::test]
async fn client_with_runs_over_a_stream_the_caller_has() {
    let (listener, url) = bind().await;
    let server = tokio::spawn(echo_once(listener));
    let tcp = TcpStream::connect(addr_of(&url)).await.unwrap();
    let request = ClientRequest::new(&url).unwrap();
    let (mut ws, response) = client_with(request, tcp, Config::default()).await.unwrap();
    assert_eq!(response.response.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws.send(Message::text("over my own socket")).await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::text("over my own socket")
    );
    ws.close(None).await.unwrap();
    timeout(LIMIT, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn writer_half_is_woken_even_when_the_reader_also_waited_on_a_full_socket() {
    let (listener, url) = bind().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = accept(tcp).await.unwrap();
        let (mut reader, mut writer) = ws.split();
        // The writer fills the socket and waits for room.
        let writing = tokio::spawn(async move {
            let big = Message::binary(vec![0u8; 8 << 20]);
            timeout(LIMIT, writer.send(big)).await
        });
        // The reader gets the ping, tries to write its pong into the full socket, and then
        // does something else for a long time without polling the reader again.
        let ping = reader.recv().await;
        assert!(matches!(ping, Some(Ok(Message::Ping(_)))), "{ping:?}");
        let done = timeout(Duration::from_secs(5), writing).await;
        drop(reader);
        done
    });
    let mut tcp = TcpStream::connect(addr_of(&url)).await.unwrap();
    tcp.write_all(&raw_handshake()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    tcp.write_all(&[0x89, 0x80, 0, 0, 0, 0]).await.unwrap(); // a masked, empty ping
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Now read everything: the server's writer must be woken and finish its message.
    let reading = tokio::spawn(async move {
        let mut sink = vec![0u8; 1 << 16];
        let mut total = 0usize;
        while total < (8 << 20) {
            match tcp.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
        total
    });
    let outcome = timeout(LIMIT, server).await.unwrap().unwrap();
    let sent = outcome.expect("the writer finished within 5 s").unwrap();
    assert!(matches!(sent, Ok(Ok(()))), "{sent:?}");
    assert!(timeout(LIMIT, reading).await.unwrap().unwrap() >= 8 << 20);
}
