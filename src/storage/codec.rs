//! How structured values are stored: JSON text with explicit, versionable
//! field names, so the same rows read back on SQLite and PostgreSQL and a
//! checkpoint written by one build is readable by the next.
//!
//! The latency sketch is stored through [`Sketch::to_parts`] /
//! [`Sketch::from_parts`], which are exact inverses: a resumed run or a
//! restored window has exactly the sketch it had.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::model::point::LatencyUnit;
use crate::model::{Accum, Spread};
use crate::model::{CheckResult, RunEvidence, RunState, WindowRecord};
use crate::model::{Figures, LatencyBound, WindowVerdict};
use crate::model::{Subject, UnixNanos, Window};
use crate::sketch::{Sketch, SketchParts};

use super::StoreError;

/// A sketch as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SketchData {
    scale: i32,
    max_buckets: usize,
    zero_threshold: f64,
    zero_count: u64,
    offset: i32,
    counts: Vec<u64>,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
    rejected: u64,
}

/// Explicit-bucket spreading as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SpreadData {
    bounds: Vec<f64>,
    open_below: bool,
    open_above: bool,
}

/// An accumulation as stored. Fields added after the first schema have
/// defaults, so older rows still read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccumData {
    samples: u64,
    errors: u64,
    conversions: u64,
    latency: SketchData,
    /// Unit of the sketch's values (`ms`, `s`, `us`).
    #[serde(default = "default_unit")]
    unit: String,
    #[serde(default)]
    spread: Option<SpreadData>,
    #[serde(default)]
    extra_relative_error: f64,
}

fn default_unit() -> String {
    "ms".into()
}

fn unit_name(u: LatencyUnit) -> &'static str {
    match u {
        LatencyUnit::Millis => "ms",
        LatencyUnit::Seconds => "s",
        LatencyUnit::Micros => "us",
    }
}

impl From<&Accum> for AccumData {
    fn from(a: &Accum) -> Self {
        let p = a.latency.to_parts();
        AccumData {
            samples: a.samples,
            errors: a.errors,
            conversions: a.conversions,
            latency: SketchData {
                scale: p.scale,
                max_buckets: p.max_buckets,
                zero_threshold: p.zero_threshold,
                zero_count: p.zero_count,
                offset: p.offset,
                counts: p.bucket_counts.into_owned(),
                sum: p.sum,
                min: p.min,
                max: p.max,
                rejected: p.rejected,
            },
            unit: unit_name(a.unit).into(),
            spread: a.spread.as_ref().map(|sp| SpreadData {
                bounds: sp.bounds.clone(),
                open_below: sp.open_below,
                open_above: sp.open_above,
            }),
            extra_relative_error: a.extra_relative_error,
        }
    }
}

impl From<&AccumData> for Accum {
    fn from(d: &AccumData) -> Self {
        let s = &d.latency;
        Accum {
            latency: Sketch::from_parts(SketchParts {
                scale: s.scale,
                max_buckets: s.max_buckets,
                zero_threshold: s.zero_threshold,
                zero_count: s.zero_count,
                offset: s.offset,
                bucket_counts: Cow::Borrowed(&s.counts),
                sum: s.sum,
                min: s.min,
                max: s.max,
                rejected: s.rejected,
            }),
            samples: d.samples,
            errors: d.errors,
            conversions: d.conversions,
            unit: LatencyUnit::parse(&d.unit).unwrap_or_default(),
            spread: d.spread.as_ref().map(|sp| Spread {
                bounds: sp.bounds.clone(),
                open_below: sp.open_below,
                open_above: sp.open_above,
            }),
            extra_relative_error: d.extra_relative_error,
        }
    }
}

pub(super) fn corrupt(what: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {err}"))
}

/// An accumulation as JSON text.
pub fn accum_to_text(a: &Accum) -> String {
    serde_json::to_string(&AccumData::from(a)).unwrap_or_default()
}

/// Reads what [`accum_to_text`] wrote.
pub fn accum_from_text(text: &str) -> Result<Accum, StoreError> {
    let d: AccumData = serde_json::from_str(text).map_err(|e| corrupt("accumulation", e))?;
    Ok(Accum::from(&d))
}

