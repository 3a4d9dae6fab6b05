//! Reloading the pipeline file of a running `verdict run` (SIGHUP and
//! `POST /api/v1/reload`): open windows and runs are kept, listening
//! sockets stay open, new endpoints bind and removed ones close, a new
//! contract version starts new runs, and an invalid file changes nothing
//! while every problem is reported with its path.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::durable::{pipeline, sqlite, Verdict, TOKEN};
use crate::{eventually, get_json, now_ns, TempDir};

/// The test pipeline: 2 s windows, a contract that never decides on its
/// own, and the OTLP/gRPC listener when `grpc`.
fn yaml(dir: &TempDir, version: u32, grpc: bool) -> String {
    let contract = format!("    version: {version}\n    decision: windows\n    pass_windows: 1000\n    fail_windows: 1000");
    let mut y = pipeline(&sqlite(&dir.0), &[], &contract).replace(
        "size: 1s, allowed_lateness: 200ms",
        "size: 2s, allowed_lateness: 300ms",
    );
    if grpc {
        y = y.replace(
            "http: { endpoint: \"127.0.0.1:0\" }",
            "http: { endpoint: \"127.0.0.1:0\" }\n      grpc: { endpoint: \"127.0.0.1:0\" }",
        );
    }
    y
}

async fn post_reload(v: &Verdict, token: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(v.api("/api/v1/reload"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("reload answered");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn sighup(v: &Verdict) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &v.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Addresses the server logged as `Listening.` for `component`, in order.
fn listening(v: &Verdict, component: &str) -> Vec<String> {
    v.stderr
        .lock()
        .expect("lock")
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["message"] == "Listening." && l["fields"]["component"] == component)
        .filter_map(|l| l["fields"]["addr"].as_str().map(str::to_string))
        .collect()
}

fn logged(v: &Verdict, message: &str) -> usize {
    v.stderr
        .lock()
        .expect("lock")
        .iter()
        .filter(|l| l.contains(message))
        .count()
}

/// Waits until the server logged its `n`th applied reload.
async fn reloaded(v: &Verdict, n: usize) {
    eventually(Duration::from_secs(30), "the reload", || {
        let done = logged(v, "Reloaded.");
        async move { (done >= n).then_some(()) }
    })
    .await;
}

/// A sender of spans of `checkout/1.0` that never pauses until stopped,
/// counting the spans the server took (200, less what partial_success
/// rejected).
struct Sender {
    accepted: Arc<AtomicU64>,
    running: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sender {
    fn start(http: std::net::SocketAddr) -> Sender {
        let accepted = Arc::new(AtomicU64::new(0));
        let running = Arc::new(AtomicBool::new(true));
        let task = {
            let (accepted, running) = (accepted.clone(), running.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                while running.load(Ordering::SeqCst) {
                    let now = now_ns();
                    let spans: Vec<Value> = (0..20u64)
                        .map(|i| {
                            let end = now - i * 1000;
                            json!({"kind": 2, "name": "GET /",
                                   "startTimeUnixNano": (end - 5_000_000).to_string(),
                                   "endTimeUnixNano": end.to_string()})
                        })
                        .collect();
                    let body = json!({"resourceSpans": [{
                        "resource": {"attributes": [
                            {"key": "service.name", "value": {"stringValue": "checkout"}},
                            {"key": "service.version", "value": {"stringValue": "1.0"}}]},
                        "scopeSpans": [{"spans": spans}]}]});
                    let resp = client
                        .post(format!("http://{http}/v1/traces"))
                        .header("content-type", "application/json")
                        .body(body.to_string())
                        .send()
                        .await;
                    if let Ok(r) = resp {
                        if r.status() == 200 {
                            let answer: Value = r.json().await.unwrap_or(Value::Null);
                            let rejected = answer["partialSuccess"]["rejectedSpans"]
                                .as_str()
                                .and_then(|n| n.parse::<u64>().ok())
                                .unwrap_or(0);
                            accepted.fetch_add(20 - rejected, Ordering::SeqCst);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
            })
        };
        Sender {
            accepted,
            running,
            task,
        }
    }

    /// Stops sending; returns how many spans were accepted.
    async fn stop(self) -> u64 {
        self.running.store(false, Ordering::SeqCst);
        self.task.await.expect("sender");
        self.accepted.load(Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reloads_keep_every_accepted_sample_and_the_listening_sockets() {
    let dir = TempDir::new("reload");
    let file = dir.0.join("pipeline.yaml");
    std::fs::write(&file, yaml(&dir, 1, false)).expect("write");
    let v = Verdict::start(&file);
    let (http, api) = (v.http, v.api);

    let sender = Sender::start(http);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // SIGHUP with a changed threshold, then the API with a gRPC listener
    // added.
    std::fs::write(
        &file,
        yaml(&dir, 1, false).replace("max_p95_latency_ms: 100", "max_p95_latency_ms: 150"),
    )
    .expect("write");
    sighup(&v);
    reloaded(&v, 1).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    std::fs::write(&file, yaml(&dir, 1, true)).expect("write");
    let (status, body) = post_reload(&v, Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["changes"]
            .to_string()
            .contains("otlp-grpc otlp: listens on 127.0.0.1:0"),
        "{body}"
    );
    reloaded(&v, 2).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent = sender.stop().await;
    assert!(sent > 500, "{sent} spans sent");
    // The same file again: nothing to apply, nothing restarted.
    let (status, body) = post_reload(&v, Some(TOKEN)).await;
    assert_eq!(
        (status, body["changes"][0].as_str()),
        (200, Some("nothing changed")),
        "{body}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(logged(&v, "Reloaded."), 2);

    // The same sockets serve after both reloads…
    assert_eq!(listening(&v, "otlp-http"), vec![http.to_string(); 3]);
    assert_eq!(listening(&v, "api"), vec![api.to_string(); 3]);
    // …the new gRPC listener answers…
    let grpc = listening(&v, "otlp-grpc");
    assert_eq!(grpc.len(), 1, "{grpc:?}");
    let grpc_addr: std::net::SocketAddr = grpc[0].parse().expect("addr");
    assert!(tokio::net::TcpStream::connect(grpc_addr).await.is_ok());
    // …and every accepted span is counted, once windows close.
    let run = v
        .run_until("1.0", "every accepted span to be counted", |r| {
            r["run"]["samples"].as_u64() >= Some(sent)
        })
        .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let run_after = v.run("1.0").await;
    assert_eq!(
        run_after["run"]["samples"].as_u64(),
        Some(sent),
        "{run_after}"
    );
    assert_eq!(run_after["run_id"], run["run_id"], "the run is kept");
    let metrics = crate::scrape(v.prometheus).await;
    assert!(
        metrics.contains("verdict_config_reloads_total{result=\"applied\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_reload_changes_nothing_and_a_version_bump_starts_new_runs() {
    let dir = TempDir::new("reload-invalid");
    let file = dir.0.join("pipeline.yaml");
    std::fs::write(&file, yaml(&dir, 1, true)).expect("write");
    let v = Verdict::start(&file);
    let grpc = v.grpc.expect("a gRPC listener");
    v.spans("7.0", 30, 10).await;
    let old = v
        .run_until("7.0", "the v1 run", |r| r["state"] == "VALIDATING")
        .await;

    // Without the token: 401, nothing read.
    let (status, _) = post_reload(&v, None).await;
    assert_eq!(status, 401);
    // An invalid file: 400 naming every problem by its path; nothing changes.
    let broken = yaml(&dir, 1, true)
        .replace("max_p95_latency_ms: 100", "max_p95_latency_ms: -5")
        .replace("shards: 2", "shards: 2, colour: blue");
    std::fs::write(&file, broken).expect("write");
    let (status, body) = post_reload(&v, Some(TOKEN)).await;
    assert_eq!(status, 400, "{body}");
    let problems = body["problems"].to_string();
    assert!(
        problems.contains("processors.contract/checkout.max_p95_latency_ms")
            && problems.contains("processors.window.colour"),
        "{body}"
    );
    sighup(&v);
    eventually(Duration::from_secs(20), "the SIGHUP refusal", || {
        let n = logged(&v, "Reload refused");
        async move { (n >= 4).then_some(()) }
    })
    .await;
    assert_eq!(logged(&v, "Reloaded."), 0);
    assert!(tokio::net::TcpStream::connect(grpc).await.is_ok());
    let metrics = crate::scrape(v.prometheus).await;
    assert!(
        metrics.contains("verdict_config_reloads_total{result=\"invalid\"} 2"),
        "{metrics}"
    );
    // A storage change cannot be applied by a reload.
    std::fs::write(&file, yaml(&dir, 1, true).replace("verdict.db", "other.db")).expect("write");
    let (status, body) = post_reload(&v, Some(TOKEN)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["problems"].to_string().contains("service.storage"),
        "{body}"
    );

    // Version 2 without the gRPC listener: new runs, the port closes.
    std::fs::write(&file, yaml(&dir, 2, false)).expect("write");
    let (status, body) = post_reload(&v, Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let changes = body["changes"].to_string();
    assert!(
        changes.contains("version 1 -> 2") && changes.contains("closed"),
        "{body}"
    );
    reloaded(&v, 1).await;
    // The new run counts the windows the old one had not judged yet (if
    // any were still open, it is VALIDATING already).
    let run = v.run("7.0").await;
    assert_eq!(run["contract_version"].as_u64(), Some(2), "{run}");
    let (_, all) = get_json(&v.api("/api/v1/runs")).await;
    assert!(all["runs"]
        .as_array()
        .is_some_and(|r| r.iter().any(|r| r["run_id"] == old["run_id"])));
    assert!(tokio::net::TcpStream::connect(grpc).await.is_err());
    v.spans("7.0", 30, 10).await;
    v.run_until("7.0", "the v2 run to start", |r| {
        r["state"] == "VALIDATING" && r["contract_version"] == 2
    })
    .await;
}

/// The samples of `checkout/1.0` in every run of it (each contract
/// version's), with the runs as (version, state, superseded).
async fn samples_in_runs(v: &Verdict) -> (u64, Vec<(u64, String, bool)>) {
    let (status, all) = get_json(&v.api("/api/v1/runs?limit=1000")).await;
    assert_eq!(status, 200, "{all}");
    let runs: Vec<&Value> = all["runs"]
        .as_array()
        .map(|r| r.iter().filter(|r| r["subject"] == "1.0").collect())
        .unwrap_or_default();
    let samples = runs
        .iter()
        .filter_map(|r| r["run"]["samples"].as_u64())
        .sum();
    let mut described: Vec<(u64, String, bool)> = runs
        .iter()
        .map(|r| {
            (
                r["contract_version"].as_u64().unwrap_or(0),
                r["state"].as_str().unwrap_or("").to_string(),
                r["superseded"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    described.sort();
    (samples, described)
}

/// A version bump while spans flow: the old run keeps what it judged, the
/// new one counts the windows open at the reload and those after, so every
/// accepted span is in exactly one of them.
#[tokio::test(flavor = "multi_thread")]
async fn a_version_bump_under_traffic_counts_every_accepted_sample() {
    let dir = TempDir::new("reload-version");
    let file = dir.0.join("pipeline.yaml");
    std::fs::write(&file, yaml(&dir, 1, false)).expect("write");
    let v = Verdict::start(&file);
    let sender = Sender::start(v.http);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    std::fs::write(&file, yaml(&dir, 2, false)).expect("write");
    let (status, body) = post_reload(&v, Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["changes"].to_string().contains("version 1 -> 2"),
        "{body}"
    );
    reloaded(&v, 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent = sender.stop().await;
    assert!(sent > 500, "{sent} spans sent");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (counted, runs) = loop {
        let (counted, runs) = samples_in_runs(&v).await;
        if counted >= sent || std::time::Instant::now() > deadline {
            break (counted, runs);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(counted, sent, "spans accepted vs counted in runs {runs:?}");
    assert_eq!(
        runs,
        vec![
            (1, "VALIDATING".to_string(), true),
            (2, "VALIDATING".to_string(), false)
        ]
    );
    // Windows still closing add nothing more: none is counted twice.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!((counted, samples_in_runs(&v).await.0), (sent, sent));
}

/// With `storage: "memory:"` a reload keeps the runs: the store belongs to
/// the process, not to the configuration it runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_keeps_an_in_memory_store() {
    let dir = TempDir::new("reload-memory");
    let file = dir.0.join("pipeline.yaml");
    let memory = |y: String| y.replace(&sqlite(&dir.0), "memory:");
    std::fs::write(&file, memory(yaml(&dir, 1, false))).expect("write");
    let v = Verdict::start(&file);
    v.spans("3.0", 10, 10).await;
    let before = v
        .run_until("3.0", "the run to count its samples", |r| {
            r["run"]["samples"] == 10
        })
        .await;
    std::fs::write(
        &file,
        memory(yaml(&dir, 1, false)).replace("max_p95_latency_ms: 100", "max_p95_latency_ms: 150"),
    )
    .expect("write");
    let (status, body) = post_reload(&v, Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    reloaded(&v, 1).await;
    let after = v.run("3.0").await;
    assert_eq!(
        (&after["run_id"], &after["run"]["samples"], &after["state"]),
        (
            &before["run_id"],
            &before["run"]["samples"],
            &before["state"]
        ),
        "{after}"
    );
    let (_, all) = get_json(&v.api("/api/v1/runs?limit=10")).await;
    assert_eq!(all["runs"].as_array().map(Vec::len), Some(1), "{all}");
}

/// Clients that connect and never complete a request (an idle socket on
/// the gRPC port, headers never finished, a body that stops short) hold
/// neither a reload nor a stop: requests in flight get 5 s, then those
/// connections are closed; the reload applies and SIGTERM exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn idle_and_stalled_connections_hold_neither_a_reload_nor_a_stop() {
    use tokio::io::AsyncWriteExt as _;
    let dir = TempDir::new("reload-idle");
    let file = dir.0.join("pipeline.yaml");
    std::fs::write(&file, yaml(&dir, 1, true)).expect("write");
    let v = Verdict::start(&file);
    let grpc = v.grpc.expect("a gRPC listener");
    v.spans("1.0", 30, 10).await;
    let open = |addr: std::net::SocketAddr, first: &'static [u8]| async move {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        s.write_all(first).await.expect("writes");
        s
    };
    let _idle = open(grpc, b"").await;
    let _headers = open(v.http, b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n").await;
    let _body = open(
        v.http,
        b"POST /v1/traces HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{}",
    )
    .await;
    std::fs::write(
        &file,
        yaml(&dir, 1, true).replace("max_p95_latency_ms: 100", "max_p95_latency_ms: 150"),
    )
    .expect("write");
    let started = std::time::Instant::now();
    let (status, body) = post_reload(&v, Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    eventually(Duration::from_secs(20), "the reload", || {
        let n = logged(&v, "Reloaded.");
        async move { (n >= 1).then_some(()) }
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    // The new configuration serves, and counted what came before.
    v.run_until("1.0", "the samples from before the reload", |r| {
        r["run"]["samples"].as_u64() >= Some(30)
    })
    .await;
    let _again = open(grpc, b"").await;
    let started = std::time::Instant::now();
    let status = v.terminate();
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

/// An exporter that still owes deliveries cannot be removed by a reload:
/// its events (a rollback among them) would wait for a worker that no
/// longer exists.
#[tokio::test(flavor = "multi_thread")]
async fn an_exporter_with_pending_deliveries_cannot_be_reloaded_away() {
    let dir = TempDir::new("reload-pending");
    let receiver = crate::durable::Receiver::always(500);
    let url = receiver.serve("127.0.0.1:0").await;
    let contract = "    decision: windows\n    fail_windows: 1";
    let with = pipeline(
        &sqlite(&dir.0),
        &[("webhook/ci", crate::durable::webhook(&url, ""))],
        contract,
    );
    let file = dir.0.join("pipeline.yaml");
    std::fs::write(&file, &with).expect("write");
    let v = Verdict::start(&file);
    v.spans("bad", 40, 500).await;
    v.run_until("bad", "bad to roll back", |r| r["state"] == "ROLLED_BACK")
        .await;
    eventually(Duration::from_secs(20), "a pending delivery", || {
        let url = v.api("/api/v1/deliveries?state=pending");
        async move {
            let (_, d) = get_json(&url).await;
            (!d["deliveries"].as_array().is_none_or(Vec::is_empty)).then_some(())
        }
    })
    .await;
    std::fs::write(&file, pipeline(&sqlite(&dir.0), &[], contract)).expect("write");
    let (status, body) = post_reload(&v, Some(TOKEN)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["problems"]
            .to_string()
            .contains("exporters.webhook/ci: cannot be removed while"),
        "{body}"
    );
    assert_eq!(logged(&v, "Reloaded."), 0);

    // A restart with that file starts, but says so: a WARN naming the
    // exporter, the rows still listed and their age still exported.
    assert!(v.terminate().success());
    let v = Verdict::start(&file);
    eventually(
        Duration::from_secs(20),
        "the orphaned-deliveries WARN",
        || {
            let n = v
                .stderr
                .lock()
                .expect("lock")
                .iter()
                .filter(|l| l.contains("not in the pipeline") && l.contains("webhook/ci"))
                .count();
            async move { (n >= 1).then_some(()) }
        },
    )
    .await;
    let (_, pending) = get_json(&v.api("/api/v1/deliveries?state=pending")).await;
    assert!(
        pending["deliveries"].to_string().contains("webhook/ci"),
        "{pending}"
    );
    let metrics = crate::scrape(v.prometheus).await;
    assert!(
        metrics.contains("verdict_outbox_oldest_pending_seconds{exporter=\"webhook/ci\"}"),
        "{metrics}"
    );
    // Given up on purpose, with the token; a configured exporter's rows
    // cannot be.
    let client = reqwest::Client::new();
    let abandon = |exporter: &str, token: Option<&str>| {
        let mut req = client.delete(v.api(&format!("/api/v1/deliveries?exporter={exporter}")));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let refused = abandon("webhook/ci", None).await.expect("answered");
    assert_eq!(refused.status().as_u16(), 401);
    let configured = abandon("log", Some(TOKEN)).await.expect("answered");
    assert_eq!(configured.status().as_u16(), 409);
    let done = abandon("webhook/ci", Some(TOKEN)).await.expect("answered");
    assert_eq!(done.status().as_u16(), 200);
    let done: Value = done.json().await.expect("json");
    assert!(done["abandoned"].as_u64().is_some_and(|n| n >= 1), "{done}");
    let (_, pending) = get_json(&v.api("/api/v1/deliveries?state=pending")).await;
    assert!(
        !pending["deliveries"].to_string().contains("webhook/ci"),
        "{pending}"
    );
    let (_, failed) = get_json(&v.api("/api/v1/deliveries?state=failed")).await;
    assert!(
        failed.to_string().contains("abandoned by an operator"),
        "{failed}"
    );
    // Nothing left to abandon, or an id nobody owes (a typo): 404, not "0".
    for exporter in ["webhook/ci", "webhook/typo"] {
        let none = abandon(exporter, Some(TOKEN)).await.expect("answered");
        assert_eq!(none.status().as_u16(), 404, "{exporter}");
    }
}

/// A reload to a file whose YAML aliases would expand to a billion nodes
/// is refused before anything expands them, and the server goes on
/// serving under its running configuration.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_to_a_yaml_alias_bomb_is_refused_and_serving_goes_on() {
    let dir = TempDir::new("reload-bomb");
    let file = dir.0.join("pipeline.yaml");
    std::fs::write(&file, yaml(&dir, 1, false)).expect("write");
    let v = Verdict::start(&file);
    std::fs::write(&file, crate::config_errors::alias_bomb()).expect("write");
    let (status, body) = post_reload(&v, Some(TOKEN)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["problems"]
            .to_string()
            .contains("more than 100000 nodes (the limit)"),
        "{body}"
    );
    v.spans("8.0", 30, 10).await;
    v.run_until("8.0", "a run after the refused reload", |r| {
        r["state"] == "VALIDATING"
    })
    .await;
    assert_eq!(logged(&v, "Reloaded."), 0);
}

/// How the server is switched while the SDK's stream flows.
#[derive(Clone, Copy)]
enum Switch {
    /// SIGHUP with a changed threshold.
    Reload,
    /// SIGTERM, then `verdict run` again on the same file and ports.
    Restart,
}

/// Cumulative metric streams across reloads or graceful restarts: the
/// real OpenTelemetry SDK exports one cumulative histogram stream every
/// 100 ms while the server is switched twice — once in the window the
/// stream started in, once in a later one. Each shard's stream table goes
/// on across the switch (handed to the next configuration, or stored with
/// the final checkpoint and adopted with its stream-id seeds), so every
/// request the SDK recorded is counted exactly once: without it the
/// stream's next point looked like a first one, counted whole again in its
/// start window (its earlier deltas were already there) or taken as a mere
/// baseline later (what happened since its previous point was lost).
async fn cumulative_stream_through(switch: Switch, backend: &crate::durable::Backend) {
    use crate::metrics_e2e::OnRuntime;
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry::KeyValue;
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};

    const WINDOW_MS: u64 = 3000;
    const PER_EXPORT: u64 = 10;
    const EXPORTS: u64 = 70;
    let dir = TempDir::new(&format!("switch-streams-{}", backend.name()));
    let file = dir.0.join("pipeline.yaml");
    let contract = "    source: metrics\n    version: 1\n    decision: windows\n    pass_windows: 1000\n    fail_windows: 1000";
    // Fixed ports: a restarted server must listen where the SDK sends.
    let http = format!("127.0.0.1:{}", crate::durable::free_port());
    let yaml = |p95: u32| {
        backend
            .settings(&pipeline(&backend.storage(&dir), &[], contract))
            .replace(
                "size: 1s, allowed_lateness: 200ms",
                "size: 3s, allowed_lateness: 300ms",
            )
            .replace(
                "max_p95_latency_ms: 100",
                &format!("max_p95_latency_ms: {p95}"),
            )
            .replace(
                "http: { endpoint: \"127.0.0.1:0\" }",
                &format!("http: {{ endpoint: \"{http}\" }}"),
            )
    };
    std::fs::write(&file, yaml(100)).expect("write");
    let mut v = Verdict::start(&file);
    assert_eq!(v.http.to_string(), http);

    // The stream starts early in a window, so that the first switch falls
    // in the window it started in.
    loop {
        let into = (now_ns() / 1_000_000) % WINDOW_MS;
        if (100..400).contains(&into) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("http://{http}/v1/metrics"))
        .with_temporality(Temporality::Cumulative)
        .with_timeout(Duration::from_secs(2))
        .build()
        .expect("exporter builds");
    let reader = PeriodicReader::builder(OnRuntime {
        inner: exporter,
        runtime: tokio::runtime::Handle::current(),
    })
    .with_interval(Duration::from_secs(3600))
    .build();
    let provider = SdkMeterProvider::builder()
        .with_resource(
            opentelemetry_sdk::Resource::builder_empty()
                .with_attributes([
                    KeyValue::new("service.name", "checkout"),
                    KeyValue::new("service.version", "1.0"),
                ])
                .build(),
        )
        .with_reader(reader)
        .build();
    let sender = {
        let provider = provider.clone();
        tokio::task::spawn_blocking(move || {
            let histogram = provider
                .meter("io.opentelemetry.http")
                .f64_histogram("http.server.request.duration")
                .with_unit("ms")
                .build();
            let attrs = [KeyValue::new("http.response.status_code", 200)];
            for _ in 0..EXPORTS {
                for ms in 0..PER_EXPORT {
                    histogram.record(20.0 + ms as f64, &attrs);
                }
                // An export refused during a switch is not lost: the next
                // cumulative point carries it.
                let _ = provider.force_flush();
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let mut switched = 0;
    for (after, p95) in [(800, 150), (3500, 200)] {
        tokio::time::sleep(Duration::from_millis(after)).await;
        switched += 1;
        match switch {
            Switch::Reload => {
                std::fs::write(&file, yaml(p95)).expect("write");
                sighup(&v);
                reloaded(&v, switched).await;
            }
            Switch::Restart => {
                assert!(v.terminate().success());
                v = Verdict::start(&file);
                assert!(
                    logged(&v, "Metric streams resumed from the last stop.") == 1,
                    "{:?}",
                    v.stderr.lock().expect("lock")
                );
            }
        }
    }
    sender.await.expect("sender");
    provider.force_flush().expect("the last export is taken");
    let recorded = PER_EXPORT * EXPORTS;

    let run = v
        .run_until("1.0", "every recorded request to be counted", |r| {
            r["run"]["samples"].as_u64() >= Some(recorded)
        })
        .await;
    // Windows still closing add nothing more.
    tokio::time::sleep(Duration::from_millis(WINDOW_MS + 500)).await;
    let after = v.run("1.0").await;
    assert_eq!(after["run"]["samples"].as_u64(), Some(recorded), "{after}");
    assert_eq!(after["run_id"], run["run_id"], "the run is kept");
    assert_eq!(logged(&v, "cumulative streams start again"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn cumulative_metric_streams_are_counted_exactly_across_reloads() {
    cumulative_stream_through(Switch::Reload, &crate::durable::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cumulative_metric_streams_are_counted_exactly_across_graceful_restarts() {
    for backend in crate::durable::backends().await {
        cumulative_stream_through(Switch::Restart, &backend).await;
    }
}

/// A reload and a stop while a slow webhook target has a queue of events:
/// the final delivery pass of the stopping configuration starts no
/// delivery after a few seconds, so the reload completes and the server
/// keeps serving, SIGTERM exits cleanly well within its grace, and the
/// events left pending are delivered after the restart (at least once).
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_webhook_target_holds_neither_a_reload_nor_a_stop() {
    use crate::durable::{post_spans, webhook, Receiver};
    const RELEASES: usize = 30;
    let dir = TempDir::new("reload-slowhook");
    let receiver = Receiver::default().slow(Duration::from_millis(1500));
    let hook = receiver.serve("127.0.0.1:0").await;
    let contract = "    decision: windows\n    fail_windows: 1";
    let yaml = |p95: u32| {
        pipeline(
            &sqlite(&dir.0),
            &[("webhook/ci", webhook(&hook, ""))],
            contract,
        )
        .replace(
            "max_p95_latency_ms: 100",
            &format!("max_p95_latency_ms: {p95}"),
        )
    };
    let file = dir.0.join("pipeline.yaml");
    std::fs::write(&file, yaml(100)).expect("write");
    let v = Verdict::start(&file);
    for i in 0..RELEASES {
        post_spans(v.http, &format!("slow{i}"), 5, 400).await;
    }
    // 30 rollbacks: 45 s of deliveries, longer than the 30 s grace.
    eventually(Duration::from_secs(30), "deliveries under way", || async {
        (!receiver.got().is_empty()).then_some(())
    })
    .await;
    std::fs::write(&file, yaml(150)).expect("write");
    let started = std::time::Instant::now();
    let (status, body) = post_reload(&v, Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    reloaded(&v, 1).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the reload took {:?}",
        started.elapsed()
    );
    let (status, _) = get_json(&v.api("/api/v1/runs")).await;
    assert_eq!(status, 200);
    let started = std::time::Instant::now();
    let exit = v.terminate();
    assert!(exit.success(), "{exit:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the stop took {:?}",
        started.elapsed()
    );
    // What was left is delivered after a restart.
    let _v = Verdict::start(&file);
    eventually(
        Duration::from_secs(120),
        "every rollback delivered",
        || async {
            let ids: std::collections::HashSet<String> =
                receiver.got().into_iter().map(|r| r.event_id).collect();
            (ids.len() >= RELEASES).then_some(())
        },
    )
    .await;
}

/// The window size changed and changed back within a window (2 s → 4 s →
/// 2 s) while spans flow: the 4 s window restored into 2 s windows would
/// fall on the 2 s window of its start, judged before the first change;
/// it goes to the first window not judged instead, so every accepted span
/// is counted (4,970 of 22,890 were lost by a reviewer's revert).
#[tokio::test(flavor = "multi_thread")]
async fn a_window_size_changed_and_changed_back_loses_nothing() {
    let dir = TempDir::new("reload-resize");
    let file = dir.0.join("pipeline.yaml");
    std::fs::write(&file, yaml(&dir, 1, false)).expect("write");
    let v = Verdict::start(&file);
    let sender = Sender::start(v.http);
    // The first change falls in the second half of a 4 s period: the 2 s
    // window of its start was judged 300 ms before it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    loop {
        let into = (now_ns() / 1_000_000) % 4000;
        if (2600..2800).contains(&into) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::write(
        &file,
        yaml(&dir, 1, false).replace("size: 2s,", "size: 4s,"),
    )
    .expect("write");
    sighup(&v);
    reloaded(&v, 1).await;
    std::fs::write(&file, yaml(&dir, 1, false)).expect("write");
    sighup(&v);
    reloaded(&v, 2).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let sent = sender.stop().await;
    let run = v
        .run_until("1.0", "every accepted span to be counted", |r| {
            r["run"]["samples"].as_u64() >= Some(sent)
        })
        .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = v.run("1.0").await;
    assert_eq!(after["run"]["samples"].as_u64(), Some(sent), "{after}");
    assert_eq!(after["run_id"], run["run_id"]);
}
