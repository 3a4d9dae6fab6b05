//! `verdict_load`: an OTLP load generator for verdict's ingest benchmarks and
//! for trying a deployment under pressure.
//!
//! Sends spans or metric points over OTLP/gRPC or OTLP/HTTP (protobuf) with
//! a configurable batch size, concurrency, connection count, rate, number of
//! services × versions, and error / conversion fractions. Refused requests
//! (UNAVAILABLE, HTTP 503/429) are retried with exponential backoff, so
//! "accepted" counts every item exactly once. Reports requests by outcome,
//! accepted items per second, and client latency p50/p99.
//!
//! ```sh
//! cargo run --release --example verdict_load -- --protocol grpc --batch 1000 \
//!     --concurrency 32 --connections 4 --duration 15
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, AggregationTemporality, Histogram, HistogramDataPoint, Metric, ResourceMetrics,
    ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;
use tonic::transport::Channel;
use verdict::sketch::Sketch;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Proto {
    Grpc,
    Http,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Signal {
    Traces,
    Metrics,
}

/// OTLP load generator.
#[derive(Debug, Parser, Clone)]
struct Args {
    /// Server address (host:port); defaults to 127.0.0.1:4317 (grpc) or :4318 (http).
    #[arg(long)]
    endpoint: Option<String>,
    #[arg(long, value_enum, default_value = "grpc")]
    protocol: Proto,
    #[arg(long, value_enum, default_value = "traces")]
    signal: Signal,
    /// Items (spans or points) per request.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// gRPC connections (HTTP/2) shared by the workers.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Seconds to send (after warm-up).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of warm-up, not counted.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Stop after this many accepted items instead (0 = use --duration).
    #[arg(long, default_value_t = 0)]
    total: u64,
    /// Items per second across all workers (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Distinct service.name values.
    #[arg(long, default_value_t = 1)]
    services: usize,
    /// Distinct service.version values per service.
    #[arg(long, default_value_t = 2)]
    versions: usize,
    /// Fraction of requests that fail (span status ERROR, HTTP 500).
    #[arg(long, default_value_t = 0.01)]
    error_fraction: f64,
    /// Fraction of requests that convert.
    #[arg(long, default_value_t = 0.2)]
    converted_fraction: f64,
    /// First retry delay after a refusal, in ms (doubles up to 1 s).
    #[arg(long, default_value_t = 5)]
    backoff_ms: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Default)]
struct Stats {
    ok_requests: AtomicU64,
    accepted_items: AtomicU64,
    rejected_items: AtomicU64,
    refused: Mutex<BTreeMap<String, u64>>,
    failed: AtomicU64,
    latency_ms: Mutex<Sketch>,
}

