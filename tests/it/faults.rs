//! Faults between a collector and its venue, injected by the seeded proxy of `util::faults`:
//! latency, 1-byte slicing, a black hole, a reset mid-frame, garbage frames (bad JSON, bad
//! UTF-8) and WebSocket close codes. For each: no thread panics, the feed reconnects (when the
//! fault ends the connection) and data flows again within a generous bound of the backoff and
//! stale limits, the subscriber sees every reconnect (`disconnected` → `reconnecting` →
//! `connected`) and every venue gap the collector counted, per-instrument sequences only rise
//! (a jump only where `dropped` reports cover it), and the accounting balances at shutdown.
//!
//! Every failure message carries `FAULT_SEED=<n>`; `MDRELAY_FAULT_SEED=<n>` replays the schedule.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mdrelay::market::event::StatusCode;
use mdrelay::market::instrument::Venue;
use mdrelay::wire::protocol::{flags, Message};
use mdrelay::{relay::client::RelayClient, run};

use crate::util;
use crate::util::faults::{self, Fault, FaultPlan, FaultProxy, Rng};

/// The relay's backoff and stale settings for these tests, ms.
const RECONNECT_INITIAL_MS: u64 = 50;
const RECONNECT_MAX_MS: u64 = 500;
const STALE_AFTER_MS: u64 = 500;
/// Slack on top of stale + backoff for a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(8);
/// Replay pace: 4× real time keeps trades/quotes well under 500 ms apart (the capture's largest
/// gap is ~870 ms at 1×) and the capture longer than any test.
const SPEED: f64 = 4.0;

/// What a case must show.
struct Expect {
    /// Faults the proxy must apply.
    fires: usize,
    /// Of them, the last `reconnects` end their connection; 0: the connection survives.
    reconnects: usize,
    /// The collector must count parse errors (else none).
    parse_errors: bool,
    /// A `stale` status must precede the disconnect.
    stale: bool,
    /// Close codes the `disconnected` reports must name.
    close_codes: Vec<u16>,
    /// The feed's stale limit, ms.
    stale_after_ms: u64,
    /// Words a `disconnected` report must contain (lower case).
    disconnect_detail: Option<&'static str>,
}

/// What the subscriber saw.
#[derive(Default)]
struct Seen {
    /// Feed status frames: code, detail, when read.
    statuses: Vec<(StatusCode, String, Instant)>,
    /// Per instrument: last sequence of a market-data frame.
    last_seq: HashMap<u32, u64>,
    /// Per instrument: sequence numbers skipped.
    skipped: HashMap<u32, u64>,
    /// Per instrument: events reported lost by `dropped` statuses.
    dropped: HashMap<u32, u64>,
    /// Market-data frames read, with when.
    market: Vec<Instant>,
    reconnecting: u64,
    gaps: u64,
}

impl Seen {
    fn read(&mut self, client: &mut RelayClient, seed: u64) {
        let rx = client
            .next_frame()
            .unwrap_or_else(|e| panic!("FAULT_SEED={seed}: subscriber read: {e}"))
            .unwrap_or_else(|| panic!("FAULT_SEED={seed}: relay closed the stream"));
        let now = Instant::now();
        let h = rx.frame.header;
        match rx.frame.message().expect("frame decodes") {
            Message::Trade(_) | Message::Quote(_) | Message::Book(_) => {
                if h.flags & flags::CACHED != 0 {
                    return;
                }
                if let Some(&last) = self.last_seq.get(&h.instrument_id) {
                    assert!(
                        h.sequence > last,
                        "FAULT_SEED={seed}: instrument {} sequence {} after {last}",
                        h.instrument_id,
                        h.sequence
                    );
                    *self.skipped.entry(h.instrument_id).or_default() += h.sequence - last - 1;
                }
                self.last_seq.insert(h.instrument_id, h.sequence);
                self.market.push(now);
            }
            Message::Status { status, .. } => {
                match status.code {
                    StatusCode::Dropped => {
                        *self.dropped.entry(h.instrument_id).or_default() += status.count;
                    }
                    StatusCode::Reconnecting => self.reconnecting += 1,
                    StatusCode::Gap => self.gaps += 1,
                    _ => {}
                }
                if h.instrument_id == 0 {
                    self.statuses
                        .push((status.code, status.detail.to_owned(), now));
                }
            }
            _ => {}
        }
    }

