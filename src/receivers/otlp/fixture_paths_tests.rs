//! The metric points of the OTLP/JSON fixtures (`tests/fixtures/otlp-json/`)
//! through both paths, as the property tests do with generated points: the
//! wire reader against the prost conversion (same samples, rejections,
//! notes), then the shard's windows against the straightforward ones
//! (`aggregator::state::metrics_tests`). Once as the fixtures are, and replayed as later
//! points of their own cumulative streams: grown, shrunk (a reset),
//! restarted, retried and out of order.

use std::collections::{BTreeMap, HashMap};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric::Data, number_data_point, Gauge, Metric,
    NumberDataPoint, ResourceMetrics, Sum,
};
use proptest::prelude::*;
use prost::Message;

use crate::aggregator::state::metrics_tests::{remembered, straightforward_delta, LastPoint};
use crate::aggregator::state::*;
use crate::config::{ContractSpec, Source};
use crate::model::open_accum::summed_tests::straightforward;
use crate::model::point::{PointKind, StreamId};
use crate::model::{Accum, PointBatch, PointSample, WindowTiming};
use crate::receivers::otlp::budget::Budget;
use crate::receivers::otlp::convert::Converted;
use crate::receivers::otlp::convert_metrics as reference;
use crate::receivers::otlp::json::decode_metrics;
use crate::receivers::otlp::wire_metrics;
use crate::receivers::otlp::wire_metrics::tests as generated;
use crate::receivers::PipelineInput;
use crate::test_util::{contract, pipeline_input};

const S: u64 = 1_000_000_000;

/// Every metrics fixture, decoded as the JSON receiver decodes it.
fn fixtures() -> Vec<ExportMetricsServiceRequest> {
    [
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/otlp-json/metrics.json"
        )),
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/otlp-json/latency_metrics.json"
        )),
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/otlp-json/exponential_histogram.json"
        )),
    ]
    .iter()
    .map(|json| decode_metrics(json.as_bytes()).expect("fixture decodes"))
    .collect()
}

/// One pipeline of three shards per pair of metrics, so that every metric
/// of the fixtures (and the generated `lat` and `conv`) is read, most in both roles (a counter read as latency
/// is a rejection to compare too), some by release and some by service.
fn pipelines() -> Vec<PipelineInput> {
    let pairs = [
        (
            "http.server.request.duration",
            "validation.conversions",
            false,
        ),
        (
            "validation.conversions",
            "http.server.active_requests",
            true,
        ),
        ("my.histogram", "my.counter", true),
        ("my.exponential.histogram", "my.gauge", true),
        ("my.counter", "http.server.request.duration", false),
        ("lat", "conv", false),
        ("conv", "lat", true),
    ];
    pairs
        .into_iter()
        .map(|(latency, conversions, by_service)| {
            let mut spec = ContractSpec {
                source: Source::Metrics,
                latency_metric: latency.into(),
                conversions_metric: conversions.into(),
                ..contract("*")
            };
            if by_service {
                spec.subject_by = vec!["service.name".into()];
            }
            let senders = (0..3).map(|_| tokio::sync::mpsc::channel(1).0).collect();
            pipeline_input(spec, senders, 0)
        })
        .collect()
}

/// The request converted by the wire reader, checked to be what the prost
/// path makes of it: samples (stream identities included), rejections,
/// notes, culprits and blame, in the same order.
fn converted(
    req: &ExportMetricsServiceRequest,
    pipelines: &[&PipelineInput],
    now: u64,
) -> Converted<PointBatch> {
    let want = reference::convert_metrics(req, pipelines, now);
    let budget = Budget::new(1 << 40);
    let got = wire_metrics::convert_metrics(
        &req.encode_to_vec(),
        pipelines,
        now,
        &mut budget.charge("test"),
    )
    .expect("prost's encoding reads");
    assert_eq!(format!("{got:?}"), format!("{want:?}"));
    assert_eq!(got.items, got.accepted + got.ignored + got.rejected_count());
    got
}

/// One pipeline's windows both ways: the shard fed point by point, and the
/// straightforward deltas kept per window.
struct BothWays {
    fast: ShardState,
    timing: WindowTiming,
    last: HashMap<StreamId, LastPoint>,
    deltas: BTreeMap<(String, u64), Vec<PointKind>>,
}

impl BothWays {
    fn new(p: &PipelineInput) -> Self {
        BothWays {
            fast: ShardState::new(WindowParams {
                timing: p.timing,
                slots: SubjectSlots::new(1000),
                idle: std::sync::Arc::from([3600 * S; 1]),
                max_streams: 10_000,
                stream_expiry: 3600 * S,
            }),
            timing: p.timing,
            last: HashMap::new(),
            deltas: BTreeMap::new(),
        }
    }

