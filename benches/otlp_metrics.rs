//! Benchmarks of `source: metrics` ingest: an OTLP metrics request turned
//! into point samples by the receiver (`convert_metrics`), and those points
//! recorded into a shard's windows (cumulative → delta, then an exact
//! exponential merge or an explicit-bucket spread). Costs are per data point:
//! one point stands for all the requests of one attribute set and export.
//!
//! Run with `cargo bench --bench otlp_metrics`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point, metric, AggregationTemporality, ExponentialHistogram,
    ExponentialHistogramDataPoint, Histogram, HistogramDataPoint, Metric, ResourceMetrics,
    ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use verdict::aggregator::state::{ShardState, WindowParams};
use verdict::aggregator::Router;
use verdict::clock::ManualClock;
use verdict::config::{ContractSpec, Decision, OnTimeout, Source, Thresholds};
use verdict::fuzzing::wire_convert_metrics;
use verdict::model::{PointBatch, PointSample};
use verdict::receivers::otlp::convert_metrics::convert_metrics;
use verdict::receivers::PipelineInput;

const S: u64 = 1_000_000_000;
const NOW: u64 = 1_700_000_000 * S;

fn pipeline() -> PipelineInput {
    // The receiver only needs the queue to exist; nothing is sent.
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    PipelineInput {
        name: "bench".into(),
        contracts: vec![ContractSpec {
            name: "checkout".into(),
            version: 1,
            matches: vec![],
            subject_by: vec!["service.name".into(), "service.version".into()],
            source: Source::Metrics,
            span_kinds: vec![2],
            conversion_attribute: "validation.converted".into(),
            latency_metric: "http.server.request.duration".into(),
            conversions_metric: "validation.conversions".into(),
            thresholds: Thresholds {
                max_p95_latency_ms: Some(100.0),
                ..Thresholds::default()
            },
            min_samples: 1,
            min_window_samples: 1,
            pass_windows: 1,
            fail_windows: 1,
            max_duration: None,
            run_idle_timeout: std::time::Duration::from_secs(3600),
            on_idle: verdict::config::OnIdle::Retire,
            on_timeout: OnTimeout::Rollback,
            baseline: None,
            decision: Decision::Windows,
            alpha: 0.05,
            dry_run: false,
        }],
        router: Router::from_senders(vec![tx]),
        timing: verdict::model::WindowTiming {
            size: 60 * S,
            lateness: 10 * S,
            max_clock_skew: 300 * S,
        },
        clock: Arc::new(ManualClock::new(NOW)),
    }
}

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn attrs(i: usize) -> Vec<KeyValue> {
    vec![
        kv(
            "http.request.method",
            any_value::Value::StringValue("GET".into()),
        ),
        kv(
            "http.route",
            any_value::Value::StringValue(format!("/api/{i}")),
        ),
        kv(
            "http.response.status_code",
            any_value::Value::IntValue(if i.is_multiple_of(10) { 500 } else { 200 }),
        ),
    ]
}

/// `points` exponential points as an SDK with 160 buckets sends them
/// (scale 3, 160 buckets, cumulative), one per route.
fn exponential_request(points: usize, ts: u64, scale_counts: u64) -> ExportMetricsServiceRequest {
    let data_points = (0..points)
        .map(|i| {
            let counts: Vec<u64> = (0..160).map(|j| scale_counts * (1 + j % 7)).collect();
            ExponentialHistogramDataPoint {
                attributes: attrs(i),
                start_time_unix_nano: NOW - 30 * S,
                time_unix_nano: ts,
                count: counts.iter().sum(),
                scale: 3,
                positive: Some(exponential_histogram_data_point::Buckets {
                    offset: -60,
                    bucket_counts: counts,
                }),
                min: Some(0.006),
                max: Some(9.0),
                ..Default::default()
            }
        })
        .collect();
    request(metric::Data::ExponentialHistogram(ExponentialHistogram {
        data_points,
        aggregation_temporality: AggregationTemporality::Cumulative as i32,
    }))
}

/// `points` explicit points with the semantic-convention default bounds.
fn explicit_request(points: usize, ts: u64, scale_counts: u64) -> ExportMetricsServiceRequest {
    let bounds = vec![
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    ];
    let data_points = (0..points)
        .map(|i| {
            let counts: Vec<u64> = (0..=bounds.len() as u64)
                .map(|j| scale_counts * (1 + j % 5))
                .collect();
            HistogramDataPoint {
                attributes: attrs(i),
                start_time_unix_nano: NOW - 30 * S,
                time_unix_nano: ts,
                count: counts.iter().sum(),
                bucket_counts: counts,
                explicit_bounds: bounds.clone(),
                min: Some(0.001),
                max: Some(12.0),
                ..Default::default()
            }
        })
        .collect();
    request(metric::Data::Histogram(Histogram {
        data_points,
        aggregation_temporality: AggregationTemporality::Cumulative as i32,
    }))
}

