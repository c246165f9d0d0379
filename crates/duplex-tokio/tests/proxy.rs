//! `ws://` and `wss://` through real proxies on 127.0.0.1: tinyproxy for HTTP CONNECT
//! and microsocks for SOCKS5, each started by its test on a free port in a temporary
//! directory and stopped at the end (Debian: `apt-get install tinyproxy microsocks`).
//!
//! Without a proxy binary the test that needs it fails when `CI` is set and otherwise
//! prints why it skipped.

use std::net::{IpAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use duplex_tokio::tokio_rustls::TlsAcceptor;
use duplex_tokio::tokio_rustls::rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use duplex_tokio::tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use duplex_tokio::{
    ClientRequest, Config, HandshakeError, Message, Proxy, ProxyError, WebSocketStream, accept,
    connect_with,
};
use tokio::net::TcpListener;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);

/// A proxy process and its directory, both gone when dropped.
struct ProxyProcess {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl ProxyProcess {
    /// What the proxy logged so far (tinyproxy's log file, microsocks' output), shown
    /// when it fails to start.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

/// The path of `binary` on the PATH, or `None` after saying why the test skips (only
/// outside CI: in CI a missing proxy fails the test).
fn find(binary: &str, package: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        let why = format!(
            "this test needs the `{binary}` proxy (Debian: apt-get install -y {package}; \
             .ci/run installs it)"
        );
        if std::env::var_os("CI").is_some() {
            panic!("{why}");
        }
        // Past the test harness' capture, so the reason shows in a passing run.
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), "skipped: {why}");
    }
    found
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn temp_dir(name: &str) -> PathBuf {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "duplex-proxy-{name}-{}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits until the proxy accepts connections (at most 10 s).
fn wait_listening(process: &mut ProxyProcess) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", process.port)).is_err() {
        if let Ok(Some(status)) = process.child.try_wait() {
            panic!("the proxy exited with {status}: {}", process.log());
        }
        assert!(start.elapsed() < LIMIT, "the proxy did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The address the proxies connect out from (`Bind` for tinyproxy, `-b` for
/// microsocks): the echo server sees it as the peer, which shows that a connection
/// went through a proxy.
const TINYPROXY_OUT: &str = "127.0.0.2";
const MICROSOCKS_OUT: &str = "127.0.0.3";

/// tinyproxy on a free port, allowing CONNECT to any port from 127.0.0.1, with Basic
/// credentials when given.
fn tinyproxy(credentials: Option<(&str, &str)>) -> Option<ProxyProcess> {
    let binary = find("tinyproxy", "tinyproxy")?;
    let dir = temp_dir("tinyproxy");
    let port = free_port();
    let mut conf = format!(
        "Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 30\nMaxClients 64\n\
         LogLevel Connect\nLogFile \"{}\"\nBind {TINYPROXY_OUT}\n",
        dir.join("log").display()
    );
    if let Some((user, password)) = credentials {
        conf.push_str(&format!("BasicAuth {user} {password}\n"));
    }
    // No ConnectPort line: CONNECT is allowed to every port (the test servers' are
    // random).
    std::fs::write(dir.join("tinyproxy.conf"), conf).unwrap();
    let child = Command::new(binary)
        .arg("-d")
        .arg("-c")
        .arg(dir.join("tinyproxy.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut process = ProxyProcess { child, dir, port };
    wait_listening(&mut process);
    Some(process)
}

/// microsocks on a free port, with username/password when given.
fn microsocks(credentials: Option<(&str, &str)>) -> Option<ProxyProcess> {
    let binary = find("microsocks", "microsocks")?;
    let dir = temp_dir("microsocks");
    let port = free_port();
    let mut command = Command::new(binary);
    command
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-b",
            MICROSOCKS_OUT,
        ])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("log")).unwrap())
        .stderr(Stdio::null());
    if let Some((user, password)) = credentials {
        command.args(["-u", user, "-P", password]);
    }
    let child = command.spawn().unwrap();
    let mut process = ProxyProcess { child, dir, port };
    wait_listening(&mut process);
    Some(process)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// An echo server on 127.0.0.1 (TLS with a self-signed certificate for `127.0.0.1` when
/// `tls`); returns its URL and, for TLS, a client configuration trusting it.
async fn echo_server(tls: bool) -> (String, Option<Arc<ClientConfig>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut acceptor = None;
    let mut client = None;
    if tls {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let cert: CertificateDer<'static> = certified.cert.der().clone();
        let key = PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key.into())
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(cert).unwrap();
        client = Some(Arc::new(
            ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        ));
        acceptor = Some(TlsAcceptor::from(Arc::new(server)));
    }
    tokio::spawn(async move {
        while let Ok((tcp, peer)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    Some(acceptor) => {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let Ok(ws) = accept(tls).await else { return };
                        echo_with_peer(ws, peer.ip()).await;
                    }
                    None => {
                        let Ok(ws) = accept(tcp).await else { return };
                        echo_with_peer(ws, peer.ip()).await;
                    }
                }
            });
        }
    });
    let scheme = if tls { "wss" } else { "ws" };
    (format!("{scheme}://127.0.0.1:{port}/echo"), client)
}

