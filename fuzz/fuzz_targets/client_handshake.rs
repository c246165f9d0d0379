//! Fuzz target `client_handshake`: see `duplex_hostile::check::client_handshake` for the input layout and the
//! invariants checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| duplex_hostile::check::client_handshake(data));
