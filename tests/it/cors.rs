//! CORS on OTLP/HTTP for browser SDKs: preflights from allowed origins
//! (wildcards included) answered 204 with the allow headers, other origins
//! refused without any CORS header, exports from allowed origins marked so
//! the page can read the answer — with real HTTP requests, and in a real
//! headless browser whose page at another origin posts OTLP/JSON with
//! `fetch()`. Without `cors:` nothing changes.

use std::time::Duration;

use crate::durable::{write_pipeline, Verdict};
use crate::{now_ns, TempDir};

/// The real binary with `cors` (YAML flow map) on its OTLP/HTTP listener.
fn server(dir: &TempDir, cors: &str) -> Verdict {
    let file = write_pipeline(dir, &[], "");
    let yaml = std::fs::read_to_string(&file).expect("read");
    let http = "http: { endpoint: \"127.0.0.1:0\" }";
    assert!(yaml.contains(http));
    let with = format!("http: {{ endpoint: \"127.0.0.1:0\", cors: {cors} }}");
    std::fs::write(&file, yaml.replace(http, &with)).expect("write");
    Verdict::start(&file)
}

/// One span of `version` as OTLP/JSON, ending now.
fn span_json(version: &str) -> String {
    let end = now_ns();
    serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "checkout"}},
            {"key": "service.version", "value": {"stringValue": version}}]},
        "scopeSpans": [{"spans": [{"kind": 2, "name": "GET /",
            "startTimeUnixNano": (end - 5_000_000).to_string(),
            "endTimeUnixNano": end.to_string()}]}]}]})
    .to_string()
}

/// A browser's preflight of a JSON export from `origin`.
async fn preflight(v: &Verdict, origin: &str, headers: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("http://{}/v1/traces", v.http),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", headers)
        .send()
        .await
        .expect("OPTIONS")
}

async fn export(
    v: &Verdict,
    origin: Option<&str>,
    content_type: &str,
    body: String,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("http://{}/v1/traces", v.http))
        .header("content-type", content_type)
        .body(body);
    if let Some(origin) = origin {
        req = req.header("origin", origin);
    }
    req.send().await.expect("POST")
}

