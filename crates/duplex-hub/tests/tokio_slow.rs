//! A WebSocket client that never reads, on a duplex-tokio server over the hub: its
//! connection is closed with 1013 soon after its queue fills, while a reading client
//! gets every message.
#![cfg(feature = "tokio")]

use std::time::{Duration, Instant};

use duplex_hub::tokio::{Flow, send_event};
use duplex_hub::{Hub, HubConfig, MemoryBackend, MemoryConfig, Message};
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_closed_promptly_and_the_reader_gets_everything() {
    let config = HubConfig {
        queue_bytes: 256 * 1024,
        ..HubConfig::default()
    };
    let hub = Hub::with_backend(
        config,
        std::sync::Arc::new(MemoryBackend::new(MemoryConfig::default())),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (ended_tx, mut ended_rx) = tokio::sync::mpsc::unbounded_channel();
    {
        let hub = hub.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((tcp, _)) = listener.accept().await {
                let (hub, ended_tx) = (hub.clone(), ended_tx.clone());
                n += 1;
                let who = n;
                tokio::spawn(async move {
                    let mut ws = duplex_tokio::accept(tcp).await.unwrap();
                    let mut sub = hub.subscriber();
                    sub.subscribe("feed").unwrap();
                    ws.send(Message::text("ready")).await.unwrap();
                    let flow = loop {
                        tokio::select! {
                            incoming = ws.recv() => if !matches!(incoming, Some(Ok(_))) { break Flow::Continue },
                            Some(event) = sub.recv() => {
                                match send_event(&mut ws, &sub, &event).await {
                                    Ok(Flow::Continue) => {}
                                    Ok(Flow::Stop) => break Flow::Stop,
                                    Err(_) => break Flow::Continue,
                                }
                            }
                        }
                    };
                    let _ = ended_tx.send((who, flow, Instant::now()));
                });
            }
        });
    }
    let url = format!("ws://127.0.0.1:{port}/");
    // The client that never reads has a small receive buffer, so the server's sends
    // block after a few MiB (the server's send buffer and the engine's write buffer).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let tcp = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    let request = duplex_tokio::ClientRequest::new(&url).unwrap();
    // Without permessage-deflate: the padding would compress to almost nothing.
    let plain = duplex_tokio::Config::default().deflate(None);
    let (mut stuck, _) = duplex_tokio::client_with(request, tcp, plain)
        .await
        .unwrap();
    assert_eq!(
        stuck.recv().await.unwrap().unwrap().as_text(),
        Some("ready")
    );
    let (mut reader, _) = duplex_tokio::connect(&url).await.unwrap();
    assert_eq!(
        reader.recv().await.unwrap().unwrap().as_text(),
        Some("ready")
    );
    const N: u64 = 1500;
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reading = {
        let progress = progress.clone();
        tokio::spawn(async move {
            for i in 1..=N {
                let m = reader.recv().await.unwrap().unwrap();
                assert_eq!(&m.as_text().unwrap()[..12], format!("{i:012}"));
                progress.store(i, std::sync::atomic::Ordering::Relaxed);
            }
            reader
        })
    };
    // 1500 x 16 KiB = 24 MiB: more than the socket buffers, the engine's write buffer
    // and the 256 KiB queue of the client that never reads.
    let pad = "x".repeat(16 * 1024);
    let mut closed_at = None;
    for i in 1..=N {
        // Paced to the reader (at most 8 messages ahead), which must not lag.
        while i > progress.load(std::sync::atomic::Ordering::Relaxed) + 8 {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        hub.publish("feed", format!("{i:012}{pad}")).unwrap();
        if closed_at.is_none() {
            if let Ok((who, flow, at)) = ended_rx.try_recv() {
                assert_eq!((who, flow), (1, Flow::Stop), "the stuck client's task ends");
                closed_at = Some((i, at));
            }
        }
    }
    let loop_end = Instant::now();
    let reader = tokio::time::timeout(Duration::from_secs(30), reading)
        .await
        .expect("the reader got every message")
        .unwrap();
    let (who, flow, at) = match closed_at {
        Some((_, at)) => (1, Flow::Stop, at),
        None => tokio::time::timeout(Duration::from_secs(5), ended_rx.recv())
            .await
            .expect("the stuck client's task ended")
            .unwrap(),
    };
    assert_eq!((who, flow), (1, Flow::Stop));
    // Its task ended on the hub's close, not on the engine's 30 s write deadline: at
    // most the 1 s `send_event` gives the close frame after the last publish.
    let late = at.saturating_duration_since(loop_end);
    assert!(
        late < Duration::from_secs(3),
        "ended {late:?} after the last publish"
    );
    eprintln!(
        "the stuck client's task ended (after message {:?} of {N}, or {late:?} after the last)",
        closed_at.map(|c| c.0)
    );
    drop((stuck.close(None), reader));
}
