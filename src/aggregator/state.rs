//! The pure core of one aggregator shard: samples in, closed windows out.
//! No async, no clock reads — the driver passes `now` in — so every rule
//! about lateness, overflow and closing is tested with plain `#[test]`s.

use super::sketch::Sketch;
use super::streams::{Delta, StreamParams, StreamTable};
use crate::model::point::{Buckets, LatencyUnit, PointKind, PointLatency};
use crate::model::series::SeriesMap;
use crate::model::{PointSample, Sample, SeriesKey, Subject, UnixNanos, Window};
use crate::runs::engine::OpenWindows;

/// What one window of one series accumulated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Accum {
    /// Latency sketch, in `unit` (milliseconds for spans; a metric's own
    /// unit for histogram points, so their buckets merge exactly).
    pub latency: Sketch,
    /// Requests seen.
    pub samples: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Requests that converted.
    pub conversions: u64,
    /// Unit of the sketch's values.
    pub unit: LatencyUnit,
    /// Set once explicit-bucket histograms were spread into the sketch: the
    /// quantiles are then approximate, within the width of their bucket.
    pub spread: Option<Spread>,
    /// Relative error added by re-bucketing data of another unit (0 when
    /// every input had the sketch's unit, the normal case).
    pub extra_relative_error: f64,
}

/// What is known about explicit buckets spread into a sketch, for the bound
/// of a quantile answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Spread {
    /// Bounds present in every spread histogram (in the sketch's unit): a
    /// bucket between two of them contains the bucket of each point.
    pub bounds: Vec<f64>,
    /// Some point had counts below its first bound and no `min`.
    pub open_below: bool,
    /// Some point had counts above its last bound and no `max`: answers up
    /// there have no bound.
    pub open_above: bool,
}

/// Most sketch buckets one explicit bucket is spread over; a wider bucket is
/// spread at a coarser scale (its answer is only good to its width anyway).
const MAX_PIECES: u32 = 128;

impl Accum {
    /// Adds one sample. A latency the sketch refuses still counts as a
    /// request (its error and conversion flags are real); the caller checked
    /// finiteness already, so this only guards against misuse. NaN means "no
    /// latency" (see [`Sample::latency_ms`]) and is not offered to the sketch.
    #[inline]
    pub fn record(&mut self, s: &Sample) {
        if !s.latency_ms.is_nan() {
            let _ = self.latency.insert(s.latency_ms);
        }
        self.samples += 1;
        self.errors += u64::from(s.error);
        self.conversions += u64::from(s.converted);
    }

    /// Adds a (delta) metric point: a latency histogram or conversions.
    pub fn record_point(&mut self, kind: &PointKind) {
        match kind {
            // Conversions are whole events; a double-valued counter's
            // fractions are rounding noise.
            PointKind::Conversions(v) => self.conversions += v.round().max(0.0) as u64,
            PointKind::Latency(p) => self.record_latency(p),
        }
    }

    fn record_latency(&mut self, p: &PointLatency) {
        self.samples += p.count;
        if p.error {
            self.errors += p.count;
        }
        let factor = self.adopt_unit(p.unit);
        let scaled = |v: Option<f64>| v.map(|v| v * factor);
        match &p.buckets {
            Buckets::Exponential {
                scale,
                offset,
                counts,
                zero_count,
                zero_threshold,
            } => {
                if factor == 1.0 {
                    self.latency.merge_exponential(
                        *scale,
                        *zero_count,
                        *zero_threshold,
                        *offset,
                        counts,
                        p.sum,
                        p.min,
                        p.max,
                    );
                } else {
                    self.rebucket(*scale, *offset, counts, *zero_count, factor);
                }
            }
            Buckets::Explicit { bounds, counts } => {
                let bounds: Vec<f64> = bounds.iter().map(|b| b * factor).collect();
                self.spread_explicit(&bounds, counts, scaled(p.min), scaled(p.max));
            }
        }
    }

