//! An echo server for conformance testing: `echo-server [ADDR]` (default
//! 127.0.0.1:9002) prints `listening on ADDR` as its first line, then sends every text
//! and binary message back.

use std::io::Write;

use duplex_mio::{Context, Handler, Message, Server, ServerConfig};

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Context<'_>, message: Message) {
        if let Err(error) = ctx.send(message) {
            eprintln!("echo to {}: {error}", ctx.id());
        }
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9002".to_owned());
    // The default limits take the conformance suite's largest frame (16 MiB, the
    // default `max_frame_size` exactly), its 65,536-fragment messages (default
    // `max_fragments` 100,000) and its uploads within the server's memory budget. The
    // write buffer is raised: cases 9.7 and 9.8 send a thousand messages without
    // reading the echoes, and an echo refused for a full buffer would be lost.
    let config = ServerConfig::default().write_buffer_limits(64 << 20, 128 << 20);
    let server = Server::bind(&addr, config)?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on {}", server.local_addr()?)?;
    stdout.flush()?;
    server.run(|_| Echo)
}
