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

use crate::aggregator::Items;
use crate::config::Selection;
use crate::config::Source;
use crate::model::{Rejected, Sample, SeriesKey, UnixNanos};

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
    /// A latency histogram whose unit is not `s`, `ms` or `us`.
    Unit,
    /// A latency histogram with negative buckets.
    NegativeBuckets,
    /// A metric point that cannot be read (NaN or negative values, counts
    /// that disagree with the buckets, a wrong metric type…).
    InvalidPoint,
    /// A histogram point with more buckets than
    /// [`MAX_POINT_BUCKETS`](crate::model::point::MAX_POINT_BUCKETS).
    TooManyBuckets,
}

impl RejectReason {
    /// Every reason (the `reason` labels of rejected items).
    pub const ALL: [RejectReason; 8] = [
        RejectReason::InvalidTimes,
        RejectReason::Future,
        RejectReason::Late,
        RejectReason::MissingSubject,
        RejectReason::Unit,
        RejectReason::NegativeBuckets,
        RejectReason::InvalidPoint,
        RejectReason::TooManyBuckets,
    ];

    /// The reason in words.
    pub fn describe(self) -> &'static str {
        match self {
            RejectReason::InvalidTimes => "zero start/end time or end before start",
            RejectReason::Future => "timestamp beyond max_clock_skew in the future",
            RejectReason::Late => "late: window already closed",
            RejectReason::MissingSubject => "resource lacks a subject_by attribute",
            RejectReason::Unit => "latency histogram unit is not s, ms or us",
            RejectReason::NegativeBuckets => {
                "latency histogram has negative buckets (a latency is never negative)"
            }
            RejectReason::InvalidPoint => "invalid data point",
            RejectReason::TooManyBuckets => "histogram point has more than 4096 buckets",
        }
    }

    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::InvalidTimes => "invalid",
            RejectReason::Future => "future",
            RejectReason::Late => "late",
            RejectReason::MissingSubject => "missing_subject",
            RejectReason::Unit => "unit",
            RejectReason::NegativeBuckets => "negative_buckets",
            RejectReason::InvalidPoint => "invalid_point",
            RejectReason::TooManyBuckets => "too_many_buckets",
        }
    }
}

/// Most notes kept per request for the `partial_success` message.
const MAX_NOTES: usize = 8;

/// Most (pipeline, series, kind) entries of rejected items one request
/// attributes to runs; items beyond are counted and logged all the same.
pub(crate) const MAX_BLAMED: usize = 256;

/// Most (service, kind) entries of rejected items one request logs.
pub(crate) const MAX_CULPRITS: usize = 16;

/// Where rejected items came from: the resource's `service.name` and what
/// they were (`spans`, or `points` of a metric).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin<'a> {
    /// `service.name` of the resource (empty when it has none).
    pub(crate) service: &'a str,
    /// `spans` or `points`.
    pub(crate) noun: &'static str,
    /// The metric of the points; empty for spans.
    pub(crate) metric: &'a str,
}

impl Origin<'_> {
    fn rejected(&self, reason: RejectReason, why: String, count: u64) -> Rejected {
        Rejected {
            noun: self.noun,
            metric: crate::model::rejection::clip(self.metric),
            reason: reason.label(),
            why: crate::model::rejection::clip(&why),
            count,
        }
    }
}

/// The samples (or metric points) of one request, per pipeline and shard,
/// and what was not used.
#[derive(Debug)]
pub struct Converted<B = Vec<Sample>> {
    /// `batches[pipeline][shard]`.
    pub batches: Vec<Vec<B>>,
    /// Items in the request.
    pub items: u64,
    /// Items taken by at least one pipeline: every item is accepted,
    /// ignored or rejected once (`items = accepted + ignored + rejected`).
    pub accepted: u64,
    /// Items that became no sample and were not rejected.
    pub ignored: u64,
    /// Rejected items, by reason (sorted, one entry per reason).
    pub rejected: Vec<(RejectReason, u64)>,
    /// Names of attributes missing from selected resources (for the message).
    pub missing: Vec<String>,
    /// What exactly was wrong, per reason (a few, for the message).
    pub notes: Vec<(RejectReason, String)>,
    /// Rejected items by the series they were meant for (pipeline index,
    /// series, what and why), for the runs to say why they have no samples.
    pub blamed: Vec<(usize, SeriesKey, Rejected)>,
    /// Rejected items by service (`service.name`, what and why), for the log.
    pub culprits: Vec<(String, Rejected)>,
}

