//! Recordings as the exchange plays them: a venue's files loaded once, merged in receive-time
//! order, each message tagged with the subscription key it belongs to (the key a venue's request
//! handler puts in a session's subscriptions), and what the venue emulation needs from the whole
//! recording (Binance's depth timelines, Kraken v2's pair precisions). Only the replayed window
//! (`--from`/`--to`) is kept for playing; the whole recording builds the depth timelines, so the
//! REST books are right at the window's start.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;

use serde::Deserialize;
use tungstenite::Utf8Bytes;

use crate::market::instrument::Venue;
use crate::persist::recording;

use super::binance::binance_key;
use super::binance_rest::{BookScan, BookStep, Timeline};
use super::bybit::bybit_key;
use super::coinbase::coinbase_key;
use super::gemini::gemini_key;
use super::hyperliquid::hyperliquid_key;
use super::kraken_v1::kraken_v1_key;
use super::kraken_v2::{kraken_v2_key, kraken_v2_precisions};
use super::okx::okx_key;

/// One recorded message.
pub(super) struct Rec {
    pub(super) recv_ns: u64,
    /// Subscription key the message belongs to (see [`record_key`]); `None`: never sent.
    pub(super) key: Option<Box<str>>,
    pub(super) raw: Utf8Bytes,
    /// Binance: the depth-timeline step this message is (see `binance_rest`).
    pub(super) book: Option<BookStep>,
}

/// A venue's recordings in the replayed window, merged in receive-time order, and its depth
/// timelines.
pub(super) struct Source {
    pub(super) venue: Venue,
    pub(super) records: Vec<Rec>,
    /// Binance: each symbol's depth book over the whole recording (REST snapshots).
    pub(super) timelines: Vec<Timeline>,
    /// Kraken v2: symbol → (price_precision, qty_precision) seen in the recording, by symbol.
    pub(super) kraken_pairs: BTreeMap<String, (u32, u32)>,
    /// Index of the next record of the most advanced session (where a `live` session starts).
    pub(super) live_pos: AtomicUsize,
}

/// The top-level fields of a JSON-object message that Binance, Coinbase and Kraken v1 messages
/// are keyed by.
#[derive(Deserialize)]
pub(super) struct Peek<'a> {
    #[serde(borrow)]
    pub(super) stream: Option<&'a str>,
    #[serde(borrow, rename = "type")]
    pub(super) kind: Option<&'a str>,
    #[serde(borrow)]
    pub(super) product_id: Option<&'a str>,
    #[serde(borrow)]
    pub(super) event: Option<&'a str>,
}

/// The subscription key of a recorded message, or `None` for messages the exchange never
/// replays (recorded acks and status: the exchange answers its clients' own requests).
pub(super) fn record_key(venue: Venue, raw: &str) -> Option<Box<str>> {
    match venue {
        Venue::Binance | Venue::BinanceUsdm | Venue::BinanceCoinm => binance_key(raw),
        Venue::Coinbase => coinbase_key(raw),
        Venue::KrakenV1 => kraken_v1_key(raw),
        Venue::Kraken => kraken_v2_key(raw),
        Venue::Okx => okx_key(raw),
        Venue::Bybit => bybit_key(raw),
        Venue::Gemini => gemini_key(raw),
        Venue::Hyperliquid => hyperliquid_key(raw),
    }
}

/// The replayed part of a recording: messages received at `from_ns` ≤ t < `to_ns`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Window {
    /// First receive time replayed, ns since the Unix epoch (`None`: the recording's start).
    pub(super) from_ns: Option<u64>,
    /// Receive times from this one on are not replayed (`None`: to the recording's end).
    pub(super) to_ns: Option<u64>,
}

impl Window {
    fn contains(&self, ns: u64) -> bool {
        self.from_ns.is_none_or(|f| ns >= f) && self.to_ns.is_none_or(|t| ns < t)
    }
}

/// Loads a venue's recordings (several files play as one stream, merged by receive time); only
/// `window` is kept for playing.
pub(super) fn load(venue: Venue, paths: &[PathBuf], window: Window) -> io::Result<Source> {
    let mut all = Vec::new();
    for path in paths {
        let recs = recording::read_all(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        // Lines without a time keep the previous one (sent back to back).
        let mut last_ns = 0;
        for r in recs {
            let ns = r.recv_ns.unwrap_or(last_ns);
            last_ns = ns;
            all.push((ns, r.raw));
        }
    }
    // Several files of one venue (Kraken trade, ticker, book) play as one stream. Stable sort:
    // lines with equal times keep their file order.
    all.sort_by_key(|(ns, _)| *ns);
    let window_start = all.partition_point(|(ns, _)| window.from_ns.is_some_and(|f| *ns < f));
    let mut books = BookScan::default();
    let mut records = Vec::with_capacity(all.len());
    let mut kraken_pairs = BTreeMap::new();
    for (index, (recv_ns, raw)) in all.into_iter().enumerate() {
        let key = record_key(venue, &raw);
        if venue == Venue::Kraken && key.is_some() {
            kraken_v2_precisions(&raw, &mut kraken_pairs);
        }
        if venue.is_binance() {
            books.scan(index, key.as_deref(), &raw);
        }
        records.push((
            index,
            Rec {
                recv_ns,
                key,
                raw: Utf8Bytes::from(raw),
                book: None,
            },
        ));
    }
    let (timelines, steps) = books.finish(window_start);
    for (index, step) in steps {
        if let Some((_, rec)) = records.get_mut(index) {
            rec.book = Some(step);
        }
    }
    let records = records
        .into_iter()
        .filter(|(_, r)| window.contains(r.recv_ns))
        .map(|(_, r)| r)
        .collect();
    Ok(Source {
        venue,
        records,
        timelines,
        kraken_pairs,
        live_pos: AtomicUsize::new(0),
    })
}
