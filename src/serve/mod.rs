//! Serving people and monitoring: the `http` thread answers `/metrics` (Prometheus text),
//! `/health` and the `/v1/…` query API from published state only (atomics, snapshots), so a
//! request never slows the relay.
//!
//! - `http`: the server thread, request/response values, the router.
//! - `metrics`: Prometheus rendering and the health policy.
//! - `query`: the `/v1/…` handlers over the consumer's query snapshot.

pub mod config;
pub mod http;
pub mod metrics;
pub mod query;
