//! Sequential decisions end to end: the real binary, spans from the real
//! OpenTelemetry SDK (`opentelemetry-otlp` over OTLP/HTTP) with noisy
//! latencies and errors. Healthy releases — even one close to its limits —
//! are never rolled back; regressions are; and the reason, the API, the
//! events and /metrics carry the evidence.

use std::time::{Duration, SystemTime};

use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::durable::Verdict;
use crate::{eventually, get_json, TempFile};

const PIPELINE: &str = r#"
receivers:
  otlp:
    protocols:
      http: { endpoint: "127.0.0.1:0" }
processors:
  window: { size: 1s, allowed_lateness: 300ms }
  contract/checkout:
    match: { service.name: checkout }
    subject_by: [service.version]
    max_p95_latency_ms: 120
    max_error_rate_percent: 5
    min_samples: 300
    alpha: 0.05
exporters:
  log: {}
  prometheus: { endpoint: "127.0.0.1:0" }
pipelines:
  checkout:
    receivers: [otlp]
    processors: [window, contract/checkout]
    exporters: [log, prometheus]
service:
  api: { endpoint: "127.0.0.1:0" }
  storage: "memory:"
"#;

/// A release's true behaviour: lognormal latencies (sigma 0.5) with this
/// p95, and this share of failed requests.
struct Release {
    version: &'static str,
    p95_ms: f64,
    error_rate: f64,
}

const RELEASES: [Release; 4] = [
    // Healthy, noisy.
    Release {
        version: "3.0.0",
        p95_ms: 60.0,
        error_rate: 0.01,
    },
    // Healthy but close to both limits: its windows often look bad.
    Release {
        version: "3.1.0",
        p95_ms: 105.0,
        error_rate: 0.04,
    },
    // Slow.
    Release {
        version: "3.2.0",
        p95_ms: 250.0,
        error_rate: 0.01,
    },
    // Failing.
    Release {
        version: "3.3.0",
        p95_ms: 60.0,
        error_rate: 0.20,
    },
];

fn provider(version: &str, http: std::net::SocketAddr) -> SdkTracerProvider {
    service_provider("checkout", version, http)
}

fn service_provider(service: &str, version: &str, http: std::net::SocketAddr) -> SdkTracerProvider {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("http://{http}/v1/traces"))
        .build()
        .expect("exporter builds");
    crate::tracer_provider(exporter, service, version)
}

fn emit(provider: &SdkTracerProvider, release: &Release, rng: &mut SmallRng) {
    let tracer = provider.tracer("decisions");
    let sigma: f64 = 0.5;
    let median = release.p95_ms / (1.645 * sigma).exp();
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    let latency = Duration::from_secs_f64(median * (sigma * z).exp() / 1000.0);
    let end = SystemTime::now();
    let mut span = tracer
        .span_builder("POST /api/checkout")
        .with_kind(SpanKind::Server)
        .with_start_time(end - latency)
        .start(&tracer);
    if rng.random::<f64>() < release.error_rate {
        span.set_status(Status::error("upstream failed"));
    }
    span.end_with_timestamp(end);
}

fn state(run: &Value) -> &str {
    run["state"].as_str().unwrap_or("")
}

