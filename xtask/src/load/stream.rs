//! The generator over transports other than plain TCP: TLS (`--tls`, rustls with
//! session resumption off unless `--tls-resume`) and WebSockets over HTTP/2 (`--h2 N`,
//! RFC 8441 extended CONNECT on N cleartext HTTP/2 connections, h2c with prior
//! knowledge). The echo loop is the one of `client.rs` (same frames, same checks) on
//! any `AsyncRead + AsyncWrite`, with the read and the write of each connection
//! awaited side by side, so neither ever waits for the other.
//!
//! The TLS certificate is one self-signed certificate (rcgen) for `localhost` and
//! `127.0.0.1`, in a directory shared with the servers under test
//! (`DUPLEX_LOAD_TLS`): `cert.der`, `key.der` (PKCS#8), and the same as PEM for Bun.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::rustls;

use super::client::{CONNECT_CONCURRENCY, EchoConn, EchoStats, HandshakeStats};
use super::wire::{Checker, Messages, WsUrl, parse_response};

/// The environment variable naming the certificate directory, for the servers.
pub const TLS_ENV: &str = "DUPLEX_LOAD_TLS";
/// Limit for connecting plus the handshakes (TCP, TLS, WebSocket).
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// A byte stream the generator can run a WebSocket on.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// How the generator reaches the server.
#[derive(Clone)]
pub enum Transport {
    /// TLS over TCP, then the HTTP/1.1 upgrade.
    Tls(Arc<rustls::ClientConfig>),
    /// Extended CONNECT on one of these HTTP/2 connections, in turn.
    H2(Arc<Vec<h2::client::SendRequest<Bytes>>>),
}

/// An open WebSocket over a [`Transport`].
pub struct StreamOpened {
    /// The stream; dropping it resets the TCP connection (TLS) or the HTTP/2 stream.
    pub io: Box<dyn Io>,
    /// Bytes received after the response head.
    pub leftover: Vec<u8>,
    /// The server's `Sec-WebSocket-Extensions`, if any.
    pub extensions: Option<String>,
}

/// The certificate directory: `DUPLEX_LOAD_TLS`, or `default`.
pub fn tls_dir(default: &Path) -> PathBuf {
    std::env::var_os(TLS_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| default.to_path_buf())
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Reads the certificate of `dir`, making it first if it is not there. Returns the
/// certificate's DER.
pub fn ensure_certificate(dir: &Path) -> Result<Vec<u8>, String> {
    let cert_path = dir.join("cert.der");
    if let Ok(der) = std::fs::read(&cert_path)
        && dir.join("key.der").exists()
        && dir.join("cert.pem").exists()
        && dir.join("key.pem").exists()
    {
        return Ok(der);
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .map_err(|e| format!("certificate: {e}"))?;
    let cert = made.cert.der().to_vec();
    let key = made.signing_key.serialize_der();
    let write = |name: &str, data: &[u8]| {
        std::fs::write(dir.join(name), data).map_err(|e| format!("{name}: {e}"))
    };
    write("key.der", &key)?;
    write("key.pem", pem("PRIVATE KEY", &key).as_bytes())?;
    write("cert.pem", pem("CERTIFICATE", &cert).as_bytes())?;
    write("cert.der", &cert)?;
    Ok(cert)
}

/// The generator's TLS configuration: trusts only `cert`; session resumption off
/// unless `resume` (every connection then pays a full handshake).
pub fn client_config(cert: &[u8], resume: bool) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(cert.to_vec()))
        .map_err(|e| format!("certificate: {e}"))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// A server's TLS configuration with the certificate of `dir` (for the tests' server).
#[cfg(test)]
pub fn server_config(dir: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    ensure_certificate(dir)?;
    let cert = std::fs::read(dir.join("cert.der")).map_err(|e| e.to_string())?;
    let key = std::fs::read(dir.join("key.der")).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(
            vec![rustls::pki_types::CertificateDer::from(cert)],
            rustls::pki_types::PrivatePkcs8KeyDer::from(key).into(),
        )
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(config))
}

async fn tcp_connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    // A reset when dropped: no TIME_WAIT for tens of thousands of connections.
    let _ = tcp.set_zero_linger();
    Ok(tcp)
}

