//! wss:// over rustls on 127.0.0.1, with a self-signed certificate made by the test.

use std::sync::Arc;
use std::time::Duration;

use duplex_tokio::tokio_rustls::rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use duplex_tokio::tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use duplex_tokio::tokio_rustls::{TlsAcceptor, server::TlsStream};
use duplex_tokio::{
    ClientRequest, CloseCode, CloseFrame, Config, HandshakeError, Message, accept, connect_with,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);

/// A certificate for `localhost` and the server and client configurations around it.
struct Pki {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn self_signed_localhost() -> Pki {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
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
    let client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Pki {
        server: Arc::new(server),
        client: Arc::new(client),
    }
}

/// The server's view of one connection: whether deflate was on and the close frame
/// it received.
type Seen = (bool, Vec<Message>);

/// Accepts one TLS connection and echoes data messages until the stream ends.
async fn tls_echo_one(
    listener: TcpListener,
    acceptor: TlsAcceptor,
) -> Result<Seen, std::io::Error> {
    let (tcp, _) = listener.accept().await?;
    let tls: TlsStream<TcpStream> = acceptor.accept(tcp).await?;
    let mut ws = accept(tls).await.unwrap();
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
    Ok((compressed, control))
}

async fn bind() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

#[tokio::test]
async fn wss_round_trip_with_deflate_and_clean_close() {
    let pki = self_signed_localhost();
    let (listener, port) = bind().await;
    let server = tokio::spawn(tls_echo_one(listener, TlsAcceptor::from(pki.server)));

    let request = ClientRequest::new(&format!("wss://localhost:{port}/")).unwrap();
    assert!(request.is_tls());
    let config = Config::default().tls_client_config(pki.client);
    let (mut ws, response) = timeout(LIMIT, connect_with(request, config))
        .await
        .unwrap()
        .unwrap();
    assert!(ws.is_compressed());
    assert_eq!(
        response.response.headers()["sec-websocket-extensions"],
        "permessage-deflate; server_no_context_takeover"
    );

    let text = "over TLS, compressed; ".repeat(10_000);
    let binary: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    for message in [
        Message::text("hello"),
        Message::text(text.as_str()),
        Message::binary(binary),
        Message::binary(Vec::new()),
    ] {
        timeout(LIMIT, ws.send(message.clone()))
            .await
            .unwrap()
            .unwrap();
        let echoed = timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
        assert!(echoed == message, "the echo differs");
    }

    let bye = CloseFrame::new(CloseCode::Normal, "bye over TLS");
    timeout(LIMIT, ws.close(Some(bye.clone())))
        .await
        .unwrap()
        .unwrap();
    assert!(timeout(LIMIT, ws.recv()).await.unwrap().is_none());
    let (compressed, control) = timeout(LIMIT, server).await.unwrap().unwrap().unwrap();
    assert!(compressed, "the server negotiated deflate too");
    assert_eq!(control, vec![Message::Close(Some(bye))]);
}

#[tokio::test]
async fn default_web_pki_config_refuses_a_self_signed_certificate() {
    let pki = self_signed_localhost();
    let (listener, port) = bind().await;
    let server = tokio::spawn(tls_echo_one(listener, TlsAcceptor::from(pki.server)));

    let request = ClientRequest::new(&format!("wss://localhost:{port}/")).unwrap();
    let result = timeout(LIMIT, connect_with(request, Config::default()))
        .await
        .expect("a refused certificate must fail the connection, not hang it");
    let error = result.expect_err("a self-signed certificate is not in the web PKI");
    match &error {
        HandshakeError::Io(io) => {
            let text = io.to_string();
            assert!(
                text.contains("certificate"),
                "not a certificate error: {text}"
            );
            eprintln!("refused as expected: {text}");
        }
        other => panic!("expected an I/O (TLS) error, got {other:?}"),
    }
    // The server sees the TLS handshake fail as well; it must not hang either.
    let served = timeout(LIMIT, server).await.unwrap().unwrap();
    assert!(served.is_err(), "the server's TLS accept should fail");
}
