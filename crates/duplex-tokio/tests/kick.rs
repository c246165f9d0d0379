//! A slow consumer kicked with `close_now` learns why at once: its close frame overtakes
//! the megabyte queued for it. 127.0.0.1 only.

use std::time::{Duration, Instant};

use duplex_tokio::{CloseCode, CloseFrame, Message, accept, connect};
use tokio::net::TcpListener;

#[tokio::test]
async fn a_kicked_slow_consumer_gets_its_close_code_within_a_second() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let client = tokio::spawn(async move { connect(&url).await.unwrap().0 });
    let (tcp, _) = listener.accept().await.unwrap();
    let mut server = accept(tcp).await.unwrap();
    let mut client = client.await.unwrap();

    // The client reads nothing: fill the kernel's buffers, then 1 MiB in our queue.
    // Incompressible: permessage-deflate is on by default.
    let chunk = Message::binary(wire_kit::noise(64 << 10, 7));
    let mut sent = 0usize;
    for _ in 0..10_000 {
        if server.buffered_amount() >= 1 << 20 {
            break;
        }
        match server.try_send(chunk.clone()) {
            Ok(()) => sent += 1,
            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
    assert!(
        server.buffered_amount() >= 1 << 20,
        "queued {} ({sent} sent), {:?}",
        server.buffered_amount(),
        server.state()
    );
    let handle = server.close_handle();
    let kicked = Instant::now();
    handle.close_now(CloseFrame::new(CloseCode::PolicyViolation, "too slow"));
    let server_task = tokio::spawn(async move {
        // The server keeps driving its side: the close goes out, then the close timeout.
        while let Some(Ok(_)) = server.recv().await {}
    });

    // The client now reads: what the kernel held and the frame being written, then the
    // close frame, not the megabyte that was queued behind it.
    let mut received = 0usize;
    let close = loop {
        let event = tokio::time::timeout(Duration::from_secs(5), client.recv())
            .await
            .expect("the close frame came")
            .expect("the connection is open")
            .expect("no error");
        match event {
            Message::Binary(data) => {
                assert_eq!(data.len(), 64 << 10, "only whole messages arrive");
                received += 1;
            }
            Message::Close(frame) => break frame,
            other => panic!("unexpected {other:?}"),
        }
    };
    let took = kicked.elapsed();
    let frame = close.expect("a close code");
    assert_eq!(frame.code, CloseCode::PolicyViolation);
    assert_eq!(frame.reason, "too slow");
    assert!(
        received < sent,
        "the queued messages were dropped ({received} of {sent} arrived)"
    );
    assert!(
        took < Duration::from_secs(1),
        "the close frame took {took:?}"
    );
    println!(
        "KICK | tokio | close 1008 received {:.0} ms after close_now; {received} of {sent} \
         messages of 64 KiB arrived",
        took.as_secs_f64() * 1000.0
    );
    tokio::time::timeout(Duration::from_secs(10), server_task)
        .await
        .unwrap()
        .unwrap();
}
