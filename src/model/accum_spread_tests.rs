//! The explicit-bucket spreading as it was first written (two `exp2` and a
//! sketch insert per piece), kept as the reference the one-pass spreading
//! must match: the same sketch, bucket for bucket, with the same count,
//! sum, extremes and scale, for any bounds, counts and clamps.

use proptest::prelude::*;

use super::*;

/// [`Accum::record_point`] with the reference spreading: the
/// straightforward path that whole windows are compared with.
pub(crate) fn record_point_reference(acc: &mut Accum, kind: &PointKind) {
    match kind {
        PointKind::Latency(p) => acc.record_latency(p, spread_bucket_reference),
        other => acc.record_point(other),
    }
}

/// [`Accum::spread_explicit_in`] with the reference spreading.
pub(crate) fn spread_explicit_in_reference(
    acc: &mut Accum,
    unit: LatencyUnit,
    bounds: &[f64],
    counts: &[u64],
    min: Option<f64>,
    max: Option<f64>,
) {
    acc.spread_explicit_in(unit, bounds, counts, min, max, spread_bucket_reference);
}

fn spread_explicit_reference(
    acc: &mut Accum,
    bounds: &[f64],
    counts: &[u64],
    min: Option<f64>,
    max: Option<f64>,
) {
    acc.spread_explicit_with(bounds, counts, min, max, spread_bucket_reference);
}

/// Spreads `c` values uniformly over `(lo, hi]`, `0 <= lo < hi`, one
/// insert per covered sketch bucket, rounding so the counts add up to `c`.
fn spread_bucket_reference(acc: &mut Accum, lo: f64, hi: f64, c: u64) {
    // Below hi / 2^10 lies under 0.1 % of a uniform bucket: it goes to
    // the first piece instead of spanning endless tiny buckets near 0.
    let from = lo.max(hi / 1024.0);
    // Near the bottom of the f64 range (subnormal bounds) logarithms
    // lose all precision, and `from` can even be 0: such a bucket is
    // below any real latency, so its counts simply sit at `hi`.
    if !(from.is_normal() && hi.is_normal()) {
        let _ = acc.latency.insert_n(hi, c);
        return;
    }
    let mut scale = acc.latency.scale();
    let pieces = |scale: i32| {
        let per = f64::from(scale).exp2();
        ((hi.log2() * per).ceil() - (from.log2() * per).floor()).max(1.0)
    };
    while scale > crate::sketch::MIN_SCALE && pieces(scale) > f64::from(MAX_PIECES) {
        scale -= 1;
    }
    let per = f64::from(scale).exp2();
    let first = (from.log2() * per).floor() as i64;
    // Never more than MAX_PIECES inserts, whatever the bounds: the work
    // per bucket is bounded by construction, not by the inputs.
    let last = ((hi.log2() * per).ceil() as i64).min(first + i64::from(MAX_PIECES));
    let width = hi - lo;
    // Pieces lie on sketch bucket edges, but the first and the last can
    // be cut by the explicit bounds, and the sketch bucket holding such
    // a piece also holds values of the neighbouring explicit bucket:
    // once mixed, no count can say on which side of the bound it was,
    // and a bound at a contract's limit (the advice for histograms)
    // would be evidence of nothing. Their counts go to the nearest
    // sketch bucket that lies wholly inside `(lo, hi]` (a shift of at
    // most one sketch bucket, within the spreading's own error); only
    // a bucket too narrow to hold a whole sketch bucket is mixed.
    let inner = {
        let a = (from.log2() * per).ceil() as i64;
        let b = (hi.log2() * per).floor() as i64;
        (a < b).then_some((a, b - 1))
    };
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
            let (a, b) = match inner {
                Some((first_inner, last_inner)) => {
                    let j = k.clamp(first_inner, last_inner) as f64;
                    ((j / per).exp2(), ((j + 1.0) / per).exp2())
                }
                None => (a, b),
            };
            // Geometric middle of the piece (as a product of roots: no overflow).
            let _ = acc.latency.insert_n(a.sqrt() * b.sqrt(), n);
        }
    }
    if given < c {
        let _ = acc.latency.insert_n(hi, c - given);
    }
}

