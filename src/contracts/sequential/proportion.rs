//! One-sample checks "share ≤ limit" and "share ≥ limit", decided on an
//! exact (non-asymptotic) always-valid confidence sequence.
//!
//! # Method
//!
//! For a hypothesised share `q`, the beta-binomial mixture likelihood ratio
//!
//! ```text
//! E_n(q) = ∫ θ^x (1−θ)^(n−x) dBeta(θ; a, b) / (q^x (1−q)^(n−x))
//!        = B(a + x, b + n − x) / B(a, b) / (q^x (1−q)^(n−x))
//! ```
//!
//! is a non-negative martingale with `E_0 = 1` when the samples are i.i.d.
//! Bernoulli(q), whatever the prior. Ville's inequality gives
//! `P_q(∃n: E_n(q) ≥ 1/α) ≤ α`, so `C_n = {q : E_n(q) < 1/α}` covers the
//! true share at *every* look simultaneously with probability ≥ 1 − α, no
//! matter how often or when we look, and without any normal approximation.
//! `ln E_n(q)` is convex in `q` and `E_n(x/n) ≤ 1`, so `C_n` is an interval
//! that always contains the estimate `x/n`.
//!
//! Each bound comes from its own mixture, each at the full α:
//! the lower bound from a prior centred *above* the limit (it has to detect
//! shares above the limit), the upper bound from a prior centred *below* it.
//! Then `P(lower bound ever > true share) ≤ α` and
//! `P(upper bound ever < true share) ≤ α`, which are exactly the two
//! guarantees we need: a truly passing release is proven failing with
//! probability ≤ α, and a truly failing one proven passing with
//! probability ≤ α. (A single two-sided mixture would waste the prior mass
//! on the wrong side of the limit.)
//!
//! The prior is `Beta(c/(1−m), c/m)`: mean `m`, and `c` sets the spread
//! (for small `m` it behaves like a Gamma with shape `c`, i.e. a
//! coefficient of variation of `1/√c`). The centres are the limit with its
//! odds multiplied (lower bound) or divided (upper bound) by `r`. See
//! [`Prior`] for the chosen values and `REPORT.md` for the simulations
//! behind them.

use super::special::{ln_beta, ln_beta_remainder};
use super::types::{check_alpha, Counts, Direction, Evidence, ParamError, Status};

/// Shape of the mixture priors; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prior {
    /// `r ≥ 1`: the lower-bound prior is centred where the odds are `r` times
    /// the limit's odds, the upper-bound prior where they are `1/r` times.
    pub odds_ratio: f64,
    /// `c > 0`: the smaller Beta parameter; larger is more concentrated.
    pub shape: f64,
    /// Weight in `[0, 1)` of a Jeffreys `Beta(½, ½)` component mixed into
    /// both priors. It keeps the bounds sensible when the data are far from
    /// the limit (a concentrated Beta has polynomially thin tails, so with
    /// 999 events in 1000 and a prior centred at 0.05 the upper bound would
    /// be 1.0) at a cost of `ln(1/(1 − w))` nats near the limit.
    pub robust_weight: f64,
}

impl Prior {
    /// Chosen by simulation (`REPORT.md`, "Prior tuning", `tests/tuning.rs`):
    /// the main component is centred at 2× (lower bound) or ½× (upper bound)
    /// the limit's odds with a coefficient of variation of about 35 %
    /// (`c = 8`); for small limits ±1 s.d. covers about 1.3×–2.7× and
    /// 0.3×–0.7× the limit, the range where power matters; larger effects are decided at the
    /// first look anyway, and the 10 % Jeffreys part keeps them quick at
    /// low traffic. Over 26 scenarios (limits 0.01–0.5, 40–800 samples a
    /// look) this was within 1–2 % of the best grid point at α = 0.05 and
    /// the best at α = 0.0125.
    pub const DEFAULT: Prior = Prior {
        odds_ratio: 2.0,
        shape: 8.0,
        robust_weight: 0.1,
    };