/// Echoes data messages, except `peer?`, answered with the address the TCP connection
/// came from.
async fn echo_with_peer<S>(mut ws: WebSocketStream<S>, peer: IpAddr)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite,
{
    while let Some(Ok(message)) = ws.recv().await {
        let answer = if message == Message::text("peer?") {
            Message::text(peer.to_string())
        } else {
            message
        };
        if answer.is_data() && ws.send(answer).await.is_err() {
            break;
        }
    }
}

/// Echoes a message on `ws`, asks the server where the connection came from, closes.
async fn exchange<S>(mut ws: WebSocketStream<S>) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite,
{
    let message = Message::text("through the proxy");
    ws.send(message.clone()).await.unwrap();
    assert_eq!(
        timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap(),
        message
    );
    ws.send(Message::text("peer?")).await.unwrap();
    let peer = timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
    ws.close(None).await.unwrap();
    peer.as_text().unwrap().to_owned()
}

/// Connects to a fresh echo server (`tls` for wss) through `proxy`, echoes a message
/// and closes; returns the address the server saw the connection come from.
async fn round_trip(proxy: Proxy, tls: bool) -> Result<String, HandshakeError> {
    let (url, client_tls) = echo_server(tls).await;
    let mut config = Config::default().proxy(proxy);
    if let Some(client_tls) = client_tls {
        config = config.tls_client_config(client_tls);
    }
    let request = ClientRequest::new(&url).unwrap();
    let (ws, _) = timeout(LIMIT, connect_with(request, config))
        .await
        .unwrap()?;
    Ok(exchange(ws).await)
}

#[tokio::test]
async fn http_connect_proxy_carries_ws_and_wss() {
    let Some(proxy) = tinyproxy(None) else { return };
    for tls in [false, true] {
        let peer = round_trip(Proxy::http("127.0.0.1", proxy.port), tls)
            .await
            .unwrap();
        assert_eq!(peer, TINYPROXY_OUT, "tls: {tls}");
    }
}

#[tokio::test]
async fn http_connect_proxy_with_basic_credentials() {
    let Some(proxy) = tinyproxy(Some(("alice", "s3cret"))) else {
        return;
    };
    let url = format!("http://alice:s3cret@127.0.0.1:{}", proxy.port);
    let peer = round_trip(Proxy::parse(&url).unwrap(), true).await.unwrap();
    assert_eq!(peer, TINYPROXY_OUT);
    let wrong = Proxy::http("127.0.0.1", proxy.port).credentials("alice", "wrong");
    let error = round_trip(wrong, false).await.unwrap_err();
    assert!(
        matches!(&error, HandshakeError::Proxy(ProxyError::ConnectRefused(status)) if *status == 401 || *status == 407),
        "{error:?}"
    );
}

