//! 10,000 WebSocket clients (real connections over 127.0.0.1) across two duplex-tokio
//! nodes that share one real `redis-server`: every message published on node A reaches
//! every client on both nodes exactly once, in order.
#![cfg(all(feature = "redis", feature = "tokio"))]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::RedisServer;
use duplex_hub::tokio::{Flow, send_event};
use duplex_hub::{Framing, Hub, HubConfig, Message, RedisConfig};
use duplex_tokio::{MaybeTlsStream, WebSocketStream};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

const CLIENTS: usize = 10_000;
const MESSAGES: u64 = 10;

/// Raises the limit of open files to what a process of the test needs (one descriptor
/// per connection, and some), past the hard limit where the process may.
fn raise_open_files(want: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < want {
            // Raising the hard limit needs privilege (root in CI); else up to it.
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: limit.rlim_max.max(want),
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                limit.rlim_cur = want.min(limit.rlim_max);
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            }
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        }
    }
    limit.rlim_cur
}

fn node(url: &str) -> Hub {
    let config = HubConfig {
        framing: Framing::Envelope,
        ..HubConfig::default()
    };
    Hub::redis(config, RedisConfig::new(url)).unwrap()
}

/// A node's server: every connection follows topic `room`.
async fn start(hub: Hub) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(serve(hub.clone(), tcp));
        }
    });
    port
}

async fn serve(hub: Hub, tcp: TcpStream) {
    let Ok(mut ws) = duplex_tokio::accept(tcp).await else {
        return;
    };
    let mut sub = hub.subscriber();
    if sub.subscribe_async("room").await.is_err() {
        return;
    }
    let _ = ws.send(Message::text("ready")).await;
    loop {
        tokio::select! {
            incoming = ws.recv() => if !matches!(incoming, Some(Ok(_))) { return },
            Some(event) = sub.recv() => {
                if !matches!(send_event(&mut ws, &sub, &event).await, Ok(Flow::Continue)) {
                    return;
                }
            }
        }
    }
}

/// `{"topic":"room","epoch":E,"offset":O,"data":D}` → (E, O, D).
fn envelope(text: &str) -> Option<(u64, u64, &str)> {
    let number = |key: &str| -> Option<u64> {
        let at = text.find(key)? + key.len();
        text[at..].split([',', '}']).next()?.parse().ok()
    };
    let data = text.split_once(",\"data\":\"")?.1.strip_suffix("\"}")?;
    Some((number("\"epoch\":")?, number("\"offset\":")?, data))
}

/// One client: connects, says it is ready, then reads until "end"; returns the
/// (offset, data) of every message it got.
async fn client(
    port: u16,
    connecting: Arc<Semaphore>,
    ready: tokio::sync::mpsc::Sender<()>,
) -> Result<Vec<(u64, u64, String)>, String> {
    let mut ws: WebSocketStream<MaybeTlsStream> = {
        let _permit = connecting.acquire().await.unwrap();
        let (mut ws, _) = duplex_tokio::connect(&format!("ws://127.0.0.1:{port}/"))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        match ws.recv().await {
            Some(Ok(m)) if m.as_text() == Some("ready") => {}
            other => return Err(format!("no ready: {other:?}")),
        }
        ws
    };
    let _ = ready.send(()).await;
    let mut got = Vec::new();
    loop {
        let message = match ws.recv().await {
            Some(Ok(m)) => m,
            other => return Err(format!("ended early: {other:?}")),
        };
        let text = message.as_text().ok_or("not text")?;
        let (epoch, offset, data) = envelope(text).ok_or_else(|| format!("bad: {text}"))?;
        let end = data == "end";
        got.push((epoch, offset, data.to_owned()));
        if end {
            let _ = ws.close(None).await;
            return Ok(got);
        }
    }
}