/// A subject as stored: its `(attribute, value)` pairs, or its name for the
/// pseudo-subjects (overflow, baseline), which have no attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SubjectData {
    /// A real subject.
    Attributes(Vec<(String, String)>),
    /// A pseudo-subject by name.
    Named {
        /// Its name (`__overflow__`; `__baseline__` for a baseline without
        /// key attributes, as stored before baselines had keys).
        named: String,
    },
    /// A contract's baseline series, by its key attributes.
    Baseline {
        /// `(attribute, value)` pairs; empty for one baseline per contract.
        baseline: Vec<(String, String)>,
    },
}

impl From<&Subject> for SubjectData {
    fn from(s: &Subject) -> Self {
        if s.is_baseline() {
            SubjectData::Baseline {
                baseline: s.attributes().to_vec(),
            }
        } else if s.is_pseudo() {
            SubjectData::Named {
                named: s.joined().to_string(),
            }
        } else {
            SubjectData::Attributes(s.attributes().to_vec())
        }
    }
}

impl From<SubjectData> for Subject {
    fn from(d: SubjectData) -> Self {
        match d {
            SubjectData::Attributes(a) => Subject::new(a),
            SubjectData::Named { named } => Subject::named(&named),
            SubjectData::Baseline { baseline } => Subject::baseline(baseline),
        }
    }
}

/// A subject as JSON text.
pub fn subject_to_text(s: &Subject) -> String {
    serde_json::to_string(&SubjectData::from(s)).unwrap_or_default()
}

/// Reads what [`subject_to_text`] wrote.
pub fn subject_from_text(text: &str) -> Result<Subject, StoreError> {
    let d: SubjectData = serde_json::from_str(text).map_err(|e| corrupt("subject", e))?;
    Ok(d.into())
}

/// The subject of a run whose stored attributes cannot be read, from its
/// key (the joined values): the values without their attribute names,
/// which the engine restores from the contract's `subject_by`.
pub fn subject_from_key(key: &str) -> Subject {
    Subject::new(
        crate::model::series::split_joined(key)
            .into_iter()
            .map(|v| (String::new(), v))
            .collect(),
    )
}

/// A window result as stored: its bounds and result around the figures'
/// own serde form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct WindowData {
    start: UnixNanos,
    end: UnixNanos,
    #[serde(flatten)]
    figures: Figures,
    result: String,
    failures: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    checks: Vec<CheckResult>,
}

/// The stored name of a window result.
pub fn verdict_name(v: WindowVerdict) -> &'static str {
    match v {
        WindowVerdict::Pass => "pass",
        WindowVerdict::Fail => "fail",
        WindowVerdict::Insufficient => "insufficient",
    }
}

/// A window result as JSON text.
pub fn window_to_text(w: &WindowRecord) -> String {
    serde_json::to_string(&WindowData {
        start: w.window.start,
        end: w.window.end,
        figures: w.figures,
        result: verdict_name(w.result).to_string(),
        failures: w.failures.clone(),
        notes: w.notes.clone(),
        checks: w.checks.clone(),
    })
    .unwrap_or_default()
}

/// Reads what [`window_to_text`] wrote.
pub fn window_from_text(text: &str) -> Result<WindowRecord, StoreError> {
    let d: WindowData = serde_json::from_str(text).map_err(|e| corrupt("window", e))?;
    let result = match d.result.as_str() {
        "pass" => WindowVerdict::Pass,
        "fail" => WindowVerdict::Fail,
        "insufficient" => WindowVerdict::Insufficient,
        other => return Err(corrupt("window", format!("unknown result {other:?}"))),
    };
    Ok(WindowRecord {
        window: Window {
            start: d.start,
            end: d.end,
        },
        figures: d.figures,
        result,
        failures: d.failures,
        notes: d.notes,
        checks: d.checks,
    })
}

/// Reads a stored state name.
pub fn state_from_name(name: &str) -> Result<RunState, StoreError> {
    RunState::ALL
        .into_iter()
        .find(|s| s.as_str() == name)
        .ok_or_else(|| corrupt("run", format!("unknown state {name:?}")))
}

/// A run's evidence as JSON text.
pub fn evidence_to_text(e: &RunEvidence) -> String {
    serde_json::to_string(e).unwrap_or_default()
}

/// Reads what [`evidence_to_text`] wrote. Rows from before the column
/// existed (empty text), or that this build cannot read, start without
/// evidence: the checks then begin afresh, which never makes a decision
/// easier than the data allows.
pub fn evidence_from_text(text: &str) -> RunEvidence {
    serde_json::from_str(text).unwrap_or_default()
}

/// A run's latency bound as JSON text.
pub fn bound_to_text(b: &LatencyBound) -> String {
    serde_json::to_string(b).unwrap_or_default()
}

