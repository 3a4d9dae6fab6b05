//! The evidence behind a decision: for every check of a contract, where it
//! stands (proven passing, proven failing, or still open), its estimate, its
//! confidence bounds and the samples they rest on. A run keeps its latest
//! look here, each window records the evidence as of its close, and events,
//! the API and `/metrics` show it. The checks themselves are recomputed from
//! the run's cumulative counts at every look; nothing here feeds them.
//!
//! Shares are stored as fractions (0–1); the API shows percent, Prometheus
//! ratios.

use serde::{Deserialize, Serialize};

/// What a check tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// Share of requests slower than `max_p50_latency_ms` ≤ 50 %.
    P50Latency,
    /// Share of requests slower than `max_p95_latency_ms` ≤ 5 %.
    P95Latency,
    /// Share of requests slower than `max_p99_latency_ms` ≤ 1 %.
    P99Latency,
    /// Share of failed requests ≤ `max_error_rate_percent`.
    ErrorRate,
    /// Share of converted requests ≥ `min_conversion_rate_percent`.
    ConversionRate,
    /// Error rate minus the baseline's ≤ `max_error_rate_increase_points`.
    BaselineErrorRate,
    /// Share of requests slower than the baseline's p95 plus the allowed
    /// increase, minus the baseline's share slower than its p95, ≤ 0.
    BaselineP95Latency,
}

impl CheckKind {
    /// Every kind, in the order checks are listed.
    pub const ALL: [CheckKind; 7] = [
        CheckKind::P50Latency,
        CheckKind::P95Latency,
        CheckKind::P99Latency,
        CheckKind::ErrorRate,
        CheckKind::ConversionRate,
        CheckKind::BaselineErrorRate,
        CheckKind::BaselineP95Latency,
    ];

    /// The name in JSON and metric labels (`p95_latency`).
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::P50Latency => "p50_latency",
            CheckKind::P95Latency => "p95_latency",
            CheckKind::P99Latency => "p99_latency",
            CheckKind::ErrorRate => "error_rate",
            CheckKind::ConversionRate => "conversion_rate",
            CheckKind::BaselineErrorRate => "baseline_error_rate",
            CheckKind::BaselineP95Latency => "baseline_p95_latency",
        }
    }

    /// Compares the subject with the baseline (a difference of shares).
    pub fn is_baseline(self) -> bool {
        matches!(
            self,
            CheckKind::BaselineErrorRate | CheckKind::BaselineP95Latency
        )
    }
}

/// Where a check stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// Not enough evidence either way yet.
    #[default]
    Open,
    /// Proven within its limit at the latest look.
    Passing,
    /// Proven beyond its limit (the run is rolled back).
    Failing,
}

impl CheckStatus {
    /// Every status, in exposition order.
    pub const ALL: [CheckStatus; 3] = [
        CheckStatus::Passing,
        CheckStatus::Failing,
        CheckStatus::Open,
    ];

    /// The name in JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Open => "open",
            CheckStatus::Passing => "passing",
            CheckStatus::Failing => "failing",
        }
    }
}

/// One check's evidence at a look.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Which check.
    pub check: CheckKind,
    /// Where it stands.
    pub status: CheckStatus,
    /// The limit of the share (or of the difference of shares).
    pub limit: f64,
    /// The share (or difference) observed over the run; `None` before any
    /// sample.
    pub estimate: Option<f64>,
    /// Lower confidence bound: in sequential mode the running bound, the
    /// highest lower bound of any look of the run so far.
    pub lower: f64,
    /// Upper confidence bound: the lowest of any look so far. Only a share
    /// that changed during the run makes it fall below `lower`.
    pub upper: f64,
    /// Samples of the subject the estimate rests on.
    pub samples: u64,
    /// Samples of the baseline, for a comparison.
    #[serde(default)]
    pub baseline_samples: Option<u64>,
    /// For latency checks: the latency (ms) the share is counted above.
    #[serde(default)]
    pub threshold_ms: Option<f64>,
    /// For the baseline latency check: the baseline's p95 (ms) it was
    /// fixed at.
    #[serde(default)]
    pub reference_ms: Option<f64>,
    /// The check can only be proven failing (a limit of 0, or no allowed
    /// difference from the baseline): it guards against regressions and
    /// does not hold a promotion back.
    #[serde(default)]
    pub fail_only: bool,
    /// For latency checks whose counts are only known within a range
    /// (buckets straddling the threshold): the share surely and possibly
    /// slower. `estimate` is its middle, which the data do not support on
    /// its own, so sentences name the range instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate_range: Option<[f64; 2]>,
}

/// What a run accumulates for its comparisons with the baseline, over the
/// windows it was judged on.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct BaselineTally {
    /// Baseline requests in the run's windows.
    pub samples: u64,
    /// Baseline failed requests in the run's windows.
    pub errors: u64,
    /// The baseline's p95 (ms) the latency comparison is fixed at, taken
    /// from baseline windows that closed before the run's first judged
    /// window (never from the samples it is then tested on); `None` until
    /// the baseline had enough data.
    pub reference_ms: Option<f64>,
    /// Subject latencies (since the reference was fixed): slower than the
    /// reference plus the allowed increase, surely / possibly, and counted.
    pub slow_surely: u64,
    /// See `slow_surely`.
    pub slow_possibly: u64,
    /// See `slow_surely`.
    pub latencies: u64,
    /// Baseline latencies (since the reference was fixed): slower than the
    /// reference, surely / possibly, and counted.
    pub base_slow_surely: u64,
    /// See `base_slow_surely`.
    pub base_slow_possibly: u64,
    /// See `base_slow_surely`.
    pub base_latencies: u64,
}

/// A run's evidence: its checks as of the last look, and its baseline
/// tally. Stored with the run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunEvidence {
    /// One entry per check of the contract.
    pub checks: Vec<CheckResult>,
    /// Comparisons with the baseline.
    #[serde(default)]
    pub baseline: BaselineTally,
}

impl RunEvidence {
    /// The check of `kind`, if the contract has it.
    pub fn check(&self, kind: CheckKind) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.check == kind)
    }
}
