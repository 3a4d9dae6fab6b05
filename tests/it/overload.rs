//! Overload: tiny queues, many concurrent clients that retry refused
//! requests. Every span is counted exactly once — a refused request changed
//! nothing, an accepted one counted whole — over HTTP and over gRPC.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, ResourceSpans, ScopeSpans, Span};
use prost::Message;

use crate::{config, eventually, get_json, now_ns, start};

/// Spans per client request, requests per client, clients.
const BATCH: u64 = 500;
const REQUESTS: u64 = 25;
const CLIENTS: u64 = 8;
const N: u64 = BATCH * REQUESTS * CLIENTS;

const CONTRACT: &str = r#"
    match: { service.name: overload }
    max_p95_latency_ms: 100000
    min_samples: 1000000000
    decision: windows
    pass_windows: 1000000
"#;

const WINDOW: &str = "size: 1s, allowed_lateness: 2s, shards: 2, queue_size: 1";

/// A request of `BATCH` spans ending now (timestamps are refreshed on every
/// attempt, so a retried request is never late).
fn request() -> ExportTraceServiceRequest {
    let now = now_ns();
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    };
    let spans = (0..BATCH)
        .map(|i| Span {
            trace_id: vec![7; 16],
            span_id: i.to_be_bytes().to_vec(),
            name: "GET /".into(),
            kind: SpanKind::Server as i32,
            start_time_unix_nano: now - 1_000_000 - i * 1000,
            end_time_unix_nano: now,
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "overload"), kv("service.version", "1")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

async fn run_samples(api: std::net::SocketAddr) -> u64 {
    let (_, body) = get_json(&format!("http://{api}/api/v1/runs/checkout/overload/1")).await;
    body["run"]["samples"].as_u64().unwrap_or(0)
}

async fn wait_for_exact_count(api: std::net::SocketAddr) {
    let counted = eventually(
        Duration::from_secs(30),
        "every span to be counted",
        || async move {
            let n = run_samples(api).await;
            (n >= N).then_some(n)
        },
    )
    .await;
    // Let any straggling window close, then check nothing was counted twice.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(run_samples(api).await, N, "counted {counted} then more");
}

/// Runs `CLIENTS` clients at once, each given the shared refusal counter,
/// then checks that refusals happened and every span was counted once.
async fn counted_exactly_once<F, Fut>(server: verdict::topology::Server, client: F)
where
    F: Fn(Arc<AtomicU64>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let refused = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(client(refused.clone())))
        .collect();
    for c in clients {
        c.await.expect("client finishes");
    }
    assert!(
        refused.load(Ordering::Relaxed) > 0,
        "the queues never filled up"
    );
    wait_for_exact_count(server.api).await;
    server
        .shutdown(Duration::from_secs(10))
        .await
        .expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_clients_retrying_refusals_are_counted_exactly_once() {
    let server = start(&config(CONTRACT, WINDOW).replace("64KiB", "1MiB")).await;
    let url = format!("http://{}/v1/traces", server.http[0].1);
    counted_exactly_once(server, |refused| {
        let url = url.clone();
        async move {
            let http = reqwest::Client::new();
            for _ in 0..REQUESTS {
                loop {
                    let r = http
                        .post(&url)
                        .header("content-type", "application/x-protobuf")
                        .body(request().encode_to_vec())
                        .send()
                        .await
                        .expect("sent");
                    match r.status().as_u16() {
                        200 => break,
                        503 => {
                            let after =
                                r.headers().get("retry-after").and_then(|v| v.to_str().ok());
                            assert!(after
                                .and_then(|v| v.parse::<u32>().ok())
                                .is_some_and(|s| s >= 1));
                            refused.fetch_add(1, Ordering::Relaxed);
                            // The test's own backoff: short, so the test is quick.
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                        other => panic!("unexpected status {other}"),
                    }
                }
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_clients_retrying_refusals_are_counted_exactly_once() {
    let server = start(&config(CONTRACT, WINDOW).replace("64KiB", "1MiB")).await;
    let endpoint = format!("http://{}", server.grpc[0].1);
    counted_exactly_once(server, |refused| {
        let endpoint = endpoint.clone();
        async move {
            let mut client = TraceServiceClient::connect(endpoint)
                .await
                .expect("connects");
            for _ in 0..REQUESTS {
                loop {
                    match client.export(request()).await {
                        Ok(_) => break,
                        Err(status) if status.code() == tonic::Code::Unavailable => {
                            let details = tonic_types::StatusExt::get_error_details(&status);
                            assert!(details.retry_info().is_some(), "RetryInfo detail present");
                            refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                        Err(status) => panic!("unexpected status {status:?}"),
                    }
                }
            }
        }
    })
    .await;
}

/// A request that fits `max_request_bytes` but not, together with its queued
/// samples, the in-flight budget is refused whole (retryable) and counts
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_budget_refuses_whole_requests() {
    let yaml = config(CONTRACT, "size: 1s, allowed_lateness: 2s")
        .replace("64KiB", "100KiB")
        .replace("service:\n", "service:\n  max_inflight_bytes: 100KiB\n");
    let server = start(&yaml).await;
    let mut req = request();
    let span = req.resource_spans[0].scope_spans[0].spans[0].clone();
    req.resource_spans[0].scope_spans[0].spans = vec![span; 1200];
    let body = req.encode_to_vec();
    assert!(
        body.len() < 100 * 1024,
        "the body alone fits: {}",
        body.len()
    );

    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/traces", server.http[0].1))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.headers().contains_key("retry-after"));

    let mut client = TraceServiceClient::connect(format!("http://{}", server.grpc[0].1))
        .await
        .expect("connects");
    let status = client.export(req).await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(tonic_types::StatusExt::get_error_details(&status)
        .retry_info()
        .is_some());

    // Nothing was counted: the subject has no run.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (_, body) = get_json(&format!(
        "http://{}/api/v1/runs/checkout/overload/1",
        server.api
    ))
    .await;
    assert_eq!(body["state"], "PENDING", "{body}");
    assert_eq!(body["run_id"], serde_json::Value::Null);
    server
        .shutdown(Duration::from_secs(10))
        .await
        .expect("shutdown");
}

/// Unbounded grouping keys (a user id as the subject) cannot grow memory:
/// beyond `max_series`, samples go to the overflow series, counted, and get
/// no run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_beyond_max_series_overflow() {
    let server = start(&config(
        CONTRACT,
        "size: 1s, allowed_lateness: 1s, shards: 1, max_series: 4",
    ))
    .await;
    let one = request();
    let mut req = ExportTraceServiceRequest::default();
    for user in 0..50 {
        let mut rs = one.resource_spans[0].clone();
        rs.resource.as_mut().expect("resource").attributes[1]
            .value
            .as_mut()
            .expect("value")
            .value = Some(any_value::Value::StringValue(format!("user-{user}")));
        rs.scope_spans[0].spans.truncate(10);
        req.resource_spans.push(rs);
    }
    let scrape = |prom: std::net::SocketAddr| async move {
        let text = crate::scrape(prom).await;
        text.lines()
            .find_map(|l| l.strip_prefix("verdict_series_overflow_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let prom = server.prometheus[0].1;
    let before = scrape(prom).await;
    let mut client = TraceServiceClient::connect(format!("http://{}", server.grpc[0].1))
        .await
        .expect("connects");
    let resp = client.export(req).await.expect("accepted").into_inner();
    assert_eq!(
        resp.partial_success, None,
        "overflow is accepted, not rejected"
    );
    let after = eventually(Duration::from_secs(10), "overflow counted", || async move {
        let v = scrape(prom).await;
        (v - before >= 460.0).then_some(v)
    })
    .await;
    assert!(after - before >= 460.0);
    let (_, body) = get_json(&format!("http://{}/api/v1/runs/checkout", server.api)).await;
    assert_eq!(body["runs"].as_array().map(Vec::len), Some(4), "{body}");
    server
        .shutdown(Duration::from_secs(10))
        .await
        .expect("shutdown");
}
