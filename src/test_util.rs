//! Fixtures the unit tests of several modules share: a contract, a pipeline
//! input with fixed window settings and a stopped clock, OTLP attributes.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use tokio::sync::mpsc;

use crate::aggregator::{Router, ShardBatch};
use crate::clock::{ManualClock, SharedClock};
use crate::config::{AttributeMatch, ContractSpec, Thresholds};
use crate::model::WindowTiming;
use crate::receivers::PipelineInput;

/// 60 s windows, 10 s lateness, 300 s clock skew.
pub const TIMING: WindowTiming = WindowTiming {
    size: 60_000_000_000,
    lateness: 10_000_000_000,
    max_clock_skew: 300_000_000_000,
};

/// A spans contract named `checkout` on `service.name` matching `pattern`,
/// p95 ≤ 1 ms, promoting after one window.
pub fn contract(pattern: &str) -> ContractSpec {
    ContractSpec {
        matches: vec![AttributeMatch::new("service.name", pattern).expect("glob")],
        pass_windows: 1,
        ..ContractSpec::with_thresholds(
            "checkout",
            Thresholds {
                max_p95_latency_ms: Some(1.0),
                ..Thresholds::default()
            },
        )
    }
}

/// A pipeline `p` of one contract with [`TIMING`], its shards fed by
/// `senders`, its clock stopped at `now`.
pub fn pipeline_input(
    spec: ContractSpec,
    senders: Vec<mpsc::Sender<ShardBatch>>,
    now: u64,
) -> PipelineInput {
    pipeline_input_with_clock(spec, senders, Arc::new(ManualClock::new(now)))
}

/// [`pipeline_input`] with a clock the test keeps.
pub fn pipeline_input_with_clock(
    spec: ContractSpec,
    senders: Vec<mpsc::Sender<ShardBatch>>,
    clock: SharedClock,
) -> PipelineInput {
    PipelineInput {
        name: "p".into(),
        contracts: vec![spec],
        router: Router::from_senders(senders),
        timing: TIMING,
        clock,
    }
}

/// An attribute.
pub fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

/// A string attribute value.
pub fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}
