//! verdict's integration tests: one binary, one module per concern. Servers
//! bind 127.0.0.1:0 and tests talk only to loopback.

mod durable;
mod e2e;
mod layering;
mod metrics_e2e;
mod otlp_grpc;
mod otlp_http;
mod overload;
mod pipelines;
mod probe;
mod shutdown;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use verdict::clock::SystemClock;
use verdict::topology::Server;

/// Starts an in-process server from YAML text.
pub async fn start(yaml: &str) -> Server {
    let cfg = verdict::config::load_str(yaml, &HashMap::new()).expect("test config is valid");
    Server::start(cfg, Arc::new(SystemClock))
        .await
        .expect("server starts")
}

/// A minimal config on loopback port 0 with one contract `checkout`.
pub fn config(contract_body: &str, window: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:0" }}
      http: {{ endpoint: "127.0.0.1:0" }}
    max_request_bytes: 64KiB
processors:
  window: {{ {window} }}
  contract/checkout:
{contract_body}
exporters:
  prometheus: {{ endpoint: "127.0.0.1:0" }}
  log: {{}}
pipelines:
  checkout:
    receivers: [otlp]
    processors: [window, contract/checkout]
    exporters: [prometheus, log]
service:
  api: {{ endpoint: "127.0.0.1:0" }}
  storage: "memory:"
"#
    )
}

/// Polls `f` until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// GET a URL and parse JSON.
pub async fn get_json(url: &str) -> (u16, serde_json::Value) {
    let resp = reqwest::get(url).await.expect("GET succeeds");
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

/// Starts the real binary as `verdict --log-format json run -c file`, with
/// stdout (the `log` exporter's events) and stderr piped.
pub fn spawn_run(file: &std::path::Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_verdict"))
        .args(["--log-format", "json", "run", "-c"])
        .arg(file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("verdict starts")
}

/// The Prometheus text exposition served at `addr`.
pub async fn scrape(addr: std::net::SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body")
}

/// Waits (up to 20 s) until the run of `subject` of contract `checkout` is
/// PROMOTED or ROLLED_BACK, and returns its API body.
pub async fn final_run(api: std::net::SocketAddr, subject: &str) -> serde_json::Value {
    let url = format!("http://{api}/api/v1/runs/checkout/{subject}");
    eventually(
        Duration::from_secs(20),
        &format!("{subject} to be final"),
        || {
            let url = url.clone();
            async move {
                let (_, body) = get_json(&url).await;
                (body["state"] == "PROMOTED" || body["state"] == "ROLLED_BACK").then_some(body)
            }
        },
    )
    .await
}

/// [`final_run`], asserting its state and that its reason contains
/// `reason`.
pub async fn final_run_is(
    api: std::net::SocketAddr,
    subject: &str,
    state: &str,
    reason: &str,
) -> serde_json::Value {
    let body = final_run(api, subject).await;
    assert_eq!(body["state"], state, "{subject}: {body}");
    let got = body["reason"].as_str().unwrap_or("");
    assert!(
        got.contains(reason),
        "{subject}: reason {got:?} lacks {reason:?}"
    );
    body
}

/// Current time in UNIX nanoseconds.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64
}

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// Creates a directory tagged `tag`, unique to this process and moment.
    pub fn new(tag: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("verdict-{tag}-{}-{}", std::process::id(), now_ns()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A file in a directory of its own under the system temp dir, removed
/// (with the directory) when dropped.
pub struct TempFile {
    _dir: TempDir,
    /// The file.
    pub path: std::path::PathBuf,
}

impl TempFile {
    /// Writes `text` to `name` in a fresh directory tagged `tag`.
    pub fn new(tag: &str, name: &str, text: &str) -> TempFile {
        let dir = TempDir::new(tag);
        let path = dir.0.join(name);
        std::fs::write(&path, text).expect("temp file");
        TempFile { _dir: dir, path }
    }
}
