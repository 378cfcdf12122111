//! Drawing `mdrelay top`: a [`Screen`] onto a ratatui [`Frame`], and key presses to [`Action`]s.
//!
//! Pure presentation: every number and order is decided by the [`model`](super::model); this
//! module only formats (exact decimals for prices, units for times and rates) and lays out. It
//! draws into whatever backend the `Frame` belongs to: the terminal on the main thread, or
//! ratatui's `TestBackend` in tests. Never blocks.
//!
//! Layout, top to bottom: three header lines (relay socket; HTTP; sort, filter and keys), the instrument
//! table (whatever height is left), the feed table, and the queue and latency tables side by side.

use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Constraint, Flex, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};
use ratatui::Frame;

use crate::market::bars::Decimal128;
use crate::market::event::Side;
use crate::market::fixed::{Decimal, Rate, ABSENT};

use super::model::{
    Action, FeedState, InstrumentRow, LinkState, Screen, SortKey, VolumeSource, RATE_WINDOW_S,
};

/// The actions of the bytes a terminal in raw mode sent: `q`, Esc or Ctrl-C quit; `s` cycles the
/// sort key, `r` reverses the order, `v` cycles the venue filter (either case). Escape sequences
/// (arrows, function keys: `ESC [ … final` and `ESC O x`) and Alt+key are skipped; an Esc is a
/// lone `ESC` at the end of what was read, as a terminal sends it by itself.
pub fn actions_for(input: &[u8]) -> Vec<Action> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        i += 1;
        let action = match b {
            b'q' | b'Q' | 0x03 => Some(Action::Quit),
            b's' | b'S' => Some(Action::CycleSort),
            b'r' | b'R' => Some(Action::ReverseSort),
            b'v' | b'V' => Some(Action::CycleVenue),
            0x1b => match input.get(i) {
                None => Some(Action::Quit),
                Some(b'[') => {
                    // CSI: parameters and intermediates up to a final byte in 0x40..=0x7e.
                    i += 1;
                    while i < input.len() && !(0x40..=0x7e).contains(&input[i]) {
                        i += 1;
                    }
                    i += 1;
                    None
                }
                Some(_) => {
                    // SS3 (`ESC O x`) or Alt+key: two bytes here, at most one more for SS3.
                    i += if input[i] == b'O' { 2 } else { 1 };
                    None
                }
            },
            _ => None,
        };
        out.extend(action);
    }
    out
}

