//! What the fuzz targets share: the pipelines they convert for (fixed
//! contracts chosen to reach every branch of conversion: several pipelines
//! and shards, subjects that may be missing, a metric that two contracts
//! read in two roles) and the invariants they check.
//!
//! Every check panics with what it found, which is how libFuzzer learns of
//! a defect.

use std::collections::HashMap;

use verdict::config::{AttributeMatch, ContractSpec, Source, Thresholds};
use verdict::fuzzing::{
    self, Converted, Delta, Items, StreamParams, StreamTable, MAX_POINT_COUNT,
};
use verdict::model::point::{Buckets, PointKind, PointLatency};
use verdict::model::{PointBatch, PointSample, Sample, WindowTiming};
use verdict::receivers::PipelineInput;

/// The receive time of every conversion (seconds are whole: windows are
/// aligned).
pub const NOW: u64 = 1_700_000_000 * 1_000_000_000;

/// 60 s windows, 10 s lateness, 300 s clock skew.
pub const TIMING: WindowTiming = WindowTiming {
    size: 60_000_000_000,
    lateness: 10_000_000_000,
    max_clock_skew: 300_000_000_000,
};

fn contract(
    name: &str,
    source: Source,
    matches: &[(&str, &str)],
    subject: &[&str],
) -> ContractSpec {
    ContractSpec {
        matches: matches
            .iter()
            .map(|(k, p)| AttributeMatch::new(*k, *p).expect("fixture glob"))
            .collect(),
        subject_by: subject.iter().map(|s| s.to_string()).collect(),
        source,
        ..ContractSpec::with_thresholds(
            name,
            Thresholds {
                max_p95_latency_ms: Some(100.0),
                ..Thresholds::default()
            },
        )
    }
}

/// Pipelines with spans contracts: `svc-*` by name and version (the
/// default), every resource by name with all span kinds and its own
/// conversion attribute, and one whose subject attribute (`deployment`) is
/// mostly missing.
pub fn span_pipelines() -> Vec<PipelineInput> {
    let by_version = contract(
        "by-version",
        Source::Spans,
        &[("service.name", "svc-*")],
        &["service.name", "service.version"],
    );
    let everything = ContractSpec {
        span_kinds: vec![0, 1, 2, 3, 4, 5],
        conversion_attribute: "conv".into(),
        ..contract("everything", Source::Spans, &[], &["service.name"])
    };
    let deployment = contract("deployment", Source::Spans, &[], &["deployment"]);
    let metrics = contract("metrics", Source::Metrics, &[], &["service.name"]);
    vec![
        fuzzing::pipeline("a", vec![by_version, everything], 3, TIMING, NOW),
        fuzzing::pipeline("b", vec![deployment, metrics], 1, TIMING, NOW),
    ]
}

/// Pipelines with metrics contracts: the default metric names on `svc-*`;
/// one that reads the default latency histogram's name as its conversions
/// counter (two roles for one metric); one whose subject attribute
/// (`host`) is mostly missing.
pub fn metric_pipelines() -> Vec<PipelineInput> {
    let default = contract(
        "default",
        Source::Metrics,
        &[("service.name", "svc-*")],
        &["service.name", "service.version"],
    );
    let crossed = ContractSpec {
        latency_metric: "latency".into(),
        conversions_metric: "http.server.request.duration".into(),
        ..contract("crossed", Source::Metrics, &[], &["service.name"])
    };
    let host = contract("host", Source::Metrics, &[], &["host"]);
    let spans = contract("spans", Source::Spans, &[], &["service.name"]);
    vec![
        fuzzing::pipeline("a", vec![default, crossed], 2, TIMING, NOW),
        fuzzing::pipeline("b", vec![host, spans], 1, TIMING, NOW),
    ]
}

