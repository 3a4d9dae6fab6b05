//! The delivery worker of one exporter: reads its rows of the outbox in
//! commit order, delivers each (at least once: a crash between delivery and
//! the `delivered` mark redelivers it, with the same `event_id`), and
//! records the outcome. One worker per exporter, so a slow target only
//! delays its own events, and never ingest or evaluation, which never wait
//! on a worker.
//!
//! Order: the head row is delivered (or given up) before the next one, so a
//! receiver sees a run's transitions in the order they happened. Flag
//! changes (`unleash`) are different: each sets an absolute value, so only
//! the latest pending change of a flag is applied (older ones are marked
//! superseded), and the flags are independent of one another: one flag
//! that cannot be changed (deleted, misnamed) never holds up the others.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::model::UnixNanos;
use crate::storage::{Attempt, Delivery, Health, RunStore};
use crate::telemetry;

use super::unleash::Unleash;
use super::webhook::Webhook;
use crate::runs::task::FlagAck;

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
    /// Flag changes through Unleash's Admin API.
    Unleash(Box<FlagSink>),
}

/// An Unleash target and where its acknowledgements go.
#[derive(Debug)]
pub struct FlagSink {
    /// The target.
    pub unleash: Unleash,
    /// The run engine that owns each contract's runs: told when Unleash
    /// applied a change, so the step's hold starts.
    pub acks: HashMap<String, mpsc::Sender<FlagAck>>,
    /// Problems with the target, for `/readyz`'s `degraded`.
    pub targets: Arc<Health>,
}

impl Sink {
    async fn deliver(&self, d: &Delivery, now: UnixNanos) -> Attempt {
        match self {
            Sink::Log => super::log::write(d),
            Sink::Webhook(w) => w.attempt(d, now).await,
            Sink::Unleash(f) => f.unleash.attempt(d, now).await,
        }
    }

    /// The longest one attempt can take: an outbox lease must outlast it,
    /// or another instance could start on the same row while it runs.
    fn attempt_bound(&self) -> Duration {
        match self {
            Sink::Log => Duration::ZERO,
            Sink::Webhook(w) => w.timeout(),
            // Looking up the flag's strategy, changing it, switching it.
            Sink::Unleash(f) => f.unleash.timeout().saturating_mul(3),
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
    /// In a cluster: the lease this instance must hold to deliver the
    /// exporter's rows (one instance at a time, in order).
    pub lease: Option<OutboxLease>,
}

/// An instance's claim to deliver an exporter's outbox in a cluster.
#[derive(Debug, Clone)]
pub struct OutboxLease {
    /// The shared database.
    pub store: Arc<crate::storage::SqlStore>,
    /// This instance's name.
    pub instance: String,
}

/// How long a lease runs beyond the longest attempt: it is renewed before
/// every delivery and at every round (at most [`CLUSTER_WAKE`] apart), so
/// another instance takes over this long (plus the exporter's attempt
/// bound) after the holder stops delivering, and never while one of the
/// holder's attempts may still be under way.
const LEASE: Duration = Duration::from_secs(10);

/// How long a worker's final pass at a stop or reload goes on starting
/// deliveries (each then takes at most its attempt bound).
const FINAL_PASS: Duration = Duration::from_secs(5);

/// How often a worker in a cluster looks at the outbox without being
/// woken: rows are committed by the leader, which may be another instance.
const CLUSTER_WAKE: Duration = Duration::from_secs(1);

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
            // The final pass after the engines stopped starts no delivery
            // after FINAL_PASS: a slow target must not hold a stop or a
            // reload past its grace (what is left stays pending and is
            // delivered after it, at least once).
            let deadline = stopping.then(|| tokio::time::Instant::now() + FINAL_PASS);
            let next = self.round(deadline).await;
            if stopping {
                self.release().await;
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
            let wake = if self.lease.is_some() {
                CLUSTER_WAKE
            } else {
                IDLE_WAKE
            };
            let wait = match next {
                Next::Now => continue,
                Next::In(d) => d.min(wake),
                Next::Idle => wake,
            };
            tokio::select! {
                _ = self.notify.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = self.stop.cancelled() => {}
            }
        }
    }

    /// Whether this instance may deliver now (always, outside a cluster).
    /// `renew`: only extend a lease held without a break since the round
    /// began (the rows it read are then still this instance's to deliver);
    /// otherwise take it if it is free or lapsed.
    async fn leased(&self, renew: bool) -> bool {
        let Some(lease) = &self.lease else {
            return true;
        };
        let term = crate::model::nanos(LEASE)
            .saturating_add(crate::model::nanos(self.sink.attempt_bound()));
        let held = lease
            .store
            .lease_outbox(&self.exporter, &lease.instance, term, renew)
            .await;
        match held {
            Ok(held) => {
                if renew && !held {
                    tracing::warn!(exporter = %self.exporter, "The outbox lease lapsed during a round; the rest of the batch is left to whoever holds it now.");
                }
                held
            }
            Err(err) => {
                tracing::warn!(exporter = %self.exporter, error = %err, "Could not renew the outbox lease.");
                false
            }
        }
    }

