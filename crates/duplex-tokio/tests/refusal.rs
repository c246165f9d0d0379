//! A refused client sees what the server said: status, headers and body.

use std::time::Duration;

use duplex_tokio::http::{HeaderValue, StatusCode, header};
use duplex_tokio::{Config, HandshakeError, Rejection, accept_with, connect};
use tokio::net::TcpListener;

#[tokio::test]
async fn a_refused_client_gets_the_status_headers_and_body_and_the_server_says_whose_doing() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        accept_with(tcp, Config::default(), |_, _| {
            let mut response =
                Rejection::new(StatusCode::UNAUTHORIZED, "origin not allowed").into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Err(Rejection::from(response))
        })
        .await
    });
    let error = tokio::time::timeout(Duration::from_secs(10), connect(&url))
        .await
        .unwrap()
        .unwrap_err();
    let response = error.refused().expect("a refusal");
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers[header::WWW_AUTHENTICATE], "Bearer");
    assert_eq!(response.text(), Some("origin not allowed"));
    assert!(
        error.to_string().contains("origin not allowed"),
        "Display says what the server said: {error}"
    );
    match server.await.unwrap() {
        Err(HandshakeError::Refused(duplex_tokio::ServerError::Refused(status))) => {
            assert_eq!(status, StatusCode::UNAUTHORIZED)
        }
        other => panic!("{other:?}"),
    }
}
