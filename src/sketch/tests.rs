//! Tests of the sketch: index mapping, insert, merge, quantiles, and
//! property tests against exact quantiles.

use super::*;
use proptest::prelude::*;

fn sketch_of(values: &[f64], scale: i32, max_buckets: usize) -> Sketch {
    let mut s = Sketch::with_params(scale, max_buckets);
    for &v in values {
        s.insert(v).expect("valid value");
    }
    s
}

fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len() as u64;
    let k = ((q * n as f64).ceil() as u64).clamp(1, n);
    sorted[(k - 1) as usize]
}

fn assert_within(s: &Sketch, sorted: &[f64], q: f64) {
    let exact = exact_quantile(sorted, q);
    let got = s.quantile(q).expect("non-empty sketch");
    assert_eq!(got.relative_error, s.relative_error());
    let tol = got.relative_error * exact + 1e-12 * exact;
    assert!(
        (got.value - exact).abs() <= tol,
        "q={q} exact={exact} got={} bound={} scale={}",
        got.value,
        got.relative_error,
        s.scale()
    );
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

#[test]
fn powers_of_two_are_upper_bounds() {
    for scale in [-2, 0, 3, 6, 10] {
        for k in -1074i64..=1023 {
            let v = pow2(k);
            let idx = index_of(v, scale);
            let (lo, hi) = (lower_bound(idx, scale), upper_bound(idx, scale));
            // Bounds below the normal range round to subnormals, so the
            // exclusive lower bound may round up to `v` itself there.
            let lo_ok = lo < v || (lo == v && v < f64::MIN_POSITIVE);
            assert!(lo_ok && v <= hi, "scale {scale} 2^{k}: ({lo:e}, {hi:e}]");
            if scale >= 0 {
                assert_eq!(idx, (k << scale) - 1, "scale {scale} 2^{k}");
                assert_eq!(hi, v, "scale {scale}: 2^{k} is an upper bound");
            } else if k.rem_euclid(1 << -scale) == 0 {
                assert_eq!(hi, v, "scale {scale}: 2^{k} is an upper bound");
            }
            // Among subnormals, neighbouring values can be buckets apart.
            if k > -1022 && k < 1023 {
                let above = v.next_up();
                let below = v.next_down();
                let up_idx = index_of(above, scale);
                assert_eq!(index_of(below, scale), idx, "just below 2^{k}");
                assert!(lower_bound(up_idx, scale) < above && above <= upper_bound(up_idx, scale));
                if scale >= 0 || hi == v {
                    assert_eq!(up_idx, idx + 1, "just above 2^{k} at scale {scale}");
                } else {
                    assert_eq!(up_idx, idx, "just above 2^{k} at scale {scale}");
                }
            }
        }
    }
}

#[test]
fn known_indices() {
    assert_eq!(index_of(1.0, 0), -1);
    assert_eq!(index_of(1.5, 0), 0);
    assert_eq!(index_of(3.0, 0), 1);
    assert_eq!(index_of(4.0, 0), 1);
    assert_eq!(index_of(4.0, -1), 0);
    assert_eq!(index_of(5.0, -1), 1);
    assert_eq!(index_of(16.0, -2), 0);
    assert_eq!(index_of(17.0, -2), 1);
    // sqrt(2) is a bucket boundary at scale 1; 1.5 lies above it.
    assert_eq!(index_of(1.4, 1), 0);
    assert_eq!(index_of(1.5, 1), 1);
    // At scale 3, 1.1 is in (2^(1/8), 2^(2/8)] = (1.0905, 1.1892].
    assert_eq!(index_of(1.1, 3), 1);
    assert_eq!(index_of(0.5, 3), -9);
    // 1000 = 2^9.9658; at scale 6: floor(9.9658 * 64) = 637.
    assert_eq!(index_of(1000.0, 6), 637);
    assert_eq!(
        index_of(1000.0, 10),
        (1000f64.log2() * 1024.0).floor() as i64
    );
    // Subnormals.
    assert_eq!(index_of(f64::from_bits(1), 6), -1074 * 64 - 1);
    assert_eq!(index_of(f64::from_bits(3), 0), -1073);
    assert_eq!(index_range(-10), (-2, 0));
    assert_eq!(index_range(20).1, (1024 << 20) - 1);
}

#[test]
fn boundaries_are_consistent_across_scales() {
    // Values on and around every boundary of scale 12, mapped at every
    // scale: the coarser index is always the finer one shifted.
    let mut values = Vec::new();
    for j in 0..4096u64 {
        let b = octave_boundary(j, 12);
        for e in [-3i64, 0, 5] {
            let v = ldexp(b, e);
            values.extend([v, v.next_up(), v.next_down()]);
        }
    }
    for &v in &values {
        let fine = index_of(v, 20);
        for scale in MIN_SCALE..=MAX_SCALE {
            let idx = index_of(v, scale);
            assert_eq!(fine >> (20 - scale), idx, "v={v} scale={scale}");
            assert!(lower_bound(idx, scale) < v && v <= upper_bound(idx, scale));
        }
    }
}

#[test]
fn table_matches_exact_mapping() {
    for scale in 1..=TABLE_MAX_SCALE {
        let t = table_for(scale).expect("table scale");
        let cell = 1u64 << t.shift;
        for w in t.bounds.windows(2) {
            assert!(w[1] - w[0] > cell, "cells narrower than boundary gaps");
        }
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let frac = x & FRAC_MASK;
            assert_eq!(t.sub_index(frac), sub_index_exact(frac, scale as u32));
        }
        for j in 0..(1u64 << scale) {
            let b = octave_boundary(j, scale as u32).to_bits() & FRAC_MASK;
            for frac in [b, b + 1, b.saturating_sub(1)] {
                let frac = frac & FRAC_MASK;
                assert_eq!(t.sub_index(frac), sub_index_exact(frac, scale as u32));
            }
        }
    }
}

