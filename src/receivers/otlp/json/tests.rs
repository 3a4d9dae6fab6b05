//! Tests for the OTLP/JSON decoder (`json.rs`).
//!
//! Fixtures live in `tests/fixtures/otlp-json/`: `trace.json`, `metrics.json`
//! and `logs.json` are the upstream OTLP examples (copied unchanged);
//! `exponential_histogram.json` is ours.

use super::*;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
use prost::Message;

const TRACE_JSON: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/otlp-json/trace.json"
));
const METRICS_JSON: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/otlp-json/metrics.json"
));
const LOGS_JSON: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/otlp-json/logs.json"
));
const EXP_HISTOGRAM_JSON: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/otlp-json/exponential_histogram.json"
));

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

fn hex_bytes(s: &str) -> Vec<u8> {
    hex::decode(s).expect("test hex")
}

fn str_value(s: &str) -> Option<Value> {
    Some(Value::StringValue(s.to_owned()))
}

/// The variant of attribute `key`; panics if missing.
fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> &'a Option<Value> {
    let kv = attrs
        .iter()
        .find(|kv| kv.key == key)
        .unwrap_or_else(|| panic!("attribute {key} missing"));
    &kv.value.as_ref().expect("attribute has a value").value
}

fn traces(json: &str) -> ExportTraceServiceRequest {
    decode_traces(json.as_bytes()).unwrap_or_else(|e| panic!("decode_traces: {e}"))
}

fn metrics(json: &str) -> ExportMetricsServiceRequest {
    decode_metrics(json.as_bytes()).unwrap_or_else(|e| panic!("decode_metrics: {e}"))
}

fn logs(json: &str) -> ExportLogsServiceRequest {
    decode_logs(json.as_bytes()).unwrap_or_else(|e| panic!("decode_logs: {e}"))
}

fn trace_err(json: &str) -> JsonDecodeError {
    match decode_traces(json.as_bytes()) {
        Ok(req) => panic!("expected an error, decoded {req:?}"),
        Err(e) => e,
    }
}

fn metrics_err(json: &str) -> JsonDecodeError {
    match decode_metrics(json.as_bytes()) {
        Ok(req) => panic!("expected an error, decoded {req:?}"),
        Err(e) => e,
    }
}

/// Wraps one span object in a minimal traces request.
fn one_span(span: &str) -> String {
    format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{span}]}}]}}]}}"#)
}

fn only_span(req: &ExportTraceServiceRequest) -> &Span {
    &req.resource_spans[0].scope_spans[0].spans[0]
}

/// Wraps one metric object in a minimal metrics request.
fn one_metric(metric: &str) -> String {
    format!(r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{metric}]}}]}}]}}"#)
}

fn only_metric(req: &ExportMetricsServiceRequest) -> &Metric {
    &req.resource_metrics[0].scope_metrics[0].metrics[0]
}

/// A gauge with one data point whose body is `point`.
fn gauge_point(point: &str) -> NumberDataPoint {
    let req = metrics(&one_metric(&format!(
        r#"{{"name":"g","gauge":{{"dataPoints":[{point}]}}}}"#
    )));
    match &only_metric(&req).data {
        Some(metric::Data::Gauge(g)) => g.data_points[0].clone(),
        other => panic!("expected a gauge, got {other:?}"),
    }
}

/// Decodes `{"key":"k","value":<value>}` as a span attribute value.
fn any_value(value: &str) -> Option<AnyValue> {
    let req = traces(&one_span(&format!(
        r#"{{"attributes":[{{"key":"k","value":{value}}}]}}"#
    )));
    only_span(&req).attributes[0].value.clone()
}

// ---------------------------------------------------------------------------
// upstream fixtures: exact field values
// ---------------------------------------------------------------------------

#[test]
fn trace_fixture_field_values() {
    let req = traces(TRACE_JSON);
    assert_eq!(req.resource_spans.len(), 1);
    let rs = &req.resource_spans[0];
    assert_eq!(rs.schema_url, "");
    let resource = rs.resource.as_ref().expect("resource");
    assert_eq!(resource.attributes.len(), 1);
    assert_eq!(
        attr(&resource.attributes, "service.name"),
        &str_value("my.service")
    );
    assert_eq!(resource.dropped_attributes_count, 0);

    assert_eq!(rs.scope_spans.len(), 1);
    let ss = &rs.scope_spans[0];
    let scope = ss.scope.as_ref().expect("scope");
    assert_eq!(scope.name, "my.library");
    assert_eq!(scope.version, "1.0.0");
    assert_eq!(
        attr(&scope.attributes, "my.scope.attribute"),
        &str_value("some scope attribute")
    );

    assert_eq!(ss.spans.len(), 1);
    let span = &ss.spans[0];
    assert_eq!(
        span.trace_id,
        vec![
            0x5B, 0x8E, 0xFF, 0xF7, 0x98, 0x03, 0x81, 0x03, 0xD2, 0x69, 0xB6, 0x33, 0x81, 0x3F,
            0xC6, 0x0C
        ]
    );
    assert_eq!(
        span.span_id,
        vec![0xEE, 0xE1, 0x9B, 0x7E, 0xC3, 0xC1, 0xB1, 0x74]
    );
    assert_eq!(
        span.parent_span_id,
        vec![0xEE, 0xE1, 0x9B, 0x7E, 0xC3, 0xC1, 0xB1, 0x73]
    );
    assert_eq!(span.name, "I'm a server span");
    assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
    assert_eq!(span.kind, span::SpanKind::Server as i32);
    assert_eq!(span.attributes.len(), 1);
    assert_eq!(
        attr(&span.attributes, "my.span.attr"),
        &str_value("some value")
    );
    // Absent fields are proto defaults.
    assert_eq!(span.trace_state, "");
    assert_eq!(span.flags, 0);
    assert!(span.events.is_empty());
    assert!(span.links.is_empty());
    assert_eq!(span.status, None);
}

