//! libFuzzer target `line_reader`: see `mdrelay_fuzz::line_reader` (fuzz/src/lib.rs) for the input layout and
//! the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mdrelay_fuzz::line_reader(data));
