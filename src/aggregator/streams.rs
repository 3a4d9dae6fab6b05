//! Cumulative → delta for metric streams (design §3): each stream's last
//! cumulative point is kept, and the next point of the stream yields the
//! difference.
//!
//! # Why the table lives in the shard
//!
//! A stream (resource + scope + metric + attributes) belongs to exactly one
//! series, and a series always maps to the same shard, so the shard that owns
//! the series can own its streams too. That gives three properties for free:
//! - **no lock**: like the windows, the table is touched by one task only;
//! - **atomic refusal**: the table only sees points of requests that were
//!   enqueued whole. A table in the receiver would have to stage its updates
//!   until every shard was reserved, or a refused-then-retried request would
//!   find its own values already subtracted and count nothing;
//! - **bounded like the series**: each shard holds its share of
//!   `max_streams`, and streams not seen for `stream_expiry` are forgotten.
//!   What they remember is bounded too: the bucket counts (and explicit
//!   bounds) of all its streams together stay within
//!   [`REMEMBERED_BUCKETS_PER_STREAM`] times its share of `max_streams`.
//!   A point whose stream cannot be remembered within that is not counted
//!   ([`Delta::Overflow`], `verdict_metric_streams_overflow_total{reason="buckets"}`);
//!   a known stream then keeps its previous point, so its next point that
//!   fits counts the requests of both.
//!
//! Rules: a stream is keyed by its identity; its start time tells runs of
//! the same identity apart. A point with a new start time, or whose count
//! dropped, is a reset: it starts the stream again and never yields a
//! negative delta. The first point of a stream counts in full only when its
//! start time falls in a window that was still open when it arrived
//! (`PointSample::fresh`); otherwise it is only the baseline for later
//! deltas, so a long-running process does not dump its whole history into
//! one window. A point not newer than the last one (a retry, a duplicate) is
//! ignored.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use crate::model::point::{Buckets, PointKind, PointLatency, PointSample, StreamId, Temporality};
use crate::model::UnixNanos;

/// Bounds of one shard's stream table.
#[derive(Debug, Clone, Copy)]
pub struct StreamParams {
    /// Most streams held at once (this shard's share of `max_streams`).
    pub max_streams: usize,
    /// Streams whose last point is older than this (ns) are forgotten.
    pub expiry: u64,
}

/// Remembered buckets per stream, on average over a table: SDKs default to
/// 160 exponential buckets (and a dozen or two explicit ones), so a table
/// full of default streams fits, while a table of streams at the point
/// limit ([`MAX_POINT_BUCKETS`](crate::model::point::MAX_POINT_BUCKETS))
/// holds a twenty-fifth as many: with the default `max_streams` of 10000,
/// at most 1.6 million buckets (12.8 MB) in all.
pub const REMEMBERED_BUCKETS_PER_STREAM: usize = 160;

impl StreamParams {
    /// Most bucket counts and explicit bounds the table remembers in all:
    /// [`REMEMBERED_BUCKETS_PER_STREAM`] per stream, and never less than
    /// one point at the limit, so that such a stream can always be followed.
    pub fn max_buckets(&self) -> usize {
        let one_point = 2 * crate::model::point::MAX_POINT_BUCKETS;
        self.max_streams
            .saturating_mul(REMEMBERED_BUCKETS_PER_STREAM)
            .max(one_point)
    }
}

/// The last cumulative values of a stream (stored as they are at a
/// graceful stop: [`StoredTable`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
enum Last {
    Conversions(f64),
    Exponential {
        scale: i32,
        offset: i32,
        counts: Vec<u64>,
        zero_count: u64,
        count: u64,
        sum: Option<f64>,
    },
    Explicit {
        bounds: Arc<[f64]>,
        counts: Vec<u64>,
        count: u64,
        sum: Option<f64>,
    },
}

impl Last {
    /// The first and the last remembered count, added (0 when none):
    /// reading them brings the counts into cache.
    fn outer_counts(&self) -> u64 {
        match self {
            Last::Conversions(v) => v.to_bits(),
            Last::Exponential { counts, .. } | Last::Explicit { counts, .. } => {
                let (first, last) = (counts.first(), counts.last());
                first.zip(last).map_or(0, |(a, b)| a.wrapping_add(*b))
            }
        }
    }

    /// Bucket counts and explicit bounds remembered.
    fn buckets(&self) -> usize {
        match self {
            Last::Conversions(_) => 0,
            Last::Exponential { counts, .. } => counts.len(),
            Last::Explicit { bounds, counts, .. } => bounds.len() + counts.len(),
        }
    }
}

#[derive(Debug, Clone)]
struct Stream {
    start: UnixNanos,
    ts: UnixNanos,
    /// Time of the stream's live entry in the expiry queue (`<= ts`).
    queued: UnixNanos,
    last: Last,
}

