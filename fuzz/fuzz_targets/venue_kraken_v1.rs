//! libFuzzer target `venue_kraken_v1`: see `mdrelay_fuzz::venue_kraken_v1` (fuzz/src/lib.rs) for the input layout and
//! the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mdrelay_fuzz::venue_kraken_v1(data));
