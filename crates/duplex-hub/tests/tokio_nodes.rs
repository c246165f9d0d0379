//! duplex-tokio servers on two nodes sharing one real `redis-server`: WebSocket clients
//! on both get every message once, in order; clients of a node that dies resume on the
//! other without a gap or a repeat.
#![cfg(all(feature = "redis", feature = "tokio"))]

mod common;

use std::time::Duration;

use common::RedisServer;
use duplex_hub::tokio::{Flow, send_event};
use duplex_hub::{Framing, Hub, HubConfig, Message, Position, RedisConfig};
use duplex_tokio::{Acceptance, MaybeTlsStream, WebSocketStream};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

fn node(url: &str) -> Hub {
    let config = HubConfig {
        framing: Framing::Envelope,
        ..HubConfig::default()
    };
    let redis = RedisConfig {
        timeout: Duration::from_millis(300),
        sync_interval: Duration::from_millis(200),
        ..RedisConfig::new(url)
    };
    Hub::redis(config, redis).unwrap()
}

/// A node's server: `/?epoch=E&offset=O` resumes; text a client sends is published.
async fn start(hub: Hub) -> (u16, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            connections.spawn(serve(hub.clone(), tcp));
        }
    });
    (port, task)
}

async fn serve(hub: Hub, tcp: TcpStream) {
    let mut query = String::new();
    let Ok(mut ws) = duplex_tokio::accept_with(tcp, duplex_tokio::Config::default(), |req, _| {
        query = req.uri().query().unwrap_or("").to_owned();
        Ok(Acceptance::default())
    })
    .await
    else {
        return;
    };
    let mut sub = hub.subscriber();
    let resume = query.split_once('&').and_then(|(e, o)| {
        Some(Position {
            epoch: e.strip_prefix("epoch=")?.parse().ok()?,
            offset: o.strip_prefix("offset=")?.parse().ok()?,
        })
    });
    match resume {
        Some(after) => {
            sub.resume_async("room", after).await.unwrap();
        }
        None => {
            sub.subscribe_async("room").await.unwrap();
        }
    }
    let _ = ws.send(Message::text("ready")).await;
    loop {
        tokio::select! {
            incoming = ws.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    hub.publish_async("room", Message::Text(text)).await.unwrap();
                }
                Some(Ok(_)) => {}
                _ => return,
            },
            Some(event) = sub.recv() => match send_event(&mut ws, &sub, &event).await {
                Ok(Flow::Continue) => {}
                _ => return,
            }
        }
    }
}

type Client = WebSocketStream<MaybeTlsStream>;

async fn connect(port: u16, resume: Option<Position>) -> Client {
    let url = match resume {
        Some(p) => format!(
            "ws://127.0.0.1:{port}/?epoch={}&offset={}",
            p.epoch, p.offset
        ),
        None => format!("ws://127.0.0.1:{port}/"),
    };
    let (mut ws, _) = duplex_tokio::connect(&url).await.unwrap();
    let ready = ws.recv().await.unwrap().unwrap();
    assert_eq!(ready.as_text(), Some("ready"));
    ws
}