    /// True when nothing has gone into the sketch yet (its unit is free).
    fn latency_empty(&self) -> bool {
        self.latency.is_empty() && self.latency.rejected() == 0 && self.spread.is_none()
    }

    /// Takes `unit` as the sketch's unit when the sketch is still empty;
    /// returns the factor from `unit` to the sketch's unit.
    fn adopt_unit(&mut self, unit: LatencyUnit) -> f64 {
        if unit == self.unit {
            return 1.0;
        }
        if self.latency_empty() {
            self.unit = unit;
            return 1.0;
        }
        unit.to_ms() / self.unit.to_ms()
    }

    /// Adds exponential buckets of another unit: each bucket's count goes to
    /// its midpoint times `factor`, which adds that scale's bound to the
    /// answer's error (only when a series mixes units).
    fn rebucket(&mut self, scale: i32, offset: i32, counts: &[u64], zero_count: u64, factor: f64) {
        let _ = self.latency.insert_n(0.0, zero_count);
        let rel = relative_error_at(scale);
        for (j, &c) in counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let idx = f64::from(offset) + j as f64;
            let lower = (idx * (-f64::from(scale)).exp2()).exp2();
            let _ = self.latency.insert_n(lower * (1.0 + rel) * factor, c);
        }
        self.extra_relative_error = self.extra_relative_error.max(rel);
    }

    /// Spreads explicit-bucket counts uniformly inside each bucket over the
    /// sketch buckets it covers (design §3). `min` and `max`, when given,
    /// clamp the outer buckets (and any bucket they fall in); without a
    /// `max`, the counts above the last bound sit at that bound and the
    /// answer there has no bound.
    pub fn spread_explicit(
        &mut self,
        bounds: &[f64],
        counts: &[u64],
        min: Option<f64>,
        max: Option<f64>,
    ) {
        let n = bounds.len();
        let mut open_below = false;
        let mut open_above = false;
        for (i, &c) in counts.iter().enumerate().take(n + 1) {
            if c == 0 {
                continue;
            }
            let mut lo = if i == 0 {
                f64::NEG_INFINITY
            } else {
                bounds[i - 1]
            };
            let mut hi = if i == n { f64::INFINITY } else { bounds[i] };
            if let Some(m) = min.filter(|m| m.is_finite()) {
                lo = lo.max(m);
            } else if i == 0 {
                open_below = true;
            }
            if let Some(m) = max.filter(|m| m.is_finite()) {
                hi = hi.min(m);
            }
            // Latencies are never negative.
            lo = lo.max(0.0);
            if hi.is_infinite() {
                open_above = true;
                let _ = self.latency.insert_n(lo, c);
            } else if hi <= 0.0 {
                let _ = self.latency.insert_n(0.0, c);
            } else if lo >= hi {
                let _ = self.latency.insert_n(hi, c);
            } else {
                self.spread_bucket(lo, hi, c);
            }
        }
        match &mut self.spread {
            Some(s) => {
                s.bounds.retain(|b| bounds.contains(b));
                s.open_below |= open_below;
                s.open_above |= open_above;
            }
            None => {
                self.spread = Some(Spread {
                    bounds: bounds.to_vec(),
                    open_below,
                    open_above,
                })
            }
        }
    }

    /// Spreads `c` values uniformly over `(lo, hi]`, `0 <= lo < hi`, one
    /// insert per covered sketch bucket, rounding so the counts add up to `c`.
    fn spread_bucket(&mut self, lo: f64, hi: f64, c: u64) {
        // Below hi / 2^10 lies under 0.1 % of a uniform bucket: it goes to
        // the first piece instead of spanning endless tiny buckets near 0.
        let from = lo.max(hi / 1024.0);
        let mut scale = self.latency.scale();
        let pieces = |scale: i32| {
            let per = f64::from(scale).exp2();
            ((hi.log2() * per).ceil() - (from.log2() * per).floor()).max(1.0)
        };
        while scale > crate::aggregator::sketch::MIN_SCALE && pieces(scale) > f64::from(MAX_PIECES)
        {
            scale -= 1;
        }
        let per = f64::from(scale).exp2();
        let first = (from.log2() * per).floor() as i64;
        let last = (hi.log2() * per).ceil() as i64;
        let width = hi - lo;
        let mut given = 0u64;
        for k in first..last {
            let a = ((k as f64) / per).exp2().max(from);
            let b = (((k + 1) as f64) / per).exp2().min(hi);
            if b <= a {
                continue;
            }
            // Cumulative share up to b, rounded: the counts sum to c exactly.
            let upto = if k + 1 >= last {
                c
            } else {
                ((b - lo) / width * c as f64).round().min(c as f64) as u64
            };
            let n = upto.saturating_sub(given);
            given = given.max(upto);
            if n > 0 {
                // Geometric middle of the piece (as a product of roots: no overflow).
                let _ = self.latency.insert_n(a.sqrt() * b.sqrt(), n);
            }
        }
        if given < c {
            let _ = self.latency.insert_n(hi, c - given);
        }
    }

    /// True when quantiles are approximate beyond the sketch's own bound
    /// (explicit buckets were spread, or a unit was re-bucketed).
    pub fn approximate(&self) -> bool {
        self.spread.is_some() || self.extra_relative_error > 0.0
    }

    /// Relative error of the sketch's answers as sketch answers: its scale's
    /// bound plus any re-bucketing.
    pub fn relative_error(&self) -> f64 {
        (self.latency.relative_error() + self.extra_relative_error).min(1.0)
    }

    /// The absolute bound (in the sketch's unit) of a quantile answer `v`:
    /// the sketch's relative bound, plus, for spread explicit buckets, the
    /// width of the bucket the answer falls in (`+inf` in an open bucket).
    pub fn error_bound(&self, v: f64) -> f64 {
        let rel = self.relative_error();
        // |v − x| ≤ rel·x with x ≥ v / (1 + rel)… and ≤ v / (1 − rel).
        let sketch = if rel < 1.0 {
            rel * v / (1.0 - rel)
        } else {
            f64::INFINITY
        };
        let Some(s) = &self.spread else {
            return sketch;
        };
        let width = |x: f64| {
            let i = s.bounds.partition_point(|b| *b < x);
            let lo = if i == 0 {
                if s.open_below {
                    0.0
                } else {
                    self.latency.min().unwrap_or(0.0)
                }
            } else {
                s.bounds[i - 1]
            };
            let hi = if i == s.bounds.len() {
                if s.open_above {
                    f64::INFINITY
                } else {
                    self.latency.max().unwrap_or(lo)
                }
            } else {
                s.bounds[i]
            };
            (hi - lo).max(0.0)
        };
        // The sketch may have put the answer just across a bound.
        let w = width(v - sketch).max(width(v + sketch));
        w + sketch
    }

    /// Adds everything `other` accumulated.
    pub fn merge(&mut self, other: &Accum) {
        if other.latency_empty() {
            // Nothing to merge (an empty window of another unit included).
        } else if other.unit == self.unit || self.latency_empty() {
            self.unit = other.unit;
            self.latency.merge(&other.latency);
        } else {
            let factor = other.unit.to_ms() / self.unit.to_ms();
            let (scale, offset, counts) = other.latency.positive_buckets();
            self.rebucket(scale, offset, &counts, other.latency.zero_count(), factor);
        }
        self.samples += other.samples;
        self.errors += other.errors;
        self.conversions += other.conversions;
        self.extra_relative_error = self.extra_relative_error.max(other.extra_relative_error);
        if let Some(o) = &other.spread {
            let factor = other.unit.to_ms() / self.unit.to_ms();
            let bounds: Vec<f64> = o.bounds.iter().map(|b| b * factor).collect();
            match &mut self.spread {
                Some(s) => {
                    s.bounds.retain(|b| bounds.contains(b));
                    s.open_below |= o.open_below;
                    s.open_above |= o.open_above;
                }
                None => {
                    self.spread = Some(Spread {
                        bounds,
                        open_below: o.open_below,
                        open_above: o.open_above,
                    })
                }
            }
        }
    }
}