/// What became of a point.
#[derive(Debug, Clone, PartialEq)]
pub enum Delta {
    /// Count this (a delta point as sent, or the difference to the last point).
    Count(PointKind),
    /// The first point of a stream whose start lies in a closed window: it
    /// only sets the baseline.
    Baseline,
    /// Not newer than the stream's last point: ignored.
    Stale,
    /// Not counted: a new stream while the table holds `max_streams`, or
    /// a point whose buckets the table has no room to remember (a known
    /// stream keeps its previous point).
    Overflow,
}

/// What became of a point, for [`StreamTable::delta_of`]: [`Delta`]
/// without the point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Count the point (which now holds what to count).
    Count,
    /// See [`Delta::Baseline`].
    Baseline,
    /// See [`Delta::Stale`].
    Stale,
    /// See [`Delta::Overflow`].
    Overflow,
}

/// The stream table of one shard.
#[derive(Debug)]
pub struct StreamTable {
    params: StreamParams,
    /// Keyed by ids that are secretly seeded hashes already
    /// (`receivers::otlp::stream_id`): foldhash, seeded per table, is
    /// enough to spread them (SipHash over them again was wasted work).
    streams: HashMap<StreamId, Stream, foldhash::fast::RandomState>,
    /// One entry per stream: a time at or before its last point's, soonest
    /// first. Expiry pops the entries past the horizon and puts back those
    /// whose stream got a newer point since, so a tick costs the streams
    /// that may have expired, not a scan of all of them.
    expiry: BinaryHeap<Reverse<(UnixNanos, StreamId)>>,
    /// The explicit bounds last remembered: streams of one metric share
    /// one copy instead of one per request they came in.
    bounds: Option<Arc<[f64]>>,
    /// Buckets remembered by all streams ([`Last::buckets`]).
    buckets: usize,
    overflowed: u64,
    bucket_overflowed: u64,
    expired: u64,
    resets: u64,
}

impl StreamTable {
    /// An empty table.
    pub fn new(params: StreamParams) -> StreamTable {
        StreamTable {
            params,
            streams: HashMap::default(),
            expiry: BinaryHeap::new(),
            bounds: None,
            buckets: 0,
            overflowed: 0,
            bucket_overflowed: 0,
            expired: 0,
            resets: 0,
        }
    }

    /// Turns a point into what its window should count.
    pub fn delta(&mut self, mut p: PointSample) -> Delta {
        match self.delta_of(&mut p) {
            Counted::Count => Delta::Count(p.kind),
            Counted::Baseline => Delta::Baseline,
            Counted::Stale => Delta::Stale,
            Counted::Overflow => Delta::Overflow,
        }
    }

    /// [`StreamTable::delta`] in place: when the point counts, `p.kind`
    /// is left holding what its window should count. The shard's path:
    /// a point is not moved (a point sample is some 170 bytes) and its
    /// series stays where it is.
    pub fn delta_of(&mut self, p: &mut PointSample) -> Counted {
        if p.temporality == Temporality::Delta {
            return Counted::Count;
        }
        let max_buckets = self.params.max_buckets();
        let Some(prev) = self.streams.get_mut(&p.stream) else {
            let last = share_bounds(&mut self.bounds, last_of(&p.kind));
            if self.streams.len() >= self.params.max_streams {
                self.overflowed += 1;
                return Counted::Overflow;
            }
            if self.buckets.saturating_add(last.buckets()) > max_buckets {
                self.bucket_overflowed += 1;
                return Counted::Overflow;
            }
            self.buckets += last.buckets();
            self.expiry.push(Reverse((p.ts, p.stream)));
            self.streams.insert(
                p.stream,
                Stream {
                    start: p.start,
                    ts: p.ts,
                    queued: p.ts,
                    last,
                },
            );
            return first_point(p);
        };
        if p.ts <= prev.ts && p.start == prev.start {
            return Counted::Stale;
        }
        // Replacing the stream's last point must keep the table within its
        // buckets; if it cannot, the point is not counted and the previous
        // one stays, so the next point that fits counts both.
        let buckets = self.buckets - prev.last.buckets() + buckets_of(&p.kind);
        if buckets > max_buckets {
            self.bucket_overflowed += 1;
            return Counted::Overflow;
        }
        self.buckets = buckets;
        if p.start != prev.start {
            // A new start time: the process (or the SDK) restarted.
            self.resets += 1;
            let mut queued = prev.queued;
            if p.ts < queued {
                // Restarted with an older time: a new entry replaces the
                // one that would now come too late.
                queued = p.ts;
                self.expiry.push(Reverse((p.ts, p.stream)));
            }
            *prev = Stream {
                start: p.start,
                ts: p.ts,
                queued,
                last: share_bounds(&mut self.bounds, last_of(&p.kind)),
            };
            return first_point(p);
        }
        if let PointKind::Latency(l) = &mut p.kind {
            match delta_in_place(l, &mut prev.last) {
                InPlace::Delta => {
                    prev.ts = p.ts;
                    return Counted::Count;
                }
                InPlace::Reset => {
                    prev.ts = p.ts;
                    self.resets += 1;
                    return Counted::Count;
                }
                InPlace::Other => {}
            }
        }
        let last = share_bounds(&mut self.bounds, last_of(&p.kind));
        let delta = subtract(&p.kind, &prev.last);
        prev.ts = p.ts;
        prev.last = last;
        match delta {
            Some(kind) => p.kind = kind,
            None => {
                // A value dropped under the same start time: a reset whose
                // moment is unknown but after the previous point, so what the
                // point holds happened since then.
                self.resets += 1;
            }
        }
        Counted::Count
    }

