//! What the run engine stores and announces: runs, their window history,
//! and verdict events (design §5.5). The JSON forms here are the ones the API,
//! the log exporter and (later) webhooks share.

use serde::Serialize;
use serde_json::{json, Value};

use crate::aggregator::state::Accum;
use crate::contracts::{Figures, LatencyBound, WindowVerdict};
use crate::model::{rfc3339_millis, rfc3339_seconds, Subject, UnixNanos, Window};

/// The state of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunState {
    /// Known, no sample yet.
    Pending,
    /// Samples arriving; no decision yet.
    Validating,
    /// Final: the release passed.
    Promoted,
    /// Final: the release failed (or timed out).
    RolledBack,
}

impl RunState {
    /// All four states, in exposition order.
    pub const ALL: [RunState; 4] = [
        RunState::Pending,
        RunState::Validating,
        RunState::Promoted,
        RunState::RolledBack,
    ];

    /// PROMOTED and ROLLED_BACK never change.
    pub fn is_final(self) -> bool {
        matches!(self, RunState::Promoted | RunState::RolledBack)
    }

    /// The name users see (`ROLLED_BACK`).
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Pending => "PENDING",
            RunState::Validating => "VALIDATING",
            RunState::Promoted => "PROMOTED",
            RunState::RolledBack => "ROLLED_BACK",
        }
    }
}

/// A run and everything needed to resume it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// Unique id (ULID).
    pub run_id: String,
    /// Contract name.
    pub contract: String,
    /// Contract version the run was started under.
    pub contract_version: u32,
    /// The release under validation.
    pub subject: Subject,
    /// Current state.
    pub state: RunState,
    /// Why it is in that state.
    pub reason: String,
    /// When the run was created.
    pub started_at: UnixNanos,
    /// When it became final.
    pub decided_at: Option<UnixNanos>,
    /// A reset replaced it by a newer run.
    pub superseded: bool,
    /// Consecutive passing sufficient windows.
    pub pass_streak: u32,
    /// Consecutive failing sufficient windows.
    pub fail_streak: u32,
    /// Windows recorded while validating.
    pub windows: u64,
    /// Everything the run counted until it became final.
    pub cumulative: Accum,
    /// End of the last window recorded for the run.
    pub last_window_end: Option<UnixNanos>,
    /// Time of the first sample (windows before its window are not recorded).
    pub first_sample_at: Option<UnixNanos>,
    /// The worst quantile bound of the windows recorded while validating:
    /// a run is only as precise as its least precise window.
    pub latency_bound: LatencyBound,
}

impl RunRecord {
    /// A new PENDING run.
    pub fn new(contract: &str, contract_version: u32, subject: Subject, now: UnixNanos) -> Self {
        RunRecord {
            run_id: ulid::Ulid::new().to_string(),
            contract: contract.to_string(),
            contract_version,
            subject,
            state: RunState::Pending,
            reason: "waiting for the first sample".into(),
            started_at: now,
            decided_at: None,
            superseded: false,
            pass_streak: 0,
            fail_streak: 0,
            windows: 0,
            cumulative: Accum::default(),
            last_window_end: None,
            first_sample_at: None,
            latency_bound: LatencyBound::default(),
        }
    }

    /// The run's cumulative figures in the §5.5 `run` shape.
    pub fn run_json(&self) -> Value {
        let f = Figures::of(&self.cumulative);
        let mut v = json!({
            "started_at": rfc3339_millis(self.started_at),
            "samples": self.cumulative.samples,
            "windows": self.windows,
            "p95_latency_ms": f.p95_latency_ms,
            "error_rate_percent": f.error_rate_percent,
            "conversion_rate_percent": f.conversion_rate_percent,
        });
        // The run's bound is the worst of its windows'.
        if let Value::Object(map) = &mut v {
            for (k, b) in self.latency_bound.json_fields() {
                map.insert(k.into(), b);
            }
        }
        v
    }

    /// The API's Run object (design §7).
    pub fn to_json(&self) -> Value {
        json!({
            "contract": self.contract,
            "contract_version": self.contract_version,
            "subject": self.subject.joined(),
            "subject_attributes": subject_map(&self.subject),
            "run_id": self.run_id,
            "state": self.state,
            "reason": self.reason,
            "started_at": rfc3339_millis(self.started_at),
            "decided_at": self.decided_at.map(rfc3339_millis),
            "run": self.run_json(),
            "superseded": self.superseded,
        })
    }
}

/// A subject's attributes as a JSON object.
pub fn subject_map(s: &Subject) -> Value {
    Value::Object(
        s.attributes()
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// One window of a run's history.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRecord {
    /// The window.
    pub window: Window,
    /// Its figures.
    pub figures: Figures,
    /// Pass, fail or insufficient.
    pub result: WindowVerdict,
    /// One sentence per failed check.
    pub failures: Vec<String>,
}

impl WindowRecord {
    /// The API's window object (design §7).
    pub fn to_json(&self) -> Value {
        let f = &self.figures;
        let mut v = json!({
            "start": rfc3339_seconds(self.window.start),
            "end": rfc3339_seconds(self.window.end),
            "samples": f.samples,
            "p50_latency_ms": f.p50_latency_ms,
            "p95_latency_ms": f.p95_latency_ms,
            "p99_latency_ms": f.p99_latency_ms,
            "error_rate_percent": f.error_rate_percent,
            "conversion_rate_percent": f.conversion_rate_percent,
            "result": self.result,
            "failures": self.failures,
        });
        // The bound the latency quantiles above are within: the sketch's
        // relative bound, and for spread explicit buckets the p95's bucket.
        if let Value::Object(map) = &mut v {
            for (k, b) in f.bound().json_fields() {
                map.insert(k.into(), b);
            }
        }
        v
    }
}

/// One transition, announced once with one `event_id` to every exporter.
#[derive(Debug, Clone, PartialEq)]
pub struct VerdictEvent {
    /// Stable id of the transition (ULID).
    pub event_id: String,
    /// When the transition was committed.
    pub emitted_at: UnixNanos,
    /// The run after the transition.
    pub run: RunRecord,
    /// The state before.
    pub previous_state: RunState,
    /// The window that decided, if any.
    pub window: Option<WindowRecord>,
    /// Failed checks that caused it (empty for a promotion).
    pub failures: Vec<String>,
    /// The contract is `dry_run`: nothing is triggered.
    pub dry_run: bool,
}

impl VerdictEvent {
    /// The §5.5 JSON body.
    pub fn to_json(&self) -> Value {
        json!({
            "event_id": self.event_id,
            "emitted_at": rfc3339_millis(self.emitted_at),
            "contract": self.run.contract,
            "contract_version": self.run.contract_version,
            "run_id": self.run.run_id,
            "subject": subject_map(&self.run.subject),
            "state": self.run.state,
            "previous_state": self.previous_state,
            "reason": self.run.reason,
            "window": self.window.as_ref().map(|w| json!({
                "start": rfc3339_seconds(w.window.start),
                "end": rfc3339_seconds(w.window.end),
            })),
            "observed": self.window.as_ref().map(|w| {
                let f = &w.figures;
                json!({
                    "p50_latency_ms": f.p50_latency_ms,
                    "p95_latency_ms": f.p95_latency_ms,
                    "p99_latency_ms": f.p99_latency_ms,
                    "error_rate_percent": f.error_rate_percent,
                    "conversion_rate_percent": f.conversion_rate_percent,
                    "samples": f.samples,
                })
            }),
            "run": self.run.run_json(),
            "failures": self.failures,
            "dry_run": self.dry_run,
        })
    }
}
