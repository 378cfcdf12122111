//! Configuration: built-in defaults < TOML file < environment overlay file (`--env NAME` /
//! `MDRELAY_ENV`, `config/environments/NAME.toml`) < environment variables
//! (`MDRELAY__SECTION__KEY=value`) < `--set section.key=value` flags.
//!
//! Layers are merged as TOML trees, then deserialized into [`RawConfig`] (unknown keys refused)
//! with the failing key's path reported, then validated into the typed [`Config`] that the rest of
//! the program uses. An invalid value fails start-up with a [`ConfigError`] naming the key, the
//! value and what was expected. `config/default.toml` documents every key with unit and default;
//! the built-in defaults are that very file, compiled in.
//!
//! Runs once on the main thread at start-up.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod nats;

pub use crate::base::affinity::Placement;
pub use crate::consumer::config::{BarClock, BarsConfig, ConsumerConfig, IdleStrategy, Persist};
pub use crate::feed::config::{FeedConfig, FeedSource, BINANCE_MAX_CONNECTION_AGE_MS};
pub use crate::persist::config::{RecordingConfig, WriterConfig};
pub use crate::relay::config::RelayConfig;
pub use crate::serve::config::HttpConfig;
pub use crate::sim::config::ReplayConfig;

use crate::feed::venue::Subscription;
use crate::market::instrument::Venue;
use crate::queue::{Backpressure, Transport};

/// The built-in defaults: `config/default.toml`, compiled in.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is not valid TOML.
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file (or `--set`/environment source).
        path: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key has a value of the wrong type or range, or is unknown.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// Dotted path of the key (`feeds.binance.queue_capacity_frames`).
        key: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A `--set` flag or environment override is not `key=value`.
    #[error("override `{0}` is not of the form section.key=value")]
    BadOverride(String),
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Raw layer: exactly the TOML shape, every key optional only where default.toml may omit it.

/// `[relay]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRelay {
    socket_path: String,
    socket_mode: String,
    max_subscribers: u64,
    max_pending_bytes: u64,
    heartbeat_interval_ms: u64,
    drain_timeout_ms: u64,
    hello_timeout_ms: u64,
    allowed_uids: Vec<u64>,
}

/// `[consumer]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsumer {
    idle: String,
    spin_iterations: u64,
    yield_iterations: u64,
    park_max_us: u64,
    batch_frames: u64,
}

/// `[feeds.NAME]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFeed {
    enabled: Option<bool>,
    venue: String,
    url: String,
    rest_url: Option<String>,
    tls_ca_file: Option<String>,
    symbols: Vec<String>,
    channels: Vec<String>,
    book_depth: Option<u64>,
    queue_capacity_frames: Option<u64>,
    transport: Option<String>,
    backpressure: Option<String>,
    block_timeout_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
    reconnect_initial_ms: Option<u64>,
    reconnect_max_ms: Option<u64>,
    stale_after_ms: Option<u64>,
    record: Option<bool>,
    max_connection_age_ms: Option<u64>,
}

/// `[feed_defaults]`: values a feed takes when its own table omits them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFeedDefaults {
    queue_capacity_frames: u64,
    transport: String,
    backpressure: String,
    block_timeout_ms: u64,
    connect_timeout_ms: u64,
    reconnect_initial_ms: u64,
    reconnect_max_ms: u64,
    stale_after_ms: u64,
    record: bool,
}

/// `[replay]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReplay {
    enabled: bool,
    listen: String,
    speed: f64,
    #[serde(rename = "loop")]
    loop_forever: bool,
    sources: BTreeMap<String, OneOrMany>,
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
    enabled: bool,
    listen: String,
    snapshot_interval_ms: u64,
    book_depth: u64,
}

/// `[bars]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBars {
    intervals_ms: Vec<u64>,
    history_bars: u64,
    close_grace_ms: u64,
    timer_interval_ms: u64,
    close_on_shutdown: bool,
}

/// `[writer]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWriter {
    enabled: bool,
    data_dir: String,
    trades: bool,
    quotes: bool,
    bars: bool,
    capacity_records: u64,
    flush_interval_ms: u64,
    flush_bytes: u64,
    max_open_files: u64,
    fsync_on_close: bool,
    retry_initial_ms: u64,
    retry_max_ms: u64,
    error_log_interval_ms: u64,
}

/// `[recording]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecording {
    dir: String,
    capacity_messages: u64,
    flush_interval_ms: u64,
}

