//! The CSV schema and the formatting of one row: the header of each kind of file, the columns
//! of trades, quotes, bars, marks, liquidations and open interest, and [`bars_csv`] (the same bar rows, served by the HTTP API).
//! Rows are formatted one at a time into a [`RowSink`] and moved out after each, so a row is
//! never split between two buffers.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io;

use crate::base::timefmt::format_rfc3339_ns;
use crate::market::bars::{Bar, Decimal128, IntervalLabel};
use crate::market::fixed::{Decimal, Rate};

use super::files::FileKind;
use super::names::Name;
use super::WriterRecord;

/// Columns of `trades.csv`.
pub(super) const TRADE_HEADER: [&str; 10] = [
    "recv_ts_ns",
    "recv_time",
    "exchange_ts_ns",
    "exchange_time",
    "venue",
    "symbol",
    "price",
    "size",
    "side",
    "trade_id",
];
/// Columns of `quotes.csv`.
pub(super) const QUOTE_HEADER: [&str; 10] = [
    "recv_ts_ns",
    "recv_time",
    "exchange_ts_ns",
    "exchange_time",
    "venue",
    "symbol",
    "bid_price",
    "bid_size",
    "ask_price",
    "ask_size",
];
/// Columns of `bars_<interval>.csv` and of [`bars_csv`].
pub(super) const BAR_HEADER: [&str; 16] = [
    "start_ts_ns",
    "start_time",
    "end_ts_ns",
    "end_time",
    "venue",
    "symbol",
    "interval",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
    "trade_count",
    "first_trade_ns",
    "last_trade_ns",
];

/// Columns of `mark.csv`; `funding_rate` has up to 18 decimals (exact).
pub(super) const MARK_HEADER: [&str; 12] = [
    "recv_ts_ns",
    "recv_time",
    "exchange_ts_ns",
    "exchange_time",
    "venue",
    "symbol",
    "mark_price",
    "index_price",
    "settle_price",
    "funding_rate",
    "next_funding_ts_ns",
    "next_funding_time",
];
/// Columns of `liquidations.csv`.
pub(super) const LIQUIDATION_HEADER: [&str; 12] = [
    "recv_ts_ns",
    "recv_time",
    "exchange_ts_ns",
    "exchange_time",
    "venue",
    "symbol",
    "side",
    "price",
    "avg_price",
    "size",
    "filled_size",
    "status",
];
/// Columns of `open_interest.csv`.
pub(super) const OPEN_INTEREST_HEADER: [&str; 8] = [
    "recv_ts_ns",
    "recv_time",
    "exchange_ts_ns",
    "exchange_time",
    "venue",
    "symbol",
    "open_interest",
    "value",
];

impl FileKind {
    /// The header row of this kind of file.
    pub(super) fn header(self) -> &'static [&'static str] {
        match self {
            FileKind::Trades => &TRADE_HEADER,
            FileKind::Quotes => &QUOTE_HEADER,
            FileKind::Bars(_) => &BAR_HEADER,
            FileKind::Marks => &MARK_HEADER,
            FileKind::Liquidations => &LIQUIDATION_HEADER,
            FileKind::OpenInterest => &OPEN_INTEREST_HEADER,
        }
    }
}

/// Where the csv writer puts a row. `csv::Writer` lends its inner writer only by shared
/// reference, so the bytes sit in a `RefCell` to be moved out after each row.
#[derive(Debug, Default)]
pub(super) struct RowSink(RefCell<Vec<u8>>);

impl io::Write for RowSink {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.get_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The row formatter: `\n`-terminated rows (the torn-line repair relies on it), and
/// `flexible` because one formatter writes rows of every kind (8 to 16 fields).
pub(super) fn new_csv() -> csv::Writer<RowSink> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .flexible(true)
        .from_writer(RowSink::default())
}

/// Moves the flushed row(s) out of `csv`'s sink onto `out`.
pub(super) fn take_row(csv: &csv::Writer<RowSink>, out: &mut Vec<u8>) {
    let mut row = csv.get_ref().0.borrow_mut();
    out.extend_from_slice(&row);
    row.clear();
}

/// Writes one field formatted from `args` through the reusable `tmp`.
fn field(
    w: &mut csv::Writer<RowSink>,
    tmp: &mut String,
    args: fmt::Arguments<'_>,
) -> csv::Result<()> {
    tmp.clear();
    let _ = tmp.write_fmt(args); // writing into a String cannot fail
    w.write_field(tmp.as_bytes())
}

/// The columns every market-data row starts with: receive time, exchange time (each as ns and
/// RFC 3339), venue, symbol.
fn head_fields(
    w: &mut csv::Writer<RowSink>,
    tmp: &mut String,
    recv_ts_ns: u64,
    exchange_ts_ns: Option<u64>,
    name: &Name,
) -> csv::Result<()> {
    ts_fields(w, tmp, Some(recv_ts_ns))?;
    ts_fields(w, tmp, exchange_ts_ns)?;
    w.write_field(&*name.venue)?;
    w.write_field(&*name.symbol)
}

