//! Tests of metric point conversion: checks, roles, streams, and OTLP/JSON
//! payloads (`tests/fixtures/otlp-json/`) all the way to window figures.

use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point, metric, ExponentialHistogram, Histogram, ResourceMetrics,
    ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use super::*;
use crate::aggregator::state::{ShardState, WindowParams};
use crate::aggregator::ShardBatch;
use crate::config::{ContractSpec, Thresholds};
use crate::model::Figures;
use crate::receivers::otlp::json::decode_metrics;
use crate::test_util::{contract, kv, pipeline_input, s};

const S: u64 = 1_000_000_000;
const NOW: u64 = 1_700_000_011 * S;

/// The prost path's conversion, checked against the wire reader on the
/// request's encoding: every test here holds for both.
fn convert_metrics(
    req: &ExportMetricsServiceRequest,
    pipelines: &[&PipelineInput],
    now: UnixNanos,
) -> Converted<PointBatch> {
    let reference = super::convert_metrics(req, pipelines, now);
    let budget = super::super::budget::Budget::new(1 << 40);
    let wire = super::super::wire_metrics::convert_metrics(
        &req.encode_to_vec(),
        pipelines,
        now,
        &mut budget.charge("test"),
    )
    .expect("the wire reader reads what prost encoded");
    assert_eq!(
        format!("{wire:?}"),
        format!("{reference:?}"),
        "the wire reader converts differently"
    );
    reference
}

fn spec(latency_metric: &str, conversions_metric: &str) -> ContractSpec {
    ContractSpec {
        source: Source::Metrics,
        latency_metric: latency_metric.into(),
        conversions_metric: conversions_metric.into(),
        thresholds: Thresholds {
            max_p95_latency_ms: Some(100.0),
            ..Thresholds::default()
        },
        ..contract("*")
    }
}

fn pipeline(spec: ContractSpec) -> (PipelineInput, tokio::sync::mpsc::Receiver<ShardBatch>) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    (pipeline_input(spec, vec![tx], NOW), rx)
}

fn default_pipeline() -> (PipelineInput, tokio::sync::mpsc::Receiver<ShardBatch>) {
    pipeline(spec(
        "http.server.request.duration",
        "validation.conversions",
    ))
}

fn request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", s("checkout")),
                    kv("service.version", s("2.0.0")),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn exp_metric(unit: &str, temporality: i32, points: Vec<ExponentialHistogramDataPoint>) -> Metric {
    Metric {
        name: "http.server.request.duration".into(),
        unit: unit.into(),
        data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: points,
            aggregation_temporality: temporality,
        })),
        ..Default::default()
    }
}

fn exp_point(attrs: Vec<KeyValue>, counts: Vec<u64>) -> ExponentialHistogramDataPoint {
    ExponentialHistogramDataPoint {
        attributes: attrs,
        start_time_unix_nano: NOW - 5 * S,
        time_unix_nano: NOW,
        count: counts.iter().sum(),
        scale: 3,
        positive: Some(exponential_histogram_data_point::Buckets {
            offset: -30,
            bucket_counts: counts,
        }),
        ..Default::default()
    }
}

const CUMULATIVE: i32 = AggregationTemporality::Cumulative as i32;
const DELTA: i32 = AggregationTemporality::Delta as i32;

fn points(out: &Converted<PointBatch>) -> Vec<PointSample> {
    out.batches[0][0].clone().into_points()
}

