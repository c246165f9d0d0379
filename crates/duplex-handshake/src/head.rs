//! Collecting an HTTP head that arrives in pieces, in linear time.

use bytes::{Bytes, BytesMut};

use crate::error::HandshakeError;

/// Limits on the HTTP head of a handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest head in bytes, request line and headers included (default 16 KiB).
    pub max_head_size: usize,
    /// The most header fields (default 64).
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head_size: 16 << 10,
            max_headers: 64,
        }
    }
}

/// Buffers bytes until `\r\n\r\n` ends the head. Each byte is scanned once, so bytes
/// arriving one at a time cost linear time in total; the head is parsed once, complete.
#[derive(Debug)]
pub(crate) struct HeadReader {
    buf: BytesMut,
    scanned: usize,
    max: usize,
}

impl HeadReader {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            scanned: 0,
            max,
        }
    }

    /// Appends `data`; returns the complete head and whatever followed it.
    pub(crate) fn push(&mut self, data: &[u8]) -> Result<Option<(Bytes, Bytes)>, HandshakeError> {
        // Never hold more than the limit plus the end marker of a head that fits.
        let room = (self.max + 4).saturating_sub(self.buf.len());
        let (take, overflow) = if data.len() > room {
            (&data[..room], true)
        } else {
            (data, false)
        };
        self.buf.extend_from_slice(take);
        let from = self.scanned.saturating_sub(3);
        if let Some(at) = find_end(&self.buf[from..]) {
            let head_len = from + at + 4;
            if head_len > self.max {
                return Err(HandshakeError::HeadTooLarge { limit: self.max });
            }
            let mut buf = std::mem::take(&mut self.buf);
            if overflow {
                buf.extend_from_slice(&data[room..]);
            }
            let head = buf.split_to(head_len).freeze();
            return Ok(Some((head, buf.freeze())));
        }
        self.scanned = self.buf.len();
        if self.buf.len() > self.max {
            return Err(HandshakeError::HeadTooLarge { limit: self.max });
        }
        Ok(None)
    }
}

fn find_end(data: &[u8]) -> Option<usize> {
    data.windows(4).position(|w| w == b"\r\n\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_end_across_pieces_and_returns_what_follows() {
        let mut reader = HeadReader::new(100);
        let wire = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\x81\x00";
        let mut result = None;
        for byte in wire.iter() {
            if let Some(done) = reader.push(&[*byte]).unwrap() {
                result = Some(done);
                break;
            }
        }
        let (head, rest) = result.unwrap();
        assert_eq!(&head[..], b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(rest.is_empty(), "bytes after the head were not pushed yet");
        let mut reader = HeadReader::new(100);
        let (head, rest) = reader.push(wire).unwrap().unwrap();
        assert_eq!(head.len(), 27);
        assert_eq!(&rest[..], b"\x81\x00");
    }

    #[test]
    fn head_over_the_limit_is_refused_without_holding_more_than_the_limit() {
        let mut reader = HeadReader::new(64);
        let big = vec![b'a'; 1 << 20];
        assert_eq!(
            reader.push(&big),
            Err(HandshakeError::HeadTooLarge { limit: 64 })
        );
        assert!(reader.buf.len() <= 68);
    }
}
