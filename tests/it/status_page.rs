//! The status page of a live server, in a real headless browser (Debian's
//! `chromium`): the runs by contract, one run's charts and transitions, the
//! live refresh script allowed by the page's Content Security Policy, and
//! no write action anywhere.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::durable::{write_pipeline, Verdict};

/// The browser: `CHROMIUM` or `chromium` on the PATH.
fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

/// Runs headless chromium with `args` and `url`; its stdout.
pub(crate) async fn browse(args: &[&str], url: &str) -> String {
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--virtual-time-budget=3000",
    ])
    .args(args)
    .arg(url);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("joined")
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): install it with `apt-get install chromium` \
                 (.ci/run does), or point CHROMIUM at a Chromium binary",
                chromium()
            )
        });
    assert!(out.status.success(), "chromium failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A server with a rolled-back and a validating release.
async fn live(dir: &crate::TempDir) -> Verdict {
    let file = write_pipeline(
        dir,
        &[],
        "    max_error_rate_percent: 5\n    decision: windows\n    pass_windows: 100\n    fail_windows: 2",
    );
    let v = Verdict::start(&file);
    for _ in 0..3 {
        v.spans("2.0.0", 40, 20).await;
        v.spans("2.1.0", 40, 400).await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    v.run_until("2.1.0", "2.1.0 to roll back", |r| {
        r["state"] == "ROLLED_BACK"
    })
    .await;
    v.run_until("2.0.0", "2.0.0 to have windows", |r| {
        r["windows"].as_array().is_some_and(|w| w.len() >= 2)
    })
    .await;
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_page_shows_live_runs_in_a_real_browser() {
    let dir = crate::TempDir::new("status");
    let v = live(&dir).await;
    let base = format!("http://{}", v.api);

    // Plain HTTP: HTML, never cached, a policy that allows only itself.
    let resp = reqwest::get(format!("{base}/")).await.expect("page");
    assert_eq!(resp.status(), 200);
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    assert!(header("content-type").starts_with("text/html"));
    let csp = header("content-security-policy");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'sha256-"),
        "{csp}"
    );
    let raw = resp.text().await.expect("body");
    assert!(raw.contains("name=\"viewport\""), "readable on a phone");
    // Read-only: no form and no link to a write endpoint.
    for write in [
        "<form",
        "/api/v1/promote",
        "/api/v1/rollback",
        "/api/v1/reset",
    ] {
        assert!(!raw.contains(write), "{write} on the page");
    }

    // In the browser: the runs by contract, and the refresh script ran
    // (the policy's hash matches the script).
    let dom = browse(&["--dump-dom"], &format!("{base}/")).await;
    assert!(
        dom.contains("data-live=\"on\""),
        "the script did not run:\n{dom}"
    );
    for want in [
        "checkout",
        "2.0.0",
        "2.1.0",
        "ROLLED_BACK",
        "VALIDATING",
        "p95 ≤ 100 ms",
    ] {
        assert!(dom.contains(want), "{want:?} not on the overview:\n{dom}");
    }
    assert!(dom.contains("href=\"/runs/checkout/2.1.0\""), "{dom}");

    // One run: charts against the thresholds, windows, the transition.
    let dom = browse(&["--dump-dom"], &format!("{base}/runs/checkout/2.1.0")).await;
    assert!(dom.contains("data-live=\"on\""));
    for want in [
        "p95 latency per window",
        "max 100 ms",
        "error rate per window",
        "max 5.00%",
        "class=\"limit\"",
        "Transitions",
        "ROLLED_BACK",
        "fail",
    ] {
        assert!(dom.contains(want), "{want:?} not on the run page:\n{dom}");
    }
    assert!(dom.matches("<svg class=\"chart\"").count() >= 2, "{dom}");

    // A subject with no data has no run (yet); an unknown contract is a
    // 404 page.
    let dom = browse(&["--dump-dom"], &format!("{base}/runs/checkout/9.9.9")).await;
    assert!(dom.contains("no run for this subject yet"), "{dom}");
    let missing = reqwest::get(format!("{base}/runs/nope/1"))
        .await
        .expect("page");
    assert_eq!(missing.status(), 404);
    assert!(missing
        .text()
        .await
        .expect("body")
        .contains("unknown contract"));
}

/// Saves a screenshot of a run page for the README:
/// `cargo test --locked --test it -- --ignored status_page_screenshot`
/// writes `docs/status-run.png` (or `STATUS_SCREENSHOT`).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "writes docs/status-run.png; run on demand"]
async fn status_page_screenshot() {
    let dir = crate::TempDir::new("status-shot");
    let v = live(&dir).await;
    for _ in 0..4 {
        v.spans("2.0.0", 40, 20).await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let out = std::env::var("STATUS_SCREENSHOT").unwrap_or_else(|_| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs/status-run.png")
            .display()
            .to_string()
    });
    if let Some(parent) = Path::new(&out).parent() {
        std::fs::create_dir_all(parent).expect("docs dir");
    }
    browse(
        &[&format!("--screenshot={out}"), "--window-size=1000,1500"],
        &format!("http://{}/runs/checkout/2.1.0", v.api),
    )
    .await;
    assert!(std::fs::metadata(&out).expect("screenshot").len() > 10_000);
    eprintln!("saved {out}");
}

/// Without `service.api.token`, a page of another origin open in the
/// operator's browser cannot roll a release back: a "simple" `no-cors`
/// `POST` (no preflight) reaches the server but is refused, while a
/// script's request (no browser headers) still goes through.
#[tokio::test(flavor = "multi_thread")]
async fn a_web_page_cannot_write_without_the_token() {
    let dir = crate::TempDir::new("csrf");
    let file = write_pipeline(&dir, &[], "    max_error_rate_percent: 5");
    let yaml = std::fs::read_to_string(&file).expect("read");
    let open = yaml.replace(&format!(", token: \"{}\"", crate::durable::TOKEN), "");
    assert_ne!(open, yaml, "the token was not removed");
    std::fs::write(&file, open).expect("write");
    let v = Verdict::start(&file);
    v.spans("2.0.0", 20, 20).await;
    v.run_until("2.0.0", "2.0.0 to be validating", |r| {
        r["state"] == "VALIDATING"
    })
    .await;

    let target = format!("http://{}/api/v1/rollback/checkout/2.0.0", v.api);
    let page = format!(
        "<!doctype html><title>waiting</title><script>\
         fetch('{target}', {{method: 'POST', mode: 'no-cors', \
           headers: {{'Content-Type': 'text/plain'}}, body: '{{\"reason\": \"forged\"}}'}})\
         .then(function () {{ document.title = 'sent'; }}, \
               function () {{ document.title = 'failed'; }});\
         </script>"
    );
    let evil = crate::cors::serve_page(page).await;
    let dom = browse(&["--dump-dom"], &format!("http://localhost:{evil}/")).await;
    assert!(
        dom.contains("<title>sent</title>"),
        "the page did not send:\n{dom}"
    );
    let run = v.run("2.0.0").await;
    assert_eq!(run["state"], "VALIDATING", "a forged request wrote: {run}");

    // A script (no Origin, no Sec-Fetch-*) is not affected.
    let resp = reqwest::Client::new()
        .post(&target)
        .body(r#"{"reason": "from a script"}"#)
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    v.run_until("2.0.0", "2.0.0 rolled back by the script", |r| {
        r["state"] == "ROLLED_BACK"
    })
    .await;
}

/// Addresses the page has no answer for — a subject that is not UTF-8, a
/// run path without its subject, any other path — answer its HTML error
/// page (with a way back), not plain text or an empty body; under `/api/`
/// they stay JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_that_cannot_be_answered_are_html_error_pages() {
    let server = crate::start(&crate::config("    max_p95_latency_ms: 100", "size: 1s")).await;
    let base = format!("http://{}", server.api);
    for (path, status) in [
        ("/runs/%FF/x", 400),
        ("/runs/checkout/%FF", 400),
        ("/runs/%FF", 404),
        ("/nowhere", 404),
        ("/runs", 404),
        ("/runs/", 404),
        ("/runs/checkout", 404),
        ("/runs/checkout/", 404),
        ("/runs/checkout/%ZZ", 400),
        ("/runs/checkout/typo/1", 404),
    ] {
        let resp = reqwest::get(format!("{base}{path}")).await.expect("page");
        assert_eq!(resp.status().as_u16(), status, "{path}");
        let kind = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(kind.starts_with("text/html"), "{path}: {kind}");
        let page = resp.text().await.expect("body");
        assert!(
            page.contains("<html") && page.contains("href=\"/\""),
            "{path}: {page}"
        );
        let says = match path {
            "/runs/checkout/%ZZ" => "invalid %-escape",
            "/runs/checkout/typo/1" => "no run for this subject yet",
            "/runs" | "/runs/" | "/runs/checkout" | "/runs/checkout/" => {
                "a run&#39;s page is /runs/CONTRACT/SUBJECT"
            }
            _ => "",
        };
        assert!(page.contains(says), "{path}: {says:?} not in {page}");
    }
    // The API still answers PENDING for a subject without a run (Argo).
    let (status, run) = crate::get_json(&format!("{base}/api/v1/runs/checkout/typo/1")).await;
    assert_eq!(
        (status, run["state"].as_str()),
        (200, Some("PENDING")),
        "{run}"
    );
    let resp = reqwest::get(format!("{base}/api/v2/runs"))
        .await
        .expect("answer");
    assert_eq!(resp.status().as_u16(), 404);
    let body: serde_json::Value = resp.json().await.expect("JSON");
    assert!(body["error"].is_string(), "{body}");
    server
        .shutdown(std::time::Duration::from_secs(5))
        .await
        .expect("stops");
}

/// The API listener's answers are gzip-compressed for a client that asks
/// (the overview of thousands of runs is megabytes of HTML), and plain for
/// one that does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_gzipped_when_the_client_asks() {
    use std::io::Read as _;
    let server = crate::start(&crate::config("    max_p95_latency_ms: 100", "size: 1s")).await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/", server.api);
    let gzipped = client
        .get(&url)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .expect("page");
    assert_eq!(
        gzipped
            .headers()
            .get("content-encoding")
            .map(|v| v.as_bytes()),
        Some(&b"gzip"[..])
    );
    let bytes = gzipped.bytes().await.expect("body");
    let mut page = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut page)
        .expect("gzip");
    let plain = client.get(&url).send().await.expect("page");
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.text().await.expect("body");
    assert!(page.contains("<html") && plain.contains("<html"), "{page}");
    assert!(
        bytes.len() < plain.len(),
        "{} >= {}",
        bytes.len(),
        plain.len()
    );
    server
        .shutdown(std::time::Duration::from_secs(5))
        .await
        .expect("stops");
}