#[test]
fn exponential_points_become_point_samples() {
    let (p, _rx) = default_pipeline();
    let req = request(vec![exp_metric(
        "s",
        CUMULATIVE,
        vec![
            exp_point(
                vec![kv(
                    "http.response.status_code",
                    any_value::Value::IntValue(200),
                )],
                vec![3, 4],
            ),
            exp_point(vec![kv("http.response.status_code", s("503"))], vec![1]),
            exp_point(
                vec![kv("error.type", s("java.net.SocketTimeoutException"))],
                vec![2],
            ),
        ],
    )]);
    let out = convert_metrics(&req, &[&p], NOW);
    assert_eq!((out.items, out.ignored, out.rejected_count()), (3, 0, 0));
    let ps = points(&out);
    assert_eq!(ps.len(), 3);
    assert_eq!(ps[0].series.subject.joined(), "checkout/2.0.0");
    assert_eq!(ps[0].temporality, Temporality::Cumulative);
    assert!(ps[0].fresh, "started 5 s ago, in the open window");
    let errors: Vec<bool> = ps
        .iter()
        .map(|p| matches!(&p.kind, PointKind::Latency(l) if l.error))
        .collect();
    assert_eq!(errors, vec![false, true, true]);
    let PointKind::Latency(l) = &ps[0].kind else {
        panic!("latency")
    };
    assert_eq!((l.unit, l.count), (LatencyUnit::Seconds, 7));
    // One stream per attribute set, the same stream on the next request.
    assert_ne!(ps[0].stream, ps[1].stream);
    let again = convert_metrics(&req, &[&p], NOW);
    assert_eq!(points(&again)[0].stream, ps[0].stream);
}

#[test]
fn latency_units_other_than_s_ms_us_are_rejected_with_a_message() {
    let (p, _rx) = default_pipeline();
    for unit in ["", "1", "min", "By"] {
        let req = request(vec![exp_metric(
            unit,
            DELTA,
            vec![exp_point(vec![], vec![1])],
        )]);
        let out = convert_metrics(&req, &[&p], NOW);
        assert_eq!(out.rejected, vec![(RejectReason::Unit, 1)], "{unit:?}");
        assert!(out.is_empty());
        let m = out.message("data points");
        assert!(
            m.contains("unit is not s, ms or us")
                && m.contains(&format!("http.server.request.duration has unit {unit:?}")),
            "{m}"
        );
    }
    for unit in ["s", "ms", "us"] {
        let req = request(vec![exp_metric(
            unit,
            DELTA,
            vec![exp_point(vec![], vec![1])],
        )]);
        assert_eq!(
            convert_metrics(&req, &[&p], NOW).rejected_count(),
            0,
            "{unit}"
        );
    }
}

#[test]
fn bad_points_are_rejected_and_say_why() {
    let (p, _rx) = default_pipeline();
    let mut negative = exp_point(vec![], vec![1]);
    negative.negative = Some(exponential_histogram_data_point::Buckets {
        offset: 0,
        bucket_counts: vec![0, 2],
    });
    negative.count = 3;
    let mut nan_sum = exp_point(vec![], vec![1]);
    nan_sum.sum = Some(f64::NAN);
    let mut wrong_count = exp_point(vec![], vec![1]);
    wrong_count.count = 5;
    let mut future = exp_point(vec![], vec![1]);
    future.time_unix_nano = NOW + 400 * S;
    let mut late = exp_point(vec![], vec![1]);
    late.time_unix_nano = NOW - 100 * S;
    late.start_time_unix_nano = 0;
    let mut no_value = exp_point(vec![], vec![1]);
    no_value.flags = DataPointFlags::NoRecordedValueMask as u32;
    let req = request(vec![exp_metric(
        "s",
        DELTA,
        vec![negative, nan_sum, wrong_count, future, late, no_value],
    )]);
    let out = convert_metrics(&req, &[&p], NOW);
    assert_eq!(
        out.rejected,
        vec![
            (RejectReason::Future, 1),
            (RejectReason::Late, 1),
            (RejectReason::NegativeBuckets, 1),
            (RejectReason::InvalidPoint, 2),
        ]
    );
    assert_eq!(out.ignored, 1);
    let m = out.message("data points");
    assert!(
        m.contains("sum is NaN") && m.contains("count 5 is not"),
        "{m}"
    );
    // Unspecified temporality and a latency metric that is a gauge.
    let gauge = Metric {
        name: "http.server.request.duration".into(),
        unit: "s".into(),
        data: Some(metric::Data::Gauge(Default::default())),
        ..Default::default()
    };
    let out = convert_metrics(
        &request(vec![
            exp_metric("s", 0, vec![exp_point(vec![], vec![1])]),
            gauge,
        ]),
        &[&p],
        NOW,
    );
    assert_eq!(out.rejected, vec![(RejectReason::InvalidPoint, 1)]);
    assert!(out
        .message("data points")
        .contains("temporality unspecified"));
}

