//! OTLP/gRPC (design §4) on tonic, with our own codec so that every error a
//! client can provoke maps to the code OTLP clients handle correctly:
//!
//! - the codec hands the handler raw bytes, and the handler decodes them, so
//!   an undecodable message is `INVALID_ARGUMENT` with prost's message (not
//!   tonic's default `INTERNAL`);
//! - an oversized frame is `RESOURCE_EXHAUSTED` (tonic says `OUT_OF_RANGE`,
//!   which OTLP clients retry forever);
//! - a compressed message (`grpc-encoding: gzip`, `zstd` or `deflate`) is
//!   inflated here, not by tonic, whose gzip decoder stops after the first
//!   member and silently drops the rest ([`inflate`](super::inflate)); one
//!   that inflates beyond the limit is stopped while inflating, as
//!   `RESOURCE_EXHAUSTED`; any other encoding is `UNIMPLEMENTED` with the
//!   accepted ones in `grpc-accept-encoding`, as the gRPC spec asks;
//! - a full queue or a spent in-flight budget is `UNAVAILABLE` with a
//!   `google.rpc.RetryInfo` detail; the budget is charged for each message
//!   when its length prefix arrives, before tonic buffers it
//!   ([`BudgetBody`](super::budget::BudgetBody)).

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use std::convert::Infallible;
use std::sync::Mutex;

use bytes::{Buf, BufMut as _, Bytes, BytesMut};
use http_body_util::StreamBody;
use hyper::body::Frame;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, BoxFuture, CompressionEncoding, Context, Poll, Service, StdError};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::budget::{read_body, BudgetBody, Charge, HeldCharge, SharedCharge, FRAME_HEADER};
use super::inflate::{inflate_with, too_large, Compression, ACCEPTED};
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
        IngestError::UnsupportedEncoding(m) => Status::unimplemented(m.clone()),
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
            // The message was charged to the in-flight budget as it
            // arrived (`BudgetBody`); holding the charge keeps it counted
            // until the message has been converted.
            let held = request.extensions().get::<HeldCharge>().cloned();
            let result = ingest.authorize(auth).and_then(|()| {
                let body = request.into_inner();
                // A request that did not come through `ExportService::call`
                // (none does today) is charged here, after the fact.
                let _late = if held.is_none() {
                    Some(ingest.reserve_bytes("grpc", body.len())?)
                } else {
                    None
                };
                K::ingest_protobuf(&ingest, "grpc", body)
            });
            drop(held);
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
            // One charge for the whole call, grown by the body as messages
            // arrive and held by the handler until they are converted.
            let charge: SharedCharge = Arc::new(Mutex::new(ingest.budget.charge("grpc")));
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(HeldCharge(charge.clone()));
            let limit = ingest.max_request_bytes;
            let encoding = parts.headers.get("grpc-encoding").map(|v| v.as_bytes());
            let compression = match Compression::from_header(encoding) {
                Ok(Some(compression)) => compression,
                Ok(None) => {
                    let body = BudgetBody::new(body, charge, limit);
                    return Ok(
                        unary::<K, _>(&ingest, http::Request::from_parts(parts, body)).await,
                    );
                }
                Err(err) => {
                    ingest.refused("grpc", &err);
                    let mut resp = status_of(&err).into_http();
                    resp.headers_mut().insert(
                        "grpc-accept-encoding",
                        http::HeaderValue::from_static(ACCEPTED),
                    );
                    return Ok(resp);
                }
            };
            match inflate_messages(body, &ingest, compression).await {
                // `_inflated` holds the compressed and inflated bytes
                // until the call ends; tonic's copy of the messages is
                // charged to `charge` as it reads them. Every message is
                // uncompressed now: tonic reads a call without encoding.
                Ok((messages, _inflated)) => {
                    parts.headers.remove("grpc-encoding");
                    let body = BudgetBody::new(messages, charge, limit);
                    Ok(unary::<K, _>(&ingest, http::Request::from_parts(parts, body)).await)
                }
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
    // Requests reach tonic inflated already (`ExportService::call`).
    let mut grpc = Grpc::new(RawCodec::<K::Response>::default())
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

/// The messages of a compressed request, inflated, as body frames for tonic.
type Inflated =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

/// Reads the body of a request with a `grpc-encoding` and inflates every
/// compressed message itself (every gzip member or zstd frame, within
/// `max_request_bytes`, see [`inflate`](super::inflate)), handing tonic the same
/// messages uncompressed, one body frame per header and message (no copy
/// into one buffer). The body read and the inflated messages are charged
/// as they grow, to the returned charge, held until the call ends. A body
/// whose framing is broken is handed over as it came, for tonic to refuse.
async fn inflate_messages<B>(
    body: B,
    ingest: &Ingest,
    compression: Compression,
) -> Result<(Inflated, Charge), IngestError>
where
    B: tonic::codegen::Body,
    B::Error: Into<StdError>,
{
    let limit = ingest.max_request_bytes;
    let mut charge = ingest.budget.charge("grpc");
    // A unary call is one message: its frame header and at most `limit`
    // bytes (tonic's own bound on a frame, compressed or not).
    let raw = read_body(body, None, limit.saturating_add(FRAME_HEADER), &mut charge)
        .await
        .map_err(|e| match e {
            IngestError::TooLarge(_) => too_large(limit),
            other => other,
        })?;
    let mut frames = Vec::new();
    let mut rest = raw.clone();
    while rest.len() >= FRAME_HEADER {
        let compressed = rest[0];
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        if rest.len() - FRAME_HEADER < len {
            break;
        }
        let header = rest.split_to(FRAME_HEADER);
        let message = rest.split_to(len);
        if compressed == 1 {
            let inflated = inflate_with(compression, &message, limit, &mut charge)?;
            // `inflate_with` keeps a message within `limit`, a `usize` that
            // tonic's frame length (u32) bounds in practice; a longer one
            // cannot be framed and is too large for any limit.
            let framed = u32::try_from(inflated.len()).map_err(|_| too_large(limit))?;
            let mut header = BytesMut::with_capacity(FRAME_HEADER);
            header.put_u8(0);
            header.put_u32(framed);
            frames.push(header.freeze());
            frames.push(inflated);
        } else {
            frames.push(header);
            frames.push(message);
        }
    }
    // Anything left is not a whole frame: tonic says what is wrong with it.
    if !rest.is_empty() {
        frames.push(rest);
    }
    let frames: Vec<Result<Frame<Bytes>, Infallible>> =
        frames.into_iter().map(|b| Ok(Frame::data(b))).collect();
    Ok((StreamBody::new(futures_util::stream::iter(frames)), charge))
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
            // tonic's message size limit: count it as too large.
            // (Compressed messages are inflated before tonic sees them, by
            // `inflate_messages`, which counts its own refusals.)
            ingest.refused("grpc", &IngestError::TooLarge(String::new()));
            return;
        }
        _ => return,
    };
    ingest.refused("grpc", &reason);
    headers.insert("grpc-status", http::HeaderValue::from(new as i32));
}
