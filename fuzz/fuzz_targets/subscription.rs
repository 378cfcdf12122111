//! libFuzzer target `subscription`: see `mdrelay_fuzz::subscription` (fuzz/src/lib.rs) for the input layout and
//! the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mdrelay_fuzz::subscription(data));
