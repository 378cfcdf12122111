//! The committed coverage-guided fuzz corpus, replayed on the stable toolchain: every input under
//! `fuzz/corpus/<target>/` (minimized by `make fuzz-cmin`, crashes found included) goes through
//! the same function the libFuzzer target calls (`fuzz/src/lib.rs`, included here as it is), so
//! `make test` re-checks what the fuzzer learned without nightly or cargo-fuzz.

use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;

#[path = "../../fuzz/src/lib.rs"]
mod inputs;

fn corpus_dir(target: &str) -> PathBuf {
    crate::util::repo("fuzz/corpus").join(target)
}

/// Runs every corpus input of `target`; a panic names the input's file.
fn replay(target: &str) {
    let run = inputs::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, run)| *run)
        .unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir(target))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "{target}: corpus has only {} inputs",
        files.len()
    );
    for f in &files {
        let data = std::fs::read(f).unwrap();
        if let Err(e) = panic::catch_unwind(AssertUnwindSafe(|| run(&data))) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{target}: {} fails: {msg}", f.display());
        }
    }
}

#[test]
fn every_fuzz_target_has_a_committed_corpus() {
    let mut dirs: Vec<String> = std::fs::read_dir(crate::util::repo("fuzz/corpus"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut names: Vec<String> = inputs::TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    names.sort();
    assert_eq!(dirs, names);
    // …and a libFuzzer target file of that name.
    for n in &names {
        let target = crate::util::repo("fuzz/fuzz_targets").join(format!("{n}.rs"));
        let text = std::fs::read_to_string(&target).unwrap();
        assert!(text.contains(&format!("mdrelay_fuzz::{n}(data)")), "{n}");
    }
}

macro_rules! corpus_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                replay(stringify!($name).trim_start_matches("corpus_"));
            }
        )*
    };
}

corpus_tests!(
    corpus_frame_decoder,
    corpus_subscription,
    corpus_venue_binance,
    corpus_venue_coinbase,
    corpus_venue_kraken,
    corpus_venue_kraken_v1,
    corpus_venue_binance_usdm,
    corpus_venue_okx,
    corpus_venue_bybit,
    corpus_venue_gemini,
    corpus_venue_hyperliquid,
    corpus_http_request,
    corpus_config_loader,
    corpus_line_reader,
);

// ---------------------------------------------------------------------------------------------
// Crashes the coverage-guided fuzzer found: each input exactly as libFuzzer wrote it
// (`fuzz/regressions/<target>/`, kept apart from the corpus so `make fuzz-cmin` cannot drop it)
// and a test named after the defect.

/// `config_loader`, 2026-12-06, after 2.0 M executions (`crash-adc5eafe…`): a top-level key
/// written `''` (empty, which TOML allows) was refused as "config key ``: unknown field ``", an
/// error that names no key. Keys are now reported in TOML's dotted form, quoted when not bare.
#[test]
fn fuzz_crash_config_empty_key_is_reported_quoted() {
    inputs::config_loader(include_bytes!(
        "../../fuzz/regressions/config_loader/crash-adc5eafec0b24405373c5f854d5893f2640e0045"
    ));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    for (text, key) in [
        ("'' = 1\n", "\"\""),
        (
            "[relay]\n\"max subscribers\" = 3\n",
            "relay.\"max subscribers\"",
        ),
        ("[threads]\n\"\" = 0\n", "threads.\"\""),
    ] {
        std::fs::write(&file, text).unwrap();
        let err = mdrelay::config::load(&mdrelay::config::Sources {
            file: Some(file.clone()),
            ..Default::default()
        })
        .unwrap_err();
        match err {
            mdrelay::config::ConfigError::Invalid { key: k, .. } => assert_eq!(k, key, "{text}"),
            other => panic!("{text}: {other}"),
        }
    }
}

