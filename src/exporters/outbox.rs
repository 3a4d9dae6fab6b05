//! The delivery worker of one exporter: reads its rows of the outbox in
//! commit order, delivers each (at least once: a crash between delivery and
//! the `delivered` mark redelivers it, with the same `event_id`), and
//! records the outcome. One worker per exporter, so a slow target only
//! delays its own events, and never ingest or evaluation, which never wait
//! on a worker.
//!
//! Order: the head row is delivered (or given up) before the next one, so a
//! receiver sees a run's transitions in the order they happened.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::model::UnixNanos;
use crate::storage::{Attempt, Delivery, Health, RunStore};
use crate::telemetry;

use super::webhook::Webhook;

/// Rows read per round.
const BATCH: usize = 64;
/// Delivered rows are purged this long after their transition (the
/// transition itself stays in the run's history).
const KEEP_DELIVERED: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often the worker looks without being woken (purge, clock drift).
const IDLE_WAKE: Duration = Duration::from_secs(60);

/// Where an exporter delivers.
#[derive(Debug)]
pub enum Sink {
    /// JSON lines on stdout.
    Log,
    /// HTTP POST.
    Webhook(Box<Webhook>),
}

impl Sink {
    async fn deliver(&self, d: &Delivery, now: UnixNanos) -> Attempt {
        match self {
            Sink::Log => super::log::write(d),
            Sink::Webhook(w) => w.attempt(d, now).await,
        }
    }
}

/// The worker of one exporter.
#[derive(Debug)]
pub struct Worker {
    /// Full exporter id.
    pub exporter: String,
    /// Where it delivers.
    pub sink: Sink,
    /// The outbox.
    pub store: Arc<dyn RunStore>,
    /// Woken by the run engines after a commit with rows for this exporter.
    pub notify: Arc<Notify>,
    /// Whether this worker purges old delivered rows. The purge covers every
    /// exporter's rows, so one worker does it.
    pub purge: bool,
    /// Wall clock.
    pub clock: SharedClock,
    /// Cancelled once the engines have stopped: one last pass, then exit.
    pub stop: CancellationToken,
    /// Storage health for `/readyz`.
    pub health: Arc<Health>,
}

/// How a round ended.
enum Next {
    /// More rows may be waiting: go on at once.
    Now,
    /// The head row is due in this long.
    In(Duration),
    /// Nothing pending.
    Idle,
}

impl Worker {
    /// Delivers until stopped.
    pub async fn run(self) {
        let mut last_purge: Option<tokio::time::Instant> = None;
        loop {
            let stopping = self.stop.is_cancelled();
            let next = self.round().await;
            if stopping {
                // The final pass after the engines stopped is done; what is
                // left stays pending and is delivered after the restart.
                return;
            }
            if self.purge && last_purge.is_none_or(|t| t.elapsed() >= IDLE_WAKE * 60) {
                last_purge = Some(tokio::time::Instant::now());
                let before = self
                    .clock
                    .now()
                    .saturating_sub(crate::model::nanos(KEEP_DELIVERED));
                if let Err(err) = self.store.purge_delivered(before).await {
                    tracing::warn!(exporter = %self.exporter, error = %err, "Could not purge delivered outbox rows.");
                }
            }
            let wait = match next {
                Next::Now => continue,
                Next::In(d) => d.min(IDLE_WAKE),
                Next::Idle => IDLE_WAKE,
            };
            tokio::select! {
                _ = self.notify.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = self.stop.cancelled() => {}
            }
        }
    }

    async fn round(&self) -> Next {
        let rows = match self.store.pending(&self.exporter, BATCH).await {
            Ok(rows) => {
                self.health.ok(&self.source());
                rows
            }
            Err(err) => {
                tracing::error!(exporter = %self.exporter, error = %err, "Could not read the outbox.");
                self.health.failed(&self.source(), err.to_string());
                return Next::In(Duration::from_secs(1));
            }
        };
        let oldest = rows.first().map_or(0.0, |d| {
            Duration::from_nanos(self.clock.now().saturating_sub(d.created_at)).as_secs_f64()
        });
        metrics::gauge!(telemetry::OUTBOX_OLDEST_PENDING, "exporter" => self.exporter.clone())
            .set(oldest);
        let full = rows.len() == BATCH;
        for d in rows {
            let now = self.clock.now();
            if d.next_attempt_at > now {
                return Next::In(Duration::from_nanos(d.next_attempt_at - now));
            }
            let attempt = self.sink.deliver(&d, now).await;
            self.report(&d, &attempt);
            let done = self.clock.now();
            if let Err(err) = self
                .store
                .record_attempt(&self.exporter, &d.event_id, &attempt, done)
                .await
            {
                // The row stays pending: it is delivered again later (at
                // least once, same event_id).
                tracing::error!(exporter = %self.exporter, event_id = %d.event_id, error = %err, "Could not record a delivery.");
                self.health.failed(&self.source(), err.to_string());
                return Next::In(Duration::from_secs(1));
            }
            if let Attempt::Retry { next_at, .. } = attempt {
                return Next::In(Duration::from_nanos(next_at.saturating_sub(done)));
            }
        }
        if full {
            Next::Now
        } else {
            Next::Idle
        }
    }

    fn source(&self) -> String {
        format!("exporter {}", self.exporter)
    }

    fn report(&self, d: &Delivery, attempt: &Attempt) {
        if !matches!(self.sink, Sink::Webhook(_)) {
            if let Attempt::Failed { error } = attempt {
                tracing::error!(exporter = %self.exporter, event_id = %d.event_id, %error, "Event not delivered.");
            }
            return;
        }
        let outcome = match attempt {
            Attempt::Delivered => {
                tracing::debug!(exporter = %self.exporter, event_id = %d.event_id, "Webhook delivered.");
                "delivered"
            }
            Attempt::Retry { next_at, error } => {
                let retry_in = Duration::from_nanos(next_at.saturating_sub(self.clock.now()));
                tracing::warn!(
                    exporter = %self.exporter,
                    event_id = %d.event_id,
                    attempt = d.attempts + 1,
                    %error,
                    retry_in = %humantime::format_duration(Duration::from_millis(retry_in.as_millis() as u64)),
                    "Webhook delivery failed; will retry."
                );
                "retry"
            }
            Attempt::Failed { error } => {
                tracing::error!(
                    exporter = %self.exporter,
                    event_id = %d.event_id,
                    attempt = d.attempts + 1,
                    %error,
                    "Webhook delivery failed for good; the event is marked failed (GET /api/v1/deliveries?state=failed)."
                );
                "failed"
            }
        };
        metrics::counter!(telemetry::WEBHOOK_DELIVERIES, "exporter" => self.exporter.clone(), "outcome" => outcome)
            .increment(1);
    }
}
