//! Fuzz target `server_handshake`: see `duplex_hostile::check::server_handshake` for the input layout and the
//! invariants checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| duplex_hostile::check::server_handshake(data));
