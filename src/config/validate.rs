//! Validation: the raw layer ([`RawConfig`]) into the typed configuration, section by section.
//! Every check names the key it refuses; sections are checked in the same order as before the
//! split, so the same configuration reports the same first error.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::error::{invalid, is_bare, key_segment, ms, nonempty_path, range, ConfigError};
use super::nats;
use super::raw::{
    OneOrMany, RawBars, RawConfig, RawConsumer, RawFeed, RawFeedDefaults, RawHttp, RawLog,
    RawRecording, RawRelay, RawReplay, RawWriter,
};
use super::{
    BarClock, BarsConfig, CoalesceConfig, Config, ConsumerConfig, FeedConfig, FeedSource,
    HttpConfig, IdleStrategy, LogConfig, LogFormat, Persist, Placement, RecordingConfig,
    RelayConfig, ReplayConfig, WriterConfig, BINANCE_MAX_CONNECTION_AGE_MS,
    BINANCE_ROTATE_AFTER_MS,
};
use crate::base::log::check_level;
use crate::feed::venue::Subscription;
use crate::market::instrument::Venue;
use crate::persist::layout::Layout;
use crate::queue::{Backpressure, Transport};
use crate::relay::config::default_socket_path;

/// A `[threads]` value: "none", "auto" or a core id.
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

/// Validates every section; the first invalid key is the error.
pub(super) fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let relay = relay(&raw.relay)?;
    let consumer = consumer(&raw.consumer)?;
    let replay = replay(&raw.replay)?;
    let d = &raw.feed_defaults;
    let mut feeds = Vec::new();
    for (name, f) in &raw.feeds {
        feeds.extend(feed(name, f, d, replay.is_some())?);
    }
    // feeds_defaults keys are validated even when every feed overrides them.
    range(
        "feed_defaults.queue_capacity_frames",
        d.queue_capacity_frames,
        1,
        1 << 24,
        "frames",
    )?;
    let threads = threads(&raw, &feeds)?;
    let writer = writer(&raw.writer, threads.get("writer"))?;
    Ok(Config {
        nats: nats::validate(&raw.nats)?,
        relay,
        consumer,
        feeds,
        replay,
        threads,
        status_interval: ms("status.interval_ms", raw.status.interval_ms, 100, 3_600_000)?,
        http: http(&raw.http)?,
        bars: bars(&raw.bars)?,
        writer,
        persist: Persist {
            trades: raw.writer.trades,
            quotes: raw.writer.quotes,
            bars: raw.writer.bars,
            marks: raw.writer.mark,
            liquidations: raw.writer.liquidations,
            open_interest: raw.writer.open_interest,
        },
        recording: recording(&raw.recording)?,
        log: log(&raw.log)?,
    })
}

/// `[log]`.
fn log(l: &RawLog) -> Result<LogConfig, ConfigError> {
    let format = LogFormat::from_name(&l.format).ok_or_else(|| {
        invalid(
            "log.format",
            format!(
                "`{}` is not a log format: expected \"text\" or \"json\"",
                l.format
            ),
        )
    })?;
    check_level(&l.level).map_err(|m| invalid("log.level", m))?;
    Ok(LogConfig {
        format,
        level: l.level.clone(),
    })
}

/// `[relay]`.
fn relay(r: &RawRelay) -> Result<RelayConfig, ConfigError> {
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
    Ok(RelayConfig {
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
    })
}

/// `[consumer]`.
fn consumer(c: &RawConsumer) -> Result<ConsumerConfig, ConfigError> {
    let idle = match c.idle.as_str() {
        "backoff" => IdleStrategy::Backoff {
            spin_iterations: range("consumer.spin_iterations", c.spin_iterations, 0, 100_000_000, "iterations")? as u32,
            yield_iterations: range("consumer.yield_iterations", c.yield_iterations, 0, 100_000_000, "iterations")? as u32,
            park_max: Duration::from_micros(range("consumer.park_max_us", c.park_max_us, 1, 1_000_000, "µs")?),
        },
        // Measured (docs/BENCHMARKS.md, "Idle strategy on 2 cores"): on 2 cores yield beats
        // busy_spin end to end, since the spinner holds a core the other threads need.
        "auto" if crate::base::affinity::has_spare_core() => IdleStrategy::BusySpin,
        "auto" => IdleStrategy::Yield,
        "busy_spin" => IdleStrategy::BusySpin,
        "yield" => IdleStrategy::Yield,
        "park" => IdleStrategy::Park,
        other => {
            return Err(invalid(
                "consumer.idle",
                format!("`{other}` is not an idle strategy: expected \"auto\", \"busy_spin\", \"yield\", \"backoff\" or \"park\""),
            ))
        }
    };
    Ok(ConsumerConfig {
        idle,
        batch_frames: range(
            "consumer.batch_frames",
            c.batch_frames,
            1,
            1 << 20,
            "frames",
        )? as usize,
        coalesce: CoalesceConfig {
            budget_ns: range(
                "consumer.coalesce_budget_us",
                c.coalesce_budget_us,
                0,
                10_000,
                "µs",
            )? * 1_000,
            max_bytes: range(
                "consumer.coalesce_max_bytes",
                c.coalesce_max_bytes,
                1,
                16 << 20,
                "bytes",
            )? as usize,
        },
        publish_interval: crate::consumer::thread::PUBLISH_INTERVAL,
    })
}

