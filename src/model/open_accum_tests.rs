//! An open window's summed explicit points against the straightforward
//! accumulation: each point counted as it comes (its requests, errors,
//! unit and bounds, but none of its buckets), and the buckets of each
//! layout added up over the whole window and spread once at the end with
//! the reference spreading — the same accumulation, sketch and all. And
//! against spreading every point on its own (what a window did before):
//! the same counts, and quantiles within the bucket width.

use proptest::prelude::*;

use super::*;
use crate::model::accum::spread_tests::{record_point_reference, spread_explicit_in_reference};
use crate::model::accum::tests::exp_point;

/// Bounds of the layouts points are drawn from: the semantic-convention
/// seconds, an SDK's default milliseconds, and a narrow pair.
fn layouts() -> Vec<(LatencyUnit, Arc<[f64]>)> {
    vec![
        (
            LatencyUnit::Seconds,
            Arc::from(
                &[
                    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                ][..],
            ),
        ),
        (
            LatencyUnit::Millis,
            Arc::from(
                &[
                    0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0,
                    5000.0, 7500.0, 10000.0,
                ][..],
            ),
        ),
        (LatencyUnit::Seconds, Arc::from(&[0.1, 0.3][..])),
    ]
}

/// A count: mostly zero or small, sometimes huge.
fn count() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => Just(0u64),
        5 => 1u64..200,
        1 => 1_000_000u64..10_000_000_000_000,
        1 => prop::sample::select(vec![u64::MAX / 3, u64::MAX]),
    ]
}

/// An extreme: none, one anywhere (even outside the point's buckets), or
/// not finite (ignored by spreading).
fn extreme() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        3 => Just(None),
        3 => (-12.0f64..14.0).prop_map(|e| Some(e.exp2())),
        1 => prop::sample::select(vec![Some(0.0), Some(-1.0), Some(f64::NAN), Some(f64::INFINITY)]),
    ]
}

/// An explicit point of `unit` and `bounds` (its count is its buckets').
fn explicit_in(
    unit: LatencyUnit,
    bounds: Arc<[f64]>,
    counts: Vec<u64>,
    min: Option<f64>,
    max: Option<f64>,
) -> PointKind {
    PointKind::Latency(PointLatency {
        unit,
        count: counts.iter().fold(0u64, |a, c| a.saturating_add(*c)),
        error: counts.first().is_some_and(|c| c % 2 == 1),
        sum: None,
        min,
        max,
        buckets: Buckets::Explicit { bounds, counts },
    })
}

/// A point of one of the [`layouts`].
fn explicit(layout: usize, counts: Vec<u64>, min: Option<f64>, max: Option<f64>) -> PointKind {
    let (unit, bounds) = layouts()[layout % 3].clone();
    let mut counts = counts;
    counts.resize(bounds.len() + 1, 0);
    explicit_in(unit, bounds, counts, min, max)
}

/// A window's points: explicit ones of up to three layouts, exponential
/// ones in seconds or milliseconds, conversions.
fn point() -> impl Strategy<Value = PointKind> {
    prop_oneof![
        8 => (0usize..3, prop::collection::vec(count(), 16), extreme(), extreme())
            .prop_map(|(l, c, min, max)| explicit(l, c, min, max)),
        1 => (0i32..4, -40i32..10, prop::collection::vec(0u64..50, 1..20), any::<bool>())
            .prop_map(|(scale, offset, counts, seconds)| {
                let unit = if seconds { LatencyUnit::Seconds } else { LatencyUnit::Millis };
                exp_point(unit, scale, offset, &counts)
            }),
        1 => (0.0f64..50.0).prop_map(PointKind::Conversions),
    ]
}

/// The sum's extreme over `points` of one layout, straight from the rule
/// in the module's documentation: `None` when some point with counts has
/// none and counts in the open bucket on that side.
fn summed_extreme(points: &[&PointLatency], lower: bool) -> Option<f64> {
    let mut out: Option<f64> = None;
    for p in points {
        let Buckets::Explicit { bounds, counts } = &p.buckets else {
            continue;
        };
        if counts.iter().all(|c| *c == 0) {
            continue;
        }
        let given = if lower { p.min } else { p.max }.filter(|v| v.is_finite());
        let v = match given {
            Some(v) => v,
            None if lower => {
                let i = counts.iter().position(|c| *c > 0).unwrap_or(0);
                if i == 0 {
                    return None;
                }
                bounds[i - 1]
            }
            None => {
                let j = counts.iter().rposition(|c| *c > 0).unwrap_or(0);
                if j == bounds.len() {
                    return None;
                }
                bounds[j]
            }
        };
        out = Some(match out {
            None => v,
            Some(o) if lower => o.min(v),
            Some(o) => o.max(v),
        });
    }
    out
}