    /// In a cluster, gives the lease up as the worker stops, so that
    /// another instance delivers at once instead of after it lapses.
    async fn release(&self) {
        if let Some(lease) = &self.lease {
            if let Err(err) = lease
                .store
                .release_outbox(&self.exporter, &lease.instance)
                .await
            {
                tracing::warn!(exporter = %self.exporter, error = %err, "Could not give up the outbox lease; another instance delivers once it lapses.");
            }
        }
    }

    async fn round(&self, deadline: Option<tokio::time::Instant>) -> Next {
        if !self.leased(false).await {
            return Next::In(CLUSTER_WAKE);
        }
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
        let full = rows.len() == BATCH;
        let in_order = !matches!(self.sink, Sink::Unleash(_));
        let rows = if in_order {
            rows
        } else {
            match self.supersede(rows).await {
                Some(rows) => rows,
                None => return Next::In(Duration::from_secs(1)),
            }
        };
        // Rollbacks among the flag changes still to apply: counted down as
        // Unleash applies them, so the gauge reads 0 as soon as the last one
        // is, not at the next round (which may be a minute away).
        let mut unapplied = rows
            .iter()
            .filter(|d| Unleash::change_of(d).is_ok_and(|c| c.rollback))
            .count();
        let rollbacks = |n: usize| {
            if !in_order {
                metrics::gauge!(telemetry::UNLEASH_UNAPPLIED_ROLLBACKS, "exporter" => self.exporter.clone())
                    .set(n as f64);
            }
        };
        rollbacks(unapplied);
        let oldest = rows.first().map_or(0.0, |d| {
            Duration::from_nanos(self.clock.now().saturating_sub(d.created_at)).as_secs_f64()
        });
        metrics::gauge!(telemetry::OUTBOX_OLDEST_PENDING, "exporter" => self.exporter.clone())
            .set(oldest);
        // Flag changes due later (each flag is independent): the soonest.
        let mut soonest: Option<UnixNanos> = None;
        for d in rows {
            let now = self.clock.now();
            if d.next_attempt_at > now {
                if in_order {
                    return Next::In(Duration::from_nanos(d.next_attempt_at - now));
                }
                soonest = Some(soonest.map_or(d.next_attempt_at, |s| s.min(d.next_attempt_at)));
                continue;
            }
            match deadline {
                Some(d) if tokio::time::Instant::now() >= d => return Next::Idle,
                // Stopping began during this round: the final pass (with
                // its deadline) goes on from here.
                None if self.stop.is_cancelled() => return Next::Now,
                _ => {}
            }
            // The batch was read under the lease; a slow target can make a
            // round outlast it, so each delivery first extends it, and a
            // round whose lease lapsed stops (another instance may have
            // taken it and be delivering the same rows).
            if !self.leased(true).await {
                return Next::In(CLUSTER_WAKE);
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
                if in_order {
                    return Next::In(Duration::from_nanos(next_at.saturating_sub(done)));
                }
                soonest = Some(soonest.map_or(next_at, |s| s.min(next_at)));
            } else if attempt == Attempt::Delivered {
                if Unleash::change_of(&d).is_ok_and(|c| c.rollback) {
                    unapplied = unapplied.saturating_sub(1);
                    rollbacks(unapplied);
                }
                self.acknowledge(&d, done).await;
            }
        }
        if full {
            Next::Now
        } else if let Some(at) = soonest {
            Next::In(Duration::from_nanos(at.saturating_sub(self.clock.now())))
        } else {
            Next::Idle
        }
    }