    /// Reads what the table remembers of the streams of `points` without
    /// changing anything, so that recording them next finds it in cache.
    ///
    /// A table of many streams does not fit in a core's cache: each point
    /// then waits for its stream's entry and its remembered counts to come
    /// from memory, one point after the other, and that waiting was most
    /// of what a cumulative point cost its shard. Looked up here in a
    /// short loop of independent reads, the entries of a whole batch are
    /// fetched at once; a batch of 500 points of fifteen buckets brings in
    /// some 120 KiB, well within a core's cache.
    pub fn warm(&self, points: &[PointSample]) {
        let mut seen = 0u64;
        for p in points {
            if p.temporality == Temporality::Cumulative {
                if let Some(s) = self.streams.get(&p.stream) {
                    // Both ends of the entry and of its counts: each spans
                    // two or three cache lines.
                    seen = seen.wrapping_add(s.ts ^ s.start ^ s.queued ^ s.last.outer_counts());
                }
            }
        }
        std::hint::black_box(seen);
    }

    /// Forgets streams whose last point is older than the expiry.
    ///
    /// Every stream has one entry in the expiry queue at a time no later
    /// than its last point's, so each stream whose last point is at or
    /// before the horizon is found among the entries up to the horizon.
    pub fn expire(&mut self, now: UnixNanos) {
        let horizon = now.saturating_sub(self.params.expiry);
        while let Some(&Reverse((at, id))) = self.expiry.peek() {
            if at > horizon {
                break;
            }
            self.expiry.pop();
            match self.streams.get_mut(&id) {
                // An entry that another one replaced.
                Some(s) if s.queued != at => {}
                Some(s) if s.ts > horizon => {
                    s.queued = s.ts;
                    self.expiry.push(Reverse((s.ts, id)));
                }
                Some(_) => {
                    if let Some(s) = self.streams.remove(&id) {
                        self.buckets -= s.last.buckets();
                        self.expired += 1;
                    }
                }
                None => {}
            }
        }
    }

    /// Streams held.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// The table as stored at a graceful stop ([`StoredTable`]).
    pub fn to_stored(&self) -> StoredTable {
        let mut streams: Vec<StoredStream> = self
            .streams
            .iter()
            .map(|(id, s)| StoredStream {
                id: [id.0, id.1],
                start: s.start,
                ts: s.ts,
                last: s.last.clone(),
            })
            .collect();
        streams.sort_by_key(|s| s.id);
        StoredTable { streams }
    }

    /// A table holding `stored`'s streams under `params`, as far as they
    /// fit (streams beyond `max_streams` or the bucket bound are left out,
    /// as new streams would be).
    pub fn from_stored(params: StreamParams, stored: StoredTable) -> StreamTable {
        let mut table = StreamTable::new(params);
        let max_buckets = params.max_buckets();
        for s in stored.streams {
            let last = share_bounds(&mut table.bounds, s.last);
            if table.streams.len() >= params.max_streams
                || table.buckets.saturating_add(last.buckets()) > max_buckets
            {
                continue;
            }
            let id = StreamId(s.id[0], s.id[1]);
            table.buckets += last.buckets();
            table.expiry.push(Reverse((s.ts, id)));
            table.streams.insert(
                id,
                Stream {
                    start: s.start,
                    ts: s.ts,
                    queued: s.ts,
                    last,
                },
            );
        }
        table
    }

    /// Takes new bounds (a reload that changed `max_streams` or
    /// `stream_expiry`): streams already held beyond a smaller bound stay
    /// until they expire; no new one is let in meanwhile.
    pub fn set_params(&mut self, params: StreamParams) {
        self.params = params;
    }

    /// True when no stream is held.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Points of new streams refused because the table was full, so far.
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }

    /// Points not counted because the table had no room for their
    /// buckets, so far.
    pub fn bucket_overflowed(&self) -> u64 {
        self.bucket_overflowed
    }

    /// Bucket counts and explicit bounds remembered by all streams.
    pub fn buckets(&self) -> usize {
        self.buckets
    }

    /// Streams forgotten after `expiry`, so far.
    pub fn expired(&self) -> u64 {
        self.expired
    }

    /// Resets (new start time, or a value that dropped), so far.
    pub fn resets(&self) -> u64 {
        self.resets
    }
}

