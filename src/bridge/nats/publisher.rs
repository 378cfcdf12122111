//! The `nats-publish` thread: a single-threaded tokio runtime confined to this thread, running
//! the maintained NATS client (`async-nats`; the synchronous `nats` crate is deprecated). It pops
//! the buffer (woken through a `tokio::sync::Notify`) and publishes, plainly or through JetStream
//! with acks and in-order re-sends of the unacknowledged window (the delivery rules in the
//! [module doc](super)). Messages the server refuses for good are dropped, counted and reported.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::{ConnectOptions, ServerAddr};

use super::outbound::{render_drop, Outbound, DETAIL_REFUSED};
use super::{Shared, READ_POLL};
use crate::base::backoff::Backoff;
use crate::bridge::config::JetStreamConfig;

/// JetStream messages awaiting their ack at once; a failed ack re-sends all of them.
pub const ACK_WINDOW: usize = 1024;
/// At shutdown, how long the publisher may take to empty the buffer and collect acks.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

struct Publisher {
    shared: Arc<Shared>,
    client: async_nats::Client,
    /// Waits between stream-creation attempts and between window re-sends.
    backoff: Backoff,
    /// Set once the reader closed: the drain deadline.
    deadline: Option<tokio::time::Instant>,
}

/// A JetStream message awaiting its ack.
struct Inflight {
    m: Outbound,
    id: String,
    ack: Option<jetstream::context::PublishAckFuture>,
    /// `connects` when it was sent: an ack still missing after a reconnect will not come.
    epoch: u64,
    /// `Nats-Expected-Last-Msg-Id`: the id of the message before it in the stream.
    expect: Option<String>,
}

/// How a failed JetStream publish is handled.
fn transient(e: &jetstream::context::PublishError) -> bool {
    use jetstream::context::PublishErrorKind as K;
    match e.kind() {
        K::TimedOut
        | K::BrokenPipe
        | K::StreamNotFound
        | K::MaxAckPending
        | K::WrongLastMessageId => true,
        K::Other => std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<jetstream::Error>())
            // An API error: 503 (JetStream not ready yet) is worth a retry; anything else
            // (message too large, a limit with discard-new) is the server's final word.
            .is_none_or(|api| api.code() == 503),
        _ => false,
    }
}

impl Publisher {
    /// The wait before retry `attempt` (≥ 2) of a JetStream operation: never below `initial`.
    fn retry_delay(&self, attempt: u64) -> Duration {
        self.backoff
            .before_attempt(attempt)
            .max(self.backoff.initial)
    }

    fn pop(&mut self) -> Option<Outbound> {
        self.shared.queue.pop()
    }

    /// True once the reader closed and the buffer is empty (or the drain deadline passed).
    fn finished(&mut self) -> bool {
        if self.deadline.is_none() && self.shared.closed.load(Ordering::Acquire) {
            self.deadline = Some(tokio::time::Instant::now() + DRAIN_TIMEOUT);
        }
        (self.deadline.is_some() && self.shared.queue.is_empty()) || self.past_deadline()
    }

    fn past_deadline(&self) -> bool {
        self.deadline
            .is_some_and(|d| tokio::time::Instant::now() >= d)
    }

    /// Waits for a push (or the reader closing).
    async fn wait(&mut self) {
        match self.deadline {
            Some(d) => {
                let _ = tokio::time::timeout_at(d, self.shared.notify.notified()).await;
            }
            None => {
                // A timeout too, so `closed` is seen even if a notification was consumed early.
                let _ = tokio::time::timeout(READ_POLL, self.shared.notify.notified()).await;
            }
        }
    }

    /// Publishes a drop report for a message the server refused.
    async fn refused(&mut self, m: &Outbound, err: &dyn fmt::Display) {
        let c = &self.shared.counters.publisher;
        c.refused.inc();
        tracing::warn!(subject = %m.subject, error = %err, "nats bridge: message refused; reported as dropped");
        if m.counted {
            let payload = render_drop(
                self.shared.payload,
                &m.origin,
                m.sequence,
                1,
                DETAIL_REFUSED,
            );
            if let Err(e) = self
                .client
                .publish(m.origin.status_subject.clone(), payload)
                .await
            {
                tracing::warn!(error = %e, "nats bridge: the drop report was refused too");
            }
        }
    }