/// `venue_gemini`, 2026-12-06, after 1.8 M executions (`crash-d881cfa2…`): a trade with
/// `"timestamp":0` became `exchange_ts_ns: Some(0)`, which `decode` printed as `0` while the wire
/// carries 0 as "absent", so `tail --json` printed `null` for the same trade. The JSON writer now
/// applies the wire's rule (`market::event::present`) to every optional id, time and sequence,
/// and the venue targets check that `tail --json` of the relayed frame equals `decode`.
#[test]
fn fuzz_crash_gemini_zero_timestamp_prints_the_same_in_decode_and_tail() {
    inputs::venue_gemini(include_bytes!(
        "../../fuzz/regressions/venue_gemini/crash-d881cfa2663b1aeea56fc4e4a8df37d6ebd37803"
    ));
    let mut p = mdrelay::feed::venue::parser_for(mdrelay::market::instrument::Venue::Gemini);
    let mut lines = Vec::new();
    let raw = r#"{"type":"trade","symbol":"ANKRUSD","event_id":0,"timestamp":0,"price":"1","quantity":"2","side":"sell"}"#;
    p.parse(raw, 5, &mut |sym, ev| {
        let mut line = Vec::new();
        let origin = mdrelay::wire::json::Origin {
            venue: "gemini",
            symbol: sym,
            recv_ts_ns: Some(5),
        };
        mdrelay::wire::json::write_event(&mut line, &origin, ev).unwrap();
        lines.push(String::from_utf8(line).unwrap());
    })
    .unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(r#""trade_id":null,"exchange_ts_ns":null"#),
        "{}",
        lines[0]
    );
}

// ---------------------------------------------------------------------------------------------
// Seeds: `make fuzz-seed` writes the starting inputs of every target into `fuzz/corpus/<target>/`
// (`seed-NNN`); `make fuzz-cmin` then keeps only those that add coverage. Not part of `make test`.

