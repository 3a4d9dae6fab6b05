//! `ExportTraceServiceRequest` and the span messages.

use super::*;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for ExportTraceServiceRequest")]
pub(super) struct RawTraceRequest {
    pub(super) resource_spans: Option<Vec<Obj<RawResourceSpans>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for ResourceSpans")]
pub(super) struct RawResourceSpans {
    resource: Option<Obj<RawResource>>,
    scope_spans: Option<Vec<Obj<RawScopeSpans>>>,
    schema_url: Option<String>,
}

impl From<RawResourceSpans> for ResourceSpans {
    fn from(r: RawResourceSpans) -> Self {
        ResourceSpans {
            resource: msg(r.resource),
            scope_spans: list(r.scope_spans),
            schema_url: r.schema_url.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for ScopeSpans")]
pub(super) struct RawScopeSpans {
    scope: Option<Obj<RawScope>>,
    spans: Option<Vec<Obj<RawSpan>>>,
    schema_url: Option<String>,
}

impl From<RawScopeSpans> for ScopeSpans {
    fn from(r: RawScopeSpans) -> Self {
        ScopeSpans {
            scope: msg(r.scope),
            spans: list(r.spans),
            schema_url: r.schema_url.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for Span")]
pub(super) struct RawSpan {
    trace_id: Option<TraceId>,
    span_id: Option<SpanId>,
    trace_state: Option<String>,
    parent_span_id: Option<SpanId>,
    flags: Option<Named<SpanFlags, u32>>,
    name: Option<String>,
    kind: Option<Named<span::SpanKind, i32>>,
    start_time_unix_nano: Option<Int<u64>>,
    end_time_unix_nano: Option<Int<u64>>,
    attributes: Option<Vec<Obj<RawKeyValue>>>,
    dropped_attributes_count: Option<Int<u32>>,
    events: Option<Vec<Obj<RawEvent>>>,
    dropped_events_count: Option<Int<u32>>,
    links: Option<Vec<Obj<RawLink>>>,
    dropped_links_count: Option<Int<u32>>,
    status: Option<Obj<RawStatus>>,
}

impl From<RawSpan> for Span {
    fn from(r: RawSpan) -> Self {
        Span {
            trace_id: val(r.trace_id),
            span_id: val(r.span_id),
            trace_state: r.trace_state.unwrap_or_default(),
            parent_span_id: val(r.parent_span_id),
            flags: val(r.flags),
            name: r.name.unwrap_or_default(),
            kind: val(r.kind),
            start_time_unix_nano: val(r.start_time_unix_nano),
            end_time_unix_nano: val(r.end_time_unix_nano),
            attributes: list(r.attributes),
            dropped_attributes_count: val(r.dropped_attributes_count),
            events: list(r.events),
            dropped_events_count: val(r.dropped_events_count),
            links: list(r.links),
            dropped_links_count: val(r.dropped_links_count),
            status: msg(r.status),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for Event")]
pub(super) struct RawEvent {
    time_unix_nano: Option<Int<u64>>,
    name: Option<String>,
    attributes: Option<Vec<Obj<RawKeyValue>>>,
    dropped_attributes_count: Option<Int<u32>>,
}

impl From<RawEvent> for span::Event {
    fn from(r: RawEvent) -> Self {
        span::Event {
            time_unix_nano: val(r.time_unix_nano),
            name: r.name.unwrap_or_default(),
            attributes: list(r.attributes),
            dropped_attributes_count: val(r.dropped_attributes_count),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for Link")]
pub(super) struct RawLink {
    trace_id: Option<TraceId>,
    span_id: Option<SpanId>,
    trace_state: Option<String>,
    attributes: Option<Vec<Obj<RawKeyValue>>>,
    dropped_attributes_count: Option<Int<u32>>,
    flags: Option<Named<SpanFlags, u32>>,
}

impl From<RawLink> for span::Link {
    fn from(r: RawLink) -> Self {
        span::Link {
            trace_id: val(r.trace_id),
            span_id: val(r.span_id),
            trace_state: r.trace_state.unwrap_or_default(),
            attributes: list(r.attributes),
            dropped_attributes_count: val(r.dropped_attributes_count),
            flags: val(r.flags),
        }
    }
}

#[derive(Deserialize)]
#[serde(expecting = "a JSON object for Status")]
pub(super) struct RawStatus {
    message: Option<String>,
    code: Option<Named<status::StatusCode, i32>>,
}

impl From<RawStatus> for Status {
    fn from(r: RawStatus) -> Self {
        Status {
            message: r.message.unwrap_or_default(),
            code: val(r.code),
        }
    }
}
