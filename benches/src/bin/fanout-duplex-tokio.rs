//! A duplex-tokio fan-out server for `cargo xtask load --fanout`: `fanout-duplex-tokio
//! [ADDR]` (default 127.0.0.1:0) prints `listening on ADDR` as its first line. Every
//! text or binary message a connection sends is encoded once (`PreparedMessage`) and
//! queued to every connection, the sender included, each of which writes it from its
//! own task (`send_prepared`). permessage-deflate is accepted when offered (the default
//! policy, no server context takeover).
//!
//! Same shape as the tokio-tungstenite fan-out peer (`fanout-tungstenite`): tokio's
//! default runtime, one task per connection, an unbounded channel per connection in a
//! shared list.

use std::sync::{Arc, Mutex};

use duplex_tokio::{Acceptance, Config, PreparedMessage, accept_with};
use tokio::sync::mpsc;

type Subscribers = Arc<Mutex<Vec<(u64, mpsc::UnboundedSender<Arc<PreparedMessage>>)>>>;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let subscribers: Subscribers = Arc::default();
    let next_id = Arc::new(std::sync::atomic::AtomicU64::new(0));
    duplex_benches::serve_each(move |tcp| {
        let subscribers = subscribers.clone();
        let id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async move {
            let Ok(mut ws) =
                accept_with(tcp, Config::default(), |_, _| Ok(Acceptance::default())).await
            else {
                return;
            };
            let (tx, mut rx) = mpsc::unbounded_channel();
            subscribers.lock().unwrap().push((id, tx));
            loop {
                tokio::select! {
                    received = ws.recv() => {
                        let Some(Ok(message)) = received else { break };
                        if !message.is_data() {
                            continue;
                        }
                        let Ok(prepared) = PreparedMessage::new(message) else { break };
                        let prepared = Arc::new(prepared);
                        for (_, tx) in subscribers.lock().unwrap().iter() {
                            let _ = tx.send(prepared.clone());
                        }
                    }
                    queued = rx.recv() => {
                        let Some(prepared) = queued else { break };
                        if ws.send_prepared(&prepared).await.is_err() {
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
