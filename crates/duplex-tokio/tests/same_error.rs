//! One fault, one answer: once the connection knows its peer vanished (TCP ended without
//! a close frame) or closed (its close frame arrived), `send`, `feed`, `flush`,
//! `try_send` and `recv` all say so the same way, and a writer that never reads sees
//! `PeerVanished`, never a raw broken pipe.

mod common;

use std::time::Duration;

use duplex_tokio::{Error, Message, TrySendError, WebSocketStream, accept};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug)]
enum Method {
    Send,
    Feed,
    Flush,
    TrySend,
    Recv,
}

const METHODS: [Method; 5] = [
    Method::Send,
    Method::Feed,
    Method::Flush,
    Method::TrySend,
    Method::Recv,
];

/// A server WebSocket and the raw client socket of its peer.
async fn pair() -> (WebSocketStream<TcpStream>, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let client = tokio::spawn(async move { common::raw_client(&addr).await });
    let (tcp, _) = listener.accept().await.unwrap();
    let ws = accept(tcp).await.unwrap();
    (ws, client.await.unwrap())
}

/// What `method` reports, as an error (`None`: it succeeded or the stream ended).
async fn call(ws: &mut WebSocketStream<TcpStream>, method: Method) -> Option<Error> {
    let message = Message::text("after the end");
    let result = match method {
        Method::Send => ws.send(message).await,
        Method::Feed => ws.feed(message).await,
        Method::Flush => ws.flush().await,
        Method::TrySend => match ws.try_send(message) {
            Ok(()) => Ok(()),
            Err(TrySendError::Error(error)) => Err(error),
            Err(other) => panic!("{method:?}: {other}"),
        },
        Method::Recv => match ws.recv().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(error)) => Err(error),
        },
    };
    result.err()
}

fn is_vanished(error: &Option<Error>) -> bool {
    matches!(error, Some(Error::PeerVanished { .. }))
}

#[tokio::test]
async fn after_the_peer_vanished_every_method_says_peer_vanished() {
    for method in METHODS {
        let (mut ws, client) = pair().await;
        drop(client);
        // The reader learns it first: the end of the stream, without a close frame.
        let first = timeout(LIMIT, ws.recv()).await.unwrap();
        assert!(
            matches!(first, Some(Err(Error::PeerVanished { .. }))),
            "{first:?}"
        );
        let error = timeout(LIMIT, call(&mut ws, method)).await.unwrap();
        match method {
            // The stream reported its end once; it is over.
            Method::Recv => assert!(error.is_none(), "{method:?}: {error:?}"),
            _ => assert!(is_vanished(&error), "{method:?}: {error:?}"),
        }
    }
}

#[tokio::test]
async fn after_the_peer_closed_every_method_says_connection_closed() {
    for method in METHODS {
        let (mut ws, mut client) = pair().await;
        let mut close = vec![0x03, 0xE8];
        close.extend_from_slice(b"bye");
        client
            .write_all(&common::client_frame(true, 0x8, &close))
            .await
            .unwrap();
        let first = timeout(LIMIT, ws.recv()).await.unwrap();
        assert!(matches!(first, Some(Ok(Message::Close(_)))), "{first:?}");
        let error = timeout(LIMIT, call(&mut ws, method)).await.unwrap();
        match method {
            Method::Recv => assert!(error.is_none(), "{method:?}: {error:?}"),
            _ => assert!(
                matches!(error, Some(Error::ConnectionClosed)),
                "{method:?}: {error:?}"
            ),
        }
        drop(client);
    }
}

/// A task that only sends, to a peer that left: its sends succeed until the connection
/// learns of it (the kernel takes the first writes), then fail with `PeerVanished`, the
/// same error every time, never an I/O error of the socket. (`feed` only queues until
/// the write buffer is full, so it writes, and learns, nothing here.)
#[tokio::test]
async fn a_writer_that_never_reads_sees_peer_vanished_not_a_broken_pipe() {
    for method in [Method::Send, Method::TrySend] {
        let (mut ws, client) = pair().await;
        drop(client);
        let mut first_error = None;
        for _ in 0..100 {
            let error = timeout(LIMIT, call(&mut ws, method)).await.unwrap();
            match (&first_error, error) {
                (None, None) => {}
                (None, Some(error)) => {
                    assert!(
                        matches!(error, Error::PeerVanished { .. }),
                        "{method:?}: {error:?}"
                    );
                    first_error = Some(error);
                }
                (Some(_), error) => {
                    assert!(is_vanished(&error), "{method:?} later: {error:?}");
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(first_error.is_some(), "{method:?}: never told");
    }
}
