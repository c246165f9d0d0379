//! An echo server for conformance testing: `echo-server [ADDR]` (default
//! 127.0.0.1:9002) prints `listening on ADDR` as its first line, then sends every text
//! and binary message back.

use std::io::Write;

use duplex_mio::{Context, EngineConfig, Handler, Message, Server, ServerConfig};

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
    // Large enough for the conformance suite's biggest messages (16 MiB) and its
    // 65,536-fragment messages.
    let websocket = EngineConfig::default()
        .max_message_size(64 << 20)
        .max_frame_size(32 << 20)
        .max_fragments(1 << 20);
    let config = ServerConfig::default()
        .engine(websocket)
        .write_buffer_limits(64 << 20, 128 << 20);
    let server = Server::bind(&addr, config)?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on {}", server.local_addr()?)?;
    stdout.flush()?;
    server.run(|_| Echo)
}
