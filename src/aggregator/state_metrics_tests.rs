//! Whole windows after the shard, for metric points: the fast path (the
//! stream table's allocation-free deltas, explicit points summed in their
//! window and spread once with the one-pass spreading) against the
//! straightforward one (each stream's last point kept whole, deltas
//! subtracted bucket by bucket, each window's deltas summed per layout and
//! spread by the reference spreading), on generated sequences of
//! cumulative explicit-bucket points with restarts, drops, retries and
//! points whose start lies before any open window.
//!
//! Before explicit points were summed, the straightforward window spread
//! each delta on its own; how far the sums' quantiles may lie from that is
//! `model::open_accum`'s test (within the bucket width).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::model::open_accum::summed_tests::straightforward;
use crate::model::point::{Buckets, LatencyUnit, PointKind, PointLatency, StreamId, Temporality};

const S: u64 = 1_000_000_000;
const BOUNDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The shard tests' windows, with room for every generated stream.
fn params() -> WindowParams {
    WindowParams {
        max_streams: 64,
        ..super::tests::params()
    }
}

fn series(stream: u64) -> SeriesKey {
    SeriesKey {
        contract: 0,
        subject: Subject::named(if stream.is_multiple_of(2) {
            "even"
        } else {
            "odd"
        }),
    }
}

fn latency(counts: Vec<u64>, sum: Option<f64>, clamps: Option<(f64, f64)>) -> PointLatency {
    PointLatency {
        unit: LatencyUnit::Seconds,
        count: counts.iter().sum(),
        error: false,
        sum,
        min: clamps.map(|c| c.0),
        max: clamps.map(|c| c.1),
        buckets: Buckets::Explicit {
            bounds: Arc::from(&BOUNDS[..]),
            counts,
        },
    }
}

/// What the straightforward path remembers of a cumulative stream: its
/// last point whole, with its start and time.
pub(crate) type LastPoint = (u64, u64, PointKind);

/// The straightforward cumulative → delta of one point, given the
/// stream's last point (`None` for a new stream): what its window counts,
/// or `None` when it counts nothing. Whether the stream then remembers
/// the point is [`remembered`].
pub(crate) fn straightforward_delta(
    last: Option<&LastPoint>,
    p: &PointSample,
) -> Option<PointKind> {
    if p.temporality == Temporality::Delta {
        return Some(p.kind.clone());
    }
    let Some((start, ts, prev)) = last else {
        return p.fresh.then(|| p.kind.clone());
    };
    if p.ts <= *ts && p.start == *start {
        return None;
    }
    if p.start != *start {
        return p.fresh.then(|| p.kind.clone());
    }
    // A value that dropped under the same start is a reset: the point
    // counts whole.
    Some(subtracted(&p.kind, prev).unwrap_or_else(|| p.kind.clone()))
}

/// A cumulative point replaces its stream's last point unless it is a
/// retry (same start, not newer).
pub(crate) fn remembered(last: Option<&LastPoint>, p: &PointSample) -> bool {
    p.temporality == Temporality::Cumulative
        && !last.is_some_and(|(s, t, _)| p.ts <= *t && p.start == *s)
}

