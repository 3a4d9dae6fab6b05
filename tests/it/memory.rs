//! The in-flight byte budget bounds the memory of the real binary (issue
//! 12, item 9): large gRPC messages trickled over HTTP/2, chunked HTTP
//! bodies without `Content-Length`, gzip bodies and metric points of 4096
//! buckets are sent at once, many times the budget in flight. The server's
//! peak RSS stays within what it held before, plus the budget, plus a
//! fixed overhead ([`OVERHEAD_MIB`]); what does not fit is refused with the
//! retryable status, and everything accepted is counted in its run.
//!
//! Before the fix the same load held every gRPC message whole before
//! charging it and every chunked body whole after charging 1 KiB: the peak
//! grew with the load, not with the budget.
//!
//! No assertion depends on how fast the machine is: the pauses between
//! chunks only make requests overlap.

use std::future::poll_fn;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::Frame;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, Histogram, HistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, ResourceSpans, ScopeSpans, Span};
use prost::Message as _;
use tonic::codegen::Service as _;

use crate::durable::Verdict;
use crate::{get_json, now_ns, TempDir};

const MIB: u64 = 1024 * 1024;

/// The server's in-flight budget in these tests.
const BUDGET_MIB: u64 = 8;

/// What the server may hold beyond the budget, in MiB: a fixed amount,
/// whatever the load. The budget charges bodies, inflated bodies and
/// queued items; this covers what it does not (README, "Backpressure and
/// limits"), measured one sender kind at a time on a 2-core machine
/// (`benches/RESULTS.md`, "Memory under the in-flight budget"):
/// - the allocator's retention, the largest part: once glibc has freed a
///   large block it raises its mmap threshold, and later buffers of that
///   size come from arenas that keep their pages (chunked bodies alone
///   grow the RSS by 13 MiB with its default, 9 MiB with the threshold
///   fixed at 128 KiB);
/// - HTTP/2 flow-control windows (up to 1 MiB per connection, 4 here:
///   gRPC alone grows it by 12.7 MiB) and HTTP/1 read buffers;
/// - a metrics request being decoded into prost structures on each of the
///   2 worker threads (about its body's size again: metric points alone
///   grow it by 9 MiB without a refusal);
/// - tonic's per-stream buffers and response encoding.
///
/// All together it measured 16–23 MiB of growth for the 8 MiB budget;
/// the same load grew the server by 73 MiB before the fix, refusing
/// nothing.
const OVERHEAD_MIB: u64 = 24;

/// The largest request body (after decompression).
const MAX_REQUEST_MIB: u64 = 2;

fn pipeline() -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:0" }}
      http: {{ endpoint: "127.0.0.1:0" }}
    max_request_bytes: {MAX_REQUEST_MIB}MiB
processors:
  window: {{ size: 1s, allowed_lateness: 10s, shards: 2 }}
  contract/checkout:
    match: {{ service.name: checkout }}
    subject_by: [service.version]
    max_p95_latency_ms: 1000
    min_samples: 1000000000
  contract/metered:
    match: {{ service.name: metered }}
    subject_by: [service.version]
    source: metrics
    max_p95_latency_ms: 1000
    min_samples: 1000000000
exporters:
  prometheus: {{ endpoint: "127.0.0.1:0" }}
pipelines:
  checkout:
    receivers: [otlp]
    processors: [window, contract/checkout, contract/metered]
    exporters: [prometheus]
service:
  api: {{ endpoint: "127.0.0.1:0" }}
  storage: "memory:"
  max_inflight_bytes: {BUDGET_MIB}MiB
"#
    )
}

/// A `kB` figure (`VmRSS`, `VmHWM`) of `/proc/<pid>/status`.
pub(crate) fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Resets the peak RSS (`VmHWM`) of `pid` to its current RSS, when the
/// kernel lets us (`/proc/<pid>/clear_refs`, value 5).
pub(crate) fn reset_peak(pid: u32) -> bool {
    std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{pid}/clear_refs"))
        .and_then(|mut f| f.write_all(b"5"))
        .is_ok()
}

