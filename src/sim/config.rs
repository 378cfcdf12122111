//! The embedded replay exchange's configuration (`[replay]`), built by the `config` module.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::market::instrument::Venue;

/// The embedded replay exchange.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// Listen address (port 0: any free port).
    pub listen: SocketAddr,
    /// Pace multiplier: 1.0 = recorded pace, 10 = ten times faster, 0 = as fast as possible.
    pub speed: f64,
    /// Start over at the end of the recording.
    pub loop_forever: bool,
    /// Recordings served per venue (several files of a venue are merged by receive time).
    pub sources: Vec<(Venue, Vec<PathBuf>)>,
}