impl<B> Default for Converted<B> {
    fn default() -> Self {
        Converted {
            batches: Vec::new(),
            items: 0,
            accepted: 0,
            ignored: 0,
            rejected: Vec::new(),
            missing: Vec::new(),
            notes: Vec::new(),
            blamed: Vec::new(),
            culprits: Vec::new(),
        }
    }
}

impl<B: Items> Converted<B> {
    pub(crate) fn new(pipelines: &[&PipelineInput]) -> Converted<B> {
        Converted {
            batches: pipelines
                .iter()
                .map(|p| (0..p.router.shards()).map(|_| B::default()).collect())
                .collect(),
            ..Converted::default()
        }
    }

    /// True when no sample goes to any shard.
    pub fn is_empty(&self) -> bool {
        self.batches.iter().flatten().all(Items::is_empty)
    }
}

impl<B> Converted<B> {
    /// Keeps a detail for the message (deduplicated, at most a few).
    pub(super) fn note(&mut self, reason: RejectReason, note: String) {
        if self.notes.len() < MAX_NOTES
            && !self.notes.iter().any(|(r, n)| *r == reason && *n == note)
        {
            self.notes.push((reason, note));
        }
    }

    fn reject_n(&mut self, reason: RejectReason, n: u64) {
        match self.rejected.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, c)) => *c += n,
            None => {
                self.rejected.push((reason, n));
                self.rejected.sort();
            }
        }
    }

    /// Rejects `n` items of `origin` for `reason` (`why` says it in words):
    /// counted for `partial_success` and the metric, and kept for the log.
    pub(super) fn reject_from(
        &mut self,
        origin: &Origin<'_>,
        reason: RejectReason,
        why: impl FnOnce() -> String,
        n: u64,
    ) {
        if n == 0 {
            return;
        }
        self.reject_n(reason, n);
        let label = reason.label();
        let room = self.culprits.len() < MAX_CULPRITS;
        match self.culprits.iter_mut().find(|(service, r)| {
            service == origin.service && r.same_kind(origin.noun, origin.metric, label)
        }) {
            Some((_, r)) => r.count = r.count.saturating_add(n),
            None if room => {
                let service = crate::model::rejection::clip(origin.service);
                self.culprits
                    .push((service, origin.rejected(reason, why(), n)));
            }
            None => {}
        }
    }

    /// Attributes `n` rejected items of `origin` to `series` of pipeline
    /// `pipeline`, whose run will say why it has no samples.
    pub(super) fn blame(
        &mut self,
        pipeline: usize,
        series: &SeriesKey,
        origin: &Origin<'_>,
        reason: RejectReason,
        why: impl FnOnce() -> String,
        n: u64,
    ) {
        if n == 0 {
            return;
        }
        let label = reason.label();
        let room = self.blamed.len() < MAX_BLAMED;
        match self.blamed.iter_mut().find(|(p, s, r)| {
            *p == pipeline && s == series && r.same_kind(origin.noun, origin.metric, label)
        }) {
            Some((_, _, r)) => r.count = r.count.saturating_add(n),
            None if room => {
                self.blamed
                    .push((pipeline, series.clone(), origin.rejected(reason, why(), n)));
            }
            None => {}
        }
    }

    /// Settles one item after it was offered to every pipeline: counted if
    /// any took it, else rejected for the last reason a pipeline gave, else
    /// ignored (no contract wanted it).
    pub(super) fn settle(
        &mut self,
        accepted: bool,
        rejected: Option<RejectReason>,
        origin: &Origin<'_>,
    ) {
        match (accepted, rejected) {
            (true, _) => self.accepted += 1,
            (false, Some(reason)) => {
                self.reject_from(origin, reason, || reason.describe().to_string(), 1)
            }
            (false, None) => self.ignored += 1,
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
            let notes: Vec<&str> = self
                .notes
                .iter()
                .filter(|(r, _)| r == reason)
                .map(|(_, n)| n.as_str())
                .collect();
            if !notes.is_empty() {
                let _ = write!(m, " ({})", notes.join("; "));
            }
        }
        m
    }
}

