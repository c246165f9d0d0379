//! Two `duplex-mio` servers whose topics span nodes through a hub on a real
//! `redis-server`: clients on both get every message once, in one order.
#![cfg(all(feature = "redis", feature = "mio"))]

mod common;

use std::time::{Duration, Instant};

use common::RedisServer;
use duplex_hub::mio::Bridge;
use duplex_hub::{Framing, Hub, HubConfig, Message, RedisConfig};
use duplex_mio::http::Request;
use duplex_mio::{Acceptance, ClientOffer, Context, Handler, Rejection, Server, ServerConfig};

struct Room(Bridge);

impl Handler for Room {
    fn on_open(
        &mut self,
        ctx: &mut Context<'_>,
        _request: &Request<()>,
        _offer: &ClientOffer,
    ) -> Result<Acceptance, Rejection> {
        assert!(self.0.subscribe(ctx, "room"));
        Ok(Acceptance::default())
    }

    fn on_message(&mut self, _ctx: &mut Context<'_>, message: Message) {
        self.0.publish("room", message).unwrap();
    }
}

fn start(
    url: &str,
) -> (
    u16,
    Hub,
    duplex_mio::ShutdownHandle,
    std::thread::JoinHandle<()>,
) {
    let config = HubConfig {
        framing: Framing::Envelope,
        ..HubConfig::default()
    };
    let hub = Hub::redis(config, RedisConfig::new(url)).unwrap();
    let server = Server::bind("127.0.0.1:0", ServerConfig::default()).unwrap();
    let port = server.local_addr().unwrap().port();
    let shutdown = server.shutdown_handle();
    let bridge = Bridge::new(hub.clone(), server.sender());
    let thread = std::thread::spawn(move || server.run(|_| Room(bridge.clone())).unwrap());
    (port, hub, shutdown, thread)
}

#[test]
fn mio_servers_on_two_nodes_share_a_room() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (port_a, hub_a, stop_a, thread_a) = start(&redis.url());
    let (port_b, hub_b, stop_b, thread_b) = start(&redis.url());
    let mut clients: Vec<_> = (0..6)
        .map(|i| {
            let port = if i % 2 == 0 { port_a } else { port_b };
            let mut ws = duplex_mio::client::connect(&format!("ws://127.0.0.1:{port}/")).unwrap();
            ws.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            ws
        })
        .collect();
    // Each node follows the room once its relay has subscribed.
    let deadline = Instant::now() + Duration::from_secs(5);
    while hub_a.topics() == 0 || hub_b.topics() == 0 {
        assert!(Instant::now() < deadline, "relays did not subscribe");
        std::thread::sleep(Duration::from_millis(5));
    }
    for i in 0..10 {
        clients[0].send(format!("a{i}")).unwrap();
        clients[1].send(format!("b{i}")).unwrap();
    }
    let mut orders = Vec::new();
    for ws in &mut clients {
        let mut got = Vec::new();
        for offset in 1..=20u64 {
            let m = ws.recv().unwrap();
            let text = m.as_text().unwrap().to_owned();
            assert!(text.contains(&format!("\"offset\":{offset},")), "{text}");
            got.push(text);
        }
        orders.push(got);
    }
    assert!(
        orders.windows(2).all(|w| w[0] == w[1]),
        "one order everywhere"
    );
    for ws in &mut clients {
        let _ = ws.close(None);
    }
    stop_a.shutdown();
    stop_b.shutdown();
    thread_a.join().unwrap();
    thread_b.join().unwrap();
}