#[test]
fn relative_error_values() {
    let s = Sketch::new();
    let base = 2f64.powf(1.0 / 64.0);
    assert!((s.relative_error() - (base - 1.0) / (base + 1.0)).abs() < 1e-15);
    assert!((s.relative_error() - 0.005_415).abs() < 1e-5);
    assert!((relative_error_at(0) - 1.0 / 3.0).abs() < 1e-15);
    assert_eq!(relative_error_at(-10), 1.0);
    assert!(relative_error_at(20) > 0.0 && relative_error_at(20) < 4e-7);
}

#[test]
fn empty_sketch() {
    let s = Sketch::new();
    assert!(s.is_empty());
    assert_eq!(s.count(), 0);
    assert_eq!(s.min(), None);
    assert_eq!(s.max(), None);
    assert_eq!(s.quantile(0.5), None);
    assert_eq!(s.quantiles(&[0.5, 0.9]), vec![None, None]);
    assert_eq!(s.bucket_count(), 0);
    assert_eq!(s.positive_buckets(), (6, 0, Cow::Borrowed(&[][..])));
    assert_eq!(s.scale(), DEFAULT_SCALE);
    assert_eq!(s, Sketch::default());
}

#[test]
fn small_known_dataset() {
    let values: Vec<f64> = (1..=100).map(f64::from).collect();
    let s = sketch_of(&values, 6, 2048);
    assert_eq!(s.count(), 100);
    assert_eq!(s.sum(), 5050.0);
    assert_eq!(s.min(), Some(1.0));
    assert_eq!(s.max(), Some(100.0));
    assert_eq!(s.quantile(0.0).map(|q| q.value), Some(1.0));
    assert_eq!(s.quantile(1.0).map(|q| q.value), Some(100.0));
    for q in [0.01, 0.1, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999] {
        assert_within(&s, &values, q);
    }
    let p50 = s.quantile(0.5).expect("non-empty").value;
    assert!((p50 - 50.0).abs() <= 50.0 * s.relative_error());
    assert_eq!(s.quantile(-0.1), None);
    assert_eq!(s.quantile(1.1), None);
    assert_eq!(s.quantile(f64::NAN), None);
    let many = s.quantiles(&[0.99, 0.5, 2.0, 0.0]);
    assert_eq!(many[0], s.quantile(0.99));
    assert_eq!(many[1], s.quantile(0.5));
    assert_eq!(many[2], None);
    assert_eq!(many[3], s.quantile(0.0));
}

