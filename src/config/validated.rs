//! The validated configuration: what the rest of verdict builds from. Every
//! value here has been checked (bounds, references, durations), so building
//! the topology never re-validates (Vector's "validation is pure" rule).

use std::path::PathBuf;
use std::time::Duration;

use super::probe_plan::ProbePlan;
use super::select::AttributeMatch;

/// A fully validated pipeline file.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedConfig {
    /// Receivers referenced by at least one pipeline, in file order.
    pub receivers: Vec<ReceiverSpec>,
    /// Exporters referenced by at least one pipeline, in file order.
    pub exporters: Vec<ExporterSpec>,
    /// Pipelines in file order.
    pub pipelines: Vec<PipelineSpec>,
    /// The `service` section.
    pub service: ServiceSpec,
}

/// A receiver component.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverSpec {
    /// Full component id (`otlp`, `otlp/edge`).
    pub id: String,
    /// What kind of receiver it is.
    pub kind: ReceiverKind,
}

/// The receiver types verdict has.
#[derive(Debug, Clone, PartialEq)]
pub enum ReceiverKind {
    /// OTLP over gRPC and/or HTTP.
    Otlp(Box<OtlpReceiverSpec>),
    /// Synthetic traffic: the probe engine, its requests fed to contracts.
    Probe(Box<ProbeReceiverSpec>),
}

/// `receivers.otlp`.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpReceiverSpec {
    /// gRPC listen address (`host:port`), `None` when the protocol is not configured.
    pub grpc_endpoint: Option<String>,
    /// HTTP listen address (`host:port`), `None` when the protocol is not configured.
    pub http_endpoint: Option<String>,
    /// Largest accepted request body after decompression, in bytes (default 20 MiB).
    pub max_request_bytes: u64,
    /// Bearer token required from clients; `None` (or empty in the file) = no auth.
    pub bearer_token: Option<String>,
    /// TLS of the gRPC listener; `None` = plain text.
    pub grpc_tls: Option<ListenerTls>,
    /// TLS of the HTTP listener; `None` = plain text.
    pub http_tls: Option<ListenerTls>,
    /// CORS of the HTTP listener; `None` = no CORS headers.
    pub http_cors: Option<CorsSpec>,
}

/// `cors:` of the OTLP/HTTP listener: which web pages' scripts may send
/// telemetry (the OpenTelemetry Collector's setting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsSpec {
    /// Allowed origins, lower case: `scheme://host[:port]` with at most one
    /// `*` standing for any characters, or `*` alone for any origin.
    pub allowed_origins: Vec<String>,
    /// Request headers allowed besides the CORS-safelisted ones, lower
    /// case; `*` for any.
    pub allowed_headers: Vec<String>,
    /// How long a browser may cache a preflight answer; `None` = not sent.
    pub max_age: Option<std::time::Duration>,
}

/// TLS of a listener (`tls:`): its certificate, optionally the CAs whose
/// client certificates it requires, the oldest version it accepts and how
/// often it re-reads the files.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerTls {
    /// PEM certificate chain.
    pub cert_file: std::path::PathBuf,
    /// PEM private key.
    pub key_file: std::path::PathBuf,
    /// PEM CAs of required client certificates; `None` = none required.
    pub client_ca_file: Option<std::path::PathBuf>,
    /// Oldest version accepted.
    pub min_version: TlsVersion,
    /// How often the files are checked for changes (default 1m).
    pub reload_interval: Duration,
}

/// TLS of a client (`tls:` of a webhook, the probe): the CAs it trusts
/// besides the system's roots, and a client certificate to present.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClientTls {
    /// PEM CAs trusted as well as the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM client certificate chain and its key (mutual TLS), together.
    pub identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Oldest version accepted.
    pub min_version: TlsVersion,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersion {
    /// TLS 1.2 (and 1.3).
    #[default]
    V1_2,
    /// TLS 1.3 only.
    V1_3,
}

