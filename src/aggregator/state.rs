//! The pure core of one aggregator shard: samples in, closed windows out.
//! No async, no clock reads — the driver passes `now` in — so every rule
//! about lateness, overflow and closing is tested with plain `#[test]`s.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::streams::{Counted, StreamParams, StreamTable};
use crate::model::series::SeriesMap;
use crate::model::{
    Accum, ClosedWindow, OpenAccum, OpenWindows, PointSample, Rejected, RejectionTally, Sample,
    SeriesKey, Subject, UnixNanos, Window, WindowTiming,
};

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

/// The subjects a pipeline holds, shared by its shards: `max_series`
/// bounds them for the whole pipeline, not per shard, so a skewed hash
/// cannot overflow one shard while another has room.
#[derive(Debug)]
pub struct SubjectSlots {
    held: AtomicUsize,
    max: usize,
}

impl SubjectSlots {
    /// Room for `max` subjects.
    pub fn new(max: usize) -> Arc<SubjectSlots> {
        Arc::new(SubjectSlots {
            held: AtomicUsize::new(0),
            max: max.max(1),
        })
    }

    /// Takes a slot if one is free.
    fn take(&self) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Takes a slot whether or not one is free (restored subjects).
    fn take_anyway(&self) {
        self.held.fetch_add(1, Ordering::AcqRel);
    }

    /// Gives a slot back.
    fn give(&self) {
        let _ = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Subjects held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }
}

/// Window settings of the shard, in nanoseconds.
#[derive(Debug, Clone)]
pub struct WindowParams {
    /// Window length and lateness.
    pub timing: WindowTiming,
    /// The pipeline's subjects, shared by its shards (`max_series`).
    pub slots: Arc<SubjectSlots>,
    /// How long each contract (by index) holds a subject after its last
    /// sample (`run_idle_timeout`, ns); a contract beyond the list holds
    /// it for an hour.
    pub idle: Arc<[u64]>,
    /// Most metric streams this shard holds (its share of `max_streams`).
    pub max_streams: usize,
    /// Metric streams not seen for this long (ns) are forgotten.
    pub stream_expiry: u64,
}

