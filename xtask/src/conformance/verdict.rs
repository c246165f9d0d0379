//! Behaviour classification with the meanings of the Autobahn TestSuite.
//!
//! A case records the events it observed (messages, pings, pongs, timeouts)
//! and compares them with one or more expected event lists, each labelled
//! with the behaviour it stands for. The close of the connection is judged
//! separately ([`judge_close`]), like Autobahn's `behaviorClose`.

use serde::Serialize;

/// Outcome of a case (Autobahn's `behavior`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Behavior {
    /// Conforms, including all SHOULDs checked.
    #[serde(rename = "OK")]
    Ok,
    /// Outcome not defined by the spec; reported for information.
    #[serde(rename = "INFORMATIONAL")]
    Informational,
    /// Conforms to the MUSTs but not to a SHOULD (e.g. fails late, not fast).
    #[serde(rename = "NON-STRICT")]
    NonStrict,
    /// The feature is not implemented (only acceptable for compression).
    #[serde(rename = "UNIMPLEMENTED")]
    Unimplemented,
    /// Violates the spec.
    #[serde(rename = "FAILED")]
    Failed,
}

impl Behavior {
    /// The label used in reports.
    pub fn label(self) -> &'static str {
        match self {
            Behavior::Ok => "OK",
            Behavior::Informational => "INFORMATIONAL",
            Behavior::NonStrict => "NON-STRICT",
            Behavior::Unimplemented => "UNIMPLEMENTED",
            Behavior::Failed => "FAILED",
        }
    }
}

/// How the connection was closed (Autobahn's `behaviorClose`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CloseBehavior {
    /// Closed as expected.
    #[serde(rename = "OK")]
    Ok,
    /// The peer's close code is not one of the expected ones.
    #[serde(rename = "WRONG CODE")]
    WrongCode,
    /// A clean closing handshake was required but did not happen.
    #[serde(rename = "UNCLEAN")]
    Unclean,
    /// We (the client) had to drop TCP; the server should close it.
    #[serde(rename = "FAILED BY CLIENT")]
    FailedByClient,
    /// The wrong endpoint started the close, or the connection never opened.
    #[serde(rename = "FAILED")]
    Failed,
    /// Undefined by the spec; reported for information.
    #[serde(rename = "INFORMATIONAL")]
    Informational,
}

impl CloseBehavior {
    /// The label used in reports.
    pub fn label(self) -> &'static str {
        match self {
            CloseBehavior::Ok => "OK",
            CloseBehavior::WrongCode => "WRONG CODE",
            CloseBehavior::Unclean => "UNCLEAN",
            CloseBehavior::FailedByClient => "FAILED BY CLIENT",
            CloseBehavior::Failed => "FAILED",
            CloseBehavior::Informational => "INFORMATIONAL",
        }
    }
}

/// Something the suite observed from the peer during a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete message.
    Message {
        /// Binary (true) or text (false).
        binary: bool,
        /// The reassembled payload.
        payload: Vec<u8>,
    },
    /// A ping from the peer.
    Ping(Vec<u8>),
    /// A pong from the peer.
    Pong(Vec<u8>),
    /// A scripted wait elapsed while the connection stayed open.
    Timeout(&'static str),
    /// The peer broke the protocol; never matches an expectation.
    Violation(String),
}

fn preview(p: &[u8]) -> String {
    const MAX: usize = 48;
    let shown = &p[..p.len().min(MAX)];
    let body = match std::str::from_utf8(shown) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => format!("{s:?}"),
        _ => format!(
            "0x{}",
            shown.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    };
    if p.len() > MAX {
        format!("{body}… ({} bytes)", p.len())
    } else {
        body
    }
}

impl Event {
    /// Text message event.
    pub fn text(p: impl Into<Vec<u8>>) -> Event {
        Event::Message {
            binary: false,
            payload: p.into(),
        }
    }

    /// Binary message event.
    pub fn binary(p: impl Into<Vec<u8>>) -> Event {
        Event::Message {
            binary: true,
            payload: p.into(),
        }
    }

    /// Pong event.
    pub fn pong(p: impl Into<Vec<u8>>) -> Event {
        Event::Pong(p.into())
    }

    /// Short human-readable form for reports.
    pub fn describe(&self) -> String {
        match self {
            Event::Message { binary, payload } => format!(
                "{} message {}",
                if *binary { "binary" } else { "text" },
                preview(payload)
            ),
            Event::Ping(p) => format!("ping {}", preview(p)),
            Event::Pong(p) => format!("pong {}", preview(p)),
            Event::Timeout(t) => format!("timeout {t} (connection still open)"),
            Event::Violation(v) => format!("protocol violation by peer: {v}"),
        }
    }
}

