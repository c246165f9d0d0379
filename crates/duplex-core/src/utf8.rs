//! Incremental, fail-fast UTF-8 validation of text that arrives in pieces.

/// Validates a text message piece by piece, keeping the incomplete tail of a code point
/// (at most 3 bytes) between pieces. An invalid sequence is reported in the piece where
/// its first wrong byte arrives, not at the end of the message.
#[derive(Debug, Default, Clone)]
pub(crate) struct Utf8Validator {
    tail: [u8; 4],
    tail_len: u8,
}

/// The bytes seen so far cannot be the start of valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidUtf8;

impl Utf8Validator {
    /// Checks the next piece; `last` says whether the text ends with it.
    pub(crate) fn feed(&mut self, mut data: &[u8], last: bool) -> Result<(), InvalidUtf8> {
        if self.tail_len > 0 {
            let have = usize::from(self.tail_len);
            let need = sequence_len(self.tail[0]).ok_or(InvalidUtf8)?;
            let take = (need - have).min(data.len());
            self.tail[have..have + take].copy_from_slice(&data[..take]);
            data = &data[take..];
            match check(&self.tail[..have + take]) {
                Check::Valid => self.tail_len = 0,
                Check::Incomplete(_) => self.tail_len = (have + take) as u8,
                Check::Invalid => return Err(InvalidUtf8),
            }
        }
        if !data.is_empty() {
            match check(data) {
                Check::Valid => {}
                Check::Incomplete(valid_up_to) => {
                    let rest = &data[valid_up_to..];
                    self.tail[..rest.len()].copy_from_slice(rest);
                    self.tail_len = rest.len() as u8;
                }
                Check::Invalid => return Err(InvalidUtf8),
            }
        }
        if last && self.tail_len > 0 {
            return Err(InvalidUtf8);
        }
        Ok(())
    }

    /// Forgets any partial state, for the next message.
    pub(crate) fn reset(&mut self) {
        self.tail_len = 0;
    }
}

enum Check {
    Valid,
    /// Valid up to this index, followed by the prefix of a code point.
    Incomplete(usize),
    Invalid,
}

fn check(data: &[u8]) -> Check {
    match simdutf8::compat::from_utf8(data) {
        Ok(_) => Check::Valid,
        Err(error) if error.error_len().is_none() => Check::Incomplete(error.valid_up_to()),
        Err(_) => Check::Invalid,
    }
}

/// The length of the sequence a leading byte starts, if it can start one.
fn sequence_len(first: u8) -> Option<usize> {
    match first {
        0xC2..=0xDF => Some(2),
        0xE0..=0xEF => Some(3),
        0xF0..=0xF4 => Some(4),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn feed_in_pieces(data: &[u8], piece: usize) -> Result<(), InvalidUtf8> {
        let mut validator = Utf8Validator::default();
        let chunks: Vec<&[u8]> = data.chunks(piece.max(1)).collect();
        if chunks.is_empty() {
            return validator.feed(&[], true);
        }
        for (i, chunk) in chunks.iter().enumerate() {
            validator.feed(chunk, i + 1 == chunks.len())?;
        }
        Ok(())
    }

    #[test]
    fn accepts_valid_text_split_inside_code_points() {
        let text = "κόσμε Hello-µ@ßöäüàá-UTF-8!! 𝄞 \u{10FFFF}";
        for piece in 1..8 {
            assert_eq!(
                feed_in_pieces(text.as_bytes(), piece),
                Ok(()),
                "piece {piece}"
            );
        }
    }

    #[test]
    fn fails_fast_at_the_first_invalid_byte() {
        // Autobahn 6.4.1: the invalid code point U+110000 (f4 90 80 80) is detected at
        // its second byte, before the rest of the message arrives.
        let mut validator = Utf8Validator::default();
        assert_eq!(validator.feed("κόσμε".as_bytes(), false), Ok(()));
        assert_eq!(validator.feed(&[0xF4], false), Ok(()));
        assert_eq!(validator.feed(&[0x90], false), Err(InvalidUtf8));
    }

    #[test]
    fn rejects_truncated_code_point_at_end_of_message() {
        let mut validator = Utf8Validator::default();
        assert_eq!(validator.feed(&[0xCE, 0xBA, 0xE1], false), Ok(()));
        assert_eq!(validator.feed(&[], true), Err(InvalidUtf8));
    }

    #[test]
    fn rejects_surrogates_and_overlong_forms() {
        for bad in [
            &[0xED, 0xA0, 0x80][..],
            &[0xC0, 0xAF],
            &[0xE0, 0x80, 0xAF],
            &[0xF8, 0x88, 0x80, 0x80, 0xAF],
        ] {
            for piece in 1..4 {
                assert_eq!(
                    feed_in_pieces(bad, piece),
                    Err(InvalidUtf8),
                    "{bad:x?} by {piece}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn agrees_with_std_for_any_bytes_and_any_split(
            data in proptest::collection::vec(prop_oneof![any::<u8>(), 0x80u8..0xC0], 0..64),
            piece in 1usize..9,
        ) {
            let expected = std::str::from_utf8(&data).is_ok();
            prop_assert_eq!(feed_in_pieces(&data, piece).is_ok(), expected);
        }

        #[test]
        fn accepts_any_string_split_anywhere(text in ".{0,40}", piece in 1usize..9) {
            prop_assert_eq!(feed_in_pieces(text.as_bytes(), piece), Ok(()));
        }
    }
}
