//! Webhook formats from the real binary to real HTTP servers on loopback
//! (issue 13.5): `json`, `github` (a `repository_dispatch`) and `slack`
//! (an incoming-webhook message); and what their receivers' refusals do
//! (issue 13.6): failed deliveries listed by `GET /api/v1/deliveries`,
//! retried when retrying can help, never dropped.

use std::time::Duration;

use serde_json::Value;

use crate::durable::{pipeline, sqlite, webhook, Receiver, Verdict};
use crate::{eventually, get_json, TempDir};

const WAIT: Duration = Duration::from_secs(60);
const PUBLIC_URL: &str = "https://verdict.example.test";
const GITHUB_TOKEN: &str = "ghp_test0token";

/// The pipeline of `durable.rs` (subject = `service.version`, windows
/// decide, one failing window rolls back) with `webhooks`, the API's
/// `public_url`, and the GitHub token read from the environment.
fn start(dir: &TempDir, webhooks: &[(&str, String)]) -> Verdict {
    let text = pipeline(
        &sqlite(&dir.0),
        webhooks,
        "    decision: windows\n    fail_windows: 1",
    )
    .replace(
        "  api: {",
        &format!("  api: {{ public_url: \"{PUBLIC_URL}/\","),
    );
    let file = dir.0.join("pipeline.yaml");
    std::fs::write(&file, text).expect("write pipeline");
    Verdict::start_with(&file, &[("VERDICT_TEST_GITHUB_TOKEN", GITHUB_TOKEN)])
}

/// A webhook of `format` with the token from the environment (github).
fn hook(url: &str, format: &str) -> String {
    let token = if format == "github" {
        ", token: ${env:VERDICT_TEST_GITHUB_TOKEN}"
    } else {
        ""
    };
    webhook(url, &format!(", format: {format}{token}"))
}

/// Slow spans of `version`: its run rolls back.
async fn roll_back(v: &Verdict, version: &str) -> Value {
    v.spans(version, 10, 500).await;
    v.run_until(version, "ROLLED_BACK", |r| r["state"] == "ROLLED_BACK")
        .await
}

/// The first request `r` gets.
async fn first(r: &Receiver, what: &str) -> crate::durable::Received {
    eventually(WAIT, what, || async { r.got().into_iter().next() }).await
}

