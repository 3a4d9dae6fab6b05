//! OTLP/HTTP status codes and bodies (design §4), against the real server.

use std::io::Write;

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use serde_json::json;

use crate::{config, now_ns, start};

const CONTRACT: &str = r#"
    match: { service.name: checkout }
    max_p95_latency_ms: 100
"#;

fn span_json(start: u64, end: u64) -> serde_json::Value {
    json!({
        "traceId": "5B8EFFF798038103D269B633813FC60C",
        "spanId": "EEE19B7EC3C1B174",
        "name": "GET /",
        "kind": 2,
        "startTimeUnixNano": start.to_string(),
        "endTimeUnixNano": end,
        "someFutureField": {"ignored": true}
    })
}

fn traces_json(spans: Vec<serde_json::Value>) -> String {
    json!({"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "checkout"}},
            {"key": "service.version", "value": {"stringValue": "9.9.9"}}
        ]},
        "scopeSpans": [{"scope": {"name": "t"}, "spans": spans}]
    }]})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_codes_and_partial_success() {
    let server = start(&config(CONTRACT, "size: 60s")).await;
    let base = format!("http://{}", server.http[0].1);
    let client = reqwest::Client::new();
    let post = |ct: &'static str, body: Vec<u8>| {
        client
            .post(format!("{base}/v1/traces"))
            .header("content-type", ct)
            .body(body)
            .send()
    };

    // Empty requests succeed, in either encoding.
    let r = post("application/x-protobuf", Vec::new())
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-protobuf");
    let body = r.bytes().await.expect("body");
    assert_eq!(
        ExportTraceServiceResponse::decode(body)
            .expect("protobuf answer")
            .partial_success,
        None
    );
    let r = post("application/json", b"{}".to_vec())
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");

    // A good span and one from far in the future: 200 with partial_success.
    let now = now_ns();
    let body = traces_json(vec![
        span_json(now - 5_000_000, now),
        span_json(now + 3_600_000_000_000, now + 3_600_100_000_000),
        span_json(now, now - 1),
    ]);
    let r = post("application/json; charset=utf-8", body.into_bytes())
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 200);
    let v: serde_json::Value = r.json().await.expect("json answer");
    assert_eq!(v["partialSuccess"]["rejectedSpans"], "2", "{v}");
    let msg = v["partialSuccess"]["errorMessage"].as_str().unwrap_or("");
    assert!(
        msg.contains("max_clock_skew") && msg.contains("end before start"),
        "{msg}"
    );

    // Malformed protobuf: 400 with a google.rpc.Status saying what is wrong.
    let r = post("application/x-protobuf", vec![0x0a, 0xff, 0xff])
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 400);
    let status =
        tonic_types::pb::Status::decode(r.bytes().await.expect("body")).expect("rpc status");
    assert_eq!(status.code, 3);
    assert!(
        status.message.contains("malformed protobuf"),
        "{}",
        status.message
    );

    // Malformed JSON: 400 with a JSON status.
    let r = post("application/json", b"{\"resourceSpans\": [".to_vec())
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 400);
    let v: serde_json::Value = r.json().await.expect("json status");
    assert_eq!(v["code"], 3);
    assert!(
        v["message"].as_str().unwrap_or("").contains("OTLP/JSON"),
        "{v}"
    );
    let bad_id = traces_json(vec![
        json!({"traceId": "zz", "spanId": "EEE19B7EC3C1B174", "kind": 2}),
    ]);
    let r = post("application/json", bad_id.into_bytes())
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 400);

    // Wrong content type, wrong method.
    let r = post("text/plain", b"hi".to_vec()).await.expect("sent");
    assert_eq!(r.status().as_u16(), 415);
    let r = client
        .get(format!("{base}/v1/traces"))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 405);

    // Too large (limit 64 KiB), plain and as a gzip bomb.
    let r = post("application/x-protobuf", vec![0u8; 100 * 1024])
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 413);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![0u8; 10 * 1024 * 1024]).expect("gzip");
    let bomb = gz.finish().expect("gzip");
    assert!(bomb.len() < 20 * 1024);
    let r = client
        .post(format!("{base}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 413);

    // A gzip body that fits is accepted.
    let req = ExportTraceServiceRequest::default().encode_to_vec();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&req).expect("gzip");
    let r = client
        .post(format!("{base}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(gz.finish().expect("gzip"))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 200);

    // Metrics and logs are accepted (the official examples).
    for (path, file) in [("metrics", "metrics.json"), ("logs", "logs.json")] {
        let body = std::fs::read(format!(
            "{}/tests/fixtures/otlp-json/{file}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("fixture");
        let r = client
            .post(format!("{base}/v1/{path}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("sent");
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    server
        .shutdown(std::time::Duration::from_secs(10))
        .await
        .expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_is_required_when_set() {
    let yaml = config(CONTRACT, "size: 60s").replace(
        "max_request_bytes: 64KiB",
        "max_request_bytes: 64KiB\n    auth: { bearer_token: s3cret }",
    );
    let server = start(&yaml).await;
    let url = format!("http://{}/v1/traces", server.http[0].1);
    let client = reqwest::Client::new();
    for (auth, want) in [
        (None, 401),
        (Some("Bearer wrong"), 401),
        (Some("Bearer s3cret"), 200),
    ] {
        let mut req = client
            .post(&url)
            .header("content-type", "application/json")
            .body("{}");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        assert_eq!(
            req.send().await.expect("sent").status().as_u16(),
            want,
            "{auth:?}"
        );
    }
    server
        .shutdown(std::time::Duration::from_secs(10))
        .await
        .expect("shutdown");
}

/// A latency histogram with a unit that is not s, ms or us is refused in
/// `partial_success` with a message naming the metric and its unit, and
/// counted by reason; a good point in the same request is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_with_a_wrong_latency_unit_are_rejected_loudly() {
    let contract = r#"
    match: { service.name: checkout }
    source: metrics
    max_p95_latency_ms: 100
"#;
    let server = start(&config(contract, "size: 60s")).await;
    let now = now_ns();
    let histogram = |unit: &str| {
        json!({
            "name": "http.server.request.duration",
            "unit": unit,
            "histogram": {"aggregationTemporality": 1, "dataPoints": [{
                "timeUnixNano": now.to_string(),
                "count": "3", "bucketCounts": ["1", "2"], "explicitBounds": [0.1]
            }]}
        })
    };
    let body = json!({"resourceMetrics": [
        {"resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "checkout"}},
            {"key": "service.version", "value": {"stringValue": "1"}}
        ]}, "scopeMetrics": [{"scope": {"name": "a"}, "metrics": [histogram("s")]}]},
        {"resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "checkout"}},
            {"key": "service.version", "value": {"stringValue": "2"}}
        ]}, "scopeMetrics": [{"scope": {"name": "b"}, "metrics": [histogram("{request}")]}]}
    ]});
    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/metrics", server.http[0].1))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 200);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["partialSuccess"]["rejectedDataPoints"], "1", "{v}");
    let msg = v["partialSuccess"]["errorMessage"].as_str().unwrap_or("");
    assert!(
        msg.contains("unit is not s, ms or us")
            && msg.contains("http.server.request.duration has unit \"{request}\""),
        "{msg}"
    );
    let text = crate::scrape(server.prometheus[0].1).await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("verdict_receiver_rejected_items_total")
                && l.contains("reason=\"unit\"")),
        "{text}"
    );
    server
        .shutdown(std::time::Duration::from_secs(10))
        .await
        .expect("clean shutdown");
}

/// `n` SERVER spans of checkout `version`, all ending at `end`, as protobuf.
pub fn spans_protobuf(version: &str, n: u64, end: u64) -> Vec<u8> {
    spans_request(version, 1, n, end).encode_to_vec()
}

/// `n` SERVER spans of checkout `version`, each `latency_ms` long, ending
/// at `end`.
pub fn spans_request(
    version: &str,
    latency_ms: u64,
    n: u64,
    end: u64,
) -> ExportTraceServiceRequest {
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, ResourceSpans, ScopeSpans, Span};
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    };
    let spans = (0..n)
        .map(|i| Span {
            trace_id: vec![3; 16],
            span_id: i.to_be_bytes().to_vec(),
            name: "GET /".into(),
            kind: SpanKind::Server as i32,
            start_time_unix_nano: end - latency_ms * 1_000_000,
            end_time_unix_nano: end,
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "checkout"),
                    kv("service.version", version),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// `data` as one gzip member.
pub fn gzip_member(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).expect("gzip");
    gz.finish().expect("gzip")
}

