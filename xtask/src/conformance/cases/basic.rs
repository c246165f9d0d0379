//! Categories 1 (framing), 2 (pings/pongs), 3 (reserved bits),
//! 4 (opcodes) and 5 (fragmentation).

use super::{Action, Case, Script};
use crate::conformance::verdict::{Event, ExpectedClose};
use wire_kit::{FrameSpec, OP_BINARY, OP_CONT, OP_PING, OP_PONG, OP_TEXT};

const HELLO: &[u8] = b"Hello, world!";
const BIN8: &[u8] = b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff";

fn protocol_error() -> ExpectedClose {
    ExpectedClose::peer_fails(1002)
}

/// Category 1: text and binary messages of boundary lengths.
pub fn framing() -> Vec<Case> {
    let mut v = Vec::new();
    let sizes: [(usize, usize); 8] = [
        (0, 0),
        (125, 0),
        (126, 0),
        (127, 0),
        (128, 0),
        (65535, 0),
        (65536, 0),
        (65536, 997),
    ];
    for (sub, binary) in [(1, false), (2, true)] {
        for (i, (len, chop)) in sizes.iter().enumerate() {
            let (op, fill, kind) = if binary {
                (OP_BINARY, 0xfeu8, "binary")
            } else {
                (OP_TEXT, b'*', "text")
            };
            let payload = vec![fill; *len];
            let ev = if binary {
                Event::binary(payload.clone())
            } else {
                Event::text(payload.clone())
            };
            let desc = if *chop > 0 {
                format!(
                    "Send {kind} message with payload of length {len}, written in chops of {chop} octets."
                )
            } else {
                format!("Send {kind} message with payload of length {len}.")
            };
            let s = Script::new(vec![ev])
                .send_with(FrameSpec::new(op, payload), *chop, false)
                .then(Action::KillAfter(if *len >= 65535 { 10.0 } else { 2.0 }));
            v.push(Case::script(
                format!("1.{sub}.{}", i + 1),
                desc,
                format!("Receive echoed {kind} message (with payload as sent). Clean close with normal code."),
                s,
            ));
        }
    }
    v
}

/// Category 2: pings and pongs.
pub fn pings() -> Vec<Case> {
    let pong_case = |id: &str, desc: &str, payload: Vec<u8>, chop: usize| {
        Case::script(
            id,
            desc,
            "Pong (with payload as sent). Clean close with normal code.",
            Script::new(vec![Event::pong(payload.clone())])
                .send_with(FrameSpec::new(OP_PING, payload), chop, false)
                .then(Action::KillAfter(2.0)),
        )
    };
    let pings10 = |id: &str, chop: usize| {
        let mut s = Script::new(Vec::new());
        for i in 0..10 {
            let p = format!("payload-{i}").into_bytes();
            s.expected[0].1.push(Event::pong(p.clone()));
            s = s.send_with(FrameSpec::new(OP_PING, p), chop, false);
        }
        Case::script(
            id,
            format!(
                "Send 10 pings with payload{}.",
                if chop > 0 {
                    ", written octet by octet"
                } else {
                    ""
                }
            ),
            "Pongs for all pings, with their payloads (not required by the spec, checked anyway). Clean close with normal code.",
            s.then(Action::CloseAfter(3.0)),
        )
    };
    vec![
        pong_case("2.1", "Send ping without payload.", Vec::new(), 0),
        pong_case(
            "2.2",
            "Send ping with small text payload.",
            HELLO.to_vec(),
            0,
        ),
        pong_case(
            "2.3",
            "Send ping with small binary (non UTF-8) payload.",
            BIN8.to_vec(),
            0,
        ),
        pong_case(
            "2.4",
            "Send ping with binary payload of 125 octets.",
            vec![0xfe; 125],
            0,
        ),
        Case::script(
            "2.5",
            "Send ping with binary payload of 126 octets.",
            "Connection is failed immediately (1002/protocol error): control frames may carry at most 125 octets.",
            Script::new(Vec::new())
                .close(protocol_error())
                .send(FrameSpec::new(OP_PING, vec![0xfe; 126]))
                .then(Action::KillAfter(1.0)),
        ),
        pong_case(
            "2.6",
            "Send ping with binary payload of 125 octets, written octet by octet.",
            vec![0xfe; 125],
            1,
        ),
        Case::script(
            "2.7",
            "Send unsolicited pong without payload.",
            "Nothing in reply. Clean close with normal code.",
            Script::new(Vec::new())
                .send(FrameSpec::new(OP_PONG, Vec::new()))
                .then(Action::CloseAfter(1.0)),
        ),
        Case::script(
            "2.8",
            "Send unsolicited pong with payload.",
            "Nothing in reply. Clean close with normal code.",
            Script::new(Vec::new())
                .send(FrameSpec::new(
                    OP_PONG,
                    b"unsolicited pong payload".to_vec(),
                ))
                .then(Action::CloseAfter(1.0)),
        ),
        Case::script(
            "2.9",
            "Send unsolicited pong with payload, then ping with payload.",
            "Pong for the ping. Clean close with normal code.",
            Script::new(vec![Event::pong(b"ping payload".to_vec())])
                .send(FrameSpec::new(
                    OP_PONG,
                    b"unsolicited pong payload".to_vec(),
                ))
                .send(FrameSpec::new(OP_PING, b"ping payload".to_vec()))
                .then(Action::CloseAfter(1.0)),
        ),
        pings10("2.10", 0),
        pings10("2.11", 1),
    ]
}

