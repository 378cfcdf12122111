//! The fast path of the Binance parser for the hot kinds (`trade`, `aggTrade`, `bookTicker`,
//! `depthUpdate` in a combined-stream envelope): one pass over the message with
//! [`Scanner`](super::scan::Scanner), borrowed, no allocation (levels go into the parser's
//! reused buffers), prices and sizes straight to fixed point.
//!
//! It handles only what it fully understands and answers `None` for the rest, which
//! [`BinanceParser`](super::binance::BinanceParser) then parses with its general serde path and
//! counts as a fallback: acks and errors, a REST snapshot, `data` before `stream`, a duplicated
//! key, a missing field, an escape in any string, a number that is not a plain unsigned integer
//! where one is read or does not convert to fixed point, a futures `X` other than `MARKET`, a
//! futures depth `pu`, a stream kind not listed above. So an accepted message gives exactly the
//! events the general path gives; everything else gives the general path's events or error. The
//! differential test below checks this on every line of the bundled captures and on mutated ones.
//! Keys may come in any order, with any whitespace and any unknown fields (skipped, but checked
//! against the JSON grammar).
//!
//! Runs on the Binance collector thread inside `parse`; never blocks.

use super::scan::Scanner;
use crate::market::event::{Event, Level, Quote, Side, Trade};
use crate::market::fixed;

/// Milliseconds → nanoseconds.
const MS: u64 = 1_000_000;

/// What the fast path made of a message.
#[derive(Debug)]
pub(super) enum Fast<'a> {
    /// A trade or a quote of the named symbol, ready for the sink.
    Event(&'a str, Event<'static>),
    /// A `depthUpdate` diff; its levels are in the buffers passed to [`parse`].
    Depth(FastDepth<'a>),
}

/// The fields of a `depthUpdate` other than its levels, as the general path reads them.
#[derive(Debug, Default)]
pub(super) struct FastDepth<'a> {
    /// `s`.
    pub(super) symbol: Option<&'a str>,
    /// `U`.
    pub(super) first_update_id: Option<u64>,
    /// `u`.
    pub(super) final_update_id: Option<u64>,
    /// `E`, ms.
    pub(super) event_time_ms: Option<u64>,
}

#[derive(Clone, Copy)]
enum Kind {
    Trade,
    AggTrade,
    BookTicker,
    Depth,
}

/// The kind a stream name (`ethusdt@bookTicker`) names, as the general path classifies it;
/// `None` for kinds the fast path leaves to it.
fn kind_of(stream: &str) -> Option<Kind> {
    // The part after the first `@` (the whole name when there is none).
    let b = stream.as_bytes();
    let kind = match b.iter().position(|&c| c == b'@') {
        Some(at) => stream.get(at + 1..)?,
        None => stream,
    };
    match kind {
        "trade" => Some(Kind::Trade),
        "aggTrade" => Some(Kind::AggTrade),
        "bookTicker" => Some(Kind::BookTicker),
        k if k.starts_with("depth") => Some(Kind::Depth),
        _ => None,
    }
}

/// Parses `raw` if it is a hot-kind message the fast path fully understands; `None` otherwise
/// (then `bids`/`asks` may hold a partial parse, which the general path clears).
pub(super) fn parse<'a>(
    raw: &'a str,
    bids: &mut Vec<Level>,
    asks: &mut Vec<Level>,
) -> Option<Fast<'a>> {
    if let Some(fast) = exact(raw) {
        return Some(fast);
    }
    let mut s = Scanner::new(raw);
    s.eat(b'{')?;
    let mut kind = None;
    let mut out = None;
    let mut first = true;
    while let Some(key) = s.key(&mut first)? {
        match key {
            "stream" if kind.is_none() => kind = Some(kind_of(s.string()?)?),
            "data" if out.is_none() => {
                out = Some(match kind? {
                    Kind::Trade => trade(&mut s, b't')?,
                    Kind::AggTrade => trade(&mut s, b'a')?,
                    Kind::BookTicker => quote(&mut s)?,
                    Kind::Depth => Fast::Depth(depth(&mut s, bids, asks)?),
                })
            }
            "stream" | "data" | "result" | "error" | "lastUpdateId" => return None,
            _ => s.skip_value()?,
        }
    }
    if !s.at_end() {
        return None;
    }
    out
}

