//! One OTLP export request of demo spans, as an SDK would build it: one
//! resource (the release), one instrumentation scope, SERVER spans with the
//! HTTP semantic-convention attributes, ending now.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message as _;
use rand::rngs::SmallRng;
use rand::Rng as _;

use super::Release;

fn attribute(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn text(key: &str, value: &str) -> KeyValue {
    attribute(key, any_value::Value::StringValue(value.to_string()))
}

/// `count` requests of `release` of `service` that ended at `now`, spread
/// over the last 100 ms, encoded as an `ExportTraceServiceRequest`.
pub fn export_request(
    service: &str,
    release: &Release,
    count: usize,
    now: SystemTime,
    rng: &mut SmallRng,
) -> Vec<u8> {
    let now_ns = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos() as u64;
    let spans = (0..count)
        .map(|_| {
            let request = release.side.request(rng);
            let latency_ns = (request.latency_ms.unwrap_or(1.0) * 1e6) as u64;
            let end = now_ns.saturating_sub(rng.random_range(0..100_000_000));
            let status_code: i64 = if request.error { 500 } else { 200 };
            Span {
                trace_id: rng.random::<[u8; 16]>().to_vec(),
                span_id: rng.random::<[u8; 8]>().to_vec(),
                name: "POST /api/checkout".to_string(),
                kind: span::SpanKind::Server as i32,
                start_time_unix_nano: end.saturating_sub(latency_ns),
                end_time_unix_nano: end,
                attributes: vec![
                    text("http.request.method", "POST"),
                    text("http.route", "/api/checkout"),
                    attribute(
                        "http.response.status_code",
                        any_value::Value::IntValue(status_code),
                    ),
                    attribute(
                        "validation.converted",
                        any_value::Value::BoolValue(request.converted),
                    ),
                ],
                status: Some(Status {
                    code: if request.error {
                        status::StatusCode::Error as i32
                    } else {
                        status::StatusCode::Unset as i32
                    },
                    message: if request.error {
                        "payment service unavailable".to_string()
                    } else {
                        String::new()
                    },
                }),
                ..Span::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    text("service.name", service),
                    text("service.version", &release.version),
                    text("deployment.environment.name", "demo"),
                    text("telemetry.sdk.name", "verdict-demo"),
                ],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "verdict-demo".to_string(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    ..InstrumentationScope::default()
                }),
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
    .encode_to_vec()
}
