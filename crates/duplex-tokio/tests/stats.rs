//! `ServerStats`: counters of a server's connections, read while they run and after.

use std::time::{Duration, Instant};

use duplex_tokio::{CloseCode, CloseFrame, Message, ServerStats, accept, connect};
use tokio::net::TcpListener;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);

async fn wait_until(
    stats: &ServerStats,
    what: &str,
    done: impl Fn(&duplex_tokio::StatsSnapshot) -> bool,
) {
    let start = Instant::now();
    while !done(&stats.snapshot()) {
        assert!(start.elapsed() < LIMIT, "{what}: {:?}", stats.snapshot());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn counts_connections_messages_bytes_and_closes() {
    let stats = ServerStats::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let server = stats.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let server = server.clone();
            tokio::spawn(async move {
                let mut ws = accept(tcp).await.unwrap();
                server.attach(&ws);
                while let Some(Ok(message)) = ws.recv().await {
                    if message.is_data() && ws.send(message).await.is_err() {
                        break;
                    }
                }
            });
        }
    });

    let (mut a, _) = connect(&url).await.unwrap();
    let (mut b, _) = connect(&url).await.unwrap();
    for i in 0..3 {
        let mut x = 0x9e37_79b9_u32 + i;
        let noise: Vec<u8> = (0..1000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        a.send(Message::binary(noise)).await.unwrap();
        timeout(LIMIT, a.recv()).await.unwrap().unwrap().unwrap();
    }
    b.send(Message::text("x")).await.unwrap();
    timeout(LIMIT, b.recv()).await.unwrap().unwrap().unwrap();
    wait_until(&stats, "two open", |s| s.open == 2).await;
    let now = stats.snapshot();
    assert_eq!(
        (now.opened, now.messages_received, now.messages_sent),
        (2, 4, 4)
    );
    assert!(
        now.bytes_received > 3000 && now.bytes_sent > 3000,
        "{now:?}"
    );

    // One closes properly with 1000, the other vanishes without a close.
    a.close(Some(CloseFrame::new(CloseCode::Normal, "")))
        .await
        .unwrap();
    drop(b);
    wait_until(&stats, "both closed", |s| s.open == 0).await;
    let end = stats.snapshot();
    assert_eq!(end.closes_received.get(&1000), Some(&1), "{end:?}");
    assert_eq!(end.closes_sent.get(&1000), Some(&1), "{end:?}");
    assert_eq!(end.closed_without_close_frame, 1, "{end:?}");
}
