//! Normalized mdrelay events → hftbacktest's event rows, and the `.npz` its
//! `BacktestAsset().data([path])` loads.
//!
//! Row layout (hftbacktest's `event_dtype`, 64 bytes): `ev u8, exch_ts i8, local_ts i8, px f8,
//! qty f8, order_id u8, ival i8, fval f8` ([`Row`], [`DTYPE_FIELDS`]). `ev` is an event kind
//! ([`DEPTH_EVENT`] 1, [`TRADE_EVENT`] 2, [`DEPTH_CLEAR_EVENT`] 3, [`DEPTH_SNAPSHOT_EVENT`] 4)
//! or'ed with a side ([`BUY_EVENT`] / [`SELL_EVENT`]: bid / ask for depth, aggressor for a
//! trade) and, once ordered ([`super::order`]), the timeline flags [`EXCH_EVENT`] /
//! [`LOCAL_EVENT`].
//!
//! Conversion ([`Converter::push`]), per event of one instrument:
//! - book snapshot → one [`DEPTH_CLEAR_EVENT`] row with no side (hftbacktest clears both sides
//!   entirely: an mdrelay snapshot replaces the whole book, deeper levels included), then one
//!   [`DEPTH_SNAPSHOT_EVENT`] row per level (bids [`BUY_EVENT`], asks [`SELL_EVENT`]);
//! - book diff → one [`DEPTH_EVENT`] row per level, qty 0 deleting the price; a diff the parser
//!   flagged `may_be_bad` (a gap or checksum failure not yet repaired by a snapshot) is written
//!   like any other, as the relay forwards it, and counted;
//! - trade → one [`TRADE_EVENT`] row, [`BUY_EVENT`] / [`SELL_EVENT`] by aggressor side (no side
//!   flag when the venue does not say, counted);
//! - quote (best bid/offer) → nothing: hftbacktest's depth is built from the book rows, and
//!   BBO rows in the same array would overwrite it with a second, differently timed source;
//!   counted as skipped. Mark, liquidation and open-interest events → nothing, counted.
//! - status → nothing written; gaps, resyncs, checksum mismatches and crossed books are counted
//!   for the report.
//!
//! Times: `local_ts` is the recording's receive time; `exch_ts` is the venue's timestamp of the
//! event, or the receive time when the venue gives none. Both ns, unadjusted: a feed latency
//! that comes out negative (clock skew) is left as recorded, so hftbacktest's
//! `correct_local_timestamp` can still be applied (it shifts every `local_ts` equally, which
//! keeps the order valid).
//!
//! Numbers: prices and sizes are exact fixed-point (10⁻⁸, [`crate::market::fixed`]); each is
//! converted as `value as f64 / 1e8`, which for magnitudes below 2⁵³ units (≈ 9.0e7, every real
//! price and size) is the correctly rounded double of the decimal, i.e. the same `f64` Python's
//! `float("2681.62")` gives. Above that, the conversion rounds twice and can be one ulp off.
//! [`Counts::price_step`] / [`Counts::size_step`] give the largest power of ten dividing every
//! price / size written, a valid `tick_size` / `lot_size` for hftbacktest.
//!
//! Pure conversion and file writing, on the calling thread.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use npyz::WriterBuilder;

use crate::market::event::{present, BookUpdate, Event, Level, Side, StatusCode, Trade};
use crate::market::fixed::{DECIMALS, SCALE};

/// hftbacktest: the row is for the exchange processor, at `exch_ts`.
pub const EXCH_EVENT: u64 = 1 << 31;
/// hftbacktest: the row is for the local processor, at `local_ts`.
pub const LOCAL_EVENT: u64 = 1 << 30;
/// hftbacktest: bid side (depth) or buyer-initiated (trade).
pub const BUY_EVENT: u64 = 1 << 29;
/// hftbacktest: ask side (depth) or seller-initiated (trade).
pub const SELL_EVENT: u64 = 1 << 28;
/// hftbacktest: a price level's quantity changed (0 = removed).
pub const DEPTH_EVENT: u64 = 1;
/// hftbacktest: a trade.
pub const TRADE_EVENT: u64 = 2;
/// hftbacktest: clear the depth (no side flag: both sides, all prices).
pub const DEPTH_CLEAR_EVENT: u64 = 3;
/// hftbacktest: a level of a depth snapshot.
pub const DEPTH_SNAPSHOT_EVENT: u64 = 4;

/// The array's name in the `.npz` (`data.npy`), the key hftbacktest's loader reads.
pub const NPZ_KEY: &str = "data";

