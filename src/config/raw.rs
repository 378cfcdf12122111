//! The raw layer: exactly the TOML shape, unknown keys refused, every key required unless
//! `config/default.toml` may omit it (the defaults are always merged in first). Validation
//! (`validate.rs`) turns it into the typed configuration.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::nats::RawNats;

/// `[relay]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRelay {
    pub(super) socket_path: String,
    pub(super) socket_mode: String,
    pub(super) max_subscribers: u64,
    pub(super) max_pending_bytes: u64,
    pub(super) heartbeat_interval_ms: u64,
    pub(super) drain_timeout_ms: u64,
    pub(super) hello_timeout_ms: u64,
    pub(super) allowed_uids: Vec<u64>,
}

/// `[consumer]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsumer {
    pub(super) idle: String,
    pub(super) spin_iterations: u64,
    pub(super) yield_iterations: u64,
    pub(super) park_max_us: u64,
    pub(super) batch_frames: u64,
    pub(super) coalesce_budget_us: u64,
    pub(super) coalesce_max_bytes: u64,
}

/// `[feeds.NAME]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFeed {
    pub(super) enabled: Option<bool>,
    pub(super) venue: String,
    pub(super) url: String,
    pub(super) rest_url: Option<String>,
    pub(super) tls_ca_file: Option<String>,
    pub(super) symbols: Vec<String>,
    pub(super) channels: Vec<String>,
    pub(super) book_depth: Option<u64>,
    pub(super) queue_capacity_frames: Option<u64>,
    pub(super) transport: Option<String>,
    pub(super) backpressure: Option<String>,
    pub(super) block_timeout_ms: Option<u64>,
    pub(super) connect_timeout_ms: Option<u64>,
    pub(super) reconnect_initial_ms: Option<u64>,
    pub(super) reconnect_max_ms: Option<u64>,
    pub(super) stale_after_ms: Option<u64>,
    pub(super) record: Option<bool>,
    pub(super) max_connection_age_ms: Option<u64>,
    pub(super) rotate_after_ms: Option<u64>,
    pub(super) open_interest_interval_ms: Option<u64>,
}

/// `[feed_defaults]`: values a feed takes when its own table omits them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFeedDefaults {
    pub(super) queue_capacity_frames: u64,
    pub(super) transport: String,
    pub(super) backpressure: String,
    pub(super) block_timeout_ms: u64,
    pub(super) connect_timeout_ms: u64,
    pub(super) reconnect_initial_ms: u64,
    pub(super) reconnect_max_ms: u64,
    pub(super) stale_after_ms: u64,
    pub(super) record: bool,
}

/// `[replay]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReplay {
    pub(super) enabled: bool,
    pub(super) listen: String,
    pub(super) speed: f64,
    #[serde(rename = "loop")]
    pub(super) loop_forever: bool,
    pub(super) sources: BTreeMap<String, OneOrMany>,
}

/// A path or a list of paths.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One path.
    One(String),
    /// Several paths.
    Many(Vec<String>),
}

/// `[http]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub(super) enabled: bool,
    pub(super) listen: String,
    pub(super) snapshot_interval_ms: u64,
    pub(super) book_depth: u64,
    pub(super) request_deadline_ms: u64,
    pub(super) max_connections: u64,
}

/// `[bars]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBars {
    pub(super) intervals_ms: Vec<u64>,
    pub(super) history_bars: u64,
    pub(super) close_grace_ms: u64,
    pub(super) timer_interval_ms: u64,
    pub(super) close_on_shutdown: bool,
}

/// `[writer]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWriter {
    pub(super) enabled: bool,
    pub(super) data_dir: String,
    pub(super) trades: bool,
    pub(super) quotes: bool,
    pub(super) bars: bool,
    pub(super) mark: bool,
    pub(super) liquidations: bool,
    pub(super) open_interest: bool,
    pub(super) capacity_records: u64,
    pub(super) flush_interval_ms: u64,
    pub(super) flush_bytes: u64,
    pub(super) max_open_files: u64,
    pub(super) fsync_on_close: bool,
    pub(super) retry_initial_ms: u64,
    pub(super) retry_max_ms: u64,
    pub(super) error_log_interval_ms: u64,
}

/// `[recording]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecording {
    pub(super) dir: String,
    pub(super) layout: String,
    pub(super) capacity_messages: u64,
    pub(super) flush_interval_ms: u64,
}

/// `[status]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatus {
    pub(super) interval_ms: u64,
}

/// `[log]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub(super) format: String,
    pub(super) level: String,
}

/// The whole file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub(super) relay: RawRelay,
    pub(super) consumer: RawConsumer,
    pub(super) status: RawStatus,
    pub(super) http: RawHttp,
    pub(super) bars: RawBars,
    pub(super) writer: RawWriter,
    pub(super) recording: RawRecording,
    pub(super) feed_defaults: RawFeedDefaults,
    #[serde(default)]
    pub(super) feeds: BTreeMap<String, RawFeed>,
    pub(super) replay: RawReplay,
    #[serde(default)]
    pub(super) threads: BTreeMap<String, toml::Value>,
    pub(super) nats: RawNats,
    pub(super) log: RawLog,
}