    fn validate(self) -> Result<Self, ParamError> {
        let ok = self.odds_ratio.is_finite()
            && self.odds_ratio >= 1.0
            && self.shape.is_finite()
            && self.shape > 0.0
            && self.robust_weight.is_finite()
            && (0.0..1.0).contains(&self.robust_weight);
        if ok {
            Ok(self)
        } else {
            Err(ParamError::Prior)
        }
    }
}

impl Default for Prior {
    fn default() -> Self {
        Prior::DEFAULT
    }
}

/// Limits are moved at least this far from 0 and 1 when *centring the
/// priors* (only there): a Beta prior needs a mean strictly inside (0, 1).
/// The decision still compares against the exact limit.
const CENTRE_EPS: f64 = 1e-6;

/// One Beta(a, b) component of a mixing distribution, with its log weight
/// and `ln B(a, b)` cached (both are needed at every look and never change).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Component {
    a: f64,
    b: f64,
    ln_weight: f64,
    ln_beta_ab: f64,
}

impl Component {
    fn new(a: f64, b: f64, weight: f64) -> Self {
        Component {
            a,
            b,
            // ln 0 = −∞ is fine: the component then contributes exp(−∞) = 0.
            ln_weight: weight.ln(),
            ln_beta_ab: ln_beta(a, b),
        }
    }
}

/// The mixing distribution of one bound: the tuned Beta centred away from
/// the limit plus a small Jeffreys component (see [`Prior::robust_weight`]).
#[derive(Clone, Copy, Debug, PartialEq)]
struct BetaMixture {
    parts: [Component; 2],
}

impl BetaMixture {
    /// Mixture whose main part has mean `centre` and shape `c`
    /// (`Beta(c/(1−m), c/m)`).
    fn centred(centre: f64, c: f64, robust_weight: f64) -> Self {
        let m = centre.clamp(CENTRE_EPS, 1.0 - CENTRE_EPS);
        BetaMixture {
            parts: [
                Component::new(c / (1.0 - m), c / m, 1.0 - robust_weight),
                Component::new(0.5, 0.5, robust_weight),
            ],
        }
    }

    /// The same mixture for the complementary share `1 − θ`.
    fn mirrored(self) -> Self {
        let flip = |p: Component| Component {
            a: p.b,
            b: p.a,
            ..p
        };
        BetaMixture {
            parts: [flip(self.parts[0]), flip(self.parts[1])],
        }
    }
}

/// Per-look constants of one component for [`ln_lower_root`].
#[derive(Clone, Copy)]
struct Prepared {
    u: f64,
    w: f64,
    konst: f64,
}