/// `receivers.probe[/NAME]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeReceiverSpec {
    /// What to send, how many, how fast.
    pub plan: ProbePlan,
    /// Run again this long after each start; `None` = once, at start.
    pub interval: Option<Duration>,
    /// Resource attributes of its samples, `verdict.synthetic=true` included
    /// (added when the file leaves it out), in file order.
    pub resource: Vec<(String, String)>,
}

/// A pipeline: receivers → window → contracts → exporters.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineSpec {
    /// The pipeline's key under `pipelines`.
    pub name: String,
    /// Full ids of its receivers.
    pub receivers: Vec<String>,
    /// Its window processor (the defaults when the pipeline lists none).
    pub window: WindowSpec,
    /// Its contracts, in the order the pipeline lists them. A sample's
    /// `SeriesKey::contract` is an index into this list.
    pub contracts: Vec<ContractSpec>,
    /// Full ids of its exporters.
    pub exporters: Vec<String>,
}

/// `processors.window`.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowSpec {
    /// Tumbling window length (default 60s; > 0).
    pub size: Duration,
    /// How long after its end a window still accepts samples (default 10s).
    pub allowed_lateness: Duration,
    /// Samples further than this in the future are rejected (default 5m).
    pub max_clock_skew: Duration,
    /// Number of aggregator shards (config 0 = one per core; resolved here, ≥ 1).
    pub shards: usize,
    /// The shard count was `0` (one per core): printed back as `0`, so a
    /// printed configuration means the same on a machine with other cores.
    pub shards_per_core: bool,
    /// Per-shard queue capacity in batches (default 4096; ≥ 1).
    pub queue_size: usize,
    /// Most series held at once before the overflow series (default 10000; ≥ 1).
    pub max_series: usize,
    /// Most cumulative metric streams whose last point is kept (default 10000; ≥ 1).
    pub max_streams: usize,
    /// A metric stream with no point for this long is forgotten (default 15m; > 0).
    pub stream_expiry: Duration,
}

impl WindowSpec {
    /// These settings in nanoseconds.
    pub fn timing(&self) -> crate::model::WindowTiming {
        crate::model::WindowTiming::new(self.size, self.allowed_lateness, self.max_clock_skew)
    }
}

/// Where a contract's samples come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// SERVER/CONSUMER spans (default).
    Spans,
    /// The `http.server.request.duration` histogram and the conversions sum.
    Metrics,
}

/// How a run reaches a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Consecutive passing/failing windows, each judged on its own point
    /// estimates (design §5.2).
    Windows,
    /// Always-valid sequential tests on the run's cumulative counts
    /// (design §5.3; default).
    Sequential,
}

/// What becomes of a run that has seen no sample for `run_idle_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnIdle {
    /// It leaves without a verdict (kept as history, announced to no one);
    /// new data for its subject starts a new run. One-shot subjects (user
    /// ids, build numbers) cannot pile up.
    Retire,
    /// `on_timeout` decides it, as `max_duration` would.
    Timeout,
}

/// What `max_duration` does to a run with no decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTimeout {
    /// ROLLED_BACK with reason `timeout` (default).
    Rollback,
    /// PROMOTED with reason `timeout`.
    Promote,
}

