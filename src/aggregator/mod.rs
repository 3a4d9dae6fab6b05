//! The sharded windowed aggregator: a series (contract + subject) always maps
//! to the same shard by a stable hash; each shard is one task that owns its
//! windows outright, so the hot path takes no lock.
//!
//! ```text
//! receiver ──try_reserve on every target shard──> shard 0..N (bounded mpsc)
//!                                                   │ record / record_point
//!                                                   │ (cumulative → delta: streams)
//!                                                   │ close_until(now)
//!                                                   ▼
//!                                   run engine (SeriesSeen, Closed, Watermark)
//! ```

pub mod carry;
pub(crate) mod shard;
pub mod state;
pub(crate) mod streams;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::clock::SharedClock;
use crate::config::WindowSpec;
use crate::model::{EngineInput, OpenWindows};
use crate::model::{HeldBytes, PointBatch, PointSample, Rejected, Sample, SeriesKey};

/// A batch for one shard, with its share of the global in-flight byte
/// budget: released when the shard has recorded the batch, so queued data
/// counts against `service.max_inflight_bytes` until it is aggregated.
#[derive(Debug)]
pub struct ShardBatch {
    /// What the batch carries.
    pub items: ShardItems,
    /// Budget held while the batch is queued.
    pub budget: Option<tokio::sync::OwnedSemaphorePermit>,
    /// When the receiver accepted it (the pipeline's clock): the shard
    /// closes no window whose deadline is after the batches it has not
    /// taken in yet (see [`shard::Shard`]).
    pub accepted_at: crate::model::UnixNanos,
}

/// What one request sends one shard: the samples of spans, or metric points.
///
/// A request carries one signal, so a batch is one or the other; spans keep
/// their plain vector and per-sample cost.
#[derive(Debug, Clone, PartialEq)]
pub enum ShardItems {
    /// One sample per request (spans).
    Samples(Vec<Sample>),
    /// Pre-aggregated metric points, their bucket counts in one buffer.
    Points(PointBatch),
    /// Items meant for these series that were rejected at the edge: the
    /// shard tallies them for the series' runs (see
    /// [`EngineInput::Rejected`]).
    Rejections(Vec<(SeriesKey, Rejected)>),
}

impl From<Vec<Sample>> for ShardItems {
    fn from(v: Vec<Sample>) -> Self {
        ShardItems::Samples(v)
    }
}

impl From<PointBatch> for ShardItems {
    fn from(v: PointBatch) -> Self {
        ShardItems::Points(v)
    }
}

impl From<Vec<PointSample>> for ShardItems {
    fn from(v: Vec<PointSample>) -> Self {
        ShardItems::Points(v.into())
    }
}

/// What a receiver gathers for one shard before sending it: samples, or a
/// [`PointBatch`].
pub trait Items: Default + HeldBytes + Into<ShardItems> {
    /// Samples or points in it.
    fn len(&self) -> usize;

    /// Nothing to send.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Items for Vec<Sample> {
    fn len(&self) -> usize {
        <[Sample]>::len(self)
    }
}

impl Items for PointBatch {
    fn len(&self) -> usize {
        PointBatch::len(self)
    }
}

/// The sending side of a pipeline's shards: what receivers push into.
#[derive(Debug, Clone)]
pub struct Router {
    shards: Vec<mpsc::Sender<ShardBatch>>,
    gate: Arc<IngestGate>,
}

/// Whether a pipeline takes requests: closed, with the reason, while what
/// it aggregates cannot be stored (a cluster instance that cannot write its
/// partials to PostgreSQL), so clients retry rather than send data that a
/// crash would lose.
#[derive(Debug, Default)]
pub struct IngestGate {
    closed: AtomicBool,
    reason: Mutex<String>,
}

impl IngestGate {
    /// Refuse requests, saying `reason`.
    pub fn close(&self, reason: String) {
        if let Ok(mut r) = self.reason.lock() {
            *r = reason;
        }
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Take requests again.
    pub fn open(&self) {
        self.closed.store(false, Ordering::SeqCst);
    }

    /// Why requests are refused, when they are.
    pub fn refusal(&self) -> Option<String> {
        if !self.closed.load(Ordering::Relaxed) {
            return None;
        }
        Some(self.reason.lock().map(|r| r.clone()).unwrap_or_default())
    }
}

impl Router {
    /// A router over existing shard queues (tests and benches).
    pub fn from_senders(shards: Vec<mpsc::Sender<ShardBatch>>) -> Router {
        Router {
            shards,
            gate: Arc::default(),
        }
    }