/// Returns `ln q_L` where `q_L = inf {q : ln E_n(q) < c}` is the lower end
/// of the confidence interval for `x` events out of `x + y` samples
/// (`−∞` when `x = 0`, i.e. `q_L = 0`).
///
/// Solved by Newton's method on `t = ln q`, where
/// `f(t) = ln E_n(e^t) − c` is convex and decreasing left of `ln(x/n)`.
/// Starting left of the root, every Newton step stays left of it (the
/// tangent of a convex function lies below it), so the iteration converges
/// monotonically from the conservative side and needs no safeguarding;
/// typically 4–6 evaluations.
///
/// `ln E_n(q)` is evaluated in a form that stays accurate for counts near
/// 2^53 and degrades gracefully up to `u64::MAX`: with `u = a + x`,
/// `v = b + y`, `w = u + v`, `r = u/w` and `d = u − w q` (one rounding, by
/// fused multiply-add),
///
/// ```text
/// ln E_n(q) = x ln(1 + d/(w q)) + y ln(1 − d/(w (1−q)))
///           + a ln r + b ln(1−r) + R(u, v) − ln B(a, b)
/// ```
///
/// per Beta component, where `R` is [`ln_beta_remainder`]. The huge terms
/// `x ln q`, `u ln(u/w)` … of the naive formula cancel analytically instead
/// of numerically. Components are combined by log-sum-exp; the mixture is
/// still convex in `t` because its q-dependent factor is shared.
fn ln_lower_root(x: f64, y: f64, mix: BetaMixture, c: f64) -> f64 {
    if x <= 0.0 {
        return f64::NEG_INFINITY;
    }
    let prep = mix.parts.map(|p| {
        let u = p.a + x;
        let v = p.b + y;
        let w = u + v;
        let konst = p.ln_weight + p.a * (u / w).ln() + p.b * (v / w).ln() + ln_beta_remainder(u, v)
            - p.ln_beta_ab;
        Prepared { u, w, konst }
    });

    // f and df/dt at t = ln q. The q-dependent part of ln E is the same for
    // every component, so the derivative is too; the values are combined
    // by log-sum-exp.
    let eval = |t: f64| -> (f64, f64) {
        let q = t.exp();
        if q <= 0.0 {
            // Underflow: E_n(0) = ∞ when x > 0.
            return (f64::INFINITY, f64::NEG_INFINITY);
        }
        let one_minus_q = -t.exp_m1();
        let part = |p: &Prepared| {
            let d = (-p.w).mul_add(q, p.u);
            let mut e = p.konst + x * (d / (p.w * q)).ln_1p();
            if y > 0.0 {
                e += y * (-d / (p.w * one_minus_q)).ln_1p();
            }
            e
        };
        let (e0, e1) = (part(&prep[0]), part(&prep[1]));
        let hi = e0.max(e1);
        let f = if hi == f64::NEG_INFINITY {
            hi
        } else {
            hi + ((e0 - hi).exp() + (e1 - hi).exp()).ln()
        } - c;
        let mut df = -x;
        if y > 0.0 {
            df += y * q / one_minus_q;
        }
        (f, df)
    };

    let n = x + y;
    let t_hat = (x / n).ln();
    // A first guess a bit beyond the normal-approximation distance
    // (x Δt²/2 ≈ c + ½ ln n), then move left until f > 0.
    let mut step = 1.5 * (2.0 * (c + 0.5 * (n + 2.0).ln() + 1.0) / x).sqrt();
    let mut t = t_hat - step;
    let mut fd = eval(t);
    let mut guard = 0;
    while fd.0 <= 0.0 && guard < 200 {
        step *= 2.0;
        t = t_hat - step;
        fd = eval(t);
        guard += 1;
    }
    if fd.0 <= 0.0 {
        // Cannot happen for finite inputs (f → ∞ as q → 0); be conservative.
        return f64::NEG_INFINITY;
    }
    for _ in 0..100 {
        let (f, df) = fd;
        if f <= 1e-10 || df >= 0.0 {
            break;
        }
        let next = t - f / df;
        if next.is_nan() || next <= t {
            break;
        }
        let next_fd = eval(next);
        if next_fd.0 < 0.0 {
            // Only rounding can push a step past the root of a convex
            // function. Accept a step that lands within 1e-9 nats of it (as
            // if α were 1e-9 relatively larger: immaterial), otherwise keep
            // the conservative side.
            if next_fd.0 > -1e-9 {
                t = next;
            }
            break;
        }
        t = next;
        fd = next_fd;
    }
    t.min(t_hat)
}

/// Lower bound of the share from `x` events in `n` samples.
fn lower_bound(x: u64, n: u64, mix: BetaMixture, c: f64) -> f64 {
    let y = n - x;
    ln_lower_root(x as f64, y as f64, mix, c).exp()
}

/// Upper bound of the share: the lower bound of the complementary share,
/// mirrored (`1 − e^t` computed as `−expm1(t)` so small bounds keep their
/// precision).
fn upper_bound(x: u64, n: u64, mix: BetaMixture, c: f64) -> f64 {
    let y = n - x;
    let t = ln_lower_root(y as f64, x as f64, mix.mirrored(), c);
    -t.exp_m1()
}

