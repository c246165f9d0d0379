//! An interactive WebSocket client, like `wscat`:
//!
//! ```text
//! cargo run -p duplex-tokio --example client -- ws://127.0.0.1:9001 \
//!     [--binary] [--subprotocol NAME]... [--header 'Name: value']...
//! ```
//!
//! Each line read from standard input is sent as a text message (as a binary message
//! with `--binary`); each message received is printed on standard output (binary ones
//! as `<binary N bytes: hex...>`), while connection events go to standard error. At the
//! end of input the client closes the connection with 1000, prints what still arrives
//! before the server's reply, and exits; when the server closes, it prints the close
//! code and reason and exits.

use std::process::ExitCode;

use duplex_tokio::{ClientRequest, CloseCode, CloseFrame, Config, Message, connect_with};

const USAGE: &str =
    "usage: client URL [--binary] [--subprotocol NAME]... [--header 'Name: value']...";

struct Options {
    url: String,
    binary: bool,
    subprotocols: Vec<String>,
    headers: Vec<(String, String)>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut url = None;
    let mut binary = false;
    let mut subprotocols = Vec::new();
    let mut headers = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--binary" => binary = true,
            "--subprotocol" => {
                subprotocols.push(args.next().ok_or("--subprotocol needs a NAME")?);
            }
            "--header" => {
                let header = args.next().ok_or("--header needs 'Name: value'")?;
                let (name, value) = header
                    .split_once(':')
                    .ok_or_else(|| format!("--header {header:?} is not 'Name: value'"))?;
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other if other.starts_with("--") => return Err(format!("unknown option {other}")),
            _ if url.is_none() => url = Some(arg),
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    Ok(Options {
        url: url.ok_or("missing URL")?,
        binary,
        subprotocols,
        headers,
    })
}

/// Standard input, line by line, from a plain thread: tokio's own stdin reads on a
/// blocking thread that would keep the runtime from shutting down until the next
/// line when the server closes first. This thread simply ends with the process.
fn stdin_lines() -> tokio::sync::mpsc::Receiver<String> {
    let (sender, receiver) = tokio::sync::mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if sender.blocking_send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

fn describe_binary(data: &[u8]) -> String {
    let shown = &data[..data.len().min(32)];
    let hex: String = shown.iter().map(|b| format!("{b:02x}")).collect();
    let more = if data.len() > shown.len() { "..." } else { "" };
    format!("<binary {} bytes: {hex}{more}>", data.len())
}

fn describe_close(frame: Option<&CloseFrame>) -> String {
    match frame {
        Some(frame) if frame.reason.is_empty() => format!("code {}", frame.code),
        Some(frame) => format!("code {}, reason {:?}", frame.code, frame.reason.as_str()),
        None => "no code".to_owned(),
    }
}

async fn run(options: Options) -> Result<(), Box<dyn std::error::Error>> {
    let mut request = ClientRequest::new(&options.url)?;
    for protocol in &options.subprotocols {
        request = request.protocol(protocol.as_str());
    }
    for (name, value) in &options.headers {
        request = request.header(name, value)?;
    }
    let (mut ws, response) = connect_with(request, Config::default()).await?;
    eprintln!(
        "connected to {} (subprotocol: {}, permessage-deflate: {})",
        options.url,
        response.negotiated.protocol.as_deref().unwrap_or("none"),
        if ws.is_compressed() { "on" } else { "off" },
    );

    let mut lines = stdin_lines();
    let mut input_open = true;
    loop {
        tokio::select! {
            line = lines.recv(), if input_open => match line {
                Some(line) => {
                    let message = if options.binary {
                        Message::binary(line.into_bytes())
                    } else {
                        Message::text(line)
                    };
                    ws.send(message).await?;
                }
                None => {
                    // Start the close handshake and keep printing what arrives (echoes of
                    // the last lines) until the server's reply ends the stream; the engine
                    // gives up after its close timeout (5 s).
                    input_open = false;
                    eprintln!("end of input: closing");
                    ws.send(Message::Close(Some(CloseFrame::new(CloseCode::Normal, ""))))
                        .await?;
                }
            },
            event = ws.recv() => match event {
                Some(Ok(Message::Text(text))) => println!("{}", text.as_str()),
                Some(Ok(Message::Binary(data))) => println!("{}", describe_binary(&data)),
                Some(Ok(Message::Ping(data))) => eprintln!("ping ({} bytes)", data.len()),
                Some(Ok(Message::Pong(data))) => eprintln!("pong ({} bytes)", data.len()),
                Some(Ok(Message::Close(frame))) if input_open => {
                    let why = describe_close(frame.as_ref());
                    eprintln!("the server closed the connection: {why}");
                }
                Some(Ok(Message::Close(_))) => eprintln!("closed"),
                Some(Err(error)) => return Err(error.into()),
                None => return Ok(()),
            },
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
