//! libFuzzer target `frame_decoder`: see `mdrelay_fuzz::frame_decoder` (fuzz/src/lib.rs) for the input layout and
//! the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mdrelay_fuzz::frame_decoder(data));
