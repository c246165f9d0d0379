//! Category 7: close handling (all fuzzer-initiated, as in Autobahn).

use super::{Action, Case, Post, Script};
use crate::conformance::verdict::{Event, ExpectedClose};
use wire_kit::{FrameSpec, OP_CONT, OP_PING, OP_TEXT};

fn close(code: Option<u16>, reason: &[u8]) -> Action {
    Action::Close {
        code,
        reason: reason.to_vec(),
    }
}

/// All of category 7.
pub fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    let normal = || {
        Script::new(Vec::new())
            .suppress_close()
            .post(Post::WrongCodeFails)
    };
    v.push(Case::script(
        "7.1.1",
        "Send a text message, then a close frame.",
        "Echo of the message. Clean close with normal code.",
        Script::new(vec![Event::text(b"Hello World!".to_vec())])
            .send(FrameSpec::new(OP_TEXT, b"Hello World!".to_vec()))
            .then(close(Some(1000), b""))
            .then(Action::KillAfter(1.0)),
    ));
    v.push(Case::script(
        "7.1.2",
        "Send two close frames.",
        "Clean close with normal code.",
        normal()
            .then(close(Some(1000), b""))
            .then(close(Some(1000), b""))
            .then(Action::KillAfter(1.0)),
    ));
    v.push(Case::script(
        "7.1.3",
        "Send a ping after the close frame.",
        "Clean close with normal code, no pong.",
        normal()
            .then(close(Some(1000), b""))
            .send(FrameSpec::new(OP_PING, Vec::new()))
            .then(Action::KillAfter(1.0)),
    ));
    v.push(Case::script(
        "7.1.4",
        "Send a text message after the close frame.",
        "Clean close with normal code, no echo.",
        normal()
            .then(close(Some(1000), b""))
            .send(FrameSpec::new(OP_TEXT, b"Hello World!".to_vec()))
            .then(Action::KillAfter(1.0)),
    ));
    v.push(Case::script(
        "7.1.5",
        "Send the first fragment of a text message, then a close frame, then the last fragment.",
        "Clean close with normal code, no echo.",
        normal()
            .send(FrameSpec::new(OP_TEXT, b"fragment1".to_vec()).fin(false))
            .then(close(Some(1000), b""))
            .send(FrameSpec::new(OP_CONT, b"fragment2".to_vec()))
            .then(Action::KillAfter(1.0)),
    ));
    let big: Vec<u8> = b"BAsd7&jh23"
        .iter()
        .copied()
        .cycle()
        .take(256 << 10)
        .collect();
    v.push(Case::script(
        "7.1.6",
        "Send a 256 KiB text message, a small text message, a close frame and a ping, back to back.",
        "Implementation-defined: the close may be processed before the echoes are complete. Reported as INFORMATIONAL.",
        Script::new(vec![Event::text(b"Hello World!".to_vec())])
            .non_strict(Vec::new())
            .suppress_close()
            .post(Post::Informational)
            .send(FrameSpec::new(OP_TEXT, big))
            .send(FrameSpec::new(OP_TEXT, b"Hello World!".to_vec()))
            .then(close(Some(1000), b""))
            .send(FrameSpec::new(OP_PING, Vec::new()))
            .then(Action::KillAfter(1.0)),
    ));
    type Sized = (&'static str, &'static str, Option<u16>, Vec<u8>, bool);
    let sized: [Sized; 6] = [
        (
            "7.3.1",
            "payload length 0 (no code, no reason)",
            None,
            Vec::new(),
            true,
        ),
        ("7.3.2", "payload length 1", None, b"a".to_vec(), false),
        (
            "7.3.3",
            "payload length 2 (code 1000, no reason)",
            Some(1000),
            Vec::new(),
            true,
        ),
        (
            "7.3.4",
            "code 1000 and a short reason",
            Some(1000),
            b"Hello World!".to_vec(),
            true,
        ),
        (
            "7.3.5",
            "code 1000 and a reason of 123 octets (125 in total)",
            Some(1000),
            vec![b'*'; 123],
            true,
        ),
        (
            "7.3.6",
            "code 1000 and a reason of 124 octets (126 in total, too long)",
            Some(1000),
            vec![b'*'; 124],
            false,
        ),
    ];
    for (id, what, code, reason, ok) in sized {
        let (exp, c) = if ok {
            ("Clean close with normal code.", ExpectedClose::normal())
        } else {
            (
                "Clean close with protocol error (1002), or dropped TCP.",
                ExpectedClose::by_me(&[1002], false),
            )
        };
        v.push(Case::script(
            id,
            format!("Send a close frame with {what}."),
            exp,
            normal()
                .close(c)
                .then(close(code, &reason))
                .then(Action::KillAfter(1.0)),
        ));
    }
    v.push(Case::script(
        "7.5.1",
        "Send a close frame with code 1000 and a reason that is not valid UTF-8.",
        "Clean close with protocol error (1002) or invalid payload (1007), or dropped TCP.",
        normal()
            .close(ExpectedClose::by_me(&[1002, 1007], false))
            .then(close(
                Some(1000),
                b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64",
            ))
            .then(Action::KillAfter(1.0)),
    ));
    let valid = [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
    ];
    for (i, code) in valid.iter().enumerate() {
        v.push(Case::script(
            format!("7.7.{}", i + 1),
            format!("Send a close frame with valid close code {code}."),
            "Clean close with normal or echoed code.",
            normal()
                .close(ExpectedClose::by_me(&[1000, *code], true))
                .then(close(Some(*code), b""))
                .then(Action::KillAfter(1.0)),
        ));
    }
    let invalid = [0u16, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999];
    for (i, code) in invalid.iter().enumerate() {
        v.push(Case::script(
            format!("7.9.{}", i + 1),
            format!("Send a close frame with invalid close code {code}."),
            "Clean close with protocol error code (1002), or dropped TCP.",
            normal()
                .close(ExpectedClose::by_me(&[1002], false))
                .then(close(Some(*code), b""))
                .then(Action::KillAfter(1.0)),
        ));
    }
    for (i, code) in [5000u16, 65535].iter().enumerate() {
        v.push(Case::script(
            format!("7.13.{}", i + 1),
            format!("Send a close frame with close code {code} (outside every defined range)."),
            "Undefined by the spec; reported as INFORMATIONAL.",
            Script::new(Vec::new())
                .suppress_close()
                .post(Post::Informational)
                .close(ExpectedClose::by_me(&[1000, *code, 1002], false))
                .then(close(Some(*code), b""))
                .then(Action::KillAfter(1.0)),
        ));
    }
    v
}