/// `[status]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatus {
    interval_ms: u64,
}

/// The whole file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    relay: RawRelay,
    consumer: RawConsumer,
    status: RawStatus,
    http: RawHttp,
    bars: RawBars,
    writer: RawWriter,
    recording: RawRecording,
    feed_defaults: RawFeedDefaults,
    #[serde(default)]
    feeds: BTreeMap<String, RawFeed>,
    replay: RawReplay,
    #[serde(default)]
    threads: BTreeMap<String, toml::Value>,
    nats: nats::RawNats,
}

// ---------------------------------------------------------------------------------------------
// Typed layer.

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Relay socket.
    pub relay: RelayConfig,
    /// Consumer thread.
    pub consumer: ConsumerConfig,
    /// Enabled feeds, in name order.
    pub feeds: Vec<FeedConfig>,
    /// Embedded replay exchange, when enabled.
    pub replay: Option<ReplayConfig>,
    /// Thread name → placement.
    pub threads: BTreeMap<String, Placement>,
    /// Period of the status log line.
    pub status_interval: Duration,
    /// HTTP endpoint (`/metrics`, `/health`, `/v1/…`), when enabled.
    pub http: Option<HttpConfig>,
    /// OHLCV bars.
    pub bars: BarsConfig,
    /// CSV persistence, when enabled.
    pub writer: Option<WriterConfig>,
    /// Which record kinds go to CSV.
    pub persist: Persist,
    /// Raw recording (used by the feeds with `record = true`).
    pub recording: RecordingConfig,
    /// The NATS bridge (`[nats]`).
    pub nats: crate::bridge::config::NatsConfig,
}

/// Where configuration comes from.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// The TOML file (`--config`); `None` = built-in defaults only.
    pub file: Option<PathBuf>,
    /// Environment overlay name (`--env`); its file is `environments/NAME.toml` beside `file`
    /// (or under `config/` for the built-in defaults).
    pub env_name: Option<String>,
    /// `MDRELAY__…` variables as (name, value).
    pub env_vars: Vec<(String, String)>,
    /// `--set key=value` flags, in order.
    pub sets: Vec<String>,
}

impl Sources {
    /// Sources from the process environment plus the given file, overlay and flags.
    pub fn from_process(
        file: Option<PathBuf>,
        env_name: Option<String>,
        sets: Vec<String>,
    ) -> Self {
        Sources {
            file,
            env_name: env_name.or_else(|| std::env::var("MDRELAY_ENV").ok()),
            env_vars: std::env::vars()
                .filter(|(k, _)| k.starts_with("MDRELAY__"))
                .collect(),
            sets,
        }
    }
}

fn parse_toml(text: &str, origin: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Syntax {
            path: origin.to_owned(),
            message: e.to_string(),
        })
}

fn read_toml(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_toml(&text, &path.display().to_string())
}

/// Deep-merges `over` into `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Parses an override value as TOML (`42`, `true`, `["a","b"]`, `"x"`); bare words are strings.
fn override_value(text: &str) -> toml::Value {
    match format!("v = {text}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(text.to_owned())),
        Err(_) => toml::Value::String(text.to_owned()),
    }
}

/// Sets `path` (`a.b.c`) to `value` in `root`, creating tables on the way.
fn set_path(
    root: &mut toml::Table,
    path: &[String],
    value: toml::Value,
) -> Result<(), ConfigError> {
    let Some((last, parents)) = path.split_last() else {
        return Err(ConfigError::BadOverride(String::new()));
    };
    let mut t = root;
    for (i, p) in parents.iter().enumerate() {
        let entry = t
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry.as_table_mut().ok_or_else(|| {
            invalid(
                path[..=i].join("."),
                "is a value, not a section; cannot set a key under it",
            )
        })?;
    }
    t.insert(last.clone(), value);
    Ok(())
}