/// The text of a buffer, one `String` per row (for tests and snapshots).
pub fn buffer_lines(buf: &Buffer) -> Vec<String> {
    let a = buf.area;
    (a.top()..a.bottom())
        .map(|y| {
            (a.left()..a.right())
                .map(|x| buf.cell((x, y)).map_or(" ", |c| c.symbol()))
                .collect()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Formatting.

/// An exact decimal, `-` when absent.
fn price(v: i64) -> String {
    if v == ABSENT {
        "-".into()
    } else {
        Decimal(v).to_string()
    }
}

/// A funding rate (1e-18) as its exact decimal, `-` when ABSENT (a future without funding).
fn rate(v: i64) -> String {
    if v == ABSENT {
        "-".into()
    } else {
        Rate(v).to_string()
    }
}

/// A duration in seconds with a unit that keeps three significant figures readable.
pub fn seconds(s: f64) -> String {
    if s < 1e-3 {
        format!("{:.1} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

/// An age in milliseconds: `850 ms`, `12.3 s`, `4 m 05 s`.
pub fn age_ms(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1e3)
    } else {
        format!("{} m {:02} s", ms / 60_000, (ms / 1_000) % 60)
    }
}

fn link(state: &LinkState) -> Span<'static> {
    match state {
        LinkState::Connecting => Span::styled("connecting", Style::new().fg(Color::Yellow)),
        LinkState::Up => Span::styled("ok", Style::new().fg(Color::Green)),
        LinkState::Down(why) => Span::styled(format!("down: {why}"), Style::new().fg(Color::Red)),
        LinkState::Disabled => Span::styled("off", Style::new().fg(Color::DarkGray)),
    }
}

fn bold() -> Style {
    Style::new().add_modifier(Modifier::BOLD)
}

/// A block's title with the rows shown.
fn block(title: String) -> Block<'static> {
    Block::bordered().title(Span::styled(title, bold()))
}

/// One column of a [`fitted_table`].
#[derive(Debug, Clone, Copy)]
struct Col {
    /// Header text.
    title: &'static str,
    /// Right-aligned (numbers).
    right: bool,
    /// Narrowest width, so that columns do not jitter as values change.
    min: u16,
    /// 0: never dropped; otherwise, when the table is too wide, the highest goes first.
    drop_rank: u8,
    /// Free text that takes the width left and may be cut (never a number).
    elastic: bool,
}

const fn col(title: &'static str, right: bool, min: u16, drop_rank: u8) -> Col {
    Col {
        title,
        right,
        min,
        drop_rank,
        elastic: false,
    }
}

/// One cell's text and style.
type Text1 = (String, Style);

fn plain(s: String) -> Text1 {
    (s, Style::new())
}

/// A table whose columns are as wide as their widest value. A number is never cut (a cut price
/// reads as a different price): when the columns do not fit in `width`, whole columns are
/// dropped, highest `drop_rank` first.
fn fitted_table(cols: &[Col], rows: &[Vec<Text1>], width: u16) -> Table<'static> {
    let text_width = |s: &str| u16::try_from(Line::from(s).width()).unwrap_or(u16::MAX);
    let mut widths: Vec<u16> = cols
        .iter()
        .map(|c| c.min.max(text_width(c.title)))
        .collect();
    for r in rows {
        for (w, (text, _)) in widths.iter_mut().zip(r) {
            *w = (*w).max(text_width(text));
        }
    }
    let mut keep = vec![true; cols.len()];
    let needed = |keep: &[bool]| -> u32 {
        let kept = keep.iter().filter(|k| **k).count() as u32;
        let sum: u32 = cols
            .iter()
            .zip(&widths)
            .zip(keep)
            .filter(|(_, k)| **k)
            .map(|((c, w), _)| u32::from(if c.elastic { c.min } else { *w }))
            .sum();
        sum + kept.saturating_sub(1)
    };
    while needed(&keep) > u32::from(width) {
        let victim = (0..cols.len())
            .filter(|&i| keep[i] && cols[i].drop_rank > 0)
            .max_by_key(|&i| (cols[i].drop_rank, i));
        match victim {
            Some(i) => keep[i] = false,
            None => break,
        }
    }
    let cell = |c: &Col, (text, style): &Text1| {
        let line = Line::from(text.clone()).style(*style);
        Cell::from(if c.right {
            line.alignment(Alignment::Right)
        } else {
            line
        })
    };
    let kept = |i: &usize| keep[*i];
    let constraints: Vec<Constraint> = (0..cols.len())
        .filter(kept)
        .map(|i| {
            if cols[i].elastic {
                Constraint::Min(cols[i].min)
            } else {
                Constraint::Length(widths[i])
            }
        })
        .collect();
    let header = Row::new(
        (0..cols.len())
            .filter(kept)
            .map(|i| cell(&cols[i], &plain(cols[i].title.to_owned()))),
    )
    .style(bold());
    let body: Vec<Row<'static>> = rows
        .iter()
        .map(|r| {
            Row::new(
                (0..cols.len())
                    .filter(kept)
                    .filter_map(|i| r.get(i).map(|t| cell(&cols[i], t))),
            )
        })
        .collect();
    Table::new(body, constraints)
        .header(header)
        .flex(Flex::Start)
}

/// The table of `cols` and `rows` in a titled block, or when there are no rows, `why_empty`.
fn table_or_note(
    f: &mut Frame<'_>,
    area: Rect,
    cols: &[Col],
    rows: &[Vec<Text1>],
    title: String,
    why_empty: &str,
) {
    if rows.is_empty() {
        let p = Paragraph::new(Span::styled(
            why_empty.to_owned(),
            Style::new().fg(Color::DarkGray),
        ))
        .block(block(title));
        f.render_widget(p, area);
    } else {
        let inner = area.width.saturating_sub(2);
        f.render_widget(fitted_table(cols, rows, inner).block(block(title)), area);
    }
}

/// Why the HTTP-fed tables are empty.
fn http_note(s: &Screen, what: &str) -> String {
    match &s.http {
        LinkState::Disabled => {
            "HTTP is off in the configuration: start top with --http ADDR to see this".into()
        }
        LinkState::Connecting => format!("waiting for {what}"),
        LinkState::Down(why) => why.clone(),
        LinkState::Up => format!("no {what} from the relay"),
    }
}

// ---------------------------------------------------------------------------------------------
// Drawing.

/// Draws `s` over the whole frame.
pub fn draw(f: &mut Frame<'_>, s: &Screen) {
    let rows_h = |n: usize| (n.clamp(1, 8) as u16) + 3;
    let feeds_h = rows_h(s.feeds.len());
    let bottom_h = rows_h(s.queues.len().max(s.latency.len()));
    let [head, instruments, feeds, bottom] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(5),
        Constraint::Length(feeds_h),
        Constraint::Length(bottom_h),
    ])
    .areas(f.area());
    draw_header(f, head, s);
    draw_instruments(f, instruments, s);
    draw_feeds(f, feeds, s);
    let [queues, latency] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(bottom);
    draw_queues(f, queues, s);
    draw_latency(f, latency, s);
}