/// `(base - 1) / (base + 1)` at `scale`, as the sketch reports it.
fn relative_error_at(scale: i32) -> f64 {
    let base = (-f64::from(scale)).exp2().exp2();
    if base.is_finite() {
        (base - 1.0) / (base + 1.0)
    } else {
        1.0
    }
}

/// A window that has closed for one series.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedWindow {
    /// The series.
    pub series: SeriesKey,
    /// The window.
    pub window: Window,
    /// What it accumulated.
    pub accum: Accum,
}

/// What became of a recorded sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Counted in its series' window.
    Accepted,
    /// Counted, and it is the first sample of a series this shard did not
    /// hold: the run engine hears about it (PENDING → VALIDATING).
    NewSeries,
    /// Counted in the overflow series because the shard holds its share of
    /// `max_series` already.
    Overflow,
    /// Its window had already closed: counted as late, not aggregated.
    Late,
    /// A metric point that changed no window: the baseline of a cumulative
    /// stream, a repeat of its last point, or a stream beyond `max_streams`.
    Uncounted,
}

/// Window settings of the shard, in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct WindowParams {
    /// Window length.
    pub size: u64,
    /// Allowed lateness after a window's end.
    pub lateness: u64,
    /// Most series this shard holds at once (its share of `max_series`).
    pub max_series: usize,
    /// Most metric streams this shard holds (its share of `max_streams`).
    pub max_streams: usize,
    /// Metric streams not seen for this long (ns) are forgotten.
    pub stream_expiry: u64,
}

