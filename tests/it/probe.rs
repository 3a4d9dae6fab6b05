//! `verdict probe` and the probe engine against a local axum target whose
//! latency, error rate and conversion header each test sets; the hooks
//! against a local receiver; and the `probe` receiver driving a pipeline to
//! its verdicts. Assertions are on counts and sentences, never on timing.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use verdict::config::probe_plan::parse_url;
use verdict::config::{Amount, ProbePlan};
use verdict::probe::engine;
use verdict::probe::Failure;

use crate::{final_run_is, start};

/// How the target answers request number `n` (0-based, in arrival order).
#[derive(Debug, Clone, Copy)]
struct Behavior {
    /// Latency of every request.
    latency_ms: u64,
    /// Every `slow_every`-th request (0 = none) takes `slow_ms` instead.
    slow_every: u64,
    slow_ms: u64,
    /// Every `error_every`-th request (0 = none) answers `error_status`.
    error_every: u64,
    error_status: u16,
    /// Every `convert_every`-th request (0 = none) carries the conversion header.
    convert_every: u64,
    /// The conversion header's name.
    convert_header: &'static str,
}

impl Default for Behavior {
    fn default() -> Self {
        Behavior {
            latency_ms: 1,
            slow_every: 0,
            slow_ms: 0,
            error_every: 0,
            error_status: 503,
            convert_every: 0,
            convert_header: "x-validation-converted",
        }
    }
}

/// What the target saw.
#[derive(Debug, Default)]
struct Seen {
    requests: AtomicU64,
    client_ports: Mutex<HashSet<u16>>,
    last: Mutex<Option<(Method, HeaderMap, Bytes)>>,
}

struct Target {
    url: String,
    seen: Arc<Seen>,
}

fn every(n: u64, k: u64) -> bool {
    k > 0 && n.is_multiple_of(k)
}

async fn answer(
    State((behavior, seen)): State<(Behavior, Arc<Seen>)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let n = seen.requests.fetch_add(1, Ordering::SeqCst);
    seen.client_ports.lock().unwrap().insert(peer.port());
    *seen.last.lock().unwrap() = Some((method, headers, body));
    let ms = if every(n, behavior.slow_every) {
        behavior.slow_ms
    } else {
        behavior.latency_ms
    };
    tokio::time::sleep(Duration::from_millis(ms)).await;
    let status = if every(n, behavior.error_every) {
        StatusCode::from_u16(behavior.error_status).expect("a status")
    } else {
        StatusCode::OK
    };
    let converted = if every(n, behavior.convert_every) {
        "true"
    } else {
        "false"
    };
    (
        status,
        [(behavior.convert_header, converted)],
        "{\"ok\":true}",
    )
        .into_response()
}

/// Serves `behavior` on 127.0.0.1:0 for the rest of the test.
async fn target(behavior: Behavior) -> Target {
    let seen = Arc::new(Seen::default());
    let app = axum::Router::new()
        .fallback(answer)
        .with_state((behavior, seen.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    Target {
        url: format!("http://{addr}/api/v1/mvp"),
        seen,
    }
}

/// A URL on which nothing listens.
async fn closed_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}/")
}

/// Hook receiver: answers the first `fail_first` POSTs with 503, then 200;
/// keeps every body.
#[derive(Debug, Default)]
struct Hook {
    fail_first: u64,
    attempts: AtomicU64,
    bodies: Mutex<Vec<Value>>,
}

async fn hook(hook: Arc<Hook>) -> String {
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(|State(h): State<Arc<Hook>>, body: Bytes| async move {
                let n = h.attempts.fetch_add(1, Ordering::SeqCst);
                if n < h.fail_first {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
                h.bodies.lock().unwrap().push(json);
                StatusCode::OK
            }),
        )
        .with_state(hook);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/hook")
}

/// Serves `app` on 127.0.0.1:0 for the rest of the test; returns its
/// `/hook` URL.
async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/hook")
}

