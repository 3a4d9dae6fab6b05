//! The metrics wire reader against the prost path on generated requests
//! (same samples, rejections, notes, in the same order), its refusals, and
//! what a request may hold.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric::Data, number_data_point::Value,
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use proptest::prelude::*;
use prost::Message;

use super::*;
use crate::config::{ContractSpec, Source};
use crate::receivers::otlp::budget::Budget;
use crate::receivers::otlp::convert_metrics as reference;
use crate::test_util::{contract, kv, pipeline_input};

const S: u64 = 1_000_000_000;
pub(crate) const NOW: u64 = 1_000_000 * S;

/// A contract reading metrics `latency` and `conversions`.
fn metrics_contract(latency: &str, conversions: &str) -> ContractSpec {
    ContractSpec {
        source: Source::Metrics,
        latency_metric: latency.into(),
        conversions_metric: conversions.into(),
        ..contract("svc-[01]")
    }
}

/// Two pipelines: one reads `lat` as latency and `conv` as conversions,
/// the other the other way round (so a metric is read in two roles), and
/// a spans contract that reads no metric.
fn pipelines() -> Vec<PipelineInput> {
    let senders = || (0..3).map(|_| tokio::sync::mpsc::channel(1).0).collect();
    let mut a = pipeline_input(metrics_contract("lat", "conv"), senders(), NOW);
    a.contracts.push(contract("svc-1"));
    let b = pipeline_input(metrics_contract("conv", "lat"), senders(), NOW);
    vec![a, b]
}

fn attr() -> impl Strategy<Value = KeyValue> {
    let value = prop_oneof![
        "[a-z0-9]{0,4}".prop_map(any_value::Value::StringValue),
        Just(any_value::Value::StringValue("503".into())),
        Just(any_value::Value::StringValue(String::new())),
        any::<bool>().prop_map(any_value::Value::BoolValue),
        prop_oneof![Just(200i64), Just(500), any::<i64>()].prop_map(any_value::Value::IntValue),
        prop_oneof![Just(502.0f64), any::<f64>()].prop_map(any_value::Value::DoubleValue),
    ];
    (
        prop_oneof![
            Just("http.response.status_code".to_string()),
            Just("http.status_code".to_string()),
            Just("error.type".to_string()),
            Just("http.route".to_string()),
            "[a-z]{1,3}",
        ],
        prop_oneof![value.prop_map(Some), Just(None)],
    )
        .prop_map(|(k, v)| match v {
            Some(v) => kv(&k, v),
            None => KeyValue {
                key: k,
                ..Default::default()
            },
        })
}

fn time() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(NOW - 5 * S),
        Just(NOW + 400 * S),
        Just(NOW - 80 * S),
        NOW - 2 * S..NOW + 2 * S,
    ]
}

fn maybe_f64() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        3 => Just(None),
        3 => (0.0f64..10.0).prop_map(Some),
        1 => Just(Some(-1.0)),
        1 => Just(Some(f64::NAN)),
    ]
}

fn explicit_point() -> impl Strategy<Value = HistogramDataPoint> {
    (
        proptest::collection::vec(attr(), 0..4),
        (time(), 0u64..3 * S, prop_oneof![Just(0u32), Just(1u32)]),
        prop_oneof![
            Just(vec![0.005, 0.01, 0.1, 1.0]),
            Just(vec![5.0, 10.0, 100.0, 1000.0]),
            Just(vec![]),
            Just(vec![1.0, 0.5]),
            proptest::collection::vec(0.0f64..10.0, 0..5),
        ],
        proptest::collection::vec(0u64..50, 0..6),
        (any::<bool>(), maybe_f64(), maybe_f64(), maybe_f64()),
    )
        .prop_map(
            |(
                attributes,
                (time, age, flags),
                explicit_bounds,
                bucket_counts,
                (honest, sum, min, max),
            )| {
                let total: u64 = bucket_counts.iter().sum();
                HistogramDataPoint {
                    attributes,
                    start_time_unix_nano: time.saturating_sub(age),
                    time_unix_nano: time,
                    count: if honest { total } else { total + 1 },
                    sum,
                    bucket_counts,
                    explicit_bounds,
                    flags,
                    min,
                    max,
                    ..Default::default()
                }
            },
        )
}

