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
//! Each section's typed configuration belongs to the stage that uses it (`RelayConfig` in
//! `relay`, `FeedConfig` in `feed`, …): this module only builds them, and re-exports them so a
//! caller finds everything here. Runs once on the main thread at start-up.
//!
//! - `error`: [`ConfigError`] and the range checks every section shares.
//! - `layers`: [`Sources`] and the merge of defaults, file, overlay, environment and flags.
//! - `raw`: the TOML shape ([`RawConfig`]).
//! - `validate`: raw → typed, section by section.
//! - `nats`: the `[nats]` section (raw shape and validation).
//! - `preflight`: [`preflight`], the start-up checks that need the file system (socket
//!   directory and path length, CSV and recording directories, TLS and NATS files), shared by
//!   `mdrelay run` and `mdrelay check-config`.

use std::collections::BTreeMap;
use std::time::Duration;

mod error;
mod layers;
mod nats;
mod preflight;
mod raw;
mod validate;

pub use crate::base::affinity::Placement;
pub use crate::base::log::{LogConfig, LogFormat};
pub use crate::bridge::config::NatsConfig;
pub use crate::consumer::config::{
    BarClock, BarsConfig, CoalesceConfig, ConsumerConfig, IdleStrategy, Persist,
};
pub use crate::feed::config::{
    FeedConfig, FeedSource, BINANCE_MAX_CONNECTION_AGE_MS, BINANCE_ROTATE_AFTER_MS,
};
pub use crate::persist::config::{RecordingConfig, WriterConfig};
pub use crate::relay::config::{default_socket_path, RelayConfig};
pub use crate::serve::config::HttpConfig;
pub use crate::sim::config::ReplayConfig;
pub use error::ConfigError;
pub use layers::{merged_table, Sources};
pub use preflight::preflight;
pub use raw::RawConfig;

use error::invalid;

/// The built-in defaults: `config/default.toml`, compiled in.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

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
    pub nats: NatsConfig,
    /// The process log (`[log]`).
    pub log: LogConfig,
}

