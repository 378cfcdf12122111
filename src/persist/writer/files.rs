//! The `writer` thread's files: which file a record goes to ([`FileKey`]: instrument, kind of
//! row, UTC day), opening it for appending with a torn last line cut off first
//! ([`repair_torn_tail`]), and a write that reports how far it got before failing.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::market::bars::{IntervalLabel, DAY_NS};
use crate::market::instrument::InstrumentId;
use crate::persist::paths::open_creating_dirs;

use super::WriterRecord;

/// Which CSV of an instrument's day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum FileKind {
    Trades,
    Quotes,
    /// Bars of this interval, ns.
    Bars(u64),
    Marks,
    Liquidations,
    OpenInterest,
}

impl FileKind {
    /// `trades.csv`, `quotes.csv`, `bars_<interval>.csv`, `mark.csv`, `liquidations.csv` or
    /// `open_interest.csv`.
    pub(super) fn file_name(self) -> String {
        match self {
            FileKind::Trades => "trades.csv".to_owned(),
            FileKind::Quotes => "quotes.csv".to_owned(),
            FileKind::Bars(ns) => format!("bars_{}.csv", IntervalLabel(ns)),
            FileKind::Marks => "mark.csv".to_owned(),
            FileKind::Liquidations => "liquidations.csv".to_owned(),
            FileKind::OpenInterest => "open_interest.csv".to_owned(),
        }
    }
}

/// One CSV file: an instrument's kind of row on one UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct FileKey {
    pub(super) id: InstrumentId,
    pub(super) kind: FileKind,
    /// UTC day, days since 1970-01-01.
    pub(super) day: u64,
}

impl WriterRecord {
    /// The file `self` goes to: the receive time's day, except the bar start's for bars.
    pub(super) fn key(&self) -> FileKey {
        let (id, kind, ts) = match *self {
            WriterRecord::Trade {
                instrument_id,
                recv_ts_ns,
                ..
            } => (instrument_id, FileKind::Trades, recv_ts_ns),
            WriterRecord::Quote {
                instrument_id,
                recv_ts_ns,
                ..
            } => (instrument_id, FileKind::Quotes, recv_ts_ns),
            WriterRecord::Bar { instrument_id, bar } => {
                (instrument_id, FileKind::Bars(bar.interval_ns), bar.start_ns)
            }
            WriterRecord::Mark {
                instrument_id,
                recv_ts_ns,
                ..
            } => (instrument_id, FileKind::Marks, recv_ts_ns),
            WriterRecord::Liquidation {
                instrument_id,
                recv_ts_ns,
                ..
            } => (instrument_id, FileKind::Liquidations, recv_ts_ns),
            WriterRecord::OpenInterest {
                instrument_id,
                recv_ts_ns,
                ..
            } => (instrument_id, FileKind::OpenInterest, recv_ts_ns),
        };
        FileKey {
            id,
            kind,
            day: ts / DAY_NS,
        }
    }
}

/// Cuts a torn last line (bytes after the last `\n`; a whole file without one) off `file`,
/// returning how many bytes were removed. Reads backwards in 8 KiB chunks, so a healthy file
/// costs one small read.
pub fn repair_torn_tail(file: &File) -> io::Result<u64> {
    const CHUNK: u64 = 8192;
    let len = file.metadata()?.len();
    let mut buf = [0u8; CHUNK as usize];
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep < len {
                file.set_len(keep)?;
            }
            return Ok(len - keep);
        }
        end = start;
    }
    if len > 0 {
        file.set_len(0)?;
    }
    Ok(len)
}

/// Creates `path`'s directory, opens `path` for reading and appending, repairs its tail.
/// Returns the file, the bytes cut off and the length after the repair.
pub(super) fn open_for_append(path: &Path) -> io::Result<(File, u64, u64)> {
    let file = open_creating_dirs(
        path,
        OpenOptions::new().read(true).append(true).create(true),
    )?;
    let torn = repair_torn_tail(&file)?;
    let len = file.metadata()?.len();
    Ok((file, torn, len))
}

/// `write_all` that reports how many bytes went out before an error.
pub(super) fn write_counted(file: &mut File, buf: &[u8]) -> (usize, io::Result<()>) {
    let mut off = 0;
    while off < buf.len() {
        match file.write(&buf[off..]) {
            Ok(0) => return (off, Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => off += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (off, Err(e)),
        }
    }
    (off, Ok(()))
}

#[cfg(test)]
mod tests {
    use std::fs::{self, OpenOptions};
    use std::io::Write as _;
    use std::sync::Arc;

    use super::super::rows::TRADE_HEADER;
    use super::super::testkit::*;
    use super::super::WriterHandle;
    use super::*;
    use crate::market::fixed::SCALE;

    #[test]
    fn torn_last_line_is_cut_before_appending() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("binance/ETHUSDT/2024-08-09/trades.csv");
        let mut w = WriterHandle::spawn(cfg(tmp.path())).unwrap();
        let id = register(&w, "binance", "ETHUSDT");
        w.try_send(trade(id, MIDNIGHT + 1, SCALE, SCALE)).unwrap();
        w.try_send(trade(id, MIDNIGHT + 2, SCALE, SCALE)).unwrap();
        w.close().unwrap();
        // A crash mid-row.
        let torn = b"1723161600000000003,2024-08-09T00:0";
        fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .unwrap()
            .write_all(torn)
            .unwrap();

        let mut w = WriterHandle::spawn(cfg(tmp.path())).unwrap();
        register(&w, "binance", "ETHUSDT");
        w.try_send(trade(id, MIDNIGHT + 4, 2 * SCALE, SCALE))
            .unwrap();
        let stats = Arc::clone(w.stats());
        w.close().unwrap();
        assert_eq!(stats.writer.torn_repaired.get(), 1);
        assert_eq!(stats.writer.torn_bytes_removed.get(), torn.len() as u64);
        let (h, rows) = load(&file);
        assert_eq!(h, TRADE_HEADER);
        let recv: Vec<u64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
        assert_eq!(recv, vec![MIDNIGHT + 1, MIDNIGHT + 2, MIDNIGHT + 4]);
        assert!(rows.iter().all(|r| r.len() == TRADE_HEADER.len()));
    }

    #[test]
    fn repair_torn_tail_cases() {
        let long_tail = format!("x\n{}", "y".repeat(20_000));
        let long_ok = format!("{}\n", "z".repeat(20_000));
        // (content, content after repair)
        let cases: &[(&str, &str)] = &[
            ("", ""),
            ("a\n", "a\n"),
            ("a\nb", "a\n"),
            ("abc", ""),
            ("h\nr1\nr2\n", "h\nr1\nr2\n"),
            ("h\nr1\nr", "h\nr1\n"),
            (&long_tail, "x\n"),
            (&long_ok, &long_ok),
        ];
        let tmp = tempfile::tempdir().unwrap();
        for (i, (content, want)) in cases.iter().enumerate() {
            let p = tmp.path().join(format!("{i}.csv"));
            fs::write(&p, content).unwrap();
            let f = OpenOptions::new().read(true).append(true).open(&p).unwrap();
            let removed = repair_torn_tail(&f).unwrap();
            assert_eq!(removed as usize, content.len() - want.len(), "case {i}");
            assert_eq!(&fs::read_to_string(&p).unwrap(), want, "case {i}");
        }
    }
}
