//! `ExportMetricsServiceRequest` and the metric and data point messages.

use super::*;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for ExportMetricsServiceRequest")]
pub(super) struct RawMetricsRequest {
    pub(super) resource_metrics: Option<Vec<Obj<RawResourceMetrics>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for ResourceMetrics")]
pub(super) struct RawResourceMetrics {
    resource: Option<Obj<RawResource>>,
    scope_metrics: Option<Vec<Obj<RawScopeMetrics>>>,
    schema_url: Option<String>,
}

impl From<RawResourceMetrics> for ResourceMetrics {
    fn from(r: RawResourceMetrics) -> Self {
        ResourceMetrics {
            resource: msg(r.resource),
            scope_metrics: list(r.scope_metrics),
            schema_url: r.schema_url.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for ScopeMetrics")]
pub(super) struct RawScopeMetrics {
    scope: Option<Obj<RawScope>>,
    metrics: Option<Vec<Obj<JsonMetric>>>,
    schema_url: Option<String>,
}

impl From<RawScopeMetrics> for ScopeMetrics {
    fn from(r: RawScopeMetrics) -> Self {
        ScopeMetrics {
            scope: msg(r.scope),
            metrics: list(r.metrics),
            schema_url: r.schema_url.unwrap_or_default(),
        }
    }
}

/// A `Metric`, validated (at most one data kind) while deserializing.
#[derive(Deserialize)]
#[serde(try_from = "MetricFields")]
pub(super) struct JsonMetric(pub(super) Metric);

impl From<JsonMetric> for Metric {
    fn from(m: JsonMetric) -> Self {
        m.0
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for Metric")]
pub(super) struct MetricFields {
    name: Option<String>,
    description: Option<String>,
    unit: Option<String>,
    metadata: Option<Vec<Obj<RawKeyValue>>>,
    gauge: Option<Obj<RawGauge>>,
    sum: Option<Obj<RawSum>>,
    histogram: Option<Obj<RawHistogram>>,
    exponential_histogram: Option<Obj<RawExponentialHistogram>>,
    summary: Option<Obj<RawSummary>>,
}

impl TryFrom<MetricFields> for JsonMetric {
    type Error = String;

    fn try_from(f: MetricFields) -> Result<Self, String> {
        use metric::Data;
        let candidates = [
            ("gauge", f.gauge.map(|g| Data::Gauge(g.0.into()))),
            ("sum", f.sum.map(|s| Data::Sum(s.0.into()))),
            (
                "histogram",
                f.histogram.map(|h| Data::Histogram(h.0.into())),
            ),
            (
                "exponentialHistogram",
                f.exponential_histogram
                    .map(|h| Data::ExponentialHistogram(h.0.into())),
            ),
            ("summary", f.summary.map(|s| Data::Summary(s.0.into()))),
        ];
        let data = single_oneof("Metric", candidates)?;
        Ok(JsonMetric(Metric {
            name: f.name.unwrap_or_default(),
            description: f.description.unwrap_or_default(),
            unit: f.unit.unwrap_or_default(),
            metadata: list(f.metadata),
            data,
        }))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for Gauge")]
pub(super) struct RawGauge {
    data_points: Option<Vec<Obj<JsonNumberDataPoint>>>,
}

impl From<RawGauge> for Gauge {
    fn from(r: RawGauge) -> Self {
        Gauge {
            data_points: list(r.data_points),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for Sum")]
pub(super) struct RawSum {
    data_points: Option<Vec<Obj<JsonNumberDataPoint>>>,
    aggregation_temporality: Option<Named<AggregationTemporality, i32>>,
    is_monotonic: Option<bool>,
}

impl From<RawSum> for Sum {
    fn from(r: RawSum) -> Self {
        Sum {
            data_points: list(r.data_points),
            aggregation_temporality: val(r.aggregation_temporality),
            is_monotonic: r.is_monotonic.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for Histogram")]
pub(super) struct RawHistogram {
    data_points: Option<Vec<Obj<RawHistogramDataPoint>>>,
    aggregation_temporality: Option<Named<AggregationTemporality, i32>>,
}

impl From<RawHistogram> for Histogram {
    fn from(r: RawHistogram) -> Self {
        Histogram {
            data_points: list(r.data_points),
            aggregation_temporality: val(r.aggregation_temporality),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for ExponentialHistogram")]
pub(super) struct RawExponentialHistogram {
    data_points: Option<Vec<Obj<RawExponentialHistogramDataPoint>>>,
    aggregation_temporality: Option<Named<AggregationTemporality, i32>>,
}

impl From<RawExponentialHistogram> for ExponentialHistogram {
    fn from(r: RawExponentialHistogram) -> Self {
        ExponentialHistogram {
            data_points: list(r.data_points),
            aggregation_temporality: val(r.aggregation_temporality),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for Summary")]
pub(super) struct RawSummary {
    data_points: Option<Vec<Obj<RawSummaryDataPoint>>>,
}

impl From<RawSummary> for Summary {
    fn from(r: RawSummary) -> Self {
        Summary {
            data_points: list(r.data_points),
        }
    }
}

/// A `NumberDataPoint`, validated (at most one of `asDouble`/`asInt`).
#[derive(Deserialize)]
#[serde(try_from = "NumberDataPointFields")]
pub(super) struct JsonNumberDataPoint(pub(super) NumberDataPoint);

impl From<JsonNumberDataPoint> for NumberDataPoint {
    fn from(p: JsonNumberDataPoint) -> Self {
        p.0
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for NumberDataPoint")]
pub(super) struct NumberDataPointFields {
    attributes: Option<Vec<Obj<RawKeyValue>>>,
    start_time_unix_nano: Option<Int<u64>>,
    time_unix_nano: Option<Int<u64>>,
    as_double: Option<F64>,
    as_int: Option<Int<i64>>,
    exemplars: Option<Vec<Obj<JsonExemplar>>>,
    flags: Option<Named<DataPointFlags, u32>>,
}

impl TryFrom<NumberDataPointFields> for JsonNumberDataPoint {
    type Error = String;

    fn try_from(f: NumberDataPointFields) -> Result<Self, String> {
        use number_data_point::Value;
        let value = single_oneof(
            "NumberDataPoint",
            [
                ("asDouble", f.as_double.map(|v| Value::AsDouble(v.0))),
                ("asInt", f.as_int.map(|v| Value::AsInt(v.0))),
            ],
        )?;
        Ok(JsonNumberDataPoint(NumberDataPoint {
            attributes: list(f.attributes),
            start_time_unix_nano: val(f.start_time_unix_nano),
            time_unix_nano: val(f.time_unix_nano),
            exemplars: list(f.exemplars),
            flags: val(f.flags),
            value,
        }))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for HistogramDataPoint")]
pub(super) struct RawHistogramDataPoint {
    attributes: Option<Vec<Obj<RawKeyValue>>>,
    start_time_unix_nano: Option<Int<u64>>,
    time_unix_nano: Option<Int<u64>>,
    count: Option<Int<u64>>,
    sum: Option<F64>,
    bucket_counts: Option<Vec<Int<u64>>>,
    explicit_bounds: Option<Vec<F64>>,
    exemplars: Option<Vec<Obj<JsonExemplar>>>,
    flags: Option<Named<DataPointFlags, u32>>,
    min: Option<F64>,
    max: Option<F64>,
}

impl From<RawHistogramDataPoint> for HistogramDataPoint {
    fn from(r: RawHistogramDataPoint) -> Self {
        HistogramDataPoint {
            attributes: list(r.attributes),
            start_time_unix_nano: val(r.start_time_unix_nano),
            time_unix_nano: val(r.time_unix_nano),
            count: val(r.count),
            sum: opt(r.sum),
            bucket_counts: vals(r.bucket_counts),
            explicit_bounds: vals(r.explicit_bounds),
            exemplars: list(r.exemplars),
            flags: val(r.flags),
            min: opt(r.min),
            max: opt(r.max),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for ExponentialHistogramDataPoint")]
pub(super) struct RawExponentialHistogramDataPoint {
    attributes: Option<Vec<Obj<RawKeyValue>>>,
    start_time_unix_nano: Option<Int<u64>>,
    time_unix_nano: Option<Int<u64>>,
    count: Option<Int<u64>>,
    sum: Option<F64>,
    scale: Option<Int<i32>>,
    zero_count: Option<Int<u64>>,
    positive: Option<Obj<RawBuckets>>,
    negative: Option<Obj<RawBuckets>>,
    flags: Option<Named<DataPointFlags, u32>>,
    exemplars: Option<Vec<Obj<JsonExemplar>>>,
    min: Option<F64>,
    max: Option<F64>,
    zero_threshold: Option<F64>,
}

impl From<RawExponentialHistogramDataPoint> for ExponentialHistogramDataPoint {
    fn from(r: RawExponentialHistogramDataPoint) -> Self {
        ExponentialHistogramDataPoint {
            attributes: list(r.attributes),
            start_time_unix_nano: val(r.start_time_unix_nano),
            time_unix_nano: val(r.time_unix_nano),
            count: val(r.count),
            sum: opt(r.sum),
            scale: val(r.scale),
            zero_count: val(r.zero_count),
            positive: msg(r.positive),
            negative: msg(r.negative),
            flags: val(r.flags),
            exemplars: list(r.exemplars),
            min: opt(r.min),
            max: opt(r.max),
            zero_threshold: val(r.zero_threshold),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for Buckets")]
pub(super) struct RawBuckets {
    offset: Option<Int<i32>>,
    bucket_counts: Option<Vec<Int<u64>>>,
}

impl From<RawBuckets> for exponential_histogram_data_point::Buckets {
    fn from(r: RawBuckets) -> Self {
        exponential_histogram_data_point::Buckets {
            offset: val(r.offset),
            bucket_counts: vals(r.bucket_counts),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for SummaryDataPoint")]
pub(super) struct RawSummaryDataPoint {
    attributes: Option<Vec<Obj<RawKeyValue>>>,
    start_time_unix_nano: Option<Int<u64>>,
    time_unix_nano: Option<Int<u64>>,
    count: Option<Int<u64>>,
    sum: Option<F64>,
    quantile_values: Option<Vec<Obj<RawValueAtQuantile>>>,
    flags: Option<Named<DataPointFlags, u32>>,
}

impl From<RawSummaryDataPoint> for SummaryDataPoint {
    fn from(r: RawSummaryDataPoint) -> Self {
        SummaryDataPoint {
            attributes: list(r.attributes),
            start_time_unix_nano: val(r.start_time_unix_nano),
            time_unix_nano: val(r.time_unix_nano),
            count: val(r.count),
            sum: val(r.sum),
            quantile_values: list(r.quantile_values),
            flags: val(r.flags),
        }
    }
}

#[derive(Deserialize)]
#[serde(expecting = "a JSON object for ValueAtQuantile")]
pub(super) struct RawValueAtQuantile {
    quantile: Option<F64>,
    value: Option<F64>,
}

impl From<RawValueAtQuantile> for summary_data_point::ValueAtQuantile {
    fn from(r: RawValueAtQuantile) -> Self {
        summary_data_point::ValueAtQuantile {
            quantile: val(r.quantile),
            value: val(r.value),
        }
    }
}

/// An `Exemplar`, validated (at most one of `asDouble`/`asInt`).
#[derive(Deserialize)]
#[serde(try_from = "ExemplarFields")]
pub(super) struct JsonExemplar(pub(super) Exemplar);

impl From<JsonExemplar> for Exemplar {
    fn from(e: JsonExemplar) -> Self {
        e.0
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for Exemplar")]
pub(super) struct ExemplarFields {
    filtered_attributes: Option<Vec<Obj<RawKeyValue>>>,
    time_unix_nano: Option<Int<u64>>,
    as_double: Option<F64>,
    as_int: Option<Int<i64>>,
    span_id: Option<SpanId>,
    trace_id: Option<TraceId>,
}

impl TryFrom<ExemplarFields> for JsonExemplar {
    type Error = String;

    fn try_from(f: ExemplarFields) -> Result<Self, String> {
        use exemplar::Value;
        let value = single_oneof(
            "Exemplar",
            [
                ("asDouble", f.as_double.map(|v| Value::AsDouble(v.0))),
                ("asInt", f.as_int.map(|v| Value::AsInt(v.0))),
            ],
        )?;
        Ok(JsonExemplar(Exemplar {
            filtered_attributes: list(f.filtered_attributes),
            time_unix_nano: val(f.time_unix_nano),
            span_id: val(f.span_id),
            trace_id: val(f.trace_id),
            value,
        }))
    }
}
