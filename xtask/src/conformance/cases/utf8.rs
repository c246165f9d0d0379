//! Category 6: UTF-8 handling. 6.1-6.4 are hand-written; 6.5-6.23 are
//! generated from groups of valid and invalid byte sequences (after Markus
//! Kuhn's UTF-8 decoder stress test, in Autobahn's numbering).

use super::{Action, Case, Script};
use crate::conformance::verdict::{Event, ExpectedClose};
use wire_kit::{FrameSpec, OP_CONT, OP_TEXT};

/// "κόσμε" in UTF-8.
const KOSME: &[u8] = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";
const MIXED: &str = "Hello-\u{b5}@\u{df}\u{f6}\u{e4}\u{fc}\u{e0}\u{e1}-UTF-8!!";

fn invalid_close() -> ExpectedClose {
    ExpectedClose::peer_fails(1007).fatal()
}

/// The payload of 6.4.x: valid, then U+110000 encoded (invalid at the
/// second octet of the sequence), then valid again.
fn fail_fast_parts() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    (
        KOSME.to_vec(),
        b"\xf4\x90\x80\x80".to_vec(),
        b"edited".to_vec(),
    )
}

/// A titled group of (valid, bytes) sequences.
pub type Group = (&'static str, Vec<(bool, Vec<u8>)>);

/// The sequence groups 6.5 .. 6.23: (title, [(valid, bytes)]).
pub fn sequence_groups() -> Vec<Group> {
    let b = |s: &[u8]| s.to_vec();
    let all_valid = |v: Vec<Vec<u8>>| v.into_iter().map(|x| (true, x)).collect::<Vec<_>>();
    let all_invalid = |v: Vec<Vec<u8>>| v.into_iter().map(|x| (false, x)).collect::<Vec<_>>();
    let mut g = Vec::new();
    g.push((
        "Some valid UTF-8 sequences",
        all_valid(vec![
            b(b"hello\x24world"),
            b(b"hello\xc2\xa2world"),
            b(b"hello\xe2\x82\xacworld"),
            b(b"hello\xf0\xa4\xad\xa2world"),
            b(KOSME),
        ]),
    ));
    g.push((
        "All prefixes of a valid UTF-8 string that contains multi-byte code points",
        (1..=KOSME.len())
            .map(|i| {
                (
                    std::str::from_utf8(&KOSME[..i]).is_ok(),
                    KOSME[..i].to_vec(),
                )
            })
            .collect(),
    ));
    g.push((
        "First possible sequence of a certain length",
        all_valid(vec![
            b(b"\x00"),
            b(b"\xc2\x80"),
            b(b"\xe0\xa0\x80"),
            b(b"\xf0\x90\x80\x80"),
        ]),
    ));
    g.push((
        "First possible sequence length 5/6 (invalid codepoints)",
        all_invalid(vec![
            b(b"\xf8\x88\x80\x80\x80"),
            b(b"\xfc\x84\x80\x80\x80\x80"),
        ]),
    ));
    g.push((
        "Last possible sequence of a certain length",
        all_valid(vec![
            b(b"\x7f"),
            b(b"\xdf\xbf"),
            b(b"\xef\xbf\xbf"),
            b(b"\xf4\x8f\xbf\xbf"),
        ]),
    ));
    g.push((
        "Last possible sequence length 4/5/6 (invalid codepoints)",
        all_invalid(vec![
            b(b"\xf7\xbf\xbf\xbf"),
            b(b"\xfb\xbf\xbf\xbf\xbf"),
            b(b"\xfd\xbf\xbf\xbf\xbf\xbf"),
        ]),
    ));
    g.push((
        "Other boundary conditions",
        vec![
            (true, b(b"\xed\x9f\xbf")),
            (true, b(b"\xee\x80\x80")),
            (true, b(b"\xef\xbf\xbd")),
            (true, b(b"\xf4\x8f\xbf\xbf")),
            (false, b(b"\xf4\x90\x80\x80")),
        ],
    ));
    let mut cont = all_invalid(vec![
        b(b"\x80"),
        b(b"\xbf"),
        b(b"\x80\xbf"),
        b(b"\x80\xbf\x80"),
        b(b"\x80\xbf\x80\xbf"),
        b(b"\x80\xbf\x80\xbf\x80"),
        b(b"\x80\xbf\x80\xbf\x80\xbf"),
    ]);
    cont.push((false, (0x80u8..0xbf).collect()));
    g.push(("Unexpected continuation bytes", cont));
    let lonely = [
        (0xc0u8, 0xdfu8),
        (0xe0, 0xef),
        (0xf0, 0xf7),
        (0xf8, 0xfb),
        (0xfc, 0xfd),
    ]
    .iter()
    .map(|&(lo, hi)| (false, (lo..hi).flat_map(|c| [c, 0x20]).collect()))
    .collect();
    g.push(("Lonely start characters", lonely));
    let missing: Vec<Vec<u8>> = vec![
        b(b"\xc0"),
        b(b"\xe0\x80"),
        b(b"\xf0\x80\x80"),
        b(b"\xf8\x80\x80\x80"),
        b(b"\xfc\x80\x80\x80\x80"),
        b(b"\xdf"),
        b(b"\xef\xbf"),
        b(b"\xf7\xbf\xbf"),
        b(b"\xfb\xbf\xbf\xbf"),
        b(b"\xfd\xbf\xbf\xbf\xbf"),
    ];
    g.push((
        "Sequences with last continuation byte missing",
        all_invalid(missing.clone()),
    ));
    g.push((
        "Concatenation of incomplete sequences",
        all_invalid(vec![missing.concat()]),
    ));
    g.push((
        "Impossible bytes",
        all_invalid(vec![b(b"\xfe"), b(b"\xff"), b(b"\xfe\xfe\xff\xff")]),
    ));
    g.push((
        "Examples of an overlong ASCII character",
        all_invalid(vec![
            b(b"\xc0\xaf"),
            b(b"\xe0\x80\xaf"),
            b(b"\xf0\x80\x80\xaf"),
            b(b"\xf8\x80\x80\x80\xaf"),
            b(b"\xfc\x80\x80\x80\x80\xaf"),
        ]),
    ));
    g.push((
        "Maximum overlong sequences",
        all_invalid(vec![
            b(b"\xc1\xbf"),
            b(b"\xe0\x9f\xbf"),
            b(b"\xf0\x8f\xbf\xbf"),
            b(b"\xf8\x87\xbf\xbf\xbf"),
            b(b"\xfc\x83\xbf\xbf\xbf\xbf"),
        ]),
    ));
    g.push((
        "Overlong representation of the NUL character",
        all_invalid(vec![
            b(b"\xc0\x80"),
            b(b"\xe0\x80\x80"),
            b(b"\xf0\x80\x80\x80"),
            b(b"\xf8\x80\x80\x80\x80"),
            b(b"\xfc\x80\x80\x80\x80\x80"),
        ]),
    ));
    let singles: [&[u8]; 7] = [
        b"\xed\xa0\x80",
        b"\xed\xad\xbf",
        b"\xed\xae\x80",
        b"\xed\xaf\xbf",
        b"\xed\xb0\x80",
        b"\xed\xbe\x80",
        b"\xed\xbf\xbf",
    ];
    g.push((
        "Single UTF-16 surrogates",
        all_invalid(singles.iter().map(|s| s.to_vec()).collect()),
    ));
    let mut pairs = Vec::new();
    for hi in &singles[..4] {
        for lo in [&b"\xed\xb0\x80"[..], &b"\xed\xbf\xbf"[..]] {
            pairs.push([*hi, lo].concat());
        }
    }
    g.push(("Paired UTF-16 surrogates", all_invalid(pairs)));
    let mut nonchars = vec![b(b"\xef\xbf\xbe"), b(b"\xef\xbf\xbf")];
    for z1 in [0xf0u8, 0xf1, 0xf2, 0xf3, 0xf4] {
        for z2 in [0x8fu8, 0x9f, 0xaf, 0xbf] {
            if z1 == 0xf4 && z2 != 0x8f {
                continue; // beyond U+10FFFF
            }
            for z3 in [0xbeu8, 0xbf] {
                if z1 == 0xf0 && z2 == 0x8f {
                    continue; // overlong
                }
                nonchars.push(vec![z1, z2, 0xbf, z3]);
            }
        }
    }
    g.push((
        "Non-character code points (valid UTF-8)",
        all_valid(nonchars),
    ));
    g.push((
        "Unicode specials (i.e. replacement char)",
        all_valid(
            [0xb9u8, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf]
                .iter()
                .map(|&c| vec![0xef, 0xbf, c])
                .collect(),
        ),
    ));
    g
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// All of category 6.
pub fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    let echo = |p: &[u8]| Script::new(vec![Event::text(p.to_vec())]);
    v.push(Case::script(
        "6.1.1",
        "Send text message of length 0.",
        "Echo of an empty text message. Clean close with normal code.",
        echo(b"")
            .send(FrameSpec::new(OP_TEXT, Vec::new()))
            .then(Action::KillAfter(2.0)),
    ));
    v.push(Case::script(
        "6.1.2",
        "Send text message in 3 fragments, each of length 0.",
        "Echo of an empty text message. Clean close with normal code.",
        echo(b"")
            .send(FrameSpec::new(OP_TEXT, Vec::new()).fin(false))
            .send(FrameSpec::new(OP_CONT, Vec::new()).fin(false))
            .send(FrameSpec::new(OP_CONT, Vec::new()))
            .then(Action::KillAfter(2.0)),
    ));
    v.push(Case::script(
        "6.1.3",
        "Send text message in 3 fragments, first and last of length 0, middle non-empty.",
        "Echo of the middle fragment's payload. Clean close with normal code.",
        echo(b"middle frame payload")
            .send(FrameSpec::new(OP_TEXT, Vec::new()).fin(false))
            .send(FrameSpec::new(OP_CONT, b"middle frame payload".to_vec()).fin(false))
            .send(FrameSpec::new(OP_CONT, Vec::new()))
            .then(Action::CloseAfter(1.0)),
    ));
    let mixed = MIXED.as_bytes();
    let split = "Hello-\u{b5}@\u{df}\u{f6}\u{e4}".len();
    v.push(Case::script(
        "6.2.1",
        format!(
            "Send valid UTF-8 text message in one fragment: 0x{}.",
            hex(mixed)
        ),
        "Echo of the message.",
        echo(mixed)
            .send(FrameSpec::new(OP_TEXT, mixed))
            .then(Action::CloseAfter(1.0)),
    ));
    v.push(Case::script(
        "6.2.2",
        "Send valid UTF-8 text message in two fragments, split on a code point boundary.",
        "Echo of the message.",
        echo(mixed)
            .send(FrameSpec::new(OP_TEXT, &mixed[..split]).fin(false))
            .send(FrameSpec::new(OP_CONT, &mixed[split..]))
            .then(Action::CloseAfter(1.0)),
    ));
    v.push(Case::script(
        "6.2.3",
        "Send valid UTF-8 text message in fragments of 1 octet, so frames end inside code points.",
        "Echo of the message.",
        echo(mixed)
            .then(Action::Message {
                opcode: OP_TEXT,
                payload: mixed.to_vec(),
                frag: 1,
            })
            .then(Action::CloseAfter(1.0)),
    ));
    v.push(Case::script(
        "6.2.4",
        format!(
            "Send valid UTF-8 text message 0x{} in fragments of 1 octet.",
            hex(KOSME)
        ),
        "Echo of the message.",
        echo(KOSME)
            .then(Action::Message {
                opcode: OP_TEXT,
                payload: KOSME.to_vec(),
                frag: 1,
            })
            .then(Action::CloseAfter(1.0)),
    ));
    let bad: Vec<u8> = [KOSME, b"\xed\xa0\x80", b"edited"].concat();
    v.push(Case::script(
        "6.3.1",
        format!(
            "Send invalid UTF-8 text message in one frame: 0x{}.",
            hex(&bad)
        ),
        "The connection is failed immediately (1007), the payload is not valid UTF-8.",
        Script::new(Vec::new())
            .close(invalid_close())
            .send(FrameSpec::new(OP_TEXT, bad.clone()))
            .then(Action::KillAfter(1.0)),
    ));
    v.push(Case::script(
        "6.3.2",
        "Send the invalid UTF-8 text message of 6.3.1 in fragments of 1 octet.",
        "The connection is failed immediately (1007), the payload is not valid UTF-8.",
        Script::new(Vec::new())
            .close(invalid_close())
            .then(Action::Message {
                opcode: OP_TEXT,
                payload: bad,
                frag: 1,
            })
            .then(Action::KillAfter(1.0)),
    ));
    // 6.4: fail fast. OK = the peer fails right after the invalid part (we
    // only see timeout A); NON-STRICT = it fails only once the message is
    // complete (timeouts A and B).
    let (p1, p2, p3) = fail_fast_parts();
    let whole: Vec<u8> = [p1.clone(), p2.clone(), p3.clone()].concat();
    let fail_fast = || {
        Script::new(vec![Event::Timeout("A")])
            .non_strict(vec![Event::Timeout("A"), Event::Timeout("B")])
            .close(invalid_close())
    };
    let exp = "The first part is accepted (timeout A); the invalid part is rejected at once (fail fast). Failing only at the end of the message is NON-STRICT.";
    let three_frames = |parts: [&[u8]; 3]| {
        fail_fast()
            .send(FrameSpec::new(OP_TEXT, parts[0]).fin(false))
            .then(Action::Wait {
                secs: 1.0,
                tag: Some("A"),
            })
            .send(FrameSpec::new(OP_CONT, parts[1]).fin(false))
            .then(Action::Wait {
                secs: 1.0,
                tag: Some("B"),
            })
            .send(FrameSpec::new(OP_CONT, parts[2]))
            .then(Action::KillAfter(1.0))
    };
    v.push(Case::script(
        "6.4.1",
        format!(
            "Send invalid UTF-8 text message in 3 frames with 1 s pauses: 0x{} | 0x{} | 0x{} (the 2nd frame makes it invalid).",
            hex(&p1),
            hex(&p2),
            hex(&p3)
        ),
        exp,
        three_frames([&p1, &p2, &p3]),
    ));
    v.push(Case::script(
        "6.4.2",
        "As 6.4.1, but the 2nd frame holds only the octet that makes the payload invalid.",
        exp,
        three_frames([&whole[..12], &whole[12..13], &whole[13..]]),
    ));
    let chunked = |cuts: Vec<usize>| {
        fail_fast()
            .then(Action::Chunked {
                frame: FrameSpec::new(OP_TEXT, whole.clone()),
                cuts,
                wait: 1.0,
                tags: vec!["A", "B"],
            })
            .then(Action::KillAfter(1.0))
    };
    v.push(Case::script(
        "6.4.3",
        "As 6.4.1, but one frame written in 3 chops with 1 s pauses (fail fast inside a frame).",
        exp,
        chunked(vec![p1.len(), p1.len() + p2.len()]),
    ));
    v.push(Case::script(
        "6.4.4",
        "As 6.4.2, but one frame written in 3 chops with 1 s pauses (fail fast inside a frame).",
        exp,
        chunked(vec![12, 13]),
    ));
    for (gi, (title, seqs)) in sequence_groups().into_iter().enumerate() {
        for (si, (valid, payload)) in seqs.into_iter().enumerate() {
            let id = format!("6.{}.{}", gi + 5, si + 1);
            let desc = format!(
                "{title}: send a text message with payload 0x{} ({} UTF-8) in one frame.",
                hex(&payload),
                if valid { "valid" } else { "invalid" }
            );
            let case = if valid {
                Case::script(
                    id,
                    desc,
                    "Echo of the message. Clean close with normal code.",
                    echo(&payload)
                        .send(FrameSpec::new(OP_TEXT, payload.clone()))
                        .then(Action::KillAfter(1.0)),
                )
            } else {
                Case::script(
                    id,
                    desc,
                    "The connection is failed immediately (1007), the payload is not valid UTF-8.",
                    Script::new(Vec::new())
                        .close(invalid_close())
                        .send(FrameSpec::new(OP_TEXT, payload))
                        .then(Action::KillAfter(1.0)),
                )
            };
            v.push(case);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_sizes_match_autobahn() {
        let sizes: Vec<usize> = sequence_groups().iter().map(|g| g.1.len()).collect();
        assert_eq!(
            sizes,
            vec![5, 11, 4, 2, 4, 3, 5, 8, 5, 10, 1, 3, 5, 5, 5, 7, 8, 34, 7]
        );
    }

    #[test]
    fn validity_flags_agree_with_std() {
        for (title, seqs) in sequence_groups() {
            for (valid, p) in seqs {
                assert_eq!(std::str::from_utf8(&p).is_ok(), valid, "{title}: {p:02x?}");
            }
        }
    }

    #[test]
    fn fail_fast_payload_breaks_at_octet_12() {
        let (a, b, c) = fail_fast_parts();
        let whole = [a, b, c].concat();
        let err = std::str::from_utf8(&whole).unwrap_err();
        assert_eq!(err.valid_up_to(), 11);
        // 12 octets are an incomplete but possible prefix, the 13th is invalid.
        let e12 = std::str::from_utf8(&whole[..12]).unwrap_err();
        assert_eq!(e12.error_len(), None);
        let e13 = std::str::from_utf8(&whole[..13]).unwrap_err();
        assert!(e13.error_len().is_some());
    }
}