    /// The pipeline's gate.
    pub fn gate(&self) -> &Arc<IngestGate> {
        &self.gate
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// The shard of a series.
    pub fn shard_of(&self, key: &SeriesKey) -> usize {
        key.shard(self.shards.len())
    }

    /// Shard senders, for reserving capacity before enqueueing.
    pub fn senders(&self) -> &[mpsc::Sender<ShardBatch>] {
        &self.shards
    }
}

/// How often a shard closes windows: a tenth of the window, between 10 ms
/// and 250 ms, so a verdict is announced well within a second of the
/// window's deadline (design goal: ≤ 1 s) whatever the window size.
pub fn tick_interval(window: &WindowSpec) -> Duration {
    (window.size / 10).clamp(Duration::from_millis(10), Duration::from_millis(250))
}

/// The bounds of each stream table of a pipeline with `window`: its
/// shards share `max_streams`.
pub fn stream_params(window: &WindowSpec) -> streams::StreamParams {
    streams::StreamParams {
        max_streams: window.max_streams.div_ceil(window.shards.max(1)).max(1),
        expiry: crate::model::nanos(window.stream_expiry),
    }
}

/// What a pipeline's shards are made of.
#[derive(Debug)]
pub struct Setup<'a> {
    /// Pipeline name (metric labels, logs).
    pub pipeline: &'a str,
    /// The pipeline's window settings.
    pub window: &'a WindowSpec,
    /// How often the open windows are sent for the checkpoint.
    pub checkpoint_interval: Duration,
    /// `restored[i]`: the checkpointed open windows of shard `i` (see
    /// [`SeriesKey::shard`]).
    pub restored: Vec<OpenWindows>,
    /// Each contract's `run_idle_timeout` (ns), by contract index.
    pub idle: std::sync::Arc<[u64]>,
    /// Cancelled when the pipeline stops: the shards close their queues
    /// (new requests are refused, retryably), record what is queued or
    /// about to be sent, and exit — without waiting for every receiver to
    /// let go, which a client holding an idle connection could delay for
    /// ever.
    pub drain: tokio_util::sync::CancellationToken,
    /// Where stopping shards leave their stream tables and starting ones
    /// take them back (a reload: see [`carry`]).
    pub carry: carry::Carry,
    /// What the pipeline's stream tables are keyed by.
    pub layout: carry::Layout,
}

/// Spawns the shards of a pipeline; they feed `output` until every
/// [`Router`] clone is dropped or `drain` is cancelled, then drain their
/// queues, send their open windows for the final checkpoint and exit.
pub fn spawn(
    setup: Setup<'_>,
    clock: SharedClock,
    output: mpsc::Sender<EngineInput>,
    tasks: &mut tokio::task::JoinSet<()>,
) -> Router {
    let Setup {
        pipeline,
        window,
        checkpoint_interval,
        mut restored,
        idle,
        drain,
        carry,
        layout,
    } = setup;
    let shards = window.shards.max(1);
    let streams = stream_params(window);
    let params = state::WindowParams {
        timing: window.timing(),
        // One budget of subjects for the whole pipeline.
        slots: state::SubjectSlots::new(window.max_series),
        idle,
        max_streams: streams.max_streams,
        stream_expiry: streams.expiry,
    };
    let mut senders = Vec::with_capacity(shards);
    let mut tables = carry.take(pipeline, &layout);
    for id in 0..shards {
        // Capacity from config: a full queue refuses whole requests upstream.
        let (tx, rx) = mpsc::channel(window.queue_size.max(1));
        senders.push(tx);
        let mut state = state::ShardState::new(params.clone());
        if let Some(open) = restored.get_mut(id) {
            for (series, windows) in open.drain() {
                state.restore(series, windows);
            }
        }
        if let Some(table) = tables.get_mut(id).and_then(Option::take) {
            state.resume_streams(table);
        }
        let shard = shard::Shard {
            id,
            pipeline: pipeline.to_string(),
            state,
            input: rx,
            output: output.clone(),
            clock: clock.clone(),
            tick: tick_interval(window),
            checkpoint_interval: checkpoint_interval.max(Duration::from_millis(10)),
            drain: drain.clone(),
            carry: carry.clone(),
            layout: layout.clone(),
        };
        tasks.spawn(shard.run());
    }
    Router::from_senders(senders)
}