    async fn run_core(&mut self) {
        loop {
            while let Some(m) = self.pop() {
                if self.past_deadline() {
                    self.shared
                        .counters
                        .publisher
                        .lost_at_shutdown
                        .add(1 + self.shared.queue.len() as u64);
                    while self.pop().is_some() {}
                    break;
                }
                let publish = self.client.publish(m.subject.clone(), m.payload.clone());
                // `None`: the drain deadline passed while the client could not take it.
                let sent = match self.deadline {
                    Some(d) => tokio::time::timeout_at(d, publish).await.ok(),
                    None => Some(publish.await),
                };
                match sent {
                    Some(Ok(())) => self.shared.counters.publisher.published.inc(),
                    Some(Err(e)) => self.refused(&m, &e).await,
                    None => self.shared.counters.publisher.lost_at_shutdown.inc(),
                }
            }
            if self.finished() {
                break;
            }
            self.wait().await;
        }
        let flush = self.client.flush();
        if tokio::time::timeout(Duration::from_secs(2), flush)
            .await
            .is_err()
        {
            tracing::warn!("nats bridge: final flush did not complete");
        }
    }

    async fn ensure_stream(
        &mut self,
        js: &jetstream::Context,
        cfg: &JetStreamConfig,
        prefix: &str,
    ) {
        let limit = |v: u64| {
            if v == 0 {
                -1
            } else {
                v.min(i64::MAX as u64) as i64
            }
        };
        let config = jetstream::stream::Config {
            name: cfg.stream.clone(),
            subjects: vec![format!("{prefix}.>")],
            max_age: cfg.max_age,
            max_bytes: limit(cfg.max_bytes),
            max_messages: limit(cfg.max_msgs),
            storage: jetstream::stream::StorageType::File,
            num_replicas: 1,
            ..Default::default()
        };
        let mut attempt = 1;
        loop {
            match js.create_or_update_stream(config.clone()).await {
                Ok(info) => {
                    self.shared.counters.publisher.stream_ready.set(1);
                    tracing::info!(stream = %info.config.name, messages = info.state.messages, "nats bridge: JetStream stream ready");
                    return;
                }
                Err(e) => {
                    if let jetstream::context::CreateStreamErrorKind::JetStream(api) = e.kind() {
                        if api.code() != 503 {
                            tracing::error!(stream = %cfg.stream, error = %api, "nats bridge: cannot create or update the stream; publishing anyway");
                            return;
                        }
                    }
                    if attempt == 1 {
                        tracing::warn!(error = %e, "nats bridge: stream not created yet; retrying");
                    }
                }
            }
            if self.finished() {
                return;
            }
            attempt += 1;
            tokio::time::sleep(self.retry_delay(attempt)).await;
        }
    }

    async fn send(&self, js: &jetstream::Context, f: &mut Inflight) {
        f.epoch = self.shared.counters.publisher.connects.get();
        let mut msg = jetstream::message::PublishMessage::build()
            .payload(f.m.payload.clone())
            .message_id(&f.id);
        if let Some(e) = &f.expect {
            msg = msg.expected_last_message_id(e);
        }
        f.ack = js.send_publish(f.m.subject.clone(), msg).await.ok();
    }

    /// The ack of `f`, or BrokenPipe as soon as the connection it was sent on is known to be
    /// gone (a reconnect happened and the ack is still missing) instead of the ack timeout.
    async fn ack(
        &self,
        f: &mut Inflight,
    ) -> Result<jetstream::publish::PublishAck, jetstream::context::PublishError> {
        use jetstream::context::{PublishError, PublishErrorKind};
        let Some(ack) = f.ack.take() else {
            return Err(PublishError::new(PublishErrorKind::BrokenPipe));
        };
        let mut fut = std::future::IntoFuture::into_future(ack);
        let c = &self.shared.counters.publisher;
        loop {
            match tokio::time::timeout(READ_POLL, &mut fut).await {
                Ok(r) => return r,
                Err(_) if c.connects.get() > f.epoch && c.connected.get() == 1 => {
                    return Err(PublishError::new(PublishErrorKind::BrokenPipe));
                }
                Err(_) => {}
            }
        }
    }