fn check<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["check"] == name))
        .unwrap_or(&Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noisy_healthy_releases_are_never_rolled_back_and_regressions_are() {
    let file = TempFile::new("decisions", "pipeline.yaml", PIPELINE);
    let verdict = Verdict::start(&file.path);
    let providers: Vec<SdkTracerProvider> = RELEASES
        .iter()
        .map(|r| provider(r.version, verdict.http))
        .collect();

    // About 8 s of traffic: 80 requests per release per second.
    let sender = {
        let providers = providers.clone();
        tokio::task::spawn_blocking(move || {
            let mut rng = SmallRng::seed_from_u64(11);
            for _ in 0..80u64 {
                for (p, r) in providers.iter().zip(&RELEASES) {
                    for _ in 0..8 {
                        emit(p, r, &mut rng);
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    sender.await.expect("sender finishes");
    let api = |path: String| format!("http://{}{path}", verdict.api);

    // Regressions: rolled back with the evidence in the reason.
    for (version, check_name, sentence) in [
        (
            "3.2.0",
            "p95_latency",
            "p95 latency exceeds threshold 120ms: ",
        ),
        ("3.3.0", "error_rate", "error rate "),
    ] {
        let run = eventually(Duration::from_secs(30), version, || async {
            let (_, run) = get_json(&api(format!("/api/v1/runs/checkout/{version}"))).await;
            (state(&run) == "ROLLED_BACK").then_some(run)
        })
        .await;
        let reason = run["reason"].as_str().unwrap_or("");
        assert!(reason.starts_with(sentence), "{version}: {reason}");
        assert!(reason.contains("(95% sure "), "{version}: {reason}");
        let c = check(&run, check_name);
        assert_eq!(c["status"], "failing", "{run}");
        assert!(
            c["lower_percent"].as_f64().unwrap_or(0.0)
                > c["limit_percent"].as_f64().unwrap_or(100.0),
            "{c}"
        );
        assert!(c["samples"].as_u64().unwrap_or(0) > 0, "{c}");
        // The window history records the evidence as of each close.
        let windows = run["windows"].as_array().expect("windows");
        assert!(windows
            .iter()
            .any(|w| w["checks"].as_array().is_some_and(|c| !c.is_empty())));
    }

    // Healthy releases: promoted, or still collecting evidence; never
    // rolled back, however their windows look.
    for version in ["3.0.0", "3.1.0"] {
        let (_, run) = get_json(&api(format!("/api/v1/runs/checkout/{version}"))).await;
        assert!(
            matches!(state(&run), "PROMOTED" | "VALIDATING"),
            "{version}: {run}"
        );
        for name in ["p95_latency", "error_rate"] {
            let c = check(&run, name);
            assert_ne!(c["status"], "failing", "{version}: {c}");
            assert!(c["upper_percent"].is_f64(), "{c}");
        }
    }
    let healthy = eventually(Duration::from_secs(30), "3.0.0 promoted", || async {
        let (_, run) = get_json(&api("/api/v1/runs/checkout/3.0.0".into())).await;
        (state(&run) == "PROMOTED").then_some(run)
    })
    .await;
    let reason = healthy["reason"].as_str().unwrap_or("");
    assert!(
        reason.starts_with("proven within limits: p95 latency within 120ms: "),
        "{reason}"
    );
    assert!(
        reason.contains("error rate ") && reason.contains("samples"),
        "{reason}"
    );

    // /metrics: one-hot check status per run and check, with the bounds.
    let text = crate::scrape(verdict.prometheus).await;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("valid exposition format");
    let value = |metric: &str, subject: &str, check: &str, status: Option<&str>| {
        scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == metric
                    && s.labels.get("subject") == Some(subject)
                    && s.labels.get("check") == Some(check)
                    && status.is_none_or(|st| s.labels.get("status") == Some(st))
            })
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    assert_eq!(
        value("verdict_run_check", "3.3.0", "error_rate", Some("failing")),
        Some(1.0)
    );
    assert_eq!(
        value("verdict_run_check", "3.3.0", "error_rate", Some("open")),
        Some(0.0)
    );
    assert_eq!(
        value("verdict_run_check", "3.0.0", "p95_latency", Some("passing")),
        Some(1.0)
    );
    let lower = value(
        "verdict_run_check_lower_bound_ratio",
        "3.3.0",
        "error_rate",
        None,
    )
    .expect("lower bound");
    assert!(lower > 0.05 && lower < 0.25, "{lower}");

    // The events (log exporter) carry the checks too.
    let events: Vec<Value> = eventually(Duration::from_secs(10), "events", || async {
        let lines = verdict.stdout.lock().expect("lock").clone();
        let events: Vec<Value> = lines
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        (events
            .iter()
            .filter(|e| e["state"] == "ROLLED_BACK")
            .count()
            >= 2)
            .then_some(events)
    })
    .await;
    let rolled_back = events
        .iter()
        .find(|e| e["state"] == "ROLLED_BACK" && e["subject"]["service.version"] == "3.3.0")
        .expect("event of 3.3.0");
    assert_eq!(
        check(rolled_back, "error_rate")["status"],
        "failing",
        "{rolled_back}"
    );
    assert!(events
        .iter()
        .all(|e| e["subject"]["service.version"] != "3.1.0" || e["state"] != "ROLLED_BACK"));

    for p in providers {
        let _ = tokio::task::spawn_blocking(move || p.shutdown()).await;
    }
    verdict.kill();
}

const SHARED: &str = r#"
receivers:
  otlp:
    protocols:
      http: { endpoint: "127.0.0.1:0" }
processors:
  window: { size: 1s, allowed_lateness: 300ms }
  contract/latency:
    match: { service.name: "*" }
    subject_by: [service.name, service.version]
    max_p95_latency_ms: 1000
    min_samples: 100000
    baseline:
      match: { service.version: "1.*" }
      max_p95_latency_increase_percent: 10
exporters:
  prometheus: { endpoint: "127.0.0.1:0" }
pipelines:
  shared:
    receivers: [otlp]
    processors: [window, contract/latency]
    exporters: [prometheus]
service:
  api: { endpoint: "127.0.0.1:0" }
  storage: "memory:"
"#;

/// Two services share a contract and its baseline rule. Each candidate is
/// compared with its own service's current release: checkout 2.0 at twice
/// checkout 1.x's latency is rolled back, though it is far faster than
/// payments 1.x, whose traffic would hide it if the baselines were pooled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_is_compared_with_its_own_baseline() {
    let file = TempFile::new("decisions", "shared.yaml", SHARED);
    let verdict = Verdict::start(&file.path);
    let at = |service: &'static str, version: &'static str, p95_ms: f64| {
        (
            service_provider(service, version, verdict.http),
            Release {
                version,
                p95_ms,
                error_rate: 0.0,
            },
        )
    };
    let baselines = vec![at("checkout", "1.4", 40.0), at("payments", "1.9", 400.0)];
    let candidates = vec![at("checkout", "2.0", 80.0), at("payments", "2.0", 380.0)];
    let sender = tokio::task::spawn_blocking(move || {
        let mut rng = SmallRng::seed_from_u64(5);
        // Baselines first, so their reference p95 is fixed before the
        // candidates' first window; then both.
        for tick in 0..60u64 {
            for (p, r) in &baselines {
                for _ in 0..10 {
                    emit(p, r, &mut rng);
                }
            }
            if tick >= 20 {
                for (p, r) in &candidates {
                    for _ in 0..10 {
                        emit(p, r, &mut rng);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    sender.await.expect("sender finishes");
    let api = |path: &str| format!("http://{}{path}", verdict.api);
    let run = eventually(
        Duration::from_secs(30),
        "checkout 2.0 rolled back",
        || async {
            let (_, run) = get_json(&api("/api/v1/runs/latency/checkout/2.0")).await;
            (state(&run) == "ROLLED_BACK").then_some(run)
        },
    )
    .await;
    let reason = run["reason"].as_str().unwrap_or("");
    assert!(
        reason.starts_with("p95 latency worse than baseline "),
        "{reason}"
    );
    let c = check(&run, "baseline_p95_latency");
    let reference = c["reference_ms"].as_f64().unwrap_or(0.0);
    assert!(
        reference > 30.0 && reference < 60.0,
        "checkout's own p95: {c}"
    );
    let (_, payments) = get_json(&api("/api/v1/runs/latency/payments/2.0")).await;
    assert_eq!(state(&payments), "VALIDATING", "{payments}");
    let c = check(&payments, "baseline_p95_latency");
    assert_ne!(c["status"], "failing", "{c}");
    let reference = c["reference_ms"].as_f64().unwrap_or(0.0);
    assert!(reference > 300.0, "payments' own p95: {c}");
}
