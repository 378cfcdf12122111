//! The systemd unit (`packaging/mdrelay.service`) and the configuration it runs
//! (`packaging/mdrelay.toml` with the `production` overlay): `systemd-analyze verify` accepts
//! the unit, its stop timeout covers the relay's shutdown under that configuration, and the
//! paths and limits of the two agree (socket under the runtime directory, data under the state
//! directory, descriptors for every subscriber).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mdrelay::config::{self, Config, Sources};

use crate::util;

/// Where the unit expects the binary and the configuration (`make install`'s defaults).
const INSTALLED_BIN: &str = "/usr/local/bin/mdrelay";
const INSTALLED_CONF_DIR: &str = "/etc/mdrelay";

/// Files `make install` puts in `/etc/mdrelay`: installed name, file in the repository.
const INSTALLED_CONFIGS: [(&str, &str); 2] = [
    ("mdrelay.toml", "packaging/mdrelay.toml"),
    (
        "environments/production.toml",
        "config/environments/production.toml",
    ),
];

/// The unit's text.
fn unit_text() -> String {
    std::fs::read_to_string(util::repo("packaging/mdrelay.service")).expect("read the unit")
}

/// Every `Key=value` of the unit, by key (a key may repeat), sections flattened.
fn unit_keys(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with(['#', ';', '[']) {
            continue;
        }
        let (k, v) = line.split_once('=').expect("Key=value line");
        keys.entry(k.trim().to_owned())
            .or_default()
            .push(v.trim().to_owned());
    }
    keys
}

/// The one value of `key`.
fn one<'a>(keys: &'a BTreeMap<String, Vec<String>>, key: &str) -> &'a str {
    match keys.get(key).map(Vec::as_slice) {
        Some([v]) => v,
        other => panic!("{key}: expected one value, found {other:?}"),
    }
}

/// A systemd time span as the unit writes it: `45s`, `45`, `2min`, `500ms`.
fn timespan(v: &str) -> Duration {
    let digits = v.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let n: u64 = digits.parse().unwrap_or_else(|_| panic!("time span {v:?}"));
    match &v[digits.len()..] {
        "" | "s" | "sec" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "min" | "m" => Duration::from_secs(60 * n),
        unit => panic!("time span {v:?}: unit {unit:?}"),
    }
}

/// The arguments of the unit's `key` command after the binary and `subcommand`.
fn command_args(keys: &BTreeMap<String, Vec<String>>, key: &str, subcommand: &str) -> Vec<String> {
    let line = one(keys, key);
    assert!(
        !line.contains(['"', '\'', '$']),
        "{key}: no quoting: {line}"
    );
    let mut words = line.split_whitespace().map(str::to_owned);
    assert_eq!(words.next().as_deref(), Some(INSTALLED_BIN), "{key}");
    assert_eq!(words.next().as_deref(), Some(subcommand), "{key}");
    words.collect()
}

/// The configuration `ExecStart` runs: its flags, with `/etc/mdrelay` laid out in a temporary
/// directory from the repository's files, as `make install` lays it out.
fn unit_config(keys: &BTreeMap<String, Vec<String>>) -> (tempfile::TempDir, Config) {
    let etc = tempfile::tempdir().expect("temp dir");
    for (installed, repo) in INSTALLED_CONFIGS {
        let dst = etc.path().join(installed);
        std::fs::create_dir_all(dst.parent().expect("parent")).expect("mkdir");
        std::fs::copy(util::repo(repo), &dst).expect("copy config");
    }
    let mut src = Sources::default();
    let args = command_args(keys, "ExecStart", "run");
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| panic!("{flag} without a value"));
        match flag.as_str() {
            "--config" => {
                let rel = Path::new(value)
                    .strip_prefix(INSTALLED_CONF_DIR)
                    .unwrap_or_else(|_| panic!("--config {value} is not under /etc/mdrelay"));
                src.file = Some(etc.path().join(rel));
            }
            "--env" => src.env_name = Some(value.clone()),
            "--set" => src.sets.push(value.clone()),
            other => panic!("ExecStart flag {other} not understood by this test"),
        }
    }
    let cfg = config::load(&src).unwrap_or_else(|e| panic!("the unit's configuration: {e}"));
    (etc, cfg)
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze is not installed: skipping the unit verification");
        return;
    }
    let text = unit_text();
    assert!(text.contains(INSTALLED_BIN));
    let verify = |bin: &str| {
        // verify checks that the commands exist: point them at the binary under test.
        let dir = tempfile::tempdir().expect("temp dir");
        let unit = dir.path().join("mdrelay.service");
        std::fs::write(&unit, text.replace(INSTALLED_BIN, bin)).expect("write unit");
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit)
            .output()
            .expect("run systemd-analyze");
        // It may also warn about the host's own units: keep the lines about this one.
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let ours: Vec<String> = stderr
            .lines()
            .filter(|l| l.contains("mdrelay.service"))
            .map(str::to_owned)
            .collect();
        (out.status.success(), ours, stderr)
    };

    let (ok, ours, stderr) = verify(env!("CARGO_BIN_EXE_mdrelay"));
    assert!(ok && ours.is_empty(), "systemd-analyze verify:\n{stderr}");

    // The check is not vacuous: a missing binary is reported.
    let (ok, ours, stderr) = verify("/nonexistent/mdrelay");
    assert!(
        !ok || !ours.is_empty(),
        "a missing binary passed:\n{stderr}"
    );
}

