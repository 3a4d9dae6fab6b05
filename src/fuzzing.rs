//! What the fuzz targets in `fuzz/` reach: thin re-exports of the decoders
//! that read untrusted bytes and of the stages right behind them, so that
//! the targets drive the real code without making its modules public.
//!
//! Not an API: nothing here is stable, and the server never uses it. The
//! targets, their invariants and how to run them are in `fuzz/README.md`.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::aggregator::Router;
use crate::clock::ManualClock;
use crate::config::ContractSpec;
use crate::model::{UnixNanos, WindowTiming};
use crate::receivers::PipelineInput;

pub use crate::aggregator::state::{RecordOutcome, ShardState, SubjectSlots, WindowParams};
pub use crate::aggregator::streams::{Delta, StreamParams, StreamTable};
pub use crate::aggregator::Items;
pub use crate::receivers::otlp::convert::{convert_traces, Converted, RejectReason};
pub use crate::receivers::otlp::convert_metrics::{convert_metrics, point_count, MAX_POINT_COUNT};
pub use crate::receivers::otlp::inflate::{inflate, Compression};
pub use crate::receivers::otlp::json::{
    decode_logs, decode_metrics, decode_traces, JsonDecodeError,
};
pub use crate::receivers::otlp::wire::{convert_traces as wire_convert_traces, WireError};

/// The protobuf metrics reader (`receivers/otlp/wire_metrics.rs`) with a
/// budget nothing can exhaust.
pub fn wire_convert_metrics(
    body: &[u8],
    pipelines: &[&PipelineInput],
    now: UnixNanos,
) -> Result<Converted<crate::model::PointBatch>, IngestError> {
    let budget = crate::receivers::otlp::budget::Budget::new(1 << 50);
    crate::receivers::otlp::wire_metrics::convert_metrics(
        body,
        pipelines,
        now,
        &mut budget.charge("fuzz"),
    )
}
pub use crate::receivers::otlp::IngestError;
pub use crate::storage::codec::{accum_from_text, accum_to_text};

/// A pipeline named `name` with `contracts`, `shards` shard queues whose
/// receiving ends are dropped (conversion only routes, it never sends),
/// `timing` windows, and a clock stopped at `now`.
pub fn pipeline(
    name: &str,
    contracts: Vec<ContractSpec>,
    shards: usize,
    timing: WindowTiming,
    now: UnixNanos,
) -> PipelineInput {
    let senders = (0..shards.max(1)).map(|_| mpsc::channel(1).0).collect();
    PipelineInput {
        name: name.to_string(),
        contracts,
        router: Router::from_senders(senders),
        timing,
        clock: Arc::new(ManualClock::new(now)),
    }
}

/// The seed corpora of the targets that read bytes, made from the
/// fixtures. Run by hand when the fixtures or the targets change:
/// `cargo test --lib fuzzing::seeds -- --ignored`.
#[cfg(test)]
mod seeds {
    use std::path::{Path, PathBuf};

    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
    use prost::Message;

    use crate::test_util::{kv, s};

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
    }

    fn fixture(rel: &str) -> Vec<u8> {
        std::fs::read(root().join("tests/fixtures").join(rel)).expect("fixture")
    }

    fn write(target: &str, name: &str, bytes: &[u8]) {
        let dir = root().join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&dir).expect("corpus directory");
        std::fs::write(dir.join(name), bytes).expect("seed");
    }

    /// Spans that the fuzz targets' contracts read (`svc-*` with a
    /// version, every kind, the attributes conversion looks at), so the
    /// fuzzer starts from conversion rather than from framing.
    fn contract_spans() -> ExportTraceServiceRequest {
        let span = |kind: i32, attributes: Vec<KeyValue>, code: i32| Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "GET /".into(),
            kind,
            start_time_unix_nano: 1_699_999_999_000_000_000,
            end_time_unix_nano: 1_700_000_000_000_000_000,
            attributes,
            status: Some(Status {
                code,
                message: String::new(),
            }),
            ..Default::default()
        };
        let resource = |attributes| ResourceSpans {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![
                    span(
                        2,
                        vec![kv("http.response.status_code", Value::IntValue(503))],
                        0,
                    ),
                    span(5, vec![kv("validation.converted", s("true"))], 2),
                    span(1, vec![kv("conv", Value::BoolValue(true))], 1),
                    span(3, vec![kv("http.status_code", s("200"))], 0),
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![
                resource(vec![
                    kv("service.name", s("svc-1")),
                    kv("service.version", Value::IntValue(2)),
                ]),
                resource(vec![
                    kv("service.name", s("other")),
                    kv("deployment", s("blue")),
                ]),
            ],
        }
    }

    #[test]
    #[ignore = "writes fuzz/corpus/: run by hand when the fixtures change"]
    fn write_seed_corpora() {
        let json = fixture("otlp-json/trace.json");
        let req = super::decode_traces(&json).expect("fixture decodes");
        write("wire_traces", "trace.pb", &req.encode_to_vec());
        write("otlp_json", "trace.json", &json);
        write(
            "wire_traces",
            "contracts.pb",
            &contract_spans().encode_to_vec(),
        );
        for name in [
            "metrics.json",
            "latency_metrics.json",
            "exponential_histogram.json",
        ] {
            let json = fixture(&format!("otlp-json/{name}"));
            let req = super::decode_metrics(&json).expect("fixture decodes");
            write(
                "wire_metrics",
                &name.replace(".json", ".pb"),
                &req.encode_to_vec(),
            );
            // The JSON seeds stay a few KB: the latency metrics, not the
            // upstream example of every metric type.
            if name != "metrics.json" {
                write("otlp_json", name, &json);
            }
        }
        for name in ["minimal", "full", "flow_style", "multi_pipeline"] {
            let yaml = fixture(&format!("config/valid/{name}.yaml"));
            write("config", &format!("{name}.yaml"), &yaml);
        }
        for name in ["missing_env", "type_errors", "unknown_keys", "yaml_syntax"] {
            let yaml = fixture(&format!("config/invalid/{name}.yaml"));
            write("config", &format!("invalid_{name}.yaml"), &yaml);
        }
    }
}
