//! The hub from `duplex-tokio` connections (feature `tokio`).
//!
//! A per-connection task owns a [`Subscriber`] and its
//! `WebSocketStream`, and waits on both in `select!`:
//!
//! ```no_run
//! use duplex_hub::tokio::{Flow, send_event};
//! use duplex_hub::{Hub, Message};
//! use duplex_tokio::WebSocketStream;
//! use tokio::net::TcpStream;
//!
//! async fn serve(hub: Hub, mut ws: WebSocketStream<TcpStream>) -> Result<(), duplex_tokio::Error> {
//!     let mut sub = hub.subscriber();
//!     // With Redis, a round trip when the topic is new on this node: awaited.
//!     let _ = sub.subscribe_async("room").await;
//!     loop {
//!         tokio::select! {
//!             incoming = ws.recv() => match incoming {
//!                 Some(Ok(Message::Text(text))) => {
//!                     // One round trip to Redis on its async connection.
//!                     let _ = hub.publish_async("room", Message::Text(text)).await;
//!                 }
//!                 Some(Ok(_)) => {}
//!                 Some(Err(e)) => return Err(e),
//!                 None => return Ok(()),
//!             },
//!             Some(event) = sub.recv() => {
//!                 if send_event(&mut ws, &sub, &event).await? == Flow::Stop {
//!                     return Ok(());
//!                 }
//!             }
//!         }
//!     }
//! }
//! ```
//!
//! This lives in `duplex-hub` (with `duplex-tokio` as an optional dependency) rather
//! than in `duplex-tokio`, so the adapter does not depend on the hub and its Redis
//! client; `ARCHITECTURE.md` says why.

use duplex_core::{CloseFrame, Error, Message, Utf8Bytes};
use duplex_tokio::WebSocketStream;
use tokio::io::{AsyncRead, AsyncWrite};

pub use crate::notice_json;
use crate::{Event, Hub, HubError, Position, Subscriber};

/// Whether the connection goes on after [`send_event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep serving.
    Continue,
    /// The subscriber was closed by its slow-consumer policy and the connection is
    /// closing: stop sending; keep reading until `recv` ends to finish the close.
    Stop,
}

/// Publishes from async code: [`Hub::publish_async`] (with the Redis backend, one
/// round trip on `redis`'s async connection; no thread waits).
pub async fn publish(hub: &Hub, topic: &str, message: Message) -> Result<Position, HubError> {
    hub.publish_async(topic, message).await
}

/// Sends one event of `sub` on `ws`: a message with `send_prepared` (its frame is
/// shared with every other local subscriber), a notice as the JSON text of
/// [`notice_json`], and [`Event::Closed`] as a close frame with its code.
///
/// While a send waits (the client stopped reading and the connection's write buffer is
/// full), the subscriber's queue keeps filling; when its policy closes it, the send is
/// abandoned and the connection closed with the policy's code at once (the engine's
/// close deadline then ends it), rather than after the write deadline.
pub async fn send_event<S: AsyncRead + AsyncWrite>(
    ws: &mut WebSocketStream<S>,
    sub: &Subscriber,
    event: &Event,
) -> Result<Flow, Error> {
    let code = match event {
        Event::Message(d) => {
            ::tokio::select! {
                sent = ws.send_prepared(&d.message) => return sent.map(|()| Flow::Continue),
                code = sub.closed() => code,
            }
        }
        Event::Closed(code) => *code,
        other => {
            let Some(text) = notice_json(other) else {
                return Ok(Flow::Continue);
            };
            ::tokio::select! {
                sent = ws.send(Message::text(text)) => return sent.map(|()| Flow::Continue),
                code = sub.closed() => code,
            }
        }
    };
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static("slow consumer"),
    };
    // The close frame waits behind what is already queued; the close deadline bounds it.
    let _ = ::tokio::time::timeout(CLOSE_WAIT, ws.close(Some(frame))).await;
    Ok(Flow::Stop)
}

/// How long [`send_event`] waits for a slow consumer's close frame to be queued.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Loss;

    #[test]
    fn notices_are_json() {
        let e = Event::NotRecovered {
            topic: "a\"b".into(),
            after: Some(Position {
                epoch: 3,
                offset: 9,
            }),
            resumed: None,
            reason: Loss::EpochChanged,
        };
        assert_eq!(
            notice_json(&e).unwrap(),
            r#"{"topic":"a\"b","lost":"epoch_changed","after":{"epoch":3,"offset":9},"resumed":null}"#
        );
        let e = Event::Lagged {
            topic: "t".into(),
            epoch: 1,
            first: 2,
            last: 5,
        };
        assert_eq!(
            notice_json(&e).unwrap(),
            r#"{"topic":"t","lagged":{"epoch":1,"first":2,"last":5}}"#
        );
    }
}
