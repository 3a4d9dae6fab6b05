//! The OTLP/JSON decoder (`receivers/otlp/json/`), on any bytes, as a
//! traces, a metrics and a logs body:
//!
//! - it never panics; an error names where it is (line and column);
//! - what it accepts survives a round trip through protobuf unchanged
//!   (prost encodes it, prost decodes the same message);
//! - traces: the decoded request converts the same way through the
//!   protobuf hot path (the wire reader on its encoding) as through the
//!   reference conversion, and every span is accepted, ignored or
//!   rejected exactly once;
//! - metrics: every data point is accounted for once and goes into
//!   consistent windows (`verdict_fuzz::check_metrics_request`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use verdict::fuzzing;
use verdict::receivers::PipelineInput;
use verdict_fuzz::{check_accounting, check_metrics_request, span_pipelines, spans, NOW};

/// A decoded message encodes to protobuf that decodes back to it
/// (compared as bytes: a NaN is never equal to itself).
fn round_trip<M: Message + Default>(m: &M) -> Vec<u8> {
    let bytes = m.encode_to_vec();
    let back = M::decode(bytes.as_slice()).expect("prost reads what it wrote");
    assert_eq!(back.encode_to_vec(), bytes, "protobuf round trip");
    bytes
}

fn error_is_located(e: &fuzzing::JsonDecodeError) {
    let text = e.to_string();
    assert!(!text.is_empty(), "an error says something");
    assert!(e.line() >= 1, "an error has a line: {text}");
    if let Some(path) = e.path() {
        assert!(
            text.starts_with(path),
            "an error starts with its path: {text}"
        );
    }
}

fuzz_target!(|body: &[u8]| {
    match fuzzing::decode_traces(body) {
        Ok(req) => {
            let bytes = round_trip(&req);
            let pipelines = span_pipelines();
            let refs: Vec<&PipelineInput> = pipelines.iter().collect();
            let reference = fuzzing::convert_traces(&req, &refs, NOW);
            check_accounting(&reference, spans(&req));
            let wire = fuzzing::wire_convert_traces(&bytes, &refs, NOW)
                .unwrap_or_else(|e| panic!("the wire reader refuses prost's encoding: {e}"));
            assert_eq!(
                format!("{wire:?}"),
                format!("{reference:?}"),
                "wire vs prost"
            );
        }
        Err(e) => error_is_located(&e),
    }
    match fuzzing::decode_metrics(body) {
        Ok(req) => {
            round_trip(&req);
            check_metrics_request(&req);
        }
        Err(e) => error_is_located(&e),
    }
    match fuzzing::decode_logs(body) {
        Ok(req) => {
            round_trip(&req);
        }
        Err(e) => error_is_located(&e),
    }
});
