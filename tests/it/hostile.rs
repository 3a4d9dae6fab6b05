//! Hostile metric points against the real binary with SQLite storage: a
//! point that once froze the server (subnormal bucket bounds), sums that
//! once became infinite and bricked the database, and counts that once
//! wrapped. The server must keep answering, refuse what cannot be real in
//! `partial_success`, keep every run readable, and start again.

use std::time::Duration;

use serde_json::{json, Value};

use crate::durable::{sqlite, Verdict};
use crate::{eventually, get_json, now_ns, TempDir};

const WAIT: Duration = Duration::from_secs(60);

fn pipeline(storage: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http: {{ endpoint: "127.0.0.1:0" }}
processors:
  window: {{ size: 1s, allowed_lateness: 2s }}
  contract/checkout:
    match: {{ service.name: checkout }}
    subject_by: [service.version]
    source: metrics
    max_p95_latency_ms: 100
exporters:
  prometheus: {{ endpoint: "127.0.0.1:0" }}
pipelines:
  checkout:
    receivers: [otlp]
    processors: [window, contract/checkout]
    exporters: [prometheus]
service:
  api: {{ endpoint: "127.0.0.1:0" }}
  storage: "{storage}"
  checkpoint_interval: 200ms
"#
    )
}

/// One delta histogram (`kind` is "histogram" or "exponentialHistogram")
/// of checkout `version` with the given data points.
async fn send(v: &Verdict, version: &str, kind: &str, points: Vec<Value>) -> Value {
    let body = json!({"resourceMetrics": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "checkout"}},
            {"key": "service.version", "value": {"stringValue": version}}]},
        "scopeMetrics": [{"metrics": [{
            "name": "http.server.request.duration", "unit": "s",
            kind: {"aggregationTemporality": 1, "dataPoints": points}
        }]}]
    }]});
    let resp = reqwest::Client::new()
        .post(format!("http://{}/v1/metrics", v.http))
        .header("content-type", "application/json")
        .timeout(Duration::from_secs(10))
        .body(body.to_string())
        .send()
        .await
        .expect("the server answers");
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().await.expect("json")
}

/// A delta explicit-bucket data point as OTLP/JSON (shared with
/// `responsive.rs`).
pub(crate) fn explicit(now: u64, bounds: &[f64], counts: &[u64], max: Option<f64>) -> Value {
    let mut p = json!({
        "startTimeUnixNano": (now - 1_000_000).to_string(),
        "timeUnixNano": now.to_string(),
        "count": counts.iter().sum::<u64>().to_string(),
        "bucketCounts": counts.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        "explicitBounds": bounds,
    });
    if let Some(m) = max {
        p["max"] = json!(m);
    }
    p
}

/// An exponential data point as OTLP/JSON, its buckets holding what the
/// zero bucket does not (shared with `responsive.rs`).
pub(crate) fn exponential(now: u64, count: u64, zero_count: u64, sum: f64) -> Value {
    json!({
        "startTimeUnixNano": (now - 1_000_000).to_string(),
        "timeUnixNano": now.to_string(),
        "count": count.to_string(), "zeroCount": zero_count.to_string(),
        "sum": sum, "scale": 3,
        "positive": {"offset": -30, "bucketCounts": [(count - zero_count).to_string()]}
    })
}

async fn healthz(v: &Verdict) {
    let r = reqwest::Client::new()
        .get(format!("http://{}/healthz", v.api))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("/healthz answers");
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_points_neither_freeze_nor_brick_nor_wrap() {
    let dir = TempDir::new("hostile");
    let file = dir.0.join("pipeline.yaml");
    std::fs::write(&file, pipeline(&sqlite(&dir.0))).expect("write");
    let v = Verdict::start(&file);

    // Subnormal bounds: the spreading once looped ~9.2e18 times.
    for (bounds, counts, max) in [
        (vec![1e-322], vec![1, 0], None),
        (vec![0.05, 0.5], vec![2, 0, 0], Some(5e-324)),
    ] {
        let r = send(
            &v,
            "1.0",
            "histogram",
            // Each point is stamped when it is sent: on a loaded machine the
            // previous request and health check can outlast the 1 s window.
            vec![explicit(now_ns(), &bounds, &counts, max)],
        )
        .await;
        assert!(
            r.get("partialSuccess")
                .is_none_or(|p| p["rejectedDataPoints"].is_null()),
            "{r}"
        );
        healthz(&v).await;
    }
    // The shard that took them still works: a later point is counted.
    send(
        &v,
        "1.0",
        "histogram",
        vec![explicit(now_ns(), &[0.05], &[5, 0], None)],
    )
    .await;
    let api = v.api;
    eventually(
        Duration::from_secs(20),
        "the points after the subnormal ones",
        || async move {
            let (_, run) = get_json(&format!("http://{api}/api/v1/runs/checkout/1.0")).await;
            (run["run"]["samples"].as_u64() == Some(8)).then_some(())
        },
    )
    .await;
    healthz(&v).await;

    let now = now_ns();
    // Sums of 1e308 in one series: their total once became +inf, stored as
    // null, and neither the API nor a restart could read it back.
    for _ in 0..2 {
        send(
            &v,
            "2.0",
            "exponentialHistogram",
            vec![exponential(now, 4, 0, 1e308)],
        )
        .await;
    }
    send(
        &v,
        "3.0",
        "exponentialHistogram",
        vec![exponential(now, 4, 0, 0.04)],
    )
    .await;

    let now = now_ns();
    // count = zeroCount = 2^64-1 cannot be real: refused, not wrapped.
    let r = send(
        &v,
        "4.0",
        "exponentialHistogram",
        vec![
            exponential(now, u64::MAX, u64::MAX, 1.0),
            exponential(now, 3, 0, 0.03),
        ],
    )
    .await;
    assert_eq!(r["partialSuccess"]["rejectedDataPoints"], "1", "{r}");
    assert!(
        r["partialSuccess"]["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("cannot be real")),
        "{r}"
    );

    let listed = |want: u64| {
        let url = format!("http://{api}/api/v1/runs");
        async move {
            let (status, body) = get_json(&url).await;
            assert_eq!(status, 200, "{body}");
            let runs = body["runs"].as_array().cloned().unwrap_or_default();
            let samples: u64 = runs
                .iter()
                .filter_map(|r| r["run"]["samples"].as_u64().or(r["samples"].as_u64()))
                .sum();
            (runs.len() == 4 && samples >= want).then_some(body)
        }
    };
    // 8 + 8 + 4 + 3 samples, once their windows are judged.
    let before = eventually(WAIT, "four runs with their samples", || listed(23)).await;
    assert!(!before.to_string().contains("unreadable"), "{before}");
    for version in ["2.0", "4.0"] {
        let (status, body) =
            get_json(&format!("http://{api}/api/v1/runs/checkout/{version}")).await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, four) = get_json(&format!("http://{api}/api/v1/runs/checkout/4.0")).await;
    assert!(four.to_string().contains("\"samples\":3"), "{four}");

    assert_eq!(v.terminate().code(), Some(0));
    let v = Verdict::start(&file);
    healthz(&v).await;
    let api = v.api;
    let (status, body) = get_json(&format!("http://{api}/api/v1/runs")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["runs"].as_array().map(Vec::len), Some(4), "{body}");
}
