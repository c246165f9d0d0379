//! Shared helpers for the duplex micro-benchmarks.
//!
//! The benchmarks themselves live in `benches/benches/` (criterion, run with
//! `cargo bench -p duplex-benches --bench NAME`); this library only builds their inputs,
//! so that every benchmark, duplex's and its peers', decodes exactly the same bytes:
//!
//! - payloads: [`binary_payload`], [`ascii_text`], [`multibyte_text`];
//! - masked client frames: [`masked_message`], split into any number of fragments;
//! - a client handshake request with a fixed key: [`handshake_request`];
//! - [`RepeatingStream`], an in-memory `Read + Write` stream that serves the same bytes
//!   forever, for peers (tungstenite) that read from a socket;
//! - [`receive_one`], which feeds one message to a duplex [`Connection`] and returns it;
//! - [`serve_each`], the accept loop of the peer echo servers in `src/bin/`;
//! - text payloads for permessage-deflate: [`ticker_quotes`] and [`chat_message`].
//!
//! ```
//! use std::time::Instant;
//! use duplex_benches::{binary_payload, masked_message, receive_one, MASK_KEY};
//! use duplex_core::{codec::OpCode, EngineConfig, Connection, Message, Role};
//!
//! let payload = binary_payload(1000);
//! let wire = masked_message(OpCode::Binary, &payload, 4, MASK_KEY);
//! let mut server = Connection::new(Role::Server, EngineConfig::default());
//! let message = receive_one(&mut server, &wire, Instant::now());
//! assert_eq!(message, Message::binary(payload));
//! ```

use std::io::{self, Read, Write};
use std::time::Instant;

use duplex_codec::OpCode;
use duplex_core::{Connection, Message};

/// The masking key every benchmark frame uses (the one of RFC 6455 section 5.7).
pub const MASK_KEY: [u8; 4] = wire_kit::CLIENT_MASK;

/// The `Sec-WebSocket-Key` of [`handshake_request`] (the one of RFC 6455 section 1.3).
pub const HANDSHAKE_KEY: &str = wire_kit::KEY;

/// `len` bytes of a deterministic, non-repeating-looking binary pattern.
pub fn binary_payload(len: usize) -> Vec<u8> {
    wire_kit::noise(len, 0x9E37_79B9)
}

/// `len` bytes of printable ASCII text.
pub fn ascii_text(len: usize) -> String {
    const LINE: &[u8] = b"The quick brown fox jumps over the lazy dog. 0123456789\n";
    LINE.iter()
        .copied()
        .cycle()
        .take(len)
        .map(char::from)
        .collect()
}

/// Text of exactly `len` bytes that is mostly multibyte: a repeating mix of 2-, 3- and
/// 4-byte UTF-8 sequences (Greek, CJK, emoji), padded with ASCII at the end to hit `len`.
pub fn multibyte_text(len: usize) -> String {
    const SAMPLE: &str = "κόσμε 世界 😀 Ελληνικά 日本語 🦀 ";
    let mut text = String::with_capacity(len);
    for c in SAMPLE.chars().cycle() {
        if text.len() + c.len_utf8() > len {
            break;
        }
        text.push(c);
    }
    while text.len() < len {
        text.push('.');
    }
    text
}

/// The wire bytes of one message as a client sends it: `payload` in `fragments` masked
/// frames (the first with `opcode`, the others continuations, the last with FIN set).
///
/// # Panics
///
/// If `fragments` is 0 or larger than the payload (except for an empty payload, which
/// is sent in one frame), or if `opcode` is a control opcode and fragments exceeds 1.
pub fn masked_message(opcode: OpCode, payload: &[u8], fragments: usize, key: [u8; 4]) -> Vec<u8> {
    assert!(fragments >= 1, "a message has at least one frame");
    assert!(
        fragments == 1 || fragments <= payload.len(),
        "more fragments than payload bytes"
    );
    let piece = payload.len().div_ceil(fragments).max(1);
    wire_kit::fragment(opcode.as_u8(), payload, piece)
        .into_iter()
        .flat_map(|frame| frame.masked(Some(key)).encode())
        .collect()
}

/// The opening handshake request of a client, as bytes, with [`HANDSHAKE_KEY`] and a
/// few ordinary browser-like headers.
pub fn handshake_request() -> Vec<u8> {
    wire_kit::upgrade_request_with_key(
        "/chat?room=1",
        "server.example.com",
        HANDSHAKE_KEY,
        "User-Agent: duplex-benches/0.1\r\nAccept: */*\r\nOrigin: http://example.com\r\n\
         Cache-Control: no-cache\r\n",
    )
}

