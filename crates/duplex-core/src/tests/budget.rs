//! The memory budget: what is counted in is counted out, connections that grow pause
//! when it is exceeded, inflating waits for it, and the largest holder is shed.

use super::*;
use crate::connection::INFLATE_STEP;

const MIB: usize = 1 << 20;

fn budgeted(budget: &MemoryBudget) -> Connection {
    Connection::new(
        Role::Server,
        EngineConfig::default()
            .memory_budget(budget.clone())
            .no_keepalive(),
    )
}

/// The wire of a client's message to a server, in one frame, and deflated when the
/// client has permessage-deflate on.
fn client_wire(client: &mut Connection, message: Message) -> Vec<u8> {
    client.send(message).unwrap();
    drain_raw(client)
}

/// The header of a binary frame of `len` bytes from a client (mask key 0, so payload
/// bytes are sent plain), not final when `fin` is false.
fn binary_header(len: u64, fin: bool) -> Vec<u8> {
    peer_header(Role::Server, if fin { 0x82 } else { 0x02 }, len)
}

fn close_code_in(conn: &mut Connection) -> Option<u16> {
    let out = drain_raw(conn);
    let at = out.windows(2).rposition(|w| w[0] == 0x88)?;
    let len = usize::from(out[at + 1]);
    (len >= 2).then(|| u16::from_be_bytes([out[at + 2], out[at + 3]]))
}

#[test]
fn a_small_connection_counts_nothing_and_takes_no_seat() {
    let budget = MemoryBudget::new(MIB);
    let mut conn = budgeted(&budget);
    conn.receive(&client_frame(0x81, b"hello"));
    assert!(matches!(conn.poll_event(Instant::now()), Some(Ok(_))));
    conn.send(Message::text("hello")).unwrap();
    assert_eq!(budget.in_use(), 0);
    assert!(!conn.has_seat());
}

#[test]
fn a_partial_message_is_counted_past_the_free_allowance_and_given_back_when_delivered() {
    let budget = MemoryBudget::new(64 * MIB);
    let mut conn = budgeted(&budget);
    let now = Instant::now();
    let len = 300 << 10;
    conn.receive(&binary_header(len as u64, true));
    conn.receive(&vec![7u8; 200 << 10]);
    assert!(conn.poll_event(now).is_none());
    let counted = budget.in_use();
    assert!(
        counted >= (200 << 10) - BUDGET_FREE_PER_CONNECTION,
        "{counted}"
    );
    conn.receive(&vec![7u8; 100 << 10]);
    let message = conn.poll_event(now).unwrap().unwrap();
    assert_eq!(message.len(), len);
    // The message is the application's now: the engine holds nothing of it.
    conn.shrink_buffers();
    assert_eq!(budget.in_use(), 0);
    drop(message);
    drop(conn);
    assert_eq!(budget.in_use(), 0);
}

#[test]
fn a_growing_message_stops_reading_while_the_budget_is_exceeded() {
    let budget = MemoryBudget::new(MIB);
    let now = Instant::now();
    let mut big = budgeted(&budget);
    let mut other = budgeted(&budget);
    big.receive(&binary_header(8 * MIB as u64, true));
    big.receive(&vec![1u8; 600 << 10]);
    assert!(big.poll_event(now).is_none());
    assert!(big.wants_read(), "under the budget: reading goes on");
    other.receive(&binary_header(4 * MIB as u64, true));
    other.receive(&vec![2u8; 600 << 10]);
    assert!(other.poll_event(now).is_none());
    assert!(budget.is_exceeded());
    for conn in [&big, &other] {
        assert!(conn.is_input_paused() && !conn.wants_read());
        // The engine looks at the budget again without the adapter's help.
        assert!(
            conn.poll_timeout()
                .is_some_and(|t| t <= now + Duration::from_millis(100))
        );
    }
    // A connection that holds little reads on.
    let mut small = budgeted(&budget);
    small.receive(&client_frame(0x81, b"hi"));
    assert!(matches!(small.poll_event(now), Some(Ok(_))));
    assert!(small.wants_read());
}

#[test]
fn the_largest_holder_is_shed_with_1013_and_the_others_resume() {
    let budget = MemoryBudget::new(MIB);
    let t0 = Instant::now();
    let sizes = [100usize << 10, 300 << 10, 900 << 10];
    let mut conns: Vec<Connection> = sizes
        .iter()
        .map(|&held| {
            let mut conn = budgeted(&budget);
            conn.receive(&binary_header(2 * MIB as u64, true));
            conn.receive(&vec![3u8; held]);
            assert!(conn.poll_event(t0).is_none());
            conn
        })
        .collect();
    assert!(budget.is_exceeded());
    let mut shed_at = None;
    let mut now = t0;
    while now < t0 + Duration::from_secs(2) && shed_at.is_none() {
        now += Duration::from_millis(50);
        for conn in &mut conns {
            conn.handle_timeout(now);
        }
        if conns[2].state() == State::Failed {
            shed_at = Some(now - t0);
        }
    }
    let shed_at = shed_at.expect("the largest is shed");
    assert!(
        shed_at >= BUDGET_SHED_AFTER && shed_at <= BUDGET_SHED_AFTER + Duration::from_millis(250),
        "{shed_at:?}"
    );
    let error = conns[2].poll_event(now).unwrap().unwrap_err();
    assert!(
        matches!(
            error,
            Error::LimitExceeded(LimitError {
                limit: Limit::MemoryBudget,
                ..
            })
        ),
        "{error:?}"
    );
    assert_eq!(error.close_code(), Some(CloseCode::TryAgainLater));
    assert_eq!(close_code_in(&mut conns[2]), Some(1013));
    assert_eq!(budget.stats().shed, 1);
    // Its memory is given back at once; the others are under the budget again and read.
    assert!(!budget.is_exceeded(), "{:?}", budget.stats());
    for conn in &conns[..2] {
        assert_eq!(conn.state(), State::Open);
        assert!(conn.wants_read());
    }
}