    /// Flag changes: keeps the latest pending change of each flag and
    /// marks the older ones superseded (the latest carries the value that
    /// counts). `None` when the storage failed (reported).
    async fn supersede(&self, rows: Vec<Delivery>) -> Option<Vec<Delivery>> {
        let mut latest: HashMap<String, usize> = HashMap::new();
        let changes: Vec<Option<crate::model::FlagChange>> =
            rows.iter().map(|d| Unleash::change_of(d).ok()).collect();
        for (i, c) in changes.iter().enumerate() {
            if let Some(c) = c {
                latest.insert(c.flag.clone(), i);
            }
        }
        let mut kept = Vec::new();
        for (i, (d, c)) in rows.into_iter().zip(&changes).enumerate() {
            let by = c
                .as_ref()
                .and_then(|c| latest.get(&c.flag))
                .filter(|&&j| j != i)
                .and_then(|&j| changes[j].as_ref());
            let Some(by) = by else {
                kept.push(d);
                continue;
            };
            let attempt = Attempt::Superseded {
                note: format!(
                    "replaced by change {} ({}) before it was applied",
                    by.change_id,
                    describe_value(by)
                ),
            };
            self.report(&d, &attempt);
            if let Err(err) = self
                .store
                .record_attempt(&self.exporter, &d.event_id, &attempt, self.clock.now())
                .await
            {
                tracing::error!(exporter = %self.exporter, event_id = %d.event_id, error = %err, "Could not record a delivery.");
                self.health.failed(&self.source(), err.to_string());
                return None;
            }
        }
        Some(kept)
    }

    /// Tells the run engine that Unleash applied a flag change at `at`.
    async fn acknowledge(&self, d: &Delivery, at: UnixNanos) {
        let Sink::Unleash(sink) = &self.sink else {
            return;
        };
        let Ok(change) = Unleash::change_of(d) else {
            return;
        };
        if let Some(engine) = sink.acks.get(&change.contract) {
            // The engine has stopped only when shutting down; the
            // acknowledgement is then found in the outbox at the next start.
            let _ = engine
                .send(FlagAck {
                    exporter: self.exporter.clone(),
                    run_id: change.run_id,
                    change_id: change.change_id,
                    at,
                })
                .await;
        }
    }

    fn source(&self) -> String {
        format!("exporter {}", self.exporter)
    }

    /// `/readyz`'s key for one flag: each flag has its own problem (one
    /// missing flag stays listed while the exporter's other flags change).
    fn flag_source(&self, flag: &str) -> String {
        format!("exporter {} flag {flag}", self.exporter)
    }

    fn report(&self, d: &Delivery, attempt: &Attempt) {
        if let Sink::Unleash(sink) = &self.sink {
            self.report_flag(sink, d, attempt);
            return;
        }
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
            // Only flag changes are superseded.
            Attempt::Superseded { .. } => "superseded",
        };
        metrics::counter!(telemetry::WEBHOOK_DELIVERIES, "exporter" => self.exporter.clone(), "outcome" => outcome)
            .increment(1);
    }
}

impl Worker {
    /// Logs and counts one attempt at a flag change, and keeps `/readyz`'s
    /// view of the target.
    fn report_flag(&self, sink: &FlagSink, d: &Delivery, attempt: &Attempt) {
        let change = Unleash::change_of(d).ok();
        let flag = change.as_ref().map_or("", |c| c.flag.as_str());
        let value = change.as_ref().map(describe_value).unwrap_or_default();
        let rollback = change.as_ref().is_some_and(|c| c.rollback);
        let outcome = match attempt {
            Attempt::Delivered => {
                sink.targets.ok(&self.flag_source(flag));
                tracing::info!(exporter = %self.exporter, change_id = %d.event_id, flag, value, "Flag changed.");
                "delivered"
            }
            Attempt::Retry { next_at, error } => {
                sink.targets.failed(&self.flag_source(flag), error.clone());
                let retry_in = Duration::from_nanos(next_at.saturating_sub(self.clock.now()));
                let retry_in =
                    humantime::format_duration(Duration::from_millis(retry_in.as_millis() as u64));
                if rollback {
                    tracing::error!(exporter = %self.exporter, change_id = %d.event_id, flag, value, attempt = d.attempts + 1, %error, retry_in = %retry_in, "Rollback not applied to the flag yet; retrying until it is.");
                } else {
                    tracing::warn!(exporter = %self.exporter, change_id = %d.event_id, flag, value, attempt = d.attempts + 1, %error, retry_in = %retry_in, "Flag change not applied; will retry.");
                }
                "retry"
            }
            Attempt::Failed { error } => {
                tracing::error!(exporter = %self.exporter, change_id = %d.event_id, flag, %error, "Flag change unreadable; marked failed.");
                "failed"
            }
            Attempt::Superseded { note } => {
                tracing::info!(exporter = %self.exporter, change_id = %d.event_id, flag, value, %note, "Flag change superseded.");
                "superseded"
            }
        };
        metrics::counter!(telemetry::FLAG_CHANGES, "exporter" => self.exporter.clone(), "outcome" => outcome)
            .increment(1);
    }
}

/// `rollout 25%`, `off`.
fn describe_value(c: &crate::model::FlagChange) -> String {
    if c.enabled {
        format!("rollout {}%", c.percent)
    } else {
        "off".to_string()
    }
}