    /// Index of the first status at or after `from` (in `statuses`) with `code`, read after `t`.
    fn find(&self, from: usize, code: StatusCode, t: Instant) -> Option<usize> {
        (from..self.statuses.len()).find(|&i| self.statuses[i].0 == code && self.statuses[i].2 > t)
    }

    /// When data flowed again after a fault at `t`: the first market frame after the first
    /// `connected` status read after `t`.
    fn recovered(&self, t: Instant) -> Option<Instant> {
        let i = self.find(0, StatusCode::Connected, t)?;
        let connected = self.statuses[i].2;
        self.market.iter().copied().find(|&m| m > connected)
    }
}

fn run_case(name: &'static str, plan: FaultPlan, expect: &Expect) {
    let _wd = util::Watchdog::new(name, 120);
    let seed = plan.seed;
    eprintln!("{name}: FAULT_SEED={seed} plan {:?}", plan.faults);
    let exchange = util::replay_exchange(
        &[(Venue::Binance, vec![util::binance_capture()])],
        SPEED,
        true,
        false,
    );
    let proxy = FaultProxy::start_held(exchange.local_addr(), plan);
    let (_dir, sock) = util::temp_socket();
    let mut sets = util::binance_only(&sock, proxy.local_addr());
    sets.push(format!(
        "feeds.binance.reconnect_initial_ms={RECONNECT_INITIAL_MS}"
    ));
    sets.push(format!("feeds.binance.reconnect_max_ms={RECONNECT_MAX_MS}"));
    sets.push(format!(
        "feeds.binance.stale_after_ms={}",
        expect.stale_after_ms
    ));
    let relay = run::start(util::config(&sets)).unwrap();
    let mut client = RelayClient::connect(&sock).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // The subscriber must see the feed's first status: admitted before the feed can connect.
    assert!(util::wait_until(Duration::from_secs(20), || relay
        .relay_counters()
        .accepted
        .get()
        >= 1));
    proxy.release();

    let bound = recovery_bound(expect);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Seen::default();
    let recoveries: Vec<Duration> = loop {
        assert!(
            Instant::now() < deadline,
            "FAULT_SEED={seed}: {name}: not done in 60 s; connections {}, fired {:?}; \
             statuses {:?}; market frames {}; collector {:?}",
            proxy.connections(),
            proxy.fired(),
            seen.statuses,
            seen.market.len(),
            relay.feed_stats(0).map(|s| (
                s.collector.frames.get(),
                s.collector.reconnects.get(),
                s.collector.parse_errors.get()
            )),
        );
        seen.read(&mut client, seed);
        let fired = proxy.fired();
        if fired.len() < expect.fires {
            continue;
        }
        let last = fired[expect.fires - 1].at;
        if expect.reconnects == 0 {
            if seen.market.iter().filter(|&&m| m > last).count() >= 200 {
                break Vec::new();
            }
            continue;
        }
        let ends = &ending(&fired[..expect.fires]);
        assert_eq!(
            ends.len(),
            expect.reconnects,
            "FAULT_SEED={seed}: {name}: faults that end a connection: {fired:?}"
        );
        let Some(rec): Option<Vec<Instant>> = ends.iter().map(|f| seen.recovered(f.at)).collect()
        else {
            continue;
        };
        let back = *rec.last().expect("one recovery at least");
        if seen.market.iter().filter(|&&m| m >= back).count() >= 50 {
            break ends.iter().zip(&rec).map(|(f, &r)| r - f.at).collect();
        }
    };
    let fired = proxy.fired();
    let ends = if expect.reconnects == 0 {
        Vec::new()
    } else {
        ending(&fired[..expect.fires])
    };
    for (f, r) in ends.iter().zip(&recoveries) {
        eprintln!(
            "{name}: FAULT_SEED={seed} [{}] {}: data again after {} ms (bound {} ms)",
            f.conn,
            f.what,
            r.as_millis(),
            bound.as_millis()
        );
        assert!(
            *r < bound,
            "FAULT_SEED={seed}: {name}: recovery from `{}` took {r:?}, bound {bound:?}",
            f.what
        );
    }

    for (code, detail, _) in &seen.statuses {
        if matches!(code, StatusCode::Disconnected | StatusCode::Stale) {
            eprintln!("{name}: FAULT_SEED={seed} {code:?}: {detail}");
        }
    }
    if let Some(want) = expect.disconnect_detail {
        assert!(
            seen.statuses
                .iter()
                .any(|(c, d, _)| *c == StatusCode::Disconnected && d.to_lowercase().contains(want)),
            "FAULT_SEED={seed}: {name}: a disconnect says {want:?}: {:?}",
            seen.statuses
        );
    }

    // Each reconnect reported in order: (stale →) disconnected → reconnecting → connected.
    for f in &ends {
        let mut at = 0;
        if expect.stale {
            at = seen.find(at, StatusCode::Stale, f.at).unwrap_or_else(|| {
                panic!("FAULT_SEED={seed}: {name}: no stale after `{}`", f.what)
            });
        }
        let d = seen.find(at, StatusCode::Disconnected, f.at);
        let r = d.and_then(|d| seen.find(d, StatusCode::Reconnecting, f.at));
        let c = r.and_then(|r| seen.find(r, StatusCode::Connected, f.at));
        assert!(
            c.is_some(),
            "FAULT_SEED={seed}: {name}: after `{}` disconnected → reconnecting → connected; got {:?}",
            f.what,
            seen.statuses
        );
    }
    for code in &expect.close_codes {
        assert!(
            seen.statuses
                .iter()
                .any(|(c, d, _)| *c == StatusCode::Disconnected
                    && d.contains(&format!("venue closed: {code}"))),
            "FAULT_SEED={seed}: {name}: a disconnect names close code {code}: {:?}",
            seen.statuses
        );
    }

    // Every reconnect and venue gap the collector counted reached the subscriber.
    let stats = relay.feed_stats(0).unwrap();
    let drain_until = Instant::now() + Duration::from_secs(20);
    let all_reported = loop {
        let (r, g) = (stats.collector.reconnects.get(), stats.collector.gaps.get());
        if seen.reconnecting == r && seen.gaps == g {
            break true;
        }
        if Instant::now() > drain_until {
            break false;
        }
        seen.read(&mut client, seed);
    };
    assert!(
        all_reported,
        "FAULT_SEED={seed}: {name}: subscriber saw {} reconnects / {} gaps, collector counted {} / {}",
        seen.reconnecting,
        seen.gaps,
        stats.collector.reconnects.get(),
        stats.collector.gaps.get()
    );
    for (id, skipped) in &seen.skipped {
        let dropped = seen.dropped.get(id).copied().unwrap_or(0);
        assert!(
            *skipped <= dropped,
            "FAULT_SEED={seed}: {name}: instrument {id} skipped {skipped} sequence numbers, \
             {dropped} reported dropped"
        );
    }
    assert!(!seen.last_seq.is_empty(), "FAULT_SEED={seed}: data flowed");
    let stale = stats.collector.stale.get();

    let summary = relay.shutdown();
    assert!(
        summary.panicked.is_empty(),
        "FAULT_SEED={seed}: {name}: threads panicked: {:?}",
        summary.panicked
    );
    assert!(
        summary.balanced(),
        "FAULT_SEED={seed}: {name}: accounting unbalanced:\n{summary}"
    );
    let feed = &summary.feeds[0];
    if expect.reconnects == 0 {
        assert_eq!(
            feed.reconnects, 0,
            "FAULT_SEED={seed}: {name}: the connection survives"
        );
    } else {
        assert!(
            feed.reconnects >= expect.reconnects as u64,
            "FAULT_SEED={seed}: {name}: {} reconnects, want ≥ {}",
            feed.reconnects,
            expect.reconnects
        );
    }
    if expect.stale {
        assert!(stale >= 1, "FAULT_SEED={seed}: {name}: stale counted");
    }
    if expect.parse_errors {
        assert!(
            feed.parse_errors >= 1,
            "FAULT_SEED={seed}: {name}: garbage counted as a parse error"
        );
    } else {
        assert_eq!(
            feed.parse_errors, 0,
            "FAULT_SEED={seed}: {name}: no parse errors"
        );
    }
    assert!(
        proxy.connections() > expect.reconnects,
        "FAULT_SEED={seed}: {name}: the collector came back through the proxy"
    );
    drop(proxy);
    exchange.stop();
}

