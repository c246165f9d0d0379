//! `deflate-memory`: what permessage-deflate costs a server connection, per policy.
//!
//! For each policy (a `DeflateConfig`, negotiated against a browser-like offer,
//! `permessage-deflate; client_max_window_bits`), it opens N server connections of
//! duplex-core in memory, each with its own client connection, exchanges M text messages
//! each way (client to server, server's reply to client, every one compressed), drops
//! the clients and counts the bytes the servers still hold, `Connection` structs included (a counting global
//! allocator: exact, no RSS noise): once right after the exchange ("active") and once
//! after `shrink_buffers`, which duplex-tokio and duplex-mio call when a connection's
//! input is drained ("idle"). It also sums the bytes on the wire in each direction for
//! the ticker and chat payloads, so the ratio each policy gives up is next to the memory
//! it saves. Prints a markdown table; `--connections N` (default 1000), `--messages M`
//! (default 32). First it prepares 10,000 compressed broadcast messages and shows that
//! the compressor state does not grow with them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use duplex_benches::{chat_message, ticker_quotes};
use duplex_core::{Connection, DeflateParams, EngineConfig, Message, Role};
use duplex_handshake::{DeflateConfig, DeflateNegotiation};

/// The system allocator, counting the bytes currently allocated.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
/// The most ever allocated at once, since the last `reset_peak`.
static PEAK: AtomicIsize = AtomicIsize::new(0);

