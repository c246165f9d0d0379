//! Runs one case on one connection and judges it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::net::TcpStream;

use super::cases::{Action, Case, CaseKind, Compressed, Perf, Post, Script};
use super::deflate;
use super::handshake::{self, WsUrl};
use super::session::{Role, Session};
use super::verdict::{
    self, Behavior, CloseBehavior, CloseObservation, Event, ExpectedClose, judge_close,
    judge_events,
};
use wire_kit::{self as frame, OP_BINARY, OP_TEXT};

/// The expected close, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct ExpectedCloseReport {
    /// Whether the suite should start the close.
    pub closed_by_me: bool,
    /// Acceptable peer close codes (or none).
    pub codes: Vec<u16>,
    /// Whether a clean closing handshake is required.
    pub require_clean: bool,
}

impl From<&ExpectedClose> for ExpectedCloseReport {
    fn from(e: &ExpectedClose) -> Self {
        ExpectedCloseReport {
            closed_by_me: e.closed_by_me,
            codes: e.codes.clone(),
            require_clean: e.require_clean,
        }
    }
}

/// Everything recorded about one case run against one agent.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// Case id.
    pub id: String,
    /// What was sent.
    pub description: String,
    /// What was expected.
    pub expectation: String,
    /// Overall verdict (behaviour combined with close behaviour).
    pub verdict: Behavior,
    /// Case behaviour.
    pub behavior: Behavior,
    /// Close behaviour.
    pub behavior_close: CloseBehavior,
    /// Why the behaviour is what it is.
    pub result: String,
    /// Why the close behaviour is what it is.
    pub result_close: String,
    /// Expected event lists by behaviour label.
    pub expected: BTreeMap<&'static str, Vec<String>>,
    /// Expected close.
    pub expected_close: Option<ExpectedCloseReport>,
    /// Observed events.
    pub received: Vec<String>,
    /// Observed close.
    pub close: CloseObservation,
    /// Wall time of the case in milliseconds.
    pub duration_ms: f64,
    /// Timing figures of performance cases.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timing: Option<BTreeMap<&'static str, f64>>,
    /// Whether other cases ran at the same time.
    pub concurrent: bool,
    /// Short wire log.
    pub wirelog: Vec<String>,
    /// Set when NON-STRICT (or UNIMPLEMENTED) is allowed by the
    /// expectations file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_because: Option<String>,
    /// `Sec-WebSocket-Extensions` offered by the client (the suite, or the
    /// client under test).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offered_extensions: Option<String>,
    /// `Sec-WebSocket-Extensions` answered by the server (the server under
    /// test, or the suite).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negotiated_extensions: Option<String>,
}

impl CaseResult {
    fn base(case: &Case, concurrent: bool) -> CaseResult {
        CaseResult {
            id: case.id.clone(),
            description: case.description.clone(),
            expectation: case.expectation.clone(),
            verdict: Behavior::Failed,
            behavior: Behavior::Failed,
            behavior_close: CloseBehavior::Failed,
            result: String::new(),
            result_close: String::new(),
            expected: BTreeMap::new(),
            expected_close: None,
            received: Vec::new(),
            close: CloseObservation::never_opened(),
            duration_ms: 0.0,
            timing: None,
            concurrent,
            wirelog: Vec::new(),
            allowed_because: None,
            offered_extensions: None,
            negotiated_extensions: None,
        }
    }

    /// Whether permessage-deflate was offered by a client under test or
    /// accepted by a server under test.
    pub fn peer_speaks_deflate(&self, peer_is_client: bool) -> bool {
        let has = |h: &Option<String>| {
            h.as_deref().is_some_and(|v| {
                deflate::parse_extensions(v)
                    .map(|e| e.iter().any(|(n, _)| n == deflate::NAME))
                    .unwrap_or(false)
            })
        };
        if peer_is_client {
            has(&self.offered_extensions)
        } else {
            has(&self.negotiated_extensions)
        }
    }