#[test]
fn inflating_waits_for_the_budget_and_a_bomb_is_shed_within_it() {
    let budget = MemoryBudget::new(4 * MIB);
    let params = DeflateParams::default();
    let mut client = Connection::new(Role::Client, EngineConfig::default());
    client.enable_deflate(params);
    // 48 MiB of zeros: a few KiB on the wire, within the default message limits.
    let bomb = client_wire(&mut client, Message::binary(vec![0u8; 48 * MIB]));
    assert!(bomb.len() < 64 << 10, "{}", bomb.len());
    let mut conn = budgeted(&budget);
    conn.enable_deflate(params);
    let now = Instant::now();
    conn.receive(&bomb);
    assert!(conn.poll_event(now).is_none(), "inflating waits");
    let stats = budget.stats();
    assert!(
        stats.in_use <= stats.limit + INFLATE_STEP + BUDGET_FREE_PER_CONNECTION,
        "{stats:?}"
    );
    assert!(conn.is_input_paused());
    let mut now = now;
    for _ in 0..10 {
        now += Duration::from_millis(100);
        conn.handle_timeout(now);
    }
    assert_eq!(conn.state(), State::Failed);
    assert_eq!(close_code_in(&mut conn), Some(1013));
    assert_eq!(budget.in_use(), 0);
}

#[test]
fn a_compressed_message_under_the_budget_arrives_whole_in_steps() {
    let budget = MemoryBudget::new(64 * MIB);
    let params = DeflateParams::default();
    let mut client = Connection::new(Role::Client, EngineConfig::default());
    client.enable_deflate(params);
    let text: String = (0..200_000).map(|i| format!("{i},")).collect();
    let wire = client_wire(&mut client, Message::text(text.clone()));
    let mut conn = budgeted(&budget);
    conn.enable_deflate(params);
    conn.receive(&wire);
    match conn.poll_event(Instant::now()) {
        Some(Ok(Message::Text(got))) => assert_eq!(got, text.as_str()),
        other => panic!("{other:?}"),
    }
    conn.shrink_buffers();
    assert_eq!(budget.in_use(), 0);
}

#[test]
fn paused_inflating_resumes_when_the_budget_has_room() {
    let budget = MemoryBudget::new(2 * MIB);
    let params = DeflateParams::default();
    let mut client = Connection::new(Role::Client, EngineConfig::default());
    client.enable_deflate(params);
    let payload: Vec<u8> = (0..(3 * MIB / 2) as u32).map(|i| (i % 251) as u8).collect();
    let wire = client_wire(&mut client, Message::binary(payload.clone()));
    // Another connection holds most of the budget.
    let mut hog = budgeted(&budget);
    hog.receive(&binary_header(4 * MIB as u64, true));
    hog.receive(&vec![9u8; 1800 << 10]);
    let now = Instant::now();
    assert!(hog.poll_event(now).is_none());
    let mut conn = budgeted(&budget);
    conn.enable_deflate(params);
    conn.receive(&wire);
    assert!(conn.poll_event(now).is_none());
    assert!(conn.is_input_paused());
    drop(hog);
    conn.handle_timeout(now + Duration::from_millis(100));
    match conn.poll_event(now + Duration::from_millis(100)) {
        Some(Ok(Message::Binary(got))) => assert!(got == payload),
        other => panic!("{other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever arrives, in whatever pieces, and however each connection ends, the
    /// budget counts exactly what the live connections hold past their allowance, and
    /// nothing once they are gone.
    #[test]
    fn every_byte_counted_in_is_counted_out(
        messages in proptest::collection::vec((0usize..120_000, any::<bool>(), 1usize..4), 1..8),
        cut in 1usize..70_000,
        deflate in any::<bool>(),
        replies in any::<bool>(),
        end in 0u8..3,
    ) {
        let budget = MemoryBudget::new(64 * MIB);
        let params = DeflateParams::default();
        let mut client = Connection::new(Role::Client, EngineConfig::default().send_frame_size(Some(50_000)));
        let mut conn = budgeted(&budget);
        if deflate {
            client.enable_deflate(params);
            conn.enable_deflate(params);
        }
        let mut wire = Vec::new();
        for (len, text, _) in &messages {
            let message = if *text {
                Message::text("ab".repeat(len / 2))
            } else {
                Message::binary(vec![(*len % 256) as u8; *len])
            };
            wire.extend(client_wire(&mut client, message));
        }
        let now = Instant::now();
        let mut got = 0;
        for piece in wire.chunks(cut) {
            conn.receive(piece);
            while let Some(event) = conn.poll_event(now) {
                let message = event.unwrap();
                got += 1;
                if replies {
                    conn.send(message).unwrap();
                }
            }
            let held = conn.held().saturating_sub(BUDGET_FREE_PER_CONNECTION);
            prop_assert_eq!(budget.in_use(), held);
        }
        prop_assert_eq!(got, messages.len());
        match end {
            0 => {
                drain_raw(&mut conn);
                conn.shrink_buffers();
                prop_assert_eq!(budget.in_use(), 0);
            }
            1 => {
                conn.receive(&[0x82, 0xFF]);
                let _ = events(&mut conn, now);
            }
            _ => conn.transport_failed(&std::io::ErrorKind::ConnectionReset.into(), now),
        }
        drop(conn);
        prop_assert_eq!(budget.in_use(), 0);
    }
}