/// The next envelope: (position, data).
async fn next(ws: &mut Client) -> Option<(Position, String)> {
    let message = tokio::time::timeout(Duration::from_secs(5), ws.recv())
        .await
        .ok()??
        .ok()?;
    let text = message.as_text()?;
    let num = |key: &str| -> u64 {
        let at = text.find(key).unwrap() + key.len();
        text[at..]
            .split([',', '}'])
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let data = &text[text.find("\"data\":\"").unwrap() + 8..text.len() - 2];
    Some((
        Position {
            epoch: num("\"epoch\":"),
            offset: num("\"offset\":"),
        },
        data.to_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_two_nodes_get_every_message_once_and_resume_on_the_other_node() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, b) = (node(&redis.url()), node(&redis.url()));
    let (port_a, server_a) = start(a.clone()).await;
    let (port_b, _server_b) = start(b.clone()).await;
    let mut on_a = Vec::new();
    let mut on_b = Vec::new();
    for _ in 0..5 {
        on_a.push(connect(port_a, None).await);
        on_b.push(connect(port_b, None).await);
    }
    // A client on each node talks; everyone hears both, in one order.
    for i in 0..20 {
        on_a[0].send(Message::text(format!("a{i}"))).await.unwrap();
        on_b[0].send(Message::text(format!("b{i}"))).await.unwrap();
    }
    let mut orders = Vec::new();
    for ws in on_a.iter_mut().chain(on_b.iter_mut()) {
        let mut got = Vec::new();
        for expected in 1..=40 {
            let (p, data) = next(ws).await.expect("message");
            assert_eq!(p.offset, expected);
            got.push(data);
        }
        orders.push(got);
    }
    assert!(orders.windows(2).all(|w| w[0] == w[1]), "one order for all");
    let mut sorted = orders[0].clone();
    sorted.sort();
    let mut expected: Vec<String> = (0..20)
        .flat_map(|i| [format!("a{i}"), format!("b{i}")])
        .collect();
    expected.sort();
    assert_eq!(sorted, expected);

    // Node A dies (its server and connections end) while messages keep coming from B.
    let last_on_a = Position {
        epoch: next_epoch(&b),
        offset: 40,
    };
    server_a.abort();
    drop(a);
    for i in 20..40 {
        on_b[0].send(Message::text(format!("b{i}"))).await.unwrap();
    }
    // A's clients notice, reconnect to B with their position, and resume.
    for (k, ws) in on_a.iter_mut().enumerate() {
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match ws.recv().await {
                    Some(Ok(_)) => {}
                    _ => return,
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "the connection to node A ended");
        let mut moved = connect(port_b, Some(last_on_a)).await;
        // Everything after its position, including what earlier movers sent, once.
        for expected in 41..=60 + k as u64 {
            let (p, _) = next(&mut moved).await.expect("resumed message");
            assert_eq!(p.offset, expected);
        }
        on_b[0].send(Message::text("more")).await.unwrap();
        let (p, data) = next(&mut moved).await.unwrap();
        assert_eq!((p.offset, data.as_str()), (61 + k as u64, "more"));
        *ws = moved;
    }
    drop(redis);
}

fn next_epoch(hub: &Hub) -> u64 {
    hub.latest("room").unwrap().unwrap().epoch
}

/// The node process of the SIGKILL test (started by it, with the Redis URL in
/// `DUPLEX_HUB_TEST_NODE`); does nothing when run by hand.
#[test]
#[ignore = "a node process the SIGKILL test starts"]
fn node_process() {
    let Ok(url) = std::env::var("DUPLEX_HUB_TEST_NODE") else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (port, _server) = start(node(&url)).await;
        println!("node port {port}");
        // Ends when the parent kills it; never outlives a minute.
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_a_node_killed_mid_stream_resume_on_another_exactly_once() {
    use std::io::BufRead;
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // Node A is a process of its own, killed with SIGKILL below.
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "node_process",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("DUPLEX_HUB_TEST_NODE", redis.url())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    /// Kills the node process even if the test fails early.
    struct Node(std::process::Child);
    impl Drop for Node {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let mut child = Node(child);
    let port_a: u16 = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            // libtest prints "test node_process ... " on the same line.
            let at = l.find("node port ")?;
            l[at + 10..].trim().parse().ok()
        })
        .expect("node A's port");
    let (port_b, _server_b) = start(node(&redis.url())).await;
    let publisher = node(&redis.url());
    const TOTAL: u64 = 300;
    let mut clients = Vec::new();
    for _ in 0..5 {
        let mut ws = connect(port_a, None).await;
        clients.push(tokio::spawn(async move {
            let mut got = Vec::new();
            let mut moves = 0;
            let mut last: Option<Position> = None;
            while last.is_none_or(|p| p.offset < TOTAL) {
                match next(&mut ws).await {
                    Some((p, _)) => {
                        got.push(p.offset);
                        last = Some(p);
                    }
                    None => {
                        // Node A is gone: resume on node B after the last one seen.
                        moves += 1;
                        assert!(moves <= 1, "moved more than once");
                        ws = connect(port_b, last).await;
                    }
                }
            }
            (got, moves)
        }));
    }
    let publishing = tokio::spawn(async move {
        for i in 0..TOTAL {
            publisher
                .publish_async("room", Message::text(format!("m{i}")))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    publishing.await.unwrap();
    for c in clients {
        let (got, moves) = tokio::time::timeout(Duration::from_secs(20), c)
            .await
            .expect("client finished")
            .unwrap();
        assert_eq!(moves, 1, "the client moved to node B");
        assert_eq!(
            got,
            (1..=TOTAL).collect::<Vec<_>>(),
            "every message exactly once"
        );
    }
}