/// `processors.contract/NAME`.
#[derive(Debug, Clone, PartialEq)]
pub struct ContractSpec {
    /// The contract's name: the part after `/`, or `contract`.
    pub name: String,
    /// Contract version (default 1; ≥ 1). A new version starts new runs.
    pub version: u32,
    /// Resource attributes a resource must match (all of them).
    pub matches: Vec<AttributeMatch>,
    /// Attributes whose values make the subject (default `[service.name, service.version]`; non-empty).
    pub subject_by: Vec<String>,
    /// Where samples come from (default spans).
    pub source: Source,
    /// OTLP span kinds counted as requests, as the OTLP enum numbers
    /// (default SERVER = 2, CONSUMER = 5). Config names: INTERNAL, SERVER,
    /// CLIENT, PRODUCER, CONSUMER.
    pub span_kinds: Vec<i32>,
    /// Attribute that marks a conversion (default `validation.converted`).
    pub conversion_attribute: String,
    /// Latency histogram name for `source: metrics` (default `http.server.request.duration`).
    pub latency_metric: String,
    /// Conversions sum name for `source: metrics` (default `validation.conversions`).
    pub conversions_metric: String,
    /// The pass/fail thresholds; at least one is set.
    pub thresholds: Thresholds,
    /// Samples needed over the run before PROMOTED is possible (default 1; ≥ 1).
    pub min_samples: u64,
    /// Samples a window needs to count (default 1; ≥ 1); fewer = insufficient.
    pub min_window_samples: u64,
    /// Consecutive passing windows that promote (default 3; ≥ 1;
    /// `decision: windows` only).
    pub pass_windows: u32,
    /// Consecutive failing windows that roll back (default 1; ≥ 1).
    pub fail_windows: u32,
    /// No decision by then → `on_timeout` (default 48h; always set by
    /// validation).
    pub max_duration: Option<Duration>,
    /// What a timeout decides (default rollback).
    pub on_timeout: OnTimeout,
    /// A run with no sample for this long is idle (default 1h).
    pub run_idle_timeout: Duration,
    /// What becomes of an idle run (default retire).
    pub on_idle: OnIdle,
    /// Optional comparison with the current release.
    pub baseline: Option<BaselineSpec>,
    /// Decision procedure (default sequential).
    pub decision: Decision,
    /// Significance level of the sequential test (default 0.05; in (0, 1)).
    pub alpha: f64,
    /// Compute and expose everything but trigger nothing (default false).
    pub dry_run: bool,
}

impl ContractSpec {
    /// A contract with the given thresholds and every other setting at its
    /// default, as the file would give it: what `verdict probe` judges with
    /// when thresholds come from the command line.
    pub fn with_thresholds(name: &str, thresholds: Thresholds) -> ContractSpec {
        use super::defaults::{
            DEFAULT_ALPHA, DEFAULT_CONVERSIONS_METRIC, DEFAULT_CONVERSION_ATTRIBUTE,
            DEFAULT_LATENCY_METRIC, DEFAULT_MAX_DURATION, DEFAULT_PASS_WINDOWS,
            DEFAULT_RUN_IDLE_TIMEOUT, DEFAULT_SPAN_KINDS, DEFAULT_SUBJECT_BY,
        };
        ContractSpec {
            name: name.to_string(),
            version: 1,
            matches: Vec::new(),
            subject_by: DEFAULT_SUBJECT_BY.iter().map(|s| s.to_string()).collect(),
            source: Source::Spans,
            span_kinds: DEFAULT_SPAN_KINDS.to_vec(),
            conversion_attribute: DEFAULT_CONVERSION_ATTRIBUTE.to_string(),
            latency_metric: DEFAULT_LATENCY_METRIC.to_string(),
            conversions_metric: DEFAULT_CONVERSIONS_METRIC.to_string(),
            thresholds,
            min_samples: 1,
            min_window_samples: 1,
            pass_windows: DEFAULT_PASS_WINDOWS,
            fail_windows: 1,
            max_duration: Some(DEFAULT_MAX_DURATION),
            on_timeout: OnTimeout::Rollback,
            run_idle_timeout: DEFAULT_RUN_IDLE_TIMEOUT,
            on_idle: OnIdle::Retire,
            baseline: None,
            decision: Decision::Sequential,
            alpha: DEFAULT_ALPHA,
            dry_run: false,
        }
    }
}

