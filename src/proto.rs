//! verdict's own protobuf messages (`proto/verdict/v1/verdict.proto`),
//! compiled at build time, and the conversions from the run records.
//!
//! The proto file defines the verdict event and the run once; the JSON that
//! webhooks, the log exporter and the API send is these messages serialised
//! with serde (proto field names, enums by their short name, unset optional
//! fields as null), so the protobuf and JSON forms cannot drift apart.

use serde::{Serialize as _, Serializer};

use serde_json::Value;

use crate::model::{
    rfc3339_millis, rfc3339_seconds, CheckResult, Figures, RunRecord, RunState, Subject,
    VerdictEvent, WindowRecord, WindowVerdict,
};

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
    match RunState::ALL
        .into_iter()
        .find(|&st| v1::RunState::from(st) as i32 == *v)
    {
        Some(st) => st.serialize(s),
        None => s.serialize_str("UNSPECIFIED"),
    }
}

/// Serialises a `WindowResult` field by its JSON name (`pass`).
pub fn window_result_name<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
    let all = [
        WindowVerdict::Pass,
        WindowVerdict::Fail,
        WindowVerdict::Insufficient,
    ];
    match all
        .into_iter()
        .find(|&w| v1::WindowResult::from(w) as i32 == *v)
    {
        Some(w) => w.serialize(s),
        None => s.serialize_str("unspecified"),
    }
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
        // The run's bound is the worst of its windows'.
        latency_relative_error: run.latency_bound.relative_error,
        latency_approximate: run.latency_bound.approximate,
        p95_latency_error_ms: run.latency_bound.p95_error_ms.filter(|v| v.is_finite()),
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
            latency_approximate: f.latency_approximate,
            p95_latency_error_ms: f.p95_latency_error_ms.filter(|v| v.is_finite()),
            notes: w.notes.clone(),
            checks: checks(&w.checks),
        }
    }
}

/// A share in percent with six decimals (`4.9` rather than
/// `4.8999999999999995`), rounded by `round` (down for a lower bound and up
/// for an upper one, so rounding never narrows an interval).
fn percent(share: f64, round: fn(f64) -> f64) -> f64 {
    round(share * 1e8) / 1e6
}

/// The API's form of checks: shares in percent.
fn checks(checks: &[CheckResult]) -> Vec<v1::Check> {
    checks
        .iter()
        .map(|c| v1::Check {
            check: c.check.as_str().to_string(),
            status: c.status.as_str().to_string(),
            estimate_percent: c.estimate.map(|v| percent(v, f64::round)),
            lower_percent: percent(c.lower, f64::floor),
            upper_percent: percent(c.upper, f64::ceil),
            limit_percent: percent(c.limit, f64::round),
            samples: c.samples,
            baseline_samples: c.baseline_samples,
            threshold_ms: c.threshold_ms,
            reference_ms: c.reference_ms,
            fail_only: c.fail_only,
        })
        .collect()
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
            checks: checks(&r.evidence.checks),
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
            checks: checks(&e.run.evidence.checks),
        }
    }
}

/// The API's Run object (design §7), without its window history.
pub fn run_json(run: &RunRecord) -> Value {
    let mut v = to_json(&v1::Run::from(run));
    if let Some(map) = v.as_object_mut() {
        map.remove("windows");
    }
    with_unreadable(v, run)
}

/// Adds `"unreadable": "<why>"` to a run whose stored data could not all be
/// read back, so a client sees that its figures are missing, not zero.
fn with_unreadable(mut v: Value, run: &RunRecord) -> Value {
    if let (Some(map), Some(why)) = (v.as_object_mut(), &run.unreadable) {
        map.insert("unreadable".into(), Value::String(why.clone()));
    }
    v
}

/// The API's Run object with its window history (newest first).
pub fn run_json_with_windows(run: &RunRecord, windows: &[WindowRecord]) -> Value {
    let mut message = v1::Run::from(run);
    message.windows = windows.iter().map(v1::Window::from).collect();
    with_unreadable(to_json(&message), run)
}

/// The §5.5 JSON body of an event: the `verdict.v1.VerdictEvent` message.
pub fn event_json(event: &VerdictEvent) -> Value {
    to_json(&v1::VerdictEvent::from(event))
}