/// What the close of the connection should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedClose {
    /// Whether the suite (rather than the peer) should start the close.
    pub closed_by_me: bool,
    /// Close codes the peer may send (or send none).
    pub codes: Vec<u16>,
    /// Whether a complete closing handshake is required.
    pub require_clean: bool,
    /// If the wrong endpoint closed, the case itself fails (UTF-8 cases:
    /// the peer then never noticed the invalid payload).
    pub wrong_endpoint_fatal: bool,
}

impl ExpectedClose {
    /// We close with 1000 after the exchange; the close must be clean.
    pub fn normal() -> Self {
        ExpectedClose {
            closed_by_me: true,
            codes: vec![1000],
            require_clean: true,
            wrong_endpoint_fatal: false,
        }
    }

    /// The peer must fail the connection (close frame with `code`, or drop).
    pub fn peer_fails(code: u16) -> Self {
        ExpectedClose {
            closed_by_me: false,
            codes: vec![code],
            require_clean: false,
            wrong_endpoint_fatal: false,
        }
    }

    /// We start the close; the peer answers with one of `codes`.
    pub fn by_me(codes: &[u16], require_clean: bool) -> Self {
        ExpectedClose {
            closed_by_me: true,
            codes: codes.to_vec(),
            require_clean,
            wrong_endpoint_fatal: false,
        }
    }

    /// Marks closing by the wrong endpoint as a case failure.
    pub fn fatal(mut self) -> Self {
        self.wrong_endpoint_fatal = true;
        self
    }
}

/// Which side closed the TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TcpCloser {
    /// The suite closed or dropped TCP.
    Me,
    /// The peer closed TCP first.
    Peer,
    /// The connection never opened or is still open (case timeout).
    Nobody,
}

/// What the suite observed about the close.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CloseObservation {
    /// Whether the WebSocket connection was ever open.
    pub opened: bool,
    /// Whether the suite started the close (first close frame or TCP drop).
    pub closed_by_me: bool,
    /// Whether both close frames were exchanged.
    pub was_clean: bool,
    /// The close code in the peer's close frame, if any.
    pub remote_code: Option<u16>,
    /// The peer's close reason (lossy UTF-8).
    pub remote_reason: Option<String>,
    /// The close code the suite sent, if any.
    pub local_code: Option<u16>,
    /// Whether the suite dropped TCP (rather than the peer).
    pub dropped_by_me: bool,
    /// Who closed TCP.
    pub tcp_closed_by: TcpCloser,
    /// Milliseconds from the start of the close to TCP being closed.
    pub close_ms: Option<f64>,
}

impl CloseObservation {
    /// Observation for a connection that never opened.
    pub fn never_opened() -> Self {
        CloseObservation {
            opened: false,
            closed_by_me: false,
            was_clean: false,
            remote_code: None,
            remote_reason: None,
            local_code: None,
            dropped_by_me: false,
            tcp_closed_by: TcpCloser::Nobody,
            close_ms: None,
        }
    }
}

/// Compares observed events with the expected lists (first match wins).
pub fn judge_events(expected: &[(Behavior, Vec<Event>)], received: &[Event]) -> (Behavior, String) {
    for (b, evs) in expected {
        if evs.as_slice() == received {
            return (*b, "Actual events match at least one expected.".into());
        }
    }
    (
        Behavior::Failed,
        "Actual events differ from any expected.".into(),
    )
}

/// Judges the close like Autobahn's `behaviorClose`. `suite_is_client` is
/// true when testing a server (then the server should close TCP).
pub fn judge_close(
    exp: &ExpectedClose,
    obs: &CloseObservation,
    suite_is_client: bool,
) -> (CloseBehavior, String) {
    if !obs.opened {
        return (
            CloseBehavior::Failed,
            "The WebSocket opening handshake was never completed.".into(),
        );
    }
    if exp.closed_by_me != obs.closed_by_me {
        return (
            CloseBehavior::Failed,
            format!(
                "The connection was failed by the wrong endpoint (expected the {} to start closing).",
                if exp.closed_by_me { "suite" } else { "peer" }
            ),
        );
    }
    if exp.require_clean && !obs.was_clean {
        return (
            CloseBehavior::Unclean,
            "The spec requires the connection to be closed cleanly here.".into(),
        );
    }
    if let Some(code) = obs.remote_code
        && !exp.codes.contains(&code)
    {
        let want: Vec<String> = exp.codes.iter().map(|c| c.to_string()).collect();
        return (
            CloseBehavior::WrongCode,
            format!(
                "The close code should have been {} or empty, got {code}.",
                want.join(",")
            ),
        );
    }
    if suite_is_client && obs.dropped_by_me {
        return (
            CloseBehavior::FailedByClient,
            "It is preferred that the server close the TCP connection.".into(),
        );
    }
    (CloseBehavior::Ok, "Connection was properly closed.".into())
}

