//! The in-flight byte budget (`service.max_inflight_bytes`, design §4) and
//! what charges it. Memory a request holds is charged *before* it is held,
//! so the budget bounds what bodies, inflated bodies and queued items
//! really occupy, whatever a client claims or omits:
//!
//! - an HTTP body is read frame by frame into a [`ChargedBuf`] ([`read_body`]),
//!   each chunk charged before it is appended: a chunked body without
//!   `Content-Length` is charged for what it really holds (and still stops
//!   at `max_request_bytes`), a declared length is charged up front;
//! - a compressed body is inflated into a [`ChargedBuf`] as well
//!   ([`inflate_with`](super::inflate::inflate_with)), its output charged
//!   as it grows (and a zstd decoder's window before it is allocated);
//! - a gRPC request body is wrapped in a [`BudgetBody`], which follows the
//!   5-byte length prefix of each message and charges the message's length
//!   before tonic sees the prefix: tonic reserves a buffer of that length
//!   as soon as it has read it, long before the message has arrived; a
//!   begun message that gets no byte for [`MESSAGE_STALL`] ends the body;
//! - queued items are charged their [`HeldBytes`](crate::model::HeldBytes),
//!   bucket vectors included, until a shard has recorded them
//!   ([`Ingest::enqueue`](super::Ingest)).
//!
//! A buffer's charge is its capacity, not its length: that is what the
//! allocator holds. Not charged, and bounded otherwise (README,
//! "Backpressure and limits"): the growth of a body into decoded protobuf
//! or JSON structures (one request per worker thread at a time), HTTP/2
//! flow-control windows (hyper buffers at most 1 MiB per connection) and
//! HTTP/1 read buffers.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http_body_util::BodyExt as _;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::inflate::too_large;
use super::IngestError;
use crate::receivers::{backoff_secs, BUDGET_UNIT};

/// The process-wide in-flight byte budget, in [`BUDGET_UNIT`] permits.
/// Cloning shares it.
#[derive(Debug, Clone)]
pub struct Budget {
    permits: Arc<Semaphore>,
    /// Size of the whole budget, in permits.
    total: usize,
}

/// Permits covering `bytes`.
fn units(bytes: usize) -> usize {
    bytes.div_ceil(BUDGET_UNIT)
}