    /// Result of a case whose connection never opened.
    pub fn not_opened(case: &Case, why: &str, started: Instant, concurrent: bool) -> CaseResult {
        let mut r = CaseResult::base(case, concurrent);
        r.result = format!("WebSocket connection could not be opened: {why}");
        r.result_close = "The WebSocket opening handshake was never completed.".into();
        r.duration_ms = ms(started.elapsed());
        r
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn label(b: Behavior) -> &'static str {
    b.label()
}

/// How the suite reaches a server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP and an HTTP/1.1 Upgrade (RFC 6455).
    Http1,
    /// One stream of an HTTP/2 connection, opened with extended CONNECT (RFC 8441).
    Http2,
}

/// Connects to a server under test and runs `case` against it.
pub async fn run_against_server(
    url: &WsUrl,
    case: &Case,
    concurrent: bool,
    transport: Transport,
) -> CaseResult {
    let started = Instant::now();
    let offers: &[deflate::Offer] = match &case.kind {
        CaseKind::Compressed(c) => &c.offers,
        _ => &[],
    };
    let offer = (!offers.is_empty()).then(|| deflate::Offer::header_list(offers));
    if transport == Transport::Http2 {
        let opened = match super::h2::open(url, Duration::from_secs(5), offer.as_deref()).await {
            Ok(opened) => opened,
            Err(e) => return CaseResult::not_opened(case, &e, started, concurrent),
        };
        let answer = opened.extensions;
        let session = |agreement: Option<_>| {
            let mut s = Session::from_halves(
                opened.reader,
                opened.writer,
                Role::Client,
                Vec::new(),
                started,
            );
            if let Some(a) = agreement {
                s.enable_deflate(a);
            }
            s
        };
        return finish_client_case(case, concurrent, started, offers, offer, answer, session).await;
    }
    let connect =
        tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(url.addr())).await;
    let mut stream = match connect {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return CaseResult::not_opened(case, &format!("connect: {e}"), started, concurrent);
        }
        Err(_) => return CaseResult::not_opened(case, "connect timed out", started, concurrent),
    };
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    let key: [u8; 16] = std::array::from_fn(|_| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 24) as u8
    });
    let hs = handshake::client(
        &mut stream,
        url,
        key,
        Duration::from_secs(5),
        offer.as_deref(),
    )
    .await;
    let (early, answer) = match hs {
        Ok(x) => x,
        Err(e) => return CaseResult::not_opened(case, &e, started, concurrent),
    };
    let session = |agreement: Option<_>| {
        let mut s = Session::new(stream, Role::Client, early, started);
        if let Some(a) = agreement {
            s.enable_deflate(a);
        }
        s
    };
    finish_client_case(case, concurrent, started, offers, offer, answer, session).await
}

/// Checks the server's extension answer and runs the case on the session
/// `open` makes with the agreement.
async fn finish_client_case(
    case: &Case,
    concurrent: bool,
    started: Instant,
    offers: &[deflate::Offer],
    offer: Option<String>,
    answer: Option<String>,
    open: impl FnOnce(Option<deflate::Agreement>) -> Session,
) -> CaseResult {
    let agreement = match deflate::check_response(answer.as_deref(), offers) {
        Ok(a) => a,
        Err(e) => {
            // RFC 6455 4.1 / RFC 7692 5: the client must fail the connection.
            let mut r = CaseResult::not_opened(
                case,
                &format!("invalid Sec-WebSocket-Extensions answer {answer:?}: {e}"),
                started,
                concurrent,
            );
            r.offered_extensions = offer;
            r.negotiated_extensions = answer;
            return r;
        }
    };
    let mut s = open(agreement);
    let mut r = run_on_session(&mut s, case, Role::Client, started, concurrent).await;
    r.offered_extensions = offer;
    r.negotiated_extensions = answer;
    r
}

/// Collects events and closes once they match (Autobahn's `finishWhenDone`).
struct Tracker<'a> {
    script: &'a Script,
    received: Vec<Event>,
}

impl Tracker<'_> {
    fn record(&mut self, s: &mut Session, ev: Event) {
        self.received.push(ev);
        let sc = self.script;
        let all_match =
            !sc.expected.is_empty() && sc.expected.iter().all(|(_, e)| *e == self.received);
        if all_match && sc.close.closed_by_me && !sc.suppress_close {
            s.send_close(sc.close.codes.first().copied(), b"");
        }
    }

    async fn pump(&mut self, s: &mut Session, until: Instant) {
        while let Some(ev) = s.next_event(until).await {
            self.record(s, ev);
        }
    }

    /// A tagged wait: true if the script may continue.
    async fn wait(&mut self, s: &mut Session, secs: f64, tag: Option<&'static str>) -> bool {
        self.pump(s, Instant::now() + Duration::from_secs_f64(secs))
            .await;
        match tag {
            Some(t) if s.is_open() => {
                s.note(format!("wait {t} elapsed, connection still open"));
                self.received.push(Event::Timeout(t));
                true
            }
            Some(_) => false,
            None => !s.is_closed(),
        }
    }
}

