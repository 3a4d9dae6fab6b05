//! End to end: real OpenTelemetry SDK exporters (the `opentelemetry-otlp`
//! crate) send spans over gRPC and HTTP to the real server with 1 s windows;
//! four releases reach the verdicts their data calls for, visible in the API
//! and on /metrics. The SDK's simple span processor exports each span as it
//! ends, from a blocking thread inside the runtime: the batch processor's own
//! thread has no Tokio context for the tonic and reqwest clients.

use std::time::{Duration, SystemTime};

use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::{config, final_run_is, get_json, start};

struct Release {
    version: &'static str,
    grpc: bool,
    latency_ms: u64,
    error_every: u64,
    convert_every: u64,
}

fn provider(release: &Release, grpc: &str, http: &str) -> SdkTracerProvider {
    let exporter = if release.grpc {
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(format!("http://{grpc}"))
            .build()
    } else {
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("http://{http}/v1/traces"))
            .build()
    }
    .expect("exporter builds");
    crate::tracer_provider(exporter, "checkout", release.version)
}

fn emit(provider: &SdkTracerProvider, release: &Release, i: u64) {
    let tracer = provider.tracer("e2e");
    let end = SystemTime::now();
    let start = end - Duration::from_millis(release.latency_ms + i % 3);
    let mut attrs = vec![
        KeyValue::new("http.request.method", "POST"),
        KeyValue::new("http.route", "/api/checkout"),
    ];
    if i.is_multiple_of(release.convert_every) {
        attrs.push(KeyValue::new("validation.converted", true));
    }
    let mut span = tracer
        .span_builder("POST /api/checkout")
        .with_kind(SpanKind::Server)
        .with_start_time(start)
        .with_attributes(attrs)
        .start(&tracer);
    // Not the very first span: it may land in a short first window, where a
    // single error of a healthy release would already exceed 5 %.
    if (i + 1).is_multiple_of(release.error_every) {
        span.set_status(Status::error("upstream failed"));
    }
    // A CLIENT span must be ignored, not counted.
    let client = tracer
        .span_builder("GET /inventory")
        .with_kind(SpanKind::Client)
        .with_start_time(start)
        .start(&tracer);
    drop(client);
    span.end_with_timestamp(end);
}

