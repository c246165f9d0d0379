//! WebSockets over HTTP/2 (RFC 8441) on 127.0.0.1: a hyper server (HTTP/1.1 and HTTP/2
//! on one port, extended CONNECT enabled) upgrading with `duplex_tokio::hyper`, against
//! the `h2` crate's client (raw, and through `duplex_tokio::h2`), over cleartext HTTP/2
//! and over TLS with ALPN. Needs the `hyper` and `http2` features.
#![cfg(all(feature = "hyper", feature = "http2"))]

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use duplex_tokio::h2::Http2Connection;
use duplex_tokio::http::{Method, Request, StatusCode, Version};
use duplex_tokio::hyper::{Full, upgrade_with};
use duplex_tokio::tokio_rustls::TlsAcceptor;
use duplex_tokio::tokio_rustls::rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use duplex_tokio::tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use duplex_tokio::{
    Acceptance, ClientRequest, CloseCode, CloseFrame, Config, Message, connect_with,
};
use hyper::Response;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);

/// What the server saw of each WebSocket.
#[derive(Debug)]
struct Seen {
    http2: bool,
    compressed: bool,
    protocol: Option<String>,
    close: Option<CloseFrame>,
}

/// How the test server serves a connection.
#[derive(Clone, Copy)]
struct Options {
    /// Advertise SETTINGS_ENABLE_CONNECT_PROTOCOL.
    connect_protocol: bool,
    /// ALPN for TLS; `None` serves cleartext (HTTP/1.1 or HTTP/2 with prior knowledge).
    alpn: Option<&'static [&'static [u8]]>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A self-signed certificate for `localhost`: the server's configuration with `alpn`,
/// and a client configuration trusting it.
fn pki(alpn: &[&[u8]]) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
    let mut server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key.into())
        .unwrap();
    server.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

/// A hyper server that upgrades every request (choosing `chat.v1` when offered) and
/// echoes data messages; reports what it saw of each WebSocket once it ends. Returns
/// its port, the client TLS configuration (for TLS servers) and the reports.
async fn server(
    options: Options,
) -> (
    u16,
    Option<Arc<ClientConfig>>,
    mpsc::UnboundedReceiver<Seen>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (acceptor, client_tls) = match options.alpn {
        Some(alpn) => {
            let (server, client) = pki(alpn);
            (Some(TlsAcceptor::from(server)), Some(client))
        }
        None => (None, None),
    };
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let config = Config::default();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let config = config.clone();
            let seen_tx = seen_tx.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service = service_fn(move |mut request: Request<Incoming>| {
                    let result = upgrade_with(&mut request, &config, |_, offer| {
                        let mut acceptance = Acceptance::default();
                        if let Some(protocol) = offer.select_protocol(&["chat.v1"]) {
                            acceptance = acceptance.protocol(protocol);
                        }
                        Ok(acceptance)
                    });
                    let seen_tx = seen_tx.clone();
                    let response = match result {
                        Ok((response, websocket)) => {
                            tokio::spawn(async move {
                                let http2 = websocket.is_http2();
                                let protocol = websocket.protocol().map(str::to_owned);
                                let mut ws = websocket.await.unwrap();
                                let mut close = None;
                                while let Some(Ok(message)) = ws.recv().await {
                                    match message {
                                        Message::Close(frame) => close = frame,
                                        message if message.is_data() => {
                                            let _ = ws.send(message).await;
                                        }
                                        _ => {}
                                    }
                                }
                                let compressed = ws.is_compressed();
                                let _ = seen_tx.send(Seen {
                                    http2,
                                    compressed,
                                    protocol,
                                    close,
                                });
                            });
                            response
                        }
                        Err(error) => error.into_response(),
                    };
                    async move { Ok::<Response<Full<Bytes>>, Infallible>(response) }
                });
                let mut builder = auto::Builder::new(TokioExecutor::new());
                if options.connect_protocol {
                    builder.http2().enable_connect_protocol();
                }
                match acceptor {
                    Some(acceptor) => {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let _ = builder
                            .serve_connection_with_upgrades(TokioIo::new(tls), service)
                            .await;
                    }
                    None => {
                        let _ = builder
                            .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                            .await;
                    }
                }
            });
        }
    });
    (port, client_tls, seen)
}

const H2C: Options = Options {
    connect_protocol: true,
    alpn: None,
};

async fn h2c(port: u16) -> Http2Connection {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    Http2Connection::handshake(tcp, &Config::default())
        .await
        .unwrap()
}

async fn echo(
    ws: &mut duplex_tokio::WebSocketStream<impl tokio::io::AsyncRead + tokio::io::AsyncWrite>,
    message: Message,
) {
    ws.send(message.clone()).await.unwrap();
    let echoed = timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed, message);
}

