//! Receivers: where telemetry enters. Each turns what it receives into
//! [`Sample`](crate::model::Sample)s for the pipelines it feeds and pushes
//! them into the pipelines' shard queues, all or nothing.

pub mod otlp;

use crate::aggregator::Router;
use crate::clock::SharedClock;
use crate::contracts::CompiledContract;

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
