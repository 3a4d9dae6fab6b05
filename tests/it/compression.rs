//! What OTLP clients send: `gzip`, `zstd` and `deflate` bodies over HTTP
//! and gRPC, from real clients (the Rust SDK's exporters for gzip and
//! zstd, the Python SDK's for deflate) and crafted ones: every span of an
//! accepted body counts, a small body that inflates past
//! `max_request_bytes` is refused in every encoding without losing
//! anything else, and an unknown encoding is refused clearly (415 /
//! UNIMPLEMENTED, with what would be accepted).

use std::io::Write as _;
use std::process::Command;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{Span as _, SpanKind, Tracer as _, TracerProvider as _};
use opentelemetry_otlp::{
    Compression, Protocol, WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _,
};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tonic::Code;

use crate::durable::Verdict;
use crate::otlp_grpc::export_encoded;
use crate::otlp_http::spans_protobuf;
use crate::{config, now_ns, TempDir};

const CONTRACT: &str = r#"
    match: { service.name: checkout }
    max_p95_latency_ms: 100
"#;

/// The real binary with OTLP over gRPC and HTTP, `max_request_bytes:
/// 64KiB` and 1 s windows that wait 3 s for late spans (its counters are its own: in-process servers
/// share the test process's recorder).
fn server(dir: &TempDir) -> Verdict {
    let file = dir.0.join("pipeline.yaml");
    std::fs::write(&file, config(CONTRACT, "size: 1s, allowed_lateness: 3s")).expect("write");
    Verdict::start(&file)
}

/// The samples of checkout `version` once they reach `want` (its windows
/// closed), or what they are after 30 s.
async fn counted(v: &Verdict, version: &str, want: u64) -> u64 {
    let url = v.api(&format!("/api/v1/runs/checkout/checkout/{version}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = crate::get_json(&url).await;
        let n = body["run"]["samples"].as_u64().unwrap_or(0);
        if n == want || std::time::Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The gRPC listener of `v`.
fn grpc_of(v: &Verdict) -> std::net::SocketAddr {
    v.grpc.expect("an OTLP/gRPC listener")
}

/// `data` compressed with `encoding`.
fn compress(encoding: &str, data: &[u8]) -> Vec<u8> {
    match encoding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(data).expect("in memory");
            e.finish().expect("in memory")
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(data).expect("in memory");
            e.finish().expect("in memory")
        }
        "zstd" => zstd::bulk::compress(data, 19).expect("in memory"),
        other => panic!("no encoder for {other}"),
    }
}

/// The Rust SDK's span exporter over `grpc` or `http`, compressing with
/// `compression`, for release `version`.
fn rust_sdk(
    grpc: bool,
    endpoint: std::net::SocketAddr,
    compression: Compression,
    version: &str,
) -> SdkTracerProvider {
    let exporter = if grpc {
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(format!("http://{endpoint}"))
            .with_compression(compression)
            .build()
    } else {
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("http://{endpoint}/v1/traces"))
            .with_compression(compression)
            .build()
    }
    .expect("exporter builds");
    crate::tracer_provider(exporter, "checkout", version)
}

/// `n` SERVER spans of 10 ms through `provider`, then a flush. On a
/// blocking thread: the simple exporter blocks on each export, which the
/// runtime's workers carry out.
async fn emit(provider: SdkTracerProvider, n: u64) {
    tokio::task::spawn_blocking(move || {
        let tracer = provider.tracer("compression");
        for _ in 0..n {
            let end = SystemTime::now();
            let mut span = tracer
                .span_builder("GET /")
                .with_kind(SpanKind::Server)
                .with_start_time(end - Duration::from_millis(10))
                .start(&tracer);
            span.end_with_timestamp(end);
        }
        provider.force_flush().expect("every span exported");
        provider.shutdown().expect("shut down");
    })
    .await
    .expect("flushed");
}

