//! `exp_load`: OTLP load of cumulative exponential histograms, for the
//! metrics ingest benchmark (benches/RESULTS.md, "Ingest (metrics, one
//! core)"), side by side with other OTLP servers.
//!
//! The shared load tool sends explicit-bucket histograms only; SDKs default
//! to exponential ones of up to 160 buckets. This sends the same shape as
//! that tool's metrics load, with the histogram exponential: each request
//! is one resource of `--services` × `--versions` (30 by default), holding
//! `ceil(batch/2)` points of the cumulative exponential histogram
//! `http.server.request.duration` (unit `s`, scale 4, 160 positive
//! buckets, 1–200 lognormal latencies per point, with sum, min and max) and
//! `floor(batch/2)` points of the cumulative monotonic sum
//! `http.server.request.count`; point `i` has attribute set `i` of 560
//! (route × method × status), so 30 × 560 = 16,800 streams of each metric.
//!
//! Bodies are encoded once (a pool of them) and each send only writes the
//! current time into the points, so the generator costs a copy per request
//! and the server's work is what is measured. The report gives accepted
//! points per second and, with `--server-pid`, the server's CPU share over
//! the measured window (from `/proc/<pid>/stat`, as the shared tool does),
//! its peak RSS and points per second of server CPU.
//!
//! ```sh
//! cargo build --release --example exp_load
//! taskset -c 1 target/release/examples/exp_load --protocol grpc --batch 1000 \
//!     --concurrency 32 --connections 4 --duration 8 --warmup 2 --server-pid $PID
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes};
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric, number_data_point, AggregationTemporality,
    ExponentialHistogram, ExponentialHistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
enum Proto {
    Grpc,
    Http,
}

/// Load of cumulative exponential histograms over OTLP.
#[derive(Debug, Parser, Clone)]
struct Args {
    /// Server address (host:port); 127.0.0.1:4317 (grpc) or :4318 (http).
    #[arg(long)]
    endpoint: Option<String>,
    #[arg(long, value_enum, default_value = "grpc")]
    protocol: Proto,
    /// Points per request (half histogram points, half sum points).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Requests in flight (over HTTP, one connection each).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// gRPC connections (HTTP/2) shared by the requests in flight.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Seconds measured (after the warm-up).
    #[arg(long, default_value_t = 8)]
    duration: u64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Send this many requests, all measured, then stop (0: --duration).
    #[arg(long, default_value_t = 0)]
    requests: u64,
    /// Distinct service.name values.
    #[arg(long, default_value_t = 10)]
    services: usize,
    /// Distinct service.version values per service.
    #[arg(long, default_value_t = 3)]
    versions: usize,
    /// Histogram buckets per point.
    #[arg(long, default_value_t = 160)]
    buckets: usize,
    /// Pre-encoded bodies per resource.
    #[arg(long, default_value_t = 4)]
    pool: usize,
    /// The server's process, for its CPU share and peak RSS.
    #[arg(long)]
    server_pid: Option<u32>,
}

const ROUTES: usize = 20;
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE"];
const STATUSES: &[i64] = &[200, 201, 204, 400, 404, 500, 503];
/// Scale of every histogram point: 16 buckets per octave, so 160 buckets
/// cover ten octaves around the median.
const SCALE: i32 = 4;
/// Median latency (s) and the sigma of its logarithm, as the shared tool's
/// defaults.
const MEDIAN_S: f64 = 0.040;
const SIGMA: f64 = 0.8;
/// The time written into bodies when they are encoded, found and replaced
/// at every send (no point of a real body carries it).
const MARK: u64 = 0x7e57_7e57_7e57_7e57;

/// A standard normal value (Box–Muller).
fn normal(rng: &mut SmallRng) -> f64 {
    let u = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn kv_str(key: &str, v: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.into()))
}

/// Attribute set `i` of 560 (route × method × status).
fn attrs(i: usize) -> Vec<KeyValue> {
    vec![
        kv_str("http.request.method", METHODS[(i / ROUTES) % METHODS.len()]),
        kv_str("http.route", &format!("/api/v1/route{}", i % ROUTES)),
        kv(
            "http.response.status_code",
            any_value::Value::IntValue(STATUSES[(i / (ROUTES * METHODS.len())) % STATUSES.len()]),
        ),
        kv_str("url.scheme", "https"),
    ]
}

