//! A fastwebsockets echo server for `cargo xtask load --compare`:
//! `fastwebsockets-echo [ADDR]` (default 127.0.0.1:0) prints `listening on ADDR` as its
//! first line, then sends every text and binary message back.
//!
//! The handshake goes through hyper 1 and `fastwebsockets::upgrade`, as in
//! fastwebsockets' own `echo_server` example; messages are reassembled by
//! `FragmentCollector`. Unlike that example (a current-thread runtime), this uses
//! tokio's default runtime, like every other tokio-based server in the comparison.

use fastwebsockets::{FragmentCollector, OpCode, WebSocketError, upgrade};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};

async fn echo(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
    Ok(())
}

async fn upgrade_request(
    mut request: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut request)?;
    tokio::spawn(async move {
        let _ = echo(fut).await;
    });
    Ok(response)
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(stream: S) {
    let io = hyper_util::rt::TokioIo::new(stream);
    let _ = http1::Builder::new()
        .serve_connection(io, service_fn(upgrade_request))
        .with_upgrades()
        .await;
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // With DUPLEX_LOAD_TLS set, every connection behind tokio-rustls.
    duplex_benches::serve_plain_or_tls!(serve)
}