/// `tests/python/send_spans.py` (the OpenTelemetry Python SDK): `n`
/// spans of `version` over `protocol` to `endpoint`, with `compression`.
async fn python_sdk(protocol: &str, endpoint: String, compression: &str, version: &str, n: u64) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/send_spans.py");
    let args = [
        script.to_string(),
        protocol.to_string(),
        endpoint,
        compression.to_string(),
        version.to_string(),
        n.to_string(),
    ];
    let out = tokio::task::spawn_blocking(move || Command::new("python3").args(&args).output())
        .await
        .expect("joined")
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}); .ci/run installs tests/python/requirements.txt")
        });
    assert!(
        out.status.success(),
        "the Python SDK's export failed ({}): {}{}\n(pip install -r tests/python/requirements.txt)",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn real_clients_compress_and_every_span_counts() {
    let dir = TempDir::new("compression-clients");
    let v = server(&dir);
    let (grpc, http) = (grpc_of(&v), v.http);
    tokio::join!(
        emit(
            rust_sdk(true, grpc, Compression::Zstd, "rust-grpc-zstd"),
            30
        ),
        emit(
            rust_sdk(true, grpc, Compression::Gzip, "rust-grpc-gzip"),
            31
        ),
        emit(
            rust_sdk(false, http, Compression::Zstd, "rust-http-zstd"),
            32
        ),
        emit(
            rust_sdk(false, http, Compression::Gzip, "rust-http-gzip"),
            33
        ),
        python_sdk(
            "http",
            format!("http://{http}/v1/traces"),
            "deflate",
            "py-http-deflate",
            34
        ),
        python_sdk("grpc", grpc.to_string(), "deflate", "py-grpc-deflate", 35),
        python_sdk(
            "http",
            format!("http://{http}/v1/traces"),
            "gzip",
            "py-http-gzip",
            36
        ),
    );
    for (version, n) in [
        ("rust-grpc-zstd", 30),
        ("rust-grpc-gzip", 31),
        ("rust-http-zstd", 32),
        ("rust-http-gzip", 33),
        ("py-http-deflate", 34),
        ("py-grpc-deflate", 35),
        ("py-http-gzip", 36),
    ] {
        assert_eq!(counted(&v, version, n).await, n, "{version}");
    }
    // Nothing was refused.
    let metrics = crate::scrape(v.prometheus).await;
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("verdict_receiver_refused_requests_total{"))
    {
        assert!(line.ends_with(" 0"), "{line}");
    }
}

/// The value of `verdict_receiver_refused_requests_total{protocol,reason}`.
async fn refused(prometheus: std::net::SocketAddr, protocol: &str, reason: &str) -> u64 {
    let want = format!(
        "verdict_receiver_refused_requests_total{{protocol=\"{protocol}\",reason=\"{reason}\"}} "
    );
    crate::scrape(prometheus)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(&want)?.parse().ok())
        .unwrap_or_else(|| panic!("{want}missing"))
}

