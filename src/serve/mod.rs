//! Serving people and monitoring: the `http` thread answers `/metrics` (Prometheus text),
//! `/health` and the `/v1/…` query API from published state only (atomics, snapshots), so a
//! request never slows the relay.
//!
//! - `config`: the HTTP endpoint's configuration (`[http]`).
//! - `http`: request/response values, the handler trait, the router.
//! - `server`: the `http` thread: one `poll(2)` loop over every connection, request deadline,
//!   connection cap.
//! - `metrics`: Prometheus rendering of the relay's counters (`/metrics`).
//! - `feed_metrics`: the per-feed families `metrics` renders (name, help, value).
//! - `health`: the health policy: when a feed is stale, the `/health` verdict.
//! - `exposition`: a parser of the Prometheus text format (what `metrics` writes), for clients
//!   and tests.
//! - `query`: the `/v1/…` handlers over the consumer's query snapshot.

pub mod config;
pub mod exposition;
mod feed_metrics;
pub mod health;
pub mod http;
pub mod metrics;
pub mod query;
pub mod server;