fn exponential_point() -> impl Strategy<Value = ExponentialHistogramDataPoint> {
    (
        proptest::collection::vec(attr(), 0..4),
        (time(), 0u64..3 * S, prop_oneof![Just(0u32), Just(1u32)]),
        (
            -3i32..6,
            -20i32..20,
            proptest::collection::vec(0u64..50, 0..8),
        ),
        (0u64..3, prop_oneof![Just(0.0), Just(1e-3), Just(-1.0)]),
        prop_oneof![
            Just(None),
            Just(Some(vec![0u64, 0])),
            Just(Some(vec![1u64]))
        ],
        (any::<bool>(), any::<bool>(), maybe_f64(), maybe_f64()),
    )
        .prop_map(
            |(
                attributes,
                (time, age, flags),
                (scale, offset, counts),
                (zero_count, zero_threshold),
                negative,
                (positive, honest, sum, max),
            )| {
                let total: u64 = counts.iter().sum::<u64>() + zero_count;
                ExponentialHistogramDataPoint {
                    attributes,
                    start_time_unix_nano: time.saturating_sub(age),
                    time_unix_nano: time,
                    count: if honest { total } else { total + 2 },
                    sum,
                    scale,
                    zero_count,
                    positive: positive.then_some(Buckets {
                        offset,
                        bucket_counts: counts,
                    }),
                    negative: negative.map(|bucket_counts| Buckets {
                        offset: 1,
                        bucket_counts,
                    }),
                    flags,
                    max,
                    zero_threshold,
                    ..Default::default()
                }
            },
        )
}

fn number_point() -> impl Strategy<Value = NumberDataPoint> {
    (
        proptest::collection::vec(attr(), 0..4),
        (time(), 0u64..3 * S, prop_oneof![Just(0u32), Just(1u32)]),
        prop_oneof![
            Just(None),
            (-5i64..100).prop_map(|v| Some(Value::AsInt(v))),
            prop_oneof![Just(-1.0f64), Just(f64::NAN), 0.0f64..100.0]
                .prop_map(|v| Some(Value::AsDouble(v))),
        ],
    )
        .prop_map(|(attributes, (time, age, flags), value)| NumberDataPoint {
            attributes,
            start_time_unix_nano: time.saturating_sub(age),
            time_unix_nano: time,
            flags,
            value,
            ..Default::default()
        })
}

fn data() -> impl Strategy<Value = Option<Data>> {
    prop_oneof![
        Just(None),
        (proptest::collection::vec(explicit_point(), 0..4), 0i32..3).prop_map(
            |(data_points, t)| Some(Data::Histogram(Histogram {
                data_points,
                aggregation_temporality: t,
            }))
        ),
        (
            proptest::collection::vec(exponential_point(), 0..4),
            0i32..3
        )
            .prop_map(|(data_points, t)| Some(Data::ExponentialHistogram(
                ExponentialHistogram {
                    data_points,
                    aggregation_temporality: t,
                }
            ))),
        (
            proptest::collection::vec(number_point(), 0..4),
            0i32..3,
            any::<bool>()
        )
            .prop_map(|(data_points, t, m)| Some(Data::Sum(Sum {
                data_points,
                aggregation_temporality: t,
                is_monotonic: m,
            }))),
        proptest::collection::vec(number_point(), 0..4)
            .prop_map(|data_points| Some(Data::Gauge(Gauge { data_points }))),
        (0usize..3).prop_map(|n| Some(Data::Summary(Summary {
            data_points: vec![SummaryDataPoint::default(); n],
        }))),
    ]
}

fn metric() -> impl Strategy<Value = Metric> {
    (
        prop_oneof![Just("lat"), Just("conv"), Just("other")],
        prop_oneof![Just("s"), Just("ms"), Just("us"), Just("By"), Just("")],
        data(),
    )
        .prop_map(|(name, unit, data)| Metric {
            name: name.into(),
            description: "d".into(),
            unit: unit.into(),
            data,
            ..Default::default()
        })
}

