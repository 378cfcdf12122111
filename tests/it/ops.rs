//! Running mdrelay for real: a log redirected to a file has no colour escapes, `[log] format =
//! "json"` makes stderr JSON lines only, and `mdrelay check-config` validates as `run` does
//! (values and the file system) and prints an effective configuration that loads back the same.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mdrelay::config::{self, Sources};

use crate::util;

/// Runs `cmd` with stderr redirected to a file (not a pipe, not a terminal); its status, stdout
/// and the file's bytes.
fn with_stderr_in_file(mut cmd: Command, dir: &Path) -> (Output, Vec<u8>) {
    let log = dir.join("stderr.log");
    let out = cmd
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .output()
        .unwrap();
    (out, std::fs::read(&log).unwrap())
}

/// `mdrelay replay --max` of the small Kraken trade capture, on a socket in `dir`, nothing
/// written to disk, plus `extra` flags.
fn short_replay(dir: &Path, extra: &[&str]) -> Command {
    let mut c = util::mdrelay_in(dir);
    c.args(["replay", "--max", "data/kraken_v1/trade_20210417.txt.gz"])
        .args(["--set", "http.enabled=false"])
        .args(["--set", "consumer.idle=\"park\""])
        .args(["--set", "writer.enabled=false"])
        .arg("--set")
        .arg(format!(
            "relay.socket_path={:?}",
            dir.join("relay.sock").display().to_string()
        ));
    for e in extra {
        c.args(["--set", e]);
    }
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_redirected_log_has_no_colour_escapes() {
    let _wd = util::Watchdog::new("log_no_colour", 120);
    let tmp = tempfile::tempdir().unwrap();
    let (out, log) = with_stderr_in_file(
        {
            let mut c = util::mdrelay_in(tmp.path());
            c.arg("check-config").stdout(Stdio::null());
            c
        },
        tmp.path(),
    );
    assert!(out.status.success(), "{}", text(&log));
    assert!(!log.contains(&0x1b), "check-config: {}", text(&log));

    let (out, log) = with_stderr_in_file(short_replay(tmp.path(), &[]), tmp.path());
    let log_text = text(&log);
    assert!(out.status.success(), "{log_text}");
    assert!(
        log_text.contains("relay running"),
        "an info event: {log_text}"
    );
    assert!(log_text.contains("accounting balanced"), "{log_text}");
    assert!(!log.contains(&0x1b), "replay: {log_text}");
}

#[test]
fn json_format_makes_every_stderr_line_a_json_object() {
    let _wd = util::Watchdog::new("log_json", 120);
    let tmp = tempfile::tempdir().unwrap();
    let (out, log) = with_stderr_in_file(
        short_replay(tmp.path(), &["log.format=\"json\""]),
        tmp.path(),
    );
    let log = text(&log);
    assert!(out.status.success(), "{log}");
    let events: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l}")))
        .collect();
    let message = |e: &serde_json::Value| e["fields"]["message"].as_str().unwrap_or("").to_owned();
    assert!(
        events
            .iter()
            .any(|e| message(e) == "relay running" && e["level"] == "INFO"),
        "{log}"
    );
    // The banner and the summary, printed as text in the text format, are log events here.
    assert!(
        events.iter().any(|e| message(e).contains("relay socket")),
        "{log}"
    );
    assert!(
        events
            .iter()
            .any(|e| message(e).contains("accounting balanced") && e["threadName"] == "main"),
        "{log}"
    );

    // A fatal error after the configuration is loaded is a JSON line too.
    let mut sock = tmp.path().to_path_buf();
    sock.push("file");
    std::fs::write(&sock, "x").unwrap();
    let out = short_replay(
        tmp.path(),
        &[
            "log.format=\"json\"",
            &format!("relay.socket_path={:?}", sock.display().to_string()),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    let line: serde_json::Value = serde_json::from_str(stderr.trim()).expect(&stderr);
    assert_eq!(line["level"], "ERROR", "{stderr}");
    assert!(message(&line).contains("relay.socket_path"), "{stderr}");
}

/// `mdrelay check-config` with `args`: exit code, stdout, stderr.
fn check_config(runtime: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = util::mdrelay_in(runtime)
        .arg("check-config")
        .args(args)
        .output()
        .unwrap();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn check_config_accepts_the_shipped_configurations() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [
        &[][..],
        &["--config", "config/default.toml"],
        &["--config", "config/live.toml"],
        &["--config", "config/live.toml", "--env", "production"],
        &["--config", "config/default.toml", "--env", "test"],
    ] {
        let (code, stdout, stderr) = check_config(tmp.path(), args);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        assert!(stdout.contains("[relay]"), "{args:?}: {stdout}");
        assert!(stdout.contains("[log]"), "{args:?}: {stdout}");
    }
    assert!(
        !tmp.path().join("mdrelay").exists(),
        "check-config creates no socket directory"
    );
}

#[test]
fn check_config_and_run_refuse_the_same_bad_configurations_naming_the_key() {
    let _wd = util::Watchdog::new("check_config_refuses", 120);
    let tmp = tempfile::tempdir().unwrap();
    let (code, _, stderr) = check_config(tmp.path(), &["--set", "relay.max_subscribers=0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("relay.max_subscribers"), "{stderr}");
    let (code, _, stderr) = check_config(tmp.path(), &["--set", "log.format=\"xml\""]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("log.format"), "{stderr}");

    // A regular file where the CSV directory must be (root ignores permission bits; a file in
    // the way fails for everyone).
    let file = tmp.path().join("csv");
    std::fs::write(&file, "not a directory").unwrap();
    let sets = [
        "--set".to_owned(),
        "writer.enabled=true".to_owned(),
        "--set".to_owned(),
        format!("writer.data_dir={:?}", file.display().to_string()),
    ];
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = check_config(tmp.path(), &sets);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stdout.is_empty(),
        "nothing printed for an invalid configuration"
    );
    assert!(stderr.contains("writer.data_dir"), "{stderr}");
    assert!(stderr.contains("is not a directory"), "{stderr}");
    // `run` fails at start-up with the same message, before anything starts.
    let out = util::mdrelay_in(tmp.path())
        .arg("run")
        .args(&sets)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stderr), stderr, "run and check-config agree");
    assert!(
        !tmp.path().join("mdrelay").exists(),
        "no socket directory created"
    );

    let long = format!("/tmp/{}/relay.sock", "x".repeat(110));
    let (code, _, stderr) = check_config(
        tmp.path(),
        &["--set", &format!("relay.socket_path={long:?}")],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("relay.socket_path"), "{stderr}");
}

#[test]
fn the_printed_configuration_loads_back_as_the_same_configuration() {
    let tmp = tempfile::tempdir().unwrap();
    let sets = [
        "relay.max_subscribers=7",
        "feeds.binance.symbols=[\"BTCUSDT\", \"ETHUSDT\"]",
        "log.level=\"warn,mdrelay::feed=debug\"",
        "nats.url=\"nats://user:secret@10.0.0.5:4222\"",
    ];
    let mut args = Vec::new();
    for s in sets {
        args.extend(["--set", s]);
    }
    let (code, printed, stderr) = check_config(tmp.path(), &args);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!printed.contains("secret"), "password redacted: {printed}");
    assert!(printed.contains("nats://***@10.0.0.5:4222"), "{printed}");
    let file: PathBuf = tmp.path().join("effective.toml");
    std::fs::write(&file, &printed).unwrap();

    // Compared as typed configurations (Debug of the library's `config::load`; the NATS URL
    // shows redacted in Debug, as in the file) …
    let direct = config::load(&Sources {
        sets: sets.iter().map(|s| s.to_string()).collect(),
        ..Sources::default()
    })
    .unwrap();
    let reloaded = config::load(&Sources {
        file: Some(file.clone()),
        ..Sources::default()
    })
    .unwrap();
    assert_eq!(format!("{direct:?}"), format!("{reloaded:?}"));
    // … and as the TOML check-config prints for the printed file: identical.
    let (code, reprinted, stderr) = check_config(tmp.path(), &["--config", file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(reprinted, printed);
}
