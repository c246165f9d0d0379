//! The driver test kit (`duplex_hostile::kit`): every never-ending peer against every
//! driver and transport, one test per cell of the table. The whole table runs once, in
//! parallel, for all of them (the first test to ask runs it) and prints one
//! `DRIVER-KIT |` line per cell, not-applicable cells included with the reason
//! (`cargo test -p duplex-hostile --test driver_kit -- --nocapture`).
//!
//! A cell passes when our side let go of the connection within its case's bound
//! (`Case::bound`: the documented deadline plus one second). A cell that fails because
//! of a library bug stays here, ignored with the bug's description, until the bug is
//! fixed.

use duplex_hostile::kit::{Case, PeerSaw, Transport, applies, results};

fn cell(case: Case, transport: Transport) {
    let outcome = results()
        .get(&(transport, case))
        .expect("every applicable cell is run");
    outcome.assert_released();
}

/// One case's tests, one per transport; `all`: every transport.
macro_rules! row {
    ($case:ident all) => {
        row!($case [
            TokioTcpServer, TokioTlsServer, TokioH2Server, MioServer,
            TokioTcpClient, TokioTlsClient, TokioH2Client, MioClient,
        ]);
    };
    ($case:ident [$($(#[$attr:meta])* $transport:ident),* $(,)?]) => {
        #[allow(non_snake_case)]
        mod $case {
            use super::{Case, Transport};

            /// The transports tested with this case.
            pub const TESTED: &[Transport] = &[$(Transport::$transport),*];

            $(
                $(#[$attr])*
                #[test]
                fn $transport() {
                    super::cell(Case::$case, Transport::$transport);
                }
            )*
        }
    };
}

macro_rules! table {
    ($($case:ident: $transports:tt;)*) => {
        $(row!($case $transports);)*

        /// Every cell that has a test.
        const TESTED: &[(Case, &[Transport])] = &[$((Case::$case, $case::TESTED)),*];
    };
}

// The cells left out do not apply; `kit::applies` gives the reason, printed with the
// table, and `the_table_tests_every_cell_that_applies` keeps this list and it in step.
table! {
    NeverReadsWhileWeSend: all;
    NeverReadsAndSendsClose: all;
    NeverAnswersOurClose: all;
    StopsMidFrame: all;
    ReadsOneByteASecond: all;
    NeverOpensWindow: [TokioH2Server, TokioH2Client];
    SplitWriterWithoutReader: [
        TokioTcpServer, TokioTlsServer, TokioH2Server,
        TokioTcpClient, TokioTlsClient, TokioH2Client,
    ];
    CloseOnPeerThatNeverReads: all;
    GracefulShutdown: [
        TokioTcpServer, TokioTlsServer, TokioH2Server, MioServer,
        TokioTcpClient, TokioTlsClient, TokioH2Client,
    ];
}

#[test]
fn the_table_tests_every_cell_that_applies() {
    for transport in Transport::ALL {
        for case in Case::ALL {
            let tested = TESTED
                .iter()
                .any(|(tested, transports)| *tested == case && transports.contains(&transport));
            match applies(case, transport) {
                Ok(()) => assert!(tested, "{transport} | {case}: applies but has no test"),
                Err(why) => assert!(
                    !tested,
                    "{transport} | {case}: has a test but does not apply ({why})"
                ),
            }
        }
    }
}

/// When our WebSocket gives up on an HTTP/2 stream whose window never opened, the
/// stream is reset (RST_STREAM), so the peer and the HTTP/2 connection let go of it too;
/// our task ending is `NeverOpensWindow::*`.
fn stream_is_reset(transport: Transport) {
    let outcome = &results()[&(transport, Case::NeverOpensWindow)];
    outcome.assert_released();
    assert!(
        matches!(outcome.peer_saw, Some(PeerSaw::Reset(_))),
        "the peer did not see RST_STREAM: {}",
        outcome.line()
    );
}

#[test]
fn the_h2_client_resets_a_stream_whose_window_never_opens() {
    stream_is_reset(Transport::TokioH2Client);
}

// Our task ends in bound (`NeverOpensWindow::TokioH2Server`), but dropping hyper's
// upgraded stream leaves hyper's internal send task waiting for HTTP/2 capacity that never
// comes, holding the stream's send half: the stream is neither reset nor ended, and its
// buffers stay on both ends until the TCP connection ends.
#[test]
#[ignore = "library gap: hyper's upgraded-send task stays blocked on h2 capacity after the \
            WebSocket drops its stream, so no RST_STREAM is sent until the TCP connection ends"]
fn hyper_resets_a_stream_whose_window_never_opens() {
    stream_is_reset(Transport::TokioH2Server);
}