#[test]
fn counts_that_cannot_be_real_are_rejected_not_wrapped() {
    let (p, _rx) = default_pipeline();
    // count = zeroCount = 2^64-1, then an honest point of 3: before, the
    // window's total wrapped to 2.
    let mut huge = exp_point(vec![], vec![]);
    huge.count = u64::MAX;
    huge.zero_count = u64::MAX;
    let honest = exp_point(vec![], vec![1, 2]);
    let req = request(vec![exp_metric("s", DELTA, vec![huge, honest])]);
    let out = convert_metrics(&req, &[&p], NOW);
    assert_eq!(out.rejected, vec![(RejectReason::InvalidPoint, 1)]);
    assert!(out.message("data points").contains("cannot be real"));
    assert_eq!(points(&out).len(), 1, "only the honest point goes on");
}

/// A delta explicit histogram in ms with one point of these bounds and
/// counts (its count their sum).
fn hist(bounds: Vec<f64>, counts: Vec<u64>) -> Metric {
    Metric {
        name: "http.server.request.duration".into(),
        unit: "ms".into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                time_unix_nano: NOW,
                count: counts.iter().sum(),
                bucket_counts: counts,
                explicit_bounds: bounds,
                ..Default::default()
            }],
            aggregation_temporality: DELTA,
        })),
        ..Default::default()
    }
}

#[test]
fn explicit_histograms_are_checked() {
    let (p, _rx) = default_pipeline();
    let out = convert_metrics(
        &request(vec![
            hist(vec![10.0, 5.0], vec![1, 1, 1]),
            hist(vec![10.0], vec![1, 1, 1]),
            hist(vec![10.0, f64::INFINITY], vec![1, 1, 1]),
            hist(vec![10.0, 50.0], vec![1, 2, 3]),
        ]),
        &[&p],
        NOW,
    );
    assert_eq!(out.rejected, vec![(RejectReason::InvalidPoint, 3)]);
    let ps = points(&out);
    assert_eq!(ps.len(), 1);
    let PointKind::Latency(l) = &ps[0].kind else {
        panic!("latency")
    };
    assert_eq!(l.unit, LatencyUnit::Millis);
    assert_eq!(ps[0].temporality, Temporality::Delta);
}

/// A point's buckets bound what it costs queued and remembered: more than
/// [`MAX_POINT_BUCKETS`] is rejected in `partial_success`, with its own
/// reason, and the point at the limit is accepted.
#[test]
fn points_with_too_many_buckets_are_rejected() {
    let (p, _rx) = default_pipeline();
    let explicit = |buckets: usize| Metric {
        name: "http.server.request.duration".into(),
        unit: "ms".into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                time_unix_nano: NOW,
                count: 1,
                bucket_counts: std::iter::once(1)
                    .chain(std::iter::repeat_n(0, buckets - 1))
                    .collect(),
                explicit_bounds: (1..buckets).map(|b| b as f64).collect(),
                ..Default::default()
            }],
            aggregation_temporality: DELTA,
        })),
        ..Default::default()
    };
    let exponential = |buckets: usize| {
        let mut counts = vec![0; buckets];
        counts[0] = 1;
        exp_metric("s", DELTA, vec![exp_point(vec![], counts)])
    };
    let out = convert_metrics(
        &request(vec![
            explicit(MAX_POINT_BUCKETS),
            explicit(MAX_POINT_BUCKETS + 1),
            exponential(MAX_POINT_BUCKETS),
            exponential(MAX_POINT_BUCKETS + 1),
            exponential(1_000_000),
        ]),
        &[&p],
        NOW,
    );
    assert_eq!(out.rejected, vec![(RejectReason::TooManyBuckets, 3)]);
    assert_eq!(RejectReason::TooManyBuckets.label(), "too_many_buckets");
    assert!(
        out.message("data points")
            .contains("4097 buckets (the limit is 4096 per point)"),
        "{}",
        out.message("data points")
    );
    assert_eq!(points(&out).len(), 2, "the points at the limit go on");
}