fn grew(by: isize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn reset_peak() {
    PEAK.store(live(), Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; only a counter is updated.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grew(new_size as isize - layout.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Moves everything `from` has to send into `to`; returns the bytes moved.
fn transfer(from: &mut Connection, to: &mut Connection) -> usize {
    let mut moved = 0;
    while from.output_len() > 0 {
        let chunk = from.pending_output();
        let n = chunk.len();
        to.receive(chunk);
        from.consume_output(n);
        moved += n;
    }
    moved
}

struct Row {
    active: f64,
    idle: f64,
    /// (payload bytes, wire bytes) client to server and server to client.
    up: (usize, usize),
    down: (usize, usize),
}

fn measure(
    params: DeflateParams,
    connections: usize,
    messages: usize,
    payload: &dyn Fn(usize) -> String,
) -> Row {
    let now = Instant::now();
    let mut up = (0, 0);
    let mut down = (0, 0);
    let before = live();
    // The Vec holds the `Connection`s themselves: counted as theirs.
    let mut servers = Vec::with_capacity(connections);
    for i in 0..connections {
        let mut server = Connection::new(Role::Server, EngineConfig::default());
        let mut client = Connection::new(Role::Client, EngineConfig::default());
        server.enable_deflate(params);
        client.enable_deflate(params);
        for k in 0..messages {
            let text = payload(i * messages + k);
            up.0 += text.len();
            client.send(Message::text(text)).expect("client send");
            up.1 += transfer(&mut client, &mut server);
            let got = server.poll_event(now).expect("a message").expect("valid");
            let reply = payload(i * messages + k + 7);
            down.0 += reply.len();
            drop(got);
            server.send(Message::text(reply)).expect("server send");
            down.1 += transfer(&mut server, &mut client);
            let echoed = client.poll_event(now).expect("a reply").expect("valid");
            drop(echoed);
        }
        drop(client);
        servers.push(server);
    }
    let active = (live() - before) as f64 / connections as f64;
    for server in &mut servers {
        server.shrink_buffers();
    }
    let idle = (live() - before) as f64 / connections as f64;
    drop(servers);
    Row {
        active,
        idle,
        up,
        down,
    }
}

fn main() {
    let mut connections = 1000;
    let mut messages = 32;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = args.next().and_then(|v| v.parse().ok());
        match (a.as_str(), value) {
            ("--connections", Some(n)) => connections = n,
            ("--messages", Some(n)) => messages = n,
            _ => {
                eprintln!("usage: deflate-memory [--connections N] [--messages M]");
                std::process::exit(2);
            }
        }
    }
    let policies: [(&str, DeflateConfig); 5] = [
        (
            "context takeover both ways, 15-bit windows (`DeflateConfig::default()`)",
            DeflateConfig {
                server_no_context_takeover: false,
                client_no_context_takeover: false,
                server_max_window_bits: 15,
                client_max_window_bits: 15,
            },
        ),
        (
            "context takeover both ways, 12-bit windows",
            DeflateConfig {
                server_no_context_takeover: false,
                client_no_context_takeover: false,
                server_max_window_bits: 12,
                client_max_window_bits: 12,
            },
        ),
        (
            "server_no_context_takeover, 15-bit windows (duplex-tokio's and duplex-mio's default)",
            DeflateConfig {
                server_no_context_takeover: true,
                client_no_context_takeover: false,
                server_max_window_bits: 15,
                client_max_window_bits: 15,
            },
        ),
        (
            "server_no_context_takeover, client window 12 bits",
            DeflateConfig {
                server_no_context_takeover: true,
                client_no_context_takeover: false,
                server_max_window_bits: 15,
                client_max_window_bits: 12,
            },
        ),
        (
            "no context takeover either way",
            DeflateConfig {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_max_window_bits: 15,
                client_max_window_bits: 15,
            },
        ),
    ];
    // First, while this thread has no shared compressor yet, so that its cost shows;
    // then ten times as many, which must cost nothing more.
    prepared_broadcast(1_000);
    prepared_broadcast(10_000);
    println!();
    let offer = ["permessage-deflate; client_max_window_bits".to_string()];
    let ticker = |seed: usize| ticker_quotes(4, seed);
    let chat = |seed: usize| chat_message(seed);
    println!(
        "{connections} server connections, {messages} messages each way per connection \
         (offer: `{}`)\n",
        offer[0]
    );
    println!(
        "| server policy (response) | heap per connection, active: ticker / chat | after `shrink_buffers`: ticker / chat | ratio, ticker: server→client / client→server | ratio, chat: server→client / client→server |"
    );
    println!("| --- | ---: | ---: | ---: | ---: |");
    let kib = |b: f64| format!("{:.1} KiB", b / 1024.0);
    let ratio = |(payload, wire): (usize, usize)| format!("{:.2}", payload as f64 / wire as f64);
    for (name, policy) in policies {
        let (params, response) = policy.negotiate(&offer).expect("the offer is acceptable");
        let t = measure(params, connections, messages, &ticker);
        let c = measure(params, connections, messages, &chat);
        println!(
            "| {name} (`{response}`) | {} / {} | {} / {} | {} / {} | {} / {} |",
            kib(t.active),
            kib(c.active),
            kib(t.idle),
            kib(c.idle),
            ratio(t.down),
            ratio(t.up),
            ratio(c.down),
            ratio(c.up),
        );
    }
    let none = measure_plain(connections, messages, &ticker);
    println!(
        "| no compression | {} | {} | 1.00 / 1.00 | 1.00 / 1.00 |",
        kib(none.0),
        kib(none.1)
    );
}

/// Broadcast with permessage-deflate: `count` different `PreparedMessage`s, each
/// compressed once (by the thread's shared compressor) for a connection that
/// negotiated deflate, then dropped. Prints the peak heap while preparing and what
/// stays once they are gone: the compressor state must not grow with the count.
fn prepared_broadcast(count: usize) {
    let (params, _) = DeflateConfig::default()
        .negotiate(&["permessage-deflate".to_string()])
        .expect("the offer is acceptable");
    let mut server = Connection::new(Role::Server, EngineConfig::default());
    server.enable_deflate(params);
    let before = live();
    reset_peak();
    let mut largest_frame = 0;
    for seed in 0..count {
        let prepared =
            duplex_core::PreparedMessage::new(Message::text(ticker_quotes(4, seed))).expect("text");
        server.send_prepared(&prepared).expect("room");
        largest_frame = largest_frame.max(server.output_len());
        let n = server.output_len();
        server.consume_output(n);
    }
    server.shrink_buffers();
    let peak = PEAK.load(Ordering::Relaxed) - before;
    let after = live() - before;
    println!(
        "{count} compressed prepared messages (ticker payloads, each sent to one deflate \
         connection, then dropped): peak heap {:.1} KiB above the start, {:.1} KiB held \
         after (largest frame {largest_frame} bytes)",
        peak as f64 / 1024.0,
        after as f64 / 1024.0
    );
}

/// The same exchange without permessage-deflate: (active, idle) bytes per connection.
fn measure_plain(
    connections: usize,
    messages: usize,
    payload: &dyn Fn(usize) -> String,
) -> (f64, f64) {
    let now = Instant::now();
    let before = live();
    let mut servers = Vec::with_capacity(connections);
    for i in 0..connections {
        let mut server = Connection::new(Role::Server, EngineConfig::default());
        let mut client = Connection::new(Role::Client, EngineConfig::default());
        for k in 0..messages {
            client
                .send(Message::text(payload(i * messages + k)))
                .expect("send");
            transfer(&mut client, &mut server);
            drop(server.poll_event(now));
            server.send(Message::text(payload(i + k))).expect("send");
            transfer(&mut server, &mut client);
            drop(client.poll_event(now));
        }
        servers.push(server);
    }
    let active = (live() - before) as f64 / connections as f64;
    for server in &mut servers {
        server.shrink_buffers();
    }
    let idle = (live() - before) as f64 / connections as f64;
    (active, idle)
}