#[test]
fn metrics_fixture_field_values() {
    let req = metrics(METRICS_JSON);
    assert_eq!(req.resource_metrics.len(), 1);
    let rm = &req.resource_metrics[0];
    assert_eq!(
        attr(
            &rm.resource.as_ref().expect("resource").attributes,
            "service.name"
        ),
        &str_value("my.service")
    );
    let sm = &rm.scope_metrics[0];
    let scope = sm.scope.as_ref().expect("scope");
    assert_eq!(scope.name, "my.library");
    assert_eq!(scope.version, "1.0.0");
    assert_eq!(
        attr(&scope.attributes, "my.scope.attribute"),
        &str_value("some scope attribute")
    );
    // The upstream example has no summary metric; summaries are covered by
    // `summary_and_exemplars_every_field` below.
    assert_eq!(sm.metrics.len(), 4);
    const T: u64 = 1_544_712_660_300_000_000;

    // my.counter: Sum
    let m = &sm.metrics[0];
    assert_eq!(
        (m.name.as_str(), m.unit.as_str(), m.description.as_str()),
        ("my.counter", "1", "I am a Counter")
    );
    let Some(metric::Data::Sum(sum)) = &m.data else {
        panic!("my.counter is not a sum: {:?}", m.data)
    };
    assert_eq!(
        sum.aggregation_temporality,
        AggregationTemporality::Delta as i32
    );
    assert!(sum.is_monotonic);
    assert_eq!(sum.data_points.len(), 1);
    let dp = &sum.data_points[0];
    assert_eq!(dp.value, Some(number_data_point::Value::AsDouble(5.0)));
    assert_eq!(dp.start_time_unix_nano, T);
    assert_eq!(dp.time_unix_nano, T);
    assert_eq!(
        attr(&dp.attributes, "my.counter.attr"),
        &str_value("some value")
    );
    assert_eq!(dp.flags, 0);
    assert!(dp.exemplars.is_empty());

    // my.gauge: Gauge
    let m = &sm.metrics[1];
    assert_eq!(
        (m.name.as_str(), m.unit.as_str(), m.description.as_str()),
        ("my.gauge", "1", "I am a Gauge")
    );
    let Some(metric::Data::Gauge(gauge)) = &m.data else {
        panic!("my.gauge is not a gauge: {:?}", m.data)
    };
    assert_eq!(gauge.data_points.len(), 1);
    let dp = &gauge.data_points[0];
    assert_eq!(dp.value, Some(number_data_point::Value::AsDouble(10.0)));
    assert_eq!(dp.start_time_unix_nano, 0);
    assert_eq!(dp.time_unix_nano, T);
    assert_eq!(
        attr(&dp.attributes, "my.gauge.attr"),
        &str_value("some value")
    );

    // my.histogram: Histogram
    let m = &sm.metrics[2];
    assert_eq!(
        (m.name.as_str(), m.unit.as_str(), m.description.as_str()),
        ("my.histogram", "1", "I am a Histogram")
    );
    let Some(metric::Data::Histogram(h)) = &m.data else {
        panic!("my.histogram is not a histogram: {:?}", m.data)
    };
    assert_eq!(
        h.aggregation_temporality,
        AggregationTemporality::Delta as i32
    );
    assert_eq!(h.data_points.len(), 1);
    let dp = &h.data_points[0];
    assert_eq!(dp.start_time_unix_nano, T);
    assert_eq!(dp.time_unix_nano, T);
    assert_eq!(dp.count, 2);
    assert_eq!(dp.sum, Some(2.0));
    assert_eq!(dp.bucket_counts, vec![1, 1]);
    assert_eq!(dp.explicit_bounds, vec![1.0]);
    assert_eq!(dp.min, Some(0.0));
    assert_eq!(dp.max, Some(2.0));
    assert_eq!(
        attr(&dp.attributes, "my.histogram.attr"),
        &str_value("some value")
    );

    // my.exponential.histogram: ExponentialHistogram
    let m = &sm.metrics[3];
    assert_eq!(
        (m.name.as_str(), m.unit.as_str(), m.description.as_str()),
        (
            "my.exponential.histogram",
            "1",
            "I am an Exponential Histogram"
        )
    );
    let Some(metric::Data::ExponentialHistogram(eh)) = &m.data else {
        panic!("my.exponential.histogram has wrong kind: {:?}", m.data)
    };
    assert_eq!(
        eh.aggregation_temporality,
        AggregationTemporality::Delta as i32
    );
    assert_eq!(eh.data_points.len(), 1);
    let dp = &eh.data_points[0];
    assert_eq!(dp.start_time_unix_nano, T);
    assert_eq!(dp.time_unix_nano, T);
    assert_eq!(dp.count, 3);
    assert_eq!(dp.sum, Some(10.0));
    assert_eq!(dp.scale, 0);
    assert_eq!(dp.zero_count, 1);
    assert_eq!(
        dp.positive,
        Some(Buckets {
            offset: 1,
            bucket_counts: vec![0, 2]
        })
    );
    assert_eq!(dp.negative, None);
    assert_eq!(dp.min, Some(0.0));
    assert_eq!(dp.max, Some(5.0));
    assert_eq!(dp.zero_threshold, 0.0);
    assert_eq!(
        attr(&dp.attributes, "my.exponential.histogram.attr"),
        &str_value("some value")
    );
}

#[test]
fn logs_fixture_field_values() {
    let req = logs(LOGS_JSON);
    assert_eq!(req.resource_logs.len(), 1);
    let rl = &req.resource_logs[0];
    assert_eq!(
        attr(
            &rl.resource.as_ref().expect("resource").attributes,
            "service.name"
        ),
        &str_value("my.service")
    );
    let sl = &rl.scope_logs[0];
    let scope = sl.scope.as_ref().expect("scope");
    assert_eq!(scope.name, "my.library");
    assert_eq!(scope.version, "1.0.0");
    assert_eq!(
        attr(&scope.attributes, "my.scope.attribute"),
        &str_value("some scope attribute")
    );
    assert_eq!(sl.log_records.len(), 1);
    let lr = &sl.log_records[0];
    assert_eq!(lr.time_unix_nano, 1_544_712_660_300_000_000);
    assert_eq!(lr.observed_time_unix_nano, 1_544_712_660_300_000_000);
    assert_eq!(lr.severity_number, SeverityNumber::Info2 as i32);
    assert_eq!(lr.severity_text, "Information");
    assert_eq!(lr.trace_id, hex_bytes("5b8efff798038103d269b633813fc60c"));
    assert_eq!(lr.span_id, hex_bytes("eee19b7ec3c1b174"));
    assert_eq!(
        lr.body,
        Some(AnyValue {
            value: str_value("Example log record")
        })
    );
    assert_eq!(lr.attributes.len(), 6);
    assert_eq!(
        attr(&lr.attributes, "string.attribute"),
        &str_value("some string")
    );
    assert_eq!(
        attr(&lr.attributes, "boolean.attribute"),
        &Some(Value::BoolValue(true))
    );
    assert_eq!(
        attr(&lr.attributes, "int.attribute"),
        &Some(Value::IntValue(10))
    );
    assert_eq!(
        attr(&lr.attributes, "double.attribute"),
        &Some(Value::DoubleValue(637.704))
    );
    assert_eq!(
        attr(&lr.attributes, "array.attribute"),
        &Some(Value::ArrayValue(ArrayValue {
            values: vec![
                AnyValue {
                    value: str_value("many")
                },
                AnyValue {
                    value: str_value("values")
                },
            ]
        }))
    );
    assert_eq!(
        attr(&lr.attributes, "map.attribute"),
        &Some(Value::KvlistValue(KeyValueList {
            values: vec![KeyValue {
                key: "some.map.key".into(),
                value: Some(AnyValue {
                    value: str_value("some value")
                }),
                key_strindex: 0,
            }]
        }))
    );
    assert_eq!(lr.flags, 0);
    assert_eq!(lr.event_name, "");
    assert_eq!(lr.dropped_attributes_count, 0);
}

// ---------------------------------------------------------------------------
// our fixture: exponential histogram with mixed int64 encodings
// ---------------------------------------------------------------------------