/// `s` with every JSON array cut to its first `keep` elements (text-level, so key order and
/// number spelling stay as the venue sent them): a 1000-level snapshot becomes a seed-sized one.
fn trim_arrays(s: &str, keep: usize) -> String {
    let mut out = String::with_capacity(s.len().min(4096));
    // Per open bracket: is it an array, and how many commas at its level so far.
    let mut stack: Vec<(bool, usize)> = Vec::new();
    // Depth of the array whose remaining elements are being dropped.
    let mut skip: Option<usize> = None;
    let (mut in_str, mut esc) = (false, false);
    for c in s.chars() {
        if in_str {
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                in_str = false;
            }
        } else {
            match c {
                '"' => in_str = true,
                '[' | '{' => stack.push((c == '[', 0)),
                ']' | '}' => {
                    if skip == Some(stack.len()) {
                        skip = None;
                    }
                    stack.pop();
                }
                ',' if skip.is_none() => {
                    if let Some(top) = stack.last_mut() {
                        if top.0 {
                            top.1 += 1;
                            if top.1 >= keep {
                                skip = Some(stack.len());
                                continue;
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if skip.is_none() {
            out.push(c);
        }
    }
    out
}

#[test]
fn trim_arrays_keeps_the_first_elements_and_the_shape() {
    assert_eq!(
        trim_arrays(r#"{"b":[["1","2"],["3","4"],["5","6"]],"s":"a,]"}"#, 2),
        r#"{"b":[["1","2"],["3","4"]],"s":"a,]"}"#
    );
    assert_eq!(trim_arrays("[1,[2,3,4],5]", 2), "[1,[2,3]]");
}

/// Recording lines of a fixture: the sample files whole, captures their first `n` lines; long
/// lines trimmed to ten levels.
fn fixture_lines(rel: &str, n: usize) -> Vec<String> {
    let path = crate::util::fixture(rel);
    let lines: Vec<String> = if rel.ends_with(".gz") {
        mdrelay::persist::recording::read_all(&path)
            .unwrap()
            .into_iter()
            .take(n)
            .map(|r| match r.recv_ns {
                Some(ns) => format!("{ns} {}", r.raw),
                None => r.raw,
            })
            .collect()
    } else {
        std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .take(n)
            .map(str::to_owned)
            .collect()
    };
    lines
        .into_iter()
        .map(|l| {
            if l.len() > 2048 {
                trim_arrays(&l, 10)
            } else {
                l
            }
        })
        .collect()
}

fn venue_seeds(files: &[&str]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for f in files {
        let lines = fixture_lines(f, 40);
        // Each message alone, then runs of consecutive ones (parsers keep state across lines).
        out.extend(lines.iter().map(|l| l.as_bytes().to_vec()));
        for run in lines.chunks(8) {
            out.push(run.join("\n").into_bytes());
        }
    }
    let mut all = fixture_lines(files[0], 12);
    all.insert(all.len() / 2, "DISCONNECT".into());
    out.push(all.join("\n").into_bytes());
    out
}

fn frame_seeds(subscription: bool) -> Vec<Vec<u8>> {
    use mdrelay::market::event::{BookUpdate, Level, Quote, Side, Status, StatusCode, Trade};
    use mdrelay::wire::protocol::{self, BarFrame, FrameBuf, Meta};
    use mdrelay::wire::subscription::{self, kinds, Filter};
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut buf = FrameBuf::new();
    let m = Meta {
        instrument_id: 0xa4f6_c29c,
        sequence: 7,
        recv_ts_ns: 1_723_161_254_024_619_568,
        flags: 0,
    };
    let mut push = |buf: &FrameBuf| frames.push(buf.to_vec());
    if subscription {
        for (sub, f) in [
            (true, Filter::all()),
            (
                true,
                Filter {
                    venue: "binance".into(),
                    symbol: "ETH*".into(),
                    kinds: kinds::TRADE | kinds::BOOK,
                    lossy: false,
                },
            ),
            (
                false,
                Filter {
                    venue: "kraken".into(),
                    symbol: "XBT/U?D".into(),
                    kinds: kinds::STATUS,
                    lossy: true,
                },
            ),
        ] {
            subscription::encode_request(&mut buf, sub, &f);
            push(&buf);
        }
    } else {
        protocol::encode_instrument_def(&mut buf, &m, "binance", "ETHUSDT");
        push(&buf);
        let trade = Trade {
            price: 268_380_000_000,
            size: 3_029_200,
            side: Side::Sell,
            trade_id: Some(1),
            exchange_ts_ns: Some(1_723_161_255_308_000_000),
        };
        protocol::encode_trade(&mut buf, &m, &trade);
        push(&buf);
        protocol::encode_quote(
            &mut buf,
            &m,
            &Quote {
                ask_size: mdrelay::market::fixed::ABSENT,
                ..Quote::EMPTY
            },
        );
        push(&buf);
        let status = Status {
            code: StatusCode::Gap,
            count: 3,
            detail: "sequence 5 after 1",
        };
        protocol::encode_status(&mut buf, &m, "coinbase", &status);
        push(&buf);
        protocol::encode_heartbeat(&mut buf, 5);
        push(&buf);
        let levels = [
            Level {
                price: 268_380_000_000,
                size: 302_920_000,
            },
            Level {
                price: 268_381_000_000,
                size: 0,
            },
        ];
        for snapshot in [true, false] {
            protocol::encode_book(
                &mut buf,
                &m,
                &BookUpdate {
                    snapshot,
                    bids: &levels[..1],
                    asks: &levels[1..],
                    venue_sequence: Some(35_346_513_512),
                    exchange_ts_ns: None,
                    may_be_bad: !snapshot,
                },
            );
            push(&buf);
        }
        protocol::encode_bar(
            &mut buf,
            &m,
            &BarFrame {
                interval_ns: 1_000_000_000,
                start_ns: 1_723_161_254_000_000_000,
                open: 1,
                high: 3,
                low: 1,
                close: 2,
                volume: 10,
                vwap: 2,
                trade_count: 3,
                first_trade_ns: 1_723_161_254_000_000_001,
                last_trade_ns: 1_723_161_254_000_000_002,
            },
        );
        push(&buf);
        protocol::encode_raw(&mut buf, 99, &m, b"future");
        push(&buf);
    }
    let mut out = Vec::new();
    for mode in [0u8, 1] {
        for f in &frames {
            let mut s = vec![mode];
            s.extend_from_slice(f);
            out.push(s);
        }
        let mut stream = vec![mode];
        stream.extend(frames.iter().flatten());
        out.push(stream);
    }
    out
}

fn http_seeds() -> Vec<Vec<u8>> {
    [
        "GET /v1/instruments HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /v1/ticker?venue=binance&symbol=ETHUSDT HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /v1/book?venue=binance&symbol=ETHUSDT&depth=3 HTTP/1.1\r\n\r\n",
        "HEAD /v1/bars?venue=binance&symbol=ETHUSDT&interval=1s&limit=2&open=true&format=csv HTTP/1.1\r\n\r\n",
        "GET /v1/bars?venue=binance&symbol=ETH%55SDT&interval=1m HTTP/1.0\r\n\r\n",
        "GET /v1/ticker?venue=binance&venue=x HTTP/1.1\r\n\r\n",
        "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        "GET /health HTTP/1.1\r\n\r\n",
        "GET http://h/v1/book HTTP/1.1\r\n\r\n",
        "GET /v1/book?depth=99999999999999999999 HTTP/1.1\r\n\r\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn config_seeds() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = [
        "config/live.toml",
        "config/environments/production.toml",
        "config/environments/test.toml",
        "packaging/mdrelay.toml",
    ]
    .iter()
    .map(|f| std::fs::read(crate::util::repo(f)).unwrap())
    .collect();
    // The defaults without their comments: every section and key once.
    let defaults = std::fs::read_to_string(crate::util::repo("config/default.toml")).unwrap();
    let bare: Vec<&str> = defaults
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .collect();
    out.push(bare.join("\n").into_bytes());
    out.push(
        b"#set relay.max_pending_bytes=65536\n#set feeds.binance.symbols=[\"BTCUSDT\"]\n\
          [relay]\nmax_subscribers = 4\n"
            .to_vec(),
    );
    out
}

fn line_reader_seeds() -> Vec<Vec<u8>> {
    use std::io::Write;
    let mut text = fixture_lines("kraken_v1/trade_20210417.txt.gz", 6)
        .join("\r\n")
        .into_bytes();
    text.extend_from_slice(b"\n\xff\n");
    let gz = |b: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    };
    let mut out = Vec::new();
    for (cap, buf) in [(63u8, 63u8), (20, 3), (0, 0)] {
        let mut plain = vec![cap, buf, 0];
        plain.extend_from_slice(&text);
        out.push(plain);
        let mut z = vec![cap, buf, 1];
        z.extend(gz(&text));
        out.push(z.clone());
        // Two members, and a truncated stream.
        z.extend(gz(b"1 {}\nlast"));
        out.push(z.clone());
        z.truncate(z.len() - 9);
        out.push(z);
    }
    out
}

#[test]
#[ignore = "writes seed inputs into fuzz/corpus: run by `make fuzz-seed`"]
fn write_fuzz_seeds() {
    for (target, _) in inputs::TARGETS {
        let seeds = match *target {
            "frame_decoder" => frame_seeds(false),
            "subscription" => frame_seeds(true),
            "venue_binance" => venue_seeds(&[
                "binance/spot_ethusdt_20240808.txt.gz",
                "samples/binance.jsonl",
            ]),
            "venue_coinbase" => venue_seeds(&[
                "coinbase/level2_ticker_matches_20210417.txt.gz",
                "samples/coinbase_exchange.jsonl",
            ]),
            "venue_kraken" => venue_seeds(&["samples/kraken_v2.jsonl"]),
            "venue_kraken_v1" => venue_seeds(&[
                "kraken_v1/book1000_20210417.txt.gz",
                "kraken_v1/trade_20210417.txt.gz",
                "kraken_v1/ticker_20210417.txt.gz",
                "samples/kraken_v1.jsonl",
            ]),
            "venue_binance_usdm" => venue_seeds(&[
                "binance_usdm/ethusdt_20240808.txt.gz",
                "samples/binance.jsonl",
            ]),
            "venue_okx" => venue_seeds(&["okx/books_trades_tickers_20220513.txt.gz"]),
            "venue_bybit" => venue_seeds(&["samples/bybit.jsonl"]),
            "venue_gemini" => venue_seeds(&["gemini/l2_trades_20210624.txt.gz"]),
            "venue_hyperliquid" => venue_seeds(&["hyperliquid/btc_20250126.txt.gz"]),
            "http_request" => http_seeds(),
            "config_loader" => config_seeds(),
            "line_reader" => line_reader_seeds(),
            other => panic!("no seeds for target {other}"),
        };
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:03}")), s).unwrap();
        }
    }
}
