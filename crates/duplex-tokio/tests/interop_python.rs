//! Interoperability with Python's `websockets` library (an independent implementation of
//! RFC 6455 and RFC 7692), both ways, with permessage-deflate.
//!
//! Needs `python3` with `websockets` installed (`python3 -m pip install websockets`).
//! Without it the tests fail when `CI` is set (CI must run them), and otherwise skip
//! with a printed reason.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use duplex_tokio::EngineConfig;
use duplex_tokio::{
    Acceptance, ClientRequest, CloseCode, CloseFrame, Config, DeflateConfig, DeflateParams,
    Message, accept_with, connect_with,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(20);

const INSTALL: &str = "python3 -m pip install websockets==17.4";

fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// True when Python and its `websockets` are there. Otherwise fails the test (with how
/// to fix it) when `CI` is set, or prints why it skips and returns false.
fn python_websockets_available() -> bool {
    let check = std::process::Command::new("python3")
        .args(["-c", "import websockets; print(websockets.__version__)"])
        .output();
    let why = match check {
        Ok(output) if output.status.success() => return true,
        Ok(output) => format!(
            "Python's `websockets` library is not installed; install it with `{INSTALL}`\n{}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(error) => {
            format!("cannot run python3 ({error}); install Python 3 and then `{INSTALL}`")
        }
    };
    if std::env::var_os("CI").is_some() {
        panic!("{why}");
    }
    // Past the test harness' capture, so the reason shows in a passing run.
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "skipped: {why}");
    false
}

/// `xtask/peers/echo_websockets.py` on an ephemeral port: the child (killed when
/// dropped) and its `ws://` URL.
async fn python_echo_server() -> (Child, String) {
    let script = repo_path("../../xtask/peers/echo_websockets.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg("127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = timeout(LIMIT, lines.next_line())
        .await
        .expect("the Python echo server did not print its address in time")
        .unwrap()
        .expect("the Python echo server exited before printing its address");
    let addr = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line from the Python server: {first:?}"));
    (child, format!("ws://{addr}/"))
}

/// Text, binary, empty, fragmented and many messages through the Python echo server
/// with `policy`, then a close with a code; checks the negotiated parameters.
async fn round_trip_against_python(policy: DeflateConfig, expected: DeflateParams) {
    let (_server, url) = python_echo_server().await;
    for frame_size in [None, Some(1000)] {
        let request = ClientRequest::new(&url).unwrap().deflate(Some(policy));
        let config = Config::default().engine(EngineConfig::default().send_frame_size(frame_size));
        let (mut ws, response) = timeout(LIMIT, connect_with(request, config))
            .await
            .unwrap()
            .unwrap();
        assert!(ws.is_compressed(), "deflate negotiated with websockets");
        assert_eq!(response.negotiated.deflate, Some(expected));

        let mut messages = vec![
            Message::text("hello, websockets"),
            Message::text(""),
            Message::binary(Vec::new()),
            // 100 KiB: with a frame size of 1000, frames cut code points in two.
            Message::text("κόσμε € ".repeat(100 << 10 >> 4)),
            Message::binary(
                (0..100u32 << 10)
                    .map(|i| (i * 7 % 256) as u8)
                    .collect::<Vec<_>>(),
            ),
            Message::binary(vec![0u8; 1 << 20]),
        ];
        messages.extend((0..50).map(|i| Message::text(format!("message {i} ").repeat(i))));
        for message in &messages {
            timeout(LIMIT, ws.send(message.clone()))
                .await
                .unwrap()
                .unwrap();
        }
        for message in &messages {
            let echoed = timeout(LIMIT, ws.recv())
                .await
                .expect("no echo in time")
                .expect("the stream ended")
                .unwrap();
            assert!(
                &echoed == message,
                "the echo of a {}-byte message differs (frame size {frame_size:?})",
                message.payload().len()
            );
        }

        let bye = CloseFrame::new(CloseCode::Other(4000), "rust is done");
        timeout(LIMIT, ws.close(Some(bye))).await.unwrap().unwrap();
        assert!(timeout(LIMIT, ws.recv()).await.unwrap().is_none());
    }
}

#[tokio::test]
async fn our_client_against_python_server_with_default_deflate() {
    if !python_websockets_available() {
        return;
    }
    round_trip_against_python(
        DeflateConfig::default(),
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        },
    )
    .await;
}

#[tokio::test]
async fn our_client_against_python_server_without_context_takeover_and_small_window() {
    if !python_websockets_available() {
        return;
    }
    let policy = DeflateConfig {
        client_no_context_takeover: true,
        server_no_context_takeover: true,
        server_max_window_bits: 10,
        ..DeflateConfig::default()
    };
    round_trip_against_python(
        policy,
        DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 10,
            client_max_window_bits: 15,
        },
    )
    .await;
}

#[tokio::test]
async fn python_client_against_our_server() {
    if !python_websockets_available() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = accept_with(tcp, Config::default(), |_, _| Ok(Acceptance::default()))
            .await
            .unwrap();
        let compressed = ws.is_compressed();
        let mut control = Vec::new();
        while let Some(event) = ws.recv().await {
            let message = event.unwrap();
            if message.is_data() {
                ws.send(message).await.unwrap();
            } else {
                control.push(message);
            }
        }
        (compressed, control)
    });

    let script = repo_path("tests/py/client_roundtrip.py");
    let child = Command::new("python3")
        .arg(&script)
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
    let output = timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the Python client did not finish in time")
        .unwrap();
    assert!(
        output.status.success(),
        "the Python client failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    let (compressed, control) = timeout(LIMIT, server).await.unwrap().unwrap();
    assert!(compressed, "deflate negotiated with websockets");
    assert_eq!(
        control,
        vec![Message::Close(Some(CloseFrame::new(
            CloseCode::Other(4001),
            "python is done"
        )))]
    );
}