/// Feeds `wire` (one whole message) to `connection` and returns the message.
///
/// # Panics
///
/// If the bytes do not make exactly one message: a benchmark set up wrong.
pub fn receive_one(connection: &mut Connection, wire: &[u8], now: Instant) -> Message {
    connection.receive(wire);
    match connection.poll_event(now) {
        Some(Ok(message)) => message,
        other => panic!("expected one message, got {other:?}"),
    }
}

/// An in-memory stream whose reads serve `data` over and over, never past the end of
/// one copy in a single read (as if each copy arrived in its own TCP segment), and
/// whose writes are discarded.
///
/// It lets a socket-based peer such as tungstenite decode the same message again and
/// again without I/O and without rebuilding its state between iterations.
#[derive(Clone, Debug)]
pub struct RepeatingStream {
    data: Vec<u8>,
    position: usize,
}

impl RepeatingStream {
    /// A stream that repeats `data`.
    ///
    /// # Panics
    ///
    /// If `data` is empty: the stream would look like end of file.
    pub fn new(data: Vec<u8>) -> Self {
        assert!(!data.is_empty(), "a repeating stream needs data");
        Self { data, position: 0 }
    }
}

impl Read for RepeatingStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = &self.data[self.position..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.position = (self.position + n) % self.data.len();
        Ok(n)
    }
}

impl Write for RepeatingStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An in-memory stream that serves `data` once for reads (then end of file) and
/// discards writes: one side of a handshake.
#[derive(Clone, Debug)]
pub struct ReplayStream {
    data: io::Cursor<Vec<u8>>,
}

impl ReplayStream {
    /// A stream whose reads return `data`.
    pub fn new(data: Vec<u8>) -> Self {
        Self {
            data: io::Cursor::new(data),
        }
    }
}

impl Read for ReplayStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.data.read(buf)
    }
}

impl Write for ReplayStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The accept loop the peer echo servers of `cargo xtask load --compare` share: binds
/// the address given as the first argument (default `127.0.0.1:0`), prints
/// `listening on ADDR` as the first line of stdout, and runs `connection` on every
/// accepted socket (with `TCP_NODELAY`) in a task of its own.
pub async fn serve_each<F, Fut>(connection: F) -> io::Result<()>
where
    F: Fn(tokio::net::TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;
    loop {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        tokio::spawn(connection(tcp));
    }
}

/// The `main` of a peer echo server: [`serve_each`] runs `$serve(stream)` on every
/// connection, behind tokio-rustls when [`TLS_ENV`] names a certificate ([`tls_acceptor`]),
/// on the TCP stream otherwise. `$serve` is a function generic over the stream, so each
/// arm keeps its concrete type (no boxed stream in the measured path).
#[macro_export]
macro_rules! serve_plain_or_tls {
    ($serve:path) => {
        match $crate::tls_acceptor() {
            Some(tls) => {
                $crate::serve_each(move |tcp| {
                    let tls = tls.clone();
                    async move {
                        if let Ok(stream) = tls.accept(tcp).await {
                            $serve(stream).await;
                        }
                    }
                })
                .await
            }
            None => $crate::serve_each(|tcp| $serve(tcp)).await,
        }
    };
}

/// The environment variable through which `cargo xtask load --compare --tls` hands the
/// servers its certificate directory (`cert.der`, `key.der` PKCS#8, and PEM copies).
pub const TLS_ENV: &str = "DUPLEX_LOAD_TLS";

/// A TLS acceptor (rustls, ring, TLS 1.2 and 1.3) with the certificate of the directory
/// in [`TLS_ENV`], if that variable is set: the peer servers then serve every
/// connection behind it.
///
/// # Panics
///
/// If the variable is set and the certificate cannot be read or used.
pub fn tls_acceptor() -> Option<tokio_rustls::TlsAcceptor> {
    use tokio_rustls::rustls::{self, pki_types};
    let dir = std::path::PathBuf::from(std::env::var_os(TLS_ENV)?);
    let read = |name: &str| {
        std::fs::read(dir.join(name))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
    };
    let cert = pki_types::CertificateDer::from(read("cert.der"));
    let key = pki_types::PrivatePkcs8KeyDer::from(read("key.der"));
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("default protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key.into())
        .expect("the load tool's certificate");
    Some(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)))
}