#[test]
fn single_value_is_exact() {
    let s = sketch_of(&[0.123], 6, 2048);
    for q in [0.0, 0.5, 1.0] {
        assert_eq!(s.quantile(q).map(|q| q.value), Some(0.123));
    }
}

#[test]
fn zero_values() {
    let mut s = Sketch::new();
    for v in [0.0, -0.0, 0.0, 5.0] {
        s.insert(v).expect("zero is valid");
    }
    assert_eq!(s.zero_count(), 3);
    assert_eq!(s.count(), 4);
    assert_eq!(s.bucket_count(), 1);
    assert_eq!(s.quantile(0.5).map(|q| q.value), Some(0.0));
    assert_eq!(s.quantile(0.75).map(|q| q.value), Some(0.0));
    assert_eq!(s.quantile(1.0).map(|q| q.value), Some(5.0));
    assert_eq!(s.min(), Some(0.0));
}

#[test]
fn zero_threshold() {
    let mut s = Sketch::new().with_zero_threshold(0.01);
    for v in [0.001, 0.01, 0.5, 2.0] {
        s.insert(v).expect("valid");
    }
    assert_eq!(s.zero_count(), 2);
    // Rank 2 is in the zero bucket: 0 clamped to the minimum.
    assert_eq!(s.quantile(0.5).map(|q| q.value), Some(0.001));
    // Raising the threshold moves buckets wholly under it.
    let s = s.with_zero_threshold(1.0);
    assert_eq!(s.zero_count(), 3);
    assert_eq!(s.bucket_count(), 1);
    assert_eq!(s.count(), 4);
    // Merging: the larger threshold wins, and the other side's low
    // buckets move into the zero count.
    let mut a = sketch_of(&[0.2, 0.3, 8.0], 6, 2048);
    let b = Sketch::new().with_zero_threshold(0.5);
    a.merge(&b);
    assert_eq!(a.zero_threshold(), 0.5);
    assert_eq!(a.zero_count(), 2);
    assert_eq!(a.count(), 3);
    // Invalid thresholds are ignored.
    let s = Sketch::new()
        .with_zero_threshold(f64::NAN)
        .with_zero_threshold(-1.0);
    assert_eq!(s.zero_threshold(), 0.0);
}

#[test]
fn rejections_are_counted_not_inserted() {
    let mut s = Sketch::new();
    assert_eq!(s.insert(f64::NAN), Err(RejectReason::Nan));
    assert_eq!(s.insert(-f64::NAN), Err(RejectReason::Nan));
    assert_eq!(s.insert(f64::INFINITY), Err(RejectReason::Infinite));
    assert_eq!(s.insert(f64::NEG_INFINITY), Err(RejectReason::Infinite));
    assert_eq!(s.insert(-1.0), Err(RejectReason::Negative));
    assert_eq!(s.insert(-f64::MIN_POSITIVE), Err(RejectReason::Negative));
    assert_eq!(s.insert_n(-2.0, 10), Err(RejectReason::Negative));
    assert_eq!(s.rejected(), 16);
    assert!(s.is_empty());
    assert_eq!(s.sum(), 0.0);
    assert_eq!(s.bucket_count(), 0);
    assert_eq!(s.quantile(0.5), None);
    s.insert(1.0).expect("valid");
    assert_eq!(s.count(), 1);
    assert_eq!(s.rejected(), 16);
    assert_eq!(RejectReason::Nan.to_string(), "value is NaN");
}

#[test]
fn insert_n_and_extremes() {
    let mut s = Sketch::new();
    s.insert_n(3.0, 5).expect("valid");
    s.insert_n(7.0, 0).expect("valid");
    assert_eq!(s.count(), 5);
    assert_eq!(s.sum(), 15.0);
    assert_eq!(s.max(), Some(3.0));
    s.insert(f64::MAX).expect("valid");
    s.insert(f64::MIN_POSITIVE).expect("valid");
    s.insert(f64::from_bits(1)).expect("valid");
    assert!(
        s.scale() < DEFAULT_SCALE,
        "2048 buckets can't span 2^-1074..2^1024 at scale 6"
    );
    assert!(s.bucket_count() <= 2048);
    assert_eq!(s.quantile(1.0).map(|q| q.value), Some(f64::MAX));
    assert_eq!(s.quantile(0.0).map(|q| q.value), Some(f64::from_bits(1)));
    s.insert_n(3.0, u64::MAX).expect("valid");
    assert_eq!(s.count(), u64::MAX);
}

