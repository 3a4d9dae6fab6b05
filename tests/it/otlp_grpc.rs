//! OTLP/gRPC status codes (design §4): INVALID_ARGUMENT for undecodable
//! messages (not tonic's INTERNAL), RESOURCE_EXHAUSTED for oversized ones
//! (never OUT_OF_RANGE), partial_success for rejected spans.

use bytes::{Buf, BufMut, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Code;

use crate::{config, now_ns, start};

const CONTRACT: &str = r#"
    match: { service.name: checkout }
    max_p95_latency_ms: 100
"#;

/// Sends raw bytes as the request message, to provoke decode errors.
#[derive(Default)]
struct RawClientCodec;
struct RawEnc;
struct RespDec;

impl Encoder for RawEnc {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RespDec {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, tonic::Status> {
        let b = src.copy_to_bytes(src.remaining());
        ExportTraceServiceResponse::decode(b)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

impl Codec for RawClientCodec {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = RawEnc;
    type Decoder = RespDec;
    fn encoder(&mut self) -> RawEnc {
        RawEnc
    }
    fn decoder(&mut self) -> RespDec {
        RespDec
    }
}

async fn send_raw(
    endpoint: &str,
    body: Bytes,
) -> Result<ExportTraceServiceResponse, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .expect("endpoint")
        .connect()
        .await
        .expect("connects");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let path = http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    );
    grpc.unary(tonic::Request::new(body), path, RawClientCodec)
        .await
        .map(tonic::Response::into_inner)
}

fn span(start: u64, end: u64) -> Span {
    Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: "GET /".into(),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        ..Default::default()
    }
}

fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "checkout"), kv("service.version", "1.0")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_status_codes() {
    let server = start(&config(CONTRACT, "size: 60s")).await;
    let endpoint = format!("http://{}", server.grpc[0].1);
    let mut client = TraceServiceClient::connect(endpoint.clone())
        .await
        .expect("connects");

    // Empty request: OK, no partial success.
    let resp = client
        .export(ExportTraceServiceRequest::default())
        .await
        .expect("ok");
    assert_eq!(resp.into_inner().partial_success, None);

    // One good span, one from the future, one without times.
    let now = now_ns();
    let resp = client
        .export(request(vec![
            span(now - 1_000_000, now),
            span(now + 3_600_000_000_000, now + 3_600_000_000_001),
            span(0, 0),
        ]))
        .await
        .expect("accepted");
    let ps = resp.into_inner().partial_success.expect("partial success");
    assert_eq!(ps.rejected_spans, 2);
    assert!(
        ps.error_message.contains("max_clock_skew"),
        "{}",
        ps.error_message
    );

    // Undecodable message: INVALID_ARGUMENT with prost's reason.
    let err = send_raw(&endpoint, Bytes::from_static(&[0x0a, 0xff, 0xff]))
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("malformed protobuf"),
        "{}",
        err.message()
    );

    // Larger than max_request_bytes (64 KiB): RESOURCE_EXHAUSTED, never OUT_OF_RANGE.
    let mut big = request(vec![span(now - 1, now)]);
    big.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(100 * 1024);
    let err = client.export(big).await.expect_err("refused");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");

    // A gzip bomb: 10 MiB of one repeated byte compresses to a few KiB; it is
    // stopped at the 64 KiB limit while inflating, as RESOURCE_EXHAUSTED.
    let mut bomb = request(vec![span(now - 1, now)]);
    bomb.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(10 * 1024 * 1024);
    let mut gz = TraceServiceClient::connect(endpoint.clone())
        .await
        .expect("connects")
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    let err = gz.export(bomb).await.expect_err("refused");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    // A compressed request that fits is accepted.
    gz.export(request(vec![span(now - 1, now)]))
        .await
        .expect("accepted");

    server
        .shutdown(std::time::Duration::from_secs(10))
        .await
        .expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_bearer_token() {
    let yaml = config(CONTRACT, "size: 60s").replace(
        "max_request_bytes: 64KiB",
        "max_request_bytes: 64KiB\n    auth: { bearer_token: s3cret }",
    );
    let server = start(&yaml).await;
    let mut client = TraceServiceClient::connect(format!("http://{}", server.grpc[0].1))
        .await
        .expect("connects");
    let err = client
        .export(ExportTraceServiceRequest::default())
        .await
        .expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut req = tonic::Request::new(ExportTraceServiceRequest::default());
    req.metadata_mut()
        .insert("authorization", "Bearer wrong".parse().expect("ascii"));
    assert_eq!(
        client.export(req).await.expect_err("wrong").code(),
        Code::Unauthenticated
    );
    let mut req = tonic::Request::new(ExportTraceServiceRequest::default());
    req.metadata_mut()
        .insert("authorization", "Bearer s3cret".parse().expect("ascii"));
    client.export(req).await.expect("accepted with the token");
    server
        .shutdown(std::time::Duration::from_secs(10))
        .await
        .expect("shutdown");
}