fn resource(args: &Args, idx: usize) -> Resource {
    let versions = args.versions.max(1);
    Resource {
        attributes: vec![
            kv_str("service.name", &format!("svc-{:04}", idx / versions)),
            kv_str("service.version", &format!("1.{}.0", idx % versions)),
            kv_str("service.namespace", "bench"),
            kv_str("deployment.environment.name", "loadtest"),
            kv_str("host.name", "loadgen-host-01"),
            kv_str("telemetry.sdk.name", "opentelemetry"),
            kv_str("telemetry.sdk.language", "rust"),
        ],
        ..Default::default()
    }
}

/// One exponential histogram point of `count` lognormal latencies in
/// `buckets` buckets at [`SCALE`], centred on the median (values beyond
/// the ends are counted in the end buckets).
fn exp_point(
    args: &Args,
    rng: &mut SmallRng,
    i: usize,
    start: u64,
) -> ExponentialHistogramDataPoint {
    let per_octave = f64::from(1u32 << SCALE);
    let index = |v: f64| (v.log2() * per_octave).ceil() as i64 - 1;
    let n = args.buckets.max(1);
    let offset = index(MEDIAN_S) - (n / 2) as i64;
    let mut counts = vec![0u64; n];
    let count = rng.random_range(1..=200u64);
    let (mut sum, mut min, mut max) = (0.0, f64::MAX, 0.0f64);
    for _ in 0..count {
        let v = MEDIAN_S * (SIGMA * normal(rng)).exp();
        sum += v;
        min = min.min(v);
        max = max.max(v);
        let b = (index(v) - offset).clamp(0, n as i64 - 1) as usize;
        counts[b] += 1;
    }
    ExponentialHistogramDataPoint {
        attributes: attrs(i),
        start_time_unix_nano: start,
        time_unix_nano: MARK,
        count,
        sum: Some(sum),
        scale: SCALE,
        zero_count: 0,
        positive: Some(Buckets {
            offset: offset as i32,
            bucket_counts: counts,
        }),
        min: Some(min),
        max: Some(max),
        ..Default::default()
    }
}

/// One request body without its resource (each resource gets a copy).
struct Body {
    /// The encoded `ScopeMetrics` field of a `ResourceMetrics`.
    scope: Vec<u8>,
}

