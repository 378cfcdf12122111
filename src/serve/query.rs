//! The query API's handlers (`GET /v1/instruments`, `/v1/ticker`, `/v1/bars`, `/v1/book`): they
//! answer from the snapshot the consumer publishes ([`crate::consumer::snapshot`]) on the `http`
//! thread. They load the current version (lock-free) and answer from it; the consumer never
//! waits for them.

use std::fmt::Write as _;

use serde::Serialize;

use crate::consumer::snapshot::{InstrumentView, QueryState, SharedQuery};
use crate::market::bars::{Bar, Decimal128, IntervalLabel};
use crate::market::event::Level;
use crate::market::fixed::{Decimal, Rate, ABSENT};
use crate::market::instrument::InstrumentId;
use crate::serve::http::{Request, Response};
use crate::wire::json::{BarJson, Origin};
use crate::wire::protocol::BarFrame;

/// Most bars one `/v1/bars` answers when `limit` is not given.
pub const DEFAULT_BARS_LIMIT: usize = 100;
/// Book levels per side `/v1/book` answers when `depth` is not given.
pub const DEFAULT_BOOK_DEPTH: usize = 10;

/// Parsed query parameters, each name at most once, every name known to the route.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(req: &Request<'_>, allowed: &[&str]) -> Result<Params, Response> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(req.query.unwrap_or("").as_bytes()) {
            if !allowed.contains(&&*k) {
                return Err(bad_param(
                    &k,
                    &format!(
                        "unknown parameter; this endpoint takes {}",
                        allowed.join(", ")
                    ),
                ));
            }
            if out.iter().any(|(n, _)| *n == k) {
                return Err(bad_param(&k, "given more than once"));
            }
            out.push((k.into_owned(), v.into_owned()));
        }
        Ok(Params(out))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn required(&self, name: &str) -> Result<&str, Response> {
        match self.get(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(bad_param(name, "required")),
        }
    }

    /// An integer in `lo..=hi`, or `default` when absent.
    fn number(&self, name: &str, default: usize, lo: usize, hi: usize) -> Result<usize, Response> {
        let Some(v) = self.get(name) else {
            return Ok(default);
        };
        match v.parse::<usize>() {
            Ok(n) if (lo..=hi).contains(&n) => Ok(n),
            _ => Err(bad_param(
                name,
                &format!("`{v}` is not an integer in {lo}..={hi}"),
            )),
        }
    }
}

/// 400 naming the parameter.
fn bad_param(name: &str, detail: &str) -> Response {
    Response::error(
        400,
        "bad request",
        &[("parameter", name), ("detail", detail)],
    )
}

/// Answers `/v1/…` paths; `None` for any other path.
pub fn handle(state: &SharedQuery, req: &Request<'_>) -> Option<Response> {
    let r = match req.path {
        "/v1/instruments" => instruments(state, req),
        "/v1/ticker" => ticker(state, req),
        "/v1/bars" => bars(state, req),
        "/v1/book" => book(state, req),
        _ => return None,
    };
    let mut r = r.unwrap_or_else(|e| e);
    r.headers.push(("Cache-Control", "no-store".into()));
    Some(r)
}

fn json_response<T: Serialize>(body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(b) => Response::json(200, b),
        Err(_) => Response::internal_error(),
    }
}

/// The instrument named by the `venue` and `symbol` parameters, as `f` reads it from the current
/// version of the snapshot.
fn with_instrument<T>(
    state: &SharedQuery,
    p: &Params,
    f: impl FnOnce(&QueryState, &InstrumentView) -> T,
) -> Result<T, Response> {
    let venue = p.required("venue")?;
    let symbol = p.required("symbol")?;
    let s = state.load();
    match s.find(venue, symbol) {
        Some(v) => Ok(f(&s, v)),
        None => Err(Response::error(
            404,
            "unknown instrument",
            &[("venue", venue), ("symbol", symbol)],
        )),
    }
}

#[derive(Serialize)]
struct InstrumentJson {
    venue: Box<str>,
    symbol: Box<str>,
    id: InstrumentId,
    feed: Box<str>,
}

fn instruments(state: &SharedQuery, req: &Request<'_>) -> Result<Response, Response> {
    Params::parse(req, &[])?;
    let (list, as_of) = {
        let s = state.load();
        let list: Vec<InstrumentJson> = s
            .instruments
            .iter()
            .map(|v| InstrumentJson {
                venue: v.venue.clone(),
                symbol: v.symbol.clone(),
                id: v.id,
                feed: v.feed.clone(),
            })
            .collect();
        (list, s.published_ns)
    };
    Ok(json_response(&serde_json::json!({
        "as_of_ns": as_of,
        "instruments": list,
    })))
}

/// An exact decimal as a JSON string, `null` for ABSENT.
fn dec(v: i64) -> serde_json::Value {
    if v == ABSENT {
        serde_json::Value::Null
    } else {
        Decimal(v).to_string().into()
    }
}