/// The accumulation of window `start` in a series' sorted window list.
fn window_entry(windows: &mut Vec<(UnixNanos, Accum)>, start: UnixNanos) -> &mut Accum {
    // Newest first: almost every sample is for the latest window.
    let pos = match windows.iter().rposition(|(s, _)| *s <= start) {
        Some(i) if windows[i].0 == start => i,
        Some(i) => {
            windows.insert(i + 1, (start, Accum::default()));
            i + 1
        }
        None => {
            windows.insert(0, (start, Accum::default()));
            0
        }
    };
    &mut windows[pos].1
}

/// All open windows of one shard.
#[derive(Debug)]
pub struct ShardState {
    params: WindowParams,
    /// Open windows per series, oldest first. Usually one or two (the
    /// current window and the one still in its allowed lateness): a sorted
    /// vector costs far less memory per series than a tree.
    series: SeriesMap<Vec<(UnixNanos, Accum)>>,
    /// Every window whose deadline is ≤ this has been emitted.
    closed_until: UnixNanos,
    late: u64,
    overflowed: u64,
    /// Cumulative metric streams of this shard's series.
    streams: StreamTable,
}

impl ShardState {
    /// An empty shard.
    pub fn new(params: WindowParams) -> ShardState {
        ShardState {
            params,
            series: SeriesMap::default(),
            closed_until: 0,
            late: 0,
            overflowed: 0,
            streams: StreamTable::new(StreamParams {
                max_streams: params.max_streams,
                expiry: params.stream_expiry,
            }),
        }
    }

    /// Adds a sample to its series' window.
    #[inline]
    pub fn record(&mut self, sample: &Sample) -> RecordOutcome {
        self.record_with(&sample.series, sample.ts, |acc| acc.record(sample))
    }

    /// Adds a metric point to its series' window, after turning a cumulative
    /// point into the delta since its stream's last point. A point that only
    /// sets a baseline, repeats an earlier one or finds the stream table full
    /// changes no window ([`RecordOutcome::Uncounted`]).
    pub fn record_point(&mut self, point: PointSample) -> RecordOutcome {
        let series = point.series.clone();
        self.record_point_of(&series, point)
    }

