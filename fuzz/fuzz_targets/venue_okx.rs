//! libFuzzer target `venue_okx`: see `mdrelay_fuzz::venue_okx` (fuzz/src/lib.rs) for the input layout and
//! the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mdrelay_fuzz::venue_okx(data));
