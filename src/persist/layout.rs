//! How the raw recorder lays recordings out on disk (`[recording] layout`), and how it learns
//! which symbol a venue message belongs to.
//!
//! - [`Layout::Mdrelay`]: everything the feed received, acks and errors included, one file per
//!   feed per UTC day: `<dir>/<venue>/<feed>_<YYYYMMDD>.txt.gz`.
//! - [`Layout::Hftbacktest`]: the layout of hftbacktest's collector, whose converters
//!   (`hftbacktest.data.utils.binancefutures.convert` and the others) read it unchanged: market
//!   data and REST snapshots only, one file per symbol per UTC day,
//!   `<dir>/<venue>/<feed>/<symbol>_<YYYYMMDD>.gz`, the symbol as the venue spells it,
//!   lowercased and made a safe path component ([`path_component`]). hftbacktest's collector
//!   writes `<its path argument>/<symbol>_<YYYYMMDD>.gz` for one venue per run; the
//!   `<venue>/<feed>` directory keeps two venues' `BTCUSDT` (or two feeds of one venue) apart.
//!
//! The symbol of a WebSocket message is found by the feed's [`RouteFn`], which the feed layer
//! supplies per venue and the recorder thread runs, so the collector's hot path does no extra
//! work; a REST snapshot carries the symbol it was fetched for. A market-data message naming
//! several symbols, or none the router recognizes, goes whole to the feed's
//! `_mixed_<YYYYMMDD>.gz` beside the symbol files: it is kept, and no symbol's file holds another
//! symbol's data. Acks, errors and heartbeats ([`Route::Control`]) are left out of the
//! `hftbacktest` layout and counted ([`crate::persist::recorder::RecorderStats::skipped`]); the
//! collector still parses them, so they reach the relay (status frames) and the logs as before.

use std::path::{Path, PathBuf};

use crate::persist::paths::path_component;

/// File stem of the per-feed file for messages no single symbol owns (`hftbacktest` layout).
pub const MIXED_STEM: &str = "_mixed";

/// The on-disk layout of raw recordings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// One file per feed per UTC day with every message received.
    #[default]
    Mdrelay,
    /// One file per symbol per UTC day, market data and REST snapshots only.
    Hftbacktest,
}

impl Layout {
    /// The layout named `name` in the configuration (`mdrelay`, `hftbacktest`).
    pub fn from_name(name: &str) -> Option<Layout> {
        match name {
            "mdrelay" => Some(Layout::Mdrelay),
            "hftbacktest" => Some(Layout::Hftbacktest),
            _ => None,
        }
    }
}

/// Where a venue message belongs in the `hftbacktest` layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// Market data of this symbol (as the venue spells it).
    Symbol(&'a str),
    /// Market data of several symbols, or of none the router can name.
    Mixed,
    /// Not market data: subscribe acks, errors, heartbeats, pongs.
    Control,
}

/// A venue's router: the [`Route`] of one raw WebSocket message. Runs on the recorder thread.
pub type RouteFn = fn(&str) -> Route<'_>;

/// A router for feeds whose messages are never split: every message is [`Route::Mixed`].
pub fn route_mixed(_raw: &str) -> Route<'_> {
    Route::Mixed
}

/// Days since the Unix epoch of a receive time (UTC day: files rotate at midnight UTC).
pub fn utc_day(recv_ns: u64) -> u64 {
    recv_ns / 86_400_000_000_000
}

/// `YYYYMMDD` of a day number from [`utc_day`].
pub fn day_stamp(day: u64) -> String {
    crate::base::timefmt::utc_date(day.saturating_mul(86_400_000_000_000)).replace('-', "")
}

/// The path of a recording file. `venue` and `feed` are safe path components already; `key` is
/// `None` for the feed's own file (`mdrelay` layout) and the lowercased symbol or
/// [`MIXED_STEM`] for the `hftbacktest` layout.
pub fn file_path(dir: &Path, venue: &str, feed: &str, key: Option<&str>, day: u64) -> PathBuf {
    let stamp = day_stamp(day);
    match key {
        None => dir.join(venue).join(format!("{feed}_{stamp}.txt.gz")),
        Some(k) => dir
            .join(venue)
            .join(feed)
            .join(format!("{}_{stamp}.gz", path_component(k))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_each_layout() {
        let day = utc_day(1_723_161_255_088_156_767);
        assert_eq!(day_stamp(day), "20240808");
        let d = Path::new("/r");
        assert_eq!(
            file_path(d, "binance_usdm", "usdm", None, day),
            Path::new("/r/binance_usdm/usdm_20240808.txt.gz")
        );
        assert_eq!(
            file_path(d, "binance_usdm", "usdm", Some("ethusdt"), day),
            Path::new("/r/binance_usdm/usdm/ethusdt_20240808.gz")
        );
        assert_eq!(
            file_path(d, "kraken", "k", Some("xbt/eur"), day),
            Path::new("/r/kraken/k/xbt-eur_20240808.gz")
        );
        // Midnight UTC starts a new day.
        let midnight = 1_723_161_600_000_000_000u64; // 2024-08-09T00:00:00Z
        assert_eq!(utc_day(midnight - 1) + 1, utc_day(midnight));
        assert_eq!(day_stamp(utc_day(midnight)), "20240809");
        assert_eq!(Layout::from_name("hftbacktest"), Some(Layout::Hftbacktest));
        assert_eq!(Layout::from_name("mdrelay"), Some(Layout::Mdrelay));
        assert_eq!(Layout::from_name("HFT"), None);
    }
}