/// 60 spans, then 40 more, as one protobuf body (two encoded requests
/// concatenated are one request holding both) cut into three gzip members:
/// the first ends between two fields, the second in the middle of one.
pub fn spans_in_three_gzip_members(version: &str, end: u64) -> Vec<u8> {
    let first = spans_protobuf(version, 60, end);
    let second = spans_protobuf(version, 40, end);
    let half = second.len() / 2;
    let mut body = gzip_member(&first);
    body.extend(gzip_member(&second[..half]));
    body.extend(gzip_member(&second[half..]));
    body
}

/// Waits until the run of checkout `version` has counted its window, and
/// returns its samples.
pub async fn counted(api: std::net::SocketAddr, version: &str) -> u64 {
    let url = format!("http://{api}/api/v1/runs/checkout/checkout/{version}");
    crate::eventually(
        std::time::Duration::from_secs(20),
        &format!("the window of checkout/{version} to be counted"),
        || {
            let url = url.clone();
            async move {
                let (_, body) = crate::get_json(&url).await;
                body["run"]["samples"].as_u64().filter(|n| *n > 0)
            }
        },
    )
    .await
}

/// A gzip body of several members (`cat a.gz b.gz`, or a compressor that
/// flushes members) is inflated whole: a decoder that stopped after the
/// first member accepted the request with only its first 60 spans. The
/// inflate limit holds over all members together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bodies_of_several_members_count_every_span() {
    let server = start(&config(CONTRACT, "size: 1s, allowed_lateness: 300ms")).await;
    let url = format!("http://{}/v1/traces", server.http[0].1);
    let client = reqwest::Client::new();
    let post = |body: Vec<u8>| {
        client
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", "gzip")
            .body(body)
            .send()
    };
    let r = post(spans_in_three_gzip_members("5.0", now_ns()))
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 200);
    let answer = ExportTraceServiceResponse::decode(r.bytes().await.expect("body")).expect("pb");
    assert_eq!(answer.partial_success, None);
    assert_eq!(counted(server.api, "5.0").await, 100);

    // Two members of 40 KiB each pass the 64 KiB limit only together.
    let mut bomb = gzip_member(&[0u8; 40 * 1024]);
    bomb.extend(gzip_member(&[0u8; 40 * 1024]));
    let r = post(bomb).await.expect("sent");
    assert_eq!(r.status().as_u16(), 413);
    server
        .shutdown(std::time::Duration::from_secs(10))
        .await
        .expect("shutdown");
}