fn draw_header(f: &mut Frame<'_>, area: Rect, s: &Screen) {
    let first = vec![
        Span::styled("mdrelay top", bold()),
        Span::raw(format!("   relay {} ", s.relay_label)),
        link(&s.relay),
        Span::raw(format!(" ({} frames)", s.frames)),
    ];
    let mut http = vec![Span::raw(format!(
        "http {} ",
        s.http_label.as_deref().unwrap_or("-")
    ))];
    http.push(link(&s.http));
    if let Some(n) = s.subscribers {
        http.push(Span::raw(format!(" ({n} subscribers)")));
    }
    let order = match (s.sort, s.reversed) {
        (SortKey::Symbol, false) | (SortKey::Spread, false) => "ascending",
        (SortKey::Symbol, true) | (SortKey::Spread, true) => "descending",
        (_, false) => "descending",
        (_, true) => "ascending",
    };
    let key = |k: &'static str| Span::styled(k, Style::new().fg(Color::Cyan));
    let second = vec![
        Span::raw("sort: "),
        Span::styled(format!("{} {order}", s.sort.label()), bold()),
        Span::raw(" ("),
        key("s"),
        Span::raw(" next, "),
        key("r"),
        Span::raw(" reverse)   venue: "),
        Span::styled(s.venue.clone().unwrap_or_else(|| "all".into()), bold()),
        Span::raw(" ("),
        key("v"),
        Span::raw(")   "),
        key("q"),
        Span::raw(" quit"),
    ];
    f.render_widget(
        Paragraph::new(vec![
            Line::from(first),
            Line::from(http),
            Line::from(second),
        ]),
        area,
    );
}

/// Instrument columns: venue, symbol, last, bid, ask, mark, funding, spread, bps, volume,
/// events/s. Mark and funding (derivatives; blank for spot) are the first to go when the
/// terminal is narrow.
const INSTRUMENT_COLS: [Col; 11] = [
    col("venue", false, 9, 5),
    col("symbol", false, 8, 0),
    col("last", true, 10, 0),
    col("bid", true, 10, 2),
    col("ask", true, 10, 2),
    col("mark", true, 10, 7),
    col("funding", true, 8, 8),
    col("spread", true, 8, 4),
    col("bps", true, 6, 6),
    col("volume", true, 10, 3),
    col("events/s", true, 8, 1),
];

