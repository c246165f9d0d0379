//! Categories 12 and 13: permessage-deflate (RFC 7692).
//!
//! Each case negotiates the extension (testing a server: the suite offers
//! Autobahn's offers; testing a client: the fuzzing server answers the
//! client's offers with Autobahn's accept rule), then sends compressed
//! messages one after another (the next after the echo) and checks every
//! echo byte for byte. Messages are consecutive windows of a data set,
//! wrapping around at its end. A peer that does not negotiate the extension
//! gets UNIMPLEMENTED, as in Autobahn.
//!
//! The data sets are generated (deterministically) to resemble Autobahn's:
//! JSON and HTML are ASCII and sent as text, the others as binary.

use std::sync::OnceLock;

use super::{Case, CaseKind};
use crate::conformance::deflate::{AcceptRule, Offer};

/// (message size, auto-fragment size, Autobahn's time limit in seconds)
/// for each sub-case .1 .. .18.
pub const MSG_SIZES: [(usize, usize, u64); 18] = [
    (16, 0, 60),
    (64, 0, 60),
    (256, 0, 120),
    (1024, 0, 240),
    (4096, 0, 480),
    (8192, 0, 480),
    (16384, 0, 480),
    (32768, 0, 480),
    (65536, 0, 480),
    (131072, 0, 480),
    (8192, 256, 480),
    (16384, 256, 480),
    (32768, 256, 480),
    (65536, 256, 480),
    (131072, 256, 480),
    (131072, 1024, 480),
    (131072, 4096, 480),
    (131072, 32768, 480),
];

/// Autobahn sends 1000 messages per case. By default the suite sends at
/// most this many payload bytes per case (at least 64 messages), which
/// keeps categories 12/13 to well under a minute per agent; `full` restores
/// 1000 messages and Autobahn's time limits.
const BYTES_PER_CASE: usize = 8 << 20;
/// Time limit per case (default mode).
const WAIT: u64 = 60;

/// The data sets of 12.1 .. 12.5 (in the order of Autobahn's reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataSet {
    /// A JSON document (text).
    Json,
    /// A 512x512 8-bit greyscale bitmap (binary).
    Bitmap,
    /// Human-readable German text with umlauts (binary).
    Prose,
    /// An HTML page (text).
    Html,
    /// A PDF-like document with high-entropy streams (binary).
    Pdf,
}

const DATASETS: [DataSet; 5] = [
    DataSet::Json,
    DataSet::Bitmap,
    DataSet::Prose,
    DataSet::Html,
    DataSet::Pdf,
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const WORDS: [&str; 24] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray",
];

fn json(target: usize) -> Vec<u8> {
    let mut r = Rng(0x5EED_0001);
    let mut s = String::from("[\n");
    let mut id = 0u64;
    while s.len() < target {
        id += 1;
        let tags: Vec<String> = (0..1 + r.below(4))
            .map(|_| format!("\"{}\"", r.pick(&WORDS)))
            .collect();
        s.push_str(&format!(
            "  {{\"id\": {id}, \"name\": \"{} {}\", \"active\": {}, \"score\": {}.{:02}, \"tags\": [{}], \"address\": {{\"street\": \"{} Street {}\", \"zip\": \"{:05}\"}}, \"balance\": \"${},{:03}.{:02}\"}},\n",
            r.pick(&WORDS),
            r.pick(&WORDS),
            r.below(2) == 1,
            r.below(100),
            r.below(100),
            tags.join(", "),
            r.pick(&WORDS),
            r.below(999),
            r.below(100_000),
            r.below(10),
            r.below(1000),
            r.below(100),
        ));
    }
    s.push_str("  {}\n]\n");
    s.into_bytes()
}