#[test]
fn conversions_come_from_a_monotonic_sum_only() {
    let (p, _rx) = pipeline(spec("latency", "orders.placed"));
    let sum = |monotonic: bool, v: number_data_point::Value| Metric {
        name: "orders.placed".into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![NumberDataPoint {
                time_unix_nano: 0,
                value: Some(v),
                ..Default::default()
            }],
            aggregation_temporality: DELTA,
            is_monotonic: monotonic,
        })),
        ..Default::default()
    };
    let out = convert_metrics(
        &request(vec![
            sum(true, number_data_point::Value::AsInt(4)),
            sum(true, number_data_point::Value::AsDouble(2.0)),
            sum(true, number_data_point::Value::AsInt(-1)),
            sum(false, number_data_point::Value::AsInt(4)),
            Metric {
                name: "validation.conversions".into(),
                ..Default::default()
            },
        ]),
        &[&p],
        NOW,
    );
    assert_eq!((out.items, out.ignored), (4, 0));
    assert_eq!(out.rejected, vec![(RejectReason::InvalidPoint, 2)]);
    let kinds: Vec<PointKind> = points(&out).into_iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        vec![PointKind::Conversions(4.0), PointKind::Conversions(2.0)]
    );
    // Time 0 is "now".
    assert_eq!(points(&out)[0].ts, NOW);
}

#[test]
fn spans_contracts_and_other_metrics_ignore_points() {
    let mut spans = spec("http.server.request.duration", "validation.conversions");
    spans.source = Source::Spans;
    let (p, _rx) = pipeline(spans);
    let req = request(vec![exp_metric(
        "s",
        DELTA,
        vec![exp_point(vec![], vec![1])],
    )]);
    let out = convert_metrics(&req, &[&p], NOW);
    assert_eq!((out.items, out.ignored), (1, 1));
    assert!(out.is_empty());
}

/// Runs a request through conversion and one shard; returns the figures of
/// every closed window by subject.
fn figures_of(req: &ExportMetricsServiceRequest, p: &PipelineInput) -> Vec<(String, Figures)> {
    let out = convert_metrics(req, &[p], NOW);
    assert_eq!(out.rejected_count(), 0, "{}", out.message("data points"));
    let mut st = ShardState::new(WindowParams {
        timing: p.timing,
        slots: crate::aggregator::state::SubjectSlots::new(100),
        idle: std::sync::Arc::from([3_600_000_000_000u64; 1]),
        max_streams: 100,
        stream_expiry: 3600 * S,
    });
    for point in out
        .batches
        .into_iter()
        .flatten()
        .flat_map(PointBatch::into_points)
    {
        st.record_point(point);
    }
    st.close_until(u64::MAX / 2)
        .into_iter()
        .map(|c| (c.series.subject.joined().to_string(), Figures::of(&c.accum)))
        .collect()
}