/// The fields of [`Row`] as the `.npy` header's `descr` lists them: hftbacktest's `event_dtype`
/// (little-endian), in order.
pub const DTYPE_FIELDS: [(&str, &str); 8] = [
    ("ev", "<u8"),
    ("exch_ts", "<i8"),
    ("local_ts", "<i8"),
    ("px", "<f8"),
    ("qty", "<f8"),
    ("order_id", "<u8"),
    ("ival", "<i8"),
    ("fval", "<f8"),
];

/// One hftbacktest event row.
#[derive(
    Debug, Clone, Copy, PartialEq, npyz::Serialize, npyz::Deserialize, npyz::AutoSerialize,
)]
pub struct Row {
    /// Event kind | side | timeline flags.
    pub ev: u64,
    /// Exchange time, ns since epoch.
    pub exch_ts: i64,
    /// Local (receive) time, ns since epoch.
    pub local_ts: i64,
    /// Price.
    pub px: f64,
    /// Quantity.
    pub qty: f64,
    /// Order id (L3 feeds only): 0.
    pub order_id: u64,
    /// Spare integer: 0.
    pub ival: i64,
    /// Spare float: 0.
    pub fval: f64,
}

impl Row {
    fn new(ev: u64, exch_ts: i64, local_ts: i64, px: f64, qty: f64) -> Row {
        Row {
            ev,
            exch_ts,
            local_ts,
            px,
            qty,
            order_id: 0,
            ival: 0,
            fval: 0.0,
        }
    }
}

/// What one instrument's conversion wrote, skipped and saw reported.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Trade rows.
    pub trades: u64,
    /// Trades without an aggressor side (written with no side flag).
    pub trades_no_side: u64,
    /// Book snapshots (one clear row each).
    pub snapshots: u64,
    /// Snapshot level rows.
    pub snapshot_levels: u64,
    /// Book diffs.
    pub diffs: u64,
    /// Diff level rows.
    pub diff_levels: u64,
    /// Diffs flagged `may_be_bad` (written).
    pub may_be_bad: u64,
    /// Quotes skipped.
    pub quotes_skipped: u64,
    /// Mark, liquidation and open-interest events skipped.
    pub other_skipped: u64,
    /// Sequence gaps reported by the parser.
    pub gaps: u64,
    /// Book resyncs reported by the parser.
    pub resyncs: u64,
    /// Checksum mismatches reported by the parser.
    pub checksum_mismatches: u64,
    /// Crossed books reported by the parser.
    pub crossed: u64,
    /// Most decimals of any price written (0..=8).
    pub price_decimals: u32,
    /// Most decimals of any size written (0..=8).
    pub size_decimals: u32,
}

impl Counts {
    /// Rows before ordering: one per trade, snapshot, snapshot level and diff level.
    pub fn rows(&self) -> u64 {
        self.trades + self.snapshots + self.snapshot_levels + self.diff_levels
    }

    /// Gaps, resyncs, checksum mismatches and `may_be_bad` diffs: what `--strict` refuses.
    pub fn book_problems(&self) -> u64 {
        self.gaps + self.resyncs + self.checksum_mismatches + self.may_be_bad
    }

    /// The largest power of ten dividing every price written, as text (`0.01`).
    pub fn price_step(&self) -> String {
        step(self.price_decimals)
    }

    /// The largest power of ten dividing every size written, as text (`0.001`).
    pub fn size_step(&self) -> String {
        step(self.size_decimals)
    }
}

/// `10^-decimals` as decimal text.
fn step(decimals: u32) -> String {
    match decimals {
        0 => "1".to_owned(),
        d => format!("0.{}1", "0".repeat(d as usize - 1)),
    }
}

/// Decimal places a fixed-point value needs (0..=[`DECIMALS`]).
fn decimals(v: i64) -> u32 {
    let mut x = v.unsigned_abs();
    if x == 0 {
        return 0;
    }
    let mut d = DECIMALS;
    while d > 0 && x % 10 == 0 {
        x /= 10;
        d -= 1;
    }
    d
}

/// A fixed-point value as the nearest `f64` (see the module documentation for precision).
pub fn to_f64(v: i64) -> f64 {
    v as f64 / SCALE as f64
}

/// ns since epoch as hftbacktest's `i64` (saturating; no real time is near the limit).
fn ts(ns: u64) -> i64 {
    i64::try_from(ns).unwrap_or(i64::MAX)
}

/// The rows of one instrument, in arrival order, and their [`Counts`].
#[derive(Debug, Default)]
pub struct Converter {
    rows: Vec<Row>,
    counts: Counts,
}

impl Converter {
    /// An empty conversion.
    pub fn new() -> Converter {
        Converter::default()
    }