/// Every item is accepted, ignored or rejected exactly once, and accepted
/// items are the ones that made samples.
pub fn check_accounting<B: Items>(c: &Converted<B>, sent: u64) {
    let rejected = c.rejected_count();
    assert_eq!(c.items, sent, "items counted: {} of {sent} sent", c.items);
    assert_eq!(
        c.items,
        c.accepted + c.ignored + rejected,
        "items {} != accepted {} + ignored {} + rejected {rejected}",
        c.items,
        c.accepted,
        c.ignored
    );
    let made: usize = c.batches.iter().flatten().map(Items::len).sum();
    assert!(
        made as u64 >= c.accepted && (c.accepted > 0 || made == 0),
        "{made} samples for {} accepted items",
        c.accepted
    );
    assert_eq!(
        rejected > 0,
        !c.message("items").is_empty(),
        "a message exactly when something was rejected"
    );
}

/// A span sample has a finite, non-negative latency.
pub fn check_sample(s: &Sample) {
    assert!(
        s.latency_ms.is_finite() && s.latency_ms >= 0.0,
        "sample latency {}",
        s.latency_ms
    );
}

fn check_value(what: &str, v: Option<f64>) {
    if let Some(v) = v {
        assert!(v.is_finite() && v >= 0.0, "{what} is {v}");
    }
}

/// A latency (a point as sent, or a delta of a stream) is consistent:
/// finite non-negative values, a count within the limit that the buckets
/// add up to exactly.
pub fn check_latency(l: &PointLatency) {
    assert!(l.count <= MAX_POINT_COUNT, "count {}", l.count);
    check_value("sum", l.sum);
    check_value("min", l.min);
    check_value("max", l.max);
    match &l.buckets {
        Buckets::Explicit { bounds, counts } => {
            assert!(bounds.iter().all(|b| b.is_finite()), "bounds {bounds:?}");
            assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds {bounds:?}");
            assert_eq!(counts.len(), bounds.len() + 1, "counts for bounds");
            let total = counts.iter().try_fold(0u64, |t, &c| t.checked_add(c));
            assert_eq!(total, Some(l.count), "explicit buckets add up to the count");
        }
        Buckets::Exponential {
            counts,
            zero_count,
            zero_threshold,
            ..
        } => {
            assert!(
                zero_threshold.is_finite() && *zero_threshold >= 0.0,
                "zero threshold {zero_threshold}"
            );
            let total = counts
                .iter()
                .try_fold(*zero_count, |t, &c| t.checked_add(c));
            assert_eq!(
                total,
                Some(l.count),
                "exponential buckets add up to the count"
            );
        }
    }
}

/// A point as the receiver hands it to a shard.
pub fn check_point(p: &PointSample) {
    match &p.kind {
        PointKind::Latency(l) => check_latency(l),
        PointKind::Conversions(v) => assert!(
            v.is_finite() && *v >= 0.0 && *v <= MAX_POINT_COUNT as f64,
            "conversions {v}"
        ),
    }
}

/// What a shard should count for a batch of points: the requests and
/// conversions of every point a stream table lets through, with each
/// delta checked on the way.
#[derive(Debug, Default, Clone, Copy)]
struct Expected {
    samples: u128,
    errors: u128,
    conversions: u128,
}