fn body(args: &Args, rng: &mut SmallRng, start: u64) -> Body {
    let hist = args.batch.div_ceil(2);
    let sums = args.batch / 2;
    let mut metrics = Vec::new();
    if hist > 0 {
        metrics.push(Metric {
            name: "http.server.request.duration".into(),
            unit: "s".into(),
            data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: (0..hist).map(|i| exp_point(args, rng, i, start)).collect(),
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        });
    }
    if sums > 0 {
        metrics.push(Metric {
            name: "http.server.request.count".into(),
            unit: "{request}".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: (0..sums)
                    .map(|i| NumberDataPoint {
                        attributes: attrs(i),
                        start_time_unix_nano: start,
                        time_unix_nano: MARK,
                        value: Some(number_data_point::Value::AsInt(
                            rng.random_range(1..100_000i64),
                        )),
                        ..Default::default()
                    })
                    .collect(),
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })),
            ..Default::default()
        });
    }
    let rm = ResourceMetrics {
        resource: None,
        scope_metrics: vec![ScopeMetrics {
            scope: Some(InstrumentationScope {
                name: "exp_load".into(),
                ..Default::default()
            }),
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    };
    Body {
        scope: rm.encode_to_vec(),
    }
}

/// Every request this run sends: per resource, `pool` bodies with the
/// offsets of their time fields.
struct Pool {
    requests: Vec<(Vec<u8>, Vec<usize>)>,
    points: u64,
}

impl Pool {
    fn build(args: &Args) -> Pool {
        let start = now_ns().saturating_sub(3_600_000_000_000);
        let mut rng = SmallRng::seed_from_u64(0x9E37_79B9_7F4A_7C15);
        let bodies: Vec<Body> = (0..args.pool.max(1))
            .map(|_| body(args, &mut rng, start))
            .collect();
        let series = args.services.max(1) * args.versions.max(1);
        let mut requests = Vec::new();
        for b in &bodies {
            for r in 0..series {
                // ResourceMetrics = resource (field 1) + the body's fields.
                let mut rm = Vec::new();
                prost::encoding::message::encode(1, &resource(args, r), &mut rm);
                rm.extend_from_slice(&b.scope);
                let mut req = Vec::new();
                prost::encoding::encode_key(
                    1,
                    prost::encoding::WireType::LengthDelimited,
                    &mut req,
                );
                prost::encoding::encode_varint(rm.len() as u64, &mut req);
                req.extend_from_slice(&rm);
                let mark = MARK.to_le_bytes();
                let times: Vec<usize> = req
                    .windows(8)
                    .enumerate()
                    .filter(|(_, w)| *w == mark)
                    .map(|(i, _)| i)
                    .collect();
                requests.push((req, times));
            }
        }
        Pool {
            requests,
            points: args.batch as u64,
        }
    }

    /// Request `seq` with the time of its points set to now.
    fn request(&self, seq: u64) -> Bytes {
        let (body, times) = &self.requests[(seq % self.requests.len() as u64) as usize];
        let mut out = body.clone();
        let now = now_ns().to_le_bytes();
        for &at in times {
            out[at..at + 8].copy_from_slice(&now);
        }
        Bytes::from(out)
    }
}

/// Sends a pre-encoded request body as the gRPC message.
struct RawCodec;
struct RawEncoder;
struct ResponseDecoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for ResponseDecoder {
    type Item = ExportMetricsServiceResponse;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, tonic::Status> {
        let b = src.copy_to_bytes(src.remaining());
        ExportMetricsServiceResponse::decode(b)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ExportMetricsServiceResponse;
    type Encoder = RawEncoder;
    type Decoder = ResponseDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

/// What a request came back as: its points rejected, or why it failed.
type Answer = Result<u64, String>;

async fn send_grpc(channel: tonic::transport::Channel, body: Bytes) -> Answer {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| e.to_string())?;
    let path = http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    );
    let r = grpc
        .unary(tonic::Request::new(body), path, RawCodec)
        .await
        .map_err(|s| format!("{:?}", s.code()))?;
    Ok(r.into_inner()
        .partial_success
        .map_or(0, |p| p.rejected_data_points.max(0) as u64))
}

type HttpSender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn http_connect(endpoint: &str) -> Result<HttpSender, String> {
    let tcp = tokio::net::TcpStream::connect(endpoint)
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn send_http(sender: &mut HttpSender, endpoint: &str, body: Bytes) -> Answer {
    sender.ready().await.map_err(|e| e.to_string())?;
    let req = http::Request::post(format!("http://{endpoint}/v1/metrics"))
        .header("content-type", "application/x-protobuf")
        .header("host", endpoint)
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("HTTP {}", status.as_u16()));
    }
    let r = ExportMetricsServiceResponse::decode(bytes).unwrap_or_default();
    Ok(r.partial_success
        .map_or(0, |p| p.rejected_data_points.max(0) as u64))
}

