//! Shared test utilities: temp socket paths, fixture paths, a watchdog that fails a hung test,
//! and configuration built the way a user would (built-in defaults + `--set` overrides).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use mdrelay::config::{self, Config, Sources};

/// Path of a file in the repository.
pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A fixture by its `shared/fixtures`-style name: `samples/…` lives in `tests/fixtures/samples`,
/// captures (`binance/…`, `coinbase/…`, `kraken_v1/…`) in `data/`.
pub fn fixture(rel: &str) -> PathBuf {
    if rel.starts_with("samples/") {
        repo("tests/fixtures").join(rel)
    } else {
        repo("data").join(rel)
    }
}

/// The bundled Binance capture.
pub fn binance_capture() -> PathBuf {
    repo("data/binance/spot_ethusdt_20240808.txt.gz")
}

/// A fresh temporary directory and a socket path inside it (the directory lives as long as the
/// returned guard).
pub fn temp_socket() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("mdrelay-test-")
        .tempdir()
        .expect("temp dir");
    let path = dir.path().join("relay.sock");
    (dir, path)
}

/// Built-in defaults plus `sets` (each `key=value`, values in TOML syntax).
pub fn config(sets: &[String]) -> Config {
    config::load(&Sources {
        sets: sets.to_vec(),
        ..Sources::default()
    })
    .expect("test config is valid")
}

/// Fails the whole test binary if the guard is not dropped within `secs`: a hung test must not
/// hang CI. Prints which test hung.
pub struct Watchdog {
    tx: Option<mpsc::Sender<()>>,
}

impl Watchdog {
    /// Arms the watchdog.
    pub fn new(name: &'static str, secs: u64) -> Self {
        let (tx, rx) = mpsc::channel::<()>();
        thread::Builder::new()
            .name(format!("watchdog-{name}"))
            .spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) =
                    rx.recv_timeout(Duration::from_secs(secs))
                {
                    eprintln!("watchdog: test `{name}` did not finish within {secs} s; aborting");
                    std::process::exit(101);
                }
            })
            .expect("spawn watchdog");
        Watchdog { tx: Some(tx) }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(());
        }
    }
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < end {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    cond()
}
