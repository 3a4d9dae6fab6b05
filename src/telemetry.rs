//! Logging setup and the names of verdict's own metrics, defined once so that
//! every stage and every test uses the same strings.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Items (spans, data points, log records) accepted, by `protocol` and `signal`.
pub const RECEIVER_ACCEPTED_ITEMS: &str = "verdict_receiver_accepted_items_total";
/// Requests refused whole, by `protocol` and `reason`.
pub const RECEIVER_REFUSED_REQUESTS: &str = "verdict_receiver_refused_requests_total";
/// Items accepted but not turned into samples (other span kinds, unmatched resources, other signals).
pub const RECEIVER_IGNORED_ITEMS: &str = "verdict_receiver_ignored_items_total";
/// Items rejected inside an accepted request (partial_success), by `protocol`,
/// `signal` and `reason` (a fixed set: no service or metric label).
pub const RECEIVER_REJECTED_ITEMS: &str = "verdict_receiver_rejected_items_total";
/// Latency histograms in seconds whose explicit bounds look like
/// milliseconds, by `metric`.
pub const MILLISECOND_BOUNDS: &str = "verdict_receiver_millisecond_bounds_total";
/// Samples whose window had already closed.
pub const LATE_SAMPLES: &str = "verdict_late_samples_total";
/// Samples put into the overflow series because `max_series` was reached.
pub const SERIES_OVERFLOW: &str = "verdict_series_overflow_total";
/// Batches waiting in each shard's queue, by `shard`.
pub const QUEUE_DEPTH: &str = "verdict_queue_depth";
/// Metric streams held for cumulative → delta, by `pipeline` and `shard`.
pub const METRIC_STREAMS: &str = "verdict_metric_streams";
/// Points of cumulative streams not counted, by `reason`: `streams` (a new
/// stream while `max_streams` are held) or `buckets` (no room left for the
/// point's buckets in the streams' remembered bucket counts).
pub const METRIC_STREAMS_OVERFLOW: &str = "verdict_metric_streams_overflow_total";
/// Cumulative streams forgotten after `stream_expiry` without a point.
pub const METRIC_STREAMS_EXPIRED: &str = "verdict_metric_streams_expired_total";
/// Cumulative stream resets (new start time, or a value that dropped).
pub const METRIC_STREAM_RESETS: &str = "verdict_metric_stream_resets_total";
/// Webhook delivery attempts, by `exporter` and `outcome`
/// ([`WEBHOOK_OUTCOMES`]).
pub const WEBHOOK_DELIVERIES: &str = "verdict_webhook_deliveries_total";
/// The outcomes of a webhook delivery attempt.
pub const WEBHOOK_OUTCOMES: [&str; 3] = ["delivered", "retry", "failed"];
/// Age of the oldest undelivered outbox row, by `exporter` (0 when none):
/// alert on it to learn that a target has been down for long, before
/// `retry.max_elapsed` marks events failed.
pub const OUTBOX_OLDEST_PENDING: &str = "verdict_outbox_oldest_pending_seconds";
/// Run state changes committed and announced, by `contract` and the new
/// `state`: `increase(...{state=~"PROMOTED|ROLLED_BACK"}[1h])` is the
/// decisions per hour.
pub const RUN_TRANSITIONS: &str = "verdict_run_transitions_total";
/// Flag change attempts of `unleash` exporters, by `exporter` and
/// `outcome` ([`FLAG_OUTCOMES`]).
pub const FLAG_CHANGES: &str = "verdict_flag_changes_total";
/// The outcomes of a flag change attempt.
pub const FLAG_OUTCOMES: [&str; 4] = ["delivered", "retry", "superseded", "failed"];
/// Rollbacks decided but not yet applied to their flag, by `exporter`:
/// alert when it stays above 0 (the release still gets traffic).
pub const UNLEASH_UNAPPLIED_ROLLBACKS: &str = "verdict_unleash_unapplied_rollbacks";
/// Reloads of the pipeline file, by `result` ([`RELOAD_RESULTS`]).
pub const CONFIG_RELOADS: &str = "verdict_config_reloads_total";
/// `applied`, `invalid` (refused, nothing changed) or `failed` (the new
/// file could not start; the previous one runs again).
pub const RELOAD_RESULTS: [&str; 3] = ["applied", "invalid", "failed"];

/// Whether a self-metric only goes up or is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (named `…_total`).
    Counter,
    /// Set to the current value.
    Gauge,
}

/// One of verdict's own metrics: its name, kind and help text.
#[derive(Debug, Clone, Copy)]
pub struct SelfMetric {
    /// The exposed name.
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// The `# HELP` text (one line, no quotes or backslashes, so that it
    /// reads the same in both exposition formats).
    pub help: &'static str,
}