/// Loads, merges, and validates the configuration.
pub fn load(src: &Sources) -> Result<Config, ConfigError> {
    let root = merged_table(src)?;
    let raw: RawConfig =
        serde_path_to_error::deserialize(toml::Value::Table(root)).map_err(|e| {
            let key = error::serde_key(e.path());
            invalid(key, e.into_inner().to_string())
        })?;
    validate::validate(raw)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::market::instrument::Venue;

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
                ("binance_usdm", Venue::BinanceUsdm),
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

    /// Defect 10: an unknown channel name was accepted and the feed looped on reconnects.
    #[test]
    fn defect10_unknown_channel_names_the_key_and_lists_the_accepted_names() {
        for (set, key, accepted) in [
            (
                "feeds.binance.channels=[\"trade\", \"nosuch\"]",
                "feeds.binance.channels",
                "bookTicker",
            ),
            (
                "feeds.coinbase.channels=[\"nosuch\"]",
                "feeds.coinbase.channels",
                "level2_batch",
            ),
            (
                "feeds.kraken_v1.channels=[\"nosuch\"]",
                "feeds.kraken_v1.channels",
                "spread",
            ),
        ] {
            let err = with_sets(&[set]).unwrap_err().to_string();
            assert!(err.contains(key), "{set}: {err}");
            assert!(err.contains("`nosuch`"), "{set}: {err}");
            assert!(err.contains(accepted), "{set}: {err}");
        }
        let err = with_sets(&[
            "feeds.kraken_v1.venue=\"kraken\"",
            "feeds.kraken_v1.channels=[\"spread\"]",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("feeds.kraken_v1.channels"),
            "v2 has no spread: {err}"
        );
        let c = with_sets(&[
            "feeds.binance.channels=[\"aggTrade\", \"depth\"]",
            "feeds.coinbase.channels=[\"ticker\", \"level2_batch\"]",
        ])
        .unwrap();
        assert_eq!(c.feeds[0].subscription.channels, ["aggTrade", "depth"]);
    }

    #[test]
    fn futures_feeds_validate_open_interest_and_channels_naming_the_key() {
        let c = with_sets(&["feeds.binance_usdm.open_interest_interval_ms=5000"]).unwrap();
        let f = c.feeds.iter().find(|f| f.name == "binance_usdm").unwrap();
        assert_eq!(f.open_interest_interval, Some(Duration::from_secs(5)));
        assert_eq!(c.feeds[0].open_interest_interval, None, "default: off");
        for (sets, want) in [
            (
                &["feeds.binance_usdm.open_interest_interval_ms=10"][..],
                "feeds.binance_usdm.open_interest_interval_ms",
            ),
            (
                &["feeds.binance.open_interest_interval_ms=5000"][..],
                "`feeds.binance.open_interest_interval_ms`: venue binance has no open interest",
            ),
            (
                &["feeds.binance_usdm.channels=[\"depth@250ms\"]"][..],
                "feeds.binance_usdm.channels",
            ),
        ] {
            let err = with_sets(sets).unwrap_err().to_string();
            assert!(err.contains(want), "{sets:?}: {err}");
        }
        let c = with_sets(&[
            "feeds.binance_usdm.venue=\"binance_coinm\"",
            "feeds.binance_usdm.symbols=[\"BTCUSD_PERP\"]",
            "feeds.binance_usdm.channels=[\"markPrice@1s\", \"forceOrder\", \"depth@500ms\"]",
        ])
        .unwrap();
        assert!(c.feeds.iter().any(|f| f.venue == Venue::BinanceCoinm));
    }

    /// Defect 10: a newline inside a `--set` value silently dropped the rest of the value.
    #[test]
    fn defect10_newline_in_an_override_value_is_refused_naming_the_key() {
        for sets in [
            &["relay.max_subscribers=5\nrelay.socket_mode=\"777\""][..],
            &["feeds.binance.symbols=[\"BTCUSDT\",\n\"ETHUSDT\"]"],
            &["relay.max_subscribers=5\r"],
        ] {
            let err = with_sets(sets).unwrap_err().to_string();
            assert!(err.contains("line break"), "{sets:?}: {err}");
            let key = sets[0].split_once('=').unwrap().0;
            assert!(err.contains(key), "{sets:?}: {err}");
        }
        let err = load(&Sources {
            env_vars: vec![(
                "MDRELAY__RELAY__MAX_SUBSCRIBERS".into(),
                "5\nrelay.socket_mode=\"777\"".into(),
            )],
            ..Sources::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("relay.max_subscribers"), "{err}");
        assert!(err.contains("MDRELAY__RELAY__MAX_SUBSCRIBERS"), "{err}");
        assert!(err.contains("line break"), "{err}");
        // An escaped newline inside a TOML string is one line, and fine.
        with_sets(&["relay.socket_path=\"/tmp/a\\nb/relay.sock\""]).unwrap();
    }

    /// Defect 10: the OS error text appeared twice, once in the message and once more as its
    /// source in the `{:#}` chain `main` prints.
    #[test]
    fn defect10_os_error_text_appears_once() {
        let e = load(&Sources {
            file: Some(PathBuf::from("/nonexistent/mdrelay.toml")),
            ..Sources::default()
        })
        .unwrap_err();
        let text = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(text.matches("No such file").count(), 1, "{text}");
        assert!(text.contains("/nonexistent/mdrelay.toml"), "{text}");
    }

    #[test]
    fn bad_log_values_name_the_key() {
        for (set, key) in [
            ("log.format=\"xml\"", "log.format"),
            ("log.level=\"verbose\"", "log.level"),
            ("log.level=\"mdrelay=loud\"", "log.level"),
        ] {
            let err = with_sets(&[set]).unwrap_err().to_string();
            assert!(err.contains(key), "{set}: {err}");
        }
    }
}