#[test]
fn downscales_when_span_exceeds_bound() {
    let mut s = Sketch::with_params(6, 160);
    let err6 = s.relative_error();
    let values = [1e-3, 1e9, 0.5, 42.0, 1e6];
    for v in values {
        s.insert(v).expect("valid");
    }
    assert!(s.scale() < 6);
    assert!(s.bucket_count() <= 160);
    assert!(s.relative_error() > err6);
    // Minimal downscale: one more step of scale would not fit.
    let lo = index_of(1e-3, s.scale() + 1);
    let hi = index_of(1e9, s.scale() + 1);
    assert!(hi - lo + 1 > 160);
    let sorted = sorted(&values);
    for q in [0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0] {
        assert_within(&s, &sorted, q);
    }
    // Buffer never exceeds the bound.
    assert!(s.counts.len() <= 160);
    assert_eq!(s, sketch_of(&values, s.scale(), 160));
}

#[test]
fn merge_of_different_scales_is_exact() {
    let a_vals: Vec<f64> = (1..500).map(|i| f64::from(i) * 0.37).collect();
    let b_vals: Vec<f64> = (1..300).map(|i| 1.0 / f64::from(i)).collect();
    let mut a = sketch_of(&a_vals, 8, 2048);
    let b = sketch_of(&b_vals, 3, 2048);
    a.merge(&b);
    assert_eq!(a.scale(), 3);
    let mut all = a_vals.clone();
    all.extend(&b_vals);
    let direct = sketch_of(&all, 3, 2048);
    assert_eq!(a.positive_buckets(), direct.positive_buckets());
    assert_eq!(a.count(), direct.count());
    assert_eq!(a.min(), direct.min());
    assert_eq!(a.max(), direct.max());
    assert!((a.sum() - direct.sum()).abs() <= 1e-9 * direct.sum());
    // Commutes.
    let mut b2 = sketch_of(&b_vals, 3, 2048);
    b2.merge(&sketch_of(&a_vals, 8, 2048));
    assert_eq!(b2.positive_buckets(), a.positive_buckets());
    let sorted = sorted(&all);
    for q in [0.1, 0.5, 0.9, 0.99] {
        assert_within(&a, &sorted, q);
    }
}

#[test]
fn merge_downscales_to_fit() {
    let mut a = sketch_of(&[1e-3, 1.0], 6, 1024);
    let b = sketch_of(&[1e6], 6, 1024);
    a.merge(&b);
    assert!(a.bucket_count() <= 1024);
    assert_eq!(a.scale(), 5);
    assert_eq!(a, sketch_of(&[1e-3, 1.0, 1e6], 5, 1024));
}

#[test]
fn merge_with_empty_and_rejections() {
    let mut a = sketch_of(&[1.0, 2.0], 6, 2048);
    let mut e = Sketch::with_params(4, 2048);
    let _ = e.insert(f64::NAN);
    a.merge(&e);
    assert_eq!(a.count(), 2);
    assert_eq!(a.rejected(), 1);
    assert_eq!(a.scale(), 4);
    let mut e2 = Sketch::new();
    e2.merge(&a);
    assert_eq!(e2.positive_buckets(), a.positive_buckets());
    assert_eq!(e2.min(), Some(1.0));
}

