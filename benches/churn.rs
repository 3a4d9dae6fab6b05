//! One-shot subjects over simulated hours (`cargo bench --bench churn`): is
//! the server bounded by what is live, not by everything it has seen?
//!
//! The real server in process (SQLite in a temporary directory, OTLP/HTTP
//! protobuf on loopback) on a [`ManualClock`]: every simulated minute a
//! fresh batch of subjects — build numbers, user ids — sends one span each
//! and is never seen again. Each becomes a run, is judged at its window's
//! close, goes idle, is retired after `run_idle_timeout` (2 min here) and is
//! purged an hour later. Printed every 10 simulated minutes: subjects sent,
//! the process's RSS, and the database's size (file + WAL).
//!
//! Expected shape: RSS flat from the first minutes on (memory holds only the
//! subjects of the last `run_idle_timeout`); the database grows for the
//! first hour — retired runs stay listed for an hour — and is flat after,
//! as purging keeps pace with new subjects.
//!
//! `CHURN_PER_MINUTE` (default 16,667: a million an hour) and
//! `CHURN_MINUTES` (default 150) set the load; `cargo test --benches` runs
//! a few minutes of it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, ResourceSpans, ScopeSpans, Span};
use prost::Message;
use verdict::clock::ManualClock;

const MINUTE: u64 = 60_000_000_000;

fn attr(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..KeyValue::default()
    }
}

/// One span each for subjects `from..to`, ending at `end`.
fn request(from: u64, to: u64, end: u64) -> Vec<u8> {
    let resource_spans = (from..to)
        .map(|i| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    attr("service.name", "churn".into()),
                    attr("service.version", format!("build-{i}")),
                ],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    name: "GET /".into(),
                    kind: SpanKind::Server as i32,
                    start_time_unix_nano: end - 20_000_000,
                    end_time_unix_nano: end,
                    ..Span::default()
                }],
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }.encode_to_vec()
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn db_mib(path: &Path) -> f64 {
    ["", "-wal"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", path.display())).ok())
        .map(|m| m.len() as f64)
        .sum::<f64>()
        / (1024.0 * 1024.0)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // reqwest is built without a crypto provider of its own (rustls-no-provider).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let quick = !std::env::args().any(|a| a == "--bench");
    let per_minute = env_u64("CHURN_PER_MINUTE", if quick { 200 } else { 16_667 });
    let minutes = env_u64("CHURN_MINUTES", if quick { 4 } else { 150 });
    let dir = std::env::temp_dir().join(format!("verdict-churn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let db = dir.join("churn.db");
    let yaml = format!(
        r#"
receivers:
  otlp: {{ protocols: {{ http: {{ endpoint: "127.0.0.1:0" }} }} }}
processors:
  window: {{ size: 60s, allowed_lateness: 5s, max_series: 60000 }}
  contract/churn:
    match: {{ service.name: churn }}
    subject_by: [service.version]
    max_p95_latency_ms: 100
    run_idle_timeout: 2m
pipelines:
  churn: {{ receivers: [otlp], processors: [window, contract/churn] }}
service:
  api: {{ endpoint: "127.0.0.1:0" }}
  storage: "sqlite://{}"
"#,
        db.display()
    );
    let cfg = verdict::config::load_str(&yaml, &HashMap::new()).expect("config");
    // Far from the epoch, on a window boundary.
    let start = 1_800_000_000 * 1_000_000_000 / MINUTE * MINUTE;
    let clock = Arc::new(ManualClock::new(start));
    let server = verdict::topology::Server::start(cfg, clock.clone())
        .await
        .expect("server");
    let url = format!("http://{}/v1/traces", server.http[0].1);
    let client = reqwest::Client::new();
    let began = Instant::now();
    println!(
        "churn: {per_minute} new subjects a minute for {minutes} simulated minutes (run_idle_timeout 2m, retired runs kept 1h)"
    );
    println!(
        "{:>7} {:>10} {:>9} {:>8} {:>9}",
        "minute", "subjects", "RSS MiB", "DB MiB", "wall s"
    );
    let mut sent = 0u64;
    let mut rejected = 0u64;
    for minute in 0..minutes {
        let at = start + minute * MINUTE;
        clock.set(at + MINUTE / 2);
        let mut from = sent;
        let to = sent + per_minute;
        while from < to {
            let upto = (from + 2_000).min(to);
            let response = client
                .post(&url)
                .header("content-type", "application/x-protobuf")
                .body(request(from, upto, at + MINUTE / 2))
                .send()
                .await
                .expect("send");
            if !response.status().is_success() {
                rejected += upto - from;
            }
            from = upto;
        }
        sent = to;
        // Past the window's close: the shards close it, the engine judges
        // it, idle runs retire and old ones are purged, all on this clock.
        clock.set(at + MINUTE + 6_000_000_000);
        tokio::time::sleep(Duration::from_millis(if quick { 400 } else { 800 })).await;
        if minute % 10 == 9 || minute + 1 == minutes || quick {
            println!(
                "{:>7} {:>10} {:>9.1} {:>8.1} {:>9.0}",
                minute + 1,
                sent,
                rss_mib(),
                db_mib(&db),
                began.elapsed().as_secs_f64()
            );
        }
    }
    if rejected > 0 {
        println!("churn: {rejected} subjects' requests were refused");
    }
    let _ = server.shutdown(Duration::from_secs(30)).await;
    let _ = std::fs::remove_dir_all(&dir);
}
