//! What goes to disk, and reading it back. Two threads live here, each the only owner of its
//! files: `writer` (CSV trades, quotes and bars, fed by the consumer) and `recorder` (raw venue
//! messages as gzip, fed by the collectors). Both take records over bounded channels with
//! `try_send`; a full channel is counted and reported, never waited on.
//!
//! - `writer/`: the CSV writer thread and the handle the consumer feeds it by.
//! - `recorder`: the raw recorder thread and the handle collectors feed it by.
//! - `layout`: the two recording layouts (`mdrelay`, `hftbacktest`) and how a message finds its
//!   symbol's file.
//! - `recording`: reads recordings (`<recv_ns> <message>` lines, plain or gzip).
//! - `paths`: names on disk, shared by both threads: safe path components, opening with
//!   directories created.
//! - `config`: both threads' configuration.

pub mod config;
pub mod layout;
pub mod paths;
pub mod recorder;
pub mod recording;
pub mod writer;
