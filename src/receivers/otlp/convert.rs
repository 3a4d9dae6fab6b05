//! OTLP → samples (design §3). A resource is matched against every contract
//! once; its SERVER/CONSUMER spans then become one sample each, with
//! latency = end − start, error from the span status or the HTTP status code,
//! and conversion from the contract's attribute. Everything else is counted
//! as ignored; spans that cannot be samples are counted as rejected, with a
//! reason that goes back to the client in `partial_success`.

use std::borrow::Cow;
use std::fmt::Write as _;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{status::StatusCode, Span};

use crate::config::Source;
use crate::contracts::Selection;
use crate::model::series::BASELINE_SUBJECT;
use crate::model::{Sample, SeriesKey, Subject, UnixNanos, Window};

use super::super::PipelineInput;

/// Why an item was rejected inside an accepted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RejectReason {
    /// Zero start or end time, or end before start.
    InvalidTimes,
    /// Further in the future than `max_clock_skew`.
    Future,
    /// Its window had closed.
    Late,
    /// The resource lacks a `subject_by` attribute.
    MissingSubject,
}

impl RejectReason {
    fn describe(self) -> &'static str {
        match self {
            RejectReason::InvalidTimes => "zero start/end time or end before start",
            RejectReason::Future => "timestamp beyond max_clock_skew in the future",
            RejectReason::Late => "late: window already closed",
            RejectReason::MissingSubject => "resource lacks a subject_by attribute",
        }
    }

    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::InvalidTimes => "invalid",
            RejectReason::Future => "future",
            RejectReason::Late => "late",
            RejectReason::MissingSubject => "missing_subject",
        }
    }
}

/// The samples of one request, per pipeline and shard, and what was not used.
#[derive(Debug, Default)]
pub struct Converted {
    /// `batches[pipeline][shard]`.
    pub batches: Vec<Vec<Vec<Sample>>>,
    /// Items in the request.
    pub items: u64,
    /// Items that became no sample and were not rejected.
    pub ignored: u64,
    /// Rejected items, by reason (sorted, one entry per reason).
    pub rejected: Vec<(RejectReason, u64)>,
    /// Names of attributes missing from selected resources (for the message).
    pub missing: Vec<String>,
}

impl Converted {
    fn new(pipelines: &[&PipelineInput]) -> Converted {
        Converted {
            batches: pipelines
                .iter()
                .map(|p| vec![Vec::new(); p.router.shards()])
                .collect(),
            ..Converted::default()
        }
    }

    fn reject(&mut self, reason: RejectReason) {
        match self.rejected.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => {
                self.rejected.push((reason, 1));
                self.rejected.sort();
            }
        }
    }

    /// Items rejected in total.
    pub fn rejected_count(&self) -> u64 {
        self.rejected.iter().map(|(_, n)| n).sum()
    }

    /// The `partial_success.error_message`, empty when nothing was rejected.
    pub fn message(&self, noun: &str) -> String {
        let total = self.rejected_count();
        if total == 0 {
            return String::new();
        }
        let mut m = format!("{total} {noun} rejected: ");
        for (i, (reason, n)) in self.rejected.iter().enumerate() {
            if i > 0 {
                m.push_str("; ");
            }
            let _ = write!(m, "{n} {}", reason.describe());
            if *reason == RejectReason::MissingSubject && !self.missing.is_empty() {
                let _ = write!(m, " ({})", self.missing.join(", "));
            }
        }
        m
    }

    /// True when no sample goes to any shard.
    pub fn is_empty(&self) -> bool {
        self.batches.iter().flatten().all(Vec::is_empty)
    }
}

/// An attribute value as text, for matching and subjects.
pub fn value_str(v: &AnyValue) -> Option<Cow<'_, str>> {
    match v.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(Cow::Borrowed(s)),
        any_value::Value::BoolValue(b) => Some(Cow::Owned(b.to_string())),
        any_value::Value::IntValue(i) => Some(Cow::Owned(i.to_string())),
        any_value::Value::DoubleValue(d) => Some(Cow::Owned(d.to_string())),
        _ => None,
    }
}

fn lookup<'a>(attrs: &'a [(&'a str, Cow<'a, str>)], key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.as_ref())
}

/// One contract target of a resource.
struct Target {
    pipeline: usize,
    contract: u32,
    series: Option<SeriesKey>,
}