/// The `access-control-*` headers of an answer.
fn cors_headers(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .keys()
        .map(|k| k.as_str().to_string())
        .filter(|k| k.starts_with("access-control-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn preflights_and_exports_from_allowed_origins_only() {
    let dir = TempDir::new("cors-http");
    let v = server(
        &dir,
        "{ allowed_origins: [\"https://app.example.com\", \"https://*.shop.example\"], \
         allowed_headers: [X-Tenant], max_age: 600 }",
    );
    for origin in ["https://app.example.com", "https://eu.shop.example"] {
        let resp = preflight(&v, origin, "content-type,x-tenant").await;
        assert_eq!(resp.status(), 204, "{origin}");
        let h = resp.headers();
        assert_eq!(h["access-control-allow-origin"], origin);
        assert_eq!(h["access-control-allow-methods"], "POST");
        let allowed = h["access-control-allow-headers"].to_str().unwrap_or("");
        assert!(
            allowed.contains("content-type") && allowed.contains("x-tenant"),
            "{allowed}"
        );
        assert_eq!(h["access-control-max-age"], "600");
        assert!(h["vary"].to_str().unwrap_or("").contains("origin"));
    }
    for origin in ["https://evil.example", "https://shop.example", "null"] {
        let resp = preflight(&v, origin, "content-type").await;
        assert_eq!(resp.status(), 403, "{origin}");
        assert_eq!(cors_headers(&resp), Vec::<String>::new(), "{origin}");
    }
    // Exports: the allowed origin's answers are marked, refusals too;
    // another origin's are not (a browser keeps them from the page), and
    // a client without Origin is no browser and is served as ever.
    let app = Some("https://app.example.com");
    for (origin, content_type, status, marked) in [
        (app, "application/json", 200, app),
        (app, "text/plain", 415, app),
        (Some("https://evil.example"), "application/json", 200, None),
        (None, "application/json", 200, None),
    ] {
        let resp = export(&v, origin, content_type, span_json("1.0")).await;
        assert_eq!(resp.status(), status, "{origin:?} {content_type}");
        assert_eq!(
            resp.headers()
                .get("access-control-allow-origin")
                .and_then(|v| v.to_str().ok()),
            marked,
            "{origin:?} {content_type}"
        );
    }
    // An OPTIONS that is no preflight is what it was.
    let resp = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("http://{}/v1/traces", v.http),
        )
        .send()
        .await
        .expect("OPTIONS");
    assert_eq!(resp.status(), 405);
    v.run_until("1.0", "the three accepted spans", |r| {
        r["run"]["samples"] == 3
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_cors_nothing_changes() {
    let dir = TempDir::new("cors-none");
    let file = write_pipeline(&dir, &[], "");
    let v = Verdict::start(&file);
    let resp = preflight(&v, "https://app.example.com", "content-type").await;
    assert_eq!(resp.status(), 405);
    assert_eq!(cors_headers(&resp), Vec::<String>::new());
    let resp = export(
        &v,
        Some("https://app.example.com"),
        "application/json",
        span_json("1.0"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(cors_headers(&resp), Vec::<String>::new());
}

/// Serves `page` at `/` on 127.0.0.1 (any port) until the test ends;
/// returns the port.
pub(crate) async fn serve_page(page: String) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let page = page.clone();
            async move { axum::response::Html(page) }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    port
}

/// A page whose script posts a span of `version`, ending as it is sent,
/// as OTLP/JSON to `url` with `fetch()` (a JSON body needs a preflight)
/// and writes the outcome into the page.
fn page(url: &str, version: &str) -> String {
    format!(
        r#"<!doctype html><html><body><pre id="out">pending</pre><script>
const end = BigInt(Date.now()) * 1000000n;
const span = {{kind: 2, name: "GET /", startTimeUnixNano: String(end - 5000000n), endTimeUnixNano: String(end)}};
const body = JSON.stringify({{resourceSpans: [{{
  resource: {{attributes: [
    {{key: "service.name", value: {{stringValue: "checkout"}}}},
    {{key: "service.version", value: {{stringValue: {version:?}}}}}]}},
  scopeSpans: [{{spans: [span]}}]}}]}});
fetch({url:?}, {{method: "POST", headers: {{"Content-Type": "application/json"}}, body}})
  .then(r => r.text().then(t => {{ document.getElementById("out").textContent = "status " + r.status + " " + t; }}))
  .catch(e => {{ document.getElementById("out").textContent = "blocked " + e; }});
</script></body></html>"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_page_at_an_allowed_origin_sends_spans_and_another_cannot() {
    let dir = TempDir::new("cors-browser");
    // Pages are served from 127.0.0.1 (allowed, any port) and reached as
    // localhost too: the same page at another origin.
    let v = server(
        &dir,
        "{ allowed_origins: [\"http://127.0.0.1:*\"], max_age: 60 }",
    );
    let url = format!("http://{}/v1/traces", v.http);
    let allowed = serve_page(page(&url, "browser")).await;
    let dom = crate::status_page::browse(
        &["--dump-dom", "--virtual-time-budget=10000"],
        &format!("http://127.0.0.1:{allowed}/"),
    )
    .await;
    assert!(dom.contains("status 200 {}"), "{dom}");

    let other = serve_page(page(&url, "elsewhere")).await;
    let dom = crate::status_page::browse(
        &["--dump-dom", "--virtual-time-budget=10000"],
        &format!("http://localhost:{other}/"),
    )
    .await;
    assert!(dom.contains("blocked TypeError"), "{dom}");

    v.run_until("browser", "the browser's span", |r| {
        r["run"]["samples"] == 1
    })
    .await;
    // The other page's preflight was refused: nothing was sent.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, body) = crate::get_json(&v.api("/api/v1/runs/checkout/elsewhere")).await;
    assert!(
        status == 404 || body["run"]["samples"] == 0,
        "{status} {body}"
    );
}
