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
