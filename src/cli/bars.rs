//! `mdrelay bars`: recent OHLCV bars of one instrument from a running relay, read from its HTTP
//! query API (`/v1/instruments`, `/v1/bars`) and printed as a table.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use super::args::{load_config, ConfigArgs};
use super::http::{query_value, RelayHttp};

/// Longest one request to the relay may take, connect to last byte.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What to print.
pub struct Query<'a> {
    pub symbol: &'a str,
    pub venue: Option<&'a str>,
    pub interval: &'a str,
    pub limit: usize,
    pub open: bool,
    pub http: Option<&'a str>,
    pub config: &'a ConfigArgs,
}

/// Runs the command.
pub fn run(q: &Query<'_>) -> anyhow::Result<ExitCode> {
    let addr = match q.http {
        Some(a) => a.to_owned(),
        None => {
            let cfg = load_config(q.config)?;
            match cfg.http {
                Some(h) => h.listen.to_string(),
                None => anyhow::bail!("http is disabled in the configuration; pass --http ADDR"),
            }
        }
    };
    let http = RelayHttp::new(&addr, REQUEST_TIMEOUT);
    let venue = match q.venue {
        Some(v) => v.to_owned(),
        None => {
            let list = http.get_json("/v1/instruments")?;
            let venues: Vec<String> = list
                .get("instruments")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter(|i| i.get("symbol").and_then(Value::as_str) == Some(q.symbol))
                        .filter_map(|i| i.get("venue").and_then(Value::as_str))
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            match venues.as_slice() {
                [one] => one.clone(),
                [] => anyhow::bail!("the relay has no instrument with symbol {}", q.symbol),
                many => anyhow::bail!(
                    "symbol {} exists on several venues ({}); pass --venue",
                    q.symbol,
                    many.join(", ")
                ),
            }
        }
    };
    let path = format!(
        "/v1/bars?venue={}&symbol={}&interval={}&limit={}&open={}",
        query_value(&venue),
        query_value(q.symbol),
        query_value(q.interval),
        q.limit,
        q.open
    );
    let v = http.get_json(&path)?;
    let bars = v
        .get("bars")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let field = |b: &Value, k: &str| -> String {
        match b.get(k) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => "-".into(),
            Some(other) => other.to_string(),
        }
    };
    writeln!(
        out,
        "{venue} {} {} bars ({} shown)",
        q.symbol,
        q.interval,
        bars.len()
    )?;
    writeln!(
        out,
        "{:<30} {:>14} {:>14} {:>14} {:>14} {:>18} {:>16} {:>7}",
        "start (UTC)", "open", "high", "low", "close", "volume", "vwap", "trades"
    )?;
    let open_start = v.get("open_bar_start_ns").and_then(Value::as_u64);
    let now_open =
        |b: &Value| open_start.is_some() && b.get("start_ns").and_then(Value::as_u64) == open_start;
    for b in &bars {
        writeln!(
            out,
            "{:<30} {:>14} {:>14} {:>14} {:>14} {:>18} {:>16} {:>7}{}",
            field(b, "start"),
            field(b, "open"),
            field(b, "high"),
            field(b, "low"),
            field(b, "close"),
            field(b, "volume"),
            field(b, "vwap"),
            field(b, "trade_count"),
            if now_open(b) { "  (open)" } else { "" }
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