/// Sends `message`, already gzip-compressed, as the compressed message of a
/// TraceService/Export call (a tonic client would compress it again);
/// returns the call's grpc-status.
async fn export_precompressed(endpoint: &str, message: Vec<u8>) -> Code {
    export_encoded(endpoint, message, "gzip").await.0
}

/// Sends `message`, already compressed with `encoding`, as the compressed
/// message of a TraceService/Export call; returns the call's grpc-status
/// and the answer's headers and trailers.
pub(crate) async fn export_encoded(
    endpoint: &str,
    message: Vec<u8>,
    encoding: &str,
) -> (Code, http::HeaderMap) {
    use http_body_util::BodyExt as _;
    use tonic::codegen::Service as _;
    let mut channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .expect("endpoint")
        .connect()
        .await
        .expect("connects");
    let mut frame = vec![1u8];
    frame.extend(u32::try_from(message.len()).expect("small").to_be_bytes());
    frame.extend(message);
    let request = http::Request::builder()
        .method("POST")
        .uri(format!(
            "{endpoint}/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-encoding", encoding)
        .body(tonic::body::Body::new(http_body_util::Full::new(
            Bytes::from(frame),
        )))
        .expect("request");
    std::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .expect("ready");
    let response = channel.call(request).await.expect("answered");
    let mut headers = response.headers().clone();
    let body = response.into_body().collect().await.expect("body");
    headers.extend(body.trailers().cloned().unwrap_or_default());
    let status = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .expect("a grpc-status");
    (Code::from(status), headers)
}

/// As over HTTP: a gzip message of several members is inflated whole
/// (tonic's decoder stopped after the first member and the call succeeded
/// with 60 of the 100 spans), and the limit holds over all members.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_gzip_messages_of_several_members_count_every_span() {
    use crate::otlp_http::{counted, gzip_member, spans_in_three_gzip_members};
    let server = start(&config(CONTRACT, "size: 1s, allowed_lateness: 300ms")).await;
    let endpoint = format!("http://{}", server.grpc[0].1);
    let message = spans_in_three_gzip_members("5.1", now_ns());
    assert_eq!(export_precompressed(&endpoint, message).await, Code::Ok);
    assert_eq!(counted(server.api, "5.1").await, 100);

    let mut bomb = gzip_member(&[0u8; 40 * 1024]);
    bomb.extend(gzip_member(&[0u8; 40 * 1024]));
    assert_eq!(
        export_precompressed(&endpoint, bomb).await,
        Code::ResourceExhausted
    );
    // An uncompressed request still goes through tonic's own path.
    let mut client = TraceServiceClient::connect(endpoint)
        .await
        .expect("connects");
    client
        .export(ExportTraceServiceRequest::default())
        .await
        .expect("accepted");
    server
        .shutdown(std::time::Duration::from_secs(10))
        .await
        .expect("shutdown");
}