#[test]
fn merge_exponential_matches_merge() {
    let vals: Vec<f64> = (1..1000).map(|i| f64::from(i).powf(1.7) * 1e-3).collect();
    let src = sketch_of(&vals, 9, 4096);
    let (scale, offset, counts) = src.positive_buckets();
    let mut a = Sketch::new();
    a.merge_exponential(
        scale,
        3,
        0.0,
        offset,
        &counts,
        Some(src.sum()),
        src.min(),
        src.max(),
    );
    let mut b = Sketch::new();
    b.merge(&src);
    let _ = b.insert_n(0.0, 3);
    assert_eq!(a.positive_buckets(), b.positive_buckets());
    assert_eq!(a.count(), b.count());
    assert_eq!(a.zero_count(), 3);
    // Without sum/min/max: estimated, and quantiles stay within bounds.
    let mut c = Sketch::new();
    c.merge_exponential(scale, 0, 0.0, offset, &counts, None, None, None);
    let est = c.sum();
    assert!((est - src.sum()).abs() <= c.relative_error() * src.sum() + 1e-9);
    let sorted = sorted(&vals);
    for q in [0.0, 0.5, 0.95, 1.0] {
        assert_within(&c, &sorted, q);
    }
}

#[test]
fn merge_exponential_odd_inputs() {
    // Scale 20 data shifts down exactly to the sketch's scale.
    let mut a = Sketch::new();
    let i20 = i32::try_from(index_of(3.0, 20)).expect("fits");
    a.merge_exponential(20, 0, 0.0, i20, &[2], None, None, None);
    assert_eq!(
        a.positive_buckets(),
        (
            6,
            i32::try_from(index_of(3.0, 6)).expect("fits"),
            Cow::Borrowed(&[2][..])
        )
    );
    // Scale 30 (finer than supported) shifts down exactly.
    let mut a30 = Sketch::new();
    a30.merge_exponential(30, 0, 0.0, i20 << 10, &[1, 1], None, None, None);
    assert_eq!(
        a30.positive_buckets(),
        (
            6,
            i32::try_from(index_of(3.0, 6)).expect("fits"),
            Cow::Borrowed(&[2][..])
        )
    );
    // Scale -20 (coarser than supported) folds to MIN_SCALE.
    let mut b = Sketch::new();
    b.merge_exponential(-20, 0, 0.0, -1, &[1, 1], None, None, None);
    assert_eq!(b.scale(), MIN_SCALE);
    assert_eq!(
        b.positive_buckets(),
        (MIN_SCALE, -1, Cow::Borrowed(&[1, 1][..]))
    );
    // Absurd offsets are clamped, not allowed to blow the bound.
    let mut c = Sketch::with_params(6, 8);
    c.merge_exponential(6, 0, 0.0, i32::MIN, &[1], None, None, None);
    c.merge_exponential(6, 0, 0.0, i32::MAX, &[1, 0, 0], None, None, None);
    assert!(c.bucket_count() <= 8);
    assert_eq!(c.count(), 2);
    // Extreme scales don't overflow.
    let mut f = Sketch::new();
    f.merge_exponential(i32::MAX, 0, 0.0, 5, &[1], None, None, None);
    f.merge_exponential(i32::MIN, 0, 0.0, -1, &[1], None, None, None);
    assert_eq!(f.scale(), MIN_SCALE);
    assert_eq!(f.count(), 2);
    // Garbage thresholds and min > max don't panic.
    let mut d = Sketch::new();
    d.merge_exponential(
        6,
        1,
        f64::NAN,
        0,
        &[0, 4, 0],
        Some(f64::NAN),
        Some(9.0),
        Some(1.0),
    );
    assert_eq!(d.count(), 5);
    assert!(d.quantile(0.5).is_some());
    assert_eq!(d.positive_buckets().2, &[4][..]);
    // Empty points change nothing but the scale ceiling.
    let mut e = sketch_of(&[1.0], 6, 2048);
    e.merge_exponential(20, 0, 0.0, 0, &[], None, None, None);
    assert_eq!(e, sketch_of(&[1.0], 6, 2048));
}

fn is_wide(s: &Sketch) -> bool {
    matches!(s.counts, Buckets::Wide(_))
}