/// Samples `VmRSS` every 10 ms on a thread of its own until stopped; keeps
/// the largest.
pub(crate) struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl RssSampler {
    pub(crate) fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(status_kib(pid, "VmRSS"));
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        });
        RssSampler { stop, thread }
    }

    pub(crate) fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("sampler")
    }
}

pub(crate) fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn resource(service: &str, version: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", service), kv("service.version", version)],
        ..Default::default()
    })
}

/// SERVER spans of checkout `version`, 5 ms each, ending now, each with a
/// 1 KiB attribute no contract reads, as many as fit in about `bytes`
/// encoded. Returns the request and its span count.
pub(crate) fn traces(version: &str, bytes: usize) -> (ExportTraceServiceRequest, u64) {
    let now = now_ns();
    let padding = "p".repeat(1024);
    let span = |i: u64| Span {
        trace_id: vec![1; 16],
        span_id: (i + 1).to_be_bytes().to_vec(),
        name: "GET /".into(),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: now - 5_000_000,
        end_time_unix_nano: now,
        attributes: vec![kv("padding", &padding)],
        ..Default::default()
    };
    let each = span(0).encoded_len() + 3;
    let n = (bytes / each).max(1) as u64;
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource("checkout", version),
            scope_spans: vec![ScopeSpans {
                spans: (0..n).map(span).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    (req, n)
}

/// Delta explicit-bucket points of metered `version`, each with `buckets`
/// buckets (in ms, bounds 1, 2, …) and one request in the first.
pub(crate) fn histogram_points(version: &str, points: &[usize]) -> ExportMetricsServiceRequest {
    let now = now_ns();
    let point = |buckets: usize| HistogramDataPoint {
        start_time_unix_nano: now - 1_000_000,
        time_unix_nano: now,
        count: 1,
        bucket_counts: std::iter::once(1)
            .chain(std::iter::repeat_n(0, buckets - 1))
            .collect(),
        explicit_bounds: (1..buckets).map(|b| b as f64).collect(),
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource("metered", version),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "http.server.request.duration".into(),
                    unit: "ms".into(),
                    data: Some(metric::Data::Histogram(Histogram {
                        data_points: points.iter().map(|b| point(*b)).collect(),
                        aggregation_temporality: 1,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// `data` gzip-compressed as `members` gzip members.
pub(crate) fn gzip(data: &[u8], members: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for part in data.chunks(data.len().div_ceil(members.max(1)).max(1)) {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(part).expect("in memory");
        out.extend(gz.finish().expect("in memory"));
    }
    out
}

/// A body that yields `data` in `chunk`-byte frames, `pause` before each,
/// with no length: sent with `Transfer-Encoding: chunked` over HTTP/1.1,
/// and as that many DATA frames over HTTP/2.
pub(crate) fn trickle(
    data: Bytes,
    chunk: usize,
    pause: Duration,
) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Send> {
    let chunks: Vec<Bytes> = (0..data.len())
        .step_by(chunk.max(1))
        .map(|at| data.slice(at..(at + chunk).min(data.len())))
        .collect();
    StreamBody::new(futures_util::stream::unfold(
        chunks.into_iter(),
        move |mut rest| async move {
            let next = rest.next()?;
            tokio::time::sleep(pause).await;
            Some((Ok(Frame::data(next)), rest))
        },
    ))
}

/// POSTs `body` over a fresh HTTP/1.1 connection (hyper: a body without a
/// size goes chunked); the status and the answer, or the transport error.
pub(crate) async fn http_post<B>(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: B,
) -> Result<(u16, Bytes), String>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = http::Request::post(path).header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(body).map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let answer = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, answer))
}

/// Sends one gRPC message (`message`, framed here) to `path` over
/// `channel`, trickled in `chunk`-byte frames; the gRPC status code and the
/// answer's message bytes, or the transport error.
pub(crate) async fn grpc_trickle(
    channel: &tonic::transport::Channel,
    path: &'static str,
    message: &[u8],
    chunk: usize,
    pause: Duration,
) -> Result<(tonic::Code, Bytes), String> {
    let mut framed = Vec::with_capacity(5 + message.len());
    framed.push(0);
    framed.extend((message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    grpc_raw(channel, path, trickle(framed.into(), chunk, pause), false).await
}

/// Sends a gRPC request whose body is `body` as it is (framing included).
pub(crate) async fn grpc_raw<B>(
    channel: &tonic::transport::Channel,
    path: &'static str,
    body: B,
    gzip: bool,
) -> Result<(tonic::Code, Bytes), String>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut req = http::Request::post(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if gzip {
        req = req.header("grpc-encoding", "gzip");
    }
    let req = req
        .body(tonic::body::Body::new(body))
        .map_err(|e| e.to_string())?;
    let mut channel = channel.clone();
    poll_fn(|cx| channel.poll_ready(cx))
        .await
        .map_err(|e| e.to_string())?;
    let resp = channel.call(req).await.map_err(|e| e.to_string())?;
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.map_err(|e| e.to_string())?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let code = parts
        .headers
        .get("grpc-status")
        .or_else(|| trailers.get("grpc-status"))
        .and_then(|v| v.to_str().ok()?.parse::<i32>().ok())
        .map(tonic::Code::from)
        .ok_or("no grpc-status")?;
    let data = collected.to_bytes();
    Ok((code, data.slice(data.len().min(5)..)))
}

/// A gRPC channel to `addr` (one HTTP/2 connection).
pub(crate) async fn channel(addr: SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connects")
}

pub(crate) const TRACE_EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Headers of an OTLP/HTTP protobuf body.
pub(crate) const PROTOBUF: &[(&str, &str)] = &[("content-type", "application/x-protobuf")];

/// Headers of a gzip OTLP/HTTP protobuf body.
pub(crate) const GZIP_PROTOBUF: &[(&str, &str)] = &[
    ("content-type", "application/x-protobuf"),
    ("content-encoding", "gzip"),
];

/// What the senders saw, for one subject.
#[derive(Default)]
struct Tally {
    /// Items in requests that were accepted, less those rejected inside.
    accepted: AtomicU64,
    /// Requests refused with the retryable status (503 / UNAVAILABLE).
    refused: AtomicU64,
    /// Items in requests whose fate the sender could not see (the
    /// connection broke before an answer).
    unknown: AtomicU64,
    /// Items rejected inside accepted requests (for the metrics senders,
    /// the point of 4097 buckets: `too_many_buckets`).
    rejected: AtomicU64,
}

impl Tally {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// What became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Accepted,
    Refused,
    Unknown,
}

/// Books an export of `items` items: its status (HTTP or gRPC) and
/// answer, whose items rejected inside `rejected` reads.
fn book(
    tally: &Tally,
    items: u64,
    outcome: Result<(bool, bool, Bytes), String>,
    rejected: fn(Bytes) -> u64,
) -> Outcome {
    match outcome {
        Ok((true, _, answer)) => {
            let rejected = rejected(answer);
            Tally::add(&tally.accepted, items - rejected);
            Tally::add(&tally.rejected, rejected);
            Outcome::Accepted
        }
        Ok((false, true, _)) => {
            Tally::add(&tally.refused, 1);
            Outcome::Refused
        }
        Ok((false, false, answer)) => panic!("neither accepted nor refused: {answer:?}"),
        Err(_) => {
            Tally::add(&tally.unknown, items);
            Outcome::Unknown
        }
    }
}

/// Spans rejected in a trace export's answer.
fn rejected_spans(answer: Bytes) -> u64 {
    let resp = ExportTraceServiceResponse::decode(answer).expect("an OTLP answer");
    resp.partial_success.map_or(0, |p| p.rejected_spans) as u64
}

/// Points rejected in a metrics export's answer.
fn rejected_points(answer: Bytes) -> u64 {
    let resp = ExportMetricsServiceResponse::decode(answer).expect("an OTLP answer");
    resp.partial_success.map_or(0, |p| p.rejected_data_points) as u64
}

/// Each sender makes requests until this many were accepted…
const WANTED: usize = 2;
/// …or it has made this many, pausing after each refusal.
const ATTEMPTS: usize = 400;

/// Runs `send` up to [`ATTEMPTS`] times, until [`WANTED`] requests were
/// accepted, waiting `backoff` after each refusal. `send` gets the
/// payload to send, made by `make` (`(bytes, items)`) once and again after
/// each acceptance or once it is 500 ms old, so that its times stay well
/// within the windows' lateness without a payload made per attempt.
async fn sender<M, F, Fut>(backoff: Duration, mut make: M, mut send: F)
where
    M: FnMut() -> (Bytes, u64),
    F: FnMut(Bytes, u64) -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    let mut accepted = 0;
    let mut payload: Option<(std::time::Instant, Bytes, u64)> = None;
    for _ in 0..ATTEMPTS {
        let (_, bytes, items) = match payload.take() {
            Some(p) if p.0.elapsed() < Duration::from_millis(500) => payload.insert(p),
            _ => {
                let (bytes, items) = make();
                payload.insert((std::time::Instant::now(), bytes, items))
            }
        };
        match send(bytes.clone(), *items).await {
            Outcome::Accepted => {
                accepted += 1;
                payload = None;
            }
            Outcome::Refused => tokio::time::sleep(backoff).await,
            Outcome::Unknown => payload = None,
        }
        if accepted == WANTED {
            break;
        }
    }
}

/// `(accepted, retryable refusal, answer)` of an HTTP answer.
fn http_outcome(r: Result<(u16, Bytes), String>) -> Result<(bool, bool, Bytes), String> {
    r.map(|(status, answer)| (status == 200, status == 503, answer))
}

/// `(accepted, retryable refusal, answer)` of a gRPC answer.
fn grpc_outcome(r: Result<(tonic::Code, Bytes), String>) -> Result<(bool, bool, Bytes), String> {
    r.map(|(code, answer)| {
        (
            code == tonic::Code::Ok,
            code == tonic::Code::Unavailable,
            answer,
        )
    })
}

/// Samples counted so far in the run of `contract`'s subject `version`.
async fn samples(api: SocketAddr, contract: &str, version: &str) -> u64 {
    let (_, run) = get_json(&format!("http://{api}/api/v1/runs/{contract}/{version}")).await;
    run["run"]["samples"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_stays_within_the_inflight_budget() {
    let dir = TempDir::new("memory");
    let file = dir.0.join("pipeline.yaml");
    std::fs::write(&file, pipeline()).expect("write");
    let v = Verdict::start(&file);
    let (pid, http, api) = (v.pid(), v.http, v.api);
    let grpc = v.grpc.expect("a gRPC listener");
    let channels = futures_util::future::join_all((0..4).map(|_| channel(grpc))).await;

    // Warm up every path once, so that what the server allocates for good
    // (thread arenas, connection state) is in the RSS before.
    let (small, _) = traces("warmup", 4096);
    let small = small.encode_to_vec();
    let ok = |r: Result<(bool, bool, Bytes), String>| matches!(r, Ok((true, _, _)));
    assert!(ok(grpc_outcome(
        grpc_trickle(&channels[0], TRACE_EXPORT, &small, 1024, Duration::ZERO).await
    )));
    assert!(ok(http_outcome(
        http_post(
            http,
            "/v1/traces",
            PROTOBUF,
            trickle(small.clone().into(), 1024, Duration::ZERO)
        )
        .await
    )));
    assert!(ok(http_outcome(
        http_post(
            http,
            "/v1/traces",
            GZIP_PROTOBUF,
            Full::new(Bytes::from(gzip(&small, 2)))
        )
        .await
    )));
    let metrics = histogram_points("warmup", &[4096]).encode_to_vec();
    assert!(ok(http_outcome(
        http_post(
            http,
            "/v1/metrics",
            PROTOBUF,
            Full::new(Bytes::from(metrics))
        )
        .await
    )));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let before = status_kib(pid, "VmRSS");
    let peak_reset = reset_peak(pid);
    let sampler = RssSampler::start(pid);

    let pause = Duration::from_millis(5);
    // The bulk senders back off longer than the others, or their many
    // streams would take every permit freed before a gzip or metrics
    // request, larger at once, finds room.
    let (bulk_backoff, backoff) = (Duration::from_millis(50), Duration::from_millis(5));
    let grpc_tally = Arc::new(Tally::default());
    let chunked_tally = Arc::new(Tally::default());
    let gzip_tally = Arc::new(Tally::default());
    let points_tally = Arc::new(Tally::default());
    let mut tasks = tokio::task::JoinSet::new();
    let mut offered = 0u64;
    let spans = |version: &'static str, bytes: u64| {
        move || {
            let (req, n) = traces(version, bytes as usize);
            (Bytes::from(req.encode_to_vec()), n)
        }
    };
    // 24 gRPC streams over 4 connections, each a 1.5 MiB message trickled
    // in 64 KiB frames.
    for i in 0..24 {
        let (channel, tally) = (channels[i % 4].clone(), grpc_tally.clone());
        offered += 3 * MIB / 2;
        tasks.spawn(sender(
            bulk_backoff,
            spans("grpc", 3 * MIB / 2),
            move |message, n| {
                let (channel, tally) = (channel.clone(), tally.clone());
                async move {
                    let r = grpc_trickle(&channel, TRACE_EXPORT, &message, 64 << 10, pause).await;
                    book(&tally, n, grpc_outcome(r), rejected_spans)
                }
            },
        ));
    }
    // 8 chunked HTTP bodies of 1.5 MiB without Content-Length.
    for _ in 0..8 {
        let tally = chunked_tally.clone();
        offered += 3 * MIB / 2;
        tasks.spawn(sender(
            bulk_backoff,
            spans("chunked", 3 * MIB / 2),
            move |body, n| {
                let tally = tally.clone();
                async move {
                    let r = http_post(http, "/v1/traces", PROTOBUF, trickle(body, 64 << 10, pause));
                    book(&tally, n, http_outcome(r.await), rejected_spans)
                }
            },
        ));
    }
    // 4 gzip bodies of two members, 1 MiB inflated.
    for _ in 0..4 {
        let tally = gzip_tally.clone();
        offered += MIB;
        let make = spans("gzip", MIB);
        let make = move || {
            let (body, n) = make();
            (Bytes::from(gzip(&body, 2)), n)
        };
        tasks.spawn(sender(backoff, make, move |body, n| {
            let tally = tally.clone();
            async move {
                let r = http_post(http, "/v1/traces", GZIP_PROTOBUF, Full::new(body));
                book(&tally, n, http_outcome(r.await), rejected_spans)
            }
        }));
    }
    // 4 senders of 12 points of 4096 buckets (768 KiB, and as much
    // queued), and one point of 4097 buckets, rejected.
    for _ in 0..4 {
        let tally = points_tally.clone();
        offered += 3 * MIB / 2;
        let make = || {
            let mut buckets = vec![4096; 12];
            buckets.push(4097);
            let body = histogram_points("buckets", &buckets).encode_to_vec();
            (Bytes::from(body), buckets.len() as u64)
        };
        tasks.spawn(sender(backoff, make, move |body, n| {
            let tally = tally.clone();
            async move {
                let r = http_post(http, "/v1/metrics", PROTOBUF, Full::new(body));
                book(&tally, n, http_outcome(r.await), rejected_points)
            }
        }));
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a sender");
    }
    let sampled = sampler.stop();
    let hwm = status_kib(pid, "VmHWM");
    // The kernel's high-water mark when it could be reset, else what the
    // sampler saw (it may miss a peak shorter than 10 ms).
    let peak = if peak_reset {
        hwm.max(sampled)
    } else {
        sampled
    };
    let tallies = [
        ("grpc", &grpc_tally),
        ("chunked", &chunked_tally),
        ("gzip", &gzip_tally),
        ("buckets", &points_tally),
    ];
    let refused: u64 = tallies
        .iter()
        .map(|(_, t)| t.refused.load(Ordering::Relaxed))
        .sum();
    let figures = serde_json::json!({
        "budget_mib": BUDGET_MIB,
        "offered_in_flight_mib": offered as f64 / MIB as f64,
        "rss_before_kib": before,
        "rss_peak_kib": peak,
        "rss_peak_sampled_kib": sampled,
        "peak_reset": peak_reset,
        "growth_mib": (peak.saturating_sub(before)) as f64 / 1024.0,
        "bound_mib": BUDGET_MIB + OVERHEAD_MIB,
        "refused_requests": refused,
        "senders": tallies.iter().map(|(name, t)| serde_json::json!({
            "subject": name,
            "accepted_items": t.accepted.load(Ordering::Relaxed),
            "refused_requests": t.refused.load(Ordering::Relaxed),
            "unknown_items": t.unknown.load(Ordering::Relaxed),
        })).collect::<Vec<_>>(),
    });
    println!("memory figures: {figures}");

    assert!(
        offered >= 3 * BUDGET_MIB * MIB,
        "the load offers 3x the budget at once"
    );
    assert!(
        peak <= before + (BUDGET_MIB + OVERHEAD_MIB) * 1024,
        "peak RSS {peak} KiB exceeds {before} KiB before + {BUDGET_MIB} MiB budget + \
         {OVERHEAD_MIB} MiB overhead: {figures}"
    );
    assert!(
        refused > 0,
        "3x the budget in flight must be refused in part: {figures}"
    );
    let points_rejected = points_tally.rejected.load(Ordering::Relaxed);
    assert!(
        points_rejected > 0,
        "every accepted metrics request had a point of 4097 buckets rejected: {figures}"
    );

    // Everything accepted is counted in its run, nothing more (unless a
    // connection broke before its answer).
    for (contract, (version, tally)) in [
        ("checkout", tallies[0]),
        ("checkout", tallies[1]),
        ("checkout", tallies[2]),
        ("metered", tallies[3]),
    ] {
        let accepted = tally.accepted.load(Ordering::Relaxed);
        let unknown = tally.unknown.load(Ordering::Relaxed);
        assert!(accepted > 0, "{version}: nothing accepted: {figures}");
        // Bounded polling, no timing assertion: the windows close 10 s
        // after their end, then the run counts them.
        let mut counted = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while counted < accepted && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            counted = samples(api, contract, version).await;
        }
        if counted < accepted {
            // Say where they went: late in a shard, overflowed, …
            let metrics = crate::scrape(v.prometheus).await;
            let own: Vec<&str> = metrics
                .lines()
                .filter(|l| l.starts_with("verdict_") && !l.starts_with("verdict_run"))
                .filter(|l| !l.starts_with("verdict_window"))
                .collect();
            panic!(
                "{version}: {counted} samples for {accepted} accepted items: {figures}\n{}",
                own.join("\n")
            );
        }
        assert!(
            counted <= accepted + unknown,
            "{version}: {counted} samples for {accepted} accepted items: {figures}"
        );
    }
    let metrics = crate::scrape(v.prometheus).await;
    let memory_refusals: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("verdict_receiver_refused_requests_total")
                && l.contains("reason=\"memory\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        memory_refusals > 0.0,
        "refusals for memory are counted: {metrics}"
    );
    assert!(
        metrics.contains("reason=\"too_many_buckets\""),
        "rejections of too many buckets are counted"
    );
}
