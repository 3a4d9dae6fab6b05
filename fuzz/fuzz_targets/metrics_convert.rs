//! Metric points into windows, structured: `arbitrary` builds metrics
//! requests out of the values that break arithmetic (subnormal and huge
//! bounds, sums near `f64::MAX`, NaN and infinities, counts near 2^53 and
//! 2^64, zero-width buckets, scales at and past the limits, cumulative
//! streams that reset, go back in time or change their layout), and each
//! request is checked from conversion to stored windows:
//!
//! - every point is accepted, ignored or rejected exactly once (also when
//!   two contracts read one metric in two roles), and a rejected point
//!   makes no sample;
//! - points handed to shards are consistent: finite non-negative sums and
//!   extremes, counts within the limit that their buckets add up to;
//! - cumulative → delta never wraps or goes negative, and windows count
//!   exactly what the streams let through; bucket spreading keeps every
//!   count; sketch totals equal the windows' requests; no non-finite sum
//!   is stored, and every window reads back from its stored form
//!   (`verdict_fuzz::check_windows`).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point, metric, number_data_point, ExponentialHistogram,
    ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use verdict_fuzz::{check_metrics_request, NOW};

const S: u64 = 1_000_000_000;

/// A double, mostly from the values that break arithmetic.
#[derive(Debug, Clone, Copy, Arbitrary)]
enum F {
    Zero,
    Small(u8),
    Tenths(u16),
    Huge,
    Max,
    Subnormal(u8),
    MinPositive,
    Inf,
    NegInf,
    Nan,
    Neg(u8),
    Bits(u64),
}

impl F {
    fn get(self) -> f64 {
        match self {
            F::Zero => 0.0,
            F::Small(v) => f64::from(v),
            F::Tenths(v) => f64::from(v) / 10.0,
            F::Huge => 1e308,
            F::Max => f64::MAX,
            F::Subnormal(k) => f64::from_bits(u64::from(k) + 1),
            F::MinPositive => f64::MIN_POSITIVE,
            F::Inf => f64::INFINITY,
            F::NegInf => f64::NEG_INFINITY,
            F::Nan => f64::NAN,
            F::Neg(v) => -f64::from(v) - 1.0,
            F::Bits(b) => f64::from_bits(b),
        }
    }
}

/// A count, mostly small, sometimes at the limits.
#[derive(Debug, Clone, Copy, Arbitrary)]
enum C {
    Small(u8),
    Limit,
    OverLimit,
    Max,
    Any(u64),
}

