//! The close handshake (RFC 6455 sections 5.5.1, 7 and 7.4): close frames received and
//! answered, the codes and reasons allowed, nothing sent after a close, who closes TCP,
//! and how the peer's end of the stream is reported.

use super::*;

#[test]
fn close_payload_of_one_byte_is_a_protocol_error() {
    for role in ROLES {
        let error = expect_failure(
            &mut connection(role),
            &peer_frame(role, 0x88, &[0x03]),
            1002,
        );
        assert!(
            matches!(error, Error::Protocol(ProtocolError::CloseFrameTooShort)),
            "{role:?}: {error:?}"
        );
    }
}

#[test]
fn rejects_close_codes_outside_the_valid_ranges() {
    for role in ROLES {
        for code in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            let error = expect_failure(
                &mut connection(role),
                &peer_frame(role, 0x88, &code.to_be_bytes()),
                1002,
            );
            assert!(
                matches!(error, Error::Protocol(ProtocolError::InvalidCloseCode(c)) if c == code),
                "{role:?} {code}: {error:?}"
            );
        }
    }
}

#[test]
fn close_reason_that_is_not_utf8_is_1007() {
    for role in ROLES {
        let error = expect_failure(
            &mut connection(role),
            &peer_frame(role, 0x88, &[0x03, 0xE8, 0xCE]),
            1007,
        );
        assert!(
            matches!(
                error,
                Error::Protocol(ProtocolError::InvalidUtf8 {
                    in_close_reason: true
                })
            ),
            "{role:?}: {error:?}"
        );
    }
}

#[test]
fn received_close_is_answered_with_the_same_code_and_server_closes_tcp_first() {
    for role in ROLES {
        for code in [1000u16, 1001, 1003, 1007, 1011, 1012, 1014, 3000, 4999] {
            let mut conn = connection(role);
            let mut body = code.to_be_bytes().to_vec();
            body.extend_from_slice(b"bye");
            conn.receive(&peer_frame(role, 0x88, &body));
            let got = events(&mut conn, Instant::now());
            assert_eq!(
                got[0].as_ref().unwrap(),
                &Message::Close(Some(CloseFrame::new(CloseCode::from(code), "bye"))),
                "{role:?} {code}"
            );
            assert!(
                !conn.is_transport_ending(),
                "{role:?} {code}: the reply is not written yet"
            );
            assert_eq!(drain(&mut conn), close_bytes(code, ""), "{role:?} {code}");
            assert!(conn.is_closed(), "{role:?} {code}");
            match role {
                Role::Server => assert!(conn.is_transport_ending(), "{code}"),
                Role::Client => {
                    assert!(
                        !conn.is_transport_ending(),
                        "{code}: a client waits for the server to close TCP"
                    );
                    conn.receive_eof();
                    assert!(
                        conn.is_transport_ending(),
                        "{code}: and closes once the server did"
                    );
                }
            }
        }
    }
}

#[test]
fn empty_close_is_answered_with_empty_close() {
    for role in ROLES {
        let mut conn = connection(role);
        conn.receive(&peer_frame(role, 0x88, b""));
        assert_eq!(
            events(&mut conn, Instant::now())[0].as_ref().unwrap(),
            &Message::Close(None),
            "{role:?}"
        );
        assert_eq!(drain(&mut conn), vec![0x88, 0x00], "{role:?}");
    }
}

#[test]
fn nothing_is_sent_after_close() {
    for role in ROLES {
        let mut conn = connection(role);
        conn.receive(&peer_frame(role, 0x88, &1000u16.to_be_bytes()));
        events(&mut conn, Instant::now());
        drain(&mut conn);
        // The peer closed: not the application's mistake, so not a usage error.
        assert!(
            matches!(
                conn.send(Message::text("late")),
                Err(Error::ConnectionClosed)
            ),
            "{role:?}"
        );
        assert!(
            matches!(
                conn.send(Message::Ping(Bytes::new())),
                Err(Error::ConnectionClosed)
            ),
            "{role:?}"
        );
        // A ping after the close is not answered, and frames after the close are ignored.
        conn.receive(&peer_frame(role, 0x89, b"x"));
        assert!(events(&mut conn, Instant::now()).is_empty(), "{role:?}");
        assert!(drain(&mut conn).is_empty(), "{role:?}");
    }
}