#[tokio::test]
async fn extended_connect_echoes_with_deflate_and_subprotocol() {
    let (port, _, mut seen) = server(H2C).await;
    let connection = h2c(port).await;
    assert!(connection.supports_websocket());
    let request = ClientRequest::new(&format!("ws://127.0.0.1:{port}/chat"))
        .unwrap()
        .protocol("chat.v2")
        .protocol("chat.v1");
    let (mut ws, response) = timeout(LIMIT, connection.websocket(request, Config::default()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.response.status(), StatusCode::OK);
    assert!(
        !response
            .response
            .headers()
            .contains_key("sec-websocket-accept")
    );
    assert_eq!(response.negotiated.protocol.as_deref(), Some("chat.v1"));
    assert!(response.negotiated.deflate.is_some(), "{response:?}");
    assert!(ws.is_compressed());
    echo(&mut ws, Message::text("hello over HTTP/2 ".repeat(20))).await;
    // 1 MiB each way: more than HTTP/2's default 64 KiB windows, so it only passes when
    // both sides give the window back as they read.
    let big: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
    echo(&mut ws, Message::binary(big)).await;
    ws.close(Some(CloseFrame::new(CloseCode::Normal, "bye")))
        .await
        .unwrap();
    let report = timeout(LIMIT, seen.recv()).await.unwrap().unwrap();
    assert!(report.http2 && report.compressed, "{report:?}");
    assert_eq!(report.protocol.as_deref(), Some("chat.v1"));
    assert_eq!(report.close.unwrap().code, CloseCode::Normal);
}

#[tokio::test]
async fn websockets_share_a_connection_and_a_close_ends_only_its_stream() {
    let (port, _, mut seen) = server(H2C).await;
    let connection = h2c(port).await;
    let url = format!("ws://127.0.0.1:{port}/");
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let request = ClientRequest::new(&url).unwrap();
        let (ws, _) = connection
            .websocket(request, Config::default())
            .await
            .unwrap();
        sockets.push(ws);
    }
    for (i, ws) in sockets.iter_mut().enumerate() {
        echo(ws, Message::text(format!("socket {i}"))).await;
    }
    let mut first = sockets.remove(0);
    first.close(None).await.unwrap();
    assert!(timeout(LIMIT, seen.recv()).await.unwrap().unwrap().http2);
    // The others go on, and the connection still opens new WebSockets.
    for ws in &mut sockets {
        echo(ws, Message::binary(vec![1, 2, 3])).await;
    }
    let (mut later, _) = connection
        .websocket(ClientRequest::new(&url).unwrap(), Config::default())
        .await
        .unwrap();
    echo(&mut later, Message::text("after a close")).await;
}

#[tokio::test]
async fn http1_upgrades_still_work_on_the_same_server() {
    let (port, _, mut seen) = server(H2C).await;
    let (mut ws, response) = connect_with(
        ClientRequest::new(&format!("ws://127.0.0.1:{port}/")).unwrap(),
        Config::default(),
    )
    .await
    .unwrap();
    assert_eq!(response.response.status(), StatusCode::SWITCHING_PROTOCOLS);
    echo(&mut ws, Message::text("HTTP/1.1")).await;
    ws.close(None).await.unwrap();
    assert!(!timeout(LIMIT, seen.recv()).await.unwrap().unwrap().http2);
}

#[tokio::test]
async fn without_enable_connect_protocol_the_client_is_told_so() {
    let (port, _, _) = server(Options {
        connect_protocol: false,
        alpn: None,
    })
    .await;
    let connection = h2c(port).await;
    assert!(!connection.supports_websocket());
    let request = ClientRequest::new(&format!("ws://127.0.0.1:{port}/")).unwrap();
    let error = connection
        .websocket(request, Config::default())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("extended CONNECT"), "{error}");
}

