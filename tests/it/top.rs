//! `mdrelay top`'s data path against a real relay in process: replay exchange (127.0.0.1:0) →
//! Binance collector → consumer → relay socket and HTTP API → `top`'s model → ratatui's
//! TestBackend. The terminal itself is not needed: what reaches the screen is asserted on the
//! rendered buffer. No timing assertion: waits are bounded only to fail a hung test.

use std::time::Duration;

use ratatui::backend::TestBackend;
use ratatui::Terminal;

use mdrelay::cli::top::model::{Model, Screen, ViewState};
use mdrelay::cli::top::scrape::Scraper;
use mdrelay::cli::top::{ui, Target, Workers};
use mdrelay::feed::venue::binance::BinanceParser;
use mdrelay::feed::venue::VenueParser;
use mdrelay::market::bars::Decimal128;
use mdrelay::market::event::Event;
use mdrelay::market::fixed::Decimal;
use mdrelay::wire::protocol::Message;
use mdrelay::{base::clock, persist::recording, run};

use crate::util;

fn render(s: &Screen) -> Vec<String> {
    let mut t = Terminal::new(TestBackend::new(140, 40)).unwrap();
    t.draw(|f| ui::draw(f, s)).unwrap();
    ui::buffer_lines(t.backend().buffer())
}

/// The words of the first line after `from` that has `word` as a word (borders split words).
fn row_after<'a>(lines: &'a [String], from: usize, word: &str) -> Vec<&'a str> {
    let words = |l: &'a String| {
        l.split(|c: char| c.is_whitespace() || c == '│')
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
    };
    lines[from..]
        .iter()
        .map(words)
        .find(|w| w.contains(&word))
        .unwrap_or_else(|| panic!("no row with {word} in\n{}", lines.join("\n")))
}

fn line_of(lines: &[String], text: &str) -> usize {
    lines
        .iter()
        .position(|l| l.contains(text))
        .unwrap_or_else(|| panic!("no {text:?} in\n{}", lines.join("\n")))
}

/// A relay with only the Binance feed on a paused exchange serving the capture once.
fn relay() -> (
    mdrelay::sim::ReplayExchange,
    run::Running,
    tempfile::TempDir,
    std::path::PathBuf,
) {
    let exchange = util::binance_exchange(true);
    let (dir, sock) = util::temp_socket();
    let relay = run::start(util::config(&util::binance_only(
        &sock,
        exchange.local_addr(),
    )))
    .unwrap();
    (exchange, relay, dir, sock)
}

#[test]
fn the_ethusdt_row_shows_the_last_trade_price_the_client_saw() {
    let _wd = util::Watchdog::new("top_client", 120);
    let (exchange, relay, _dir, sock) = relay();
    let mut client = util::subscriber(&sock);
    util::play_when_subscribed(&exchange, 1);

    let http = relay.http_addr().expect("http is on").to_string();
    let scraper = Scraper::new(&http);
    let mut model = Model::new(&sock.display().to_string(), Some(scraper.base()));
    let mut last_price = None;
    let mut frames = 0;
    while frames < 400 || last_price.is_none() {
        let rx = client.next_frame().unwrap().expect("relay closed early");
        if let (Ok(Message::Trade(t)), Some(name)) = (rx.frame.message(), rx.instrument) {
            assert_eq!(
                (name.venue.as_str(), name.symbol.as_str()),
                ("binance", "ETHUSDT")
            );
            last_price = Some(t.price);
        }
        model.apply(&rx, clock::mono_ns());
        frames += 1;
    }
    model.set_health(scraper.health().unwrap());
    model.set_metrics(scraper.metrics().unwrap(), clock::mono_ns());

    let screen = model.screen(&ViewState::default(), clock::mono_ns());
    let lines = render(&screen);
    let eth = row_after(&lines, 0, "ETHUSDT");
    let want = Decimal(last_price.unwrap()).to_string();
    assert_eq!(&eth[..3], ["binance", "ETHUSDT", want.as_str()], "{eth:?}");
    // The tables fed by /health and /metrics of the same relay have the binance feed.
    let feeds = line_of(&lines, " Feeds 1 ");
    assert_eq!(row_after(&lines, feeds, "binance")[1], "binance");
    let queues = line_of(&lines, " Queues ");
    let q = &screen.queues[0];
    assert!(row_after(&lines, queues, "binance")
        .contains(&format!("{}/{}", q.depth, q.capacity).as_str()));

    drop(client);
    assert!(relay.shutdown().balanced());
    exchange.stop();
}

/// The capture's last ETHUSDT trade price and the exact sum of its trade sizes.
fn capture_last_price_and_volume() -> (i64, i128, u64) {
    let mut p = BinanceParser::default();
    let (mut last, mut volume, mut count) = (0, 0i128, 0u64);
    for r in recording::read_all(&util::binance_capture()).unwrap() {
        let _ = p.parse(&r.raw, 0, &mut |_, ev| {
            if let Event::Trade(t) = ev {
                last = t.price;
                volume += i128::from(t.size);
                count += 1;
            }
        });
    }
    (last, volume, count)
}

#[test]
fn top_s_threads_follow_the_relay_to_the_end_of_the_capture() {
    let _wd = util::Watchdog::new("top_workers", 120);
    let (last_price, volume, trades) = capture_last_price_and_volume();
    assert_eq!(trades, 6106);
    let (exchange, relay, _dir, sock) = relay();
    let target = Target {
        socket: sock.clone(),
        http: Some(relay.http_addr().expect("http is on").to_string()),
    };
    let workers = Workers::start(&target).unwrap();
    util::play_when_subscribed(&exchange, 1);

    // Every trade relayed: the reader saw the last one, the poller read the relay's session.
    let done = util::wait_until(Duration::from_secs(90), || {
        let m = workers.model().lock();
        let s = m.screen(&ViewState::default(), clock::mono_ns());
        m.instruments().iter().any(|i| {
            i.symbol == "ETHUSDT"
                && i.last_price == last_price
                && i.session.is_some_and(|s| s.trade_count == trades)
        }) && !s.feeds.is_empty()
    });
    assert!(done, "top saw the whole capture");
    assert_eq!(workers.ended(), None, "no worker thread died");
    let screen = workers
        .model()
        .lock()
        .screen(&ViewState::default(), clock::mono_ns());
    let lines = render(&screen);
    let eth = row_after(&lines, 0, "ETHUSDT");
    assert_eq!(eth[2], Decimal(last_price).to_string(), "{eth:?}");
    assert!(
        eth.contains(&Decimal128(volume).to_string().as_str()),
        "the relay's exact session volume, unstarred: {eth:?}"
    );
    let text = lines.join("\n");
    assert!(
        text.contains(&format!("relay {} ok", sock.display())),
        "{text}"
    );
    assert!(text.contains(" Latency: "), "{text}");
    workers.stop().unwrap();

    assert!(relay.shutdown().balanced());
    exchange.stop();
}

#[test]
fn without_a_terminal_top_says_so_and_fails() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mdrelay"))
        .args([
            "top",
            "--socket",
            "/nonexistent/relay.sock",
            "--http",
            "127.0.0.1:1",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs a terminal"), "{err}");
    assert!(err.contains("mdrelay tail"), "{err}");
    assert!(out.stdout.is_empty());
}