    async fn run_jetstream(&mut self, cfg: &JetStreamConfig, prefix: &str) {
        let js = jetstream::ContextBuilder::new()
            .max_ack_inflight(ACK_WINDOW * 2)
            .build(self.client.clone());
        self.ensure_stream(&js, cfg, prefix).await;
        let run_id = format!("{:x}-{}", crate::base::clock::wall_ns(), std::process::id());
        let mut next_id: u64 = 0;
        let mut window: std::collections::VecDeque<Inflight> = std::collections::VecDeque::new();
        let mut failures = 0u64;
        // Consecutive "wrong last message id" answers: after a few, the chain is restarted
        // (an outage longer than the stream's duplicate window, or another publisher).
        let mut mismatches = 0usize;
        let mut last_acked: Option<String> = None;
        loop {
            while window.len() < ACK_WINDOW {
                let Some(m) = self.pop() else { break };
                next_id += 1;
                let expect = window
                    .back()
                    .map(|b| b.id.clone())
                    .or_else(|| last_acked.clone());
                let mut f = Inflight {
                    m,
                    id: format!("{run_id}-{next_id}"),
                    ack: None,
                    epoch: 0,
                    expect,
                };
                self.send(&js, &mut f).await;
                window.push_back(f);
            }
            if self.past_deadline() {
                let lost = window.len() + self.shared.queue.len();
                self.shared
                    .counters
                    .publisher
                    .lost_at_shutdown
                    .add(lost as u64);
                if lost > 0 {
                    tracing::warn!(
                        lost,
                        "nats bridge: drain deadline passed; messages not acknowledged"
                    );
                }
                return;
            }
            let Some(front) = window.front_mut() else {
                if self.finished() {
                    return;
                }
                self.wait().await;
                continue;
            };
            let result = self.ack(front).await;
            match result {
                Ok(ack) => {
                    failures = 0;
                    mismatches = 0;
                    let c = &self.shared.counters.publisher;
                    c.published.inc();
                    if ack.duplicate {
                        c.duplicates.inc();
                    }
                    last_acked = window.pop_front().map(|f| f.id);
                }
                Err(e) if transient(&e) => {
                    failures += 1;
                    if e.kind() == jetstream::context::PublishErrorKind::WrongLastMessageId {
                        mismatches += 1;
                    }
                    if failures == 1 {
                        tracing::warn!(error = %e, pending = window.len(), "nats bridge: JetStream ack failed; re-sending the window after a backoff");
                    }
                    tokio::time::sleep(self.retry_delay(failures + 1)).await;
                    if matches!(
                        e.kind(),
                        jetstream::context::PublishErrorKind::StreamNotFound
                    ) && failures % 8 == 0
                    {
                        // The server came back without the stream (a new store): create it again.
                        self.ensure_stream(&js, cfg, prefix).await;
                    }
                    self.shared.counters.publisher.resends.inc();
                    // In order, each expecting its predecessor: copies sent on the lost
                    // connection or queued behind it can then never be stored out of order, and
                    // the stream discards the ones it already holds by their Nats-Msg-Id.
                    let mut prev = if mismatches >= 3 {
                        tracing::warn!("nats bridge: the stream's last message is not ours; restarting the chain");
                        mismatches = 0;
                        None
                    } else {
                        last_acked.clone()
                    };
                    for f in window.iter_mut() {
                        // Dropping an old ack future hands it to async-nats' acker.
                        f.ack = None;
                        f.expect = prev.replace(f.id.clone());
                        self.send(&js, f).await;
                    }
                }
                Err(e) => {
                    failures = 0;
                    if let Some(f) = window.pop_front() {
                        self.refused(&f.m, &e).await;
                    }
                }
            }
        }
    }
}

pub(super) fn publisher_thread(
    shared: Arc<Shared>,
    opts: ConnectOptions,
    addrs: Vec<ServerAddr>,
    js: Option<JetStreamConfig>,
    prefix: String,
    backoff: Backoff,
) {
    // The runtime lives and dies with this thread: nothing else in mdrelay is async.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "nats bridge: cannot build the publisher runtime; nothing will be published");
            return;
        }
    };
    rt.block_on(async move {
        let client = match opts.connect(addrs).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "nats bridge: cannot create the NATS client; nothing will be published");
                return;
            }
        };
        let mut p = Publisher {
            shared,
            client,
            backoff,
            deadline: None,
        };
        match &js {
            Some(cfg) => p.run_jetstream(cfg, &prefix).await,
            None => p.run_core().await,
        }
    });
}