/// An exact rate (10⁻¹⁸ units) as a JSON string, `null` for ABSENT.
fn rate(v: i64) -> serde_json::Value {
    if v == ABSENT {
        serde_json::Value::Null
    } else {
        Rate(v).to_string().into()
    }
}

fn ticker(state: &SharedQuery, req: &Request<'_>) -> Result<Response, Response> {
    let p = Params::parse(req, &["venue", "symbol"])?;
    let (venue, symbol, last_trade, quote, st, as_of, mark, oi) =
        with_instrument(state, &p, |s, v| {
            (
                v.venue.clone(),
                v.symbol.clone(),
                v.last_trade,
                v.quote,
                v.session,
                s.published_ns,
                v.mark,
                v.open_interest,
            )
        })?;
    let trade = last_trade.map(|(t, recv)| {
        serde_json::json!({
            "price": dec(t.price),
            "size": dec(t.size),
            "side": t.side.name(),
            "trade_id": t.trade_id.map(|id| id.to_string()),
            "exchange_ts_ns": t.exchange_ts_ns,
            "recv_ts_ns": recv,
        })
    });
    let bbo = quote.map(|(q, recv)| {
        serde_json::json!({
            "bid_price": dec(q.bid_price),
            "bid_size": dec(q.bid_size),
            "ask_price": dec(q.ask_price),
            "ask_size": dec(q.ask_size),
            "exchange_ts_ns": q.exchange_ts_ns,
            "recv_ts_ns": recv,
        })
    });
    let session = serde_json::json!({
        "trade_count": st.trade_count,
        "volume": Decimal128(st.volume).to_string(),
        "vwap": dec(if st.trade_count == 0 { ABSENT } else { st.vwap() }),
        "min_price": dec(st.min_price),
        "max_price": dec(st.max_price),
        "last_price": dec(st.last_price),
        "first_trade_ns": (st.trade_count > 0).then_some(st.first_trade_ns),
        "last_trade_ns": (st.trade_count > 0).then_some(st.last_trade_ns),
    });
    let mut body = serde_json::json!({
        "venue": venue,
        "symbol": symbol,
        "as_of_ns": as_of,
        "last_trade": trade,
        "bbo": bbo,
        "session": session,
    });
    // Derivatives only: an instrument that never had a mark (spot) has no `mark` key, so the
    // spot answer is exactly what it was before derivatives existed.
    if let Some(obj) = body.as_object_mut() {
        if let Some((m, recv)) = mark {
            obj.insert(
                "mark".into(),
                serde_json::json!({
                    "mark_price": dec(m.mark_price),
                    "index_price": dec(m.index_price),
                    "settle_price": dec(m.settle_price),
                    "funding_rate": rate(m.funding_rate),
                    "next_funding_ns": m.next_funding_ns,
                    "exchange_ts_ns": m.exchange_ts_ns,
                    "recv_ts_ns": recv,
                }),
            );
        }
        if let Some((o, recv)) = oi {
            obj.insert(
                "open_interest".into(),
                serde_json::json!({
                    "open_interest": dec(o.open_interest),
                    "value": dec(o.value),
                    "exchange_ts_ns": o.exchange_ts_ns,
                    "recv_ts_ns": recv,
                }),
            );
        }
    }
    Ok(json_response(&body))
}

fn bars(state: &SharedQuery, req: &Request<'_>) -> Result<Response, Response> {
    let p = Params::parse(
        req,
        &["venue", "symbol", "interval", "limit", "format", "open"],
    )?;
    let interval = p.required("interval")?;
    let csv = match p.get("format").unwrap_or("json") {
        "json" => false,
        "csv" => true,
        other => {
            return Err(bad_param(
                "format",
                &format!("`{other}` is not json or csv"),
            ))
        }
    };
    let include_open = match p.get("open").unwrap_or("false") {
        "true" | "1" => true,
        "false" | "0" => false,
        other => {
            return Err(bad_param(
                "open",
                &format!("`{other}` is not true or false"),
            ))
        }
    };
    let limit_max = {
        let s = state.load();
        s.history_bars.max(1)
    };
    let limit = p.number("limit", DEFAULT_BARS_LIMIT.min(limit_max), 1, limit_max)?;
    let found = with_instrument(state, &p, |s, v| {
        let slot = s
            .intervals_ns
            .iter()
            .position(|&ns| IntervalLabel(ns).to_string() == interval);
        let labels: Vec<String> = s
            .intervals_ns
            .iter()
            .map(|&ns| IntervalLabel(ns).to_string())
            .collect();
        slot.map(|i| {
            let h = &v.history[i];
            let mut bars: Vec<Bar> = h
                .iter()
                .skip(h.len().saturating_sub(limit))
                .copied()
                .collect();
            let mut open_start = None;
            if include_open {
                if let Some(b) = v
                    .open_bars
                    .iter()
                    .find(|b| b.interval_ns == s.intervals_ns[i])
                {
                    bars.push(*b);
                    open_start = Some(b.start_ns);
                    if bars.len() > limit {
                        bars.remove(0);
                    }
                }
            }
            (v.venue.clone(), v.symbol.clone(), bars, open_start)
        })
        .ok_or(labels)
    })?;
    let (venue, symbol, bars, open_start) = found.map_err(|labels| {
        bad_param(
            "interval",
            &format!(
                "`{interval}` is not a configured interval ({})",
                labels.join(", ")
            ),
        )
    })?;
    if csv {
        let mut r = Response::new(
            200,
            "text/csv; charset=utf-8",
            crate::persist::writer::bars_csv(&venue, &symbol, &bars),
        );
        let mut disp = String::new();
        let _ = write!(disp, "inline; filename=\"bars_{interval}.csv\"");
        r.headers.push(("Content-Disposition", disp));
        return Ok(r);
    }
    let origin = Origin {
        venue: &venue,
        symbol: Some(&symbol),
        recv_ts_ns: None,
    };
    let list: Vec<BarJson<'_>> = bars
        .iter()
        .map(|b| BarJson::new(&origin, &BarFrame::from(b)))
        .collect();
    Ok(json_response(&serde_json::json!({
        "venue": venue,
        "symbol": symbol,
        "interval": interval,
        "open_bar_start_ns": open_start,
        "bars": list,
    })))
}