/// `[replay]`: `None` when disabled.
fn replay(rp: &RawReplay) -> Result<Option<ReplayConfig>, ConfigError> {
    if !rp.enabled {
        return Ok(None);
    }
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
        let venue = Venue::from_name(name).ok_or_else(|| {
            invalid(
                &key,
                format!(
                    "`{name}` is not a venue: expected one of {}",
                    Venue::ALL.map(Venue::name).join(", ")
                ),
            )
        })?;
        let paths: Vec<PathBuf> = match path {
            OneOrMany::One(p) => vec![PathBuf::from(p)],
            OneOrMany::Many(ps) => ps.iter().map(PathBuf::from).collect(),
        };
        if paths.is_empty() {
            return Err(invalid(&key, "lists no recording"));
        }
        sources.push((venue, paths));
    }
    Ok(Some(ReplayConfig {
        listen,
        speed: rp.speed,
        loop_forever: rp.loop_forever,
        sources,
    }))
}

/// `[feeds.NAME]` over `[feed_defaults]`: `None` when the feed is disabled.
fn feed(
    name: &str,
    f: &RawFeed,
    d: &RawFeedDefaults,
    replay_enabled: bool,
) -> Result<Option<FeedConfig>, ConfigError> {
    let key = |k: &str| format!("feeds.{name}.{k}");
    if !is_bare(name) {
        return Err(invalid(
            format!("feeds.{}", key_segment(name)),
            "feed names use letters, digits, `_` and `-` only",
        ));
    }
    if f.enabled == Some(false) {
        return Ok(None);
    }
    let venue = Venue::from_name(&f.venue).ok_or_else(|| {
        invalid(
            key("venue"),
            format!(
                "`{}` is not a venue: expected one of {}",
                f.venue,
                Venue::ALL.map(Venue::name).join(", ")
            ),
        )
    })?;
    let url = if f.url.contains("{replay}") {
        if !replay_enabled {
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
    let accepted = crate::feed::venue::channels(venue);
    if let Some(c) = f.channels.iter().find(|c| !accepted.contains(&c.as_str())) {
        return Err(invalid(
            key("channels"),
            format!(
                "`{c}` is not a {} channel: expected one of {}",
                f.venue,
                accepted.join(", ")
            ),
        ));
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
    if venue.is_binance()
        && f.channels.iter().any(|c| c.starts_with("depth"))
        && f.rest_url.is_none()
    {
        return Err(invalid(
            key("rest_url"),
            "a Binance depth channel needs rest_url for book snapshots",
        ));
    }
    let open_interest_interval = match f.open_interest_interval_ms.unwrap_or(0) {
        0 => None,
        v => {
            let k = key("open_interest_interval_ms");
            if crate::feed::open_interest::path(venue).is_none() {
                return Err(invalid(
                    k,
                    format!("venue {venue} has no open interest to poll (binance_usdm and binance_coinm do); use 0"),
                ));
            }
            if f.rest_url.is_none() {
                return Err(invalid(k, "polling open interest needs rest_url"));
            }
            Some(ms(&k, v, 1_000, 3_600_000)?)
        }
    };
    let max_connection_age = match f.max_connection_age_ms.or(match venue {
        // Binance closes every connection after 24 h: leave before it does.
        Venue::Binance | Venue::BinanceUsdm | Venue::BinanceCoinm => {
            Some(BINANCE_MAX_CONNECTION_AGE_MS)
        }
        _ => None,
    }) {
        None | Some(0) => None,
        Some(v) => Some(ms(&key("max_connection_age_ms"), v, 1_000, 7 * 86_400_000)?),
    };
    Ok(Some(FeedConfig {
        name: name.to_owned(),
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
        max_connection_age,
        rotate_after: rotate_after(venue, f, max_connection_age, &key)?,
        source: FeedSource::WebSocket,
        open_interest_interval,
    }))
}

/// A feed's `rotate_after_ms`: Binance venues only (make-before-break needs the per-stream ids
/// [`crate::feed::rotation`] de-duplicates the overlap by); an explicit value must come before
/// `max_connection_age_ms`, or the hard reconnect would always win.
fn rotate_after(
    venue: Venue,
    f: &RawFeed,
    max_age: Option<Duration>,
    key: &dyn Fn(&str) -> String,
) -> Result<Option<Duration>, ConfigError> {
    let k = key("rotate_after_ms");
    let supported = crate::feed::rotation::supports(venue);
    let v = match f.rotate_after_ms {
        Some(0) => return Ok(None),
        Some(_) if !supported => {
            return Err(invalid(
                k,
                format!("venue {venue} has no per-stream ids to splice two connections by (binance, binance_usdm and binance_coinm do); use 0 (max_connection_age_ms still reconnects)"),
            ))
        }
        Some(v) => v,
        None if supported => BINANCE_ROTATE_AFTER_MS,
        None => return Ok(None),
    };
    let d = ms(&k, v, 1_000, 7 * 86_400_000)?;
    match max_age {
        Some(m) if f.rotate_after_ms.is_some() && d >= m => Err(invalid(
            k,
            format!(
                "{v} ms is not below max_connection_age_ms ({} ms): the hard reconnect would come first",
                m.as_millis()
            ),
        )),
        // The default with a shorter explicit max_connection_age_ms: the hard reconnect rules.
        Some(m) if d >= m => Ok(None),
        _ => Ok(Some(d)),
    }
}

/// `[threads]`: every name a thread that exists, every placement valid.
fn threads(
    raw: &RawConfig,
    feeds: &[FeedConfig],
) -> Result<BTreeMap<String, Placement>, ConfigError> {
    let mut threads = BTreeMap::new();
    for (name, v) in &raw.threads {
        let key = format!("threads.{}", key_segment(name));
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
    Ok(threads)
}

/// `[recording]`.
fn recording(r: &RawRecording) -> Result<RecordingConfig, ConfigError> {
    Ok(RecordingConfig {
        dir: nonempty_path("recording.dir", &r.dir)?,
        layout: Layout::from_name(&r.layout).ok_or_else(|| {
            invalid(
                "recording.layout",
                format!(
                    "`{}` is not a recording layout: expected \"mdrelay\" or \"hftbacktest\"",
                    r.layout
                ),
            )
        })?,
        capacity_messages: range(
            "recording.capacity_messages",
            r.capacity_messages,
            1,
            1 << 24,
            "messages",
        )? as usize,
        flush_interval: ms(
            "recording.flush_interval_ms",
            r.flush_interval_ms,
            10,
            3_600_000,
        )?,
    })
}

/// `[http]`: `None` when disabled (its other keys are checked all the same).
fn http(h: &RawHttp) -> Result<Option<HttpConfig>, ConfigError> {
    let snapshot_interval = ms(
        "http.snapshot_interval_ms",
        h.snapshot_interval_ms,
        10,
        60_000,
    )?;
    let book_depth = range("http.book_depth", h.book_depth, 1, 5000, "levels")? as usize;
    let request_deadline = ms(
        "http.request_deadline_ms",
        h.request_deadline_ms,
        100,
        600_000,
    )?;
    let max_connections = range(
        "http.max_connections",
        h.max_connections,
        1,
        65_536,
        "connections",
    )? as usize;
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
        request_deadline,
        max_connections,
    }))
}

/// `[bars]`.
fn bars(b: &RawBars) -> Result<BarsConfig, ConfigError> {
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

/// `[writer]` (and `[threads] writer`): `None` when CSV is off (its keys are checked all the same).
fn writer(
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
    use std::time::Duration;

    use crate::config::{load, Sources};

    fn with_sets(sets: &[&str]) -> Result<crate::config::Config, crate::config::ConfigError> {
        load(&Sources {
            sets: sets.iter().map(|s| s.to_string()).collect(),
            ..Sources::default()
        })
    }

    /// The default idle strategy spins only where the consumer can have a core of its own.
    #[test]
    fn auto_idle_spins_only_with_a_core_to_spare() {
        use crate::config::IdleStrategy;
        let want = match crate::base::affinity::has_spare_core() {
            true => IdleStrategy::BusySpin,
            false => IdleStrategy::Yield,
        };
        assert_eq!(
            with_sets(&[]).unwrap().consumer.idle,
            want,
            "the default is auto"
        );
        let c = with_sets(&["consumer.idle=\"auto\""]).unwrap();
        assert_eq!(c.consumer.idle, want);
        let err = with_sets(&["consumer.idle=\"spin\""])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("consumer.idle") && err.contains("\"auto\""),
            "{err}"
        );
    }

    /// Issue 17: the HTTP server's limits are configured, defaulted and checked at start-up.
    #[test]
    fn http_deadline_and_connection_cap_are_validated_naming_the_key() {
        let c = with_sets(&[]).unwrap();
        let h = c.http.unwrap();
        assert_eq!(h.request_deadline, Duration::from_secs(5));
        assert_eq!(h.max_connections, 1024);
        for (set, key) in [
            ("http.request_deadline_ms=0", "http.request_deadline_ms"),
            (
                "http.request_deadline_ms=600001",
                "http.request_deadline_ms",
            ),
            ("http.max_connections=0", "http.max_connections"),
            ("http.max_connections=65537", "http.max_connections"),
        ] {
            let err = with_sets(&[set]).unwrap_err().to_string();
            assert!(err.contains(key), "{set}: {err}");
        }
        let c = with_sets(&["http.request_deadline_ms=250", "http.max_connections=3"]).unwrap();
        let o = c.http.unwrap().server_options();
        assert_eq!(
            (o.request_deadline, o.max_connections),
            (Duration::from_millis(250), 3)
        );
    }
}