/// Runs a case on an open session and judges it.
pub async fn run_on_session(
    s: &mut Session,
    case: &Case,
    role: Role,
    started: Instant,
    concurrent: bool,
) -> CaseResult {
    let deadline = started + case.timeout();
    let mut r = CaseResult::base(case, concurrent);
    s.note(format!("case {} started", case.id));
    let (mut behavior, mut result, expected_close, received) = match &case.kind {
        CaseKind::Compressed(c) if s.pmd.is_none() => {
            // Autobahn: without the extension the case is UNIMPLEMENTED; the
            // suite closes normally and the close is still judged.
            s.note("permessage-deflate was not negotiated: closing");
            s.send_close(Some(1000), b"");
            let mut received = Vec::new();
            while let Some(ev) = s.next_event(deadline).await {
                received.push(ev);
            }
            r.expected.insert("OK", vec![compressed_expectation(c)]);
            let why = match role {
                Role::Client => "The server declined the permessage-deflate offer",
                Role::Server => {
                    "The client offered no permessage-deflate parameters that this case accepts"
                }
            };
            (
                Behavior::Unimplemented,
                format!("{why}; the case did not run (Autobahn: UNIMPLEMENTED)."),
                ExpectedClose::normal(),
                received,
            )
        }
        CaseKind::Compressed(c) => {
            let (b, res, timing, received) = run_compressed(s, c, deadline).await;
            r.timing = Some(timing);
            r.expected.insert("OK", vec![compressed_expectation(c)]);
            (b, res, ExpectedClose::normal(), received)
        }
        CaseKind::Script(sc) => {
            for (b, evs) in &sc.expected {
                r.expected
                    .insert(label(*b), evs.iter().map(Event::describe).collect());
            }
            let received = run_script(s, sc, deadline).await;
            let (b, res) = judge_events(&sc.expected, &received);
            (b, res, sc.close.clone(), received)
        }
        CaseKind::Perf(p) => {
            let (b, res, timing, received) = run_perf(s, p, deadline).await;
            r.timing = Some(timing);
            r.expected.insert("OK", vec![perf_expectation(p)]);
            (b, res, ExpectedClose::normal(), received)
        }
    };
    let timed_out = !s.is_closed();
    if timed_out {
        s.kill("case timeout");
    }
    let obs = s.close_observation();
    let (mut close_b, mut close_res) = judge_close(&expected_close, &obs, role == Role::Client);
    if expected_close.wrong_endpoint_fatal && expected_close.closed_by_me != obs.closed_by_me {
        behavior = Behavior::Failed;
        result = format!(
            "{result} The wrong endpoint closed: the peer did not fail the connection itself."
        );
    }
    if let CaseKind::Script(sc) = &case.kind {
        match &sc.post {
            Post::None => {}
            Post::WrongCodeFails => {
                if close_b == CloseBehavior::WrongCode {
                    behavior = Behavior::Failed;
                    result = close_res.clone();
                }
            }
            Post::Informational => {
                result = match behavior {
                    Behavior::Ok => "Messages were processed before the close.".to_string(),
                    Behavior::NonStrict => {
                        "The close was processed before the messages were echoed.".to_string()
                    }
                    _ => "Outcome undefined by the spec; see the observed events.".to_string(),
                };
                behavior = Behavior::Informational;
                close_res = format!("{close_res} (informational: {})", close_b.label());
                close_b = CloseBehavior::Informational;
            }
            Post::FrameCount(text, cont) => {
                let got = (s.tx_frames[OP_TEXT as usize], s.tx_frames[0]);
                if got != (*text, *cont) {
                    behavior = Behavior::Failed;
                    result = format!(
                        "Suite sent {} text + {} continuation frames, expected {text} + {cont}.",
                        got.0, got.1
                    );
                }
            }
        }
    }
    if timed_out {
        behavior = Behavior::Failed;
        result = format!(
            "Case did not finish within {} s (the suite killed it).",
            case.timeout().as_secs()
        );
    }
    r.behavior = behavior;
    r.behavior_close = close_b;
    r.verdict = verdict::overall(behavior, close_b);
    r.result = result;
    r.result_close = close_res;
    r.expected_close = Some((&expected_close).into());
    r.received = received.iter().map(Event::describe).collect();
    r.close = obs;
    r.duration_ms = ms(started.elapsed());
    s.note(format!(
        "case finished: {} / close {}",
        behavior.label(),
        close_b.label()
    ));
    r.wirelog = std::mem::take(&mut s.wirelog).into_lines();
    r
}

