//! The CSV schema and the formatting of one row: the header of each kind of file, the columns
//! of trades, quotes and bars, and [`bars_csv`] (the same bar rows, served by the HTTP API).
//! Rows are formatted one at a time into a [`RowSink`] and moved out after each, so a row is
//! never split between two buffers.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io;

use crate::base::timefmt::format_rfc3339_ns;
use crate::market::bars::{Bar, Decimal128, IntervalLabel};
use crate::market::fixed::Decimal;

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

impl FileKind {
    /// The header row of this kind of file.
    pub(super) fn header(self) -> &'static [&'static str] {
        match self {
            FileKind::Trades => &TRADE_HEADER,
            FileKind::Quotes => &QUOTE_HEADER,
            FileKind::Bars(_) => &BAR_HEADER,
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
/// `flexible` because one formatter writes rows of every kind (10 and 16 fields).
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
            ts_fields(w, tmp, Some(*recv_ts_ns))?;
            ts_fields(w, tmp, trade.exchange_ts_ns)?;
            w.write_field(&*name.venue)?;
            w.write_field(&*name.symbol)?;
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
            ts_fields(w, tmp, Some(*recv_ts_ns))?;
            ts_fields(w, tmp, quote.exchange_ts_ns)?;
            w.write_field(&*name.venue)?;
            w.write_field(&*name.symbol)?;
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
}