#[test]
fn exponential_histogram_fixture_field_values() {
    let req = metrics(EXP_HISTOGRAM_JSON);
    let m = only_metric(&req);
    assert_eq!(m.name, "http.server.request.duration");
    assert_eq!(m.unit, "s");
    assert_eq!(m.description, "Request latency");
    let Some(metric::Data::ExponentialHistogram(eh)) = &m.data else {
        panic!("not an exponential histogram: {:?}", m.data)
    };
    assert_eq!(
        eh.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    assert_eq!(eh.data_points.len(), 2);

    let dp = &eh.data_points[0];
    assert_eq!(attr(&dp.attributes, "http.route"), &str_value("/pay"));
    assert_eq!(dp.start_time_unix_nano, 1_700_000_000_000_000_000); // string
    assert_eq!(dp.time_unix_nano, 1_700_000_060_000_000_000); // number
    assert_eq!(dp.count, 13);
    assert_eq!(dp.sum, Some(42.5));
    assert_eq!(dp.scale, -2);
    assert_eq!(dp.zero_count, 2);
    assert_eq!(dp.zero_threshold, 1e-9);
    assert_eq!(
        dp.positive,
        Some(Buckets {
            offset: -3,
            bucket_counts: vec![1, 2, 3]
        })
    );
    assert_eq!(
        dp.negative,
        Some(Buckets {
            offset: 1,
            bucket_counts: vec![4, 1]
        })
    );
    assert_eq!(dp.min, Some(-7.25));
    assert_eq!(dp.max, Some(19.0));
    assert_eq!(dp.flags, 0);
    assert_eq!(dp.exemplars.len(), 1);
    let ex = &dp.exemplars[0];
    assert_eq!(ex.time_unix_nano, 1_700_000_030_000_000_000);
    assert_eq!(ex.value, Some(exemplar::Value::AsDouble(0.125)));
    assert_eq!(ex.trace_id, hex_bytes("0af7651916cd43dd8448eb211c80319c"));
    assert_eq!(ex.span_id, hex_bytes("b7ad6b7169203331"));
    assert_eq!(
        attr(&ex.filtered_attributes, "user.id"),
        &Some(Value::IntValue(42))
    );

    let dp = &eh.data_points[1];
    assert!(dp.attributes.is_empty());
    assert_eq!(dp.start_time_unix_nano, 1_700_000_060_000_000_000); // number
    assert_eq!(dp.time_unix_nano, 1_700_000_120_000_000_000); // string
    assert_eq!(dp.count, u64::MAX);
    assert_eq!(dp.sum, None);
    assert_eq!(dp.scale, 20);
    assert_eq!(dp.zero_count, 0);
    assert_eq!(
        dp.positive,
        Some(Buckets {
            offset: i32::MIN,
            bucket_counts: vec![]
        })
    );
    assert_eq!(dp.negative, None);
    assert_eq!((dp.min, dp.max), (None, None));
    assert_eq!(dp.zero_threshold, 0.0);
    assert_eq!(dp.flags, DataPointFlags::NoRecordedValueMask as u32);
}

// ---------------------------------------------------------------------------
// every field
// ---------------------------------------------------------------------------

#[test]
fn trace_every_field() {
    let json = r#"{
      "resourceSpans": [{
        "resource": {
          "attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}],
          "droppedAttributesCount": 3,
          "entityRefs": [{"schemaUrl": "https://e", "type": "service",
                          "idKeys": ["service.name"], "descriptionKeys": ["d"]}]
        },
        "schemaUrl": "https://opentelemetry.io/schemas/1.26.0",
        "scopeSpans": [{
          "scope": {"name": "lib", "version": "2", "droppedAttributesCount": "4",
                    "attributes": [{"key": "a", "value": {"intValue": -7}}]},
          "schemaUrl": "https://scope",
          "spans": [{
            "traceId": "0af7651916cd43dd8448eb211c80319c",
            "spanId": "B7AD6B7169203331",
            "traceState": "congo=t61rcWkgMzE",
            "parentSpanId": "",
            "flags": 769,
            "name": "GET /pay",
            "kind": 3,
            "startTimeUnixNano": 1000000000000000000,
            "endTimeUnixNano": "1000000000500000000",
            "attributes": [
              {"key": "s", "value": {"stringValue": "x"}},
              {"key": "b", "value": {"boolValue": false}},
              {"key": "i", "value": {"intValue": "-9223372036854775808"}},
              {"key": "d", "value": {"doubleValue": -0.5}},
              {"key": "bytes", "value": {"bytesValue": "AAEC/w=="}},
              {"key": "arr", "value": {"arrayValue": {"values": [{"intValue": 1}, {"boolValue": true}]}}},
              {"key": "kv", "value": {"kvlistValue": {"values": [{"key": "n", "value": {"doubleValue": 2}}]}}},
              {"key": "empty", "value": {}}
            ],
            "droppedAttributesCount": 5,
            "events": [{"timeUnixNano": "1000000000100000000", "name": "exception",
                        "attributes": [{"key": "exception.type", "value": {"stringValue": "E"}}],
                        "droppedAttributesCount": 6}],
            "droppedEventsCount": 7,
            "links": [{"traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "eee19b7ec3c1b174",
                       "traceState": "k=v", "attributes": [{"key": "l", "value": {"stringValue": "y"}}],
                       "droppedAttributesCount": 8, "flags": 256}],
            "droppedLinksCount": 9,
            "status": {"message": "boom", "code": 2}
          }]
        }]
      }]
    }"#;
    let req = traces(json);
    let rs = &req.resource_spans[0];
    assert_eq!(rs.schema_url, "https://opentelemetry.io/schemas/1.26.0");
    let resource = rs.resource.as_ref().expect("resource");
    assert_eq!(resource.dropped_attributes_count, 3);
    assert_eq!(
        resource.entity_refs,
        vec![EntityRef {
            schema_url: "https://e".into(),
            r#type: "service".into(),
            id_keys: vec!["service.name".into()],
            description_keys: vec!["d".into()],
        }]
    );
    let ss = &rs.scope_spans[0];
    assert_eq!(ss.schema_url, "https://scope");
    let scope = ss.scope.as_ref().expect("scope");
    assert_eq!((scope.name.as_str(), scope.version.as_str()), ("lib", "2"));
    assert_eq!(scope.dropped_attributes_count, 4);
    assert_eq!(attr(&scope.attributes, "a"), &Some(Value::IntValue(-7)));

    let span = &ss.spans[0];
    assert_eq!(span.trace_id, hex_bytes("0af7651916cd43dd8448eb211c80319c"));
    assert_eq!(span.span_id, hex_bytes("b7ad6b7169203331"));
    assert_eq!(span.trace_state, "congo=t61rcWkgMzE");
    assert!(span.parent_span_id.is_empty());
    assert_eq!(span.flags, 769);
    assert_eq!(span.name, "GET /pay");
    assert_eq!(span.kind, span::SpanKind::Client as i32);
    assert_eq!(span.start_time_unix_nano, 1_000_000_000_000_000_000);
    assert_eq!(span.end_time_unix_nano, 1_000_000_000_500_000_000);
    let a = &span.attributes;
    assert_eq!(attr(a, "s"), &str_value("x"));
    assert_eq!(attr(a, "b"), &Some(Value::BoolValue(false)));
    assert_eq!(attr(a, "i"), &Some(Value::IntValue(i64::MIN)));
    assert_eq!(attr(a, "d"), &Some(Value::DoubleValue(-0.5)));
    assert_eq!(
        attr(a, "bytes"),
        &Some(Value::BytesValue(vec![0, 1, 2, 255]))
    );
    assert_eq!(
        attr(a, "arr"),
        &Some(Value::ArrayValue(ArrayValue {
            values: vec![
                AnyValue {
                    value: Some(Value::IntValue(1))
                },
                AnyValue {
                    value: Some(Value::BoolValue(true))
                },
            ]
        }))
    );
    assert_eq!(
        attr(a, "kv"),
        &Some(Value::KvlistValue(KeyValueList {
            values: vec![KeyValue {
                key: "n".into(),
                value: Some(AnyValue {
                    value: Some(Value::DoubleValue(2.0))
                }),
                key_strindex: 0,
            }]
        }))
    );
    assert_eq!(attr(a, "empty"), &None);
    assert_eq!(span.dropped_attributes_count, 5);
    assert_eq!(
        span.events,
        vec![span::Event {
            time_unix_nano: 1_000_000_000_100_000_000,
            name: "exception".into(),
            attributes: vec![KeyValue {
                key: "exception.type".into(),
                value: Some(AnyValue {
                    value: str_value("E")
                }),
                key_strindex: 0,
            }],
            dropped_attributes_count: 6,
        }]
    );
    assert_eq!(span.dropped_events_count, 7);
    assert_eq!(
        span.links,
        vec![span::Link {
            trace_id: hex_bytes("5b8efff798038103d269b633813fc60c"),
            span_id: hex_bytes("eee19b7ec3c1b174"),
            trace_state: "k=v".into(),
            attributes: vec![KeyValue {
                key: "l".into(),
                value: Some(AnyValue {
                    value: str_value("y")
                }),
                key_strindex: 0,
            }],
            dropped_attributes_count: 8,
            flags: 256,
        }]
    );
    assert_eq!(span.dropped_links_count, 9);
    assert_eq!(
        span.status,
        Some(Status {
            message: "boom".into(),
            code: status::StatusCode::Error as i32,
        })
    );
}

