//! OTLP/JSON decoding: OTLP/HTTP request bodies sent as `application/json` →
//! the same `opentelemetry-proto` prost types (`ExportTraceServiceRequest`,
//! `ExportMetricsServiceRequest`, `ExportLogsServiceRequest`) that the protobuf
//! path produces, so everything downstream of the receiver handles exactly one
//! representation regardless of the wire encoding.
//!
//! # Why not `opentelemetry-proto`'s own serde support
//!
//! The crate's `with-serde` feature (checked with the pinned 0.33) reads
//! 64-bit integers written as strings and keeps metric payloads, but it
//! still falls short of what OTLP/JSON senders write
//! (<https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding>):
//!
//! * a 32-bit integer written as a string (`"scale": "20"`, `"offset": "5"`)
//!   makes it drop the metric's whole `data` without an error, so a latency
//!   histogram would silently count nothing;
//! * `snake_case` field names (`resource_spans`) are ignored as unknown
//!   fields, so such a request decodes to nothing instead of its spans.
//!
//! So this module deserializes into private mirror structs that follow the
//! proto3 JSON mapping plus the OTLP deviations, and converts them into the
//! prost-generated types. The crate is used with `default-features = false`
//! and without `with-serde`.
//!
//! The module is split like the messages: `objects` (messages are JSON
//! objects; field names in either spelling), `scalars` (integers, doubles,
//! enums, ids, bytes), `common` (resource, scope, attributes), then one
//! module per signal.
//!
//! # Accepted encoding
//!
//! * Field names in lowerCamelCase or in the proto's snake_case (one key
//!   rule, `objects::CamelKeys`, not an alias per field); unknown fields
//!   are ignored; `null` for any field means "not set" (the default).
//! * `traceId` / `spanId` / `parentSpanId` (spans, links, log records,
//!   exemplars) are hex strings, case-insensitive, **not** base64; `""` is an
//!   empty id; any other length than 16 bytes (trace) / 8 bytes (span) is an
//!   error.
//! * 64-bit integers (timestamps, counts, `asInt`, `intValue`, bucket counts…)
//!   as decimal strings or JSON numbers; 32-bit integers likewise. Numbers with
//!   a fraction or exponent are accepted only when they denote an integer that
//!   a double represents exactly (≤ 2^53); anything else is rejected.
//! * Doubles as JSON numbers, numeric strings, or `"NaN"`, `"Infinity"`,
//!   `"-Infinity"`.
//! * Enums (span kind, status code, aggregation temporality, severity number)
//!   and flag fields as integers, or leniently as their proto value names
//!   (`"SPAN_KIND_SERVER"`, `"DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK"`,
//!   matched case-insensitively). Unknown integer enum values are kept (proto3
//!   enums are open); unknown names are an error.
//! * `bytesValue` is base64 (standard alphabet; URL-safe and unpadded input is
//!   accepted too, as the proto3 JSON mapping asks of parsers).
//! * A oneof (`AnyValue`, `Metric.data`, data point / exemplar values) with more
//!   than one member set is an error, as in the reference proto3 parsers; an
//!   `AnyValue` of `{}` is a value with no variant.
//!
//! Errors carry the JSON path of the offending field (as spelled in the input)
//! and serde_json's line/column, e.g.
//! `resourceSpans[0].scopeSpans[0].spans[2].traceId: invalid hex in trace id:
//! Invalid character 'z' at position 3 at line 12 column 58`.

use std::fmt;
use std::marker::PhantomData;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, Engine as _, GeneralPurpose, GeneralPurposeConfig};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{
    LogRecord, LogRecordFlags, ResourceLogs, ScopeLogs, SeverityNumber,
};
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, exponential_histogram_data_point, metric, number_data_point, summary_data_point,
    AggregationTemporality, DataPointFlags, Exemplar, ExponentialHistogram,
    ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, SpanFlags, Status,
};
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::Deserialize;

mod common;
mod logs;
mod metrics;
mod objects;
mod scalars;
mod traces;

use self::common::*;
use self::logs::*;
use self::metrics::*;
use self::objects::*;
use self::scalars::*;
use self::traces::*;

/// Decodes an OTLP/JSON `ExportTraceServiceRequest` body.
pub fn decode_traces(body: &[u8]) -> Result<ExportTraceServiceRequest, JsonDecodeError> {
    let raw: RawTraceRequest = decode::<Obj<_>>(body)?.0;
    Ok(ExportTraceServiceRequest {
        resource_spans: list(raw.resource_spans),
    })
}

/// Decodes an OTLP/JSON `ExportMetricsServiceRequest` body.
pub fn decode_metrics(body: &[u8]) -> Result<ExportMetricsServiceRequest, JsonDecodeError> {
    let raw: RawMetricsRequest = decode::<Obj<_>>(body)?.0;
    Ok(ExportMetricsServiceRequest {
        resource_metrics: list(raw.resource_metrics),
    })
}

/// Decodes an OTLP/JSON `ExportLogsServiceRequest` body.
pub fn decode_logs(body: &[u8]) -> Result<ExportLogsServiceRequest, JsonDecodeError> {
    let raw: RawLogsRequest = decode::<Obj<_>>(body)?.0;
    Ok(ExportLogsServiceRequest {
        resource_logs: list(raw.resource_logs),
    })
}

/// Why an OTLP/JSON body was rejected.
///
/// `Display` gives the JSON path of the offending field when known (as spelled
/// in the input, e.g. `resourceSpans[0].scopeSpans[0].spans[2].traceId`),
/// followed by the reason and serde_json's line/column.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct JsonDecodeError {
    message: String,
    path: Option<String>,
    line: usize,
    column: usize,
}

// The receiver answers with `Display`, which already names the location;
// the parts are kept apart for the tests that pin each of them.
#[cfg_attr(not(test), allow(dead_code))]
impl JsonDecodeError {
    /// JSON path of the field that failed to decode, if the error is not at the
    /// document root.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    /// 1-based line of the error in the body (0 if unknown).
    pub fn line(&self) -> usize {
        self.line
    }

    /// 1-based column of the error in the body (0 if unknown).
    pub fn column(&self) -> usize {
        self.column
    }

    fn new(path: Option<String>, inner: &serde_json::Error) -> Self {
        let message = match &path {
            Some(path) => format!("{path}: {inner}"),
            None => inner.to_string(),
        };
        Self {
            message,
            path,
            line: inner.line(),
            column: inner.column(),
        }
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, JsonDecodeError> {
    // RFC 8259 §8.1: parsers may ignore a leading byte order mark.
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path();
        let path = if path.iter().next().is_some() {
            Some(path.to_string())
        } else {
            None
        };
        JsonDecodeError::new(path, err.inner())
    })?;
    de.end().map_err(|err| JsonDecodeError::new(None, &err))?;
    Ok(value)
}

#[cfg(test)]
mod tests;
