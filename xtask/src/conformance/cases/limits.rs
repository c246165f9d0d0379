//! Category 9 (limits and performance, timed) and 10 (auto-fragmentation).

use super::{Action, Case, CaseKind, Perf, Post, Script};
use crate::conformance::verdict::Event;
use wire_kit::OP_TEXT;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

fn size(n: usize) -> String {
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= KIB && n.is_multiple_of(KIB) {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} B")
    }
}

fn perf(id: String, desc: String, p: Perf) -> Case {
    Case {
        id,
        description: desc,
        expectation: "Receive the echoed message(s) with payload as sent, within the time limit. Timing is reported.".into(),
        kind: CaseKind::Perf(p),
    }
}

/// Categories 9 and 10.
pub fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    let kinds = [(false, "text"), (true, "binary")];
    let sizes = [64 * KIB, 256 * KIB, MIB, 4 * MIB, 8 * MIB, 16 * MIB];
    for (sub, (binary, kind)) in kinds.iter().enumerate() {
        for (i, len) in sizes.iter().enumerate() {
            let wait = if *len >= 4 * MIB { 30 } else { 10 };
            v.push(perf(
                format!("9.{}.{}", sub + 1, i + 1),
                format!("Send a {kind} message of {}.", size(*len)),
                Perf::Single {
                    binary: *binary,
                    len: *len,
                    frag: 0,
                    chop: 0,
                    wait,
                },
            ));
        }
    }
    let frags = [
        64,
        256,
        KIB,
        4 * KIB,
        16 * KIB,
        64 * KIB,
        256 * KIB,
        MIB,
        4 * MIB,
    ];
    for (sub, (binary, kind)) in kinds.iter().enumerate() {
        for (i, frag) in frags.iter().enumerate() {
            v.push(perf(
                format!("9.{}.{}", sub + 3, i + 1),
                format!(
                    "Send a {kind} message of 4 MiB in fragments of {}.",
                    size(*frag)
                ),
                Perf::Single {
                    binary: *binary,
                    len: 4 * MIB,
                    frag: *frag,
                    chop: 0,
                    wait: 30,
                },
            ));
        }
    }
    let chops = [64, 128, 256, 512, KIB, 2 * KIB];
    for (sub, (binary, kind)) in kinds.iter().enumerate() {
        for (i, chop) in chops.iter().enumerate() {
            v.push(perf(
                format!("9.{}.{}", sub + 5, i + 1),
                format!(
                    "Send a {kind} message of 1 MiB in one frame, written in chops of {}.",
                    size(*chop)
                ),
                Perf::Single {
                    binary: *binary,
                    len: MIB,
                    frag: 0,
                    chop: *chop,
                    wait: 30,
                },
            ));
        }
    }
    let rtt = [0, 16, 64, 256, KIB, 4 * KIB];
    for (sub, (binary, kind)) in kinds.iter().enumerate() {
        for (i, len) in rtt.iter().enumerate() {
            v.push(perf(
                format!("9.{}.{}", sub + 7, i + 1),
                format!(
                    "Send 1000 {kind} messages of {} one after another (next after the echo) to measure round-trip time.",
                    size(*len)
                ),
                Perf::RoundTrip { binary: *binary, len: *len, count: 1000, wait: 60 },
            ));
        }
    }
    let payload = vec![b'*'; 65536];
    v.push(Case::script(
        "10.1.1",
        "Send a text message of 65536 octets auto-fragmented into frames of 1300 octets.",
        "Echo of the message (the suite checks it sent 1 text + 50 continuation frames). Clean close with normal code.",
        Script::new(vec![Event::text(payload.clone())])
            .post(Post::FrameCount(1, 50))
            .then(Action::Message { opcode: OP_TEXT, payload, frag: 1300 })
            .then(Action::KillAfter(10.0)),
    ));
    v
}
