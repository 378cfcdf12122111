//! The relay: the Unix-domain socket subscribers connect to. The acceptor thread
//! (`relay-accept`) owns the listening socket and reads every subscriber's requests; the
//! consumer thread owns the subscribers' writing side and the cache of what late joiners get.
//!
//! - `socket`: binding the socket file (modes, a live relay refused, a stale file removed).
//! - `subscribers`: the subscriber set, outbound buffers, slow subscribers.
//! - `cache`: latest trade, quote and book per instrument, replayed to late joiners.
//! - `acceptor`: the `relay-accept` thread: new connections, hello, subscription requests.
//! - `config`: the `[relay]` section.
//! - `client`: a blocking subscriber (used by `tail`, `top`, the NATS bridge and tests).

pub mod acceptor;
pub mod cache;
pub mod client;
pub mod config;
pub mod socket;
pub mod subscribers;
