//! The per-feed metric families of `/metrics` (`feed="…",venue="…"` labels): one table of
//! counters and one of gauges, each row a name, its help text and how to read the value from a
//! feed's [`FeedMetrics`]. [`render_prometheus`](super::metrics::render_prometheus) walks them.
//!
//! Pure data; read on the `http` thread.

use crate::serve::metrics::FeedMetrics;

/// A per-feed value read from the sources.
pub(super) type FeedValue = fn(&FeedMetrics) -> u64;

/// Per-feed counters: name, help, value.
pub(super) const FEED_COUNTERS: &[(&str, &str, FeedValue)] = &[
    (
        "mdrelay_feed_frames_total",
        "WebSocket data frames read from the venue (text and binary).",
        |f| f.stats.collector.frames.get(),
    ),
    (
        "mdrelay_feed_received_bytes_total",
        "Bytes of the WebSocket data frames read from the venue.",
        |f| f.stats.collector.bytes.get(),
    ),
    (
        "mdrelay_feed_control_messages_total",
        "Frames that were control messages (acks, venue heartbeats): consumed, no event.",
        |f| f.stats.collector.control.get(),
    ),
    (
        "mdrelay_feed_parse_errors_total",
        "Frames that could not be parsed (malformed, unsupported, number out of range).",
        |f| f.stats.collector.parse_errors.get(),
    ),
    (
        "mdrelay_feed_out_of_range_errors_total",
        "Of the parse errors: a number outside the fixed-point range or precision.",
        |f| f.stats.collector.out_of_range.get(),
    ),
    (
        "mdrelay_feed_parse_fast_path_fallbacks_total",
        "Messages the parser's fast path left to its general (serde) path: not errors, a cost.",
        |f| f.stats.collector.fast_path_fallbacks.get(),
    ),
    (
        "mdrelay_feed_filtered_total",
        "Data messages deliberately not relayed: Binance futures trades whose X is not MARKET (insurance fund, ADL).",
        |f| f.stats.collector.filtered.get(),
    ),
    (
        "mdrelay_feed_open_interest_polls_total",
        "Open-interest REST requests made by the feed's oi-<feed> poller.",
        |f| f.stats.open_interest.polls.get(),
    ),
    (
        "mdrelay_feed_open_interest_failures_total",
        "Open-interest REST requests that failed or returned a reply that did not parse.",
        |f| f.stats.open_interest.failures.get(),
    ),
    (
        "mdrelay_feed_open_interest_dropped_total",
        "Open-interest readings dropped because the hand-over to the collector was full.",
        |f| f.stats.open_interest.dropped.get(),
    ),
    (
        "mdrelay_feed_files_failed_total",
        "Recordings whose replay stopped on an error (cannot open, I/O, corrupt gzip); replay only.",
        |f| f.stats.collector.files_failed.get(),
    ),
    (
        "mdrelay_feed_enqueued_frames_total",
        "Frames pushed into the feed's queue (events, instrument definitions, status).",
        |f| f.stats.collector.enqueued.get(),
    ),
    (
        "mdrelay_feed_dropped_frames_total",
        "Frames the queue refused or evicted, or that were lost at shutdown.",
        |f| f.stats.collector.dropped.get(),
    ),
    (
        "mdrelay_feed_dropped_events_total",
        "Events lost before the consumer (refused, evicted, or replaced under conflate).",
        |f| f.stats.collector.dropped_events.get(),
    ),
    (
        "mdrelay_feed_conflated_events_total",
        "Of the dropped events: quotes replaced by a newer one under conflate.",
        |f| f.stats.collector.conflated.get(),
    ),
    (
        "mdrelay_feed_id_collision_events_total",
        "Events dropped because their instrument id collided with another symbol's.",
        |f| f.stats.collector.id_collisions.get(),
    ),
    (
        "mdrelay_feed_relayed_frames_total",
        "Frames the consumer took from the feed's queue and relayed.",
        |f| f.stats.consumer.relayed.get(),
    ),
    (
        "mdrelay_feed_relayed_events_total",
        "Events among the relayed frames.",
        |f| f.stats.consumer.relayed_events.get(),
    ),
    (
        "mdrelay_feed_refused_frames_total",
        "Frames the consumer refused: id owned by another feed, or definition evicted.",
        |f| f.stats.consumer.refused.get(),
    ),
    (
        "mdrelay_feed_refused_events_total",
        "Events among the refused frames.",
        |f| f.stats.consumer.refused_events.get(),
    ),
    (
        "mdrelay_feed_connects_total",
        "WebSocket connections established.",
        |f| f.stats.collector.connects.get(),
    ),
    (
        "mdrelay_feed_reconnects_total",
        "Connections lost or refused after the first.",
        |f| f.stats.collector.reconnects.get(),
    ),
    (
        "mdrelay_feed_rotations_total",
        "Make-before-break connection rotations completed.",
        |f| f.stats.collector.rotations.get(),
    ),
    (
        "mdrelay_feed_rotation_failures_total",
        "Connection rotations abandoned (the replacement did not continue the stream in time).",
        |f| f.stats.collector.rotation_failures.get(),
    ),
    (
        "mdrelay_feed_rotation_duplicates_total",
        "Messages dropped during rotation overlaps as already published.",
        |f| f.stats.collector.rotation_duplicates.get(),
    ),
    (
        "mdrelay_feed_book_snapshots_total",
        "REST order-book snapshots fetched.",
        |f| f.stats.collector.snapshots.get(),
    ),
    (
        "mdrelay_feed_book_snapshot_failures_total",
        "REST order-book snapshots that failed (HTTP error, timeout, bad body).",
        |f| f.stats.collector.snapshot_failures.get(),
    ),
    (
        "mdrelay_feed_stale_total",
        "Connections dropped because no data message came within stale_after_ms.",
        |f| f.stats.collector.stale.get(),
    ),
    (
        "mdrelay_feed_sequence_gaps_total",
        "Sequence gaps the venue adapter detected (gap status events).",
        |f| f.stats.collector.gaps.get(),
    ),
    (
        "mdrelay_feed_resyncs_total",
        "Books rebuilt from a fresh snapshot (resync status events).",
        |f| f.stats.collector.resyncs.get(),
    ),
    (
        "mdrelay_feed_checksum_mismatches_total",
        "Venue book checksums that did not match the local book.",
        |f| f.stats.collector.checksum_mismatches.get(),
    ),
    (
        "mdrelay_feed_crossed_books_total",
        "Times a book became crossed after an update.",
        |f| f.stats.collector.crossed_books.get(),
    ),
    (
        "mdrelay_queue_blocked_pushes_total",
        "Pushes that found the queue full and waited (block, conflate).",
        |f| f.queue.counters().producer.blocked.get(),
    ),
    (
        "mdrelay_queue_evicted_frames_total",
        "Frames evicted from the queue by drop_oldest.",
        |f| f.queue.counters().producer.evicted.get(),
    ),
    (
        "mdrelay_queue_saturation_changes_total",
        "Changes of the queue's saturation state.",
        |f| f.queue.counters().producer.state_changes.get(),
    ),
];

/// Per-feed integer gauges: name, help, value.
pub(super) const FEED_GAUGES: &[(&str, &str, FeedValue)] = &[
    (
        "mdrelay_feed_connected",
        "1 while the feed's WebSocket connection is up, else 0.",
        |f| f.stats.collector.connected.get(),
    ),
    (
        "mdrelay_queue_depth_frames",
        "Frames in the feed's queue now.",
        |f| f.queue.len() as u64,
    ),
    (
        "mdrelay_queue_capacity_frames",
        "Capacity of the feed's queue.",
        |f| f.queue.capacity() as u64,
    ),
    (
        "mdrelay_queue_high_water_frames",
        "Deepest the feed's queue has been since start.",
        |f| f.queue.counters().producer.high_water.get(),
    ),
    (
        "mdrelay_queue_saturation_level",
        "Queue saturation: 0 healthy (below 80 %), 1 degraded (80-95 %), 2 critical (95 % or more).",
        |f| f.queue.counters().saturation() as u64,
    ),
];
