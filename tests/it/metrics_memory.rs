//! A protobuf metrics request costs the memory of what it keeps, not of
//! what it says (issue 16, item 3): the real binary is sent requests made
//! of the smallest messages there are — empty attributes on the points of
//! a metric a contract reads, empty data points of a metric no contract
//! reads, and empty data points of a metric a contract reads — and its
//! peak RSS stays within the in-flight budget plus the fixed overhead of
//! the budget test ([`OVERHEAD_MIB`](super::memory)).
//!
//! Decoded by prost, each empty `KeyValue` (2 bytes on the wire) became a
//! struct of about 80 bytes and each empty point one of about 200: a
//! 17 MiB request of them made the server allocate about 700 MB before
//! anything was charged. The requests are encoded by hand here, so that
//! the test does not build those structures itself.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use prost::Message as _;

use crate::durable::Verdict;
use crate::memory::{
    channel, grpc_trickle, http_post, kv, reset_peak, status_kib, RssSampler, PROTOBUF,
};
use crate::{now_ns, TempDir};

const MIB: u64 = 1024 * 1024;

/// The in-flight budget of this test's server.
const BUDGET_MIB: u64 = 32;

/// What the server may hold beyond the budget (as in `memory.rs`).
const OVERHEAD_MIB: u64 = 24;

const METRICS_EXPORT: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

fn pipeline() -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:0" }}
      http: {{ endpoint: "127.0.0.1:0" }}
    max_request_bytes: 20MiB
processors:
  window: {{ size: 1s, allowed_lateness: 10s, shards: 2 }}
  contract/metered:
    match: {{ service.name: metered }}
    subject_by: [service.version]
    source: metrics
    max_p95_latency_ms: 1000
    min_samples: 1000000000
exporters:
  prometheus: {{ endpoint: "127.0.0.1:0" }}
pipelines:
  metered:
    receivers: [otlp]
    processors: [window, contract/metered]
    exporters: [prometheus]
service:
  api: {{ endpoint: "127.0.0.1:0" }}
  storage: "memory:"
  max_inflight_bytes: {BUDGET_MIB}MiB
"#
    )
}

/// A length-delimited field.
fn field(n: u32, bytes: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(bytes.len() + 6);
    prost::encoding::encode_key(n, prost::encoding::WireType::LengthDelimited, &mut f);
    prost::encoding::encode_varint(bytes.len() as u64, &mut f);
    f.extend_from_slice(bytes);
    f
}

/// A cumulative histogram metric `name` (in ms) of the given encoded
/// data points.
fn histogram(name: &str, points: impl Iterator<Item = Vec<u8>>) -> Vec<u8> {
    let mut data = Vec::new();
    for p in points {
        data.extend(field(1, &p));
    }
    data.extend([2 << 3, 2]);
    let mut metric = field(1, name.as_bytes());
    metric.extend(field(3, b"ms"));
    metric.extend(field(9, &data));
    metric
}

/// A request of `metrics` (encoded) from service `metered`.
fn request(metrics: &[Vec<u8>]) -> Vec<u8> {
    let resource = opentelemetry_proto::tonic::resource::v1::Resource {
        attributes: vec![kv("service.name", "metered"), kv("service.version", "1")],
        ..Default::default()
    };
    let mut scope = Vec::new();
    for m in metrics {
        scope.extend(field(2, m));
    }
    let mut rm = field(1, &resource.encode_to_vec());
    rm.extend(field(2, &scope));
    field(1, &rm)
}

/// A histogram point at `now` with `attributes` empty attributes.
fn point_with_empty_attributes(now: u64, attributes: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(2 * attributes + 20);
    p.push((2 << 3) | 1);
    p.extend((now - 1_000_000).to_le_bytes());
    p.push((3 << 3) | 1);
    p.extend(now.to_le_bytes());
    for _ in 0..attributes {
        p.extend([(9 << 3) | 2, 0]);
    }
    p
}