fn instrument_cells(r: &InstrumentRow) -> Vec<Text1> {
    let side_color = match r.last_side {
        Side::Buy => Color::Green,
        Side::Sell => Color::Red,
        Side::Unknown => Color::Reset,
    };
    let volume = match r.volume_source {
        VolumeSource::RelaySession => Decimal128(r.volume).to_string(),
        VolumeSource::SinceTopStarted => format!("{}*", Decimal128(r.volume)),
    };
    vec![
        plain(r.venue.clone()),
        plain(r.symbol.clone()),
        (price(r.last_price), Style::new().fg(side_color)),
        plain(price(r.bid)),
        plain(price(r.ask)),
        plain(r.mark.map_or_else(String::new, |(m, _)| price(m))),
        plain(r.mark.map_or_else(String::new, |(_, f)| rate(f))),
        plain(r.spread.map_or_else(|| "-".into(), price)),
        plain(
            r.spread_bps
                .map_or_else(|| "-".into(), |b| format!("{b:.2}")),
        ),
        plain(volume),
        plain(format!("{:.1}", r.events_per_s)),
    ]
}

fn draw_instruments(f: &mut Frame<'_>, area: Rect, s: &Screen) {
    let rows: Vec<Vec<Text1>> = s.instruments.iter().map(instrument_cells).collect();
    let live = s
        .instruments
        .iter()
        .any(|r| r.volume_source == VolumeSource::SinceTopStarted);
    let title = format!(
        " Instruments {}/{}   events/s over {RATE_WINDOW_S} s{} ",
        s.instruments.len(),
        s.instruments_total,
        if live {
            "   * volume since top started"
        } else {
            ""
        }
    );
    let why = if s.instruments_total == 0 {
        "waiting for instrument definitions from the relay"
    } else {
        "no instrument of this venue (v: next venue)"
    };
    table_or_note(f, area, &INSTRUMENT_COLS, &rows, title, why);
}

fn draw_feeds(f: &mut Frame<'_>, area: Rect, s: &Screen) {
    const COLS: [Col; 7] = [
        col("feed", false, 8, 0),
        col("venue", false, 9, 4),
        col("state", false, 12, 0),
        col("last data", true, 9, 2),
        col("queue", false, 8, 3),
        col("events/s", true, 8, 1),
        Col {
            elastic: true,
            ..col("last status", false, 11, 5)
        },
    ];
    let rows: Vec<Vec<Text1>> = s
        .feeds
        .iter()
        .map(|r| {
            let color = match r.state {
                FeedState::Subscribed => Color::Green,
                FeedState::Connected | FeedState::Stale => Color::Yellow,
                FeedState::Disconnected => Color::Red,
            };
            let status = r.last_status.map_or_else(
                || "-".to_owned(),
                |st| {
                    let ago = age_ms(st.age_ns / 1_000_000);
                    match st.count {
                        0 => format!("{} ({ago} ago)", st.code.name()),
                        n => format!("{} {n} ({ago} ago)", st.code.name()),
                    }
                },
            );
            vec![
                plain(r.feed.clone()),
                plain(r.venue.clone()),
                (r.state.name().to_owned(), Style::new().fg(color)),
                plain(r.last_message_age_ms.map_or_else(|| "-".into(), age_ms)),
                plain(r.queue_saturation.clone()),
                plain(
                    r.events_per_s
                        .map_or_else(|| "-".into(), |e| format!("{e:.1}")),
                ),
                plain(status),
            ]
        })
        .collect();
    table_or_note(
        f,
        area,
        &COLS,
        &rows,
        format!(" Feeds {} ", s.feeds.len()),
        &http_note(s, "/health"),
    );
}

