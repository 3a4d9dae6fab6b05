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
