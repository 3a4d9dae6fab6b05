//! Rejected items are visible where people look (issue 12, item 11): the
//! real binary is sent the source idea's own metric, `validation.score`
//! with unit `1`, as the latency histogram of a contract. The sender gets
//! `partial_success`; the operator gets a counter by protocol, signal and
//! reason, and one WARN line naming the service, the metric and the
//! reason however many requests repeat it; and the run says why it has no
//! samples, whether every point was rejected (PENDING) or only its latency
//! points were (VALIDATING on its conversions).

use std::time::Duration;

use serde_json::{json, Value};

use crate::durable::Verdict;
use crate::{eventually, get_json, now_ns, TempDir};

const WAIT: Duration = Duration::from_secs(60);
const REQUESTS: u64 = 12;
const POINTS: u64 = 5;

fn pipeline(storage: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http: {{ endpoint: "127.0.0.1:0" }}
processors:
  window: {{ size: 1s, allowed_lateness: 2s, shards: 2 }}
  contract/checkout:
    match: {{ service.name: checkout }}
    source: metrics
    latency_metric: validation.score
    max_p95_latency_ms: 100
exporters:
  log: {{}}
  prometheus: {{ endpoint: "127.0.0.1:0" }}
pipelines:
  checkout:
    receivers: [otlp]
    processors: [window, contract/checkout]
    exporters: [log, prometheus]
service:
  api: {{ endpoint: "127.0.0.1:0" }}
  storage: "{storage}"
"#
    )
}

/// `validation.score` with unit `1` as the Node.js SDK sends it: an
/// explicit-bucket histogram, `POINTS` points (one per route), cumulative;
/// with `conversions`, also a (valid) `validation.conversions` sum.
fn request(version: &str, conversions: bool) -> Value {
    let now = now_ns();
    let points: Vec<Value> = (0..POINTS)
        .map(|i| {
            json!({
                "attributes": [{"key": "http.route", "value": {"stringValue": format!("/r{i}")}}],
                "startTimeUnixNano": (now - 1_000_000).to_string(),
                "timeUnixNano": now.to_string(),
                "count": "3", "sum": 0.9,
                "bucketCounts": ["1", "2", "0"], "explicitBounds": [0.25, 0.5]
            })
        })
        .collect();
    let mut metrics = vec![json!({
        "name": "validation.score",
        "unit": "1",
        "histogram": {"aggregationTemporality": 2, "dataPoints": points}
    })];
    if conversions {
        metrics.push(json!({
            "name": "validation.conversions",
            "sum": {"aggregationTemporality": 1, "isMonotonic": true, "dataPoints": [{
                "startTimeUnixNano": (now - 1_000_000).to_string(),
                "timeUnixNano": now.to_string(),
                "asInt": "1"
            }]}
        }));
    }
    json!({"resourceMetrics": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "checkout"}},
            {"key": "service.version", "value": {"stringValue": version}}
        ]},
        "scopeMetrics": [{"scope": {"name": "validation"}, "metrics": metrics}]
    }]})
}

async fn send(v: &Verdict, body: &Value) -> Value {
    let resp = reqwest::Client::new()
        .post(format!("http://{}/v1/metrics", v.http))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("POST metrics");
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().await.expect("JSON answer")
}

/// The run of `version` once its reason satisfies `f`.
async fn run_until(v: &Verdict, version: &str, f: impl Fn(&Value) -> bool) -> Value {
    let url = format!("http://{}/api/v1/runs/checkout/checkout/{version}", v.api);
    eventually(WAIT, &format!("the run of {version}"), || async {
        let (status, body) = get_json(&url).await;
        (status == 200 && f(&body)).then_some(body)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_points_are_counted_logged_once_and_explained_by_the_run() {
    let dir = TempDir::new("rejections");
    let file = dir.0.join("pipeline.yaml");
    let storage = format!("sqlite://{}", dir.0.join("verdict.db").display());
    std::fs::write(&file, pipeline(&storage)).expect("write pipeline");
    let v = Verdict::start(&file);

    // 2.0.0 sends only the histogram; 2.1.0 its conversions as well.
    for _ in 0..REQUESTS {
        for (version, conversions) in [("2.0.0", false), ("2.1.0", true)] {
            let answer = send(&v, &request(version, conversions)).await;
            let partial = &answer["partialSuccess"];
            assert_eq!(
                partial["rejectedDataPoints"],
                POINTS.to_string(),
                "{answer}"
            );
            let message = partial["errorMessage"].as_str().unwrap_or("");
            assert!(
                message.contains("validation.score has unit \"1\""),
                "{message}"
            );
        }
    }
    let points = REQUESTS * POINTS;

    // The run of a release whose every point was rejected exists, PENDING,
    // and says why it has no samples.
    let expected = format!(
        "no latency samples: {points} points of validation.score rejected, unit \"1\" is not s, ms or us"
    );
    let run = run_until(&v, "2.0.0", |r| r["reason"] == expected.as_str()).await;
    assert_eq!(run["state"], "PENDING", "{run}");
    assert_eq!(run["run"]["samples"], 0, "{run}");
    // Its conversions make 2.1.0 VALIDATING; its reason is not "first
    // sample received" but why it has no latency samples.
    let run = run_until(&v, "2.1.0", |r| r["reason"] == expected.as_str()).await;
    assert_eq!(run["state"], "VALIDATING", "{run}");
    assert_eq!(run["run"]["samples"], 0, "{run}");

    // The counter, by protocol, signal and reason.
    let text = crate::scrape(v.prometheus).await;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("valid exposition format");
    let rejected: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "verdict_receiver_rejected_items_total")
        .collect();
    let unit = rejected
        .iter()
        .find(|s| {
            s.labels.get("protocol") == Some("http")
                && s.labels.get("signal") == Some("metrics")
                && s.labels.get("reason") == Some("unit")
        })
        .unwrap_or_else(|| panic!("no counter with protocol, signal and reason: {rejected:?}"));
    assert_eq!(
        unit.value,
        prometheus_parse::Value::Counter((2 * points) as f64)
    );
    for s in &rejected {
        let mut names: Vec<&str> = s.labels.keys().map(String::as_str).collect();
        names.sort();
        assert_eq!(names, ["protocol", "reason", "signal"], "{s:?}");
    }

    // One WARN line for 24 requests within the minute, naming the service,
    // the metric and the reason.
    let warnings = || -> Vec<Value> {
        v.stderr
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| {
                l["level"] == "WARN"
                    && l["fields"]["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("validation.score"))
            })
            .collect()
    };
    let lines = eventually(WAIT, "the WARN line", || async {
        let w = warnings();
        (!w.is_empty()).then_some(w)
    })
    .await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let line = &lines[0];
    let message = line["fields"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("from service \"checkout\"")
            && message.contains("points of validation.score")
            && message.contains("unit \"1\" is not s, ms or us"),
        "{message}"
    );
    assert_eq!(line["fields"]["service"], "checkout", "{line}");
    assert_eq!(line["fields"]["metric"], "validation.score", "{line}");
    assert_eq!(line["fields"]["reason"], "unit", "{line}");
    // More rejections within the minute add no line.
    send(&v, &request("2.0.0", false)).await;
    run_until(&v, "2.0.0", |r| {
        r["reason"]
            .as_str()
            .is_some_and(|s| s.contains(&format!("{} points", points + POINTS)))
    })
    .await;
    assert_eq!(warnings().len(), 1);
}
