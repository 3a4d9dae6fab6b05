//! OTLP/gRPC (design §4) on tonic, with our own codec so that every error a
//! client can provoke maps to the code OTLP clients handle correctly:
//!
//! - the codec hands the handler raw bytes, and the handler decodes them, so
//!   an undecodable message is `INVALID_ARGUMENT` with prost's message (not
//!   tonic's default `INTERNAL`);
//! - an oversized frame is `RESOURCE_EXHAUSTED` (tonic says `OUT_OF_RANGE`,
//!   which OTLP clients retry forever); a gzip body that inflates beyond the
//!   limit is stopped while inflating, by tonic, as `RESOURCE_EXHAUSTED`;
//! - a full queue is `UNAVAILABLE` with a `google.rpc.RetryInfo` detail.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, BoxFuture, CompressionEncoding, Context, Poll, Service, StdError};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

pub use super::signal::{ExportKind, Logs, Metrics, Traces};
use super::{Ingest, IngestError};

/// Maps a refusal to its gRPC status.
pub fn status_of(err: &IngestError) -> Status {
    match err {
        IngestError::QueueFull(secs) | IngestError::Memory(secs) => Status::with_error_details(
            Code::Unavailable,
            err.to_string(),
            ErrorDetails::with_retry_info(Some(Duration::from_secs(u64::from(*secs)))),
        ),
        IngestError::Unauthenticated => Status::unauthenticated(err.to_string()),
        IngestError::Malformed(m) | IngestError::UnsupportedMediaType(m) => {
            Status::invalid_argument(m.clone())
        }
        IngestError::TooLarge(m) => Status::resource_exhausted(m.clone()),
    }
}

/// Decodes nothing: the handler decodes, so it owns the error mapping.
#[derive(Debug)]
pub struct RawCodec<E>(PhantomData<E>);

impl<E> Default for RawCodec<E> {
    fn default() -> Self {
        RawCodec(PhantomData)
    }
}

/// Passes the (decompressed) message bytes through.
#[derive(Debug)]
pub struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Encodes a prost response.
#[derive(Debug)]
pub struct ProstEncoder<E>(PhantomData<E>);

impl<E: prost::Message> Encoder for ProstEncoder<E> {
    type Item = E;
    type Error = Status;
    fn encode(&mut self, item: E, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("encoding the response: {e}")))
    }
}

impl<E: prost::Message + Send + 'static> Codec for RawCodec<E> {
    type Encode = E;
    type Decode = Bytes;
    type Encoder = ProstEncoder<E>;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder(PhantomData)
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

/// One export service over the shared ingest core.
#[derive(Debug)]
pub struct ExportService<K> {
    ingest: Arc<Ingest>,
    _kind: PhantomData<K>,
}

impl<K> Clone for ExportService<K> {
    fn clone(&self) -> Self {
        ExportService {
            ingest: self.ingest.clone(),
            _kind: PhantomData,
        }
    }
}

impl<K: ExportKind> ExportService<K> {
    /// The service for `K` over `ingest`.
    pub fn new(ingest: Arc<Ingest>) -> Self {
        ExportService {
            ingest,
            _kind: PhantomData,
        }
    }
}

impl<K: ExportKind> NamedService for ExportService<K> {
    const NAME: &'static str = K::NAME;
}

struct Handler<K> {
    ingest: Arc<Ingest>,
    _kind: PhantomData<K>,
}

impl<K: ExportKind> UnaryService<Bytes> for Handler<K> {
    type Response = K::Response;
    type Future = BoxFuture<tonic::Response<K::Response>, Status>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let ingest = self.ingest.clone();
        Box::pin(async move {
            let auth = request
                .metadata()
                .get("authorization")
                .map(|v| v.as_bytes());
            let result = ingest.authorize(auth).and_then(|()| {
                let body = request.into_inner();
                // The decoded body counts against the in-flight budget
                // until it has been converted.
                let _budget = ingest.reserve_bytes("grpc", body.len())?;
                K::ingest_protobuf(&ingest, "grpc", body)
            });
            match result {
                Ok(acc) => Ok(tonic::Response::new(K::response(acc))),
                Err(err) => {
                    if !err.counted_at_source() {
                        ingest.refused("grpc", &err);
                    }
                    Err(status_of(&err))
                }
            }
        })
    }
}

impl<K, B> Service<http::Request<B>> for ExportService<K>
where
    K: ExportKind,
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let ingest = self.ingest.clone();
        Box::pin(async move {
            if req.uri().path() != format!("/{}/Export", K::NAME) {
                return Ok(Status::unimplemented("unknown method").into_http());
            }
            let mut grpc = Grpc::new(RawCodec::<K::Response>::default())
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(ingest.max_request_bytes);
            let handler = Handler::<K> {
                ingest: ingest.clone(),
                _kind: PhantomData,
            };
            let mut resp = grpc.unary(handler, req).await;
            remap_framing_errors(&mut resp, &ingest);
            Ok(resp)
        })
    }
}

/// Our handler never answers OUT_OF_RANGE or INTERNAL, so either code here
/// comes from tonic's framing layer rejecting the request itself: an
/// oversized frame (OUT_OF_RANGE → RESOURCE_EXHAUSTED, without RetryInfo) or
/// a broken frame or compressed payload (INTERNAL → INVALID_ARGUMENT).
fn remap_framing_errors<T>(resp: &mut http::Response<T>, ingest: &Ingest) {
    let headers = resp.headers_mut();
    let code = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from);
    let (new, reason) = match code {
        Some(Code::OutOfRange) => (
            Code::ResourceExhausted,
            IngestError::TooLarge(String::new()),
        ),
        Some(Code::Internal) => (Code::InvalidArgument, IngestError::Malformed(String::new())),
        Some(Code::ResourceExhausted) if !headers.contains_key("grpc-status-details-bin") => {
            // tonic's decompression limit: count it as too large.
            ingest.refused("grpc", &IngestError::TooLarge(String::new()));
            return;
        }
        _ => return,
    };
    ingest.refused("grpc", &reason);
    headers.insert("grpc-status", http::HeaderValue::from(new as i32));
}
