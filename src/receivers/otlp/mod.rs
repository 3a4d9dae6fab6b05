//! The OTLP receiver: gRPC ([`grpc`]) and HTTP ([`http`]) front ends over one
//! [`Ingest`] core that decodes nothing itself but converts decoded requests
//! (spans in [`convert`], metric points in [`convert_metrics`]; protobuf
//! bodies straight from the wire in [`wire`] and [`wire_metrics`]) and enqueues
//! them atomically: capacity is reserved
//! on every target shard before anything is sent, so a request is either
//! counted whole or refused whole and changes nothing.

pub mod budget;
pub(crate) mod convert;
pub mod convert_metrics;
pub(crate) mod cors;
pub(crate) mod grpc;
pub(crate) mod http;
pub(crate) mod inflate;
pub(crate) mod json;
pub mod reject_log;
pub(crate) mod signal;
pub(crate) mod stream_id;
pub(crate) mod wire;
pub(crate) mod wire_metrics;

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use tokio::sync::OwnedSemaphorePermit;

use super::PipelineInput;
use crate::aggregator::{Items, ShardBatch, ShardItems};
use crate::clock::SharedClock;
use crate::model::{HeldBytes, Rejected, SeriesKey};
use crate::telemetry;
use budget::{Budget, Charge};
use convert::{Converted, RejectReason};

/// What a client refused because the storage is down waits before it
/// retries (whole seconds).
const STORAGE_RETRY_SECS: u32 = 5;

/// Why a whole request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// A shard queue is full: retry after the given whole seconds.
    #[error("ingest queue full, retry after {0}s")]
    QueueFull(u32),
    /// The global in-flight byte budget is spent: retry after the given whole seconds.
    #[error("in-flight memory budget exhausted, retry after {0}s")]
    Memory(u32),
    /// What is aggregated cannot be stored right now (the reason): retry
    /// after the given whole seconds.
    #[error("storage unavailable, retry after {0}s: {1}")]
    Storage(u32, String),
    /// Missing or wrong bearer token.
    #[error("missing or invalid bearer token")]
    Unauthenticated,
    /// The payload could not be decoded.
    #[error("{0}")]
    Malformed(String),
    /// The payload is larger than `max_request_bytes` after decompression.
    #[error("{0}")]
    TooLarge(String),
    /// Neither protobuf nor JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A content encoding other than gzip, zstd, deflate or none.
    #[error("{0}")]
    UnsupportedEncoding(String),
}

impl IngestError {
    /// Refusals for load (queue, memory) are counted where they are
    /// detected, with their protocol; the front ends count the others.
    pub fn counted_at_source(&self) -> bool {
        matches!(
            self,
            IngestError::QueueFull(_) | IngestError::Memory(_) | IngestError::Storage(..)
        )
    }

    /// Every `reason` label of `verdict_receiver_refused_requests_total`.
    pub const REASONS: [&'static str; 7] = [
        "queue_full",
        "memory",
        "unauthenticated",
        "malformed",
        "too_large",
        "unsupported_media_type",
        "unsupported_encoding",
    ];

    /// The `reason` label of `verdict_receiver_refused_requests_total`
    /// (one of [`IngestError::REASONS`]).
    pub fn reason(&self) -> &'static str {
        match self {
            IngestError::QueueFull(_) => "queue_full",
            IngestError::Memory(_) => "memory",
            IngestError::Storage(..) => "storage",
            IngestError::Unauthenticated => "unauthenticated",
            IngestError::Malformed(_) => "malformed",
            IngestError::TooLarge(_) => "too_large",
            IngestError::UnsupportedMediaType(_) => "unsupported_media_type",
            IngestError::UnsupportedEncoding(_) => "unsupported_encoding",
        }
    }
}

/// The signal of a request (metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Spans.
    Traces,
    /// Metric data points.
    Metrics,
    /// Log records.
    Logs,
}

impl Signal {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }
}

/// What an accepted request reports back (`partial_success`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Items rejected inside the request.
    pub rejected: i64,
    /// Why; empty when nothing was rejected.
    pub message: String,
}

/// The protocol-independent core of the OTLP receiver.
#[derive(Debug)]
pub struct Ingest {
    /// Pipelines fed by this receiver.
    pub pipelines: Vec<Arc<PipelineInput>>,
    /// Wall clock.
    pub clock: SharedClock,
    /// Largest body after decompression, in bytes.
    pub max_request_bytes: usize,
    /// Required bearer token, if any.
    pub bearer_token: Option<String>,
    /// The process-wide in-flight byte budget (shared by every receiver).
    pub budget: Budget,
    /// The WARN lines about rejected items, rate-limited.
    pub reject_log: reject_log::RejectLog,
}

