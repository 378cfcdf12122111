//! `mdrelay top`: a live terminal dashboard of a running relay. This commit: what it knows
//! ([`model`]) and how it reads the relay's HTTP API ([`scrape`]).

pub mod model;
pub mod scrape;
