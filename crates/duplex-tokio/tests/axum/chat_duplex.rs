use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::any;
use duplex_tokio::axum::{Message, WebSocket, WebSocketUpgrade};
use futures::StreamExt;
use tokio::sync::broadcast;

pub fn app() -> Router {
    let (lines, _) = broadcast::channel::<String>(64);
    // `any`, not `get`: over HTTP/2 a WebSocket is opened with CONNECT.
    Router::new().route("/chat", any(join)).with_state(lines)
}

async fn join(ws: WebSocketUpgrade, State(lines): State<broadcast::Sender<String>>) -> Response {
    ws.on_upgrade(move |socket| talk(socket, lines))
}

async fn talk(socket: WebSocket, lines: broadcast::Sender<String>) {
    let (mut receiver, mut sender) = socket.split();
    let name = loop {
        match receiver.next().await {
            Some(Ok(Message::Text(name))) => break name.as_str().to_owned(),
            Some(Ok(_)) => continue,
            _ => return,
        }
    };
    let mut heard = lines.subscribe();
    let _ = lines.send(format!("{name} joined"));
    let mut forward = tokio::spawn(async move {
        while let Ok(line) = heard.recv().await {
            if sender.send(Message::text(line)).await.is_err() {
                break;
            }
        }
    });
    loop {
        tokio::select! {
            _ = &mut forward => break,
            message = receiver.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    let _ = lines.send(format!("{name}: {}", text.as_str()));
                }
                Some(Ok(_)) => {}
                _ => break,
            },
        }
    }
    forward.abort();
    let _ = lines.send(format!("{name} left"));
}