/// The straightforward window: points counted in order (explicit ones
/// with their buckets emptied: requests, errors, unit and bounds only),
/// then each layout's buckets, added up over the window, spread once by
/// the reference spreading, in the order the layouts first came.
pub(crate) fn straightforward(points: &[PointKind]) -> Accum {
    let mut acc = Accum::default();
    /// A layout's points, in the order the layouts first came.
    type Layout<'a> = (LatencyUnit, Arc<[f64]>, Vec<&'a PointLatency>);
    let mut layouts: Vec<Layout<'_>> = Vec::new();
    for kind in points {
        match kind {
            PointKind::Latency(p) if matches!(p.buckets, Buckets::Explicit { .. }) => {
                let Buckets::Explicit { bounds, counts } = &p.buckets else {
                    unreachable!()
                };
                let mut empty = p.clone();
                empty.buckets = Buckets::Explicit {
                    bounds: bounds.clone(),
                    counts: vec![0; counts.len()],
                };
                record_point_reference(&mut acc, &PointKind::Latency(empty));
                match layouts
                    .iter_mut()
                    .find(|(u, b, _)| *u == p.unit && **b == **bounds)
                {
                    Some((_, _, ps)) => ps.push(p),
                    None => layouts.push((p.unit, bounds.clone(), vec![p])),
                }
            }
            other => record_point_reference(&mut acc, other),
        }
    }
    for (unit, bounds, ps) in layouts {
        let mut counts = vec![0u64; bounds.len() + 1];
        for p in &ps {
            if let Buckets::Explicit { counts: c, .. } = &p.buckets {
                for (s, c) in counts.iter_mut().zip(c) {
                    *s = s.saturating_add(*c);
                }
            }
        }
        let (min, max) = (summed_extreme(&ps, true), summed_extreme(&ps, false));
        spread_explicit_in_reference(&mut acc, unit, &bounds, &counts, min, max);
    }
    acc
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Summed and spread when read: the straightforward window exactly
    /// (requests, errors, conversions, unit, shared bounds and open
    /// sides, and the sketch bucket for bucket), whether read once at the
    /// end or copied for checkpoints along the way.
    #[test]
    fn summed_points_are_the_straightforward_window(
        points in prop::collection::vec(point(), 0..40),
        copies in prop::collection::vec(0usize..40, 0..3),
    ) {
        let mut open = OpenAccum::default();
        for (i, p) in points.iter().enumerate() {
            if copies.contains(&i) {
                prop_assert_eq!(open.to_accum(), straightforward(&points[..i]));
            }
            open.record_point(p);
        }
        prop_assert_eq!(open.into_accum(), straightforward(&points));
    }

    /// Against spreading every point as it comes: the same requests,
    /// errors and conversions and the same number of latencies, and each
    /// quantile within the bound the answer carries (the width of its
    /// explicit bucket and the sketch's relative error), for points whose
    /// extremes are consistent with their buckets.
    #[test]
    fn quantiles_stay_within_the_bucket_width_of_spreading_each_point(
        points in prop::collection::vec(
            (0usize..3, prop::collection::vec(0u64..300, 16), any::<bool>()),
            1..30,
        ),
    ) {
        let points: Vec<PointKind> = points
            .into_iter()
            .map(|(l, counts, clamped)| {
                let (_, bounds) = layouts()[l].clone();
                let first = counts.iter().take(bounds.len() + 1).position(|c| *c > 0);
                let last = counts.iter().take(bounds.len() + 1).rposition(|c| *c > 0);
                // A min inside the first non-empty bucket, a max inside the last.
                let min = first.filter(|_| clamped).map(|i| {
                    let hi = bounds.get(i).copied().unwrap_or(bounds[bounds.len() - 1] * 2.0);
                    let lo = if i == 0 { hi / 2.0 } else { bounds[i - 1] };
                    lo + (hi - lo) * 0.25
                });
                let max = last.filter(|_| clamped).map(|j| {
                    let hi = bounds.get(j).copied().unwrap_or(bounds[bounds.len() - 1] * 2.0);
                    let lo = if j == 0 { hi / 2.0 } else { bounds[j - 1] };
                    lo + (hi - lo) * 0.75
                });
                explicit(l, counts, min, max)
            })
            .collect();
        let mut open = OpenAccum::default();
        let mut each = Accum::default();
        for p in &points {
            open.record_point(p);
            record_point_reference(&mut each, p);
        }
        let summed = open.into_accum();
        prop_assert_eq!(
            (summed.samples, summed.errors, summed.conversions, summed.latency.count()),
            (each.samples, each.errors, each.conversions, each.latency.count())
        );
        prop_assert_eq!(&summed.spread, &each.spread);
        for q in [0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0] {
            let (Some(s), Some(e)) = (summed.latency.quantile(q), each.latency.quantile(q)) else {
                prop_assert!(summed.latency.count() == 0);
                continue;
            };
            let bound = summed.error_bound(s.value).max(each.error_bound(e.value));
            prop_assert!(
                (s.value - e.value).abs() <= bound * (1.0 + 1e-9),
                "q{} summed {} each {} bound {}", q, s.value, e.value, bound
            );
        }
    }
}

