//! Deadlines the engine keeps (keepalive ping and pong wait, idle, close handshake),
//! driven by the time the caller passes in.

use super::*;

fn keepalive_config() -> EngineConfig {
    EngineConfig::default().keepalive(Duration::from_secs(10), Duration::from_secs(5))
}

#[test]
fn keepalive_pings_after_interval_and_fails_without_answer() {
    for role in ROLES {
        let mut conn = Connection::new(role, keepalive_config());
        let t0 = Instant::now();
        assert!(conn.poll_event(t0).is_none(), "{role:?}");
        assert_eq!(
            conn.poll_timeout(),
            Some(t0 + Duration::from_secs(10)),
            "{role:?}"
        );
        conn.handle_timeout(t0 + Duration::from_secs(10));
        assert_eq!(drain(&mut conn), b"\x89\x09keepalive", "{role:?}");
        assert_eq!(
            conn.poll_timeout(),
            Some(t0 + Duration::from_secs(15)),
            "{role:?}"
        );
        conn.handle_timeout(t0 + Duration::from_secs(15));
        assert!(conn.is_transport_ending(), "{role:?}");
        assert!(
            matches!(
                conn.poll_event(t0),
                Some(Err(Error::Timeout(TimeoutKind::Keepalive)))
            ),
            "{role:?}"
        );
    }
}

#[test]
fn keepalive_is_satisfied_by_any_frame_from_the_peer() {
    for role in ROLES {
        let mut conn = Connection::new(role, keepalive_config());
        let t0 = Instant::now();
        conn.poll_event(t0);
        conn.handle_timeout(t0 + Duration::from_secs(10));
        drain(&mut conn);
        conn.receive(&peer_frame(role, 0x8A, b"keepalive"));
        let t1 = t0 + Duration::from_secs(12);
        assert!(
            matches!(conn.poll_event(t1), Some(Ok(Message::Pong(_)))),
            "{role:?}"
        );
        conn.handle_timeout(t0 + Duration::from_secs(15));
        assert!(!conn.is_transport_ending(), "{role:?}");
        assert_eq!(
            conn.poll_timeout(),
            Some(t1 + Duration::from_secs(10)),
            "{role:?}"
        );
    }
}

#[test]
fn idle_timeout_closes_with_1001() {
    for role in ROLES {
        let config = EngineConfig::default()
            .no_keepalive()
            .idle_timeout(Some(Duration::from_secs(30)));
        let mut conn = Connection::new(role, config);
        let t0 = Instant::now();
        conn.poll_event(t0);
        conn.handle_timeout(t0 + Duration::from_secs(30));
        assert!(
            matches!(
                conn.poll_event(t0),
                Some(Err(Error::Timeout(TimeoutKind::Idle)))
            ),
            "{role:?}"
        );
        assert_eq!(
            drain(&mut conn),
            close_bytes(1001, "idle timeout"),
            "{role:?}"
        );
    }
}

#[test]
fn close_handshake_times_out_when_the_peer_never_answers() {
    for role in ROLES {
        let mut conn = connection(role);
        let now = Instant::now();
        conn.close(None, now).unwrap();
        drain(&mut conn);
        assert!(!conn.is_transport_ending(), "{role:?}");
        let deadline = conn.poll_timeout().unwrap();
        assert_eq!(deadline, now + DEFAULT_CLOSE_TIMEOUT, "{role:?}");
        conn.handle_timeout(deadline - Duration::from_millis(1));
        assert!(!conn.is_transport_ending(), "{role:?}");
        conn.handle_timeout(deadline);
        assert!(conn.is_transport_ending(), "{role:?}");
        assert!(
            matches!(
                conn.poll_event(deadline),
                Some(Err(Error::Timeout(TimeoutKind::CloseHandshake)))
            ),
            "{role:?}"
        );
    }
}