const CONTRACT: &str = r#"
    match: { service.name: checkout }
    subject_by: [service.name, service.version]
    max_p95_latency_ms: 100
    max_error_rate_percent: 5
    min_conversion_rate_percent: 20
    min_samples: 60
    decision: windows
    min_window_samples: 10
    pass_windows: 2
    fail_windows: 1
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_releases_reach_their_verdicts_over_grpc_and_http() {
    let server = start(&config(CONTRACT, "size: 1s, allowed_lateness: 300ms")).await;
    let grpc = server.grpc[0].1;
    let http = server.http[0].1;
    let api = server.api;
    let prom = server.prometheus[0].1;

    // Before any data, a known contract answers PENDING for any subject.
    let (status, body) =
        get_json(&format!("http://{api}/api/v1/runs/checkout/checkout/2.0.0")).await;
    assert_eq!(status, 200);
    assert_eq!(body["state"], "PENDING");
    assert_eq!(body["subject_attributes"]["service.version"], "2.0.0");
    let (status, _) = get_json(&format!("http://{api}/api/v1/runs/nope")).await;
    assert_eq!(status, 404);

    let releases = [
        Release {
            version: "2.0.0",
            grpc: true,
            latency_ms: 20,
            error_every: 1000,
            convert_every: 2,
        },
        Release {
            version: "2.1.0",
            grpc: false,
            latency_ms: 250,
            error_every: 1000,
            convert_every: 2,
        },
        Release {
            version: "2.2.0",
            grpc: true,
            latency_ms: 20,
            error_every: 4,
            convert_every: 2,
        },
        Release {
            version: "2.3.0",
            grpc: false,
            latency_ms: 20,
            error_every: 1000,
            convert_every: 20,
        },
    ];
    let providers: Vec<SdkTracerProvider> = releases
        .iter()
        .map(|r| provider(r, &grpc.to_string(), &http.to_string()))
        .collect();

    // About 4 s of traffic: 40 requests per release per second.
    let sender = {
        let providers = providers.clone();
        tokio::task::spawn_blocking(move || {
            for tick in 0..40u64 {
                for (p, r) in providers.iter().zip(&releases) {
                    for j in 0..4 {
                        emit(p, r, tick * 4 + j);
                    }
                }
                for p in &providers {
                    p.force_flush().expect("flush succeeds");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    sender.await.expect("sender finishes");

    let expect = [
        ("2.0.0", "PROMOTED", "consecutive windows"),
        ("2.1.0", "ROLLED_BACK", "exceeds threshold 100ms"),
        ("2.2.0", "ROLLED_BACK", "exceeds threshold 5%"),
        ("2.3.0", "ROLLED_BACK", "is below threshold 20%"),
    ];
    for (version, state, reason) in expect {
        let body = final_run_is(api, &format!("checkout/{version}"), state, reason).await;
        if state == "PROMOTED" {
            assert!(
                body["reason"]
                    .as_str()
                    .unwrap_or("")
                    .ends_with("all checks within limits"),
                "{body}"
            );
        }
        assert_eq!(body["subject"], format!("checkout/{version}"));
        let windows = body["windows"].as_array().expect("window history");
        assert!(!windows.is_empty(), "{version} has windows");
        let bound = windows[0]["latency_relative_error"].as_f64().unwrap_or(1.0);
        assert!(
            bound > 0.0 && bound < 0.01,
            "{version}: quantile bound {bound}"
        );
        if state == "ROLLED_BACK" {
            let failures = windows
                .iter()
                .flat_map(|w| w["failures"].as_array().cloned().unwrap_or_default());
            assert!(failures
                .into_iter()
                .any(|f| f.as_str().unwrap_or("").contains(reason)));
        }
    }
    // The subject may also be given with %2F.
    let (status, body) = get_json(&format!(
        "http://{api}/api/v1/runs/checkout/checkout%2F2.1.0"
    ))
    .await;
    assert_eq!((status, body["state"].as_str()), (200, Some("ROLLED_BACK")));
    // Client spans were ignored: the healthy run counted exactly its server spans.
    let (_, body) = get_json(&format!("http://{api}/api/v1/runs/checkout/checkout/2.0.0")).await;
    assert!(body["run"]["samples"].as_u64().unwrap_or(0) <= 160);

    // /metrics parses as Prometheus text and has one-hot state gauges.
    let text = crate::scrape(prom).await;
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition format");
    for (version, state, _) in expect {
        let subject = format!("checkout/{version}");
        let states: Vec<(String, f64)> = scrape
            .samples
            .iter()
            .filter(|s| {
                s.metric == "verdict_run_state" && s.labels.get("subject") == Some(subject.as_str())
            })
            .map(|s| {
                let v = match s.value {
                    prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
                    _ => f64::NAN,
                };
                (s.labels.get("state").unwrap_or("").to_string(), v)
            })
            .collect();
        assert_eq!(states.len(), 4, "{subject}: {states:?}");
        for (s, v) in states {
            assert_eq!(v, if s == state { 1.0 } else { 0.0 }, "{subject} {s}");
        }
    }
    let has = |name: &str| scrape.samples.iter().any(|s| s.metric == name);
    for name in [
        "verdict_run_info",
        "verdict_run_samples",
        "verdict_window_latency_seconds",
        "verdict_window_error_ratio",
        "verdict_window_samples",
        "verdict_receiver_accepted_items_total",
    ] {
        assert!(has(name), "{name} missing from /metrics");
    }

    // The list endpoints.
    let (_, body) = get_json(&format!("http://{api}/api/v1/runs/checkout")).await;
    assert_eq!(body["runs"].as_array().map(Vec::len), Some(4));
    let (_, body) = get_json(&format!("http://{api}/api/v1/runs?limit=2")).await;
    assert_eq!(body["runs"].as_array().map(Vec::len), Some(2));

    for p in providers {
        let _ = tokio::task::spawn_blocking(move || p.shutdown()).await;
    }
    server
        .shutdown(Duration::from_secs(10))
        .await
        .expect("clean shutdown");
}