    /// [`ShardState::record_point`] for a caller that already holds a copy
    /// of the point's series key (`series` is `point.series`).
    pub fn record_point_of(&mut self, series: &SeriesKey, point: PointSample) -> RecordOutcome {
        let ts = point.ts;
        match self.streams.delta(point) {
            Delta::Count(kind) => self.record_with(series, ts, |acc| acc.record_point(&kind)),
            Delta::Baseline | Delta::Stale | Delta::Overflow => RecordOutcome::Uncounted,
        }
    }

    /// The stream table (cumulative → delta) of this shard.
    pub fn streams(&self) -> &StreamTable {
        &self.streams
    }

    /// Finds (or creates) the window of `series` containing `ts` and lets `f`
    /// add to it.
    #[inline]
    fn record_with(
        &mut self,
        series: &SeriesKey,
        ts: UnixNanos,
        f: impl FnOnce(&mut Accum),
    ) -> RecordOutcome {
        let window = Window::containing(ts, self.params.size);
        if window.deadline(self.params.lateness) <= self.closed_until {
            self.late += 1;
            return RecordOutcome::Late;
        }
        // Hot path: a known series, one hash lookup, no allocation.
        if let Some(windows) = self.series.get_mut(series) {
            f(window_entry(windows, window.start));
            return RecordOutcome::Accepted;
        }
        let (key, outcome) = if self.series.len() >= self.params.max_series {
            // Bounded memory: an unbounded set of subjects (user ids as
            // grouping keys) lands in one overflow series per contract.
            self.overflowed += 1;
            let key = SeriesKey {
                contract: series.contract,
                subject: Subject::named(crate::model::series::OVERFLOW_SUBJECT),
            };
            (key, RecordOutcome::Overflow)
        } else if series.subject.is_pseudo() {
            (series.clone(), RecordOutcome::Accepted)
        } else {
            (series.clone(), RecordOutcome::NewSeries)
        };
        f(window_entry(
            self.series.entry(key).or_default(),
            window.start,
        ));
        outcome
    }

    /// Emits every window whose deadline (end + allowed lateness) is ≤ `now`,
    /// and forgets series that have no open window left.
    pub fn close_until(&mut self, now: UnixNanos) -> Vec<ClosedWindow> {
        if now <= self.closed_until {
            return Vec::new();
        }
        self.closed_until = now;
        self.streams.expire(now);
        let size = self.params.size;
        let lateness = self.params.lateness;
        let mut out = Vec::new();
        self.series.retain(|key, windows| {
            let closed = windows
                .iter()
                .take_while(|(start, _)| {
                    Window {
                        start: *start,
                        end: start.saturating_add(size),
                    }
                    .deadline(lateness)
                        <= now
                })
                .count();
            for (start, accum) in windows.drain(..closed) {
                out.push(ClosedWindow {
                    series: key.clone(),
                    window: Window {
                        start,
                        end: start.saturating_add(size),
                    },
                    accum,
                });
            }
            !windows.is_empty()
        });
        // Deterministic order for the run engine and for tests.
        out.sort_by(|a, b| (a.window, &a.series).cmp(&(b.window, &b.series)));
        out
    }

    /// Every open window, for a checkpoint.
    pub fn snapshot(&self) -> OpenWindows {
        self.series
            .iter()
            .map(|(k, w)| (k.clone(), w.iter().cloned().collect()))
            .collect()
    }

    /// Puts checkpointed windows back (at start, before any sample). They
    /// are merged into what the shard holds and closed by `close_until` like
    /// any other window.
    pub fn restore(
        &mut self,
        series: SeriesKey,
        windows: std::collections::BTreeMap<UnixNanos, Accum>,
    ) {
        let held = self.series.entry(series).or_default();
        for (start, acc) in windows {
            window_entry(held, start).merge(&acc);
        }
    }

    /// Series currently held.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Samples refused as late so far.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Samples put in the overflow series so far.
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn key(v: &str) -> SeriesKey {
        SeriesKey {
            contract: 0,
            subject: Subject::new(vec![("service.version".into(), v.into())]),
        }
    }

