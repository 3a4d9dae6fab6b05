//! Durability costs (issue 5, requirement 9), as a plain binary
//! (`harness = false`): `cargo bench --bench durability`.
//!
//! 1. **Transitions per second** the SQLite store (WAL, `synchronous=FULL`)
//!    sustains with the outbox: each transition is a run update, a window
//!    result, the transition row and two outbox rows (log + webhook),
//!    committed one per transaction (the worst case: one run decides alone)
//!    and 100 per transaction (many runs decide at the same window close,
//!    which the engine commits as one batch).
//! 2. **Window close → webhook receipt**: the real server in process
//!    (SQLite, 2.5 s windows, so the shard tick is the 250 ms it is for any
//!    window of 2.5 s or more, e.g. the default 60 s), a failing release per
//!    window, and a webhook receiver on loopback. Latency is receipt time
//!    minus the window's close deadline (end + allowed_lateness).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use verdict::model::Accum;
use verdict::model::{Figures, WindowVerdict};
use verdict::model::{RunRecord, RunState, VerdictEvent, WindowRecord};
use verdict::model::{Subject, Window};
use verdict::storage::{Commit, RunStore, SqlStore};

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn transition(i: usize, seq: usize) -> Commit {
    let subject = Subject::new(vec![("service.version".into(), format!("v{i}"))]);
    let mut run = RunRecord::new("checkout", 1, subject, 1_000);
    run.run_id = format!("run-{i:08}");
    let mut acc = Accum::default();
    for v in 0..200 {
        let _ = acc.latency.insert(10.0 + f64::from(v));
    }
    acc.samples = 200;
    run.cumulative = acc.clone();
    run.state = RunState::RolledBack;
    let window = WindowRecord {
        window: Window {
            start: seq as u64 * 60_000_000_000,
            end: (seq as u64 + 1) * 60_000_000_000,
        },
        figures: Figures::of(&acc),
        result: WindowVerdict::Fail,
        failures: vec!["p95 latency 130.2ms exceeds threshold 120ms".into()],
        notes: Vec::new(),
        checks: Vec::new(),
    };
    let event = VerdictEvent {
        event_id: format!("{seq:026}"),
        emitted_at: now_ns(),
        run: run.clone(),
        previous_state: RunState::Validating,
        window: Some(window.clone()),
        failures: window.failures.clone(),
        dry_run: false,
    };
    Commit {
        run,
        window: Some(window),
        event: Some(event),
        outbox: vec!["log".into(), "webhook/ci".into()],
        rollouts: Vec::new(),
    }
}

async fn transitions_per_second(dir: &std::path::Path) {
    for (per_tx, total) in [(1usize, 2_000usize), (100, 20_000)] {
        let path = dir.join(format!("tps-{per_tx}.db"));
        let store = SqlStore::open_sqlite("sqlite://bench", &path)
            .await
            .expect("open");
        let batches: Vec<Vec<Commit>> = (0..total / per_tx)
            .map(|b| {
                (0..per_tx)
                    .map(|j| transition(b * per_tx + j, b * per_tx + j))
                    .collect()
            })
            .collect();
        let start = Instant::now();
        for batch in &batches {
            store.commit(batch, now_ns()).await.expect("commit");
        }
        let elapsed = start.elapsed();
        println!(
            "storage/sqlite_wal/transitions_with_outbox/{per_tx}_per_tx: {total} transitions in {:.2?} = {:.0} transitions/s ({:.0} commits/s)",
            elapsed,
            total as f64 / elapsed.as_secs_f64(),
            (total / per_tx) as f64 / elapsed.as_secs_f64()
        );
    }
}

async fn close_to_webhook(dir: &std::path::Path) {
    // The webhook receiver: receipt time by subject (one release per event).
    let received: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let got = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let got = got.clone();
            async move {
                let at = now_ns();
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let version = v["subject"]["service.version"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                got.lock().expect("lock").push((at, version));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let lateness_ms = 200u64;
    let yaml = format!(
        r#"
receivers:
  otlp: {{ protocols: {{ http: {{ endpoint: "127.0.0.1:0" }} }} }}
processors:
  window: {{ size: 2500ms, allowed_lateness: {lateness_ms}ms }}
  contract/checkout:
    match: {{ service.name: checkout }}
    subject_by: [service.version]
    max_p95_latency_ms: 100
exporters:
  webhook/ci: {{ url: "http://{hook}/hook", on: [ROLLED_BACK] }}
pipelines:
  checkout: {{ receivers: [otlp], processors: [window, contract/checkout], exporters: [webhook/ci] }}
service:
  api: {{ endpoint: "127.0.0.1:0" }}
  storage: "sqlite://{}"
"#,
        dir.join("e2e.db").display()
    );
    let cfg = verdict::config::load_str(&yaml, &HashMap::new()).expect("config");
    let server = verdict::topology::Server::start(cfg, Arc::new(verdict::clock::SystemClock))
        .await
        .expect("server");
    let http = server.http[0].1;
    let client = reqwest::Client::new();
    let rounds = 12u64;
    let size = 2_500_000_000u64;
    // Close deadline (window end + allowed lateness) of each release's spans.
    let mut deadlines: HashMap<String, u64> = HashMap::new();
    for round in 0..rounds {
        // Early in the next window.
        let now = now_ns();
        let next = (now / size + 1) * size + 100_000_000;
        tokio::time::sleep(Duration::from_nanos(next - now)).await;
        for r in 0..3 {
            let end = now_ns();
            let version = format!("r{round}-{r}");
            deadlines.insert(
                version.clone(),
                (end / size + 1) * size + lateness_ms * 1_000_000,
            );
            let spans: Vec<serde_json::Value> = (0..20)
                .map(|_| serde_json::json!({"kind": 2, "startTimeUnixNano": (end - 500_000_000).to_string(), "endTimeUnixNano": end.to_string()}))
                .collect();
            let body = serde_json::json!({"resourceSpans": [{"resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "checkout"}},
                {"key": "service.version", "value": {"stringValue": version}}]},
                "scopeSpans": [{"spans": spans}]}]});
            client
                .post(format!("http://{http}/v1/traces"))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .expect("send");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.lock().expect("lock").len() < (rounds * 3) as usize && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut latencies: Vec<f64> = received
        .lock()
        .expect("lock")
        .iter()
        .filter_map(|(at, version)| {
            let close = deadlines.get(version)?;
            Some((*at as f64 - *close as f64) / 1e6)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let q = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    if latencies.is_empty() {
        println!("e2e/window_close_to_webhook: no webhook received");
    } else {
        println!(
            "e2e/window_close_to_webhook: {} webhooks, latency after the close deadline p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
            latencies.len(),
            q(0.5),
            q(0.95),
            q(1.0)
        );
    }
    let _ = server.shutdown(Duration::from_secs(10)).await;
}

fn main() {
    // `cargo test --benches` runs bench binaries with `--bench` absent: keep
    // that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let dir = std::env::temp_dir().join(format!("verdict-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if quick {
        println!("durability bench: run with `cargo bench --bench durability`");
    } else {
        rt.block_on(transitions_per_second(&dir));
        rt.block_on(close_to_webhook(&dir));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