/// A ticker message: a batch of `count` stock quotes as JSON. Different `seed`s give
/// different prices, so repeated messages are alike but not equal.
pub fn ticker_quotes(count: usize, seed: usize) -> String {
    let mut out = String::from("[");
    for j in 0..count {
        let i = j + seed * 7919;
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            r#"{{"symbol":"SYM{:03}","price":{}.{:02},"change":-0.{:02},"volume":{},"ts":17000000{:05}}}"#,
            j % 50,
            100 + (i * 7) % 300,
            (i * 13) % 100,
            (i * 31) % 100,
            1000 + (i * 977) % 100_000,
            seed * count + j
        ));
    }
    out.push(']');
    out
}

/// A chat message (JSON, 80 to 300 bytes): room, user, time and a sentence drawn from a
/// small vocabulary; `seed` picks them deterministically.
pub fn chat_message(seed: usize) -> String {
    const WORDS: [&str; 32] = [
        "the", "meeting", "is", "moved", "to", "tomorrow", "morning", "please", "check", "your",
        "calendar", "and", "let", "me", "know", "if", "that", "works", "for", "everyone", "deploy",
        "finished", "without", "errors", "lunch", "anyone", "new", "release", "notes", "are",
        "ready", "thanks",
    ];
    const USERS: [&str; 8] = [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
    ];
    let mut state = (seed as u32).wrapping_mul(0x9E37_79B9) | 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state as usize
    };
    let words = 6 + next() % 36;
    let text: Vec<&str> = (0..words).map(|_| WORDS[next() % WORDS.len()]).collect();
    format!(
        r#"{{"type":"message","room":"general-{}","user":"{}","id":{},"ts":{},"text":"{}"}}"#,
        next() % 4,
        USERS[next() % USERS.len()],
        100_000 + seed,
        1_700_000_000_000u64 + seed as u64 * 1_337,
        text.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use duplex_core::{EngineConfig, Role};

    fn server() -> Connection {
        Connection::new(Role::Server, EngineConfig::default())
    }

    #[test]
    fn text_helpers_have_the_requested_length() {
        for len in [0, 1, 5, 125, 1024, 65536] {
            assert_eq!(ascii_text(len).len(), len);
            assert_eq!(multibyte_text(len).len(), len);
            assert_eq!(binary_payload(len).len(), len);
        }
        let text = multibyte_text(4096);
        assert!(text.chars().filter(|c| c.len_utf8() > 1).count() > 1000);
    }

    #[test]
    fn masked_messages_decode_whole_through_duplex() {
        let now = Instant::now();
        let mut connection = server();
        for fragments in [1, 2, 16] {
            let payload = binary_payload(1024);
            let wire = masked_message(OpCode::Binary, &payload, fragments, MASK_KEY);
            assert_eq!(
                receive_one(&mut connection, &wire, now),
                Message::binary(payload)
            );
            let text = multibyte_text(1024);
            let wire = masked_message(OpCode::Text, text.as_bytes(), fragments, MASK_KEY);
            assert_eq!(
                receive_one(&mut connection, &wire, now),
                Message::text(text)
            );
        }
    }

    #[test]
    fn masked_messages_decode_through_tungstenite() {
        use tungstenite::protocol::{Role as PeerRole, WebSocket};
        let payload = binary_payload(4000);
        let wire = masked_message(OpCode::Binary, &payload, 16, MASK_KEY);
        let mut socket =
            WebSocket::from_raw_socket(RepeatingStream::new(wire), PeerRole::Server, None);
        for _ in 0..3 {
            let message = socket.read().unwrap();
            assert_eq!(message.into_data(), payload);
        }
    }

    #[test]
    fn repeating_stream_stops_each_read_at_the_end_of_a_copy() {
        let mut stream = RepeatingStream::new(vec![1, 2, 3]);
        let mut buf = [0u8; 8];
        assert_eq!(stream.read(&mut buf).unwrap(), 3);
        assert_eq!(stream.read(&mut buf[..2]).unwrap(), 2);
        assert_eq!(stream.read(&mut buf).unwrap(), 1);
        assert_eq!(buf[0], 3);
    }

    #[test]
    fn handshake_request_is_accepted_by_duplex() {
        use duplex_handshake::{ClientOffer, Limits, ServerHandshake};
        let (request, rest) = ServerHandshake::new(Limits::default())
            .feed(&handshake_request())
            .unwrap()
            .unwrap();
        assert!(rest.is_empty());
        let offer = ClientOffer::from_request(&request).unwrap();
        assert_eq!(
            offer.accept_key().as_deref(),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
    }
}
