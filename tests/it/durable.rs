//! Durability with the real binary as a child process (issue 5, tests
//! 8a–8e): SQLite storage survives `kill -9`, the outbox delivers webhooks
//! at least once with a stable event id, retries follow the status rules,
//! bodies are signed, and storage failures are loud.
//!
//! Every wait is bounded and polls; no assertion depends on how fast the
//! machine is (the only time checks are lower bounds on backoff).

use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::{eventually, get_json, now_ns, TempDir};

const WAIT: Duration = Duration::from_secs(60);
const SECRET: &str = "s3cret-for-tests";
pub(crate) const TOKEN: &str = "api-t0ken";
/// A contract that rolls back on the first failing window.
const FAIL_ONCE: &str = "    decision: windows\n    fail_windows: 1";
/// A contract that never promotes within a test.
const NO_PROMOTION: &str = "    decision: windows\n    pass_windows: 100";

/// The pipeline file of these tests: 1 s windows, one contract, the log
/// exporter, Prometheus, and the given webhook exporters.
pub(crate) fn pipeline(storage: &str, webhooks: &[(&str, String)], contract: &str) -> String {
    let mut exporters = String::from("  log: {}\n  prometheus: { endpoint: \"127.0.0.1:0\" }\n");
    let mut ids = vec!["log".to_string(), "prometheus".to_string()];
    for (id, body) in webhooks {
        exporters.push_str(&format!("  {id}: {body}\n"));
        ids.push(id.to_string());
    }
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http: {{ endpoint: "127.0.0.1:0" }}
processors:
  window: {{ size: 1s, allowed_lateness: 200ms, shards: 2 }}
  contract/checkout:
    match: {{ service.name: checkout }}
    subject_by: [service.version]
    max_p95_latency_ms: 100
{contract}
exporters:
{exporters}
pipelines:
  checkout:
    receivers: [otlp]
    processors: [window, contract/checkout]
    exporters: [{ids}]
service:
  api: {{ endpoint: "127.0.0.1:0", token: "{TOKEN}" }}
  storage: "{storage}"
  checkpoint_interval: 200ms
"#,
        ids = ids.join(", ")
    )
}

pub(crate) fn webhook(url: &str, extra: &str) -> String {
    format!(
        "{{ url: \"{url}\", on: [PROMOTED, ROLLED_BACK], timeout: 2s, retry: {{ initial_interval: 300ms, max_interval: 600ms, max_elapsed: 10m }}{extra} }}"
    )
}

/// A running verdict child process (shared with other tests of the real
/// binary).
pub(crate) struct Verdict {
    child: Child,
    pub(crate) api: SocketAddr,
    pub(crate) http: SocketAddr,
    /// The OTLP/gRPC listener, when the pipeline has one.
    pub(crate) grpc: Option<SocketAddr>,
    pub(crate) prometheus: SocketAddr,
    pub(crate) stdout: Arc<Mutex<Vec<String>>>,
    /// Every log line (JSON) the server wrote on stderr.
    pub(crate) stderr: Arc<Mutex<Vec<String>>>,
}

impl Verdict {
    /// Starts `verdict run` on `file` and waits until it is ready.
    pub(crate) fn start(file: &Path) -> Verdict {
        Verdict::start_with(file, &[])
    }

    /// [`Verdict::start`] with `env` added to the server's environment.
    pub(crate) fn start_with(file: &Path, env: &[(&str, &str)]) -> Verdict {
        let mut child = crate::spawn_run_with(file, env);
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("stdout");
        let lines = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().expect("lock").push(line);
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let err = child.stderr.take().expect("stderr");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let logged = stderr.clone();
        std::thread::spawn(move || {
            let mut ready = false;
            let mut addrs: HashMap<String, SocketAddr> = HashMap::new();
            let mut seen = Vec::new();
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                logged.lock().expect("lock").push(line.clone());
                if ready {
                    continue;
                }
                let v: Value = serde_json::from_str(&line).unwrap_or_default();
                if v["fields"]["message"] == "Listening." {
                    if let (Some(c), Some(a)) = (
                        v["fields"]["component"].as_str(),
                        v["fields"]["addr"].as_str().and_then(|a| a.parse().ok()),
                    ) {
                        addrs.insert(c.to_string(), a);
                    }
                }
                if v["fields"]["message"] == "verdict is ready." {
                    ready = true;
                    let _ = tx.send(Ok(addrs.clone()));
                }
                seen.push(line);
            }
            if !ready {
                let _ = tx.send(Err(seen.join("\n")));
            }
        });
        let addrs = match rx.recv_timeout(WAIT) {
            Ok(Ok(a)) => a,
            Ok(Err(log)) => panic!("verdict exited before it was ready:\n{log}"),
            Err(_) => panic!("verdict did not become ready"),
        };
        Verdict {
            child,
            api: addrs["api"],
            http: addrs["otlp-http"],
            grpc: addrs.get("otlp-grpc").copied(),
            prometheus: addrs["prometheus"],
            stdout,
            stderr,
        }
    }

    /// The server's process id (to read its `/proc/<pid>/status`).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits for the exit (bounded); returns its status.
    pub(crate) fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (bounded by `within`) for the process to exit on its own.
    pub(crate) async fn exited(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return Some(s);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Sends `signal` (`STOP`, `CONT`) to the process.
    pub(crate) fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{signal}");
    }

    /// `kill -9`.
    pub(crate) fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    pub(crate) fn api(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    pub(crate) async fn run(&self, version: &str) -> Value {
        let (status, body) = get_json(&self.api(&format!("/api/v1/runs/checkout/{version}"))).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Waits until the run of `version` satisfies `f`.
    pub(crate) async fn run_until(
        &self,
        version: &str,
        what: &str,
        f: impl Fn(&Value) -> bool,
    ) -> Value {
        eventually(WAIT, what, || async {
            let run = self.run(version).await;
            f(&run).then_some(run)
        })
        .await
    }

    /// Sends `n` SERVER spans of release `version`, ending now.
    pub(crate) async fn spans(&self, version: &str, n: usize, latency_ms: u64) {
        post_spans(self.http, version, n, latency_ms).await;
    }

    async fn metrics(&self) -> String {
        crate::scrape(self.prometheus).await
    }
}

impl Drop for Verdict {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `n` SERVER spans of checkout `version`, `latency_ms` long and
/// ending now, as OTLP/HTTP JSON to `http`; asserts they were accepted.
pub(crate) async fn post_spans(http: SocketAddr, version: &str, n: usize, latency_ms: u64) {
    let now = now_ns();
    let spans: Vec<Value> = (0..n)
        .map(|i| {
            let end = now - i as u64 * 1000;
            json!({"kind": 2, "name": "GET /",
                   "startTimeUnixNano": (end - latency_ms * 1_000_000).to_string(),
                   "endTimeUnixNano": end.to_string()})
        })
        .collect();
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "checkout"}},
            {"key": "service.version", "value": {"stringValue": version}}]},
        "scopeSpans": [{"spans": spans}]
    }]});
    let resp = reqwest::Client::new()
        .post(format!("http://{http}/v1/traces"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("POST spans");
    assert_eq!(resp.status().as_u16(), 200);
}

/// One request the test receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    at: Instant,
    pub(crate) event_id: String,
    signature: Option<String>,
    pub(crate) raw: Vec<u8>,
    pub(crate) body: Value,
    /// Every header, by lower-case name.
    pub(crate) headers: HashMap<String, String>,
}