    /// Converts one event received at `local_ns` (see the module documentation).
    pub fn push(&mut self, ev: &Event<'_>, local_ns: u64) {
        let local = ts(local_ns);
        match ev {
            Event::Trade(t) => self.trade(t, local),
            Event::Book(b) => self.book(b, local),
            Event::Quote(_) => self.counts.quotes_skipped += 1,
            Event::Status(s) => match s.code {
                StatusCode::Gap => self.counts.gaps += 1,
                StatusCode::Resync => self.counts.resyncs += 1,
                StatusCode::ChecksumMismatch => self.counts.checksum_mismatches += 1,
                StatusCode::CrossedBook => self.counts.crossed += 1,
                _ => {}
            },
            Event::Mark(_) | Event::Liquidation(_) | Event::OpenInterest(_) => {
                self.counts.other_skipped += 1;
            }
        }
    }

    fn trade(&mut self, t: &Trade, local: i64) {
        let side = match t.side {
            Side::Buy => BUY_EVENT,
            Side::Sell => SELL_EVENT,
            Side::Unknown => {
                self.counts.trades_no_side += 1;
                0
            }
        };
        let exch = present(t.exchange_ts_ns).map_or(local, ts);
        self.note_decimals(t.price, t.size);
        self.rows.push(Row::new(
            TRADE_EVENT | side,
            exch,
            local,
            to_f64(t.price),
            to_f64(t.size),
        ));
        self.counts.trades += 1;
    }

    fn book(&mut self, b: &BookUpdate<'_>, local: i64) {
        let exch = present(b.exchange_ts_ns).map_or(local, ts);
        let kind = if b.snapshot {
            self.rows
                .push(Row::new(DEPTH_CLEAR_EVENT, exch, local, 0.0, 0.0));
            self.counts.snapshots += 1;
            self.counts.snapshot_levels += (b.bids.len() + b.asks.len()) as u64;
            DEPTH_SNAPSHOT_EVENT
        } else {
            self.counts.diffs += 1;
            self.counts.may_be_bad += u64::from(b.may_be_bad);
            self.counts.diff_levels += (b.bids.len() + b.asks.len()) as u64;
            DEPTH_EVENT
        };
        self.levels(kind | BUY_EVENT, b.bids, exch, local);
        self.levels(kind | SELL_EVENT, b.asks, exch, local);
    }

    fn levels(&mut self, ev: u64, levels: &[Level], exch: i64, local: i64) {
        for l in levels {
            self.note_decimals(l.price, l.size);
            self.rows
                .push(Row::new(ev, exch, local, to_f64(l.price), to_f64(l.size)));
        }
    }

    fn note_decimals(&mut self, price: i64, size: i64) {
        let c = &mut self.counts;
        c.price_decimals = c.price_decimals.max(decimals(price));
        c.size_decimals = c.size_decimals.max(decimals(size));
    }

    /// What was converted so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Rows written so far (arrival order, no timeline flags).
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// The rows in hftbacktest's order, flagged for their timelines ([`super::order`]).
    pub fn ordered(&self) -> Vec<Row> {
        super::order::two_timelines(&self.rows)
    }
}

/// Writes `rows` as `path`, an `.npz` holding one array [`NPZ_KEY`] of hftbacktest's
/// `event_dtype` (deflate-compressed, NumPy format 1.0, header padded to 64 bytes as
/// hftbacktest's loader requires). Written to `path` + `.tmp` and renamed, so a failure leaves
/// no partial `path`.
pub fn write_npz(path: &Path, rows: &[Row]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = Path::new(&tmp);
    let r = write_npz_to(tmp, rows).and_then(|()| std::fs::rename(tmp, path));
    if r.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    r
}