fn bitmap() -> Vec<u8> {
    const W: usize = 512;
    let size = 14 + 40 + 1024 + W * W;
    let mut v = Vec::with_capacity(size);
    v.extend_from_slice(b"BM");
    v.extend_from_slice(&(size as u32).to_le_bytes());
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(&(14u32 + 40 + 1024).to_le_bytes());
    v.extend_from_slice(&40u32.to_le_bytes());
    v.extend_from_slice(&(W as i32).to_le_bytes());
    v.extend_from_slice(&(W as i32).to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&8u16.to_le_bytes());
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(&((W * W) as u32).to_le_bytes());
    v.extend_from_slice(&2835u32.to_le_bytes());
    v.extend_from_slice(&2835u32.to_le_bytes());
    v.extend_from_slice(&256u32.to_le_bytes());
    v.extend_from_slice(&[0; 4]);
    for g in 0..=255u8 {
        v.extend_from_slice(&[g, g, g, 0]);
    }
    let mut r = Rng(0x5EED_0002);
    for y in 0..W {
        for x in 0..W {
            let (fx, fy) = (x as f64, y as f64);
            let base = 128.0
                + 70.0 * (fx / 37.0).sin() * (fy / 53.0).cos()
                + 30.0 * ((fx + fy) / 91.0).sin();
            let noise = r.below(13) as f64 - 6.0;
            v.push((base + noise).clamp(0.0, 255.0) as u8);
        }
    }
    v
}

fn prose(target: usize) -> Vec<u8> {
    const W: [&str; 32] = [
        "Habe",
        "nun",
        "ach",
        "Philosophie",
        "Juristerei",
        "und",
        "Medizin",
        "leider",
        "auch",
        "Theologie",
        "durchaus",
        "studiert",
        "mit",
        "heißem",
        "Bemühn",
        "da",
        "steh",
        "ich",
        "armer",
        "Tor",
        "bin",
        "so",
        "klug",
        "als",
        "wie",
        "zuvor",
        "Geister",
        "über",
        "Nächte",
        "Mühe",
        "größer",
        "Würde",
    ];
    let mut r = Rng(0x5EED_0003);
    let mut s = String::new();
    while s.len() < target {
        let speaker = ["FAUST.", "MEPHISTOPHELES.", "WAGNER.", "CHOR."][r.below(4)];
        s.push_str(&format!("\n{speaker}\n"));
        for _ in 0..2 + r.below(6) {
            let n = 4 + r.below(6);
            let line: Vec<&str> = (0..n).map(|_| r.pick(&W)).collect();
            s.push_str(&line.join(" "));
            s.push_str([",\n", ";\n", "!\n", ".\n"][r.below(4)]);
        }
    }
    s.into_bytes()
}

fn html(target: usize) -> Vec<u8> {
    let mut r = Rng(0x5EED_0004);
    let mut s = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>Report</title>\n<link rel=\"stylesheet\" href=\"style.css\"></head>\n<body>\n<table class=\"results\">\n",
    );
    while s.len() < target {
        s.push_str(&format!(
            "<tr class=\"{}\"><td><a href=\"/cases/{}/{}.html\">{} {}</a></td><td style=\"text-align: right\">{} ms</td><td><span class=\"badge badge-{}\">{}</span></td></tr>\n",
            r.pick(&["odd", "even"]),
            r.pick(&WORDS),
            r.below(1000),
            r.pick(&WORDS),
            r.pick(&WORDS),
            r.below(5000),
            r.pick(&["ok", "failed", "info"]),
            r.pick(&["Pass", "Fail", "Informational"]),
        ));
    }
    s.push_str("</table>\n</body>\n</html>\n");
    s.into_bytes()
}