/// A stream table as stored at a graceful stop, so that a restart goes on
/// from each stream's last point (see [`super::carry`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredTable {
    streams: Vec<StoredStream>,
}

impl StoredTable {
    /// Streams in it.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// True when it holds no stream.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct StoredStream {
    id: [u64; 2],
    start: UnixNanos,
    ts: UnixNanos,
    last: Last,
}

/// `last` with its explicit bounds replaced by `shared` when equal, and
/// `shared` set to them otherwise.
fn share_bounds(shared: &mut Option<Arc<[f64]>>, mut last: Last) -> Last {
    if let Last::Explicit { bounds, .. } = &mut last {
        match shared {
            Some(s) if **s == **bounds => *bounds = s.clone(),
            _ => *shared = Some(bounds.clone()),
        }
    }
    last
}

/// Bucket counts and explicit bounds a point's [`Last`] would remember.
fn buckets_of(kind: &PointKind) -> usize {
    match kind {
        PointKind::Conversions(_) => 0,
        PointKind::Latency(l) => match &l.buckets {
            Buckets::Exponential { counts, .. } => counts.len(),
            Buckets::Explicit { bounds, counts } => bounds.len() + counts.len(),
        },
    }
}

/// What [`delta_in_place`] did.
enum InPlace {
    /// The point now holds its delta, the stream its values.
    Delta,
    /// A value dropped: the point is unchanged, the stream holds its values.
    Reset,
    /// Not the common case (other bounds, scale, offset or length): nothing
    /// changed, [`subtract`] decides.
    Other,
}

/// [`subtract`] and [`last_of`] without allocating, for a point laid out
/// like the stream's last one (same bounds, or same scale, offset and
/// length): the point's counts are overwritten with their delta and the
/// stream's with the point's values, so the point carries its delta and
/// the stream keeps the point's values. The same results as the general path, which handles
/// every other case.
fn delta_in_place(cur: &mut PointLatency, last: &mut Last) -> InPlace {
    let explicit = matches!(cur.buckets, Buckets::Explicit { .. });
    let (counts, last_counts, zero, last_zero, last_count, last_sum) =
        match (&mut cur.buckets, last) {
            (
                Buckets::Explicit { bounds, counts },
                Last::Explicit {
                    bounds: lb,
                    counts: lc,
                    count,
                    sum,
                },
            ) if *bounds == *lb && counts.len() == lc.len() => (counts, lc, None, None, count, sum),
            (
                Buckets::Exponential {
                    scale,
                    offset,
                    counts,
                    zero_count,
                    ..
                },
                Last::Exponential {
                    scale: ls,
                    offset: lo,
                    counts: lc,
                    zero_count: lz,
                    count,
                    sum,
                },
            ) if scale == ls && offset == lo && counts.len() == lc.len() => {
                (counts, lc, Some(zero_count), Some(lz), count, sum)
            }
            _ => return InPlace::Other,
        };
    let dropped = cur.count < *last_count
        || zero
            .as_deref()
            .zip(last_zero.as_deref())
            .is_some_and(|(z, l)| z < l)
        || counts.iter().zip(last_counts.iter()).any(|(c, l)| c < l);
    let (count, sum) = (cur.count, cur.sum);
    if dropped {
        last_counts.copy_from_slice(counts);
        if let (Some(z), Some(l)) = (zero, last_zero) {
            *l = *z;
        }
        *last_count = count;
        *last_sum = sum;
        return InPlace::Reset;
    }
    // The stream keeps its vector (sized for it: the point's may be a
    // reused one with room to spare).
    for (l, c) in last_counts.iter_mut().zip(counts.iter_mut()) {
        let now = *c;
        *c = now - *l;
        *l = now;
    }
    if let (Some(z), Some(l)) = (zero, last_zero) {
        let now = *z;
        *z -= *l;
        *l = now;
    }
    cur.count = count - *last_count;
    cur.sum = match (sum, *last_sum) {
        (Some(a), Some(b)) => Some((a - b).max(0.0)),
        _ => None,
    };
    // As in `subtract`: the stream's extremes stay clamps for explicit
    // buckets only.
    if !explicit {
        cur.min = None;
        cur.max = None;
    }
    *last_count = count;
    *last_sum = sum;
    InPlace::Delta
}

fn first_point(p: &PointSample) -> Counted {
    if p.fresh {
        Counted::Count
    } else {
        Counted::Baseline
    }
}