impl Budget {
    /// A budget of `bytes` (rounded up to whole KiB, at least one).
    pub fn new(bytes: u64) -> Budget {
        let total =
            units(usize::try_from(bytes).unwrap_or(usize::MAX)).clamp(1, Semaphore::MAX_PERMITS);
        Budget {
            permits: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// An empty charge on this budget for a request of `protocol` (the
    /// label its refusals are counted with).
    pub fn charge(&self, protocol: &'static str) -> Charge {
        Charge {
            budget: self.clone(),
            protocol,
            permit: None,
        }
    }

    /// A charge of `bytes`, or the retryable refusal when the budget is
    /// spent (counted).
    pub fn reserve(&self, protocol: &'static str, bytes: usize) -> Result<Charge, IngestError> {
        let mut charge = self.charge(protocol);
        charge.grow_to(bytes)?;
        Ok(charge)
    }

    /// `bytes` of the budget if they are free, refusing nothing and
    /// counting nothing: for best-effort work that is simply left out
    /// when memory is short.
    pub fn try_take(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let units = u32::try_from(units(bytes)).ok()?;
        self.permits.clone().try_acquire_many_owned(units).ok()
    }

    /// Bytes of the budget not charged to anything now.
    pub fn available_bytes(&self) -> usize {
        self.permits.available_permits() * BUDGET_UNIT
    }

    /// The whole budget, in bytes.
    pub fn total_bytes(&self) -> usize {
        self.total * BUDGET_UNIT
    }

    /// The refusal of a request that found the budget spent, counted:
    /// retry after 1–5 s, more when more of the budget is taken.
    fn refusal(&self, protocol: &'static str) -> IngestError {
        let used = 1.0 - self.permits.available_permits() as f64 / self.total.max(1) as f64;
        let err = IngestError::Memory(backoff_secs(used));
        super::count_refused(protocol, &err);
        err
    }
}

/// A request's share of the [`Budget`], grown as what it holds grows and
/// given back when dropped.
#[derive(Debug)]
pub struct Charge {
    budget: Budget,
    protocol: &'static str,
    permit: Option<OwnedSemaphorePermit>,
}

impl Charge {
    /// Bytes charged (whole KiB).
    pub fn bytes(&self) -> usize {
        self.units() * BUDGET_UNIT
    }

    fn units(&self) -> usize {
        self.permit
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits)
    }

    /// Makes the charge cover `bytes` in all, taking what is missing from
    /// the budget; when the budget cannot give it, the request is refused
    /// (retryable, counted) and the charge stays as it was.
    pub fn grow_to(&mut self, bytes: usize) -> Result<(), IngestError> {
        let missing = units(bytes).saturating_sub(self.units());
        if missing == 0 {
            return Ok(());
        }
        // More permits than a semaphore can count could never be granted.
        let more = u32::try_from(missing)
            .ok()
            .and_then(|n| self.budget.permits.clone().try_acquire_many_owned(n).ok());
        match (more, &mut self.permit) {
            (None, _) => Err(self.budget.refusal(self.protocol)),
            (Some(more), Some(held)) => {
                held.merge(more);
                Ok(())
            }
            (Some(more), None) => {
                self.permit = Some(more);
                Ok(())
            }
        }
    }

    /// Gives back what the charge holds beyond `bytes` (memory that was
    /// freed).
    pub fn shrink_to(&mut self, bytes: usize) {
        let keep = units(bytes);
        if let Some(held) = &mut self.permit {
            let extra = held.num_permits().saturating_sub(keep);
            if extra > 0 {
                drop(held.split(extra));
            }
        }
    }

    /// The permit, for a holder that outlives the request (a queued batch).
    pub fn into_permit(self) -> Option<OwnedSemaphorePermit> {
        self.permit
    }
}

/// A byte buffer whose every allocation is charged before it is made, and
/// that never grows past `limit` ([`too_large`] beyond).
#[derive(Debug)]
pub struct ChargedBuf<'c> {
    buf: Vec<u8>,
    charge: &'c mut Charge,
    /// What the charge covered before this buffer (other memory of the
    /// same request, such as the compressed body being inflated).
    base: usize,
    limit: usize,
}