/// The absolute thresholds of a contract; `None` = not checked.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Thresholds {
    /// Maximum median latency in milliseconds (> 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_p50_latency_ms: Option<f64>,
    /// Maximum p95 latency in milliseconds (> 0).
    pub max_p95_latency_ms: Option<f64>,
    /// Maximum p99 latency in milliseconds (> 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_p99_latency_ms: Option<f64>,
    /// Maximum error rate in percent ([0, 100]).
    pub max_error_rate_percent: Option<f64>,
    /// Minimum conversion rate in percent ([0, 100]).
    pub min_conversion_rate_percent: Option<f64>,
}

impl Thresholds {
    /// The limits that are set, worded for people: `p95 ≤ 500 ms`,
    /// `errors ≤ 1%`, `conversions ≥ 15%`, with the given signs for "at
    /// most" and "at least" and the unit after milliseconds (the status
    /// page and the start-up log write them differently).
    pub fn describe(&self, at_most: &str, at_least: &str, ms: &str) -> Vec<String> {
        let mut parts = Vec::new();
        for (name, limit) in [
            ("p50", self.max_p50_latency_ms),
            ("p95", self.max_p95_latency_ms),
            ("p99", self.max_p99_latency_ms),
        ] {
            if let Some(v) = limit {
                parts.push(format!("{name} {at_most} {v}{ms}"));
            }
        }
        if let Some(p) = self.max_error_rate_percent {
            parts.push(format!("errors {at_most} {p}%"));
        }
        if let Some(p) = self.min_conversion_rate_percent {
            parts.push(format!("conversions {at_least} {p}%"));
        }
        parts
    }
}

/// `baseline:` of a contract: the current release to compare against.
#[derive(Debug, Clone, PartialEq)]
pub struct BaselineSpec {
    /// Resource attributes that select the baseline (all must match).
    pub matches: Vec<AttributeMatch>,
    /// Largest allowed p95 increase over the baseline, in percent (≥ 0).
    pub max_p95_latency_increase_percent: Option<f64>,
    /// Largest allowed error-rate increase over the baseline, in percentage points (≥ 0).
    pub max_error_rate_increase_points: Option<f64>,
}

/// An exporter component.
#[derive(Debug, Clone, PartialEq)]
pub struct ExporterSpec {
    /// Full component id (`prometheus`, `log`, `webhook/promote`).
    pub id: String,
    /// What kind of exporter it is.
    pub kind: ExporterKind,
}

/// The exporter types verdict has.
#[derive(Debug, Clone, PartialEq)]
pub enum ExporterKind {
    /// Prometheus text exposition at `/metrics` on `endpoint`.
    Prometheus {
        /// Listen address (`host:port`, default `0.0.0.0:9464`).
        endpoint: String,
        /// TLS of the listener; `None` = plain text.
        tls: Option<ListenerTls>,
    },
    /// Verdict events as JSON lines on stdout.
    Log,
    /// Verdict events POSTed to a URL.
    Webhook(WebhookSpec),
    /// A flag's rollout stepped through Unleash's Admin API.
    Unleash(Box<UnleashSpec>),
}

/// `exporters.unleash[/NAME]`: steps one flexibleRollout strategy of one
/// flag per run (design §7).
#[derive(Debug, Clone, PartialEq)]
pub struct UnleashSpec {
    /// The Unleash server's base URL, without a trailing `/`.
    pub url: String,
    /// TLS of an `https://` server (default: the system's roots).
    pub tls: ClientTls,
    /// Admin API token, sent as `Authorization: <token>`.
    pub token: String,
    /// Unleash project (default `default`).
    pub project: String,
    /// Unleash environment.
    pub environment: String,
    /// The flag's name, filled in from each run's subject.
    pub flag: crate::model::FlagTemplate,
    /// The strategy to step; `None` = the flag's first flexibleRollout
    /// strategy in the environment.
    pub strategy_id: Option<String>,
    /// Rollout percentages, increasing, in 1–100 (default 5, 10, 25, 50, 100).
    pub steps: Vec<u32>,
    /// Counting windows needed at a step before the next (default 2; ≥ 1).
    pub step_windows: u32,
    /// The SDKs' refresh interval (default 15s).
    pub refresh_interval: Duration,
    /// What a rollback does to the flag.
    pub on_rollback: OnRollback,
    /// Time allowed for one request (default 5s).
    pub timeout: Duration,
    /// Waits between attempts; a change is retried until applied or
    /// replaced by a later change of the same flag.
    pub retry: crate::retry::Backoff,
}