fn last_of(kind: &PointKind) -> Last {
    match kind {
        PointKind::Conversions(v) => Last::Conversions(*v),
        PointKind::Latency(l) => match &l.buckets {
            Buckets::Exponential {
                scale,
                offset,
                counts,
                zero_count,
                ..
            } => Last::Exponential {
                scale: *scale,
                offset: *offset,
                counts: counts.clone(),
                zero_count: *zero_count,
                count: l.count,
                sum: l.sum,
            },
            Buckets::Explicit { bounds, counts } => Last::Explicit {
                bounds: bounds.clone(),
                counts: counts.clone(),
                count: l.count,
                sum: l.sum,
            },
        },
    }
}

/// `cur − last`, or `None` when that would be negative anywhere (a reset) or
/// the two are not comparable (different kinds, bounds, or a finer scale).
fn subtract(cur: &PointKind, last: &Last) -> Option<PointKind> {
    match (cur, last) {
        (PointKind::Conversions(v), Last::Conversions(l)) => {
            (*v >= *l).then(|| PointKind::Conversions(v - l))
        }
        (PointKind::Latency(c), last) => {
            let (count, sum) = match last {
                Last::Exponential { count, sum, .. } | Last::Explicit { count, sum, .. } => {
                    (*count, *sum)
                }
                Last::Conversions(_) => return None,
            };
            let count = c.count.checked_sub(count)?;
            let buckets = subtract_buckets(&c.buckets, last)?;
            Some(PointKind::Latency(PointLatency {
                unit: c.unit,
                count,
                error: c.error,
                sum: match (c.sum, sum) {
                    (Some(a), Some(b)) => Some((a - b).max(0.0)),
                    _ => None,
                },
                // Extremes of the whole stream are still valid clamps for
                // explicit buckets (the delta's values lie inside them), but
                // they are not the delta's own extremes, which exponential
                // merging would take as exact: keep them for explicit only.
                min: matches!(c.buckets, Buckets::Explicit { .. })
                    .then_some(c.min)
                    .flatten(),
                max: matches!(c.buckets, Buckets::Explicit { .. })
                    .then_some(c.max)
                    .flatten(),
                buckets,
            }))
        }
        (PointKind::Conversions(_), _) => None,
    }
}

