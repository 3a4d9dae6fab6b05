//! Receivers: where telemetry enters. Each turns what it receives into
//! [`Sample`](crate::model::Sample)s for the pipelines it feeds and pushes
//! them into the pipelines' shard queues, all or nothing.

pub mod otlp;
pub(crate) mod probe;

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use crate::aggregator::{Items, Router, ShardBatch};
use crate::clock::SharedClock;
use crate::config::ContractSpec;
use crate::model::WindowTiming;

/// What a receiver needs to know about one pipeline it feeds.
#[derive(Debug)]
pub struct PipelineInput {
    /// Pipeline name.
    pub name: String,
    /// The pipeline's contracts, indexed like `SeriesKey::contract`.
    pub contracts: Vec<ContractSpec>,
    /// The pipeline's shard queues.
    pub router: Router,
    /// The pipeline's window settings.
    pub timing: WindowTiming,
    /// Wall-clock source (shared with the shards).
    pub clock: SharedClock,
}

/// A shard queue had no room: nothing was enqueued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ingest queue full, retry after {retry_after}s")]
pub struct QueueFull {
    /// Whole seconds a client should wait before retrying (1–5, growing with
    /// how full the queue is).
    pub retry_after: u32,
}

/// Enqueues `batches[pipeline][shard]` all or nothing: a slot is reserved on
/// every shard that gets a non-empty batch before anything is sent, so when
/// one queue is full nothing is sent and the batches are left as they were
/// (for the caller to refuse or retry). Sent batches are left empty.
///
/// `budget`, the request's share of the in-flight byte budget for its queued
/// items, is split over the batches and released as each shard records its
/// batch.
pub fn enqueue<B: Items>(
    pipelines: &[Arc<PipelineInput>],
    batches: &mut [Vec<B>],
    mut budget: Option<OwnedSemaphorePermit>,
) -> Result<(), QueueFull> {
    let mut permits = Vec::new();
    for (pi, shards) in batches.iter().enumerate() {
        let Some(p) = pipelines.get(pi) else {
            continue;
        };
        for (si, batch) in shards.iter().enumerate() {
            if batch.is_empty() {
                continue;
            }
            let Some(tx) = p.router.senders().get(si) else {
                continue;
            };
            match tx.try_reserve() {
                Ok(permit) => permits.push((pi, si, permit, p.clock.now())),
                // Dropping the permits taken so far releases them.
                Err(_) => {
                    return Err(QueueFull {
                        retry_after: retry_after(&p.router),
                    })
                }
            }
        }
    }
    let last = permits.len().saturating_sub(1);
    for (i, (pi, si, permit, accepted_at)) in permits.into_iter().enumerate() {
        let items = std::mem::take(&mut batches[pi][si]);
        let share = match budget.as_mut() {
            Some(b) if i == last => b.split(b.num_permits()),
            Some(b) => {
                let bytes = items.held_bytes();
                let units = bytes.div_ceil(BUDGET_UNIT);
                b.split(units.min(b.num_permits()))
            }
            None => None,
        };
        permit.send(ShardBatch {
            items: items.into(),
            budget: share,
            accepted_at,
        });
    }
    Ok(())
}

/// Budget permits are KiB: `service.max_inflight_bytes` fits a semaphore.
pub const BUDGET_UNIT: usize = 1024;

/// Whole seconds a refused client should wait: grows with the pressure on
/// the pipeline's queues (1 s when they are mostly drained, up to 5 s when
/// every one is full).
fn retry_after(router: &Router) -> u32 {
    let senders = router.senders();
    let used: f64 = senders
        .iter()
        .map(|tx| 1.0 - tx.capacity() as f64 / tx.max_capacity().max(1) as f64)
        .sum::<f64>()
        / senders.len().max(1) as f64;
    backoff_secs(used)
}

/// Whole seconds to wait when `used` (0–1) of a resource is taken: 1 s
/// when little is, up to 5 s when all of it is.
pub(crate) fn backoff_secs(used: f64) -> u32 {
    (1.0 + used * 4.0).round().clamp(1.0, 5.0) as u32
}