/// How long data may take to flow again after the first of `reconnects` connections in a row
/// die: each may go stale first (+ a read poll), then waits its backoff (attempt 1: none, attempt
/// a: at most `min(initial · 2^(a-2), max)`), plus one more `max` and [`SLACK`] for connecting,
/// subscribing and a loaded machine.
fn recovery_bound(e: &Expect) -> Duration {
    let n = e.reconnects.max(1) as u64;
    let backoff: u64 = (2..=n)
        .map(|a| (RECONNECT_INITIAL_MS << (a - 2)).min(RECONNECT_MAX_MS))
        .sum();
    Duration::from_millis(n * (e.stale_after_ms + 50) + backoff + RECONNECT_MAX_MS) + SLACK
}

/// The applied faults that end their connection (all but the invalid-JSON half of garbage).
fn ending(fired: &[faults::Fired]) -> Vec<faults::Fired> {
    fired
        .iter()
        .filter(|f| !f.what.starts_with("invalid JSON"))
        .cloned()
        .collect()
}

fn expect(fires: usize, reconnects: usize) -> Expect {
    Expect {
        fires,
        reconnects,
        parse_errors: false,
        stale: false,
        close_codes: Vec::new(),
        stale_after_ms: STALE_AFTER_MS,
        disconnect_detail: None,
    }
}

