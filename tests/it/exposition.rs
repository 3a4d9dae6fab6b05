//! `/metrics` as its users read it: `promtool check metrics` finds nothing
//! in a live server's output, counters whose labels are known exist at 0
//! before the first event, `verdict_build_info` and the `process_*`
//! metrics are there, gzip when asked, and OpenMetrics when asked — and a
//! real Prometheus scrapes both formats.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read as _, Write as _};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::dashboard::Prometheus;
use verdict::receivers::otlp::IngestError;

use crate::durable::{webhook, with_grpc, write_pipeline, Receiver, Verdict};
use crate::{eventually, TempDir};

/// Runs `promtool check metrics` (Debian's `prometheus` package, or
/// `PROMTOOL`) on `text` and fails on any finding, lint included.
pub(crate) fn promtool_check(text: &str) {
    let binary = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let mut child = Command::new(&binary)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {binary} ({e}): install it with `apt-get install prometheus` \
                 (.ci/run does), or point PROMTOOL at it"
            )
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool runs");
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && findings.trim().is_empty(),
        "promtool check metrics: {}\n{findings}\n--- exposition ---\n{text}",
        out.status
    );
}

/// The families (`# TYPE` lines) of a text exposition, with their type.
fn types(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

/// Every sample line of a text exposition without its value: name and labels.
fn series(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| s.to_string()))
        .collect()
}

fn parse(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses")
}

/// The value of the one sample of `name` whose labels include `labels`.
fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .collect();
    assert!(found.len() <= 1, "{name}{labels:?}: {found:?}");
    found.first().copied()
}

/// A live server with runs, windows, a decision (and its webhook), a
/// refused request and a rejected span: every family verdict exposes
/// without an Unleash exporter has series.
pub(crate) async fn busy(dir: &TempDir) -> (Verdict, Receiver) {
    let receiver = Receiver::always(200);
    let url = receiver.serve("127.0.0.1:0").await;
    let contract = "    max_error_rate_percent: 5\n    min_conversion_rate_percent: 0.5\n    \
                    decision: windows\n    fail_windows: 1\n    pass_windows: 2";
    let file = write_pipeline(dir, &[("webhook/ci", webhook(&url, ""))], contract);
    let v = Verdict::start(&file);
    for _ in 0..3 {
        v.spans("1.0", 40, 500).await;
        v.spans("2.0", 40, 10).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let refused = reqwest::Client::new()
        .post(format!("http://{}/v1/traces", v.http))
        .header("content-type", "application/x-protobuf")
        .body(vec![0xff_u8; 16])
        .send()
        .await
        .expect("POST");
    assert_eq!(refused.status(), 400);
    let timeless = serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "checkout"}},
            {"key": "service.version", "value": {"stringValue": "3.0"}}]},
        "scopeSpans": [{"spans": [{"kind": 2, "name": "GET /"}]}]}]});
    let rejected = reqwest::Client::new()
        .post(format!("http://{}/v1/traces", v.http))
        .header("content-type", "application/json")
        .body(timeless.to_string())
        .send()
        .await
        .expect("POST");
    assert_eq!(rejected.status(), 200);
    v.run_until("1.0", "1.0 to roll back", |r| r["state"] == "ROLLED_BACK")
        .await;
    let got = receiver.clone();
    eventually(Duration::from_secs(30), "the webhook delivery", || {
        let n = got.got().len();
        async move { (n > 0).then_some(()) }
    })
    .await;
    (v, receiver)
}

/// The families a busy server must expose (all but the Unleash ones,
/// checked by `unleash.rs` on the real Unleash).
const FAMILIES: [&str; 33] = [
    "verdict_contract_threshold",
    "verdict_run_state",
    "verdict_run_info",
    "verdict_run_samples",
    "verdict_window_start_timestamp_seconds",
    "verdict_window_end_timestamp_seconds",
    "verdict_window_latency_seconds",
    "verdict_window_error_ratio",
    "verdict_window_conversion_ratio",
    "verdict_window_samples",
    "verdict_window_passed",
    "verdict_run_check",
    "verdict_run_check_estimate_ratio",
    "verdict_run_check_lower_bound_ratio",
    "verdict_run_check_upper_bound_ratio",
    "verdict_run_check_limit_ratio",
    "verdict_run_check_samples",
    "verdict_receiver_accepted_items_total",
    "verdict_receiver_refused_requests_total",
    "verdict_receiver_ignored_items_total",
    "verdict_receiver_rejected_items_total",
    "verdict_late_samples_total",
    "verdict_series_overflow_total",
    "verdict_queue_depth",
    "verdict_metric_streams",
    "verdict_webhook_deliveries_total",
    "verdict_outbox_oldest_pending_seconds",
    "verdict_run_transitions_total",
    "verdict_config_reloads_total",
    "verdict_build_info",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
];

