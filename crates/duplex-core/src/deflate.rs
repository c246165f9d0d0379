//! permessage-deflate (RFC 7692): the per-message transform.
//!
//! Compression uses zlib's raw deflate through `flate2` (the `zlib-rs` backend, which
//! honours window sizes). zlib cannot produce a raw deflate stream with an 8-bit window
//! (it silently uses 9), so when the negotiated window for our side is 8 we never
//! compress outgoing messages (sending uncompressed messages is always allowed).
//!
//! Decompression always uses a 15-bit window, which decodes any smaller window.
//!
//! Memory: a zlib-rs compressor holds about 260 to 370 KiB (a fixed 128 KiB hash table
//! whatever the window, the window and its chain, the pending buffers), a decompressor
//! about 46 KiB (zlib-rs always allocates a 32 KiB window, so a smaller negotiated
//! window saves nothing there). So a connection that keeps no compression context
//! between the messages it sends (`no_context_takeover` on our side) owns no compressor
//! at all: it borrows one shared by every connection on the thread ([`SHARED`]), reset
//! after each message.

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::role::Role;

/// The four parameters of permessage-deflate (RFC 7692 section 7.1): the negotiated
/// ones the engine runs with ([`Connection::enable_deflate`](crate::Connection::enable_deflate)),
/// and, under the name `DeflateConfig` in duplex-handshake, one side's policy for
/// negotiating them. One type for both, with the same defaults (context takeover both
/// ways, 15-bit windows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compression context after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after every message.
    pub client_no_context_takeover: bool,
    /// The server compresses with a window of at most 2^bits bytes (8..=15).
    pub server_max_window_bits: u8,
    /// The client compresses with a window of at most 2^bits bytes (8..=15).
    pub client_max_window_bits: u8,
}

impl Default for DeflateParams {
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

impl DeflateParams {
    /// The policy duplex-tokio and duplex-mio negotiate with by default: no server
    /// context takeover (a server connection keeps no compressor between the messages
    /// it sends: it borrows its thread's, about 48 KiB held instead of 370 KiB), 15-bit
    /// windows, and whatever the client asks for its own side.
    pub const ADAPTER_DEFAULT: Self = Self {
        server_no_context_takeover: true,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    };
}

/// The trailer a sync flush ends with, removed when sending and restored when receiving.
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

thread_local! {
    /// Compressors shared by the connections of this thread that keep no context between
    /// the messages they send (and by [`compress_fresh`]), one per (level, window bits);
    /// each is reset after every message, so no message sees another's data.
    static SHARED: RefCell<Vec<(u32, u8, Compress)>> = const { RefCell::new(Vec::new()) };
}

/// Compresses `payload` with this thread's shared compressor for `level` and `window`,
/// from an empty context.
fn compress_shared(level: Compression, window: u8, payload: &[u8]) -> Bytes {
    SHARED.with(|shared| {
        let mut shared = shared.borrow_mut();
        let index = match shared
            .iter()
            .position(|(l, w, _)| *l == level.level() && *w == window)
        {
            Some(index) => index,
            None => {
                let compressor = Compress::new_with_window_bits(level, false, window);
                shared.push((level.level(), window, compressor));
                shared.len() - 1
            }
        };
        let compressor = &mut shared[index].2;
        let out = compress_with(compressor, payload);
        compressor.reset();
        out
    })
}

/// Compression state of one connection. The decompressor is created on first use; the
/// compressor too, and only when we keep context between the messages we send (else the
/// thread's shared one is used). Without context takeover the decompressor is dropped
/// after each message (an idle connection holds neither).
pub(crate) struct Deflate {
    /// Our window bits for compressing, `None` when we never compress (8 bits).
    send_window: Option<u8>,
    send_no_context_takeover: bool,
    receive_no_context_takeover: bool,
    level: Compression,
    /// Boxed (like the decompressor), so that a connection that negotiated deflate
    /// and has not used it yet holds a few bytes, not the streams' inline state.
    compressor: Option<Box<Compress>>,
    decompressor: Option<Box<Decompress>>,
    /// With receive context takeover, once the peer ended a message's deflate stream
    /// with a BFINAL block: the last 32 KiB it sent, the window its next message may
    /// refer to (restarting the stream loses zlib's own). Kept only for such peers.
    receive_history: Option<Vec<u8>>,
    /// The message in progress ended its deflate stream with a BFINAL block.
    receive_ended: bool,
}

/// The decompression window: the most a back-reference reaches (15-bit windows).
const WINDOW: usize = 1 << 15;

impl std::fmt::Debug for Deflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflate")
            .field("send_window", &self.send_window)
            .field("send_no_context_takeover", &self.send_no_context_takeover)
            .field(
                "receive_no_context_takeover",
                &self.receive_no_context_takeover,
            )
            .finish_non_exhaustive()
    }
}