/// Where a fault lands: somewhere in the first second or so of data.
fn offset(rng: &mut Rng) -> u64 {
    rng.range(2_000, 30_000)
}

#[test]
fn latency_delays_but_does_not_break_the_feed() {
    let plan = FaultPlan::seeded(faults::seed(), |rng| {
        vec![Fault::Latency(Duration::from_millis(rng.range(5, 40)))]
    });
    // The connection must survive: a stale limit far above the added latency.
    let mut e = expect(1, 0);
    e.stale_after_ms = 5_000;
    run_case("faults_latency", plan, &e);
}

#[test]
fn frames_sliced_into_single_bytes_parse_exactly() {
    let plan = FaultPlan::seeded(faults::seed(), |rng| {
        vec![Fault::Slice {
            bytes: rng.range(3_000, 12_000),
        }]
    });
    let mut e = expect(1, 0);
    e.stale_after_ms = 5_000;
    run_case("faults_slice", plan, &e);
}

#[test]
fn a_black_hole_is_detected_stale_and_the_feed_reconnects() {
    let plan = FaultPlan::seeded(faults::seed(), |rng| {
        vec![Fault::BlackHole {
            after_bytes: offset(rng),
            for_: Duration::from_secs(30),
        }]
    });
    let mut e = expect(1, 1);
    e.stale = true;
    run_case("faults_black_hole", plan, &e);
}