#[tokio::test]
async fn socks5_proxy_carries_ws_and_wss() {
    let Some(proxy) = microsocks(None) else {
        return;
    };
    for tls in [false, true] {
        let peer = round_trip(Proxy::socks5("127.0.0.1", proxy.port), tls)
            .await
            .unwrap();
        assert_eq!(peer, MICROSOCKS_OUT, "tls: {tls}");
    }
    // The proxy resolves names itself: `localhost` goes as a domain name.
    let (url, _) = echo_server(false).await;
    let url = url.replace("127.0.0.1", "localhost");
    let config = Config::default().proxy(Proxy::socks5("127.0.0.1", proxy.port));
    let (ws, _) = timeout(
        LIMIT,
        connect_with(ClientRequest::new(&url).unwrap(), config),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(exchange(ws).await, MICROSOCKS_OUT);
}

#[tokio::test]
async fn socks5_proxy_with_credentials() {
    let Some(proxy) = microsocks(Some(("bob", "hunter2"))) else {
        return;
    };
    let url = format!("socks5://bob:hunter2@127.0.0.1:{}", proxy.port);
    for tls in [false, true] {
        let peer = round_trip(Proxy::parse(&url).unwrap(), tls).await.unwrap();
        assert_eq!(peer, MICROSOCKS_OUT, "tls: {tls}");
    }
    let wrong = Proxy::socks5("127.0.0.1", proxy.port).credentials("bob", "wrong");
    let error = round_trip(wrong, false).await.unwrap_err();
    assert!(
        matches!(error, HandshakeError::Proxy(ProxyError::AuthRejected)),
        "{error:?}"
    );
    // Without credentials, the proxy accepts none of our methods.
    let none = Proxy::socks5("127.0.0.1", proxy.port);
    let error = round_trip(none, false).await.unwrap_err();
    assert!(
        matches!(error, HandshakeError::Proxy(ProxyError::NoAcceptableAuth)),
        "{error:?}"
    );
}

/// The environment is read in a child process of this test binary (changing the
/// environment of a running multi-threaded test process is not sound); the child
/// checks where its connections came from.
#[tokio::test]
async fn proxies_from_the_environment() {
    let Some(http) = tinyproxy(None) else { return };
    let Some(socks) = microsocks(None) else {
        return;
    };
    let run = |vars: &[(&str, String)], expected_peer: &str| {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.args(["--exact", "env_child", "--ignored", "--nocapture"]);
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"] {
            command
                .env_remove(name)
                .env_remove(name.to_ascii_lowercase());
        }
        for (name, value) in vars {
            command.env(name, value);
        }
        command.env("DUPLEX_TEST_EXPECTED_PEER", expected_peer);
        let output = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let http_url = format!("http://127.0.0.1:{}", http.port);
    let socks_url = format!("socks5://127.0.0.1:{}", socks.port);
    // ws:// through HTTP_PROXY, wss:// through HTTPS_PROXY.
    run(
        &[("HTTP_PROXY", http_url.clone()), ("https_proxy", http_url)],
        TINYPROXY_OUT,
    );
    // ALL_PROXY alone: SOCKS5 for both.
    run(&[("all_proxy", socks_url.clone())], MICROSOCKS_OUT);
    // NO_PROXY covers 127.0.0.1: direct.
    run(
        &[
            ("ALL_PROXY", socks_url),
            ("NO_PROXY", "localhost,127.0.0.1".into()),
        ],
        "127.0.0.1",
    );
}

/// Run by [`proxies_from_the_environment`] with the proxy variables set: ws:// and
/// wss:// with `Config::proxy_from_env()`, arriving from `DUPLEX_TEST_EXPECTED_PEER`.
#[tokio::test]
#[ignore = "a child process of proxies_from_the_environment, which sets its environment"]
async fn env_child() {
    let expected = std::env::var("DUPLEX_TEST_EXPECTED_PEER").unwrap();
    for tls in [false, true] {
        let (url, client_tls) = echo_server(tls).await;
        let mut config = Config::default().proxy_from_env();
        if let Some(client_tls) = client_tls {
            config = config.tls_client_config(client_tls);
        }
        let (ws, _) = timeout(
            LIMIT,
            connect_with(ClientRequest::new(&url).unwrap(), config),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(exchange(ws).await, expected, "tls: {tls}");
    }
}

/// A "proxy" that answers `reply` to whatever it is sent, then closes.
async fn broken_proxy(reply: &'static [u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let mut first = [0u8; 64];
            let _ = tcp.read(&mut first).await;
            let _ = tcp.write_all(reply).await;
        }
    });
    port
}

