//! The bridge's counters (one writer thread per half, each on its own cache lines) and the
//! [`BridgeSummary`] made of them at shutdown.

use std::fmt;

use crossbeam_utils::CachePadded;

use crate::base::stats::{Counter, Gauge};

/// Counters written by the `nats-bridge` reader thread.
#[derive(Debug, Default)]
pub struct ReaderCounters {
    /// Frames read from the relay.
    pub frames: Counter,
    /// Heartbeat frames among them (not forwarded).
    pub heartbeats: Counter,
    /// Messages pushed into the buffer (frames, re-sent definitions, drop reports).
    pub queued: Counter,
    /// Frames lost because the buffer was full (definitions included: they are re-sent).
    pub dropped: Counter,
    /// Of `dropped`: frames counted in `dropped` reports (everything but definitions).
    pub dropped_reported: Counter,
    /// `dropped` status messages queued.
    pub drop_reports: Counter,
    /// Frames not forwarded for a reason other than a full buffer (no definition for the
    /// id, undecodable payload, a type the JSON payload cannot render); logged once per reason.
    pub skipped: Counter,
    /// Connections to the relay socket made.
    pub relay_connects: Counter,
    /// Relay streams that ended in an error (bad frame, I/O error).
    pub relay_errors: Counter,
    /// Deepest the buffer got, frames.
    pub buffer_high_water: Gauge,
}

/// Counters written by the `nats-publish` thread.
#[derive(Debug, Default)]
pub struct PublisherCounters {
    /// Messages handed to NATS: sent (plain NATS) or acknowledged by the stream (JetStream).
    pub published: Counter,
    /// Of `published`: JetStream acks that said "duplicate" (a re-send the stream had already).
    pub duplicates: Counter,
    /// JetStream window re-sends after a failed or missing ack.
    pub resends: Counter,
    /// Messages refused by the server for good (dropped, counted, reported).
    pub refused: Counter,
    /// Messages still buffered or unacknowledged when the drain deadline passed at shutdown.
    pub lost_at_shutdown: Counter,
    /// NATS connections established (the first one and every reconnect).
    pub connects: Counter,
    /// NATS connections lost.
    pub disconnects: Counter,
    /// 1 while connected to a NATS server.
    pub connected: Gauge,
    /// 1 once the JetStream stream was created or updated (JetStream only).
    pub stream_ready: Gauge,
}

/// Every counter of a bridge; each half has one writer thread and its own cache lines.
#[derive(Debug, Default)]
pub struct BridgeCounters {
    /// Written by `nats-bridge`.
    pub reader: CachePadded<ReaderCounters>,
    /// Written by `nats-publish`.
    pub publisher: CachePadded<PublisherCounters>,
}

impl BridgeCounters {
    /// The summary of these counters, with the threads that panicked.
    pub(super) fn summary(&self, panicked: Vec<&'static str>) -> BridgeSummary {
        let r = &self.reader;
        let p = &self.publisher;
        BridgeSummary {
            frames: r.frames.get(),
            heartbeats: r.heartbeats.get(),
            queued: r.queued.get(),
            published: p.published.get(),
            dropped: r.dropped.get(),
            drop_reports: r.drop_reports.get(),
            refused: p.refused.get(),
            skipped: r.skipped.get(),
            lost_at_shutdown: p.lost_at_shutdown.get(),
            connects: p.connects.get(),
            resends: p.resends.get(),
            panicked,
        }
    }
}

/// What a bridge did, at shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSummary {
    /// Frames read from the relay.
    pub frames: u64,
    /// Heartbeats among them (not forwarded).
    pub heartbeats: u64,
    /// Messages put into the buffer.
    pub queued: u64,
    /// Messages published (sent, or acked by the stream under JetStream).
    pub published: u64,
    /// Frames dropped with the buffer full.
    pub dropped: u64,
    /// Drop reports queued.
    pub drop_reports: u64,
    /// Messages refused by the server.
    pub refused: u64,
    /// Frames skipped (no definition, undecodable, no JSON rendering).
    pub skipped: u64,
    /// Messages lost at shutdown (drain deadline).
    pub lost_at_shutdown: u64,
    /// NATS connections made.
    pub connects: u64,
    /// JetStream window re-sends.
    pub resends: u64,
    /// Bridge threads that panicked.
    pub panicked: Vec<&'static str>,
}

impl fmt::Display for BridgeSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "nats bridge: frames {} (heartbeats {}) | queued {} | published {} | dropped {} \
             (reports {}) | refused {} | skipped {} | lost at shutdown {} | connects {} | \
             re-sends {}",
            self.frames,
            self.heartbeats,
            self.queued,
            self.published,
            self.dropped,
            self.drop_reports,
            self.refused,
            self.skipped,
            self.lost_at_shutdown,
            self.connects,
            self.resends
        )?;
        if !self.panicked.is_empty() {
            write!(f, " | PANICKED: {:?}", self.panicked)?;
        }
        Ok(())
    }
}