/// ns and RFC 3339 time of an optional timestamp (empty fields for none).
fn ts_fields(w: &mut csv::Writer<RowSink>, tmp: &mut String, ts: Option<u64>) -> csv::Result<()> {
    match ts {
        Some(ns) => {
            field(w, tmp, format_args!("{ns}"))?;
            w.write_field(format_rfc3339_ns(ns))
        }
        None => {
            w.write_field("")?;
            w.write_field("")
        }
    }
}

/// `bars` of one instrument as a CSV document, header first: the same columns and formatting as
/// the writer's `bars_<interval>.csv` (served by `/v1/bars?format=csv`).
pub fn bars_csv(venue: &str, symbol: &str, bars: &[Bar]) -> Vec<u8> {
    let name = Name {
        venue: venue.into(),
        symbol: symbol.into(),
    };
    let mut csv = new_csv();
    let mut tmp = String::new();
    let mut out = Vec::with_capacity(64 + bars.len() * 160);
    // Formatting into memory fails only on a bug in the csv crate; such a row is left out.
    if csv
        .write_record(BAR_HEADER)
        .and_then(|()| csv.flush().map_err(Into::into))
        .is_ok()
    {
        take_row(&csv, &mut out);
    }
    for bar in bars {
        let rec = WriterRecord::Bar {
            instrument_id: 0,
            bar: *bar,
        };
        if format_row(&mut csv, &mut tmp, &name, &rec).is_ok() {
            take_row(&csv, &mut out);
        }
    }
    out
}