/// Bad answers from a proxy are typed errors, not panics or hangs.
#[tokio::test]
async fn broken_proxy_answers_are_typed_errors() {
    let target = "ws://127.0.0.1:9/";
    let attempt = |proxy: Proxy| async move {
        let config = Config::default().proxy(proxy);
        timeout(
            LIMIT,
            connect_with(ClientRequest::new(target).unwrap(), config),
        )
        .await
        .unwrap()
        .unwrap_err()
    };
    let port = broken_proxy(b"garbage\r\n\r\n").await;
    let error = attempt(Proxy::http("127.0.0.1", port)).await;
    assert!(
        matches!(error, HandshakeError::Proxy(ProxyError::Malformed(_))),
        "{error:?}"
    );
    let port = broken_proxy(b"HTTP/1.1 403 Forbidden\r\n\r\n").await;
    let error = attempt(Proxy::http("127.0.0.1", port)).await;
    assert!(
        matches!(&error, HandshakeError::Proxy(ProxyError::ConnectRefused(s)) if *s == 403),
        "{error:?}"
    );
    let port = broken_proxy(b"HTTP/1.1 200 OK\r\n").await; // closes mid-head
    let error = attempt(Proxy::http("127.0.0.1", port)).await;
    assert!(
        matches!(error, HandshakeError::Proxy(ProxyError::Malformed(_))),
        "{error:?}"
    );
    let port = broken_proxy(b"\x04\x00").await; // SOCKS4, not 5
    let error = attempt(Proxy::socks5("127.0.0.1", port)).await;
    assert!(
        matches!(error, HandshakeError::Proxy(ProxyError::Malformed(_))),
        "{error:?}"
    );
    let port = broken_proxy(b"\x05\x02").await; // a method we did not offer
    let error = attempt(Proxy::socks5("127.0.0.1", port)).await;
    assert!(
        matches!(error, HandshakeError::Proxy(ProxyError::Malformed(_))),
        "{error:?}"
    );
    let port = broken_proxy(b"\x05").await; // cut short: an I/O error that names the proxy
    let error = attempt(Proxy::socks5("127.0.0.1", port)).await;
    assert!(
        matches!(
            &error,
            HandshakeError::Proxy(ProxyError::Io { proxy, .. }) if *proxy == format!("127.0.0.1:{port}")
        ),
        "{error:?}"
    );
}

/// A proxy that is not there: the error names the proxy (not the target), for both kinds,
/// and keeps the I/O error as its source.
#[tokio::test]
async fn a_dead_proxy_is_named_in_the_error() {
    let (url, _) = echo_server(false).await;
    // A port that was free a moment ago: nothing listens on it.
    let dead = free_port();
    for scheme in ["http", "socks5"] {
        let proxy = Proxy::parse(&format!("{scheme}://127.0.0.1:{dead}")).unwrap();
        let config = Config::default().proxy(proxy);
        let result = timeout(
            LIMIT,
            connect_with(ClientRequest::new(&url).unwrap(), config),
        )
        .await
        .expect("refused at once");
        let Err(error) = result else {
            panic!("{scheme}: no proxy, no WebSocket");
        };
        match &error {
            HandshakeError::Proxy(ProxyError::Io { proxy, error: io }) => {
                assert_eq!(proxy, &format!("127.0.0.1:{dead}"));
                assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
            }
            other => panic!("{scheme}: {other:?}"),
        }
        let text = error.to_string();
        assert!(text.contains(&format!("proxy 127.0.0.1:{dead}")), "{text}");
        assert!(std::error::Error::source(&error).is_some());
    }
}