#[test]
fn counts_widen_before_u32_overflow() {
    let narrow_max = u64::from(u32::MAX);
    let mut s = Sketch::new();
    s.insert_n(3.0, narrow_max - 1).expect("valid");
    s.insert(3.0).expect("valid");
    assert!(!is_wide(&s), "a total of u32::MAX still fits");
    s.insert(3.0).expect("valid");
    assert!(is_wide(&s));
    assert_eq!(s.count(), narrow_max + 1);
    assert_eq!(s.positive_buckets().2, &[narrow_max + 1][..]);

    // Same-scale merge of two narrow sketches past u32::MAX.
    let mut a = Sketch::new();
    a.insert_n(5.0, 3_000_000_000).expect("valid");
    a.insert_n(7.0, 10).expect("valid");
    a.insert_n(0.0, 4).expect("valid");
    let b = a.clone();
    assert!(!is_wide(&a));
    a.merge(&b);
    assert!(is_wide(&a));
    assert_eq!(a.count(), 6_000_000_028);
    assert_eq!(a.zero_count(), 8);
    let (_, _, counts) = a.positive_buckets();
    assert_eq!(counts.first(), Some(&6_000_000_000));
    assert_eq!(counts.last(), Some(&20));
    assert_eq!(counts.iter().sum::<u64>(), 6_000_000_020);
    let q = a.quantile(0.5).expect("non-empty");
    assert!((q.value - 5.0).abs() <= q.relative_error * 5.0);

    // Downscaling merge of narrow into narrow past u32::MAX.
    let mut fine = Sketch::with_params(8, 2048);
    fine.insert_n(5.0, 3_000_000_000).expect("valid");
    let mut coarse = Sketch::with_params(6, 2048);
    coarse.insert_n(5.0, 3_000_000_000).expect("valid");
    coarse.merge(&fine);
    assert_eq!(coarse.positive_buckets().2, &[6_000_000_000][..]);

    // A wide sketch merged into a narrow one widens it first.
    let mut n = Sketch::new();
    n.insert(5.0).expect("valid");
    n.merge(&coarse);
    assert!(is_wide(&n));
    assert_eq!(n.positive_buckets().2, &[6_000_000_001][..]);

    // Wide sketches survive the parts round trip.
    assert_eq!(Sketch::from_parts(n.to_parts()), n);
}

#[test]
fn hostile_counts_saturate_instead_of_wrapping() {
    let mut s = Sketch::new();
    s.insert(bucket_midpoint(1, 6)).expect("valid");
    s.merge_exponential(6, 0, 0.0, 0, &[u64::MAX, 1, u64::MAX], None, None, None);
    assert_eq!(s.count(), u64::MAX);
    assert_eq!(s.positive_buckets().2, &[u64::MAX, 2, u64::MAX][..]);
    s.merge_exponential(6, 0, 0.0, 0, &[5, 5, 5], None, None, None);
    assert_eq!(s.positive_buckets().2, &[u64::MAX, 7, u64::MAX][..]);
    // Large but summable counts into a narrow sketch: exact.
    let mut n = Sketch::new();
    n.insert(bucket_midpoint(1, 6)).expect("valid");
    n.merge_exponential(6, 0, 0.0, 0, &[1 << 40, 1, 1 << 40], None, None, None);
    assert_eq!(n.count(), (1 << 41) + 2);
    assert_eq!(n.positive_buckets().2, &[1 << 40, 2, 1 << 40][..]);
}

#[test]
fn huge_zero_counts_keep_quantiles_in_their_buckets() {
    let mut s = Sketch::new();
    s.insert_n(1.0, 5000).expect("valid");
    s.insert_n(2.0, 5).expect("valid");
    s.insert_n(0.0, u64::MAX - 3000).expect("valid");
    assert!(is_wide(&s), "a count past u32::MAX widens, zeros included");
    assert_eq!(s.count(), u64::MAX);
    // Rank u64::MAX - 2047 lies among the 1.0s, past the zero bucket.
    let q = 1.0 - f64::EPSILON / 2.0;
    let expected = s.bucket_answer(index_of(1.0, s.scale()));
    assert_eq!(s.quantile(q).map(|a| a.value), Some(expected));
    assert_eq!(s.quantiles(&[q])[0].map(|a| a.value), Some(expected));
    // The same walk over narrow counts with a zero bucket in front.
    let mut n = Sketch::new();
    n.insert_n(0.0, 1000).expect("valid");
    n.insert_n(1.0, 10).expect("valid");
    n.insert_n(2.0, 10).expect("valid");
    assert!(!is_wide(&n));
    let one = n.bucket_answer(index_of(1.0, 6));
    let two = n.bucket_answer(index_of(2.0, 6));
    let at = |k: u64| k as f64 / n.count() as f64;
    assert_eq!(n.quantile(at(1000)).map(|a| a.value), Some(0.0));
    assert_eq!(n.quantile(at(1001)).map(|a| a.value), Some(one));
    assert_eq!(n.quantile(at(1010)).map(|a| a.value), Some(one));
    assert_eq!(n.quantile(at(1011)).map(|a| a.value), Some(two));
    let many: Vec<f64> = n
        .quantiles(&[at(1011), at(1000), at(1001)])
        .into_iter()
        .map(|a| a.expect("in range").value)
        .collect();
    assert_eq!(many, [two, 0.0, one]);
}

