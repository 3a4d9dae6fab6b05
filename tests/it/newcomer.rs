//! The newcomer's path: what a new user meets on a fresh clone, tried as
//! they would: the API read with curl (`?pretty`), and the commands and
//! files the README points them at.

use crate::{config, start};

/// `?pretty` indents the JSON of every API endpoint, errors included;
/// without it the answer stays one compact line. The status page (HTML)
/// is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pretty_indents_the_api_json_and_the_default_stays_compact() {
    let server = start(&config("    max_p95_latency_ms: 100", "size: 1s")).await;
    let api = server.api;
    let client = reqwest::Client::new();
    let get = |path: String| {
        let client = client.clone();
        async move {
            let resp = client
                .get(format!("http://{api}{path}"))
                .send()
                .await
                .expect("GET");
            let status = resp.status().as_u16();
            let kind = resp
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap_or("").to_string())
                .unwrap_or_default();
            (status, kind, resp.text().await.expect("body"))
        }
    };
    for (path, status) in [
        ("/api/v1/runs", 200),
        ("/api/v1/runs/checkout/checkout/2.0.0", 200),
        ("/api/v1/deliveries", 200),
        ("/api/v1/runs/nope", 404),
        ("/healthz", 200),
    ] {
        let (got, kind, compact) = get(path.to_string()).await;
        assert_eq!(got, status, "{path}: {compact}");
        assert!(kind.starts_with("application/json"), "{path}: {kind}");
        assert_eq!(compact.lines().count(), 1, "{path} is compact: {compact}");
        let sep = if path.contains('?') { '&' } else { '?' };
        for flag in ["pretty", "pretty=true", "pretty=1"] {
            let (got, kind, indented) = get(format!("{path}{sep}{flag}")).await;
            assert_eq!(got, status, "{path}?{flag}");
            assert!(
                kind.starts_with("application/json"),
                "{path}?{flag}: {kind}"
            );
            assert!(
                indented.lines().count() > 2 && indented.contains("\n  \""),
                "{path}?{flag} is indented: {indented}"
            );
            let a: serde_json::Value = serde_json::from_str(&compact).expect("JSON");
            let b: serde_json::Value = serde_json::from_str(&indented).expect("JSON");
            // The same answer, but for the clock it reads.
            if a.get("as_of").is_none() {
                assert_eq!(a, b, "{path}?{flag}");
            }
        }
        let (_, _, off) = get(format!("{path}{sep}pretty=false")).await;
        assert_eq!(off.lines().count(), 1, "{path}?pretty=false: {off}");
    }
    // Query parameters of the endpoint still apply next to it.
    let (status, _, body) = get("/api/v1/runs?limit=x&pretty".to_string()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\n  \"error\""), "{body}");
    // HTML is not JSON: untouched.
    let (status, kind, page) = get("/?pretty".to_string()).await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("text/html"), "{kind}");
    assert!(page.contains("<html"), "{page}");
    server
        .shutdown(std::time::Duration::from_secs(5))
        .await
        .expect("stops");
}

/// `verdict validate --print-config` prints the effective configuration —
/// overrides (in the exportable spelling too) and defaults in, secrets out
/// — as a file that `verdict validate` accepts again; `verdict run` logs
/// the same windows and contracts when it starts.
#[test]
fn print_config_shows_overrides_and_defaults_and_validates_again() {
    let dir = crate::TempDir::new("print-config");
    let out =
        crate::verdict_command(["validate", "-c", "pipelines/default.yaml", "--print-config"])
            .env("VERDICT__PROCESSORS__WINDOW__SIZE", "5s")
            .env("VERDICT__PROCESSORS__CONTRACT_DEFAULT__MIN_SAMPLES", "42")
            .env("VERDICT__SERVICE__API__TOKEN", "s3cret-api-token")
            .output()
            .expect("verdict validate runs");
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{printed}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.starts_with("# pipelines/default.yaml: valid (1 pipeline(s), 1 contract(s))\n"),
        "{printed}"
    );
    for expected in [
        "    size: \"5s\"\n",
        "    min_samples: 42\n",
        "    token: \"<redacted>\"\n",
        "    stream_expiry: \"15m\"\n",
        "  contract/default:\n",
    ] {
        assert!(
            printed.contains(expected),
            "{expected:?} missing:\n{printed}"
        );
    }
    assert!(!printed.contains("s3cret-api-token"), "{printed}");

    let file = dir.0.join("effective.yaml");
    std::fs::write(&file, &printed).expect("write");
    let again = crate::verdict_command(["validate", "-c"])
        .arg(&file)
        .env_remove("VERDICT__PROCESSORS__WINDOW__SIZE")
        .output()
        .expect("verdict validate runs");
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let reprinted = crate::verdict_command(["validate", "--print-config", "-c"])
        .arg(&file)
        .output()
        .expect("verdict validate runs");
    let reprinted = String::from_utf8_lossy(&reprinted.stdout);
    // The same configuration, but for the header naming the file.
    let body = |text: &str| {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(body(&reprinted), body(&printed));
}

/// The start-up log names the effective windows and contracts.
#[test]
fn run_logs_the_effective_windows_and_contracts() {
    let dir = crate::TempDir::new("startup-log");
    let file = dir.0.join("pipeline.yaml");
    std::fs::write(
        &file,
        crate::durable::pipeline("memory:", &[], "    max_error_rate_percent: 2"),
    )
    .expect("write");
    let verdict = crate::durable::Verdict::start_with(
        &file,
        &[("VERDICT__PROCESSORS__CONTRACT_CHECKOUT__VERSION", "3")],
    );
    let lines = verdict.stderr.lock().expect("lock").clone();
    let configured: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "Pipeline configured.")
        .collect();
    assert_eq!(configured.len(), 1, "{lines:#?}");
    let line = &configured[0];
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["fields"]["pipeline"], "checkout", "{line}");
    assert_eq!(
        line["fields"]["window"], "1s windows, judged 200ms after they end",
        "{line}"
    );
    assert_eq!(
        line["fields"]["contracts"],
        "contract/checkout v3 (spans, subject service.version, sequential alpha 0.05): p95 <= 100ms, errors <= 2%, min_samples 1",
        "{line}"
    );
    verdict.terminate();
}