/// `cur - prev`, or `None` when a value dropped or the two do not line up.
fn subtracted(cur: &PointKind, prev: &PointKind) -> Option<PointKind> {
    let (c, l) = match (cur, prev) {
        (PointKind::Conversions(v), PointKind::Conversions(l)) => {
            return (v >= l).then(|| PointKind::Conversions(v - l))
        }
        (PointKind::Latency(c), PointKind::Latency(l)) => (c, l),
        _ => return None,
    };
    let explicit = matches!(c.buckets, Buckets::Explicit { .. });
    let buckets = match (&c.buckets, &l.buckets) {
        (
            Buckets::Explicit { bounds, counts },
            Buckets::Explicit {
                bounds: lb,
                counts: lc,
            },
        ) => {
            if bounds != lb || counts.len() != lc.len() {
                return None;
            }
            let mut out = Vec::new();
            for (c, p) in counts.iter().zip(lc) {
                out.push(c.checked_sub(*p)?);
            }
            Buckets::Explicit {
                bounds: bounds.clone(),
                counts: out,
            }
        }
        (
            Buckets::Exponential {
                scale,
                offset,
                counts,
                zero_count,
                zero_threshold,
            },
            Buckets::Exponential {
                scale: ls,
                offset: lo,
                counts: lc,
                zero_count: lz,
                ..
            },
        ) => {
            // The last point's buckets at the current scale (a lower
            // scale merges pairs of buckets), by absolute index.
            if ls < scale || ls - scale >= 64 {
                return None;
            }
            let mut prev: BTreeMap<i64, u64> = BTreeMap::new();
            for (j, c) in lc.iter().enumerate() {
                let index = (i64::from(*lo) + j as i64) >> (ls - scale);
                *prev.entry(index).or_default() += c;
            }
            let mut out = Vec::new();
            for (j, c) in counts.iter().enumerate() {
                let p = prev.remove(&(i64::from(*offset) + j as i64)).unwrap_or(0);
                out.push(c.checked_sub(p)?);
            }
            if prev.values().any(|&p| p > 0) {
                return None;
            }
            Buckets::Exponential {
                scale: *scale,
                offset: *offset,
                counts: out,
                zero_count: zero_count.checked_sub(*lz)?,
                zero_threshold: *zero_threshold,
            }
        }
        _ => return None,
    };
    Some(PointKind::Latency(PointLatency {
        unit: c.unit,
        count: c.count.checked_sub(l.count)?,
        error: c.error,
        sum: c.sum.zip(l.sum).map(|(a, b)| (a - b).max(0.0)),
        // The stream's extremes still bound an explicit delta's values;
        // an exponential delta has no extremes of its own.
        min: c.min.filter(|_| explicit),
        max: c.max.filter(|_| explicit),
        buckets,
    }))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Same windows, accumulation for accumulation.
    #[test]
    fn metric_windows_are_the_straightforward_ones(
        points in prop::collection::vec(
            (
                0u64..6,
                0u64..3,
                0u64..8,
                prop::collection::vec(0u64..40, 15),
                proptest::bool::weighted(0.8),
                proptest::option::of((0.0005f64..0.02, 1.0f64..15.0)),
            ),
            1..60,
        ),
    ) {
        let mut fast = ShardState::new(params());
        let mut last: HashMap<u64, LastPoint> = HashMap::new();
        let mut deltas: BTreeMap<(String, u64), Vec<PointKind>> = BTreeMap::new();
        let mut now = 100 * S;
        let mut totals: HashMap<u64, Vec<u64>> = HashMap::new();
        for (stream, start, step, add, fresh, clamps) in points {
            now += step * S / 2;
            // Cumulative counts grow, except sometimes (a drop: a reset).
            let total = totals.entry(stream).or_insert_with(|| vec![0; 15]);
            if add[0] == 39 {
                total.iter_mut().for_each(|c| *c /= 2);
            }
            total.iter_mut().zip(&add).for_each(|(t, a)| *t += a % 7);
            let l = latency(total.clone(), Some(total.iter().sum::<u64>() as f64 * 0.1), clamps);
            let p = PointSample {
                series: series(stream),
                ts: now,
                start: start * S,
                stream: StreamId(stream, 7),
                temporality: Temporality::Cumulative,
                fresh,
                kind: PointKind::Latency(l),
            };
            if let Some(d) = straightforward_delta(last.get(&stream), &p) {
                let window = now - now % (10 * S);
                deltas
                    .entry((format!("{:?}", p.series), window))
                    .or_default()
                    .push(d);
            }
            if remembered(last.get(&stream), &p) {
                last.insert(stream, (p.start, p.ts, p.kind.clone()));
            }
            fast.record_point(p);
        }
        let want: BTreeMap<(String, u64), Accum> = deltas
            .into_iter()
            .map(|(k, points)| (k, straightforward(&points)))
            .collect();
        let got: BTreeMap<(String, u64), Accum> = fast
            .close_until(u64::MAX / 2)
            .into_iter()
            .map(|w| ((format!("{:?}", w.series), w.window.start), w.accum))
            .collect();
        prop_assert_eq!(got, want);
    }
}
