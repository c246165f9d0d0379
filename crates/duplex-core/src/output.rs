//! The queue of encoded bytes waiting for the socket.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

/// Payloads at least this long are queued by reference instead of copied (server side,
/// where payloads go out unmasked).
pub(crate) const SHARE_THRESHOLD: usize = 1024;

/// A staging buffer that grew past this is released once drained.
const KEEP_STAGING: usize = 64 << 10;

/// The least a staging buffer is allocated with, so that a batch of small frames does
/// not regrow it frame by frame (it is released when the connection goes idle).
const MIN_STAGING: usize = 1024;

/// Encoded frames in order: shared chunks (`Bytes`, e.g. a large payload or a prepared
/// broadcast frame) and, after them, a staging buffer where small frames are coalesced.
#[derive(Debug, Default)]
pub(crate) struct Output {
    chunks: VecDeque<Bytes>,
    staging: BytesMut,
    len: usize,
    /// Total bytes ever consumed by the socket, to tell when a queued pong has left.
    consumed: u64,
    /// Total bytes ever queued.
    queued: u64,
    /// Where the frames queued behind other output start (a frame queued into an empty
    /// queue starts at the front and needs no entry, so a connection that keeps up
    /// records nothing); entries at or before the consumed position are dropped. The
    /// first one past it is where the frame being written ends
    /// ([`Output::cut_after_front_frame`]). Boxed: allocated only when output backs up.
    // Boxed on purpose: 8 bytes in every connection instead of a `VecDeque`'s 32.
    #[allow(clippy::box_collection)]
    starts: Option<Box<VecDeque<u64>>>,
    /// Where the last frame queued into an empty queue starts.
    first_start: u64,
}

impl Output {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Position (in bytes ever queued) of the end of the queue.
    pub(crate) fn end_position(&self) -> u64 {
        self.queued
    }

    pub(crate) fn consumed_position(&self) -> u64 {
        self.consumed
    }

    /// The buffer to encode small frames into, with room for `additional` bytes; call
    /// [`Output::staged`] after writing.
    pub(crate) fn staging(&mut self, additional: usize) -> &mut BytesMut {
        if self.staging.capacity() == 0 {
            self.staging.reserve(additional.max(MIN_STAGING));
        } else {
            self.staging.reserve(additional);
        }
        &mut self.staging
    }

    /// Records that `before` was the staging length before the caller appended to it.
    pub(crate) fn staged(&mut self, before: usize) {
        let added = self.staging.len() - before;
        self.len += added;
        self.queued += added as u64;
    }

    /// Notes that a frame starts at the end of the queue (call before queuing it).
    pub(crate) fn begin_frame(&mut self) {
        if self.len > 0 {
            self.starts.get_or_insert_default().push_back(self.queued);
        } else {
            self.first_start = self.queued;
        }
    }

    /// Drops every queued frame that has not started to be written, keeping the rest of
    /// the one being written (a frame cut in the middle would break the stream).
    /// Returns the new end position.
    pub(crate) fn cut_after_front_frame(&mut self) -> u64 {
        let end = match self.starts.as_ref().and_then(|starts| starts.front()) {
            // The front frame was not started either.
            _ if self.first_start == self.consumed => self.consumed,
            Some(&start) if start <= self.consumed => self.consumed,
            Some(&start) => start,
            None => self.queued,
        };
        let mut keep = (end - self.consumed) as usize;
        let mut chunks = 0;
        for chunk in &mut self.chunks {
            if keep == 0 {
                break;
            }
            if chunk.len() > keep {
                chunk.truncate(keep);
            }
            keep -= chunk.len();
            chunks += 1;
        }
        self.chunks.truncate(chunks);
        // What is left to keep is in the staging buffer, which follows every chunk.
        self.staging.truncate(keep);
        self.len = (end - self.consumed) as usize;
        self.queued = end;
        self.starts = None;
        end
    }

