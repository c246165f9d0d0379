//! A quote ticker on the hub: every WebSocket client gets every quote of the topic, on
//! one node or on several sharing one Redis.
//!
//! ```text
//! cargo run --release -p duplex-hub --features tokio,redis --example hub-ticker -- \
//!     [ADDR] [--redis redis://127.0.0.1:6379/] [--rate N] [--quiet]
//! ```
//!
//! (default `127.0.0.1:8091`, 10 quotes per second; `--rate 0` publishes none, so a
//! node only relays). It prints `listening on ADDR`. Connect to
//! `ws://ADDR/?topic=quotes`; add `&epoch=E&offset=O` to resume after the last quote a
//! client saw (on this node or another). Each quote is a text message in the hub's
//! envelope: `{"topic":"quotes","epoch":E,"offset":O,"data":"{\"node\":...,\"ts\":...}"}`
//! (`ts`: publish time in microseconds since the Unix epoch); a client that cannot be
//! resumed gets a notice `{"topic":"quotes","lost":REASON,...}` first. Two instances
//! on two ports with the same `--redis` act as one service: a client on either gets
//! the quotes published by both.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use duplex_hub::tokio::{Flow, notice_json, send_event};
use duplex_hub::{
    Framing, Hub, HubConfig, MemoryBackend, MemoryConfig, Message, Position, Resumed,
};
use duplex_tokio::{Acceptance, WebSocketStream};
use tokio::net::{TcpListener, TcpStream};

const SYMBOLS: [&str; 8] = [
    "AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "META", "TSLA", "ORCL",
];

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut addr = "127.0.0.1:8091".to_owned();
    let mut redis = None;
    let mut rate = 10.0_f64;
    let mut quiet = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--redis" => redis = args.next(),
            "--rate" => rate = args.next().and_then(|r| r.parse().ok()).unwrap_or(rate),
            "--quiet" => quiet = true,
            other => addr = other.to_owned(),
        }
    }
    let config = HubConfig {
        framing: Framing::Envelope,
        ..HubConfig::default()
    };
    let hub = match &redis {
        Some(url) => Hub::redis(config, duplex_hub::RedisConfig::new(url.as_str()))
            .map_err(std::io::Error::other)?,
        None => Hub::with_backend(
            config,
            std::sync::Arc::new(MemoryBackend::new(MemoryConfig::default())),
        ),
    };
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    if rate > 0.0 {
        tokio::spawn(publish(
            hub.clone(),
            rate,
            listener.local_addr()?.port(),
            quiet,
        ));
    }
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        tokio::spawn(serve(hub.clone(), tcp));
    }
}

/// Publishes a quote every `1/rate` s; a failed publish (Redis away) is reported and
/// skipped, never queued.
async fn publish(hub: Hub, rate: f64, node: u16, quiet: bool) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut n = 0u64;
    loop {
        tick.tick().await;
        n += 1;
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        let sym = SYMBOLS[(n % SYMBOLS.len() as u64) as usize];
        let px = 100.0 + (n % 1000) as f64 / 10.0;
        let quote = format!(r#"{{"node":{node},"n":{n},"ts":{ts},"sym":"{sym}","px":{px:.2}}}"#);
        if let Err(e) = hub.publish_async("quotes", Message::text(quote)).await {
            if !quiet {
                eprintln!("publish failed: {e}");
            }
        }
    }
}

/// `?topic=T[&epoch=E&offset=O]`.
fn parse_query(query: &str) -> (String, Option<Position>) {
    let mut topic = "quotes".to_owned();
    let (mut epoch, mut offset) = (None, None);
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("topic", t)) if !t.is_empty() => topic = t.to_owned(),
            Some(("epoch", e)) => epoch = e.parse().ok(),
            Some(("offset", o)) => offset = o.parse().ok(),
            _ => {}
        }
    }
    let position = epoch
        .zip(offset)
        .map(|(epoch, offset)| Position { epoch, offset });
    (topic, position)
}

async fn serve(hub: Hub, tcp: TcpStream) {
    let mut query = String::new();
    let accepted = duplex_tokio::accept_with(tcp, duplex_tokio::Config::default(), |req, _| {
        query = req.uri().query().unwrap_or("").to_owned();
        Ok(Acceptance::default())
    })
    .await;
    let Ok(ws) = accepted else { return };
    let _ = run(hub, ws, &query).await;
}

async fn run(
    hub: Hub,
    mut ws: WebSocketStream<TcpStream>,
    query: &str,
) -> Result<(), duplex_tokio::Error> {
    let (topic, resume) = parse_query(query);
    let mut sub = hub.subscriber();
    let resumed = match resume {
        Some(after) => sub.resume_async(&topic, after).await,
        None => sub
            .subscribe_async(&topic)
            .await
            .map(|_| Resumed::Recovered(0)),
    };
    match resumed {
        Ok(Resumed::Recovered(_)) => {}
        Ok(Resumed::NotRecovered(reason)) => {
            let notice = duplex_hub::Event::NotRecovered {
                topic: topic.as_str().into(),
                after: resume,
                resumed: hub.latest(&topic).ok().flatten(),
                reason,
            };
            if let Some(text) = notice_json(&notice) {
                ws.send(Message::text(text)).await?;
            }
        }
        Err(_) => return ws.close(None).await,
    }
    loop {
        tokio::select! {
            incoming = ws.recv() => match incoming {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            },
            Some(event) = sub.recv() => {
                if send_event(&mut ws, &sub, &event).await? == Flow::Stop {
                    // Finish the close handshake.
                    while let Some(Ok(_)) = ws.recv().await {}
                    return Ok(());
                }
            }
        }
    }
}