/// Sends each of `requests` twice over HTTP and twice over gRPC to a
/// fresh server, expecting the given answer; returns the RSS before and at
/// its peak (KiB).
async fn peak_rss(requests: &[(&str, &Bytes, u16, tonic::Code)]) -> (u64, u64) {
    let dir = TempDir::new("metrics-memory");
    let file = dir.0.join("pipeline.yaml");
    std::fs::write(&file, pipeline()).expect("write");
    let v = Verdict::start(&file);
    let (pid, http) = (v.pid(), v.http);
    let grpc = channel(v.grpc.expect("a gRPC listener")).await;

    // Warm up both transports once with a small request.
    let small = Bytes::from(request(&[histogram(
        "http.server.request.duration",
        (0..10).map(|_| point_with_empty_attributes(now_ns(), 3)),
    )]));
    let (status, _) = http_post(http, "/v1/metrics", PROTOBUF, Full::new(small.clone()))
        .await
        .expect("sent");
    assert_eq!(status, 200);
    let (code, _) = grpc_trickle(&grpc, METRICS_EXPORT, &small, 1 << 20, Duration::ZERO)
        .await
        .expect("sent");
    assert_eq!(code, tonic::Code::Ok);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let before = status_kib(pid, "VmRSS");
    let peak_reset = reset_peak(pid);
    let sampler = RssSampler::start(pid);
    for _ in 0..2 {
        for (what, body, want_status, want_code) in requests {
            let (status, answer) =
                http_post(http, "/v1/metrics", PROTOBUF, Full::new((*body).clone()))
                    .await
                    .expect("sent");
            assert_eq!(status, *want_status, "{what} over HTTP: {answer:?}");
            let (code, _) = grpc_trickle(&grpc, METRICS_EXPORT, body, 1 << 20, Duration::ZERO)
                .await
                .expect("sent");
            assert_eq!(code, *want_code, "{what} over gRPC");
        }
    }
    let sampled = sampler.stop();
    let hwm = status_kib(pid, "VmHWM");
    let peak = if peak_reset {
        hwm.max(sampled)
    } else {
        sampled
    };
    (before, peak)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_messages_do_not_amplify_metrics_requests() {
    let now = now_ns();
    // 1. Read metric: 400 points of 10,000 empty attributes (8 MB); unread
    //    metric: 4 million empty points (8 MB). Accepted: 400 points
    //    counted, 4 million ignored.
    let read = histogram(
        "http.server.request.duration",
        (0..400).map(|_| point_with_empty_attributes(now, 10_000)),
    );
    let unread = histogram("other", (0..4_000_000).map(|_| Vec::new()));
    let attributes_and_points = Bytes::from(request(&[read, unread]));
    // 2. Read metric: 2 million empty points (4 MB), each of which would
    //    be a sample of some 200 bytes: more than the budget, refused
    //    (retryably) while it is read.
    let many = histogram(
        "http.server.request.duration",
        (0..2_000_000).map(|_| Vec::new()),
    );
    let samples = Bytes::from(request(&[many]));
    // One server each: the allocator keeps what the first kind freed in
    // blocks of its own sizes (see `memory.rs`), which is not what this
    // test is about.
    let runs = [
        (
            "empty attributes and unread points",
            peak_rss(&[("accepted", &attributes_and_points, 200, tonic::Code::Ok)]).await,
        ),
        (
            "samples beyond the budget",
            peak_rss(&[("refused", &samples, 503, tonic::Code::Unavailable)]).await,
        ),
    ];
    for (what, (before, peak)) in runs {
        let growth_mib = peak.saturating_sub(before) as f64 / 1024.0;
        println!(
            "metrics memory, {what}: bodies {:.1} MiB and {:.1} MiB, RSS before {before} KiB, \
             peak {peak} KiB, growth {growth_mib:.1} MiB (bound {} MiB)",
            attributes_and_points.len() as f64 / MIB as f64,
            samples.len() as f64 / MIB as f64,
            BUDGET_MIB + OVERHEAD_MIB
        );
        assert!(
            peak <= before + (BUDGET_MIB + OVERHEAD_MIB) * 1024,
            "{what}: peak RSS {peak} KiB exceeds {before} KiB before + {BUDGET_MIB} MiB \
             budget + {OVERHEAD_MIB} MiB overhead ({growth_mib:.1} MiB growth)"
        );
    }
}