/// Opens `count` HTTP/2 connections (h2c, prior knowledge) and checks that each
/// allows extended CONNECT.
pub async fn h2_connect(
    addr: SocketAddr,
    count: usize,
) -> Result<Vec<h2::client::SendRequest<Bytes>>, String> {
    let mut out = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let tcp = tcp_connect(addr).await?;
        let (send, mut connection) = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(16 << 20)
            .max_concurrent_streams(100_000)
            .handshake::<_, Bytes>(tcp)
            .await
            .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
        let mut ping = connection.ping_pong();
        tokio::spawn(async move {
            let _ = connection.await;
        });
        // The server's SETTINGS come first, so they are known once a PING is answered.
        if let Some(ping) = ping.as_mut() {
            ping.ping(h2::Ping::opaque())
                .await
                .map_err(|e| format!("HTTP/2 ping: {e}"))?;
        }
        if !send.is_extended_connect_protocol_enabled() {
            return Err("the server does not allow extended CONNECT (RFC 8441)".into());
        }
        out.push(send);
    }
    Ok(out)
}

/// Opens one WebSocket: the `index`-th of a run (it picks the HTTP/2 connection).
pub async fn open(
    transport: &Transport,
    addr: SocketAddr,
    url: &WsUrl,
    request: &[u8],
    offer: Option<&str>,
    index: usize,
) -> Result<StreamOpened, String> {
    let opening = async {
        match transport {
            Transport::Tls(config) => {
                let tcp = tcp_connect(addr).await?;
                let host = url.host.trim_start_matches('[').trim_end_matches(']');
                let name = rustls::pki_types::ServerName::try_from(host.to_owned())
                    .map_err(|e| format!("server name {host:?}: {e}"))?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS handshake: {e}"))?;
                upgrade(Box::new(tls), request).await
            }
            Transport::H2(senders) => {
                let send = senders[index % senders.len()].clone();
                extended_connect(send, url, offer).await
            }
        }
    };
    tokio::time::timeout(OPEN_TIMEOUT, opening)
        .await
        .map_err(|_| "opening timed out".to_string())?
}

/// The HTTP/1.1 upgrade on an open stream.
async fn upgrade(mut io: Box<dyn Io>, request: &[u8]) -> Result<StreamOpened, String> {
    io.write_all(request)
        .await
        .map_err(|e| format!("send request: {e}"))?;
    io.flush().await.map_err(|e| format!("send request: {e}"))?;
    let mut buf = Vec::with_capacity(512);
    loop {
        let n = io
            .read_buf(&mut buf)
            .await
            .map_err(|e| format!("read response: {e}"))?;
        if n == 0 {
            return Err("connection closed during the handshake".into());
        }
        if let Some(accepted) = parse_response(&buf)? {
            return Ok(StreamOpened {
                io,
                leftover: buf.split_off(accepted.head_len),
                extensions: accepted.extensions,
            });
        }
    }
}

