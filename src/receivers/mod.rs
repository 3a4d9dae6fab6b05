//! Receivers: where telemetry enters. Each turns what it receives into
//! [`Sample`](crate::model::Sample)s for the pipelines it feeds and pushes
//! them into the pipelines' shard queues, all or nothing.

pub mod otlp;
pub mod probe;

use std::sync::Arc;

use crate::aggregator::Router;
use crate::clock::SharedClock;
use crate::contracts::CompiledContract;
use crate::model::Sample;

/// What a receiver needs to know about one pipeline it feeds.
#[derive(Debug)]
pub struct PipelineInput {
    /// Pipeline name.
    pub name: String,
    /// The pipeline's contracts, indexed like `SeriesKey::contract`.
    pub contracts: Vec<CompiledContract>,
    /// The pipeline's shard queues.
    pub router: Router,
    /// Window length in nanoseconds.
    pub window_size: u64,
    /// Allowed lateness in nanoseconds.
    pub allowed_lateness: u64,
    /// Largest accepted distance into the future, in nanoseconds.
    pub max_clock_skew: u64,
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
pub fn enqueue(
    pipelines: &[Arc<PipelineInput>],
    batches: &mut [Vec<Vec<Sample>>],
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
                Ok(permit) => permits.push((pi, si, permit)),
                // Dropping the permits taken so far releases them.
                Err(_) => {
                    return Err(QueueFull {
                        retry_after: retry_after(tx),
                    })
                }
            }
        }
    }
    for (pi, si, permit) in permits {
        permit.send(std::mem::take(&mut batches[pi][si]));
    }
    Ok(())
}

/// Whole seconds a refused client should wait: grows with how full the
/// queue still is (1 s when it has drained a little, up to 5 s).
fn retry_after<T>(tx: &tokio::sync::mpsc::Sender<T>) -> u32 {
    let used = 1.0 - tx.capacity() as f64 / tx.max_capacity().max(1) as f64;
    (1.0 + used * 4.0).round().clamp(1.0, 5.0) as u32
}