async fn post(
    http: std::net::SocketAddr,
    encoding: &str,
    body: Vec<u8>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let resp = reqwest::Client::new()
        .post(format!("http://{http}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", encoding)
        .body(body)
        .send()
        .await
        .expect("POST");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    // A protobuf google.rpc.Status: its message is readable as text.
    let body = String::from_utf8_lossy(&resp.bytes().await.expect("body")).into_owned();
    (status, headers, body)
}

/// A bomb in each encoding (200 KiB of zeros in a few hundred bytes,
/// against the 64 KiB limit) between two good bodies of the same encoding:
/// the bomb is refused as too large, the good bodies count whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bombs_in_every_encoding_are_refused_and_nothing_else_is_lost() {
    let dir = TempDir::new("compression-bombs");
    let v = server(&dir);
    let (grpc, http, prom) = (format!("http://{}", grpc_of(&v)), v.http, v.prometheus);
    let bomb_data = vec![0u8; 200 * 1024];
    for encoding in ["gzip", "deflate", "zstd"] {
        let bomb = compress(encoding, &bomb_data);
        assert!(bomb.len() < 2048, "{encoding} bomb of {} bytes", bomb.len());
        let http_version = format!("http-{encoding}");
        let grpc_version = format!("grpc-{encoding}");
        let good = |version: &str| compress(encoding, &spans_protobuf(version, 20, now_ns()));

        let (status, _, _) = post(http, encoding, good(&http_version)).await;
        assert_eq!(status, 200, "{encoding}");
        let (status, _, message) = post(http, encoding, bomb.clone()).await;
        assert_eq!(status, 413, "{encoding}: {message}");
        assert!(
            message.contains("exceeds max_request_bytes (65536 bytes) after decompression"),
            "{encoding}: {message}"
        );
        let (status, _, _) = post(http, encoding, good(&http_version)).await;
        assert_eq!(status, 200, "{encoding}");

        let (code, _) = export_encoded(&grpc, good(&grpc_version), encoding).await;
        assert_eq!(code, Code::Ok, "{encoding}");
        let (code, headers) = export_encoded(&grpc, bomb, encoding).await;
        assert_eq!(code, Code::ResourceExhausted, "{encoding}: {headers:?}");
        let (code, _) = export_encoded(&grpc, good(&grpc_version), encoding).await;
        assert_eq!(code, Code::Ok, "{encoding}");

        assert_eq!(counted(&v, &http_version, 40).await, 40, "{encoding}");
        assert_eq!(counted(&v, &grpc_version, 40).await, 40, "{encoding}");
    }
    // A zstd frame of a few bytes declaring a 128 MiB window: refused
    // before the decoder takes the memory.
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("encoder");
    enc.window_log(27).expect("window log");
    enc.long_distance_matching(true).expect("long mode");
    enc.write_all(&spans_protobuf("window", 1, now_ns()))
        .expect("in memory");
    let window = enc.finish().expect("in memory");
    let (status, _, message) = post(http, "zstd", window.clone()).await;
    assert_eq!(status, 413, "{message}");
    assert!(
        message.contains("declares a window of 134217728 bytes"),
        "{message}"
    );
    let (code, _) = export_encoded(&grpc, window, "zstd").await;
    assert_eq!(code, Code::ResourceExhausted);

    assert_eq!(refused(prom, "http", "too_large").await, 4);
    assert_eq!(refused(prom, "grpc", "too_large").await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_encodings_are_refused_with_the_accepted_ones() {
    let dir = TempDir::new("compression-unknown");
    let v = server(&dir);
    let (grpc, http, prom) = (format!("http://{}", grpc_of(&v)), v.http, v.prometheus);
    let body = spans_protobuf("br", 5, now_ns());
    let (status, headers, message) = post(http, "br", body.clone()).await;
    assert_eq!(status, 415, "{message}");
    assert!(
        message.contains("unsupported content encoding \"br\": use gzip, zstd, deflate or none"),
        "{message}"
    );
    assert_eq!(headers["accept-encoding"], "gzip, zstd, deflate");

    let (code, headers) = export_encoded(&grpc, body, "snappy").await;
    assert_eq!(code, Code::Unimplemented, "{headers:?}");
    assert_eq!(headers["grpc-accept-encoding"], "gzip, zstd, deflate");
    let message = headers["grpc-message"].to_str().unwrap_or("");
    assert!(message.contains("snappy"), "{message}");

    assert_eq!(refused(prom, "http", "unsupported_encoding").await, 1);
    assert_eq!(refused(prom, "grpc", "unsupported_encoding").await, 1);
    // Nothing of them counted; identity still works.
    let (status, _, _) = post(http, "identity", spans_protobuf("plain", 5, now_ns())).await;
    assert_eq!(status, 200);
    assert_eq!(counted(&v, "plain", 5).await, 5);
    let (_, body) = crate::get_json(&v.api("/api/v1/runs/checkout/checkout/br")).await;
    assert_eq!(body["run"]["samples"].as_u64().unwrap_or(0), 0, "{body}");
}