/// The clients' side, a process of its own (so each process needs about 10,000
/// descriptors, not 20,000): started by the test below with the nodes' ports in
/// `DUPLEX_HUB_CLIENTS`; does nothing when run by hand.
#[test]
#[ignore = "the client process of the 10,000-client test"]
fn client_process() {
    let Ok(ports) = std::env::var("DUPLEX_HUB_CLIENTS") else {
        return;
    };
    let ports: Vec<u16> = ports.split(',').map(|p| p.parse().unwrap()).collect();
    let want = CLIENTS as u64 + 1024;
    let limit = raise_open_files(want);
    assert!(
        limit >= want,
        "{want} open files needed, the limit is {limit}"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let started = Instant::now();
        let connecting = Arc::new(Semaphore::new(256));
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(CLIENTS);
        let mut clients = tokio::task::JoinSet::new();
        for i in 0..CLIENTS {
            clients.spawn(client(
                ports[i % ports.len()],
                connecting.clone(),
                ready_tx.clone(),
            ));
        }
        drop(ready_tx);
        for n in 0..CLIENTS {
            if ready_rx.recv().await.is_none() {
                let failed = clients.join_next().await.unwrap().unwrap();
                println!("RESULT failed after {n} connected: {failed:?}");
                return;
            }
        }
        println!("CONNECTED {:.2}", started.elapsed().as_secs_f64());
        let mut first: Option<Vec<(u64, u64, String)>> = None;
        let mut done = 0;
        while let Some(joined) = clients.join_next().await {
            let got = match joined.unwrap() {
                Ok(got) => got,
                Err(e) => {
                    println!("RESULT failed: {e}");
                    return;
                }
            };
            match &first {
                None => first = Some(got),
                Some(f) if *f != got => {
                    println!("RESULT failed: clients differ: {f:?} vs {got:?}");
                    return;
                }
                Some(_) => {}
            }
            done += 1;
        }
        let got = first.unwrap_or_default();
        let offsets: Vec<String> = got.iter().map(|(_, o, _)| o.to_string()).collect();
        let data: Vec<&str> = got.iter().map(|(_, _, d)| d.as_str()).collect();
        println!(
            "RESULT {done} epoch {} offsets {} data {}",
            got.first().map_or(0, |g| g.0),
            offsets.join(","),
            data.join(",")
        );
    });
}

#[test]
fn ten_thousand_websocket_clients_on_two_nodes_get_every_message_once_in_order() {
    use std::io::BufRead;
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let want = CLIENTS as u64 + 1024;
    let limit = raise_open_files(want);
    assert!(
        limit >= want,
        "{want} open files needed, the limit is {limit}"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (a, b) = (node(&redis.url()), node(&redis.url()));
    let ports = runtime.block_on(async { [start(a.clone()).await, start(b).await] });
    let started = Instant::now();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "client_process",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("DUPLEX_HUB_CLIENTS", format!("{},{}", ports[0], ports[1]))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    /// Ends the client process even if the test fails early.
    struct Clients(std::process::Child);
    impl Drop for Clients {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let _child = Clients(child);
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    // libtest may print "test client_process ... " on the same line.
    let next = |what: &str| -> String {
        loop {
            let line = lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no {what} line from the client process in 60 s"));
            if let Some(at) = line.find("RESULT failed") {
                panic!("client process: {}", &line[at..]);
            }
            if let Some(at) = line.find(what) {
                return line[at + what.len()..].trim().to_owned();
            }
        }
    };
    let connect_secs = next("CONNECTED");
    assert_eq!(
        a.topics(),
        1,
        "node A follows the topic (its clients subscribed)"
    );

    // Published on node A only; node B's clients get them through Redis.
    let published = Instant::now();
    let mut positions = Vec::new();
    let mut data = Vec::new();
    for i in 0..MESSAGES {
        let text = if i + 1 == MESSAGES {
            "end".to_owned()
        } else {
            format!("m{i}")
        };
        positions.push(a.publish("room", Message::text(text.clone())).unwrap());
        data.push(text);
    }
    let result = next("RESULT");
    let delivered = published.elapsed();
    let offsets: Vec<String> = positions.iter().map(|p| p.offset.to_string()).collect();
    assert_eq!(
        offsets,
        (1..=MESSAGES).map(|o| o.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(
        result,
        format!(
            "{CLIENTS} epoch {} offsets {} data {}",
            positions[0].epoch,
            offsets.join(","),
            data.join(",")
        ),
        "every client got every message exactly once, in order"
    );
    println!(
        "TEN-THOUSAND | {CLIENTS} WebSocket clients (another process) on 2 nodes connected in \
         {connect_secs} s; {MESSAGES} messages published on node A reached every one of them \
         once, in order, {:.2} s after the first publish; whole test {:.1} s",
        delivered.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    drop(runtime);
    drop(redis);
}
