//! A client for Autobahn-style fuzzing servers:
//! `autobahn-client ws://127.0.0.1:PORT AGENT`.
//!
//! Asks `/getCaseCount`, runs every case by echoing each text and binary message until
//! the server closes, then asks `/updateReports`.

use duplex_tokio::{ClientRequest, Config, Message, connect_with};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let base = args.next().unwrap_or_else(|| "ws://127.0.0.1:9001".into());
    let agent = args.next().unwrap_or_else(|| "duplex-tokio".into());
    // The default limits take the suite's largest frame (16 MiB, the default
    // `max_frame_size` exactly) and its 65,536-fragment messages; the write buffer is
    // raised so that the echoes of cases 9.7 and 9.8 queue instead of waiting.
    let protocol = duplex_tokio::core::EngineConfig::default().max_write_buffer(16 << 20);
    let config = Config::default().engine(protocol);

    let (mut ws, _) = connect_with(
        ClientRequest::new(&format!("{base}/getCaseCount"))?,
        config.clone(),
    )
    .await?;
    let mut count = 0u32;
    while let Some(message) = ws.recv().await {
        if let Message::Text(text) = message? {
            count = text.trim().parse()?;
        }
    }
    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        let Ok((mut ws, _)) = connect_with(ClientRequest::new(&url)?, config.clone()).await else {
            continue;
        };
        while let Some(Ok(message)) = ws.recv().await {
            if message.is_data() && ws.send(message).await.is_err() {
                break;
            }
        }
    }
    let url = format!("{base}/updateReports?agent={agent}");
    let (mut ws, _) = connect_with(ClientRequest::new(&url)?, config).await?;
    while ws.recv().await.is_some() {}
    Ok(())
}