/// Why an item timed `ts` cannot be windowed at `now`: further in the future
/// than `max_clock_skew`, or its window has closed.
pub(super) fn time_rejection(
    p: &PipelineInput,
    ts: UnixNanos,
    now: UnixNanos,
) -> Option<RejectReason> {
    if ts > now.saturating_add(p.timing.max_clock_skew) {
        Some(RejectReason::Future)
    } else if p.timing.deadline_of(ts) <= now {
        Some(RejectReason::Late)
    } else {
        None
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

pub(crate) fn lookup<'a>(attrs: &'a [(&'a str, Cow<'a, str>)], key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.as_ref())
}

/// One contract target of a resource.
pub(crate) struct Target {
    pub(crate) pipeline: usize,
    pub(crate) contract: u32,
    pub(crate) series: Option<SeriesKey>,
}

/// The contracts reading `source` that select a resource with `attrs`; a
/// selected resource without a subject attribute gets a target without a
/// series, and the attribute's name goes to `missing`.
pub(crate) fn targets(
    attrs: &[(&str, Cow<'_, str>)],
    pipelines: &[&PipelineInput],
    source: Source,
    missing: &mut Vec<String>,
) -> Vec<Target> {
    let mut targets = Vec::new();
    for (pi, p) in pipelines.iter().enumerate() {
        for (ci, c) in p.contracts.iter().enumerate() {
            if c.source != source {
                continue;
            }
            let series = match c.select(|k| lookup(attrs, k)) {
                Selection::None => continue,
                Selection::Subject(subject) => Some(subject),
                Selection::Baseline(subject) => Some(subject),
                Selection::MissingAttribute(key) => {
                    if !missing.contains(&key) {
                        missing.push(key);
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
    targets
}

/// A resource's attributes as text.
pub(super) fn resource_attrs(
    resource: Option<&opentelemetry_proto::tonic::resource::v1::Resource>,
) -> Vec<(&str, Cow<'_, str>)> {
    resource
        .iter()
        .flat_map(|r| r.attributes.iter())
        .filter_map(|kv| Some((kv.key.as_str(), value_str(kv.value.as_ref()?)?)))
        .collect()
}

/// What conversion needs to know about one span, whichever decoder read it:
/// the prost types (OTLP/JSON, and the reference path) or the borrowing
/// wire reader of the protobuf hot path ([`super::wire`]).
pub trait SpanView {
    /// OTLP span kind number.
    fn kind(&self) -> i32;
    /// Start and end time (UNIX ns).
    fn times(&self) -> (u64, u64);
    /// Span status is ERROR.
    fn status_error(&self) -> bool;
    /// `http.response.status_code` (or legacy `http.status_code`) ≥ 500.
    fn http_error(&self) -> bool;
    /// Attribute `attribute` is `true` (bool, or the string "true").
    fn converted(&self, attribute: &str) -> bool;
}

pub(super) fn http_status(kv: &KeyValue) -> Option<i64> {
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

/// The attribute keys that carry an HTTP status code: current semantic
/// conventions first, then the legacy name.
pub const HTTP_STATUS_KEYS: [&str; 2] = ["http.response.status_code", "http.status_code"];

impl SpanView for Span {
    fn kind(&self) -> i32 {
        self.kind
    }
    fn times(&self) -> (u64, u64) {
        (self.start_time_unix_nano, self.end_time_unix_nano)
    }
    fn status_error(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| s.code == StatusCode::Error as i32)
    }
    fn http_error(&self) -> bool {
        self.attributes.iter().any(|kv| {
            HTTP_STATUS_KEYS.contains(&kv.key.as_str()) && http_status(kv).is_some_and(|c| c >= 500)
        })
    }
    fn converted(&self, attribute: &str) -> bool {
        self.attributes
            .iter()
            .any(|kv| kv.key == attribute && is_true(kv))
    }
}

/// Converts a trace export request into samples for `pipelines`.
pub fn convert_traces(
    req: &ExportTraceServiceRequest,
    pipelines: &[&PipelineInput],
    now: UnixNanos,
) -> Converted {
    let mut out = Converted::new(pipelines);
    for rs in &req.resource_spans {
        let attrs = resource_attrs(rs.resource.as_ref());
        let targets = targets(&attrs, pipelines, Source::Spans, &mut out.missing);
        let origin = Origin::spans(&attrs);
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                out.items += 1;
                convert_span(span, &targets, pipelines, now, &origin, &mut out);
            }
        }
    }
    out
}

pub(crate) fn convert_span(
    span: &impl SpanView,
    targets: &[Target],
    pipelines: &[&PipelineInput],
    now: UnixNanos,
    origin: &Origin<'_>,
    out: &mut Converted,
) {
    let mut accepted = false;
    let mut rejected = None;
    let mut error = None;
    for t in targets {
        let p = pipelines[t.pipeline];
        let spec = &p.contracts[t.contract as usize];
        if !spec.span_kinds.contains(&span.kind()) {
            continue;
        }
        let Some(series) = &t.series else {
            rejected = Some(RejectReason::MissingSubject);
            continue;
        };
        let (start, end) = span.times();
        let reason = if start == 0 || end == 0 || end < start {
            Some(RejectReason::InvalidTimes)
        } else {
            time_rejection(p, end, now)
        };
        if let Some(reason) = reason {
            out.blame(
                t.pipeline,
                series,
                origin,
                reason,
                || reason.describe().to_string(),
                1,
            );
            rejected = Some(reason);
            continue;
        }
        let error = *error.get_or_insert_with(|| span.status_error() || span.http_error());
        let sample = Sample {
            series: series.clone(),
            ts: end,
            latency_ms: (end - start) as f64 / 1e6,
            error,
            converted: span.converted(&spec.conversion_attribute),
        };
        let shard = p.router.shard_of(series);
        out.batches[t.pipeline][shard].push(sample);
        accepted = true;
    }
    out.settle(accepted, rejected, origin);
}

impl<'a> Origin<'a> {
    /// The spans of a resource with `attrs`.
    pub(crate) fn spans(attrs: &'a [(&'a str, Cow<'a, str>)]) -> Origin<'a> {
        Origin {
            service: lookup(attrs, "service.name").unwrap_or(""),
            noun: "spans",
            metric: "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ContractSpec;
    use crate::test_util::{contract, kv, pipeline_input, s};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{
        span::SpanKind, ResourceSpans, ScopeSpans, Status,
    };

    const NOW: u64 = 1_000_000 * 1_000_000_000;

    fn pipeline(
        spec: ContractSpec,
    ) -> (
        PipelineInput,
        Vec<tokio::sync::mpsc::Receiver<crate::aggregator::ShardBatch>>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        (pipeline_input(spec, vec![tx], NOW), vec![rx])
    }

    fn span(kind: SpanKind, ms: u64, attrs: Vec<KeyValue>, error: bool) -> Span {
        Span {
            kind: kind as i32,
            start_time_unix_nano: NOW - ms * 1_000_000,
            end_time_unix_nano: NOW,
            attributes: attrs,
            status: error.then(|| Status {
                code: StatusCode::Error as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn request(resource: Vec<KeyValue>, spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: resource,
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn spans_become_samples() {
        let (p, _rx) = pipeline(contract("check*"));
        let req = request(
            vec![
                kv("service.name", s("checkout")),
                kv("service.version", any_value::Value::IntValue(2)),
            ],
            vec![
                span(
                    SpanKind::Server,
                    120,
                    vec![kv(
                        "http.response.status_code",
                        any_value::Value::IntValue(503),
                    )],
                    false,
                ),
                span(
                    SpanKind::Consumer,
                    10,
                    vec![
                        kv("http.status_code", s("500")),
                        kv("validation.converted", s("true")),
                    ],
                    false,
                ),
                span(
                    SpanKind::Server,
                    5,
                    vec![kv(
                        "validation.converted",
                        any_value::Value::BoolValue(true),
                    )],
                    true,
                ),
                span(
                    SpanKind::Server,
                    5,
                    vec![kv(
                        "http.response.status_code",
                        any_value::Value::IntValue(404),
                    )],
                    false,
                ),
                span(SpanKind::Client, 5, vec![], false),
                span(SpanKind::Internal, 5, vec![], false),
            ],
        );
        let out = convert_traces(&req, &[&p], NOW);
        assert_eq!((out.items, out.ignored, out.rejected_count()), (6, 2, 0));
        let samples = &out.batches[0][0];
        assert_eq!(samples.len(), 4);
        assert_eq!(samples[0].series.subject.joined(), "checkout/2");
        assert_eq!(samples[0].latency_ms, 120.0);
        assert_eq!(samples[0].ts, NOW);
        let flags: Vec<(bool, bool)> = samples.iter().map(|s| (s.error, s.converted)).collect();
        assert_eq!(
            flags,
            vec![(true, false), (true, true), (true, true), (false, false)]
        );
    }

    #[test]
    fn unmatched_resources_are_ignored_and_missing_subjects_rejected() {
        let (p, _rx) = pipeline(contract("checkout"));
        let other = request(
            vec![kv("service.name", s("search"))],
            vec![span(SpanKind::Server, 1, vec![], false)],
        );
        let out = convert_traces(&other, &[&p], NOW);
        assert_eq!((out.ignored, out.rejected_count()), (1, 0));
        assert!(out.is_empty());
        let unversioned = request(
            vec![kv("service.name", s("checkout"))],
            vec![span(SpanKind::Server, 1, vec![], false)],
        );
        let out = convert_traces(&unversioned, &[&p], NOW);
        assert_eq!(out.rejected_count(), 1);
        assert!(
            out.message("spans").contains("service.version"),
            "{}",
            out.message("spans")
        );
    }

    #[test]
    fn bad_times_future_and_late_spans_are_rejected() {
        let (p, _rx) = pipeline(contract("*"));
        let res = vec![kv("service.name", s("a")), kv("service.version", s("1"))];
        let mut inverted = span(SpanKind::Server, 1, vec![], false);
        inverted.start_time_unix_nano = NOW + 1;
        let mut zero = span(SpanKind::Server, 1, vec![], false);
        zero.start_time_unix_nano = 0;
        let mut future = span(SpanKind::Server, 1, vec![], false);
        future.end_time_unix_nano = NOW + 301_000_000_000;
        let mut late = span(SpanKind::Server, 1, vec![], false);
        late.end_time_unix_nano = NOW - 71_000_000_000;
        late.start_time_unix_nano = late.end_time_unix_nano - 1;
        let out = convert_traces(
            &request(res, vec![inverted, zero, future, late]),
            &[&p],
            NOW,
        );
        assert_eq!(out.rejected_count(), 4);
        assert_eq!(
            out.rejected,
            vec![
                (RejectReason::InvalidTimes, 2),
                (RejectReason::Future, 1),
                (RejectReason::Late, 1)
            ]
        );
        assert!(out.is_empty());
        // Each kind is kept for the run of the series and for the log.
        let blamed: Vec<(&str, &str, u64)> = out
            .blamed
            .iter()
            .map(|(_, series, r)| (series.subject.joined(), r.reason, r.count))
            .collect();
        assert_eq!(
            blamed,
            vec![
                ("a/1", "invalid", 2),
                ("a/1", "future", 1),
                ("a/1", "late", 1)
            ]
        );
        assert_eq!(
            out.blamed[0].2.sentence(),
            "2 spans rejected, zero start/end time or end before start"
        );
        let culprits: Vec<(&str, &str, u64)> = out
            .culprits
            .iter()
            .map(|(service, r)| (service.as_str(), r.reason, r.count))
            .collect();
        assert_eq!(
            culprits,
            vec![("a", "invalid", 2), ("a", "future", 1), ("a", "late", 1)]
        );
    }
}