/// Builds the merged TOML tree from every source.
pub fn merged_table(src: &Sources) -> Result<toml::Table, ConfigError> {
    let mut root = parse_toml(DEFAULT_TOML, "built-in defaults")?;
    // The built-in defaults define one demo feed; a user's file that defines `feeds` replaces them.
    if let Some(file) = &src.file {
        let user = read_toml(file)?;
        if user.contains_key("feeds") {
            root.remove("feeds");
        }
        merge(&mut root, user);
    }
    if let Some(env) = &src.env_name {
        if env.is_empty()
            || !env
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(invalid(
                "env",
                format!("`{env}` is not a plain environment name"),
            ));
        }
        let dir = src
            .file
            .as_ref()
            .and_then(|f| f.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("config"));
        merge(
            &mut root,
            read_toml(&dir.join("environments").join(format!("{env}.toml")))?,
        );
    }
    for (k, v) in &src.env_vars {
        let Some(rest) = k.strip_prefix("MDRELAY__") else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::BadOverride(k.clone()));
        }
        set_path(&mut root, &path, override_value(v))?;
    }
    for s in &src.sets {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| ConfigError::BadOverride(s.clone()))?;
        let path: Vec<String> = k.trim().split('.').map(str::to_owned).collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::BadOverride(s.clone()));
        }
        set_path(&mut root, &path, override_value(v.trim()))?;
    }
    Ok(root)
}

/// Loads, merges, and validates the configuration.
pub fn load(src: &Sources) -> Result<Config, ConfigError> {
    let root = merged_table(src)?;
    let raw: RawConfig =
        serde_path_to_error::deserialize(toml::Value::Table(root)).map_err(|e| {
            let key = e.path().to_string();
            invalid(key, e.into_inner().to_string())
        })?;
    validate(raw)
}

fn range(key: &str, v: u64, lo: u64, hi: u64, unit: &str) -> Result<u64, ConfigError> {
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(invalid(
            key,
            format!("{v} is out of range: expected {lo}..={hi} {unit}"),
        ))
    }
}

fn ms(key: &str, v: u64, lo: u64, hi: u64) -> Result<Duration, ConfigError> {
    range(key, v, lo, hi, "ms").map(Duration::from_millis)
}

/// The default socket path: `$XDG_RUNTIME_DIR/mdrelay/relay.sock`, else
/// `/tmp/mdrelay-<uid>/relay.sock`.
pub fn default_socket_path() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("mdrelay").join("relay.sock"),
        _ => PathBuf::from(format!(
            "/tmp/mdrelay-{}",
            rustix::process::getuid().as_raw()
        ))
        .join("relay.sock"),
    }
}

fn placement(key: &str, v: &toml::Value) -> Result<Placement, ConfigError> {
    match v {
        toml::Value::String(s) if s == "none" => Ok(Placement::Unpinned),
        toml::Value::String(s) if s == "auto" => Ok(Placement::Auto),
        toml::Value::Integer(i) if *i >= 0 => Ok(Placement::Core(*i as usize)),
        other => Err(invalid(
            key,
            format!("{other} is not a placement: expected \"none\", \"auto\" or a core id ≥ 0"),
        )),
    }
}

fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let r = &raw.relay;
    let socket_path = if r.socket_path.is_empty() {
        default_socket_path()
    } else {
        PathBuf::from(&r.socket_path)
    };
    let socket_mode = u32::from_str_radix(&r.socket_mode, 8)
        .ok()
        .filter(|m| *m & !0o777 == 0 && *m & 0o600 == 0o600)
        .ok_or_else(|| {
            invalid(
                "relay.socket_mode",
                format!(
                    "`{}` is not an octal mode with owner read/write (e.g. \"600\", \"660\")",
                    r.socket_mode
                ),
            )
        })?;
    let relay = RelayConfig {
        socket_path,
        socket_mode,
        max_subscribers: range(
            "relay.max_subscribers",
            r.max_subscribers,
            1,
            65_536,
            "subscribers",
        )? as usize,
        max_pending_bytes: range(
            "relay.max_pending_bytes",
            r.max_pending_bytes,
            65_536,
            1 << 34,
            "bytes",
        )? as usize,
        heartbeat_interval: ms(
            "relay.heartbeat_interval_ms",
            r.heartbeat_interval_ms,
            10,
            3_600_000,
        )?,
        drain_timeout: ms("relay.drain_timeout_ms", r.drain_timeout_ms, 0, 600_000)?,
        hello_timeout: ms("relay.hello_timeout_ms", r.hello_timeout_ms, 0, 10_000)?,
        allowed_uids: r
            .allowed_uids
            .iter()
            .enumerate()
            .map(|(i, &u)| {
                range(
                    &format!("relay.allowed_uids[{i}]"),
                    u,
                    0,
                    u64::from(u32::MAX),
                    "uid",
                )
                .map(|u| u as u32)
            })
            .collect::<Result<_, _>>()?,
    };

    let c = &raw.consumer;
    let idle = match c.idle.as_str() {
        "backoff" => IdleStrategy::Backoff {
            spin_iterations: range("consumer.spin_iterations", c.spin_iterations, 0, 100_000_000, "iterations")? as u32,
            yield_iterations: range("consumer.yield_iterations", c.yield_iterations, 0, 100_000_000, "iterations")? as u32,
            park_max: Duration::from_micros(range("consumer.park_max_us", c.park_max_us, 1, 1_000_000, "µs")?),
        },
        "busy_spin" => IdleStrategy::BusySpin,
        "yield" => IdleStrategy::Yield,
        "park" => IdleStrategy::Park,
        other => {
            return Err(invalid(
                "consumer.idle",
                format!("`{other}` is not an idle strategy: expected \"busy_spin\", \"yield\", \"backoff\" or \"park\""),
            ))
        }
    };
    let consumer = ConsumerConfig {
        idle,
        batch_frames: range(
            "consumer.batch_frames",
            c.batch_frames,
            1,
            1 << 20,
            "frames",
        )? as usize,
    };

    let replay = if raw.replay.enabled {
        let rp = &raw.replay;
        let listen: SocketAddr = rp.listen.parse().map_err(|_| {
            invalid(
                "replay.listen",
                format!("`{}` is not an ip:port address", rp.listen),
            )
        })?;
        if !(rp.speed.is_finite() && rp.speed >= 0.0) {
            return Err(invalid(
                "replay.speed",
                format!(
                    "{} must be a finite number ≥ 0 (0 = as fast as possible)",
                    rp.speed
                ),
            ));
        }
        let mut sources = Vec::new();
        for (name, path) in &rp.sources {
            let key = format!("replay.sources.{name}");
            let venue = Venue::from_name(name)
                .ok_or_else(|| invalid(&key, format!("`{name}` is not a venue: expected one of binance, coinbase, kraken, kraken_v1")))?;
            let paths: Vec<PathBuf> = match path {
                OneOrMany::One(p) => vec![PathBuf::from(p)],
                OneOrMany::Many(ps) => ps.iter().map(PathBuf::from).collect(),
            };
            if paths.is_empty() {
                return Err(invalid(&key, "lists no recording"));
            }
            sources.push((venue, paths));
        }
        Some(ReplayConfig {
            listen,
            speed: rp.speed,
            loop_forever: rp.loop_forever,
            sources,
        })
    } else {
        None
    };

    let d = &raw.feed_defaults;
    let mut feeds = Vec::new();
    for (name, f) in &raw.feeds {
        let key = |k: &str| format!("feeds.{name}.{k}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(invalid(
                format!("feeds.{name}"),
                "feed names use letters, digits, `_` and `-` only",
            ));
        }
        if f.enabled == Some(false) {
            continue;
        }
        let venue = Venue::from_name(&f.venue).ok_or_else(|| {
            invalid(
                key("venue"),
                format!(
                    "`{}` is not a venue: expected one of binance, coinbase, kraken, kraken_v1",
                    f.venue
                ),
            )
        })?;
        let url = if f.url.contains("{replay}") {
            if replay.is_none() {
                return Err(invalid(
                    key("url"),
                    "uses {replay} but [replay] is not enabled",
                ));
            }
            f.url.clone()
        } else {
            f.url.clone()
        };
        if !(url.starts_with("ws://") || url.starts_with("wss://")) {
            return Err(invalid(
                key("url"),
                format!("`{url}` is not a ws:// or wss:// URL"),
            ));
        }
        if f.symbols.is_empty() || f.symbols.iter().any(String::is_empty) {
            return Err(invalid(
                key("symbols"),
                "must list at least one non-empty venue symbol",
            ));
        }
        if f.channels.is_empty() {
            return Err(invalid(key("channels"), "must list at least one channel"));
        }
        let transport = match f.transport.as_deref().unwrap_or(&d.transport) {
            "channel" => Transport::Channel,
            "ring" => Transport::Ring,
            other => {
                return Err(invalid(
                    key("transport"),
                    format!("`{other}` is not a transport: expected \"channel\" or \"ring\""),
                ))
            }
        };
        let backpressure = match f.backpressure.as_deref().unwrap_or(&d.backpressure) {
            "block" => Backpressure::Block,
            "drop_newest" => Backpressure::DropNewest,
            "drop_oldest" if transport == Transport::Ring => Backpressure::DropOldest,
            "drop_oldest" => {
                return Err(invalid(key("backpressure"), "\"drop_oldest\" needs transport = \"ring\" (a channel cannot evict)"))
            }
            "conflate" => Backpressure::Conflate,
            other => {
                return Err(invalid(
                    key("backpressure"),
                    format!("`{other}` is not a policy: expected \"block\", \"drop_newest\", \"drop_oldest\" or \"conflate\""),
                ))
            }
        };
        let reconnect_initial = ms(
            &key("reconnect_initial_ms"),
            f.reconnect_initial_ms.unwrap_or(d.reconnect_initial_ms),
            1,
            600_000,
        )?;
        let reconnect_max = ms(
            &key("reconnect_max_ms"),
            f.reconnect_max_ms.unwrap_or(d.reconnect_max_ms),
            1,
            3_600_000,
        )?;
        if reconnect_max < reconnect_initial {
            return Err(invalid(
                key("reconnect_max_ms"),
                "must be ≥ reconnect_initial_ms",
            ));
        }
        if let Some(r) = &f.rest_url {
            if !(r.starts_with("http://") || r.starts_with("https://")) {
                return Err(invalid(
                    key("rest_url"),
                    format!("`{r}` is not an http:// or https:// URL"),
                ));
            }
        }
        if venue == Venue::Binance
            && f.channels.iter().any(|c| c.starts_with("depth"))
            && f.rest_url.is_none()
        {
            return Err(invalid(
                key("rest_url"),
                "a Binance depth channel needs rest_url for book snapshots",
            ));
        }
        feeds.push(FeedConfig {
            name: name.clone(),
            venue,
            url,
            rest_url: f.rest_url.clone(),
            tls_ca_file: f.tls_ca_file.as_ref().map(PathBuf::from),
            subscription: Subscription {
                symbols: f.symbols.clone(),
                channels: f.channels.clone(),
                book_depth: range(
                    &key("book_depth"),
                    f.book_depth.unwrap_or(0),
                    0,
                    100_000,
                    "levels",
                )? as u32,
            },
            queue_capacity_frames: range(
                &key("queue_capacity_frames"),
                f.queue_capacity_frames.unwrap_or(d.queue_capacity_frames),
                1,
                1 << 24,
                "frames",
            )? as usize,
            transport,
            backpressure,
            block_timeout: ms(
                &key("block_timeout_ms"),
                f.block_timeout_ms.unwrap_or(d.block_timeout_ms),
                0,
                60_000,
            )?,
            connect_timeout: ms(
                &key("connect_timeout_ms"),
                f.connect_timeout_ms.unwrap_or(d.connect_timeout_ms),
                1,
                600_000,
            )?,
            reconnect_initial,
            reconnect_max,
            stale_after: ms(
                &key("stale_after_ms"),
                f.stale_after_ms.unwrap_or(d.stale_after_ms),
                100,
                86_400_000,
            )?,
            record: f.record.unwrap_or(d.record),
            max_connection_age: match f.max_connection_age_ms.or(match venue {
                // Binance closes every connection after 24 h: leave before it does.
                Venue::Binance => Some(BINANCE_MAX_CONNECTION_AGE_MS),
                _ => None,
            }) {
                None | Some(0) => None,
                Some(v) => Some(ms(&key("max_connection_age_ms"), v, 1_000, 7 * 86_400_000)?),
            },
            source: FeedSource::WebSocket,
        });
    }
    // feeds_defaults keys are validated even when every feed overrides them.
    range(
        "feed_defaults.queue_capacity_frames",
        d.queue_capacity_frames,
        1,
        1 << 24,
        "frames",
    )?;

    let mut threads = BTreeMap::new();
    for (name, v) in &raw.threads {
        let key = format!("threads.{name}");
        let known = name == "consumer"
            || name == "writer"
            || name == "http"
            || name
                .strip_prefix("collector-")
                .is_some_and(|f| feeds.iter().any(|fc| fc.name == f) || raw.feeds.contains_key(f));
        if !known {
            return Err(invalid(
                &key,
                "is not a thread: expected consumer, writer, http or collector-<feed>",
            ));
        }
        let p = placement(&key, v)?;
        if p == Placement::Auto && name != "consumer" {
            return Err(invalid(&key, "\"auto\" applies to the consumer only"));
        }
        threads.insert(name.clone(), p);
    }

    let writer = validate_writer(&raw.writer, threads.get("writer"))?;
    Ok(Config {
        nats: nats::validate(&raw.nats)?,
        relay,
        consumer,
        feeds,
        replay,
        threads,
        status_interval: ms("status.interval_ms", raw.status.interval_ms, 100, 3_600_000)?,
        http: validate_http(&raw.http)?,
        bars: validate_bars(&raw.bars)?,
        writer,
        persist: Persist {
            trades: raw.writer.trades,
            quotes: raw.writer.quotes,
            bars: raw.writer.bars,
        },
        recording: RecordingConfig {
            dir: nonempty_path("recording.dir", &raw.recording.dir)?,
            capacity_messages: range(
                "recording.capacity_messages",
                raw.recording.capacity_messages,
                1,
                1 << 24,
                "messages",
            )? as usize,
            flush_interval: ms(
                "recording.flush_interval_ms",
                raw.recording.flush_interval_ms,
                10,
                3_600_000,
            )?,
        },
    })
}

