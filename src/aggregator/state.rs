//! The pure core of one aggregator shard: samples in, closed windows out.
//! No async, no clock reads — the driver passes `now` in — so every rule
//! about lateness, overflow and closing is tested with plain `#[test]`s.

use std::collections::{BTreeMap, HashMap};

use super::sketch::Sketch;
use crate::model::{Sample, SeriesKey, Subject, UnixNanos, Window};

/// What one window of one series accumulated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Accum {
    /// Latency sketch in milliseconds.
    pub latency: Sketch,
    /// Requests seen.
    pub samples: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Requests that converted.
    pub conversions: u64,
}

impl Accum {
    /// Adds one sample. A latency the sketch refuses still counts as a
    /// request (its error and conversion flags are real); the caller checked
    /// finiteness already, so this only guards against misuse. NaN means "no
    /// latency" (see [`Sample::latency_ms`]) and is not offered to the sketch.
    pub fn record(&mut self, s: &Sample) {
        if !s.latency_ms.is_nan() {
            let _ = self.latency.insert(s.latency_ms);
        }
        self.samples += 1;
        self.errors += u64::from(s.error);
        self.conversions += u64::from(s.converted);
    }

    /// Adds everything `other` accumulated.
    pub fn merge(&mut self, other: &Accum) {
        self.latency.merge(&other.latency);
        self.samples += other.samples;
        self.errors += other.errors;
        self.conversions += other.conversions;
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
}

/// All open windows of one shard.
#[derive(Debug)]
pub struct ShardState {
    params: WindowParams,
    /// Open windows per series, keyed by window start.
    series: HashMap<SeriesKey, BTreeMap<UnixNanos, Accum>>,
    /// Every window whose deadline is ≤ this has been emitted.
    closed_until: UnixNanos,
    late: u64,
    overflowed: u64,
}

impl ShardState {
    /// An empty shard.
    pub fn new(params: WindowParams) -> ShardState {
        ShardState {
            params,
            series: HashMap::new(),
            closed_until: 0,
            late: 0,
            overflowed: 0,
        }
    }

    /// Adds a sample to its series' window.
    pub fn record(&mut self, sample: &Sample) -> RecordOutcome {
        let window = Window::containing(sample.ts, self.params.size);
        if window.deadline(self.params.lateness) <= self.closed_until {
            self.late += 1;
            return RecordOutcome::Late;
        }
        // Hot path: a known series, one hash lookup, no allocation.
        if let Some(windows) = self.series.get_mut(&sample.series) {
            windows.entry(window.start).or_default().record(sample);
            return RecordOutcome::Accepted;
        }
        let (key, outcome) = if self.series.len() >= self.params.max_series {
            // Bounded memory: an unbounded set of subjects (user ids as
            // grouping keys) lands in one overflow series per contract.
            self.overflowed += 1;
            let key = SeriesKey {
                contract: sample.series.contract,
                subject: Subject::named(crate::model::series::OVERFLOW_SUBJECT),
            };
            (key, RecordOutcome::Overflow)
        } else if sample.series.subject.is_pseudo() {
            (sample.series.clone(), RecordOutcome::Accepted)
        } else {
            (sample.series.clone(), RecordOutcome::NewSeries)
        };
        self.series
            .entry(key)
            .or_default()
            .entry(window.start)
            .or_default()
            .record(sample);
        outcome
    }

    /// Emits every window whose deadline (end + allowed lateness) is ≤ `now`,
    /// and forgets series that have no open window left.
    pub fn close_until(&mut self, now: UnixNanos) -> Vec<ClosedWindow> {
        if now <= self.closed_until {
            return Vec::new();
        }
        self.closed_until = now;
        let size = self.params.size;
        let lateness = self.params.lateness;
        let mut out = Vec::new();
        self.series.retain(|key, windows| {
            while let Some(entry) = windows.first_entry() {
                let window = Window {
                    start: *entry.key(),
                    end: entry.key().saturating_add(size),
                };
                if window.deadline(lateness) > now {
                    break;
                }
                out.push(ClosedWindow {
                    series: key.clone(),
                    window,
                    accum: entry.remove(),
                });
            }
            !windows.is_empty()
        });
        // Deterministic order for the run engine and for tests.
        out.sort_by(|a, b| (a.window, &a.series).cmp(&(b.window, &b.series)));
        out
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
    fn clock_going_backwards_closes_nothing_twice() {
        let mut st = ShardState::new(params());
        st.record(&sample("a", S, 1.0));
        assert_eq!(st.close_until(20 * S).len(), 1);
        assert!(st.close_until(5 * S).is_empty());
    }
}
