//! Property-based fuzzing under `cargo test`: the frame decoder, every venue parser, the
//! subscription request parser and the config loader get arbitrary and mutated input and must
//! return a value or a typed error — never panic. Seed corpora are the bundled captures and
//! samples (`data/`, `tests/fixtures/samples/`) and the protocol's golden frames; mutations flip,
//! insert, delete and splice bytes. A short run is part of `make test`; `make fuzz-prop` runs each
//! target longer (`MDRELAY_FUZZ_CASES`, default 256 here). A failure prints the proptest seed
//! and the minimal input; every crash found becomes a named regression test below. The
//! coverage-guided fuzzer (cargo-fuzz, `make fuzz`) is in `fuzz/`; its corpus is replayed by
//! `fuzz_corpus.rs`.

use std::sync::OnceLock;

use mdrelay::config::{self, Sources};
use mdrelay::feed::venue;
use mdrelay::market::instrument::Venue;
use mdrelay::wire::protocol::{self, FrameBuf, Meta};
use mdrelay::wire::subscription::{self, Filter};
use proptest::prelude::*;

use crate::util;

fn cases() -> u32 {
    std::env::var("MDRELAY_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Seed lines per venue: the first lines of each capture, and the sample messages.
fn seeds() -> &'static Vec<(Venue, String)> {
    static SEEDS: OnceLock<Vec<(Venue, String)>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut out = Vec::new();
        for (v, file) in [
            (Venue::Binance, "binance/spot_ethusdt_20240808.txt.gz"),
            (
                Venue::Coinbase,
                "coinbase/level2_ticker_matches_20210417.txt.gz",
            ),
            (Venue::KrakenV1, "kraken_v1/book1000_20210417.txt.gz"),
            (Venue::KrakenV1, "kraken_v1/trade_20210417.txt.gz"),
        ] {
            let recs = mdrelay::persist::recording::read_all(&util::fixture(file)).unwrap();
            out.extend(recs.into_iter().take(300).map(|r| (v, r.raw)));
        }
        for (v, file) in [
            (Venue::Binance, "samples/binance.jsonl"),
            (Venue::Coinbase, "samples/coinbase_exchange.jsonl"),
            (Venue::KrakenV1, "samples/kraken_v1.jsonl"),
            (Venue::Kraken, "samples/kraken_v2.jsonl"),
        ] {
            let text = std::fs::read_to_string(util::fixture(file)).unwrap();
            out.extend(text.lines().map(|l| (v, l.to_owned())));
        }
        out
    })
}

/// One byte-level mutation.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
    Splice(usize, usize),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(
        prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
            (
                any::<usize>(),
                prop::sample::select(b"{}[]\",:0123456789.-eE \\nut".to_vec())
            )
                .prop_map(|(i, b)| Edit::Insert(i, b)),
            any::<usize>().prop_map(Edit::Delete),
            any::<usize>().prop_map(Edit::Truncate),
            (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Splice(a, b)),
        ],
        1..6,
    )
}

fn mutate(mut b: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let n = b.len().max(1);
        match *e {
            Edit::Flip(i, x) if !b.is_empty() => b[i % n] ^= x | 1,
            Edit::Insert(i, x) => b.insert(i % (b.len() + 1), x),
            Edit::Delete(i) if !b.is_empty() => {
                b.remove(i % n);
            }
            Edit::Truncate(i) => b.truncate(i % (b.len() + 1)),
            Edit::Splice(i, j) if !b.is_empty() => {
                let (i, j) = (i % n, j % n);
                let (lo, hi) = (i.min(j), i.max(j));
                let part = b[lo..hi].to_vec();
                b.splice(lo..lo, part);
            }
            _ => {}
        }
    }
    b
}