fn nonempty_path(key: &str, s: &str) -> Result<PathBuf, ConfigError> {
    if s.is_empty() {
        Err(invalid(key, "must not be empty"))
    } else {
        Ok(PathBuf::from(s))
    }
}

fn validate_http(h: &RawHttp) -> Result<Option<HttpConfig>, ConfigError> {
    let snapshot_interval = ms(
        "http.snapshot_interval_ms",
        h.snapshot_interval_ms,
        10,
        60_000,
    )?;
    let book_depth = range("http.book_depth", h.book_depth, 1, 5000, "levels")? as usize;
    if !h.enabled {
        return Ok(None);
    }
    let listen = h.listen.parse().map_err(|_| {
        invalid(
            "http.listen",
            format!("`{}` is not an ip:port address", h.listen),
        )
    })?;
    Ok(Some(HttpConfig {
        listen,
        snapshot_interval,
        book_depth,
    }))
}

fn validate_bars(b: &RawBars) -> Result<BarsConfig, ConfigError> {
    let mut intervals = Vec::with_capacity(b.intervals_ms.len());
    for (i, &v) in b.intervals_ms.iter().enumerate() {
        intervals.push(ms(
            &format!("bars.intervals_ms[{i}]"),
            v,
            1,
            7 * 86_400_000,
        )?);
    }
    let history = range("bars.history_bars", b.history_bars, 0, 1_000_000, "bars")? as usize;
    let grace = ms("bars.close_grace_ms", b.close_grace_ms, 0, 3_600_000)?;
    let bars = crate::market::bars::BarConfig::new(&intervals, history, grace)
        .map_err(|e| invalid("bars.intervals_ms", e.to_string()))?;
    Ok(BarsConfig {
        bars,
        timer_interval: ms("bars.timer_interval_ms", b.timer_interval_ms, 1, 60_000)?,
        close_on_shutdown: b.close_on_shutdown,
        clock: BarClock::Wall,
    })
}