/// Category 3: reserved bits.
pub fn reserved_bits() -> Vec<Case> {
    let then_fail = |id: &str, rsv: u8, chop: usize, sync: bool, how: &str| {
        Case::script(
            id,
            format!("Send small text message, then again with RSV = {rsv}, then a ping{how}."),
            "Echo of the first message, then the connection is failed immediately (RSV must be 0 without an extension). No pong.",
            Script::new(vec![Event::text(HELLO)])
                .non_strict(Vec::new())
                .close(protocol_error())
                .send_with(FrameSpec::new(OP_TEXT, HELLO), chop, sync)
                .send_with(FrameSpec::new(OP_TEXT, HELLO).rsv(rsv), chop, sync)
                .send_with(FrameSpec::new(OP_PING, Vec::new()), chop, sync)
                .then(Action::KillAfter(1.0)),
        )
    };
    let alone = |id: &str, desc: &str, f: FrameSpec| {
        Case::script(
            id,
            desc,
            "The connection is failed immediately (RSV must be 0 without an extension).",
            Script::new(Vec::new())
                .close(protocol_error())
                .send(f)
                .then(Action::KillAfter(1.0)),
        )
    };
    vec![
        alone(
            "3.1",
            "Send small text message with RSV = 1.",
            FrameSpec::new(OP_TEXT, HELLO).rsv(1),
        ),
        then_fail("3.2", 2, 0, false, ""),
        then_fail("3.3", 3, 0, true, ", frame by frame"),
        then_fail("3.4", 4, 1, false, ", octet by octet"),
        alone(
            "3.5",
            "Send small binary message with RSV = 5.",
            FrameSpec::new(OP_BINARY, BIN8).rsv(5),
        ),
        alone(
            "3.6",
            "Send ping with payload and RSV = 6.",
            FrameSpec::new(OP_PING, HELLO).rsv(6),
        ),
        alone(
            "3.7",
            "Send close with RSV = 7.",
            FrameSpec::new(0x8, Vec::new()).rsv(7),
        ),
    ]
}

