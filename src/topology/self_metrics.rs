//! Every series of verdict's own metrics whose labels are known from the
//! configuration, registered at 0 when a server starts: an alert such as
//! `increase(verdict_receiver_refused_requests_total{reason="too_large"}[5m]) > 0`
//! or `rate(verdict_webhook_deliveries_total{outcome="failed"}[5m])` then
//! has a series from the first scrape, instead of nothing until the first
//! event (a counter that appears at 1 has no increase to see either).
//!
//! Series of receivers, exporters or contracts a reload removes stay at
//! their last value: the recorder is the process's, and a counter must
//! not go back.

use crate::config::{ExporterKind, ReceiverKind, Source, ValidatedConfig};
use crate::model::RunState;
use crate::receivers::otlp::convert::RejectReason;
use crate::receivers::otlp::{IngestError, Signal};
use crate::telemetry;

/// Registers the series of `config` at 0 (or, for a gauge, at its current
/// value: a reload must not zero a gauge that a worker set).
pub fn register(config: &ValidatedConfig) {
    for name in [
        telemetry::LATE_SAMPLES,
        telemetry::SERIES_OVERFLOW,
        telemetry::METRIC_STREAMS_EXPIRED,
        telemetry::METRIC_STREAM_RESETS,
    ] {
        metrics::counter!(name).increment(0);
    }
    for reason in ["streams", "buckets"] {
        metrics::counter!(telemetry::METRIC_STREAMS_OVERFLOW, "reason" => reason).increment(0);
    }
    for protocol in protocols(config) {
        receiver(protocol);
    }
    for c in config.pipelines.iter().flat_map(|p| &p.contracts) {
        for state in RunState::ALL
            .into_iter()
            .filter(|s| *s != RunState::Pending)
        {
            metrics::counter!(telemetry::RUN_TRANSITIONS,
                "contract" => c.name.clone(), "state" => state.as_str())
            .increment(0);
        }
        if c.source == Source::Metrics {
            metrics::counter!(telemetry::MILLISECOND_BOUNDS, "metric" => c.latency_metric.clone())
                .increment(0);
        }
    }
    for e in &config.exporters {
        let exporter = e.id.clone();
        let outcomes: &[&'static str] = match &e.kind {
            ExporterKind::Webhook(_) => &telemetry::WEBHOOK_OUTCOMES,
            ExporterKind::Unleash(_) => {
                metrics::gauge!(telemetry::UNLEASH_UNAPPLIED_ROLLBACKS, "exporter" => exporter.clone())
                    .increment(0.0);
                &telemetry::FLAG_OUTCOMES
            }
            ExporterKind::Log | ExporterKind::Prometheus { .. } => &[],
        };
        let counter = match &e.kind {
            ExporterKind::Unleash(_) => telemetry::FLAG_CHANGES,
            _ => telemetry::WEBHOOK_DELIVERIES,
        };
        for outcome in outcomes {
            metrics::counter!(counter, "exporter" => exporter.clone(), "outcome" => *outcome)
                .increment(0);
        }
        if !matches!(e.kind, ExporterKind::Prometheus { .. }) {
            metrics::gauge!(telemetry::OUTBOX_OLDEST_PENDING, "exporter" => exporter)
                .increment(0.0);
        }
    }
}

/// The `protocol` labels of the configured receivers.
fn protocols(config: &ValidatedConfig) -> Vec<&'static str> {
    let mut out = Vec::new();
    for r in &config.receivers {
        match &r.kind {
            ReceiverKind::Otlp(otlp) => {
                if otlp.grpc_endpoint.is_some() {
                    out.push("grpc");
                }
                if otlp.http_endpoint.is_some() {
                    out.push("http");
                }
            }
            ReceiverKind::Probe(_) => out.push("probe"),
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The series of one receiver protocol.
fn receiver(protocol: &'static str) {
    if protocol == "probe" {
        // Probe requests are counted as accepted spans, nothing else.
        metrics::counter!(telemetry::RECEIVER_ACCEPTED_ITEMS,
            "protocol" => protocol, "signal" => Signal::Traces.label())
        .increment(0);
        return;
    }
    for signal in [Signal::Traces, Signal::Metrics, Signal::Logs] {
        let labels = [("protocol", protocol), ("signal", signal.label())];
        metrics::counter!(telemetry::RECEIVER_ACCEPTED_ITEMS, &labels).increment(0);
        metrics::counter!(telemetry::RECEIVER_IGNORED_ITEMS, &labels).increment(0);
        if signal == Signal::Logs {
            // Log records are accepted and ignored, never rejected.
            continue;
        }
        for reason in RejectReason::ALL {
            metrics::counter!(telemetry::RECEIVER_REJECTED_ITEMS,
                "protocol" => protocol, "signal" => signal.label(), "reason" => reason.label())
            .increment(0);
        }
    }
    for reason in IngestError::REASONS {
        metrics::counter!(telemetry::RECEIVER_REFUSED_REQUESTS,
            "protocol" => protocol, "reason" => reason)
        .increment(0);
    }
}
