//! The consumer: the ONE thread (`consumer`) that takes frames from every feed's queue, keeps
//! the cache, fans frames out to subscribers and measures the relay latency. Off the hot path
//! it builds bars and session statistics, hands records to the CSV writer and publishes the
//! snapshots other threads read.
//!
//! - `thread`: the consumer loop, idle strategies, latency histograms and their publication.
//! - `analytics`: bars, session statistics, CSV records, query snapshot publication.
//! - `snapshot`: the query snapshot the consumer writes and the `http` thread reads.

pub mod analytics;
pub mod config;
pub mod snapshot;
pub mod thread;
