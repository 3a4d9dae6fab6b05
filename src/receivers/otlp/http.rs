//! OTLP/HTTP (design §4) on axum: `POST /v1/traces|metrics|logs` with
//! `application/x-protobuf` or `application/json` bodies, optionally
//! compressed (`Content-Encoding: gzip`, `zstd` or `deflate`; any other is
//! 415). The body is read and inflated ([`inflate`](super::inflate)) with
//! the `max_request_bytes` limit enforced while reading, so a compressed
//! bomb is refused without being inflated, and with every byte held
//! charged to the in-flight budget before it is held
//! ([`budget`](super::budget)).
//! A JSON request gets a JSON answer, a protobuf request a protobuf one;
//! errors are a `google.rpc.Status` in the request's encoding.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::json;

use super::budget::read_body;
use super::inflate::{inflate_with, Compression};
use super::signal::{ExportKind, Logs, Metrics, Traces};
use super::{json, Accepted, Ingest, IngestError};

/// The body encoding of a request (and of its answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json`.
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// The OTLP/HTTP routes over `ingest`, with `cors` when configured.
pub fn router(ingest: Arc<Ingest>, cors: Option<&crate::config::CorsSpec>) -> Router {
    let router = Router::new()
        .route("/v1/traces", post(export::<Traces>))
        .route("/v1/metrics", post(export::<Metrics>))
        .route("/v1/logs", post(export::<Logs>))
        .with_state(ingest);
    match cors {
        Some(spec) => super::cors::layer(router, spec),
        None => router,
    }
}

/// How each signal's body decodes from JSON and encodes its answer as JSON.
trait HttpKind: ExportKind {
    fn decode_json(body: &[u8]) -> Result<Self::Request, json::JsonDecodeError>;
    /// The JSON name of the rejected-items counter of this signal.
    const REJECTED_FIELD: &'static str;
}

impl HttpKind for Traces {
    fn decode_json(body: &[u8]) -> Result<ExportTraceServiceRequest, json::JsonDecodeError> {
        json::decode_traces(body)
    }
    const REJECTED_FIELD: &'static str = "rejectedSpans";
}

impl HttpKind for Metrics {
    fn decode_json(body: &[u8]) -> Result<ExportMetricsServiceRequest, json::JsonDecodeError> {
        json::decode_metrics(body)
    }
    const REJECTED_FIELD: &'static str = "rejectedDataPoints";
}

impl HttpKind for Logs {
    fn decode_json(body: &[u8]) -> Result<ExportLogsServiceRequest, json::JsonDecodeError> {
        json::decode_logs(body)
    }
    const REJECTED_FIELD: &'static str = "rejectedLogRecords";
}

async fn export<K: HttpKind>(State(ingest): State<Arc<Ingest>>, req: Request) -> Response {
    let encoding = match encoding_of(req.headers()) {
        Ok(e) => e,
        Err(err) => return refuse(&ingest, Encoding::Protobuf, err),
    };
    match handle::<K>(&ingest, req, encoding).await {
        Ok(acc) => accepted::<K>(encoding, acc),
        Err(err) => refuse(&ingest, encoding, err),
    }
}

async fn handle<K: HttpKind>(
    ingest: &Ingest,
    req: Request,
    encoding: Encoding,
) -> Result<Accepted, IngestError> {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    ingest.authorize(auth)?;
    let compression = Compression::from_header(
        req.headers()
            .get(header::CONTENT_ENCODING)
            .map(HeaderValue::as_bytes),
    )?;
    let limit = ingest.max_request_bytes;
    // The body counts against the in-flight budget until it has been
    // converted, charged as it is read (see `budget`): a declared length
    // up front, a chunked body chunk by chunk.
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut charge = ingest.budget.charge("http");
    let raw = read_body(req.into_body(), declared, limit, &mut charge).await?;
    let body = if let Some(compression) = compression {
        let inflated = inflate_with(compression, &raw, limit, &mut charge)?;
        // The compressed body is freed: only the inflated one is held now.
        drop(raw);
        charge.shrink_to(inflated.len());
        inflated
    } else {
        raw
    };
    // Conversion is CPU work on a bounded request; it does not block on I/O.
    match encoding {
        Encoding::Protobuf => K::ingest_protobuf(ingest, "http", body),
        Encoding::Json => {
            let request = K::decode_json(&body)
                .map_err(|e| IngestError::Malformed(format!("malformed OTLP/JSON: {e}")))?;
            K::ingest(ingest, "http", &request)
        }
    }
}

fn encoding_of(headers: &HeaderMap) -> Result<Encoding, IngestError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        _ => Err(IngestError::UnsupportedMediaType(format!(
            "unsupported content type {ct:?}: use application/x-protobuf or application/json"
        ))),
    }
}

fn accepted<K: HttpKind>(encoding: Encoding, acc: Accepted) -> Response {
    let body = match encoding {
        Encoding::Protobuf => K::response(acc).encode_to_vec(),
        Encoding::Json => {
            let v = if acc.rejected > 0 {
                json!({"partialSuccess": {K::REJECTED_FIELD: acc.rejected.to_string(), "errorMessage": acc.message}})
            } else {
                json!({})
            };
            v.to_string().into_bytes()
        }
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, encoding.content_type())],
        body,
    )
        .into_response()
}

/// The HTTP status and gRPC code of a refusal.
fn codes(err: &IngestError) -> (StatusCode, tonic::Code) {
    match err {
        IngestError::QueueFull(_) | IngestError::Memory(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, tonic::Code::Unavailable)
        }
        IngestError::Unauthenticated => (StatusCode::UNAUTHORIZED, tonic::Code::Unauthenticated),
        IngestError::Malformed(_) => (StatusCode::BAD_REQUEST, tonic::Code::InvalidArgument),
        IngestError::TooLarge(_) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            tonic::Code::ResourceExhausted,
        ),
        IngestError::UnsupportedMediaType(_) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            tonic::Code::InvalidArgument,
        ),
        IngestError::UnsupportedEncoding(_) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            tonic::Code::Unimplemented,
        ),
    }
}

fn refuse(ingest: &Ingest, encoding: Encoding, err: IngestError) -> Response {
    if !err.counted_at_source() {
        ingest.refused("http", &err);
    }
    let (status, code) = codes(&err);
    let message = err.to_string();
    let body = match encoding {
        Encoding::Protobuf => tonic_types::pb::Status {
            code: code as i32,
            message,
            details: Vec::new(),
        }
        .encode_to_vec(),
        Encoding::Json => json!({"code": code as i32, "message": message})
            .to_string()
            .into_bytes(),
    };
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, encoding.content_type())],
        Body::from(body),
    )
        .into_response();
    match err {
        IngestError::QueueFull(secs) | IngestError::Memory(secs) => {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        // What would be accepted (RFC 7694).
        IngestError::UnsupportedEncoding(_) => {
            resp.headers_mut().insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_static(super::inflate::ACCEPTED),
            );
        }
        _ => {}
    }
    resp
}
