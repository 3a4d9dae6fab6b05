//! The hand-written protobuf trace reader (`receivers/otlp/wire.rs`)
//! against prost followed by the reference conversion, on the same bytes:
//!
//! - when prost accepts, the wire reader accepts and converts to exactly
//!   the same samples, rejections, notes and culprits, in the same order;
//! - when the wire reader accepts and prost refuses, prost's error lies in
//!   a field the wire reader frames but does not read (the tolerated
//!   differences listed in `wire.rs`); anything else is a defect;
//! - either way, every item is accepted, ignored or rejected exactly once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use verdict::fuzzing;
use verdict::receivers::PipelineInput;
use verdict_fuzz::{check_accounting, check_sample, span_pipelines, spans, NOW};

/// Where prost may refuse what the wire reader accepts: fields that the
/// wire reader frames without reading (UTF-8 and nested messages
/// unchecked). Matched against prost's error, which names the
/// `Message.field` path of the failure.
const UNREAD: &[&str] = &[
    "Span.trace_id:",
    "Span.span_id:",
    "Span.trace_state:",
    "Span.parent_span_id:",
    "Span.name:",
    "Span.events:",
    "Span.links:",
    // Attributes no contract reads are framed only (those it reads are
    // decoded and checked like prost: an error there is refused by both).
    "Span.attributes:",
    "Status.message:",
    "ScopeSpans.scope:",
    "Resource.entity_refs:",
    // Array, kvlist values are not text: framed, never decoded.
    "ArrayValue.",
    "KeyValueList.",
];

/// A framing error inside the body of an array or kvlist value, which the
/// wire reader frames without reading. prost names no field of theirs for
/// a key it cannot read, only the `AnyValue.value` oneof that holds them;
/// the scalar members of that oneof are read by the wire reader, so their
/// errors (a string that is not UTF-8, a wrong wire type) are not
/// tolerated.
fn in_unread_value(why: &str) -> bool {
    why.starts_with("failed to decode Protobuf message: AnyValue.value: ")
        && !why.contains("invalid string value")
        && !why.contains("invalid wire type: ")
}

fuzz_target!(|body: &[u8]| {
    let pipelines = span_pipelines();
    let refs: Vec<&PipelineInput> = pipelines.iter().collect();
    let wire = fuzzing::wire_convert_traces(body, &refs, NOW);
    match ExportTraceServiceRequest::decode(body) {
        Ok(req) => {
            let reference = fuzzing::convert_traces(&req, &refs, NOW);
            check_accounting(&reference, spans(&req));
            let wire =
                wire.unwrap_or_else(|e| panic!("prost accepts, the wire reader refuses: {e}"));
            assert_eq!(
                format!("{wire:?}"),
                format!("{reference:?}"),
                "the wire reader converts differently"
            );
            reference
                .batches
                .iter()
                .flatten()
                .flatten()
                .for_each(check_sample);
        }
        Err(err) => {
            if let Ok(wire) = wire {
                let why = err.to_string();
                assert!(
                    UNREAD.iter().any(|f| why.contains(f)) || in_unread_value(&why),
                    "the wire reader accepts what prost refuses outside the unread fields: {why}"
                );
                check_accounting(&wire, wire.items);
            }
        }
    }
});