#[test]
fn unit_stop_timeout_covers_the_shutdown_of_its_configuration() {
    let keys = unit_keys(&unit_text());
    let (_etc, cfg) = unit_config(&keys);
    let stop = timespan(one(&keys, "TimeoutStopSec"));
    assert!(
        stop > cfg.relay.drain_timeout,
        "TimeoutStopSec {stop:?} must exceed relay.drain_timeout_ms {:?}",
        cfg.relay.drain_timeout
    );

    // The budget the unit's comment adds up, step by step, from this configuration.
    let connect = cfg
        .feeds
        .iter()
        .map(|f| f.connect_timeout)
        .max()
        .unwrap_or_default();
    let collectors = 2 * connect;
    let writer = if cfg.writer.is_some() {
        Duration::from_secs(5)
    } else {
        Duration::ZERO
    };
    let http = if cfg.http.is_some() {
        mdrelay::serve::http::POLL_INTERVAL
    } else {
        Duration::ZERO
    };
    #[cfg(feature = "nats")]
    let nats_drain = mdrelay::bridge::nats::DRAIN_TIMEOUT;
    #[cfg(not(feature = "nats"))]
    let nats_drain = Duration::from_secs(10);
    let nats = if cfg.nats.enabled {
        Duration::from_secs(1) + nats_drain
    } else {
        Duration::ZERO
    };
    let budget = collectors + cfg.relay.drain_timeout + writer + http + nats;
    assert!(
        stop >= budget,
        "TimeoutStopSec {stop:?} < shutdown budget {budget:?} (collectors {collectors:?}, \
         drain {:?}, writer {writer:?}, http {http:?}, nats {nats:?})",
        cfg.relay.drain_timeout
    );

    // check-config validates exactly what run will run.
    assert_eq!(
        command_args(&keys, "ExecStartPre", "check-config"),
        command_args(&keys, "ExecStart", "run")
    );
}

#[test]
fn unit_and_configuration_agree_on_paths_and_limits() {
    let keys = unit_keys(&unit_text());
    let (_etc, cfg) = unit_config(&keys);
    let runtime = PathBuf::from("/run").join(one(&keys, "RuntimeDirectory"));
    let state = PathBuf::from("/var/lib").join(one(&keys, "StateDirectory"));

    // ProtectSystem=strict: the service writes only under these two.
    assert_eq!(one(&keys, "ProtectSystem"), "strict");
    assert_eq!(cfg.relay.socket_path.parent(), Some(runtime.as_path()));
    let writer = cfg.writer.as_ref().expect("CSV on in production");
    assert!(writer.data_dir.starts_with(&state), "{:?}", writer.data_dir);
    assert!(
        cfg.recording.dir.starts_with(&state),
        "{:?}",
        cfg.recording.dir
    );
    assert_eq!(Path::new(one(&keys, "WorkingDirectory")), state);

    // Local subscribers in the service's group reach the socket: group rw on the socket, group
    // search on the runtime directory, which the relay leaves as systemd made it.
    assert_eq!(cfg.relay.socket_mode & 0o060, 0o060, "socket_mode");
    let dir_mode = u32::from_str_radix(one(&keys, "RuntimeDirectoryMode"), 8).expect("octal");
    assert_eq!(dir_mode & 0o010, 0o010, "RuntimeDirectoryMode");
    let user = one(&keys, "User");
    assert_eq!(one(&keys, "Group"), user);
    let sysusers =
        std::fs::read_to_string(util::repo("packaging/mdrelay.sysusers")).expect("sysusers");
    assert!(
        sysusers
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["u", user])),
        "packaging/mdrelay.sysusers creates {user}"
    );

    // A server runs live feeds, not the demo exchange.
    assert!(cfg.replay.is_none());
    assert!(!cfg.feeds.is_empty());
    assert!(cfg.feeds.iter().all(|f| f.url.starts_with("wss://")));

    // Descriptors: every subscriber, every CSV file, a few per feed, and spare.
    let nofile: usize = one(&keys, "LimitNOFILE").parse().expect("a number");
    let need = cfg.relay.max_subscribers + writer.max_open_files + 3 * cfg.feeds.len() + 32;
    assert!(nofile >= need, "LimitNOFILE {nofile} < {need}");
}
