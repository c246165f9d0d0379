//! Measures what an idle connection costs the server: `idle-memory [N]` (default 1000)
//! starts an echo server in a child process (one worker), opens N connections that
//! each exchange one message and then stay idle, and prints the growth of the server's
//! resident memory per connection. Linux only (reads `/proc/PID/status`).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use duplex_mio::client::{ClientConfig, ClientRequest, connect_with};
use duplex_mio::{Context, Handler, Message, Server, ServerConfig};

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Context<'_>, message: Message) {
        let _ = ctx.send(message);
    }
}

fn serve() -> std::io::Result<()> {
    let config = ServerConfig::default().workers(1).max_connections(100_000);
    let server = Server::bind("127.0.0.1:0", config)?;
    println!("listening on {}", server.local_addr()?);
    server.run(|_| Echo)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arg = std::env::args().nth(1);
    if arg.as_deref() == Some("serve") {
        return Ok(serve()?);
    }
    let n: usize = arg.map_or(Ok(1000), |a| a.parse())?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("serve")
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or("no address")?;
    let url = format!("ws://{addr}/");
    let config = ClientConfig::default().read_buffer_size(512);
    let round_trip = |url: &str| -> Result<_, Box<dyn std::error::Error>> {
        let mut socket = connect_with(ClientRequest::new(url)?, &config)?;
        socket.set_read_timeout(Some(Duration::from_secs(10)))?;
        socket.send(Message::text("hello"))?;
        socket.recv()?;
        Ok(socket)
    };
    // Warm up: the worker's read buffer, the allocator's arenas.
    let warm: Vec<_> = (0..10)
        .map(|_| round_trip(&url))
        .collect::<Result<_, _>>()?;
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_kib(child.id());
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        sockets.push(round_trip(&url)?);
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib(child.id());
    let per = (after.saturating_sub(before) * 1024) as f64 / n as f64;
    println!(
        "{n} idle connections: server RSS {before} KiB -> {after} KiB, {per:.0} bytes per connection"
    );
    drop((warm, sockets));
    child.kill()?;
    child.wait()?;
    Ok(())
}