fn pdf(target: usize) -> Vec<u8> {
    let mut r = Rng(0x5EED_0005);
    let mut v = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut obj = 1;
    while v.len() < target {
        if r.below(3) == 0 {
            let text: Vec<&str> = (0..40).map(|_| r.pick(&WORDS)).collect();
            v.extend_from_slice(
                format!(
                    "{obj} 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>\nstream\nBT /F1 12 Tf 72 720 Td ({}) Tj ET\nendstream\nendobj\n",
                    text.join(" ")
                )
                .as_bytes(),
            );
        } else {
            let n = 2000 + r.below(6000);
            v.extend_from_slice(
                format!("{obj} 0 obj\n<< /Length {n} /Filter /FlateDecode >>\nstream\n").as_bytes(),
            );
            v.extend((0..n).map(|_| (r.next() >> 32) as u8));
            v.extend_from_slice(b"\nendstream\nendobj\n");
        }
        obj += 1;
    }
    v.extend_from_slice(b"trailer\n<< /Root 1 0 R >>\n%%EOF\n");
    v
}

impl DataSet {
    /// The generated bytes (built once).
    pub fn bytes(self) -> &'static [u8] {
        static SETS: [OnceLock<Vec<u8>>; 5] = [const { OnceLock::new() }; 5];
        let i = DATASETS.iter().position(|d| *d == self).unwrap_or(0);
        SETS[i].get_or_init(|| match self {
            DataSet::Json => json(194 * 1024),
            DataSet::Bitmap => bitmap(),
            DataSet::Prose => prose(222 * 1024),
            DataSet::Html => html(83 * 1024),
            DataSet::Pdf => pdf(1024 * 1024),
        })
    }

    /// Whether messages are sent as binary.
    pub fn binary(self) -> bool {
        matches!(self, DataSet::Bitmap | DataSet::Prose | DataSet::Pdf)
    }

    fn describe(self) -> &'static str {
        match self {
            DataSet::Json => "JSON data (text)",
            DataSet::Bitmap => "a 512x512 greyscale bitmap (binary)",
            DataSet::Prose => "German prose with umlauts (binary)",
            DataSet::Html => "HTML (text)",
            DataSet::Pdf => "a PDF-like document with high-entropy streams (binary)",
        }
    }
}

/// A compression case: what to negotiate and what to send.
#[derive(Debug, Clone)]
pub struct Compressed {
    /// The payload source.
    pub data: DataSet,
    /// Message size.
    pub len: usize,
    /// Number of messages (each sent after the previous echo).
    pub count: usize,
    /// Auto-fragment size of the compressed payload (0 = one frame).
    pub frag: usize,
    /// Seconds for all messages.
    pub wait: u64,
    /// The suite's offers when testing a server.
    pub offers: Vec<Offer>,
    /// The fuzzing server's answer when testing a client.
    pub accept: AcceptRule,
}

impl Compressed {
    /// Message `i` (0-based): the next `len` bytes of the data set,
    /// wrapping around at its end.
    pub fn message(&self, i: usize) -> Vec<u8> {
        let d = self.data.bytes();
        let mut pos = (i * self.len) % d.len();
        let mut out = Vec::with_capacity(self.len);
        while out.len() < self.len {
            let n = (self.len - out.len()).min(d.len() - pos);
            out.extend_from_slice(&d[pos..pos + n]);
            pos = 0;
        }
        out
    }
}

/// The parameter sets of 13.1 .. 13.7: client offers, server accept rule.
fn params() -> Vec<(Vec<Offer>, AcceptRule)> {
    let cw = |bits, no_context_takeover| AcceptRule::ClientWindow {
        bits,
        no_context_takeover,
    };
    vec![
        (vec![Offer::autobahn(false, None)], AcceptRule::Default),
        (
            vec![Offer::autobahn(true, None)],
            AcceptRule::ClientNoContextTakeover,
        ),
        (vec![Offer::autobahn(false, Some(8))], cw(8, false)),
        (vec![Offer::autobahn(false, Some(15))], cw(15, false)),
        (vec![Offer::autobahn(true, Some(8))], cw(8, true)),
        (vec![Offer::autobahn(true, Some(15))], cw(15, true)),
        (
            vec![
                Offer::autobahn(true, Some(8)),
                Offer::autobahn(true, None),
                Offer::autobahn(false, None),
            ],
            AcceptRule::Fallback,
        ),
    ]
}

