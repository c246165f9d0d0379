//! Masking keys for client frames (RFC 6455 section 10.3: unpredictable keys).
//!
//! Keys come from the operating system's cryptographic generator, drawn 64 at a time
//! into a per-thread batch, so masking costs a system call per 64 frames, not per frame.

use std::cell::RefCell;

const BATCH: usize = 256;

struct Batch {
    bytes: [u8; BATCH],
    used: usize,
}

thread_local! {
    static KEYS: RefCell<Batch> = const { RefCell::new(Batch { bytes: [0; BATCH], used: BATCH }) };
}

/// The next masking key.
///
/// # Panics
///
/// If the operating system's random generator fails, which on supported platforms
/// happens only when it is missing entirely (no network input can cause it).
pub(crate) fn next_key() -> [u8; 4] {
    KEYS.with(|cell| {
        let mut batch = cell.borrow_mut();
        if batch.used == BATCH {
            getrandom::fill(&mut batch.bytes).expect("the OS random generator failed");
            batch.used = 0;
        }
        let at = batch.used;
        batch.used += 4;
        [
            batch.bytes[at],
            batch.bytes[at + 1],
            batch.bytes[at + 2],
            batch.bytes[at + 3],
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn keys_do_not_repeat_across_batches() {
        let keys: HashSet<[u8; 4]> = (0..1000).map(|_| next_key()).collect();
        // 1000 draws from 2^32 values: a collision is possible but astronomically rare
        // beyond a handful; a broken generator (constant or repeating batch) gives few.
        assert!(keys.len() > 990, "only {} distinct keys", keys.len());
    }
}