/// A share of the in-flight byte budget, released on drop.
pub type BudgetPermit = OwnedSemaphorePermit;

/// Counts a refused request in `verdict_receiver_refused_requests_total`.
pub(crate) fn count_refused(protocol: &'static str, err: &IngestError) {
    metrics::counter!(telemetry::RECEIVER_REFUSED_REQUESTS, "protocol" => protocol, "reason" => err.reason())
        .increment(1);
}

impl Ingest {
    /// Takes `bytes` of the in-flight budget for a request body being
    /// decoded, or refuses the request (retryable) when it is spent.
    pub fn reserve_bytes(
        &self,
        protocol: &'static str,
        bytes: usize,
    ) -> Result<Charge, IngestError> {
        self.budget.reserve(protocol, bytes)
    }

    /// Checks an `Authorization` header value against the configured token.
    pub fn authorize(&self, header: Option<&[u8]>) -> Result<(), IngestError> {
        if crate::auth::bearer_ok(self.bearer_token.as_deref(), header) {
            Ok(())
        } else {
            Err(IngestError::Unauthenticated)
        }
    }

    /// Counts a refusal.
    pub fn refused(&self, protocol: &'static str, err: &IngestError) {
        count_refused(protocol, err);
    }

    /// Converts and enqueues a trace request.
    pub fn traces(
        &self,
        protocol: &'static str,
        req: &ExportTraceServiceRequest,
    ) -> Result<Accepted, IngestError> {
        let pipelines: Vec<&PipelineInput> = self.pipelines.iter().map(Arc::as_ref).collect();
        let converted = convert::convert_traces(req, &pipelines, self.clock.now());
        let charge = self.budget.charge(protocol);
        self.enqueue(protocol, Signal::Traces, converted, "spans", charge)
    }

    /// Converts and enqueues a protobuf trace request straight from its bytes
    /// (the hot path: see [`wire`]).
    pub fn traces_protobuf(
        &self,
        protocol: &'static str,
        body: &[u8],
    ) -> Result<Accepted, IngestError> {
        let pipelines: Vec<&PipelineInput> = self.pipelines.iter().map(Arc::as_ref).collect();
        let converted = wire::convert_traces(body, &pipelines, self.clock.now())
            .map_err(|e| IngestError::Malformed(e.to_string()))?;
        let charge = self.budget.charge(protocol);
        self.enqueue(protocol, Signal::Traces, converted, "spans", charge)
    }

    /// Converts and enqueues a metrics request: the latency histograms and
    /// conversion counters of `source: metrics` contracts become point
    /// samples; every other data point is accepted and ignored.
    pub fn metrics(
        &self,
        protocol: &'static str,
        req: &ExportMetricsServiceRequest,
    ) -> Result<Accepted, IngestError> {
        let pipelines: Vec<&PipelineInput> = self.pipelines.iter().map(Arc::as_ref).collect();
        let converted = convert_metrics::convert_metrics(req, &pipelines, self.clock.now());
        let charge = self.budget.charge(protocol);
        self.enqueue(protocol, Signal::Metrics, converted, "data points", charge)
    }

    /// Converts and enqueues a protobuf metrics request straight from its
    /// bytes (the hot path: see [`wire_metrics`]); its samples are charged
    /// to the in-flight budget as they are made.
    pub fn metrics_protobuf(
        &self,
        protocol: &'static str,
        body: &[u8],
    ) -> Result<Accepted, IngestError> {
        let pipelines: Vec<&PipelineInput> = self.pipelines.iter().map(Arc::as_ref).collect();
        let mut charge = self.budget.charge(protocol);
        let converted =
            wire_metrics::convert_metrics(body, &pipelines, self.clock.now(), &mut charge)?;
        self.enqueue(protocol, Signal::Metrics, converted, "data points", charge)
    }