/// A message as the JSON verdict sends (never fails for these messages:
/// every map key is a string).
pub fn to_json<T: serde::Serialize>(message: &T) -> serde_json::Value {
    serde_json::to_value(message).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Accum, Window};
    use prost::Message as _;
    use serde_json::json;

    fn event() -> VerdictEvent {
        let subject = Subject::new(vec![
            ("service.name".into(), "checkout".into()),
            ("service.version".into(), "2.0.1".into()),
        ]);
        let mut run = RunRecord::new("checkout", 3, subject, 1_764_079_200_000_000_000);
        let mut acc = Accum::default();
        for v in [40.0, 41.0, 130.0] {
            let _ = acc.latency.insert(v);
        }
        acc.samples = 3;
        acc.errors = 1;
        run.cumulative = acc.clone();
        run.windows = 2;
        run.state = RunState::RolledBack;
        run.reason = "p95 latency 130.2ms exceeds threshold 120ms".into();
        run.decided_at = Some(1_764_079_390_004_000_000);
        let window = WindowRecord {
            window: Window {
                start: 1_764_079_320_000_000_000,
                end: 1_764_079_380_000_000_000,
            },
            figures: Figures::of(&acc),
            result: WindowVerdict::Fail,
            failures: vec![run.reason.clone()],
            notes: Vec::new(),
            checks: Vec::new(),
        };
        VerdictEvent {
            event_id: "01JDAAAAAAAAAAAAAAAAAAAAAA".into(),
            emitted_at: 1_764_079_390_004_000_000,
            run,
            previous_state: RunState::Validating,
            window: Some(window.clone()),
            failures: window.failures,
            dry_run: false,
        }
    }

    /// The JSON is the §5.5 shape: exactly its keys, names and value types.
    #[test]
    fn event_json_has_the_design_shape() {
        let v = event_json(&event());
        let keys: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = vec![
            "event_id",
            "emitted_at",
            "contract",
            "contract_version",
            "run_id",
            "subject",
            "state",
            "previous_state",
            "reason",
            "window",
            "observed",
            "run",
            "failures",
            "dry_run",
            // The evidence behind the transition (design §5.3).
            "checks",
        ];
        expected.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(v["state"], "ROLLED_BACK");
        assert_eq!(v["previous_state"], "VALIDATING");
        assert_eq!(v["contract_version"], 3);
        assert_eq!(v["emitted_at"], "2025-11-25T14:03:10.004Z");
        assert_eq!(
            v["window"],
            json!({"start": "2025-11-25T14:02:00Z", "end": "2025-11-25T14:03:00Z"})
        );
        assert_eq!(
            v["subject"],
            json!({"service.name": "checkout", "service.version": "2.0.1"})
        );
        assert_eq!(v["observed"]["samples"], 3);
        assert!(v["observed"]["p95_latency_ms"].is_f64());
        assert!(v["observed"]["conversion_rate_percent"].is_f64());
        assert_eq!(v["run"]["windows"], 2);
        assert_eq!(v["run"]["started_at"], "2025-11-25T14:00:00.000Z");
        assert_eq!(v["dry_run"], false);
        let first = event();
        let mut first = first;
        first.window = None;
        let v = event_json(&first);
        assert!(v["window"].is_null() && v["observed"].is_null());
    }

    /// Protobuf and JSON carry the same data: an event encoded as protobuf
    /// and decoded again serialises to the very JSON the webhooks send.
    #[test]
    fn protobuf_and_json_forms_agree() {
        let e = event();
        let message = v1::VerdictEvent::from(&e);
        let bytes = message.encode_to_vec();
        let decoded = v1::VerdictEvent::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(decoded, message);
        assert_eq!(to_json(&decoded), event_json(&e));

        let mut run = v1::Run::from(&e.run);
        run.windows = vec![v1::Window::from(e.window.as_ref().expect("window"))];
        let decoded = v1::Run::decode(run.encode_to_vec().as_slice()).expect("decodes");
        let json = to_json(&decoded);
        assert_eq!(
            json,
            run_json_with_windows(&e.run, &[e.window.clone().expect("window")])
        );
        assert_eq!(json["windows"][0]["result"], "fail");
        assert_eq!(json["state"], "ROLLED_BACK");
        assert_eq!(json["subject"], "checkout/2.0.1");
        assert_eq!(json["superseded"], false);
    }
}
