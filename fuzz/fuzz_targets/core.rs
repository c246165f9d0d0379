//! Fuzz target `core`: see `duplex_hostile::check::core` for the input layout and the
//! invariants checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| duplex_hostile::check::core(data));