impl<'c> ChargedBuf<'c> {
    /// An empty buffer charging `charge`, with `capacity` (at most `limit`)
    /// allocated and charged up front.
    pub fn with_capacity(
        charge: &'c mut Charge,
        limit: usize,
        capacity: usize,
    ) -> Result<ChargedBuf<'c>, IngestError> {
        let base = charge.bytes();
        let mut buf = ChargedBuf {
            buf: Vec::new(),
            charge,
            base,
            limit,
        };
        buf.reserve_to(capacity.min(limit))?;
        Ok(buf)
    }

    /// Grows the allocation to `capacity`, charging it first.
    fn reserve_to(&mut self, capacity: usize) -> Result<(), IngestError> {
        if capacity <= self.buf.capacity() {
            return Ok(());
        }
        self.charge.grow_to(self.base.saturating_add(capacity))?;
        self.buf.reserve_exact(capacity - self.buf.len());
        Ok(())
    }

    /// Appends `data`: too large past the limit, refused when the budget
    /// cannot cover the growth. Capacity doubles (up to the limit), so
    /// appending stays linear.
    pub fn extend(&mut self, data: &[u8]) -> Result<(), IngestError> {
        let len = self.buf.len().saturating_add(data.len());
        if len > self.limit {
            return Err(too_large(self.limit));
        }
        if len > self.buf.capacity() {
            let doubled = self.buf.capacity().saturating_mul(2).min(self.limit);
            self.reserve_to(len.max(doubled))?;
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The bytes, trimmed to their length (in place: shrinking a block
    /// does not copy it), the charge trimmed with them.
    pub fn into_bytes(mut self) -> Bytes {
        self.buf.shrink_to_fit();
        self.charge
            .shrink_to(self.base.saturating_add(self.buf.capacity()));
        Bytes::from(self.buf)
    }
}

/// Reads a request body whole, charging each chunk before it is kept:
/// `declared` (a `Content-Length`) is charged up front and refused at once
/// when it exceeds `limit`; a body without one is charged as it arrives.
/// Either way the body stops at `limit` ([`too_large`]).
pub async fn read_body<B>(
    body: B,
    declared: Option<usize>,
    limit: usize,
    charge: &mut Charge,
) -> Result<Bytes, IngestError>
where
    B: HttpBody,
    B::Error: Into<tonic::codegen::StdError>,
{
    if declared.is_some_and(|d| d > limit) {
        return Err(too_large(limit));
    }
    let mut buf = ChargedBuf::with_capacity(charge, limit, declared.unwrap_or(0))?;
    let mut body = std::pin::pin!(body);
    // The same pace as a gRPC message: no byte for MESSAGE_STALL, or less
    // than MIN_MESSAGE_RATE after it, ends the body, so a trickling client
    // holds neither its charge nor its connection for long.
    let started = tokio::time::Instant::now();
    loop {
        let received = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        let paced = started
            + MESSAGE_STALL
            + std::time::Duration::from_millis(received.saturating_mul(1000) / MIN_MESSAGE_RATE);
        let deadline = paced.min(tokio::time::Instant::now() + MESSAGE_STALL);
        let Ok(frame) = tokio::time::timeout_at(deadline, body.frame()).await else {
            let refusal = IngestError::Malformed(format!(
                "request body too slow: it must arrive within {}s plus 1s per {} KiB",
                MESSAGE_STALL.as_secs(),
                MIN_MESSAGE_RATE / 1024
            ));
            return Err(refusal);
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| {
            IngestError::Malformed(format!("reading the request body: {}", e.into()))
        })?;
        if let Ok(mut data) = frame.into_data() {
            while data.has_remaining() {
                let chunk = data.chunk();
                let n = chunk.len();
                buf.extend(chunk)?;
                data.advance(n);
            }
        }
    }
    Ok(buf.into_bytes())
}

/// A charge held by several owners at once: the gRPC body that grows it
/// and the handler that keeps it until the message has been converted.
pub type SharedCharge = Arc<Mutex<Charge>>;

/// The [`SharedCharge`] of a gRPC request, in the request's extensions so
/// that the handler can hold it past the body.
#[derive(Debug, Clone)]
pub struct HeldCharge(pub SharedCharge);

/// A gRPC message's frame header: the compressed flag and a 4-byte length.
pub const FRAME_HEADER: usize = 5;

/// Follows the gRPC message framing (a [`FRAME_HEADER`], then that many
/// bytes) across the chunks of a body, and adds up what the messages whose
/// header has passed may occupy.
#[derive(Debug, Default, Clone)]
pub struct FrameScanner {
    header: [u8; FRAME_HEADER],
    /// Bytes of the current header seen so far.
    have: usize,
    /// Bytes of the current message still to come.
    remaining: usize,
    /// What every message seen so far may occupy: its header and its
    /// length, counted up to `limit` each (a longer one is refused before
    /// anything is buffered for it).
    declared: usize,
    /// Messages whose header has passed.
    messages: usize,
    /// Length of the last message whose header has passed (as claimed).
    last_len: usize,
}

impl FrameScanner {
    /// Reads `data`, the next bytes of the body; returns the running total
    /// of [`FrameScanner::declared`].
    pub fn feed(&mut self, mut data: &[u8], limit: usize) -> usize {
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = self.remaining.min(data.len());
                self.remaining -= n;
                data = &data[n..];
                continue;
            }
            let n = (FRAME_HEADER - self.have).min(data.len());
            self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == FRAME_HEADER {
                self.have = 0;
                let [_, a, b, c, d] = self.header;
                let len = u32::from_be_bytes([a, b, c, d]) as usize;
                self.remaining = len;
                self.declared = self.declared.saturating_add(FRAME_HEADER + len.min(limit));
                self.messages += 1;
                self.last_len = len.min(limit);
            }
        }
        self.declared
    }

    /// A message has begun (part of its header or body arrived) and is not
    /// complete.
    pub fn in_message(&self) -> bool {
        self.have > 0 || self.remaining > 0
    }

    /// Messages whose header has passed.
    pub fn messages(&self) -> usize {
        self.messages
    }
}

/// A body refused by the budget. Carries the refusal for our own callers
/// and, as its source, the gRPC status tonic finds in the error chain and
/// answers with (tonic passes a body's `Status` through).
#[derive(Debug, thiserror::Error)]
#[error("{refusal}")]
pub struct Refused {
    /// Why.
    pub refusal: IngestError,
    #[source]
    status: tonic::Status,
}

