//! A burst of new subjects: every run is created (a lookup and a
//! PENDING → VALIDATING transition each) while the shards keep taking in
//! samples, so what was accepted before a window's close deadline is
//! counted in that window, not dropped as late because the server was
//! busy creating runs.

use std::time::Duration;

use serde_json::{json, Value};

use crate::durable::{pipeline, sqlite, Verdict};
use crate::now_ns;

/// New subjects in the burst.
const SUBJECTS: usize = 5000;
/// Resources per OTLP/JSON request.
const PER_REQUEST: usize = 500;
/// Window size, seconds.
const WINDOW: u64 = 2;

/// One OTLP/JSON request: a SERVER span of 20 ms ending now for each of the
/// releases `first..first + n` of `checkout`.
fn burst_body(first: usize, n: usize) -> String {
    let end = now_ns();
    let resources: Vec<Value> = (first..first + n)
        .map(|i| {
            json!({
                "resource": {"attributes": [
                    {"key": "service.name", "value": {"stringValue": "checkout"}},
                    {"key": "service.version", "value": {"stringValue": format!("9.{i}")}}]},
                "scopeSpans": [{"spans": [{"kind": 2, "name": "GET /",
                    "startTimeUnixNano": (end - 20_000_000).to_string(),
                    "endTimeUnixNano": end.to_string()}]}]
            })
        })
        .collect();
    json!({ "resourceSpans": resources }).to_string()
}

/// The value of an unlabelled sample `name` in Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_new_subjects_loses_no_sample_accepted_in_time() {
    let dir = crate::TempDir::new("burst");
    let file = dir.0.join("pipeline.yaml");
    let yaml = pipeline(&sqlite(&dir.0), &[], "    min_samples: 1000000");
    let windows = "size: 1s, allowed_lateness: 200ms";
    assert!(yaml.contains(windows));
    let yaml = yaml.replace(
        windows,
        &format!("size: {WINDOW}s, allowed_lateness: 500ms"),
    );
    std::fs::write(&file, yaml).expect("write");
    let v = Verdict::start(&file);

    // 1.2 s into a window, so the whole burst is accepted in it, about a
    // second before its close deadline: far less than creating 5,000 runs
    // takes, so the shards are still behind when the deadline passes.
    let into = (now_ns() / 1_000_000) % (WINDOW * 1000);
    tokio::time::sleep(Duration::from_millis(WINDOW * 1000 - into + 1200)).await;
    let client = reqwest::Client::new();
    for first in (0..SUBJECTS).step_by(PER_REQUEST) {
        let resp = client
            .post(format!("http://{}/v1/traces", v.http))
            .header("content-type", "application/json")
            .body(burst_body(first, PER_REQUEST))
            .send()
            .await
            .expect("POST spans");
        assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    }

    // Every subject's run holds its sample once the window is judged.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let counted = loop {
        let runs: Value = client
            .get(format!("http://{}/api/v1/runs/checkout", v.api))
            .send()
            .await
            .expect("runs")
            .json()
            .await
            .expect("JSON");
        let runs = runs["runs"].as_array().cloned().unwrap_or_default();
        let windows: usize = runs
            .iter()
            .filter(|r| r["run"]["windows"].as_u64() >= Some(1))
            .count();
        let late = sample(
            &crate::scrape(v.prometheus).await,
            "verdict_late_samples_total",
        );
        if windows == SUBJECTS || late > Some(0.0) || tokio::time::Instant::now() > deadline {
            let samples: u64 = runs
                .iter()
                .filter_map(|r| r["run"]["samples"].as_u64())
                .sum();
            break (runs.len(), samples, late);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        counted,
        (SUBJECTS, SUBJECTS as u64, Some(0.0)),
        "(runs, samples in runs, late samples)"
    );
}