fn frag(f: usize) -> String {
    if f == 0 {
        "no auto-fragmentation".into()
    } else {
        format!("auto-fragmented to {f} octets")
    }
}

fn case(id: String, what: String, c: Compressed) -> Case {
    Case {
        id,
        description: format!(
            "Send {} compressed messages of {} octets of {}, one after the echo of the previous, {}; {what}. Server agents: the suite offers {:?}. Client agents: the suite's server will {}.",
            c.count,
            c.len,
            c.data.describe(),
            frag(c.frag),
            Offer::header_list(&c.offers),
            c.accept.describe(),
        ),
        expectation: format!(
            "permessage-deflate is negotiated (else UNIMPLEMENTED), every echo equals what was sent, all within {} s. Clean close with normal code.",
            c.wait
        ),
        kind: CaseKind::Compressed(Box::new(c)),
    }
}

/// All of categories 12 and 13; `full` uses Autobahn's 1000 messages per
/// case and its time limits.
pub fn cases(full: bool) -> Vec<Case> {
    let sized = |(len, f, wait): (usize, usize, u64)| {
        if full {
            (len, f, 1000, wait)
        } else {
            (len, f, (BYTES_PER_CASE / len).clamp(64, 1000), WAIT)
        }
    };
    let mut v = Vec::new();
    for (j, data) in DATASETS.iter().enumerate() {
        for (i, s) in MSG_SIZES.iter().enumerate() {
            let (len, frag, count, wait) = sized(*s);
            v.push(case(
                format!("12.{}.{}", j + 1, i + 1),
                "default permessage-deflate offer".into(),
                Compressed {
                    data: *data,
                    len,
                    count,
                    frag,
                    wait,
                    offers: vec![Offer::autobahn(false, None)],
                    accept: AcceptRule::Default,
                },
            ));
        }
    }
    for (j, (offers, accept)) in params().into_iter().enumerate() {
        for (i, s) in MSG_SIZES.iter().enumerate() {
            let (len, frag, count, wait) = sized(*s);
            v.push(case(
                format!("13.{}.{}", j + 1, i + 1),
                "different permessage-deflate parameters".into(),
                Compressed {
                    data: DataSet::Json,
                    len,
                    count,
                    frag,
                    wait,
                    offers: offers.clone(),
                    accept,
                },
            ));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_sets_have_the_right_shape() {
        for d in DATASETS {
            let b = d.bytes();
            assert!(b.len() > 64 * 1024, "{d:?}");
            if !d.binary() {
                assert!(b.is_ascii(), "{d:?} is sent as text in arbitrary slices");
            }
        }
        assert_eq!(DataSet::Bitmap.bytes().len(), 263_222);
        assert!(std::str::from_utf8(DataSet::Prose.bytes()).is_ok());
    }

    #[test]
    fn messages_wrap_around() {
        let c = Compressed {
            data: DataSet::Html,
            len: 50_000,
            count: 3,
            frag: 0,
            wait: 1,
            offers: vec![],
            accept: AcceptRule::Default,
        };
        let d = DataSet::Html.bytes();
        assert_eq!(c.message(0), d[..50_000]);
        let m = c.message(1);
        let tail = d.len() - 50_000;
        assert_eq!(m[..tail], d[50_000..]);
        assert_eq!(m[tail..], d[..50_000 - tail]);
    }

    #[test]
    fn counts_and_limits() {
        let all = cases(false);
        assert_eq!(all.len(), 216);
        let bytes: usize = all
            .iter()
            .map(|c| match &c.kind {
                CaseKind::Compressed(k) => k.len * k.count,
                _ => 0,
            })
            .sum();
        assert!(bytes < 1500 << 20, "{bytes}");
        assert!(cases(true).iter().all(|c| match &c.kind {
            CaseKind::Compressed(k) => k.count == 1000,
            _ => false,
        }));
    }
}
