//! The wire reader must agree with the prost path on every request it can be
//! given: generated requests convert to the same samples, and truncated ones
//! are refused by both.

use super::*;
use crate::receivers::otlp::convert;
use crate::test_util::{contract, kv, pipeline_input};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::Event;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use proptest::prelude::*;
use prost::Message;

const NOW: u64 = 1_000_000 * 1_000_000_000;

fn pipeline() -> PipelineInput {
    let senders = (0..3).map(|_| tokio::sync::mpsc::channel(1).0).collect();
    pipeline_input(contract("svc-[01]"), senders, NOW)
}

fn attr_value() -> impl Strategy<Value = any_value::Value> {
    prop_oneof![
        "[a-z0-9.]{0,6}".prop_map(any_value::Value::StringValue),
        Just(any_value::Value::StringValue("true".into())),
        Just(any_value::Value::StringValue("TRUE".into())),
        Just(any_value::Value::StringValue("503".into())),
        any::<bool>().prop_map(any_value::Value::BoolValue),
        prop_oneof![Just(200i64), Just(404), Just(500), Just(599), any::<i64>()]
            .prop_map(any_value::Value::IntValue),
        prop_oneof![Just(502.0f64), Just(200.0), any::<f64>()]
            .prop_map(any_value::Value::DoubleValue),
    ]
}

fn attr() -> impl Strategy<Value = KeyValue> {
    (
        prop_oneof![
            Just("http.response.status_code".to_string()),
            Just("http.status_code".to_string()),
            Just("validation.converted".to_string()),
            Just("other".to_string()),
            "[a-z]{1,5}",
        ],
        attr_value(),
    )
        .prop_map(|(k, v)| kv(&k, v))
}

fn span() -> impl Strategy<Value = Span> {
    (
        0i32..7,
        prop_oneof![
            Just(0u64),
            Just(NOW - 5_000_000),
            Just(NOW + 400_000_000_000),
            Just(NOW - 80_000_000_000),
            NOW - 1_000_000_000..NOW + 1_000_000_000
        ],
        0u64..10_000_000_000,
        proptest::collection::vec(attr(), 0..8),
        prop_oneof![Just(None), (0i32..3).prop_map(Some)],
        "[ -~]{0,12}",
        proptest::collection::vec("[a-z]{0,4}", 0..2),
    )
        .prop_map(|(kind, end, dur, attributes, status, name, events)| Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name,
            kind,
            start_time_unix_nano: end.saturating_sub(dur),
            end_time_unix_nano: end,
            attributes,
            events: events
                .into_iter()
                .map(|n| Event {
                    name: n,
                    time_unix_nano: 1,
                    ..Default::default()
                })
                .collect(),
            dropped_attributes_count: 1,
            flags: 256,
            status: status.map(|code| Status {
                code,
                message: "m".into(),
            }),
            ..Default::default()
        })
}

fn resource_spans() -> impl Strategy<Value = ResourceSpans> {
    (
        prop_oneof![Just("svc-0"), Just("svc-1"), Just("svc-2")],
        prop_oneof![
            Just(Some(any_value::Value::StringValue("1.0".into()))),
            Just(Some(any_value::Value::IntValue(2))),
            Just(None)
        ],
        proptest::collection::vec(proptest::collection::vec(span(), 0..6), 0..3),
    )
        .prop_map(|(svc, version, scopes)| {
            let mut attributes = vec![kv(
                "service.name",
                any_value::Value::StringValue(svc.into()),
            )];
            if let Some(v) = version {
                attributes.push(kv("service.version", v));
            }
            ResourceSpans {
                resource: Some(Resource {
                    attributes,
                    ..Default::default()
                }),
                scope_spans: scopes
                    .into_iter()
                    .map(|spans| ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "s".into(),
                            ..Default::default()
                        }),
                        spans,
                        schema_url: "https://x".into(),
                    })
                    .collect(),
                schema_url: String::new(),
            }
        })
}

fn same(a: &Converted, b: &Converted) -> Result<(), TestCaseError> {
    prop_assert_eq!(a.items, b.items);
    prop_assert_eq!(a.ignored, b.ignored);
    prop_assert_eq!(&a.rejected, &b.rejected);
    prop_assert_eq!(&a.missing, &b.missing);
    prop_assert_eq!(&a.batches, &b.batches);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Generated requests convert to exactly the same samples either way.
    #[test]
    fn wire_path_equals_prost_path(rs in proptest::collection::vec(resource_spans(), 0..4)) {
        let p = pipeline();
        let req = ExportTraceServiceRequest { resource_spans: rs };
        let body = req.encode_to_vec();
        let via_prost = convert::convert_traces(&req, &[&p], NOW);
        let via_wire = convert_traces(&body, &[&p], NOW).map_err(|e| TestCaseError::fail(e.to_string()))?;
        same(&via_prost, &via_wire)?;
    }

    /// Every truncation of a request is refused by both decoders or by neither.
    #[test]
    fn truncations_are_refused_like_prost(rs in proptest::collection::vec(resource_spans(), 1..2), cut in 0.0f64..1.0) {
        let p = pipeline();
        let body = ExportTraceServiceRequest { resource_spans: rs }.encode_to_vec();
        let at = ((body.len() as f64) * cut) as usize;
        let head = &body[..at];
        let prost_ok = ExportTraceServiceRequest::decode(head).is_ok();
        let wire_ok = convert_traces(head, &[&p], NOW).is_ok();
        prop_assert_eq!(prost_ok, wire_ok, "cut at {} of {}", at, body.len());
    }
}

#[test]
fn garbage_is_malformed() {
    let p = pipeline();
    for body in [
        &[0x0a, 0xff, 0xff][..],
        &[0x0a, 0x05, 0x12][..],
        &[0xff; 11][..],
        &[0x0b][..],
    ] {
        assert!(convert_traces(body, &[&p], NOW).is_err(), "{body:?}");
        assert!(ExportTraceServiceRequest::decode(body).is_err(), "{body:?}");
    }
    // Invalid UTF-8 in a span name, which no contract reads, is accepted
    // (prost refuses it); in a resource attribute, which names the subject,
    // it is refused.
    let mut req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    name: "ab".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec();
    let pos = req.iter().rposition(|&b| b == b'a').expect("name bytes");
    req[pos] = 0xff;
    assert!(convert_traces(&req, &[&p], NOW).is_ok());
    let mut req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv(
                    "service.name",
                    any_value::Value::StringValue("ab".into()),
                )],
                ..Default::default()
            }),
            ..Default::default()
        }],
    }
    .encode_to_vec();
    let pos = req.iter().rposition(|&b| b == b'a').expect("value bytes");
    req[pos] = 0xff;
    assert!(convert_traces(&req, &[&p], NOW).is_err());
}