fn subtract_buckets(cur: &Buckets, last: &Last) -> Option<Buckets> {
    match (cur, last) {
        (
            Buckets::Explicit { bounds, counts },
            Last::Explicit {
                bounds: lb,
                counts: lc,
                ..
            },
        ) => {
            if bounds != lb || counts.len() != lc.len() {
                return None;
            }
            let counts = counts
                .iter()
                .zip(lc)
                .map(|(c, l)| c.checked_sub(*l))
                .collect::<Option<Vec<u64>>>()?;
            Some(Buckets::Explicit {
                bounds: bounds.clone(),
                counts,
            })
        }
        (
            Buckets::Exponential {
                scale,
                offset,
                counts,
                zero_count,
                zero_threshold,
            },
            Last::Exponential {
                scale: ls,
                offset: lo,
                counts: lc,
                zero_count: lz,
                ..
            },
        ) => {
            // SDKs only ever lower a cumulative stream's scale; bring the
            // last point down to the current scale (exact: buckets add).
            let d = ls.checked_sub(*scale).filter(|d| (0..64).contains(d))? as u32;
            let mut out = counts.clone();
            let base = i64::from(*offset);
            for (j, &c) in lc.iter().enumerate() {
                if c == 0 {
                    continue;
                }
                let idx = (i64::from(*lo) + j as i64) >> d;
                let pos = usize::try_from(idx - base).ok()?;
                let slot = out.get_mut(pos)?;
                *slot = slot.checked_sub(c)?;
            }
            Some(Buckets::Exponential {
                scale: *scale,
                offset: *offset,
                counts: out,
                zero_count: zero_count.checked_sub(*lz)?,
                zero_threshold: *zero_threshold,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::point::LatencyUnit;
    use crate::model::{SeriesKey, Subject};

    const S: u64 = 1_000_000_000;

    fn table(max: usize) -> StreamTable {
        StreamTable::new(StreamParams {
            max_streams: max,
            expiry: 60 * S,
        })
    }

    fn point(stream: u64, start: u64, ts: u64, fresh: bool, kind: PointKind) -> PointSample {
        PointSample {
            series: SeriesKey {
                contract: 0,
                subject: Subject::named("s"),
            },
            ts,
            start,
            stream: StreamId(stream, 0),
            temporality: Temporality::Cumulative,
            fresh,
            kind,
        }
    }

    fn exp(scale: i32, offset: i32, counts: &[u64], zero: u64) -> PointKind {
        PointKind::Latency(PointLatency {
            unit: LatencyUnit::Seconds,
            count: counts.iter().sum::<u64>() + zero,
            error: false,
            sum: Some(1.0),
            min: Some(0.0),
            max: Some(9.0),
            buckets: Buckets::Exponential {
                scale,
                offset,
                counts: counts.to_vec(),
                zero_count: zero,
                zero_threshold: 0.0,
            },
        })
    }

    fn explicit(counts: &[u64]) -> PointKind {
        PointKind::Latency(PointLatency {
            unit: LatencyUnit::Millis,
            count: counts.iter().sum(),
            error: true,
            sum: None,
            min: Some(1.0),
            max: Some(300.0),
            buckets: Buckets::Explicit {
                bounds: Arc::from(&[10.0, 100.0][..]),
                counts: counts.to_vec(),
            },
        })
    }

    /// The latency delta a point yielded.
    fn latency(d: Delta) -> PointLatency {
        match d {
            Delta::Count(PointKind::Latency(l)) => l,
            other => panic!("not a latency delta: {other:?}"),
        }
    }

    /// A table stored and read back (through its JSON, as a graceful
    /// stop and the next start do) goes on exactly where the original
    /// does: same deltas, same stale and reset decisions; what does not
    /// fit a smaller bound is left out like a new stream.
    #[test]
    fn a_stored_table_goes_on_where_it_stopped() {
        let mut t = table(10);
        let c = PointKind::Conversions;
        t.delta(point(1, 10 * S, 20 * S, false, c(5.0)));
        t.delta(point(2, 10 * S, 20 * S, false, exp(2, -3, &[1, 2, 3], 4)));
        t.delta(point(3, 10 * S, 20 * S, false, explicit(&[1, 2, 3])));
        t.delta(point(4, 10 * S, 20 * S, false, explicit(&[5, 5, 5])));
        let text = serde_json::to_string(&t.to_stored()).expect("encodes");
        let stored: StoredTable = serde_json::from_str(&text).expect("decodes");
        assert_eq!(stored, t.to_stored());
        let mut back = StreamTable::from_stored(t.params, stored.clone());
        assert_eq!((back.len(), back.buckets()), (t.len(), t.buckets()));
        let next = [
            point(1, 10 * S, 21 * S, false, c(8.0)),
            point(2, 10 * S, 21 * S, false, exp(2, -3, &[2, 2, 5], 4)),
            point(3, 10 * S, 20 * S, false, explicit(&[9, 9, 9])),
            point(4, 15 * S, 21 * S, true, explicit(&[1, 0, 0])),
            point(5, 10 * S, 21 * S, false, c(1.0)),
        ];
        for p in next {
            assert_eq!(back.delta(p.clone()), t.delta(p));
        }
        assert_eq!(back.to_stored(), t.to_stored());
        // A smaller bound keeps what fits.
        let small = StreamTable::from_stored(
            StreamParams {
                max_streams: 2,
                expiry: 60 * S,
            },
            stored,
        );
        assert_eq!(small.len(), 2);
    }

    #[test]
    fn conversions_cumulative_to_delta() {
        let mut t = table(10);
        let c = PointKind::Conversions;
        // Fresh start: counts in full.
        assert_eq!(
            t.delta(point(1, 10 * S, 20 * S, true, c(5.0))),
            Delta::Count(c(5.0))
        );
        assert_eq!(
            t.delta(point(1, 10 * S, 30 * S, true, c(8.0))),
            Delta::Count(c(3.0))
        );
        // A retry of the same point is ignored.
        assert_eq!(
            t.delta(point(1, 10 * S, 30 * S, true, c(8.0))),
            Delta::Stale
        );
        // A drop is a reset: the new value counts, never a negative delta.
        assert_eq!(
            t.delta(point(1, 10 * S, 40 * S, true, c(2.0))),
            Delta::Count(c(2.0))
        );
        assert_eq!(t.resets(), 1);
        // A new start time in a closed window: baseline only.
        assert_eq!(
            t.delta(point(1, 35 * S, 50 * S, false, c(100.0))),
            Delta::Baseline
        );
        assert_eq!(
            t.delta(point(1, 35 * S, 60 * S, false, c(101.0))),
            Delta::Count(c(1.0))
        );
        assert_eq!(t.resets(), 2);
        // An old stream seen for the first time is a baseline.
        assert_eq!(t.delta(point(2, S, 60 * S, false, c(1e6))), Delta::Baseline);
        // Delta points pass through.
        let mut d = point(3, 0, 60 * S, false, c(4.0));
        d.temporality = Temporality::Delta;
        assert_eq!(t.delta(d), Delta::Count(c(4.0)));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn exponential_delta_across_a_downscale() {
        let mut t = table(10);
        // Scale 3: buckets 8 and 9 (8 >> 1 = 9 >> 1 = 4 at scale 2).
        assert_eq!(
            t.delta(point(1, S, 2 * S, false, exp(3, 8, &[2, 1], 1))),
            Delta::Baseline
        );
        let l = latency(t.delta(point(1, S, 3 * S, false, exp(2, 4, &[5, 1], 3))));
        assert_eq!(l.count, 5);
        assert_eq!((l.min, l.max), (None, None));
        assert_eq!(
            l.buckets,
            Buckets::Exponential {
                scale: 2,
                offset: 4,
                counts: vec![2, 1],
                zero_count: 2,
                zero_threshold: 0.0
            }
        );
        // A bucket that shrank is a reset: the point counts as it is.
        let l = latency(t.delta(point(1, S, 4 * S, false, exp(2, 4, &[1, 1], 3))));
        assert_eq!(l.count, 5);
        assert_eq!(t.resets(), 1);
    }

    #[test]
    fn explicit_delta_keeps_clamps_and_error_flag() {
        let mut t = table(10);
        assert_eq!(
            t.delta(point(1, S, 2 * S, false, explicit(&[1, 2, 0]))),
            Delta::Baseline
        );
        let l = latency(t.delta(point(1, S, 3 * S, false, explicit(&[1, 5, 1]))));
        assert_eq!(l.count, 4);
        assert!(l.error);
        assert_eq!((l.min, l.max), (Some(1.0), Some(300.0)));
        let Buckets::Explicit { counts, .. } = l.buckets else {
            panic!("explicit")
        };
        assert_eq!(counts, vec![0, 3, 1]);
    }

    #[test]
    fn bounded_and_expiring() {
        let mut t = table(2);
        let c = PointKind::Conversions;
        t.delta(point(1, S, 10 * S, false, c(1.0)));
        t.delta(point(2, S, 50 * S, false, c(1.0)));
        assert_eq!(t.delta(point(3, S, 50 * S, true, c(1.0))), Delta::Overflow);
        assert_eq!(t.overflowed(), 1);
        // Stream 1 was last seen at 10 s: gone 60 s later.
        t.expire(71 * S);
        assert_eq!((t.len(), t.expired()), (1, 1));
        assert_eq!(
            t.delta(point(3, S, 72 * S, true, c(1.0))),
            Delta::Count(c(1.0))
        );
    }

    /// Remembered buckets are bounded for the whole table: a new stream
    /// that does not fit is not counted, a known stream whose point does
    /// not fit keeps its previous point (nothing is lost once it fits
    /// again), and expiry gives the room back.
    #[test]
    fn remembered_buckets_are_bounded() {
        // 20 streams: room for 3200 buckets, or one point at the limit
        // (8192), whichever is more.
        let mut t = table(20);
        let cap = 2 * crate::model::point::MAX_POINT_BUCKETS;
        assert_eq!(t.params.max_buckets(), cap);
        let wide = |n: u64| {
            let mut counts = vec![0; 3000];
            counts[0] = n;
            exp(0, 0, &counts, 0)
        };
        assert_eq!(
            t.delta(point(1, S, 2 * S, true, wide(1))),
            Delta::Count(wide(1))
        );
        assert_eq!(
            t.delta(point(2, S, 2 * S, true, wide(1))),
            Delta::Count(wide(1))
        );
        assert_eq!(t.buckets(), 6000);
        // A third stream of 3000 buckets does not fit in 8192.
        assert!(matches!(
            t.delta(point(3, S, 2 * S, true, wide(1))),
            Delta::Overflow
        ));
        assert_eq!((t.bucket_overflowed(), t.overflowed(), t.len()), (1, 0, 2));
        // Stream 1 widens past the room left: not counted, and its last
        // point stays…
        let mut counts = vec![0; 5300];
        counts[0] = 3;
        let wider = exp(0, 0, &counts, 0);
        let overflow = |d: Delta| matches!(d, Delta::Overflow);
        assert!(overflow(t.delta(point(1, S, 3 * S, false, wider))));
        assert_eq!((t.bucket_overflowed(), t.buckets()), (2, 6000));
        // …so its next point that fits counts everything since the one
        // remembered: 5 - 1 requests.
        let l = latency(t.delta(point(1, S, 4 * S, false, wide(5))));
        assert_eq!(l.count, 4);
        // Small streams still fit next to them.
        assert_eq!(
            t.delta(point(4, S, 4 * S, true, explicit(&[1, 0, 0]))),
            Delta::Count(explicit(&[1, 0, 0]))
        );
        assert_eq!(t.buckets(), 6000 + 5);
        // Expiry gives the room back: stream 2 (last seen at 2 s), then
        // streams 1 and 4 (4 s).
        t.expire(63 * S);
        assert_eq!((t.buckets(), t.len()), (3005, 2));
        t.expire(65 * S);
        assert_eq!((t.buckets(), t.len()), (0, 0));
        assert_eq!(
            t.delta(point(3, S, 70 * S, true, wide(1))),
            Delta::Count(wide(1))
        );
    }

    /// With the default `max_streams`, streams of SDK-default points (160
    /// exponential buckets) fill the table by count before by buckets.
    #[test]
    fn default_points_fit_the_bucket_bound() {
        let mut t = table(1000);
        let counts = vec![1; REMEMBERED_BUCKETS_PER_STREAM];
        for id in 0..1000 {
            assert!(matches!(
                t.delta(point(id, S, 2 * S, true, exp(3, 0, &counts, 0))),
                Delta::Count(_)
            ));
        }
        assert_eq!(t.buckets(), 160_000);
        assert_eq!(
            t.delta(point(1000, S, 2 * S, true, exp(3, 0, &counts, 0))),
            Delta::Overflow
        );
        assert_eq!((t.overflowed(), t.bucket_overflowed()), (1, 0));
    }

    /// A point of either layout, from generated counts.
    fn layout_point(exponential: bool, counts: &[u64], zero: u64, sum: Option<f64>) -> PointKind {
        let mut kind = if exponential {
            exp(2, -3, counts, zero)
        } else {
            let mut k = explicit(counts);
            if let PointKind::Latency(l) = &mut k {
                if let Buckets::Explicit { bounds, .. } = &mut l.buckets {
                    *bounds = (1..counts.len()).map(|b| b as f64).collect();
                }
            }
            k
        };
        if let PointKind::Latency(l) = &mut kind {
            l.count = counts.iter().sum::<u64>() + if exponential { zero } else { 0 };
            l.sum = sum;
        }
        kind
    }

    proptest::proptest! {
        /// The allocation-free delta of a point laid out like the stream's
        /// last one gives what `subtract` and `last_of` give: the same
        /// delta (or the same reset) and the same remembered point.
        #[test]
        fn in_place_delta_is_the_general_one(
            exponential in proptest::bool::ANY,
            pairs in proptest::collection::vec((0u64..50, 0u64..50), 1..20),
            zeros in (0u64..9, 0u64..9),
            sums in (proptest::option::of(0.0f64..1e3), proptest::option::of(0.0f64..1e3)),
        ) {
            let before: Vec<u64> = pairs.iter().map(|p| p.0).collect();
            let after: Vec<u64> = pairs.iter().map(|p| p.0 + p.1 / 2).chain([]).zip(&pairs)
                .map(|(a, p)| if p.1 % 7 == 0 { a.saturating_sub(3) } else { a }).collect();
            let last = last_of(&layout_point(exponential, &before, zeros.0, sums.0));
            let cur = layout_point(exponential, &after, zeros.1, sums.1);
            let want_delta = subtract(&cur, &last);
            let want_last = last_of(&cur);
            let (mut got, mut got_last) = (cur.clone(), last.clone());
            let PointKind::Latency(l) = &mut got else { unreachable!() };
            match delta_in_place(l, &mut got_last) {
                InPlace::Delta => proptest::prop_assert_eq!(Some(got), want_delta),
                InPlace::Reset => {
                    proptest::prop_assert_eq!(want_delta, None);
                    proptest::prop_assert_eq!(got, cur);
                }
                InPlace::Other => proptest::prop_assert!(false, "same layout"),
            }
            proptest::prop_assert_eq!(got_last, want_last);
        }
    }

    proptest::proptest! {
        /// Expiry by queue forgets exactly the streams a scan of the whole
        /// table would (last point at or before the horizon), and gives
        /// back exactly their buckets, through resets, stale points and
        /// streams coming back.
        #[test]
        fn queued_expiry_is_a_full_scan(
            ops in proptest::collection::vec((0u64..12, 0u64..4, 1u64..40, 0u8..6), 1..200),
        ) {
            let mut t = table(8);
            let mut now = 0u64;
            for (stream, start, step, what) in ops {
                now += step * S / 4;
                if what == 0 {
                    let horizon = now.saturating_sub(t.params.expiry);
                    let keep: Vec<StreamId> = t
                        .streams
                        .iter()
                        .filter(|(_, s)| s.ts > horizon)
                        .map(|(id, _)| *id)
                        .collect();
                    let buckets: usize = t
                        .streams
                        .values()
                        .filter(|s| s.ts > horizon)
                        .map(|s| s.last.buckets())
                        .sum();
                    let expired = t.expired() + (t.len() - keep.len()) as u64;
                    t.expire(now);
                    proptest::prop_assert_eq!(t.len(), keep.len());
                    proptest::prop_assert!(keep.iter().all(|id| t.streams.contains_key(id)));
                    proptest::prop_assert_eq!((t.buckets(), t.expired()), (buckets, expired));
                    proptest::prop_assert!(t.expiry.len() >= t.len());
                } else {
                    let counts = [u64::from(what), 1, 2];
                    let ts = now.saturating_sub(u64::from(what == 5) * 20 * S);
                    t.delta(point(stream, start * S, ts, true, explicit(&counts)));
                }
            }
        }
    }
}
