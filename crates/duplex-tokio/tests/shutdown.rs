//! Graceful shutdown (`duplex_tokio::Shutdown`) on 127.0.0.1: a plain accept loop and
//! an axum server; peers that answer the 1001, a peer in the middle of a fragmented
//! message, and a peer that never answers (dropped at the deadline).

mod common;

use std::time::{Duration, Instant};

use common::{client_frame, raw_client, read_frame};

use duplex_tokio::{CloseCode, Message, Shutdown, accept, connect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::timeout;
use wire_kit::Frame;

const LIMIT: Duration = Duration::from_secs(10);

/// An echo server whose accept loop stops when the shutdown starts.
async fn echo_server(shutdown: Shutdown) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let tcp = tokio::select! {
                _ = shutdown.initiated() => break,
                accepted = listener.accept() => accepted.unwrap().0,
            };
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = accept(tcp).await else {
                    return;
                };
                let _tracked = shutdown.track(&ws);
                while let Some(Ok(message)) = ws.recv().await {
                    if message.is_data() && ws.send(message).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn shutdown_closes_with_1001_and_drops_peers_that_never_answer() {
    let shutdown = Shutdown::new();
    let addr = echo_server(shutdown.clone()).await;

    // A client that answers the close (duplex's own, reading in a task).
    let (mut polite, _) = connect(&format!("ws://{addr}/")).await.unwrap();
    polite.send(Message::text("hello")).await.unwrap();
    assert_eq!(
        polite.recv().await.unwrap().unwrap(),
        Message::text("hello")
    );
    let polite = tokio::spawn(async move {
        let mut close = None;
        while let Some(event) = polite.recv().await {
            if let Ok(Message::Close(frame)) = event {
                close = frame;
            }
        }
        close
    });

    // A client in the middle of a fragmented message, which answers the close.
    let mut midway = raw_client(&addr).await;
    midway
        .write_all(&client_frame(false, 1, b"half of a mess"))
        .await
        .unwrap();
    let midway = tokio::spawn(async move {
        let Frame {
            opcode, payload, ..
        } = timeout(LIMIT, read_frame(&mut midway)).await.unwrap();
        midway
            .write_all(&client_frame(true, 8, &payload[..2]))
            .await
            .unwrap();
        let mut rest = Vec::new();
        let _ = timeout(LIMIT, midway.read_to_end(&mut rest)).await.unwrap();
        (opcode, payload)
    });

    // A client that never reads nor answers.
    let mut silent = raw_client(&addr).await;

    // Every connection is tracked before the shutdown starts.
    let start = Instant::now();
    while shutdown.open_connections() < 3 {
        assert!(
            start.elapsed() < LIMIT,
            "the server did not track 3 connections"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let grace = Duration::from_millis(800);
    let started = Instant::now();
    let report = timeout(LIMIT, shutdown.shutdown(grace)).await.unwrap();
    let took = started.elapsed();
    assert_eq!((report.closed, report.dropped), (2, 1), "{report:?}");
    assert!(
        took >= grace && took < grace + Duration::from_secs(2),
        "{took:?}"
    );

    let close = timeout(LIMIT, polite).await.unwrap().unwrap().unwrap();
    assert_eq!(close.code, CloseCode::GoingAway);
    let (opcode, payload) = timeout(LIMIT, midway).await.unwrap().unwrap();
    assert_eq!((opcode, &payload[..2]), (8, &1001u16.to_be_bytes()[..]));

    // The silent client got the 1001 too, then its transport was dropped.
    let Frame {
        opcode, payload, ..
    } = timeout(LIMIT, read_frame(&mut silent)).await.unwrap();
    assert_eq!((opcode, &payload[..2]), (8, &1001u16.to_be_bytes()[..]));
    let mut rest = Vec::new();
    let _ = timeout(LIMIT, silent.read_to_end(&mut rest)).await.unwrap();

    // Nothing is accepted any more.
    assert!(
        timeout(LIMIT, connect(&format!("ws://{addr}/")))
            .await
            .unwrap()
            .is_err()
    );
    assert_eq!(shutdown.open_connections(), 0);
}

#[tokio::test]
async fn a_connection_tracked_during_the_shutdown_is_closed_at_once() {
    let shutdown = Shutdown::new();
    shutdown.initiate();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = shutdown.clone();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = accept(tcp).await.unwrap();
        let _tracked = server.track(&ws);
        while ws.recv().await.is_some() {}
    });
    let (mut client, _) = connect(&format!("ws://{addr}/")).await.unwrap();
    let event = timeout(LIMIT, client.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(event, Message::Close(Some(ref f)) if f.code == CloseCode::GoingAway),
        "{event:?}"
    );
    let report = timeout(LIMIT, shutdown.shutdown(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(report.dropped, 0);
}

#[cfg(feature = "hyper")]
#[tokio::test]
async fn axum_serve_and_its_websockets_shut_down_together() {
    use axum::Router;
    use axum::extract::Request;
    use axum::response::IntoResponse;
    use axum::routing::any;

    let shutdown = Shutdown::new();
    let tracker = shutdown.clone();
    let app = Router::new().route(
        "/ws",
        any(move |mut request: Request| {
            let tracker = tracker.clone();
            async move {
                let config = duplex_tokio::Config::default();
                let (response, websocket) =
                    match duplex_tokio::hyper::upgrade(&mut request, &config) {
                        Ok(accepted) => accepted,
                        Err(error) => return error.into_response().into_response(),
                    };
                tokio::spawn(async move {
                    let Ok(mut ws) = websocket.await else { return };
                    let _tracked = tracker.track(&ws);
                    while let Some(Ok(message)) = ws.recv().await {
                        if message.is_data() && ws.send(message).await.is_err() {
                            break;
                        }
                    }
                });
                response.into_response()
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.initiated().await })
            .await
    });
    let (mut client, _) = connect(&format!("ws://{addr}/ws")).await.unwrap();
    client.send(Message::text("hi")).await.unwrap();
    assert_eq!(client.recv().await.unwrap().unwrap(), Message::text("hi"));
    let client = tokio::spawn(async move {
        let mut code = None;
        while let Some(event) = client.recv().await {
            if let Ok(Message::Close(Some(frame))) = event {
                code = Some(frame.code);
            }
        }
        code
    });
    let report = timeout(LIMIT, shutdown.shutdown(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!((report.closed, report.dropped), (1, 0));
    assert_eq!(
        timeout(LIMIT, client).await.unwrap().unwrap(),
        Some(CloseCode::GoingAway)
    );
    timeout(LIMIT, server).await.unwrap().unwrap().unwrap();
}

/// The documented axum pattern: the signal initiates the shutdown, the clients answer
/// their 1001 and leave, and only then is `shutdown` called: the report still counts
/// every connection that was closed, whatever the order.
#[tokio::test]
async fn the_report_counts_connections_closed_before_shutdown_was_called() {
    let shutdown = Shutdown::new();
    let addr = echo_server(shutdown.clone()).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (ws, _) = connect(&format!("ws://{addr}/")).await.unwrap();
        clients.push(tokio::spawn(async move {
            let mut ws = ws;
            while let Some(Ok(_)) = ws.recv().await {}
        }));
    }
    let start = Instant::now();
    while shutdown.open_connections() < 3 {
        assert!(
            start.elapsed() < LIMIT,
            "the server did not track 3 connections"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.initiate();
    for client in clients {
        timeout(LIMIT, client).await.unwrap().unwrap();
    }
    let start = Instant::now();
    while shutdown.open_connections() > 0 {
        assert!(start.elapsed() < LIMIT, "the server kept its connections");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let report = shutdown.shutdown(Duration::from_secs(1)).await;
    assert_eq!((report.closed, report.dropped), (3, 0), "{report:?}");
}
