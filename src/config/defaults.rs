//! The defaults of every setting, in one place: validation fills them in,
//! and [`super::ContractSpec::with_thresholds`] builds a contract from them.

use std::time::Duration;

/// Default OTLP/gRPC listen address.
pub const DEFAULT_GRPC_ENDPOINT: &str = "0.0.0.0:4317";
/// Default OTLP/HTTP listen address.
pub const DEFAULT_HTTP_ENDPOINT: &str = "0.0.0.0:4318";
/// Default Prometheus exporter listen address.
pub const DEFAULT_PROMETHEUS_ENDPOINT: &str = "0.0.0.0:9464";
/// Default HTTP API listen address.
pub const DEFAULT_API_ENDPOINT: &str = "127.0.0.1:8686";
/// Default `service.storage`: an SQLite file under the working directory.
pub const DEFAULT_STORAGE: &str = "sqlite://data/verdict.db";
/// Connections of a PostgreSQL pool.
pub const DEFAULT_PG_POOL_SIZE: u32 = 8;
/// Longest a PostgreSQL statement may run.
pub const DEFAULT_PG_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the leader waits after a window's close deadline for the other
/// instances' partials.
pub const DEFAULT_PG_GRACE: Duration = Duration::from_secs(2);
/// Default webhook `timeout`.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// Default webhook `retry.initial_interval`.
pub const DEFAULT_RETRY_INITIAL: Duration = Duration::from_secs(1);
/// Default webhook `retry.max_interval`.
pub const DEFAULT_RETRY_MAX_INTERVAL: Duration = Duration::from_secs(30);
/// Default webhook `retry.max_elapsed`.
pub const DEFAULT_RETRY_MAX_ELAPSED: Duration = Duration::from_secs(3600);
/// Default `max_request_bytes` of an OTLP receiver: 20 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 20 * 1024 * 1024;
/// Default `service.max_inflight_bytes`: 256 MiB.
pub const DEFAULT_MAX_INFLIGHT_BYTES: u64 = 256 * 1024 * 1024;
/// Default `service.checkpoint_interval`.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);
/// Default `service.metric_expiry`.
pub const DEFAULT_METRIC_EXPIRY: Duration = Duration::from_secs(3600);
/// Default window `size`.
pub const DEFAULT_WINDOW_SIZE: Duration = Duration::from_secs(60);
/// Default window `allowed_lateness`.
pub const DEFAULT_ALLOWED_LATENESS: Duration = Duration::from_secs(10);
/// Default window `max_clock_skew`.
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);
/// Default window `queue_size`, in batches per shard.
pub const DEFAULT_QUEUE_SIZE: usize = 4096;
/// Default window `max_series`.
pub const DEFAULT_MAX_SERIES: usize = 10_000;
/// Default window `max_streams`.
pub const DEFAULT_MAX_STREAMS: usize = 10_000;
/// Default window `stream_expiry`: several export intervals of a typical SDK.
pub const DEFAULT_STREAM_EXPIRY: Duration = Duration::from_secs(15 * 60);
/// Default contract `subject_by`.
pub const DEFAULT_SUBJECT_BY: [&str; 2] = ["service.name", "service.version"];
/// OTLP span kinds by config name, with their enum numbers.
pub const SPAN_KINDS: [(&str, i32); 5] = [
    ("INTERNAL", 1),
    ("SERVER", 2),
    ("CLIENT", 3),
    ("PRODUCER", 4),
    ("CONSUMER", 5),
];
/// Default contract `span_kinds`: SERVER and CONSUMER.
pub const DEFAULT_SPAN_KINDS: [i32; 2] = [2, 5];
/// Default contract `conversion_attribute`.
pub const DEFAULT_CONVERSION_ATTRIBUTE: &str = "validation.converted";
/// Default contract `latency_metric`.
pub const DEFAULT_LATENCY_METRIC: &str = "http.server.request.duration";
/// Default contract `conversions_metric`.
pub const DEFAULT_CONVERSIONS_METRIC: &str = "validation.conversions";
/// Default contract `pass_windows`.
pub const DEFAULT_PASS_WINDOWS: u32 = 3;
/// Default sequential-test `alpha`.
pub const DEFAULT_ALPHA: f64 = 0.05;
/// Default contract `max_duration`: a run undecided after two days is
/// decided by `on_timeout`.
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(48 * 3600);
/// Default contract `run_idle_timeout`: a run that has seen no sample for an
/// hour is idle (long enough for a quiet night-time service to keep its
/// run, short enough that one-shot subjects do not pile up).
pub const DEFAULT_RUN_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