pub(crate) fn resource_metrics() -> impl Strategy<Value = ResourceMetrics> {
    (
        prop_oneof![
            Just(Some("svc-0")),
            Just(Some("svc-1")),
            Just(Some("svc-2")),
            Just(None)
        ],
        any::<bool>(),
        proptest::collection::vec(
            (
                prop_oneof![Just(None), Just(Some("lib")), Just(Some(""))],
                proptest::collection::vec(metric(), 0..4),
            ),
            0..3,
        ),
    )
        .prop_map(|(svc, resource, scopes)| ResourceMetrics {
            resource: resource.then(|| Resource {
                attributes: svc
                    .map(|s| kv("service.name", any_value::Value::StringValue(s.into())))
                    .into_iter()
                    .collect(),
                ..Default::default()
            }),
            scope_metrics: scopes
                .into_iter()
                .map(|(scope, metrics)| ScopeMetrics {
                    scope: scope.map(|name| InstrumentationScope {
                        name: name.into(),
                        attributes: vec![kv("a", any_value::Value::IntValue(1))],
                        ..Default::default()
                    }),
                    metrics,
                    schema_url: String::new(),
                })
                .collect(),
            schema_url: String::new(),
        })
}

fn wire(body: &[u8], pipelines: &[&PipelineInput]) -> Result<Converted<PointBatch>, IngestError> {
    let budget = Budget::new(1 << 40);
    convert_metrics(body, pipelines, NOW, &mut budget.charge("test"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Same samples (stream identities included), rejections, notes,
    /// culprits and blame, in the same order.
    #[test]
    fn the_wire_reader_converts_like_prost(
        resource_metrics in proptest::collection::vec(resource_metrics(), 0..3)
    ) {
        let req = ExportMetricsServiceRequest { resource_metrics };
        let pipelines = pipelines();
        let refs: Vec<&PipelineInput> = pipelines.iter().collect();
        let want = reference::convert_metrics(&req, &refs, NOW);
        let body = req.encode_to_vec();
        let got = wire(&body, &refs).expect("prost's encoding reads");
        prop_assert_eq!(format!("{got:?}"), format!("{want:?}"));
        prop_assert_eq!(got.items, got.accepted + got.ignored + got.rejected_count());
        // A request cut anywhere is refused (its outer length is wrong).
        if !body.is_empty() {
            prop_assert!(wire(&body[..body.len() - 1], &refs).is_err());
        }
    }
}

fn resource() -> Resource {
    Resource {
        attributes: vec![
            kv(
                "service.name",
                any_value::Value::StringValue("svc-0".into()),
            ),
            kv("service.version", any_value::Value::StringValue("1".into())),
        ],
        ..Default::default()
    }
}

fn histogram_request(points: Vec<HistogramDataPoint>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource()),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "lat".into(),
                    unit: "ms".into(),
                    data: Some(Data::Histogram(Histogram {
                        data_points: points,
                        aggregation_temporality: 2,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Packed and unpacked repeated fields, fields out of order and given
/// twice read as prost reads them.
#[test]
fn unpacked_reordered_and_repeated_fields_read_like_prost() {
    let pipelines = pipelines();
    let refs: Vec<&PipelineInput> = pipelines.iter().collect();
    // A HistogramDataPoint by hand: bounds unpacked (field 7, wire type 1),
    // counts packed in two pieces (field 6), count before the times, and
    // time given twice (the last wins).
    let mut point = Vec::new();
    let fixed = |point: &mut Vec<u8>, key: u8, v: u64| {
        point.push(key);
        point.extend(v.to_le_bytes());
    };
    fixed(&mut point, (4 << 3) | 1, 3);
    fixed(&mut point, (7 << 3) | 1, 10f64.to_bits());
    fixed(&mut point, (3 << 3) | 1, NOW - 3 * S);
    fixed(&mut point, (7 << 3) | 1, 100f64.to_bits());
    point.extend([(6 << 3) | 2, 16]);
    point.extend(1u64.to_le_bytes());
    point.extend(1u64.to_le_bytes());
    fixed(&mut point, (2 << 3) | 1, NOW - 10 * S);
    point.extend([(6 << 3) | 2, 8]);
    point.extend(1u64.to_le_bytes());
    fixed(&mut point, (3 << 3) | 1, NOW - S);
    let decoded = HistogramDataPoint::decode(point.as_slice()).expect("valid");
    assert_eq!(decoded.bucket_counts, [1, 1, 1]);
    assert_eq!(decoded.explicit_bounds, [10.0, 100.0]);
    assert_eq!(decoded.time_unix_nano, NOW - S);
    let req = histogram_request(vec![decoded.clone()]);
    // The same request around the hand-made point.
    let field = |n: u8, bytes: &[u8]| {
        let mut f = vec![(n << 3) | 2];
        prost::encoding::encode_varint(bytes.len() as u64, &mut f);
        f.extend_from_slice(bytes);
        f
    };
    let mut histogram = field(1, &point);
    histogram.extend([2 << 3, 2]);
    let mut metric = field(1, b"lat");
    metric.extend(field(3, b"ms"));
    metric.extend(field(9, &histogram));
    let mut resource_metrics = field(1, &resource().encode_to_vec());
    resource_metrics.extend(field(2, &field(2, &metric)));
    let body = field(1, &resource_metrics);
    assert_eq!(
        ExportMetricsServiceRequest::decode(body.as_slice()).expect("valid"),
        req
    );
    let want = reference::convert_metrics(&req, &refs, NOW);
    let got = wire(&body, &refs).expect("valid");
    assert_eq!(got.accepted, 1);
    assert_eq!(
        format!("{:?}", got.batches),
        format!("{:?}", want.batches),
        "same samples from another encoding of the same point"
    );
}

/// Malformed bytes where the reader reads are refused, as prost refuses
/// them.
#[test]
fn malformed_points_are_refused() {
    let pipelines = pipelines();
    let refs: Vec<&PipelineInput> = pipelines.iter().collect();
    let req = histogram_request(vec![HistogramDataPoint {
        count: 1,
        bucket_counts: vec![1],
        time_unix_nano: NOW,
        ..Default::default()
    }]);
    let mut body = req.encode_to_vec();
    // The packed counts' length (8) becomes 7: the point's own length
    // stays, so the counts end inside a field.
    let at = body
        .windows(2)
        .position(|w| w == [(6 << 3) | 2, 8])
        .expect("packed counts");
    body[at + 1] = 7;
    assert!(ExportMetricsServiceRequest::decode(body.as_slice()).is_err());
    assert!(matches!(wire(&body, &refs), Err(IngestError::Malformed(_))));
}

/// What a request holds is charged as it is made: a request whose samples
/// outgrow the budget is refused while it is read, and the charge
/// covers what was made up to then.
#[test]
fn samples_are_charged_as_they_are_made() {
    let pipelines = pipelines();
    let refs: Vec<&PipelineInput> = pipelines.iter().collect();
    let point = HistogramDataPoint {
        count: 2,
        bucket_counts: vec![1, 1, 0, 0, 0],
        explicit_bounds: vec![1.0, 2.0, 3.0, 4.0],
        time_unix_nano: NOW,
        ..Default::default()
    };
    let req = histogram_request(vec![point; 2000]);
    let body = req.encode_to_vec();
    let budget = Budget::new(1 << 30);
    let mut charge = budget.charge("test");
    let out = convert_metrics(&body, &refs, NOW, &mut charge).expect("fits");
    let held: usize = out
        .batches
        .iter()
        .flatten()
        .map(crate::model::HeldBytes::held_bytes)
        .sum();
    assert_eq!(out.accepted, 2000, "{:?}", out.message("points"));
    assert!(charge.bytes() >= held, "{} < {held}", charge.bytes());
    // With 64 KiB of budget, the same request is refused, retryably,
    // having held no more than that.
    let small = Budget::new(64 * 1024);
    let mut charge = small.charge("test");
    let err = convert_metrics(&body, &refs, NOW, &mut charge).expect_err("too big");
    assert!(matches!(err, IngestError::Memory(_)), "{err:?}");
    assert!(charge.bytes() <= 64 * 1024);
}

/// Metrics no contract reads are not decoded: their points are counted
/// (and ignored) even when their insides are not valid points, which
/// prost refuses.
#[test]
fn unread_metrics_are_counted_not_decoded() {
    let pipelines = pipelines();
    let refs: Vec<&PipelineInput> = pipelines.iter().collect();
    let flagged = HistogramDataPoint {
        flags: 1,
        ..Default::default()
    };
    let mut req = histogram_request(vec![flagged.clone(); 3]);
    req.resource_metrics[0].scope_metrics[0].metrics[0].name = "other".into();
    let mut body = req.encode_to_vec();
    // Each point is `flags = 1`; its varint is made to run past the
    // point's end.
    let point = [(1 << 3) | 2, 2, 10 << 3, 1];
    let mut n = 0;
    while let Some(at) = body.windows(4).position(|w| w == point) {
        body[at + 3] = 0x81;
        n += 1;
    }
    assert_eq!(n, 3);
    assert!(ExportMetricsServiceRequest::decode(body.as_slice()).is_err());
    let out = wire(&body, &refs).expect("reads");
    assert_eq!((out.items, out.ignored), (3, 3));
    // Read by a contract, the same points are refused.
    let mut body = histogram_request(vec![flagged; 3]).encode_to_vec();
    while let Some(at) = body.windows(4).position(|w| w == point) {
        body[at + 3] = 0x81;
    }
    assert!(matches!(wire(&body, &refs), Err(IngestError::Malformed(_))));
}

/// Packed counts as the prost path reads them: one varint after the other.
fn varints_one_at_a_time(bytes: &[u8], kept: usize) -> Result<(Vec<u64>, usize, bool), WireError> {
    let mut r = Reader::new(bytes);
    let mut out = vec![0; kept];
    let (mut n, mut any) = (0, false);
    while !r.is_empty() {
        let v = r.varint()?;
        if out.len() <= MAX_POINT_BUCKETS {
            out.push(v);
        }
        n += 1;
        any |= v != 0;
    }
    Ok((out, n, any))
}

/// Counts of one byte and of many, zeros among them, or bytes cut anywhere.
fn packed_counts() -> impl Strategy<Value = Vec<u8>> {
    let count = prop_oneof![
        4 => 0u64..128,
        2 => 128u64..20_000,
        1 => any::<u64>(),
    ];
    (
        proptest::collection::vec(count, 0..300),
        any::<bool>(),
        any::<usize>(),
    )
        .prop_map(|(counts, cut, at)| {
            let mut bytes = Vec::new();
            for c in counts {
                prost::encoding::encode_varint(c, &mut bytes);
            }
            if cut && !bytes.is_empty() {
                // A truncated last varint, or one made too long.
                bytes.truncate(at % bytes.len());
                if at % 2 == 0 {
                    bytes.push(0x80);
                } else {
                    bytes.extend([0xff; 11]);
                }
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Reading runs of one-byte counts at once gives the counts, their
    /// number, whether any is not 0, what is kept near the bucket limit
    /// and the error of a malformed varint exactly as one at a time.
    #[test]
    fn packed_counts_read_like_one_at_a_time(
        bytes in packed_counts(),
        kept in prop_oneof![Just(0usize), Just(MAX_POINT_BUCKETS - 100), Just(MAX_POINT_BUCKETS + 1)],
    ) {
        let mut r = Reader::new(&bytes);
        let mut out = vec![0; kept];
        let fast = packed_into(&mut r, &mut out).map(|(n, any)| (out, n, any));
        prop_assert_eq!(fast, varints_one_at_a_time(&bytes, kept));
    }
}
