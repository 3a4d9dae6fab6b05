//! Property tests: invariants that must hold for *any* input, including
//! nonsense telemetry (x > n, x_low > x_high, u64::MAX, n = 0).

use super::types::Evidence;
use super::{Counts, DifferenceCheck, Direction, ProportionCheck, Status};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

/// Counts with the edge values over-represented.
fn count() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0_u64),
        Just(1_u64),
        Just(u64::MAX),
        Just(u64::MAX - 1),
        Just(1_u64 << 53),
        Just((1_u64 << 53) + 1),
        Just(1_000_000_000_000_u64),
        0_u64..20,
        0_u64..100_000,
        any::<u64>(),
    ]
}

fn counts() -> impl Strategy<Value = Counts> {
    (count(), count(), count()).prop_map(|(a, b, n)| Counts::range(a, b, n))
}

fn limit() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(1.0),
        Just(0.5),
        Just(0.01),
        Just(0.05),
        0.0_f64..=1.0
    ]
}

fn alpha() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.05),
        Just(0.0125),
        Just(1e-9),
        Just(0.499),
        1e-6_f64..0.49
    ]
}

fn direction() -> impl Strategy<Value = Direction> {
    prop_oneof![Just(Direction::AtMost), Just(Direction::AtLeast)]
}

fn sane(ev: &Evidence, lo: f64, hi: f64) -> Result<(), TestCaseError> {
    prop_assert!(
        ev.estimate.is_finite() && ev.lower.is_finite() && ev.upper.is_finite(),
        "{ev:?}"
    );
    prop_assert!(
        lo <= ev.lower && ev.lower <= ev.upper && ev.upper <= hi,
        "{ev:?}"
    );
    prop_assert!(lo <= ev.estimate && ev.estimate <= hi, "{ev:?}");
    Ok(())
}

/// The decision rule, stated independently of the implementation: a limit
/// every share meets passes; otherwise the look's bounds decide.
fn expected_status(direction: Direction, limit: f64, ev: &Evidence) -> Status {
    let (fails, passes) = match direction {
        Direction::AtMost => (ev.lower > limit, ev.upper < limit),
        Direction::AtLeast => (ev.upper < limit, ev.lower > limit),
    };
    let trivial = match direction {
        Direction::AtMost => limit >= 1.0,
        Direction::AtLeast => limit <= 0.0,
    };
    if trivial || passes {
        Status::ProvenPassing
    } else if fails {
        Status::ProvenFailing
    } else {
        Status::Open
    }
}

/// A run: increments per look, accumulated into cumulative counts.
fn run_increments() -> impl Strategy<Value = Vec<(u64, u64, u64)>> {
    prop::collection::vec((0_u64..400, 0_u64..400, 1_u64..2000), 1..30)
}

proptest! {
    // Fixed seed: the suite is deterministic like the simulations (change
    // the seed to explore further), and no regression files are written.
    #![proptest_config(ProptestConfig {
        cases: 1024,
        rng_seed: RngSeed::Fixed(0x5e9_57a7),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn proportion_any_counts_are_safe(l in limit(), a in alpha(), d in direction(), c in counts()) {
        let Ok(check) = ProportionCheck::new(l, d, a) else {
            return Err(TestCaseError::fail("valid parameters rejected"));
        };
        let (look_lo, look_hi) = check.look_bounds(c);
        let ev = check.look(c);
        sane(&ev, 0.0, 1.0)?;
        // The look's own interval always contains the estimate (x_low for
        // the lower bound, x_high for the upper, estimate in between).
        prop_assert!(look_lo <= ev.estimate && ev.estimate <= look_hi, "{look_lo} {} {look_hi}", ev.estimate);
        prop_assert_eq!(ev.status, expected_status(d, l, &ev));
        prop_assert_eq!(ev.samples, c.n);
    }

    #[test]
    fn proportion_status_follows_each_looks_bounds(
        l in limit(), a in alpha(), d in direction(), incs in run_increments()
    ) {
        let Ok(check) = ProportionCheck::new(l, d, a) else {
            return Err(TestCaseError::fail("valid parameters rejected"));
        };
        let (mut x_lo, mut x_hi, mut n) = (0_u64, 0_u64, 0_u64);
        for (inc_lo, inc_amb, inc_n) in incs {
            n += inc_n;
            x_lo = (x_lo + inc_lo.min(inc_n)).min(n);
            x_hi = (x_hi.max(x_lo) + inc_amb.min(inc_n)).min(n).max(x_lo);
            let c = Counts::range(x_lo, x_hi, n);
            let ev = check.look(c);
            sane(&ev, 0.0, 1.0)?;
            // Exact consistency with the printed bounds at every look, and
            // nothing but the cumulative counts matters.
            prop_assert_eq!(ev.status, expected_status(d, l, &ev));
            prop_assert_eq!((ev.lower, ev.upper), check.look_bounds(c));
        }
    }

    #[test]
    fn proportion_bounds_monotone_in_count(a in alpha(), n in 1_u64..5000, x in 0_u64..5000, l in limit()) {
        // More events can only raise both bounds; this is what makes using
        // x_low for the lower and x_high for the upper bound conservative.
        let x = x.min(n - 1);
        let Ok(check) = ProportionCheck::new(l, Direction::AtMost, a) else {
            return Err(TestCaseError::fail("valid parameters rejected"));
        };
        let (l0, u0) = check.look_bounds(Counts::exact(x, n));
        let (l1, u1) = check.look_bounds(Counts::exact(x + 1, n));
        prop_assert!(l1 >= l0 && u1 >= u0, "x={x} n={n}: ({l0},{u0}) -> ({l1},{u1})");
    }

    #[test]
    fn difference_any_counts_are_safe(
        delta in prop_oneof![Just(0.0), Just(1.0), Just(-1.0), -1.0_f64..=1.0],
        a in alpha(), tuning in prop_oneof![Just(5000.0), 1.0_f64..1e9],
        c in counts(), b in counts()
    ) {
        let Ok(check) = DifferenceCheck::new(delta, a, tuning) else {
            return Err(TestCaseError::fail("valid parameters rejected"));
        };
        let (look_lo, look_hi) = check.look_bounds(c, b);
        let ev = check.look(c, b);
        sane(&ev, -1.0, 1.0)?;
        prop_assert!(look_lo <= ev.estimate && ev.estimate <= look_hi, "{look_lo} {} {look_hi}", ev.estimate);
        prop_assert_eq!(ev.samples, c.n);
        prop_assert_eq!(ev.baseline_samples, Some(b.n));
    }

    #[test]
    fn difference_status_follows_each_looks_bounds(
        delta in prop_oneof![Just(0.0), Just(0.005), Just(1.0), -0.1_f64..0.1],
        a in alpha(),
        incs in prop::collection::vec((0_u64..50, 1_u64..500, 0_u64..50, 1_u64..500), 1..30)
    ) {
        let Ok(check) = DifferenceCheck::new(delta, a, 5000.0) else {
            return Err(TestCaseError::fail("valid parameters rejected"));
        };
        let (mut xb, mut nb, mut xa, mut na) = (0_u64, 0_u64, 0_u64, 0_u64);
        for (ib, inb, ia, ina) in incs {
            nb += inb;
            na += ina;
            xb = (xb + ib).min(nb);
            xa = (xa + ia).min(na);
            let ev = check.look(Counts::exact(xb, nb), Counts::exact(xa, na));
            sane(&ev, -1.0, 1.0)?;
            let expected = if delta >= 1.0 || ev.upper < delta {
                Status::ProvenPassing
            } else if ev.lower > delta {
                Status::ProvenFailing
            } else {
                Status::Open
            };
            prop_assert_eq!(ev.status, expected);
        }
    }
}