/// Reads what [`bound_to_text`] wrote; rows from before the column existed
/// (empty text) read as the default bound.
pub fn bound_from_text(text: &str) -> LatencyBound {
    serde_json::from_str(text).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored forms are a format: rows written by earlier builds (with
    /// an unbounded p95, and from before the bound columns existed) read.
    #[test]
    fn stored_rows_of_earlier_builds_still_read() {
        let row = r#"{"start":60000000000,"end":120000000000,"samples":40,"p50_latency_ms":12.5,"p95_latency_ms":1864.0,"p99_latency_ms":null,"error_rate_percent":2.5,"conversion_rate_percent":null,"latency_relative_error":0.04,"latency_approximate":true,"p95_latency_error_ms":null,"p95_latency_unbounded":true,"result":"fail","failures":["x"]}"#;
        let w = window_from_text(row).expect("reads");
        assert_eq!(w.figures.samples, 40);
        assert_eq!(w.figures.p95_latency_error_ms, Some(f64::INFINITY));
        assert!(w.figures.latency_approximate);
        assert_eq!(w.result, WindowVerdict::Fail);
        // Written back, it still says everything the old row said (plus the
        // p50/p99 bounds, which earlier builds ignore as unknown fields).
        let back: serde_json::Value = serde_json::from_str(&window_to_text(&w)).expect("json");
        let old: serde_json::Value = serde_json::from_str(row).expect("json");
        for (key, value) in old.as_object().expect("object") {
            assert_eq!(&back[key], value, "{key}");
        }
        let older = r#"{"start":0,"end":1,"samples":0,"p50_latency_ms":null,"p95_latency_ms":null,"p99_latency_ms":null,"error_rate_percent":null,"conversion_rate_percent":null,"latency_relative_error":0.0,"result":"insufficient","failures":[]}"#;
        assert_eq!(
            window_from_text(older)
                .expect("reads")
                .figures
                .p95_latency_error_ms,
            None
        );
        let bound =
            bound_from_text(r#"{"relative_error":0.01,"approximate":false,"p95_error_ms":3.5}"#);
        assert_eq!(bound.p95_error_ms, Some(3.5));
        let unbounded = LatencyBound {
            p95_error_ms: Some(f64::INFINITY),
            ..LatencyBound::default()
        };
        assert_eq!(bound_from_text(&bound_to_text(&unbounded)), unbounded);
        assert_eq!(bound_from_text(""), LatencyBound::default());
    }

    #[test]
    fn accum_round_trips_exactly() {
        let mut a = Accum::default();
        for v in [0.0, 0.3, 12.5, 99.9, 4000.0] {
            let _ = a.latency.insert(v);
        }
        a.samples = 5;
        a.errors = 1;
        a.conversions = 2;
        assert_eq!(accum_from_text(&accum_to_text(&a)).expect("reads"), a);
        let empty = Accum::default();
        assert_eq!(
            accum_from_text(&accum_to_text(&empty)).expect("reads"),
            empty
        );
    }

    #[test]
    fn subjects_and_windows_round_trip() {
        let s = Subject::new(vec![("service.name".into(), "checkout".into())]);
        assert_eq!(subject_from_text(&subject_to_text(&s)).expect("reads"), s);
        let b = Subject::named(crate::model::series::BASELINE_SUBJECT);
        assert_eq!(subject_from_text(&subject_to_text(&b)).expect("reads"), b);
        // As stored before baselines had keys.
        assert_eq!(
            subject_from_text(r#"{"named":"__baseline__"}"#).expect("reads"),
            Subject::baseline(Vec::new())
        );
        let keyed = Subject::baseline(vec![("service.name".into(), "checkout".into())]);
        assert_eq!(
            subject_from_text(&subject_to_text(&keyed)).expect("reads"),
            keyed
        );
        let w = WindowRecord {
            window: Window { start: 10, end: 20 },
            figures: Figures {
                p95_latency_ms: Some(130.2),
                samples: 7,
                latency_relative_error: 0.0054,
                ..Figures::default()
            },
            result: WindowVerdict::Fail,
            failures: vec!["p95 latency 130.2ms exceeds threshold 120ms".into()],
            notes: Vec::new(),
            checks: Vec::new(),
        };
        assert_eq!(window_from_text(&window_to_text(&w)).expect("reads"), w);
        assert!(window_from_text("{").is_err());
    }
}