/// What an `unleash` exporter does to the flag on ROLLED_BACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnRollback {
    /// Rollout 0: the strategy stays, nobody gets the release.
    #[default]
    Zero,
    /// The flag is turned off in the environment.
    Disable,
}

impl OnRollback {
    /// The name written in the pipeline file.
    pub fn as_str(self) -> &'static str {
        match self {
            OnRollback::Zero => "zero",
            OnRollback::Disable => "disable",
        }
    }
}

/// `exporters.webhook[/NAME]`.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSpec {
    /// Target URL, `http://` or `https://`.
    pub url: String,
    /// TLS of `https://` requests (default: the system's roots).
    pub tls: ClientTls,
    /// States whose transitions are sent (default PROMOTED and ROLLED_BACK).
    pub on: Vec<crate::model::RunState>,
    /// HMAC-SHA256 key of `X-Verdict-Signature`; `None` = unsigned.
    pub secret: Option<String>,
    /// Time allowed for one attempt (default 5s).
    pub timeout: Duration,
    /// Backoff between attempts.
    pub retry: RetrySpec,
    /// Shape of the request (default [`WebhookFormat::Json`]).
    pub format: WebhookFormat,
    /// Sent as `Authorization: Bearer <token>`; required by
    /// [`WebhookFormat::Github`].
    pub token: Option<String>,
}

/// What a webhook request looks like. The receivers verdict is most often
/// wired to cannot take the plain event: GitHub wants a `repository_dispatch`
/// body, Slack a message; shaping it here saves a relay service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WebhookFormat {
    /// The §5.5 event as it is.
    #[default]
    Json,
    /// `{"event_type": "verdict-rolled-back", "client_payload": {…}}` for
    /// `POST /repos/{owner}/{repo}/dispatches`.
    Github,
    /// A Slack incoming-webhook message: `text` and `blocks`.
    Slack,
}

impl WebhookFormat {
    /// Every format, in the order error messages list them.
    pub const ALL: [WebhookFormat; 3] = [
        WebhookFormat::Json,
        WebhookFormat::Github,
        WebhookFormat::Slack,
    ];

    /// The name written in the pipeline file.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Json => "json",
            WebhookFormat::Github => "github",
            WebhookFormat::Slack => "slack",
        }
    }
}

/// Exponential backoff with jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetrySpec {
    /// First wait (default 1s); doubles after each failure.
    pub initial_interval: Duration,
    /// Longest wait (default 30s; ≥ `initial_interval`).
    pub max_interval: Duration,
    /// Give up when the event is older than this (default 1h).
    pub max_elapsed: Duration,
}

impl RetrySpec {
    /// The waits between attempts.
    pub fn backoff(&self) -> crate::retry::Backoff {
        crate::retry::Backoff {
            initial: self.initial_interval,
            max: self.max_interval,
        }
    }
}

/// The `service` section.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    /// HTTP API listen address (default `127.0.0.1:8686`).
    pub api_endpoint: String,
    /// Bearer token for the API's write endpoints; `None` = open.
    pub api_token: Option<String>,
    /// TLS of the API listener; `None` = plain text.
    pub api_tls: Option<ListenerTls>,
    /// The API's address as people reach it, without a trailing `/`;
    /// notifications link to runs under it. `None` = no links.
    pub public_url: Option<String>,
    /// Where runs, transitions, the outbox and checkpoints live (default
    /// `sqlite://data/verdict.db`).
    pub storage: StorageSpec,
    /// Budget for request bodies being decoded plus queued batches, in bytes (default 256 MiB).
    pub max_inflight_bytes: u64,
    /// How often open windows are persisted (default 10s).
    pub checkpoint_interval: Duration,
    /// Final runs leave `/metrics` this long after their decision (default 1h).
    pub metric_expiry: Duration,
}

