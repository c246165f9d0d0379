//! Fuzz target `extensions`: see `duplex_hostile::check::extensions` for the input layout and the
//! invariants checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| duplex_hostile::check::extensions(data));