/// The peer's compressed data is not valid deflate.
#[derive(Debug)]
pub(crate) struct CorruptData;

/// Inflating went past the size limit.
#[derive(Debug)]
pub(crate) struct TooLarge;

pub(crate) enum InflateError {
    Corrupt(CorruptData),
    TooLarge(TooLarge),
}

impl Deflate {
    pub(crate) fn new(role: Role, params: DeflateParams, level: u32) -> Self {
        let (ours, theirs_nct, ours_nct) = match role {
            Role::Server => (
                params.server_max_window_bits,
                params.client_no_context_takeover,
                params.server_no_context_takeover,
            ),
            Role::Client => (
                params.client_max_window_bits,
                params.server_no_context_takeover,
                params.client_no_context_takeover,
            ),
        };
        Self {
            send_window: (9..=15).contains(&ours).then_some(ours),
            send_no_context_takeover: ours_nct,
            receive_no_context_takeover: theirs_nct,
            level: Compression::new(level.min(9)),
            compressor: None,
            decompressor: None,
            receive_history: None,
            receive_ended: false,
        }
    }

    /// Whether outgoing messages may be compressed at all.
    pub(crate) fn can_compress(&self) -> bool {
        self.send_window.is_some()
    }

    /// Whether a frame compressed with a fresh 15-bit context suits this connection.
    pub(crate) fn accepts_shared_frames(&self) -> bool {
        self.send_window == Some(15)
    }

    /// Compresses one whole message; the trailer is removed.
    pub(crate) fn compress(&mut self, payload: &[u8]) -> Bytes {
        let window = self.send_window.unwrap_or(15);
        let level = self.level;
        if self.send_no_context_takeover {
            return compress_shared(level, window, payload);
        }
        let compressor = self
            .compressor
            .get_or_insert_with(|| Box::new(Compress::new_with_window_bits(level, false, window)));
        compress_with(compressor, payload)
    }

    /// After a message compressed elsewhere (a shared frame) went out, our own context no
    /// longer matches the peer's: start the next message from an empty context.
    pub(crate) fn forget_send_context(&mut self) {
        if let Some(compressor) = &mut self.compressor {
            compressor.reset();
        }
    }

    /// Inflates `input` (a piece of a compressed message; `last` appends the trailer)
    /// into `out`, never letting `out` grow past `limit` bytes. Stops early once `out`
    /// reached `pause_at` bytes with input left: `Ok(Some(consumed))` says how much of
    /// `input` was used; the caller passes the rest (with the same `last`) later.
    pub(crate) fn inflate(
        &mut self,
        input: &[u8],
        last: bool,
        out: &mut Vec<u8>,
        limit: usize,
        pause_at: usize,
    ) -> Result<Option<usize>, InflateError> {
        let decompressor = self
            .decompressor
            .get_or_insert_with(|| Box::new(Decompress::new_with_window_bits(false, 15)));
        if !self.receive_ended {
            // What follows a BFINAL block in a message is not deflate data.
            match inflate_into(decompressor, input, out, limit, pause_at)? {
                Step::Ended => self.receive_ended = true,
                Step::NeedInput => {}
                Step::Paused(consumed) => return Ok(Some(consumed)),
            }
        }
        if last {
            if !self.receive_ended {
                inflate_into(decompressor, &TRAILER, out, limit, usize::MAX)?;
            }
            let context = !self.receive_no_context_takeover;
            if self.receive_ended || !context {
                decompressor.reset(false);
            }
            if context && (self.receive_ended || self.receive_history.is_some()) {
                // The peer's next message may refer to this window (section 7.2.2); a
                // restarted stream only has it as a dictionary.
                let history = self.receive_history.get_or_insert_with(Vec::new);
                remember_window(history, out);
                if self.receive_ended {
                    decompressor
                        .set_dictionary(history)
                        .map_err(|_| InflateError::Corrupt(CorruptData))?;
                }
            }
            self.receive_ended = false;
        }
        Ok(None)
    }

    /// Drops compression state that carries no context (for idle connections). The
    /// decompressor only between messages (`between_messages`): inside a message it
    /// holds the stream.
    pub(crate) fn shrink(&mut self, between_messages: bool) {
        if self.send_no_context_takeover {
            self.compressor = None;
        }
        if self.receive_no_context_takeover && between_messages {
            self.decompressor = None;
        }
    }
}

