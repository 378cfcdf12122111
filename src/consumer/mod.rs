//! The consumer: the ONE thread (`consumer`) that takes frames from every feed's queue, keeps
//! the cache, fans frames out to subscribers and measures the relay latency. Off the hot path
//! it builds bars and session statistics, hands records to the CSV writer and publishes the
//! snapshots other threads read.
//!
//! - `thread`: the consumer loop, idle strategies, latency histograms.
//! - `stats`: the `stats` thread, which publishes the consumer's histograms so that the
//!   consumer never copies one.
//! - `coalesce`: adaptive coalescing — when the frames queued for subscribers are written.
//! - `analytics`: bars, session statistics, CSV records, query snapshot publication; drives
//!   the three parts below.
//! - `bars`: when bars close — the bar configuration and the wall or per-feed data clock.
//! - `persistence`: records handed to the CSV writer; `not_persisted` reports, rate-limited.
//! - `publishing`: what changed since the last query snapshot, and copying it in.
//! - `snapshot`: the query snapshot the consumer writes and the `http` thread reads.
//! - `config`: `[consumer]`, `[bars]` and the CSV record selection, as the consumer takes them.

pub mod analytics;
mod bars;
pub mod coalesce;
pub mod config;
mod persistence;
mod publishing;
pub mod snapshot;
pub mod stats;
pub mod thread;
