//! Test-only helpers shared by unit tests: where the bundled fixtures live.

use std::path::{Path, PathBuf};

/// A fixture by its `shared/fixtures`-style name: `samples/…` lives in `tests/fixtures/samples`,
/// captures (`binance/…`, `coinbase/…`, `kraken_v1/…`) in `data/`, where `make run` uses them.
pub fn fixture(rel: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if rel.starts_with("samples/") {
        root.join("tests/fixtures").join(rel)
    } else {
        root.join("data").join(rel)
    }
}
