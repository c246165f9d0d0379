//! A duplex-mio fan-out server for `cargo xtask load --fanout`: `fanout-duplex-mio
//! [ADDR]` (default 127.0.0.1:0) prints `listening on ADDR` as its first line. Every
//! connection is subscribed to one topic when it opens; every text or binary message a
//! connection sends is published to that topic (`Context::publish`: encoded once, the
//! sender included). permessage-deflate is accepted when offered (the server's default
//! policy, no server context takeover).

use std::io::Write;

use duplex_mio::{
    Acceptance, ClientOffer, Context, Handler, Message, Rejection, Server, ServerConfig,
    http::Request,
};

const TOPIC: &str = "all";

struct Fanout;

impl Handler for Fanout {
    fn on_open(
        &mut self,
        ctx: &mut Context<'_>,
        _request: &Request<()>,
        _offer: &ClientOffer,
    ) -> Result<Acceptance, Rejection> {
        ctx.subscribe(TOPIC);
        Ok(Acceptance::default())
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, message: Message) {
        if let Err(error) = ctx.publish(TOPIC, message) {
            eprintln!("publish from {}: {error}", ctx.id());
        }
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    // Room for the benchmark's 10,000 subscribers and the publisher.
    let config = ServerConfig::default().max_connections(20_000);
    let server = Server::bind(&addr, config)?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on {}", server.local_addr()?)?;
    stdout.flush()?;
    server.run(|_| Fanout)
}
