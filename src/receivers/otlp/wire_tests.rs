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

/// Hand-made protobuf, for what prost's encoder never writes (repeated
/// singular fields, groups, odd varints).
mod raw {
    pub fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    pub fn key(field: u32, wt: u8) -> Vec<u8> {
        let mut out = Vec::new();
        varint(u64::from(field) << 3 | u64::from(wt), &mut out);
        out
    }

    pub fn len(field: u32, body: &[u8]) -> Vec<u8> {
        let mut out = key(field, 2);
        varint(body.len() as u64, &mut out);
        out.extend_from_slice(body);
        out
    }

    pub fn int(field: u32, v: u64) -> Vec<u8> {
        let mut out = key(field, 0);
        varint(v, &mut out);
        out
    }

    pub fn fixed64(field: u32, v: u64) -> Vec<u8> {
        let mut out = key(field, 1);
        out.extend_from_slice(&v.to_le_bytes());
        out
    }

    /// A string attribute.
    pub fn kv_str(k: &str, v: &str) -> Vec<u8> {
        [len(1, k.as_bytes()), len(2, &len(1, v.as_bytes()))].concat()
    }

    /// A request of one resource (`svc-0`, version 1) with these spans.
    pub fn request(spans: &[Vec<u8>]) -> Vec<u8> {
        let resource = [
            len(1, &kv_str("service.name", "svc-0")),
            len(1, &kv_str("service.version", "1")),
        ]
        .concat();
        let scope: Vec<u8> = spans.iter().flat_map(|s| len(2, s)).collect();
        len(1, &[len(1, &resource), len(2, &scope)].concat())
    }

    /// A SERVER span of 5 ms ending at `super::NOW`, then `extra` fields.
    pub fn span(extra: &[Vec<u8>]) -> Vec<u8> {
        let mut s = [
            int(6, 2),
            fixed64(7, super::NOW - 5_000_000),
            fixed64(8, super::NOW),
        ]
        .concat();
        for e in extra {
            s.extend_from_slice(e);
        }
        s
    }

    /// `depth` nested groups under field 99 (empty innermost).
    pub fn groups(depth: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..depth {
            out.extend(key(99, 3));
        }
        for _ in 0..depth {
            out.extend(key(99, 4));
        }
        out
    }
}

/// Both decoders on `body`: `Some(converted)` from each when it accepts;
/// they must agree on acceptance and on what they convert.
fn both(body: &[u8]) -> Option<Converted> {
    let p = pipeline();
    let via_wire = convert_traces(body, &[&p], NOW).ok();
    let via_prost = ExportTraceServiceRequest::decode(body)
        .ok()
        .map(|req| convert::convert_traces(&req, &[&p], NOW));
    match (&via_wire, &via_prost) {
        (Some(w), Some(p)) => {
            assert_eq!(
                (w.items, w.ignored, &w.rejected, &w.batches),
                (p.items, p.ignored, &p.rejected, &p.batches)
            );
        }
        (None, None) => {}
        _ => panic!(
            "wire accepts: {}, prost accepts: {}",
            via_wire.is_some(),
            via_prost.is_some()
        ),
    }
    via_wire
}

fn errors(c: &Converted) -> Vec<bool> {
    c.batches
        .iter()
        .flatten()
        .flatten()
        .map(|s| s.error)
        .collect()
}

/// A span's status given twice merges like prost: a second status without
/// a code keeps the first one's ERROR.
#[test]
fn repeated_status_merges() {
    let error = raw::len(15, &raw::int(3, 2));
    let message_only = raw::len(15, &raw::len(2, b"retried"));
    let ok = raw::len(15, &raw::int(3, 1));
    let c = both(&raw::request(&[
        raw::span(&[error.clone(), message_only]),
        raw::span(&[error, ok]),
    ]))
    .expect("accepted");
    assert_eq!(errors(&c), vec![true, false]);
}

/// An attribute's value given twice merges like prost: a second, empty
/// `AnyValue` keeps the first one's status code.
#[test]
fn repeated_attribute_value_merges() {
    let kv = |values: &[Vec<u8>]| {
        let mut b = raw::len(1, b"http.response.status_code");
        for v in values {
            b.extend(raw::len(2, v));
        }
        raw::len(9, &b)
    };
    let c = both(&raw::request(&[
        raw::span(&[kv(&[raw::int(3, 503), vec![]])]),
        raw::span(&[kv(&[raw::int(3, 503), raw::int(3, 200)])]),
        // string_value_strindex replaces the string "503": no status.
        raw::span(&[kv(&[raw::len(1, b"503"), raw::int(8, 7)])]),
    ]))
    .expect("accepted");
    assert_eq!(errors(&c), vec![true, false, false]);
}

/// `KeyValue.key_strindex` (field 3) is an int32 like prost says: framed
/// as one, refused as anything else.
#[test]
fn key_strindex_is_an_integer() {
    let kv = |extra: Vec<u8>| {
        raw::len(
            9,
            &[raw::len(1, b"a"), raw::len(2, &raw::int(3, 1)), extra].concat(),
        )
    };
    assert!(both(&raw::request(&[raw::span(&[kv(raw::int(3, 4))])])).is_some());
    assert!(both(&raw::request(&[raw::span(&[kv(raw::len(3, b"x"))])])).is_none());
}

/// Unknown groups are skipped like prost skips them, with the same
/// nesting limit at every depth; broken groups are refused by both.
#[test]
fn unknown_groups_are_skipped_like_prost() {
    let group = [
        raw::key(99, 3),
        raw::int(1, 5),
        raw::len(2, b"x"),
        raw::key(7, 3),
        raw::fixed64(1, 1),
        raw::key(7, 4),
        raw::key(99, 4),
    ]
    .concat();
    let c = both(
        &[
            raw::request(&[raw::span(std::slice::from_ref(&group))]),
            group,
        ]
        .concat(),
    )
    .expect("accepted");
    assert_eq!(c.batches.iter().flatten().flatten().count(), 1);
    // Around prost's limit, in the request and in a span (five levels down).
    for depth in 90..=101 {
        both(&raw::groups(depth));
        both(&raw::request(&[raw::span(&[raw::groups(depth)])]));
    }
    assert!(both(&raw::groups(100)).is_some());
    assert!(both(&raw::groups(101)).is_none());
    // A mismatched end, a lone end, an unterminated group.
    let mismatched = [raw::key(99, 3), raw::key(98, 4)].concat();
    assert!(both(&raw::request(&[raw::span(&[mismatched])])).is_none());
    assert!(both(&raw::request(&[raw::span(&[raw::key(99, 4)])])).is_none());
    assert!(both(&raw::request(&[raw::span(&[raw::key(99, 3)])])).is_none());
}

/// A varint's tenth byte carries only bit 63, as prost requires.
#[test]
fn ten_byte_varints_are_checked_like_prost() {
    let kind = |last: u8| {
        let mut b = raw::key(6, 0);
        b.extend([0xff; 9]);
        b.push(last);
        b
    };
    assert!(both(&raw::request(&[raw::span(&[kind(0x01)])])).is_some());
    assert!(both(&raw::request(&[raw::span(&[kind(0x02)])])).is_none());
    assert!(both(&raw::request(&[raw::span(&[kind(0x7f)])])).is_none());
}
