//! Bridges the relay stream to other transports, as one more subscriber of the relay socket.
//!
//! - `config`: the `[nats]` section (always built, so a configuration is checked the same way
//!   with or without the feature).
//! - `nats`: the NATS bridge (feature `nats`).

pub mod config;
#[cfg(feature = "nats")]
pub mod nats;