fn compress_with(compressor: &mut Compress, payload: &[u8]) -> Bytes {
    let mut out: Vec<u8> = Vec::with_capacity(payload.len() / 2 + 64);
    let mut input = payload;
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(256));
        }
        let before_in = compressor.total_in();
        compressor
            .compress_vec(input, &mut out, FlushCompress::Sync)
            .expect("deflate with valid parameters does not fail");
        input = &input[(compressor.total_in() - before_in) as usize..];
        // A sync flush is complete once all input is consumed and there was room left.
        if input.is_empty() && out.capacity() - out.len() >= 64 {
            break;
        }
    }
    if out.ends_with(&TRAILER) {
        out.truncate(out.len() - TRAILER.len());
    }
    Bytes::from(out)
}

/// Keeps the last `WINDOW` bytes of `history` followed by `more`.
fn remember_window(history: &mut Vec<u8>, more: &[u8]) {
    if more.len() >= WINDOW {
        history.clear();
        history.extend_from_slice(&more[more.len() - WINDOW..]);
        return;
    }
    let excess = (history.len() + more.len()).saturating_sub(WINDOW);
    history.drain(..excess);
    history.extend_from_slice(more);
}

/// How far [`inflate_into`] got.
enum Step {
    /// A BFINAL block ended the deflate stream (what follows it is ignored).
    Ended,
    /// All the input is inflated.
    NeedInput,
    /// `out` reached the pause mark with this much of the input used.
    Paused(usize),
}

/// Inflates `input` onto `out`, pausing once `out` holds `pause_at` bytes.
fn inflate_into(
    decompressor: &mut Decompress,
    mut input: &[u8],
    out: &mut Vec<u8>,
    limit: usize,
    pause_at: usize,
) -> Result<Step, InflateError> {
    const STEP: usize = 32 << 10;
    let whole = input.len();
    loop {
        if out.len() > limit {
            return Err(InflateError::TooLarge(TooLarge));
        }
        if out.len() >= pause_at {
            return Ok(Step::Paused(whole - input.len()));
        }
        // Grow geometrically, but never past one byte over the limit, so exceeding it is
        // seen without allocating more than the limit, nor past the pause mark, so that
        // one call writes at most that far (the spare room is what one call may fill).
        let want = out
            .len()
            .max(STEP)
            .min(limit.saturating_add(1).saturating_sub(out.len()))
            .min(pause_at - out.len())
            .max(1);
        if out.capacity() - out.len() < want / 2 + 1 {
            out.reserve_exact(want);
        }
        let spare_before = out.capacity() - out.len();
        let before_in = decompressor.total_in();
        let before_out = out.len();
        let status = decompressor
            .decompress_vec(input, out, FlushDecompress::Sync)
            .map_err(|_| InflateError::Corrupt(CorruptData))?;
        let consumed = (decompressor.total_in() - before_in) as usize;
        input = &input[consumed..];
        let produced = out.len() - before_out;
        if out.len() > limit {
            return Err(InflateError::TooLarge(TooLarge));
        }
        let output_full = produced == spare_before;
        if matches!(status, Status::StreamEnd) {
            // A block with BFINAL ends the deflate stream (RFC 7692 section 7.2.3.4).
            return Ok(Step::Ended);
        }
        if input.is_empty() && !output_full {
            return Ok(Step::NeedInput);
        }
        if consumed == 0 && produced == 0 {
            if matches!(status, Status::BufError) && input.is_empty() {
                return Ok(Step::NeedInput);
            }
            if !output_full {
                return Err(InflateError::Corrupt(CorruptData));
            }
        }
    }
}