#[test]
fn far_coarser_scales_clamp_instead_of_overflowing() {
    // (-1025 + 1) * 2^53 is exactly i64::MIN: one less would overflow.
    let mut s = Sketch::new();
    s.merge_exponential(-63, 0, 0.0, -1025, &[1], None, None, None);
    assert_eq!(s.count(), 1);
    let (lo, _) = index_range(s.scale());
    assert_eq!(i64::from(s.positive_buckets().1), lo);
    let v = s.quantile(0.5).expect("non-empty").value;
    assert!(v < f64::MIN_POSITIVE, "a tiny bucket stays tiny, got {v:e}");
}

#[test]
fn parts_round_trip() {
    let mut s = sketch_of(&[0.0, 1.5, 2.5, 1e3, 1e-2], 7, 512).with_zero_threshold(1e-9);
    let _ = s.insert(f64::NAN);
    let back = Sketch::from_parts(s.to_parts());
    assert_eq!(back, s);
    let e = Sketch::with_params(3, 100);
    assert_eq!(Sketch::from_parts(e.to_parts()), e);
}

#[test]
fn with_params_clamps() {
    let s = Sketch::with_params(99, 0);
    assert_eq!(s.scale(), MAX_SCALE);
    assert_eq!(s.max_buckets(), MIN_MAX_BUCKETS);
    let s = Sketch::with_params(-99, usize::MAX);
    assert_eq!(s.scale(), MIN_SCALE);
    assert_eq!(s.max_buckets(), MAX_MAX_BUCKETS);
}

#[test]
fn fine_scales_without_table() {
    let values: Vec<f64> = (0..2000).map(|i| 1.0 + f64::from(i) * 0.001).collect();
    let s = sketch_of(&values, 16, 1 << 18);
    assert_eq!(s.scale(), 16);
    let sorted = sorted(&values);
    for q in [0.1, 0.5, 0.99] {
        assert_within(&s, &sorted, q);
    }
    let mut coarse = Sketch::with_params(6, 2048);
    coarse.merge(&s);
    assert_eq!(
        coarse.positive_buckets(),
        sketch_of(&values, 6, 2048).positive_buckets()
    );
}

#[test]
fn very_coarse_scale_answers() {
    let values = [1e-300, 1e-5, 3.0, 1e300];
    let s = sketch_of(&values, MIN_SCALE, 4);
    assert_eq!(s.relative_error(), 1.0);
    let sorted = sorted(&values);
    for q in [0.0, 0.3, 0.5, 0.7, 1.0] {
        assert_within(&s, &sorted, q);
    }
}

// ---- property tests --------------------------------------------------

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(cases)
    }
}

