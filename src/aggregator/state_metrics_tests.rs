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

/// The straightforward cumulative → delta of one point, given the
/// stream's last point (`None` for a new stream).
fn straightforward_delta(
    last: Option<&(u64, u64, PointLatency)>,
    p: &PointSample,
    l: &PointLatency,
) -> Option<PointLatency> {
    let Some((start, ts, prev)) = last else {
        return p.fresh.then(|| l.clone());
    };
    if p.ts <= *ts && p.start == *start {
        return None;
    }
    if p.start != *start {
        return p.fresh.then(|| l.clone());
    }
    let (Buckets::Explicit { counts, .. }, Buckets::Explicit { counts: pc, .. }) =
        (&l.buckets, &prev.buckets)
    else {
        unreachable!("explicit points only")
    };
    let dropped = l.count < prev.count || counts.iter().zip(pc).any(|(c, p)| c < p);
    if dropped {
        return Some(l.clone());
    }
    let mut d = latency(
        counts.iter().zip(pc).map(|(c, p)| c - p).collect(),
        match (l.sum, prev.sum) {
            (Some(a), Some(b)) => Some((a - b).max(0.0)),
            _ => None,
        },
        None,
    );
    d.count = l.count - prev.count;
    d.min = l.min;
    d.max = l.max;
    Some(d)
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
        let mut last: HashMap<u64, (u64, u64, PointLatency)> = HashMap::new();
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
                kind: PointKind::Latency(l.clone()),
            };
            if let Some(d) = straightforward_delta(last.get(&stream), &p, &l) {
                let window = now - now % (10 * S);
                deltas
                    .entry((format!("{:?}", p.series), window))
                    .or_default()
                    .push(PointKind::Latency(d));
            }
            let stale = last
                .get(&stream)
                .is_some_and(|(s, t, _)| p.ts <= *t && p.start == *s);
            if !stale {
                last.insert(stream, (p.start, p.ts, l));
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
