//! A chat server on `duplex-mio` with rooms, whose rooms span nodes with `--redis`.
//!
//! ```text
//! cargo run --release -p duplex-hub --features mio,redis --example mio-chat -- \
//!     [ADDR] [--redis redis://127.0.0.1:6379/]
//! ```
//!
//! (default `127.0.0.1:9010`). It prints `listening on ADDR`. A client connects to
//! `ws://ADDR/ROOM` (`/` is the room `lobby`); each text it sends goes to everyone in
//! the room, on this node and on every node sharing the Redis server, as
//! `{"topic":ROOM,"epoch":E,"offset":O,"data":"ID: TEXT"}`; `/nick NAME` sets the name
//! shown instead of the connection id; the server announces joins and leaves.

use std::io::Write;

use duplex_hub::mio::Bridge;
use duplex_hub::{Framing, Hub, HubConfig, MemoryBackend, MemoryConfig, Message};
use duplex_mio::http::Request;
use duplex_mio::{
    Acceptance, ClientOffer, CloseFrame, Context, Handler, Rejection, Server, ServerConfig,
};

struct Chat {
    bridge: Bridge,
    room: String,
    name: String,
}

impl Handler for Chat {
    fn on_open(
        &mut self,
        ctx: &mut Context<'_>,
        request: &Request<()>,
        _offer: &ClientOffer,
    ) -> Result<Acceptance, Rejection> {
        let room = request.uri().path().trim_start_matches('/');
        self.room = if room.is_empty() { "lobby" } else { room }.to_owned();
        if !self.bridge.subscribe(ctx, &self.room) {
            return Err(Rejection::new(
                duplex_mio::http::StatusCode::BAD_REQUEST,
                "bad room name",
            ));
        }
        self.name = ctx.id().to_string();
        let _ = self
            .bridge
            .publish(&self.room, format!("* {} joined", self.name));
        Ok(Acceptance::default())
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, message: Message) {
        let Some(text) = message.as_text() else {
            return;
        };
        if let Some(name) = text.strip_prefix("/nick ") {
            let name: String = name.trim().chars().take(32).collect();
            let _ = self
                .bridge
                .publish(&self.room, format!("* {} is now {name}", self.name));
            self.name = name;
            return;
        }
        let line = format!("{}: {text}", self.name);
        if let Err(e) = self.bridge.publish(&self.room, line) {
            let _ = ctx.send(format!("* not sent: {e}"));
        }
    }

    fn on_close(&mut self, _ctx: &mut Context<'_>, _frame: Option<CloseFrame>) {
        let _ = self
            .bridge
            .publish(&self.room, format!("* {} left", self.name));
    }
}

fn main() -> std::io::Result<()> {
    let mut addr = "127.0.0.1:9010".to_owned();
    let mut redis = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--redis" => redis = args.next(),
            other => addr = other.to_owned(),
        }
    }
    let config = HubConfig {
        framing: Framing::Envelope,
        ..HubConfig::default()
    };
    let hub = match redis {
        Some(url) => {
            Hub::redis(config, duplex_hub::RedisConfig::new(url)).map_err(std::io::Error::other)?
        }
        None => Hub::with_backend(
            config,
            std::sync::Arc::new(MemoryBackend::new(MemoryConfig::default())),
        ),
    };
    let server = Server::bind(&addr, ServerConfig::default())?;
    let bridge = Bridge::new(hub, server.sender());
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on {}", server.local_addr()?)?;
    stdout.flush()?;
    server.run(|_| Chat {
        bridge: bridge.clone(),
        room: String::new(),
        name: String::new(),
    })
}