    fn record(&mut self, p: &mut PointSample) {
        if let Some(d) = straightforward_delta(self.last.get(&p.stream), p) {
            let window = self.timing.window_of(p.ts).start;
            self.deltas
                .entry((format!("{:?}", p.series), window))
                .or_default()
                .push(d);
        }
        if remembered(self.last.get(&p.stream), p) {
            self.last.insert(p.stream, (p.start, p.ts, p.kind.clone()));
        }
        // As the shard records a batch: in place, the counts put back
        // into one reused vector (`PointBatch::for_each_whole`).
        self.fast.record_point_in(p);
    }

    /// Asserts the same windows, accumulation for accumulation; returns
    /// how many.
    fn assert_same(mut self) -> usize {
        let want: BTreeMap<(String, u64), Accum> = std::mem::take(&mut self.deltas)
            .into_iter()
            .map(|(k, points)| (k, straightforward(&points)))
            .collect();
        let got: BTreeMap<(String, u64), Accum> = self
            .fast
            .close_until(u64::MAX / 2)
            .into_iter()
            .map(|w| ((format!("{:?}", w.series), w.window.start), w.accum))
            .collect();
        assert_eq!(got, want);
        want.len()
    }
}

/// Converts each request at its `now` both ways, then records its samples
/// into each pipeline's windows both ways; returns the samples and the
/// windows compared.
fn run(requests: &[(ExportMetricsServiceRequest, u64)]) -> (usize, usize) {
    let pipelines = pipelines();
    let refs: Vec<&PipelineInput> = pipelines.iter().collect();
    let mut windows: Vec<BothWays> = pipelines.iter().map(BothWays::new).collect();
    let mut samples = 0;
    let mut scratch = Vec::new();
    for (req, now) in requests {
        let out = converted(req, &refs, *now);
        for (pipeline, shards) in out.batches.into_iter().enumerate() {
            for mut batch in shards {
                samples += batch.len();
                batch.for_each_whole(&mut scratch, |point| windows[pipeline].record(point));
            }
        }
    }
    let windows = windows.into_iter().map(BothWays::assert_same).sum();
    (samples, windows)
}

/// The metrics of a request.
fn metrics(req: &mut ExportMetricsServiceRequest) -> impl Iterator<Item = &mut Metric> {
    req.resource_metrics
        .iter_mut()
        .flat_map(|r| &mut r.scope_metrics)
        .flat_map(|s| &mut s.metrics)
}

/// The start and time of every point of a request.
fn times(req: &mut ExportMetricsServiceRequest) -> Vec<(&mut u64, &mut u64)> {
    let mut out = Vec::new();
    for metric in metrics(req) {
        match &mut metric.data {
            Some(Data::Histogram(h)) => out.extend(
                (h.data_points.iter_mut())
                    .map(|p| (&mut p.start_time_unix_nano, &mut p.time_unix_nano)),
            ),
            Some(Data::ExponentialHistogram(h)) => out.extend(
                (h.data_points.iter_mut())
                    .map(|p| (&mut p.start_time_unix_nano, &mut p.time_unix_nano)),
            ),
            Some(Data::Sum(Sum { data_points, .. }) | Data::Gauge(Gauge { data_points })) => out
                .extend(
                    (data_points.iter_mut())
                        .map(|p| (&mut p.start_time_unix_nano, &mut p.time_unix_nano)),
                ),
            _ => {}
        }
    }
    out
}

/// The latest time of a request's points.
fn latest(req: &ExportMetricsServiceRequest) -> u64 {
    let mut req = req.clone();
    times(&mut req)
        .into_iter()
        .map(|(_, t)| *t)
        .max()
        .unwrap_or(0)
}

/// Sums and gauges: their values times `factor`.
fn scale_numbers(points: &mut [NumberDataPoint], factor: u64) {
    for p in points {
        match &mut p.value {
            Some(number_data_point::Value::AsInt(v)) => *v = v.saturating_mul(factor as i64),
            Some(number_data_point::Value::AsDouble(v)) => *v *= factor as f64,
            None => {}
        }
    }
}