/// What waits is bounded: points of more layouts than may wait, or too
/// many buckets, spread what waited first; every request is counted, and
/// the counts reach the sketch.
#[test]
fn waiting_sums_stay_bounded() {
    let mut open = OpenAccum::default();
    let mut total = 0u64;
    for i in 0..100u32 {
        let bounds: Arc<[f64]> = (1..=(1 + i % 40))
            .map(|b| f64::from(b) * 0.01 + f64::from(i) * 1e-6)
            .collect::<Vec<_>>()
            .into();
        let counts = vec![3u64; bounds.len() + 1];
        total += 3 * counts.len() as u64;
        open.record_point(&explicit_in(
            LatencyUnit::Seconds,
            bounds,
            counts,
            None,
            Some(1.0),
        ));
        assert!(open.sums.len() <= MAX_LAYOUTS, "{}", open.sums.len());
        let waiting: usize = open.sums.iter().map(ExplicitSum::size).sum();
        assert!(waiting <= MAX_PENDING, "{waiting}");
    }
    // A layout larger than what may wait is spread as it comes.
    let bounds: Arc<[f64]> = (1..=600)
        .map(|b| f64::from(b) * 0.001)
        .collect::<Vec<_>>()
        .into();
    open.record_point(&explicit_in(
        LatencyUnit::Seconds,
        bounds,
        vec![1; 601],
        None,
        None,
    ));
    total += 601;
    let acc = open.into_accum();
    assert_eq!((acc.samples, acc.latency.count()), (total, total));
}

/// A sum's clamps from points with and without extremes: the missing
/// ones stand for the bound of the outer non-empty bucket, or leave the
/// sum open when that bucket is open; empty points change nothing.
#[test]
fn clamps_of_points_without_extremes() {
    let bounds = [1.0, 2.0, 3.0];
    assert_eq!(
        clamps(&bounds, &[0, 4, 1, 0], None, None),
        (Clamp::At(1.0), Clamp::At(3.0))
    );
    assert_eq!(
        clamps(&bounds, &[2, 0, 0, 5], None, None),
        (Clamp::Open, Clamp::Open)
    );
    assert_eq!(
        clamps(&bounds, &[2, 0, 0, 5], Some(0.5), Some(f64::NAN)),
        (Clamp::At(0.5), Clamp::Open)
    );
    assert_eq!(
        clamps(&bounds, &[0, 0, 0, 0], Some(0.5), Some(9.0)),
        (Clamp::Unset, Clamp::Unset)
    );
    let mut c = Clamp::Unset;
    c.join(Clamp::At(2.0), f64::min);
    c.join(Clamp::Unset, f64::min);
    c.join(Clamp::At(1.5), f64::min);
    assert_eq!(c, Clamp::At(1.5));
    c.join(Clamp::Open, f64::min);
    c.join(Clamp::At(0.1), f64::min);
    assert_eq!(c, Clamp::Open);
}
