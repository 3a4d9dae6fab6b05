//! What travels from the aggregator's shards to the run engine: closed
//! windows, watermarks and snapshots of the open windows (for checkpoints).

use std::collections::{BTreeMap, HashMap};

use super::{Accum, RejectionTally, SeriesKey, UnixNanos, Window};

/// Open windows of some series: series → window start → accumulation.
pub type OpenWindows = HashMap<SeriesKey, BTreeMap<UnixNanos, Accum>>;

/// A window that has closed for one series.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedWindow {
    /// The series.
    pub series: SeriesKey,
    /// The window.
    pub window: Window,
    /// What it accumulated.
    pub accum: Accum,
}

/// What the shards tell the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineInput {
    /// A series got its first sample in its shard (ts = the sample's time).
    SeriesSeen {
        /// The series.
        series: SeriesKey,
        /// The sample's timestamp.
        ts: UnixNanos,
    },
    /// A window closed for one series.
    Closed(ClosedWindow),
    /// Items meant for a series were rejected at the edge since the shard's
    /// last tick (sent before its watermark): the series' run, created
    /// PENDING when it has none, says why it has no samples.
    Rejected {
        /// The series.
        series: SeriesKey,
        /// What was rejected, why, and how many.
        tally: RejectionTally,
    },
    /// Shard `shard` has emitted every window whose deadline is ≤ `now`.
    Watermark {
        /// Shard index.
        shard: usize,
        /// The shard's close time.
        now: UnixNanos,
    },
    /// Shard `shard`'s open windows, for the checkpoint.
    Snapshot {
        /// Shard index.
        shard: usize,
        /// Every open window of the shard.
        series: OpenWindows,
    },
    /// Shard `shard`'s metric stream table, encoded, at a graceful stop:
    /// stored with the final checkpoint so that a restart goes on from
    /// each stream's last point.
    Streams {
        /// Shard index.
        shard: usize,
        /// The encoded table (`aggregator::carry::encode`).
        table: String,
    },
}