/// A sequential check of one share against a limit: error rate ≤ E,
/// share of requests slower than L ≤ 0.05 (p95 ≤ L), conversion ≥ C.
///
/// Feed it the run's *cumulative* counts at every look. See the module
/// documentation for the method and [`Evidence`] for the decision rule.
///
/// Edge cases (all deliberate):
/// * `limit = 0`, `AtMost` ("no errors at all"): the first surely-observed
///   event proves failing (lower bound > 0 as soon as `x_low ≥ 1`, which is
///   certain, not statistical). It can never be proven passing: no finite
///   sample shows a share is `< 0`. Such a contract can only promote by
///   another route (timeout policy, manual decision).
/// * `limit = 1`, `AtMost` (and `limit = 0`, `AtLeast`): every share
///   passes, so the check is passing from the start, without data.
///   `limit = 1`, `AtLeast` is the mirror image of the first case.
/// * `n = 0`: no information; bounds `[0, 1]`, estimate 0.
/// * A share exactly at the limit is "passing" for the contract but can
///   never be *proven* passing (that needs `upper < limit`); it is proven
///   failing with probability ≤ α.
#[derive(Clone, Debug, PartialEq)]
pub struct ProportionCheck {
    limit: f64,
    direction: Direction,
    alpha: f64,
    prior: Prior,
    /// `ln(1/α)`, the threshold on the log e-value.
    threshold: f64,
    lower_mix: BetaMixture,
    upper_mix: BetaMixture,
}

// Accessors and custom priors are used by the tests and simulations.
#[cfg_attr(not(test), allow(dead_code))]
impl ProportionCheck {
    /// A fresh check with the default [`Prior`].
    ///
    /// `alpha` is this check's own budget: with k checks in a run give each
    /// `alpha/k` (Bonferroni), so the run as a whole errs with probability
    /// ≤ alpha in each direction.
    pub fn new(limit: f64, direction: Direction, alpha: f64) -> Result<Self, ParamError> {
        Self::with_prior(limit, direction, alpha, Prior::DEFAULT)
    }

    /// A fresh check with an explicit prior (for tuning studies).
    pub fn with_prior(
        limit: f64,
        direction: Direction,
        alpha: f64,
        prior: Prior,
    ) -> Result<Self, ParamError> {
        if !(limit.is_finite() && (0.0..=1.0).contains(&limit)) {
            return Err(ParamError::Limit(limit));
        }
        let alpha = check_alpha(alpha)?;
        let prior = prior.validate()?;
        let p = limit.clamp(CENTRE_EPS, 1.0 - CENTRE_EPS);
        let odds = p / (1.0 - p);
        // Share with odds `o`, written so that o = ∞ gives 1 and o = 0 gives 0
        // (a huge odds ratio must not produce ∞/∞ = NaN).
        let share = |o: f64| 1.0 / (1.0 + 1.0 / o);
        let above = share(odds * prior.odds_ratio);
        let below = share(odds / prior.odds_ratio);
        Ok(ProportionCheck {
            limit,
            direction,
            alpha,
            prior,
            threshold: -alpha.ln(),
            lower_mix: BetaMixture::centred(above, prior.shape, prior.robust_weight),
            upper_mix: BetaMixture::centred(below, prior.shape, prior.robust_weight),
        })
    }

    /// This look's confidence interval `(lower from x_low, upper from
    /// x_high)`.
    pub fn look_bounds(&self, counts: Counts) -> (f64, f64) {
        let (lo, hi, n) = counts.sanitized();
        (
            lower_bound(lo, n, self.lower_mix, self.threshold),
            upper_bound(hi, n, self.upper_mix, self.threshold),
        )
    }

    /// `true` when the limit admits every share (`≤ 100 %`, `≥ 0 %`): such
    /// a check passes without data.
    fn trivially_passing(&self) -> bool {
        match self.direction {
            Direction::AtMost => self.limit >= 1.0,
            Direction::AtLeast => self.limit <= 0.0,
        }
    }