/// Runs the real binary with a pipe for stdout and stderr.
async fn verdict(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        crate::verdict_command(&args)
            .output()
            .expect("verdict runs")
    })
    .await
    .expect("joined")
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Runs `verdict probe ARGS` (split on whitespace) and parses stdout, which
/// must be exactly one JSON document.
async fn probe(line: &str) -> (Option<i32>, Value, String) {
    let mut all = args(&["probe"]);
    all.extend(line.split_whitespace().map(String::from));
    let out = verdict(all).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("stdout is not one JSON document ({e}): {stdout:?}\nstderr: {stderr}")
    });
    (out.status.code(), json, stderr)
}

fn failures(json: &Value) -> Vec<String> {
    json["failures"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passing_probe_exits_0_with_only_the_result_on_stdout() {
    let t = target(Behavior {
        convert_every: 2,
        ..Behavior::default()
    })
    .await;
    let (code, json, stderr) = probe(&format!(
        "--url {} --requests 200 --concurrency 8 --timeout 5s \
             --max-p95-latency-ms 500 --max-error-rate-percent 1 \
             --min-conversion-rate-percent 40",
        t.url
    ))
    .await;
    assert_eq!(code, Some(0), "{json}\n{stderr}");
    assert_eq!(json["passed"], true);
    assert_eq!(json["sample_size"], 200);
    assert_eq!(json["error_rate_percent"], 0.0);
    assert_eq!(json["conversion_rate_percent"], 50.0);
    assert!(json["p95_latency_ms"].as_f64().is_some_and(|v| v > 0.0));
    assert_eq!(json["failures"], serde_json::json!([]));
    assert_eq!(json["thresholds"]["max_p95_latency_ms"], 500.0);
    // A pipe gets the result and nothing else: no progress bar, no logs.
    assert_eq!(stderr, "");
    assert_eq!(t.seen.requests.load(Ordering::SeqCst), 200);

    // Keep-alive: the pool is sized to the concurrency, so 200 requests
    // travel over at most 8 connections (a pool of one would reconnect).
    let ports = t.seen.client_ports.lock().unwrap().len();
    assert!(
        (1..=8).contains(&ports),
        "{ports} connections for 200 requests"
    );
    let (_, headers, _) = t.seen.last.lock().unwrap().clone().expect("a request");
    let agent = headers["user-agent"].to_str().unwrap_or("");
    assert_eq!(
        agent,
        format!("verdict-probe/{}", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_p95_fails_with_the_contract_sentence() {
    let t = target(Behavior {
        slow_every: 10,
        slow_ms: 150,
        ..Behavior::default()
    })
    .await;
    let (code, json, _) = probe(&format!(
        "--url {} -n 200 --concurrency 20 --max-p95-latency-ms 100 --max-error-rate-percent 1",
        t.url
    ))
    .await;
    assert_eq!(code, Some(1), "{json}");
    assert_eq!(json["passed"], false);
    let f = failures(&json);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].starts_with("p95 latency 1"), "{f:?}");
    assert!(f[0].ends_with("ms exceeds threshold 100ms"), "{f:?}");
    assert!(json["p95_latency_ms"].as_f64().is_some_and(|v| v >= 150.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_fail_on_the_error_rate() {
    let t = target(Behavior {
        error_every: 10,
        convert_every: 1,
        ..Behavior::default()
    })
    .await;
    let (code, json, _) = probe(&format!(
        "--url {} -n 200 --concurrency 10 --max-error-rate-percent 5",
        t.url
    ))
    .await;
    assert_eq!(code, Some(1), "{json}");
    assert_eq!(failures(&json), ["error rate 10.0% exceeds threshold 5%"]);
    assert_eq!(json["requests_failed"], 20);
    assert_eq!(json["requests_failed_by_cause"]["HTTP 503"], 20);
    assert_eq!(
        json["status_codes"],
        serde_json::json!({"200": 180, "503": 20})
    );
    // A 5xx never converts, even with the header.
    assert_eq!(json["conversion_rate_percent"], 90.0);
}

/// 5000 answers of 404 used to pass as 5000 successes, with nothing in the
/// result to say so. A 4xx is an error unless `--allow-4xx`, and
/// `status_codes` says what the target answered either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_fail_unless_allowed_and_every_status_is_counted() {
    let t = target(Behavior {
        error_every: 10,
        error_status: 404,
        ..Behavior::default()
    })
    .await;
    let common = format!("--url {} -n 200 --max-error-rate-percent 5", t.url);
    let (code, json, _) = probe(&common).await;
    assert_eq!(code, Some(1), "{json}");
    assert_eq!(failures(&json), ["error rate 10.0% exceeds threshold 5%"]);
    assert_eq!(json["requests_failed_by_cause"]["HTTP 404"], 20);
    assert_eq!(
        json["status_codes"],
        serde_json::json!({"200": 180, "404": 20})
    );
    assert_eq!(json["allow_4xx"], false);

    let (code, json, _) = probe(&format!("{common} --allow-4xx")).await;
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["error_rate_percent"], 0.0);
    assert_eq!(json["requests_failed"], 0);
    assert_eq!(
        json["status_codes"],
        serde_json::json!({"200": 180, "404": 20})
    );
    assert_eq!(json["allow_4xx"], true);

    // Every request a 404: the same clear failure as a down target.
    let all = target(Behavior {
        error_every: 1,
        error_status: 404,
        ..Behavior::default()
    })
    .await;
    let (code, json, _) = probe(&format!(
        "--url {} -n 10 --max-p95-latency-ms 1000",
        all.url
    ))
    .await;
    assert_eq!(code, Some(1), "{json}");
    assert_eq!(failures(&json), ["all 10 requests failed: HTTP 404"]);
}

/// A probe with no threshold passed whatever the target answered; the server
/// refuses a contract without thresholds, and so does the probe: a usage
/// error, before any request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_without_thresholds_is_a_usage_error() {
    let t = target(Behavior::default()).await;
    let out = verdict(args(&["probe", "--url", t.url.as_str(), "-n", "5"])).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains("no threshold set")
            && stderr.contains("--max-error-rate-percent")
            && stderr.contains("--contract"),
        "{stderr}"
    );
    assert_eq!(t.seen.requests.load(Ordering::SeqCst), 0);
}

/// `-c` is `--config` in `run` and `validate`; in `probe` it meant
/// `--concurrency`. Now it is nothing in `probe` (a usage error, not a
/// silently different meaning), and concurrency is `--concurrency` only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dash_c_never_means_concurrency() {
    let t = target(Behavior::default()).await;
    let out = verdict(args(&[
        "probe",
        "--url",
        t.url.as_str(),
        "-c",
        "5",
        "--max-error-rate-percent",
        "5",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("'-c'"));
    assert_eq!(t.seen.requests.load(Ordering::SeqCst), 0);
    for (command, has_dash_c) in [("run", true), ("validate", true), ("probe", false)] {
        let out = verdict(args(&[command, "--help"])).await;
        let help = String::from_utf8_lossy(&out.stdout);
        assert_eq!(help.contains("-c, --config"), has_dash_c, "{help}");
        assert!(!help.contains("-c, --concurrency"), "{help}");
    }
}

/// With `--contract`, the contract's `min_samples` applies: the server would
/// not promote on fewer samples, and neither does the probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contracts_min_samples_applies() {
    let t = target(Behavior::default()).await;
    let pipeline = crate::TempFile::new(
        "probe-min-samples",
        "pipeline.yaml",
        r#"
receivers:
  otlp: { protocols: { http: { endpoint: "127.0.0.1:0" } } }
processors:
  contract/checkout:
    match: { service.name: checkout }
    max_error_rate_percent: 1
    min_samples: 50
pipelines:
  checkout: { receivers: [otlp], processors: [contract/checkout] }
"#,
    );
    let reference = format!("{}:contract/checkout", pipeline.path.display());
    let (code, json, _) = probe(&format!("--url {} -n 20 --contract {reference}", t.url)).await;
    assert_eq!(code, Some(1), "{json}");
    assert_eq!(failures(&json), ["sample size 20 is below min_samples 50"]);
    assert_eq!(json["min_samples"], 50);
    let (code, json, _) = probe(&format!("--url {} -n 50 --contract {reference}", t.url)).await;
    assert_eq!(code, Some(0), "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_conversion_fails_and_the_header_name_is_configurable() {
    let t = target(Behavior {
        convert_every: 10,
        convert_header: "x-bought",
        ..Behavior::default()
    })
    .await;
    let common = format!("--url {} -n 100 --concurrency 10", t.url);
    let (code, json, _) = probe(&format!(
        "{common} --conversion-header x-bought --min-conversion-rate-percent 20"
    ))
    .await;
    assert_eq!(code, Some(1), "{json}");
    assert_eq!(json["conversion_rate_percent"], 10.0);
    assert_eq!(
        failures(&json),
        ["conversion rate 10.0% is below threshold 20%"]
    );
    // Under the default header name nothing converts.
    let (_, json, _) = probe(&format!("{common} --min-conversion-rate-percent 5")).await;
    assert_eq!(json["conversion_rate_percent"], 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_target_is_a_clear_failure_and_calls_on_fail() {
    let url = closed_url().await;
    let on_fail = Arc::new(Hook::default());
    let on_pass = Arc::new(Hook::default());
    let (fail_url, pass_url) = (hook(on_fail.clone()).await, hook(on_pass.clone()).await);
    let (code, json, stderr) = probe(&format!(
        "--url {} --requests 50 --concurrency 5 \
             --max-error-rate-percent 2 --on-pass {} --on-fail {}",
        url, pass_url, fail_url
    ))
    .await;
    assert_eq!(code, Some(1), "{json}\n{stderr}");
    assert_eq!(
        failures(&json),
        [
            "all 50 requests failed: connection refused",
            "error rate 100.0% exceeds threshold 2%"
        ]
    );
    assert_eq!(json["sample_size"], 50);
    assert_eq!(json["p95_latency_ms"], Value::Null);
    assert_eq!(json["requests_failed_by_cause"]["connection refused"], 50);
    // The hook got the very JSON printed on stdout; on-pass got nothing.
    assert_eq!(*on_fail.bodies.lock().unwrap(), [json]);
    assert_eq!(on_pass.attempts.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_pass_is_retried_until_delivered() {
    let t = target(Behavior::default()).await;
    let on_pass = Arc::new(Hook {
        fail_first: 2,
        ..Hook::default()
    });
    let pass_url = hook(on_pass.clone()).await;
    let (code, json, stderr) = probe(&format!(
        "--url {} -n 20 --max-error-rate-percent 0 --on-pass {}",
        t.url, pass_url
    ))
    .await;
    assert_eq!(code, Some(0), "{json}\n{stderr}");
    assert_eq!(on_pass.attempts.load(Ordering::SeqCst), 3);
    assert_eq!(*on_pass.bodies.lock().unwrap(), [json]);
}

/// A hook that cannot be delivered says why, down to the root cause:
/// reqwest's own message was `error sending request for url (…)`, naming no
/// cause (a refused connection here; a DNS failure reads
/// `… dns error: failed to lookup address information: …`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undelivered_hook_names_its_root_cause() {
    let t = target(Behavior::default()).await;
    let closed = closed_url().await;
    let (code, _, stderr) = probe(&format!(
        "--url {} -n 5 --max-error-rate-percent 0 --on-pass {closed}hook",
        t.url
    ))
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("hook not delivered")
            && stderr.contains("error sending request: ")
            && stderr.contains("Connection refused"),
        "{stderr}"
    );
}

/// Hooks never follow redirects: a followed 301 turned the POST into a GET
/// without the result, which the new location answered 200 — reported as
/// delivered. A 3xx is retried like a 5xx, then reported with the location.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_do_not_follow_redirects() {
    let t = target(Behavior::default()).await;
    // The location: counts every request, of any method.
    let elsewhere = Arc::new(AtomicU64::new(0));
    let location = serve(axum::Router::new().fallback({
        let elsewhere = elsewhere.clone();
        move || async move {
            elsewhere.fetch_add(1, Ordering::SeqCst);
            StatusCode::OK
        }
    }))
    .await;
    let moved = serve(axum::Router::new().fallback({
        let location = location.clone();
        move || async move { (StatusCode::MOVED_PERMANENTLY, [("location", location)]) }
    }))
    .await;
    let (code, _, stderr) = probe(&format!(
        "--url {} -n 5 --max-error-rate-percent 0 --on-pass {moved}",
        t.url
    ))
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(elsewhere.load(Ordering::SeqCst), 0, "{stderr}");
    assert!(
        stderr.contains("hook not delivered")
            && stderr.contains("gave up after 5 attempts")
            && stderr.contains(&format!(
                "HTTP 301 Moved Permanently: redirect to {location} not followed"
            )),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_count_as_errors_at_the_timeout() {
    let t = target(Behavior {
        slow_every: 5,
        slow_ms: 3_000,
        ..Behavior::default()
    })
    .await;
    let mut plan = ProbePlan::new(parse_url(t.url.as_str()).unwrap());
    plan.amount = Amount::Requests(10);
    plan.concurrency = 10;
    plan.timeout = Duration::from_millis(300);
    let result = engine::run(&plan, Arc::new(()))
        .await
        .expect("client builds");
    let tally = &result.tally;
    assert_eq!(tally.requests(), 10);
    assert_eq!(tally.failures.get(&Failure::Timeout), Some(&2));
    assert_eq!(tally.failed(), 2);
    // Timed-out requests count in the latencies, at the time they were given up.
    assert_eq!(tally.accum.latency.count(), 10);
    assert!(tally.accum.latency.max().is_some_and(|m| m >= 300.0));

    // Every request timing out is the same clear failure as a down target.
    let (code, json, _) = probe(&format!(
        "--url {} -n 1 --timeout 200ms --max-error-rate-percent 100",
        t.url
    ))
    .await;
    assert_eq!(code, Some(1));
    assert_eq!(failures(&json), ["all 1 requests failed: timeout"]);
}

/// A server that closes every connection after one answer (without saying
/// so) costs a reconnect, not an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_keep_alive_connections_are_reopened() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicU64::new(0));
    let accepted = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                // Dropped: closed with no `Connection: close`.
            });
        }
    });
    let mut plan = ProbePlan::new(parse_url(&format!("http://{addr}/")).unwrap());
    plan.amount = Amount::Requests(40);
    plan.concurrency = 4;
    let result = engine::run(&plan, Arc::new(()))
        .await
        .expect("client builds");
    assert_eq!(result.tally.requests(), 40);
    assert_eq!(result.tally.failed(), 0, "{:?}", result.tally.failures);
    assert_eq!(connections.load(Ordering::SeqCst), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_headers_and_body_are_sent() {
    let t = target(Behavior::default()).await;
    let body_file = crate::TempFile::new("probe-body", "body.json", "{\"cart\":[1,2]}");
    let body = &body_file.path;
    let (code, _, _) = probe(&format!(
        "--url {} -n 3 --method POST --header X-Tenant:blue -H \
             content-type:application/json --body {} --max-error-rate-percent 0",
        t.url,
        body.display()
    ))
    .await;
    assert_eq!(code, Some(0));
    let (method, headers, sent) = t.seen.last.lock().unwrap().clone().expect("a request");
    assert_eq!(method, Method::POST);
    assert_eq!(headers["x-tenant"], "blue");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(&sent[..], b"{\"cart\":[1,2]}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duration_and_rate_bound_the_run() {
    let t = target(Behavior::default()).await;
    let mut plan = ProbePlan::new(parse_url(t.url.as_str()).unwrap());
    plan.amount = Amount::Duration(Duration::from_secs(1));
    plan.rate = Some(20.0);
    plan.concurrency = 4;
    let result = engine::run(&plan, Arc::new(()))
        .await
        .expect("client builds");
    // Request i is due at i/20 s; those due before the end of the second run.
    assert_eq!(result.tally.requests(), 20);
    assert_eq!(t.seen.requests.load(Ordering::SeqCst), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_flag_takes_thresholds_from_a_pipeline_file() {
    let t = target(Behavior {
        slow_every: 2,
        slow_ms: 30,
        ..Behavior::default()
    })
    .await;
    let pipeline = crate::TempFile::new(
        "probe-contract",
        "pipeline.yaml",
        r#"
receivers:
  otlp: { protocols: { http: { endpoint: "127.0.0.1:0" } } }
processors:
  contract/checkout:
    match: { service.name: checkout }
    max_p95_latency_ms: 5
    max_error_rate_percent: 1
pipelines:
  checkout: { receivers: [otlp], processors: [contract/checkout] }
service:
  api: { endpoint: "127.0.0.1:0" }
"#,
    );
    let file = &pipeline.path;
    let reference = format!("{}:contract/checkout", file.display());
    let (code, json, _) = probe(&format!("--url {} -n 20 --contract {}", t.url, reference)).await;
    assert_eq!(code, Some(1), "{json}");
    assert_eq!(json["thresholds"]["max_p95_latency_ms"], 5.0);
    assert_eq!(json["thresholds"]["max_error_rate_percent"], 1.0);
    assert!(failures(&json)[0].ends_with("exceeds threshold 5ms"));

    // Config and usage errors exit 2, with a message and no JSON.
    for bad in [
        format!("{}:contract/nope", file.display()),
        format!("{}.missing:contract/checkout", file.display()),
        "no-colon".to_string(),
    ] {
        let out = verdict(args(&[
            "probe",
            "--url",
            t.url.as_str(),
            "--contract",
            &bad,
        ]))
        .await;
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(out.stdout.is_empty(), "{bad}");
        assert!(!out.stderr.is_empty(), "{bad}");
    }
    let out = verdict(args(&[
        "probe",
        "--url",
        t.url.as_str(),
        "--contract",
        &format!("{}:contract/nope", file.display()),
    ]))
    .await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("contract/checkout"));
    for usage in [
        vec!["probe", "--url", "ftp://x/"],
        vec!["probe", "--url", "https://x/"],
        vec![
            "probe",
            "--url",
            t.url.as_str(),
            "--max-error-rate-percent",
            "140",
        ],
        vec![
            "probe",
            "--url",
            t.url.as_str(),
            "--requests",
            "5",
            "--duration",
            "1s",
        ],
        vec!["probe", "--url", t.url.as_str(), "--concurrency", "0"],
        vec![
            "probe",
            "--url",
            t.url.as_str(),
            "--contract",
            &reference,
            "--max-p95-latency-ms",
            "5",
        ],
        vec![
            "probe",
            "--url",
            t.url.as_str(),
            "--body",
            "/nonexistent/body",
        ],
    ] {
        let out = verdict(args(&usage)).await;
        assert_eq!(out.status.code(), Some(2), "{usage:?}");
        assert!(out.stdout.is_empty(), "{usage:?}");
    }
}

/// On a terminal (a pseudo-terminal from `script`), a progress bar with the
/// live p95 and error rate is drawn on stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_gets_a_progress_bar() {
    let t = target(Behavior::default()).await;
    let out = verdict_in_pty(&format!(
        "probe --url {} --duration 1500ms --rate 40 --max-error-rate-percent 0",
        t.url
    ))
    .await;
    let screen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{screen}");
    assert!(screen.contains("req/s · p95 "), "{screen}");
    assert!(screen.contains("errors 0.0%"), "{screen}");
    assert!(screen.contains("\"passed\": true"), "{screen}");

    // `--json` keeps a terminal quiet too.
    let out = verdict_in_pty(&format!(
        "probe --json --url {} --duration 1500ms --rate 40 --max-error-rate-percent 0",
        t.url
    ))
    .await;
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(!screen.contains("req/s"), "{screen}");
    assert!(screen.contains("\"passed\":true"), "{screen}");
}

/// Runs `verdict ARGS` (split on whitespace) on a pseudo-terminal.
async fn verdict_in_pty(line: &str) -> Output {
    let verdict = crate::verdict_command(line.split_whitespace());
    let command = std::iter::once(verdict.get_program())
        .chain(verdict.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    tokio::task::spawn_blocking(move || {
        Command::new("script")
            .args(["-qefc", &command, "/dev/null"])
            .output()
            .expect("script (util-linux) runs")
    })
    .await
    .expect("joined")
}

/// The probe receiver validates a contract on synthetic traffic alone: a
/// healthy release is promoted and a failing one rolled back, through the
/// same windows and run engine as OTLP data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_receiver_drives_runs_to_their_verdicts() {
    let good = target(Behavior {
        convert_every: 2,
        ..Behavior::default()
    })
    .await;
    let bad = target(Behavior {
        error_every: 4,
        convert_every: 2,
        ..Behavior::default()
    })
    .await;
    let yaml = format!(
        r#"
receivers:
  probe/good:
    url: {good}
    duration: 4s
    rate: 50
    concurrency: 4
    resource: {{ service.name: checkout, service.version: "2.0.0" }}
  probe/bad:
    url: {bad}
    duration: 4s
    rate: 50
    concurrency: 4
    resource: {{ service.name: checkout, service.version: "2.1.0" }}
processors:
  window: {{ size: 1s, allowed_lateness: 300ms }}
  contract/checkout:
    match: {{ service.name: checkout, verdict.synthetic: "true" }}
    max_p95_latency_ms: 500
    max_error_rate_percent: 5
    min_conversion_rate_percent: 30
    min_samples: 60
    decision: windows
    min_window_samples: 10
    pass_windows: 2
pipelines:
  checkout:
    receivers: [probe/good, probe/bad]
    processors: [window, contract/checkout]
    exporters: []
service:
  api: {{ endpoint: "127.0.0.1:0" }}
  storage: "memory:"
"#,
        good = good.url,
        bad = bad.url
    );
    let server = start(&yaml).await;
    let api = server.api;
    for (version, state, reason) in [
        ("2.0.0", "PROMOTED", "all checks within limits"),
        ("2.1.0", "ROLLED_BACK", "exceeds threshold 5%"),
    ] {
        final_run_is(api, &format!("checkout/{version}"), state, reason).await;
    }
    assert!(good.seen.requests.load(Ordering::SeqCst) > 0);
    server
        .shutdown(Duration::from_secs(10))
        .await
        .expect("clean shutdown");
}

/// The probe receiver judges answers by the same rule as `verdict probe`: a
/// 4xx is an error sample unless the receiver sets `allow_4xx` (it used to
/// count as a success, so a release answering 404 could be promoted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_receiver_counts_client_errors_as_errors_unless_allowed() {
    let t = target(Behavior {
        error_every: 4,
        error_status: 404,
        ..Behavior::default()
    })
    .await;
    let yaml = format!(
        r#"
receivers:
  probe/strict:
    url: {url}
    duration: 4s
    rate: 50
    concurrency: 4
    resource: {{ service.name: checkout, service.version: "2.2.0" }}
  probe/lenient:
    url: {url}
    duration: 4s
    rate: 50
    concurrency: 4
    allow_4xx: true
    resource: {{ service.name: checkout, service.version: "2.3.0" }}
processors:
  window: {{ size: 1s, allowed_lateness: 300ms }}
  contract/checkout:
    match: {{ service.name: checkout, verdict.synthetic: "true" }}
    max_error_rate_percent: 5
    min_samples: 60
    decision: windows
    min_window_samples: 10
    pass_windows: 2
pipelines:
  checkout:
    receivers: [probe/strict, probe/lenient]
    processors: [window, contract/checkout]
    exporters: []
service:
  api: {{ endpoint: "127.0.0.1:0" }}
  storage: "memory:"
"#,
        url = t.url
    );
    let server = start(&yaml).await;
    for (version, state, reason) in [
        ("2.2.0", "ROLLED_BACK", "exceeds threshold 5%"),
        ("2.3.0", "PROMOTED", "all checks within limits"),
    ] {
        final_run_is(server.api, &format!("checkout/{version}"), state, reason).await;
    }
    server
        .shutdown(Duration::from_secs(10))
        .await
        .expect("clean shutdown");
}

/// With an `interval`, the probe receiver runs its plan again and again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_receiver_runs_again_every_interval() {
    let t = target(Behavior::default()).await;
    let yaml = format!(
        r#"
receivers:
  probe:
    url: {url}
    requests: 5
    concurrency: 1
    interval: 100ms
    resource: {{ service.name: checkout, service.version: "3.0.0" }}
processors:
  contract/checkout:
    match: {{ service.name: checkout }}
    max_error_rate_percent: 5
pipelines:
  checkout: {{ receivers: [probe], processors: [contract/checkout] }}
service:
  api: {{ endpoint: "127.0.0.1:0" }}
  storage: "memory:"
"#,
        url = t.url
    );
    let server = start(&yaml).await;
    let seen = t.seen.clone();
    crate::eventually(Duration::from_secs(20), "three probe runs", || {
        let seen = seen.clone();
        async move { (seen.requests.load(Ordering::SeqCst) >= 15).then_some(()) }
    })
    .await;
    server
        .shutdown(Duration::from_secs(10))
        .await
        .expect("clean shutdown");
    // Stopped: no run starts after shutdown.
    let after = t.seen.requests.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.seen.requests.load(Ordering::SeqCst), after);
}