/// A gRPC request body that charges the budget for each message when its
/// length prefix arrives, before the bytes are passed on (to tonic, which
/// reserves the whole length at once). A message the budget cannot cover
/// ends the body with a [`Refused`] error: `UNAVAILABLE` with RetryInfo.
/// The charge is shared ([`HeldCharge`]) and given back when its last
/// holder is dropped.
pub struct BudgetBody<B> {
    inner: Pin<Box<B>>,
    charge: SharedCharge,
    limit: usize,
    frames: FrameScanner,
    /// Set once the body has been refused: nothing more is read.
    refused: bool,
    /// Runs while a begun message waits for its next bytes.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
    /// When the message being received must be complete.
    deadline: Option<tokio::time::Instant>,
}

/// How long a begun gRPC message may go without a byte before its body is
/// ended (`DEADLINE_EXCEEDED`): a stalled client must neither hold the
/// budget its message claimed nor keep a graceful stop (30 s by default)
/// from checkpointing.
pub const MESSAGE_STALL: std::time::Duration = std::time::Duration::from_secs(10);

/// The slowest a gRPC message may arrive, in bytes per second, after
/// [`MESSAGE_STALL`] of grace: a message of `n` bytes must be complete
/// within `MESSAGE_STALL + n / MIN_MESSAGE_RATE`. Its length prefix
/// charges the budget for all `n` bytes at once, so without this a client
/// sending one byte every few seconds would hold that share for as long
/// as it liked. 64 KiB/s is far below any link an exporter uses (a 4 MiB
/// message gets 74 s).
pub const MIN_MESSAGE_RATE: u64 = 64 * 1024;

/// When a message of `len` bytes that begins at `now` must be complete.
fn message_deadline(now: tokio::time::Instant, len: usize) -> tokio::time::Instant {
    let len = u64::try_from(len).unwrap_or(u64::MAX);
    now + MESSAGE_STALL
        + std::time::Duration::from_millis(len.saturating_mul(1000) / MIN_MESSAGE_RATE)
}

impl<B> std::fmt::Debug for BudgetBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetBody")
            .field("charge", &self.charge)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

impl<B> BudgetBody<B> {
    /// Wraps `inner`, charging `charge`; a message is counted up to `limit`
    /// bytes (tonic refuses a longer one before buffering it).
    pub fn new(inner: B, charge: SharedCharge, limit: usize) -> BudgetBody<B> {
        BudgetBody {
            inner: Box::pin(inner),
            charge,
            limit,
            frames: FrameScanner::default(),
            refused: false,
            stall: None,
            deadline: None,
        }
    }

    /// Follows the framing of `data` and charges what the messages seen so
    /// far may occupy, or refuses: past the budget, a second message (an
    /// Export call is unary: tonic would read the second and drop it while
    /// answering OK), or a message arriving too slowly.
    fn charge_for(&mut self, data: &[u8]) -> Result<(), Refused> {
        let before = self.frames.messages();
        let declared = self.frames.feed(data, self.limit);
        let now = tokio::time::Instant::now();
        if self.frames.messages() > 1 {
            return Err(refused(IngestError::Malformed(
                "an Export call carries one message; this one sent a second".into(),
            )));
        }
        if self.frames.messages() > before {
            self.deadline = Some(message_deadline(now, self.frames.last_len));
        }
        if !self.frames.in_message() {
            self.deadline = None;
        } else if self.deadline.is_some_and(|d| now >= d) {
            return Err(too_slow());
        }
        let grown = match self.charge.lock() {
            Ok(mut charge) => charge.grow_to(declared),
            // A holder panicked; the permits are still counted correctly.
            Err(poisoned) => poisoned.into_inner().grow_to(declared),
        };
        grown.map_err(|refusal| Refused {
            status: super::grpc::status_of(&refusal),
            refusal,
        })
    }
}

/// A refusal of the body itself (counted; the budget counts its own).
fn refused(refusal: IngestError) -> Refused {
    super::count_refused("grpc", &refusal);
    Refused {
        status: super::grpc::status_of(&refusal),
        refusal,
    }
}

