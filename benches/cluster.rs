//! Several instances on PostgreSQL (issue: PostgreSQL storage and several
//! instances), as a plain binary (`harness = false`):
//! `cargo bench --bench cluster` (needs the PostgreSQL of
//! `VERDICT_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`;
//! each part runs in a database of its own, dropped at the end).
//!
//! 1. **Close deadline → verdict** with three instances in this process on
//!    one database and `SERIES` active series, every series sent to every
//!    instance (the worst case for the leader's merge: three partials per
//!    series), a tenth of them failing: the time from the window's close
//!    deadline to the commit of its results (when the pipeline's judged
//!    mark, written in the transaction that stores every run's window
//!    result and transitions, is seen moved; polled every 20 ms), with and
//!    without the grace —
//!    for a window in which every series is new (runs looked up, created
//!    and moved to VALIDATING), then for a later window of the same series
//!    (steady state: the runs exist).
//! 2. **Rows and bytes per window per series**: what the instances and
//!    the leader wrote for that window, from PostgreSQL's own counters
//!    (`pg_stat_user_tables`) and row sizes (`pg_column_size`).
//!
//! The ingest rate of one instance on PostgreSQL against SQLite is measured
//! with the release binary and the independent load generator
//! (`benches/RESULTS.md`, "Several instances on PostgreSQL").

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, ResourceSpans, ScopeSpans, Span};
use sqlx::{Connection, Row};
use verdict::storage::testing::TestDatabase;

