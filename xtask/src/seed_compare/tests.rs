//! Every transport against the real ticker on loopback, with small numbers: each
//! client gets every update once and in order.

use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::netem::Profile;

/// The ticker example next to this test binary (`cargo test --workspace` builds the
/// examples first), or built now if it is missing or older than its source.
fn ticker_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let examples =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/duplex-tokio/examples");
    let modified = |path: &std::path::Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let source = [
        examples.join("ticker.rs"),
        examples.join("ticker/index.html"),
    ]
    .iter()
    .filter_map(|path| modified(path))
    .max();
    // target/<profile>/deps/xtask-HASH -> target/<profile>/examples/ticker
    if let Some(profile_dir) = exe.parent().and_then(|deps| deps.parent()) {
        let candidate = profile_dir.join("examples").join("ticker");
        if modified(&candidate).is_some_and(|built| source.is_none_or(|source| built >= source)) {
            return candidate;
        }
    }
    build_ticker(false).expect("cargo build -p duplex-tokio --example ticker")
}

#[test]
fn every_transport_delivers_every_update_once_in_order() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (_ticker, addr) = start_ticker(&ticker_binary(), 40.0, 5).await.unwrap();
        let options = Options {
            clients: 3,
            poll_interval: Duration::from_millis(150),
            duration: Duration::from_millis(1500),
            ..Options::default()
        };
        // All transports at once, to keep the test short (CPU figures mean nothing here).
        let results = every_transport_at_once(&addr, &options, 15).await;
        for result in results {
            let m = result.unwrap();
            let name = m.transport.name();
            assert!(m.errors().is_empty(), "{name}: {:?}", m.errors());
            assert_eq!((m.missed(), m.duplicated()), (0, 0), "{name}");
            for (i, tally) in m.tallies.iter().enumerate() {
                // 40/s for 1.5 s: 60 published; polling ends up to one interval behind.
                assert!(
                    tally.delivered >= 30,
                    "{name} client {i} got only {} updates",
                    tally.delivered
                );
                assert_eq!(tally.connections, 1, "{name}: one persistent connection");
                assert_eq!(tally.latencies_us.len() as u64, tally.delivered);
            }
            let extensions = m.tallies[0].extensions.as_deref();
            match m.transport {
                Transport::Ws => assert_eq!(extensions, None),
                Transport::WsDeflate => assert_eq!(
                    extensions,
                    Some("permessage-deflate; server_no_context_takeover")
                ),
                Transport::WsDeflateCtx => assert_eq!(extensions, Some("permessage-deflate")),
                _ => {}
            }
            let row = m.row();
            assert!(row.down > 20.0, "{name}: {} bytes per update", row.down);
            if matches!(
                m.transport,
                Transport::Sse | Transport::Ws | Transport::WsDeflate
            ) {
                // Nothing per update: only the close frame at the end.
                assert!(row.up < 1.0, "{name} sent {} bytes per update", row.up);
            }
        }
    });
}

/// Measures every transport at the same time, within `limit_secs`.
async fn every_transport_at_once(
    addr: &str,
    options: &Options,
    limit_secs: u64,
) -> Vec<io::Result<Measurement>> {
    let runs = Transport::ALL.map(|transport| {
        let (addr, options) = (addr.to_owned(), options.clone());
        async move { measure(&addr, transport, &options, None).await }
    });
    tokio::time::timeout(
        Duration::from_secs(limit_secs),
        futures_join_all(runs.into_iter().map(Box::pin).collect()),
    )
    .await
    .expect("the runs end soon after their duration")
}

