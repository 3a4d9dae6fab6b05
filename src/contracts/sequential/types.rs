//! Plain data types shared by the checks: inputs ([`Counts`]), outputs
//! ([`Evidence`], [`Status`]), configuration ([`Direction`]) and parameter
//! errors ([`ParamError`]).

use std::fmt;

/// Where a check stands at a look.
///
/// The status is the current look's, computed from the run's cumulative
/// counts alone. The confidence sequence covers the true share at every
/// look at once, so its caller may keep a running bound (the intersection
/// over looks) without losing validity; the contracts layer does, so that
/// a proven result never un-proves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Status {
    /// Not enough evidence either way yet: keep collecting.
    #[default]
    Open,
    /// The confidence sequence lies entirely on the passing side of the limit.
    ProvenPassing,
    /// The confidence sequence lies entirely on the failing side of the limit.
    ProvenFailing,
}

/// Which side of the limit passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The check passes while the true share is `≤ limit` (error rate,
    /// share of requests slower than a latency threshold).
    AtMost,
    /// The check passes while the true share is `≥ limit` (conversion rate).
    AtLeast,
}

impl Direction {
    /// Whether bounds `[lower, upper]` prove the share failing or passing
    /// against `limit`, as `(fails, passes)` (the table on [`Evidence`]).
    pub fn proves(self, lower: f64, upper: f64, limit: f64) -> (bool, bool) {
        match self {
            Direction::AtMost => (lower > limit, upper < limit),
            Direction::AtLeast => (upper < limit, lower > limit),
        }
    }
}

/// Cumulative counts of one arm at a look: `x` "events" (errors, requests
/// slower than L, conversions) out of `n` samples.
///
/// When the event count is only known within a range (latency exceedance
/// read from a histogram or sketch), `x_low` is the count that is surely
/// an event and `x_high` the count that possibly is one. For exact counts
/// both are equal ([`Counts::exact`]). The checks use `x_low` for the lower
/// confidence bound of the share and `x_high` for the upper one, so both
/// bounds, and therefore both decisions, are conservative.
///
/// Inconsistent input is clamped rather than rejected (it comes from
/// telemetry, not from a person): `x > n` is read as `x = n`, and
/// `x_low > x_high` is read as the range `[x_high, x_low]`, which is the
/// conservative reading for both bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Counts {
    /// Events that surely happened.
    pub x_low: u64,
    /// Events that possibly happened.
    pub x_high: u64,
    /// Samples.
    pub n: u64,
}

impl Counts {
    /// Exactly `x` events out of `n`.
    pub fn exact(x: u64, n: u64) -> Self {
        Counts {
            x_low: x,
            x_high: x,
            n,
        }
    }

    /// Between `x_low` and `x_high` events out of `n`.
    pub fn range(x_low: u64, x_high: u64, n: u64) -> Self {
        Counts { x_low, x_high, n }
    }

    /// `(x_low, x_high, n)` with `x_low ≤ x_high ≤ n` enforced as documented
    /// on the type.
    pub(crate) fn sanitized(self) -> (u64, u64, u64) {
        let lo = self.x_low.min(self.x_high).min(self.n);
        let hi = self.x_low.max(self.x_high).min(self.n);
        (lo, hi, self.n)
    }

    /// Point estimate of the share: the middle of the range over `n`
    /// (0 when `n = 0`, so callers never see NaN; `samples = 0` tells them
    /// there is no estimate).
    pub(crate) fn midpoint_share(self) -> f64 {
        let (lo, hi, n) = self.sanitized();
        if n == 0 {
            return 0.0;
        }
        // Average in f64: (lo + hi) could overflow u64.
        let mid = 0.5 * (lo as f64 + hi as f64);
        (mid / n as f64).clamp(0.0, 1.0)
    }
}

/// What a check reports at each look.
///
/// `lower` and `upper` are this look's confidence bounds. They
/// are what a person reads ("95 % sure the error rate is above 4.9 %") and
/// exactly what the status is decided on:
///
/// | check            | `ProvenFailing`        | `ProvenPassing`        |
/// |------------------|------------------------|------------------------|
/// | share ≤ limit    | `lower > limit`        | `upper < limit`        |
/// | share ≥ limit    | `upper < limit`        | `lower > limit`        |
/// | B − A ≤ delta    | `lower > delta`        | `upper < delta`        |
///
/// The estimate always lies within the bounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evidence {
    /// Share `x/n` (middle of the count range), or the difference of shares
    /// canary − baseline for a [`super::DifferenceCheck`].
    pub estimate: f64,
    /// Lower confidence bound.
    pub lower: f64,
    /// Upper confidence bound.
    pub upper: f64,
    /// Samples of the subject (the canary for a difference check).
    pub samples: u64,
    /// Samples of the baseline for a difference check; `None` otherwise.
    pub baseline_samples: Option<u64>,
    /// Status at this look.
    pub status: Status,
}

/// A parameter that the checks refuse.
///
/// Parameters come from contract configuration, so they are validated
/// (and reported) rather than silently clamped; counts come from telemetry
/// and are clamped instead (see [`Counts`]).
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(not(test), allow(dead_code))]
pub enum ParamError {
    /// A share limit outside `[0, 1]` or not finite.
    Limit(f64),
    /// An alpha outside `(0, 0.5)` or not finite.
    Alpha(f64),
    /// A difference margin outside `[-1, 1]` or not finite.
    Delta(f64),
    /// A tuning sample size that is not finite and positive.
    TuningN(f64),
    /// A minimum-data guard that is not finite and non-negative.
    MinEvents(f64),
    /// Prior parameters that are not finite, or an odds ratio below 1 or a
    /// shape that is not positive.
    Prior,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::Limit(v) => write!(f, "limit {v} is not a share in [0, 1]"),
            ParamError::Alpha(v) => write!(f, "alpha {v} is not in (0, 0.5)"),
            ParamError::Delta(v) => write!(f, "delta {v} is not a difference in [-1, 1]"),
            ParamError::TuningN(v) => write!(f, "tuning sample size {v} is not positive"),
            ParamError::MinEvents(v) => {
                write!(f, "minimum expected events {v} is not a count >= 0")
            }
            ParamError::Prior => write!(f, "prior needs odds_ratio >= 1 and shape > 0"),
        }
    }
}

impl std::error::Error for ParamError {}

/// `alpha` must be a usable error budget: one-sided tests at `alpha ≥ 0.5`
/// are meaningless (the GrowthBook ρ formula also degenerates at 0.5).
pub(crate) fn check_alpha(alpha: f64) -> Result<f64, ParamError> {
    if alpha.is_finite() && alpha > 0.0 && alpha < 0.5 {
        Ok(alpha)
    } else {
        Err(ParamError::Alpha(alpha))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_sanitized() {
        assert_eq!(Counts::exact(5, 3).sanitized(), (3, 3, 3));
        assert_eq!(Counts::range(7, 2, 10).sanitized(), (2, 7, 10));
        assert_eq!(
            Counts::range(u64::MAX, u64::MAX, u64::MAX).sanitized(),
            (u64::MAX, u64::MAX, u64::MAX)
        );
        assert_eq!(Counts::exact(0, 0).midpoint_share(), 0.0);
        assert_eq!(
            Counts::range(u64::MAX, u64::MAX, u64::MAX).midpoint_share(),
            1.0
        );
        assert_eq!(Counts::range(1, 3, 10).midpoint_share(), 0.2);
    }
}