/// An extended CONNECT (`:protocol = websocket`) on an HTTP/2 connection.
async fn extended_connect(
    send: h2::client::SendRequest<Bytes>,
    url: &WsUrl,
    offer: Option<&str>,
) -> Result<StreamOpened, String> {
    let mut request = http::Request::builder()
        .method(http::Method::CONNECT)
        .version(http::Version::HTTP_2)
        .uri(format!("http://{}{}", url.addr(), url.path))
        .header("sec-websocket-version", "13");
    if let Some(offer) = offer {
        request = request.header("sec-websocket-extensions", offer);
    }
    let mut request = request.body(()).map_err(|e| e.to_string())?;
    request
        .extensions_mut()
        .insert(h2::ext::Protocol::from_static("websocket"));
    let mut send = send
        .ready()
        .await
        .map_err(|e| format!("HTTP/2 stream: {e}"))?;
    let (response, stream) = send
        .send_request(request, false)
        .map_err(|e| format!("extended CONNECT: {e}"))?;
    let response = response
        .await
        .map_err(|e| format!("extended CONNECT answer: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("extended CONNECT answered {}", response.status()));
    }
    let extensions = response
        .headers()
        .get("sec-websocket-extensions")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok(StreamOpened {
        io: Box::new(H2Io {
            send: stream,
            recv: response.into_body(),
            buffered: Bytes::new(),
            pending: BytesMut::new(),
            eof: false,
        }),
        leftover: Vec::new(),
        extensions,
    })
}

/// One HTTP/2 stream as a byte stream: DATA frames in (their window given back as they
/// are read), writes gathered and sent as DATA frames on flush or once 16 KiB wait.
struct H2Io {
    send: h2::SendStream<Bytes>,
    recv: h2::RecvStream,
    buffered: Bytes,
    pending: BytesMut,
    eof: bool,
}

/// Gathered bytes above which a write first sends what waits.
const GATHER: usize = 16 * 1024;

impl H2Io {
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            self.send.reserve_capacity(self.pending.len());
            let room = self.send.capacity();
            if room > 0 {
                let chunk = self.pending.split_to(room.min(self.pending.len())).freeze();
                self.send
                    .send_data(chunk, false)
                    .map_err(io::Error::other)?;
                continue;
            }
            match ready!(self.send.poll_capacity(cx)) {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
                None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for H2Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.buffered.is_empty() {
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => this.buffered = data,
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
                None => this.eof = true,
            }
        }
        let n = buf.remaining().min(this.buffered.len());
        buf.put_slice(&this.buffered[..n]);
        this.buffered.advance(n);
        let _ = this.recv.flow_control().release_capacity(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pending.len() >= GATHER {
            ready!(this.poll_send(cx))?;
        }
        let n = buf.len().min(GATHER);
        this.pending.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_send(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        let _ = this.send.send_data(Bytes::new(), true);
        Poll::Ready(Ok(()))
    }
}

/// Opens `n` WebSockets, at most [`CONNECT_CONCURRENCY`] at a time, each followed by
/// one round trip of `round_trip`'s first message if given.
pub async fn open_many(
    transport: &Transport,
    addr: SocketAddr,
    url: &WsUrl,
    request: Arc<Vec<u8>>,
    offer: Option<&'static str>,
    n: usize,
    round_trip: Option<Arc<Messages>>,
) -> Result<Vec<StreamOpened>, String> {
    let permits = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut set = JoinSet::new();
    for index in 0..n {
        let permit = permits.clone().acquire_owned().await.expect("never closed");
        let (transport, url, request) = (transport.clone(), url.clone(), request.clone());
        let messages = round_trip.clone();
        set.spawn(async move {
            let mut opened = open(&transport, addr, &url, &request, offer, index).await;
            if let (Ok(o), Some(m)) = (&mut opened, messages)
                && let Err(e) = self::round_trip(o, &m).await
            {
                opened = Err(format!("round trip: {e}"));
            }
            drop(permit);
            opened
        });
    }
    let mut out = Vec::with_capacity(n);
    let mut error = None;
    while let Some(joined) = set.join_next().await {
        match joined.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok(opened) => out.push(opened),
            Err(e) => error = error.or(Some(e)),
        }
    }
    match error {
        None => Ok(out),
        Some(e) => Err(format!(
            "{} of {n} connections failed, first: {e}",
            n - out.len()
        )),
    }
}

/// One round trip of a message on an open WebSocket.
pub async fn round_trip(opened: &mut StreamOpened, messages: &Messages) -> Result<(), String> {
    let mut reader = Checker::for_messages(messages);
    let mut expected = VecDeque::from([0u8]);
    let mut done = false;
    opened
        .io
        .write_all(&messages.variants[0].frame)
        .await
        .map_err(|e| format!("write: {e}"))?;
    opened.io.flush().await.map_err(|e| format!("write: {e}"))?;
    let mut data = std::mem::take(&mut opened.leftover);
    loop {
        reader
            .feed(&data, messages, &mut expected, |_| done = true)
            .map_err(|e| format!("{e:?}"))?;
        if done {
            return if reader.mismatches() == 0 {
                Ok(())
            } else {
                Err("echo differs".into())
            };
        }
        data.clear();
        let read = tokio::time::timeout(OPEN_TIMEOUT, opened.io.read_buf(&mut data)).await;
        match read {
            Ok(Ok(0)) => return Err("closed before the echo".into()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("read: {e}")),
            Err(_) => return Err("no echo within 10 s".into()),
        }
    }
}

/// The echo loop of `client::echo` on any stream: reads, writes and flushes awaited
/// side by side until `end`.
pub async fn echo(
    opened: StreamOpened,
    messages: Arc<Messages>,
    in_flight: usize,
    start: Instant,
    end: Instant,
) -> EchoStats {
    let mut stats = EchoStats::default();
    let StreamOpened { io, leftover, .. } = opened;
    let mut conn = EchoConn::new(&messages, in_flight);
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut buf = vec![0u8; 32 * 1024];
    let result: Result<(), String> = async {
        if !leftover.is_empty() {
            conn.received(&leftover, &messages, &mut stats, start, end)?;
        }
        let deadline = tokio::time::sleep_until(end.into());
        tokio::pin!(deadline);
        let mut unflushed = false;
        loop {
            let write = conn.has_output();
            let flush = !write && unflushed;
            tokio::select! {
                biased;
                _ = &mut deadline => return Ok(()),
                read = rd.read(&mut buf) => match read {
                    Ok(0) => return Err("server closed the connection".into()),
                    Ok(n) => conn.received(&buf[..n], &messages, &mut stats, start, end)?,
                    Err(e) => return Err(format!("read: {e}")),
                },
                out = async {
                    if write {
                        let slices = conn.output(&messages);
                        wr.write_vectored(&slices).await.map(Some)
                    } else {
                        wr.flush().await.map(|()| None)
                    }
                }, if write || flush => match out {
                    Ok(Some(n)) => {
                        conn.written(n, &messages);
                        unflushed = true;
                    }
                    Ok(None) => unflushed = false,
                    Err(e) => return Err(format!("write: {e}")),
                },
            }
        }
    }
    .await;
    stats.mismatches = conn.mismatches();
    if let Err(e) = result {
        stats.errors = 1;
        stats.first_error = Some(e);
    }
    stats
}

/// Opens (TLS and upgrade included) and drops WebSockets one after the other until
/// `end`, counting those done inside `[start, end)`.
pub async fn handshakes(
    transport: Transport,
    addr: SocketAddr,
    url: WsUrl,
    request: Arc<Vec<u8>>,
    start: Instant,
    end: Instant,
) -> HandshakeStats {
    let mut stats = HandshakeStats::default();
    let mut index = 0;
    while Instant::now() < end {
        let t0 = Instant::now();
        let result = tokio::time::timeout_at(
            (end + Duration::from_secs(2)).into(),
            open(&transport, addr, &url, &request, None, index),
        )
        .await
        .unwrap_or_else(|_| Err("handshake still running after the end".into()));
        index += 1;
        let t1 = Instant::now();
        match result {
            Ok(opened) => {
                if t0 >= start && t1 < end {
                    stats.completed += 1;
                    stats
                        .latency
                        .record(t1.duration_since(t0).as_nanos() as u64);
                }
                if stats.extensions.is_none() {
                    stats.extensions = opened.extensions;
                }
            }
            Err(e) => {
                stats.errors += 1;
                stats.first_error.get_or_insert(e);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    stats
}

/// For the tests: a TLS echo server, in the process, with the certificate of `dir`.
#[cfg(test)]
pub async fn test_tls_server(dir: &Path) -> SocketAddr {
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(dir).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let _ = super::client::tests::serve_io(tls).await;
                }
            });
        }
    });
    addr
}