fn write_npz_to(path: &Path, rows: &[Row]) -> io::Result<()> {
    let mut zip = zip::ZipWriter::new(BufWriter::new(File::create(path)?));
    // 64-byte rows: past 4 GiB the entry needs ZIP64.
    let bytes = (rows.len() as u64).saturating_mul(64).saturating_add(256);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(bytes > u64::from(u32::MAX));
    zip.start_file(format!("{NPZ_KEY}.npy"), opts)?;
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&[rows.len() as u64])
        .writer(&mut zip)
        .begin_nd()?;
    w.extend(rows.iter().copied())?;
    w.finish()?;
    let mut f = zip.finish()?;
    f.flush()?;
    f.into_inner().map_err(|e| e.into_error())?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::event::{Quote, Status};

    fn lv(price: i64, size: i64) -> Level {
        Level { price, size }
    }

    #[test]
    fn snapshot_diff_trade_rows() {
        let mut c = Converter::new();
        let bids = [lv(100 * SCALE, SCALE), lv(99 * SCALE, 2 * SCALE)];
        let asks = [lv(101 * SCALE, 3 * SCALE)];
        c.push(
            &Event::Book(BookUpdate {
                snapshot: true,
                bids: &bids,
                asks: &asks,
                venue_sequence: None,
                exchange_ts_ns: Some(5),
                may_be_bad: false,
            }),
            10,
        );
        let diff = [lv(100 * SCALE, 0)];
        c.push(
            &Event::Book(BookUpdate {
                snapshot: false,
                bids: &diff,
                asks: &[],
                venue_sequence: None,
                exchange_ts_ns: None,
                may_be_bad: true,
            }),
            11,
        );
        c.push(
            &Event::Trade(Trade {
                price: 10_050_000_000,
                size: 1_500_000,
                side: Side::Sell,
                trade_id: None,
                exchange_ts_ns: Some(7),
            }),
            12,
        );
        c.push(&Event::Quote(Quote::EMPTY), 13);
        c.push(
            &Event::Status(Status {
                code: StatusCode::Gap,
                count: 3,
                detail: "",
            }),
            14,
        );
        let r = c.rows();
        let evs: Vec<u64> = r.iter().map(|r| r.ev).collect();
        assert_eq!(
            evs,
            [
                DEPTH_CLEAR_EVENT,
                DEPTH_SNAPSHOT_EVENT | BUY_EVENT,
                DEPTH_SNAPSHOT_EVENT | BUY_EVENT,
                DEPTH_SNAPSHOT_EVENT | SELL_EVENT,
                DEPTH_EVENT | BUY_EVENT,
                TRADE_EVENT | SELL_EVENT,
            ]
        );
        assert_eq!((r[0].exch_ts, r[0].local_ts), (5, 10));
        assert_eq!((r[1].px, r[1].qty), (100.0, 1.0));
        // No venue time: the receive time.
        assert_eq!((r[4].exch_ts, r[4].local_ts, r[4].qty), (11, 11, 0.0));
        assert_eq!((r[5].px, r[5].qty, r[5].exch_ts), (100.5, 0.015, 7));
        let k = c.counts();
        assert_eq!(k.rows(), 6);
        assert_eq!((k.snapshots, k.snapshot_levels, k.diff_levels), (1, 3, 1));
        assert_eq!((k.may_be_bad, k.gaps, k.quotes_skipped), (1, 1, 1));
        assert_eq!(k.book_problems(), 2);
        assert_eq!(
            (k.price_step(), k.size_step()),
            ("0.1".into(), "0.001".into())
        );
    }

    #[test]
    fn f64_conversion_matches_the_decimal() {
        for s in [
            "2681.62",
            "0.00000001",
            "64000.5",
            "0.015",
            "12345678.12345678",
        ] {
            let v = crate::market::fixed::parse(s).unwrap();
            assert_eq!(to_f64(v), s.parse::<f64>().unwrap(), "{s}");
        }
    }

    #[test]
    fn decimals_and_steps() {
        assert_eq!(decimals(0), 0);
        assert_eq!(decimals(SCALE), 0);
        assert_eq!(decimals(1), 8);
        assert_eq!(decimals(-25_000_000), 2);
        assert_eq!(step(0), "1");
        assert_eq!(step(2), "0.01");
        assert_eq!(step(8), "0.00000001");
    }

    #[test]
    fn npz_header_and_rows_read_back() {
        let dir = std::env::temp_dir().join(format!("mdrelay-npz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.npz");
        let rows = [
            Row::new(DEPTH_CLEAR_EVENT | EXCH_EVENT | LOCAL_EVENT, 1, 2, 0.0, 0.0),
            Row::new(TRADE_EVENT | BUY_EVENT | LOCAL_EVENT, 3, 4, 1.5, 0.25),
        ];
        write_npz(&path, &rows).unwrap();
        let mut z = zip::ZipArchive::new(File::open(&path).unwrap()).unwrap();
        let mut e = z.by_name("data.npy").unwrap();
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut e, &mut bytes).unwrap();
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let hlen = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
        assert_eq!((10 + hlen) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
        // The descr exactly as npyz and hftbacktest's own `write_npy` render it.
        let descr: String = DTYPE_FIELDS
            .iter()
            .map(|(n, t)| format!("('{n}', '{t}'), "))
            .collect();
        assert!(
            header.starts_with(&format!(
                "{{'descr': [{descr}], 'fortran_order': False, 'shape': (2, ), }}"
            )),
            "{header}"
        );
        let f = npyz::NpyFile::new(&bytes[..]).unwrap();
        assert_eq!(f.shape(), &[2]);
        assert_eq!(f.into_vec::<Row>().unwrap(), rows);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
