//! `mdrelay top`: a live terminal dashboard of a running relay. This commit: what it knows
//! ([`model`]), how it reads the relay's HTTP API ([`scrape`]) and how it draws ([`ui`]).

pub mod model;
pub mod scrape;
pub mod ui;