fn draw_queues(f: &mut Frame<'_>, area: Rect, s: &Screen) {
    const COLS: [Col; 5] = [
        col("feed", false, 8, 0),
        col("depth/cap", true, 9, 0),
        col("fill", true, 6, 2),
        col("high", true, 5, 3),
        col("level", false, 8, 1),
    ];
    let rows: Vec<Vec<Text1>> = s
        .queues
        .iter()
        .map(|q| {
            let (level, color) = match q.level {
                Some(0) => ("healthy", Color::Green),
                Some(1) => ("degraded", Color::Yellow),
                Some(_) => ("critical", Color::Red),
                None => ("-", Color::Reset),
            };
            vec![
                plain(q.feed.clone()),
                plain(format!("{}/{}", q.depth, q.capacity)),
                plain(format!("{:.1}%", q.fill_percent())),
                plain(q.high_water.map_or_else(|| "-".into(), |h| h.to_string())),
                (level.to_owned(), Style::new().fg(color)),
            ]
        })
        .collect();
    table_or_note(
        f,
        area,
        &COLS,
        &rows,
        " Queues (frames) ".into(),
        &http_note(s, "queue metrics"),
    );
}

fn draw_latency(f: &mut Frame<'_>, area: Rect, s: &Screen) {
    const COLS: [Col; 5] = [
        col("feed", false, 8, 0),
        col("p50", true, 9, 0),
        col("p99", true, 9, 0),
        col("p99.9", true, 9, 1),
        col("frames", true, 6, 2),
    ];
    let q = |v: Option<f64>| plain(v.map_or_else(|| "-".into(), seconds));
    let rows: Vec<Vec<Text1>> = s
        .latency
        .iter()
        .map(|l| {
            vec![
                plain(l.feed.clone()),
                q(l.quantiles_s[0]),
                q(l.quantiles_s[1]),
                q(l.quantiles_s[2]),
                plain(l.count.map_or_else(|| "-".into(), |c| c.to_string())),
            ]
        })
        .collect();
    table_or_note(
        f,
        area,
        &COLS,
        &rows,
        " Latency: venue read → subscriber write ".into(),
        &http_note(s, "latency metrics"),
    );
}

#[cfg(test)]
mod tests {
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    use super::*;
    use crate::cli::top::model::tests::{health, metrics, sample_model, S};
    use crate::cli::top::model::{Model, ViewState};