#[test]
fn summary_and_exemplars_every_field() {
    let json = one_metric(
        r#"{
          "name": "rpc.duration", "description": "d", "unit": "ms",
          "metadata": [{"key": "m", "value": {"stringValue": "v"}}],
          "summary": {"dataPoints": [{
            "attributes": [{"key": "a", "value": {"stringValue": "b"}}],
            "startTimeUnixNano": "1", "timeUnixNano": "2", "count": "10", "sum": 123.5,
            "quantileValues": [{"quantile": 0.0, "value": 1}, {"quantile": 0.99, "value": "99.5"},
                               {"quantile": 1, "value": 120}],
            "flags": 1
          }]}
        }"#,
    );
    let req = metrics(&json);
    let m = only_metric(&req);
    assert_eq!(
        (m.name.as_str(), m.description.as_str(), m.unit.as_str()),
        ("rpc.duration", "d", "ms")
    );
    assert_eq!(attr(&m.metadata, "m"), &str_value("v"));
    let Some(metric::Data::Summary(s)) = &m.data else {
        panic!("not a summary: {:?}", m.data)
    };
    let dp = &s.data_points[0];
    assert_eq!(attr(&dp.attributes, "a"), &str_value("b"));
    assert_eq!(
        (dp.start_time_unix_nano, dp.time_unix_nano, dp.count),
        (1, 2, 10)
    );
    assert_eq!(dp.sum, 123.5);
    assert_eq!(
        dp.quantile_values,
        vec![
            ValueAtQuantile {
                quantile: 0.0,
                value: 1.0
            },
            ValueAtQuantile {
                quantile: 0.99,
                value: 99.5
            },
            ValueAtQuantile {
                quantile: 1.0,
                value: 120.0
            },
        ]
    );
    assert_eq!(dp.flags, 1);

    // Sum with asInt (string) and an asInt exemplar; histogram exemplar.
    let json = one_metric(
        r#"{"name": "c", "sum": {"aggregationTemporality": 2, "isMonotonic": false, "dataPoints": [{
              "asInt": "-42", "timeUnixNano": "5",
              "exemplars": [{"filteredAttributes": [{"key": "f", "value": {"boolValue": true}}],
                             "timeUnixNano": 4, "asInt": 7,
                             "spanId": "b7ad6b7169203331", "traceId": "0AF7651916CD43DD8448EB211C80319C"}]
        }]}}"#,
    );
    let req = metrics(&json);
    let Some(metric::Data::Sum(sum)) = &only_metric(&req).data else {
        panic!("not a sum")
    };
    assert_eq!(
        sum.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    assert!(!sum.is_monotonic);
    let dp = &sum.data_points[0];
    assert_eq!(dp.value, Some(number_data_point::Value::AsInt(-42)));
    assert_eq!(dp.time_unix_nano, 5);
    assert_eq!(
        dp.exemplars,
        vec![Exemplar {
            filtered_attributes: vec![KeyValue {
                key: "f".into(),
                value: Some(AnyValue {
                    value: Some(Value::BoolValue(true))
                }),
                key_strindex: 0,
            }],
            time_unix_nano: 4,
            span_id: hex_bytes("b7ad6b7169203331"),
            trace_id: hex_bytes("0af7651916cd43dd8448eb211c80319c"),
            value: Some(exemplar::Value::AsInt(7)),
        }]
    );
}

#[test]
fn logs_every_field() {
    let json = r#"{"resourceLogs": [{"schemaUrl": "s", "scopeLogs": [{"schemaUrl": "t", "logRecords": [{
        "timeUnixNano": 11, "observedTimeUnixNano": "12", "severityNumber": 17,
        "severityText": "ERROR",
        "body": {"kvlistValue": {"values": [{"key": "msg", "value": {"stringValue": "hi"}},
                                            {"key": "raw", "value": {"bytesValue": "aGk"}}]}},
        "attributes": [{"key": "k", "value": {"doubleValue": "Infinity"}}],
        "droppedAttributesCount": 2, "flags": 1,
        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
        "eventName": "app.checkout"
    }]}]}]}"#;
    let req = logs(json);
    assert_eq!(req.resource_logs[0].schema_url, "s");
    assert_eq!(req.resource_logs[0].scope_logs[0].schema_url, "t");
    let lr = &req.resource_logs[0].scope_logs[0].log_records[0];
    assert_eq!(lr.time_unix_nano, 11);
    assert_eq!(lr.observed_time_unix_nano, 12);
    assert_eq!(lr.severity_number, SeverityNumber::Error as i32);
    assert_eq!(lr.severity_text, "ERROR");
    assert_eq!(
        lr.body,
        Some(AnyValue {
            value: Some(Value::KvlistValue(KeyValueList {
                values: vec![
                    KeyValue {
                        key: "msg".into(),
                        value: Some(AnyValue {
                            value: str_value("hi")
                        }),
                        key_strindex: 0,
                    },
                    KeyValue {
                        key: "raw".into(),
                        // unpadded base64 is accepted
                        value: Some(AnyValue {
                            value: Some(Value::BytesValue(b"hi".to_vec()))
                        }),
                        key_strindex: 0,
                    },
                ]
            }))
        })
    );
    assert_eq!(
        attr(&lr.attributes, "k"),
        &Some(Value::DoubleValue(f64::INFINITY))
    );
    assert_eq!(lr.dropped_attributes_count, 2);
    assert_eq!(lr.flags, 1);
    assert_eq!(lr.trace_id, hex_bytes("5b8efff798038103d269b633813fc60c"));
    assert_eq!(lr.span_id, hex_bytes("eee19b7ec3c1b174"));
    assert_eq!(lr.event_name, "app.checkout");
}