/// A fixture sent again, `later` after its own time, its counts and values
/// times `factor` (fewer than before is a reset), from a new start when
/// `restart` (the process restarted), its exponential buckets one scale
/// coarser when `coarser` (as an SDK lowers a stream's scale). Most of the
/// fixtures' points are deltas, which leave the stream table out: with
/// `to_cumulative` every histogram and sum is made cumulative.
fn replayed(
    req: &ExportMetricsServiceRequest,
    later: u64,
    factor: u64,
    (restart, to_cumulative, coarser): (bool, bool, bool),
) -> ExportMetricsServiceRequest {
    let mut req = req.clone();
    for (start, time) in times(&mut req) {
        if *time != 0 {
            *time += later;
        }
        if restart && *start != 0 {
            *start += later;
        }
    }
    let by = |c: &mut u64| *c = c.saturating_mul(factor);
    let temporality = |t: &mut i32| {
        if to_cumulative {
            *t = 2;
        }
    };
    for metric in metrics(&mut req) {
        match &mut metric.data {
            Some(Data::Histogram(h)) => {
                temporality(&mut h.aggregation_temporality);
                for p in &mut h.data_points {
                    by(&mut p.count);
                    p.bucket_counts.iter_mut().for_each(by);
                    p.sum = p.sum.map(|s| s * factor as f64);
                }
            }
            Some(Data::ExponentialHistogram(h)) => {
                temporality(&mut h.aggregation_temporality);
                for p in &mut h.data_points {
                    by(&mut p.count);
                    by(&mut p.zero_count);
                    for b in [&mut p.positive, &mut p.negative].into_iter().flatten() {
                        b.bucket_counts.iter_mut().for_each(by);
                        if coarser {
                            *b = halved(b);
                        }
                    }
                    if coarser {
                        p.scale -= 1;
                    }
                    p.sum = p.sum.map(|s| s * factor as f64);
                }
            }
            Some(Data::Sum(s)) => {
                temporality(&mut s.aggregation_temporality);
                scale_numbers(&mut s.data_points, factor);
            }
            Some(Data::Gauge(g)) => scale_numbers(&mut g.data_points, factor),
            _ => {}
        }
    }
    req
}

/// Each fixture as it is, at its own time (its windows open): same
/// samples, rejections and windows both ways, and something to compare.
#[test]
fn the_fixtures_convert_and_aggregate_like_the_straightforward_path() {
    let requests: Vec<(ExportMetricsServiceRequest, u64)> = fixtures()
        .into_iter()
        .map(|req| {
            let now = latest(&req) + S;
            (req, now)
        })
        .collect();
    let (samples, windows) = run(&requests);
    assert!(samples >= 6, "{samples} samples");
    assert!(windows >= 3, "{windows} windows");
}

/// Exponential buckets one scale coarser: each pair of buckets in one.
fn halved(b: &Buckets) -> Buckets {
    let offset = b.offset >> 1;
    let mut bucket_counts = Vec::new();
    for (j, c) in b.bucket_counts.iter().enumerate() {
        let at = usize::try_from(((b.offset + j as i32) >> 1) - offset).expect("not below offset");
        if bucket_counts.len() <= at {
            bucket_counts.resize(at + 1, 0);
        }
        bucket_counts[at] += c;
    }
    Buckets {
        offset,
        bucket_counts,
    }
}

/// Generated resources (the wire reader's property test's) moved to
/// `time`: their points' times lie around it as they lay around the
/// generator's own.
fn generated_at(resource_metrics: Vec<ResourceMetrics>, time: u64) -> ExportMetricsServiceRequest {
    let mut req = ExportMetricsServiceRequest { resource_metrics };
    for (start, t) in times(&mut req) {
        for v in [start, t] {
            if *v != 0 {
                *v = (*v + time).saturating_sub(generated::NOW);
            }
        }
    }
    req
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The fixtures' points as later points of their cumulative streams,
    /// each request with generated points around them: same samples,
    /// rejections and windows both ways.
    #[test]
    fn replayed_fixtures_convert_and_aggregate_like_the_straightforward_path(
        steps in prop::collection::vec(
            (
                0usize..3,
                0u64..40,
                prop_oneof![1 => Just(0u64), 6 => 1u64..6],
                (
                    proptest::bool::weighted(0.15),
                    proptest::bool::weighted(0.8),
                    proptest::bool::weighted(0.3),
                ),
                prop::collection::vec(generated::resource_metrics(), 0..2),
            ),
            2..12,
        ),
    ) {
        let fixtures = fixtures();
        let requests: Vec<(ExportMetricsServiceRequest, u64)> = steps
            .into_iter()
            .map(|(fixture, later, factor, flags, generated)| {
                let mut req = replayed(&fixtures[fixture], later * 5 * S, factor, flags);
                let now = latest(&req) + S;
                req.resource_metrics
                    .extend(generated_at(generated, now).resource_metrics);
                (req, now)
            })
            .collect();
        run(&requests);
    }
}
