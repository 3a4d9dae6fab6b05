//! verdict's integration tests: one binary, one module per concern. Servers
//! bind 127.0.0.1:0 and tests talk only to loopback.

mod argo;
mod burst;
mod cluster;
mod compression;
mod config_errors;
mod console;
mod cors;
mod dashboard;
mod decisions;
mod durable;
mod e2e;
mod exposition;
mod flagger;
mod hostile;
mod isolation;
mod layering;
mod memory;
mod metrics_e2e;
mod metrics_memory;
mod newcomer;
mod otlp_grpc;
mod otlp_http;
mod overload;
mod pipelines;
mod pipes;
mod probe;
mod rejections;
mod reload;
mod responsive;
mod shutdown;
mod simulate;
mod status_page;
mod tls;
mod unleash;
mod unleash_cluster;
mod unleash_faults;
mod webhook_formats;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use verdict::clock::SystemClock;
use verdict::config::{StorageSpec, ValidatedConfig};
use verdict::topology::Server;

/// Every HTTP client of these tests (reqwest, built without a rustls
/// provider of its own, as verdict builds it) needs the process's provider
/// installed before the first one is built; verdict's own code does the
/// same before building its clients.
#[ctor::ctor]
fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Starts an in-process server from YAML text. The config must give the
/// server storage of its own ([`foreign_storage`]).
pub async fn start(yaml: &str) -> Server {
    let cfg = verdict::config::load_str(yaml, &HashMap::new()).expect("test config is valid");
    if let Some(why) = foreign_storage(&cfg) {
        panic!("{why}");
    }
    Server::start(cfg, Arc::new(SystemClock))
        .await
        .expect("server starts")
}

/// Why a test's server may not use the storage of `cfg`, or `None` when the
/// storage is the test's own: `memory:`, an SQLite file under the system
/// temp directory (a [`TempDir`]), or one under `/sys` or `/proc`, where no
/// database can be created (the storage-failure tests use them).
///
/// Without `storage:` a server opens `data/verdict.db` under the working
/// directory, which for `cargo test` is the repository: the README
/// walkthrough's database. A test that forgot it wrote its runs there, and
/// could pass on stale runs left by an earlier test or by the user. Every
/// server a test starts goes through [`start`] or [`verdict_command`] (see
/// `isolation.rs`), which refuse such a config.
pub fn foreign_storage(cfg: &ValidatedConfig) -> Option<String> {
    let path = match &cfg.service.storage {
        StorageSpec::Memory => return None,
        StorageSpec::Sqlite { path, .. } => path,
        // A database created for the test (`storage::testing`).
        StorageSpec::Postgres(pg) => {
            let own = pg
                .url
                .rsplit_once('/')
                .is_some_and(|(_, db)| db.starts_with("verdict_t_"));
            return (!own).then(|| {
                format!(
                    "a test server would store in PostgreSQL database {}: give every test a \
                     database of its own (storage::testing::TestDatabase)",
                    cfg.service.storage
                )
            });
        }
    };
    let own = path.is_absolute()
        && (path.starts_with(std::env::temp_dir())
            || path.starts_with("/sys")
            || path.starts_with("/proc"));
    (!own).then(|| {
        format!(
            "a test server would store in {} ({}): give every test storage of its own, \
             `storage: \"memory:\"` or an SQLite file in a TempDir, or it shares (and may \
             pass on) the runs of ./data/verdict.db",
            cfg.service.storage,
            path.display()
        )
    })
}

/// The real `verdict` binary with `args`, as a command to run. Every test
/// runs the binary through here: a `run` is checked first, so that a test
/// cannot start a server on storage it does not own ([`foreign_storage`];
/// a config that does not load is left to the binary to refuse).
pub fn verdict_command<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    if let Some(file) = run_config(&args) {
        if let Ok(cfg) = verdict::config::load_file(&file) {
            if let Some(why) = foreign_storage(&cfg) {
                panic!("{}: {why}", file.display());
            }
        }
    }
    let mut command = Command::new(env!("CARGO_BIN_EXE_verdict"));
    command.args(&args);
    command
}

/// The pipeline file a `verdict … run …` command line would load, or
/// `None` for any other subcommand (or `run --help`).
fn run_config(args: &[OsString]) -> Option<std::path::PathBuf> {
    let run = args.iter().position(|a| a == "run")?;
    if args[run + 1..].iter().any(|a| a == "--help" || a == "-h") {
        return None;
    }
    let mut rest = args[run + 1..].iter();
    while let Some(arg) = rest.next() {
        let text = arg.to_string_lossy();
        if text == "-c" || text == "--config" {
            return rest.next().map(Into::into);
        }
        if let Some(file) = text.strip_prefix("--config=") {
            return Some(file.into());
        }
        if let Some(file) = text.strip_prefix("-c").filter(|f| !f.is_empty()) {
            return Some(file.into());
        }
    }
    Some("pipelines/default.yaml".into())
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

/// A tracer provider of the OpenTelemetry SDK whose spans, of the
/// resource `service.name`/`service.version`, go through `exporter` as
/// each ends.
pub fn tracer_provider(
    exporter: opentelemetry_otlp::SpanExporter,
    service: &str,
    version: &str,
) -> opentelemetry_sdk::trace::SdkTracerProvider {
    use opentelemetry::KeyValue;
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", service.to_string()),
            KeyValue::new("service.version", version.to_string()),
        ])
        .build();
    opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_resource(resource)
        .with_simple_exporter(exporter)
        .build()
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
pub fn spawn_run(file: &Path) -> std::process::Child {
    spawn_run_with(file, &[])
}

/// [`spawn_run`] with `env` added to the child's environment (secrets that
/// the pipeline file reads with `${env:…}`).
pub fn spawn_run_with(file: &Path, env: &[(&str, &str)]) -> std::process::Child {
    let args = [
        OsStr::new("--log-format"),
        OsStr::new("json"),
        OsStr::new("run"),
        OsStr::new("-c"),
        file.as_os_str(),
    ];
    verdict_command(args)
        .envs(env.iter().copied())
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
    final_run_of(api, "checkout", subject, Duration::from_secs(20)).await
}

/// Waits (up to 60 s) until the run of `subject` of the default pipeline's
/// contract `default` is final, and returns its API body.
pub async fn final_run_default(api: std::net::SocketAddr, subject: &str) -> serde_json::Value {
    final_run_of(api, "default", subject, Duration::from_secs(60)).await
}

/// Waits up to `timeout` until the run of `subject` of `contract` is
/// PROMOTED or ROLLED_BACK, and returns its API body.
async fn final_run_of(
    api: std::net::SocketAddr,
    contract: &str,
    subject: &str,
    timeout: Duration,
) -> serde_json::Value {
    let url = format!("http://{api}/api/v1/runs/{contract}/{subject}");
    eventually(timeout, &format!("{subject} to be final"), || {
        let url = url.clone();
        async move {
            let (_, body) = get_json(&url).await;
            (body["state"] == "PROMOTED" || body["state"] == "ROLLED_BACK").then_some(body)
        }
    })
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
