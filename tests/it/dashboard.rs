//! The Grafana dashboard (`docs/grafana/mdrelay.json`) queries only what `/metrics` exports:
//! every `mdrelay_*` name in its PromQL (panels, rows' nested panels, template variables) is a
//! sample name a running relay serves, with CSV, raw recording and a subscriber on so that
//! every conditional family is present.

use std::collections::BTreeSet;
use std::time::Duration;

use mdrelay::run;
use serde_json::Value;

use crate::util;

/// Grafana's own variables, not the dashboard's.
const BUILTIN_VARIABLES: [&str; 4] = ["__rate_interval", "__interval", "__range", "__auto"];

fn dashboard() -> Value {
    let path = util::repo("docs/grafana/mdrelay.json");
    let text = std::fs::read_to_string(&path).expect("read the dashboard");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every query string in `v`: panel targets' `expr` and template variables' `query` and
/// `definition`, at any depth (rows nest their panels when collapsed).
fn queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query" | "definition", Value::String(s)) => out.push(s.clone()),
                    _ => queries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Identifiers in `text` that start with `prefix` (and are not the tail of a longer one).
fn identifiers<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices(prefix) {
        if text[..i].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        let rest = &text[i + prefix.len()..];
        let len = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
        out.push(&text[i..i + prefix.len() + len]);
    }
    out
}

/// Every panel at any depth (rows' nested panels included).
fn panels(v: &Value, out: &mut Vec<Value>) {
    for p in v["panels"].as_array().into_iter().flatten() {
        out.push(p.clone());
        panels(p, out);
    }
}

#[test]
fn dashboard_is_an_importable_grafana_dashboard() {
    let d = dashboard();
    let input = &d["__inputs"][0];
    assert_eq!(input["name"], "DS_PROMETHEUS");
    assert_eq!(input["pluginId"], "prometheus");
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    assert!(d["title"].is_string() && d["uid"].is_string());

    let mut all = Vec::new();
    panels(&d, &mut all);
    let ids: BTreeSet<u64> = all.iter().filter_map(|p| p["id"].as_u64()).collect();
    assert_eq!(ids.len(), all.len(), "every panel has its own id");
    let mut with_targets = 0;
    for p in &all {
        let title = p["title"].as_str().unwrap_or("?");
        assert!(p["gridPos"]["w"].is_u64(), "{title}: gridPos");
        let Some(targets) = p["targets"].as_array() else {
            assert_eq!(p["type"], "row", "{title}: a panel without targets");
            continue;
        };
        with_targets += 1;
        assert!(!targets.is_empty(), "{title}");
        for t in targets.iter().chain([p]) {
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        }
        for t in targets {
            assert!(t["expr"].as_str().is_some_and(|e| !e.is_empty()), "{title}");
        }
    }
    assert!(with_targets >= 20, "{with_targets} panels");

    // Every `$variable` a query uses is defined, and every query's brackets balance.
    let defined: BTreeSet<String> = d["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .map(|v| v["name"].as_str().expect("variable name").to_owned())
        .collect();
    assert!(["instance", "venue", "feed"]
        .iter()
        .all(|v| defined.contains(*v)));
    let mut qs = Vec::new();
    queries(&d, &mut qs);
    for q in &qs {
        for var in identifiers(q, "$") {
            let name = &var[1..];
            assert!(
                defined.contains(name) || BUILTIN_VARIABLES.contains(&name),
                "{q}: ${name} is not defined"
            );
        }
        let mut stack = Vec::new();
        for c in q.chars() {
            match c {
                '(' | '{' | '[' => stack.push(c),
                ')' | '}' | ']' => {
                    let open = stack.pop();
                    let want = match c {
                        ')' => '(',
                        '}' => '{',
                        _ => '[',
                    };
                    assert_eq!(open, Some(want), "unbalanced: {q}");
                }
                _ => {}
            }
        }
        assert!(stack.is_empty(), "unbalanced: {q}");
        assert_eq!(q.matches('"').count() % 2, 0, "quotes: {q}");
    }
}

#[test]
fn dashboard_uses_only_metrics_the_relay_exports() {
    let _wd = util::Watchdog::new("dashboard_metrics", 120);
    let mut qs = Vec::new();
    queries(&dashboard(), &mut qs);
    let used: BTreeSet<String> = qs
        .iter()
        .flat_map(|q| identifiers(q, "mdrelay_"))
        .map(str::to_owned)
        .collect();
    assert!(used.len() >= 15, "only {} metrics: {used:?}", used.len());

    // A relay with every conditional family: CSV (writer_*), a recording feed (recorder_*), a
    // subscriber (subscriber_*).
    let exchange = util::binance_exchange(false);
    let (_dir, sock) = util::temp_socket();
    let data = tempfile::tempdir().expect("temp dir");
    let mut sets = util::binance_only(&sock, exchange.local_addr());
    sets.extend(util::csv_into(&data.path().join("csv")));
    sets.push("feeds.binance.record=true".into());
    sets.push(format!(
        "recording.dir={:?}",
        data.path().join("raw").display().to_string()
    ));
    let relay = run::start(util::config(&sets)).expect("relay starts");
    let addr = relay.http_addr().expect("http enabled by default");
    let _subscriber = util::subscriber(&sock);

    let exported = || -> BTreeSet<String> {
        let (status, body) = util::http_get(addr, "/metrics");
        assert_eq!(status, 200);
        mdrelay::serve::exposition::parse_exposition(&body)
            .unwrap_or_else(|e| panic!("{e}\n{body}"))
            .into_iter()
            .map(|s| s.name)
            .collect()
    };
    // Subscriber series appear once the consumer has published (every 500 ms).
    let mut missing = Vec::new();
    util::wait_until(Duration::from_secs(20), || {
        let have = exported();
        missing = used
            .iter()
            .filter(|m| !have.contains(*m))
            .cloned()
            .collect();
        missing.is_empty()
    });
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics /metrics does not export: {missing:?}"
    );

    relay.shutdown();
    exchange.stop();
}

#[test]
fn identifiers_are_found_whole() {
    assert_eq!(
        identifiers(
            "sum(rate(mdrelay_a_total{x=\"$feed\"}[$__rate_interval])) / xmdrelay_b",
            "mdrelay_"
        ),
        ["mdrelay_a_total"]
    );
    assert_eq!(
        identifiers("{a=~\"$feed\"}[$__rate_interval]", "$"),
        ["$feed", "$__rate_interval"]
    );
}