#[test]
fn json_latency_metrics_fixture_end_to_end() {
    let json = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/otlp-json/latency_metrics.json"
    ));
    let req = decode_metrics(json.as_bytes()).expect("fixture decodes");
    let (p, _rx) = default_pipeline();
    let out = convert_metrics(&req, &[&p], NOW);
    // 2 + 1 + 1 points on 2.0.0 (one of them a gauge-like sum we ignore), 2 on 2.1.0.
    assert_eq!((out.items, out.ignored, out.rejected_count()), (6, 1, 0));
    let figures = figures_of(&req, &p);
    assert_eq!(figures.len(), 2);

    // 2.0.0: exponential, seconds, scale 3: 100 requests, 10 errors (503),
    // 25 conversions; p95 is rank 95, in bucket -27 at scale 3, i.e.
    // (2^(-27/8), 2^(-26/8)] s = (96.35, 105.1] ms.
    let (subject, f) = &figures[0];
    assert_eq!(subject, "checkout/2.0.0");
    assert_eq!(f.samples, 100);
    assert_eq!(f.error_rate_percent, Some(10.0));
    assert_eq!(f.conversion_rate_percent, Some(25.0));
    let p95 = f.p95_latency_ms.unwrap_or(0.0);
    assert!((96.35..=104.0).contains(&p95), "p95 {p95}");
    assert!(!f.latency_approximate);
    let rel3 = (2f64.powf(0.125) - 1.0) / (2f64.powf(0.125) + 1.0);
    assert!((f.latency_relative_error - rel3).abs() < 1e-12);
    // p50 is rank 50: the third bucket, (2^(-33/8), 2^(-32/8)] s.
    let p50 = f.p50_latency_ms.unwrap_or(0.0);
    assert!((57.2..=62.5).contains(&p50), "p50 {p50}");

    // 2.1.0: explicit, milliseconds: 102 requests, 2 errors (error.type);
    // p95 is rank 97, in (100, 250] ms, which is the bound.
    let (subject, f) = &figures[1];
    assert_eq!(subject, "checkout/2.1.0");
    assert_eq!(f.samples, 102);
    let err = f.error_rate_percent.unwrap_or(0.0);
    assert!((err - 200.0 / 102.0).abs() < 1e-9);
    assert_eq!(f.conversion_rate_percent, Some(0.0));
    let p95 = f.p95_latency_ms.unwrap_or(0.0);
    assert!((100.0..=250.0).contains(&p95), "p95 {p95}");
    assert!(f.latency_approximate);
    let bound = f.p95_latency_error_ms.unwrap_or(0.0);
    assert!((150.0..170.0).contains(&bound), "bound {bound}");
}

#[test]
fn upstream_metrics_json_fixture_through_conversion() {
    let json = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/otlp-json/metrics.json"
    ));
    let req = decode_metrics(json.as_bytes()).expect("fixture decodes");
    // The upstream example names no release: select it by service.name only.
    let mut c = spec("my.exponential.histogram", "my.counter");
    c.subject_by = vec!["service.name".into()];
    let (p, _rx) = pipeline(c);
    // At the point's own time: its window is open.
    let now = 1_544_712_660_300_000_000 + S;
    let out = convert_metrics(&req, &[&p], now);
    // Unit "1" is no latency unit: the histogram point is refused, loudly.
    assert_eq!((out.items, out.ignored), (4, 2));
    assert_eq!(out.rejected, vec![(RejectReason::Unit, 1)]);
    assert!(out
        .message("data points")
        .contains("my.exponential.histogram has unit \"1\""));
    // The counter: a delta of 5 (temporality 1), counted as it is.
    let ps = points(&out);
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0].kind, PointKind::Conversions(5.0));
    assert_eq!(ps[0].temporality, Temporality::Delta);
    assert!(ps[0].fresh);
    assert_eq!(ps[0].series.subject.joined(), "my.service");
}

#[test]
fn own_exponential_histogram_json_fixture_through_conversion() {
    let json = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/otlp-json/exponential_histogram.json"
    ));
    let req = decode_metrics(json.as_bytes()).expect("fixture decodes");
    let mut c = spec("http.server.request.duration", "validation.conversions");
    c.subject_by = vec!["service.name".into()];
    let (p, _rx) = pipeline(c);
    let out = convert_metrics(&req, &[&p], 1_700_000_060 * S + S);
    // The first point has negative buckets (rejected and counted); the
    // second has "no recorded value" (ignored). Nothing is enqueued.
    assert_eq!(out.items, 2);
    assert_eq!(out.rejected, vec![(RejectReason::NegativeBuckets, 1)]);
    assert_eq!(out.ignored, 1);
    assert!(out.is_empty());
    assert!(out
        .message("data points")
        .contains("negative bucket counts"));
}