fn levels(l: &[Level], depth: usize) -> Vec<[serde_json::Value; 2]> {
    l.iter()
        .take(depth)
        .map(|x| [dec(x.price), dec(x.size)])
        .collect()
}

fn book(state: &SharedQuery, req: &Request<'_>) -> Result<Response, Response> {
    let p = Params::parse(req, &["venue", "symbol", "depth"])?;
    let max = state.load().book_depth;
    let depth = p.number("depth", DEFAULT_BOOK_DEPTH.min(max), 1, max)?;
    let (venue, symbol, book, as_of) = with_instrument(state, &p, |s, v| {
        (
            v.venue.clone(),
            v.symbol.clone(),
            v.book.clone(),
            s.published_ns,
        )
    })?;
    let Some(b) = book else {
        return Err(Response::error(
            404,
            "no book for this instrument",
            &[("venue", &venue), ("symbol", &symbol)],
        ));
    };
    Ok(json_response(&serde_json::json!({
        "venue": venue,
        "symbol": symbol,
        "as_of_ns": as_of,
        "sequence": b.sequence,
        "recv_ts_ns": b.recv_ts_ns,
        "may_be_bad": b.may_be_bad,
        "bid_levels": b.bid_levels,
        "ask_levels": b.ask_levels,
        "bids": levels(&b.bids, depth),
        "asks": levels(&b.asks, depth),
    })))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::base::publication::Publication;

    use super::*;
    use crate::consumer::snapshot::QueryState;
    use crate::market::event::{Mark, OpenInterest};

    fn ticker_of(q: &SharedQuery, venue: &str, symbol: &str) -> String {
        let query = format!("venue={venue}&symbol={symbol}");
        let r = handle(
            q,
            &Request {
                method: "GET",
                path: "/v1/ticker",
                query: Some(&query),
            },
        )
        .unwrap();
        assert_eq!(r.status, 200);
        String::from_utf8(r.body).unwrap()
    }

    #[test]
    fn ticker_shows_mark_funding_and_open_interest_for_derivatives_only() {
        let mut s = QueryState::new(&[], 0, 10);
        s.define(1, "binance_usdm", "BTCUSDT", "usdm");
        s.define(2, "binance", "BTCUSDT", "spot");
        s.published_ns = 5;
        let v = s.get_mut(1).unwrap();
        v.mark = Some((
            Mark {
                mark_price: 1_179_415_000_000,
                index_price: 1_178_462_659_091,
                settle_price: ABSENT,
                funding_rate: -59_739_317_855_300,
                next_funding_ns: Some(1_562_306_400_000_000_000),
                exchange_ts_ns: None,
            },
            77,
        ));
        v.open_interest = Some((
            OpenInterest {
                open_interest: 1_065_974_900_000,
                value: ABSENT,
                exchange_ts_ns: Some(3),
            },
            78,
        ));
        let q: SharedQuery = Arc::new(Publication::new(s));
        let t = ticker_of(&q, "binance_usdm", "BTCUSDT");
        assert!(
            t.contains(concat!(
                r#""mark":{"exchange_ts_ns":null,"funding_rate":"-0.0000597393178553","#,
                r#""index_price":"11784.62659091","mark_price":"11794.15","#,
                r#""next_funding_ns":1562306400000000000,"recv_ts_ns":77,"settle_price":null}"#
            )),
            "{t}"
        );
        assert!(
            t.contains(concat!(
                r#""open_interest":{"exchange_ts_ns":3,"open_interest":"10659.749","#,
                r#""recv_ts_ns":78,"value":null}"#
            )),
            "{t}"
        );
        // Spot: the answer has exactly the keys it always had.
        let spot: serde_json::Value =
            serde_json::from_str(&ticker_of(&q, "binance", "BTCUSDT")).unwrap();
        let keys: Vec<&str> = spot
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "as_of_ns",
                "bbo",
                "last_trade",
                "session",
                "symbol",
                "venue"
            ]
        );
    }
}