#[test]
fn client_waits_for_the_server_to_close_tcp_then_gives_up() {
    let config = EngineConfig::default().close_timeout(Duration::from_secs(2));
    let mut client = Connection::new(Role::Client, config);
    let now = Instant::now();
    client
        .close(Some(CloseFrame::new(CloseCode::Normal, "done")), now)
        .unwrap();
    let out = drain_raw(&mut client);
    assert_eq!(&out[..2], &[0x88, 0x86]);
    client.receive(&[0x88, 0x02, 0x03, 0xE8]);
    let got = events(&mut client, now);
    assert_eq!(
        got[0].as_ref().unwrap(),
        &Message::Close(Some(CloseFrame::new(CloseCode::Normal, "")))
    );
    assert!(
        !client.is_transport_ending(),
        "a client waits for the server to close TCP"
    );
    assert_eq!(client.poll_timeout(), Some(now + Duration::from_secs(2)));
    client.handle_timeout(now + Duration::from_secs(2));
    assert!(client.is_transport_ending());
    assert!(
        client.poll_event(now).is_none(),
        "a completed handshake is not an error"
    );
}

#[test]
fn messages_arriving_after_our_close_are_still_delivered() {
    for role in ROLES {
        let mut conn = connection(role);
        let now = Instant::now();
        conn.close(None, now).unwrap();
        drain(&mut conn);
        let mut wire = peer_frame(role, 0x81, b"late");
        wire.extend(peer_frame(role, 0x88, &1000u16.to_be_bytes()));
        conn.receive(&wire);
        let got: Vec<Message> = events(&mut conn, now)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            got,
            vec![
                Message::text("late"),
                Message::Close(Some(CloseFrame::new(CloseCode::Normal, "")))
            ],
            "{role:?}"
        );
        assert!(
            drain(&mut conn).is_empty(),
            "{role:?}: no second close frame"
        );
        // The server closes TCP first; the client waits for it.
        assert_eq!(conn.is_transport_ending(), role == Role::Server, "{role:?}");
    }
}

#[test]
fn refuses_to_send_invalid_close_codes_and_long_reasons() {
    for role in ROLES {
        let mut conn = connection(role);
        let now = Instant::now();
        let bad = conn.close(Some(CloseFrame::new(CloseCode::NoStatus, "")), now);
        assert!(
            matches!(bad, Err(Error::Usage(UsageError::InvalidCloseCode(1005)))),
            "{role:?}: {bad:?}"
        );
        let long = "x".repeat(124);
        let bad = conn.close(Some(CloseFrame::new(CloseCode::Normal, long.as_str())), now);
        assert!(
            matches!(bad, Err(Error::Usage(UsageError::CloseReasonTooLong(124)))),
            "{role:?}: {bad:?}"
        );
        assert!(!conn.is_close_sent(), "{role:?}");
    }
}

#[test]
fn a_close_goes_through_close_with_the_time_not_send() {
    for role in ROLES {
        let mut conn = connection(role);
        assert!(
            matches!(
                conn.send(Message::Close(Some(CloseFrame::new(CloseCode::Normal, "")))),
                Err(Error::Usage(UsageError::CloseNeedsTime))
            ),
            "{role:?}"
        );
        assert_eq!(conn.state(), State::Open, "{role:?}");
        assert_eq!(conn.output_len(), 0, "{role:?}");
    }
}

#[test]
fn after_a_protocol_error_the_transport_closes_once_the_close_frame_is_written() {
    for role in ROLES {
        let mut conn = connection(role);
        conn.receive(&peer_frame(role, 0x80, b"x"));
        let event = conn.poll_event(Instant::now());
        assert!(
            matches!(
                event,
                Some(Err(Error::Protocol(ProtocolError::UnexpectedContinuation)))
            ),
            "{role:?}: {event:?}"
        );
        assert!(
            !conn.is_transport_ending(),
            "{role:?}: the close frame is not written yet"
        );
        drain(&mut conn);
        assert!(conn.is_transport_ending(), "{role:?}");
        // Whatever the peer sends afterwards is ignored.
        conn.receive(&peer_frame(role, 0x81, b"ignored"));
        assert!(events(&mut conn, Instant::now()).is_empty(), "{role:?}");
    }
}