/// A webhook target on loopback that answers from a script (then 200) and
/// records every request.
#[derive(Clone, Default)]
pub(crate) struct Receiver {
    script: Arc<Mutex<VecDeque<u16>>>,
    always: Option<u16>,
    got: Arc<Mutex<Vec<Received>>>,
    /// Body and headers of every answer (empty by default).
    answer: Arc<(String, Vec<(String, String)>)>,
    /// How long each answer takes (none by default).
    delay: Duration,
}

impl Receiver {
    pub(crate) fn scripted(script: &[u16]) -> Receiver {
        Receiver {
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
            ..Receiver::default()
        }
    }

    pub(crate) fn always(status: u16) -> Receiver {
        Receiver {
            always: Some(status),
            ..Receiver::default()
        }
    }

    /// Answers with `body` and `headers` as well as the status.
    pub(crate) fn answering(mut self, body: &str, headers: &[(&str, &str)]) -> Receiver {
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.answer = Arc::new((body.to_string(), headers));
        self
    }

    /// Answers each request only after `delay`: a slow receiver.
    pub(crate) fn slow(mut self, delay: Duration) -> Receiver {
        self.delay = delay;
        self
    }

    pub(crate) fn got(&self) -> Vec<Received> {
        self.got.lock().expect("lock").clone()
    }

    /// Serves on `addr` (port 0 for any) until the test ends; returns the URL.
    pub(crate) async fn serve(&self, addr: &str) -> String {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind receiver");
        let local = listener.local_addr().expect("addr");
        let me = self.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let me = me.clone();
                    async move {
                        let header = |name: &str| {
                            headers
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string)
                        };
                        me.got.lock().expect("lock").push(Received {
                            at: Instant::now(),
                            event_id: header("x-verdict-event-id").unwrap_or_default(),
                            signature: header("x-verdict-signature"),
                            raw: body.to_vec(),
                            body: serde_json::from_slice(&body).unwrap_or_default(),
                            headers: headers
                                .iter()
                                .map(|(k, v)| {
                                    (
                                        k.as_str().to_string(),
                                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                    )
                                })
                                .collect(),
                        });
                        tokio::time::sleep(me.delay).await;
                        let status = me
                            .always
                            .or_else(|| me.script.lock().expect("lock").pop_front())
                            .unwrap_or(200);
                        let status = axum::http::StatusCode::from_u16(status)
                            .unwrap_or(axum::http::StatusCode::OK);
                        let (body, headers) = &*me.answer;
                        let mut answer = axum::http::Response::builder().status(status);
                        for (k, v) in headers {
                            answer = answer.header(k, v);
                        }
                        answer
                            .body(axum::body::Body::from(body.clone()))
                            .expect("a valid answer")
                    }
                },
            ),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{local}/hook")
    }
}

/// A loopback port that nothing listens on (yet).
pub(crate) fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

pub(crate) fn sqlite(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("verdict.db").display())
}

/// Writes `pipeline.yaml` into `dir`, storing in SQLite there too.
pub(crate) fn write_pipeline(
    dir: &TempDir,
    webhooks: &[(&str, String)],
    contract: &str,
) -> PathBuf {
    write_pipeline_on(dir, &Backend::Sqlite, webhooks, contract)
}

/// Writes `pipeline.yaml` into `dir`, storing on `backend`.
pub(crate) fn write_pipeline_on(
    dir: &TempDir,
    backend: &Backend,
    webhooks: &[(&str, String)],
    contract: &str,
) -> PathBuf {
    let file = dir.0.join("pipeline.yaml");
    let yaml = pipeline(&backend.storage(dir), webhooks, contract);
    std::fs::write(&file, backend.settings(&yaml)).expect("write");
    file
}

/// Where a durability test's server stores: every test runs on each.
pub(crate) enum Backend {
    /// `verdict.db` in the test's directory.
    Sqlite,
    /// A PostgreSQL database of the test's own.
    Postgres(verdict::storage::testing::TestDatabase),
}

impl Backend {
    /// The `service.storage` value (and, for PostgreSQL, the settings that
    /// make a cluster of one judge promptly).
    pub(crate) fn storage(&self, dir: &TempDir) -> String {
        match self {
            Backend::Sqlite => sqlite(&dir.0),
            Backend::Postgres(db) => db.url.clone(),
        }
    }

