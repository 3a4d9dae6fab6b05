//! Flagger's webhooks against the real binary (issue 13.3): the bodies are
//! the bytes Flagger sends (`tests/fixtures/flagger/`), the answers are
//! judged by Flagger's own rule, and the runs reach each state through
//! real spans.

use std::time::Duration;

use serde_json::Value;

use crate::durable::{Verdict, TOKEN};
use crate::{eventually, get_json, TempDir};

const WAIT: Duration = Duration::from_secs(60);

/// Flagger's rule for every hook (fluxcd/flagger `pkg/controller/webhook.go`,
/// `callWebhook`: `if r.StatusCode > 202 { return errors.New(…) }`): an
/// answer counts as a success up to 202, so 200 does and 204 does not.
pub(crate) fn flagger_counts(status: u16) -> bool {
    status <= 202
}

/// A Flagger payload of `tests/fixtures/flagger/`, asking about `subject`.
fn payload(file: &str, subject: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/flagger")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.replace("checkout/2.0.0", subject)
}

/// 1 s windows; contract `checkout` decides on windows (2 passing windows
/// and 40 samples promote, 1 failing window rolls back), `shadow` is the
/// same contract as a dry run. Subjects are `checkout/VERSION`.
pub(crate) fn write_pipeline(dir: &TempDir) -> std::path::PathBuf {
    let contract = |name: &str, extra: &str| {
        format!(
            "  contract/{name}:\n    match: {{ service.name: checkout }}\n    max_p95_latency_ms: 100\n    \
             decision: windows\n    min_samples: 40\n    pass_windows: 2\n    fail_windows: 1\n{extra}"
        )
    };
    let text = format!(
        r#"
receivers:
  otlp:
    protocols:
      http: {{ endpoint: "127.0.0.1:0" }}
processors:
  window: {{ size: 1s, allowed_lateness: 200ms }}
{checkout}{shadow}
exporters:
  prometheus: {{ endpoint: "127.0.0.1:0" }}
pipelines:
  checkout:
    receivers: [otlp]
    processors: [window, contract/checkout, contract/shadow]
    exporters: [prometheus]
service:
  api: {{ endpoint: "127.0.0.1:0", token: "{TOKEN}" }}
  storage: "{storage}"
"#,
        checkout = contract("checkout", ""),
        shadow = contract("shadow", "    dry_run: true\n"),
        storage = crate::durable::sqlite(&dir.0),
    );
    let file = dir.0.join("pipeline.yaml");
    std::fs::write(&file, text).expect("write pipeline");
    file
}

/// The run of `checkout/VERSION` under `contract`, once `f` holds for it.
async fn run_of(v: &Verdict, contract: &str, version: &str, what: &str, f: fn(&Value) -> bool) {
    let url = v.api(&format!("/api/v1/runs/{contract}/checkout/{version}"));
    eventually(WAIT, what, || async {
        let (_, run) = get_json(&url).await;
        f(&run).then_some(())
    })
    .await;
}

/// A few healthy spans of `version`: its run starts VALIDATING and, short
/// of `min_samples`, stays there.
pub(crate) async fn validating(v: &Verdict, version: &str) {
    v.spans(version, 3, 10).await;
    run_of(v, "checkout", version, "VALIDATING", |r| {
        r["state"] == "VALIDATING"
    })
    .await;
}

/// Healthy spans of `version` until its run is PROMOTED.
pub(crate) async fn promoted(v: &Verdict, version: &str) {
    let url = v.api(&format!("/api/v1/runs/checkout/checkout/{version}"));
    eventually(WAIT, "PROMOTED", || async {
        v.spans(version, 10, 10).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (_, run) = get_json(&url).await;
        (run["state"] == "PROMOTED").then_some(())
    })
    .await;
}

/// Slow spans of `version` (500 ms against a 100 ms limit): ROLLED_BACK,
/// for both contracts.
pub(crate) async fn rolled_back(v: &Verdict, version: &str) {
    v.spans(version, 10, 500).await;
    for contract in ["checkout", "shadow"] {
        run_of(v, contract, version, "ROLLED_BACK", |r| {
            r["state"] == "ROLLED_BACK"
        })
        .await;
    }
}