/// Golden frames of every type, as seeds for the decoder.
fn golden_frames() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = FrameBuf::new();
    let m = Meta {
        instrument_id: 0xa4f6_c29c,
        sequence: 7,
        recv_ts_ns: 1,
        flags: 0,
    };
    protocol::encode_instrument_def(&mut buf, &m, "binance", "ETHUSDT");
    out.push(buf.to_vec());
    protocol::encode_heartbeat(&mut buf, 5);
    out.push(buf.to_vec());
    protocol::encode_status(
        &mut buf,
        &m,
        "binance",
        &mdrelay::market::event::Status {
            code: mdrelay::market::event::StatusCode::Dropped,
            count: 3,
            detail: "x",
        },
    );
    out.push(buf.to_vec());
    subscription::encode_request(&mut buf, true, &Filter::all());
    out.push(buf.to_vec());
    out
}

/// Decodes every frame of `bytes` the way a client does; must never panic.
fn decode_stream(bytes: &[u8]) {
    let mut at = 0;
    while at < bytes.len() {
        match protocol::decode_frame(&bytes[at..]) {
            Ok((f, n)) => {
                let _ = f.message();
                at += n;
            }
            Err(_) => break,
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn frame_decoder_never_panics_on_arbitrary_bytes(b in prop::collection::vec(any::<u8>(), 0..300)) {
        decode_stream(&b);
        let _ = subscription::parse_request(&b);
    }

    #[test]
    fn frame_decoder_never_panics_on_mutated_frames(
        i in 0usize..4, e in edits(), fix_crc in any::<bool>()
    ) {
        let frames = golden_frames();
        let mut b = mutate(frames[i % frames.len()].clone(), &e);
        if fix_crc && b.len() >= protocol::HEADER_LEN + protocol::TRAILER_LEN {
            // Valid CRC over mutated content: reaches the payload decoders.
            protocol::reseal(&mut b);
        }
        decode_stream(&b);
        let _ = subscription::parse_request(&b);
    }

    #[test]
    fn venue_parsers_never_panic_on_mutated_messages(i in any::<usize>(), e in edits()) {
        let s = seeds();
        let (v, line) = &s[i % s.len()];
        let bytes = mutate(line.as_bytes().to_vec(), &e);
        let text = String::from_utf8_lossy(&bytes);
        for venue in [*v, Venue::Binance, Venue::Coinbase, Venue::KrakenV1, Venue::Kraken] {
            let mut p = venue::parser_for(venue);
            let _ = p.parse(&text, 1, &mut |_, _| {});
            // The parser keeps working after bad input.
            let _ = p.parse(line, 2, &mut |_, _| {});
        }
    }

    #[test]
    fn subscription_requests_never_panic(
        venue in ".{0,20}", symbol in ".{0,40}", kinds in any::<u8>(), e in edits()
    ) {
        let mut buf = FrameBuf::new();
        subscription::encode_request(
            &mut buf,
            true,
            &Filter { venue, symbol, kinds, lossy: false },
        );
        let b = mutate(buf.to_vec(), &e);
        let _ = subscription::parse_request(&b);
        let mut fixed = b.clone();
        if fixed.len() >= protocol::HEADER_LEN + protocol::TRAILER_LEN {
            protocol::reseal(&mut fixed);
            let _ = subscription::parse_request(&fixed);
        }
    }

    #[test]
    fn config_loader_never_panics_on_mutated_files(e in edits()) {
        let text = std::fs::read(util::repo("config/default.toml")).unwrap();
        let b = mutate(text, &e);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, &b).unwrap();
        let _ = config::load(&Sources { file: Some(f), ..Sources::default() });
    }

    #[test]
    fn config_loader_never_panics_on_arbitrary_overrides(
        key in prop::sample::select(vec![
            "relay.max_pending_bytes", "relay.socket_mode", "relay.allowed_uids",
            "consumer.idle", "feeds.binance.backpressure", "feeds.binance.symbols",
            "bars.intervals_ms", "writer.data_dir", "http.listen", "threads.consumer",
            "feeds.x.venue", "replay.sources.binance", "nope", "relay", "",
        ]),
        value in "[ -~]{0,30}",
    ) {
        let _ = config::load(&Sources {
            sets: vec![format!("{key}={value}")],
            ..Sources::default()
        });
    }
}