/// Category 4: reserved opcodes.
pub fn opcodes() -> Vec<Case> {
    let mut v = Vec::new();
    for (sub, base) in [(1u8, 3u8), (2, 11)] {
        let kind = if sub == 1 { "non-control" } else { "control" };
        for i in 0..5u8 {
            let op = base + i;
            let id = format!("4.{sub}.{}", i + 1);
            let payload: &[u8] = if i % 2 == 1 || i == 4 {
                b"reserved opcode payload"
            } else {
                b""
            };
            let with = if payload.is_empty() {
                ""
            } else {
                " and non-empty payload"
            };
            let case = if i < 2 {
                Case::script(
                    id,
                    format!("Send frame with reserved {kind} opcode {op}{with}."),
                    "The connection is failed immediately.",
                    Script::new(Vec::new())
                        .close(protocol_error())
                        .send(FrameSpec::new(op, payload))
                        .then(Action::KillAfter(1.0)),
                )
            } else {
                let chop = if i == 4 { 1 } else { 0 };
                Case::script(
                    id,
                    format!(
                        "Send small text message, then frame with reserved {kind} opcode {op}{with}, then ping{}.",
                        if chop > 0 { ", octet by octet" } else { "" }
                    ),
                    "Echo of the first message, then the connection is failed immediately. No pong.",
                    Script::new(vec![Event::text(HELLO)])
                        .non_strict(Vec::new())
                        .close(protocol_error())
                        .send_with(FrameSpec::new(OP_TEXT, HELLO), chop, false)
                        .send_with(FrameSpec::new(op, payload), chop, false)
                        .send_with(FrameSpec::new(OP_PING, Vec::new()), chop, false)
                        .then(Action::KillAfter(1.0)),
                )
            };
            v.push(case);
        }
    }
    v
}

fn f(op: u8, fin: bool, p: &[u8]) -> FrameSpec {
    FrameSpec::new(op, p).fin(fin)
}

