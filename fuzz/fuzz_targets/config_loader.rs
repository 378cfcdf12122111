//! libFuzzer target `config_loader`: see `mdrelay_fuzz::config_loader` (fuzz/src/lib.rs) for the input layout and
//! the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mdrelay_fuzz::config_loader(data));
