//! A tokio-tungstenite fan-out server for `cargo xtask load --fanout`:
//! `fanout-tungstenite [ADDR]` (default 127.0.0.1:0) prints `listening on ADDR` as its
//! first line. Every text or binary message a connection sends is queued to every
//! connection, the sender included (the payload is shared, `Bytes`), each of which
//! writes it from its own task: the usual tokio send loop. No permessage-deflate
//! (tokio-tungstenite 0.30 has none).

use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tungstenite::Message;

type Subscribers = Arc<Mutex<Vec<(u64, mpsc::UnboundedSender<Message>)>>>;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let subscribers: Subscribers = Arc::default();
    let next_id = Arc::new(std::sync::atomic::AtomicU64::new(0));
    duplex_benches::serve_each(move |tcp| {
        let subscribers = subscribers.clone();
        let id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async move {
            let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            let (mut sink, mut stream) = ws.split();
            let (tx, mut rx) = mpsc::unbounded_channel();
            subscribers.lock().unwrap().push((id, tx));
            loop {
                tokio::select! {
                    received = stream.next() => {
                        let Some(Ok(message)) = received else { break };
                        if !(message.is_text() || message.is_binary()) {
                            continue;
                        }
                        for (_, tx) in subscribers.lock().unwrap().iter() {
                            let _ = tx.send(message.clone());
                        }
                    }
                    queued = rx.recv() => {
                        let Some(message) = queued else { break };
                        if sink.send(message).await.is_err() {
                            break;
                        }
                    }
                }
            }
            subscribers
                .lock()
                .unwrap()
                .retain(|(other, _)| *other != id);
        }
    })
    .await
}