// ---------------------------------------------------------------------------
// encoding rules
// ---------------------------------------------------------------------------

#[test]
fn empty_object_is_empty_request() {
    assert_eq!(traces("{}"), ExportTraceServiceRequest::default());
    assert_eq!(metrics("{}"), ExportMetricsServiceRequest::default());
    assert_eq!(logs(" {} \n"), ExportLogsServiceRequest::default());
    assert_eq!(
        traces(r#"{"resourceSpans": []}"#),
        ExportTraceServiceRequest::default()
    );
}

#[test]
fn null_fields_are_defaults() {
    let req = traces(
        r#"{"resourceSpans": [{"resource": null, "schemaUrl": null, "scopeSpans": [{
            "scope": null, "spans": [{
              "traceId": null, "spanId": null, "traceState": null, "parentSpanId": null,
              "flags": null, "name": null, "kind": null, "startTimeUnixNano": null,
              "endTimeUnixNano": null, "attributes": null, "droppedAttributesCount": null,
              "events": null, "droppedEventsCount": null, "links": null,
              "droppedLinksCount": null, "status": null
            }]}]}]}"#,
    );
    let rs = &req.resource_spans[0];
    assert_eq!(rs.resource, None);
    assert_eq!(rs.schema_url, "");
    assert_eq!(rs.scope_spans[0].scope, None);
    assert_eq!(only_span(&req), &Span::default());
    assert_eq!(
        traces(r#"{"resourceSpans": null}"#),
        ExportTraceServiceRequest::default()
    );

    // KeyValue.value null → no value; AnyValue member null → value without variant.
    let req = traces(&one_span(
        r#"{"attributes": [{"key": "a", "value": null}, {"key": null, "value": {"stringValue": null}}]}"#,
    ));
    let attrs = &only_span(&req).attributes;
    assert_eq!(
        attrs[0],
        KeyValue {
            key: "a".into(),
            value: None,
            key_strindex: 0
        }
    );
    assert_eq!(
        attrs[1],
        KeyValue {
            key: String::new(),
            value: Some(AnyValue { value: None }),
            key_strindex: 0
        }
    );

    // proto3 `optional double` null → unset.
    let req = metrics(&one_metric(
        r#"{"name": "h", "histogram": {"dataPoints": [{"sum": null, "min": null, "max": null,
            "count": null, "bucketCounts": null, "explicitBounds": null}]}}"#,
    ));
    let Some(metric::Data::Histogram(h)) = &only_metric(&req).data else {
        panic!("not a histogram")
    };
    assert_eq!(h.data_points[0], HistogramDataPoint::default());

    // null for a oneof member → not set.
    let req = metrics(&one_metric(r#"{"name": "x", "gauge": null, "sum": null}"#));
    assert_eq!(only_metric(&req).data, None);
    assert_eq!(
        gauge_point(r#"{"asDouble": null, "asInt": null}"#).value,
        None
    );

    let req = logs(
        r#"{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": null, "severityNumber": null}]}]}]}"#,
    );
    assert_eq!(
        req.resource_logs[0].scope_logs[0].log_records[0],
        LogRecord::default()
    );
}

#[test]
fn unknown_fields_are_ignored() {
    let req = traces(
        r#"{
          "unknownTopLevel": {"deep": [1, {"x": null}], "s": "t"},
          "resourceSpans": [{
            "futureField": 1,
            "resource": {"attributes": [], "extra": true},
            "scopeSpans": [{
              "scope": {"name": "lib", "whatever": [1, 2]},
              "spans": [{
                "name": "s", "newSpanField": {"a": "b"},
                "attributes": [{"key": "k", "value": {"stringValue": "v", "futureVariantHint": 3}, "note": "x"}],
                "status": {"code": 1, "detail": "ignored"}
              }]
            }]
          }]
        }"#,
    );
    let span = only_span(&req);
    assert_eq!(span.name, "s");
    assert_eq!(attr(&span.attributes, "k"), &str_value("v"));
    assert_eq!(span.status.as_ref().map(|s| s.code), Some(1));
    assert_eq!(
        req.resource_spans[0].scope_spans[0]
            .scope
            .as_ref()
            .map(|s| s.name.as_str()),
        Some("lib")
    );
    // Our fixture carries a top-level "_comment".
    assert_eq!(metrics(EXP_HISTOGRAM_JSON).resource_metrics.len(), 1);
}

#[test]
fn snake_case_keys_are_accepted() {
    let camel = traces(
        r#"{"resourceSpans": [{"schemaUrl": "u", "resource": {"droppedAttributesCount": 1},
            "scopeSpans": [{"scope": {"droppedAttributesCount": 2}, "spans": [{
              "traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331",
              "parentSpanId": "eee19b7ec3c1b174", "traceState": "a=b",
              "startTimeUnixNano": "1", "endTimeUnixNano": "2", "droppedAttributesCount": 3,
              "droppedEventsCount": 4, "droppedLinksCount": 5,
              "attributes": [{"key": "k", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": 1},
                 {"boolValue": true}, {"doubleValue": 1.5}, {"bytesValue": "AQ=="}, {"kvlistValue": {"values": []}}]}}}],
              "events": [{"timeUnixNano": "3", "droppedAttributesCount": 6}],
              "links": [{"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331",
                         "traceState": "c=d", "droppedAttributesCount": 7}]
            }]}]}]}"#,
    );
    let snake = traces(
        r#"{"resource_spans": [{"schema_url": "u", "resource": {"dropped_attributes_count": 1},
            "scope_spans": [{"scope": {"dropped_attributes_count": 2}, "spans": [{
              "trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331",
              "parent_span_id": "eee19b7ec3c1b174", "trace_state": "a=b",
              "start_time_unix_nano": "1", "end_time_unix_nano": "2", "dropped_attributes_count": 3,
              "dropped_events_count": 4, "dropped_links_count": 5,
              "attributes": [{"key": "k", "value": {"array_value": {"values": [{"string_value": "a"}, {"int_value": 1},
                 {"bool_value": true}, {"double_value": 1.5}, {"bytes_value": "AQ=="}, {"kvlist_value": {"values": []}}]}}}],
              "events": [{"time_unix_nano": "3", "dropped_attributes_count": 6}],
              "links": [{"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331",
                         "trace_state": "c=d", "dropped_attributes_count": 7}]
            }]}]}]}"#,
    );
    assert_eq!(camel, snake);
    assert_eq!(only_span(&snake).dropped_links_count, 5);

    let camel = metrics(&one_metric(
        r#"{"name": "e", "exponentialHistogram": {"aggregationTemporality": 1, "dataPoints": [{
            "startTimeUnixNano": 1, "timeUnixNano": 2, "zeroCount": 3, "zeroThreshold": 0.5,
            "positive": {"bucketCounts": [1]},
            "exemplars": [{"filteredAttributes": [], "timeUnixNano": 1, "asInt": 1, "spanId": "b7ad6b7169203331", "traceId": ""}]}]}}"#,
    ));
    let snake = metrics(
        r#"{"resource_metrics": [{"scope_metrics": [{"metrics": [{"name": "e", "exponential_histogram": {"aggregation_temporality": 1, "data_points": [{
            "start_time_unix_nano": 1, "time_unix_nano": 2, "zero_count": 3, "zero_threshold": 0.5,
            "positive": {"bucket_counts": [1]},
            "exemplars": [{"filtered_attributes": [], "time_unix_nano": 1, "as_int": 1, "span_id": "b7ad6b7169203331", "trace_id": ""}]}]}}]}]}]}"#,
    );
    assert_eq!(camel, snake);

    let camel = logs(
        r#"{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"timeUnixNano": 1, "observedTimeUnixNano": 2,
            "severityNumber": 9, "severityText": "I", "droppedAttributesCount": 1,
            "traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331", "eventName": "e"}]}]}]}"#,
    );
    let snake = logs(
        r#"{"resource_logs": [{"scope_logs": [{"log_records": [{"time_unix_nano": 1, "observed_time_unix_nano": 2,
            "severity_number": 9, "severity_text": "I", "dropped_attributes_count": 1,
            "trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331", "event_name": "e"}]}]}]}"#,
    );
    assert_eq!(camel, snake);
    assert_eq!(
        snake.resource_logs[0].scope_logs[0].log_records[0].event_name,
        "e"
    );
}