/// What the span attributes say about one request.
struct SpanFacts {
    http_error: bool,
}

fn http_status(kv: &KeyValue) -> Option<i64> {
    match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::IntValue(i) => Some(*i),
        any_value::Value::StringValue(s) => s.parse().ok(),
        any_value::Value::DoubleValue(d) => Some(*d as i64),
        _ => None,
    }
}

fn is_true(kv: &KeyValue) -> bool {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::BoolValue(b)) => *b,
        Some(any_value::Value::StringValue(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn span_facts(span: &Span) -> SpanFacts {
    let mut http_error = false;
    for kv in &span.attributes {
        // Current semantic conventions first, then the legacy name.
        if kv.key == "http.response.status_code" || kv.key == "http.status_code" {
            http_error |= http_status(kv).is_some_and(|c| c >= 500);
        }
    }
    SpanFacts { http_error }
}

fn converted(span: &Span, attribute: &str) -> bool {
    span.attributes
        .iter()
        .any(|kv| kv.key == attribute && is_true(kv))
}

/// Converts a trace export request into samples for `pipelines`.
pub fn convert_traces(
    req: &ExportTraceServiceRequest,
    pipelines: &[&PipelineInput],
    now: UnixNanos,
) -> Converted {
    let mut out = Converted::new(pipelines);
    for rs in &req.resource_spans {
        let attrs: Vec<(&str, Cow<'_, str>)> = rs
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .filter_map(|kv| Some((kv.key.as_str(), value_str(kv.value.as_ref()?)?)))
            .collect();
        let mut targets = Vec::new();
        for (pi, p) in pipelines.iter().enumerate() {
            for (ci, c) in p.contracts.iter().enumerate() {
                if c.spec.source != Source::Spans {
                    continue;
                }
                let series = match c.select(|k| lookup(&attrs, k)) {
                    Selection::None => continue,
                    Selection::Subject(subject) => Some(subject),
                    Selection::Baseline => Some(Subject::named(BASELINE_SUBJECT)),
                    Selection::MissingAttribute(key) => {
                        if !out.missing.contains(&key) {
                            out.missing.push(key);
                        }
                        None
                    }
                }
                .map(|subject| SeriesKey {
                    contract: ci as u32,
                    subject,
                });
                targets.push(Target {
                    pipeline: pi,
                    contract: ci as u32,
                    series,
                });
            }
        }
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                out.items += 1;
                convert_span(span, &targets, pipelines, now, &mut out);
            }
        }
    }
    out
}

fn convert_span(
    span: &Span,
    targets: &[Target],
    pipelines: &[&PipelineInput],
    now: UnixNanos,
    out: &mut Converted,
) {
    let mut accepted = false;
    let mut rejected = None;
    let mut facts = None;
    for t in targets {
        let p = pipelines[t.pipeline];
        let spec = &p.contracts[t.contract as usize].spec;
        if !spec.span_kinds.contains(&span.kind) {
            continue;
        }
        let Some(series) = &t.series else {
            rejected = Some(RejectReason::MissingSubject);
            continue;
        };
        let (start, end) = (span.start_time_unix_nano, span.end_time_unix_nano);
        if start == 0 || end == 0 || end < start {
            rejected = Some(RejectReason::InvalidTimes);
            continue;
        }
        if end > now.saturating_add(p.max_clock_skew) {
            rejected = Some(RejectReason::Future);
            continue;
        }
        if Window::containing(end, p.window_size).deadline(p.allowed_lateness) <= now {
            rejected = Some(RejectReason::Late);
            continue;
        }
        let facts = facts.get_or_insert_with(|| span_facts(span));
        let error = facts.http_error
            || span
                .status
                .as_ref()
                .is_some_and(|s| s.code == StatusCode::Error as i32);
        let sample = Sample {
            series: series.clone(),
            ts: end,
            latency_ms: (end - start) as f64 / 1e6,
            error,
            converted: converted(span, &spec.conversion_attribute),
        };
        let shard = p.router.shard_of(series);
        out.batches[t.pipeline][shard].push(sample);
        accepted = true;
    }
    match (accepted, rejected) {
        (true, _) => {}
        (false, Some(reason)) => out.reject(reason),
        (false, None) => out.ignored += 1,
    }
}