#[test]
fn extreme_counts_do_not_panic_or_nan() {
    let extremes = [
        0,
        1,
        2,
        1 << 53,
        (1 << 53) + 1,
        1_000_000_000_000,
        u64::MAX - 1,
        u64::MAX,
    ];
    for limit in [0.0, 1e-9, 0.02, 0.5, 1.0 - 1e-9, 1.0] {
        for d in [Direction::AtMost, Direction::AtLeast] {
            for &x in &extremes {
                for &n in &extremes {
                    let Ok(check) = ProportionCheck::new(limit, d, 1e-6) else {
                        panic!("valid parameters rejected");
                    };
                    let ev = check.look(Counts::range(x, x / 2, n));
                    assert!(
                        ev.lower.is_finite() && ev.upper.is_finite() && ev.estimate.is_finite(),
                        "{ev:?}"
                    );
                    assert!(ev.lower <= ev.upper, "{ev:?}");
                    let Ok(diff) = DifferenceCheck::new(0.0, 1e-6, 5000.0) else {
                        panic!("valid parameters rejected");
                    };
                    let ev = diff.look(Counts::exact(x, n), Counts::exact(n / 3, x));
                    assert!(
                        ev.lower.is_finite() && ev.upper.is_finite() && ev.estimate.is_finite(),
                        "{ev:?}"
                    );
                    assert!(ev.lower <= ev.upper, "{ev:?}");
                }
            }
        }
    }
}

#[test]
fn huge_counts_give_tight_sensible_bounds() {
    // 10^12 requests at 1.9 % errors against a 2 % limit: proven passing,
    // and the bounds are within a few 1e-6 of the estimate.
    let n = 1_000_000_000_000_u64;
    let x = 19_000_000_000_u64;
    let Ok(check) = ProportionCheck::new(0.02, Direction::AtMost, 0.05) else {
        panic!("valid parameters rejected");
    };
    let ev = check.look(Counts::exact(x, n));
    assert_eq!(ev.status, Status::ProvenPassing);
    assert!((ev.estimate - 0.019).abs() < 1e-15);
    assert!(ev.upper - 0.019 > 1e-7 && ev.upper - 0.019 < 2e-6, "{ev:?}");
    assert!(0.019 - ev.lower > 1e-7 && 0.019 - ev.lower < 2e-6, "{ev:?}");
    // Same for the difference check at 10^12 per arm.
    let Ok(diff) = DifferenceCheck::new(0.0, 0.05, 5000.0) else {
        panic!("valid parameters rejected");
    };
    let ev = diff.look(Counts::exact(x + 10_000_000, n), Counts::exact(x, n));
    assert_eq!(ev.status, Status::ProvenFailing, "{ev:?}");
    assert!((ev.estimate - 1e-5).abs() < 1e-12);
}