/// POSTs `body` to a hook as Flagger does: `Content-Type:
/// application/json` and nothing else (no bearer token, though the API has
/// one).
async fn call(v: &Verdict, contract: &str, hook: &str, body: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(v.api(&format!("/api/v1/flagger/{contract}/{hook}")))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("POST hook");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The three hooks for one subject: whether Flagger counts each answer as
/// a success (confirm-promotion, rollback, check), with the answers.
async fn ask(v: &Verdict, contract: &str, subject: &str) -> ([bool; 3], [(u16, Value); 3]) {
    let mut answers = Vec::new();
    for (hook, file) in [
        ("confirm-promotion", "confirm-promotion.json"),
        ("rollback", "rollback.json"),
        ("check", "check.json"),
    ] {
        let (status, body) = call(v, contract, hook, &payload(file, subject)).await;
        // Only 200 and 403 are answers; anything else is a fault.
        assert!(
            status == 200 || status == 403,
            "{hook} {subject}: {status} {body}"
        );
        assert_eq!(body["subject"], subject, "{body}");
        assert_eq!(body["canary"], "podinfo.test", "{body}");
        answers.push((status, body));
    }
    let counts = [0, 1, 2].map(|i| flagger_counts(answers[i].0));
    let answers: [(u16, Value); 3] = answers.try_into().expect("three answers");
    (counts, answers)
}

/// Confirm-promotion passes only a PROMOTED run, rollback only a ROLLED_BACK
/// one, check everything but a ROLLED_BACK one; the subject comes from
/// `metadata.subject` or the only current run; 403 bodies say why.
#[tokio::test(flavor = "multi_thread")]
async fn flagger_hooks_answer_with_flaggers_status_semantics() {
    let dir = TempDir::new("flagger");
    let v = Verdict::start(&write_pipeline(&dir));
    let no_subject = payload("no-metadata.json", "");

    // No run at all, no subject named: nothing to answer for.
    let (status, body) = call(&v, "checkout", "check", &no_subject).await;
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("has no current run") && error.contains("metadata.subject"),
        "{body}"
    );

    // A named subject with no data yet is PENDING: only `check` passes.
    let (counts, [(_, promote), (_, rollback), (_, check)]) =
        ask(&v, "checkout", "checkout/2.0.0").await;
    assert_eq!(counts, [false, false, true]);
    assert_eq!(check["state"], "PENDING");
    let why = promote["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("checkout/2.0.0 is PENDING, not PROMOTED") && why.contains("no sample"),
        "{promote}"
    );
    assert!(
        rollback["error"]
            .as_str()
            .is_some_and(|e| e.contains("not ROLLED_BACK")),
        "{rollback}"
    );

    // VALIDATING, and the contract's only run: found without metadata.
    validating(&v, "2.0.0").await;
    for (hook, file, want) in [
        ("confirm-promotion", "no-metadata.json", 403),
        ("rollback", "no-metadata.json", 403),
        ("check", "no-metadata.json", 200),
    ] {
        let (status, body) = call(&v, "checkout", hook, &payload(file, "")).await;
        assert_eq!(status, want, "{hook}: {body}");
        assert_eq!(body["subject"], "checkout/2.0.0", "{body}");
        assert_eq!(body["state"], "VALIDATING", "{body}");
    }
    let (counts, _) = ask(&v, "checkout", "checkout/2.0.0").await;
    assert_eq!(counts, [false, false, true], "VALIDATING");

    // PROMOTED and ROLLED_BACK.
    promoted(&v, "2.0.0").await;
    rolled_back(&v, "2.1.0").await;
    let (counts, [(_, promote), ..]) = ask(&v, "checkout", "checkout/2.0.0").await;
    assert_eq!(counts, [true, false, true], "PROMOTED");
    assert_eq!(promote["state"], "PROMOTED");
    assert!(promote["run_id"].is_string(), "{promote}");
    let (counts, [(_, promote), _, (_, check)]) = ask(&v, "checkout", "checkout/2.1.0").await;
    assert_eq!(counts, [false, true, false], "ROLLED_BACK");
    for refused in [&promote, &check] {
        let why = refused["error"].as_str().unwrap_or_default();
        assert!(
            why.contains("checkout/2.1.0 is ROLLED_BACK") && why.contains("p95 latency"),
            "{refused}"
        );
    }

    // Two current runs and no subject named: 400, naming both.
    let (status, body) = call(&v, "checkout", "rollback", &no_subject).await;
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    for name in [
        "\"checkout/2.0.0\" (PROMOTED)",
        "\"checkout/2.1.0\" (ROLLED_BACK)",
    ] {
        assert!(error.contains(name), "{name} not in {body}");
    }

    // A dry run never steers Flagger, and says what verdict would answer.
    let (counts, [(_, promote), (_, rollback), (_, check)]) =
        ask(&v, "shadow", "checkout/2.1.0").await;
    assert_eq!(counts, [true, false, true], "dry run");
    assert_eq!(rollback["state"], "ROLLED_BACK");
    assert_eq!(rollback["verdict_would_answer"], 200);
    assert_eq!(promote["verdict_would_answer"], 403);
    assert_eq!(check["verdict_would_answer"], 403);
    assert!(
        rollback["error"]
            .as_str()
            .is_some_and(|e| e.contains("dry run")),
        "{rollback}"
    );

    // Faults are not answers: unknown contract or hook, a body that is not
    // Flagger's.
    let body = payload("check.json", "checkout/2.0.0");
    assert_eq!(call(&v, "nope", "check", &body).await.0, 404);
    assert_eq!(call(&v, "checkout", "promote", &body).await.0, 404);
    assert_eq!(call(&v, "checkout", "check", "[1, 2]").await.0, 400);
    let bad = r#"{"name":"podinfo","metadata":{"subject":7}}"#;
    assert_eq!(call(&v, "checkout", "check", bad).await.0, 400);
    // A subject that can never have a run (wrong number of values, a stray
    // '%') is refused, never answered PENDING: `check` would pass forever.
    for subject in ["checkout", "checkout/2.1.0/x", "checkout/2.1%zz"] {
        let (status, body) = call(&v, "checkout", "check", &payload("check.json", subject)).await;
        assert_eq!(status, 400, "{subject}: {body}");
        let url = v.api(&format!(
            "/api/v1/runs/checkout/{}",
            subject.replace('%', "%25")
        ));
        let (status, body) = crate::get_json(&url).await;
        assert_eq!(status, 400, "{subject}: {body}");
    }
    // The hooks need no token (Flagger cannot send one); the manual
    // decisions still do.
    let resp = reqwest::Client::new()
        .post(v.api("/api/v1/promote/checkout/checkout/2.0.0"))
        .send()
        .await
        .expect("POST promote");
    assert_eq!(resp.status().as_u16(), 401);
}

#[test]
fn flaggers_rule_counts_200_to_202_only() {
    assert!(flagger_counts(200) && flagger_counts(201) && flagger_counts(202));
    assert!(!flagger_counts(204) && !flagger_counts(403) && !flagger_counts(400));
}