/// Appends the compressed form of `payload` to `out` using a fresh context (for frames
/// shared between connections).
pub(crate) fn compress_fresh(payload: &[u8], level: u32) -> Bytes {
    compress_shared(Compression::new(level.min(9)), 15, payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(params: DeflateParams, messages: &[&[u8]]) {
        let mut server = Deflate::new(Role::Server, params, 6);
        let mut client = Deflate::new(Role::Client, params, 6);
        for message in messages {
            let compressed = server.compress(message);
            let mut out = Vec::new();
            assert!(
                client
                    .inflate(&compressed, true, &mut out, 1 << 20, usize::MAX)
                    .is_ok()
            );
            assert_eq!(&out[..], *message);
        }
    }

    #[test]
    fn connections_sharing_the_thread_compressor_stay_independent() {
        let params = DeflateParams {
            server_no_context_takeover: true,
            ..DeflateParams::default()
        };
        let mut servers: Vec<Deflate> = (0..3)
            .map(|_| Deflate::new(Role::Server, params, 6))
            .collect();
        let mut clients: Vec<Deflate> = (0..3)
            .map(|_| Deflate::new(Role::Client, params, 6))
            .collect();
        for round in 0..4 {
            for (i, (server, client)) in servers.iter_mut().zip(&mut clients).enumerate() {
                let message = format!("connection {i}, message {round}: ").repeat(20 + i);
                let compressed = server.compress(message.as_bytes());
                assert!(compressed.len() < message.len());
                assert!(server.compressor.is_none(), "no compressor of its own");
                let mut out = Vec::new();
                assert!(
                    client
                        .inflate(&compressed, true, &mut out, 1 << 20, usize::MAX)
                        .is_ok()
                );
                assert_eq!(out, message.as_bytes());
            }
        }
        // The same message compresses to the same bytes every time: each starts afresh.
        let a = servers[0].compress(b"Hello Hello Hello Hello");
        let b = servers[1].compress(b"Hello Hello Hello Hello");
        assert_eq!(a, b);
        assert_eq!(a, compress_fresh(b"Hello Hello Hello Hello", 6));
    }

    #[test]
    fn rfc_7692_section_7_2_3_1_hello_compresses_to_the_rfc_bytes() {
        let mut deflate = Deflate::new(Role::Server, DeflateParams::default(), 6);
        // The RFC's "Hello" example: f2 48 cd c9 c9 07 00.
        assert_eq!(
            &deflate.compress(b"Hello")[..],
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
        );
        let mut client = Deflate::new(Role::Client, DeflateParams::default(), 6);
        let mut out = Vec::new();
        assert!(
            client
                .inflate(
                    &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
                    true,
                    &mut out,
                    100,
                    usize::MAX
                )
                .is_ok()
        );
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn rfc_7692_section_7_2_3_2_second_hello_with_context_takeover() {
        let mut server = Deflate::new(Role::Server, DeflateParams::default(), 6);
        server.compress(b"Hello");
        // With the context kept, the second "Hello" is a back-reference: f2 00 11 00 00.
        assert_eq!(
            &server.compress(b"Hello")[..],
            &[0xf2, 0x00, 0x11, 0x00, 0x00]
        );
        let mut client = Deflate::new(Role::Client, DeflateParams::default(), 6);
        for payload in [
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00][..],
            &[0xf2, 0x00, 0x11, 0x00, 0x00],
        ] {
            let mut out = Vec::new();
            assert!(
                client
                    .inflate(payload, true, &mut out, 100, usize::MAX)
                    .is_ok()
            );
            assert_eq!(out, b"Hello");
        }
        // Without context takeover both messages compress the same way.
        let params = DeflateParams {
            server_no_context_takeover: true,
            ..DeflateParams::default()
        };
        let mut server = Deflate::new(Role::Server, params, 6);
        server.compress(b"Hello");
        assert_eq!(
            &server.compress(b"Hello")[..],
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
        );
    }

    /// A peer that ends every message with a BFINAL block but keeps its window (it
    /// restarts its compressor with the data so far as the dictionary), as section
    /// 7.2.2 allows with context takeover.
    fn bfinal_message(history: &[u8], message: &[u8]) -> Vec<u8> {
        let mut compressor = Compress::new_with_window_bits(Compression::new(6), false, 15);
        if !history.is_empty() {
            compressor.set_dictionary(history).unwrap();
        }
        let mut out = Vec::with_capacity(message.len() + 64);
        compressor
            .compress_vec(message, &mut out, FlushCompress::Finish)
            .unwrap();
        out
    }

    #[test]
    fn a_bfinal_block_with_context_takeover_keeps_the_window_for_the_next_message() {
        let mut client = Deflate::new(Role::Client, DeflateParams::default(), 6);
        let first = b"the quick brown fox jumps over the lazy dog; ".repeat(3);
        let second = b"the lazy dog jumps over the quick brown fox; ".repeat(2);
        let third = [&first[..20], &second[..20], b"!"].concat();
        let mut sent = Vec::new();
        for message in [&first[..], &second[..], &third[..]] {
            let wire = bfinal_message(&sent, message);
            let mut out = Vec::new();
            assert!(
                client
                    .inflate(&wire, true, &mut out, 1 << 20, usize::MAX)
                    .is_ok()
            );
            assert_eq!(out, message);
            sent.extend_from_slice(message);
        }
        // The compressor referred back across messages (it is shorter than the text).
        assert!(bfinal_message(&first, &second).len() < second.len() / 2);
    }

    #[test]
    fn rfc_7692_uncompressed_block_and_bfinal_block_inflate() {
        let mut client = Deflate::new(Role::Client, DeflateParams::default(), 6);
        // Section 7.2.3.3: "Hello" in a stored block.
        let mut out = Vec::new();
        assert!(
            client
                .inflate(
                    &[
                        0x00, 0x05, 0x00, 0xfa, 0xff, b'H', b'e', b'l', b'l', b'o', 0x00
                    ],
                    true,
                    &mut out,
                    100,
                    usize::MAX
                )
                .is_ok()
        );
        assert_eq!(out, b"Hello");
        // Section 7.2.3.4: a block with BFINAL set.
        let mut out = Vec::new();
        assert!(
            client
                .inflate(
                    &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
                    true,
                    &mut out,
                    100,
                    usize::MAX
                )
                .is_ok()
        );
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn context_takeover_shrinks_repeated_messages_and_roundtrips() {
        let params = DeflateParams::default();
        let mut server = Deflate::new(Role::Server, params, 6);
        let first = server.compress(b"the same sentence, again and again").len();
        let second = server.compress(b"the same sentence, again and again").len();
        assert!(second < first, "{second} < {first}");
        roundtrip(params, &[b"the same sentence", b"the same sentence", b""]);
    }

    #[test]
    fn no_context_takeover_compresses_each_message_alone() {
        let params = DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..DeflateParams::default()
        };
        let mut server = Deflate::new(Role::Server, params, 6);
        let a = server.compress(b"the same sentence, again and again");
        let b = server.compress(b"the same sentence, again and again");
        assert_eq!(a, b);
        roundtrip(params, &[b"abc", b"abc", &[0u8; 100_000]]);
    }

    #[test]
    fn every_window_size_roundtrips() {
        for bits in 9..=15 {
            let params = DeflateParams {
                server_max_window_bits: bits,
                client_max_window_bits: bits,
                ..DeflateParams::default()
            };
            let data: Vec<u8> = (0..100_000u32)
                .map(|i| (i % 251) as u8 ^ (i / 1000) as u8)
                .collect();
            roundtrip(params, &[&data, &data]);
        }
    }

    #[test]
    fn window_of_8_bits_disables_our_compression() {
        let params = DeflateParams {
            server_max_window_bits: 8,
            ..DeflateParams::default()
        };
        assert!(!Deflate::new(Role::Server, params, 6).can_compress());
        assert!(Deflate::new(Role::Client, params, 6).can_compress());
    }

    #[test]
    fn bomb_is_stopped_at_the_limit_without_allocating_past_it() {
        let zeros = vec![0u8; 1 << 20];
        let bomb = compress_fresh(&zeros, 9);
        assert!(bomb.len() < 2048, "{}", bomb.len());
        let mut client = Deflate::new(Role::Client, DeflateParams::default(), 6);
        let mut out = Vec::new();
        let result = client.inflate(&bomb, true, &mut out, 64 << 10, usize::MAX);
        assert!(matches!(result, Err(InflateError::TooLarge(_))));
        assert!(out.capacity() <= (64 << 10) + 1, "{}", out.capacity());
    }

    #[test]
    fn an_unlimited_decompressed_size_does_not_overflow() {
        let data = vec![7u8; 100_000];
        let compressed = compress_fresh(&data, 6);
        let mut client = Deflate::new(Role::Client, DeflateParams::default(), 6);
        let mut out = Vec::new();
        assert!(
            client
                .inflate(&compressed, true, &mut out, usize::MAX, usize::MAX)
                .is_ok()
        );
        assert_eq!(out, data);
    }

    #[test]
    fn garbage_is_corrupt_data() {
        let mut client = Deflate::new(Role::Client, DeflateParams::default(), 6);
        let mut out = Vec::new();
        assert!(matches!(
            client.inflate(&[0xff; 16], true, &mut out, 1000, usize::MAX),
            Err(InflateError::Corrupt(_))
        ));
    }

    #[test]
    fn a_negotiated_but_unused_deflate_state_is_small() {
        // Browsers always offer permessage-deflate: what a connection holds for it before
        // the first compressed message is paid by every idle browser connection.
        let size = std::mem::size_of::<Deflate>();
        assert!(size <= 64, "Deflate is {size} bytes inline");
    }
}