/// Active series (releases) of part 1.
const SERIES: usize = 10_000;
/// Spans per series per instance.
const SPANS: u64 = 4;
/// Window size and lateness (s), grace (ms).
const WINDOW_S: u64 = 10;
const LATENESS_S: u64 = 1;
const GRACE_MS: u64 = 1000;

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn config(db: &str, instance: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:0" }}
    max_request_bytes: 64MiB
processors:
  window: {{ size: {WINDOW_S}s, allowed_lateness: {LATENESS_S}s, shards: 2, max_series: 100000 }}
  contract/checkout:
    match: {{ service.name: checkout }}
    subject_by: [service.version]
    max_p95_latency_ms: 100
    decision: windows
    fail_windows: 1
    pass_windows: 1000
exporters:
  prometheus: {{ endpoint: "127.0.0.1:0" }}
pipelines:
  checkout:
    receivers: [otlp]
    processors: [window, contract/checkout]
    exporters: [prometheus]
service:
  api: {{ endpoint: "127.0.0.1:0" }}
  storage: "{db}"
  checkpoint_interval: 2s
  postgres: {{ instance: {instance}, grace: {GRACE_MS}ms }}
"#
    )
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// One request with `SPANS` spans of each of the releases `range`; every
/// tenth release is slow (it fails its window).
fn request(range: std::ops::Range<usize>) -> ExportTraceServiceRequest {
    let now = now_ns();
    ExportTraceServiceRequest {
        resource_spans: range
            .map(|i| {
                let ms = if i % 10 == 0 { 400 } else { 20 };
                ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![
                            kv("service.name", "checkout"),
                            kv("service.version", &format!("v{i}")),
                        ],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        spans: (0..SPANS)
                            .map(|s| Span {
                                trace_id: vec![1; 16],
                                span_id: (s + 1).to_be_bytes().to_vec(),
                                name: "GET /".into(),
                                kind: SpanKind::Server as i32,
                                start_time_unix_nano: now - ms * 1_000_000 - s * 1000,
                                end_time_unix_nano: now - s * 1000,
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }
            })
            .collect(),
    }
}

/// (rows inserted, rows updated) of each table of `url`'s database.
async fn table_writes(url: &str) -> HashMap<String, (i64, i64)> {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connects");
    // Counters are flushed by the writing sessions about once a second.
    let rows = sqlx::query(
        "SELECT relname::text AS t, n_tup_ins AS i, n_tup_upd AS u FROM pg_stat_user_tables",
    )
    .fetch_all(&mut conn)
    .await
    .expect("stats");
    rows.iter()
        .map(|r| {
            (
                r.get::<String, _>("t"),
                (r.get::<i64, _>("i"), r.get::<i64, _>("u")),
            )
        })
        .collect()
}

/// What one window of load gave.
struct WindowRun {
    /// The window's start.
    window: u64,
    /// How long the load took to send.
    send_time: Duration,
    /// From the close deadline to the commit of the window's results.
    latency_ms: f64,
    /// Partial rows and their bytes as the leader merged them.
    partial_rows: i64,
    partial_bytes: i64,
}

/// Sends `SPANS` spans of every series to every instance right after a
/// window starts, and waits for the leader to commit that window.
async fn one_window(
    servers: &[verdict::topology::Server],
    conn: &mut sqlx::PgConnection,
) -> WindowRun {
    // Start right after a window begins, so the load lands in one window.
    let size = WINDOW_S * 1_000_000_000;
    let next = (now_ns() / size + 1) * size;
    tokio::time::sleep(Duration::from_nanos(next - now_ns() + 200_000_000)).await;
    let window = now_ns() / size * size;
    let deadline = window + size + LATENESS_S * 1_000_000_000;
    let sent = std::time::Instant::now();
    let mut sends = Vec::new();
    for s in servers {
        let addr = s.grpc[0].1;
        sends.push(tokio::spawn(async move {
            let mut client = TraceServiceClient::connect(format!("http://{addr}"))
                .await
                .expect("connects")
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20);
            for chunk in (0..SERIES).step_by(1000) {
                loop {
                    if client
                        .export(request(chunk..(chunk + 1000).min(SERIES)))
                        .await
                        .is_ok()
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }));
    }
    for s in sends {
        s.await.expect("sender");
    }
    let send_time = sent.elapsed();
    assert!(now_ns() < deadline, "the load did not fit in the window");
    // The partials as they stand at the deadline + grace (what the leader
    // merges), then the judgment.
    tokio::time::sleep(Duration::from_nanos(
        (deadline + GRACE_MS * 1_000_000 / 2).saturating_sub(now_ns()),
    ))
    .await;
    let partials = sqlx::query(
        "SELECT COUNT(*) AS n, COALESCE(SUM(pg_column_size(p.*)), 0)::bigint AS bytes \
         FROM partials p WHERE window_start = $1",
    )
    .bind(window as i64)
    .fetch_one(&mut *conn)
    .await
    .expect("partials");
    // The commit is seen when it is visible: `judged_at` is when the
    // leader started it, which leaves out the commit itself.
    let committed = loop {
        let row = sqlx::query("SELECT window_start FROM cluster_judged")
            .fetch_optional(&mut *conn)
            .await
            .expect("judged");
        if row.is_some_and(|r| r.get::<i64, _>("window_start") >= window as i64) {
            break now_ns();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    WindowRun {
        window,
        send_time,
        latency_ms: (committed.saturating_sub(deadline)) as f64 / 1e6,
        partial_rows: partials.get("n"),
        partial_bytes: partials.get("bytes"),
    }
}

async fn rolled_back(conn: &mut sqlx::PgConnection) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM runs WHERE state = 'ROLLED_BACK'")
        .fetch_one(conn)
        .await
        .expect("runs")
        .get("n")
}

fn report(what: &str, run: &WindowRun, results: i64, rolled_back: i64) {
    println!(
        "cluster/close_to_verdict ({what}): 3 instances, {SERIES} series x {SPANS} spans each per \
         instance (sent in {:.1} s), {WINDOW_S} s windows, lateness {LATENESS_S} s, grace {GRACE_MS} ms: \
         window results committed (seen) {:.0} ms after the close deadline \
         ({:.0} ms after deadline + grace); {results} window results, {rolled_back} runs rolled back",
        run.send_time.as_secs_f64(),
        run.latency_ms,
        run.latency_ms - GRACE_MS as f64,
    );
}

async fn close_to_verdict() {
    let Some(db) = TestDatabase::create().await else {
        println!("cluster bench: no PostgreSQL (see VERDICT_TEST_POSTGRES_URL)");
        return;
    };
    let mut servers = Vec::new();
    for name in ["a", "b", "c"] {
        let cfg =
            verdict::config::load_str(&config(&db.url, name), &HashMap::new()).expect("config");
        servers.push(
            verdict::topology::Server::start(cfg, Arc::new(verdict::clock::SystemClock))
                .await
                .expect("starts"),
        );
    }
    let mut conn = sqlx::PgConnection::connect(&db.url)
        .await
        .expect("connects");
    let before = table_writes(&db.url).await;
    // 1. Every series new: each run is looked up, created and moves to
    //    VALIDATING (a tenth to ROLLED_BACK) with this window.
    let first = one_window(&servers, &mut conn).await;
    let judged = sqlx::query(
        "SELECT COUNT(*) AS n, COALESCE(SUM(pg_column_size(w.*)), 0)::bigint AS bytes FROM windows w WHERE window_start = $1",
    )
    .bind(first.window as i64)
    .fetch_one(&mut conn)
    .await
    .expect("windows");
    report(
        "all series new",
        &first,
        judged.get("n"),
        rolled_back(&mut conn).await,
    );
    let run_bytes: i64 =
        sqlx::query("SELECT COALESCE(AVG(pg_column_size(r.*)), 0)::bigint AS b FROM runs r")
            .fetch_one(&mut conn)
            .await
            .expect("runs")
            .get("b");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = table_writes(&db.url).await;
    let delta = |t: &str| {
        let (i0, u0) = before.get(t).copied().unwrap_or((0, 0));
        let (i1, u1) = after.get(t).copied().unwrap_or((0, 0));
        (i1 - i0) + (u1 - u0)
    };
    let per = |n: i64| n as f64 / SERIES as f64;
    let (partial_rows, partial_bytes) = (first.partial_rows, first.partial_bytes);
    println!(
        "cluster/rows_per_window: partials {partial_rows} rows at judgment ({:.2} per series, \
         avg {} B), partial upserts {} ({:.2} per series); leader: windows {} rows ({} B avg), \
         runs {} upserts ({run_bytes} B avg), transitions {}, outbox {}; \
         total rows written {:.2} per series per window, about {:.0} B per series per window",
        per(partial_rows),
        partial_bytes / partial_rows.max(1),
        delta("partials"),
        per(delta("partials")),
        judged.get::<i64, _>("n"),
        judged.get::<i64, _>("bytes") / judged.get::<i64, _>("n").max(1),
        delta("runs"),
        delta("transitions"),
        delta("outbox"),
        per(delta("partials")
            + delta("windows")
            + delta("runs")
            + delta("transitions")
            + delta("outbox")),
        (delta("partials") * (partial_bytes / partial_rows.max(1))
            + judged.get::<i64, _>("bytes")
            + delta("runs") * run_bytes) as f64
            / SERIES as f64,
    );
    // 2. Steady state: the same series again in a later window; their
    //    runs exist and the leader holds them.
    let steady = one_window(&servers, &mut conn).await;
    let results: i64 = sqlx::query("SELECT COUNT(*) AS n FROM windows WHERE window_start = $1")
        .bind(steady.window as i64)
        .fetch_one(&mut conn)
        .await
        .expect("windows")
        .get("n");
    report(
        "steady state, runs exist",
        &steady,
        results,
        rolled_back(&mut conn).await,
    );
    for s in servers {
        let _ = s.shutdown(Duration::from_secs(20)).await;
    }
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The leader's "Window judged." lines: where each window's time goes.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "warn,verdict::runs::leader=debug,verdict::storage::batch=debug",
        ))
        .init();
    let quick = !std::env::args().any(|a| a == "--bench");
    if quick {
        println!("cluster bench: run with `cargo bench --bench cluster`");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(close_to_verdict());
}
