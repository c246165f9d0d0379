//! Every transport against the real ticker on loopback, with small numbers: each
//! client gets every update once and in order.

use std::path::PathBuf;
use std::time::Duration;

use super::*;

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
        let runs = Transport::ALL.map(|transport| {
            let (addr, options) = (addr.clone(), options.clone());
            async move { measure(&addr, transport, &options).await }
        });
        let results = tokio::time::timeout(
            Duration::from_secs(15),
            futures_join_all(runs.into_iter().map(Box::pin).collect()),
        )
        .await
        .expect("the runs end soon after their duration");
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
