//! OTLP/gRPC (design §4) on tonic, with our own codec so that every error a
//! client can provoke maps to the code OTLP clients handle correctly:
//!
//! - the codec hands the handler raw bytes, and the handler decodes them, so
//!   an undecodable message is `INVALID_ARGUMENT` with prost's message (not
//!   tonic's default `INTERNAL`);
//! - an oversized frame is `RESOURCE_EXHAUSTED` (tonic says `OUT_OF_RANGE`,
//!   which OTLP clients retry forever);
//! - a gzip message is inflated here, not by tonic, whose decoder stops after
//!   the first gzip member and silently drops the rest ([`gzip`](super::gzip));
//!   one that inflates beyond the limit is stopped while inflating, as
//!   `RESOURCE_EXHAUSTED`;
//! - a full queue is `UNAVAILABLE` with a `google.rpc.RetryInfo` detail.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut as _, Bytes, BytesMut};
use http_body_util::BodyExt as _;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, BoxFuture, CompressionEncoding, Context, Poll, Service, StdError};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::gzip::{inflate, too_large};
pub use super::signal::{ExportKind, Logs, Metrics, Traces};
use super::{BudgetPermit, Ingest, IngestError};

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
    B::Data: Send,
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
            if !is_gzip(req.headers()) {
                return Ok(unary::<K, B>(&ingest, req).await);
            }
            match inflate_messages(req, &ingest).await {
                Ok((req, _budget)) => Ok(unary::<K, _>(&ingest, req).await),
                Err(err) => {
                    if !err.counted_at_source() {
                        ingest.refused("grpc", &err);
                    }
                    Ok(status_of(&err).into_http())
                }
            }
        })
    }
}

/// Serves one Export call with tonic: framing, our codec and [`Handler`].
async fn unary<K, B>(
    ingest: &Arc<Ingest>,
    req: http::Request<B>,
) -> http::Response<tonic::body::Body>
where
    K: ExportKind,
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    let mut grpc = Grpc::new(RawCodec::<K::Response>::default())
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(ingest.max_request_bytes);
    let handler = Handler::<K> {
        ingest: ingest.clone(),
        _kind: PhantomData,
    };
    let mut resp = grpc.unary(handler, req).await;
    remap_framing_errors(&mut resp, ingest);
    resp
}

/// True when the request's messages may be gzip-compressed.
fn is_gzip(headers: &http::HeaderMap) -> bool {
    headers
        .get("grpc-encoding")
        .is_some_and(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"gzip"))
}

/// A gRPC message's frame header: the compressed flag and a 4-byte length.
const FRAME_HEADER: usize = 5;

/// Reads a `grpc-encoding: gzip` request and inflates every compressed
/// message itself (every gzip member, within `max_request_bytes`, see
/// [`gzip`](super::gzip)), handing tonic the same messages uncompressed.
/// The body read and the inflated messages count against the in-flight
/// budget until the call ends (the returned permit). A body whose framing
/// is broken is handed over as it came, for tonic to refuse.
async fn inflate_messages<B>(
    req: http::Request<B>,
    ingest: &Ingest,
) -> Result<(http::Request<http_body_util::Full<Bytes>>, BudgetPermit), IngestError>
where
    B: tonic::codegen::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<StdError> + Send + 'static,
{
    let limit = ingest.max_request_bytes;
    let (parts, body) = req.into_parts();
    // A unary call is one message: its frame header and at most `limit`
    // bytes (tonic's own bound on a frame, compressed or not).
    let raw = http_body_util::Limited::new(body, limit.saturating_add(FRAME_HEADER))
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                too_large(limit)
            } else {
                IngestError::Malformed(format!("reading the request: {e}"))
            }
        })?
        .to_bytes();
    let mut budget = ingest.reserve_bytes("grpc", raw.len())?;
    let mut out = BytesMut::with_capacity(raw.len());
    let mut rest = &raw[..];
    while rest.len() >= FRAME_HEADER {
        let compressed = rest[0];
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let Some(message) = rest.get(FRAME_HEADER..FRAME_HEADER.saturating_add(len)) else {
            break;
        };
        if compressed == 1 {
            let inflated = inflate(message, limit)?;
            budget.merge(ingest.reserve_bytes("grpc", inflated.len())?);
            out.put_u8(0);
            // `inflate` keeps a message within `limit`, a `usize` that
            // tonic's frame length (u32) bounds in practice; a longer one
            // cannot be framed and is too large for any limit.
            let framed = u32::try_from(inflated.len()).map_err(|_| too_large(limit))?;
            out.put_u32(framed);
            out.put_slice(&inflated);
        } else {
            out.put_slice(&rest[..FRAME_HEADER + len]);
        }
        rest = &rest[FRAME_HEADER + len..];
    }
    // Anything left is not a whole frame: tonic says what is wrong with it.
    out.put_slice(rest);
    let req = http::Request::from_parts(parts, http_body_util::Full::new(out.freeze()));
    Ok((req, budget))
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
            // tonic's decompression limit: count it as too large. (gzip,
            // the one encoding accepted, is inflated before tonic sees it,
            // by `inflate_messages`, which counts its own refusals.)
            ingest.refused("grpc", &IngestError::TooLarge(String::new()));
            return;
        }
        _ => return,
    };
    ingest.refused("grpc", &reason);
    headers.insert("grpc-status", http::HeaderValue::from(new as i32));
}