/// CPU ticks (user + system) of a process, from `/proc/<pid>/stat`.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` field of `/proc/<pid>/status` (VmHWM, VmRSS), in bytes.
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const USER_HZ: f64 = 100.0;

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let endpoint = args
        .endpoint
        .clone()
        .unwrap_or_else(|| match args.protocol {
            Proto::Grpc => "127.0.0.1:4317".into(),
            Proto::Http => "127.0.0.1:4318".into(),
        });
    let pool = Arc::new(Pool::build(&args));
    let mean_bytes =
        pool.requests.iter().map(|r| r.0.len()).sum::<usize>() / pool.requests.len().max(1);
    let mut channels = Vec::new();
    if args.protocol == Proto::Grpc {
        for _ in 0..args.connections.max(1) {
            let ch = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))?
                .connect()
                .await?;
            channels.push(ch);
        }
    }
    let stats = Arc::new(Stats::default());
    let counting = Arc::new(AtomicBool::new(args.warmup == 0 || args.requests > 0));
    let stop = Arc::new(AtomicBool::new(false));
    let seq = Arc::new(AtomicU64::new(0));
    let limit = args.requests;
    let mut workers = Vec::new();
    for w in 0..args.concurrency.max(1) {
        let (pool, stats, counting, stop, seq) = (
            pool.clone(),
            stats.clone(),
            counting.clone(),
            stop.clone(),
            seq.clone(),
        );
        let channel = channels.get(w % channels.len().max(1)).cloned();
        let endpoint = endpoint.clone();
        workers.push(tokio::spawn(async move {
            let mut http = None;
            while !stop.load(Ordering::Relaxed) {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                if limit > 0 && n >= limit {
                    break;
                }
                let body = pool.request(n);
                let answer = match &channel {
                    Some(ch) => send_grpc(ch.clone(), body).await,
                    None => {
                        if http.is_none() {
                            http = http_connect(&endpoint).await.ok();
                        }
                        match http.as_mut() {
                            Some(s) => send_http(s, &endpoint, body).await,
                            None => Err("cannot connect".into()),
                        }
                    }
                };
                if !counting.load(Ordering::Relaxed) {
                    continue;
                }
                match answer {
                    Ok(rejected) => {
                        stats.requests.fetch_add(1, Ordering::Relaxed);
                        stats
                            .accepted
                            .fetch_add(pool.points.saturating_sub(rejected), Ordering::Relaxed);
                        stats.rejected.fetch_add(rejected, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if stats.failed.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("request failed: {e}");
                        }
                        http = None;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
        }));
    }
    let (cpu0, t0);
    if limit > 0 {
        cpu0 = args.server_pid.and_then(cpu_ticks);
        t0 = Instant::now();
        for w in workers.drain(..) {
            let _ = w.await;
        }
    } else {
        tokio::time::sleep(Duration::from_secs(args.warmup)).await;
        cpu0 = args.server_pid.and_then(cpu_ticks);
        counting.store(true, Ordering::Relaxed);
        t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(args.duration)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu1 = args.server_pid.and_then(cpu_ticks);
    stop.store(true, Ordering::Relaxed);
    let accepted = stats.accepted.load(Ordering::Relaxed);
    let rate = accepted as f64 / secs;
    let cpu = cpu0
        .zip(cpu1)
        .map(|(a, b)| (b.saturating_sub(a)) as f64 / USER_HZ / secs);
    let pid = args.server_pid;
    let report = serde_json::json!({
        "protocol": format!("{:?}", args.protocol).to_lowercase(),
        "batch": args.batch,
        "buckets": args.buckets,
        "concurrency": args.concurrency,
        "mean_request_bytes": mean_bytes,
        "seconds": secs,
        "requests_ok": stats.requests.load(Ordering::Relaxed),
        "requests_failed": stats.failed.load(Ordering::Relaxed),
        "points_accepted": accepted,
        "points_rejected": stats.rejected.load(Ordering::Relaxed),
        "points_accepted_per_s": rate,
        "server": {
            "cpu_pct": cpu.map(|c| c * 100.0),
            "points_per_cpu_s": cpu.filter(|c| *c > 0.0).map(|c| rate / c),
            "vm_hwm_bytes": pid.and_then(|p| status_kb(p, "VmHWM:")),
            "vm_rss_bytes": pid.and_then(|p| status_kb(p, "VmRSS:")),
        },
    });
    println!("{report}");
    for w in workers {
        let _ = tokio::time::timeout(Duration::from_secs(5), w).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;

    #[test]
    fn requests_decode_with_every_time_written() {
        let args = Args::parse_from(["exp_load", "--batch", "10", "--pool", "2"]);
        let pool = Pool::build(&args);
        assert_eq!(pool.requests.len(), 2 * 30);
        let req = ExportMetricsServiceRequest::decode(pool.request(7)).expect("decodes");
        let rm = &req.resource_metrics[0];
        assert!(rm.resource.is_some());
        let metrics = &rm.scope_metrics[0].metrics;
        let Some(metric::Data::ExponentialHistogram(h)) = &metrics[0].data else {
            panic!("first metric is the exponential histogram");
        };
        assert_eq!(h.data_points.len(), 5);
        for p in &h.data_points {
            assert_ne!(p.time_unix_nano, MARK);
            let b = p.positive.as_ref().expect("positive buckets");
            assert_eq!(b.bucket_counts.len(), 160);
            assert_eq!(b.bucket_counts.iter().sum::<u64>(), p.count);
        }
        let Some(metric::Data::Sum(s)) = &metrics[1].data else {
            panic!("second metric is the sum");
        };
        assert!(s.data_points.iter().all(|p| p.time_unix_nano != MARK));
    }
}
