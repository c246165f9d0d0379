//! Fuzz target `decoder`: see `duplex_hostile::check::decoder` for the input layout and the
//! invariants checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| duplex_hostile::check::decoder(data));
