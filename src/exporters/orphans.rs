//! Pending deliveries of an exporter that is no longer in the pipeline.
//!
//! A reload refuses to remove an exporter that still owes deliveries, but
//! a restart with the same file cannot refuse as gently: the file may be
//! the fix for something else. So at start the rows are not dropped and
//! not silent either: a WARN names the exporter and how many it owes, the
//! rows stay listed by `GET /api/v1/deliveries`, and
//! `verdict_outbox_oldest_pending_seconds{exporter}` keeps growing so the
//! outbox-age alert fires. An operator then puts the exporter back, or
//! gives the rows up on purpose with `DELETE /api/v1/deliveries?exporter=…`
//! ([`abandon`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::model::UnixNanos;
use crate::storage::{Attempt, DeliveryState, RunStore, StoreError};
use crate::telemetry;

/// How often the orphans' gauge is brought up to date.
const EVERY: Duration = Duration::from_secs(10);
/// Pending rows read per look (as many as a reload checks).
const LIMIT: usize = 10_000;

/// Watches the outbox for pending rows of exporters outside `configured`.
pub struct OrphanWatch {
    /// The exporters with a delivery worker in this configuration.
    pub configured: Vec<String>,
    /// The outbox.
    pub store: Arc<dyn RunStore>,
    /// Wall clock, for the rows' age.
    pub clock: SharedClock,
    /// Stops the watch with the server.
    pub stop: CancellationToken,
}

impl OrphanWatch {
    /// Looks at once (so the WARN is among the start-up lines), then every
    /// [`EVERY`] until stopped; an exporter whose rows are gone (delivered
    /// after it came back, or abandoned) has its gauge set to 0.
    pub async fn run(self) {
        let mut warned: BTreeSet<String> = BTreeSet::new();
        loop {
            match self.orphans().await {
                Ok(orphans) => {
                    for (exporter, (count, oldest)) in &orphans {
                        let age = Duration::from_nanos(self.clock.now().saturating_sub(*oldest));
                        metrics::gauge!(telemetry::OUTBOX_OLDEST_PENDING, "exporter" => exporter.clone())
                            .set(age.as_secs_f64());
                        if warned.insert(exporter.clone()) {
                            tracing::warn!(
                                exporter = %exporter,
                                pending = count,
                                oldest_seconds = age.as_secs(),
                                "Deliveries pending for an exporter that is not in the pipeline: nothing delivers them. Put the exporter back, or give them up with DELETE /api/v1/deliveries?exporter=… (token)."
                            );
                        }
                    }
                    warned.retain(|exporter| {
                        let owes = orphans.contains_key(exporter);
                        if !owes {
                            metrics::gauge!(telemetry::OUTBOX_OLDEST_PENDING, "exporter" => exporter.clone())
                                .set(0.0);
                        }
                        owes
                    });
                }
                Err(err) => {
                    tracing::warn!(error = %err, "Could not read the pending deliveries.");
                }
            }
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = tokio::time::sleep(EVERY) => {}
            }
        }
    }

    /// Exporters outside the configuration that owe deliveries: how many
    /// and when the oldest was committed.
    async fn orphans(&self) -> Result<BTreeMap<String, (usize, UnixNanos)>, StoreError> {
        let pending = self
            .store
            .deliveries(&[DeliveryState::Pending], LIMIT)
            .await?;
        let mut out: BTreeMap<String, (usize, UnixNanos)> = BTreeMap::new();
        for d in pending
            .iter()
            .filter(|d| !self.configured.contains(&d.exporter))
        {
            let entry = out.entry(d.exporter.clone()).or_insert((0, d.created_at));
            entry.0 += 1;
            entry.1 = entry.1.min(d.created_at);
        }
        Ok(out)
    }
}

/// Gives up the pending deliveries of `exporter` (they become `failed`,
/// with a note saying so, and stay listed), up to 10,000 at a time;
/// returns how many.
pub async fn abandon(
    store: &dyn RunStore,
    exporter: &str,
    now: UnixNanos,
) -> Result<usize, StoreError> {
    let attempt = Attempt::Failed {
        error: "abandoned by an operator: the exporter is not in the pipeline".into(),
    };
    let rows = store.pending(exporter, LIMIT).await?;
    for d in &rows {
        store
            .record_attempt(exporter, &d.event_id, &attempt, now)
            .await?;
    }
    Ok(rows.len())
}