/// The accumulation of window `start` in a series' sorted window list.
fn window_entry(windows: &mut Vec<(UnixNanos, OpenAccum)>, start: UnixNanos) -> &mut OpenAccum {
    // Newest first: almost every sample is for the latest window.
    let pos = match windows.iter().rposition(|(s, _)| *s <= start) {
        Some(i) if windows[i].0 == start => i,
        Some(i) => {
            windows.insert(i + 1, (start, OpenAccum::default()));
            i + 1
        }
        None => {
            windows.insert(0, (start, OpenAccum::default()));
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
    /// vector costs far less memory per series than a tree. Explicit
    /// histogram points wait in them summed, and are spread into the
    /// sketch when the window closes or is copied ([`OpenAccum`]).
    series: SeriesMap<Vec<(UnixNanos, OpenAccum)>>,
    /// Every window whose deadline is ≤ this has been emitted.
    closed_until: UnixNanos,
    /// Subjects holding a slot, with the end of their newest window that
    /// had data: a subject leaves after its contract's idle timeout.
    admitted: SeriesMap<UnixNanos>,
    /// When idle subjects were last looked for.
    admitted_checked: UnixNanos,
    late: u64,
    overflowed: u64,
    /// Cumulative metric streams of this shard's series.
    streams: StreamTable,
    /// Items rejected at the edge for admitted series since the last tick
    /// (bounded: only subjects holding a slot, a bounded tally each).
    rejections: SeriesMap<RejectionTally>,
    /// Subjects holding a slot for their rejected items alone, with the
    /// end of the window of their last rejection: their first sample is a
    /// new series for the run engine all the same.
    rejected_only: SeriesMap<UnixNanos>,
}

impl ShardState {
    /// An empty shard.
    pub fn new(params: WindowParams) -> ShardState {
        let streams = StreamTable::new(StreamParams {
            max_streams: params.max_streams,
            expiry: params.stream_expiry,
        });
        ShardState {
            params,
            series: SeriesMap::default(),
            closed_until: 0,
            admitted: SeriesMap::default(),
            admitted_checked: 0,
            late: 0,
            overflowed: 0,
            streams,
            rejections: SeriesMap::default(),
            rejected_only: SeriesMap::default(),
        }
    }

    /// Tallies items rejected at the edge for `series` at `now`, for its
    /// run to say why it has no samples. The subject takes a place in
    /// `max_series` like one with samples (and keeps it while rejections
    /// keep coming, so its run is not retired as idle meanwhile); when no
    /// place is free, or for pseudo series, nothing is kept. Returns
    /// whether the rejection was kept.
    pub fn record_rejection(
        &mut self,
        series: &SeriesKey,
        rejected: &Rejected,
        now: UnixNanos,
    ) -> bool {
        if series.subject.is_pseudo() {
            return false;
        }
        let end = self.params.timing.window_of(now).end;
        if let Some(last) = self
            .admitted
            .get_mut(series)
            .or_else(|| self.rejected_only.get_mut(series))
        {
            *last = (*last).max(end);
        } else if self.params.slots.take() {
            self.rejected_only.insert(series.clone(), end);
        } else {
            return false;
        }
        self.rejections
            .entry(series.clone())
            .or_default()
            .add(rejected);
        true
    }

    /// The rejections tallied since the last call, by series.
    pub fn take_rejections(&mut self) -> Vec<(SeriesKey, RejectionTally)> {
        let mut out: Vec<_> = self.rejections.drain().collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
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
    pub fn record_point(&mut self, mut point: PointSample) -> RecordOutcome {
        self.record_point_in(&mut point)
    }

    /// [`ShardState::record_point`] without moving the point (the shard's
    /// path): it may be left holding its delta.
    #[inline]
    pub fn record_point_in(&mut self, point: &mut PointSample) -> RecordOutcome {
        match self.streams.delta_of(point) {
            Counted::Count => {
                let kind = &point.kind;
                self.record_with(&point.series, point.ts, |acc| acc.record_point(kind))
            }
            Counted::Baseline | Counted::Stale | Counted::Overflow => RecordOutcome::Uncounted,
        }
    }

    /// Brings the streams of a batch of points into cache before they
    /// are recorded one by one ([`StreamTable::warm`]).
    pub fn warm_streams(&self, points: &[PointSample]) {
        self.streams.warm(points);
    }

    /// The stream table (cumulative → delta) of this shard.
    pub fn streams(&self) -> &StreamTable {
        &self.streams
    }

    /// Replaces the stream table with one kept from an earlier server of
    /// the same pipeline (a reload), under this shard's bounds.
    pub fn resume_streams(&mut self, mut table: StreamTable) {
        table.set_params(StreamParams {
            max_streams: self.params.max_streams,
            expiry: self.params.stream_expiry,
        });
        self.streams = table;
    }

    /// The stream table, for the next server of the pipeline; this shard
    /// is left with an empty one.
    pub fn take_streams(&mut self) -> StreamTable {
        let empty = StreamTable::new(StreamParams {
            max_streams: self.params.max_streams,
            expiry: self.params.stream_expiry,
        });
        std::mem::replace(&mut self.streams, empty)
    }

    /// Finds (or creates) the window of `series` containing `ts` and lets `f`
    /// add to it.
    #[inline]
    fn record_with(
        &mut self,
        series: &SeriesKey,
        ts: UnixNanos,
        f: impl FnOnce(&mut OpenAccum),
    ) -> RecordOutcome {
        let window = self.params.timing.window_of(ts);
        if window.deadline(self.params.timing.lateness) <= self.closed_until {
            self.late += 1;
            return RecordOutcome::Late;
        }
        // Hot path: a known series, one hash lookup, no allocation.
        if let Some(windows) = self.series.get_mut(series) {
            f(window_entry(windows, window.start));
            return RecordOutcome::Accepted;
        }
        let (key, outcome) = if series.subject.is_overflow() || self.admitted.contains_key(series) {
            (series.clone(), RecordOutcome::Accepted)
        } else if self.rejected_only.remove(series).is_some() {
            // Its place is taken already, by its rejected items.
            self.admitted.insert(series.clone(), window.end);
            (series.clone(), RecordOutcome::NewSeries)
        } else if self.params.slots.take() {
            self.admitted.insert(series.clone(), window.end);
            (series.clone(), RecordOutcome::NewSeries)
        } else {
            // Bounded memory: an unbounded set of subjects (user ids as
            // grouping keys) lands in one overflow series per contract.
            self.overflowed += 1;
            let key = SeriesKey {
                contract: series.contract,
                subject: Subject::named(crate::model::series::OVERFLOW_SUBJECT),
            };
            (key, RecordOutcome::Overflow)
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
        let size = self.params.timing.size;
        let lateness = self.params.timing.lateness;
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
                if let Some(last) = self.admitted.get_mut(key) {
                    *last = (*last).max(start.saturating_add(size));
                }
                out.push(ClosedWindow {
                    series: key.clone(),
                    window: Window {
                        start,
                        end: start.saturating_add(size),
                    },
                    accum: accum.into_accum(),
                });
            }
            !windows.is_empty()
        });
        self.release_idle(now);
        // Deterministic order for the run engine and for tests.
        out.sort_by(|a, b| (a.window, &a.series).cmp(&(b.window, &b.series)));
        out
    }

    /// Gives back the slots of subjects idle for their contract's timeout
    /// (and without an open window). Looked for at most once a second:
    /// the map is bounded by `max_series`.
    fn release_idle(&mut self, now: UnixNanos) {
        if now < self.admitted_checked.saturating_add(1_000_000_000) {
            return;
        }
        self.admitted_checked = now;
        let (series, idle, slots) = (&self.series, &self.params.idle, &self.params.slots);
        let timeout = |key: &SeriesKey| {
            idle.get(key.contract as usize)
                .copied()
                .unwrap_or(3_600_000_000_000)
        };
        self.admitted.retain(|key, last| {
            let keep = series.contains_key(key) || last.saturating_add(timeout(key)) > now;
            if !keep {
                slots.give();
            }
            keep
        });
        self.rejected_only.retain(|key, last| {
            let keep = last.saturating_add(timeout(key)) > now;
            if !keep {
                slots.give();
            }
            keep
        });
    }

    /// Every open window, for a checkpoint.
    pub fn snapshot(&self) -> OpenWindows {
        self.series
            .iter()
            .map(|(k, w)| {
                (
                    k.clone(),
                    w.iter().map(|(s, a)| (*s, a.to_accum())).collect(),
                )
            })
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
        if !series.subject.is_overflow() && !self.admitted.contains_key(&series) {
            // What was held before a restart is held again, even past a
            // lowered max_series: its data is accepted already.
            self.params.slots.take_anyway();
            let last = windows
                .keys()
                .last()
                .map_or(0, |s| s.saturating_add(self.params.timing.size));
            self.admitted.insert(series.clone(), last);
        }
        let held = self.series.entry(series).or_default();
        for (start, acc) in windows {
            window_entry(held, start).merge(&acc);
        }
    }

    /// Series with an open window.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Subjects holding a slot in this shard.
    pub fn admitted_count(&self) -> usize {
        self.admitted.len()
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
#[path = "state_metrics_tests.rs"]
pub(crate) mod metrics_tests;

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

    pub(super) fn params() -> WindowParams {
        WindowParams {
            timing: WindowTiming {
                size: 10 * S,
                lateness: 2 * S,
                max_clock_skew: 0,
            },
            slots: SubjectSlots::new(2),
            idle: std::sync::Arc::from([3_600_000_000_000u64; 1]),
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

    /// `max_series` holds for the pipeline, whatever the shards: two
    /// shards sharing two slots admit two subjects in all, and a subject
    /// gives its slot back after its contract's idle timeout.
    #[test]
    fn max_series_is_shared_by_the_shards_and_idle_subjects_leave() {
        let shared = WindowParams {
            idle: std::sync::Arc::from([30 * S; 1]),
            ..params()
        };
        let mut a = ShardState::new(shared.clone());
        let mut b = ShardState::new(shared.clone());
        assert_eq!(a.record(&sample("a", S, 1.0)), RecordOutcome::NewSeries);
        assert_eq!(b.record(&sample("b", S, 1.0)), RecordOutcome::NewSeries);
        assert_eq!(a.record(&sample("c", S, 1.0)), RecordOutcome::Overflow);
        assert_eq!(b.record(&sample("d", S, 1.0)), RecordOutcome::Overflow);
        assert_eq!(shared.slots.held(), 2);
        // Held subjects keep their slot between windows.
        a.close_until(20 * S);
        assert_eq!(a.record(&sample("a", 25 * S, 1.0)), RecordOutcome::Accepted);
        assert_eq!(a.record(&sample("c", 25 * S, 1.0)), RecordOutcome::Overflow);
        // b's subject last had data in [0, 10): idle at 40 s.
        b.close_until(45 * S);
        assert_eq!(shared.slots.held(), 1);
        assert_eq!(b.admitted_count(), 0);
        assert_eq!(
            b.record(&sample("d", 46 * S, 1.0)),
            RecordOutcome::NewSeries
        );
        assert_eq!(shared.slots.held(), 2);
    }

    fn unit_rejection() -> Rejected {
        Rejected {
            noun: "points",
            metric: "validation.score".into(),
            reason: "unit",
            why: "unit \"1\" is not s, ms or us".into(),
            count: 3,
        }
    }

    /// Rejected items take a place in `max_series` like samples (so they
    /// cannot make runs without bound), keep it while they keep coming,
    /// and give it back when they stop; their subject's first sample is
    /// still a new series for the run engine.
    #[test]
    fn rejections_take_a_place_like_samples() {
        let shared = WindowParams {
            idle: std::sync::Arc::from([30 * S; 1]),
            ..params()
        };
        let mut st = ShardState::new(shared.clone());
        let r = unit_rejection();
        assert!(st.record_rejection(&key("a"), &r, S));
        assert!(st.record_rejection(&key("a"), &r, 2 * S));
        assert!(st.record_rejection(&key("b"), &r, S));
        // Two places: a third subject's rejections are not kept.
        assert!(!st.record_rejection(&key("c"), &r, S));
        let overflow = SeriesKey {
            contract: 0,
            subject: Subject::named(crate::model::series::OVERFLOW_SUBJECT),
        };
        assert!(!st.record_rejection(&overflow, &r, S));
        assert_eq!(shared.slots.held(), 2);
        let taken = st.take_rejections();
        assert_eq!(taken.len(), 2);
        assert_eq!((taken[0].0.clone(), taken[0].1.total()), (key("a"), 6));
        assert!(st.take_rejections().is_empty());
        // a's first sample is news to the run engine, in the place it has.
        assert_eq!(
            st.record(&sample("a", 25 * S, 1.0)),
            RecordOutcome::NewSeries
        );
        assert_eq!(shared.slots.held(), 2);
        // b's rejections stopped at 1 s (window end 10 s): its place is
        // free 30 s later; a keeps its place with its window.
        st.close_until(39 * S);
        assert_eq!(shared.slots.held(), 2);
        st.close_until(41 * S);
        assert_eq!(shared.slots.held(), 1);
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

    #[test]
    fn cumulative_points_count_deltas_in_their_windows() {
        let mut st = ShardState::new(params());
        use crate::model::point::PointKind;
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