#[tokio::test(flavor = "multi_thread")]
async fn promtool_finds_nothing_in_a_live_scrape() {
    let dir = TempDir::new("expo-promtool");
    let (v, _receiver) = busy(&dir).await;
    let text = crate::scrape(v.prometheus).await;
    promtool_check(&text);
    let types = types(&text);
    for family in FAMILIES {
        assert!(types.contains_key(family), "{family} missing:\n{text}");
    }
    // Every family has help text and at least one sample.
    for family in types.keys() {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("# HELP {family} ")) && l.len() > family.len() + 10),
            "{family} has no help"
        );
        assert!(
            series(&text)
                .iter()
                .any(|s| s == family || s.starts_with(&format!("{family}{{"))),
            "{family} has no sample"
        );
    }
    // The latency percentiles of the window, and which window that is.
    let scrape = parse(&text);
    let p95 = value(
        &scrape,
        "verdict_window_latency_seconds",
        &[("subject", "1.0"), ("percentile", "p95")],
    )
    .expect("p95 of 1.0");
    assert!((p95 - 0.5).abs() < 0.05, "p95 {p95}");
    let start = value(
        &scrape,
        "verdict_window_start_timestamp_seconds",
        &[("subject", "1.0")],
    )
    .expect("window start");
    let end = value(
        &scrape,
        "verdict_window_end_timestamp_seconds",
        &[("subject", "1.0")],
    )
    .expect("window end");
    assert_eq!(end - start, 1.0, "1 s windows");
    assert_eq!(start.fract(), 0.0, "aligned to the second");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    assert!(
        end <= now && end > now - 120.0,
        "window end {end}, now {now}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn counters_with_known_labels_exist_at_zero_before_any_event() {
    let dir = TempDir::new("expo-zero");
    let file = write_pipeline(
        &dir,
        &[("webhook/ci", webhook("http://127.0.0.1:9/hook", ""))],
        "",
    );
    let yaml = std::fs::read_to_string(&file).expect("read");
    std::fs::write(&file, with_grpc(&yaml)).expect("write");
    let started = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let v = Verdict::start(&file);
    let text = crate::scrape(v.prometheus).await;
    promtool_check(&text);
    let scrape = parse(&text);
    let zero = |name: &str, labels: &[(&str, &str)]| {
        assert_eq!(
            value(&scrape, name, labels),
            Some(0.0),
            "{name}{labels:?} at 0:\n{text}"
        );
    };
    for protocol in ["grpc", "http"] {
        for reason in IngestError::REASONS {
            zero(
                "verdict_receiver_refused_requests_total",
                &[("protocol", protocol), ("reason", reason)],
            );
        }
        for signal in ["traces", "metrics", "logs"] {
            let labels = [("protocol", protocol), ("signal", signal)];
            zero("verdict_receiver_accepted_items_total", &labels);
            zero("verdict_receiver_ignored_items_total", &labels);
        }
        for signal in ["traces", "metrics"] {
            for reason in ["late", "future", "missing_subject", "invalid", "unit"] {
                zero(
                    "verdict_receiver_rejected_items_total",
                    &[
                        ("protocol", protocol),
                        ("signal", signal),
                        ("reason", reason),
                    ],
                );
            }
        }
    }
    for outcome in ["delivered", "retry", "failed"] {
        zero(
            "verdict_webhook_deliveries_total",
            &[("exporter", "webhook/ci"), ("outcome", outcome)],
        );
    }
    for state in ["VALIDATING", "PROMOTED", "ROLLED_BACK"] {
        zero(
            "verdict_run_transitions_total",
            &[("contract", "checkout"), ("state", state)],
        );
    }
    for result in ["applied", "invalid", "failed"] {
        zero("verdict_config_reloads_total", &[("result", result)]);
    }
    zero("verdict_late_samples_total", &[]);
    zero("verdict_series_overflow_total", &[]);
    zero(
        "verdict_metric_streams_overflow_total",
        &[("reason", "streams")],
    );

    // The build, and the process read from /proc.
    assert_eq!(
        value(
            &scrape,
            "verdict_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0),
        "{text}"
    );
    let process = |name: &str| value(&scrape, name, &[]).unwrap_or_else(|| panic!("{name}"));
    let start = process("process_start_time_seconds");
    // btime is whole seconds: the start may read up to 1 s early.
    assert!(
        start >= started - 2.0 && start <= started + 60.0,
        "started at {start}, the test at {started}"
    );
    let (fds, max_fds) = (process("process_open_fds"), process("process_max_fds"));
    assert!(fds >= 3.0 && fds <= max_fds, "{fds} of {max_fds}");
    let (rss, vsz) = (
        process("process_resident_memory_bytes"),
        process("process_virtual_memory_bytes"),
    );
    assert!(rss > 1e6 && rss < vsz, "rss {rss}, virtual {vsz}");
    assert!(process("process_cpu_seconds_total") >= 0.0);
}

/// `GET /metrics` with `headers`: status, headers and raw body.
async fn get(
    addr: std::net::SocketAddr,
    headers: &[(&str, &str)],
) -> (reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = reqwest::Client::new().get(format!("http://{addr}/metrics"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("scrape");
    assert_eq!(resp.status(), 200);
    let headers = resp.headers().clone();
    (headers, resp.bytes().await.expect("body").to_vec())
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_when_asked_and_the_same_exposition_inflated() {
    let dir = TempDir::new("expo-gzip");
    let file = write_pipeline(&dir, &[], "");
    let v = Verdict::start(&file);
    v.spans("1.0", 20, 10).await;
    // Its window closed: no series comes or goes between the two scrapes.
    v.run_until("1.0", "a closed window", |r| {
        r["windows"].as_array().is_some_and(|w| !w.is_empty())
    })
    .await;

    let (plain_headers, plain) = get(v.prometheus, &[]).await;
    assert!(plain_headers.get("content-encoding").is_none());
    let (headers, compressed) = get(v.prometheus, &[("accept-encoding", "gzip")]).await;
    assert_eq!(headers["content-encoding"], "gzip");
    assert_eq!(
        headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let mut inflated = String::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_string(&mut inflated)
        .expect("a gzip body");
    assert!(compressed.len() * 3 < inflated.len(), "compressed");
    promtool_check(&inflated);
    let plain = String::from_utf8(plain).expect("UTF-8");
    assert_eq!(series(&inflated), series(&plain));
    // Refused by weight: the plain body.
    let (headers, _) = get(v.prometheus, &[("accept-encoding", "gzip;q=0, identity")]).await;
    assert!(headers.get("content-encoding").is_none());
}

/// What Prometheus 2.x sends by default.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// A loopback proxy to `target`'s `/metrics` that asks for the text
/// format whatever the scraper asked (Prometheus 2.42 has no
/// `scrape_protocols` setting to ask for it itself), passing
/// `Accept-Encoding` through; it records the content types it served.
async fn text_only_proxy(target: std::net::SocketAddr) -> (String, Arc<Mutex<Vec<String>>>) {
    let served = Arc::new(Mutex::new(Vec::new()));
    let log = served.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let log = log.clone();
            async move {
                let mut req = reqwest::Client::new()
                    .get(format!("http://{target}/metrics"))
                    .header("accept", "text/plain;version=0.0.4");
                if let Some(enc) = headers.get("accept-encoding") {
                    req = req.header("accept-encoding", enc.as_bytes());
                }
                let resp = req.send().await.expect("verdict answers");
                let mut answer = axum::http::Response::builder();
                for name in ["content-type", "content-encoding"] {
                    if let Some(v) = resp.headers().get(name) {
                        answer = answer.header(name, v.as_bytes());
                    }
                }
                let ct = resp.headers()["content-type"]
                    .to_str()
                    .unwrap_or("")
                    .to_string();
                log.lock().expect("lock").push(ct);
                let body = resp.bytes().await.expect("body");
                answer
                    .body(axum::body::Body::from(body))
                    .expect("an answer")
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr.to_string(), served)
}

#[tokio::test(flavor = "multi_thread")]
async fn openmetrics_when_asked_and_a_real_prometheus_scrapes_both_formats() {
    let dir = TempDir::new("expo-openmetrics");
    let (v, _receiver) = busy(&dir).await;

    let (headers, body) = get(v.prometheus, &[("accept", PROMETHEUS_ACCEPT)]).await;
    assert_eq!(
        headers["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let om = String::from_utf8(body).expect("UTF-8");
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(!om.contains("\n\n"), "no blank line in OpenMetrics");
    // Counter families are named without `_total`, their samples with it.
    assert!(om.contains("# TYPE verdict_receiver_refused_requests counter\n"));
    assert!(om.contains("\nverdict_receiver_refused_requests_total{"));
    assert!(om.contains("# TYPE verdict_build info\n"));
    assert!(om.contains("# UNIT verdict_window_latency_seconds seconds\n"));
    assert!(om.contains("# UNIT process_cpu_seconds seconds\n"));
    // The same series as the text format. Windows close and runs start
    // between two scrapes, so a pair is taken again until none did.
    let stable = |body: &str| -> BTreeSet<String> {
        series(body)
            .into_iter()
            .filter(|s| !s.starts_with("process_") && !s.starts_with("verdict_outbox"))
            .collect()
    };
    let mut pair = (stable(&om), stable(&crate::scrape(v.prometheus).await));
    for _ in 0..10 {
        if pair.0 == pair.1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (_, body) = get(v.prometheus, &[("accept", PROMETHEUS_ACCEPT)]).await;
        let om = String::from_utf8(body).expect("UTF-8");
        pair = (stable(&om), stable(&crate::scrape(v.prometheus).await));
    }
    assert_eq!(pair.0, pair.1);

    let (proxy, served) = text_only_proxy(v.prometheus).await;
    let target = v.prometheus.to_string();
    let prometheus = Prometheus::scraping(&dir, &[("openmetrics", &target), ("text", &proxy)]);
    for job in ["openmetrics", "text"] {
        let promql =
            format!("up{{job=\"{job}\"}} == 1 and scrape_samples_scraped{{job=\"{job}\"}} > 100");
        prometheus
            .wait_for(&promql, &format!("a healthy scrape of job {job}"))
            .await;
    }
    // Both jobs stored the same counters and gauges.
    for promql in [
        "verdict_receiver_refused_requests_total{reason=\"malformed\",protocol=\"http\"}",
        "verdict_window_latency_seconds{subject=\"1.0\",percentile=\"p95\"}",
        "verdict_build_info",
        "process_cpu_seconds_total",
    ] {
        let answer = prometheus.query(promql).await;
        let jobs: BTreeSet<String> = answer["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["metric"]["job"].as_str().map(str::to_string))
            .collect();
        assert_eq!(
            jobs,
            BTreeSet::from(["openmetrics".to_string(), "text".to_string()]),
            "{promql}: {answer}"
        );
    }
    // No scrape error on either target; the types as declared.
    let targets: Value = reqwest::get(format!("{}/api/v1/targets", prometheus.url))
        .await
        .expect("targets")
        .json()
        .await
        .expect("JSON");
    for t in targets["data"]["activeTargets"]
        .as_array()
        .expect("targets")
    {
        assert_eq!(t["health"], "up", "{t}");
        assert_eq!(t["lastError"], "", "{t}");
    }
    let metadata: Value = reqwest::get(format!(
        "{}/api/v1/targets/metadata?match_target={{job=\"openmetrics\"}}",
        prometheus.url
    ))
    .await
    .expect("metadata")
    .json()
    .await
    .expect("JSON");
    let declared: HashMap<String, (String, String)> = metadata["data"]
        .as_array()
        .expect("metadata")
        .iter()
        .map(|m| {
            (
                m["metric"].as_str().unwrap_or("").to_string(),
                (
                    m["type"].as_str().unwrap_or("").to_string(),
                    m["unit"].as_str().unwrap_or("").to_string(),
                ),
            )
        })
        .collect();
    assert_eq!(
        declared.get("verdict_receiver_refused_requests"),
        Some(&("counter".to_string(), String::new())),
        "{metadata}"
    );
    assert_eq!(
        declared.get("verdict_build"),
        Some(&("info".to_string(), String::new()))
    );
    assert_eq!(
        declared.get("verdict_window_latency_seconds"),
        Some(&("gauge".to_string(), "seconds".to_string()))
    );
    let served = served.lock().expect("lock").clone();
    assert!(
        !served.is_empty()
            && served
                .iter()
                .all(|ct| ct == "text/plain; version=0.0.4; charset=utf-8"),
        "{served:?}"
    );
}