/// The refusal of a message that arrives too slowly (stalled, or under
/// [`MIN_MESSAGE_RATE`]): `DEADLINE_EXCEEDED`.
fn too_slow() -> Refused {
    let refusal = IngestError::Malformed(format!(
        "gRPC message too slow: it must arrive within {}s plus 1s per {} KiB",
        MESSAGE_STALL.as_secs(),
        MIN_MESSAGE_RATE / 1024
    ));
    super::count_refused("grpc", &refusal);
    Refused {
        status: tonic::Status::deadline_exceeded(refusal.to_string()),
        refusal,
    }
}

impl<B> HttpBody for BudgetBody<B>
where
    B: HttpBody,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Data = Bytes;
    type Error = tonic::codegen::StdError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.refused {
            return Poll::Ready(None);
        }
        let polled = self.inner.as_mut().poll_frame(cx);
        if polled.is_pending() {
            if !self.frames.in_message() {
                // Between messages the connection's own timeouts apply.
                self.stall = None;
                return Poll::Pending;
            }
            let deadline = self.deadline;
            let stall = self.stall.get_or_insert_with(|| {
                let quiet = tokio::time::Instant::now() + MESSAGE_STALL;
                Box::pin(tokio::time::sleep_until(
                    deadline.map_or(quiet, |d| d.min(quiet)),
                ))
            });
            ready!(stall.as_mut().poll(cx));
            self.refused = true;
            return Poll::Ready(Some(Err(Box::new(too_slow()))));
        }
        self.stall = None;
        let frame = match ready!(polled) {
            None => return Poll::Ready(None),
            Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
            Some(Ok(frame)) => frame,
        };
        let frame = frame.map_data(|mut d| d.copy_to_bytes(d.remaining()));
        if let Some(data) = frame.data_ref() {
            if let Err(refused) = self.charge_for(data) {
                self.refused = true;
                return Poll::Ready(Some(Err(Box::new(refused))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.refused || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use futures_util::StreamExt as _;
    use http_body_util::{BodyExt as _, Full, StreamBody};

    use super::*;

    const KIB: usize = 1024;

    fn stream_body(chunks: Vec<Vec<u8>>) -> impl HttpBody<Data = Bytes, Error = std::io::Error> {
        StreamBody::new(futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::io::Error>(Frame::data(Bytes::from(c)))),
        ))
    }

    fn frame(len: usize, compressed: bool) -> Vec<u8> {
        let mut f = vec![u8::from(compressed)];
        f.extend((len as u32).to_be_bytes());
        f.extend(std::iter::repeat_n(7u8, len));
        f
    }

    #[test]
    fn a_charge_grows_in_whole_units_and_is_given_back() {
        let budget = Budget::new(10 * KIB as u64);
        let mut charge = budget.charge("http");
        assert_eq!(charge.bytes(), 0);
        charge.grow_to(1).expect("room");
        assert_eq!((charge.bytes(), budget.available_bytes()), (KIB, 9 * KIB));
        charge.grow_to(3 * KIB + 1).expect("room");
        assert_eq!(charge.bytes(), 4 * KIB);
        // Growing to less takes nothing.
        charge.grow_to(2 * KIB).expect("room");
        assert_eq!(charge.bytes(), 4 * KIB);
        // Past the budget: refused, retryable, the charge unchanged.
        assert!(matches!(
            charge.grow_to(11 * KIB),
            Err(IngestError::Memory(_))
        ));
        assert_eq!(charge.bytes(), 4 * KIB);
        charge.shrink_to(KIB);
        assert_eq!(budget.available_bytes(), 9 * KIB);
        let other = budget.reserve("grpc", 9 * KIB).expect("the rest");
        assert!(budget.reserve("grpc", 1).is_err());
        assert!(budget.try_take(1).is_none());
        drop((charge, other));
        assert_eq!(budget.available_bytes(), budget.total_bytes());
        // A charge beyond what a semaphore counts is refused, not a panic.
        assert!(budget.charge("http").grow_to(usize::MAX).is_err());
    }

    #[test]
    fn a_charged_buffer_charges_its_capacity_before_growing() {
        let budget = Budget::new(64 * KIB as u64);
        let mut charge = budget.reserve("http", 3 * KIB).expect("room");
        let mut buf = ChargedBuf::with_capacity(&mut charge, 40 * KIB, 0).expect("empty");
        for _ in 0..10 {
            buf.extend(&[1u8; 3000]).expect("room");
        }
        assert_eq!(buf.len(), 30_000);
        // The limit holds whatever the budget.
        assert!(matches!(
            buf.extend(&[1u8; 11 * KIB]),
            Err(IngestError::TooLarge(_))
        ));
        let bytes = buf.into_bytes();
        assert_eq!(bytes.len(), 30_000);
        // The base (3 KiB) and the trimmed buffer.
        assert_eq!(charge.bytes(), 3 * KIB + 30 * KIB);
        drop(charge);
        // Out of budget while growing: refused, nothing appended.
        let mut small = budget.reserve("http", 60 * KIB).expect("room");
        let mut buf = ChargedBuf::with_capacity(&mut small, 1 << 20, 0).expect("empty");
        buf.extend(&[0u8; 2 * KIB]).expect("room");
        assert!(matches!(
            buf.extend(&[0u8; 4 * KIB]),
            Err(IngestError::Memory(_))
        ));
        assert_eq!(buf.len(), 2 * KIB);
    }

    #[tokio::test]
    async fn a_chunked_body_is_charged_for_what_it_holds() {
        let budget = Budget::new(256 * KIB as u64);
        // No Content-Length: 100 KiB in 1 KiB chunks.
        let chunks = vec![vec![5u8; KIB]; 100];
        let mut charge = budget.charge("http");
        let body = read_body(stream_body(chunks.clone()), None, 200 * KIB, &mut charge)
            .await
            .expect("read");
        assert_eq!(body.len(), 100 * KIB);
        assert!(charge.bytes() >= body.len(), "{}", charge.bytes());
        drop(charge);
        // The limit holds without a declared length…
        let mut charge = budget.charge("http");
        let err = read_body(stream_body(chunks.clone()), None, 50 * KIB, &mut charge).await;
        assert!(matches!(err, Err(IngestError::TooLarge(_))), "{err:?}");
        // …the budget too: a body bigger than what is left is refused while
        // it is read, never held whole.
        let _taken = budget.reserve("http", 200 * KIB).expect("room");
        let mut charge = budget.charge("http");
        let err = read_body(stream_body(chunks), None, 200 * KIB, &mut charge).await;
        assert!(matches!(err, Err(IngestError::Memory(_))), "{err:?}");
        assert!(charge.bytes() <= 56 * KIB);
        // A declared length beyond the limit is refused before reading.
        let mut charge = budget.charge("http");
        let err = read_body(
            Full::new(Bytes::new()),
            Some(300 * KIB),
            200 * KIB,
            &mut charge,
        )
        .await;
        assert!(matches!(err, Err(IngestError::TooLarge(_))), "{err:?}");
        assert_eq!(charge.bytes(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_http_body_is_ended_at_the_minimum_rate() {
        let budget = Budget::new(4096 * KIB as u64);
        // A byte every 5 s: never 10 s of silence, but far under the rate.
        let trickle = futures_util::stream::repeat(vec![7u8])
            .then(|b| async move {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                Ok::<_, std::io::Error>(Frame::data(Bytes::from(b)))
            })
            .take(1000);
        let started = tokio::time::Instant::now();
        let mut charge = budget.charge("http");
        let err = read_body(StreamBody::new(trickle), None, 64 * KIB, &mut charge).await;
        assert!(
            matches!(&err, Err(IngestError::Malformed(m)) if m.contains("too slow")),
            "{err:?}"
        );
        assert!(started.elapsed() <= std::time::Duration::from_secs(11));
        // 64 KiB a second for 20 s: on pace, read whole.
        let paced =
            futures_util::stream::iter(vec![vec![1u8; 32 * KIB]; 40]).then(|b| async move {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                Ok::<_, std::io::Error>(Frame::data(Bytes::from(b)))
            });
        let mut charge = budget.charge("http");
        let body = read_body(StreamBody::new(paced), None, 2048 * KIB, &mut charge).await;
        assert_eq!(body.map(|b| b.len()).ok(), Some(1280 * KIB));
    }

    #[test]
    fn the_frame_scanner_reads_headers_across_chunks() {
        let mut body = frame(3000, false);
        body.extend(frame(0, false));
        body.extend(frame(10, true));
        // Every split of the body into two chunks gives the same total.
        let want = 3 * FRAME_HEADER + 3000 + 10;
        for at in 0..body.len() {
            let mut s = FrameScanner::default();
            s.feed(&body[..at], 1 << 20);
            assert_eq!(s.feed(&body[at..], 1 << 20), want, "split at {at}");
        }
        // Byte by byte: the first message is declared as soon as its
        // header is complete.
        let mut s = FrameScanner::default();
        let seen: Vec<usize> = body[..6].iter().map(|b| s.feed(&[*b], 1 << 20)).collect();
        assert_eq!(seen, [0, 0, 0, 0, FRAME_HEADER + 3000, FRAME_HEADER + 3000]);
        // A length prefix claiming 4 GiB counts up to the limit only.
        let mut s = FrameScanner::default();
        assert_eq!(
            s.feed(&[0, 0xff, 0xff, 0xff, 0xff], 1000),
            FRAME_HEADER + 1000
        );
    }

    fn shared(budget: &Budget) -> SharedCharge {
        Arc::new(Mutex::new(budget.charge("grpc")))
    }

    #[tokio::test]
    async fn a_grpc_body_is_charged_when_a_length_prefix_arrives() {
        let budget = Budget::new(64 * KIB as u64);
        let charge = shared(&budget);
        // The header alone (no message bytes yet) charges the message.
        let header = frame(40 * KIB, false)[..FRAME_HEADER].to_vec();
        let mut body = BudgetBody::new(
            stream_body(vec![header, vec![7; 40 * KIB]]),
            charge.clone(),
            1 << 20,
        );
        let first = body.frame().await.expect("a frame").expect("charged");
        assert_eq!(first.into_data().ok().map(|d| d.len()), Some(FRAME_HEADER));
        assert_eq!(budget.available_bytes(), 64 * KIB - 41 * KIB);
        let rest = body.collect().await.expect("charged").to_bytes();
        assert_eq!(rest.len(), 40 * KIB);
        // The charge lives while any holder does.
        assert_eq!(budget.available_bytes(), 23 * KIB);
        drop(charge);
        assert_eq!(budget.available_bytes(), 64 * KIB);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_grpc_message_ends_its_body_and_gives_the_budget_back() {
        let budget = Budget::new(64 * KIB as u64);
        let charge = shared(&budget);
        // A prefix claiming 40 KiB, six bytes, then nothing for ever.
        let begun = frame(40 * KIB, false)[..FRAME_HEADER + 6].to_vec();
        let stalled = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(Frame::data(
            Bytes::from(begun),
        ))])
        .chain(futures_util::stream::pending::<
            Result<Frame<Bytes>, std::io::Error>,
        >());
        let mut body = BudgetBody::new(StreamBody::new(stalled), charge.clone(), 1 << 20);
        body.frame().await.expect("a frame").expect("charged");
        assert_eq!(budget.available_bytes(), 64 * KIB - 41 * KIB);
        let started = tokio::time::Instant::now();
        let err = body.frame().await.expect("an end").expect_err("stalled");
        assert_eq!(started.elapsed(), MESSAGE_STALL);
        assert_eq!(
            tonic::Status::from_error(err).code(),
            tonic::Code::DeadlineExceeded
        );
        assert!(body.frame().await.is_none());
        drop(body);
        drop(charge);
        assert_eq!(budget.available_bytes(), 64 * KIB);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_grpc_message_is_ended_at_the_minimum_rate() {
        let budget = Budget::new(4096 * KIB as u64);
        let charge = shared(&budget);
        // A 1 MiB message: 10 s of grace plus 16 s at 64 KiB/s. One byte
        // every 5 s never stalls, but is far slower than that.
        let header = frame(1024 * KIB, false)[..FRAME_HEADER].to_vec();
        let trickle = futures_util::stream::iter(vec![header])
            .chain(
                futures_util::stream::repeat(vec![7u8]).then(|b| async move {
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                    b
                }),
            )
            .map(|b| Ok::<_, std::io::Error>(Frame::data(Bytes::from(b))));
        let mut body = BudgetBody::new(StreamBody::new(trickle), charge.clone(), 4 << 20);
        let started = tokio::time::Instant::now();
        let err = loop {
            match body.frame().await.expect("a frame") {
                Ok(_) => continue,
                Err(err) => break err,
            }
        };
        let took = started.elapsed();
        assert!(
            took >= std::time::Duration::from_secs(26)
                && took <= std::time::Duration::from_secs(31),
            "{took:?}"
        );
        assert_eq!(
            tonic::Status::from_error(err).code(),
            tonic::Code::DeadlineExceeded
        );
        drop(body);
        drop(charge);
        assert_eq!(budget.available_bytes(), budget.total_bytes());
        // The same message at the rate arrives whole.
        let mut whole = frame(1024 * KIB, false);
        let chunks: Vec<Vec<u8>> = whole.chunks_mut(64 * KIB).map(|c| c.to_vec()).collect();
        let paced = futures_util::stream::iter(chunks).then(|b| async move {
            tokio::time::sleep(std::time::Duration::from_millis(900)).await;
            Ok::<_, std::io::Error>(Frame::data(Bytes::from(b)))
        });
        let body = BudgetBody::new(StreamBody::new(paced), shared(&budget), 4 << 20);
        let got = body.collect().await.expect("whole").to_bytes();
        assert_eq!(got.len(), FRAME_HEADER + 1024 * KIB);
    }

    #[tokio::test]
    async fn a_second_message_in_an_export_call_is_refused() {
        let budget = Budget::new(64 * KIB as u64);
        let mut two = frame(100, false);
        two.extend(frame(100, false));
        // In one chunk or two, the call is refused, never half-read.
        for chunks in [
            vec![two.clone()],
            vec![two[..105].to_vec(), two[105..].to_vec()],
        ] {
            let body = BudgetBody::new(stream_body(chunks), shared(&budget), 1 << 20);
            let err = body.collect().await.expect_err("refused");
            let status = tonic::Status::from_error(err);
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert!(status.message().contains("one message"), "{status:?}");
        }
        assert_eq!(budget.available_bytes(), budget.total_bytes());
    }

    #[tokio::test]
    async fn a_grpc_message_beyond_the_budget_is_refused_before_it_is_buffered() {
        let budget = Budget::new(64 * KIB as u64);
        let held = budget.reserve("grpc", 40 * KIB).expect("room");
        let body = frame(30 * KIB, false);
        let mut wrapped = BudgetBody::new(stream_body(vec![body]), shared(&budget), 1 << 20);
        let err = wrapped
            .frame()
            .await
            .expect("a frame")
            .expect_err("refused");
        let refused = err.downcast_ref::<Refused>().expect("a refusal");
        assert!(matches!(refused.refusal, IngestError::Memory(_)));
        // tonic answers with the status in the error chain: UNAVAILABLE
        // with RetryInfo.
        let status = tonic::Status::from_error(err);
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(!status.details().is_empty());
        assert!(
            wrapped.frame().await.is_none(),
            "nothing read after a refusal"
        );
        drop(wrapped);
        assert_eq!(budget.available_bytes(), 24 * KIB);
        drop(held);
        // A huge length prefix is charged up to the limit only (tonic then
        // refuses it as too large without buffering it).
        let charge = shared(&budget);
        let mut wrapped = BudgetBody::new(
            stream_body(vec![vec![0, 0xff, 0xff, 0xff, 0xff]]),
            charge.clone(),
            16 * KIB,
        );
        wrapped.frame().await.expect("a frame").expect("charged");
        assert_eq!(charge.lock().expect("lock").bytes(), 17 * KIB);
    }

    #[test]
    fn gzip_output_is_charged_as_it_grows() {
        let budget = Budget::new(256 * KIB as u64);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&[0u8; 100 * KIB]).expect("in memory");
        let raw = gz.finish().expect("in memory");
        let mut charge = budget.charge("http");
        let out = super::super::inflate::inflate_with(
            super::super::inflate::Compression::Gzip,
            &raw,
            1 << 20,
            &mut charge,
        )
        .expect("fits");
        assert_eq!(out.len(), 100 * KIB);
        assert_eq!(charge.bytes(), 100 * KIB);
        drop(charge);
        // With 64 KiB left, the same body is refused while it inflates.
        let _taken = budget.reserve("http", 192 * KIB).expect("room");
        let mut charge = budget.charge("http");
        let err = super::super::inflate::inflate_with(
            super::super::inflate::Compression::Gzip,
            &raw,
            1 << 20,
            &mut charge,
        );
        assert!(matches!(err, Err(IngestError::Memory(_))), "{err:?}");
        assert!(charge.bytes() <= 64 * KIB);
    }
}
