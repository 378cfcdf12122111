//! What crosses a process boundary: the relay's binary protocol (docs/PROTOCOL.md), its
//! JSON-lines rendering (the schema of `decode` and `tail --json`), and subscription requests.
//! Encoding and decoding only: no threads, no sockets.
//!
//! - `protocol`: frame header, message types, encode/decode of every frame, CRC.
//! - `derivatives`: the Mark, Liquidation and OpenInterest frames (encode, decode), kept
//!   apart from `protocol` so each stays readable; `protocol` dispatches to it.
//! - `json`: one JSON object per event, the documented JSON-lines contract.
//! - `subscription`: subscribe/unsubscribe requests and their answers.

pub mod derivatives;
pub mod json;
pub mod protocol;
pub mod subscription;
