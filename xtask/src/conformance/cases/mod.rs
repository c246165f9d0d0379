//! The case catalogue, numbered like the Autobahn TestSuite.
//!
//! Each case is data: what to send ([`Action`]s), which event lists count as
//! which [`Behavior`], and how the close must look ([`ExpectedClose`]).
//! Cases that need logic of their own are [`Perf`] (timed bulk traffic) and
//! [`Compressed`] (permessage-deflate, categories 12 and 13).

mod basic;
mod close;
mod compression;
mod limits;
mod utf8;

use std::time::Duration;

pub use compression::Compressed;

use super::verdict::{Behavior, Event, ExpectedClose};
use wire_kit::FrameSpec;

/// One step of a scripted case.
#[derive(Debug, Clone)]
pub enum Action {
    /// Send one frame, written in chops of `chop` bytes (0 = at once);
    /// `sync` flushes and pauses after the frame.
    Send {
        /// The frame.
        frame: FrameSpec,
        /// Chop size for writing.
        chop: usize,
        /// Flush and pause after writing.
        sync: bool,
    },
    /// Send a message fragmented into frames of `frag` bytes (0 = one frame).
    Message {
        /// Text or binary opcode.
        opcode: u8,
        /// The whole payload.
        payload: Vec<u8>,
        /// Fragment size.
        frag: usize,
    },
    /// Send a close frame (starts the closing handshake).
    Close {
        /// Close code, if any.
        code: Option<u16>,
        /// Reason bytes (may be invalid UTF-8 on purpose).
        reason: Vec<u8>,
    },
    /// Process events for `secs`; with a tag, record `Timeout(tag)` if the
    /// connection is still open afterwards and stop the script otherwise.
    Wait {
        /// Seconds to wait.
        secs: f64,
        /// Timeout tag.
        tag: Option<&'static str>,
    },
    /// Send one frame in pieces cut at payload offsets `cuts`, waiting
    /// `wait` seconds (tagged `tags[i]`) between the pieces.
    Chunked {
        /// The frame.
        frame: FrameSpec,
        /// Payload offsets where the frame is cut.
        cuts: Vec<usize>,
        /// Seconds between pieces.
        wait: f64,
        /// Timeout tags for the waits.
        tags: Vec<&'static str>,
    },
    /// Drop the connection after the given seconds.
    KillAfter(f64),
    /// Close normally after the given seconds.
    CloseAfter(f64),
}

/// Special judging after the connection is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Post {
    /// Plain comparison.
    None,
    /// A WRONG CODE close fails the case itself (close cases).
    WrongCodeFails,
    /// Outcome undefined by the spec: both verdicts INFORMATIONAL.
    Informational,
    /// Also check how many frames the suite sent (text, continuation).
    FrameCount(u64, u64),
}

/// A scripted case.
#[derive(Debug, Clone)]
pub struct Script {
    /// Event lists and the behaviour each stands for (first match wins).
    pub expected: Vec<(Behavior, Vec<Event>)>,
    /// The expected close.
    pub close: ExpectedClose,
    /// Do not close automatically when the events match.
    pub suppress_close: bool,
    /// What to send.
    pub actions: Vec<Action>,
    /// Special judging.
    pub post: Post,
}

impl Script {
    /// A script expecting `ok` events and a normal close by the suite.
    pub fn new(ok: Vec<Event>) -> Script {
        Script {
            expected: vec![(Behavior::Ok, ok)],
            close: ExpectedClose::normal(),
            suppress_close: false,
            actions: Vec::new(),
            post: Post::None,
        }
    }

    /// Adds an event list accepted as NON-STRICT.
    pub fn non_strict(mut self, evs: Vec<Event>) -> Script {
        self.expected.push((Behavior::NonStrict, evs));
        self
    }

    /// Sets the expected close.
    pub fn close(mut self, c: ExpectedClose) -> Script {
        self.close = c;
        self
    }

    /// Appends an action.
    pub fn then(mut self, a: Action) -> Script {
        self.actions.push(a);
        self
    }

