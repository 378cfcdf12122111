//! What the consumer hands to the CSV writer, and how it tells subscribers what was not
//! persisted.
//!
//! Runs on the consumer thread, inside [`Analytics`](super::analytics::Analytics). Never
//! blocks: a record goes to the writer's bounded queue with `try_send`, and a refusal is counted
//! by the writer handle. Losses (writer queue full, disk errors in the writer, raw recorder queue
//! full) are summed from the counters and reported at most once per [`NOT_PERSISTED_REPORT`].

use std::sync::Arc;
use std::time::Duration;

use crate::consumer::config::Persist;
use crate::market::bars::Bar;
use crate::market::event::{Liquidation, Mark, OpenInterest, Quote, Trade};
use crate::market::instrument::InstrumentId;
use crate::persist::recorder::RecorderStats;
use crate::persist::writer::{WriterHandle, WriterRecord, WriterStats};

/// Shortest time between two `not_persisted` reports.
pub const NOT_PERSISTED_REPORT: Duration = Duration::from_secs(1);

/// The persistence part of [`Analytics`](super::analytics::Analytics).
pub(super) struct Persistence {
    /// Which records go to the writer (trades, quotes, bars, marks, liquidations, open
    /// interest); fixed.
    select: Persist,
    /// The CSV writer's bounded queue: `None` when CSV is off, and after
    /// [`take_writer`](Self::take_writer) handed it back for closing at shutdown.
    writer: Option<WriterHandle>,
    /// The raw recorder's counters (its drops count as losses); `None` without a recorder.
    recorder: Option<Arc<RecorderStats>>,
    /// Records lost as of the last report (recorder drops + writer refusals + writer I/O
    /// drops); never decreases, and never exceeds the current sum (the counters only grow).
    reported_lost: u64,
    /// Wall ns before which no report goes out unless forced: the last report's time +
    /// [`NOT_PERSISTED_REPORT`]; 0 before the first report.
    next_report_ns: u64,
}

impl Persistence {
    /// Persists what `select` selects through `writer` (when given), reporting the losses of
    /// `writer` and `recorder`.
    pub(super) fn new(
        select: Persist,
        writer: Option<WriterHandle>,
        recorder: Option<Arc<RecorderStats>>,
    ) -> Self {
        Persistence {
            select,
            writer,
            recorder,
            reported_lost: 0,
            next_report_ns: 0,
        }
    }

    /// The writer's counters, when CSV is on.
    pub(super) fn writer_stats(&self) -> Option<Arc<WriterStats>> {
        self.writer.as_ref().map(|w| w.stats().clone())
    }

    /// Tells the writer the names behind `id` (before any of its records).
    pub(super) fn register(&self, id: InstrumentId, venue: &str, symbol: &str) {
        if let Some(w) = &self.writer {
            if let Err(e) = w.register(id, venue, symbol) {
                tracing::warn!("csv writer: {e}; its records will not be persisted");
            }
        }
    }

    /// A trade, when trades are persisted.
    #[inline]
    pub(super) fn trade(&mut self, instrument_id: InstrumentId, recv_ts_ns: u64, trade: Trade) {
        if self.select.trades {
            self.send(WriterRecord::Trade {
                instrument_id,
                recv_ts_ns,
                trade,
            });
        }
    }

    /// A quote, when quotes are persisted.
    #[inline]
    pub(super) fn quote(&mut self, instrument_id: InstrumentId, recv_ts_ns: u64, quote: Quote) {
        if self.select.quotes {
            self.send(WriterRecord::Quote {
                instrument_id,
                recv_ts_ns,
                quote,
            });
        }
    }

    /// A closed bar, when bars are persisted.
    pub(super) fn bar(&mut self, instrument_id: InstrumentId, bar: &Bar) {
        if self.select.bars {
            self.send(WriterRecord::Bar {
                instrument_id,
                bar: *bar,
            });
        }
    }

    /// A mark (derivatives), when marks are persisted.
    pub(super) fn mark(&mut self, instrument_id: InstrumentId, recv_ts_ns: u64, mark: Mark) {
        if self.select.marks {
            self.send(WriterRecord::Mark {
                instrument_id,
                recv_ts_ns,
                mark,
            });
        }
    }

    /// A liquidation, when liquidations are persisted.
    pub(super) fn liquidation(
        &mut self,
        instrument_id: InstrumentId,
        recv_ts_ns: u64,
        liquidation: Liquidation,
    ) {
        if self.select.liquidations {
            self.send(WriterRecord::Liquidation {
                instrument_id,
                recv_ts_ns,
                liquidation,
            });
        }
    }

    /// Open interest, when it is persisted.
    pub(super) fn open_interest(
        &mut self,
        instrument_id: InstrumentId,
        recv_ts_ns: u64,
        open_interest: OpenInterest,
    ) {
        if self.select.open_interest {
            self.send(WriterRecord::OpenInterest {
                instrument_id,
                recv_ts_ns,
                open_interest,
            });
        }
    }

    #[inline]
    fn send(&mut self, rec: WriterRecord) {
        if let Some(w) = self.writer.as_mut() {
            // Refusals are counted by the handle; they are reported as `not_persisted`.
            let _ = w.try_send(rec);
        }
    }

    /// The records lost since the last report and why, when a `not_persisted` report is due at
    /// `now_ns` (at most once per [`NOT_PERSISTED_REPORT`] unless `force`); marks them
    /// reported.
    pub(super) fn take_unreported(&mut self, now_ns: u64, force: bool) -> Option<(u64, String)> {
        if !force && now_ns < self.next_report_ns {
            return None;
        }
        let mut lost = self.recorder.as_ref().map_or(0, |r| r.dropped.get());
        let mut why = Vec::new();
        if lost > 0 {
            why.push("raw recorder queue full");
        }
        if let Some(w) = &self.writer {
            let s = w.stats();
            let full = s.producer.full.get() + s.producer.disconnected.get();
            let io = s.writer.dropped_io.get() + s.writer.dropped_unknown.get();
            if full > 0 {
                why.push("csv writer queue full");
            }
            if io > 0 {
                why.push("csv write errors");
            }
            lost += full + io;
        }
        if lost <= self.reported_lost {
            return None;
        }
        let n = lost - self.reported_lost;
        self.reported_lost = lost;
        self.next_report_ns = now_ns + NOT_PERSISTED_REPORT.as_nanos() as u64;
        Some((n, format!("records not persisted ({})", why.join(", "))))
    }

    /// At shutdown: the writer, for closing (it writes everything queued).
    pub(super) fn take_writer(&mut self) -> Option<WriterHandle> {
        self.writer.take()
    }
}