#[test]
fn an_invalid_close_from_the_peer_ends_reading_at_once() {
    for role in ROLES {
        let mut conn = connection(role);
        let error = expect_failure(
            &mut conn,
            &peer_frame(role, 0x88, &999u16.to_be_bytes()),
            1002,
        );
        assert!(
            matches!(error, Error::Protocol(ProtocolError::InvalidCloseCode(999))),
            "{role:?}: {error:?}"
        );
        assert!(conn.is_transport_ending(), "{role:?}");
    }
}

#[test]
fn peer_vanishing_is_an_error_distinct_from_a_clean_close() {
    for role in ROLES {
        let mut conn = connection(role);
        let now = Instant::now();
        conn.receive(&peer_frame(role, 0x01, b"half"));
        conn.receive_eof();
        let got = events(&mut conn, now);
        assert!(
            matches!(got[..], [Err(Error::PeerVanished { mid_message: true })]),
            "{role:?}: {got:?}"
        );
        assert!(conn.is_transport_ending(), "{role:?}");

        // After a complete close handshake, end of file is not an error.
        let mut conn = connection(role);
        conn.receive(&peer_frame(role, 0x88, b""));
        conn.receive_eof();
        let got = events(&mut conn, now);
        assert!(
            matches!(got[..], [Ok(Message::Close(None))]),
            "{role:?}: {got:?}"
        );
    }
}

#[test]
fn eof_is_reported_after_the_messages_before_it() {
    for role in ROLES {
        let mut conn = connection(role);
        conn.receive(&peer_frame(role, 0x81, b"last words"));
        conn.receive_eof();
        let got = events(&mut conn, Instant::now());
        assert_eq!(
            got[0].as_ref().unwrap(),
            &Message::text("last words"),
            "{role:?}"
        );
        assert!(
            matches!(got[1], Err(Error::PeerVanished { mid_message: false })),
            "{role:?}: {got:?}"
        );
    }
}

#[test]
fn close_now_overtakes_the_queue_and_finishes_the_frame_being_written() {
    let now = Instant::now();
    for written in [0usize, 1, 3000, 5003] {
        let mut server = Connection::new(Role::Server, EngineConfig::default());
        let mut client = Connection::new(Role::Client, EngineConfig::default());
        for i in 0..4u8 {
            server.send(Message::binary(vec![i; 5000])).unwrap();
        }
        server
            .send(Message::Ping(Bytes::from_static(b"p")))
            .unwrap();
        // The socket took `written` bytes: the frame they belong to must be finished.
        let mut wire = Vec::new();
        while wire.len() < written {
            let chunk = server.pending_output();
            let n = chunk.len().min(written - wire.len());
            wire.extend_from_slice(&chunk[..n]);
            server.consume_output(n);
        }
        let frame = CloseFrame::new(CloseCode::PolicyViolation, "too slow");
        server.close_now(Some(frame), now).unwrap();
        assert_eq!(server.state(), State::CloseSent);
        while server.output_len() > 0 {
            let chunk = server.pending_output().to_vec();
            server.consume_output(chunk.len());
            wire.extend_from_slice(&chunk);
        }
        // 5004 bytes a frame (4-byte header); the close frame is 12 bytes.
        let frames_started = written.div_ceil(5004);
        assert_eq!(wire.len(), frames_started * 5004 + 12, "written {written}");
        client.receive(&wire);
        let mut received = Vec::new();
        while let Some(event) = client.poll_event(now) {
            received.push(event.unwrap());
        }
        let (close, data) = received.split_last().unwrap();
        assert_eq!(data.len(), frames_started, "written {written}");
        for (i, message) in data.iter().enumerate() {
            assert_eq!(message, &Message::binary(vec![i as u8; 5000]));
        }
        assert!(
            matches!(close, Message::Close(Some(f)) if f.code == CloseCode::PolicyViolation),
            "{close:?}"
        );
    }
}

#[test]
fn close_now_after_the_close_started_changes_nothing() {
    let now = Instant::now();
    let mut server = Connection::new(Role::Server, EngineConfig::default());
    server.send(Message::binary(vec![1; 5000])).unwrap();
    server.close(None, now).unwrap();
    let before = server.output_len();
    server
        .close_now(Some(CloseFrame::new(CloseCode::GoingAway, "")), now)
        .unwrap();
    assert_eq!(server.output_len(), before);
    assert_eq!(server.sent_close_frame().unwrap().code, CloseCode::NoStatus);
}