/// Strictly increasing bounds from `raw` (any order, duplicates dropped).
fn bounds_of(raw: Vec<f64>) -> Vec<f64> {
    let mut b: Vec<f64> = raw.into_iter().filter(|v| v.is_finite()).collect();
    b.sort_by(f64::total_cmp);
    b.dedup();
    b
}

/// A bound: mostly latency-like (1 µs to 1000 s), sometimes anywhere in
/// the positive f64 range, zero or negative.
fn bound() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => (-20.0f64..10.0).prop_map(f64::exp2),
        1 => (-1074.0f64..1023.9).prop_map(f64::exp2),
        1 => prop::sample::select(vec![0.0, -1.0, 0.005, 0.3, 1e-300, 5e-324, f64::MAX]),
    ]
}

/// A count: zero, small, large or huge.
fn count() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => Just(0u64),
        4 => 1u64..300,
        2 => 1_000_000u64..10_000_000_000_000,
        1 => prop::sample::select(vec![u64::from(u32::MAX), u64::MAX / 3, u64::MAX]),
    ]
}

/// What the window held before the point: nothing, another point, or a
/// sketch that must lower its scale (few buckets) or has a zero bucket.
fn window() -> impl Strategy<Value = Accum> {
    (0u8..4, 4usize..64, (-30.0f64..10.0).prop_map(f64::exp2)).prop_map(|(kind, max, v)| {
        let mut acc = Accum::default();
        match kind {
            1 => {
                let _ = acc.latency.insert_n(v, 5);
            }
            2 => acc.latency = crate::sketch::Sketch::with_params(6, max),
            3 => {
                acc.latency = crate::sketch::Sketch::new().with_zero_threshold(v);
                let _ = acc.latency.insert_n(v * 3.0, 2);
            }
            _ => {}
        }
        acc
    })
}

fn clamp() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![2 => Just(None), 3 => bound().prop_map(Some)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The one-pass spreading gives the reference's sketch exactly:
    /// bucket counts, scale, count, sum, min and max (and the same shared
    /// bounds), for any bounds, counts, clamps and window state.
    #[test]
    fn one_pass_spreading_is_the_reference(
        raw in prop::collection::vec(bound(), 0..16),
        counts in prop::collection::vec(count(), 1..18),
        min in clamp(),
        max in clamp(),
        before in window(),
    ) {
        let bounds = bounds_of(raw);
        let counts = &counts[..counts.len().min(bounds.len() + 1)];
        let mut fast = before.clone();
        fast.spread_explicit(&bounds, counts, min, max);
        let mut reference = before;
        spread_explicit_reference(&mut reference, &bounds, counts, min, max);
        prop_assert_eq!(fast, reference);
    }
}

/// Every piece bound the spreading reads from a table is the `exp2` the
/// reference computes, at every scale a piece can have, over the whole
/// normal range at the scales where latencies are spread.
#[test]
fn table_edges_are_the_exp2_of_the_reference() {
    for scale in crate::sketch::MIN_SCALE..=crate::sketch::DEFAULT_SCALE {
        let edges = Edges::at(scale);
        let per = f64::from(scale).exp2();
        let (lo, hi) = ((-1022.0 * per) as i64, (1023.0 * per) as i64);
        for k in lo..=hi {
            let want = ((k as f64) / per).exp2();
            assert_eq!(
                edges.lower(k).to_bits(),
                want.to_bits(),
                "scale {scale} k {k}"
            );
        }
    }
}

/// Counts in the billions take the same pieces as counts of one: the
/// spread of `c * m` is, piece for piece, at most `m` times larger than
/// the spread of `c` pieces, and never more pieces than the bound.
#[test]
fn huge_counts_spread_over_the_same_bounded_pieces() {
    let bounds = [
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    ];
    for c in [1u64, 7, 1_000_000_000, u64::MAX / 16] {
        let counts = vec![c; bounds.len() + 1];
        let mut fast = Accum::default();
        fast.spread_explicit(&bounds, &counts, None, None);
        let mut reference = Accum::default();
        spread_explicit_reference(&mut reference, &bounds, &counts, None, None);
        assert_eq!(fast, reference, "{c}");
        assert!(fast.latency.bucket_count() <= 2048);
    }
}