    fn sample(v: &str, ts: u64, ms: f64) -> Sample {
        Sample {
            series: key(v),
            ts,
            latency_ms: ms,
            error: false,
            converted: ms > 50.0,
        }
    }

    fn params() -> WindowParams {
        WindowParams {
            size: 10 * S,
            lateness: 2 * S,
            max_series: 2,
            max_streams: 4,
            stream_expiry: 600 * S,
        }
    }

    #[test]
    fn closes_at_end_plus_lateness_without_new_data() {
        let mut st = ShardState::new(params());
        assert_eq!(
            st.record(&sample("a", 100 * S + 1, 10.0)),
            RecordOutcome::NewSeries
        );
        assert_eq!(
            st.record(&sample("a", 105 * S, 60.0)),
            RecordOutcome::Accepted
        );
        assert_eq!(
            st.record(&sample("a", 110 * S, 20.0)),
            RecordOutcome::Accepted
        );
        // Window [100, 110) closes at 112, not before.
        assert!(st.close_until(111 * S).is_empty());
        let closed = st.close_until(112 * S);
        assert_eq!(closed.len(), 1);
        assert_eq!(
            closed[0].window,
            Window {
                start: 100 * S,
                end: 110 * S
            }
        );
        assert_eq!(closed[0].accum.samples, 2);
        assert_eq!(closed[0].accum.conversions, 1);
        assert_eq!(st.series_count(), 1);
        // The second window closes with no more data arriving.
        let closed = st.close_until(500 * S);
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].window.start, 110 * S);
        assert_eq!(st.series_count(), 0);
    }

    #[test]
    fn late_samples_are_counted_not_aggregated() {
        let mut st = ShardState::new(params());
        st.close_until(112 * S);
        assert_eq!(st.record(&sample("a", 109 * S, 10.0)), RecordOutcome::Late);
        assert_eq!(st.late(), 1);
        assert_eq!(st.series_count(), 0);
        // The next window is still open.
        assert_eq!(
            st.record(&sample("a", 111 * S, 10.0)),
            RecordOutcome::NewSeries
        );
    }

    #[test]
    fn series_beyond_the_limit_overflow() {
        let mut st = ShardState::new(params());
        st.record(&sample("a", S, 1.0));
        st.record(&sample("b", S, 1.0));
        assert_eq!(st.record(&sample("c", S, 1.0)), RecordOutcome::Overflow);
        assert_eq!(st.record(&sample("d", S, 1.0)), RecordOutcome::Overflow);
        // Known series keep being accepted.
        assert_eq!(st.record(&sample("a", S, 1.0)), RecordOutcome::Accepted);
        let closed = st.close_until(u64::MAX / 2);
        let overflow: Vec<_> = closed
            .iter()
            .filter(|c| c.series.subject.is_pseudo())
            .collect();
        assert_eq!(overflow.len(), 1);
        assert_eq!(overflow[0].accum.samples, 2);
        assert_eq!(st.overflowed(), 2);
    }

    #[test]
    fn snapshot_and_restore_keep_every_window() {
        let mut st = ShardState::new(params());
        st.record(&sample("a", 100 * S, 10.0));
        st.record(&sample("a", 111 * S, 20.0));
        let snap = st.snapshot();
        let mut back = ShardState::new(params());
        for (k, w) in snap {
            back.restore(k, w);
        }
        // A restored series is known: its next sample is not a new series.
        assert_eq!(
            back.record(&sample("a", 111 * S, 30.0)),
            RecordOutcome::Accepted
        );
        let closed = back.close_until(500 * S);
        assert_eq!(closed.len(), 2);
        assert_eq!(closed[0].accum.samples, 1);
        assert_eq!(closed[1].accum.samples, 2);
    }

    #[test]
    fn clock_going_backwards_closes_nothing_twice() {
        let mut st = ShardState::new(params());
        st.record(&sample("a", S, 1.0));
        assert_eq!(st.close_until(20 * S).len(), 1);
        assert!(st.close_until(5 * S).is_empty());
    }

    fn exp_point(unit: LatencyUnit, scale: i32, offset: i32, counts: &[u64]) -> PointKind {
        PointKind::Latency(PointLatency {
            unit,
            count: counts.iter().sum(),
            error: false,
            sum: None,
            min: None,
            max: None,
            buckets: Buckets::Exponential {
                scale,
                offset,
                counts: counts.to_vec(),
                zero_count: 0,
                zero_threshold: 0.0,
            },
        })
    }

    fn explicit_point(
        bounds: &[f64],
        counts: &[u64],
        min: Option<f64>,
        max: Option<f64>,
    ) -> PointKind {
        PointKind::Latency(PointLatency {
            unit: LatencyUnit::Seconds,
            count: counts.iter().sum(),
            error: true,
            sum: None,
            min,
            max,
            buckets: Buckets::Explicit {
                bounds: std::sync::Arc::from(bounds),
                counts: counts.to_vec(),
            },
        })
    }

    #[test]
    fn exponential_points_merge_exactly_in_their_unit() {
        // Values in seconds at scale 3, as an SDK with 160 buckets sends them.
        let values: Vec<f64> = (1..=200).map(|i| 0.005 * f64::from(i)).collect();
        let mut direct = Sketch::with_params(3, 2048);
        for &v in &values {
            direct.insert(v).expect("valid");
        }
        let (scale, offset, counts) = direct.positive_buckets();
        let mut acc = Accum::default();
        acc.record_point(&exp_point(LatencyUnit::Seconds, scale, offset, &counts));
        assert_eq!(acc.unit, LatencyUnit::Seconds);
        assert_eq!(acc.latency.positive_buckets(), (scale, offset, counts));
        assert_eq!(acc.samples, 200);
        assert!(!acc.approximate());
        // The reported bound is the coarse scale's, not the default's.
        let f = crate::contracts::Figures::of(&acc);
        assert!(
            f.latency_relative_error > 0.04,
            "{}",
            f.latency_relative_error
        );
        let exact = values[189] * 1000.0; // nearest rank 190 of 200
        let p95 = f.p95_latency_ms.unwrap_or(0.0);
        let bound = f.p95_latency_error_ms.unwrap_or(0.0);
        assert!(
            (p95 - exact).abs() <= bound,
            "p95 {p95} exact {exact} bound {bound}"
        );
        assert!((p95 - exact).abs() <= f.latency_relative_error * exact * 1.000_001);
        // A second point of another unit is re-bucketed, and says so.
        acc.record_point(&exp_point(LatencyUnit::Millis, 3, offset + 80, &[5]));
        assert_eq!(acc.unit, LatencyUnit::Seconds);
        assert!(acc.approximate());
        assert_eq!(acc.latency.count(), 205);
    }

    #[test]
    fn explicit_buckets_spread_with_a_bucket_width_bound() {
        let bounds = [0.01, 0.05, 0.1, 0.5];
        // 10 in (0, 10ms], 60 in (10, 50], 25 in (50, 100], 5 in (100, 500].
        let mut acc = Accum::default();
        acc.record_point(&explicit_point(
            &bounds,
            &[10, 60, 25, 5, 0],
            Some(0.002),
            Some(0.3),
        ));
        assert_eq!(
            (acc.samples, acc.errors, acc.latency.count()),
            (100, 100, 100)
        );
        assert!(acc.approximate());
        let f = crate::contracts::Figures::of(&acc);
        // p95 (rank 95) is in the (50, 100] ms bucket: reported within it,
        // with that width (plus the sketch's bound) as its bound.
        let p95 = f.p95_latency_ms.unwrap_or(0.0);
        assert!(
            (50.0..=100.0 * (1.0 + f.latency_relative_error)).contains(&p95),
            "{p95}"
        );
        let bound = f.p95_latency_error_ms.unwrap_or(0.0);
        assert!((50.0..60.0).contains(&bound), "{bound}");
        // Spreading is uniform: the median of (10, 50] ms lies near 30 ms
        // (rank 40 of 100 is the middle of the 60 values in that bucket).
        let mid = acc.latency.quantile(0.40).map_or(0.0, |q| q.value);
        assert!((0.027..0.033).contains(&mid), "{mid}");
        // max clamps the last bucket: nothing above 300 ms.
        assert!(acc.latency.max().unwrap_or(1.0) <= 0.3);
        // min clamps the first one: nothing below 2 ms.
        assert!(acc.latency.min().unwrap_or(0.0) >= 0.002);
    }

    #[test]
    fn explicit_open_top_bucket_has_no_bound() {
        let mut acc = Accum::default();
        acc.record_point(&explicit_point(&[0.1], &[1, 99], None, None));
        let f = crate::contracts::Figures::of(&acc);
        assert_eq!(f.p95_latency_error_ms, Some(f64::INFINITY));
        let json = f.bound().json_fields();
        assert_eq!(json[2].1, serde_json::Value::Null);
        assert_eq!(json[1].1, serde_json::Value::Bool(true));
    }

    #[test]
    fn spreading_preserves_counts_for_any_input() {
        for (counts, min, max) in [
            (vec![1u64, 0, 7, 3, 2], None, None),
            (vec![0, 1000, 1, 0, 999], Some(0.0), Some(7.0)),
            (vec![3, 3, 3, 3, 3], Some(0.2), Some(0.2)),
            (vec![u64::from(u32::MAX), 1, 1, 1, 1], Some(1e-9), Some(1e9)),
        ] {
            let mut acc = Accum::default();
            let total: u64 = counts.iter().sum();
            acc.record_point(&explicit_point(&[0.001, 0.01, 0.5, 5.0], &counts, min, max));
            assert_eq!(acc.latency.count(), total, "{counts:?}");
            assert_eq!(acc.latency.rejected(), 0);
        }
    }

    #[test]
    fn conversions_and_merge_across_units() {
        let mut a = Accum::default();
        a.record_point(&PointKind::Conversions(3.0));
        a.record_point(&exp_point(LatencyUnit::Seconds, 3, 0, &[4]));
        let mut run = Accum::default();
        // An empty millisecond window merges without changing anything.
        run.merge(&Accum::default());
        run.merge(&a);
        run.merge(&Accum::default());
        assert_eq!(
            (run.unit, run.conversions, run.samples),
            (LatencyUnit::Seconds, 3, 4)
        );
        assert!(!run.approximate());
        let mut spans = Accum::default();
        spans.record(&sample("a", 1, 1500.0));
        run.merge(&spans);
        assert!(run.approximate());
        assert_eq!(run.latency.count(), 5);
        let top = run.latency.quantile(1.0).map_or(0.0, |q| q.value);
        assert!((top - 1.5).abs() < 0.1, "{top}");
    }

    #[test]
    fn cumulative_points_count_deltas_in_their_windows() {
        let mut st = ShardState::new(params());
        let point = |ts: u64, start: u64, fresh: bool, v: f64| PointSample {
            series: key("m"),
            ts,
            start,
            stream: crate::model::point::StreamId(1, 2),
            temporality: crate::model::point::Temporality::Cumulative,
            fresh,
            kind: PointKind::Conversions(v),
        };
        // Old start: a baseline only.
        assert_eq!(
            st.record_point(point(101 * S, S, false, 50.0)),
            RecordOutcome::Uncounted
        );
        assert_eq!(
            st.record_point(point(105 * S, S, false, 53.0)),
            RecordOutcome::NewSeries
        );
        assert_eq!(
            st.record_point(point(111 * S, S, false, 60.0)),
            RecordOutcome::Accepted
        );
        let closed = st.close_until(500 * S);
        let conv: Vec<u64> = closed.iter().map(|c| c.accum.conversions).collect();
        assert_eq!(conv, vec![3, 7]);
        assert_eq!(st.streams().len(), 1);
        // 600 s of silence later the stream is forgotten.
        st.close_until(800 * S);
        assert_eq!(st.streams().len(), 0);
    }
}