/// Where verdict keeps its state (`service.storage`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageSpec {
    /// In process memory: lost on restart (`memory:`).
    Memory,
    /// An SQLite database file (`sqlite://relative/path`, `sqlite:///abs`).
    Sqlite {
        /// The URL as configured.
        url: String,
        /// The database file; relative paths are relative to the working
        /// directory.
        path: PathBuf,
    },
    /// A PostgreSQL database shared by one or more instances
    /// (`postgres://user@host:port/db`, `postgresql://…`).
    Postgres(PostgresSpec),
}

/// `postgres://` storage and its `service.postgres` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresSpec {
    /// The URL as configured (it may hold a password: never logged).
    pub url: String,
    /// Connections in the pool.
    pub pool_size: u32,
    /// Longest a statement may run.
    pub statement_timeout: Duration,
    /// This instance's name among the instances on the database.
    pub instance: String,
    /// How long the leader waits after a window's close deadline for the
    /// partials still in flight.
    pub grace: Duration,
    /// TLS to the server.
    pub tls: PostgresTls,
}

impl PostgresSpec {
    /// The URL without its password, for logs and messages.
    pub fn redacted(&self) -> String {
        redact_password(&self.url)
    }
}

/// `user:secret@host` → `user:***@host`, and the value of every query
/// parameter that holds a credential (`?password=secret` →
/// `?password=***`, the names print-config redacts); the rest of the URL
/// as it is written.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{name}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    format!("{scheme}://{authority}{}", redact_query(tail))
}

/// The path, query and fragment `tail` of a URL with the values of its
/// secret query parameters replaced by `***`.
fn redact_query(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_string();
    };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if super::print::is_secret_param(name) => format!("{name}=***"),
            _ => pair.to_string(),
        })
        .collect();
    let mut out = format!("{path}?{}", pairs.join("&"));
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// TLS to PostgreSQL (`service.postgres.tls`), as libpq's `sslmode`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PostgresTls {
    /// `disable`, `prefer`, `require`, `verify-ca` or `verify-full`.
    pub mode: PgSslMode,
    /// CA certificates to verify the server with.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (mutual TLS), together.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PgSslMode {
    /// Plain text only.
    Disable,
    /// TLS when the server offers it (libpq's default).
    #[default]
    Prefer,
    /// TLS, without verifying the server's certificate.
    Require,
    /// TLS, the certificate signed by a trusted CA.
    VerifyCa,
    /// TLS, the certificate signed by a trusted CA and naming the host.
    VerifyFull,
}

impl PgSslMode {
    /// Every mode, in the order messages list them.
    pub const ALL: [PgSslMode; 5] = [
        PgSslMode::Disable,
        PgSslMode::Prefer,
        PgSslMode::Require,
        PgSslMode::VerifyCa,
        PgSslMode::VerifyFull,
    ];

    /// libpq's name.
    pub fn as_str(self) -> &'static str {
        match self {
            PgSslMode::Disable => "disable",
            PgSslMode::Prefer => "prefer",
            PgSslMode::Require => "require",
            PgSslMode::VerifyCa => "verify-ca",
            PgSslMode::VerifyFull => "verify-full",
        }
    }
}

impl std::fmt::Display for StorageSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageSpec::Memory => f.write_str("memory:"),
            StorageSpec::Sqlite { url, .. } => f.write_str(url),
            StorageSpec::Postgres(pg) => f.write_str(&pg.redacted()),
        }
    }
}