/// The first tier: a trade or bookTicker in exactly the layout Binance's serializer writes today
/// (spot and futures; key order, no whitespace), matched literal by literal, each value read once
/// and prices straight to fixed point ([`Scanner::price_content`]). The first byte that differs
/// from the layout answers `None`, and the message goes to the any-order scan below; so this tier
/// decides nothing the scan would decide differently, it only decides it with fewer steps.
#[inline]
fn exact(raw: &str) -> Option<Fast<'_>> {
    let mut s = Scanner::new(raw);
    s.lit(br#"{"stream":"#)?;
    let kind = kind_of(s.string()?)?;
    s.lit(br#","data":"#)?;
    let fast = match kind {
        Kind::Trade => exact_trade(&mut s)?,
        Kind::BookTicker => exact_quote(&mut s)?,
        Kind::AggTrade | Kind::Depth => return None,
    };
    s.lit(b"}")?;
    s.at_end().then_some(fast)
}

/// Spot `{"e":"trade","E":…,"s":…,"t":…,"p":…,"q":…,"T":…,"m":…,"M":…}` or futures
/// `{"e":"trade","E":…,"T":…,"s":…,"t":…,"p":…,"q":…,"X":"MARKET","m":…}`.
#[inline]
fn exact_trade<'a>(s: &mut Scanner<'a>) -> Option<Fast<'a>> {
    s.lit(br#"{"e":"trade","E":"#)?;
    s.u64()?;
    let futures_time = match s.lit(br#","T":"#) {
        Some(()) => Some(s.u64()?),
        None => None,
    };
    s.lit(br#","s":"#)?;
    let symbol = s.string()?;
    s.lit(br#","t":"#)?;
    let id = s.u64()?;
    s.lit(br#","p":""#)?;
    let price = s.price_content()?;
    s.lit(br#","q":""#)?;
    let size = s.price_content()?;
    let (time, maker) = match futures_time {
        Some(t) => {
            s.lit(br#","X":"MARKET","m":"#)?;
            (t, s.bool()?)
        }
        None => {
            s.lit(br#","T":"#)?;
            let t = s.u64()?;
            s.lit(br#","m":"#)?;
            let maker = s.bool()?;
            s.lit(br#","M":"#)?;
            s.bool()?;
            (t, maker)
        }
    };
    s.lit(b"}")?;
    let trade = Trade {
        price,
        size,
        side: if maker { Side::Sell } else { Side::Buy },
        trade_id: Some(id),
        exchange_ts_ns: Some(ms_to_ns(time)?),
    };
    Some(Fast::Event(symbol, Event::Trade(trade)))
}

/// Spot `{"u":…,"s":…,"b":…,"B":…,"a":…,"A":…}` or futures
/// `{"e":"bookTicker","u":…,"s":…,"b":…,"B":…,"a":…,"A":…,"T":…,"E":…}`.
#[inline]
fn exact_quote<'a>(s: &mut Scanner<'a>) -> Option<Fast<'a>> {
    let futures = s.lit(br#"{"e":"bookTicker","u":"#).is_some();
    if !futures {
        s.lit(br#"{"u":"#)?;
    }
    s.u64()?;
    s.lit(br#","s":"#)?;
    let symbol = s.string()?;
    s.lit(br#","b":""#)?;
    let bid_price = s.price_content()?;
    s.lit(br#","B":""#)?;
    let bid_size = s.price_content()?;
    s.lit(br#","a":""#)?;
    let ask_price = s.price_content()?;
    s.lit(br#","A":""#)?;
    let ask_size = s.price_content()?;
    let exchange_ts_ns = if futures {
        s.lit(br#","T":"#)?;
        let t = s.u64()?;
        s.lit(br#","E":"#)?;
        s.u64()?;
        Some(ms_to_ns(t)?)
    } else {
        None
    };
    s.lit(b"}")?;
    let quote = Quote {
        bid_price,
        bid_size,
        ask_price,
        ask_size,
        exchange_ts_ns,
    };
    Some(Fast::Event(symbol, Event::Quote(quote)))
}

/// Stores `v` in an empty `slot`; a second value for a key is left to the general path.
#[inline]
fn once<T>(slot: &mut Option<T>, v: T) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(v);
            Some(())
        }
    }
}

/// A futures `X` (execution type): only `MARKET` is a market trade the fast path takes.
#[inline]
fn market(s: &mut Scanner<'_>, seen: &mut bool) -> Option<()> {
    if std::mem::replace(seen, true) || s.string()? != "MARKET" {
        return None;
    }
    Some(())
}

#[inline]
fn fixed(s: &str) -> Option<i64> {
    fixed::parse(s).ok()
}

#[inline]
fn ms_to_ns(ms: u64) -> Option<u64> {
    ms.checked_mul(MS)
}

/// A `trade` (`id_key` `t`) or `aggTrade` (`id_key` `a`) object.
fn trade<'a>(s: &mut Scanner<'a>, id_key: u8) -> Option<Fast<'a>> {
    s.eat(b'{')?;
    let (mut symbol, mut id, mut price, mut qty, mut time, mut maker) =
        (None, None, None, None, None, None);
    let mut x_seen = false;
    let mut first = true;
    while let Some(key) = s.key(&mut first)? {
        match key.as_bytes() {
            b"s" => once(&mut symbol, s.string()?)?,
            [k] if *k == id_key => once(&mut id, s.u64()?)?,
            b"p" => once(&mut price, s.string()?)?,
            b"q" => once(&mut qty, s.string()?)?,
            b"T" => once(&mut time, s.u64()?)?,
            b"m" => once(&mut maker, s.bool()?)?,
            b"X" => market(s, &mut x_seen)?,
            _ => s.skip_value()?,
        }
    }
    let trade = Trade {
        price: fixed(price?)?,
        size: fixed(qty?)?,
        side: if maker? { Side::Sell } else { Side::Buy },
        trade_id: Some(id?),
        exchange_ts_ns: Some(ms_to_ns(time?)?),
    };
    Some(Fast::Event(symbol?, Event::Trade(trade)))
}

/// A `bookTicker` object (spot: no `T`/`E`; futures: both, `T` preferred).
fn quote<'a>(s: &mut Scanner<'a>) -> Option<Fast<'a>> {
    s.eat(b'{')?;
    let (mut symbol, mut bid, mut bid_qty, mut ask, mut ask_qty) = (None, None, None, None, None);
    let (mut t, mut e) = (None, None);
    let mut x_seen = false;
    let mut first = true;
    while let Some(key) = s.key(&mut first)? {
        match key.as_bytes() {
            b"s" => once(&mut symbol, s.string()?)?,
            b"b" => once(&mut bid, s.string()?)?,
            b"B" => once(&mut bid_qty, s.string()?)?,
            b"a" => once(&mut ask, s.string()?)?,
            b"A" => once(&mut ask_qty, s.string()?)?,
            b"T" => once(&mut t, s.u64()?)?,
            b"E" => once(&mut e, s.u64()?)?,
            b"X" => market(s, &mut x_seen)?,
            _ => s.skip_value()?,
        }
    }
    let exchange_ts_ns = match t.or(e) {
        Some(ms) => Some(ms_to_ns(ms)?),
        None => None,
    };
    let quote = Quote {
        bid_price: fixed(bid?)?,
        bid_size: fixed(bid_qty?)?,
        ask_price: fixed(ask?)?,
        ask_size: fixed(ask_qty?)?,
        exchange_ts_ns,
    };
    Some(Fast::Event(symbol?, Event::Quote(quote)))
}

/// A `depthUpdate` object; its `b` and `a` levels replace the content of `bids` and `asks`.
fn depth<'a>(
    s: &mut Scanner<'a>,
    bids: &mut Vec<Level>,
    asks: &mut Vec<Level>,
) -> Option<FastDepth<'a>> {
    s.eat(b'{')?;
    bids.clear();
    asks.clear();
    let mut head = FastDepth::default();
    let (mut bids_seen, mut asks_seen, mut x_seen) = (false, false, false);
    let mut first = true;
    while let Some(key) = s.key(&mut first)? {
        match key {
            "s" => once(&mut head.symbol, s.string()?)?,
            "U" => once(&mut head.first_update_id, s.u64()?)?,
            "u" => once(&mut head.final_update_id, s.u64()?)?,
            "E" => once(&mut head.event_time_ms, s.u64()?)?,
            "b" | "bids" if !std::mem::replace(&mut bids_seen, true) => levels(s, bids)?,
            "a" | "asks" if !std::mem::replace(&mut asks_seen, true) => levels(s, asks)?,
            "X" => market(s, &mut x_seen)?,
            // A second level array, a snapshot id, or the futures chain id (`pu`).
            "b" | "bids" | "a" | "asks" | "lastUpdateId" | "pu" => return None,
            _ => s.skip_value()?,
        }
    }
    if let Some(ms) = head.event_time_ms {
        ms_to_ns(ms)?;
    }
    Some(head)
}

/// `[["price","qty"],…]` appended to `out`.
fn levels(s: &mut Scanner<'_>, out: &mut Vec<Level>) -> Option<()> {
    s.eat(b'[')?;
    let mut first = true;
    while s.element(&mut first)? {
        s.eat(b'[')?;
        let price = fixed(s.string()?)?;
        s.eat(b',')?;
        let size = fixed(s.string()?)?;
        s.eat(b']')?;
        out.push(Level { price, size });
    }
    Some(())
}

#[cfg(test)]
mod tests {
    //! The differential test: the fast path and the general path give identical events and
    //! identical results (the same error text) on every line of the bundled Binance captures, in
    //! order and with the depth books running, and on proptest-mutated variants of real lines.

    use std::path::Path;

    use proptest::prelude::*;
    use serde_json::Value;

    use crate::feed::venue::binance::BinanceParser;
    use crate::feed::venue::{Parsed, Subscription, VenueParser};

    type Outcome = (Result<Parsed, String>, Vec<String>);

    fn outcome(p: &mut BinanceParser, raw: &str) -> Outcome {
        let mut evs = Vec::new();
        let r = p.parse(raw, 1, &mut |sym, ev| evs.push(format!("{sym:?} {ev:?}")));
        (r.map_err(|e| e.to_string()), evs)
    }

    /// Both paths on `raw`, from fresh parsers; the fast-path parser's fallback count.
    fn differ(raw: &str) -> (Outcome, Outcome, u64) {
        let mut fast = BinanceParser::default();
        let mut general = BinanceParser::general_only();
        let f = outcome(&mut fast, raw);
        let g = outcome(&mut general, raw);
        (f, g, fast.fast_path_fallbacks())
    }

    fn lines(path: &Path) -> Vec<String> {
        crate::persist::recording::read_all(path)
            .unwrap()
            .into_iter()
            .map(|r| r.raw)
            .collect()
    }

    fn repo(rel: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
    }

    /// Runs a whole capture through a fast and a general parser side by side, both subscribed to
    /// the depth stream (books synced, the capture's REST snapshot answered when asked for) or
    /// not (as `mdrelay decode` runs); returns (lines, fallbacks).
    fn capture_agrees(path: &Path, with_books: bool) -> (usize, u64) {
        let mut fast = BinanceParser::default();
        let mut general = BinanceParser::general_only();
        if with_books {
            let sub = Subscription {
                symbols: vec!["ETHUSDT".into()],
                channels: vec!["trade".into(), "bookTicker".into(), "depth@100ms".into()],
                book_depth: 0,
            };
            assert_eq!(
                fast.subscribe_requests(&sub),
                general.subscribe_requests(&sub)
            );
        }
        let all = lines(path);
        let mut asked = Vec::new();
        for (no, raw) in all.iter().enumerate() {
            if with_books && raw.starts_with("{\"lastUpdateId\"") {
                let mut sf = Vec::new();
                let mut sg = Vec::new();
                let mut ef = Vec::new();
                let mut eg = Vec::new();
                fast.drain_snapshot_requests(&mut sf);
                general.drain_snapshot_requests(&mut sg);
                assert_eq!(sf, sg, "line {}", no + 1);
                for sym in &sf {
                    let rf = fast
                        .on_rest_snapshot(sym, raw, &mut |s, e| ef.push(format!("{s:?} {e:?}")));
                    let rg = general
                        .on_rest_snapshot(sym, raw, &mut |s, e| eg.push(format!("{s:?} {e:?}")));
                    assert_eq!(rf.map_err(|e| e.to_string()), rg.map_err(|e| e.to_string()));
                }
                assert_eq!(ef, eg, "line {}", no + 1);
                asked.extend(sf);
            }
            let f = outcome(&mut fast, raw);
            let g = outcome(&mut general, raw);
            assert_eq!(f, g, "line {}: {raw}", no + 1);
        }
        if with_books {
            assert!(!asked.is_empty(), "the book asked for its snapshot");
        }
        assert_eq!(general.fast_path_fallbacks(), 0);
        (all.len(), fast.fast_path_fallbacks())
    }

    #[test]
    fn spot_capture_fast_and_general_paths_agree_on_every_line() {
        let path = crate::base::testutil::fixture("binance/spot_ethusdt_20240808.txt.gz");
        for with_books in [false, true] {
            let (n, fallbacks) = capture_agrees(&path, with_books);
            assert_eq!(n, 33_618);
            // Only the REST snapshot line is left to the general path.
            assert_eq!(fallbacks, 1, "with_books {with_books}");
        }
    }

    #[test]
    fn usdm_capture_fast_and_general_paths_agree_on_every_line() {
        let path = repo("tests/fixtures/binance_usdm/ethusdt_20240808_head1500.txt.gz");
        let all = lines(&path);
        // Futures depth diffs (`pu`) and the REST snapshot go to the general path.
        let general_kinds = all
            .iter()
            .filter(|l| l.contains("\"pu\":") || l.starts_with("{\"lastUpdateId\""))
            .count() as u64;
        let (n, fallbacks) = capture_agrees(&path, false);
        assert_eq!(n, 1500);
        assert_eq!(fallbacks, general_kinds);
        assert!(fallbacks < 200, "{fallbacks}");
    }

    #[test]
    fn samples_and_edge_cases_agree() {
        let samples =
            std::fs::read_to_string(repo("tests/fixtures/samples/binance.jsonl")).unwrap();
        let edge = [
            // Escapes, unknown fields, whitespace, numbers not as strings, missing fields.
            r#"{"stream":"x@trade","data":{"s":"X\u0059","t":1,"p":"1","q":"1","T":1,"m":true}}"#,
            r#" { "stream" : "x@trade" , "data" : { "z" : [ 1 , { "y" : null } ] , "s" : "X" , "t" : 1 , "p" : "1.5" , "q" : "2" , "T" : 3 , "m" : false } } "#,
            r#"{"stream":"x@trade","data":{"s":"X","t":1,"p":1.5,"q":"1","T":1,"m":true}}"#,
            r#"{"stream":"x@trade","data":{"s":"X","t":"1","p":"1","q":"1","T":1,"m":true}}"#,
            r#"{"stream":"x@trade","data":{"s":"X","p":"1","q":"1","T":1,"m":true}}"#,
            r#"{"stream":"x@trade","data":{"s":"X","t":1,"t":2,"p":"1","q":"1","T":1,"m":true}}"#,
            r#"{"stream":"x@trade","data":{"s":"X","t":1,"p":"1","q":"1","T":1,"m":true,"X":"ADL"}}"#,
            r#"{"stream":"x@trade","data":{"s":"X","t":1,"p":"1","q":"1","T":1,"m":true,"X":"MARKET"}}"#,
            r#"{"stream":"x@trade","data":{"s":"X","t":1,"p":"1","q":"1","T":18446744073709551615,"m":true}}"#,
            r#"{"stream":"x@trade","data":{"s":"X","t":1,"p":"1e999","q":"1","T":1,"m":true}}"#,
            r#"{"stream":"x@trade","data":{"s":"X","t":1,"p":"1","q":"1","T":1,"m":true}} x"#,
            r#"{"stream":"x@trade","data":{"s":"X","t":1,"p":"1","q":"1","T":1,"m":tru}}"#,
            r#"{"stream":"x@trade","data":{"s":"X","t":01,"p":"1","q":"1","T":1,"m":true}}"#,
            r#"{"stream":"x@aggTrade","data":{"s":"X","a":7,"t":9,"p":"1","q":"1","T":1,"m":true}}"#,
            r#"{"stream":"x@bookTicker","data":{"s":"X","b":"1","B":"2","a":"3","A":"4","T":null}}"#,
            r#"{"stream":"x@bookTicker","data":{"s":"X","b":"1","B":"2","a":"3","A":"4","E":5}}"#,
            r#"{"data":{"s":"X","b":"1","B":"2","a":"3","A":"4"},"stream":"x@bookTicker"}"#,
            r#"{"stream":"x@depth","data":{"s":"X","U":1,"u":2,"b":[["1","2"]],"bids":[],"a":[]}}"#,
            r#"{"stream":"x@depth","data":{"s":"X","U":1,"b":[["1","2","3"]],"a":[]}}"#,
            r#"{"stream":"x@depth","data":{"U":1,"u":2,"b":[],"a":[["5","0"]]}}"#,
            r#"{"stream":"x@depth","data":{"s":"X","U":1,"u":2,"b":[["1",2]],"a":[]}}"#,
            r#"{"stream":"x@trade","stream":"x@trade","data":{"s":"X","t":1,"p":"1","q":"1","T":1,"m":true}}"#,
            r#"{"stream":"x@trade","data":[]}"#,
            r#"{"stream":"x@trade","data":"\u0000"}"#,
            r#"{"result":null,"id":1}"#,
            "{\"stream\":\"x@trade\",\"data\":{\"s\":\"X\tY\",\"t\":1,\"p\":\"1\",\"q\":\"1\",\"T\":1,\"m\":true}}",
            "",
            "[]",
        ];
        let mut fast_taken = 0;
        for raw in samples.lines().chain(edge) {
            let (f, g, fallbacks) = differ(raw);
            assert_eq!(f, g, "{raw}");
            fast_taken += u64::from(fallbacks == 0);
        }
        assert!(fast_taken >= 12, "the fast path took {fast_taken}");
        // A second `X` value, a non-MARKET one, an escape: all left to the general path.
        for raw in [edge[0], edge[6], edge[16], edge[17]] {
            assert_eq!(differ(raw).2, 1, "{raw}");
        }
        assert_eq!(
            differ(edge[1]).2,
            0,
            "whitespace and unknown fields stay on the fast path"
        );
        assert_eq!(differ(edge[7]).2, 0, "X: MARKET stays on the fast path");
    }

    #[test]
    fn the_exact_tier_takes_every_trade_and_quote_of_both_captures() {
        let spot = crate::base::testutil::fixture("binance/spot_ethusdt_20240808.txt.gz");
        let usdm = repo("tests/fixtures/binance_usdm/ethusdt_20240808_head1500.txt.gz");
        for path in [spot, usdm] {
            let mut taken = 0;
            for raw in lines(&path) {
                let hot = raw.contains("@trade\"") || raw.contains("@bookTicker\"");
                let exact = super::exact(&raw).map(|f| format!("{f:?}"));
                assert_eq!(exact.is_some(), hot, "{raw}");
                if let Some(e) = exact {
                    // The any-order scan, skipping the exact tier, reads the same event.
                    let mut s = super::Scanner::new(&raw);
                    s.eat(b'{').unwrap();
                    let mut first = true;
                    let mut kind = None;
                    let mut event = None;
                    while let Some(key) = s.key(&mut first).unwrap() {
                        match key {
                            "stream" => kind = super::kind_of(s.string().unwrap()),
                            _ => {
                                event = match kind.unwrap() {
                                    super::Kind::Trade => super::trade(&mut s, b't'),
                                    _ => super::quote(&mut s),
                                }
                            }
                        }
                    }
                    assert_eq!(Some(e), event.map(|f| format!("{f:?}")), "{raw}");
                    taken += 1;
                }
            }
            assert!(taken > 1000, "{}: {taken}", path.display());
        }
    }

    /// Real hot lines of both captures, for byte-level edits (read once per test binary).
    fn hot_lines() -> &'static [String] {
        static LINES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        LINES.get_or_init(|| {
            let spot = crate::base::testutil::fixture("binance/spot_ethusdt_20240808.txt.gz");
            let usdm = repo("tests/fixtures/binance_usdm/ethusdt_20240808_head1500.txt.gz");
            [spot, usdm]
                .iter()
                .flat_map(|p| {
                    lines(p)
                        .into_iter()
                        .filter(|l| l.contains("@trade\"") || l.contains("@bookTicker\""))
                        .take(64)
                })
                .collect()
        })
    }

    /// Writes `v` as JSON, mutated as `choices` say (each byte one decision; neutral once spent):
    /// keys rotated, reversed, dropped, duplicated or escaped; whitespace anywhere; strings with
    /// a `\u` escape, numeric strings unquoted; numbers quoted; extra fields.
    struct Mutator<'c> {
        choices: &'c [u8],
        at: usize,
    }

    impl Mutator<'_> {
        fn pick(&mut self, n: u8) -> u8 {
            let c = self.choices.get(self.at).copied().unwrap_or(7);
            self.at += 1;
            c % n
        }

        fn ws(&mut self, out: &mut String) {
            match self.pick(8) {
                0 => out.push(' '),
                1 => out.push_str("\n\t "),
                2 => out.push_str("\r\n"),
                _ => {}
            }
        }

        fn string(&mut self, s: &str, out: &mut String) {
            match (self.pick(16), s.chars().next()) {
                (0, Some(c)) if c.is_ascii() => {
                    out.push_str(&format!("\"\\u{:04x}", c as u32));
                    out.push_str(&serde_json::to_string(&s[1..]).unwrap()[1..]);
                }
                (1, _) if serde_json::from_str::<serde_json::Number>(s).is_ok() => out.push_str(s),
                _ => out.push_str(&serde_json::to_string(s).unwrap()),
            }
        }

        fn write(&mut self, v: &Value, out: &mut String) {
            self.ws(out);
            match v {
                Value::Object(map) => {
                    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                    if !entries.is_empty() {
                        let by = usize::from(self.pick(255)) % entries.len();
                        entries.rotate_left(by);
                    }
                    if self.pick(4) == 0 {
                        entries.reverse();
                    }
                    out.push('{');
                    let mut first = true;
                    let mut entry = |m: &mut Self, k: &str, v: &Value, out: &mut String| {
                        if !std::mem::replace(&mut first, false) {
                            out.push(',');
                        }
                        m.ws(out);
                        if m.pick(32) == 0 {
                            m.string(k, out);
                        } else {
                            out.push_str(&serde_json::to_string(k).unwrap());
                        }
                        m.ws(out);
                        out.push(':');
                        m.write(v, out);
                    };
                    for (k, v) in entries {
                        match self.pick(24) {
                            0 => {}
                            1 => {
                                entry(self, k, v, out);
                                entry(self, k, v, out);
                            }
                            _ => entry(self, k, v, out),
                        }
                    }
                    if self.pick(8) == 0 {
                        let extra: Value =
                            serde_json::from_str(r#"[1,-2.5e3,{"k":null,"l":[]},"é",true]"#)
                                .unwrap();
                        entry(self, "zz", &extra, out);
                    }
                    out.push('}');
                }
                Value::Array(items) => {
                    out.push('[');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        self.write(item, out);
                    }
                    out.push(']');
                }
                Value::String(s) => self.string(s, out),
                Value::Number(n) if self.pick(16) == 0 => out.push_str(&format!("\"{n}\"")),
                other => out.push_str(&other.to_string()),
            }
            self.ws(out);
        }
    }

    /// Real lines of every hot kind, spot and futures.
    fn seeds() -> Vec<Value> {
        let samples =
            std::fs::read_to_string(repo("tests/fixtures/samples/binance.jsonl")).unwrap();
        samples
            .lines()
            .filter(|l| l.starts_with("{\"stream\""))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn mutated_lines_fast_and_general_paths_agree(
            seed in 0usize..64,
            choices in proptest::collection::vec(any::<u8>(), 0..96),
            cut in proptest::option::weighted(0.2, any::<usize>()),
        ) {
            let seeds = seeds();
            let v = &seeds[seed % seeds.len()];
            let mut text = String::new();
            Mutator { choices: &choices, at: 0 }.write(v, &mut text);
            if let Some(cut) = cut {
                let mut at = cut % (text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                text.truncate(at);
            }
            let (f, g, _) = differ(&text);
            prop_assert_eq!(f, g, "{}", text);
        }

        /// Byte edits of real lines in the exact layout (a byte replaced, inserted or removed,
        /// up to three times): whatever the exact tier still accepts, it reads as the general
        /// path does.
        #[test]
        fn edited_exact_lines_fast_and_general_paths_agree(
            seed in 0usize..128,
            edits in proptest::collection::vec((any::<usize>(), 0u8..3, proptest::sample::select(b"\"\\ .-+eE019:,{}[]tnX\x00\xc3".to_vec())), 1..4),
        ) {
            let lines = hot_lines();
            let mut bytes = lines[seed % lines.len()].clone().into_bytes();
            for (at, op, b) in edits {
                let at = at % (bytes.len() + 1);
                match op {
                    0 if at < bytes.len() => bytes[at] = b,
                    1 => bytes.insert(at, b),
                    _ if at < bytes.len() => { bytes.remove(at); }
                    _ => {}
                }
            }
            let Ok(text) = String::from_utf8(bytes) else { return Ok(()) };
            let (f, g, _) = differ(&text);
            prop_assert_eq!(f, g, "{}", text);
        }
    }
}