    /// `yaml` (a [`pipeline`]) with the backend's own settings: on
    /// PostgreSQL, the instance's name and a short grace, so that a cluster
    /// of one judges promptly.
    pub(crate) fn settings(&self, yaml: &str) -> String {
        match self {
            Backend::Sqlite => yaml.to_string(),
            Backend::Postgres(_) => yaml.replace(
                "  checkpoint_interval: 200ms",
                "  checkpoint_interval: 200ms\n  postgres: { instance: t, grace: 300ms }",
            ),
        }
    }

    /// A scrape of verdict's metrics as a single instance labels them: an
    /// instance on PostgreSQL adds `instance="t"` to its own metrics.
    pub(crate) fn unlabelled(&self, metrics: &str) -> String {
        metrics
            .replace("{instance=\"t\"}", "")
            .replace("instance=\"t\",", "")
            .replace(",instance=\"t\"", "")
    }

    /// A tag for the test's directory.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

/// SQLite, and PostgreSQL when a server is reachable (otherwise one line
/// says the PostgreSQL runs were skipped; `VERDICT_REQUIRE_POSTGRES=1`
/// makes that a failure).
pub(crate) async fn backends() -> Vec<Backend> {
    let mut out = vec![Backend::Sqlite];
    if let Some(db) = verdict::storage::testing::TestDatabase::create().await {
        out.push(Backend::Postgres(db));
    }
    out
}

/// 8a. SIGKILL during a validation: the run resumes from storage; a final
/// run stays final whatever arrives later.
#[tokio::test(flavor = "multi_thread")]
async fn issue_5_8a_kill_9_resumes_runs_and_final_stays_final() {
    for backend in backends().await {
        let dir = TempDir::new(&format!("8a-{}", backend.name()));
        let contract =
            "    min_samples: 200\n    decision: windows\n    pass_windows: 2\n    fail_windows: 1";
        let file = write_pipeline_on(&dir, &backend, &[], contract);

        let v = Verdict::start(&file);
        v.spans("good", 20, 10).await;
        v.spans("bad", 20, 500).await;
        let bad = v
            .run_until("bad", "bad to roll back", |r| r["state"] == "ROLLED_BACK")
            .await;
        let good = v
            .run_until("good", "good to record a window", |r| {
                r["state"] == "VALIDATING" && r["run"]["samples"].as_u64() >= Some(20)
            })
            .await;
        v.kill();

        let v = Verdict::start(&file);
        let resumed = v.run("good").await;
        assert_eq!(resumed["run_id"], good["run_id"], "same run after kill -9");
        assert_eq!(resumed["state"], "VALIDATING");
        assert!(resumed["run"]["samples"].as_u64() >= Some(20), "{resumed}");
        assert!(!resumed["windows"].as_array().expect("windows").is_empty());
        let still = v.run("bad").await;
        assert_eq!(still["run_id"], bad["run_id"]);
        assert_eq!(still["state"], "ROLLED_BACK");
        assert_eq!(still["decided_at"], bad["decided_at"]);

        // Good data for the rolled-back release is observed, never acted on;
        // the validating release goes on to a promotion in the same run.
        let windows_before = still["windows"].as_array().map_or(0, Vec::len);
        for _ in 0..3 {
            v.spans("bad", 50, 10).await;
            v.spans("good", 100, 10).await;
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        let promoted = v
            .run_until("good", "good to be promoted", |r| r["state"] == "PROMOTED")
            .await;
        assert_eq!(promoted["run_id"], good["run_id"]);
        let observed = v
            .run_until("bad", "bad to record passing windows", |r| {
                r["windows"].as_array().map_or(0, Vec::len) > windows_before
                    && r["windows"][0]["result"] == "pass"
            })
            .await;
        assert_eq!(observed["state"], "ROLLED_BACK");
        assert_eq!(observed["run_id"], bad["run_id"]);

        // A promoted run stays promoted through failing data and another kill.
        v.spans("good", 50, 500).await;
        v.run_until("good", "a failing window after the promotion", |r| {
            r["windows"][0]["result"] == "fail"
        })
        .await;
        v.kill();
        let v = Verdict::start(&file);
        let last = v.run("good").await;
        assert_eq!(last["state"], "PROMOTED");
        assert_eq!(last["run_id"], good["run_id"]);
        // Each run was announced once per transition, no contradiction.
        let transitions = last["transitions"].as_array().expect("transitions");
        let states: Vec<&str> = transitions
            .iter()
            .filter_map(|t| t["state"].as_str())
            .collect();
        assert_eq!(states, ["PROMOTED", "VALIDATING"], "{last}");
    }
}

/// 8b. SIGKILL while the webhook target is down; after the restart the
/// target comes back and gets the event with its original event_id. The
/// receiver never sees two states for one run.
#[tokio::test(flavor = "multi_thread")]
async fn issue_5_8b_outbox_survives_kill_9_with_the_same_event_id() {
    for backend in backends().await {
        let dir = TempDir::new(&format!("8b-{}", backend.name()));
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}/hook");
        let hooks = [("webhook/ci", webhook(&url, ""))];
        let file = write_pipeline_on(&dir, &backend, &hooks, FAIL_ONCE);

        let v = Verdict::start(&file);
        v.spans("2.0", 30, 500).await;
        let run = v
            .run_until("2.0", "a rollback", |r| r["state"] == "ROLLED_BACK")
            .await;
        let pending = eventually(WAIT, "a failed attempt on the dead target", || async {
            let (_, body) = get_json(&v.api("/api/v1/deliveries?state=pending")).await;
            body["deliveries"].as_array().and_then(|list| {
                list.iter()
                    .find(|d| d["exporter"] == "webhook/ci" && d["attempts"].as_u64() >= Some(1))
                    .cloned()
            })
        })
        .await;
        let event_id = pending["event_id"].as_str().expect("event id").to_string();
        assert_eq!(pending["event"]["run_id"], run["run_id"]);
        assert!(pending["last_error"].as_str().is_some(), "{pending}");
        // The backlog is visible to alerting while the target is down.
        let metrics = backend.unlabelled(&v.metrics().await);
        let age = metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(r#"verdict_outbox_oldest_pending_seconds{exporter="webhook/ci"} "#)
            })
            .and_then(|v| v.parse::<f64>().ok());
        assert!(age.is_some_and(|a| a > 0.0), "{metrics}");
        v.kill();

        let v = Verdict::start(&file);
        let receiver = Receiver::default();
        receiver.serve(&format!("127.0.0.1:{port}")).await;
        let got = eventually(WAIT, "the webhook after the restart", || async {
            let got = receiver.got();
            (!got.is_empty()).then_some(got)
        })
        .await;
        assert_eq!(got[0].event_id, event_id, "same event id after kill -9");
        assert_eq!(got[0].body["event_id"], event_id);
        assert_eq!(got[0].body["state"], "ROLLED_BACK");
        // Healthy data afterwards never produces a contradicting event.
        v.spans("2.0", 30, 10).await;
        v.run_until("2.0", "an observed passing window", |r| {
            r["windows"][0]["result"] == "pass"
        })
        .await;
        eventually(WAIT, "the outbox to drain", || async {
            let (_, body) = get_json(&v.api("/api/v1/deliveries?state=pending")).await;
            body["deliveries"]
                .as_array()
                .is_some_and(Vec::is_empty)
                .then_some(())
        })
        .await;
        let mut states: HashMap<String, String> = HashMap::new();
        for r in receiver.got() {
            let run_id = r.body["run_id"].as_str().unwrap_or_default().to_string();
            let state = r.body["state"].as_str().unwrap_or_default().to_string();
            let first = states.entry(run_id.clone()).or_insert(state.clone());
            assert_eq!(*first, state, "two states for run {run_id}");
        }
    }
}