/// The Node.js SDK's default boundaries are milliseconds; on a histogram in
/// seconds they are spotted (and warned about), semantic-convention
/// second boundaries and millisecond histograms are not.
#[test]
fn millisecond_looking_bounds_on_seconds_are_spotted() {
    use opentelemetry_proto::tonic::metrics::v1::{
        metric::Data, Histogram, HistogramDataPoint, Metric,
    };
    let metric = |unit: &str, bounds: &[f64]| Metric {
        name: "http.server.request.duration".into(),
        unit: unit.into(),
        data: Some(Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                explicit_bounds: bounds.to_vec(),
                ..Default::default()
            }],
            aggregation_temporality: 2,
        })),
        ..Default::default()
    };
    let node = [
        0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0,
        7500.0, 10000.0,
    ];
    let semconv = [
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    ];
    assert!(millisecond_bounds(&metric("s", &node)).is_some());
    assert!(millisecond_bounds(&metric("s", &semconv)).is_none());
    assert!(millisecond_bounds(&metric("ms", &node)).is_none());
}

/// Rejected points are kept by the series they were meant for (for its
/// run) and by service (for the log), with what and why in words; late
/// and future points too, and a point without a subject only by service.
#[test]
fn rejected_points_are_told_to_their_series_and_service() {
    let (p, _rx) = default_pipeline();
    let metric = |unit: &str, time: u64| {
        let mut m = exp_metric(unit, DELTA, vec![exp_point(vec![], vec![1]); 3]);
        if let Some(metric::Data::ExponentialHistogram(h)) = &mut m.data {
            for dp in &mut h.data_points {
                dp.time_unix_nano = time;
                dp.start_time_unix_nano = time - 5 * S;
            }
        }
        m
    };
    let req = request(vec![
        metric("1", NOW),
        metric("s", NOW + 3600 * S),
        metric("s", NOW - 3600 * S),
    ]);
    let out = convert_metrics(&req, &[&p], NOW);
    assert_eq!(out.rejected_count(), 9);
    let blamed: Vec<(usize, &str, &str, u64, &str)> = out
        .blamed
        .iter()
        .map(|(pi, series, r)| {
            (
                *pi,
                series.subject.joined(),
                r.reason,
                r.count,
                r.why.as_str(),
            )
        })
        .collect();
    assert_eq!(
        blamed,
        vec![
            (
                0,
                "checkout/2.0.0",
                "unit",
                3,
                "unit \"1\" is not s, ms or us"
            ),
            (
                0,
                "checkout/2.0.0",
                "future",
                3,
                RejectReason::Future.describe()
            ),
            (
                0,
                "checkout/2.0.0",
                "late",
                3,
                RejectReason::Late.describe()
            ),
        ]
    );
    assert!(out.blamed.iter().all(|(_, _, r)| r
        .sentence()
        .contains("points of http.server.request.duration")));
    let culprits: Vec<(&str, &str, u64)> = out
        .culprits
        .iter()
        .map(|(service, r)| (service.as_str(), r.reason, r.count))
        .collect();
    assert_eq!(
        culprits,
        vec![
            ("checkout", "unit", 3),
            ("checkout", "future", 3),
            ("checkout", "late", 3)
        ]
    );

    // No subject: counted and logged, but no series to tell.
    let mut unversioned = request(vec![metric("1", NOW)]);
    unversioned.resource_metrics[0]
        .resource
        .as_mut()
        .expect("resource")
        .attributes
        .truncate(1);
    let out = convert_metrics(&unversioned, &[&p], NOW);
    assert_eq!(out.rejected_count(), 3);
    assert!(out.blamed.is_empty());
    assert_eq!(out.culprits.len(), 1);
}