impl std::fmt::Debug for StreamOpened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamOpened")
            .field("leftover", &self.leftover.len())
            .field("extensions", &self.extensions)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{
        EchoSettings, Regime, deflate::Json, run_echo_in, run_handshakes_in, run_idle_in,
    };
    use super::*;

    fn settings(connections: usize, size: usize) -> EchoSettings {
        EchoSettings {
            connections,
            size,
            in_flight: 4,
            duration: Duration::from_millis(300),
            warmup: Duration::from_millis(50),
        }
    }

    /// An HTTP/2 server that allows extended CONNECT and echoes the frames of every
    /// WebSocket stream, in the process.
    async fn test_h2_server() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut connection = h2::server::Builder::new()
                        .enable_connect_protocol()
                        .handshake::<_, Bytes>(tcp)
                        .await
                        .unwrap();
                    while let Some(Ok((request, mut respond))) = connection.accept().await {
                        assert_eq!(request.method(), http::Method::CONNECT);
                        let response = http::Response::builder().status(200).body(()).unwrap();
                        let send = respond.send_response(response, false).unwrap();
                        let io = H2Io {
                            send,
                            recv: request.into_body(),
                            buffered: Bytes::new(),
                            pending: BytesMut::new(),
                            eof: false,
                        };
                        tokio::spawn(async move {
                            let (rd, wr) = tokio::io::split(io);
                            let _ =
                                super::super::client::tests::echo_frames(rd, wr, Vec::new(), false)
                                    .await;
                        });
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn tls_echo_handshakes_and_idle() {
        let dir = std::env::temp_dir().join(format!("duplex-load-tls-{}", std::process::id()));
        let addr = test_tls_server(&dir).await;
        let url = WsUrl::parse(&format!("ws://{addr}/")).unwrap();
        let regime = Regime {
            tls: true,
            tls_dir: Some(dir.clone()),
            ..Regime::default()
        };
        let me = Some(std::process::id());
        for size in [16, 70_000] {
            let r = run_echo_in(&url, &settings(3, size), &regime, me)
                .await
                .unwrap();
            assert!(r.messages > 0, "size {size}");
            assert_eq!((r.mismatches, r.errors), (0, 0), "{:?}", r.first_error);
        }
        let h = run_handshakes_in(
            &url,
            2,
            Duration::from_millis(200),
            Duration::ZERO,
            &regime,
            me,
        )
        .await
        .unwrap();
        assert!(h.per_s > 0.0);
        assert_eq!(h.errors, 0, "{:?}", h.first_error);
        let i = run_idle_in(&url, 10, &regime, me, Duration::ZERO, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(i.connections, 10);
        // Both sides of a deflate echo over TLS.
        let deflate = Regime {
            deflate: true,
            json: Some(Json::Chat),
            ..regime
        };
        let r = run_echo_in(&url, &settings(2, 0), &deflate, me)
            .await
            .unwrap();
        assert!(r.messages > 0);
        assert_eq!((r.mismatches, r.errors), (0, 0), "{:?}", r.first_error);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn deflate_echo_on_plain_tcp() {
        let addr = super::super::client::tests::test_server(false).await;
        let url = WsUrl::parse(&format!("ws://{addr}/")).unwrap();
        for json in [Json::Chat, Json::Ticker(4096)] {
            let regime = Regime {
                deflate: true,
                json: Some(json),
                ..Regime::default()
            };
            let r = run_echo_in(&url, &settings(3, 0), &regime, None)
                .await
                .unwrap();
            assert!(r.messages > 0);
            assert_eq!((r.mismatches, r.errors), (0, 0), "{:?}", r.first_error);
            assert_eq!(r.extensions.as_deref(), Some("permessage-deflate"));
            // Compressed both ways: fewer bytes than the JSON.
            let plain = super::super::deflate::messages(json, false).size as f64;
            assert!(r.sent_bytes_per_msg < plain && r.wire_bytes_per_msg < plain);
            let i = run_idle_in(&url, 5, &regime, None, Duration::ZERO, Duration::ZERO)
                .await
                .unwrap();
            assert_eq!(i.connections, 5);
        }
    }

    #[tokio::test]
    async fn websockets_over_http2() {
        let addr = test_h2_server().await;
        let url = WsUrl::parse(&format!("ws://{addr}/ws")).unwrap();
        for connections in [1, 3] {
            let regime = Regime {
                h2: Some(connections),
                ..Regime::default()
            };
            let r = run_echo_in(&url, &settings(5, 1024), &regime, None)
                .await
                .unwrap();
            assert!(r.messages > 0);
            assert_eq!((r.mismatches, r.errors), (0, 0), "{:?}", r.first_error);
        }
        let regime = Regime {
            h2: Some(2),
            ..Regime::default()
        };
        let r = run_echo_in(&url, &settings(2, 70_000), &regime, None)
            .await
            .unwrap();
        assert_eq!((r.mismatches, r.errors), (0, 0), "{:?}", r.first_error);
        let i = run_idle_in(&url, 8, &regime, None, Duration::ZERO, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(i.connections, 8);
        let h = run_handshakes_in(
            &url,
            2,
            Duration::from_millis(100),
            Duration::ZERO,
            &regime,
            None,
        )
        .await
        .unwrap();
        assert!(h.per_s > 0.0);
        assert_eq!(h.errors, 0, "{:?}", h.first_error);
    }
}