    /// Accepts a logs request: logs are accepted and ignored.
    pub fn logs(
        &self,
        protocol: &'static str,
        req: &ExportLogsServiceRequest,
    ) -> Result<Accepted, IngestError> {
        let records: u64 = req
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len() as u64)
            .sum();
        let converted: Converted = Converted {
            items: records,
            ignored: records,
            ..Converted::default()
        };
        let charge = self.budget.charge(protocol);
        self.enqueue(protocol, Signal::Logs, converted, "log records", charge)
    }

    /// Tells the shards of the series that rejected items were meant for,
    /// so that their runs say why they have no samples. Best effort, after
    /// the request was accepted: what a full queue or a spent budget has no
    /// room for is left out (the items are counted and logged all the
    /// same), and it is charged to the in-flight budget like samples.
    fn blame(&self, blamed: Vec<(usize, SeriesKey, Rejected)>) {
        if blamed.is_empty() {
            return;
        }
        let mut by_shard: std::collections::BTreeMap<(usize, usize), Vec<(SeriesKey, Rejected)>> =
            std::collections::BTreeMap::new();
        for (pipeline, series, rejected) in blamed {
            let Some(p) = self.pipelines.get(pipeline) else {
                continue;
            };
            let shard = p.router.shard_of(&series);
            by_shard
                .entry((pipeline, shard))
                .or_default()
                .push((series, rejected));
        }
        for ((pipeline, shard), items) in by_shard {
            let Some(tx) = self.pipelines[pipeline].router.senders().get(shard) else {
                continue;
            };
            let bytes: usize = items.iter().map(HeldBytes::held_bytes).sum();
            let Some(budget) = self.budget.try_take(bytes) else {
                return;
            };
            let _ = tx.try_send(ShardBatch {
                items: ShardItems::Rejections(items),
                budget: Some(budget),
                accepted_at: self.pipelines[pipeline].clock.now(),
            });
        }
    }

    /// Enqueues the request's items all or nothing ([`super::enqueue`]),
    /// with their share of the in-flight byte budget (`charge`, which may
    /// cover them already, is made to cover exactly them); a full shard
    /// queue or a spent budget refuses the whole request.
    fn enqueue<B: Items>(
        &self,
        protocol: &'static str,
        signal: Signal,
        mut converted: Converted<B>,
        noun: &str,
        mut charge: Charge,
    ) -> Result<Accepted, IngestError> {
        if !converted.is_empty() {
            // Queued items count against the budget until a shard has
            // recorded them: their whole size, bucket vectors included.
            let bytes: usize = converted
                .batches
                .iter()
                .flatten()
                .map(HeldBytes::held_bytes)
                .sum();
            charge.grow_to(bytes)?;
            charge.shrink_to(bytes);
            if let Some(why) = self
                .pipelines
                .iter()
                .find_map(|p| p.router.gate().refusal())
            {
                let err = IngestError::Storage(STORAGE_RETRY_SECS, why);
                self.refused(protocol, &err);
                return Err(err);
            }
            let budget = charge.into_permit();
            if let Err(full) = super::enqueue(&self.pipelines, &mut converted.batches, budget) {
                let err = IngestError::QueueFull(full.retry_after);
                self.refused(protocol, &err);
                return Err(err);
            }
        }
        let labels = [("protocol", protocol), ("signal", signal.label())];
        metrics::counter!(telemetry::RECEIVER_ACCEPTED_ITEMS, &labels).increment(converted.items);
        metrics::counter!(telemetry::RECEIVER_IGNORED_ITEMS, &labels).increment(converted.ignored);
        for (reason, n) in &converted.rejected {
            metrics::counter!(telemetry::RECEIVER_REJECTED_ITEMS,
                "protocol" => protocol, "signal" => signal.label(), "reason" => reason.label())
            .increment(*n);
            if *reason == RejectReason::Late {
                metrics::counter!(telemetry::LATE_SAMPLES).increment(*n);
            }
        }
        self.reject_log.log(
            protocol,
            signal.label(),
            &converted.culprits,
            self.clock.now(),
        );
        self.blame(std::mem::take(&mut converted.blamed));
        Ok(Accepted {
            rejected: converted.rejected_count() as i64,
            message: converted.message(noun),
        })
    }
}

/// The fixtures' metric points through the wire reader, the prost
/// conversion, the shard and the straightforward reference.
#[cfg(test)]
#[path = "fixture_paths_tests.rs"]
mod fixture_paths_tests;

#[cfg(test)]
mod tests {
    use super::*;

    /// The series registered at 0 at start are those a refusal counts.
    #[test]
    fn every_refusal_reason_is_listed() {
        let all = [
            IngestError::QueueFull(1),
            IngestError::Memory(1),
            IngestError::Unauthenticated,
            IngestError::Malformed(String::new()),
            IngestError::TooLarge(String::new()),
            IngestError::UnsupportedMediaType(String::new()),
            IngestError::UnsupportedEncoding(String::new()),
        ];
        let reasons: Vec<&str> = all.iter().map(IngestError::reason).collect();
        assert_eq!(reasons, IngestError::REASONS);
    }
}