fn request(data: metric::Data) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv(
                        "service.name",
                        any_value::Value::StringValue("checkout".into()),
                    ),
                    kv(
                        "service.version",
                        any_value::Value::StringValue("2.0.0".into()),
                    ),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "http.server.request.duration".into(),
                    unit: "s".into(),
                    data: Some(data),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn points_of(req: &ExportMetricsServiceRequest, p: &PipelineInput) -> Vec<PointSample> {
    convert_metrics(req, &[p], NOW)
        .batches
        .into_iter()
        .flatten()
        .flat_map(PointBatch::into_points)
        .collect()
}

fn shard() -> ShardState {
    ShardState::new(WindowParams {
        timing: verdict::model::WindowTiming {
            size: 60 * S,
            lateness: 10 * S,
            max_clock_skew: 0,
        },
        slots: verdict::aggregator::state::SubjectSlots::new(10_000),
        idle: std::sync::Arc::from([3_600_000_000_000u64; 1]),
        max_streams: 10_000,
        stream_expiry: 900 * S,
    })
}

/// Receiver side: decode-free conversion of a request (checks, roles,
/// stream identity hashing, routing) into point samples.
fn convert(c: &mut Criterion) {
    let p = pipeline();
    let mut g = c.benchmark_group("verdict::receivers::otlp::convert_metrics");
    for n in [1usize, 100, 1000] {
        g.throughput(Throughput::Elements(n as u64));
        let req = exponential_request(n, NOW, 1);
        g.bench_function(format!("exponential_160/{n}_points"), |b| {
            b.iter(|| black_box(convert_metrics(black_box(&req), &[&p], NOW)))
        });
        let req = explicit_request(n, NOW, 1);
        g.bench_function(format!("explicit_15/{n}_points"), |b| {
            b.iter(|| black_box(convert_metrics(black_box(&req), &[&p], NOW)))
        });
    }
    g.finish();
    // The protobuf hot path: the same requests read from their bytes.
    let mut g = c.benchmark_group("verdict::receivers::otlp::wire_metrics");
    for n in [1usize, 100, 1000] {
        g.throughput(Throughput::Elements(n as u64));
        for (name, req) in [
            ("exponential_160", exponential_request(n, NOW, 1)),
            ("explicit_15", explicit_request(n, NOW, 1)),
        ] {
            let body = req.encode_to_vec();
            g.bench_function(format!("{name}/{n}_points"), |b| {
                b.iter(|| black_box(wire_convert_metrics(black_box(&body), &[&p], NOW)))
            });
        }
    }
    g.finish();
}

/// Shard side: a cumulative point after its baseline: cumulative → delta,
/// then merged into the window (exponential) or spread over its buckets
/// (explicit).
fn record(c: &mut Criterion) {
    let p = pipeline();
    let n = 100usize;
    let mut g = c.benchmark_group("verdict::aggregator::ShardState");
    g.throughput(Throughput::Elements(n as u64));
    for (name, make) in [
        (
            "record_point/exponential_160",
            exponential_request as fn(usize, u64, u64) -> _,
        ),
        ("record_point/explicit_15", explicit_request),
    ] {
        record_case(&mut g, &p, name, make, 1);
        // Counts in the billions cost what counts of one cost.
        record_case(&mut g, &p, &format!("{name}_billions"), make, 1_000_000_000);
    }
    g.finish();
}

/// One `record` case: `n` points whose counts are `scale` times small ones.
fn record_case(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    p: &PipelineInput,
    name: &str,
    make: fn(usize, u64, u64) -> ExportMetricsServiceRequest,
    scale: u64,
) {
    let n = 100usize;
    {
        let first = points_of(&make(n, NOW - 20 * S, scale), p);
        let next = points_of(&make(n, NOW - 10 * S, 3 * scale), p);
        g.bench_function(format!("{name}/{n}_points"), |b| {
            b.iter_batched(
                || {
                    let mut st = shard();
                    for pt in first.clone() {
                        st.record_point(pt);
                    }
                    (st, PointBatch::from(next.clone()), Vec::new())
                },
                // As the shard records a batch.
                |(mut st, mut pts, mut counts)| {
                    pts.for_each_whole(&mut counts, |pt| {
                        black_box(st.record_point_in(pt));
                    });
                    st
                },
                BatchSize::SmallInput,
            )
        });
    }
}

/// The spreading alone: one point of the 15 semantic-convention buckets
/// into an empty window, with counts from one per bucket to billions. Its
/// cost is bounded by the buckets' pieces (at most 128 each), whatever the
/// counts; fewer counts than pieces cost less (pieces that get no count are
/// jumped over).
fn spread(c: &mut Criterion) {
    let bounds = [
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    ];
    let mut g = c.benchmark_group("verdict::model::Accum");
    g.throughput(Throughput::Elements(1));
    for (name, per_bucket) in [
        ("1", 1u64),
        ("30", 30),
        ("1000", 1000),
        ("1e9", 1_000_000_000),
        ("1e15", 1_000_000_000_000_000),
    ] {
        let counts = vec![per_bucket; bounds.len() + 1];
        g.bench_function(
            format!("spread_explicit_15/counts_{name}_per_bucket"),
            |b| {
                b.iter(|| {
                    let mut acc = verdict::model::accum::Accum::default();
                    acc.spread_explicit(
                        black_box(&bounds),
                        black_box(&counts),
                        Some(0.001),
                        Some(12.0),
                    );
                    acc
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, convert, record, spread);
criterion_main!(benches);
