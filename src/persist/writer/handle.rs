//! [`WriterHandle`], the consumer's end of the writer: it spawns the `writer` thread, registers
//! instrument names, queues records without blocking (`try_send`, on the consumer thread), and
//! on `close` or drop disconnects the channel and joins the thread once it has drained.

use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender};

use crate::market::instrument::InstrumentId;
use crate::persist::config::WriterConfig;

use super::names::{self, Names};
use super::thread::WriterThread;
use super::{RegisterError, TrySendError, WriterError, WriterPanicked, WriterRecord, WriterStats};

/// The consumer's end: queue records, register instruments, stop and join the thread.
/// Not `Clone`: one owner, so the producer counters keep a single writer.
#[derive(Debug)]
pub struct WriterHandle {
    /// `Some` until `close`/drop; dropping it tells the thread to drain and exit.
    tx: Option<Sender<WriterRecord>>,
    names: Names,
    stats: Arc<WriterStats>,
    /// `Some` until joined.
    thread: Option<JoinHandle<()>>,
}

impl WriterHandle {
    /// Starts the `writer` thread.
    pub fn spawn(cfg: WriterConfig) -> Result<WriterHandle, WriterError> {
        Self::spawn_gated(cfg, None)
    }

    /// [`spawn`](Self::spawn), with a thread that first waits until `gate` yields or closes
    /// (tests stall the writer with it).
    fn spawn_gated(
        cfg: WriterConfig,
        gate: Option<Receiver<()>>,
    ) -> Result<WriterHandle, WriterError> {
        cfg.validate()?;
        let (tx, rx) = crossbeam_channel::bounded(cfg.capacity_records);
        let names: Names = Arc::default();
        let stats = Arc::new(WriterStats::default());
        let state = WriterThread::new(cfg, rx, Arc::clone(&names), Arc::clone(&stats));
        let thread = thread::Builder::new()
            .name("writer".to_owned())
            .spawn(move || {
                if let Some(g) = gate {
                    let _ = g.recv();
                }
                state.run();
            })
            .map_err(WriterError::Spawn)?;
        Ok(WriterHandle {
            tx: Some(tx),
            names,
            stats,
            thread: Some(thread),
        })
    }

    /// Tells the writer the name of `id`. Call once per instrument before its first record
    /// (e.g. on its InstrumentDef); calling again with the same name is a no-op. Takes a lock
    /// the writer holds only for a hash lookup, and only the first time it meets an id.
    pub fn register(
        &self,
        id: InstrumentId,
        venue: &str,
        symbol: &str,
    ) -> Result<(), RegisterError> {
        names::register(&self.names, id, venue, symbol)
    }

    /// Queues `rec` without ever blocking; on failure the record comes back and is counted.
    #[inline]
    pub fn try_send(&mut self, rec: WriterRecord) -> Result<(), TrySendError> {
        let p = &self.stats.producer;
        let Some(tx) = &self.tx else {
            p.disconnected.inc();
            return Err(TrySendError::Disconnected(rec));
        };
        match tx.try_send(rec) {
            Ok(()) => {
                p.sent.inc();
                Ok(())
            }
            Err(crossbeam_channel::TrySendError::Full(r)) => {
                p.full.inc();
                Err(TrySendError::Full(r))
            }
            Err(crossbeam_channel::TrySendError::Disconnected(r)) => {
                p.disconnected.inc();
                Err(TrySendError::Disconnected(r))
            }
        }
    }

    /// Records queued now (a gauge for the status line).
    pub fn queued(&self) -> usize {
        self.tx.as_ref().map_or(0, Sender::len)
    }

    /// The counters (readable from any thread, also after `close`).
    pub fn stats(&self) -> &Arc<WriterStats> {
        &self.stats
    }

    /// Disconnects the channel and waits until the thread has written every queued record,
    /// flushed and fsync'ed its files, and exited.
    pub fn close(mut self) -> Result<(), WriterPanicked> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), WriterPanicked> {
        self.tx = None;
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| WriterPanicked),
            None => Ok(()),
        }
    }
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        if self.shutdown().is_err() {
            tracing::error!("the writer thread panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::testkit::*;
    use super::*;
    use crate::market::fixed::SCALE;

    #[test]
    fn full_channel_is_counted_and_hands_the_record_back() {
        let tmp = tempfile::tempdir().unwrap();
        let (gate_tx, gate_rx) = crossbeam_channel::bounded::<()>(0);
        let c = WriterConfig {
            capacity_records: 4,
            ..cfg(tmp.path())
        };
        let mut w = WriterHandle::spawn_gated(c, Some(gate_rx)).unwrap();
        let id = register(&w, "binance", "ETHUSDT");
        let (mut ok, mut full) = (0u64, 0u64);
        for i in 0..10 {
            let r = trade(id, MIDNIGHT + i, SCALE, SCALE);
            match w.try_send(r) {
                Ok(()) => ok += 1,
                Err(TrySendError::Full(back)) => {
                    assert_eq!(back, r);
                    full += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!((ok, full), (4, 6));
        assert_eq!(w.stats().producer.full.get(), 6);
        assert_eq!(w.queued(), 4);
        drop(gate_tx); // the writer starts
        let stats = Arc::clone(w.stats());
        w.close().unwrap();
        assert_accounted(&stats);
        assert_eq!(stats.writer.rows_written.get(), 4);
        // produced == written + dropped
        assert_eq!(
            10,
            stats.writer.rows_written.get() + stats.producer.full.get()
        );
        let f = tmp.path().join("binance/ETHUSDT/2024-08-09/trades.csv");
        assert_eq!(lines(&f), 1 + 4);
    }

    #[test]
    fn shutdown_drains_everything() {
        let tmp = tempfile::tempdir().unwrap();
        let c = WriterConfig {
            capacity_records: 20_000,
            flush_interval: Duration::from_secs(3600), // only size and shutdown flush
            ..cfg(tmp.path())
        };
        let mut w = WriterHandle::spawn(c).unwrap();
        let a = register(&w, "binance", "ETHUSDT");
        let b = register(&w, "coinbase", "ETH-USD");
        for i in 0..10_000u64 {
            let id = if i % 2 == 0 { a } else { b };
            w.try_send(trade(id, MIDNIGHT + i, SCALE + i as i64, SCALE))
                .unwrap();
        }
        let stats = Arc::clone(w.stats());
        w.close().unwrap();
        assert_accounted(&stats);
        assert_eq!(stats.writer.rows_written.get(), 10_000);
        assert_eq!(
            lines(&tmp.path().join("binance/ETHUSDT/2024-08-09/trades.csv")),
            5_001
        );
        assert_eq!(
            lines(&tmp.path().join("coinbase/ETH-USD/2024-08-09/trades.csv")),
            5_001
        );
        assert_eq!(stats.writer.open_files.get(), 0);
    }

    #[test]
    fn invalid_config_is_refused() {
        let base = WriterConfig::new("/nonexistent");
        for c in [
            WriterConfig {
                capacity_records: 0,
                ..base.clone()
            },
            WriterConfig {
                flush_bytes: 0,
                ..base.clone()
            },
            WriterConfig {
                max_open_files: 0,
                ..base.clone()
            },
            WriterConfig {
                flush_interval: Duration::ZERO,
                ..base.clone()
            },
            WriterConfig {
                retry_max: Duration::from_millis(1),
                ..base.clone()
            },
        ] {
            assert!(matches!(
                WriterHandle::spawn(c),
                Err(WriterError::InvalidConfig(_))
            ));
        }
    }
}