/// However many series and kinds one request rejects, what it keeps for
/// the runs and the log is bounded.
#[test]
fn what_a_request_keeps_about_rejections_is_bounded() {
    let (p, _rx) = default_pipeline();
    let resource = |i: usize| ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![
                kv("service.name", s(&format!("svc-{i}"))),
                kv("service.version", s(&i.to_string())),
            ],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![exp_metric("1", DELTA, vec![exp_point(vec![], vec![1])])],
            ..Default::default()
        }],
        ..Default::default()
    };
    let req = ExportMetricsServiceRequest {
        resource_metrics: (0..5000).map(resource).collect(),
    };
    let out = convert_metrics(&req, &[&p], NOW);
    assert_eq!(out.rejected_count(), 5000);
    assert_eq!(
        out.blamed.len(),
        crate::receivers::otlp::convert::MAX_BLAMED
    );
    assert_eq!(
        out.culprits.len(),
        crate::receivers::otlp::convert::MAX_CULPRITS
    );
}

/// A metric that one contract reads as its latency histogram and another
/// as its conversions counter is offered to both, and each of its points
/// is still counted once: accepted when either takes it, rejected once
/// when neither can (it was counted once per role before).
#[test]
fn a_point_read_in_two_roles_is_settled_once() {
    let (tx, _rx) = tokio::sync::mpsc::channel(4);
    let mut p = pipeline_input(spec("m", "other"), vec![tx], NOW);
    p.contracts.push(spec("latency", "m"));
    let number = |v: i64| NumberDataPoint {
        start_time_unix_nano: NOW - 5 * S,
        time_unix_nano: NOW,
        value: Some(number_data_point::Value::AsInt(v)),
        ..Default::default()
    };
    let sum = |unit: &str, monotonic: bool| Metric {
        name: "m".into(),
        unit: unit.into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![number(1), number(2), number(3)],
            aggregation_temporality: DELTA,
            is_monotonic: monotonic,
        })),
        ..Default::default()
    };
    let accounting = |out: &Converted<PointBatch>| {
        assert_eq!(
            out.items,
            out.accepted + out.ignored + out.rejected_count(),
            "{out:?}"
        );
        (out.items, out.accepted, out.rejected_count())
    };
    // Not a latency unit, but a fine counter: accepted, three points.
    let out = convert_metrics(&request(vec![sum("1", true)]), &[&p], NOW);
    assert_eq!(accounting(&out), (3, 3, 0));
    assert_eq!(points(&out).len(), 3);
    // A non-monotonic sum in ms: neither role can read it, rejected once.
    let out = convert_metrics(&request(vec![sum("ms", false)]), &[&p], NOW);
    assert_eq!(accounting(&out), (3, 0, 3));
    // The latency contract still hears why it has no samples.
    assert!(out
        .blamed
        .iter()
        .any(|(_, s, r)| s.contract == 0 && r.count == 3));
    // A histogram in ms: latency takes it, conversions refuses it.
    let hist = Metric {
        name: "m".into(),
        unit: "ms".into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                start_time_unix_nano: NOW - 5 * S,
                time_unix_nano: NOW,
                count: 2,
                explicit_bounds: vec![10.0],
                bucket_counts: vec![1, 1],
                ..Default::default()
            }],
            aggregation_temporality: DELTA,
        })),
        ..Default::default()
    };
    let out = convert_metrics(&request(vec![hist]), &[&p], NOW);
    assert_eq!(accounting(&out), (1, 1, 0));
    assert!(out.message("data points").is_empty());
}

