//! libFuzzer target `http_request`: see `mdrelay_fuzz::http_request` (fuzz/src/lib.rs) for the input layout and
//! the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mdrelay_fuzz::http_request(data));