/// The verdict of a case as a whole, used for colours and the gate: the
/// case behaviour, made worse by a bad close (WRONG CODE, UNCLEAN and a
/// FAILED close fail the case; FAILED BY CLIENT, a SHOULD, is NON-STRICT).
pub fn overall(b: Behavior, c: CloseBehavior) -> Behavior {
    let from_close = match c {
        CloseBehavior::Ok | CloseBehavior::Informational => Behavior::Ok,
        CloseBehavior::FailedByClient => Behavior::NonStrict,
        CloseBehavior::WrongCode | CloseBehavior::Unclean | CloseBehavior::Failed => {
            Behavior::Failed
        }
    };
    if b == Behavior::Informational && from_close == Behavior::Ok {
        return b;
    }
    b.max(from_close)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs() -> CloseObservation {
        CloseObservation {
            opened: true,
            closed_by_me: true,
            was_clean: true,
            remote_code: Some(1000),
            remote_reason: None,
            local_code: Some(1000),
            dropped_by_me: false,
            tcp_closed_by: TcpCloser::Peer,
            close_ms: Some(1.0),
        }
    }

    #[test]
    fn events_pick_first_matching_expectation() {
        let exp = vec![
            (Behavior::Ok, vec![Event::text("a")]),
            (Behavior::NonStrict, vec![]),
        ];
        assert_eq!(judge_events(&exp, &[Event::text("a")]).0, Behavior::Ok);
        assert_eq!(judge_events(&exp, &[]).0, Behavior::NonStrict);
        assert_eq!(
            judge_events(&exp, &[Event::binary("a")]).0,
            Behavior::Failed
        );
        assert_eq!(
            judge_events(&exp, &[Event::text("a"), Event::pong("")]).0,
            Behavior::Failed
        );
        assert_eq!(
            judge_events(&[(Behavior::Ok, vec![])], &[Event::Violation("x".into())]).0,
            Behavior::Failed
        );
    }

    #[test]
    fn close_ok_and_wrong_endpoint() {
        assert_eq!(
            judge_close(&ExpectedClose::normal(), &obs(), true).0,
            CloseBehavior::Ok
        );
        let mut o = obs();
        o.closed_by_me = false;
        assert_eq!(
            judge_close(&ExpectedClose::normal(), &o, true).0,
            CloseBehavior::Failed
        );
        // Peer was expected to fail the connection, but the suite had to.
        let o = obs();
        assert_eq!(
            judge_close(&ExpectedClose::peer_fails(1002), &o, true).0,
            CloseBehavior::Failed
        );
    }

    #[test]
    fn close_unclean_wrong_code_and_client_drop() {
        let mut o = obs();
        o.was_clean = false;
        assert_eq!(
            judge_close(&ExpectedClose::normal(), &o, true).0,
            CloseBehavior::Unclean
        );
        // Not required to be clean: a dropped TCP without code is fine.
        let mut o = obs();
        o.closed_by_me = false;
        o.was_clean = false;
        o.remote_code = None;
        assert_eq!(
            judge_close(&ExpectedClose::peer_fails(1002), &o, true).0,
            CloseBehavior::Ok
        );
        o.remote_code = Some(1000);
        assert_eq!(
            judge_close(&ExpectedClose::peer_fails(1002), &o, true).0,
            CloseBehavior::WrongCode
        );
        let mut o = obs();
        o.dropped_by_me = true;
        assert_eq!(
            judge_close(&ExpectedClose::normal(), &o, true).0,
            CloseBehavior::FailedByClient
        );
        assert_eq!(
            judge_close(&ExpectedClose::normal(), &o, false).0,
            CloseBehavior::Ok
        );
        let o = CloseObservation::never_opened();
        assert_eq!(
            judge_close(&ExpectedClose::normal(), &o, true).0,
            CloseBehavior::Failed
        );
    }

    #[test]
    fn overall_combines() {
        assert_eq!(overall(Behavior::Ok, CloseBehavior::Ok), Behavior::Ok);
        assert_eq!(
            overall(Behavior::Ok, CloseBehavior::WrongCode),
            Behavior::Failed
        );
        assert_eq!(
            overall(Behavior::Ok, CloseBehavior::FailedByClient),
            Behavior::NonStrict
        );
        assert_eq!(
            overall(Behavior::NonStrict, CloseBehavior::Ok),
            Behavior::NonStrict
        );
        assert_eq!(
            overall(Behavior::Informational, CloseBehavior::Informational),
            Behavior::Informational
        );
        assert_eq!(
            overall(Behavior::Informational, CloseBehavior::Unclean),
            Behavior::Failed
        );
        assert_eq!(
            overall(Behavior::Failed, CloseBehavior::Ok),
            Behavior::Failed
        );
    }

    #[test]
    fn describes_events() {
        assert_eq!(Event::text("hi").describe(), "text message \"hi\"");
        assert_eq!(
            Event::binary(vec![0xfe, 0x00]).describe(),
            "binary message 0xfe00"
        );
        assert!(
            Event::text(vec![b'*'; 100])
                .describe()
                .ends_with("(100 bytes)")
        );
    }
}
