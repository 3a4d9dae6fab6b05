//! The three OTLP export services (traces, metrics, logs) as types: their
//! gRPC names, request and response messages, and how a request of each is
//! ingested. Both transports (gRPC and HTTP) dispatch on them.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};

use super::{Accepted, Ingest, IngestError};

/// One OTLP export service: its gRPC name, messages and how it is ingested.
pub trait ExportKind: Send + Sync + 'static {
    /// Fully qualified service name.
    const NAME: &'static str;
    /// The request message.
    type Request: prost::Message + Default;
    /// The response message.
    type Response: prost::Message + Default + Send + 'static;
    /// Converts and enqueues a decoded request.
    fn ingest(
        ingest: &Ingest,
        protocol: &'static str,
        req: &Self::Request,
    ) -> Result<Accepted, IngestError>;
    /// Decodes, converts and enqueues a protobuf body. By default through the
    /// prost message; signals with a borrowing fast path override it.
    fn ingest_protobuf(
        ingest: &Ingest,
        protocol: &'static str,
        body: Bytes,
    ) -> Result<Accepted, IngestError> {
        let req = <Self::Request as prost::Message>::decode(body)
            .map_err(|e| IngestError::Malformed(format!("malformed protobuf: {e}")))?;
        Self::ingest(ingest, protocol, &req)
    }
    /// The response for an accepted request.
    fn response(acc: Accepted) -> Self::Response;
}

/// `opentelemetry.proto.collector.trace.v1.TraceService`.
#[derive(Debug, Clone, Copy)]
pub struct Traces;
/// `opentelemetry.proto.collector.metrics.v1.MetricsService`.
#[derive(Debug, Clone, Copy)]
pub struct Metrics;
/// `opentelemetry.proto.collector.logs.v1.LogsService`.
#[derive(Debug, Clone, Copy)]
pub struct Logs;

impl ExportKind for Traces {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    type Request = ExportTraceServiceRequest;
    type Response = ExportTraceServiceResponse;
    fn ingest(
        ingest: &Ingest,
        protocol: &'static str,
        req: &Self::Request,
    ) -> Result<Accepted, IngestError> {
        ingest.traces(protocol, req)
    }
    fn ingest_protobuf(
        ingest: &Ingest,
        protocol: &'static str,
        body: Bytes,
    ) -> Result<Accepted, IngestError> {
        ingest.traces_protobuf(protocol, &body)
    }
    fn response(acc: Accepted) -> Self::Response {
        ExportTraceServiceResponse {
            partial_success: (acc.rejected > 0).then_some(ExportTracePartialSuccess {
                rejected_spans: acc.rejected,
                error_message: acc.message,
            }),
        }
    }
}

impl ExportKind for Metrics {
    const NAME: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    type Request = ExportMetricsServiceRequest;
    type Response = ExportMetricsServiceResponse;
    fn ingest(
        ingest: &Ingest,
        protocol: &'static str,
        req: &Self::Request,
    ) -> Result<Accepted, IngestError> {
        ingest.metrics(protocol, req)
    }
    fn ingest_protobuf(
        ingest: &Ingest,
        protocol: &'static str,
        body: Bytes,
    ) -> Result<Accepted, IngestError> {
        ingest.metrics_protobuf(protocol, &body)
    }
    fn response(acc: Accepted) -> Self::Response {
        ExportMetricsServiceResponse {
            partial_success: (acc.rejected > 0).then_some(ExportMetricsPartialSuccess {
                rejected_data_points: acc.rejected,
                error_message: acc.message,
            }),
        }
    }
}

impl ExportKind for Logs {
    const NAME: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    type Request = ExportLogsServiceRequest;
    type Response = ExportLogsServiceResponse;
    fn ingest(
        ingest: &Ingest,
        protocol: &'static str,
        req: &Self::Request,
    ) -> Result<Accepted, IngestError> {
        ingest.logs(protocol, req)
    }
    fn response(acc: Accepted) -> Self::Response {
        ExportLogsServiceResponse {
            partial_success: (acc.rejected > 0).then_some(ExportLogsPartialSuccess {
                rejected_log_records: acc.rejected,
                error_message: acc.message,
            }),
        }
    }
}
