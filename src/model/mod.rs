//! Internal data types shared by every stage: what a sample is, which series
//! it belongs to, how UTC windows are aligned, what a window accumulates and
//! shows, what travels from the shards to the run engine, and the runs and
//! events the engine stores and announces. No async and no I/O here; every
//! stage imports these types and none of them imports a stage.

pub mod accum;
pub mod evidence;
pub mod figures;
pub mod flow;
pub mod held;
pub mod open_accum;
pub mod point;
pub mod point_batch;
pub mod rejection;
pub mod rollout;
pub mod run;
pub mod sample;
pub mod series;
pub mod window;

pub use accum::{Accum, Exceedance, Spread};
pub use evidence::{BaselineTally, CheckKind, CheckResult, CheckStatus, RunEvidence};
pub use figures::{Figures, LatencyBound, Quantile, WindowOutcome, WindowVerdict};
pub use flow::{ClosedWindow, EngineInput, OpenWindows};
pub use held::HeldBytes;
pub use open_accum::OpenAccum;
pub use point::PointSample;
pub use point_batch::PointBatch;
pub use rejection::{Rejected, RejectionTally};
pub use rollout::{FlagChange, FlagTemplate, Rollout, RolloutPhase};
pub use run::{RunRecord, RunState, VerdictEvent, WindowRecord};
pub use sample::Sample;
pub use series::{SeriesKey, Subject};
pub use window::{nanos, Window, WindowTiming};

/// Nanoseconds since the UNIX epoch (UTC), as OTLP carries time.
pub type UnixNanos = u64;

/// Formats a UNIX-nanosecond time as RFC 3339 UTC with a `Z` suffix, at
/// millisecond precision (`2026-11-25T14:03:10.004Z`).
pub fn rfc3339_millis(t: UnixNanos) -> String {
    let st = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(t);
    humantime::format_rfc3339_millis(st).to_string()
}

/// Formats a UNIX-nanosecond time as RFC 3339 UTC at second precision
/// (`2026-11-25T14:02:00Z`); window bounds are whole seconds in practice.
pub fn rfc3339_seconds(t: UnixNanos) -> String {
    let st = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(t);
    humantime::format_rfc3339_seconds(st).to_string()
}
