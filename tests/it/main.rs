//! mdrelay's integration tests: one binary, a module per topic.

// Tests state their expectations with unwrap/expect: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../util/mod.rs"]
mod util;

mod cli;
mod config_errors;
mod dashboard;
mod decode_summary;
mod derivatives;
mod e2e;
mod export;
mod faults;
mod files;
mod futures;
mod fuzz;
mod fuzz_corpus;
mod http_hostile;
mod hygiene;
mod kraken_v2;
#[cfg(feature = "nats")]
mod nats;
mod ops;
mod packaging;
mod persist;
mod python;
mod queues;
mod recording_layout;
mod relay_semantics;
mod reliability;
mod replay_exchange;
mod rotation;
mod shutdown;
mod soak;
mod subscribe;
mod sync_wait;
mod tls;
mod top;
mod venues;
mod venues_more;