/// Log-uniform over nine decades, with some exact zeros.
fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        1 => Just(0.0),
        19 => (-3.0f64..6.0).prop_map(|e| 10f64.powf(e)),
    ]
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn quantiles_within_bound(
        values in prop::collection::vec(value(), 1..1500),
        q in 0.0f64..=1.0,
        scale in 0i32..=8,
    ) {
        let s = sketch_of(&values, scale, 2048);
        let sorted = sorted(&values);
        let qs = [0.0, 0.5, 0.9, 0.95, 0.99, 1.0, q];
        let many = s.quantiles(&qs);
        for (i, &q) in qs.iter().enumerate() {
            assert_within(&s, &sorted, q);
            prop_assert_eq!(many[i], s.quantile(q));
        }
    }

    #[test]
    fn merge_in_any_order_equals_direct(
        items in prop::collection::vec((value(), 0usize..5), 0..1500),
        scales in prop::collection::vec(2i32..=8, 5),
        order_keys in prop::collection::vec(any::<u32>(), 5),
    ) {
        let mut parts: Vec<Sketch> =
            scales.iter().map(|&s| Sketch::with_params(s, 2048)).collect();
        for &(v, p) in &items {
            parts[p].insert(v).expect("valid");
        }
        let mut order: Vec<usize> = (0..5).collect();
        order.sort_by_key(|&i| order_keys[i]);
        let mut merged = parts[order[0]].clone();
        for &i in &order[1..] {
            merged.merge(&parts[i]);
        }
        let values: Vec<f64> = items.iter().map(|&(v, _)| v).collect();
        let direct = sketch_of(&values, merged.scale(), 2048);
        prop_assert_eq!(direct.scale(), merged.scale());
        prop_assert_eq!(merged.positive_buckets(), direct.positive_buckets());
        prop_assert_eq!(merged.count(), direct.count());
        prop_assert_eq!(merged.zero_count(), direct.zero_count());
        prop_assert_eq!(merged.min(), direct.min());
        prop_assert_eq!(merged.max(), direct.max());
        prop_assert!((merged.sum() - direct.sum()).abs() <= 1e-9 * direct.sum());
        if !values.is_empty() {
            let sorted = sorted(&values);
            for q in [0.5, 0.9, 0.99, 1.0] {
                assert_within(&merged, &sorted, q);
            }
        }
    }

    #[test]
    fn large_counts_merge_exactly(
        items in prop::collection::vec((value(), 0u64..(1 << 34), 0usize..4), 0..60),
        scales in prop::collection::vec(2i32..=8, 4),
        order_keys in prop::collection::vec(any::<u32>(), 4),
    ) {
        // Multiplicities up to 2^34 push parts and merges across the
        // narrow/wide boundary at every point of the merge order.
        let mut parts: Vec<Sketch> =
            scales.iter().map(|&s| Sketch::with_params(s, 2048)).collect();
        for &(v, n, p) in &items {
            parts[p].insert_n(v, n).expect("valid");
        }
        let mut order: Vec<usize> = (0..4).collect();
        order.sort_by_key(|&i| order_keys[i]);
        let mut merged = parts[order[0]].clone();
        for &i in &order[1..] {
            merged.merge(&parts[i]);
        }
        let mut direct = Sketch::with_params(merged.scale(), 2048);
        for &(v, n, _) in &items {
            direct.insert_n(v, n).expect("valid");
        }
        prop_assert_eq!(direct.scale(), merged.scale());
        prop_assert_eq!(merged.positive_buckets(), direct.positive_buckets());
        prop_assert_eq!(merged.count(), direct.count());
        prop_assert_eq!(merged.zero_count(), direct.zero_count());
        prop_assert_eq!(is_wide(&merged), merged.count() > u64::from(u32::MAX));
    }

    #[test]
    fn small_bounds_force_downscaling(
        values in prop::collection::vec(value(), 1..600),
        extra in prop::collection::vec(value(), 0..300),
        max_buckets in 4usize..80,
        scale in 0i32..=12,
        q in 0.0f64..=1.0,
    ) {
        let mut s = sketch_of(&values, scale, max_buckets);
        s.merge(&sketch_of(&extra, MAX_SCALE, max_buckets));
        prop_assert!(s.bucket_count() <= max_buckets);
        prop_assert!(s.counts.len() <= max_buckets);
        let mut all = values.clone();
        all.extend(&extra);
        let sorted = sorted(&all);
        for q in [0.0, 0.5, 0.95, 1.0, q] {
            assert_within(&s, &sorted, q);
        }
        let direct = sketch_of(&all, s.scale(), max_buckets);
        prop_assert_eq!(s.positive_buckets(), direct.positive_buckets());
    }
}