/// Category 5: fragmentation.
pub fn fragmentation() -> Vec<Case> {
    let mut v = Vec::new();
    let fail = |id: &str, desc: String, frames: Vec<FrameSpec>, chop: usize, sync: bool| {
        let mut s = Script::new(Vec::new()).close(protocol_error());
        for fr in frames {
            s = s.send_with(fr, chop, sync);
        }
        Case::script(
            id,
            desc,
            "The connection is failed immediately.",
            s.then(Action::KillAfter(1.0)),
        )
    };
    v.push(fail(
        "5.1",
        "Send ping in two fragments.".into(),
        vec![
            f(OP_PING, false, b"fragment1"),
            f(OP_CONT, true, b"fragment2"),
        ],
        0,
        false,
    ));
    v.push(fail(
        "5.2",
        "Send pong in two fragments.".into(),
        vec![
            f(OP_PONG, false, b"fragment1"),
            f(OP_CONT, true, b"fragment2"),
        ],
        0,
        false,
    ));
    let modes = [
        (0usize, false, "in one chop"),
        (1, false, "octet by octet"),
        (0, true, "frame by frame"),
    ];
    for (i, (chop, sync, how)) in modes.iter().enumerate() {
        let s = Script::new(vec![Event::text(b"fragment1fragment2".to_vec())])
            .send_with(f(OP_TEXT, false, b"fragment1"), *chop, *sync)
            .send_with(f(OP_CONT, true, b"fragment2"), *chop, *sync)
            .then(Action::KillAfter(2.0));
        v.push(Case::script(
            format!("5.{}", 3 + i),
            format!("Send text message in two fragments, {how}."),
            "Echo of the whole message. Clean close with normal code.",
            s,
        ));
    }
    for (i, (chop, sync, how)) in modes.iter().enumerate() {
        let s = Script::new(vec![
            Event::pong(b"ping payload".to_vec()),
            Event::text(b"fragment1fragment2".to_vec()),
        ])
        .send_with(f(OP_TEXT, false, b"fragment1"), *chop, *sync)
        .send_with(f(OP_PING, true, b"ping payload"), *chop, *sync)
        .send_with(f(OP_CONT, true, b"fragment2"), *chop, *sync)
        .then(Action::KillAfter(2.0));
        v.push(Case::script(
            format!("5.{}", 6 + i),
            format!("Send text message in two fragments with a ping between them, {how}."),
            "Pong, then echo of the whole message. Clean close with normal code.",
            s,
        ));
    }
    for (i, (chop, sync, how)) in modes.iter().enumerate() {
        v.push(fail(
            &format!("5.{}", 9 + i),
            format!("Send continuation frame with FIN = 1 where there is nothing to continue, then a text message, {how}."),
            vec![
                f(OP_CONT, true, b"non-continuation payload"),
                f(OP_TEXT, true, HELLO),
            ],
            *chop,
            *sync,
        ));
    }
    for (i, (chop, sync, how)) in modes.iter().enumerate() {
        v.push(fail(
            &format!("5.{}", 12 + i),
            format!("Send continuation frame with FIN = 0 where there is nothing to continue, then a text message, {how}."),
            vec![
                f(OP_CONT, false, b"non-continuation payload"),
                f(OP_TEXT, true, HELLO),
            ],
            *chop,
            *sync,
        ));
    }
    v.push(Case::script(
        "5.15",
        "Send text message in two fragments, then a continuation frame with FIN = 0 where there is nothing to continue, then a text message, in one chop.",
        "Echo of the first message, then the connection is failed immediately.",
        Script::new(vec![Event::text(b"fragment1fragment2".to_vec())])
            .non_strict(Vec::new())
            .close(protocol_error())
            .send(f(OP_TEXT, false, b"fragment1"))
            .send(f(OP_CONT, true, b"fragment2"))
            .send(f(OP_CONT, false, b"fragment3"))
            .send(f(OP_TEXT, true, b"fragment4"))
            .then(Action::KillAfter(1.0)),
    ));
    for (id, first_fin) in [("5.16", false), ("5.17", true)] {
        let mut frames = Vec::new();
        for _ in 0..2 {
            frames.push(f(OP_CONT, first_fin, b"fragment1"));
            frames.push(f(OP_TEXT, false, b"fragment2"));
            frames.push(f(OP_CONT, true, b"fragment3"));
        }
        v.push(fail(
            id,
            format!(
                "Twice: continuation frame with FIN = {} (nothing to continue), then a text message in two fragments.",
                first_fin as u8
            ),
            frames,
            0,
            false,
        ));
    }
    v.push(fail(
        "5.18",
        "Send text message in two fragments, both with the text opcode.".into(),
        vec![
            f(OP_TEXT, false, b"fragment1"),
            f(OP_TEXT, true, b"fragment2"),
        ],
        0,
        false,
    ));
    for (id, sync) in [("5.19", false), ("5.20", true)] {
        let frags: [&[u8]; 5] = [
            b"fragment1",
            b"fragment2",
            b"fragment3",
            b"fragment4",
            b"fragment5",
        ];
        let s = Script::new(vec![
            Event::pong(b"pongme 1!".to_vec()),
            Event::pong(b"pongme 2!".to_vec()),
            Event::text(frags.concat()),
        ])
        .send_with(f(OP_TEXT, false, frags[0]), 0, sync)
        .send_with(f(OP_CONT, false, frags[1]), 0, sync)
        .send_with(f(OP_PING, true, b"pongme 1!"), 0, sync)
        .then(Action::Wait {
            secs: 1.0,
            tag: None,
        })
        .send_with(f(OP_CONT, false, frags[2]), 0, sync)
        .send_with(f(OP_CONT, false, frags[3]), 0, sync)
        .send_with(f(OP_PING, true, b"pongme 2!"), 0, sync)
        .send_with(f(OP_CONT, true, frags[4]), 0, sync)
        .then(Action::CloseAfter(1.0));
        v.push(Case::script(
            id,
            format!(
                "Text message in 5 fragments: 2 fragments, a ping, wait 1 s, 2 fragments, a ping, the last fragment{}.",
                if sync { ", frame by frame" } else { "" }
            ),
            "The first ping is answered before the message is complete; pongs carry the ping payloads; the whole message is echoed.",
            s,
        ));
    }
    v
}
