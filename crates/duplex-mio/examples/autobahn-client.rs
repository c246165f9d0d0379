//! The client side of the conformance suite: `autobahn-client ws://127.0.0.1:PORT AGENT`
//! reads the case count from `/getCaseCount`, echoes every text and binary message of
//! each case `/runCase?case=i&agent=AGENT` until it closes, then asks for
//! `/updateReports?agent=AGENT`.

use std::process::ExitCode;

use duplex_mio::Message;
use duplex_mio::client::{ClientConfig, ClientRequest, WebSocket, connect_with};

/// The defaults take the suite's largest frame (16 MiB, the default `max_frame_size`
/// exactly) and its 65,536-fragment messages (default `max_fragments` 100,000).
fn config() -> ClientConfig {
    ClientConfig::default()
}

fn open(url: &str) -> Result<WebSocket, Box<dyn std::error::Error>> {
    Ok(connect_with(ClientRequest::new(url)?, &config())?)
}

fn run(base: &str, agent: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut socket = open(&format!("{base}/getCaseCount"))?;
    let count: u32 = loop {
        match socket.recv()? {
            Message::Text(text) => break text.trim().parse()?,
            Message::Close(_) => return Err("no case count".into()),
            _ => {}
        }
    };
    let _ = socket.close(None);
    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        let mut socket = match open(&url) {
            Ok(socket) => socket,
            Err(error) => {
                eprintln!("case {case}: {error}");
                continue;
            }
        };
        loop {
            match socket.recv() {
                Ok(message @ (Message::Text(_) | Message::Binary(_))) => {
                    if socket.send(message).is_err() {
                        break;
                    }
                }
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
    let mut socket = open(&format!("{base}/updateReports?agent={agent}"))?;
    let _ = socket.close(None);
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(base), Some(agent)) = (args.next(), args.next()) else {
        eprintln!("usage: autobahn-client ws://127.0.0.1:PORT AGENT");
        return ExitCode::from(2);
    };
    match run(base.trim_end_matches('/'), &agent) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("autobahn-client: {error}");
            ExitCode::FAILURE
        }
    }
}