    /// Appends sending a frame at once.
    pub fn send(self, f: FrameSpec) -> Script {
        self.send_with(f, 0, false)
    }

    /// Appends sending a frame with chop size and sync flag.
    pub fn send_with(self, frame: FrameSpec, chop: usize, sync: bool) -> Script {
        self.then(Action::Send { frame, chop, sync })
    }

    /// Sets the special judging.
    pub fn post(mut self, p: Post) -> Script {
        self.post = p;
        self
    }

    /// Disables the automatic close on match.
    pub fn suppress_close(mut self) -> Script {
        self.suppress_close = true;
        self
    }
}

/// Timed bulk-traffic cases (category 9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Perf {
    /// One message of `len` bytes, fragmented and/or chopped, echoed once.
    Single {
        /// Binary or text.
        binary: bool,
        /// Message size.
        len: usize,
        /// Fragment size (0 = one frame).
        frag: usize,
        /// Chop size (0 = one write).
        chop: usize,
        /// Seconds to wait for the echo.
        wait: u64,
    },
    /// `count` messages of `len` bytes, each sent after the previous echo.
    RoundTrip {
        /// Binary or text.
        binary: bool,
        /// Message size.
        len: usize,
        /// Number of round trips.
        count: usize,
        /// Seconds for all of them.
        wait: u64,
    },
}

/// What kind of case this is.
#[derive(Debug, Clone)]
pub enum CaseKind {
    /// Scripted frames and expected events.
    Script(Script),
    /// Timed bulk traffic.
    Perf(Perf),
    /// Compressed echo traffic (permessage-deflate).
    Compressed(Box<Compressed>),
}

/// One conformance case.
#[derive(Debug, Clone)]
pub struct Case {
    /// Autobahn case id, e.g. `6.4.3`.
    pub id: String,
    /// What is sent.
    pub description: String,
    /// What is expected.
    pub expectation: String,
    /// How it runs.
    pub kind: CaseKind,
}

impl Case {
    /// A scripted case.
    pub fn script(
        id: impl Into<String>,
        desc: impl Into<String>,
        exp: impl Into<String>,
        s: Script,
    ) -> Case {
        Case {
            id: id.into(),
            description: desc.into(),
            expectation: exp.into(),
            kind: CaseKind::Script(s),
        }
    }

    /// Major category number (`6` for `6.4.3`).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn category(&self) -> u32 {
        self.id
            .split('.')
            .next()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }

    /// Whether the case must run alone (timing-sensitive).
    pub fn exclusive(&self) -> bool {
        matches!(self.kind, CaseKind::Perf(_))
    }

    /// An upper bound for the whole case, after which it is FAILED.
    pub fn timeout(&self) -> Duration {
        match &self.kind {
            CaseKind::Perf(Perf::Single { wait, .. } | Perf::RoundTrip { wait, .. }) => {
                Duration::from_secs(wait + 10)
            }
            CaseKind::Script(s) => {
                let mut t = 5.0;
                for a in &s.actions {
                    match a {
                        Action::Wait { secs, .. } => t += secs,
                        Action::Chunked { wait, cuts, .. } => t += wait * cuts.len() as f64,
                        Action::KillAfter(x) | Action::CloseAfter(x) => t += x,
                        _ => {}
                    }
                }
                Duration::from_secs_f64(t)
            }
            CaseKind::Compressed(c) => Duration::from_secs(c.wait + 10),
        }
    }
}

/// Numeric sort key of a case id.
pub fn id_key(id: &str) -> Vec<u32> {
    id.split('.')
        .map(|p| p.parse().unwrap_or(u32::MAX))
        .collect()
}

/// Names of the categories, for reports.
pub fn category_name(cat: u32) -> &'static str {
    match cat {
        1 => "Framing",
        2 => "Pings/Pongs",
        3 => "Reserved Bits",
        4 => "Opcodes",
        5 => "Fragmentation",
        6 => "UTF-8 Handling",
        7 => "Close Handling",
        9 => "Limits/Performance",
        10 => "Auto-Fragmentation",
        12 => "WebSocket Compression (different payloads)",
        13 => "WebSocket Compression (different parameters)",
        _ => "Other",
    }
}