/// Every self-metric with its help text: described to the recorder once
/// at start ([`describe`]), so that `/metrics` says what each one means
/// even before its first event.
pub const SELF_METRICS: &[SelfMetric] = &[
    SelfMetric { name: RECEIVER_ACCEPTED_ITEMS, kind: Kind::Counter, help: "Items (spans, data points, log records) accepted, by protocol and signal." },
    SelfMetric { name: RECEIVER_REFUSED_REQUESTS, kind: Kind::Counter, help: "Requests refused whole (nothing in them counted), by protocol and reason." },
    SelfMetric { name: RECEIVER_IGNORED_ITEMS, kind: Kind::Counter, help: "Items accepted but read by no contract (other span kinds, unmatched resources, other signals), by protocol and signal." },
    SelfMetric { name: RECEIVER_REJECTED_ITEMS, kind: Kind::Counter, help: "Items rejected inside an accepted request (partial success), by protocol, signal and reason." },
    SelfMetric { name: MILLISECOND_BOUNDS, kind: Kind::Counter, help: "Points of latency histograms declared in seconds whose bucket bounds look like milliseconds, by metric." },
    SelfMetric { name: LATE_SAMPLES, kind: Kind::Counter, help: "Samples whose window had already closed." },
    SelfMetric { name: SERIES_OVERFLOW, kind: Kind::Counter, help: "Samples put into the overflow series because max_series subjects were held." },
    SelfMetric { name: QUEUE_DEPTH, kind: Kind::Gauge, help: "Batches waiting in each shard's queue, by pipeline and shard." },
    SelfMetric { name: METRIC_STREAMS, kind: Kind::Gauge, help: "Cumulative metric streams remembered for cumulative to delta, by pipeline and shard." },
    SelfMetric { name: METRIC_STREAMS_OVERFLOW, kind: Kind::Counter, help: "Points of cumulative streams not counted, by reason: streams (max_streams held) or buckets (no room for their buckets)." },
    SelfMetric { name: METRIC_STREAMS_EXPIRED, kind: Kind::Counter, help: "Cumulative metric streams forgotten after stream_expiry without a point." },
    SelfMetric { name: METRIC_STREAM_RESETS, kind: Kind::Counter, help: "Cumulative metric stream resets (a new start time, or a value that dropped)." },
    SelfMetric { name: WEBHOOK_DELIVERIES, kind: Kind::Counter, help: "Webhook delivery attempts, by exporter and outcome (delivered, retry, failed)." },
    SelfMetric { name: OUTBOX_OLDEST_PENDING, kind: Kind::Gauge, help: "Age in seconds of the oldest event not yet delivered, by exporter (0 when none)." },
    SelfMetric { name: RUN_TRANSITIONS, kind: Kind::Counter, help: "Run state changes committed and announced, by contract and new state." },
    SelfMetric { name: FLAG_CHANGES, kind: Kind::Counter, help: "Flag change attempts of unleash exporters, by exporter and outcome (delivered, retry, superseded, failed)." },
    SelfMetric { name: UNLEASH_UNAPPLIED_ROLLBACKS, kind: Kind::Gauge, help: "Rollbacks decided but not yet applied to their Unleash flag, by exporter." },
    SelfMetric { name: CONFIG_RELOADS, kind: Kind::Counter, help: "Reloads of the pipeline file, by result (applied, invalid, failed)." },
    SelfMetric { name: CLUSTER_LEADER, kind: Kind::Gauge, help: "1 on the instance that leads the instances sharing a PostgreSQL database (judges windows, decides runs), 0 on the others." },
    SelfMetric { name: CLUSTER_LATE_PARTIALS, kind: Kind::Counter, help: "Partial window rows that reached PostgreSQL after the leader judged their window (counted in no verdict), by pipeline and writing instance (`writer`); counted by the leader." },
];

/// Describes every self-metric to the installed recorder (its `# HELP`).
/// Idempotent: a later description of the same name replaces the first.
pub fn describe() {
    for m in SELF_METRICS {
        match m.kind {
            Kind::Counter => metrics::describe_counter!(m.name, m.help),
            Kind::Gauge => metrics::describe_gauge!(m.name, m.help),
        }
    }
}

/// 1 on the instance that leads the cluster (judges windows, decides
/// runs), 0 on the others.
pub const CLUSTER_LEADER: &str = "verdict_cluster_leader";

/// Partial rows written after their window was judged (an instance slow
/// past the grace, or taken for dead): counted in no verdict.
pub const CLUSTER_LATE_PARTIALS: &str = "verdict_cluster_late_partials_total";

/// Output format of the logs on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the tracing subscriber writing to stderr. `RUST_LOG` overrides the
/// default level (`info`). Safe to call more than once (later calls do nothing).
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal, never in files or pipes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.fmt_fields(crate::log_text::fields()).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The `instance` label of every self-metric, in a cluster.
static INSTANCE: OnceLock<String> = OnceLock::new();

/// Labels every self-metric with `instance` (the cluster member's name),
/// so that scrapes of several instances do not add up each other's
/// counters. Takes effect only before the first metric is recorded.
pub fn set_instance_label(instance: &str) {
    let _ = INSTANCE.set(instance.to_string());
}

/// The process-wide recorder of self-metrics; installed on first use so that
/// every server in the process (and every test) renders the same registry.
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let mut builder = PrometheusBuilder::new();
        if let Some(instance) = INSTANCE.get() {
            builder = builder.add_global_label("instance", instance.clone());
        }
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (embedding); then ours
        // stays local and self-metrics go to the embedder's recorder.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}