fn validate_writer(
    w: &RawWriter,
    placement: Option<&Placement>,
) -> Result<Option<WriterConfig>, ConfigError> {
    let retry_initial = ms("writer.retry_initial_ms", w.retry_initial_ms, 1, 3_600_000)?;
    let retry_max = ms("writer.retry_max_ms", w.retry_max_ms, 1, 3_600_000)?;
    if retry_max < retry_initial {
        return Err(invalid(
            "writer.retry_max_ms",
            format!("{} is below writer.retry_initial_ms", w.retry_max_ms),
        ));
    }
    let cfg = WriterConfig {
        data_dir: nonempty_path("writer.data_dir", &w.data_dir)?,
        capacity_records: range(
            "writer.capacity_records",
            w.capacity_records,
            1,
            1 << 24,
            "records",
        )? as usize,
        flush_interval: ms(
            "writer.flush_interval_ms",
            w.flush_interval_ms,
            1,
            3_600_000,
        )?,
        flush_bytes: range("writer.flush_bytes", w.flush_bytes, 1, 1 << 30, "bytes")? as usize,
        max_open_files: range(
            "writer.max_open_files",
            w.max_open_files,
            1,
            65_536,
            "files",
        )? as usize,
        fsync_on_close: w.fsync_on_close,
        retry_initial,
        retry_max,
        error_log_interval: ms(
            "writer.error_log_interval_ms",
            w.error_log_interval_ms,
            1,
            86_400_000,
        )?,
        core: match placement {
            Some(Placement::Core(c)) => Some(*c),
            _ => None,
        },
    };
    Ok(w.enabled.then_some(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_sets(sets: &[&str]) -> Result<Config, ConfigError> {
        load(&Sources {
            sets: sets.iter().map(|s| s.to_string()).collect(),
            ..Sources::default()
        })
    }

    #[test]
    fn builtin_defaults_are_valid_and_define_the_demo_feeds() {
        let c = with_sets(&[]).unwrap();
        let names: Vec<(&str, Venue)> =
            c.feeds.iter().map(|f| (f.name.as_str(), f.venue)).collect();
        assert_eq!(
            names,
            [
                ("binance", Venue::Binance),
                ("coinbase", Venue::Coinbase),
                ("kraken_v1", Venue::KrakenV1)
            ]
        );
        assert!(c.replay.is_some());
        assert_eq!(c.relay.socket_mode, 0o600);
    }

    #[test]
    fn layers_apply_in_order() {
        let c = load(&Sources {
            env_vars: vec![
                ("MDRELAY__RELAY__MAX_SUBSCRIBERS".into(), "7".into()),
                ("MDRELAY__CONSUMER__BATCH_FRAMES".into(), "9".into()),
            ],
            sets: vec!["relay.max_subscribers=8".into()],
            ..Sources::default()
        })
        .unwrap();
        assert_eq!(c.relay.max_subscribers, 8, "--set beats the environment");
        assert_eq!(c.consumer.batch_frames, 9, "environment beats the file");
        let c = with_sets(&["feeds.binance.symbols=[\"BTCUSDT\", \"ETHUSDT\"]"]).unwrap();
        assert_eq!(c.feeds[0].subscription.symbols, ["BTCUSDT", "ETHUSDT"]);
    }

    #[test]
    fn bad_values_name_the_key_the_value_and_the_expectation() {
        let cases: &[(&str, &str)] = &[
            ("relay.max_subscribers=0", "relay.max_subscribers"),
            ("relay.max_subscribers=\"many\"", "relay.max_subscribers"),
            ("relay.socket_mode=\"777x\"", "relay.socket_mode"),
            ("relay.no_such_key=1", "unknown field `no_such_key`"),
            ("consumer.idle=\"nap\"", "consumer.idle"),
            ("feeds.binance.venue=\"nasdaq\"", "feeds.binance.venue"),
            ("feeds.binance.url=\"http://x\"", "feeds.binance.url"),
            (
                "feeds.binance.backpressure=\"pray\"",
                "feeds.binance.backpressure",
            ),
            (
                "feeds.binance.queue_capacity_frames=0",
                "feeds.binance.queue_capacity_frames",
            ),
            ("replay.speed=-1.0", "replay.speed"),
            ("replay.listen=\"nowhere\"", "replay.listen"),
            ("threads.consumer=\"fast\"", "threads.consumer"),
            ("threads.gpu=1", "threads.gpu"),
        ];
        for (set, want) in cases {
            let err = with_sets(&[set]).unwrap_err().to_string();
            assert!(err.contains(want), "{set}: {err}");
        }
        assert!(matches!(
            with_sets(&["novalue"]),
            Err(ConfigError::BadOverride(_))
        ));
    }

    #[test]
    fn environment_overlays_load_and_apply() {
        for env in ["test", "production"] {
            let c = load(&Sources {
                file: Some(PathBuf::from(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/config/default.toml"
                ))),
                env_name: Some(env.into()),
                ..Sources::default()
            })
            .unwrap_or_else(|e| panic!("{env}: {e}"));
            assert!(!c.feeds.is_empty(), "{env}");
        }
        let c = load(&Sources {
            file: Some(PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/config/default.toml"
            ))),
            env_name: Some("test".into()),
            ..Sources::default()
        })
        .unwrap();
        assert!(
            c.feeds[0].queue_capacity_frames <= 64,
            "test overlay has tiny buffers"
        );
        assert!(matches!(
            load(&Sources {
                env_name: Some("../etc".into()),
                ..Sources::default()
            }),
            Err(ConfigError::Invalid { .. })
        ));
    }

    #[test]
    fn default_socket_path_is_per_user() {
        let p = default_socket_path();
        assert!(p.ends_with("relay.sock"));
    }
}