/// Points read by two contracts travel twice, each copy with the point's
/// own counts: the vector one point's counts pass through is reused for
/// the next point (longer, then shorter), never shared between points.
#[test]
fn every_contract_gets_each_points_own_counts() {
    let (mut p, _rx) = default_pipeline();
    let mut second = p.contracts[0].clone();
    second.name = "second".into();
    p.contracts.push(second);
    let counts = [vec![1, 2], vec![5; 160], vec![7, 0, 9], vec![]];
    let req = request(vec![exp_metric(
        "s",
        CUMULATIVE,
        counts
            .iter()
            .enumerate()
            .map(|(i, c)| exp_point(vec![kv("http.route", s(&format!("/r{i}")))], c.clone()))
            .collect(),
    )]);
    let out = convert_metrics(&req, &[&p], NOW);
    assert_eq!((out.items, out.accepted, out.rejected_count()), (4, 4, 0));
    let ps = points(&out);
    assert_eq!(ps.len(), 8, "{ps:?}");
    for contract in [0, 1] {
        let got: Vec<&[u64]> = ps
            .iter()
            .filter(|p| p.series.contract == contract)
            .map(|p| p.kind.counts())
            .collect();
        let want: Vec<&[u64]> = counts.iter().map(Vec::as_slice).collect();
        assert_eq!(got, want, "contract {contract}");
    }
}

/// Latencies are never negative: an explicit point with counts in a
/// bucket wholly below zero is rejected (negative bounds with no counts
/// under them, or a bucket across zero, are fine), and so is an
/// exponential point whose scale is outside the data model's -10..=20.
#[test]
fn negative_latencies_and_impossible_scales_are_rejected() {
    let (p, _rx) = default_pipeline();
    let scaled = |scale: i32| {
        let mut point = exp_point(vec![], vec![1, 2]);
        point.scale = scale;
        exp_metric("s", DELTA, vec![point])
    };
    let out = convert_metrics(
        &request(vec![
            hist(vec![-5.0, -1.0, 0.5], vec![1, 0, 0, 0]),
            hist(vec![-5.0, -1.0, 0.5], vec![0, 2, 0, 0]),
            hist(vec![-5.0, -1.0, 0.5], vec![0, 0, 3, 4]),
            hist(vec![0.0, 10.0], vec![1, 1, 1]),
            scaled(21),
            scaled(-11),
            scaled(i32::MIN),
            scaled(20),
            scaled(-10),
        ]),
        &[&p],
        NOW,
    );
    assert_eq!(
        out.rejected,
        vec![
            (RejectReason::NegativeBuckets, 2),
            (RejectReason::InvalidPoint, 3)
        ]
    );
    let m = out.message("data points");
    assert!(m.contains("below zero"), "{m}");
    assert!(m.contains("scale 21 is outside -10..=20"), "{m}");
    assert_eq!(points(&out).len(), 4, "the others go on");
}

/// Attributes are a set: a stream whose point or resource attributes
/// come in another order from one export to the next is the same stream
/// (its next point is a delta, not a new stream counted in full again),
/// and other values are another stream.
#[test]
fn a_streams_identity_does_not_follow_the_order_of_its_attributes() {
    let (p, _rx) = default_pipeline();
    let stream_of = |resource: Vec<KeyValue>, attrs: Vec<KeyValue>| {
        let mut req = request(vec![exp_metric(
            "s",
            CUMULATIVE,
            vec![exp_point(attrs, vec![1, 2])],
        )]);
        req.resource_metrics[0]
            .resource
            .as_mut()
            .expect("resource")
            .attributes = resource;
        let out = convert_metrics(&req, &[&p], NOW);
        assert_eq!(out.accepted, 1, "{}", out.message("points"));
        points(&out)[0].stream
    };
    let resource = || {
        vec![
            kv("service.name", s("checkout")),
            kv("service.version", s("2.0.0")),
            kv("host.name", s("a")),
        ]
    };
    let route = || kv("http.route", s("/cart"));
    let code = || kv("http.response.status_code", any_value::Value::IntValue(200));
    let one = stream_of(resource(), vec![route(), code()]);
    assert_eq!(one, stream_of(resource(), vec![code(), route()]));
    let mut reversed = resource();
    reversed.reverse();
    assert_eq!(one, stream_of(reversed, vec![route(), code()]));
    assert_ne!(one, stream_of(resource(), vec![route()]));
    assert_ne!(
        one,
        stream_of(resource(), vec![kv("http.route", s("/pay")), code()])
    );
}