/// Whether UNIMPLEMENTED is a possible verdict for the category (the peer
/// did not negotiate permessage-deflate).
pub fn may_be_unimplemented(cat: u32) -> bool {
    matches!(cat, 12 | 13)
}

/// All cases in Autobahn order (compression cases in the suite's default,
/// shorter form).
#[cfg_attr(not(test), allow(dead_code))]
pub fn all() -> Vec<Case> {
    catalogue(false)
}

/// All cases; `full_compression` gives categories 12/13 Autobahn's 1000
/// messages per case and its time limits.
pub fn catalogue(full_compression: bool) -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(basic::framing());
    v.extend(basic::pings());
    v.extend(basic::reserved_bits());
    v.extend(basic::opcodes());
    v.extend(basic::fragmentation());
    v.extend(utf8::cases());
    v.extend(close::cases());
    v.extend(limits::cases());
    v.extend(compression::cases(full_compression));
    v
}

fn glob(pat: &str, s: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pat.chars().collect(), s.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Whether `id` is selected by a comma-separated filter such as
/// `1.*,6.4.*,7.1.1` (a bare `6.4` selects `6.4` and everything under it).
pub fn selected(filter: &str, id: &str) -> bool {
    filter
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .any(|p| {
            if p.contains('*') || p.contains('?') {
                glob(p, id)
            } else {
                id == p || id.starts_with(&format!("{p}."))
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn catalogue_has_autobahn_counts() {
        let all = all();
        let count = |c: u32| all.iter().filter(|k| k.category() == c).count();
        assert_eq!(count(1), 16);
        assert_eq!(count(2), 11);
        assert_eq!(count(3), 7);
        assert_eq!(count(4), 10);
        assert_eq!(count(5), 20);
        assert_eq!(count(6), 145);
        assert_eq!(count(7), 37);
        assert_eq!(count(9), 54);
        assert_eq!(count(10), 1);
        assert_eq!(all.iter().filter(|c| c.category() <= 10).count(), 301);
        assert_eq!(count(12) + count(13), 216);
        let ids: HashSet<&str> = all.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids.len(), all.len(), "case ids are unique");
        for id in [
            "1.1.8", "2.11", "5.20", "6.4.4", "6.23.7", "7.7.13", "7.9.9", "7.13.2", "9.8.6",
            "10.1.1", "12.5.18", "13.7.18",
        ] {
            assert!(ids.contains(id), "{id} missing");
        }
        let mut keys: Vec<Vec<u32>> = all.iter().map(|c| id_key(&c.id)).collect();
        let orig = keys.clone();
        keys.sort();
        assert_eq!(keys, orig, "catalogue is in Autobahn order");
    }

    #[test]
    fn only_compression_cases_negotiate() {
        for c in all() {
            let comp = matches!(c.kind, CaseKind::Compressed(_));
            assert_eq!(comp, may_be_unimplemented(c.category()), "{}", c.id);
        }
    }

    #[test]
    fn filters() {
        assert!(selected("1.*,6.4.*", "1.1.1"));
        assert!(selected("1.*,6.4.*", "6.4.3"));
        assert!(!selected("1.*,6.4.*", "6.5.1"));
        assert!(!selected("1.*", "10.1.1"));
        assert!(selected("6.4", "6.4.2"));
        assert!(!selected("6.4", "6.40.2"));
        assert!(selected("7.1.1", "7.1.1"));
        assert!(!selected("7.1.1", "7.1.10"));
        assert!(selected("*", "13.1.1"));
        assert!(selected("9.?.1", "9.7.1"));
    }

    #[test]
    fn timeouts_are_bounded() {
        for c in all() {
            let t = c.timeout();
            assert!(
                t >= Duration::from_secs(5) && t <= Duration::from_secs(120),
                "{}: {t:?}",
                c.id
            );
        }
    }
}