    /// Queues a payload: shared if large, copied into staging if small.
    pub(crate) fn push_payload(&mut self, payload: Bytes) {
        if payload.len() >= SHARE_THRESHOLD {
            self.push_shared(payload);
        } else {
            let before = self.staging.len();
            self.staging.extend_from_slice(&payload);
            self.staged(before);
        }
    }

    /// Queues bytes by reference, after everything queued so far.
    pub(crate) fn push_shared(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        if !self.staging.is_empty() {
            let staged = self.staging.split().freeze();
            self.chunks.push_back(staged);
        }
        self.len += bytes.len();
        self.queued += bytes.len() as u64;
        self.chunks.push_back(bytes);
    }

    /// The next contiguous bytes to write.
    pub(crate) fn front(&self) -> &[u8] {
        self.chunks
            .front()
            .map_or(&self.staging[..], |chunk| &chunk[..])
    }

    /// Fills `out` with the pending bytes in order; returns how many slices were used.
    pub(crate) fn vectored<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        let pieces = self
            .chunks
            .iter()
            .map(|c| &c[..])
            .chain(std::iter::once(&self.staging[..]));
        for piece in pieces.filter(|p| !p.is_empty()) {
            if n == out.len() {
                break;
            }
            out[n] = IoSlice::new(piece);
            n += 1;
        }
        n
    }

    /// Drops the first `n` pending bytes, which the socket accepted.
    ///
    /// # Panics
    ///
    /// If `n` exceeds the pending length (a bug in the adapter).
    pub(crate) fn consume(&mut self, mut n: usize) {
        assert!(
            n <= self.len,
            "consumed {n} bytes but only {} are pending",
            self.len
        );
        self.len -= n;
        self.consumed += n as u64;
        while n > 0 {
            match self.chunks.front_mut() {
                Some(chunk) if chunk.len() <= n => {
                    n -= chunk.len();
                    self.chunks.pop_front();
                }
                Some(chunk) => {
                    chunk.advance(n);
                    n = 0;
                }
                None => {
                    self.staging.advance(n);
                    n = 0;
                }
            }
        }
        if let Some(starts) = &mut self.starts {
            while starts.front().is_some_and(|start| *start < self.consumed) {
                starts.pop_front();
            }
        }
        if self.len == 0 && self.staging.capacity() > KEEP_STAGING {
            self.staging = BytesMut::new();
        }
    }

    /// Releases every buffer that holds nothing, for idle connections.
    pub(crate) fn shrink(&mut self) {
        if self.staging.is_empty() {
            self.staging = BytesMut::new();
        }
        if self.chunks.is_empty() {
            self.chunks = VecDeque::new();
        }
        if self.starts.as_ref().is_some_and(|starts| starts.is_empty()) {
            self.starts = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_across_staged_and_shared_pieces() {
        let mut out = Output::default();
        let before = out.staging(2).len();
        out.staging(2).extend_from_slice(b"ab");
        out.staged(before);
        out.push_shared(Bytes::from_static(b"cd"));
        let before = out.staging(2).len();
        out.staging(2).extend_from_slice(b"ef");
        out.staged(before);
        let mut written = Vec::new();
        while !out.is_empty() {
            let take = out.front().len().min(1);
            written.extend_from_slice(&out.front()[..take]);
            out.consume(take);
        }
        assert_eq!(written, b"abcdef");
        assert_eq!((out.consumed_position(), out.end_position()), (6, 6));
    }

    #[test]
    fn vectored_lists_every_pending_piece() {
        let mut out = Output::default();
        out.push_shared(Bytes::from_static(b"one"));
        out.push_shared(Bytes::from_static(b"two"));
        let mut slices = [IoSlice::new(&[]); 4];
        let n = out.vectored(&mut slices);
        assert_eq!(n, 2);
        assert_eq!((&*slices[0], &*slices[1]), (&b"one"[..], &b"two"[..]));
    }
}