    /// Looks at the run's cumulative counts. The status is this look's
    /// (see [`Evidence`]).
    ///
    /// Allocation-free; a few microseconds (two root finds of ~5 steps).
    pub fn look(&self, counts: Counts) -> Evidence {
        let (lower, upper) = self.look_bounds(counts);
        let (fails, passes) = self.direction.proves(lower, upper, self.limit);
        // Both cannot hold: the interval contains the estimate.
        let status = if self.trivially_passing() || passes {
            Status::ProvenPassing
        } else if fails {
            Status::ProvenFailing
        } else {
            Status::Open
        };
        Evidence {
            estimate: counts.midpoint_share(),
            lower,
            upper,
            samples: counts.n,
            baseline_samples: None,
            status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::special::ln_gamma;
    use super::*;

    /// Naive ln E_n(q) via ln Γ, fine for small counts.
    fn naive_ln_e(x: f64, n: f64, mix: BetaMixture, q: f64) -> f64 {
        let y = n - x;
        let sum: f64 = mix
            .parts
            .iter()
            .map(|p| {
                let lb = ln_gamma(p.a + x) + ln_gamma(p.b + y) - ln_gamma(p.a + p.b + n);
                (p.ln_weight + lb - p.ln_beta_ab).exp()
            })
            .sum();
        sum.ln() - x * q.ln() - y * (1.0 - q).ln()
    }

    #[test]
    fn bounds_solve_the_defining_equation() {
        let mix = BetaMixture::centred(0.1, 2.0, 0.1);
        let c = 20.0_f64.ln();
        for &(x, n) in &[
            (1_u64, 10_u64),
            (5, 100),
            (40, 500),
            (300, 1000),
            (999, 1000),
            (200, 200),
            (0, 50),
        ] {
            let l = lower_bound(x, n, mix, c);
            let u = upper_bound(x, n, mix, c);
            let p = x as f64 / n as f64;
            assert!(l <= p && p <= u, "x={x} n={n}: {l} {p} {u}");
            if x > 0 {
                let el = naive_ln_e(x as f64, n as f64, mix, l);
                assert!(
                    (el - c).abs() < 1e-7,
                    "lower x={x} n={n}: ln E = {el}, want {c}"
                );
            }
            if x < n {
                let eu = naive_ln_e(x as f64, n as f64, mix, u);
                assert!(
                    (eu - c).abs() < 1e-7,
                    "upper x={x} n={n}: ln E = {eu}, want {c}"
                );
            }
        }
    }

    #[test]
    fn zero_and_full_counts() {
        let mix = BetaMixture::centred(0.1, 2.0, 0.1);
        let c = 20.0_f64.ln();
        assert_eq!(lower_bound(0, 100, mix, c), 0.0);
        assert_eq!(upper_bound(100, 100, mix, c), 1.0);
        assert_eq!(lower_bound(0, 0, mix, c), 0.0);
        assert_eq!(upper_bound(0, 0, mix, c), 1.0);
        let u = upper_bound(0, 1000, mix, c);
        assert!(u > 0.0 && u < 0.01, "{u}");
        // Far from the prior's centre the Jeffreys part keeps bounds sane.
        let u = upper_bound(999, 1000, mix, c);
        assert!(u > 0.999 && u < 1.0, "{u}");
        assert!(lower_bound(999, 1000, mix, c) > 0.98);
    }

    #[test]
    fn huge_counts_keep_precision() {
        let mix = BetaMixture::centred(0.1, 2.0, 0.1);
        let c = 20.0_f64.ln();
        let n = 1_000_000_000_000_u64;
        let x = 50_000_000_000_u64; // 5 %
        let l = lower_bound(x, n, mix, c);
        let u = upper_bound(x, n, mix, c);
        // Half-width ≈ sqrt(2 (c + ½ ln(n·var_prior...)) p(1−p)/n) ≈ 1.7e-6.
        let half = (0.05 * 0.95 / n as f64).sqrt();
        assert!(0.05 - l > 2.0 * half && 0.05 - l < 8.0 * half, "{l}");
        assert!(u - 0.05 > 2.0 * half && u - 0.05 < 8.0 * half, "{u}");
        // Scaling n by 4 must shrink the width by about 2 (up to the slow
        // ln n growth): checks that nothing is lost to cancellation.
        let l4 = lower_bound(4 * x, 4 * n, mix, c);
        let ratio = (0.05 - l) / (0.05 - l4);
        assert!(ratio > 1.8 && ratio < 2.05, "{ratio}");
    }

    #[test]
    fn invalid_parameters_are_rejected() {
        assert!(ProportionCheck::new(f64::NAN, Direction::AtMost, 0.05).is_err());
        assert!(ProportionCheck::new(1.5, Direction::AtMost, 0.05).is_err());
        assert!(ProportionCheck::new(0.1, Direction::AtMost, 0.0).is_err());
        assert!(ProportionCheck::new(0.1, Direction::AtMost, 0.5).is_err());
        let bad = Prior {
            odds_ratio: 0.5,
            ..Prior::DEFAULT
        };
        assert!(ProportionCheck::with_prior(0.1, Direction::AtMost, 0.05, bad).is_err());
        assert!(ProportionCheck::new(0.0, Direction::AtMost, 0.05).is_ok());
        assert!(ProportionCheck::new(1.0, Direction::AtLeast, 1e-9).is_ok());
    }

    #[test]
    fn extreme_priors_stay_finite() {
        for prior in [
            Prior {
                odds_ratio: 1e308,
                ..Prior::DEFAULT
            },
            Prior {
                odds_ratio: 1.0,
                shape: 1e-12,
                robust_weight: 0.0,
            },
            Prior {
                shape: 1e9,
                ..Prior::DEFAULT
            },
        ] {
            for limit in [0.0, 0.3, 1.0] {
                let check =
                    ProportionCheck::with_prior(limit, Direction::AtMost, 0.05, prior).unwrap();
                let ev = check.look(Counts::exact(30, 100));
                assert!(
                    ev.lower.is_finite() && ev.upper.is_finite(),
                    "{prior:?} {ev:?}"
                );
                assert!(ev.lower <= 0.3 && 0.3 <= ev.upper, "{prior:?} {ev:?}");
            }
        }
    }

    #[test]
    fn limit_zero_fails_on_first_event_and_never_passes() {
        let check = ProportionCheck::new(0.0, Direction::AtMost, 0.05).unwrap();
        let ev = check.look(Counts::exact(0, 1_000_000));
        assert_eq!(ev.status, Status::Open);
        assert_eq!(ev.lower, 0.0);
        let ev = check.look(Counts::exact(1, 1_000_001));
        assert_eq!(ev.status, Status::ProvenFailing);
        // Surely-observed events only: a range starting at 0 does not fail.
        let check = ProportionCheck::new(0.0, Direction::AtMost, 0.05).unwrap();
        assert_eq!(check.look(Counts::range(0, 5, 1000)).status, Status::Open);
    }

    #[test]
    fn limits_that_admit_every_share_pass_without_data() {
        let check = ProportionCheck::new(1.0, Direction::AtMost, 0.05).unwrap();
        assert_eq!(
            check.look(Counts::exact(0, 0)).status,
            Status::ProvenPassing
        );
        assert_eq!(
            check.look(Counts::exact(10, 10)).status,
            Status::ProvenPassing
        );
        let check = ProportionCheck::new(0.0, Direction::AtLeast, 0.05).unwrap();
        assert_eq!(
            check.look(Counts::exact(0, 10)).status,
            Status::ProvenPassing
        );
        // A conversion floor of 100 % fails on the first surely
        // unconverted request, and never passes.
        let check = ProportionCheck::new(1.0, Direction::AtLeast, 0.05).unwrap();
        assert_eq!(check.look(Counts::exact(10, 10)).status, Status::Open);
        assert_eq!(
            check.look(Counts::exact(10, 11)).status,
            Status::ProvenFailing
        );
    }

    #[test]
    fn status_is_the_current_looks() {
        // Proven passing early; a regression afterwards takes the pass
        // away and then proves failing: nothing from the early look sticks.
        let check = ProportionCheck::new(0.02, Direction::AtMost, 0.05).unwrap();
        assert_eq!(
            check.look(Counts::exact(20, 5_000)).status,
            Status::ProvenPassing
        );
        assert_eq!(check.look(Counts::exact(150, 8_000)).status, Status::Open);
        assert_eq!(
            check.look(Counts::exact(520, 12_000)).status,
            Status::ProvenFailing
        );
    }

    #[test]
    fn lower_bound_is_monotone_in_x() {
        // Needed for the x_low / x_high argument: fewer sure events can only
        // lower the lower bound.
        let mix = BetaMixture::centred(0.1, 2.0, 0.1);
        let c = 20.0_f64.ln();
        let mut prev = 0.0;
        for x in 0..=200 {
            let l = lower_bound(x, 200, mix, c);
            assert!(l >= prev, "x={x}");
            prev = l;
        }
    }
}