/// Extended CONNECT requests written with the `h2` crate alone, to see the server's
/// answers to bad ones.
#[tokio::test]
async fn bad_extended_connects_get_http_errors_and_the_connection_lives_on() {
    let (port, _, _) = server(H2C).await;
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (send, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let request = |version: &str, protocol: &'static str| {
        let mut request = Request::builder()
            .method(Method::CONNECT)
            .version(Version::HTTP_2)
            .uri(format!("http://127.0.0.1:{port}/"))
            .header("sec-websocket-version", version)
            .body(())
            .unwrap();
        request
            .extensions_mut()
            .insert(h2::ext::Protocol::from_static(protocol));
        request
    };
    let status = |request| {
        let send = send.clone();
        async move {
            let mut send = send.ready().await.unwrap();
            let (response, _stream) = send.send_request(request, false).unwrap();
            timeout(LIMIT, response).await.unwrap().unwrap().status()
        }
    };
    assert_eq!(
        status(request("12", "websocket")).await,
        StatusCode::UPGRADE_REQUIRED
    );
    assert_eq!(
        status(request("13", "webtransport")).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(status(request("13", "websocket")).await, StatusCode::OK);
}

#[tokio::test]
async fn connect_with_http2_uses_h2_over_tls_when_offered() {
    let (port, client_tls, mut seen) = server(Options {
        connect_protocol: true,
        alpn: Some(&[b"h2", b"http/1.1"]),
    })
    .await;
    let config = Config::default()
        .tls_client_config(client_tls.unwrap())
        .http2(true);
    let url = format!("wss://localhost:{port}/");
    let (mut ws, response) = connect_with(ClientRequest::new(&url).unwrap(), config.clone())
        .await
        .unwrap();
    assert_eq!(response.response.status(), StatusCode::OK);
    echo(&mut ws, Message::text("wss over h2")).await;
    ws.close(None).await.unwrap();
    assert!(timeout(LIMIT, seen.recv()).await.unwrap().unwrap().http2);

    // One connection for several WebSockets.
    let connection = Http2Connection::connect(&url, &config).await.unwrap();
    let (mut a, _) = connection
        .websocket(ClientRequest::new(&url).unwrap(), config.clone())
        .await
        .unwrap();
    let (mut b, _) = connection
        .websocket(ClientRequest::new(&url).unwrap(), config.clone())
        .await
        .unwrap();
    echo(&mut a, Message::text("a")).await;
    echo(&mut b, Message::text("b")).await;
}

#[tokio::test]
async fn connect_with_http2_falls_back_to_http1() {
    // The server speaks HTTP/2 but without extended CONNECT: a second connection, HTTP/1.1.
    let (port, client_tls, mut seen) = server(Options {
        connect_protocol: false,
        alpn: Some(&[b"h2", b"http/1.1"]),
    })
    .await;
    let config = Config::default()
        .tls_client_config(client_tls.unwrap())
        .http2(true);
    let url = format!("wss://localhost:{port}/");
    let (mut ws, response) = connect_with(ClientRequest::new(&url).unwrap(), config)
        .await
        .unwrap();
    assert_eq!(response.response.status(), StatusCode::SWITCHING_PROTOCOLS);
    echo(&mut ws, Message::text("fallback")).await;
    ws.close(None).await.unwrap();
    assert!(!timeout(LIMIT, seen.recv()).await.unwrap().unwrap().http2);

    // The server offers only HTTP/1.1 by ALPN: the same connection goes on with it.
    let (port, client_tls, _) = server(Options {
        connect_protocol: true,
        alpn: Some(&[b"http/1.1"]),
    })
    .await;
    let config = Config::default()
        .tls_client_config(client_tls.unwrap())
        .http2(true);
    let url = format!("wss://localhost:{port}/");
    let (mut ws, response) = connect_with(ClientRequest::new(&url).unwrap(), config)
        .await
        .unwrap();
    assert_eq!(response.response.status(), StatusCode::SWITCHING_PROTOCOLS);
    echo(&mut ws, Message::text("http/1.1 by ALPN")).await;
}

/// An HTTP/2 server written with the `h2` crate alone that answers every extended
/// CONNECT with `status` and `headers`, to see the client refuse bad answers.
async fn raw_h2_server(status: u16, headers: &'static [(&'static str, &'static str)]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut connection = h2::server::Builder::new()
                    .enable_connect_protocol()
                    .handshake::<_, Bytes>(tcp)
                    .await
                    .unwrap();
                while let Some(Ok((_, mut respond))) = connection.accept().await {
                    let mut response = hyper::Response::builder().status(status);
                    for (name, value) in headers {
                        response = response.header(*name, *value);
                    }
                    let _ = respond.send_response(response.body(()).unwrap(), false);
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn the_client_refuses_bad_http2_answers() {
    let attempt = |port: u16, request: ClientRequest| async move {
        let connection = h2c(port).await;
        timeout(LIMIT, connection.websocket(request, Config::default()))
            .await
            .unwrap()
            .unwrap_err()
    };
    let url = |port: u16| format!("ws://127.0.0.1:{port}/");
    let port = raw_h2_server(403, &[]).await;
    let error = attempt(port, ClientRequest::new(&url(port)).unwrap()).await;
    assert!(error.to_string().contains("403"), "{error}");
    let port = raw_h2_server(200, &[("sec-websocket-protocol", "unasked")]).await;
    let request = ClientRequest::new(&url(port)).unwrap().protocol("chat.v1");
    let error = attempt(port, request).await;
    assert!(error.to_string().contains("unasked"), "{error}");
    let port = raw_h2_server(
        200,
        &[("sec-websocket-extensions", "permessage-deflate; bogus")],
    )
    .await;
    let error = attempt(port, ClientRequest::new(&url(port)).unwrap()).await;
    assert!(
        matches!(error, duplex_tokio::HandshakeError::Protocol(_)),
        "{error:?}"
    );
}