impl Stats {
    fn refuse(&self, code: String) {
        if let Ok(mut m) = self.refused.lock() {
            *m.entry(code).or_default() += 1;
        }
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// xorshift: cheap deterministic randomness per worker.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

fn resource(args: &Args, rng: &mut Rng) -> Resource {
    let svc = rng.next() as usize % args.services.max(1);
    let ver = rng.next() as usize % args.versions.max(1);
    Resource {
        attributes: vec![
            kv("service.name", s(&format!("svc-{svc}"))),
            kv("service.version", s(&format!("1.{ver}.0"))),
            kv("deployment.environment", s("load")),
        ],
        ..Default::default()
    }
}

fn traces(args: &Args, rng: &mut Rng) -> ExportTraceServiceRequest {
    let now = now_ns();
    let spans = (0..args.batch)
        .map(|i| {
            let error = rng.unit() < args.error_fraction;
            let latency_ns = 1_000_000 + rng.next() % 200_000_000;
            let mut attributes = vec![
                kv("http.request.method", s("GET")),
                kv("http.route", s("/api/items/{id}")),
                kv(
                    "http.response.status_code",
                    any_value::Value::IntValue(if error { 500 } else { 200 }),
                ),
            ];
            if rng.unit() < args.converted_fraction {
                attributes.push(kv(
                    "validation.converted",
                    any_value::Value::BoolValue(true),
                ));
            }
            Span {
                trace_id: rng.next().to_le_bytes().repeat(2),
                span_id: rng.next().to_le_bytes().to_vec(),
                name: "GET /api/items/{id}".into(),
                kind: span::SpanKind::Server as i32,
                start_time_unix_nano: now - latency_ns - i as u64,
                end_time_unix_nano: now - i as u64,
                attributes,
                status: error.then(|| Status {
                    code: status::StatusCode::Error as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(args, rng)),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn metrics(args: &Args, rng: &mut Rng) -> ExportMetricsServiceRequest {
    let now = now_ns();
    let bounds = vec![
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    ];
    let points = (0..args.batch)
        .map(|i| {
            let counts: Vec<u64> = (0..=bounds.len()).map(|_| rng.next() % 5).collect();
            let status = if rng.unit() < args.error_fraction {
                500
            } else {
                200
            };
            HistogramDataPoint {
                attributes: vec![
                    kv("http.route", s(&format!("/r{}", i % 20))),
                    kv(
                        "http.response.status_code",
                        any_value::Value::IntValue(status),
                    ),
                ],
                start_time_unix_nano: now - 10_000_000_000,
                time_unix_nano: now,
                count: counts.iter().sum(),
                sum: Some(0.1 * counts.iter().sum::<u64>() as f64),
                bucket_counts: counts,
                explicit_bounds: bounds.clone(),
                ..Default::default()
            }
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource(args, rng)),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "http.server.request.duration".into(),
                    unit: "s".into(),
                    data: Some(metric::Data::Histogram(Histogram {
                        data_points: points,
                        aggregation_temporality: AggregationTemporality::Delta as i32,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

enum Outcome {
    Ok { rejected: u64 },
    Refused(String),
    Failed,
}

struct Sender {
    args: Args,
    http: reqwest::Client,
    channel: Option<Channel>,
    url: String,
}

impl Sender {
    async fn send(&self, rng: &mut Rng) -> Outcome {
        match (self.args.protocol, self.args.signal) {
            (Proto::Grpc, sig) => {
                let Some(channel) = self.channel.clone() else {
                    return Outcome::Failed;
                };
                let result = match sig {
                    Signal::Traces => TraceServiceClient::new(channel)
                        .export(traces(&self.args, rng))
                        .await
                        .map(|r| {
                            r.into_inner()
                                .partial_success
                                .map_or(0, |p| p.rejected_spans as u64)
                        }),
                    Signal::Metrics => MetricsServiceClient::new(channel)
                        .export(metrics(&self.args, rng))
                        .await
                        .map(|r| {
                            r.into_inner()
                                .partial_success
                                .map_or(0, |p| p.rejected_data_points as u64)
                        }),
                };
                match result {
                    Ok(rejected) => Outcome::Ok { rejected },
                    Err(st)
                        if matches!(
                            st.code(),
                            tonic::Code::Unavailable | tonic::Code::ResourceExhausted
                        ) =>
                    {
                        Outcome::Refused(format!("{:?}", st.code()))
                    }
                    Err(st) => {
                        eprintln!("request failed: {st}");
                        Outcome::Failed
                    }
                }
            }
            (Proto::Http, sig) => {
                let body = match sig {
                    Signal::Traces => traces(&self.args, rng).encode_to_vec(),
                    Signal::Metrics => metrics(&self.args, rng).encode_to_vec(),
                };
                let sent = self
                    .http
                    .post(&self.url)
                    .header("content-type", "application/x-protobuf")
                    .body(body)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => Outcome::Ok { rejected: 0 },
                    Ok(r) if matches!(r.status().as_u16(), 429 | 503) => {
                        Outcome::Refused(r.status().as_u16().to_string())
                    }
                    Ok(r) => {
                        eprintln!("request failed: HTTP {}", r.status());
                        Outcome::Failed
                    }
                    Err(e) => {
                        eprintln!("request failed: {e}");
                        Outcome::Failed
                    }
                }
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // reqwest is built without a crypto provider of its own (rustls-no-provider).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let endpoint = args
        .endpoint
        .clone()
        .unwrap_or_else(|| match args.protocol {
            Proto::Grpc => "127.0.0.1:4317".into(),
            Proto::Http => "127.0.0.1:4318".into(),
        });
    let mut channels = Vec::new();
    if let Proto::Grpc = args.protocol {
        for _ in 0..args.connections.max(1) {
            channels.push(
                Channel::from_shared(format!("http://{endpoint}"))?
                    .connect()
                    .await?,
            );
        }
    }
    let path = match args.signal {
        Signal::Traces => "traces",
        Signal::Metrics => "metrics",
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let stats = Arc::new(Stats::default());
    let counting = Arc::new(AtomicBool::new(args.warmup == 0));
    let stop = Arc::new(AtomicBool::new(false));
    let per_worker_interval = (args.rate > 0).then(|| {
        Duration::from_secs_f64(args.concurrency as f64 * args.batch as f64 / args.rate as f64)
    });
    let mut workers = Vec::new();
    for w in 0..args.concurrency.max(1) {
        let sender = Sender {
            args: args.clone(),
            http: http.clone(),
            channel: channels.get(w % channels.len().max(1)).cloned(),
            url: format!("http://{endpoint}/v1/{path}"),
        };
        let (stats, counting, stop) = (stats.clone(), counting.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (w as u64 + 1));
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if let Some(iv) = per_worker_interval {
                    tokio::time::sleep_until(next.into()).await;
                    next += iv;
                }
                let mut backoff = Duration::from_millis(sender.args.backoff_ms.max(1));
                loop {
                    let t0 = Instant::now();
                    let outcome = sender.send(&mut rng).await;
                    let counted = counting.load(Ordering::Relaxed);
                    match outcome {
                        Outcome::Ok { rejected } => {
                            if counted {
                                stats.ok_requests.fetch_add(1, Ordering::Relaxed);
                                stats.accepted_items.fetch_add(
                                    sender.args.batch as u64 - rejected,
                                    Ordering::Relaxed,
                                );
                                stats.rejected_items.fetch_add(rejected, Ordering::Relaxed);
                                if let Ok(mut l) = stats.latency_ms.lock() {
                                    let _ = l.insert(t0.elapsed().as_secs_f64() * 1000.0);
                                }
                            }
                            break;
                        }
                        Outcome::Refused(code) => {
                            if counted {
                                stats.refuse(code);
                            }
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(1));
                        }
                        Outcome::Failed => {
                            if counted {
                                stats.failed.fetch_add(1, Ordering::Relaxed);
                            }
                            break;
                        }
                    }
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
                if sender.args.total > 0
                    && stats.accepted_items.load(Ordering::Relaxed) >= sender.args.total
                {
                    stop.store(true, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    counting.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    if args.total == 0 {
        tokio::time::sleep(Duration::from_secs(args.duration)).await;
        stop.store(true, Ordering::Relaxed);
    }
    for w in workers {
        w.await?;
    }
    let secs = t0.elapsed().as_secs_f64();
    let accepted = stats.accepted_items.load(Ordering::Relaxed);
    let refused = stats.refused.lock().map(|m| m.clone()).unwrap_or_default();
    let (p50, p99) = stats
        .latency_ms
        .lock()
        .map(|l| {
            (
                l.quantile(0.5).map(|q| q.value),
                l.quantile(0.99).map(|q| q.value),
            )
        })
        .unwrap_or((None, None));
    let report = serde_json::json!({
        "protocol": format!("{:?}", args.protocol).to_lowercase(),
        "signal": path,
        "batch": args.batch,
        "concurrency": args.concurrency,
        "seconds": secs,
        "requests_ok": stats.ok_requests.load(Ordering::Relaxed),
        "requests_refused": refused,
        "requests_failed": stats.failed.load(Ordering::Relaxed),
        "items_accepted": accepted,
        "items_rejected": stats.rejected_items.load(Ordering::Relaxed),
        "items_per_second": accepted as f64 / secs,
        "latency_ms": {"p50": p50, "p99": p99},
    });
    if args.json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}