/// 8c. 503, 503, 200: delivered once acknowledged, after backoff; a 400 is
/// final and not retried.
#[tokio::test(flavor = "multi_thread")]
async fn issue_5_8c_retries_5xx_with_backoff_and_never_retries_400() {
    for backend in backends().await {
        let dir = TempDir::new(&format!("8c-{}", backend.name()));
        let flaky = Receiver::scripted(&[503, 503]);
        let flaky_url = flaky.serve("127.0.0.1:0").await;
        let bad = Receiver::always(400);
        let bad_url = bad.serve("127.0.0.1:0").await;
        let hooks = [
            ("webhook/flaky", webhook(&flaky_url, "")),
            ("webhook/bad", webhook(&bad_url, "")),
        ];
        let file = write_pipeline_on(&dir, &backend, &hooks, FAIL_ONCE);
        let v = Verdict::start(&file);
        v.spans("3.0", 30, 500).await;
        let got = eventually(WAIT, "three attempts on the flaky target", || async {
            let got = flaky.got();
            (got.len() >= 3).then_some(got)
        })
        .await;
        assert!(got.iter().all(|r| r.event_id == got[0].event_id));
        // Backoff: the first wait is initial_interval (300ms) with jitter in
        // [0.5, 1.5), the second twice that: lower bounds only.
        assert!(got[1].at - got[0].at >= Duration::from_millis(150));
        assert!(got[2].at - got[1].at >= Duration::from_millis(300));
        eventually(
            WAIT,
            "the flaky delivery to be marked delivered",
            || async {
                let (_, body) = get_json(&v.api("/api/v1/deliveries")).await;
                let list = body["deliveries"].as_array()?.clone();
                (!list.iter().any(|d| d["exporter"] == "webhook/flaky")).then_some(())
            },
        )
        .await;
        let failed = eventually(WAIT, "the 400 to be listed as failed", || async {
            let (_, body) = get_json(&v.api("/api/v1/deliveries?state=failed")).await;
            body["deliveries"]
                .as_array()?
                .iter()
                .find(|d| d["exporter"] == "webhook/bad")
                .cloned()
        })
        .await;
        assert_eq!(failed["attempts"], 1, "{failed}");
        assert!(
            failed["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("400")),
            "{failed}"
        );
        assert_eq!(failed["event"]["event_id"], got[0].event_id);
        // Long after the flaky target's two backoffs, still one 400 attempt.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(bad.got().len(), 1);
        assert_eq!(flaky.got().len(), 3);
        let metrics = backend.unlabelled(&v.metrics().await);
        for line in [
            r#"verdict_webhook_deliveries_total{exporter="webhook/flaky",outcome="retry"} 2"#,
            r#"verdict_webhook_deliveries_total{exporter="webhook/flaky",outcome="delivered"} 1"#,
            r#"verdict_webhook_deliveries_total{exporter="webhook/bad",outcome="failed"} 1"#,
        ] {
            assert!(
                metrics.lines().any(|l| l == line),
                "{line} missing:\n{metrics}"
            );
        }
    }
}

/// 8d. The receiver verifies `X-Verdict-Signature` with the shared secret.
#[tokio::test(flavor = "multi_thread")]
async fn issue_5_8d_webhook_bodies_are_signed_with_hmac_sha256() {
    let dir = TempDir::new("8d");
    let receiver = Receiver::default();
    let url = receiver.serve("127.0.0.1:0").await;
    let hooks = [(
        "webhook/signed",
        webhook(&url, &format!(", secret: \"{SECRET}\"")),
    )];
    let file = write_pipeline(&dir, &hooks, "    decision: windows\n    fail_windows: 1");
    let v = Verdict::start(&file);
    v.spans("4.0", 30, 500).await;
    let got = eventually(WAIT, "a signed webhook", || async {
        receiver.got().into_iter().next()
    })
    .await;
    let header = got.signature.expect("X-Verdict-Signature is set");
    let hex = header.strip_prefix("sha256=").expect("sha256= prefix");
    let verify = |key: &[u8]| {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
        mac.update(&got.raw);
        mac.verify_slice(&hex_decode(hex)).is_ok()
    };
    assert!(verify(SECRET.as_bytes()), "signature does not verify");
    assert!(!verify(b"another secret"));
    assert_eq!(got.body["event_id"], got.event_id);
    assert_eq!(got.body["state"], "ROLLED_BACK");
    assert_eq!(got.body["dry_run"], false);
    drop(v);
}

/// Serves every request with `status` and `Location: location`, on
/// 127.0.0.1:0; returns the URL.
async fn redirector(status: u16, location: &str) -> String {
    let location = location.to_string();
    let app = axum::Router::new().fallback(move || {
        let location = location.clone();
        async move {
            (
                axum::http::StatusCode::from_u16(status).expect("a status"),
                [(axum::http::header::LOCATION, location)],
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/hook")
}

/// Webhooks never follow redirects. A followed 301 turned the POST into a
/// GET without the body, which the new location answered 200, and the event
/// was marked delivered; a followed 308 carried the body and its signature
/// to a host nobody configured. A 3xx is a failed attempt, retried with
/// backoff, with the location in the error; the location never hears of it.
#[tokio::test(flavor = "multi_thread")]
async fn webhook_redirects_are_not_followed() {
    let dir = TempDir::new("redirect");
    // Where the redirects point: records every request, of any method.
    let elsewhere = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = elsewhere.clone();
    let app = axum::Router::new().fallback(move |method: axum::http::Method| {
        let seen = seen.clone();
        async move {
            seen.lock().expect("lock").push(method.to_string());
            axum::http::StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let location = format!("http://{}/moved", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let hooks = [
        (
            "webhook/moved",
            webhook(
                &redirector(301, &location).await,
                &format!(", secret: \"{SECRET}\""),
            ),
        ),
        (
            "webhook/permanent",
            webhook(&redirector(308, &location).await, ""),
        ),
    ];
    let file = write_pipeline(&dir, &hooks, "    decision: windows\n    fail_windows: 1");
    let v = Verdict::start(&file);
    v.spans("6.0", 30, 500).await;
    for (exporter, status) in [("webhook/moved", "301"), ("webhook/permanent", "308")] {
        let pending = eventually(
            WAIT,
            &format!("{exporter} to retry the redirect"),
            || async {
                let followed = elsewhere.lock().expect("lock").clone();
                assert_eq!(followed, Vec::<String>::new(), "a redirect was followed");
                let (_, body) = get_json(&v.api("/api/v1/deliveries?state=pending")).await;
                body["deliveries"]
                    .as_array()?
                    .iter()
                    .find(|d| d["exporter"] == exporter && d["attempts"].as_u64() >= Some(2))
                    .cloned()
            },
        )
        .await;
        assert_eq!(pending["state"], "pending", "{pending}");
        assert_eq!(pending["event"]["state"], "ROLLED_BACK", "{pending}");
        let error = pending["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains(&format!("HTTP {status}"))
                && error.contains(&format!("redirect to {location} not followed")),
            "{pending}"
        );
    }
    assert_eq!(*elsewhere.lock().expect("lock"), Vec::<String>::new());
    let metrics = v.metrics().await;
    // The delivered counters exist from the start at 0; none may have moved.
    let delivered: Vec<&str> = metrics
        .lines()
        .filter(|l| l.contains(r#"outcome="delivered""#) && !l.ends_with(" 0"))
        .collect();
    assert!(delivered.is_empty(), "nothing is delivered:\n{metrics}");
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Runs `verdict run` expecting it to fail at start; returns its stderr.
fn start_fails(file: &Path) -> String {
    let out = crate::verdict_command([OsStr::new("run"), OsStr::new("-c"), file.as_os_str()])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1), "verdict must exit 1");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// 8e. Storage failures are reported: at start with a clear message and
/// exit 1, at run time through `/readyz`; nothing is lost meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn issue_5_8e_storage_failures_are_loud() {
    let dir = TempDir::new("8e");
    let file = dir.0.join("pipeline.yaml");

    // A directory that cannot be created (its parent is a file).
    let blocker = dir.0.join("not-a-dir");
    std::fs::write(&blocker, "x").expect("write");
    let storage = format!("sqlite://{}/sub/verdict.db", blocker.display());
    std::fs::write(&file, pipeline(&storage, &[], "")).expect("write");
    let err = start_fails(&file);
    assert!(
        err.contains("cannot open storage") && err.contains("cannot create directory"),
        "{err}"
    );

    // A read-only place: a directory without write permission, or, for
    // root (who ignores permissions), sysfs, which refuses new files.
    let ro = dir.0.join("read-only");
    std::fs::create_dir_all(&ro).expect("mkdir");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    let root = std::fs::write(ro.join("probe"), "x").is_ok();
    let ro_db = if root {
        PathBuf::from("/sys/verdict-test-read-only/verdict.db")
    } else {
        ro.join("verdict.db")
    };
    std::fs::write(
        &file,
        pipeline(&format!("sqlite://{}", ro_db.display()), &[], ""),
    )
    .expect("write");
    let err = start_fails(&file);
    assert!(err.contains("cannot open storage"), "{err}");
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    // A database another process holds locked.
    use sqlx::Connection as _;
    let locked = dir.0.join("locked.db");
    let mut holder =
        sqlx::sqlite::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", locked.display()))
            .await
            .expect("open");
    sqlx::query("PRAGMA locking_mode = EXCLUSIVE")
        .execute(&mut holder)
        .await
        .expect("pragma");
    sqlx::query("CREATE TABLE held (x INTEGER)")
        .execute(&mut holder)
        .await
        .expect("lock");
    std::fs::write(
        &file,
        pipeline(&format!("sqlite://{}", locked.display()), &[], ""),
    )
    .expect("write");
    let err = start_fails(&file);
    assert!(
        err.contains("cannot open storage") && err.contains("locked"),
        "{err}"
    );
    holder.close().await.expect("close");

    // At run time: a writer holds the lock; commits wait, /readyz says why,
    // and once the lock is gone the transition is committed and announced.
    let storage = sqlite(&dir.0);
    std::fs::write(
        &file,
        pipeline(&storage, &[], "    decision: windows\n    fail_windows: 1"),
    )
    .expect("write");
    let v = Verdict::start(&file);
    let (status, _) = get_json(&v.api("/readyz")).await;
    assert_eq!(status, 200);
    let mut writer = sqlx::sqlite::SqliteConnection::connect(&storage)
        .await
        .expect("open");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut writer)
        .await
        .expect("lock");
    v.spans("5.0", 30, 500).await;
    let body = eventually(WAIT, "/readyz to report the storage", || async {
        let (status, body) = get_json(&v.api("/readyz")).await;
        (status == 503).then_some(body)
    })
    .await;
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("storage")),
        "{body}"
    );
    sqlx::query("ROLLBACK")
        .execute(&mut writer)
        .await
        .expect("unlock");
    writer.close().await.expect("close");
    eventually(WAIT, "/readyz to recover", || async {
        let (status, _) = get_json(&v.api("/readyz")).await;
        (status == 200).then_some(())
    })
    .await;
    v.run_until("5.0", "the rollback", |r| r["state"] == "ROLLED_BACK")
        .await;
    eventually(WAIT, "the log line of the rollback", || async {
        let lines = v.stdout.lock().expect("lock").clone();
        lines
            .iter()
            .any(|l| l.contains("\"ROLLED_BACK\"") && l.contains("\"5.0\""))
            .then_some(())
    })
    .await;
}

/// SIGTERM mid-window drains and checkpoints the open windows; the restart
/// restores them: every accepted sample is counted, once.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_window_loses_no_sample_and_counts_none_twice() {
    for backend in backends().await {
        let dir = TempDir::new(&format!("ckpt-{}", backend.name()));
        let file = dir.0.join("pipeline.yaml");
        // 10 s windows: the stop lands inside the window the spans fall in.
        let yaml = pipeline(&backend.storage(&dir), &[], NO_PROMOTION).replace(
            "size: 1s, allowed_lateness: 200ms",
            "size: 10s, allowed_lateness: 200ms",
        );
        std::fs::write(&file, backend.settings(&yaml)).expect("write");
        let v = Verdict::start(&file);
        v.spans("6.0", 40, 10).await;
        v.spans("6.0", 60, 10).await;
        v.run_until("6.0", "the run to start", |r| r["state"] == "VALIDATING")
            .await;
        let status = Command::new("kill")
            .args(["-TERM", &v.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let mut v = v;
        let deadline = Instant::now() + WAIT;
        let code = loop {
            if let Some(s) = v.child.try_wait().expect("wait") {
                break s;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(code.code(), Some(0));
        drop(v);

        let v = Verdict::start(&file);
        let run = v
            .run_until("6.0", "the restored window to be judged", |r| {
                r["run"]["samples"].as_u64() >= Some(100)
            })
            .await;
        assert_eq!(run["run"]["samples"], 100, "{run}");
        // Later windows close empty: the count stays exact.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(v.run("6.0").await["run"]["samples"], 100);
    }
}

/// Manual decisions and reset (design §7) through the API of the real
/// binary: token, 404, 409, `manual: …` reasons, superseded runs.
#[tokio::test(flavor = "multi_thread")]
async fn manual_decisions_and_reset_need_the_token_and_are_recorded() {
    for backend in backends().await {
        let dir = TempDir::new(&format!("manual-{}", backend.name()));
        let receiver = Receiver::default();
        let url = receiver.serve("127.0.0.1:0").await;
        let hooks = [("webhook/ci", webhook(&url, ""))];
        let file = write_pipeline_on(&dir, &backend, &hooks, NO_PROMOTION);
        let v = Verdict::start(&file);
        v.spans("7.0", 10, 10).await;
        let first = v
            .run_until("7.0", "the run to start", |r| r["state"] == "VALIDATING")
            .await;
        let client = reqwest::Client::new();
        let post = |path: &str, token: Option<&str>, body: Option<Value>| {
            let mut req = client.post(v.api(path));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            if let Some(b) = body {
                req = req
                    .header("content-type", "application/json")
                    .body(b.to_string());
            }
            req.send()
        };
        let code = |r: reqwest::Response| r.status().as_u16();
        assert_eq!(
            code(
                post("/api/v1/promote/checkout/7.0", None, None)
                    .await
                    .expect("post")
            ),
            401
        );
        assert_eq!(
            code(
                post("/api/v1/promote/checkout/7.0", Some("wrong"), None)
                    .await
                    .expect("post")
            ),
            401
        );
        assert_eq!(
            code(
                post("/api/v1/promote/nope/7.0", Some(TOKEN), None)
                    .await
                    .expect("post")
            ),
            404
        );
        assert_eq!(
            code(
                post("/api/v1/promote/checkout/9.9", Some(TOKEN), None)
                    .await
                    .expect("post")
            ),
            404
        );
        let resp = post(
            "/api/v1/rollback/checkout/7.0",
            Some(TOKEN),
            Some(json!({"reason": "error budget burnt"})),
        )
        .await
        .expect("post");
        assert_eq!(resp.status().as_u16(), 200);
        let run: Value = resp.json().await.expect("json");
        assert_eq!(run["state"], "ROLLED_BACK");
        assert_eq!(run["reason"], "manual: error budget burnt");
        assert_eq!(run["run_id"], first["run_id"]);
        assert_eq!(
            code(
                post("/api/v1/promote/checkout/7.0", Some(TOKEN), None)
                    .await
                    .expect("post")
            ),
            409
        );
        let got = eventually(WAIT, "the manual rollback webhook", || async {
            receiver.got().into_iter().next()
        })
        .await;
        assert_eq!(got.body["reason"], "manual: error budget burnt");
        let recorded = v.run("7.0").await;
        assert_eq!(
            recorded["transitions"][0]["reason"],
            "manual: error budget burnt"
        );

        // Reset: the old run is kept, superseded; a new PENDING run starts.
        let resp = post("/api/v1/reset/checkout/7.0", Some(TOKEN), None)
            .await
            .expect("post");
        assert_eq!(resp.status().as_u16(), 200);
        let fresh: Value = resp.json().await.expect("json");
        assert_eq!(fresh["state"], "PENDING");
        assert_ne!(fresh["run_id"], first["run_id"]);
        let (_, all) = get_json(&v.api("/api/v1/runs")).await;
        let old = all["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .find(|r| r["run_id"] == first["run_id"])
            .cloned()
            .expect("old run kept");
        assert_eq!(old["superseded"], true);
        assert_eq!(old["state"], "ROLLED_BACK");
        assert_eq!(
            code(
                post("/api/v1/reset/checkout/8.8", Some(TOKEN), None)
                    .await
                    .expect("post")
            ),
            404
        );
        // New data drives the new run — from the next window on: the window
        // open at the reset may still hold the old run's data (issue 12.6).
        tokio::time::sleep(Duration::from_millis(1100)).await;
        v.spans("7.0", 10, 10).await;
        let again = v
            .run_until("7.0", "the new run to validate", |r| {
                r["state"] == "VALIDATING"
            })
            .await;
        assert_eq!(again["run_id"], fresh["run_id"]);
        // The reset announced nothing: one webhook in all.
        assert_eq!(receiver.got().len(), 1);
    }
}

/// Issue 12.6: a reset starts afresh. The window open at the reset holds
/// the bad data that rolled the old run back; before the fix it rolled the
/// new run back too, right after `POST /reset`.
#[tokio::test(flavor = "multi_thread")]
async fn a_reset_is_not_decided_by_the_data_of_the_run_it_replaces() {
    let dir = TempDir::new("reset");
    // 3 s windows, so the reset lands inside a window that already holds
    // bad spans.
    let yaml = pipeline(
        &sqlite(&dir.0),
        &[],
        "    decision: windows\n    fail_windows: 1",
    )
    .replace(
        "size: 1s, allowed_lateness: 200ms",
        "size: 3s, allowed_lateness: 200ms",
    );
    let file = dir.0.join("pipeline.yaml");
    std::fs::write(&file, yaml).expect("write");
    let v = Verdict::start(&file);
    // Slow spans until the run is rolled back, then more in the next window.
    let old = loop {
        v.spans("9.9", 20, 500).await;
        let run = v.run("9.9").await;
        if run["state"] == "ROLLED_BACK" {
            break run;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    v.spans("9.9", 20, 500).await;
    let reset = reqwest::Client::new()
        .post(v.api("/api/v1/reset/checkout/9.9"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("reset");
    assert_eq!(reset.status().as_u16(), 200);
    let fresh: Value = reset.json().await.expect("json");
    assert_ne!(fresh["run_id"], old["run_id"]);
    // Two windows later the window open at the reset has been judged: the
    // new run was not rolled back by it (it saw no data of its own yet).
    tokio::time::sleep(Duration::from_millis(6500)).await;
    let run = v.run("9.9").await;
    assert_eq!(run["run_id"], fresh["run_id"], "{run}");
    assert_eq!(run["state"], "PENDING", "{run}");
    // Fast spans after the reset count for it.
    v.spans("9.9", 20, 10).await;
    v.run_until("9.9", "the new run to validate", |r| {
        r["state"] == "VALIDATING"
    })
    .await;
}

/// Issue 12.7: after a contract version bump the one-run API and /metrics
/// show the new version's run (PENDING until it has data), not the old
/// version's final verdict; the old run stays listed.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_contract_version_never_shows_the_old_verdict() {
    let dir = TempDir::new("bump");
    let file = write_pipeline(&dir, &[], "    version: 1");
    let v = Verdict::start(&file);
    v.spans("5.5", 50, 500).await;
    let old = v
        .run_until("5.5", "the v1 run to be rolled back", |r| {
            r["state"] == "ROLLED_BACK"
        })
        .await;
    v.kill();
    std::fs::write(&file, pipeline(&sqlite(&dir.0), &[], "    version: 2")).expect("write");
    let v = Verdict::start(&file);
    let run = v.run("5.5").await;
    assert_eq!(run["state"], "PENDING", "{run}");
    assert_eq!(run["contract_version"], 2, "{run}");
    assert!(
        run["reason"]
            .as_str()
            .unwrap_or("")
            .contains("version 1's run is ROLLED_BACK"),
        "{run}"
    );
    let metrics = v.metrics().await;
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("verdict_run_state") && l.contains("subject=\"5.5\"")),
        "{metrics}"
    );
    let (_, list) = get_json(&v.api("/api/v1/runs/checkout")).await;
    assert_eq!(list["runs"].as_array().map(Vec::len), Some(0), "{list}");
    let (_, all) = get_json(&v.api("/api/v1/runs")).await;
    assert!(all["runs"]
        .as_array()
        .is_some_and(|r| r.iter().any(|r| r["run_id"] == old["run_id"])));
    // Data under version 2 starts its own run.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    v.spans("5.5", 30, 10).await;
    let fresh = v
        .run_until("5.5", "the v2 run to start", |r| r["state"] == "VALIDATING")
        .await;
    assert_eq!(fresh["contract_version"], 2);
}

/// A stored run whose state and subject cannot be read back (a damaged
/// database) stays listed under its subject, held as ROLLED_BACK and marked
/// unreadable: no second run starts for the release, which could otherwise
/// promote what had been rolled back. Its neighbour carries on.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_whose_state_cannot_be_read_is_held_not_replaced() {
    let dir = TempDir::new("unreadable-state");
    let file = write_pipeline(&dir, &[], "    decision: windows\n    fail_windows: 1");
    let v = Verdict::start(&file);
    v.spans("bad", 50, 500).await;
    let bad = v
        .run_until("bad", "bad to roll back", |r| r["state"] == "ROLLED_BACK")
        .await;
    v.spans("good", 20, 10).await;
    v.run_until("good", "good to validate", |r| r["state"] == "VALIDATING")
        .await;
    assert_eq!(v.terminate().code(), Some(0));

    use sqlx::Connection as _;
    let mut db = sqlx::sqlite::SqliteConnection::connect(&sqlite(&dir.0))
        .await
        .expect("open");
    let damaged = sqlx::query(
        "UPDATE runs SET state = 'ROLLED_BAC', subject_attributes = 'not json' \
         WHERE subject = 'bad'",
    )
    .execute(&mut db)
    .await
    .expect("damage");
    assert_eq!(damaged.rows_affected(), 1);
    db.close().await.expect("close");

    let v = Verdict::start(&file);
    let held = v.run("bad").await;
    assert_eq!(held["run_id"], bad["run_id"], "{held}");
    assert_eq!(held["state"], "ROLLED_BACK", "{held}");
    assert!(
        held["unreadable"]
            .as_str()
            .is_some_and(|w| w.contains("ROLLED_BAC")),
        "{held}"
    );
    // Good data for it is observed by the held run, never by a new one.
    for _ in 0..3 {
        v.spans("bad", 50, 10).await;
        v.spans("good", 50, 10).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    v.run_until("good", "good to go on counting", |r| {
        r["run"]["samples"].as_u64() >= Some(170)
    })
    .await;
    let still = v.run("bad").await;
    assert_eq!(
        (&still["run_id"], &still["state"]),
        (&bad["run_id"], &held["state"]),
        "{still}"
    );
    let (_, list) = get_json(&v.api("/api/v1/runs/checkout")).await;
    assert_eq!(list["runs"].as_array().map(Vec::len), Some(2), "{list}");
    let metrics = v.metrics().await;
    assert!(
        metrics.lines().any(|l| l.starts_with("verdict_run_state{")
            && l.contains("subject=\"bad\"")
            && l.contains("ROLLED_BACK")
            && l.ends_with(" 1")),
        "{metrics}"
    );
}

/// A client that begins a gRPC message and then sends nothing neither
/// holds the stop past its grace period nor keeps the open windows from
/// their checkpoint: its message is ended after 10 s without a byte, the
/// stop exits 0 and the restart counts every accepted sample.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_grpc_client_does_not_keep_sigterm_from_checkpointing() {
    let dir = TempDir::new("stalled");
    let file = dir.0.join("pipeline.yaml");
    let yaml = with_grpc(&pipeline(
        &sqlite(&dir.0),
        &[],
        "    decision: windows\n    pass_windows: 100",
    ))
    .replace(
        "size: 1s, allowed_lateness: 200ms",
        "size: 10s, allowed_lateness: 200ms",
    )
    .replace("checkpoint_interval: 200ms", "checkpoint_interval: 10m");
    std::fs::write(&file, yaml).expect("write");
    let v = Verdict::start(&file);
    v.spans("7.0", 50, 10).await;
    v.run_until("7.0", "the run to start", |r| r["state"] == "VALIDATING")
        .await;
    let grpc = v.grpc.expect("a gRPC listener");
    let channel = crate::memory::channel(grpc).await;
    // A prefix claiming 1000 bytes, six of them, then nothing.
    let mut begun = vec![0u8];
    begun.extend(1000u32.to_be_bytes());
    begun.extend([1u8; 6]);
    let stalled = futures_util::StreamExt::chain(
        futures_util::stream::iter(vec![Ok::<_, std::io::Error>(hyper::body::Frame::data(
            bytes::Bytes::from(begun),
        ))]),
        futures_util::stream::pending(),
    );
    let stalled = tokio::spawn(async move {
        crate::memory::grpc_raw(
            &channel,
            crate::memory::TRACE_EXPORT,
            http_body_util::StreamBody::new(stalled),
            false,
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = v.terminate();
    assert_eq!(
        status.code(),
        Some(0),
        "the stop ran out of its grace period"
    );
    stalled.abort();

    let v = Verdict::start(&file);
    let run = v
        .run_until("7.0", "the checkpointed window to be restored", |r| {
            r["run"]["samples"].as_u64() >= Some(50)
        })
        .await;
    assert_eq!(run["run"]["samples"], 50, "{run}");
}

/// [`pipeline`] with an OTLP gRPC listener too.
pub(crate) fn with_grpc(yaml: &str) -> String {
    yaml.replace(
        "http: { endpoint: \"127.0.0.1:0\" }",
        "http: { endpoint: \"127.0.0.1:0\" }\n      grpc: { endpoint: \"127.0.0.1:0\" }",
    )
}

/// An Export call is unary: a body that carries two messages is refused
/// whole (INVALID_ARGUMENT, nothing counted), never answered OK with the
/// second message dropped.
#[tokio::test(flavor = "multi_thread")]
async fn an_export_call_with_two_messages_is_refused_whole() {
    use prost::Message as _;
    let dir = TempDir::new("two-messages");
    let file = dir.0.join("pipeline.yaml");
    std::fs::write(&file, with_grpc(&pipeline(&sqlite(&dir.0), &[], ""))).expect("write");
    let v = Verdict::start(&file);
    let channel = crate::memory::channel(v.grpc.expect("a gRPC listener")).await;
    let (req, n) = crate::memory::traces("2.2", 4096);
    let message = req.encode_to_vec();
    let framed = |copies: usize| {
        let mut body = Vec::new();
        for _ in 0..copies {
            body.push(0u8);
            body.extend(u32::try_from(message.len()).expect("short").to_be_bytes());
            body.extend_from_slice(&message);
        }
        http_body_util::Full::new(bytes::Bytes::from(body))
    };
    let send = |copies: usize| {
        let (channel, body) = (channel.clone(), framed(copies));
        async move {
            crate::memory::grpc_raw(&channel, crate::memory::TRACE_EXPORT, body, false)
                .await
                .expect("an answer")
                .0
        }
    };
    assert_eq!(send(2).await, tonic::Code::InvalidArgument);
    assert_eq!(send(1).await, tonic::Code::Ok);
    assert_eq!(send(3).await, tonic::Code::InvalidArgument);
    v.run_until("2.2", "the one accepted message to count", |r| {
        r["run"]["samples"].as_u64() >= Some(n)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(v.run("2.2").await["run"]["samples"].as_u64(), Some(n));
}