#[test]
fn a_reset_mid_frame_reconnects() {
    let plan = FaultPlan::seeded(faults::seed(), |rng| {
        vec![Fault::ResetMidFrame {
            after_bytes: offset(rng),
        }]
    });
    let mut e = expect(1, 1);
    e.disconnect_detail = Some("reset by peer");
    run_case("faults_reset_mid_frame", plan, &e);
}

#[test]
fn garbage_frames_are_counted_and_bad_utf8_reconnects() {
    let plan = FaultPlan::seeded(faults::seed(), |rng| {
        vec![Fault::InjectGarbage {
            after_bytes: offset(rng),
            then_frames: rng.range(5, 50),
        }]
    });
    let mut e = expect(2, 1);
    e.parse_errors = true;
    e.disconnect_detail = Some("utf-8");
    run_case("faults_garbage", plan, &e);
}

#[test]
fn close_codes_are_reported_and_the_feed_reconnects_each_time() {
    let mut codes = Vec::new();
    let plan = FaultPlan::seeded(faults::seed(), |rng| {
        (0..2)
            .map(|_| {
                let code = rng.pick(&[1001, 1011, 1012, 4000]);
                codes.push(code);
                Fault::Close {
                    after_bytes: offset(rng),
                    code,
                }
            })
            .collect()
    });
    let mut e = expect(2, 2);
    e.close_codes = codes;
    run_case("faults_close_codes", plan, &e);
}

#[test]
fn the_proxy_frames_what_it_injects() {
    // The proxy's own framing: its injected frames are whole WebSocket frames by its own parser.
    for payload in [faults::GARBAGE_JSON, faults::GARBAGE_UTF8] {
        let f = faults::text_frame(payload);
        assert_eq!(faults::unit_len(&f, false), Some(f.len()));
        assert_eq!(faults::unit_len(&f[..f.len() - 1], false), None);
    }
    let c = faults::close_frame(4000, "x");
    assert_eq!(c, [0x88, 3, 0x0f, 0xa0, b'x']);
    let long = [&[0x81u8, 126, 0x01, 0x00][..], &[b'a'; 256][..]].concat();
    assert_eq!(faults::unit_len(&long, false), Some(260));
    assert_eq!(
        faults::unit_len(b"HTTP/1.1 101 Switching\r\n\r\n\x81", true),
        Some(26)
    );
    let mut a = Rng::new(7);
    let mut b = Rng::new(7);
    assert_eq!(
        (0..8).map(|_| a.next_u64()).collect::<Vec<_>>(),
        (0..8).map(|_| b.next_u64()).collect::<Vec<_>>(),
        "same seed, same schedule"
    );
}

#[test]
fn a_run_of_connections_killed_before_any_data_backs_off_and_recovers() {
    // Five connections in a row die before their first data message (at the subscription ack):
    // the attempt count is never reset, so the backoff grows (0, ≤50, ≤100, ≤200, ≤400 ms) and
    // recovery must still come within the bound. Each connection's fault is drawn from the seed.
    let mut garbage = false;
    let plan = FaultPlan::seeded(faults::seed(), |rng| {
        (0..5)
            .map(|_| match rng.range(0, 4) {
                0 => Fault::ResetMidFrame { after_bytes: 0 },
                1 => Fault::Close {
                    after_bytes: 0,
                    code: rng.pick(&[1001, 1011, 1012, 4000]),
                },
                2 => Fault::BlackHole {
                    after_bytes: 0,
                    for_: Duration::from_secs(30),
                },
                _ => {
                    garbage = true;
                    Fault::InjectGarbage {
                        after_bytes: 0,
                        then_frames: 1,
                    }
                }
            })
            .collect()
    });
    let fires = plan
        .faults
        .iter()
        .map(|f| match f {
            Fault::InjectGarbage { .. } => 2,
            _ => 1,
        })
        .sum();
    let mut e = expect(fires, 5);
    e.parse_errors = garbage;
    run_case("faults_chaos", plan, &e);
}