/// Feeds the points of every pipeline into shards (cumulative → delta,
/// bucket spreading, windows), closes every window and checks what the
/// windows hold:
/// - every delta a stream yields is a consistent latency (no wrapped or
///   negative count, buckets that add up, finite sums);
/// - the windows count exactly what the streams let through (`samples`,
///   `errors`, `conversions`), so nothing wraps, is lost or is counted
///   twice;
/// - each window's sketch holds exactly its requests (counted or refused
///   by the sketch), its sum and extremes are finite and non-negative, and
///   it reads back unchanged from its stored form;
/// - quantiles and the bounds of a decision can be asked for.
pub fn check_windows(pipelines: &[PipelineInput], points: &[Vec<PointBatch>]) {
    let mut expected = Expected::default();
    let mut counted = Expected::default();
    for (p, shards) in pipelines.iter().zip(points) {
        for batch in shards {
            let params = fuzzing::WindowParams {
                timing: p.timing,
                slots: fuzzing::SubjectSlots::new(4),
                idle: std::sync::Arc::from([3_600_000_000_000u64; 4]),
                max_streams: 16,
                stream_expiry: 600_000_000_000,
            };
            let mut shadow = StreamTable::new(StreamParams {
                max_streams: params.max_streams,
                expiry: params.stream_expiry,
            });
            let mut shard = fuzzing::ShardState::new(params);
            for point in &batch.clone().into_points() {
                check_point(point);
                if let Delta::Count(kind) = shadow.delta(point.clone()) {
                    match &kind {
                        PointKind::Latency(l) => {
                            check_latency(l);
                            let original = match &point.kind {
                                PointKind::Latency(o) => o.count,
                                PointKind::Conversions(_) => u64::MAX,
                            };
                            assert!(l.count <= original, "delta {} > point {original}", l.count);
                            expected.samples += u128::from(l.count);
                            if l.error {
                                expected.errors += u128::from(l.count);
                            }
                        }
                        PointKind::Conversions(v) => {
                            assert!(v.is_finite() && *v >= 0.0, "conversions delta {v}");
                            expected.conversions += v.round() as u128;
                        }
                    }
                }
            }
            // The shard records the batch as it does when serving: the
            // counts put back one point at a time into a reused vector.
            let mut scratch = Vec::new();
            batch
                .clone()
                .for_each_whole(&mut scratch, |point| {
                    shard.record_point_in(point);
                });
            for w in shard.close_until(u64::MAX) {
                let a = &w.accum;
                counted.samples += u128::from(a.samples);
                counted.errors += u128::from(a.errors);
                counted.conversions += u128::from(a.conversions);
                assert!(
                    a.errors <= a.samples,
                    "errors {} > samples {}",
                    a.errors,
                    a.samples
                );
                if a.samples < u64::MAX {
                    assert_eq!(
                        u128::from(a.latency.count()) + u128::from(a.latency.rejected()),
                        u128::from(a.samples),
                        "the sketch holds every request of the window"
                    );
                }
                let sum = a.latency.sum();
                assert!(sum.is_finite() && sum >= 0.0, "sketch sum {sum}");
                check_value("sketch min", a.latency.min());
                check_value("sketch max", a.latency.max());
                let _ = a.latency.quantile(0.95);
                let _ = a.slower_than(100.0);
                let _ = a.error_bound(1.0);
                let text = fuzzing::accum_to_text(a);
                let back = fuzzing::accum_from_text(&text)
                    .unwrap_or_else(|e| panic!("stored window unreadable: {e}: {text}"));
                assert_eq!(&back, a, "stored window reads back: {text}");
            }
        }
    }
    // Windows saturate at u64::MAX; the fuzzer's points are far below.
    let sat = |v: u128| v.min(u128::from(u64::MAX));
    assert_eq!(sat(counted.samples), sat(expected.samples), "samples");
    assert_eq!(sat(counted.errors), sat(expected.errors), "errors");
    assert_eq!(
        sat(counted.conversions),
        sat(expected.conversions),
        "conversions"
    );
}

/// The data points of a metrics request, as the receiver counts them.
pub fn metric_points(
    req: &opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest,
) -> u64 {
    req.resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(fuzzing::point_count)
        .sum()
}

/// The spans of a trace request.
pub fn spans(
    req: &opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
) -> u64 {
    req.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len() as u64)
        .sum()
}

/// Converts a metrics request for [`metric_pipelines`] and checks it all
/// the way into windows.
pub fn check_metrics_request(
    req: &opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest,
) {
    let pipelines = metric_pipelines();
    let refs: Vec<&PipelineInput> = pipelines.iter().collect();
    let out = fuzzing::convert_metrics(req, &refs, NOW);
    check_accounting(&out, metric_points(req));
    check_windows(&pipelines, &out.batches);
}

/// The environment a config target loads with: variables for `${env:…}`
/// and one `VERDICT__` override.
pub fn config_env() -> HashMap<String, String> {
    [
        ("TOKEN", "s3cret"),
        ("PORT", "4317"),
        ("EMPTY", ""),
        ("VERDICT__SERVICE__STORAGE", "memory:"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}
