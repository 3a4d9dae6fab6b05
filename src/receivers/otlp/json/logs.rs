//! `ExportLogsServiceRequest` and the log record messages.

use super::*;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for ExportLogsServiceRequest")]
pub(super) struct RawLogsRequest {
    pub(super) resource_logs: Option<Vec<Obj<RawResourceLogs>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for ResourceLogs")]
pub(super) struct RawResourceLogs {
    resource: Option<Obj<RawResource>>,
    scope_logs: Option<Vec<Obj<RawScopeLogs>>>,
    schema_url: Option<String>,
}

impl From<RawResourceLogs> for ResourceLogs {
    fn from(r: RawResourceLogs) -> Self {
        ResourceLogs {
            resource: msg(r.resource),
            scope_logs: list(r.scope_logs),
            schema_url: r.schema_url.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for ScopeLogs")]
pub(super) struct RawScopeLogs {
    scope: Option<Obj<RawScope>>,
    log_records: Option<Vec<Obj<RawLogRecord>>>,
    schema_url: Option<String>,
}

impl From<RawScopeLogs> for ScopeLogs {
    fn from(r: RawScopeLogs) -> Self {
        ScopeLogs {
            scope: msg(r.scope),
            log_records: list(r.log_records),
            schema_url: r.schema_url.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for LogRecord")]
pub(super) struct RawLogRecord {
    time_unix_nano: Option<Int<u64>>,
    observed_time_unix_nano: Option<Int<u64>>,
    severity_number: Option<Named<SeverityNumber, i32>>,
    severity_text: Option<String>,
    body: Option<Obj<JsonAnyValue>>,
    attributes: Option<Vec<Obj<RawKeyValue>>>,
    dropped_attributes_count: Option<Int<u32>>,
    flags: Option<Named<LogRecordFlags, u32>>,
    trace_id: Option<TraceId>,
    span_id: Option<SpanId>,
    event_name: Option<String>,
}

impl From<RawLogRecord> for LogRecord {
    fn from(r: RawLogRecord) -> Self {
        LogRecord {
            time_unix_nano: val(r.time_unix_nano),
            observed_time_unix_nano: val(r.observed_time_unix_nano),
            severity_number: val(r.severity_number),
            severity_text: r.severity_text.unwrap_or_default(),
            body: msg(r.body),
            attributes: list(r.attributes),
            dropped_attributes_count: val(r.dropped_attributes_count),
            flags: val(r.flags),
            trace_id: val(r.trace_id),
            span_id: val(r.span_id),
            event_name: r.event_name.unwrap_or_default(),
        }
    }
}