/// Awaits all futures (one task each, so they run concurrently).
async fn futures_join_all<F>(futures: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

/// The broadband profile (30 ms round trip, 50 Mbit/s) for two seconds, every
/// transport at once: each client gets every update once and in order, none sooner
/// than the one-way delay, and the link carried at least what the sockets counted.
/// Needs root and /dev/net/tun; skipped with a reason without them, unless `CI` is set.
#[test]
fn over_the_emulated_link_every_update_arrives_no_sooner_than_the_delay() {
    if let Some(reason) = netem::unavailable() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but the emulator cannot run: {reason}"
        );
        eprintln!("skipped: {reason}");
        return;
    }
    let binary = ticker_binary();
    let profile = Profile::named("broadband").unwrap();
    let floor = profile.rtt / 2;
    let (results, (up, down)) = with_link(&profile, |netem| {
        block_on(async {
            let server = netem.server.name.clone();
            let (_ticker, addr) = start_ticker_in(&binary, 20.0, 5, Some(&server), false).await?;
            let options = Options {
                clients: 2,
                poll_interval: Duration::from_millis(200),
                duration: Duration::from_secs(2),
                profile: Some(profile.clone()),
                server_netns: Some(server),
                ..Options::default()
            };
            let results = every_transport_at_once(&addr, &options, 20).await;
            Ok((results, netem.counters()))
        })
    })
    .unwrap();
    let (mut socket_up, mut socket_down) = (0, 0);
    for result in results {
        let m = result.unwrap();
        let name = m.transport.name();
        assert!(m.errors().is_empty(), "{name}: {:?}", m.errors());
        assert_eq!((m.missed(), m.duplicated()), (0, 0), "{name}");
        // 20/s for 2 s; polling ends up to one interval behind.
        assert!(
            m.delivered() >= 2 * 25,
            "{name}: {} delivered",
            m.delivered()
        );
        assert!(
            m.fastest() >= floor,
            "{name}: one update in {:?}",
            m.fastest()
        );
        socket_up += m.tallies.iter().map(|t| t.up).sum::<u64>();
        socket_down += m.tallies.iter().map(|t| t.down).sum::<u64>();
    }
    // IP and TCP headers, handshakes and ACKs come on top of what the sockets saw.
    assert!(
        down.bytes_out > socket_down,
        "{} ≤ {socket_down}",
        down.bytes_out
    );
    assert!(up.bytes_out > socket_up, "{} ≤ {socket_up}", up.bytes_out);
    assert_eq!(up.lost + down.lost, 0, "no loss configured");
}

/// The chat case on loopback: a speaker per transport sends 20 messages a second and
/// every other client gets each of them once, in order; a WebSocket speaker's message
/// costs its frame, an HTTP one's a whole request.
#[test]
fn chat_messages_reach_every_other_client() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let binary = ticker_binary();
        let (_ticker, addr) = start_ticker_in(&binary, 20.0, 5, None, true).await.unwrap();
        let options = Options {
            clients: 3,
            rate: 20.0,
            poll_interval: Duration::from_millis(150),
            duration: Duration::from_millis(2500),
            chat: true,
            ..Options::default()
        };
        let results = every_transport_at_once(&addr, &options, 20).await;
        let mut published = 0;
        for result in results {
            let m = result.unwrap();
            let name = m.transport.name();
            assert!(m.errors().is_empty(), "{name}: {:?}", m.errors());
            assert_eq!((m.missed(), m.duplicated()), (0, 0), "{name}");
            let speaker = m.speaker.as_ref().unwrap();
            // From 1 s to 2 s at 20/s.
            assert!(
                (18..=21).contains(&speaker.requests),
                "{name}: {} sent",
                speaker.requests
            );
            for tally in &m.tallies {
                // All transports run at once and publish into one room: a client sees
                // the others' messages too, but at least its own speaker's.
                assert!(tally.delivered >= speaker.requests, "{name}: {tally:?}");
            }
            let up = (speaker.up - speaker.setup_up) as f64 / speaker.requests as f64;
            match m.transport {
                // The message (about 80 bytes) and a 6-byte masked frame header.
                Transport::Ws | Transport::WsDeflate | Transport::WsDeflateCtx => {
                    assert!((80.0..100.0).contains(&up), "{name}: {up} B/message")
                }
                // A request head with a browser's headers.
                Transport::Poll | Transport::LongPoll | Transport::Sse => {
                    assert!(up > 500.0, "{name}: {up} B/message")
                }
                _ => {}
            }
            published += speaker.requests;
        }
        assert!(published >= 180);
    });
}