#[tokio::test(flavor = "multi_thread")]
async fn each_format_reaches_its_receiver_in_its_shape() {
    let dir = TempDir::new("formats");
    // GitHub answers a dispatch with 204 No Content, Slack with 200 "ok".
    let github = Receiver::always(204);
    let slack = Receiver::always(200).answering("ok", &[("content-type", "text/plain")]);
    let plain = Receiver::always(200);
    let hooks = [
        (
            "webhook/github",
            hook(&github.serve("127.0.0.1:0").await, "github"),
        ),
        (
            "webhook/slack",
            hook(&slack.serve("127.0.0.1:0").await, "slack"),
        ),
        (
            "webhook/json",
            hook(&plain.serve("127.0.0.1:0").await, "json"),
        ),
    ];
    let v = start(&dir, &hooks);
    let run = roll_back(&v, "9.1").await;
    let run_url = format!("{PUBLIC_URL}/api/v1/runs/checkout/9.1");

    let g = first(&github, "the dispatch").await;
    assert_eq!(g.headers["accept"], "application/vnd.github+json");
    assert_eq!(g.headers["authorization"], format!("Bearer {GITHUB_TOKEN}"));
    assert_eq!(g.headers["x-github-api-version"], "2022-11-28");
    assert_eq!(g.headers["content-type"], "application/json");
    assert_eq!(g.body["event_type"], "verdict-rolled-back");
    let payload = g.body["client_payload"]
        .as_object()
        .expect("client_payload");
    // GitHub refuses a client_payload of more than 10 top-level properties.
    assert!(payload.len() <= 10, "{payload:?}");
    assert_eq!(payload["state"], "ROLLED_BACK");
    assert_eq!(payload["subject"], "9.1");
    assert_eq!(payload["subject_attributes"]["service.version"], "9.1");
    assert_eq!(payload["run_id"], run["run_id"]);
    assert_eq!(payload["run_url"], run_url);
    assert_eq!(payload["event"]["event_id"], g.event_id.as_str());
    assert_eq!(payload["event"]["previous_state"], "VALIDATING");

    let s = first(&slack, "the Slack message").await;
    assert!(!s.headers.contains_key("authorization"));
    let text = s.body["text"].as_str().expect("text");
    assert!(
        text.contains("checkout: 9.1 ROLLED_BACK") && text.contains("p95 latency"),
        "{text}"
    );
    assert!(text.contains(&format!("<{run_url}|run>")), "{text}");
    let blocks = s.body["blocks"].as_array().expect("blocks");
    assert_eq!(blocks[0]["type"], "header");
    let all = s.body["blocks"].to_string();
    for needle in [
        "*Contract*\\ncheckout v1",
        "*Subject*\\n9.1",
        "VALIDATING → ROLLED_BACK",
        "*p95 latency*",
        "Open the run in verdict",
    ] {
        assert!(all.contains(needle), "{needle:?} not in {all}");
    }

    let j = first(&plain, "the JSON event").await;
    assert_eq!(j.body["state"], "ROLLED_BACK");
    assert_eq!(j.body["event_id"], g.event_id.as_str());
    assert!(!j.headers.contains_key("authorization"));

    // One event, delivered once to each (204 counts), nothing left over.
    tokio::time::sleep(Duration::from_millis(800)).await;
    for r in [&github, &slack, &plain] {
        assert_eq!(r.got().len(), 1);
    }
    let (_, left) = get_json(&v.api("/api/v1/deliveries")).await;
    assert_eq!(left["deliveries"], Value::Array(Vec::new()), "{left}");
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_are_listed_retried_where_it_helps_and_never_dropped() {
    let dir = TempDir::new("formats-faults");
    // A wrong token: GitHub's 401 is final (retrying cannot help).
    let denied = Receiver::always(401).answering(
        r#"{"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}"#,
        &[("content-type", "application/json")],
    );
    // GitHub's rate limit is a 403 with x-ratelimit-remaining: 0: retried.
    let limited = Receiver::scripted(&[403, 204]).answering(
        r#"{"message": "API rate limit exceeded"}"#,
        &[("x-ratelimit-remaining", "0")],
    );
    // Slack down: retried, listed as pending meanwhile.
    let down = Receiver::always(500).answering("rollup_error", &[]);
    let hooks = [
        (
            "webhook/denied",
            hook(&denied.serve("127.0.0.1:0").await, "github"),
        ),
        (
            "webhook/limited",
            hook(&limited.serve("127.0.0.1:0").await, "github"),
        ),
        (
            "webhook/down",
            hook(&down.serve("127.0.0.1:0").await, "slack"),
        ),
    ];
    let v = start(&dir, &hooks);
    roll_back(&v, "9.2").await;

    let failed = eventually(WAIT, "the 401 to be listed as failed", || async {
        let (_, body) = get_json(&v.api("/api/v1/deliveries?state=failed")).await;
        body["deliveries"].as_array()?.first().cloned()
    })
    .await;
    assert_eq!(failed["exporter"], "webhook/denied");
    assert_eq!(failed["attempts"], 1);
    assert_eq!(failed["event"]["state"], "ROLLED_BACK");
    let error = failed["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("HTTP 401") && error.contains("Bad credentials") && error.contains("final"),
        "{failed}"
    );

    let pending = eventually(WAIT, "Slack's 500s to be retried", || async {
        let (_, body) = get_json(&v.api("/api/v1/deliveries?state=pending")).await;
        body["deliveries"]
            .as_array()?
            .iter()
            .find(|d| d["exporter"] == "webhook/down" && d["attempts"].as_u64() >= Some(2))
            .cloned()
    })
    .await;
    let error = pending["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("HTTP 500") && error.contains("rollup_error"),
        "{pending}"
    );
    assert!(pending["next_attempt_at"].is_string(), "{pending}");

    eventually(WAIT, "the rate-limited dispatch to get through", || async {
        (limited.got().len() == 2).then_some(())
    })
    .await;
    let got = limited.got();
    assert_eq!(got[0].event_id, got[1].event_id);
    assert_eq!(got[0].raw, got[1].raw);
    // The limited one is delivered: listed nowhere any more.
    let (_, all) = get_json(&v.api("/api/v1/deliveries")).await;
    let exporters: Vec<&str> = all["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .filter_map(|d| d["exporter"].as_str())
        .collect();
    assert!(!exporters.contains(&"webhook/limited"), "{all}");
    assert_eq!(denied.got().len(), 1);
    let metrics = crate::scrape(v.prometheus).await;
    for line in [
        r#"verdict_webhook_deliveries_total{exporter="webhook/denied",outcome="failed"} 1"#,
        r#"verdict_webhook_deliveries_total{exporter="webhook/limited",outcome="retry"} 1"#,
        r#"verdict_webhook_deliveries_total{exporter="webhook/limited",outcome="delivered"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
}