async fn run_script(s: &mut Session, sc: &Script, deadline: Instant) -> Vec<Event> {
    let mut t = Tracker {
        script: sc,
        received: Vec::new(),
    };
    'actions: for a in &sc.actions {
        // Handle what arrived meanwhile without blocking.
        t.pump(s, Instant::now()).await;
        if s.is_closed() {
            break;
        }
        match a {
            Action::Send { frame, chop, sync } => s.send_frame(frame, *chop, *sync),
            Action::Message {
                opcode,
                payload,
                frag,
            } => {
                for f in frame::fragment(*opcode, payload, *frag) {
                    s.send_frame(&f, 0, false);
                }
            }
            Action::Close { code, reason } => s.send_close(*code, reason),
            Action::Wait { secs, tag } => {
                if !t.wait(s, *secs, *tag).await {
                    break;
                }
            }
            Action::Chunked {
                frame: f,
                cuts,
                wait,
                tags,
            } => {
                s.tx_frames[(f.opcode & 0xF) as usize] += 1;
                s.note(format!(
                    "TX frame op={} len={} in {} pieces cut at payload offsets {cuts:?}",
                    f.opcode,
                    f.payload.len(),
                    cuts.len() + 1
                ));
                let bytes = s.encode(f);
                let header = bytes.len() - f.payload.len();
                let mut prev = 0;
                for (i, cut) in cuts.iter().enumerate() {
                    let end = (header + cut).min(bytes.len());
                    s.send_raw(bytes[prev..end].to_vec());
                    prev = end;
                    if !t.wait(s, *wait, tags.get(i).copied()).await {
                        break 'actions;
                    }
                }
                s.send_raw(bytes[prev..].to_vec());
            }
            Action::KillAfter(x) => s.kill_after(*x),
            Action::CloseAfter(x) => s.close_after(*x),
        }
    }
    t.pump(s, deadline).await;
    t.received
}

fn perf_payload(binary: bool, len: usize) -> Vec<u8> {
    if binary {
        wire_kit::noise(len, 0x1234_5678)
    } else {
        b"BAsd7&jh23".iter().copied().cycle().take(len).collect()
    }
}

fn perf_expectation(p: &Perf) -> String {
    match p {
        Perf::Single { binary, len, .. } => format!(
            "{} message of {len} bytes echoed with payload as sent",
            if *binary { "binary" } else { "text" }
        ),
        Perf::RoundTrip {
            binary, len, count, ..
        } => format!(
            "{count} {} messages of {len} bytes, each echoed with payload as sent",
            if *binary { "binary" } else { "text" }
        ),
    }
}

fn check_echo(ev: &Event, binary: bool, payload: &[u8]) -> Result<(), String> {
    match ev {
        Event::Message {
            binary: b,
            payload: got,
        } => {
            if *b != binary {
                Err(format!(
                    "Expected a {} message, got {}.",
                    if binary { "binary" } else { "text" },
                    if *b { "binary" } else { "text" }
                ))
            } else if got.len() != payload.len() {
                Err(format!(
                    "Expected payload of length {}, got {}.",
                    payload.len(),
                    got.len()
                ))
            } else if let Some(i) = got.iter().zip(payload).position(|(a, b)| a != b) {
                Err(format!(
                    "Echoed payload differs from what was sent at offset {i}."
                ))
            } else {
                Ok(())
            }
        }
        other => Err(format!("Unexpected {}.", other.describe())),
    }
}

