//! A duplex-tokio fan-out server for `cargo xtask load --fanout`: `fanout-duplex-tokio
//! [ADDR]` (default 127.0.0.1:0) prints `listening on ADDR` as its first line. Every
//! text or binary message a connection sends is encoded once (`PreparedMessage`) and
//! written to every connection, the sender included, from the task that received it:
//! each connection's writer half sits in a shared list and takes the message with
//! `try_send_prepared`, which queues it and writes what the socket takes at once (the
//! rest leaves with the connection's own task, which keeps reading). A subscriber whose
//! write buffer is full (it stopped reading) is dropped from the list instead of being
//! waited for. permessage-deflate is accepted when offered (the default policy, no
//! server context takeover).
//!
//! tokio's default runtime, one task per connection (reading), like the other fan-out
//! servers.

use std::sync::{Arc, Mutex};

use duplex_tokio::{Acceptance, Config, PreparedMessage, TrySendError, WsWriter, accept_with};
use tokio::net::TcpStream;

type Subscribers = Arc<Mutex<Vec<(u64, WsWriter<TcpStream>)>>>;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let subscribers: Subscribers = Arc::default();
    let next_id = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let config = Config::default();
    duplex_benches::serve_each(move |tcp| {
        let subscribers = subscribers.clone();
        let id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let accepting = accept_with(tcp, config.clone(), |_, _| Ok(Acceptance::default()));
        async move {
            let Ok(ws) = accepting.await else {
                return;
            };
            let (mut reader, writer) = ws.split();
            subscribers.lock().unwrap().push((id, writer));
            loop {
                let Some(Ok(message)) = reader.recv().await else {
                    break;
                };
                if !message.is_data() {
                    continue;
                }
                let Ok(prepared) = PreparedMessage::new(message) else {
                    break;
                };
                subscribers.lock().unwrap().retain_mut(|(_, writer)| {
                    match writer.try_send_prepared(&prepared) {
                        Ok(()) => true,
                        // Too slow (or gone): dropped, not waited for.
                        Err(TrySendError::WriteBufferFull { .. } | TrySendError::Error(_)) => false,
                        Err(_) => false,
                    }
                });
            }
            subscribers
                .lock()
                .unwrap()
                .retain(|(other, _)| *other != id);
        }
    })
    .await
}