/// Formats `rec` as one CSV row into `w`'s sink (flushed).
pub(super) fn format_row(
    w: &mut csv::Writer<RowSink>,
    tmp: &mut String,
    name: &Name,
    rec: &WriterRecord,
) -> csv::Result<()> {
    match rec {
        WriterRecord::Trade {
            recv_ts_ns, trade, ..
        } => {
            head_fields(w, tmp, *recv_ts_ns, trade.exchange_ts_ns, name)?;
            field(w, tmp, format_args!("{}", Decimal(trade.price)))?;
            field(w, tmp, format_args!("{}", Decimal(trade.size)))?;
            w.write_field(trade.side.name())?;
            match trade.trade_id {
                Some(id) => field(w, tmp, format_args!("{id}"))?,
                None => w.write_field("")?,
            }
        }
        WriterRecord::Quote {
            recv_ts_ns, quote, ..
        } => {
            head_fields(w, tmp, *recv_ts_ns, quote.exchange_ts_ns, name)?;
            for v in [
                quote.bid_price,
                quote.bid_size,
                quote.ask_price,
                quote.ask_size,
            ] {
                field(w, tmp, format_args!("{}", Decimal(v)))?;
            }
        }
        WriterRecord::Bar { bar, .. } => {
            ts_fields(w, tmp, Some(bar.start_ns))?;
            ts_fields(w, tmp, Some(bar.end_ns))?;
            w.write_field(&*name.venue)?;
            w.write_field(&*name.symbol)?;
            field(w, tmp, format_args!("{}", IntervalLabel(bar.interval_ns)))?;
            for v in [bar.open, bar.high, bar.low, bar.close] {
                field(w, tmp, format_args!("{}", Decimal(v)))?;
            }
            field(w, tmp, format_args!("{}", Decimal128(bar.volume)))?;
            field(w, tmp, format_args!("{}", Decimal(bar.vwap())))?;
            field(w, tmp, format_args!("{}", bar.trade_count))?;
            field(w, tmp, format_args!("{}", bar.first_trade_ns))?;
            field(w, tmp, format_args!("{}", bar.last_trade_ns))?;
        }
        WriterRecord::Mark {
            recv_ts_ns, mark, ..
        } => {
            head_fields(w, tmp, *recv_ts_ns, mark.exchange_ts_ns, name)?;
            for v in [mark.mark_price, mark.index_price, mark.settle_price] {
                field(w, tmp, format_args!("{}", Decimal(v)))?;
            }
            field(w, tmp, format_args!("{}", Rate(mark.funding_rate)))?;
            ts_fields(w, tmp, mark.next_funding_ns)?;
        }
        WriterRecord::Liquidation {
            recv_ts_ns,
            liquidation: l,
            ..
        } => {
            head_fields(w, tmp, *recv_ts_ns, l.exchange_ts_ns, name)?;
            w.write_field(l.side.name())?;
            for v in [l.price, l.avg_price, l.size, l.filled_size] {
                field(w, tmp, format_args!("{}", Decimal(v)))?;
            }
            w.write_field(l.status.name())?;
        }
        WriterRecord::OpenInterest {
            recv_ts_ns,
            open_interest: o,
            ..
        } => {
            head_fields(w, tmp, *recv_ts_ns, o.exchange_ts_ns, name)?;
            field(w, tmp, format_args!("{}", Decimal(o.open_interest)))?;
            field(w, tmp, format_args!("{}", Decimal(o.value)))?;
        }
    }
    w.write_record(None::<&[u8]>)?;
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::testkit::*;
    use super::super::WriterHandle;
    use super::*;
    use crate::market::bars::DAY_NS;
    use crate::market::event::Trade;
    use crate::market::fixed::{self, SCALE};

    #[test]
    fn two_symbols_across_midnight_round_trip_exactly() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = WriterHandle::spawn(cfg(tmp.path())).unwrap();
        let eth = register(&w, "binance", "ETHUSDT");
        let xbt = register(&w, "kraken", "XBT/EUR");
        let times = [
            MIDNIGHT - 2 * SEC,
            MIDNIGHT - 1,
            MIDNIGHT,
            MIDNIGHT + 5 * SEC,
        ];
        let big_volume = i128::from(i64::MAX) * 3 + 7; // beyond i64: exact all the same
        let mut sent = Vec::new();
        for (i, &t) in times.iter().enumerate() {
            for id in [eth, xbt] {
                let px = 268_380_000_000 + i as i64 * 1_234 + i64::from(id % 7);
                sent.push(trade(id, t, px, 2_000_000 + i as i64));
                sent.push(quote(id, t, px - 1));
            }
        }
        for id in [eth, xbt] {
            sent.push(bar(id, MIDNIGHT - 60 * SEC, big_volume));
            sent.push(bar(id, MIDNIGHT, 150_000_000));
        }
        for r in &sent {
            w.try_send(*r).unwrap();
        }
        let stats = Arc::clone(w.stats());
        w.close().unwrap();
        assert_accounted(&stats);
        assert_eq!(stats.writer.rows_written.get(), sent.len() as u64);

        let root = tmp.path();
        for (venue, dir, id) in [("binance", "ETHUSDT", eth), ("kraken", "XBT-EUR", xbt)] {
            let symbol = if venue == "kraken" {
                "XBT/EUR"
            } else {
                "ETHUSDT"
            };
            for (day, from) in [("2024-08-08", MIDNIGHT - DAY_NS), ("2024-08-09", MIDNIGHT)] {
                let in_day = |ts: u64| ts >= from && ts < from + DAY_NS;
                let d = root.join(venue).join(dir).join(day);
                // trades.csv
                let (h, rows) = load(&d.join("trades.csv"));
                assert_eq!(h, TRADE_HEADER);
                let want: Vec<(u64, Trade)> = sent
                    .iter()
                    .filter_map(|r| match r {
                        WriterRecord::Trade {
                            instrument_id,
                            recv_ts_ns,
                            trade,
                        } if *instrument_id == id && in_day(*recv_ts_ns) => {
                            Some((*recv_ts_ns, *trade))
                        }
                        _ => None,
                    })
                    .collect();
                assert_eq!(rows.len(), want.len());
                assert_eq!(rows.len(), 2);
                for (row, (recv, t)) in rows.iter().zip(&want) {
                    assert_eq!(row[0].parse::<u64>().unwrap(), *recv);
                    assert_eq!(row[1], format_rfc3339_ns(*recv));
                    assert_eq!(row[2].parse::<u64>().unwrap(), t.exchange_ts_ns.unwrap());
                    assert_eq!(
                        crate::base::timefmt::parse_rfc3339_ns(&row[3]),
                        t.exchange_ts_ns
                    );
                    assert_eq!((row[4].as_str(), row[5].as_str()), (venue, symbol));
                    assert_eq!(fixed::parse(&row[6]), Ok(t.price));
                    assert_eq!(fixed::parse(&row[7]), Ok(t.size));
                    assert_eq!(row[8], "sell");
                    assert_eq!(row[9].parse::<u64>().ok(), t.trade_id);
                }
                // quotes.csv: absent ask and exchange time are empty fields
                let (h, rows) = load(&d.join("quotes.csv"));
                assert_eq!(h, QUOTE_HEADER);
                assert_eq!(rows.len(), 2);
                for row in &rows {
                    assert!(in_day(row[0].parse().unwrap()));
                    assert_eq!((row[2].as_str(), row[3].as_str()), ("", ""));
                    assert_eq!(fixed::parse(&row[7]), Ok(3 * SCALE));
                    assert_eq!((row[8].as_str(), row[9].as_str()), ("", ""));
                }
                // bars_1m.csv: the bar's start decides the day
                let (h, rows) = load(&d.join("bars_1m.csv"));
                assert_eq!(h, BAR_HEADER);
                assert_eq!(rows.len(), 1);
                let WriterRecord::Bar { bar: b, .. } = sent
                    .iter()
                    .find(|r| matches!(r, WriterRecord::Bar { instrument_id, bar } if *instrument_id == id && in_day(bar.start_ns)))
                    .unwrap()
                else {
                    unreachable!()
                };
                let row = &rows[0];
                assert_eq!(row[0].parse::<u64>().unwrap(), b.start_ns);
                assert_eq!(row[2].parse::<u64>().unwrap(), b.end_ns);
                assert_eq!(row[6], "1m");
                let ohlc: Vec<i64> = row[7..11]
                    .iter()
                    .map(|s| fixed::parse(s).unwrap())
                    .collect();
                assert_eq!(ohlc, vec![b.open, b.high, b.low, b.close]);
                assert_eq!(parse_fixed_i128(&row[11]), b.volume);
                assert_eq!(fixed::parse(&row[12]), Ok(b.vwap()));
                assert_eq!(row[13], "42");
            }
        }
    }

    #[test]
    fn derivatives_rows_go_to_their_own_files_with_exact_values() {
        use crate::market::event::{Liquidation, LiquidationStatus, Mark, OpenInterest, Side};
        use crate::market::fixed::ABSENT;
        let tmp = tempfile::tempdir().unwrap();
        let mut w = WriterHandle::spawn(cfg(tmp.path())).unwrap();
        let id = register(&w, "binance_usdm", "BTCUSDT");
        let mark = Mark {
            mark_price: 1_179_415_000_000,
            index_price: 1_178_462_659_091,
            settle_price: ABSENT,
            funding_rate: 59_739_317_855_300,
            next_funding_ns: Some(MIDNIGHT + 8 * 3600 * SEC),
            exchange_ts_ns: Some(MIDNIGHT + SEC),
        };
        let liquidation = Liquidation {
            side: Side::Sell,
            price: 991_000_000_000,
            avg_price: 991_012_345_678,
            size: 1_400_000,
            filled_size: 1_400_000,
            status: LiquidationStatus::Filled,
            exchange_ts_ns: None,
        };
        let open_interest = OpenInterest {
            open_interest: 1_065_974_900_000,
            value: ABSENT,
            exchange_ts_ns: Some(MIDNIGHT + 3 * SEC),
        };
        for rec in [
            WriterRecord::Mark {
                instrument_id: id,
                recv_ts_ns: MIDNIGHT + 2 * SEC,
                mark,
            },
            WriterRecord::Liquidation {
                instrument_id: id,
                recv_ts_ns: MIDNIGHT + 2 * SEC,
                liquidation,
            },
            WriterRecord::OpenInterest {
                instrument_id: id,
                recv_ts_ns: MIDNIGHT + 4 * SEC,
                open_interest,
            },
        ] {
            w.try_send(rec).unwrap();
        }
        let stats = Arc::clone(w.stats());
        w.close().unwrap();
        assert_accounted(&stats);
        assert_eq!(stats.writer.rows_written.get(), 3);
        let d = tmp.path().join("binance_usdm/BTCUSDT/2024-08-09");
        let text = |f: &str| std::fs::read_to_string(d.join(f)).unwrap();
        assert_eq!(
            text("mark.csv"),
            concat!(
                "recv_ts_ns,recv_time,exchange_ts_ns,exchange_time,venue,symbol,mark_price,",
                "index_price,settle_price,funding_rate,next_funding_ts_ns,next_funding_time\n",
                "1723161602000000000,2024-08-09T00:00:02.000000000Z,",
                "1723161601000000000,2024-08-09T00:00:01.000000000Z,binance_usdm,BTCUSDT,",
                "11794.15,11784.62659091,,0.0000597393178553,",
                "1723190400000000000,2024-08-09T08:00:00.000000000Z\n"
            )
        );
        assert_eq!(
            text("liquidations.csv"),
            concat!(
                "recv_ts_ns,recv_time,exchange_ts_ns,exchange_time,venue,symbol,side,price,",
                "avg_price,size,filled_size,status\n",
                "1723161602000000000,2024-08-09T00:00:02.000000000Z,,,binance_usdm,BTCUSDT,",
                "sell,9910,9910.12345678,0.014,0.014,filled\n"
            )
        );
        assert_eq!(
            text("open_interest.csv"),
            concat!(
                "recv_ts_ns,recv_time,exchange_ts_ns,exchange_time,venue,symbol,",
                "open_interest,value\n",
                "1723161604000000000,2024-08-09T00:00:04.000000000Z,",
                "1723161603000000000,2024-08-09T00:00:03.000000000Z,binance_usdm,BTCUSDT,",
                "10659.749,\n"
            )
        );
    }
}
