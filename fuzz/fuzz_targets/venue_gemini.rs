//! libFuzzer target `venue_gemini`: see `mdrelay_fuzz::venue_gemini` (fuzz/src/lib.rs) for the input layout and
//! the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mdrelay_fuzz::venue_gemini(data));