#[test]
fn enum_names_are_accepted() {
    let req = traces(&one_span(
        r#"{"kind": "SPAN_KIND_SERVER", "status": {"code": "STATUS_CODE_ERROR"},
            "flags": "SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK"}"#,
    ));
    let span = only_span(&req);
    assert_eq!(span.kind, span::SpanKind::Server as i32);
    assert_eq!(
        span.status.as_ref().map(|s| s.code),
        Some(status::StatusCode::Error as i32)
    );
    assert_eq!(span.flags, 256);

    // Case-insensitive names, numeric strings, unknown integers kept (open enums).
    assert_eq!(
        only_span(&traces(&one_span(r#"{"kind": "span_kind_consumer"}"#))).kind,
        5
    );
    assert_eq!(only_span(&traces(&one_span(r#"{"kind": "3"}"#))).kind, 3);
    assert_eq!(only_span(&traces(&one_span(r#"{"kind": 42}"#))).kind, 42);

    let req = metrics(&one_metric(
        r#"{"name": "s", "sum": {"aggregationTemporality": "AGGREGATION_TEMPORALITY_CUMULATIVE",
            "dataPoints": [{"asInt": 1, "flags": "DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK"}]}}"#,
    ));
    let Some(metric::Data::Sum(sum)) = &only_metric(&req).data else {
        panic!("not a sum")
    };
    assert_eq!(
        sum.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    assert_eq!(sum.data_points[0].flags, 1);

    let req = logs(
        r#"{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"severityNumber": "SEVERITY_NUMBER_WARN",
            "flags": "LOG_RECORD_FLAGS_TRACE_FLAGS_MASK"}]}]}]}"#,
    );
    let lr = &req.resource_logs[0].scope_logs[0].log_records[0];
    assert_eq!(lr.severity_number, SeverityNumber::Warn as i32);
    assert_eq!(lr.flags, 255);

    let err = trace_err(&one_span(r#"{"kind": "SPAN_KIND_SIDEWAYS"}"#));
    assert!(err.to_string().contains("unknown SpanKind"), "{err}");
    assert_eq!(
        err.path(),
        Some("resourceSpans[0].scopeSpans[0].spans[0].kind")
    );
}

#[test]
fn special_doubles() {
    let v = |s: &str| match gauge_point(&format!(r#"{{"asDouble": {s}}}"#)).value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        other => panic!("expected asDouble, got {other:?}"),
    };
    assert!(v(r#""NaN""#).is_nan());
    assert_eq!(v(r#""Infinity""#), f64::INFINITY);
    assert_eq!(v(r#""-Infinity""#), f64::NEG_INFINITY);
    assert_eq!(v(r#""2.5""#), 2.5);
    assert_eq!(v("3"), 3.0);
    assert_eq!(v("-1e3"), -1000.0);

    let req = metrics(&one_metric(
        r#"{"name": "h", "histogram": {"dataPoints": [{"sum": "NaN", "min": "-Infinity", "max": "Infinity",
            "explicitBounds": [0, "Infinity"], "bucketCounts": [0, 1, 2]}]}}"#,
    ));
    let Some(metric::Data::Histogram(h)) = &only_metric(&req).data else {
        panic!("not a histogram")
    };
    let dp = &h.data_points[0];
    assert!(dp.sum.is_some_and(f64::is_nan));
    assert_eq!(dp.min, Some(f64::NEG_INFINITY));
    assert_eq!(dp.max, Some(f64::INFINITY));
    assert_eq!(dp.explicit_bounds, vec![0.0, f64::INFINITY]);

    match any_value(r#"{"doubleValue": "NaN"}"#).and_then(|v| v.value) {
        Some(Value::DoubleValue(d)) => assert!(d.is_nan()),
        other => panic!("expected doubleValue, got {other:?}"),
    }

    for bad in [r#""nan""#, r#""inf""#, r#""1.5x""#, r#"" 1""#, "true"] {
        let err = metrics_err(&one_metric(&format!(
            r#"{{"name": "g", "gauge": {{"dataPoints": [{{"asDouble": {bad}}}]}}}}"#
        )));
        assert_eq!(
            err.path(),
            Some("resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints[0].asDouble"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn int64_forms() {
    let as_int = |s: &str| match gauge_point(&format!(r#"{{"asInt": {s}}}"#)).value {
        Some(number_data_point::Value::AsInt(i)) => i,
        other => panic!("expected asInt, got {other:?}"),
    };
    assert_eq!(as_int(r#""9223372036854775807""#), i64::MAX);
    assert_eq!(as_int(r#""-9223372036854775808""#), i64::MIN);
    assert_eq!(as_int("9223372036854775807"), i64::MAX);
    assert_eq!(as_int("-9223372036854775808"), i64::MIN);
    assert_eq!(as_int("-5"), -5);
    // Integral values written with a fraction/exponent, as proto3 parsers accept.
    assert_eq!(as_int("5.0"), 5);
    assert_eq!(as_int("1e3"), 1000);
    assert_eq!(as_int(r#""1e3""#), 1000);

    let time = |s: &str| gauge_point(&format!(r#"{{"timeUnixNano": {s}}}"#)).time_unix_nano;
    assert_eq!(time(r#""18446744073709551615""#), u64::MAX);
    assert_eq!(time("18446744073709551615"), u64::MAX);
    assert_eq!(time(r#""0""#), 0);

    match any_value(r#"{"intValue": 12}"#).and_then(|v| v.value) {
        Some(Value::IntValue(12)) => {}
        other => panic!("expected intValue 12, got {other:?}"),
    }
}

#[test]
fn byte_order_mark_is_ignored() {
    let mut body = b"\xEF\xBB\xBF".to_vec();
    body.extend_from_slice(TRACE_JSON.as_bytes());
    assert_eq!(
        decode_traces(&body).expect("decode with BOM"),
        traces(TRACE_JSON)
    );
}

#[test]
fn bytes_value_base64_variants() {
    for (b64, bytes) in [
        ("+/8=", vec![0xfb, 0xff]),
        ("+/8", vec![0xfb, 0xff]),
        ("-_8", vec![0xfb, 0xff]),
        ("", vec![]),
    ] {
        assert_eq!(
            any_value(&format!(r#"{{"bytesValue": "{b64}"}}"#)).and_then(|v| v.value),
            Some(Value::BytesValue(bytes)),
            "{b64}"
        );
    }
    let err = trace_err(&one_span(
        r#"{"attributes": [{"key": "k", "value": {"bytesValue": "not base64!"}}]}"#,
    ));
    assert!(err.to_string().contains("invalid base64"), "{err}");
    assert_eq!(
        err.path(),
        Some("resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value.bytesValue")
    );
}

// ---------------------------------------------------------------------------
// errors
// ---------------------------------------------------------------------------

#[test]
fn syntax_error_has_line_and_column() {
    let err = trace_err("{\n  \"resourceSpans\": [\n    {,}\n  ]\n}");
    assert_eq!((err.line(), err.column()), (3, 6), "{err}");
    assert!(err.to_string().contains("line 3 column 6"), "{err}");

    let err = trace_err("");
    assert!(err.to_string().contains("EOF"), "{err}");

    let err = trace_err(r#"{"resourceSpans": []} trailing"#);
    assert!(err.to_string().contains("trailing characters"), "{err}");
    assert_eq!(err.path(), None);

    let err = trace_err("[]");
    assert!(err.to_string().contains("invalid type"), "{err}");

    let err = trace_err("null");
    assert!(err.to_string().contains("invalid type"), "{err}");
}

#[test]
fn error_message_contains_json_path() {
    let json = one_span(
        r#"{"traceId": "0af7651916cd43dd8448eb211c80319c"},
           {"traceId": "0AF7651916CD43DD8448EB211C80319C"},
           {"traceId": "0af7651916cd43dd8448eb211c80319z"}"#,
    );
    let err = trace_err(&json);
    let msg = err.to_string();
    assert!(
        msg.starts_with("resourceSpans[0].scopeSpans[0].spans[2].traceId: invalid hex in trace id"),
        "{msg}"
    );
    assert!(msg.contains("line 3 column"), "{msg}");
    assert_eq!(
        err.path(),
        Some("resourceSpans[0].scopeSpans[0].spans[2].traceId")
    );
}

#[test]
fn bad_ids_are_rejected() {
    let cases = [
        // non-hex, right length
        (r#"{"spanId": "b7ad6b716920333g"}"#, "spanId", "invalid hex"),
        // base64 of 16 bytes instead of hex
        (
            r#"{"traceId": "CvdlGRbNQ92ESOshHIAxnA=="}"#,
            "traceId",
            "expected 32 hex digits",
        ),
        // 15 bytes
        (
            r#"{"traceId": "0af7651916cd43dd8448eb211c8031"}"#,
            "traceId",
            "expected 32 hex digits",
        ),
        // 9 bytes
        (
            r#"{"spanId": "b7ad6b716920333100"}"#,
            "spanId",
            "expected 16 hex digits",
        ),
        // a trace id where a span id belongs
        (
            r#"{"parentSpanId": "0af7651916cd43dd8448eb211c80319c"}"#,
            "parentSpanId",
            "expected 16 hex digits",
        ),
        (r#"{"spanId": 12345678}"#, "spanId", "invalid type"),
    ];
    for (span, field, want) in cases {
        let err = trace_err(&one_span(span));
        let path = format!("resourceSpans[0].scopeSpans[0].spans[0].{field}");
        assert_eq!(err.path(), Some(path.as_str()), "{span}: {err}");
        assert!(err.to_string().contains(want), "{span}: {err}");
    }

    let err = trace_err(&one_span(
        r#"{"links": [{"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad"}]}"#,
    ));
    assert_eq!(
        err.path(),
        Some("resourceSpans[0].scopeSpans[0].spans[0].links[0].spanId")
    );

    let err = metrics_err(&one_metric(
        r#"{"name": "g", "gauge": {"dataPoints": [{"exemplars": [{"traceId": "xyz"}]}]}}"#,
    ));
    assert_eq!(
        err.path(),
        Some("resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints[0].exemplars[0].traceId")
    );

    let err =
        decode_logs(br#"{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"spanId": "zz"}]}]}]}"#)
            .expect_err("bad log span id");
    assert_eq!(
        err.path(),
        Some("resourceLogs[0].scopeLogs[0].logRecords[0].spanId")
    );
}

#[test]
fn bad_integers_are_rejected() {
    let cases = [
        (
            r#"{"startTimeUnixNano": "12x"}"#,
            "startTimeUnixNano",
            "invalid integer",
        ),
        (
            r#"{"startTimeUnixNano": 1.5}"#,
            "startTimeUnixNano",
            "expected an integer",
        ),
        (
            r#"{"startTimeUnixNano": "1.5"}"#,
            "startTimeUnixNano",
            "invalid integer",
        ),
        (
            r#"{"startTimeUnixNano": -1}"#,
            "startTimeUnixNano",
            "out of range",
        ),
        (
            r#"{"endTimeUnixNano": "18446744073709551616"}"#,
            "endTimeUnixNano",
            "out of range",
        ),
        // beyond u64 as a JSON number
        (
            r#"{"endTimeUnixNano": 18446744073709551616}"#,
            "endTimeUnixNano",
            "out of range",
        ),
        (
            r#"{"endTimeUnixNano": 1e300}"#,
            "endTimeUnixNano",
            "out of range",
        ),
        // in range, but a float above 2^53 may not be the value the sender meant
        (
            r#"{"endTimeUnixNano": 1.7e18}"#,
            "endTimeUnixNano",
            "send it as a decimal string",
        ),
        (
            r#"{"endTimeUnixNano": ""}"#,
            "endTimeUnixNano",
            "invalid integer",
        ),
        (
            r#"{"endTimeUnixNano": " 1"}"#,
            "endTimeUnixNano",
            "invalid integer",
        ),
        (
            r#"{"endTimeUnixNano": true}"#,
            "endTimeUnixNano",
            "invalid type",
        ),
        (
            r#"{"droppedAttributesCount": 4294967296}"#,
            "droppedAttributesCount",
            "out of range",
        ),
        (r#"{"kind": 2.5}"#, "kind", "expected an integer"),
    ];
    for (span, field, want) in cases {
        let err = trace_err(&one_span(span));
        let path = format!("resourceSpans[0].scopeSpans[0].spans[0].{field}");
        assert_eq!(err.path(), Some(path.as_str()), "{span}: {err}");
        assert!(err.to_string().contains(want), "{span}: {err}");
    }

    // asInt / intValue / bucketCounts elements
    let err = metrics_err(&one_metric(
        r#"{"name": "g", "gauge": {"dataPoints": [{"asInt": "12x"}]}}"#,
    ));
    assert_eq!(
        err.path(),
        Some("resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints[0].asInt")
    );
    let err = metrics_err(&one_metric(
        r#"{"name": "h", "histogram": {"dataPoints": [{"bucketCounts": ["1", 1.5]}]}}"#,
    ));
    assert_eq!(
        err.path(),
        Some(
            "resourceMetrics[0].scopeMetrics[0].metrics[0].histogram.dataPoints[0].bucketCounts[1]"
        )
    );
    let err = metrics_err(&one_metric(
        r#"{"name": "e", "exponentialHistogram": {"dataPoints": [{"positive": {"offset": 2147483648}}]}}"#,
    ));
    assert!(err.to_string().contains("out of range for int32"), "{err}");
    let err = trace_err(&one_span(
        r#"{"attributes": [{"key": "k", "value": {"intValue": "9223372036854775808"}}]}"#,
    ));
    assert_eq!(
        err.path(),
        Some("resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value.intValue")
    );
    assert!(err.to_string().contains("out of range for int64"), "{err}");
}

#[test]
fn wrong_json_types_are_rejected() {
    let err = trace_err(&one_span(r#"{"name": true}"#));
    assert_eq!(
        err.path(),
        Some("resourceSpans[0].scopeSpans[0].spans[0].name")
    );
    assert!(
        err.to_string()
            .contains("invalid type: boolean `true`, expected a string"),
        "{err}"
    );

    let err = trace_err(&one_span(
        r#"{"attributes": [{"key": "k", "value": {"stringValue": 5}}]}"#,
    ));
    assert_eq!(
        err.path(),
        Some("resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value.stringValue")
    );

    let err = trace_err(&one_span(
        r#"{"attributes": [{"key": "k", "value": {"boolValue": "true"}}]}"#,
    ));
    assert!(err.to_string().contains("invalid type"), "{err}");

    let err = trace_err(r#"{"resourceSpans": {"scopeSpans": []}}"#);
    assert_eq!(err.path(), Some("resourceSpans"));

    // Messages must be objects: serde's positional array form is not proto3 JSON.
    let err = trace_err(&one_span(r#"{"status": ["boom", 2]}"#));
    assert_eq!(
        err.path(),
        Some("resourceSpans[0].scopeSpans[0].spans[0].status")
    );
    assert!(
        err.to_string()
            .contains("invalid type: sequence, expected a JSON object for Status"),
        "{err}"
    );
    let err = trace_err(&one_span(r#"{"attributes": [{"key": "k", "value": [1]}]}"#));
    assert!(
        err.to_string()
            .contains("expected a JSON object for AnyValue"),
        "{err}"
    );

    // null elements inside repeated fields are not allowed (proto3 JSON).
    let err = trace_err(&one_span(r#"{"attributes": [null]}"#));
    assert_eq!(
        err.path(),
        Some("resourceSpans[0].scopeSpans[0].spans[0].attributes[0]")
    );
}

#[test]
fn oneof_with_two_members_is_rejected() {
    let err = trace_err(&one_span(
        r#"{"attributes": [{"key": "k", "value": {"stringValue": "a", "intValue": 1}}]}"#,
    ));
    assert_eq!(
        err.path(),
        Some("resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value")
    );
    assert!(
        err.to_string().contains("stringValue and intValue"),
        "{err}"
    );

    let err = metrics_err(&one_metric(
        r#"{"name": "x", "gauge": {"dataPoints": []}, "sum": {"dataPoints": []}}"#,
    ));
    assert_eq!(
        err.path(),
        Some("resourceMetrics[0].scopeMetrics[0].metrics[0]")
    );
    assert!(err.to_string().contains("gauge and sum"), "{err}");

    let err = metrics_err(&one_metric(
        r#"{"name": "g", "gauge": {"dataPoints": [{"asInt": 1, "asDouble": 1.0}]}}"#,
    ));
    assert_eq!(
        err.path(),
        Some("resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints[0]")
    );
}

#[test]
fn duplicate_keys_are_rejected() {
    // Same field twice (here: camelCase and snake_case spelling) is ambiguous.
    let err = trace_err(&one_span(r#"{"name": "a", "name": "b"}"#));
    assert!(err.to_string().contains("duplicate field"), "{err}");
    let err = trace_err(&one_span(
        r#"{"traceId": "0af7651916cd43dd8448eb211c80319c", "trace_id": "0af7651916cd43dd8448eb211c80319c"}"#,
    ));
    assert!(err.to_string().contains("duplicate field"), "{err}");
}

// ---------------------------------------------------------------------------
// round trip through protobuf
// ---------------------------------------------------------------------------

#[test]
fn round_trip_through_protobuf() {
    fn check<M: Message + Default + PartialEq + std::fmt::Debug>(decoded: M) {
        let bytes = decoded.encode_to_vec();
        let back = M::decode(bytes.as_slice()).expect("protobuf decode");
        assert_eq!(back, decoded);
    }
    check(traces(TRACE_JSON));
    check(metrics(METRICS_JSON));
    check(logs(LOGS_JSON));
    check(metrics(EXP_HISTOGRAM_JSON));
    // A request exercising every trace field survives too.
    let req = traces(&one_span(
        r#"{"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331",
            "kind": "SPAN_KIND_PRODUCER", "flags": 1, "startTimeUnixNano": 1, "endTimeUnixNano": 2,
            "attributes": [{"key": "b", "value": {"bytesValue": "AAE="}}, {"key": "e", "value": {}}],
            "events": [{"name": "e"}], "links": [{"traceId": "", "spanId": ""}],
            "status": {"code": "STATUS_CODE_OK"}}"#,
    ));
    check(req);
}

/// Only a proto field's exact snake_case spelling is read as that field:
/// keys with stray underscores or capitals are unknown fields, ignored,
/// as they were before one rule replaced the per-field aliases.
#[test]
fn only_proto_snake_case_keys_are_rewritten() {
    let with = |extra: &str| {
        traces(&format!(
            r#"{{"resourceSpans": [{{"scopeSpans": [{{"spans": [{{"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331", "name": "a"{extra}}}]}}]}}]}}"#
        ))
    };
    let plain = with("");
    for extra in [
        r#", "_name": "b""#,
        r#", "name_": "b""#,
        r#", "trace__id": "1af7651916cd43dd8448eb211c80319c""#,
        r#", "trace_Id": "1af7651916cd43dd8448eb211c80319c""#,
        r#", "spanId_": "c7ad6b7169203331""#,
        r#", "_comment": "x""#,
    ] {
        assert_eq!(with(extra), plain, "{extra}");
    }
    // The proto spelling is the field.
    let snake = with(r#", "parent_span_id": "eee19b7ec3c1b174""#);
    assert_eq!(only_span(&snake).parent_span_id.len(), 8);
}
