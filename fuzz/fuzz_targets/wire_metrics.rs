//! The hand-written protobuf metrics reader (`receivers/otlp/wire_metrics.rs`)
//! against prost followed by the reference conversion (`convert_metrics`),
//! on the same bytes:
//!
//! - when prost accepts, the wire reader accepts and converts to the same
//!   samples, rejections, notes, culprits and blame, in the same order;
//!   stream identities are equal on prost's own encoding of the request
//!   (the wire reader hashes attributes by their bytes, the reference by
//!   their canonical encoding) and, on the original bytes, only they may
//!   differ;
//! - when the wire reader accepts and prost refuses, prost's error lies in
//!   a field the wire reader frames but does not read (the tolerated
//!   differences listed in `wire_metrics.rs`);
//! - on any bytes prost accepts, the reference conversion keeps its own
//!   invariants (`check_metrics_request`: every point accepted, ignored or
//!   rejected once, consistent points, windows that count what the streams
//!   let through).
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;
use verdict::fuzzing;
use verdict::model::point::StreamId;
use verdict::receivers::PipelineInput;
use verdict_fuzz::{check_metrics_request, metric_pipelines, NOW};

/// Where prost may refuse what the wire reader accepts: fields framed and
/// not read. Matched against prost's error, which names the innermost
/// `Message.field` of the failure first.
const UNREAD: &[&str] = &[
    "Metric.description:",
    "Metric.metadata:",
    "Resource.entity_refs:",
    "InstrumentationScope.attributes:",
    "Exemplar.",
    "HistogramDataPoint.exemplars:",
    "ExponentialHistogramDataPoint.exemplars:",
    "NumberDataPoint.exemplars:",
    // Point attributes are hashed by their bytes; only the error keys'
    // values are decoded.
    "HistogramDataPoint.attributes:",
    "ExponentialHistogramDataPoint.attributes:",
    "NumberDataPoint.attributes:",
    "ArrayValue.",
    "KeyValueList.",
    // Points of metrics no contract reads (or reads as another type) are
    // counted, not decoded: neither is their data message (a damaged
    // `Metric.data` of such a metric is skipped whole, by its length).
    "Metric.data:",
    "SummaryDataPoint.",
    "Summary.data_points:",
    "Gauge.data_points:",
    "Sum.data_points:",
    "Histogram.data_points:",
    "ExponentialHistogram.data_points:",
];

/// The conversion with every stream identity blanked.
fn without_streams(mut c: fuzzing::Converted<verdict::model::PointBatch>) -> String {
    let batches: Vec<Vec<Vec<verdict::model::PointSample>>> = std::mem::take(&mut c.batches)
        .into_iter()
        .map(|shards| {
            shards
                .into_iter()
                .map(|batch| {
                    let mut points = batch.into_points();
                    for p in &mut points {
                        p.stream = StreamId(0, 0);
                    }
                    points
                })
                .collect()
        })
        .collect()
    ;
    format!("{batches:?} {c:?}")
}

fuzz_target!(|body: &[u8]| {
    let pipelines = metric_pipelines();
    let refs: Vec<&PipelineInput> = pipelines.iter().collect();
    let wire = fuzzing::wire_convert_metrics(body, &refs, NOW);
    match ExportMetricsServiceRequest::decode(body) {
        Ok(req) => {
            check_metrics_request(&req);
            let reference = fuzzing::convert_metrics(&req, &refs, NOW);
            let wire =
                wire.unwrap_or_else(|e| panic!("prost accepts, the wire reader refuses: {e}"));
            let canonical = fuzzing::wire_convert_metrics(&req.encode_to_vec(), &refs, NOW)
                .expect("prost's encoding reads");
            assert_eq!(
                format!("{canonical:?}"),
                format!("{reference:?}"),
                "the wire reader converts prost's encoding differently"
            );
            assert_eq!(
                without_streams(wire),
                without_streams(reference),
                "the wire reader converts differently"
            );
        }
        Err(err) => {
            if let Ok(wire) = wire {
                let why = err.to_string();
                assert!(
                    UNREAD.iter().any(|f| why.contains(f)),
                    "the wire reader accepts what prost refuses outside the unread fields: {why}"
                );
                assert_eq!(
                    wire.items,
                    wire.accepted + wire.ignored + wire.rejected_count(),
                    "every point counted once"
                );
            }
        }
    }
});
