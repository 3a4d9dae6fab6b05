//! verdict's own protobuf messages (`proto/verdict/v1/verdict.proto`),
//! compiled at build time, and the conversions from the run records.
//!
//! The proto file defines the verdict event and the run once; the JSON that
//! webhooks, the log exporter and the API send is these messages serialised
//! with serde (proto field names, enums by their short name, unset optional
//! fields as null), so the protobuf and JSON forms cannot drift apart.

use serde::Serializer;

use crate::contracts::{Figures, WindowVerdict};
use crate::model::{rfc3339_millis, rfc3339_seconds, Subject};
use crate::runs::record::{RunRecord, RunState, VerdictEvent, WindowRecord};

/// The generated `verdict.v1` messages.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/verdict.v1.rs"));
}

impl From<RunState> for v1::RunState {
    fn from(s: RunState) -> Self {
        match s {
            RunState::Pending => v1::RunState::Pending,
            RunState::Validating => v1::RunState::Validating,
            RunState::Promoted => v1::RunState::Promoted,
            RunState::RolledBack => v1::RunState::RolledBack,
        }
    }
}

impl From<WindowVerdict> for v1::WindowResult {
    fn from(v: WindowVerdict) -> Self {
        match v {
            WindowVerdict::Pass => v1::WindowResult::Pass,
            WindowVerdict::Fail => v1::WindowResult::Fail,
            WindowVerdict::Insufficient => v1::WindowResult::Insufficient,
        }
    }
}

/// Serialises a `RunState` field (an `i32` in prost) by its JSON name
/// (`ROLLED_BACK`).
pub fn run_state_name<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
    let name = match v1::RunState::try_from(*v) {
        Ok(v1::RunState::Pending) => "PENDING",
        Ok(v1::RunState::Validating) => "VALIDATING",
        Ok(v1::RunState::Promoted) => "PROMOTED",
        Ok(v1::RunState::RolledBack) => "ROLLED_BACK",
        Ok(v1::RunState::Unspecified) | Err(_) => "UNSPECIFIED",
    };
    s.serialize_str(name)
}

/// Serialises a `WindowResult` field by its JSON name (`pass`).
pub fn window_result_name<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
    let name = match v1::WindowResult::try_from(*v) {
        Ok(v1::WindowResult::Pass) => "pass",
        Ok(v1::WindowResult::Fail) => "fail",
        Ok(v1::WindowResult::Insufficient) => "insufficient",
        Ok(v1::WindowResult::Unspecified) | Err(_) => "unspecified",
    };
    s.serialize_str(name)
}

fn attributes(s: &Subject) -> std::collections::BTreeMap<String, String> {
    s.attributes().iter().cloned().collect()
}

/// The §5.5 `run` figures of a run.
pub fn run_figures(run: &RunRecord) -> v1::RunFigures {
    let f = Figures::of(&run.cumulative);
    v1::RunFigures {
        started_at: rfc3339_millis(run.started_at),
        samples: run.cumulative.samples,
        windows: run.windows,
        p95_latency_ms: f.p95_latency_ms,
        error_rate_percent: f.error_rate_percent,
        conversion_rate_percent: f.conversion_rate_percent,
    }
}

impl From<&WindowRecord> for v1::Window {
    fn from(w: &WindowRecord) -> Self {
        let f = &w.figures;
        v1::Window {
            start: rfc3339_seconds(w.window.start),
            end: rfc3339_seconds(w.window.end),
            samples: f.samples,
            p50_latency_ms: f.p50_latency_ms,
            p95_latency_ms: f.p95_latency_ms,
            p99_latency_ms: f.p99_latency_ms,
            error_rate_percent: f.error_rate_percent,
            conversion_rate_percent: f.conversion_rate_percent,
            latency_relative_error: f.latency_relative_error,
            result: v1::WindowResult::from(w.result).into(),
            failures: w.failures.clone(),
        }
    }
}

impl From<&RunRecord> for v1::Run {
    fn from(r: &RunRecord) -> Self {
        v1::Run {
            contract: r.contract.clone(),
            contract_version: r.contract_version,
            subject: r.subject.joined().to_string(),
            subject_attributes: attributes(&r.subject),
            run_id: r.run_id.clone(),
            state: v1::RunState::from(r.state).into(),
            reason: r.reason.clone(),
            started_at: rfc3339_millis(r.started_at),
            decided_at: r.decided_at.map(rfc3339_millis),
            run: Some(run_figures(r)),
            superseded: r.superseded,
            windows: Vec::new(),
        }
    }
}

fn observed(f: &Figures) -> v1::Observed {
    v1::Observed {
        p50_latency_ms: f.p50_latency_ms,
        p95_latency_ms: f.p95_latency_ms,
        p99_latency_ms: f.p99_latency_ms,
        error_rate_percent: f.error_rate_percent,
        conversion_rate_percent: f.conversion_rate_percent,
        samples: f.samples,
    }
}

impl From<&VerdictEvent> for v1::VerdictEvent {
    fn from(e: &VerdictEvent) -> Self {
        v1::VerdictEvent {
            event_id: e.event_id.clone(),
            emitted_at: rfc3339_millis(e.emitted_at),
            contract: e.run.contract.clone(),
            contract_version: e.run.contract_version,
            run_id: e.run.run_id.clone(),
            subject: attributes(&e.run.subject),
            state: v1::RunState::from(e.run.state).into(),
            previous_state: v1::RunState::from(e.previous_state).into(),
            reason: e.run.reason.clone(),
            window: e.window.as_ref().map(|w| v1::TimeWindow {
                start: rfc3339_seconds(w.window.start),
                end: rfc3339_seconds(w.window.end),
            }),
            observed: e.window.as_ref().map(|w| observed(&w.figures)),
            run: Some(run_figures(&e.run)),
            failures: e.failures.clone(),
            dry_run: e.dry_run,
        }
    }
}

/// A message as the JSON verdict sends (never fails for these messages:
/// every map key is a string).
pub fn to_json<T: serde::Serialize>(message: &T) -> serde_json::Value {
    serde_json::to_value(message).unwrap_or(serde_json::Value::Null)
}