fn closed_early(s: &Session, t0: Instant) -> String {
    let obs = s.close_observation();
    let by = if obs.closed_by_me {
        "the suite"
    } else {
        "the peer"
    };
    let code = match (obs.remote_code, obs.remote_reason.as_deref()) {
        (Some(c), Some(r)) if !r.is_empty() => format!(", peer close code {c} {r:?}"),
        (Some(c), _) => format!(", peer close code {c}"),
        _ => String::new(),
    };
    format!(
        "The connection was closed by {by} after {:.1} ms, before the echo arrived{code}.",
        ms(t0.elapsed())
    )
}

type PerfOutcome = (Behavior, String, BTreeMap<&'static str, f64>, Vec<Event>);

fn compressed_expectation(c: &Compressed) -> String {
    format!(
        "{} compressed {} messages of {} bytes, each echoed with payload as sent",
        c.count,
        if c.data.binary() { "binary" } else { "text" },
        c.len
    )
}

fn ratio(wire: u64, payload: u64) -> f64 {
    if payload == 0 {
        0.0
    } else {
        (wire as f64 / payload as f64 * 1000.0).round() / 1000.0
    }
}

/// Categories 12/13: `count` compressed messages, each after the echo of
/// the previous one, every echo checked byte for byte.
async fn run_compressed(s: &mut Session, c: &Compressed, deadline: Instant) -> PerfOutcome {
    let mut timing = BTreeMap::new();
    let mut received = Vec::new();
    let mut behavior = Behavior::Failed;
    let binary = c.data.binary();
    let op = if binary { OP_BINARY } else { OP_TEXT };
    s.note(format!(
        "TX {} compressed messages of {} bytes, one per echo{}",
        c.count,
        c.len,
        if c.frag > 0 {
            format!(", in frames of {} compressed bytes", c.frag)
        } else {
            String::new()
        }
    ));
    s.set_wirelog(false);
    s.close_after(c.wait as f64);
    let t0 = Instant::now();
    let mut expected = c.message(0);
    s.send_message(op, &expected, c.frag);
    let mut done = 0usize;
    let mut failed = false;
    let mut result = format!(
        "Did not receive all {} echoes within {} s.",
        c.count, c.wait
    );
    while let Some(ev) = s.next_event(deadline).await {
        if matches!(ev, Event::Ping(_) | Event::Pong(_)) || failed || done == c.count {
            continue;
        }
        match check_echo(&ev, binary, &expected) {
            Ok(()) => {
                done += 1;
                if done < c.count {
                    expected = c.message(done);
                    s.send_message(op, &expected, c.frag);
                } else {
                    let total = t0.elapsed();
                    timing.insert("total_ms", ms(total));
                    timing.insert(
                        "avg_rtt_us",
                        (total.as_secs_f64() * 1e7 / c.count as f64).round() / 10.0,
                    );
                    behavior = Behavior::Ok;
                    result = format!(
                        "All {} echoes received and equal to what was sent, in {:.1} ms.",
                        c.count,
                        ms(total)
                    );
                    s.set_wirelog(true);
                    s.send_close(Some(1000), b"");
                }
            }
            Err(e) => {
                result = format!("Message {} of {}: {e}", done + 1, c.count);
                failed = true;
                received.push(ev);
                s.set_wirelog(true);
                s.send_close(Some(1000), b"");
            }
        }
    }
    if !failed && done < c.count && s.is_closed() {
        result = if done == 0 {
            let agreed = s.pmd.as_ref().map(|p| p.negotiated.clone());
            format!(
                "{} Negotiated: {:?} (a peer that cannot work with these parameters must fail the connection, which fails the case).",
                closed_early(s, t0),
                agreed.unwrap_or_default()
            )
        } else {
            format!(
                "The connection was closed after {done} of {} echoes.",
                c.count
            )
        };
    }
    timing.insert("messages_echoed", done as f64);
    if let Some(p) = &s.pmd {
        timing.insert("tx_ratio", ratio(p.tx_wire, p.tx_payload));
        timing.insert("rx_ratio", ratio(p.rx_wire, p.rx_payload));
        timing.insert("rx_uncompressed_messages", p.rx_plain as f64);
    }
    (behavior, result, timing, received)
}

async fn run_perf(s: &mut Session, p: &Perf, deadline: Instant) -> PerfOutcome {
    let mut timing = BTreeMap::new();
    let mut received = Vec::new();
    let mut behavior = Behavior::Failed;
    match p {
        Perf::Single {
            binary,
            len,
            frag,
            chop,
            wait,
        } => {
            let op = if *binary { OP_BINARY } else { OP_TEXT };
            let payload = perf_payload(*binary, *len);
            let frames = frame::fragment(op, &payload, *frag);
            s.note(format!(
                "TX {} frame(s) with {len} bytes in total{}",
                frames.len(),
                if *chop > 0 {
                    format!(", written in chops of {chop}")
                } else {
                    String::new()
                }
            ));
            s.set_wirelog(false);
            let t0 = Instant::now();
            for f in &frames {
                s.send_frame(f, *chop, false);
            }
            drop(frames);
            s.close_after(*wait as f64);
            let mut result = format!("Did not receive the message within {wait} s.");
            while let Some(ev) = s.next_event(deadline).await {
                if matches!(ev, Event::Ping(_) | Event::Pong(_)) {
                    continue;
                }
                if behavior == Behavior::Failed && received.is_empty() {
                    let rtt = t0.elapsed();
                    timing.insert("roundtrip_ms", ms(rtt));
                    timing.insert(
                        "throughput_mib_s",
                        (2.0 * *len as f64 / (1 << 20) as f64 / rtt.as_secs_f64().max(1e-9) * 10.0)
                            .round()
                            / 10.0,
                    );
                    match check_echo(&ev, *binary, &payload) {
                        Ok(()) => {
                            behavior = Behavior::Ok;
                            result =
                                format!("Received the echo of {len} bytes in {:.1} ms.", ms(rtt));
                        }
                        Err(e) => result = e,
                    }
                    s.set_wirelog(true);
                    s.send_close(Some(1000), b"");
                }
                received.push(ev);
            }
            if received.is_empty() && s.is_closed() {
                result = closed_early(s, t0);
            }
            (behavior, result, timing, received)
        }
        Perf::RoundTrip {
            binary,
            len,
            count,
            wait,
        } => {
            let op = if *binary { OP_BINARY } else { OP_TEXT };
            let payload = perf_payload(*binary, *len);
            let msg = frame::FrameSpec::new(op, payload.clone());
            s.note(format!("TX {count} messages of {len} bytes, one per echo"));
            s.set_wirelog(false);
            s.close_after(*wait as f64);
            let t0 = Instant::now();
            s.send_frame(&msg, 0, false);
            let mut done = 0usize;
            let mut result = format!("Did not finish {count} round trips within {wait} s.");
            let mut failed = false;
            while let Some(ev) = s.next_event(deadline).await {
                if matches!(ev, Event::Ping(_) | Event::Pong(_)) || failed || done == *count {
                    continue;
                }
                match check_echo(&ev, *binary, &payload) {
                    Ok(()) => {
                        done += 1;
                        if done < *count {
                            s.send_frame(&msg, 0, false);
                        } else {
                            let total = t0.elapsed();
                            timing.insert("total_ms", ms(total));
                            timing.insert(
                                "avg_rtt_us",
                                (total.as_secs_f64() * 1e7 / *count as f64).round() / 10.0,
                            );
                            behavior = Behavior::Ok;
                            result = format!("All {count} echoes received in {:.1} ms.", ms(total));
                            s.set_wirelog(true);
                            s.send_close(Some(1000), b"");
                        }
                    }
                    Err(e) => {
                        result = format!("Round trip {}: {e}", done + 1);
                        failed = true;
                        received.push(ev);
                        s.set_wirelog(true);
                        s.send_close(Some(1000), b"");
                    }
                }
            }
            timing.insert("round_trips", done as f64);
            if behavior != Behavior::Ok && !failed && s.is_closed() {
                result = format!("After {done} round trips: {}", closed_early(s, t0));
            }
            if behavior == Behavior::Ok {
                received.insert(0, Event::Timeout("(all round trips echoed)"));
            }
            (behavior, result, timing, received)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::cases;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use wire_kit::{FrameReader, FrameSpec, OP_CLOSE, OP_PING, OP_PONG};

    /// A scripted in-process peer (server side) for runner tests.
    async fn peer(behave: fn(&frame::Frame) -> Vec<FrameSpec>, close_tcp_on_close: bool) -> WsUrl {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut st, _) = l.accept().await.unwrap();
            let early = handshake::server(&mut st, Duration::from_secs(2), |_, _| None)
                .await
                .unwrap()
                .early;
            let mut r = FrameReader::new(1 << 24);
            r.push(&early);
            let mut buf = vec![0u8; 65536];
            loop {
                while let Ok(Some(f)) = r.next_frame() {
                    for out in behave(&f) {
                        let is_close = out.opcode == OP_CLOSE;
                        st.write_all(&out.encode()).await.unwrap();
                        if is_close && close_tcp_on_close {
                            return;
                        }
                    }
                }
                match st.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => r.push(&buf[..n]),
                }
            }
        });
        WsUrl::parse(&format!("ws://127.0.0.1:{port}/")).unwrap()
    }

    fn echo(f: &frame::Frame) -> Vec<FrameSpec> {
        match f.opcode {
            OP_PING => vec![FrameSpec::new(OP_PONG, f.payload.clone())],
            OP_CLOSE => vec![FrameSpec::new(OP_CLOSE, f.payload.clone())],
            o @ (1 | 2) => vec![FrameSpec::new(o, f.payload.clone())],
            _ => vec![],
        }
    }

    fn find(id: &str) -> Case {
        cases::all().into_iter().find(|c| c.id == id).unwrap()
    }

    /// An in-process echo server speaking permessage-deflate through the
    /// suite's own session (as server); `answer` picks the extension answer.
    async fn deflate_peer(answer: fn(Option<&str>) -> Option<String>) -> WsUrl {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut st, _) = l.accept().await.unwrap();
            let up = handshake::server(&mut st, Duration::from_secs(2), |_, o| answer(o))
                .await
                .unwrap();
            let mut s = Session::new(st, Role::Server, up.early, Instant::now());
            if let Some(a) = up.accepted {
                let offers = [deflate::Offer::autobahn(false, None)];
                if let Ok(Some(a)) = deflate::check_response(Some(&a), &offers) {
                    s.enable_deflate(a);
                }
            }
            let until = Instant::now() + Duration::from_secs(60);
            while let Some(ev) = s.next_event(until).await {
                if let Event::Message { binary, payload } = ev {
                    s.send_message(if binary { OP_BINARY } else { OP_TEXT }, &payload, 300);
                }
            }
        });
        WsUrl::parse(&format!("ws://127.0.0.1:{port}/")).unwrap()
    }

    #[tokio::test]
    async fn compressed_echo_passes_and_declining_is_unimplemented() {
        fn accept_as_offered(o: Option<&str>) -> Option<String> {
            let offers: Vec<_> = deflate::parse_offers(o?)
                .into_iter()
                .filter_map(Result::ok)
                .collect();
            let mut a = deflate::AcceptRule::ClientWindow {
                bits: 8,
                no_context_takeover: false,
            }
            .accept(&offers)?;
            a.server_max_window_bits = Some(a.server_max_window_bits.unwrap_or(15).min(9));
            Some(a.header())
        }
        for id in ["12.4.3", "13.5.3", "13.6.3"] {
            let url = deflate_peer(accept_as_offered).await;
            let r = run_against_server(&url, &find(id), true, Transport::Http1).await;
            assert_eq!(r.verdict, Behavior::Ok, "{id}: {r:#?}");
            let t = r.timing.as_ref().unwrap();
            assert!(t["tx_ratio"] > 0.0 && t["tx_ratio"] < 1.0, "{t:?}");
            assert!(t["rx_ratio"] > 0.0 && t["rx_ratio"] < 1.0, "{t:?}");
            assert!(r.peer_speaks_deflate(false));
        }
        let url = deflate_peer(|_| None).await;
        let r = run_against_server(&url, &find("12.1.1"), true, Transport::Http1).await;
        assert_eq!(r.verdict, Behavior::Unimplemented, "{r:#?}");
        assert_eq!(r.behavior_close, CloseBehavior::Ok);
        // An answer that does not fit the offer fails the case.
        let url =
            deflate_peer(|_| Some("permessage-deflate; server_max_window_bits=9".into())).await;
        let r = run_against_server(&url, &find("13.3.1"), true, Transport::Http1).await;
        assert_eq!(r.verdict, Behavior::Failed, "{r:#?}");
        assert!(r.result.contains("does not accept"), "{}", r.result);
    }

    #[tokio::test]
    async fn echoing_peer_passes_framing_case() {
        let url = peer(echo, true).await;
        let r = run_against_server(&url, &find("1.1.2"), false, Transport::Http1).await;
        assert_eq!(r.behavior, Behavior::Ok, "{r:#?}");
        assert_eq!(r.behavior_close, CloseBehavior::Ok, "{r:#?}");
        assert_eq!(r.close.remote_code, Some(1000));
        assert!(r.close.was_clean && r.close.closed_by_me);
    }

    #[tokio::test]
    async fn peer_ignoring_rsv_fails() {
        // Echoes even the RSV frame and never fails the connection.
        let url = peer(echo, true).await;
        let r = run_against_server(&url, &find("3.1"), false, Transport::Http1).await;
        assert_eq!(r.behavior, Behavior::Failed, "{r:#?}");
        assert_eq!(r.behavior_close, CloseBehavior::Failed);
        assert_eq!(r.verdict, Behavior::Failed);
    }

    #[tokio::test]
    async fn peer_failing_with_right_code_passes() {
        fn strict(f: &frame::Frame) -> Vec<FrameSpec> {
            if f.rsv != 0 {
                vec![FrameSpec::new(
                    OP_CLOSE,
                    frame::close_payload(Some(1002), b""),
                )]
            } else {
                echo(f)
            }
        }
        let url = peer(strict, true).await;
        let r = run_against_server(&url, &find("3.1"), false, Transport::Http1).await;
        assert_eq!(
            (r.behavior, r.behavior_close),
            (Behavior::Ok, CloseBehavior::Ok),
            "{r:#?}"
        );
        assert!(!r.close.closed_by_me);
    }

    #[tokio::test]
    async fn wrong_close_code_is_reported() {
        fn wrong(f: &frame::Frame) -> Vec<FrameSpec> {
            if f.rsv != 0 {
                vec![FrameSpec::new(
                    OP_CLOSE,
                    frame::close_payload(Some(1000), b""),
                )]
            } else {
                echo(f)
            }
        }
        let url = peer(wrong, true).await;
        let r = run_against_server(&url, &find("3.1"), false, Transport::Http1).await;
        assert_eq!(r.behavior_close, CloseBehavior::WrongCode, "{r:#?}");
        assert_eq!(r.verdict, Behavior::Failed);
    }

    #[tokio::test]
    async fn unmasked_or_garbage_reply_is_a_violation_not_a_panic() {
        fn garbage(f: &frame::Frame) -> Vec<FrameSpec> {
            if f.opcode == 1 {
                // A masked frame from a server is a violation.
                vec![FrameSpec::new(1, f.payload.clone()).masked(Some([9, 9, 9, 9]))]
            } else {
                vec![]
            }
        }
        let url = peer(garbage, false).await;
        let r = run_against_server(&url, &find("1.1.2"), false, Transport::Http1).await;
        assert_eq!(r.verdict, Behavior::Failed);
        assert!(r.received.iter().any(|e| e.contains("violation")), "{r:#?}");
    }

    #[tokio::test]
    async fn unreachable_server_fails_fast() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let url = WsUrl::parse(&format!("ws://127.0.0.1:{port}/")).unwrap();
        let r = run_against_server(&url, &find("1.1.1"), false, Transport::Http1).await;
        assert_eq!(r.verdict, Behavior::Failed);
        assert!(r.result.contains("could not be opened"));
    }

    #[test]
    fn perf_payloads_and_echo_check() {
        let p = perf_payload(false, 25);
        assert!(std::str::from_utf8(&p).is_ok());
        assert_eq!(p.len(), 25);
        let b = perf_payload(true, 1000);
        assert!(b.iter().any(|&x| x != b[0]));
        assert!(check_echo(&Event::binary(b.clone()), true, &b).is_ok());
        assert!(check_echo(&Event::text(b.clone()), true, &b).is_err());
        let mut c = b.clone();
        c[500] ^= 1;
        assert!(
            check_echo(&Event::binary(c), true, &b)
                .unwrap_err()
                .contains("offset 500")
        );
        assert!(check_echo(&Event::binary(vec![1]), true, &b).is_err());
    }
}
