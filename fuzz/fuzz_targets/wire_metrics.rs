//! The protobuf metrics path: verdict has no hand-written reader for
//! metrics, so the request is decoded by prost (as `signal.rs` does) and
//! converted by `convert_metrics`. On any bytes prost accepts:
//!
//! - every data point is accepted, ignored or rejected exactly once, also
//!   when two contracts read one metric in two roles;
//! - every point handed to a shard is consistent (finite non-negative
//!   values, counts within the limit that the buckets add up to);
//! - the request re-encoded reads back to the same bytes, and converts to
//!   the same points (stream identities are stable);
//! - the points go into windows (cumulative → delta, bucket spreading)
//!   that count exactly what the streams let through and read back from
//!   storage unchanged (`verdict_fuzz::check_windows`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;
use verdict::fuzzing;
use verdict::receivers::PipelineInput;
use verdict_fuzz::{check_metrics_request, metric_pipelines, NOW};

fuzz_target!(|body: &[u8]| {
    let Ok(req) = ExportMetricsServiceRequest::decode(body) else {
        return;
    };
    check_metrics_request(&req);
    // Bytes, not messages, are compared: a NaN is never equal to itself.
    let bytes = req.encode_to_vec();
    let again = ExportMetricsServiceRequest::decode(bytes.as_slice())
        .expect("a decoded request re-encodes to one prost reads");
    assert_eq!(again.encode_to_vec(), bytes, "protobuf round trip");
    let pipelines = metric_pipelines();
    let refs: Vec<&PipelineInput> = pipelines.iter().collect();
    let a = fuzzing::convert_metrics(&req, &refs, NOW);
    let b = fuzzing::convert_metrics(&again, &refs, NOW);
    assert_eq!(
        format!("{a:?}"),
        format!("{b:?}"),
        "conversion is deterministic"
    );
});