    fn render(s: &Screen, w: u16, h: u16) -> Vec<String> {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| draw(f, s)).unwrap();
        buffer_lines(t.backend().buffer())
    }

    /// The words of a screen line: split at spaces and table borders.
    fn words(line: &str) -> impl Iterator<Item = &str> {
        line.split(|c: char| c.is_whitespace() || c == '│')
            .filter(|w| !w.is_empty())
    }

    /// The row of the screen showing `symbol`, split into words.
    fn row<'a>(lines: &'a [String], symbol: &str) -> Vec<&'a str> {
        let line = lines
            .iter()
            .find(|l| words(l).any(|w| w == symbol))
            .unwrap_or_else(|| panic!("no row for {symbol} in\n{}", lines.join("\n")));
        words(line).collect()
    }

    fn position(lines: &[String], symbol: &str) -> usize {
        lines
            .iter()
            .position(|l| words(l).any(|w| w == symbol))
            .unwrap_or_else(|| panic!("{symbol} not shown"))
    }

    #[test]
    fn instrument_rows_show_exact_prices_spread_volume_and_rate() {
        let m = sample_model();
        let lines = render(&m.screen(&ViewState::default(), 101 * S), 130, 30);
        assert_eq!(
            row(&lines, "ETHUSDT"),
            ["binance", "ETHUSDT", "2683.81", "2683.8", "2683.81", "0.01", "0.04", "3*", "30.0"]
        );
        assert_eq!(
            row(&lines, "BTC-USD"),
            ["coinbase", "BTC-USD", "61000.5", "61000", "61001", "1", "0.16", "5*", "11.0"]
        );
        assert_eq!(
            row(&lines, "XBT/USD"),
            [
                "kraken_v1",
                "XBT/USD",
                "60999.9",
                "60999.9",
                "-",
                "-",
                "-",
                "0.5*",
                "20.0"
            ]
        );
        let text = lines.join("\n");
        assert!(text.contains("Instruments 3/3"), "{text}");
        assert!(text.contains("* volume since top started"), "{text}");
        assert!(text.contains("sort: events/s descending"), "{text}");
        assert!(text.contains("venue: all"), "{text}");
    }

    #[test]
    fn derivatives_show_mark_and_funding_and_spot_leaves_them_blank() {
        use crate::cli::top::model::tests::Feeder;
        let mut m = sample_model();
        let mut f = Feeder::new();
        f.def(&mut m, "binance_usdm", "BTCUSDT", 100 * S);
        f.trade(
            &mut m,
            "binance_usdm",
            "BTCUSDT",
            "11795",
            "0.1",
            false,
            100 * S,
        );
        f.mark(
            &mut m,
            "binance_usdm",
            "BTCUSDT",
            "11794.15",
            "0.00038167",
            100 * S,
        );
        let lines = render(&m.screen(&ViewState::default(), 101 * S), 150, 30);
        let text = lines.join("\n");
        assert!(
            text.contains(" mark ") && text.contains(" funding "),
            "{text}"
        );
        let r = row(&lines, "BTCUSDT");
        assert_eq!(
            r[..6],
            ["binance_usdm", "BTCUSDT", "11795", "-", "-", "11794.15"],
            "{text}"
        );
        assert_eq!(r[6], "0.00038167", "{text}");
        // Spot rows are as before: the two cells are blank.
        assert_eq!(
            row(&lines, "ETHUSDT"),
            ["binance", "ETHUSDT", "2683.81", "2683.8", "2683.81", "0.01", "0.04", "3*", "30.0"]
        );
    }

    #[test]
    fn sorting_and_the_venue_filter_change_the_rows_drawn() {
        let m = sample_model();
        let now = 101 * S;
        let venues = m.venues();
        let mut v = ViewState::default();
        let lines = render(&m.screen(&v, now), 130, 30);
        assert!(position(&lines, "ETHUSDT") < position(&lines, "XBT/USD"));
        assert!(position(&lines, "XBT/USD") < position(&lines, "BTC-USD"));

        v.apply(Action::CycleSort, &venues); // volume
        let lines = render(&m.screen(&v, now), 130, 30);
        assert!(position(&lines, "BTC-USD") < position(&lines, "ETHUSDT"));
        assert!(position(&lines, "ETHUSDT") < position(&lines, "XBT/USD"));
        assert!(lines.join("\n").contains("sort: volume descending"));

        v.apply(Action::CycleVenue, &venues); // binance only
        let lines = render(&m.screen(&v, now), 130, 30);
        let text = lines.join("\n");
        assert!(text.contains("venue: binance"), "{text}");
        assert!(text.contains("Instruments 1/3"), "{text}");
        position(&lines, "ETHUSDT");
        assert!(
            !text.contains("BTC-USD") && !text.contains("XBT/USD"),
            "{text}"
        );
    }

    #[test]
    fn feeds_queues_and_latency_tables() {
        let mut m = sample_model();
        m.set_health(health());
        m.set_metrics(metrics(1000), 100 * S);
        m.set_metrics(metrics(1500), 101 * S);
        let lines = render(&m.screen(&ViewState::default(), 101 * S), 130, 34);
        let text = lines.join("\n");
        let feeds_at = lines.iter().position(|l| l.contains(" Feeds ")).unwrap();
        let feed = |name: &str| {
            let l = lines[feeds_at..]
                .iter()
                .find(|l| l.trim_start_matches(['│', ' ']).starts_with(name))
                .unwrap_or_else(|| panic!("{name} in\n{text}"));
            l.clone()
        };
        let binance = feed("binance ");
        assert!(binance.contains("subscribed"), "{binance}");
        assert!(binance.contains("1.5 s"), "{binance}");
        assert!(binance.contains("500.0"), "events/s: {binance}");
        assert!(feed("coinbase ").contains("connected"));
        assert!(feed("kraken_v1 ").contains("disconnected"));
        assert!(text.contains("(2 subscribers)"), "{text}");
        // Queue and latency tables share their rows: binance's line carries both.
        let both = lines
            .iter()
            .find(|l| l.contains("1024/4096"))
            .unwrap_or_else(|| panic!("queue row in\n{text}"));
        assert!(both.contains("25.0%"), "{both}");
        assert!(both.contains("2000"), "{both}");
        assert!(both.contains("healthy"), "{both}");
        assert!(both.contains("12.3 µs"), "{both}");
        assert!(both.contains("450.0 µs"), "{both}");
        assert!(both.contains("2.10 ms"), "{both}");
        assert!(both.contains("5000"), "{both}");
    }

    #[test]
    fn empty_tables_say_why() {
        let m = Model::new("/tmp/x.sock", None);
        let text = render(&m.screen(&ViewState::default(), 0), 120, 24).join("\n");
        assert!(
            text.contains("waiting for instrument definitions from the relay"),
            "{text}"
        );
        assert!(text.contains("start top with --http ADDR"), "{text}");
        assert!(text.contains("relay /tmp/x.sock connecting"), "{text}");

        let mut m = Model::new("/tmp/x.sock", Some("http://127.0.0.1:1"));
        m.set_http_error("GET http://127.0.0.1:1/health: connection refused".into());
        let text = render(&m.screen(&ViewState::default(), 0), 120, 24).join("\n");
        assert!(text.contains("connection refused"), "{text}");
    }

    #[test]
    fn a_narrow_terminal_drops_whole_columns_and_never_cuts_a_number() {
        let m = sample_model();
        let lines = render(&m.screen(&ViewState::default(), 101 * S), 60, 30);
        // bps, venue, spread and volume go, in that order; last, bid, ask and events/s stay.
        assert_eq!(
            row(&lines, "ETHUSDT"),
            ["ETHUSDT", "2683.81", "2683.8", "2683.81", "30.0"]
        );
        assert_eq!(
            row(&lines, "XBT/USD"),
            ["XBT/USD", "60999.9", "60999.9", "-", "20.0"]
        );
    }

    #[test]
    fn a_small_terminal_does_not_panic() {
        let mut m = sample_model();
        m.set_health(health());
        m.set_metrics(metrics(1), S);
        let s = m.screen(&ViewState::default(), 101 * S);
        for (w, h) in [(1, 1), (20, 5), (80, 10), (0, 0)] {
            render(&s, w, h);
        }
    }

    #[test]
    fn keys_map_to_actions() {
        use Action::*;
        for (input, want) in [
            (&b"q"[..], &[Quit][..]),
            (b"Q", &[Quit]),
            (b"\x03", &[Quit]), // Ctrl-C in raw mode
            (b"\x1b", &[Quit]), // Esc, sent alone
            (b"s", &[CycleSort]),
            (b"r", &[ReverseSort]),
            (b"v", &[CycleVenue]),
            (b"svV", &[CycleSort, CycleVenue, CycleVenue]),
            (b"\x1b[A", &[]),             // arrow up
            (b"\x1b[15~s", &[CycleSort]), // F5, then s
            (b"\x1bOP", &[]),             // F1 (SS3)
            (b"\x1bq", &[]),              // Alt+q
            (b"x\r\n ", &[]),
            (b"", &[]),
        ] {
            assert_eq!(actions_for(input), want, "{input:?}");
        }
    }

    #[test]
    fn units() {
        assert_eq!(seconds(0.000_012_3), "12.3 µs");
        assert_eq!(seconds(0.0021), "2.10 ms");
        assert_eq!(seconds(1.5), "1.50 s");
        assert_eq!(age_ms(850), "850 ms");
        assert_eq!(age_ms(12_345), "12.3 s");
        assert_eq!(age_ms(245_000), "4 m 05 s");
    }
}