impl C {
    fn get(self) -> u64 {
        match self {
            C::Small(v) => u64::from(v),
            C::Limit => 1 << 53,
            C::OverLimit => (1 << 53) + 1,
            C::Max => u64::MAX,
            C::Any(v) => v,
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Value {
    Explicit {
        bounds: Vec<F>,
        counts: Vec<C>,
    },
    Exponential {
        scale: i8,
        offset: i16,
        counts: Vec<C>,
        zero_count: C,
        zero_threshold: F,
        negative: Vec<C>,
    },
    Int(i64),
    Double(F),
}

#[derive(Debug, Arbitrary)]
struct Point {
    /// Which of four attribute sets (streams).
    stream: u8,
    value: Value,
    /// The count as sent; `None` for the sum of the buckets.
    count: Option<C>,
    sum: Option<F>,
    min: Option<F>,
    max: Option<F>,
    /// Seconds before `NOW` (start) and around it (time), 0 = unset.
    start_ago: u16,
    time_ago: i16,
    flags: u8,
}

#[derive(Debug, Arbitrary)]
struct M {
    /// Which name: the default latency histogram, the default
    /// conversions counter, the crossed contract's latency name, another.
    name: u8,
    /// `s`, `ms`, `us`, `1`, ``.
    unit: u8,
    /// Gauge, sum (monotonic or not), histogram, exponential histogram.
    shape: u8,
    temporality: u8,
    points: Vec<Point>,
}

#[derive(Debug, Arbitrary)]
struct Input {
    /// Resources of one request: service (`svc-0..2`), version (some
    /// missing, so some subjects are) and metrics. Resources of the same
    /// service and metrics of the same name and attributes make one
    /// stream, whose points follow one another through the shard.
    resources: Vec<(u8, u8, Vec<M>)>,
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn times(p: &Point) -> (u64, u64) {
    let start = if p.start_ago == 0 {
        0
    } else {
        NOW - u64::from(p.start_ago) * S
    };
    let time = if p.time_ago == 0 {
        0
    } else {
        NOW.saturating_add_signed(-i64::from(p.time_ago) * S as i64)
    };
    (start, time)
}

fn attrs(p: &Point) -> Vec<KeyValue> {
    match p.stream % 4 {
        0 => vec![],
        1 => vec![kv("http.response.status_code", "503")],
        2 => vec![kv("error.type", "timeout")],
        _ => vec![kv("route", "/a")],
    }
}

fn counts(v: &[C]) -> Vec<u64> {
    v.iter().map(|c| c.get()).collect()
}

fn histogram_point(p: &Point) -> HistogramDataPoint {
    let (start, time) = times(p);
    let (bounds, bucket_counts) = match &p.value {
        Value::Explicit { bounds, counts: c } => {
            (bounds.iter().map(|b| b.get()).collect(), counts(c))
        }
        _ => (vec![], vec![]),
    };
    let total = bucket_counts.iter().fold(0u64, |t, c| t.wrapping_add(*c));
    HistogramDataPoint {
        attributes: attrs(p),
        start_time_unix_nano: start,
        time_unix_nano: time,
        count: p.count.map_or(total, C::get),
        sum: p.sum.map(F::get),
        bucket_counts,
        explicit_bounds: bounds,
        flags: u32::from(p.flags & 1),
        min: p.min.map(F::get),
        max: p.max.map(F::get),
        ..Default::default()
    }
}

fn exponential_point(p: &Point) -> ExponentialHistogramDataPoint {
    let (start, time) = times(p);
    let mut dp = ExponentialHistogramDataPoint {
        attributes: attrs(p),
        start_time_unix_nano: start,
        time_unix_nano: time,
        sum: p.sum.map(F::get),
        flags: u32::from(p.flags & 1),
        min: p.min.map(F::get),
        max: p.max.map(F::get),
        ..Default::default()
    };
    if let Value::Exponential {
        scale,
        offset,
        counts: c,
        zero_count,
        zero_threshold,
        negative,
    } = &p.value
    {
        dp.scale = i32::from(*scale);
        dp.zero_count = zero_count.get();
        dp.zero_threshold = zero_threshold.get();
        dp.positive = Some(exponential_histogram_data_point::Buckets {
            offset: i32::from(*offset),
            bucket_counts: counts(c),
        });
        if !negative.is_empty() {
            dp.negative = Some(exponential_histogram_data_point::Buckets {
                offset: 0,
                bucket_counts: counts(negative),
            });
        }
    }
    let total = dp
        .positive
        .iter()
        .flat_map(|b| &b.bucket_counts)
        .fold(dp.zero_count, |t, c| t.wrapping_add(*c));
    dp.count = p.count.map_or(total, C::get);
    dp
}

fn number_point(p: &Point) -> NumberDataPoint {
    let (start, time) = times(p);
    NumberDataPoint {
        attributes: attrs(p),
        start_time_unix_nano: start,
        time_unix_nano: time,
        flags: u32::from(p.flags & 1),
        value: match &p.value {
            Value::Int(i) => Some(number_data_point::Value::AsInt(*i)),
            Value::Double(d) => Some(number_data_point::Value::AsDouble(d.get())),
            _ => p
                .count
                .map(|c| number_data_point::Value::AsInt(c.get() as i64)),
        },
        ..Default::default()
    }
}

fn metric(m: &M) -> Metric {
    let name = match m.name % 4 {
        0 => "http.server.request.duration",
        1 => "validation.conversions",
        2 => "latency",
        _ => "other",
    };
    let unit = ["s", "ms", "us", "1", ""][usize::from(m.unit % 5)];
    let temporality = i32::from(m.temporality % 4);
    let data = match m.shape % 5 {
        0 => metric::Data::Gauge(Gauge {
            data_points: m.points.iter().map(number_point).collect(),
        }),
        s @ (1 | 2) => metric::Data::Sum(Sum {
            data_points: m.points.iter().map(number_point).collect(),
            aggregation_temporality: temporality,
            is_monotonic: s == 1,
        }),
        3 => metric::Data::Histogram(Histogram {
            data_points: m.points.iter().map(histogram_point).collect(),
            aggregation_temporality: temporality,
        }),
        _ => metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: m.points.iter().map(exponential_point).collect(),
            aggregation_temporality: temporality,
        }),
    };
    Metric {
        name: name.into(),
        unit: unit.into(),
        data: Some(data),
        ..Default::default()
    }
}

fuzz_target!(|input: Input| {
    let resource_metrics = input
        .resources
        .iter()
        .map(|(service, version, metrics)| {
            let mut attributes = vec![kv("service.name", &format!("svc-{}", service % 3))];
            if version % 4 != 0 {
                attributes.push(kv("service.version", &format!("{}", version % 4)));
            }
            if version % 2 == 0 {
                attributes.push(kv("host", "h1"));
            }
            ResourceMetrics {
                resource: Some(Resource {
                    attributes,
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: metrics.iter().map(metric).collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect();
    check_metrics_request(&ExportMetricsServiceRequest { resource_metrics });
});
